"""Before/after of the gateway's state round trip (issue 19): several nubes binaries and
curl, alternating in each run against one Azurite, so a loaded machine slows them all
alike and the ratios stay comparable.

    python3 scripts/bench_state_ab.py --azurite $NUBES_TEST_AZURITE --mib 50 --runs 5 \\
        OLD/nubes NEW/nubes

Each binary must be named `nubes` (the stand-in client checks its parent's name); the
label printed is the name of the folder holding it. Uses `bench_state.py`'s stand-in
Terraform client, state generator and curl floor.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile

import bench_state as b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--azurite", required=True)
    ap.add_argument("--mib", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--client", choices=["python", "curl"], default="python",
                    help="who makes the requests to the gateway (bench_state.client_mode)")
    ap.add_argument("nubes", nargs="+")
    args = ap.parse_args()
    label = {n: os.path.basename(os.path.dirname(os.path.abspath(n))) for n in args.nubes}
    root = tempfile.mkdtemp(prefix="nubes-bench-ab-")
    proc, url = b.start_azurite(args.azurite, os.path.join(root, "azurite"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "ARM_", "AZURE_", "GITHUB_"))}
    env.update({"NUBES_STATE_ACCOUNT_URL": url, "NUBES_STORAGE_SAS": b.sas(), "CHECKPOINT_DISABLE": "1"})
    client = os.path.join(root, "client.py")
    with open(client, "w") as f:
        f.write(b.CLIENT)
    os.chmod(client, 0o755)
    path, rec_file = os.path.join(root, "s.tfstate"), os.path.join(root, "r.jsonl")
    res = {n: [] for n in args.nubes + ["curl"]}
    try:
        for i in range(args.runs):
            data = b.big_state(args.mib << 20, serial=i + 1)
            with open(path, "wb") as f:
                f.write(data)
            del data
            for k, nb in enumerate(args.nubes):
                p = b.project(root, f"p{k}", "[terraform]\nbinary = \"./client.py\"\n", {"main.tf": "#\n"})
                shutil.copy(client, os.path.join(p, "client.py"))
                rec = b.nubes_run([nb, "tf", f"e{k}", "--", b.client_mode(args), rec_file, path], p, env, rec_file)
                res[nb].append((rec["write"], rec["read"], rec["hwm_kib"] / 1024))
            w, r = b.curl_roundtrip(url, env["NUBES_STORAGE_SAS"], path, "curl-ab")
            res["curl"].append((w, r, 0.0))
            print(f"run {i}, load {os.getloadavg()[0]:.1f}: "
                  + ", ".join(f"{label.get(n, n)} {v[-1][0] * 1000:.0f}+{v[-1][1] * 1000:.0f} ms" for n, v in res.items()),
                  flush=True)
    finally:
        proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    floor = [w + r for w, r, _ in res["curl"]]
    print(f"\n| {args.mib} MiB, median of {args.runs} | write | read | round trip | median round trip / median curl PUT + GET | peak RSS (VmHWM) |")
    print("|---|---|---|---|---|---|")
    for n, v in res.items():
        rt = [w + r for w, r, _ in v]
        print(f"| {label.get(n, n)} | {statistics.median(w for w, _, _ in v) * 1000:.0f} ms "
              f"| {statistics.median(r for _, r, _ in v) * 1000:.0f} ms | {statistics.median(rt) * 1000:.0f} ms "
              f"| **{statistics.median(rt) / statistics.median(floor):.2f}** | {max(h for _, _, h in v):.1f} MiB |")


if __name__ == "__main__":
    main()
