//! Catalog errors and their REST form (`{"error":{"message","type","code"}}`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use iceberg::ErrorKind;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    NoSuchNamespace(String),
    #[error("{0}")]
    NoSuchTable(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NamespaceNotEmpty(String),
    #[error("{0}")]
    CommitFailed(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Internal(String),
    /// No valid token.
    #[error("{0}")]
    NotAuthorized(String),
    /// A token that does not allow this, or a write only the shipper makes.
    #[error("{0}")]
    Forbidden(String),
}

impl From<auth::Denied> for CatalogError {
    fn from(denied: auth::Denied) -> Self {
        match denied {
            auth::Denied::Unauthenticated(why) => Self::NotAuthorized(why),
            auth::Denied::Forbidden(why) => Self::Forbidden(why),
        }
    }
}

impl From<iceberg::Error> for CatalogError {
    fn from(err: iceberg::Error) -> Self {
        let message = err.to_string();
        // The SQL catalog reports a non-empty namespace as "Unexpected".
        if message.contains("is not empty") {
            return Self::NamespaceNotEmpty(message);
        }
        match err.kind() {
            ErrorKind::NamespaceNotFound => Self::NoSuchNamespace(message),
            ErrorKind::TableNotFound => Self::NoSuchTable(message),
            ErrorKind::NamespaceAlreadyExists | ErrorKind::TableAlreadyExists => {
                Self::AlreadyExists(message)
            }
            ErrorKind::CatalogCommitConflicts => Self::CommitFailed(message),
            ErrorKind::DataInvalid | ErrorKind::PreconditionFailed => Self::BadRequest(message),
            ErrorKind::FeatureUnsupported => Self::Unsupported(message),
            _ => Self::Internal(message),
        }
    }
}

impl CatalogError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NoSuchNamespace(_) => (StatusCode::NOT_FOUND, "NoSuchNamespaceException"),
            Self::NoSuchTable(_) => (StatusCode::NOT_FOUND, "NoSuchTableException"),
            Self::AlreadyExists(_) => (StatusCode::CONFLICT, "AlreadyExistsException"),
            Self::NamespaceNotEmpty(_) => (StatusCode::CONFLICT, "NamespaceNotEmptyException"),
            Self::CommitFailed(_) => (StatusCode::CONFLICT, "CommitFailedException"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequestException"),
            Self::Unsupported(_) => (StatusCode::NOT_ACCEPTABLE, "UnsupportedOperationException"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "ServiceFailureException"),
            Self::NotAuthorized(_) => (StatusCode::UNAUTHORIZED, "NotAuthorizedException"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "ForbiddenException"),
        }
    }
}

impl IntoResponse for CatalogError {
    fn into_response(self) -> Response {
        let (status, kind) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "catalog request failed");
        }
        let body = json!({"error": {"message": self.to_string(), "type": kind, "code": status.as_u16()}});
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"tidelake\", error=\"invalid_token\""),
            );
        }
        response
    }
}
