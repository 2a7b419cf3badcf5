//! The engine settings ([`model::EngineSettings`], shared with the edge).

pub use model::EngineSettings;
