//! The one place errors become HTTP: status codes and the JSON error body
//! `{"error":{"code":…,"message":…}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::Error;

/// HTTP status for a SQLSTATE ([`model::api::http_status_for_sqlstate`]).
pub fn status_for_sqlstate(code: &str) -> StatusCode {
    StatusCode::from_u16(model::api::http_status_for_sqlstate(code)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub fn status_for(err: &Error) -> StatusCode {
    match err {
        Error::InvalidTenant(_) | Error::MissingTenant | Error::BadRequest { .. } => {
            StatusCode::BAD_REQUEST
        }
        Error::BlockedTenant(_) => StatusCode::FORBIDDEN,
        Error::Denied(auth::Denied::Unauthenticated(_)) => StatusCode::UNAUTHORIZED,
        Error::Denied(auth::Denied::Forbidden(_)) => StatusCode::FORBIDDEN,
        Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Database(db) => status_for_sqlstate(&db.code),
        Error::Engine(_)
        | Error::Pglite { .. }
        | Error::Io { .. }
        | Error::Task { .. }
        | Error::Malformed { .. }
        | Error::Storage { .. }
        | Error::Ours { .. }
        | Error::NotAChange { .. }
        | Error::ArchiveCorrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::TooSoon { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::NoSuchTenant(_) => StatusCode::NOT_FOUND,
        Error::Gone(_) => StatusCode::GONE,
        Error::Busy(_) | Error::Unavailable(_) | Error::MigrationFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

pub fn error_body(err: &Error) -> Value {
    let code = match err {
        Error::InvalidTenant(_) => "invalid_tenant",
        Error::Denied(denied) => denied.code(),
        Error::BlockedTenant(_) => "tenant_blocked",
        Error::MissingTenant => "missing_tenant",
        Error::BadRequest { code, .. } => code,
        Error::PayloadTooLarge { .. } => "payload_too_large",
        Error::Database(db) => return json!({ "error": db }),
        Error::Engine(_)
        | Error::Pglite { .. }
        | Error::Io { .. }
        | Error::Task { .. }
        | Error::Malformed { .. }
        | Error::Storage { .. }
        | Error::Ours { .. }
        | Error::NotAChange { .. } => "engine_error",
        Error::Gone(_) => "changes_trimmed",
        Error::Busy(_) => "tenant_busy",
        Error::Unavailable(_) => "unavailable",
        Error::MigrationFailed(_) => "migration_failed",
        Error::ArchiveCorrupt(_) => "archive_corrupt",
        Error::NotFound(_) => "not_found",
        Error::Conflict(_) => "conflict",
        Error::TooSoon { .. } => "too_soon",
        Error::NoSuchTenant(_) => "tenant_not_found",
    };
    json!({ "error": { "code": code, "message": err.to_string() } })
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Denied(denied) = self {
            // The status, the body and the WWW-Authenticate challenge.
            return denied.into_response();
        }
        if self.is_ours() || matches!(self, Error::ArchiveCorrupt(_)) {
            tracing::error!(error = %self, "request failed on the server side");
        }
        let mut response = (status_for(&self), Json(error_body(&self))).into_response();
        if let Error::TooSoon { retry_after, .. } = &self
            && let Ok(value) = axum::http::HeaderValue::from_str(&retry_after.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_mistakes_are_4xx_and_ours_5xx() {
        assert_eq!(status_for_sqlstate("42601"), StatusCode::BAD_REQUEST);
        assert_eq!(status_for_sqlstate("42P01"), StatusCode::BAD_REQUEST);
        assert_eq!(status_for_sqlstate("42501"), StatusCode::FORBIDDEN);
        assert_eq!(status_for_sqlstate("22P02"), StatusCode::BAD_REQUEST);
        assert_eq!(status_for_sqlstate("23505"), StatusCode::CONFLICT);
        assert_eq!(status_for_sqlstate("40001"), StatusCode::CONFLICT);
        assert_eq!(status_for_sqlstate("57014"), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(status_for_sqlstate("result_too_large"), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status_for_sqlstate("53100"), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(status_for_sqlstate("ü"), StatusCode::BAD_REQUEST);
        assert_eq!(status_for_sqlstate("x"), StatusCode::BAD_REQUEST);
        assert_eq!(status_for_sqlstate("08P01"), StatusCode::BAD_REQUEST);
        assert_eq!(status_for_sqlstate("08006"), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_for_sqlstate("XX000"), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_for_sqlstate("53200"), StatusCode::SERVICE_UNAVAILABLE);
    }
}
