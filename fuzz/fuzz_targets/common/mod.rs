//! Reference implementations shared by the fuzz targets. Written independently of the crate's
//! own scanners, straight from the grammar in `src/auth/token.rs`:
//!
//! ```text
//! token  = "amt_" key-id "_" secret
//! key-id = 8*32 ( a-z / 0-9 )
//! secret = 32*64 ( A-Z / a-z / 0-9 )
//! ```
#![allow(dead_code)]

/// `t` is exactly one token of the grammar.
pub fn ref_is_token(t: &str) -> bool {
    let Some(rest) = t.strip_prefix("amt_") else {
        return false;
    };
    let Some((key_id, secret)) = rest.split_once('_') else {
        return false;
    };
    (8..=32).contains(&key_id.len())
        && key_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && (32..=64).contains(&secret.len())
        && secret.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `v` is exactly `Bearer` (any case) + one space + a token.
pub fn ref_is_authorization(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() > 7
        && b[..6].eq_ignore_ascii_case(b"Bearer")
        && b[6] == b' '
        && v.get(7..).is_some_and(ref_is_token)
}

/// Some substring of `s` is a valid token (no delimiter required on either side). Brute force
/// over every `amt_` occurrence and every end position: obviously correct, fine for fuzz sizes.
pub fn ref_contains_token(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 4 <= b.len() {
        if &b[i..i + 4] == b"amt_" {
            let max_end = (i + 4 + 32 + 1 + 64).min(b.len());
            for end in i + 4 + 8 + 1 + 32..=max_end {
                if let Some(sub) = s.get(i..end) {
                    if ref_is_token(sub) {
                        return true;
                    }
                }
            }
        }
        i += 1;
    }
    false
}

/// Properties switched off with `MCP_GUARD_FUZZ_SKIP=name[,name...]`, so a target stays useful
/// for its other properties while a known finding awaits its fix. Everything is checked by
/// default. Names: `token_like_suffix` (token target: `contains_token_like` missing a token
/// followed by `_` or more alphanumerics), `serde_number_range` (inspector target: serde_json
/// refusing a number the strict parser accepts as in range).
pub fn skipped(name: &str) -> bool {
    static SKIP: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SKIP.get_or_init(|| {
        std::env::var("MCP_GUARD_FUZZ_SKIP")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .iter()
    .any(|s| s == name)
}

/// `%XX` decoded once, every valid escape; `None` when there is none.
fn ref_percent_decode(b: &[u8]) -> Option<Vec<u8>> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                changed = true;
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// base64 (either alphabet) decoded from every start position, as far as a token can reach.
fn ref_base64_holds_token(b: &[u8]) -> bool {
    const STANDARD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = |c: u8| {
        let at = |alphabet: &[u8]| alphabet.iter().position(|&x| x == c);
        at(STANDARD).or_else(|| at(URL_SAFE)).map(|p| p as u8)
    };
    // A token is at most 4 + 32 + 1 + 64 bytes; with 2 bytes of misalignment on either side.
    let reach = (4 + 32 + 1 + 64 + 4) * 4 / 3 + 4;
    for start in 0..b.len() {
        let mut bits: u32 = 0;
        let mut nbits = 0;
        let mut out = Vec::new();
        for &c in b[start..].iter().take(reach) {
            let Some(v) = value(c) else { break };
            bits = (bits << 6) | u32::from(v);
            nbits += 6;
            if nbits >= 8 {
                nbits -= 8;
                out.push((bits >> nbits) as u8);
                bits &= (1 << nbits) - 1;
            }
        }
        if ref_contains_token(&String::from_utf8_lossy(&out)) {
            return true;
        }
    }
    false
}

/// A header value a server could decode to a token: as sent, percent-decoded up to three times,
/// and base64 of each of those.
pub fn ref_holds_token(v: &str) -> bool {
    let mut text = v.as_bytes().to_vec();
    for round in 0..=3 {
        if ref_contains_token(&String::from_utf8_lossy(&text)) || ref_base64_holds_token(&text) {
            return true;
        }
        if round == 3 {
            break;
        }
        match ref_percent_decode(&text) {
            Some(decoded) => text = decoded,
            None => break,
        }
    }
    false
}
