//! Lake maintenance: what keeps a changelog table's files and metadata
//! bounded however many commits it takes.
//!
//! One run over a table, in order:
//!
//! 1. **Properties**: old metadata files are removed after each commit and
//!    the metadata log keeps [`PREVIOUS_METADATA_FILES`] entries
//!    (`write.metadata.delete-after-commit.enabled`,
//!    `write.metadata.previous-versions-max`); the table's
//!    `tidelake.lsn-to` is recorded as a property before any snapshot that
//!    carries it can be expired.
//! 2. **Compaction**: in each partition, small data files (under half the
//!    target size) are rewritten — in commit order, so in `_lsn` order —
//!    into files of the target size, when there are at least
//!    `min_input_files` of them; the table's live files are listed in one
//!    manifest, so the manifest list stays short. One `replace` snapshot,
//!    committed only if the table's current snapshot is still the one read,
//!    or has only gained appends since (then the appends' manifests are
//!    kept beside ours and the commit is tried again). The rows are the
//!    same rows: nothing is lost or repeated.
//! 3. **Snapshot expiry**: snapshots older than the retention are removed
//!    from the metadata (the current one always stays). tidelake's history
//!    is in the rows (`_lsn`, `_commit_ts`), not in snapshots: expiring
//!    costs no `AS OF` answer; it bounds how long an outside reader that
//!    loaded an older snapshot may take to read it. Files only expired
//!    snapshots referenced are removed at once.
//! 4. **Orphans**: files under the table's location that no retained
//!    snapshot and no logged metadata file references — left by a commit
//!    that was interrupted or lost a race — are removed once they are older
//!    than the orphan age (a commit in flight writes its files first).
//!
//! A crash at any step leaves the table readable and whole: new files are
//! written before the commit that references them, files are removed only
//! after the commit that stops referencing them, and the next run redoes
//! whatever did not finish.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use catalog::{CatalogError, Warehouse};
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::spec::{
    DataFile, DataFileFormat, FormatVersion, ManifestContentType, ManifestEntry, ManifestFile, ManifestList,
    ManifestListWriter, ManifestWriterBuilder, Operation, PartitionKey, Snapshot, SnapshotReference,
    SnapshotRetention, Struct, Summary, TableMetadata, MAIN_BRANCH,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, ErrorKind, Runtime, TableIdent, TableRequirement, TableUpdate};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::checkpoint;
use crate::config::MaintenanceConfig;
use crate::error::{LakeError, Result};
use crate::table::{self, PROP_LSN_TO, PROP_TENANT, SUMMARY_LSN_TO, SUMMARY_TENANT};

pub use crate::spec::SUMMARY_MAINTENANCE;

/// Attempts at a replace commit (compaction) or an expiry while the shipper
/// keeps appending.
const MAX_REPLACE_ATTEMPTS: u32 = 10;

/// What a table holds, for `/metrics`, `health` and the dashboard.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableStats {
    /// Live data files of the current snapshot.
    pub data_files: u64,
    pub data_bytes: u64,
    pub records: u64,
    /// Manifests in the current snapshot's manifest list.
    pub manifests: u64,
    pub snapshots: u64,
    /// The current metadata file.
    pub metadata_bytes: u64,
    /// Every file under `metadata/` (metadata files, manifest lists, manifests).
    pub metadata_dir_bytes: u64,
    /// Most live data files in one partition.
    pub max_files_per_partition: u64,
}

/// What one maintenance run did to one table.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableReport {
    pub tenant: String,
    pub table: String,
    /// Small files rewritten, and the files they became.
    pub compacted_files: u64,
    pub written_files: u64,
    /// Whether the live files were listed again in one manifest.
    pub merged_manifests: bool,
    pub expired_snapshots: u64,
    /// Files removed: of expired snapshots, and orphans.
    pub removed_files: u64,
    pub removed_orphans: u64,
    /// The checkpoint this run took, if one was due.
    pub checkpoint: Option<checkpoint::Checkpoint>,
    pub stats: TableStats,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct MaintenanceStats {
    pub runs: AtomicU64,
    pub compacted_files: AtomicU64,
    pub expired_snapshots: AtomicU64,
    pub removed_files: AtomicU64,
    pub conflicts: AtomicU64,
    pub errors: AtomicU64,
}

impl MaintenanceStats {
    fn record(&self, report: &TableReport) {
        self.compacted_files.fetch_add(report.compacted_files, Ordering::Relaxed);
        self.expired_snapshots.fetch_add(report.expired_snapshots, Ordering::Relaxed);
        self.removed_files.fetch_add(report.removed_files + report.removed_orphans, Ordering::Relaxed);
    }
}

/// Runs maintenance over every table on a schedule or on demand, and keeps
/// each table's latest figures for `/metrics` and `health`.
pub struct Maintainer {
    warehouse: Arc<Warehouse>,
    config: MaintenanceConfig,
    pub stats: MaintenanceStats,
    /// (tenant, lake table name) → the table's figures after its latest run.
    tables: std::sync::Mutex<BTreeMap<(String, String), TableStats>>,
}

impl Maintainer {
    pub fn new(warehouse: Arc<Warehouse>, config: MaintenanceConfig) -> Arc<Self> {
        Arc::new(Self { warehouse, config, stats: MaintenanceStats::default(), tables: Default::default() })
    }

    pub fn config(&self) -> &MaintenanceConfig {
        &self.config
    }

    /// One run over the tables of `tenant` (every tenant's when None).
    /// `progress` hears of each table as it is done: (done, total, report
    /// or error). A table that fails is reported and the run goes on.
    pub async fn run_once(
        &self,
        tenant: Option<&str>,
        mut progress: impl FnMut(usize, usize, std::result::Result<&TableReport, &LakeError>),
    ) -> Result<Vec<TableReport>> {
        let idents = tables(&self.warehouse, tenant).await?;
        let mut reports = Vec::new();
        for (i, ident) in idents.iter().enumerate() {
            match maintain_table(&self.warehouse, ident, &self.config, &self.stats).await {
                Ok(Some(report)) => {
                    let key = (report.tenant.clone(), report.table.clone());
                    self.tables.lock().unwrap_or_else(|e| e.into_inner()).insert(key, report.stats.clone());
                    progress(i + 1, idents.len(), Ok(&report));
                    reports.push(report);
                }
                Ok(None) => {}
                Err(err) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(table = %ident, error = %err, "lake maintenance failed; retried on the next run");
                    progress(i + 1, idents.len(), Err(&err));
                }
            }
        }
        Ok(reports)
    }

    /// Run every `interval` until `stop` turns true (never if maintenance is off).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(interval) = self.config.interval else { return };
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
            let started = std::time::Instant::now();
            match self.run_once(None, |_, _, _| {}).await {
                Ok(reports) => tracing::info!(
                    tables = reports.len(),
                    compacted = reports.iter().map(|r| r.compacted_files).sum::<u64>(),
                    expired = reports.iter().map(|r| r.expired_snapshots).sum::<u64>(),
                    ms = started.elapsed().as_millis() as u64,
                    "lake maintenance run"
                ),
                Err(err) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %err, "lake maintenance could not list the tables");
                }
            }
        }
    }

    /// The figures of a tenant's tables after their latest run, by lake table name.
    pub fn tenant_tables(&self, tenant: &str) -> serde_json::Map<String, serde_json::Value> {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, name), stats)| (name.clone(), serde_json::to_value(stats).unwrap_or_default()))
            .collect()
    }

    /// Maintenance's counters and each table's figures, for `/metrics`.
    pub(crate) fn encode_metrics(&self, encoder: &mut prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        let s = &self.stats;
        let mut counter = |name: &str, help: &str, value: &AtomicU64| {
            crate::metrics::counter(encoder, name, help, value.load(Ordering::Relaxed))
        };
        counter("tidelake_lake_maintenance_runs", "Tables maintained (compaction, expiry, orphans).", &s.runs)?;
        counter("tidelake_lake_compacted_files", "Small data files rewritten by compaction.", &s.compacted_files)?;
        counter("tidelake_lake_expired_snapshots", "Snapshots expired.", &s.expired_snapshots)?;
        counter("tidelake_lake_removed_files", "Files removed: of expired snapshots, and orphans.", &s.removed_files)?;
        counter("tidelake_lake_maintenance_conflicts", "Maintenance commits retried after the shipper committed first.", &s.conflicts)?;
        counter("tidelake_lake_maintenance_errors", "Failed maintenance runs of a table (retried on the next run).", &s.errors)?;
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let gauges: [(&str, &str, fn(&TableStats) -> u64); 6] = [
            ("tidelake_lake_table_data_files", "Live data files of a lake table.", |t| t.data_files),
            ("tidelake_lake_table_data_bytes", "Bytes of a lake table's live data files.", |t| t.data_bytes),
            ("tidelake_lake_table_snapshots", "Snapshots a lake table's metadata keeps.", |t| t.snapshots),
            ("tidelake_lake_table_manifests", "Manifests of a lake table's current snapshot.", |t| t.manifests),
            ("tidelake_lake_table_metadata_bytes", "Size of a lake table's current metadata file.", |t| t.metadata_bytes),
            ("tidelake_lake_table_metadata_dir_bytes", "Bytes under a lake table's metadata directory.", |t| t.metadata_dir_bytes),
        ];
        for (name, help, value) in gauges {
            let values = tables
                .iter()
                .map(|((tenant, table), stats)| ([("tenant", tenant.as_str()), ("table", table.as_str())], value(stats) as i64));
            crate::metrics::gauges(encoder, name, &format!("{help} (as of its latest maintenance)"), values)?;
        }
        Ok(())
    }
}

/// A fault-injection point for the crash tests: the process aborts here
/// when `TIDELAKE_CRASH_AT` names it (as `kill -9` would).
pub(crate) fn crash_point(name: &str) {
    if std::env::var("TIDELAKE_CRASH_AT").is_ok_and(|at| at == name) {
        eprintln!("tidelake: crashing at {name} (TIDELAKE_CRASH_AT)");
        std::process::abort();
    }
}

/// The changelog tables of `tenant` (all tenants' when None), by tenant.
pub async fn tables(warehouse: &Warehouse, tenant: Option<&str>) -> Result<Vec<TableIdent>> {
    let catalog = warehouse.catalog();
    let namespaces = match tenant {
        Some(t) => vec![crate::names::namespace(t)?],
        None => catalog.list_namespaces(None).await?,
    };
    let mut found = Vec::new();
    for namespace in namespaces {
        match catalog.list_tables(&namespace).await {
            Ok(mut idents) => {
                idents.sort_by(|a, b| a.name().cmp(b.name()));
                found.extend(idents);
            }
            Err(e) if e.kind() == ErrorKind::NamespaceNotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(found)
}

/// One maintenance run over one table (see the module docs). Tables not
/// written by tidelake are left alone.
pub async fn maintain_table(
    warehouse: &Warehouse,
    ident: &TableIdent,
    config: &MaintenanceConfig,
    stats: &MaintenanceStats,
) -> Result<Option<TableReport>> {
    let table = warehouse.catalog().load_table(ident).await?;
    if !table.metadata().properties().contains_key(PROP_TENANT) {
        return Ok(None);
    }
    let tenant = table.metadata().properties().get(PROP_TENANT).cloned().unwrap_or_default();
    let mut report = TableReport { tenant, table: ident.name().to_owned(), ..TableReport::default() };
    // A checkpoint table keeps every snapshot (each is a checkpoint): only
    // what an interrupted checkpoint left behind goes.
    if table.metadata().properties().contains_key(checkpoint::PROP_CHECKPOINT_OF) {
        let reachable = reachable_files(&table).await?;
        let listed = remove_orphans(warehouse, &table, &reachable, config, &mut report).await?;
        report.stats = table_stats(&table, Some(&listed)).await?;
        return Ok(Some(report));
    }
    let table = ensure_properties(warehouse, table).await?;
    let table = compact(warehouse, table, config, &mut report, stats).await?;
    if let Some(every) = config.checkpoint_changes {
        let records = table_stats(&table, None).await?.records;
        report.checkpoint = checkpoint::maybe_checkpoint(warehouse, &table, records, every).await?;
    }
    let (table, expired) = expire(warehouse, table, config, &mut report).await?;
    let reachable = reachable_files(&table).await?;
    remove_expired(&table, &expired, &reachable, &mut report).await?;
    let listed = remove_orphans(warehouse, &table, &reachable, config, &mut report).await?;
    report.stats = table_stats(&table, Some(&listed)).await?;
    stats.runs.fetch_add(1, Ordering::Relaxed);
    stats.record(&report);
    Ok(Some(report))
}

/// Step 1: the properties that bound the metadata, and `tidelake.lsn-to`.
async fn ensure_properties(warehouse: &Warehouse, table: Table) -> Result<Table> {
    let props = table.metadata().properties();
    let mut wanted = table::bounded_metadata();
    if !props.contains_key(PROP_LSN_TO) {
        let lsn = table::shipped_through(&table);
        if lsn > 0 {
            wanted.insert(PROP_LSN_TO.to_owned(), lsn.to_string());
        }
    }
    wanted.retain(|k, v| props.get(k) != Some(v));
    if wanted.is_empty() {
        return Ok(table);
    }
    let ident = table.identifier().clone();
    let tx = Transaction::new(&table);
    let mut update = tx.update_table_properties();
    for (k, v) in wanted {
        update = update.set(k, v);
    }
    let tx = update.apply(tx)?;
    let updated = tx.commit(&warehouse.transactions()).await?;
    tracing::debug!(table = %ident, "lake maintenance: metadata bounded");
    Ok(updated)
}

/// A live data file of the current snapshot.
#[derive(Clone)]
struct Live {
    entry: ManifestEntry,
    spec_id: i32,
}

/// The manifests of `snapshot`'s manifest list.
async fn manifests_of(table: &Table, manifest_list: &str) -> Result<Vec<ManifestFile>> {
    let bytes = table.file_io().new_input(manifest_list)?.read().await?;
    let list = ManifestList::parse_with_version(&bytes, table.metadata().format_version())?;
    Ok(list.entries().to_vec())
}

/// Step 2: rewrite small files and list the live ones in one manifest.
async fn compact(
    warehouse: &Warehouse,
    table: Table,
    config: &MaintenanceConfig,
    report: &mut TableReport,
    stats: &MaintenanceStats,
) -> Result<Table> {
    let metadata = table.metadata();
    let Some(base) = metadata.current_snapshot().cloned() else { return Ok(table) };
    if metadata.format_version() != FormatVersion::V2 {
        return Ok(table);
    }
    let file_io = table.file_io().clone();
    let base_manifests = manifests_of(&table, base.manifest_list()).await?;
    // Delete files are other writers' (tidelake writes none): leave such a table as it is.
    if base_manifests.iter().any(|m| m.content != ManifestContentType::Data) {
        return Ok(table);
    }
    let mut live: Vec<Live> = Vec::new();
    for manifest in &base_manifests {
        for entry in manifest.load_manifest(&file_io).await?.entries() {
            if entry.is_alive() {
                live.push(Live { entry: (**entry).clone(), spec_id: manifest.partition_spec_id });
            }
        }
    }
    // Small files of the current spec, per partition, in commit order.
    let spec = metadata.default_partition_spec().clone();
    let small = (config.target_file_bytes / 2).max(1);
    let mut partitions: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, l) in live.iter().enumerate() {
        if l.spec_id == spec.spec_id() && l.entry.file_size_in_bytes() < small {
            partitions.entry(format!("{:?}", l.entry.data_file().partition())).or_default().push(i);
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (_, mut files) in partitions {
        if files.len() < config.min_input_files.max(2) {
            continue;
        }
        files.sort_by_key(|&i| (live[i].entry.sequence_number().unwrap_or(0), live[i].entry.file_path().to_owned()));
        // Each rewrite reads at most about the target size.
        let mut group = Vec::new();
        let mut bytes = 0;
        for i in files {
            bytes += live[i].entry.file_size_in_bytes();
            group.push(i);
            if bytes >= config.target_file_bytes {
                groups.push(std::mem::take(&mut group));
                bytes = 0;
            }
        }
        if group.len() >= 2 {
            groups.push(group);
        }
    }
    if groups.is_empty() && base_manifests.len() <= config.max_manifests {
        return Ok(table);
    }

    let snapshot_id = new_snapshot_id(metadata);
    let schema = metadata.current_schema().clone();
    let mut written: Vec<DataFile> = Vec::new();
    let mut rewritten: HashSet<String> = HashSet::new();
    if !groups.is_empty() {
        let paths: HashSet<String> = groups.iter().flatten().map(|&i| live[i].entry.file_path().to_owned()).collect();
        let mut tasks: HashMap<String, iceberg::scan::FileScanTask> = table
            .scan()
            .snapshot_id(base.snapshot_id())
            .select_all()
            .build()?
            .plan_files()
            .await?
            .try_filter(|t| futures::future::ready(paths.contains(&t.data_file_path)))
            .map_ok(|t| (t.data_file_path.clone(), t))
            .try_collect()
            .await?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        for group in &groups {
            let ordered: Vec<iceberg::scan::FileScanTask> = group
                .iter()
                .filter_map(|&i| tasks.remove(live[i].entry.file_path()))
                .collect();
            if ordered.len() != group.len() {
                return Err(LakeError::Mapping(format!("{}: a file to compact is not in its snapshot", report.table)));
            }
            let partition: Struct = live[group[0]].entry.data_file().partition().clone();
            let rolling = RollingFileWriterBuilder::new(
                ParquetWriterBuilder::new(props.clone(), schema.clone()),
                config.target_file_bytes as usize,
                file_io.clone(),
                DefaultLocationGenerator::new(metadata)?,
                DefaultFileNameGenerator::new(
                    format!("compacted-{snapshot_id:x}"),
                    Some(format!("{:x}", written.len())),
                    DataFileFormat::Parquet,
                ),
            );
            let key = PartitionKey::new((*spec).clone(), schema.clone(), partition);
            let mut writer = DataFileWriterBuilder::new(rolling).build(Some(key)).await?;
            // One file at a time, in commit order: the rows keep their order.
            let mut batches = ArrowReaderBuilder::new(file_io.clone(), Runtime::current())
                .with_data_file_concurrency_limit(1)
                .build()
                .read(futures::stream::iter(ordered.into_iter().map(Ok)).boxed())?
                .stream();
            while let Some(batch) = batches.try_next().await? {
                writer.write(batch).await?;
            }
            written.extend(writer.close().await?);
            rewritten.extend(group.iter().map(|&i| live[i].entry.file_path().to_owned()));
        }
    }
    crash_point("compaction-written");

    // One manifest: the new files, the rewritten ones as deleted, every
    // other live file as existing (its sequence numbers kept).
    let manifest_path = format!("{}/metadata/{}-compacted-m0.avro", metadata.location(), unique_name());
    let mut manifest_writer = ManifestWriterBuilder::new(
        file_io.new_output(&manifest_path)?,
        Some(snapshot_id),
        schema.clone(),
        (*spec).clone(),
    )
    .build_v2_data();
    let (mut added_records, mut added_bytes, mut deleted_records, mut deleted_bytes) = (0u64, 0u64, 0u64, 0u64);
    for file in &written {
        added_records += file.record_count();
        added_bytes += file.file_size_in_bytes();
        manifest_writer.add_file(file.clone(), -1)?;
    }
    let (mut total_files, mut total_records, mut total_bytes) = (written.len() as u64, added_records, added_bytes);
    let mut other_specs = Vec::new();
    for l in &live {
        let e = &l.entry;
        let seq = e.sequence_number().unwrap_or(0);
        if rewritten.contains(e.file_path()) {
            deleted_records += e.record_count();
            deleted_bytes += e.file_size_in_bytes();
            manifest_writer.add_delete_file(e.data_file().clone(), seq, e.file_sequence_number)?;
        } else if l.spec_id == spec.spec_id() {
            total_files += 1;
            total_records += e.record_count();
            total_bytes += e.file_size_in_bytes();
            manifest_writer.add_existing_file(
                e.data_file().clone(),
                e.snapshot_id().unwrap_or(base.snapshot_id()),
                seq,
                e.file_sequence_number.or(Some(seq)),
            )?;
        } else {
            other_specs.push(e.file_path().to_owned());
        }
    }
    let ours = manifest_writer.write_manifest_file().await?;
    // Manifests of another partition spec stay as they are.
    let kept_manifests: Vec<ManifestFile> = base_manifests
        .iter()
        .filter(|m| m.partition_spec_id != spec.spec_id())
        .cloned()
        .collect();

    let mut summary = HashMap::from([
        ("added-data-files".to_owned(), written.len().to_string()),
        ("deleted-data-files".to_owned(), rewritten.len().to_string()),
        ("added-records".to_owned(), added_records.to_string()),
        ("deleted-records".to_owned(), deleted_records.to_string()),
        ("added-files-size".to_owned(), added_bytes.to_string()),
        ("removed-files-size".to_owned(), deleted_bytes.to_string()),
        ("total-data-files".to_owned(), total_files.to_string()),
        ("total-records".to_owned(), total_records.to_string()),
        ("total-files-size".to_owned(), total_bytes.to_string()),
        ("total-delete-files".to_owned(), "0".to_owned()),
        ("total-position-deletes".to_owned(), "0".to_owned()),
        ("total-equality-deletes".to_owned(), "0".to_owned()),
        (SUMMARY_MAINTENANCE.to_owned(), if written.is_empty() { "manifests" } else { "compaction" }.to_owned()),
    ]);
    if let Some(tenant) = metadata.properties().get(PROP_TENANT) {
        summary.insert(SUMMARY_TENANT.to_owned(), tenant.clone());
    }

    // Commit; while the shipper's appends land first, keep their manifests.
    let base_paths: HashSet<&str> = base_manifests.iter().map(|m| m.manifest_path.as_str()).collect();
    let mut current = table;
    for attempt in 1..=MAX_REPLACE_ATTEMPTS {
        let meta = current.metadata();
        let Some(head) = meta.current_snapshot().cloned() else { break };
        let head_manifests =
            if head.snapshot_id() == base.snapshot_id() { base_manifests.clone() } else { manifests_of(&current, head.manifest_list()).await? };
        let head_paths: HashSet<&str> = head_manifests.iter().map(|m| m.manifest_path.as_str()).collect();
        // Another writer rewrote what we read: our files are not needed.
        if !base_paths.iter().all(|p| head_paths.contains(p)) {
            tracing::info!(table = %report.table, "lake maintenance: the table was rewritten meanwhile; compaction left to the next run");
            for file in written.iter().map(|f| f.file_path().to_owned()).chain([manifest_path.clone()]) {
                let _ = file_io.delete(&file).await;
            }
            return Ok(current);
        }
        let newer = head_manifests.iter().filter(|m| !base_paths.contains(m.manifest_path.as_str())).cloned();
        let sequence = meta.next_sequence_number();
        let list_path = format!("{}/metadata/snap-{snapshot_id}-{attempt}-{}.avro", meta.location(), unique_name());
        let mut list = ManifestListWriter::v2(
            file_io.new_output(&list_path)?.writer().await?,
            snapshot_id,
            Some(head.snapshot_id()),
            sequence,
        );
        list.add_manifests([ours.clone()].into_iter().chain(newer).chain(kept_manifests.iter().cloned()))?;
        list.close().await?;
        let mut summary = summary.clone();
        let lsn_to = table::shipped_through(&current);
        summary.insert(SUMMARY_LSN_TO.to_owned(), lsn_to.to_string());
        let snapshot = Snapshot::builder()
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(Some(head.snapshot_id()))
            .with_sequence_number(sequence)
            .with_timestamp_ms(now_ms().max(meta.last_updated_ms()))
            .with_manifest_list(list_path.clone())
            .with_summary(Summary { operation: Operation::Replace, additional_properties: summary })
            .with_schema_id(meta.current_schema_id())
            .build();
        let (requirements, updates) = new_main(meta, Some(head.snapshot_id()), snapshot);
        match warehouse.commit(current.identifier(), requirements, updates).await {
            Ok(updated) => {
                crash_point("compaction-committed");
                report.compacted_files = rewritten.len() as u64;
                report.written_files = written.len() as u64;
                report.merged_manifests = true;
                tracing::info!(
                    table = %report.table, rewritten = rewritten.len(), written = written.len(),
                    manifests_before = head_manifests.len(), "lake maintenance: compacted"
                );
                return Ok(updated);
            }
            Err(CatalogError::CommitFailed(_)) => {
                stats.conflicts.fetch_add(1, Ordering::Relaxed);
                let _ = file_io.delete(&list_path).await;
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                current = warehouse.catalog().load_table(current.identifier()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Still conflicting: what was written is an orphan for a later run.
    tracing::info!(table = %report.table, "lake maintenance: compaction kept conflicting; left to the next run");
    Ok(current)
}

/// The requirements and updates that make `snapshot` the head of `main`,
/// if `main` is still at `parent` (None: `main` does not exist yet).
pub(crate) fn new_main(
    metadata: &TableMetadata,
    parent: Option<i64>,
    snapshot: Snapshot,
) -> (Vec<TableRequirement>, Vec<TableUpdate>) {
    let requirements = vec![
        TableRequirement::UuidMatch { uuid: metadata.uuid() },
        TableRequirement::RefSnapshotIdMatch { r#ref: MAIN_BRANCH.to_owned(), snapshot_id: parent },
    ];
    let reference = SnapshotReference::new(snapshot.snapshot_id(), SnapshotRetention::branch(None, None, None));
    let updates = vec![
        TableUpdate::AddSnapshot { snapshot },
        TableUpdate::SetSnapshotRef { ref_name: MAIN_BRANCH.to_owned(), reference },
    ];
    (requirements, updates)
}

/// Step 3: expire snapshots older than the retention. Returns the table and
/// the snapshots expired.
async fn expire(
    warehouse: &Warehouse,
    table: Table,
    config: &MaintenanceConfig,
    report: &mut TableReport,
) -> Result<(Table, Vec<Arc<Snapshot>>)> {
    let cutoff = now_ms() - i64::try_from(config.snapshot_retention.as_millis()).unwrap_or(i64::MAX);
    let mut table = table;
    let mut attempt = 0;
    let (before, updated) = loop {
        attempt += 1;
        let before: HashMap<i64, Arc<Snapshot>> =
            table.metadata().snapshots().map(|s| (s.snapshot_id(), s.clone())).collect();
        if !before.values().any(|s| s.timestamp_ms() < cutoff) {
            return Ok((table, Vec::new()));
        }
        let tx = Transaction::new(&table);
        let tx = tx.expire_snapshots().expire_older_than_ms(cutoff).retain_last(1).apply(tx)?;
        match tx.commit(&warehouse.transactions()).await {
            Ok(updated) => break (before, updated),
            // The shipper committed meanwhile: expire again from its
            // commit, as compaction does; still conflicting, the next run will.
            Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => {
                if attempt >= MAX_REPLACE_ATTEMPTS {
                    return Ok((table, Vec::new()));
                }
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                table = warehouse.catalog().load_table(table.identifier()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    };
    crash_point("expiry-committed");
    let after: HashSet<i64> = updated.metadata().snapshots().map(|s| s.snapshot_id()).collect();
    let expired: Vec<Arc<Snapshot>> =
        before.into_iter().filter(|(id, _)| !after.contains(id)).map(|(_, s)| s).collect();
    report.expired_snapshots = expired.len() as u64;
    Ok((updated, expired))
}

/// Every file the table's metadata references: metadata files (current and
/// logged), and for each retained snapshot its manifest list, manifests and
/// live data files.
async fn reachable_files(table: &Table) -> Result<HashSet<String>> {
    let metadata = table.metadata();
    let mut found: HashSet<String> = metadata.metadata_log().iter().map(|l| l.metadata_file.clone()).collect();
    found.extend(table.metadata_location().map(str::to_owned));
    for statistics in metadata.statistics_iter() {
        found.insert(statistics.statistics_path.clone());
    }
    for statistics in metadata.partition_statistics_iter() {
        found.insert(statistics.statistics_path.clone());
    }
    let mut seen_manifests = HashSet::new();
    for snapshot in metadata.snapshots() {
        found.insert(snapshot.manifest_list().to_owned());
        for manifest in manifests_of(table, snapshot.manifest_list()).await? {
            if !seen_manifests.insert(manifest.manifest_path.clone()) {
                continue;
            }
            // A file a snapshot's manifest lists as deleted is live in its
            // parent: needed only while the parent is retained.
            for entry in manifest.load_manifest(table.file_io()).await?.entries() {
                if entry.is_alive() {
                    found.insert(entry.file_path().to_owned());
                }
            }
            found.insert(manifest.manifest_path);
        }
    }
    Ok(found)
}

/// Remove what only expired snapshots referenced.
async fn remove_expired(
    table: &Table,
    expired: &[Arc<Snapshot>],
    reachable: &HashSet<String>,
    report: &mut TableReport,
) -> Result<()> {
    let file_io = table.file_io();
    let mut candidates: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for snapshot in expired {
        candidates.push(snapshot.manifest_list().to_owned());
        let manifests = match manifests_of(table, snapshot.manifest_list()).await {
            Ok(m) => m,
            // Removed by an earlier run that stopped half way.
            Err(_) => continue,
        };
        for manifest in manifests {
            if reachable.contains(&manifest.manifest_path) || !seen.insert(manifest.manifest_path.clone()) {
                continue;
            }
            if let Ok(loaded) = manifest.load_manifest(file_io).await {
                candidates.extend(loaded.entries().iter().map(|e| e.file_path().to_owned()));
            }
            candidates.push(manifest.manifest_path);
        }
    }
    let mut removed = 0;
    for file in candidates.into_iter().filter(|f| !reachable.contains(f)).collect::<HashSet<_>>() {
        if file_io.delete(&file).await.is_ok() {
            removed += 1;
        }
    }
    report.removed_files = removed;
    Ok(())
}

/// Step 4: remove orphans older than the orphan age. Returns the listing of
/// what remains.
async fn remove_orphans(
    warehouse: &Warehouse,
    table: &Table,
    reachable: &HashSet<String>,
    config: &MaintenanceConfig,
    report: &mut TableReport,
) -> Result<Vec<catalog::ListedFile>> {
    let listed = warehouse.list_files(table.metadata().location()).await?;
    let old_enough = SystemTime::now().checked_sub(config.orphan_age).unwrap_or(UNIX_EPOCH);
    let mut kept = Vec::with_capacity(listed.len());
    let mut removed = 0;
    for file in listed {
        let orphan = !reachable.contains(&file.path) && file.modified < old_enough;
        if orphan && table.file_io().delete(&file.path).await.is_ok() {
            removed += 1;
        } else {
            kept.push(file);
        }
    }
    if removed > 0 {
        tracing::info!(table = %report.table, removed, "lake maintenance: orphan files removed");
    }
    report.removed_orphans = removed;
    Ok(kept)
}

/// Files, bytes, snapshots and metadata size of `table` (the metadata
/// directory's size from `listed`, when the caller has listed it).
pub async fn table_stats(table: &Table, listed: Option<&[catalog::ListedFile]>) -> Result<TableStats> {
    let metadata = table.metadata();
    let mut stats = TableStats { snapshots: metadata.snapshots().count() as u64, ..TableStats::default() };
    if let Some(location) = table.metadata_location() {
        stats.metadata_bytes = table.file_io().new_input(location)?.metadata().await?.size;
    }
    if let Some(listed) = listed {
        let dir = format!("{}/metadata/", metadata.location().trim_end_matches('/'));
        stats.metadata_dir_bytes = listed.iter().filter(|f| f.path.starts_with(&dir)).map(|f| f.size).sum();
    }
    let Some(snapshot) = metadata.current_snapshot() else { return Ok(stats) };
    let manifests = manifests_of(table, snapshot.manifest_list()).await?;
    stats.manifests = manifests.len() as u64;
    let mut per_partition: HashMap<String, u64> = HashMap::new();
    for manifest in manifests {
        for entry in manifest.load_manifest(table.file_io()).await?.entries() {
            if entry.is_alive() {
                stats.data_files += 1;
                stats.data_bytes += entry.file_size_in_bytes();
                stats.records += entry.record_count();
                *per_partition.entry(format!("{:?}", entry.data_file().partition())).or_default() += 1;
            }
        }
    }
    stats.max_files_per_partition = per_partition.values().copied().max().unwrap_or(0);
    Ok(stats)
}

/// A snapshot id no snapshot of the table has (positive, as Iceberg's).
pub(crate) fn new_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mixed = (nanos as u64 ^ std::process::id() as u64 ^ (nanos >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let id = (mixed >> 1) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

pub(crate) fn unique_name() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{nanos:x}-{:x}", std::process::id())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Partitioning;
    use crate::names::SourceTable;
    use crate::table::{ChangelogTable, SchemaVersion};

    fn version() -> SchemaVersion {
        serde_json::from_value(json!({
            "version": 1, "tableOid": 100, "schema": "public", "table": "ev",
            "columns": [{"name": "id", "type": "integer", "typeOid": 23, "attnum": 1},
                        {"name": "v", "type": "text", "typeOid": 25, "attnum": 2}],
            "primaryKey": ["id"], "lsn": 1, "commitTs": "2026-01-01 00:00:00+00",
        }))
        .unwrap()
    }

    fn change(lsn: u64) -> model::Change {
        serde_json::from_value(json!({"op": "insert", "lsn": lsn, "xid": lsn, "commitTs": "2026-01-01 00:00:01+00",
               "table": "ev", "new": {"id": lsn, "v": format!("row {lsn}")}}))
        .unwrap()
    }

    /// Every row of the table's current snapshot: (_lsn, id, v), sorted.
    async fn rows(table: &Table) -> Vec<(i64, i32, String)> {
        use arrow_array::{Array, Int32Array, Int64Array, StringArray};
        let mut found = Vec::new();
        let batches: Vec<_> =
            table.scan().select_all().build().unwrap().to_arrow().await.unwrap().try_collect().await.unwrap();
        for b in batches {
            let lsn = b.column_by_name("_lsn").unwrap().as_any().downcast_ref::<Int64Array>().unwrap().clone();
            let id = b.column_by_name("id").unwrap().as_any().downcast_ref::<Int32Array>().unwrap().clone();
            let v = b.column_by_name("v").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
            for i in 0..b.num_rows() {
                found.push((lsn.value(i), id.value(i), if v.is_null(i) { String::new() } else { v.value(i).to_owned() }));
            }
        }
        found.sort();
        found
    }

    /// A table of 30 one-change commits is compacted into one file listed
    /// in one manifest, its old snapshots and their files removed, its
    /// metadata log bounded; a compaction that read the table before the
    /// shipper appended again meets the conflict and keeps the append.
    #[tokio::test]
    async fn compaction_and_expiry_keep_every_row_and_bound_the_files() {
        let (dir, warehouse, ns) = acme_warehouse().await;
        let source = SourceTable::new("public", "ev");
        let v = version();
        let mut table = ChangelogTable::open(&warehouse, &ns, "acme", &source, &v, Partitioning::Day).await.unwrap();
        let conflicts = AtomicU64::new(0);
        for lsn in 1..=30u64 {
            let c = change(lsn);
            table.append(&warehouse, "acme", &v, &[&c], lsn, lsn, &conflicts).await.unwrap();
        }
        let ident = TableIdent::new(ns.clone(), source.lake_name().unwrap());
        let before = warehouse.catalog().load_table(&ident).await.unwrap();
        let expected = rows(&before).await;
        assert_eq!(expected.len(), 30);
        let stats_before = table_stats(&before, None).await.unwrap();
        assert_eq!((stats_before.data_files, stats_before.manifests, stats_before.snapshots), (30, 30, 30));
        // The metadata log is bounded from the first commit on.
        assert_eq!(before.metadata().metadata_log().len(), table::PREVIOUS_METADATA_FILES);
        let metadata_files = |dir: &std::path::Path| {
            let path = dir.join("warehouse/acme/ev/metadata");
            std::fs::read_dir(path).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".metadata.json")).count()
        };
        assert_eq!(metadata_files(&dir), table::PREVIOUS_METADATA_FILES + 1);

        // The shipper appends after maintenance read the table.
        let c = change(31);
        table.append(&warehouse, "acme", &v, &[&c], 31, 31, &conflicts).await.unwrap();
        let config = MaintenanceConfig {
            min_input_files: 2,
            snapshot_retention: Duration::ZERO,
            orphan_age: Duration::ZERO,
            ..MaintenanceConfig::default()
        };
        let stats = MaintenanceStats::default();
        let mut report = TableReport::default();
        let compacted = compact(&warehouse, before, &config, &mut report, &stats).await.unwrap();
        assert_eq!(stats.conflicts.load(Ordering::Relaxed), 1, "the stale read met the append");
        assert_eq!((report.compacted_files, report.written_files), (30, 1));
        let mut all = expected.clone();
        all.push((31, 31, "row 31".to_owned()));
        assert_eq!(rows(&compacted).await, all, "compaction keeps every row once, and the append");
        let head = compacted.metadata().current_snapshot().unwrap();
        assert_eq!(head.summary().operation, Operation::Replace);
        assert_eq!(head.summary().additional_properties.get(SUMMARY_LSN_TO).map(String::as_str), Some("31"));

        // The whole run: expiry removes the old snapshots and what only
        // they referenced; the next append still goes on from LSN 31.
        let report = maintain_table(&warehouse, &ident, &config, &stats).await.unwrap().unwrap();
        let after = warehouse.catalog().load_table(&ident).await.unwrap();
        assert_eq!(rows(&after).await, all);
        assert_eq!(after.metadata().snapshots().count(), 1);
        assert!(report.expired_snapshots >= 31, "{report:?}");
        // The compacted file and the append were two small files: one now.
        assert_eq!((report.stats.data_files, report.stats.manifests, report.stats.snapshots), (1, 1, 1), "{report:?}");
        assert_eq!(table::shipped_through(&after), 31);
        let parquet: Vec<_> = walk(&dir.join("warehouse/acme/ev/data"))
            .into_iter()
            .filter(|p| p.ends_with(".parquet"))
            .collect();
        assert_eq!(parquet.len(), 1, "only the last compaction's file remains: {parquet:?}");
        assert_eq!(metadata_files(&dir), table::PREVIOUS_METADATA_FILES + 1);
        let c = change(32);
        table.append(&warehouse, "acme", &v, &[&c], 32, 32, &conflicts).await.unwrap();
        let last = warehouse.catalog().load_table(&ident).await.unwrap();
        assert_eq!(rows(&last).await.len(), 32);
        assert_eq!(table::shipped_through(&last), 32);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Writers committing to one table at once lose races to each other
    /// and retry: every change lands once, and a commit that lost leaves
    /// no metadata file behind, so the metadata directory holds exactly the
    /// current file and the logged ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_commits_leave_no_metadata_file_behind() {
        let (dir, warehouse, ns) = acme_warehouse().await;
        let source = SourceTable::new("public", "ev");
        let v = version();
        ChangelogTable::open(&warehouse, &ns, "acme", &source, &v, Partitioning::Day).await.unwrap();
        let writers: Vec<_> = (0..3u64)
            .map(|w| {
                let (warehouse, ns, source, v) = (warehouse.clone(), ns.clone(), source.clone(), v.clone());
                tokio::spawn(async move {
                    let mut table =
                        ChangelogTable::open(&warehouse, &ns, "acme", &source, &v, Partitioning::Day).await.unwrap();
                    let conflicts = AtomicU64::new(0);
                    for i in 0..12u64 {
                        let lsn = 1 + w * 100 + i;
                        let c = change(lsn);
                        table.append(&warehouse, "acme", &v, &[&c], lsn, lsn, &conflicts).await.unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let ident = TableIdent::new(ns, source.lake_name().unwrap());
        let table = warehouse.catalog().load_table(&ident).await.unwrap();
        assert_eq!(rows(&table).await.len(), 36, "every append once");
        let name = |p: &str| p.rsplit('/').next().unwrap().to_owned();
        let mut kept: Vec<String> = table.metadata().metadata_log().iter().map(|l| name(&l.metadata_file)).collect();
        kept.push(name(table.metadata_location().unwrap()));
        kept.sort();
        let mut on_disk: Vec<String> = walk(&dir.join("warehouse/acme/ev/metadata"))
            .into_iter()
            .filter(|p| p.ends_with(".metadata.json"))
            .map(|p| name(&p))
            .collect();
        on_disk.sort();
        assert_eq!(on_disk, kept, "metadata files on disk are the logged ones");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh warehouse with tenant acme's namespace, in its directory.
    async fn acme_warehouse() -> (std::path::PathBuf, Arc<Warehouse>, iceberg::NamespaceIdent) {
        let dir = tempfile_dir();
        let warehouse = Warehouse::open(catalog::CatalogConfig::in_data_dir(&dir)).await.unwrap();
        let ns = crate::names::namespace("acme").unwrap();
        warehouse
            .create_namespace(&ns, HashMap::from([(PROP_TENANT.to_owned(), "acme".to_owned())]))
            .await
            .unwrap();
        (dir, warehouse, ns)
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        std::env::temp_dir().join(format!("tidelake-maintain-{}-{nanos}", std::process::id()))
    }

    fn walk(dir: &std::path::Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path.display().to_string());
            }
        }
        found
    }
}
