#!/usr/bin/env python3
"""A hostile client of nubes's loopback state gateway, for tests/it/gateway.rs.

Run while nubes holds a gateway open: from a Terraform `local-exec` provisioner
(`probe`), or as a stand-in Terraform binary under `nubes tf <env> -- guard`. It reads
the gateway's address and credentials from the TF_HTTP_* variables nubes gives
Terraform, makes its requests, and writes what it saw as JSON to $GATEWAY_REPORT.
"""
import base64
import hashlib
import http.client
import json
import os
import socket
import sys
import urllib.parse

URL = urllib.parse.urlparse(os.environ["TF_HTTP_ADDRESS"])
USER = os.environ["TF_HTTP_USERNAME"]
PASSWORD = os.environ["TF_HTTP_PASSWORD"]
report = {"address": os.environ["TF_HTTP_ADDRESS"], "host": URL.hostname, "port": URL.port}


def request(method, path, body=b"", auth=(USER, PASSWORD), raw_auth=None, host=None):
    conn = http.client.HTTPConnection(host or URL.hostname, URL.port, timeout=30)
    headers = {}
    if raw_auth is not None:
        headers["Authorization"] = raw_auth
    elif auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = "Basic " + token
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    result = {
        "status": resp.status,
        "www_authenticate": resp.getheader("WWW-Authenticate"),
        "body": resp.read().decode("utf-8", "replace"),
    }
    conn.close()
    return result


def state(lineage, serial):
    return json.dumps({"version": 4, "serial": serial, "lineage": lineage,
                       "outputs": {}, "resources": []}).encode()


def probe():
    path = URL.path
    wrong_user = ("terraform", PASSWORD)
    wrong_password = (USER, PASSWORD[:-1] + ("A" if PASSWORD[-1] != "A" else "B"))
    for name, auth, raw in [
        ("none", None, None),
        ("wrong_user", wrong_user, None),
        ("wrong_password", wrong_password, None),
        ("empty_password", (USER, ""), None),
        ("bearer_password", None, "Bearer " + PASSWORD),
        ("password_only", None, "Basic " + base64.b64encode(PASSWORD.encode()).decode()),
    ]:
        for method in ["GET", "POST", "DELETE", "LOCK", "UNLOCK", "PUT", "OPTIONS"]:
            report[f"{name} {method}"] = request(method, path, state("x", 999), auth, raw)
    for other in ["/", "/state", "/state/bob", path + "/", path + "/../bob", "//state/" + path,
                  path.upper(), path + "%00", "/metrics"]:
        report[f"other path {other}"] = request("GET", other)
    for method in ["PUT", "PATCH", "OPTIONS", "TRACE", "HEAD"]:
        report[f"method {method}"] = request(method, path)
    # Where the listening socket is bound, from the kernel's own table.
    port_hex = f"{URL.port:04X}"
    bound = []
    for table in ["/proc/net/tcp", "/proc/net/tcp6"]:
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    local, state_code = line.split()[1], line.split()[3]
                    if local.endswith(":" + port_hex) and state_code == "0A":
                        bound.append(local)
        except OSError:
            pass
    report["listening"] = bound
    # The machine's own non-loopback address, if it has one, must not reach the gateway.
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("192.0.2.1", 9))
        own = s.getsockname()[0]
        s.close()
    except OSError:
        own = None
    report["own_address"] = own
    if own and not own.startswith("127."):
        try:
            socket.create_connection((own, URL.port), timeout=5).close()
            report["own_address_connect"] = "connected"
        except OSError as e:
            report["own_address_connect"] = f"refused: {e}"


def guard():
    path = URL.path
    report["first"] = request("POST", path, state("aaa", 3))
    report["other lineage"] = request("POST", path, state("bbb", 9))
    report["lower serial"] = request("POST", path, state("aaa", 2))
    report["negative serial"] = request("POST", path, state("aaa", -1))
    report["array"] = request("POST", path, b'[4, "aaa", 9]')
    report["truncated"] = request("POST", path, state("aaa", 9)[:20])
    report["nested"] = request("POST", path, b"[" * 100000 + b"]" * 100000)
    report["lineage newline"] = request("POST", path, state("aaa\n::warning::x", 9))
    report["lineage lookalike"] = request("POST", path, state("\u0430aa", 9))
    report["after"] = request("GET", path)


def odd_lineage():
    report["first"] = request("POST", URL.path, state("a\n::warning::x\u202e", 1))
    report["after"] = request("GET", URL.path)


def big_state(lineage, serial, size):
    """A Terraform-shaped state document of about `size` bytes."""
    filler = "x" * 1000
    resources = [{"mode": "managed", "type": "terraform_data", "name": f"r{i}",
                  "instances": [{"attributes": {"id": str(i), "input": filler}}]}
                 for i in range(size // 1100 + 1)]
    return json.dumps({"version": 4, "serial": serial, "lineage": lineage,
                       "outputs": {}, "resources": resources}).encode()


def md5_header(body):
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def post(body, md5=None):
    """POST a state document with Terraform's Content-MD5 header (or a given one)."""
    conn = http.client.HTTPConnection(URL.hostname, URL.port, timeout=300)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    headers = {"Authorization": "Basic " + token}
    if not os.environ.get("GATEWAY_NO_MD5"):
        headers["Content-MD5"] = md5 or md5_header(body)
    conn.request("POST", URL.path, body=body, headers=headers)
    resp = conn.getresponse()
    result = {"status": resp.status, "body": resp.read().decode("utf-8", "replace")}
    conn.close()
    return result


def get_digest():
    """GET the state; its length and SHA-256 (not the 100 MiB themselves)."""
    conn = http.client.HTTPConnection(URL.hostname, URL.port, timeout=300)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    conn.request("GET", URL.path, headers={"Authorization": "Basic " + token})
    resp = conn.getresponse()
    digest, n = hashlib.sha256(), 0
    while True:
        piece = resp.read(1 << 20)
        if not piece:
            break
        digest.update(piece)
        n += len(piece)
    conn.close()
    return {"status": resp.status, "len": n, "sha256": digest.hexdigest()}


def big():
    """A 100 MiB state through the gateway: written, read back, and the guard and the
    Content-MD5 check on bodies of the same size."""
    size = int(os.environ.get("BIG_STATE_MIB", "100")) << 20
    doc = big_state("big-lineage", 5, size)
    with open(os.environ["GATEWAY_REPORT"] + ".sent", "wb") as f:
        f.write(doc)
    report["sent"] = {"len": len(doc), "sha256": hashlib.sha256(doc).hexdigest()}
    report["write"] = post(doc)
    report["read"] = get_digest()
    other = doc.replace(b'"lineage": "big-lineage"', b'"lineage": "big-lineagf"', 1)
    report["other lineage"] = post(other)
    del other
    lower = doc.replace(b'"serial": 5', b'"serial": 4', 1)
    report["lower serial"] = post(lower)
    del lower
    newer = doc.replace(b'"serial": 5', b'"serial": 6', 1)
    report["wrong md5"] = post(newer, md5=md5_header(doc))
    truncated = newer[: len(newer) - 10]
    report["truncated"] = post(truncated)
    del newer, truncated
    report["after"] = get_digest()


def outage():
    """A first state, then a second, larger one sent in two halves: between them the test
    stops storage (it waits for the file `<report>.half`, then for `<report>.go`)."""
    import time
    first = big_state("outage-lineage", 1, 1 << 20)
    report["first"] = post(first)
    second = big_state("outage-lineage", 2, 40 << 20)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection(URL.hostname, URL.port, timeout=300)
    conn.putrequest("POST", URL.path)
    conn.putheader("Authorization", "Basic " + token)
    # Terraform always declares the MD5 (nubes then streams one Put Blob); a client that
    # does not gets the staged-block path.
    if not os.environ.get("OUTAGE_NO_MD5"):
        conn.putheader("Content-MD5", md5_header(second))
    conn.putheader("Content-Length", str(len(second)))
    conn.endheaders()
    half = len(second) // 2
    base = os.environ["GATEWAY_REPORT"]
    try:
        conn.send(second[:half])
        open(base + ".half", "w").close()
        for _ in range(600):
            if os.path.exists(base + ".go"):
                break
            time.sleep(0.1)
        conn.send(second[half:])
    except OSError as e:
        report["send error"] = str(e)
    try:
        resp = conn.getresponse()
        report["second"] = {"status": resp.status, "body": resp.read().decode("utf-8", "replace")}
    except OSError as e:
        report["second"] = {"status": None, "body": str(e)}


def valid():
    """A valid 1 MiB state (serial 1), the one the `invalid` bodies must not replace."""
    report["write"] = post(big_state("kept-lineage", 1, 1 << 20))


def invalid():
    """Two 48 MiB bodies the parser refuses: one that is not JSON from its first byte,
    and one whose first 6 MiB are a well-formed state head and resources, then bytes
    that are not JSON. Sent whole, as Terraform would send them."""
    size = 48 << 20
    report["not json"] = post(b"this is not JSON " + b"x" * size)
    head = big_state("kept-lineage", 2, 6 << 20)
    # Cut the document before its last resource and carry on with garbage.
    cut = head.rindex(b'{"mode"')
    broken = head[:cut] + b"not JSON " + b"y" * (size - cut)
    report["broken"] = {"len": len(broken), **post(broken)}
    report["after"] = get_digest()


{"probe": probe, "guard": guard, "odd_lineage": odd_lineage, "big": big, "outage": outage,
 "valid": valid, "invalid": invalid}[sys.argv[1]]()
with open(os.environ["GATEWAY_REPORT"], "w") as f:
    json.dump(report, f, indent=1)
# Like Terraform after a refused write: fail, so nubes's failure path is exercised too.
sys.exit(int(os.environ.get("GATEWAY_EXIT", "0")))
