//! `POST /neon/sql`: Neon's serverless driver over HTTP
//! (`@neondatabase/serverless`'s `neon()`, and `drizzle-orm/neon-http` on
//! it), pointed here by `neonConfig.fetchEndpoint`. The driver names the
//! tenant as its connection string's database (header
//! `Neon-Connection-String`), sends `{query, params}` or, for
//! `sql.transaction([...])`, `{queries: [...]}` with the batch's
//! `Neon-Batch-Isolation-Level` / `-Read-Only` / `-Deferrable`, and reads
//! each value in PostgreSQL's text form (`Neon-Raw-Text-Output`), parsing
//! it by the field's type. Its errors are a 400 with the PostgreSQL error's
//! fields at the top level; any other status it reports as text.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::extract::{JsonBody, SqlTenant};
use crate::actor::work;
use crate::error::Error;
use crate::protocol::{BatchRequest, IsolationLevel, QueryResult, RowMode, Statement};
use crate::tenants::Tenants;
use model::TenantId;
use model::api::{ConnectionUrl, NEON_CONNECTION_STRING};

/// The tenant named by the connection string's database, which the caller may read.
pub struct NeonTenant(SqlTenant);

impl FromRequestParts<Arc<Tenants>> for NeonTenant {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Tenants>) -> Result<Self, Self::Rejection> {
        let url = parts
            .headers
            .get(NEON_CONNECTION_STRING)
            .ok_or_else(|| Error::bad_request("missing_connection_string", "Neon-Connection-String is missing: it names the tenant as its database"))
            .and_then(|value| {
                value.to_str().ok().and_then(ConnectionUrl::parse).ok_or_else(|| {
                    Error::bad_request("invalid_connection_string", "Neon-Connection-String is not a postgresql://user[:token]@host/<tenant> URL")
                })
            })
            .map_err(refused)?;
        SqlTenant::named(parts, state, &url.database).map(NeonTenant).map_err(refused)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum NeonRequest {
    Batch { queries: Vec<NeonQuery> },
    One(NeonQuery),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeonQuery {
    query: String,
    #[serde(default)]
    params: Vec<Value>,
}

impl NeonQuery {
    fn statement(self) -> Statement {
        Statement { sql: self.query, params: self.params }
    }
}

/// What the driver asked for by its headers.
struct Asked {
    /// Rows as arrays (else objects by field name).
    array_mode: bool,
    /// Values in PostgreSQL's text form (else as tidelake's JSON).
    raw_text: bool,
}

fn flag(headers: &HeaderMap, name: &str) -> Result<Option<bool>, Error> {
    match headers.get(name).map(|v| v.to_str().unwrap_or("")) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(Error::bad_request("invalid_header", format!("{name}: expected true or false, not {v:?}"))),
    }
}

pub async fn sql(
    State(tenants): State<Arc<Tenants>>,
    NeonTenant(SqlTenant { tenant, may_write }): NeonTenant,
    headers: HeaderMap,
    body: Result<JsonBody<NeonRequest>, Error>,
) -> Response {
    answer(&tenants, tenant, may_write, &headers, body).await.unwrap_or_else(refused)
}

async fn answer(
    tenants: &Tenants,
    tenant: TenantId,
    may_write: bool,
    headers: &HeaderMap,
    body: Result<JsonBody<NeonRequest>, Error>,
) -> Result<Response, Error> {
    let JsonBody(request) = body?;
    let asked = Asked {
        array_mode: flag(headers, "neon-array-mode")?.unwrap_or(false),
        raw_text: flag(headers, "neon-raw-text-output")?.unwrap_or(false),
    };
    match request {
        NeonRequest::One(query) => {
            let work = work::Query { stmt: query.statement(), row_mode: RowMode::Text };
            let result = tenants.run_sql(&tenant, work, None, may_write).await?;
            Ok(Json(shape(result, &asked)).into_response())
        }
        NeonRequest::Batch { queries } => {
            let isolation_level = match headers.get("neon-batch-isolation-level").map(|v| v.to_str().unwrap_or("")) {
                None => None,
                Some(level) => Some(serde_json::from_value::<IsolationLevel>(json!(level)).map_err(|_| {
                    Error::bad_request(
                        "invalid_header",
                        format!("Neon-Batch-Isolation-Level: expected ReadCommitted, RepeatableRead or Serializable, not {level:?}"),
                    )
                })?),
            };
            if flag(headers, "neon-batch-deferrable")? == Some(true) {
                return Err(Error::bad_request(
                    "unsupported",
                    "Neon-Batch-Deferrable: a deferrable transaction is not supported (a tenant's database has one session at a time, so a read-only serializable transaction never waits for others)",
                ));
            }
            let request = BatchRequest {
                statements: queries.into_iter().map(NeonQuery::statement).collect(),
                row_mode: RowMode::Text,
                isolation_level,
                read_only: flag(headers, "neon-batch-read-only")?.unwrap_or(false),
                statement_timeout: None,
            };
            let batch = tenants.run_sql(&tenant, work::Transaction(request), None, may_write).await?;
            let results: Vec<Value> = batch.results.into_iter().map(|r| shape(r, &asked)).collect();
            Ok(Json(json!({ "results": results })).into_response())
        }
    }
}

/// One statement's result as Neon's HTTP endpoint answers it.
fn shape(result: QueryResult, asked: &Asked) -> Value {
    let fields: Vec<Value> = result
        .fields
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "tableID": f.table_id,
                "columnID": f.column_id,
                "dataTypeID": f.data_type_id,
                "dataTypeSize": f.type_size,
                "dataTypeModifier": f.type_modifier,
                "format": "text",
            })
        })
        .collect();
    let rows: Vec<Value> = result
        .rows
        .into_iter()
        .map(|row| {
            let values: Vec<Value> = match row {
                Value::Array(values) => values
                    .into_iter()
                    .zip(&result.fields)
                    .map(|(value, field)| match value {
                        Value::String(text) if !asked.raw_text => model::values::text_to_json(&text, field.data_type_id),
                        other => other,
                    })
                    .collect(),
                other => vec![other],
            };
            if asked.array_mode {
                Value::Array(values)
            } else {
                Value::Object(result.fields.iter().map(|f| f.name.clone()).zip(values).collect::<Map<String, Value>>())
            }
        })
        .collect();
    json!({
        "command": result.command,
        "rowCount": result.row_count,
        "rows": rows,
        "fields": fields,
        "rowAsArray": asked.array_mode,
    })
}

/// An error as the driver reads it: a PostgreSQL error (or a request we
/// refuse) as a 400 with its fields at the top level; anything else as
/// every route answers it (its status and our JSON, which the driver shows
/// as text).
fn refused(err: Error) -> Response {
    if super::status_for(&err) != StatusCode::BAD_REQUEST && !matches!(err, Error::Database(_)) {
        return err.into_response();
    }
    let body = super::error_body(&err);
    let mut fields: Map<String, Value> = ["message", "code", "detail", "hint", "position"]
        .into_iter()
        .filter_map(|name| body["error"].get(name).filter(|v| !v.is_null()).map(|v| (name.to_owned(), v.clone())))
        .collect();
    fields.insert("severity".into(), json!("ERROR"));
    (StatusCode::BAD_REQUEST, Json(Value::Object(fields))).into_response()
}
