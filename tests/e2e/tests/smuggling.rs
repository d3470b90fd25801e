//! Credentials only in `Authorization`, through the real Envoy: a token in any other header, a
//! cookie, the URL or a trailer is refused before anything is forwarded; nothing Envoy logs holds
//! one; identity headers cannot be spoofed in any spelling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use mcp_guard_e2e::*;

const INVALID_REQUEST: &str = "Bearer realm=\"mcp\", error=\"invalid_request\"";

/// Every byte as `%XX`.
fn percent_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Standard base64 with padding (the form HTTP Basic uses).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut acc = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((acc >> (18 - 6 * i)) & 63) as usize] as char);
        }
        out.push_str(&"=".repeat(3 - chunk.len()));
    }
    out
}

/// `s` with a space every four characters (base64 as MIME and lenient decoders accept it).
fn spaced(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let groups: Vec<String> = chars.chunks(4).map(|c| c.iter().collect()).collect();
    groups.join(" ")
}

/// The secret part of a token: what must never be seen anywhere, in whatever form was sent.
fn secret_of(token: &str) -> &str {
    token.rsplit_once('_').unwrap().1
}

/// Asserts that no line Envoy printed (access log, debug log, everything) holds any of `forms`.
fn assert_logs_hold_none(envoy: &Envoy, forms: &[String]) {
    let log = envoy.process.log_text();
    for line in log.lines() {
        for form in forms {
            assert!(
                !line.contains(form.as_str()),
                "Envoy's output holds a credential ({form:.12}…): {line}"
            );
        }
    }
}

/// The first access-log entry that `matches`, once it has been flushed.
fn access_log_line(envoy: &Envoy, matches: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    wait_until("the access log line", Duration::from_secs(5), || {
        found = envoy
            .process
            .log_text()
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|entry| matches(entry));
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn a_token_in_any_header_but_authorization_is_refused_and_never_forwarded() {
    let stack = Stack::start("smuggle-headers");
    let key = stack.guardctl.create_key("demo", "member", None);
    let other = stack.guardctl.create_key("demo", "viewer", None);
    stack.wait_until_allowed(&key.token);
    stack.wait_until_allowed(&other.token);
    let before = stack.upstream.request_count();

    let basic = format!(
        "Basic {}",
        base64(format!("agent:{}", key.token).as_bytes())
    );
    let underscores_encoded = key.token.replace('_', "%5F");
    let cases: Vec<(&str, String, &str)> = vec![
        ("x-api-key", key.token.clone(), "token_in_header"),
        ("api-key", other.token.clone(), "token_in_header"),
        (
            "x-upstream-token",
            format!("Bearer {}", other.token),
            "token_in_header",
        ),
        (
            "proxy-authorization",
            format!("Bearer {}", key.token),
            "token_in_header",
        ),
        ("proxy-authorization", basic.clone(), "token_in_header"),
        (
            "x-forwarded-credential",
            percent_all(&key.token),
            "token_in_header",
        ),
        ("x-request-id", key.token.clone(), "token_in_header"),
        (
            "cookie",
            format!("theme=dark; mcp={underscores_encoded}"),
            "token_in_cookie",
        ),
        (
            "cookie",
            format!("k={}", key.token.replace('_', "%255F")),
            "token_in_cookie",
        ),
        // What lenient decoders read: base64 with spaces, Python's quoted-cookie escapes.
        (
            "proxy-authorization",
            format!(
                "Basic {}",
                spaced(&base64(format!("agent:{}", key.token).as_bytes()))
            ),
            "token_in_header",
        ),
        (
            "cookie",
            format!("k=\"{}\"", key.token.replace('_', "\\137")),
            "token_in_cookie",
        ),
    ];
    for (i, (name, value, reason)) in cases.iter().enumerate() {
        let metric = format!("mcp_guard.requests.denied.{reason}");
        let denied_before = stack.envoy.stat(&metric);
        // A POST the filter would hold for its body, and a GET it would stream: both refused.
        for request in [
            Request::post_json("/api/mcp", INITIALIZE),
            Request::get("/api/mcp").header("accept", "text/event-stream"),
        ] {
            let response = request
                .bearer(&key.token)
                .header(name, value)
                .header("x-e2e-case", &i.to_string())
                .send(stack.envoy.port);
            assert_eq!(response.status, 400, "{name}: {response:?}");
            assert_eq!(response.header("www-authenticate"), Some(INVALID_REQUEST));
            assert!(
                response.body.contains("only in the Authorization header"),
                "{response:?}"
            );
            let everything = format!("{response:?}");
            assert!(
                !everything.contains(secret_of(&key.token))
                    && !everything.contains(secret_of(&other.token))
                    && !everything.contains(value.as_str()),
                "the reply echoes the credential: {everything}"
            );
        }
        assert_eq!(stack.envoy.stat(&metric), denied_before + 2, "{name}");
    }
    // A token as a header *name* (Envoy refuses it already for its underscores; the filter
    // would too, see request.rs).
    let response = Request::post_json("/api/mcp", INITIALIZE)
        .bearer(&key.token)
        .header(&other.token, "1")
        .send(stack.envoy.port);
    assert_eq!(response.status, 400, "{response:?}");

    assert_eq!(
        stack.upstream.request_count(),
        before,
        "a request carrying a token outside Authorization reached the upstream"
    );
    // The same key alone, and harmless look-alikes, still pass.
    let clean = Request::post_json("/api/mcp", INITIALIZE)
        .bearer(&key.token)
        .header("cookie", "amt_session=short; theme=dark")
        .header("user-agent", "amt_client/1.0")
        .header("x-request-id", "e2e-clean")
        .send(stack.envoy.port);
    assert_eq!(clean.status, 200, "{clean:?}");
    assert_eq!(stack.upstream.request_count(), before + 1);

    let mut forms: Vec<String> = cases.iter().map(|(_, v, _)| v.clone()).collect();
    forms.extend([
        secret_of(&key.token).to_string(),
        secret_of(&other.token).to_string(),
        base64(format!("agent:{}", key.token).as_bytes()),
    ]);
    // Wait for the last refused request's access-log line, then check every line.
    access_log_line(&stack.envoy, |e| e["request_id"] == "e2e-clean");
    assert_logs_hold_none(&stack.envoy, &forms);
}

#[test]
fn what_envoy_logs_of_a_refused_request_is_redacted() {
    let stack = Stack::start("smuggle-logs");
    let key = stack.guardctl.create_key("demo", "member", None);
    stack.wait_until_allowed(&key.token);
    let encoded = key.token.replace('_', "%5F");

    // A token in a path segment: the query-less path format would still log it.
    let in_path = Request::get(&format!("/api/mcp/{}", key.token))
        .bearer(&key.token)
        .header("x-request-id", "e2e-token-in-path")
        .send(stack.envoy.port);
    assert_eq!(in_path.status, 400, "{in_path:?}");
    let entry = access_log_line(&stack.envoy, |e| e["request_id"] == "e2e-token-in-path");
    assert_eq!(entry["path"], "/api/mcp/[redacted]");
    assert_eq!(entry["decision"], "deny");
    assert_eq!(entry["reason"], "token_in_url");

    // Percent-encoded in a segment.
    let encoded_path = Request::get(&format!("/api/mcp/x/{encoded}/y"))
        .bearer(&key.token)
        .header("x-request-id", "e2e-encoded-path")
        .send(stack.envoy.port);
    assert_eq!(encoded_path.status, 400);
    let entry = access_log_line(&stack.envoy, |e| e["request_id"] == "e2e-encoded-path");
    assert_eq!(entry["path"], "/api/mcp/x/[redacted]/y");

    // A token as the request id: the id is logged, and returned, redacted.
    let as_id = Request::post_json("/api/mcp?e2e=token-as-id", INITIALIZE)
        .bearer(&key.token)
        .header("x-request-id", &key.token)
        .send(stack.envoy.port);
    assert_eq!(as_id.status, 400, "{as_id:?}");
    assert_ne!(as_id.header("x-request-id"), Some(key.token.as_str()));
    let entry = access_log_line(&stack.envoy, |e| {
        e["reason"] == "token_in_header" && e["method"] == "POST"
    });
    assert_eq!(entry["request_id"], "[redacted]");

    assert_logs_hold_none(
        &stack.envoy,
        &[
            key.token.clone(),
            encoded,
            secret_of(&key.token).to_string(),
        ],
    );
}

#[test]
fn underscore_spellings_of_identity_headers_never_reach_the_upstream() {
    let stack = Stack::start("smuggle-underscores");
    let key = stack.guardctl.create_key("demo", "member", None);
    stack.wait_until_allowed(&key.token);
    let before = stack.upstream.request_count();
    // The shipped config: Envoy itself refuses underscore names before any filter.
    let refused = Request::post_json("/api/mcp", INITIALIZE)
        .bearer(&key.token)
        .header("x_amt_role", "admin")
        .send(stack.envoy.port);
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(stack.upstream.request_count(), before);
    // The HTTP/1 codec counts it (`http1.requests_rejected_with_underscores_in_headers`).
    let stats = Request::get("/stats?filter=requests_rejected_with_underscores_in_headers")
        .send(stack.envoy.admin_port)
        .body;
    assert!(
        stats.lines().any(|l| l.ends_with(": 1")),
        "no underscore rejection counted: {stats}"
    );

    // A mesh that allows them (Istio's default without the shipped patch): the filter removes
    // every spelling that a CGI-style server would read as an identity header.
    let dir = scratch_dir("smuggle-underscores-allowed");
    let options = EnvoyOptions::new(stack.upstream.port, stack.guardctl.port);
    let yaml = Envoy::render(&options, 0, 0).replace(
        "headers_with_underscores_action: REJECT_REQUEST",
        "headers_with_underscores_action: ALLOW",
    );
    assert!(yaml.contains("headers_with_underscores_action: ALLOW"));
    let lenient = Envoy::start_config(&dir, &yaml, 1, None, "debug");
    lenient.wait_for_keyset();
    wait_until(
        "the key on the lenient proxy",
        Duration::from_secs(5),
        || {
            Request::get("/not-mcp")
                .bearer(&key.token)
                .send(lenient.port)
                .status
                == 404
        },
    );
    let response = Request::post_json("/api/mcp", INITIALIZE)
        .bearer(&key.token)
        .header("x_amt_role", "admin")
        .header("X_AMT_ORG", "root")
        .header("x-amt_key_id", "forged")
        .header("x_custom_header", "kept")
        .send(lenient.port);
    assert_eq!(response.status, 200, "{response:?}");
    let seen = stack.upstream.last_request();
    let headers = seen["headers"].as_object().unwrap();
    assert_eq!(headers["x-amt-role"], "member");
    assert_eq!(headers["x-amt-org"], "demo");
    assert_eq!(headers["x-amt-key-id"], key.key_id.as_str());
    for (name, value) in headers {
        let normalised = name.to_ascii_lowercase().replace('_', "-");
        if normalised.starts_with("x-amt-") {
            assert_eq!(
                name, &normalised,
                "a spoofed spelling reached the upstream: {name}"
            );
        }
        assert!(
            value != "admin" && value != "root" && value != "forged",
            "{name}: {value}"
        );
    }
    assert_eq!(
        headers["x_custom_header"], "kept",
        "other underscore headers pass"
    );
    assert_eq!(lenient.stat("mcp_guard.requests.identity_spoofed"), 1);
    // Here a header *name* holding a token reaches the filter, which refuses it itself.
    let other = stack.guardctl.create_key("demo", "viewer", None);
    let before = stack.upstream.request_count();
    let named = Request::post_json("/api/mcp", INITIALIZE)
        .bearer(&key.token)
        .header(&other.token, "1")
        .send(lenient.port);
    assert_eq!(named.status, 400, "{named:?}");
    assert_eq!(lenient.stat("mcp_guard.requests.denied.token_in_header"), 1);
    assert_eq!(stack.upstream.request_count(), before);
}

#[test]
fn a_token_in_a_trailer_is_refused_before_the_body_is_forwarded() {
    let stack = Stack::start("smuggle-trailers");
    let key = stack.guardctl.create_key("demo", "member", None);
    stack.wait_until_allowed(&key.token);
    let body = stack.dir.join("initialize.json");
    std::fs::write(&body, INITIALIZE).unwrap();
    let before = stack.upstream.request_count();
    let authorization = format!("authorization: Bearer {}", key.token);
    let trailer = format!("x-api-key: {}", key.token);
    let printed = nghttp_post(stack.envoy.port, &body, &[authorization], &trailer);
    assert!(printed.contains(":status: 400"), "{printed}");
    assert_eq!(stack.upstream.request_count(), before);
    assert_eq!(
        stack
            .envoy
            .stat("mcp_guard.requests.denied.token_in_header"),
        1
    );
}

/// Header values need not be UTF-8 (RFC 9110 obs-text, and Envoy passes them on): such a request
/// is judged like any other, and the VM does not trap on it.
#[test]
fn a_header_value_that_is_not_utf8_is_judged_not_fatal() {
    let stack = Stack::start("smuggle-non-utf8");
    let key = stack.guardctl.create_key("demo", "member", None);
    stack.wait_until_allowed(&key.token);
    let send = |extra: &[u8]| -> String {
        let mut head = format!(
            "GET /not-mcp HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\n",
            key.token
        )
        .into_bytes();
        head.extend_from_slice(extra);
        head.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
        let mut stream = OpenStream::write_raw(stack.envoy.port, &head);
        stream.read_head();
        stream.head
    };
    for _ in 0..4 {
        // More requests than workers: a trap would leave a worker answering 5xx.
        let plain = send(b"user-agent: caf\xe9 \xff\xfe");
        assert!(plain.starts_with("HTTP/1.1 404"), "{plain}");
    }
    let mut with_token = b"x-api-key: \xe9".to_vec();
    with_token.extend_from_slice(key.token.as_bytes());
    let refused = send(&with_token);
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    let after = Request::get("/not-mcp")
        .bearer(&key.token)
        .send(stack.envoy.port);
    assert_eq!(after.status, 404, "the filter still works: {after:?}");
}
