//! The change log's bookkeeping, the same on the server and at the edge:
//! its extent, a consumer's acknowledgement and the trim that allows. Each
//! engine runs these statements in its owner's session through
//! [`LogSession`]; what they decide is decided here once.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::api::DbError;

const STATS_SQL: &str = "SELECT * FROM tidelake.log_stats()";
const OLDER_THAN_SQL: &str = "SELECT tidelake.older_than($1::bigint, $2::float8) AS old";
const ACK_SQL: &str = "INSERT INTO tidelake.consumers (name, acked_lsn) VALUES ($1, $2) \
     ON CONFLICT (name) DO UPDATE SET acked_lsn = greatest(consumers.acked_lsn, excluded.acked_lsn), acked_at = now()";
const TRIM_SQL: &str = "DELETE FROM tidelake.changes WHERE lsn < $1";

/// How long changes are kept after every consumer acknowledged them, unless
/// configured otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);

/// The longest name of a consumer.
pub const MAX_CONSUMER_LEN: usize = 128;

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

/// An engine's session as the change log's owner.
pub trait LogSession {
    type Error: From<DbError>;

    /// The first row (an object) of one statement; its failure is ours.
    fn owner_row(&mut self, sql: &str, params: &[Value]) -> Result<Option<Value>, Self::Error>;

    /// One statement whose failure is the caller's (PostgreSQL's error).
    fn owner_statement(&mut self, sql: &str, params: &[Value]) -> Result<Result<(), DbError>, Self::Error>;
}

/// Why a page of changes after `since` cannot be read whole when the log's
/// oldest change is `tail` (410 `changes_trimmed`), if it cannot.
pub fn trimmed_after(since: u64, tail: u64) -> Option<String> {
    (tail > since.saturating_add(1)).then(|| {
        format!("changes after LSN {since} have been trimmed from the change log; the oldest kept is {tail}")
    })
}

/// A consumer's name, checked: 1 to 128 characters.
pub fn check_consumer(consumer: &str) -> Result<(), String> {
    if consumer.is_empty() || consumer.len() > MAX_CONSUMER_LEN {
        return Err("consumer must be a name of 1 to 128 characters".into());
    }
    Ok(())
}

pub fn stats<S: LogSession>(session: &mut S) -> Result<LogStats, S::Error> {
    let row = session.owner_row(STATS_SQL, &[])?.unwrap_or(Value::Null);
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

/// Record that `consumer` has durably taken every change up to `lsn`, then
/// trim the log below the lowest acknowledged LSN, keeping changes younger
/// than `retention`. Returns the stats after trimming.
pub fn acknowledge<S: LogSession>(session: &mut S, consumer: &str, lsn: u64, retention: Duration) -> Result<LogStats, S::Error> {
    let before = stats(session)?;
    if lsn > before.head_lsn {
        return Err(DbError::new("22023", format!("cannot acknowledge LSN {lsn}: the newest change is {}", before.head_lsn)).into());
    }
    session.owner_statement(ACK_SQL, &[json!(consumer), json!(lsn)])?.map_err(S::Error::from)?;
    let acked = stats(session)?.acked_lsn;
    let bound = retention_bound(session, before.tail_lsn, acked, retention)?;
    if bound > before.tail_lsn {
        session.owner_row(TRIM_SQL, &[json!(bound)])?;
    }
    stats(session)
}

/// The lowest LSN to keep: `acked`, or lower where changes below it are
/// younger than `retention`. Commit times rise with LSN and LSNs have no
/// gaps, so a binary search over point lookups finds it.
fn retention_bound<S: LogSession>(session: &mut S, tail: u64, acked: u64, retention: Duration) -> Result<u64, S::Error> {
    if retention.is_zero() || acked <= tail {
        return Ok(acked);
    }
    let secs = retention.as_secs_f64();
    // Invariant: every LSN below `lo` is old enough; `hi` is not (or is `acked`).
    let (mut lo, mut hi) = (tail, acked);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let old = session
            .owner_row(OLDER_THAN_SQL, &[json!(mid), json!(secs)])?
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
