//! Who is calling and what they may do: a scope (`read` < `write` <
//! `admin`) over the tenants a token reaches.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a token allows, each scope including the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Queries in read-only transactions, the schema, the change feed,
    /// WebSocket subscriptions, and the lake's reads of these tenants.
    Read,
    /// Also writes and DDL.
    Write,
    /// Also restores, backups, bookmarks, acknowledgements; with every
    /// tenant in reach, the server-wide plane (health, metrics, catalog
    /// writes).
    Admin,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        match text.trim().to_ascii_lowercase().as_str() {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tenants a token reaches: each entry a tenant id, a pattern with
/// `*` (any run of characters), or `*` alone for every tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reach(Vec<String>);

impl Reach {
    pub fn all() -> Reach {
        Reach(vec!["*".to_owned()])
    }

    pub fn none() -> Reach {
        Reach(Vec::new())
    }

    /// Entries as given (ids or patterns); refuses one that could match no
    /// tenant id.
    pub fn of(entries: impl IntoIterator<Item = impl Into<String>>) -> Result<Reach, String> {
        let entries: Vec<String> = entries.into_iter().map(Into::into).collect();
        for entry in &entries {
            let valid = !entry.is_empty()
                && entry.len() <= 63
                && entry.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'*');
            if !valid {
                return Err(format!(
                    "{entry:?} is neither a tenant id nor a pattern of one ([a-z0-9-] and * for any run)"
                ));
            }
        }
        Ok(Reach(entries))
    }

    pub fn entries(&self) -> &[String] {
        &self.0
    }

    /// Whether every tenant is in reach.
    pub fn is_all(&self) -> bool {
        self.0.iter().any(|e| e == "*")
    }

    pub fn covers(&self, tenant: &str) -> bool {
        self.0.iter().any(|pattern| glob(pattern.as_bytes(), tenant.as_bytes()))
    }
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no tenant");
        }
        f.write_str(&self.0.join(","))
    }
}

/// `*` matches any run of bytes, everything else itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Auth is off (loopback only): every caller is an administrator.
    Open,
    Jwt,
    ApiKey,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The token's subject (a JWT's `sub`, an API key's id).
    pub subject: String,
    pub scope: Scope,
    pub reach: Reach,
    pub via: Via,
}

impl Principal {
    /// The caller of a server without auth: loopback only, all allowed.
    pub fn open() -> Principal {
        Principal { subject: "anonymous".into(), scope: Scope::Admin, reach: Reach::all(), via: Via::Open }
    }

    /// Whether this caller may do what `scope` allows in `tenant`.
    pub fn may(&self, scope: Scope, tenant: &str) -> Result<(), Denied> {
        if !self.reach.covers(tenant) {
            return Err(Denied::Forbidden(format!("this token does not reach tenant {tenant:?} (it reaches {})", self.reach)));
        }
        if self.scope < scope {
            return Err(Denied::Forbidden(format!(
                "this needs the {scope} scope on tenant {tenant:?}; this token has {}",
                self.scope
            )));
        }
        Ok(())
    }

    pub fn may_read(&self, tenant: &str) -> bool {
        self.reach.covers(tenant)
    }

    /// The server-wide plane: `admin` over every tenant.
    pub fn may_administer(&self) -> Result<(), Denied> {
        if self.scope == Scope::Admin && self.reach.is_all() {
            Ok(())
        } else {
            Err(Denied::Forbidden(format!(
                "this needs the admin scope over every tenant; this token has {} on {}",
                self.scope, self.reach
            )))
        }
    }
}

/// Why a request is refused: no valid token (401), or a token that does
/// not allow it (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
}

impl Denied {
    /// The `WWW-Authenticate` challenge that goes with the refusal.
    pub fn challenge(&self) -> String {
        let (error, why) = match self {
            Denied::Unauthenticated(why) => ("invalid_token", why),
            Denied::Forbidden(why) => ("insufficient_scope", why),
        };
        // A header's quoted-string: no quotes or backslashes, visible ASCII.
        let why: String = why.chars().map(|c| if c == '"' || c == '\\' || !(' '..='~').contains(&c) { '\'' } else { c }).collect();
        format!("Bearer realm=\"tidelake\", error=\"{error}\", error_description=\"{why}\"")
    }

    pub fn missing() -> Denied {
        Denied::Unauthenticated("this needs a token: send Authorization: Bearer <token>".into())
    }

    pub fn code(&self) -> &'static str {
        match self {
            Denied::Unauthenticated(_) => "unauthorized",
            Denied::Forbidden(_) => "forbidden",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_ids() {
        let reach = Reach::of(["acme", "team-*", "*-eu"]).unwrap();
        for yes in ["acme", "team-", "team-a", "x-eu", "team-x-eu"] {
            assert!(reach.covers(yes), "{yes}");
        }
        for no in ["acm", "acme2", "xacme", "team", "eu", "teamx"] {
            assert!(!reach.covers(no), "{no}");
        }
        assert!(Reach::all().covers("anything"));
        assert!(!Reach::none().covers("acme"));
        assert!(Reach::of(["../etc"]).is_err());
        assert!(Reach::of(["Acme"]).is_err());
    }

    #[test]
    fn scopes_include_the_ones_below() {
        let p = Principal { subject: "k".into(), scope: Scope::Write, reach: Reach::of(["acme"]).unwrap(), via: Via::ApiKey };
        assert!(p.may(Scope::Read, "acme").is_ok());
        assert!(p.may(Scope::Write, "acme").is_ok());
        assert!(matches!(p.may(Scope::Admin, "acme"), Err(Denied::Forbidden(_))));
        assert!(matches!(p.may(Scope::Read, "other"), Err(Denied::Forbidden(_))));
        assert!(p.may_administer().is_err());
        let admin_of_one = Principal { scope: Scope::Admin, ..p };
        assert!(admin_of_one.may_administer().is_err());
        assert!(Principal::open().may_administer().is_ok());
    }
}
