#!/usr/bin/env bash
# Restore benchmark: time to restore a tenant against the number of changes
# replayed on its base backup (from the change log and from the lake), beside
# native PostgreSQL's point-in-time recovery of the same workload (Debian's
# `postgresql`, installed here if missing). Writes bench/out/restore.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
require_cargo

require_postgres_server

cargo build --locked -p tidelake -p tidelake-bench
mkdir -p bench/out
"$CARGO_TARGET_DIR/debug/oltp-bench" restore --pg-bin "$pg_bin" --out bench/out/restore.md
echo "(PostgreSQL: $("$pg_bin/postgres" --version); machine: $(nproc) cores)" | tee -a bench/out/restore.md
