//! The HTTP side: [`authenticate`] turns a request's bearer token into a
//! [`Principal`] extension (routes take it with [`Caller`]); [`guard`]
//! keeps a web page in someone's browser from driving the server — the
//! `Host` must be this server's, an `Origin` must be allowed (CORS answers
//! for those), and a POST must say its body is JSON, which no form and no
//! "simple" cross-origin request can.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use crate::browser::Browser;
use crate::{Auth, Denied, Principal};

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let status = match self {
            Denied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) => StatusCode::FORBIDDEN,
        };
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = (status, Json(body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&self.challenge()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// Authenticate every request: a valid token becomes the request's
/// [`Principal`]; an invalid one is a 401 here; none leaves the request
/// anonymous (public routes answer it, the others with 401).
///
/// Neon's HTTP driver may carry the token as its connection string's
/// password instead (`postgresql://user:<token>@host/<tenant>`): with auth
/// on and no `Authorization`, that password is the bearer token.
pub async fn authenticate(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    let header = request.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}").to_owned());
    let header = match header {
        None if auth.is_enabled() => match neon_password(&request) {
            Some(password) => Some(format!("Bearer {password}")),
            None => return next.run(request).await,
        },
        header => header,
    };
    match auth.authenticate(header.as_deref()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(denied) => denied.into_response(),
    }
}

/// The password of a request's Neon connection string, if it has one.
fn neon_password(request: &Request) -> Option<String> {
    let value = request.headers().get(model::api::NEON_CONNECTION_STRING)?.to_str().ok()?;
    model::api::ConnectionUrl::parse(value)?.password.filter(|p| !p.is_empty())
}

/// The authenticated caller of a request (401 if there is none).
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        caller(parts).map(Caller)
    }
}

/// The caller of a request whose parts are at hand.
pub fn caller(parts: &Parts) -> Result<Principal, Denied> {
    parts.extensions.get::<Principal>().cloned().ok_or_else(Denied::missing)
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// Browser safety for every request; see the module's documentation.
pub async fn guard(State(browser): State<Arc<Browser>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(host) = &host
        && !browser.host_allowed(host)
    {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            format!("this server does not answer for host {host:?} (add it with --auth-allowed-hosts)"),
        );
    }
    let origin = match headers.get(header::ORIGIN) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(origin) if browser.origin_allowed(origin, host.as_deref()) => Some(origin.to_owned()),
            _ => {
                let origin = String::from_utf8_lossy(v.as_bytes()).into_owned();
                return refuse(
                    StatusCode::FORBIDDEN,
                    "origin_not_allowed",
                    format!("pages of {origin:?} may not call this server (allow them with --auth-allowed-origins)"),
                );
            }
        },
    };
    if let Some(origin) = &origin
        && request.method() == Method::OPTIONS
    {
        return preflight(origin);
    }
    // A request with a Neon connection string header is never one a page
    // may send cross-site without a preflight (which the origin check
    // answers), so it may come as Neon's driver sends it, without a JSON
    // content type.
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let neon = request.headers().contains_key(model::api::NEON_CONNECTION_STRING);
    if !neon && let Some(message) = crate::browser::json_refusal(request.method().as_str(), content_type) {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message);
    }
    let mut response = next.run(request).await;
    if let Some(origin) = origin
        && let Ok(value) = HeaderValue::from_str(&origin)
    {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// The request headers Neon's serverless driver sends.
const NEON_HEADERS: &str = "neon-connection-string, neon-raw-text-output, neon-array-mode, \
    neon-batch-isolation-level, neon-batch-read-only, neon-batch-deferrable";

fn preflight(origin: &str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    for (name, value) in crate::browser::PREFLIGHT_HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    // The server (not the edge) also answers Neon's driver (`POST /neon/sql`).
    if let Some(allowed) = headers.get(header::ACCESS_CONTROL_ALLOW_HEADERS).and_then(|v| v.to_str().ok()) {
        let with_neon = format!("{allowed}, {NEON_HEADERS}");
        if let Ok(value) = HeaderValue::from_str(&with_neon) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
    }
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}
