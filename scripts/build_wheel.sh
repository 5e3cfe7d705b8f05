#!/usr/bin/env bash
# Build what users install, into target/dist/ (emptied first):
#   - pyserver-*-cp311-abi3-*.whl: one wheel for CPython 3.11 and every later version (PyO3's
#     stable ABI, the `abi3` feature of rust_frames);
#   - pyserver-*-cp311-cp311-*.whl: the version-specific build for CPython 3.11, shipped too
#     because abi3 costs more than 3% in bench/codec.py (see the README); pip prefers it on 3.11;
#   - pyserver-*.tar.gz: the sdist, which builds with maturin and cargo alone (it carries the
#     client bundles and the demo's pages; no npm).
# The files the server serves are copied into pyserver/_static first (scripts/pack_static.py,
# from web/node_modules: run scripts/bootstrap.sh once); rust_frames/build.rs fails the build
# without them. Idempotent: cargo rebuilds only what changed (the abi3 build keeps its own
# target directory, target/abi3, so the two builds do not undo each other).
# Usage: scripts/build_wheel.sh [python]   (default: .venv/bin/python, the version-specific tag)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-.venv/bin/python}
maturin=.venv/bin/maturin
out=target/dist

log() { printf '[build_wheel] %s\n' "$*"; }

"$py" scripts/pack_static.py
rm -rf "$out"
mkdir -p "$out"
log "abi3 wheel"
CARGO_TARGET_DIR=target/abi3 "$maturin" build --release --quiet --features abi3 -i "$py" -o "$out"
log "version-specific wheel"
"$maturin" build --release --quiet -i "$py" -o "$out"
# apart: `build --sdist` would build the wheel from the unpacked sdist, recompiling each time
# (tests/test_packaging_wheel.py builds a wheel from this sdist)
log "sdist"
"$maturin" sdist -o "$out"
ls -1 "$out"
