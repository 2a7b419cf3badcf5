//! What `health`, `tidelake tenants` and `/metrics` say about tenants.

use std::path::Path;
use std::time::UNIX_EPOCH;

use super::storage::read_marker;
use super::{TenantStatus, Tenants, Tier};
use crate::layout::{self, CLOSED_HEAD_FILE};
use crate::protocol::EngineState;
use model::TenantId;

impl Tenants {
    pub fn report_metrics(&self, out: &mut String) {
        for reporter in self.reporters.iter() {
            reporter.metrics(out);
        }
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
