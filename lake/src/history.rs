//! Reading a tenant's changes back out of the lake, for point-in-time
//! recovery: every change in an LSN range, shaped as the change log shapes
//! it, and the LSN an instant resolves to.
//!
//! Values come back in the text forms PostgreSQL's input functions take
//! (the inverse of `mapping`): exact decimal text, `\x` hex for bytea,
//! ISO 8601 dates, times and timestamps, uuid hex; JSON, arrays and other
//! types as the text the change log held. What the mapping lost stays lost:
//! `NaN` numerics and infinite dates come back as null.

use std::collections::HashMap;

use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::DataType;
use data_encoding::HEXLOWER;
use catalog::Warehouse;
use futures::TryStreamExt;
use iceberg::expr::Reference;
use iceberg::spec::Datum;
use iceberg::Catalog;
use iceberg::table::Table;
use model::{Change, Op, Row, SchemaVersion, format_instant};
use serde_json::{Value, json};

use crate::error::{LakeError, Result};
use crate::names::{self, SourceTable};
use crate::spec::{COMMIT_TS, LSN, OP, PROP_ORIGIN, SERVER_ORIGIN, XID};
use crate::shipper::PROP_SHIPPED_LSN;
use crate::table::{columns_history, recorded_source, relations};

/// The changelog tables of a tenant of `origin` (none if the lake has no
/// namespace for it); with `empty`, also those no change was shipped into
/// yet (a table created without rows). Every table of the namespace: one
/// an older release shipped under an unsafe name, and left there, holds the
/// first part of its source's history.
async fn tables(warehouse: &Warehouse, tenant: &str, origin: &str, empty: bool) -> Result<Vec<Table>> {
    let catalog = warehouse.catalog();
    let Some(namespace) = namespace_of(warehouse, tenant, origin).await? else {
        return Ok(Vec::new());
    };
    let mut tables = Vec::new();
    for ident in catalog.list_tables(&namespace).await? {
        if crate::checkpoint::is_checkpoint_table(ident.name()) {
            continue;
        }
        let table = catalog.load_table(&ident).await?;
        if empty || table.metadata().current_snapshot().is_some() {
            tables.push(table);
        }
    }
    Ok(tables)
}

/// Every change of the tenant of `origin` up to this LSN is in its tables
/// (0: none, or no namespace).
pub async fn shipped_lsn(warehouse: &Warehouse, tenant: &str, origin: &str) -> Result<u64> {
    let Some(namespace) = namespace_of(warehouse, tenant, origin).await? else {
        return Ok(0);
    };
    let ns = warehouse.catalog().get_namespace(&namespace).await?;
    Ok(ns.properties().get(PROP_SHIPPED_LSN).and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Where the lake's history of `tenant` comes from ([`SERVER_ORIGIN`] or
/// [`crate::spec::EDGE_ORIGIN`]); None if the lake holds none.
pub async fn origin(warehouse: &Warehouse, tenant: &str) -> Result<Option<String>> {
    let catalog = warehouse.catalog();
    let namespace = names::namespace(tenant)?;
    if !catalog.namespace_exists(&namespace).await? {
        return Ok(None);
    }
    let ns = catalog.get_namespace(&namespace).await?;
    Ok(Some(ns.properties().get(PROP_ORIGIN).map_or(SERVER_ORIGIN, String::as_str).to_owned()))
}

/// The namespace of a tenant of `origin` (None if the lake has none): a
/// namespace another origin ships into (a server tenant and an edge tenant
/// of the same name) is not this tenant's history, and a restore must not
/// read it.
async fn namespace_of(warehouse: &Warehouse, tenant: &str, origin: &str) -> Result<Option<iceberg::NamespaceIdent>> {
    match self::origin(warehouse, tenant).await? {
        None => Ok(None),
        Some(found) if found == origin => Ok(Some(names::namespace(tenant)?)),
        Some(found) => Err(LakeError::Origin(format!(
            "the lake's history of tenant {tenant:?} is that of the tenant of {found}, not of the {origin}'s tenant"
        ))),
    }
}

/// Every change of the tenant with an LSN in `(after, upto]`, in LSN order,
/// as the change log had them, except that an update carries no old row
/// (the lake keeps new rows only) and a delete's old row holds only the
/// columns the lake has.
pub async fn changes(warehouse: &Warehouse, tenant: &str, after: u64, upto: u64) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    for table in tables(warehouse, tenant, SERVER_ORIGIN, false).await? {
        // The source table as the lake recorded it; a table the lake did
        // not create is read as the table its name encodes, or not at all.
        let source = recorded_source(&table).or_else(|| SourceTable::from_lake_name(table.identifier().name()));
        let Some(SourceTable { schema, table: name }) = source else {
            tracing::warn!(table = %table.identifier(), "lake: history skips a table that names no source table");
            continue;
        };
        let lsn = Reference::new("_lsn");
        let filter = lsn
            .clone()
            .greater_than(Datum::long(i64::try_from(after).unwrap_or(i64::MAX)))
            .and(lsn.less_than_or_equal_to(Datum::long(i64::try_from(upto).unwrap_or(i64::MAX))));
        let names = names_then(&table);
        let mut batches = table.scan().with_filter(filter).build()?.to_arrow().await?;
        while let Some(batch) = batches.try_next().await? {
            changes_of(&batch, &schema, &name, &names, &mut changes)?;
        }
    }
    changes.sort_by_key(|c| c.lsn);
    Ok(changes)
}

/// The newest LSN of the tenant of `origin` committed at or before `at_us`
/// (µs since the epoch); None if the lake holds nothing of the tenant.
pub async fn lsn_at(warehouse: &Warehouse, tenant: &str, origin: &str, at_us: i64) -> Result<Option<u64>> {
    let tables = tables(warehouse, tenant, origin, false).await?;
    if tables.is_empty() && namespace_of(warehouse, tenant, origin).await?.is_none() {
        return Ok(None);
    }
    let mut newest = 0u64;
    for table in tables {
        let filter = Reference::new("_commit_ts").less_than_or_equal_to(Datum::timestamptz_micros(at_us));
        let mut batches = table.scan().select(["_lsn"]).with_filter(filter).build()?.to_arrow().await?;
        while let Some(batch) = batches.try_next().await? {
            let Some(lsns) = batch.column(0).as_any().downcast_ref::<arrow_array::Int64Array>() else {
                return Err(LakeError::Mapping("_lsn is not a long column".into()));
            };
            if let Some(max) = lsns.iter().flatten().max() {
                newest = newest.max(max as u64);
            }
        }
    }
    Ok(Some(newest))
}

/// An instant a tenant's state is read at from the lake: right after the
/// change `lsn`, and, when the instant was a time, that time (µs since the
/// epoch) — schema changes are placed by their commit times then, as a
/// schema change has no LSN of its own.
#[derive(Debug, Clone, Copy)]
pub struct AsOf {
    pub lsn: u64,
    pub at_us: Option<i64>,
}

impl AsOf {
    /// Whether something that starts at LSN `lsn` (the first LSN a schema
    /// version applies to), committed at `at_us`, had happened by this instant.
    fn reached(&self, lsn: u64, at_us: i64) -> bool {
        match self.at_us {
            Some(at) => at_us <= at,
            // A bookmark holds the schema changes made after its change and
            // before the next one (whose LSN the version starts at).
            None => lsn <= self.lsn + 1,
        }
    }
}

pub use model::TableAt;

/// Every table of the tenant of `origin` that existed at `instant`, with
/// its rows then: each key's last row at or before the instant (none if
/// deleted, truncated since or dropped). Nothing but the lake is read, so
/// it serves a tenant whose database is elsewhere (the edge's). A table
/// without a primary key is followed by whole rows, so an update of one
/// (the lake keeps no old rows) cannot be placed: `LakeError::NeedsOldRow`.
/// Memory holds the rows of the instant and every key seen (one table at a time).
pub async fn state_at(warehouse: &Warehouse, tenant: &str, origin: &str, instant: AsOf) -> Result<Vec<TableAt>> {
    let mut state = Vec::new();
    for table in tables(warehouse, tenant, origin, true).await? {
        let Some(SourceTable { schema, table: name }) = recorded_source(&table) else {
            tracing::warn!(table = %table.identifier(), "lake: a restore skips a table that names no source table");
            continue;
        };
        // The relation of the table's name current at the instant, and its shape then.
        let relations = relations(&table);
        let start = match relations.iter().rfind(|(lsn, at)| instant.reached(*lsn, *at)) {
            Some((lsn, _)) => *lsn,
            None if relations.is_empty() => 0,
            None => continue, // created after the instant
        };
        let Some(then) = columns_history(&table)
            .into_iter()
            .filter(|v| v.lsn >= start && instant.reached(v.lsn, v.at))
            .last()
        else {
            continue;
        };
        let version = shape_then(&then, &schema, &name, start);
        let rows = if table.metadata().current_snapshot().is_none() {
            Some(Vec::new())
        } else {
            rows_at(&table, &then, &version, start, instant.lsn).await?
        };
        // None: dropped by the instant.
        if let Some(rows) = rows {
            state.push(TableAt { version, rows });
        }
    }
    Ok(state)
}

/// The source table's shape in the columns of `then`.
fn shape_then(then: &crate::spec::ColumnsSince, schema: &str, table: &str, start: u64) -> SchemaVersion {
    let columns = then
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let type_name = c.source_type.clone().unwrap_or_else(|| source_type_of(&c.type_then));
            model::SourceColumn {
                name: c.name.clone(),
                type_oid: match type_name.as_str() {
                    "json" => 114,
                    "jsonb" => 3802,
                    _ => 0,
                },
                type_name,
                attnum: i as i32 + 1,
                nullable: c.nullable,
                extension: None,
            }
        })
        .collect();
    SchemaVersion {
        version: then.version,
        table_oid: 0,
        schema: schema.to_owned(),
        table: table.to_owned(),
        columns,
        primary_key: then.key.clone(),
        dropped: false,
        lsn: start.max(then.lsn),
        commit_ts: format_instant(then.at),
    }
}

/// The PostgreSQL type an Iceberg type reads back into (for columns the
/// lake recorded no PostgreSQL type of; `string` held text, JSON and
/// arrays alike: text keeps them all).
fn source_type_of(iceberg: &str) -> String {
    let decimal = iceberg.strip_prefix("decimal(").and_then(|rest| rest.strip_suffix(')'));
    match iceberg {
        "boolean" => "boolean".to_owned(),
        "int" => "integer".to_owned(),
        "long" => "bigint".to_owned(),
        "float" => "real".to_owned(),
        "double" => "double precision".to_owned(),
        "date" => "date".to_owned(),
        "time" => "time without time zone".to_owned(),
        "timestamp" | "timestamp_ns" => "timestamp without time zone".to_owned(),
        "timestamptz" | "timestamptz_ns" => "timestamp with time zone".to_owned(),
        "uuid" => "uuid".to_owned(),
        "binary" => "bytea".to_owned(),
        _ if iceberg.starts_with("fixed(") => "bytea".to_owned(),
        _ => match decimal {
            Some(args) => format!("numeric({})", args.replace(' ', "")),
            None => "text".to_owned(),
        },
    }
}

/// The rows of one table at LSN `upto`, from the changes of its relation
/// (from `start` on), read under the column names of `then`; None if the
/// table was dropped by then.
async fn rows_at(
    table: &Table,
    then: &crate::spec::ColumnsSince,
    version: &SchemaVersion,
    start: u64,
    upto: u64,
) -> Result<Option<Vec<Row>>> {
    let lsn = Reference::new("_lsn");
    let filter = lsn
        .clone()
        .greater_than_or_equal_to(Datum::long(i64::try_from(start).unwrap_or(i64::MAX)))
        .and(lsn.less_than_or_equal_to(Datum::long(i64::try_from(upto).unwrap_or(i64::MAX))));
    // Every row under the names of the instant (a column renamed since the
    // row was written is the same field).
    let names: NamesThen =
        vec![(0, then.version, then.columns.iter().filter_map(|c| Some((c.field.clone()?, c.name.clone()))).collect())];
    let (schema, name) = (version.schema.as_str(), version.table.as_str());
    let key = &version.primary_key;
    // Keyed: each key's last change; unkeyed: every change, to apply in order.
    let mut last: HashMap<String, (u64, Option<Row>)> = HashMap::new();
    let mut unkeyed = Vec::new();
    let mut cleared = 0u64;
    let mut batches = table.scan().with_filter(filter).build()?.to_arrow().await?;
    while let Some(batch) = batches.try_next().await? {
        let mut changes = Vec::with_capacity(batch.num_rows());
        changes_of(&batch, schema, name, &names, &mut changes)?;
        for change in changes {
            match change.op {
                Op::Drop => return Ok(None),
                Op::Truncate => cleared = cleared.max(change.lsn),
                _ if key.is_empty() => unkeyed.push(change),
                _ => {
                    let row = change.new.as_ref().or(change.old.as_ref());
                    let id = serde_json::to_string(&key.iter().map(|k| row.and_then(|r| r.get(k))).collect::<Vec<_>>())
                        .unwrap_or_default();
                    let entry = last.entry(id).or_insert((0, None));
                    if change.lsn >= entry.0 {
                        *entry = (change.lsn, change.new);
                    }
                }
            }
        }
    }
    if key.is_empty() {
        unkeyed.sort_by_key(|c| c.lsn);
        let mut rows: Vec<Row> = Vec::new();
        for change in unkeyed.into_iter().filter(|c| c.lsn > cleared) {
            match (change.op, change.new, change.old) {
                (Op::Insert, Some(new), _) => rows.push(new),
                (Op::Delete, _, Some(old)) => {
                    if let Some(i) = rows.iter().position(|r| *r == old) {
                        rows.swap_remove(i);
                    }
                }
                (Op::Update, ..) => {
                    return Err(LakeError::NeedsOldRow(format!(
                        "LSN {} updates {schema}.{name}, which has no primary key, and the lake keeps only the new rows of updates: its rows at the instant cannot be told",
                        change.lsn
                    )));
                }
                _ => {}
            }
        }
        return Ok(Some(rows));
    }
    let mut rows: Vec<(u64, Row)> =
        last.into_values().filter(|(lsn, _)| *lsn > cleared).filter_map(|(lsn, row)| Some((lsn, row?))).collect();
    rows.sort_by_key(|(lsn, _)| *lsn);
    Ok(Some(rows.into_iter().map(|(_, row)| row).collect()))
}

/// From each schema version's first LSN on (oldest first): the version
/// and the table's columns then, as (field name now → column name then).
/// Empty for a table that records no versions (its fields are its columns).
type NamesThen = Vec<(u64, i64, HashMap<String, String>)>;

fn names_then(table: &Table) -> NamesThen {
    columns_history(table)
        .into_iter()
        .map(|since| {
            let names = since.columns.into_iter().filter_map(|c| Some((c.field?, c.name))).collect();
            (since.lsn, since.version, names)
        })
        .collect()
}

/// Append the changes in one batch of a changelog table, each row's values
/// under the names its columns had at its LSN (a column dropped or renamed
/// since is replayed into the table as it was then).
fn changes_of(batch: &RecordBatch, schema: &str, table: &str, names: &NamesThen, out: &mut Vec<Change>) -> Result<()> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    let fields = batch.schema();
    let column = |name: &str| fields.index_of(name).ok().map(|i| batch.column(i).clone());
    let (Some(op), Some(lsn), Some(xid), Some(commit_ts)) = (column(OP), column(LSN), column(XID), column(COMMIT_TS)) else {
        return Err(LakeError::Mapping(format!("changelog table of {schema}.{table} lacks a changelog column")));
    };
    let wrong = |name: &str| LakeError::Mapping(format!("{name} of {schema}.{table} has another type than the lake writes"));
    let op = op.as_string_opt::<i32>().ok_or_else(|| wrong(OP))?;
    let lsn = lsn.as_primitive_opt::<Int64Type>().ok_or_else(|| wrong(LSN))?;
    let xid = xid.as_primitive_opt::<Int64Type>().ok_or_else(|| wrong(XID))?;
    let commit_ts = commit_ts.as_primitive_opt::<TimestampMicrosecondType>().ok_or_else(|| wrong(COMMIT_TS))?;
    let options = FormatOptions::default();
    let mut sources = Vec::new();
    for (i, field) in fields.fields().iter().enumerate() {
        if crate::spec::CHANGELOG_COLUMNS.contains(&field.name().as_str()) {
            continue;
        }
        let array = batch.column(i);
        let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
        sources.push((field.name().clone(), array.clone(), formatter));
    }
    for row in 0..batch.num_rows() {
        let op: Op = op.value(row).parse().map_err(|e| LakeError::Mapping(format!("{schema}.{table}: {e}")))?;
        let at = lsn.value(row) as u64;
        let then = names.iter().rev().find(|(from, ..)| *from <= at).or(names.first());
        let mut change = Change {
            lsn: at,
            xid: xid.value(row) as u64,
            commit_ts: (!commit_ts.is_null(row)).then(|| format_instant(commit_ts.value(row))).flatten(),
            schema_version: then.map_or(0, |(_, version, _)| *version),
            op,
            schema: schema.to_owned(),
            table: table.to_owned(),
            new: None,
            old: None,
        };
        if !matches!(op, Op::Truncate | Op::Drop) {
            let mut values = Row::new();
            for (name, array, formatter) in &sources {
                let name = match then {
                    Some((.., then)) => match then.get(name) {
                        Some(name) => name,
                        None => continue,
                    },
                    None => name,
                };
                if !array.is_null(row) {
                    values.insert(name.clone(), value(array.as_ref(), formatter, row));
                }
            }
            if op == Op::Delete {
                change.old = Some(values);
            } else {
                change.new = Some(values);
            }
        }
        out.push(change);
    }
    Ok(())
}

/// One value as the change log would hold it.
fn value(array: &dyn Array, formatter: &ArrayFormatter<'_>, row: usize) -> Value {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
    let float = |f: f64| match serde_json::Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => json!("NaN"),
        None if f > 0.0 => json!("Infinity"),
        None => json!("-Infinity"),
    };
    match array.data_type() {
        DataType::Boolean => json!(array.as_boolean().value(row)),
        DataType::Int32 => json!(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => json!(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => json!(array.as_string::<i64>().value(row)),
        DataType::Binary => json!(format!("\\x{}", HEXLOWER.encode(array.as_binary::<i32>().value(row)))),
        DataType::LargeBinary => json!(format!("\\x{}", HEXLOWER.encode(array.as_binary::<i64>().value(row)))),
        // pgvector's text form, as PostgreSQL writes it.
        DataType::List(element) if element.data_type() == &DataType::Float32 => {
            let list = array.as_list::<i32>().value(row);
            let floats: Vec<String> = list.as_primitive::<Float32Type>().iter().map(|f| f.unwrap_or(f32::NAN).to_string()).collect();
            json!(format!("[{}]", floats.join(",")))
        }
        DataType::FixedSizeBinary(16) => {
            let h = HEXLOWER.encode(array.as_fixed_size_binary().value(row));
            json!(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
        }
        _ => json!(formatter.value(row).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{CHANGELOG_FIELD_IDS, SourceColumn, changelog_schema, record_batch};

    /// A column the lake recorded no PostgreSQL type of is created as the
    /// type its Iceberg type reads back into; strings (text, JSON, arrays
    /// alike) as text.
    #[test]
    fn iceberg_types_read_back_into_postgres_types() {
        let cases = [
            ("boolean", "boolean"),
            ("int", "integer"),
            ("long", "bigint"),
            ("double", "double precision"),
            ("decimal(12, 2)", "numeric(12,2)"),
            ("timestamptz", "timestamp with time zone"),
            ("timestamp", "timestamp without time zone"),
            ("binary", "bytea"),
            ("uuid", "uuid"),
            ("string", "text"),
        ];
        for (iceberg, postgres) in cases {
            assert_eq!(source_type_of(iceberg), postgres, "{iceberg}");
        }
    }

    /// An instant given as a bookmark holds the schema changes made before
    /// the next change; one given as a time, those committed by then.
    #[test]
    fn schema_versions_are_placed_by_lsn_or_by_time() {
        let bookmark = AsOf { lsn: 10, at_us: None };
        assert!(bookmark.reached(11, i64::MAX) && !bookmark.reached(12, 0));
        let time = AsOf { lsn: 10, at_us: Some(1_000) };
        assert!(time.reached(50, 1_000) && !time.reached(1, 1_001));
    }

    /// What the shipper writes, read back, is what PostgreSQL's input
    /// functions take for the same values.
    #[test]
    fn changelog_rows_read_back_as_the_change_log_had_them() {
        let columns: Vec<SourceColumn> = serde_json::from_value(json!([
            {"name": "id", "type": "bigint", "typeOid": 20, "attnum": 1},
            {"name": "price", "type": "numeric(8,2)", "typeOid": 1700, "attnum": 2},
            {"name": "raw", "type": "bytea", "typeOid": 17, "attnum": 3},
            {"name": "day", "type": "date", "typeOid": 1082, "attnum": 4},
            {"name": "at", "type": "timestamp with time zone", "typeOid": 1184, "attnum": 5},
            {"name": "uid", "type": "uuid", "typeOid": 2950, "attnum": 6},
            {"name": "meta", "type": "jsonb", "typeOid": 3802, "attnum": 7},
            {"name": "ok", "type": "boolean", "typeOid": 16, "attnum": 8},
            {"name": "score", "type": "double precision", "typeOid": 701, "attnum": 9},
            {"name": "t", "type": "time without time zone", "typeOid": 1083, "attnum": 10},
        ]))
        .unwrap();
        let schema = changelog_schema(&columns, &(1..=10).collect::<Vec<_>>(), CHANGELOG_FIELD_IDS).unwrap();
        let row = json!({"id": 7, "price": "19.90", "raw": "\\xdead00", "day": "2026-02-03",
                         "at": "2026-02-03 02:05:06.789+00", "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                         "meta": {"a": [1, "two"]}, "ok": true, "score": "NaN", "t": "23:59:59.5"});
        let changes: Vec<Change> = [
            json!({"lsn": 11, "xid": 1, "commitTs": "2026-02-03 02:05:07+00", "op": "insert", "new": row, "old": null}),
            json!({"lsn": 12, "xid": 2, "commitTs": "2026-02-03 02:05:08.25+00", "op": "delete", "new": null, "old": {"id": 7}}),
            json!({"lsn": 13, "xid": 3, "commitTs": "2026-02-03 02:05:09+00", "op": "truncate", "new": null, "old": null}),
        ]
        .into_iter()
        .map(|mut c| {
            c["table"] = json!("items");
            serde_json::from_value(c).unwrap()
        })
        .collect();
        let batch = record_batch(&schema, &changes.iter().collect::<Vec<_>>()).unwrap();
        let mut back = Vec::new();
        changes_of(&batch, "public", "items", &Vec::new(), &mut back).unwrap();
        assert_eq!(back.len(), 3);
        let new = back[0].new.as_ref().unwrap();
        assert_eq!((back[0].lsn, back[0].op, back[0].table.as_str()), (11, Op::Insert, "items"));
        assert_eq!(new["id"], 7);
        assert_eq!(new["price"], "19.90");
        assert_eq!(new["raw"], "\\xdead00");
        assert_eq!(new["day"], "2026-02-03");
        assert_eq!(new["uid"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        // JSON comes back as its text, for replay to parse.
        assert_eq!(serde_json::from_str::<Value>(new["meta"].as_str().unwrap()).unwrap(), json!({"a": [1, "two"]}));
        assert_eq!((new["ok"].as_bool(), new["score"].as_str()), (Some(true), Some("NaN")));
        let at = new["at"].as_str().unwrap();
        assert!(at.starts_with("2026-02-03T02:05:06.789") && (at.ends_with('Z') || at.ends_with("+00:00")), "{at}");
        assert_eq!(new["t"], "23:59:59.500");
        // The change's own columns come back as the change log had them.
        assert_eq!(back[1].old, Some(json!({"id": 7}).as_object().unwrap().clone()));
        assert_eq!((back[1].new.as_ref(), back[1].xid), (None, 2));
        assert_eq!(back[1].commit_ts.as_deref(), Some("2026-02-03 02:05:08.25+00"));
        assert_eq!((back[2].op, back[2].new.as_ref(), back[2].old.as_ref()), (Op::Truncate, None, None));
    }
}
