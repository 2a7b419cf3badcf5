//! One tenant's Durable Object: its PGlite engine, its pages in the
//! object's SQLite storage, and the per-tenant HTTP API (`ping`, `health`,
//! `liveness`, `readiness`, `config`, `schema`, `query`, `batch`,
//! `transaction`, `changes`, `changes/ack`).

use auth::Scope;
use model::api::{AckRequest, BatchRequest, ChangesQuery, QueryRequest, Statement};
use serde_json::json;
use worker::*;

use crate::engine::{self, Engine, Failure};
use crate::http;

/// Header the Worker names the tenant in (the object's name).
pub const TENANT_HEADER: &str = "x-tidelake-tenant";
/// Header the Worker names the caller's scope on the tenant in (`read`,
/// `write` or `admin`), once it checked the caller's token. Only the Worker
/// reaches the object, and it sets both headers on every request.
pub const SCOPE_HEADER: &str = "x-tidelake-scope";

#[durable_object]
pub struct TenantObject {
    state: State,
    env: Env,
}

impl DurableObject for TenantObject {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let tenant = req.headers().get(TENANT_HEADER)?.unwrap_or_default();
        let scope = req.headers().get(SCOPE_HEADER)?.as_deref().and_then(Scope::parse).unwrap_or(Scope::Read);
        let may_write = scope >= Scope::Write;
        let url = req.url()?;
        let route = url.path().trim_start_matches('/').to_owned();
        let key = self.key();
        match (req.method(), route.as_str()) {
            (Method::Get, "ping") => {
                let engine = engine::state(&key);
                if engine == "hibernated" {
                    // Eager but not in the way: the engine loads behind the answer.
                    let sql = self.state.storage().sql();
                    let key = key.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        if let Err(err) = engine::start(&key, sql.as_ref()).await {
                            console_error!("the engine did not start: {}", err.0);
                        }
                    });
                }
                let engine = if engine == "hibernated" { "loading".to_owned() } else { engine };
                http::json(&json!({ "ok": true, "tenant": tenant, "engine": engine }))
            }
            (Method::Get, "liveness") => http::json(&json!({ "ok": true, "tenant": tenant })),
            (Method::Get, "readiness" | "health") => {
                let engine = match self.engine().await {
                    Ok(engine) => engine,
                    Err(failure) => return http::failure(&failure),
                };
                let mut body = json!({ "ok": true, "tenant": tenant, "engine": engine::state(&key), "tier": "hot" });
                if route == "health" {
                    body["storage"] = engine.sizes();
                }
                http::json(&body)
            }
            (Method::Get, "config") => {
                let base_domain = crate::vars::setting(&self.env, "BASE_DOMAIN");
                http::json(&json!({
                    "tenant": tenant,
                    "engine": "pglite",
                    "postgresVersion": "17.5",
                    "runtime": "edge",
                    "sharedBuffers": engine::SHARED_BUFFERS,
                    "baseDomain": base_domain,
                }))
            }
            (Method::Get, "schema") => {
                self.run(|engine| {
                    engine.schema().map(|mut schema| {
                        schema["tenant"] = json!(tenant);
                        schema
                    })
                })
                .await
            }
            (Method::Post, "query") => {
                let request: QueryRequest = match read(&mut req).await? {
                    Ok(r) => r,
                    Err(resp) => return Ok(resp),
                };
                let stmt = Statement { sql: request.sql, params: request.params };
                self.run(|engine| engine.query(&stmt, request.row_mode, may_write).map(|r| json!(r))).await
            }
            (Method::Post, "batch") => {
                let request: BatchRequest = match read(&mut req).await? {
                    Ok(r) => r,
                    Err(resp) => return Ok(resp),
                };
                self.run(|engine| engine.batch(&request, may_write).map(|r| json!(r))).await
            }
            (Method::Post, "transaction") => {
                let request: BatchRequest = match read(&mut req).await? {
                    Ok(r) => r,
                    Err(resp) => return Ok(resp),
                };
                self.run(|engine| engine.transaction(&request, may_write).map(|r| json!(r))).await
            }
            (Method::Get, "changes") => {
                let query: ChangesQuery = match serde_urlencoded(url.query().unwrap_or("")) {
                    Ok(q) => q,
                    Err(message) => return http::error(400, "invalid_request", &message),
                };
                let limit = match query.checked_limit() {
                    Ok(limit) => limit,
                    Err(message) => return http::error(400, "invalid_request", &message),
                };
                self.run(|engine| engine.changes(query.since, limit).map(|page| json!(page))).await
            }
            (Method::Post, "changes/ack") => {
                if scope < Scope::Admin {
                    return http::denied(&auth::Denied::Forbidden(format!(
                        "this needs the admin scope on tenant {tenant:?}; this token has {scope}"
                    )));
                }
                let request: AckRequest = match read(&mut req).await? {
                    Ok(r) => r,
                    Err(resp) => return Ok(resp),
                };
                if let Err(message) = model::log::check_consumer(&request.consumer)
                    .and_then(|()| model::api::checked_lsn("lsn", request.lsn).map(drop))
                {
                    return http::error(400, "invalid_request", &message);
                }
                self.run(|engine| {
                    engine.acknowledge(&request.consumer, request.lsn).map(|stats| {
                        json!({ "tenant": tenant, "consumer": request.consumer, "changeLog": stats })
                    })
                })
                .await
            }
            (_, "changes/ack") => http::error(405, "method_not_allowed", "method not allowed on this endpoint"),
            (_, "ping" | "liveness" | "readiness" | "health" | "config" | "schema" | "query" | "batch" | "transaction" | "changes") => {
                http::error(405, "method_not_allowed", "method not allowed on this endpoint")
            }
            _ => http::error(404, "not_found", "no such endpoint"),
        }
    }
}

impl TenantObject {
    fn key(&self) -> String {
        self.state.id().to_string()
    }

    async fn engine(&self) -> std::result::Result<Engine, Failure> {
        let sql = self.state.storage().sql();
        engine::start(&self.key(), sql.as_ref()).await.map_err(Failure::Ours)
    }

    /// Run work on the engine, store what it changed, then answer: the
    /// object's output gate holds the answer until the stored pages are
    /// durable, so nothing is acknowledged that a restart could lose.
    async fn run(
        &self,
        work: impl FnOnce(&Engine) -> std::result::Result<serde_json::Value, Failure>,
    ) -> Result<Response> {
        let engine = match self.engine().await {
            Ok(engine) => engine,
            Err(failure) => return http::failure(&failure),
        };
        let answer = work(&engine);
        if let Err(err) = engine.persist() {
            return http::failure(&Failure::Ours(err));
        }
        match answer {
            Ok(body) => http::json(&body),
            Err(failure) => http::failure(&failure),
        }
    }
}

/// The body as the endpoint's JSON, or the answer refusing it.
async fn read<T: serde::de::DeserializeOwned>(req: &mut Request) -> Result<std::result::Result<T, Response>> {
    let bytes = req.bytes().await?;
    Ok(match model::api::read_json(&bytes) {
        Ok(value) => Ok(value),
        Err(err) => Err(http::error(400, err.code, &err.message)?),
    })
}

/// A query string as a typed query (`since=1&limit=2`).
fn serde_urlencoded<T: serde::de::DeserializeOwned>(query: &str) -> std::result::Result<T, String> {
    let mut map = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let value = v.parse::<u64>().map(serde_json::Value::from).unwrap_or_else(|_| serde_json::Value::from(v));
        map.insert(k.to_owned(), value);
    }
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| format!("invalid query string: {e}"))
}
