//! The proxy-wasm layer: registers the root context and moves data between Envoy and the pure
//! logic. Nothing here decides anything.

mod answer;
mod host;
mod http;
mod inflight;
mod metrics;
mod root;

use proxy_wasm::hostcalls;

/// Test-only shared-data flag: the VM running the key-set sync traps at its next tick.
#[cfg(feature = "trap-on-demand")]
const TRAP_SYNC_LEADER: &str = "mcp_guard.test.trap_sync_leader";
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    // A panic traps the VM; leave a Critical line behind so the operator knows why requests fail
    // (the shipped Envoy configs fail closed while the VM is gone).
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("mcp-guard: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::GuardRoot::new(context_id))
    });
}}
