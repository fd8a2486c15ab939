"""Scaling of `nubes up` with the size of a stack (issue 19; see scripts/bench.sh scale).

For 50 / 500 / 2,000 `terraform_data` resources, on a stack that is already applied and
unchanged: raw `terraform apply` (local backend) against `nubes up --refresh` (the same
work through nubes: lock, render, init, plan, record; the like-for-like overhead) and
`nubes up` (the fast path, no Terraform process), alternating in each run.

A fresh apply is not compared: Terraform's local backend rewrites and fsyncs its state
file after every resource, so its own time grows with the square of the resource count,
and a ratio against it would flatter nubes.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import bench_state as b


def stack(n):
    return (
        'terraform {\n  backend "azurerm" {}\n}\n'
        'variable "environment" {\n  type = string\n}\n'
        f'resource "terraform_data" "r" {{\n  count = {n}\n  input = "${{var.environment}}-${{count.index}}"\n}}\n'
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nubes", required=True)
    ap.add_argument("--azurite", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="50,500,2000")
    args = ap.parse_args()
    tf = shutil.which("terraform") or sys.exit("terraform not found: run scripts/install-prereqs.sh")
    root = tempfile.mkdtemp(prefix="nubes-bench-scale-")
    proc, url = b.start_azurite(args.azurite, os.path.join(root, "azurite"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "ARM_", "AZURE_", "GITHUB_")) and k not in ("CI", "TF_CLI_CONFIG_FILE")}
    env.update({"NUBES_STATE_ACCOUNT_URL": url, "NUBES_STORAGE_SAS": b.sas(), "CHECKPOINT_DISABLE": "1"})
    rows = []
    try:
        tfv = subprocess.run([tf, "version"], stdout=subprocess.PIPE, text=True, env=env).stdout.splitlines()[0]
        for n in (int(x) for x in args.sizes.split(",")):
            name = f"s{n}"
            raw_dir = os.path.join(root, f"raw{n}")
            os.makedirs(raw_dir)
            with open(os.path.join(raw_dir, "main.tf"), "w") as f:
                f.write(stack(n).replace('backend "azurerm" {}', 'backend "local" {}'))
            tf_args = ["-auto-approve", "-input=false", "-var", f"environment={name}"]
            b.run([tf, "init", "-input=false"], raw_dir, env)
            setup_raw, _ = b.run([tf, "apply"] + tf_args, raw_dir, env)
            p = b.project(root, f"nubes{n}", "", {"main.tf": stack(n)})
            setup_nubes, _ = b.run([args.nubes, "up", name], p, env)
            raw, refresh, fast = [], [], []
            for _ in range(args.runs):
                t, out = b.run([tf, "apply"] + tf_args, raw_dir, env)
                if "No changes" not in out.stdout:
                    sys.exit(f"raw apply was not a no-op:\n{out.stdout[-2000:]}")
                raw.append(t)
                t, out = b.run([args.nubes, "up", "--refresh", name], p, env)
                refresh.append(t)
                t, out = b.run([args.nubes, "up", name], p, env)
                if "fast path" not in out.stdout:
                    sys.exit(f"up did not take the fast path:\n{out.stdout}\n{out.stderr}")
                fast.append(t)
            rows.append((n, setup_raw, setup_nubes, statistics.median(raw), statistics.median(refresh), statistics.median(fast)))
    finally:
        proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    print(f"Machine: {os.cpu_count()} cores; {tfv}; Azurite on loopback over HTTP+SAS; median of {args.runs} alternating runs.\n")
    print("| resources | raw `terraform apply`, unchanged (local backend) | `nubes up --refresh`, unchanged | overhead | `nubes up`, fast path | first apply: raw (local) / `nubes up` (not comparable) |")
    print("|---|---|---|---|---|---|")
    for n, sr, sn, r, rf, fa in rows:
        print(f"| {n} | {r:.2f} s | {rf:.2f} s | **{(rf - r) * 1000:+.0f} ms** ({rf / r:.2f}×) | **{fa * 1000:.0f} ms** | {sr:.1f} s / {sn:.1f} s |")


if __name__ == "__main__":
    main()
