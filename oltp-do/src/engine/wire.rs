//! The protocol spoken to the engine ([`model::wire`], shared with the
//! edge), and its outcomes as this crate's errors.

pub use model::wire::*;

use crate::error::{Error, Result};

pub trait OutcomeExt: Sized {
    /// The outcome of a client's statement, or its error as theirs.
    fn or_client_error(self) -> Result<Self>;
    /// The outcome of a statement of ours, or its error as ours: `what`
    /// failed, the engine's error its cause.
    fn or_ours(self, what: &str) -> Result<Self>;
}

impl OutcomeExt for Outcome {
    fn or_client_error(self) -> Result<Outcome> {
        match self.error {
            Some(err) => Err(Error::from(err)),
            None => Ok(self),
        }
    }

    fn or_ours(self, what: &str) -> Result<Outcome> {
        match self.error {
            Some(err) => Err(Error::Ours { what: what.to_owned(), source: Box::new(err) }),
            None => Ok(self),
        }
    }
}
