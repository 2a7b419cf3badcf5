//! The server's own schedule for tenants: tier policies (demote idle warm
//! tenants to cold, periodic base backups, the backups schema changes made
//! due) and disk quotas.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Tenants, Tier};
use crate::feed::Feed;
use model::TenantId;

/// How long a tenant's schema must stay unchanged before the base backup
/// that follows a schema change (so a migration of many statements is
/// backed up once).
const SCHEMA_BACKUP_QUIET: Duration = Duration::from_secs(2);

impl Tenants {
    pub(super) fn has_disk_quotas(&self) -> bool {
        self.config.tenant_disk_quota.is_some() || self.config.tenant_overrides.values().any(|o| o.disk_quota.is_some())
    }

    /// Measure the tenants that have a disk quota (open ones, and closed
    /// ones once per clean close) and note which are over it.
    pub(super) fn check_disk_quotas(&self, tenants: &[TenantId]) {
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
    pub(super) async fn back_up_schema_changes(&self) {
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

    pub(super) async fn demote_logged(&self, tenant: &TenantId, demoted: &mut HashSet<TenantId>) -> bool {
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
}
