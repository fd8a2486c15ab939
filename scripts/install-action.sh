#!/usr/bin/env bash
# The nubes action's installer (action.yml runs it; tests/it/install.rs runs it
# against a local release server). Puts a nubes binary on the job's PATH:
#
#   1. from the runner's tool cache, when an earlier job installed the same build;
#   2. else from the GitHub release of the version (asset
#      nubes-<version>-<target>.tar.gz, .zip on Windows), checked against the
#      release's SHA256SUMS (a mismatch fails, naming the file and both sums) and,
#      when `gh` and a token are at hand, against its build-provenance attestation;
#   3. else (an unreleased commit, or no asset for this platform) it prints a notice
#      and writes the outputs build/root/key: action.yml then restores that key with
#      actions/cache, runs `install-action.sh build` on a miss, and saves the build.
#
# Which version: the `version` input (INPUT_VERSION); else the tag the workflow
# pinned (ACTION_REF = vX.Y.Z); else, for a commit SHA pin, the version in the
# action's Cargo.toml, whose release is used only when its binary says it was built
# from that very commit (`nubes --version` prints it). A branch or a local action
# (`uses: ./`, no ACTION_REF) is built from source.
#
# Environment (action.yml maps inputs and contexts to it):
#   INPUT_VERSION, INPUT_RELEASE_URL (default $GITHUB_SERVER_URL/<action repo>/releases/download),
#   ACTION_PATH, ACTION_REF, ACTION_REPOSITORY, RUNNER_OS, RUNNER_ARCH, RUNNER_TOOL_CACHE,
#   GITHUB_PATH, GITHUB_OUTPUT; GH_TOKEN (optional, for `gh attestation verify`).
#   In `build` mode also BUILD (path|crates), ROOT, BUILD_VERSION, BUILD_COMMIT.
# Exit status: 0 installed (or a source build is planned), 1 failed, 2 bad input.
set -euo pipefail

notice() { echo "::notice title=nubes::$*"; }
fail() { echo "::error title=nubes::$*"; exit "${2:-1}"; }
output() { [ -z "${GITHUB_OUTPUT:-}" ] || printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"; }

semver='[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?'
exe=
[ "${RUNNER_OS:-}" = Windows ] && exe=.exe

# The directory whose bin/ holds nubes goes on PATH for the following steps (a
# path built from the tool cache and a validated version or a hash, never from
# event data).
add_path() {
  local dir=$1/bin
  if command -v cygpath >/dev/null; then dir=$(cygpath -w "$dir"); fi
  [ -z "${GITHUB_PATH:-}" ] || echo "$dir" >>"$GITHUB_PATH"
}

# field NAME BIN: a line of `BIN --version` ("commit: ..."), empty if none.
# BIN --version is read whole before it is parsed: with pipefail, `| head -n 1`
# could close the pipe while BIN still writes its second line, and BIN's
# broken-pipe exit would then fail a binary that said the right thing.
version_field() {
  local out
  out=$("$2" --version 2>/dev/null) || return 0
  printf '%s\n' "$out" | sed -n "s/^$1: //p" | sed -n 1p
}

# first_line BIN: the first line BIN --version prints (stdout and stderr), for messages.
first_line() {
  local out
  out=$("$1" --version 2>&1) || true
  printf '%s\n' "${out%%$'\n'*}"
}

# version_ok BIN VERSION [COMMIT]: BIN runs and says VERSION (and COMMIT).
version_ok() {
  local out
  out=$("$1" --version 2>/dev/null) || return 1
  [ "${out%%$'\n'*}" = "nubes $2" ] || return 1
  [ -z "${3:-}" ] || [ "$(version_field commit "$1")" = "$3" ]
}

sha256() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# fetch URL FILE: 0 downloaded, 4 not found (HTTP 404), 1 any other failure.
fetch() {
  local code
  code=$(curl --proto '=https,http' --silent --show-error --location --retry 3 --retry-connrefused \
    --connect-timeout 10 --max-time 300 --output "$2" --write-out '%{http_code}' "$1") || {
    echo "nubes: downloading $1 failed" >&2
    return 1
  }
  case $code in
    200) return 0 ;;
    404) return 4 ;;
    *) echo "nubes: downloading $1: HTTP $code" >&2; return 1 ;;
  esac
}

# --- build mode: the source build action.yml runs on an actions/cache miss ---
if [ "${1:-}" = build ]; then
  : "${BUILD:?} ${ROOT:?} ${BUILD_VERSION:?}"
  command -v cargo >/dev/null ||
    fail "cargo is needed to build nubes from source: add a Rust toolchain to the runner (GitHub's hosted runners have one)"
  echo "::group::Building nubes $BUILD_VERSION from source into $ROOT"
  export NUBES_BUILD_COMMIT=${BUILD_COMMIT:-}
  if [ "$BUILD" = crates ]; then
    cargo install nubes --version "$BUILD_VERSION" --locked --root "$ROOT" --force
  else
    cargo install --path "${ACTION_PATH:?}" --locked --root "$ROOT" --force
  fi
  echo "::endgroup::"
  version_ok "$ROOT/bin/nubes$exe" "$BUILD_VERSION" ||
    fail "the nubes built into $ROOT does not say 'nubes $BUILD_VERSION': $(first_line "$ROOT/bin/nubes$exe")"
  exit 0
fi

# --- the platform ---
case ${RUNNER_OS:-$(uname -s)}/${RUNNER_ARCH:-$(uname -m)} in
  Linux/X64 | Linux/x86_64) target=x86_64-unknown-linux-musl ;;
  Linux/ARM64 | Linux/aarch64) target=aarch64-unknown-linux-musl ;;
  macOS/X64 | Darwin/x86_64) target=x86_64-apple-darwin ;;
  macOS/ARM64 | Darwin/arm64) target=aarch64-apple-darwin ;;
  Windows/X64) target=x86_64-pc-windows-msvc ;;
  *) target= ;;
esac
archive=tar.gz
[ "$exe" = .exe ] && archive=zip

tools=${RUNNER_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}}/nubes
action_version() {
  sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "${ACTION_PATH:?}/Cargo.toml" | sed -n 1p
}

# --- which release, if any ---
version= commit= build=path why=
if [ -n "${INPUT_VERSION:-}" ]; then
  [[ $INPUT_VERSION =~ ^v?$semver$ ]] || {
    printf 'version: %q\n' "$INPUT_VERSION" >&2
    fail "input 'version' must be an exact version such as 1.2.3" 2
  }
  version=${INPUT_VERSION#v} build=crates
elif [[ ${ACTION_REF:-} =~ ^v?$semver$ ]]; then
  version=${ACTION_REF#v}
elif [[ ${ACTION_REF:-} =~ ^[0-9a-f]{40}$ ]]; then
  version=$(action_version) commit=$ACTION_REF
else
  why="the action is used from ${ACTION_REF:+ref $ACTION_REF}${ACTION_REF:-a local path}, not from a release tag or commit"
fi

base=${INPUT_RELEASE_URL:-}
if [ -z "$base" ] && [ -n "${ACTION_REPOSITORY:-}" ]; then
  base=${GITHUB_SERVER_URL:-https://github.com}/$ACTION_REPOSITORY/releases/download
fi
base=${base%/}

# from_release: install $version's asset into the tool cache (0), or say why not
# in $why (1); a checksum mismatch ends the script.
from_release() {
  local dir=$tools/$version/$target
  if [ -z "$target" ]; then why="there are no release binaries for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?}"; return 1; fi
  if version_ok "$dir/bin/nubes$exe" "$version" "$commit"; then
    echo "nubes $version ($target) found in the tool cache: $dir"
    add_path "$dir"
    return 0
  fi
  if [ -z "$base" ]; then why="no release location is known (set the release-url input)"; return 1; fi
  local asset=nubes-$version-$target.$archive tmp rc=0 want got
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '$tmp'" EXIT
  fetch "$base/v$version/SHA256SUMS" "$tmp/SHA256SUMS" || rc=$?
  if [ "$rc" = 4 ]; then why="there is no release v$version at $base"; return 1; fi
  [ "$rc" = 0 ] || fail "cannot download SHA256SUMS of release v$version from $base"
  want=$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp/SHA256SUMS")
  if [ -z "$want" ]; then why="release v$version has no $asset (no binary for $target)"; return 1; fi
  fetch "$base/v$version/$asset" "$tmp/$asset" || rc=$?
  if [ "$rc" = 4 ]; then why="release v$version lists $asset in SHA256SUMS but has no such file"; return 1; fi
  [ "$rc" = 0 ] || fail "cannot download $asset from $base/v$version"
  got=$(sha256 "$tmp/$asset")
  [ "$got" = "$want" ] ||
    fail "checksum mismatch for $asset: SHA256SUMS says $want, the downloaded file has $got; refusing to install it"
  echo "$asset: SHA-256 $got matches SHA256SUMS"
  if [ -n "${ACTION_REPOSITORY:-}" ] && [ -z "${INPUT_RELEASE_URL:-}" ] && [ -n "${GH_TOKEN:-}" ] && command -v gh >/dev/null; then
    gh attestation verify "$tmp/$asset" --repo "$ACTION_REPOSITORY" >/dev/null ||
      fail "$asset does not carry a valid build-provenance attestation from $ACTION_REPOSITORY"
    echo "$asset: build-provenance attestation verified"
  fi
  mkdir -p "$tmp/x"
  if [ "$archive" = zip ]; then
    if command -v unzip >/dev/null; then unzip -q "$tmp/$asset" -d "$tmp/x"; else tar -xf "$tmp/$asset" -C "$tmp/x"; fi
  else
    tar -xzf "$tmp/$asset" -C "$tmp/x"
  fi
  [ -f "$tmp/x/nubes$exe" ] || fail "$asset holds no nubes$exe"
  chmod +x "$tmp/x/nubes$exe"
  if ! version_ok "$tmp/x/nubes$exe" "$version"; then
    fail "the nubes in $asset does not say 'nubes $version': $(first_line "$tmp/x/nubes$exe")"
  fi
  if [ -n "$commit" ] && ! version_ok "$tmp/x/nubes$exe" "$version" "$commit"; then
    why="release v$version was built from commit $(version_field commit "$tmp/x/nubes$exe"), and the action is pinned to $commit (an unreleased commit)"
    return 1
  fi
  mkdir -p "$dir/bin" && mv -f "$tmp/x/nubes$exe" "$dir/bin/nubes$exe"
  echo "nubes $version ($target) installed from release v$version into $dir"
  add_path "$dir"
}

if [ -n "$version" ] && from_release; then
  output build ''
  exit 0
fi

# --- a source build, planned for action.yml's cache and build steps ---
if [ "$build" = crates ]; then
  src=crates-$version
else
  cd "${ACTION_PATH:?}"
  version=$(action_version)
  [ -n "$version" ] || fail "no [package] version in $ACTION_PATH/Cargo.toml"
  sources=()
  for p in Cargo.toml Cargo.lock build.rs src templates terraform; do
    [ -e "$p" ] && sources+=("$p")
  done
  sum=(sha256sum)
  command -v sha256sum >/dev/null || sum=(shasum -a 256)
  hash=$(find "${sources[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 "${sum[@]}" | "${sum[@]}")
  src=src-${hash:0:16}
fi
root=$tools/$src/${target:-$(uname -s)-$(uname -m)}
add_path "$root"
if version_ok "$root/bin/nubes$exe" "$version"; then
  echo "nubes $version built from source ($src) found in the tool cache: $root ($why)"
  output build ''
  exit 0
fi
notice "building nubes $version from source: $why"
output build "$build"
output root "$root"
output version "$version"
output commit "$commit"
output key "nubes-$src-${target:-$(uname -s)-$(uname -m)}"
