//! The JSON shapes of the OLTP HTTP API (DESIGN.md §5), free of any native
//! dependency so a wasm32 build of the edge tier can reuse them.

use serde::{Deserialize, Serialize};
use crate::Change;
use serde_json::Value;

/// How result rows are shaped: `{"col": value}` or `[value, …]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowMode {
    #[default]
    Object,
    Array,
}

/// One SQL statement with its positional parameters (`$1`, `$2`, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    pub sql: String,
    #[serde(default)]
    pub params: Vec<Value>,
}

/// Body of `POST query`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueryRequest {
    pub sql: String,
    #[serde(default)]
    pub params: Vec<Value>,
    #[serde(default)]
    pub row_mode: RowMode,
    /// Milliseconds each statement may run, if less than the tenant's
    /// statement timeout.
    #[serde(default)]
    pub statement_timeout: Option<u64>,
}

/// Body of `POST batch` and `POST transaction`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BatchRequest {
    pub statements: Vec<Statement>,
    #[serde(default)]
    pub row_mode: RowMode,
    /// Transaction only: `read committed` (default), `repeatable read` or `serializable`.
    #[serde(default)]
    pub isolation_level: Option<IsolationLevel>,
    /// Transaction only: run as `READ ONLY`.
    #[serde(default)]
    pub read_only: bool,
    /// Milliseconds each statement may run, if less than the tenant's
    /// statement timeout.
    #[serde(default)]
    pub statement_timeout: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IsolationLevel {
    #[serde(alias = "read committed", alias = "ReadCommitted")]
    ReadCommitted,
    #[serde(alias = "repeatable read", alias = "RepeatableRead")]
    RepeatableRead,
    #[serde(alias = "serializable", alias = "Serializable")]
    Serializable,
}

impl IsolationLevel {
    pub fn sql(self) -> &'static str {
        match self {
            Self::ReadCommitted => "READ COMMITTED",
            Self::RepeatableRead => "REPEATABLE READ",
            Self::Serializable => "SERIALIZABLE",
        }
    }
}

/// A result column: its name and the PostgreSQL type OID of its values.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    #[serde(rename = "dataTypeID")]
    pub data_type_id: i32,
}

/// The result of one statement (the shape Neon's HTTP driver uses).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueryResult {
    /// The command tag's verb: `SELECT`, `INSERT`, `CREATE TABLE`, …
    pub command: String,
    /// Rows returned or affected, where the command reports a count.
    pub row_count: Option<u64>,
    pub fields: Vec<Field>,
    pub rows: Vec<Value>,
}

/// Response of `POST batch` / `POST transaction`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchResult {
    pub results: Vec<QueryResult>,
}

/// The largest LSN there can be (LSNs are PostgreSQL `bigint`s).
pub const MAX_LSN: u64 = i64::MAX as u64;

/// An LSN a client gave, checked.
pub fn checked_lsn(name: &str, lsn: u64) -> Result<u64, String> {
    if lsn > MAX_LSN {
        Err(format!("{name} must be at most {MAX_LSN} (an LSN), not {lsn}"))
    } else {
        Ok(lsn)
    }
}

/// The statement timeout a request asks for (milliseconds), checked.
pub fn requested_timeout(ms: Option<u64>) -> Result<Option<std::time::Duration>, String> {
    match ms {
        None => Ok(None),
        Some(0) => Err("statementTimeout must be at least 1 (milliseconds)".to_owned()),
        Some(ms) => Ok(Some(std::time::Duration::from_millis(ms))),
    }
}

/// The engine state `ping` reports, without waking anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineState {
    Loaded,
    Loading,
    Hibernated,
}

impl EngineState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loaded => "loaded",
            Self::Loading => "loading",
            Self::Hibernated => "hibernated",
        }
    }
}

/// Query string of `GET changes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// Return changes after this LSN (default 0: from the start of the log).
    #[serde(default)]
    pub since: u64,
    /// At most this many changes (default 1000, at most 10000).
    pub limit: Option<u64>,
    /// Long-poll: hold an empty answer up to this many milliseconds (at most 60000).
    #[serde(default)]
    pub wait: u64,
}

/// Body of `POST changes/ack`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub consumer: String,
    pub lsn: u64,
}

/// A message from a WebSocket client.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage {
    /// Run one statement; answered by `result` or `error` with the same id.
    Query {
        id: serde_json::Value,
        sql: String,
        #[serde(default)]
        params: Vec<Value>,
        #[serde(default, rename = "rowMode")]
        row_mode: RowMode,
        #[serde(default, rename = "statementTimeout")]
        statement_timeout: Option<u64>,
    },
    /// Stream changes: replay from `since` (default: the current head, i.e.
    /// only new changes), then live.
    Subscribe {
        id: String,
        #[serde(default)]
        since: Option<u64>,
        #[serde(flatten)]
        filter: ChangeFilter,
    },
    Unsubscribe { id: String },
}

/// Which changes a subscription receives; every filter left out matches all.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeFilter {
    /// `table` (any schema) or `schema.table`.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Keep only these columns in `new` and `old`.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Any of `insert`, `update`, `delete`, `truncate`.
    #[serde(default)]
    pub ops: Option<Vec<String>>,
}

impl ChangeFilter {
    /// The change as this subscription should see it, or `None` to skip it.
    pub fn apply(&self, change: &Change) -> Option<Change> {
        if let Some(ops) = &self.ops
            && !ops.iter().any(|op| change.op.as_str() == op.as_str())
        {
            return None;
        }
        if let Some(tables) = &self.tables {
            let (schema, table) = (change.schema.as_str(), change.table.as_str());
            let matches = tables.iter().any(|t| match t.split_once('.') {
                Some((s, n)) => s == schema && n == table,
                None => t == table,
            });
            if !matches {
                return None;
            }
        }
        let mut change = change.clone();
        if let Some(columns) = &self.columns {
            for row in [&mut change.new, &mut change.old].into_iter().flatten() {
                row.retain(|k, _| columns.iter().any(|c| c == k));
            }
        }
        Some(change)
    }
}

/// A PostgreSQL error as the client sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DbError {
    /// SQLSTATE.
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// In a batch or transaction: the index of the statement that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_index: Option<usize>,
}

impl DbError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            detail: None,
            hint: None,
            position: None,
            statement_index: None,
        }
    }

    pub fn at_statement(mut self, index: usize) -> Self {
        self.statement_index = Some(index);
        self
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)
    }
}

impl std::error::Error for DbError {}
