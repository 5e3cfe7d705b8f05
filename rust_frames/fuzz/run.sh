#!/usr/bin/env bash
# Runs every cargo-fuzz target of rust_frames for SECONDS each (default 10: the bounded CI
# run), from the committed seeds (corpus/<target>/seed-*) plus whatever an earlier run kept in
# corpus/<target>/ (git-ignored). Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`); without them it says so and succeeds (the Python fuzz tests
# still run). A crash fails the run; its input is in artifacts/<target>/.
#
#   rust_frames/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-10}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz or the nightly toolchain is missing; skipping the Rust targets"
    exit 0
fi
status=0
for target in frame_decoder frame_decoder_deflate inflate; do
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    if cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -print_final_stats=1 >"$log" 2>&1; then
        echo "fuzz $target: $(grep -E '^Done' "$log") $(grep -E 'number_of_executed_units' "$log")"
    else
        echo "fuzz $target: FAILED"
        grep -E "ERROR|panicked|SUMMARY|Test unit written" "$log" || tail -20 "$log"
        status=1
    fi
    rm -f "$log"
done
exit "$status"
