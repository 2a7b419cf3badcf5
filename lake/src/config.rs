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
}

impl Default for ShipperConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(1),
            batch_size: 20_000,
            partitioning: Partitioning::Day,
            concurrency: 4,
        }
    }
}
