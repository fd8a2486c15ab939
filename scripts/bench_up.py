"""Critical-path benchmark of `nubes up` (issue 4): with an apply of ~A s and a build of
~B s, the build runs alongside the infrastructure, so `up` should take about
max(A, B) + deploy, not A + B + deploy. Reuses bench_state.py's helpers."""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import bench_state as b

STACK = """
terraform {
  backend "azurerm" {}
}
variable "environment" {
  type = string
}
resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "sleep %(apply)s"
  }
}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nubes", required=True)
    ap.add_argument("--azurite", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="nubes-bench-up-")
    proc, url = b.start_azurite(args.azurite, os.path.join(root, "azurite"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "ARM_", "AZURE_", "GITHUB_")) and k not in ("CI", "TF_CLI_CONFIG_FILE")}
    env.update({"NUBES_STATE_ACCOUNT_URL": url, "NUBES_STORAGE_SAS": b.sas(), "CHECKPOINT_DISABLE": "1"})
    s = args.seconds
    deploy = '[deploy]\ntarget = "command"\ncommand = ["true"]\n'
    both, infra_only, build_only = [], [], []
    try:
        for i in range(args.runs):
            # A: infrastructure alone (trivial build).
            p = b.project(root, f"a{i}", f'[build]\ncommand = "mkdir -p out"\nartifact = "out"\n{deploy}', {"main.tf": STACK % {"apply": s}})
            t, _ = b.run([args.nubes, "up", f"a{i}"], p, env)
            infra_only.append(t)
            # B: the build alone.
            d = os.path.join(root, f"b{i}")
            os.makedirs(d)
            t, _ = b.run(["sh", "-c", f"sleep {s}; mkdir -p out"], d, env)
            build_only.append(t)
            # Both, through nubes.
            p = b.project(root, f"ab{i}", f'[build]\ncommand = "sleep {s}; mkdir -p out"\nartifact = "out"\n{deploy}', {"main.tf": STACK % {"apply": s}})
            t, _ = b.run([args.nubes, "up", f"ab{i}"], p, env)
            both.append(t)
    finally:
        proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    a, bb, ab = statistics.median(infra_only), statistics.median(build_only), statistics.median(both)
    print(f"Machine: {os.cpu_count()} cores; apply sleeps {s:g} s, build sleeps {s:g} s; median of {args.runs} runs.\n")
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print(f"| A: `nubes up` with a trivial build (infrastructure + deploy) | {a:.2f} s | |")
    print(f"| B: the build alone | {bb:.2f} s | |")
    print(f"| sequential figure A + B | {a + bb:.2f} s | |")
    print(f"| `nubes up` with both | {ab:.2f} s | |")
    print(f"| ratio to the sequential figure | **{ab / (a + bb):.2f}** | ≤ 0.6 |")


if __name__ == "__main__":
    main()
