//! Authentication through the real Envoy 1.40 with the release module, the real guardctl and the
//! demo MCP server. Each test starts its own stack on free ports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use mcp_guard_e2e::*;

const INVALID_TOKEN: &str = "Bearer realm=\"mcp\", error=\"invalid_token\"";

fn assert_jsonrpc_error(response: &Response) {
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["jsonrpc"], "2.0");
    assert!(body["id"].is_null(), "{body}");
    assert!(body["error"]["code"].is_i64(), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().len() > 5);
}

#[test]
fn a_valid_key_reaches_the_upstream_with_identity_headers_and_no_credentials() {
    let stack = Stack::start("allow");
    let key = stack.live_key("member");

    // The client tries to choose its own identity; the filter replaces it.
    let response = Request::post_json("/api/mcp?e2e=allow-1", INITIALIZE)
        .bearer(&key.token)
        .header("x-amt-org", "root")
        .header("x-amt-role", "admin")
        .header("X-Amt-Key-Id", "someone-else")
        .send(stack.envoy.port);
    assert_eq!(response.status, 200, "{response:?}");
    let request_id = response
        .header("x-request-id")
        .expect("request id returned")
        .to_string();
    let answer = mcp_message(&response);
    assert_eq!(answer["id"], 1);
    assert!(answer["result"]["serverInfo"].is_object(), "{answer}");

    let seen = stack.upstream.last_request();
    let headers = &seen["headers"];
    assert_eq!(headers["x-amt-key-id"], key.key_id.as_str());
    assert_eq!(headers["x-amt-org"], "demo");
    assert_eq!(headers["x-amt-role"], "member");
    assert!(headers.get("authorization").is_none(), "{headers}");
    let all = seen.to_string();
    assert!(!all.contains(&key.token), "token reached the upstream");
    assert!(
        !all.contains("someone-else") && !all.contains("root"),
        "{all}"
    );

    // Access logs carry the identity from filter state, never the token.
    let logged = |l: &&str| l.starts_with('{') && l.contains(request_id.as_str());
    wait_until("the access log line", Duration::from_secs(5), || {
        stack.envoy.process.log_text().lines().any(|l| logged(&l))
    });
    let log = stack.envoy.process.log_text();
    let line = log.lines().find(logged).unwrap();
    let entry: Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["path"], "/api/mcp", "logged without its query");
    assert_eq!(entry["key_id"], key.key_id.as_str());
    assert_eq!(entry["org"], "demo");
    assert_eq!(entry["role"], "member");
    assert_eq!(entry["decision"], "allow");
    assert_eq!(entry["reason"], Value::Null);
    assert_eq!(
        entry["request_id"],
        request_id.as_str(),
        "client and log share the request id"
    );
    assert!(!log.contains(&key.token), "token in Envoy's output");
    assert!(stack.envoy.stat("mcp_guard.requests.allowed") >= 2);
}

#[test]
fn every_deny_reason_gets_its_status_challenge_and_metric() {
    let stack = Stack::start("deny");
    let good = stack.guardctl.create_key("demo", "viewer", None);
    let revoked = stack.guardctl.create_key("demo", "viewer", None);
    let expiring = stack.guardctl.create_key("demo", "viewer", Some("1s"));
    let other_org = stack.guardctl.create_key("acme", "admin", None);
    stack.guardctl.revoke(&revoked.key_id);
    // Every change synced: four creates and the revoke.
    wait_until("the revoke to sync", Duration::from_secs(5), || {
        stack.envoy.stat("mcp_guard.keyset.version") >= 5
    });
    // Then the 1 s key expires: it is refused for being expired, nothing else.
    wait_until("the 1 s key to expire", Duration::from_secs(5), || {
        let before = stack.envoy.stat("mcp_guard.requests.denied.expired");
        Request::get("/not-mcp")
            .bearer(&expiring.token)
            .send(stack.envoy.port)
            .status
            == 401
            && stack.envoy.stat("mcp_guard.requests.denied.expired") > before
    });

    let (key_id, secret) = good.token["amt_".len()..].split_once('_').unwrap();
    let wrong_secret = format!("amt_{key_id}_{}", secret.chars().rev().collect::<String>());
    let unknown = format!("amt_zzzzzzzzzzzz_{secret}");
    let upstream_before = stack.upstream.request_count();

    let invalid = [
        ("unknown_key", unknown.as_str()),
        ("bad_secret", wrong_secret.as_str()),
        ("revoked", revoked.token.as_str()),
        ("expired", expiring.token.as_str()),
        ("wrong_org", other_org.token.as_str()),
    ];
    let mut bodies = Vec::new();
    for (reason, token) in invalid {
        let before = stack
            .envoy
            .stat(&format!("mcp_guard.requests.denied.{reason}"));
        let response = stack.mcp(Some(token));
        assert_eq!(response.status, 401, "{reason}: {response:?}");
        assert_eq!(
            response.header("www-authenticate"),
            Some(INVALID_TOKEN),
            "{reason}"
        );
        assert_jsonrpc_error(&response);
        assert!(!response.body.contains(token) && !response.body.contains(key_id));
        let mut body = response.json();
        // The request id differs per request by design; everything else must be identical.
        body["error"]["data"]
            .as_object_mut()
            .unwrap()
            .remove("request_id");
        bodies.push(body);
        assert_eq!(
            stack
                .envoy
                .stat(&format!("mcp_guard.requests.denied.{reason}")),
            before + 1,
            "{reason} counted"
        );
    }
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "bodies reveal the reason: {bodies:?}"
    );

    // No credentials: 401 with a bare challenge.
    let missing = stack.mcp(None);
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"mcp\"")
    );
    assert_jsonrpc_error(&missing);

    // Malformed: 400 invalid_request, for every shape.
    let token = good.token.as_str();
    let malformed: Vec<Request> = vec![
        Request::post_json("/api/mcp", INITIALIZE)
            .header("authorization", &format!("Basic {token}")),
        Request::post_json("/api/mcp", INITIALIZE)
            .header("authorization", &format!("Bearer  {token}")),
        Request::post_json("/api/mcp", INITIALIZE)
            .header("authorization", &format!("Bearer\t{token}")),
        Request::post_json("/api/mcp", INITIALIZE).header("authorization", "Bearer"),
        Request::post_json("/api/mcp", INITIALIZE)
            .header("authorization", &format!("Bearer {}", "a".repeat(10_000))),
        Request::post_json("/api/mcp", INITIALIZE)
            .bearer(token)
            .bearer(token),
        Request::post_json("/api/mcp", INITIALIZE)
            .header("authorization", &format!("Bearer {token}, Bearer {token}")),
    ];
    // Credentials outside Authorization: 400 as well, each class its own reason
    // (tests/e2e/tests/smuggling.rs has every form).
    let smuggled = [
        (
            Request::post_json(&format!("/api/mcp?api_key={token}"), INITIALIZE)
                .bearer(token)
                .header("x-request-id", "e2e-token-in-query"),
            "token_in_url",
        ),
        (
            Request::post_json("/api/mcp?access_token=abc", INITIALIZE).bearer(token),
            "token_in_url",
        ),
        (
            Request::post_json("/api/mcp", INITIALIZE)
                .bearer(token)
                .header("cookie", &format!("k={token}")),
            "token_in_cookie",
        ),
    ];
    for (request, reason) in &smuggled {
        let metric = format!("mcp_guard.requests.denied.{reason}");
        let before = stack.envoy.stat(&metric);
        let response = request.send(stack.envoy.port);
        assert_eq!(response.status, 400, "{reason}: {response:?}");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer realm=\"mcp\", error=\"invalid_request\"")
        );
        assert_jsonrpc_error(&response);
        assert_eq!(stack.envoy.stat(&metric), before + 1, "{reason}");
    }
    let before = stack.envoy.stat("mcp_guard.requests.denied.malformed");
    for request in &malformed {
        let response = request.send(stack.envoy.port);
        assert_eq!(
            response.status, 400,
            "{:?} -> {response:?}",
            request.headers
        );
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer realm=\"mcp\", error=\"invalid_request\"")
        );
        assert_jsonrpc_error(&response);
    }
    assert_eq!(
        stack.envoy.stat("mcp_guard.requests.denied.malformed"),
        before + malformed.len() as u64
    );

    assert_eq!(
        stack.upstream.request_count(),
        upstream_before,
        "a denied request reached the upstream"
    );
    // The secret never shows up in Envoy's output, even at debug level; the key-id does. Wait
    // for the access log of the last request (flushed every 100 ms) so it is checked too.
    wait_until("the access log to flush", Duration::from_secs(5), || {
        stack
            .envoy
            .process
            .log_text()
            .contains("\"request_id\":\"e2e-token-in-query\"")
    });
    let log = stack.envoy.process.log_text();
    assert!(!log.contains(secret) && !log.contains(&revoked.token));
    assert!(
        log.contains(&format!("reason=revoked key_id={}", revoked.key_id)),
        "debug line"
    );
}

#[test]
fn before_the_first_sync_the_filter_fails_closed_with_503() {
    let dir = scratch_dir("first-sync");
    let upstream = Upstream::start(&dir);
    // guardctl is not running yet: its port is reserved but closed.
    let mut guardctl = Guardctl::start(&dir);
    guardctl.stop();
    let envoy = Envoy::start(&dir, &EnvoyOptions::new(upstream.port, guardctl.port));
    let token = "amt_aaaaaaaaaaaa_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    let response = Request::post_json("/api/mcp", INITIALIZE)
        .bearer(token)
        .send(envoy.port);
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_jsonrpc_error(&response);
    assert!(envoy.stat("mcp_guard.requests.denied.keyset_not_loaded") >= 1);
    assert_eq!(upstream.request_count(), 0);
    wait_until("a failed sync attempt", Duration::from_secs(10), || {
        envoy.stat("mcp_guard.sync.failed") >= 1
    });
    let still = Request::post_json("/api/mcp", INITIALIZE)
        .bearer(token)
        .send(envoy.port);
    assert_eq!(
        still.status, 503,
        "still closed while guardctl is unreachable"
    );

    guardctl.restart();
    let key = guardctl.create_key("demo", "member", None);
    wait_until("first sync", Duration::from_secs(15), || {
        Request::post_json("/api/mcp", INITIALIZE)
            .bearer(&key.token)
            .send(envoy.port)
            .status
            == 200
    });
    assert!(envoy.stat("mcp_guard.sync.succeeded") >= 1);
}

#[test]
fn a_revoked_key_gets_401_within_a_second() {
    let stack = Stack::start("revoke");
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let key = stack.live_key("member");
        let revoked_at = Instant::now();
        stack.guardctl.revoke(&key.key_id);
        stack.wait_until_refused(&key.token);
        latencies.push(revoked_at.elapsed());
    }
    latencies.sort();
    eprintln!("revoke-to-401 latency (includes the CLI process): {latencies:?}");
    // Generous bound for a loaded 2-core CI machine; typical is tens of milliseconds.
    assert!(
        latencies[latencies.len() - 1] < Duration::from_secs(1),
        "{latencies:?}"
    );
    assert!(stack.envoy.stat("mcp_guard.requests.denied.revoked") >= 5);
    assert!(stack.envoy.stat("mcp_guard.keyset.version") >= 10);
}

#[test]
fn the_proxy_keeps_its_last_known_set_while_guardctl_is_down_and_after_it_restarts() {
    let mut stack = Stack::start("guardctl-down");
    let key = stack.live_key("member");
    let doomed = stack.live_key("member");

    stack.guardctl.stop();
    // Once the proxy has seen guardctl fail, it must still serve what it had.
    wait_until(
        "the sync failure to be counted",
        Duration::from_secs(5),
        || stack.envoy.stat("mcp_guard.sync.failed") >= 1,
    );
    assert_eq!(
        stack.mcp(Some(&key.token)).status,
        200,
        "last-known set is served"
    );
    assert_eq!(
        stack
            .mcp(Some(
                "amt_unknown00000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            ))
            .status,
        401
    );

    // Same database after restart: keys survive, and the sync resumes where it stopped.
    stack.guardctl.restart();
    let listed = stack.guardctl.cli(&["keys", "list", "--json"]);
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&key.key_id));
    stack.guardctl.revoke(&doomed.key_id);
    wait_until("revocation after restart", Duration::from_secs(15), || {
        stack.mcp(Some(&doomed.token)).status == 401
    });
    assert_eq!(stack.mcp(Some(&key.token)).status, 200);
}

#[test]
fn org_from_authority_scopes_keys_to_their_org() {
    let stack = Stack::start_with("org-pattern", |options| {
        options.plugin_config = Some(
            r#"{"org_from_authority": "{org}.armature.app", "keyset_cluster": "guardctl"}"#.into(),
        );
    });
    let acme = stack.guardctl.create_key("acme", "admin", None);
    let send = |host: &str| {
        Request::post_json("/api/mcp", INITIALIZE)
            .bearer(&acme.token)
            .header("host", host)
            .send(stack.envoy.port)
    };
    wait_until("key to sync", Duration::from_secs(5), || {
        send("acme.armature.app").status == 200
    });
    assert_eq!(
        stack.upstream.last_request()["headers"]["x-amt-org"],
        "acme"
    );
    for host in [
        "globex.armature.app",
        "acme.armature.app.evil.test",
        "armature.app",
        "localhost",
    ] {
        let response = send(host);
        assert_eq!(response.status, 401, "{host}");
        assert_eq!(response.header("www-authenticate"), Some(INVALID_TOKEN));
    }
    assert!(stack.envoy.stat("mcp_guard.requests.denied.wrong_org") >= 4);
}

#[test]
fn keep_authorization_forwards_the_header_when_configured() {
    let stack = Stack::start_with("keep-authz", |options| {
        options.plugin_config = Some(
            r#"{"org": "demo", "keyset_cluster": "guardctl", "keep_authorization": true}"#.into(),
        );
    });
    let key = stack.live_key("member");
    assert_eq!(stack.mcp(Some(&key.token)).status, 200);
    let headers = &stack.upstream.last_request()["headers"];
    assert_eq!(
        headers["authorization"],
        format!("Bearer {}", key.token).as_str()
    );
}

#[test]
fn one_sync_loop_per_envoy_process() {
    let stack = Stack::start_with("one-sync", |options| options.concurrency = 2);
    // Every worker ticks, but only the lease holder keeps a long-poll open to guardctl.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            stack.envoy.raw_stat("cluster.guardctl.upstream_rq_active"),
            1
        );
    }
    let stats = stack.envoy.stats();
    for name in [
        "mcp_guard.requests.allowed",
        "mcp_guard.keyset.version",
        "mcp_guard.keyset.seconds_since_sync",
        "mcp_guard.sync.succeeded",
        "mcp_guard.requests.denied.keyset_not_loaded",
    ] {
        assert!(
            stats.contains_key(name),
            "{name} missing from /stats: {stats:?}"
        );
    }
}

#[test]
fn a_bad_plugin_configuration_fails_closed() {
    let dir = scratch_dir("bad-config");
    let mut options = EnvoyOptions::new(1, 1);
    options.plugin_config =
        Some(r#"{"org": "demo", "keyset_cluster": "guardctl", "typo": 1}"#.into());
    let (accepted, output) = Envoy::validate(&dir, &options);
    assert!(!accepted, "Envoy accepted a bad plugin config: {output}");
    assert!(
        output.contains("unknown field `typo`"),
        "clear reason: {output}"
    );
    assert!(output.contains("fail closed"), "{output}");
}

#[test]
fn a_module_that_does_not_load_never_serves_traffic() {
    let dir = scratch_dir("corrupt-module");
    let corrupt = dir.join("corrupt.wasm");
    std::fs::write(&corrupt, b"\0asm\x01\0\0\0garbage").unwrap();
    let mut options = EnvoyOptions::new(1, 1);
    options.wasm = corrupt;
    let (accepted, output) = Envoy::validate(&dir, &options);
    assert!(
        !accepted,
        "Envoy accepted a module that cannot load: {output}"
    );
    assert!(output.contains("fail closed"), "{output}");
}

/// A VM that traps (a panic, in production) in any phase fails closed: the trapping request
/// gets no answer from the upstream, and nothing passes the dead filter afterwards.
#[test]
fn a_trapped_vm_fails_closed_in_every_phase() {
    let dir = scratch_dir("trap");
    let guardctl = Guardctl::start(&dir);
    let upstream = Upstream::start(&dir);
    let key = guardctl.create_key("demo", "member", None);
    for phase in ["headers", "body", "response"] {
        let mut options = EnvoyOptions::new(upstream.port, guardctl.port);
        options.wasm = trap_wasm();
        options.concurrency = 1;
        let envoy = Envoy::start(&dir, &options);
        envoy.wait_for_keyset();
        let call = |trap: Option<&str>| {
            let mut request = Request::post_json("/api/mcp", INITIALIZE).bearer(&key.token);
            if let Some(phase) = trap {
                request = request.header("x-mcp-guard-test-trap", phase);
            }
            request.send(envoy.port)
        };
        wait_until("key to sync", Duration::from_secs(5), || {
            call(None).status == 200
        });
        let reached = upstream.request_count();

        let trapped = call(Some(phase));
        assert!(
            trapped.status >= 500,
            "{phase}: a trap must not pass: {trapped:?}"
        );
        assert!(
            !trapped.body.contains("serverInfo"),
            "{phase}: the upstream's answer reached the client: {trapped:?}"
        );
        // Only a response-phase trap comes after the request was forwarded.
        let forwarded = u64::from(phase == "response");
        assert_eq!(upstream.request_count(), reached + forwarded, "{phase}");
        // After the crash nothing passes: not the valid key, not a request without credentials.
        for _ in 0..5 {
            assert!(call(None).status >= 500, "{phase}");
            assert!(Request::get("/api/mcp").send(envoy.port).status >= 500);
        }
        assert_eq!(
            upstream.request_count(),
            reached + forwarded,
            "{phase}: a request passed the dead filter"
        );
    }
}

#[test]
fn the_policy_version_and_mode_each_proxy_runs_are_in_its_stats() {
    let audit = Stack::start_with("policy-version", |options| {
        options.plugin_config = Some(
            r#"{"org":"demo","keyset_cluster":"guardctl","mode":"audit","policy_version":42}"#
                .into(),
        );
    });
    assert_eq!(audit.envoy.stat("mcp_guard.config.policy_version"), 42);
    assert_eq!(audit.envoy.stat("mcp_guard.config.audit_mode"), 1);
    let log = audit.envoy.process.log_text();
    assert!(log.contains("policy_version 42, mode Audit"), "{log}");
    // The name docs/metrics.md gives for Prometheus queries.
    let prometheus = Request::get("/stats/prometheus")
        .send(audit.envoy.admin_port)
        .body;
    assert!(
        prometheus
            .lines()
            .any(|l| l.starts_with("mcp_guard_config_policy_version{") && l.ends_with(" 42")),
        "{}",
        prometheus
            .lines()
            .filter(|l| l.contains("mcp_guard"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let enforce = Stack::start("policy-version-default");
    let stats = enforce.envoy.stats();
    assert_eq!(stats.get("mcp_guard.config.policy_version"), Some(&0));
    assert_eq!(stats.get("mcp_guard.config.audit_mode"), Some(&0));
}

/// Every metric docs/metrics.md names is what Envoy shows, in `/stats` and in Prometheus form
/// (per-reason names checked with one reason; per-rule names are defined on first use).
#[test]
fn the_metrics_reference_names_what_envoy_shows() {
    let stack = Stack::start("metrics-reference");
    let doc = std::fs::read_to_string(mcp_guard_e2e::repo_root().join("docs/metrics.md")).unwrap();
    let stats = stack.envoy.stats();
    let prometheus = Request::get("/stats/prometheus")
        .send(stack.envoy.admin_port)
        .body;
    let exported: Vec<&str> = prometheus
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut checked = 0;
    for row in doc.lines().filter(|l| l.starts_with("| `wasmcustom.")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let names = |cell: &str| -> Vec<String> {
            // `a` / `.b`: the second shares the first's prefix up to its last dot.
            let parts: Vec<&str> = cell
                .split(" / ")
                .map(|p| p.trim_matches(['|', ' ', '`']))
                .collect();
            let first = parts[0].to_string();
            let mut out = vec![first.clone()];
            for part in &parts[1..] {
                out.push(match part.strip_prefix('.') {
                    Some(tail) => format!("{}.{tail}", &first[..first.rfind('.').unwrap()]),
                    None => part.to_string(),
                });
            }
            out.into_iter()
                .map(|n| n.replace("<reason>", "missing"))
                .collect()
        };
        for name in names(cells[0]) {
            if name.contains("<rule>") || name.contains("<role>") {
                continue;
            }
            let bare = name.trim_start_matches("wasmcustom.");
            assert!(
                stats.contains_key(bare),
                "docs/metrics.md names {name}, Envoy has {:?}",
                stats.keys()
            );
            checked += 1;
        }
        for name in names(cells[1]) {
            if name.contains("<rule>") || name.contains("<role>") {
                continue;
            }
            assert!(
                exported.contains(&name.as_str()),
                "docs/metrics.md names {name} in Prometheus"
            );
        }
    }
    assert!(
        checked >= 12,
        "only {checked} names found in docs/metrics.md"
    );
}

/// What the upstream sees of `request` (sent with a key and a client's own identity headers):
/// the key's identity, replaced, and no Authorization header.
fn assert_identity_replaced(stack: &Stack, key: &IssuedKey, request: Request, what: &str) {
    let before = stack.upstream.request_count();
    let response = request
        .bearer(&key.token)
        .header("x-amt-org", "root")
        .header("X-Amt-Role", "admin")
        .header("x-amt-key-id", "someone-else")
        .send(stack.envoy.port);
    assert!(response.status < 500, "{what}: {response:?}");
    assert_eq!(
        stack.upstream.request_count(),
        before + 1,
        "{what}: not forwarded"
    );
    let seen = stack.upstream.last_request();
    let headers = &seen["headers"];
    assert_eq!(headers["x-amt-key-id"], key.key_id.as_str(), "{what}");
    assert_eq!(headers["x-amt-org"], "demo", "{what}");
    assert_eq!(headers["x-amt-role"], "member", "{what}");
    assert!(headers.get("authorization").is_none(), "{what}: {headers}");
    assert!(
        !seen.to_string().contains(&key.token),
        "{what}: the token reached the upstream"
    );
}

#[test]
fn identity_is_replaced_and_authorization_removed_on_every_kind_of_request() {
    let stack = Stack::start("identity-kinds");
    let key = stack.guardctl.create_key("demo", "member", None);
    stack.wait_until_allowed(&key.token);
    let sse = Request::get("/api/mcp").header("accept", "text/event-stream");
    assert_identity_replaced(&stack, &key, sse, "SSE GET");
    let mut delete = Request::get("/api/mcp").header("mcp-session-id", "s-1");
    delete.method = "DELETE".into();
    assert_identity_replaced(&stack, &key, delete, "DELETE");
    let post = Request::post_json("/api/mcp", INITIALIZE);
    assert_identity_replaced(&stack, &key, post, "POST");

    // Audit mode forwards what enforce mode would block: identity is replaced all the same.
    let audit = Stack::start_with("identity-audit", |options| {
        options.plugin_config = Some(
            r#"{"org":"demo","keyset_cluster":"guardctl","mode":"audit","inspect_path_prefixes":["/api/mcp"]}"#
                .into(),
        );
    });
    let key = audit.guardctl.create_key("demo", "member", None);
    audit.wait_until_allowed(&key.token);
    let blocked_in_enforce = Request::post_json(
        "/api/mcp",
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"password":"x"}}}"#,
    );
    assert_identity_replaced(&audit, &key, blocked_in_enforce, "audit-mode POST");
    assert_eq!(audit.envoy.stat("mcp_guard.body.audit.password"), 1);
}
