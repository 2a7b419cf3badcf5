//! The PostgreSQL settings every tenant backend starts with, on the server
//! and at the edge.

use std::collections::BTreeMap;

/// Startup settings of a tenant backend. Defaults keep an open tenant small:
/// measured with 10 open tenants, each costs about 25.6 MiB of RSS at
/// `shared_buffers=4MB`, 29.8 MiB at 8MB and 38.2 MiB at 16MB (docs/benchmarks.md).
///
/// There is no `statement_timeout` here on purpose: PGlite's WASIX build
/// never delivers the timer signal PostgreSQL relies on, so the setting is
/// accepted but never fires. Waiting work is bounded by the tenant queue
/// timeout instead (`OltpConfig::queue_timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// `shared_buffers`: the backend's page cache, the largest part of its memory.
    pub shared_buffers: String,
    /// `max_wal_size`: WAL kept on disk before a checkpoint recycles it.
    pub max_wal_size: String,
    /// Capture every committed change into the tenant's change log.
    pub capture: bool,
    /// Any other GUCs, applied last.
    pub extra: BTreeMap<String, String>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            shared_buffers: "4MB".to_owned(),
            max_wal_size: "64MB".to_owned(),
            capture: true,
            extra: BTreeMap::new(),
        }
    }
}

impl EngineSettings {
    pub fn gucs(&self) -> Vec<(String, String)> {
        let mut gucs = vec![
            ("shared_buffers".to_owned(), self.shared_buffers.clone()),
            // One backend, so its WAL buffer need not be the 4MB default.
            ("wal_buffers".to_owned(), "-1".to_owned()),
            ("min_wal_size".to_owned(), "32MB".to_owned()),
            ("max_wal_size".to_owned(), self.max_wal_size.clone()),
            // Segments a checkpoint no longer needs are removed, not kept
            // renamed for reuse: a tenant's directory (and every archive of
            // it) no longer carries up to max_wal_size of old WAL. A 10 MB
            // tenant: a 45 MiB directory instead of 77, archived in 5.8 MiB
            // instead of 13 (bench/run-tiers.sh, docs/benchmarks.md).
            ("wal_recycle".to_owned(), "off".to_owned()),
            // A new WAL segment is made by writing its last byte, not 16 MiB
            // of zeros: the part of the segment a tenant has not written yet
            // takes no disk (template copies and archives keep such blocks
            // as holes too, see `files`). A nearly empty tenant takes 9.3 MiB
            // of disk (bench/run-tiers.sh, docs/benchmarks.md).
            ("wal_init_zero".to_owned(), "off".to_owned()),
            // Gives every change its transaction's commit time.
            ("track_commit_timestamp".to_owned(), "on".to_owned()),
        ];
        gucs.extend(self.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        gucs
    }
}
