#!/usr/bin/env bash
# Edge benchmark: the same statements over HTTP to a tenant of `tidelake
# serve` and to an edge tenant under `wrangler dev --local` (interleaved),
# the first query of new and of restarted tenants on both, and memory per
# tenant. Builds the edge first (scripts/edge build). Writes bench/out/edge.md
# (and stdout). `--iterations N` sets the warm requests per statement (500).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/edge build
run_bench edge "$@"
