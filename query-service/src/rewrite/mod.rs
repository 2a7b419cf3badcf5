//! Lake table references and time travel. Every reference to a lake table
//! is replaced, before DataFusion plans the query, by the plan that
//! computes it with its `AS OF` bound applied (`plan`) — so a version
//! clause is never dropped: it is applied, or the query is refused.
//!
//! - `<tenant>.<table>`: the table's state, from its changelog: per primary
//!   key the latest change within the bound, deletes dropped, nothing
//!   before the latest truncate.
//! - `<tenant>."<table>$changes"`: the changelog within the bound.
//! - `<tenant>."<table>$snapshots"`: the Iceberg snapshots within the bound.
//! - `all_tenants.<table>`: the state of every tenant having the table, by
//!   column name (a column a tenant lacks is NULL), with a `tenant` column.
//! - `table_diff('<tenant>.<table>', <from>, <to>)`: rows added, removed
//!   and changed between two instants or LSNs.
//! - `growth(…)` and `activity(…)`: a table's rows, or its changes, per
//!   interval, per tenant.
//!
//! Bounds: `FOR SYSTEM_TIME AS OF <timestamp>` and `TIMESTAMP AS OF
//! <timestamp>` keep changes committed at or before the instant; `VERSION
//! AS OF <lsn>` keeps changes up to that LSN.
//!
//! The query is read once ([`analyse`]): what it needs loaded, and what
//! each table factor is. [`rewrite`] then names each factor to be computed
//! after the plan [`plan::Planner`] builds for it, and [`plan::inline`]
//! puts those plans in once DataFusion has planned the statement.

pub mod plan;

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use datafusion::arrow::datatypes::IntervalMonthDayNano;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart, Statement, TableAlias, TableFactor,
    TableFunctionArgs, TableVersion, Value, ValueWithSpan, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::parser::Parser;

use crate::dialect::LakeDialect;
use crate::error::QueryError;
use crate::limits::buckets;

/// The schema name of the cross-tenant views.
pub const ALL_TENANTS: &str = "all_tenants";

/// What a query reads from the lake, to be loaded before it is planned.
#[derive(Debug, Default)]
pub struct Needs {
    /// (tenant, table) pairs.
    pub tables: BTreeSet<(String, String)>,
    /// Tables read across all tenants.
    pub all_tenants: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    State,
    Changes,
    Snapshots,
    /// A state checkpoint, as a state read starts from it.
    Checkpoint,
}

/// A lake reference in the query: `tenant.table[$kind]`.
struct Reference {
    tenant: String,
    table: String,
    kind: Kind,
}

/// Parse one SQL statement; only queries (and EXPLAIN of one) are accepted.
pub fn parse(sql: &str) -> Result<Statement, QueryError> {
    let mut statements = parse_all(sql)?;
    if statements.len() != 1 {
        return Err(QueryError::Sql(format!("expected one statement, got {}", statements.len())));
    }
    only_query(statements.pop().expect("one statement"))
}

/// Parse any number of statements in the lake's dialect, unchecked.
pub fn parse_all(sql: &str) -> Result<Vec<Statement>, QueryError> {
    Parser::parse_sql(&LakeDialect::default(), sql).map_err(|e| QueryError::Sql(e.to_string()))
}

/// The statement if it is a query (or EXPLAIN of one), else an error naming it.
pub fn only_query(statement: Statement) -> Result<Statement, QueryError> {
    match &statement {
        Statement::Query(_) => Ok(statement),
        Statement::Explain { statement: inner, .. } if matches!(**inner, Statement::Query(_)) => Ok(statement),
        other => Err(QueryError::Sql(format!(
            "only queries are accepted (SELECT, WITH, VALUES, EXPLAIN), not: {}",
            first_words(&other.to_string())
        ))),
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The identifier as DataFusion resolves it (unquoted names are lowercased).
pub(crate) fn normalized(part: &ObjectNamePart) -> Option<String> {
    match part {
        ObjectNamePart::Identifier(ident) if ident.quote_style.is_some() => Some(ident.value.clone()),
        ObjectNamePart::Identifier(ident) => Some(ident.value.to_lowercase()),
        ObjectNamePart::Function(_) => None,
    }
}

fn reference(name: &ObjectName) -> Option<Reference> {
    let [tenant, table] = name.0.as_slice() else { return None };
    let (tenant, table) = (normalized(tenant)?, normalized(table)?);
    // The suffix is the last `$`: a source table's name may hold one
    // (`"price$history$changes"`); a lake name never does.
    let (table, kind) = match table.rsplit_once('$') {
        Some((base, "changes")) => (base.to_owned(), Kind::Changes),
        Some((base, "snapshots")) => (base.to_owned(), Kind::Snapshots),
        Some((base, suffix)) if suffix.strip_prefix("checkpoint@").is_some_and(|n| n.parse::<u64>().is_ok()) => {
            (base.to_owned(), Kind::Checkpoint)
        }
        _ => (table, Kind::State),
    };
    Some(Reference { tenant, table: lake_table(table), kind })
}

/// The lake table a table name in a query means (`lake::spec::query_name`:
/// a lake name, or a table of the `public` schema, encoded). A name no
/// source table can have stays as written, and is not found.
fn lake_table(name: String) -> String {
    lake::spec::query_name(&name).unwrap_or(name)
}

/// Why a query's lake references cannot be rewritten: each a refusal the
/// client can act on, turned into a [`QueryError`] (its HTTP status and
/// SQLSTATE) in one place.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("unsupported version clause {0}: use FOR SYSTEM_TIME AS OF, TIMESTAMP AS OF or VERSION AS OF")]
    UnsupportedVersionClause(String),
    #[error("AS OF applies to lake tables (<tenant>.<table>, \"<table>$changes\", \"<table>$snapshots\"), not to {0}")]
    NotALakeTable(String),
    #[error("{ALL_TENANTS} has only tables' states; read \"{0}$…\" per tenant")]
    AllTenantsStateOnly(String),
    #[error("{tenant}.\"{table}$checkpoint@…\": a checkpoint is one instant already; AS OF does not apply")]
    CheckpointAsOf { tenant: String, table: String },
    #[error("'{0}': not a timestamp (expected e.g. '2026-11-27 10:00:00+00')")]
    NotATimestamp(String),
    #[error("'{0}' is not an LSN (a whole number from 0 to {max})", max = i64::MAX)]
    NotAnLsn(String),
    #[error("{0}: arguments are positional")]
    NotPositional(String),
    #[error("usage: {0}")]
    Usage(&'static str),
    #[error(
        "{tenant}.{table} has no primary key, so its state cannot be rebuilt from the changelog; \
         read {tenant}.\"{table}$changes\" instead"
    )]
    NoPrimaryKey { tenant: String, table: String },
    #[error(
        "{tenant}.{table}: the primary key changed between the two instants ({before} then, {after} after): rows cannot be matched"
    )]
    KeyChanged { tenant: String, table: String, before: String, after: String },
    #[error("no lake table {tenant}.{table} (is the tenant's table shipped yet?)")]
    NoTable { tenant: String, table: String },
    #[error("no tenant has a lake table named {0}")]
    NoTenantHas(String),
    /// A limit of `growth` and `activity` (an interval, an instant range, the bucket cap).
    #[error(transparent)]
    Limit(QueryError),
    #[error("{tenant}.{table}: key column {column} is not a column")]
    KeyNotAColumn { tenant: String, table: String, column: String },
}

impl From<RewriteError> for QueryError {
    fn from(err: RewriteError) -> Self {
        match err {
            RewriteError::Limit(err) => err,
            RewriteError::NotAnLsn(_) => Self::InvalidArgument(err.to_string()),
            RewriteError::NoTable { .. } | RewriteError::NoTenantHas(_) => Self::NotFound(err.to_string()),
            RewriteError::KeyNotAColumn { .. } => Self::Internal(err.to_string()),
            _ => Self::Sql(err.to_string()),
        }
    }
}

/// What one table factor of the query is, read once by [`analyse`].
enum Site {
    /// Not rewritten: a CTE, a raw changelog or snapshot table read without
    /// a bound (registered as it is), or a table function of DataFusion's.
    Keep,
    /// A lake table with its bound.
    Lake { reference: Reference, bound: Bound },
    /// One of the lake's table functions.
    Function { call: TableFn, name: String },
}

/// A query's lake references as [`analyse`] read them: what to load, and
/// for each table factor (in visiting order) what it becomes.
pub struct Analysis {
    pub needs: Needs,
    sites: Vec<Site>,
}

impl Analysis {
    /// The factors [`rewrite`] names after a plan, each with that name.
    fn planned(&self) -> impl Iterator<Item = (String, &Site)> {
        self.sites.iter().enumerate().filter(|(_, s)| !matches!(s, Site::Keep)).map(|(i, s)| (plan::name(i), s))
    }
}

/// Read every table factor of the query once: the lake tables it needs
/// loaded, each reference's bound, each table function's arguments; and
/// the refusals that need no table (version clauses the lake cannot honour,
/// `AS OF` on what is not a lake table, `growth` or `activity` with literal
/// bounds and more than `max_buckets` buckets).
pub fn analyse(statement: &mut Statement, max_buckets: u64) -> Result<Analysis, RewriteError> {
    struct Analyse {
        analysis: Analysis,
        max_buckets: u64,
        error: Option<RewriteError>,
    }
    impl Analyse {
        fn site(&mut self, factor: &TableFactor) -> Result<Site, RewriteError> {
            let TableFactor::Table { name, version, args, .. } = factor else { unreachable!("only tables are sites") };
            if let Some(TableVersion::Function(e)) = version {
                return Err(RewriteError::UnsupportedVersionClause(e.to_string()));
            }
            let needs = &mut self.analysis.needs;
            if let Some(args) = args {
                return Ok(match TableFn::of(name, args).transpose()? {
                    Some(call) => {
                        match &call {
                            TableFn::Diff(diff) => {
                                needs.tables.insert((diff.tenant.clone(), diff.table.clone()));
                            }
                            TableFn::Series(series) => {
                                series.check(self.max_buckets)?;
                                match &series.tenant {
                                    Some(tenant) => needs.tables.insert((tenant.clone(), series.table.clone())),
                                    None => needs.all_tenants.insert(series.table.clone()),
                                };
                            }
                        }
                        Site::Function { call, name: normalized(&name.0[0]).unwrap_or_default() }
                    }
                    None => Site::Keep,
                });
            }
            let Some(reference) = reference(name) else {
                return match version {
                    Some(_) => Err(RewriteError::NotALakeTable(name.to_string())),
                    None => Ok(Site::Keep),
                };
            };
            if reference.tenant == ALL_TENANTS {
                if reference.kind != Kind::State {
                    return Err(RewriteError::AllTenantsStateOnly(reference.table));
                }
                needs.all_tenants.insert(reference.table.clone());
            } else if reference.kind == Kind::Checkpoint {
                // Read only by the state plans that start from it (not a table of the catalog).
                return match version {
                    Some(_) => Err(RewriteError::CheckpointAsOf { tenant: reference.tenant, table: reference.table }),
                    None => Ok(Site::Keep),
                };
            } else {
                needs.tables.insert((reference.tenant.clone(), reference.table.clone()));
                // Read as registered: the raw changelog and snapshot tables.
                if version.is_none() && reference.kind != Kind::State {
                    return Ok(Site::Keep);
                }
            }
            Ok(Site::Lake { bound: Bound::of(version.as_ref())?, reference })
        }
    }
    impl VisitorMut for Analyse {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if !matches!(factor, TableFactor::Table { .. }) {
                return ControlFlow::Continue(());
            }
            match self.site(factor) {
                Ok(site) => {
                    self.analysis.sites.push(site);
                    ControlFlow::Continue(())
                }
                Err(err) => {
                    self.error = Some(err);
                    ControlFlow::Break(())
                }
            }
        }
    }
    let mut visit = Analyse { analysis: Analysis { needs: Needs::default(), sites: Vec::new() }, max_buckets, error: None };
    let _ = statement.visit(&mut visit);
    match visit.error {
        Some(err) => Err(err),
        None => Ok(visit.analysis),
    }
}

/// Name every lake reference and table function the query computes after
/// the plan that will compute it (`"tidelake$plans"."<n>"`), keeping the
/// alias the query gave it (else its table's or function's name). A
/// factor is renamed once its own children have been visited.
pub fn rewrite(statement: &mut Statement, analysis: &Analysis) {
    struct Rewrite<'a> {
        sites: std::iter::Enumerate<std::slice::Iter<'a, Site>>,
        open: Vec<(usize, &'a Site)>,
    }
    impl<'a> VisitorMut for Rewrite<'a> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if matches!(factor, TableFactor::Table { .. }) {
                self.open.push(self.sites.next().expect("the statement analysed"));
            }
            ControlFlow::Continue(())
        }
        fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Table { name, alias, args, version, .. } = factor else { return ControlFlow::Continue(()) };
            let (index, site) = self.open.pop().expect("visited before");
            let default_alias = match site {
                Site::Keep => return ControlFlow::Continue(()),
                Site::Function { name, .. } => Ident::new(name),
                Site::Lake { reference, .. } => Ident::with_quote('"', reference.table.clone()),
            };
            *name = ObjectName::from(vec![Ident::with_quote('"', plan::SCHEMA), Ident::with_quote('"', plan::name(index))]);
            *args = None;
            *version = None;
            if alias.is_none() {
                *alias = Some(TableAlias { explicit: true, name: default_alias, columns: Vec::new() });
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Rewrite { sites: analysis.sites.iter().enumerate(), open: Vec::new() });
}

/// A bound's value: a literal read here, or an expression DataFusion reads.
#[derive(Debug, Clone)]
enum Arg<T> {
    Literal(T),
    Expr(Expr),
}

/// How far a read goes.
#[derive(Debug, Clone)]
enum Bound {
    Now,
    /// Changes committed at or before the instant (µs when a literal).
    Instant(Arg<i64>),
    /// Changes up to the LSN.
    Lsn(Arg<u64>),
}

/// A literal bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    Lsn(u64),
    Micros(i64),
}

impl Bound {
    fn of(version: Option<&TableVersion>) -> Result<Self, RewriteError> {
        Ok(match version {
            None => Self::Now,
            Some(TableVersion::ForSystemTimeAsOf(e) | TableVersion::TimestampAsOf(e)) => Self::Instant(instant(e)?),
            Some(TableVersion::VersionAsOf(e)) => Self::Lsn(lsn_arg(e)?),
            Some(TableVersion::Function(e)) => return Err(RewriteError::UnsupportedVersionClause(e.to_string())),
        })
    }

    /// The bound's value when it is a literal.
    fn literal(&self) -> Option<Point> {
        match self {
            Self::Instant(Arg::Literal(micros)) => Some(Point::Micros(*micros)),
            Self::Lsn(Arg::Literal(lsn)) => Some(Point::Lsn(*lsn)),
            _ => None,
        }
    }
}

/// An instant: a string literal is read here — `YYYY-MM-DD[ HH:MM:SS[.ffffff]][±HH[:MM]]`,
/// `T` and `Z` accepted, UTC without an offset (`model::parse_instant`) —
/// any other expression is converted by DataFusion, in microseconds.
fn instant(e: &Expr) -> Result<Arg<i64>, RewriteError> {
    match e {
        Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(text), .. }) => {
            model::parse_instant(text).map(Arg::Literal).ok_or_else(|| RewriteError::NotATimestamp(text.clone()))
        }
        other => Ok(Arg::Expr(other.clone())),
    }
}

/// An LSN: a number literal is read here (and must fit the changelog's
/// `_lsn`), any other expression is converted by DataFusion.
fn lsn_arg(e: &Expr) -> Result<Arg<u64>, RewriteError> {
    match e {
        Expr::Value(ValueWithSpan { value: Value::Number(n, _), .. }) => lsn(n).map(Arg::Literal),
        other => Ok(Arg::Expr(other.clone())),
    }
}

/// An LSN as a client wrote it: a whole number the changelog's `_lsn` can hold.
pub fn lsn(text: &str) -> Result<u64, RewriteError> {
    match text.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n as u64),
        _ => Err(RewriteError::NotAnLsn(text.to_owned())),
    }
}

/// The lake's table functions.
enum TableFn {
    Diff(DiffCall),
    Series(SeriesCall),
}

impl TableFn {
    /// None if `name(args)` is not one of them.
    fn of(name: &ObjectName, args: &TableFunctionArgs) -> Option<Result<Self, RewriteError>> {
        let [part] = name.0.as_slice() else { return None };
        let exprs = || -> Result<Vec<&Expr>, RewriteError> {
            args.args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                    _ => Err(RewriteError::NotPositional(name.to_string())),
                })
                .collect()
        };
        match normalized(part)?.as_str() {
            "table_diff" => Some(exprs().and_then(|e| DiffCall::parse(&e)).map(Self::Diff)),
            "growth" => Some(exprs().and_then(|e| SeriesCall::parse(Series::Growth, &e)).map(Self::Series)),
            "activity" => Some(exprs().and_then(|e| SeriesCall::parse(Series::Activity, &e)).map(Self::Series)),
            _ => None,
        }
    }
}

fn string_arg(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(s), .. }) => Some(s),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Series {
    Growth,
    Activity,
}

impl Series {
    fn name(self) -> &'static str {
        match self {
            Self::Growth => "growth",
            Self::Activity => "activity",
        }
    }
}

/// `growth('<table>' | '<tenant>.<table>', <start>, <end>, '<interval>')`:
/// the table's row count in every tenant having it (or one) at `start`
/// and every `interval` after it up to `end`.
/// `activity(…)`, same arguments: inserts, updates, deletes and truncates
/// per tenant in each interval from `start` to `end`.
struct SeriesCall {
    series: Series,
    tenant: Option<String>,
    table: String,
    start: Arg<i64>,
    end: Arg<i64>,
    step: IntervalMonthDayNano,
}

impl SeriesCall {
    fn parse(series: Series, exprs: &[&Expr]) -> Result<Self, RewriteError> {
        let usage = || {
            RewriteError::Usage(
                "growth|activity('<table>' or '<tenant>.<table>', <start>, <end>, '<interval>'), e.g. \
                 growth('orders', '2026-11-01', '2026-11-30', '1 day')",
            )
        };
        let [target, start, end, interval] = exprs else { return Err(usage()) };
        let target = string_arg(target).ok_or_else(usage)?;
        let interval = string_arg(interval).ok_or_else(usage)?;
        let (tenant, table) = match target.split_once('.') {
            Some((tenant, table)) => (Some(tenant.to_owned()), lake_table(table.to_owned())),
            None => (None, lake_table(target.to_owned())),
        };
        let (start, end) = (instant(start)?, instant(end)?);
        for bound in [&start, &end] {
            if let Arg::Literal(micros) = bound {
                buckets::instant(series.name(), *micros).map_err(RewriteError::Limit)?;
            }
        }
        let step = buckets::interval(series.name(), interval).map_err(RewriteError::Limit)?;
        Ok(Self { series, tenant, table, start, end, step })
    }

    /// Refuse more than `cap` buckets when the bounds are literals (when
    /// they are expressions, [`buckets::FUNCTION`] does as it runs).
    fn check(&self, cap: u64) -> Result<(), RewriteError> {
        if let (Arg::Literal(start), Arg::Literal(end)) = (&self.start, &self.end) {
            buckets::check(self.series.name(), *start, *end, self.step, cap).map_err(RewriteError::Limit)?;
        }
        Ok(())
    }
}

/// `table_diff('<tenant>.<table>', <from>, <to>)`: how the table's state
/// changed between two instants (timestamps) or LSNs (numbers).
struct DiffCall {
    tenant: String,
    table: String,
    from: Bound,
    to: Bound,
}

impl DiffCall {
    fn parse(exprs: &[&Expr]) -> Result<Self, RewriteError> {
        let usage = || RewriteError::Usage("table_diff('<tenant>.<table>', <from>, <to>) with timestamps or LSNs");
        let [table, from, to] = exprs else { return Err(usage()) };
        let name = string_arg(table).ok_or_else(usage)?;
        let (tenant, table) = name.split_once('.').ok_or_else(usage)?;
        let bound = |e: &Expr| -> Result<Bound, RewriteError> {
            match e {
                Expr::Value(ValueWithSpan { value: Value::Number(..), .. }) => Ok(Bound::Lsn(lsn_arg(e)?)),
                other => Ok(Bound::Instant(instant(other)?)),
            }
        };
        Ok(Self { tenant: tenant.to_owned(), table: lake_table(table.to_owned()), from: bound(from)?, to: bound(to)? })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::catalog::{CatalogProvider, MemorySchemaProvider, SchemaProvider};
    use datafusion::datasource::MemTable;
    use datafusion::execution::runtime_env::RuntimeEnv;

    use super::plan::{LakeTable, Loaded, TableShape};
    use super::*;
    use crate::limits::Limits;

    fn empty(fields: Vec<Field>) -> Arc<MemTable> {
        Arc::new(MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]]).unwrap())
    }

    /// `acme.items (id int PRIMARY KEY, name text)`, created again at LSN
    /// 40, as the service loads it: an empty changelog and snapshot table.
    fn loaded() -> Loaded {
        let utc = Some("+00:00".into());
        let changes = empty(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("tier", DataType::Utf8, true),
            Field::new("_op", DataType::Utf8, false),
            Field::new("_lsn", DataType::Int64, false),
            Field::new("_xid", DataType::Int64, false),
            Field::new("_commit_ts", DataType::Timestamp(TimeUnit::Microsecond, utc.clone()), false),
        ]);
        let snapshots = empty(vec![
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("committed_at", DataType::Timestamp(TimeUnit::Millisecond, utc), false),
            Field::new("lsn_to", DataType::Int64, true),
        ]);
        // `tier` added at LSN 60.
        let column = |name: &str, type_then: &str| lake::spec::ColumnThen {
            name: name.into(),
            field: Some(name.into()),
            type_then: type_then.into(),
            type_now: type_then.into(),
            source_type: None,
            nullable: None,
        };
        let version = |version: i64, lsn: u64, columns: Vec<lake::spec::ColumnThen>| lake::spec::ColumnsSince {
            version,
            lsn,
            at: lsn as i64 * 1_000_000,
            columns,
            key: vec!["id".into()],
            key_ids: vec![1],
        };
        let shape = TableShape {
            columns: vec!["id".into(), "name".into(), "tier".into()],
            primary_key: vec!["id".into()],
            relations: vec![(1, 0), (40, 1_700_000_000_000_000)],
            versions: vec![
                version(1, 1, vec![column("id", "int"), column("name", "string")]),
                version(2, 60, vec![column("id", "int"), column("name", "string"), column("tier", "string")]),
            ],
            ..TableShape::default()
        };
        let mut loaded = Loaded::default();
        loaded.tables.insert(("acme".into(), "items".into()), LakeTable { shape, changes, snapshots, checkpoints: None });
        loaded.all_tenants.insert("items".into(), vec!["acme".into()]);
        loaded
    }

    /// The query as DataFusion plans it over [`loaded`] (the raw tables
    /// registered as the service registers them).
    async fn planned(sql: &str) -> Result<String, QueryError> {
        let mut statement = parse(sql)?;
        let analysis = analyse(&mut statement, 100)?;
        let (ctx, catalog) = crate::session(&Limits::default(), Arc::new(RuntimeEnv::default()))?;
        let loaded = loaded();
        let acme = Arc::new(MemorySchemaProvider::new());
        for ((_, table), lake) in &loaded.tables {
            acme.register_table(format!("{table}$changes"), lake.changes.clone())?;
            acme.register_table(format!("{table}$snapshots"), lake.snapshots.clone())?;
        }
        catalog.register_schema("acme", acme)?;
        let plan = plan::statement(&ctx, &catalog, statement, &analysis, &loaded).await?;
        // And it runs (over no rows; parameters as NULL).
        let shown = plan.display_indent().to_string();
        let parameters = plan.get_parameter_types()?.len();
        let plan = plan.with_param_values(vec![datafusion::common::ScalarValue::Int64(None); parameters])?;
        ctx.execute_logical_plan(plan).await?.collect().await?;
        Ok(shown)
    }

    /// What a query must become: fragments its plan holds (and ones it
    /// must not), or the error code it is refused with.
    enum Expect {
        Holds(Vec<String>, &'static [&'static str]),
        Refused(&'static str),
    }

    /// µs of 2026-01-01 00:00:00 UTC.
    const JAN_1_2026: i64 = 20454 * 86_400_000_000;

    /// The `AS OF` rewrite, case by case: each query as a client writes it,
    /// and what its plan must hold.
    #[tokio::test]
    async fn as_of_plans() {
        use Expect::*;
        let holds = |has: &[&str], lacks: &'static [&'static str]| Holds(has.iter().map(|s| s.to_string()).collect(), lacks);
        let jan_1 = format!("to_timestamp_micros(Int64({JAN_1_2026}))");
        let jan_1_noon_cet = format!("to_timestamp_micros(Int64({}))", JAN_1_2026 + 11 * 3_600_000_000);
        let cases: Vec<(&str, Expect)> = vec![
            // Each version clause keeps what it names.
            ("SELECT * FROM acme.items VERSION AS OF 7", holds(&["_lsn <= Int64(7)", "SubqueryAlias: items"], &[])),
            ("SELECT * FROM acme.items FOR SYSTEM_TIME AS OF '2026-01-01'", holds(&[&jan_1, "_commit_ts <= "], &[])),
            ("SELECT * FROM acme.items TIMESTAMP AS OF '2026-01-01T00:00:00Z'", holds(&[&jan_1], &[])),
            ("SELECT * FROM acme.items TIMESTAMP AS OF '2026-01-01 12:00:00+01'", holds(&[&jan_1_noon_cet], &[])),
            // An expression bound is left to DataFusion, in microseconds; a parameter too.
            (
                "SELECT * FROM acme.items FOR SYSTEM_TIME AS OF now() - INTERVAL '1 hour'",
                holds(&["to_timestamp_micros(now() - IntervalMonthDayNano"], &[]),
            ),
            ("SELECT * FROM acme.items VERSION AS OF $1", holds(&["_lsn <= $1"], &[])),
            // Two references, two bounds, each its own alias.
            (
                "SELECT * FROM acme.items VERSION AS OF 7 JOIN acme.items FOR SYSTEM_TIME AS OF '2026-01-01' AS b ON true",
                holds(&["_lsn <= Int64(7)", &jan_1, "SubqueryAlias: b"], &[]),
            ),
            // A reference in a subquery, a CTE or a predicate is planned too.
            ("SELECT * FROM (SELECT id FROM acme.items VERSION AS OF 3) AS s", holds(&["_lsn <= Int64(3)"], &[])),
            ("WITH x AS (SELECT * FROM acme.items VERSION AS OF 3) SELECT * FROM x", holds(&["_lsn <= Int64(3)"], &[])),
            (
                "SELECT * FROM acme.items WHERE id IN (SELECT id FROM acme.items VERSION AS OF 5)",
                holds(&["_lsn <= Int64(5)"], &[]),
            ),
            // The changelog and the snapshots within a bound; raw without one.
            ("SELECT * FROM acme.\"items$changes\" VERSION AS OF 9", holds(&["Filter: acme.items$changes._lsn <= Int64(9)"], &[])),
            ("SELECT * FROM acme.\"items$changes\"", holds(&["TableScan: acme.items$changes"], &["Filter"])),
            ("SELECT * FROM acme.\"items$snapshots\" VERSION AS OF 9", holds(&["lsn_to <= Int64(9)"], &[])),
            // A state without a bound: the latest change per key, deletes
            // dropped, nothing before the latest truncate or drop.
            (
                "SELECT * FROM acme.items",
                holds(&["max(__m._lsn)", "__c._op != Utf8(\"delete\")", "IN ([Utf8(\"truncate\"), Utf8(\"drop\")])"], &[]),
            ),
            // The relation current at the bound: an earlier table of the same name is cut off.
            ("SELECT * FROM acme.items VERSION AS OF 50", holds(&["WHEN Int64(50) >= Int64(40) THEN Int64(39)"], &[])),
            ("SELECT * FROM all_tenants.items", holds(&["Utf8(\"acme\") AS tenant"], &[])),
            // Refusals.
            ("WITH x AS (SELECT 1) SELECT * FROM x TIMESTAMP AS OF '2026-01-01'", Refused("invalid_sql")),
            ("SELECT * FROM acme.items AT(TIMESTAMP => '2026-01-01')", Refused("invalid_sql")),
            ("SELECT * FROM acme.items TIMESTAMP AS OF 'yesterday'", Refused("invalid_sql")),
            ("SELECT * FROM acme.items VERSION AS OF 99999999999999999999", Refused("invalid_argument")),
            ("SELECT * FROM acme.\"items$checkpoint@10\" VERSION AS OF 3", Refused("invalid_sql")),
            ("SELECT * FROM all_tenants.\"items$changes\"", Refused("invalid_sql")),
            ("SELECT * FROM acme.nothing VERSION AS OF 3", Refused("not_found")),
            ("SELECT * FROM all_tenants.nothing", Refused("not_found")),
            ("DROP TABLE acme.items", Refused("invalid_sql")),
            ("SELECT 1; SELECT 2", Refused("invalid_sql")),
            // table_diff: two states joined; LSNs must fit the changelog.
            ("SELECT * FROM table_diff('acme.items', 1, '2026-01-01')", holds(&["Full Join", "SubqueryAlias: table_diff"], &[])),
            // Between two schema versions: each side has its columns.
            ("SELECT change, id, after.tier FROM table_diff('acme.items', 10, 70)", holds(&["named_struct(Utf8(\"id\")"], &[])),
            ("SELECT * FROM table_diff('acme.items', 1)", Refused("invalid_sql")),
            ("SELECT * FROM table_diff('items', 1, 2)", Refused("invalid_sql")),
            ("SELECT * FROM table_diff('acme.items', 1, 99999999999999999999)", Refused("invalid_argument")),
            ("SELECT * FROM table_diff('acme.items', 1, 'soon')", Refused("invalid_sql")),
        ];
        for (sql, expect) in cases {
            match (planned(sql).await, expect) {
                (Ok(plan), Holds(has, lacks)) => {
                    for fragment in has {
                        assert!(plan.contains(&fragment), "{sql}\n  should hold {fragment}\n  became\n{plan}");
                    }
                    for fragment in lacks {
                        assert!(!plan.contains(fragment), "{sql}\n  should not hold {fragment}\n  became\n{plan}");
                    }
                    // Every plan put in place of its factor: none is left to a view.
                    assert!(!plan.contains(&format!("TableScan: {}", plan::SCHEMA)), "{sql}: a factor not inlined:\n{plan}");
                }
                (Err(err), Refused(code)) => assert_eq!(err.code(), code, "{sql}: {err}"),
                (Ok(plan), Refused(code)) => panic!("{sql}: expected {code}, became\n{plan}"),
                (Err(err), Holds(..)) => panic!("{sql}: refused: {err}"),
            }
        }
    }

    #[tokio::test]
    async fn growth_and_activity_count_their_buckets_before_anything_loads() {
        let err = planned("SELECT * FROM growth('acme.items', '2000-01-01', '2200-01-01', '1 second')").await.unwrap_err();
        assert_eq!(err.code(), "too_many_buckets", "{err}");
        assert!(err.to_string().contains("limit of 100 (--query-max-buckets)"), "{err}");
        // Refused by the analysis alone: nothing is loaded for it.
        let mut statement = parse("SELECT * FROM growth('items', '2000-01-01', '2200-01-01', '1 second')").unwrap();
        assert!(matches!(analyse(&mut statement, 100), Err(RewriteError::Limit(QueryError::TooManyBuckets { .. }))));
        let plan = planned("SELECT * FROM activity('acme.items', '2026-01-01', '2026-01-05', '1 day')").await.unwrap();
        assert!(plan.contains("tidelake_buckets("), "{plan}");
        for (start, end, interval) in [
            ("'2026-01-02'", "'2026-01-01'", "'1 day'"),
            ("'2026-01-01'", "'2026-01-02'", "'0 days'"),
            ("'2026-01-01'", "'2026-01-02'", "'-1 hour'"),
            ("'2026-01-01'", "'2026-01-02'", "'often'"),
            ("'1600-01-01'", "'2026-01-02'", "'1 year'"),
            ("'2026-01-01'", "'9999-01-01'", "'1 year'"),
        ] {
            let query = format!("SELECT * FROM growth('acme.items', {start}, {end}, {interval})");
            let err = planned(&query).await.unwrap_err();
            assert_eq!(err.code(), "invalid_argument", "{query}: {err}");
        }
        // Expressions are counted when they run (by tidelake_buckets).
        assert!(planned("SELECT * FROM growth('acme.items', now() - INTERVAL '1 day', now(), '1 hour')").await.is_ok());
        // Across tenants, each with its name.
        let plan = planned("SELECT * FROM growth('items', '2026-01-01', '2026-01-05', '1 day')").await.unwrap();
        assert!(plan.contains("Utf8(\"acme\") AS tenant"), "{plan}");
    }

    /// Every way a query names a table goes through `lake::spec::query_name`.
    #[test]
    fn table_names_are_read_as_lake_names() {
        let lake_tables = |sql: &str| {
            let mut statement = parse(sql).unwrap();
            let needs = analyse(&mut statement, 100).unwrap().needs;
            let mut names: Vec<String> = needs.tables.into_iter().map(|(_, t)| t).collect();
            names.extend(needs.all_tenants);
            names
        };
        assert_eq!(lake_tables("SELECT * FROM acme.todos"), ["todos"]);
        assert_eq!(lake_tables("SELECT * FROM acme.Todos"), ["todos"]);
        assert_eq!(lake_tables("SELECT * FROM acme.\"Todos\""), ["-54odos"]);
        assert_eq!(lake_tables("SELECT * FROM acme.billing__items"), ["billing__items"]);
        assert_eq!(lake_tables("SELECT * FROM acme.\"../othertenant/todos$changes\""), ["-2e-2e-2fothertenant-2ftodos"]);
        assert_eq!(lake_tables("SELECT * FROM acme.\"price$history\""), ["price-24history"]);
        assert_eq!(lake_tables("SELECT * FROM all_tenants.\"Todos\""), ["-54odos"]);
        assert_eq!(lake_tables("SELECT * FROM table_diff('acme.Todos', 1, 2)"), ["-54odos"]);
        assert_eq!(
            lake_tables("SELECT * FROM growth('a b', '2026-01-01', '2026-01-02', '1 day')"),
            ["a-20b"]
        );
    }
}
