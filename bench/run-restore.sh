#!/usr/bin/env bash
# Restore benchmark: time to restore a tenant against the number of changes
# replayed on its base backup (from the change log and from the lake), beside
# native PostgreSQL's point-in-time recovery of the same workload (Debian's
# `postgresql`, installed here if missing). Writes bench/out/restore.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
run_bench_beside_postgres restore
