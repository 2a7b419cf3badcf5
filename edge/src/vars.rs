//! The Worker's variables and secrets (wrangler.toml's `[vars]`,
//! `wrangler secret put`), read one way everywhere.

use worker::Env;

/// A variable or secret, unset when empty.
pub fn setting(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .or_else(|_| env.secret(name).map(|v| v.to_string()))
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// A comma-separated list's entries, trimmed, the empty ones dropped.
pub fn comma_list(text: &str) -> Vec<String> {
    text.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}
