//! The tool-policy scenarios: org `bench-policy` has a policy whose `member` role has 100
//! rules, `viewer` a few prefixes, `admin` every tool; the `/tools-list` route answers a
//! `tools/list` with 200 tools (the answer mcp-guard filters for a viewer).

use std::fs;
use std::path::Path;

use std::time::Duration;

use mcp_guard_e2e::{wait_until, Guardctl, IssuedKey, Request};

use crate::envoy::POLICY_ORG;

/// Tools in the `/tools-list` answer.
pub const LISTED_TOOLS: usize = 200;

/// A `tools/list` result with `LISTED_TOOLS` tools, each with a small schema, as one line of
/// JSON (no single quote: it sits in a single-quoted YAML string).
pub fn tools_list_answer() -> String {
    let tools: Vec<String> = (0..LISTED_TOOLS)
        .map(|i| {
            let family = ["search", "get", "write", "delete"][i % 4];
            format!(
                r#"{{"name":"{family}_item_{i}","description":"Tool {i} of the benchmark","inputSchema":{{"type":"object","properties":{{"id":{{"type":"string"}},"limit":{{"type":"integer"}}}},"required":["id"]}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{}],"nextCursor":"page-2"}}}}"#,
        tools.join(",")
    )
}

/// The policy: 100 rules for `member` (50 names, 49 prefixes, and `echo`, the tool the
/// `tools/call` scenarios call, found last-but-one kind: exact), viewers read.
fn policy_source() -> String {
    let mut member: Vec<String> = (0..50).map(|i| format!("\"tool_{i}\"")).collect();
    member.extend((0..49).map(|i| format!("\"family_{i}_*\"")));
    member.push("\"echo\"".into());
    format!(
        "roles:\n  member:\n    tools: [{}]\n  viewer:\n    tools: [\"search_*\", \"get_*\"]\n  admin:\n    tools: [\"*\"]\n",
        member.join(", ")
    )
}

/// Keys of org `bench-policy`: (member, viewer, admin), after its policy is set.
pub fn set_up(guardctl: &Guardctl, dir: &Path) -> (IssuedKey, IssuedKey, IssuedKey) {
    let file = dir.join("bench-policy.yaml");
    fs::write(&file, policy_source()).unwrap();
    let keys =
        ["member", "viewer", "admin"].map(|role| guardctl.create_key(POLICY_ORG, role, None));
    guardctl.ok(&[
        "policy",
        "set",
        "--org",
        POLICY_ORG,
        "--file",
        file.to_str().unwrap(),
    ]);
    let [member, viewer, admin] = keys;
    (member, viewer, admin)
}

/// The scenarios measure what they say: the viewer gets half the tools, the admin all.
pub fn check_filtering(port: u16, viewer: &str, admin: &str) {
    let tools = |token: &str| {
        let answer = Request::post_json(
            "/tools-list",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        )
        .bearer(token)
        .send(port);
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.json()["result"]["tools"]
            .as_array()
            .map_or(0, Vec::len)
    };
    wait_until(
        "the policy to reach the proxy",
        Duration::from_secs(20),
        || tools(viewer) == LISTED_TOOLS / 2,
    );
    assert_eq!(tools(admin), LISTED_TOOLS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_json_a_yaml_single_quote_can_hold() {
        let answer = tools_list_answer();
        assert!(!answer.contains('\''));
        let parsed: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            parsed["result"]["tools"].as_array().unwrap().len(),
            LISTED_TOOLS
        );
        assert_eq!(policy_source().matches("\"").count() / 2, 100 + 2 + 1);
    }
}
