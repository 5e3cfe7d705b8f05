#!/usr/bin/env bash
# The project's test command: sets everything up (system packages included), then runs
# the Rust tests, the linters and type checks, and the Python test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --system

step() { printf '\n=== %s\n' "$*"; }
py=.venv/bin/python

# clippy and rustfmt come with rustup's default profile; a minimal one lacks them.
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  step "rustup component add clippy rustfmt"
  rustup component add clippy rustfmt
fi

step "cargo test (rust_frames)"
cargo test -p rust_frames --no-default-features --quiet

step "cargo fmt --check"
cargo fmt -p rust_frames --check

step "cargo clippy"
cargo clippy -p rust_frames --all-targets --no-default-features --quiet -- -D warnings

step "stubtest pyserver._frames"
$py -m mypy.stubtest pyserver._frames

step "mypy --strict pyserver"
$py -m mypy --strict pyserver

step "ruff"
.venv/bin/ruff check --no-cache .
.venv/bin/ruff format --no-cache --check .

step "wheels and sdist (scripts/build_wheel.sh)"
# tests/test_packaging_wheel.py installs these (it builds them itself when run without it)
scripts/build_wheel.sh
export PYSERVER_DIST="$PWD/target/dist"

step "cargo fuzz (rust_frames/fuzz: every target 10 s, a bounded run)"
# the Python fuzz targets (tests/test_fuzz_decoders.py) run in pytest with their own budget
if ! cargo +nightly fuzz --version >/dev/null 2>&1 && rustup toolchain list | grep -q nightly; then
  cargo install cargo-fuzz --locked --quiet
fi
rust_frames/fuzz/run.sh 10

step "pytest"
$py -m pytest -q "$@"
