#!/usr/bin/env bash
# What authentication costs a request: statements over HTTP without auth,
# with an API key and with an RS256 JWT (JWKS key cached), interleaved, plus
# the verification alone. Writes bench/out/auth.md. Options: --iterations N.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
require_cargo
cargo build --locked -p tidelake -p tidelake-bench
mkdir -p bench/out
"$CARGO_TARGET_DIR/debug/oltp-bench" auth --out bench/out/auth.md "$@"
echo "(machine: $(nproc) cores)" | tee -a bench/out/auth.md
