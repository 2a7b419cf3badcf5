//! The crate's one error type. HTTP status and JSON shape are decided in
//! `api::error`, nowhere else.

pub use model::api::DbError;

impl From<model::InvalidTenantId> for Error {
    fn from(invalid: model::InvalidTenantId) -> Self {
        Error::InvalidTenant(invalid.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No valid token (401) or one that does not allow this (403).
    #[error("{0}")]
    Denied(#[from] auth::Denied),
    #[error("invalid tenant id {0:?}: expected [a-z0-9][a-z0-9-]{{0,62}}")]
    InvalidTenant(String),
    #[error("tenant id {0:?} is reserved")]
    BlockedTenant(String),
    #[error("no tenant given: use /t/{{tenant}}/…, the X-Tenant-Id header or a tenant subdomain")]
    MissingTenant,
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{}", model::api::payload_too_large(*.limit))]
    PayloadTooLarge { limit: usize },
    /// PostgreSQL rejected the statement: the client's SQL or data.
    /// (Boxed: it is the largest variant, and errors travel by value.)
    #[error("{}", .0.message)]
    Database(Box<DbError>),
    /// Our side failed: the engine could not be opened or crashed.
    #[error("engine error: {0}")]
    Engine(String),
    /// PGlite failed: opening a database, a call into the engine, closing it.
    #[error("engine error: {what}: {source:#}")]
    Pglite {
        what: String,
        #[source]
        source: anyhow::Error,
    },
    /// A file of ours could not be read, written or moved.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Work of ours run off the async threads died (it panicked).
    #[error("the {what} task failed: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// A record of ours that does not parse (a marker, an engine's answer).
    #[error("{what}: {source}")]
    Malformed {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The archive store failed.
    #[error("{what}: {source}")]
    Storage {
        what: String,
        #[source]
        source: opendal::Error,
    },
    /// A statement of ours (capture, the change log, housekeeping) failed;
    /// the engine's error is the cause.
    #[error("{what}: {source}")]
    Ours { what: String, source: Box<DbError> },
    /// The change log answered a row that is not a change (at this LSN, 0
    /// if it has none).
    #[error("the change log's row at LSN {lsn} is not a change: {why}")]
    NotAChange { lsn: u64, why: String },
    /// What was asked for existed once and is gone (trimmed changes).
    #[error("{0}")]
    Gone(String),
    /// The tenant's queue is full or its work waited past the queue timeout.
    #[error("{0}")]
    Busy(String),
    /// The server is shutting down or the tenant is being moved.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The tenant's latest migration failed: its clients' SQL waits for a
    /// fixed deployment (the message names the migration and the SQLSTATE).
    #[error("{0}")]
    MigrationFailed(String),
    /// A tenant's archive failed verification: it is not opened.
    #[error("{0}")]
    ArchiveCorrupt(String),
    /// Something asked for that does not exist (a backup).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (a branch name taken,
    /// a restore already running).
    #[error("{0}")]
    Conflict(String),
    /// Asked again too soon (a base backup on request).
    #[error("{message}")]
    TooSoon { message: String, retry_after: std::time::Duration },
    /// A read of a tenant that does not exist (reads create nothing).
    #[error("tenant {0} does not exist: its first query creates it")]
    NoSuchTenant(String),
}

impl Error {
    /// Of ours: the server failed, not the client (HTTP 500).
    pub fn is_ours(&self) -> bool {
        matches!(
            self,
            Self::Engine(_)
                | Self::Pglite { .. }
                | Self::Io { .. }
                | Self::Task { .. }
                | Self::Malformed { .. }
                | Self::Storage { .. }
                | Self::Ours { .. }
                | Self::NotAChange { .. }
        )
    }

    pub fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io { what, path: path.to_path_buf(), source }
    }

    pub fn pglite(what: impl Into<String>) -> impl FnOnce(anyhow::Error) -> Self {
        let what = what.into();
        move |source| Self::Pglite { what, source }
    }

    pub fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |source| Self::Task { what, source }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }
}

impl From<DbError> for Error {
    fn from(err: DbError) -> Self {
        Self::Database(Box::new(err))
    }
}

impl From<Box<DbError>> for Error {
    fn from(err: Box<DbError>) -> Self {
        Self::Database(err)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
