//! Authentication decision: token grammar, constant-time hash check, expiry and org scoping.
//! No host calls: the filter hands in the header values, the lookup result and the clock.

pub mod request;
pub mod smuggled;
pub mod token;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::keyset::Lookup;
use token::{CredentialError, Token};

/// Why a request was denied. Each has a metric and a debug log line; clients see only the
/// coarse class ([`crate::reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    Missing,
    Malformed,
    /// A token (ours, in any encoding [`smuggled`] decodes) or `access_token` in the URL.
    TokenInUrl,
    /// A token in a cookie.
    TokenInCookie,
    /// A token in any other request header (or header name) than the one `Authorization`.
    TokenInHeader,
    UnknownKey,
    BadSecret,
    Revoked,
    Expired,
    WrongOrg,
    KeySetNotLoaded,
    KeySetStale,
}

impl DenyReason {
    pub const ALL: [DenyReason; 12] = [
        DenyReason::Missing,
        DenyReason::Malformed,
        DenyReason::TokenInUrl,
        DenyReason::TokenInCookie,
        DenyReason::TokenInHeader,
        DenyReason::UnknownKey,
        DenyReason::BadSecret,
        DenyReason::Revoked,
        DenyReason::Expired,
        DenyReason::WrongOrg,
        DenyReason::KeySetNotLoaded,
        DenyReason::KeySetStale,
    ];

    /// Stable reason code, used in metric names and logs.
    pub fn code(self) -> &'static str {
        match self {
            DenyReason::Missing => "missing",
            DenyReason::Malformed => "malformed",
            DenyReason::TokenInUrl => "token_in_url",
            DenyReason::TokenInCookie => "token_in_cookie",
            DenyReason::TokenInHeader => "token_in_header",
            DenyReason::UnknownKey => "unknown_key",
            DenyReason::BadSecret => "bad_secret",
            DenyReason::Revoked => "revoked",
            DenyReason::Expired => "expired",
            DenyReason::WrongOrg => "wrong_org",
            DenyReason::KeySetNotLoaded => "keyset_not_loaded",
            DenyReason::KeySetStale => "keyset_stale",
        }
    }
}

impl DenyReason {
    /// A credential outside the `Authorization` header: what Envoy logs of the request must be
    /// redacted before the reply ([`smuggled::redact`]).
    pub fn is_smuggled_credential(self) -> bool {
        matches!(
            self,
            DenyReason::TokenInUrl | DenyReason::TokenInCookie | DenyReason::TokenInHeader
        )
    }
}

impl From<CredentialError> for DenyReason {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::Missing => DenyReason::Missing,
            CredentialError::Malformed => DenyReason::Malformed,
        }
    }
}

/// Who the caller is, from the key record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub key_id: String,
    pub org: String,
    pub role: String,
    /// The user who issued the key; `None` for a service key.
    pub user: Option<String>,
}

/// Digest every lookup result is compared against, so an unknown key-id costs the same as a
/// wrong secret.
const NO_DIGEST: [u8; 32] = [0; 32];

/// Decides a request whose token passed the grammar.
///
/// `request_org` is `None` when the org could not be derived from the request (authority outside
/// the configured pattern): no key is valid then. `now_unix_s` is asked only for keys that expire
/// (reading the host clock is a host call).
pub fn authenticate(
    token: Token<'_>,
    lookup: Lookup,
    request_org: Option<&str>,
    now_unix_s: impl FnOnce() -> u64,
) -> Result<Identity, DenyReason> {
    let digest: [u8; 32] = Sha256::digest(token.as_str().as_bytes()).into();
    let expected = match &lookup {
        Lookup::Active(record) => &record.sha256,
        _ => &NO_DIGEST,
    };
    let digest_matches: bool = digest.ct_eq(expected).into();
    let record = match lookup {
        Lookup::NotLoaded => return Err(DenyReason::KeySetNotLoaded),
        Lookup::Stale => return Err(DenyReason::KeySetStale),
        Lookup::Unknown => return Err(DenyReason::UnknownKey),
        Lookup::Revoked => return Err(DenyReason::Revoked),
        Lookup::Active(record) => record,
    };
    if !digest_matches {
        return Err(DenyReason::BadSecret);
    }
    if record.expires_at.is_some_and(|at| now_unix_s() >= at) {
        return Err(DenyReason::Expired);
    }
    if request_org != Some(record.org.as_str()) {
        return Err(DenyReason::WrongOrg);
    }
    Ok(Identity {
        key_id: token.key_id().to_string(),
        org: record.org,
        role: record.role,
        user: record.user,
    })
}

#[cfg(test)]
mod tests {
    use super::token::parse_token;
    use super::*;
    use crate::keyset::record::KeyRecord;

    const TOKEN: &str = "amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";
    const OTHER: &str = "amt_k3x9a0b1c2d3_Xk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";

    fn record(expires_at: Option<u64>) -> Lookup {
        Lookup::Active(KeyRecord {
            sha256: Sha256::digest(TOKEN.as_bytes()).into(),
            expires_at,
            org: "demo".into(),
            role: "member".into(),
            user: None,
        })
    }

    fn decide(token: &str, lookup: Lookup, org: Option<&str>) -> Result<Identity, DenyReason> {
        authenticate(parse_token(token).unwrap(), lookup, org, || 1_000)
    }

    #[test]
    fn the_right_secret_for_the_right_org_is_allowed() {
        let identity = decide(TOKEN, record(None), Some("demo")).unwrap();
        assert_eq!(
            identity,
            Identity {
                key_id: "k3x9a0b1c2d3".into(),
                org: "demo".into(),
                role: "member".into(),
                user: None,
            }
        );
        let mut issued = record(None);
        if let Lookup::Active(record) = &mut issued {
            record.user = Some("alice".into());
        }
        let identity = decide(TOKEN, issued, Some("demo")).unwrap();
        assert_eq!(identity.user.as_deref(), Some("alice"));
        assert!(decide(TOKEN, record(Some(1_001)), Some("demo")).is_ok());
    }

    #[test]
    fn each_failure_has_its_reason() {
        let cases = [
            (OTHER, record(None), Some("demo"), DenyReason::BadSecret),
            (TOKEN, Lookup::Unknown, Some("demo"), DenyReason::UnknownKey),
            (TOKEN, Lookup::Revoked, Some("demo"), DenyReason::Revoked),
            (
                TOKEN,
                Lookup::NotLoaded,
                Some("demo"),
                DenyReason::KeySetNotLoaded,
            ),
            (
                TOKEN,
                record(Some(1_000)),
                Some("demo"),
                DenyReason::Expired,
            ),
            (TOKEN, record(None), Some("acme"), DenyReason::WrongOrg),
            (TOKEN, record(None), None, DenyReason::WrongOrg),
        ];
        for (token, lookup, org, expected) in cases {
            assert_eq!(decide(token, lookup, org), Err(expected));
        }
    }

    #[test]
    fn a_wrong_secret_is_reported_before_expiry_or_org() {
        assert_eq!(
            decide(OTHER, record(Some(1)), Some("acme")),
            Err(DenyReason::BadSecret)
        );
    }

    #[test]
    fn reason_codes_are_unique() {
        let mut codes: Vec<_> = DenyReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), DenyReason::ALL.len());
    }
}
