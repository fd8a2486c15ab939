"""Rollback vs build + deploy of the same release (issue 15), for a static site of 500
files on Azurite: v1 is deployed, then v2 (20 files changed, one added); then
(a) `nubes rollback` puts v1 back from the kept release, no build (it fetches only the
21 files `$web` does not serve), and
(b) `nubes up` builds v1 again and deploys it, as a team without releases would.
The build is `sleep BUILD; cp -r src dist`: the sleep stands in for a frontend build
(`--build-seconds`, default 10), so (b) is build + deploy and (a) what replaces it.
Reuses bench_state.py's helpers."""

import argparse
import os
import shutil
import statistics
import tempfile

import bench_state as b


def stack(url):
    return (
        'terraform {\n  backend "azurerm" {}\n}\n'
        'variable "environment" {\n  type = string\n}\n'
        f'output "static_site_account_url" {{\n  value = "{url}"\n}}\n'
    )


def write_site(d, version):
    src = os.path.join(d, "src")
    shutil.rmtree(src, ignore_errors=True)
    for i in range(500):
        sub = os.path.join(src, "assets", f"d{i % 10}")
        os.makedirs(sub, exist_ok=True)
        # 20 files change between versions, the rest are the same.
        text = f"/* {version if i < 20 else 'v1'} */ console.log({i});\n" + "x" * 2000
        with open(os.path.join(sub, f"f{i}.js"), "w") as f:
            f.write(text)
    with open(os.path.join(src, "index.html"), "w") as f:
        f.write(f"<h1>{version}</h1>")
    if version == "v2":
        with open(os.path.join(src, "new.js"), "w") as f:
            f.write("new")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nubes", required=True)
    ap.add_argument("--azurite", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--build-seconds", type=float, default=10.0)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="nubes-bench-releases-")
    proc, url = b.start_azurite(args.azurite, os.path.join(root, "azurite"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "ARM_", "AZURE_", "GITHUB_")) and k not in ("CI", "TF_CLI_CONFIG_FILE")}
    env.update({"NUBES_STATE_ACCOUNT_URL": url, "NUBES_STORAGE_SAS": b.sas(), "CHECKPOINT_DISABLE": "1"})
    toml = (
        f'[build]\ncommand = "sleep {args.build_seconds}; rm -rf dist && cp -r src dist"\nartifact = "dist"\n'
        '[deploy]\ntarget = "static-site"\n'
    )
    rollback, rebuild = [], []
    try:
        for i in range(args.runs):
            p = b.project(root, f"r{i}", toml, {"main.tf": stack(url)})
            env_name = f"r{i}"
            write_site(p, "v1")
            b.run([args.nubes, "up", env_name], p, env)
            write_site(p, "v2")
            b.run([args.nubes, "up", env_name], p, env)
            t, _ = b.run([args.nubes, "rollback", env_name], p, env)
            rollback.append(t)
            # Back to v2, then v1 again the way it is done without releases.
            b.run([args.nubes, "rollback", env_name, "--to", latest_v2(args.nubes, p, env, env_name)], p, env)
            write_site(p, "v1")
            t, _ = b.run([args.nubes, "up", env_name], p, env)
            rebuild.append(t)
    finally:
        proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    r, u = statistics.median(rollback), statistics.median(rebuild)
    print(f"| static site, 500 files (Azurite, HTTP + SAS; build = sleep {args.build_seconds:g} s + copy) | median of {args.runs} |")
    print("|---|---|")
    print(f"| `nubes up` of v1 again: build + deploy (21 files uploaded, 1 deleted) | {u * 1000:.0f} ms |")
    print(f"| `nubes rollback` to v1: fetch the 21 kept files `$web` lacks, same uploads, no build | {r * 1000:.0f} ms |")
    print(f"| ratio rollback / (build + deploy) | **{r / u:.2f}** (target ≤ 0.2) |")


def latest_v2(nubes, p, env, env_name):
    import json

    _, out = b.run([nubes, "releases", env_name, "--json"], p, env)
    releases = json.loads(out.stdout)["releases"]
    # v2 is the release deployed second: the first record of action `deploy` from the top.
    deploys = [r for r in releases if r["action"] == "deploy"]
    return deploys[0]["id"]


if __name__ == "__main__":
    main()
