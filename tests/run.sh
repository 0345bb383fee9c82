#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, then runs all of them.
# Safe to rerun; everything it installs lives in the repo (.venv) or in Cargo's cache.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
cargo --version
rustc --version

step "format and lint"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

step "interop peers (Python venv in .venv: tests/interop/requirements.txt)"
# The interop suite (tests/interop.rs) runs scim2-server and scim2-cli from PyPI. Installed once per
# hash of the pinned requirements (and the Python that runs them); quick when already there. Any
# failure here stops the script: the suite is never skipped for want of its peers.
interop_venv() {
    local req=tests/interop/requirements.txt venv=.venv
    local python="${PYTHON:-python3}"
    local want stamp="$venv/.interop-requirements.sha256"
    want="$({ sha256sum "$req" | cut -d' ' -f1; "$python" -VV; } | sha256sum | cut -d' ' -f1)"
    # .venv is shared with tests/check-deploy.sh, which adds its own pins: check ours still import.
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/scim2" ]] &&
        "$venv/bin/python" -c 'import scim2_server, scim2_cli, scim2_tester' 2>/dev/null; then
        echo "up to date ($venv, $("$venv/bin/python" -V))"
        return 0
    fi
    rm -f "$stamp"
    "$python" -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --no-input --disable-pip-version-check --quiet \
        --only-binary=:all: --requirement "$req"
    "$venv/bin/python" -m pip check
    "$venv/bin/python" -c 'import scim2_server, scim2_cli, scim2_tester'
    "$venv/bin/scim2" --help >/dev/null
    echo "$want" >"$stamp"
    echo "installed into $venv:"
    "$venv/bin/python" -m pip freeze --disable-pip-version-check | sed 's/^/  /'
}
# Called plainly so that `set -e` stops at the first failing command; the trap says why.
trap 'echo "FAILED: cannot install the interop peers into .venv from tests/interop/requirements.txt (PyPI unreachable, or a pin no longer served?); the interop suite needs them" >&2' EXIT
interop_venv
trap - EXIT

step "forward proxy for the egress suite (tinyproxy, Debian package)"
# tests/proxy/ (egress, check_live, reload) starts its own tinyproxy instances on loopback (foreground, generated config) and
# fails without one: it is never skipped. Installed once; CI runs this as root on a clean Debian.
trap 'echo "FAILED: cannot install tinyproxy with apt-get (not root, or no package mirror?); the egress tests in tests/proxy/ need it" >&2' EXIT
command -v tinyproxy || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tinyproxy; }
tinyproxy -v
trap - EXIT

step "browser for the status page test (chromium, Debian package)"
# tests/proxy/status.rs loads the admin status page in headless Chromium (--dump-dom, --screenshot)
# and fails without it: it is never skipped. Installed once; CI runs this as root on a clean Debian.
trap 'echo "FAILED: cannot install chromium with apt-get (not root, or no package mirror?); the status page test in tests/proxy/ needs it" >&2' EXIT
command -v chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
chromium --version
trap - EXIT

step "ACME test CA for the acme suite (pebble and pebble-challtestsrv, Debian package pebble)"
# tests/proxy/acme.rs starts its own pebble (RFC 8555 test CA) and pebble-challtestsrv (its DNS) on
# loopback with generated configs and fails without them: it is never skipped. Installed once.
trap 'echo "FAILED: cannot install pebble with apt-get (not root, or no package mirror?); the ACME tests in tests/proxy/acme.rs need it" >&2' EXIT
{ command -v pebble && command -v pebble-challtestsrv; } ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble; }
command -v pebble pebble-challtestsrv
trap - EXIT

step "tests (unit, property, integration over loopback sockets)"
cargo test --all-targets --locked

step "deploy files and docs (tests/check-deploy.sh: systemd, Dockerfile, Kubernetes, doc snippets)"
bash tests/check-deploy.sh

step "all tests passed"
