#!/usr/bin/env bash
# Checks every file under deploy/ and the snippets in docs/*.md: configs loaded by the real binary
# (`scim-proxy check`), the systemd unit (systemd-analyze verify and security), the Kubernetes
# manifests (official JSON schemas, offline), the Dockerfile (hadolint and project rules), shell
# snippets (shellcheck), links, and the CLI usage the docs show. See tests/deploy/check_deploy.py.
#
# Installs what it needs and is safe to rerun: Debian packages with apt-get (only when missing),
# Python tools into .venv from tests/deploy/requirements.txt (only when missing or changed).
# No network besides the package registries. Set SCIM_PROXY_BIN to check a binary built elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { printf '\n== %s\n' "$*"; }

step "Debian packages"
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v readelf >/dev/null 2>&1 || missing+=(binutils)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be absent or stale on a fresh machine: update only if the install fails.
    if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
    fi
else
    echo "present: systemd-analyze, readelf, python3 with venv"
fi
systemd-analyze --version | head -n 1

step "Python tools (.venv, tests/deploy/requirements.txt)"
# .venv is shared with other test steps: install only our pinned requirements into it, and
# reinstall when they (or the Python) changed, or when another step recreated the venv.
venv=.venv
req=tests/deploy/requirements.txt
stamp=$venv/.deploy-requirements.sha256
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
want="$({ sha256sum "$req" | cut -d' ' -f1; "$venv/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
tools_ok() {
    "$venv/bin/python" -c 'import kubernetes_validate, yaml' >/dev/null 2>&1 &&
        "$venv/bin/hadolint" --version >/dev/null 2>&1 &&
        "$venv/bin/shellcheck" --version >/dev/null 2>&1
}
if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]] && tools_ok; then
    echo "up to date ($venv, $("$venv/bin/python" -V))"
else
    rm -f "$stamp"
    "$venv/bin/python" -m pip install --no-input --disable-pip-version-check --quiet \
        --only-binary=:all: --requirement "$req"
    tools_ok || { echo "FAILED: the tools from $req do not run after installing them" >&2; exit 1; }
    echo "$want" >"$stamp"
    echo "installed into $venv: kubernetes-validate, PyYAML, hadolint, shellcheck (pinned in $req)"
fi

step "scim-proxy binary"
if [[ -n ${SCIM_PROXY_BIN:-} ]]; then
    bin=$SCIM_PROXY_BIN
else
    cargo build --locked --bin scim-proxy
    bin=target/debug/scim-proxy
fi
"$bin" --version

step "checks"
status=0
"$venv/bin/python" tests/deploy/check_deploy.py --bin "$bin" || status=$?
printf '\ncheck-deploy took %ss\n' "$((SECONDS - started))"
exit "$status"
