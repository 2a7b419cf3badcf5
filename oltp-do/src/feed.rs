//! Per-tenant change notification: the newest LSN and the change log's size,
//! published by the tenant's actor after every commit that wrote changes.
//!
//! A feed outlives the tenant's actor, so long-polls and WebSocket
//! subscribers wait on it without keeping the database open: a hibernated
//! tenant wakes only when someone writes or reads.

use tokio::sync::watch;

use crate::engine::LogStats;

pub struct Feed {
    stats: watch::Sender<LogStats>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            stats: watch::Sender::new(LogStats::default()),
        }
    }
}

impl Feed {
    pub fn publish(&self, stats: LogStats) {
        self.stats.send_replace(stats);
    }

    /// The last published stats (default until the tenant was opened once).
    pub fn stats(&self) -> LogStats {
        *self.stats.borrow()
    }

    /// Wait until the head LSN passes `lsn`. Returns at once if it already has.
    pub async fn wait_past(&self, lsn: u64) {
        let mut rx = self.stats.subscribe();
        let _ = rx.wait_for(|s| s.head_lsn > lsn).await;
    }
}
