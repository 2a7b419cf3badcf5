//! `lake`: turns each tenant's change log into Apache Iceberg tables (Arrow
//! batches, Parquet files, `fast_append` commits), maps PostgreSQL types and
//! schema changes onto Iceberg, ships exactly once, and reads history back
//! (state as of an instant, diffs). See DESIGN.md §4.
//!
//! Must not know HTTP routing or PGlite internals. Its implementation is the
//! subject of the "WAL to Iceberg" issue; until then the crate is empty.
