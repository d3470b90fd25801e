//! The request-headers decision, from the full list of header pairs to allow or deny.
//! Pure: the key-set lookup comes in as a closure so tests run it over an in-memory store.

use crate::auth::token::{contains_token_like, parse_authorization};
use crate::auth::{authenticate, DenyReason, Identity};
use crate::config::Config;
use crate::keyset::Lookup;
use crate::mcp::inspect::check_param_header;
use crate::mcp::Verdict;
use crate::reply::is_safe_request_id;

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
                // Only a safe id goes into logs and replies; Envoy keeps the client's value.
                "x-request-id" => {
                    headers.request_id = Some(value.as_str()).filter(|id| is_safe_request_id(id))
                }
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
        // Percent-decoded first: `amt%5F...` is the same token to whoever decodes the URL.
        access_token_param
            || contains_token_like(&percent_decoded(self.path))
            || self.cookies.iter().any(|c| contains_token_like(c))
    }
}

/// `%XX` sequences decoded (invalid ones kept as they are), lossily as UTF-8: only for scanning.
fn percent_decoded(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('%') {
        return std::borrow::Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(value as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
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
        // Encoded, or in the path rather than the query: still a credential in the URL.
        let encoded = format!("/api/mcp?key={}", TOKEN.replace('_', "%5F"));
        let in_path = format!("/api/mcp/{TOKEN}");
        for path in [encoded.as_str(), in_path.as_str()] {
            assert_eq!(
                run(&[("authorization", &bearer), (":path", path)]),
                Err(DenyReason::Malformed),
                "{path}"
            );
        }
        assert_eq!(percent_decoded("a%5Fb%zz%4"), "a_b%zz%4");
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
    fn spoofed_identity_headers_are_noticed() {
        let pairs = pairs(&[("x-amt-org", "root"), ("x-amt-role", "admin")]);
        let headers = RequestHeaders::from_pairs(&pairs);
        assert_eq!(headers.spoofed_identity, [false, true, true]);
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
