//! The query service's errors and their HTTP form.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query is not valid SQL, or not one the service runs.
    #[error("{0}")]
    Sql(String),
    /// A table or tenant that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Planning or running the query failed because of the query.
    #[error("{0}")]
    Query(String),
    #[error("{0}")]
    Internal(String),
}

impl QueryError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Sql(_) => "invalid_sql",
            Self::NotFound(_) => "not_found",
            Self::Query(_) => "query_failed",
            Self::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Sql(_) | Self::Query(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(err: DataFusionError) -> Self {
        match err.find_root() {
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
