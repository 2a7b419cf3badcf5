//! API keys, kept hashed in the data directory (`auth/api-keys.json`,
//! mode 0600): `tidelake token create` prints a key once, `list` shows
//! what each allows, `revoke` ends one. A running server sees changes to
//! the file on the next request.
//!
//! A key is `tlk_<id>_<secret>`: the id (12 hex digits) finds its entry,
//! the secret is 32 random bytes. The file keeps the key's SHA-256 (the
//! HTTP check) and its SCRAM-SHA-256 salted password (the Postgres wire
//! front's check, where the user name is `tlk_<id>`); neither gives back
//! the key. The same file given to the edge Worker (as its
//! `TIDELAKE_API_KEYS` secret) makes the same keys work there.
//!
//! This module is what a key is and how one is checked; the file is
//! [`KeyStore`]'s (the server's).

use data_encoding::{BASE64, HEXLOWER};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::principal::{Denied, Principal, Reach, Scope, Via};

#[cfg(feature = "server")]
pub use crate::store::{KeyStore, NewKey};

pub(crate) const PREFIX: &str = "tlk_";

/// Iterations of SCRAM's salted password (PostgreSQL's default).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// One key as the file keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredKey {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub scope: Scope,
    pub tenants: Reach,
    /// SHA-256 of the whole key, hex.
    pub hash: String,
    /// SCRAM-SHA-256: the salt and the salted password, base64.
    pub scram_salt: String,
    pub scram_salted_password: String,
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
}

impl StoredKey {
    /// The user name that picks this key on the Postgres wire front.
    pub fn user(&self) -> String {
        format!("{PREFIX}{}", self.id)
    }

    /// SCRAM-SHA-256's salt and salted password.
    pub fn scram_secret(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let salt = BASE64.decode(self.scram_salt.as_bytes()).ok()?;
        let salted = BASE64.decode(self.scram_salted_password.as_bytes()).ok()?;
        Some((salt, salted))
    }

    pub fn principal(&self) -> Principal {
        Principal { subject: self.user(), scope: self.scope, reach: self.tenants.clone(), via: Via::ApiKey }
    }
}

/// The key file as the server writes it: `{"keys": [...]}`.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct KeyFile {
    pub(crate) keys: Vec<StoredKey>,
}

/// The keys of a key file's text.
pub fn parse_key_file(text: &str) -> Result<Vec<StoredKey>, String> {
    serde_json::from_str::<KeyFile>(text).map(|file| file.keys).map_err(|e| format!("not a tidelake API key file: {e}"))
}

/// The caller a presented key is, if it is one of `keys` and not revoked.
pub fn verify_among(keys: &[StoredKey], presented: &str) -> Result<Principal, Denied> {
    let id = key_id(presented).ok_or_else(invalid)?;
    let key = keys.iter().find(|k| k.id == id && k.revoked_ms.is_none()).ok_or_else(invalid)?;
    verify(key, presented)
}

/// The caller `presented` is if it is `key`.
pub(crate) fn verify(key: &StoredKey, presented: &str) -> Result<Principal, Denied> {
    let hash = Sha256::digest(presented.as_bytes());
    let expected = HEXLOWER.decode(key.hash.as_bytes()).map_err(|_| invalid())?;
    if bool::from(hash.as_slice().ct_eq(&expected)) { Ok(key.principal()) } else { Err(invalid()) }
}

fn invalid() -> Denied {
    Denied::Unauthenticated("invalid API key".into())
}

/// The id in `tlk_<id>_<secret>`.
pub(crate) fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && !secret.is_empty()).then_some(id)
}

/// Whether a bearer token looks like an API key (rather than a JWT).
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// SCRAM's `Hi(password, salt, i)`: PBKDF2 with HMAC-SHA-256, one block.
pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mac = |message: &[&[u8]]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes any key length");
        for part in message {
            mac.update(part);
        }
        <[u8; 32]>::from(mac.finalize().into_bytes())
    };
    let mut u = mac(&[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = mac(&[&u]);
        out.iter_mut().zip(u).for_each(|(o, x)| *o ^= x);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_salted_password_is_pbkdf2_hmac_sha256() {
        // RFC 7677's SCRAM-SHA-256 example: password "pencil", salt
        // W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations → its ClientKey.
        let salt = BASE64.decode(b"W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(b"pencil", &salt, 4096);
        let mut mac = Hmac::<Sha256>::new_from_slice(&salted).unwrap();
        mac.update(b"Client Key");
        let client_key = mac.finalize().into_bytes();
        let stored_key = Sha256::digest(client_key);
        // StoredKey as PostgreSQL writes it for this password and salt.
        assert_eq!(BASE64.encode(&stored_key), "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=");
    }
}
