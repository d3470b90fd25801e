//! API key tokens: `amt_<key-id>_<secret>` (see docs/protocol.md, "Tokens and hash rows").
//!
//! guardctl only ever keeps the SHA-256 of a token; the plaintext leaves this module once, in the
//! answer to the create request.

use rand::Rng;
use sha2::{Digest, Sha256};
use std::fmt;

/// Every token starts with this prefix; the proxy rejects anything else before hashing.
pub const TOKEN_PREFIX: &str = "amt_";
/// Length of the key-ids guardctl issues (the grammar accepts 8 to 32).
pub const KEY_ID_LEN: usize = 12;
/// Length of the secrets guardctl issues: 43 base62 characters carry just over 256 bits.
pub const SECRET_LEN: usize = 43;

const KEY_ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const BASE62_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

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
    let key_id = random_string(KEY_ID_ALPHABET, KEY_ID_LEN);
    let secret = random_string(BASE62_ALPHABET, SECRET_LEN);
    let token = format!("{TOKEN_PREFIX}{key_id}_{secret}");
    let sha256 = sha256_hex(token.as_bytes());
    NewToken {
        key_id,
        token,
        sha256,
    }
}

/// A random base62 string, used for secrets and for the admin token.
pub fn random_base62(len: usize) -> String {
    random_string(BASE62_ALPHABET, len)
}

/// A random lowercase hex string of `len` characters (the database epoch).
pub fn random_hex(len: usize) -> String {
    random_string(b"0123456789abcdef", len)
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(&Sha256::digest(data))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    // `random_range` is uniform (rejection sampling), so no character is favoured.
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// True when `key_id` matches the key-id grammar `[a-z0-9]{8,32}`.
pub fn is_valid_key_id(key_id: &str) -> bool {
    (8..=32).contains(&key_id.len())
        && key_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_token_matches_the_grammar() {
        for _ in 0..200 {
            let new = generate_token();
            assert_eq!(new.key_id.len(), KEY_ID_LEN);
            assert!(is_valid_key_id(&new.key_id));
            let rest = new.token.strip_prefix(TOKEN_PREFIX).unwrap_or_default();
            let (key_id, secret) = rest.split_once('_').unwrap_or_default();
            assert_eq!(key_id, new.key_id);
            assert_eq!(secret.len(), SECRET_LEN);
            assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(new.token.len(), 4 + KEY_ID_LEN + 1 + SECRET_LEN);
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

    #[test]
    fn key_id_grammar() {
        assert!(is_valid_key_id("abcd1234"));
        assert!(is_valid_key_id(&"a".repeat(32)));
        assert!(!is_valid_key_id("abc1234"));
        assert!(!is_valid_key_id(&"a".repeat(33)));
        assert!(!is_valid_key_id("ABCD1234"));
        assert!(!is_valid_key_id("abcd_1234"));
    }
}
