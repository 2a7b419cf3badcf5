#!/usr/bin/env bash
# Query benchmark: AS OF latency on a table with 1M changes at several history
# depths, beside PyIceberg + DuckDB computing the same answers. Writes
# bench/out/query.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
require_cargo
require_python_deps
cargo build --locked -p tidelake -p tidelake-bench
mkdir -p bench/out
"$CARGO_TARGET_DIR/debug/oltp-bench" query --python "$TIDELAKE_PYTHON" --out bench/out/query.md
echo "(machine: $(nproc) cores)" | tee -a bench/out/query.md
