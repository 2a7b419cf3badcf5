//! Point-in-time recovery over HTTP: `POST restore` and `GET bookmark`.
//!
//! A restore runs in a task of its own, so a client that goes away does
//! not stop it half-way. With `Accept: application/x-ndjson` the answer
//! streams one JSON line per step (`{"phase":"replaying","done":…,"total":…}`)
//! and ends with `{"done":<report>}` or `{"error":{…}}`; otherwise it is the
//! report alone once the restore has finished.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::error_body;
use super::extract::{AdminTenant, JsonBody};
use super::routing::resolve;
use crate::error::{Error, Result};
use crate::tenants::{Progress, Target};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// A timestamp, or a bookmark `lsn:<n>`.
    pub to: String,
    /// Make a branch: a new tenant at that instant, the original untouched.
    #[serde(default)]
    pub into: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct BookmarkQuery {
    pub at: Option<String>,
}

/// `POST /t/{tenant}/restore` `{"to": …, "into": …}`.
pub async fn restore(
    State(tenants): State<AppState>,
    AdminTenant(tenant, caller): AdminTenant,
    headers: HeaderMap,
    JsonBody(req): JsonBody<RestoreRequest>,
) -> Result<Response> {
    // Whether the tenant exists is the restore's to tell: a tenant of the
    // edge has no database here, only history in the lake.
    let target = Target::parse(&req.to)?;
    let into = match req.into.as_deref() {
        Some(name) => {
            let into = resolve(tenants.config(), Some(name), None, None)?
                .ok_or_else(|| Error::bad_request("invalid_request", "into names no tenant"))?;
            // A branch is a new tenant: the caller must administer it too.
            caller.may(auth::Scope::Admin, into.as_str())?;
            Some(into)
        }
        None => None,
    };
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let task = tokio::spawn({
        let tx = tx.clone();
        async move {
            let report = |step: Progress| {
                let _ = tx.send(json!(step));
            };
            tenants.restore(&tenant, target, into.as_ref(), &report).await
        }
    });
    drop(tx);
    if !streaming {
        while rx.recv().await.is_some() {}
        let report = task.await.map_err(Error::task("restore"))??;
        return Ok(Json(json!(report)).into_response());
    }
    let lines = async_stream(rx, task);
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response())
}

/// Progress lines, then the outcome.
fn async_stream(
    rx: tokio::sync::mpsc::UnboundedReceiver<Value>,
    task: tokio::task::JoinHandle<Result<crate::tenants::RestoreReport>>,
) -> impl futures_util::Stream<Item = std::result::Result<String, std::convert::Infallible>> {
    futures_util::stream::unfold((rx, Some(task)), |(mut rx, task)| async move {
        if let Some(step) = rx.recv().await {
            return Some((Ok(format!("{step}\n")), (rx, task)));
        }
        let outcome = match task?.await {
            Ok(Ok(report)) => json!({ "done": report }),
            Ok(Err(err)) => error_body(&err),
            Err(e) => error_body(&Error::task("restore")(e)),
        };
        Some((Ok(format!("{outcome}\n")), (rx, None)))
    })
}

/// `GET /t/{tenant}/bookmark?at=<timestamp>`: the LSN-based bookmark of an
/// instant, which `restore` accepts.
pub async fn bookmark(
    State(tenants): State<AppState>,
    AdminTenant(tenant, _): AdminTenant,
    query: std::result::Result<Query<BookmarkQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let Query(q) = query.map_err(|e| Error::bad_request("invalid_request", e.body_text()))?;
    let at = q.at.ok_or_else(|| Error::bad_request("invalid_request", "give the instant as ?at=<timestamp>"))?;
    let at_us = model::parse_instant(&at).ok_or_else(|| {
        Error::bad_request("invalid_instant", format!("{at:?} is not a timestamp such as 2026-11-28T07:00:00Z"))
    })?;
    let mark = tenants.bookmark(&tenant, at_us).await?;
    let mut body = json!(mark);
    body["tenant"] = json!(tenant.as_str());
    body["at"] = json!(at);
    Ok(Json(body))
}
