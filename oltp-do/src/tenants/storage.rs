//! Where a tenant's files live between requests: moving it between the
//! warm and cold tiers (with its move lock held, so requests wait), base
//! backups — taken on request, by policy, or after a schema change — and
//! their pruning.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Tenants, Tier};
use crate::actor::work;
use crate::archive::{self, Manifest};
use crate::error::{Error, Result};
use crate::layout;
use model::TenantId;

/// A tenant's newest base backup.
#[derive(Debug, Clone, Copy)]
pub(super) struct BackupMark {
    pub(super) lsn: u64,
    pub(super) at: SystemTime,
}

impl Tenants {
    /// Store the base backups the tenant packed after schema changes (the
    /// request that made them is answered once they are stored). A failure
    /// is logged and counted; the schema change stands.
    pub(crate) async fn store_schema_bases(&self, tenant: &TenantId) {
        let feed = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).feeds.get(tenant).cloned();
        let Some(feed) = feed else { return };
        for base in feed.take_bases() {
            if let Err(err) = self.store_backup_at(tenant, base.packed, base.head_lsn, base.state_at_us, "schema").await {
                self.metrics.tiering_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tenant = %tenant, error = %err, "could not store the base backup taken after a schema change");
            }
        }
    }

    /// A base backup a client asked for: one at a time per tenant, and at
    /// most one per `backup_min_interval`.
    pub async fn backup_on_request(&self, tenant: &TenantId) -> Result<Manifest> {
        let min = self.config.backup_min_interval;
        {
            let mut asked = self.backups_asked.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match asked.get(tenant) {
                Some(None) => {
                    return Err(Error::Conflict(format!("a base backup of tenant {tenant} is being taken")));
                }
                Some(Some(at)) if now.duration_since(*at) < min => {
                    let retry_after = min - now.duration_since(*at);
                    return Err(Error::TooSoon {
                        message: format!(
                            "tenant {tenant} was backed up {}s ago; base backups on request are at least {}s apart (backupMinInterval)",
                            now.duration_since(*at).as_secs(),
                            min.as_secs()
                        ),
                        retry_after,
                    });
                }
                _ => {}
            }
            asked.insert(tenant.clone(), None);
        }
        let taken = self.backup(tenant, "manual").await;
        let mut asked = self.backups_asked.lock().unwrap_or_else(|p| p.into_inner());
        match &taken {
            Ok(_) => asked.insert(tenant.clone(), Some(Instant::now())),
            Err(_) => asked.remove(tenant),
        };
        taken
    }

    pub(super) fn move_lock(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<()>> {
        self.moves.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(tenant.clone()).or_default().clone()
    }

    /// Wait for any move of the tenant to finish; bring it back if cold.
    pub(super) async fn settle(&self, tenant: &TenantId) -> Result<()> {
        let lock = self.move_lock(tenant);
        let _moving = lock.lock().await;
        let root = self.root(tenant);
        let marker = layout::cold_marker(&root);
        if !marker.exists() {
            return Ok(());
        }
        if root.exists() {
            // Interrupted between unpacking and removing the marker (or
            // between writing it and removing the directory): the directory
            // is the tenant, as current as the archive or newer.
            std::fs::remove_file(&marker).map_err(|e| Error::io("remove", &marker, e))?;
            return Ok(());
        }
        let started = Instant::now();
        let manifest = read_marker(&marker)?;
        let bytes = self.store.fetch(&manifest).await?;
        let fetched = started.elapsed();
        unpack_into(bytes, &root).await?;
        std::fs::remove_file(&marker).map_err(|e| Error::io("remove", &marker, e))?;
        self.metrics.promotions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            tenant = %tenant,
            archive_bytes = manifest.bytes,
            fetch_ms = fetched.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "promoted a cold tenant"
        );
        Ok(())
    }

    /// The tenant's tier now.
    pub fn tier(&self, tenant: &TenantId) -> Tier {
        let open = {
            let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            inner.actors.get(tenant).is_some_and(|a| !a.is_closed())
        };
        let root = self.root(tenant);
        if open {
            Tier::Hot
        } else if !root.exists() && layout::cold_marker(&root).exists() {
            Tier::Cold
        } else {
            Tier::Warm
        }
    }

    /// Archive a hibernated tenant into object storage and remove it from
    /// local disk. Returns false if it was not warm (open, cold, unknown,
    /// or not closed cleanly).
    pub async fn demote(&self, tenant: &TenantId) -> Result<bool> {
        let lock = self.move_lock(tenant);
        let _moving = lock.lock().await;
        let root = self.root(tenant);
        let Some(head) = self.begin_disk_move(tenant, &root) else { return Ok(false) };
        let result = async {
            let manifest = self.pack_and_store(tenant, &root, head, "cold").await?;
            let marker = layout::cold_marker(&root);
            let staging = layout::cold_marker_writing(&root);
            let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
            std::fs::write(&staging, json).map_err(|e| Error::io("write", &staging, e))?;
            std::fs::rename(&staging, &marker).map_err(|e| Error::io("install", &marker, e))?;
            let removing = layout::removing(&root);
            std::fs::rename(&root, &removing).map_err(|e| Error::io("move away", &root, e))?;
            std::fs::remove_dir_all(&removing).map_err(|e| Error::io("remove", &removing, e))?;
            self.metrics.demotions.fetch_add(1, Ordering::Relaxed);
            tracing::info!(tenant = %tenant, archive_bytes = manifest.bytes, lsn = head, "tenant went cold");
            Ok(true)
        }
        .await;
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).moving.remove(tenant);
        result
    }

    /// With the move lock held: mark a closed tenant as moving, so it is not
    /// opened meanwhile; its head LSN. None if it is open, not on disk, or
    /// was not closed cleanly.
    pub(super) fn begin_disk_move(&self, tenant: &TenantId, root: &Path) -> Option<u64> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // An actor that has finished closing (not yet forgotten) holds nothing open.
        if inner.actors.get(tenant).is_some_and(|a| !a.is_closed()) || inner.shutting_down || !root.exists() {
            return None;
        }
        let head = layout::closed_head(root)?;
        inner.moving.insert(tenant.clone());
        Some(head)
    }

    /// Pack a closed tenant's directory and store it as a base backup.
    pub(super) async fn pack_and_store(&self, tenant: &TenantId, root: &Path, head: u64, reason: &str) -> Result<Manifest> {
        let packed = pack_dir(root).await?;
        self.store_backup(tenant, packed, head, reason).await
    }

    pub(super) async fn store_backup(&self, tenant: &TenantId, packed: archive::Packed, head: u64, reason: &str) -> Result<Manifest> {
        self.store_backup_at(tenant, packed, head, None, reason).await
    }

    pub(super) async fn store_backup_at(
        &self,
        tenant: &TenantId,
        packed: archive::Packed,
        head: u64,
        state_at_us: Option<i64>,
        reason: &str,
    ) -> Result<Manifest> {
        let manifest = self.store.put(tenant.as_str(), packed, head, state_at_us, reason).await?;
        self.metrics.backups.fetch_add(1, Ordering::Relaxed);
        self.backups
            .lock().unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant.clone(), BackupMark { lsn: head, at: SystemTime::now() });
        if let Err(err) = self.prune_backups(tenant).await {
            tracing::warn!(tenant = %tenant, error = %err, "could not remove expired backups");
        }
        Ok(manifest)
    }

    /// Take a base backup now: of the open database through its actor, of
    /// a closed one from disk; a cold tenant's archive is its newest backup.
    pub async fn backup(&self, tenant: &TenantId, reason: &str) -> Result<Manifest> {
        let began = std::time::Instant::now();
        let manifest = self.take_backup(tenant, reason).await?;
        // A schema change before it needs no backup of its own.
        let feed = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).feeds.get(tenant).cloned();
        if let Some(feed) = feed {
            feed.backed_up(began);
        }
        Ok(manifest)
    }

    pub(super) async fn take_backup(&self, tenant: &TenantId, reason: &str) -> Result<Manifest> {
        let root = self.root(tenant);
        // Never wakes a tenant that is closed or closing: a backup (the
        // policies take them unasked) must not keep tenants awake.
        loop {
            if let Some(closing) = self.closing_actor(tenant) {
                closing.closed().await;
            }
            match self.tier(tenant) {
                Tier::Cold => return read_marker(&layout::cold_marker(&root)),
                Tier::Hot => {
                    if let Some(done) = self.run_quietly(tenant, work::Backup { root: root.clone() }).await {
                        let base = done?;
                        return self.store_backup_at(tenant, base.packed, base.head_lsn, base.state_at_us, reason).await;
                    }
                    // It began closing meanwhile: pack it from disk once closed.
                }
                Tier::Warm => {
                    if !root.exists() {
                        return Err(Error::NotFound(format!("tenant {tenant} does not exist")));
                    }
                    let lock = self.move_lock(tenant);
                    let _moving = lock.lock().await;
                    if let Some(head) = self.begin_disk_move(tenant, &root) {
                        let result = self.pack_and_store(tenant, &root, head, reason).await;
                        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).moving.remove(tenant);
                        return result;
                    }
                    if !self.is_open(tenant) && self.closing_actor(tenant).is_none() {
                        // Not closed cleanly: opening it recovers it, then it is packed.
                        let base = self.run(tenant, work::Backup { root }).await?;
                        return self.store_backup_at(tenant, base.packed, base.head_lsn, base.state_at_us, reason).await;
                    }
                    // Opened meanwhile: back it up through its actor.
                }
            }
        }
    }

    /// Every complete base backup of a tenant, oldest first.
    pub async fn backups(&self, tenant: &TenantId) -> Result<Vec<Manifest>> {
        self.store.backups(tenant.as_str()).await
    }

    /// Remove backups older than the retention, keeping the newest of them
    /// and the one a cold tenant is kept in.
    pub(super) async fn prune_backups(&self, tenant: &TenantId) -> Result<()> {
        let all = self.store.backups(tenant.as_str()).await?;
        let cutoff = archive::now_ms().saturating_sub(self.config.backup_retention.as_millis() as u64);
        let keep_cold = read_marker(&layout::cold_marker(&self.root(tenant))).ok().map(|m| m.key);
        let old: Vec<&Manifest> = all.iter().filter(|m| m.taken_at_ms < cutoff).collect();
        // The newest one before the window keeps the window's start restorable.
        for manifest in old.iter().rev().skip(1) {
            if Some(&manifest.key) != keep_cold.as_ref() {
                self.store.remove(manifest).await?;
            }
        }
        Ok(())
    }

    /// The newest known base backup of a tenant (read from the store once).
    pub(super) async fn backup_mark(&self, tenant: &TenantId) -> Result<BackupMark> {
        if let Some(mark) = self.backups.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(tenant) {
            return Ok(*mark);
        }
        let mark = match self.store.backups(tenant.as_str()).await?.last() {
            Some(m) => BackupMark { lsn: m.lsn, at: UNIX_EPOCH + Duration::from_millis(m.taken_at_ms) },
            // Never backed up: counted from the server's start, so a restart
            // does not back every tenant up at once.
            None => BackupMark { lsn: 0, at: self.started },
        };
        self.backups.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(tenant.clone(), mark);
        Ok(mark)
    }

    /// The newest change LSN of a tenant, as known without waking it.
    pub(super) async fn known_head(&self, tenant: &TenantId) -> Option<u64> {
        if !self.config.engine.capture {
            return None;
        }
        if self.is_open(tenant) {
            return self.peek_log_stats(tenant).await.and_then(Result::ok).map(|s| s.head_lsn);
        }
        self.closed_head(tenant)
    }

    /// Store what every tenant packed after schema changes and nobody stored yet.
    pub(super) async fn store_all_schema_bases(&self) {
        let tenants: Vec<TenantId> =
            self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).feeds.keys().cloned().collect();
        for tenant in &tenants {
            self.store_schema_bases(tenant).await;
        }
    }
}

/// Pack a closed database directory, off the async threads.
pub(super) async fn pack_dir(dir: &Path) -> Result<archive::Packed> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || archive::pack(&dir))
        .await
        .map_err(Error::task("pack"))?
}

/// Unpack a verified archive into `into`, off the async threads.
pub(super) async fn unpack_into(bytes: Vec<u8>, into: &Path) -> Result<()> {
    let into = into.to_path_buf();
    tokio::task::spawn_blocking(move || archive::unpack(&bytes, &into))
        .await
        .map_err(Error::task("unpack"))?
}

pub(super) fn read_marker(marker: &Path) -> Result<Manifest> {
    let bytes = std::fs::read(marker).map_err(|e| Error::io("read", marker, e))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Malformed { what: format!("cold marker {}", marker.display()), source })
}


