"""`nubes list` over 1,000 environments (issue 5): wall time and storage requests.
Creates the state blobs (with nubes's metadata) directly in a local Azurite."""

import argparse
import concurrent.futures
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request

import bench_state as b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nubes", required=True)
    ap.add_argument("--azurite", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--envs", type=int, default=1000)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="nubes-bench-list-")
    proc, url = b.start_azurite(args.azurite, os.path.join(root, "azurite"))
    sas = b.sas()

    def put(i):
        req = urllib.request.Request(
            f"{url}/tfstate/env{i:04}.terraform.tfstate?{sas}", data=b'{"version":4}', method="PUT",
            headers={"x-ms-version": "2021-08-06", "x-ms-blob-type": "BlockBlob", "x-ms-meta-nubesserial": str(i),
                     "x-ms-meta-nubesappliedat": "2026-11-22T10:00:00Z", "x-ms-meta-nubesactor": f"dev{i % 7}"})
        urllib.request.urlopen(req).read()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "ARM_", "AZURE_", "GITHUB_")) and k != "CI"}
    env.update({"NUBES_STATE_ACCOUNT_URL": url, "NUBES_STORAGE_SAS": sas})
    times, requests = [], 0
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(args.envs)))
        p = b.project(root, "p", "", {"main.tf": "#\n"})
        for _ in range(args.runs):
            t = time.perf_counter()
            out = subprocess.run([args.nubes, "-v", "list", "--json"], cwd=p, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
            times.append(time.perf_counter() - t)
            requests = sum(1 for line in out.stderr.splitlines() if line.startswith("debug: storage "))
            assert f'"count": {args.envs}' in out.stdout
    finally:
        proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    print(f"Machine: {os.cpu_count()} cores; {args.envs} environments in Azurite over HTTP+SAS; median of {args.runs} runs.\n")
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print(f"| `nubes list --json` over {args.envs} environments (whole process) | **{statistics.median(times) * 1000:.0f} ms** | ≤ 1 s |")
    print(f"| storage HTTP requests | **{requests}** | ≤ 3 |")


if __name__ == "__main__":
    main()
