//! Host services over the fallible `proxy_wasm::hostcalls` (never the SDK's unwrapping helpers).

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, Status};

use crate::keyset::store::{Cas, SharedStore, StoreError};

/// Envoy's shared data (per `vm_id`, shared by every worker of the process).
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Cas), StoreError> {
        hostcalls::get_shared_data(key).map_err(|_| StoreError::Host)
    }

    fn set(&self, key: &str, value: &[u8], cas: Cas) -> Result<(), StoreError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            Status::CasMismatch => StoreError::CasMismatch,
            _ => StoreError::Host,
        })
    }
}

/// Milliseconds since the Unix epoch from the host clock; 0 if the host cannot say (every
/// comparison then errs on the side of "stale" / "expired").
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// True when Envoy would print a line at `level` (skip formatting otherwise).
pub fn log_enabled(level: LogLevel) -> bool {
    hostcalls::get_log_level().is_ok_and(|current| current as u32 <= level as u32)
}
