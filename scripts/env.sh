# Shared by the scripts: where cargo builds (a persistent folder outside the
# checkout, so every clone on this machine reuses one build) and the binary.
# shellcheck shell=bash
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tidelake/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
TIDELAKE_BIN="$CARGO_TARGET_DIR/debug/tidelake"
export TIDELAKE_BIN

require_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install Rust (https://rustup.rs) first" >&2
        exit 1
    fi
}
