//! One tenant's Durable Object: its PGlite engine, its pages in the
//! object's SQLite storage, and the per-tenant HTTP API (`ping`, `health`,
//! `liveness`, `readiness`, `config`, `schema`, `query`, `batch`,
//! `transaction`, `changes`, `changes/ack`).

use auth::Scope;
use model::api::{AckRequest, BatchRequest, ChangesQuery, QueryRequest, Statement};
use serde_json::json;
use worker::*;

use crate::directory;
use crate::engine::{self, Engine, Failure};
use crate::http;
use crate::socket;
use crate::tiers;

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
    access: tiers::Access,
}

impl DurableObject for TenantObject {
    fn new(state: State, env: Env) -> Self {
        Self { state, env, access: tiers::Access::default() }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let tenant = req.headers().get(TENANT_HEADER)?.unwrap_or_default();
        let scope = req.headers().get(SCOPE_HEADER)?.as_deref().and_then(Scope::parse).unwrap_or(Scope::Read);
        let may_write = scope >= Scope::Write;
        let url = req.url()?;
        let route = url.path().trim_start_matches('/').to_owned();
        let key = self.key();
        // What needs the tenant's data keeps it hot (health and config do not).
        if matches!(route.as_str(), "ping" | "schema" | "query" | "batch" | "transaction" | "changes" | "changes/ack" | "ws") {
            tiers::touch(&self.state, &self.env, &self.access, &tenant).await?;
        }
        match (req.method(), route.as_str()) {
            (Method::Get, "ping") => {
                // Answers at once; never creates a tenant.
                let stored = match tiers::stored(&self.state, false) {
                    Ok(stored) => stored,
                    Err(err) => return http::failure(&Failure::Ours(engine::Ours(format!("what the object stores: {err}")))),
                };
                let mut engine = engine::state(&key);
                if engine == "hibernated" && stored.exists {
                    // Eager but not in the way: the engine loads (and the
                    // tenant comes back from R2) behind the answer.
                    let storage = tiers::storage(&self.state);
                    let bucket = tiers::bucket(&self.env);
                    let limits = self.limits().unwrap_or_default();
                    let key = key.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        if let Err(failure) = engine::start(&key, &storage, &bucket, limits).await {
                            console_error!("the engine did not start: {failure:?}");
                        }
                    });
                    engine = "loading".to_owned();
                }
                http::json(&json!({ "ok": true, "tenant": tenant, "engine": engine, "exists": stored.exists }))
            }
            (Method::Get, "liveness") => http::json(&json!({ "ok": true, "tenant": tenant })),
            // The edge has no start-up to wait for: an object is ready.
            (Method::Get, "readiness") => http::json(&json!({ "ok": true, "runtime": "ready" })),
            (Method::Get, "health") => match self.health(&tenant).await {
                Ok(status) => http::json(&json!({ "ok": true, "runtime": "ready", "tenant": status })),
                Err(err) => http::failure(&Failure::Ours(engine::Ours(format!("the tenant's health: {err}")))),
            },
            (Method::Get, "config") => {
                let base_domain = crate::vars::setting(&self.env, "BASE_DOMAIN");
                let limits = self.limits().ok();
                http::json(&json!({
                    "tenant": tenant,
                    "engine": "pglite",
                    "postgresVersion": "17.5",
                    "platform": "edge",
                    "maxBodyBytes": crate::router::max_body_bytes(&self.env).ok(),
                    "maxResultBytes": limits.map(|l| l.max_result_bytes),
                    "maxResultRows": limits.map(|l| l.max_result_rows),
                    "engineMemoryBytes": limits.map(|l| l.engine_memory),
                    "sharedBuffers": engine::SHARED_BUFFERS,
                    "baseDomain": base_domain,
                }))
            }
            (Method::Get, "schema" | "changes") | (Method::Post, "changes/ack") if !self.exists()? => {
                http::error(404, "tenant_not_found", &format!("tenant {tenant} does not exist: its first query creates it"))
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
                self.run_writing(&tenant, may_write, |engine| engine.query(&stmt, request.row_mode, may_write).map(|r| json!(r)))
                    .await
            }
            (Method::Post, "batch") => {
                let request: BatchRequest = match read(&mut req).await? {
                    Ok(r) => r,
                    Err(resp) => return Ok(resp),
                };
                self.run_writing(&tenant, may_write, |engine| engine.batch(&request, may_write).map(|r| json!(r))).await
            }
            (Method::Post, "transaction") => {
                let request: BatchRequest = match read(&mut req).await? {
                    Ok(r) => r,
                    Err(resp) => return Ok(resp),
                };
                self.run_writing(&tenant, may_write, |engine| engine.transaction(&request, may_write).map(|r| json!(r)))
                    .await
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
            (Method::Get, "ws") => {
                let upgrade = req.headers().get("upgrade")?;
                if !upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
                    return http::error(426, "upgrade_required", "this endpoint speaks WebSocket: send an Upgrade request");
                }
                socket::accept(&self.state, &tenant, may_write)
            }
            (_, "changes/ack") => http::error(405, "method_not_allowed", "method not allowed on this endpoint"),
            (_, "ping" | "liveness" | "readiness" | "health" | "config" | "schema" | "query" | "batch" | "transaction" | "changes" | "ws") => {
                http::error(405, "method_not_allowed", "method not allowed on this endpoint")
            }
            _ => http::error(404, "not_found", "no such endpoint"),
        }
    }

    /// Tell the tenant directory where the change log stands (set by
    /// [`directory::note`]).
    async fn alarm(&self) -> Result<Response> {
        directory::report(&self.state, &self.env).await?;
        tiers::tick(&self.state, &self.env, &self.access, &self.key()).await?;
        Response::ok("")
    }

    /// A message on a socket the runtime holds for the object (it may have
    /// been evicted meanwhile: the socket's attachment has its state).
    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let limit = crate::router::max_body_bytes(&self.env).unwrap_or(model::api::DEFAULT_MAX_BODY_BYTES);
        let size = match &message {
            WebSocketIncomingMessage::String(text) => text.len(),
            WebSocketIncomingMessage::Binary(bytes) => bytes.len(),
        };
        if size > limit {
            // As the server's WebSocket: a message over the body limit closes
            // the connection with 1009 (message too big).
            let _ = ws.close(Some(1009), Some("message too big"));
            return Ok(());
        }
        let socket::Asked::Work(message) = socket::read(&ws, message) else { return Ok(()) };
        tiers::touch(&self.state, &self.env, &self.access, &socket::tenant(&ws)).await?;
        let engine = match self.engine().await {
            Ok(engine) => engine,
            Err(failure) => {
                socket::refuse(&ws, &message, &failure);
                return Ok(());
            }
        };
        let committed = socket::answer(&ws, &engine, message);
        if let Err(err) = self.settle(&engine, &socket::tenant(&ws), committed).await {
            console_error!("after a WebSocket message: {}", err.0);
        }
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        // Complete the closing handshake (1005/1006 are not sent).
        let code = u16::try_from(code).ok().filter(|c| *c != 1005 && *c != 1006).unwrap_or(1000);
        let _ = ws.close(Some(code), Some("closed"));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, error: Error) -> Result<()> {
        console_error!("a WebSocket failed: {error}");
        Ok(())
    }
}

impl TenantObject {
    fn key(&self) -> String {
        self.state.id().to_string()
    }

    /// The tenant has data (reads of one that does not create nothing).
    fn exists(&self) -> Result<bool> {
        Ok(engine::state(&self.key()) != "hibernated" || tiers::stored(&self.state, false)?.exists)
    }

    /// The tenant as the server's `health` shows one, without waking it:
    /// its engine, tier, the bytes the object stores (`diskBytes`), when it
    /// was last used, and its change log if its engine runs.
    async fn health(&self, tenant: &str) -> Result<serde_json::Value> {
        let key = self.key();
        let stored = tiers::stored(&self.state, true)?;
        let mut status = json!({
            "tenant": tenant,
            "engine": engine::state(&key),
            "exists": stored.exists,
            "diskBytes": stored.stored_bytes.unwrap_or(0),
            "changeLog": null,
        });
        let tier = tiers::status(&self.state, &self.env, &self.access, &stored).await?;
        let fields = status.as_object_mut().expect("an object");
        fields.extend(tier.as_object().cloned().unwrap_or_default());
        if engine::state(&key) == "loaded"
            && let Ok(engine) = self.engine().await
        {
            fields.extend(engine.sizes().as_object().cloned().unwrap_or_default());
            match engine.log_stats() {
                Ok(stats) => status["changeLog"] = json!(stats),
                Err(failure) => console_error!("the change log's extent: {failure:?}"),
            }
        }
        Ok(status)
    }

    async fn engine(&self) -> std::result::Result<Engine, Failure> {
        let limits = self.limits().map_err(|message| Failure::Ours(engine::Ours(message)))?;
        engine::start(&self.key(), &tiers::storage(&self.state), &tiers::bucket(&self.env), limits).await
    }

    /// `MAX_RESULT_BYTES` (a size) and `MAX_RESULT_ROWS`, the server's
    /// defaults unless set, and `ENGINE_MEMORY` (a size).
    fn limits(&self) -> std::result::Result<engine::Limits, String> {
        let mut limits = engine::Limits::default();
        if let Some(text) = crate::vars::setting(&self.env, "MAX_RESULT_BYTES") {
            limits.max_result_bytes = model::parse_bytes(&text).map_err(|e| format!("MAX_RESULT_BYTES: {e}"))?;
        }
        if let Some(text) = crate::vars::setting(&self.env, "ENGINE_MEMORY") {
            limits.engine_memory = model::parse_bytes(&text).map_err(|e| format!("ENGINE_MEMORY: {e}"))?;
        }
        if let Some(text) = crate::vars::setting(&self.env, "MAX_RESULT_ROWS") {
            limits.max_result_rows = text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("MAX_RESULT_ROWS: {text:?} is not a positive number of rows"))?;
        }
        Ok(limits)
    }

    /// Run work on the engine, store what it changed, then answer: the
    /// object's output gate holds the answer until the stored pages are
    /// durable, so nothing is acknowledged that a restart could lose.
    async fn run(
        &self,
        work: impl FnOnce(&Engine) -> std::result::Result<serde_json::Value, Failure>,
    ) -> Result<Response> {
        self.run_writing("", false, work).await
    }

    /// `run` for work that may commit (a caller who may write): where the
    /// change log then stands is noted for the tenant directory, and so for
    /// the lake ([`crate::directory`]), whether the work succeeded or not (a
    /// batch commits what came before its failure).
    async fn run_writing(
        &self,
        tenant: &str,
        may_write: bool,
        work: impl FnOnce(&Engine) -> std::result::Result<serde_json::Value, Failure>,
    ) -> Result<Response> {
        let engine = match self.engine().await {
            Ok(engine) => engine,
            Err(failure) => return http::failure(&failure),
        };
        let answer = work(&engine);
        if let Err(err) = self.settle(&engine, tenant, may_write).await {
            return http::failure(&Failure::Ours(err));
        }
        match answer {
            Ok(body) => http::json(&body),
            Err(failure) => http::failure(&failure),
        }
    }
}

impl TenantObject {
    /// After work on the engine: store what it changed (before anything
    /// leaves the object: the output gate holds answers and messages until
    /// the stored pages are durable). After work that may have committed
    /// (a writer's, that stored pages), note where the change log stands for
    /// the tenant directory (and so the lake), and bring every subscriber up
    /// to date.
    async fn settle(&self, engine: &Engine, tenant: &str, may_have_committed: bool) -> std::result::Result<(), engine::Ours> {
        // A commit writes its WAL record at once: work that stored no page
        // committed nothing (a read costs no more than this).
        let written = engine.persist()?;
        let may_have_committed = may_have_committed && written > 0;
        let position = may_have_committed.then(|| engine.position());
        match position {
            Some(Ok(position)) => {
                directory::note(&self.state, tenant, position)
                    .await
                    .map_err(|e| engine::Ours(format!("note the change log's position: {e}")))?;
            }
            Some(Err(failure)) => console_error!("where the change log stands is unknown: {failure:?}"),
            None => {}
        }
        if may_have_committed {
            socket::publish(&self.state, engine);
            // Reading the log may touch pages too.
            engine.persist()?;
        }
        Ok(())
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
