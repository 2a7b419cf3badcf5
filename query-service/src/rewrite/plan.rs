//! The plans that compute what a query's lake references and table
//! functions name, built as DataFusion logical plans over the tables the
//! query loaded (never as SQL text): a table's state within a bound, its
//! changes and snapshots within one, the state of every tenant, a diff of
//! two states, and the `growth` and `activity` series.
//!
//! [`rewrite`](super::rewrite) names each factor `"tidelake$plans"."<n>"`;
//! the plans are registered under those names (as views, so DataFusion can
//! plan the statement) and [`inline`] puts each in place of its scan once
//! the statement is planned — before parameters (`$1`) are bound, so a
//! bound may be a parameter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::datasource::ViewTable;
use datafusion::execution::context::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchema, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::error::Result as DFResult;
use datafusion::execution::SessionState;
use datafusion::functions::core::expr_fn::{coalesce, greatest, named_struct};
use datafusion::functions_aggregate::expr_fn::{count, max, sum};
use datafusion::logical_expr::conditional_expressions::CaseBuilder;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, JoinType, LogicalPlan, LogicalPlanBuilder, Operator, binary_expr, cast, in_list, lit,
    scalar_subquery, when,
};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, ExprWithAlias, Statement};
use iceberg::table::Table;
use iceberg_datafusion::IcebergStaticTableProvider;
use lake::spec::{COMMIT_TS, ColumnsSince, LSN, OP};

use super::{ALL_TENANTS, Analysis, Arg, Bound, DiffCall, Kind, Point, RewriteError, Series, SeriesCall, Site, TableFn};
use crate::error::QueryError;
use crate::limits::buckets;

/// The schema the rewritten factors name their plans in.
pub const SCHEMA: &str = "tidelake$plans";

/// The name of the plan of the query's `index`th table factor.
pub fn name(index: usize) -> String {
    index.to_string()
}

/// What the plans need to know of one lake table.
#[derive(Debug, Clone, Default)]
pub struct TableShape {
    /// Source columns of the current schema, in order.
    pub columns: Vec<String>,
    pub primary_key: Vec<String>,
    /// Where each relation of this name starts: (first LSN, commit time in
    /// µs), oldest first.
    pub relations: Vec<(u64, i64)>,
    /// The columns of each schema version, oldest first (empty: the table
    /// records none, and has its current columns at every instant).
    pub versions: Vec<ColumnsSince>,
    /// The changelog's fields as its scans read them: (field id, name), in order.
    pub fields: Vec<(i32, String)>,
    /// The table's state checkpoints, oldest first.
    pub checkpoints: Vec<CheckpointShape>,
}

/// A state checkpoint a state read may start from (`lake::spec::checkpoints`).
#[derive(Debug, Clone)]
pub struct CheckpointShape {
    pub lsn: u64,
    /// The commit time of its newest change (µs).
    pub at: i64,
    pub key: Vec<i32>,
    pub snapshot_id: i64,
    /// Its fields: field id → name then.
    pub fields: BTreeMap<i32, String>,
}

/// One column of a state: the changelog field holding it (None: no row
/// holds it yet), under its type then where that differs from the field's.
#[derive(Debug, Clone, PartialEq)]
struct StateColumn {
    name: String,
    field: Option<String>,
    cast: Option<DataType>,
}

impl StateColumn {
    fn expr(&self, relation: Option<&str>) -> Expr {
        let value = match &self.field {
            Some(field) => column(relation, field),
            None => lit(ScalarValue::Null),
        };
        match &self.cast {
            Some(t) => cast(value, t.clone()),
            None => value,
        }
    }
}

impl TableShape {
    /// The newest checkpoint a state at `bound` can start from: at or
    /// before a literal bound, keyed as the state is then.
    fn checkpoint_for(&self, bound: &Bound) -> Option<&CheckpointShape> {
        if bound.literal().is_none() && !matches!(bound, Bound::Now) {
            return None;
        }
        let key = &self.version_at(bound)?.key_ids;
        self.checkpoints.iter().rev().find(|c| {
            &c.key == key
                && match bound.literal() {
                    None => true,
                    Some(Point::Lsn(lsn)) => c.lsn <= lsn,
                    Some(Point::Micros(at)) => c.at <= at,
                }
        })
    }

    /// The schema version in force at a literal bound (the newest for any
    /// other), or before the oldest recorded the oldest; None if the table
    /// records none.
    fn version_at(&self, bound: &Bound) -> Option<&ColumnsSince> {
        match bound.literal() {
            None => self.versions.last(),
            Some(Point::Lsn(lsn)) => self.versions.iter().rev().find(|v| v.lsn <= lsn),
            Some(Point::Micros(at)) => self.versions.iter().rev().find(|v| v.at <= at),
        }
        .or(self.versions.first())
    }

    /// The columns the state has at `bound`, and its key (names), as of the
    /// schema version in force then. Bounds that are expressions (not
    /// literals) take the current columns.
    fn columns_at(&self, bound: &Bound) -> (Vec<StateColumn>, Vec<String>) {
        let Some(entry) = self.version_at(bound) else {
            let columns =
                self.columns.iter().map(|c| StateColumn { name: c.clone(), field: Some(c.clone()), cast: None }).collect();
            return (columns, self.primary_key.clone());
        };
        let columns = entry
            .columns
            .iter()
            .map(|c| StateColumn {
                name: c.name.clone(),
                field: c.field.clone(),
                // Under its type then: a field promoted since (an `int` now
                // `bigint`), or the NULL of a column no data holds yet.
                cast: (c.field.is_none() || c.type_now != c.type_then).then(|| arrow_type(&c.type_then)).flatten(),
            })
            .collect();
        (columns, entry.key.clone())
    }
}

/// The Arrow type the lake reads an Iceberg type (its `to_string` form) as.
fn arrow_type(iceberg: &str) -> Option<DataType> {
    Some(match iceberg {
        "boolean" => DataType::Boolean,
        "int" => DataType::Int32,
        "long" => DataType::Int64,
        "float" => DataType::Float32,
        "double" => DataType::Float64,
        "date" => DataType::Date32,
        "time" => DataType::Time64(TimeUnit::Microsecond),
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        "string" | "uuid" => DataType::Utf8,
        "binary" => DataType::Binary,
        _ => {
            let inner = iceberg.strip_prefix("decimal(")?.strip_suffix(')')?;
            let (p, s) = inner.split_once(',')?;
            DataType::Decimal128(p.trim().parse().ok()?, s.trim().parse().ok()?)
        }
    })
}

/// One loaded lake table: its shape and what reads it.
pub struct LakeTable {
    pub shape: TableShape,
    /// Its changelog and its snapshots, as the query's catalog has them.
    pub changes: Arc<dyn TableProvider>,
    pub snapshots: Arc<dyn TableProvider>,
    /// Its checkpoint table, if it has one.
    pub checkpoints: Option<Table>,
}

/// The loaded lake tables: (tenant, table) → table; and per cross-tenant
/// table the tenants having it.
#[derive(Default)]
pub struct Loaded {
    pub tables: BTreeMap<(String, String), LakeTable>,
    pub all_tenants: BTreeMap<String, Vec<String>>,
}

/// A column of `relation` (or of the plan's one input), by its exact name.
fn column(relation: Option<&str>, name: &str) -> Expr {
    Expr::Column(Column::new(relation.map(TableReference::bare), name))
}

/// Builds the plan of each rewritten factor in a query's session.
struct Planner<'a> {
    state: &'a SessionState,
    loaded: &'a Loaded,
}

impl<'a> Planner<'a> {
    fn new(state: &'a SessionState, loaded: &'a Loaded) -> Self {
        Self { state, loaded }
    }

    /// The plan of every factor the query's analysis names, by name.
    async fn plans(&self, analysis: &Analysis) -> Result<HashMap<String, LogicalPlan>, QueryError> {
        let mut plans = HashMap::new();
        for (name, site) in analysis.planned() {
            plans.insert(name, self.site(site).await?);
        }
        Ok(plans)
    }

    async fn site(&self, site: &Site) -> Result<LogicalPlan, QueryError> {
        match site {
            Site::Keep => unreachable!("kept factors are not planned"),
            Site::Function { call: TableFn::Diff(call), .. } => self.diff(call).await,
            Site::Function { call: TableFn::Series(call), .. } => self.series(call),
            Site::Lake { reference: r, bound } if r.tenant == ALL_TENANTS => self.all_tenants(&r.table, bound).await,
            Site::Lake { reference: r, bound } => match r.kind {
                Kind::State => self.state(&r.tenant, &r.table, bound, false).await,
                Kind::Changes => {
                    let within = self.within(bound, COMMIT_TS, LSN)?;
                    Ok(self.changes(&r.tenant, &r.table)?.filter(within)?.build()?)
                }
                Kind::Snapshots => {
                    let table = self.table(&r.tenant, &r.table)?;
                    let name = TableReference::partial(r.tenant.as_str(), format!("{}$snapshots", r.table));
                    let scan = LogicalPlanBuilder::scan(name, provider_as_source(table.snapshots.clone()), None)?;
                    Ok(scan.filter(self.within(bound, "committed_at", "lsn_to")?)?.build()?)
                }
                Kind::Checkpoint => unreachable!("a checkpoint is never a lake site"),
            },
        }
    }

    fn table(&self, tenant: &str, table: &str) -> Result<&LakeTable, RewriteError> {
        self.loaded
            .tables
            .get(&(tenant.to_owned(), table.to_owned()))
            .ok_or_else(|| RewriteError::NoTable { tenant: tenant.to_owned(), table: table.to_owned() })
    }

    /// A scan of the table's changelog.
    fn changes(&self, tenant: &str, table: &str) -> Result<LogicalPlanBuilder, QueryError> {
        let provider = self.table(tenant, table)?.changes.clone();
        let name = TableReference::partial(tenant, format!("{table}$changes"));
        Ok(LogicalPlanBuilder::scan(name, provider_as_source(provider), None)?)
    }

    /// An expression the query wrote, as DataFusion reads it (no columns in scope).
    fn sql_expr(&self, expr: &SqlExpr) -> DFResult<Expr> {
        let expr = ExprWithAlias { expr: expr.clone(), alias: None };
        self.state.create_logical_expr_from_sql_expr(expr, &DFSchema::empty())
    }

    /// A function of the session (with its configuration: instants in UTC).
    fn call(&self, function: &str, args: Vec<Expr>) -> DFResult<Expr> {
        let udf = self.state.scalar_functions().get(function).ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!("no function {function} in the session"))
        })?;
        Ok(udf.call(args))
    }

    /// An instant as a microsecond timestamp, like the changelog's
    /// (DataFusion reads timestamp strings as nanoseconds, which end in 2262).
    fn instant(&self, arg: &Arg<i64>) -> DFResult<Expr> {
        let value = match arg {
            Arg::Literal(micros) => lit(*micros),
            Arg::Expr(e) => self.sql_expr(e)?,
        };
        self.call("to_timestamp_micros", vec![value])
    }

    fn lsn(&self, arg: &Arg<u64>) -> DFResult<Expr> {
        match arg {
            Arg::Literal(lsn) => Ok(lit(*lsn as i64)),
            Arg::Expr(e) => self.sql_expr(e),
        }
    }

    /// The rows within the bound, by the columns holding their commit time and LSN.
    fn within(&self, bound: &Bound, at: &str, lsn: &str) -> DFResult<Expr> {
        Ok(match bound {
            Bound::Now => lit(true),
            Bound::Instant(arg) => column(None, at).lt_eq(self.instant(arg)?),
            Bound::Lsn(arg) => column(None, lsn).lt_eq(self.lsn(arg)?),
        })
    }

    /// The LSN before the relation current at the bound starts: changes of
    /// earlier relations of the same name (a table dropped and created
    /// again) are not part of the state.
    fn relation_cut(&self, bound: &Bound, relations: &[(u64, i64)]) -> DFResult<Expr> {
        let before = |lsn: u64| lit(lsn.saturating_sub(1) as i64);
        let Some(&(newest, _)) = relations.last() else { return Ok(lit(0i64)) };
        // The bound, and where a relation starts in the bound's terms.
        let (value, start): (Expr, &dyn Fn(u64, i64) -> DFResult<Expr>) = match bound {
            Bound::Now => return Ok(before(newest)),
            Bound::Instant(arg) => (self.instant(arg)?, &|_, micros| self.instant(&Arg::Literal(micros))),
            Bound::Lsn(arg) => (self.lsn(arg)?, &|lsn, _| Ok(lit(lsn as i64))),
        };
        let (mut reached, mut cuts) = (Vec::new(), Vec::new());
        for &(lsn, micros) in relations.iter().rev() {
            reached.push(value.clone().gt_eq(start(lsn, micros)?));
            cuts.push(before(lsn));
        }
        CaseBuilder::new(None, reached, cuts, Some(Box::new(lit(0i64)))).end()
    }

    /// The state of one table within the bound: the latest change of each
    /// key (found by a grouped `max(_lsn)` and joined back: a hash aggregate
    /// rather than a sort of the whole history), unless it is a delete,
    /// after the latest truncate or drop — from the newest checkpoint the
    /// bound allows and the changes after it. With a `tenant` column first
    /// if `tenant_column`.
    async fn state(&self, tenant: &str, table: &str, bound: &Bound, tenant_column: bool) -> Result<LogicalPlan, QueryError> {
        let lake = self.table(tenant, table)?;
        let shape = &lake.shape;
        let (columns, key) = shape.columns_at(bound);
        if key.is_empty() {
            return Err(RewriteError::NoPrimaryKey { tenant: tenant.to_owned(), table: table.to_owned() }.into());
        }
        // The key's fields, by the names the columns have at the bound.
        let key = key
            .iter()
            .map(|k| {
                columns.iter().find(|c| &c.name == k).map(|c| c.expr(None)).ok_or_else(|| RewriteError::KeyNotAColumn {
                    tenant: tenant.to_owned(),
                    table: table.to_owned(),
                    column: k.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let changes = self.changes(tenant, table)?.build()?;
        let source = match (shape.checkpoint_for(bound), &lake.checkpoints) {
            (Some(checkpoint), Some(checkpoints)) => {
                from_checkpoint(tenant, table, shape, changes, checkpoint, checkpoints).await?
            }
            _ => changes,
        };
        let within = self.within(bound, COMMIT_TS, LSN)?;
        let truncated = LogicalPlanBuilder::from(source.clone())
            .alias("__t")?
            .filter(in_list(column(None, OP), vec![lit("truncate"), lit("drop")], false).and(within.clone()))?
            .aggregate(Vec::<Expr>::new(), vec![max(column(None, LSN)).alias("__max")])?
            .project(vec![coalesce(vec![column(None, "__max"), lit(0i64)])])?
            .build()?;
        let cut = greatest(vec![scalar_subquery(Arc::new(truncated)), self.relation_cut(bound, &shape.relations)?]);
        let latest = LogicalPlanBuilder::from(source.clone())
            .alias("__m")?
            .filter(within.clone().and(column(None, LSN).gt(cut)))?
            .aggregate(key, vec![max(column(None, LSN)).alias("__last")])?
            .alias("__latest")?
            .build()?;
        let mut select = Vec::new();
        if tenant_column {
            select.push(lit(tenant).alias("tenant"));
        }
        select.extend(columns.iter().map(|c| c.expr(Some("__c")).alias(&c.name)));
        Ok(LogicalPlanBuilder::from(source)
            .alias("__c")?
            .join(
                latest,
                JoinType::Inner,
                (vec![Column::new(Some("__c"), LSN)], vec![Column::new(Some("__latest"), "__last")]),
                None,
            )?
            .filter(within.and(column(Some("__c"), OP).not_eq(lit("delete"))))?
            .project(select)?
            .build()?)
    }

    /// The state of every tenant having the table, by column name, with a
    /// `tenant` column.
    async fn all_tenants(&self, table: &str, bound: &Bound) -> Result<LogicalPlan, QueryError> {
        let tenants = self
            .loaded
            .all_tenants
            .get(table)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RewriteError::NoTenantHas(table.to_owned()))?;
        let mut all: Option<LogicalPlanBuilder> = None;
        for tenant in tenants {
            let state = self.state(tenant, table, bound, true).await?;
            all = Some(match all {
                None => LogicalPlanBuilder::from(state),
                Some(all) => all.union_by_name(state)?,
            });
        }
        Ok(all.expect("one tenant at least").build()?)
    }

    /// Rows added, removed and changed between the two states, by primary
    /// key: `change`, the key columns, and `before` / `after` (each row's
    /// values as a struct; NULL on the side where the row does not exist).
    async fn diff(&self, call: &DiffCall) -> Result<LogicalPlan, QueryError> {
        let shape = &self.table(&call.tenant, &call.table)?.shape;
        // Each side has the columns of its instant; rows are matched by the
        // key they both have.
        let (before_columns, before_key) = shape.columns_at(&call.from);
        let (after_columns, key) = shape.columns_at(&call.to);
        if before_key != key {
            return Err(RewriteError::KeyChanged {
                tenant: call.tenant.clone(),
                table: call.table.clone(),
                before: before_key.join(", "),
                after: key.join(", "),
            }
            .into());
        }
        let before = self.state(&call.tenant, &call.table, &call.from, false).await?;
        let after = self.state(&call.tenant, &call.table, &call.to, false).await?;
        let names = |columns: Vec<StateColumn>| columns.into_iter().map(|c| c.name).collect::<Vec<_>>();
        let (before_columns, after_columns) = (names(before_columns), names(after_columns));
        let (b, a) = (|c: &str| column(Some("__before"), c), |c: &str| column(Some("__after"), c));
        let first_key = &key[0];
        let row = |side: &dyn Fn(&str) -> Expr, columns: &[String]| {
            let fields = columns.iter().flat_map(|c| [lit(c.as_str()), side(c)]).collect();
            when(side(first_key).is_null(), lit(ScalarValue::Null)).otherwise(named_struct(fields))
        };
        // A row differs if a column both sides have differs, or if the
        // columns do (then every row is a change).
        let differs = (before_columns == after_columns).then(|| {
            let mut differs = b(first_key).is_null().or(a(first_key).is_null());
            for c in &after_columns {
                differs = differs.or(binary_expr(b(c), Operator::IsDistinctFrom, a(c)));
            }
            differs
        });
        let mut select = vec![
            when(b(first_key).is_null(), lit("added"))
                .when(a(first_key).is_null(), lit("removed"))
                .otherwise(lit("changed"))?
                .alias("change"),
        ];
        select.extend(key.iter().map(|k| coalesce(vec![b(k), a(k)]).alias(k)));
        select.push(row(&b, &before_columns)?.alias("before"));
        select.push(row(&a, &after_columns)?.alias("after"));
        let keys = |side: &str| key.iter().map(|k| Column::new(Some(side), k)).collect::<Vec<_>>();
        let joined = LogicalPlanBuilder::from(before).alias("__before")?.join(
            LogicalPlanBuilder::from(after).alias("__after")?.build()?,
            JoinType::Full,
            (keys("__before"), keys("__after")),
            None,
        )?;
        let changed = match differs {
            Some(differs) => joined.filter(differs)?,
            None => joined,
        };
        Ok(changed.project(select)?.build()?)
    }

    /// `growth` or `activity` in each tenant the call names, one after the other.
    fn series(&self, call: &SeriesCall) -> Result<LogicalPlan, QueryError> {
        let tenants = match &call.tenant {
            Some(tenant) => vec![tenant.clone()],
            None => self.loaded.all_tenants.get(&call.table).cloned().unwrap_or_default(),
        };
        if tenants.is_empty() {
            return Err(RewriteError::NoTenantHas(call.table.clone()).into());
        }
        let mut all: Option<LogicalPlanBuilder> = None;
        for tenant in &tenants {
            let part = match call.series {
                Series::Growth => self.growth(call, tenant)?,
                Series::Activity => self.activity(call, tenant)?,
            };
            all = Some(match all {
                None => LogicalPlanBuilder::from(part),
                Some(all) => all.union(part)?,
            });
        }
        Ok(all.expect("one tenant at least").build()?)
    }

    /// The instants `at` from the call's start every interval up to its end,
    /// by [`buckets::FUNCTION`] (which refuses more than the cap).
    fn buckets(&self, call: &SeriesCall) -> Result<LogicalPlanBuilder, QueryError> {
        let series = self.call(
            buckets::FUNCTION,
            vec![self.instant(&call.start)?, self.instant(&call.end)?, lit(ScalarValue::IntervalMonthDayNano(Some(call.step)))],
        )?;
        Ok(LogicalPlanBuilder::empty(true)
            .project(vec![series.alias("__series")])?
            .unnest_column("__series")?
            .project(vec![column(None, "__series").alias("at")])?
            .alias("__b")?)
    }

    /// Rows at each instant: inserts less deletes since the latest truncate
    /// (or drop: a dropped table holds nothing).
    fn growth(&self, call: &SeriesCall, tenant: &str) -> Result<LogicalPlan, QueryError> {
        let at = || column(Some("__b"), "at");
        let cut = self
            .buckets(call)?
            .join_on(
                self.changes(tenant, &call.table)?.alias("__t")?.build()?,
                JoinType::Left,
                [
                    in_list(column(Some("__t"), OP), vec![lit("truncate"), lit("drop")], false),
                    column(Some("__t"), COMMIT_TS).lt_eq(at()),
                ],
            )?
            .aggregate(vec![at()], vec![max(column(Some("__t"), LSN)).alias("__max")])?
            .project(vec![at(), coalesce(vec![column(None, "__max"), lit(0i64)]).alias("cut")])?
            .alias("__cut")?;
        let counted = when(column(Some("__c"), OP).eq(lit("insert")), lit(1i64))
            .when(column(Some("__c"), OP).eq(lit("delete")), lit(-1i64))
            .otherwise(lit(0i64))?;
        let at = || column(Some("__cut"), "at");
        Ok(cut
            .join_on(
                self.changes(tenant, &call.table)?.alias("__c")?.build()?,
                JoinType::Left,
                [
                    column(Some("__c"), COMMIT_TS).lt_eq(at()),
                    column(Some("__c"), LSN).gt(column(Some("__cut"), "cut")),
                ],
            )?
            .aggregate(vec![at()], vec![sum(counted).alias("__rows")])?
            .project(vec![
                lit(tenant).alias("tenant"),
                at().alias("at"),
                coalesce(vec![column(None, "__rows"), lit(0i64)]).alias("rows"),
            ])?
            .build()?)
    }

    /// Changes of each kind in each interval.
    fn activity(&self, call: &SeriesCall, tenant: &str) -> Result<LogicalPlan, QueryError> {
        let at = || column(Some("__b"), "at");
        let ts = || column(Some("__c"), COMMIT_TS);
        let step = lit(ScalarValue::IntervalMonthDayNano(Some(call.step)));
        let kinds = ["insert", "update", "delete", "truncate", "drop"];
        let counts = kinds
            .iter()
            .map(|op| {
                let op_column = column(Some("__c"), OP);
                Ok(count(op_column.clone()).filter(op_column.eq(lit(*op))).build()?.alias(format!("{op}s")))
            })
            .collect::<DFResult<Vec<_>>>()?;
        let mut select = vec![lit(tenant).alias("tenant"), at().alias("at")];
        select.extend(kinds.iter().map(|op| column(None, &format!("{op}s"))));
        Ok(self
            .buckets(call)?
            .join_on(
                self.changes(tenant, &call.table)?.alias("__c")?.build()?,
                JoinType::Left,
                [ts().gt_eq(at()), ts().lt(at() + step)],
            )?
            .filter(at().lt(self.instant(&call.end)?))?
            .aggregate(vec![at()], counts)?
            .project(select)?
            .build()?)
    }
}

/// The checkpoint's rows, under the changelog's fields, followed by the
/// changes after it.
async fn from_checkpoint(
    tenant: &str,
    table: &str,
    shape: &TableShape,
    changes: LogicalPlan,
    checkpoint: &CheckpointShape,
    checkpoints: &Table,
) -> Result<LogicalPlan, QueryError> {
    let provider = IcebergStaticTableProvider::try_new_from_table_snapshot(checkpoints.clone(), checkpoint.snapshot_id).await?;
    let name = TableReference::partial(tenant, format!("{table}$checkpoint@{}", checkpoint.lsn));
    let scan = LogicalPlanBuilder::scan(name, provider_as_source(Arc::new(provider)), None)?.build()?;
    // The changelog's fields by id, each from the checkpoint's field of
    // that id (under the changelog's type), or NULL.
    let mut from_checkpoint = Vec::new();
    for field in changes.schema().fields() {
        let target = field.data_type();
        let id = shape.fields.iter().find(|(_, name)| name == field.name()).map(|(id, _)| id);
        let value = match id.and_then(|id| checkpoint.fields.get(id)) {
            Some(then) => match scan.schema().field_with_unqualified_name(then) {
                Ok(f) if f.data_type() == target => column(None, then),
                Ok(_) => cast(column(None, then), target.clone()),
                Err(_) => cast(lit(ScalarValue::Null), target.clone()),
            },
            None => cast(lit(ScalarValue::Null), target.clone()),
        };
        from_checkpoint.push(value.alias(field.name()));
    }
    let after = LogicalPlanBuilder::from(changes).filter(column(None, LSN).gt(lit(checkpoint.lsn as i64)))?.build()?;
    Ok(LogicalPlanBuilder::from(scan).project(from_checkpoint)?.union(after)?.build()?)
}

/// Plan the analysed statement in `ctx` over the loaded tables: each lake
/// factor named after its plan ([`rewrite`](super::rewrite)), the plans
/// registered in `catalog` as views under those names so DataFusion can
/// plan the statement, then put in place of their scans.
pub async fn statement(
    ctx: &SessionContext,
    catalog: &Arc<MemoryCatalogProvider>,
    mut statement: Statement,
    analysis: &Analysis,
    loaded: &Loaded,
) -> Result<LogicalPlan, QueryError> {
    super::rewrite(&mut statement, analysis);
    let state = ctx.state();
    let plans = Planner::new(&state, loaded).plans(analysis).await?;
    let views = Arc::new(MemorySchemaProvider::new());
    for (name, planned) in &plans {
        views.register_table(name.clone(), Arc::new(ViewTable::new(planned.clone(), None)))?;
    }
    catalog.register_schema(SCHEMA, views)?;
    let planned = state.statement_to_plan(DFStatement::Statement(Box::new(statement))).await?;
    Ok(inline(planned, &plans)?)
}

/// Put each named plan in place of its scan in the planned statement (and
/// in its subqueries), under the scan's name.
fn inline(plan: LogicalPlan, plans: &HashMap<String, LogicalPlan>) -> DFResult<LogicalPlan> {
    let planned = |node: &LogicalPlan| match node {
        LogicalPlan::TableScan(scan)
            if scan.table_name.schema() == Some(SCHEMA)
                && scan.projection.is_none()
                && scan.filters.is_empty()
                && scan.fetch.is_none() =>
        {
            plans.get(scan.table_name.table())
        }
        _ => None,
    };
    plan.transform_up_with_subqueries(|node| {
        // Under the factor's alias (the rewrite gives every factor one).
        if let LogicalPlan::SubqueryAlias(alias) = &node
            && let Some(planned) = planned(&alias.input)
        {
            let inlined = LogicalPlanBuilder::from(planned.clone()).alias(alias.alias.clone())?.build()?;
            return Ok(Transformed::yes(inlined));
        }
        Ok(Transformed::no(node))
    })
    .map(|t| t.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state read starts from the newest checkpoint at or before a literal
    /// bound whose key is the key then; expressions and other keys read the
    /// whole history.
    #[test]
    fn states_start_from_the_checkpoint_their_bound_allows() {
        let version = |lsn: u64, at: i64, key: i32| ColumnsSince {
            version: 1,
            lsn,
            at,
            columns: vec![lake::spec::ColumnThen {
                name: "id".into(),
                field: Some("id".into()),
                type_then: "int".into(),
                type_now: "int".into(),
                source_type: None,
                nullable: None,
            }],
            key: vec!["id".into()],
            key_ids: vec![key],
        };
        let checkpoint = |lsn: u64, at: i64, key: i32| CheckpointShape {
            lsn,
            at,
            key: vec![key],
            snapshot_id: lsn as i64 * 10,
            fields: BTreeMap::from([(key, "id".to_owned())]),
        };
        let shape = TableShape {
            columns: vec!["id".into()],
            primary_key: vec!["id".into()],
            versions: vec![version(1, 0, 1), version(500, 5_000, 7)],
            fields: vec![(1, "id".into()), (10002, "_lsn".into())],
            checkpoints: vec![checkpoint(100, 1_000, 1), checkpoint(300, 3_000, 1), checkpoint(600, 6_000, 7)],
            ..TableShape::default()
        };
        let now = || Arg::Expr(SqlExpr::Identifier(datafusion::sql::sqlparser::ast::Ident::new("now")));
        let chosen = |bound: Bound| shape.checkpoint_for(&bound).map(|c| c.lsn);
        assert_eq!(chosen(Bound::Lsn(Arg::Literal(250))), Some(100));
        assert_eq!(chosen(Bound::Lsn(Arg::Literal(99))), None);
        assert_eq!(chosen(Bound::Instant(Arg::Literal(3500))), Some(300));
        // The key changed at LSN 500: the checkpoints before it do not serve after it.
        assert_eq!(chosen(Bound::Lsn(Arg::Literal(550))), None);
        assert_eq!(chosen(Bound::Now), Some(600));
        assert_eq!(chosen(Bound::Instant(now())), None);
    }

    /// A column whose type then differs from its field's now, or that no
    /// row holds yet, is read under its type then.
    #[test]
    fn columns_then_are_cast_to_their_type_then() {
        let column = |name: &str, field: Option<&str>, then: &str, now: &str| lake::spec::ColumnThen {
            name: name.into(),
            field: field.map(str::to_owned),
            type_then: then.into(),
            type_now: now.into(),
            source_type: None,
            nullable: None,
        };
        let shape = TableShape {
            versions: vec![ColumnsSince {
                version: 1,
                lsn: 1,
                at: 0,
                columns: vec![
                    column("id", Some("id"), "int", "long"),
                    column("note", None, "decimal(12, 2)", "decimal(12, 2)"),
                    column("tags", Some("tags"), "string", "string"),
                ],
                key: vec!["id".into()],
                key_ids: vec![1],
            }],
            ..TableShape::default()
        };
        let (columns, key) = shape.columns_at(&Bound::Now);
        assert_eq!(key, ["id"]);
        let casts: Vec<Option<DataType>> = columns.iter().map(|c| c.cast.clone()).collect();
        assert_eq!(casts, [Some(DataType::Int32), Some(DataType::Decimal128(12, 2)), None]);
    }
}
