//! The lake's table format, in one place: the changelog columns and their
//! field ids, the `tidelake.*` properties and snapshot summary keys that
//! make an Iceberg table a tenant's history (docs/lake.md), the lake-name
//! encoding, and the functions that read them back (a table's relations,
//! its columns at each schema version, its checkpoints). Readers — the
//! query service — need nothing else of the lake crate; the writers' own
//! modules re-export what they share with it.

// The changelog columns every changelog table ends with, and their field ids.

/// Operation of the change: insert, update, delete, truncate or drop.
pub const OP: &str = "_op";
/// The change's LSN in its tenant's change log.
pub const LSN: &str = "_lsn";
/// The PostgreSQL transaction that committed it.
pub const XID: &str = "_xid";
/// When that transaction committed.
pub const COMMIT_TS: &str = "_commit_ts";
/// All four, in table order.
pub const CHANGELOG_COLUMNS: [&str; 4] = [OP, LSN, XID, COMMIT_TS];

/// Field ids proposed for the changelog columns of a new table.
pub const OP_FIELD_ID: i32 = 10001;
pub const LSN_FIELD_ID: i32 = 10002;
pub const XID_FIELD_ID: i32 = 10003;
pub const COMMIT_TS_FIELD_ID: i32 = 10004;
/// Field ids of `_op`, `_lsn`, `_xid`, `_commit_ts`, in that order.
pub const CHANGELOG_FIELD_IDS: [i32; 4] = [OP_FIELD_ID, LSN_FIELD_ID, XID_FIELD_ID, COMMIT_TS_FIELD_ID];

// Changelog tables: properties and snapshot summaries.

pub const PROP_TENANT: &str = "tidelake.tenant";
/// `schema.table`, for people: either part may contain a dot.
pub const PROP_SOURCE: &str = "tidelake.source";
/// The source table's schema and name, exactly (written since the safe
/// lake names; older tables have only `tidelake.source`).
pub const PROP_SOURCE_SCHEMA: &str = "tidelake.source-schema";
pub const PROP_SOURCE_TABLE: &str = "tidelake.source-table";
pub const PROP_TABLE_OID: &str = "tidelake.table-oid";
pub const PROP_SCHEMA_VERSION: &str = "tidelake.schema-version";
pub const PROP_FIELD_IDS: &str = "tidelake.field-ids";
pub const PROP_PRIMARY_KEY: &str = "tidelake.primary-key";
/// Every relation (a table created, dropped and created again under the
/// same name is a new one) that shipped into the table, oldest first:
/// `<first LSN>@<commit time in µs>`, comma-separated. Readers of the state
/// ignore changes of a relation before the one current at their instant.
pub const PROP_RELATIONS: &str = "tidelake.relations";
/// The columns of every schema version shipped, oldest first, as JSON:
/// `[{"version", "lsn", "at", "columns": [[name, field id, Iceberg type,
/// PostgreSQL type, nullable], …], "key": [field id, …]}]` (the last two
/// of a column since the lake could restore from itself alone; null where
/// not known) (`lsn`: the first LSN the version applies to;
/// `at`: its commit time in µs). Readers answer `AS OF` an instant with
/// the columns of the version in force then, read from their fields.
pub const PROP_COLUMNS: &str = "tidelake.columns";
/// Table property: every change of the source table up to this LSN is in
/// the table (moved by each append, in its commit).
pub const PROP_LSN_TO: &str = "tidelake.lsn-to";
/// Earlier metadata files a changelog table keeps (older ones are removed
/// by the commit that drops them from the metadata log).
pub const PREVIOUS_METADATA_FILES: usize = 10;
pub const SUMMARY_TENANT: &str = "tidelake.tenant";
pub const SUMMARY_LSN_FROM: &str = "tidelake.lsn-from";
pub const SUMMARY_LSN_TO: &str = "tidelake.lsn-to";
pub const SUMMARY_CHANGES: &str = "tidelake.changes";

// Namespaces.

/// Namespace property: every change up to this LSN is in the namespace's tables.
pub const PROP_SHIPPED_LSN: &str = "tidelake.shipped-lsn";
/// Namespace property: where the tenant lives, whose change log alone ships
/// into the namespace — [`SERVER_ORIGIN`] (also when absent: namespaces
/// made before edges) or [`EDGE_ORIGIN`]. LSNs are a tenant's own: two
/// logs must never mix.
pub const PROP_ORIGIN: &str = "tidelake.origin";
pub use model::{EDGE_ORIGIN, SERVER_ORIGIN};

// Checkpoint tables.

/// The suffix of a checkpoint table's name.
pub const CHECKPOINT_SUFFIX: &str = "$checkpoint";
/// Checkpoint table property: the changelog table it checkpoints.
pub const PROP_CHECKPOINT_OF: &str = "tidelake.checkpoint-of";
pub const SUMMARY_CHECKPOINT_LSN: &str = "tidelake.checkpoint-lsn";
pub const SUMMARY_CHECKPOINT_AT: &str = "tidelake.checkpoint-at";
pub const SUMMARY_CHECKPOINT_ROWS: &str = "tidelake.checkpoint-rows";
/// The key's field ids the checkpoint's state is keyed by.
pub const SUMMARY_CHECKPOINT_KEY: &str = "tidelake.checkpoint-key";
/// The changelog's record count when the checkpoint was taken.
pub const SUMMARY_CHECKPOINT_RECORDS: &str = "tidelake.checkpoint-changelog-records";

// Maintenance.

/// Snapshot summary key of maintenance commits: what the commit did.
pub const SUMMARY_MAINTENANCE: &str = "tidelake.maintenance";

// Lake names: one encoding for every writer and reader.
pub use crate::names::{namespace, query_name};

// Reading the format back.

use std::collections::HashMap;

use catalog::Warehouse;
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, TableIdent};
use serde_json::Value;

use crate::error::Result;

/// The columns a table had from one schema version on, as [`PROP_COLUMNS`]
/// records them, each with the field that holds it now.
#[derive(Debug, Clone)]
pub struct ColumnsSince {
    /// The schema version (as the change log numbers them).
    pub version: i64,
    /// The version's first LSN and its commit time (µs since the epoch).
    pub lsn: u64,
    pub at: i64,
    pub columns: Vec<ColumnThen>,
    /// The primary key's columns (names then), and their field ids.
    pub key: Vec<String>,
    pub key_ids: Vec<i32>,
}

#[derive(Debug, Clone)]
pub struct ColumnThen {
    /// The column's name then.
    pub name: String,
    /// The name of the field holding it in [`reading_schema`]; None if that
    /// schema has no such field (a column added since the latest data,
    /// which no row holds yet).
    pub field: Option<String>,
    /// Its Iceberg type then, and the field's now (they differ where the
    /// field was promoted since).
    pub type_then: String,
    pub type_now: String,
    /// Its PostgreSQL type then (`format_type`), and whether it took NULL
    /// (None where the lake did not record them).
    pub source_type: Option<String>,
    pub nullable: Option<bool>,
}

/// Where each relation of the table's name starts, oldest first, as
/// [`PROP_RELATIONS`] records them: (first LSN, commit time in µs).
pub fn relations(table: &Table) -> Vec<(u64, i64)> {
    let Some(text) = table.metadata().properties().get(PROP_RELATIONS) else { return Vec::new() };
    text.split(',')
        .filter_map(|start| {
            let (lsn, micros) = start.split_once('@')?;
            Some((lsn.parse().ok()?, micros.parse().ok()?))
        })
        .collect()
}

/// The schema a scan of the table's current snapshot reads with: that
/// snapshot's (Iceberg readers resolve columns in it). A schema change
/// shipped with no change after it makes the current schema newer.
pub fn reading_schema(table: &Table) -> iceberg::spec::SchemaRef {
    let metadata = table.metadata();
    metadata
        .current_snapshot()
        .and_then(|s| s.schema(metadata).ok())
        .unwrap_or_else(|| metadata.current_schema().clone())
}

/// Every schema version's columns (oldest first) of a changelog table,
/// with the fields of [`reading_schema`] that hold them; empty for a table
/// that records none. A column whose field no schema of the table has any
/// more (one shipped before fields were kept) is left out.
pub fn columns_history(table: &Table) -> Vec<ColumnsSince> {
    let current = table.metadata().current_schema();
    let reading = reading_schema(table);
    let Some(text) = table.metadata().properties().get(PROP_COLUMNS) else { return Vec::new() };
    let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(text) else { return Vec::new() };
    entries
        .iter()
        .map(|entry| {
            let mut names = HashMap::new();
            let mut columns = Vec::new();
            for column in entry["columns"].as_array().into_iter().flatten() {
                let (Some(name), Some(id), Some(then)) = (column[0].as_str(), column[1].as_i64(), column[2].as_str()) else {
                    continue;
                };
                let Some(newest) = current.field_by_id(id as i32) else { continue };
                let read = reading.field_by_id(id as i32);
                names.insert(id, name.to_owned());
                columns.push(ColumnThen {
                    name: name.to_owned(),
                    field: read.map(|f| f.name.clone()),
                    type_then: then.to_owned(),
                    type_now: read.unwrap_or(newest).field_type.to_string(),
                    source_type: column.get(3).and_then(Value::as_str).map(str::to_owned),
                    nullable: column.get(4).and_then(Value::as_bool),
                });
            }
            let key_ids: Vec<i64> = entry["key"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
            let key = key_ids.iter().filter_map(|id| names.get(id).cloned()).collect();
            let key_ids = key_ids.iter().map(|id| *id as i32).collect();
            ColumnsSince {
                version: entry["version"].as_i64().unwrap_or(0),
                lsn: entry["lsn"].as_u64().unwrap_or(0),
                at: entry["at"].as_i64().unwrap_or(0), columns, key, key_ids }
        })
        .collect()
}

/// One checkpoint: a snapshot of the checkpoint table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Every change of the table up to this LSN is in it.
    pub lsn: u64,
    /// The commit time of the newest change it holds (µs since the epoch).
    pub at: i64,
    pub rows: u64,
    /// The key (field ids) its state is keyed by.
    pub key: Vec<i32>,
    /// The changelog's records when it was taken.
    pub records: u64,
    pub snapshot_id: i64,
}

/// Whether a lake table name is a checkpoint table's.
pub fn is_checkpoint_table(name: &str) -> bool {
    name.ends_with(CHECKPOINT_SUFFIX)
}

pub fn checkpoint_ident(changelog: &TableIdent) -> TableIdent {
    TableIdent::new(changelog.namespace().clone(), format!("{}{CHECKPOINT_SUFFIX}", changelog.name()))
}

/// The checkpoints of a checkpoint table, oldest first.
pub fn checkpoints(table: &Table) -> Vec<Checkpoint> {
    let mut found: Vec<Checkpoint> = table
        .metadata()
        .snapshots()
        .filter_map(|s| {
            let props = &s.summary().additional_properties;
            let number = |key: &str| props.get(key).and_then(|v| v.parse::<i64>().ok());
            Some(Checkpoint {
                lsn: number(SUMMARY_CHECKPOINT_LSN)? as u64,
                at: number(SUMMARY_CHECKPOINT_AT)?,
                rows: number(SUMMARY_CHECKPOINT_ROWS).unwrap_or(0) as u64,
                key: props
                    .get(SUMMARY_CHECKPOINT_KEY)
                    .map(|k| k.split(',').filter_map(|id| id.parse().ok()).collect())
                    .unwrap_or_default(),
                records: number(SUMMARY_CHECKPOINT_RECORDS).unwrap_or(0) as u64,
                snapshot_id: s.snapshot_id(),
            })
        })
        .collect();
    found.sort_by_key(|c| c.lsn);
    found
}

/// The checkpoint table of a changelog table, if it has one.
pub async fn load(warehouse: &Warehouse, changelog: &TableIdent) -> Result<Option<Table>> {
    match warehouse.catalog().load_table(&checkpoint_ident(changelog)).await {
        Ok(table) => Ok(Some(table)),
        Err(e) if matches!(e.kind(), ErrorKind::TableNotFound | ErrorKind::NamespaceNotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

