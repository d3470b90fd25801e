//! Scale scenarios: a million keys in guardctl and in Envoy, and guardctl holding a thousand
//! long-polls.
//!
//! - `scale_load_1m`: import 1,000,000 hash rows with `guardctl keys import`, start a fresh Envoy
//!   (mcp-guard, one worker) against that guardctl, and time it until it serves the whole set
//!   (the filter's `keyset.version` gauge reaches guardctl's version; the gauge stays at 0 until
//!   the first full load switches over). Envoy's extra memory = its RSS minus the RSS of the same
//!   Envoy serving 10 keys.
//! - `scale_get_1m`: Envoy CPU per allowed GET with 1,000,000 keys against 10 keys, interleaved
//!   rounds, the same wrk method as the other scenarios, ratio taken within each round.
//! - `scale_long_polls`: 1,000 concurrent long-polls parked on `guardctl serve`; its RSS and CPU
//!   while it holds them; then one revoke, and how long until every poll has answered 200 with it.
//!
//! The bench generates the tokens itself (the `amt_` grammar, a fixed seed), so it knows valid
//! ones; only their SHA-256 go to guardctl.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mcp_guard_e2e::{Guardctl, Request, Value};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::envoy::{BenchEnvoy, Variant};
use crate::load::{process_cpu_seconds, Load, RequestSpec};
use crate::report::spread;
use crate::{Scenario, Settings};

pub const IDS: [&str; 3] = ["scale_load_1m", "scale_get_1m", "scale_long_polls"];

/// Issue goals.
const LOAD_GOAL_S: f64 = 30.0;
const MEMORY_GOAL_MIB: f64 = 512.0;
const CPU_GOAL_RATIO: f64 = 1.05;
const LONG_POLLS: usize = 1_000;
const SMALL_SET: usize = 10;

/// Runs the selected scale scenarios; `None` when none is selected.
pub fn run(dir: &Path, settings: Settings, quick: bool, only: Option<&[&str]>) -> Option<Value> {
    let selected = |id: &str| only.is_none_or(|ids| ids.contains(&id));
    if !IDS.iter().any(|id| selected(id)) {
        return None;
    }
    // `--quick` is a smoke run: a tenth of the keys.
    let big_set = if quick { 100_000 } else { 1_000_000 };
    let mut out = serde_json::Map::new();
    out.insert("keys".into(), json!(big_set));

    let small = KeySet::imported(dir, "scale-10", SMALL_SET);
    let big = KeySet::imported(dir, "scale-1m", big_set);
    out.insert("import".into(), big.import.clone());

    if selected("scale_load_1m") || selected("scale_get_1m") {
        let small_envoy = BenchEnvoy::start(dir, &small.variant());
        wait_for_version(&small_envoy, small.version, Duration::from_secs(60));
        small_envoy.wait_for_key(&small.tokens[SMALL_SET / 2]);

        let started = Instant::now();
        let big_envoy = BenchEnvoy::start(dir, &big.variant());
        let live_s = started.elapsed().as_secs_f64();
        let loaded = wait_for_version(&big_envoy, big.version, Duration::from_secs(600));
        let load_s = started.elapsed().as_secs_f64();
        let token = &big.tokens[big.tokens.len() / 2];
        big_envoy.wait_for_key(token);
        let (small_rss, small_hwm) = rss_kib(small_envoy.pid());
        let (big_rss, big_hwm) = rss_kib(big_envoy.pid());
        let extra_mib = (big_rss as f64 - small_rss as f64) / 1024.0;
        eprintln!(
            "  scale: {big_set} keys loaded {loaded} in {load_s:.1} s (Envoy live after {live_s:.1} s); \
             Envoy RSS {} MiB vs {} MiB with {SMALL_SET} keys: +{extra_mib:.0} MiB",
            big_rss / 1024,
            small_rss / 1024
        );
        out.insert(
            "load".into(),
            json!({
                "loaded": loaded,
                "seconds_to_loaded": load_s,
                "seconds_to_envoy_live": live_s,
                "version": big.version,
                "envoy_rss_kib": big_rss,
                "envoy_peak_rss_kib": big_hwm,
                "small_set_envoy_rss_kib": small_rss,
                "small_set_envoy_peak_rss_kib": small_hwm,
                "extra_rss_mib": extra_mib,
                "linear_memory_bytes": big_envoy.stat("wasmcustom.mcp_guard.vm.linear_memory_bytes"),
                "small_set_linear_memory_bytes": small_envoy.stat("wasmcustom.mcp_guard.vm.linear_memory_bytes"),
                "sync_pages": big_envoy.stat("wasmcustom.mcp_guard.sync.succeeded"),
                "goal_seconds": LOAD_GOAL_S,
                "goal_extra_mib": MEMORY_GOAL_MIB,
            }),
        );

        if selected("scale_get_1m") {
            out.insert(
                "get".into(),
                cpu_per_get(dir, settings, (&small_envoy, &small), (&big_envoy, &big)),
            );
        }
    }

    if selected("scale_long_polls") {
        out.insert("long_polls".into(), long_polls(&big));
    }
    Some(Value::Object(out))
}

/// A guardctl with `count` imported keys, and a few of their tokens.
struct KeySet {
    guardctl: Guardctl,
    count: usize,
    /// Tokens of keys 0, count/2 and count-1 (indices into the generated set), plus all when small.
    tokens: Vec<String>,
    version: u64,
    import: Value,
}

impl KeySet {
    fn imported(dir: &Path, name: &str, count: usize) -> KeySet {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rows.jsonl");
        let generated = Instant::now();
        let tokens = write_rows(&file, count);
        let generate_s = generated.elapsed().as_secs_f64();
        let guardctl = Guardctl::start(&dir);
        let started = Instant::now();
        let out = guardctl.cli(&["keys", "import", "--file", file.to_str().unwrap(), "--json"]);
        let import_s = started.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            summary["imported"].as_u64(),
            Some(count as u64),
            "{summary}"
        );
        let version = summary["version"].as_u64().unwrap();
        eprintln!(
            "  scale: generated {count} tokens in {generate_s:.1} s, imported their hash rows in {import_s:.1} s \
             ({} batches, version {version})",
            summary["batches"]
        );
        KeySet {
            guardctl,
            count,
            tokens,
            version,
            import: json!({
                "rows": count,
                "seconds": import_s,
                "rows_per_second": count as f64 / import_s,
                "batches": summary["batches"],
                "file_bytes": std::fs::metadata(&file).map_or(0, |m| m.len()),
            }),
        }
    }

    fn variant(&self) -> Variant {
        Variant::McpGuard {
            guardctl_port: self.guardctl.port,
        }
    }
}

/// splitmix64: a fixed, fast sequence; the bench's tokens need to be valid, not secret.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Writes `count` hash rows (JSON Lines, the `guardctl keys import` format) and returns the
/// tokens of the first, middle and last key (all of them for a small set).
fn write_rows(path: &Path, count: usize) -> Vec<String> {
    const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = Rng(0x6d63_702d_6775_6172 ^ count as u64);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut kept = Vec::new();
    let keep = |i: usize| count <= 100 || i == 0 || i == count / 2 || i == count - 1;
    for i in 0..count {
        // 12 characters like guardctl's own ids, unique by construction.
        let key_id = format!("s{i:011}");
        let secret: String = (0..43)
            .map(|_| char::from(BASE62[(rng.next() % 62) as usize]))
            .collect();
        let token = format!("amt_{key_id}_{secret}");
        let digest = Sha256::digest(token.as_bytes());
        let mut sha256 = String::with_capacity(64);
        for byte in digest {
            sha256.push_str(&format!("{byte:02x}"));
        }
        writeln!(
            out,
            r#"{{"key_id":"{key_id}","sha256":"{sha256}","org":"demo","role":"member"}}"#
        )
        .unwrap();
        if keep(i) {
            kept.push(token);
        }
    }
    out.flush().unwrap();
    kept
}

/// Polls the filter's `keyset.version` gauge until it reaches `version`; false on timeout.
fn wait_for_version(envoy: &BenchEnvoy, version: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if envoy.stat("wasmcustom.mcp_guard.keyset.version") >= version {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// (VmRSS, VmHWM) in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn cpu_per_get(
    dir: &Path,
    settings: Settings,
    (small_envoy, small): (&BenchEnvoy, &KeySet),
    (big_envoy, big): (&BenchEnvoy, &KeySet),
) -> Value {
    let load = Load::new(dir, settings);
    let scenario = |id: &'static str, title: &'static str, token: &str| Scenario {
        id,
        title,
        envoy: 3,
        request: RequestSpec::get(Some(token)),
        expect_ok: true,
        fixed_rate: false,
    };
    let small_get = scenario(
        "scale_get_10",
        "mcp-guard, GET, valid key, 10 keys",
        &small.tokens[SMALL_SET / 2],
    );
    let big_get = scenario(
        "scale_get_1m",
        "mcp-guard, GET, valid key, the large key set",
        &big.tokens[big.tokens.len() / 2],
    );
    for (envoy, scenario) in [(small_envoy, &small_get), (big_envoy, &big_get)] {
        assert_eq!(
            load.probe(envoy.port(), &scenario.request),
            200,
            "{}",
            scenario.id
        );
    }
    let mut rounds = Vec::new();
    for round in 0..settings.rounds {
        // Alternate which goes first, so a drift within a round does not favour one side.
        let order = if round.is_multiple_of(2) {
            [0, 1]
        } else {
            [1, 0]
        };
        let mut cpu = [0.0; 2];
        for side in order {
            let (envoy, scenario) = if side == 0 {
                (small_envoy, &small_get)
            } else {
                (big_envoy, &big_get)
            };
            let m = load.measure(envoy, scenario);
            eprintln!(
                "  {:<28} {:>8.1} us/req  {:>8.0} req/s",
                scenario.id, m.cpu_us_per_request, m.requests_per_second
            );
            cpu[side] = m.cpu_us_per_request;
        }
        rounds.push(json!({
            "small_cpu_us_per_request": cpu[0],
            "big_cpu_us_per_request": cpu[1],
            "ratio": cpu[1] / cpu[0],
        }));
    }
    let pick =
        |name: &str| -> Vec<f64> { rounds.iter().map(|r| r[name].as_f64().unwrap()).collect() };
    let (ratio, min, max) = spread(pick("ratio"));
    json!({
        "keys": big.count,
        "rounds": rounds,
        "small_cpu_us_per_request": spread(pick("small_cpu_us_per_request")).0,
        "big_cpu_us_per_request": spread(pick("big_cpu_us_per_request")).0,
        "ratio": {"median": ratio, "min": min, "max": max},
        "goal_ratio": CPU_GOAL_RATIO,
    })
}

/// Every poll holds a socket on both sides; the default soft limit (often 1024) is too low.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we pass, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// One long-poll on its own thread: the answer's arrival time, status and body.
fn long_poll(port: u16, since: u64, sent: Arc<Barrier>) -> Result<(Instant, u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"));
    let request = format!(
        "GET /v1/keyset?since={since}&wait_ms=60000 HTTP/1.1\r\nhost: guardctl\r\nconnection: close\r\n\r\n"
    );
    if let Ok(stream) = &mut stream {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(90)));
        if let Err(e) = stream.write_all(request.as_bytes()) {
            sent.wait();
            return Err(format!("send: {e}"));
        }
    }
    sent.wait();
    let mut stream = stream?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let answered = Instant::now();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((answered, status, body))
}

fn long_polls(keys: &KeySet) -> Value {
    raise_open_file_limit();
    let guardctl = &keys.guardctl;
    let pid = guardctl.pid().unwrap();
    let port = guardctl.port;
    let since = keys.version;
    let (idle_rss, _) = rss_kib(pid);
    let cpu_start = process_cpu_seconds(pid);

    let sent = Arc::new(Barrier::new(LONG_POLLS + 1));
    let polls: Vec<_> = (0..LONG_POLLS)
        .map(|_| {
            let sent = sent.clone();
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || long_poll(port, since, sent))
                .unwrap()
        })
        .collect();
    sent.wait();
    // Let every request reach the server and park.
    std::thread::sleep(Duration::from_secs(1));
    let cpu_parked = process_cpu_seconds(pid);
    let hold = Duration::from_secs(3);
    std::thread::sleep(hold);
    let cpu_held = process_cpu_seconds(pid);
    let (holding_rss, _) = rss_kib(pid);

    let key_id = keys.tokens[0]
        .strip_prefix("amt_")
        .and_then(|t| t.split('_').next())
        .unwrap()
        .to_string();
    let revoke_sent = Instant::now();
    let answer = Request {
        method: "DELETE".into(),
        ..Request::get(&format!("/v1/keys/{key_id}"))
    }
    .bearer(&admin_token(guardctl))
    .send(port);
    let acked = revoke_sent.elapsed();
    assert_eq!(answer.status, 200, "revoke: {}", answer.body);
    let revoked_version = answer.json()["version"].as_u64().unwrap();

    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for poll in polls {
        match poll.join().unwrap() {
            Ok((at, 200, body)) => {
                let page: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let has_change = page["version"].as_u64() == Some(revoked_version)
                    && page["revocations"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|r| r["key_id"] == key_id.as_str()));
                if has_change {
                    latencies.push(at.duration_since(revoke_sent).as_secs_f64() * 1_000.0);
                } else {
                    errors.push(format!("200 without the revocation: {body}"));
                }
            }
            Ok((_, status, body)) => errors.push(format!("status {status}: {body}")),
            Err(e) => errors.push(e),
        }
    }
    let cpu_answered = process_cpu_seconds(pid);
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    eprintln!(
        "  scale: {LONG_POLLS} long-polls: guardctl RSS {} MiB idle, {} MiB holding; CPU {:.3} s to accept, \
         {:.3} s over {} s held, {:.3} s to answer; all answered {:.1} ms after the revoke (p50 {:.1} ms); {} errors",
        idle_rss / 1024,
        holding_rss / 1024,
        cpu_parked - cpu_start,
        cpu_held - cpu_parked,
        hold.as_secs(),
        cpu_answered - cpu_held,
        pick(1.0),
        pick(0.5),
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "{} of {LONG_POLLS} long-polls failed, first: {}",
        errors.len(),
        errors[0]
    );
    json!({
        "polls": LONG_POLLS,
        "keys_in_db": keys.count,
        "guardctl_rss_idle_kib": idle_rss,
        "guardctl_rss_holding_kib": holding_rss,
        "guardctl_cpu_s_accepting": cpu_parked - cpu_start,
        "guardctl_cpu_s_holding": cpu_held - cpu_parked,
        "hold_seconds": hold.as_secs_f64(),
        "guardctl_cpu_s_answering": cpu_answered - cpu_held,
        "revoke_ack_ms": acked.as_secs_f64() * 1_000.0,
        "answered_p50_ms": pick(0.5),
        "answered_p99_ms": pick(0.99),
        "answered_all_ms": pick(1.0),
        "errors": errors.len(),
    })
}

fn admin_token(guardctl: &Guardctl) -> String {
    std::fs::read_to_string(guardctl.data_dir.join("admin-token"))
        .unwrap()
        .trim()
        .to_string()
}

/// 1000000 → "1,000,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The "Scale" section of BENCHMARKS.md.
pub fn markdown(scale: &Value) -> String {
    if scale.is_null() {
        return String::new();
    }
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let keys = thousands(scale["keys"].as_u64().unwrap_or(0));
    let mut md = format!(
        "\n## Scale ({keys} keys; `bench/src/scale.rs`)\n\n| what | measured | goal |\n|---|---|---|\n"
    );
    let import = &scale["import"];
    if !import.is_null() {
        md.push_str(&format!(
            "| `guardctl keys import` of {keys} hash rows ({} batches, one transaction each) | {:.1} s ({:.0} rows/s) | |\n",
            import["batches"],
            f(&import["seconds"]),
            f(&import["rows_per_second"])
        ));
    }
    let load = &scale["load"];
    if !load.is_null() {
        let seconds = f(&load["seconds_to_loaded"]);
        let met = |ok: bool| if ok { "met" } else { "**missed**" };
        let loaded = load["loaded"].as_bool().unwrap_or(false);
        md.push_str(&format!(
            "| fresh Envoy start → whole set served (`keyset.version` = guardctl's; {} sync pages) | {} | ≤ {LOAD_GOAL_S:.0} s: {} |\n",
            load["sync_pages"],
            if loaded { format!("{seconds:.1} s") } else { format!("not loaded after {seconds:.0} s") },
            met(loaded && seconds <= LOAD_GOAL_S)
        ));
        let extra = f(&load["extra_rss_mib"]);
        md.push_str(&format!(
            "| Envoy RSS with {keys} keys − with {SMALL_SET} keys | {extra:.0} MiB ({} vs {} MiB; peak {} MiB) | ≤ {MEMORY_GOAL_MIB:.0} MiB: {} |\n",
            load["envoy_rss_kib"].as_u64().unwrap_or(0) / 1024,
            load["small_set_envoy_rss_kib"].as_u64().unwrap_or(0) / 1024,
            load["envoy_peak_rss_kib"].as_u64().unwrap_or(0) / 1024,
            met(extra <= MEMORY_GOAL_MIB)
        ));
        md.push_str(&format!(
            "| wasm linear memory of the syncing VM, {keys} vs {SMALL_SET} keys | {} vs {} KiB | |\n",
            load["linear_memory_bytes"].as_u64().unwrap_or(0) / 1024,
            load["small_set_linear_memory_bytes"].as_u64().unwrap_or(0) / 1024,
        ));
    }
    let get = &scale["get"];
    if !get.is_null() {
        let ratio = f(&get["ratio"]["median"]);
        md.push_str(&format!(
            "| Envoy CPU per allowed GET, {keys} keys / {SMALL_SET} keys ({} interleaved rounds; {:.1} vs {:.1} µs) | {ratio:.3} [{:.3}–{:.3}] | ≤ {CPU_GOAL_RATIO:.2}: {} |\n",
            get["rounds"].as_array().map_or(0, Vec::len),
            f(&get["big_cpu_us_per_request"]),
            f(&get["small_cpu_us_per_request"]),
            f(&get["ratio"]["min"]),
            f(&get["ratio"]["max"]),
            if ratio <= CPU_GOAL_RATIO { "met" } else { "**missed**" }
        ));
    }
    let polls = &scale["long_polls"];
    if !polls.is_null() {
        let n = polls["polls"].as_u64().unwrap_or(0);
        md.push_str(&format!(
            "| `guardctl serve` RSS, idle → holding {n} long-polls | {} → {} MiB | |\n\
             | guardctl CPU: accepting {n} polls / holding them {:.0} s / answering them | {:.3} / {:.3} / {:.3} s | |\n\
             | one revoke → all {n} long-polls answered 200 with it (p50 / p99 / last) | {:.1} / {:.1} / {:.1} ms | every one, no error: {} |\n",
            polls["guardctl_rss_idle_kib"].as_u64().unwrap_or(0) / 1024,
            polls["guardctl_rss_holding_kib"].as_u64().unwrap_or(0) / 1024,
            f(&polls["hold_seconds"]),
            f(&polls["guardctl_cpu_s_accepting"]),
            f(&polls["guardctl_cpu_s_holding"]),
            f(&polls["guardctl_cpu_s_answering"]),
            f(&polls["answered_p50_ms"]),
            f(&polls["answered_p99_ms"]),
            f(&polls["answered_all_ms"]),
            if polls["errors"].as_u64() == Some(0) { "met" } else { "**missed**" }
        ));
    }
    md.push_str(
        "\nLoad time runs from starting Envoy (its VM start included) to the first moment the filter serves the whole \
         set; the proxy pages through guardctl's change log at 1,000 changes per answer. Memory is Envoy's VmRSS from \
         /proc after the load, both Envoys otherwise identical (one worker, same config). The long-poll client runs \
         in the bench process (one thread per poll, on the CPU guardctl also uses), so answer times include waking \
         those threads.\n",
    );
    md
}
