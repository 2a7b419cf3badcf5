//! A committed change, as the change log records it and every part of
//! tidelake passes it on: the engine's capture produces it, the HTTP and
//! WebSocket feeds send it (`GET /t/{tenant}/changes`), the shipper turns it
//! into a changelog row, a restore replays it, and the lake's history reads
//! it back. Its JSON form is the feed's: `{lsn, xid, commitTs,
//! schemaVersion, op, schema, table, new, old}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A position in a tenant's change log: gap-free, one per change.
pub type Lsn = u64;

/// A row as the change log holds it: column name → value, in the table's
/// column order, each value in the PostgreSQL encoding the HTTP API uses
/// (numbers, text, booleans, JSON; `numeric`, dates and times as text;
/// `bytea` as `\x…` hex).
pub type Row = Map<String, Value>;

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Insert,
    Update,
    Delete,
    /// Every row of the table removed.
    Truncate,
    /// The table dropped: it holds nothing from here on.
    Drop,
}

impl Op {
    /// The name the change log and the lake's `_op` column use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Truncate => "truncate",
            Self::Drop => "drop",
        }
    }
}

impl std::str::FromStr for Op {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "insert" => Self::Insert,
            "update" => Self::Update,
            "delete" => Self::Delete,
            "truncate" => Self::Truncate,
            "drop" => Self::Drop,
            other => return Err(format!("unknown operation {other:?}")),
        })
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One committed change of one row (or, for a truncate or drop, of a table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub lsn: Lsn,
    /// The transaction that committed it (PostgreSQL's 64-bit xid).
    #[serde(default)]
    pub xid: u64,
    /// When its transaction committed, as PostgreSQL prints a `timestamptz`
    /// in UTC (`2026-11-27 10:00:00.123456+00`); None where it is not known.
    #[serde(default)]
    pub commit_ts: Option<String>,
    /// The schema version of its table it was written under.
    #[serde(default)]
    pub schema_version: i64,
    pub op: Op,
    #[serde(default = "public")]
    pub schema: String,
    pub table: String,
    /// The row after an insert or update.
    #[serde(default)]
    pub new: Option<Row>,
    /// The row before an update or delete (a change read back from the lake
    /// has it for deletes only).
    #[serde(default)]
    pub old: Option<Row>,
}

fn public() -> String {
    "public".to_owned()
}

impl TryFrom<Row> for Change {
    type Error = String;

    /// A change from the object the change log's reader answers, taking its
    /// rows over as they are (no copy of a value): what serde would do from
    /// a `Value`, without rebuilding every row on the way.
    fn try_from(mut object: Row) -> Result<Self, Self::Error> {
        let lsn = object.get("lsn").and_then(Value::as_u64).ok_or("a change without an LSN")?;
        let mut text = |key: &str| match object.remove(key) {
            Some(Value::String(text)) => Some(text),
            _ => None,
        };
        let op = text("op").ok_or_else(|| format!("change {lsn} without an operation"))?.parse()?;
        let (commit_ts, schema, table) = (text("commitTs"), text("schema"), text("table"));
        let mut row = |key: &str| match object.remove(key) {
            Some(Value::Object(row)) => Some(row),
            _ => None,
        };
        let (new, old) = (row("new"), row("old"));
        Ok(Self {
            lsn,
            xid: object.get("xid").and_then(Value::as_u64).unwrap_or(0),
            commit_ts,
            schema_version: object.get("schemaVersion").and_then(Value::as_i64).unwrap_or(0),
            op,
            schema: schema.unwrap_or_else(public),
            table: table.ok_or_else(|| format!("change {lsn} without a table"))?,
            new,
            old,
        })
    }
}

impl Change {
    /// The row the change leaves, or for a delete the row it removed; None
    /// for a truncate or drop.
    pub fn row(&self) -> Option<&Row> {
        match self.op {
            Op::Delete => self.old.as_ref(),
            Op::Truncate | Op::Drop => None,
            Op::Insert | Op::Update => self.new.as_ref(),
        }
    }

    /// The commit time in µs since the epoch, if it is known and readable.
    pub fn commit_micros(&self) -> Option<i64> {
        self.commit_ts.as_deref().and_then(crate::parse_instant)
    }
}

/// Where a tenant lives: the lake records it of each tenant's history
/// (`tidelake.origin`), as LSNs are a tenant's own and two logs must never
/// mix. The server's own tenants:
pub const SERVER_ORIGIN: &str = "server";
/// The tenants of the edge (one edge Worker per lake).
pub const EDGE_ORIGIN: &str = "edge";

/// A column of a schema version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceColumn {
    pub name: String,
    /// PostgreSQL's `format_type`, e.g. `numeric(12,2)`.
    #[serde(rename = "type")]
    pub type_name: String,
    pub type_oid: i32,
    pub attnum: i32,
    /// Whether the column takes NULL (absent in versions recorded before
    /// the change log noted it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nullable: Option<bool>,
    /// The extension the column's type belongs to (`vector` for pgvector's
    /// `vector`), absent for PostgreSQL's own types and those a tenant made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
}

impl SourceColumn {
    /// Whether the column holds pgvector's `vector` or `halfvec`: a list of
    /// floats.
    pub fn is_vector(&self) -> bool {
        self.extension.as_deref() == Some("vector")
            && matches!(crate::values::bare_type_name(&self.type_name), "vector" | "halfvec")
    }
}

/// A table's shape from one LSN on, as the change log records it (the
/// objects of `GET /t/{tenant}/schema`'s `versions`). A change names the
/// version it was written under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaVersion {
    pub version: i64,
    pub table_oid: i64,
    pub schema: String,
    pub table: String,
    pub columns: Vec<SourceColumn>,
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// The table was dropped at this version.
    #[serde(default)]
    pub dropped: bool,
    /// The first LSN the version applies to.
    #[serde(default)]
    pub lsn: Lsn,
    /// When the version was committed (`YYYY-MM-DD HH:MM:SS.ffffff+00`).
    #[serde(default)]
    pub commit_ts: Option<String>,
}

impl SchemaVersion {
    /// The commit time in µs since the epoch (0 where it is not known).
    pub fn commit_micros(&self) -> i64 {
        self.commit_ts.as_deref().and_then(crate::parse_instant).unwrap_or(0)
    }
}

/// A table as it stood at an instant, as the lake alone tells it (for a
/// restore of a tenant whose database is elsewhere: the edge's).
#[derive(Debug, Clone, PartialEq)]
pub struct TableAt {
    /// Its shape then: the columns with their PostgreSQL types (where the
    /// lake recorded none, the type its Iceberg type reads back into) and
    /// its primary key.
    pub version: SchemaVersion,
    /// Its rows then, values in the text forms PostgreSQL's input functions
    /// take (JSON and arrays as their text).
    pub rows: Vec<Row>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The feed's JSON reads into a change and writes back the same, key
    /// for key and in the same order.
    #[test]
    fn a_change_round_trips_the_feed_json() {
        let text = r#"{"lsn":7,"xid":743,"commitTs":"2026-12-01 19:31:40.037398+00","schemaVersion":3,"op":"update","schema":"public","table":"t1","new":{"id":1,"v":2,"d1":"x"},"old":{"id":1,"v":1,"d1":"x"}}"#;
        let change: Change = serde_json::from_str(text).unwrap();
        assert_eq!((change.lsn, change.xid, change.schema_version, change.op), (7, 743, 3, Op::Update));
        assert_eq!(change.row().unwrap()["v"], json!(2));
        assert_eq!(change.commit_micros(), Some(1_796_153_500_037_398));
        assert_eq!(serde_json::to_string(&change).unwrap(), text);
    }

    /// From the change log reader's object, the same change serde reads.
    #[test]
    fn a_change_is_taken_from_the_readers_object_as_serde_reads_it() {
        let json = json!({"lsn": 9, "xid": 5, "commitTs": "2026-12-01 19:31:40+00", "schemaVersion": 2,
                          "op": "delete", "schema": "app", "table": "t", "new": null, "old": {"id": 1, "j": {"a": [1]}}});
        let taken = Change::try_from(json.as_object().unwrap().clone()).unwrap();
        assert_eq!(taken, serde_json::from_value::<Change>(json).unwrap());
        for bad in [json!({"op": "insert", "table": "t"}), json!({"lsn": 1, "op": "merge", "table": "t"}),
                    json!({"lsn": 1, "op": "insert"})] {
            assert!(Change::try_from(bad.as_object().unwrap().clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_delete_carries_its_old_row_and_a_truncate_none() {
        let delete: Change =
            serde_json::from_value(json!({"lsn": 2, "op": "delete", "table": "t", "old": {"id": 1}, "new": null})).unwrap();
        assert_eq!(delete.schema, "public");
        assert_eq!(delete.row().unwrap()["id"], json!(1));
        let truncate: Change = serde_json::from_value(json!({"lsn": 3, "op": "truncate", "table": "t"})).unwrap();
        assert!(truncate.row().is_none());
        assert!(serde_json::from_value::<Change>(json!({"lsn": 4, "op": "merge", "table": "t"})).is_err());
    }
}
