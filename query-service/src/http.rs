//! `POST /sql`: `{"sql": "…"}` → the answer as JSON (default), Arrow IPC
//! stream (`Accept: application/vnd.apache.arrow.stream`) or CSV
//! (`Accept: text/csv`); `GET /diff`, `/growth`, `/activity`: the table
//! functions as JSON. Each reads only the tenants the caller's token
//! reaches. Every answer is bounded by the query timeout and the answer
//! caps (`encode`).

use std::sync::Arc;

use auth::Principal;
use auth::http::Caller;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

pub use crate::encode::ARROW_STREAM;
use crate::encode::{Encoding, encode};
use crate::error::QueryError;
use crate::{QueryService, rewrite};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

pub fn router(service: Arc<QueryService>) -> Router {
    Router::new()
        .route("/sql", post(sql))
        .route("/diff", get(diff))
        .route("/growth", get(growth))
        .route("/activity", get(activity))
        .route("/tables", get(tables))
        .route("/dashboard", get(dashboard))
        .with_state(service)
}

/// The dashboard: one page, no external resources.
async fn dashboard() -> Response {
    let page = include_str!("dashboard.html");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], page).into_response()
}

/// `GET /tables`: every lake table the caller may read, by tenant.
async fn tables(State(service): State<Arc<QueryService>>, Caller(who): Caller) -> Response {
    match service.tables(&who).await {
        Ok(tables) => {
            let tables: Vec<Value> = tables.into_iter().map(|(tenant, table)| json!({"tenant": tenant, "table": table})).collect();
            axum::Json(json!({ "tables": tables })).into_response()
        }
        Err(err) => err.into_response(),
    }
}

#[derive(Deserialize)]
struct SeriesRequest {
    table: String,
    start: String,
    end: String,
    #[serde(default = "one_day")]
    interval: String,
}

fn one_day() -> String {
    "1 day".to_owned()
}

type SeriesQuery = Result<Query<SeriesRequest>, axum::extract::rejection::QueryRejection>;

/// `GET /growth?table=<table or tenant.table>&start=…&end=…&interval=1 day`.
async fn growth(State(service): State<Arc<QueryService>>, Caller(who): Caller, query: SeriesQuery) -> Response {
    series(&service, "growth", query, &who).await
}

/// `GET /activity?table=…&start=…&end=…&interval=…`.
async fn activity(State(service): State<Arc<QueryService>>, Caller(who): Caller, query: SeriesQuery) -> Response {
    series(&service, "activity", query, &who).await
}

async fn series(service: &QueryService, function: &str, query: SeriesQuery, who: &Principal) -> Response {
    let Ok(Query(r)) = query else {
        let message = "expected ?table=<table or tenant.table>&start=<timestamp>&end=<timestamp>&interval=<e.g. 1 day>";
        return QueryError::Sql(message.into()).into_response();
    };
    let sql = format!(
        "SELECT * FROM {function}({}, {}, {}, {}) ORDER BY \"tenant\", \"at\"",
        literal(&r.table),
        literal(&r.start),
        literal(&r.end),
        literal(&r.interval)
    );
    answer(service, &sql, Encoding::Json, who).await
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[derive(Deserialize)]
struct DiffRequest {
    table: String,
    from: String,
    to: String,
}

/// `GET /diff?table=<tenant>.<table>&from=<instant|lsn>&to=<instant|lsn>`:
/// `table_diff` as JSON, by key.
async fn diff(
    State(service): State<Arc<QueryService>>,
    Caller(who): Caller,
    query: Result<Query<DiffRequest>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(request)) = query else {
        let message = "expected ?table=<tenant>.<table>&from=<timestamp or LSN>&to=<timestamp or LSN>";
        return QueryError::Sql(message.into()).into_response();
    };
    // Digits are an LSN, anything else an instant.
    let bound = |v: &str| {
        if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) { rewrite::lsn(v).map(|n| n.to_string()) } else { Ok(literal(v)) }
    };
    let (from, to) = match (bound(&request.from), bound(&request.to)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(err), _) | (_, Err(err)) => return QueryError::from(err).into_response(),
    };
    let sql = format!("SELECT * FROM table_diff({}, {from}, {to})", literal(&request.table));
    answer(&service, &sql, Encoding::Json, &who).await
}

async fn sql(State(service): State<Arc<QueryService>>, Caller(who): Caller, headers: HeaderMap, body: Bytes) -> Response {
    let request: SqlRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let body = json!({"error": {"code": "malformed_json", "message": format!("expected {{\"sql\": \"…\"}}: {e}")}});
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    answer(&service, &request.sql, Encoding::from_accept(accept), &who).await
}

/// Run `sql` and answer with it encoded, or with why not.
async fn answer(service: &QueryService, sql: &str, encoding: Encoding, who: &Principal) -> Response {
    let encoded = match service.start(sql, who).await {
        Ok(stream) => encode(stream, encoding, service.limits()).await,
        Err(err) => Err(err),
    };
    match encoded {
        Ok(bytes) => ([(header::CONTENT_TYPE, encoding.content_type())], bytes).into_response(),
        Err(err) => err.into_response(),
    }
}
