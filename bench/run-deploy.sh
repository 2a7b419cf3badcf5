#!/usr/bin/env bash
# Deploy benchmark: a folder of 2 migrations over hibernated tenants
# (default 1000): the first query after the deploy (wake + migrations)
# beside the plain wake before it, a new tenant from the template at the
# latest beside one without migrations, and `tidelake migrate up` over the
# rest at concurrency 1 and 4. Writes bench/out/deploy.md (and stdout).
# `--tenants N` sets how many.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
run_bench deploy "$@"
