//! One changelog table: created from the first schema version of its source
//! table, evolved with it, and appended to by the shipper.
//!
//! What the shipper needs to resume lives in the table itself: the snapshot
//! summary of every commit carries `tidelake.lsn-to` (every change of the
//! source table up to that LSN is in the table), and the table properties
//! carry which relation and schema version the current schema follows and
//! which Iceberg field id each PostgreSQL column (by `attnum`) has.
//!
//! The table is named by `names` and kept in its tenant's directory of the
//! warehouse: a table whose files would go anywhere else is not written to.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use catalog::{CatalogError, Warehouse};
use iceberg::spec::{
    DataFile, DataFileFormat, Literal, NestedField, PartitionKey, PrimitiveType, Schema, Struct, Transform, Type,
    UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent, TableRequirement, TableUpdate};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::{Value, json};

use crate::config::Partitioning;
use crate::error::{LakeError, Result};
use crate::mapping::{self, COMMIT_TS_FIELD_ID};
use crate::names::SourceTable;

pub use crate::spec::{PROP_TENANT, PROP_SOURCE, PROP_SOURCE_SCHEMA, PROP_SOURCE_TABLE, PROP_TABLE_OID, PROP_SCHEMA_VERSION, PROP_FIELD_IDS, PROP_PRIMARY_KEY, PROP_RELATIONS, PROP_COLUMNS, PROP_LSN_TO, PREVIOUS_METADATA_FILES, SUMMARY_TENANT, SUMMARY_LSN_FROM, SUMMARY_LSN_TO, SUMMARY_CHANGES};

/// Attempts at a data commit that keeps conflicting with other writers.
const MAX_COMMIT_ATTEMPTS: u32 = 20;

pub use model::SchemaVersion;
use model::Change;

/// `<first LSN>@<commit time in µs>`: where a relation starts.
fn relation_start(version: &SchemaVersion) -> String {
    format!("{}@{}", version.lsn, version.commit_micros())
}

/// `version`'s entry of [`PROP_COLUMNS`], its columns in the fields
/// `field_ids` (attnum → field id) gives them.
fn columns_entry(version: &SchemaVersion, field_ids: &BTreeMap<i32, i32>) -> Value {
    let columns: Vec<Value> = version
        .columns
        .iter()
        .filter_map(|c| {
            let id = field_ids.get(&c.attnum)?;
            // The PostgreSQL type and nullability too: a restore from the
            // lake alone creates the table as it was.
            let iceberg = mapping::column_type(c, 0).to_string();
            Some(json!([c.name, id, iceberg, c.type_name, c.nullable]))
        })
        .collect();
    let key: Vec<Value> = version
        .primary_key
        .iter()
        .filter_map(|k| version.columns.iter().find(|c| &c.name == k).and_then(|c| field_ids.get(&c.attnum)))
        .map(|id| json!(id))
        .collect();
    json!({"version": version.version, "lsn": version.lsn, "at": version.commit_micros(), "columns": columns, "key": key})
}

pub use crate::spec::{ColumnThen, ColumnsSince, columns_history, reading_schema, relations};

/// [`PROP_COLUMNS`] as `existing` says it, with `entry` last (in place of
/// an entry of the same version).
fn columns_with(existing: Option<&String>, entry: Value) -> String {
    let mut list: Vec<Value> = existing.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
    if list.last().is_some_and(|last| last["version"] == entry["version"]) {
        list.pop();
    }
    list.push(entry);
    Value::Array(list).to_string()
}

/// The source table a changelog table records it follows; None for a table
/// the lake did not create.
pub fn recorded_source(table: &Table) -> Option<SourceTable> {
    let props = table.metadata().properties();
    if let (Some(schema), Some(name)) = (props.get(PROP_SOURCE_SCHEMA), props.get(PROP_SOURCE_TABLE)) {
        return Some(SourceTable::new(schema.as_str(), name.as_str()));
    }
    legacy_source(props, table.identifier().name())
}

/// The source of a table from before the exact properties: `tidelake.source`
/// is `schema.table` with dots allowed in both; the split whose name (old
/// rule or new) is the table's own is the one.
fn legacy_source(props: &HashMap<String, String>, name: &str) -> Option<SourceTable> {
    let source = props.get(PROP_SOURCE)?;
    let mut splits = source.match_indices('.').map(|(i, _)| SourceTable::new(&source[..i], &source[i + 1..]));
    let first = splits.next()?;
    let names_this = |s: &SourceTable| s.legacy_lake_name() == name || s.lake_name().is_ok_and(|n| n == name);
    if names_this(&first) {
        return Some(first);
    }
    Some(splits.find(names_this).unwrap_or(first))
}

/// Properties naming the source table.
fn source_properties(source: &SourceTable) -> HashMap<String, String> {
    HashMap::from([
        (PROP_SOURCE.to_owned(), source.to_string()),
        (PROP_SOURCE_SCHEMA.to_owned(), source.schema.clone()),
        (PROP_SOURCE_TABLE.to_owned(), source.table.clone()),
    ])
}

pub struct ChangelogTable {
    table: Table,
    /// The tenant's directory of the warehouse, which the table's files must stay in.
    base: String,
    /// Every change of the source table up to this LSN is in the table.
    lsn_to: u64,
    version: i64,
    table_oid: i64,
    /// PostgreSQL attnum → Iceberg field id, for the current relation.
    field_ids: BTreeMap<i32, i32>,
}

impl ChangelogTable {
    /// The changelog table of `source` in the tenant's namespace: loaded,
    /// or created for `first`, the schema version of the first changes to
    /// ship. A table an older release shipped the source into under its
    /// unescaped name is renamed to the lake name and continued (docs/lake.md,
    /// "Names").
    pub async fn open(
        warehouse: &Warehouse,
        namespace: &NamespaceIdent,
        tenant: &str,
        source: &SourceTable,
        first: &SchemaVersion,
        partitioning: Partitioning,
    ) -> Result<Self> {
        let catalog = warehouse.catalog();
        let base = warehouse.namespace_location(namespace)?;
        let ident = TableIdent::new(namespace.clone(), source.lake_name()?);
        if catalog.table_exists(&ident).await? {
            let table = catalog.load_table(&ident).await?;
            match recorded_source(&table) {
                // Only an older release's `<schema>__<table>` for a table of
                // `public` (`public."a__b"`) holds another table's lake name.
                Some(other) if other != *source => move_aside(warehouse, table, &other).await?,
                _ => return Self::continued(warehouse, base, table, source).await,
            }
        } else if let Some(table) = adopt_legacy(warehouse, &base, &ident, source).await? {
            return Self::continued(warehouse, base, table, source).await;
        }

        let field_ids: Vec<i32> = (1..=first.columns.len() as i32).collect();
        let schema = mapping::changelog_schema(&first.columns, &field_ids, mapping::CHANGELOG_FIELD_IDS)?;
        let (transform, name) = match partitioning {
            Partitioning::Day => (Transform::Day, "_commit_ts_day"),
            Partitioning::Hour => (Transform::Hour, "_commit_ts_hour"),
        };
        let spec = UnboundPartitionSpec::builder()
            .add_partition_field(COMMIT_TS_FIELD_ID, name, transform)?
            .build();
        let attnums: BTreeMap<i32, i32> = first.columns.iter().map(|c| c.attnum).zip(field_ids).collect();
        let mut properties = relation_properties(first, &attnums);
        properties.insert(PROP_COLUMNS.into(), columns_with(None, columns_entry(first, &attnums)));
        properties.extend(source_properties(source));
        properties.insert(PROP_RELATIONS.into(), relation_start(first));
        properties.insert(PROP_TENANT.into(), tenant.into());
        properties.insert("write.parquet.compression-codec".into(), "zstd".into());
        // The shipper retries conflicts itself (and counts them).
        properties.insert("commit.retry.num-retries".into(), "0".into());
        properties.extend(bounded_metadata());
        // In the tenant's directory, whatever the namespace's properties say;
        // beside a renamed table's files, never among them.
        let location = warehouse.unused_location(namespace, &format!("{base}/{}", ident.name())).await?;
        let creation = TableCreation::builder()
            .name(ident.name().to_owned())
            .location(location)
            .schema(schema)
            .partition_spec(spec)
            .properties(properties)
            .build();
        match warehouse.create_table(namespace, creation).await {
            Ok(table) => {
                let mut created = Self::from_table(table, base)?;
                created.check_created_ids(warehouse, first).await?;
                Ok(created)
            }
            // Created meanwhile (another process on the same catalog): use it.
            Err(CatalogError::AlreadyExists(_)) => {
                Self::continued(warehouse, base, catalog.load_table(&ident).await?, source).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Continue an existing table: it must be inside the tenant's
    /// directory; one from before the exact source properties gets them.
    async fn continued(warehouse: &Warehouse, base: String, table: Table, source: &SourceTable) -> Result<Self> {
        let mut this = Self::from_table(table, base)?;
        this.check_location(warehouse)?;
        let props = this.table.metadata().properties();
        if props.get(PROP_SOURCE_SCHEMA) != Some(&source.schema) || props.get(PROP_SOURCE_TABLE) != Some(&source.table) {
            let ident = this.table.identifier().clone();
            let updates = vec![TableUpdate::SetProperties { updates: source_properties(source) }];
            let committed = warehouse.commit(&ident, Vec::new(), updates).await?;
            this.reload(committed)?;
        }
        Ok(this)
    }

    /// Refuse to write to a table whose files would leave the tenant's directory.
    fn check_location(&self, warehouse: &Warehouse) -> Result<()> {
        warehouse.check_table_under(&self.base, self.table.metadata()).map_err(|e| {
            LakeError::Location(format!("lake table {} is not written to: {e}", self.table.identifier()))
        })
    }

    fn reload(&mut self, table: Table) -> Result<()> {
        let base = std::mem::take(&mut self.base);
        *self = Self::from_table(table, base)?;
        Ok(())
    }

    fn from_table(table: Table, base: String) -> Result<Self> {
        let props = table.metadata().properties();
        let number = |key: &str| props.get(key).and_then(|v| v.parse::<i64>().ok());
        let field_ids = props
            .get(PROP_FIELD_IDS)
            .map(|v| parse_field_ids(v))
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            lsn_to: shipped_through(&table),
            version: number(PROP_SCHEMA_VERSION).unwrap_or(0),
            table_oid: number(PROP_TABLE_OID).unwrap_or(0),
            field_ids,
            table,
            base,
        })
    }

    /// The catalog numbers a new table's fields itself: record the ids it
    /// gave the source columns if they are not the ones proposed.
    async fn check_created_ids(&mut self, warehouse: &Warehouse, first: &SchemaVersion) -> Result<()> {
        let schema = self.table.metadata().current_schema().clone();
        let mut actual = BTreeMap::new();
        for column in &first.columns {
            let field = schema.field_by_name(&column.name).ok_or_else(|| {
                LakeError::Mapping(format!("created table {} lacks column {}", self.table.identifier(), column.name))
            })?;
            actual.insert(column.attnum, field.id);
        }
        if actual == self.field_ids {
            return Ok(());
        }
        let ident = self.table.identifier().clone();
        let mut properties = relation_properties(first, &actual);
        properties.insert(PROP_COLUMNS.into(), columns_with(None, columns_entry(first, &actual)));
        let updates = vec![TableUpdate::SetProperties { updates: properties }];
        let committed = warehouse.commit(&ident, Vec::new(), updates).await?;
        self.reload(committed)
    }

    pub fn lsn_to(&self) -> u64 {
        self.lsn_to
    }

    /// The schema version the table's current schema follows.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Make the current schema that of `version` (a schema change no
    /// change was written under).
    pub async fn evolve(&mut self, warehouse: &Warehouse, version: &SchemaVersion) -> Result<()> {
        self.ensure_schema(warehouse, version).await
    }

    /// Append `changes` (all of this table, of schema `version`, in LSN
    /// order) as the changes of this table in `(lsn_from - 1, lsn_to]`.
    /// Returns the number of data files written.
    #[allow(clippy::too_many_arguments)]
    pub async fn append(
        &mut self,
        warehouse: &Warehouse,
        tenant: &str,
        version: &SchemaVersion,
        changes: &[&Change],
        lsn_from: u64,
        lsn_to: u64,
        conflicts: &AtomicU64,
    ) -> Result<usize> {
        self.ensure_schema(warehouse, version).await?;
        // Another writer may have moved the table or its data meanwhile.
        self.check_location(warehouse)?;
        let schema = self.table.metadata().current_schema().clone();
        let spec = self.table.metadata().default_partition_spec().clone();
        let transform = spec.fields().first().map(|f| f.transform).unwrap_or(Transform::Day);

        // One data file per partition (day or hour of the commit time).
        let mut partitions: BTreeMap<i32, Vec<&Change>> = BTreeMap::new();
        for change in changes {
            partitions.entry(partition_value(change, transform)?).or_default().push(change);
        }
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let location = DefaultLocationGenerator::new(self.table.metadata())?;
        let unique = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let names = DefaultFileNameGenerator::new(
            format!("lsn-{lsn_from}-{lsn_to}"),
            Some(format!("{unique:x}")),
            DataFileFormat::Parquet,
        );
        let rolling = RollingFileWriterBuilder::new_with_default_file_size(
            ParquetWriterBuilder::new(props, schema.clone()),
            self.table.file_io().clone(),
            location,
            names,
        );
        let builder = DataFileWriterBuilder::new(rolling);
        let mut files: Vec<DataFile> = Vec::new();
        for (value, rows) in partitions {
            let batch = mapping::record_batch(&schema, &rows)?;
            let key = PartitionKey::new(
                (*spec).clone(),
                schema.clone(),
                Struct::from_iter([Some(Literal::int(value))]),
            );
            let mut writer = builder.build(Some(key)).await?;
            writer.write(batch).await?;
            files.extend(writer.close().await?);
        }
        let written = files.len();

        let summary = HashMap::from([
            (SUMMARY_TENANT.to_owned(), tenant.to_owned()),
            (SUMMARY_LSN_FROM.to_owned(), lsn_from.to_string()),
            (SUMMARY_LSN_TO.to_owned(), lsn_to.to_string()),
            (SUMMARY_CHANGES.to_owned(), changes.len().to_string()),
        ]);
        // Another writer committing in between (maintenance, another
        // client) is a conflict: retry the same files on the fresh table.
        // The table's `tidelake.lsn-to` moves in the same commit.
        let mut delay = Duration::from_millis(50);
        for attempt in 1.. {
            let tx = Transaction::new(&self.table);
            let tx = tx
                .fast_append()
                .add_data_files(files.clone())
                .set_snapshot_properties(summary.clone())
                .apply(tx)?;
            let tx = tx.update_table_properties().set(PROP_LSN_TO.to_owned(), lsn_to.to_string()).apply(tx)?;
            match tx.commit(&warehouse.transactions()).await {
                Ok(table) => {
                    self.table = table;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts && attempt < MAX_COMMIT_ATTEMPTS => {
                    conflicts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(table = %self.table.identifier(), attempt, "lake: commit conflict, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    self.table = warehouse.catalog().load_table(self.table.identifier()).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.lsn_to = lsn_to;
        Ok(written)
    }

    /// Make the current schema that of `version` (if it is not already).
    async fn ensure_schema(&mut self, warehouse: &Warehouse, version: &SchemaVersion) -> Result<()> {
        if version.version == self.version {
            return Ok(());
        }
        loop {
            let (schema, field_ids) = self.schema_for(version)?;
            let requirements = vec![
                TableRequirement::UuidMatch { uuid: self.table.metadata().uuid() },
                TableRequirement::CurrentSchemaIdMatch {
                    current_schema_id: self.table.metadata().current_schema_id(),
                },
                TableRequirement::LastAssignedFieldIdMatch {
                    last_assigned_field_id: self.table.metadata().last_column_id(),
                },
            ];
            let updates = vec![
                TableUpdate::AddSchema { schema },
                TableUpdate::SetCurrentSchema { schema_id: -1 },
                TableUpdate::SetProperties { updates: self.evolved_properties(version, &field_ids) },
            ];
            let ident = self.table.identifier().clone();
            match warehouse.commit(&ident, requirements, updates).await {
                Ok(committed) => return self.reload(committed),
                Err(CatalogError::CommitFailed(_)) => {
                    // Someone else changed the table meanwhile: evolve from theirs.
                    self.reload(warehouse.catalog().load_table(&ident).await?)?;
                    if version.version == self.version {
                        return Ok(());
                    }
                }
                Err(e) => return Err(LakeError::Catalog(e)),
            }
        }
    }

    /// Table properties after moving to `version`: a new relation is
    /// added to the relations.
    fn evolved_properties(&self, version: &SchemaVersion, field_ids: &BTreeMap<i32, i32>) -> HashMap<String, String> {
        let mut properties = relation_properties(version, field_ids);
        let existing = self.table.metadata().properties().get(PROP_COLUMNS);
        properties.insert(PROP_COLUMNS.to_owned(), columns_with(existing, columns_entry(version, field_ids)));
        if version.table_oid != self.table_oid {
            let mut relations = self.table.metadata().properties().get(PROP_RELATIONS).cloned().unwrap_or_default();
            if !relations.is_empty() {
                relations.push(',');
            }
            relations.push_str(&relation_start(version));
            properties.insert(PROP_RELATIONS.to_owned(), relations);
        }
        properties
    }

    /// The Iceberg schema for a schema version: a column keeps its field id
    /// while it is the same PostgreSQL column (same relation and attnum) and
    /// its type stays the same or is one Iceberg can promote; in a table
    /// created again under the same name, a column keeps the field of the
    /// same name if its type can be read as it. Anything else gets a new
    /// field id.
    fn schema_for(&self, version: &SchemaVersion) -> Result<(Schema, BTreeMap<i32, i32>)> {
        let metadata = self.table.metadata();
        let current = metadata.current_schema();
        let same_relation = version.table_oid == self.table_oid;
        let mut next_id = metadata.last_column_id() + 1;
        let mut field_ids = BTreeMap::new();
        let mut ids = Vec::with_capacity(version.columns.len());
        let mut element_ids = Vec::with_capacity(version.columns.len());
        let readable_as = |id: i32, wanted: &Type| {
            current.field_by_id(id).is_some_and(|f| match (f.field_type.as_ref(), wanted) {
                (Type::Primitive(had), Type::Primitive(wanted)) => promotable(had, wanted),
                (Type::List(had), Type::List(wanted)) => had.element_field.field_type == wanted.element_field.field_type,
                _ => false,
            })
        };
        for column in &version.columns {
            let wanted = mapping::column_type(column, 0);
            let kept = if same_relation {
                self.field_ids.get(&column.attnum).copied().filter(|id| readable_as(*id, &wanted))
            } else {
                // A table created again: a column of the same name and a
                // readable type continues the old one's field.
                current
                    .field_by_name(&column.name)
                    .map(|f| f.id)
                    .filter(|id| readable_as(*id, &wanted) && !ids.contains(id))
            };
            let id = kept.unwrap_or_else(|| {
                next_id += 1;
                next_id - 1
            });
            // A list keeps its element's field; a new one takes the next id.
            let element_id = match (kept, current.field_by_id(id).map(|f| f.field_type.as_ref())) {
                (Some(_), Some(Type::List(list))) => list.element_field.id,
                _ if matches!(wanted, Type::List(_)) => {
                    next_id += 1;
                    next_id - 1
                }
                _ => 0,
            };
            field_ids.insert(column.attnum, id);
            ids.push(id);
            element_ids.push(element_id);
        }
        let mut changelog_ids = [0; 4];
        for (slot, name) in changelog_ids.iter_mut().zip(crate::spec::CHANGELOG_COLUMNS) {
            *slot = current
                .field_by_name(name)
                .map(|f| f.id)
                .ok_or_else(|| LakeError::Mapping(format!("table {} has no {name} column", self.table.identifier())))?;
        }
        // Fields no column of this version continues (a dropped column, one
        // whose type changed past promotion, an earlier relation's) stay in
        // the schema, renamed `<name>$<field id>`, so every column the table
        // ever had stays readable: `AS OF` reads them under their names then.
        let retired: Vec<Arc<NestedField>> = current
            .as_struct()
            .fields()
            .iter()
            .filter(|f| !ids.contains(&f.id) && !changelog_ids.contains(&f.id))
            .map(|f| {
                let suffix = format!("${}", f.id);
                let name = if f.name.ends_with(&suffix) { f.name.clone() } else { format!("{}{suffix}", f.name) };
                Arc::new(NestedField::optional(f.id, name, f.field_type.as_ref().clone()))
            })
            .collect();
        Ok((mapping::changelog_schema_keeping(&version.columns, &ids, &element_ids, retired, changelog_ids)?, field_ids))
    }
}

/// Rename a table an older release shipped `other` into under a name that
/// is now another source table's lake name to `other`'s own lake name. Only
/// the catalog entry moves: its files stay where they are.
async fn move_aside(warehouse: &Warehouse, table: Table, other: &SourceTable) -> Result<()> {
    let from = table.identifier().clone();
    let to = TableIdent::new(from.namespace().clone(), other.lake_name()?);
    if warehouse.catalog().table_exists(&to).await? {
        return Err(LakeError::Name(format!(
            "lake table {from} holds {other}, whose own lake table {to} exists too: \
             rename or drop one of them in the catalog"
        )));
    }
    warehouse.catalog().rename_table(&from, &to).await?;
    tracing::info!(%from, %to, source = %other, "lake: moved a table to its source table's lake name");
    Ok(())
}

/// The table an older release shipped `source` into under its unescaped
/// name (`Todos`, `public."a__b"` as `a__b`), renamed to `ident`, the lake
/// name; None if there is none, it records another source, or it is not
/// inside the tenant's directory (then it is left as it is: restores still
/// read its history, and the source table goes on in a new table).
async fn adopt_legacy(
    warehouse: &Warehouse,
    base: &str,
    ident: &TableIdent,
    source: &SourceTable,
) -> Result<Option<Table>> {
    let legacy = TableIdent::new(ident.namespace().clone(), source.legacy_lake_name());
    if legacy == *ident || !warehouse.catalog().table_exists(&legacy).await? {
        return Ok(None);
    }
    let table = warehouse.catalog().load_table(&legacy).await?;
    if recorded_source(&table).as_ref() != Some(source) {
        return Ok(None);
    }
    if let Err(err) = warehouse.check_table_under(base, table.metadata()) {
        tracing::warn!(
            table = %legacy, error = %err,
            "lake: a table shipped under an unsafe name stays as it is; its source table continues in a new one"
        );
        return Ok(None);
    }
    warehouse.catalog().rename_table(&legacy, ident).await?;
    tracing::info!(from = %legacy, to = %ident, "lake: renamed a table to its safe lake name");
    Ok(Some(warehouse.catalog().load_table(ident).await?))
}

/// Whether a column of Iceberg type `from` can be read as `to` (the same
/// type, or a promotion the Iceberg spec allows).
fn promotable(from: &PrimitiveType, to: &PrimitiveType) -> bool {
    match (from, to) {
        (a, b) if a == b => true,
        (PrimitiveType::Int, PrimitiveType::Long) => true,
        (PrimitiveType::Float, PrimitiveType::Double) => true,
        (
            PrimitiveType::Decimal { precision: p1, scale: s1 },
            PrimitiveType::Decimal { precision: p2, scale: s2 },
        ) => s1 == s2 && p2 >= p1,
        _ => false,
    }
}

fn relation_properties(version: &SchemaVersion, field_ids: &BTreeMap<i32, i32>) -> HashMap<String, String> {
    let ids: Vec<String> = field_ids.iter().map(|(attnum, id)| format!("{attnum}:{id}")).collect();
    HashMap::from([
        (PROP_TABLE_OID.to_owned(), version.table_oid.to_string()),
        (PROP_SCHEMA_VERSION.to_owned(), version.version.to_string()),
        (PROP_FIELD_IDS.to_owned(), ids.join(",")),
        (PROP_PRIMARY_KEY.to_owned(), version.primary_key.join(",")),
    ])
}

fn parse_field_ids(text: &str) -> Result<BTreeMap<i32, i32>> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (a, b) = pair
                .split_once(':')
                .ok_or_else(|| LakeError::Mapping(format!("bad {PROP_FIELD_IDS} entry {pair:?}")))?;
            match (a.parse(), b.parse()) {
                (Ok(a), Ok(b)) => Ok((a, b)),
                _ => Err(LakeError::Mapping(format!("bad {PROP_FIELD_IDS} entry {pair:?}"))),
            }
        })
        .collect()
}

/// The LSN through which the table holds every change of its source table:
/// the table's `tidelake.lsn-to` property, which every append moves in its
/// own commit; for tables written before it, `tidelake.lsn-to` of the
/// newest of our commits in the current snapshot's ancestry (commits by
/// other writers carry none).
pub fn shipped_through(table: &Table) -> u64 {
    let metadata = table.metadata();
    if let Some(lsn) = metadata.properties().get(PROP_LSN_TO).and_then(|v| v.parse().ok()) {
        return lsn;
    }
    let mut snapshot = metadata.current_snapshot().cloned();
    while let Some(s) = snapshot {
        if let Some(lsn) = s.summary().additional_properties.get(SUMMARY_LSN_TO)
            && let Ok(lsn) = lsn.parse()
        {
            return lsn;
        }
        snapshot = s.parent_snapshot_id().and_then(|id| metadata.snapshot_by_id(id)).cloned();
    }
    0
}

/// The table properties that keep its metadata from growing with its
/// commits: old metadata files removed after each commit.
pub fn bounded_metadata() -> HashMap<String, String> {
    HashMap::from([
        (catalog::warehouse::PROP_DELETE_AFTER_COMMIT.to_owned(), "true".to_owned()),
        (catalog::warehouse::PROP_PREVIOUS_VERSIONS_MAX.to_owned(), PREVIOUS_METADATA_FILES.to_string()),
    ])
}

/// The partition value of a change: its commit time under the table's
/// transform (days or hours since the epoch), as Iceberg computes it.
fn partition_value(change: &Change, transform: Transform) -> Result<i32> {
    let text = change
        .commit_ts
        .as_deref()
        .ok_or_else(|| LakeError::Mapping(format!("change {} has no commit time", change.lsn)))?;
    let micros = mapping::timestamp_micros(text)
        .map_err(LakeError::Mapping)?
        .ok_or_else(|| LakeError::Mapping(format!("commit time {text:?} is not finite")))?;
    let value = iceberg::transform::create_transform_function(&transform)?
        .transform_literal_result(&iceberg::spec::Datum::timestamptz_micros(micros))?;
    match value.literal() {
        iceberg::spec::PrimitiveLiteral::Int(n) => Ok(*n),
        other => Err(LakeError::Mapping(format!("commit time {text:?} is partitioned as {other:?}, not a whole number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotions_follow_the_iceberg_spec() {
        assert!(promotable(&PrimitiveType::Int, &PrimitiveType::Long));
        assert!(!promotable(&PrimitiveType::Long, &PrimitiveType::Int));
        assert!(!promotable(&PrimitiveType::Int, &PrimitiveType::String));
        assert!(promotable(
            &PrimitiveType::Decimal { precision: 8, scale: 2 },
            &PrimitiveType::Decimal { precision: 12, scale: 2 }
        ));
        assert!(!promotable(
            &PrimitiveType::Decimal { precision: 8, scale: 2 },
            &PrimitiveType::Decimal { precision: 12, scale: 3 }
        ));
    }

    #[test]
    fn field_id_maps_round_trip() {
        let ids = BTreeMap::from([(1, 1), (3, 10005)]);
        let text: Vec<String> = ids.iter().map(|(a, b)| format!("{a}:{b}")).collect();
        assert_eq!(parse_field_ids(&text.join(",")).unwrap(), ids);
        assert!(parse_field_ids("1-2").is_err());
    }

    fn version_of(source: &SourceTable) -> SchemaVersion {
        serde_json::from_value(serde_json::json!({
            "version": 1, "tableOid": 100, "schema": source.schema, "table": source.table,
            "columns": [{"name": "id", "type": "integer", "typeOid": 23, "attnum": 1}],
            "primaryKey": ["id"], "lsn": 1, "commitTs": "2026-01-01 00:00:00+00",
        }))
        .unwrap()
    }

    /// A dropped column's field moves to the end of the schema, after a
    /// column the older files hold after it: a scan reads each field's own
    /// values from those files (iceberg-rust relabelled same-typed columns
    /// by position; vendor/iceberg/TIDELAKE-PATCH.md).
    #[tokio::test]
    async fn a_field_moved_since_a_file_was_written_reads_its_own_values() {
        use arrow_array::{Array, StringArray};
        use futures::TryStreamExt;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("tidelake-lake-moved-{}-{nanos}", std::process::id()));
        let warehouse = Warehouse::open(catalog::CatalogConfig::in_data_dir(&dir)).await.unwrap();
        let ns = crate::names::namespace("acme").unwrap();
        warehouse.create_namespace(&ns, HashMap::from([(PROP_TENANT.to_owned(), "acme".to_owned())])).await.unwrap();
        let source = SourceTable::new("public", "t");
        let version = |version: u64, columns: serde_json::Value, lsn: u64| -> SchemaVersion {
            serde_json::from_value(serde_json::json!({
                "version": version, "tableOid": 100, "schema": "public", "table": "t",
                "columns": columns, "primaryKey": ["id"], "lsn": lsn, "commitTs": "2026-01-01 00:00:00+00",
            }))
            .unwrap()
        };
        let id = serde_json::json!({"name": "id", "type": "integer", "typeOid": 23, "attnum": 1});
        let a = serde_json::json!({"name": "a", "type": "text", "typeOid": 25, "attnum": 2});
        let b = serde_json::json!({"name": "b", "type": "text", "typeOid": 25, "attnum": 3});
        let v1 = version(1, serde_json::json!([id, a, b]), 1);
        let v2 = version(2, serde_json::json!([id, b]), 2);
        let conflicts = AtomicU64::new(0);
        let mut table = ChangelogTable::open(&warehouse, &ns, "acme", &source, &v1, Partitioning::Day).await.unwrap();
        let first: Change = serde_json::from_value(serde_json::json!({"op": "insert", "lsn": 1, "xid": 1,
            "commitTs": "2026-01-01 00:00:01+00", "table": "t", "new": {"id": 1, "a": "a of 1", "b": "b of 1"}}))
        .unwrap();
        table.append(&warehouse, "acme", &v1, &[&first], 1, 1, &conflicts).await.unwrap();
        let second: Change = serde_json::from_value(serde_json::json!({"op": "insert", "lsn": 2, "xid": 2,
            "commitTs": "2026-01-01 00:00:02+00", "table": "t", "new": {"id": 2, "b": "b of 2"}}))
        .unwrap();
        table.append(&warehouse, "acme", &v2, &[&second], 2, 2, &conflicts).await.unwrap();

        let loaded = warehouse.catalog().load_table(table.table.identifier()).await.unwrap();
        let names: Vec<String> =
            loaded.metadata().current_schema().as_struct().fields().iter().map(|f| f.name.clone()).collect();
        let retired = names.iter().find(|n| n.starts_with("a$")).expect("a's field kept").clone();
        assert!(
            names.iter().position(|n| n == "b") < names.iter().position(|n| *n == retired),
            "the dropped column's field is after b now: {names:?}"
        );
        // In schema order, as DataFusion asks for them.
        let batches: Vec<_> = loaded
            .scan()
            .select(["b", retired.as_str(), "_lsn"])
            .build()
            .unwrap()
            .to_arrow()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut rows = Vec::new();
        for batch in batches {
            let text = |name: &str, i: usize| {
                let column = batch.column_by_name(name).unwrap().as_any().downcast_ref::<StringArray>().unwrap();
                (!column.is_null(i)).then(|| column.value(i).to_owned())
            };
            let lsn = batch.column_by_name("_lsn").unwrap().as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
            for i in 0..batch.num_rows() {
                rows.push((lsn.value(i), text("b", i), text(&retired, i)));
            }
        }
        rows.sort();
        assert_eq!(
            rows,
            vec![
                (1, Some("b of 1".to_owned()), Some("a of 1".to_owned())),
                (2, Some("b of 2".to_owned()), None),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The rule for tables an older release shipped (docs/lake.md, "Names").
    #[tokio::test]
    async fn tables_of_older_releases_continue_under_their_lake_names() {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("tidelake-lake-names-{}-{nanos}", std::process::id()));
        let warehouse = Warehouse::open(catalog::CatalogConfig::in_data_dir(&dir)).await.unwrap();
        let catalog = warehouse.catalog();
        let ns = crate::names::namespace("acme").unwrap();
        let props = HashMap::from([("tidelake.tenant".to_owned(), "acme".to_owned())]);
        warehouse.create_namespace(&ns, props).await.unwrap();
        let ident = |name: &str| TableIdent::new(ns.clone(), name.to_owned());
        let schema = || {
            let columns = version_of(&SourceTable::new("public", "x")).columns;
            mapping::changelog_schema(&columns, &[1], mapping::CHANGELOG_FIELD_IDS).unwrap()
        };
        // As an older release created them: unescaped names (where the SQL
        // catalog put them), `tidelake.source` only.
        let legacy = |name: &'static str, source: &'static str, location: Option<String>| {
            let creation = TableCreation::builder()
                .name(name.to_owned())
                .location_opt(location)
                .schema(schema())
                .properties(HashMap::from([(PROP_SOURCE.to_owned(), source.to_owned())]))
                .build();
            let ns = ns.clone();
            async move { catalog.create_table(&ns, creation).await.unwrap() }
        };
        legacy("a__b", "public.a__b", None).await;
        legacy("Todos", "public.Todos", None).await;
        legacy("../other/t", "public.../other/t", None).await;
        let elsewhere = format!("{}/other/x", warehouse.config().warehouse);
        legacy("x", "public.x", Some(elsewhere)).await;

        let open = |schema: &'static str, table: &'static str| {
            let source = SourceTable::new(schema, table);
            let warehouse = &warehouse;
            let ns = ns.clone();
            async move { ChangelogTable::open(warehouse, &ns, "acme", &source, &version_of(&source), Partitioning::Day).await }
        };
        // a.b's lake name held public."a__b"'s old table: it moves to its own.
        let ab = open("a", "b").await.unwrap();
        assert_eq!(ab.table.identifier().name(), "a__b");
        assert_eq!(recorded_source(&ab.table), Some(SourceTable::new("a", "b")));
        let moved = catalog.load_table(&ident("a-5f_b")).await.unwrap();
        assert_eq!(recorded_source(&moved), Some(SourceTable::new("public", "a__b")));
        // The moved table keeps its files; the new one does not share them.
        assert!(moved.metadata().location().ends_with("/acme/a__b"));
        assert!(ab.table.metadata().location().contains("/acme/a__b-"), "{}", ab.table.metadata().location());
        // … where public."a__b" continues, now with the exact properties.
        let public_ab = open("public", "a__b").await.unwrap();
        assert_eq!(public_ab.table.identifier().name(), "a-5f_b");
        assert_eq!(public_ab.table.metadata().properties().get(PROP_SOURCE_TABLE).map(String::as_str), Some("a__b"));
        // An old name inside the tenant's directory: renamed, files kept.
        let todos = open("public", "Todos").await.unwrap();
        assert_eq!(todos.table.identifier().name(), "-54odos");
        assert!(todos.table.metadata().location().ends_with("/acme/Todos"));
        assert!(!catalog.table_exists(&ident("Todos")).await.unwrap());
        // An old name whose files are elsewhere: left alone, a new table.
        let escaped = open("public", "../other/t").await.unwrap();
        assert_eq!(escaped.table.identifier().name(), "-2e-2e-2fother-2ft");
        assert!(escaped.table.metadata().location().ends_with("/warehouse/acme/-2e-2e-2fother-2ft"));
        assert!(catalog.table_exists(&ident("../other/t")).await.unwrap());
        // A table under its lake name but outside the tenant's directory is not written to.
        assert!(matches!(open("public", "x").await, Err(LakeError::Location(_))));

        let mut names: Vec<String> =
            catalog.list_tables(&ns).await.unwrap().iter().map(|t| t.name().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["-2e-2e-2fother-2ft", "-54odos", "../other/t", "a-5f_b", "a__b", "x"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn legacy_sources_split_where_the_name_says() {
        let split = |source: &str, name: &str| {
            let props = HashMap::from([(PROP_SOURCE.to_owned(), source.to_owned())]);
            legacy_source(&props, name)
        };
        assert_eq!(split("public.todos", "todos"), Some(SourceTable::new("public", "todos")));
        assert_eq!(split("a.b.c", "a.b__c"), Some(SourceTable::new("a.b", "c")));
        assert_eq!(split("a.b.c", "a__b.c"), Some(SourceTable::new("a", "b.c")));
        assert_eq!(split("public.a.b", "a.b"), Some(SourceTable::new("public", "a.b")));
        assert_eq!(split("nodot", "nodot"), None);
    }

    #[test]
    fn partitions_are_days_or_hours_of_the_commit_time() {
        let change: Change = serde_json::from_value(
            serde_json::json!({"lsn": 1, "op": "insert", "table": "t", "commitTs": "2026-02-03 02:05:06+00"}),
        )
        .unwrap();
        assert_eq!(partition_value(&change, Transform::Day).unwrap(), 20487);
        assert_eq!(partition_value(&change, Transform::Hour).unwrap(), 20487 * 24 + 2);
        // Before the epoch: the day and hour it falls in, not towards zero.
        let early: Change = serde_json::from_value(
            serde_json::json!({"lsn": 2, "op": "insert", "table": "t", "commitTs": "1969-12-31 23:30:00+00"}),
        )
        .unwrap();
        assert_eq!(partition_value(&early, Transform::Day).unwrap(), -1);
        assert_eq!(partition_value(&early, Transform::Hour).unwrap(), -1);
    }
}
