//! End-to-end tests: the real `tidelake` binary on 127.0.0.1 with a real
//! PGlite database per tenant, driven over HTTP. One test binary for the
//! whole suite (DESIGN.md §6).

mod api;
mod auth;
mod cached_reads;
mod capture;
mod catalog;
mod edge;
mod extensions;
mod bad_input;
mod fuzz;
mod history;
mod hostile;
mod lake;
mod lake_catalogs;
mod maintenance;
mod migrations;
mod neon;
mod query;
mod lifecycle;
mod oracle;
mod readme;
mod restore;
mod tiers;
mod tenant_wire;
mod types;
