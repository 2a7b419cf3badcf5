//! A test identity provider: signing keys (tests/fixtures/jwt) and their
//! JWKS served on 127.0.0.1, published and rotated as the test says.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::tests_dir;

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("a clock after 1970").as_secs()
}

/// An identity provider's JWKS, served on 127.0.0.1; what it publishes
/// changes with [`Jwks::publish`].
pub struct Jwks {
    pub url: String,
    keys: Arc<Mutex<Value>>,
}

impl Jwks {
    pub async fn start() -> Jwks {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the JWKS server");
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().expect("its address"));
        let keys = Arc::new(Mutex::new(json!({"keys": []})));
        let published = keys.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let body = published.lock().unwrap_or_else(std::sync::PoisonError::into_inner).to_string();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        Jwks { url, keys }
    }

    /// Publish exactly these keys.
    pub fn publish(&self, keys: &[&Signer]) {
        let set = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        *self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = set;
    }
}

/// A signing key of the identity provider.
pub struct Signer {
    pub kid: String,
    pub alg: Algorithm,
    pub key: EncodingKey,
    jwk: Value,
}

impl Signer {
    /// A key of tests/fixtures/jwt (RS256 or ES256), published as `kid`.
    pub fn load(file: &str, kid: &str, alg: Algorithm) -> Signer {
        let pem = std::fs::read(tests_dir().join("fixtures/jwt").join(file)).expect("a key of tests/fixtures/jwt");
        let key = if alg == Algorithm::ES256 { EncodingKey::from_ec_pem(&pem) } else { EncodingKey::from_rsa_pem(&pem) }
            .expect("a PEM private key");
        let mut jwk = serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&key, alg).expect("its public JWK"))
            .expect("a JWK as JSON");
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Signer { kid: kid.into(), alg, key, jwk }
    }

    /// A token for `sub` with `scope`, from `issuer` for `audience`, valid ten minutes.
    pub fn token(&self, sub: &str, scope: &str, issuer: &str, audience: &str) -> String {
        self.sign(&json!({"sub": sub, "scope": scope, "iss": issuer, "aud": audience, "exp": now() + 600, "iat": now()}))
    }

    /// Any claims, signed with this key.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.key).expect("sign a token")
    }
}
