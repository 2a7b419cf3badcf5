//! PostgreSQL's catalogs over the lake, for the tools that read them before
//! they read data: psql's `\dt` and `\d`, the schema browsers of DBeaver,
//! Metabase and Grafana's PostgreSQL data source.
//!
//! A statement naming `pg_catalog` or `information_schema` (or, reading no
//! lake table, calling a catalog function such as `current_setting`) is
//! parsed as PostgreSQL parses it, with datafusion-pg-catalog's
//! compatibility rewrites (`OPERATOR(pg_catalog.~)`, `::regclass`, the
//! queries of psql it replaces), and planned in a session of its own that
//! holds the catalogs and no lake table: a statement naming both is refused.
//!
//! What the catalogs say is what a lake query sees: each tenant the caller
//! may read is a schema (`pg_namespace`, `information_schema.schemata`),
//! each of its lake tables a table (`pg_class`, `information_schema.tables`)
//! with the columns and types `SELECT * FROM <tenant>.<table>` answers with
//! (`pg_attribute`, `information_schema.columns`) and its primary key
//! (`information_schema.table_constraints`, `key_column_usage`); a table
//! without one has no state and is listed as `<table>$changes`; the schema
//! `all_tenants` holds a view per table name, as `all_tenants.<table>`
//! reads it. Tables are described once per version (their metadata file)
//! and remembered, so a catalog query loads only what changed. OIDs come
//! from the names, so they hold from one query and connection to the next
//! (psql's `\d` looks a table up by name, then by OID). The rest of
//! `pg_catalog` is datafusion-pg-catalog's: PostgreSQL's own rows for types,
//! operators, access methods, and empty tables for what the lake has none of.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use auth::Principal;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, new_empty_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::{MemTable, TableType, provider_as_source};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Statement, VisitMut, VisitorMut, visit_expressions, visit_relations,
};
use datafusion_postgres::arrow_pg::datatypes::into_pg_type;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{
    self as pgc, PG_CATALOG_TABLES, PgCatalogSchemaProvider, PgCatalogStaticTables, format_type,
    has_privilege_udf, pg_get_expr_udf, quote_ident_udf,
};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::{StreamExt, TryStreamExt};
use model::sql::quote_ident;
use postgres_types::Type;

use crate::error::QueryError;
use crate::rewrite::plan::{self, Loaded};
use crate::{CATALOG, Prepared, QueryService, rewrite, session};

/// The schemas PostgreSQL's catalogs live in.
const CATALOG_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];
const PG_CATALOG_OID: i32 = 11;
const INFORMATION_SCHEMA_OID: i32 = 13_000;
/// PostgreSQL's first OID for objects users create.
const FIRST_OID: u32 = 16_384;
/// The owner every object is shown with (PostgreSQL's bootstrap superuser).
const OWNER_OID: i32 = 10;
/// The heap access method, as `pg_class.relam` of a table.
const HEAP_AM_OID: i32 = 2;

/// Functions the catalog session answers and a lake session does not
/// have (or has with DataFusion's meaning, as `version()`).
const CATALOG_FUNCTIONS: &[&str] = &[
    "current_setting",
    "current_database",
    "current_catalog",
    "current_schema",
    "current_schemas",
    "current_user",
    "session_user",
    "version",
    "format_type",
    "obj_description",
    "col_description",
    "shobj_description",
    "has_table_privilege",
    "has_schema_privilege",
    "has_database_privilege",
    "has_any_column_privilege",
    "quote_ident",
    "parse_ident",
];

/// What a statement reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    Lake,
    Catalogs,
}

/// Whether a statement (as the lake's dialect parsed it) reads the lake or
/// PostgreSQL's catalogs; an error if it names both.
pub fn reads(statement: &Statement) -> Result<Reads, QueryError> {
    // A name part as PostgreSQL resolves it (unquoted names fold to lower case).
    let part = |part: &ObjectNamePart| rewrite::normalized(part).unwrap_or_default();
    let (mut catalogs, mut lake) = (false, false);
    let _ = visit_relations(statement, |name: &ObjectName| {
        let parts: Vec<String> = name.0.iter().map(part).collect();
        match parts.as_slice() {
            [schema, _] if CATALOG_SCHEMAS.contains(&schema.as_str()) => catalogs = true,
            [table] if PG_CATALOG_TABLES.contains(&table.as_str()) => catalogs = true,
            [_, _] => lake = true,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    match (catalogs, lake) {
        (true, true) => Err(QueryError::Sql(
            "a query reads either the lake's tables or PostgreSQL's catalogs (pg_catalog, information_schema), not both"
                .into(),
        )),
        (true, false) => Ok(Reads::Catalogs),
        (false, true) => Ok(Reads::Lake),
        (false, false) => {
            let mut calls = false;
            let _ = visit_expressions(statement, |expr: &Expr| {
                if let Expr::Function(function) = expr {
                    let parts: Vec<String> = function.name.0.iter().map(part).collect();
                    calls |= match parts.as_slice() {
                        [schema, _] => schema == "pg_catalog",
                        [name] => CATALOG_FUNCTIONS.contains(&name.as_str()) || name.starts_with("pg_"),
                        _ => false,
                    };
                }
                ControlFlow::<()>::Continue(())
            });
            Ok(if calls { Reads::Catalogs } else { Reads::Lake })
        }
    }
}

static PARSER: LazyLock<PostgresCompatibilityParser> = LazyLock::new(PostgresCompatibilityParser::new);

/// Parse SQL as PostgreSQL does, with the rewrites that let DataFusion plan
/// the catalog queries tools send.
pub fn parse(sql: &str) -> Result<Vec<Statement>, QueryError> {
    let mut statements = PARSER.parse(sql).map_err(|e| QueryError::Sql(e.to_string()))?;
    for statement in &mut statements {
        let _ = statement.visit(&mut ObjectCasts);
    }
    Ok(statements)
}

/// Takes off casts to the object types (`regclass`, `oid`, …) that
/// datafusion-pg-catalog's rewrite leaves when one is inside another, as
/// in `CAST(CAST(… AS regclass) AS oid)`: the value stays as it is.
struct ObjectCasts;

impl VisitorMut for ObjectCasts {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        while let Expr::Cast { data_type, expr: inner, .. } = expr {
            let name = data_type.to_string().to_lowercase();
            let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
            if !matches!(name, "regclass" | "regproc" | "regtype" | "regnamespace" | "oid") {
                break;
            }
            *expr = (**inner).clone();
        }
        ControlFlow::Continue(())
    }
}

/// The statements of `sql`, each with what it reads (or why it cannot be
/// run). Queries of PostgreSQL's catalogs are parsed as PostgreSQL parses
/// them (psql's and the BI tools' own SQL, which the lake's dialect may not
/// take), each from the same text as the lake's parse of it, so the two
/// lists match; the rest as the lake parses them (version clauses kept).
pub fn parse_all(sql: &str) -> Result<Vec<Result<(Statement, Reads), QueryError>>, QueryError> {
    let lake = rewrite::parse_all(sql);
    let catalog_read =
        |statements: &[Statement]| statements.iter().any(|s| matches!(reads(s), Ok(Reads::Catalogs)));
    // PostgreSQL's parse may replace a query (one of psql's that DataFusion
    // cannot plan) by one naming no catalog: the lake's parse says what it reads.
    let postgres = match &lake {
        Ok(statements) if !catalog_read(statements) => None,
        _ => parse(sql).ok(),
    };
    let classified = |statement: Statement| reads(&statement).map(|reads| (statement, reads));
    Ok(match (lake, postgres) {
        (Ok(lake), Some(postgres)) if lake.len() == postgres.len() => lake
            .into_iter()
            .zip(postgres)
            .map(|(lake, postgres)| match reads(&lake) {
                Ok(Reads::Catalogs) => Ok((postgres, Reads::Catalogs)),
                _ => classified(lake),
            })
            .collect(),
        // Only PostgreSQL's grammar takes the text: catalog queries.
        (Err(_), Some(postgres)) if catalog_read(&postgres) => postgres.into_iter().map(classified).collect(),
        (lake, _) => lake?.into_iter().map(classified).collect(),
    })
}

/// The version the fronts report (`server_version`, `version()`): the
/// PostgreSQL whose behaviour clients may expect.
pub const SERVER_VERSION: &str = "16.6";

/// The settings a session starts with; `SHOW` and `current_setting` answer
/// them, and the session's own value where it set one.
pub const SETTINGS: &[(&str, &str)] = &[
    ("server_version", SERVER_VERSION),
    ("server_version_num", "160006"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("timezone", "UTC"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("standard_conforming_strings", "on"),
    ("integer_datetimes", "on"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "on"),
    ("default_transaction_read_only", "on"),
    ("search_path", "public"),
    ("max_identifier_length", "63"),
    ("is_superuser", "off"),
    ("application_name", ""),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("statement_timeout", "0"),
];

/// The session settings `current_setting(name)` answers with.
pub type Settings = BTreeMap<String, String>;

/// A setting's value in a session that changed none.
pub fn setting(name: &str) -> Option<&'static str> {
    SETTINGS.iter().find(|(setting, _)| *setting == name).map(|(_, value)| *value)
}

/// The settings of a session that changed none.
pub fn default_settings() -> Settings {
    SETTINGS.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

/// PostgreSQL's static catalog rows, read once per service.
pub(crate) type StaticTables = Arc<PgCatalogStaticTables>;

impl QueryService {
    /// Plan a query over the lake, or (`Reads::Catalogs`) over PostgreSQL's
    /// catalogs of it, with `settings` for `current_setting`.
    pub(crate) async fn prepare_reading(
        &self,
        statement: Statement,
        reads: Reads,
        who: &Principal,
        settings: &Settings,
    ) -> Result<Prepared, QueryError> {
        match reads {
            Reads::Lake => self.prepare(statement, who).await,
            Reads::Catalogs => self.prepare_catalogs(statement, who, settings).await,
        }
    }

    /// Plan a query of PostgreSQL's catalogs as they describe the lake
    /// `who` may read, with `settings` for `current_setting`.
    async fn prepare_catalogs(
        &self,
        statement: Statement,
        who: &Principal,
        settings: &Settings,
    ) -> Result<Prepared, QueryError> {
        let statement = rewrite::only_query(statement)?;
        let lake = Arc::new(self.lake_catalog(who).await?);

        let (ctx, catalog) = session(&self.limits, self.runtime.clone())?;
        // Ours is below; DataFusion's would list no lake table.
        ctx.state_ref().write().config_mut().options_mut().catalog.information_schema = false;
        let statics = self.static_tables()?;
        let pg_catalog = PgCatalogSchemaProvider::try_new(LakeInfo(lake.clone()), statics.clone(), EmptyContextProvider)
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        catalog.register_schema("pg_catalog", Arc::new(PgCatalog { inner: pg_catalog, lake: lake.clone() }))?;
        catalog.register_schema("information_schema", Arc::new(InformationSchema { lake }))?;
        register_functions(&ctx, &statics, settings);
        let plan = ctx.state().statement_to_plan(DFStatement::Statement(Box::new(statement))).await?;
        Ok(Prepared { ctx, plan })
    }

    /// The tenants and lake tables `who` may read, each described as a
    /// query reads it, and the `all_tenants` views over them. A table is
    /// described once per version (its metadata file), then remembered: a
    /// catalog query lists the tables from one read of the catalog and
    /// loads only what changed since the last.
    async fn lake_catalog(&self, who: &Principal) -> Result<LakeCatalog, QueryError> {
        let tables = self.table_versions(who).await?;
        // (tenant, the table's version, the table as read).
        let described: Vec<(String, String, Option<Arc<Described>>)> = futures::stream::iter(tables)
            .map(|(tenant, table, location)| async move {
                let key = (tenant.clone(), table.clone());
                let described = self.remembered(key, location.clone(), self.describe(&tenant, &table)).await?;
                Ok::<_, QueryError>((tenant, location, described))
            })
            .buffered(8)
            .try_collect()
            .await?;
        // `all_tenants.<table>`: over the tenants with a state of the table,
        // remembered by the versions of its parts.
        let mut parts: BTreeMap<String, (Vec<Arc<Described>>, std::hash::DefaultHasher)> = BTreeMap::new();
        let mut listed = Vec::with_capacity(described.len());
        for (tenant, version, described) in described {
            let Some(described) = described else { continue };
            if !described.key.is_empty() {
                let (tables, versions) = parts.entry(described.name.clone()).or_default();
                tables.push(described.clone());
                std::hash::Hash::hash(&version, versions);
            }
            listed.push((tenant, described));
        }
        let mut views = Vec::new();
        for (table, (tables, versions)) in parts {
            let key = (rewrite::ALL_TENANTS.to_owned(), table.clone());
            let version = format!("{:016x}", std::hash::Hasher::finish(&versions));
            match self.remembered(key, version, async { all_tenants_view(&table, &tables).map(Some) }).await {
                Ok(view) => views.extend(view),
                // Tenants' tables whose columns cannot be put together: the
                // view's query would fail too.
                Err(e) => tracing::debug!(%table, error = %e, "all_tenants view not listed"),
            }
        }
        Ok(LakeCatalog::new(listed, views))
    }

    /// What `describe` gives for `key` at `version`: remembered, or
    /// described now and remembered.
    async fn remembered(
        &self,
        key: (String, String),
        version: String,
        describe: impl Future<Output = Result<Option<Described>, QueryError>>,
    ) -> Result<Option<Arc<Described>>, QueryError> {
        if let Some((_, described)) = self.described.lock().expect("described").get(&key).filter(|(at, _)| *at == version) {
            return Ok(Some(described.clone()));
        }
        let Some(described) = describe.await?.map(Arc::new) else { return Ok(None) };
        let mut known = self.described.lock().expect("described");
        if known.len() >= MAX_DESCRIBED {
            known.clear();
        }
        known.insert(key, (version, described.clone()));
        Ok(Some(described))
    }

    /// A lake table as a query reads it: `<table>`, with the columns
    /// `SELECT *` answers and its key, or — having no primary key, so no
    /// state — `<table>$changes`.
    async fn describe(&self, tenant: &str, table: &str) -> Result<Option<Described>, QueryError> {
        let (ctx, catalog) = session(&self.limits, self.runtime.clone())?;
        let mut loaded = Loaded::default();
        if !self.register(&catalog, &mut loaded, tenant, table).await? {
            return Ok(None);
        }
        let key = loaded.tables.values().next().map(|t| t.shape.primary_key.clone()).unwrap_or_default();
        let read = if key.is_empty() { format!("{table}$changes") } else { table.to_owned() };
        let mut statement = rewrite::parse(&format!("SELECT * FROM {}.{}", quote_ident(tenant), quote_ident(&read)))?;
        let analysis = rewrite::analyse(&mut statement, self.limits.max_buckets)?;
        let plan = plan::statement(&ctx, &catalog, statement, &analysis, &loaded).await?;
        Ok(Some(Described { name: read, columns: Arc::new(plan.schema().as_arrow().clone()), key, view: false }))
    }

    fn static_tables(&self) -> Result<StaticTables, QueryError> {
        match self.catalog_rows.get_or_init(|| PgCatalogStaticTables::try_new().map(Arc::new).map_err(|e| e.to_string())) {
            Ok(tables) => Ok(tables.clone()),
            Err(e) => Err(QueryError::Internal(e.clone())),
        }
    }
}

/// `all_tenants.<table>` as a query reads it: each tenant's state with a
/// `tenant` column first, put together by column name as the query's plan
/// does (`rewrite::plan`), here over empty tables of those columns, so no
/// table is loaded again.
fn all_tenants_view(table: &str, parts: &[Arc<Described>]) -> Result<Described, QueryError> {
    let mut all: Option<LogicalPlanBuilder> = None;
    for part in parts {
        let mut fields = vec![Field::new("tenant", DataType::Utf8, false)];
        fields.extend(part.columns.fields().iter().map(|f| f.as_ref().clone()));
        let empty = provider_as_source(Arc::new(EmptyTable::new(Arc::new(Schema::new(fields)))));
        let state = LogicalPlanBuilder::scan(table, empty, None)?;
        all = Some(match all {
            None => state,
            Some(all) => all.union_by_name(state.build()?)?,
        });
    }
    let plan = all.ok_or_else(|| QueryError::Internal(format!("no tenant has {table}")))?.build()?;
    Ok(Described { name: table.to_owned(), columns: Arc::new(plan.schema().as_arrow().clone()), key: Vec::new(), view: true })
}

/// Tables remembered as described, at most (a catalog query of more
/// describes the rest again).
const MAX_DESCRIBED: usize = 50_000;

/// A lake table's version as described, by (tenant, table).
pub(crate) type DescribedTables = std::sync::Mutex<std::collections::HashMap<(String, String), (String, Arc<Described>)>>;

#[derive(Debug)]
pub(crate) struct Described {
    /// The name a query reads it by.
    name: String,
    columns: SchemaRef,
    key: Vec<String>,
    /// `all_tenants.<table>`: a view over the tenants' tables.
    view: bool,
}

/// The lake as the catalogs list it: tenants and their tables, with OIDs.
#[derive(Debug)]
struct LakeCatalog {
    schemas: Vec<Namespace>,
}

#[derive(Debug)]
struct Namespace {
    name: String,
    oid: i32,
    tables: Vec<Relation>,
}

#[derive(Debug)]
struct Relation {
    name: String,
    oid: i32,
    described: Arc<Described>,
}

impl LakeCatalog {
    /// From the tenants' tables (sorted by tenant) and the `all_tenants` views.
    fn new(tables: Vec<(String, Arc<Described>)>, views: Vec<Arc<Described>>) -> Self {
        let mut taken = HashSet::new();
        let mut schemas: Vec<Namespace> = Vec::new();
        let all_tenants = views.into_iter().map(|view| (rewrite::ALL_TENANTS.to_owned(), view));
        for (schema, described) in tables.into_iter().chain(all_tenants) {
            if schemas.last().is_none_or(|s| s.name != schema) {
                let oid = oid_of(&format!("n:{schema}"), &mut taken);
                schemas.push(Namespace { name: schema.clone(), oid, tables: Vec::new() });
            }
            let oid = oid_of(&format!("r:{schema}.{}", described.name), &mut taken);
            schemas.last_mut().expect("pushed").tables.push(Relation { name: described.name.clone(), oid, described });
        }
        Self { schemas }
    }

    /// Every schema as `pg_namespace` lists it: the catalogs' and the tenants'.
    fn namespaces(&self) -> impl Iterator<Item = (i32, &str)> {
        [(PG_CATALOG_OID, "pg_catalog"), (INFORMATION_SCHEMA_OID, "information_schema")]
            .into_iter()
            .chain(self.schemas.iter().map(|s| (s.oid, s.name.as_str())))
    }

    fn tables(&self) -> impl Iterator<Item = (&Namespace, &Relation)> {
        self.schemas.iter().flat_map(|s| s.tables.iter().map(move |t| (s, t)))
    }

    /// Every table's columns: (schema, table, its description, ordinal from 1, field, type).
    fn columns(&self) -> impl Iterator<Item = (&Namespace, &Relation, &Described, usize, &Field, Type)> {
        self.tables().flat_map(|(s, t)| {
            let d = t.described.as_ref();
            d.columns.fields().iter().enumerate().map(move |(i, f)| (s, t, d, i + 1, f.as_ref(), pg_type(f.data_type())))
        })
    }
}

/// An OID from a name (FNV-1a), the next free one on a collision: the same
/// name keeps its OID from one query to the next while the set holds.
fn oid_of(name: &str, taken: &mut HashSet<i32>) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let span = i32::MAX as u64 - u64::from(FIRST_OID);
    let mut oid = (u64::from(FIRST_OID) + hash % span) as i32;
    while !taken.insert(oid) {
        oid = if oid == i32::MAX { FIRST_OID as i32 } else { oid + 1 };
    }
    oid
}

/// The PostgreSQL type a lake query answers a column with.
fn pg_type(data_type: &DataType) -> Type {
    into_pg_type(data_type).unwrap_or(Type::TEXT)
}

/// `information_schema.columns.data_type`: the SQL name, `ARRAY`, or the type's own.
fn sql_type_name(t: &Type) -> String {
    let name = match *t {
        Type::BOOL => "boolean",
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::VARCHAR => "character varying",
        Type::BPCHAR => "character",
        Type::TIME => "time without time zone",
        Type::TIMETZ => "time with time zone",
        Type::TIMESTAMP => "timestamp without time zone",
        Type::TIMESTAMPTZ => "timestamp with time zone",
        _ if matches!(t.kind(), postgres_types::Kind::Array(_)) => "ARRAY",
        _ => t.name(),
    };
    name.to_owned()
}

/// `pg_attribute.atttypmod`: a numeric's precision and scale, else -1.
fn type_modifier(data_type: &DataType) -> i32 {
    match data_type {
        DataType::Decimal128(precision, scale) => ((i32::from(*precision) << 16) | i32::from(*scale)) + 4,
        _ => -1,
    }
}

/// `pg_attribute.attlen`: a fixed size, or -1.
fn type_length(t: &Type) -> i16 {
    match *t {
        Type::BOOL | Type::CHAR => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::FLOAT4 | Type::DATE | Type::OID => 4,
        Type::INT8 | Type::FLOAT8 | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => 8,
        Type::UUID | Type::INTERVAL => 16,
        _ => -1,
    }
}

/// `LakeCatalog` as datafusion-pg-catalog asks for it (its `pg_tables`,
/// `pg_database`): one database, the tenants' schemas.
#[derive(Debug, Clone)]
struct LakeInfo(Arc<LakeCatalog>);

#[async_trait]
impl CatalogInfo for LakeInfo {
    async fn catalog_names(&self) -> DFResult<Vec<String>> {
        Ok(vec![CATALOG.to_owned()])
    }

    async fn schema_names(&self, catalog: &str) -> DFResult<Option<Vec<String>>> {
        Ok((catalog == CATALOG).then(|| self.0.schemas.iter().map(|s| s.name.clone()).collect()))
    }

    async fn table_names(&self, catalog: &str, schema: &str) -> DFResult<Option<Vec<String>>> {
        Ok(self.namespace(catalog, schema).map(|s| s.tables.iter().map(|t| t.name.clone()).collect()))
    }

    async fn table_schema(&self, catalog: &str, schema: &str, table: &str) -> DFResult<Option<SchemaRef>> {
        Ok(self.relation(catalog, schema, table).map(|t| t.described.columns.clone()))
    }

    async fn table_type(&self, catalog: &str, schema: &str, table: &str) -> DFResult<Option<TableType>> {
        Ok(self.relation(catalog, schema, table).map(|t| if t.described.view { TableType::View } else { TableType::Base }))
    }
}

impl LakeInfo {
    fn namespace(&self, catalog: &str, schema: &str) -> Option<&Namespace> {
        (catalog == CATALOG).then(|| self.0.schemas.iter().find(|s| s.name == schema)).flatten()
    }

    fn relation(&self, catalog: &str, schema: &str, table: &str) -> Option<&Relation> {
        self.namespace(catalog, schema)?.tables.iter().find(|t| t.name == table)
    }
}

/// `pg_catalog`: datafusion-pg-catalog's, with the lake's own
/// `pg_namespace`, `pg_class` and `pg_attribute`.
#[derive(Debug)]
struct PgCatalog {
    inner: PgCatalogSchemaProvider<LakeInfo, EmptyContextProvider>,
    lake: Arc<LakeCatalog>,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let Some(theirs) = self.inner.table(name).await? else { return Ok(None) };
        let lake = &self.lake;
        let rows: Vec<Row> = match name.to_ascii_lowercase().as_str() {
            "pg_namespace" => lake
                .namespaces()
                .map(|(oid, name)| vec![("oid", int(oid)), ("nspname", text(name)), ("nspowner", int(OWNER_OID))])
                .collect(),
            "pg_class" => lake
                .tables()
                .map(|(schema, table)| {
                    let described = &table.described;
                    let columns = described.columns.fields().len();
                    let keyed = !described.key.is_empty();
                    vec![
                        ("oid", int(table.oid)),
                        ("relname", text(&table.name)),
                        ("relnamespace", int(schema.oid)),
                        ("relowner", int(OWNER_OID)),
                        ("relam", int(HEAP_AM_OID)),
                        ("relkind", text(if described.view { "v" } else { "r" })),
                        ("relnatts", ScalarValue::Int16(Some(columns as i16))),
                        ("relhasindex", ScalarValue::Boolean(Some(keyed))),
                        ("relpersistence", text("p")),
                        ("relreplident", text("d")),
                        ("relispopulated", ScalarValue::Boolean(Some(true))),
                        ("reltuples", ScalarValue::Float64(Some(-1.0))),
                    ]
                })
                .collect(),
            "pg_attribute" => lake
                .columns()
                .map(|(_, table, described, number, field, t)| {
                    vec![
                        ("attrelid", int(table.oid)),
                        ("attname", text(field.name())),
                        ("atttypid", int(t.oid() as i32)),
                        ("attlen", ScalarValue::Int16(Some(type_length(&t)))),
                        ("attnum", ScalarValue::Int16(Some(number as i16))),
                        ("attndims", int(i32::from(matches!(t.kind(), postgres_types::Kind::Array(_))))),
                        ("atttypmod", int(type_modifier(field.data_type()))),
                        ("attnotnull", ScalarValue::Boolean(Some(described.key.iter().any(|k| k == field.name())))),
                        ("attisdropped", ScalarValue::Boolean(Some(false))),
                        ("attislocal", ScalarValue::Boolean(Some(true))),
                        ("attidentity", text("")),
                        ("attgenerated", text("")),
                    ]
                })
                .collect(),
            _ => return Ok(Some(theirs)),
        };
        Ok(Some(rows_table(&theirs.schema(), rows)?))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// `information_schema`, as PostgreSQL names its views and columns.
#[derive(Debug)]
struct InformationSchema {
    lake: Arc<LakeCatalog>,
}

/// information_schema's integer columns (`cardinal_number`); the others are text.
const INTEGER_COLUMNS: [&str; 8] = [
    "ordinal_position",
    "character_maximum_length",
    "character_octet_length",
    "numeric_precision",
    "numeric_precision_radix",
    "numeric_scale",
    "datetime_precision",
    "position_in_unique_constraint",
];

const INFORMATION_SCHEMA_TABLES: [&str; 6] =
    ["schemata", "tables", "columns", "views", "table_constraints", "key_column_usage"];

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        INFORMATION_SCHEMA_TABLES.iter().map(|t| (*t).to_owned()).collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let lake = &self.lake;
        let database = || text(CATALOG);
        // The columns a key constraint's rows begin with.
        let constraint = |schema: &Namespace, table: &Relation| -> Row {
            vec![
                ("constraint_catalog", database()),
                ("constraint_schema", text(&schema.name)),
                ("constraint_name", text(&format!("{}_pkey", table.name))),
                ("table_catalog", database()),
                ("table_schema", text(&schema.name)),
                ("table_name", text(&table.name)),
            ]
        };
        let keyed = |table: &Relation| table.described.key.clone();
        let (columns, rows): (&[&str], Vec<Row>) = match name.to_ascii_lowercase().as_str() {
            "schemata" => (
                &[
                    "catalog_name",
                    "schema_name",
                    "schema_owner",
                    "default_character_set_catalog",
                    "default_character_set_schema",
                    "default_character_set_name",
                    "sql_path",
                ],
                lake.namespaces()
                    .map(|(_, name)| vec![("catalog_name", database()), ("schema_name", text(name)), ("schema_owner", text("postgres"))])
                    .collect(),
            ),
            "tables" => (
                &[
                    "table_catalog",
                    "table_schema",
                    "table_name",
                    "table_type",
                    "self_referencing_column_name",
                    "reference_generation",
                    "user_defined_type_catalog",
                    "user_defined_type_schema",
                    "user_defined_type_name",
                    "is_insertable_into",
                    "is_typed",
                    "commit_action",
                ],
                lake.tables()
                    .map(|(schema, table)| {
                        vec![
                            ("table_catalog", database()),
                            ("table_schema", text(&schema.name)),
                            ("table_name", text(&table.name)),
                            ("table_type", text(if table.described.view { "VIEW" } else { "BASE TABLE" })),
                            ("is_insertable_into", text("NO")),
                            ("is_typed", text("NO")),
                        ]
                    })
                    .collect(),
            ),
            "columns" => (
                &[
                    "table_catalog",
                    "table_schema",
                    "table_name",
                    "column_name",
                    "ordinal_position",
                    "column_default",
                    "is_nullable",
                    "data_type",
                    "character_maximum_length",
                    "character_octet_length",
                    "numeric_precision",
                    "numeric_precision_radix",
                    "numeric_scale",
                    "datetime_precision",
                    "interval_type",
                    "udt_catalog",
                    "udt_schema",
                    "udt_name",
                    "dtd_identifier",
                    "is_self_referencing",
                    "is_identity",
                    "identity_generation",
                    "is_generated",
                    "generation_expression",
                    "is_updatable",
                ],
                lake.columns()
                    .map(|(schema, table, described, number, field, t)| {
                        let key = described.key.iter().any(|k| k == field.name());
                        let (precision, scale) = match field.data_type() {
                            DataType::Decimal128(p, s) => (Some(i32::from(*p)), Some(i32::from(*s))),
                            _ => (None, None),
                        };
                        vec![
                            ("table_catalog", database()),
                            ("table_schema", text(&schema.name)),
                            ("table_name", text(&table.name)),
                            ("column_name", text(field.name())),
                            ("ordinal_position", int(number as i32)),
                            ("is_nullable", text(if key { "NO" } else { "YES" })),
                            ("data_type", text(&sql_type_name(&t))),
                            ("numeric_precision", ScalarValue::Int32(precision)),
                            ("numeric_precision_radix", ScalarValue::Int32(precision.map(|_| 10))),
                            ("numeric_scale", ScalarValue::Int32(scale)),
                            ("udt_catalog", database()),
                            ("udt_schema", text("pg_catalog")),
                            ("udt_name", text(t.name())),
                            ("dtd_identifier", text(&number.to_string())),
                            ("is_self_referencing", text("NO")),
                            ("is_identity", text("NO")),
                            ("is_generated", text("NEVER")),
                            ("is_updatable", text("NO")),
                        ]
                    })
                    .collect(),
            ),
            "views" => (
                &[
                    "table_catalog",
                    "table_schema",
                    "table_name",
                    "view_definition",
                    "check_option",
                    "is_updatable",
                    "is_insertable_into",
                ],
                lake.tables()
                    .filter(|(_, table)| table.described.view)
                    .map(|(schema, table)| {
                        vec![
                            ("table_catalog", database()),
                            ("table_schema", text(&schema.name)),
                            ("table_name", text(&table.name)),
                            ("check_option", text("NONE")),
                            ("is_updatable", text("NO")),
                            ("is_insertable_into", text("NO")),
                        ]
                    })
                    .collect(),
            ),
            "table_constraints" => (
                &[
                    "constraint_catalog",
                    "constraint_schema",
                    "constraint_name",
                    "table_catalog",
                    "table_schema",
                    "table_name",
                    "constraint_type",
                    "is_deferrable",
                    "initially_deferred",
                    "enforced",
                ],
                lake.tables()
                    .filter(|(_, table)| !keyed(table).is_empty())
                    .map(|(schema, table)| {
                        let mut row = constraint(schema, table);
                        row.extend([
                            ("constraint_type", text("PRIMARY KEY")),
                            ("is_deferrable", text("NO")),
                            ("initially_deferred", text("NO")),
                            ("enforced", text("YES")),
                        ]);
                        row
                    })
                    .collect(),
            ),
            "key_column_usage" => (
                &[
                    "constraint_catalog",
                    "constraint_schema",
                    "constraint_name",
                    "table_catalog",
                    "table_schema",
                    "table_name",
                    "column_name",
                    "ordinal_position",
                    "position_in_unique_constraint",
                ],
                lake.tables()
                    .flat_map(|(schema, table)| {
                        keyed(table).into_iter().enumerate().map(move |(i, column)| {
                            let mut row = constraint(schema, table);
                            row.extend([("column_name", text(&column)), ("ordinal_position", int(i as i32 + 1))]);
                            row
                        })
                    })
                    .collect(),
            ),
            _ => return Ok(None),
        };
        let fields: Vec<Field> = columns
            .iter()
            .map(|name| {
                let data_type = if INTEGER_COLUMNS.contains(name) { DataType::Int32 } else { DataType::Utf8 };
                Field::new(*name, data_type, true)
            })
            .collect();
        Ok(Some(rows_table(&Arc::new(Schema::new(fields)), rows)?))
    }

    fn table_exist(&self, name: &str) -> bool {
        INFORMATION_SCHEMA_TABLES.contains(&name.to_ascii_lowercase().as_str())
    }
}

/// One row: the values of some columns, by name.
type Row = Vec<(&'static str, ScalarValue)>;

fn int(value: i32) -> ScalarValue {
    ScalarValue::Int32(Some(value))
}

fn text(value: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(value.to_owned()))
}

/// A table of `schema`'s columns from rows naming some of them; a column a
/// row leaves out is NULL where PostgreSQL's may be, else 0, false or ''.
fn rows_table(schema: &SchemaRef, rows: Vec<Row>) -> DFResult<Arc<dyn TableProvider>> {
    let nullable = Arc::new(Schema::new(
        schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>(),
    ));
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> DFResult<ArrayRef> {
            if rows.is_empty() {
                return Ok(new_empty_array(field.data_type()));
            }
            let values = rows
                .iter()
                .map(|row| match row.iter().find(|(name, _)| *name == field.name()) {
                    Some((_, value)) => value.cast_to(field.data_type()),
                    None => unset(field),
                })
                .collect::<DFResult<Vec<_>>>()?;
            ScalarValue::iter_to_array(values)
        })
        .collect::<DFResult<Vec<_>>>()?;
    let batch = RecordBatch::try_new(nullable.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(nullable, vec![vec![batch]])?))
}

fn unset(field: &Field) -> DFResult<ScalarValue> {
    match field.data_type() {
        _ if field.is_nullable() => ScalarValue::try_from(field.data_type()),
        DataType::Utf8 => Ok(ScalarValue::Utf8(Some(String::new()))),
        DataType::Boolean => Ok(ScalarValue::Boolean(Some(false))),
        other => ScalarValue::new_zero(other).or_else(|_| ScalarValue::try_from(other)),
    }
}

/// The catalog functions (datafusion-pg-catalog's, as its `setup_pg_catalog`
/// registers them) and the lake's own answers for the database, the
/// version, the settings and descriptions.
fn register_functions(ctx: &SessionContext, statics: &StaticTables, settings: &Settings) {
    ctx.register_udf(pgc::create_current_schema_udf());
    ctx.register_udf(pgc::create_current_schemas_udf());
    ctx.register_udf(pgc::create_pg_get_userbyid_udf());
    for name in ["has_table_privilege", "has_schema_privilege", "has_database_privilege", "has_any_column_privilege"] {
        ctx.register_udf(has_privilege_udf::create_has_privilege_udf(name));
    }
    ctx.register_udf(pgc::create_pg_table_is_visible());
    ctx.register_udf(format_type::create_format_type_udf());
    ctx.register_udf(pgc::create_session_user_udf());
    ctx.register_udtf("pg_get_keywords", statics.pg_get_keywords.clone());
    ctx.register_udf(pg_get_expr_udf::create_pg_get_expr_udf());
    ctx.register_udf(pgc::create_pg_get_partkeydef_udf());
    ctx.register_udf(pgc::create_pg_relation_is_publishable_udf());
    ctx.register_udf(pgc::create_pg_get_statisticsobjdef_columns_udf());
    ctx.register_udf(pgc::create_pg_encoding_to_char_udf());
    ctx.register_udf(pgc::create_pg_backend_pid_udf());
    ctx.register_udf(pgc::create_pg_relation_size_udf());
    ctx.register_udf(pgc::create_pg_total_relation_size_udf());
    ctx.register_udf(pgc::create_pg_stat_get_numscans());
    ctx.register_udf(pgc::create_pg_get_constraintdef());
    ctx.register_udf(pgc::create_pg_get_partition_ancestors_udf());
    ctx.register_udf(quote_ident_udf::create_quote_ident_udf());
    ctx.register_udf(quote_ident_udf::create_parse_ident_udf());

    ctx.register_udf(constant("current_database", CATALOG));
    ctx.register_udf(constant("version", &format!("PostgreSQL {SERVER_VERSION} (tidelake lake query service)")));
    let settings = settings.clone();
    ctx.register_udf(create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let names = ColumnarValue::values_to_arrays(args)?;
            let names = names[0].as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                DataFusionError::Execution("current_setting takes the setting's name as text".into())
            })?;
            let values = names
                .iter()
                .map(|name| match name {
                    None => Ok(None),
                    Some(name) => settings.get(&name.to_lowercase()).map(|v| Some(v.clone())).ok_or_else(|| {
                        DataFusionError::Execution(format!("unrecognized configuration parameter \"{name}\""))
                    }),
                })
                .collect::<DFResult<StringArray>>()?;
            Ok(ColumnarValue::Array(Arc::new(values)))
        }),
    ));
    // The lake keeps no comments, and has no indexes, views or triggers to define.
    for name in [
        "obj_description",
        "col_description",
        "shobj_description",
        "pg_get_indexdef",
        "pg_get_viewdef",
        "pg_get_triggerdef",
        "pg_get_ruledef",
        "pg_get_functiondef",
        "pg_get_function_result",
        "pg_get_function_arguments",
        "pg_get_function_identity_arguments",
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(NoText::new(name)));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(Format::default()));
    // Every object the catalogs list is on the search path, as tables are
    // for datafusion-pg-catalog's `pg_table_is_visible`.
    for name in ["pg_function_is_visible", "pg_type_is_visible", "pg_opclass_is_visible", "pg_collation_is_visible"] {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))),
        ));
    }
    // A lake table's size is its files', which the catalogs do not read: unknown.
    ctx.register_udf(create_udf(
        "pg_table_size",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Stable,
        Arc::new(|_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Int64(None)))),
    ));
    ctx.register_udf(create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let sizes = ColumnarValue::values_to_arrays(args)?;
            let sizes = sizes[0].as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().ok_or_else(|| {
                DataFusionError::Execution("pg_size_pretty takes a size in bytes (bigint)".into())
            })?;
            let pretty: StringArray = sizes.iter().map(|size| size.map(size_pretty)).collect();
            Ok(ColumnarValue::Array(Arc::new(pretty)))
        }),
    ));
}

/// PostgreSQL's `pg_size_pretty`: bytes up to 10 kB, then kB, MB, GB, TB,
/// PB, each unit while the value stays under 20 480 of it (half rounded up).
fn size_pretty(bytes: i64) -> String {
    let mut size = bytes;
    if size.unsigned_abs() < 10 * 1024 {
        return format!("{size} bytes");
    }
    for unit in ["kB", "MB", "GB", "TB"] {
        let halves = size / 512;
        let rounded = (halves + halves.signum()) / 2;
        if rounded.unsigned_abs() < 20 * 1024 || unit == "TB" {
            return format!("{rounded} {unit}");
        }
        size /= 1024;
    }
    unreachable!("TB ends the loop")
}

/// PostgreSQL's `format(text, …)`: `%s` a value (NULL as nothing), `%I` an
/// identifier quoted where it must be, `%L` a literal (NULL unquoted), `%%`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

impl Default for Format {
    fn default() -> Self {
        Self { signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for Format {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let rows = args.number_rows;
        let texts = args
            .args
            .iter()
            .map(|a| {
                let array = a.to_array(rows)?;
                let array = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
                Ok(array.as_any().downcast_ref::<StringArray>().expect("cast to Utf8").clone())
            })
            .collect::<DFResult<Vec<StringArray>>>()?;
        let Some((pattern, values)) = texts.split_first() else {
            return Err(DataFusionError::Plan("format takes a format string".into()));
        };
        let formatted = (0..rows)
            .map(|row| {
                if pattern.is_null(row) {
                    return Ok(None);
                }
                let values: Vec<Option<&str>> =
                    values.iter().map(|v| (!v.is_null(row)).then(|| v.value(row))).collect();
                format_one(pattern.value(row), &values).map(Some)
            })
            .collect::<DFResult<StringArray>>()?;
        Ok(ColumnarValue::Array(Arc::new(formatted)))
    }
}

fn format_one(pattern: &str, values: &[Option<&str>]) -> DFResult<String> {
    let mut out = String::with_capacity(pattern.len());
    let (mut chars, mut next) = (pattern.chars(), values.iter());
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let conversion = chars.next();
        if conversion == Some('%') {
            out.push('%');
            continue;
        }
        let value = next
            .next()
            .ok_or_else(|| DataFusionError::Execution("format: too few arguments for the format string".into()))?;
        match (conversion, value) {
            (Some('s'), value) => out.push_str(value.unwrap_or("")),
            (Some('I'), Some(value)) => out.push_str(&quote_identifier(value)),
            (Some('I'), None) => {
                return Err(DataFusionError::Execution("format: a NULL cannot be an identifier (%I)".into()));
            }
            (Some('L'), Some(value)) => out.push_str(&format!("'{}'", value.replace('\'', "''"))),
            (Some('L'), None) => out.push_str("NULL"),
            (other, _) => {
                return Err(DataFusionError::Execution(format!(
                    "format: unsupported conversion %{} (supported: %s, %I, %L, %%)",
                    other.map(String::from).unwrap_or_default()
                )));
            }
        }
    }
    Ok(out)
}

/// An identifier as PostgreSQL's `quote_ident` writes it: as is when
/// lower-case letters, digits and `_`, else in double quotes.
fn quote_identifier(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { name.to_owned() } else { quote_ident(name) }
}

/// A catalog function with nothing to say of any object: NULL text for any arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NoText {
    name: &'static str,
    signature: Signature,
}

impl NoText {
    fn new(name: &'static str) -> Self {
        Self { name, signature: Signature::variadic_any(Volatility::Stable) }
    }
}

impl ScalarUDFImpl for NoText {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}

/// A function of no arguments answering `value`.
fn constant(name: &str, value: &str) -> ScalarUDF {
    let value = value.to_owned();
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(value.clone()))))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads_sql(sql: &str) -> Result<Reads, QueryError> {
        let mut statements = rewrite::parse_all(sql)?;
        reads(&statements.pop().expect("a statement"))
    }

    #[test]
    fn statements_naming_the_catalogs_read_the_catalogs() {
        assert_eq!(reads_sql("SELECT * FROM pg_catalog.pg_class").unwrap(), Reads::Catalogs);
        assert_eq!(reads_sql("SELECT relname FROM pg_class").unwrap(), Reads::Catalogs);
        assert_eq!(reads_sql("SELECT * FROM information_schema.tables").unwrap(), Reads::Catalogs);
        assert_eq!(reads_sql("SELECT current_setting('server_version_num')").unwrap(), Reads::Catalogs);
        assert_eq!(reads_sql("SELECT pg_catalog.version()").unwrap(), Reads::Catalogs);
        assert_eq!(reads_sql("SELECT * FROM acme.orders").unwrap(), Reads::Lake);
        assert_eq!(reads_sql("SELECT 1").unwrap(), Reads::Lake);
        // A catalog function over a lake table stays a lake query.
        assert_eq!(reads_sql("SELECT quote_ident(name) FROM acme.orders").unwrap(), Reads::Lake);
        let both = reads_sql("SELECT * FROM acme.orders JOIN pg_catalog.pg_class ON true").unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
    }

    #[test]
    fn format_writes_values_identifiers_and_literals() {
        let f = |pattern: &str, values: &[Option<&str>]| format_one(pattern, values).unwrap();
        assert_eq!(f("%I.%I", &[Some("acme"), Some("items")]), "acme.items");
        assert_eq!(f("%I.%I", &[Some("acme-co"), Some("Orders")]), "\"acme-co\".\"Orders\"");
        assert_eq!(f("%s|%L|%L|100%%", &[None, Some("it's"), None]), "|'it''s'|NULL|100%");
        assert!(format_one("%s %s", &[Some("one")]).is_err());
        assert!(format_one("%x", &[Some("one")]).is_err());
    }

    #[test]
    fn sizes_read_as_postgresql_writes_them() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10 * 1024 - 1), "10239 bytes");
        assert_eq!(size_pretty(10 * 1024), "10 kB");
        assert_eq!(size_pretty(1536 * 1024), "1536 kB");
        assert_eq!(size_pretty(20 * 1024 * 1024), "20 MB");
        assert_eq!(size_pretty(-20 * 1024 * 1024), "-20 MB");
    }

    #[test]
    fn oids_follow_names_and_never_collide() {
        let mut taken = HashSet::new();
        let a = oid_of("r:acme.orders", &mut taken);
        let mut again = HashSet::new();
        assert_eq!(oid_of("r:acme.orders", &mut again), a);
        // The same name twice in one listing gets the next free OID.
        let b = oid_of("r:acme.orders", &mut taken);
        assert_ne!(a, b);
        assert!(a >= FIRST_OID as i32 && b >= FIRST_OID as i32);
    }
}
