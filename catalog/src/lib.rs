//! `catalog`: the Iceberg REST catalog server (backed by the SQL catalog on
//! SQLite by default) and the catalog/storage configuration every other part
//! uses to reach the warehouse.
//!
//! Must not know tenants or SQL. Its implementation is part of the "WAL to
//! Iceberg" issue; until then the crate is empty.
