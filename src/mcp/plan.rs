//! The body planner: from the request headers alone, whether an authenticated request's body
//! must be held and inspected, can pass, or the request can already be refused (413, 415, a
//! secret-looking `Mcp-Param-*` header).

use crate::config::Config;
use crate::mcp::inspect::check_param_header;
use crate::mcp::Verdict;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::request::tests::pairs;

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
}
