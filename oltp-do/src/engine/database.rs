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
use crate::error::{DbError, Error, Result};
use crate::protocol::{BatchRequest, BatchResult, QueryResult, RowMode, Statement};
use crate::values::json_to_param;

pub struct TenantDb {
    pg: Pglite,
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
        Ok(Self { pg })
    }

    /// Shut the backend down cleanly (a checkpoint, so the next open needs
    /// no recovery).
    pub fn close(mut self) -> Result<()> {
        self.pg
            .close()
            .map_err(|e| Error::Engine(format!("close: {e:#}")))
    }

    fn round_trip(&mut self, bytes: &[u8], row_mode: RowMode) -> Result<Outcome> {
        let mut options = ExecProtocolOptions::no_sync();
        options.throw_on_error = false;
        let result = self
            .pg
            .exec_protocol(bytes, options)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        Ok(wire::collect(result.messages, row_mode))
    }

    /// Run one statement. Without parameters the simple protocol is used, so
    /// a script of several statements may be sent (run as one implicit
    /// transaction; the last statement's result is returned). With
    /// parameters, exactly one statement.
    fn run(&mut self, stmt: &Statement, row_mode: RowMode, single: bool) -> Result<Outcome> {
        check_sql(&stmt.sql)?;
        let bytes = if stmt.params.is_empty() && !single {
            wire::simple_query(&stmt.sql)
        } else {
            let params: Vec<Option<String>> = stmt.params.iter().map(json_to_param).collect();
            if params.len() > i16::MAX as usize {
                return Err(Error::bad_request(
                    "too_many_params",
                    format!("at most {} parameters per statement", i16::MAX),
                ));
            }
            wire::extended_query(&stmt.sql, &params)
        };
        self.round_trip(&bytes, row_mode)
    }

    /// Run one autocommit statement; a statement that leaves a transaction
    /// open is rolled back and refused, so no request leaks state into the next.
    fn autocommit(&mut self, stmt: &Statement, row_mode: RowMode) -> Result<QueryResult> {
        let mut outcome = self.run(stmt, row_mode, false)?;
        if outcome.status != TxStatus::Idle {
            self.rollback()?;
            return Err(Error::Database(outcome.error.unwrap_or_else(|| {
                DbError::new(
                    "25000",
                    "the statement left a transaction open, so it was rolled back: \
                     send multi-statement transactions to POST transaction",
                )
            })));
        }
        if let Some(err) = outcome.error {
            return Err(Error::Database(err));
        }
        outcome
            .results
            .pop()
            .ok_or_else(|| Error::Database(DbError::new("42601", "no statement was executed")))
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
                return Err(Error::Database(
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
            return Err(Error::Database(err));
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
                return Err(Error::Database(err.at_statement(index)));
            }
            if outcome.status != TxStatus::InTransaction {
                // Defence in depth: something ended the transaction early.
                if outcome.status == TxStatus::Failed {
                    self.rollback()?;
                }
                return Err(Error::Database(
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
            return Err(Error::Database(err));
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
        Ok(json!({ "fingerprint": fingerprint, "tables": tables }))
    }
}

fn at_statement(err: Error, index: usize) -> Error {
    match err {
        Error::Database(db) => Error::Database(db.at_statement(index)),
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
    if sql.trim().is_empty() {
        return Err(Error::Database(DbError::new(
            "42601",
            "empty query: no SQL statement given",
        )));
    }
    Ok(())
}

/// The transaction-control verb a statement starts with, if any (after
/// leading white space and comments).
fn transaction_control(sql: &str) -> Option<String> {
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
