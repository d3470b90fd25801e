//! Prices host calls for `make bench`. A request to `/probe/<op>/<repeat>` performs `<op>` that
//! many times in the request-headers callback; `/probe/none/0` is the floor (one `:path` read, as
//! every probe does). Cost of one call = (CPU per request of op − none) / repeat.
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType, MetricType};
use sha2::{Digest, Sha256};

const KEY: &str = "probe/key";
/// Distinct names per call, so every call creates a new header or filter-state entry as
/// mcp-guard's calls do (updating an existing one is cheaper and would flatter the price).
const NAMES: [&str; 10] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"];
const HEADERS: [&str; 10] = [
    "x-probe-0",
    "x-probe-1",
    "x-probe-2",
    "x-probe-3",
    "x-probe-4",
    "x-probe-5",
    "x-probe-6",
    "x-probe-7",
    "x-probe-8",
    "x-probe-9",
];
const TOKEN: &str = "amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot { metric: 0 }) });
}}

struct ProbeRoot {
    metric: u32,
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        // A value the size of one key record.
        let _ = hostcalls::set_shared_data(KEY, Some(&[7u8; 60]), None);
        self.metric = hostcalls::define_metric(MetricType::Counter, "probe.counter").unwrap_or(0);
        true
    }
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            metric: self.metric,
        }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    metric: u32,
}

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = hostcalls::get_map_value(MapType::HttpRequestHeaders, ":path")
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut parts = path.trim_start_matches("/probe/").split('/');
        let op = parts.next().unwrap_or("none").to_string();
        let repeat: u32 = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
        for i in (0..repeat as usize).map(|i| i % NAMES.len()) {
            match op.as_str() {
                "get_map" => drop(hostcalls::get_map(MapType::HttpRequestHeaders)),
                "get_header" => drop(hostcalls::get_map_value(
                    MapType::HttpRequestHeaders,
                    "authorization",
                )),
                "get_shared_data" => drop(hostcalls::get_shared_data(KEY)),
                "set_header" => drop(hostcalls::set_map_value(
                    MapType::HttpRequestHeaders,
                    HEADERS[i],
                    Some("value-of-a-header"),
                )),
                "remove_header" => drop(hostcalls::remove_map_value(
                    MapType::HttpRequestHeaders,
                    "x-probe-absent",
                )),
                "set_property" => drop(hostcalls::set_property(
                    vec![NAMES[i]],
                    Some(b"k3x9a0b1c2d3"),
                )),
                "increment_metric" => drop(hostcalls::increment_metric(self.metric, 1)),
                "get_current_time" => drop(hostcalls::get_current_time()),
                "sha256" => drop(std::hint::black_box(Sha256::digest(
                    std::hint::black_box(TOKEN).as_bytes(),
                ))),
                _ => {}
            }
        }
        Action::Continue
    }
}
