#!/usr/bin/env bash
# Capture benchmark: write throughput on one tenant with change capture on
# and off in the same run, and WebSocket fan-out latency from commit to 100
# subscribers. Writes bench/out/capture.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
require_cargo
cargo build --locked -p tidelake -p tidelake-bench
mkdir -p bench/out
"$CARGO_TARGET_DIR/debug/oltp-bench" capture --out bench/out/capture.md
echo "(machine: $(nproc) cores)" | tee -a bench/out/capture.md
