//! Secret-name matching for argument keys and `Mcp-Param-*` header names.
//!
//! # Splitting
//!
//! A name is cut into words, then each word is case-folded ([`crate::text::fold_into`]):
//!
//! - every character that is not alphanumeric separates words: `_`, `-`, `.`, spaces, and also
//!   `/`, `:`, `@`, `$`, brackets, ... (`api_key`, `api-key`, `api.key`, `api key`, `api/key`);
//! - camelCase humps: a lower-case letter followed by an upper-case one (`apiKey` → api key), and
//!   the last capital of a run of capitals followed by a lower-case letter (`APIKey` → api key,
//!   `HTTPAuthToken` → http auth token, `IDToken` → id token);
//! - digits form their own words: `password2` → password 2, `oauth2Token` → oauth 2 token,
//!   `sha256` → sha 256 (so a trailing digit never hides a secret word);
//! - characters that render as nothing are dropped without splitting (controls, format characters
//!   such as zero-width spaces and bidi controls, combining marks U+0300–U+036F and similar,
//!   variation selectors): `pass\u200bword` → password, `pa\u0301ssword` → password;
//! - fullwidth ASCII (U+FF01–U+FF5E) and the mathematical alphanumerics (U+1D400–U+1D7FF: bold,
//!   italic, script, fraktur, double-struck, sans-serif, monospace) are read as ASCII, as NFKC
//!   would: `ｐａｓｓｗｏｒｄ`, `𝐩𝐚𝐬𝐬𝐰𝐨𝐫𝐝` → password;
//! - combining marks of every common script (Latin, Cyrillic, Hebrew, Arabic, Thai, kana voicing)
//!   are dropped, including those case folding itself produces (`İ` folds to `i` + U+0307):
//!   `AUTHORİZATİON` → authorization;
//! - letters of Cyrillic and Greek that look like Latin ones are read as those (the Latin part
//!   of a UTS #39 skeleton): `pаssword` with a Cyrillic `а`, `tοken` with a Greek `ο`.
//!
//! Precomposed accented letters keep their accents (`pässword` is not `password`): no
//! decomposition table is carried.
//!
//! # Matching
//!
//! A phrase (deny or allow) is itself split the same way. It matches a run of *whole, consecutive*
//! words of the name whose concatenation equals the concatenation of the phrase's words. So
//! `api key` matches `api_key`, `apiKey`, `APIKey`, `apikey`, `APIKEY` and `x-api-key`, and
//! `password` matches `passWord`; but `auth` does not match `author` and `token` does not match
//! `tokens`, `max_tokens` or `tokenizer`. Lower-case run-together compounds that are not listed
//! (`githubtoken`) are not caught: list them as extra deny phrases if needed.
//!
//! A deny match is suppressed only by an allow match that covers every word of it: `next_page_token`
//! is allowed by `page token` (or `next page token`), `page_token_password` is still denied by
//! `password`. A name is denied when any deny match is not suppressed; the reported rule is that of
//! the longest such match (then the leftmost).
//!
//! # Defaults
//!
//! Deny (rule in brackets when it differs from the phrase joined with `_`):
//! password, passwords \[password\], passwd, pwd, passphrase, passphrases \[passphrase\], secret,
//! secrets \[secret\], client secret, client secrets \[client_secret\], api key, api keys
//! \[api_key\], apikey \[api_key\], apikeys \[api_key\], access key, access keys \[access_key\],
//! secret key, secret keys \[secret_key\], private key, private keys \[private_key\], access
//! token, access tokens \[access_token\], refresh token, refresh tokens \[refresh_token\], auth
//! token, auth tokens \[auth_token\], auth, bearer, id token, id tokens \[id_token\], session
//! token, session tokens \[session_token\], session id, sessionid \[session_id\], token,
//! credential, credentials, authorization, cookie, cookies \[cookie\], set cookie, connection
//! string, dsn.
//!
//! (`apikey` and `api key` have the same concatenation, as do `sessionid` and `session id`: they
//! are one entry each.)
//!
//! Allow: max tokens, max output tokens, max completion tokens, token count, num tokens, total
//! tokens, tokenizer, page token, next page token, continuation token, cursor, next cursor,
//! progress token, key id, key name, public key, primary key, partition key, sort key, idempotency
//! key, cache key, secret name, secret id, secret ref, credential id, api version, api url, access
//! level, password policy, password min length, oauth (so `OAuthClientId`, split o auth client id,
//! is not caught by `auth`).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::text::fold_into;

/// `(phrase, rule)` pairs of the default deny list; an empty rule means the phrase's words joined
/// with `_`.
pub const DEFAULT_DENY: &[(&str, &str)] = &[
    ("password", ""),
    ("passwords", "password"),
    ("passwd", ""),
    ("pwd", ""),
    ("passphrase", ""),
    ("passphrases", "passphrase"),
    ("secret", ""),
    ("secrets", "secret"),
    ("client secret", ""),
    ("client secrets", "client_secret"),
    ("api key", ""),
    ("api keys", "api_key"),
    ("apikey", "api_key"),
    ("apikeys", "api_key"),
    ("access key", ""),
    ("access keys", "access_key"),
    ("secret key", ""),
    ("secret keys", "secret_key"),
    ("private key", ""),
    ("private keys", "private_key"),
    ("access token", ""),
    ("access tokens", "access_token"),
    ("refresh token", ""),
    ("refresh tokens", "refresh_token"),
    ("auth token", ""),
    ("auth tokens", "auth_token"),
    ("auth", ""),
    ("bearer", ""),
    ("id token", ""),
    ("id tokens", "id_token"),
    ("session token", ""),
    ("session tokens", "session_token"),
    ("token", ""),
    ("credential", ""),
    ("credentials", ""),
    ("authorization", ""),
    // A connection block named `authentication` carries username and password (corpus: MongoDB).
    ("authentication", ""),
    ("cookie", ""),
    ("cookies", "cookie"),
    ("set cookie", ""),
    ("connection string", ""),
    ("dsn", ""),
    // Compared with detect-secrets' KeywordDetector denylist (`db_pass`, `keypass`, the kinds of
    // keys) and gitleaks' generic-api-key keywords; tests/corpus/README.md gives every difference.
    ("pass", "password"),
    ("creds", "credentials"),
    ("pat", ""),
    ("passcode", ""),
    ("passcodes", "passcode"),
    ("jwt", ""),
    ("jwts", "jwt"),
    ("otp", ""),
    ("mnemonic", ""),
    ("seed phrase", ""),
    ("recovery phrase", ""),
    ("priv key", "private_key"),
    ("privkey", "private_key"),
    // Kinds of keys that are secrets: what the key opens (`ssh`, `db`, `account`), what it is
    // for (`signing`, `encryption`), or what it permits (`write`, `admin`).
    ("ssh key", ""),
    ("ssh keys", "ssh_key"),
    ("signing key", ""),
    ("encryption key", ""),
    ("decryption key", ""),
    ("master key", ""),
    ("deploy key", ""),
    ("client key", ""),
    ("app key", ""),
    ("application key", ""),
    ("auth key", ""),
    ("service key", ""),
    ("account key", ""),
    ("db key", ""),
    ("database key", ""),
    ("write key", ""),
    ("read key", ""),
    ("delete key", ""),
    ("admin key", ""),
    ("publish key", ""),
];

/// The default allow list.
pub const DEFAULT_ALLOW: &[&str] = &[
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
    "credential id",
    "api version",
    "api url",
    "access level",
    "password policy",
    "password min length",
    "oauth",
    // From the detection corpus (tests/corpus): settings and identifiers, not secrets.
    "secret type",
    "secret types",
    "private key path",
    "bearer only",
    "auth required",
    "authorization settings",
    "authorization services",
    "credential type",
    "credential types",
    "authentication flow",
];

/// A configured phrase that has no word in it (e.g. `"__"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyPhrase(pub String);

impl core::fmt::Display for EmptyPhrase {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "name phrase {:?} has no words", self.0)
    }
}

/// A set of phrase concatenations with an open-addressing hash table, for allocation-free
/// lookups of word runs hashed incrementally (FNV-1a, extended word by word).
#[derive(Debug, Clone)]
struct PhraseSet {
    concat: Vec<Box<str>>,
    /// Parallel to `concat` (empty for allow phrases).
    rules: Vec<Box<str>>,
    hashes: Vec<u64>,
    /// Indexes into `concat`; `u32::MAX` marks an empty slot. Length is a power of two.
    table: Vec<u32>,
    /// Bit `l` set when some phrase is `l` bytes long (bit 63: 63 or more).
    len_mask: u64,
    max_len: usize,
    /// `prefixes[class(b0)] & 1 << class(b1)`: some phrase starts with bytes `b0 b1`.
    prefixes: [u64; 64],
}

/// A byte's bucket in [`PhraseSet::prefixes`]: letters 0–25, digits 26–35, anything else 63.
#[inline]
fn byte_class(b: u8) -> usize {
    match b {
        b'a'..=b'z' => usize::from(b - b'a'),
        b'0'..=b'9' => 26 + usize::from(b - b'0'),
        _ => 63,
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const EMPTY: u32 = u32::MAX;

#[inline]
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

impl PhraseSet {
    /// `entries` are `(concatenation, rule)`; the first of equal concatenations wins.
    fn new(entries: Vec<(String, String)>) -> Self {
        let mut set = PhraseSet {
            concat: Vec::new(),
            rules: Vec::new(),
            hashes: Vec::new(),
            table: Vec::new(),
            len_mask: 0,
            max_len: 0,
            prefixes: [0; 64],
        };
        for (concat, rule) in entries {
            if concat.is_empty() || set.concat.iter().any(|c| **c == *concat) {
                continue;
            }
            set.hashes.push(fnv(FNV_OFFSET, concat.as_bytes()));
            set.len_mask |= 1u64 << concat.len().min(63);
            let bytes = concat.as_bytes();
            let first = bytes.first().map_or(63, |&b| byte_class(b));
            let second = bytes.get(1).map_or(63, |&b| byte_class(b));
            if let Some(mask) = set.prefixes.get_mut(first) {
                *mask |= 1u64 << second;
            }
            set.max_len = set.max_len.max(concat.len());
            set.concat.push(concat.into());
            set.rules.push(rule.into());
        }
        let size = (set.concat.len() * 4).next_power_of_two().max(8);
        set.table = vec![EMPTY; size];
        let mask = size - 1;
        for (i, &h) in set.hashes.iter().enumerate() {
            let mut slot = (h as usize) & mask;
            while set.table.get(slot).is_some_and(|&e| e != EMPTY) {
                slot = (slot + 1) & mask;
            }
            if let Some(e) = set.table.get_mut(slot) {
                *e = i as u32;
            }
        }
        set
    }

    /// Some phrase may start at `folded[at..]` (its first two bytes are those of a phrase).
    #[inline]
    fn may_start(&self, folded: &[u8], at: usize) -> bool {
        let first = folded.get(at).map_or(63, |&b| byte_class(b));
        let second = folded.get(at + 1).map_or(63, |&b| byte_class(b));
        self.prefixes
            .get(first)
            .is_some_and(|mask| mask & (1u64 << second) != 0)
    }

    #[inline]
    fn may_have_len(&self, len: usize) -> bool {
        self.len_mask & (1u64 << len.min(63)) != 0
    }

    /// Index of the phrase equal to `bytes`, whose FNV-1a hash is `hash`.
    #[inline]
    fn find(&self, hash: u64, bytes: &[u8]) -> Option<usize> {
        let mask = self.table.len().checked_sub(1)?;
        let mut slot = (hash as usize) & mask;
        loop {
            let e = *self.table.get(slot)?;
            if e == EMPTY {
                return None;
            }
            let i = e as usize;
            if self.hashes.get(i) == Some(&hash)
                && self
                    .concat
                    .get(i)
                    .is_some_and(|c| super::json::same_bytes(c.as_bytes(), bytes))
            {
                return Some(i);
            }
            slot = (slot + 1) & mask;
        }
    }
}

/// Compiled deny/allow phrases. Build once (at configure time), share, match many names.
#[derive(Debug, Clone)]
pub struct NamePolicy {
    deny: PhraseSet,
    allow: PhraseSet,
    /// Words a run-together lower-case word is split into (see [`split_run_together`]).
    vocabulary: std::collections::BTreeSet<Vec<u8>>,
    /// Unique per build (clones keep it: they judge every name alike), see [`Self::id`].
    id: u64,
}

static NEXT_POLICY_ID: AtomicU64 = AtomicU64::new(1);

/// A denied name: the rule of the deny phrase that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameMatch<'p> {
    pub rule: &'p str,
}

/// Reusable buffers for [`NamePolicy::check_with`]: matching then allocates nothing once the
/// buffers have grown to the longest name seen.
#[derive(Debug, Default, Clone)]
pub struct NameScratch {
    /// Folded words (UTF-8), concatenated without separators.
    folded: Vec<u8>,
    /// `(start, end)` of each word in `folded`.
    words: Vec<(usize, usize)>,
}

impl NameScratch {
    /// Drops buffers that grew past `max_bytes` (after an unusually long name).
    pub fn trim(&mut self, max_bytes: usize) {
        if self.folded.capacity() > max_bytes {
            self.folded = Vec::new();
        }
        if self.words.capacity() * core::mem::size_of::<(usize, usize)>() > max_bytes {
            self.words = Vec::new();
        }
    }
}

impl Default for NamePolicy {
    /// Built once per thread and cloned (clones judge alike and share the id).
    fn default() -> Self {
        thread_local! {
            static DEFAULT: NamePolicy = NamePolicy::build(
                DEFAULT_DENY.iter().map(|&(p, r)| (p, r)),
                DEFAULT_ALLOW.iter().copied(),
            );
        }
        DEFAULT.with(Clone::clone)
    }
}

impl NamePolicy {
    /// The default lists plus extra deny and allow phrases (written like `"api key"`,
    /// `"api_key"` or `"apiKey"`: they are split like names). The rule of an extra deny phrase is
    /// its words joined with `_`; an extra phrase with the same concatenation as a default one
    /// keeps the default's rule.
    pub fn with_extra<D, A>(extra_deny: D, extra_allow: A) -> Result<Self, EmptyPhrase>
    where
        D: IntoIterator,
        D::Item: AsRef<str>,
        A: IntoIterator,
        A::Item: AsRef<str>,
    {
        let extra_deny: Vec<D::Item> = extra_deny.into_iter().collect();
        let extra_allow: Vec<A::Item> = extra_allow.into_iter().collect();
        let phrases = extra_deny
            .iter()
            .map(AsRef::as_ref)
            .chain(extra_allow.iter().map(AsRef::as_ref));
        for phrase in phrases {
            if split_words(phrase).is_empty() {
                return Err(EmptyPhrase(phrase.to_string()));
            }
        }
        Ok(Self::build(
            DEFAULT_DENY
                .iter()
                .map(|&(p, r)| (p, r))
                .chain(extra_deny.iter().map(|p| (p.as_ref(), ""))),
            DEFAULT_ALLOW
                .iter()
                .copied()
                .chain(extra_allow.iter().map(|p| p.as_ref())),
        ))
    }

    fn build<'s>(
        deny: impl Iterator<Item = (&'s str, &'s str)>,
        allow: impl Iterator<Item = &'s str>,
    ) -> Self {
        let mut vocabulary: std::collections::BTreeSet<Vec<u8>> = VOCABULARY
            .iter()
            .chain(QUALIFIERS)
            .chain(FLAG_WORDS)
            .chain(TOKEN_BEFORE)
            .chain(TOKEN_AFTER)
            .map(|w| w.as_bytes().to_vec())
            .collect();
        let deny = deny
            .map(|(phrase, rule)| {
                let words = split_words(phrase);
                vocabulary.extend(words.iter().map(|w| w.as_bytes().to_vec()));
                let rule = if rule.is_empty() {
                    words.join("_")
                } else {
                    rule.to_string()
                };
                (words.concat(), rule)
            })
            .collect();
        let allow: Vec<(String, String)> = allow
            .map(|phrase| {
                let words = split_words(phrase);
                vocabulary.extend(words.iter().map(|w| w.as_bytes().to_vec()));
                (words.concat(), String::new())
            })
            .collect();
        // A compound that splits into other vocabulary words (`apikey`, `sessionid`) would make
        // every name holding it ambiguous: it is matched through its parts instead.
        let compounds: Vec<Vec<u8>> = vocabulary
            .iter()
            .filter(|w| unique_splitting(w, &vocabulary, Some(w.as_slice())).is_some())
            .cloned()
            .collect();
        for compound in compounds {
            vocabulary.remove(&compound);
        }
        NamePolicy {
            deny: PhraseSet::new(deny),
            allow: PhraseSet::new(allow),
            vocabulary,
            id: NEXT_POLICY_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Identifies this policy: two policies with the same id give the same verdict on every name
    /// (verdicts may be cached by id and name). Never 0.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Checks one name; allocates a scratch buffer (use [`Self::check_with`] in loops).
    pub fn check(&self, name: &str) -> Option<NameMatch<'_>> {
        self.check_with(name, &mut NameScratch::default())
    }

    /// Checks one name using reusable buffers.
    pub fn check_with(&self, name: &str, scratch: &mut NameScratch) -> Option<NameMatch<'_>> {
        let found = self.check_index_with(name, scratch)?;
        self.rule(found).map(|rule| NameMatch { rule })
    }

    /// The rule of a deny phrase by the index [`Self::check_index_with`] returns.
    pub fn rule(&self, index: usize) -> Option<&str> {
        self.deny.rules.get(index).map(|rule| &**rule)
    }

    /// [`Self::check_with`], answering the index of the deny phrase that matched (see
    /// [`Self::rule`]).
    pub fn check_index_with(&self, name: &str, scratch: &mut NameScratch) -> Option<usize> {
        split_into(name, scratch);
        split_run_together(&self.vocabulary, scratch);
        let folded = scratch.folded.as_slice();
        let words = scratch.words.as_slice();
        // The best match: a secret's name before a category's (`auth_password` is `password`,
        // see [`is_container_rule`]), then the longest.
        let mut best: Option<((bool, usize), usize)> = None;
        for (i, &(start, _)) in words.iter().enumerate() {
            if !self.deny.may_start(folded, start) {
                continue;
            }
            let mut hash = FNV_OFFSET;
            for (j, &(word_start, end)) in words.iter().enumerate().skip(i) {
                if end - start > self.deny.max_len {
                    break;
                }
                hash = fnv(hash, folded.get(word_start..end).unwrap_or_default());
                if !self.deny.may_have_len(end - start) {
                    continue;
                }
                let Some(found) = self
                    .deny
                    .find(hash, folded.get(start..end).unwrap_or_default())
                else {
                    continue;
                };
                let rank = (!self.rule(found).is_some_and(is_container_rule), j + 1 - i);
                if best.is_some_and(|(best_rank, _)| rank <= best_rank)
                    || self.allowed(folded, words, i, j)
                    || role_makes_it_benign(folded, words, i, j)
                {
                    continue;
                }
                best = Some((rank, found));
            }
        }
        best.map(|(_, found)| found)
    }

    /// True when an allow phrase matches words `a..=b` with `a <= i` and `b >= j`.
    fn allowed(&self, folded: &[u8], words: &[(usize, usize)], i: usize, j: usize) -> bool {
        let Some(&(_, min_end)) = words.get(j) else {
            return false;
        };
        for a in (0..=i).rev() {
            let Some(&(start, _)) = words.get(a) else {
                return false;
            };
            if min_end - start > self.allow.max_len {
                return false;
            }
            let mut hash = fnv(FNV_OFFSET, folded.get(start..min_end).unwrap_or_default());
            for (b, &(word_start, end)) in words.iter().enumerate().skip(j) {
                if end - start > self.allow.max_len {
                    break;
                }
                if b > j {
                    hash = fnv(hash, folded.get(word_start..end).unwrap_or_default());
                }
                if self.allow.may_have_len(end - start)
                    && self
                        .allow
                        .find(hash, folded.get(start..end).unwrap_or_default())
                        .is_some()
                {
                    return true;
                }
            }
        }
        false
    }
}

/// Rules of words that also name a category of settings (`"auth": {...}`): the inspector judges
/// an object or array under such a name by its members. A name that holds another deny phrase
/// too reports that one.
pub fn is_container_rule(rule: &str) -> bool {
    matches!(
        rule,
        "auth" | "credential" | "credentials" | "authentication" | "authorization"
    )
}

/// Identifier words besides those of the phrases and roles, for splitting run-together names
/// (`userpassword`, `githubtoken`, `dbpass` is not one: `pass` is no word here).
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

/// The shortest run-together word that is split.
const MIN_RUN_TOGETHER: usize = 6;

/// Splits each word that is a run of lower-case ASCII letters, not itself a word of the
/// vocabulary, into vocabulary words when exactly one such splitting exists: `userpassword` →
/// user password, `githubtoken` → github token, `apikeyvalue` → api key value (header names
/// arrive lower-cased: `mcp-param-userpassword`). Ambiguous or partial splittings leave the word
/// as it is (`passenger`, `keyboard`).
fn split_run_together(vocabulary: &std::collections::BTreeSet<Vec<u8>>, scratch: &mut NameScratch) {
    let folded = &scratch.folded;
    let needs = scratch.words.iter().any(|&(a, b)| {
        b - a >= MIN_RUN_TOGETHER
            && folded
                .get(a..b)
                .is_some_and(|w| w.iter().all(u8::is_ascii_lowercase) && !vocabulary.contains(w))
    });
    if !needs {
        return;
    }
    let mut words = Vec::with_capacity(scratch.words.len() + 4);
    for &(a, b) in &scratch.words {
        let word = folded.get(a..b).unwrap_or_default();
        let candidate = word.len() >= MIN_RUN_TOGETHER
            && word.len() <= 64
            && word.iter().all(u8::is_ascii_lowercase)
            && !vocabulary.contains(word);
        match candidate
            .then(|| unique_splitting(word, vocabulary, None))
            .flatten()
        {
            Some(cuts) => {
                let mut start = a;
                for cut in cuts {
                    words.push((start, a + cut));
                    start = a + cut;
                }
            }
            None => words.push((a, b)),
        }
    }
    scratch.words = words;
}

/// The end offsets of the one splitting of `word` into vocabulary words of two letters or
/// more, if there is exactly one.
fn unique_splitting(
    word: &[u8],
    vocabulary: &std::collections::BTreeSet<Vec<u8>>,
    exclude: Option<&[u8]>,
) -> Option<Vec<usize>> {
    let n = word.len();
    // ways[i]: number of splittings of word[..i] (capped at 2), with the last cut of one.
    let mut ways = vec![0u8; n + 1];
    let mut last_cut = vec![0usize; n + 1];
    ways[0] = 1;
    for end in 1..=n {
        for start in 0..end {
            let piece = word.get(start..end).unwrap_or_default();
            if ways[start] == 0
                || (piece.len() < 2 && piece != b"x")
                || Some(piece) == exclude
                || !vocabulary.contains(piece)
            {
                continue;
            }
            ways[end] = (ways[end] + ways[start]).min(2);
            last_cut[end] = start;
        }
    }
    if ways[n] != 1 {
        return None;
    }
    let mut cuts = Vec::new();
    let mut at = n;
    while at > 0 {
        cuts.push(at);
        at = last_cut[at];
    }
    cuts.reverse();
    (cuts.len() > 1).then_some(cuts)
}

/// Words that, as the last word of a name after a secret's words, make the name a reference to a
/// secret or a setting about it, not the secret: `credential_name`, `token_id`, `secret_arn`,
/// `auth_mode`, `password_field`, `api_key_file_path`, `client_secret_provider`.
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

/// Words that start flags (`hide_password`, `with_credentials`), for splitting run-together names
/// only. They make no name benign: a flag holds `true` or `false`, which the inspector does not
/// name-check, and a string under `with_password` may be the password.
const FLAG_WORDS: &[&str] = &[
    "hide", "show", "mask", "masked", "redact", "with", "require", "requires", "use", "enable",
    "disable", "is", "has", "allow", "include", "exclude", "skip", "ignore", "no", "should",
    "supports", "verify", "validate", "check", "needs",
];

/// `token` that is not a credential: pagination and idempotency tokens (`next_token`,
/// `starting_token`, `client_request_token`), and crypto-asset tokens (`token_address`).
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
/// Asset words: a `token` next to one, on either side, is a crypto or market instrument
/// (`token_address`, `symboltoken`, `nft_token`), or its usage (`token_usage`, `token_limit`).
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
    "instrument",
    "asset",
    "coin",
    "nft",
    "erc",
];

/// True when the words around a deny match (words `i..=j`) make the name benign: see
/// [`QUALIFIERS`], [`TOKEN_BEFORE`], [`TOKEN_AFTER`].
fn role_makes_it_benign(folded: &[u8], words: &[(usize, usize)], i: usize, j: usize) -> bool {
    let word = |k: usize| {
        words
            .get(k)
            .and_then(|&(a, b)| folded.get(a..b))
            .unwrap_or_default()
    };
    let is_in = |list: &[&str], k: usize| list.iter().any(|w| w.as_bytes() == word(k));
    let last = words.len().saturating_sub(1);
    // A qualifier reaches back over the words before it, not over a conjunction:
    // `connection_string_or_cluster_name` may hold a connection string.
    let conjunction = (j + 1..last).any(|k| is_in(&["or", "and"], k));
    if last > j && is_in(QUALIFIERS, last) && !conjunction {
        return true;
    }
    let matched_token = i == j && word(i) == b"token";
    matched_token
        && ((i > 0 && (is_in(TOKEN_BEFORE, i - 1) || is_in(TOKEN_AFTER, i - 1)))
            || is_in(TOKEN_AFTER, j + 1))
}

/// Splits a name into folded words (for tests, configuration and diagnostics).
pub fn split_words(name: &str) -> Vec<String> {
    let mut scratch = NameScratch::default();
    split_into(name, &mut scratch);
    scratch
        .words
        .iter()
        .filter_map(|&(s, e)| scratch.folded.get(s..e))
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Upper,
    Lower,
    Digit,
    /// Letters without case (CJK, ...) and title-case letters.
    Caseless,
}

/// Characters dropped from names without splitting words.
fn is_ignorable(c: char) -> bool {
    let cp = u32::from(c);
    crate::text::is_forbidden_key_char(c)
        || (0x0300..=0x036F).contains(&cp)
        || (0x0483..=0x0489).contains(&cp) // Cyrillic combining
        || (0x0591..=0x05C7).contains(&cp) && !(0x05D0..=0x05EA).contains(&cp) // Hebrew points
        || (0x0610..=0x061A).contains(&cp) // Arabic
        || (0x064B..=0x065F).contains(&cp)
        || cp == 0x0670
        || (0x06D6..=0x06ED).contains(&cp) && !(0x06E5..=0x06E6).contains(&cp)
        || cp == 0x0E31 // Thai
        || (0x0E34..=0x0E3A).contains(&cp)
        || (0x0E47..=0x0E4E).contains(&cp)
        || (0x1AB0..=0x1AFF).contains(&cp)
        || (0x1DC0..=0x1DFF).contains(&cp)
        || (0x20D0..=0x20FF).contains(&cp)
        || (0x3099..=0x309A).contains(&cp) // kana voicing
        || (0xFE20..=0xFE2F).contains(&cp)
}

/// The ASCII letter or digit a compatibility or look-alike character stands for: fullwidth
/// forms, mathematical alphanumerics, and Cyrillic and Greek letters shaped like Latin ones.
fn as_ascii(c: char) -> Option<char> {
    let cp = u32::from(c);
    if (0xFF01..=0xFF5E).contains(&cp) {
        return char::from_u32(cp - 0xFF01 + 0x21);
    }
    if (0x1D400..=0x1D6A3).contains(&cp) {
        // 13 alphabets of 52 letters, A-Z then a-z (the holes are unassigned code points).
        let i = (cp - 0x1D400) % 52;
        return char::from_u32(if i < 26 { 0x41 + i } else { 0x61 + i - 26 });
    }
    if (0x1D7CE..=0x1D7FF).contains(&cp) {
        return char::from_u32(0x30 + (cp - 0x1D7CE) % 10);
    }
    let latin = match c {
        'а' => 'a',
        'е' => 'e',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'у' => 'y',
        'х' => 'x',
        'і' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'ԁ' => 'd',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'һ' => 'h',
        'ӏ' => 'l',
        'ɡ' => 'g',
        'А' => 'A',
        'В' => 'B',
        'Е' => 'E',
        'К' => 'K',
        'М' => 'M',
        'Н' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'С' => 'C',
        'Т' => 'T',
        'Х' => 'X',
        'І' => 'I',
        'Ј' => 'J',
        'Ѕ' => 'S',
        'ο' => 'o',
        'α' => 'a',
        'ν' => 'v',
        'ρ' => 'p',
        'ι' => 'i',
        'κ' => 'k',
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        _ => return None,
    };
    Some(latin)
}

/// Word-boundary state while splitting one name.
struct Splitter {
    /// Start (in `folded`) of the word being built.
    word_start: Option<usize>,
    prev_class: Class,
    /// Start of the previous character in `folded` (for the `APIKey` split).
    prev_char_start: usize,
    run_of_upper: usize,
}

impl Splitter {
    fn new() -> Self {
        Splitter {
            word_start: None,
            prev_class: Class::Caseless,
            prev_char_start: 0,
            run_of_upper: 0,
        }
    }

    #[inline]
    fn separator(&mut self, here: usize, words: &mut Vec<(usize, usize)>) {
        if let Some(start) = self.word_start.take() {
            words.push((start, here));
        }
        self.run_of_upper = 0;
    }

    /// A word character of `class` is about to be appended at `here`.
    #[inline]
    fn letter(&mut self, class: Class, here: usize, words: &mut Vec<(usize, usize)>) {
        if let Some(start) = self.word_start {
            let prev = self.prev_class;
            let digit_change = (class == Class::Digit) != (prev == Class::Digit);
            if digit_change || (prev == Class::Lower && class == Class::Upper) {
                words.push((start, here));
                self.word_start = Some(here);
            } else if prev == Class::Upper
                && class == Class::Lower
                && self.run_of_upper >= 2
                && self.prev_char_start > start
            {
                words.push((start, self.prev_char_start));
                self.word_start = Some(self.prev_char_start);
            }
        } else {
            self.word_start = Some(here);
        }
        self.run_of_upper = if class == Class::Upper {
            self.run_of_upper + 1
        } else {
            0
        };
        self.prev_class = class;
        self.prev_char_start = here;
    }

    fn finish(&mut self, here: usize, words: &mut Vec<(usize, usize)>) {
        self.separator(here, words);
    }
}

/// The ASCII fast path of [`split_into`], same rules: one pass, no per-character calls.
fn split_ascii(name: &[u8], folded: &mut Vec<u8>, words: &mut Vec<(usize, usize)>) {
    const SEP: u8 = 0;
    const LOWER: u8 = 1;
    const UPPER: u8 = 2;
    const DIGIT: u8 = 3;
    let class_of = |b: u8| match b {
        b'a'..=b'z' => LOWER,
        b'A'..=b'Z' => UPPER,
        b'0'..=b'9' => DIGIT,
        _ => SEP,
    };
    let mut start = usize::MAX; // no word open
    let mut prev = SEP;
    let mut prev_start = 0usize;
    let mut run_of_upper = 0usize;
    for &b in name {
        let class = class_of(b);
        let here = folded.len();
        if class == SEP {
            if start != usize::MAX {
                words.push((start, here));
                start = usize::MAX;
            }
            run_of_upper = 0;
            prev = SEP;
            continue;
        }
        if start == usize::MAX {
            start = here;
        } else if (class == DIGIT) != (prev == DIGIT) || (prev == LOWER && class == UPPER) {
            words.push((start, here));
            start = here;
        } else if prev == UPPER && class == LOWER && run_of_upper >= 2 {
            words.push((start, prev_start));
            start = prev_start;
        }
        run_of_upper = if class == UPPER { run_of_upper + 1 } else { 0 };
        prev = class;
        prev_start = here;
        folded.push(b.to_ascii_lowercase());
    }
    if start != usize::MAX {
        words.push((start, folded.len()));
    }
}

fn split_into(name: &str, scratch: &mut NameScratch) {
    scratch.folded.clear();
    scratch.words.clear();
    let folded = &mut scratch.folded;
    let words = &mut scratch.words;
    let mut splitter = Splitter::new();
    folded.reserve(name.len());
    if name.is_ascii() {
        split_ascii(name.as_bytes(), folded, words);
        return;
    }
    let mut tmp = String::new();
    for c in name.chars() {
        let c = if c.is_ascii() {
            c
        } else if is_ignorable(c) {
            continue;
        } else {
            as_ascii(c).unwrap_or(c)
        };
        if !c.is_alphanumeric() {
            splitter.separator(folded.len(), words);
            continue;
        }
        let class = if c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric()) {
            Class::Digit
        } else if c.is_uppercase() {
            Class::Upper
        } else if c.is_lowercase() {
            Class::Lower
        } else {
            Class::Caseless
        };
        splitter.letter(class, folded.len(), words);
        if c.is_ascii() {
            folded.push(c.to_ascii_lowercase() as u8);
        } else {
            tmp.clear();
            fold_into(c, &mut tmp);
            // Folding can produce marks of its own (`İ` → `i` + U+0307): dropped like the rest.
            for f in tmp.chars().filter(|f| !is_ignorable(*f)) {
                let f = as_ascii(f).unwrap_or(f);
                let mut buf = [0u8; 4];
                folded.extend_from_slice(f.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    splitter.finish(folded.len(), words);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words() {
        let cases: &[(&str, &[&str])] = &[
            ("api_key", &["api", "key"]),
            ("api-key", &["api", "key"]),
            ("api.key", &["api", "key"]),
            ("api key", &["api", "key"]),
            ("apiKey", &["api", "key"]),
            ("APIKey", &["api", "key"]),
            ("ApiKey", &["api", "key"]),
            ("API_KEY", &["api", "key"]),
            ("clientSecret", &["client", "secret"]),
            ("HTTPAuthToken", &["http", "auth", "token"]),
            ("IDToken", &["id", "token"]),
            ("sessionID", &["session", "id"]),
            ("password2", &["password", "2"]),
            ("oauth2Token", &["oauth", "2", "token"]),
            ("SHA256Key", &["sha", "256", "key"]),
            ("__x__", &["x"]),
            ("", &[]),
            ("-_.", &[]),
            ("pass\u{200b}word", &["password"]),
            ("pa\u{301}ssword", &["password"]),
            ("ｐａｓｓｗｏｒｄ", &["password"]),
            ("ＡＰＩ＿ＫＥＹ", &["api", "key"]),
            ("\u{17f}ecret", &["secret"]),
            ("\u{212a}ey", &["key"]),
            ("Stra\u{df}e", &["strasse"]),
            ("x-api-key", &["x", "api", "key"]),
            ("nextPageToken", &["next", "page", "token"]),
            ("a/b:c@d$e[0]", &["a", "b", "c", "d", "e", "0"]),
        ];
        for (name, words) in cases {
            assert_eq!(split_words(name), *words, "{name:?}");
        }
    }

    #[test]
    fn unicode_that_renders_as_a_secret_name_is_read_as_it() {
        let policy = NamePolicy::default();
        let bold: String = "password"
            .chars()
            .map(|c| char::from_u32(0x1D41A + (c as u32 - 'a' as u32)).unwrap())
            .collect();
        let monospace_upper: String = "TOKEN"
            .chars()
            .map(|c| char::from_u32(0x1D670 + (c as u32 - 'A' as u32)).unwrap())
            .collect();
        for (name, rule) in [
            (bold.as_str(), "password"),
            (monospace_upper.as_str(), "token"),
            ("ｐａｓｓｗｏｒｄ", "password"),
            ("p\u{0430}ssword", "password"),           // Cyrillic а
            ("t\u{03BF}ken", "token"),                 // Greek ο
            ("\u{0421}LIENT_SECRET", "client_secret"), // Cyrillic С
            ("AUTHOR\u{0130}ZAT\u{0130}ON", "authorization"), // folding adds U+0307
            ("pass\u{05B9}word", "password"),          // a Hebrew point inside
            ("api\u{0651}_key", "api_key"),            // an Arabic shadda inside
        ] {
            assert_eq!(policy.check(name).map(|m| m.rule), Some(rule), "{name:?}");
        }
        for benign in ["пароль_hint", "токен_count", "αριθμός", "日本語", "café"]
        {
            assert_eq!(policy.check(benign), None, "{benign}");
        }
    }

    #[test]
    fn whole_words_only() {
        let p = NamePolicy::default();
        for name in [
            "author",
            "authors",
            "tokens",
            "max_tokens",
            "tokenizer",
            "passage",
        ] {
            assert_eq!(p.check(name), None, "{name}");
        }
        for (name, rule) in [
            ("auth", "auth"),
            ("x_auth", "auth"),
            ("token", "token"),
            ("myToken", "token"),
            ("passWord", "password"),
            ("API_KEY", "api_key"),
            ("apikey", "api_key"),
            ("APIKEY", "api_key"),
            ("accessToken", "access_token"),
            ("accesstoken", "access_token"),
            ("page_token_password", "password"),
            ("OAuthToken", "auth_token"),
            ("github_token", "token"),
        ] {
            assert_eq!(p.check(name).map(|m| m.rule), Some(rule), "{name}");
        }
    }

    #[test]
    fn allow_must_cover_the_whole_deny_match() {
        let p = NamePolicy::default();
        for name in [
            "next_page_token",
            "nextPageToken",
            "page_token",
            "secret_name",
            "password_policy",
            "OAuthClientId",
            "progressToken",
        ] {
            assert_eq!(p.check(name), None, "{name}");
        }
        for (name, rule) in [
            ("client_secret_name_value", "client_secret"),
            ("api_key_id_raw", "api_key"),
            ("token_secret_name_data", "token"),
        ] {
            assert_eq!(p.check(name).map(|m| m.rule), Some(rule), "{name}");
        }
    }

    /// The word roles docs/body-policy.md states: a qualifier last (not past a conjunction), `token`'s
    /// neighbours. Flags are not a role: their value is a boolean (see the inspector's tests).
    #[test]
    fn word_roles_make_references_and_other_tokens_benign() {
        let p = NamePolicy::default();
        for name in [
            "credential_name",
            "token_id",
            "secret_arn",
            "auth_mode",
            "authentication_type",
            "password_field",
            "apiKeySelector",
            "auth_strategy",
            "credential_provider",
            "secret_vault_id",
            "private_key_file_path",
            "private_key_uuid",
            "token_prefix",
            "starting_token",
            "skiptoken",
            "continue_token",
            "NextToken",
            "client_token",
            "clientRequestToken",
            "token_address",
            "tokenSymbol",
        ] {
            assert_eq!(p.check(name), None, "{name}");
        }
        for (name, rule) in [
            ("password", "password"),
            ("new_password", "password"),
            ("api_key_value", "api_key"),
            ("github_token", "token"),
            ("token", "token"),
            ("auth_header", "auth"),
            ("access_token_secret", "access_token"),
            ("refresh_token", "refresh_token"),
            ("hide_password", "password"),
            ("connection_string_or_cluster_name", "connection_string"),
            ("apiKeyOrSecretName", "api_key"),
            ("delete_key", "delete_key"),
            ("db_pass", "password"),
        ] {
            assert_eq!(p.check(name).map(|m| m.rule), Some(rule), "{name}");
        }
    }

    #[test]
    fn run_together_names_are_split_against_the_vocabulary() {
        let p = NamePolicy::default();
        for (name, rule) in [
            ("userpassword", "password"),
            ("githubtoken", "token"),
            ("apikeyvalue", "api_key"),
            ("mcp-param-userpassword", "password"),
            ("adminpassword", "password"),
            ("dbpassword", "password"),
            ("clientsecret", "client_secret"),
            ("accesstoken", "access_token"),
            // A flag's words clear nothing: its `true` is what the inspector lets through.
            ("hidepassword", "password"),
            ("dbpass", "password"),
            ("keypass", "password"),
        ] {
            assert_eq!(p.check(name).map(|m| m.rule), Some(rule), "{name}");
        }
        for benign in [
            "tokenizer",
            "passenger",
            "keyboard",
            "keyword",
            "author",
            "maxtokens",
            "nexttoken",
            "tokenid",
            "secretname",
            "bypass",
            "passage",
        ] {
            assert_eq!(p.check(benign), None, "{benign}");
        }
        assert_eq!(
            split_words("userpassword"),
            ["userpassword"],
            "splitting needs the vocabulary"
        );
    }

    #[test]
    fn extra_phrases() {
        let p = NamePolicy::with_extra(["github token", "sk"], ["session id"]).unwrap();
        assert_eq!(p.check("githubtoken").map(|m| m.rule), Some("github_token"));
        assert_eq!(
            p.check("GITHUB_TOKEN").map(|m| m.rule),
            Some("github_token")
        );
        assert_eq!(p.check("sk").map(|m| m.rule), Some("sk"));
        assert_eq!(p.check("sessionId"), None);
        assert_eq!(
            p.check("session_token").map(|m| m.rule),
            Some("session_token")
        );
        assert!(NamePolicy::with_extra(["__"], [] as [&str; 0]).is_err());
        assert!(NamePolicy::with_extra([] as [&str; 0], ["  "]).is_err());
        // Same concatenation as a default keeps the default rule.
        let p = NamePolicy::with_extra(["API-KEY"], [] as [&str; 0]).unwrap();
        assert_eq!(p.check("apiKey").map(|m| m.rule), Some("api_key"));
    }

    #[test]
    fn scratch_is_reused() {
        let p = NamePolicy::default();
        let mut scratch = NameScratch::default();
        assert!(p
            .check_with("a_very_long_password_value", &mut scratch)
            .is_some());
        let cap = scratch.folded.capacity();
        assert!(p.check_with("query", &mut scratch).is_none());
        assert_eq!(scratch.folded.capacity(), cap);
    }
}
