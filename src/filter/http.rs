//! Per-request context: read the headers once, hand them to [`crate::auth::request::decide`], then apply
//! the decision (strip and set headers, or send the local reply). POSTs to inspected paths are
//! held (headers included: Envoy's `allow_on_headers_stop_iteration`) until the whole body has
//! been judged by [`crate::mcp`]; the end of the body is its end of stream or the trailers.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::answer::{
    deny, record_decision, STATE_KEY_ID, STATE_METHOD, STATE_ORG, STATE_ROLE, STATE_TOOL,
    STATE_USER,
};
use super::host::{header_pairs, header_value, log, log_enabled, now_ms, HostStore};
use super::inflight::{key_set_now, lookup_now, stop};
use super::metrics::Metrics;
use crate::auth::request::{
    decide, redactions, spells_identity_header, Redaction, RequestHeaders, IDENTITY_HEADERS,
    TOOL_HEADER,
};
use crate::auth::smuggled::holds_token;
use crate::auth::{DenyReason, Identity};
use crate::config::{Config, Mode};
use crate::keyset::policy::PolicyCache;
use crate::keyset::state::ServingState;
use crate::keyset::{lookup_fresh, Freshness, Lookup};
use crate::mcp::formats::Format;
use crate::mcp::gate::PolicyGate;
use crate::mcp::inspect::{RejectKind, Rejection};
use crate::mcp::plan::{body_plan, BodyPlan, EarlyRejection};
use crate::mcp::tools_list::SseFilter;
use crate::mcp::{inspect_request_gated, BodyBuffer, McpHeaders, Outcome, Step, Verdict};
use crate::streams::{LiveStreams, Stopped};
use mcp_guard_protocol::policy::{CompiledPolicy, Mode as PolicyMode};

pub struct GuardHttp {
    context_id: u32,
    config: Option<Rc<Config>>,
    metrics: Option<Rc<Metrics>>,
    /// This worker's authenticated streams, re-checked here and by the root context's timer.
    streams: Rc<RefCell<LiveStreams>>,
    /// This worker's compiled tool policies.
    policies: Rc<RefCell<PolicyCache>>,
    /// Set when the answer is a `tools/list` result to cut down to the role's tools.
    list_filter: Option<ListFilter>,
    /// The authenticated caller's org and role: any event stream of a restricted role is
    /// filtered too (a resumed stream or the legacy SSE transport may carry a tools/list).
    caller: Option<(String, String)>,
    /// Set while an authenticated POST is held for body inspection.
    pending: Option<PendingBody>,
    /// Test-only: trap in this later phase (`body` or `response`).
    #[cfg(feature = "trap-on-demand")]
    trap_in: Option<String>,
}

/// A `tools/list` answer on its way to a role that may not call every tool.
struct ListFilter {
    judge: ToolJudge,
    form: ListForm,
}

enum ListForm {
    /// Until the response headers say.
    Unknown,
    /// One JSON body, held whole (headers too, so that Content-Length can be set right).
    Json,
    /// `text/event-stream`, filtered event by event as chunks arrive.
    Sse(SseFilter),
    /// The answer cannot be filtered (compressed, or it did not parse): the client gets the
    /// JSON-RPC error once (as an SSE event on a stream), and nothing else of the answer.
    Failed { sse: bool, error_sent: bool },
}

/// Whose answer it is: the decision on each listed tool.
struct ToolJudge {
    policy: Rc<CompiledPolicy>,
    role: String,
}

impl ToolJudge {
    fn may_call(&self, tool: &str) -> bool {
        self.policy
            .decide(&self.role, Some("tools/call"), Some(tool))
            .allowed
    }
}

/// How fresh a re-check's view of the key set must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recheck {
    /// Read shared data: before a request is forwarded, and before its answer starts.
    Strict,
    /// The newest state this worker has seen: response body chunks, where the timer backs it up.
    Seen,
}

/// What the body phase needs from the headers phase.
struct PendingBody {
    buffer: BodyBuffer,
    /// The last cumulative body size Envoy reported.
    reported: usize,
    mcp_method: Vec<String>,
    mcp_name: Vec<String>,
    key_id: String,
    org: String,
    role: String,
    request_id: Option<String>,
    /// Not a POST: any body byte refuses the request (only POST carries MCP messages).
    must_be_empty: bool,
}

impl PendingBody {
    fn new(
        config: &Config,
        identity: &Identity,
        request_id: Option<&str>,
        (mcp_method, mcp_name): (Vec<String>, Vec<String>),
        must_be_empty: bool,
    ) -> Self {
        Self {
            buffer: BodyBuffer::new(config.max_body_bytes),
            reported: 0,
            mcp_method,
            mcp_name,
            key_id: identity.key_id.clone(),
            org: identity.org.clone(),
            role: identity.role.clone(),
            request_id: request_id.map(str::to_string),
            must_be_empty,
        }
    }
}

/// A body-policy rejection on its way to the client (or, in audit mode, to the log only).
struct BodyRejection<'a> {
    status: u32,
    rule: &'a str,
    body: String,
    tool: Option<&'a str>,
    path: &'a str,
}

impl GuardHttp {
    pub fn new(
        context_id: u32,
        config: Option<Rc<Config>>,
        metrics: Option<Rc<Metrics>>,
        streams: Rc<RefCell<LiveStreams>>,
        policies: Rc<RefCell<PolicyCache>>,
    ) -> Self {
        Self {
            context_id,
            config,
            metrics,
            streams,
            policies,
            list_filter: None,
            caller: None,
            pending: None,
            #[cfg(feature = "trap-on-demand")]
            trap_in: None,
        }
    }

    /// Re-checks this stream's key against the key set as it is now; `Some` when it must stop.
    /// `Strict` reads shared data; `Seen` first compares with the newest key-set mark this worker
    /// has read (no host call while nothing changed; the timer keeps it within one tick).
    fn recheck(&self, freshness: Recheck) -> Option<Stopped> {
        let config = self.config.as_deref()?;
        let mut streams = self.streams.try_borrow_mut().ok()?;
        let needs_clock = streams.needs_clock(self.context_id) || config.max_staleness_ms.is_some();
        if freshness == Recheck::Seen && !needs_clock && !streams.may_have_changed(self.context_id)
        {
            return None;
        }
        let now = key_set_now(config, needs_clock);
        streams.observe(&now.state);
        streams.recheck(self.context_id, &now, |key_id| {
            lookup_now(config, &now, key_id)
        })
    }

    /// Stops tracking this stream (it is answered locally, or it is over).
    fn forget(&self) {
        if let Ok(mut streams) = self.streams.try_borrow_mut() {
            streams.forget(self.context_id);
        }
    }

    /// After authentication: forward, hold the request for its body, or refuse it already.
    fn plan_body(
        &mut self,
        config: &Config,
        pairs: &[(String, String)],
        identity: &Identity,
        request_id: Option<&str>,
        end_of_stream: bool,
    ) -> Action {
        match body_plan(pairs, config, end_of_stream) {
            BodyPlan::Forward => Action::Continue,
            BodyPlan::ExpectEmpty => {
                self.pending = Some(PendingBody::new(
                    config,
                    identity,
                    request_id,
                    (Vec::new(), Vec::new()),
                    true,
                ));
                Action::Pause
            }
            BodyPlan::Reject(early) => {
                self.refuse_whole_body(config, early, &identity.key_id, request_id)
            }
            BodyPlan::Inspect {
                mcp_method,
                mcp_name,
            } => {
                self.pending = Some(PendingBody::new(
                    config,
                    identity,
                    request_id,
                    (mcp_method, mcp_name),
                    false,
                ));
                if end_of_stream {
                    // A POST without a body: judged now (it is not valid JSON-RPC).
                    self.judge_body(config)
                } else {
                    Action::Pause
                }
            }
        }
    }

    /// The body is complete (end of stream or trailers): read it once and judge it.
    fn judge_body(&mut self, config: &Config) -> Action {
        let Some(mut pending) = self.pending.take() else {
            return Action::Continue;
        };
        if let Step::Read { offset, len } = pending.buffer.offer(pending.reported) {
            match hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpRequestBody, offset, len)
            {
                Ok(Some(bytes)) => {
                    let _ = pending.buffer.push(offset, &bytes);
                }
                Ok(None) => {}
                Err(_) => return self.body_too_large(config, &pending),
            }
        }
        let body = match pending.buffer.finish() {
            Some(Outcome::Complete(body)) => body,
            // Over the limit, or bytes Envoy reported but would not hand over: never judge a part.
            Some(Outcome::OverLimit) | None => return self.body_too_large(config, &pending),
        };
        if pending.must_be_empty {
            return if body.is_empty() {
                self.forward_if_key_holds(&pending.key_id, pending.request_id.as_deref())
            } else {
                self.body_not_allowed(config, &pending)
            };
        }
        if let Some(metrics) = &self.metrics {
            metrics.body_inspected();
        }
        let method: Vec<&str> = pending.mcp_method.iter().map(String::as_str).collect();
        let name: Vec<&str> = pending.mcp_name.iter().map(String::as_str).collect();
        let headers = McpHeaders {
            method: &method,
            name: &name,
        };
        // The org's policy as it is now: a change applies to every request not yet forwarded.
        let Ok(policy) = self.org_policy(config, &pending.org) else {
            return self.deny(
                DenyReason::KeySetNotLoaded,
                Some(&pending.key_id),
                pending.request_id.as_deref(),
            );
        };
        let audit_policy = config.mode == Mode::Audit
            || policy.as_ref().is_some_and(|p| p.mode == PolicyMode::Audit);
        let mut gate = PolicyGate::new(policy.as_deref(), &pending.role, audit_policy);
        let mut audited = Vec::new();
        let verdict =
            inspect_request_gated(body, &headers, &config.inspect, &mut audited, &mut gate);
        if let Some((method, tool)) = &gate.first {
            let _ = hostcalls::set_property(vec![STATE_METHOD], Some(method.as_bytes()));
            if let Some(tool) = tool {
                let _ = hostcalls::set_property(vec![STATE_TOOL], Some(tool.as_bytes()));
            }
        }
        match verdict {
            // The key may have been revoked while the body was uploading: check again before
            // anything is forwarded.
            Verdict::Allow => {
                if let Some(tool) = gate.tool_for_limits() {
                    // The headers are still held: filters after this one see it.
                    let _ = hostcalls::set_map_value(
                        MapType::HttpRequestHeaders,
                        TOOL_HEADER,
                        Some(tool),
                    );
                }
                self.note_policy(&gate, &pending);
                if let Some(policy) = policy.clone().filter(|p| {
                    gate.lists_tools && !audit_policy && !p.sees_every_tool(&pending.role)
                }) {
                    self.list_filter = Some(ListFilter {
                        judge: ToolJudge {
                            policy,
                            role: pending.role.clone(),
                        },
                        form: ListForm::Unknown,
                    });
                    // The answer is read and rewritten: it must come uncompressed.
                    let _ =
                        hostcalls::remove_map_value(MapType::HttpRequestHeaders, "accept-encoding");
                }
                self.note_audited_formats(&audited, &pending);
                self.forward_if_key_holds(&pending.key_id, pending.request_id.as_deref())
            }
            Verdict::Reject(rejection) if rejection.kind == RejectKind::Forbidden => {
                self.forbid(config, &rejection, &pending)
            }
            Verdict::Reject(rejection) => self.reject_body(
                config,
                BodyRejection {
                    status: u32::from(rejection.status),
                    rule: &rejection.rule,
                    body: rejection.body(),
                    tool: rejection.tool.as_deref(),
                    path: &rejection.path,
                },
                &pending.key_id,
                pending.request_id.as_deref(),
            ),
        }
    }

    /// A filter for an event stream of a role that may not call every tool; a stream whose
    /// policy cannot be read is refused like one that cannot be filtered.
    fn stream_filter(&self) -> Option<ListFilter> {
        let config = self.config.as_deref()?;
        let (org, role) = self.caller.as_ref()?;
        let failed = ListForm::Failed {
            sse: true,
            error_sent: false,
        };
        match self.org_policy(config, org) {
            Ok(Some(policy)) => {
                let audit = config.mode == Mode::Audit || policy.mode == PolicyMode::Audit;
                (!audit && !policy.sees_every_tool(role)).then(|| ListFilter {
                    judge: ToolJudge {
                        policy,
                        role: role.clone(),
                    },
                    form: ListForm::Unknown,
                })
            }
            Ok(None) => None,
            Err(()) => Some(ListFilter {
                judge: ToolJudge {
                    policy: Rc::new(CompiledPolicy::compile(&Default::default())),
                    role: role.clone(),
                },
                form: failed,
            }),
        }
    }

    /// The org's compiled tool policy under the serving state as it is now (`None`: none).
    fn org_policy(&self, config: &Config, org: &str) -> Result<Option<Rc<CompiledPolicy>>, ()> {
        let (state, _) = ServingState::read(&HostStore, config.keys.state()).map_err(|_| ())?;
        let mut policies = self.policies.try_borrow_mut().map_err(|_| ())?;
        policies
            .policy_for(&HostStore, &config.keys, &state, org)
            .map_err(|_| ())
    }

    /// An admitted body under a policy: counted by role, and in audit mode what would have
    /// been forbidden is counted, logged and recorded.
    fn note_policy(&self, gate: &PolicyGate<'_>, pending: &PendingBody) {
        if !gate.has_policy() {
            return;
        }
        let Some(rule) = gate.would_forbid else {
            if let Some(metrics) = &self.metrics {
                metrics.policy("allowed", &pending.role);
            }
            return;
        };
        if let Some(metrics) = &self.metrics {
            metrics.policy("audit", &pending.role);
        }
        if log_enabled(LogLevel::Info) {
            let (method, tool) = gate.first.clone().unwrap_or_default();
            log(
                LogLevel::Info,
                &format!(
                    "mcp-guard: audit: tool policy would forbid rule={rule} role={} method={method} \
                     tool={} key_id={} request_id={}",
                    pending.role,
                    tool.as_deref().unwrap_or("-"),
                    pending.key_id,
                    pending.request_id.as_deref().unwrap_or("-"),
                ),
            );
        }
        record_decision("audit", Some(rule));
    }

    /// The tool policy refuses: 403 with the RFC 6750 `insufficient_scope` challenge and the
    /// JSON-RPC error; the upstream never sees the request.
    fn forbid(&mut self, config: &Config, rejection: &Rejection, pending: &PendingBody) -> Action {
        self.forget();
        if let Some(metrics) = &self.metrics {
            metrics.policy("forbidden", &pending.role);
        }
        if log_enabled(LogLevel::Debug) {
            log(
                LogLevel::Debug,
                &format!(
                    "mcp-guard: forbid rule={} role={} tool={} key_id={} request_id={}",
                    rejection.rule,
                    pending.role,
                    rejection.tool.as_deref().unwrap_or("-"),
                    pending.key_id,
                    pending.request_id.as_deref().unwrap_or("-"),
                ),
            );
        }
        record_decision("forbid", Some(&rejection.rule));
        let challenge = format!("{}, error=\"insufficient_scope\"", config.challenge);
        let headers = vec![
            ("content-type", "application/json"),
            ("www-authenticate", challenge.as_str()),
        ];
        let body = rejection.body();
        if hostcalls::send_http_response(
            u32::from(rejection.status),
            headers,
            Some(body.as_bytes()),
        )
        .is_err()
        {
            let _ = hostcalls::reset_http_request();
        }
        Action::Pause
    }

    /// Credential formats set to `audit` that an allowed body holds: counted and logged, never
    /// with the value.
    fn note_audited_formats(&self, audited: &[Format], pending: &PendingBody) {
        for format in audited {
            if let Some(metrics) = &self.metrics {
                metrics.body_rule(format.rule(), true);
            }
            if log_enabled(LogLevel::Info) {
                log(
                    LogLevel::Info,
                    &format!(
                        "mcp-guard: audit: value format rule={} key_id={} request_id={}",
                        format.rule(),
                        pending.key_id,
                        pending.request_id.as_deref().unwrap_or("-"),
                    ),
                );
            }
        }
        if let Some(first) = audited.first() {
            record_decision("audit", Some(first.rule()));
        }
    }

    /// The last check before anything is forwarded: the key may have been revoked while the
    /// body was uploading.
    fn forward_if_key_holds(&self, key_id: &str, request_id: Option<&str>) -> Action {
        match self.recheck(Recheck::Strict) {
            None => Action::Continue,
            Some(stopped) => self.deny(stopped.cut.reason(), Some(key_id), request_id),
        }
    }

    fn body_not_allowed(&mut self, config: &Config, pending: &PendingBody) -> Action {
        let early = EarlyRejection::new(
            400,
            "body_not_allowed",
            "Only POST requests carry MCP messages: send no body with other methods",
        );
        self.refuse_whole_body(
            config,
            early,
            &pending.key_id,
            pending.request_id.as_deref(),
        )
    }

    fn body_too_large(&mut self, config: &Config, pending: &PendingBody) -> Action {
        let early = EarlyRejection::new(
            413,
            "body_too_large",
            "The request body is larger than this endpoint accepts",
        );
        self.refuse_whole_body(
            config,
            early,
            &pending.key_id,
            pending.request_id.as_deref(),
        )
    }

    /// A refusal about the body as a whole (no tool, no argument path).
    fn refuse_whole_body(
        &mut self,
        config: &Config,
        early: EarlyRejection,
        key_id: &str,
        request_id: Option<&str>,
    ) -> Action {
        self.reject_body(
            config,
            BodyRejection {
                status: early.status,
                rule: &early.rule,
                body: early.body,
                tool: None,
                path: "-",
            },
            key_id,
            request_id,
        )
    }

    /// The one place the body policy refuses: metric per rule, debug line (key-id, tool, path and
    /// rule, never a value), then the JSON-RPC error, or in audit mode only the metric and the line.
    fn reject_body(
        &mut self,
        config: &Config,
        rejection: BodyRejection<'_>,
        key_id: &str,
        request_id: Option<&str>,
    ) -> Action {
        let audit = config.mode == Mode::Audit;
        self.pending = None;
        if let Some(metrics) = &self.metrics {
            metrics.body_rule(rejection.rule, audit);
        }
        let level = if audit {
            LogLevel::Info
        } else {
            LogLevel::Debug
        };
        if log_enabled(level) {
            log(
                level,
                &format!(
                    "mcp-guard: {} rule={} key_id={key_id} tool={} path={} status={} request_id={}",
                    if audit {
                        "audit: would reject"
                    } else {
                        "body rejected"
                    },
                    rejection.rule,
                    rejection.tool.unwrap_or("-"),
                    rejection.path,
                    rejection.status,
                    request_id.unwrap_or("-"),
                ),
            );
        }
        if audit {
            record_decision("audit", Some(rejection.rule));
            // Forwarded in audit mode, so the key gets the same last check as an allowed body.
            return self.forward_if_key_holds(key_id, request_id);
        }
        self.forget();
        record_decision("block", Some(rejection.rule));
        let headers = vec![("content-type", "application/json")];
        if hostcalls::send_http_response(rejection.status, headers, Some(rejection.body.as_bytes()))
            .is_err()
        {
            let _ = hostcalls::reset_http_request();
        }
        Action::Pause
    }

    fn allow(&self, config: &Config, identity: &Identity) {
        if !config.keep_authorization {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "authorization");
        }
        let values = [
            Some(identity.key_id.as_str()),
            Some(identity.org.as_str()),
            Some(identity.role.as_str()),
            identity.user.as_deref(),
        ];
        let states = [STATE_KEY_ID, STATE_ORG, STATE_ROLE, STATE_USER];
        for ((header, state), value) in IDENTITY_HEADERS.iter().zip(states).zip(values) {
            // A service key has no user: the client's copy is already gone and none is added.
            let Some(value) = value else { continue };
            // Replace, never append: the client's copies are already gone, and this keeps it so.
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, header, Some(value));
            let _ = hostcalls::set_property(vec![state], Some(value.as_bytes()));
        }
        record_decision("allow", None);
        if let Some(metrics) = &self.metrics {
            metrics.allowed();
        }
    }

    fn deny(&self, reason: DenyReason, key_id: Option<&str>, request_id: Option<&str>) -> Action {
        self.forget();
        deny(
            self.config.as_deref(),
            self.metrics.as_deref(),
            reason,
            key_id,
            request_id,
        )
    }
}

/// Takes every credential out of a refused request's headers (and `Authorization` always), so
/// that the access log and anything else that reads the request after the local reply sees none.
fn redact_refused_request(pairs: &[(String, String)]) {
    for redaction in redactions(pairs) {
        match redaction {
            Redaction::Remove(name) => {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, &name);
            }
            Redaction::Replace(name, values) => {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, &name);
                for value in values {
                    let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, &name, &value);
                }
            }
        }
    }
}

fn trailers_hold_token(trailers: &[(String, String)]) -> bool {
    trailers
        .iter()
        .any(|(name, value)| holds_token(name) || holds_token(value))
}

impl Context for GuardHttp {}

impl HttpContext for GuardHttp {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let Some(pairs) = header_pairs(MapType::HttpRequestHeaders) else {
            // Nothing is known of the request: at least no Authorization reaches a log.
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "authorization");
            return self.deny(DenyReason::KeySetNotLoaded, None, None);
        };
        let headers = RequestHeaders::from_pairs(&pairs);

        // Before any early return: the client never gets to choose its own identity headers,
        // in any spelling a server might read as one.
        for name in &headers.spoofed_identity {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
        }
        if !headers.spoofed_identity.is_empty() {
            if let Some(metrics) = &self.metrics {
                metrics.identity_spoofed();
            }
        }

        // `x-mcp-guard-test-trap: sync-leader` asks whichever VM runs the key-set sync to trap
        // at its next tick (to prove another takes over); `body` and `response` trap this VM in
        // that phase of this request; any other value traps it now.
        #[cfg(feature = "trap-on-demand")]
        if let Some((_, value)) = pairs
            .iter()
            .find(|(name, _)| name == "x-mcp-guard-test-trap")
        {
            match value.as_str() {
                "sync-leader" => {
                    let _ = hostcalls::set_shared_data(super::TRAP_SYNC_LEADER, Some(b"1"), None);
                }
                "body" | "response" => self.trap_in = Some(value.clone()),
                _ => core::arch::wasm32::unreachable(),
            }
        }

        let Some(config) = self.config.clone() else {
            redact_refused_request(&pairs);
            return self.deny(DenyReason::KeySetNotLoaded, None, headers.request_id);
        };
        let freshness = config.max_staleness_ms.map(|max_staleness_ms| Freshness {
            now_ms: now_ms(),
            max_staleness_ms,
        });
        // What the stream will remember as "verified at": the state and the key's hash row.
        let mut verified: Option<(ServingState, [u8; 32], Option<u64>)> = None;
        let lookup_key = |key_id: &str| {
            let Ok((found, state)) = lookup_fresh(&HostStore, &config.keys, key_id, freshness)
            else {
                return Lookup::NotLoaded;
            };
            if let Lookup::Active(record) = &found {
                verified = Some((state, record.sha256, record.expires_at));
            }
            found
        };
        let decision = decide(&headers, &config, lookup_key, || now_ms() / 1_000);
        match decision.result {
            Ok(identity) => {
                if let (Some((state, sha256, expires_at)), Ok(mut streams)) =
                    (verified, self.streams.try_borrow_mut())
                {
                    streams.observe(&state);
                    streams.track(
                        self.context_id,
                        &identity.key_id,
                        sha256,
                        expires_at,
                        &state,
                    );
                }
                self.allow(&config, &identity);
                let action = self.plan_body(
                    &config,
                    &pairs,
                    &identity,
                    headers.request_id,
                    end_of_stream,
                );
                self.caller = Some((identity.org, identity.role));
                action
            }
            Err(reason) => {
                redact_refused_request(&pairs);
                self.deny(reason, decision.key_id, headers.request_id)
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "trap-on-demand")]
        if self.trap_in.as_deref() == Some("body") {
            core::arch::wasm32::unreachable();
        }
        let Some(pending) = self.pending.as_mut() else {
            return Action::Continue;
        };
        // `body_size` is everything Envoy has buffered so far, not this chunk.
        pending.reported = pending.reported.max(body_size);
        let over_limit = pending.buffer.offer(pending.reported) == Step::OverLimit;
        let Some(config) = self.config.clone() else {
            return Action::Pause;
        };
        if over_limit {
            let Some(pending) = self.pending.take() else {
                return Action::Pause;
            };
            return self.body_too_large(&config, &pending);
        }
        if end_of_stream {
            self.judge_body(&config)
        } else {
            Action::Pause
        }
    }

    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        // Trailers are headers too: a credential there is refused like one in a header. A
        // request whose headers were already forwarded (no body held) is reset instead.
        if let Some(trailers) = header_pairs(MapType::HttpRequestTrailers) {
            // Trailers cannot carry identity either (an HTTP/2 upstream may merge them).
            for (name, _) in trailers.iter().filter(|(n, _)| spells_identity_header(n)) {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestTrailers, name);
            }
            if trailers_hold_token(&trailers) {
                for (name, _) in &trailers {
                    let _ = hostcalls::remove_map_value(MapType::HttpRequestTrailers, name);
                }
                let Some(pending) = self.pending.take() else {
                    if let Some(metrics) = &self.metrics {
                        metrics.denied(DenyReason::TokenInHeader);
                    }
                    record_decision("reset", Some(DenyReason::TokenInHeader.code()));
                    self.forget();
                    let _ = hostcalls::reset_http_request();
                    return Action::Pause;
                };
                let request_id = pending.request_id.as_deref();
                return self.deny(DenyReason::TokenInHeader, Some(&pending.key_id), request_id);
            }
        }
        // With trailers (HTTP/2, chunked), the body never sees end of stream: this is its end.
        match self.config.clone() {
            Some(config) if self.pending.is_some() => self.judge_body(&config),
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "trap-on-demand")]
        if self.trap_in.as_deref() == Some("response") {
            core::arch::wasm32::unreachable();
        }
        // Revoked while the upstream worked: the client gets the 401, not the answer. A strict
        // read: nothing of the answer has left the proxy yet, and this is the last chance to
        // replace it.
        if let Some(stopped) = self.recheck(Recheck::Strict) {
            return stop(&stopped, self.config.as_deref(), self.metrics.as_deref());
        }
        if let Ok(mut streams) = self.streams.try_borrow_mut() {
            streams.response_started(self.context_id);
        }
        if self.list_filter.is_none() && self.caller.is_none() {
            // Not authenticated (a local reply): nothing of a role to filter.
            return Action::Continue;
        }
        let headers = MapType::HttpResponseHeaders;
        let sse = header_value(headers, "content-type")
            .get(..17)
            .is_some_and(|t| t.eq_ignore_ascii_case(b"text/event-stream"));
        if self.list_filter.is_none() && sse {
            self.list_filter = self.stream_filter();
        }
        let Some(filter) = self.list_filter.as_mut() else {
            return Action::Continue;
        };
        if end_of_stream {
            // No body: nothing to filter, nothing to hold.
            return Action::Continue;
        }
        // The body changes size: the old length would be wrong.
        let _ = hostcalls::remove_map_value(headers, "content-length");
        if matches!(filter.form, ListForm::Failed { .. }) {
            return Action::Continue;
        }
        let encoding = header_value(headers, "content-encoding");
        if !encoding.is_empty() && !encoding.eq_ignore_ascii_case(b"identity") {
            // Compressed bytes cannot be read, and must not pass: the error replaces them.
            let _ = hostcalls::remove_map_value(headers, "content-encoding");
            filter.form = ListForm::Failed {
                sse,
                error_sent: false,
            };
            return if sse { Action::Continue } else { Action::Pause };
        }
        if sse {
            filter.form = ListForm::Sse(SseFilter::default());
            Action::Continue
        } else {
            filter.form = ListForm::Json;
            // Held until the body is judged, so that its length can be set.
            Action::Pause
        }
    }

    fn on_http_response_trailers(&mut self, _: usize) -> Action {
        // Trailers end a held JSON answer without an end of stream on its body: it was never
        // judged, and must not be flushed as it is.
        let unjudged = self.list_filter.as_ref().is_some_and(|filter| {
            matches!(
                filter.form,
                ListForm::Json | ListForm::Failed { sse: false, .. }
            )
        });
        if unjudged {
            record_decision("reset", Some("tools_list_unfilterable"));
            let _ = hostcalls::reset_http_request();
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Each chunk of a long answer (SSE) passes only while the key holds; Pause keeps this
        // chunk back while the reset takes effect.
        if let Some(stopped) = self.recheck(Recheck::Seen) {
            return stop(&stopped, self.config.as_deref(), self.metrics.as_deref());
        }
        match self.list_filter.as_mut() {
            Some(filter) => filter_list_answer(filter, body_size, end_of_stream),
            None => Action::Continue,
        }
    }
}

/// One callback of a `tools/list` answer: JSON is held to its end and replaced whole; SSE is
/// replaced chunk by chunk with the events that are complete. What cannot be filtered is
/// replaced by a JSON-RPC error and nothing after it passes.
fn filter_list_answer(filter: &mut ListFilter, body_size: usize, end_of_stream: bool) -> Action {
    use crate::mcp::tools_list::{filter_json, unfilterable};
    let body = BufferType::HttpResponseBody;
    let held = matches!(
        filter.form,
        ListForm::Json | ListForm::Failed { sse: false, .. }
    );
    if held && !end_of_stream {
        // Envoy keeps buffering; the body is read once, at its end.
        return Action::Pause;
    }
    let chunk = match hostcalls::get_buffer(body, 0, body_size) {
        Ok(bytes) => bytes.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let replacement = match &mut filter.form {
        ListForm::Failed { sse, error_sent } => {
            let error = unfilterable(&filter.judge.role);
            let out = match (*sse, *error_sent) {
                (_, true) => Vec::new(),
                (true, false) => format!("event: message\ndata: {error}\n\n").into_bytes(),
                (false, false) => error.into_bytes(),
            };
            *error_sent = true;
            if !*sse {
                let length = out.len().to_string();
                let _ = hostcalls::set_map_value(
                    MapType::HttpResponseHeaders,
                    "content-length",
                    Some(&length),
                );
            }
            Some(out)
        }
        ListForm::Json | ListForm::Unknown => {
            let filtered = if chunk.is_empty() {
                Ok(None)
            } else {
                filter_json(&chunk, &|tool| filter.judge.may_call(tool))
            };
            let out = match filtered {
                Ok(None) => None,
                Ok(Some(out)) => Some(out),
                Err(_) => Some(unfilterable(&filter.judge.role).into_bytes()),
            };
            let length = out.as_ref().map_or(chunk.len(), Vec::len).to_string();
            let _ = hostcalls::set_map_value(
                MapType::HttpResponseHeaders,
                "content-length",
                Some(&length),
            );
            out
        }
        ListForm::Sse(sse) => {
            let judge = &filter.judge;
            let may_call = |tool: &str| judge.may_call(tool);
            let mut out = sse.push(&chunk, &may_call);
            if end_of_stream {
                out = out.and_then(|mut head| {
                    head.extend(sse.finish(&may_call)?);
                    Ok(head)
                });
            }
            match out {
                Ok(out) => Some(out),
                Err(_) => {
                    let error = format!(
                        "event: message\ndata: {}\n\n",
                        unfilterable(&filter.judge.role)
                    );
                    filter.form = ListForm::Failed {
                        sse: true,
                        error_sent: true,
                    };
                    Some(error.into_bytes())
                }
            }
        }
    };
    if let Some(out) = replacement {
        let _ = hostcalls::set_buffer(body, 0, chunk.len(), &out);
    }
    Action::Continue
}

impl Drop for GuardHttp {
    fn drop(&mut self) {
        // The SDK drops the context when Envoy deletes the stream.
        self.forget();
    }
}
