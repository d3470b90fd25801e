//! Host services over the fallible `proxy_wasm::hostcalls` (never the SDK's unwrapping helpers).

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType, Status};

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

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// One header's value as bytes (the SDK's string form traps on a value that is not UTF-8);
/// empty when absent.
pub fn header_value(map_type: MapType, name: &str) -> Vec<u8> {
    hostcalls::get_map_value_bytes(map_type, name)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Every pair of a header map (request headers, trailers), values lossily decoded: unlike the
/// SDK's `get_map`, neither a non-UTF-8 value nor an unexpected status can trap the VM.
pub fn header_pairs(map_type: MapType) -> Option<Vec<(String, String)>> {
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through this module's exported allocator
    // (the SDK's `proxy_on_memory_allocate`, a `Vec<u8>` of exactly `size` bytes), which we now
    // own and free on drop.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    if status != Status::Ok {
        return None;
    }
    if data.is_null() {
        return Some(Vec::new());
    }
    // SAFETY: see above; `size` is the buffer's length and capacity.
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    crate::header_map::decode(&bytes)
}
