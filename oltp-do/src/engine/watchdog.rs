//! What one statement may take: time (the statement timeout) and the size
//! of its answer. PGlite's WASIX build never delivers the timer signal
//! behind PostgreSQL's own `statement_timeout`, so the host keeps the time:
//! one watchdog thread for the whole process looks at every statement that
//! is running, and cancels one that is over a limit the way a cancel
//! request does (SQLSTATE 57014, the backend keeps serving). A statement
//! that does not stop within a grace period after that (a loop that never
//! checks for interrupts) has its engine terminated; its tenant is reopened
//! from disk, with every committed transaction.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use pglite_oxide::HostHandle;

/// How long a cancelled statement may take to stop before its engine is
/// terminated. A statement checks for the cancel at its next interrupt
/// check (every row, every sort run); one asleep in `pg_sleep` does not see
/// it in this build, and ends with the engine after this grace.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// How often the size of a running statement's answer is looked at.
const OUTPUT_POLL: Duration = Duration::from_millis(10);

/// The bounds of one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub statement_timeout: Duration,
    /// Bytes of protocol output (rows as PostgreSQL sends them).
    pub max_result_bytes: u64,
    pub max_result_rows: u64,
    /// Why the request's SQL runs in read-only transactions, if it does.
    pub read_only: Option<ReadOnly>,
    /// The work is a client's SQL (not the server's own).
    pub client_sql: bool,
}

/// Why a request's SQL may only read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOnly {
    /// The tenant is over its disk quota (bytes used, quota): writes fail
    /// with SQLSTATE 53100.
    Quota(u64, u64),
    /// The caller's token has the `read` scope on the tenant: writes fail
    /// with SQLSTATE 42501 (HTTP 403).
    Scope,
    /// A `GET` request, which only reads: writes fail with SQLSTATE 25006.
    Get,
}

impl Limits {
    /// For the server's own work (reading a change log for the lake,
    /// trimming it, a base backup): no answer cap, a long timeout.
    pub const HOUSEKEEPING: Limits = Limits {
        statement_timeout: Duration::from_secs(600),
        max_result_bytes: u64::MAX,
        max_result_rows: u64::MAX,
        read_only: None,
        client_sql: false,
    };
}

/// Why a statement was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It ran past its statement timeout.
    Timeout(Duration),
    /// Its answer grew past the byte cap.
    TooLarge(u64),
    /// Its answer had more rows than the row cap.
    TooManyRows(u64),
    /// A client asked (`POST /t/{tenant}/cancel`).
    Cancelled,
}

/// One database's entry: armed while a statement of it runs.
pub struct Watch {
    handle: HostHandle,
    state: Mutex<WatchState>,
    watchdog: Arc<Shared>,
}

#[derive(Default)]
struct WatchState {
    running: Option<Running>,
}

struct Running {
    deadline: Instant,
    timeout: Duration,
    max_bytes: u64,
    stopped: Option<Stopped>,
    /// When the engine is terminated unless the call has returned.
    terminate_at: Option<Instant>,
    terminated: bool,
}

impl Watch {
    /// A statement starts under `limits`.
    pub fn arm(&self, limits: &Limits) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.running = Some(Running {
            deadline: now.checked_add(limits.statement_timeout).unwrap_or(now + Duration::from_secs(86_400 * 365)),
            timeout: limits.statement_timeout,
            max_bytes: limits.max_result_bytes,
            stopped: None,
            terminate_at: None,
            terminated: false,
        });
        drop(state);
        self.watchdog.poke();
    }

    /// The statement is over: why it was stopped, if it was, and whether its
    /// engine was terminated (the database must then not be used again).
    pub fn disarm(&self) -> (Option<Stopped>, bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.running.take() {
            Some(running) => (running.stopped, running.terminated),
            None => (None, false),
        }
    }

    /// Stop the statement running now, if any (a client's cancel). Returns
    /// whether one was running.
    pub fn cancel(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(running) = state.running.as_mut() else { return false };
        if running.stopped.is_none() {
            running.stopped = Some(Stopped::Cancelled);
            running.terminate_at = Some(Instant::now() + TERMINATE_GRACE);
            self.handle.cancel();
        }
        drop(state);
        self.watchdog.poke();
        true
    }

    /// Look at the running statement now; returns when to look again.
    fn check(&self, now: Instant) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let running = state.running.as_mut()?;
        if running.terminated {
            return None;
        }
        if let Some(at) = running.terminate_at {
            if now >= at {
                tracing::warn!("a cancelled statement did not stop; terminating its engine");
                running.terminated = true;
                self.handle.terminate();
                return None;
            }
            return Some(at);
        }
        if now >= running.deadline {
            running.stopped = Some(Stopped::Timeout(running.timeout));
        } else if running.max_bytes != u64::MAX
            && self.handle.output_len().is_some_and(|n| n as u64 > running.max_bytes)
        {
            running.stopped = Some(Stopped::TooLarge(running.max_bytes));
        }
        if running.stopped.is_some() {
            running.terminate_at = Some(now + TERMINATE_GRACE);
            self.handle.cancel();
            return running.terminate_at;
        }
        let next = if running.max_bytes == u64::MAX { running.deadline } else { (now + OUTPUT_POLL).min(running.deadline) };
        Some(next)
    }
}

struct Shared {
    /// The watches, and a count of arms and cancels: the thread looks again
    /// whenever it moved while it was looking.
    watches: Mutex<(Vec<Weak<Watch>>, u64)>,
    wake: Condvar,
}

impl Shared {
    fn poke(&self) {
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        watches.1 = watches.1.wrapping_add(1);
        self.wake.notify_one();
    }
}

/// The process's watchdog: one thread for every database.
#[derive(Clone)]
pub struct Watchdog(Arc<Shared>);

impl Watchdog {
    pub fn start() -> Self {
        let shared = Arc::new(Shared { watches: Mutex::default(), wake: Condvar::new() });
        let looking = shared.clone();
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || watch_forever(&looking))
            .expect("spawn the watchdog thread");
        Self(shared)
    }

    /// A watch for one database's statements.
    pub fn watch(&self, handle: HostHandle) -> Arc<Watch> {
        let watch = Arc::new(Watch { handle, state: Mutex::default(), watchdog: self.0.clone() });
        let mut watches = self.0.watches.lock().unwrap_or_else(|p| p.into_inner());
        watches.0.retain(|w| w.strong_count() > 0);
        watches.0.push(Arc::downgrade(&watch));
        watch
    }
}

fn watch_forever(shared: &Shared) {
    let mut watches = shared.watches.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let seen = watches.1;
        let live: Vec<Arc<Watch>> = watches.0.iter().filter_map(Weak::upgrade).collect();
        drop(watches);
        let now = Instant::now();
        let next = live.iter().filter_map(|w| w.check(now)).min();
        drop(live);
        watches = shared.watches.lock().unwrap_or_else(|p| p.into_inner());
        if watches.1 != seen {
            continue;
        }
        watches = match next {
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
                shared.wake.wait_timeout(watches, wait).unwrap_or_else(|p| p.into_inner()).0
            }
            None => shared.wake.wait(watches).unwrap_or_else(|p| p.into_inner()),
        };
    }
}
