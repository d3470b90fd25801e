//! Metrics defined once per VM. Envoy exposes them as `wasmcustom.mcp_guard.*` in `/stats`.

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::auth::DenyReason;

/// A rule or role as one word of a metric name: `[A-Za-z0-9_]`, at most 64 characters.
fn metric_word(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

pub struct Metrics {
    allowed: u32,
    /// Requests that carried a client copy of an identity header (in any spelling).
    identity_spoofed: u32,
    denied: [u32; DenyReason::ALL.len()],
    /// Streams reset mid-response because their key stopped holding.
    reset: [u32; DenyReason::ALL.len()],
    keyset_version: u32,
    seconds_since_sync: u32,
    sync_ok: u32,
    sync_failed: u32,
    linear_memory_bytes: u32,
    policy_version: u32,
    audit_mode: u32,
    bodies_inspected: u32,
    /// Per-rule counters of the body policy, defined on first use (rules come from config too).
    rule_counters: RefCell<HashMap<String, u32>>,
}

impl Metrics {
    pub fn define() -> Result<Self, proxy_wasm::types::Status> {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name);
        let gauge = |name: &str| hostcalls::define_metric(MetricType::Gauge, name);
        let mut denied = [0; DenyReason::ALL.len()];
        let mut reset = [0; DenyReason::ALL.len()];
        for ((denied, reset), reason) in denied.iter_mut().zip(&mut reset).zip(DenyReason::ALL) {
            *denied = counter(&format!("mcp_guard.requests.denied.{}", reason.code()))?;
            *reset = counter(&format!("mcp_guard.streams.reset.{}", reason.code()))?;
        }
        Ok(Self {
            allowed: counter("mcp_guard.requests.allowed")?,
            identity_spoofed: counter("mcp_guard.requests.identity_spoofed")?,
            denied,
            reset,
            keyset_version: gauge("mcp_guard.keyset.version")?,
            seconds_since_sync: gauge("mcp_guard.keyset.seconds_since_sync")?,
            sync_ok: counter("mcp_guard.sync.succeeded")?,
            sync_failed: counter("mcp_guard.sync.failed")?,
            linear_memory_bytes: gauge("mcp_guard.vm.linear_memory_bytes")?,
            policy_version: gauge("mcp_guard.config.policy_version")?,
            audit_mode: gauge("mcp_guard.config.audit_mode")?,
            bodies_inspected: counter("mcp_guard.body.inspected")?,
            rule_counters: RefCell::default(),
        })
    }

    pub fn allowed(&self) {
        let _ = hostcalls::increment_metric(self.allowed, 1);
    }
    pub fn identity_spoofed(&self) {
        let _ = hostcalls::increment_metric(self.identity_spoofed, 1);
    }
    pub fn denied(&self, reason: DenyReason) {
        if let Some(i) = DenyReason::ALL.iter().position(|r| *r == reason) {
            let _ = hostcalls::increment_metric(self.denied[i], 1);
        }
    }
    /// What configuration this proxy runs: which `policy_version`, and 1 when in audit mode.
    pub fn configuration(&self, policy_version: u32, audit: bool) {
        let _ = hostcalls::record_metric(self.policy_version, u64::from(policy_version));
        let _ = hostcalls::record_metric(self.audit_mode, u64::from(audit));
    }
    pub fn stream_reset(&self, reason: DenyReason) {
        if let Some(i) = DenyReason::ALL.iter().position(|r| *r == reason) {
            let _ = hostcalls::increment_metric(self.reset[i], 1);
        }
    }
    pub fn keyset(&self, version: u64, seconds_since_sync: u64) {
        let _ = hostcalls::record_metric(self.keyset_version, version);
        let _ = hostcalls::record_metric(self.seconds_since_sync, seconds_since_sync);
    }
    /// Size of this VM's linear memory (every VM of the plugin reports into the same gauge; they
    /// differ little, and the bench reads it after load).
    pub fn linear_memory(&self) {
        let bytes = core::arch::wasm32::memory_size(0) as u64 * 65_536;
        let _ = hostcalls::record_metric(self.linear_memory_bytes, bytes);
    }

    pub fn body_inspected(&self) {
        let _ = hostcalls::increment_metric(self.bodies_inspected, 1);
    }

    /// Counts a body-policy hit: `mcp_guard.body.rejected.<rule>` in enforce mode,
    /// `mcp_guard.body.audit.<rule>` in audit mode (would have been rejected).
    pub fn body_rule(&self, rule: &str, audit: bool) {
        let outcome = if audit { "audit" } else { "rejected" };
        self.count(format!("mcp_guard.body.{outcome}.{}", metric_word(rule)));
    }

    /// Counts a tool-policy decision by role: `mcp_guard.policy.<outcome>.<role>`, outcome
    /// `allowed`, `forbidden` or `audit` (would have been forbidden). Roles are the operator's
    /// labels, so their number is bounded; tools are never a metric name.
    pub fn policy(&self, outcome: &str, role: &str) {
        self.count(format!("mcp_guard.policy.{outcome}.{}", metric_word(role)));
    }

    /// Increments a counter defined on first use.
    fn count(&self, name: String) {
        let mut counters = self.rule_counters.borrow_mut();
        let id = match counters.get(&name) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, &name) {
                Ok(id) => *counters.entry(name).or_insert(id),
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, 1);
    }

    pub fn sync_result(&self, ok: bool) {
        let id = if ok { self.sync_ok } else { self.sync_failed };
        let _ = hostcalls::increment_metric(id, 1);
    }
}
