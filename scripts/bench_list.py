"""`nubes list` over many environments (issues 5, 19): wall time and storage requests,
side by side with `az storage blob list --include m` and the Python SDK's
`list_blobs(include=["metadata"])` over the same container (alternating runs).

Creates the state blobs with the metadata nubes records directly in a local Azurite.
Metadata is written through http.client with the exact header names nubes writes
(`x-ms-meta-nubesserial`, ...): urllib.request would title-case them.
"""

import argparse
import base64
import concurrent.futures
import hashlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse

import bench_state as b


def put_states(url, sas, count):
    parsed = urllib.parse.urlparse(url)

    def put(i):
        body = json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": i, "lineage": f"lineage-{i:05}",
                           "outputs": {}, "resources": []}).encode()
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        headers = {
            "x-ms-version": "2021-08-06", "x-ms-blob-type": "BlockBlob", "Content-Type": "application/json",
            "x-ms-blob-content-md5": md5,
            "x-ms-meta-nubesserial": str(i), "x-ms-meta-nubeslineage": f"lineage-{i:05}",
            "x-ms-meta-nubesresources": "0", "x-ms-meta-nubeswrittenmd5": md5,
            "x-ms-meta-nubesappliedat": "2026-11-22T10:00:00Z", "x-ms-meta-nubesactor": f"dev{i % 7}",
            "x-ms-meta-nubescommit": f"{i:040x}", "x-ms-meta-nubesbranch": f"env-e{i:05}",
        }
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        conn.request("PUT", f"{parsed.path}/tfstate/e{i:05}.terraform.tfstate?{sas}", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        conn.close()
        if r.status != 201:
            raise SystemExit(f"put {i}: {r.status}")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(count)))


PEER_SDK = """
import sys, time
from azure.storage.blob import ContainerClient
url, sas = sys.argv[1], sys.argv[2]
c = ContainerClient.from_container_url(f"{url}/tfstate?{sas}")
n = sum(1 for b in c.list_blobs(include=["metadata"]) if b.metadata.get("nubesserial") is not None)
print(n)
"""


def timed(cmd, env, cwd=None):
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd[:4])}...\n{p.stderr[-2000:]}")
    return dt, p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nubes", required=True)
    ap.add_argument("--azurite", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--envs", default="1000,10000")
    ap.add_argument("--peer-bin", help="folder with the peers' `python` and `az` (the benchmark's virtualenv)")
    args = ap.parse_args()
    counts = [int(x) for x in args.envs.split(",")]
    rows = []
    for count in counts:
        root = tempfile.mkdtemp(prefix="nubes-bench-list-")
        proc, url = b.start_azurite(args.azurite, os.path.join(root, "azurite"))
        sas = b.sas()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "ARM_", "AZURE_", "GITHUB_")) and k != "CI"}
        env.update({"NUBES_STATE_ACCOUNT_URL": url, "NUBES_STORAGE_SAS": sas})
        peer_env = dict(env, AZURE_CONFIG_DIR=os.path.join(root, "az"), AZURE_CORE_COLLECT_TELEMETRY="no",
                        AZURE_CORE_ONLY_SHOW_ERRORS="yes")
        try:
            put_states(url, sas, count)
            p = b.project(root, "p", "", {"main.tf": "#\n"})
            nubes, az, sdk, requests = [], [], [], 0
            for _ in range(args.runs):
                dt, out = timed([args.nubes, "-v", "list", "--json"], env, p)
                nubes.append(dt)
                requests = sum(1 for line in out.stderr.splitlines() if line.startswith("debug: storage "))
                doc = json.loads(out.stdout)
                assert doc["count"] == count, doc["count"]
                serials = sum(1 for e in doc["environments"] if e.get("serial") is not None)
                # The metadata was read: every environment shows its serial and actor.
                assert serials == count, f"{serials} of {count} environments show a serial"
                if args.peer_bin:
                    dt, out = timed([os.path.join(args.peer_bin, "az"), "storage", "blob", "list", "--container-name", "tfstate",
                                     "--blob-endpoint", url, "--sas-token", sas, "--include", "m", "--num-results", "*",
                                     "--output", "json"], peer_env)
                    assert len(json.loads(out.stdout)) == count
                    az.append(dt)
                    dt, out = timed([os.path.join(args.peer_bin, "python"), "-c", PEER_SDK, url, sas], peer_env)
                    assert int(out.stdout) == count, out.stdout
                    sdk.append(dt)
            rows.append((count, statistics.median(nubes), requests, serials,
                         statistics.median(az) if az else None, statistics.median(sdk) if sdk else None))
        finally:
            proc.kill()
            shutil.rmtree(root, ignore_errors=True)
    print(f"Machine: {os.cpu_count()} cores; environments in Azurite over HTTP+SAS; median of {args.runs} alternating runs.\n")
    print("| environments | `nubes list --json` | storage requests | serials shown | `az storage blob list --include m` | Python SDK `list_blobs` | nubes vs az | nubes vs SDK |")
    print("|---|---|---|---|---|---|---|---|")
    for count, n, req, serials, az, sdk in rows:
        fmt = lambda v: f"{v * 1000:.0f} ms" if v else "—"
        ratio = lambda v: f"**{v / n:.1f}×**" if v else "—"
        print(f"| {count} | **{n * 1000:.0f} ms** | {req} | {serials} | {fmt(az)} | {fmt(sdk)} | {ratio(az)} | {ratio(sdk)} |")


if __name__ == "__main__":
    main()
