//! `model`: the vocabulary every part of tidelake shares — the server's
//! crates and the edge tier alike. No I/O and no async runtime: it builds
//! for `wasm32-unknown-unknown` (`scripts/test` checks that it does).
//!
//! - [`TenantId`]: the one grammar of a tenant's name.
//! - [`parse_instant`]: the one reading of an instant; [`parse_duration`]
//!   and [`parse_bytes`]: of a duration and a size.
//! - [`sql`]: statement splitting and identifier quoting, pure text.
//! - [`extensions`]: which PostgreSQL extensions a tenant may create.
//! - [`Change`] and [`SchemaVersion`]: a committed change and the table
//!   shape it was written under, typed from where they leave the engine.
//! - [`wire`] and [`values`]: the PostgreSQL protocol spoken to an
//!   embedded backend and its text values as JSON.
//! - [`api`]: the HTTP and WebSocket API's requests and answers, and a
//!   PostgreSQL error as a client sees it; [`schema`]: a tenant's schema,
//!   and [`types`]: TypeScript and Rust types generated from it.

pub mod api;
mod change;
mod engine;
pub mod extensions;
mod instant;
pub mod log;
pub mod migrations;
pub mod schema;
pub mod sql;
mod tenant;
pub mod types;
mod units;
pub mod values;
pub mod wire;

pub use engine::EngineSettings;
pub use change::{Change, EDGE_ORIGIN, Lsn, Op, Row, SERVER_ORIGIN, SchemaVersion, SourceColumn, TableAt};
pub use instant::{format_instant, parse_instant};
pub use units::{parse_bytes, parse_duration};
pub use tenant::{DEFAULT_BLOCKED_NAMES, InvalidTenantId, MAX_TENANT_ID_LEN, RouteError, Routing, TenantId};
