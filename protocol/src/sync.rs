//! The key-set sync page: guardctl's answer to `GET /v1/keyset?since=<version>&wait_ms=<ms>`.
//!
//! ```json
//! {"epoch":"3f2a…","version":42,"more":false,
//!  "upserts":[{"key_id":"k3x9a0b1c2d3","sha256":"8f43…","org":"demo","role":"admin",
//!              "expires_at":null,"version":41}],
//!  "revocations":[{"key_id":"q8w7e6r5t4y3","version":42}]}
//! ```
//!
//! **Versions.** Every change (a key created, imported or revoked) gets the next version of the
//! database's one change log. A page holds the changes after `since`, oldest first, and
//! `version` is the version its reader has after applying it: the last change's, or the current
//! version when nothing changed. Every entry's version lies in `(since, version]`. `more` says
//! that more changes wait beyond this page: ask again at once with `since=version`.
//!
//! **Epochs.** The epoch names one database's history. A page with another epoch than the last
//! one applied, or a `version` below the `since` asked for (a database restored from a backup,
//! which never saw the reader's versions), means the reader's copy is of another history: it
//! reloads everything from `since=0`. guardctl answers a `since` beyond its newest version like
//! `since=0`, so that such a reader finds out.
//!
//! **Revocations win.** A revocation is sent, never the hash of a revoked key again; an upsert of
//! a key revoked later is sent as its revocation. A reader keeps, per key, the entry of the newest
//! version it has seen, so a stale page can never revive a revoked key.
//!
//! **Formats.** The reader asks for `format=2` and gets, on upserts of keys a user issued, the
//! member `"user":"alice@example.com"`. A reader that does not name a format gets format 1,
//! without it (see [`PAGE_FORMAT`]).
//!
//! **Strictness.** The decoder refuses unknown fields, a key-id outside the token grammar, an org
//! or role outside the label grammar, a user outside the user-name grammar, a `sha256` that is not 64 lower-case hex digits, an epoch
//! that is not 1 to 64 ASCII letters and digits, and any version outside `(since, version]`.

use serde::{Serialize, Serializer};

use crate::label::{is_valid_label, is_valid_user_name};
use crate::policy::Policy;
use crate::reader::{Malformed, Read, Reader};
use crate::token::is_valid_key_id;

/// The path of the sync API.
pub const SYNC_PATH: &str = "/v1/keyset";
/// Longest a long-poll is held open, whatever the reader asks for (milliseconds).
pub const MAX_WAIT_MS: u64 = 60_000;
/// Longest epoch.
pub const MAX_EPOCH_LEN: usize = 64;
/// The newest page format: 2 adds the issuing user to upserts, 3 the orgs' tool policies. A reader names the format it
/// reads with `format=<n>` (absent: 1), and guardctl leaves out what that format lacks, since
/// a reader refuses members it does not know. Proxies and guardctl upgrade in either order.
pub const PAGE_FORMAT: u32 = 3;
/// The query parameter that names the format.
pub const FORMAT_PARAM: &str = "format";
/// The query parameter that names the proxy asking: its `since` confirms that it has applied
/// everything up to that version (guardctl's answer to a revoke waits for those confirmations).
pub const PROXY_PARAM: &str = "proxy";
/// Longest proxy name.
pub const MAX_PROXY_LEN: usize = 160;

/// A proxy name as it travels in the query string: 1 to [`MAX_PROXY_LEN`] characters out of
/// `A-Z a-z 0-9 . _ ~ -`, so it needs no percent-encoding (Istio's node ids,
/// `sidecar~10.0.0.7~pod.ns~ns.svc.cluster.local`, already fit).
pub fn is_valid_proxy_name(name: &str) -> bool {
    (1..=MAX_PROXY_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// `text` made into a proxy name: every other character becomes `-`, cut to fit (a node id of
/// any form still names the proxy).
pub fn proxy_name_from(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_PROXY_LEN)
        .collect()
}

/// The SHA-256 of a whole token: 32 bytes, written as 64 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Parses 64 hex digits; `lower_case_only` refuses `A`-`F` (the sync page's rule; import
    /// files accept either case).
    pub fn from_hex(hex: &str, lower_case_only: bool) -> Option<Sha256> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let nibble = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' if !lower_case_only => Some(b - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *byte = (nibble(*pair.first()?)? << 4) | nibble(*pair.get(1)?)?;
        }
        Some(Sha256(out))
    }

    /// The 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            for nibble in [byte >> 4, byte & 0x0f] {
                out.push(char::from(
                    DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
        out
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

/// One page of the change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncPage {
    pub epoch: String,
    /// The version the reader has after applying this page.
    pub version: u64,
    /// More changes wait: ask again at once with `since=version`.
    pub more: bool,
    pub upserts: Vec<Upsert>,
    pub revocations: Vec<Revocation>,
    /// Tool policies set or removed (format 3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyChange>,
}

/// An org's tool policy as of the change of `version`; `None`: the org has none any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyChange {
    pub org: String,
    pub version: u64,
    pub policy: Option<Policy>,
}

impl PolicyChange {
    fn read(reader: &mut Reader) -> Read<PolicyChange> {
        let mut change = PolicyChange {
            org: String::new(),
            version: 0,
            policy: None,
        };
        let seen = reader.object(&["org", "version", "policy"], |r, member| {
            match member {
                0 => change.org = r.string()?.to_owned(),
                1 => change.version = r.u64()?,
                _ => change.policy = r.nullable(Policy::read)?,
            }
            Ok(())
        })?;
        required(seen, 0b111).map(|()| change)
    }
}

/// The hash row of a live key, at the version of the change that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upsert {
    pub key_id: String,
    pub sha256: Sha256,
    pub org: String,
    pub role: String,
    /// The user who issued the key (format 2); `None` for a service key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Unix seconds; `None` when the key never expires.
    pub expires_at: Option<u64>,
    pub version: u64,
}

impl Upsert {
    fn read(reader: &mut Reader) -> Read<Upsert> {
        let mut upsert = Upsert {
            key_id: String::new(),
            sha256: Sha256([0; 32]),
            org: String::new(),
            role: String::new(),
            user: None,
            expires_at: None,
            version: 0,
        };
        // `expires_at` may be left out (the key never expires), and so may `user` (a service
        // key, or a format-1 page).
        const NAMES: [&str; 7] = [
            "key_id",
            "sha256",
            "org",
            "role",
            "expires_at",
            "version",
            "user",
        ];
        let seen = reader.object(&NAMES, |r, member| {
            match member {
                0 => upsert.key_id = r.string()?.to_owned(),
                1 => upsert.sha256 = Sha256::from_hex(r.string()?, true).ok_or(Malformed)?,
                2 => upsert.org = r.string()?.to_owned(),
                3 => upsert.role = r.string()?.to_owned(),
                4 => upsert.expires_at = r.nullable(Reader::u64)?,
                5 => upsert.version = r.u64()?,
                _ => upsert.user = Some(r.string()?.to_owned()),
            }
            Ok(())
        })?;
        required(seen, 0b10_1111).map(|()| upsert)
    }
}

/// A key revoked (its hash row deleted) by the change of `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    pub key_id: String,
    pub version: u64,
}

impl Revocation {
    fn read(reader: &mut Reader) -> Read<Revocation> {
        let mut revocation = Revocation {
            key_id: String::new(),
            version: 0,
        };
        let seen = reader.object(&["key_id", "version"], |r, member| {
            match member {
                0 => revocation.key_id = r.string()?.to_owned(),
                _ => revocation.version = r.u64()?,
            }
            Ok(())
        })?;
        required(seen, 0b11).map(|()| revocation)
    }
}

/// `seen` (bits of the members read) holds every bit of `required`.
fn required(seen: u64, required: u64) -> Read<()> {
    (seen & required == required).then_some(()).ok_or(Malformed)
}

/// Why a page was refused. Deliberately coarse: the reader logs it and asks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageError {
    /// Not JSON of the page's shape (an unknown field, a bad `sha256` included).
    Shape,
    /// A field breaks its rule: epoch, key-id, org, role, or a version outside the page.
    Rule,
}

impl core::fmt::Display for PageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PageError::Shape => "key-set page is not of the page's shape",
            PageError::Rule => "key-set page breaks a field rule",
        })
    }
}

/// True when `epoch` is 1 to 64 ASCII letters and digits.
pub fn is_valid_epoch(epoch: &str) -> bool {
    !epoch.is_empty()
        && epoch.len() <= MAX_EPOCH_LEN
        && epoch.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl SyncPage {
    /// Decodes the answer to `since=<since>` with every rule of the module's documentation.
    pub fn decode(body: &[u8], since: u64) -> Result<SyncPage, PageError> {
        let mut reader = Reader::new(body);
        let page = SyncPage::read(&mut reader).map_err(|_| PageError::Shape)?;
        reader.end().map_err(|_| PageError::Shape)?;
        page.check(since)?;
        Ok(page)
    }

    /// `epoch` and `version` are required; `more` defaults to false, the lists to empty.
    fn read(reader: &mut Reader) -> Read<SyncPage> {
        let mut page = SyncPage {
            epoch: String::new(),
            version: 0,
            more: false,
            upserts: Vec::new(),
            revocations: Vec::new(),
            policies: Vec::new(),
        };
        const NAMES: [&str; 6] = [
            "epoch",
            "version",
            "more",
            "upserts",
            "revocations",
            "policies",
        ];
        let seen = reader.object(&NAMES, |r, member| {
            match member {
                0 => page.epoch = r.string()?.to_owned(),
                1 => page.version = r.u64()?,
                2 => page.more = r.bool()?,
                3 => page.upserts = r.array(Upsert::read)?,
                4 => page.revocations = r.array(Revocation::read)?,
                _ => page.policies = r.array(PolicyChange::read)?,
            }
            Ok(())
        })?;
        required(seen, 0b11).map(|()| page)
    }

    /// The page's JSON (guardctl's answer). Serialising these types cannot fail; were it ever
    /// to, the empty answer is one every reader refuses.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// True when this page says the reader holds another history: reload from `since=0`.
    pub fn starts_another_history(&self, since: u64, applied_epoch: Option<&str>) -> bool {
        self.version < since || applied_epoch.is_some_and(|epoch| epoch != self.epoch)
    }

    /// The page as a reader of `format` reads it: format 1 knows no `user`, 2 no `policies`.
    pub fn for_format(mut self, format: u32) -> SyncPage {
        if format < 3 {
            self.policies.clear();
        }
        if format < 2 {
            for upsert in &mut self.upserts {
                upsert.user = None;
            }
        }
        self
    }

    /// Checks every field rule for the answer to `since=<since>`.
    pub fn check(&self, since: u64) -> Result<(), PageError> {
        // A page that starts another history holds its changes from version 0.
        let base = if self.version < since { 0 } else { since };
        let in_page = |version: u64| version > base && version <= self.version;
        let upserts_ok = self.upserts.iter().all(|u| {
            in_page(u.version)
                && is_valid_key_id(&u.key_id)
                && is_valid_label(&u.org)
                && is_valid_label(&u.role)
                && u.user.as_deref().is_none_or(is_valid_user_name)
        });
        let revocations_ok = self
            .revocations
            .iter()
            .all(|r| in_page(r.version) && is_valid_key_id(&r.key_id));
        let policies_ok = self.policies.iter().all(|p| {
            in_page(p.version)
                && is_valid_label(&p.org)
                && p.policy
                    .as_ref()
                    .is_none_or(|policy| policy.check().is_ok())
        });
        (is_valid_epoch(&self.epoch) && upserts_ok && revocations_ok && policies_ok)
            .then_some(())
            .ok_or(PageError::Rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RoleRules;

    const HASH: &str = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4";

    #[test]
    fn proxy_names_need_no_escaping_and_any_node_id_becomes_one() {
        assert!(is_valid_proxy_name(
            "sidecar~10.0.0.7~pod-1.ns~ns.svc.cluster.local"
        ));
        for bad in [
            "",
            "a b",
            "a&since=0",
            "a/b",
            "é",
            &"a".repeat(MAX_PROXY_LEN + 1),
        ] {
            assert!(!is_valid_proxy_name(bad), "{bad:?}");
        }
        for node in ["edge proxy #1", "a&b=c", "ünïcode", &"x".repeat(500)] {
            assert!(is_valid_proxy_name(&proxy_name_from(node)), "{node:?}");
        }
        assert_eq!(proxy_name_from("edge proxy"), "edge-proxy");
    }

    fn page() -> SyncPage {
        SyncPage {
            epoch: "e1".into(),
            version: 12,
            more: true,
            upserts: vec![
                Upsert {
                    key_id: "aaaaaaaa".into(),
                    sha256: Sha256::from_hex(HASH, true).unwrap(),
                    org: "demo".into(),
                    role: "admin".into(),
                    user: Some("alice@example.com".into()),
                    expires_at: None,
                    version: 11,
                },
                Upsert {
                    key_id: "b".repeat(32),
                    sha256: Sha256([0xff; 32]),
                    org: "a".repeat(63),
                    role: "0-x".into(),
                    user: None,
                    expires_at: Some(u64::MAX),
                    version: 6,
                },
            ],
            revocations: vec![Revocation {
                key_id: "cccccccc".into(),
                version: 12,
            }],
            policies: vec![
                PolicyChange {
                    org: "demo".into(),
                    version: 9,
                    policy: Some(Policy {
                        mode: crate::policy::Mode::Audit,
                        roles: vec![RoleRules {
                            role: "viewer".into(),
                            tools: vec!["search_*".into(), "echo".into()],
                            deny_tools: vec![],
                            methods: vec!["resources/read".into()],
                            deny_methods: vec!["prompts/?et".into()],
                        }],
                    }),
                },
                PolicyChange {
                    org: "acme".into(),
                    version: 10,
                    policy: None,
                },
            ],
        }
    }

    #[test]
    fn encode_then_decode_gives_the_same_page() {
        for p in [
            page(),
            SyncPage {
                epoch: "Z".repeat(64),
                version: 0,
                more: false,
                upserts: vec![],
                revocations: vec![],
                policies: vec![],
            },
            SyncPage {
                version: u64::MAX,
                ..page()
            },
        ] {
            let encoded = p.encode();
            assert_eq!(
                SyncPage::decode(encoded.as_bytes(), 5),
                Ok(p.clone()),
                "{encoded}"
            );
        }
        assert!(page().encode().contains(HASH));
    }

    #[test]
    fn absent_lists_more_and_expiry_default() {
        let p = SyncPage::decode(br#"{"epoch":"e1","version":3}"#, 3).unwrap();
        assert!(!p.more && p.upserts.is_empty() && p.revocations.is_empty());
        let without_expiry = page().encode().replace(r#""expires_at":null,"#, "");
        let decoded = SyncPage::decode(without_expiry.as_bytes(), 5).unwrap();
        assert_eq!(decoded, page());
    }

    #[test]
    fn every_rule_refuses() {
        let good = page().encode();
        let swap = |from: &str, to: &str| {
            assert!(good.contains(from), "{from}");
            good.replacen(from, to, 1)
        };
        let shape = [
            swap(r#""more":true"#, r#""more":true,"extra":1"#),
            swap(r#""version":11}"#, r#""version":11,"owner":"x"}"#),
            swap(r#""user":"alice@example.com""#, r#""user":null"#),
            swap(r#""version":11}"#, r#""version":11,"user":"x"}"#),
            swap(HASH, &HASH.to_uppercase()),
            swap(HASH, &HASH[..63]),
            swap(r#""expires_at":null"#, r#""expires_at":-1"#),
            swap(r#""version":12,"#, r#""version":-12,"#),
            swap(r#""more":true"#, r#""more":true,"more":false"#),
            swap(r#""role":"admin","#, ""),
            swap(r#""epoch":"e1","#, ""),
            swap(r#""epoch":"e1""#, r#""epoch":"e\u0031""#),
            swap(r#""more":true"#, r#""more":1"#),
            swap(r#""version":12,"#, r#""version":12.0,"#),
            format!("{good} {{}}"),
            "[]".into(),
            String::new(),
        ];
        for body in &shape {
            assert_eq!(
                SyncPage::decode(body.as_bytes(), 5),
                Err(PageError::Shape),
                "{body}"
            );
        }
        let rule = [
            swap(r#""epoch":"e1""#, r#""epoch":"""#),
            swap(r#""epoch":"e1""#, r#""epoch":"e-1""#),
            swap(
                r#""epoch":"e1""#,
                &format!(r#""epoch":"{}""#, "e".repeat(65)),
            ),
            swap(r#""key_id":"aaaaaaaa""#, r#""key_id":"aaaaaaa""#),
            swap(r#""key_id":"cccccccc""#, r#""key_id":"CCCCCCCC""#),
            swap(r#""org":"demo""#, r#""org":"Demo""#),
            swap(r#""role":"admin""#, r#""role":"-admin""#),
            swap(r#""version":11}"#, r#""version":13}"#),
            swap(r#""user":"alice@example.com""#, r#""user":"Alice""#),
            swap(r#""user":"alice@example.com""#, r#""user":"""#),
            swap(r#""user":"alice@example.com""#, r#""user":"a b""#),
        ];
        for body in &rule {
            assert_eq!(
                SyncPage::decode(body.as_bytes(), 5),
                Err(PageError::Rule),
                "{body}"
            );
        }
        // Versions must lie in (since, version]: 6 is not after since=6.
        assert_eq!(SyncPage::decode(good.as_bytes(), 6), Err(PageError::Rule));
        assert!(SyncPage::decode(good.as_bytes(), 5).is_ok());
    }

    #[test]
    fn format_1_readers_get_no_user() {
        let full = page().encode();
        assert!(full.contains(r#""user":"alice@example.com""#), "{full}");
        // The service key's upsert has no member at all, not `null`.
        assert_eq!(full.matches(r#""user""#).count(), 1);
        let old = page().for_format(1);
        assert!(old.upserts.iter().all(|u| u.user.is_none()));
        assert!(!old.encode().contains(r#""user""#));
        assert_eq!(page().for_format(PAGE_FORMAT), page());
    }

    #[test]
    fn another_history_holds_its_changes_from_zero() {
        let p = page();
        // Asked since=20, answered version 12: a restored database. Entries from 1 are fine.
        assert!(p.check(20).is_ok());
        assert!(p.starts_another_history(20, Some("e1")));
        assert!(p.starts_another_history(5, Some("e2")));
        assert!(!p.starts_another_history(5, Some("e1")));
        assert!(!p.starts_another_history(12, None));
    }

    #[test]
    fn hex_either_case_when_asked() {
        let upper = HASH.to_uppercase();
        assert_eq!(Sha256::from_hex(&upper, true), None);
        assert_eq!(
            Sha256::from_hex(&upper, false).map(|h| h.to_hex()),
            Some(HASH.to_string())
        );
        assert_eq!(Sha256::from_hex(&format!("{}g", &HASH[..63]), false), None);
        assert_eq!(Sha256::from_hex("é", false), None);
    }
}
