"""`nubes drift` over many environments, each judged against its own branch, --jobs 1
vs --jobs 4 (issue 11). Each environment `eNN` has its own branch `env-eNN` (with its own
variable default) and is brought up from a checkout of that branch; `drift` then runs
from the default branch, whose configuration differs from every one of them."""

import argparse
import os
import shutil
import subprocess
import tempfile

import bench_state as b

STACK = """
terraform {
  backend "azurerm" {}
}
variable "environment" {
  type = string
}
variable "size" {
  type    = string
  default = "%(size)s"
}
resource "terraform_data" "app" {
  input = "${var.environment}-${var.size}"
}
"""


def git(args, cwd):
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args],
                   cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nubes", required=True)
    ap.add_argument("--azurite", required=True)
    ap.add_argument("--envs", type=int, default=50)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="nubes-bench-drift-")
    proc, url = b.start_azurite(args.azurite, os.path.join(root, "azurite"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "ARM_", "AZURE_", "GITHUB_")) and k not in ("CI", "TF_CLI_CONFIG_FILE")}
    env.update({"NUBES_STATE_ACCOUNT_URL": url, "NUBES_STORAGE_SAS": b.sas(), "CHECKPOINT_DISABLE": "1"})
    results = {}
    try:
        p = b.project(root, "project", "[project]\nname = \"bench\"\n", {"main.tf": STACK % {"size": "main"}})
        with open(os.path.join(p, ".gitignore"), "w") as f:
            f.write(".nubes/\n")
        git(["init", "-q", "-b", "main"], p)
        git(["add", "-A"], p)
        git(["commit", "-q", "-m", "main"], p)
        for i in range(args.envs):
            name = f"e{i:02}"
            git(["checkout", "-q", "-b", f"env-{name}", "main"], p)
            with open(os.path.join(p, "terraform", "main.tf"), "w") as f:
                f.write(STACK % {"size": f"size{i}"})
            git(["commit", "-q", "-am", name], p)
            b.run([args.nubes, "up", name], p, env)
        git(["checkout", "-q", "main"], p)
        # The first run extracts every branch and runs `terraform init` in each new
        # working copy; the timed runs reuse them, as a CI cache of .nubes/ would.
        t, out = b.run([args.nubes, "drift", "--jobs", "4"], p, env)
        results["first"] = t
        for jobs in (1, 4):
            t, out = b.run([args.nubes, "drift", "--jobs", str(jobs)], p, env)
            assert f"{args.envs} checked: 0 drifted, 0 with pending changes" in out.stdout, out.stdout
            results[jobs] = t
    finally:
        proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    print(f"Machine: {os.cpu_count()} cores; {args.envs} environments of one `terraform_data` each, every one on its own branch `env-eNN` "
          "(configuration different from the default branch's), all clean.\n")
    print("| benchmark | result |")
    print("|---|---|")
    print(f"| `nubes drift --jobs 4`, first run (extract every branch, `terraform init` each) | {results['first']:.2f} s |")
    print(f"| `nubes drift --jobs 1` | {results[1]:.2f} s ({results[1] / args.envs:.2f} s per environment) |")
    print(f"| `nubes drift --jobs 4` | {results[4]:.2f} s ({results[4] / args.envs:.2f} s per environment) |")
    print(f"| ratio jobs 4 / jobs 1 | **{results[4] / results[1]:.2f}** |")


if __name__ == "__main__":
    main()
