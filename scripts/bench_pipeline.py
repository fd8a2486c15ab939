"""Pipeline benchmarks for nubes (see scripts/bench.sh pipeline).

Reuses the Azurite and project helpers of bench_state.py. Bounded loops, loopback only.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import bench_state as b

STACK = b.STACK_50.replace('backend "azurerm" {}', 'backend "azurerm" {}\n}\nvariable "environment" {\n  type = string\n}\nterraform {') \
    .replace("resource-${count.index}", "${var.environment}-${count.index}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nubes", required=True)
    ap.add_argument("--azurite", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline", help="another nubes binary (e.g. an older release build) whose fast path is measured alongside")
    args = ap.parse_args()
    tf = shutil.which("terraform") or sys.exit("terraform not found: run scripts/install-prereqs.sh")
    root = tempfile.mkdtemp(prefix="nubes-bench-pipeline-")
    proc, url = b.start_azurite(args.azurite, os.path.join(root, "azurite"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "ARM_", "AZURE_", "GITHUB_")) and k not in ("CI", "TF_CLI_CONFIG_FILE")}
    env.update({"NUBES_STATE_ACCOUNT_URL": url, "NUBES_STORAGE_SAS": b.sas(), "CHECKPOINT_DISABLE": "1"})
    raw, full, fast = [], [], []
    base_fast, requests, base_requests = [], None, None
    try:
        tfv = subprocess.run([tf, "version"], stdout=subprocess.PIPE, text=True, env=env).stdout.splitlines()[0]
        for i in range(args.runs):
            # Raw Terraform: init + apply, local backend, fresh folder.
            d = os.path.join(root, f"raw{i}")
            os.makedirs(d)
            with open(os.path.join(d, "main.tf"), "w") as f:
                f.write(STACK.replace('backend "azurerm" {}', 'backend "local" {}'))
            t1, _ = b.run([tf, "init", "-input=false"], d, env)
            t2, _ = b.run([tf, "apply", "-auto-approve", "-input=false", "-var", f"environment=e{i}"], d, env)
            raw.append(t1 + t2)
            # nubes up, full path: fresh project (no working copy, no provider cache), new env.
            p = b.project(root, f"nubes{i}", "", {"main.tf": STACK})
            t, _ = b.run([args.nubes, "up", f"e{i}"], p, env)
            full.append(t)
            # nubes up again, unchanged: fast path.
            t, out = b.run([args.nubes, "up", f"e{i}"], p, env)
            if "fast path" not in out.stdout:
                sys.exit(f"second up did not take the fast path:\n{out.stdout}\n{out.stderr}")
            fast.append(t)
            if args.baseline:
                # The same unchanged env through the baseline binary, alternating with
                # nubes's own fast path so load drift hits both alike.
                t, out = b.run([args.baseline, "up", f"e{i}"], p, env)
                if "fast path" not in out.stdout:
                    sys.exit(f"baseline up did not take the fast path:\n{out.stdout}\n{out.stderr}")
                base_fast.append(t)
        # Storage requests of one fast-path up (nubes logs the count at debug level).
        p = os.path.join(root, "nubes0")
        requests = count_requests(args.nubes, p, env)
        if args.baseline:
            base_requests = count_requests(args.baseline, p, env)
    finally:
        proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    r, fu, fa = statistics.median(raw), statistics.median(full), statistics.median(fast)
    print(f"Machine: {os.cpu_count()} cores; {tfv}; Azurite on loopback over HTTP+SAS; median of {args.runs} runs.\n")
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print(f"| raw `terraform init && terraform apply`, local backend, 50 `terraform_data` | {r:.2f} s | |")
    print(f"| `nubes up`, full path (render, init, plan, show, apply, record) | {fu:.2f} s | |")
    print(f"| ratio nubes / raw | **{fu / r:.2f}** | ≤ 1.2 |")
    print(f"| `nubes up` on an unchanged env (fast path) | **{fa * 1000:.0f} ms** | < 1 s |")
    print(f"| fast path / full path | **{fa / fu:.3f}** | ≤ 0.1 |")
    print(f"| storage requests of a fast-path `up` (lock, metadata, outputs, activity record, release) | {requests} | |")
    if args.baseline:
        bf = statistics.median(base_fast)
        print(f"| baseline `{os.path.basename(args.baseline)}`: fast path | {bf * 1000:.0f} ms | |")
        print(f"| baseline: storage requests of a fast-path `up` | {base_requests} | |")
        print(f"| fast path, this build − baseline | **{(fa - bf) * 1000:+.0f} ms**, **{requests - base_requests:+d} requests** | ≤ +10 ms, ≤ +1 |")


def count_requests(nubes, project, env):
    """The storage requests one fast-path `up` makes, from nubes's own debug log."""
    import re
    _, out = b.run([nubes, "-vv", "--color", "never", "up", "e0"], project, env)
    if "fast path" not in out.stdout:
        sys.exit(f"up did not take the fast path:\n{out.stdout}\n{out.stderr}")
    m = re.findall(r"(\d+) storage requests", out.stderr)
    if not m:
        sys.exit(f"no request count in nubes's debug log:\n{out.stderr[-2000:]}")
    return int(m[-1])


if __name__ == "__main__":
    main()
