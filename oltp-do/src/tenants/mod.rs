//! The tenants of this server: one [`Tenants`] whose work is split by
//! responsibility, each part an `impl Tenants` block of its own module:
//!
//! - `registry`: which tenants are open; waking one on its next request,
//!   running typed work on its actor ([`crate::actor::work`]), hibernating
//!   idle ones, evicting the least recently used, the shutdown.
//! - `storage`: the tiers — hot (open), warm (closed, on local disk), cold
//!   (archived in object storage, a small `<tenant>.cold` marker naming its
//!   archive) — and base backups. A cold tenant is promoted back (fetched,
//!   verified, unpacked) before its next request runs; moves and backups
//!   taken from disk hold the tenant's move lock, requests wait for it.
//! - `log`: the change log as consumers read it.
//! - `policies`: the server's own schedule (tier policies, disk quotas).
//! - `status`: `health`, `tidelake tenants` and `/metrics`.
//! - `restore`: point-in-time restore, branches and bookmarks.
//!
//! Where each file of a tenant lives, and the sweep of what a crash left,
//! is [`crate::layout`]. What the server adds around the tenants (the
//! lake's history and reporters) is given at construction: [`Services`].

mod log;
mod policies;
mod registry;
pub mod restore;
mod status;
mod storage;

pub use restore::{Bookmark, History, Progress, RestoreReport, Target};

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use self::storage::BackupMark;
use crate::actor::ActorHandle;
use crate::layout;
use crate::archive::Store;
use crate::config::OltpConfig;
use crate::engine::{EngineRuntime, LogStats};
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
    reporters: Vec<Arc<dyn Reporter>>,
    pub metrics: Metrics,
    /// What `/metrics` shows: the tenants' own, and the services'.
    registry: prometheus_client::registry::Registry,
    store: Store,
    /// Per tenant: held while it moves between tiers or is packed from disk.
    moves: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
    /// Per tenant: its newest base backup, once known.
    backups: Mutex<HashMap<TenantId, BackupMark>>,
    started: SystemTime,
    /// Where restores and bookmarks find changes the change log no longer holds.
    history: Option<Arc<dyn History>>,
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
/// shipper) and adds its own fields to each tenant's status.
pub trait Reporter: Send + Sync {
    /// Fields added to the tenant's status (in `health`).
    fn tenant_status(&self, tenant: &TenantId) -> serde_json::Map<String, serde_json::Value>;

    /// Fields added to the server's own `health` (not a tenant's).
    fn server_status(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
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
    /// Where the tenant stands with the deployment's migrations, as of when
    /// it last opened (`latest` is the deployment's now); absent without
    /// migrations, or for a tenant not opened since they were configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrations: Option<crate::engine::MigrationStatus>,
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

/// What the server around the tenants adds to them: where restores find
/// the history the change logs no longer hold (the lake), and the consumers
/// that report on each tenant (the lake's shipper). Built once the tenants
/// exist, since those consumers read the tenants.
#[derive(Default)]
pub struct Services {
    pub history: Option<Arc<dyn History>>,
    pub reporters: Vec<Arc<dyn Reporter>>,
    /// Their metrics, collected on each scrape of `/metrics`.
    pub collectors: Vec<Box<dyn prometheus_client::collector::Collector>>,
}

impl Tenants {
    /// Tenants on their own: no history beyond the change logs, no reporters.
    pub fn new(config: OltpConfig) -> Result<Arc<Self>> {
        Self::with_services(config, |_| Services::default())
    }

    /// Open the data directory (sweeping what a crash left) and start the
    /// engine runtime; `services` is given the tenants (weakly: they own
    /// what it returns) to build what reads them.
    pub fn with_services(config: OltpConfig, services: impl FnOnce(Weak<Self>) -> Services) -> Result<Arc<Self>> {
        std::fs::create_dir_all(config.tenants_dir()).map_err(|e| Error::io("create", &config.tenants_dir(), e))?;
        let store = Store::open(&config.archive)?;
        layout::recover(&config.tenants_dir());
        let runtime = EngineRuntime::start(&config);
        Ok(Arc::new_cyclic(|tenants| {
            let Services { history, reporters, collectors } = services(tenants.clone());
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(Box::new(status::TenantsMetrics(tenants.clone())));
            for collector in collectors {
                registry.register_collector(collector);
            }
            Self {
            config: Arc::new(config),
            runtime,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
            commits: Arc::default(),
            reporters,
            registry,
            metrics: Metrics::default(),
            store,
            moves: Mutex::default(),
            backups: Mutex::default(),
            started: SystemTime::now(),
            history,
            restoring: Mutex::default(),
            sizes: Mutex::default(),
            backups_asked: Mutex::default(),
            over_quota: Mutex::default(),
            }
        }))
    }

    pub fn config(&self) -> &OltpConfig {
        &self.config
    }

    pub fn runtime(&self) -> &EngineRuntime {
        &self.runtime
    }

    pub(super) fn root(&self, tenant: &TenantId) -> PathBuf {
        self.config.tenants_dir().join(tenant.as_str())
    }
}
