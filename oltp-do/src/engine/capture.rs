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
const CAPTURE_VERSION: &str = "9";
const INSTALL_SQL: &str = include_str!("capture.sql");

pub use model::api::ChangePage;

/// The change log's extent and size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogStats {
    /// LSN of the newest change (0: none yet).
    pub head_lsn: u64,
    /// LSN of the oldest change still in the log (0: empty).
    pub tail_lsn: u64,
    /// Changes held (LSNs are gap-free, so head − tail + 1).
    pub rows: u64,
    pub bytes: u64,
    /// Lowest LSN acknowledged by any consumer (0: none).
    pub acked_lsn: u64,
}

const OPEN_PROBE_SQL: &str = r#"
SELECT (SELECT value FROM tidelake.meta WHERE key = 'capture_version') AS version,
       (SELECT value FROM tidelake.meta WHERE key = 'schema_fingerprint') AS stored,
       tidelake.schema_fingerprint() AS current"#;

/// Brings every table's capture in step after an install or upgrade.
const CAPTURE_ON_SQL: &str = "SELECT tidelake.reinstall_all(); SELECT tidelake.sync_schema()";

const CHANGES_SQL: &str = "SELECT * FROM tidelake.read_changes($1::bigint, $2::bigint)";

const STATS_SQL: &str = "SELECT * FROM tidelake.log_stats()";

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

const COMMIT_TS_AT_SQL: &str = "SELECT tidelake.older_than($1::bigint, $2::float8) AS old";


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
        let row = self.one_row(STATS_SQL, &[])?.unwrap_or(Value::Null);
        let n = |k: &str| row[k].as_u64().unwrap_or(0);
        let (head, tail) = (n("head"), n("tail"));
        Ok(LogStats {
            head_lsn: head,
            tail_lsn: tail,
            rows: if head == 0 { 0 } else { head - tail + 1 },
            bytes: n("bytes"),
            acked_lsn: n("acked"),
        })
    }

    /// Record that `consumer` has durably taken every change up to `lsn`,
    /// then trim the log below the lowest acknowledged LSN, keeping changes
    /// younger than `retention`. Returns the stats after trimming.
    pub fn acknowledge(&mut self, consumer: &str, lsn: u64, retention: Duration) -> Result<LogStats> {
        self.as_owner(|db| db.acknowledge_as_owner(consumer, lsn, retention))
    }

    fn acknowledge_as_owner(&mut self, consumer: &str, lsn: u64, retention: Duration) -> Result<LogStats> {
        let before = self.log_stats()?;
        if lsn > before.head_lsn {
            return Err(Error::from(DbError::new(
                "22023",
                format!("cannot acknowledge LSN {lsn}: the newest change is {}", before.head_lsn),
            )));
        }
        let outcome = self.statement(
            "INSERT INTO tidelake.consumers (name, acked_lsn) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET acked_lsn = greatest(consumers.acked_lsn, excluded.acked_lsn), acked_at = now()",
            &[json!(consumer), json!(lsn)],
            RowMode::Array,
        )?;
        if let Some(err) = outcome.error {
            return Err(Error::from(err));
        }
        let acked = self.log_stats()?.acked_lsn;
        let bound = self.retention_bound(before.tail_lsn, acked, retention)?;
        if bound > before.tail_lsn {
            self.statement("DELETE FROM tidelake.changes WHERE lsn < $1", &[json!(bound)], RowMode::Array)?
                .or_ours("change log trim")?;
        }
        self.log_stats()
    }

    /// The lowest LSN to keep: `acked`, or lower where changes below it are
    /// younger than `retention`. Commit times rise with LSN and LSNs have no
    /// gaps, so a binary search over point lookups finds it.
    fn retention_bound(&mut self, tail: u64, acked: u64, retention: Duration) -> Result<u64> {
        if retention.is_zero() || acked <= tail {
            return Ok(acked);
        }
        let secs = retention.as_secs_f64();
        // Invariant: every LSN below `lo` is old enough; `hi` is not (or is `acked`).
        let (mut lo, mut hi) = (tail, acked);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let old = self
                .one_row(COMMIT_TS_AT_SQL, &[json!(mid), json!(secs)])?
                .and_then(|r| r["old"].as_bool())
                .unwrap_or(true);
            if old {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
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
