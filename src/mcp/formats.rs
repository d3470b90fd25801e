//! Credential formats with a high-confidence shape, found anywhere in a string value: a fixed
//! prefix, then a length and alphabet (and a decoded header, for JWTs), bounded on both sides so
//! that a longer run of the same characters (an identifier, a base64 blob) is not taken for one.
//! One forward pass over the string, no backtracking: at each byte that can start a format, a
//! few comparisons decide.
//!
//! | rule | shape |
//! |---|---|
//! | `github_token` | `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + 36 to 251 `[A-Za-z0-9]` |
//! | `github_pat` | `github_pat_` + 22 `[A-Za-z0-9]` + `_` + 59 `[A-Za-z0-9]` |
//! | `gitlab_token` | `glpat-` + at least 20 `[A-Za-z0-9_.-]` with a digit and a capital |
//! | `slack_token` | `xoxa-` `xoxb-` `xoxc-` `xoxd-` `xoxe-` `xoxp-` `xoxr-` `xoxs-` `xapp-` + at least 10 `[A-Za-z0-9-]` holding a digit |
//! | `slack_webhook` | `hooks.slack.com/services/` + `T…/B…/` + at least 20 `[A-Za-z0-9]`; `hooks.slack.com/workflows/…`, `/triggers/…` |
//! | `stripe_key` | `sk_live_`, `rk_live_` + at least 24 `[A-Za-z0-9]` |
//! | `aws_access_key_id` | `AKIA`, `ASIA` + 16 `[A-Z0-9]` |
//! | `google_api_key` | `AIza` + 35 `[A-Za-z0-9_-]` |
//! | `openai_key` | `sk-proj-`, `sk-svcacct-`, `sk-admin-`, `sk-None-` + at least 40 `[A-Za-z0-9_-]` with a digit and a capital; or `sk-` + 20 `[A-Za-z0-9]` + `T3BlbkFJ` + 20 `[A-Za-z0-9]` |
//! | `anthropic_key` | `sk-ant-` + `api`, `admin` or `oat` + 2 digits + `-` + at least 80 `[A-Za-z0-9_-]` with a digit and a capital |
//! | `npm_token` | `npm_` + 36 `[A-Za-z0-9]` |
//! | `private_key` | `-----BEGIN ` + optional `RSA `/`EC `/`DSA `/`OPENSSH `/`ENCRYPTED `/`PGP ` + `PRIVATE KEY` (+ ` BLOCK`) + `-----` |
//! | `jwt` | a JWS (`ey…` `.` `ey…` `.` signature) or JWE (the second part may be empty when the header names `enc`), the header decoding to a JSON object with `"alg"` |

/// A credential format, each its own rule (metric, reply) and setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    GithubToken,
    GithubPat,
    GitlabToken,
    SlackToken,
    SlackWebhook,
    StripeKey,
    AwsAccessKeyId,
    GoogleApiKey,
    OpenaiKey,
    AnthropicKey,
    NpmToken,
    PrivateKey,
    Jwt,
}

impl Format {
    pub const ALL: [Format; 13] = [
        Format::GithubToken,
        Format::GithubPat,
        Format::GitlabToken,
        Format::SlackToken,
        Format::SlackWebhook,
        Format::StripeKey,
        Format::AwsAccessKeyId,
        Format::GoogleApiKey,
        Format::OpenaiKey,
        Format::AnthropicKey,
        Format::NpmToken,
        Format::PrivateKey,
        Format::Jwt,
    ];

    /// The rule name: in the -32602 answer, the metric and the configuration.
    pub fn rule(self) -> &'static str {
        match self {
            Format::GithubToken => "github_token",
            Format::GithubPat => "github_pat",
            Format::GitlabToken => "gitlab_token",
            Format::SlackToken => "slack_token",
            Format::SlackWebhook => "slack_webhook",
            Format::StripeKey => "stripe_key",
            Format::AwsAccessKeyId => "aws_access_key_id",
            Format::GoogleApiKey => "google_api_key",
            Format::OpenaiKey => "openai_key",
            Format::AnthropicKey => "anthropic_key",
            Format::NpmToken => "npm_token",
            Format::PrivateKey => "private_key",
            Format::Jwt => "jwt",
        }
    }

    pub fn from_rule(rule: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.rule() == rule)
    }

    fn index(self) -> usize {
        Format::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// What the body policy does with a value in a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatAction {
    /// Not looked for.
    Off,
    /// Forwarded, counted (`mcp_guard.body.audit.<rule>`) and logged.
    Audit,
    /// Refused with -32602.
    Enforce,
}

/// One action per format; every format enforced by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatPolicy {
    actions: [FormatAction; Format::ALL.len()],
}

impl Default for FormatPolicy {
    fn default() -> Self {
        FormatPolicy {
            actions: [FormatAction::Enforce; Format::ALL.len()],
        }
    }
}

impl FormatPolicy {
    pub fn action(&self, format: Format) -> FormatAction {
        self.actions
            .get(format.index())
            .copied()
            .unwrap_or(FormatAction::Enforce)
    }

    pub fn set(&mut self, format: Format, action: FormatAction) {
        if let Some(slot) = self.actions.get_mut(format.index()) {
            *slot = action;
        }
    }

    /// True when no format is looked for (the scan is skipped).
    pub fn all_off(&self) -> bool {
        self.actions.iter().all(|a| *a == FormatAction::Off)
    }
}

/// The shortest string any format can be: `AKIA` + 16.
pub const MIN_FORMAT_LEN: usize = 20;

/// The first two bytes of every format, as a bit set over byte pairs (8 KiB): the scan stops only
/// where a format can start, which in prose or base64 is rare.
static STARTS: [u64; 1024] = {
    let pairs: [&[u8; 2]; 15] = [
        b"gh", b"gi", b"gl", b"xo", b"xa", b"ho", b"sk", b"rk", b"AK", b"AS", b"AI", b"np", b"--",
        b"ey", b"ew",
    ];
    let mut table = [0u64; 1024];
    let mut i = 0;
    while i < pairs.len() {
        let pair = ((pairs[i][0] as usize) << 8) | pairs[i][1] as usize;
        table[pair >> 6] |= 1 << (pair & 63);
        i += 1;
    }
    table
};

/// The first bytes of [`STARTS`]: most bytes are dismissed by this one lookup.
static FIRST: [bool; 256] = {
    let firsts = b"gxhsrAn-e";
    let mut table = [false; 256];
    let mut i = 0;
    while i < firsts.len() {
        table[firsts[i] as usize] = true;
        i += 1;
    }
    table
};

fn may_start(first: u8, second: u8) -> bool {
    let pair = (usize::from(first) << 8) | usize::from(second);
    STARTS
        .get(pair >> 6)
        .is_some_and(|word| word & (1 << (pair & 63)) != 0)
}

/// A key body, not a word or a slug: the run holds a digit and an upper-case letter (random
/// 20+ character keys do; `rotation-policy-docs` does not).
fn random_looking(s: &[u8], class: fn(u8) -> bool) -> bool {
    let body = s.get(..run(s, class, usize::MAX)).unwrap_or_default();
    body.iter().any(u8::is_ascii_digit) && body.iter().any(u8::is_ascii_uppercase)
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_url_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The length of the run of `class` characters at the start of `s`, at most `max`.
fn run(s: &[u8], class: fn(u8) -> bool, max: usize) -> usize {
    s.iter().take(max).take_while(|&&b| class(b)).count()
}

/// Exactly `n` characters of `class`, and no more of them right after.
fn exactly(s: &[u8], class: fn(u8) -> bool, n: usize) -> bool {
    run(s, class, n + 1) == n
}

/// At least `n` characters of `class`.
fn at_least(s: &[u8], class: fn(u8) -> bool, n: usize) -> bool {
    run(s, class, n) == n
}

/// The first format (in the order of the string) that `s` holds, among those not off.
pub fn find_format(s: &[u8], policy: &FormatPolicy) -> Option<Format> {
    find_format_from(s, 0, policy).map(|(_, format)| format)
}

/// [`find_format`] starting at byte `from`, with where the format starts.
pub fn find_format_from(s: &[u8], from: usize, policy: &FormatPolicy) -> Option<(usize, Format)> {
    if s.len() < MIN_FORMAT_LEN {
        return None;
    }
    let mut i = from;
    while i < s.len() {
        // The tight part: skip to the next byte that can start a format.
        i += s.get(i..)?.iter().position(|&b| FIRST[usize::from(b)])?;
        let first = s.get(i).copied().unwrap_or(0);
        if !s.get(i + 1).is_some_and(|&second| may_start(first, second)) {
            i += 1;
            continue;
        }
        let b = s.get(i).copied().unwrap_or(0);
        // The word-start rule first: it keeps the scan linear (a JWT header is read once per
        // run, not once per `eyJ` inside it).
        let kind = match b {
            b'A' => Some(Format::AwsAccessKeyId),
            b'e' => Some(Format::Jwt),
            _ => None,
        };
        if kind.is_none_or(|f| starts_a_word(s, i, f)) {
            if let Some(format) = format_at(s.get(i..).unwrap_or_default(), b) {
                if policy.action(format) != FormatAction::Off {
                    return Some((i, format));
                }
            }
        }
        i += 1;
    }
    None
}

/// Formats whose prefix has a `_` or `-` (or is a URL) cannot be the middle of a standard base64
/// run or an ordinary word, so they count wherever they start (`keyghp_...`, after `/` in a URL,
/// after `+` or `%20`). The others (`AKIA`, `AIza`, JWTs) must start a word: not right after a
/// letter or digit, unless that is the end of a `%XX` escape.
fn starts_a_word(s: &[u8], at: usize, format: Format) -> bool {
    if !matches!(
        format,
        Format::AwsAccessKeyId | Format::GoogleApiKey | Format::Jwt
    ) {
        return true;
    }
    let before = |n: usize| at.checked_sub(n).and_then(|i| s.get(i)).copied();
    match before(1) {
        None => true,
        Some(p)
            if !p.is_ascii_alphanumeric() && p != b'_' && p != b'-'
                || format != Format::Jwt && !p.is_ascii_alphanumeric() =>
        {
            true
        }
        Some(p) => {
            before(3) == Some(b'%')
                && p.is_ascii_hexdigit()
                && before(2).is_some_and(|h| h.is_ascii_hexdigit())
        }
    }
}

/// The format starting at `s[0]` (which is `first`), if any.
fn format_at(s: &[u8], first: u8) -> Option<Format> {
    let rest = |n: usize| s.get(n..).unwrap_or_default();
    let has = |prefix: &[u8]| s.starts_with(prefix);
    match first {
        b'g' => {
            if s.get(1) == Some(&b'h')
                && s.get(3) == Some(&b'_')
                && matches!(s.get(2), Some(b'p' | b'o' | b'u' | b's' | b'r'))
                && (36..=251).contains(&run(rest(4), is_alnum, 252))
            {
                return Some(Format::GithubToken);
            }
            if has(b"github_pat_")
                && exactly(rest(11), is_alnum, 22)
                && s.get(33) == Some(&b'_')
                && exactly(rest(34), is_alnum, 59)
            {
                return Some(Format::GithubPat);
            }
            let gitlab = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
            (has(b"glpat-") && at_least(rest(6), gitlab, 20) && random_looking(rest(6), gitlab))
                .then_some(Format::GitlabToken)
        }
        b'x' => {
            let prefixed = (has(b"xox")
                && matches!(
                    s.get(3),
                    Some(b'a' | b'b' | b'p' | b'r' | b's' | b'e' | b'c' | b'd')
                )
                && s.get(4) == Some(&b'-'))
                || has(b"xapp-");
            if !prefixed {
                return None;
            }
            let slack = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
            let body = rest(5);
            let len = run(body, slack, 256);
            (len >= 10 && body.iter().take(len).any(u8::is_ascii_digit))
                .then_some(Format::SlackToken)
        }
        b'h' => {
            let after = s.strip_prefix(b"hooks.slack.com/".as_slice())?;
            if after.starts_with(b"workflows/") || after.starts_with(b"triggers/") {
                let id = after.iter().position(|&b| b == b'/').map_or(0, |p| p + 1);
                let body = after.get(id..).unwrap_or_default();
                let len = run(body, |b| b.is_ascii_alphanumeric() || b == b'/', 256);
                return (len >= 20).then_some(Format::SlackWebhook);
            }
            let path = after.strip_prefix(b"services/".as_slice())?;
            let upper = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
            let team = run(path.get(1..).unwrap_or_default(), upper, 32);
            let after_team = path.get(1 + team..).unwrap_or_default();
            let bot = run(after_team.get(2..).unwrap_or_default(), upper, 32);
            let secret = after_team.get(3 + bot..).unwrap_or_default();
            (path.first() == Some(&b'T')
                && team >= 6
                && after_team.first() == Some(&b'/')
                && after_team.get(1) == Some(&b'B')
                && bot >= 6
                && after_team.get(2 + bot) == Some(&b'/')
                && at_least(secret, is_alnum, 20))
            .then_some(Format::SlackWebhook)
        }
        b's' | b'r' => {
            if (has(b"sk_live_") || has(b"rk_live_")) && at_least(rest(8), is_alnum, 24) {
                return Some(Format::StripeKey);
            }
            if first == b'r' || !has(b"sk-") {
                return None;
            }
            if let Some(after) = s.strip_prefix(b"sk-ant-".as_slice()) {
                let kind = after
                    .strip_prefix(b"api".as_slice())
                    .or_else(|| after.strip_prefix(b"admin".as_slice()))
                    .or_else(|| after.strip_prefix(b"oat".as_slice()))?;
                let ok = kind.first().is_some_and(u8::is_ascii_digit)
                    && kind.get(1).is_some_and(u8::is_ascii_digit)
                    && kind.get(2) == Some(&b'-')
                    && at_least(kind.get(3..).unwrap_or_default(), is_url_b64, 80)
                    && random_looking(kind.get(3..).unwrap_or_default(), is_url_b64);
                return ok.then_some(Format::AnthropicKey);
            }
            for prefix in [
                b"sk-proj-".as_slice(),
                b"sk-svcacct-",
                b"sk-admin-",
                b"sk-None-",
            ] {
                if let Some(after) = s.strip_prefix(prefix) {
                    return (at_least(after, is_url_b64, 40) && random_looking(after, is_url_b64))
                        .then_some(Format::OpenaiKey);
                }
            }
            // The legacy form: `T3BlbkFJ` is base64 of "OpenAI", at a fixed place.
            (exactly(rest(3), is_alnum, 48)
                && run(rest(3), is_alnum, 20) == 20
                && s.get(23..31) == Some(b"T3BlbkFJ".as_slice()))
            .then_some(Format::OpenaiKey)
        }
        b'A' => {
            let upper = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
            if (has(b"AKIA") || has(b"ASIA")) && exactly(rest(4), upper, 16) {
                // Not followed by more word characters of another case either; AWS's own
                // documentation examples end in EXAMPLE.
                let next = s.get(20).copied().unwrap_or(b' ');
                if !next.is_ascii_alphanumeric() && s.get(13..20) != Some(b"EXAMPLE".as_slice()) {
                    return Some(Format::AwsAccessKeyId);
                }
            }
            (has(b"AIza") && exactly(rest(4), is_url_b64, 35)).then_some(Format::GoogleApiKey)
        }
        b'n' => (has(b"npm_") && exactly(rest(4), is_alnum, 36)).then_some(Format::NpmToken),
        b'-' => {
            let after = s.strip_prefix(b"-----BEGIN ".as_slice())?;
            let after = [
                b"RSA ".as_slice(),
                b"EC ",
                b"DSA ",
                b"OPENSSH ",
                b"ENCRYPTED ",
                b"PGP ",
            ]
            .iter()
            .find_map(|kind| after.strip_prefix(*kind))
            .unwrap_or(after);
            let after = after.strip_prefix(b"PRIVATE KEY".as_slice())?;
            let after = after.strip_prefix(b" BLOCK".as_slice()).unwrap_or(after);
            after.starts_with(b"-----").then_some(Format::PrivateKey)
        }
        b'e' => {
            // One look per base64url run: a JWT starts its run (see `starts_a_word`), so a run
            // of `-eyJ-eyJ...` is not re-scanned from each of its starts.
            jwt_at(s).then_some(Format::Jwt)
        }
        _ => None,
    }
}

/// A JWS (`header.payload.signature`) or JWE (`header.key.iv.ciphertext.tag`, the key empty
/// for `alg: dir`) whose header decodes to a JSON object naming `alg`: headers written compactly
/// (`eyJ`) or with whitespace (`ew`, `ey`).
fn jwt_at(s: &[u8]) -> bool {
    let header = run(s, is_url_b64, usize::MAX);
    if header < 13
        || !(s.starts_with(b"ey") || s.starts_with(b"ew"))
        || s.get(header) != Some(&b'.')
    {
        return false;
    }
    let mut decoded = Vec::with_capacity(header * 3 / 4 + 3);
    decode_url_b64(s.get(..header).unwrap_or_default(), &mut decoded);
    let object = decoded.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !object || !decoded.windows(5).any(|w| w == b"\"alg\"") {
        return false;
    }
    let second = s.get(header + 1..).unwrap_or_default();
    let second_len = run(second, is_url_b64, usize::MAX);
    if second.get(second_len) != Some(&b'.') {
        return false;
    }
    // JWS: a JSON payload. JWE: the header says `enc`, and the encrypted key may be empty.
    (second_len >= 13 && second.starts_with(b"ey")) || decoded.windows(5).any(|w| w == b"\"enc\"")
}

fn decode_url_b64(text: &[u8], out: &mut Vec<u8>) {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    };
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in text {
        acc = (acc << 6) | u32::from(value(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deterministic run of `n` characters from `alphabet`.
    fn chars(alphabet: &[u8], n: usize, seed: u64) -> String {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x % alphabet.len() as u64) as usize] as char
            })
            .collect()
    }

    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const URL_B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    /// One example of each format, built at run time (no credential-shaped literal in the
    /// source), with the format it must be found as.
    pub(crate) fn samples() -> Vec<(Format, String)> {
        let b64 = |text: &str| crate::auth::smuggled::tests::base64(text.as_bytes(), true, false);
        let jwt = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"HS256","typ":"JWT"}"#),
            b64(r#"{"sub":"1234567890","name":"Jane","iat":1516239022}"#),
            chars(URL_B64, 43, 1)
        );
        vec![
            (
                Format::GithubToken,
                format!("gh{}_{}", "p", chars(ALNUM, 36, 2)),
            ),
            (
                Format::GithubToken,
                format!("gh{}_{}", "s", chars(ALNUM, 36, 3)),
            ),
            (
                Format::GithubPat,
                format!(
                    "github_{}_{}_{}",
                    "pat",
                    chars(ALNUM, 22, 4),
                    chars(ALNUM, 59, 5)
                ),
            ),
            (
                Format::GitlabToken,
                format!("gl{}-{}", "pat", chars(ALNUM, 20, 6)),
            ),
            (
                Format::SlackToken,
                format!("xox{}-123456789012-{}", "b", chars(ALNUM, 24, 7)),
            ),
            (
                Format::SlackWebhook,
                format!(
                    "https://hooks.slack.com/services/T{}/B{}/{}",
                    chars(b"ABCDEFGHIJ0123456789", 8, 8),
                    chars(b"ABCDEFGHIJ0123456789", 10, 9),
                    chars(ALNUM, 24, 10)
                ),
            ),
            (
                Format::StripeKey,
                format!("sk_{}_{}", "live", chars(ALNUM, 24, 11)),
            ),
            (
                Format::StripeKey,
                format!("rk_{}_{}", "live", chars(ALNUM, 99, 12)),
            ),
            (
                Format::AwsAccessKeyId,
                format!("AK{}{}", "IA", chars(UPPER, 16, 13)),
            ),
            (
                Format::AwsAccessKeyId,
                format!("AS{}{}", "IA", chars(UPPER, 16, 14)),
            ),
            (
                Format::GoogleApiKey,
                format!("AI{}{}", "za", chars(URL_B64, 35, 15)),
            ),
            (
                Format::OpenaiKey,
                format!("sk-{}-{}", "proj", chars(URL_B64, 120, 16)),
            ),
            (
                Format::OpenaiKey,
                format!(
                    "sk-{}T3BlbkFJ{}",
                    chars(ALNUM, 20, 17),
                    chars(ALNUM, 20, 18)
                ),
            ),
            (
                Format::AnthropicKey,
                format!("sk-{}-api03-{}AA", "ant", chars(URL_B64, 93, 19)),
            ),
            (
                Format::NpmToken,
                format!("np{}_{}", "m", chars(ALNUM, 36, 20)),
            ),
            (
                Format::PrivateKey,
                format!("-----BEGIN RSA PRIVATE {}-----\nMIIEow", "KEY"),
            ),
            (
                Format::PrivateKey,
                format!("-----BEGIN OPENSSH PRIVATE {}-----\nb3Blbn", "KEY"),
            ),
            (
                Format::PrivateKey,
                format!("-----BEGIN PRIVATE {}-----", "KEY"),
            ),
            (Format::Jwt, jwt),
        ]
    }

    #[test]
    fn every_format_is_found_alone_and_inside_text_urls_and_json() {
        let policy = FormatPolicy::default();
        for (format, sample) in samples() {
            for text in [
                sample.clone(),
                format!("please use {sample} for the deploy"),
                format!("https://api.example.com/v1?key={sample}&x=1"),
                format!("{{\"config\":{{\"value\":\"{sample}\"}}}}"),
                format!("line one\n{sample}\nline three"),
            ] {
                assert_eq!(
                    find_format(text.as_bytes(), &policy),
                    Some(format),
                    "{text}"
                );
            }
        }
        assert!(Format::ALL
            .iter()
            .all(|f| samples().iter().any(|(s, _)| s == f)));
    }

    #[test]
    fn formats_are_found_where_they_leak_in_practice() {
        let policy = FormatPolicy::default();
        let ghp = format!("gh{}_{}", "p", chars(ALNUM, 36, 50));
        let aws = format!("AK{}{}", "IA", chars(UPPER, 16, 51));
        let jwt = samples()
            .into_iter()
            .find(|(f, _)| *f == Format::Jwt)
            .unwrap()
            .1;
        let b64 = |text: &str| crate::auth::smuggled::tests::base64(text.as_bytes(), true, false);
        let jwe = format!(
            "{}..{}.{}.{}",
            b64(r#"{"alg":"dir","enc":"A256GCM"}"#),
            chars(URL_B64, 16, 52),
            chars(URL_B64, 40, 53),
            chars(URL_B64, 22, 54)
        );
        let cases = [
            (
                format!("https://{ghp}@github.com/o/r.git"),
                Format::GithubToken,
            ),
            (format!("keyghp{}", &ghp[3..]), Format::GithubToken),
            (format!("Bearer+{ghp}"), Format::GithubToken),
            (format!("q=my%20token%20{ghp}"), Format::GithubToken),
            (
                format!("gh{}_{}", "p", chars(ALNUM, 40, 55)),
                Format::GithubToken,
            ),
            (format!("s3://{aws}:x@bucket"), Format::AwsAccessKeyId),
            (format!("q=key%3D{aws}"), Format::AwsAccessKeyId),
            (format!("https://x.example/cb/{jwt}"), Format::Jwt),
            (jwe, Format::Jwt),
            (
                format!(
                    "xa{}-1-A0{}-{}",
                    "pp",
                    chars(UPPER, 9, 56),
                    chars(ALNUM, 30, 57)
                ),
                Format::SlackToken,
            ),
            (
                format!("xox{}-{}", "c", chars(ALNUM, 40, 58).to_lowercase() + "1"),
                Format::SlackToken,
            ),
            (
                format!(
                    "https://hooks.slack.com/workflows/T0/A0/{}",
                    chars(ALNUM, 30, 59)
                ),
                Format::SlackWebhook,
            ),
            (
                format!("sk-{}-oat01-{}", "ant", chars(URL_B64, 95, 60) + "A1"),
                Format::AnthropicKey,
            ),
        ];
        for (text, format) in cases {
            assert_eq!(
                find_format(text.as_bytes(), &policy),
                Some(format),
                "{text}"
            );
        }
    }

    #[test]
    fn repeated_starts_are_each_looked_at_once() {
        // Linear: a string made only of format starts (JWT headers that never end well).
        let policy = FormatPolicy::default();
        for unit in ["-eyJ", "eyJ-", "--", "sk-", "-xo", "ghp_"] {
            let text = unit.repeat(1 << 18);
            assert_eq!(find_format(text.as_bytes(), &policy), None, "{unit}");
        }
    }

    #[test]
    fn near_misses_are_not_formats() {
        let policy = FormatPolicy::default();
        let cases = [
            format!("ghp_{}", chars(ALNUM, 35, 30)),
            format!("ghp_{}-", chars(ALNUM, 20, 31)),
            format!("sk-admin-{}", "user-management-dashboard-settings-panel-x"),
            format!("sk-proj-{}", "frontend-monorepo-shared-components-library"),
            "glpat-rotation-policy-v2.docs-and-more".to_string(),
            "xoxp-holiday-party-announcement".to_string(),
            format!("AKIA{}EXAMPLE", "IOSFODNN7"),
            format!("AKIA{}", chars(UPPER, 15, 33)),
            format!("AKIA{}x", chars(UPPER, 16, 34)),
            format!("{}AKIA{}", chars(UPPER, 8, 35), chars(UPPER, 16, 36)),
            format!("sk_test_{}", chars(ALNUM, 30, 37)),
            format!("sk-{}", chars(ALNUM, 48, 38)),
            "xoxb-not-a-token-at-all".to_string(),
            "-----BEGIN PUBLIC KEY-----".to_string(),
            "-----BEGIN CERTIFICATE-----".to_string(),
            format!("eyJ{}.eyJ{}.x", chars(ALNUM, 20, 39), chars(ALNUM, 20, 40)),
            "The GitHub token must start with ghp_ and has 40 characters.".to_string(),
            "npm_config_cache=/tmp/npm".to_string(),
        ];
        for text in &cases {
            assert_eq!(find_format(text.as_bytes(), &policy), None, "{text}");
        }
    }

    #[test]
    fn a_format_that_is_off_is_not_looked_for() {
        let mut policy = FormatPolicy::default();
        let samples = samples();
        let (format, sample) = &samples[0];
        policy.set(*format, FormatAction::Off);
        assert_eq!(find_format(sample.as_bytes(), &policy), None);
        // Another format further on is still found.
        let npm = &samples
            .iter()
            .find(|(f, _)| *f == Format::NpmToken)
            .unwrap()
            .1;
        let text = format!("{sample} and {npm}");
        assert_eq!(
            find_format(text.as_bytes(), &policy),
            Some(Format::NpmToken)
        );
        assert!(!policy.all_off());
        for format in Format::ALL {
            policy.set(format, FormatAction::Off);
        }
        assert!(policy.all_off());
    }

    #[test]
    fn rule_names_are_unique_and_round_trip() {
        for format in Format::ALL {
            assert_eq!(Format::from_rule(format.rule()), Some(format));
        }
        assert_eq!(Format::from_rule("nope"), None);
    }
}

/// The false-positive test of the value rules: a corpus of benign values of the kinds tools
/// carry (generated deterministically, plus this repository's lock file and protocol document).
#[cfg(test)]
mod benign_corpus {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn text(&mut self, alphabet: &[u8], n: usize) -> String {
            (0..n)
                .map(|_| alphabet[self.below(alphabet.len())] as char)
                .collect()
        }
    }

    const HEX: &[u8] = b"0123456789abcdef";
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const WORDS: &[&str] = &[
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "consectetur",
        "adipiscing",
        "elit",
        "sed",
        "do",
        "eiusmod",
        "tempor",
        "incididunt",
        "ut",
        "labore",
        "et",
        "dolore",
        "magna",
        "aliqua",
        "github",
        "token",
        "secret",
        "key",
        "session",
        "access",
        "deploy",
        "slack",
        "hooks",
        "npm",
        "AKIA",
        "sk",
        "live",
        "BEGIN",
        "private",
        "eyJ",
        "stripe",
        "google",
    ];

    fn corpus() -> Vec<String> {
        let mut rng = Rng(0x5eed_cafe_f00d_1234);
        let mut values = Vec::new();
        for _ in 0..2_000 {
            let h = rng.text(HEX, 32);
            values.push(format!(
                "{}-{}-4{}-a{}-{}",
                &h[..8],
                &h[8..12],
                &h[13..16],
                &h[17..20],
                &h[20..]
            ));
            values.push(rng.text(HEX, 40));
            values.push(rng.text(HEX, 64));
            values.push(rng.text(HEX, 64).to_uppercase());
            let n = 100 + rng.below(3_000);
            values.push(format!("data:image/png;base64,{}==", rng.text(B64, n)));
            let n = 16 + rng.below(48);
            values.push(rng.text(ALNUM, n));
            let query: Vec<String> = (0..1 + rng.below(5))
                .map(|_| {
                    let name = WORDS[rng.below(WORDS.len())];
                    let n = 5 + rng.below(60);
                    format!("{name}={}", rng.text(ALNUM, n))
                })
                .collect();
            values.push(format!(
                "https://api.example.com/v2/items/{}?{}",
                rng.below(1 << 20),
                query.join("&")
            ));
            let sentence: Vec<&str> = (0..5 + rng.below(30))
                .map(|_| WORDS[rng.below(WORDS.len())])
                .collect();
            values.push(sentence.join(" "));
            values.push(format!(
                "2026-12-02T04:{:02}:{:02}.{:03}Z INFO request_id={} path=/api/mcp status=200 duration_ms={}",
                rng.below(60), rng.below(60), rng.below(1000), rng.text(HEX, 32), rng.below(900)
            ));
            values.push(format!(
                "commit {}\nAuthor: Dev <dev@example.com>\n\n    fix: {}",
                rng.text(HEX, 40),
                WORDS[rng.below(WORDS.len())]
            ));
        }
        // Compiled in: the wasm32 run in Node has no file system.
        for text in [
            include_str!("../../Cargo.lock"),
            include_str!("../../docs/protocol.md"),
            include_str!("../../tests/corpus/argument-names.tsv"),
        ] {
            values.extend(text.lines().map(str::to_string));
        }
        values
    }

    #[test]
    fn benign_values_are_not_taken_for_credentials() {
        let policy = FormatPolicy::default();
        let values = corpus();
        let hits: Vec<(&String, Format)> = values
            .iter()
            .filter_map(|v| find_format(v.as_bytes(), &policy).map(|f| (v, f)))
            .collect();
        println!(
            "benign values: {}, taken for a credential: {}",
            values.len(),
            hits.len()
        );
        for (value, format) in &hits {
            println!("  FP {}: {:.80}", format.rule(), value);
        }
        // The issue's bound is 0.1%.
        assert!(
            hits.len() * 1_000 < values.len(),
            "{} of {}",
            hits.len(),
            values.len()
        );
    }
}
