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
//! Bounds: `FOR SYSTEM_TIME AS OF <timestamp>` and `TIMESTAMP AS OF
//! <timestamp>` keep changes committed at or before the instant; `VERSION
//! AS OF <lsn>` keeps changes up to that LSN.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Value, ValueWithSpan, Query, Statement, TableAlias, TableFactor, TableVersion, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::parser::Parser;

use crate::dialect::LakeDialect;
use crate::error::QueryError;

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
#[derive(Debug, Clone)]
pub struct TableShape {
    /// Source columns of the current schema, in order.
    pub columns: Vec<String>,
    pub primary_key: Vec<String>,
}

/// The loaded lake tables: (tenant, table) → shape; and per cross-tenant
/// table the tenants having it.
#[derive(Debug, Default)]
pub struct Loaded {
    pub tables: BTreeMap<(String, String), TableShape>,
    pub all_tenants: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    State,
    Changes,
    Snapshots,
}

/// A lake reference in the query: `tenant.table[$kind]`.
struct Reference {
    tenant: String,
    table: String,
    kind: Kind,
}

/// Parse one SQL statement; only queries (and EXPLAIN of one) are accepted.
pub fn parse(sql: &str) -> Result<Statement, QueryError> {
    let mut statements = Parser::parse_sql(&LakeDialect::default(), sql).map_err(|e| QueryError::Sql(e.to_string()))?;
    if statements.len() != 1 {
        return Err(QueryError::Sql(format!("expected one statement, got {}", statements.len())));
    }
    let statement = statements.pop().expect("one statement");
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
    let (table, kind) = match table.split_once('$') {
        Some((base, "changes")) => (base.to_owned(), Kind::Changes),
        Some((base, "snapshots")) => (base.to_owned(), Kind::Snapshots),
        Some(_) => return None,
        None => (table, Kind::State),
    };
    Some(Reference { tenant, table, kind })
}

/// The lake tables a query reads; errors for version clauses on anything else.
pub fn needs(statement: &mut Statement) -> Result<Needs, QueryError> {
    struct Collect(Needs, Option<QueryError>);
    impl VisitorMut for Collect {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Table { name, version, args, .. } = factor else {
                return ControlFlow::Continue(());
            };
            if args.is_some() {
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
    let mut collect = Collect(Needs::default(), None);
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
            if args.is_some() {
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
                    Some(shape) => state_sql(&r.tenant, &r.table, shape, &bound, None),
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
                name: datafusion::sql::sqlparser::ast::Ident::with_quote('"', r.table.clone()),
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

/// A double-quoted SQL identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn qualified(tenant: &str, table: &str) -> String {
    format!("{}.{}", quote(tenant), quote(table))
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

    fn changes(&self) -> String {
        match self {
            Self::Now => "TRUE".to_owned(),
            Self::Instant(e) => format!("\"_commit_ts\" <= {e}"),
            Self::Lsn(e) => format!("\"_lsn\" <= ({e})"),
        }
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
    let Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(text), .. }) = e else {
        return Ok(format!("to_timestamp_micros({e})"));
    };
    let mut t = text.trim().replace('T', " ");
    if let Some(stripped) = t.strip_suffix('Z') {
        t = format!("{stripped}+00");
    }
    if !t.contains(' ') {
        t.push_str(" 00:00:00");
    }
    let micros = lake::mapping::timestamp_micros(&t)
        .ok()
        .flatten()
        .ok_or_else(|| QueryError::Sql(format!("AS OF '{text}': not a timestamp (expected e.g. '2026-11-27 10:00:00+00')")))?;
    Ok(format!("to_timestamp_micros({micros})"))
}

/// The state of one table within the bound.
fn state_sql(tenant: &str, table: &str, shape: &TableShape, bound: &Bound, tenant_column: Option<&str>) -> Result<String, QueryError> {
    if shape.primary_key.is_empty() {
        return Err(QueryError::Sql(format!(
            "{tenant}.{table} has no primary key, so its state cannot be rebuilt from the changelog; \
             read {tenant}.\"{table}$changes\" instead"
        )));
    }
    let changes = qualified(tenant, &format!("{table}$changes"));
    let columns: Vec<String> = shape.columns.iter().map(|c| quote(c)).collect();
    let key: Vec<String> = shape.primary_key.iter().map(|c| quote(c)).collect();
    let within = bound.changes();
    let select = match tenant_column {
        Some(t) => format!("'{}' AS \"tenant\", {}", t.replace('\'', "''"), columns.join(", ")),
        None => columns.join(", "),
    };
    Ok(format!(
        "SELECT {select} FROM (\
           SELECT {cols}, \"_op\", row_number() OVER (PARTITION BY {key} ORDER BY \"_lsn\" DESC) AS \"__tidelake_rn\" \
           FROM {changes} WHERE {within} AND \"_lsn\" > \
             (SELECT coalesce(max(\"_lsn\"), 0) FROM {changes} WHERE \"_op\" = 'truncate' AND {within})\
         ) AS \"__tidelake_latest\" WHERE \"__tidelake_rn\" = 1 AND \"_op\" <> 'delete'",
        cols = columns.join(", "),
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
            state_sql(tenant, table, shape, bound, Some(tenant)).map(|sql| format!("({sql})"))
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
