# Shared by the scripts: where cargo builds (a persistent folder outside the
# checkout, so every clone on this machine reuses one build) and the binary.
# shellcheck shell=bash
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tidelake/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
TIDELAKE_BIN="${TIDELAKE_BIN:-$CARGO_TARGET_DIR/debug/tidelake}"
export TIDELAKE_BIN

require_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install Rust (https://rustup.rs) first" >&2
        exit 1
    fi
}

# The core crate (model/) builds for the edge, wasm32-unknown-unknown: the
# tests check that it does, with the target added through rustup where missing.
require_wasm_target() {
    if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
        return
    fi
    if ! command -v rustup >/dev/null 2>&1; then
        echo "the tests check model/ for wasm32-unknown-unknown: install that Rust target first" >&2
        exit 1
    fi
    rustup target add wasm32-unknown-unknown
}

# The Python environment of the tests (PyIceberg as an independent reader).
TIDELAKE_VENV="${TIDELAKE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tidelake/venv}"
export TIDELAKE_PYTHON="$TIDELAKE_VENV/bin/python"

require_python_deps() {
    local requirements=tests/python/requirements.txt
    local stamp="$TIDELAKE_VENV/.requirements"
    if [ -x "$TIDELAKE_PYTHON" ] && cmp -s "$requirements" "$stamp"; then
        return
    fi
    if ! command -v python3 >/dev/null 2>&1; then
        echo "python3 not found: the tests read the lake with PyIceberg" >&2
        exit 1
    fi
    echo "setting up the test Python environment in $TIDELAKE_VENV" >&2
    python3 -m venv "$TIDELAKE_VENV"
    "$TIDELAKE_PYTHON" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
}

# Programs the tests drive, from Debian's packages: Chromium and its driver
# (the dashboard test), psql (the Postgres wire fronts' tests), and pgjdbc
# with a JDK (the JDBC clients').
require_system_packages() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
    # Native PostgreSQL: the history oracle's reference (tests/tests/oracle.rs).
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
    # pgjdbc and a JDK to run a one-file program with it (the JDBC clients' tests).
    [ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
    command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "the tests need ${missing[*]} (Debian/Ubuntu packages); install them first" >&2
        exit 1
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    echo "installing ${missing[*]} from Debian's packages" >&2
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Native PostgreSQL, the benchmarks' competitor (Debian's `postgresql`,
# installed where missing); sets pg_bin to its bin directory.
pg_bin=""
require_postgres_server() {
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ]; then
        return
    fi
    echo "installing Debian's postgresql package" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
}

# Run the benchmark `oltp-bench NAME ARGS…`: build, run, write
# bench/out/NAME.md (and stdout) with the machine's cores at the end.
run_bench() {
    local name=$1
    shift
    require_cargo
    cargo build --locked -p tidelake -p tidelake-bench
    mkdir -p bench/out
    "$CARGO_TARGET_DIR/debug/oltp-bench" "$name" --out "bench/out/$name.md" "$@"
    echo "(machine: $(nproc) cores)" | tee -a "bench/out/$name.md"
}

# `run_bench NAME` beside native PostgreSQL (installed where missing), with
# its version at the end.
run_bench_beside_postgres() {
    require_postgres_server
    run_bench "$1" --pg-bin "$pg_bin"
    echo "(PostgreSQL: $("$pg_bin/postgres" --version))" | tee -a "bench/out/$1.md"
}
