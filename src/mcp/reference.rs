//! An independent reference for the secret-name policy, for the property tests and the fuzz
//! target that judge the inspector: "nothing accepted holds a denied name". It shares no code and
//! no list with [`super::names`]: its lists are README's, written out here again, and a table test
//! pins every entry of the policy's own lists, so that neither can drift unseen.
//! Compiled only for tests and with the `reference` feature (the fuzz crate); never shipped.

/// README's default deny list, plurals included (phrases of whole words).
pub const DENY: &[&str] = &[
    "password",
    "passwords",
    "passwd",
    "pwd",
    "passphrase",
    "passphrases",
    "secret",
    "secrets",
    "client secret",
    "client secrets",
    "api key",
    "api keys",
    "apikey",
    "apikeys",
    "access key",
    "access keys",
    "secret key",
    "secret keys",
    "private key",
    "private keys",
    "access token",
    "access tokens",
    "refresh token",
    "refresh tokens",
    "auth token",
    "auth tokens",
    "auth",
    "bearer",
    "id token",
    "id tokens",
    "session token",
    "session tokens",
    "token",
    "credential",
    "credentials",
    "authorization",
    "authentication",
    "cookie",
    "cookies",
    "set cookie",
    "connection string",
    "dsn",
];

/// README's default allow list.
pub const ALLOW: &[&str] = &[
    "max tokens",
    "max output tokens",
    "max completion tokens",
    "token count",
    "num tokens",
    "total tokens",
    "tokenizer",
    "page token",
    "next page token",
    "continuation token",
    "cursor",
    "next cursor",
    "progress token",
    "key id",
    "key name",
    "public key",
    "primary key",
    "partition key",
    "sort key",
    "idempotency key",
    "cache key",
    "secret name",
    "secret id",
    "secret ref",
    "secret type",
    "secret types",
    "credential id",
    "credential type",
    "credential types",
    "api version",
    "api url",
    "access level",
    "password policy",
    "password min length",
    "oauth",
    "private key path",
    "bearer only",
    "auth required",
    "authorization settings",
    "authorization services",
    "authentication flow",
];

/// An independent, naive reference: lower-case with `str::to_lowercase` (plus the long s), split
/// on non-alphanumerics only, and separately also on camelCase humps and digit boundaries. A
/// deny phrase found as a run of whole words (by concatenation) in either splitting must lie,
/// as a character span, inside an allow run of either splitting.
pub fn reference_denies(key: &str) -> Option<String> {
    let deny: Vec<String> = DENY.iter().map(|p| p.replace(' ', "")).collect();
    let allow: Vec<String> = ALLOW.iter().map(|p| p.replace(' ', "")).collect();
    let chars: Vec<char> = key.chars().map(as_latin).collect();
    // Runs (word spans as char index ranges) of one splitting.
    let words_of = |camel: bool| -> Vec<(usize, usize)> {
        let mut words = Vec::new();
        let mut start: Option<usize> = None;
        for (i, &c) in chars.iter().enumerate() {
            if !c.is_alphanumeric() {
                if let Some(s) = start.take() {
                    words.push((s, i));
                }
                continue;
            }
            if let (true, Some(s), Some(&p)) =
                (camel, start, i.checked_sub(1).and_then(|j| chars.get(j)))
            {
                let next = chars.get(i + 1).copied();
                let hump = (p.is_lowercase() && c.is_uppercase())
                    || (p.is_numeric() != c.is_numeric())
                    || (p.is_uppercase()
                        && c.is_uppercase()
                        && next.is_some_and(|n| n.is_lowercase()));
                if hump {
                    words.push((s, i));
                    start = Some(i);
                }
            }
            if start.is_none() {
                start = Some(i);
            }
        }
        if let Some(s) = start {
            words.push((s, chars.len()));
        }
        words
    };
    let text = |a: usize, b: usize| -> String {
        chars[a..b]
            .iter()
            .filter(|c| c.is_alphanumeric())
            .collect::<String>()
            .to_lowercase()
            .replace('ſ', "s")
    };
    let mut deny_spans = Vec::new();
    let mut allow_spans = Vec::new();
    // Word roles are read on the finer (camelCase) splitting, whose boundaries include the
    // other's.
    let fine = words_of(true);
    let fine_word = |k: usize| fine.get(k).map(|&(a, b)| text(a, b)).unwrap_or_default();
    let benign = |a: usize, b: usize, run: &str| -> bool {
        let (Some(i), Some(j)) = (
            fine.iter().position(|w| w.0 == a),
            fine.iter().position(|w| w.1 == b),
        ) else {
            return false;
        };
        let last = fine.len() - 1;
        (last > j && QUALIFIERS.contains(&fine_word(last).as_str()))
            || (i > 0 && FLAGS.contains(&fine_word(0).as_str()))
            || (run == "token"
                && ((i > 0 && TOKEN_BEFORE.contains(&fine_word(i - 1).as_str()))
                    || TOKEN_AFTER.contains(&fine_word(j + 1).as_str())))
    };
    for camel in [true, false] {
        let words = words_of(camel);
        for i in 0..words.len() {
            for j in i..words.len() {
                let (a, b) = (words[i].0, words[j].1);
                let run = text(a, b);
                if deny.contains(&run) && !benign(a, b, &run) {
                    deny_spans.push((a, b, run.clone()));
                }
                if allow.contains(&run) {
                    allow_spans.push((a, b));
                }
            }
        }
    }
    deny_spans
        .into_iter()
        .find(|(a, b, _)| !allow_spans.iter().any(|(x, y)| x <= a && y >= b))
        .map(|(_, _, run)| run)
}

/// README's word roles, written out again.
const QUALIFIERS: &[&str] = &[
    "id",
    "ids",
    "identifier",
    "name",
    "names",
    "arn",
    "arns",
    "type",
    "types",
    "kind",
    "mode",
    "field",
    "fields",
    "selector",
    "strategy",
    "provider",
    "providers",
    "vendor",
    "path",
    "file",
    "filename",
    "url",
    "uri",
    "endpoint",
    "ref",
    "reference",
    "label",
    "format",
    "policy",
    "length",
    "expiry",
    "expiration",
    "ttl",
    "count",
    "status",
    "scope",
    "scopes",
    "location",
    "source",
    "version",
    "hint",
    "description",
    "manager",
    "rotation",
    "env",
    "variable",
    "vault",
    "store",
    "template",
    "pattern",
    "rule",
    "rules",
    "schema",
    "enabled",
    "required",
];
const FLAGS: &[&str] = &[
    "hide", "show", "mask", "masked", "redact", "with", "require", "requires", "use", "enable",
    "disable", "is", "has", "allow", "include", "exclude", "skip", "ignore", "no", "should",
    "supports", "verify", "validate", "check", "needs",
];
const TOKEN_BEFORE: &[&str] = &[
    "next",
    "start",
    "starting",
    "continue",
    "continuation",
    "page",
    "pagination",
    "client",
    "request",
    "idempotency",
    "sync",
    "resume",
    "marker",
    "offset",
    "last",
    "previous",
    "prev",
];
const TOKEN_AFTER: &[&str] = &[
    "address",
    "addresses",
    "symbol",
    "amount",
    "mint",
    "contract",
    "decimals",
    "balance",
    "supply",
    "price",
    "usage",
    "limit",
    "budget",
    "standard",
    "holder",
    "holders",
    "transfer",
    "transfers",
];

/// README's reading of look-alike and compatibility characters, written out again: Cyrillic and
/// Greek letters shaped like Latin ones, fullwidth forms, mathematical alphanumerics.
fn as_latin(c: char) -> char {
    const FROM: &str = "аеорсухіјѕԁԛԝһӏɡАВЕКМНОРСТХІЈЅοανρικΑΒΕΖΗΙΚΜΝΟΡΤΥΧ";
    const TO: &str = "aeopcyxijsdqwhlgABEKMHOPCTXIJSoavpikABEZHIKMNOPTYX";
    if let Some(i) = FROM.chars().position(|f| f == c) {
        return TO.chars().nth(i).unwrap_or(c);
    }
    let cp = c as u32;
    let mapped = match cp {
        0xFF01..=0xFF5E => cp - 0xFEE0,
        0x1D400..=0x1D6A3 => match (cp - 0x1D400) % 52 {
            i @ 0..=25 => u32::from(b'A') + i,
            i => u32::from(b'a') + i - 26,
        },
        0x1D7CE..=0x1D7FF => u32::from(b'0') + (cp - 0x1D7CE) % 10,
        _ => cp,
    };
    char::from_u32(mapped).unwrap_or(c)
}
