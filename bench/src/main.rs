//! `make bench`: what mcp-guard costs inside Envoy 1.40, as ratios against baselines measured in
//! the same run, interleaved round by round (A B C … A B C …), medians over the rounds.
//!
//! Primary figure: Envoy's own CPU time per request (utime+stime from /proc over the requests
//! served), one worker pinned to CPU 0, `wrk` pinned to CPU 1, a `direct_response` route so only
//! the filter chain is measured. Writes BENCHMARKS.md and bench/results.json.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a dev tool: abort loudly

mod envoy;
mod ha;
mod load;
mod micro;
mod policy;
mod propagation;
mod report;
mod scale;

use std::path::PathBuf;
use std::time::Duration;

use mcp_guard_e2e::{repo_root, scratch_dir, Guardctl, Value};

use envoy::{BenchEnvoy, Variant};
use load::{Load, RequestSpec};

/// How each scenario is measured; `--quick` shortens everything for a smoke run.
#[derive(Clone, Copy)]
pub struct Settings {
    pub rounds: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub connections: u32,
    pub fixed_rate_rps: u32,
    pub fixed_rate_duration: Duration,
}

impl Settings {
    fn full() -> Self {
        Self {
            rounds: 5,
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(3),
            connections: 8,
            fixed_rate_rps: 1_000,
            fixed_rate_duration: Duration::from_secs(3),
        }
    }
    fn quick() -> Self {
        Self {
            rounds: 2,
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(1),
            connections: 4,
            fixed_rate_rps: 500,
            fixed_rate_duration: Duration::from_secs(1),
        }
    }
}

/// One measured configuration: which Envoy, which request.
pub struct Scenario {
    pub id: &'static str,
    pub title: &'static str,
    pub envoy: usize,
    pub request: RequestSpec,
    /// Expect every answer to be 2xx (else the run measures the wrong path and aborts).
    pub expect_ok: bool,
    pub fixed_rate: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut settings = if args.iter().any(|a| a == "--quick") {
        Settings::quick()
    } else {
        Settings::full()
    };
    if let Some(n) = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
    {
        settings.rounds = n.parse().expect("--rounds takes a number");
    }
    let only_validate = args.iter().any(|a| a == "--validate-configs");
    let dir = scratch_dir("bench");

    let guardctl = Guardctl::start(&dir);
    let key = guardctl.create_key("demo", "member", None);
    let (policy_member, policy_viewer, policy_admin) = policy::set_up(&guardctl, &dir);
    let variants = [
        Variant::NoFilter,
        Variant::ApiKeyAuth {
            token: key.token.clone(),
        },
        Variant::NoopWasm,
        Variant::McpGuard {
            guardctl_port: guardctl.port,
        },
        Variant::HostcallProbe,
        Variant::McpGuardPolicy {
            guardctl_port: guardctl.port,
        },
    ];
    if only_validate {
        for variant in &variants {
            envoy::validate(&dir, variant);
            println!("bench config {:<14} OK", variant.name());
        }
        return;
    }

    let envoys: Vec<BenchEnvoy> = variants
        .iter()
        .map(|v| BenchEnvoy::start(&dir, v))
        .collect();
    let guard = &envoys[3];
    guard.wait_for_key(&key.token);
    envoys[5].wait_for_key(&policy_member.token);

    let bad_token = format!("{}x", &key.token[..key.token.len() - 1]);
    let mut scenarios = scenarios(&key.token, &bad_token);
    scenarios.extend(policy_scenarios(
        &policy_member.token,
        &policy_viewer.token,
        &policy_admin.token,
    ));
    // `--only a,b`: a subset, for profiling one change (the ratio table needs the full set).
    let only: Option<Vec<&str>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|only| only.split(',').collect());
    if let Some(ids) = &only {
        scenarios.retain(|s| ids.contains(&s.id));
    }
    if scenarios
        .iter()
        .any(|s| s.id.starts_with("mcp_guard_tools_list"))
    {
        policy::check_filtering(envoys[5].port(), &policy_viewer.token, &policy_admin.token);
    }
    let load = Load::new(&dir, settings);
    for envoy in &envoys {
        envoy.check_answer(&load, &scenarios);
    }

    let mut rounds: Vec<Vec<load::Measurement>> = vec![Vec::new(); scenarios.len()];
    for round in 0..settings.rounds {
        eprintln!("round {}/{}", round + 1, settings.rounds);
        for (i, scenario) in scenarios.iter().enumerate() {
            let envoy = &envoys[scenario.envoy];
            let m = load.measure(envoy, scenario);
            eprintln!(
                "  {:<28} {:>8.1} us/req  {:>8.0} req/s",
                scenario.id, m.cpu_us_per_request, m.requests_per_second
            );
            rounds[i].push(m);
        }
    }

    // 1,000,000 keys and 1,000 long-polls (`--only` takes their ids too: scale::IDS).
    let quick = args.iter().any(|a| a == "--quick");
    let scale = scale::run(&dir, settings, quick, only.as_deref()).unwrap_or(Value::Null);
    // Revoke-to-401 across three proxies (`--only propagation_3_proxies`).
    let propagation = propagation::run(&dir, quick, only.as_deref()).unwrap_or(Value::Null);
    // Replicas on PostgreSQL against the single node (`--only ha_replicas`).
    let ha = ha::run(&dir, quick, only.as_deref()).unwrap_or(Value::Null);

    let module = module_facts(guard);
    let micro = if args.iter().any(|a| a == "--only") {
        serde_json::json!({})
    } else {
        micro::run()
    };
    let results = report::Results {
        settings,
        scenarios: &scenarios,
        rounds: &rounds,
        module,
        micro,
        envoy_version: envoy::version(),
        scale,
        propagation,
        ha,
    };
    let json = results.to_json();
    let out = repo_root().join("bench/results.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let markdown = results.to_markdown(&args);
    std::fs::write(repo_root().join("BENCHMARKS.md"), &markdown).unwrap();
    println!("{markdown}");
    eprintln!("wrote BENCHMARKS.md and {}", out.display());
}

/// The same `tools/call` under a 100-rule policy, and a 200-tool `tools/list` answer seen by a
/// role that sees every tool (passed as is) and by one it is filtered for.
fn policy_scenarios(member: &str, viewer: &str, admin: &str) -> Vec<Scenario> {
    vec![
        Scenario {
            id: "mcp_guard_post_1k_policy100",
            title: "mcp-guard, tools/call 1 KiB, 100-rule policy",
            envoy: 5,
            request: RequestSpec::tools_call(Some(member), 1 << 10),
            expect_ok: true,
            fixed_rate: false,
        },
        Scenario {
            id: "mcp_guard_tools_list_200",
            title: "mcp-guard, tools/list of 200 tools, role sees all",
            envoy: 5,
            request: RequestSpec::tools_list(Some(admin)),
            expect_ok: true,
            fixed_rate: false,
        },
        Scenario {
            id: "mcp_guard_tools_list_200_filtered",
            title: "mcp-guard, tools/list of 200 tools, filtered to 100",
            envoy: 5,
            request: RequestSpec::tools_list(Some(viewer)),
            expect_ok: true,
            fixed_rate: false,
        },
    ]
}

fn scenarios(token: &str, bad_token: &str) -> Vec<Scenario> {
    let get = |token: Option<&str>| RequestSpec::get(token);
    let post = |size: usize| RequestSpec::tools_call(Some(token), size);
    let mut scenarios = vec![
        Scenario {
            id: "none_get",
            title: "no filter, GET",
            envoy: 0,
            request: get(Some(token)),
            expect_ok: true,
            fixed_rate: true,
        },
        Scenario {
            id: "api_key_auth_get",
            title: "native api_key_auth, GET",
            envoy: 1,
            request: get(Some(token)),
            expect_ok: true,
            fixed_rate: true,
        },
        Scenario {
            id: "noop_wasm_get",
            title: "no-op wasm filter, GET",
            envoy: 2,
            request: get(Some(token)),
            expect_ok: true,
            fixed_rate: true,
        },
        Scenario {
            id: "mcp_guard_get",
            title: "mcp-guard, GET, valid key",
            envoy: 3,
            request: get(Some(token)),
            expect_ok: true,
            fixed_rate: true,
        },
        Scenario {
            id: "mcp_guard_401",
            title: "mcp-guard, GET, wrong secret (401)",
            envoy: 3,
            request: get(Some(bad_token)),
            expect_ok: false,
            fixed_rate: false,
        },
        Scenario {
            id: "noop_wasm_post_1k",
            title: "no-op wasm filter, tools/call 1 KiB",
            envoy: 2,
            request: post(1 << 10),
            expect_ok: true,
            fixed_rate: false,
        },
        Scenario {
            id: "mcp_guard_post_1k",
            title: "mcp-guard, tools/call 1 KiB",
            envoy: 3,
            request: post(1 << 10),
            expect_ok: true,
            fixed_rate: false,
        },
        Scenario {
            id: "noop_wasm_post_64k",
            title: "no-op wasm filter, tools/call 64 KiB",
            envoy: 2,
            request: post(64 << 10),
            expect_ok: true,
            fixed_rate: false,
        },
        Scenario {
            id: "mcp_guard_post_64k",
            title: "mcp-guard, tools/call 64 KiB",
            envoy: 3,
            request: post(64 << 10),
            expect_ok: true,
            fixed_rate: false,
        },
        Scenario {
            id: "noop_wasm_post_1m",
            title: "no-op wasm filter, tools/call 1 MiB",
            envoy: 2,
            request: post(1 << 20),
            expect_ok: true,
            fixed_rate: false,
        },
        Scenario {
            id: "mcp_guard_post_1m",
            title: "mcp-guard, tools/call 1 MiB",
            envoy: 3,
            request: post(1 << 20),
            expect_ok: true,
            fixed_rate: false,
        },
    ];
    scenarios.push(Scenario {
        id: "mcp_guard_post_blocked",
        title: "mcp-guard, tools/call 1 KiB with api_key (400)",
        envoy: 3,
        request: RequestSpec::tools_call_blocked(Some(token), 1 << 10),
        expect_ok: false,
        fixed_rate: false,
    });
    let probe_n = |id: &'static str, title: &'static str, op: &str, repeat: u32| Scenario {
        id,
        title,
        envoy: 4,
        request: RequestSpec::probe(op, repeat),
        expect_ok: true,
        fixed_rate: false,
    };
    let probe =
        |id, title, op: &str| probe_n(id, title, op, if op == "none" { 0 } else { PROBE_REPEAT });
    scenarios.extend([
        probe("probe_none", "host-call probe: floor", "none"),
        probe(
            "probe_get_map",
            "probe: get_map (all request headers)",
            "get_map",
        ),
        probe(
            "probe_get_header",
            "probe: get_map_value (one header)",
            "get_header",
        ),
        probe(
            "probe_get_shared_data",
            "probe: get_shared_data (60 B)",
            "get_shared_data",
        ),
        probe(
            "probe_set_header",
            "probe: set_map_value (request header)",
            "set_header",
        ),
        probe(
            "probe_remove_header",
            "probe: remove_map_value",
            "remove_header",
        ),
        probe(
            "probe_set_property",
            "probe: set_property (filter state)",
            "set_property",
        ),
        probe(
            "probe_increment_metric",
            "probe: increment_metric",
            "increment_metric",
        ),
        probe(
            "probe_get_current_time",
            "probe: get_current_time",
            "get_current_time",
        ),
        probe(
            "probe_sha256",
            "probe: SHA-256 of a token (no host call)",
            "sha256",
        ),
    ]);
    scenarios
}

/// How many times a probe repeats its call per request.
pub const PROBE_REPEAT: u32 = 10;

/// Size of the shipped module, and VM start and linear memory as Envoy and the filter report them.
fn module_facts(guard: &BenchEnvoy) -> Value {
    let wasm: PathBuf = mcp_guard_e2e::release_wasm();
    let size = std::fs::metadata(&wasm).unwrap().len();
    serde_json::json!({
        "wasm_bytes": size,
        "vm_start_ms": guard.vm_start_ms(),
        "linear_memory_bytes": guard.stat("wasmcustom.mcp_guard.vm.linear_memory_bytes"),
    })
}
