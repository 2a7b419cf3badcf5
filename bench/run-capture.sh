#!/usr/bin/env bash
# Capture benchmark: write throughput on one tenant with change capture on
# and off in the same run, and WebSocket fan-out latency from commit to 100
# subscribers. Writes bench/out/capture.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
run_bench capture
