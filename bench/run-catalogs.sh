#!/usr/bin/env bash
# Catalog benchmark: the catalog queries of psql (`\dt`, `\d`), Grafana and
# Metabase on the lake's wire front, with 100 and 500 lake tables, beside
# native PostgreSQL (Debian's `postgresql`, installed here if missing)
# answering them over the same tables. Writes bench/out/catalogs.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
run_bench_beside_postgres catalogs
