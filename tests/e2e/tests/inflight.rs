//! Revocation reaches requests already in flight: idle SSE streams, long tool calls whose answer
//! has started, and calls whose answer has not. Real Envoy, real guardctl, the rmcp demo server.

use std::time::{Duration, Instant};

use mcp_guard_e2e::{
    percentile, raw_request, wait_until, IssuedKey, OpenStream, Request, Stack, INITIALIZE,
};

/// The issue's bound for cutting a revoked key's open stream.
const CUT_WITHIN: Duration = Duration::from_secs(1);

/// An MCP session through the proxy: initialize, then the initialized notification.
fn mcp_session(stack: &Stack, key: &IssuedKey) -> String {
    let init = Request::post_json("/api/mcp", INITIALIZE)
        .bearer(&key.token)
        .send(stack.envoy.port);
    assert_eq!(init.status, 200, "{}", init.body);
    let session = init
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    let initialized = Request::post_json(
        "/api/mcp",
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .bearer(&key.token)
    .header("mcp-session-id", &session)
    .header("mcp-protocol-version", "2025-06-18")
    .send(stack.envoy.port);
    assert_eq!(initialized.status, 202, "{}", initialized.body);
    session
}

/// The session's standalone SSE stream (GET), open and idle.
fn open_sse(stack: &Stack, key: &IssuedKey, session: &str) -> OpenStream {
    let authorization = format!("Bearer {}", key.token);
    let mut sse = OpenStream::open(
        stack.envoy.port,
        &raw_request(
            "GET",
            "/api/mcp",
            &[
                ("authorization", &authorization),
                ("accept", "text/event-stream"),
                ("mcp-session-id", session),
                ("mcp-protocol-version", "2025-06-18"),
            ],
            "",
        ),
    );
    assert!(sse.head.starts_with("HTTP/1.1 200"), "{}", sse.head);
    assert!(sse.head.contains("text/event-stream"), "{}", sse.head);
    assert!(
        sse.stays_open_for(Duration::from_millis(300)),
        "the SSE stream closed by itself: {}",
        sse.body_text()
    );
    sse
}

#[test]
fn idle_sse_streams_are_cut_within_a_second_of_revocation_and_new_requests_get_401() {
    let stack = Stack::start("inflight-sse");
    let mut cut_after = Vec::new();
    let mut refused_after = Vec::new();
    for _ in 0..5 {
        let key = stack.live_key("member");
        let session = mcp_session(&stack, &key);
        let mut sse = open_sse(&stack, &key, &session);
        let mut bystander = {
            // Another key's stream on the same worker must stay up.
            let other = stack.live_key("member");
            let session = mcp_session(&stack, &other);
            open_sse(&stack, &other, &session)
        };

        stack.guardctl.revoke(&key.key_id);
        let acknowledged = Instant::now();
        // New requests are probed alongside, so both latencies start at the acknowledgement.
        let port = stack.envoy.port;
        let token = key.token.clone();
        let refused = std::thread::spawn(move || {
            wait_until("a new request to get 401", Duration::from_secs(5), || {
                Request::get("/not-mcp").bearer(&token).send(port).status == 401
            });
            acknowledged.elapsed()
        });
        sse.closed_within(Duration::from_secs(5))
            .expect("the revoked key's SSE stream stayed open");
        cut_after.push(acknowledged.elapsed());
        refused_after.push(refused.join().unwrap());
        assert!(
            bystander.stays_open_for(Duration::from_millis(200)),
            "another key's stream was cut"
        );
    }
    cut_after.sort();
    refused_after.sort();
    println!(
        "revocation to effect over {} revocations (from the CLI's acknowledgement): \
         idle SSE stream cut p50 {:?} max {:?}; new request 401 p50 {:?} max {:?}",
        cut_after.len(),
        percentile(&cut_after, 0.5),
        percentile(&cut_after, 1.0),
        percentile(&refused_after, 0.5),
        percentile(&refused_after, 1.0),
    );
    assert!(
        percentile(&cut_after, 1.0) < CUT_WITHIN,
        "SSE cut latencies {cut_after:?}"
    );
    assert!(
        percentile(&refused_after, 1.0) < CUT_WITHIN,
        "401 latencies {refused_after:?}"
    );
    assert!(stack.envoy.stat("mcp_guard.streams.reset.revoked") >= 5);
    // The access log says how each cut stream ended, and why.
    wait_until(
        "the cut streams' access log lines",
        Duration::from_secs(5),
        || {
            access_log(&stack)
                .iter()
                .filter(|entry| entry["decision"] == "reset" && entry["reason"] == "revoked")
                .count()
                >= 5
        },
    );
}

/// The JSON access-log lines of the stack's Envoy.
fn access_log(stack: &Stack) -> Vec<serde_json::Value> {
    stack
        .envoy
        .process
        .log_text()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[test]
fn a_long_tool_call_whose_answer_has_started_is_reset() {
    let stack = Stack::start("inflight-tool-call");
    let key = stack.live_key("member");
    let session = mcp_session(&stack, &key);
    let authorization = format!("Bearer {}", key.token);
    let mut call = OpenStream::open(
        stack.envoy.port,
        &raw_request(
            "POST",
            "/api/mcp",
            &[
                ("authorization", &authorization),
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-session-id", &session),
                ("mcp-protocol-version", "2025-06-18"),
            ],
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":10000}}}"#,
        ),
    );
    assert!(call.head.starts_with("HTTP/1.1 200"), "{}", call.head);
    assert!(call.head.contains("text/event-stream"), "{}", call.head);
    assert!(call.stays_open_for(Duration::from_millis(300)));

    stack.guardctl.revoke(&key.key_id);
    let acknowledged = Instant::now();
    call.closed_within(Duration::from_secs(5))
        .expect("the call stayed open after its key was revoked");
    let elapsed = acknowledged.elapsed();
    assert!(elapsed < CUT_WITHIN, "cut after {elapsed:?}");
    assert!(
        !call.body_text().contains("slept"),
        "the answer got through: {}",
        call.body_text()
    );
    assert!(stack.envoy.stat("mcp_guard.streams.reset.revoked") >= 1);
}

#[test]
fn a_tool_call_whose_answer_has_not_started_gets_401_instead() {
    let stack = Stack::start("inflight-no-answer-yet");
    let key = stack.live_key("member");
    let before = stack.upstream.request_count();
    let started = Instant::now();
    let port = stack.envoy.port;
    let token = key.token.clone();
    // The JSON endpoint sends no response headers until the 4 s call completes.
    let call = std::thread::spawn(move || {
        Request::post_json(
            "/api/mcp-json",
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":4000}}}"#,
        )
        .bearer(&token)
        .header("mcp-protocol-version", "2025-06-18")
        .send(port)
    });
    wait_until(
        "the call to reach the upstream",
        Duration::from_secs(5),
        || stack.upstream.request_count() > before,
    );

    stack.guardctl.revoke(&key.key_id);
    let response = call.join().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status, 401, "{}", response.body);
    assert!(response
        .header("www-authenticate")
        .is_some_and(|h| h.contains("invalid_token")));
    assert!(!response.body.contains("slept"));
    assert!(
        elapsed < Duration::from_millis(3_500),
        "the 401 came only after {elapsed:?}: the upstream's answer was awaited"
    );
    assert!(stack.envoy.stat("mcp_guard.requests.denied.revoked") >= 1);
    wait_until("the access log line", Duration::from_secs(5), || {
        access_log(&stack).iter().any(|entry| {
            entry["path"] == "/api/mcp-json"
                && entry["status"] == 401
                && entry["decision"] == "deny"
                && entry["reason"] == "revoked"
                && entry["key_id"] == key.key_id.as_str()
        })
    });
}

#[test]
fn past_max_staleness_requests_and_streams_fail_closed_until_sync_resumes() {
    let stack = Stack::start_in_own_group_with("inflight-staleness", |options| {
        options.plugin_config = Some(
            r#"{"org":"demo","keyset_cluster":"guardctl","mode":"enforce","inspect_path_prefixes":["/api/mcp"],"long_poll_ms":1000,"max_staleness_ms":6000}"#
                .into(),
        );
    });
    let key = stack.live_key("member");
    let session = mcp_session(&stack, &key);
    let mut sse = open_sse(&stack, &key, &session);

    let mut stack = stack;
    stack.guardctl.crash();
    let crashed = Instant::now();
    sse.closed_within(Duration::from_secs(15))
        .expect("the stream outlived max_staleness");
    let stale_after = crashed.elapsed();
    let response = Request::get("/not-mcp")
        .bearer(&key.token)
        .send(stack.envoy.port);
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(response.header("retry-after").is_some());
    // The last sync answer came at most one long-poll (1 s) before the crash, so the set is
    // stale between 5 s and 6 s after it; the cut follows within a timer tick and the close
    // delay.
    println!("max_staleness_ms 6000: stream cut {stale_after:?} after guardctl died");
    assert!(
        stale_after >= Duration::from_secs(5),
        "failed closed after only {stale_after:?}"
    );
    assert!(
        stale_after < Duration::from_secs(6) + CUT_WITHIN,
        "failed closed only after {stale_after:?}"
    );
    assert!(stack.envoy.stat("mcp_guard.requests.denied.keyset_stale") >= 1);
    assert!(stack.envoy.stat("mcp_guard.streams.reset.keyset_stale") >= 1);
    assert!(stack.envoy.stat("mcp_guard.keyset.seconds_since_sync") >= 6);

    stack.guardctl.restart();
    stack.wait_until_allowed(&key.token);
}

/// A key that expires while its SSE stream is open: the stream lives until the expiry, then is
/// cut (the timer reads the clock for streams whose key expires).
#[test]
fn an_open_stream_is_cut_when_its_key_expires() {
    let stack = Stack::start("inflight-expiry");
    let created = Instant::now();
    let key = stack.guardctl.create_key("demo", "member", Some("4s"));
    stack.wait_until_allowed(&key.token);
    let session = mcp_session(&stack, &key);
    let mut sse = open_sse(&stack, &key, &session);
    // expires_at is whole seconds: at least 3 s after `created`, at most 5 s.
    let until_surely_valid = Duration::from_secs(3).saturating_sub(created.elapsed());
    assert!(
        sse.stays_open_for(until_surely_valid),
        "cut before its key expired"
    );
    let cut = sse
        .closed_within(Duration::from_secs(4))
        .expect("the stream outlived its key");
    let at = created.elapsed();
    println!("stream of a key expiring 4 s after creation cut at {at:?} (after {cut:?} more)");
    assert!(at < Duration::from_secs(5) + CUT_WITHIN, "cut at {at:?}");
    assert!(stack.envoy.stat("mcp_guard.streams.reset.expired") >= 1);
    assert_eq!(stack.mcp(Some(&key.token)).status, 401);
}
