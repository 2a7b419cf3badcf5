//! The server's API key file (`auth/api-keys.json` in the data
//! directory, mode 0600): `tidelake token create` adds a key, `list` shows
//! them, `revoke` ends one; a running server sees a change on the next
//! request. What a key is and how it is checked is [`crate::keys`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use data_encoding::{BASE64, BASE64URL_NOPAD, HEXLOWER};
use sha2::{Digest, Sha256};

use crate::keys::{KeyFile, PREFIX, SCRAM_ITERATIONS, StoredKey, key_id, salted_password};
use crate::principal::{Denied, Principal, Reach, Scope};

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
        crate::keys::verify(&key, presented)
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

}
