//! A tenant's change log as the server's consumers read it: pages of
//! changes (long-polled, answered from memory for a closed tenant when it
//! kept enough at its close), schema versions, stats and acknowledgements.

use std::time::Duration;

use super::Tenants;
use super::registry::Use;
use crate::actor::work;
use crate::engine::{ChangePage, LogStats};
use crate::error::{Error, Result};
use model::{SchemaVersion, TenantId};

impl Tenants {
    /// Every schema version recorded in the tenant's change log, oldest first.
    /// A closed tenant answers from what it kept when it closed, if anything.
    pub async fn schema_versions(&self, tenant: &TenantId) -> Result<Vec<SchemaVersion>> {
        self.schema_versions_as(tenant, Use::Request).await
    }

    /// `schema_versions` for housekeeping (the lake's shipper): see [`Use`].
    pub async fn schema_versions_quietly(&self, tenant: &TenantId) -> Result<Vec<SchemaVersion>> {
        self.schema_versions_as(tenant, Use::Housekeeping).await
    }

    pub(super) async fn schema_versions_as(&self, tenant: &TenantId, from: Use) -> Result<Vec<SchemaVersion>> {
        if let Some(closing) = self.closing_actor(tenant) {
            closing.closed().await;
        }
        if !self.is_open(tenant)
            && let Some(versions) = self.feed(tenant).closed_schema()
        {
            return Ok(versions);
        }
        self.run_as(tenant, from, || work::SchemaHistory).await
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

    pub(super) async fn read_changes_as(&self, tenant: &TenantId, since: u64, limit: u64, from: Use) -> Result<ChangePage> {
        if let Some(closing) = self.closing_actor(tenant) {
            closing.closed().await;
        }
        let feed = self.feed(tenant);
        if !self.is_open(tenant)
            && let Some((changes, head)) = feed.closed_changes_after(since, limit as usize)
        {
            let next_lsn = changes.last().map_or(since, |c| c.lsn);
            let tail_lsn = feed.stats().tail_lsn;
            return Ok(ChangePage { changes, next_lsn, head_lsn: head, tail_lsn, schema_version: None });
        }
        let page = self.run_as(tenant, from, || work::Changes { since, limit }).await?;
        if let Some(message) = model::log::trimmed_after(since, page.tail_lsn) {
            return Err(Error::Gone(message));
        }
        Ok(page)
    }

    /// The change log's extent and size, read from the database.
    /// The change log of an open tenant as it is now, without counting as
    /// a request: a tenant only looked at (health, the tier policies) still
    /// hibernates when idle. None if it is not open.
    pub async fn peek_log_stats(&self, tenant: &TenantId) -> Option<Result<LogStats>> {
        self.run_quietly(tenant, work::Stats).await
    }

    pub async fn log_stats(&self, tenant: &TenantId) -> Result<LogStats> {
        self.run(tenant, work::Stats).await
    }

    /// A consumer has durably taken every change up to `lsn`: trim the log.
    pub async fn acknowledge(&self, tenant: &TenantId, consumer: &str, lsn: u64) -> Result<LogStats> {
        self.run(tenant, self.acknowledgement(consumer, lsn)).await
    }

    pub(super) fn acknowledgement(&self, consumer: &str, lsn: u64) -> work::Acknowledge {
        work::Acknowledge {
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
}
