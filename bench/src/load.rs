//! Load and measurement: `wrk` (closed loop, saturating one Envoy worker) for CPU per request and
//! throughput, and a small open-loop client at a fixed rate for latency percentiles.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mcp_guard_e2e::Request;

use crate::envoy::BenchEnvoy;
use crate::{Scenario, Settings};

#[derive(Clone)]
pub struct RequestSpec {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RequestSpec {
    pub fn get(token: Option<&str>) -> Self {
        Self {
            method: "GET",
            path: "/api/mcp".into(),
            headers: bearer(token),
            body: vec![],
        }
    }

    /// A request to the host-call probe: perform `op` `repeat` times.
    pub fn probe(op: &str, repeat: u32) -> Self {
        Self {
            method: "GET",
            path: format!("/probe/{op}/{repeat}"),
            headers: bearer(Some(
                "amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8",
            )),
            body: vec![],
        }
    }

    /// A `tools/call` of exactly `size` bytes (the argument is padded).
    pub fn tools_call(token: Option<&str>, size: usize) -> Self {
        Self::tools_call_with(token, size, "")
    }

    /// A `tools/list` to the route that answers with `crate::policy::LISTED_TOOLS` tools.
    pub fn tools_list(token: Option<&str>) -> Self {
        let headers = json_post_headers(token);
        Self {
            method: "POST",
            path: "/tools-list".into(),
            headers,
            body: br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec(),
        }
    }

    /// The same, with an `api_key` argument the filter must block.
    pub fn tools_call_blocked(token: Option<&str>, size: usize) -> Self {
        Self::tools_call_with(token, size, r#""api_key":"sk-bench","#)
    }

    fn tools_call_with(token: Option<&str>, size: usize, extra_argument: &str) -> Self {
        let head = format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"echo","arguments":{{{extra_argument}"text":""#
        );
        let tail = r#""}}}"#;
        let pad = size.saturating_sub(head.len() + tail.len());
        let mut body = head.as_bytes().to_vec();
        body.extend(std::iter::repeat_n(b'a', pad));
        body.extend_from_slice(tail.as_bytes());
        let headers = json_post_headers(token);
        Self {
            method: "POST",
            path: "/api/mcp".into(),
            headers,
            body,
        }
    }

    fn raw(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\nhost: bench\r\n", self.method, self.path);
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// The headers of an MCP POST: the key, a JSON body, both answer types accepted.
fn json_post_headers(token: Option<&str>) -> Vec<(String, String)> {
    let mut headers = bearer(token);
    headers.push(("content-type".into(), "application/json".into()));
    headers.push((
        "accept".into(),
        "application/json, text/event-stream".into(),
    ));
    headers
}

fn bearer(token: Option<&str>) -> Vec<(String, String)> {
    token
        .map(|t| vec![("authorization".to_string(), format!("Bearer {t}"))])
        .unwrap_or_default()
}

#[derive(Clone, Debug, Default)]
pub struct Measurement {
    pub cpu_us_per_request: f64,
    pub requests_per_second: f64,
    /// Latency percentiles under saturation (wrk, closed loop).
    pub saturated_p50_ms: f64,
    pub saturated_p99_ms: f64,
    /// Latency percentiles at the fixed rate, when measured.
    pub fixed_p50_ms: Option<f64>,
    pub fixed_p99_ms: Option<f64>,
}

pub struct Load {
    dir: PathBuf,
    settings: Settings,
}

impl Load {
    pub fn new(dir: &Path, settings: Settings) -> Self {
        Self {
            dir: dir.to_path_buf(),
            settings,
        }
    }

    /// Status of one request, to check that a scenario measures the path it claims to.
    pub fn probe(&self, port: u16, spec: &RequestSpec) -> u16 {
        let mut request = Request::get(&spec.path);
        request.method = spec.method.into();
        request.headers = spec.headers.clone();
        request.body = spec.body.clone();
        request.send(port).status
    }

    pub fn measure(&self, envoy: &BenchEnvoy, scenario: &Scenario) -> Measurement {
        let script = self.wrk_script(scenario);
        self.wrk(envoy.port(), &script, self.settings.warmup);
        let cpu_before = process_cpu_seconds(envoy.pid());
        let run = self.wrk(envoy.port(), &script, self.settings.measure);
        let cpu = process_cpu_seconds(envoy.pid()) - cpu_before;
        if scenario.expect_ok {
            assert_eq!(
                run.non_2xx, 0,
                "{}: non-2xx answers under load",
                scenario.id
            );
        }
        let mut m = Measurement {
            cpu_us_per_request: cpu * 1e6 / run.requests as f64,
            requests_per_second: run.requests_per_second,
            saturated_p50_ms: run.p50_ms,
            saturated_p99_ms: run.p99_ms,
            ..Measurement::default()
        };
        if scenario.fixed_rate {
            let (p50, p99) = fixed_rate_latency(
                envoy.port(),
                &scenario.request,
                self.settings.fixed_rate_rps,
                self.settings.fixed_rate_duration,
            );
            m.fixed_p50_ms = Some(p50);
            m.fixed_p99_ms = Some(p99);
        }
        m
    }

    fn wrk_script(&self, scenario: &Scenario) -> PathBuf {
        let spec = &scenario.request;
        let body = self.dir.join(format!("{}.body", scenario.id));
        std::fs::write(&body, &spec.body).unwrap();
        let mut lua = format!(
            "wrk.method = \"{}\"\nwrk.path = \"{}\"\n",
            spec.method, spec.path
        );
        for (n, v) in &spec.headers {
            lua.push_str(&format!("wrk.headers[\"{n}\"] = \"{v}\"\n"));
        }
        if !spec.body.is_empty() {
            lua.push_str(&format!(
                "local f = io.open(\"{}\", \"rb\")\nwrk.body = f:read(\"*a\")\nf:close()\n",
                body.display()
            ));
        }
        let path = self.dir.join(format!("{}.lua", scenario.id));
        std::fs::write(&path, lua).unwrap();
        path
    }

    fn wrk(&self, port: u16, script: &Path, duration: Duration) -> WrkRun {
        let out = Command::new("taskset")
            .args(["-c", "1", "wrk", "-t1", "--latency"])
            .arg(format!("-c{}", self.settings.connections))
            // wrk takes whole seconds.
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .arg("-s")
            .arg(script)
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .expect("wrk (make bench installs it)");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "wrk failed: {text}");
        WrkRun::parse(&text)
    }
}

struct WrkRun {
    requests: u64,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

impl WrkRun {
    fn parse(text: &str) -> Self {
        let field = |prefix: &str| {
            text.lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix(prefix))
                .map(|v| v.trim().to_string())
        };
        let requests = text
            .lines()
            .find(|l| l.contains(" requests in "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no request count in wrk output:\n{text}"));
        Self {
            requests,
            requests_per_second: field("Requests/sec:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            p50_ms: field("50%").map(|v| duration_ms(&v)).unwrap_or(0.0),
            p99_ms: field("99%").map(|v| duration_ms(&v)).unwrap_or(0.0),
            non_2xx: field("Non-2xx or 3xx responses:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }
}

/// wrk prints `812.00us`, `1.23ms`, `2.00s`.
fn duration_ms(value: &str) -> f64 {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: f64 = number.parse().unwrap_or(0.0);
    match unit {
        "us" => n / 1_000.0,
        "ms" => n,
        "s" => n * 1_000.0,
        "m" => n * 60_000.0,
        _ => n,
    }
}

/// utime + stime of a process, in seconds.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / per_second
}

/// Open-loop load: requests leave on a fixed schedule whatever the answers do, and latency is
/// measured from the scheduled time, so a slow answer is not hidden by a late send.
fn fixed_rate_latency(port: u16, spec: &RequestSpec, rps: u32, duration: Duration) -> (f64, f64) {
    const CONNECTIONS: u32 = 4;
    let raw = spec.raw();
    let per_connection = Duration::from_secs_f64(CONNECTIONS as f64 / rps as f64);
    let count = (duration.as_secs_f64() * rps as f64 / CONNECTIONS as f64) as usize;
    let start = Instant::now() + Duration::from_millis(20);
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let raw = raw.clone();
            let offset = per_connection / CONNECTIONS * c;
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.set_nodelay(true).unwrap();
                let mut latencies = Vec::with_capacity(count);
                for i in 0..count {
                    let due = start + offset + per_connection * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    stream.write_all(&raw).unwrap();
                    read_one_response(&mut stream);
                    latencies.push(due.elapsed().as_secs_f64() * 1_000.0);
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_by(f64::total_cmp);
    let pick = |q: f64| all[((all.len() as f64 - 1.0) * q).round() as usize];
    (pick(0.50), pick(0.99))
}

/// Reads one keep-alive response with a content-length body (what direct_response and local
/// replies send).
fn read_one_response(stream: &mut TcpStream) {
    let mut buf = Vec::with_capacity(512);
    let mut byte = [0u8; 256];
    loop {
        let n = stream.read(&mut byte).unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&byte[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return;
            }
        }
    }
}
