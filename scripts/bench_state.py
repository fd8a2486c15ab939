"""State-layer benchmarks for nubes (see scripts/bench.sh state).

Starts its own Azurite (HTTP, SAS signed with Azurite's well-known key), runs the real
nubes binary, and prints a Markdown report. Bounded: every loop has a fixed count and
every wait a timeout; all traffic stays on 127.0.0.1.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import urllib.request

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def sas():
    sv, sp, se = "2021-08-06", "rwdlacup", "2099-01-01T00:00:00Z"
    to_sign = f"{ACCOUNT}\n{sp}\nb\nsco\n\n{se}\n\nhttps,http\n{sv}\n\n"
    sig = base64.b64encode(hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()).decode()
    return f"sv={sv}&ss=b&srt=sco&sp={sp}&se={se}&spr=https%2Chttp&sig={urllib.parse.quote(sig, safe='')}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_azurite(binary, data):
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", data,
         "--silent", "--skipApiVersionCheck", "--loose", "--disableProductStyleUrl"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    url = f"http://127.0.0.1:{port}/{ACCOUNT}"
    req = urllib.request.Request(f"{url}/tfstate?restype=container&{sas()}", method="PUT",
                                 headers={"x-ms-version": "2021-08-06", "Content-Length": "0"})
    urllib.request.urlopen(req).read()
    return proc, url


STACK_50 = textwrap.dedent("""
    terraform {
      backend "azurerm" {}
    }
    resource "terraform_data" "r" {
      count = 50
      input = "resource-${count.index}"
    }
""")


def run(cmd, cwd, env, check=True):
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if check and p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return dt, p


def project(root, name, toml, files):
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "terraform"), exist_ok=True)
    with open(os.path.join(d, "nubes.toml"), "w") as f:
        f.write(toml)
    for fname, text in files.items():
        with open(os.path.join(d, "terraform", fname), "w") as f:
            f.write(text)
    return d


def bench_apply(args, root, env, tf):
    """Apply of a 50-resource stack: nubes (gateway -> Azurite) vs plain Terraform (local backend)."""
    local_times, nubes_times = [], []
    for i in range(args.runs):
        d = os.path.join(root, f"plain{i}")
        os.makedirs(d)
        with open(os.path.join(d, "main.tf"), "w") as f:
            f.write(STACK_50.replace('backend "azurerm" {}', 'backend "local" {}'))
        run([tf, "init", "-input=false"], d, env)
        dt, _ = run([tf, "apply", "-auto-approve", "-input=false"], d, env)
        local_times.append(dt)

        p = project(root, f"nubes{i}", "", {"main.tf": STACK_50})
        run([args.nubes, "tf", f"bench{i}", "--", "init", "-input=false"], p, env)
        dt, _ = run([args.nubes, "tf", f"bench{i}", "--", "apply", "-auto-approve", "-input=false"], p, env)
        nubes_times.append(dt)
    lm, nm = statistics.median(local_times), statistics.median(nubes_times)
    return lm, nm, nm / lm


CLIENT = textwrap.dedent("""\
    #!/usr/bin/env python3
    # Stands in for Terraform: talks to the gateway nubes started, with the credentials
    # nubes passed in TF_HTTP_* variables, and records timings.
    import base64, json, os, sys, time, urllib.request
    mode, out = sys.argv[1], sys.argv[2]
    url = os.environ["TF_HTTP_ADDRESS"]
    auth = "Basic " + base64.b64encode((os.environ["TF_HTTP_USERNAME"] + ":" + os.environ["TF_HTTP_PASSWORD"]).encode()).decode()
    def call(method, body=None):
        req = urllib.request.Request(url, data=body, method=method, headers={"Authorization": auth})
        with urllib.request.urlopen(req) as r:
            return r.read()
    rec = {"start": time.time()}
    if mode == "roundtrip":
        body = open(sys.argv[3], "rb").read()
        t = time.perf_counter(); call("POST", body); rec["write"] = time.perf_counter() - t
        t = time.perf_counter(); got = call("GET"); rec["read"] = time.perf_counter() - t
        assert got == body, "read back different bytes"
    elif mode == "hold":
        time.sleep(float(sys.argv[3]))
    rec["end"] = time.time()
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\\n")
""")


def big_state(path, size):
    blob = "x" * 1000
    doc = {"version": 4, "terraform_version": "1.15.5", "serial": 1, "lineage": "bench-lineage", "outputs": {}, "resources": []}

    def resource(i):
        return {"mode": "managed", "type": "terraform_data", "name": f"r{i}", "provider": "provider[\"terraform.io/builtin/terraform\"]",
                "instances": [{"schema_version": 0, "attributes": {"id": str(i), "input": {"value": blob, "type": "string"}}}]}

    per = len(json.dumps(resource(0))) + 2
    doc["resources"] = [resource(i) for i in range(size // per + 1)]
    data = json.dumps(doc).encode()
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def max_rss_kib(cmd, cwd, env):
    """Peak RSS of one nubes run (Linux ru_maxrss is in KiB), via a wrapper process."""
    code = ("import resource,subprocess,sys\n"
            "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
            "sys.exit(p.stderr) if p.returncode else print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", code] + cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr}")
    return int(out.stdout.strip())


def bench_roundtrip(args, root, env, client):
    p = project(root, "big", "[terraform]\nbinary = \"./client.py\"\n", {"main.tf": "# not used by the stand-in client\n"})
    shutil.copy(client, os.path.join(p, "client.py"))
    size = big_state(os.path.join(root, "big.tfstate"), 10 * 1024 * 1024)
    rec_file = os.path.join(root, "roundtrip.jsonl")
    rss = []
    for i in range(args.runs):
        # serial must not go down between runs: rewrite the serial each time
        with open(os.path.join(root, "big.tfstate")) as f:
            doc = json.load(f)
        doc["serial"] = i + 1
        with open(os.path.join(root, "big.tfstate"), "w") as f:
            json.dump(doc, f)
        rss.append(max_rss_kib([args.nubes, "tf", "big", "--", "roundtrip", rec_file, os.path.join(root, "big.tfstate")], p, env))
    recs = [json.loads(line) for line in open(rec_file)]
    # small state for comparison of RSS
    small = project(root, "small", "[terraform]\nbinary = \"./client.py\"\n", {"main.tf": "#\n"})
    shutil.copy(client, os.path.join(small, "client.py"))
    rss_small = max_rss_kib([args.nubes, "tf", "small", "--", "hold", os.path.join(root, "x.jsonl"), "0"], small, env)
    writes = [r["write"] for r in recs]
    reads = [r["read"] for r in recs]
    return size, statistics.median(writes), statistics.median(reads), statistics.median([w + r for w, r in zip(writes, reads)]), max(rss) / 1024, rss_small / 1024


def bench_handoff(args, root, env, client):
    p = project(root, "handoff", "[terraform]\nbinary = \"./client.py\"\n", {"main.tf": "#\n"})
    shutil.copy(client, os.path.join(p, "client.py"))
    gaps = []
    for i in range(args.runs):
        holder_rec, waiter_rec = os.path.join(root, f"holder{i}.jsonl"), os.path.join(root, f"waiter{i}.jsonl")
        holder = subprocess.Popen([args.nubes, "tf", "handoff", "--", "hold", holder_rec, "2"], cwd=p, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        waiter = subprocess.Popen([args.nubes, "tf", "handoff", "--", "hold", waiter_rec, "0"], cwd=p, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if holder.wait(timeout=60) != 0 or waiter.wait(timeout=60) != 0:
            sys.exit("hand-off run failed")
        h = json.loads(open(holder_rec).read())
        w = json.loads(open(waiter_rec).read())
        gaps.append(w["start"] - h["end"])
    return statistics.median(gaps), max(gaps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nubes", required=True)
    ap.add_argument("--azurite", required=True)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tf = shutil.which("terraform")
    if not tf:
        sys.exit("terraform not found: run scripts/install-prereqs.sh")
    root = tempfile.mkdtemp(prefix="nubes-bench-")
    proc, url = start_azurite(args.azurite, os.path.join(root, "azurite"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "ARM_", "AZURE_", "GITHUB_")) and k not in ("CI", "TF_CLI_CONFIG_FILE")}
    env.update({"NUBES_STATE_ACCOUNT_URL": url, "NUBES_STORAGE_SAS": sas(), "CHECKPOINT_DISABLE": "1"})
    client = os.path.join(root, "client.py")
    with open(client, "w") as f:
        f.write(CLIENT)
    os.chmod(client, 0o755)
    try:
        tfv = subprocess.run([tf, "version"], stdout=subprocess.PIPE, text=True, env=env).stdout.splitlines()[0]
        lm, nm, ratio = bench_apply(args, root, env, tf)
        size, w, r, rt, rss_big, rss_small = bench_roundtrip(args, root, env, client)
        med_gap, max_gap = bench_handoff(args, root, env, client)
    finally:
        proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    print(f"Machine: {os.cpu_count()} cores; {tfv}; Azurite on loopback over HTTP+SAS; median of {args.runs} runs.\n")
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print(f"| `apply` of 50 `terraform_data`: plain Terraform, local backend | {lm:.2f} s | |")
    print(f"| `apply` of 50 `terraform_data`: `nubes tf` through the gateway to Azurite | {nm:.2f} s | |")
    print(f"| ratio nubes / local | **{ratio:.2f}** | ≤ 1.15 |")
    print(f"| 10 MiB state ({size / 1048576:.1f} MiB) write through the gateway | {w * 1000:.0f} ms | |")
    print(f"| 10 MiB state read through the gateway | {r * 1000:.0f} ms | |")
    print(f"| 10 MiB round trip (write + read) | **{rt * 1000:.0f} ms** | ≤ 300 ms |")
    print(f"| nubes peak RSS, 10 MiB state round trip | **{rss_big:.1f} MiB** | < 64 MiB |")
    print(f"| nubes peak RSS, empty state | {rss_small:.1f} MiB | |")
    print(f"| lock hand-off: holder's Terraform exits → waiter's Terraform starts (median / max) | **{med_gap * 1000:.0f} ms** / {max_gap * 1000:.0f} ms | ≤ 1 s |")


if __name__ == "__main__":
    main()
