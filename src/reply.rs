//! The one place that turns a denial into what the client sees: status, RFC 6750 challenge and a
//! JSON-RPC 2.0 error body that MCP clients can surface. The body never says which check failed.

use crate::auth::DenyReason;

/// JSON-RPC server-defined error code for authentication failures.
pub const UNAUTHORIZED_CODE: i32 = -32001;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

pub fn deny(
    reason: DenyReason,
    challenge: &str,
    retry_after_s: u32,
    request_id: Option<&str>,
) -> LocalReply {
    let (status, error, message) = match reason {
        DenyReason::Missing => (
            401,
            None,
            "Authentication required: send Authorization: Bearer <API key>",
        ),
        DenyReason::Malformed => (
            400,
            Some("invalid_request"),
            "Malformed credentials: send exactly one Authorization: Bearer amt_<key-id>_<secret> header, and no credentials in the URL",
        ),
        DenyReason::TokenInUrl => (
            400,
            Some("invalid_request"),
            "Credentials are accepted only in the Authorization header: this URL carries one",
        ),
        DenyReason::TokenInCookie => (
            400,
            Some("invalid_request"),
            "Credentials are accepted only in the Authorization header: a cookie carries one",
        ),
        DenyReason::TokenInHeader => (
            400,
            Some("invalid_request"),
            "Credentials are accepted only in the Authorization header: another request header carries one",
        ),
        DenyReason::UnknownKey
        | DenyReason::BadSecret
        | DenyReason::Revoked
        | DenyReason::Expired
        | DenyReason::WrongOrg => (401, Some("invalid_token"), "Invalid API key"),
        DenyReason::KeySetNotLoaded | DenyReason::KeySetStale => (
            503,
            None,
            "Authentication is not ready yet; retry shortly",
        ),
    };
    let mut headers = vec![("content-type", "application/json".to_string())];
    match (status, error) {
        (503, _) => headers.push(("retry-after", retry_after_s.to_string())),
        (_, Some(error)) => headers.push((
            "www-authenticate",
            format!("{challenge}, error=\"{error}\""),
        )),
        (_, None) => headers.push(("www-authenticate", challenge.to_string())),
    }
    LocalReply {
        status,
        headers,
        body: jsonrpc_error(UNAUTHORIZED_CODE, message, request_id),
    }
}

/// A JSON-RPC 2.0 error with `"id": null` (the request was not read). The request id, when it is
/// a safe token, lets an operator join the client's error with the proxy's log line.
fn jsonrpc_error(code: i32, message: &str, request_id: Option<&str>) -> String {
    let data = match request_id.filter(|id| is_safe_request_id(id)) {
        Some(id) => format!(",\"data\":{{\"request_id\":\"{id}\"}}"),
        None => String::new(),
    };
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{{\"code\":{code},\"message\":\"{message}\"{data}}}}}"
    )
}

/// Request ids are echoed and logged only when they cannot break out of a JSON string or a log
/// field, carry little, and are not one of our tokens (clients choose `x-request-id`).
pub fn is_safe_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !crate::auth::smuggled::holds_token(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: &str = "Bearer realm=\"mcp\"";

    fn header<'a>(reply: &'a LocalReply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_credential_outside_authorization_is_an_invalid_request_that_says_where() {
        let mut messages = Vec::new();
        for reason in [
            DenyReason::TokenInUrl,
            DenyReason::TokenInCookie,
            DenyReason::TokenInHeader,
        ] {
            let reply = deny(reason, CHALLENGE, 1, None);
            assert_eq!(reply.status, 400);
            assert_eq!(
                header(&reply, "www-authenticate"),
                Some("Bearer realm=\"mcp\", error=\"invalid_request\"")
            );
            messages.push(reply.body);
        }
        messages.dedup();
        assert_eq!(messages.len(), 3, "each class has its own message");
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        let missing = deny(DenyReason::Missing, CHALLENGE, 1, None);
        assert_eq!(missing.status, 401);
        assert_eq!(header(&missing, "www-authenticate"), Some(CHALLENGE));

        let malformed = deny(DenyReason::Malformed, CHALLENGE, 1, None);
        assert_eq!(malformed.status, 400);
        assert_eq!(
            header(&malformed, "www-authenticate"),
            Some("Bearer realm=\"mcp\", error=\"invalid_request\"")
        );

        let not_loaded = deny(DenyReason::KeySetNotLoaded, CHALLENGE, 2, None);
        assert_eq!(not_loaded.status, 503);
        assert_eq!(header(&not_loaded, "retry-after"), Some("2"));
    }

    #[test]
    fn every_invalid_key_looks_the_same_to_the_client() {
        let replies: Vec<_> = [
            DenyReason::UnknownKey,
            DenyReason::BadSecret,
            DenyReason::Revoked,
            DenyReason::Expired,
            DenyReason::WrongOrg,
        ]
        .into_iter()
        .map(|r| deny(r, CHALLENGE, 1, Some("req-1")))
        .collect();
        for reply in &replies {
            assert_eq!(reply, &replies[0]);
        }
        assert_eq!(replies[0].status, 401);
        assert_eq!(
            header(&replies[0], "www-authenticate"),
            Some("Bearer realm=\"mcp\", error=\"invalid_token\"")
        );
    }

    #[test]
    fn bodies_are_json_rpc_errors_with_null_id() {
        for reason in DenyReason::ALL {
            let reply = deny(reason, CHALLENGE, 1, Some("abc-123"));
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["jsonrpc"], "2.0");
            assert!(body["id"].is_null());
            assert_eq!(body["error"]["code"], UNAUTHORIZED_CODE);
            assert!(body["error"]["message"].as_str().unwrap().len() > 10);
            assert_eq!(body["error"]["data"]["request_id"], "abc-123");
            assert_eq!(header(&reply, "content-type"), Some("application/json"));
        }
    }

    #[test]
    fn unsafe_request_ids_are_not_echoed() {
        for id in ["a\"}", "a b", "", &"a".repeat(65), "é"] {
            let reply = deny(DenyReason::Missing, CHALLENGE, 1, Some(id));
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert!(body["error"].get("data").is_none(), "{id:?}");
        }
    }
}
