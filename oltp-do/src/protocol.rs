//! The HTTP and WebSocket API's requests and answers: they live in
//! [`model::api`], shared with the edge tier.

pub use model::api::*;
