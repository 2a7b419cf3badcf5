//! Who is calling, at the edge: the server's tokens and scopes (`auth`'s
//! rules, not a copy). The Worker checks a request's bearer token before any
//! tenant wakes: an API key the server made (its hashed records given to the
//! Worker as the `TIDELAKE_API_KEYS` secret), an HS256 JWT signed with
//! `TIDELAKE_AUTH_JWT_SECRET`, or an RS256/ES256 JWT of the identity
//! provider at `TIDELAKE_AUTH_JWKS_URL` (signatures checked with WebCrypto).
//!
//! Without any of these a deployed Worker answers nobody: like the server
//! without auth listens on loopback only, the Worker then serves only
//! requests to a loopback host (`wrangler dev`), unless
//! `TIDELAKE_AUTH_INSECURE_NO_AUTH` is `true`.

use std::cell::RefCell;

use auth::keys::StoredKey;
use auth::token::{self, Rules};
use auth::{Browser, Denied, Principal};
use serde_json::Value;
use wasm_bindgen::prelude::*;
use worker::{Env, Fetch, Url};

use crate::vars::{comma_list, setting};

#[wasm_bindgen(module = "/js/auth.js")]
extern "C" {
    #[wasm_bindgen(js_name = verifySignature, catch)]
    async fn verify_signature(alg: &str, jwk: &str, signing_input: &str, signature: &[u8]) -> Result<JsValue, JsValue>;
}

/// How often the JWKS is fetched again, and the soonest a token signed by
/// a key it does not hold makes us fetch it again (the server's defaults).
const JWKS_REFRESH_MS: f64 = 5.0 * 60.0 * 1000.0;
const UNKNOWN_KEY_REFETCH_MS: f64 = 30.0 * 1000.0;

/// The Worker's auth, read from its variables and secrets.
pub struct EdgeAuth {
    keys: Option<Vec<StoredKey>>,
    hs256_secret: Option<String>,
    jwks_url: Option<String>,
    rules: Rules,
    insecure_no_auth: bool,
    pub browser: Browser,
}

impl EdgeAuth {
    pub fn from_env(env: &Env) -> Result<EdgeAuth, String> {
        let keys = setting(env, "TIDELAKE_API_KEYS")
            .map(|text| auth::keys::parse_key_file(&text).map_err(|e| format!("TIDELAKE_API_KEYS: {e}")))
            .transpose()?;
        let hs256_secret = setting(env, "TIDELAKE_AUTH_JWT_SECRET");
        if let Some(secret) = &hs256_secret {
            token::check_hs256_secret(secret).map_err(|e| format!("TIDELAKE_AUTH_JWT_SECRET: {e}"))?;
        }
        let jwks_url = setting(env, "TIDELAKE_AUTH_JWKS_URL");
        if let Some(url) = &jwks_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(format!("TIDELAKE_AUTH_JWKS_URL {url:?} is not an http(s) URL"));
        }
        let rules = Rules {
            issuer: setting(env, "TIDELAKE_AUTH_ISSUER"),
            audience: setting(env, "TIDELAKE_AUTH_AUDIENCE"),
            tenant_claim: setting(env, "TIDELAKE_AUTH_TENANT_CLAIM"),
        };
        let browser = Browser {
            allowed_origins: setting(env, "TIDELAKE_AUTH_ALLOWED_ORIGINS").map(|v| comma_list(&v)).unwrap_or_default(),
            allowed_hosts: Vec::new(),
            base_domain: setting(env, "BASE_DOMAIN"),
        };
        let insecure_no_auth = setting(env, "TIDELAKE_AUTH_INSECURE_NO_AUTH").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(EdgeAuth { keys, hs256_secret, jwks_url, rules, insecure_no_auth, browser })
    }

    pub fn is_enabled(&self) -> bool {
        self.keys.is_some() || self.hs256_secret.is_some() || self.jwks_url.is_some()
    }

    /// The caller of a request to `url` with this `Authorization` header.
    pub async fn authenticate(&self, url: &Url, authorization: Option<&str>) -> Result<Principal, Denied> {
        if !self.is_enabled() {
            let loopback = url.host_str().is_some_and(|h| {
                let bare = h.trim_start_matches('[').trim_end_matches(']');
                bare == "localhost" || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            });
            return if loopback || self.insecure_no_auth {
                Ok(Principal::open())
            } else {
                Err(Denied::Unauthenticated(
                    "this Worker has no auth configured, so it serves only loopback hosts (wrangler dev): set the \
                     TIDELAKE_API_KEYS, TIDELAKE_AUTH_JWT_SECRET or TIDELAKE_AUTH_JWKS_URL secret (docs/edge.md)"
                        .into(),
                ))
            };
        }
        let bearer = token::bearer(authorization)?;
        if auth::keys::is_api_key(bearer) {
            return auth::keys::verify_among(self.keys.as_deref().unwrap_or_default(), bearer);
        }
        let parts = token::parse(bearer)?;
        match parts.alg.as_str() {
            "HS256" => {
                let secret = self.hs256_secret.as_deref().ok_or_else(|| {
                    Denied::Unauthenticated("HS256 tokens are not accepted here (no shared secret is configured)".into())
                })?;
                parts.check_hs256(secret)?;
            }
            "RS256" | "ES256" => {
                let url = self.jwks_url.as_deref().ok_or_else(|| {
                    Denied::Unauthenticated(format!("{} tokens are not accepted here (no JWKS URL is configured)", parts.alg))
                })?;
                let jwk = jwks_key(url, parts.kid.as_deref(), &parts.alg).await?;
                let verified = verify_signature(&parts.alg, &jwk, parts.signing_input, &parts.signature)
                    .await
                    .map_err(|e| Denied::Unauthenticated(format!("the token's signature could not be checked: {e:?}")))?;
                if verified.as_bool() != Some(true) {
                    return Err(Denied::Unauthenticated("the token's signature does not verify".into()));
                }
            }
            other => {
                return Err(Denied::Unauthenticated(format!(
                    "tokens signed with {other} are not accepted (RS256, ES256 or HS256)"
                )));
            }
        }
        let now = (js_sys::Date::now() / 1000.0) as u64;
        self.rules.principal(&parts.claims, now)
    }
}

/// The identity provider's keys as this isolate last fetched them.
#[derive(Default)]
struct Jwks {
    url: String,
    fetched_ms: Option<f64>,
    /// kid, algorithm, the key as JSON.
    keys: Vec<(String, &'static str, String)>,
}

thread_local! {
    static JWKS: RefCell<Jwks> = RefCell::default();
}

/// The JWKS key a token names, fetching the set when it is stale or does
/// not hold the key (at most every 30 seconds).
async fn jwks_key(url: &str, kid: Option<&str>, alg: &str) -> Result<String, Denied> {
    let now = js_sys::Date::now();
    let (age, found) = JWKS.with_borrow(|jwks| {
        let age = jwks.fetched_ms.filter(|_| jwks.url == url).map(|at| now - at);
        (age, lookup(jwks, kid, alg))
    });
    let stale = age.is_none_or(|age| age >= JWKS_REFRESH_MS);
    let unknown = matches!(found, Ok(None)) && age.is_none_or(|age| age >= UNKNOWN_KEY_REFETCH_MS);
    if stale || unknown {
        match fetch_jwks(url).await {
            Ok(keys) => JWKS.with_borrow_mut(|jwks| *jwks = Jwks { url: url.to_owned(), fetched_ms: Some(now), keys }),
            Err(e) => worker::console_warn!("could not fetch the JWKS at {url}: {e}"),
        }
    }
    JWKS.with_borrow(|jwks| lookup(jwks, kid, alg))?.ok_or_else(|| {
        Denied::Unauthenticated(format!(
            "the token is signed by a key the identity provider's JWKS does not hold (kid {:?})",
            kid.unwrap_or("")
        ))
    })
}

fn lookup(jwks: &Jwks, kid: Option<&str>, alg: &str) -> Result<Option<String>, Denied> {
    let found = match kid {
        Some(kid) => jwks.keys.iter().find(|(k, _, _)| k == kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None if jwks.keys.is_empty() => None,
        None => return Err(Denied::Unauthenticated("the token names no key (kid) and the JWKS holds several".into())),
    };
    match found {
        Some((_, key_alg, jwk)) if *key_alg == alg => Ok(Some(jwk.clone())),
        Some((_, key_alg, _)) => Err(Denied::Unauthenticated(format!("the token says {alg} but its key is for {key_alg}"))),
        None => Ok(None),
    }
}

async fn fetch_jwks(url: &str) -> Result<Vec<(String, &'static str, String)>, String> {
    let url = Url::parse(url).map_err(|e| e.to_string())?;
    let mut response = Fetch::Url(url).send().await.map_err(|e| e.to_string())?;
    if response.status_code() != 200 {
        return Err(format!("HTTP {}", response.status_code()));
    }
    let set: Value = response.json().await.map_err(|e| format!("not a JWKS: {e}"))?;
    Ok(token::usable_jwks(&set))
}
