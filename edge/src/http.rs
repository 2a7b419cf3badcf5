//! Answers as the server gives them: JSON bodies, `{"error":{"code",
//! "message"}}` with a 4xx status for the client's mistakes and 5xx for
//! ours, a PostgreSQL error as `{"error":{…}}` with the SQLSTATE's status
//! (`model::api::http_status_for_sqlstate`).

use auth::Denied;
use serde::Serialize;
use serde_json::json;
use worker::{Headers, Response, Result};

use crate::engine::Failure;

pub fn json<T: Serialize>(body: &T) -> Result<Response> {
    Response::from_json(body)
}

pub fn error(status: u16, code: &str, message: &str) -> Result<Response> {
    Ok(Response::from_json(&json!({ "error": { "code": code, "message": message } }))?.with_status(status))
}

/// A failure's HTTP status and `error` object, as the server words them
/// (over HTTP and in WebSocket `error` messages alike).
pub fn failure_error(failure: &Failure) -> (u16, serde_json::Value) {
    match failure {
        Failure::Db(err) => (model::api::http_status_for_sqlstate(&err.code), json!(err)),
        Failure::Bad(code, message) => (400, json!({ "code": code, "message": message })),
        Failure::Gone(message) => (410, json!({ "code": "changes_trimmed", "message": message })),
        Failure::Archive(code, message) => {
            worker::console_error!("a tenant's archive: {message}");
            (500, json!({ "code": code, "message": message }))
        }
        Failure::Ours(ours) => {
            worker::console_error!("request failed on the edge: {}", ours.0);
            (500, json!({ "code": "engine_error", "message": format!("engine error: {}", ours.0) }))
        }
    }
}

pub fn failure(failure: &Failure) -> Result<Response> {
    let (status, error) = failure_error(failure);
    Ok(Response::from_json(&json!({ "error": error }))?.with_status(status))
}

/// A refused caller: 401 without a valid token, 403 without the tenant or
/// the scope, with the server's body and `WWW-Authenticate` challenge.
pub fn denied(denied: &Denied) -> Result<Response> {
    let status = match denied {
        Denied::Unauthenticated(_) => 401,
        Denied::Forbidden(_) => 403,
    };
    let mut response = error(status, denied.code(), &denied.to_string())?;
    response.headers_mut().set("www-authenticate", &denied.challenge())?;
    Ok(response)
}

/// A CORS preflight from an allowed origin.
pub fn preflight(origin: &str) -> Result<Response> {
    let mut response = Response::empty()?.with_status(204);
    let headers = response.headers_mut();
    headers.set("access-control-allow-origin", origin)?;
    for (name, value) in auth::browser::PREFLIGHT_HEADERS {
        headers.set(name, value)?;
    }
    headers.set("vary", "Origin")?;
    Ok(response)
}

/// An answer to a page of an allowed origin (an object's answer's headers
/// are immutable: they are copied).
pub fn allow_origin(response: Response, origin: &str) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in response.headers().entries() {
        headers.append(&name, &value)?;
    }
    headers.set("access-control-allow-origin", origin)?;
    headers.append("vary", "Origin")?;
    Ok(response.with_headers(headers))
}
