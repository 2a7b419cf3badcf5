//! The shipper: moves each tenant's change log into its Iceberg namespace,
//! exactly once.
//!
//! Tenants are shipped when they commit (the source announces them), at most
//! once per flush interval, so many small transactions become one Iceberg
//! commit per table per interval. After a restart, every tenant whose log
//! may hold unshipped changes is shipped once: those not closed cleanly, and
//! those whose last known head is past what the lake holds.
//!
//! Exactly once: a changelog table holds every change of its source table up
//! to its `tidelake.lsn-to` (snapshot summary); the namespace's
//! `tidelake.shipped-lsn` is a bound under which every table is complete.
//! Shipping reads from that bound and skips, per table, what the table
//! already has. A crash anywhere (mid-write, between two tables' commits,
//! before the acknowledgement) therefore neither loses nor repeats a change;
//! files written but never committed are left as orphans.
//!
//! A failure — an error or a panic of the task shipping a tenant — is that
//! tenant's `error` in `health` and counted on `/metrics`; the tenant is
//! retried with backoff until it ships again. Nothing stops shipping for good.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use catalog::Warehouse;
use iceberg::{Catalog, ErrorKind, NamespaceIdent};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::ShipperConfig;
use crate::error::{LakeError, Result};
use crate::metrics;
use crate::names::{self, SourceTable};
use prometheus_client::encoding::DescriptorEncoder;
use crate::source::{ChangeSource, SourceError};
use crate::table::{ChangelogTable, SchemaVersion};
use model::Change;

pub use crate::spec::PROP_SHIPPED_LSN;
use crate::spec::{PROP_ORIGIN, SERVER_ORIGIN};

/// Longest wait before retrying a tenant whose shipping failed.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

pub struct Shipper<S: ChangeSource> {
    source: Arc<S>,
    warehouse: Arc<Warehouse>,
    config: ShipperConfig,
    /// Per-tenant lake state; one task ships a tenant at a time.
    lakes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<TenantLake>>>>,
    lag: Mutex<HashMap<String, Lag>>,
    /// Set once stopping: every batch ships, however small.
    stopping: AtomicBool,
    pub stats: ShipperStats,
}

/// Counters exported on `/metrics`.
#[derive(Default)]
pub struct ShipperStats {
    pub changes: AtomicU64,
    pub commits: AtomicU64,
    pub files: AtomicU64,
    pub errors: AtomicU64,
    /// Shipping tasks that panicked (also counted in `errors`).
    pub panics: AtomicU64,
    pub lost: AtomicU64,
    pub conflicts: AtomicU64,
    /// Batches held back to make a larger commit.
    pub deferred: AtomicU64,
}

/// What shipping one batch of a tenant did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shipped {
    /// Everything is in the lake.
    Done,
    /// A batch is in the lake, more changes are waiting.
    More,
    /// Too few changes for a commit: they wait until `Lag::defer_until`.
    Deferred,
}

struct TenantLake {
    namespace: NamespaceIdent,
    shipped: u64,
    versions: HashMap<i64, SchemaVersion>,
    tables: HashMap<String, ChangelogTable>,
    /// The source's schema epoch the tables were last brought in step with
    /// (None: not since the shipper started).
    schema_epoch: Option<u64>,
}

/// The schema versions of the source tables shipped into lake table `name`
/// numbered after `after` and before `before`, in order.
fn versions_of(versions: &HashMap<i64, SchemaVersion>, name: &str, after: i64, before: i64) -> Vec<SchemaVersion> {
    let mut found: Vec<SchemaVersion> = versions
        .values()
        .filter(|v| v.version > after && v.version < before)
        .filter(|v| SourceTable::new(&v.schema, &v.table).lake_name().is_ok_and(|n| n == name))
        .cloned()
        .collect();
    found.sort_by_key(|v| v.version);
    found
}

/// How far behind the lake is for one tenant.
#[derive(Debug, Clone, Default)]
pub struct Lag {
    pub shipped_lsn: u64,
    /// The newest LSN seen in the tenant's log.
    pub head_lsn: u64,
    /// Since when changes have been waiting (None: caught up).
    pub pending_since: Option<Instant>,
    pub last_shipped_at: Option<SystemTime>,
    pub error: Option<String>,
    /// Changes trimmed from the log before they could be shipped.
    pub lost: u64,
    /// When the next attempt after a failure is due.
    pub retry_at: Option<Instant>,
    /// When a batch held back to make a larger commit ships at the latest.
    pub defer_until: Option<Instant>,
    /// Failed attempts since the last success.
    pub failures: u32,
}

impl Lag {
    pub fn seconds(&self) -> f64 {
        self.pending_since.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}

impl<S: ChangeSource> Shipper<S> {
    pub fn new(source: Arc<S>, warehouse: Arc<Warehouse>, config: ShipperConfig) -> Arc<Self> {
        Arc::new(Self {
            source,
            warehouse,
            config,
            lakes: Mutex::default(),
            lag: Mutex::default(),
            stopping: AtomicBool::new(false),
            stats: ShipperStats::default(),
        })
    }

    /// Ship until `stop` turns true, then ship what is pending once more and return.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Tenants with new commits (or a failure to retry), shipped once per interval.
        let mut due = self.tenants_to_check().await;
        // Tenants with a backlog beyond one batch, shipped again at once.
        let mut backlog = BTreeSet::new();
        let mut last_round: Option<Instant> = None;
        loop {
            for tenant in self.source.take_committed() {
                self.mark_pending(&tenant);
                due.insert(tenant);
            }
            let now = Instant::now();
            let next_round = last_round.map_or(now, |t| t + self.config.flush_interval);
            let ready: BTreeSet<String> = due.iter().filter(|t| self.retry_due(t, now)).cloned().collect();
            let mut round = std::mem::take(&mut backlog);
            if now >= next_round && !ready.is_empty() {
                last_round = Some(now);
                for tenant in &ready {
                    due.remove(tenant);
                    round.insert(tenant.clone());
                }
            }
            if round.is_empty() {
                let wake = if ready.is_empty() {
                    self.next_retry(&due).unwrap_or(now + Duration::from_secs(3600))
                } else {
                    next_round
                };
                tokio::select! {
                    () = self.source.wait_committed(), if ready.is_empty() => {}
                    () = tokio::time::sleep_until(wake.into()) => {}
                    _ = stop.changed() => break,
                }
                continue;
            }
            let (more, later) = self.ship_round(round).await;
            backlog = more;
            due.extend(later);
            if *stop.borrow() {
                break;
            }
        }
        // Stopping: ship what committed before the stop, small or not,
        // without retrying failures.
        self.stopping.store(true, Ordering::Relaxed);
        due.extend(backlog);
        due.extend(self.source.take_committed());
        if !due.is_empty() {
            tracing::info!(tenants = due.len(), "lake: shipping pending changes before stopping");
            let mut round = due;
            while !round.is_empty() {
                round = self.ship_round(round).await.0;
            }
        }
    }

    /// Ship every tenant in `round`, `concurrency` at a time. Returns the
    /// tenants with more changes waiting, and those to try again later
    /// (failed, or whose changes wait to make a larger commit).
    async fn ship_round(self: &Arc<Self>, round: BTreeSet<String>) -> (BTreeSet<String>, BTreeSet<String>) {
        let (mut more, mut failed) = (BTreeSet::new(), BTreeSet::new());
        let mut tasks = JoinSet::new();
        // Which tenant each task ships: a task that panicked names no tenant itself.
        let mut running = HashMap::new();
        let mut queue = round.into_iter();
        loop {
            while tasks.len() < self.config.concurrency.max(1) {
                let Some(tenant) = queue.next() else { break };
                let shipper = self.clone();
                let name = tenant.clone();
                let task = tasks.spawn(async move { shipper.ship_tenant(&name).await });
                running.insert(task.id(), tenant);
            }
            let Some(joined) = tasks.join_next_with_id().await else { break };
            let (id, outcome) = match joined {
                Ok((id, outcome)) => (id, outcome),
                Err(err) => {
                    let id = err.id();
                    let message = if err.is_panic() { panic_message(err.into_panic()) } else { err.to_string() };
                    self.stats.panics.fetch_add(1, Ordering::Relaxed);
                    (id, Err(LakeError::Panicked(message)))
                }
            };
            let Some(tenant) = running.remove(&id) else { continue };
            match outcome {
                Ok(shipped) => {
                    self.record_success(&tenant);
                    match shipped {
                        Shipped::Done => {}
                        Shipped::More => {
                            more.insert(tenant);
                        }
                        Shipped::Deferred => {
                            failed.insert(tenant);
                        }
                    }
                }
                Err(err) => {
                    self.record_failure(&tenant, &err);
                    failed.insert(tenant);
                }
            }
        }
        (more, failed)
    }

    /// Ship one batch of one tenant's changes.
    async fn ship_tenant(&self, tenant: &str) -> Result<Shipped> {
        let lake = self.tenant_lake(tenant).await?;
        let mut lake = lake.lock().await;
        let started = Instant::now();
        let page = match self.source.read(tenant, lake.shipped, self.config.batch_size).await {
            Err(SourceError::Trimmed { tail }) => {
                let lost = tail.saturating_sub(lake.shipped.saturating_add(1));
                tracing::error!(
                    tenant, from = lake.shipped.saturating_add(1), to = tail.saturating_sub(1),
                    "lake: changes were trimmed from the change log before they were shipped"
                );
                self.stats.lost.fetch_add(lost, Ordering::Relaxed);
                self.update_lag(tenant, |l| l.lost = l.lost.saturating_add(lost));
                lake.shipped = lake.shipped.max(tail.saturating_sub(1));
                self.source.read(tenant, lake.shipped, self.config.batch_size).await?
            }
            other => other?,
        };
        let shipped = lake.shipped;
        self.update_lag(tenant, |l| {
            l.head_lsn = l.head_lsn.max(page.head_lsn);
            if page.changes.is_empty() && shipped >= page.head_lsn {
                l.pending_since = None;
            }
        });
        let (Some(first), Some(last)) = (page.changes.first(), page.changes.last()) else {
            if lake.schema_epoch != Some(page.schema_epoch) && shipped >= page.head_lsn {
                self.ship_schemas(tenant, &mut *lake, shipped).await?;
                lake.schema_epoch = Some(page.schema_epoch);
            }
            return Ok(Shipped::Done);
        };
        let (first, last) = (first.lsn, last.lsn);
        // Adaptive commits: a small batch (all there is) waits for more
        // changes while its oldest has waited less than the most lag allowed.
        let small = (page.changes.len() as u64) < self.config.min_commit_changes && last >= page.head_lsn;
        if small && !self.stopping.load(Ordering::Relaxed) {
            let waited_since = self.lag(tenant).and_then(|l| l.pending_since).unwrap_or_else(Instant::now);
            let due = waited_since + self.config.max_lag;
            if Instant::now() < due {
                self.update_lag(tenant, |l| {
                    l.pending_since.get_or_insert(waited_since);
                    l.defer_until = Some(due);
                });
                self.stats.deferred.fetch_add(1, Ordering::Relaxed);
                return Ok(Shipped::Deferred);
            }
        }

        // Changes per changelog table, in order; within a table, runs of one
        // schema version.
        let mut tables: Vec<(SourceTable, String, Vec<&Change>)> = Vec::new();
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        for change in &page.changes {
            let i = match index.get(&(change.schema.as_str(), change.table.as_str())) {
                Some(i) => *i,
                None => {
                    let source = SourceTable::new(&change.schema, &change.table);
                    let name = source.lake_name()?;
                    tables.push((source, name, Vec::new()));
                    index.insert((&change.schema, &change.table), tables.len() - 1);
                    tables.len() - 1
                }
            };
            tables[i].2.push(change);
        }
        let missing = tables.iter().flat_map(|(_, _, c)| c).any(|c| !lake.versions.contains_key(&c.schema_version));
        let read = started.elapsed();
        if missing {
            lake.versions = self.load_versions(tenant).await?;
        }

        let versions = started.elapsed() - read;
        let lake = &mut *lake;
        for (source, name, changes) in tables {
            let version_of = |c: &Change| -> Result<&SchemaVersion> {
                lake.versions.get(&c.schema_version).ok_or_else(|| {
                    LakeError::Mapping(format!("change {} has unknown schema version {}", c.lsn, c.schema_version))
                })
            };
            let table = match lake.tables.entry(name.clone()) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    let Some(first) = changes.first() else { continue };
                    let table = ChangelogTable::open(
                        &self.warehouse,
                        &lake.namespace,
                        tenant,
                        &source,
                        version_of(first)?,
                        self.config.partitioning,
                    )
                    .await?;
                    entry.insert(table)
                }
            };
            let already = table.lsn_to();
            let fresh: Vec<&Change> = changes.into_iter().filter(|c| c.lsn > already).collect();
            let mut from = first.max(already.saturating_add(1));
            let runs: Vec<&[&Change]> = fresh.chunk_by(|a, b| a.schema_version == b.schema_version).collect();
            for (i, run) in runs.iter().enumerate() {
                let (Some(run_first), Some(run_last)) = (run.first(), run.last()) else { continue };
                // The last run covers the whole page: no change of this table is missing up to `last`.
                let to = if i + 1 == runs.len() { last } else { run_last.lsn };
                let version = version_of(run_first)?;
                // Versions no change was written under reach the lake too, in order.
                for between in versions_of(&lake.versions, &name, table.version(), version.version) {
                    table.evolve(&self.warehouse, &between).await?;
                }
                let files = table
                    .append(&self.warehouse, tenant, version, run, from, to, &self.stats.conflicts)
                    .await?;
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats.files.fetch_add(files as u64, Ordering::Relaxed);
                self.stats.changes.fetch_add(run.len() as u64, Ordering::Relaxed);
                from = to + 1;
            }
        }

        let written = started.elapsed() - read - versions;
        let caught_up = last >= page.head_lsn;
        if caught_up && lake.schema_epoch != Some(page.schema_epoch) {
            self.ship_schemas(tenant, lake, last).await?;
            lake.schema_epoch = Some(page.schema_epoch);
        }
        lake.shipped = last;
        let props = HashMap::from([(PROP_SHIPPED_LSN.to_owned(), last.to_string())]);
        self.warehouse.catalog().update_namespace(&lake.namespace, props).await?;
        if let Err(err) = self.source.acknowledge(tenant, last).await {
            tracing::warn!(tenant, error = %err, "lake: could not acknowledge shipped changes");
        }
        tracing::debug!(
            tenant,
            changes = page.changes.len(),
            read_ms = read.as_millis() as u64,
            schema_ms = versions.as_millis() as u64,
            write_ms = written.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "lake: shipped a batch"
        );
        self.update_lag(tenant, |l| {
            l.shipped_lsn = last;
            l.last_shipped_at = Some(SystemTime::now());
            l.defer_until = None;
            if caught_up {
                l.pending_since = None;
            }
        });
        Ok(if caught_up { Shipped::Done } else { Shipped::More })
    }

    /// Bring every changelog table to the schema its source table has after
    /// LSN `through` (the tenant's schema history read afresh): a schema
    /// change reaches the lake even when no change is written after it; a
    /// table created and not written to yet gets its (empty) changelog
    /// table. Versions are applied in order, one commit each.
    async fn ship_schemas(&self, tenant: &str, lake: &mut TenantLake, through: u64) -> Result<()> {
        lake.versions = self.load_versions(tenant).await?;
        let mut ordered: Vec<&SchemaVersion> = lake.versions.values().filter(|v| v.lsn <= through.saturating_add(1)).collect();
        ordered.sort_by_key(|v| v.version);
        // The versions of each changelog table, in order.
        let mut tables: Vec<(String, SourceTable, Vec<&SchemaVersion>)> = Vec::new();
        for v in ordered {
            let source = SourceTable::new(&v.schema, &v.table);
            let name = source.lake_name()?;
            match tables.iter_mut().find(|(n, _, _)| *n == name) {
                Some((_, _, versions)) => versions.push(v),
                None => tables.push((name, source, vec![v])),
            }
        }
        for (name, source, versions) in tables {
            let table = match lake.tables.entry(name) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    // A table dropped before the lake ever saw it: its drop
                    // change creates it, with its rows before.
                    let Some(newest) = versions.last() else { continue };
                    if newest.dropped {
                        continue;
                    }
                    // Created at the first version of its newest relation.
                    let Some(first) = versions.iter().find(|v| v.table_oid == newest.table_oid) else { continue };
                    entry.insert(
                        ChangelogTable::open(&self.warehouse, &lake.namespace, tenant, &source, first, self.config.partitioning)
                            .await?,
                    )
                }
            };
            for version in versions {
                if version.version > table.version() {
                    table.evolve(&self.warehouse, version).await?;
                }
            }
        }
        Ok(())
    }

    async fn load_versions(&self, tenant: &str) -> Result<HashMap<i64, SchemaVersion>> {
        Ok(self.source.schema_versions(tenant).await?.into_iter().map(|v| (v.version, v)).collect())
    }

    /// The tenant's lake state, loading (or creating) its namespace on first use.
    async fn tenant_lake(&self, tenant: &str) -> Result<Arc<tokio::sync::Mutex<TenantLake>>> {
        if let Some(lake) = lock(&self.lakes).get(tenant) {
            return Ok(lake.clone());
        }
        let namespace = names::namespace(tenant)?;
        let catalog = self.warehouse.catalog();
        let shipped = match catalog.get_namespace(&namespace).await {
            Ok(ns) => {
                let origin = ns.properties().get(PROP_ORIGIN).map_or(SERVER_ORIGIN, String::as_str);
                if origin != self.config.origin {
                    return Err(LakeError::Origin(format!(
                        "the lake's history of tenant {tenant:?} is that of the tenant of {origin}, not of {}: \
                         two tenants of one name cannot share a history (rename one)",
                        self.config.origin
                    )));
                }
                ns.properties().get(PROP_SHIPPED_LSN).and_then(|v| v.parse().ok()).unwrap_or(0)
            }
            Err(e) if e.kind() == ErrorKind::NamespaceNotFound => {
                let props = HashMap::from([
                    ("tidelake.tenant".to_owned(), tenant.to_owned()),
                    (PROP_ORIGIN.to_owned(), self.config.origin.clone()),
                ]);
                match self.warehouse.create_namespace(&namespace, props).await {
                    Ok(_) | Err(catalog::CatalogError::AlreadyExists(_)) => 0,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let lake = Arc::new(tokio::sync::Mutex::new(TenantLake {
            schema_epoch: None,
            namespace,
            shipped,
            versions: HashMap::new(),
            tables: HashMap::new(),
        }));
        self.update_lag(tenant, |l| {
            l.shipped_lsn = shipped;
            l.head_lsn = l.head_lsn.max(shipped);
        });
        Ok(lock(&self.lakes).entry(tenant.to_owned()).or_insert(lake).clone())
    }

    /// Tenants to ship once after a start: those whose log may be ahead of the lake.
    async fn tenants_to_check(&self) -> BTreeSet<String> {
        let mut due = BTreeSet::new();
        for (tenant, closed_head) in self.source.tenants() {
            let shipped = match names::namespace(&tenant) {
                Ok(namespace) => match self.warehouse.catalog().get_namespace(&namespace).await {
                    Ok(ns) => ns.properties().get(PROP_SHIPPED_LSN).and_then(|v| v.parse().ok()).unwrap_or(0),
                    Err(_) => 0,
                },
                Err(_) => 0,
            };
            self.update_lag(&tenant, |l| {
                l.shipped_lsn = shipped;
                l.head_lsn = closed_head.unwrap_or(shipped).max(shipped);
            });
            if closed_head.is_none_or(|head| head > shipped) {
                self.mark_pending(&tenant);
                due.insert(tenant);
            }
        }
        if !due.is_empty() {
            tracing::info!(tenants = due.len(), "lake: checking tenants whose change log may be ahead of the lake");
        }
        due
    }

    fn update_lag(&self, tenant: &str, f: impl FnOnce(&mut Lag)) {
        f(lock(&self.lag).entry(tenant.to_owned()).or_default());
    }

    fn mark_pending(&self, tenant: &str) {
        self.update_lag(tenant, |l| {
            l.pending_since.get_or_insert_with(Instant::now);
        });
    }

    fn record_success(&self, tenant: &str) {
        self.update_lag(tenant, |l| {
            l.error = None;
            l.failures = 0;
            l.retry_at = None;
        });
    }

    /// When a tenant may be shipped again: after a failure's backoff, or
    /// when its small batch has waited long enough.
    fn not_before(l: &Lag) -> Option<Instant> {
        match (l.retry_at, l.defer_until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    fn record_failure(&self, tenant: &str, err: &LakeError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.update_lag(tenant, |l| {
            l.failures = l.failures.saturating_add(1);
            let delay = (self.config.flush_interval * 2u32.saturating_pow(l.failures.min(16))).min(MAX_RETRY_DELAY);
            l.retry_at = Some(Instant::now() + delay);
            if l.error.as_deref() != Some(&err.to_string()) {
                tracing::error!(tenant, error = %err, retry_in_ms = delay.as_millis() as u64, "lake: shipping failed");
            }
            l.error = Some(err.to_string());
        });
        // Reload tables and schema versions from scratch on the next attempt.
        lock(&self.lakes).remove(tenant);
    }

    fn retry_due(&self, tenant: &str, now: Instant) -> bool {
        let lag = lock(&self.lag);
        lag.get(tenant).and_then(Self::not_before).is_none_or(|at| at <= now)
    }

    fn next_retry(&self, due: &BTreeSet<String>) -> Option<Instant> {
        let lag = lock(&self.lag);
        due.iter().filter_map(|t| lag.get(t).and_then(Self::not_before)).min()
    }

    /// The lake's view of one tenant (None if the shipper has not seen it).
    pub fn lag(&self, tenant: &str) -> Option<Lag> {
        lock(&self.lag).get(tenant).cloned()
    }

    /// The `lake` object of a tenant's status in `health`.
    pub fn tenant_status(&self, tenant: &str) -> Option<Value> {
        let lag = self.lag(tenant)?;
        Some(json!({
            "shippedLsn": lag.shipped_lsn,
            "headLsn": lag.head_lsn,
            "lagLsn": lag.head_lsn.saturating_sub(lag.shipped_lsn),
            "lagSeconds": (lag.seconds() * 1000.0).round() / 1000.0,
            "lastShippedAt": lag.last_shipped_at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64),
            "lostChanges": lag.lost,
            "error": lag.error,
            // Failed attempts since the last success, and when the next is due.
            "failures": lag.failures,
            "retryInSeconds": lag.retry_at.map(|at| {
                (at.saturating_duration_since(Instant::now()).as_secs_f64() * 1000.0).round() / 1000.0
            }),
        }))
    }

    /// Prometheus text lines for the shipper.
    /// The shipper's counters and each tenant's lag, for `/metrics`.
    pub(crate) fn encode_metrics(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &self.stats;
        let mut counter = |name: &str, help: &str, value: &AtomicU64| metrics::counter(encoder, name, help, value.load(Ordering::Relaxed));
        counter("tidelake_lake_changes_shipped", "Changes committed to Iceberg tables.", &s.changes)?;
        counter("tidelake_lake_commits", "Iceberg data commits.", &s.commits)?;
        counter("tidelake_lake_files", "Parquet data files committed.", &s.files)?;
        counter("tidelake_lake_commit_conflicts", "Iceberg commits retried after another writer committed first.", &s.conflicts)?;
        counter("tidelake_lake_errors", "Failed shipping attempts (retried).", &s.errors)?;
        counter("tidelake_lake_panics", "Shipping attempts that panicked (retried; a bug).", &s.panics)?;
        counter("tidelake_lake_deferred_batches", "Small batches held back to make a larger commit (lake.max_lag).", &s.deferred)?;
        counter("tidelake_lake_lost_changes", "Changes trimmed from a change log before they were shipped.", &s.lost)?;
        let lag = lock(&self.lag);
        let mut tenants: Vec<(&String, &Lag)> = lag.iter().collect();
        tenants.sort_by_key(|(t, _)| *t);
        let failing = tenants.iter().filter(|(_, l)| l.error.is_some()).count();
        fn labels(tenant: &str) -> [(&'static str, &str); 1] {
            [("tenant", tenant)]
        }
        let per_tenant = |value: fn(&Lag) -> i64| tenants.iter().map(move |(t, l)| (labels(t), value(l)));
        metrics::gauge(
            encoder,
            "tidelake_lake_failing_tenants",
            "Tenants whose latest shipping attempt failed (retried with backoff).",
            failing as i64,
        )?;
        metrics::gauges(
            encoder,
            "tidelake_lake_failures",
            "Failed shipping attempts of a tenant since its last success.",
            per_tenant(|l| l.failures as i64),
        )?;
        metrics::gauges(
            encoder,
            "tidelake_lake_lag_lsn",
            "Changes in a tenant's log not yet in the lake.",
            per_tenant(|l| l.head_lsn.saturating_sub(l.shipped_lsn) as i64),
        )?;
        metrics::gauges(
            encoder,
            "tidelake_lake_lag_seconds",
            "How long a tenant's oldest unshipped change has waited.",
            tenants.iter().map(|(t, l)| (labels(t), l.seconds())),
        )
    }
}

/// The shipper's locks hold plain bookkeeping that stays consistent even if
/// a holder panicked: a poisoned lock is used, not propagated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(message) => (*message).to_owned(),
            Err(_) => "a panic without a message".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use serde_json::json;

    use super::*;

    /// A change log of one change, whose reads first panic, then return the
    /// change with a `bytea` that is not hex, then the change repaired.
    struct FlakySource {
        reads: AtomicU32,
    }

    fn change(data: &str) -> Change {
        serde_json::from_value(json!({"lsn": 1, "xid": 7, "commitTs": "2026-01-01 00:00:00+00", "op": "insert",
            "schema": "public", "table": "files", "schemaVersion": 1, "new": {"id": 1, "data": data}, "old": null}))
        .unwrap()
    }

    impl ChangeSource for FlakySource {
        fn take_committed(&self) -> Vec<String> {
            Vec::new()
        }

        async fn wait_committed(&self) {
            std::future::pending::<()>().await
        }

        fn tenants(&self) -> Vec<(String, Option<u64>)> {
            Vec::new()
        }

        async fn read(&self, _: &str, since: u64, _: u64) -> std::result::Result<crate::ChangePage, SourceError> {
            let changes = match self.reads.fetch_add(1, Ordering::Relaxed) {
                0 => panic!("boom"),
                1 => vec![change("\\xé1")],
                _ => vec![change("\\xe1")],
            };
            let changes = if since >= 1 { Vec::new() } else { changes };
            Ok(crate::ChangePage { changes, head_lsn: 1, schema_epoch: 0 })
        }

        async fn schema_versions(&self, _: &str) -> std::result::Result<Vec<SchemaVersion>, SourceError> {
            Ok(vec![serde_json::from_value(json!({"version": 1, "tableOid": 100, "schema": "public", "table": "files", "lsn": 1,
                "commitTs": "2026-01-01 00:00:00+00", "primaryKey": ["id"], "columns": [
                    {"name": "id", "type": "integer", "typeOid": 23, "attnum": 1},
                    {"name": "data", "type": "bytea", "typeOid": 17, "attnum": 2}]}))
            .unwrap()])
        }

        async fn acknowledge(&self, _: &str, _: u64) -> std::result::Result<(), SourceError> {
            Ok(())
        }
    }

    /// A panic and a malformed row are each an error in the tenant's status
    /// and on /metrics, with a retry due; once the cause is gone the tenant ships.
    #[tokio::test]
    async fn a_failing_tenant_says_why_and_ships_once_the_cause_is_gone() {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = std::env::temp_dir().join(format!("tidelake-shipper-{}-{nanos}", std::process::id()));
        let warehouse = Warehouse::open(catalog::CatalogConfig::in_data_dir(&dir)).await.unwrap();
        let source = Arc::new(FlakySource { reads: AtomicU32::new(0) });
        // Every batch commits at once (no adaptive wait).
        let config = ShipperConfig { max_lag: Duration::ZERO, ..ShipperConfig::default() };
        let shipper = Shipper::new(source, warehouse.clone(), config);
        let round = || BTreeSet::from(["acme".to_owned()]);
        // /metrics as a scrape sees it: the shipper's collector on a registry.
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(crate::metrics::ShipperMetrics(shipper.clone())));
        let metrics = || {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
            out
        };

        let (_, failed) = shipper.ship_round(round()).await;
        assert!(failed.contains("acme"));
        let status = shipper.tenant_status("acme").unwrap();
        assert_eq!(status["error"], "shipping panicked: boom", "{status}");
        assert_eq!(status["failures"], 1);
        assert!(status["retryInSeconds"].as_f64().is_some_and(|s| s > 0.0), "{status}");
        assert!(metrics().contains("tidelake_lake_panics_total 1"), "{}", metrics());
        assert!(metrics().contains("tidelake_lake_failing_tenants 1"), "{}", metrics());
        assert!(metrics().contains("tidelake_lake_failures{tenant=\"acme\"} 1"), "{}", metrics());

        let (_, failed) = shipper.ship_round(round()).await;
        assert!(failed.contains("acme"));
        let status = shipper.tenant_status("acme").unwrap();
        let error = status["error"].as_str().unwrap();
        assert!(error.contains("column data") && error.contains("hex"), "{status}");
        assert_eq!(status["failures"], 2);
        assert!(metrics().contains("tidelake_lake_panics_total 1"), "{}", metrics());
        assert!(metrics().contains("tidelake_lake_errors_total 2"), "{}", metrics());

        let (more, failed) = shipper.ship_round(round()).await;
        assert!(failed.is_empty() && more.is_empty());
        let status = shipper.tenant_status("acme").unwrap();
        assert_eq!((status["error"].clone(), status["failures"].clone()), (Value::Null, json!(0)), "{status}");
        assert_eq!(status["shippedLsn"], 1);
        assert!(metrics().contains("tidelake_lake_failing_tenants 0"), "{}", metrics());
        let table = warehouse
            .catalog()
            .load_table(&iceberg::TableIdent::new(names::namespace("acme").unwrap(), "files".into()))
            .await
            .unwrap();
        assert!(table.metadata().current_snapshot().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Where an in-memory change log fails.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Fault {
        None,
        /// The nth read of a page fails (after earlier pages were committed).
        Read(u32),
        /// Reading the schema versions fails the nth time.
        Versions(u32),
        /// Every acknowledgement fails (the lake has the changes; the log
        /// does not learn it).
        Acknowledge,
    }

    /// A tenant's change log in memory: two tables, the first gaining a
    /// column half way (a schema version no change of the second is under).
    struct MemorySource {
        changes: Vec<Change>,
        versions: Vec<SchemaVersion>,
        fault: Fault,
        reads: AtomicU32,
        version_reads: AtomicU32,
        acked: AtomicU64,
    }

    impl MemorySource {
        fn new(fault: Fault) -> Self {
            let column = |name: &str, type_name: &str, type_oid: i32, attnum: i32| {
                json!({"name": name, "type": type_name, "typeOid": type_oid, "attnum": attnum})
            };
            let version = |version: i64, oid: i64, table: &str, columns: Value, lsn: u64| -> SchemaVersion {
                serde_json::from_value(json!({"version": version, "tableOid": oid, "schema": "public", "table": table,
                    "columns": columns, "primaryKey": ["id"], "lsn": lsn, "commitTs": "2026-01-01 00:00:00+00"}))
                .unwrap()
            };
            let id = column("id", "integer", 23, 1);
            let versions = vec![
                version(1, 100, "a", json!([id, column("v", "text", 25, 2)]), 1),
                version(2, 200, "b", json!([id, column("n", "bigint", 20, 2)]), 1),
                version(3, 100, "a", json!([id, column("v", "text", 25, 2), column("w", "integer", 23, 3)]), 31),
            ];
            let changes = (1..=60u64)
                .map(|lsn| {
                    let (table, version, new) = match lsn % 3 {
                        0 => ("b", 2, json!({"id": lsn, "n": lsn * 1000})),
                        _ if lsn > 30 => ("a", 3, json!({"id": lsn % 7, "v": format!("v{lsn}"), "w": lsn})),
                        _ => ("a", 1, json!({"id": lsn % 7, "v": format!("v{lsn}")})),
                    };
                    let op = if lsn % 3 != 0 && lsn > 7 { "update" } else { "insert" };
                    serde_json::from_value(json!({"lsn": lsn, "xid": lsn, "commitTs": "2026-01-01 00:00:01+00",
                        "schemaVersion": version, "op": op, "schema": "public", "table": table, "new": new}))
                    .unwrap()
                })
                .collect();
            Self {
                changes,
                versions,
                fault,
                reads: AtomicU32::new(0),
                version_reads: AtomicU32::new(0),
                acked: AtomicU64::new(0),
            }
        }
    }

    impl ChangeSource for MemorySource {
        fn take_committed(&self) -> Vec<String> {
            Vec::new()
        }

        async fn wait_committed(&self) {
            std::future::pending::<()>().await
        }

        fn tenants(&self) -> Vec<(String, Option<u64>)> {
            Vec::new()
        }

        async fn read(&self, _: &str, since: u64, limit: u64) -> std::result::Result<crate::ChangePage, SourceError> {
            let read = self.reads.fetch_add(1, Ordering::Relaxed) + 1;
            if self.fault == Fault::Read(read) {
                return Err(SourceError::failed(format!("read {read} failed")));
            }
            let changes = self.changes.iter().filter(|c| c.lsn > since).take(limit as usize).cloned().collect();
            Ok(crate::ChangePage { changes, head_lsn: 60, schema_epoch: 1 })
        }

        async fn schema_versions(&self, _: &str) -> std::result::Result<Vec<SchemaVersion>, SourceError> {
            let read = self.version_reads.fetch_add(1, Ordering::Relaxed) + 1;
            if self.fault == Fault::Versions(read) {
                return Err(SourceError::failed(format!("schema read {read} failed")));
            }
            Ok(self.versions.clone())
        }

        async fn acknowledge(&self, _: &str, lsn: u64) -> std::result::Result<(), SourceError> {
            if self.fault == Fault::Acknowledge {
                return Err(SourceError::failed("acknowledgement failed"));
            }
            self.acked.fetch_max(lsn, Ordering::Relaxed);
            Ok(())
        }
    }

    /// Whatever step of shipping fails — a page read, the schema history,
    /// the acknowledgement, or the shipper stopping after its tables
    /// committed but before the namespace recorded it — every change is in
    /// the lake exactly once, with its values, once shipping goes on.
    #[tokio::test]
    async fn every_change_lands_once_whatever_step_fails() {
        let faults = [Fault::None, Fault::Read(2), Fault::Read(4), Fault::Versions(1), Fault::Versions(2), Fault::Acknowledge];
        for (run, fault) in faults.into_iter().enumerate() {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
            let dir = std::env::temp_dir().join(format!("tidelake-shipper-once-{}-{nanos}", std::process::id()));
            let warehouse = Warehouse::open(catalog::CatalogConfig::in_data_dir(&dir)).await.unwrap();
            let source = Arc::new(MemorySource::new(fault));
            let expected = source.changes.clone();
            // Pages of 8 changes, each committed at once.
            let config = ShipperConfig { max_lag: Duration::ZERO, batch_size: 8, ..ShipperConfig::default() };
            let round = || BTreeSet::from(["acme".to_owned()]);
            let mut failures = 0;
            {
                let shipper = Shipper::new(source.clone(), warehouse.clone(), config.clone());
                // Three pages, then the shipper stops as if killed after its
                // table commits but before the namespace moved: the
                // namespace is put back to where it was before the third.
                for _ in 0..3 {
                    let (_, failed) = shipper.ship_round(round()).await;
                    failures += failed.len();
                }
            }
            let ns = names::namespace("acme").unwrap();
            let shipped: u64 = warehouse.catalog().get_namespace(&ns).await.unwrap().properties()[PROP_SHIPPED_LSN]
                .parse()
                .unwrap();
            let rolled_back = shipped.saturating_sub(8);
            let props = HashMap::from([(PROP_SHIPPED_LSN.to_owned(), rolled_back.to_string())]);
            warehouse.catalog().update_namespace(&ns, props).await.unwrap();
            // A new shipper goes on from the namespace's LSN.
            let shipper = Shipper::new(source.clone(), warehouse.clone(), config.clone());
            for _ in 0..20 {
                let (more, failed) = shipper.ship_round(round()).await;
                failures += failed.len();
                if more.is_empty() && failed.is_empty() && shipper.tenant_status("acme").unwrap()["shippedLsn"] == 60 {
                    break;
                }
            }
            let status = shipper.tenant_status("acme").unwrap();
            assert_eq!(status["shippedLsn"], 60, "run {run} ({fault:?}): {status}");
            assert_eq!(failures > 0, !matches!(fault, Fault::None | Fault::Acknowledge), "run {run} ({fault:?})");
            let acked = source.acked.load(Ordering::Relaxed);
            assert_eq!(acked, if fault == Fault::Acknowledge { 0 } else { 60 }, "run {run} ({fault:?})");

            let back = crate::history::changes(&warehouse, "acme", 0, u64::MAX).await.unwrap();
            let lsns: Vec<u64> = back.iter().map(|c| c.lsn).collect();
            assert_eq!(lsns, (1..=60).collect::<Vec<_>>(), "run {run} ({fault:?}): each change once");
            for (got, want) in back.iter().zip(&expected) {
                assert_eq!((got.op, &got.table, got.xid), (want.op, &want.table, want.xid), "LSN {}", want.lsn);
                assert_eq!(got.new, want.new, "run {run} ({fault:?}), LSN {}", want.lsn);
                assert_eq!(got.schema_version, want.schema_version, "LSN {}", want.lsn);
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
