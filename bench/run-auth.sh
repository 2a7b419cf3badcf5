#!/usr/bin/env bash
# What authentication costs a request: statements over HTTP without auth,
# with an API key and with an RS256 JWT (JWKS key cached), interleaved, plus
# the verification alone. Writes bench/out/auth.md. Options: --iterations N.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
run_bench auth "$@"
