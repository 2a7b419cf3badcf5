//! Configuration of the OLTP tier, with the defaults `tidelake serve` uses.

use std::path::PathBuf;
use std::time::Duration;

use crate::archive::ArchiveConfig;
use crate::engine::EngineSettings;

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[derive(Debug, Clone)]
pub struct OltpConfig {
    /// Root of everything on local disk: `tenants/<id>/` and `template/`.
    pub data_dir: PathBuf,
    /// An open tenant with no request for this long is hibernated.
    pub hibernate_after: Duration,
    /// At most this many tenants are open at once; opening one more evicts
    /// the least recently used.
    pub max_open_tenants: usize,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// With `acme.example.com` configured, `t1.acme.example.com` routes to tenant `t1`.
    pub base_domain: Option<String>,
    /// Names that are never tenants (they are refused wherever they appear).
    pub blocked_names: Vec<String>,
    /// Tenant databases prepared ahead of need, so a new tenant opens at once.
    pub spare_tenants: usize,
    /// Requests queued for one tenant beyond this wait for room (backpressure).
    pub tenant_queue_depth: usize,
    /// A request that has waited this long for its tenant (behind slower
    /// work) is refused without running, so nothing piles up without bound.
    pub queue_timeout: Duration,
    /// Acknowledged changes younger than this stay in the change log.
    pub change_retention: Duration,
    /// A WebSocket client that does not take a message for this long is disconnected.
    pub ws_send_timeout: Duration,
    /// A statement running longer is stopped (SQLSTATE 57014) and the
    /// tenant goes on serving; a request may ask for less.
    pub statement_timeout: Duration,
    /// A wire-protocol connection whose transaction stays idle longer is
    /// closed and its transaction rolled back: a transaction holds the
    /// tenant's backend (SQLSTATE 25P03, as PostgreSQL's own timeout).
    pub idle_in_transaction_timeout: Duration,
    /// An answer to a client's SQL larger than this many bytes (as
    /// PostgreSQL sends its rows) is refused with `result_too_large`.
    pub max_result_bytes: u64,
    /// An answer with more rows than this is refused with `result_too_large`.
    pub max_result_rows: u64,
    /// SQL statements one WebSocket connection may have running or queued.
    pub ws_max_in_flight: usize,
    /// A tenant's base backups on request are at least this far apart.
    pub backup_min_interval: Duration,
    /// Local disk one tenant may take; over it, writes fail (SQLSTATE
    /// 53100) and reads go on. None: no quota.
    pub tenant_disk_quota: Option<u64>,
    /// Memory one tenant's engine may take (its WebAssembly linear memory);
    /// past it, the statement that needed more fails with SQLSTATE 53200.
    pub tenant_memory: u64,
    /// Settings of single tenants that differ from the above.
    pub tenant_overrides: std::collections::HashMap<String, TenantOverrides>,
    pub engine: EngineSettings,
    /// Where base backups and cold tenants go.
    pub archive: ArchiveConfig,
    /// A hibernated tenant idle for this long is archived and removed from
    /// local disk (None: never by age).
    pub cold_after: Option<Duration>,
    /// When tenants on local disk take more than this many bytes, the least
    /// recently used hibernated ones go cold (None: no budget).
    pub disk_budget: Option<u64>,
    /// A tenant with changes since its last base backup gets a new one
    /// this often (None: only on demotion and on request).
    pub backup_interval: Option<Duration>,
    /// Base backups older than this are removed, except the newest of them
    /// (which keeps the start of the window restorable).
    pub backup_retention: Duration,
    /// A base backup is packed after schema changes, before the tenant's
    /// data changes again (capture on; `TenantDb::back_up_schema_changes`).
    pub schema_backups: bool,
    /// The deployment's migrations (`--migrations DIR`): every tenant is
    /// brought to the latest when it opens, and new tenants come from a
    /// template at the latest.
    pub migrations: Option<std::sync::Arc<model::migrations::Migrations>>,
}

impl OltpConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            hibernate_after: Duration::from_secs(300),
            max_open_tenants: 64,
            max_body_bytes: model::api::DEFAULT_MAX_BODY_BYTES,
            base_domain: None,
            blocked_names: DEFAULT_BLOCKED_NAMES.iter().map(|s| s.to_string()).collect(),
            spare_tenants: 2,
            tenant_queue_depth: 256,
            queue_timeout: Duration::from_secs(30),
            change_retention: model::log::DEFAULT_RETENTION,
            ws_send_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(20),
            max_result_bytes: model::api::DEFAULT_MAX_RESULT_BYTES,
            max_result_rows: model::api::DEFAULT_MAX_RESULT_ROWS,
            ws_max_in_flight: 16,
            backup_min_interval: Duration::from_secs(60),
            tenant_disk_quota: None,
            tenant_memory: 512 * 1024 * 1024,
            tenant_overrides: Default::default(),
            engine: EngineSettings::default(),
            archive: ArchiveConfig { location: String::new(), storage: Default::default() },
            cold_after: Some(Duration::from_secs(24 * 3600)),
            disk_budget: None,
            backup_interval: Some(Duration::from_secs(6 * 3600)),
            backup_retention: Duration::from_secs(7 * 24 * 3600),
            schema_backups: true,
            migrations: None,
        }
        .with_default_archive()
    }

    /// Archives in `<data-dir>/archive` unless configured.
    fn with_default_archive(mut self) -> Self {
        self.archive.location = format!("file://{}", absolute(&self.data_dir.join("archive")).display());
        self
    }

    /// The statement timeout of `tenant`.
    pub fn statement_timeout(&self, tenant: &str) -> Duration {
        self.tenant_overrides
            .get(tenant)
            .and_then(|o| o.statement_timeout)
            .unwrap_or(self.statement_timeout)
    }

    /// The disk quota of `tenant`, if it has one.
    pub fn disk_quota(&self, tenant: &str) -> Option<u64> {
        self.tenant_overrides
            .get(tenant)
            .and_then(|o| o.disk_quota)
            .or(self.tenant_disk_quota)
    }

    pub fn tenants_dir(&self) -> PathBuf {
        self.data_dir.join("tenants")
    }

    pub fn template_dir(&self) -> PathBuf {
        self.data_dir.join("template")
    }

    pub fn spares_dir(&self) -> PathBuf {
        self.data_dir.join("spares")
    }
}

/// Settings one tenant has of its own (`[tenants.overrides.<tenant>]` in
/// the config file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantOverrides {
    pub statement_timeout: Option<Duration>,
    pub disk_quota: Option<u64>,
}

pub use model::DEFAULT_BLOCKED_NAMES;

pub use model::parse_duration;
