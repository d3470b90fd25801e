//! Moves the in-flight re-checks of [`crate::streams`] in and out of the host: reads what the key
//! set says now, and stops a stream that must stop (denial if nothing was answered yet, else reset).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, LogLevel};

use super::answer::{deny, record_decision};
use super::host::{log, log_enabled, now_ms, HostStore};
use super::metrics::Metrics;
use crate::config::Config;
use crate::keyset::state::ServingState;
use crate::keyset::{lookup_in, Lookup};
use crate::streams::{Cut, Now, Stopped};

/// The key set as a re-check sees it. An unreadable state reads as "not loaded": fail closed.
/// The clock is read only when `max_staleness_ms` is set or a checked key expires.
pub fn key_set_now(config: &Config, clock_needed: bool) -> Now {
    let state = ServingState::read(&HostStore, config.keys.state())
        .map(|(state, _)| state)
        .unwrap_or_default();
    let now_ms = if clock_needed || config.max_staleness_ms.is_some() {
        now_ms()
    } else {
        0
    };
    let stale = config
        .max_staleness_ms
        .is_some_and(|max| state.is_stale(now_ms, max));
    Now {
        state,
        now_ms,
        stale,
    }
}

/// One key, in the generation `now` serves.
pub fn lookup_now(config: &Config, now: &Now, key_id: &str) -> Lookup {
    lookup_in(&HostStore, &config.keys, &now.state, key_id).unwrap_or(Lookup::NotLoaded)
}

/// Stops the stream whose context is the current (or effective) one.
pub fn stop(stopped: &Stopped, config: Option<&Config>, metrics: Option<&Metrics>) -> Action {
    match stopped.cut {
        Cut::Reply(reason) => deny(config, metrics, reason, Some(&stopped.key_id), None),
        Cut::Reset(reason) => {
            if let Some(metrics) = metrics {
                metrics.stream_reset(reason);
            }
            if log_enabled(LogLevel::Debug) {
                log(
                    LogLevel::Debug,
                    &format!(
                        "mcp-guard: stream reset reason={} key_id={}",
                        reason.code(),
                        stopped.key_id
                    ),
                );
            }
            // The access log says why the stream ended.
            record_decision("reset", Some(reason.code()));
            let _ = hostcalls::reset_http_request();
            Action::Pause
        }
    }
}
