//! Tenant archives in object storage: the cold tier and base backups.
//!
//! An archive is a tenant's closed (or checkpointed and held) database
//! directory as a tar stream compressed with zstd, stored beside a JSON
//! manifest with its change-log LSN, time and SHA-256. An archive is
//! verified against its manifest before anything is unpacked: a corrupt one
//! is refused, never opened.
//!
//! Layout under the archive location:
//!
//! ```text
//! tenants/<tenant>/backups/<lsn, 20 digits>-<unix ms>.tar.zst
//! tenants/<tenant>/backups/<lsn, 20 digits>-<unix ms>.json
//! ```
//!
//! A cold tenant is one whose directory was removed after a backup: a small
//! local marker names that backup (`Tiers`, in `tenants.rs`).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use data_encoding::HEXLOWER;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Where archives go: `file:///path` or `s3://bucket/prefix`, with storage
/// properties for S3 (`s3.endpoint`, `s3.region`, `s3.access-key-id`,
/// `s3.secret-access-key`, `s3.path-style-access`).
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub location: String,
    pub storage: BTreeMap<String, String>,
}

/// The object store archives live in.
pub struct Store {
    op: opendal::Operator,
    location: String,
}

/// What is known of one archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub tenant: String,
    /// The newest change-log LSN inside the archive (0: none).
    pub lsn: u64,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// Why: `cold` (demotion), `periodic`, `schema` (after a schema change),
    /// `manual`; `undo`, `restore`, `branch` (taken by restores).
    pub reason: String,
    /// The object key of the archive itself.
    pub key: String,
    /// Size of the compressed archive.
    pub bytes: u64,
    /// Size of the directory it holds.
    pub raw_bytes: u64,
    pub sha256: String,
    /// The commit time of the newest transaction the archive holds, in µs
    /// since the Unix epoch, where known (a backup taken through the open
    /// database): restores to a time choose by it, as a schema change
    /// commits with no change-log LSN of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_at_us: Option<i64>,
}

impl Manifest {
    /// The instant the archive's state is of, in µs: its newest commit's
    /// time, else when it was taken (every commit it holds is before that).
    pub fn state_at_us(&self) -> i64 {
        self.state_at_us.unwrap_or((self.taken_at_ms as i64).saturating_mul(1000))
    }
}

impl Store {
    pub fn open(config: &ArchiveConfig) -> Result<Self> {
        let failed = |source| Error::Storage { what: format!("archive storage {}", config.location), source };
        let op = if let Some(path) = config.location.strip_prefix("file://") {
            std::fs::create_dir_all(path).map_err(|e| Error::io("create", Path::new(path), e))?;
            opendal::Operator::new(opendal::services::Fs::default().root(path)).map_err(failed)?.finish()
        } else if let Some(rest) = config.location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let get = |key: &str| config.storage.get(key).map(String::as_str);
            let mut s3 = opendal::services::S3::default()
                .bucket(bucket)
                .root(&format!("/{prefix}"))
                .region(get("s3.region").unwrap_or("us-east-1"));
            if let Some(endpoint) = get("s3.endpoint") {
                s3 = s3.endpoint(endpoint);
            }
            if let (Some(id), Some(secret)) = (get("s3.access-key-id"), get("s3.secret-access-key")) {
                s3 = s3.access_key_id(id).secret_access_key(secret).disable_config_load().disable_ec2_metadata();
            }
            if get("s3.path-style-access") == Some("false") {
                s3 = s3.enable_virtual_host_style();
            }
            opendal::Operator::new(s3).map_err(failed)?.finish()
        } else {
            return Err(Error::Engine(format!(
                "archive location {:?}: expected file:///path or s3://bucket/prefix",
                config.location
            )));
        };
        Ok(Self { op, location: config.location.clone() })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn failed(&self, what: &str, key: &str, source: opendal::Error) -> Error {
        Error::Storage { what: format!("{what} {key} in {}", self.location), source }
    }

    /// Store a packed archive and its manifest (the manifest last: an
    /// archive without one is an interrupted upload, ignored).
    pub async fn put(&self, tenant: &str, packed: Packed, lsn: u64, state_at_us: Option<i64>, reason: &str) -> Result<Manifest> {
        let taken_at_ms = now_ms();
        let stem = format!("tenants/{tenant}/backups/{lsn:020}-{taken_at_ms}");
        let key = format!("{stem}.tar.zst");
        let manifest = Manifest {
            tenant: tenant.to_owned(),
            lsn,
            taken_at_ms,
            reason: reason.to_owned(),
            key: key.clone(),
            bytes: packed.bytes.len() as u64,
            raw_bytes: packed.raw_bytes,
            sha256: packed.sha256,
            state_at_us,
        };
        self.op.write(&key, packed.bytes).await.map_err(|e| self.failed("write", &key, e))?;
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        let manifest_key = format!("{stem}.json");
        self.op.write(&manifest_key, json).await.map_err(|e| self.failed("write", &manifest_key, e))?;
        Ok(manifest)
    }

    /// Fetch an archive and check it against its manifest.
    pub async fn fetch(&self, manifest: &Manifest) -> Result<Vec<u8>> {
        let bytes = match self.op.read(&manifest.key).await {
            Ok(bytes) => bytes.to_vec(),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
                return Err(Error::Unavailable(format!(
                    "archive {} of tenant {} is not in {}: a backup expired by retention after it was chosen (try again), or an archive removed by hand",
                    manifest.key, manifest.tenant, self.location
                )));
            }
            Err(e) => return Err(self.failed("read", &manifest.key, e)),
        };
        let sha256 = HEXLOWER.encode(&Sha256::digest(&bytes));
        if bytes.len() as u64 != manifest.bytes || sha256 != manifest.sha256 {
            return Err(Error::ArchiveCorrupt(format!(
                "archive {} of tenant {} is corrupt ({} bytes with SHA-256 {sha256}; its manifest says {} bytes, {}): refused, nothing was opened",
                manifest.key, manifest.tenant, bytes.len(), manifest.bytes, manifest.sha256
            )));
        }
        Ok(bytes)
    }

    /// Every complete backup of a tenant, oldest first.
    pub async fn backups(&self, tenant: &str) -> Result<Vec<Manifest>> {
        let dir = format!("tenants/{tenant}/backups/");
        let entries = match self.op.list(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.failed("list", &dir, e)),
        };
        let mut manifests = Vec::new();
        for entry in entries {
            if !entry.path().ends_with(".json") {
                continue;
            }
            // A manifest gone between the listing and the read is a backup
            // being expired (retention removes the manifest first).
            let bytes = match self.op.read(entry.path()).await {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.failed("read", entry.path(), e)),
            };
            match serde_json::from_slice::<Manifest>(&bytes.to_vec()) {
                Ok(manifest) => manifests.push(manifest),
                Err(e) => tracing::warn!(key = entry.path(), error = %e, "skipping an unreadable backup manifest"),
            }
        }
        manifests.sort_by_key(|m| (m.lsn, m.taken_at_ms));
        Ok(manifests)
    }

    /// Remove a backup (manifest first, so a half-removed one is ignored).
    pub async fn remove(&self, manifest: &Manifest) -> Result<()> {
        let manifest_key = manifest.key.replace(".tar.zst", ".json");
        self.op.delete(&manifest_key).await.map_err(|e| self.failed("delete", &manifest_key, e))?;
        self.op.delete(&manifest.key).await.map_err(|e| self.failed("delete", &manifest.key, e))
    }
}

/// A packed directory, ready to store.
pub struct Packed {
    pub bytes: Vec<u8>,
    pub raw_bytes: u64,
    pub sha256: String,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed {{ {} bytes of {}, sha256 {} }}", self.bytes.len(), self.raw_bytes, self.sha256)
    }
}

/// zstd level: fast, and a small tenant (a 22 MB directory, mostly one
/// WAL segment) packs to about 1.4 MB.
const ZSTD_LEVEL: i32 = 3;

/// Pack a directory: tar, then zstd with its content checksum.
pub fn pack(dir: &Path) -> Result<Packed> {
    let failed = |e: io::Error| Error::io("pack", dir, e);
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(failed)?;
    encoder.include_checksum(true).map_err(failed)?;
    let raw_bytes;
    {
        let mut tar = tar::Builder::new(&mut encoder);
        tar.follow_symlinks(false);
        raw_bytes = append_dir(&mut tar, dir, Path::new("")).map_err(failed)?;
        tar.finish().map_err(failed)?;
    }
    let bytes = encoder.finish().map_err(failed)?;
    let sha256 = HEXLOWER.encode(&Sha256::digest(&bytes));
    Ok(Packed { bytes, raw_bytes, sha256 })
}

/// Files in name order (so equal directories pack alike); lock files of a
/// closed database are left out.
fn append_dir<W: io::Write>(tar: &mut tar::Builder<W>, dir: &Path, prefix: &Path) -> io::Result<u64> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut total = 0;
    for entry in entries {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.ends_with(".lock")) {
            continue;
        }
        let path = entry.path();
        let inside = prefix.join(&name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            tar.append_dir(&inside, &path)?;
            total += append_dir(tar, &path, &inside)?;
        } else if kind.is_file() {
            let mut file = std::fs::File::open(&path)?;
            total += file.metadata()?.len();
            tar.append_file(&inside, &mut file)?;
        }
    }
    Ok(total)
}

/// Unpack a verified archive into `into` (which must not exist): into a
/// hidden sibling first, renamed into place when complete.
pub fn unpack(bytes: &[u8], into: &Path) -> Result<()> {
    let staging = crate::layout::unpacking(into);
    let failed = |e: io::Error| Error::io("unpack into", &staging, e);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(failed)?;
    }
    let decoder = zstd::stream::Decoder::new(bytes).map_err(failed)?;
    let mut tar = tar::Archive::new(decoder);
    tar.set_preserve_permissions(true);
    tar.unpack(&staging).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staging);
        Error::ArchiveCorrupt(format!("cannot unpack the archive for {}: {e}", into.display()))
    })?;
    std::fs::rename(&staging, into).map_err(|e| Error::io("install", into, e))?;
    Ok(())
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks_a_directory_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("base/1")).unwrap();
        std::fs::write(src.join("base/1/1259"), vec![7u8; 100_000]).unwrap();
        std::fs::write(src.join("PG_VERSION"), "17\n").unwrap();
        std::fs::write(src.join(".pglite-oxide.lock"), "x").unwrap();
        let packed = pack(&src).unwrap();
        assert_eq!(packed.raw_bytes, 100_003);
        assert!(packed.bytes.len() < 2_000, "zeros and repeats compress: {}", packed.bytes.len());
        let out = dir.path().join("out");
        unpack(&packed.bytes, &out).unwrap();
        assert_eq!(std::fs::read(out.join("base/1/1259")).unwrap(), vec![7u8; 100_000]);
        assert_eq!(std::fs::read_to_string(out.join("PG_VERSION")).unwrap(), "17\n");
        assert!(!out.join(".pglite-oxide.lock").exists());
        // Damage is caught by zstd's checksum at the latest.
        let mut damaged = packed.bytes.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0xff;
        assert!(unpack(&damaged, &dir.path().join("bad")).is_err());
        assert!(!dir.path().join("bad").exists());
    }
}
