//! The tool policy at the body: asks the org's compiled policy about every call of a request
//! body, refusing (enforce) or noting (audit) what the key's role may not use, and keeping the
//! first call's method and tool for the access log.

use mcp_guard_protocol::policy::{is_valid_tool_name, CompiledPolicy};

use super::inspect::{sanitize_tool, CallGate, Forbidden};

pub struct PolicyGate<'a> {
    /// `None`: the org has no policy, every call is admitted.
    policy: Option<&'a CompiledPolicy>,
    role: &'a str,
    /// Forward what the policy forbids, only noting it.
    audit: bool,
    /// The body's first request: its method and tool, sanitised (client input).
    pub first: Option<(String, Option<String>)>,
    /// Audit mode: the reason code of the first call that would have been refused.
    pub would_forbid: Option<&'static str>,
    /// The body asks for `tools/list`: its answer may need filtering.
    pub lists_tools: bool,
    /// How many `tools/call`s the body holds (more than one only in a batch).
    pub tool_calls: usize,
}

impl<'a> PolicyGate<'a> {
    pub fn new(policy: Option<&'a CompiledPolicy>, role: &'a str, audit: bool) -> Self {
        Self {
            policy,
            role,
            audit,
            first: None,
            would_forbid: None,
            lists_tools: false,
            tool_calls: 0,
        }
    }

    /// What later filters may key a per-tool limit on (`x-amt-tool`): the tool of a single
    /// `tools/call`, `batch` for several, `None` for a body without one.
    pub fn tool_for_limits(&self) -> Option<&str> {
        match self.tool_calls {
            0 => None,
            1 => self
                .first
                .as_ref()
                .and_then(|(_, tool)| tool.as_deref())
                .or(Some("batch")),
            _ => Some("batch"),
        }
    }

    /// True when a policy judged this body.
    pub fn has_policy(&self) -> bool {
        self.policy.is_some()
    }
}

impl CallGate for PolicyGate<'_> {
    fn admit(&mut self, method: &str, tool: Option<&str>) -> Result<(), Forbidden> {
        if self.first.is_none() {
            self.first = Some((sanitize_tool(method), tool.map(sanitize_tool)));
        }
        self.lists_tools |= method == "tools/list";
        if method == "tools/call" {
            self.tool_calls += 1;
        }
        let Some(policy) = self.policy else {
            return Ok(());
        };
        if let Some(tool) = tool.filter(|tool| !is_valid_tool_name(tool)) {
            let rule = "invalid_tool_name";
            if self.audit {
                self.would_forbid.get_or_insert(rule);
                return Ok(());
            }
            return Err(Forbidden {
                rule,
                message: format!(
                    "Forbidden: tool `{}` is not a tool name (1 to 128 of A-Z, a-z, 0-9, '_', '-', \
                     '.', '/'), and this org's tool policy admits no other ({rule})",
                    sanitize_tool(tool)
                ),
            });
        }
        let decision = policy.decide(self.role, Some(method), tool);
        if decision.allowed {
            return Ok(());
        }
        let rule = decision.reason.code();
        if self.audit {
            self.would_forbid.get_or_insert(rule);
            return Ok(());
        }
        let what = match tool {
            Some(tool) => format!("tool `{}`", sanitize_tool(tool)),
            None => format!("method `{}`", sanitize_tool(method)),
        };
        Err(Forbidden {
            rule,
            message: format!(
                "Forbidden: {what} is not allowed for role `{}` ({rule})",
                self.role
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::inspect::{
        inspect_request_gated, McpHeaders, RejectKind, Verdict, FORBIDDEN, HTTP_FORBIDDEN,
    };
    use crate::mcp::InspectConfig;
    use mcp_guard_protocol::policy::{Mode, Policy, RoleRules};

    fn viewer_policy() -> CompiledPolicy {
        CompiledPolicy::compile(&Policy {
            mode: Mode::Enforce,
            roles: vec![RoleRules {
                role: "viewer".into(),
                tools: vec!["search_*".into(), "echo".into()],
                ..RoleRules::default()
            }],
        })
    }

    fn judge(body: &str, gate: &mut PolicyGate) -> Verdict {
        let config = InspectConfig::default();
        inspect_request_gated(
            body.as_bytes(),
            &McpHeaders::default(),
            &config,
            &mut Vec::new(),
            gate,
        )
    }

    const CALL_DELETE: &str = r#"{"jsonrpc":"2.0","id":"c-7","method":"tools/call","params":{"name":"delete_repo","arguments":{"repo":"x-secret-value"}}}"#;

    #[test]
    fn a_forbidden_tool_is_a_403_naming_tool_and_role_with_the_id() {
        let policy = viewer_policy();
        let mut gate = PolicyGate::new(Some(&policy), "viewer", false);
        let Verdict::Reject(rejection) = judge(CALL_DELETE, &mut gate) else {
            panic!("allowed");
        };
        assert_eq!(rejection.kind, RejectKind::Forbidden);
        assert_eq!(
            (rejection.status, rejection.code),
            (HTTP_FORBIDDEN, FORBIDDEN)
        );
        assert_eq!(rejection.rule, "tool_not_allowed");
        let body = rejection.body();
        assert!(body.contains(r#""id":"c-7""#), "{body}");
        assert!(
            body.contains("`delete_repo`") && body.contains("`viewer`"),
            "{body}"
        );
        assert!(!body.contains("x-secret-value"), "{body}");
        assert_eq!(
            gate.first,
            Some(("tools/call".into(), Some("delete_repo".into())))
        );
        assert_eq!(gate.tool_for_limits(), Some("delete_repo"));
        let mut allowed = PolicyGate::new(Some(&policy), "viewer", false);
        let search = CALL_DELETE.replace("delete_repo", "search_docs");
        assert!(judge(&search, &mut allowed).is_allow());
    }

    #[test]
    fn one_forbidden_call_refuses_the_whole_batch() {
        let policy = viewer_policy();
        let batch = format!(
            r#"[{},{CALL_DELETE}]"#,
            CALL_DELETE.replace("delete_repo", "echo")
        );
        let mut gate = PolicyGate::new(Some(&policy), "viewer", false);
        let rejection = judge(&batch, &mut gate).rejection().cloned().unwrap();
        assert_eq!(rejection.kind, RejectKind::Forbidden);
        assert_eq!(rejection.id, None);
        assert_eq!(rejection.path, "[1]");
        // The access log gets the first call; limits see a batch as one.
        assert_eq!(gate.tool_for_limits(), Some("batch"));
        assert_eq!(gate.first.unwrap().1.as_deref(), Some("echo"));
    }

    #[test]
    fn methods_lifecycle_audit_and_no_policy() {
        let policy = viewer_policy();
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let read =
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}"#;
        let mut gate = PolicyGate::new(Some(&policy), "viewer", false);
        assert!(judge(list, &mut gate).is_allow());
        assert!(gate.lists_tools && gate.tool_for_limits().is_none());
        // `methods` was left empty for this role: resources are refused.
        let mut gate = PolicyGate::new(Some(&policy), "viewer", false);
        let refused = judge(read, &mut gate).rejection().cloned().unwrap();
        assert_eq!(refused.rule, "method_not_allowed");
        assert!(refused.message.contains("method `resources/read`"));
        // An unlisted role may list its tools and nothing more.
        let mut gate = PolicyGate::new(Some(&policy), "intern", false);
        assert!(judge(list, &mut gate).is_allow());
        let mut gate = PolicyGate::new(Some(&policy), "intern", false);
        let refused = judge(&CALL_DELETE.replace("delete_repo", "echo"), &mut gate);
        assert_eq!(refused.rejection().unwrap().rule, "role_not_in_policy");
        // Audit: forwarded, noted.
        let mut gate = PolicyGate::new(Some(&policy), "viewer", true);
        assert!(judge(CALL_DELETE, &mut gate).is_allow());
        assert_eq!(gate.would_forbid, Some("tool_not_allowed"));
        // No policy: everything, and the call is still noted for the access log.
        let mut gate = PolicyGate::new(None, "viewer", false);
        assert!(judge(CALL_DELETE, &mut gate).is_allow());
        assert!(!gate.has_policy() && gate.first.is_some());
    }

    #[test]
    fn under_a_policy_only_tool_names_of_the_grammar_pass() {
        let policy = viewer_policy();
        for name in ["echo ", "echo\\u0000", "Echo\\u00e9", "ec ho"] {
            let body = CALL_DELETE.replace("delete_repo", name);
            let mut gate = PolicyGate::new(Some(&policy), "viewer", false);
            let rejection = judge(&body, &mut gate).rejection().cloned().unwrap();
            assert_eq!(rejection.rule, "invalid_tool_name", "{name}");
        }
        // Without a policy nothing changes.
        let mut gate = PolicyGate::new(None, "viewer", false);
        assert!(judge(&CALL_DELETE.replace("delete_repo", "ec ho"), &mut gate).is_allow());
        // A name that holds a token is refused as a secret, before the policy sees it.
        let token = "amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";
        let mut gate = PolicyGate::new(Some(&policy), "viewer", false);
        let rejection = judge(&CALL_DELETE.replace("delete_repo", token), &mut gate)
            .rejection()
            .cloned()
            .unwrap();
        assert_eq!(rejection.kind, RejectKind::SecretValue);
        assert!(gate.first.is_none() && !rejection.body().contains(token));
    }

    #[test]
    fn client_names_are_bounded_before_they_reach_a_log() {
        let policy = viewer_policy();
        let long = format!("evil\u{1b}[31m{}", "x".repeat(300));
        let body = CALL_DELETE.replace("delete_repo", &long.replace('\u{1b}', "\\u001b"));
        let mut gate = PolicyGate::new(Some(&policy), "viewer", false);
        let rejection = judge(&body, &mut gate).rejection().cloned().unwrap();
        let (_, tool) = gate.first.unwrap();
        let tool = tool.unwrap();
        assert!(tool.len() < 100 && !tool.contains('\u{1b}'), "{tool}");
        assert!(!rejection.message.contains('\u{1b}'));
    }
}
