//! The tenants of this Worker and where each one's change log stands: what
//! the server's lake shipper reads to know which edge tenants have changes
//! to ship (Durable Objects cannot be listed).
//!
//! Each tenant's object notes its change log's head and schema version in
//! its own storage after every request that may have written
//! ([`note`], before the answer leaves), and an alarm reports them here
//! ([`report`]): a burst of commits becomes one report, a report that fails
//! is retried by the runtime's alarm retries, and the report never holds up
//! an answer. The directory is one object (`TenantDirectory`, named
//! `directory`) keeping one row per tenant in its SQLite storage; the
//! Worker's root `GET /health` (admin over every tenant) lists it in pages.

use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::*;

use crate::engine::Position;
use crate::http;

/// The one directory object's name.
const NAME: &str = "directory";
/// How long after a commit its position is reported (commits meanwhile
/// join the same report).
const REPORT_DELAY_MS: i64 = 250;
/// Tenants in one page of the listing, unless fewer are asked for.
pub const MAX_PAGE: usize = 1000;

/// A tenant's row in the directory, as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub tenant: String,
    pub head_lsn: u64,
    pub schema_version: i64,
    /// Milliseconds since the Unix epoch of the last report.
    #[serde(default)]
    pub reported_at_ms: u64,
}

// ---- in each tenant's object ------------------------------------------------

const NOTE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tl_position (
    one INTEGER PRIMARY KEY CHECK (one = 1), tenant TEXT NOT NULL,
    head INTEGER NOT NULL, version INTEGER NOT NULL,
    reported_head INTEGER NOT NULL, reported_version INTEGER NOT NULL)";

#[derive(Debug, Deserialize)]
struct Noted {
    tenant: String,
    head: f64,
    version: f64,
    reported_head: f64,
    reported_version: f64,
}

impl Noted {
    fn current(&self) -> Position {
        Position { head_lsn: self.head as u64, schema_version: self.version as i64 }
    }

    fn reported(&self) -> Position {
        Position { head_lsn: self.reported_head as u64, schema_version: self.reported_version as i64 }
    }
}

fn noted(sql: &SqlStorage) -> Result<Option<Noted>> {
    sql.exec(NOTE_SCHEMA, None::<Vec<SqlStorageValue>>)?;
    let rows: Vec<Noted> = sql
        .exec("SELECT tenant, head, version, reported_head, reported_version FROM tl_position WHERE one = 1", None::<Vec<SqlStorageValue>>)?
        .to_array()?;
    Ok(rows.into_iter().next())
}

/// Note where the tenant's change log stands; if the directory has not
/// been told, make sure an alarm will tell it.
pub async fn note(state: &State, tenant: &str, position: Position) -> Result<()> {
    let sql = state.storage().sql();
    let before = noted(&sql)?;
    if before.as_ref().is_some_and(|n| n.current() == position) {
        return Ok(());
    }
    let reported = before.as_ref().map(Noted::reported).unwrap_or_default();
    sql.exec(
        "INSERT OR REPLACE INTO tl_position (one, tenant, head, version, reported_head, reported_version) \
         VALUES (1, ?, ?, ?, ?, ?)",
        vec![
            tenant.into(),
            (position.head_lsn as i64).into(),
            position.schema_version.into(),
            (reported.head_lsn as i64).into(),
            reported.schema_version.into(),
        ],
    )?;
    if reported != position {
        crate::tiers::alarm_by(state, Date::now().as_millis() as f64 + REPORT_DELAY_MS as f64).await?;
    }
    Ok(())
}

/// Where the change log stood at the tenant's last noted commit.
pub fn position(sql: &SqlStorage) -> Result<Option<Position>> {
    Ok(noted(sql)?.map(|n| n.current()))
}

/// The alarm: tell the directory where the tenant's change log stands. An
/// error makes the runtime retry the alarm.
pub async fn report(state: &State, env: &Env) -> Result<()> {
    let sql = state.storage().sql();
    let Some(sent) = noted(&sql)? else { return Ok(()) };
    let position = sent.current();
    if position == sent.reported() {
        return Ok(());
    }
    let body = json!({ "tenant": sent.tenant, "headLsn": position.head_lsn, "schemaVersion": position.schema_version });
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.to_string().into()));
    let answer = stub(env)?.fetch_with_request(Request::new_with_init("https://directory/report", &init)?).await?;
    if answer.status_code() != 200 {
        return Err(Error::RustError(format!("the tenant directory answered {}", answer.status_code())));
    }
    sql.exec(
        "UPDATE tl_position SET reported_head = ?, reported_version = ? WHERE one = 1",
        vec![(position.head_lsn as i64).into(), position.schema_version.into()],
    )?;
    // Commits while the report was on its way: report them too.
    if noted(&sql)?.is_some_and(|n| n.current() != position) {
        state.storage().set_alarm(REPORT_DELAY_MS).await?;
    }
    Ok(())
}

fn stub(env: &Env) -> Result<Stub> {
    env.durable_object("DIRECTORY")?.id_from_name(NAME)?.get_stub()
}

/// One page of the directory, tenants named after `after` that reported at
/// or after `changed_since` (ms since the epoch, the `asOf` of an earlier
/// listing), for the Worker's root `health`.
pub async fn list(env: &Env, after: &str, changed_since: u64, limit: usize) -> Result<Response> {
    let url = format!(
        "https://directory/tenants?after={}&changedSince={changed_since}&limit={limit}",
        js_sys::encode_uri_component(after).as_string().unwrap_or_default()
    );
    stub(env)?.fetch_with_str(&url).await
}

// ---- the directory object ---------------------------------------------------

const DIRECTORY_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY, head INTEGER NOT NULL, version INTEGER NOT NULL, reported_at INTEGER NOT NULL)";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    tenant: String,
    head_lsn: u64,
    schema_version: i64,
}

#[derive(Debug, Deserialize)]
struct Row {
    name: String,
    head: f64,
    version: f64,
    reported_at: f64,
}

#[durable_object]
pub struct TenantDirectory {
    state: State,
}

impl DurableObject for TenantDirectory {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let sql = self.state.storage().sql();
        sql.exec(DIRECTORY_SCHEMA, None::<Vec<SqlStorageValue>>)?;
        let url = req.url()?;
        match (req.method(), url.path()) {
            (Method::Post, "/report") => {
                let report: Report = match serde_json::from_slice(&req.bytes().await?) {
                    Ok(report) => report,
                    Err(err) => return http::error(400, "invalid_request", &format!("a report: {err}")),
                };
                // A report never moves a tenant back (reports may cross).
                sql.exec(
                    "INSERT INTO tenants (name, head, version, reported_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (name) DO UPDATE SET head = max(head, excluded.head), \
                     version = max(version, excluded.version), reported_at = excluded.reported_at",
                    vec![
                        report.tenant.into(),
                        (report.head_lsn as i64).into(),
                        report.schema_version.into(),
                        (Date::now().as_millis() as i64).into(),
                    ],
                )?;
                http::json(&json!({ "ok": true }))
            }
            (Method::Get, "/tenants") => {
                // The directory's clock, read before the rows: a report in a
                // later turn is stamped at this instant or after it.
                let as_of = Date::now().as_millis();
                let mut after = String::new();
                let mut changed_since = 0u64;
                let mut limit = MAX_PAGE;
                for (key, value) in url.query_pairs() {
                    match key.as_ref() {
                        "after" => after = value.into_owned(),
                        "changedSince" => changed_since = value.parse().unwrap_or(0),
                        "limit" => limit = value.parse().unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE),
                        _ => {}
                    }
                }
                let rows: Vec<Row> = sql
                    .exec(
                        "SELECT name, head, version, reported_at FROM tenants WHERE name > ? AND reported_at >= ? \
                         ORDER BY name LIMIT ?",
                        vec![after.into(), (changed_since as i64).into(), (limit as i64 + 1).into()],
                    )?
                    .to_array()?;
                let more = rows.len() > limit;
                let entries: Vec<Entry> = rows
                    .into_iter()
                    .take(limit)
                    .map(|r| Entry {
                        tenant: r.name,
                        head_lsn: r.head as u64,
                        schema_version: r.version as i64,
                        reported_at_ms: r.reported_at as u64,
                    })
                    .collect();
                let next = more.then(|| entries.last().map(|e| e.tenant.clone())).flatten();
                http::json(&json!({ "tenants": entries, "next": next, "asOf": as_of }))
            }
            _ => http::error(404, "not_found", "no such endpoint"),
        }
    }
}
