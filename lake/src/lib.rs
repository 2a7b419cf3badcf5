//! `lake`: turns each tenant's change log into Apache Iceberg tables (Arrow
//! batches, Parquet files, `fast_append` commits), maps PostgreSQL types and
//! schema changes onto Iceberg, ships exactly once, and reads history back
//! (state as of an instant, diffs). See DESIGN.md §4 and docs/lake.md.
//! Lake names — of a tenant's namespace and of each source table's table —
//! are one encoding (`names`) that every writer and reader goes through.
//!
//! Must not know HTTP routing or PGlite internals: it sees changes and
//! schema versions as the change log records them, through `ChangeSource`.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod history;
pub mod maintain;
pub mod mapping;
pub mod metrics;
pub mod names;
pub mod shipper;
pub mod source;
pub mod spec;
pub mod table;

pub use config::{MaintenanceConfig, Partitioning, ShipperConfig};
pub use error::LakeError;
pub use names::SourceTable;
pub use shipper::Shipper;
pub use source::{ChangePage, ChangeSource, SourceError};
