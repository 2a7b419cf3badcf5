//! The OLTP HTTP API of DESIGN.md §5: per-tenant routes under `/t/{tenant}/…`
//! (or the same paths with `X-Tenant-Id` or a tenant subdomain), plus the
//! server-wide liveness, readiness, health and metrics.

mod changes;
mod error;
mod extract;
mod neon;
mod restore;
pub(crate) mod routing;
mod ws;

pub use error::{error_body, status_for};
pub use routing::resolve as resolve_tenant;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::actor::work;
use crate::error::{Error, Result};
use crate::engine::ReadOnly;
use crate::protocol::{BatchRequest, EngineState, QueryRequest, QueryResult, RowMode, Statement, requested_timeout};
use crate::tenants::Tenants;
use auth::http::Caller;
use extract::{AdminTenant, JsonBody, MaybeTenant, SqlTenant, Tenant, WriteTenant};

type AppState = Arc<Tenants>;

/// The router for the OLTP tier, ready to be served or merged.
pub fn router(tenants: Arc<Tenants>) -> Router {
    let limit = tenants.config().max_body_bytes;
    let per_tenant = Router::new()
        .route("/ping", get(ping))
        .route("/config", get(config))
        .route("/schema", get(schema))
        .route("/query", post(query).get(query_get))
        .route("/batch", post(batch))
        .route("/transaction", post(transaction))
        .route("/cancel", post(cancel))
        .route("/changes", get(changes::changes))
        .route("/changes/ack", post(changes::acknowledge))
        .route("/backups", get(list_backups).post(take_backup))
        .route("/restore", post(restore::restore))
        .route("/bookmark", get(restore::bookmark))
        .route("/migrate", post(migrate))
        .route("/migrate/down", post(migrate_down))
        .route("/ws", get(ws::ws));
    Router::new()
        .route("/t/{tenant}/health", get(health))
        .route("/t/{tenant}/liveness", get(liveness))
        .route("/t/{tenant}/readiness", get(readiness))
        .nest("/t/{tenant}", per_tenant.clone())
        .merge(per_tenant)
        .route("/neon/sql", post(neon::sql))
        .route("/health", get(health))
        .route("/liveness", get(liveness))
        .route("/readiness", get(readiness))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // A panic in a handler is one request's 500, never a dropped
        // connection (nor, since locks recover from poisoning, a wedged tenant).
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(tenants)
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let body = json!({"error": {"code": "internal_error", "message": "the server failed while answering this request"}});
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

async fn not_found() -> Response {
    let body = json!({"error": {"code": "not_found", "message": "no such endpoint"}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn method_not_allowed() -> Response {
    let body = json!({"error": {"code": "method_not_allowed", "message": "method not allowed on this endpoint"}});
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// Answers at once from the registry; never waits for or wakes the engine.
async fn ping(State(tenants): State<AppState>, Tenant(tenant): Tenant) -> Json<Value> {
    let (engine, exists) = tenants.engine_state(&tenant);
    Json(json!({ "ok": true, "tenant": tenant.as_str(), "engine": engine, "exists": exists }))
}

/// Tenant health (with a tenant: `read` on it) or server health with
/// every tenant's state (`admin` over all).
async fn health(
    State(tenants): State<AppState>,
    MaybeTenant(tenant): MaybeTenant,
    Caller(caller): Caller,
) -> Result<Json<Value>> {
    match &tenant {
        Some(tenant) => caller.may(auth::Scope::Read, tenant.as_str())?,
        None => caller.may_administer()?,
    }
    let runtime = runtime_state(&tenants);
    Ok(match tenant {
        Some(tenant) => {
            let mut status = tenants.status(Some(&tenant)).pop();
            // An open, idle tenant reports its change log as it is now;
            // health never waits behind a tenant's work.
            if let Some(s) = status.as_mut()
                && s.engine == EngineState::Loaded
                && s.in_flight == 0
                && s.change_log.is_some()
                && let Ok(Some(Ok(stats))) =
                    tokio::time::timeout(Duration::from_millis(250), tenants.peek_log_stats(&tenant)).await
            {
                s.change_log = Some(stats);
            }
            Json(json!({ "ok": true, "runtime": runtime, "tenant": status }))
        }
        None => {
            let list = tenants.status(None);
            let mut body = json!({
                "ok": true,
                "runtime": runtime,
                "openTenants": tenants.open_count(),
                "maxOpenTenants": tenants.config().max_open_tenants,
                "tenants": list,
            });
            if let Some(set) = &tenants.config().migrations {
                let names: Vec<&str> = set.list.iter().map(|m| m.name.as_str()).collect();
                body["migrations"] = json!({ "layout": set.layout, "latest": set.latest(), "names": names });
            }
            for (key, value) in tenants.server_reports() {
                body[key] = value;
            }
            Json(body)
        }
    })
}

/// `POST /t/{tenant}/migrate`: bring the tenant to the deployment's
/// migrations now (opening it if closed); where it stands after.
async fn migrate(State(tenants): State<AppState>, AdminTenant(tenant, _): AdminTenant) -> Result<Json<Value>> {
    let status = tenants.migrate(&tenant).await?;
    Ok(Json(json!({ "tenant": tenant.as_str(), "migrations": status })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DownRequest {
    /// The version to go down to (0: before the first).
    to: i64,
}

/// `POST /t/{tenant}/migrate/down {"to": N}`: undo the tenant's migrations
/// newer than N by their down migrations; it is held there until `migrate
/// up` names it.
async fn migrate_down(
    State(tenants): State<AppState>,
    AdminTenant(tenant, _): AdminTenant,
    JsonBody(req): JsonBody<DownRequest>,
) -> Result<Json<Value>> {
    let undone = tenants.migrate_down(&tenant, req.to).await?;
    Ok(Json(json!({ "tenant": tenant.as_str(), "migrations": undone.status, "undone": undone.undone, "failed": undone.failed })))
}

/// `GET /t/{tenant}/backups`: the tenant's base backups, oldest first.
async fn list_backups(State(tenants): State<AppState>, AdminTenant(tenant, _): AdminTenant) -> Result<Json<Value>> {
    let backups = tenants.backups(&tenant).await?;
    Ok(Json(json!({ "tenant": tenant.as_str(), "tier": tenants.tier(&tenant), "backups": backups })))
}

/// `POST /t/{tenant}/backups`: take a base backup now.
async fn take_backup(State(tenants): State<AppState>, AdminTenant(tenant, _): AdminTenant) -> Result<Json<Value>> {
    tenants.must_exist(&tenant)?;
    let manifest = tenants.backup_on_request(&tenant).await?;
    Ok(Json(json!({ "tenant": tenant.as_str(), "backup": manifest })))
}

async fn liveness(MaybeTenant(tenant): MaybeTenant) -> Json<Value> {
    match tenant {
        Some(t) => Json(json!({ "ok": true, "tenant": t.as_str() })),
        None => Json(json!({ "ok": true })),
    }
}

/// Ready once the engine runtime has preloaded and the template is prepared.
async fn readiness(State(tenants): State<AppState>, MaybeTenant(_): MaybeTenant) -> Response {
    let runtime = runtime_state(&tenants);
    let ready = runtime == "ready";
    let mut body = json!({ "ok": ready, "runtime": runtime });
    if let Err(err) = tenants.runtime().readiness() {
        body["error"] = json!(err);
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

fn runtime_state(tenants: &Tenants) -> &'static str {
    match tenants.runtime().readiness() {
        Ok(Some(_)) => "ready",
        Ok(None) => "loading",
        Err(_) => "failed",
    }
}

async fn config(State(tenants): State<AppState>, Tenant(tenant): Tenant) -> Json<Value> {
    let c = tenants.config();
    Json(json!({
        "tenant": tenant.as_str(),
        "engine": "pglite",
        "postgresVersion": "17.5",
        "hibernateAfterMs": c.hibernate_after.as_millis() as u64,
        "maxOpenTenants": c.max_open_tenants,
        "maxBodyBytes": c.max_body_bytes,
        "queueTimeoutMs": c.queue_timeout.as_millis() as u64,
        "sharedBuffers": c.engine.shared_buffers,
        "baseDomain": c.base_domain,
    }))
}

async fn schema(State(tenants): State<AppState>, Tenant(tenant): Tenant) -> Result<Json<Value>> {
    tenants.must_exist(&tenant)?;
    let mut schema = tenants.run(&tenant, work::Schema).await?;
    schema["tenant"] = json!(tenant.as_str());
    Ok(Json(schema))
}

async fn query(
    State(tenants): State<AppState>,
    SqlTenant { tenant, may_write }: SqlTenant,
    headers: HeaderMap,
    JsonBody(req): JsonBody<QueryRequest>,
) -> Result<Response> {
    let timeout = requested_timeout(req.statement_timeout).map_err(|m| Error::bad_request("invalid_request", m))?;
    let work = work::TaggedQuery(work::Query {
        stmt: Statement {
            sql: req.sql,
            params: req.params,
        },
        row_mode: req.row_mode,
    });
    let (result, etag) = tenants.run_sql(&tenant, work, timeout, may_write).await?;
    Ok(tagged_answer(&headers, result, etag, false))
}

/// `GET query?sql=…&params=[…]&rowMode=…&statementTimeout=…`: a read by
/// URL, so browsers and caches can keep its answer. The statement runs
/// read-only (one that writes fails with 25006).
async fn query_get(
    State(tenants): State<AppState>,
    SqlTenant { tenant, .. }: SqlTenant,
    headers: HeaderMap,
    query: std::result::Result<Query<QueryParams>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = query.map_err(|e| Error::bad_request("invalid_request", e.body_text()))?;
    let params = match q.params.as_deref() {
        None => Vec::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(params)) => params,
            _ => return Err(Error::bad_request("invalid_request", "params must be a JSON array (URL-encoded)")),
        },
    };
    let timeout = requested_timeout(q.statement_timeout).map_err(|m| Error::bad_request("invalid_request", m))?;
    let work = work::TaggedQuery(work::Query { stmt: Statement { sql: q.sql, params }, row_mode: q.row_mode });
    let (result, etag) = tenants.run_sql_reading(&tenant, work, timeout, Some(ReadOnly::Get)).await?;
    Ok(tagged_answer(&headers, result, etag, true))
}

/// `GET query`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct QueryParams {
    sql: String,
    /// The parameters as a JSON array.
    params: Option<String>,
    #[serde(default)]
    row_mode: RowMode,
    statement_timeout: Option<u64>,
}

/// A query's answer with its ETag (`Cache-Control: private, no-cache`: a
/// cache keeps it and asks again each time), or 304 with no body when the
/// request's `If-None-Match` names it. An answer without a tag is not to
/// be stored when it came by GET.
fn tagged_answer(headers: &HeaderMap, result: QueryResult, etag: Option<String>, get: bool) -> Response {
    let Some(etag) = etag else {
        return if get {
            ([(header::CACHE_CONTROL, "no-store")], Json(result)).into_response()
        } else {
            Json(result).into_response()
        };
    };
    let cache = [(header::ETAG, etag.clone()), (header::CACHE_CONTROL, "private, no-cache".to_owned())];
    if if_none_match(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, Json(result)).into_response()
}

/// Whether `If-None-Match` names `etag` (weak comparison: `W/` aside), or is `*`.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || bare(tag) == bare(etag))
}

/// `POST /t/{tenant}/cancel`: stop the statement the tenant runs now.
async fn cancel(State(tenants): State<AppState>, WriteTenant(tenant): WriteTenant) -> Json<Value> {
    let cancelled = tenants.cancel(&tenant);
    Json(json!({ "tenant": tenant.as_str(), "cancelled": cancelled }))
}

async fn batch(
    State(tenants): State<AppState>,
    SqlTenant { tenant, may_write }: SqlTenant,
    JsonBody(req): JsonBody<BatchRequest>,
) -> Result<Response> {
    if req.isolation_level.is_some() || req.read_only {
        return Err(Error::bad_request(
            "invalid_request",
            "isolationLevel and readOnly apply to POST transaction only",
        ));
    }
    let timeout = requested_timeout(req.statement_timeout).map_err(|m| Error::bad_request("invalid_request", m))?;
    let result = tenants.run_sql(&tenant, work::Batch(req), timeout, may_write).await?;
    Ok(Json(result).into_response())
}

async fn transaction(
    State(tenants): State<AppState>,
    SqlTenant { tenant, may_write }: SqlTenant,
    JsonBody(req): JsonBody<BatchRequest>,
) -> Result<Response> {
    let timeout = requested_timeout(req.statement_timeout).map_err(|m| Error::bad_request("invalid_request", m))?;
    let result = tenants.run_sql(&tenant, work::Transaction(req), timeout, may_write).await?;
    Ok(Json(result).into_response())
}

/// Prometheus text exposition (`admin` over all tenants).
async fn metrics(State(tenants): State<AppState>, Caller(caller): Caller) -> Result<Response> {
    caller.may_administer()?;
    let out = tenants.encode_metrics();
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out).into_response())
}
