"""How long the action's install step takes (issue 14), three ways, on this machine:

1. from source with a cold cargo cache: `cargo install --path . --locked` into a fresh
   target folder (what every job paid before releases; crates already downloaded, so
   this is compile time only);
2. from a release: scripts/install-action.sh against a loopback HTTP server serving a
   release laid out as .github/workflows/release.yml makes it (the binary from 1,
   tar.gz + SHA256SUMS), into an empty tool cache: download, checksum, unpack, check;
3. from source with a warm actions/cache: the build from 1 archived as actions/cache
   archives a path (tar, zstd when present), then per run: unpack into an empty tool
   cache and run scripts/install-action.sh, which finds it (GitHub's cache download
   itself is not measured: no GitHub here).

Prints a Markdown table for BENCHMARKS.md. Usage: scripts/bench.sh install [--runs N]
"""

import argparse
import hashlib
import http.server
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "x86_64-unknown-linux-musl"  # the asset a Linux X64 runner asks for


def version():
    for line in open(os.path.join(ROOT, "Cargo.toml")):
        if line.startswith("version = "):
            return line.split('"')[1]
    raise SystemExit("no version in Cargo.toml")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_", "INPUT_", "ACTION_")) and k != "GH_TOKEN"}
    env.update({"RUNNER_OS": "Linux", "RUNNER_ARCH": "X64"})
    env.update(extra)
    return env


def run_installer(env, work):
    out = os.path.join(work, "out")
    path = os.path.join(work, "path")
    open(out, "w").close()
    open(path, "w").close()
    env = dict(env, GITHUB_OUTPUT=out, GITHUB_PATH=path)
    t = time.perf_counter()
    p = subprocess.run(["bash", os.path.join(ROOT, "scripts/install-action.sh")], env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"install-action.sh failed:\n{p.stdout}\n{p.stderr}")
    return dt, p.stdout, open(out).read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-cold", metavar="BINARY", help="skip 1; use this release binary for 2 and 3")
    args = ap.parse_args()
    v = version()
    work = tempfile.mkdtemp(prefix="nubes-bench-install-")
    try:
        # 1. cold source build
        root = os.path.join(work, "cold-root")
        if args.skip_cold:
            cold = None
            os.makedirs(os.path.join(root, "bin"))
            shutil.copy(args.skip_cold, os.path.join(root, "bin", "nubes"))
        else:
            env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(work, "cold-target"))
            t = time.perf_counter()
            subprocess.run(["cargo", "install", "--path", ROOT, "--locked", "--root", root, "--quiet"], env=env, check=True)
            cold = time.perf_counter() - t
            shutil.rmtree(os.path.join(work, "cold-target"))
        binary = os.path.join(root, "bin", "nubes")
        size = os.path.getsize(binary)

        # 2. from a release on a loopback server
        rel = os.path.join(work, "release", f"v{v}")
        os.makedirs(rel)
        asset = f"nubes-{v}-{TARGET}.tar.gz"
        with tarfile.open(os.path.join(rel, asset), "w:gz") as tar:
            tar.add(binary, arcname="nubes")
        digest = hashlib.sha256(open(os.path.join(rel, asset), "rb").read()).hexdigest()
        with open(os.path.join(rel, "SHA256SUMS"), "w") as f:
            f.write(f"{digest}  {asset}\n")
        archive_size = os.path.getsize(os.path.join(rel, asset))
        handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=os.path.join(work, "release"), **kw)
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        release_times = []
        for i in range(args.runs):
            tc = os.path.join(work, f"tc-release-{i}")
            dt, stdout, _ = run_installer(clean_env(RUNNER_TOOL_CACHE=tc, INPUT_VERSION=v, INPUT_RELEASE_URL=url), work)
            assert "installed from release" in stdout, stdout
            release_times.append(dt)
        server.shutdown()

        # 3. warm actions/cache: what the first resolve asks for, restored from an archive
        probe_tc = os.path.join(work, "tc-probe")
        _, _, outputs = run_installer(clean_env(RUNNER_TOOL_CACHE=probe_tc, ACTION_PATH=ROOT), work)
        planned = dict(line.split("=", 1) for line in outputs.splitlines() if "=" in line)
        rel_root = os.path.relpath(planned["root"], probe_tc)
        zstd = shutil.which("zstd")
        cache_archive = os.path.join(work, "cache.tar" + (".zst" if zstd else ".gz"))
        comp = ["--use-compress-program", "zstd -T0"] if zstd else ["-z"]
        subprocess.run(["tar", *comp, "-cf", cache_archive, "-C", root, "bin"], check=True)
        cache_times = []
        for i in range(args.runs):
            tc = os.path.join(work, f"tc-cache-{i}")
            dest = os.path.join(tc, rel_root)
            os.makedirs(dest)
            t = time.perf_counter()
            subprocess.run(["tar", *(["--use-compress-program", "zstd -d"] if zstd else ["-z"]), "-xf", cache_archive, "-C", dest], check=True)
            dt, stdout, _ = run_installer(clean_env(RUNNER_TOOL_CACHE=tc, ACTION_PATH=ROOT), work)
            cache_times.append(time.perf_counter() - t)
            assert "found in the tool cache" in stdout, stdout

        load = os.getloadavg()[0]
        what = f"binary {os.path.basename(args.skip_cold)}" if args.skip_cold else "release binary"
        print(f"nubes {v}, {what} {size / 1e6:.1f} MB ({archive_size / 1e6:.1f} MB as tar.gz); "
              f"{os.cpu_count()} cores, load average {load:.1f}; median of {args.runs} runs (cold build: 1 run)\n")
        print("| install | time |")
        print("|---|---|")
        print(f"| from a release (loopback server: download, SHA-256, unpack, `--version`) | {statistics.median(release_times):.2f} s |")
        print(f"| from source, warm actions/cache (unpack {'zstd' if zstd else 'gzip'} archive + source hash + `--version`) | {statistics.median(cache_times):.2f} s |")
        print(f"| from source, cold cargo cache (`cargo install --locked`, compile only) | {'%.0f s' % cold if cold is not None else 'not run (--skip-cold)'} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
