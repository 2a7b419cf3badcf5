//! One tenant's PostgreSQL: a PGlite instance and the statement semantics of
//! the HTTP API (query, batch, transaction, schema) on top of it.
//!
//! Synchronous by design: a `TenantDb` lives on its actor's thread and is
//! never touched from an async task.

use std::path::{Path, PathBuf};

use pglite_oxide::{ExecProtocolOptions, HostHandle, Pglite};
use serde_json::Value;

use super::settings::EngineSettings;
use super::watchdog::{Limits, ReadOnly, Stopped, Watch, Watchdog};
use std::sync::Arc;
use super::wire::{self, Outcome, OutcomeExt, TxStatus};
use model::sql::{first_word, may_change_schema, split, touches_session, transaction_control};
use crate::error::{DbError, Error, Result};
use model::api::Unrunnable;
use crate::protocol::{BatchRequest, BatchResult, QueryResult, RowMode, Statement};
use crate::values::json_to_param;

/// The role PostgreSQL's bootstrap superuser has (its oid), whose session
/// PGlite opens.
const BOOTSTRAP_SUPERUSER: i32 = 10;
/// The role tenant SQL runs as (made by `capture.sql`).
const TENANT_ROLE: &str = "tenant";

/// Who the session is. Tenant SQL only ever runs as the tenant; the owner's
/// session (the bootstrap superuser) is for the server's own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// The ordinary role `tenant`, unable to become anyone else.
    Tenant,
    /// The superuser that owns the capture machinery.
    Owner,
}

pub struct TenantDb {
    pg: Pglite,
    host: HostHandle,
    session: Session,
    /// The tenant role's oid, once known.
    tenant_role: i32,
    /// The bootstrap superuser's name.
    owner_name: String,
    /// Capture triggers are kept in step with the schema.
    pub(super) capture: bool,
    /// A committed transaction wrote to the change log since the last `take_committed_changes`.
    pub(super) committed_changes: bool,
    /// A schema version was recorded since the last `take_schema_recorded`.
    pub(super) schema_recorded: bool,
    /// A statement may have left session state (settings, prepared
    /// statements, cursors, temporary tables) behind for the next request.
    pub(super) session_touched: bool,
    /// The limits of the statements run now.
    pub(super) limits: Limits,
    watch: Option<Arc<Watch>>,
    /// The engine was terminated: nothing more runs on it.
    stopped: bool,
    /// A transaction was left open by the last round trip.
    pub(super) in_transaction: bool,
    /// The tenant has code that may change session state (see
    /// `check_session_code`).
    pub(super) code_may_touch_session: bool,
    /// The open transaction changed the catalogs (DDL).
    pub(super) catalog_in_tx: bool,
    /// Where the database lives, when a base backup is to be packed after
    /// schema changes (`back_up_schema_changes`).
    base_root: Option<PathBuf>,
    /// Base backups packed so, not yet taken by the caller.
    taken_bases: Vec<PackedBase>,
    /// A schema change committed and no base backup holds it yet: one is
    /// packed before anything else changes the data (see `base_before`).
    base_due: bool,
    /// What the backend holds for the wire protocol's connections.
    pub(super) wire: super::session::WireBackend,
    /// The extension and type name of each user type OID a result had
    /// (None: no extension's), see `shape_extension_values`.
    extension_types: std::collections::HashMap<i32, Option<(String, String)>>,
    /// The statement about to run is a read whose ETag is wanted (see
    /// `query_tagged`); what its tag is made of, once run.
    want_tag: bool,
    read_tag: Option<ReadTag>,
    /// Each table's newest change seen since the engine opened (by the
    /// names the change log records), and the log's newest LSN when last
    /// looked at (None: not yet).
    table_versions: std::collections::HashMap<(String, String), u64>,
    log_seen: Option<Option<u64>>,
    /// Round trips to the engine so far, and how many there had been when
    /// the change log was last looked at: while nothing but cacheable reads
    /// (which cannot write) ran since, the log is where it was.
    trips: u64,
    log_looked_at: u64,
    /// The read about to run may take the log's head as last looked at.
    log_known: bool,
    /// Rows of ours the round trip under way adds to the answer's (not
    /// counted against the row cap).
    own_rows: u64,
    /// Per read's SQL: the tables its plan reads (None: not cacheable), as
    /// known at that value of the catalogs' invalidation counter.
    read_plans: std::collections::HashMap<String, (i32, Option<String>)>,
    /// Random for each opening of the engine: a tag from before a reopen
    /// (a wake, a restore) never matches one from after.
    incarnation: u64,
}

/// A base backup packed on the engine's thread: the database directory as
/// it is between two transactions.
#[derive(Debug)]
pub struct PackedBase {
    pub packed: crate::archive::Packed,
    /// The newest change-log LSN it holds (0 without capture).
    pub head_lsn: u64,
    /// The commit time of the newest transaction it holds, in µs since the
    /// Unix epoch (None if the engine does not know it).
    pub state_at_us: Option<i64>,
}

impl TenantDb {
    /// Open the database rooted at `root` (which must hold a cluster: see
    /// `template`), applying the engine settings as startup GUCs, with the
    /// capture machinery and the tenant role in place; the session is then
    /// `session`'s.
    pub fn open(root: &Path, settings: &EngineSettings, session: Session) -> Result<Self> {
        let pg = Pglite::builder()
            .path(root)
            .postgres_configs(settings.gucs())
            .open()
            .map_err(Error::pglite(format!("open {}", root.display())))?;
        let host = pg.host_handle();
        // The role switch rests on this static: if it is not where this
        // build says, tenant SQL could not be kept from the superuser.
        match host.read_i32("AuthenticatedUserId") {
            Ok(BOOTSTRAP_SUPERUSER) => {}
            found => {
                return Err(Error::Engine(format!(
                    "this engine build does not expose the session user where expected ({found:?}): \
                     refusing to run tenant SQL without least privilege"
                )));
            }
        }
        let mut db = Self {
            pg,
            host,
            session: Session::Owner,
            tenant_role: 0,
            owner_name: String::new(),
            capture: settings.capture,
            committed_changes: false,
            schema_recorded: false,
            session_touched: false,
            limits: Limits::HOUSEKEEPING,
            watch: None,
            stopped: false,
            in_transaction: false,
            code_may_touch_session: true,
            catalog_in_tx: false,
            base_root: None,
            taken_bases: Vec::new(),
            base_due: false,
            wire: Default::default(),
            extension_types: Default::default(),
            want_tag: false,
            read_tag: None,
            table_versions: Default::default(),
            log_seen: None,
            trips: 0,
            log_looked_at: u64::MAX,
            log_known: false,
            own_rows: 0,
            read_plans: Default::default(),
            incarnation: std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), root),
        };
        let opened = std::time::Instant::now();
        db.trusted("SET search_path = pg_catalog, pg_temp")?;
        db.prepare_capture()?;
        let roles = db.trusted_row(&format!(
            "SELECT (SELECT rolname FROM pg_roles WHERE oid = {BOOTSTRAP_SUPERUSER}) AS owner, \
                    (SELECT oid::int FROM pg_roles WHERE rolname = '{TENANT_ROLE}') AS tenant"
        ))?;
        db.owner_name = roles["owner"].as_str().unwrap_or("postgres").to_owned();
        db.tenant_role = roles["tenant"]
            .as_i64()
            .and_then(|oid| i32::try_from(oid).ok())
            .ok_or_else(|| Error::Engine(format!("role {TENANT_ROLE} is missing")))?;
        db.check_session_code()?;
        if session == Session::Tenant {
            db.become_tenant()?;
        }
        tracing::debug!(capture_ms = opened.elapsed().as_millis() as u64, "capture checked");
        Ok(db)
    }

    /// From now on, pack a base backup of the database (rooted at `root`)
    /// after every schema change, before the data changes again — so every
    /// instant after a schema change, but for those inside a run of schema
    /// changes no other statement separates, has a base backup with that
    /// schema (`take_bases` hands them over). The backup is packed when a
    /// statement that is not one that may change the schema is about to run
    /// (`base_before`), when the tenant has been idle for a moment
    /// (`pack_due_base`, from the actor), or when it closes: a migration of
    /// ten DDL statements costs one or two backups, not ten.
    pub fn back_up_schema_changes(&mut self, root: &Path) {
        self.base_root = Some(root.to_owned());
    }

    /// A base backup is due (a schema change no backup holds yet).
    pub fn base_due(&self) -> bool {
        self.base_due
    }

    /// Pack the due base backup, if one is due.
    pub fn pack_due_base(&mut self) {
        if !std::mem::take(&mut self.base_due) {
            return;
        }
        let Some(root) = self.base_root.clone() else { return };
        let began = std::time::Instant::now();
        match self.pack_base(&root) {
            Ok(base) => {
                tracing::debug!(lsn = base.head_lsn, bytes = base.packed.bytes.len(), took_ms = began.elapsed().as_millis() as u64,
                    "base backup packed after a schema change");
                self.taken_bases.push(base);
            }
            // The schema change stands; the periodic backup covers it later.
            Err(err) => tracing::warn!(error = %err, "could not pack a base backup after a schema change"),
        }
    }

    /// Before statements `sql` run (outside any transaction): the due base
    /// backup, unless every one of them may change the schema (then the
    /// backup after them holds their state too).
    pub(super) fn base_before<'a>(&mut self, mut sql: impl Iterator<Item = &'a str>) {
        if self.base_due && !self.in_transaction && !sql.all(may_change_schema) {
            self.pack_due_base();
        }
    }

    /// The base backups packed since the last call.
    pub fn take_bases(&mut self) -> Vec<PackedBase> {
        std::mem::take(&mut self.taken_bases)
    }

    /// Pack the database as it is now (between transactions): a
    /// checkpoint, then its directory.
    pub fn pack_base(&mut self, root: &Path) -> Result<PackedBase> {
        self.checkpoint()?;
        let (head_lsn, state_at_us) = if self.capture {
            let at = self.as_owner(|db| {
                db.trusted_row("SELECT floor(extract(epoch FROM (pg_last_committed_xact()).timestamp) * 1000000)::bigint AS at")
            })?;
            (self.log_stats()?.head_lsn, at["at"].as_i64())
        } else {
            (0, None)
        };
        let packed = crate::archive::pack(root)?;
        // This backup holds every schema change so far.
        self.base_due = false;
        Ok(PackedBase { packed, head_lsn, state_at_us })
    }

    /// The database has a schema no base backup of its holds (a new tenant
    /// copied from a template its migrations made): a base backup is due.
    pub fn schema_changed(&mut self) {
        if self.base_root.is_some() {
            self.base_due = true;
        }
    }

    /// A transaction committed: if it changed the schema, a base backup is due.
    pub(super) fn committed(&mut self) {
        if std::mem::take(&mut self.catalog_in_tx) && self.base_root.is_some() {
            self.base_due = true;
        }
    }

    /// Who the session is now.
    pub fn session(&self) -> Session {
        self.session
    }

    /// A handle other threads may use to cancel what this database runs,
    /// watch its output, or stop it for good.
    pub fn host_handle(&self) -> HostHandle {
        self.host.clone()
    }

    /// Drop a database whose engine was stopped (or must not be trusted)
    /// without shutting it down: its files are as after a crash, and the
    /// next open recovers every committed transaction from the WAL.
    pub fn abandon(self) {
        self.pg.abandon();
    }

    /// Switch the session to the tenant role, with no way back for the SQL
    /// that runs in it: PostgreSQL lets a session become another role only
    /// if the user it authenticated as is a superuser, and that user is
    /// now the tenant role too.
    fn become_tenant(&mut self) -> Result<()> {
        self.trusted(&format!("SET SESSION AUTHORIZATION {TENANT_ROLE}; RESET search_path"))?;
        self.host
            .write_i32("AuthenticatedUserId", self.tenant_role)
            .map_err(Error::pglite("set the session user"))?;
        self.session = Session::Tenant;
        Ok(())
    }

    /// Switch the session back to the owner (between requests only: never
    /// inside a transaction).
    fn become_owner(&mut self) -> Result<()> {
        self.host
            .write_i32("AuthenticatedUserId", BOOTSTRAP_SUPERUSER)
            .map_err(Error::pglite("set the session user"))?;
        let owner = model::sql::quote_ident(&self.owner_name);
        self.trusted(&format!("SET SESSION AUTHORIZATION {owner}; SET search_path = pg_catalog, pg_temp"))?;
        self.session = Session::Owner;
        Ok(())
    }

    /// Run `work` as the owner: the server's own writes to the change log
    /// (acknowledgements, trimming) and superuser-only commands.
    pub(super) fn as_owner<T>(&mut self, work: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.session == Session::Owner {
            return work(self);
        }
        // A wire connection's session keeps its search_path (the way back
        // resets it).
        let kept_path = if self.wire_session_kept() {
            self.trusted_row("SELECT pg_catalog.current_setting('search_path') AS path")?["path"].as_str().map(str::to_owned)
        } else {
            None
        };
        self.become_owner()?;
        let result = work(self);
        // Tenant SQL must never run as the owner: if the way back fails,
        // the database is not used again (the actor restarts it).
        if let Err(err) = self.become_tenant() {
            return Err(Error::Engine(format!("could not return the session to the tenant role: {err}")));
        }
        if let Some(path) = kept_path {
            let literal = format!("'{}'", path.replace('\'', "''"));
            self.trusted(&format!("SELECT pg_catalog.set_config('search_path', {literal}, false)"))?;
        }
        result
    }

    /// Run `work` in the tenant's session (from the owner's, for the
    /// server's writes to tenant tables during a restore).
    pub(super) fn as_tenant<T>(&mut self, work: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.session == Session::Tenant {
            return work(self);
        }
        self.become_tenant()?;
        let result = work(self);
        self.become_owner()?;
        result
    }

    /// An operator's script, as the owner (see `maintenance`): every
    /// statement's result; the first error is returned as such.
    pub fn owner_script(&mut self, sql: &str) -> Result<Vec<QueryResult>> {
        // The operator's names resolve as a client's do, not as ours.
        let outcome = self.as_owner(|db| {
            db.trusted("RESET search_path")?;
            let outcome = db.round_trip(&wire::simple_query(sql), RowMode::Object);
            db.trusted("SET search_path = pg_catalog, pg_temp")?;
            outcome
        })?;
        Ok(outcome.or_client_error()?.results)
    }

    /// A round trip of the server's own (a sync, a reset, a rollback, a
    /// check) while a request runs: under the server's limits, never the
    /// request's (a client's 1 ms timeout is for its statements).
    pub(super) fn own_round_trip(&mut self, bytes: &[u8], row_mode: RowMode) -> Result<Outcome> {
        let limits = std::mem::replace(&mut self.limits, Limits::HOUSEKEEPING);
        let outcome = self.round_trip(bytes, row_mode);
        self.limits = limits;
        outcome
    }

    /// A trusted script of ours (no parameters); any error is an engine error.
    pub(super) fn trusted(&mut self, sql: &str) -> Result<()> {
        let outcome = self.own_round_trip(&wire::simple_query(sql), RowMode::Array)?;
        outcome.or_ours(sql.lines().next().unwrap_or(sql)).map(drop)
    }

    /// The first row of a trusted query of ours.
    fn trusted_row(&mut self, sql: &str) -> Result<Value> {
        let outcome = self.own_round_trip(&wire::extended_query(sql, &[]), RowMode::Object)?.or_ours(sql)?;
        Ok(outcome.results.into_iter().last().and_then(|r| r.rows.into_iter().next()).unwrap_or(Value::Null))
    }

    /// Shut the backend down cleanly (a checkpoint, so the next open needs
    /// no recovery).
    pub fn close(mut self) -> Result<()> {
        self.pg
            .close()
            .map_err(Error::pglite("close"))
    }

    /// Send protocol messages and fold the answer, within the statement
    /// limits: a statement over its timeout, or whose answer outgrows the
    /// cap, is stopped and fails with the limit named.
    pub(super) fn round_trip(&mut self, bytes: &[u8], row_mode: RowMode) -> Result<Outcome> {
        if self.stopped {
            return Err(Error::Engine("the tenant's engine was stopped; it reopens with the next request".into()));
        }
        // Our extended queries use the unnamed statement.
        self.forget_unnamed();
        let (data, stopped) = self.exchange(bytes)?;
        let mut outcome = wire::collect(&data, row_mode);
        drop(data);
        if row_mode != RowMode::Text {
            self.shape_extension_values(&mut outcome.results, row_mode);
        }
        self.committed_changes |= outcome.notified;
        self.in_transaction = outcome.status != TxStatus::Idle;
        let rows = (outcome.results.iter().map(|r| r.rows.len()).sum::<usize>() as u64).saturating_sub(self.own_rows);
        let over = match stopped {
            Some(why) => Some(why),
            None if rows > self.limits.max_result_rows => Some(Stopped::TooManyRows(self.limits.max_result_rows)),
            None => None,
        };
        if let Some(why) = over {
            // The statement's own error (57014 when it was cancelled) is
            // replaced by the limit that stopped it; its rows are dropped.
            // One that ran to its end anyway (a write's RETURNING rows are
            // sent once it has run) committed: the error says so.
            let completed = outcome.error.is_none() && outcome.status == TxStatus::Idle;
            let answer_refused = matches!(why, Stopped::TooLarge(_) | Stopped::TooManyRows(_));
            let err = limit_error(why);
            outcome.error = Some(if completed && answer_refused { err.after_completion() } else { err });
            for result in &mut outcome.results {
                result.rows = Vec::new();
            }
        }
        Ok(outcome)
    }

    /// Values of extension types JSON has a shape for (a pgvector `vector`
    /// as an array of numbers, an hstore as an object) in that shape; the
    /// types of the result's columns are looked up once per engine.
    fn shape_extension_values(&mut self, results: &mut [QueryResult], row_mode: RowMode) {
        // Types made by CREATE TYPE or an extension have OIDs from here on.
        const FIRST_NORMAL_OID: i32 = 16384;
        let unknown: Vec<i32> = results
            .iter()
            .flat_map(|r| &r.fields)
            .map(|f| f.data_type_id)
            .filter(|oid| *oid >= FIRST_NORMAL_OID && !self.extension_types.contains_key(oid))
            .collect();
        if !unknown.is_empty() {
            self.look_up_extension_types(unknown);
        }
        for result in results {
            for (i, field) in result.fields.iter().enumerate() {
                let Some(Some((extension, type_name))) = self.extension_types.get(&field.data_type_id) else { continue };
                let unique = result.fields.iter().filter(|f| f.name == field.name).count() == 1;
                for row in &mut result.rows {
                    let value = match (row_mode, row) {
                        (RowMode::Object, Value::Object(row)) if unique => row.get_mut(&field.name),
                        (RowMode::Array, Value::Array(row)) => row.get_mut(i),
                        _ => None,
                    };
                    if let Some(value) = value
                        && let Some(shaped) = value.as_str().and_then(|text| model::values::extension_value(extension, type_name, text))
                    {
                        *value = shaped;
                    }
                }
            }
        }
    }

    /// Which extension (and type name) each of these type OIDs belongs to,
    /// remembered for the engine's life (an OID names one type until it is
    /// dropped). A failed look-up (inside a failed transaction) is tried
    /// again next time.
    fn look_up_extension_types(&mut self, mut oids: Vec<i32>) {
        oids.sort_unstable();
        oids.dedup();
        let list = oids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT t.oid::int AS oid, e.extname::text AS extension, t.typname::text AS type \
             FROM pg_catalog.pg_type t \
             JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = t.oid AND d.deptype = 'e' \
             JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid \
             WHERE t.oid IN ({list})"
        );
        let Ok(outcome) = self.own_round_trip(&wire::extended_query(&sql, &[]), RowMode::Object) else { return };
        if outcome.error.is_some() {
            return;
        }
        for oid in &oids {
            self.extension_types.insert(*oid, None);
        }
        for row in outcome.results.iter().flat_map(|r| &r.rows) {
            if let (Some(oid), Some(extension), Some(type_name)) =
                (row["oid"].as_i64(), row["extension"].as_str(), row["type"].as_str())
            {
                self.extension_types.insert(oid as i32, Some((extension.to_owned(), type_name.to_owned())));
            }
        }
    }

    /// Send protocol messages and return the raw answer, within the
    /// statement limits (and which stopped it, if one did). A statement
    /// that would not stop stops the engine: an error.
    pub(super) fn exchange(&mut self, bytes: &[u8]) -> Result<(Vec<u8>, Option<Stopped>)> {
        if self.stopped {
            return Err(Error::Engine("the tenant's engine was stopped; it reopens with the next request".into()));
        }
        let mut options = ExecProtocolOptions::no_sync();
        options.throw_on_error = false;
        if let Some(watch) = &self.watch {
            watch.arm(&self.limits);
        }
        self.trips += 1;
        let result = self.pg.exec_protocol_raw(bytes, options);
        let (stopped, terminated) = self.watch.as_ref().map_or((None, false), |w| w.disarm());
        if terminated || self.host.is_terminated() {
            self.stopped = true;
            let err = stopped.map_or_else(
                || DbError::new("57014", "the statement was stopped"),
                |why| limit_error(why),
            );
            return Err(Error::from(DbError {
                message: format!(
                    "{}; it did not stop when cancelled, so the tenant's engine was stopped and reopens \
                     with the next request (every committed transaction is kept)",
                    err.message
                ),
                ..err
            }));
        }
        // An engine that failed mid-exchange is not trusted again: the actor
        // drops it and the next request reopens it (WAL recovery keeps every
        // committed transaction).
        let data = result.inspect_err(|_| self.stopped = true).map_err(Error::pglite("run a round trip"))?;
        Ok((data, stopped))
    }

    /// The limits of the statements that follow (a client's request's, or
    /// the server's own work's).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Have the process's watchdog enforce the limits of this database's
    /// statements.
    pub fn watch_with(&mut self, watchdog: &Watchdog) {
        self.watch = Some(watchdog.watch(self.host.clone()));
    }

    /// Stop the statement running now, if any (from another thread).
    pub fn canceller(&self) -> Option<Arc<Watch>> {
        self.watch.clone()
    }

    /// Whether the engine was stopped for good (a statement that would not
    /// stop): the database must be abandoned, not closed.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Bytes of memory the engine holds (its WebAssembly linear memory,
    /// which never shrinks while it is open).
    pub fn memory_bytes(&self) -> usize {
        self.host.memory_size()
    }

    /// Write every dirty page out, so the directory is current on disk.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.as_owner(|db| db.trusted("CHECKPOINT"))
    }

    pub fn capture_enabled(&self) -> bool {
        self.capture
    }

    /// Every request starts from a clean session, like a new connection:
    /// what one request SET, PREPAREd or created as TEMP is gone for the
    /// next. Only paid after requests that may have left such state.
    pub fn reset_session(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        // Whatever failed half-way, no transaction outlives its request.
        if self.in_transaction {
            self.rollback()?;
        }
        // A wire connection's session stays until another needs the backend.
        if self.session_is_wires() {
            return Ok(());
        }
        if !std::mem::take(&mut self.session_touched) && !self.code_may_touch_session {
            return Ok(());
        }
        // DISCARD ALL less DISCARD PLANS: the plans of the capture triggers
        // stay cached.
        self.trusted(model::sql::RESET_SESSION_SQL)?;
        self.wire = Default::default();
        Ok(())
    }

    /// Whether the tenant has functions that may leave session state behind
    /// (their bodies set settings, prepare, declare, listen, lock, make
    /// temporary tables or run dynamic SQL): then every request is followed
    /// by a session reset, since any query may call one. Looked up when the
    /// database opens and after every change to the catalogs.
    pub(super) fn check_session_code(&mut self) -> Result<()> {
        let row = self.trusted_row(model::sql::SESSION_CODE_SQL)?;
        self.code_may_touch_session = row["hazard"].as_bool().unwrap_or(true);
        Ok(())
    }

    /// Whether a schema version was recorded (a table created, altered or
    /// dropped) since the last call.
    pub fn take_schema_recorded(&mut self) -> bool {
        std::mem::take(&mut self.schema_recorded)
    }

    /// Whether a transaction that wrote to the change log committed since
    /// the last call.
    pub fn take_committed_changes(&mut self) -> bool {
        std::mem::take(&mut self.committed_changes)
    }

    /// One statement over the extended protocol. A statement that may change
    /// the schema has capture brought in step in the same transaction (one
    /// round trip): if capture cannot follow the change, the statement fails
    /// with it and nothing is applied. A schema change made where no
    /// statement shows it (a function called from a query) is followed as
    /// soon as it is seen: the catalogs' invalidation counters say so.
    pub(super) fn statement(
        &mut self,
        sql: &str,
        params: &[Value],
        row_mode: RowMode,
    ) -> Result<Outcome> {
        if params.len() > i16::MAX as usize {
            return Err(Error::bad_request(
                "too_many_params",
                format!("at most {} parameters per statement", i16::MAX),
            ));
        }
        let params: Vec<Option<String>> = params.iter().map(json_to_param).collect();
        let wants_tag = std::mem::take(&mut self.want_tag) && model::sql::reads_only(sql);
        self.base_before(std::iter::once(sql));
        let follow = self.capture && may_change_schema(sql);
        let mut bytes = Vec::with_capacity(sql.len() + 96);
        wire::execute(&mut bytes, sql, &params);
        if follow {
            wire::execute(&mut bytes, SYNC_SCHEMA_SQL, &[]);
        }
        // What the read's tag is made of, in its transaction: the tables
        // its plan reads (known from an earlier request while the catalogs
        // have not changed since: `planned`) and where the change log
        // stands (unless nothing that could move it ran since last asked).
        let before = self.catalog_marker();
        let queue_at = if wants_tag && !follow { before.queue } else { None };
        let planned = queue_at.and_then(|queue| self.read_plans.get(sql).filter(|(at, _)| *at == queue).map(|(_, t)| t.clone()));
        let tagging = match (&planned, queue_at) {
            (Some(Some(tables)), Some(_)) if self.log_known => {
                self.read_tag = Some(ReadTag { tables: Some(tables.clone()), head: None });
                false
            }
            // (Tables not known yet are asked after it: see `query_tagged`.)
            (None | Some(Some(_)), Some(_)) => {
                wire::execute(&mut bytes, LOG_HEAD_SQL, &[]);
                true
            }
            _ => false,
        };
        wire::sync(&mut bytes);
        let recorded_before = std::mem::take(&mut self.schema_recorded);
        // The log's head is a row of ours, not one of the answer's.
        self.own_rows = u64::from(tagging);
        let outcome = self.round_trip(&bytes, row_mode);
        self.own_rows = 0;
        let mut outcome = outcome?;
        let changed = self.catalog_changed(before, outcome.status);
        if follow {
            self.take_sync_result(&mut outcome);
        }
        if tagging && outcome.error.is_none() && outcome.results.len() == 2 {
            let result = outcome.results.pop().expect("two results");
            let head = match result.rows.into_iter().next() {
                Some(Value::Object(row)) => row.into_iter().next().map(|(_, v)| v),
                Some(Value::Array(row)) => row.into_iter().next(),
                _ => None,
            };
            let head = head.as_ref().and_then(Value::as_str).and_then(|h| h.parse::<u64>().ok());
            // (Asked only for tables known, or not known yet.)
            self.read_tag = Some(ReadTag { tables: planned.flatten(), head: Some(head) });
        }
        refuse_rolled_back_commit(sql, &mut outcome);
        outcome.error = outcome.error.take().map(DbError::protecting_capture);
        self.session_touched |= outcome.results.iter().any(|r| touches_session(&r.command, sql));
        self.after_statement(sql, follow, changed, outcome.error.is_none(), outcome.status, recorded_before)?;
        Ok(outcome)
    }

    /// After a statement sent with `SYNC_SCHEMA_SQL` behind it: take the
    /// sync's result out of the outcome, or make its failure the
    /// statement's (the transaction has rolled both back).
    fn take_sync_result(&mut self, outcome: &mut Outcome) {
        match (outcome.results.len(), &mut outcome.error) {
            (2, None) => {
                let sync = outcome.results.pop().expect("two results");
                // (The row is in the request's row mode: an object or an array.)
                let recorded = sync.rows.first().and_then(|row| match row {
                    Value::Object(map) => map.values().next().and_then(Value::as_i64),
                    other => other[0].as_i64(),
                });
                self.schema_recorded |= recorded.is_some_and(|n| n > 0);
            }
            // The statement ran, capture did not (a refusal of capture's
            // own says so itself).
            (1, Some(err)) if err.code != "42501" => {
                err.message = format!(
                    "change capture could not follow this schema change, so the statement was rolled back: {}",
                    err.message
                );
                outcome.results.clear();
            }
            (1, Some(_)) => outcome.results.clear(),
            _ => {}
        }
    }

    /// Where the catalogs' invalidation counters stand: the shared queue's
    /// next message number (moves when a transaction that changed the
    /// catalogs commits) and whether the open transaction changed them.
    pub(super) fn catalog_marker(&self) -> CatalogMarker {
        let queue = self.host.read_i32("shmInvalBuffer").ok().and_then(|seg| {
            // `SISeg`: minMsgNum, then maxMsgNum.
            self.host.read_i32_at((seg as u32).wrapping_add(4))
        });
        let in_transaction = self.host.read_i32("transInvalInfo").is_ok_and(|info| info != 0);
        CatalogMarker { queue, in_transaction }
    }

    /// Whether the statement just run changed the catalogs: committed
    /// (`status` idle), or in the open transaction for the first time.
    pub(super) fn catalog_changed(&self, before: CatalogMarker, status: TxStatus) -> bool {
        let after = self.catalog_marker();
        match status {
            TxStatus::Idle => after.queue != before.queue,
            _ => after.in_transaction && !before.in_transaction,
        }
    }

    /// Run what one request statement holds. With parameters, or inside a
    /// transaction (`single`), exactly one statement. Without parameters, a
    /// script: its statements run one by one — inside one implicit
    /// transaction unless the script manages transactions itself — stopping
    /// at the first error; the last statement's result is returned.
    fn run(&mut self, stmt: &Statement, row_mode: RowMode, single: bool) -> Result<Outcome> {
        check_sql(&stmt.sql)?;
        if !stmt.params.is_empty() || single {
            return self.statement(&stmt.sql, &stmt.params, row_mode);
        }
        let pieces = split(&stmt.sql);
        if pieces.len() <= 1 {
            return self.statement(&stmt.sql, &[], row_mode);
        }
        let implicit = !pieces.iter().any(|p| transaction_control(p).is_some());
        if implicit {
            self.base_before(pieces.iter().copied());
            let begin = self.round_trip(&wire::simple_query("BEGIN"), RowMode::Array)?;
            if let Some(err) = begin.error {
                return Err(Error::from(err));
            }
        }
        let mut last = None;
        for piece in pieces {
            let outcome = self.statement(piece, &[], row_mode)?;
            if outcome.error.is_some() {
                if implicit {
                    self.rollback()?;
                    return Ok(Outcome {
                        status: TxStatus::Idle,
                        ..outcome
                    });
                }
                return Ok(outcome);
            }
            last = Some(outcome);
        }
        if implicit {
            let mut commit = self.round_trip(&wire::simple_query("COMMIT"), RowMode::Array)?;
            refuse_rolled_back_commit("COMMIT", &mut commit);
            if let Some(err) = commit.error {
                self.catalog_in_tx = false;
                return Err(Error::from(err));
            }
            self.committed();
            if let Some(outcome) = &mut last {
                outcome.status = commit.status;
            }
        }
        Ok(last.expect("a script of two or more statements ran at least one"))
    }

    /// Run one autocommit statement; a statement that leaves a transaction
    /// open is rolled back and refused, so no request leaks state into the next.
    fn autocommit(&mut self, stmt: &Statement, row_mode: RowMode) -> Result<QueryResult> {
        if let Some(why) = self.limits.read_only {
            return self.read_only(stmt, row_mode, why);
        }
        let mut outcome = self.run(stmt, row_mode, false)?;
        if outcome.status != TxStatus::Idle {
            self.rollback()?;
            return Err(Error::from(outcome.error.unwrap_or_else(|| {
                DbError::new(
                    "25000",
                    "the statement left a transaction open, so it was rolled back: \
                     send multi-statement transactions to POST transaction",
                )
            })));
        }
        if let Some(err) = outcome.error {
            return Err(Error::from(err));
        }
        outcome
            .results
            .pop()
            .ok_or_else(|| Error::from(DbError::new("42601", "no statement was executed")))
    }

    /// Over the disk quota, or for a caller who may only read: the
    /// request's statements run in one read-only transaction, which tenant
    /// SQL cannot make read-write (a snapshot is taken before it runs) nor
    /// end (transaction control is refused).
    fn read_only(&mut self, stmt: &Statement, row_mode: RowMode, why: ReadOnly) -> Result<QueryResult> {
        check_sql(&stmt.sql)?;
        let pieces = if stmt.params.is_empty() { split(&stmt.sql) } else { vec![stmt.sql.as_str()] };
        if pieces.iter().any(|p| transaction_control(p).is_some()) {
            return Err(Error::from(read_only_refusal(why)));
        }
        self.trusted("BEGIN READ ONLY; SELECT")?;
        let mut last = None;
        for piece in pieces {
            let params = if stmt.params.is_empty() { &[][..] } else { &stmt.params[..] };
            let outcome = self.statement(piece, params, row_mode)?;
            if let Some(err) = outcome.error {
                self.rollback()?;
                return Err(Error::from(read_only_error(err, why)));
            }
            if outcome.status != TxStatus::InTransaction {
                // Defence in depth: something ended the read-only transaction.
                self.rollback()?;
                return Err(Error::from(read_only_refusal(why)));
            }
            last = outcome.results.into_iter().last();
        }
        self.trusted("COMMIT")?;
        last.ok_or_else(|| Error::from(DbError::new("42601", "no statement was executed")))
    }

    pub(super) fn rollback(&mut self) -> Result<()> {
        self.catalog_in_tx = false;
        // A stopped engine took its open transaction with it.
        if self.stopped {
            return Ok(());
        }
        self.own_round_trip(&wire::simple_query("ROLLBACK"), RowMode::Array)?.or_ours("rollback").map(drop)
    }

    pub fn query(&mut self, stmt: &Statement, row_mode: RowMode) -> Result<QueryResult> {
        self.autocommit(stmt, row_mode)
    }

    /// A request's statement, with the ETag of its answer when it is a
    /// read whose answer can be cached: one statement that only reads,
    /// whose plan calls nothing that changes without a write
    /// (`tidelake.read_tables`). The tag is made of the tables the plan
    /// reads with each one's newest change, the catalogs' invalidation
    /// counter (any schema change, a view or function replaced, moves it),
    /// this opening of the engine, and the request itself (SQL, parameters,
    /// row mode): a write to one of those tables changes it, a write
    /// elsewhere does not.
    pub fn query_tagged(&mut self, stmt: &Statement, row_mode: RowMode) -> Result<(QueryResult, Option<String>)> {
        self.want_tag = !stmt.params.is_empty() || split(&stmt.sql).len() == 1;
        self.read_tag = None;
        self.log_known = self.trips == self.log_looked_at && self.log_seen.is_some();
        let result = self.autocommit(stmt, row_mode);
        self.want_tag = false;
        self.log_known = false;
        let read = self.read_tag.take();
        let result = result?;
        let (Some(read), Some(queue)) = (read, self.catalog_marker().queue) else {
            return Ok((result, None));
        };
        // First seen since the catalogs changed: what its plan reads.
        let tables = match read.tables {
            Some(tables) => tables,
            None => match self.plan_tables(&stmt.sql, queue)? {
                Some(tables) => tables,
                None => return Ok((result, None)),
            },
        };
        if let Some(head) = read.head {
            self.follow_log(head)?;
        }
        // A cacheable read wrote nothing: the log is where it was looked at.
        self.log_looked_at = self.trips;
        let Ok(tables) = serde_json::from_str::<Vec<(String, String)>>(&tables) else {
            return Ok((result, None));
        };
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        part(&self.incarnation.to_le_bytes());
        part(&queue.to_le_bytes());
        for (schema, table) in tables {
            let version = self.table_versions.get(&(schema.clone(), table.clone())).copied().unwrap_or(0);
            part(schema.as_bytes());
            part(table.as_bytes());
            part(&version.to_le_bytes());
        }
        part(stmt.sql.as_bytes());
        part(serde_json::to_string(&stmt.params).unwrap_or_default().as_bytes());
        part(format!("{row_mode:?}").as_bytes());
        let digest = hash.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Ok((result, Some(format!("W/\"{hex}\""))))
    }

    /// What the plan of read `sql` reads (`tidelake.read_tables`, in a
    /// transaction of its own after the read), remembered while the
    /// catalogs' counter stays at `queue`; None if its answer cannot be
    /// cached (or its plan cannot be made).
    fn plan_tables(&mut self, sql: &str, queue: i32) -> Result<Option<String>> {
        let outcome = self.own_round_trip(&wire::extended_query(READ_TABLES_SQL, &[Some(sql.to_owned())]), RowMode::Array)?;
        let tables = match outcome.error {
            Some(_) => None,
            None => outcome.results.into_iter().last().and_then(|r| r.rows.into_iter().next()).and_then(|row| row[0].as_str().map(str::to_owned)),
        };
        if self.read_plans.len() >= MAX_READ_PLANS {
            self.read_plans.clear();
        }
        if sql.len() <= MAX_READ_PLAN_SQL {
            self.read_plans.insert(sql.to_owned(), (queue, tables.clone()));
        }
        Ok(tables)
    }

    /// Bring `table_versions` up to the change log's newest LSN `head`: the
    /// tables the changes since the last look wrote get those changes'
    /// LSNs. Changes trimmed from the log before they were seen cannot be
    /// told apart: every tag of this opening is dropped then (a new
    /// incarnation), never kept stale.
    fn follow_log(&mut self, head: Option<u64>) -> Result<()> {
        let Some(seen) = self.log_seen else {
            self.log_seen = Some(head);
            return Ok(());
        };
        if seen == head {
            return Ok(());
        }
        let since = seen.unwrap_or(0);
        let outcome = self
            .own_round_trip(&wire::extended_query(CHANGED_TABLES_SQL, &[Some(since.to_string())]), RowMode::Object)?
            .or_ours("change log tables")?;
        let row = outcome.results.into_iter().last().and_then(|r| r.rows.into_iter().next()).unwrap_or(Value::Null);
        let first = row["first"].as_str().and_then(|f| f.parse::<u64>().ok());
        let changed: Vec<(String, String, String)> =
            row["changed"].as_str().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
        if trimmed_unseen(seen, first) {
            self.incarnation = self.incarnation.wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.table_versions.clear();
        }
        for (schema, table, lsn) in changed {
            if let Ok(lsn) = lsn.parse::<u64>() {
                self.table_versions.insert((schema, table), lsn);
            }
        }
        self.log_seen = Some(head);
        Ok(())
    }

    /// Statements in order, each committed on its own; stops at the first
    /// failure, whose error carries its index (all before it are committed).
    pub fn batch(&mut self, req: &BatchRequest) -> Result<BatchResult> {
        let mut results = Vec::with_capacity(req.statements.len());
        for (index, stmt) in req.statements.iter().enumerate() {
            match self.autocommit(stmt, req.row_mode) {
                Ok(result) => results.push(result),
                Err(err) => return Err(at_statement(err, index)),
            }
        }
        Ok(BatchResult { results })
    }

    /// All statements in one transaction: every one applied, or none.
    pub fn transaction(&mut self, req: &BatchRequest) -> Result<BatchResult> {
        for (index, stmt) in req.statements.iter().enumerate() {
            if let Some(word) = transaction_control(&stmt.sql) {
                return Err(Error::from(
                    DbError::new(
                        "25000",
                        format!(
                            "{word} is not allowed inside POST transaction: \
                             the endpoint begins and commits the transaction itself"
                        ),
                    )
                    .at_statement(index),
                ));
            }
        }
        let mut begin = String::from("BEGIN");
        if let Some(level) = req.isolation_level {
            begin.push_str(" ISOLATION LEVEL ");
            begin.push_str(level.sql());
        }
        if req.read_only || self.limits.read_only.is_some() {
            begin.push_str(" READ ONLY");
        }
        if self.limits.read_only.is_some() {
            // A snapshot: from here on the transaction cannot be made read-write.
            begin.push_str("; SELECT");
        }
        self.base_before(req.statements.iter().map(|s| s.sql.as_str()));
        let outcome = self.round_trip(&wire::simple_query(&begin), RowMode::Array)?;
        if let Some(err) = outcome.error {
            let _ = self.rollback();
            return Err(Error::from(err));
        }

        let mut results = Vec::with_capacity(req.statements.len());
        for (index, stmt) in req.statements.iter().enumerate() {
            let outcome = match self.run(stmt, req.row_mode, true) {
                Ok(outcome) => outcome,
                Err(err) => {
                    self.rollback()?;
                    return Err(at_statement(err, index));
                }
            };
            if let Some(err) = outcome.error {
                self.rollback()?;
                let err = match self.limits.read_only {
                    Some(why) => read_only_error(err, why),
                    None => err,
                };
                return Err(Error::from(err.at_statement(index)));
            }
            if outcome.status != TxStatus::InTransaction {
                // Defence in depth: something ended the transaction early.
                if outcome.status == TxStatus::Failed {
                    self.rollback()?;
                }
                return Err(Error::from(
                    DbError::new("25000", "the statement ended the transaction early")
                        .at_statement(index),
                ));
            }
            results.extend(outcome.results);
        }

        let mut outcome = self.round_trip(&wire::simple_query("COMMIT"), RowMode::Array)?;
        refuse_rolled_back_commit("COMMIT", &mut outcome);
        if let Some(mut err) = outcome.error {
            if outcome.status != TxStatus::Idle {
                self.rollback()?;
            }
            err.message = format!("commit failed, nothing was applied: {}", err.message);
            self.catalog_in_tx = false;
            return Err(Error::from(err));
        }
        self.committed();
        Ok(BatchResult { results })
    }

    /// User tables with their columns and primary keys, and a fingerprint of
    /// the whole that changes whenever any of it does.
    pub fn schema(&mut self) -> Result<Value> {
        let stmt = Statement {
            sql: model::schema::SCHEMA_SQL.to_owned(),
            params: Vec::new(),
        };
        let result = self.autocommit(&stmt, RowMode::Object)?;
        let versions = self.schema_history()?;
        Ok(model::schema::answer(result.rows, &versions))
    }
}

/// Run after a statement that may have changed the schema.
pub(super) const SYNC_SCHEMA_SQL: &str = "SELECT tidelake.sync_schema()";

/// See `TenantDb::catalog_marker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CatalogMarker {
    queue: Option<i32>,
    in_transaction: bool,
}

/// The error of a write refused because the tenant is over its disk quota.
fn quota_error((used, quota): (u64, u64)) -> DbError {
    let mut err = DbError::new(
        "53100",
        format!("the tenant is over its disk quota ({used} bytes of {quota}): writes are refused, reads go on"),
    );
    err.hint = Some("delete data through the operator, or raise the tenant's diskQuota".into());
    err
}

/// Why a request that may only read was refused.
pub(super) fn read_only_refusal(why: ReadOnly) -> DbError {
    match why {
        ReadOnly::Quota(used, quota) => quota_error((used, quota)),
        ReadOnly::Scope => DbError::read_scope(),
        ReadOnly::Get => {
            let mut err = DbError::new("25006", "a GET request only reads: this statement writes");
            err.hint = Some("send it with POST /t/{tenant}/query".into());
            err
        }
    }
}

/// In a read-only transaction kept for the disk quota or the caller's
/// scope, a refused write (SQLSTATE 25006) is that refusal.
pub(super) fn read_only_error(err: DbError, why: ReadOnly) -> DbError {
    if err.code == "25006" {
        DbError { detail: Some(err.message), ..read_only_refusal(why) }
    } else {
        err
    }
}

/// The error a statement stopped by a limit gets.
pub(super) fn limit_error(why: Stopped) -> DbError {
    match why {
        Stopped::Timeout(after) => {
            let mut err = DbError::new(
                "57014",
                format!(
                    "canceling statement due to statement timeout: it ran longer than {} (the statement timeout)",
                    humantime_duration(after)
                ),
            );
            err.hint = Some("the tenant's statementTimeout setting, or a lower statementTimeout in the request, sets it".into());
            err
        }
        Stopped::Cancelled => DbError::new("57014", "canceling statement due to user request"),
        Stopped::TooLarge(bytes) => DbError::result_too_large_bytes(bytes),
        Stopped::TooManyRows(rows) => DbError::result_too_large_rows(rows),
    }
}

/// `30s`, `1.5s`, `250ms`.
fn humantime_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

fn at_statement(err: Error, index: usize) -> Error {
    match err {
        Error::Database(mut db) => {
            db.statement_index = Some(index);
            Error::Database(db)
        }
        Error::BadRequest { code, message } => Error::BadRequest {
            code,
            message: format!("statement {index}: {message}"),
        },
        other => other,
    }
}

/// Whether changes after `seen` (the log's newest LSN when last looked at;
/// None: it was empty) may have been trimmed before they could be seen, the
/// log now starting at `first` (None: empty). LSNs have no gaps, so a first
/// LSN past `seen + 1` says so; after an empty log, where the next LSN
/// begins is not known here, so any change counts.
pub(super) fn trimmed_unseen(seen: Option<u64>, first: Option<u64>) -> bool {
    match (seen, first) {
        (Some(seen), Some(first)) => first > seen + 1,
        (Some(_), None) | (None, Some(_)) => true,
        (None, None) => false,
    }
}

/// What `tidelake.read_tables` and the change log said of a read just run.
#[derive(Debug)]
struct ReadTag {
    /// JSON: the [schema, table] names its plan reads (None: not known yet).
    tables: Option<String>,
    /// The change log's newest LSN (None: the log is empty), if asked.
    head: Option<Option<u64>>,
}

/// What a read's ETag is made of (see `query_tagged`): the tables its plan
/// reads (once per statement text, after it), and the change log's newest
/// LSN (in the read's transaction).
const READ_TABLES_SQL: &str = "SELECT tidelake.read_tables($1)::text AS tables";
const LOG_HEAD_SQL: &str = "SELECT max(lsn)::text AS head FROM tidelake.changes";
/// Which tables the changes after an LSN wrote (each one's newest), and
/// where the log now starts.
const CHANGED_TABLES_SQL: &str = "SELECT (SELECT min(lsn) FROM tidelake.changes)::text AS first, \
     coalesce(json_agg(json_build_array(t.table_schema, t.table_name, t.lsn::text)), '[]')::text AS changed \
     FROM (SELECT table_schema, table_name, max(lsn) AS lsn FROM tidelake.changes WHERE lsn > $1::bigint GROUP BY 1, 2) t";
/// Reads whose tables are remembered (the map is emptied when full), and
/// the longest SQL remembered (a longer read is planned each time).
const MAX_READ_PLANS: usize = 512;
const MAX_READ_PLAN_SQL: usize = 8 * 1024;

fn check_sql(sql: &str) -> Result<()> {
    model::api::runnable(sql).map_err(|refused| match refused {
        Unrunnable::Invalid(code, message) => Error::bad_request(code, message),
        Unrunnable::Db(err) => Error::from(err),
    })
}

/// A COMMIT that PostgreSQL answers with ROLLBACK (the transaction had
/// already failed) committed nothing: that is an error, not a success.
fn refuse_rolled_back_commit(sql: &str, outcome: &mut Outcome) {
    let word = first_word(sql);
    if outcome.error.is_none()
        && (word == "COMMIT" || word == "END")
        && outcome.results.last().is_some_and(|r| r.command == "ROLLBACK")
    {
        outcome.error = Some(DbError::new(
            "25P02",
            "the transaction was rolled back, not committed: an earlier statement in it failed",
        ));
    }
}



#[cfg(test)]
mod tests {
    use super::transaction_control;
    use model::sql::creates_temporary;

    #[test]
    fn mentions_ignores_case() {
        assert!(model::sql::mentions("SELECT x INTO t FROM s", &["into"]));
        assert!(model::sql::mentions("create TEMP table t ()", &["nope", "temp"]));
        assert!(!model::sql::mentions("SELECT 1", &["into", "create"]));
    }

    #[test]
    fn temporary_objects_are_no_schema_change() {
        assert!(creates_temporary("CREATE TEMP TABLE t (x int)"));
        assert!(creates_temporary("/* c */ create local temporary table t (x int)"));
        assert!(!creates_temporary("CREATE TABLE temp (x int)"));
        assert!(!creates_temporary("CREATE TABLE t (x int)"));
        assert!(!creates_temporary("ALTER TABLE temp ADD COLUMN x int"));
    }

    #[test]
    fn schema_changes_are_foreseen_by_the_first_word() {
        for ddl in ["CREATE TABLE t (x int)", "alter table t add y int", "DO $$ BEGIN END $$", "CALL p()",
                    "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "SELECT 1 INTO t", "-- c\n DROP TABLE t", "COMMENT ON TABLE t IS 'x'"] {
            assert!(super::may_change_schema(ddl), "{ddl}");
        }
        for dml in ["SELECT 1", "insert into t values (1)", "UPDATE t SET x = 1", "WITH a AS (SELECT 1) SELECT * FROM a",
                    "BEGIN", "TRUNCATE t", "SET x = 1", "VALUES (1)"] {
            assert!(!super::may_change_schema(dml), "{dml}");
        }
    }

    #[test]
    fn a_commit_answered_with_rollback_is_an_error() {
        let rolled_back = || super::Outcome {
            results: vec![crate::protocol::QueryResult { command: "ROLLBACK".into(), row_count: None, fields: vec![], rows: vec![] }],
            error: None,
            status: super::TxStatus::Idle,
            notified: false,
        };
        let mut outcome = rolled_back();
        super::refuse_rolled_back_commit(" commit", &mut outcome);
        assert_eq!(outcome.error.map(|e| e.code), Some("25P02".to_owned()));
        let mut outcome = rolled_back();
        super::refuse_rolled_back_commit("ROLLBACK", &mut outcome);
        assert!(outcome.error.is_none());
    }

    #[test]
    fn finds_transaction_control_behind_comments() {
        assert_eq!(transaction_control("commit").as_deref(), Some("COMMIT"));
        assert_eq!(
            transaction_control("  -- note\n /* x */ Rollback to s").as_deref(),
            Some("ROLLBACK")
        );
        assert_eq!(transaction_control("SELECT 'commit'"), None);
        assert_eq!(transaction_control("ending()"), None);
        assert_eq!(transaction_control("UPDATE t SET x = 1"), None);
    }
}
