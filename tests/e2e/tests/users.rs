//! Keys issued by users, through the real Envoy with the release module and the real guardctl:
//! the issuing user reaches the upstream and the access log, the role is the one frozen into the
//! key when it was created, and a service key carries no user a client could fill in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use mcp_guard_e2e::*;

/// The identity headers the upstream saw for one request with `token`, which also tries to
/// pick its own user.
fn identity_seen(stack: &Stack, token: &str, tag: &str) -> (Value, String) {
    let response = Request::post_json(&format!("/api/mcp?e2e={tag}"), INITIALIZE)
        .bearer(token)
        .header("x-amt-user", "root@example.com")
        .send(stack.envoy.port);
    assert_eq!(response.status, 200, "{response:?}");
    let seen = stack.upstream.last_request();
    assert!(!seen.to_string().contains("root@example.com"), "{seen}");
    let request_id = response.header("x-request-id").unwrap().to_string();
    (seen["headers"].clone(), request_id)
}

fn access_log_entry(stack: &Stack, request_id: &str) -> Value {
    let logged = |l: &&str| l.starts_with('{') && l.contains(request_id);
    wait_until("the access log line", Duration::from_secs(5), || {
        stack.envoy.process.log_text().lines().any(|l| logged(&l))
    });
    let log = stack.envoy.process.log_text();
    serde_json::from_str(log.lines().find(logged).unwrap()).unwrap()
}

#[test]
fn a_users_key_carries_the_user_and_keeps_the_role_it_was_created_with() {
    let stack = Stack::start("users");
    let guardctl = &stack.guardctl;
    guardctl.ok(&[
        "users",
        "add",
        "alice@example.com",
        "--org",
        "demo",
        "--role",
        "viewer",
    ]);
    let viewer_key = guardctl.create_user_key("alice@example.com");
    stack.wait_until_allowed(&viewer_key.token);

    let (headers, request_id) = identity_seen(&stack, &viewer_key.token, "user-1");
    assert_eq!(headers["x-amt-key-id"], viewer_key.key_id.as_str());
    assert_eq!(headers["x-amt-org"], "demo");
    assert_eq!(headers["x-amt-role"], "viewer");
    assert_eq!(headers["x-amt-user"], "alice@example.com");
    let entry = access_log_entry(&stack, &request_id);
    assert_eq!(entry["user"], "alice@example.com");
    assert_eq!(entry["role"], "viewer");

    // Promoting the user changes no key already issued; a new key gets the new role.
    guardctl.ok(&["users", "set-role", "alice@example.com", "admin"]);
    let admin_key = guardctl.create_user_key("alice@example.com");
    stack.wait_until_allowed(&admin_key.token);
    let (old, _) = identity_seen(&stack, &viewer_key.token, "user-2");
    assert_eq!(old["x-amt-role"], "viewer");
    let (new, _) = identity_seen(&stack, &admin_key.token, "user-3");
    assert_eq!(new["x-amt-role"], "admin");
    assert_eq!(new["x-amt-user"], "alice@example.com");

    // A service key has no user: the client's copies are removed and none is added.
    let service = stack.live_key("member");
    let (headers, request_id) = identity_seen(&stack, &service.token, "user-4");
    assert!(headers.get("x-amt-user").is_none(), "{headers}");
    assert_eq!(headers["x-amt-role"], "member");
    assert_eq!(access_log_entry(&stack, &request_id)["user"], Value::Null);

    // Removing the user with its keys answers once the proxy refuses them, like a revoke.
    let removed = guardctl.ok(&[
        "users",
        "remove",
        "alice@example.com",
        "--revoke-keys",
        "--json",
    ]);
    let removed: Value = serde_json::from_str(&removed).unwrap();
    assert_eq!(
        removed["enforced"]["confirmed"].as_array().map(Vec::len),
        Some(1),
        "{removed}"
    );
    for key in [&viewer_key, &admin_key] {
        let status = Request::get("/not-mcp")
            .bearer(&key.token)
            .send(stack.envoy.port)
            .status;
        assert_eq!(status, 401, "accepted right after the answer");
    }
    stack.wait_until_allowed(&service.token);
}
