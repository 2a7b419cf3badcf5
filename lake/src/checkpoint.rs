//! State checkpoints: a changelog table's state — the change that holds
//! each key's row, for every live key — materialized at an LSN, so a state
//! `AS OF` a later instant reads the newest checkpoint at or before it plus
//! the changes after it, not the whole history.
//!
//! A changelog table `<name>` has its checkpoints in the Iceberg table
//! `<name>$checkpoint` of the same namespace (`$` never occurs in a lake
//! name, so no source table can have that name). It has the changelog's
//! schemas with the same field ids, unpartitioned, and each of its
//! snapshots is one checkpoint: exactly the rows of the state at the LSN its
//! summary names (`tidelake.checkpoint-lsn`; `tidelake.checkpoint-at` is
//! the commit time of the newest change it holds, in µs). Outside readers
//! read a checkpoint as that snapshot (time travel by snapshot id).
//!
//! The rows are changelog rows, unchanged: the latest change of each key
//! after the latest truncate, drop or new relation, unless it is a delete —
//! the rule every state read applies. The state at an instant after the
//! checkpoint is therefore the same rule over the checkpoint's rows and the
//! changes after its LSN.
//!
//! A table gets a new checkpoint when it has taken at least as many changes
//! since the last one as the larger of `checkpoint_changes` and the last
//! checkpoint's rows: a state read scans at most about twice the state, and
//! checkpoints take at most about as much room as the history.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, new_null_array};
use arrow_row::{OwnedRow, RowConverter, SortField};
use arrow_schema::{Schema as ArrowSchema, SchemaRef as ArrowSchemaRef};
use catalog::{CatalogError, Warehouse};
use futures::TryStreamExt;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::expr::Reference;
use iceberg::spec::{
    DataFileFormat, Datum, FormatVersion, ManifestListWriter, ManifestWriterBuilder, Operation, Snapshot, Summary,
    TableMetadata,
};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, ErrorKind, TableRequirement, TableUpdate};
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::error::{LakeError, Result};
use crate::table::{self, PROP_TENANT};

pub use crate::spec::{CHECKPOINT_SUFFIX, PROP_CHECKPOINT_OF, SUMMARY_CHECKPOINT_LSN, SUMMARY_CHECKPOINT_AT, SUMMARY_CHECKPOINT_ROWS, SUMMARY_CHECKPOINT_KEY, SUMMARY_CHECKPOINT_RECORDS};

pub use crate::spec::{Checkpoint, checkpoint_ident, checkpoints, is_checkpoint_table, load};

/// Take a checkpoint of `changelog` if it is due (see the module docs).
/// `records` is the changelog's live record count.
pub async fn maybe_checkpoint(
    warehouse: &Warehouse,
    changelog: &Table,
    records: u64,
    every: u64,
) -> Result<Option<Checkpoint>> {
    let lsn = table::shipped_through(changelog);
    let Some(head) = changelog.metadata().current_snapshot() else { return Ok(None) };
    if lsn == 0 || changelog.metadata().format_version() != FormatVersion::V2 {
        return Ok(None);
    }
    // The key in force at `lsn`; no key, no state.
    let Some((key_ids, cut)) = key_and_cut_at(changelog, lsn) else { return Ok(None) };
    let existing = load(warehouse, changelog.identifier()).await?;
    let previous = existing.as_ref().and_then(|t| checkpoints(t).pop());
    if let Some(p) = &previous {
        let since = records.saturating_sub(p.records);
        if p.lsn >= lsn || since < every.max(p.rows) {
            return Ok(None);
        }
    } else if records < every {
        return Ok(None);
    }
    let reading = table::reading_schema(changelog);
    let target: ArrowSchemaRef = Arc::new(schema_to_arrow_schema(&reading)?);
    let cp = match existing {
        Some(t) => conform_schema(warehouse, t, changelog).await?,
        None => create(warehouse, changelog).await?,
    };

    // The previous checkpoint's rows, then the changes after it.
    let mut batches: Vec<RecordBatch> = Vec::new();
    let after = match &previous {
        Some(p) if p.key == key_ids => {
            let mut rows = cp.scan().snapshot_id(p.snapshot_id).select_all().build()?.to_arrow().await?;
            while let Some(batch) = rows.try_next().await? {
                batches.push(conform(&batch, &target)?);
            }
            p.lsn
        }
        // The key changed since: the whole history again.
        _ => 0,
    };
    let lsn_field = Reference::new("_lsn");
    let filter = lsn_field
        .clone()
        .greater_than(Datum::long(after as i64))
        .and(lsn_field.less_than_or_equal_to(Datum::long(lsn as i64)));
    let mut changes = changelog.scan().snapshot_id(head.snapshot_id()).with_filter(filter).build()?.to_arrow().await?;
    while let Some(batch) = changes.try_next().await? {
        batches.push(conform(&batch, &target)?);
    }

    let key_names: Vec<String> = key_ids
        .iter()
        .map(|id| reading.field_by_id(*id).map(|f| f.name.clone()))
        .collect::<Option<_>>()
        .ok_or_else(|| LakeError::Mapping(format!("{}: a key field is not in the schema", changelog.identifier())))?;
    let (state, at) = reduce(&batches, &key_names, cut)?;
    let rows: u64 = state.iter().map(|b| b.num_rows() as u64).sum();

    // Write the state and commit it as the checkpoint table's next snapshot.
    let metadata = cp.metadata();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().clone();
    let file_io = cp.file_io().clone();
    let snapshot_id = crate::maintain::new_snapshot_id(metadata);
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let rolling = RollingFileWriterBuilder::new(
        ParquetWriterBuilder::new(props, schema.clone()),
        256 * 1024 * 1024,
        file_io.clone(),
        DefaultLocationGenerator::new(metadata)?,
        DefaultFileNameGenerator::new(format!("lsn-{lsn}"), Some(format!("{snapshot_id:x}")), DataFileFormat::Parquet),
    );
    let mut writer = DataFileWriterBuilder::new(rolling).build(None).await?;
    let cp_arrow: ArrowSchemaRef = Arc::new(schema_to_arrow_schema(&schema)?);
    for batch in &state {
        writer.write(conform(batch, &cp_arrow)?).await?;
    }
    let files = writer.close().await?;
    crate::maintain::crash_point("checkpoint-written");
    let manifest_path = format!("{}/metadata/{}-checkpoint-m0.avro", metadata.location(), crate::maintain::unique_name());
    let mut manifest = ManifestWriterBuilder::new(file_io.new_output(&manifest_path)?, Some(snapshot_id), schema.clone(), (*spec).clone())
        .build_v2_data();
    for file in &files {
        manifest.add_file(file.clone(), -1)?;
    }
    let manifest = manifest.write_manifest_file().await?;
    let parent = metadata.current_snapshot_id();
    let sequence = metadata.next_sequence_number();
    let list_path =
        format!("{}/metadata/snap-{snapshot_id}-1-{}.avro", metadata.location(), crate::maintain::unique_name());
    let mut list = ManifestListWriter::v2(file_io.new_output(&list_path)?.writer().await?, snapshot_id, parent, sequence);
    list.add_manifests([manifest].into_iter())?;
    list.close().await?;
    let checkpoint = Checkpoint { lsn, at, rows, key: key_ids, records, snapshot_id };
    let key_text: Vec<String> = checkpoint.key.iter().map(i32::to_string).collect();
    let summary = HashMap::from([
        (SUMMARY_CHECKPOINT_LSN.to_owned(), lsn.to_string()),
        (SUMMARY_CHECKPOINT_AT.to_owned(), at.to_string()),
        (SUMMARY_CHECKPOINT_ROWS.to_owned(), rows.to_string()),
        (SUMMARY_CHECKPOINT_KEY.to_owned(), key_text.join(",")),
        (SUMMARY_CHECKPOINT_RECORDS.to_owned(), records.to_string()),
        ("added-data-files".to_owned(), files.len().to_string()),
        ("added-records".to_owned(), rows.to_string()),
        ("total-data-files".to_owned(), files.len().to_string()),
        ("total-records".to_owned(), rows.to_string()),
    ]);
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent)
        .with_sequence_number(sequence)
        .with_timestamp_ms(crate::maintain::now_ms().max(metadata.last_updated_ms()))
        .with_manifest_list(list_path)
        .with_summary(Summary { operation: Operation::Overwrite, additional_properties: summary })
        .with_schema_id(metadata.current_schema_id())
        .build();
    let (requirements, updates) = crate::maintain::new_main(metadata, parent, snapshot);
    warehouse.commit(cp.identifier(), requirements, updates).await?;
    crate::maintain::crash_point("checkpoint-committed");
    tracing::info!(table = %changelog.identifier(), lsn, rows, "lake maintenance: checkpoint taken");
    Ok(Some(checkpoint))
}

/// The key (field ids) in force at `lsn`, and the LSN below which changes
/// belong to earlier relations of the name.
fn key_and_cut_at(changelog: &Table, lsn: u64) -> Option<(Vec<i32>, u64)> {
    let versions = table::columns_history(changelog);
    let version = versions.iter().rev().find(|v| v.lsn <= lsn).or(versions.first())?;
    if version.key_ids.is_empty() {
        return None;
    }
    let cut = table::relations(changelog)
        .into_iter()
        .map(|(start, _)| start)
        .filter(|start| *start <= lsn)
        .max()
        .map_or(0, |start| start.saturating_sub(1));
    Some((version.key_ids.clone(), cut))
}

/// The surviving rows: for each key, its latest change after the latest
/// truncate or drop and after `cut`, unless that change is a delete. Also
/// the newest commit time among the rows read.
fn reduce(batches: &[RecordBatch], key: &[String], cut: u64) -> Result<(Vec<RecordBatch>, i64)> {
    let Some(first) = batches.first() else { return Ok((Vec::new(), 0)) };
    let schema = first.schema();
    let mapping = |e: arrow_schema::ArrowError| LakeError::Mapping(format!("checkpoint: {e}"));
    let fields = key
        .iter()
        .map(|k| Ok(SortField::new(schema.field_with_name(k).map_err(mapping)?.data_type().clone())))
        .collect::<Result<Vec<_>>>()?;
    let converter = RowConverter::new(fields).map_err(mapping)?;
    let mut latest: HashMap<OwnedRow, (i64, usize, usize)> = HashMap::new();
    let mut reset = cut as i64;
    let mut at = 0i64;
    for (b, batch) in batches.iter().enumerate() {
        let column = |name: &str| batch.column_by_name(name).ok_or_else(|| LakeError::Mapping(format!("checkpoint: no column {name}")));
        let ops = column("_op")?.as_any().downcast_ref::<StringArray>().cloned();
        let lsns = column("_lsn")?.as_any().downcast_ref::<Int64Array>().cloned();
        let (Some(ops), Some(lsns)) = (ops, lsns) else {
            return Err(LakeError::Mapping("checkpoint: _op or _lsn of an unexpected type".into()));
        };
        let commit = arrow_cast::cast(column("_commit_ts")?, &arrow_schema::DataType::Int64).map_err(mapping)?;
        let commit = commit.as_any().downcast_ref::<Int64Array>().cloned().unwrap_or_else(|| Int64Array::from(Vec::<i64>::new()));
        let keys: Vec<ArrayRef> = key.iter().map(|k| column(k).cloned()).collect::<Result<_>>()?;
        let rows = converter.convert_columns(&keys).map_err(mapping)?;
        for i in 0..batch.num_rows() {
            let lsn = lsns.value(i);
            if !commit.is_null(i) {
                at = at.max(commit.value(i));
            }
            match ops.value(i) {
                "truncate" | "drop" => reset = reset.max(lsn),
                _ => {
                    let entry = latest.entry(rows.row(i).owned()).or_insert((i64::MIN, b, i));
                    if lsn > entry.0 {
                        *entry = (lsn, b, i);
                    }
                }
            }
        }
    }
    let mut keep: Vec<Vec<bool>> = batches.iter().map(|b| vec![false; b.num_rows()]).collect();
    for (lsn, b, i) in latest.into_values() {
        if lsn > reset {
            keep[b][i] = true;
        }
    }
    let mut state = Vec::new();
    for (batch, keep) in batches.iter().zip(keep) {
        let ops = batch.column_by_name("_op").and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
        let mask: BooleanArray =
            keep.iter().enumerate().map(|(i, k)| Some(*k && ops.as_ref().is_some_and(|o| o.value(i) != "delete"))).collect();
        let kept = arrow_select::filter::filter_record_batch(batch, &mask).map_err(mapping)?;
        if kept.num_rows() > 0 {
            state.push(kept);
        }
    }
    Ok((state, at))
}

/// `batch` under `target`: each field taken from the batch's field of the
/// same Iceberg field id (cast where it was promoted since), or null.
fn conform(batch: &RecordBatch, target: &ArrowSchemaRef) -> Result<RecordBatch> {
    let id_of = |f: &arrow_schema::Field| f.metadata().get(PARQUET_FIELD_ID_META_KEY).cloned();
    let source = batch.schema();
    let columns = target
        .fields()
        .iter()
        .map(|field| {
            let found = id_of(field).and_then(|id| source.fields().iter().position(|f| id_of(f).as_ref() == Some(&id)));
            match found {
                Some(i) if batch.column(i).data_type() == field.data_type() => Ok(batch.column(i).clone()),
                Some(i) => arrow_cast::cast(batch.column(i), field.data_type())
                    .map_err(|e| LakeError::Mapping(format!("checkpoint: field {}: {e}", field.name()))),
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let schema = Arc::new(ArrowSchema::new(target.fields().clone()));
    RecordBatch::try_new(schema, columns).map_err(|e| LakeError::Mapping(format!("checkpoint: {e}")))
}

/// Create the checkpoint table of `changelog`: its schemas and field ids,
/// no snapshots, unpartitioned, in a directory beside it.
async fn create(warehouse: &Warehouse, changelog: &Table) -> Result<Table> {
    let ident = checkpoint_ident(changelog.identifier());
    let location = format!("{}{CHECKPOINT_SUFFIX}", changelog.metadata().location().trim_end_matches('/'));
    warehouse.root().check("checkpoint table location", &location).map_err(LakeError::Catalog)?;
    let mut json = serde_json::to_value(changelog.metadata())
        .map_err(|e| LakeError::Mapping(format!("checkpoint table metadata: {e}")))?;
    let tenant = changelog.metadata().properties().get(PROP_TENANT).cloned().unwrap_or_default();
    let mut properties = table::bounded_metadata();
    properties.insert(PROP_TENANT.to_owned(), tenant);
    properties.insert(PROP_CHECKPOINT_OF.to_owned(), changelog.identifier().name().to_owned());
    properties.insert("write.parquet.compression-codec".to_owned(), "zstd".to_owned());
    let object = json.as_object_mut().ok_or_else(|| LakeError::Mapping("checkpoint table metadata".into()))?;
    object.insert("table-uuid".into(), Value::String(uuid::Uuid::now_v7().to_string()));
    object.insert("location".into(), Value::String(location.clone()));
    object.insert("last-updated-ms".into(), crate::maintain::now_ms().into());
    object.insert("properties".into(), serde_json::to_value(&properties).unwrap_or_default());
    object.insert("current-snapshot-id".into(), Value::from(-1));
    for key in ["snapshots", "snapshot-log", "metadata-log", "statistics", "partition-statistics"] {
        object.insert(key.into(), Value::Array(Vec::new()));
    }
    object.insert("refs".into(), Value::Object(Default::default()));
    object.insert("partition-specs".into(), serde_json::json!([{"spec-id": 0, "fields": []}]));
    object.insert("default-spec-id".into(), Value::from(0));
    object.insert("last-sequence-number".into(), Value::from(0));
    let metadata: TableMetadata = serde_json::from_value(json)
        .map_err(|e| LakeError::Mapping(format!("checkpoint table metadata: {e}")))?;
    let path = format!("{location}/metadata/00000-{}.metadata.json", uuid::Uuid::now_v7());
    let bytes = serde_json::to_vec(&metadata).map_err(|e| LakeError::Mapping(format!("checkpoint table metadata: {e}")))?;
    changelog.file_io().new_output(&path)?.write(bytes.into()).await?;
    match warehouse.catalog().register_table(&ident, path).await {
        Ok(table) => Ok(table),
        Err(e) if e.kind() == ErrorKind::TableAlreadyExists => Ok(warehouse.catalog().load_table(&ident).await?),
        Err(e) => Err(e.into()),
    }
}

/// Give the checkpoint table the changelog's reading schema (same field
/// ids) if it does not have it yet.
async fn conform_schema(warehouse: &Warehouse, cp: Table, changelog: &Table) -> Result<Table> {
    let reading = table::reading_schema(changelog);
    if cp.metadata().current_schema().as_struct() == reading.as_struct() {
        return Ok(cp);
    }
    let requirements = vec![TableRequirement::CurrentSchemaIdMatch { current_schema_id: cp.metadata().current_schema_id() }];
    let updates = vec![
        TableUpdate::AddSchema { schema: (*reading).clone() },
        TableUpdate::SetCurrentSchema { schema_id: -1 },
    ];
    match warehouse.commit(cp.identifier(), requirements, updates).await {
        Ok(table) => Ok(table),
        Err(CatalogError::CommitFailed(_)) => Ok(warehouse.catalog().load_table(cp.identifier()).await?),
        Err(e) => Err(e.into()),
    }
}

