//! Per-tenant change notification, outliving the tenant's actor, so
//! long-polls and WebSocket subscribers wait here without keeping the
//! database open: a hibernated tenant wakes only when someone writes or reads.
//!
//! While anyone is waiting, the actor reads the changes of every commit once
//! and keeps the most recent ones here, so a hundred subscribers cost one
//! read, not a hundred. With nobody waiting, a commit costs nothing extra.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use tokio::sync::watch;

use crate::engine::LogStats;

/// How many recent changes are kept in memory for subscribers.
const RECENT_CAP: usize = 4096;

pub struct Feed {
    /// Newest LSN known; exact while anyone waits (see `Waiting`).
    head: watch::Sender<u64>,
    /// Contiguous run of the newest changes, in LSN order.
    recent: Mutex<VecDeque<Value>>,
    /// Last stats read from the database (for `health`).
    stats: Mutex<LogStats>,
    waiting: AtomicUsize,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            head: watch::Sender::new(0),
            recent: Mutex::new(VecDeque::new()),
            stats: Mutex::new(LogStats::default()),
            waiting: AtomicUsize::new(0),
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

fn lsn_of(change: &Value) -> u64 {
    change["lsn"].as_u64().unwrap_or(0)
}

impl Feed {
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
    pub fn publish_changes(&self, changes: Vec<Value>, head: u64) {
        {
            let mut recent = self.recent.lock().expect("feed poisoned");
            for change in changes {
                let contiguous = recent.back().is_none_or(|last| lsn_of(last) + 1 == lsn_of(&change));
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
    pub fn recent_after(&self, cursor: u64, limit: usize) -> Option<Vec<Value>> {
        let recent = self.recent.lock().expect("feed poisoned");
        let first = lsn_of(recent.front()?);
        let last = lsn_of(recent.back()?);
        if cursor + 1 < first || cursor >= last {
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
        *self.stats.lock().expect("feed poisoned") = stats;
        self.publish_head(stats.head_lsn);
    }

    pub fn stats(&self) -> LogStats {
        *self.stats.lock().expect("feed poisoned")
    }
}
