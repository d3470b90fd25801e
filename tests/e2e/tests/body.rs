//! Body inspection through the real Envoy 1.40 with the release module: a real MCP client (rmcp)
//! and server, secrets in tool arguments blocked in the body phase before anything reaches the
//! upstream, and the ways a body can arrive (chunked, HTTP/2 with trailers, over the limit).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use mcp_guard_e2e::*;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;

const AMT_TOKEN_VALUE: &str = "amt_zz9x9a0b1c2d_Qk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";

fn tools_call(id: u32, arguments: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{arguments}}}}}"#
    )
}

/// A stack with a key that has synced, and the key.
fn stack_with_key(test: &str, plugin_config: Option<&str>) -> (Stack, IssuedKey) {
    let stack = Stack::start_with(test, |options| {
        options.plugin_config = plugin_config.map(str::to_string);
    });
    let key = stack.live_key("member");
    (stack, key)
}

fn assert_blocked(response: &Response, status: u16, code: i64, rule: &str) -> Value {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["data"]["rule"], rule, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_mcp_client_works_through_the_filter_and_gets_a_precise_error_for_a_secret() {
    let (stack, key) = stack_with_key("rmcp-client", None);
    let url = format!("http://127.0.0.1:{}/api/mcp", stack.envoy.port);
    let config = StreamableHttpClientTransportConfig::with_uri(url)
        .auth_header(key.token.clone())
        .custom_headers(HashMap::new());
    let client = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("initialize through Envoy");

    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "echo"));
    let args = |v: Value| serde_json::from_value(v).unwrap();
    let echo = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(serde_json::json!({
                "text": "max_tokens and page_token are fine", "max_tokens": 5, "page_token": "abc"
            }))),
        )
        .await
        .expect("clean tools/call");
    assert_eq!(
        echo.content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.as_str()),
        Some("max_tokens and page_token are fine")
    );
    let whoami = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .expect("whoami");
    let identity = whoami.structured_content.unwrap();
    assert_eq!(identity["key_id"], key.key_id.as_str());
    assert_eq!(identity["authorization_present"], false);

    let seen_before = stack.upstream.request_count();
    let blocked = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(serde_json::json!({
                "text": "hi", "config": {"apiKey": "sk-live-do-not-forward"}
            }))),
        )
        .await;
    let error = format!("{:?}", blocked.expect_err("the call must be refused"));
    assert!(
        error.contains("-32602") || error.contains("InvalidParams"),
        "{error}"
    );
    assert!(
        error.contains("arguments.config.apiKey"),
        "the path is named: {error}"
    );
    assert!(
        !error.contains("sk-live-do-not-forward"),
        "the value is echoed: {error}"
    );
    assert_eq!(
        stack.upstream.request_count(),
        seen_before,
        "the upstream saw the blocked call"
    );
    assert_eq!(stack.envoy.stat("mcp_guard.body.rejected.api_key"), 1);
    let log = stack.envoy.process.log_text();
    assert!(!log.contains("sk-live-do-not-forward"));
    assert!(log.contains("rule=api_key"), "debug line names the rule");
    client.cancel().await.unwrap();
}

#[test]
fn secrets_in_any_shape_are_blocked_in_the_body_phase_and_never_reach_the_upstream() {
    let (stack, key) = stack_with_key("body-shapes", None);
    let before = stack.upstream.request_count();
    let cases = [
        (tools_call(11, r#"{"password":"hunter2"}"#), "password", 11),
        (
            tools_call(12, r#"{"items":[{"q":1},{"client_secret":"x"}]}"#),
            "client_secret",
            12,
        ),
        (tools_call(13, r#"{"api\u005fkey":"x"}"#), "api_key", 13),
        (
            tools_call(14, &format!(r#"{{"config":"{AMT_TOKEN_VALUE}"}}"#)),
            "amt_token_value",
            14,
        ),
        (
            tools_call(15, r#"{"payload":"{\"sessionToken\":\"x\"}"}"#),
            "session_token",
            15,
        ),
        (
            format!(
                "[{},{}]",
                tools_call(16, r#"{"text":"ok"}"#),
                tools_call(17, r#"{"cookie":"x"}"#)
            ),
            "cookie",
            0,
        ),
    ];
    for (body, rule, id) in &cases {
        let response = Request::post_json("/api/mcp", body)
            .bearer(&key.token)
            .send(stack.envoy.port);
        let error = assert_blocked(&response, 400, -32602, rule);
        if *id != 0 {
            assert_eq!(error["id"], *id, "the request id is echoed");
        }
        assert!(error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization"));
        assert!(!response.body.contains("hunter2") && !response.body.contains(AMT_TOKEN_VALUE));
    }
    let parse_errors = [
        (tools_call(21, r#"{"text":"a","text":"b"}"#), -32700),
        (r#"{"jsonrpc":"2.0","id":22,"method":"tools/call","params":{"name":"echo","arguments":{}},"params":{}}"#.to_string(), -32700),
        ("\u{feff}{}".to_string(), -32700),
        (format!("{} trailing", tools_call(23, "{}")), -32700),
        (r#"{"jsonrpc":"2.0","id":24,"method":"tools/call","Params":{}}"#.to_string(), -32600),
    ];
    for (body, code) in &parse_errors {
        let response = Request::post_json("/api/mcp", body)
            .bearer(&key.token)
            .send(stack.envoy.port);
        assert_eq!(response.status, 400, "{body}: {response:?}");
        assert_eq!(response.json()["error"]["code"], *code, "{body}");
    }
    assert_eq!(
        stack.upstream.request_count(),
        before,
        "a blocked request reached the upstream"
    );
    assert!(!stack.envoy.process.log_text().contains("hunter2"));
}

#[test]
fn content_type_encoding_and_size_are_enforced() {
    let (stack, key) = stack_with_key(
        "body-limits",
        Some(
            r#"{"org": "demo", "keyset_cluster": "guardctl", "inspect_path_prefixes": ["/api/mcp"], "max_body_bytes": 2048}"#,
        ),
    );
    let before = stack.upstream.request_count();
    let clean = tools_call(1, r#"{"text":"hello"}"#);
    let mut text_plain = Request::post_json("/api/mcp", &clean).bearer(&key.token);
    text_plain.headers.retain(|(n, _)| n != "content-type");
    let text_plain = text_plain
        .header("content-type", "text/plain")
        .send(stack.envoy.port);
    assert_blocked(&text_plain, 415, -32600, "unsupported_media_type");

    let gzip = Request::post_json("/api/mcp", &clean)
        .bearer(&key.token)
        .header("content-encoding", "gzip")
        .send(stack.envoy.port);
    assert_blocked(&gzip, 415, -32600, "content_encoding");

    let big = tools_call(2, &format!(r#"{{"text":"{}"}}"#, "a".repeat(4096)));
    let declared = Request::post_json("/api/mcp", &big)
        .bearer(&key.token)
        .send(stack.envoy.port);
    assert_blocked(&declared, 413, -32600, "body_too_large");

    // Chunked: no content-length, so the limit is hit while buffering.
    let chunked = send_chunked(stack.envoy.port, &key.token, &big, 512);
    assert_blocked(&chunked, 413, -32600, "body_too_large");
    // A chunked body under the limit, with a secret in its last chunk, is judged whole.
    let secret = tools_call(
        3,
        &format!(r#"{{"text":"{}","token":"x"}}"#, "b".repeat(600)),
    );
    assert_blocked(
        &send_chunked(stack.envoy.port, &key.token, &secret, 7),
        400,
        -32602,
        "token",
    );
    assert_eq!(stack.upstream.request_count(), before);

    // A clean chunked POST passes, and the upstream gets exactly the bytes sent.
    let clean_chunked = send_chunked(stack.envoy.port, &key.token, INITIALIZE, 5);
    assert_eq!(clean_chunked.status, 200, "{clean_chunked:?}");
    assert!(mcp_message(&clean_chunked)["result"]["serverInfo"].is_object());
    assert_eq!(stack.upstream.request_count(), before + 1);
    assert_eq!(
        stack.upstream.last_request()["body"].as_str(),
        Some(INITIALIZE),
        "the chunked body was changed on the way"
    );
}

/// A POST with `transfer-encoding: chunked`, split into `chunk`-byte chunks.
fn send_chunked(port: u16, token: &str, body: &str, chunk: usize) -> Response {
    let mut encoded = String::new();
    for piece in body.as_bytes().chunks(chunk) {
        encoded.push_str(&format!(
            "{:x}\r\n{}\r\n",
            piece.len(),
            String::from_utf8_lossy(piece)
        ));
    }
    encoded.push_str("0\r\n\r\n");
    let mut request = Request::post_json("/api/mcp", "").bearer(token);
    request
        .headers
        .push(("transfer-encoding".into(), "chunked".into()));
    request.raw_body = Some(encoded.into_bytes());
    request.send(port)
}

#[test]
fn http2_with_trailers_is_judged_at_the_trailers() {
    let (stack, key) = stack_with_key("h2-trailers", None);
    let dir = scratch_dir("h2-bodies");
    let nghttp = |name: &str, body: &str| {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let authorization = format!("authorization: Bearer {}", key.token);
        nghttp_post(stack.envoy.port, &path, &[authorization], "x-checksum: 1")
    };
    let before = stack.upstream.request_count();
    let blocked = nghttp("secret.json", &tools_call(31, r#"{"refresh_token":"x"}"#));
    assert!(blocked.contains(":status: 400"), "{blocked}");
    assert!(blocked.contains("\"rule\":\"refresh_token\""), "{blocked}");
    assert_eq!(
        stack.upstream.request_count(),
        before,
        "the blocked h2 request reached the upstream"
    );

    let allowed = nghttp("clean.json", INITIALIZE);
    assert!(allowed.contains(":status: 200"), "{allowed}");
    assert!(allowed.contains("serverInfo"), "{allowed}");
    assert_eq!(stack.upstream.request_count(), before + 1);
    assert_eq!(
        stack.upstream.last_request()["body"].as_str(),
        Some(INITIALIZE),
        "the HTTP/2 body was changed on the way"
    );
}

#[test]
fn audit_mode_forwards_but_counts_and_logs_what_it_would_block() {
    let (stack, key) = stack_with_key(
        "audit",
        Some(
            r#"{"org": "demo", "keyset_cluster": "guardctl", "inspect_path_prefixes": ["/api/mcp"], "mode": "audit"}"#,
        ),
    );
    let before = stack.upstream.request_count();
    let response = Request::post_json("/api/mcp", &tools_call(41, r#"{"password":"hunter2"}"#))
        .bearer(&key.token)
        .send(stack.envoy.port);
    // The upstream answers (400: this raw call has no MCP session); the filter did not refuse it.
    assert!(
        !response.body.contains("\"rule\""),
        "audit mode does not block: {response:?}"
    );
    assert_eq!(
        stack.upstream.request_count(),
        before + 1,
        "audit mode forwards"
    );
    assert_eq!(stack.envoy.stat("mcp_guard.body.audit.password"), 1);
    assert_eq!(stack.envoy.rule_stat("mcp_guard.body.rejected.password"), 0);
    let log = stack.envoy.process.log_text();
    assert!(
        log.contains("audit: would reject rule=password"),
        "audit line at info level"
    );
    assert!(!log.contains("hunter2"));
}

#[test]
fn a_key_revoked_while_its_body_uploads_gets_401_and_nothing_reaches_the_upstream() {
    let (stack, key) = stack_with_key("revoke-mid-upload", None);
    let body = tools_call(51, &format!(r#"{{"text":"{}"}}"#, "c".repeat(4000)));
    revoke_mid_upload(&stack, &key, &body);
}

#[test]
fn in_audit_mode_too_a_key_revoked_mid_upload_gets_401() {
    // Audit mode forwards what it would block: the key still gets its last check.
    let (stack, key) = stack_with_key(
        "revoke-mid-upload-audit",
        Some(
            r#"{"org": "demo", "keyset_cluster": "guardctl", "inspect_path_prefixes": ["/api/mcp"], "mode": "audit"}"#,
        ),
    );
    let body = tools_call(
        52,
        &format!(r#"{{"text":"{}","password":"x"}}"#, "c".repeat(4000)),
    );
    revoke_mid_upload(&stack, &key, &body);
}

/// Sends half of `body`, revokes the key, and expects the 401 with nothing forwarded.
fn revoke_mid_upload(stack: &Stack, key: &IssuedKey, body: &str) {
    let (first, rest) = body.split_at(body.len() / 2);
    // Counted before a byte is written: a proxy that forwarded the headers early must show.
    let before = stack.upstream.request_count();
    let authorization = format!("Bearer {}", key.token);
    let length = body.len().to_string();
    let mut request = raw_request(
        "POST",
        "/api/mcp",
        &[
            ("authorization", &authorization),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("content-length", &length),
            ("connection", "close"),
        ],
        "",
    );
    request.push_str(first);
    let mut stream = OpenStream::write_raw(stack.envoy.port, request.as_bytes());

    stack.guardctl.revoke(&key.key_id);
    // The 401 comes while the upload is stalled: the proxy does not wait for the rest of a
    // request it will refuse.
    stream.read_head();
    // Whatever the client still sends is discarded.
    let _ = stream.write_more(rest.as_bytes());
    stream.read_to_end();
    assert!(stream.head.starts_with("HTTP/1.1 401"), "{}", stream.head);
    assert!(stream.head.contains("invalid_token"), "{}", stream.head);
    assert_eq!(
        stack.upstream.request_count(),
        before,
        "the upstream saw the request"
    );
    assert!(stack.envoy.stat("mcp_guard.requests.denied.revoked") >= 1);
}

#[test]
fn benign_bodies_reach_the_upstream_byte_for_byte() {
    let (stack, key) = stack_with_key("byte-for-byte", None);
    // Odd but valid: whitespace, escapes, a surrogate pair, look-alike names that are allowed.
    let body = "{ \"jsonrpc\" : \"2.0\",\n\t\"id\" : 1 , \"method\":\"initialize\", \"params\":{\"protocolVersion\":\"2025-06-18\",\
                \"capabilities\":{ },\"clientInfo\":{\"name\":\"caf\\u00e9 \\ud83d\\ude00 \\\"quoted\\\"\",\"version\":\"0\"},\
                \"_meta\":{\"progressToken\":\"p-1\"}}   }\n";
    let response = Request::post_json("/api/mcp", body)
        .bearer(&key.token)
        .send(stack.envoy.port);
    assert_eq!(response.status, 200, "{response:?}");
    let seen = stack.upstream.last_request();
    assert_eq!(
        seen["body"].as_str(),
        Some(body),
        "the body was changed on the way"
    );
    assert_eq!(seen["headers"]["content-type"], "application/json");
}

#[test]
fn mcp_headers_must_agree_with_the_body() {
    let (stack, key) = stack_with_key("mcp-headers", None);
    let before = stack.upstream.request_count();
    let clean = tools_call(61, r#"{"text":"hi"}"#);

    let secret_param = Request::post_json("/api/mcp", &clean)
        .bearer(&key.token)
        .header("Mcp-Param-Api-Key", "anything")
        .send(stack.envoy.port);
    assert_blocked(&secret_param, 400, -32602, "api_key");

    let mismatch = Request::post_json("/api/mcp", &clean)
        .bearer(&key.token)
        .header("Mcp-Method", "tools/list")
        .send(stack.envoy.port);
    assert_blocked(&mismatch, 400, -32020, "header_mismatch");
    assert_eq!(
        stack.upstream.request_count(),
        before,
        "a refused request reached the upstream"
    );

    let agreeing = Request::post_json("/api/mcp", &clean)
        .bearer(&key.token)
        .header("Mcp-Method", "tools/call")
        .header("Mcp-Name", "echo")
        .send(stack.envoy.port);
    assert!(!agreeing.body.contains("\"rule\""), "{agreeing:?}");
    assert_eq!(stack.upstream.request_count(), before + 1);
}

#[test]
fn delete_passes_authenticated_without_inspection() {
    let (stack, key) = stack_with_key("delete", None);
    let before = stack.upstream.request_count();
    // DELETE ends a session: authenticated, never body-inspected, forwarded.
    let mut delete = Request::get("/api/mcp").bearer(&key.token);
    delete.method = "DELETE".into();
    let deleted = delete.send(stack.envoy.port);
    assert!(!deleted.body.contains("\"rule\""), "{deleted:?}");
    assert_eq!(stack.upstream.request_count(), before + 1);
    assert_eq!(stack.upstream.last_request()["method"], "DELETE");
    let mut anonymous = Request::get("/api/mcp");
    anonymous.method = "DELETE".into();
    assert_eq!(anonymous.send(stack.envoy.port).status, 401);
    assert_eq!(stack.upstream.request_count(), before + 1);
}

#[test]
fn a_body_on_a_method_other_than_post_is_refused() {
    let (stack, key) = stack_with_key("body-methods", None);
    let before = stack.upstream.request_count();
    // Only POST carries MCP messages: a body on another method is refused, never forwarded.
    let secret_call = tools_call(60, r#"{"password":"hunter2"}"#);
    for method in ["PUT", "PATCH", "GET", "DELETE"] {
        let mut request = Request::post_json("/api/mcp", &secret_call).bearer(&key.token);
        request.method = method.into();
        let refused = request.send(stack.envoy.port);
        assert_blocked(&refused, 400, -32600, "body_not_allowed");
        assert!(!refused.body.contains("hunter2"));
    }
    assert_eq!(
        stack.upstream.request_count(),
        before,
        "a body on another method reached the upstream"
    );
}

/// MCP 2026-07-28: what the client writes outside `arguments` gets the same name rules; each such
/// request is refused in the body phase and the upstream sees none of it.
#[test]
fn client_data_outside_tool_arguments_is_inspected_too() {
    let (stack, key) = stack_with_key("client-data", None);
    let before = stack.upstream.request_count();
    let cases = [
        (
            r#"{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"echo","arguments":{"text":"deploy"},"inputResponses":{"confirm":{"action":"accept","content":{"password":"hunter2"}}},"requestState":"s1"}}"#,
            "password",
            "params.inputResponses.confirm.content.password",
        ),
        (
            r#"{"jsonrpc":"2.0","id":22,"method":"prompts/get","params":{"name":"p","arguments":{"api_key":"sk-1"}}}"#,
            "api_key",
            "params.arguments.api_key",
        ),
        (
            r#"{"jsonrpc":"2.0","id":23,"method":"tools/list","params":{"_meta":{"vendor":{"client_secret":"s"}}}}"#,
            "client_secret",
            "params._meta.vendor.client_secret",
        ),
        (
            r#"{"jsonrpc":"2.0","id":24,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"login"},"argument":{"name":"password","value":"hun"}}}"#,
            "password",
            "params.argument.value",
        ),
        (
            r#"{"jsonrpc":"2.0","id":25,"result":{"action":"accept","content":{"passphrase":"p"}}}"#,
            "passphrase",
            "result.content.passphrase",
        ),
    ];
    for (body, rule, path) in cases {
        let response = Request::post_json("/api/mcp", body)
            .bearer(&key.token)
            .send(stack.envoy.port);
        let answer = assert_blocked(&response, 400, -32602, rule);
        assert_eq!(answer["error"]["data"]["path"], path, "{answer}");
        for value in ["hunter2", "sk-1", "\"s\"", "hun", "\"p\""] {
            assert!(
                !response.body.contains(value),
                "the reply echoes a value: {answer}"
            );
        }
    }
    assert_eq!(
        stack.upstream.request_count(),
        before,
        "a refused request reached the upstream"
    );
    assert_eq!(stack.envoy.stat("mcp_guard.body.rejected.password"), 2);
    // Nothing Envoy printed holds a value (the debug lines name rules and paths only).
    wait_until("the debug lines", Duration::from_secs(5), || {
        stack
            .envoy
            .process
            .log_text()
            .matches("rule=passphrase")
            .count()
            == 1
    });
    let log = stack.envoy.process.log_text();
    for value in ["hunter2", "sk-1", "\"p\"}"] {
        assert!(!log.contains(value), "{value} reached Envoy's output");
    }
}

/// A live key sent inside a body (as a value, as an argument name, JSON in a string) is refused,
/// and neither the reply nor any line Envoy prints holds it.
#[test]
fn a_token_inside_a_blocked_body_never_reaches_a_reply_or_a_log() {
    let (stack, key) = stack_with_key("body-token-log", None);
    let leaked = stack.guardctl.create_key("demo", "admin", None);
    let secret = leaked.token.rsplit_once('_').unwrap().1.to_string();
    let before = stack.upstream.request_count();
    let bodies = [
        tools_call(61, &format!(r#"{{"config":"{}"}}"#, leaked.token)),
        tools_call(62, &format!(r#"{{"{}":"x"}}"#, leaked.token)),
        tools_call(
            63,
            &format!(r#"{{"payload":"{{\"k\":\"{}\"}}"}}"#, leaked.token),
        ),
        tools_call(
            64,
            &format!(r#"{{"text":"use Bearer {} please"}}"#, leaked.token),
        ),
    ];
    for body in &bodies {
        let response = Request::post_json("/api/mcp", body)
            .bearer(&key.token)
            .header("x-request-id", "e2e-body-token")
            .send(stack.envoy.port);
        assert_blocked(&response, 400, -32602, "amt_token_value");
        assert!(
            !response.body.contains(&secret),
            "the reply echoes it: {response:?}"
        );
    }
    assert_eq!(stack.upstream.request_count(), before);
    wait_until("the access log lines", Duration::from_secs(5), || {
        stack
            .envoy
            .process
            .log_text()
            .matches("\"request_id\":\"e2e-body-token\"")
            .count()
            == bodies.len()
    });
    let log = stack.envoy.process.log_text();
    assert!(
        log.contains("rule=amt_token_value"),
        "the debug line is there"
    );
    assert!(
        !log.contains(&secret),
        "a token from a body reached Envoy's output"
    );
}

/// Credential formats in values, each its own rule: refused in enforce mode, forwarded and
/// counted for a format set to audit, ignored when off.
#[test]
fn credential_formats_in_values_are_refused_audited_or_ignored_per_format() {
    let (stack, key) = stack_with_key(
        "value-formats",
        Some(
            r#"{"org": "demo", "keyset_cluster": "guardctl", "inspect_path_prefixes": ["/api/mcp"], "value_formats": {"aws_access_key_id": "audit", "npm_token": "off"}}"#,
        ),
    );
    let alnum = |n: usize, seed: usize| -> String {
        (0..n)
            .map(|i| {
                b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"[(i * 7 + seed) % 57]
                    as char
            })
            .collect()
    };
    let github = format!("gh{}_{}", "p", alnum(36, 1));
    let pem = format!("-----BEGIN RSA PRIVATE {}-----\\nMIIEowIBAAKCAQEA", "KEY");
    let aws = format!("AK{}{}", "IA", alnum(16, 3).to_uppercase());
    let npm = format!("np{}_{}", "m", alnum(36, 4));
    let before = stack.upstream.request_count();
    for (id, value, rule) in [(71, &github, "github_token"), (72, &pem, "private_key")] {
        let response = Request::post_json(
            "/api/mcp",
            &tools_call(id, &format!(r#"{{"text":"deploy with {value} please"}}"#)),
        )
        .bearer(&key.token)
        .send(stack.envoy.port);
        let answer = assert_blocked(&response, 400, -32602, rule);
        assert_eq!(answer["error"]["data"]["path"], "arguments.text");
        assert!(
            !response.body.contains(&value[..12]),
            "the value is echoed: {answer}"
        );
        assert_eq!(
            stack.envoy.stat(&format!("mcp_guard.body.rejected.{rule}")),
            1
        );
    }
    assert_eq!(
        stack.upstream.request_count(),
        before,
        "a refused body reached the upstream"
    );
    for (id, value) in [(73, &aws), (74, &npm)] {
        let response = Request::post_json(
            "/api/mcp",
            &tools_call(id, &format!(r#"{{"value":"{value}"}}"#)),
        )
        .bearer(&key.token)
        .send(stack.envoy.port);
        assert!(!response.body.contains("\"rule\""), "{response:?}");
    }
    assert_eq!(
        stack.upstream.request_count(),
        before + 2,
        "audit and off forward"
    );
    assert_eq!(
        stack.envoy.stat("mcp_guard.body.audit.aws_access_key_id"),
        1
    );
    assert_eq!(
        stack.envoy.rule_stat("mcp_guard.body.rejected.npm_token"),
        0
    );
    assert_eq!(stack.envoy.rule_stat("mcp_guard.body.audit.npm_token"), 0);
    let log = stack.envoy.process.log_text();
    assert!(
        log.contains("audit: value format rule=aws_access_key_id"),
        "the info line"
    );
    for value in [&github, &aws, &npm] {
        assert!(
            !log.contains(value.as_str()),
            "a credential reached Envoy's output"
        );
    }
}
