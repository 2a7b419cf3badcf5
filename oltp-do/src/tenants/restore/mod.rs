//! Point-in-time recovery: restore a tenant to an instant in place (kept
//! undoable by a base backup of what it replaced), or branch it into a new
//! tenant; and bookmarks, the LSN an instant resolves to.
//!
//! A restore takes the newest base backup at or before the instant and
//! replays the changes after it, from the tenant's change log while it still
//! holds them (exact old and new rows), else from the lake (through
//! `History`, which the server wires in). The result is built in a staging
//! directory beside the tenants; only a finished one replaces anything.
//! Its change log then starts afresh above every LSN the tenant used (see
//! `tidelake.rebase`), recording how the restored tables differ from the
//! replaced ones (in place), or each as a truncate and its rows (a branch,
//! and tables whose differences cannot be told by key), so the lake's
//! history reads: the old timeline up to the restore, then the restored state.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use super::storage::{pack_dir, unpack_into};
use super::{Tenants, Tier};
use crate::layout::{self, cold_marker};
use crate::actor::{CLOSED_HEAD_FILE, work};
use crate::archive::{self, Manifest};
use crate::engine::{Images, Session, StoredVersion, TenantDb, qualified, rows_at_head};
use crate::error::{Error, Result};
use model::{Change, Op, SERVER_ORIGIN, SchemaVersion, TableAt, TenantId};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A tenant's history beyond its change log: the lake. The server
/// implements it over the Iceberg tables the shipper writes. A tenant's
/// history has an origin — this server's ([`SERVER_ORIGIN`]) or the edge's
/// ([`model::EDGE_ORIGIN`]) — and is read only as the history of a tenant
/// of that origin: two tenants of one name never mix.
pub trait History: Send + Sync {
    /// Every change of this server's tenant with an LSN in `(after, upto]`,
    /// in LSN order (updates without their old rows: the lake keeps new rows only).
    fn changes<'a>(&'a self, tenant: &'a TenantId, after: u64, upto: u64) -> BoxFuture<'a, Result<Vec<Change>>>;
    /// The newest LSN of the tenant of `origin` committed at or before
    /// `at_us` (µs since the epoch); None if the history holds nothing of it.
    fn lsn_at<'a>(&'a self, tenant: &'a TenantId, origin: &'a str, at_us: i64) -> BoxFuture<'a, Result<Option<u64>>>;
    /// Every change of the tenant of `origin` up to this LSN is in the history.
    fn held_through<'a>(&'a self, tenant: &'a TenantId, origin: &'a str) -> BoxFuture<'a, Result<u64>>;
    /// New changes are being added to the history (the lake is shipped to).
    fn grows(&self) -> bool;
    /// Where the history of `tenant` comes from; None if there is none.
    fn origin<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Result<Option<String>>>;
    /// For a tenant of another origin: its head as that origin tells it
    /// now; None where the origin cannot be asked.
    fn head_of<'a>(&'a self, tenant: &'a TenantId, origin: &'a str) -> BoxFuture<'a, Result<Option<u64>>>;
    /// For a tenant of another origin: make its shipping into the history
    /// due (this server's own tenants are marked by their commits).
    fn nudge(&self, tenant: &TenantId, origin: &str);
    /// The tables of the tenant of `origin` at the instant right after
    /// change `lsn` (and, for an instant given as a time, `at_us`), with
    /// their rows then: from the history alone.
    fn tables_at<'a>(
        &'a self,
        tenant: &'a TenantId,
        origin: &'a str,
        lsn: u64,
        at_us: Option<i64>,
    ) -> BoxFuture<'a, Result<Vec<TableAt>>>;
}

/// The instant a restore goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Right after the change with this LSN committed (`lsn:<n>`, a bookmark).
    Lsn(u64),
    /// A moment in time, in µs since the epoch.
    Time(i64),
}

impl Target {
    /// `lsn:<n>`, a bare number (an LSN), or an instant as
    /// [`model::parse_instant`] reads it.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let lsn = text.strip_prefix("lsn:").unwrap_or(text);
        if let Ok(n) = lsn.parse::<u64>() {
            crate::protocol::checked_lsn("the bookmark", n).map_err(|m| Error::bad_request("invalid_instant", m))?;
            return Ok(Self::Lsn(n));
        }
        model::parse_instant(text).map(Self::Time).ok_or_else(|| {
            Error::bad_request(
                "invalid_instant",
                format!("{text:?} is neither a bookmark (lsn:<n>) nor a timestamp such as 2026-11-28T07:00:00Z"),
            )
        })
    }
}

/// µs since the epoch as a timestamptz literal.
fn instant_text(at_us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(at_us)
        .map_or_else(|| "-infinity".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// An instant resolved to the LSN that marks it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bookmark {
    /// `lsn:<n>`: what `restore --to` accepts.
    pub bookmark: String,
    pub lsn: u64,
    /// Where the answer came from: `log` or `lake`.
    pub source: &'static str,
}

/// A step of a restore, for progress reports.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
pub enum Progress {
    /// The base backup chosen, being fetched and unpacked.
    Fetching { backup: String, lsn: u64, bytes: u64 },
    /// Changes replayed so far of `total`.
    #[serde(rename_all = "camelCase")]
    Replaying { done: u64, total: u64, source: &'static str },
    /// Keeping what is replaced as a base backup (in place only).
    KeepingUndo,
    /// Starting the change log afresh and putting the result in place.
    Installing,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    pub tenant: String,
    /// The branch made, for a restore `into` a new tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
    /// Where the tenant restored lives, when not on this server (`edge`):
    /// it was branched from the lake alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The instant restored to, as a bookmark.
    pub target: Bookmark,
    /// The base backup it started from (none for a branch from the lake alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_backup: Option<Manifest>,
    /// Changes replayed on the base backup; from the lake alone, rows loaded.
    pub replayed: u64,
    /// Where the replayed changes were read: `log` (the tenant's change
    /// log) or `lake`.
    pub replayed_from: &'static str,
    /// The bookmark that undoes an in-place restore (the state it replaced,
    /// kept as a base backup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
    /// The restored tenant's newest LSN (its change log continues above the
    /// LSNs it replaced).
    pub head_lsn: u64,
    /// Changes the restored database logged for the lake (in place: how it
    /// differs from what it replaced; a branch: all its rows).
    pub logged: u64,
    /// From the lake alone: columns made `text` because their type does
    /// not exist in a new database (an enum, a domain, an extension's
    /// type), as `schema.table.column (type)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub as_text: Vec<String>,
    /// Reading the changes to replay, from the log or the lake.
    pub read_ms: u64,
    /// Applying them to the base backup.
    pub replay_ms: u64,
    /// The whole restore.
    pub took_ms: u64,
}

/// Removes a staging directory unless disarmed.
struct Staging(Option<PathBuf>);

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Clears a tenant's in-progress restore mark.
struct Restoring<'a>(&'a Tenants, Vec<TenantId>);

impl Drop for Restoring<'_> {
    fn drop(&mut self) {
        let mut restoring = self.0.restoring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for tenant in &self.1 {
            restoring.remove(tenant);
        }
    }
}

/// The most changes after the instant an in-place restore reads (into
/// memory) to log only differences; beyond, the restored tables are logged whole.
const DIFF_LIMIT: u64 = 200_000;

/// How long a restore waits for the lake to hold every change it is about
/// to replace (in place), or to read (of an edge tenant).
const LAKE_WAIT: Duration = Duration::from_secs(60);
/// Where a restore reads the changes it replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The tenant's change log, while it still holds them.
    Log,
    /// The lake, for what the log no longer holds.
    Lake,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Log => "log",
            Source::Lake => "lake",
        }
    }

    /// The log keeps the row an update replaced; the lake only the new one.
    fn images(self) -> Images {
        match self {
            Source::Log => Images::OldAndNew,
            Source::Lake => Images::NewOnly,
        }
    }

    /// Changes read per page: the log's from its table, the lake's LSNs in
    /// one scan of the tenant's tables each.
    fn page(self) -> u64 {
        match self {
            Source::Log => 10_000,
            Source::Lake => 50_000,
        }
    }
}

/// The columns whose values the lake keeps as their text — JSON and arrays
/// are Iceberg strings — by table, under the newest names (the lake's).
/// Changes read from the lake get their values back as captured, so replay
/// and the undo diff take the same values from either source.
/// (Schema → table → columns; tables without such columns are left out.)
struct LakeText(HashMap<String, HashMap<String, HashSet<String>>>);

impl LakeText {
    fn of(latest: &[SchemaVersion]) -> Self {
        let mut tables: HashMap<String, HashMap<String, HashSet<String>>> = HashMap::new();
        for v in latest {
            let text = v.columns.iter().filter(|c| matches!(c.type_oid, 114 | 3802) || c.type_name.ends_with("[]"));
            let text: HashSet<String> = text.map(|c| c.name.clone()).collect();
            if !text.is_empty() {
                tables.entry(v.schema.clone()).or_default().insert(v.table.clone(), text);
            }
        }
        LakeText(tables)
    }

    fn restore(&self, changes: &mut [Change]) {
        for change in changes {
            let Some(columns) = self.0.get(&change.schema).and_then(|tables| tables.get(&change.table)) else { continue };
            for row in [change.new.as_mut(), change.old.as_mut()].into_iter().flatten() {
                for (name, value) in row.iter_mut() {
                    if let Value::String(text) = value
                        && columns.contains(name)
                        && let Ok(parsed) = serde_json::from_str(text)
                    {
                        *value = parsed;
                    }
                }
            }
        }
    }
}

impl Tenants {
    fn history(&self) -> Option<Arc<dyn History>> {
        self.history.clone()
    }

    fn exists(&self, tenant: &TenantId) -> bool {
        let root = self.root(tenant);
        self.is_open(tenant) || root.exists() || cold_marker(&root).exists()
    }

    fn require_capture(&self) -> Result<()> {
        if self.config.engine.capture {
            Ok(())
        } else {
            Err(Error::bad_request("capture_off", "point-in-time recovery needs change capture, which is off"))
        }
    }

    /// The LSN that marks an instant (µs since the epoch): the newest change
    /// committed at or before it.
    pub async fn bookmark(&self, tenant: &TenantId, at_us: i64) -> Result<Bookmark> {
        self.require_capture()?;
        if at_us > now_us() {
            return Err(Error::bad_request(
                "instant_in_future",
                format!("{} is in the future", instant_text(at_us)),
            ));
        }
        if !self.exists(tenant) {
            // A tenant of the edge: its bookmark is the lake's.
            if let (Some(origin), Some(history)) = (self.elsewhere(tenant).await?, self.history()) {
                let held = self.caught_up(&history, tenant, &origin).await?;
                let lsn = history.lsn_at(tenant, &origin, at_us).await?.unwrap_or(0).min(held);
                return Ok(Bookmark { bookmark: format!("lsn:{lsn}"), lsn, source: "lake" });
            }
            return Err(Error::NoSuchTenant(tenant.to_string()));
        }
        let found = self.run(tenant, work::LsnAt { at: instant_text(at_us) }).await?;
        let (lsn, source) = if found.covered {
            (found.lsn, "log")
        } else {
            let history = self.history().ok_or_else(|| {
                Error::bad_request(
                    "outside_retention_window",
                    format!(
                        "{} is older than tenant {tenant}'s change log holds, and no lake is configured to tell",
                        instant_text(at_us)
                    ),
                )
            })?;
            match history.lsn_at(tenant, SERVER_ORIGIN, at_us).await? {
                Some(lsn) => (lsn, "lake"),
                None => (found.lsn, "log"),
            }
        };
        Ok(Bookmark { bookmark: format!("lsn:{lsn}"), lsn, source })
    }

    /// Restore `tenant` to `target`: in place, or into the new tenant `into`
    /// (a branch, the original untouched). `progress` hears each step.
    pub async fn restore(
        &self,
        tenant: &TenantId,
        target: Target,
        into: Option<&TenantId>,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<RestoreReport> {
        let started = Instant::now();
        self.require_capture()?;
        if !self.exists(tenant) {
            // A tenant of elsewhere (the edge) whose history is in the lake
            // branches into a tenant of this server from the lake alone.
            if let Some(origin) = self.elsewhere(tenant).await? {
                let Some(into) = into else {
                    return Err(Error::bad_request(
                        "restore_needs_into",
                        format!(
                            "tenant {tenant} is a tenant of the {origin}, not of this server: this server restores it into a new tenant of its own (`into`), from the lake"
                        ),
                    ));
                };
                return self.branch_from_lake(tenant, &origin, target, into, progress).await;
            }
            return Err(Error::NoSuchTenant(tenant.to_string()));
        }
        if let Some(into) = into {
            self.check_branch_name(tenant, into).await?;
        }
        let _restoring = self.begin_restore(tenant, into)?;

        // Where to go, and from which base backup.
        let head = self.log_stats(tenant).await?.head_lsn;
        let target_given = target;
        let target = match target {
            Target::Lsn(lsn) if lsn > head => {
                return Err(Error::bad_request(
                    "lsn_beyond_head",
                    format!("LSN {lsn} has not happened: tenant {tenant}'s newest change is LSN {head}"),
                ));
            }
            Target::Lsn(lsn) => Bookmark { bookmark: format!("lsn:{lsn}"), lsn, source: "given" },
            Target::Time(at_us) => self.bookmark(tenant, at_us).await?,
        };
        // The base backup after a schema change the client just made is
        // packed (if the tenant is open) and stored first.
        if let Some(settled) = self.run_quietly(tenant, work::SettleBase).await {
            settled?;
        } else if let Some(closing) = self.closing_actor(tenant) {
            // Closing packs it: wait for that.
            closing.closed().await;
        }
        self.store_schema_bases(tenant).await;
        let backups = self.backups(tenant).await?;
        let at_us = match target_given {
            Target::Time(at_us) => Some(at_us),
            Target::Lsn(_) => None,
        };
        let versions = self.schema_versions(tenant).await?;
        let Some(base) = choose_base(&backups, &versions, target.lsn, at_us).cloned() else {
            return Err(outside_window(tenant, &target, backups.first()));
        };
        if let Some(change) = versions.iter().find(|v| schema_change_between(v, &base, target.lsn, at_us)) {
            return Err(Error::bad_request(
                "schema_changed_in_window",
                format!(
                    "table {}.{} changed its schema at LSN {}, between the nearest base backup (LSN {}) and the instant (LSN {}): replay does not cross schema changes; restore to an instant before it, or after a base backup taken since",
                    change.schema,
                    change.table,
                    change.lsn,
                    base.lsn,
                    target.lsn
                ),
            ));
        }

        // Where the changes to replay come from. They are read page by page
        // as the replay goes, so a long window is never held in memory whole.
        let total = target.lsn - base.lsn;
        let source = self.replay_source(tenant, base.lsn, target.lsn).await?;
        let lake_names = latest_names(&versions);
        let lake_text = Arc::new(LakeText::of(&lake_names));

        // Build the restored database beside the tenants.
        let dest = into.unwrap_or(tenant);
        let staging_dir = layout::restoring(&self.root(dest));
        if staging_dir.exists() {
            std::fs::remove_dir_all(&staging_dir).map_err(|e| Error::io("remove", &staging_dir, e))?;
        }
        let mut staging = Staging(Some(staging_dir.clone()));
        progress(Progress::Fetching { backup: base.key.clone(), lsn: base.lsn, bytes: base.bytes });
        let bytes = self.store.fetch(&base).await?;
        unpack_into(bytes, &staging_dir).await?;
        let _ = std::fs::remove_file(staging_dir.join(CLOSED_HEAD_FILE));
        let source_name = source.name();
        progress(Progress::Replaying { done: 0, total, source: source_name });
        let runtime = self.runtime.clone();
        let branch = into.is_some();
        let replay_progress = |done: usize| progress(Progress::Replaying { done: done as u64, total, source: source_name });
        let dir = staging_dir.clone();
        let (pages_tx, mut pages_rx) = tokio::sync::mpsc::channel::<Result<Vec<Change>>>(2);
        let replaying = run_blocking_with_progress(replay_progress, move |report| {
            runtime.wait_ready()?;
            let mut db = TenantDb::open(&dir, runtime.settings(), Session::Owner)?;
            let renames = match source {
                Source::Lake => db.renames_for(&lake_names)?,
                Source::Log => HashMap::new(),
            };
            let replaying = Instant::now();
            let mut waited = Duration::ZERO;
            let mut pages = || {
                let asked = Instant::now();
                let page = pages_rx.blocking_recv();
                waited += asked.elapsed();
                page
            };
            let replayed = db.replay(&mut pages, source.images(), &renames, &mut |done| report(done));
            let replay_ms = replaying.elapsed().saturating_sub(waited).as_millis() as u64;
            // A branch starts its own log now; a restore in place does once
            // the head of what it replaces is known.
            let head = replayed.and_then(|()| if branch { db.rebase(0, &[], None).map(Some) } else { Ok(None) });
            let closed = db.close();
            let head = head?;
            closed?;
            Ok((head, replay_ms))
        });
        let reading = self.send_changes(tenant, source, &lake_text, base.lsn, target.lsn, pages_tx);
        let (replayed, read_ms) = tokio::join!(replaying, reading);
        let (head_after, replay_ms) = replayed?;

        let report = |undo: Option<u64>, head_lsn: u64| RestoreReport {
            tenant: tenant.to_string(),
            into: into.map(|t| t.to_string()),
            origin: None,
            target: target.clone(),
            base_backup: Some(base.clone()),
            replayed: total,
            replayed_from: source_name,
            undo: undo.map(|lsn| format!("lsn:{lsn}")),
            head_lsn,
            logged: head_lsn - undo.unwrap_or(0),
            as_text: Vec::new(),
            read_ms,
            replay_ms,
            took_ms: 0,
        };
        let mut done = if let Some(into) = into {
            progress(Progress::Installing);
            let head = head_after.unwrap_or(0);
            write_head(&staging_dir, head)?;
            self.holding_migrations(into, self.install_branch(into, &mut staging, head)).await?;
            report(None, head)
        } else {
            let installing = self.install_in_place(tenant, target.lsn, &mut staging, &lake_text, progress);
            let (undo, head) = self.holding_migrations(tenant, installing).await?;
            report(Some(undo), head)
        };
        done.took_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            tenant = %tenant,
            into = ?into.map(TenantId::as_str),
            lsn = target.lsn,
            base_lsn = base.lsn,
            replayed = total,
            source = source_name,
            took_ms = done.took_ms,
            "restored a tenant"
        );
        Ok(done)
    }

    /// `into` may name a new branch of `tenant`: another name, no tenant's,
    /// and no history in the lake.
    async fn check_branch_name(&self, tenant: &TenantId, into: &TenantId) -> Result<()> {
        if into == tenant {
            return Err(Error::bad_request("invalid_branch", "a branch needs a name other than its tenant's"));
        }
        if self.exists(into) {
            return Err(Error::Conflict(format!("tenant {into} already exists: a branch needs a new name")));
        }
        if let Some(history) = self.history()
            && history.origin(into).await?.is_some()
        {
            return Err(Error::Conflict(format!(
                "the lake already holds history of a tenant named {into}: a branch needs a new name"
            )));
        }
        Ok(())
    }

    /// The origin of the lake's history of `tenant` if it is not this
    /// server's (the edge's); None without a lake, or without history of it.
    async fn elsewhere(&self, tenant: &TenantId) -> Result<Option<String>> {
        let Some(history) = self.history() else { return Ok(None) };
        Ok(history.origin(tenant).await?.filter(|origin| origin != SERVER_ORIGIN))
    }

    /// Branch a tenant of elsewhere (the edge), whose history the lake
    /// holds, into the new tenant `into` of this server at `target`: its
    /// tables at the instant, as the lake tells them (columns with their
    /// types and nullability, primary keys), with each key's last row.
    /// What the lake does not keep — indexes, constraints other than the
    /// key, defaults, functions, views — is not there.
    async fn branch_from_lake(
        &self,
        tenant: &TenantId,
        origin: &str,
        target: Target,
        into: &TenantId,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<RestoreReport> {
        let started = Instant::now();
        let history = self.history().ok_or_else(|| Error::Engine("the lake went away mid-restore".into()))?;
        self.check_branch_name(tenant, into).await?;
        let _restoring = self.begin_restore(tenant, Some(into))?;

        // The lake first takes what the origin has committed by now (where
        // it can be asked), so an instant before now is whole.
        let reading = Instant::now();
        let held = self.caught_up(&history, tenant, origin).await?;
        let (target, at_us) = match target {
            Target::Lsn(lsn) if lsn > held => {
                return Err(Error::bad_request(
                    "lsn_beyond_head",
                    format!("LSN {lsn} of tenant {tenant} (of the {origin}) is not in the lake: it holds its changes up to LSN {held}"),
                ));
            }
            Target::Lsn(lsn) => (Bookmark { bookmark: format!("lsn:{lsn}"), lsn, source: "given" }, None),
            Target::Time(at_us) if at_us > now_us() => {
                return Err(Error::bad_request("instant_in_future", format!("{} is in the future", instant_text(at_us))));
            }
            Target::Time(at_us) => {
                let lsn = history.lsn_at(tenant, origin, at_us).await?.unwrap_or(0).min(held);
                (Bookmark { bookmark: format!("lsn:{lsn}"), lsn, source: "lake" }, Some(at_us))
            }
        };
        let tables = history.tables_at(tenant, origin, target.lsn, at_us).await?;
        let read_ms = reading.elapsed().as_millis() as u64;

        // Every row an insert, in the values the change log would hold.
        let versions: Vec<SchemaVersion> = tables.iter().map(|t| t.version.clone()).collect();
        let mut rows: Vec<Change> = tables
            .into_iter()
            .flat_map(|t| {
                let (schema, table) = (t.version.schema, t.version.table);
                t.rows.into_iter().map(move |row| Change {
                    lsn: 0,
                    xid: 0,
                    commit_ts: None,
                    schema_version: 0,
                    op: Op::Insert,
                    schema: schema.clone(),
                    table: table.clone(),
                    new: Some(row),
                    old: None,
                })
            })
            .collect();
        LakeText::of(&versions).restore(&mut rows);
        let total = rows.len() as u64;

        // The branch is built beside the tenants, from the template.
        let staging_dir = layout::restoring(&self.root(into));
        if staging_dir.exists() {
            std::fs::remove_dir_all(&staging_dir).map_err(|e| Error::io("remove", &staging_dir, e))?;
        }
        let mut staging = Staging(Some(staging_dir.clone()));
        progress(Progress::Replaying { done: 0, total, source: "lake" });
        let runtime = self.runtime.clone();
        let dir = staging_dir.clone();
        let replay_progress = |done: usize| progress(Progress::Replaying { done: done as u64, total, source: "lake" });
        let (head, as_text, replay_ms) = run_blocking_with_progress(replay_progress, move |report| {
            runtime.wait_ready()?;
            runtime.ensure_tenant_root(&dir)?;
            let mut db = TenantDb::open(&dir, runtime.settings(), Session::Owner)?;
            let replaying = Instant::now();
            let built = db.create_tables(&versions).and_then(|as_text| {
                let mut page = Some(Ok(rows));
                db.replay(&mut || page.take(), Images::NewOnly, &HashMap::new(), &mut |done| report(done))?;
                let head = db.rebase(0, &[], None)?;
                Ok((head, as_text))
            });
            let replay_ms = replaying.elapsed().as_millis() as u64;
            let closed = db.close();
            let (head, as_text) = built?;
            closed?;
            Ok((head, as_text, replay_ms))
        })
        .await?;
        progress(Progress::Installing);
        write_head(&staging_dir, head)?;
        self.holding_migrations(into, self.install_branch(into, &mut staging, head)).await?;
        let report = RestoreReport {
            tenant: tenant.to_string(),
            into: Some(into.to_string()),
            origin: Some(origin.to_owned()),
            target,
            base_backup: None,
            replayed: total,
            replayed_from: "lake",
            undo: None,
            head_lsn: head,
            logged: head,
            as_text,
            read_ms,
            replay_ms,
            took_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(tenant = %tenant, origin, into = %into, lsn = report.target.lsn, rows = total, took_ms = report.took_ms, "branched a tenant from the lake");
        Ok(report)
    }

    /// Run `installing` (a restore put in place as `tenant`) with the
    /// tenant held where the restore put it, where the server has
    /// migrations: it keeps the schema of its instant when it opens, not
    /// migrated until `migrate up` names it. The hold is written first, so
    /// nothing opens the restored tenant unheld; a failed install removes it.
    async fn holding_migrations<T>(&self, tenant: &TenantId, installing: impl Future<Output = Result<T>>) -> Result<T> {
        if self.config.migrations.is_none() {
            return installing.await;
        }
        let hold = layout::migrations_hold(&self.root(tenant));
        std::fs::write(&hold, "restored").map_err(|e| Error::io("write", &hold, e))?;
        let installed = installing.await;
        if installed.is_err() {
            let _ = std::fs::remove_file(&hold);
        }
        installed
    }

    fn begin_restore(&self, tenant: &TenantId, into: Option<&TenantId>) -> Result<Restoring<'_>> {
        let mut restoring = self.restoring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let names: Vec<TenantId> = std::iter::once(tenant).chain(into).cloned().collect();
        if let Some(busy) = names.iter().find(|t| restoring.contains(*t)) {
            return Err(Error::Conflict(format!("a restore of tenant {busy} is already running")));
        }
        restoring.extend(names.iter().cloned());
        Ok(Restoring(self, names))
    }

    /// Where the changes in `(after, upto]` are read from: the change log
    /// if it still holds them all, else the lake (once it holds them).
    async fn replay_source(&self, tenant: &TenantId, after: u64, upto: u64) -> Result<Source> {
        if upto == after {
            return Ok(Source::Log);
        }
        let stats = self.log_stats(tenant).await?;
        if stats.tail_lsn > 0 && stats.tail_lsn <= after + 1 && stats.head_lsn >= upto {
            return Ok(Source::Log);
        }
        let history = self.history().ok_or_else(|| {
            Error::bad_request(
                "outside_retention_window",
                format!(
                    "tenant {tenant}'s change log no longer holds LSNs {} to {upto} (it starts at {}), and no lake is configured to replay them from",
                    after + 1,
                    stats.tail_lsn
                ),
            )
        })?;
        self.wait_for_history(&history, tenant, SERVER_ORIGIN, upto).await?;
        Ok(Source::Lake)
    }

    /// Read the changes in `(after, upto]` from `source` page by page into
    /// `pages`, each checked to hold exactly the next LSNs; a failure is
    /// sent as the last page. Returns the milliseconds spent reading.
    async fn send_changes(
        &self,
        tenant: &TenantId,
        source: Source,
        lake_text: &LakeText,
        after: u64,
        upto: u64,
        pages: tokio::sync::mpsc::Sender<Result<Vec<Change>>>,
    ) -> u64 {
        let mut reading = Duration::ZERO;
        let mut next = after + 1;
        while next <= upto {
            let wanted = source.page().min(upto + 1 - next);
            let started = Instant::now();
            let page = match source {
                Source::Log => self.read_changes(tenant, next - 1, wanted).await.map(|p| p.changes),
                Source::Lake => match self.history() {
                    Some(history) => history.changes(tenant, next - 1, next - 1 + wanted).await.map(|mut changes| {
                        lake_text.restore(&mut changes);
                        changes
                    }),
                    None => Err(Error::Engine("the lake went away mid-restore".into())),
                },
            };
            reading += started.elapsed();
            let page = page.and_then(|changes| {
                let exact = changes.len() as u64 == wanted && changes.iter().zip(next..).all(|(c, lsn)| c.lsn == lsn);
                if exact {
                    return Ok(changes);
                }
                Err(Error::Engine(format!(
                    "tenant {tenant}: expected the {wanted} changes from LSN {next} {}, found {} starting at {}",
                    match source {
                        Source::Log => "in the change log",
                        Source::Lake => "in the lake",
                    },
                    changes.len(),
                    changes.first().map_or("none".to_owned(), |c| c.lsn.to_string())
                )))
            });
            let failed = page.is_err();
            if let Ok(changes) = &page {
                next += changes.len() as u64;
            }
            if pages.send(page).await.is_err() || failed {
                break;
            }
        }
        reading.as_millis() as u64
    }

    /// For a tenant of another origin (the edge): wait until the lake holds
    /// its changes up to its head as the origin tells it now (as they
    /// stand, where the origin cannot be asked, logged); the LSN the lake
    /// holds them through.
    async fn caught_up(&self, history: &Arc<dyn History>, tenant: &TenantId, origin: &str) -> Result<u64> {
        match history.head_of(tenant, origin).await {
            Ok(Some(head)) => self.wait_for_history(history, tenant, origin, head).await?,
            Ok(None) => {}
            Err(err) => tracing::warn!(tenant = %tenant, origin, error = %err,
                "could not ask for the tenant's head; reading the lake as it stands"),
        }
        history.held_through(tenant, origin).await
    }

    /// Wait until the lake holds every change of `tenant` of `origin` up to `lsn`.
    async fn wait_for_history(&self, history: &Arc<dyn History>, tenant: &TenantId, origin: &str, lsn: u64) -> Result<()> {
        let deadline = Instant::now() + LAKE_WAIT;
        loop {
            let held = history.held_through(tenant, origin).await?;
            if held >= lsn {
                return Ok(());
            }
            if !history.grows() {
                return Err(Error::bad_request(
                    "outside_retention_window",
                    format!(
                        "tenant {tenant}'s change log no longer holds LSN {lsn}, and the lake (not being shipped to: lake shipping is off) holds its changes only up to LSN {held}"
                    ),
                ));
            }
            if Instant::now() > deadline {
                return Err(Error::Unavailable(format!(
                    "the lake holds tenant {tenant}'s changes up to LSN {held}, not yet {lsn}; try again once it has caught up"
                )));
            }
            // The shipper takes tenants marked as having committed.
            if origin == SERVER_ORIGIN {
                self.commits.mark(tenant);
            } else {
                history.nudge(tenant, origin);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Put a finished branch in place as the new tenant `into`, backed up.
    async fn install_branch(&self, into: &TenantId, staging: &mut Staging, head: u64) -> Result<()> {
        let lock = self.move_lock(into);
        let _moving = lock.lock().await;
        if self.exists(into) {
            return Err(Error::Conflict(format!("tenant {into} was created while the branch was being made")));
        }
        let dir = staging.0.clone().expect("staging directory");
        let packed = pack_dir(&dir).await?;
        let root = self.root(into);
        std::fs::rename(&dir, &root).map_err(|e| Error::io("install", &root, e))?;
        staging.0 = None;
        self.feed(into).set_closed_head(Some(head));
        self.commits.mark(into);
        // Restorable from its first moment.
        self.backup_after_restore(into, packed, head, "branch").await;
        Ok(())
    }

    /// Replace `tenant` with the staged database: close it, keep it as a
    /// base backup (the undo bookmark), start the staged log above its head,
    /// swap directories. Returns the undo LSN and the new head.
    async fn install_in_place(
        &self,
        tenant: &TenantId,
        target: u64,
        staging: &mut Staging,
        lake_text: &LakeText,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<(u64, u64)> {
        let history = self.history();
        // The lake must hold what is replaced — when it is being shipped to.
        let shipped = history.clone().filter(|h| h.grows());
        let root = self.root(tenant);
        let dir = staging.0.clone().expect("staging directory");
        progress(Progress::KeepingUndo);
        // A cold tenant comes back to disk first: its database is read below.
        if self.tier(tenant) == Tier::Cold {
            self.settle(tenant).await?;
        }
        let mut attempts = 0;
        let (lock, head) = loop {
            attempts += 1;
            if let Some(history) = &shipped {
                let known = self.log_stats(tenant).await?.head_lsn;
                self.wait_for_history(history, tenant, SERVER_ORIGIN, known).await?;
            }
            let lock = self.move_lock(tenant);
            let guard = lock.clone().lock_owned().await;
            let head = self.close_for_move(tenant, &root).await?;
            // Writes may have landed meanwhile: the lake must hold them too,
            // or the instants before the restore would lose them.
            let held = match &shipped {
                Some(history) => history.held_through(tenant, SERVER_ORIGIN).await,
                None => Ok(head),
            };
            if matches!(held, Ok(held) if held >= head) {
                break (guard, head);
            }
            self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).moving.remove(tenant);
            drop(guard);
            held?;
            if attempts >= 3 {
                return Err(Error::Unavailable(format!(
                    "tenant {tenant} keeps writing faster than the lake takes its changes; try the restore again"
                )));
            }
        };
        let result = async {
            // What is replaced, kept as a base backup: the undo bookmark.
            let packed = pack_dir(&root).await?;
            self.store_backup(tenant, packed, head, "undo").await?;

            progress(Progress::Installing);
            // What the replaced database did after the instant: the restored
            // database logs only how it differs from where that left the rows.
            let runtime = self.runtime.clone();
            let live = root.clone();
            let (versions, from_log) = tokio::task::spawn_blocking(move || -> Result<(Vec<StoredVersion>, Option<Vec<Change>>)> {
                let mut db = TenantDb::open(&live, runtime.settings(), Session::Owner)?;
                let read = changes_since(&mut db, target, head);
                db.close()?;
                read
            })
            .await
            .map_err(Error::task("restore"))??;
            let undone = match (from_log, &history) {
                (Some(changes), _) => Some(changes),
                (None, Some(history)) if head - target <= DIFF_LIMIT => match history.changes(tenant, target, head).await {
                    Ok(mut changes) if changes.len() as u64 == head - target => {
                        lake_text.restore(&mut changes);
                        Some(changes)
                    }
                    Ok(_) => None,
                    Err(err) => {
                        tracing::warn!(tenant = %tenant, error = %err, "could not read the changes a restore undoes; logging the restored tables whole");
                        None
                    }
                },
                (None, _) => None,
            };
            let diff = undone.map(|changes| rows_at_head(&changes, &diff_tables(&versions, target)));
            let runtime = self.runtime.clone();
            let staged = dir.clone();
            let new_head = tokio::task::spawn_blocking(move || -> Result<u64> {
                let mut db = TenantDb::open(&staged, runtime.settings(), Session::Owner)?;
                let head = db.rebase(head, &versions, diff);
                db.close()?;
                let head = head?;
                write_head(&staged, head)?;
                Ok(head)
            })
            .await
            .map_err(Error::task("restore"))??;

            // Swap: the old directory moves aside, the staged one in.
            let replaced = layout::replaced(&root);
            if replaced.exists() {
                std::fs::remove_dir_all(&replaced).map_err(|e| Error::io("remove", &replaced, e))?;
            }
            std::fs::rename(&root, &replaced).map_err(|e| Error::io("move aside", &root, e))?;
            if let Err(e) = std::fs::rename(&dir, &root) {
                let _ = std::fs::rename(&replaced, &root);
                return Err(Error::io("install", &root, e));
            }
            staging.0 = None;
            let _ = std::fs::remove_dir_all(&replaced);
            let _ = std::fs::remove_file(cold_marker(&root));
            self.feed(tenant).restart(new_head);

            // The restored state, restorable at once.
            match pack_dir(&root).await {
                Ok(packed) => self.backup_after_restore(tenant, packed, new_head, "restore").await,
                Err(err) => self.backup_failed_after_restore(tenant, &err),
            }
            Ok(new_head)
        }
        .await;
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).moving.remove(tenant);
        drop(lock);
        let new_head = result?;
        self.commits.mark(tenant);
        Ok((head, new_head))
    }

    /// Back up a restored tenant. It is in place already: a failure is
    /// logged and counted, not the restore's.
    async fn backup_after_restore(&self, tenant: &TenantId, packed: archive::Packed, head: u64, reason: &str) {
        if let Err(err) = self.store_backup(tenant, packed, head, reason).await {
            self.backup_failed_after_restore(tenant, &err);
        }
    }

    fn backup_failed_after_restore(&self, tenant: &TenantId, err: &Error) {
        self.metrics.tiering_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(tenant = %tenant, error = %err, "could not back up a restored tenant; the next periodic backup will");
    }

    /// With the move lock held: close the tenant if open and mark it as
    /// moving, so nothing opens it; its head at the clean close.
    async fn close_for_move(&self, tenant: &TenantId, root: &Path) -> Result<u64> {
        loop {
            let actor = {
                let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                inner.moving.insert(tenant.clone());
                inner.actors.get(tenant).cloned()
            };
            let Some(actor) = actor else { break };
            actor.begin_close();
            actor.closed().await;
            let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if inner.actors.get(tenant).is_some_and(|a| Arc::ptr_eq(a, &actor)) {
                inner.actors.remove(tenant);
            }
        }
        layout::closed_head(root).ok_or_else(|| {
            self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).moving.remove(tenant);
            Error::Engine(format!("tenant {tenant} did not close cleanly; nothing was restored"))
        })
    }
}

/// From the closed database a restore replaces: its schema versions, and
/// its changes in `(target, head]` if its log holds them all (and they are
/// few enough to diff against).
fn changes_since(db: &mut TenantDb, target: u64, head: u64) -> Result<(Vec<StoredVersion>, Option<Vec<Change>>)> {
    let versions = db.stored_schema_versions()?;
    let stats = db.log_stats()?;
    let held = head == target || (stats.tail_lsn > 0 && stats.tail_lsn <= target + 1 && stats.head_lsn >= head);
    if !held || head - target > DIFF_LIMIT {
        return Ok((versions, None));
    }
    let mut changes = Vec::with_capacity((head - target) as usize);
    while (changes.len() as u64) < head - target {
        let since = target + changes.len() as u64;
        let page = db.read_changes(since, Source::Log.page().min(head - since))?;
        if page.is_empty() {
            return Ok((versions, None));
        }
        changes.extend(page);
    }
    Ok((versions, Some(changes)))
}

/// The tables whose differences a restore in place to `target` can log
/// (`"schema"."table"` → primary key): those with a primary key whose
/// schema did not change after the instant. The others are logged whole.
fn diff_tables(versions: &[StoredVersion], target: u64) -> HashMap<String, Vec<String>> {
    let name = |v: &StoredVersion| qualified(&v.table_schema, &v.table_name);
    let changed_since: Vec<String> = versions.iter().filter(|v| v.lsn > target).map(name).collect();
    let mut newest: HashMap<u32, &StoredVersion> = HashMap::new();
    for v in versions {
        newest.insert(v.table_oid, v);
    }
    newest
        .into_values()
        .filter(|v| !v.dropped && !changed_since.contains(&name(v)) && !v.primary_key.is_empty())
        .map(|v| (name(v), v.primary_key.clone()))
        .collect()
}

/// The base backup a restore to `lsn` (the bookmark of the instant
/// `at_us`, when the target was a time) starts from: the newest at or below
/// the LSN that holds no schema change made after the instant. (A schema
/// change commits without an LSN of its own: the base backup packed right
/// after it has the LSN of the change before it.)
fn choose_base<'a>(backups: &'a [Manifest], versions: &[SchemaVersion], lsn: u64, at_us: Option<i64>) -> Option<&'a Manifest> {
    backups.iter().rev().filter(|m| m.lsn <= lsn).find(|m| match at_us {
        Some(at) => !versions.iter().any(|v| commit_us(v).is_some_and(|ts| ts > at && ts <= m.state_at_us())),
        None => true,
    })
}

/// Whether schema version `version` (from `schema_history`) changed a
/// table after `base` was taken and at or before the target (the LSN
/// `lsn`, or the instant `at_us`): a replay from that base would cross it.
/// A version without a known commit time is placed by its LSN alone.
fn schema_change_between(version: &SchemaVersion, base: &Manifest, lsn: u64, at_us: Option<i64>) -> bool {
    let first_lsn = version.lsn;
    match commit_us(version) {
        Some(ts) => ts > base.state_at_us() && at_us.map_or(first_lsn <= lsn, |at| ts <= at),
        None => first_lsn > base.lsn && first_lsn <= lsn,
    }
}

/// When a schema version committed, in µs since the epoch (None: not known).
fn commit_us(version: &SchemaVersion) -> Option<i64> {
    version.commit_ts.as_deref().and_then(model::parse_instant)
}

fn write_head(root: &Path, head: u64) -> Result<()> {
    let file = root.join(CLOSED_HEAD_FILE);
    std::fs::write(&file, head.to_string()).map_err(|e| Error::io("write", &file, e))
}

fn outside_window(tenant: &TenantId, target: &Bookmark, oldest: Option<&Manifest>) -> Error {
    let message = match oldest {
        Some(m) => format!(
            "LSN {} of tenant {tenant} is outside the retention window: its oldest base backup is at LSN {} (taken {}), and replay starts from a base backup (see --archive-backup-retention)",
            target.lsn,
            m.lsn,
            instant_text(m.taken_at_ms as i64 * 1000)
        ),
        None => format!(
            "tenant {tenant} has no base backup yet, so no instant of it can be restored: take one (`tidelake backup --tenant {tenant}`) or wait for the periodic one"
        ),
    };
    Error::bad_request("outside_retention_window", message)
}

/// For each table's newest schema version: its oid, name and columns by
/// attnum, so changes read from the lake (under the newest names) find the
/// restored tables (under the names they had then).
fn latest_names(versions: &[SchemaVersion]) -> Vec<SchemaVersion> {
    let mut latest: HashMap<i64, &SchemaVersion> = HashMap::new();
    for v in versions {
        latest.insert(v.table_oid, v);
    }
    latest.into_values().filter(|v| !v.dropped).cloned().collect()
}

/// Run blocking work on a thread of its own, forwarding the counts it
/// reports to `progress` on this task.
async fn run_blocking_with_progress<T: Send + 'static>(
    progress: impl Fn(usize),
    work: impl FnOnce(&dyn Fn(usize)) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || {
        let report = move |done: usize| {
            let _ = tx.send(done);
        };
        work(&report)
    });
    while let Some(done) = rx.recv().await {
        progress(done);
    }
    task.await.map_err(Error::task("restore"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored schema versions are read as PostgreSQL writes them (an oid as
    /// a string) and carried over whole, columns added later included; the
    /// tables a restore diffs are those with a key and no schema change since.
    #[test]
    fn stored_versions_are_carried_over_whole_and_choose_the_diffed_tables() {
        let stored = |version: i64, lsn: u64, oid: &str, table: &str, key: serde_json::Value| {
            serde_json::json!({"version": version, "lsn": lsn, "xid": 7, "table_oid": oid, "table_schema": "public",
                "table_name": table, "columns": [{"name": "id"}], "primary_key": key, "dropped": false,
                "signature": "s", "commit_ts": null, "added_later": 1})
        };
        let rows = serde_json::json!([
            stored(1, 10, "16384", "keyed", serde_json::json!(["id"])),
            stored(2, 11, "16390", "keyless", serde_json::json!([])),
            stored(3, 12, "16400", "altered", serde_json::json!(["id"])),
            stored(4, 50, "16400", "altered", serde_json::json!(["id"])),
        ]);
        let versions: Vec<StoredVersion> = serde_json::from_value(rows).unwrap();
        assert_eq!(versions[0].table_oid, 16384);
        let written = serde_json::to_value(&versions[0]).unwrap();
        assert_eq!(written["added_later"], 1);
        assert_eq!(written["columns"], serde_json::json!([{"name": "id"}]));
        let tables = diff_tables(&versions, 20);
        assert_eq!(tables, HashMap::from([("\"public\".\"keyed\"".to_owned(), vec!["id".to_owned()])]));
    }

    /// The lake's text of JSON and array columns becomes their values again;
    /// text columns, whatever they hold, stay text.
    #[test]
    fn lake_text_becomes_values_by_column_type() {
        let version: SchemaVersion = serde_json::from_value(serde_json::json!({
            "version": 1, "tableOid": 1, "schema": "public", "table": "t",
            "columns": [
                {"name": "id", "type": "integer", "typeOid": 23, "attnum": 1},
                {"name": "doc", "type": "jsonb", "typeOid": 3802, "attnum": 2},
                {"name": "tags", "type": "text[]", "typeOid": 1009, "attnum": 3},
                {"name": "note", "type": "text", "typeOid": 25, "attnum": 4}
            ]
        }))
        .unwrap();
        let mut changes: Vec<Change> = serde_json::from_value(serde_json::json!([
            {"lsn": 1, "op": "insert", "table": "t",
             "new": {"id": 1, "doc": "{\"a\": [1, 2]}", "tags": "[\"x\", \"y\"]", "note": "[1]"}},
            {"lsn": 2, "op": "delete", "table": "t", "old": {"id": 1, "doc": "\"text in JSON\"", "tags": null, "note": "{}"}},
            {"lsn": 3, "op": "insert", "schema": "other", "table": "t", "new": {"doc": "{}"}}
        ]))
        .unwrap();
        LakeText::of(&[version]).restore(&mut changes);
        let row = |c: &Change| serde_json::Value::Object(c.new.clone().or_else(|| c.old.clone()).unwrap());
        assert_eq!(row(&changes[0]), serde_json::json!({"id": 1, "doc": {"a": [1, 2]}, "tags": ["x", "y"], "note": "[1]"}));
        assert_eq!(row(&changes[1]), serde_json::json!({"id": 1, "doc": "text in JSON", "tags": null, "note": "{}"}));
        assert_eq!(row(&changes[2]), serde_json::json!({"doc": "{}"}), "another schema's table is left alone");
    }

    #[test]
    fn targets_are_bookmarks_lsns_or_timestamps() {
        assert_eq!(Target::parse("lsn:42").unwrap(), Target::Lsn(42));
        assert_eq!(Target::parse(" 42 ").unwrap(), Target::Lsn(42));
        let utc = Target::parse("2026-11-28T07:00:00Z").unwrap();
        assert_eq!(utc, Target::Time(1_795_849_200_000_000));
        assert_eq!(Target::parse("2026-11-28 07:00:00+00").unwrap(), utc);
        assert_eq!(Target::parse("2026-11-28 09:00:00+02").unwrap(), utc);
        assert_eq!(Target::parse("2026-11-28 07:00:00").unwrap(), utc);
        assert_eq!(Target::parse("2026-11-28 07:00:00.25+00").unwrap(), Target::Time(1_795_849_200_250_000));
        assert_eq!(instant_text(1_795_849_200_250_000), "2026-11-28 07:00:00.250000+00");
        for bad in ["", "lsn:", "lsn:-1", "yesterday", "2026-13-01 00:00:00"] {
            assert!(Target::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}

