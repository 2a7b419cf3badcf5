//! The validated tenant identifier every part of tidelake takes.

use std::fmt;

/// Longest tenant id accepted (the first character plus 62 more).
pub const MAX_TENANT_ID_LEN: usize = 63;

/// A tenant id: `[a-z0-9][a-z0-9-]{0,62}`.
///
/// The grammar is that of a DNS label (lower case), so a tenant id is also a
/// valid subdomain and a valid directory name on every filesystem we run on.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, InvalidTenantId> {
        if Self::is_valid(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidTenantId(raw.chars().take(80).collect()))
        }
    }

    /// Whether `raw` is a tenant id.
    pub fn is_valid(raw: &str) -> bool {
        let bytes = raw.as_bytes();
        let Some(first) = bytes.first() else {
            return false;
        };
        bytes.len() <= MAX_TENANT_ID_LEN
            && (first.is_ascii_lowercase() || first.is_ascii_digit())
            && bytes[1..].iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name that is not a tenant id (its first 80 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant id {0:?}: expected [a-z0-9][a-z0-9-]{{0,62}}")]
pub struct InvalidTenantId(pub String);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_label_shaped_ids() {
        for ok in ["a", "0", "acme", "acme-co", "t-1-2-3", &"a".repeat(63)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "", "-a", "A", "Acme", "a_b", "a.b", "a/b", "..", "a b", "é", &"a".repeat(64),
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}
