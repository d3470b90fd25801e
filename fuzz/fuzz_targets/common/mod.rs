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

/// [`ref_percent_decode`] of a string, lossily.
pub fn ref_percent_decode_str(s: &str) -> Option<String> {
    ref_percent_decode(s.as_bytes()).map(|b| String::from_utf8_lossy(&b).into_owned())
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

/// base64 (either alphabet) decoded from every start position, as far as a token can reach; what
/// it decodes to is looked at as it is and, when it holds `amt`, percent-decoded once.
fn ref_base64_holds_token(b: &[u8]) -> bool {
    const STANDARD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = |c: u8| {
        let at = |alphabet: &[u8]| alphabet.iter().position(|&x| x == c);
        at(STANDARD).or_else(|| at(URL_SAFE)).map(|p| p as u8)
    };
    // A token, percent-encoded (3 bytes a character at most), plus misalignment.
    let reach = (4 + 32 + 1 + 64) * 3 * 4 / 3 + 8;
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
        // Percent-decoded when `amt` itself came through unencoded (form encoding never
        // encodes letters).
        let once = if out.windows(3).any(|w| w == b"amt") {
            ref_percent_decode(&out).unwrap_or_default()
        } else {
            Vec::new()
        };
        if ref_contains_token(&String::from_utf8_lossy(&out))
            || ref_contains_token(&String::from_utf8_lossy(&once))
        {
            return true;
        }
    }
    false
}

/// Backslash escapes undone the way JSON (`\uXXXX`) and Python's cookie parser (`\ooo`, `\c`)
/// undo them.
fn ref_unescape(b: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(b);
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '\\' || i + 1 == chars.len() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let hex: String = chars[i + 1..].iter().skip(1).take(4).collect();
        let oct: String = chars[i + 1..].iter().take(3).collect();
        if chars[i + 1] == 'u' && hex.len() == 4 && u32::from_str_radix(&hex, 16).is_ok() {
            let cp = u32::from_str_radix(&hex, 16).unwrap();
            out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
            i += 6;
        } else if oct.len() == 3 && oct.chars().all(|c| ('0'..='7').contains(&c)) {
            let v = u32::from_str_radix(&oct, 8).unwrap() as u8;
            out.push(if v.is_ascii() { v as char } else { '\u{fffd}' });
            i += 4;
        } else {
            out.push(chars[i + 1]);
            i += 2;
        }
    }
    out.into_bytes()
}

/// A header value a server could decode to a token: as sent, percent-decoded up to three times;
/// each of those with backslash escapes undone; and base64 of all of these, strict and with
/// every character that is neither base64 nor `=` skipped.
pub fn ref_holds_token(v: &str) -> bool {
    let mut text = v.as_bytes().to_vec();
    for round in 0..=3 {
        for form in [text.clone(), ref_unescape(&text)] {
            let base64_char = |c: &u8| c.is_ascii_alphanumeric() || b"+/-_=".contains(c);
            // Lenient decoders skip everything that is not base64 or `=`.
            let lenient: Vec<u8> = form.iter().copied().filter(base64_char).collect();
            if ref_contains_token(&String::from_utf8_lossy(&form))
                || ref_base64_holds_token(&form)
                || ref_base64_holds_token(&lenient)
            {
                return true;
            }
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
