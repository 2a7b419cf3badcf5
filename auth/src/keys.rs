//! API keys, kept hashed in the data directory (`auth/api-keys.json`,
//! mode 0600): `tidelake token create` prints a key once, `list` shows
//! what each allows, `revoke` ends one. A running server sees changes to
//! the file on the next request.
//!
//! A key is `tlk_<id>_<secret>`: the id (12 hex digits) finds its entry,
//! the secret is 32 random bytes. The file keeps the key's SHA-256 (the
//! HTTP check) and its SCRAM-SHA-256 salted password (the Postgres wire
//! front's check, where the user name is `tlk_<id>`); neither gives back
//! the key.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use data_encoding::{BASE64, BASE64URL_NOPAD, HEXLOWER};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::principal::{Denied, Principal, Reach, Scope, Via};

const PREFIX: &str = "tlk_";

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

#[derive(Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

/// The key file of a data directory.
pub struct KeyStore {
    path: PathBuf,
    cache: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    stamp: Option<(SystemTime, u64)>,
    keys: Vec<StoredKey>,
}

/// A key just made: `key` is shown once and kept nowhere.
pub struct NewKey {
    pub key: String,
    pub stored: StoredKey,
}

impl KeyStore {
    pub fn open(data_dir: &Path) -> KeyStore {
        KeyStore { path: data_dir.join("auth").join("api-keys.json"), cache: Mutex::default() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether keys were ever made here (then auth is on).
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    pub fn create(&self, scope: Scope, tenants: Reach, name: Option<String>) -> std::io::Result<NewKey> {
        let mut file = self.read()?;
        let id = HEXLOWER.encode(&random::<6>());
        let key = format!("{PREFIX}{id}_{}", BASE64URL_NOPAD.encode(&random::<32>()));
        let salt = random::<16>();
        let stored = StoredKey {
            id,
            name,
            scope,
            tenants,
            hash: HEXLOWER.encode(&Sha256::digest(key.as_bytes())),
            scram_salt: BASE64.encode(&salt),
            scram_salted_password: BASE64.encode(&salted_password(key.as_bytes(), &salt, SCRAM_ITERATIONS)),
            created_ms: now_ms(),
            revoked_ms: None,
        };
        file.keys.push(stored.clone());
        self.write(&file)?;
        Ok(NewKey { key, stored })
    }

    pub fn list(&self) -> std::io::Result<Vec<StoredKey>> {
        Ok(self.read()?.keys)
    }

    /// Revoke a key by its id (or `tlk_<id>`); false if there is none.
    pub fn revoke(&self, id: &str) -> std::io::Result<bool> {
        let id = id.strip_prefix(PREFIX).unwrap_or(id);
        let mut file = self.read()?;
        let Some(key) = file.keys.iter_mut().find(|k| k.id == id) else { return Ok(false) };
        if key.revoked_ms.is_none() {
            key.revoked_ms = Some(now_ms());
            self.write(&file)?;
        }
        Ok(true)
    }

    /// The caller a presented key is, if it is a live key of this store.
    pub fn verify(&self, presented: &str) -> Result<Principal, Denied> {
        let invalid = || Denied::Unauthenticated("invalid API key".into());
        let id = key_id(presented).ok_or_else(invalid)?;
        let key = self.live(id).ok_or_else(invalid)?;
        let hash = Sha256::digest(presented.as_bytes());
        let expected = HEXLOWER.decode(key.hash.as_bytes()).map_err(|_| invalid())?;
        if bool::from(hash.as_slice().ct_eq(&expected)) { Ok(key.principal()) } else { Err(invalid()) }
    }

    /// A live key by the user name `tlk_<id>` (the wire front's SCRAM).
    pub fn by_user(&self, user: &str) -> Option<StoredKey> {
        let id = user.strip_prefix(PREFIX)?;
        self.live(id)
    }

    fn live(&self, id: &str) -> Option<StoredKey> {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stamp = std::fs::metadata(&self.path).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if stamp != cache.stamp {
            match self.read() {
                Ok(file) => *cache = Cached { stamp, keys: file.keys },
                Err(e) => tracing::warn!(path = %self.path.display(), error = %e, "could not read the API keys; keeping the ones read before"),
            }
        }
        cache.keys.iter().find(|k| k.id == id && k.revoked_ms.is_none()).cloned()
    }

    fn read(&self) -> std::io::Result<KeyFile> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile::default()),
            Err(e) => Err(e),
        }
    }

    /// Replace the file whole (write aside, then rename), readable by its owner only.
    fn write(&self, file: &KeyFile) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let dir = self.path.parent().expect("the key file is in a folder");
        std::fs::create_dir_all(dir)?;
        let aside = dir.join(format!(".api-keys.{}.json", std::process::id()));
        let mut out = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&aside)?;
        out.write_all(&serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?)?;
        out.sync_all()?;
        std::fs::rename(&aside, &self.path)
    }
}

/// The id in `tlk_<id>_<secret>`.
fn key_id(key: &str) -> Option<&str> {
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

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_verified_by_hash_and_revoked_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path());
        assert!(!store.exists());
        let made = store.create(Scope::Write, Reach::of(["acme"]).unwrap(), Some("ci".into())).unwrap();
        assert!(store.exists());
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains(&made.key), "the key itself is never stored");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(store.path()).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);

        let principal = store.verify(&made.key).unwrap();
        assert_eq!(principal.scope, Scope::Write);
        assert!(principal.may_read("acme") && !principal.may_read("other"));
        let mut forged = made.key.clone();
        forged.pop();
        forged.push(if made.key.ends_with('A') { 'B' } else { 'A' });
        assert!(store.verify(&forged).is_err());
        assert!(store.verify("tlk_000000000000_x").is_err());
        assert!(store.verify("not a key").is_err());

        // Another process (the CLI) revokes it: seen on the next check.
        assert!(KeyStore::open(dir.path()).revoke(&made.stored.user()).unwrap());
        assert!(store.verify(&made.key).is_err());
        assert!(!store.revoke("ffffffffffff").unwrap());
        assert!(store.list().unwrap()[0].revoked_ms.is_some());
    }

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
