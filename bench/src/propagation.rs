//! Revoke-to-401 across three proxies syncing from one guardctl: the shipped Envoy config, one
//! worker each, 100 keys revoked one after another through the admin API; each proxy is probed
//! from the moment the revoke request is sent (the same measurement as tests/e2e/tests/fleet.rs).

use std::path::Path;
use std::time::Duration;

use mcp_guard_e2e::{
    measure_revocations, percentile, wait_until, Envoy, EnvoyOptions, Guardctl, IssuedKey, Request,
    Upstream, Value,
};
use serde_json::json;

pub const ID: &str = "propagation_3_proxies";
const PROXIES: usize = 3;

pub fn run(dir: &Path, quick: bool, only: Option<&[&str]>) -> Option<Value> {
    if only.is_some_and(|ids| !ids.contains(&ID)) {
        return None;
    }
    let revocations = if quick { 20 } else { 100 };
    let dir = dir.join("propagation");
    std::fs::create_dir_all(&dir).unwrap();
    let guardctl = Guardctl::start(&dir);
    let upstream = Upstream::start(&dir);
    let mut options = EnvoyOptions::new(upstream.port, guardctl.port);
    options.concurrency = 1;
    let proxies: Vec<Envoy> = (0..PROXIES).map(|_| Envoy::start(&dir, &options)).collect();
    for proxy in &proxies {
        proxy.wait_for_keyset();
    }
    let keys: Vec<IssuedKey> = (0..revocations)
        .map(|_| guardctl.create_key("demo", "member", None))
        .collect();
    let ports: Vec<u16> = proxies.iter().map(|p| p.port).collect();
    wait_until("every key on every proxy", Duration::from_secs(30), || {
        ports.iter().all(|&port| {
            keys.iter().all(|key| {
                Request::get("/not-mcp")
                    .bearer(&key.token)
                    .send(port)
                    .status
                    == 404
            })
        })
    });

    let mut latencies = measure_revocations(&guardctl, &ports, &keys);
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    let (p50, p99, max) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    eprintln!(
        "  propagation: {} revocations x {PROXIES} proxies: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        keys.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    Some(json!({
        "proxies": PROXIES,
        "revocations": keys.len(),
        "samples": latencies.len(),
        "p50_ms": ms(p50),
        "p99_ms": ms(p99),
        "max_ms": ms(max),
    }))
}

/// The BENCHMARKS.md section.
pub fn markdown(result: &Value) -> String {
    let f = |name: &str| result[name].as_f64().unwrap_or(f64::NAN);
    let p99 = f("p99_ms");
    let verdict = if p99 < 250.0 { "met" } else { "**missed**" };
    format!(
        "## Revocation across proxies\n\n\
         {} keys revoked one after another through guardctl's admin API while {} Envoy processes \
         (shipped config, one worker each) sync from it; each proxy is probed for 401 every \
         millisecond from the moment the revoke request is sent ({} samples).\n\n\
         | p50 ms | p99 ms | max ms | goal |\n|---|---|---|---|\n\
         | {:.1} | {:.1} | {:.1} | p99 < 250 ms: {verdict} |\n",
        result["revocations"],
        result["proxies"],
        result["samples"],
        f("p50_ms"),
        p99,
        f("max_ms"),
    )
}
