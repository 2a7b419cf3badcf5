#!/usr/bin/env bash
# Query benchmark: AS OF latency on a table with 1M changes at several history
# depths, beside PyIceberg + DuckDB computing the same answers. Writes
# bench/out/query.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
require_python_deps
run_bench query --python "$TIDELAKE_PYTHON"
