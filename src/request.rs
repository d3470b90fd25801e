//! The request-headers decision, from the full list of header pairs to allow or deny.
//! Pure: the key-set lookup comes in as a closure so tests run it over an in-memory store.

use crate::auth::smuggled::{holds_token, redact, REDACTED};
use crate::auth::token::parse_authorization;
use crate::auth::{authenticate, DenyReason, Identity};
use crate::config::Config;
use crate::keyset::Lookup;
use crate::mcp::inspect::check_param_header;
use crate::mcp::Verdict;
use crate::reply::is_safe_request_id;

/// Identity headers the filter owns. Client-supplied copies are removed before anything else.
pub const IDENTITY_HEADERS: [&str; 3] = ["x-amt-key-id", "x-amt-org", "x-amt-role"];

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

/// The parameters of a URL's query, split the ways servers split them (`&`, and `;` too).
fn query_params(path: &str) -> impl Iterator<Item = &str> {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    query.split(['&', ';'])
}

/// `access_token=...` as a server reads the name: percent-decoded, with a `[]` suffix (PHP,
/// Rails) dropped.
fn is_access_token_param(param: &str) -> bool {
    let name = param.split('=').next().unwrap_or_default();
    let mut name = name.as_bytes().to_vec();
    for _ in 0..crate::auth::smuggled::MAX_PERCENT_ROUNDS {
        match crate::auth::smuggled::percent_decode(&name) {
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

    fn plan(extra: &[(&str, &str)]) -> BodyPlan {
        let config = Config::from_json(
            br#"{"org":"demo","keyset_cluster":"g","max_body_bytes":100,"inspect_path_prefixes":["/api/mcp"]}"#,
        )
        .unwrap();
        let mut with_defaults = vec![("content-type", "application/json")];
        with_defaults.extend_from_slice(extra);
        body_plan(&pairs(&with_defaults), &config, false)
    }

    fn rejected_with(plan: BodyPlan) -> (u32, String) {
        match plan {
            BodyPlan::Reject(r) => {
                let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                assert!(body["id"].is_null() || body["id"].is_number(), "{body}");
                assert!(body["error"]["code"].is_i64());
                (r.status, r.rule)
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn only_posts_to_inspected_paths_carry_a_body() {
        assert!(matches!(plan(&[]), BodyPlan::Inspect { .. }));
        assert_eq!(plan(&[(":path", "/other")]), BodyPlan::Forward);
        let config = Config::from_json(
            br#"{"org":"demo","keyset_cluster":"g","inspect_path_prefixes":["/api/mcp"]}"#,
        )
        .unwrap();
        for method in ["GET", "DELETE", "PUT", "PATCH"] {
            let request = pairs(&[(":method", method)]);
            assert_eq!(
                body_plan(&request, &config, true),
                BodyPlan::Forward,
                "{method} without a body"
            );
            assert_eq!(
                body_plan(&request, &config, false),
                BodyPlan::ExpectEmpty,
                "{method} that may have a body"
            );
        }
    }

    #[test]
    fn content_type_encoding_and_length_are_checked_before_the_body() {
        let config = Config::from_json(br#"{"org":"demo","keyset_cluster":"g"}"#).unwrap();
        let mut two_types = pairs(&[("content-type", "application/json")]);
        two_types.push(("content-type".into(), "application/json".into()));
        assert_eq!(
            rejected_with(body_plan(&two_types, &config, false)),
            (415, "unsupported_media_type".to_string())
        );
        type Case<'a> = (&'a [(&'a str, &'a str)], u32, &'a str);
        let cases: [Case; 5] = [
            (&[("content-encoding", "gzip")], 415, "content_encoding"),
            (&[("content-length", "101")], 413, "body_too_large"),
            (&[("mcp-param-api-key", "x")], 400, "api_key"),
            (&[("mcp-param-password", "x")], 400, "password"),
            (
                &[(
                    "mcp-param-query",
                    "amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8",
                )],
                400,
                "amt_token_value",
            ),
        ];
        for (extra, status, rule) in cases {
            assert_eq!(
                rejected_with(plan(extra)),
                (status, rule.to_string()),
                "{extra:?}"
            );
        }
        // The single content-type must be JSON in UTF-8.
        let with_content_type = |value: &str| {
            let config = Config::from_json(br#"{"org":"demo","keyset_cluster":"g"}"#).unwrap();
            let mut all = pairs(&[]);
            all.push(("content-type".into(), value.into()));
            body_plan(&all, &config, false)
        };
        for bad in [
            "text/plain",
            "application/json; charset=latin1",
            "application/jsonx",
            "",
        ] {
            assert_eq!(rejected_with(with_content_type(bad)).0, 415, "{bad}");
        }
        for good in [
            "application/json",
            "Application/JSON; charset=UTF-8",
            "application/json;charset=\"utf-8\"",
        ] {
            let plan = with_content_type(good);
            assert!(matches!(plan, BodyPlan::Inspect { .. }), "{good}");
        }
        assert!(matches!(
            plan(&[("content-encoding", "identity"), ("content-length", "100")]),
            BodyPlan::Inspect { .. }
        ));
    }

    #[test]
    fn mcp_method_and_name_headers_are_kept_for_the_body_check() {
        let BodyPlan::Inspect {
            mcp_method,
            mcp_name,
        } = plan(&[("mcp-method", "tools/call"), ("mcp-name", "echo")])
        else {
            panic!("expected inspection");
        };
        assert_eq!(mcp_method, vec!["tools/call".to_string()]);
        assert_eq!(mcp_name, vec!["echo".to_string()]);
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

/// A request refused before its body is read (413, 415, or a secret-looking `Mcp-Param-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlyRejection {
    pub status: u32,
    pub rule: String,
    pub body: String,
}

/// What the headers say about the body of an authenticated request.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyPlan {
    /// Not for an inspected path, or a bodiless GET (SSE stream) or DELETE: forward as is.
    Forward,
    /// Not a POST, but a body may follow: hold it, and refuse the request if it has any bytes.
    ExpectEmpty,
    /// Hold the headers and judge the whole body; keeps the `Mcp-Method` / `Mcp-Name` values.
    Inspect {
        mcp_method: Vec<String>,
        mcp_name: Vec<String>,
    },
    Reject(EarlyRejection),
}

fn early(status: u32, rule: &'static str, message: &str) -> BodyPlan {
    BodyPlan::Reject(EarlyRejection::new(status, rule, message))
}

impl EarlyRejection {
    /// A refusal of the request as a whole: JSON-RPC -32600 with the rule, `"id": null`.
    pub fn new(status: u32, rule: &str, message: &str) -> Self {
        Self {
            status,
            rule: rule.to_string(),
            body: format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{{\"code\":{},\"message\":\"{message}\",\"data\":{{\"rule\":\"{rule}\"}}}}}}",
                crate::mcp::inspect::INVALID_REQUEST
            ),
        }
    }
}

/// `application/json`, optionally with `charset=utf-8`, and nothing else.
fn is_json_utf8(content_type: &str) -> bool {
    let mut parts = content_type.split(';').map(str::trim);
    let media_ok = parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("application/json"));
    media_ok
        && parts.all(|param| {
            param.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("charset")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            })
        })
}

/// Decides, from the request headers alone, whether the body must be inspected or the request
/// can already be refused.
pub fn body_plan(pairs: &[(String, String)], config: &Config, end_of_stream: bool) -> BodyPlan {
    let header = |name: &'static str| {
        pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let method = header(":method").next().unwrap_or("");
    let path = header(":path").next().unwrap_or("");
    if !config.inspects(path) {
        return BodyPlan::Forward;
    }
    if method != "POST" {
        // Only POST carries MCP messages. Another method with a body (a PUT, or a GET with one)
        // would reach an upstream that might read it uninspected: hold it and refuse any bytes.
        return if end_of_stream {
            BodyPlan::Forward
        } else {
            BodyPlan::ExpectEmpty
        };
    }
    let content_types: Vec<&str> = header("content-type").collect();
    if content_types.len() != 1 || !content_types.iter().all(|ct| is_json_utf8(ct)) {
        return early(
            415,
            "unsupported_media_type",
            "MCP requests must be sent as one Content-Type: application/json (UTF-8)",
        );
    }
    if header("content-encoding").any(|e| !e.trim().eq_ignore_ascii_case("identity")) {
        return early(
            415,
            "content_encoding",
            "MCP requests must not be compressed (no Content-Encoding)",
        );
    }
    let declared = header("content-length").find_map(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > config.max_body_bytes as u64) {
        return early(
            413,
            "body_too_large",
            "The request body is larger than this endpoint accepts",
        );
    }
    for (name, value) in pairs {
        if name.starts_with("mcp-param-") {
            if let Verdict::Reject(rejection) = check_param_header(name, value, &config.inspect) {
                return BodyPlan::Reject(EarlyRejection {
                    status: u32::from(rejection.status),
                    body: rejection.body(),
                    rule: rejection.rule,
                });
            }
        }
    }
    BodyPlan::Inspect {
        mcp_method: header("mcp-method").map(str::to_string).collect(),
        mcp_name: header("mcp-name").map(str::to_string).collect(),
    }
}
