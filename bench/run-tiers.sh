#!/usr/bin/env bash
# Tier benchmark: first-query time of a cold tenant (archived, off local
# disk) against its size, beside a warm wake and beside native PostgreSQL
# (Debian's `postgresql`, installed here if missing) restored from the same
# archive format. Writes bench/out/tiers.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
require_cargo

require_postgres_server

cargo build --locked -p tidelake -p tidelake-bench
mkdir -p bench/out
"$CARGO_TARGET_DIR/debug/oltp-bench" tiers --pg-bin "$pg_bin" --out bench/out/tiers.md
echo "(PostgreSQL: $("$pg_bin/postgres" --version); machine: $(nproc) cores)" | tee -a bench/out/tiers.md
