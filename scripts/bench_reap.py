"""`nubes reap` of 20 environments, --jobs 8 vs --jobs 1 (issue 5)."""

import argparse
import os
import shutil
import subprocess
import tempfile
import time

import bench_state as b

STACK = """
terraform {
  backend "azurerm" {}
}
variable "environment" {
  type = string
}
resource "terraform_data" "app" {
  input = var.environment
  # Stands in for a cloud deletion that takes a while (Azure's take minutes).
  provisioner "local-exec" {
    when    = destroy
    command = "sleep %(wait)s"
  }
}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nubes", required=True)
    ap.add_argument("--azurite", required=True)
    ap.add_argument("--envs", type=int, default=20)
    ap.add_argument("--wait", type=float, default=0, help="seconds each deletion waits (destroy-time provisioner)")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="nubes-bench-reap-")
    proc, url = b.start_azurite(args.azurite, os.path.join(root, "azurite"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "ARM_", "AZURE_", "GITHUB_")) and k not in ("CI", "TF_CLI_CONFIG_FILE")}
    env.update({"NUBES_STATE_ACCOUNT_URL": url, "NUBES_STORAGE_SAS": b.sas(), "CHECKPOINT_DISABLE": "1"})
    results = {}
    try:
        for jobs in (1, 8):
            p = b.project(root, f"jobs{jobs}", f'[state]\nkey = "j{jobs}-{{env}}.terraform.tfstate"\n', {"main.tf": STACK % {"wait": args.wait}})
            for i in range(args.envs):
                b.run([args.nubes, "up", f"e{i:02}"], p, env)
            time.sleep(2)
            t, out = b.run([args.nubes, "reap", "--older-than", "1s", "--jobs", str(jobs)], p, env)
            assert f"{args.envs} torn down" in out.stdout, out.stdout
            results[jobs] = t
    finally:
        proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    print(f"Machine: {os.cpu_count()} cores; {args.envs} environments of one `terraform_data` each, torn down with `terraform destroy`, each deletion waiting {args.wait:g} s.\n")
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print(f"| `nubes reap --jobs 1` | {results[1]:.2f} s | |")
    print(f"| `nubes reap --jobs 8` | {results[8]:.2f} s | |")
    print(f"| ratio | **{results[8] / results[1]:.2f}** | ≤ 0.3 |")


if __name__ == "__main__":
    main()
