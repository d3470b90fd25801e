//! The request-headers decision, from the full list of header pairs to allow or deny.
//! Pure: the key-set lookup comes in as a closure so tests run it over an in-memory store.

use crate::auth::token::{contains_token_like, parse_authorization};
use crate::auth::{authenticate, DenyReason, Identity};
use crate::config::Config;
use crate::keyset::Lookup;

/// Identity headers the filter owns. Client-supplied copies are removed before anything else.
pub const IDENTITY_HEADERS: [&str; 3] = ["x-amt-key-id", "x-amt-org", "x-amt-role"];

/// What the decision needs from the request headers, read in one pass over all pairs (so a
/// repeated `Authorization` header is seen, unlike with a single-value host call).
#[derive(Debug, Default)]
pub struct RequestHeaders<'a> {
    authorization: Vec<&'a str>,
    authority: &'a str,
    path: &'a str,
    cookies: Vec<&'a str>,
    pub request_id: Option<&'a str>,
    /// Which of [`IDENTITY_HEADERS`] the client sent.
    pub spoofed_identity: [bool; 3],
}

impl<'a> RequestHeaders<'a> {
    pub fn from_pairs(pairs: &'a [(String, String)]) -> Self {
        let mut headers = Self::default();
        for (name, value) in pairs {
            // Envoy hands header names over lower-cased.
            match name.as_str() {
                "authorization" => headers.authorization.push(value),
                ":authority" => headers.authority = value,
                ":path" => headers.path = value,
                "cookie" => headers.cookies.push(value),
                "x-request-id" => headers.request_id = Some(value),
                other => {
                    if let Some(i) = IDENTITY_HEADERS.iter().position(|h| *h == other) {
                        headers.spoofed_identity[i] = true;
                    }
                }
            }
        }
        headers
    }

    /// Credentials in the URL end up in every access log on the way; the MCP specification forbids
    /// them. A request carrying one is refused even if its header is valid.
    fn has_credentials_outside_header(&self) -> bool {
        let query = self.path.split_once('?').map_or("", |(_, q)| q);
        let access_token_param = query
            .split('&')
            .any(|param| param.split('=').next() == Some("access_token"));
        access_token_param
            || contains_token_like(query)
            || self.cookies.iter().any(|c| contains_token_like(c))
    }
}

/// The outcome of the headers phase, with the key-id when the token was well formed (for logs).
pub struct Decision<'a> {
    pub key_id: Option<&'a str>,
    pub result: Result<Identity, DenyReason>,
}

pub fn decide<'a>(
    headers: &RequestHeaders<'a>,
    config: &Config,
    lookup: impl FnOnce(&str) -> Lookup,
    now_unix_s: impl FnOnce() -> u64,
) -> Decision<'a> {
    if headers.has_credentials_outside_header() {
        return Decision {
            key_id: None,
            result: Err(DenyReason::Malformed),
        };
    }
    let token = match parse_authorization(&headers.authorization) {
        Ok(token) => token,
        Err(e) => {
            return Decision {
                key_id: None,
                result: Err(e.into()),
            }
        }
    };
    let found = lookup(token.key_id());
    let org = config.org.resolve(headers.authority);
    Decision {
        key_id: Some(token.key_id()),
        result: authenticate(token, found, org.as_deref(), now_unix_s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyset::record::KeyRecord;
    use sha2::{Digest, Sha256};

    const TOKEN: &str = "amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";

    fn pairs(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all = vec![
            (":method".to_string(), "POST".to_string()),
            (":authority".to_string(), "acme.armature.app".to_string()),
            (":path".to_string(), "/api/mcp".to_string()),
        ];
        for (n, v) in extra {
            if let Some(slot) = all.iter_mut().find(|(name, _)| name == n) {
                slot.1 = v.to_string();
            } else {
                all.push((n.to_string(), v.to_string()));
            }
        }
        all
    }

    fn active() -> Lookup {
        Lookup::Active(KeyRecord {
            sha256: Sha256::digest(TOKEN.as_bytes()).into(),
            expires_at: None,
            org: "acme".into(),
            role: "viewer".into(),
        })
    }

    fn run(extra: &[(&str, &str)]) -> Result<Identity, DenyReason> {
        let config = Config::from_json(
            br#"{"org_from_authority":"{org}.armature.app","keyset_cluster":"guardctl"}"#,
        )
        .unwrap();
        let pairs = pairs(extra);
        let headers = RequestHeaders::from_pairs(&pairs);
        decide(&headers, &config, |_| active(), || 0).result
    }

    #[test]
    fn allows_a_valid_key_for_its_org() {
        let bearer = format!("Bearer {TOKEN}");
        let identity = run(&[("authorization", &bearer)]).unwrap();
        assert_eq!(identity.org, "acme");
        assert_eq!(identity.role, "viewer");
    }

    #[test]
    fn org_comes_from_the_authority() {
        let bearer = format!("Bearer {TOKEN}");
        for authority in ["other.armature.app", "acme.armature.app.evil", "localhost"] {
            assert_eq!(
                run(&[("authorization", &bearer), (":authority", authority)]),
                Err(DenyReason::WrongOrg),
                "{authority}"
            );
        }
    }

    #[test]
    fn credentials_in_the_url_or_cookie_are_refused() {
        let bearer = format!("Bearer {TOKEN}");
        let in_query = format!("/api/mcp?key={TOKEN}");
        let cookie = format!("session={TOKEN}");
        let cases = [
            vec![
                ("authorization", bearer.as_str()),
                (":path", in_query.as_str()),
            ],
            vec![(":path", in_query.as_str())],
            vec![
                ("authorization", bearer.as_str()),
                (":path", "/api/mcp?access_token=x"),
            ],
            vec![
                ("authorization", bearer.as_str()),
                ("cookie", cookie.as_str()),
            ],
        ];
        for case in cases {
            assert_eq!(run(&case), Err(DenyReason::Malformed), "{case:?}");
        }
        assert!(run(&[
            ("authorization", &bearer),
            (":path", "/api/mcp?cursor=amt_page&x=1")
        ])
        .is_ok());
    }

    #[test]
    fn spoofed_identity_headers_are_noticed() {
        let pairs = pairs(&[("x-amt-org", "root"), ("x-amt-role", "admin")]);
        let headers = RequestHeaders::from_pairs(&pairs);
        assert_eq!(headers.spoofed_identity, [false, true, true]);
    }

    #[test]
    fn missing_and_duplicate_authorization() {
        assert_eq!(run(&[]), Err(DenyReason::Missing));
        let bearer = format!("Bearer {TOKEN}");
        let mut twice = pairs(&[("authorization", &bearer)]);
        twice.push(("authorization".into(), bearer.clone()));
        let config = Config::from_json(br#"{"org":"acme","keyset_cluster":"g"}"#).unwrap();
        let headers = RequestHeaders::from_pairs(&twice);
        assert_eq!(
            decide(&headers, &config, |_| active(), || 0).result,
            Err(DenyReason::Malformed)
        );
    }
}
