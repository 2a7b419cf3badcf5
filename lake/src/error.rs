//! The lake's error type.

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// A change or schema version the mapping cannot represent.
    #[error("{0}")]
    Mapping(String),
    /// A tenant or table name the lake cannot name a namespace or table after.
    #[error("{0}")]
    Name(String),
    /// A table whose files would land outside its tenant's part of the warehouse.
    #[error("{0}")]
    Location(String),
    /// A tenant whose namespace another origin ships into (a server tenant
    /// and an edge tenant of the same name).
    #[error("{0}")]
    Origin(String),
    /// Rows the lake cannot tell at an instant: an update of a table
    /// without a primary key (the lake keeps no old rows).
    #[error("{0}")]
    NeedsOldRow(String),
    /// A shipping task panicked (a bug: the tenant is retried like any failure).
    #[error("shipping panicked: {0}")]
    Panicked(String),
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
