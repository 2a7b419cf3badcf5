#!/usr/bin/env bash
# OLTP benchmark: tidelake's HTTP API side by side with native PostgreSQL
# (Debian's `postgresql` package, installed here if missing) through a
# standard Rust client (tokio-postgres), all in one run on this machine.
#
#   bench/run-oltp.sh [--iterations N] [--tenants N]
#
# Writes the report to bench/out/oltp.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
require_cargo

require_postgres_server

cargo build --locked -p tidelake -p tidelake-bench

work=$(mktemp -d /tmp/tidelake-bench.XXXXXX)
chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    for d in "$work"/pg-*; do
        [ -d "$d" ] && as_pg "$pg_bin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_pg() { # name port extra-options
    local dir="$work/pg-$1"
    mkdir -p "$dir" && [ "$(id -u)" = 0 ] && chown postgres "$dir" "$work"
    as_pg "$pg_bin/initdb" -D "$dir" -A trust -U postgres >/dev/null
    as_pg "$pg_bin/pg_ctl" -D "$dir" -l "$dir/log" -w \
        -o "-p $2 -k $dir -c listen_addresses=127.0.0.1 $3" start >/dev/null
}
port_on=$(free_port)
start_pg fsync-on "$port_on" ""
port_off=$(free_port)
start_pg fsync-off "$port_off" "-c fsync=off"

mkdir -p bench/out
"$CARGO_TARGET_DIR/debug/oltp-bench" \
    --pg-url "host=127.0.0.1 port=$port_on user=postgres dbname=postgres" \
    --pg-nofsync-url "host=127.0.0.1 port=$port_off user=postgres dbname=postgres" \
    --out bench/out/oltp.md "$@"
echo "(PostgreSQL: $("$pg_bin/postgres" --version); machine: $(nproc) cores)" | tee -a bench/out/oltp.md
