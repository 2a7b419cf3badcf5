//! `lake`: turns each tenant's change log into Apache Iceberg tables (Arrow
//! batches, Parquet files, `fast_append` commits), maps PostgreSQL types and
//! schema changes onto Iceberg, ships exactly once, and reads history back
//! (state as of an instant, diffs). See DESIGN.md §4.
//!
//! Must not know HTTP routing or PGlite internals: it sees changes and
//! schema versions as the change log records them.
//!
//! So far: the PostgreSQL → Iceberg type mapping and the conversion of
//! change-log rows into Arrow batches (`mapping`). The shipper is next.

pub mod error;
pub mod mapping;

pub use error::LakeError;
