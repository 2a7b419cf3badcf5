//! The JSON shapes of the OLTP HTTP API (DESIGN.md §5), free of any native
//! dependency so a wasm32 build of the edge tier can reuse them.

use serde::{Deserialize, Serialize};
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
