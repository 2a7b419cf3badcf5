#!/usr/bin/env bash
# Tier benchmark: first-query time of a cold tenant (archived, off local
# disk) against its size, beside a warm wake and beside native PostgreSQL
# (Debian's `postgresql`, installed here if missing) restored from the same
# archive format. Writes bench/out/tiers.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
require_cargo

pg_bin=""
find_pg() { pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true); }
find_pg
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    echo "installing Debian's postgresql package" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    find_pg
fi

cargo build --locked -p tidelake -p tidelake-bench
mkdir -p bench/out
"$CARGO_TARGET_DIR/debug/oltp-bench" tiers --pg-bin "$pg_bin" --out bench/out/tiers.md
echo "(PostgreSQL: $("$pg_bin/postgres" --version); machine: $(nproc) cores)" | tee -a bench/out/tiers.md
