#!/usr/bin/env bash
# Migration benchmark: ten schema-changing statements on a tenant with a
# 10 MB table (with and without capture and schema backups) beside native
# PostgreSQL (Debian's `postgresql`, installed here if missing), then a
# restore just after a schema change. Writes bench/out/migration.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
run_bench_beside_postgres migration
