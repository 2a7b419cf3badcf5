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
}

impl OltpConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            hibernate_after: Duration::from_secs(300),
            max_open_tenants: 64,
            max_body_bytes: 8 * 1024 * 1024,
            base_domain: None,
            blocked_names: DEFAULT_BLOCKED_NAMES.iter().map(|s| s.to_string()).collect(),
            spare_tenants: 2,
            tenant_queue_depth: 256,
            queue_timeout: Duration::from_secs(30),
            change_retention: Duration::from_secs(3600),
            ws_send_timeout: Duration::from_secs(10),
            engine: EngineSettings::default(),
            archive: ArchiveConfig { location: String::new(), storage: Default::default() },
            cold_after: Some(Duration::from_secs(24 * 3600)),
            disk_budget: None,
            backup_interval: Some(Duration::from_secs(6 * 3600)),
            backup_retention: Duration::from_secs(7 * 24 * 3600),
        }
        .with_default_archive()
    }

    /// Archives in `<data-dir>/archive` unless configured.
    fn with_default_archive(mut self) -> Self {
        self.archive.location = format!("file://{}", absolute(&self.data_dir.join("archive")).display());
        self
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

pub const DEFAULT_BLOCKED_NAMES: &[&str] = &[
    "www", "api", "admin", "app", "mail", "ftp", "static", "assets", "cdn", "status", "dashboard",
    "catalog", "sql", "metrics", "health", "internal", "system", "root", "localhost",
];

/// Parse a duration written as `250ms`, `30s`, `5m`, `2h`, `7d` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 250ms, 30s, 5m"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => return Err(format!("invalid duration unit {other:?} in {text:?}")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
