//! `auth`: who is calling and what they may do.
//!
//! A caller proves who they are with `Authorization: Bearer <token>`: an
//! API key kept hashed in the data directory ([`keys`]) or a JWT from an
//! identity provider ([`jwt`]). Either becomes a [`Principal`]: a scope
//! (`read` < `write` < `admin`) over the tenants it reaches. The HTTP
//! layers ([`http`]) authenticate every request and keep browsers from
//! being used against the server; each crate's routes then ask the
//! principal for what they need.
//!
//! Without auth configured (no identity provider, no API key ever made)
//! every caller is [`Principal::open`]: the server then listens on
//! loopback only.

pub mod browser;
pub mod claim;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod jwt;
pub mod keys;
mod principal;
pub mod scram;
#[cfg(feature = "server")]
mod store;
pub mod token;

#[cfg(feature = "server")]
use std::path::Path;
#[cfg(feature = "server")]
use std::sync::Arc;

pub use browser::Browser;
#[cfg(feature = "server")]
pub use jwt::JwtConfig;
pub use keys::StoredKey;
#[cfg(feature = "server")]
pub use keys::KeyStore;
pub use principal::{Denied, Principal, Reach, Scope, Via};

/// The server's authenticator.
#[cfg(feature = "server")]
pub struct Auth {
    keys: Option<KeyStore>,
    jwt: Option<Arc<jwt::JwtVerifier>>,
}

#[cfg(feature = "server")]
impl Auth {
    /// No auth: every caller is an administrator (loopback only).
    pub fn off() -> Arc<Auth> {
        Arc::new(Auth { keys: None, jwt: None })
    }

    /// Auth as configured: on when an identity provider is configured or
    /// API keys were ever made in `data_dir`.
    pub fn new(data_dir: &Path, jwt: JwtConfig) -> Result<Arc<Auth>, String> {
        let store = KeyStore::open(data_dir);
        let keys = (store.exists() || jwt.is_configured()).then_some(store);
        let jwt = if jwt.is_configured() { Some(Arc::new(jwt::JwtVerifier::new(jwt)?)) } else { None };
        Ok(Arc::new(Auth { keys, jwt }))
    }

    pub fn is_enabled(&self) -> bool {
        self.keys.is_some() || self.jwt.is_some()
    }

    /// Fetch the identity provider's keys, and keep them fresh.
    pub async fn start(&self) {
        if let Some(jwt) = &self.jwt {
            jwt.start().await;
        }
    }

    /// The caller an `Authorization` header value names.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, Denied> {
        if !self.is_enabled() {
            return Ok(Principal::open());
        }
        self.token(token::bearer(authorization)?).await
    }

    /// The caller a bare token (an API key or a JWT) is.
    pub async fn token(&self, token: &str) -> Result<Principal, Denied> {
        if !self.is_enabled() {
            return Ok(Principal::open());
        }
        if keys::is_api_key(token) {
            return match &self.keys {
                Some(keys) => keys.verify(token),
                None => Err(Denied::Unauthenticated("invalid API key".into())),
            };
        }
        match &self.jwt {
            Some(jwt) => jwt.verify(token).await,
            None => Err(Denied::Unauthenticated(
                "not an API key, and no identity provider is configured for JWTs".into(),
            )),
        }
    }

    /// The live API key a Postgres user name (`tlk_<id>`) picks, for SCRAM.
    pub fn key_of_user(&self, user: &str) -> Option<StoredKey> {
        self.keys.as_ref()?.by_user(user)
    }
}
