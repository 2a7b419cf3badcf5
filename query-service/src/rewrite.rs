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

/// The lake tables a query reads; errors for version clauses on anything
/// else, and for a `growth` or `activity` with literal bounds and more than
/// `max_buckets` buckets.
pub fn needs(statement: &mut Statement, max_buckets: u64) -> Result<Needs, QueryError> {
    struct Collect(Needs, Option<QueryError>, u64);
    impl VisitorMut for Collect {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Table { name, version, args, .. } = factor else {
                return ControlFlow::Continue(());
            };
            if let Some(args) = args {
                match TableFn::of(name, args) {
                    Some(Ok(TableFn::Diff(call))) => {
                        self.0.tables.insert((call.tenant, call.table));
                    }
                    Some(Ok(TableFn::Series(call))) => {
                        if let Err(err) = call.check(self.2) {
                            self.1 = Some(err);
                            return ControlFlow::Break(());
                        }
                        match call.tenant {
                            Some(tenant) => {
                                self.0.tables.insert((tenant, call.table));
                            }
                            None => {
                                self.0.all_tenants.insert(call.table);
                            }
                        }
                    }
                    Some(Err(err)) => {
                        self.1 = Some(err);
                        return ControlFlow::Break(());
                    }
                    None => {}
                }
                return ControlFlow::Continue(());
            }
            match reference(name) {
                Some(r) if r.tenant == ALL_TENANTS => {
                    if r.kind != Kind::State {
                        self.1 = Some(QueryError::Sql(format!(
                            "{ALL_TENANTS} has only tables' states; read \"{}$…\" per tenant",
                            r.table
                        )));
                        return ControlFlow::Break(());
                    }
                    self.0.all_tenants.insert(r.table);
                }
                // Registered by the rewrite that reads it.
                Some(r) if r.kind == Kind::Checkpoint && version.is_none() => {}
                Some(r) => {
                    self.0.tables.insert((r.tenant, r.table));
                }
                None if version.is_some() => {
                    self.1 = Some(QueryError::Sql(format!(
                        "AS OF applies to lake tables (<tenant>.<table>, \"<table>$changes\", \"<table>$snapshots\"), not to {name}"
                    )));
                    return ControlFlow::Break(());
                }
                None => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut collect = Collect(Needs::default(), None, max_buckets);
    let _ = statement.visit(&mut collect);
    match collect.1 {
        Some(err) => Err(err),
        None => Ok(collect.0),
    }
}

/// Replace every lake reference by its query.
pub fn rewrite(statement: &mut Statement, loaded: &Loaded) -> Result<(), QueryError> {
    struct Rewrite<'a>(&'a Loaded, Option<QueryError>);
    impl VisitorMut for Rewrite<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Table { name, alias, version, args, .. } = factor else {
                return ControlFlow::Continue(());
            };
            if let Some(call_args) = args {
                let Some(call) = TableFn::of(name, call_args) else { return ControlFlow::Continue(()) };
                let function = normalized(&name.0[0]).unwrap_or_default();
                let sql = call.and_then(|call| call.sql(self.0));
                match sql.and_then(|sql| parse_query(&sql)) {
                    Ok(query) => {
                        let alias = alias.clone().or_else(|| {
                            Some(TableAlias { explicit: true, name: Ident::new(function), columns: Vec::new() })
                        });
                        *factor = TableFactor::Derived { lateral: false, subquery: query, alias, sample: None };
                    }
                    Err(err) => {
                        self.1 = Some(err);
                        return ControlFlow::Break(());
                    }
                }
                return ControlFlow::Continue(());
            }
            let Some(r) = reference(name) else { return ControlFlow::Continue(()) };
            // The changelog and snapshot tables the rewrite itself emits.
            if version.is_none() && r.kind != Kind::State && r.tenant != ALL_TENANTS {
                return ControlFlow::Continue(());
            }
            let bound = match Bound::of(version.as_ref()) {
                Ok(bound) => bound,
                Err(err) => {
                    self.1 = Some(err);
                    return ControlFlow::Break(());
                }
            };
            let sql = match r.kind {
                _ if r.tenant == ALL_TENANTS => all_tenants_sql(self.0, &r.table, &bound),
                Kind::State => match self.0.tables.get(&(r.tenant.clone(), r.table.clone())) {
                    Some(shape) => state_sql(&r.tenant, &r.table, shape, &bound, None, Some(&self.0.checkpoints_read)),
                    None => Err(no_table(&r.tenant, &r.table)),
                },
                Kind::Changes => Ok(format!(
                    "SELECT * FROM {} WHERE {}",
                    qualified(&r.tenant, &format!("{}$changes", r.table)),
                    bound.changes()
                )),
                Kind::Snapshots => Ok(format!(
                    "SELECT * FROM {} WHERE {}",
                    qualified(&r.tenant, &format!("{}$snapshots", r.table)),
                    bound.snapshots()
                )),
                Kind::Checkpoint => Err(QueryError::Sql(format!(
                    "{}.\"{}$checkpoint@…\": a checkpoint is one instant already; AS OF does not apply",
                    r.tenant, r.table
                ))),
            };
            let query = match sql.and_then(|sql| parse_query(&sql)) {
                Ok(query) => query,
                Err(err) => {
                    self.1 = Some(err);
                    return ControlFlow::Break(());
                }
            };
            let alias = alias.clone().unwrap_or_else(|| TableAlias {
                explicit: true,
                name: Ident::with_quote('"', r.table.clone()),
                columns: Vec::new(),
            });
            *factor = TableFactor::Derived { lateral: false, subquery: query, alias: Some(alias), sample: None };
            ControlFlow::Continue(())
        }
    }
    let mut rewrite = Rewrite(loaded, None);
    let _ = statement.visit(&mut rewrite);
    match rewrite.1 {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

fn no_table(tenant: &str, table: &str) -> QueryError {
    QueryError::NotFound(format!("no lake table {tenant}.{table} (is the tenant's table shipped yet?)"))
}

fn parse_query(sql: &str) -> Result<Box<Query>, QueryError> {
    Parser::new(&LakeDialect::default())
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_query())
        .map_err(|e| QueryError::Internal(format!("rewritten query does not parse ({e}): {sql}")))
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
    fn of(version: Option<&TableVersion>) -> Result<Self, QueryError> {
        Ok(match version {
            None => Self::Now,
            Some(TableVersion::ForSystemTimeAsOf(e) | TableVersion::TimestampAsOf(e)) => Self::Instant(instant(e)?),
            Some(TableVersion::VersionAsOf(e)) => Self::Lsn(e.to_string()),
            // `AT(...)`/`BEFORE(...)`: rejected by `check_versions` first.
            Some(TableVersion::Function(e)) => Self::Instant(instant(e)?),
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
fn instant(e: &Expr) -> Result<String, QueryError> {
    match literal_micros(e)? {
        Some(micros) => Ok(format!("to_timestamp_micros({micros})")),
        None => Ok(format!("to_timestamp_micros({e})")),
    }
}

/// A string literal instant in microseconds since the epoch (None: not a literal).
fn literal_micros(e: &Expr) -> Result<Option<i64>, QueryError> {
    let Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(text), .. }) = e else {
        return Ok(None);
    };
    let micros = model::parse_instant(text)
        .ok_or_else(|| QueryError::Sql(format!("'{text}': not a timestamp (expected e.g. '2026-11-27 10:00:00+00')")))?;
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
) -> Result<String, QueryError> {
    let (columns, key) = shape.columns_at(bound);
    if key.is_empty() {
        return Err(QueryError::Sql(format!(
            "{tenant}.{table} has no primary key, so its state cannot be rebuilt from the changelog; \
             read {tenant}.\"{table}$changes\" instead"
        )));
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
                .ok_or_else(|| QueryError::Internal(format!("{tenant}.{table}: key column {k} is not a column")))
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

fn all_tenants_sql(loaded: &Loaded, table: &str, bound: &Bound) -> Result<String, QueryError> {
    let tenants = loaded.all_tenants.get(table).filter(|t| !t.is_empty()).ok_or_else(|| {
        QueryError::NotFound(format!("no tenant has a lake table named {table}"))
    })?;
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

/// Refuse version clauses the lake cannot honour (`AT(...)`, `BEFORE(...)`).
pub fn check_versions(statement: &mut Statement) -> Result<(), QueryError> {
    let mut bad = None;
    struct Check<'a>(&'a mut Option<String>);
    impl VisitorMut for Check<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { version: Some(TableVersion::Function(e)), .. } = factor {
                *self.0 = Some(e.to_string());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Check(&mut bad));
    match bad {
        Some(clause) => Err(QueryError::Sql(format!(
            "unsupported version clause {clause}: use FOR SYSTEM_TIME AS OF, TIMESTAMP AS OF or VERSION AS OF"
        ))),
        None => Ok(()),
    }
}

/// The lake's table functions.
enum TableFn {
    Diff(DiffCall),
    Series(SeriesCall),
}

impl TableFn {
    /// None if `name(args)` is not one of them.
    fn of(name: &ObjectName, args: &TableFunctionArgs) -> Option<Result<Self, QueryError>> {
        let [part] = name.0.as_slice() else { return None };
        let exprs = || -> Result<Vec<&Expr>, QueryError> {
            args.args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                    _ => Err(QueryError::Sql(format!("{name}: arguments are positional"))),
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

    fn sql(&self, loaded: &Loaded) -> Result<String, QueryError> {
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
    fn parse(series: Series, exprs: &[&Expr]) -> Result<Self, QueryError> {
        let usage = || {
            QueryError::Sql(
                "usage: growth|activity('<table>' or '<tenant>.<table>', <start>, <end>, '<interval>'), e.g. \
                 growth('orders', '2026-11-01', '2026-11-30', '1 day')"
                    .into(),
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
            buckets::instant(series.name(), micros)?;
        }
        Ok(Self {
            series,
            tenant,
            table,
            start: instant(start)?,
            end: instant(end)?,
            step: buckets::interval(series.name(), interval)?,
            interval: interval.replace('\'', "''"),
            literal_start,
            literal_end,
        })
    }

    /// Refuse more than `cap` buckets when the bounds are literals (when
    /// they are expressions, [`buckets::FUNCTION`] does as it runs).
    fn check(&self, cap: u64) -> Result<(), QueryError> {
        if let (Some(start), Some(end)) = (self.literal_start, self.literal_end) {
            buckets::check(self.series.name(), start, end, self.step, cap)?;
        }
        Ok(())
    }

    fn sql(&self, loaded: &Loaded) -> Result<String, QueryError> {
        let tenants = match &self.tenant {
            Some(tenant) => vec![tenant.clone()],
            None => loaded.all_tenants.get(&self.table).cloned().unwrap_or_default(),
        };
        if tenants.is_empty() {
            return Err(QueryError::NotFound(format!("no tenant has a lake table named {}", self.table)));
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
    fn parse(exprs: &[&Expr]) -> Result<Self, QueryError> {
        let usage = || QueryError::Sql("usage: table_diff('<tenant>.<table>', <from>, <to>) with timestamps or LSNs".into());
        let [table, from, to] = exprs else { return Err(usage()) };
        let name = string_arg(table).ok_or_else(usage)?;
        let (tenant, table) = name.split_once('.').ok_or_else(usage)?;
        let bound = |e: &Expr| -> Result<Bound, QueryError> {
            match e {
                Expr::Value(ValueWithSpan { value: Value::Number(n, _), .. }) => Ok(Bound::Lsn(lsn(n)?)),
                other => Ok(Bound::Instant(instant(other)?)),
            }
        };
        Ok(Self { tenant: tenant.to_owned(), table: lake_table(table.to_owned()), from: bound(from)?, to: bound(to)? })
    }
}

/// An LSN as a client wrote it: a whole number the changelog's `_lsn` can hold.
pub fn lsn(text: &str) -> Result<String, QueryError> {
    match text.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n.to_string()),
        _ => Err(QueryError::InvalidArgument(format!(
            "'{text}' is not an LSN (a whole number from 0 to {})",
            i64::MAX
        ))),
    }
}

/// Rows added, removed and changed between the two states, by primary key:
/// `change`, the key columns, and `before` / `after` (each row's values as
/// a struct; NULL on the side where the row does not exist).
fn diff_sql(call: &DiffCall, shape: &TableShape, loaded: &Loaded) -> Result<String, QueryError> {
    let before = state_sql(&call.tenant, &call.table, shape, &call.from, None, Some(&loaded.checkpoints_read))?;
    let after = state_sql(&call.tenant, &call.table, shape, &call.to, None, Some(&loaded.checkpoints_read))?;
    // Each side has the columns of its instant; rows are matched by the
    // key they both have.
    let (before_columns, before_key) = shape.columns_at(&call.from);
    let (after_columns, key) = shape.columns_at(&call.to);
    if before_key != key {
        return Err(QueryError::Sql(format!(
            "{}.{}: the primary key changed between the two instants ({} then, {} after): rows cannot be matched",
            call.tenant,
            call.table,
            before_key.join(", "),
            key.join(", ")
        )));
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
        check_versions(&mut statement)?;
        needs(&mut statement, 100)?;
        rewrite(&mut statement, &loaded())?;
        Ok(statement.to_string())
    }

    #[test]
    fn every_version_clause_is_applied_or_refused() {
        let sql = rewritten("SELECT * FROM acme.items VERSION AS OF 7 JOIN acme.items FOR SYSTEM_TIME AS OF '2026-01-01' AS b ON true").unwrap();
        assert!(sql.contains("\"_lsn\" <= (7)"), "{sql}");
        assert!(sql.contains(&format!("to_timestamp_micros({})", 20454i64 * 86_400_000_000)), "{sql}");
        assert!(!sql.contains("AS OF"), "{sql}");
        assert!(rewritten("WITH x AS (SELECT 1) SELECT * FROM x TIMESTAMP AS OF '2026-01-01'").is_err());
        assert!(rewritten("SELECT * FROM acme.items AT(TIMESTAMP => '2026-01-01')").is_err());
        assert!(rewritten("SELECT * FROM acme.items TIMESTAMP AS OF 'yesterday'").is_err());
        assert!(rewritten("DROP TABLE acme.items").is_err());
    }

    #[test]
    fn growth_and_activity_count_their_buckets_before_anything_loads() {
        let err = rewritten("SELECT * FROM growth('acme.items', '2000-01-01', '2200-01-01', '1 second')").unwrap_err();
        assert_eq!(err.code(), "too_many_buckets", "{err}");
        assert!(err.to_string().contains("limit of 100 (--max-buckets)"), "{err}");
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
            let needs = needs(&mut statement, 100).unwrap();
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

    #[test]
    fn table_diff_becomes_a_join_of_two_states() {
        let sql = rewritten("SELECT * FROM table_diff('acme.items', 1, '2026-01-01')").unwrap();
        assert!(sql.contains("FULL JOIN"), "{sql}");
        assert!(rewritten("SELECT * FROM table_diff('acme.items', 1)").is_err());
        let err = rewritten("SELECT * FROM table_diff('acme.items', 1, 99999999999999999999)").unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{err}");
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
