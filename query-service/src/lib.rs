//! `query-service`: DataFusion over the lake, with `AS OF` time travel,
//! snapshot diffs, cross-tenant growth analytics, its HTTP and Postgres-wire
//! fronts and the dashboard.
//!
//! Must not know PGlite. Its implementation is the subject of the "Query
//! service" issue; until then the crate is empty.
