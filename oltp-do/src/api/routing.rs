//! Which tenant a request is for: the rules are [`model::Routing`]'s,
//! shared with the edge; here they read the server's configuration.

use crate::config::OltpConfig;
use crate::error::{Error, Result};
use model::{RouteError, Routing, TenantId};

pub const TENANT_HEADER: &str = "x-tenant-id";

/// Resolve the tenant of a request from its parts; `Ok(None)` if none is named.
pub fn resolve(
    config: &OltpConfig,
    path: Option<&str>,
    header: Option<&str>,
    host: Option<&str>,
) -> Result<Option<TenantId>> {
    let routing = Routing { base_domain: config.base_domain.as_deref(), blocked_names: &config.blocked_names };
    routing.resolve(path, header, host).map_err(|err| match err {
        RouteError::Invalid(invalid) => Error::from(invalid),
        RouteError::Blocked(name) => Error::BlockedTenant(name),
        RouteError::Conflicting(message) => Error::BadRequest { code: "conflicting_tenant", message },
    })
}
