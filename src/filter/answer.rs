//! What the filter answers and records: the local deny reply (the one place that denies) and
//! the decision in filter state for the access log. Used by the request path (`http.rs`) and by
//! the in-flight re-checks (`inflight.rs`).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, LogLevel};

use super::host::{log, log_enabled};
use super::metrics::Metrics;
use crate::auth::DenyReason;
use crate::config::Config;
use crate::reply;

/// Filter-state names (Envoy prefixes `wasm.`): `%FILTER_STATE(wasm.mcp_guard.key_id:PLAIN)%`.
pub(super) const STATE_KEY_ID: &str = "mcp_guard.key_id";
pub(super) const STATE_ORG: &str = "mcp_guard.org";
pub(super) const STATE_ROLE: &str = "mcp_guard.role";
pub(super) const STATE_USER: &str = "mcp_guard.user";
/// The body's (first) MCP method and tool, sanitised: client input, bounded before any log.
pub(super) const STATE_METHOD: &str = "mcp_guard.method";
pub(super) const STATE_TOOL: &str = "mcp_guard.tool";
/// What the filter decided: `allow`, `deny` (401/400/503 answered by the filter), `block` (body
/// policy), `forbid` (tool policy, 403), `audit` (body or tool policy would refuse; forwarded),
/// `reset` (stopped in flight).
const STATE_DECISION: &str = "mcp_guard.decision";
/// Why, for every decision but `allow`: the deny reason code or the body rule.
const STATE_REASON: &str = "mcp_guard.reason";

/// Records the decision (and its reason) in filter state, for the access log.
pub(super) fn record_decision(decision: &str, reason: Option<&str>) {
    let _ = hostcalls::set_property(vec![STATE_DECISION], Some(decision.as_bytes()));
    if let Some(reason) = reason {
        let _ = hostcalls::set_property(vec![STATE_REASON], Some(reason.as_bytes()));
    }
}

/// The one place that denies: metric, debug line (key-id only, never the secret), local reply to
/// the current (or effective) stream.
pub(super) fn deny(
    config: Option<&Config>,
    metrics: Option<&Metrics>,
    reason: DenyReason,
    key_id: Option<&str>,
    request_id: Option<&str>,
) -> Action {
    if let Some(metrics) = metrics {
        metrics.denied(reason);
    }
    if log_enabled(LogLevel::Debug) {
        log(
            LogLevel::Debug,
            &format!(
                "mcp-guard: deny reason={} key_id={} request_id={}",
                reason.code(),
                key_id.unwrap_or("-"),
                request_id.unwrap_or("-")
            ),
        );
    }
    record_decision("deny", Some(reason.code()));
    if let Some(key_id) = key_id {
        let _ = hostcalls::set_property(vec![STATE_KEY_ID], Some(key_id.as_bytes()));
    }
    let (challenge, retry_after) = match config {
        Some(config) => (config.challenge.as_str(), config.retry_after_seconds),
        None => ("Bearer realm=\"mcp\"", 1),
    };
    let reply = reply::deny(reason, challenge, retry_after, request_id);
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    if hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes())).is_err() {
        // Without a local reply the only safe outcome is to kill the stream.
        let _ = hostcalls::reset_http_request();
    }
    Action::Pause
}
