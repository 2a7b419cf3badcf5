//! Where the shipper reads changes from: the tenants' change logs, behind a
//! small trait so the lake does not depend on the tenant databases (the
//! binary implements it over `oltp_do::Tenants`).

use std::future::Future;

use model::{Change, SchemaVersion};

/// A page of a tenant's change log.
#[derive(Debug, Default)]
pub struct ChangePage {
    /// Changes in LSN order.
    pub changes: Vec<Change>,
    /// The newest LSN in the log when the page was read.
    pub head_lsn: u64,
    /// Moves whenever the tenant's schema history does (read before the
    /// changes): the shipper then brings every table to its schema, written
    /// to or not.
    pub schema_epoch: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The changes asked for were trimmed from the log; `tail` is the oldest kept.
    #[error("changes were trimmed from the change log; the oldest kept is LSN {tail}")]
    Trimmed { tail: u64 },
    /// The source could not answer; the cause is the source's own error.
    #[error("{0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl SourceError {
    pub fn failed(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Failed(cause.into())
    }
}

pub trait ChangeSource: Send + Sync + 'static {
    /// Take the tenants that committed changes since the last call.
    fn take_committed(&self) -> Vec<String>;

    /// Wait until some tenant has committed changes not yet taken.
    fn wait_committed(&self) -> impl Future<Output = ()> + Send;

    /// Every tenant, with the newest LSN of its change log when that is
    /// known without opening its database (it is closed and was closed cleanly).
    fn tenants(&self) -> Vec<(String, Option<u64>)>;

    /// Up to `limit` changes after LSN `since`.
    fn read(&self, tenant: &str, since: u64, limit: u64)
    -> impl Future<Output = Result<ChangePage, SourceError>> + Send;

    /// Every schema version the tenant's change log recorded, oldest first.
    fn schema_versions(&self, tenant: &str) -> impl Future<Output = Result<Vec<SchemaVersion>, SourceError>> + Send;

    /// Every change up to `lsn` is durably in the lake: the log may be trimmed.
    fn acknowledge(&self, tenant: &str, lsn: u64) -> impl Future<Output = Result<(), SourceError>> + Send;
}
