//! The request-headers decision, from the full list of header pairs to allow or deny: the
//! credential in `Authorization` and nowhere else, identity headers the client cannot spoof,
//! and what to redact from a refused request. Pure: the key-set lookup comes in as a closure so
//! tests run it over an in-memory store.

use super::smuggled::{holds_token, redact, MAX_PERCENT_ROUNDS, REDACTED};
use super::token::parse_authorization;
use super::{authenticate, DenyReason, Identity};
use crate::config::Config;
use crate::keyset::Lookup;
use crate::reply::is_safe_request_id;
use crate::text::{percent_decode, query_params};

/// Headers the filter owns. Client-supplied copies are removed before anything else. The first
/// four are the identity, set on every allowed request (`x-amt-user` only for a key a user
/// issued); `x-amt-tool` is set once the body is judged, for per-tool rate limits.
pub const IDENTITY_HEADERS: [&str; 5] = [
    "x-amt-key-id",
    "x-amt-org",
    "x-amt-role",
    "x-amt-user",
    TOOL_HEADER,
];

/// The tool of a judged `tools/call` (`batch` for several), for filters after mcp-guard.
pub const TOOL_HEADER: &str = "x-amt-tool";

/// True when a header name is, or would be read by some server as, one of [`IDENTITY_HEADERS`]:
/// case aside, CGI/WSGI servers and some proxies read `_` as `-` (`x_amt_role` is
/// `HTTP_X_AMT_ROLE`, like `x-amt-role`).
pub fn spells_identity_header(name: &str) -> bool {
    IDENTITY_HEADERS.iter().any(|identity| {
        identity.len() == name.len()
            && identity.bytes().zip(name.bytes()).all(|(i, n)| {
                let n = n.to_ascii_lowercase();
                n == i || (i == b'-' && n == b'_')
            })
    })
}

/// What the decision needs from the request headers, read in one pass over all pairs (so a
/// repeated `Authorization` header is seen, unlike with a single-value host call).
#[derive(Debug, Default)]
pub struct RequestHeaders<'a> {
    authorization: Vec<&'a str>,
    authority: &'a str,
    path: &'a str,
    pub request_id: Option<&'a str>,
    /// Client-sent headers that are, or spell, one of [`IDENTITY_HEADERS`] (their exact names).
    pub spoofed_identity: Vec<&'a str>,
    /// Where a credential outside `Authorization` was found first, if anywhere.
    pub smuggled: Option<DenyReason>,
}

impl<'a> RequestHeaders<'a> {
    pub fn from_pairs(pairs: &'a [(String, String)]) -> Self {
        let mut headers = Self::default();
        for (name, value) in pairs {
            // Envoy hands header names over lower-cased.
            match name.as_str() {
                "authorization" => {
                    headers.authorization.push(value);
                    continue;
                }
                ":authority" => headers.authority = value,
                ":path" => headers.path = value,
                // Only a safe id goes into logs and replies; Envoy keeps the client's value.
                "x-request-id" => {
                    headers.request_id = Some(value.as_str()).filter(|id| is_safe_request_id(id))
                }
                other if spells_identity_header(other) => headers.spoofed_identity.push(other),
                _ => {}
            }
            if headers.smuggled.is_none() {
                headers.smuggled = smuggled_in(name, value);
            }
        }
        headers
    }
}

/// The class of credential a header other than `Authorization` carries, if it carries one.
/// The URL also may not carry an `access_token` parameter (RFC 6750 form, forbidden by MCP).
fn smuggled_in(name: &str, value: &str) -> Option<DenyReason> {
    let reason = match name {
        ":path" => DenyReason::TokenInUrl,
        "cookie" => DenyReason::TokenInCookie,
        _ => DenyReason::TokenInHeader,
    };
    let in_url = name == ":path" && has_access_token_param(value);
    (in_url || holds_token(value) || holds_token(name)).then_some(reason)
}

fn has_access_token_param(path: &str) -> bool {
    query_params(path).any(is_access_token_param)
}

/// `access_token=...` as a server reads the name: percent-decoded, with a `[]` suffix (PHP,
/// Rails) dropped.
fn is_access_token_param(param: &str) -> bool {
    let name = param.split('=').next().unwrap_or_default();
    let mut name = name.as_bytes().to_vec();
    for _ in 0..MAX_PERCENT_ROUNDS {
        match percent_decode(&name) {
            Some(decoded) => name = decoded,
            None => break,
        }
    }
    let name = name.strip_suffix(b"[]").unwrap_or(&name);
    name == b"access_token"
}

/// How the filter rewrites a header before refusing a request that carries a credential outside
/// `Authorization`, so that neither Envoy's access log nor anything else that reads the request
/// afterwards sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Redaction {
    /// Replace every value of the header with these (one per value, in order).
    Replace(String, Vec<String>),
    /// The header's name itself holds a token: remove it.
    Remove(String),
}

/// The rewrites that take every credential out of a refused request's headers. `Authorization`
/// is always removed too (a refused request may have carried a valid one).
pub fn redactions(pairs: &[(String, String)]) -> Vec<Redaction> {
    let mut out = vec![Redaction::Remove("authorization".to_string())];
    for (name, value) in pairs {
        if name == "authorization" || smuggled_in(name, value).is_none() {
            continue;
        }
        if holds_token(name) {
            out.push(Redaction::Remove(name.clone()));
            continue;
        }
        if out
            .iter()
            .any(|r| matches!(r, Redaction::Replace(n, _) if n == name))
        {
            continue;
        }
        let values = pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| {
                if name == ":path" {
                    redact_path(v)
                } else {
                    redact(v)
                }
            })
            .collect();
        out.push(Redaction::Replace(name.clone(), values));
    }
    out
}

/// [`redact`], and the value of any `access_token` query parameter.
fn redact_path(path: &str) -> String {
    let redacted = redact(path);
    let Some((before, query)) = redacted.split_once('?') else {
        return redacted;
    };
    let mut out = format!("{before}?");
    let mut rest = query;
    while !rest.is_empty() {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let (param, tail) = rest.split_at(end);
        match param.split_once('=') {
            Some((name, _)) if is_access_token_param(param) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(param),
        }
        // The separator itself, kept as it was.
        out.push_str(tail.get(..1).unwrap_or_default());
        rest = tail.get(1..).unwrap_or_default();
    }
    out
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
    // Refused even if the Authorization header is valid: a credential elsewhere is logged and
    // forwarded by every hop.
    if let Some(reason) = headers.smuggled {
        return Decision {
            key_id: None,
            result: Err(reason),
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
pub(crate) mod tests {
    use super::*;
    use crate::keyset::record::KeyRecord;
    use sha2::{Digest, Sha256};

    const TOKEN: &str = "amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";

    /// Request header pairs as Envoy hands them over: a POST to `acme.armature.app/api/mcp`, with
    /// `extra` replacing or adding pairs.
    pub(crate) fn pairs(extra: &[(&str, &str)]) -> Vec<(String, String)> {
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
            user: None,
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

    /// Every place outside `Authorization` a credential can travel in, each with its reason.
    #[test]
    fn a_credential_outside_authorization_is_refused_with_its_class() {
        use DenyReason::{TokenInCookie, TokenInHeader, TokenInUrl};
        let bearer = format!("Bearer {TOKEN}");
        let other = "amt_zzzzzzzzzzzz_Ak3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";
        let encoded = TOKEN.replace('_', "%5F");
        let basic = format!(
            "Basic {}",
            crate::auth::smuggled::tests::base64(format!("agent:{TOKEN}").as_bytes(), false, true)
        );
        let cases: Vec<(String, String, DenyReason)> = vec![
            (":path".into(), format!("/api/mcp?key={TOKEN}"), TokenInUrl),
            (
                ":path".into(),
                format!("/api/mcp?key={encoded}"),
                TokenInUrl,
            ),
            (":path".into(), format!("/api/mcp/{TOKEN}"), TokenInUrl),
            (":path".into(), "/api/mcp?access_token=x".into(), TokenInUrl),
            (
                ":path".into(),
                "/api/mcp?access%5Ftoken=x".into(),
                TokenInUrl,
            ),
            (
                ":path".into(),
                "/api/mcp?a=1;access_token=x".into(),
                TokenInUrl,
            ),
            (
                ":path".into(),
                "/api/mcp?access_token[]=x".into(),
                TokenInUrl,
            ),
            ("cookie".into(), format!("session={TOKEN}"), TokenInCookie),
            ("cookie".into(), format!("a=1; k={encoded}"), TokenInCookie),
            ("x-api-key".into(), TOKEN.into(), TokenInHeader),
            ("api-key".into(), other.into(), TokenInHeader),
            (
                "proxy-authorization".into(),
                format!("Bearer {TOKEN}"),
                TokenInHeader,
            ),
            ("proxy-authorization".into(), basic.clone(), TokenInHeader),
            ("x-request-id".into(), TOKEN.into(), TokenInHeader),
            (
                "x-forwarded-authorization".into(),
                encoded.clone(),
                TokenInHeader,
            ),
            ("mcp-param-query".into(), TOKEN.into(), TokenInHeader),
            (TOKEN.into(), "1".into(), TokenInHeader),
        ];
        for (name, value, reason) in &cases {
            let with_key = [
                ("authorization", bearer.as_str()),
                (name.as_str(), value.as_str()),
            ];
            assert_eq!(run(&with_key), Err(*reason), "{name}: {value}");
            // Without a valid Authorization: refused all the same, for the same reason.
            assert_eq!(
                run(&[(name.as_str(), value.as_str())]),
                Err(*reason),
                "{name}"
            );
        }
        for (name, value) in [
            (":path", "/api/mcp?cursor=amt_page&x=1"),
            ("cookie", "amt_session=short"),
            ("x-request-id", "6f1c9a3e-77ab-4c2d-9e1f-0a1b2c3d4e5f"),
            ("user-agent", "amt_client/1.0 (linux)"),
        ] {
            assert!(
                run(&[("authorization", &bearer), (name, value)]).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_refused_request_is_redacted_where_it_carried_a_token() {
        let encoded = TOKEN.replace('_', "%5F");
        let in_path = format!("/api/mcp/{TOKEN}?access_token=abc&x=1;access%5Ftoken=d");
        let cookie = format!("a=1; k={encoded}");
        let bearer = format!("Bearer {TOKEN}");
        let mut request = pairs(&[
            (":path", &in_path),
            ("authorization", &bearer),
            ("cookie", &cookie),
            ("x-request-id", TOKEN),
            ("accept", "application/json"),
        ]);
        request.push(("cookie".into(), "b=2".into()));
        request.push((TOKEN.into(), "1".into()));
        let expected = vec![
            Redaction::Remove("authorization".into()),
            Redaction::Replace(
                ":path".into(),
                vec![
                    "/api/mcp/[redacted]?access_token=[redacted]&x=1;access%5Ftoken=[redacted]"
                        .into(),
                ],
            ),
            Redaction::Replace(
                "cookie".into(),
                vec!["a=1; k=[redacted]".into(), "b=2".into()],
            ),
            Redaction::Replace("x-request-id".into(), vec!["[redacted]".into()]),
            Redaction::Remove(TOKEN.into()),
        ];
        assert_eq!(redactions(&request), expected);
        // A request refused for another reason loses only its Authorization header.
        assert_eq!(
            redactions(&pairs(&[("authorization", &bearer)])),
            vec![Redaction::Remove("authorization".into())]
        );
    }

    #[test]
    fn only_a_safe_request_id_is_kept_for_logs_and_replies() {
        for (sent, kept) in [
            ("6f1c-77ab.x_y", Some("6f1c-77ab.x_y")),
            ("a b key_id=forged", None),
            (TOKEN, None),
            ("", None),
        ] {
            let pairs = pairs(&[("x-request-id", sent)]);
            assert_eq!(
                RequestHeaders::from_pairs(&pairs).request_id,
                kept,
                "{sent}"
            );
        }
    }

    #[test]
    fn every_spelling_of_an_identity_header_is_spoofing() {
        let sent = [
            ("x-amt-org", "root"),
            ("x-amt-role", "admin"),
            ("x_amt_role", "admin"),
            ("x_amt-key_id", "k"),
            ("X_AMT_ORG", "root"),
            ("x-amt-user", "root@example.com"),
            ("X_Amt_User", "root@example.com"),
            ("x-amt-tool", "free_tier"),
        ];
        let pairs = pairs(&sent);
        let headers = RequestHeaders::from_pairs(&pairs);
        let names: Vec<&str> = sent.iter().map(|(n, _)| *n).collect();
        assert_eq!(headers.spoofed_identity, names);
        for innocent in [
            "x-amt-orgs",
            "x-amt",
            "xamt-role",
            "x-amt-rol",
            "x.amt.role",
        ] {
            assert!(!spells_identity_header(innocent), "{innocent}");
        }
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
