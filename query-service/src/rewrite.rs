//! Lake table references and time travel. Every reference to a lake table
//! is replaced, before DataFusion plans the query, by the query that
//! computes it with its `AS OF` bound applied — so a version clause is
//! never dropped: it is applied, or the query is refused.
//!
//! - `<tenant>.<table>`: the table's state, from its changelog: per primary
//!   key the latest change within the bound, deletes dropped, nothing
//!   before the latest truncate.
//! - `<tenant>."<table>$changes"`: the changelog within the bound.
//! - `<tenant>."<table>$snapshots"`: the Iceberg snapshots within the bound.
//! - `all_tenants.<table>`: the state of every tenant having the table, by
//!   column name (a column a tenant lacks is NULL), with a `tenant` column.
//!
//! - `table_diff('<tenant>.<table>', <from>, <to>)`: rows added, removed
//!   and changed between two instants or LSNs.
//!
//! Bounds: `FOR SYSTEM_TIME AS OF <timestamp>` and `TIMESTAMP AS OF
//! <timestamp>` keep changes committed at or before the instant; `VERSION
//! AS OF <lsn>` keeps changes up to that LSN.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart, TableFunctionArgs, Value, ValueWithSpan, Query, Statement, TableAlias, TableFactor, TableVersion, VisitMut, VisitorMut,
};
use datafusion::arrow::datatypes::IntervalMonthDayNano;
use datafusion::sql::sqlparser::parser::Parser;

use lake::spec::ColumnsSince;
use model::sql::quote_ident;

use crate::dialect::LakeDialect;
use crate::error::QueryError;
use crate::limits::buckets;

/// The schema name of the cross-tenant views.
pub const ALL_TENANTS: &str = "all_tenants";

/// What a query reads from the lake, to be loaded before it is rewritten.
#[derive(Debug, Default)]
pub struct Needs {
    /// (tenant, table) pairs.
    pub tables: BTreeSet<(String, String)>,
    /// Tables read across all tenants.
    pub all_tenants: BTreeSet<String>,
}

/// What the rewrite needs to know of one lake table.
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
    /// The changelog's fields as its scans read them: (field id, name,
    /// Iceberg type), in order.
    pub fields: Vec<(i32, String, String)>,
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
    /// Its fields: field id → (name, Iceberg type).
    pub fields: BTreeMap<i32, (String, String)>,
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

    /// The columns the state has at `bound` — (select expression over
    /// `"__c"`, name) — and its key (names), as of the schema version in
    /// force then. Bounds that are expressions (not literals) take the
    /// current columns.
    fn columns_at(&self, bound: &Bound) -> (Vec<(String, String)>, Vec<String>) {
        let current = || {
            let columns = self.columns.iter().map(|c| (format!("\"__c\".{}", quote_ident(c)), c.clone())).collect();
            (columns, self.primary_key.clone())
        };
        let Some(entry) = self.version_at(bound) else { return current() };
        let columns = entry
            .columns
            .iter()
            .map(|c| {
                let field = c.field.as_ref().map_or_else(|| "NULL".to_owned(), |f| format!("\"__c\".{}", quote_ident(f)));
                // Under its type then: a field promoted since (an `int` now
                // `bigint`), or the NULL of a column no data holds yet.
                let cast = (c.field.is_none() || c.type_now != c.type_then).then(|| sql_type(&c.type_then)).flatten();
                let expr = match cast {
                    Some(t) => format!("CAST({field} AS {t})"),
                    None => field,
                };
                (expr, c.name.clone())
            })
            .collect();
        (columns, entry.key.clone())
    }
}

/// The SQL type of an Iceberg type (its `to_string` form).
fn sql_type(iceberg: &str) -> Option<String> {
    let simple = match iceberg {
        "boolean" => "BOOLEAN",
        "int" => "INT",
        "long" => "BIGINT",
        "float" => "REAL",
        "double" => "DOUBLE",
        "date" => "DATE",
        "time" => "TIME",
        "timestamp" => "TIMESTAMP",
        "timestamptz" => "TIMESTAMP WITH TIME ZONE",
        "string" | "uuid" => "VARCHAR",
        "binary" => "BYTEA",
        _ => {
            let inner = iceberg.strip_prefix("decimal(")?.strip_suffix(')')?;
            let (p, s) = inner.split_once(',')?;
            return Some(format!("DECIMAL({}, {})", p.trim(), s.trim()));
        }
    };
    Some(simple.to_owned())
}

/// A literal bound.
enum Point {
    Lsn(u64),
    Micros(i64),
}

/// The loaded lake tables: (tenant, table) → shape; and per cross-tenant
/// table the tenants having it.
#[derive(Debug, Default)]
pub struct Loaded {
    pub tables: BTreeMap<(String, String), TableShape>,
    pub all_tenants: BTreeMap<String, Vec<String>>,
    /// Checkpoints the rewritten query reads: (tenant, table, checkpoint
    /// LSN) → its snapshot, to be registered as `<table>$checkpoint@<lsn>`.
    pub checkpoints_read: CheckpointsRead,
}

/// (tenant, table, checkpoint LSN) → the checkpoint's snapshot id.
pub type CheckpointsRead = std::cell::RefCell<BTreeMap<(String, String, u64), i64>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    State,
    Changes,
    Snapshots,
    /// A state checkpoint, as the rewrite itself reads it.
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
fn normalized(part: &ObjectNamePart) -> Option<String> {
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
    #[error("rewritten query does not parse ({cause}): {sql}")]
    Unparsable { sql: String, cause: datafusion::sql::sqlparser::parser::ParserError },
}

impl From<RewriteError> for QueryError {
    fn from(err: RewriteError) -> Self {
        match err {
            RewriteError::Limit(err) => err,
            RewriteError::NotAnLsn(_) => Self::InvalidArgument(err.to_string()),
            RewriteError::NoTable { .. } | RewriteError::NoTenantHas(_) => Self::NotFound(err.to_string()),
            RewriteError::KeyNotAColumn { .. } | RewriteError::Unparsable { .. } => Self::Internal(err.to_string()),
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
                // Registered by the rewrite that reads it.
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

/// Replace every lake reference and table function by its query, as
/// `analysis` read them. A factor is replaced once its own children have
/// been visited, so the queries put in are not visited again.
pub fn rewrite(statement: &mut Statement, analysis: &Analysis, loaded: &Loaded) -> Result<(), RewriteError> {
    struct Rewrite<'a> {
        sites: std::slice::Iter<'a, Site>,
        open: Vec<&'a Site>,
        loaded: &'a Loaded,
        error: Option<RewriteError>,
    }
    impl Rewrite<'_> {
        fn replace(&self, site: &Site, factor: &mut TableFactor) -> Result<(), RewriteError> {
            let TableFactor::Table { alias, .. } = factor else { unreachable!("only tables are sites") };
            let (sql, default_alias) = match site {
                Site::Keep => return Ok(()),
                Site::Function { call, name } => (call.sql(self.loaded)?, Ident::new(name)),
                Site::Lake { reference: r, bound } => {
                    let sql = match r.kind {
                        _ if r.tenant == ALL_TENANTS => all_tenants_sql(self.loaded, &r.table, bound)?,
                        Kind::State => {
                            let shape = self.loaded.tables.get(&(r.tenant.clone(), r.table.clone()));
                            let shape = shape.ok_or_else(|| no_table(&r.tenant, &r.table))?;
                            state_sql(&r.tenant, &r.table, shape, bound, None, Some(&self.loaded.checkpoints_read))?
                        }
                        Kind::Changes => format!(
                            "SELECT * FROM {} WHERE {}",
                            qualified(&r.tenant, &format!("{}$changes", r.table)),
                            bound.changes()
                        ),
                        Kind::Snapshots => format!(
                            "SELECT * FROM {} WHERE {}",
                            qualified(&r.tenant, &format!("{}$snapshots", r.table)),
                            bound.snapshots()
                        ),
                        Kind::Checkpoint => unreachable!("a checkpoint is never a lake site"),
                    };
                    (sql, Ident::with_quote('"', r.table.clone()))
                }
            };
            let subquery = parse_query(&sql)?;
            let alias = alias.clone().unwrap_or(TableAlias { explicit: true, name: default_alias, columns: Vec::new() });
            *factor = TableFactor::Derived { lateral: false, subquery, alias: Some(alias), sample: None };
            Ok(())
        }
    }
    impl<'a> VisitorMut for Rewrite<'a> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if matches!(factor, TableFactor::Table { .. }) {
                let site = self.sites.next().expect("the statement analysed");
                self.open.push(site);
            }
            ControlFlow::Continue(())
        }
        fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if !matches!(factor, TableFactor::Table { .. }) {
                return ControlFlow::Continue(());
            }
            let site = self.open.pop().expect("visited before");
            match self.replace(site, factor) {
                Ok(()) => ControlFlow::Continue(()),
                Err(err) => {
                    self.error = Some(err);
                    ControlFlow::Break(())
                }
            }
        }
    }
    let mut visit = Rewrite { sites: analysis.sites.iter(), open: Vec::new(), loaded, error: None };
    let _ = statement.visit(&mut visit);
    match visit.error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

fn no_table(tenant: &str, table: &str) -> RewriteError {
    RewriteError::NoTable { tenant: tenant.to_owned(), table: table.to_owned() }
}

fn parse_query(sql: &str) -> Result<Box<Query>, RewriteError> {
    Parser::new(&LakeDialect::default())
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_query())
        .map_err(|cause| RewriteError::Unparsable { sql: sql.to_owned(), cause })
}

fn qualified(tenant: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(tenant), quote_ident(table))
}

enum Bound {
    Now,
    /// A microsecond timestamp expression.
    Instant(String),
    Lsn(String),
}

impl Bound {
    fn of(version: Option<&TableVersion>) -> Result<Self, RewriteError> {
        Ok(match version {
            None => Self::Now,
            Some(TableVersion::ForSystemTimeAsOf(e) | TableVersion::TimestampAsOf(e)) => Self::Instant(instant(e)?),
            Some(TableVersion::VersionAsOf(e)) => Self::Lsn(e.to_string()),
            Some(TableVersion::Function(e)) => return Err(RewriteError::UnsupportedVersionClause(e.to_string())),
        })
    }

    /// The bound's value when it is a literal.
    fn literal(&self) -> Option<Point> {
        match self {
            Self::Now => None,
            Self::Lsn(e) => e.trim().parse().ok().map(Point::Lsn),
            Self::Instant(e) => {
                e.strip_prefix("to_timestamp_micros(")?.strip_suffix(')')?.parse().ok().map(Point::Micros)
            }
        }
    }

    fn changes(&self) -> String {
        match self {
            Self::Now => "TRUE".to_owned(),
            Self::Instant(e) => format!("\"_commit_ts\" <= {e}"),
            Self::Lsn(e) => format!("\"_lsn\" <= ({e})"),
        }
    }

    /// The LSN before the relation current at the bound starts: changes of
    /// earlier relations of the same name (a table dropped and created
    /// again) are not part of the state.
    fn relation_cut(&self, relations: &[(u64, i64)]) -> String {
        let mut cases = Vec::new();
        for (lsn, micros) in relations.iter().rev() {
            let reached = match self {
                Self::Now => "TRUE".to_owned(),
                Self::Instant(e) => format!("{e} >= to_timestamp_micros({micros})"),
                Self::Lsn(e) => format!("({e}) >= {lsn}"),
            };
            cases.push(format!("WHEN {reached} THEN {}", lsn.saturating_sub(1)));
        }
        if cases.is_empty() { "0".to_owned() } else { format!("CAST(CASE {} ELSE 0 END AS BIGINT)", cases.join(" ")) }
    }

    fn snapshots(&self) -> String {
        match self {
            Self::Now => "TRUE".to_owned(),
            Self::Instant(e) => format!("\"committed_at\" <= {e}"),
            Self::Lsn(e) => format!("\"lsn_to\" <= ({e})"),
        }
    }
}

/// An instant as a microsecond timestamp expression, like the changelog's
/// (DataFusion reads timestamp strings as nanoseconds, which end in 2262):
/// a string literal is read here — `YYYY-MM-DD[ HH:MM:SS[.ffffff]][±HH[:MM]]`,
/// `T` and `Z` accepted, UTC without an offset — any other expression is
/// converted by DataFusion.
fn instant(e: &Expr) -> Result<String, RewriteError> {
    match literal_micros(e)? {
        Some(micros) => Ok(format!("to_timestamp_micros({micros})")),
        None => Ok(format!("to_timestamp_micros({e})")),
    }
}

/// A string literal instant in microseconds since the epoch (None: not a literal).
fn literal_micros(e: &Expr) -> Result<Option<i64>, RewriteError> {
    let Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(text), .. }) = e else {
        return Ok(None);
    };
    let micros = model::parse_instant(text).ok_or_else(|| RewriteError::NotATimestamp(text.clone()))?;
    Ok(Some(micros))
}

/// The state of one table within the bound: the latest change of each key
/// (found by a grouped `max(_lsn)` and joined back: a hash aggregate rather
/// than a sort of the whole history), unless it is a delete, after the
/// latest truncate or drop.
fn state_sql(
    tenant: &str,
    table: &str,
    shape: &TableShape,
    bound: &Bound,
    tenant_column: Option<&str>,
    checkpoints_read: Option<&CheckpointsRead>,
) -> Result<String, RewriteError> {
    let (columns, key) = shape.columns_at(bound);
    if key.is_empty() {
        return Err(RewriteError::NoPrimaryKey { tenant: tenant.to_owned(), table: table.to_owned() });
    }
    let changes = qualified(tenant, &format!("{table}$changes"));
    // The key's fields, by the names the columns have at the bound.
    let key: Vec<String> = key
        .iter()
        .map(|k| {
            columns
                .iter()
                .find(|(_, name)| name == k)
                .map(|(expr, _)| expr.replacen("\"__c\".", "", 1))
                .ok_or_else(|| RewriteError::KeyNotAColumn {
                    tenant: tenant.to_owned(),
                    table: table.to_owned(),
                    column: k.clone(),
                })
        })
        .collect::<Result<_, _>>()?;
    let columns: Vec<String> = columns.iter().map(|(expr, name)| format!("{expr} AS {}", quote_ident(name))).collect();
    let within = bound.changes();
    // From the newest checkpoint the bound allows, and the changes after it.
    let changes = match shape.checkpoint_for(bound) {
        None => changes,
        Some(cp) => {
            if let Some(read) = checkpoints_read {
                read.borrow_mut().insert((tenant.to_owned(), table.to_owned(), cp.lsn), cp.snapshot_id);
            }
            let from_changes: Vec<String> = shape.fields.iter().map(|(_, name, _)| quote_ident(name)).collect();
            let from_checkpoint: Vec<String> = shape
                .fields
                .iter()
                .map(|(id, name, ty)| {
                    let cast = |expr: String| match sql_type(ty) {
                        Some(t) => format!("CAST({expr} AS {t})"),
                        None => expr,
                    };
                    let expr = match cp.fields.get(id) {
                        Some((then, ty_then)) if ty_then == ty => quote_ident(then),
                        Some((then, _)) => cast(quote_ident(then)),
                        None => cast("NULL".to_owned()),
                    };
                    format!("{expr} AS {}", quote_ident(name))
                })
                .collect();
            format!(
                "(SELECT {} FROM {} UNION ALL SELECT {} FROM {changes} WHERE \"_lsn\" > {})",
                from_checkpoint.join(", "),
                qualified(tenant, &format!("{table}$checkpoint@{}", cp.lsn)),
                from_changes.join(", "),
                cp.lsn,
            )
        }
    };
    let relation_cut = bound.relation_cut(&shape.relations);
    let select = match tenant_column {
        Some(t) => format!("'{}' AS \"tenant\", {}", t.replace('\'', "''"), columns.join(", ")),
        None => columns.join(", "),
    };
    Ok(format!(
        "SELECT {select} FROM {changes} AS \"__c\" JOIN (\
           SELECT max(\"_lsn\") AS \"__last\" FROM {changes} AS \"__m\" WHERE ({within}) AND \"_lsn\" > greatest(\
             (SELECT coalesce(max(\"_lsn\"), 0) FROM {changes} AS \"__t\" WHERE \"_op\" IN ('truncate', 'drop') AND ({within})), {relation_cut}) \
           GROUP BY {key}\
         ) AS \"__latest\" ON \"__c\".\"_lsn\" = \"__latest\".\"__last\" \
         WHERE ({within}) AND \"__c\".\"_op\" <> 'delete'",
        key = key.join(", "),
    ))
}

fn all_tenants_sql(loaded: &Loaded, table: &str, bound: &Bound) -> Result<String, RewriteError> {
    let tenants = loaded
        .all_tenants
        .get(table)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RewriteError::NoTenantHas(table.to_owned()))?;
    let parts = tenants
        .iter()
        .map(|tenant| {
            let shape = loaded
                .tables
                .get(&(tenant.clone(), table.to_owned()))
                .ok_or_else(|| no_table(tenant, table))?;
            state_sql(tenant, table, shape, bound, Some(tenant), Some(&loaded.checkpoints_read)).map(|sql| format!("({sql})"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join(" UNION ALL BY NAME "))
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

    fn sql(&self, loaded: &Loaded) -> Result<String, RewriteError> {
        match self {
            Self::Diff(call) => {
                let shape = loaded.tables.get(&(call.tenant.clone(), call.table.clone()));
                diff_sql(call, shape.ok_or_else(|| no_table(&call.tenant, &call.table))?, loaded)
            }
            Self::Series(call) => call.sql(loaded),
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
    start: String,
    end: String,
    interval: String,
    /// The bounds in µs where they are literals, and the interval: enough
    /// to count the buckets before anything runs.
    literal_start: Option<i64>,
    literal_end: Option<i64>,
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
        let (literal_start, literal_end) = (literal_micros(start)?, literal_micros(end)?);
        for micros in [literal_start, literal_end].into_iter().flatten() {
            buckets::instant(series.name(), micros).map_err(RewriteError::Limit)?;
        }
        Ok(Self {
            series,
            tenant,
            table,
            start: instant(start)?,
            end: instant(end)?,
            step: buckets::interval(series.name(), interval).map_err(RewriteError::Limit)?,
            interval: interval.replace('\'', "''"),
            literal_start,
            literal_end,
        })
    }

    /// Refuse more than `cap` buckets when the bounds are literals (when
    /// they are expressions, [`buckets::FUNCTION`] does as it runs).
    fn check(&self, cap: u64) -> Result<(), RewriteError> {
        if let (Some(start), Some(end)) = (self.literal_start, self.literal_end) {
            buckets::check(self.series.name(), start, end, self.step, cap).map_err(RewriteError::Limit)?;
        }
        Ok(())
    }

    fn sql(&self, loaded: &Loaded) -> Result<String, RewriteError> {
        let tenants = match &self.tenant {
            Some(tenant) => vec![tenant.clone()],
            None => loaded.all_tenants.get(&self.table).cloned().unwrap_or_default(),
        };
        if tenants.is_empty() {
            return Err(RewriteError::NoTenantHas(self.table.clone()));
        }
        let parts = tenants
            .iter()
            .map(|tenant| {
                if !loaded.tables.contains_key(&(tenant.clone(), self.table.clone())) {
                    return Err(no_table(tenant, &self.table));
                }
                let changes = qualified(tenant, &format!("{}$changes", self.table));
                let name = format!("'{}'", tenant.replace('\'', "''"));
                Ok(match self.series {
                    Series::Growth => self.growth_sql(&name, &changes),
                    Series::Activity => self.activity_sql(&name, &changes),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(parts.join(" UNION ALL "))
    }

    fn buckets(&self) -> String {
        format!(
            "SELECT unnest({}({}, {}, INTERVAL '{}')) AS \"at\"",
            buckets::FUNCTION,
            self.start,
            self.end,
            self.interval
        )
    }

    /// Rows at each instant: inserts less deletes since the latest truncate
/// (or drop: a dropped table holds nothing).
    fn growth_sql(&self, tenant: &str, changes: &str) -> String {
        format!(
            "SELECT {tenant} AS \"tenant\", \"__cut\".\"at\", \
               coalesce(sum(CASE \"__c\".\"_op\" WHEN 'insert' THEN 1 WHEN 'delete' THEN -1 ELSE 0 END), 0) AS \"rows\" \
             FROM (SELECT \"__b\".\"at\", coalesce(max(\"__t\".\"_lsn\"), 0) AS \"cut\" \
                   FROM ({buckets}) AS \"__b\" LEFT JOIN {changes} AS \"__t\" \
                     ON \"__t\".\"_op\" IN ('truncate', 'drop') AND \"__t\".\"_commit_ts\" <= \"__b\".\"at\" \
                   GROUP BY \"__b\".\"at\") AS \"__cut\" \
             LEFT JOIN {changes} AS \"__c\" \
               ON \"__c\".\"_commit_ts\" <= \"__cut\".\"at\" AND \"__c\".\"_lsn\" > \"__cut\".\"cut\" \
             GROUP BY \"__cut\".\"at\"",
            buckets = self.buckets(),
        )
    }

    /// Changes of each kind in each interval.
    fn activity_sql(&self, tenant: &str, changes: &str) -> String {
        let count = |op: &str| format!("count(\"__c\".\"_op\") FILTER (WHERE \"__c\".\"_op\" = '{op}') AS \"{op}s\"");
        format!(
            "SELECT {tenant} AS \"tenant\", \"__b\".\"at\", {inserts}, {updates}, {deletes}, {truncates}, {drops} \
             FROM ({buckets}) AS \"__b\" LEFT JOIN {changes} AS \"__c\" \
               ON \"__c\".\"_commit_ts\" >= \"__b\".\"at\" AND \"__c\".\"_commit_ts\" < \"__b\".\"at\" + INTERVAL '{interval}' \
             WHERE \"__b\".\"at\" < {end} \
             GROUP BY \"__b\".\"at\"",
            buckets = self.buckets(),
            inserts = count("insert"),
            updates = count("update"),
            deletes = count("delete"),
            truncates = count("truncate"),
            drops = count("drop"),
            interval = self.interval,
            end = self.end,
        )
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
                Expr::Value(ValueWithSpan { value: Value::Number(n, _), .. }) => Ok(Bound::Lsn(lsn(n)?)),
                other => Ok(Bound::Instant(instant(other)?)),
            }
        };
        Ok(Self { tenant: tenant.to_owned(), table: lake_table(table.to_owned()), from: bound(from)?, to: bound(to)? })
    }
}

/// An LSN as a client wrote it: a whole number the changelog's `_lsn` can hold.
pub fn lsn(text: &str) -> Result<String, RewriteError> {
    match text.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n.to_string()),
        _ => Err(RewriteError::NotAnLsn(text.to_owned())),
    }
}

/// Rows added, removed and changed between the two states, by primary key:
/// `change`, the key columns, and `before` / `after` (each row's values as
/// a struct; NULL on the side where the row does not exist).
fn diff_sql(call: &DiffCall, shape: &TableShape, loaded: &Loaded) -> Result<String, RewriteError> {
    let before = state_sql(&call.tenant, &call.table, shape, &call.from, None, Some(&loaded.checkpoints_read))?;
    let after = state_sql(&call.tenant, &call.table, shape, &call.to, None, Some(&loaded.checkpoints_read))?;
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
        });
    }
    let names = |columns: Vec<(String, String)>| columns.into_iter().map(|(_, name)| name).collect::<Vec<_>>();
    let (before_columns, after_columns) = (names(before_columns), names(after_columns));
    let side = |alias: &str, c: &str| format!("\"{alias}\".{}", quote_ident(c));
    let first_key = &key[0];
    let keys: Vec<String> =
        key.iter().map(|k| format!("coalesce({}, {}) AS {}", side("__before", k), side("__after", k), quote_ident(k))).collect();
    let joined: Vec<String> = key.iter().map(|k| format!("{} = {}", side("__before", k), side("__after", k))).collect();
    let row = |alias: &str, columns: &[String]| {
        let fields: Vec<String> = columns.iter().map(|c| format!("'{}', {}", c.replace('\'', "''"), side(alias, c))).collect();
        format!("CASE WHEN {} IS NULL THEN NULL ELSE named_struct({}) END", side(alias, first_key), fields.join(", "))
    };
    // A row differs if a column both sides have differs, or if the columns do.
    let mut differs: Vec<String> = after_columns
        .iter()
        .filter(|c| before_columns.contains(c))
        .map(|c| format!("({} IS DISTINCT FROM {})", side("__before", c), side("__after", c)))
        .collect();
    if before_columns != after_columns {
        differs.push("TRUE".into());
    }
    Ok(format!(
        "SELECT CASE WHEN {b} IS NULL THEN 'added' WHEN {a} IS NULL THEN 'removed' ELSE 'changed' END AS \"change\", \
         {keys}, {row_before} AS \"before\", {row_after} AS \"after\" \
         FROM ({before}) AS \"__before\" FULL OUTER JOIN ({after}) AS \"__after\" ON {joined} \
         WHERE ({b} IS NULL) OR ({a} IS NULL) OR {differs}",
        b = side("__before", first_key),
        a = side("__after", first_key),
        keys = keys.join(", "),
        row_before = row("__before", &before_columns),
        row_after = row("__after", &after_columns),
        joined = joined.join(" AND "),
        differs = differs.join(" OR "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded() -> Loaded {
        let mut loaded = Loaded::default();
        let shape = TableShape {
            columns: vec!["id".into(), "name".into()],
            primary_key: vec!["id".into()],
            relations: vec![(1, 0), (40, 1_700_000_000_000_000)],
            versions: Vec::new(),
            ..TableShape::default()
        };
        loaded.tables.insert(("acme".into(), "items".into()), shape);
        loaded
    }

    fn rewritten(sql: &str) -> Result<String, QueryError> {
        let mut statement = parse(sql)?;
        let analysis = analyse(&mut statement, 100)?;
        rewrite(&mut statement, &analysis, &loaded())?;
        Ok(statement.to_string())
    }

    /// What a query must become: fragments its rewritten SQL holds (and
    /// ones it must not), or the error code it is refused with.
    enum Expect {
        Holds(Vec<String>, &'static [&'static str]),
        Refused(&'static str),
    }

    /// µs of 2026-01-01 00:00:00 UTC.
    const JAN_1_2026: i64 = 20454 * 86_400_000_000;

    /// The `AS OF` rewrite, case by case: each query as a client writes it,
    /// and what it must become.
    #[test]
    fn as_of_rewrites() {
        use Expect::*;
        let holds = |has: &[&str], lacks: &'static [&'static str]| Holds(has.iter().map(|s| s.to_string()).collect(), lacks);
        let jan_1 = format!("to_timestamp_micros({JAN_1_2026})");
        let jan_1_noon_cet = format!("to_timestamp_micros({})", JAN_1_2026 + 11 * 3_600_000_000);
        let cases: Vec<(&str, Expect)> = vec![
            // Each version clause keeps what it names.
            ("SELECT * FROM acme.items VERSION AS OF 7", holds(&["\"_lsn\" <= (7)", "AS \"items\""], &["AS OF"])),
            ("SELECT * FROM acme.items FOR SYSTEM_TIME AS OF '2026-01-01'", holds(&[&jan_1, "\"_commit_ts\" <= "], &["AS OF"])),
            ("SELECT * FROM acme.items TIMESTAMP AS OF '2026-01-01T00:00:00Z'", holds(&[&jan_1], &["AS OF"])),
            ("SELECT * FROM acme.items TIMESTAMP AS OF '2026-01-01 12:00:00+01'", holds(&[&jan_1_noon_cet], &[])),
            // An expression bound is left to DataFusion, in microseconds.
            (
                "SELECT * FROM acme.items FOR SYSTEM_TIME AS OF now() - INTERVAL '1 hour'",
                holds(&["to_timestamp_micros(now() - INTERVAL '1 hour')"], &["AS OF"]),
            ),
            // Two references, two bounds, each its own alias.
            (
                "SELECT * FROM acme.items VERSION AS OF 7 JOIN acme.items FOR SYSTEM_TIME AS OF '2026-01-01' AS b ON true",
                holds(&["\"_lsn\" <= (7)", &jan_1, "AS b"], &["AS OF"]),
            ),
            // A reference in a subquery, a CTE or a predicate is rewritten too.
            ("SELECT * FROM (SELECT id FROM acme.items VERSION AS OF 3) AS s", holds(&["\"_lsn\" <= (3)"], &["AS OF"])),
            ("WITH x AS (SELECT * FROM acme.items VERSION AS OF 3) SELECT * FROM x", holds(&["\"_lsn\" <= (3)"], &["AS OF"])),
            (
                "SELECT * FROM acme.items WHERE id IN (SELECT id FROM acme.items VERSION AS OF 5)",
                holds(&["\"_lsn\" <= (5)"], &["AS OF"]),
            ),
            // The changelog and the snapshots within a bound; raw without one.
            ("SELECT * FROM acme.\"items$changes\" VERSION AS OF 9", holds(&["\"items$changes\" WHERE \"_lsn\" <= (9)"], &[])),
            ("SELECT * FROM acme.\"items$changes\"", holds(&["FROM acme.\"items$changes\""], &["WHERE"])),
            ("SELECT * FROM acme.\"items$snapshots\" VERSION AS OF 9", holds(&["\"lsn_to\" <= (9)"], &[])),
            // A state without a bound: the latest change per key, deletes
            // dropped, nothing before the latest truncate or drop.
            ("SELECT * FROM acme.items", holds(&["max(\"_lsn\")", "<> 'delete'", "IN ('truncate', 'drop')"], &[])),
            // The relation current at the bound: an earlier table of the same name is cut off.
            ("SELECT * FROM acme.items VERSION AS OF 50", holds(&["WHEN (50) >= 40 THEN 39"], &[])),
            // Refusals.
            ("WITH x AS (SELECT 1) SELECT * FROM x TIMESTAMP AS OF '2026-01-01'", Refused("invalid_sql")),
            ("SELECT * FROM acme.items AT(TIMESTAMP => '2026-01-01')", Refused("invalid_sql")),
            ("SELECT * FROM acme.items TIMESTAMP AS OF 'yesterday'", Refused("invalid_sql")),
            ("SELECT * FROM acme.\"items$checkpoint@10\" VERSION AS OF 3", Refused("invalid_sql")),
            ("SELECT * FROM all_tenants.\"items$changes\"", Refused("invalid_sql")),
            ("SELECT * FROM acme.nothing VERSION AS OF 3", Refused("not_found")),
            ("SELECT * FROM all_tenants.items", Refused("not_found")),
            ("DROP TABLE acme.items", Refused("invalid_sql")),
            ("SELECT 1; SELECT 2", Refused("invalid_sql")),
            // table_diff: two states joined; LSNs must fit the changelog.
            ("SELECT * FROM table_diff('acme.items', 1, '2026-01-01')", holds(&["FULL JOIN", "AS table_diff"], &[])),
            ("SELECT * FROM table_diff('acme.items', 1)", Refused("invalid_sql")),
            ("SELECT * FROM table_diff('items', 1, 2)", Refused("invalid_sql")),
            ("SELECT * FROM table_diff('acme.items', 1, 99999999999999999999)", Refused("invalid_argument")),
            ("SELECT * FROM table_diff('acme.items', 1, 'soon')", Refused("invalid_sql")),
        ];
        for (sql, expect) in cases {
            match (rewritten(sql), expect) {
                (Ok(out), Holds(has, lacks)) => {
                    for fragment in has {
                        assert!(out.contains(&fragment), "{sql}\n  should hold {fragment}\n  became {out}");
                    }
                    for fragment in lacks {
                        assert!(!out.contains(fragment), "{sql}\n  should not hold {fragment}\n  became {out}");
                    }
                    // What the rewrite emits parses and is final: a second pass changes nothing.
                    let mut again = parse(&out).unwrap_or_else(|e| panic!("{sql}: rewritten query does not parse: {e}"));
                    let analysis = analyse(&mut again, 100).unwrap();
                    rewrite(&mut again, &analysis, &loaded()).unwrap();
                    assert_eq!(again.to_string(), out, "{sql}: a second rewrite changed it");
                }
                (Err(err), Refused(code)) => assert_eq!(err.code(), code, "{sql}: {err}"),
                (Ok(out), Refused(code)) => panic!("{sql}: expected {code}, became {out}"),
                (Err(err), Holds(..)) => panic!("{sql}: refused: {err}"),
            }
        }
    }

    #[test]
    fn growth_and_activity_count_their_buckets_before_anything_loads() {
        let err = rewritten("SELECT * FROM growth('acme.items', '2000-01-01', '2200-01-01', '1 second')").unwrap_err();
        assert_eq!(err.code(), "too_many_buckets", "{err}");
        assert!(err.to_string().contains("limit of 100 (--query-max-buckets)"), "{err}");
        // Refused by the analysis alone: nothing is loaded for it.
        let mut statement = parse("SELECT * FROM growth('items', '2000-01-01', '2200-01-01', '1 second')").unwrap();
        assert!(matches!(analyse(&mut statement, 100), Err(RewriteError::Limit(QueryError::TooManyBuckets { .. }))));
        let sql = rewritten("SELECT * FROM activity('acme.items', '2026-01-01', '2026-01-05', '1 day')").unwrap();
        assert!(sql.contains("tidelake_buckets("), "{sql}");
        for (start, end, interval) in [
            ("'2026-01-02'", "'2026-01-01'", "'1 day'"),
            ("'2026-01-01'", "'2026-01-02'", "'0 days'"),
            ("'2026-01-01'", "'2026-01-02'", "'-1 hour'"),
            ("'2026-01-01'", "'2026-01-02'", "'often'"),
            ("'1600-01-01'", "'2026-01-02'", "'1 year'"),
            ("'2026-01-01'", "'9999-01-01'", "'1 year'"),
        ] {
            let query = format!("SELECT * FROM growth('acme.items', {start}, {end}, {interval})");
            let err = rewritten(&query).unwrap_err();
            assert_eq!(err.code(), "invalid_argument", "{query}: {err}");
        }
        // Expressions are counted when they run (by tidelake_buckets).
        assert!(rewritten("SELECT * FROM growth('acme.items', now() - INTERVAL '1 day', now(), '1 hour')").is_ok());
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

    /// A state read starts from the newest checkpoint at or before a literal
    /// bound whose key is the key then, and reads the changes after it;
    /// expressions and other keys read the whole history.
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
            }],
            key: vec!["id".into()],
            key_ids: vec![key],
        };
        let checkpoint = |lsn: u64, at: i64, key: i32| CheckpointShape {
            lsn,
            at,
            key: vec![key],
            snapshot_id: lsn as i64 * 10,
            fields: BTreeMap::from([(key, ("id".to_owned(), "int".to_owned()))]),
        };
        let shape = TableShape {
            columns: vec!["id".into()],
            primary_key: vec!["id".into()],
            versions: vec![version(1, 0, 1), version(500, 5_000, 7)],
            fields: vec![(1, "id".into(), "int".into()), (10002, "_lsn".into(), "long".into())],
            checkpoints: vec![checkpoint(100, 1_000, 1), checkpoint(300, 3_000, 1), checkpoint(600, 6_000, 7)],
            ..TableShape::default()
        };
        let chosen = |bound: Bound| shape.checkpoint_for(&bound).map(|c| c.lsn);
        assert_eq!(chosen(Bound::Lsn("250".into())), Some(100));
        assert_eq!(chosen(Bound::Lsn("99".into())), None);
        assert_eq!(chosen(Bound::Instant("to_timestamp_micros(3500)".into())), Some(300));
        // The key changed at LSN 500: the checkpoints before it do not serve after it.
        assert_eq!(chosen(Bound::Lsn("550".into())), None);
        assert_eq!(chosen(Bound::Now), Some(600));
        assert_eq!(chosen(Bound::Instant("to_timestamp_micros(now())".into())), None);

        let read = CheckpointsRead::default();
        let sql = state_sql("acme", "items", &shape, &Bound::Lsn("250".into()), None, Some(&read)).unwrap();
        assert!(sql.contains("\"items$checkpoint@100\" UNION ALL SELECT \"id\", \"_lsn\" FROM"), "{sql}");
        assert!(sql.contains("WHERE \"_lsn\" > 100"), "{sql}");
        assert_eq!(read.take(), BTreeMap::from([(("acme".to_owned(), "items".to_owned(), 100), 1000)]));
    }
}
