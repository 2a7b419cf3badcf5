//! Shipper settings.

use std::time::Duration;

/// The partition transform on `_commit_ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Partitioning {
    #[default]
    Day,
    Hour,
}

impl std::str::FromStr for Partitioning {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "day" => Ok(Self::Day),
            "hour" => Ok(Self::Hour),
            other => Err(format!("partitioning must be day or hour, not {other:?}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Ship at most once per interval per tenant (commits in between are
    /// batched into one Iceberg commit per table).
    pub flush_interval: Duration,
    /// Most changes read and committed in one go; a larger backlog ships in
    /// several commits back to back.
    pub batch_size: u64,
    pub partitioning: Partitioning,
    /// Tenants shipped at the same time.
    pub concurrency: usize,
    /// Adaptive commits: a tenant with fewer changes waiting than
    /// `min_commit_changes` is committed only once its oldest waiting
    /// change has waited `max_lag` (zero: every flush interval).
    pub max_lag: Duration,
    pub min_commit_changes: u64,
    /// Where the tenants shipped live (`tidelake.origin` of their
    /// namespaces): a shipper never ships into another origin's namespace.
    pub origin: String,
}

impl Default for ShipperConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(1),
            batch_size: 20_000,
            partitioning: Partitioning::Day,
            concurrency: 4,
            max_lag: Duration::from_secs(10),
            min_commit_changes: 1000,
            origin: crate::spec::SERVER_ORIGIN.to_owned(),
        }
    }
}

/// Lake maintenance settings (see `maintain`).
#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    /// How often the background policy runs over every table (None: never;
    /// `tidelake lake maintain` still runs it on demand).
    pub interval: Option<Duration>,
    /// Size compaction writes files up to; files under half of it are small.
    pub target_file_bytes: u64,
    /// Small files a partition must have before they are rewritten.
    pub min_input_files: usize,
    /// Manifests the current snapshot may list before they are merged.
    pub max_manifests: usize,
    /// Snapshots younger than this are kept (the current one always is).
    pub snapshot_retention: Duration,
    /// Unreferenced files younger than this are left alone: a commit in
    /// flight writes its files before it references them.
    pub orphan_age: Duration,
    /// Take a state checkpoint of a table once it has this many changes
    /// since its last one (and at least as many as that one's rows); None:
    /// no checkpoints.
    pub checkpoint_changes: Option<u64>,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(300)),
            target_file_bytes: 64 * 1024 * 1024,
            min_input_files: 8,
            max_manifests: 16,
            snapshot_retention: Duration::from_secs(600),
            orphan_age: Duration::from_secs(24 * 3600),
            checkpoint_changes: Some(100_000),
        }
    }
}
