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
    # nubes passed in TF_HTTP_* variables, and records timings. After its requests it
    # reads nubes's own peak RSS (VmHWM of its parent, the nubes process that started it
    # and serves the gateway): the figure is nubes's alone, not this client's.
    import base64, hashlib, http.client, json, os, sys, time, urllib.parse
    mode, out = sys.argv[1], sys.argv[2]
    url = urllib.parse.urlparse(os.environ["TF_HTTP_ADDRESS"])
    auth = "Basic " + base64.b64encode((os.environ["TF_HTTP_USERNAME"] + ":" + os.environ["TF_HTTP_PASSWORD"]).encode()).decode()
    def call(method, body=None, headers=None):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
        h = {"Authorization": auth}
        h.update(headers or {})
        conn.request(method, url.path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        if r.status != 200:
            sys.exit(f"{method}: {r.status} {data[:300]!r}")
        return data
    def parent():
        ppid = os.getppid()
        status = open(f"/proc/{ppid}/status").read()
        name = open(f"/proc/{ppid}/comm").read().strip()
        hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        return name, hwm
    rec = {"start": time.time()}
    if mode == "roundtrip":
        body = open(sys.argv[3], "rb").read()
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        t = time.perf_counter(); call("POST", body, {"Content-MD5": md5}); rec["write"] = time.perf_counter() - t
        t = time.perf_counter(); got = call("GET"); rec["read"] = time.perf_counter() - t
        assert got == body, "read back different bytes"
        del got, body
    elif mode == "roundtrip-curl":
        # The same transfers by curl, with the same flags as the floor (`curl_roundtrip`):
        # like for like, so the ratio is the gateway's own cost. The credentials go to
        # curl on its standard input (`-K -`), never on its command line.
        import subprocess
        path = sys.argv[3]
        body = open(path, "rb").read()
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        del body
        cfg = ('user = "' + os.environ["TF_HTTP_USERNAME"] + ":" + os.environ["TF_HTTP_PASSWORD"] + '"\\n').encode()
        target = url.geturl()
        t = time.perf_counter()
        subprocess.run(["curl", "-sSf", "-K", "-", "-X", "POST", "-H", "Content-MD5: " + md5,
                        "-H", "Content-Type: application/json", "--data-binary", "@" + path, "-o", "/dev/null", target],
                       input=cfg, check=True)
        rec["write"] = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run(["curl", "-sSf", "-K", "-", "-o", "/dev/null", target], input=cfg, check=True)
        rec["read"] = time.perf_counter() - t
        # Not timed: the bytes read back are the bytes written.
        assert call("GET") == open(path, "rb").read(), "read back different bytes"
    elif mode == "hold":
        time.sleep(float(sys.argv[3]))
    rec["parent"], rec["hwm_kib"] = parent()
    rec["end"] = time.time()
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\\n")
""")


def big_state(size, serial=1):
    """A Terraform-shaped state document of about `size` bytes (bytes, not a file)."""
    blob = "x" * 1000

    def resource(i):
        return {"mode": "managed", "type": "terraform_data", "name": f"r{i}", "provider": "provider[\"terraform.io/builtin/terraform\"]",
                "instances": [{"schema_version": 0, "attributes": {"id": str(i), "input": {"value": blob, "type": "string"}}}]}

    per = len(json.dumps(resource(0))) + 2
    doc = {"version": 4, "terraform_version": "1.15.5", "serial": serial, "lineage": "bench-lineage", "outputs": {},
           "resources": [resource(i) for i in range(size // per + 1)]}
    return json.dumps(doc).encode()


def nubes_run(cmd, cwd, env, rec_file):
    """Run `nubes tf ... -- <client mode> <rec_file> ...`; the client's record (timings and
    nubes's own VmHWM in KiB)."""
    if os.path.exists(rec_file):
        os.remove(rec_file)
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    rec = json.loads(open(rec_file).read().splitlines()[-1])
    if rec["parent"] != "nubes":
        sys.exit(f"the client's parent is {rec['parent']!r}, not nubes: VmHWM would be someone else's")
    return rec


def curl_roundtrip(url, sas, path, name):
    """The floor: the same bytes PUT and GET straight to Azurite with curl."""
    blob = f"{url}/tfstate/{name}?{sas}"
    t = time.perf_counter()
    subprocess.run(["curl", "-sSf", "-X", "PUT", "-H", "x-ms-blob-type: BlockBlob", "-H", "x-ms-version: 2021-08-06",
                    "-H", "Content-Type: application/json", "--data-binary", f"@{path}", "-o", "/dev/null", blob], check=True)
    w = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(["curl", "-sSf", "-H", "x-ms-version: 2021-08-06", "-o", "/dev/null", blob], check=True)
    return w, time.perf_counter() - t


def client_mode(args):
    """`--client python` (the default, what earlier runs used): a Python stand-in times
    its own requests; `--client curl`: the stand-in has curl make them, with the same
    flags as the floor, so both sides of the ratio pay the same client costs."""
    return "roundtrip-curl" if args.client == "curl" else "roundtrip"


def bench_roundtrip(args, root, env, client, url):
    """Per state size: write + read through the gateway (alternating with curl's PUT + GET
    of the same bytes straight to Azurite), and nubes's own peak RSS."""
    rows = []
    for mib in args.sizes:
        name = f"big{mib}"
        p = project(root, name, "[terraform]\nbinary = \"./client.py\"\n", {"main.tf": "# not used by the stand-in client\n"})
        shutil.copy(client, os.path.join(p, "client.py"))
        path = os.path.join(root, f"{name}.tfstate")
        rec_file = os.path.join(root, f"{name}.jsonl")
        recs, floor = [], []
        for i in range(args.runs):
            # The serial must not go down between runs.
            data = big_state(mib * 1024 * 1024, serial=i + 1)
            with open(path, "wb") as f:
                f.write(data)
            size = len(data)
            del data
            recs.append(nubes_run([args.nubes, "tf", name, "--", client_mode(args), rec_file, path], p, env, rec_file))
            floor.append(curl_roundtrip(url, env["NUBES_STORAGE_SAS"], path, f"curl-{name}"))
        os.remove(path)
        rows.append({"mib": mib, "size": size,
                     "write": statistics.median(x["write"] for x in recs),
                     "read": statistics.median(x["read"] for x in recs),
                     "rt": statistics.median(x["write"] + x["read"] for x in recs),
                     "curl": statistics.median(a + b for a, b in floor),
                     "ratio": statistics.median((x["write"] + x["read"]) / (a + b) for x, (a, b) in zip(recs, floor)),
                     "hwm": max(x["hwm_kib"] for x in recs) / 1024})
    small = project(root, "small", "[terraform]\nbinary = \"./client.py\"\n", {"main.tf": "#\n"})
    shutil.copy(client, os.path.join(small, "client.py"))
    rec_file = os.path.join(root, "x.jsonl")
    empty = nubes_run([args.nubes, "tf", "small", "--", "hold", rec_file, "0"], small, env, rec_file)["hwm_kib"] / 1024
    return rows, empty


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
    ap.add_argument("--sizes", default="1,10,50,100,250", help="state sizes in MiB for the round trip")
    ap.add_argument("--client", choices=["python", "curl"], default="python",
                    help="who makes the round trip's requests to the gateway (see client_mode)")
    args = ap.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",")]
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
        rows, rss_empty = bench_roundtrip(args, root, env, client, url)
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
    print(f"| nubes peak RSS (its own VmHWM), empty state | {rss_empty:.1f} MiB | |")
    print(f"| lock hand-off: holder's Terraform exits → waiter's Terraform starts (median / max) | **{med_gap * 1000:.0f} ms** / {max_gap * 1000:.0f} ms | ≤ 1 s |")
    print()
    print("State round trip through the gateway (POST then GET by a stand-in Terraform) vs curl's PUT + GET of the")
    print("same bytes straight to Azurite, alternating; nubes's peak RSS is its own VmHWM, read by the stand-in.\n")
    print("| state | write | read | round trip | curl PUT + GET | ratio | nubes peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['mib']} MiB ({row['size'] / 1048576:.1f}) | {row['write'] * 1000:.0f} ms | {row['read'] * 1000:.0f} ms | "
              f"{row['rt'] * 1000:.0f} ms | {row['curl'] * 1000:.0f} ms | **{row['ratio']:.2f}** | **{row['hwm']:.1f} MiB** |")


if __name__ == "__main__":
    main()
