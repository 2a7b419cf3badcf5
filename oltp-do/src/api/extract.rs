//! Request extractors that turn every malformed input into our JSON errors.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::header::HOST;
use axum::http::request::Parts;
use auth::http::caller;
use auth::{Principal, Scope};
use serde::de::DeserializeOwned;

use super::routing::{TENANT_HEADER, resolve};
use crate::error::Error;
use model::TenantId;
use crate::tenants::Tenants;

/// The tenant a request is for (required), which the caller may read.
pub struct Tenant(pub TenantId);

/// The tenant of a request whose SQL runs read-only unless the caller may
/// write in it.
pub struct SqlTenant {
    pub tenant: TenantId,
    pub may_write: bool,
}

/// The tenant of a request that changes it without SQL (cancel): `write`.
pub struct WriteTenant(pub TenantId);

/// The tenant of an operator's request (restore, backups, bookmarks,
/// acknowledgements): `admin` on it.
pub struct AdminTenant(pub TenantId, pub Principal);

/// The tenant a request is for, if it names one (server-wide routes).
pub struct MaybeTenant(pub Option<TenantId>);

impl FromRequestParts<Arc<Tenants>> for MaybeTenant {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Tenants>,
    ) -> Result<Self, Self::Rejection> {
        let params = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| p)
            .unwrap_or_default();
        let header = match parts.headers.get(TENANT_HEADER) {
            Some(v) => Some(v.to_str().map_err(|_| Error::InvalidTenant("<non-ASCII header>".into()))?),
            None => None,
        };
        let host = parts
            .headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| parts.uri.host());
        resolve(
            state.config(),
            params.get("tenant").map(String::as_str),
            header,
            host,
        )
        .map(MaybeTenant)
    }
}

/// The tenant a request names and its caller, who may do what `scope`
/// allows there.
async fn allowed(parts: &mut Parts, state: &Arc<Tenants>, scope: Scope) -> Result<(TenantId, Principal), Error> {
    let MaybeTenant(tenant) = MaybeTenant::from_request_parts(parts, state).await?;
    let tenant = tenant.ok_or(Error::MissingTenant)?;
    let principal = caller(parts)?;
    principal.may(scope, tenant.as_str())?;
    Ok((tenant, principal))
}

impl FromRequestParts<Arc<Tenants>> for Tenant {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Tenants>) -> Result<Self, Self::Rejection> {
        allowed(parts, state, Scope::Read).await.map(|(tenant, _)| Tenant(tenant))
    }
}

impl FromRequestParts<Arc<Tenants>> for SqlTenant {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Tenants>) -> Result<Self, Self::Rejection> {
        let (tenant, principal) = allowed(parts, state, Scope::Read).await?;
        let may_write = principal.may(Scope::Write, tenant.as_str()).is_ok();
        Ok(SqlTenant { tenant, may_write })
    }
}

impl SqlTenant {
    /// A tenant a request names otherwise than by its route (Neon's
    /// connection string): by the same rules (reserved names), for a caller
    /// who may read it.
    pub fn named(parts: &Parts, state: &Arc<Tenants>, name: &str) -> Result<Self, Error> {
        let tenant = resolve(state.config(), Some(name), None, None)?.ok_or(Error::MissingTenant)?;
        let principal = caller(parts)?;
        principal.may(Scope::Read, tenant.as_str())?;
        let may_write = principal.may(Scope::Write, tenant.as_str()).is_ok();
        Ok(SqlTenant { tenant, may_write })
    }
}

impl FromRequestParts<Arc<Tenants>> for WriteTenant {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Tenants>) -> Result<Self, Self::Rejection> {
        allowed(parts, state, Scope::Write).await.map(|(tenant, _)| WriteTenant(tenant))
    }
}

impl FromRequestParts<Arc<Tenants>> for AdminTenant {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Tenants>) -> Result<Self, Self::Rejection> {
        allowed(parts, state, Scope::Admin).await.map(|(tenant, principal)| AdminTenant(tenant, principal))
    }
}

/// A JSON body within the body-size limit (its content type is checked
/// before routing, by `auth::http::guard`).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Tenants>> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &Arc<Tenants>) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge {
                    limit: state.config().max_body_bytes,
                }
            } else {
                Error::bad_request("invalid_body", rejection.body_text())
            }
        })?;
        model::api::read_json(&bytes)
            .map(JsonBody)
            .map_err(|err| Error::bad_request(err.code, err.message))
    }
}
