//! `guardctl policy check`: the filter's decision, made here with the same compiled policy, and
//! said in words.

use crate::api::policies::PolicyView;
use anyhow::{anyhow, bail};
use mcp_guard_protocol::policy::{CompiledPolicy, Policy, Reason};
use serde::Serialize;

/// The answer to "may this role make this call?".
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The reason code the filter logs (`tool_denied`, `role_not_in_policy`, ...), or
    /// `no_policy`.
    pub reason: String,
    /// The rule that decided: `roles.viewer.tools "search_*"`.
    pub rule: Option<String>,
    pub explanation: String,
}

/// Decides `tool` (a `tools/call`) or `method` for `role` under the org's policy (`None`: the
/// org has none).
pub fn explain(
    view: Option<&PolicyView>,
    role: &str,
    tool: Option<String>,
    method: Option<String>,
) -> anyhow::Result<Verdict> {
    let (method, tool) = match (method, tool) {
        (Some(method), None) => (method, None),
        (None, Some(tool)) => ("tools/call".to_string(), Some(tool)),
        _ => bail!("say either --tool or --method"),
    };
    let call = match &tool {
        Some(tool) => format!("call tool {tool}"),
        None => format!("use method {method}"),
    };
    let Some(view) = view else {
        return Ok(Verdict {
            allowed: true,
            reason: "no_policy".into(),
            rule: None,
            explanation: format!("allowed: the org has no policy, so role {role} may {call}"),
        });
    };
    let policy = Policy::decode(view.policy.to_string().as_bytes())
        .ok_or_else(|| anyhow!("the server's policy of org {} does not decode", view.org))?;
    let decision = CompiledPolicy::compile(&policy).decide(role, Some(&method), tool.as_deref());
    let rule = match &decision.reason {
        Reason::Rule { list, pattern } => {
            Some(format!("roles.{role}.{} {pattern:?}", list.as_str()))
        }
        _ => None,
    };
    let why = match &decision.reason {
        Reason::Lifecycle => "it is a lifecycle method, always allowed".to_string(),
        Reason::UnlistedRole => format!("the policy does not list role {role}"),
        Reason::Rule { .. } => format!("by rule {}", rule.as_deref().unwrap_or_default()),
        Reason::NotListed(list) => {
            format!("no pattern of roles.{role}.{} matches", list.as_str())
        }
    };
    let verb = if decision.allowed {
        "allowed"
    } else {
        "denied"
    };
    let audit = if policy.mode == mcp_guard_protocol::policy::Mode::Audit && !decision.allowed {
        " (the policy is in audit mode: the proxies forward the call and count it)"
    } else {
        ""
    };
    Ok(Verdict {
        allowed: decision.allowed,
        reason: decision.reason.code().to_string(),
        rule,
        explanation: format!(
            "{verb}: role {role} may{} {call}: {why} (org {} policy version {}){audit}",
            if decision.allowed { "" } else { " not" },
            view.org,
            view.version
        ),
    })
}
