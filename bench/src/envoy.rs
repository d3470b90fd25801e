//! The Envoy configurations compared by the benchmark. All share one listener, one worker and a
//! `direct_response` route, so the only difference is the HTTP filter in front of the router.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mcp_guard_e2e::{
    envoy_bin, release_wasm, repo_root, validate_yaml, wait_until, Envoy, Request,
};

use crate::load::Load;
use crate::Scenario;

pub enum Variant {
    NoFilter,
    /// Envoy's native `api_key_auth` with the same key (the native baseline).
    ApiKeyAuth {
        token: String,
    },
    /// A proxy-wasm filter that does nothing: V8's fixed cost per stream.
    NoopWasm,
    McpGuard {
        guardctl_port: u16,
    },
    /// Repeats one host call per request (bench/hostcall-probe), to price each call.
    HostcallProbe,
    /// mcp-guard serving org `bench-policy`, which has a tool policy (see `crate::policy`).
    McpGuardPolicy {
        guardctl_port: u16,
    },
}

/// The orgs of the mcp-guard variants.
pub const POLICY_ORG: &str = "bench-policy";

impl Variant {
    pub fn name(&self) -> &'static str {
        match self {
            Variant::NoFilter => "no-filter",
            Variant::ApiKeyAuth { .. } => "api_key_auth",
            Variant::NoopWasm => "noop-wasm",
            Variant::McpGuard { .. } => "mcp-guard",
            Variant::HostcallProbe => "hostcall-probe",
            Variant::McpGuardPolicy { .. } => "mcp-guard-policy",
        }
    }

    fn filters(&self) -> String {
        match self {
            Variant::NoFilter => String::new(),
            Variant::ApiKeyAuth { token } => format!(
                r#"
          - name: envoy.filters.http.api_key_auth
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth
              credentials:
              - key: "{token}"
                client: demo
              key_sources:
              - header: authorization"#
            ),
            Variant::NoopWasm => wasm_filter(
                "noop",
                &repo_root().join("target/wasm32-wasip1/release/noop_filter.wasm"),
                "{}",
            ),
            Variant::McpGuard { .. } => wasm_filter(
                "mcp-guard",
                &release_wasm(),
                r#"{"org": "demo", "keyset_cluster": "guardctl"}"#,
            ),
            Variant::HostcallProbe => wasm_filter(
                "probe",
                &repo_root().join("target/wasm32-wasip1/release/hostcall_probe.wasm"),
                "{}",
            ),
            Variant::McpGuardPolicy { .. } => wasm_filter(
                "mcp-guard",
                &release_wasm(),
                &format!(r#"{{"org": "{POLICY_ORG}", "keyset_cluster": "guardctl"}}"#),
            ),
        }
    }

    fn guardctl_port(&self) -> u16 {
        match self {
            Variant::McpGuard { guardctl_port } | Variant::McpGuardPolicy { guardctl_port } => {
                *guardctl_port
            }
            // An unused cluster still needs a port.
            _ => 1,
        }
    }

    pub fn config(&self) -> String {
        format!(
            r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: bench
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    per_connection_buffer_limit_bytes: 5242880
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          # As in the shipped configs, for every variant alike.
          common_http_protocol_options: {{ headers_with_underscores_action: REJECT_REQUEST }}
          route_config:
            # The 200-tool tools/list answer is ~36 KB (Envoy's default limit is 4 KiB).
            max_direct_response_body_size_bytes: 1048576
            virtual_hosts:
            - name: bench
              domains: ["*"]
              routes:
              - match: {{ prefix: /tools-list }}
                direct_response: {{ status: 200, body: {{ inline_string: '{tools_list}' }} }}
                response_headers_to_add:
                - header: {{ key: content-type, value: application/json }}
              - match: {{ prefix: / }}
                direct_response: {{ status: 200, body: {{ inline_string: "ok" }} }}
          http_filters:{filters}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: guardctl
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: guardctl
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#,
            filters = self.filters(),
            port = self.guardctl_port(),
            tools_list = crate::policy::tools_list_answer(),
        )
    }
}

fn wasm_filter(name: &str, module: &Path, configuration: &str) -> String {
    format!(
        r#"
          - name: {name}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {name}
                root_id: {name}
                vm_config:
                  vm_id: {name}
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: {module} }} }}
                failure_policy: FAIL_CLOSED
                allow_on_headers_stop_iteration: true
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{configuration}'"#,
        module = module.display()
    )
}

pub fn validate(dir: &Path, variant: &Variant) {
    let name = format!("validate-{}", variant.name());
    let (accepted, printed) = validate_yaml(dir, &name, &variant.config());
    assert!(
        accepted,
        "bench config {} does not validate:\n{printed}",
        variant.name()
    );
}

pub fn version() -> String {
    let out = Command::new(envoy_bin()).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()
        .unwrap_or("unknown")
        .to_string()
}

pub struct BenchEnvoy {
    pub name: &'static str,
    pub envoy: Envoy,
}

impl BenchEnvoy {
    /// One worker, pinned to CPU 0; the load generator gets CPU 1.
    pub fn start(dir: &Path, variant: &Variant) -> Self {
        Self {
            name: variant.name(),
            envoy: Envoy::start_config(dir, &variant.config(), 1, Some(0), "info"),
        }
    }

    pub fn port(&self) -> u16 {
        self.envoy.port
    }

    pub fn pid(&self) -> u32 {
        self.envoy.process.pid()
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.envoy.raw_stat(name)
    }

    pub fn wait_for_key(&self, token: &str) {
        wait_until("mcp-guard to sync the key", Duration::from_secs(20), || {
            Request::get("/").bearer(token).send(self.port()).status == 200
        });
    }

    /// Each scenario gets the answer it is meant to measure before anything is timed.
    pub fn check_answer(&self, load: &Load, scenarios: &[Scenario]) {
        for scenario in scenarios.iter().filter(|s| s.envoy_name(self.name)) {
            let status = load.probe(self.port(), &scenario.request);
            assert_eq!(
                status == 200,
                scenario.expect_ok,
                "{}: got status {status}",
                scenario.id
            );
        }
    }

    /// Milliseconds from Envoy starting to load the listener (which compiles and starts the base
    /// VM) to the filter's first `configured` line: both are logged at info level.
    pub fn vm_start_ms(&self) -> Option<f64> {
        let log = self.envoy.process.log_text();
        let at = |marker: &str| {
            log.lines()
                .find(|l| l.contains(marker))
                .and_then(log_time_ms)
        };
        Some(at("mcp-guard: configured")? - at("loading 1 listener(s)")?)
    }
}

impl Scenario {
    fn envoy_name(&self, name: &str) -> bool {
        let names = [
            "no-filter",
            "api_key_auth",
            "noop-wasm",
            "mcp-guard",
            "hostcall-probe",
            "mcp-guard-policy",
        ];
        names.get(self.envoy) == Some(&name)
    }
}

/// `[2026-11-27 15:04:32.591][...]` → milliseconds within the day.
fn log_time_ms(line: &str) -> Option<f64> {
    let time = line.get(12..24)?; // "15:04:32.591"
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(((h * 60.0 + m) * 60.0 + s) * 1_000.0)
}

#[cfg(test)]
mod tests {
    use super::log_time_ms;

    #[test]
    fn reads_envoy_log_timestamps() {
        let line = "[2026-11-27 16:08:46.382][24027][info][config] [source/server/configuration_impl.cc:148] loading 1 listener(s)";
        let later = "[2026-11-27 16:08:46.788][24027][info][wasm] wasm log mcp-guard: configured";
        let gap = log_time_ms(later).unwrap() - log_time_ms(line).unwrap();
        assert!((gap - 406.0).abs() < 0.01, "{gap}");
    }
}
