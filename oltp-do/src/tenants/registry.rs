//! Which tenants are open: waking a tenant on its next request (after its
//! previous actor closed, a move between tiers settled and there is room
//! under the open-tenant cap), running work on its actor, hibernating idle
//! ones, evicting the least recently used, and the shutdown.
//!
//! Every state change happens under one mutex that is never held across an
//! await; the actors do the slow part (open, close) on their own threads.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use super::storage::read_marker;
use super::{Inner, Lease, Tenants};
use crate::layout;
use crate::actor::{ActorHandle, Attempt, Work};
use crate::engine::{Limits, MigrationStatus, ReadOnly, Undone};
use crate::error::{Error, Result};
use crate::feed::{Commits, Feed};
use crate::protocol::EngineState;
use model::TenantId;

impl Tenants {
    /// Run `work` on the tenant's database, waking or creating it as needed.
    pub async fn run<W: Work>(&self, tenant: &TenantId, work: W) -> Result<W::Reply> {
        self.run_with(tenant, work, None).await
    }

    /// `run`, with the statement timeout lowered to `timeout` if that is
    /// lower than the tenant's.
    pub async fn run_with<W: Work>(&self, tenant: &TenantId, work: W, timeout: Option<Duration>) -> Result<W::Reply> {
        self.run_sql(tenant, work, timeout, true).await
    }

    /// `run_with` for a client's SQL: unless the caller `may_write`, its
    /// statements run in read-only transactions.
    pub async fn run_sql<W: Work>(
        &self,
        tenant: &TenantId,
        work: W,
        timeout: Option<Duration>,
        may_write: bool,
    ) -> Result<W::Reply> {
        self.run_sql_reading(tenant, work, timeout, (!may_write).then_some(ReadOnly::Scope)).await
    }

    /// [`Self::run_sql`], the statements run read-only for `reading`'s
    /// reason (if any, and unless the quota already makes them).
    pub async fn run_sql_reading<W: Work>(
        &self,
        tenant: &TenantId,
        work: W,
        timeout: Option<Duration>,
        reading: Option<ReadOnly>,
    ) -> Result<W::Reply> {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let mut limits = self.limits_for(tenant, W::CLIENT_SQL, timeout);
        limits.read_only = limits.read_only.or(reading);
        let work = Arc::new(work);
        let deadline = Instant::now() + self.config.queue_timeout;
        let result = loop {
            let lease = self.acquire(tenant, deadline).await?;
            match lease.0.call(work.clone(), deadline, limits).await {
                Attempt::Done(result) => break result,
                Attempt::NotRun => continue,
            }
        };
        if result.is_err() {
            self.metrics.request_errors.fetch_add(1, Ordering::Relaxed);
        }
        // Only a client's SQL makes schema changes, and so base backups.
        if W::CLIENT_SQL {
            self.store_schema_bases(tenant).await;
        }
        result
    }

    /// What each statement of `work` may take: the tenant's statement
    /// timeout (or less, if the request asks), and for a client's SQL the
    /// answer caps.
    pub(super) fn limits_for(&self, tenant: &TenantId, client_sql: bool, timeout: Option<Duration>) -> Limits {
        let tenant_timeout = self.config.statement_timeout(tenant.as_str());
        Limits {
            statement_timeout: timeout.map_or(tenant_timeout, |t| t.min(tenant_timeout)),
            max_result_bytes: if client_sql { self.config.max_result_bytes } else { u64::MAX },
            max_result_rows: if client_sql { self.config.max_result_rows } else { u64::MAX },
            read_only: if client_sql {
                let over = self.over_quota.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(tenant).copied();
                over.map(|(used, quota)| ReadOnly::Quota(used, quota))
            } else {
                None
            },
            client_sql,
        }
    }

    /// Reads create nothing: a tenant that does not exist (not open, not
    /// on disk, not archived) is answered as such.
    pub fn must_exist(&self, tenant: &TenantId) -> Result<()> {
        if self.engine_state(tenant).1 {
            Ok(())
        } else {
            Err(Error::NoSuchTenant(tenant.to_string()))
        }
    }

    /// Stop the statement the tenant runs now, if it is open and running
    /// one (`POST /t/{tenant}/cancel`). Returns whether one was.
    pub fn cancel(&self, tenant: &TenantId) -> bool {
        let actor = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).actors.get(tenant).cloned();
        actor.is_some_and(|a| a.cancel())
    }

    pub(super) async fn acquire(&self, tenant: &TenantId, deadline: Instant) -> Result<Lease> {
        loop {
            let closing = {
                let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if inner.shutting_down {
                    return Err(Error::Unavailable("the server is shutting down".into()));
                }
                inner.last_access.insert(tenant.clone(), SystemTime::now());
                match inner.actors.get(tenant).cloned() {
                    Some(actor) if !actor.is_closing() => {
                        actor.begin_request();
                        return Ok(Lease(actor.clone()));
                    }
                    Some(actor) if actor.is_closed() => {
                        inner.actors.remove(tenant);
                        continue;
                    }
                    Some(actor) => Wait::Closing(actor.clone()),
                    None if inner.moving.contains(tenant) || layout::cold_marker(&self.root(tenant)).exists() => Wait::Settle,
                    None if self.make_room(&mut inner) => {
                        let actor = self.spawn_locked(&mut inner, tenant)?;
                        actor.begin_request();
                        return Ok(Lease(actor));
                    }
                    None => Wait::Room,
                }
            };
            match closing {
                // Its previous actor is still closing the database: wait, then wake it anew.
                Wait::Closing(closing) => closing.closed().await,
                // Moving between tiers, or cold: wait for the move, promote if cold.
                Wait::Settle => self.settle(tenant).await?,
                // At the open-tenant cap: wait for one to close.
                Wait::Room => self.wait_for_room(deadline).await?,
            }
        }
    }

    /// Under the registry lock, before opening one more tenant: whether
    /// there is room under the open-tenant cap. Every actor that has not
    /// finished closing counts (a closing or stuck one still holds its
    /// memory and thread); at the cap, the least recently used open one is
    /// asked to close, and the caller waits for room.
    pub(super) fn make_room(&self, inner: &mut Inner) -> bool {
        inner.actors.retain(|_, a| !a.is_closed());
        let cap = self.config.max_open_tenants.max(1);
        if inner.actors.len() < cap {
            return true;
        }
        let closing = inner.actors.values().filter(|a| a.is_closing()).count();
        // Enough are closing already to make room.
        if inner.actors.len() - closing < cap {
            return false;
        }
        // Least recently used first, preferring one serving no request
        // (a base backup in progress does not keep a tenant open).
        let victim = inner
            .actors
            .values()
            .filter(|a| !a.is_closing())
            .min_by_key(|a| (a.requests_in_flight() > 0, a.last_used_ms()))
            .cloned();
        if let Some(victim) = victim
            && victim.begin_close()
        {
            tracing::debug!(tenant = %victim.tenant, "evicting least recently used tenant");
            self.metrics.evictions.fetch_add(1, Ordering::Relaxed);
        }
        false
    }

    /// Wait until an actor has finished closing, or refuse at `deadline`.
    pub(super) async fn wait_for_room(&self, deadline: Instant) -> Result<()> {
        let closing: Vec<Arc<ActorHandle>> = {
            let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            inner.actors.values().filter(|a| a.is_closing()).cloned().collect()
        };
        let any_closed = futures_util::future::select_all(closing.iter().map(|a| Box::pin(a.closed())));
        let waited = if closing.is_empty() {
            tokio::time::timeout_at(deadline.into(), tokio::time::sleep(Duration::from_millis(10))).await
        } else {
            tokio::time::timeout_at(deadline.into(), async { any_closed.await; }).await
        };
        waited.map_err(|_| {
            Error::Busy(format!(
                "{} tenants are open (the max-open-tenants cap) and none could be closed in time to open another",
                self.config.max_open_tenants
            ))
        })
    }

    pub(super) fn spawn_locked(&self, inner: &mut Inner, tenant: &TenantId) -> Result<Arc<ActorHandle>> {
        let feed = inner.feed(tenant, &self.commits);
        let actor = ActorHandle::spawn(
            tenant.clone(),
            self.root(tenant),
            self.runtime.clone(),
            feed,
            self.config.tenant_queue_depth,
            self.epoch,
            self.config.schema_backups,
            self.config.migrations.clone(),
        )?;
        self.metrics.wakes.fetch_add(1, Ordering::Relaxed);
        inner.actors.insert(tenant.clone(), actor.clone());
        Ok(actor)
    }

    /// The tenant's change feed (created on first use).
    pub fn feed(&self, tenant: &TenantId) -> Arc<Feed> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).feed(tenant, &self.commits)
    }

    /// The tenants whose transactions wrote changes, for log consumers.
    pub fn commits(&self) -> &Commits {
        &self.commits
    }

    /// Every tenant that exists on disk.
    pub fn tenant_ids(&self) -> Vec<TenantId> {
        let mut names: Vec<TenantId> = std::fs::read_dir(self.config.tenants_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                TenantId::parse(layout::cold_tenant(name).unwrap_or(name)).ok()
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The newest change LSN of a tenant closed cleanly and not opened
    /// since; None if it is open, or was not closed cleanly.
    pub fn closed_head(&self, tenant: &TenantId) -> Option<u64> {
        if self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).actors.contains_key(tenant) {
            return None;
        }
        let root = self.root(tenant);
        if !root.exists() {
            return read_marker(&layout::cold_marker(&root)).ok().map(|m| m.lsn);
        }
        layout::closed_head(&root)
    }

    /// Run `work` as `from` says: for housekeeping, on the open database
    /// without counting as a use, else (or when the tenant is not open) as
    /// a request.
    pub(super) async fn run_as<W: Work>(&self, tenant: &TenantId, from: Use, work: impl Fn() -> W) -> Result<W::Reply> {
        if from == Use::Housekeeping
            && let Some(result) = self.run_quietly(tenant, work()).await
        {
            return result;
        }
        self.run(tenant, work()).await
    }

    /// Run `work` on the tenant's open database without counting as a
    /// request (it neither wakes the tenant nor keeps it awake). None if it
    /// is not open, or began closing before the work ran.
    pub(super) async fn run_quietly<W: Work>(&self, tenant: &TenantId, work: W) -> Option<Result<W::Reply>> {
        let actor = {
            let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let actor = inner.actors.get(tenant).filter(|a| !a.is_closing())?.clone();
            actor.begin_quiet();
            actor
        };
        let deadline = Instant::now() + self.config.queue_timeout;
        let attempt = actor.call(Arc::new(work), deadline, Limits::HOUSEKEEPING).await;
        actor.end_quiet();
        match attempt {
            Attempt::Done(result) => Some(result),
            Attempt::NotRun => None,
        }
    }

    pub(super) fn is_open(&self, tenant: &TenantId) -> bool {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.actors.get(tenant).is_some_and(|a| !a.is_closing())
    }

    pub(super) fn closing_actor(&self, tenant: &TenantId) -> Option<Arc<ActorHandle>> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.actors.get(tenant).filter(|a| a.is_closing() && !a.is_closed()).cloned()
    }

    /// Bring the tenant to the deployment's migrations now (`migrate up`):
    /// it opens, and so migrates, if closed — hibernated or cold; one whose
    /// last attempt failed is closed and opened again, so it tries again.
    pub async fn migrate(&self, tenant: &TenantId) -> Result<MigrationStatus> {
        if self.config.migrations.is_none() {
            return Err(Error::bad_request("no_migrations", "the server has no migrations to apply (start it with --migrations DIR)"));
        }
        self.must_exist(tenant)?;
        // Named here, a tenant a restore held is held no more.
        let hold = layout::migrations_hold(&self.root(tenant));
        let held = hold.exists();
        if held {
            std::fs::remove_file(&hold).map_err(|e| Error::io("remove", &hold, e))?;
        }
        if held || self.feed(tenant).migrations().is_some_and(|s| s.failed.is_some()) {
            let actor = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).actors.get(tenant).cloned();
            if let Some(actor) = actor {
                actor.begin_close();
                actor.closed().await;
            }
        }
        self.run(tenant, crate::actor::work::Open).await?;
        self.feed(tenant)
            .migrations()
            .ok_or_else(|| Error::Engine(format!("tenant {tenant} opened without saying where it stands with its migrations")))
    }

    /// Undo the tenant's migrations newer than `to` by their down
    /// migrations (`migrate down`), opening it if closed. It is held there
    /// — not migrated up when it opens — until `migrate up` names it.
    pub async fn migrate_down(&self, tenant: &TenantId, to: i64) -> Result<Undone> {
        let Some(set) = self.config.migrations.clone() else {
            return Err(Error::bad_request("no_migrations", "the server has no migrations (start it with --migrations DIR)"));
        };
        if to < 0 {
            return Err(Error::bad_request("invalid_version", format!("cannot go down to version {to}: versions start at 0 (none)")));
        }
        self.must_exist(tenant)?;
        // Held first: should it close and open midway, it is not migrated up again.
        let root = self.root(tenant);
        let hold = layout::migrations_hold(&root);
        let was_held = hold.exists();
        std::fs::write(&hold, b"").map_err(|e| Error::io("write", &hold, e))?;
        let undone = match self.run(tenant, crate::actor::work::MigrateDown { set, to }).await {
            Ok(undone) => undone,
            Err(err) => {
                // Refused (or failed) before anything was undone: held no more
                // than before.
                if !was_held {
                    let _ = std::fs::remove_file(&hold);
                    let feed = self.feed(tenant);
                    if let Some(status) = feed.migrations().filter(|s| s.held) {
                        crate::actor::note_migrations(tenant, &root, &feed, &MigrationStatus { held: false, ..status });
                    }
                }
                return Err(err);
            }
        };
        if !undone.undone.is_empty() {
            tracing::info!(tenant = %tenant, undone = ?undone.undone, version = undone.status.version, "migrations undone");
        }
        if let Some(failed) = &undone.failed {
            tracing::error!(tenant = %tenant, migration = %failed.name, code = %failed.code, error = %failed.message,
                version = undone.status.version, "a down migration failed; the tenant stays at its version");
        }
        crate::actor::note_migrations(tenant, &root, &self.feed(tenant), &undone.status);
        Ok(undone)
    }

    /// Hibernate tenants idle for longer than the configured time and forget
    /// actors that finished closing. Called periodically by `run_reaper`.
    pub fn hibernate_idle(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.actors.retain(|_, actor| !actor.is_closed());
        for actor in inner.actors.values() {
            if actor.in_flight() == 0
                && actor.idle_for() >= self.config.hibernate_after
                && actor.begin_close()
            {
                tracing::debug!(tenant = %actor.tenant, "hibernating idle tenant");
                self.metrics.hibernations.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The background loop that hibernates idle tenants.
    pub async fn run_reaper(self: Arc<Self>) {
        let period = (self.config.hibernate_after / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(5));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).shutting_down {
                return;
            }
            self.hibernate_idle();
        }
    }

    /// Close every open tenant and refuse new work, in bounded time: work
    /// already queued runs first, statements still running after `grace`
    /// are cancelled, and a tenant that has not closed a statement timeout
    /// (and its cancel grace) later is left to WAL recovery at the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let actors: Vec<Arc<ActorHandle>> = {
            let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            inner.shutting_down = true;
            inner.actors.values().cloned().collect()
        };
        for actor in &actors {
            actor.begin_close();
        }
        let all_closed = futures_util::future::join_all(actors.iter().map(|a| a.closed()));
        tokio::pin!(all_closed);
        if tokio::time::timeout(grace, &mut all_closed).await.is_ok() {
            self.store_all_schema_bases().await;
            return;
        }
        for actor in &actors {
            actor.abort();
        }
        let bound = crate::engine::TERMINATE_GRACE + Duration::from_secs(10);
        if tokio::time::timeout(bound, all_closed).await.is_err() {
            let open: Vec<String> = actors.iter().filter(|a| !a.is_closed()).map(|a| a.tenant.to_string()).collect();
            tracing::warn!(tenants = ?open, "shutting down without these tenants closed: their committed work is recovered from the WAL at the next start");
        }
        self.store_all_schema_bases().await;
    }

    pub fn open_count(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.actors.values().filter(|a| !a.is_closing()).count()
    }

    /// The tenant's engine state, without waking it.
    pub fn engine_state(&self, tenant: &TenantId) -> (EngineState, bool) {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match inner.actors.get(tenant) {
            Some(actor) => (actor.engine_state(), true),
            None => {
                let root = self.root(tenant);
                (EngineState::Hibernated, root.exists() || layout::cold_marker(&root).exists())
            }
        }
    }
}

/// What a request waits for before its tenant can serve it.
pub(super) enum Wait {
    /// The tenant's previous actor to finish closing.
    Closing(Arc<ActorHandle>),
    /// A move between tiers to finish (and a cold tenant to come back).
    Settle,
    /// Room under the open-tenant cap.
    Room,
}

/// On whose behalf a tenant's data is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// A client: the tenant counts as used (it stays awake, is evicted and
    /// goes cold later).
    Request,
    /// The server's own work (the lake's shipper): an open tenant answers
    /// without counting as used, so housekeeping never changes which tenant
    /// hibernates, is evicted or goes cold; a closed one is opened as for
    /// a request when what it kept in memory at its close does not suffice.
    Housekeeping,
}
