//! The tenant registry: which tenants are open, waking a tenant on its next
//! request, hibernating idle ones, and evicting the least recently used when
//! the open-tenant cap is reached.
//!
//! Every state change happens under one mutex that is never held across an
//! await; the actors do the slow part (open, close) on their own threads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::actor::{ActorHandle, Attempt, CLOSED_HEAD_FILE, Output, Work};
use crate::config::OltpConfig;
use crate::engine::{ChangePage, EngineRuntime, LogStats};
use crate::feed::{Commits, Feed};
use crate::error::{Error, Result};
use crate::protocol::EngineState;
use crate::tenant_id::TenantId;

pub struct Tenants {
    config: Arc<OltpConfig>,
    runtime: Arc<EngineRuntime>,
    epoch: Instant,
    inner: Mutex<Inner>,
    commits: Arc<Commits>,
    reporters: Mutex<Vec<Arc<dyn Reporter>>>,
    pub metrics: Metrics,
}

/// A part of the server that consumes tenants' change logs (the lake
/// shipper) and adds its own fields to each tenant's status and its own
/// lines to `/metrics`.
pub trait Reporter: Send + Sync {
    /// Fields added to the tenant's status (in `health`).
    fn tenant_status(&self, tenant: &TenantId) -> serde_json::Map<String, serde_json::Value>;
    /// Prometheus text lines appended to `/metrics`.
    fn metrics(&self, out: &mut String);
}

#[derive(Default)]
struct Inner {
    actors: HashMap<TenantId, Arc<ActorHandle>>,
    /// Change feeds, kept across hibernation.
    feeds: HashMap<TenantId, Arc<Feed>>,
    /// Wall-clock time of each tenant's last request since the server started.
    last_access: HashMap<TenantId, SystemTime>,
    shutting_down: bool,
}

impl Inner {
    fn feed(&mut self, tenant: &TenantId, commits: &Arc<Commits>) -> Arc<Feed> {
        self.feeds
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Feed::new(tenant.clone(), commits.clone())))
            .clone()
    }
}

/// Counters exported on `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub wakes: AtomicU64,
    pub hibernations: AtomicU64,
    pub evictions: AtomicU64,
    pub requests: AtomicU64,
    pub request_errors: AtomicU64,
}

/// One tenant as `health` and `tidelake tenants` show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    pub tenant: String,
    pub engine: EngineState,
    pub exists: bool,
    pub disk_bytes: u64,
    /// Milliseconds since the Unix epoch of the last request (or of the last
    /// change on disk for tenants untouched since the server started).
    pub last_access_ms: Option<u64>,
    pub in_flight: usize,
    /// The change log as of the tenant's last commit since the server
    /// started (absent if it has not been opened since).
    pub change_log: Option<LogStats>,
    /// Fields from reporters (the lake's shipping lag).
    #[serde(flatten)]
    pub reported: serde_json::Map<String, serde_json::Value>,
}

/// Marks a request as running on an actor, so it is neither hibernated nor
/// preferred for eviction meanwhile.
struct Lease(Arc<ActorHandle>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

impl Tenants {
    pub fn new(config: OltpConfig) -> Result<Arc<Self>> {
        std::fs::create_dir_all(config.tenants_dir()).map_err(|e| {
            Error::Engine(format!("create {}: {e}", config.tenants_dir().display()))
        })?;
        let runtime = EngineRuntime::start(&config);
        Ok(Arc::new(Self {
            config: Arc::new(config),
            runtime,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
            commits: Arc::default(),
            reporters: Mutex::default(),
            metrics: Metrics::default(),
        }))
    }

    pub fn config(&self) -> &OltpConfig {
        &self.config
    }

    pub fn runtime(&self) -> &EngineRuntime {
        &self.runtime
    }

    fn root(&self, tenant: &TenantId) -> PathBuf {
        self.config.tenants_dir().join(tenant.as_str())
    }

    /// Run `work` on the tenant's database, waking or creating it as needed.
    pub async fn run(&self, tenant: &TenantId, work: Work) -> Result<Output> {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let work = Arc::new(work);
        let deadline = Instant::now() + self.config.queue_timeout;
        let result = loop {
            let lease = self.acquire(tenant).await?;
            match lease.0.call(work.clone(), deadline).await {
                Attempt::Done(result) => break result,
                Attempt::NotRun => continue,
            }
        };
        if result.is_err() {
            self.metrics.request_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn acquire(&self, tenant: &TenantId) -> Result<Lease> {
        loop {
            let closing = {
                let mut inner = self.inner.lock().expect("tenant registry poisoned");
                if inner.shutting_down {
                    return Err(Error::Unavailable("the server is shutting down".into()));
                }
                inner.last_access.insert(tenant.clone(), SystemTime::now());
                match inner.actors.get(tenant) {
                    Some(actor) if !actor.is_closing() => {
                        actor.begin_request();
                        return Ok(Lease(actor.clone()));
                    }
                    Some(actor) if actor.is_closed() => {
                        inner.actors.remove(tenant);
                        continue;
                    }
                    Some(actor) => actor.clone(),
                    None => {
                        let actor = self.spawn_locked(&mut inner, tenant)?;
                        actor.begin_request();
                        return Ok(Lease(actor));
                    }
                }
            };
            // Its previous actor is still closing the database: wait, then wake it anew.
            closing.closed().await;
        }
    }

    fn spawn_locked(&self, inner: &mut Inner, tenant: &TenantId) -> Result<Arc<ActorHandle>> {
        let open = inner.actors.values().filter(|a| !a.is_closing()).count();
        if open >= self.config.max_open_tenants.max(1) {
            // Least recently used first, preferring one with nothing running.
            let victim = inner
                .actors
                .values()
                .filter(|a| !a.is_closing())
                .min_by_key(|a| (a.in_flight() > 0, a.last_used_ms()))
                .cloned();
            if let Some(victim) = victim
                && victim.begin_close()
            {
                tracing::debug!(tenant = %victim.tenant, "evicting least recently used tenant");
                self.metrics.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        let feed = inner.feed(tenant, &self.commits);
        let actor = ActorHandle::spawn(
            tenant.clone(),
            self.root(tenant),
            self.runtime.clone(),
            feed,
            self.config.tenant_queue_depth,
            self.epoch,
        )?;
        self.metrics.wakes.fetch_add(1, Ordering::Relaxed);
        inner.actors.insert(tenant.clone(), actor.clone());
        Ok(actor)
    }

    /// The tenant's change feed (created on first use).
    pub fn feed(&self, tenant: &TenantId) -> Arc<Feed> {
        self.inner.lock().expect("tenant registry poisoned").feed(tenant, &self.commits)
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
            .filter_map(|e| TenantId::parse(e.file_name().to_str()?).ok())
            .collect();
        names.sort();
        names
    }

    /// The newest change LSN of a tenant closed cleanly and not opened
    /// since; None if it is open, or was not closed cleanly.
    pub fn closed_head(&self, tenant: &TenantId) -> Option<u64> {
        if self.inner.lock().expect("tenant registry poisoned").actors.contains_key(tenant) {
            return None;
        }
        std::fs::read_to_string(self.root(tenant).join(CLOSED_HEAD_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Every schema version recorded in the tenant's change log, oldest first.
    /// A closed tenant answers from what it kept when it closed, if anything.
    pub async fn schema_versions(&self, tenant: &TenantId) -> Result<Vec<serde_json::Value>> {
        if let Some(closing) = self.closing_actor(tenant) {
            closing.closed().await;
        }
        if !self.is_open(tenant)
            && let Some(versions) = self.feed(tenant).closed_schema()
        {
            return Ok(versions);
        }
        let schema = self.run(tenant, Work::Schema).await?.into_schema()?;
        Ok(schema["versions"].as_array().cloned().unwrap_or_default())
    }

    pub fn add_reporter(&self, reporter: Arc<dyn Reporter>) {
        self.reporters.lock().expect("reporters poisoned").push(reporter);
    }

    pub fn report_metrics(&self, out: &mut String) {
        for reporter in self.reporters.lock().expect("reporters poisoned").iter() {
            reporter.metrics(out);
        }
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
        if let Some(closing) = self.closing_actor(tenant) {
            closing.closed().await;
        }
        let feed = self.feed(tenant);
        if !self.is_open(tenant)
            && let Some((changes, head)) = feed.closed_changes_after(since, limit as usize)
        {
            let next_lsn = changes.last().and_then(|c| c["lsn"].as_u64()).unwrap_or(since);
            let tail_lsn = feed.stats().tail_lsn;
            return Ok(ChangePage { changes, next_lsn, head_lsn: head, tail_lsn });
        }
        let page = self.run(tenant, Work::Changes { since, limit }).await?.into_changes()?;
        if page.tail_lsn > since + 1 {
            return Err(Error::Gone(format!(
                "changes after LSN {since} have been trimmed from the change log; the oldest kept is {}",
                page.tail_lsn
            )));
        }
        Ok(page)
    }

    /// The change log's extent and size, read from the database.
    pub async fn log_stats(&self, tenant: &TenantId) -> Result<LogStats> {
        self.run(tenant, Work::Stats).await?.into_stats()
    }

    /// A consumer has durably taken every change up to `lsn`: trim the log.
    pub async fn acknowledge(&self, tenant: &TenantId, consumer: &str, lsn: u64) -> Result<LogStats> {
        let work = Work::Acknowledge {
            consumer: consumer.to_owned(),
            lsn,
            retention: self.config.change_retention,
        };
        self.run(tenant, work).await?.into_stats()
    }

    /// Acknowledge for a consumer that must not wake the tenant: applied now
    /// if the database is open, else when it next opens (trimming can wait).
    pub async fn acknowledge_quietly(&self, tenant: &TenantId, consumer: &str, lsn: u64) -> Result<()> {
        if self.is_open(tenant) {
            return self.acknowledge(tenant, consumer, lsn).await.map(|_| ());
        }
        self.feed(tenant).defer_ack(consumer, lsn, self.config.change_retention);
        Ok(())
    }

    fn is_open(&self, tenant: &TenantId) -> bool {
        let inner = self.inner.lock().expect("tenant registry poisoned");
        inner.actors.get(tenant).is_some_and(|a| !a.is_closing())
    }

    fn closing_actor(&self, tenant: &TenantId) -> Option<Arc<ActorHandle>> {
        let inner = self.inner.lock().expect("tenant registry poisoned");
        inner.actors.get(tenant).filter(|a| a.is_closing() && !a.is_closed()).cloned()
    }

    /// Hibernate tenants idle for longer than the configured time and forget
    /// actors that finished closing. Called periodically by `run_reaper`.
    pub fn hibernate_idle(&self) {
        let mut inner = self.inner.lock().expect("tenant registry poisoned");
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
            if self.inner.lock().expect("tenant registry poisoned").shutting_down {
                return;
            }
            self.hibernate_idle();
        }
    }

    /// Close every open tenant (finishing queued work first) and refuse new work.
    pub async fn shutdown(&self) {
        let actors: Vec<Arc<ActorHandle>> = {
            let mut inner = self.inner.lock().expect("tenant registry poisoned");
            inner.shutting_down = true;
            inner.actors.values().cloned().collect()
        };
        for actor in &actors {
            actor.begin_close();
        }
        for actor in &actors {
            actor.closed().await;
        }
    }

    /// The tenant's engine state, without waking it.
    pub fn engine_state(&self, tenant: &TenantId) -> (EngineState, bool) {
        let inner = self.inner.lock().expect("tenant registry poisoned");
        match inner.actors.get(tenant) {
            Some(actor) => (actor.engine_state(), true),
            None => (EngineState::Hibernated, self.root(tenant).exists()),
        }
    }

    pub fn open_count(&self) -> usize {
        let inner = self.inner.lock().expect("tenant registry poisoned");
        inner.actors.values().filter(|a| !a.is_closing()).count()
    }

    /// Status of one tenant, or of every tenant on disk or open.
    pub fn status(&self, only: Option<&TenantId>) -> Vec<TenantStatus> {
        let mut names: Vec<TenantId> = match only {
            Some(tenant) => vec![tenant.clone()],
            None => {
                let mut names = self.tenant_ids();
                let inner = self.inner.lock().expect("tenant registry poisoned");
                names.extend(inner.actors.keys().cloned());
                names
            }
        };
        names.sort();
        names.dedup();
        let reporters = self.reporters.lock().expect("reporters poisoned").clone();
        let inner = self.inner.lock().expect("tenant registry poisoned");
        names
            .into_iter()
            .map(|tenant| {
                let root = self.root(&tenant);
                let actor = inner.actors.get(&tenant);
                let last_access = inner
                    .last_access
                    .get(&tenant)
                    .copied()
                    .or_else(|| root.metadata().and_then(|m| m.modified()).ok());
                TenantStatus {
                    engine: actor.map_or(EngineState::Hibernated, |a| a.engine_state()),
                    exists: root.exists(),
                    disk_bytes: dir_size(&root),
                    last_access_ms: last_access
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64),
                    in_flight: actor.map_or(0, |a| a.in_flight()),
                    change_log: inner
                        .feeds
                        .get(&tenant)
                        .map(|f| f.stats())
                        .filter(|_| self.config.engine.capture),
                    reported: reporters.iter().flat_map(|r| r.tenant_status(&tenant)).collect(),
                    tenant: tenant.to_string(),
                }
            })
            .collect()
    }
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_size(&entry.path()),
            Ok(_) => entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}
