//! Which tenant a request is for: the `/t/{tenant}/…` path, the
//! `X-Tenant-Id` header, or a `{tenant}.{base_domain}` host name; a host
//! that names a tenant refuses a path or header naming another. Everything
//! is validated before any work is done.

use crate::config::OltpConfig;
use crate::error::{Error, Result};
use model::TenantId;

pub const TENANT_HEADER: &str = "x-tenant-id";

/// Resolve the tenant of a request from its parts; `Ok(None)` if none is named.
pub fn resolve(
    config: &OltpConfig,
    path: Option<&str>,
    header: Option<&str>,
    host: Option<&str>,
) -> Result<Option<TenantId>> {
    let named = match (path, header) {
        (Some(path), Some(header)) if path != header => {
            return Err(Error::bad_request(
                "conflicting_tenant",
                format!("the path names tenant {path:?} but X-Tenant-Id names {header:?}"),
            ));
        }
        (Some(raw), _) | (None, Some(raw)) => Some(raw),
        (None, None) => None,
    };
    // A host that names a tenant is that tenant's: nothing else in the
    // request may name another.
    let by_host = host.and_then(|h| subdomain(config, h));
    if let (Some(named), Some(by_host)) = (named, by_host)
        && named != by_host
    {
        return Err(Error::bad_request(
            "conflicting_tenant",
            format!("the host names tenant {by_host:?} but the request names {named:?}"),
        ));
    }
    let tenant = match named.or(by_host) {
        Some(raw) => Some(TenantId::parse(raw)?),
        None => None,
    };
    if let Some(tenant) = &tenant
        && config.blocked_names.iter().any(|b| b == tenant.as_str())
    {
        return Err(Error::BlockedTenant(tenant.to_string()));
    }
    Ok(tenant)
}

/// The tenant label of `host` under the configured base domain, if any.
fn subdomain<'a>(config: &OltpConfig, host: &'a str) -> Option<&'a str> {
    let base = config.base_domain.as_deref()?.trim_matches('.');
    let host = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) { name } else { host }
    });
    let label = host.strip_suffix(base)?.strip_suffix('.')?;
    (!label.is_empty()).then_some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OltpConfig {
        let mut config = OltpConfig::new("/nonexistent");
        config.base_domain = Some("db.example.com".into());
        config
    }

    fn id(r: Result<Option<TenantId>>) -> Option<String> {
        r.unwrap().map(|t| t.to_string())
    }

    #[test]
    fn path_then_header_then_subdomain() {
        let c = config();
        assert_eq!(id(resolve(&c, Some("a"), None, Some("db.example.com"))), Some("a".into()));
        assert_eq!(id(resolve(&c, None, Some("h"), Some("127.0.0.1"))), Some("h".into()));
        assert_eq!(id(resolve(&c, Some("b"), Some("b"), Some("b.db.example.com"))), Some("b".into()));
        assert_eq!(id(resolve(&c, None, None, Some("b.db.example.com:7432"))), Some("b".into()));
        assert_eq!(id(resolve(&c, None, None, Some("db.example.com"))), None);
        assert_eq!(id(resolve(&c, None, None, Some("127.0.0.1:7432"))), None);
    }

    #[test]
    fn invalid_conflicting_and_blocked_names_are_refused() {
        let c = config();
        assert!(matches!(resolve(&c, Some("A"), None, None), Err(Error::InvalidTenant(_))));
        assert!(matches!(
            resolve(&c, None, None, Some("x.y.db.example.com")),
            Err(Error::InvalidTenant(_))
        ));
        assert!(matches!(
            resolve(&c, Some("a"), Some("b"), None),
            Err(Error::BadRequest { .. })
        ));
        assert!(matches!(
            resolve(&c, None, None, Some("www.db.example.com")),
            Err(Error::BlockedTenant(_))
        ));
        assert!(matches!(resolve(&c, Some("admin"), None, None), Err(Error::BlockedTenant(_))));
        // A tenant's host with another tenant's path or header.
        assert!(matches!(resolve(&c, Some("a"), None, Some("b.db.example.com")), Err(Error::BadRequest { .. })));
        assert!(matches!(resolve(&c, None, Some("victim"), Some("acme.db.example.com")), Err(Error::BadRequest { .. })));
    }
}
