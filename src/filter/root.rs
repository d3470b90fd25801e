//! Root context: configuration, metrics, and the key-set sync loop.
//!
//! Every thread's VM ticks (the workers' and the main thread's); the one holding the lease in
//! shared data long-polls guardctl through `dispatch_http_call` and writes what it learns into
//! shared data, where every worker reads it. If it stops renewing (its VM died), another takes the
//! lease after [`LEASE_TTL_MS`].

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};

use super::host::{log, now_ms, HostStore};
use super::http::GuardHttp;
use super::inflight::{key_set_now, lookup_now, stop};
use super::metrics::Metrics;
use crate::config::{Config, Mode, LONG_POLL_SLACK_MS};
use crate::keyset::policy::PolicyCache;
use crate::keyset::state::{next_owner_id, proxy_name, Lease, ServingState};
use crate::keyset::sync::{apply_page, next_since, parse_page, Outcome};
use crate::streams::LiveStreams;
use mcp_guard_protocol::sync::{is_valid_proxy_name, FORMAT_PARAM, PROXY_PARAM};

/// The sync-page format this filter reads: the newest (users, tool policies).
const READ_FORMAT: u32 = mcp_guard_protocol::sync::PAGE_FORMAT;

const TICK: Duration = Duration::from_millis(100);
const LEASE_TTL_MS: u64 = 3_000;
const RETRY_MIN_MS: u64 = 250;
const RETRY_MAX_MS: u64 = 10_000;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const GIT_SHA: &str = match option_env!("MCP_GUARD_GIT_SHA") {
    Some(sha) => sha,
    None => "unknown",
};

pub struct GuardRoot {
    context_id: u32,
    config: Option<Rc<Config>>,
    metrics: Option<Rc<Metrics>>,
    /// Process-unique id for the sync lease; 0 until shared data hands one out.
    owner: u64,
    sync: SyncLoop,
    /// This worker's authenticated streams; the timer re-checks the idle ones.
    streams: Rc<RefCell<LiveStreams>>,
    policies: Rc<RefCell<PolicyCache>>,
    /// Whether this VM held the sync lease at its last attempt.
    leading: bool,
    /// Envoy's node id (empty when none was set), the first part of this proxy's name.
    node: String,
}

#[derive(Default)]
struct SyncLoop {
    /// The call in flight and the `since` it asked for.
    in_flight: Option<(u32, u64)>,
    /// Long-poll only once caught up; while loading, ask for the next page at once.
    caught_up: bool,
    not_before_ms: u64,
    failures: u32,
}

impl GuardRoot {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            config: None,
            metrics: None,
            owner: 0,
            sync: SyncLoop::default(),
            streams: Rc::default(),
            policies: Rc::default(),
            leading: false,
            node: String::new(),
        }
    }

    fn configure(&mut self) -> Result<(), String> {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .map_err(|s| format!("cannot read plugin configuration: {s:?}"))?
            .unwrap_or_default();
        let config = Config::from_json(&bytes).map_err(|e| e.to_string())?;
        self.node = hostcalls::get_property(vec!["node", "id"])
            .ok()
            .flatten()
            .map(|id| String::from_utf8_lossy(&id).into_owned())
            .unwrap_or_default();
        if self.metrics.is_none() {
            let metrics = Metrics::define().map_err(|s| format!("cannot define metrics: {s:?}"))?;
            self.metrics = Some(Rc::new(metrics));
        }
        hostcalls::set_tick_period(TICK).map_err(|s| format!("cannot set tick: {s:?}"))?;
        if let Some(metrics) = &self.metrics {
            metrics.configuration(config.policy_version, config.mode == Mode::Audit);
        }
        self.config = Some(Rc::new(config));
        self.sync = SyncLoop::default();
        Ok(())
    }

    /// Takes or renews the lease; true while this worker should run the sync loop.
    fn hold_lease(&mut self, config: &Config, now: u64) -> bool {
        if self.owner == 0 {
            match next_owner_id(&HostStore, config.keys.owner_sequence()) {
                Ok(id) => self.owner = id,
                Err(_) => return false,
            }
        }
        let held = Lease::acquire(
            &HostStore,
            config.keys.lease(),
            self.owner,
            now,
            LEASE_TTL_MS,
        )
        .unwrap_or(false);
        if held && !self.leading {
            // Once per takeover: which worker syncs is the first question when sync looks stuck.
            log(
                LogLevel::Info,
                &format!(
                    "mcp-guard: this thread now runs the key-set sync (lease owner {})",
                    self.owner
                ),
            );
        }
        self.leading = held;
        held
    }

    fn poll(&mut self, config: &Config) {
        let since = match next_since(&HostStore, &config.keys) {
            Ok(since) => since,
            Err(_) => return self.failed("shared data unavailable"),
        };
        let wait_ms = if self.sync.caught_up {
            config.long_poll_ms
        } else {
            0
        };
        let mut path = format!(
            "{}?since={since}&wait_ms={wait_ms}&{FORMAT_PARAM}={READ_FORMAT}",
            config.keyset_path
        );
        // Who is asking: guardctl answers a revoke once every proxy it has seen confirms it.
        let fresh_instance = || {
            hostcalls::get_current_time()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos())
                .to_string()
        };
        let name = proxy_name(
            &HostStore,
            config.keys.instance(),
            &self.node,
            fresh_instance,
        );
        // A name guardctl would refuse (shared data it did not write) is left out: the sync must
        // go on even when confirmations cannot.
        if let Some(name) = name.ok().filter(|n| is_valid_proxy_name(n)) {
            path.push_str(&format!("&{PROXY_PARAM}={name}"));
        }
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", config.keyset_authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_millis(wait_ms + LONG_POLL_SLACK_MS);
        match hostcalls::dispatch_http_call(&config.keyset_cluster, headers, None, vec![], timeout)
        {
            Ok(token) => self.sync.in_flight = Some((token, since)),
            Err(status) => self.failed(&format!(
                "cannot call cluster {:?}: {status:?}",
                config.keyset_cluster
            )),
        }
    }

    fn failed(&mut self, why: &str) {
        self.sync.failures = self.sync.failures.saturating_add(1);
        self.sync.caught_up = false;
        let backoff = RETRY_MIN_MS
            .saturating_mul(1 << self.sync.failures.min(6))
            .min(RETRY_MAX_MS);
        self.sync.not_before_ms = now_ms().saturating_add(backoff);
        if let Some(metrics) = &self.metrics {
            metrics.sync_result(false);
        }
        // Warn on the first failure of a streak, then stay quiet until it recovers.
        let level = if self.sync.failures == 1 {
            LogLevel::Warn
        } else {
            LogLevel::Debug
        };
        log(
            level,
            &format!("mcp-guard: key-set sync failed ({why}); serving the last-known set, retrying in {backoff} ms"),
        );
    }

    fn handle_response(
        &mut self,
        config: &Config,
        since: u64,
        num_headers: usize,
        body_size: usize,
    ) {
        if num_headers == 0 {
            return self.failed("no answer (timeout or connection failure)");
        }
        // Bytes: the SDK's string form traps on a value that is not UTF-8.
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .unwrap_or_default();
        if status != b"200" {
            let shown = String::from_utf8_lossy(&status);
            return self.failed(&format!("HTTP status {shown}"));
        }
        let body = match hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size) {
            Ok(body) => body.unwrap_or_default(),
            Err(_) => return self.failed("cannot read the answer"),
        };
        let page = match parse_page(&body, since) {
            Ok(page) => page,
            Err(e) => return self.failed(&e.to_string()),
        };
        match apply_page(&HostStore, &config.keys, since, &page, now_ms()) {
            Ok(Outcome::Applied { caught_up }) => {
                if caught_up && !self.sync.caught_up {
                    log(
                        LogLevel::Info,
                        &format!(
                            "mcp-guard: key set loaded at version {} (epoch {})",
                            page.version, page.epoch
                        ),
                    );
                }
                self.sync.caught_up = caught_up;
            }
            Ok(Outcome::Reload) => {
                log(
                    LogLevel::Warn,
                    &format!("mcp-guard: control plane epoch {} or version changed; reloading the whole key set", page.epoch),
                );
                self.sync.caught_up = false;
            }
            Ok(Outcome::Stale) => self.sync.caught_up = false,
            Err(e) => return self.failed(&e.to_string()),
        }
        self.sync.failures = 0;
        if let Some(metrics) = &self.metrics {
            metrics.sync_result(true);
        }
        self.publish_gauges(config, now_ms());
        // Ask again at once: the long-poll is what makes revocations arrive in milliseconds.
        if self.hold_lease(config, now_ms()) {
            self.poll(config);
        }
    }

    /// Idle streams (SSE, slow tool calls) see no callback when their key is revoked: the timer
    /// re-checks them, at no cost while the key set is unchanged.
    fn recheck_streams(&self, config: &Config) {
        let stopped = {
            let Ok(mut streams) = self.streams.try_borrow_mut() else {
                return;
            };
            if streams.is_empty() {
                return;
            }
            let now = key_set_now(config, true);
            streams.observe(&now.state);
            streams.sweep(&now, |key_id| lookup_now(config, &now, key_id))
        };
        if stopped.is_empty() {
            return;
        }
        for stream in &stopped {
            // A local reply or reset from the root context itself would do nothing: act as the
            // stream. A stream Envoy already deleted just refuses the switch.
            if hostcalls::set_effective_context(stream.context_id).is_ok() {
                stop(stream, Some(config), self.metrics.as_deref());
            }
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }

    fn publish_gauges(&self, config: &Config, now: u64) {
        let (Some(metrics), Ok((state, _))) = (
            &self.metrics,
            ServingState::read(&HostStore, config.keys.state()),
        ) else {
            return;
        };
        let age_s = if state.is_loaded() {
            now.saturating_sub(state.synced_at_ms) / 1_000
        } else {
            0
        };
        metrics.keyset(state.version, age_s);
        metrics.linear_memory();
    }
}

impl Context for GuardRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        let Some((expected, since)) = self.sync.in_flight else {
            return;
        };
        if token != expected {
            return;
        }
        self.sync.in_flight = None;
        if let Some(config) = self.config.clone() {
            self.handle_response(&config, since, num_headers, body_size);
        }
    }
}

impl RootContext for GuardRoot {
    fn on_vm_start(&mut self, _: usize) -> bool {
        log(
            LogLevel::Info,
            &format!("mcp-guard {VERSION} ({GIT_SHA}) starting"),
        );
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        match self.configure() {
            Ok(()) => {
                let (policy_version, mode) = self
                    .config
                    .as_ref()
                    .map_or((0, Mode::Enforce), |c| (c.policy_version, c.mode));
                log(
                    LogLevel::Info,
                    &format!(
                        "mcp-guard: configured (context {}, policy_version {policy_version}, mode {mode:?})",
                        self.context_id
                    ),
                );
                true
            }
            Err(e) => {
                log(LogLevel::Critical, &format!("mcp-guard: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(config) = self.config.clone() else {
            return;
        };
        #[cfg(feature = "trap-on-demand")]
        if self.leading
            && hostcalls::get_shared_data(super::TRAP_SYNC_LEADER).is_ok_and(|(v, _)| v.is_some())
        {
            core::arch::wasm32::unreachable();
        }
        let now = now_ms();
        self.publish_gauges(&config, now);
        self.recheck_streams(&config);
        if self.sync.in_flight.is_some() {
            // Keep the lease while a long-poll is open so no other worker starts a second one.
            self.hold_lease(&config, now);
            return;
        }
        if now >= self.sync.not_before_ms && self.hold_lease(&config, now) {
            self.poll(&config);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Never `None`: the SDK panics on it. Without a configuration every request fails closed.
        Some(Box::new(GuardHttp::new(
            context_id,
            self.config.clone(),
            self.metrics.clone(),
            self.streams.clone(),
            self.policies.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
