#!/usr/bin/env bash
# Tier benchmark: first-query time of a cold tenant (archived, off local
# disk) against its size, beside a warm wake and beside native PostgreSQL
# (Debian's `postgresql`, installed here if missing) restored from the same
# archive format; then listing 300 hibernated tenants with their sizes beside
# native PostgreSQL listing as many databases. Writes bench/out/tiers.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
run_bench_beside_postgres tiers
