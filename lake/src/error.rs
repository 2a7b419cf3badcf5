//! The lake's error type.

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// A change or schema version the mapping cannot represent.
    #[error("{0}")]
    Mapping(String),
    #[error(transparent)]
    Iceberg(#[from] iceberg::Error),
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
}

pub type Result<T, E = LakeError> = std::result::Result<T, E>;
