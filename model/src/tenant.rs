//! The validated tenant identifier every part of tidelake takes, and how a
//! request names its tenant.

use std::fmt;

/// Longest tenant id accepted (the first character plus 62 more).
pub const MAX_TENANT_ID_LEN: usize = 63;

/// A tenant id: `[a-z0-9][a-z0-9-]{0,62}`.
///
/// The grammar is that of a DNS label (lower case), so a tenant id is also a
/// valid subdomain and a valid directory name on every filesystem we run on.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, InvalidTenantId> {
        if Self::is_valid(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidTenantId(raw.chars().take(80).collect()))
        }
    }

    /// Whether `raw` is a tenant id.
    pub fn is_valid(raw: &str) -> bool {
        let bytes = raw.as_bytes();
        let Some(first) = bytes.first() else {
            return false;
        };
        bytes.len() <= MAX_TENANT_ID_LEN
            && (first.is_ascii_lowercase() || first.is_ascii_digit())
            && bytes[1..].iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name that is not a tenant id (its first 80 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant id {0:?}: expected [a-z0-9][a-z0-9-]{{0,62}}")]
pub struct InvalidTenantId(pub String);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

/// Names no tenant may take by default: they read as the service's own
/// host names and paths.
pub const DEFAULT_BLOCKED_NAMES: &[&str] = &[
    "www", "api", "admin", "app", "mail", "ftp", "static", "assets", "cdn", "status", "dashboard",
    "catalog", "sql", "metrics", "health", "internal", "system", "root", "localhost",
];

/// How a request names its tenant, and the rules every front applies
/// (the server and the edge alike).
#[derive(Debug, Clone, Copy, Default)]
pub struct Routing<'a> {
    /// `{tenant}.{base_domain}` names a tenant.
    pub base_domain: Option<&'a str>,
    pub blocked_names: &'a [String],
}

/// Why a request names no tenant it may reach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Invalid(#[from] InvalidTenantId),
    #[error("tenant id {0:?} is reserved")]
    Blocked(String),
    #[error("{0}")]
    Conflicting(String),
}

impl Routing<'_> {
    /// The tenant of a request from its `/t/{tenant}/…` path segment, its
    /// `X-Tenant-Id` header and its host; `Ok(None)` if none is named. A
    /// host that names a tenant refuses a path or header naming another.
    pub fn resolve(
        &self,
        path: Option<&str>,
        header: Option<&str>,
        host: Option<&str>,
    ) -> Result<Option<TenantId>, RouteError> {
        let named = match (path, header) {
            (Some(path), Some(header)) if path != header => {
                return Err(RouteError::Conflicting(format!(
                    "the path names tenant {path:?} but X-Tenant-Id names {header:?}"
                )));
            }
            (Some(raw), _) | (None, Some(raw)) => Some(raw),
            (None, None) => None,
        };
        // A host that names a tenant is that tenant's: nothing else in the
        // request may name another.
        let by_host = host.and_then(|h| self.subdomain(h));
        if let (Some(named), Some(by_host)) = (named, by_host)
            && named != by_host
        {
            return Err(RouteError::Conflicting(format!(
                "the host names tenant {by_host:?} but the request names {named:?}"
            )));
        }
        let tenant = match named.or(by_host) {
            Some(raw) => Some(TenantId::parse(raw)?),
            None => None,
        };
        if let Some(tenant) = &tenant
            && self.blocked_names.iter().any(|b| b == tenant.as_str())
        {
            return Err(RouteError::Blocked(tenant.to_string()));
        }
        Ok(tenant)
    }

    /// The tenant label of `host` under the base domain, if any.
    fn subdomain<'a>(&self, host: &'a str) -> Option<&'a str> {
        let base = self.base_domain?.trim_matches('.');
        let host = host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) { name } else { host }
        });
        let label = host.strip_suffix(base)?.strip_suffix('.')?;
        (!label.is_empty()).then_some(label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked() -> Vec<String> {
        DEFAULT_BLOCKED_NAMES.iter().map(|s| s.to_string()).collect()
    }

    fn routing(blocked: &[String]) -> Routing<'_> {
        Routing { base_domain: Some("db.example.com"), blocked_names: blocked }
    }

    fn id(r: Result<Option<TenantId>, RouteError>) -> Option<String> {
        r.unwrap().map(|t| t.to_string())
    }

    #[test]
    fn path_then_header_then_subdomain() {
        let blocked = blocked();
        let c = routing(&blocked);
        assert_eq!(id(c.resolve(Some("a"), None, Some("db.example.com"))), Some("a".into()));
        assert_eq!(id(c.resolve(None, Some("h"), Some("127.0.0.1"))), Some("h".into()));
        assert_eq!(id(c.resolve(Some("b"), Some("b"), Some("b.db.example.com"))), Some("b".into()));
        assert_eq!(id(c.resolve(None, None, Some("b.db.example.com:7432"))), Some("b".into()));
        assert_eq!(id(c.resolve(None, None, Some("db.example.com"))), None);
        assert_eq!(id(c.resolve(None, None, Some("127.0.0.1:7432"))), None);
    }

    #[test]
    fn invalid_conflicting_and_blocked_names_are_refused() {
        let blocked = blocked();
        let c = routing(&blocked);
        assert!(matches!(c.resolve(Some("A"), None, None), Err(RouteError::Invalid(_))));
        assert!(matches!(c.resolve(None, None, Some("x.y.db.example.com")), Err(RouteError::Invalid(_))));
        assert!(matches!(c.resolve(Some("a"), Some("b"), None), Err(RouteError::Conflicting(_))));
        assert!(matches!(c.resolve(None, None, Some("www.db.example.com")), Err(RouteError::Blocked(_))));
        assert!(matches!(c.resolve(Some("admin"), None, None), Err(RouteError::Blocked(_))));
        // A tenant's host with another tenant's path or header.
        assert!(matches!(c.resolve(Some("a"), None, Some("b.db.example.com")), Err(RouteError::Conflicting(_))));
        assert!(matches!(c.resolve(None, Some("victim"), Some("acme.db.example.com")), Err(RouteError::Conflicting(_))));
    }

    #[test]
    fn accepts_dns_label_shaped_ids() {
        for ok in ["a", "0", "acme", "acme-co", "t-1-2-3", &"a".repeat(63)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "", "-a", "A", "Acme", "a_b", "a.b", "a/b", "..", "a b", "é", &"a".repeat(64),
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}
