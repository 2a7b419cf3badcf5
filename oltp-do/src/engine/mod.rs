//! The tenant database engine: PGlite (PostgreSQL 17 in WASIX) opened from a
//! prepared template, driven over the PostgreSQL protocol in process.

mod capture;
mod database;
mod migrate;
mod replay;
pub(crate) mod runtime;
mod session;
mod settings;
mod template;
mod watchdog;
mod wire;

pub use capture::{ChangePage, LogStats, LsnAt};
pub use replay::{Images, StoredVersion, qualified, rows_at_head};
pub use database::{PackedBase, Session, TenantDb};
pub use migrate::{FailedMigration, MigrationStatus, Undone};
pub use runtime::EngineRuntime;
pub use session::{Frontend, Hold, MAX_COPY_BYTES, WireIo, WireSession, check_frontend};
pub use settings::EngineSettings;
pub use watchdog::{Limits, ReadOnly, Stopped, TERMINATE_GRACE, Watch, Watchdog};
