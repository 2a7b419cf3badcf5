//! The JSON shapes of the OLTP HTTP API (DESIGN.md §5), free of any native
//! dependency so a wasm32 build of the edge tier can reuse them.

use serde::{Deserialize, Serialize};
use crate::Change;
use serde_json::Value;

/// How result rows are shaped: `{"col": value}` or `[value, …]` of JSON
/// values (see [`crate::values`]), or `[text, …]`: each value in
/// PostgreSQL's own text form (what Neon's HTTP driver reads and parses by
/// each field's type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowMode {
    #[default]
    Object,
    Array,
    Text,
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

impl BatchRequest {
    /// `statements` as a transaction with every default (rows as arrays,
    /// read committed, read-write, the tenant's timeout): how the server
    /// runs a migration's statements.
    pub fn of(statements: Vec<Statement>) -> Self {
        BatchRequest { statements, row_mode: RowMode::Array, isolation_level: None, read_only: false, statement_timeout: None }
    }
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

/// A result column: its name and the PostgreSQL type OID of its values
/// (and, not in the API's JSON, the rest of what PostgreSQL says of it).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    #[serde(rename = "dataTypeID")]
    pub data_type_id: i32,
    /// The table's OID, where the column is a table's (else 0).
    #[serde(skip)]
    pub table_id: i32,
    /// The column's number in that table (else 0).
    #[serde(skip)]
    pub column_id: i16,
    /// `pg_type.typlen` (negative: variable length).
    #[serde(skip)]
    pub type_size: i16,
    /// `pg_attribute.atttypmod` (-1: none).
    #[serde(skip)]
    pub type_modifier: i32,
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

/// One page of the change log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangePage {
    pub changes: Vec<Change>,
    /// Pass as `since` to continue after this page.
    pub next_lsn: u64,
    pub head_lsn: u64,
    /// Oldest LSN still in the log (0: empty).
    pub tail_lsn: u64,
    /// The newest schema version the log had recorded when the page was
    /// read (the edge's pages carry it, so the lake needs no second request
    /// to know whether the schema moved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
}

/// `GET changes`: the page size when none is asked for, and the bounds.
pub const DEFAULT_CHANGES_LIMIT: u64 = 1000;

/// The largest request body accepted unless configured otherwise (the
/// server's `--tenants-max-body-bytes`, the edge's `MAX_BODY_BYTES`).
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// An answer to a client's SQL larger than this many bytes (as PostgreSQL
/// sends its rows) is refused with `result_too_large`, unless configured
/// otherwise (the server's `--tenants-max-result-bytes`, the edge's
/// `MAX_RESULT_BYTES`).
pub const DEFAULT_MAX_RESULT_BYTES: u64 = 16 * 1024 * 1024;
/// An answer with more rows than this is refused with `result_too_large`.
pub const DEFAULT_MAX_RESULT_ROWS: u64 = 1_000_000;

/// What a body over `limit` bytes is told (413 `payload_too_large`).
pub fn payload_too_large(limit: usize) -> String {
    format!("request body is larger than the limit of {limit} bytes")
}
pub const MAX_CHANGES_LIMIT: u64 = 10_000;
pub const MAX_CHANGES_WAIT_MS: u64 = 60_000;

impl ChangesQuery {
    /// The page size asked for, checked against the bounds (with `since`
    /// an LSN and `wait` within its own).
    pub fn checked_limit(&self) -> Result<u64, String> {
        checked_lsn("since", self.since)?;
        let limit = self.limit.unwrap_or(DEFAULT_CHANGES_LIMIT);
        if limit == 0 || limit > MAX_CHANGES_LIMIT {
            return Err(format!("limit must be between 1 and {MAX_CHANGES_LIMIT}"));
        }
        if self.wait > MAX_CHANGES_WAIT_MS {
            return Err(format!("wait must be at most {MAX_CHANGES_WAIT_MS} ms"));
        }
        Ok(limit)
    }
}

/// A request body that is not the endpoint's JSON: its error code
/// (`malformed_json` or `invalid_request`) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub code: &'static str,
    pub message: String,
}

/// Read a request body as the endpoint's JSON, as every front does.
pub fn read_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    if bytes.is_empty() {
        return Err(BodyError {
            code: "malformed_json",
            message: "the request body is empty: expected a JSON object".to_owned(),
        });
    }
    serde_json::from_slice(bytes).map_err(|err| {
        use serde_json::error::Category;
        match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                BodyError { code: "malformed_json", message: format!("malformed JSON: {err}") }
            }
            Category::Data => BodyError { code: "invalid_request", message: format!("invalid request: {err}") },
        }
    })
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

/// Subscriptions one WebSocket connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Changes a subscription reads from the log at a time.
pub const SUBSCRIPTION_PAGE: u64 = 500;

/// A WebSocket protocol error (a message the protocol cannot take).
pub fn protocol_error(id: Value, message: &str) -> Value {
    serde_json::json!({"type": "error", "id": id, "error": {"code": "invalid_message", "message": message}})
}

/// Which changes a subscription receives; every filter left out matches all.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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

/// HTTP status for a SQLSTATE: the client's mistakes are 4xx, ours 5xx.
pub fn http_status_for_sqlstate(code: &str) -> u16 {
    match code {
        "57014" => 408, // statement timeout or cancel
        // Least privilege: what the tenant role may not do.
        "42501" => 403,
        // The answer is over a cap: the client asked for too much at once.
        "result_too_large" => 422,
        // Protocol violation: over HTTP it can only come from the request,
        // e.g. fewer params than the statement's placeholders.
        "08P01" => 400,
        // Disk full, or the tenant's disk quota reached.
        "53100" => 507,
        "53200" | "53300" | "57P01" | "57P02" | "57P03" => 503,
        _ => match code.get(..2).unwrap_or(code) {
            "23" | "40" => 409, // constraint violation, serialization failure
            "08" | "58" | "XX" => 500,
            _ => 400,
        },
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

/// SQL refused before any engine sees it, by every front alike.
#[derive(Debug, Clone, PartialEq)]
pub enum Unrunnable {
    /// The request's fault: its code and message (a 400).
    Invalid(&'static str, &'static str),
    /// PostgreSQL's own answer to it.
    Db(DbError),
}

/// Whether `sql` may go to the engine: not with a NUL byte (the wire
/// protocol's strings end at one, so the engine would run less than was
/// sent), nor with nothing but comments (PostgreSQL's empty query, answered
/// as the error it is to a client that expected a result), nor creating an
/// extension a tenant may not create (see [`crate::extensions`]).
pub fn runnable(sql: &str) -> Result<(), Unrunnable> {
    if sql.contains('\0') {
        return Err(Unrunnable::Invalid("invalid_sql", "SQL must not contain a NUL byte"));
    }
    if crate::sql::only_comments(sql) {
        return Err(Unrunnable::Db(DbError::new("42601", "empty query: no SQL statement given")));
    }
    // Its data would have to follow in the same exchange, which a request's
    // statement cannot send: the engine would read past its input.
    if crate::sql::split(sql).into_iter().any(crate::sql::copies_from_client) {
        return Err(Unrunnable::Db(DbError::new(
            "0A000",
            "COPY … FROM STDIN takes its data from the client, which a request cannot send: insert the rows \
             (a batch of INSERTs, or INSERT … SELECT FROM json_populate_recordset($1)), or use psql's \\copy \
             over the tenant's Postgres wire protocol",
        )));
    }
    if let Some(err) = crate::sql::split(sql).into_iter().find_map(crate::extensions::refusal) {
        return Err(Unrunnable::Db(err));
    }
    Ok(())
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

    /// A write, DDL or transaction control refused because the caller's
    /// token has only the read scope on the tenant.
    pub fn read_scope() -> Self {
        let mut err = DbError::new(
            "42501",
            "this token has the read scope on this tenant: writes, DDL and transaction control need the write scope",
        );
        err.hint = Some("use a token with the write scope".into());
        err
    }

    /// In the read-only transaction a read-scoped caller's statements run
    /// in, a refused write (SQLSTATE 25006) is [`DbError::read_scope`], with
    /// PostgreSQL's message as its detail.
    pub fn under_read_scope(self) -> Self {
        if self.code == "25006" {
            DbError { detail: Some(self.message), statement_index: self.statement_index, ..DbError::read_scope() }
        } else {
            self
        }
    }
}

impl DbError {
    /// An answer over the byte cap (422 `result_too_large`).
    pub fn result_too_large_bytes(limit: u64) -> Self {
        DbError::new(
            "result_too_large",
            format!(
                "the answer is larger than {limit} bytes (the maxResultBytes limit): fetch it in pages (LIMIT/OFFSET, a keyset, or a cursor)"
            ),
        )
    }

    /// An answer over the row cap (422 `result_too_large`).
    pub fn result_too_large_rows(limit: u64) -> Self {
        DbError::new(
            "result_too_large",
            format!("the answer has more than {limit} rows (the maxResultRows limit of {limit}): fetch it in pages"),
        )
    }

    /// An answer refused by a cap after its statement had run to its end
    /// and its transaction ended: say that what it wrote is committed.
    pub fn after_completion(mut self) -> Self {
        self.detail = Some(
            "the statement ran to its end before its answer was refused: anything it wrote is committed".to_owned(),
        );
        self
    }

    /// PostgreSQL refuses to drop or replace a capture trigger (it is
    /// marked internal) with the errors it gives for any internal trigger;
    /// say what the refusal is: a permission the tenant does not have.
    pub fn protecting_capture(mut self) -> Self {
        if matches!(self.code.as_str(), "2BP01" | "42710") && self.message.contains("tidelake_capture") {
            self.detail = Some(std::mem::take(&mut self.message));
            self.code = "42501".to_owned();
            self.hint = None;
            self.message = "permission denied: the tidelake_capture triggers are the table's change capture, \
                            which cannot be dropped, replaced or disabled"
                .to_owned();
        }
        self
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)
    }
}

impl std::error::Error for DbError {}

/// The header Neon's HTTP driver names the database in (and, there, its
/// password): `postgresql://user:password@host/database?…`.
pub const NEON_CONNECTION_STRING: &str = "neon-connection-string";

/// What a PostgreSQL connection URL says of its user, password and
/// database (percent-decoded); None if it is not such a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionUrl {
    pub user: String,
    pub password: Option<String>,
    pub database: String,
}

impl ConnectionUrl {
    pub fn parse(url: &str) -> Option<ConnectionUrl> {
        let rest = url.strip_prefix("postgresql://").or_else(|| url.strip_prefix("postgres://"))?;
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        let (authority, path) = rest.split_once('/')?;
        let (userinfo, _host) = authority.rsplit_once('@').unwrap_or(("", authority));
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(percent_decode(password)?)),
            None => (userinfo, None),
        };
        let database = percent_decode(path)?;
        (!database.is_empty()).then(|| ConnectionUrl { user: percent_decode(user).unwrap_or_default(), password, database })
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod connection_url_tests {
    use super::ConnectionUrl;

    #[test]
    fn connection_urls_name_the_database_and_the_password() {
        let url = ConnectionUrl::parse("postgresql://app:tlk_a%2Fb@127.0.0.1:8080/acme?application_name=x").unwrap();
        assert_eq!((url.user.as_str(), url.password.as_deref(), url.database.as_str()), ("app", Some("tlk_a/b"), "acme"));
        let url = ConnectionUrl::parse("postgres://localhost/shop").unwrap();
        assert_eq!((url.password, url.database.as_str()), (None, "shop"));
        assert_eq!(ConnectionUrl::parse("postgresql://localhost/"), None);
        assert_eq!(ConnectionUrl::parse("mysql://localhost/acme"), None);
        assert_eq!(ConnectionUrl::parse("postgresql://u:%zz@h/acme"), None);
    }
}
