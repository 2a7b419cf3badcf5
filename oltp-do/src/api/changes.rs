//! The change feed over HTTP: `GET changes` (with long-poll) and
//! `POST changes/ack`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::extract::rejection::QueryRejection;
use serde_json::{Value, json};

use super::AppState;
use super::extract::{AdminTenant, JsonBody, Tenant};
use crate::error::{Error, Result};
use crate::protocol::{AckRequest, ChangesQuery, checked_lsn};


pub async fn changes(
    State(tenants): State<AppState>,
    Tenant(tenant): Tenant,
    query: Result<Query<ChangesQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let Query(q) = query.map_err(|e| Error::bad_request("invalid_request", e.body_text()))?;
    let limit = q.checked_limit().map_err(|m| Error::bad_request("invalid_request", m))?;
    tenants.must_exist(&tenant)?;
    let page = tenants
        .changes(&tenant, q.since, limit, Duration::from_millis(q.wait))
        .await?;
    let mut body = json!(page);
    body["tenant"] = json!(tenant.as_str());
    Ok(Json(body))
}

/// Trims what every consumer has taken: an operator's call (`admin`).
pub async fn acknowledge(
    State(tenants): State<AppState>,
    AdminTenant(tenant, _): AdminTenant,
    JsonBody(req): JsonBody<AckRequest>,
) -> Result<Json<Value>> {
    if req.consumer.is_empty() || req.consumer.len() > 128 {
        return Err(Error::bad_request(
            "invalid_request",
            "consumer must be a name of 1 to 128 characters",
        ));
    }
    checked_lsn("lsn", req.lsn).map_err(|m| Error::bad_request("invalid_request", m))?;
    tenants.must_exist(&tenant)?;
    let stats = tenants.acknowledge(&tenant, &req.consumer, req.lsn).await?;
    Ok(Json(json!({ "tenant": tenant.as_str(), "consumer": req.consumer, "changeLog": stats })))
}
