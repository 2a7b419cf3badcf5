//! Answers as the server gives them: JSON bodies, `{"error":{"code",
//! "message"}}` with a 4xx status for the client's mistakes and 5xx for
//! ours, a PostgreSQL error as `{"error":{…}}` with the SQLSTATE's status
//! (`model::api::http_status_for_sqlstate`).

use auth::Denied;
use model::api::DbError;
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

pub fn db_error(err: &DbError) -> Result<Response> {
    let status = model::api::http_status_for_sqlstate(&err.code);
    Ok(Response::from_json(&json!({ "error": err }))?.with_status(status))
}

pub fn failure(failure: &Failure) -> Result<Response> {
    match failure {
        Failure::Db(err) => db_error(err),
        Failure::Bad(code, message) => error(400, code, message),
        Failure::Gone(message) => error(410, "changes_trimmed", message),
        Failure::Ours(ours) => {
            worker::console_error!("request failed on the edge: {}", ours.0);
            error(500, "engine_error", &format!("engine error: {}", ours.0))
        }
    }
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
