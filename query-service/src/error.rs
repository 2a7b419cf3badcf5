//! The query service's errors, and their HTTP and SQLSTATE forms (the one
//! place either is decided).

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;
use serde_json::json;

// Clone: a refusal raised inside DataFusion (a limit checked by a function)
// travels as `DataFusionError::External` and is taken back out by reference.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// The query is not valid SQL, or not one the service runs.
    #[error("{0}")]
    Sql(String),
    /// A tenant the caller's token does not reach.
    #[error("{0}")]
    Forbidden(String),
    /// A table or tenant that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Planning or running the query failed because of the query.
    #[error("{0}")]
    Query(String),
    /// A value the client gave is out of range: an interval, an instant, an LSN.
    #[error("{0}")]
    InvalidArgument(String),
    /// The query ran past the query timeout; it was cancelled.
    #[error("the query ran longer than the query timeout of {0:?} (--query-timeout) and was cancelled")]
    Timeout(Duration),
    /// DataFusion's memory pool refused an allocation (the message names the limit).
    #[error("{0}")]
    MemoryExceeded(String),
    /// `growth` or `activity` asked for more buckets than the cap.
    #[error(
        "{function} asks for {asked} buckets ({span}), more than the limit of {cap} (--query-max-buckets): \
         use a longer interval or a shorter range"
    )]
    TooManyBuckets { function: &'static str, asked: String, span: String, cap: u64 },
    /// The answer passed the rows or bytes one answer may have (the message names which).
    #[error("{0}")]
    ResultTooLarge(String),
    #[error("{0}")]
    Internal(String),
}

impl QueryError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Sql(_) => "invalid_sql",
            Self::NotFound(_) => "not_found",
            Self::Forbidden(_) => "forbidden",
            Self::Query(_) => "query_failed",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::Timeout(_) => "query_timeout",
            Self::MemoryExceeded(_) => "query_memory_exceeded",
            Self::TooManyBuckets { .. } => "too_many_buckets",
            // The same code as the OLTP API's answers past their caps.
            Self::ResultTooLarge(_) => "result_too_large",
            Self::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Sql(_) | Self::Query(_) | Self::InvalidArgument(_) | Self::TooManyBuckets { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            // As the OLTP API answers a statement timeout (SQLSTATE 57014).
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            // The pool is shared by every running query: another query may
            // hold what this one needed (as PostgreSQL's 53200 over the OLTP API).
            Self::MemoryExceeded(_) => StatusCode::SERVICE_UNAVAILABLE,
            // The request was understood and ran; its answer is what is too
            // large (413 speaks of the request's own body).
            Self::ResultTooLarge(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error's SQLSTATE over the Postgres wire front.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Self::Sql(_) => "42601",
            Self::NotFound(_) => "42P01",
            Self::Forbidden(_) => "42501",
            Self::Query(_) => "42000",
            Self::InvalidArgument(_) => "22023",
            Self::Timeout(_) => "57014",
            Self::MemoryExceeded(_) => "53200",
            Self::TooManyBuckets { .. } | Self::ResultTooLarge(_) => "54000",
            Self::Internal(_) => "XX000",
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(err: DataFusionError) -> Self {
        if let DataFusionError::External(inner) = err.find_root()
            && let Some(refusal) = inner.downcast_ref::<QueryError>()
        {
            return refusal.clone();
        }
        match err.find_root() {
            DataFusionError::ResourcesExhausted(message) => Self::MemoryExceeded(message.clone()),
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Execution(_) => Self::Query(err.find_root().to_string()),
            DataFusionError::ArrowError(..) => Self::Query(err.to_string()),
            _ => Self::Internal(err.to_string()),
        }
    }
}

impl From<QueryError> for DataFusionError {
    /// A refusal raised inside DataFusion; [`QueryError::from`] takes it back.
    fn from(err: QueryError) -> Self {
        DataFusionError::External(Box::new(err))
    }
}

impl From<iceberg::Error> for QueryError {
    fn from(err: iceberg::Error) -> Self {
        Self::Internal(err.to_string())
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        (self.status(), Json(body)).into_response()
    }
}

impl From<lake::LakeError> for QueryError {
    fn from(err: lake::LakeError) -> Self {
        Self::Internal(err.to_string())
    }
}
