//! What `health`, `tidelake tenants` and `/metrics` say about tenants.

use std::path::Path;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::storage::read_marker;
use super::{TenantStatus, Tenants, Tier};
use crate::layout::{self, CLOSED_HEAD_FILE};
use crate::protocol::EngineState;
use model::TenantId;

/// The tenants' counters and gauges, read on each scrape of `/metrics`.
pub(super) struct TenantsMetrics(pub(super) Weak<Tenants>);

impl std::fmt::Debug for TenantsMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantsMetrics")
    }
}

impl Collector for TenantsMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let Some(tenants) = self.0.upgrade() else { return Ok(()) };
        let mut gauge = |name: &str, help: &str, value: i64| {
            ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
        };
        gauge("tidelake_tenants_open", "Tenant databases open in memory.", tenants.open_count() as i64)?;
        gauge("tidelake_tenants_max_open", "Cap on open tenant databases.", tenants.config.max_open_tenants as i64)?;
        let ready = matches!(tenants.runtime.readiness(), Ok(Some(_)));
        gauge("tidelake_engine_ready", "1 once the engine runtime is preloaded.", i64::from(ready))?;
        let m = &tenants.metrics;
        let counters: [(&str, &str, &AtomicU64); 9] = [
            ("tidelake_tenant_wakes", "Tenant databases opened (created or woken).", &m.wakes),
            ("tidelake_tenant_hibernations", "Idle tenant databases hibernated.", &m.hibernations),
            (
                "tidelake_tenant_demotions",
                "Hibernated tenants archived to object storage and removed from local disk (cold).",
                &m.demotions,
            ),
            ("tidelake_tenant_promotions", "Cold tenants brought back from object storage.", &m.promotions),
            ("tidelake_base_backups", "Base backups stored.", &m.backups),
            ("tidelake_tiering_errors", "Failed backups and demotions (retried by the next round).", &m.tiering_errors),
            ("tidelake_tenant_evictions", "Tenant databases closed to stay under the open cap.", &m.evictions),
            ("tidelake_requests", "Requests run on tenant databases.", &m.requests),
            ("tidelake_request_errors", "Requests on tenant databases that returned an error.", &m.request_errors),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}

impl Tenants {
    /// Every metric of the server in the OpenMetrics text format: the
    /// tenants', and those of the services given at construction.
    pub fn encode_metrics(&self) -> String {
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "could not encode the metrics");
        }
        out
    }

    /// Bytes a tenant directory takes on disk. A closed one is measured
    /// once per clean close (a directory is a few hundred files: listing
    /// thousands of tenants must not walk them all every time).
    pub(super) fn disk_size(&self, root: &Path) -> u64 {
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
    /// What the reporters add to the server's own `health`.
    pub fn server_reports(&self) -> serde_json::Map<String, serde_json::Value> {
        self.reporters.iter().flat_map(|r| r.server_status()).collect()
    }

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
        let reporters = &self.reporters;
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
                    // Read below from beside the database if not in the feed.
                    migrations: inner.feeds.get(&tenant).and_then(|f| f.migrations()),
                    reported: reporters.iter().flat_map(|r| r.tenant_status(&tenant)).collect(),
                    tenant: tenant.to_string(),
                }
            })
            .collect();
        drop(inner);
        for (status, tenant) in list.iter_mut().zip(&names) {
            status.disk_bytes = self.disk_size(&self.root(tenant));
            if let Some(set) = &self.config.migrations {
                let recorded = || {
                    let text = std::fs::read(layout::migrations_status(&self.root(tenant))).ok()?;
                    serde_json::from_slice(&text).ok()
                };
                status.migrations = status.migrations.take().or_else(recorded);
                if let Some(migrations) = &mut status.migrations {
                    migrations.latest = set.latest();
                }
            }
        }
        list
    }
}
