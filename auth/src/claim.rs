//! A database per user: the tenant id a claim (such as `sub`) names.
//!
//! The encoding is injective, so two users never share a tenant:
//! - a value that is already a tenant id without a `-` (`[a-z0-9]{1,63}`)
//!   is the tenant id itself: `user42` → `user42`;
//! - any other value of at most 38 bytes is `u-` followed by its bytes in
//!   lowercase base32 without padding: `auth0|42` → `u-mf2xi2bqpq2de`;
//! - a longer one is `h-` followed by the lowercase base32 of its SHA-256:
//!   `h-` and 52 characters.
//!
//! The first kind contains no `-` and the others always do, `u-` and `h-`
//! set the other two apart, base32 is one-to-one and SHA-256 is collision
//! resistant.

use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};

/// The longest value written out in base32 (`u-` + 61 characters = 63).
const MAX_DIRECT_BYTES: usize = 38;

/// The tenant id of a claim's value.
pub fn tenant_of(value: &str) -> String {
    let plain = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if plain {
        return value.to_owned();
    }
    if value.len() <= MAX_DIRECT_BYTES {
        return format!("u-{}", BASE32_NOPAD.encode(value.as_bytes()).to_ascii_lowercase());
    }
    let digest = Sha256::digest(value.as_bytes());
    format!("h-{}", BASE32_NOPAD.encode(&digest).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_claim_names_a_valid_tenant_and_no_two_the_same() {
        let values = [
            "user42", "User42", "auth0|42", "u-user42", "h-x", "", "a", "A", "-", "user_2abcXYZ",
            "alice@example.com", "ALICE@example.com", "é", "x".repeat(38).as_str(), "x".repeat(39).as_str(),
            "y".repeat(63).as_str(), "y".repeat(64).as_str(), "y".repeat(500).as_str(),
            "z".repeat(39).to_uppercase().as_str(),
        ]
        .map(str::to_owned);
        let mut seen = std::collections::HashMap::new();
        for value in &values {
            let tenant = tenant_of(value);
            assert!(model::TenantId::is_valid(&tenant), "{value:?} → {tenant:?}");
            if let Some(other) = seen.insert(tenant.clone(), value.clone()) {
                panic!("{value:?} and {other:?} both → {tenant}");
            }
        }
        assert_eq!(tenant_of("user42"), "user42");
        assert_eq!(tenant_of("auth0|42"), "u-mf2xi2bqpq2de");
        assert!(tenant_of(&"y".repeat(64)).starts_with("h-"));
    }
}
