//! `catalog`: the Iceberg REST catalog server and the warehouse every other
//! part reaches the lake through.
//!
//! Tables live in a SQL catalog (SQLite in the data dir by default,
//! PostgreSQL by URL) whose schema is the one PyIceberg's `SqlCatalog` and
//! iceberg-rust's use, so all three read the same catalog. The REST server
//! follows the Apache Iceberg REST OpenAPI spec for the endpoints clients
//! use. Every location it creates or accepts is inside the warehouse
//! (`location`). Must not know tenants or SQL of the tenants' databases.

pub mod config;
pub mod error;
pub mod location;
pub mod rest;
pub mod warehouse;

pub use config::CatalogConfig;
pub use error::CatalogError;
pub use warehouse::{ListedFile, Warehouse};
