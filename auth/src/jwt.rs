//! JSON Web Tokens as identity providers (oauth.do, WorkOS, Auth0, Clerk…)
//! issue them: RS256 or ES256 signed by a key of the provider's JWKS, or
//! HS256 with a shared secret; `exp` always checked, `iss` and `aud` when
//! configured.
//!
//! The JWKS is fetched at start, refreshed in the background, and fetched
//! again for a token signed by a key it does not know, at most once every
//! 30 seconds (a provider rotating keys publishes the new one first).
//!
//! A token verified once is remembered (by its SHA-256) until it expires
//! or the JWKS is fetched again, so a client reusing its token pays the
//! signature check once.
//!
//! What a token must say and what it allows are [`crate::token`]'s rules,
//! which the edge Worker shares.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::principal::{Denied, Principal};
use crate::token::{self, Rules};

/// The soonest an unknown key id makes us fetch the JWKS again.
pub const UNKNOWN_KEY_REFETCH: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    pub jwks_url: Option<String>,
    pub hs256_secret: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// A database per user: the tenant is this claim's value, encoded.
    pub tenant_claim: Option<String>,
    /// How often the JWKS is fetched again in the background.
    pub jwks_refresh: Duration,
}

impl JwtConfig {
    pub fn is_configured(&self) -> bool {
        self.jwks_url.is_some() || self.hs256_secret.is_some()
    }

    pub fn rules(&self) -> Rules {
        Rules { issuer: self.issuer.clone(), audience: self.audience.clone(), tenant_claim: self.tenant_claim.clone() }
    }
}

pub struct JwtVerifier {
    config: JwtConfig,
    secret: Option<String>,
    jwks: Option<Jwks>,
    verified: Arc<Verified>,
}

/// Tokens verified, by their SHA-256: the caller and until when (seconds
/// since the epoch) the token stays valid.
#[derive(Default)]
struct Verified(std::sync::Mutex<HashMap<[u8; 32], (Principal, u64)>>);

/// Most tokens remembered; past it the memory starts over.
const VERIFIED_CAPACITY: usize = 10_000;

impl Verified {
    fn get(&self, digest: &[u8; 32]) -> Option<Principal> {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(digest).filter(|(_, until)| jsonwebtoken::get_current_timestamp() < *until).map(|(p, _)| p.clone())
    }

    fn put(&self, digest: [u8; 32], principal: Principal, until: u64) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= VERIFIED_CAPACITY {
            map.clear();
        }
        map.insert(digest, (principal, until));
    }

    fn forget(&self) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

struct Jwks {
    url: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, (DecodingKey, Algorithm)>>,
    /// When the JWKS was last fetched (also serialises the fetches).
    fetched: tokio::sync::Mutex<Option<Instant>>,
    /// Forgotten whenever the keys are fetched: a retired key's tokens
    /// stop working with it.
    verified: Arc<Verified>,
}

impl JwtVerifier {
    pub fn new(config: JwtConfig) -> Result<JwtVerifier, String> {
        if let Some(secret) = &config.hs256_secret {
            token::check_hs256_secret(secret)?;
        }
        let secret = config.hs256_secret.clone();
        let verified = Arc::new(Verified::default());
        let jwks = match &config.jwks_url {
            Some(url) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(format!("the JWKS URL {url:?} is not an http(s) URL"));
                }
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| format!("an HTTP client for the JWKS: {e}"))?;
                Some(Jwks {
                    url: url.clone(),
                    http,
                    keys: RwLock::default(),
                    fetched: tokio::sync::Mutex::new(None),
                    verified: verified.clone(),
                })
            }
            None => None,
        };
        Ok(JwtVerifier { config, secret, jwks, verified })
    }

    /// Fetch the JWKS now and keep refreshing it until the process ends.
    pub async fn start(self: &Arc<Self>) {
        let Some(jwks) = &self.jwks else { return };
        if let Err(e) = jwks.fetch().await {
            tracing::warn!(url = %jwks.url, error = %e, "could not fetch the JWKS; tokens are refused until it is fetched");
        }
        let verifier = Arc::clone(self);
        let every = self.config.jwks_refresh.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let jwks = verifier.jwks.as_ref().expect("checked above");
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = jwks.fetch().await {
                    tracing::warn!(url = %jwks.url, error = %e, "could not refresh the JWKS; keeping the keys fetched before");
                }
            }
        });
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, Denied> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(principal) = self.verified.get(&digest) {
            return Ok(principal);
        }
        let invalid = |why: String| Denied::Unauthenticated(why);
        let parts = token::parse(token)?;
        match parts.alg.as_str() {
            "HS256" => match &self.secret {
                Some(secret) => parts.check_hs256(secret)?,
                None => return Err(invalid("HS256 tokens are not accepted here (no shared secret is configured)".into())),
            },
            "RS256" | "ES256" => {
                let alg = if parts.alg == "RS256" { Algorithm::RS256 } else { Algorithm::ES256 };
                let Some(jwks) = &self.jwks else {
                    return Err(invalid(format!("{} tokens are not accepted here (no JWKS URL is configured)", parts.alg)));
                };
                let key = jwks.key(parts.kid.as_deref(), alg).await?;
                // The signature here; the claims by the rules the edge shares.
                let mut validation = Validation::new(alg);
                validation.validate_exp = false;
                validation.validate_nbf = false;
                validation.validate_aud = false;
                validation.set_required_spec_claims::<&str>(&[]);
                decode::<Value>(token, &key, &validation).map_err(|e| invalid(rejection(&e)))?;
            }
            other => return Err(invalid(format!("tokens signed with {other} are not accepted (RS256, ES256 or HS256)"))),
        }
        let principal = self.config.rules().principal(&parts.claims, jsonwebtoken::get_current_timestamp())?;
        if let Some(until) = token::valid_until(&parts.claims) {
            self.verified.put(digest, principal.clone(), until);
        }
        Ok(principal)
    }
}

fn rejection(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::InvalidAudience => "the token is for another audience".into(),
        ErrorKind::InvalidIssuer => "the token is from another issuer".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim:?} claim"),
        _ => format!("invalid token: {e}"),
    }
}

impl Jwks {
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, Denied> {
        if let Some(found) = self.lookup(kid, alg)? {
            return Ok(found);
        }
        {
            let fetched = self.fetched.lock().await;
            let due = fetched.is_none_or(|at| at.elapsed() >= UNKNOWN_KEY_REFETCH);
            drop(fetched);
            if due && let Err(e) = self.fetch().await {
                tracing::warn!(url = %self.url, error = %e, "could not fetch the JWKS for an unknown key id");
            }
        }
        self.lookup(kid, alg)?.ok_or_else(|| {
            Denied::Unauthenticated(format!(
                "the token is signed by a key the identity provider's JWKS does not hold (kid {:?})",
                kid.unwrap_or("")
            ))
        })
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Result<Option<DecodingKey>, Denied> {
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = match kid {
            Some(kid) => keys.get(kid),
            // Without a kid, only a JWKS of one key is unambiguous.
            None if keys.len() == 1 => keys.values().next(),
            None => return Err(Denied::Unauthenticated("the token names no key (kid) and the JWKS holds several".into())),
        };
        match found {
            Some((key, key_alg)) if *key_alg == alg => Ok(Some(key.clone())),
            Some((_, key_alg)) => Err(Denied::Unauthenticated(format!(
                "the token says {alg:?} but its key is for {key_alg:?}"
            ))),
            None => Ok(None),
        }
    }

    async fn fetch(&self) -> Result<(), String> {
        let mut fetched = self.fetched.lock().await;
        let set: Value = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = HashMap::new();
        for (kid, alg, json) in token::usable_jwks(&set) {
            let alg = if alg == "RS256" { Algorithm::RS256 } else { Algorithm::ES256 };
            let key = serde_json::from_str::<Jwk>(&json).map_err(|e| e.to_string()).and_then(|jwk| {
                DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())
            });
            match key {
                Ok(key) => {
                    keys.insert(kid, (key, alg));
                }
                Err(e) => tracing::warn!(kid, error = %e, "skipping a JWKS key that does not parse"),
            }
        }
        tracing::debug!(url = %self.url, keys = keys.len(), "fetched the JWKS");
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        self.verified.forget();
        *fetched = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;
    use crate::principal::Scope;

    const SECRET: &str = "a secret of the unit tests, 32 bytes or more";

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(JwtConfig {
            hs256_secret: Some(SECRET.into()),
            audience: Some("tidelake".into()),
            tenant_claim: Some("sub".into()),
            ..Default::default()
        })
        .unwrap()
    }

    fn token(claims: Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes()).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn claims_name_the_scope_and_the_tenant_and_a_verified_token_is_remembered_until_it_expires() {
        let v = verifier();
        let now = jsonwebtoken::get_current_timestamp();
        let good = token(json!({"sub": "auth0|alice", "scp": ["read", "write"], "aud": "tidelake", "exp": now + 60}));
        let p = v.verify(&good).await.unwrap();
        assert_eq!((p.scope, p.reach.entries().to_vec()), (Scope::Write, vec!["u-mf2xi2bqprqwy2ldmu".to_owned()]));
        assert_eq!(v.verify(&good).await.unwrap(), p, "the remembered answer is the same");
        assert_eq!(v.verified.0.lock().unwrap().len(), 1);

        for (claims, why) in [
            (json!({"sub": "a", "scope": "read", "aud": "tidelake", "exp": now - 120}), "expired"),
            (json!({"sub": "a", "scope": "read", "aud": "other", "exp": now + 60}), "audience"),
            (json!({"sub": "a", "scope": "read", "exp": now + 60}), "aud"),
        ] {
            assert!(matches!(v.verify(&token(claims)).await, Err(Denied::Unauthenticated(_))), "{why}");
        }
        let unscoped = token(json!({"sub": "a", "scope": "openid", "aud": "tidelake", "exp": now + 60}));
        assert!(matches!(v.verify(&unscoped).await, Err(Denied::Forbidden(_))));
        // A remembered token past its expiry is checked again, and refused.
        v.verified.put(Sha256::digest(good.as_bytes()).into(), p, now - 1);
        let expired_memory = v.verified.get(&Sha256::digest(good.as_bytes()).into());
        assert!(expired_memory.is_none());
    }
}
