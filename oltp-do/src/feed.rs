//! Per-tenant change notification, outliving the tenant's actor, so
//! long-polls and WebSocket subscribers wait here without keeping the
//! database open: a hibernated tenant wakes only when someone writes or reads.
//!
//! While anyone is waiting, the actor reads the changes of every commit once
//! and keeps the most recent ones here, so a hundred subscribers cost one
//! read, not a hundred. With nobody waiting, a commit costs nothing extra.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

use crate::engine::{LogStats, MigrationStatus, PackedBase};
use model::{Change, SchemaVersion, TenantId};

/// How many recent changes are kept in memory for subscribers.
pub const RECENT_CAP: usize = 4096;

pub struct Feed {
    tenant: TenantId,
    /// Where every commit that wrote changes is announced to log consumers.
    commits: Arc<Commits>,
    /// Newest LSN known; exact while anyone waits (see `Waiting`).
    head: watch::Sender<u64>,
    /// Contiguous run of the newest changes, in LSN order.
    recent: Mutex<VecDeque<Change>>,
    /// Last stats read from the database (for `health`).
    stats: Mutex<LogStats>,
    waiting: AtomicUsize,
    /// While the database is closed: its head at the clean close (the
    /// changes after the lowest acknowledgement were kept in `recent`).
    closed_head: Mutex<Option<u64>>,
    /// The schema history at the clean close, kept with unacknowledged changes.
    closed_schema: Mutex<Option<Vec<SchemaVersion>>>,
    /// Acknowledgements received while the database was closed, applied
    /// when it next opens.
    pending_acks: Mutex<Vec<(String, u64, std::time::Duration)>>,
    /// When the schema last changed, until a base backup after it is taken.
    schema_changed: Mutex<Option<std::time::Instant>>,
    /// Base backups packed after schema changes, until they are stored.
    bases: Mutex<Vec<PackedBase>>,
    /// Where the tenant stood with the deployment's migrations when it last opened.
    migrations: Mutex<Option<MigrationStatus>>,
    /// Schema versions recorded since the server started (readers of the
    /// log compare it to know the schema history moved).
    schema_epoch: std::sync::atomic::AtomicU64,
}

impl Feed {
    pub fn new(tenant: TenantId, commits: Arc<Commits>) -> Self {
        Self {
            tenant,
            commits,
            head: watch::Sender::new(0),
            recent: Mutex::new(VecDeque::new()),
            stats: Mutex::new(LogStats::default()),
            waiting: AtomicUsize::new(0),
            closed_head: Mutex::new(None),
            closed_schema: Mutex::new(None),
            pending_acks: Mutex::new(Vec::new()),
            schema_changed: Mutex::new(None),
            bases: Mutex::new(Vec::new()),
            migrations: Mutex::new(None),
            schema_epoch: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// Registration of a reader that will wait on the feed. Register before
/// reading the database, then wait: every commit from then on is published.
pub struct Waiting<'a>(&'a Feed);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}


impl Feed {
    /// A transaction that wrote changes has committed (costs a set insert).
    pub fn committed(&self) {
        self.commits.mark(&self.tenant);
    }

    pub fn register(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(self)
    }

    pub fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Publish the newest LSN (read from the database by the actor).
    pub fn publish_head(&self, head: u64) {
        self.head.send_if_modified(|h| {
            let moved = *h != head;
            *h = head;
            moved
        });
    }

    /// Publish newly committed changes (following the current head, in
    /// order) and the new head.
    pub fn publish_changes(&self, changes: Vec<Change>, head: u64) {
        {
            let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for change in changes {
                let contiguous = recent.back().is_none_or(|last| last.lsn.checked_add(1) == Some(change.lsn));
                if !contiguous {
                    recent.clear();
                }
                recent.push_back(change);
            }
            while recent.len() > RECENT_CAP {
                recent.pop_front();
            }
        }
        self.publish_head(head);
    }

    /// Up to `limit` changes after `cursor` from memory, if memory holds the
    /// one right after it.
    pub fn recent_after(&self, cursor: u64, limit: usize) -> Option<Vec<Change>> {
        let recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = recent.front()?.lsn;
        let last = recent.back()?.lsn;
        // (In this order: a cursor at u64::MAX is past any change.)
        if cursor >= last || cursor + 1 < first {
            return None;
        }
        let skip = (cursor + 1 - first) as usize;
        Some(recent.iter().skip(skip).take(limit).cloned().collect())
    }

    /// Wait until the head passes `lsn`. Returns at once if it already has.
    pub async fn wait_past(&self, lsn: u64) {
        let mut rx = self.head.subscribe();
        let _ = rx.wait_for(|head| *head > lsn).await;
    }

    pub fn set_stats(&self, stats: LogStats) {
        *self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = stats;
        self.publish_head(stats.head_lsn);
    }

    pub fn stats(&self) -> LogStats {
        *self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The database closed cleanly with this head (None: it is opening).
    pub fn set_closed_head(&self, head: Option<u64>) {
        *self.closed_head.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = head;
        if head.is_none() {
            *self.closed_schema.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
    }

    pub fn keep_closed_schema(&self, versions: Vec<SchemaVersion>) {
        *self.closed_schema.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(versions);
    }

    /// The schema history kept at the last clean close, while still closed.
    pub fn closed_schema(&self) -> Option<Vec<SchemaVersion>> {
        self.closed_head.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()?;
        self.closed_schema.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Changes after `since` answered from memory while the database is
    /// closed, so reading a log does not wake it: `Some` with the changes
    /// (empty when `since` is the head), None if memory does not hold them.
    pub fn closed_changes_after(&self, since: u64, limit: usize) -> Option<(Vec<Change>, u64)> {
        let head = (*self.closed_head.lock().unwrap_or_else(std::sync::PoisonError::into_inner))?;
        if since >= head {
            return Some((Vec::new(), head));
        }
        let changes = self.recent_after(since, limit)?;
        Some((changes, head))
    }

    /// A table was created, altered or dropped: a base backup is due (replay
    /// does not cross schema changes).
    pub fn set_migrations(&self, status: MigrationStatus) {
        *self.migrations.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
    }

    /// Where the tenant stood with the deployment's migrations when it last
    /// opened (None: not opened since the server started, or no migrations).
    pub fn migrations(&self) -> Option<MigrationStatus> {
        self.migrations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn schema_changed(&self) {
        *self.schema_changed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
        self.schema_epoch.fetch_add(1, Ordering::SeqCst);
        // The lake takes the new schema even if no change follows.
        self.commits.mark(&self.tenant);
    }

    /// How many times the schema changed since the server started.
    pub fn schema_epoch(&self) -> u64 {
        self.schema_epoch.load(Ordering::SeqCst)
    }

    /// Keep base backups packed on the tenant's thread until they are stored.
    pub fn keep_bases(&self, bases: Vec<PackedBase>) {
        if !bases.is_empty() {
            self.bases.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(bases);
        }
    }

    /// The base backups packed and not stored yet, oldest first.
    pub fn take_bases(&self) -> Vec<PackedBase> {
        std::mem::take(&mut *self.bases.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// A base backup that began at `began` was stored: it holds every
    /// schema change made before then.
    pub fn backed_up(&self, began: std::time::Instant) {
        let mut changed = self.schema_changed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if changed.is_some_and(|at| at < began) {
            *changed = None;
        }
    }

    /// Whether the schema changed at least `quiet` ago and no backup was
    /// taken since; taking it clears the mark (set it again if the backup fails).
    pub fn take_schema_change(&self, quiet: std::time::Duration) -> bool {
        let mut changed = self.schema_changed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if changed.is_some_and(|at| at.elapsed() >= quiet) {
            *changed = None;
            return true;
        }
        false
    }

    /// The database was replaced by a restore whose change log starts afresh
    /// and ends at `head`; it is closed. What memory held of the old log is
    /// dropped; waiting readers learn of the new head.
    pub fn restart(&self, head: u64) {
        self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        self.pending_acks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        *self.closed_schema.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        *self.closed_head.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(head);
        let mut stats = self.stats();
        stats.head_lsn = head;
        self.set_stats(stats);
        self.head.send_modify(|h| *h = head);
    }

    pub fn defer_ack(&self, consumer: &str, lsn: u64, retention: std::time::Duration) {
        self.pending_acks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((consumer.to_owned(), lsn, retention));
    }

    pub fn take_pending_acks(&self) -> Vec<(String, u64, std::time::Duration)> {
        std::mem::take(&mut *self.pending_acks.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// The tenants that committed changes since a log consumer (the lake
/// shipper) last took them: how it learns what to read without polling or
/// waking every tenant.
#[derive(Default)]
pub struct Commits {
    dirty: Mutex<BTreeSet<TenantId>>,
    notify: Notify,
}

impl Commits {
    pub fn mark(&self, tenant: &TenantId) {
        let fresh = self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(tenant.clone());
        if fresh {
            self.notify.notify_one();
        }
    }

    /// Take the tenants marked so far (possibly none).
    pub fn take(&self) -> Vec<TenantId> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_iter().collect()
    }

    /// Wait until a tenant is marked (returns at once if one already is).
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if !self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty() {
                return;
            }
            notified.await;
        }
    }
}
