//! The tenant's engine as the Durable Object drives it: PGlite through
//! `js/engine.js`, spoken to in the PostgreSQL protocol (`model::wire`), with
//! tenant SQL in the least-privileged role as on the server — the session is
//! switched by writing the authenticated user where the template builder
//! found and proved this PGlite build keeps it.

use model::api::{BatchRequest, BatchResult, ChangePage, DbError, QueryResult, RowMode, Statement, Unrunnable};
use model::sql::{may_change_schema, split, transaction_control};
use model::wire::{self, Outcome, TxStatus};
use model::log::LogStats;
use model::{Change, EngineSettings, SchemaVersion};
use serde::Deserialize;
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/js/engine.js")]
extern "C" {
    #[wasm_bindgen(js_name = engineStart, catch)]
    fn engine_start(key: &str, storage: &JsValue, settings: &str, bucket: &JsValue) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(js_name = engineState)]
    fn engine_state(key: &str) -> String;
    #[wasm_bindgen(js_name = engineExchange, catch)]
    fn engine_exchange(key: &str, message: &[u8], max_bytes: f64, max_rows: f64) -> Result<Vec<u8>, JsValue>;
    #[wasm_bindgen(js_name = engineOver)]
    fn engine_over(key: &str) -> String;
    #[wasm_bindgen(js_name = enginePersist, catch)]
    fn engine_persist(key: &str) -> Result<u32, JsValue>;
    #[wasm_bindgen(js_name = engineReadI32, catch)]
    fn engine_read_i32(key: &str, address: u32) -> Result<i32, JsValue>;
    #[wasm_bindgen(js_name = engineWriteI32, catch)]
    fn engine_write_i32(key: &str, address: u32, value: i32) -> Result<(), JsValue>;
    #[wasm_bindgen(js_name = engineSizes, catch)]
    fn engine_sizes(key: &str) -> Result<String, JsValue>;
    #[wasm_bindgen(js_name = engineFacts)]
    fn engine_facts() -> String;
}

/// The capture's schema sync, run behind any statement that may change the
/// schema (as `oltp-do` does).
const SYNC_SCHEMA_SQL: &str = "SELECT tidelake.sync_schema()";
const CHANGES_SQL: &str = "SELECT * FROM tidelake.read_changes($1::bigint, $2::bigint)";
const POSITION_SQL: &str =
    "SELECT tidelake.next_lsn() - 1 AS head, (SELECT coalesce(max(version), 0) FROM tidelake.schema_versions) AS version";

/// Where a tenant's change log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub head_lsn: u64,
    pub schema_version: i64,
}

/// The caps on an answer to a client's SQL (the server's
/// `maxResultBytes`, `maxResultRows`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_result_bytes: u64,
    pub max_result_rows: u64,
    /// The most WebAssembly memory the engine may grow to.
    pub engine_memory: u64,
}

/// The engine's memory cap unless `ENGINE_MEMORY` says otherwise: room for
/// the object's JavaScript side within a Worker isolate's 128 MB.
pub const DEFAULT_ENGINE_MEMORY: u64 = 96 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_result_bytes: model::api::DEFAULT_MAX_RESULT_BYTES,
            max_result_rows: model::api::DEFAULT_MAX_RESULT_ROWS,
            engine_memory: DEFAULT_ENGINE_MEMORY,
        }
    }
}

/// What one statement's temporary files may take at the edge (they are in
/// memory): over it, the statement fails with 53400.
pub const TEMP_FILE_LIMIT: &str = "64MB";

/// The engine's shared buffers at the edge: the server's default, so that
/// an object's engine stays small (a Worker isolate has 128 MB).
pub const SHARED_BUFFERS: &str = "4MB";

/// What `js/template.mjs` found and proved of the PGlite build.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Facts {
    authenticated_user_id_address: u32,
    bootstrap_superuser: i32,
    tenant_role: i32,
    owner: String,
}

/// A failure on our side (the engine, its bridge): a 500.
#[derive(Debug)]
pub struct Ours(pub String);

/// What a request to the engine ends in.
#[derive(Debug)]
pub enum Failure {
    /// The client's SQL or data: PostgreSQL's error.
    Db(DbError),
    /// A request the API refuses before the engine sees it: code, message.
    Bad(&'static str, String),
    /// Changes asked for were trimmed from the change log (410).
    Gone(String),
    /// The tenant's archive cannot be brought back (`archive_corrupt`,
    /// `archive_missing`, `archive_unavailable`): a 500 naming it; the
    /// tenant stays where it is.
    Archive(String, String),
    Ours(Ours),
}

impl From<DbError> for Failure {
    /// PostgreSQL's error as the client gets it (a refusal to touch the
    /// capture triggers said as the permission it is, as on the server).
    fn from(err: DbError) -> Self {
        Failure::Db(err.protecting_capture())
    }
}

impl From<Ours> for Failure {
    fn from(err: Ours) -> Self {
        Failure::Ours(err)
    }
}

/// What a JavaScript exception says.
pub fn js_message(err: JsValue) -> String {
    err.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| err.as_string())
        .unwrap_or_else(|| format!("{err:?}"))
}

fn js_error(what: &str, err: JsValue) -> Ours {
    Ours(format!("{what}: {}", js_message(err)))
}

/// `loaded`, `loading` or `hibernated`, without waking anything.
pub fn state(key: &str) -> String {
    engine_state(key)
}

/// Start the engine (from the template and what the object stores, brought
/// back from its archive first if the tenant is warm or cold) unless it
/// runs; resolves once it answers, in the tenant's session.
pub async fn start(key: &str, storage: &JsValue, bucket: &JsValue, limits: Limits) -> Result<Engine, Failure> {
    let mut settings = EngineSettings { shared_buffers: SHARED_BUFFERS.to_owned(), ..EngineSettings::default() };
    // Temporary files (sorts, hashes, materialized results that outgrow
    // work_mem) live in the object's memory here, not on a disk.
    settings.extra.insert("temp_file_limit".to_owned(), TEMP_FILE_LIMIT.to_owned());
    let settings = json!({ "gucs": settings.gucs(), "memoryCap": limits.engine_memory }).to_string();
    let first = engine_state(key) == "hibernated";
    let started = engine_start(key, storage, &settings, bucket).map_err(|e| js_error("start the engine", e))?;
    if let Err(err) = wasm_bindgen_futures::JsFuture::from(started).await {
        let code = js_sys::Reflect::get(&err, &"code".into()).ok().and_then(|c| c.as_string());
        return Err(match code {
            Some(code) if code.starts_with("archive_") => {
                let message = js_error("bring the tenant back from its archive", err).0;
                Failure::Archive(code, message)
            }
            _ => Failure::Ours(js_error("start the engine", err)),
        });
    }
    let facts: Facts = serde_json::from_str(&engine_facts()).map_err(|e| Ours(format!("engine facts: {e}")))?;
    let engine = Engine { key: key.to_owned(), facts, limits, touched: std::cell::Cell::new(false) };
    if first {
        engine.prepare()?;
    }
    Ok(engine)
}

pub struct Engine {
    key: String,
    facts: Facts,
    limits: Limits,
    /// This request ran a statement that may leave state in the session.
    touched: std::cell::Cell<bool>,
}

thread_local! {
    /// Per engine: whether the tenant has functions that may leave state in
    /// the session (`model::sql::SESSION_CODE_SQL`); looked up again after
    /// any statement that may change the catalogs.
    static SESSION_CODE: std::cell::RefCell<std::collections::HashMap<String, bool>> = Default::default();
}

impl Engine {
    /// Right after the engine started: prove the session switch works here
    /// (or refuse to run tenant SQL at all), then enter the tenant's session.
    fn prepare(&self) -> Result<(), Ours> {
        let found = engine_read_i32(&self.key, self.facts.authenticated_user_id_address)
            .map_err(|e| js_error("read the session user", e))?;
        if found != self.facts.bootstrap_superuser {
            return Err(Ours(format!(
                "this engine build does not keep the session user where expected ({found}): \
                 refusing to run tenant SQL without least privilege"
            )));
        }
        self.trusted("SET search_path = pg_catalog, pg_temp")?;
        self.become_tenant()
    }

    fn become_tenant(&self) -> Result<(), Ours> {
        self.trusted("SET SESSION AUTHORIZATION tenant; RESET search_path")?;
        engine_write_i32(&self.key, self.facts.authenticated_user_id_address, self.facts.tenant_role)
            .map_err(|e| js_error("set the session user", e))
    }

    fn become_owner(&self) -> Result<(), Ours> {
        engine_write_i32(&self.key, self.facts.authenticated_user_id_address, self.facts.bootstrap_superuser)
            .map_err(|e| js_error("set the session user", e))?;
        let owner = model::sql::quote_ident(&self.facts.owner);
        self.trusted(&format!("SET SESSION AUTHORIZATION {owner}; SET search_path = pg_catalog, pg_temp"))
    }

    /// Run `work` as the owner (the change log's reads), and back.
    fn as_owner<T>(&self, work: impl FnOnce(&Self) -> Result<T, Failure>) -> Result<T, Failure> {
        self.become_owner()?;
        let result = work(self);
        self.become_tenant()?;
        result
    }

    /// Write what the engine changed to the object's storage (before the
    /// answer leaves: the output gate holds it until this is durable).
    pub fn persist(&self) -> Result<u32, Ours> {
        engine_persist(&self.key).map_err(|e| js_error("store the tenant's pages", e))
    }

    /// The engine's memory, and where it woke from.
    pub fn sizes(&self) -> Value {
        engine_sizes(&self.key).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null)
    }

    /// One round trip of our own statements (no caps).
    fn exchange(&self, message: &[u8], row_mode: RowMode) -> Result<Outcome, Ours> {
        let answer = engine_exchange(&self.key, message, 0.0, 0.0).map_err(|e| js_error("the engine failed", e))?;
        Ok(wire::collect(&answer, row_mode))
    }

    /// One round trip of a client's SQL, within the answer caps: an answer
    /// over one fails with `result_too_large` (its statement cancelled, its
    /// rows dropped), as on the server.
    fn exchange_client(&self, message: &[u8], row_mode: RowMode) -> Result<Outcome, Ours> {
        let Limits { max_result_bytes, max_result_rows, .. } = self.limits;
        let answer = engine_exchange(&self.key, message, max_result_bytes as f64, max_result_rows as f64)
            .map_err(|e| js_error("the engine failed", e))?;
        let mut outcome = wire::collect(&answer, row_mode);
        let over = engine_over(&self.key);
        if !over.is_empty() {
            let over: Value = serde_json::from_str(&over).unwrap_or_default();
            let refused = match over["rows"].as_u64() {
                Some(rows) => DbError::result_too_large_rows(rows),
                None => DbError::result_too_large_bytes(over["bytes"].as_u64().unwrap_or(max_result_bytes)),
            };
            // The cancel came after the end (rows of a write's RETURNING
            // are sent once it has run): it committed.
            let completed = outcome.error.is_none() && outcome.status == TxStatus::Idle;
            outcome.error = Some(if completed { refused.after_completion() } else { refused });
            for result in &mut outcome.results {
                result.rows = Vec::new();
            }
        }
        Ok(outcome)
    }

    fn trusted(&self, sql: &str) -> Result<(), Ours> {
        let outcome = self.exchange(&wire::simple_query(sql), RowMode::Array)?;
        match outcome.error {
            Some(err) => Err(Ours(format!("{}: {err}", sql.lines().next().unwrap_or(sql)))),
            None => Ok(()),
        }
    }

    fn rollback(&self) -> Result<(), Ours> {
        self.trusted("ROLLBACK")
    }

    /// One autocommit request statement: with parameters exactly one
    /// statement; without, a script whose statements run in one implicit
    /// transaction. A statement that may change the schema has the capture's
    /// sync behind it in the same transaction.
    ///
    /// For a caller who may only read, the statements run in one read-only
    /// transaction that tenant SQL cannot end (transaction control is
    /// refused), as on the server.
    fn autocommit(&self, stmt: &Statement, row_mode: RowMode, may_write: bool) -> Result<QueryResult, Failure> {
        check_sql(&stmt.sql)?;
        let pieces = if stmt.params.is_empty() { split(&stmt.sql) } else { vec![stmt.sql.as_str()] };
        // A writer's script may manage its own transactions (it then runs
        // without the implicit one's atomicity, as on the server); a reader's
        // may not end its read-only transaction.
        if !may_write && pieces.iter().any(|p| transaction_control(p).is_some()) {
            return Err(DbError::read_scope().into());
        }
        let params: Vec<Option<String>> = stmt.params.iter().map(model::values::json_to_param).collect();
        let mut bytes = Vec::with_capacity(stmt.sql.len() + 96);
        if !may_write {
            // The snapshot taken at once: no statement can make it read-write.
            wire::execute(&mut bytes, "BEGIN READ ONLY", &[]);
            wire::execute(&mut bytes, "SELECT", &[]);
        }
        let mut syncs = Vec::new();
        for piece in &pieces {
            wire::execute(&mut bytes, piece, if stmt.params.is_empty() { &[] } else { &params });
            if may_write && may_change_schema(piece) {
                wire::execute(&mut bytes, SYNC_SCHEMA_SQL, &[]);
                syncs.push(true);
            } else {
                syncs.push(false);
            }
        }
        if !may_write {
            wire::execute(&mut bytes, "COMMIT", &[]);
        }
        wire::sync(&mut bytes);
        let outcome = self.exchange_client(&bytes, row_mode)?;
        self.note_statement(&stmt.sql, &outcome.results);
        let left_open = outcome.status != TxStatus::Idle;
        if left_open {
            self.rollback()?;
        }
        if let Some(err) = outcome.error {
            return Err(if may_write { err } else { err.under_read_scope() }.into());
        }
        if left_open {
            return Err(DbError::new(
                "25000",
                "the statement left a transaction open, so it was rolled back: \
                 send multi-statement transactions to POST transaction",
            )
            .into());
        }
        // The last statement's result (BEGIN's, COMMIT's and the syncs' dropped).
        let mut results = outcome.results.into_iter().skip(if may_write { 0 } else { 2 });
        let mut last = None;
        for sync in syncs {
            last = results.next();
            if sync {
                results.next();
            }
        }
        last.ok_or_else(|| DbError::new("42601", "no statement was executed").into())
    }

    pub fn query(&self, stmt: &Statement, row_mode: RowMode, may_write: bool) -> Result<QueryResult, Failure> {
        let result = self.autocommit(stmt, row_mode, may_write);
        self.reset_session()?;
        result
    }

    /// Every request starts from a clean session, like a new connection
    /// (as on the server): what one request SET, PREPAREd, opened or made
    /// TEMP is gone for the next. The session user stays the tenant.
    /// Paid only after requests that may have left such state.
    fn reset_session(&self) -> Result<(), Ours> {
        let hazard = match SESSION_CODE.with_borrow(|code| code.get(&self.key).copied()) {
            Some(hazard) => hazard,
            None => {
                let row = self.as_owner(|db| Ok(db.owner_rows(model::sql::SESSION_CODE_SQL, &[])?.into_iter().next()));
                let hazard = match row {
                    Ok(row) => row.and_then(|r| r["hazard"].as_bool()).unwrap_or(true),
                    Err(Failure::Ours(ours)) => return Err(ours),
                    Err(_) => true,
                };
                SESSION_CODE.with_borrow_mut(|code| code.insert(self.key.clone(), hazard));
                hazard
            }
        };
        if !self.touched.replace(false) && !hazard {
            return Ok(());
        }
        self.trusted(model::sql::RESET_SESSION_SQL)
    }

    /// Note what a statement may have left behind: state in the session,
    /// or functions that may (a catalog change: looked up again).
    fn note_statement(&self, sql: &str, results: &[QueryResult]) {
        if results.iter().any(|r| model::sql::touches_session(&r.command, sql)) || model::sql::mentions(sql, &["temp"]) {
            self.touched.set(true);
        }
        if split(sql).iter().any(|piece| may_change_schema(piece)) {
            self.touched.set(true);
            SESSION_CODE.with_borrow_mut(|code| code.remove(&self.key));
        }
    }

    /// Statements in order, each committed on its own; stops at the first
    /// failure, whose error carries its index (all before it are committed).
    pub fn batch(&self, req: &BatchRequest, may_write: bool) -> Result<BatchResult, Failure> {
        let result = self.batch_statements(req, may_write);
        self.reset_session()?;
        result
    }

    fn batch_statements(&self, req: &BatchRequest, may_write: bool) -> Result<BatchResult, Failure> {
        let mut results = Vec::with_capacity(req.statements.len());
        for (index, stmt) in req.statements.iter().enumerate() {
            match self.autocommit(stmt, req.row_mode, may_write) {
                Ok(result) => results.push(result),
                Err(Failure::Db(err)) => return Err(err.at_statement(index).into()),
                Err(other) => return Err(other),
            }
        }
        Ok(BatchResult { results })
    }

    /// All statements in one transaction: every one applied, or none; read
    /// only for a caller who may only read.
    pub fn transaction(&self, req: &BatchRequest, may_write: bool) -> Result<BatchResult, Failure> {
        let result = self.one_transaction(req, may_write);
        self.reset_session()?;
        result
    }

    fn one_transaction(&self, req: &BatchRequest, may_write: bool) -> Result<BatchResult, Failure> {
        for (index, stmt) in req.statements.iter().enumerate() {
            check_sql(&stmt.sql).map_err(|f| match f {
                Failure::Db(err) => Failure::Db(err.at_statement(index)),
                other => other,
            })?;
            if let Some(word) = transaction_control(&stmt.sql) {
                if !may_write {
                    return Err(DbError::read_scope().at_statement(index).into());
                }
                return Err(DbError::new(
                    "25000",
                    format!(
                        "{word} is not allowed inside POST transaction: \
                         the endpoint begins and commits the transaction itself"
                    ),
                )
                .at_statement(index)
                .into());
            }
        }
        let mut begin = String::from("BEGIN");
        if let Some(level) = req.isolation_level {
            begin.push_str(" ISOLATION LEVEL ");
            begin.push_str(level.sql());
        }
        if req.read_only || !may_write {
            begin.push_str(" READ ONLY");
        }
        let mut bytes = Vec::new();
        wire::execute(&mut bytes, &begin, &[]);
        if !may_write {
            // The snapshot taken at once: no statement can make it read-write.
            wire::execute(&mut bytes, "SELECT", &[]);
        }
        // Where each statement's result is in the answer.
        let mut syncs = Vec::with_capacity(req.statements.len());
        for stmt in &req.statements {
            let params: Vec<Option<String>> = stmt.params.iter().map(model::values::json_to_param).collect();
            wire::execute(&mut bytes, &stmt.sql, &params);
            let follow = may_write && may_change_schema(&stmt.sql);
            if follow {
                wire::execute(&mut bytes, SYNC_SCHEMA_SQL, &[]);
            }
            syncs.push(follow);
        }
        wire::execute(&mut bytes, "COMMIT", &[]);
        wire::sync(&mut bytes);
        let outcome = self.exchange_client(&bytes, req.row_mode)?;
        for stmt in &req.statements {
            self.note_statement(&stmt.sql, &outcome.results);
        }
        let scoped = |err: DbError| if may_write { err } else { err.under_read_scope() };
        let mut results = outcome.results.into_iter().skip(if may_write { 1 } else { 2 });
        let mut kept = Vec::with_capacity(req.statements.len());
        for (index, follow) in syncs.iter().enumerate() {
            match results.next() {
                Some(result) => kept.push(result),
                None => {
                    if outcome.status != TxStatus::Idle {
                        self.rollback()?;
                    }
                    let err = outcome.error.unwrap_or_else(|| DbError::new("XX000", "the transaction ended early"));
                    return Err(scoped(err).at_statement(index).into());
                }
            }
            if *follow && results.next().is_none() {
                if outcome.status != TxStatus::Idle {
                    self.rollback()?;
                }
                let mut err = outcome.error.unwrap_or_else(|| DbError::new("XX000", "the transaction ended early"));
                err.message = format!(
                    "change capture could not follow this schema change, so the transaction was rolled back: {}",
                    err.message
                );
                return Err(err.at_statement(index).into());
            }
        }
        let commit = results.next();
        if outcome.status != TxStatus::Idle {
            self.rollback()?;
        }
        if let Some(err) = outcome.error {
            return Err(scoped(err).into());
        }
        if commit.is_some_and(|c| c.command == "ROLLBACK") {
            return Err(DbError::new("40000", "the transaction was rolled back at COMMIT").into());
        }
        Ok(BatchResult { results: kept })
    }

    /// The tenant's tables and the schema versions its change log recorded,
    /// as the server answers `schema`.
    pub fn schema(&self) -> Result<Value, Failure> {
        let outcome = self.exchange(&wire::extended_query(model::schema::SCHEMA_SQL, &[]), RowMode::Object)?;
        if let Some(err) = outcome.error {
            return Err(Ours(format!("schema read: {err}")).into());
        }
        let rows = outcome.results.into_iter().last().map(|r| r.rows).unwrap_or_default();
        let versions = self.as_owner(|db| {
            let rows = db.owner_rows(model::schema::SCHEMA_HISTORY_SQL, &[])?;
            rows.into_iter()
                .map(|row| {
                    serde_json::from_value::<SchemaVersion>(row)
                        .map_err(|e| Ours(format!("a schema version of the change log: {e}")).into())
                })
                .collect::<Result<Vec<_>, Failure>>()
        })?;
        Ok(model::schema::answer(rows, &versions))
    }

    /// Up to `limit` changes after `since`, in LSN order.
    pub fn changes(&self, since: u64, limit: u64) -> Result<ChangePage, Failure> {
        self.as_owner(|db| {
            let rows = db.owner_rows(CHANGES_SQL, &[json!(since), json!(limit)])?;
            let changes = rows
                .into_iter()
                .map(|row| match row {
                    Value::Object(object) => Change::try_from(object).map_err(|why| Ours(format!("a change log row that is not a change: {why}"))),
                    other => Err(Ours(format!("a change log row that is not an object: {other}"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let stats = model::log::stats(&mut { db })?;
            if let Some(message) = model::log::trimmed_after(since, stats.tail_lsn) {
                return Err(Failure::Gone(message));
            }
            let next_lsn = changes.last().map_or(since, |c| c.lsn);
            // Read in the same request as the changes: nothing commits between.
            let version = db.owner_rows(POSITION_SQL, &[])?.into_iter().next().and_then(|row| row["version"].as_i64());
            Ok(ChangePage {
                changes,
                next_lsn,
                head_lsn: stats.head_lsn.max(next_lsn),
                tail_lsn: stats.tail_lsn,
                schema_version: Some(version.unwrap_or(0)),
            })
        })
    }

    /// Where the change log stands: its newest LSN and the newest schema
    /// version recorded (what the tenant directory is told, for the lake).
    pub fn position(&self) -> Result<Position, Failure> {
        let row = self.as_owner(|db| Ok(db.owner_rows(POSITION_SQL, &[])?.into_iter().next()))?.unwrap_or(Value::Null);
        Ok(Position { head_lsn: row["head"].as_u64().unwrap_or(0), schema_version: row["version"].as_i64().unwrap_or(0) })
    }

    /// The change log's extent and size, and the lowest acknowledged LSN.
    pub fn log_stats(&self) -> Result<LogStats, Failure> {
        self.as_owner(|db| model::log::stats(&mut { db }))
    }

    /// A consumer has taken every change up to `lsn`: recorded, and the log
    /// trimmed as on the server (`model::log`).
    pub fn acknowledge(&self, consumer: &str, lsn: u64) -> Result<LogStats, Failure> {
        self.as_owner(|db| model::log::acknowledge(&mut { db }, consumer, lsn, model::log::DEFAULT_RETENTION))
    }

    fn owner_rows(&self, sql: &str, params: &[Value]) -> Result<Vec<Value>, Ours> {
        let params: Vec<Option<String>> = params.iter().map(model::values::json_to_param).collect();
        let outcome = self.exchange(&wire::extended_query(sql, &params), RowMode::Object)?;
        if let Some(err) = outcome.error {
            return Err(Ours(format!("change log read: {err}")));
        }
        Ok(outcome.results.into_iter().last().map(|r| r.rows).unwrap_or_default())
    }
}

/// The change log's bookkeeping (`model::log`), in the owner's session.
impl model::log::LogSession for &Engine {
    type Error = Failure;

    fn owner_row(&mut self, sql: &str, params: &[Value]) -> Result<Option<Value>, Failure> {
        Ok(self.owner_rows(sql, params)?.into_iter().next())
    }

    fn owner_statement(&mut self, sql: &str, params: &[Value]) -> Result<Result<(), DbError>, Failure> {
        let params: Vec<Option<String>> = params.iter().map(model::values::json_to_param).collect();
        let outcome = self.exchange(&wire::extended_query(sql, &params), RowMode::Array)?;
        Ok(outcome.error.map_or(Ok(()), Err))
    }
}

fn check_sql(sql: &str) -> Result<(), Failure> {
    model::api::runnable(sql).map_err(|refused| match refused {
        Unrunnable::Invalid(code, message) => Failure::Bad(code, message.to_owned()),
        Unrunnable::Db(err) => err.into(),
    })
}
