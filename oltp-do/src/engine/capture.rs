//! Change capture inside a tenant database (DESIGN.md §3): installing the
//! change log and its triggers, keeping the triggers in step with the
//! schema, reading the log, and trimming it below what consumers acknowledged.

use std::time::Duration;

use model::{Change, SchemaVersion};
use serde::Serialize;
use serde_json::{Value, json};

use super::database::TenantDb;
use super::wire::{self, OutcomeExt, TxStatus};
use crate::error::{DbError, Error, Result};
use crate::protocol::RowMode;

/// Bumped with every change to `capture.sql`; older tenants are upgraded
/// when next opened.
const CAPTURE_VERSION: &str = "12";
const INSTALL_SQL: &str = include_str!("capture.sql");

pub use model::api::ChangePage;

pub use model::log::LogStats;

const OPEN_PROBE_SQL: &str = r#"
SELECT (SELECT value FROM tidelake.meta WHERE key = 'capture_version') AS version,
       (SELECT value FROM tidelake.meta WHERE key = 'schema_fingerprint') AS stored,
       tidelake.schema_fingerprint() AS current"#;

/// Brings every table's capture in step after an install or upgrade.
const CAPTURE_ON_SQL: &str = "SELECT tidelake.reinstall_all(); SELECT tidelake.sync_schema()";

const CHANGES_SQL: &str = "SELECT * FROM tidelake.read_changes($1::bigint, $2::bigint)";


/// What the change log tells of an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LsnAt {
    /// The newest LSN committed at or before the instant (0: none).
    pub lsn: u64,
    /// Whether the log still holds every change up to the instant, so
    /// `lsn` is exact (else older changes were trimmed, or precede a restore).
    pub covered: bool,
}

const LSN_AT_SQL: &str = "SELECT * FROM tidelake.lsn_at($1::timestamptz)";



impl TenantDb {
    /// In the owner's session, when the database opens: make sure the
    /// tenant role and the change log exist (installing or upgrading them)
    /// and, with capture on, bring the triggers in step with tables created
    /// while capture could not see them.
    pub(super) fn prepare_capture(&mut self) -> Result<()> {
        // One plain-SQL probe: installed version, and whether any table
        // changed since the triggers were last brought in step (only a
        // crash between a schema change and its sync can cause that).
        let probe = self
            .round_trip(&wire::extended_query(OPEN_PROBE_SQL, &[]), RowMode::Object)?
            .results
            .pop()
            .and_then(|r| r.rows.into_iter().next());
        let version = probe.as_ref().and_then(|r| r["version"].as_str());
        if version != Some(CAPTURE_VERSION) {
            self.script(INSTALL_SQL)?;
            return if self.capture_enabled() { self.script(CAPTURE_ON_SQL) } else { Ok(()) };
        }
        let in_step = probe
            .as_ref()
            .is_some_and(|r| r["stored"].is_string() && r["stored"] == r["current"]);
        if self.capture_enabled() && !in_step {
            self.sync_schema()?;
        }
        Ok(())
    }

    /// Run a trusted script of ours; any error is an engine error.
    fn script(&mut self, sql: &str) -> Result<()> {
        self.round_trip(&wire::simple_query(sql), RowMode::Array)?.or_ours("capture setup").map(drop)
    }

    /// Record schema versions for changed tables and rewrite their triggers.
    pub(super) fn sync_schema(&mut self) -> Result<()> {
        let outcome = self.own_round_trip(
            &wire::extended_query(super::database::SYNC_SCHEMA_SQL, &[]),
            RowMode::Array,
        )?;
        // Inside a failed transaction nothing can run; the rollback that
        // must follow undoes the DDL too.
        if outcome.error.is_some() && outcome.status == TxStatus::Failed {
            return Ok(());
        }
        let outcome = outcome.or_ours("schema capture")?;
        let recorded = outcome.results.last().and_then(|r| r.rows.first()).and_then(|row| row[0].as_i64().or_else(|| row[0].as_str()?.parse().ok()));
        self.schema_recorded |= recorded.is_some_and(|n| n > 0);
        Ok(())
    }

    fn one_row(&mut self, sql: &str, params: &[Value]) -> Result<Option<Value>> {
        let outcome = self.statement(sql, params, RowMode::Object)?.or_ours("change log query")?;
        Ok(outcome.results.into_iter().last().and_then(|r| r.rows.into_iter().next()))
    }

    /// Up to `limit` changes after `since`, in LSN order.
    pub fn changes(&mut self, since: u64, limit: u64) -> Result<ChangePage> {
        let changes = self.read_changes(since, limit)?;
        let next_lsn = changes.last().map_or(since, |c| c.lsn);
        let stats = self.log_stats()?;
        Ok(ChangePage {
            changes,
            next_lsn,
            head_lsn: stats.head_lsn.max(next_lsn),
            tail_lsn: stats.tail_lsn,
            schema_version: None,
        })
    }

    /// Just the changes after `since` (no stats). Here a change leaves the
    /// engine: from here on it is typed.
    pub fn read_changes(&mut self, since: u64, limit: u64) -> Result<Vec<Change>> {
        let outcome = self.statement(CHANGES_SQL, &[json!(since), json!(limit)], RowMode::Object)?.or_ours("change log read")?;
        let rows = outcome.results.into_iter().last().map(|r| r.rows).unwrap_or_default();
        rows.into_iter()
            .map(|row| {
                let lsn = row["lsn"].as_u64().unwrap_or(0);
                match row {
                    Value::Object(object) => Change::try_from(object),
                    other => Err(format!("a row that is not an object: {other}")),
                }
                .map_err(|why| Error::NotAChange { lsn, why })
            })
            .collect()
    }

    /// The newest LSN (0: none yet): one index probe.
    pub fn head_lsn(&mut self) -> Result<u64> {
        Ok(self
            .one_row("SELECT head FROM tidelake.log_stats()", &[])?
            .and_then(|r| r["head"].as_u64())
            .unwrap_or(0))
    }

    pub fn log_stats(&mut self) -> Result<LogStats> {
        model::log::stats(self)
    }

    /// Record that `consumer` has durably taken every change up to `lsn`,
    /// then trim the log below the lowest acknowledged LSN, keeping changes
    /// younger than `retention` (`model::log`). Returns the stats after trimming.
    pub fn acknowledge(&mut self, consumer: &str, lsn: u64, retention: Duration) -> Result<LogStats> {
        self.as_owner(|db| model::log::acknowledge(db, consumer, lsn, retention))
    }

    /// The newest LSN committed at or before `at` (a timestamptz literal).
    pub fn lsn_at(&mut self, at: &str) -> Result<LsnAt> {
        if !self.capture_enabled() {
            return Ok(LsnAt { lsn: 0, covered: false });
        }
        let row = self
            .one_row(LSN_AT_SQL, &[json!(at)])
            .map_err(|e| Error::bad_request("invalid_instant", format!("instant {at:?}: {e}")))?
            .unwrap_or(Value::Null);
        let n = |k: &str| row[k].as_u64().unwrap_or(0);
        // Exact when the oldest change kept is not after the instant, or the
        // log was never trimmed nor restarted (nothing before its first change).
        let covered = row["tailBefore"].as_bool() == Some(true) || (n("tail") <= 1 && n("floor") == 0);
        Ok(LsnAt { lsn: n("lsn"), covered })
    }

    /// Every recorded schema version, oldest first.
    pub fn schema_history(&mut self) -> Result<Vec<SchemaVersion>> {
        if !self.capture_enabled() {
            return Ok(Vec::new());
        }
        let outcome = self.statement(model::schema::SCHEMA_HISTORY_SQL, &[], RowMode::Object)?.or_ours("schema history read")?;
        let rows = outcome.results.into_iter().last().map(|r| r.rows).unwrap_or_default();
        rows.into_iter()
            .map(|row| {
                serde_json::from_value(row)
                    .map_err(|source| Error::Malformed { what: "a schema version of the change log".into(), source })
            })
            .collect()
    }
}

/// The change log's bookkeeping (`model::log`) runs in the owner's session.
impl model::log::LogSession for TenantDb {
    type Error = Error;

    fn owner_row(&mut self, sql: &str, params: &[Value]) -> Result<Option<Value>> {
        self.one_row(sql, params)
    }

    fn owner_statement(&mut self, sql: &str, params: &[Value]) -> Result<std::result::Result<(), DbError>> {
        let outcome = self.statement(sql, params, RowMode::Array)?;
        Ok(outcome.error.map_or(Ok(()), Err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script records the version this build checks for: were they to
    /// differ, every tenant would be upgraded again at every opening.
    #[test]
    fn the_script_records_the_capture_version_checked_at_open() {
        let recorded = format!("INSERT INTO tidelake.meta VALUES ('capture_version', '{CAPTURE_VERSION}')");
        assert!(INSTALL_SQL.contains(&recorded), "capture.sql must record version {CAPTURE_VERSION}");
    }

    #[test]
    fn changes_trimmed_before_a_read_saw_them_are_told() {
        use crate::engine::database::trimmed_unseen;
        assert!(!trimmed_unseen(Some(5), Some(3)), "the log still holds 6…");
        assert!(!trimmed_unseen(Some(5), Some(6)));
        assert!(trimmed_unseen(Some(5), Some(7)), "6 went unseen");
        assert!(trimmed_unseen(Some(5), None), "emptied since");
        assert!(trimmed_unseen(None, Some(9)), "after an empty log, 1…8 may have come and gone");
        assert!(!trimmed_unseen(None, None));
    }
}
