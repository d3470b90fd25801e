//! Per-request context: read the headers once, hand them to [`crate::request::decide`], then apply
//! the decision (strip and set headers, or send the local reply).

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType};

use super::host::{log, log_enabled, now_ms, HostStore};
use super::metrics::Metrics;
use crate::auth::{DenyReason, Identity};
use crate::config::Config;
use crate::keyset::{lookup, Lookup};
use crate::reply;
use crate::request::{decide, RequestHeaders, IDENTITY_HEADERS};

/// Filter-state names (Envoy prefixes `wasm.`): `%FILTER_STATE(wasm.mcp_guard.key_id:PLAIN)%`.
const STATE_KEY_ID: &str = "mcp_guard.key_id";
const STATE_ORG: &str = "mcp_guard.org";
const STATE_ROLE: &str = "mcp_guard.role";
const STATE_DENIED: &str = "mcp_guard.denied";

pub struct GuardHttp {
    config: Option<Rc<Config>>,
    metrics: Option<Rc<Metrics>>,
}

impl GuardHttp {
    pub fn new(config: Option<Rc<Config>>, metrics: Option<Rc<Metrics>>) -> Self {
        Self { config, metrics }
    }

    fn allow(&self, config: &Config, identity: &Identity) -> Action {
        if !config.keep_authorization {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "authorization");
        }
        let values = [&identity.key_id, &identity.org, &identity.role];
        for (name, value) in IDENTITY_HEADERS.iter().zip(values) {
            // Replace, never append: the client's copies are already gone, and this keeps it so.
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
        }
        for (name, value) in [STATE_KEY_ID, STATE_ORG, STATE_ROLE]
            .into_iter()
            .zip(values)
        {
            let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
        }
        if let Some(metrics) = &self.metrics {
            metrics.allowed();
        }
        Action::Continue
    }

    /// The one place that denies: metric, debug line (key-id only, never the secret), local reply.
    fn deny(&self, reason: DenyReason, key_id: Option<&str>, request_id: Option<&str>) -> Action {
        if let Some(metrics) = &self.metrics {
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
        let _ = hostcalls::set_property(vec![STATE_DENIED], Some(reason.code().as_bytes()));
        if let Some(key_id) = key_id {
            let _ = hostcalls::set_property(vec![STATE_KEY_ID], Some(key_id.as_bytes()));
        }
        let (challenge, retry_after) = match &self.config {
            Some(config) => (config.challenge.as_str(), config.retry_after_seconds),
            None => ("Bearer realm=\"mcp\"", 1),
        };
        let reply = reply::deny(reason, challenge, retry_after, request_id);
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        if hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()))
            .is_err()
        {
            // Without a local reply the only safe outcome is to kill the stream.
            let _ = hostcalls::reset_http_request();
        }
        Action::Pause
    }
}

impl Context for GuardHttp {}

impl HttpContext for GuardHttp {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let pairs = match hostcalls::get_map(MapType::HttpRequestHeaders) {
            Ok(pairs) => pairs,
            Err(_) => return self.deny(DenyReason::KeySetNotLoaded, None, None),
        };
        let headers = RequestHeaders::from_pairs(&pairs);

        // Before any early return: the client never gets to choose its own identity headers.
        for (name, sent) in IDENTITY_HEADERS.iter().zip(headers.spoofed_identity) {
            if sent {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
            }
        }

        #[cfg(feature = "trap-on-demand")]
        if pairs
            .iter()
            .any(|(name, _)| name == "x-mcp-guard-test-trap")
        {
            core::arch::wasm32::unreachable();
        }

        let Some(config) = self.config.clone() else {
            return self.deny(DenyReason::KeySetNotLoaded, None, headers.request_id);
        };
        let lookup_key =
            |key_id: &str| lookup(&HostStore, &config.keys, key_id).unwrap_or(Lookup::NotLoaded);
        let decision = decide(&headers, &config, lookup_key, || now_ms() / 1_000);
        match decision.result {
            Ok(identity) => self.allow(&config, &identity),
            Err(reason) => self.deny(reason, decision.key_id, headers.request_id),
        }
    }
}
