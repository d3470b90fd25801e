//! Per-key rate limits with Envoy's own `local_ratelimit` filter, as shipped in envoy/envoy.yaml
//! after mcp-guard: one bucket per `x-amt-key-id`, the header mcp-guard sets and a client cannot
//! spoof. Only the bucket size is changed for the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_guard_e2e::*;

const SHIPPED_BUCKET: &str = "max_tokens: 100, tokens_per_fill: 50, fill_interval: 1s";

/// A POST of `body` with `token`, and a header the client sets to spoof one mcp-guard owns.
fn send(stack: &Stack, token: &str, body: &str, spoofed: Option<(&str, &str)>) -> Response {
    let mut request = Request::post_json("/api/mcp-json", body).bearer(token);
    if let Some((name, value)) = spoofed {
        request = request.header(name, value);
    }
    request.send(stack.envoy.port)
}

fn post(stack: &Stack, token: &str, spoofed_key_id: Option<&str>) -> Response {
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    send(
        stack,
        token,
        ping,
        spoofed_key_id.map(|id| ("x-amt-key-id", id)),
    )
}

#[test]
fn one_key_over_its_limit_gets_429_while_another_key_still_passes() {
    let stack = Stack::start_with("ratelimit", |options| {
        options.substitutions.push((
            SHIPPED_BUCKET,
            "max_tokens: 3, tokens_per_fill: 3, fill_interval: 3600s",
        ));
    });
    let busy = stack.live_key("member");
    let calm = stack.live_key("member");
    for _ in 0..3 {
        assert_eq!(post(&stack, &busy.token, None).status, 200);
    }
    let limited = post(&stack, &busy.token, None);
    assert_eq!(limited.status, 429, "{limited:?}");
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    // Another key has its own bucket, even when it claims to be the busy one.
    for _ in 0..3 {
        let response = post(&stack, &calm.token, Some(&busy.key_id));
        assert_eq!(response.status, 200, "{response:?}");
    }
    assert_eq!(post(&stack, &calm.token, None).status, 429);
    // A refused request costs no token: mcp-guard answers it before the limiter.
    let unknown = busy.token.replace(&busy.key_id, "zzzzzzzzzzzz");
    assert_eq!(post(&stack, &unknown, None).status, 401);
    assert_eq!(
        stack
            .envoy
            .raw_stat("mcp_key_ratelimit.http_local_rate_limit.rate_limited"),
        2
    );
}

const SHIPPED_TOOL_BUCKET: &str = "max_tokens: 40, tokens_per_fill: 20, fill_interval: 1s";

fn call(stack: &Stack, token: &str, tool: &str, spoofed_tool: Option<&str>) -> Response {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"hi","a":1,"b":2}}}}}}"#
    );
    send(
        stack,
        token,
        &body,
        spoofed_tool.map(|tool| ("x-amt-tool", tool)),
    )
}

#[test]
fn the_judged_tool_reaches_the_limiter_so_one_tool_can_be_limited_per_key() {
    let stack = Stack::start_with("ratelimit-tool", |options| {
        options.substitutions.push((
            SHIPPED_TOOL_BUCKET,
            "max_tokens: 2, tokens_per_fill: 2, fill_interval: 3600s",
        ));
    });
    let key = stack.live_key("member");
    for _ in 0..2 {
        assert_eq!(call(&stack, &key.token, "add", None).status, 200);
    }
    // The client cannot move its call to another tool's bucket: its copy is removed.
    let limited = call(&stack, &key.token, "add", Some("echo"));
    assert_eq!(limited.status, 429, "{limited:?}");
    assert_eq!(call(&stack, &key.token, "echo", None).status, 200);
    assert_eq!(call(&stack, &key.token, "echo", Some("add")).status, 200);
    assert_eq!(call(&stack, &key.token, "echo", None).status, 429);
    // Other methods are limited per key only.
    let ping = Request::post_json(
        "/api/mcp-json",
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .bearer(&key.token)
    .send(stack.envoy.port);
    assert_eq!(ping.status, 200);
    let seen = stack.upstream.last_request();
    assert!(seen["headers"].get("x-amt-tool").is_none(), "{seen}");
}

/// The Istio example's filter configuration, in place of the shipped one, is one Envoy accepts.
#[test]
fn the_istio_example_is_a_configuration_envoy_accepts() {
    let path = repo_root().join("deploy/istio/alternatives/ratelimit-per-key.yaml");
    let filter: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let value = &filter["spec"]["configPatches"][0]["patch"]["value"];
    assert_eq!(value["name"], "envoy.filters.http.local_ratelimit");
    let typed_config = serde_json::to_string(&value["typed_config"]).unwrap();
    let shipped = "typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit\n              stat_prefix: mcp_key_ratelimit\n";
    let options = EnvoyOptions::new(1, 2);
    let config = Envoy::render(&options, 0, 0);
    assert_eq!(
        config.matches(shipped).count(),
        1,
        "the shipped filter block"
    );
    let config = config.replacen(shipped, &format!("typed_config: {typed_config}\n"), 1);
    let dir = scratch_dir("ratelimit-istio");
    let (ok, output) = validate_yaml(&dir, "istio-ratelimit", &config);
    assert!(ok, "{output}");
    // Its descriptors are the shipped ones.
    let shipped_text = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    for bucket in [SHIPPED_BUCKET, SHIPPED_TOOL_BUCKET] {
        assert!(shipped_text.contains(bucket));
        assert!(
            std::fs::read_to_string(&path).unwrap().contains(bucket),
            "{bucket}"
        );
    }
}
