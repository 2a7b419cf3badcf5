//! `oltp-do`: the tenant databases. One PGlite PostgreSQL per tenant, each in
//! its own actor thread ("durable object"), created from a template on first
//! use, hibernated when idle, evicted under a cap, woken on the next request;
//! change capture into a durable per-tenant change log; and the HTTP and
//! WebSocket API in front of them.
//!
//! Knows nothing of Iceberg or DataFusion: the lake reads from this crate,
//! never the other way round.

pub mod actor;
pub mod api;
pub mod archive;
pub mod config;
pub mod engine;
pub mod error;
pub mod feed;
pub mod files;
pub mod layout;
pub mod maintenance;
pub mod migrations;
pub mod pg;
pub mod protocol;
pub mod scratch;
pub mod tenants;
pub use model::values;

pub use config::OltpConfig;
pub use error::{DbError, Error, Result};
pub use model::TenantId;
pub use tenants::Tenants;
