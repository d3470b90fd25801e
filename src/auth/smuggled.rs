//! Tokens outside the one `Authorization` header: where the filter looks for them, in which
//! encodings, and how what Envoy logs about a refused request is redacted.
//!
//! A credential sent anywhere else (another header, a cookie, the URL) reaches the upstream, its
//! logs and every hop's access log. So every request header value except the single
//! `Authorization` (and every header name) is scanned for a token of our grammar, as sent and
//! as a server might decode it:
//!
//! - percent-decoding (URLs, cookies, form values), repeated up to [`MAX_PERCENT_ROUNDS`] times
//!   (double encoding: `%255F`);
//! - backslash escapes (`\uXXXX` as JSON decodes them, `\ooo` octal and `\c` as Python's cookie
//!   parser does for quoted cookie values, which Starlette, Django and Werkzeug use);
//! - base64, standard and URL-safe alphabets, padded or not (HTTP Basic and proxy credentials,
//!   JWT segments, opaque cookies), of every run of base64 characters long enough to hold a
//!   token, at each of the four alignments; and leniently, as Python's `b64decode`, Node's
//!   `Buffer.from(s, "base64")` and MIME decoders do, with every character but base64 and `=`
//!   skipped (`YWdl bnQ6 YW10...`). What base64 decodes to is also percent-decoded once
//!   (RFC 6749 section 2.3.1 credentials are percent-encoded before base64), when its `amt`
//!   prefix is not itself encoded (form encoding never encodes letters). All of this is applied
//!   to each percent-decoded form too. Only runs in which `amt` shows through in base64
//!   (`AMT_IN_BASE64`) are decoded, which keeps the scan of ordinary headers cheap.
//!
//! Not decoded: hex, HTML entities, `%uXXXX`, compression, base64 of base64. A server that
//! applies those to a header value could still be handed a token; none of the common ones does.

use crate::text::percent_decode;
use std::borrow::Cow;

use mcp_guard_protocol::token::{contains_token, MIN_TOKEN_LEN};

/// Percent-decoding rounds tried (a value decoded once more than this is not looked at).
pub const MAX_PERCENT_ROUNDS: usize = 3;

/// The shortest base64 run that can decode to a whole token.
const MIN_BASE64_RUN: usize = MIN_TOKEN_LEN.div_ceil(3) * 4;

/// What [`redact`] puts in place of a piece of a value that holds a token.
pub const REDACTED: &str = "[redacted]";

/// True when `value` holds a token, as sent or after the decodings in the module docs.
pub fn holds_token(value: &str) -> bool {
    holds_token_after(value, false)
}

/// [`holds_token`] for a caller that has already looked for the token as sent.
pub fn holds_encoded_token(value: &str) -> bool {
    holds_token_after(value, true)
}

fn holds_token_after(value: &str, plain_checked: bool) -> bool {
    let bytes = value.as_bytes();
    // Every encoding above is at least as long as the token itself.
    if bytes.len() < MIN_TOKEN_LEN {
        return false;
    }
    let traits = Traits::of(bytes);
    let as_sent = !plain_checked && contains_token(bytes);
    if as_sent || encoded_form_holds_token(bytes, traits) {
        return true;
    }
    if !traits.has(Traits::PERCENT) {
        return false;
    }
    let mut text: Cow<'_, [u8]> = Cow::Borrowed(bytes);
    for _ in 0..MAX_PERCENT_ROUNDS {
        let Some(decoded) = percent_decode(&text) else {
            return false;
        };
        if form_holds_token(&decoded, Traits::of(&decoded)) {
            return true;
        }
        text = Cow::Owned(decoded);
    }
    false
}

/// Which kinds of bytes a value holds, from one pass: each decoding is tried only when its
/// trigger is there (in V8, every extra pass over a value costs about 1 ns a byte).
#[derive(Clone, Copy)]
struct Traits(u8);

impl Traits {
    /// A byte that starts `amt` in base64 (`Y`, `F`, `h`: see [`AMT_IN_BASE64`]).
    const AMT_START: u8 = 1;
    const PERCENT: u8 = 4;
    const BACKSLASH: u8 = 8;

    fn of(bytes: &[u8]) -> Traits {
        static CLASS: [u8; 256] = {
            let mut table = [0u8; 256];
            table[b'Y' as usize] = Traits::AMT_START;
            table[b'F' as usize] = Traits::AMT_START;
            table[b'h' as usize] = Traits::AMT_START;
            table[b'%' as usize] = Traits::PERCENT;
            table[b'\\' as usize] = Traits::BACKSLASH;
            table
        };
        Traits(bytes.iter().fold(0, |acc, &b| acc | CLASS[usize::from(b)]))
    }

    fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }
}

/// One form of a value: as it is, with backslash escapes undone, and base64 of either.
fn form_holds_token(bytes: &[u8], traits: Traits) -> bool {
    contains_token(bytes) || encoded_form_holds_token(bytes, traits)
}

/// [`form_holds_token`] but for the token as it is.
fn encoded_form_holds_token(bytes: &[u8], traits: Traits) -> bool {
    if base64_holds_token(bytes, traits) {
        return true;
    }
    traits.has(Traits::BACKSLASH)
        && unescape(bytes)
            .is_some_and(|u| contains_token(&u) || base64_holds_token(&u, Traits::of(&u)))
}

/// Backslash escapes undone: `\uXXXX` (JSON), `\ooo` (octal), `\c` (any other character
/// stands for itself); `None` when there is none.
fn unescape(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let rest = bytes.get(i + 1..).unwrap_or_default();
        let hex4 = rest
            .get(1..5)
            .filter(|_| rest.first() == Some(&b'u'))
            .and_then(|h| u32::from_str_radix(core::str::from_utf8(h).ok()?, 16).ok());
        let octal = rest
            .get(..3)
            .filter(|o| o.iter().all(|d| (b'0'..=b'7').contains(d)))
            .map(|o| o.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0')));
        match (hex4, octal, rest.first()) {
            (Some(cp), _, _) => {
                let mut buf = [0u8; 4];
                let c = char::from_u32(cp).unwrap_or('\u{fffd}');
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 6;
            }
            (None, Some(value), _) => {
                out.push(value as u8);
                i += 4;
            }
            (None, None, Some(&c)) => {
                out.push(c);
                i += 2;
            }
            (None, None, None) => {
                out.push(b);
                i += 1;
                continue;
            }
        }
        changed = true;
    }
    changed.then_some(out)
}

/// Both base64 alphabets at once: `+` and `-` are 62, `/` and `_` are 63.
fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// base64 in a value: every run of base64 characters, and (when other characters interrupt
/// them) the value with everything but base64 characters and `=` skipped, as lenient decoders
/// read it.
fn base64_holds_token(bytes: &[u8], traits: Traits) -> bool {
    if bytes.len() < MIN_BASE64_RUN || !traits.has(Traits::AMT_START) {
        return false;
    }
    // Strict runs: `amt` shows through wherever a run holds it.
    if may_encode_amt(bytes) && base64_runs_hold_token(bytes) {
        return true;
    }
    // Lenient decoders skip whatever is not base64 (line breaks, spaces, dots, commas, ...):
    // decode that compacted text, when `amt` shows through it.
    if !lenient_may_encode_amt(bytes) {
        return false;
    }
    let compact: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|&b| b == b'=' || base64_value(b).is_some())
        .collect();
    base64_runs_hold_token(&compact)
}

/// [`may_encode_amt`] of `bytes` with every character that is neither base64 nor `=` skipped,
/// without building that text: a rolling window over the base64 characters (`=` ends a run).
fn lenient_may_encode_amt(bytes: &[u8]) -> bool {
    let mut window: u32 = 0;
    let mut filled = 0;
    for &b in bytes {
        if b == b'=' {
            filled = 0;
            continue;
        }
        if base64_value(b).is_none() {
            continue;
        }
        window = (window << 8) | u32::from(b);
        filled += 1;
        let last3 = window & 0x00FF_FFFF;
        if (filled >= 4 && window == u32::from_be_bytes(*b"YW10"))
            || (filled >= 3
                && (last3 == u32::from_be_bytes(*b"\0Ftd")
                    || last3 == u32::from_be_bytes(*b"\0hbX")))
        {
            return true;
        }
    }
    false
}

/// Decodes every run of base64 characters long enough to hold a token, at each alignment, and
/// scans what it decodes to, as it is and percent-decoded.
fn base64_runs_hold_token(bytes: &[u8]) -> bool {
    let mut decoded = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let run = bytes
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| base64_value(b).is_some())
            .count();
        let whole = bytes.get(start..start + run).unwrap_or_default();
        if run >= MIN_BASE64_RUN && may_encode_amt(whole) {
            for skip in 0..4 {
                decoded.clear();
                decode_base64_quads(whole.get(skip..).unwrap_or_default(), &mut decoded);
                if contains_token(&decoded)
                    || (decoded.contains(&b'%')
                        && percent_decode(&decoded).is_some_and(|d| contains_token(&d)))
                {
                    return true;
                }
            }
        }
        start += run + 1;
    }
    false
}

/// What `amt` becomes in base64 at each of the three byte alignments (the characters that depend
/// on `amt` alone; both alphabets agree on them): a run holding none of these cannot decode to a
/// token, nor to a percent-encoded one that starts with `amt`.
const AMT_IN_BASE64: [&[u8]; 3] = [b"YW10", b"Ftd", b"hbX"];

fn may_encode_amt(run: &[u8]) -> bool {
    // One pass: stop only at the first byte of a pattern.
    let mut i = 0;
    while let Some(at) = run
        .get(i..)
        .and_then(|tail| tail.iter().position(|b| matches!(b, b'Y' | b'F' | b'h')))
    {
        let tail = run.get(i + at..).unwrap_or_default();
        if AMT_IN_BASE64
            .iter()
            .any(|pattern| tail.starts_with(pattern))
        {
            return true;
        }
        i += at + 1;
    }
    false
}

/// Decodes the base64 characters of `run` (all valid) four by four; a last partial group of
/// two or three characters gives its one or two bytes, as unpadded base64 does.
fn decode_base64_quads(run: &[u8], out: &mut Vec<u8>) {
    for group in run.chunks(4) {
        let mut acc: u32 = 0;
        for (i, &c) in group.iter().enumerate() {
            acc |= u32::from(base64_value(c).unwrap_or(0)) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        let take = match group.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => 0,
        };
        out.extend_from_slice(bytes.get(1..1 + take).unwrap_or_default());
    }
}

/// Separators between the pieces [`redact`] judges one by one: URL and cookie delimiters,
/// list separators and spaces. None of them can be part of a token or of its encodings.
fn is_separator(b: u8) -> bool {
    matches!(
        b,
        b'/' | b'?' | b'&' | b'=' | b';' | b',' | b' ' | b'\t' | b'#' | b':' | b'"' | b'\''
    )
}

/// `value` with every piece (between separators) that holds a token replaced by
/// [`REDACTED`]: what is left is safe to log. `/api/mcp/amt_...?x=1` becomes
/// `/api/mcp/[redacted]?x=1`, `a=1; s=amt%5F...` becomes `a=1; s=[redacted]`. A value that
/// still holds a token after that (a token split across pieces by an encoding) is replaced
/// whole.
pub fn redact(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut piece_start = 0;
    let bytes = value.as_bytes();
    let flush = |out: &mut String, piece: &str| {
        if holds_token(piece) {
            out.push_str(REDACTED);
        } else {
            out.push_str(piece);
        }
    };
    for (i, &b) in bytes.iter().enumerate() {
        if is_separator(b) {
            flush(&mut out, value.get(piece_start..i).unwrap_or_default());
            out.push(char::from(b));
            piece_start = i + 1;
        }
    }
    flush(&mut out, value.get(piece_start..).unwrap_or_default());
    if holds_token(&out) {
        return REDACTED.to_string();
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const TOKEN: &str = "amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";

    /// base64 of `bytes`, for tests that build encoded credentials.
    pub(crate) fn base64(bytes: &[u8], url_safe: bool, pad: bool) -> String {
        let alphabet: &[u8; 64] = if url_safe {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        } else {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        };
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.len();
            let mut acc = 0u32;
            for (i, &b) in chunk.iter().enumerate() {
                acc |= u32::from(b) << (16 - 8 * i);
            }
            for i in 0..=n {
                out.push(alphabet[((acc >> (18 - 6 * i)) & 63) as usize] as char);
            }
            if pad {
                out.push_str(&"=".repeat(3 - n));
            }
        }
        out
    }

    /// `s` with `sep` inserted every four characters.
    fn spaced(s: &str, sep: &str) -> String {
        let chars: Vec<char> = s.chars().collect();
        chars
            .chunks(4)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(sep)
    }

    fn percent_all(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    #[test]
    fn finds_a_token_as_sent_and_in_every_decoding_a_server_might_apply() {
        let underscores = TOKEN.replace('_', "%5F");
        let basic = format!("user:{TOKEN}");
        let cases = [
            TOKEN.to_string(),
            format!("Bearer {TOKEN}"),
            format!("session=abc; k={underscores}"),
            percent_all(TOKEN),
            TOKEN.replace('_', "%255F"),
            TOKEN.replace('_', "%25255F"),
            format!("Basic {}", base64(basic.as_bytes(), false, true)),
            base64(TOKEN.as_bytes(), true, false),
            base64(format!("{{\"k\":\"{TOKEN}\"}}").as_bytes(), true, false),
            // A base64 run glued to other base64 characters: another alignment.
            format!("x{}", base64(TOKEN.as_bytes(), false, false)),
            format!("xy{}", base64(TOKEN.as_bytes(), false, false)),
            format!("xyz{}", base64(TOKEN.as_bytes(), false, false)),
            // base64 sent percent-encoded (a cookie with `=` padding escaped).
            base64(basic.as_bytes(), false, true).replace('=', "%3D"),
            percent_all(&base64(TOKEN.as_bytes(), false, true)),
            // Lenient base64: whitespace or other characters inside.
            spaced(&base64(basic.as_bytes(), false, true), " "),
            spaced(&base64(basic.as_bytes(), false, true), "\t"),
            spaced(&base64(basic.as_bytes(), false, true), "."),
            spaced(&base64(basic.as_bytes(), false, true), "!"),
            spaced(&base64(basic.as_bytes(), false, true), ", "),
            // base64 of a percent-encoded token (RFC 6749 client credentials).
            base64(
                format!("client:{}", TOKEN.replace('_', "%5F")).as_bytes(),
                false,
                true,
            ),
            // Backslash escapes: Python's quoted cookies, JSON.
            format!("k=\"{}\"", TOKEN.replace('_', "\\137")),
            format!("k=\"{}\"", TOKEN.replace('_', "\\_")),
            format!("{{\"key\":\"{}\"}}", TOKEN.replace('_', "\\u005f")),
        ];
        for case in &cases {
            assert!(holds_token(case), "{case}");
        }
    }

    #[test]
    fn ordinary_header_values_hold_no_token() {
        let long_base64 = base64(&[0x5a; 300], false, true);
        let jwt_like = format!(
            "{}.{}.{}",
            base64(br#"{"alg":"HS256","typ":"JWT"}"#, true, false),
            base64(br#"{"sub":"1234567890","name":"amt_user"}"#, true, false),
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
        for value in [
            "",
            "application/json, text/event-stream",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
            "6f1c9a3e-77ab-4c2d-9e1f-0a1b2c3d4e5f",
            "amt_short_value",
            "amt_k3x9a0b1c2d3_tooShort",
            "%41%42%43",
            "%zz%4",
            "C:\\Users\\amt_user\\AppData\\Local\\Programs\\claude\\resources\\app.asar",
            "10.12.0.7, 10.12.0.8, 192.168.100.200, 172.16.254.1, 10.0.0.1, 10.0.0.2, 10.0.0.3",
            long_base64.as_str(),
            jwt_like.as_str(),
        ] {
            assert!(!holds_token(value), "{value}");
        }
    }

    #[test]
    fn amt_shows_through_base64_at_every_alignment() {
        for prefix_len in 0..3 {
            for prefix_byte in [0u8, 0x41, 0x7f, 0xff] {
                for url_safe in [false, true] {
                    let mut bytes = vec![prefix_byte; prefix_len];
                    bytes.extend_from_slice(b"amt");
                    bytes.push(prefix_byte);
                    let encoded = base64(&bytes, url_safe, false);
                    assert!(
                        may_encode_amt(encoded.as_bytes()),
                        "{prefix_len} {prefix_byte}"
                    );
                }
            }
        }
    }

    #[test]
    fn decoding_stops_after_its_rounds() {
        let mut value = TOKEN.replace('_', "%5F");
        for _ in 0..MAX_PERCENT_ROUNDS - 1 {
            value = value.replace('%', "%25");
        }
        assert!(holds_token(&value), "{MAX_PERCENT_ROUNDS} rounds");
        assert!(!holds_token(&value.replace('%', "%25")), "one round more");
    }

    #[test]
    fn redaction_keeps_what_holds_no_token() {
        let encoded = TOKEN.replace('_', "%5F");
        let b64 = base64(format!("u:{TOKEN}").as_bytes(), false, true);
        let cases = [
            (
                format!("/api/mcp/{TOKEN}?x=1"),
                "/api/mcp/[redacted]?x=1".to_string(),
            ),
            (
                format!("/api/mcp?key={encoded}&b=2"),
                "/api/mcp?key=[redacted]&b=2".into(),
            ),
            (format!("a=1; s={encoded}"), "a=1; s=[redacted]".into()),
            (format!("Basic {b64}"), "Basic [redacted]=".into()),
            (TOKEN.to_string(), REDACTED.into()),
            (
                "/api/mcp?cursor=abc".to_string(),
                "/api/mcp?cursor=abc".into(),
            ),
        ];
        for (value, redacted) in cases {
            assert_eq!(redact(&value), redacted, "{value}");
            assert!(!holds_token(&redact(&value)));
        }
        // A token broken by an encoded separator is no token of our grammar.
        let split = format!("{}%2F{}", &TOKEN[..20], &TOKEN[20..]);
        assert!(!holds_token(&split), "a separator inside is no token");
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode(b"a%5Fb%zz%4"), Some(b"a_b%zz%4".to_vec()));
        assert_eq!(percent_decode(b"plain"), None);
    }
}
