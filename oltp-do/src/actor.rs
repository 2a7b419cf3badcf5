//! A tenant actor: one thread that owns one tenant's PGlite database and runs
//! that tenant's work strictly one item at a time, in arrival order.
//!
//! The registry (`tenants`) decides when an actor starts and when it is told
//! to close; the actor only loads, serves and closes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::{EngineRuntime, Limits, MigrationStatus, Session, TenantDb, Watch};
use crate::feed::{Feed, RECENT_CAP};
use crate::error::{Error, Result};
use crate::protocol::EngineState;
use model::TenantId;
use model::migrations::Migrations;

/// Something a tenant's actor runs on its database, and the answer it gives:
/// each operation is a type in [`work`], so a caller gets its own reply type
/// back and a new operation is one type and one `run`.
pub trait Work: Send + Sync + 'static {
    type Reply: Send + 'static;
    /// A client's SQL: its answers are capped, it may be made read-only,
    /// and it is what makes schema changes (so base backups to store).
    const CLIENT_SQL: bool = false;

    fn run(&self, db: &mut TenantDb) -> Result<Self::Reply>;

    /// The wire-protocol connection whose session this work runs in (None:
    /// a request's, on a session reset to a new connection's).
    fn wire_conn(&self) -> Option<u64> {
        None
    }

    /// What the tenant's feed learns from a successful answer.
    fn inform(_reply: &Self::Reply, _feed: &Feed) {}
}

/// The operations an actor runs.
pub mod work {
    use std::path::PathBuf;
    use std::time::Duration;

    use serde_json::Value;

    use super::Work;
    use crate::engine::{ChangePage, LogStats, PackedBase, TenantDb};
    use crate::error::Result;
    use crate::feed::Feed;
    use crate::protocol::{BatchRequest, BatchResult, QueryResult, RowMode, Statement};

    /// One statement of a client's.
    #[derive(Debug)]
    pub struct Query {
        pub stmt: Statement,
        pub row_mode: RowMode,
    }

    impl Work for Query {
        type Reply = QueryResult;
        const CLIENT_SQL: bool = true;
        fn run(&self, db: &mut TenantDb) -> Result<QueryResult> {
            db.query(&self.stmt, self.row_mode)
        }
    }

    /// A client's statement answered with the ETag of its answer, when it
    /// is a read that can be cached (see `TenantDb::query_tagged`).
    #[derive(Debug)]
    pub struct TaggedQuery(pub Query);

    impl Work for TaggedQuery {
        type Reply = (QueryResult, Option<String>);
        const CLIENT_SQL: bool = true;
        fn run(&self, db: &mut TenantDb) -> Result<(QueryResult, Option<String>)> {
            db.query_tagged(&self.0.stmt, self.0.row_mode)
        }
    }

    /// A client's statements, each in its own transaction.
    #[derive(Debug)]
    pub struct Batch(pub BatchRequest);

    impl Work for Batch {
        type Reply = BatchResult;
        const CLIENT_SQL: bool = true;
        fn run(&self, db: &mut TenantDb) -> Result<BatchResult> {
            db.batch(&self.0)
        }
    }

    /// A client's statements in one transaction.
    #[derive(Debug)]
    pub struct Transaction(pub BatchRequest);

    impl Work for Transaction {
        type Reply = BatchResult;
        const CLIENT_SQL: bool = true;
        fn run(&self, db: &mut TenantDb) -> Result<BatchResult> {
            db.transaction(&self.0)
        }
    }

    /// The tables and the schema versions the change log recorded.
    #[derive(Debug)]
    pub struct Schema;

    impl Work for Schema {
        type Reply = Value;
        fn run(&self, db: &mut TenantDb) -> Result<Value> {
            db.schema()
        }
    }

    /// The schema versions the change log recorded, oldest first.
    #[derive(Debug)]
    pub struct SchemaHistory;

    impl Work for SchemaHistory {
        type Reply = Vec<model::SchemaVersion>;
        fn run(&self, db: &mut TenantDb) -> Result<Vec<model::SchemaVersion>> {
            db.schema_history()
        }
    }

    /// A page of changes after `since`.
    #[derive(Debug)]
    pub struct Changes {
        pub since: u64,
        pub limit: u64,
    }

    impl Work for Changes {
        type Reply = ChangePage;
        fn run(&self, db: &mut TenantDb) -> Result<ChangePage> {
            db.changes(self.since, self.limit)
        }
        fn inform(page: &ChangePage, feed: &Feed) {
            feed.publish_head(page.head_lsn);
        }
    }

    /// The change log's extent and size.
    #[derive(Debug)]
    pub struct Stats;

    /// Nothing: the tenant opened (and so brought to its migrations).
    pub struct Open;

    impl Work for Open {
        type Reply = ();
        fn run(&self, _db: &mut TenantDb) -> Result<()> {
            Ok(())
        }
    }

    /// Undo the tenant's migrations newer than `to` (`migrate down`).
    pub struct MigrateDown {
        pub set: std::sync::Arc<model::migrations::Migrations>,
        pub to: i64,
    }

    impl Work for MigrateDown {
        type Reply = crate::engine::Undone;
        fn run(&self, db: &mut TenantDb) -> Result<crate::engine::Undone> {
            db.migrate_down(&self.set, self.to)
        }
    }

    impl Work for Stats {
        type Reply = LogStats;
        fn run(&self, db: &mut TenantDb) -> Result<LogStats> {
            db.log_stats()
        }
        fn inform(stats: &LogStats, feed: &Feed) {
            feed.set_stats(*stats);
        }
    }

    /// A consumer took every change up to `lsn`: trim what no one needs.
    #[derive(Debug)]
    pub struct Acknowledge {
        pub consumer: String,
        pub lsn: u64,
        pub retention: Duration,
    }

    impl Work for Acknowledge {
        type Reply = LogStats;
        fn run(&self, db: &mut TenantDb) -> Result<LogStats> {
            db.acknowledge(&self.consumer, self.lsn, self.retention)
        }
        fn inform(stats: &LogStats, feed: &Feed) {
            feed.set_stats(*stats);
        }
    }

    /// Checkpoint and pack the database directory (a base backup) while
    /// nothing else runs on it.
    #[derive(Debug)]
    pub struct Backup {
        pub root: PathBuf,
    }

    impl Work for Backup {
        type Reply = PackedBase;
        fn run(&self, db: &mut TenantDb) -> Result<PackedBase> {
            db.pack_base(&self.root)
        }
    }

    /// The newest LSN committed at or before an instant (`YYYY-MM-DD
    /// HH:MM:SS.ffffff+00`), as far as the change log still tells.
    #[derive(Debug)]
    pub struct LsnAt {
        pub at: String,
    }

    impl Work for LsnAt {
        type Reply = crate::engine::LsnAt;
        fn run(&self, db: &mut TenantDb) -> Result<crate::engine::LsnAt> {
            db.lsn_at(&self.at)
        }
    }

    /// Pack the base backup a schema change made due, now (before a
    /// restore lists the backups); answers the log's stats.
    #[derive(Debug)]
    pub struct SettleBase;

    impl Work for SettleBase {
        type Reply = LogStats;
        fn run(&self, db: &mut TenantDb) -> Result<LogStats> {
            db.pack_due_base();
            db.log_stats()
        }
        fn inform(stats: &LogStats, feed: &Feed) {
            feed.set_stats(*stats);
        }
    }
}

/// Work on its way through the actor, its type erased: run once, then
/// answered (after the feed has learnt what the work changed).
trait Job: Send {
    fn run(&mut self, db: &mut TenantDb, feed: &Feed);
    fn answer(self: Box<Self>);
    fn fail(self: Box<Self>, err: Error);
    /// The actor was closing: the caller runs it on the next one.
    fn not_run(self: Box<Self>);
}

struct Pending<W: Work> {
    work: Arc<W>,
    outcome: Option<Result<W::Reply>>,
    reply: oneshot::Sender<Reply<W::Reply>>,
}

impl<W: Work> Job for Pending<W> {
    fn run(&mut self, db: &mut TenantDb, feed: &Feed) {
        if let Err(err) = db.claim_session(self.work.wire_conn()) {
            self.outcome = Some(Err(err));
            return;
        }
        let outcome = self.work.run(db);
        if let Ok(reply) = &outcome {
            W::inform(reply, feed);
        }
        self.outcome = Some(outcome);
    }

    fn answer(self: Box<Self>) {
        let outcome = self
            .outcome
            .unwrap_or_else(|| Err(Error::Engine("the work was answered before it ran".into())));
        let _ = self.reply.send(Reply::Done(outcome));
    }

    fn fail(self: Box<Self>, err: Error) {
        let _ = self.reply.send(Reply::Done(Err(err)));
    }

    fn not_run(self: Box<Self>) {
        let _ = self.reply.send(Reply::NotRun);
    }
}

enum Command {
    Run {
        job: Box<dyn Job>,
        /// Not started by then: refused without running.
        deadline: Instant,
        /// What each of its statements may take.
        limits: Limits,
    },
    Close,
}

/// An engine whose linear memory grew past this (a huge answer, a big
/// sort) is closed after the request that grew it, so the process gives
/// the memory back; the next request reopens the tenant.
const RECYCLE_MEMORY_BYTES: usize = 256 * 1024 * 1024;

enum Reply<T> {
    Done(Result<T>),
    /// The actor was closing and did not run the work: run it on the next one.
    NotRun,
}

/// What a caller learns from one attempt.
pub enum Attempt<T> {
    Done(Result<T>),
    NotRun,
}

/// Written in the tenant's directory on a clean close: the newest change
/// LSN then. Absent while the database is open (or after a crash), so a log
/// consumer knows which closed tenants it can skip without opening them.
pub use crate::layout::CLOSED_HEAD_FILE;

const LOADING: u8 = 0;
const LOADED: u8 = 1;
const CLOSING: u8 = 2;
const CLOSED: u8 = 3;

/// The registry's view of one running actor.
pub struct ActorHandle {
    pub tenant: TenantId,
    tx: mpsc::Sender<Command>,
    state: AtomicU8,
    /// Milliseconds since `epoch` at the last request start or end.
    last_used: AtomicU64,
    in_flight: AtomicUsize,
    /// Of those, work that is not a client's request.
    quiet: AtomicUsize,
    epoch: Instant,
    closed: watch::Receiver<bool>,
    /// Cancels what the database runs now (set once it is open).
    canceller: std::sync::Mutex<Option<Arc<Watch>>>,
    /// Work still queued is refused instead of run (a shutdown that ran
    /// out of patience).
    refuse_queued: std::sync::atomic::AtomicBool,
}

impl ActorHandle {
    /// Start the actor thread for `tenant`, rooted at `root`.
    pub fn spawn(
        tenant: TenantId,
        root: PathBuf,
        runtime: Arc<EngineRuntime>,
        feed: Arc<Feed>,
        queue_depth: usize,
        epoch: Instant,
        schema_backups: bool,
        migrations: Option<Arc<Migrations>>,
    ) -> Result<Arc<Self>> {
        let (tx, rx) = mpsc::channel(queue_depth.max(1));
        let (closed_tx, closed_rx) = watch::channel(false);
        let handle = Arc::new(Self {
            tenant: tenant.clone(),
            tx,
            state: AtomicU8::new(LOADING),
            last_used: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            in_flight: AtomicUsize::new(0),
            quiet: AtomicUsize::new(0),
            epoch,
            closed: closed_rx,
            canceller: std::sync::Mutex::new(None),
            refuse_queued: std::sync::atomic::AtomicBool::new(false),
        });
        let shared = handle.clone();
        let dir = root.clone();
        std::thread::Builder::new()
            .name(format!("tenant-{tenant}"))
            .stack_size(8 * 1024 * 1024)
            .spawn(move || {
                actor_main(&shared, root, &runtime, &feed, rx, schema_backups, migrations.as_deref());
                shared.state.store(CLOSED, Ordering::SeqCst);
                let _ = closed_tx.send(true);
            })
            .map_err(|e| Error::io("start the thread of the tenant at", &dir, e))?;
        Ok(handle)
    }

    pub fn engine_state(&self) -> EngineState {
        match self.state.load(Ordering::SeqCst) {
            LOADING => EngineState::Loading,
            LOADED | CLOSING => EngineState::Loaded,
            _ => EngineState::Hibernated,
        }
    }

    pub fn is_closing(&self) -> bool {
        self.state.load(Ordering::SeqCst) >= CLOSING
    }

    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::SeqCst) == CLOSED
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_used.load(Ordering::SeqCst)))
    }

    pub fn last_used_ms(&self) -> u64 {
        self.last_used.load(Ordering::SeqCst)
    }

    pub fn touch(&self) {
        self.last_used
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    pub fn begin_request(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
    }

    /// Work that is not a client's request: keeps the actor from closing
    /// meanwhile, without making it look used.
    pub fn begin_quiet(&self) {
        self.quiet.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    pub fn end_quiet(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.quiet.fetch_sub(1, Ordering::SeqCst);
    }

    /// Clients' requests queued or running (quiet work, such as a base
    /// backup, is not counted).
    pub fn requests_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst).saturating_sub(self.quiet.load(Ordering::SeqCst))
    }

    pub fn end_request(&self) {
        self.touch();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Ask the actor to close after the work already queued. Returns false
    /// if it was already closing.
    pub fn begin_close(&self) -> bool {
        let mut current = self.state.load(Ordering::SeqCst);
        loop {
            if current >= CLOSING {
                return false;
            }
            match self.state.compare_exchange(current, CLOSING, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.tx.try_send(Command::Close) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(cmd).await;
            });
        }
        true
    }

    /// Refuse the work still queued (it is not run) and stop the statement
    /// running now: what a shutdown does once its patience ran out.
    pub fn abort(&self) {
        self.refuse_queued.store(true, Ordering::SeqCst);
        self.cancel();
    }

    /// Stop the statement the database runs now, if any. Returns whether
    /// one was running.
    pub fn cancel(&self) -> bool {
        let canceller = self.canceller.lock().unwrap_or_else(|p| p.into_inner()).clone();
        canceller.is_some_and(|watch| watch.cancel())
    }

    /// Wait until the actor thread has finished (database closed).
    pub async fn closed(&self) {
        let mut rx = self.closed.clone();
        let _ = rx.wait_for(|closed| *closed).await;
    }

    /// Send work to the actor and wait for its result. Work not started by
    /// `deadline` is refused; work that has started always runs to its end,
    /// so the caller learns the real outcome.
    pub async fn call<W: Work>(&self, work: Arc<W>, deadline: Instant, limits: Limits) -> Attempt<W::Reply> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Run {
            job: Box::new(Pending { work, outcome: None, reply }),
            deadline,
            limits,
        };
        match tokio::time::timeout_at(deadline.into(), self.tx.send(cmd)).await {
            Err(_) => return Attempt::Done(Err(self.busy())),
            Ok(Err(_)) => return Attempt::NotRun,
            Ok(Ok(())) => {}
        }
        match rx.await {
            Ok(Reply::Done(result)) => Attempt::Done(result),
            Ok(Reply::NotRun) => Attempt::NotRun,
            Err(_) => Attempt::Done(Err(Error::Engine(format!(
                "the engine of tenant {} stopped while running the request",
                self.tenant
            )))),
        }
    }

    fn busy(&self) -> Error {
        Error::Busy(format!(
            "tenant {} is busy: the request waited for earlier work longer than the queue timeout and was not run",
            self.tenant
        ))
    }
}

fn actor_main(
    handle: &ActorHandle,
    root: PathBuf,
    runtime: &EngineRuntime,
    feed: &Feed,
    mut rx: mpsc::Receiver<Command>,
    schema_backups: bool,
    migrations: Option<&Migrations>,
) {
    let started = Instant::now();
    let opened = runtime.wait_ready().and_then(|()| {
        let ready = started.elapsed();
        // A cold tenant is promoted before its actor starts; never make a
        // fresh database where an archived one belongs.
        if crate::layout::cold_marker(&root).exists() {
            return Err(Error::Engine(format!("tenant {} is archived (cold) and was not restored", handle.tenant)));
        }
        let fresh = !root.exists();
        runtime.ensure_tenant_root(&root)?;
        // From here until a clean close, the head is unknown without opening.
        match std::fs::remove_file(root.join(CLOSED_HEAD_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &root.join(CLOSED_HEAD_FILE), e)),
        }
        let created = started.elapsed();
        let mut db = TenantDb::open(&root, runtime.settings(), Session::Tenant)?;
        db.watch_with(runtime.watchdog());
        if schema_backups && db.capture_enabled() {
            db.back_up_schema_changes(&root);
        }
        // The deployment's migrations the tenant has not had, before any request.
        if let Some(set) = migrations {
            let status = db.migrate(set, crate::layout::migrations_hold(&root).exists())?;
            // The lake takes the schema the migrations made, as after a client's DDL.
            if db.take_schema_recorded() {
                feed.schema_changed();
            }
            note_migrations(&handle.tenant, &root, feed, &status);
            // Its template's migrations made its schema: restorable from its first moment.
            if fresh {
                db.schema_changed();
            }
        }
        tracing::debug!(
            tenant = %handle.tenant,
            wait_runtime_ms = ready.as_millis() as u64,
            create_ms = (created - ready).as_millis() as u64,
            open_ms = (started.elapsed() - created).as_millis() as u64,
            "tenant database open"
        );
        Ok(db)
    });
    let mut db = match opened {
        Ok(db) => db,
        Err(err) => {
            tracing::error!(tenant = %handle.tenant, error = %err, "tenant database failed to open");
            handle.state.store(CLOSING, Ordering::SeqCst);
            rx.close();
            while let Some(cmd) = rx.blocking_recv() {
                if let Command::Run { job, .. } = cmd {
                    job.fail(Error::Engine(err.to_string()));
                }
            }
            return;
        }
    };
    *handle.canceller.lock().unwrap_or_else(|p| p.into_inner()) = db.canceller();
    let _ = handle
        .state
        .compare_exchange(LOADING, LOADED, Ordering::SeqCst, Ordering::SeqCst);
    feed.set_closed_head(None);
    if db.capture_enabled() {
        for (consumer, lsn, retention) in feed.take_pending_acks() {
            if let Err(err) = db.acknowledge(&consumer, lsn, retention) {
                tracing::warn!(tenant = %handle.tenant, consumer, error = %err, "could not apply a deferred acknowledgement");
            }
        }
        match db.log_stats() {
            Ok(stats) => feed.set_stats(stats),
            Err(err) => tracing::warn!(tenant = %handle.tenant, error = %err, "could not read change log stats"),
        }
    }

    let mut healthy = true;
    loop {
        // A schema change no base backup holds yet: packed once the tenant
        // has been idle a moment (a migration's next statement comes sooner).
        let cmd = if db.base_due() {
            match recv_within(&mut rx, SCHEMA_BASE_IDLE) {
                Received::Command(cmd) => cmd,
                Received::Closed => break,
                Received::Nothing => {
                    db.pack_due_base();
                    feed.keep_bases(db.take_bases());
                    continue;
                }
            }
        } else {
            match rx.blocking_recv() {
                Some(cmd) => cmd,
                None => break,
            }
        };
        let Command::Run {
            mut job,
            deadline,
            limits,
        } = cmd
        else {
            break;
        };
        if Instant::now() > deadline {
            job.fail(handle.busy());
            continue;
        }
        if handle.refuse_queued.load(Ordering::SeqCst) {
            job.fail(Error::Unavailable("the server is shutting down".into()));
            continue;
        }
        // A client's SQL waits for a deployment whose migrations apply.
        if limits.client_sql
            && let Some(refusal) = feed.migrations().and_then(|status| status.refusal(handle.tenant.as_str()))
        {
            job.fail(refusal);
            continue;
        }
        let ran = catch_unwind(AssertUnwindSafe(|| {
            db.set_limits(limits);
            job.run(&mut db, feed);
            db.set_limits(Limits::HOUSEKEEPING);
            if db.is_stopped() {
                return;
            }
            // The work's outcome stands whatever happens here.
            if let Err(err) = db.reset_session() {
                tracing::error!(tenant = %handle.tenant, error = %err, "could not reset the session");
            }
        }));
        match ran {
            Ok(()) => {
                if db.take_schema_recorded() {
                    feed.schema_changed();
                }
                // Base backups packed after schema changes: the caller
                // stores them before it answers.
                feed.keep_bases(db.take_bases());
                // Waiting subscribers learn of new changes before the writer's reply.
                if db.take_committed_changes() {
                    if feed.has_waiters()
                        && let Err(err) = feed_new_changes(&mut db, feed)
                    {
                        tracing::warn!(tenant = %handle.tenant, error = %err, "could not read new changes");
                    }
                    feed.committed();
                }
                job.answer();
                if db.is_stopped() {
                    tracing::warn!(tenant = %handle.tenant, "tenant engine stopped; it reopens with the next request");
                    healthy = false;
                    break;
                }
                if db.memory_bytes() > RECYCLE_MEMORY_BYTES {
                    tracing::info!(tenant = %handle.tenant, memory_bytes = db.memory_bytes(), "closing a tenant whose engine grew large");
                    break;
                }
            }
            Err(_) => {
                tracing::error!(tenant = %handle.tenant, "tenant engine panicked; restarting it");
                job.fail(Error::Engine("the tenant engine failed while running the request".to_owned()));
                healthy = false;
                break;
            }
        }
    }

    // Work that arrived after the close request runs on the next actor.
    handle.state.store(CLOSING, Ordering::SeqCst);
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        if let Command::Run { job, .. } = cmd {
            job.not_run();
        }
    }
    if healthy {
        db.pack_due_base();
        feed.keep_bases(db.take_bases());
        // Without capture the head is 0: the file still says "closed cleanly".
        let head = if db.capture_enabled() { keep_unacknowledged(&mut db, feed) } else { Some(0) };
        match db.close() {
            Ok(()) => {
                if let Some(head) = head {
                    feed.set_closed_head(Some(head));
                    if let Err(err) = std::fs::write(root.join(CLOSED_HEAD_FILE), head.to_string()) {
                        tracing::warn!(tenant = %handle.tenant, error = %err, "could not record the closed head");
                    }
                }
            }
            Err(err) => {
                tracing::error!(tenant = %handle.tenant, error = %err, "tenant database did not close cleanly")
            }
        }
    } else {
        // A panicked or stopped engine is not trusted to checkpoint; WAL
        // recovery on the next open brings back every committed transaction.
        db.abandon();
    }
    tracing::debug!(tenant = %handle.tenant, "tenant database closed");
}

/// Where the tenant stands with the deployment's migrations, in its feed
/// (for `health` and its requests) and beside its database (for
/// `migrate status` while it is closed); logged.
pub(crate) fn note_migrations(tenant: &TenantId, root: &std::path::Path, feed: &Feed, status: &MigrationStatus) {
    if !status.applied.is_empty() {
        tracing::info!(tenant = %tenant, applied = ?status.applied, version = status.version, "migrations applied");
    }
    if let Some(failed) = &status.failed {
        tracing::error!(tenant = %tenant, migration = %failed.name, code = %failed.code, error = %failed.message,
            version = status.version, "migration failed; the tenant stays at its version");
    }
    let file = crate::layout::migrations_status(root);
    if let Err(err) = serde_json::to_vec(status).map_err(std::io::Error::other).and_then(|json| std::fs::write(&file, json)) {
        tracing::warn!(tenant = %tenant, error = %err, "could not record where the tenant stands with its migrations");
    }
    feed.set_migrations(status.clone());
}

/// How long a tenant is idle after a schema change before the base backup
/// that holds it is packed.
const SCHEMA_BASE_IDLE: Duration = Duration::from_millis(500);

enum Received {
    Command(Command),
    Closed,
    Nothing,
}

/// The next command if one comes within `wait`.
fn recv_within(rx: &mut mpsc::Receiver<Command>, wait: Duration) -> Received {
    let until = Instant::now() + wait;
    loop {
        match rx.try_recv() {
            Ok(cmd) => return Received::Command(cmd),
            Err(mpsc::error::TryRecvError::Disconnected) => return Received::Closed,
            Err(mpsc::error::TryRecvError::Empty) if Instant::now() >= until => return Received::Nothing,
            Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Before closing: keep the changes no consumer has acknowledged yet in the
/// feed (up to its capacity), so a consumer catching up reads them from
/// memory instead of waking the database. Returns the head.
fn keep_unacknowledged(db: &mut TenantDb, feed: &Feed) -> Option<u64> {
    let stats = db.log_stats().ok()?;
    feed.set_stats(stats);
    let since = stats.acked_lsn.max(stats.tail_lsn.saturating_sub(1));
    if stats.head_lsn > since && stats.head_lsn - since <= RECENT_CAP as u64 {
        match db.read_changes(since, RECENT_CAP as u64).and_then(|c| Ok((c, db.schema_history()?))) {
            Ok((changes, versions)) => {
                feed.publish_changes(changes, stats.head_lsn);
                feed.keep_closed_schema(versions);
            }
            Err(err) => tracing::warn!(error = %err, "could not keep unacknowledged changes"),
        }
    }
    Some(stats.head_lsn)
}

/// Read what the last commit added to the change log, once, for every waiter.
fn feed_new_changes(db: &mut TenantDb, feed: &Feed) -> Result<()> {
    const BATCH: u64 = 1000;
    let since = feed.head();
    let changes = db.read_changes(since, BATCH)?;
    if (changes.len() as u64) < BATCH {
        let head = changes.last().map_or(since, |c| c.lsn);
        feed.publish_changes(changes, head);
    } else {
        // A large commit: subscribers page through it from the database.
        let head = db.head_lsn()?;
        feed.publish_head(head);
    }
    Ok(())
}
