//! The HTTP side: [`authenticate`] turns a request's bearer token into a
//! [`Principal`] extension (routes take it with [`Caller`]); [`guard`]
//! keeps a web page in someone's browser from driving the server — the
//! `Host` must be this server's, an `Origin` must be allowed (CORS answers
//! for those), and a POST must say its body is JSON, which no form and no
//! "simple" cross-origin request can.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::{Auth, Denied, Principal};

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let status = match self {
            Denied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) => StatusCode::FORBIDDEN,
        };
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = (status, Json(body)).into_response();
        let challenge = match &self {
            Denied::Unauthenticated(why) => {
                format!("Bearer realm=\"tidelake\", error=\"invalid_token\", error_description=\"{}\"", quoted(why))
            }
            Denied::Forbidden(why) => {
                format!("Bearer realm=\"tidelake\", error=\"insufficient_scope\", error_description=\"{}\"", quoted(why))
            }
        };
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// A header's quoted-string: no quotes or backslashes, visible ASCII.
fn quoted(text: &str) -> String {
    text.chars().map(|c| if c == '"' || c == '\\' || !(' '..='~').contains(&c) { '\'' } else { c }).collect()
}

/// Authenticate every request: a valid token becomes the request's
/// [`Principal`]; an invalid one is a 401 here; none leaves the request
/// anonymous (public routes answer it, the others with 401).
pub async fn authenticate(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    let header = request.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}"));
    if header.is_none() && auth.is_enabled() {
        return next.run(request).await;
    }
    let header = header.map(str::to_owned);
    match auth.authenticate(header.as_deref()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(denied) => denied.into_response(),
    }
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

/// Which hosts and origins the server answers.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    /// Origins (`https://app.example.com`) whose pages may call the server;
    /// a page the server itself serves may always. `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Host names the server answers besides IP addresses, `localhost` and
    /// the base domain with its subdomains.
    pub allowed_hosts: Vec<String>,
    pub base_domain: Option<String>,
}

impl Browser {
    /// Whether `host` (a `Host` header: name or address, maybe a port)
    /// names this server. IP addresses always do: a rebinding attack needs
    /// a name.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host).to_ascii_lowercase();
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() || name == "localhost" {
            return true;
        }
        let name = name.trim_end_matches('.');
        if let Some(base) = self.base_domain.as_deref().map(|b| b.trim_matches('.').to_ascii_lowercase())
            && !base.is_empty()
            && (name == base || name.strip_suffix(&base).is_some_and(|rest| rest.ends_with('.')))
        {
            return true;
        }
        self.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether a page of `origin` may call the server reached as `host`.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let same = origin
            .split_once("://")
            .is_some_and(|(_, authority)| host.is_some_and(|h| authority.eq_ignore_ascii_case(h)));
        same || self.allowed_origins.iter().any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split_once(']').map_or(host, |(v6, _)| &host[..v6.len() + 2]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.contains(':') => name,
        _ => host,
    }
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
    let needs_json = matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH);
    if needs_json {
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            let given = if content_type.is_empty() { "none".to_owned() } else { format!("{content_type:?}") };
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("{} requests take JSON: send Content-Type: application/json (this one has {given})", request.method()),
            );
        }
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

fn preflight(origin: &str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE, HEAD, OPTIONS"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, accept, x-tenant-id"),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_this_servers_names_and_addresses() {
        let b = Browser { base_domain: Some("db.example.com".into()), allowed_hosts: vec!["tidelake.internal".into()], ..Default::default() };
        for yes in ["127.0.0.1:7432", "[::1]:7432", "10.1.2.3", "localhost:7432", "acme.db.example.com", "db.example.com:443", "TIDELAKE.internal:80"] {
            assert!(b.host_allowed(yes), "{yes}");
        }
        for no in ["evil.example", "rebind.attacker.net:7432", "xdb.example.com", "db.example.com.evil.net", "localhost.evil.net"] {
            assert!(!b.host_allowed(no), "{no}");
        }
    }

    #[test]
    fn origins_are_the_same_one_or_listed() {
        let b = Browser { allowed_origins: vec!["https://app.example.com/".into()], ..Default::default() };
        assert!(b.origin_allowed("http://127.0.0.1:7432", Some("127.0.0.1:7432")));
        assert!(b.origin_allowed("https://app.example.com", Some("127.0.0.1:7432")));
        assert!(!b.origin_allowed("http://127.0.0.1:9999", Some("127.0.0.1:7432")));
        assert!(!b.origin_allowed("null", Some("127.0.0.1:7432")));
        assert!(!b.origin_allowed("https://evil.example", None));
    }
}
