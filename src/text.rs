//! Text utilities shared by the request-headers pass, the JSON parser, the name policy and the
//! inspector: case folding, the set of characters refused in key names, JSON string escaping,
//! percent-decoding and URL query splitting.
//!
//! # Case folding
//!
//! [`fold_into`] approximates Unicode *full* case folding (CaseFolding.txt, statuses C+F) with the
//! standard library's tables: every character `c` becomes `lower(upper(c))`, applied twice. That
//! maps every member of a folding class onto the same string, including the cases that matter to
//! field binding in case-insensitive decoders:
//!
//! | input | folds to |
//! | --- | --- |
//! | `A`–`Z` | `a`–`z` |
//! | U+017F LATIN SMALL LETTER LONG S `ſ` | `s` |
//! | U+212A KELVIN SIGN `K` | `k` |
//! | U+212B ANGSTROM SIGN `Å` | `å` |
//! | U+0130 `İ` | `i` U+0307 |
//! | U+00DF `ß`, U+1E9E `ẞ` | `ss` |
//! | U+03C2 final sigma `ς` | `σ` |
//! | ligatures such as U+FB00 `ﬀ` | `ff` |
//!
//! Turkic (locale-specific) folds are not applied. No compatibility normalisation (NFKC) is done
//! here; the name policy separately maps fullwidth ASCII (U+FF01–U+FF5E) to ASCII.

/// Appends the case fold of `c` to `out`.
#[inline]
pub fn fold_into(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    for u in c.to_uppercase() {
        for l in u.to_lowercase() {
            // Second round: U+1E9E -> U+00DF -> "ss" and the like.
            if l.is_ascii() {
                out.push(l);
            } else {
                for u2 in l.to_uppercase() {
                    out.extend(u2.to_lowercase());
                }
            }
        }
    }
}

/// Appends the case fold of `s` to `out` (ASCII fast path).
pub fn fold_str_into(s: &str, out: &mut String) {
    if s.is_ascii() {
        let start = out.len();
        out.push_str(s);
        if let Some(tail) = out.get_mut(start..) {
            tail.make_ascii_lowercase();
        }
    } else {
        for c in s.chars() {
            fold_into(c, out);
        }
    }
}

/// True for characters refused in JSON object keys: C0 and C1 controls and DEL, every character of
/// general category Cf (format: zero-width, bidi controls, BOM, soft hyphen, tags...), and other
/// characters that render as nothing (Hangul fillers, combining grapheme joiner, variation
/// selectors, Mongolian free variation selectors), line/paragraph separators and noncharacters.
///
/// The Cf ranges follow Unicode 15.1 `DerivedGeneralCategory.txt`.
pub fn is_forbidden_key_char(c: char) -> bool {
    let cp = u32::from(c);
    if cp < 0x80 {
        return cp < 0x20 || cp == 0x7F;
    }
    FORBIDDEN_KEY_RANGES
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                core::cmp::Ordering::Less
            } else if lo > cp {
                core::cmp::Ordering::Greater
            } else {
                core::cmp::Ordering::Equal
            }
        })
        .is_ok()
        || (cp & 0xFFFE) == 0xFFFE
}

/// Sorted, non-overlapping inclusive ranges (above ASCII) of [`is_forbidden_key_char`].
const FORBIDDEN_KEY_RANGES: &[(u32, u32)] = &[
    (0x0080, 0x009F),   // C1 controls
    (0x00AD, 0x00AD),   // soft hyphen (Cf)
    (0x034F, 0x034F),   // combining grapheme joiner
    (0x0600, 0x0605),   // Arabic number signs (Cf)
    (0x061C, 0x061C),   // Arabic letter mark (Cf)
    (0x06DD, 0x06DD),   // Arabic end of ayah (Cf)
    (0x070F, 0x070F),   // Syriac abbreviation mark (Cf)
    (0x0890, 0x0891),   // Arabic pound/piastre mark above (Cf)
    (0x08E2, 0x08E2),   // Arabic disputed end of ayah (Cf)
    (0x115F, 0x1160),   // Hangul choseong/jungseong fillers
    (0x17B4, 0x17B5),   // Khmer inherent vowels (invisible)
    (0x180B, 0x180F),   // Mongolian free variation selectors, vowel separator (Cf)
    (0x200B, 0x200F),   // zero width space/non-joiner/joiner, LRM, RLM (Cf)
    (0x2028, 0x202E),   // line/paragraph separators, bidi embeddings and overrides (Cf)
    (0x2060, 0x2064),   // word joiner, invisible operators (Cf)
    (0x2066, 0x206F),   // bidi isolates, deprecated format characters (Cf)
    (0x3164, 0x3164),   // Hangul filler
    (0xFDD0, 0xFDEF),   // noncharacters
    (0xFE00, 0xFE0F),   // variation selectors
    (0xFEFF, 0xFEFF),   // zero width no-break space / BOM (Cf)
    (0xFFA0, 0xFFA0),   // halfwidth Hangul filler
    (0xFFF9, 0xFFFB),   // interlinear annotation (Cf)
    (0x110BD, 0x110BD), // Kaithi number sign (Cf)
    (0x110CD, 0x110CD), // Kaithi number sign above (Cf)
    (0x13430, 0x1343F), // Egyptian hieroglyph format controls (Cf)
    (0x1BCA0, 0x1BCA3), // shorthand format controls (Cf)
    (0x1D173, 0x1D17A), // musical symbol format controls (Cf)
    (0xE0000, 0xE0FFF), // tags (Cf) and variation selectors supplement
];

/// Appends `s` to `out` as the inside of a JSON string literal. Escapes quotes, backslashes,
/// controls, DEL and U+2028/U+2029 (which break JavaScript embedding).
pub fn json_escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                push_u_escape(c as u32, out);
            }
            c => out.push(c),
        }
    }
}

fn push_u_escape(cp: u32, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\u");
    for shift in [12u32, 8, 4, 0] {
        let nibble = ((cp >> shift) & 0xF) as usize;
        out.push(char::from(HEX.get(nibble).copied().unwrap_or(b'0')));
    }
}

/// `%XX` sequences decoded (invalid ones kept as they are); `None` when there is none.
pub fn percent_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let pair = (bytes.get(i + 1).copied(), bytes.get(i + 2).copied());
        if let (b'%', (Some(h), Some(l))) = (b, pair) {
            if let (Some(h), Some(l)) = (hex(h), hex(l)) {
                out.push((h * 16 + l) as u8);
                changed = true;
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

/// The parameters of a URL's query, split the ways servers split them (`&`, and `;` too).
pub fn query_params(path: &str) -> impl Iterator<Item = &str> {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    query.split(['&', ';'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(s: &str) -> String {
        let mut out = String::new();
        fold_str_into(s, &mut out);
        out
    }

    #[test]
    fn folds_the_advisory_characters() {
        assert_eq!(fold("NAME"), "name");
        assert_eq!(fold("Params"), "params");
        assert_eq!(fold("na\u{17F}e"), fold("nase"));
        assert_eq!(fold("\u{212A}ey"), "key");
        assert_eq!(fold("\u{212B}"), fold("\u{C5}"));
        assert_eq!(fold("stra\u{DF}e"), "strasse");
        assert_eq!(fold("STRA\u{1E9E}E"), "strasse");
        assert_eq!(fold("\u{3C2}"), fold("\u{3A3}"));
        assert_eq!(fold("\u{FB00}"), "ff");
        assert_eq!(fold("\u{130}"), "i\u{307}");
    }

    #[test]
    fn forbidden_key_chars() {
        for c in [
            '\0',
            '\u{1f}',
            '\u{7f}',
            '\u{85}',
            '\u{9f}',
            '\u{ad}',
            '\u{200b}',
            '\u{200d}',
            '\u{200f}',
            '\u{202a}',
            '\u{202e}',
            '\u{2060}',
            '\u{2064}',
            '\u{2066}',
            '\u{2069}',
            '\u{feff}',
            '\u{e0041}',
            '\u{fe0f}',
            '\u{3164}',
            '\u{ffff}',
            '\u{1fffe}',
        ] {
            assert!(is_forbidden_key_char(c), "{:x}", c as u32);
        }
        for c in [
            'a',
            ' ',
            '~',
            '\u{a0}',
            'é',
            '\u{2010}',
            '\u{4e2d}',
            '\u{1f600}',
        ] {
            assert!(!is_forbidden_key_char(c), "{:x}", c as u32);
        }
        assert!(FORBIDDEN_KEY_RANGES.windows(2).all(|w| w[0].1 < w[1].0));
    }

    #[test]
    fn escapes_for_json() {
        let mut out = String::new();
        json_escape_into("a\"b\\c\n\u{1}\u{2028}é", &mut out);
        assert_eq!(out, "a\\\"b\\\\c\\n\\u0001\\u2028é");
    }
}
