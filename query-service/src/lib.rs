//! `query-service`: DataFusion over the lake, with `AS OF` time travel, its
//! HTTP front (`POST /sql`) and `tidelake sql`.
//!
//! A query is parsed with the lake's dialect, every lake table it names is
//! loaded from the catalog (its changelog as an Iceberg scan, its snapshots
//! as a small table), and every reference is rewritten into the plan that
//! computes it (`rewrite`, `rewrite::plan`) as DataFusion plans it. Each query sees the
//! tables as the catalog has them when it starts.
//!
//! A query of PostgreSQL's catalogs (`pg_catalog`, `information_schema`)
//! is planned over the lake's tables as those catalogs describe them
//! (`catalogs`), for psql's `\d` and BI tools' schema browsers.
//!
//! Every query is bounded (`limits`): its memory by one pool shared by the
//! service's queries, its time by a deadline from arrival to last row, the
//! buckets of `growth`/`activity` by a cap, and an HTTP answer's rows and
//! bytes by caps checked while it is encoded.
//!
//! Must not know PGlite.

mod catalogs;
pub mod dialect;
mod encode;
pub mod error;
pub mod http;
pub mod limits;
pub mod rewrite;
pub mod wire;

use std::sync::{Arc, OnceLock};

use auth::Principal;
use catalog::Warehouse;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement;
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, TableIdent};
use iceberg_datafusion::IcebergStaticTableProvider;
use lake::spec::{CHANGELOG_COLUMNS, PROP_PRIMARY_KEY, SUMMARY_CHANGES, SUMMARY_LSN_FROM, SUMMARY_LSN_TO};

pub use error::QueryError;
use futures::StreamExt;
pub use limits::{Deadline, Limits};
use limits::ResultBudget;
use rewrite::plan::{self, CheckpointShape, LakeTable, Loaded, TableShape};

/// The catalog name queries resolve `<tenant>.<table>` in.
const CATALOG: &str = "lake";

pub struct QueryService {
    warehouse: Arc<Warehouse>,
    limits: Limits,
    /// Every query's DataFusion runtime: the one memory pool.
    runtime: Arc<RuntimeEnv>,
    /// PostgreSQL's static catalog rows, read at the first catalog query.
    catalog_rows: OnceLock<Result<catalogs::StaticTables, String>>,
    /// Lake tables as the catalogs describe them, by version.
    described: catalogs::DescribedTables,
}

/// A query's answer.
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Answer {
    pub fn row_count(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The answer as a text table (for `tidelake sql`).
pub fn pretty(answer: &Answer) -> Result<String, QueryError> {
    if answer.batches.is_empty() {
        let empty = RecordBatch::new_empty(answer.schema.clone());
        return datafusion::arrow::util::pretty::pretty_format_batches(&[empty])
            .map(|t| t.to_string())
            .map_err(|e| QueryError::Internal(e.to_string()));
    }
    datafusion::arrow::util::pretty::pretty_format_batches(&answer.batches)
        .map(|t| t.to_string())
        .map_err(|e| QueryError::Internal(e.to_string()))
}

/// A planned query over the lake as it was when planned.
pub struct Prepared {
    ctx: SessionContext,
    plan: LogicalPlan,
}

impl Prepared {
    /// The columns of the answer.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

    /// The types of `$1`, `$2`, … in order, where the query implies one.
    pub fn parameter_types(&self) -> Result<Vec<Option<DataType>>, QueryError> {
        let types = self.plan.get_parameter_types()?;
        let mut numbered = Vec::with_capacity(types.len());
        for (name, data_type) in types {
            let number = name
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| QueryError::Sql(format!("parameters are written $1, $2, …; not {name}")))?;
            numbered.push((number, data_type));
        }
        numbered.sort_by_key(|(number, _)| *number);
        let count = numbered.last().map_or(0, |(number, _)| *number);
        let mut ordered = vec![None; count];
        for (number, data_type) in numbered {
            ordered[number - 1] = data_type;
        }
        Ok(ordered)
    }

    /// Start the query, with the values of its parameters if it has any.
    /// The caller bounds the stream by the query's [`Deadline`].
    pub async fn run(self, parameters: Option<ParamValues>) -> Result<SendableRecordBatchStream, QueryError> {
        let plan = match parameters {
            Some(values) => self.plan.with_param_values(values)?,
            None => self.plan,
        };
        Ok(self.ctx.execute_logical_plan(plan).await?.execute_stream().await?)
    }
}

impl QueryService {
    pub fn new(warehouse: Arc<Warehouse>, limits: Limits) -> Arc<Self> {
        let runtime = limits::runtime(&limits);
        Arc::new(Self { warehouse, limits, runtime, catalog_rows: OnceLock::new(), described: Default::default() })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The deadline of a query arriving now.
    pub fn deadline(&self) -> Deadline {
        Deadline::start(self.limits.timeout)
    }

    /// Plan and start one query over the lake, reading the tenants `who`
    /// may read: its rows until its deadline.
    pub async fn start(&self, sql: &str, who: &Principal) -> Result<SendableRecordBatchStream, QueryError> {
        let deadline = self.deadline();
        let stream = deadline.run(async { self.prepare_sql(sql, who).await?.run(None).await }).await?;
        Ok(deadline.bound(stream))
    }

    /// Run one query over the lake to its end (for `tidelake sql`, which
    /// reads the warehouse itself: every tenant); the answer's rows and its
    /// size in memory are capped as over HTTP.
    pub async fn sql(&self, sql: &str) -> Result<Answer, QueryError> {
        let mut stream = self.start(sql, &Principal::open()).await?;
        let mut answer = Answer { schema: stream.schema(), batches: Vec::new() };
        let (mut budget, mut bytes) = (ResultBudget::new(&self.limits), 0);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            budget.rows(batch.num_rows())?;
            bytes += batch.get_array_memory_size();
            budget.bytes(bytes, "Arrow arrays in memory")?;
            answer.batches.push(batch);
        }
        Ok(answer)
    }

    /// Plan one query over the lake, or over PostgreSQL's catalogs of it
    /// (`catalogs`), with a session's default settings.
    async fn prepare_sql(&self, sql: &str, who: &Principal) -> Result<Prepared, QueryError> {
        let mut statements = catalogs::parse_all(sql)?;
        if statements.len() != 1 {
            return Err(QueryError::Sql(format!("expected one statement, got {}", statements.len())));
        }
        let (statement, reads) = statements.pop().expect("one statement")?;
        self.prepare_reading(rewrite::only_query(statement)?, reads, who, &catalogs::default_settings()).await
    }

    /// Plan one query (as `rewrite::parse` accepts it) over the lake as the
    /// catalog has it now, as `who` may read it: `all_tenants` is the
    /// tenants it reaches, and naming another is refused. Placeholders
    /// (`$1`…) stay in the plan until [`Prepared::run`] gets their values.
    pub async fn prepare(&self, mut statement: Statement, who: &Principal) -> Result<Prepared, QueryError> {
        // Refusals that need no table (too many buckets) come before any is loaded.
        let analysis = rewrite::analyse(&mut statement, self.limits.max_buckets)?;
        let needs = &analysis.needs;

        let (ctx, catalog) = session(&self.limits, self.runtime.clone())?;
        let mut loaded = Loaded::default();
        for (tenant, _) in &needs.tables {
            if !who.may_read(tenant) {
                return Err(QueryError::Forbidden(format!("this token does not reach tenant {tenant:?}")));
            }
        }
        for table in &needs.all_tenants {
            let tenants = self.tenants_with(table, who).await?;
            for tenant in &tenants {
                self.register(&catalog, &mut loaded, tenant, table).await?;
            }
            loaded.all_tenants.insert(table.clone(), tenants);
        }
        for (tenant, table) in &needs.tables {
            if !self.register(&catalog, &mut loaded, tenant, table).await? {
                return Err(QueryError::NotFound(format!(
                    "no lake table {tenant}.{table} (is the tenant's table shipped yet?)"
                )));
            }
        }
        let plan = plan::statement(&ctx, &catalog, statement, &analysis, &loaded).await?;
        Ok(Prepared { ctx, plan })
    }

    /// Load one lake table (with its checkpoint table, if it has one) and
    /// register its changelog and snapshots. Returns false if it does not exist.
    async fn register(
        &self,
        catalog: &Arc<MemoryCatalogProvider>,
        loaded: &mut Loaded,
        tenant: &str,
        name: &str,
    ) -> Result<bool, QueryError> {
        let key = (tenant.to_owned(), name.to_owned());
        if loaded.tables.contains_key(&key) {
            return Ok(true);
        }
        // `name` is a lake name already (`rewrite` maps what the query wrote);
        // a tenant that is no tenant id has no namespace.
        let Ok(namespace) = lake::spec::namespace(tenant) else { return Ok(false) };
        let ident = TableIdent::new(namespace, name.to_owned());
        let table = match self.warehouse.catalog().load_table(&ident).await {
            Ok(table) => table,
            Err(e) if matches!(e.kind(), ErrorKind::TableNotFound | ErrorKind::NamespaceNotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let schema = match catalog.schema(tenant) {
            Some(schema) => schema,
            None => {
                let schema: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
                catalog.register_schema(tenant, schema.clone())?;
                schema
            }
        };
        // Read with the current snapshot's schema, as Iceberg's scan resolves
        // columns in it (a schema change shipped without data is newer).
        let changes = match table.metadata().current_snapshot_id() {
            Some(id) => IcebergStaticTableProvider::try_new_from_table_snapshot(table.clone(), id).await?,
            None => IcebergStaticTableProvider::try_new_from_table(table.clone()).await?,
        };
        let (changes, snapshots): (Arc<dyn TableProvider>, Arc<dyn TableProvider>) =
            (Arc::new(changes), Arc::new(snapshots_table(&table)?));
        schema.register_table(format!("{name}$changes"), changes.clone())?;
        schema.register_table(format!("{name}$snapshots"), snapshots.clone())?;
        let mut shape = shape(&table);
        let checkpoints = lake::spec::load(&self.warehouse, &ident).await?;
        if let Some(checkpoints) = &checkpoints {
            shape.checkpoints = checkpoint_shapes(checkpoints);
        }
        loaded.tables.insert(key, LakeTable { shape, changes, snapshots, checkpoints });
        Ok(true)
    }

    /// Every lake table `who` may read as (tenant, table), sorted.
    pub async fn tables(&self, who: &Principal) -> Result<Vec<(String, String)>, QueryError> {
        Ok(self.table_versions(who).await?.into_iter().map(|(tenant, table, _)| (tenant, table)).collect())
    }

    /// Every lake table `who` may read as (tenant, table, its metadata
    /// file), sorted, from one read of the catalog.
    async fn table_versions(&self, who: &Principal) -> Result<Vec<(String, String, String)>, QueryError> {
        let mut tables: Vec<(String, String, String)> = self
            .warehouse
            .metadata_locations()
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?
            .into_iter()
            .filter(|(tenant, table, _)| who.may_read(tenant) && !lake::spec::is_checkpoint_table(table))
            .collect();
        tables.sort();
        Ok(tables)
    }

    /// Every tenant `who` may read with a lake table of this name.
    async fn tenants_with(&self, name: &str, who: &Principal) -> Result<Vec<String>, QueryError> {
        let catalog = self.warehouse.catalog();
        let mut tenants = Vec::new();
        for namespace in catalog.list_namespaces(None).await? {
            if !who.may_read(&namespace.join(".")) {
                continue;
            }
            let ident = TableIdent::new(namespace.clone(), name.to_owned());
            if catalog.table_exists(&ident).await? {
                tenants.push(namespace.join("."));
            }
        }
        tenants.sort();
        Ok(tenants)
    }
}

/// A query's session: its catalog (`lake`, empty), the checked functions,
/// instants in UTC.
pub(crate) fn session(
    limits: &Limits,
    runtime: Arc<RuntimeEnv>,
) -> Result<(SessionContext, Arc<MemoryCatalogProvider>), QueryError> {
    let ctx = SessionContext::new_with_config_rt(
        SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_information_schema(true)
            // Instants without a zone are UTC, as in the tenant databases.
            .set_str("datafusion.execution.time_zone", "+00:00"),
        runtime,
    );
    limits::functions::register(&ctx, limits)?;
    // DataFusion 53's rule fails on a struct field read from a join of two
    // states with different columns (`SELECT after.tier FROM table_diff(…)`
    // across an added column): "Schema contains qualified field name __c.id
    // and unqualified field name id which would be ambiguous". It only
    // moves field reads nearer the scan.
    ctx.remove_optimizer_rule("push_down_leaf_projections");
    let catalog = Arc::new(MemoryCatalogProvider::new());
    ctx.register_catalog(CATALOG, catalog.clone());
    Ok((ctx, catalog))
}

fn shape(table: &Table) -> TableShape {
    let schema = lake::spec::reading_schema(table);
    let versions = lake::spec::columns_history(table);
    let columns = match versions.last() {
        Some(newest) => newest.columns.iter().map(|c| c.name.clone()).collect(),
        None => schema
            .as_struct()
            .fields()
            .iter()
            .map(|f| f.name.clone())
            .filter(|n| !CHANGELOG_COLUMNS.contains(&n.as_str()))
            .collect(),
    };
    let primary_key = table
        .metadata()
        .properties()
        .get(PROP_PRIMARY_KEY)
        .map(|k| k.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let relations = lake::spec::relations(table);
    let fields = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| (f.id, f.name.clone()))
        .collect();
    TableShape { columns, primary_key, relations, versions, fields, checkpoints: Vec::new() }
}

/// The checkpoints of a checkpoint table, each with the fields of its snapshot's schema.
fn checkpoint_shapes(table: &Table) -> Vec<CheckpointShape> {
    lake::spec::checkpoints(table)
        .into_iter()
        .filter_map(|c| {
            let snapshot = table.metadata().snapshot_by_id(c.snapshot_id)?;
            let schema = snapshot.schema(table.metadata()).ok()?;
            let fields = schema
                .as_struct()
                .fields()
                .iter()
                .map(|f| (f.id, f.name.clone()))
                .collect();
            Some(CheckpointShape { lsn: c.lsn, at: c.at, key: c.key, snapshot_id: c.snapshot_id, fields })
        })
        .collect()
}

/// A table's Iceberg snapshots, oldest first, with the LSN range each added.
fn snapshots_table(table: &Table) -> Result<MemTable, QueryError> {
    let mut snapshots: Vec<_> = table.metadata().snapshots().cloned().collect();
    snapshots.sort_by_key(|s| s.sequence_number());
    let number = |s: &iceberg::spec::SnapshotRef, key: &str| {
        s.summary().additional_properties.get(key).and_then(|v| v.parse::<i64>().ok())
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("snapshot_id", DataType::Int64, false),
        Field::new("parent_id", DataType::Int64, true),
        Field::new("committed_at", DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())), false),
        Field::new("operation", DataType::Utf8, false),
        Field::new("lsn_from", DataType::Int64, true),
        Field::new("lsn_to", DataType::Int64, true),
        Field::new("changes", DataType::Int64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(snapshots.iter().map(|s| s.snapshot_id()))),
        Arc::new(Int64Array::from_iter(snapshots.iter().map(|s| s.parent_snapshot_id()))),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(snapshots.iter().map(|s| s.timestamp_ms()))
                .with_timezone("+00:00"),
        ),
        Arc::new(StringArray::from_iter_values(snapshots.iter().map(|s| s.summary().operation.as_str()))),
        Arc::new(Int64Array::from_iter(snapshots.iter().map(|s| number(s, SUMMARY_LSN_FROM)))),
        Arc::new(Int64Array::from_iter(snapshots.iter().map(|s| number(s, SUMMARY_LSN_TO)))),
        Arc::new(Int64Array::from_iter(snapshots.iter().map(|s| number(s, SUMMARY_CHANGES)))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| QueryError::Internal(e.to_string()))?;
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}
