//! The tenant database engine: PGlite (PostgreSQL 17 in WASIX) opened from a
//! prepared template, driven over the PostgreSQL protocol in process.

mod capture;
mod database;
mod runtime;
mod settings;
mod template;
mod wire;

pub use capture::{ChangePage, LogStats};
pub use database::TenantDb;
pub use runtime::EngineRuntime;
pub use settings::EngineSettings;
