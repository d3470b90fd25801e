//! An independent reference for the secret-name policy, for the property tests and the fuzz
//! target that judge the inspector: "nothing accepted holds a denied name". It shares no code and
//! no list with [`super::names`]: its lists are docs/body-policy.md's, written out here again, and a table test
//! pins every entry of the policy's own lists, so that neither can drift unseen.
//! Compiled only for tests and with the `reference` feature (the fuzz crate); never shipped.

/// docs/body-policy.md's default deny list, plurals included (phrases of whole words).
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
    "pass",
    "creds",
    "pat",
    "passcode",
    "passcodes",
    "jwt",
    "jwts",
    "otp",
    "mnemonic",
    "seed phrase",
    "recovery phrase",
    "priv key",
    "privkey",
    "ssh key",
    "ssh keys",
    "signing key",
    "encryption key",
    "decryption key",
    "master key",
    "deploy key",
    "client key",
    "app key",
    "application key",
    "auth key",
    "service key",
    "account key",
    "db key",
    "database key",
    "write key",
    "read key",
    "delete key",
    "admin key",
    "publish key",
];

/// docs/body-policy.md's default allow list.
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
    reference_denies_key(key, false)
}

/// docs/body-policy.md's category words: under one of these names, an object or array is judged by what it
/// holds.
pub const CONTAINERS: &[&str] = &[
    "auth",
    "credential",
    "credentials",
    "authentication",
    "authorization",
];

/// [`reference_denies`] of a key whose value is an object or array when `container` is true:
/// a category word alone does not deny it then.
pub fn reference_denies_key(key: &str, container: bool) -> Option<String> {
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
    let fine = run_together(words_of(true), &text);
    let fine_word = |k: usize| fine.get(k).map(|&(a, b)| text(a, b)).unwrap_or_default();
    let benign = |a: usize, b: usize, run: &str| -> bool {
        let (Some(i), Some(j)) = (
            fine.iter().position(|w| w.0 == a),
            fine.iter().position(|w| w.1 == b),
        ) else {
            return false;
        };
        let last = fine.len() - 1;
        let conjunction = (j + 1..last).any(|k| ["or", "and"].contains(&fine_word(k).as_str()));
        (last > j && !conjunction && QUALIFIERS.contains(&fine_word(last).as_str()))
            || (run == "token"
                && ((i > 0 && TOKEN_BEFORE.contains(&fine_word(i - 1).as_str()))
                    || TOKEN_AFTER.contains(&fine_word(j + 1).as_str())))
    };
    for camel in [true, false] {
        // Run-together words are split on the finer splitting only, as docs/body-policy.md says.
        let words = if camel {
            run_together(words_of(camel), &text)
        } else {
            words_of(camel)
        };
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
        .filter(|(_, _, run)| !(container && CONTAINERS.contains(&run.as_str())))
        .find(|(a, b, _)| !allow_spans.iter().any(|(x, y)| x <= a && y >= b))
        .map(|(_, _, run)| run)
}

/// docs/body-policy.md's identifier vocabulary for run-together names, written out again (the phrase words
/// and role words join it).
const VOCABULARY: &[&str] = &[
    "user",
    "username",
    "github",
    "gitlab",
    "slack",
    "stripe",
    "aws",
    "azure",
    "gcp",
    "google",
    "openai",
    "db",
    "database",
    "admin",
    "root",
    "service",
    "app",
    "bot",
    "webhook",
    "value",
    "new",
    "old",
    "current",
    "my",
    "default",
    "master",
    "login",
    "account",
    "email",
    "host",
    "encryption",
    "signing",
    "ssh",
    "jwt",
    "basic",
    "data",
    "config",
    "personal",
    "x",
    "mcp",
    "param",
    "header",
    "custom",
    "npm",
    "docker",
    "registry",
    "repo",
    "deploy",
    "bearer",
];

/// All splittings of `w` into words of `vocabulary` (two letters or more, or `x`), up to two.
fn splittings(w: &str, vocabulary: &[String]) -> Vec<Vec<String>> {
    if w.is_empty() {
        return vec![Vec::new()];
    }
    let mut found = Vec::new();
    for end in 1..=w.len() {
        let head = &w[..end];
        if (head.len() >= 2 || head == "x")
            && vocabulary
                .binary_search_by(|v| v.as_str().cmp(head))
                .is_ok()
        {
            for mut rest in splittings(&w[end..], vocabulary) {
                rest.insert(0, head.to_string());
                found.push(rest);
                if found.len() > 1 {
                    return found;
                }
            }
        }
    }
    found
}

/// The vocabulary, less compounds that split into its other words (`apikey`); built once.
fn vocabulary() -> &'static [String] {
    static VOCABULARY_SET: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    VOCABULARY_SET.get_or_init(build_vocabulary)
}

fn build_vocabulary() -> Vec<String> {
    let mut all: Vec<String> = VOCABULARY
        .iter()
        .chain(QUALIFIERS)
        .chain(FLAG_WORDS)
        .chain(TOKEN_BEFORE)
        .chain(TOKEN_AFTER)
        .map(|w| w.to_string())
        .chain(
            DENY.iter()
                .chain(ALLOW)
                .flat_map(|p| p.split(' ').map(str::to_string)),
        )
        .collect();
    all.sort();
    all.dedup();
    let compounds: Vec<String> = all
        .iter()
        .filter(|w| {
            let others: Vec<String> = all.iter().filter(|o| o != w).cloned().collect();
            splittings(w, &others).len() == 1
        })
        .cloned()
        .collect();
    all.retain(|w| !compounds.contains(w));
    all.sort();
    all
}

/// Words of six lower-case ASCII letters or more that are no vocabulary word, split when they
/// split into vocabulary words exactly one way.
fn run_together(
    words: Vec<(usize, usize)>,
    text: &dyn Fn(usize, usize) -> String,
) -> Vec<(usize, usize)> {
    let vocabulary = vocabulary();
    let mut out = Vec::new();
    for (a, b) in words {
        let w = text(a, b);
        let plain = w.len() >= 6 && w.len() == b - a && w.bytes().all(|c| c.is_ascii_lowercase());
        let parts = if plain && vocabulary.binary_search(&w).is_err() {
            splittings(&w, vocabulary)
        } else {
            Vec::new()
        };
        match parts.as_slice() {
            [one] if one.len() > 1 => {
                let mut at = a;
                for part in one {
                    out.push((at, at + part.len()));
                    at += part.len();
                }
            }
            _ => out.push((a, b)),
        }
    }
    out
}

/// docs/body-policy.md's word roles, written out again.
const QUALIFIERS: &[&str] = &[
    "id",
    "ids",
    "uuid",
    "uuids",
    "guid",
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
    "prefix",
    "suffix",
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
    "method",
    "methods",
    "info",
    "allowed",
    "disabled",
];
/// Words of flags: vocabulary for run-together names only (a flag holds a boolean).
const FLAG_WORDS: &[&str] = &[
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
    "skip",
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

/// docs/body-policy.md's reading of look-alike and compatibility characters, written out again: Cyrillic and
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
