//! tidelake at the edge: a Cloudflare Worker that routes each request to
//! its tenant's Durable Object, which runs PGlite (PostgreSQL compiled to
//! WebAssembly, through `js/engine.js`) and answers the same HTTP API as a
//! tenant of `tidelake serve` — from the same code where it can be: the
//! request and answer types, the tenant-id rules, the protocol spoken to the
//! engine and the value encoding are `model`'s; the capture SQL is the
//! server's (installed into the template by `js/template.mjs`).
//!
//! Natively the crate is only its pure parts ([`path`]), so the workspace
//! builds and tests as before; the Worker builds for
//! `wasm32-unknown-unknown` with `scripts/edge`.

pub mod path;

#[cfg(target_arch = "wasm32")]
mod access;
#[cfg(target_arch = "wasm32")]
mod directory;
#[cfg(target_arch = "wasm32")]
mod engine;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod object;
#[cfg(target_arch = "wasm32")]
mod router;
#[cfg(target_arch = "wasm32")]
mod socket;
#[cfg(target_arch = "wasm32")]
mod tiers;
#[cfg(target_arch = "wasm32")]
mod vars;
