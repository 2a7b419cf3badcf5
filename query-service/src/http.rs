//! `POST /sql`: `{"sql": "…"}` → the answer as JSON (default), Arrow IPC
//! stream (`Accept: application/vnd.apache.arrow.stream`) or CSV
//! (`Accept: text/csv`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::WriterBuilder as JsonWriterBuilder;
use datafusion::arrow::json::writer::JsonArray;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::QueryError;
use crate::{Answer, QueryService};

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

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

/// `GET /tables`: every lake table, by tenant.
async fn tables(State(service): State<Arc<QueryService>>) -> Response {
    match service.tables().await {
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
async fn growth(State(service): State<Arc<QueryService>>, query: SeriesQuery) -> Response {
    series(&service, "growth", query).await
}

/// `GET /activity?table=…&start=…&end=…&interval=…`.
async fn activity(State(service): State<Arc<QueryService>>, query: SeriesQuery) -> Response {
    series(&service, "activity", query).await
}

async fn series(service: &QueryService, function: &str, query: SeriesQuery) -> Response {
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
    match service.sql(&sql).await.and_then(|answer| json_answer(&answer)) {
        Ok(body) => axum::Json(body).into_response(),
        Err(err) => err.into_response(),
    }
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
    query: Result<Query<DiffRequest>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(request)) = query else {
        let message = "expected ?table=<tenant>.<table>&from=<timestamp or LSN>&to=<timestamp or LSN>";
        return QueryError::Sql(message.into()).into_response();
    };
    let bound = |v: &str| {
        if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) { v.to_owned() } else { literal(v) }
    };
    let sql = format!("SELECT * FROM table_diff({}, {}, {})", literal(&request.table), bound(&request.from), bound(&request.to));
    match service.sql(&sql).await.and_then(|answer| json_answer(&answer)) {
        Ok(body) => axum::Json(body).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn sql(State(service): State<Arc<QueryService>>, headers: HeaderMap, body: Bytes) -> Response {
    let request: SqlRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let body = json!({"error": {"code": "malformed_json", "message": format!("expected {{\"sql\": \"…\"}}: {e}")}});
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let answer = match service.sql(&request.sql).await {
        Ok(answer) => answer,
        Err(err) => return err.into_response(),
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let encoded = if accept.contains(ARROW_STREAM) {
        arrow_stream(&answer).map(|bytes| ([(header::CONTENT_TYPE, ARROW_STREAM)], bytes).into_response())
    } else if accept.contains("text/csv") {
        csv(&answer).map(|bytes| ([(header::CONTENT_TYPE, "text/csv")], bytes).into_response())
    } else {
        json_answer(&answer).map(|body| axum::Json(body).into_response())
    };
    encoded.unwrap_or_else(IntoResponse::into_response)
}

/// `{"columns": [{"name", "type"}], "rows": [{…}], "rowCount": n}`.
pub fn json_answer(answer: &Answer) -> Result<Value, QueryError> {
    // NULLs are written as null, not left out.
    let mut writer = JsonWriterBuilder::new().with_explicit_nulls(true).build::<_, JsonArray>(Vec::new());
    for batch in &answer.batches {
        writer.write(batch).map_err(|e| QueryError::Internal(e.to_string()))?;
    }
    writer.finish().map_err(|e| QueryError::Internal(e.to_string()))?;
    let bytes = writer.into_inner();
    let rows: Value = if bytes.is_empty() {
        json!([])
    } else {
        serde_json::from_slice(&bytes).map_err(|e| QueryError::Internal(e.to_string()))?
    };
    let columns: Vec<Value> = answer
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    Ok(json!({"columns": columns, "rows": rows, "rowCount": answer.row_count()}))
}

fn arrow_stream(answer: &Answer) -> Result<Vec<u8>, QueryError> {
    let mut writer =
        StreamWriter::try_new(Vec::new(), &answer.schema).map_err(|e| QueryError::Internal(e.to_string()))?;
    for batch in &answer.batches {
        writer.write(batch).map_err(|e| QueryError::Internal(e.to_string()))?;
    }
    writer.into_inner().map_err(|e| QueryError::Internal(e.to_string()))
}

fn csv(answer: &Answer) -> Result<Vec<u8>, QueryError> {
    let mut writer = CsvWriterBuilder::new().with_header(true).build(Vec::new());
    for batch in &answer.batches {
        writer.write(batch).map_err(|e| QueryError::Internal(e.to_string()))?;
    }
    Ok(writer.into_inner())
}
