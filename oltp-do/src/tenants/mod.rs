//! The tenant registry: which tenants are open, waking a tenant on its next
//! request, hibernating idle ones, and evicting the least recently used when
//! the open-tenant cap is reached.
//!
//! Every state change happens under one mutex that is never held across an
//! await; the actors do the slow part (open, close) on their own threads.
//!
//! Tiers: a tenant is hot (open), warm (closed, on local disk) or cold
//! (archived in object storage and removed from local disk, leaving a small
//! `<tenant>.cold` marker naming its archive). A cold tenant is promoted
//! back — fetched, verified, unpacked — before its next request runs. Moves
//! between warm and cold, and backups taken from disk, hold the tenant's
//! move lock, and requests arriving meanwhile wait for it.

pub mod restore;

pub use restore::{Bookmark, History, Progress, RestoreReport, Target};

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::actor::{ActorHandle, Attempt, CLOSED_HEAD_FILE, Output, Work};
use crate::layout;
use crate::archive::{self, Manifest, Store};
use crate::config::OltpConfig;
use crate::engine::{ChangePage, EngineRuntime, Limits, LogStats, ReadOnly};
use crate::feed::{Commits, Feed};
use crate::error::{Error, Result};
use crate::protocol::EngineState;
use model::TenantId;

pub struct Tenants {
    config: Arc<OltpConfig>,
    runtime: Arc<EngineRuntime>,
    epoch: Instant,
    inner: Mutex<Inner>,
    commits: Arc<Commits>,
    reporters: Mutex<Vec<Arc<dyn Reporter>>>,
    pub metrics: Metrics,
    store: Store,
    /// Per tenant: held while it moves between tiers or is packed from disk.
    moves: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
    /// Per tenant: its newest base backup, once known.
    backups: Mutex<HashMap<TenantId, BackupMark>>,
    started: SystemTime,
    /// Where restores and bookmarks find changes the change log no longer holds.
    history: Mutex<Option<Arc<dyn History>>>,
    /// Tenants being restored (or branched into).
    restoring: Mutex<HashSet<TenantId>>,
    /// Sizes of closed tenant directories, each with the stamp of the file
    /// their clean close left (opening removes it, closing rewrites it).
    sizes: Mutex<HashMap<PathBuf, (DiskStamp, u64)>>,
    /// Base backups clients asked for: running (None) or when the last
    /// one was taken.
    backups_asked: Mutex<HashMap<TenantId, Option<Instant>>>,
    /// Tenants over their disk quota: (bytes used, quota).
    over_quota: Mutex<HashMap<TenantId, (u64, u64)>>,
}

/// What identifies one clean close of a tenant directory.
type DiskStamp = (u64, Option<SystemTime>);

/// A tenant's newest base backup.
#[derive(Debug, Clone, Copy)]
struct BackupMark {
    lsn: u64,
    at: SystemTime,
}


/// How long a tenant's schema must stay unchanged before the base backup
/// that follows a schema change (so a migration of many statements is
/// backed up once).
const SCHEMA_BACKUP_QUIET: Duration = Duration::from_secs(2);

/// Where a tenant lives now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Open in memory.
    Hot,
    /// Closed, on local disk.
    Warm,
    /// Archived in object storage, not on local disk.
    Cold,
}

/// A part of the server that consumes tenants' change logs (the lake
/// shipper) and adds its own fields to each tenant's status and its own
/// lines to `/metrics`.
pub trait Reporter: Send + Sync {
    /// Fields added to the tenant's status (in `health`).
    fn tenant_status(&self, tenant: &TenantId) -> serde_json::Map<String, serde_json::Value>;
    /// Prometheus text lines appended to `/metrics`.
    fn metrics(&self, out: &mut String);
}

#[derive(Default)]
struct Inner {
    actors: HashMap<TenantId, Arc<ActorHandle>>,
    /// Change feeds, kept across hibernation.
    feeds: HashMap<TenantId, Arc<Feed>>,
    /// Wall-clock time of each tenant's last request since the server started.
    last_access: HashMap<TenantId, SystemTime>,
    /// Tenants being archived or packed from disk: not to be opened meanwhile.
    moving: HashSet<TenantId>,
    shutting_down: bool,
}

impl Inner {
    fn feed(&mut self, tenant: &TenantId, commits: &Arc<Commits>) -> Arc<Feed> {
        self.feeds
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Feed::new(tenant.clone(), commits.clone())))
            .clone()
    }
}

/// Counters exported on `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub wakes: AtomicU64,
    pub hibernations: AtomicU64,
    pub demotions: AtomicU64,
    pub promotions: AtomicU64,
    pub backups: AtomicU64,
    pub tiering_errors: AtomicU64,
    pub evictions: AtomicU64,
    pub requests: AtomicU64,
    pub request_errors: AtomicU64,
}

/// One tenant as `health` and `tidelake tenants` show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    pub tenant: String,
    pub engine: EngineState,
    pub tier: Tier,
    pub exists: bool,
    /// Bytes on local disk (0 when cold).
    pub disk_bytes: u64,
    /// Size of the archive a cold tenant is kept in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_bytes: Option<u64>,
    /// The newest base backup known since the server started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<serde_json::Value>,
    /// Milliseconds since the Unix epoch of the last request (or of the last
    /// change on disk for tenants untouched since the server started).
    pub last_access_ms: Option<u64>,
    pub in_flight: usize,
    /// The change log as of the tenant's last commit since the server
    /// started (absent if it has not been opened since).
    pub change_log: Option<LogStats>,
    /// Fields from reporters (the lake's shipping lag).
    #[serde(flatten)]
    pub reported: serde_json::Map<String, serde_json::Value>,
}

/// Marks a request as running on an actor, so it is neither hibernated nor
/// preferred for eviction meanwhile.
struct Lease(Arc<ActorHandle>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

impl Tenants {
    pub fn new(config: OltpConfig) -> Result<Arc<Self>> {
        std::fs::create_dir_all(config.tenants_dir()).map_err(|e| {
            Error::Engine(format!("create {}: {e}", config.tenants_dir().display()))
        })?;
        let store = Store::open(&config.archive)?;
        layout::recover(&config.tenants_dir());
        let runtime = EngineRuntime::start(&config);
        Ok(Arc::new(Self {
            config: Arc::new(config),
            runtime,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
            commits: Arc::default(),
            reporters: Mutex::default(),
            metrics: Metrics::default(),
            store,
            moves: Mutex::default(),
            backups: Mutex::default(),
            started: SystemTime::now(),
            history: Mutex::default(),
            restoring: Mutex::default(),
            sizes: Mutex::default(),
            backups_asked: Mutex::default(),
            over_quota: Mutex::default(),
        }))
    }

    pub fn config(&self) -> &OltpConfig {
        &self.config
    }

    pub fn runtime(&self) -> &EngineRuntime {
        &self.runtime
    }

    fn root(&self, tenant: &TenantId) -> PathBuf {
        self.config.tenants_dir().join(tenant.as_str())
    }

    /// Run `work` on the tenant's database, waking or creating it as needed.
    pub async fn run(&self, tenant: &TenantId, work: Work) -> Result<Output> {
        self.run_with(tenant, work, None).await
    }

    /// `run`, with the statement timeout lowered to `timeout` if that is
    /// lower than the tenant's.
    pub async fn run_with(&self, tenant: &TenantId, work: Work, timeout: Option<Duration>) -> Result<Output> {
        self.run_sql(tenant, work, timeout, true).await
    }

    /// `run_with` for a client's SQL: unless the caller `may_write`, its
    /// statements run in read-only transactions.
    pub async fn run_sql(&self, tenant: &TenantId, work: Work, timeout: Option<Duration>, may_write: bool) -> Result<Output> {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let mut limits = self.limits_for(tenant, &work, timeout);
        if !may_write {
            limits.read_only = limits.read_only.or(Some(ReadOnly::Scope));
        }
        // Only a client's SQL makes schema changes, and so base backups.
        let client_sql = matches!(work, Work::Query { .. } | Work::Batch(_) | Work::Transaction(_));
        let work = Arc::new(work);
        let deadline = Instant::now() + self.config.queue_timeout;
        let result = loop {
            let lease = self.acquire(tenant, deadline).await?;
            match lease.0.call(work.clone(), deadline, limits).await {
                Attempt::Done(result) => break result,
                Attempt::NotRun => continue,
            }
        };
        if result.is_err() {
            self.metrics.request_errors.fetch_add(1, Ordering::Relaxed);
        }
        if client_sql {
            self.store_schema_bases(tenant).await;
        }
        result
    }

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

    /// What each statement of `work` may take: the tenant's statement
    /// timeout (or less, if the request asks), and for a client's SQL the
    /// answer caps.
    fn limits_for(&self, tenant: &TenantId, work: &Work, timeout: Option<Duration>) -> Limits {
        let tenant_timeout = self.config.statement_timeout(tenant.as_str());
        let client_sql = matches!(work, Work::Query { .. } | Work::Batch(_) | Work::Transaction(_));
        Limits {
            statement_timeout: timeout.map_or(tenant_timeout, |t| t.min(tenant_timeout)),
            max_result_bytes: if client_sql { self.config.max_result_bytes } else { u64::MAX },
            max_result_rows: if client_sql { self.config.max_result_rows } else { u64::MAX },
            read_only: if client_sql {
                let over = self.over_quota.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(tenant).copied();
                over.map(|(used, quota)| ReadOnly::Quota(used, quota))
            } else {
                None
            },
        }
    }

    fn has_disk_quotas(&self) -> bool {
        self.config.tenant_disk_quota.is_some() || self.config.tenant_overrides.values().any(|o| o.disk_quota.is_some())
    }

    /// Measure the tenants that have a disk quota (open ones, and closed
    /// ones once per clean close) and note which are over it.
    fn check_disk_quotas(&self, tenants: &[TenantId]) {
        let mut over = HashMap::new();
        for tenant in tenants {
            if let Some(quota) = self.config.disk_quota(tenant.as_str()) {
                let used = self.disk_size(&self.root(tenant));
                if used > quota {
                    over.insert(tenant.clone(), (used, quota));
                }
            }
        }
        *self.over_quota.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = over;
    }

    /// Reads create nothing: a tenant that does not exist (not open, not
    /// on disk, not archived) is answered as such.
    pub fn must_exist(&self, tenant: &TenantId) -> Result<()> {
        if self.engine_state(tenant).1 {
            Ok(())
        } else {
            Err(Error::NoSuchTenant(tenant.to_string()))
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

    /// Stop the statement the tenant runs now, if it is open and running
    /// one (`POST /t/{tenant}/cancel`). Returns whether one was.
    pub fn cancel(&self, tenant: &TenantId) -> bool {
        let actor = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).actors.get(tenant).cloned();
        actor.is_some_and(|a| a.cancel())
    }

    async fn acquire(&self, tenant: &TenantId, deadline: Instant) -> Result<Lease> {
        loop {
            let closing = {
                let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if inner.shutting_down {
                    return Err(Error::Unavailable("the server is shutting down".into()));
                }
                inner.last_access.insert(tenant.clone(), SystemTime::now());
                match inner.actors.get(tenant).cloned() {
                    Some(actor) if !actor.is_closing() => {
                        actor.begin_request();
                        return Ok(Lease(actor.clone()));
                    }
                    Some(actor) if actor.is_closed() => {
                        inner.actors.remove(tenant);
                        continue;
                    }
                    Some(actor) => Wait::Closing(actor.clone()),
                    None if inner.moving.contains(tenant) || layout::cold_marker(&self.root(tenant)).exists() => Wait::Settle,
                    None if self.make_room(&mut inner) => {
                        let actor = self.spawn_locked(&mut inner, tenant)?;
                        actor.begin_request();
                        return Ok(Lease(actor));
                    }
                    None => Wait::Room,
                }
            };
            match closing {
                // Its previous actor is still closing the database: wait, then wake it anew.
                Wait::Closing(closing) => closing.closed().await,
                // Moving between tiers, or cold: wait for the move, promote if cold.
                Wait::Settle => self.settle(tenant).await?,
                // At the open-tenant cap: wait for one to close.
                Wait::Room => self.wait_for_room(deadline).await?,
            }
        }
    }

    /// Under the registry lock, before opening one more tenant: whether
    /// there is room under the open-tenant cap. Every actor that has not
    /// finished closing counts (a closing or stuck one still holds its
    /// memory and thread); at the cap, the least recently used open one is
    /// asked to close, and the caller waits for room.
    fn make_room(&self, inner: &mut Inner) -> bool {
        inner.actors.retain(|_, a| !a.is_closed());
        let cap = self.config.max_open_tenants.max(1);
        if inner.actors.len() < cap {
            return true;
        }
        let closing = inner.actors.values().filter(|a| a.is_closing()).count();
        // Enough are closing already to make room.
        if inner.actors.len() - closing < cap {
            return false;
        }
        // Least recently used first, preferring one serving no request
        // (a base backup in progress does not keep a tenant open).
        let victim = inner
            .actors
            .values()
            .filter(|a| !a.is_closing())
            .min_by_key(|a| (a.requests_in_flight() > 0, a.last_used_ms()))
            .cloned();
        if let Some(victim) = victim
            && victim.begin_close()
        {
            tracing::debug!(tenant = %victim.tenant, "evicting least recently used tenant");
            self.metrics.evictions.fetch_add(1, Ordering::Relaxed);
        }
        false
    }

    /// Wait until an actor has finished closing, or refuse at `deadline`.
    async fn wait_for_room(&self, deadline: Instant) -> Result<()> {
        let closing: Vec<Arc<ActorHandle>> = {
            let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            inner.actors.values().filter(|a| a.is_closing()).cloned().collect()
        };
        let any_closed = futures_util::future::select_all(closing.iter().map(|a| Box::pin(a.closed())));
        let waited = if closing.is_empty() {
            tokio::time::timeout_at(deadline.into(), tokio::time::sleep(Duration::from_millis(10))).await
        } else {
            tokio::time::timeout_at(deadline.into(), async { any_closed.await; }).await
        };
        waited.map_err(|_| {
            Error::Busy(format!(
                "{} tenants are open (the max-open-tenants cap) and none could be closed in time to open another",
                self.config.max_open_tenants
            ))
        })
    }

    fn move_lock(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<()>> {
        self.moves.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(tenant.clone()).or_default().clone()
    }

    /// Wait for any move of the tenant to finish; bring it back if cold.
    async fn settle(&self, tenant: &TenantId) -> Result<()> {
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
            std::fs::remove_file(&marker).map_err(|e| io_error("remove", &marker, e))?;
            return Ok(());
        }
        let started = Instant::now();
        let manifest = read_marker(&marker)?;
        let bytes = self.store.fetch(&manifest).await?;
        let fetched = started.elapsed();
        unpack_into(bytes, &root).await?;
        std::fs::remove_file(&marker).map_err(|e| io_error("remove", &marker, e))?;
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
            std::fs::write(&staging, json).map_err(|e| io_error("write", &staging, e))?;
            std::fs::rename(&staging, &marker).map_err(|e| io_error("install", &marker, e))?;
            let removing = layout::removing(&root);
            std::fs::rename(&root, &removing).map_err(|e| io_error("move away", &root, e))?;
            std::fs::remove_dir_all(&removing).map_err(|e| io_error("remove", &removing, e))?;
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
    fn begin_disk_move(&self, tenant: &TenantId, root: &Path) -> Option<u64> {
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
    async fn pack_and_store(&self, tenant: &TenantId, root: &Path, head: u64, reason: &str) -> Result<Manifest> {
        let packed = pack_dir(root).await?;
        self.store_backup(tenant, packed, head, reason).await
    }

    async fn store_backup(&self, tenant: &TenantId, packed: archive::Packed, head: u64, reason: &str) -> Result<Manifest> {
        self.store_backup_at(tenant, packed, head, None, reason).await
    }

    async fn store_backup_at(
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

    async fn take_backup(&self, tenant: &TenantId, reason: &str) -> Result<Manifest> {
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
                    if let Some(done) = self.run_quietly(tenant, Work::Backup { root: root.clone() }).await {
                        let base = done?.into_backup()?;
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
                        let base = self.run(tenant, Work::Backup { root }).await?.into_backup()?;
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
    async fn prune_backups(&self, tenant: &TenantId) -> Result<()> {
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
    async fn backup_mark(&self, tenant: &TenantId) -> Result<BackupMark> {
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
    async fn known_head(&self, tenant: &TenantId) -> Option<u64> {
        if !self.config.engine.capture {
            return None;
        }
        if self.is_open(tenant) {
            return self.peek_log_stats(tenant).await.and_then(Result::ok).map(|s| s.head_lsn);
        }
        self.closed_head(tenant)
    }

    /// One round of the tier policies: periodic backups, cold after idle
    /// time, and the local disk budget.
    pub async fn apply_tier_policies(&self) {
        let tenants = self.tenant_ids();
        if self.has_disk_quotas() {
            self.check_disk_quotas(&tenants);
        }
        // Left by a request whose client went away before they were stored.
        self.store_all_schema_bases().await;
        if self.config.backup_interval.is_some() && !self.config.schema_backups {
            self.back_up_schema_changes().await;
        }
        if let Some(interval) = self.config.backup_interval {
            for tenant in &tenants {
                if self.tier(tenant) == Tier::Cold {
                    continue;
                }
                let due = match self.backup_mark(tenant).await {
                    Ok(mark) => {
                        mark.at.elapsed().unwrap_or_default() >= interval
                            && self.known_head(tenant).await.is_some_and(|head| head > mark.lsn)
                    }
                    Err(err) => {
                        tracing::warn!(tenant = %tenant, error = %err, "could not list backups");
                        false
                    }
                };
                if due && let Err(err) = self.backup(tenant, "periodic").await {
                    self.metrics.tiering_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(tenant = %tenant, error = %err, "periodic base backup failed");
                }
            }
        }
        let warm: Vec<(TenantId, SystemTime)> = {
            let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            tenants
                .iter()
                .filter(|t| !inner.actors.contains_key(*t) && self.root(t).exists())
                .map(|t| {
                    let root = self.root(t);
                    let last = inner.last_access.get(t).copied().or_else(|| root.metadata().and_then(|m| m.modified()).ok());
                    (t.clone(), last.unwrap_or(UNIX_EPOCH))
                })
                .collect()
        };
        let mut demoted = HashSet::new();
        if let Some(after) = self.config.cold_after {
            for (tenant, last) in &warm {
                if last.elapsed().unwrap_or_default() >= after {
                    self.demote_logged(tenant, &mut demoted).await;
                }
            }
        }
        if let Some(budget) = self.config.disk_budget {
            let mut used: u64 = tenants.iter().map(|t| self.disk_size(&self.root(t))).sum();
            let mut lru = warm;
            lru.sort_by_key(|(_, last)| *last);
            for (tenant, _) in lru {
                if used <= budget {
                    break;
                }
                if demoted.contains(&tenant) {
                    continue;
                }
                let size = self.disk_size(&self.root(&tenant));
                if self.demote_logged(&tenant, &mut demoted).await {
                    used = used.saturating_sub(size);
                }
            }
        }
    }

    /// Back up tenants whose schema changed (a migration), once it has been
    /// quiet for a moment: a restore replays changes only on top of a base
    /// backup with the same schema, so this keeps the instants after a
    /// migration restorable without waiting for the periodic backup.
    async fn back_up_schema_changes(&self) {
        let feeds: Vec<(TenantId, Arc<Feed>)> = {
            let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            inner.feeds.iter().map(|(t, f)| (t.clone(), f.clone())).collect()
        };
        for (tenant, feed) in feeds {
            if !feed.take_schema_change(SCHEMA_BACKUP_QUIET) {
                continue;
            }
            if let Err(err) = self.backup(&tenant, "schema").await {
                feed.schema_changed();
                self.metrics.tiering_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tenant = %tenant, error = %err, "base backup after a schema change failed");
            }
        }
    }

    async fn demote_logged(&self, tenant: &TenantId, demoted: &mut HashSet<TenantId>) -> bool {
        match self.demote(tenant).await {
            Ok(true) => {
                demoted.insert(tenant.clone());
                true
            }
            Ok(false) => false,
            Err(err) => {
                self.metrics.tiering_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tenant = %tenant, error = %err, "could not move a tenant to the cold tier");
                false
            }
        }
    }

    /// The background loop of the tier policies.
    pub async fn run_tiering(self: Arc<Self>) {
        let mut period = Duration::from_secs(5);
        for d in [self.config.cold_after, self.config.backup_interval].into_iter().flatten() {
            period = period.min(d / 4);
        }
        // Disk quotas are looked at every second.
        if self.has_disk_quotas() {
            period = period.min(Duration::from_secs(1));
        }
        let mut ticks = tokio::time::interval(period.max(Duration::from_millis(100)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).shutting_down {
                return;
            }
            self.apply_tier_policies().await;
        }
    }

    fn spawn_locked(&self, inner: &mut Inner, tenant: &TenantId) -> Result<Arc<ActorHandle>> {
        let feed = inner.feed(tenant, &self.commits);
        let actor = ActorHandle::spawn(
            tenant.clone(),
            self.root(tenant),
            self.runtime.clone(),
            feed,
            self.config.tenant_queue_depth,
            self.epoch,
            self.config.schema_backups,
        )?;
        self.metrics.wakes.fetch_add(1, Ordering::Relaxed);
        inner.actors.insert(tenant.clone(), actor.clone());
        Ok(actor)
    }

    /// The tenant's change feed (created on first use).
    pub fn feed(&self, tenant: &TenantId) -> Arc<Feed> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).feed(tenant, &self.commits)
    }

    /// The tenants whose transactions wrote changes, for log consumers.
    pub fn commits(&self) -> &Commits {
        &self.commits
    }

    /// Every tenant that exists on disk.
    pub fn tenant_ids(&self) -> Vec<TenantId> {
        let mut names: Vec<TenantId> = std::fs::read_dir(self.config.tenants_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                TenantId::parse(layout::cold_tenant(name).unwrap_or(name)).ok()
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The newest change LSN of a tenant closed cleanly and not opened
    /// since; None if it is open, or was not closed cleanly.
    pub fn closed_head(&self, tenant: &TenantId) -> Option<u64> {
        if self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).actors.contains_key(tenant) {
            return None;
        }
        let root = self.root(tenant);
        if !root.exists() {
            return read_marker(&layout::cold_marker(&root)).ok().map(|m| m.lsn);
        }
        layout::closed_head(&root)
    }

    /// Every schema version recorded in the tenant's change log, oldest first.
    /// A closed tenant answers from what it kept when it closed, if anything.
    pub async fn schema_versions(&self, tenant: &TenantId) -> Result<Vec<serde_json::Value>> {
        self.schema_versions_as(tenant, Use::Request).await
    }

    /// `schema_versions` for housekeeping (the lake's shipper): see [`Use`].
    pub async fn schema_versions_quietly(&self, tenant: &TenantId) -> Result<Vec<serde_json::Value>> {
        self.schema_versions_as(tenant, Use::Housekeeping).await
    }

    async fn schema_versions_as(&self, tenant: &TenantId, from: Use) -> Result<Vec<serde_json::Value>> {
        if let Some(closing) = self.closing_actor(tenant) {
            closing.closed().await;
        }
        if !self.is_open(tenant)
            && let Some(versions) = self.feed(tenant).closed_schema()
        {
            return Ok(versions);
        }
        let schema = self.run_as(tenant, from, || Work::Schema).await?.into_schema()?;
        Ok(schema["versions"].as_array().cloned().unwrap_or_default())
    }

    pub fn add_reporter(&self, reporter: Arc<dyn Reporter>) {
        self.reporters.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(reporter);
    }

    pub fn report_metrics(&self, out: &mut String) {
        for reporter in self.reporters.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            reporter.metrics(out);
        }
    }

    /// Changes after `since`; with `wait`, an empty answer is held back
    /// until a change commits or `wait` passes (long-poll).
    pub async fn changes(
        &self,
        tenant: &TenantId,
        since: u64,
        limit: u64,
        wait: Duration,
    ) -> Result<ChangePage> {
        if wait.is_zero() {
            return self.read_changes(tenant, since, limit).await;
        }
        let feed = self.feed(tenant);
        let _waiting = feed.register();
        let page = self.read_changes(tenant, since, limit).await?;
        if !page.changes.is_empty() {
            return Ok(page);
        }
        if tokio::time::timeout(wait, feed.wait_past(since)).await.is_err() {
            return Ok(page);
        }
        self.read_changes(tenant, since, limit).await
    }

    /// Changes after `since`. A closed tenant answers from the changes it
    /// kept in memory when it closed, if they suffice, without waking.
    pub async fn read_changes(&self, tenant: &TenantId, since: u64, limit: u64) -> Result<ChangePage> {
        self.read_changes_as(tenant, since, limit, Use::Request).await
    }

    /// `read_changes` for housekeeping (the lake's shipper): see [`Use`].
    pub async fn read_changes_quietly(&self, tenant: &TenantId, since: u64, limit: u64) -> Result<ChangePage> {
        self.read_changes_as(tenant, since, limit, Use::Housekeeping).await
    }

    async fn read_changes_as(&self, tenant: &TenantId, since: u64, limit: u64, from: Use) -> Result<ChangePage> {
        if let Some(closing) = self.closing_actor(tenant) {
            closing.closed().await;
        }
        let feed = self.feed(tenant);
        if !self.is_open(tenant)
            && let Some((changes, head)) = feed.closed_changes_after(since, limit as usize)
        {
            let next_lsn = changes.last().map_or(since, |c| c.lsn);
            let tail_lsn = feed.stats().tail_lsn;
            return Ok(ChangePage { changes, next_lsn, head_lsn: head, tail_lsn });
        }
        let page = self.run_as(tenant, from, || Work::Changes { since, limit }).await?.into_changes()?;
        if page.tail_lsn > since.saturating_add(1) {
            return Err(Error::Gone(format!(
                "changes after LSN {since} have been trimmed from the change log; the oldest kept is {}",
                page.tail_lsn
            )));
        }
        Ok(page)
    }

    /// The change log's extent and size, read from the database.
    /// The change log of an open tenant as it is now, without counting as
    /// a request: a tenant only looked at (health, the tier policies) still
    /// hibernates when idle. None if it is not open.
    pub async fn peek_log_stats(&self, tenant: &TenantId) -> Option<Result<LogStats>> {
        Some(self.run_quietly(tenant, Work::Stats).await?.and_then(Output::into_stats))
    }

    /// Run `work` as `from` says: for housekeeping, on the open database
    /// without counting as a use, else (or when the tenant is not open) as
    /// a request.
    async fn run_as(&self, tenant: &TenantId, from: Use, work: impl Fn() -> Work) -> Result<Output> {
        if from == Use::Housekeeping
            && let Some(result) = self.run_quietly(tenant, work()).await
        {
            return result;
        }
        self.run(tenant, work()).await
    }

    /// Run `work` on the tenant's open database without counting as a
    /// request (it neither wakes the tenant nor keeps it awake). None if it
    /// is not open, or began closing before the work ran.
    async fn run_quietly(&self, tenant: &TenantId, work: Work) -> Option<Result<Output>> {
        let actor = {
            let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let actor = inner.actors.get(tenant).filter(|a| !a.is_closing())?.clone();
            actor.begin_quiet();
            actor
        };
        let deadline = Instant::now() + self.config.queue_timeout;
        let attempt = actor.call(Arc::new(work), deadline, Limits::HOUSEKEEPING).await;
        actor.end_quiet();
        match attempt {
            Attempt::Done(result) => Some(result),
            Attempt::NotRun => None,
        }
    }

    pub async fn log_stats(&self, tenant: &TenantId) -> Result<LogStats> {
        self.run(tenant, Work::Stats).await?.into_stats()
    }

    /// A consumer has durably taken every change up to `lsn`: trim the log.
    pub async fn acknowledge(&self, tenant: &TenantId, consumer: &str, lsn: u64) -> Result<LogStats> {
        self.run(tenant, self.acknowledgement(consumer, lsn)).await?.into_stats()
    }

    fn acknowledgement(&self, consumer: &str, lsn: u64) -> Work {
        Work::Acknowledge {
            consumer: consumer.to_owned(),
            lsn,
            retention: self.config.change_retention,
        }
    }

    /// Acknowledge for a consumer that must not wake the tenant: applied now
    /// if the database is open, else when it next opens (trimming can wait).
    /// Quiet too: it does not count as a use of the tenant (nor keep it
    /// from hibernating or being evicted), and a tenant that began closing
    /// meanwhile is not reopened for it.
    pub async fn acknowledge_quietly(&self, tenant: &TenantId, consumer: &str, lsn: u64) -> Result<()> {
        match self.run_quietly(tenant, self.acknowledgement(consumer, lsn)).await {
            Some(done) => done.map(|_| ()),
            None => {
                self.feed(tenant).defer_ack(consumer, lsn, self.config.change_retention);
                Ok(())
            }
        }
    }

    fn is_open(&self, tenant: &TenantId) -> bool {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.actors.get(tenant).is_some_and(|a| !a.is_closing())
    }

    fn closing_actor(&self, tenant: &TenantId) -> Option<Arc<ActorHandle>> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.actors.get(tenant).filter(|a| a.is_closing() && !a.is_closed()).cloned()
    }

    /// Hibernate tenants idle for longer than the configured time and forget
    /// actors that finished closing. Called periodically by `run_reaper`.
    pub fn hibernate_idle(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.actors.retain(|_, actor| !actor.is_closed());
        for actor in inner.actors.values() {
            if actor.in_flight() == 0
                && actor.idle_for() >= self.config.hibernate_after
                && actor.begin_close()
            {
                tracing::debug!(tenant = %actor.tenant, "hibernating idle tenant");
                self.metrics.hibernations.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The background loop that hibernates idle tenants.
    pub async fn run_reaper(self: Arc<Self>) {
        let period = (self.config.hibernate_after / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(5));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).shutting_down {
                return;
            }
            self.hibernate_idle();
        }
    }

    /// Close every open tenant and refuse new work, in bounded time: work
    /// already queued runs first, statements still running after `grace`
    /// are cancelled, and a tenant that has not closed a statement timeout
    /// (and its cancel grace) later is left to WAL recovery at the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let actors: Vec<Arc<ActorHandle>> = {
            let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            inner.shutting_down = true;
            inner.actors.values().cloned().collect()
        };
        for actor in &actors {
            actor.begin_close();
        }
        let all_closed = futures_util::future::join_all(actors.iter().map(|a| a.closed()));
        tokio::pin!(all_closed);
        if tokio::time::timeout(grace, &mut all_closed).await.is_ok() {
            self.store_all_schema_bases().await;
            return;
        }
        for actor in &actors {
            actor.abort();
        }
        let bound = crate::engine::TERMINATE_GRACE + Duration::from_secs(10);
        if tokio::time::timeout(bound, all_closed).await.is_err() {
            let open: Vec<String> = actors.iter().filter(|a| !a.is_closed()).map(|a| a.tenant.to_string()).collect();
            tracing::warn!(tenants = ?open, "shutting down without these tenants closed: their committed work is recovered from the WAL at the next start");
        }
        self.store_all_schema_bases().await;
    }

    /// Store what every tenant packed after schema changes and nobody stored yet.
    async fn store_all_schema_bases(&self) {
        let tenants: Vec<TenantId> =
            self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).feeds.keys().cloned().collect();
        for tenant in &tenants {
            self.store_schema_bases(tenant).await;
        }
    }

    /// The tenant's engine state, without waking it.
    pub fn engine_state(&self, tenant: &TenantId) -> (EngineState, bool) {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match inner.actors.get(tenant) {
            Some(actor) => (actor.engine_state(), true),
            None => {
                let root = self.root(tenant);
                (EngineState::Hibernated, root.exists() || layout::cold_marker(&root).exists())
            }
        }
    }

    pub fn open_count(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.actors.values().filter(|a| !a.is_closing()).count()
    }

    /// Bytes a tenant directory takes on disk. A closed one is measured
    /// once per clean close (a directory is a few hundred files: listing
    /// thousands of tenants must not walk them all every time).
    fn disk_size(&self, root: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let stamp = std::fs::metadata(root.join(CLOSED_HEAD_FILE)).ok().map(|m| (m.ino(), m.modified().ok()));
        let mut sizes = self.sizes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match stamp {
            Some(stamp) => {
                if let Some((known, size)) = sizes.get(root)
                    && *known == stamp
                {
                    return *size;
                }
                drop(sizes);
                let size = crate::files::disk_usage(root);
                self.sizes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(root.to_path_buf(), (stamp, size));
                size
            }
            None => {
                sizes.remove(root);
                drop(sizes);
                crate::files::disk_usage(root)
            }
        }
    }

    /// Status of one tenant, or of every tenant on disk or open.
    pub fn status(&self, only: Option<&TenantId>) -> Vec<TenantStatus> {
        let mut names: Vec<TenantId> = match only {
            Some(tenant) => vec![tenant.clone()],
            None => {
                let mut names = self.tenant_ids();
                let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                names.extend(inner.actors.keys().cloned());
                names
            }
        };
        names.sort();
        names.dedup();
        let reporters = self.reporters.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut list: Vec<TenantStatus> = names
            .iter()
            .cloned()
            .map(|tenant| {
                let root = self.root(&tenant);
                let actor = inner.actors.get(&tenant);
                let last_access = inner
                    .last_access
                    .get(&tenant)
                    .copied()
                    .or_else(|| root.metadata().and_then(|m| m.modified()).ok());
                let on_disk = root.exists();
                let cold = (!on_disk && actor.is_none()).then(|| read_marker(&layout::cold_marker(&root)).ok()).flatten();
                let tier = match (actor.is_some_and(|a| !a.is_closed()), &cold) {
                    (true, _) => Tier::Hot,
                    (false, Some(_)) => Tier::Cold,
                    (false, None) => Tier::Warm,
                };
                let last_backup = self.backups.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&tenant).filter(|m| m.lsn > 0).map(|m| {
                    let at = m.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                    serde_json::json!({"lsn": m.lsn, "takenAtMs": at})
                });
                TenantStatus {
                    engine: actor.map_or(EngineState::Hibernated, |a| a.engine_state()),
                    tier,
                    exists: on_disk || cold.is_some(),
                    // Measured below, without the registry locked.
                    disk_bytes: 0,
                    archive_bytes: cold.map(|m| m.bytes),
                    last_backup,
                    last_access_ms: last_access
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64),
                    in_flight: actor.map_or(0, |a| a.requests_in_flight()),
                    change_log: inner
                        .feeds
                        .get(&tenant)
                        .map(|f| f.stats())
                        .filter(|_| self.config.engine.capture),
                    reported: reporters.iter().flat_map(|r| r.tenant_status(&tenant)).collect(),
                    tenant: tenant.to_string(),
                }
            })
            .collect();
        drop(inner);
        for (status, tenant) in list.iter_mut().zip(&names) {
            status.disk_bytes = self.disk_size(&self.root(tenant));
        }
        list
    }
}


/// Pack a closed database directory, off the async threads.
async fn pack_dir(dir: &Path) -> Result<archive::Packed> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || archive::pack(&dir))
        .await
        .map_err(|e| Error::Engine(format!("pack task: {e}")))?
}

/// Unpack a verified archive into `into`, off the async threads.
async fn unpack_into(bytes: Vec<u8>, into: &Path) -> Result<()> {
    let into = into.to_path_buf();
    tokio::task::spawn_blocking(move || archive::unpack(&bytes, &into))
        .await
        .map_err(|e| Error::Engine(format!("unpack task: {e}")))?
}

fn read_marker(marker: &Path) -> Result<Manifest> {
    let bytes = std::fs::read(marker).map_err(|e| io_error("read", marker, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Engine(format!("cold marker {}: {e}", marker.display())))
}

/// What a request waits for before its tenant can serve it.
enum Wait {
    /// The tenant's previous actor to finish closing.
    Closing(Arc<ActorHandle>),
    /// A move between tiers to finish (and a cold tenant to come back).
    Settle,
    /// Room under the open-tenant cap.
    Room,
}

/// On whose behalf a tenant's data is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// A client: the tenant counts as used (it stays awake, is evicted and
    /// goes cold later).
    Request,
    /// The server's own work (the lake's shipper): an open tenant answers
    /// without counting as used, so housekeeping never changes which tenant
    /// hibernates, is evicted or goes cold; a closed one is opened as for
    /// a request when what it kept in memory at its close does not suffice.
    Housekeeping,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Engine(format!("{what} {}: {e}", path.display()))
}

