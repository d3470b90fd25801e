//! Issuing API key tokens of the protocol's grammar (`mcp_guard_protocol::token`).
//!
//! guardctl only ever keeps the SHA-256 of a token; the plaintext leaves this module once, in the
//! answer to the create request.

use rand::Rng;
use sha2::{Digest, Sha256};
use std::fmt;

use mcp_guard_protocol::sync::Sha256 as Sha256Hash;
pub use mcp_guard_protocol::token::is_valid_key_id;
use mcp_guard_protocol::token::{
    format_token, ISSUED_KEY_ID_LEN, ISSUED_SECRET_LEN, KEY_ID_ALPHABET, SECRET_ALPHABET,
};

/// A freshly generated token together with the hash row that represents it.
pub struct NewToken {
    pub key_id: String,
    /// The full plaintext token. Shown to the operator once, never stored.
    pub token: String,
    /// Lowercase hex SHA-256 of `token`.
    pub sha256: String,
}

// Hand-written so that a stray `{:?}` can never print the secret into a log.
impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("key_id", &self.key_id)
            .field("token", &"<redacted>")
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// Draws a new token from the thread-local CSPRNG (ChaCha, seeded and reseeded from the OS).
pub fn generate_token() -> NewToken {
    let key_id = random_string(KEY_ID_ALPHABET, ISSUED_KEY_ID_LEN);
    let secret = random_string(SECRET_ALPHABET, ISSUED_SECRET_LEN);
    // Both parts are drawn from the grammar's alphabets at issued lengths, so this never fails.
    let token = format_token(&key_id, &secret).unwrap_or_default();
    let sha256 = sha256_hex(token.as_bytes());
    NewToken {
        key_id,
        token,
        sha256,
    }
}

/// A random base62 string, used for secrets and for the admin token.
pub fn random_base62(len: usize) -> String {
    random_string(SECRET_ALPHABET, len)
}

/// A random lowercase hex string of `len` characters (the database epoch).
pub fn random_hex(len: usize) -> String {
    random_string(b"0123456789abcdef", len)
}

/// Lowercase hex SHA-256 of `data`, as the hash row holds it.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256Hash(Sha256::digest(data).into()).to_hex()
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    // `random_range` is uniform (rejection sampling), so no character is favoured.
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_token_matches_the_grammar() {
        for _ in 0..200 {
            let new = generate_token();
            assert_eq!(new.key_id.len(), ISSUED_KEY_ID_LEN);
            let parsed = mcp_guard_protocol::token::parse_token(&new.token);
            assert_eq!(parsed.map(|t| t.key_id()), Some(new.key_id.as_str()));
            assert_eq!(
                new.token.len(),
                4 + ISSUED_KEY_ID_LEN + 1 + ISSUED_SECRET_LEN
            );
        }
    }

    #[test]
    fn hash_covers_the_whole_token() {
        let new = generate_token();
        assert_eq!(new.sha256, sha256_hex(new.token.as_bytes()));
        assert_eq!(new.sha256.len(), 64);
        assert!(new
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn sha256_hex_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn tokens_are_distinct() {
        let tokens: HashSet<String> = (0..1000).map(|_| generate_token().token).collect();
        assert_eq!(tokens.len(), 1000);
    }

    #[test]
    fn debug_does_not_leak_the_secret() {
        let new = generate_token();
        let shown = format!("{new:?}");
        assert!(!shown.contains(&new.token));
        assert!(shown.contains(&new.key_id));
    }
}
