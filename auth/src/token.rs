//! A JWT's rules, whoever checks its signature: the server (with
//! `jsonwebtoken`) and the edge Worker (with WebCrypto) read the same
//! claims the same way.
//!
//! `exp` is always required (30 seconds of leeway for clock skew), `nbf`
//! honoured, `iss` and `aud` checked when configured. What a token allows
//! comes from its claims: the scope from `scope` (space-separated, OAuth
//! 2.0) or `scp` / `scopes` / `permissions` (arrays), the highest of
//! `read`, `write`, `admin`; the tenants from the configured tenant claim
//! (a database per user, see [`crate::claim`]) or else from `tenants` (ids
//! and patterns).

use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::principal::{Denied, Principal, Reach, Scope, Via};

/// Leeway on `exp` and `nbf`, in seconds (clock skew).
pub const LEEWAY: u64 = 30;

/// The shortest HS256 secret accepted.
pub const MIN_HS256_SECRET: usize = 32;

/// What a token must say, besides its signature.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// A database per user: the tenant is this claim's value, encoded.
    pub tenant_claim: Option<String>,
}

/// The token in an `Authorization: Bearer <token>` header.
pub fn bearer(authorization: Option<&str>) -> Result<&str, Denied> {
    let value = authorization.ok_or_else(Denied::missing)?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Denied::Unauthenticated("expected Authorization: Bearer <token>".into()))
}

pub fn check_hs256_secret(secret: &str) -> Result<(), String> {
    if secret.len() < MIN_HS256_SECRET {
        return Err("the HS256 secret must be at least 32 bytes (generate one with `openssl rand -base64 48`)".into());
    }
    Ok(())
}

/// A compact JWS taken apart (its signature not yet checked).
#[derive(Debug)]
pub struct Parts<'a> {
    pub alg: String,
    pub kid: Option<String>,
    /// `header.payload`, what the signature signs.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
    pub claims: Value,
}

pub fn parse(token: &str) -> Result<Parts<'_>, Denied> {
    let malformed = |why: &str| Denied::Unauthenticated(format!("malformed token: {why}"));
    let (signing_input, signature) = token.rsplit_once('.').ok_or_else(|| malformed("not header.payload.signature"))?;
    let (header, payload) = signing_input.split_once('.').ok_or_else(|| malformed("not header.payload.signature"))?;
    let json = |part: &str, what: &str| -> Result<Value, Denied> {
        let bytes = BASE64URL_NOPAD.decode(part.as_bytes()).map_err(|_| malformed(&format!("its {what} is not base64url")))?;
        match serde_json::from_slice(&bytes) {
            Ok(value @ Value::Object(_)) => Ok(value),
            _ => Err(malformed(&format!("its {what} is not a JSON object"))),
        }
    };
    let header = json(header, "header")?;
    let claims = json(payload, "payload")?;
    let signature = BASE64URL_NOPAD.decode(signature.as_bytes()).map_err(|_| malformed("its signature is not base64url"))?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or_else(|| malformed("its header names no alg"))?.to_owned();
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    Ok(Parts { alg, kid, signing_input, signature, claims })
}

impl Parts<'_> {
    /// The HMAC-SHA-256 signature, checked in constant time.
    pub fn check_hs256(&self, secret: &str) -> Result<(), Denied> {
        if self.alg != "HS256" {
            return Err(Denied::Unauthenticated(format!("the token says {}, not HS256", self.alg)));
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(self.signing_input.as_bytes());
        mac.verify_slice(&self.signature)
            .map_err(|_| Denied::Unauthenticated("the token's signature does not verify".into()))
    }
}

impl Rules {
    /// The caller a token with a verified signature and these claims is,
    /// at `now` (seconds since the epoch).
    pub fn principal(&self, claims: &Value, now: u64) -> Result<Principal, Denied> {
        self.check(claims, now)?;
        let scope = scope_of(claims).ok_or_else(|| {
            Denied::Forbidden("the token carries no tidelake scope: its scope claim has none of read, write, admin".into())
        })?;
        let reach = match &self.tenant_claim {
            Some(claim) => match claims.get(claim) {
                Some(Value::String(value)) if !value.is_empty() => {
                    Reach::of([crate::claim::tenant_of(value)]).map_err(Denied::Forbidden)?
                }
                _ => return Err(Denied::Forbidden(format!("the token has no {claim:?} claim to name its tenant"))),
            },
            None => match claims.get("tenants") {
                Some(Value::String(one)) => Reach::of([one.clone()]).map_err(Denied::Forbidden)?,
                Some(Value::Array(list)) => {
                    let entries: Option<Vec<String>> = list.iter().map(|v| v.as_str().map(str::to_owned)).collect();
                    let entries = entries.ok_or_else(|| Denied::Forbidden("the token's tenants claim must hold strings".into()))?;
                    Reach::of(entries).map_err(Denied::Forbidden)?
                }
                _ => Reach::none(),
            },
        };
        let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(Principal { subject, scope, reach, via: Via::Jwt })
    }

    /// `exp`, `nbf`, `iss` and `aud`.
    fn check(&self, claims: &Value, now: u64) -> Result<(), Denied> {
        let invalid = |why: &str| Err(Denied::Unauthenticated(why.to_owned()));
        let number = |name: &str| claims.get(name).map(|v| v.as_f64().map(|n| n.max(0.0) as u64));
        match number("exp") {
            None => return invalid("the token has no \"exp\" claim"),
            Some(None) => return invalid("the token's exp is not a number"),
            Some(Some(exp)) if exp.saturating_add(LEEWAY) <= now => return invalid("the token has expired"),
            Some(Some(_)) => {}
        }
        match number("nbf") {
            Some(None) => return invalid("the token's nbf is not a number"),
            Some(Some(nbf)) if nbf > now.saturating_add(LEEWAY) => return invalid("the token is not valid yet (nbf)"),
            _ => {}
        }
        if let Some(issuer) = &self.issuer {
            match claims.get("iss").and_then(Value::as_str) {
                None => return invalid("the token has no \"iss\" claim"),
                Some(iss) if iss != issuer => return invalid("the token is from another issuer"),
                Some(_) => {}
            }
        }
        if let Some(audience) = &self.audience {
            let ours = match claims.get("aud") {
                None => return invalid("the token has no \"aud\" claim"),
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
                Some(_) => false,
            };
            if !ours {
                return invalid("the token is for another audience");
            }
        }
        Ok(())
    }
}

/// When the token stops being valid (`exp` plus the leeway), for callers
/// that remember a verified token.
pub fn valid_until(claims: &Value) -> Option<u64> {
    claims.get("exp").and_then(Value::as_u64).map(|exp| exp.saturating_add(LEEWAY))
}

/// The highest tidelake scope among the token's scopes.
fn scope_of(claims: &Value) -> Option<Scope> {
    let mut scopes: Vec<&str> = Vec::new();
    if let Some(text) = claims.get("scope").and_then(Value::as_str) {
        scopes.extend(text.split_whitespace());
    }
    for name in ["scp", "scopes", "permissions", "scope"] {
        if let Some(list) = claims.get(name).and_then(Value::as_array) {
            scopes.extend(list.iter().filter_map(Value::as_str));
        }
    }
    scopes.into_iter().filter_map(Scope::parse).max()
}

/// The keys of a JWKS we can use, as kid, algorithm (`RS256` or `ES256`)
/// and the key's JSON: RSA keys for RS256 and P-256 keys for ES256 that
/// name their kid; keys for other algorithms (or for encryption) are not
/// ours to use.
pub fn usable_jwks(set: &Value) -> Vec<(String, &'static str, String)> {
    let Some(keys) = set.get("keys").and_then(Value::as_array) else { return Vec::new() };
    keys.iter()
        .filter_map(|jwk| {
            let kid = jwk.get("kid")?.as_str()?.to_owned();
            if jwk.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
                return None;
            }
            let alg = jwk.get("alg").and_then(Value::as_str);
            let usable = match (jwk.get("kty")?.as_str()?, alg) {
                ("RSA", None | Some("RS256")) => "RS256",
                ("EC", None | Some("ES256")) if jwk.get("crv").and_then(Value::as_str) == Some("P-256") => "ES256",
                _ => return None,
            };
            Some((kid, usable, jwk.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &str = "a secret of the unit tests, 32 bytes or more";

    fn hs256(claims: &Value) -> String {
        let header = BASE64URL_NOPAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{header}.{payload}").as_bytes());
        format!("{header}.{payload}.{}", BASE64URL_NOPAD.encode(&mac.finalize().into_bytes()))
    }

    #[test]
    fn claims_are_checked_and_name_the_scope_and_tenants() {
        let rules = Rules { audience: Some("tidelake".into()), tenant_claim: Some("sub".into()), ..Default::default() };
        let now = 1_800_000_000;
        let good = json!({"sub": "auth0|alice", "scp": ["read", "write"], "aud": ["x", "tidelake"], "exp": now + 60});
        let token = hs256(&good);
        let parts = parse(&token).unwrap();
        parts.check_hs256(SECRET).unwrap();
        assert!(parts.check_hs256("another secret, also 32 bytes long!!").is_err());
        let p = rules.principal(&parts.claims, now).unwrap();
        assert_eq!((p.scope, p.reach.entries().to_vec()), (Scope::Write, vec!["u-mf2xi2bqprqwy2ldmu".to_owned()]));

        for (claims, why) in [
            (json!({"sub": "a", "scope": "read", "aud": "tidelake", "exp": now - 31}), "the token has expired"),
            (json!({"sub": "a", "scope": "read", "aud": "other", "exp": now + 60}), "the token is for another audience"),
            (json!({"sub": "a", "scope": "read", "exp": now + 60}), "the token has no \"aud\" claim"),
            (json!({"sub": "a", "scope": "read", "aud": "tidelake"}), "the token has no \"exp\" claim"),
            (json!({"sub": "a", "scope": "read", "aud": "tidelake", "exp": now + 60, "nbf": now + 120}), "the token is not valid yet (nbf)"),
        ] {
            assert_eq!(rules.principal(&claims, now), Err(Denied::Unauthenticated(why.into())), "{claims}");
        }
        // Within the leeway an expired token still passes.
        assert!(rules.principal(&json!({"sub": "a", "scope": "read", "aud": "tidelake", "exp": now - 29}), now).is_ok());
        let unscoped = json!({"sub": "a", "scope": "openid", "aud": "tidelake", "exp": now + 60});
        assert!(matches!(rules.principal(&unscoped, now), Err(Denied::Forbidden(_))));
        let other_tenants = Rules::default().principal(&json!({"scope": "admin", "tenants": ["acme", "team-*"], "exp": now + 1}), now);
        assert_eq!(other_tenants.unwrap().reach, Reach::of(["acme", "team-*"]).unwrap());
    }

    #[test]
    fn malformed_tokens_and_headers_are_refused() {
        for token in ["", "a.b", "a.b.c", "e30.e30", "!!.e30.sig", "e30.e30.sig"] {
            assert!(matches!(parse(token), Err(Denied::Unauthenticated(_))), "{token:?}");
        }
        assert_eq!(bearer(Some("Bearer  tok ")), Ok("tok"));
        assert!(bearer(Some("Basic abc")).is_err());
        assert!(bearer(None).is_err());
    }

    #[test]
    fn only_signing_keys_of_our_algorithms_are_used() {
        let set = json!({"keys": [
            {"kid": "r", "kty": "RSA", "n": "x", "e": "AQAB"},
            {"kid": "e", "kty": "EC", "crv": "P-256", "x": "x", "y": "y", "alg": "ES256"},
            {"kid": "p384", "kty": "EC", "crv": "P-384", "x": "x", "y": "y"},
            {"kid": "enc", "kty": "RSA", "use": "enc", "n": "x", "e": "AQAB"},
            {"kid": "ps", "kty": "RSA", "alg": "PS256", "n": "x", "e": "AQAB"},
            {"kty": "RSA", "n": "x", "e": "AQAB"},
        ]});
        let usable: Vec<(String, &str)> = usable_jwks(&set).into_iter().map(|(kid, alg, _)| (kid, alg)).collect();
        assert_eq!(usable, vec![("r".to_owned(), "RS256"), ("e".to_owned(), "ES256")]);
    }
}
