//! Tool policy through the real Envoy 1.40 with the release module, the real guardctl and the
//! demo MCP server, with a real MCP client (rmcp): a viewer key calls only its tools and gets
//! the JSON-RPC error (HTTP 403) for another while the server never sees the call, an admin key
//! of the same org calls everything, a policy change reaches the proxy within a second, audit
//! mode forwards and counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

use mcp_guard_e2e::*;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;

const POLICY: &str = "roles:
  viewer:
    tools: [echo, \"who*\"]
  admin:
    tools: [\"*\"]
";

fn call(id: u32, tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"a":1,"b":2}}}}}}"#
    )
}

/// Sets the org's policy through the CLI, as an operator does; it answers once the proxy
/// enforces it.
fn set_policy(stack: &Stack, source: &str) {
    let file = stack.dir.join("policy.yaml");
    fs::write(&file, source).unwrap();
    let answer = stack.guardctl.ok(&[
        "policy",
        "set",
        "--org",
        "demo",
        "--file",
        file.to_str().unwrap(),
        "--json",
    ]);
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let enforced = &answer["enforced"];
    assert_eq!(
        enforced["confirmed"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    assert_eq!(enforced["unconfirmed"], serde_json::json!([]), "{answer}");
}

/// A POST to the demo server's stateless endpoint (one JSON answer, no session).
fn post(stack: &Stack, token: &str, body: &str) -> Response {
    Request::post_json("/api/mcp-json", body)
        .bearer(token)
        .send(stack.envoy.port)
}

/// The stack, a viewer's key and an admin's key, both live at the proxy.
fn stack_with_users(test: &str) -> (Stack, IssuedKey, IssuedKey) {
    let stack = Stack::start(test);
    for (user, role) in [("vera", "viewer"), ("ada", "admin")] {
        stack
            .guardctl
            .ok(&["users", "add", user, "--org", "demo", "--role", role]);
    }
    let viewer = stack.guardctl.create_user_key("vera");
    let admin = stack.guardctl.create_user_key("ada");
    stack.wait_until_allowed(&viewer.token);
    stack.wait_until_allowed(&admin.token);
    (stack, viewer, admin)
}

/// [`stack_with_users`] once the proxy enforces [`POLICY`].
fn stack_with_policy(test: &str) -> (Stack, IssuedKey, IssuedKey) {
    let (stack, viewer, admin) = stack_with_users(test);
    set_policy(&stack, POLICY);
    wait_until(
        "the policy to reach the proxy",
        Duration::from_secs(5),
        || post(&stack, &viewer.token, &call(1, "add")).status == 403,
    );
    (stack, viewer, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_calls_only_its_tools_and_the_server_never_sees_the_others() {
    let (stack, viewer, admin) = stack_with_policy("policy-rmcp");

    let url = format!("http://127.0.0.1:{}/api/mcp", stack.envoy.port);
    let connect = |token: String| {
        let config = StreamableHttpClientTransportConfig::with_uri(url.clone())
            .auth_header(token)
            .custom_headers(HashMap::new());
        ClientConfig::default().serve(StreamableHttpClientTransport::from_config(config))
    };
    let client = connect(viewer.token.clone()).await.expect("initialize");
    let echo = client
        .call_tool(
            CallToolRequestParams::new("echo")
                .with_arguments(serde_json::from_value(serde_json::json!({"text": "hi"})).unwrap()),
        )
        .await
        .expect("echo is a viewer's tool");
    assert_eq!(
        echo.content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.as_str()),
        Some("hi")
    );
    let seen = stack.upstream.request_count();
    let refused =
        client
            .call_tool(CallToolRequestParams::new("add").with_arguments(
                serde_json::from_value(serde_json::json!({"a": 1, "b": 2})).unwrap(),
            ))
            .await;
    let error = format!("{:?}", refused.expect_err("add is not a viewer's tool"));
    // rmcp reads the RFC 6750 challenge: the scope is insufficient, not the key.
    assert!(error.contains("InsufficientScope"), "{error}");
    assert_eq!(
        stack.upstream.request_count(),
        seen,
        "the upstream saw the call"
    );
    client.cancel().await.unwrap();

    // The admin of the same org calls it.
    let client = connect(admin.token.clone()).await.expect("initialize");
    let added =
        client
            .call_tool(CallToolRequestParams::new("add").with_arguments(
                serde_json::from_value(serde_json::json!({"a": 1, "b": 2})).unwrap(),
            ))
            .await
            .expect("an admin may call add");
    assert!(added.is_error != Some(true), "{added:?}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_a_role_only_its_tools_in_json_and_sse() {
    let (stack, viewer, admin) = stack_with_policy("policy-list");
    let url = format!("http://127.0.0.1:{}/api/mcp", stack.envoy.port);
    let tools_of = |token: String| {
        let url = url.clone();
        async move {
            let config = StreamableHttpClientTransportConfig::with_uri(url)
                .auth_header(token)
                .custom_headers(HashMap::new());
            let client = ClientConfig::default()
                .serve(StreamableHttpClientTransport::from_config(config))
                .await
                .expect("initialize");
            let mut names: Vec<String> = client
                .list_all_tools()
                .await
                .expect("tools/list")
                .into_iter()
                .map(|tool| tool.name.to_string())
                .collect();
            names.sort();
            client.cancel().await.unwrap();
            names
        }
    };
    // rmcp over streamable HTTP: the answer is one SSE event.
    assert_eq!(tools_of(viewer.token.clone()).await, ["echo", "whoami"]);
    assert_eq!(
        tools_of(admin.token.clone()).await,
        ["add", "echo", "sleep", "whoami"]
    );

    // One JSON body: filtered, and its Content-Length is the new length.
    let list = r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#;
    let answer = post(&stack, &viewer.token, list);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let length: usize = answer.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, answer.body.len());
    let body = answer.json();
    assert_eq!(body["id"], 9);
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "whoami"]);
    let full = post(&stack, &admin.token, list).json();
    assert_eq!(full["result"]["tools"].as_array().unwrap().len(), 4);
}

#[test]
fn the_403_names_tool_and_role_and_the_access_log_has_method_tool_and_user() {
    let (stack, viewer, admin) = stack_with_policy("policy-403");
    let seen = stack.upstream.request_count();
    let response = Request::post_json("/api/mcp-json?e2e=forbid", &call(42, "add"))
        .bearer(&viewer.token)
        .send(stack.envoy.port);
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer realm=\"mcp\", error=\"insufficient_scope\"")
    );
    let body = response.json();
    assert_eq!(body["id"], 42);
    assert_eq!(body["error"]["code"], -32003);
    assert_eq!(body["error"]["data"]["rule"], "tool_not_allowed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`add`") && message.contains("`viewer`"),
        "{message}"
    );
    // A batch with one forbidden call is refused whole.
    let batch = format!("[{},{}]", call(1, "echo"), call(2, "add"));
    assert_eq!(post(&stack, &viewer.token, &batch).status, 403);
    assert_eq!(
        stack.upstream.request_count(),
        seen,
        "the upstream saw a refused call"
    );
    // Lifecycle and tools/list stay open to every role.
    assert_eq!(post(&stack, &viewer.token, INITIALIZE).status, 200);
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    assert_eq!(post(&stack, &viewer.token, list).status, 200);
    assert_eq!(post(&stack, &admin.token, &call(4, "add")).status, 200);

    let request_id = response.header("x-request-id").unwrap().to_string();
    let logged = |l: &&str| l.starts_with('{') && l.contains(request_id.as_str());
    wait_until("the access log line", Duration::from_secs(5), || {
        stack.envoy.process.log_text().lines().any(|l| logged(&l))
    });
    let log = stack.envoy.process.log_text();
    let entry: Value = serde_json::from_str(log.lines().find(logged).unwrap()).unwrap();
    assert_eq!(entry["decision"], "forbid");
    assert_eq!(entry["reason"], "tool_not_allowed");
    assert_eq!(entry["mcp_method"], "tools/call");
    assert_eq!(entry["tool"], "add");
    assert_eq!(entry["user"], "vera");
    assert_eq!(entry["role"], "viewer");
    assert!(stack.envoy.rule_stat("mcp_guard.policy.forbidden.viewer") >= 3);
    assert!(stack.envoy.rule_stat("mcp_guard.policy.allowed.admin") >= 1);
}

#[test]
fn a_policy_change_reaches_the_proxy_within_a_second_and_audit_mode_forwards() {
    let (stack, viewer, _admin) = stack_with_users("policy-change");
    assert_eq!(
        post(&stack, &viewer.token, &call(1, "add")).status,
        200,
        "no policy yet"
    );

    // Acknowledged by guardctl, then enforced at the proxy: how long between.
    set_policy(&stack, POLICY);
    let acknowledged = Instant::now();
    wait_until(
        "the policy to reach the proxy",
        Duration::from_secs(1),
        || post(&stack, &viewer.token, &call(2, "add")).status == 403,
    );
    eprintln!(
        "policy enforced {:?} after acknowledgement",
        acknowledged.elapsed()
    );

    // Audit mode: forwarded, counted, logged, recorded.
    set_policy(&stack, &format!("mode: audit\n{POLICY}"));
    wait_until(
        "audit mode to reach the proxy",
        Duration::from_secs(1),
        || post(&stack, &viewer.token, &call(3, "add")).status == 200,
    );
    let seen = stack.upstream.request_count();
    let response = post(&stack, &viewer.token, &call(4, "add"));
    assert_eq!(response.status, 200);
    assert_eq!(
        stack.upstream.request_count(),
        seen + 1,
        "audit mode forwards"
    );
    assert!(stack.envoy.rule_stat("mcp_guard.policy.audit.viewer") >= 2);

    // Removing the policy allows everything again.
    stack.guardctl.ok(&["policy", "remove", "--org", "demo"]);
    set_policy(&stack, "roles:\n  viewer:\n    tools: []\n");
    wait_until(
        "the lockdown to reach the proxy",
        Duration::from_secs(1),
        || post(&stack, &viewer.token, &call(5, "echo")).status == 403,
    );
    stack.guardctl.ok(&["policy", "remove", "--org", "demo"]);
    wait_until(
        "the removal to reach the proxy",
        Duration::from_secs(1),
        || post(&stack, &viewer.token, &call(6, "echo")).status == 200,
    );
}

/// An answer without a body (a notification's 202) is passed at once, not held.
#[test]
fn a_bodiless_answer_to_a_restricted_role_is_not_held() {
    let (stack, viewer, _admin) = stack_with_policy("policy-bodiless");
    let started = Instant::now();
    let notification = post(
        &stack,
        &viewer.token,
        r#"{"jsonrpc":"2.0","method":"tools/list"}"#,
    );
    assert!(notification.status < 300, "{notification:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "held {:?}",
        started.elapsed()
    );
}
