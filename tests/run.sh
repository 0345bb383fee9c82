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

step "tests (unit, property, integration over loopback sockets)"
cargo test --all-targets --locked

step "all tests passed"
