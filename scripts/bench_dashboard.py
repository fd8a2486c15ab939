"""`nubes dashboard` over 1,000 environments (issue 11): wall time and storage requests.
Creates the state blobs (with the lifecycle metadata nubes records, and a few kept
versions each as blob snapshots) directly in a local Azurite, then renders the page."""

import argparse
import concurrent.futures
import datetime
import os
import re
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
    ap.add_argument("--versions", type=int, default=3, help="kept versions (snapshots) per environment")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="nubes-bench-dashboard-")
    proc, url = b.start_azurite(args.azurite, os.path.join(root, "azurite"))
    sas = b.sas()
    now = datetime.datetime.now(datetime.timezone.utc)

    def stamp(days):
        return (now - datetime.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def req(name, method, query="", headers=None, data=b""):
        q = f"{query}&{sas}" if query else sas
        r = urllib.request.Request(f"{url}/tfstate/{name}?{q}", data=data, method=method,
                                   headers={"x-ms-version": "2021-08-06", **(headers or {})})
        urllib.request.urlopen(r).read()

    def put(i):
        name = f"env{i:04}.terraform.tfstate"
        meta = {
            "nubesserial": str(i), "nubesactivityat": stamp(i % 20), "nubesappliedat": stamp(i % 30),
            "nubescreatedat": stamp(40), "nubescommit": f"{i:040x}", "nubesbranch": f"env-env{i:04}",
            "nubesappcommit": f"{i * 31:040x}", "nubesartifact": "sha256:" + "ab" * 32,
            "nubesdeploy": "succeeded", "nubeshealth": "unhealthy" if i % 7 == 0 else "healthy",
            "nubeshealthat": stamp(i % 20), "nubesappurl": f"https://env{i:04}.example.net/",
            "nubesdrift": "drifted" if i % 9 == 0 else "clean", "nubesdriftat": stamp(1),
            "nubesactor": f"dev{i % 7}",
        }
        headers = {"x-ms-blob-type": "BlockBlob", **{f"x-ms-meta-{k}": v for k, v in meta.items()}}
        req(name, "PUT", headers=headers, data=b'{"version":4}')
        for _ in range(args.versions):
            req(name, "PUT", "comp=snapshot")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "ARM_", "AZURE_", "GITHUB_")) and k != "CI"}
    env.update({"NUBES_STATE_ACCOUNT_URL": url, "NUBES_STORAGE_SAS": sas})
    results = {}
    plain = []
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(args.envs)))
        p = b.project(root, "p", "", {"main.tf": "#\n"})
        for _ in range(args.runs):
            for variant in ([], ["--versions"]):
                t = time.perf_counter()
                out = subprocess.run([args.nubes, "-v", "dashboard", *variant], cwd=p, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, check=True)
                took = time.perf_counter() - t
                lines = [line for line in out.stderr.splitlines() if line.startswith("debug: storage ")]
                r = results.setdefault(" ".join(variant), {"times": [], "list_ms": []})
                r["times"].append(took)
                r["requests"] = len(lines)
                r["listings"] = sum(1 for line in lines if "GET /devstoreaccount1/tfstate ->" in line)
                r["list_ms"].append(sum(int(m.group(1)) for line in lines if (m := re.search(r"\((\d+) ms\)$", line))))
                r["shown"] = re.search(r"\((\d+) environments\)", out.stdout).group(1)
            # For comparison: `nubes list` over the same storage.
            t = time.perf_counter()
            subprocess.run([args.nubes, "list", "--json"], cwd=p, env=env, stdout=subprocess.DEVNULL, check=True)
            plain.append(time.perf_counter() - t)
        size = os.path.getsize(os.path.join(p, ".nubes", "dashboard", "index.html"))
    finally:
        proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    items = args.envs * (1 + args.versions)
    print(f"Machine: {os.cpu_count()} cores; {args.envs} environments with {args.versions} kept versions each "
          f"in Azurite over HTTP+SAS; median of {args.runs} runs.\n")
    print("| command | whole process | of which storage answering | requests (listings) | environments shown | target |")
    print("|---|---|---|---|---|---|")
    for variant, r in results.items():
        listed = f"{items} blobs and snapshots" if variant else f"{args.envs} blobs"
        command = f"nubes dashboard {variant}".strip()
        print(f"| `{command}` ({listed} listed) | **{statistics.median(r['times']) * 1000:.0f} ms** "
              f"| {statistics.median(r['list_ms']):.0f} ms | **{r['requests']}** ({r['listings']}) | {r['shown']} of {args.envs} | ≤ 1 s, 1 listing |")
    print(f"| `nubes list --json`, for comparison | {statistics.median(plain) * 1000:.0f} ms | | | | |")
    print(f"\nPage size (with --versions): {size / 1024:.0f} KiB.")

if __name__ == "__main__":
    main()
