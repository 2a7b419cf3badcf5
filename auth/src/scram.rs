//! SCRAM-SHA-256 (RFC 5802, RFC 7677) on the server's side, as PostgreSQL
//! runs it: an API key signs in on a Postgres wire protocol without the key
//! crossing the wire, checked against the salted password its record keeps.
//! Channel binding is not offered (the client's `n,,` or `y,,` header).

use data_encoding::BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::keys::{SCRAM_ITERATIONS, StoredKey};

/// The exchange after the client's first message: what the client's final
/// message is checked against.
pub struct Exchange {
    salted: Vec<u8>,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    gs2_header: String,
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn attribute<'a>(message: &'a str, name: char) -> Option<&'a str> {
    message.split(',').find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
}

impl Exchange {
    /// Answer the client's first message for `key` (with `server_nonce`,
    /// random): the server's first message, and the exchange to finish.
    pub fn start(key: &StoredKey, client_first: &[u8], server_nonce: &[u8]) -> Result<(Exchange, String), String> {
        let text = std::str::from_utf8(client_first).map_err(|_| "the SCRAM message is not UTF-8")?;
        let (gs2_header, bare) = match text.split_once(",,") {
            Some((flag, bare)) if flag == "n" || flag == "y" => (format!("{flag},,"), bare),
            Some((flag, _)) if flag.starts_with("p=") => return Err("channel binding is not offered: connect with channel_binding=disable or prefer".into()),
            _ => return Err("a malformed SCRAM first message".into()),
        };
        let client_nonce = attribute(bare, 'r').filter(|n| !n.is_empty()).ok_or("the SCRAM first message has no nonce")?;
        let (salt, salted) = key.scram_secret().ok_or("the key's SCRAM secret is damaged")?;
        let nonce = format!("{client_nonce}{}", BASE64.encode(server_nonce));
        let server_first = format!("r={nonce},s={},i={SCRAM_ITERATIONS}", BASE64.encode(&salt));
        let exchange = Exchange { salted, client_first_bare: bare.to_owned(), server_first: server_first.clone(), nonce, gs2_header };
        Ok((exchange, server_first))
    }

    /// Check the client's final message: the server's final message if its
    /// proof is the key's.
    pub fn finish(self, client_final: &[u8]) -> Result<String, String> {
        let text = std::str::from_utf8(client_final).map_err(|_| "the SCRAM message is not UTF-8")?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or("the SCRAM final message has no proof")?;
        if attribute(without_proof, 'c') != Some(BASE64.encode(self.gs2_header.as_bytes()).as_str()) {
            return Err("the SCRAM channel binding does not match".into());
        }
        if attribute(without_proof, 'r') != Some(self.nonce.as_str()) {
            return Err("the SCRAM nonce does not match".into());
        }
        let proof = BASE64.decode(proof.as_bytes()).map_err(|_| "the SCRAM proof is not base64")?;
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        let client_key = hmac(&self.salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let signature = hmac(&stored_key, auth_message.as_bytes());
        if proof.len() != 32 {
            return Err("the password is not this key".into());
        }
        let presented: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        let presented_stored: [u8; 32] = Sha256::digest(&presented).into();
        if !bool::from(presented_stored.ct_eq(&stored_key)) {
            return Err("the password is not this key".into());
        }
        let server_key = hmac(&self.salted, b"Server Key");
        Ok(format!("v={}", BASE64.encode(&hmac(&server_key, auth_message.as_bytes()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::salted_password;

    /// A client's side of the exchange, as RFC 5802 computes it.
    fn client_final(password: &str, salt: &[u8], client_first_bare: &str, server_first: &str) -> (String, String) {
        let nonce = attribute(server_first, 'r').unwrap();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let salted = salted_password(password.as_bytes(), salt, SCRAM_ITERATIONS);
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let signature = hmac(&stored, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
        let server_signature = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
        (format!("{without_proof},p={}", BASE64.encode(&proof)), format!("v={}", BASE64.encode(&server_signature)))
    }

    fn key(password: &str, salt: &[u8]) -> StoredKey {
        serde_json::from_value(serde_json::json!({
            "id": "abcdefabcdef", "scope": "write", "tenants": ["*"], "hash": "", "createdMs": 0,
            "scramSalt": BASE64.encode(salt),
            "scramSaltedPassword": BASE64.encode(&salted_password(password.as_bytes(), salt, SCRAM_ITERATIONS)),
        }))
        .unwrap()
    }

    #[test]
    fn the_right_key_signs_in_and_a_wrong_one_does_not() {
        let stored = key("tlk_abcdefabcdef_secret", b"salty");
        for (password, ok) in [("tlk_abcdefabcdef_secret", true), ("tlk_abcdefabcdef_wrong", false)] {
            let (exchange, server_first) = Exchange::start(&stored, b"n,,n=,r=clientnonce", b"servernonce").unwrap();
            assert!(server_first.starts_with("r=clientnonce") && server_first.ends_with(",i=4096"));
            let (final_message, expected) = client_final(password, b"salty", "n=,r=clientnonce", &server_first);
            match exchange.finish(final_message.as_bytes()) {
                Ok(server_final) => assert!(ok && server_final == expected),
                Err(why) => assert!(!ok && why.contains("not this key"), "{why}"),
            }
        }
        assert!(Exchange::start(&stored, b"p=tls-server-end-point,,n=,r=x", b"s").err().unwrap().contains("channel binding"));
    }
}
