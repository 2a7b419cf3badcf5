#!/usr/bin/env bash
# Lake benchmark: changes shipped per second into Iceberg (one tenant; 50
# tenants) beside a hand-written PyIceberg pipeline over the same change
# log, and commit-to-visible lag at a steady write rate. Writes
# bench/out/lake.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
require_python_deps
run_bench lake --python "$TIDELAKE_PYTHON"
