//! The Worker: names the tenant of a request by the server's rules (path
//! `/t/{tenant}/…`, the `X-Tenant-Id` header, or `{tenant}.{BASE_DOMAIN}`),
//! refuses invalid and blocked names and checks the caller's token
//! ([`crate::access`]) before any work, and hands the request to that tenant's
//! Durable Object with the caller's scope there.

use model::{DEFAULT_BLOCKED_NAMES, RouteError, Routing};
use serde_json::json;
use worker::*;

use auth::Scope;

use crate::access::EdgeAuth;
use crate::directory;
use crate::http;
use crate::object::{SCOPE_HEADER, TENANT_HEADER};
use crate::vars::{comma_list, setting};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let url = req.url()?;
    let (in_path, route) = crate::path::split(url.path());
    let route = route.to_owned();
    if in_path.is_none() && matches!(route.as_str(), "liveness" | "readiness") {
        return http::json(&json!({ "ok": true, "runtime": "ready", "platform": "edge" }));
    }
    let auth = match EdgeAuth::from_env(&env) {
        Ok(auth) => auth,
        Err(message) => {
            console_error!("auth is misconfigured: {message}");
            return http::error(500, "auth_misconfigured", &format!("this Worker's auth is misconfigured: {message}"));
        }
    };
    // Browser safety, as the server's guard: an Origin must be allowed, and
    // a POST must say its body is JSON (no form can).
    let host = req.headers().get("host")?;
    let origin = req.headers().get("origin")?;
    if let Some(origin) = &origin
        && !auth.browser.origin_allowed(origin, host.as_deref())
    {
        return http::error(
            403,
            "origin_not_allowed",
            &format!("pages of {origin:?} may not call this server (allow them with TIDELAKE_AUTH_ALLOWED_ORIGINS)"),
        );
    }
    if let (Some(origin), Method::Options) = (&origin, req.method()) {
        return http::preflight(origin);
    }
    let content_type = req.headers().get("content-type")?;
    if let Some(message) = auth::browser::json_refusal(req.method().as_ref(), content_type.as_deref()) {
        return http::error(415, "unsupported_media_type", &message);
    }
    let answer = route_to_tenant(req, &env, &auth, in_path, &route, host.as_deref()).await?;
    Ok(match origin {
        Some(origin) => http::allow_origin(answer, &origin)?,
        None => answer,
    })
}

/// Check the caller, then hand the request to its tenant's object with the
/// caller's scope there.
async fn route_to_tenant(
    mut req: Request,
    env: &Env,
    auth: &EdgeAuth,
    in_path: Option<&str>,
    route: &str,
    host: Option<&str>,
) -> Result<Response> {
    let url = req.url()?;
    let authorization = req.headers().get("authorization")?;
    // A tenant's liveness is public, as on the server.
    let caller = if authorization.is_none() && auth.is_enabled() && route == "liveness" {
        None
    } else {
        match auth.authenticate(&url, authorization.as_deref()).await {
            Ok(principal) => Some(principal),
            Err(denied) => return http::denied(&denied),
        }
    };
    let base_domain = setting(env, "BASE_DOMAIN");
    let blocked: Vec<String> = match env.var("BLOCKED_NAMES") {
        Ok(v) => comma_list(&v.to_string()),
        Err(_) => DEFAULT_BLOCKED_NAMES.iter().map(|s| s.to_string()).collect(),
    };
    let header = req.headers().get("x-tenant-id")?;
    let routing = Routing { base_domain: base_domain.as_deref(), blocked_names: &blocked };
    let tenant = match routing.resolve(in_path, header.as_deref(), host) {
        Ok(Some(tenant)) => tenant,
        Ok(None) if route == "health" && req.method() == Method::Get => {
            // The Worker's own health: its tenants and where their change
            // logs stand (the server's lake shipper reads this).
            if let Some(caller) = &caller
                && let Err(denied) = caller.may_administer()
            {
                return http::denied(&denied);
            }
            return tenants_page(env, &url).await;
        }
        Ok(None) => {
            return http::error(
                400,
                "missing_tenant",
                "no tenant given: use /t/{tenant}/…, the X-Tenant-Id header or a tenant subdomain",
            );
        }
        Err(RouteError::Invalid(invalid)) => return http::error(400, "invalid_tenant", &invalid.to_string()),
        Err(err @ RouteError::Blocked(_)) => return http::error(403, "tenant_blocked", &err.to_string()),
        Err(RouteError::Conflicting(message)) => return http::error(400, "conflicting_tenant", &message),
    };
    let scope = match &caller {
        Some(caller) => {
            if let Err(denied) = caller.may(Scope::Read, tenant.as_str()) {
                return http::denied(&denied);
            }
            [Scope::Admin, Scope::Write]
                .into_iter()
                .find(|scope| caller.may(*scope, tenant.as_str()).is_ok())
                .unwrap_or(Scope::Read)
        }
        None => Scope::Read,
    };
    let stub = env.durable_object("TENANTS")?.id_from_name(tenant.as_str())?.get_stub()?;
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        headers.set(&name, &value)?;
    }
    // Set here whatever the client sent: the object trusts these two.
    headers.set(TENANT_HEADER, tenant.as_str())?;
    headers.set(SCOPE_HEADER, scope.as_str())?;
    let mut init = RequestInit::new();
    init.with_method(req.method()).with_headers(headers);
    if !matches!(req.method(), Method::Get | Method::Head) {
        let limit = match max_body_bytes(env) {
            Ok(limit) => limit,
            Err(message) => return http::error(500, "misconfigured", &message),
        };
        let body = match capped_body(&mut req, limit).await? {
            Some(body) => body,
            None => return http::error(413, "payload_too_large", &model::api::payload_too_large(limit)),
        };
        init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    }
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    let inner = Request::new_with_init(&format!("https://tenant/{route}{query}"), &init)?;
    stub.fetch_with_request(inner).await
}

/// `MAX_BODY_BYTES` (a size: `8MiB`, `65536`), the server's default unless set.
pub fn max_body_bytes(env: &Env) -> std::result::Result<usize, String> {
    match setting(env, "MAX_BODY_BYTES") {
        None => Ok(model::api::DEFAULT_MAX_BODY_BYTES),
        Some(text) => model::parse_bytes(&text)
            .and_then(|n| usize::try_from(n).map_err(|e| e.to_string()))
            .map_err(|e| format!("MAX_BODY_BYTES: {e}")),
    }
}

/// The request's body, or `None` once it passes `limit` bytes: a declared
/// length over it is refused before reading, and a body without one is
/// read only as far as the limit.
async fn capped_body(req: &mut Request, limit: usize) -> Result<Option<Vec<u8>>> {
    use futures_util::StreamExt;
    let declared = req.headers().get("content-length")?.and_then(|l| l.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    if declared == Some(0) {
        return Ok(Some(Vec::new()));
    }
    let Ok(mut stream) = req.stream() else { return Ok(Some(Vec::new())) };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk?);
        if body.len() > limit {
            return Ok(None);
        }
    }
    Ok(Some(body))
}

/// `GET /health`: one page of the tenant directory (`?after=<tenant>`,
/// `?limit=<n>`, at most [`directory::MAX_PAGE`]; `?changedSince=<asOf>`:
/// only tenants that reported at or after an earlier listing's `asOf`);
/// `next` names the last tenant of a page when more follow.
async fn tenants_page(env: &Env, url: &Url) -> Result<Response> {
    let mut after = String::new();
    let mut changed_since = 0;
    let mut limit = directory::MAX_PAGE;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "after" => after = value.into_owned(),
            "changedSince" => match value.parse::<u64>() {
                Ok(ms) => changed_since = ms,
                Err(_) => {
                    return http::error(400, "invalid_request", "changedSince must be milliseconds since the epoch (an asOf)");
                }
            },
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=directory::MAX_PAGE).contains(&n) => limit = n,
                _ => {
                    return http::error(
                        400,
                        "invalid_request",
                        &format!("limit must be a number from 1 to {}", directory::MAX_PAGE),
                    );
                }
            },
            _ => {}
        }
    }
    let mut answer = directory::list(env, &after, changed_since, limit).await?;
    if answer.status_code() != 200 {
        return http::error(500, "directory_error", &format!("the tenant directory answered {}", answer.status_code()));
    }
    let mut body: serde_json::Value = answer.json().await?;
    body["ok"] = json!(true);
    body["runtime"] = json!("ready");
    body["platform"] = json!("edge");
    http::json(&body)
}
