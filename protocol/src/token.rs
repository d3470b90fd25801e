//! The API key grammar.
//!
//! ```text
//! token  = "amt_" key-id "_" secret
//! key-id = 8*32 ( %x61-7A / DIGIT )     ; a-z 0-9
//! secret = 32*64 ( ALPHA / DIGIT )      ; A-Z a-z 0-9
//! ```
//! guardctl issues 12-character key-ids and 43-character secrets (just over 256 bits); the
//! filter accepts the whole grammar, so that keys imported from another issuer work. The hash
//! row of a token is the SHA-256 of the whole token string, prefix included.

/// Every token starts with this.
pub const PREFIX: &str = "amt_";
/// Key-id lengths the grammar accepts.
pub const KEY_ID_LEN: core::ops::RangeInclusive<usize> = 8..=32;
/// Secret lengths the grammar accepts.
pub const SECRET_LEN: core::ops::RangeInclusive<usize> = 32..=64;
/// The longest token: checked before anything else, so a 10 KB header costs nothing.
pub const MAX_TOKEN_LEN: usize = PREFIX.len() + *KEY_ID_LEN.end() + 1 + *SECRET_LEN.end();
/// The shortest token.
pub const MIN_TOKEN_LEN: usize = PREFIX.len() + *KEY_ID_LEN.start() + 1 + *SECRET_LEN.start();
/// Key-id length guardctl issues.
pub const ISSUED_KEY_ID_LEN: usize = 12;
/// Secret length guardctl issues: 43 base62 characters carry just over 256 bits.
pub const ISSUED_SECRET_LEN: usize = 43;
/// The characters of a key-id.
pub const KEY_ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// The characters of a secret.
pub const SECRET_ALPHABET: &[u8; 62] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A syntactically valid token. Borrowed: the secret is never copied out of its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    whole: &'a str,
    key_id: &'a str,
}

impl<'a> Token<'a> {
    /// The whole token (`amt_<key-id>_<secret>`): the input of the hash, never logged.
    pub fn as_str(&self) -> &'a str {
        self.whole
    }

    /// The key-id: the only part of a credential that may appear in logs.
    pub fn key_id(&self) -> &'a str {
        self.key_id
    }
}

fn is_key_id_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// True when `key_id` has the grammar's shape.
pub fn is_valid_key_id(key_id: &str) -> bool {
    KEY_ID_LEN.contains(&key_id.len()) && key_id.bytes().all(is_key_id_byte)
}

/// True when `secret` has the grammar's shape.
pub fn is_valid_secret(secret: &str) -> bool {
    SECRET_LEN.contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Parses a bare token (`amt_<key-id>_<secret>`); anything else is `None`.
pub fn parse_token(token: &str) -> Option<Token<'_>> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (key_id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    (is_valid_key_id(key_id) && is_valid_secret(secret)).then_some(Token {
        whole: token,
        key_id,
    })
}

/// The token of a key-id and a secret, when both have the grammar's shape.
pub fn format_token(key_id: &str, secret: &str) -> Option<String> {
    (is_valid_key_id(key_id) && is_valid_secret(secret))
        .then(|| format!("{PREFIX}{key_id}_{secret}"))
}

/// True when the bytes contain something of the token grammar: `amt_` + key-id (8 to 32 of
/// `[a-z0-9]`, ending at `_`) + `_` + at least 32 of `[A-Za-z0-9]`. Looser than [`parse_token`]
/// on purpose, for finding a token where it must not be (a URL, a header, a body, an import
/// file): a secret run longer than 64 still counts, and the token may sit anywhere (no word
/// boundary needed), so `xamt_...`, `"Bearer amt_..."` and `amt_..._...tail` are all found.
pub fn contains_token(s: &[u8]) -> bool {
    if s.len() < MIN_TOKEN_LEN {
        return false;
    }
    // Every token has the `_` that ends `amt_`: find each `_`, eight bytes at a time, and look
    // around it. Text without underscores costs a pass of word operations.
    let mut from = PREFIX.len() - 1;
    while let Some(at) = find_underscore(s, from) {
        if at >= 3 && s.get(at - 3..at) == Some(b"amt") && token_at(s, at + 1) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// The first `_` at or after `from`.
fn find_underscore(s: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while let Some(Ok(word)) = s.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let x = u64::from_le_bytes(word) ^ (ONES * u64::from(b'_'));
        // The lowest flagged byte is exact (a borrow only flags bytes above a real match).
        let hits = x.wrapping_sub(ONES) & !x & HIGHS;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s.get(i..)?.iter().position(|&b| b == b'_').map(|p| i + p)
}

/// `s[at..]` starts with `key-id "_" secret`.
fn token_at(s: &[u8], at: usize) -> bool {
    let tail = s.get(at..).unwrap_or_default();
    let id_len = tail.iter().take_while(|&&b| is_key_id_byte(b)).count();
    if !KEY_ID_LEN.contains(&id_len) || tail.get(id_len) != Some(&b'_') {
        return false;
    }
    let secret = tail.get(id_len + 1..).unwrap_or_default();
    let secret_len = secret
        .iter()
        .take(*SECRET_LEN.start())
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    secret_len >= *SECRET_LEN.start()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_ID: &str = "k3x9a0b1c2d3";
    const SECRET: &str = "Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";

    #[test]
    fn format_then_parse_gives_the_parts_back() {
        for (key_id, secret) in [
            (KEY_ID, SECRET),
            (&*"a".repeat(8), &*"B".repeat(32)),
            (&*"0".repeat(32), &*"z".repeat(64)),
        ] {
            let token = format_token(key_id, secret).unwrap();
            let parsed = parse_token(&token).unwrap();
            assert_eq!(parsed.key_id(), key_id);
            assert_eq!(parsed.as_str(), token);
            assert!(contains_token(token.as_bytes()));
        }
        assert_eq!(
            format_token(&"a".repeat(32), &"B".repeat(64)).map(|t| t.len()),
            Some(MAX_TOKEN_LEN)
        );
        assert_eq!(
            format_token(&"a".repeat(8), &"B".repeat(32)).map(|t| t.len()),
            Some(MIN_TOKEN_LEN)
        );
        assert_eq!(
            PREFIX.len() + ISSUED_KEY_ID_LEN + 1 + ISSUED_SECRET_LEN,
            60,
            "issued tokens are 60 bytes"
        );
    }

    #[test]
    fn every_edge_of_the_grammar() {
        let bad = [
            format!("AMT_{KEY_ID}_{SECRET}"),
            format!("amt_{}_{SECRET}", KEY_ID.to_uppercase()),
            format!("amt_{}_{SECRET}", "a".repeat(7)),
            format!("amt_{}_{SECRET}", "a".repeat(33)),
            format!("amt_{KEY_ID}_{}", "B".repeat(31)),
            format!("amt_{KEY_ID}_{}", "B".repeat(65)),
            format!("amt_{KEY_ID}_{SECRET}_extra"),
            format!("amt_{KEY_ID}_{}é", &SECRET[..40]),
            format!("amt_{KEY_ID}-{SECRET}"),
            format!("amt__{SECRET}"),
            format!("amt_{KEY_ID}_"),
            format!(" amt_{KEY_ID}_{SECRET}"),
            format!("amt_{KEY_ID}_{SECRET} "),
            "a".repeat(10_000),
        ];
        for case in &bad {
            assert_eq!(parse_token(case), None, "{case:?}");
        }
        assert_eq!(format_token("short", SECRET), None);
        assert_eq!(format_token(KEY_ID, "short"), None);
        assert!(!is_valid_key_id("abcd_1234"));
        assert!(!is_valid_secret(&"é".repeat(20)));
    }

    #[test]
    fn finds_tokens_anywhere() {
        let t = format!("amt_k3x9a0b1_{}", "Ab1".repeat(11));
        for holder in [
            t.clone(),
            format!("Bearer {t}"),
            format!("xamt_{}", &t[4..]),
            format!("{t}ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"),
            format!("amamt_amt_{}", &t[4..]),
            format!("/api/mcp?x=1&t={t}&y=2"),
            format!("/api/mcp?t={t}_x"),
        ] {
            assert!(contains_token(holder.as_bytes()), "{holder}");
        }
        for not in [
            format!("amt_k3x9a0b_{}", "A".repeat(40)),
            format!("amt_K3X9A0B1_{}", "A".repeat(40)),
            format!("amt_k3x9a0b1_{}", "A".repeat(31)),
            format!("AMT_k3x9a0b1_{}", "A".repeat(40)),
            format!("amt_{}_{}", "a".repeat(33), "A".repeat(40)),
            "amt_".to_string(),
            "/api/mcp?amt_=1&name=amt_short".to_string(),
        ] {
            assert!(!contains_token(not.as_bytes()), "{not}");
        }
        // Every alignment of the `_` within the scanner's 8-byte words, after other underscores.
        for pad in 0..17 {
            let holder = format!("{}{t}", "_a".repeat(pad));
            assert!(contains_token(holder.as_bytes()), "{holder}");
            assert!(!contains_token(
                holder[..holder.len() - 1].replace("amt", "amx").as_bytes()
            ));
        }
    }
}
