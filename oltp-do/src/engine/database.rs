//! One tenant's PostgreSQL: a PGlite instance and the statement semantics of
//! the HTTP API (query, batch, transaction, schema) on top of it.
//!
//! Synchronous by design: a `TenantDb` lives on its actor's thread and is
//! never touched from an async task.

use std::path::Path;

use pglite_oxide::{ExecProtocolOptions, Pglite};
use serde_json::{Value, json};

use super::settings::EngineSettings;
use super::wire::{self, Outcome, TxStatus};
use crate::sql_split::{only_comments, split};
use crate::error::{DbError, Error, Result};
use crate::protocol::{BatchRequest, BatchResult, QueryResult, RowMode, Statement};
use crate::values::json_to_param;

pub struct TenantDb {
    pg: Pglite,
    /// Capture triggers are kept in step with the schema.
    capture: bool,
    /// A committed transaction wrote to the change log since the last `take_committed_changes`.
    committed_changes: bool,
    /// A schema version was recorded since the last `take_schema_recorded`.
    pub(super) schema_recorded: bool,
    /// A statement may have left session state (settings, prepared
    /// statements, cursors, temporary tables) behind for the next request.
    session_touched: bool,
}

impl TenantDb {
    /// Open the database rooted at `root` (which must hold a cluster: see
    /// `template`), applying the engine settings as startup GUCs.
    pub fn open(root: &Path, settings: &EngineSettings) -> Result<Self> {
        let pg = Pglite::builder()
            .path(root)
            .postgres_configs(settings.gucs())
            .open()
            .map_err(|e| Error::Engine(format!("open {}: {e:#}", root.display())))?;
        let mut db = Self {
            pg,
            capture: settings.capture,
            committed_changes: false,
            schema_recorded: false,
            session_touched: false,
        };
        let opened = std::time::Instant::now();
        db.prepare_capture()?;
        tracing::debug!(capture_ms = opened.elapsed().as_millis() as u64, "capture checked");
        Ok(db)
    }

    /// Shut the backend down cleanly (a checkpoint, so the next open needs
    /// no recovery).
    pub fn close(mut self) -> Result<()> {
        self.pg
            .close()
            .map_err(|e| Error::Engine(format!("close: {e:#}")))
    }

    pub(super) fn round_trip(&mut self, bytes: &[u8], row_mode: RowMode) -> Result<Outcome> {
        let mut options = ExecProtocolOptions::no_sync();
        options.throw_on_error = false;
        let result = self
            .pg
            .exec_protocol(bytes, options)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        let outcome = wire::collect(result.messages, row_mode);
        self.committed_changes |= outcome.notified;
        Ok(outcome)
    }

    /// Write every dirty page out, so the directory is current on disk.
    pub fn checkpoint(&mut self) -> Result<()> {
        let outcome = self.round_trip(&wire::simple_query("CHECKPOINT"), RowMode::Array)?;
        match outcome.error {
            Some(err) => Err(Error::Engine(format!("checkpoint failed: {}", err.message))),
            None => Ok(()),
        }
    }

    pub fn capture_enabled(&self) -> bool {
        self.capture
    }

    /// Every request starts from a clean session, like a new connection:
    /// what one request SET, PREPAREd or created as TEMP is gone for the
    /// next. Only paid after requests that may have left such state.
    pub fn reset_session(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.session_touched) {
            return Ok(());
        }
        let outcome = self.round_trip(&wire::simple_query("DISCARD ALL"), RowMode::Array)?;
        match outcome.error {
            Some(err) => Err(Error::Engine(format!("session reset failed: {}", err.message))),
            None => Ok(()),
        }
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

    /// One statement over the extended protocol; afterwards, if it may have
    /// changed the schema, bring capture in step (in the same transaction).
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
        let outcome = self.round_trip(&wire::extended_query(sql, &params), row_mode)?;
        self.session_touched |= outcome.results.iter().any(|r| touches_session(&r.command, sql));
        if self.capture
            && outcome.error.is_none()
            && outcome.status != TxStatus::Failed
            && outcome.results.iter().any(|r| may_change_schema(&r.command, sql))
        {
            self.sync_schema()?;
        }
        Ok(outcome)
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
            let commit = self.round_trip(&wire::simple_query("COMMIT"), RowMode::Array)?;
            if let Some(err) = commit.error {
                return Err(Error::from(err));
            }
            if let Some(outcome) = &mut last {
                outcome.status = commit.status;
            }
        }
        Ok(last.expect("a script of two or more statements ran at least one"))
    }

    /// Run one autocommit statement; a statement that leaves a transaction
    /// open is rolled back and refused, so no request leaks state into the next.
    fn autocommit(&mut self, stmt: &Statement, row_mode: RowMode) -> Result<QueryResult> {
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

    fn rollback(&mut self) -> Result<()> {
        let outcome = self.round_trip(&wire::simple_query("ROLLBACK"), RowMode::Array)?;
        match outcome.error {
            Some(err) => Err(Error::Engine(format!("rollback failed: {}", err.message))),
            None => Ok(()),
        }
    }

    pub fn query(&mut self, stmt: &Statement, row_mode: RowMode) -> Result<QueryResult> {
        self.autocommit(stmt, row_mode)
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
        if req.read_only {
            begin.push_str(" READ ONLY");
        }
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

        let outcome = self.round_trip(&wire::simple_query("COMMIT"), RowMode::Array)?;
        if let Some(mut err) = outcome.error {
            if outcome.status != TxStatus::Idle {
                self.rollback()?;
            }
            err.message = format!("commit failed, nothing was applied: {}", err.message);
            return Err(Error::from(err));
        }
        Ok(BatchResult { results })
    }

    /// User tables with their columns and primary keys, and a fingerprint of
    /// the whole that changes whenever any of it does.
    pub fn schema(&mut self) -> Result<Value> {
        let stmt = Statement {
            sql: SCHEMA_SQL.to_owned(),
            params: Vec::new(),
        };
        let result = self.autocommit(&stmt, RowMode::Object)?;
        let tables = result
            .rows
            .into_iter()
            .next()
            .and_then(|row| row.get("tables").cloned())
            .filter(|v| !v.is_null())
            .unwrap_or_else(|| json!([]));
        let fingerprint = format!("{:016x}", fnv1a(tables.to_string().as_bytes()));
        let versions = self.schema_history()?;
        Ok(json!({ "fingerprint": fingerprint, "tables": tables, "versions": versions }))
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

fn check_sql(sql: &str) -> Result<()> {
    if sql.contains('\0') {
        return Err(Error::bad_request("invalid_sql", "SQL must not contain a NUL byte"));
    }
    if only_comments(sql) {
        return Err(Error::from(DbError::new(
            "42601",
            "empty query: no SQL statement given",
        )));
    }
    Ok(())
}

/// The transaction-control verb a statement starts with, if any (after
/// leading white space and comments).
pub(super) fn transaction_control(sql: &str) -> Option<String> {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, tail)| tail);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, tail)| tail);
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    const CONTROL: [&str; 8] = [
        "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE",
    ];
    CONTROL.contains(&word.as_str()).then_some(word)
}

/// Whether a completed command may have changed a table's shape, so the
/// capture triggers must be re-checked. Plain DML and session commands
/// cannot; `SELECT … INTO` and `CREATE TABLE … AS` can (their tag is
/// `SELECT`), as can `DO`, `CALL` and everything else.
fn may_change_schema(command: &str, sql: &str) -> bool {
    const DATA_ONLY: [&str; 27] = [
        "INSERT", "UPDATE", "DELETE", "MERGE", "FETCH", "MOVE", "COPY", "SHOW", "SET", "RESET",
        "EXPLAIN", "LISTEN", "NOTIFY", "UNLISTEN", "DISCARD", "DEALLOCATE", "PREPARE", "LOCK",
        "BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "CHECKPOINT",
        "TRUNCATE TABLE", "CLOSE CURSOR",
    ];
    if command == "SELECT" {
        return mentions(sql, &["into", "create"]);
    }
    !(DATA_ONLY.contains(&command) || command == "ANALYZE" || command == "VACUUM")
}

/// Whether a statement may leave state in the session beyond its transaction.
fn touches_session(command: &str, sql: &str) -> bool {
    matches!(
        command,
        "SET" | "RESET" | "PREPARE" | "DECLARE CURSOR" | "LISTEN" | "LOAD" | "SET CONSTRAINTS"
    ) || mentions(sql, &["temp", "set_config"])
}

/// Whether `sql` contains any of `words` (lower-case ASCII), ignoring case,
/// without copying the statement (this runs after every statement).
fn mentions(sql: &str, words: &[&str]) -> bool {
    let bytes = sql.as_bytes();
    words.iter().any(|word| {
        bytes
            .windows(word.len())
            .any(|window| window.eq_ignore_ascii_case(word.as_bytes()))
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Tables outside the system schemas, with columns in order and the
/// primary key, as one JSON document.
const SCHEMA_SQL: &str = r#"
SELECT json_agg(t ORDER BY t.schema, t.name) AS tables FROM (
  SELECT n.nspname AS schema, c.relname AS name,
    (SELECT json_agg(json_build_object(
        'name', a.attname,
        'type', format_type(a.atttypid, a.atttypmod),
        'typeOid', a.atttypid::int,
        'nullable', NOT a.attnotnull,
        'default', pg_get_expr(d.adbin, d.adrelid)) ORDER BY a.attnum)
       FROM pg_attribute a
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
    COALESCE((SELECT json_agg(a.attname ORDER BY k.ord)
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = c.oid AND i.indisprimary), '[]'::json) AS "primaryKey"
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tidelake')
    AND n.nspname NOT LIKE 'pg\_%'
) t
"#;

#[cfg(test)]
mod tests {
    use super::transaction_control;

    #[test]
    fn mentions_ignores_case() {
        assert!(super::mentions("SELECT x INTO t FROM s", &["into"]));
        assert!(super::mentions("create TEMP table t ()", &["nope", "temp"]));
        assert!(!super::mentions("SELECT 1", &["into", "create"]));
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
