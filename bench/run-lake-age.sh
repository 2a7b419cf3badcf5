#!/usr/bin/env bash
# Lake age benchmark: one-row commits accumulating with maintenance off and
# on (metadata, files, AS OF latency), then AS OF at depths of a 10M-change
# history with state checkpoints, without, and PyIceberg + DuckDB on the
# same files. Writes bench/out/lake-age.md (and stdout).
# Arguments pass through: --commits N (default 20000), --changes N (default 10000000).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
require_python_deps
run_bench lake-age --python "$TIDELAKE_PYTHON" "$@"
