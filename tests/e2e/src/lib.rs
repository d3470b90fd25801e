//! Harness for the end-to-end tests: starts the real Envoy 1.40 with the release `mcp_guard.wasm`,
//! the real `guardctl` and the demo MCP server (rmcp) on free ports, and speaks raw HTTP/1.1 to
//! them so tests control every header byte (duplicates, tabs, odd schemes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The module under test: the release build that ships, unless a test asks for another.
pub fn release_wasm() -> PathBuf {
    repo_root().join("target/wasm32-wasip1/release/mcp_guard.wasm")
}

/// The module built with the test-only `trap-on-demand` feature (see Makefile `wasm-trap`).
pub fn trap_wasm() -> PathBuf {
    repo_root().join("target/wasm-trap/wasm32-wasip1/release/mcp_guard.wasm")
}

pub fn native_bin(name: &str) -> PathBuf {
    let path = repo_root().join("target/native-release").join(name);
    assert!(
        path.exists(),
        "{} missing: run `make build` first",
        path.display()
    );
    path
}

pub fn envoy_bin() -> PathBuf {
    let path = repo_root().join(".venv/bin/envoy");
    assert!(
        path.exists(),
        "{} missing: run `make envoy` first",
        path.display()
    );
    path
}

/// A scratch folder per test under target/e2e/, kept after the run for its logs.
pub fn scratch_dir(test: &str) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = repo_root().join("target/e2e").join(format!(
        "{test}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A child process killed when dropped; its output goes to a log file in the scratch folder.
pub struct Process {
    name: String,
    child: Child,
    pub log: PathBuf,
    /// Leads its own process group (like a terminal's foreground job); dropped, the group dies.
    group_leader: bool,
}

impl Process {
    pub fn spawn(name: &str, dir: &Path, cmd: &mut Command) -> Process {
        let log = dir.join(format!("{name}.log"));
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process {
            name: name.to_string(),
            child,
            log,
            group_leader: false,
        }
    }

    /// Spawns `cmd` as the leader of a new process group, so [`Process::signal_group`] reaches
    /// it and everything it starts.
    pub fn spawn_group(name: &str, dir: &Path, cmd: &mut Command) -> Process {
        use std::os::unix::process::CommandExt;
        let mut process = Self::spawn(name, dir, cmd.process_group(0));
        process.group_leader = true;
        process
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process group this process leads (spawned with `process_group(0)`).
    /// Calls kill(2) directly: procps' `kill` command here misreads negative pids.
    pub fn signal_group(&self, signal: i32) {
        let pgid = i32::try_from(self.child.id()).unwrap();
        assert!(pgid > 1, "refusing to signal process group {pgid}");
        // SAFETY: kill(2) with a negative pid signals exactly that process group.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(&mut self) {
        if self.group_leader && self.is_running() {
            self.signal_group(libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ({}) ---",
                self.name,
                self.log.display()
            );
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// Waits for `marker` followed by `127.0.0.1:<port>` in a process log and returns the port: every
/// process binds port 0, so tests never race each other (or ephemeral client ports) for a port.
fn bound_port(process: &mut Process, marker: &str) -> u16 {
    try_bound_port(process, marker)
        .unwrap_or_else(|| panic!("{} exited:\n{}", process.name, process.log_text()))
}

/// [`bound_port`], or `None` if the process exits first (its port was taken, for one).
fn try_bound_port(process: &mut Process, marker: &str) -> Option<u16> {
    let mut port = None;
    let mut exited = false;
    wait_until(
        &format!("{marker:?} in {}", process.log.display()),
        Duration::from_secs(30),
        || {
            if !process.is_running() {
                exited = true;
                return true;
            }
            port = process.log_text().lines().find_map(|line| {
                let rest = &line[line.find(marker)? + marker.len()..];
                let rest = rest
                    .trim_start_matches("http://")
                    .strip_prefix("127.0.0.1:")?;
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            });
            port.is_some()
        },
    );
    // A line written just before exiting still counts as not started.
    if exited {
        return None;
    }
    port
}

/// A free loopback port below the kernel's ephemeral range: a server that restarts on it can
/// always have it back, since no outgoing connection is ever given a port from there.
pub fn port_outside_ephemeral_range() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let base = 10_000;
    let span = low.saturating_sub(base).max(1);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = base + (seed.wrapping_add(n.wrapping_mul(13))) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free port between {base} and {low}");
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1, raw.

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A request with full control of the header lines.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Bytes sent as the body exactly as given, with no content-length (e.g. chunked encoding).
    pub raw_body: Option<Vec<u8>>,
}

impl Request {
    pub fn get(path: &str) -> Self {
        Self {
            method: "GET".into(),
            path: path.into(),
            headers: vec![],
            body: vec![],
            raw_body: None,
        }
    }
    pub fn post_json(path: &str, body: &str) -> Self {
        Self {
            method: "POST".into(),
            path: path.into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                (
                    "accept".into(),
                    "application/json, text/event-stream".into(),
                ),
            ],
            body: body.as_bytes().to_vec(),
            raw_body: None,
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn send(&self, port: u16) -> Response {
        self.send_to(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    pub fn send_to(&self, addr: SocketAddr) -> Response {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            head.push_str("host: localhost\r\n");
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        match &self.raw_body {
            Some(_) => head.push_str("connection: close\r\n\r\n"),
            None => head.push_str(&format!(
                "content-length: {}\r\nconnection: close\r\n\r\n",
                self.body.len()
            )),
        }
        stream.write_all(head.as_bytes()).unwrap();
        stream
            .write_all(self.raw_body.as_deref().unwrap_or(&self.body))
            .unwrap();
        read_response(&mut stream)
    }
}

/// POSTs the file `body` as JSON over HTTP/2 (prior knowledge) with `nghttp`, with the given
/// extra request headers and one trailer (`name: value`), so the body never ends the stream;
/// returns what nghttp printed (`-v`: frames and `:status`).
pub fn nghttp_post(port: u16, body: &Path, headers: &[String], trailer: &str) -> String {
    let mut command = std::process::Command::new("nghttp");
    command
        .args(["-v", "--no-dep", "--trailer", trailer, "-d"])
        .arg(body);
    for header in headers.iter().map(String::as_str).chain([
        "content-type: application/json",
        "accept: application/json, text/event-stream",
    ]) {
        command.args(["-H", header]);
    }
    let out = command
        .arg(format!("http://127.0.0.1:{port}/api/mcp"))
        .output()
        .expect("nghttp (make e2e installs nghttp2-client)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A request written as raw bytes (possibly in parts), whose answer is read as it comes: to see
/// when the proxy answers or cuts a stream, or to stall an upload half-way.
pub struct OpenStream {
    stream: TcpStream,
    /// The response head, once [`OpenStream::read_head`] has read it.
    pub head: String,
    /// What arrived of the body so far.
    pub body: Vec<u8>,
}

impl OpenStream {
    /// Connects and writes `bytes` (a request, or its beginning); reads nothing yet.
    pub fn write_raw(port: u16, bytes: &[u8]) -> OpenStream {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(bytes).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        OpenStream {
            stream,
            head: String::new(),
            body: Vec::new(),
        }
    }

    /// Sends `request` (a whole HTTP/1.1 request) and reads up to the end of the response head.
    pub fn open(port: u16, request: &str) -> OpenStream {
        let mut open = Self::write_raw(port, request.as_bytes());
        open.read_head();
        open
    }

    /// Writes more of the request; a proxy that already answered may have closed it.
    pub fn write_more(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads up to the end of the response head (the rest stays in `body`).
    pub fn read_head(&mut self) {
        let mut received = std::mem::take(&mut self.body);
        let mut chunk = [0u8; 4096];
        let split = loop {
            if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "closed before the response head");
            received.extend_from_slice(&chunk[..n]);
        };
        self.head = String::from_utf8_lossy(&received[..split]).into_owned();
        self.body = received[split..].to_vec();
    }

    /// Reads until the proxy closes the connection (or it errors).
    pub fn read_to_end(&mut self) {
        let _ = self.stream.read_to_end(&mut self.body);
    }

    /// True while the connection stays open and silent for `quiet` (reading what does arrive).
    pub fn stays_open_for(&mut self, quiet: Duration) -> bool {
        self.closed_within(quiet).is_none()
    }

    /// How long until the proxy closes (or resets) the connection, if it does within `limit`.
    pub fn closed_within(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut chunk = [0u8; 4096];
        self.stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        while start.elapsed() < limit {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Some(start.elapsed()),
                Ok(n) => self.body.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Some(start.elapsed()),
            }
        }
        None
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A whole HTTP/1.1 request as text, with `content-length` when it has a body.
pub fn raw_request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        text.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

/// Reads one response, stopping at the end of its body rather than at connection close: Envoy
/// holds an HTTP/1 connection open for a second after `connection: close` (delayed close).
fn read_response(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(response) = complete_response(&raw) {
            return response;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    complete_response(&raw)
        .or_else(|| parse_response(&raw, true))
        .unwrap_or_else(|| {
            panic!(
                "incomplete HTTP response: {:?}",
                String::from_utf8_lossy(&raw)
            )
        })
}

fn complete_response(raw: &[u8]) -> Option<Response> {
    parse_response(raw, false)
}

/// Parses `raw` if it holds a whole response (or, with `at_eof`, whatever arrived before close).
fn parse_response(raw: &[u8], at_eof: bool) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let (decoded, finished) = decode_chunked(body);
        if !finished && !at_eof {
            return None;
        }
        decoded
    } else if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if body.len() < length && !at_eof {
            return None;
        }
        body[..length.min(body.len())].to_string()
    } else if at_eof {
        body.to_string()
    } else {
        return None;
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

/// Decodes a chunked body; the flag says whether the terminating zero-size chunk was seen.
fn decode_chunked(mut rest: &str) -> (String, bool) {
    let mut out = String::new();
    while let Some((size_line, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        if size == 0 {
            return (out, true);
        }
        if after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    (out, false)
}

/// The JSON-RPC message of a streamable-HTTP MCP answer, whether sent as JSON or as SSE.
pub fn mcp_message(response: &Response) -> Value {
    if response
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("text/event-stream"))
    {
        let data = response
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| d.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON event in SSE body {:?}", response.body));
        serde_json::from_str(data).unwrap()
    } else {
        response.json()
    }
}

pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}}"#;

/// Starts `tools/run-local.sh` (`make run`; `make run-ha` when `ha`) with its data in `data`, in
/// its own process group (Ctrl-C is SIGINT to the group), and waits until it says it is up.
pub fn start_stack_script(dir: &Path, data: &Path, ha: bool) -> Process {
    let mut command = Command::new(repo_root().join("tools/run-local.sh"));
    command
        .current_dir(repo_root())
        .env("MCP_GUARD_DATA", data)
        .env("ENVOY", envoy_bin())
        .env_remove("MCP_UPSTREAM");
    if ha {
        command.env("HA", "1");
    }
    let mut stack =
        Process::spawn_group(if ha { "run-ha" } else { "run-local" }, dir, &mut command);
    wait_until("the stack to come up", Duration::from_secs(60), || {
        assert!(
            stack.is_running(),
            "run-local.sh exited:\n{}",
            stack.log_text()
        );
        stack.log_text().contains("Ctrl-C stops everything")
    });
    stack
}

/// Runs `tools/postgres.sh ACTION DIR` (start, pause, resume, stop a throwaway PostgreSQL), which
/// must succeed; what it printed (`start` prints the database URL).
pub fn postgres_tool(action: &str, dir: &str) -> String {
    let out = Command::new(repo_root().join("tools/postgres.sh"))
        .args([action, dir])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "postgres.sh {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Runs the `curl` line a stack script printed (`make run`, `make run-ha`) and returns the MCP
/// message it answered with.
pub fn run_printed_curl(printed: &str) -> Value {
    let curl: String = printed
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("curl "))
        .take_while(|line| !line.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(curl.contains("Authorization: Bearer amt_"), "{printed}");
    let out = Command::new("bash").args(["-c", &curl]).output().unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let message = answer
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|d| d.starts_with('{'))
        .unwrap_or_else(|| panic!("no MCP message in {answer:?}"));
    serde_json::from_str(message).unwrap()
}

// ---------------------------------------------------------------------------------------------
// guardctl.

pub struct Guardctl {
    pub port: u16,
    starts: u32,
    pub data_dir: PathBuf,
    /// `--db`: the SQLite file in `data_dir`, or a PostgreSQL URL shared by replicas.
    db: String,
    /// Log files are `{name}-{start}.log`.
    name: String,
    process: Option<Process>,
    dir: PathBuf,
    /// Runs as the leader of its own process group, so [`Guardctl::crash`] can SIGKILL it whole.
    own_group: bool,
}

#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key_id: String,
    pub token: String,
}

impl Guardctl {
    pub fn start(dir: &Path) -> Guardctl {
        Self::start_with(dir, false)
    }

    /// Like [`Guardctl::start`], but the server leads its own process group (also after every
    /// restart), for tests that crash it with [`Guardctl::crash`].
    pub fn start_in_own_group(dir: &Path) -> Guardctl {
        Self::start_with(dir, true)
    }

    /// One replica of several on the PostgreSQL database `db_url`, in its own process group
    /// (so it can [`Guardctl::crash`]). Replicas started with the same `data_dir` share its
    /// admin token (the first creates it): start them one after the other.
    pub fn replica(dir: &Path, name: &str, db_url: &str, data_dir: &Path) -> Guardctl {
        Self::replica_on_port(dir, name, db_url, data_dir, 0)
    }

    /// [`Guardctl::replica`] on `port` (0: one picked here), e.g. one an Envoy config already
    /// names.
    pub fn replica_on_port(
        dir: &Path,
        name: &str,
        db_url: &str,
        data_dir: &Path,
        port: u16,
    ) -> Guardctl {
        let mut guardctl = Guardctl {
            port,
            starts: 0,
            data_dir: data_dir.to_path_buf(),
            db: db_url.to_string(),
            name: name.to_string(),
            process: None,
            dir: dir.to_path_buf(),
            own_group: true,
        };
        guardctl.restart();
        guardctl
    }

    fn start_with(dir: &Path, own_group: bool) -> Guardctl {
        let data_dir = dir.join("guardctl-data");
        let mut guardctl = Guardctl {
            port: 0,
            starts: 0,
            db: data_dir.join("guard.db").to_str().unwrap().to_string(),
            data_dir,
            name: "guardctl".to_string(),
            process: None,
            dir: dir.to_path_buf(),
            own_group,
        };
        guardctl.restart();
        guardctl
    }

    /// A crash: SIGKILL to the server's process group (no graceful shutdown, no chance to
    /// flush anything), then waits until it is gone. Only for [`Guardctl::start_in_own_group`].
    pub fn crash(&mut self) {
        assert!(self.own_group, "crash() needs Guardctl::start_in_own_group");
        if let Some(mut process) = self.process.take() {
            process.signal_group(libc::SIGKILL);
            process.kill();
        }
    }

    /// The server's process id while it runs (for /proc readings in benchmarks).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// The admin token `serve` wrote next to its database.
    pub fn admin_token(&self) -> String {
        fs::read_to_string(self.data_dir.join("admin-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// (Re)starts on the same port and database. The first start picks a free port below the
    /// ephemeral range (so a restart can rebind it while other tests open connections); if a
    /// parallel test takes it first, the next one is tried.
    pub fn restart(&mut self) {
        self.stop();
        let first = self.port == 0;
        for _ in 0..20 {
            if first {
                self.port = port_outside_ephemeral_range();
            }
            if self.try_start() {
                return;
            }
            if !first {
                // Our own port, just closed: only a lingering socket can hold it.
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        panic!("guardctl could not listen on 127.0.0.1:{}", self.port);
    }

    fn try_start(&mut self) -> bool {
        self.starts += 1;
        let spawn = if self.own_group {
            Process::spawn_group
        } else {
            Process::spawn
        };
        let mut process = spawn(
            &format!("{}-{}", self.name, self.starts),
            &self.dir,
            Command::new(native_bin("guardctl")).args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--db",
                &self.db,
                "--admin-token-file",
                self.data_dir.join("admin-token").to_str().unwrap(),
            ]),
        );
        let Some(port) = try_bound_port(&mut process, "listening on ") else {
            return false;
        };
        assert_eq!(port, self.port, "guardctl bound another port");
        self.process = Some(process);
        wait_until("guardctl /healthz", Duration::from_secs(20), || {
            Request::get("/healthz").send(port).status == 200
        });
        true
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Runs the real `guardctl` CLI against this server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(native_bin("guardctl"))
            .args(args)
            .env("GUARDCTL_SERVER", format!("http://127.0.0.1:{}", self.port))
            .env(
                "GUARDCTL_ADMIN_TOKEN_FILE",
                self.data_dir.join("admin-token"),
            )
            .env_remove("GUARDCTL_ADMIN_TOKEN")
            .output()
            .unwrap()
    }

    pub fn create_key(&self, org: &str, role: &str, expires_in: Option<&str>) -> IssuedKey {
        let mut args = vec![
            "keys", "create", "--org", org, "--role", role, "--name", "e2e", "--json",
        ];
        if let Some(d) = expires_in {
            args.extend(["--expires-in", d]);
        }
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        IssuedKey {
            key_id: json["key_id"].as_str().unwrap().to_string(),
            token: json["token"].as_str().unwrap().to_string(),
        }
    }

    /// Runs a guardctl command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "guardctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A key issued by `user` (who must exist), with the user's role frozen into it.
    pub fn create_user_key(&self, user: &str) -> IssuedKey {
        let out = self.ok(&["keys", "create", "--user", user, "--name", "e2e", "--json"]);
        let json: Value = serde_json::from_str(&out).unwrap();
        IssuedKey {
            key_id: json["key_id"].as_str().unwrap().to_string(),
            token: json["token"].as_str().unwrap().to_string(),
        }
    }

    /// `guardctl_long_polls` from its /metrics (None while it does not answer).
    pub fn long_polls(&self) -> Option<u64> {
        Request::get("/metrics")
            .send(self.port)
            .body
            .lines()
            .find_map(|l| l.strip_prefix("guardctl_long_polls ")?.trim().parse().ok())
    }

    pub fn revoke(&self, key_id: &str) {
        let out = self.cli(&["keys", "revoke", key_id]);
        assert!(
            out.status.success(),
            "keys revoke failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The demo MCP upstream.

pub struct Upstream {
    pub port: u16,
    _process: Process,
}

impl Upstream {
    pub fn start(dir: &Path) -> Upstream {
        let mut process = Process::spawn(
            "mcp-demo-server",
            dir,
            // Behind Envoy the Host header is the client's (e.g. acme.armature.app in the
            // org-pattern test); rmcp's DNS-rebinding check is for servers browsers reach directly.
            Command::new(native_bin("mcp-demo-server")).args([
                "--listen",
                "127.0.0.1:0",
                "--allowed-hosts",
                "*",
            ]),
        );
        let port = bound_port(&mut process, "listening on ");
        Upstream {
            port,
            _process: process,
        }
    }

    /// What the upstream saw last: `{"count": n, "headers": {...}}`.
    pub fn last_request(&self) -> Value {
        Request::get("/debug/last-request").send(self.port).json()
    }

    pub fn request_count(&self) -> u64 {
        self.last_request()["count"].as_u64().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy, running the shipped configuration.

pub struct EnvoyOptions {
    pub config_file: &'static str,
    pub wasm: PathBuf,
    pub upstream_port: u16,
    pub guardctl_port: u16,
    /// The shipped config's second guardctl endpoint (:8082): another replica, or none (the
    /// endpoint is removed, so no test reaches a stray server on that port).
    pub guardctl_replica_port: Option<u16>,
    /// Replaces the filter's JSON configuration, when set.
    pub plugin_config: Option<String>,
    pub concurrency: u32,
    /// Further edits of the shipped config: each `from` must occur exactly once.
    pub substitutions: Vec<(&'static str, &'static str)>,
}

impl EnvoyOptions {
    pub fn new(upstream_port: u16, guardctl_port: u16) -> Self {
        Self {
            config_file: "envoy/envoy.yaml",
            wasm: release_wasm(),
            upstream_port,
            guardctl_port,
            guardctl_replica_port: None,
            plugin_config: None,
            concurrency: 2,
            substitutions: Vec::new(),
        }
    }
}

pub struct Envoy {
    pub port: u16,
    pub admin_port: u16,
    pub process: Process,
}

/// Replaces `from` by `to` in a shipped config, insisting it occurs exactly once so that a change
/// to the shipped file cannot silently leave the test on the wrong port or module.
fn substitute(text: &mut String, from: &str, to: &str) {
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected exactly one {from:?} in the shipped Envoy config"
    );
    *text = text.replacen(from, to, 1);
}

/// The plugin JSON in a shipped config: the indented `value: |` block under `configuration`.
fn replace_plugin_config(text: &mut String, json: &str) {
    let start = text.find("value: |\n").expect("plugin configuration block") + "value: |\n".len();
    let indent = text[start..].chars().take_while(|c| *c == ' ').count();
    let mut end = start;
    for line in text[start..].split_inclusive('\n') {
        if line.chars().take_while(|c| *c == ' ').count() < indent {
            break;
        }
        end += line.len();
    }
    let pad = " ".repeat(indent);
    let block: String = json.lines().map(|l| format!("{pad}{l}\n")).collect();
    text.replace_range(start..end, &block);
}

impl Envoy {
    pub fn render(options: &EnvoyOptions, port: u16, admin_port: u16) -> String {
        let mut text = fs::read_to_string(repo_root().join(options.config_file)).unwrap();
        substitute(
            &mut text,
            "port_value: 9901",
            &format!("port_value: {admin_port}"),
        );
        substitute(
            &mut text,
            "port_value: 10000",
            &format!("port_value: {port}"),
        );
        substitute(
            &mut text,
            "port_value: 8000",
            &format!("port_value: {}", options.upstream_port),
        );
        substitute(
            &mut text,
            "port_value: 8081",
            &format!("port_value: {}", options.guardctl_port),
        );
        let replica_endpoint =
            "        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8082 } } }\n";
        match options.guardctl_replica_port {
            Some(port) => substitute(
                &mut text,
                "port_value: 8082",
                &format!("port_value: {port}"),
            ),
            None => substitute(&mut text, replica_endpoint, ""),
        }
        substitute(
            &mut text,
            "target/wasm32-wasip1/release/mcp_guard.wasm",
            options.wasm.to_str().unwrap(),
        );
        if let Some(json) = &options.plugin_config {
            replace_plugin_config(&mut text, json);
        }
        for (from, to) in &options.substitutions {
            substitute(&mut text, from, to);
        }
        text
    }

    pub fn start(dir: &Path, options: &EnvoyOptions) -> Envoy {
        Self::start_config(
            dir,
            &Self::render(options, 0, 0),
            options.concurrency,
            None,
            "debug",
        )
    }

    /// Starts Envoy on a config whose listener and admin ports are 0, optionally pinned to one
    /// CPU (benchmarks, which also log at production level), and finds the ports it bound.
    pub fn start_config(
        dir: &Path,
        yaml: &str,
        concurrency: u32,
        cpu: Option<u32>,
        wasm_log_level: &str,
    ) -> Envoy {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!("envoy-{}", SEQ.fetch_add(1, Ordering::Relaxed));
        let config = dir.join(format!("{name}.yaml"));
        let admin_address = dir.join(format!("{name}.admin"));
        fs::write(&config, yaml).unwrap();
        let mut command = match cpu {
            Some(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset.args(["-c", &cpu.to_string()]).arg(envoy_bin());
                taskset
            }
            None => Command::new(envoy_bin()),
        };
        let mut process = Process::spawn(
            &name,
            dir,
            command.args([
                "-c",
                config.to_str().unwrap(),
                "--concurrency",
                &concurrency.to_string(),
                "--use-dynamic-base-id",
                "--admin-address-path",
                admin_address.to_str().unwrap(),
                "--log-level",
                "info",
                "--component-log-level",
                &format!("wasm:{wasm_log_level}"),
                // Access logs reach the file in 100 ms instead of Envoy's default 10 s.
                "--file-flush-interval-msec",
                "100",
            ]),
        );
        let mut admin_port = 0;
        wait_until("Envoy's admin address", Duration::from_secs(30), || {
            assert!(
                process.is_running(),
                "Envoy exited:\n{}",
                process.log_text()
            );
            admin_port = fs::read_to_string(&admin_address)
                .ok()
                .and_then(|a| a.trim().rsplit_once(':')?.1.parse().ok())
                .unwrap_or(0);
            admin_port != 0
        });
        let mut port = 0;
        wait_until("Envoy to be live", Duration::from_secs(30), || {
            assert!(
                process.is_running(),
                "Envoy exited:\n{}",
                process.log_text()
            );
            if Request::get("/ready").send(admin_port).status != 200 {
                return false;
            }
            let listeners: Value = Request::get("/listeners?format=json")
                .send(admin_port)
                .json();
            port = listeners["listener_statuses"][0]["local_address"]["socket_address"]
                ["port_value"]
                .as_u64()
                .unwrap_or(0) as u16;
            port != 0
        });
        Envoy {
            port,
            admin_port,
            process,
        }
    }

    /// Writes the rendered config into `dir` and runs `envoy --mode validate` on it; returns
    /// whether Envoy accepted it, and everything it printed.
    pub fn validate(dir: &Path, options: &EnvoyOptions) -> (bool, String) {
        validate_yaml(dir, "envoy-validate", &Self::render(options, 0, 0))
    }

    /// Counters and gauges of the filter, by name without Envoy's `wasmcustom.` prefix.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        Request::get("/stats?filter=mcp_guard")
            .send(self.admin_port)
            .body
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(n, v)| {
                Some((
                    n.trim_start_matches("wasmcustom.").to_string(),
                    v.trim().parse().ok()?,
                ))
            })
            .collect()
    }

    /// A filter stat by name (without `wasmcustom.`). Panics when Envoy has no such stat, so a
    /// misspelt name fails the test instead of reading as 0.
    pub fn stat(&self, name: &str) -> u64 {
        let stats = self.stats();
        stats.get(name).copied().unwrap_or_else(|| {
            panic!(
                "Envoy has no stat {name:?}; the filter's are {:?}",
                stats.keys().collect::<Vec<_>>()
            )
        })
    }

    /// A counter the filter defines on first use, so that absent means 0: body-policy rules
    /// (`mcp_guard.body.rejected.<rule>`, `.audit.<rule>`) and tool-policy decisions by role
    /// (`mcp_guard.policy.allowed.<role>`, `.forbidden.`, `.audit.`). Only these may be absent.
    pub fn rule_stat(&self, name: &str) -> u64 {
        let rule = [
            "mcp_guard.body.rejected.",
            "mcp_guard.body.audit.",
            "mcp_guard.policy.allowed.",
            "mcp_guard.policy.forbidden.",
            "mcp_guard.policy.audit.",
        ]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix));
        assert!(
            rule.is_some_and(|r| !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')),
            "{name:?} is not a counter defined on first use"
        );
        self.stats().get(name).copied().unwrap_or(0)
    }

    /// Any Envoy stat (e.g. cluster stats). Panics when there is none by that name.
    pub fn raw_stat(&self, name: &str) -> u64 {
        Request::get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
            .send(self.admin_port)
            .body
            .lines()
            .find_map(|l| l.split_once(": ").and_then(|(_, v)| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("Envoy has no stat {name:?}"))
    }

    /// Waits until the key set has been loaded (requests stop getting 503).
    pub fn wait_for_keyset(&self) {
        wait_until("the key set to load", Duration::from_secs(20), || {
            Request::get("/api/mcp").send(self.port).status != 503
        });
    }
}

/// Writes `yaml` to `dir/<name>.yaml` and runs `envoy --mode validate` on it; returns whether
/// Envoy accepted it, and everything it printed.
pub fn validate_yaml(dir: &Path, name: &str, yaml: &str) -> (bool, String) {
    let config = dir.join(format!("{name}.yaml"));
    fs::write(&config, yaml).unwrap();
    let out = Command::new(envoy_bin())
        .args([
            "--mode",
            "validate",
            "-c",
            config.to_str().unwrap(),
            "--use-dynamic-base-id",
        ])
        .output()
        .unwrap();
    let printed =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), printed)
}

/// The standard stack: guardctl, the demo upstream and Envoy with the shipped config.
pub struct Stack {
    pub dir: PathBuf,
    pub guardctl: Guardctl,
    pub upstream: Upstream,
    pub envoy: Envoy,
}

impl Stack {
    pub fn start(test: &str) -> Stack {
        Self::start_with(test, |_| {})
    }

    pub fn start_with(test: &str, customize: impl FnOnce(&mut EnvoyOptions)) -> Stack {
        Self::start_inner(test, false, customize)
    }

    /// A stack whose guardctl can be [`Guardctl::crash`]ed.
    pub fn start_in_own_group_with(test: &str, customize: impl FnOnce(&mut EnvoyOptions)) -> Stack {
        Self::start_inner(test, true, customize)
    }

    fn start_inner(
        test: &str,
        guardctl_in_own_group: bool,
        customize: impl FnOnce(&mut EnvoyOptions),
    ) -> Stack {
        let dir = scratch_dir(test);
        let guardctl = if guardctl_in_own_group {
            Guardctl::start_in_own_group(&dir)
        } else {
            Guardctl::start(&dir)
        };
        let upstream = Upstream::start(&dir);
        let mut options = EnvoyOptions::new(upstream.port, guardctl.port);
        customize(&mut options);
        let envoy = Envoy::start(&dir, &options);
        envoy.wait_for_keyset();
        Stack {
            dir,
            guardctl,
            upstream,
            envoy,
        }
    }

    /// Waits until the proxy refuses `token` with 401 (a revocation has arrived). It probes a
    /// path Envoy answers itself (404 while the key is valid), so waiting never sends a request
    /// to the upstream that a test might be counting.
    pub fn wait_until_refused(&self, token: &str) {
        wait_until(
            "the revocation to reach the proxy",
            Duration::from_secs(5),
            || {
                Request::get("/not-mcp")
                    .bearer(token)
                    .send(self.envoy.port)
                    .status
                    == 401
            },
        );
    }

    /// Waits until the proxy accepts `token` (a new key has arrived), probing the same
    /// Envoy-answered path as [`Stack::wait_until_refused`] (404 once the key is valid).
    pub fn wait_until_allowed(&self, token: &str) {
        wait_until_allowed_on(self.envoy.port, token);
    }

    /// A new key of org `demo`, once the proxy accepts it (no request reaches the upstream).
    pub fn live_key(&self, role: &str) -> IssuedKey {
        let key = self.guardctl.create_key("demo", role, None);
        self.wait_until_allowed(&key.token);
        key
    }

    pub fn mcp(&self, token: Option<&str>) -> Response {
        let request = Request::post_json("/api/mcp", INITIALIZE);
        match token {
            Some(t) => request.bearer(t).send(self.envoy.port),
            None => request.send(self.envoy.port),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Several proxies on one guardctl: revocation propagation, for the tests and `make bench`.

/// True when the proxy on `port` accepts `token`: a path Envoy answers itself (404) once the
/// key is valid, so probing never reaches a counted upstream.
pub fn accepted_by(port: u16, token: &str) -> bool {
    Request::get("/not-mcp").bearer(token).send(port).status == 404
}

/// Waits until the proxy on `port` accepts `token` (see [`accepted_by`]).
pub fn wait_until_allowed_on(port: u16, token: &str) {
    wait_until(
        "the key to reach the proxy",
        Duration::from_secs(10),
        || accepted_by(port, token),
    );
}

/// Probes whether `port` refuses `token` (401) on the Envoy-answered path, as fast as it answers.
fn refused_by(port: u16, token: &str) -> bool {
    Request::get("/not-mcp").bearer(token).send(port).status == 401
}

/// Revokes `key_id` through the admin API; how long the answer took, and its JSON.
pub fn revoke_via_api(guardctl: &Guardctl, key_id: &str) -> (Duration, Value) {
    let admin = format!("Bearer {}", guardctl.admin_token());
    let mut revoke = Request::get(&format!("/v1/keys/{key_id}")).header("authorization", &admin);
    revoke.method = "DELETE".into();
    let sent = Instant::now();
    let answer = revoke.send(guardctl.port);
    let took = sent.elapsed();
    assert_eq!(answer.status, 200, "{answer:?}");
    (took, answer.json())
}

/// Revokes each key through `through(i)` and checks that its answer names `proxies.len()`
/// confirming proxies and none missing, and that every proxy refuses the key the moment the
/// answer arrives. The revoke-to-answer times, sorted.
pub fn revoke_and_check_enforced<'a>(
    through: impl Fn(usize) -> &'a Guardctl,
    proxies: &[u16],
    keys: &[IssuedKey],
) -> Vec<Duration> {
    let mut answered = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let (took, answer) = revoke_via_api(through(i), &key.key_id);
        answered.push(took);
        let enforced = &answer["enforced"];
        assert_eq!(
            enforced["confirmed"].as_array().map(Vec::len),
            Some(proxies.len()),
            "{enforced}"
        );
        assert_eq!(enforced["unconfirmed"], serde_json::json!([]), "{enforced}");
        for &port in proxies {
            let status = Request::get("/not-mcp")
                .bearer(&key.token)
                .send(port)
                .status;
            assert_eq!(
                status, 401,
                "port {port} accepted key {} after the answer",
                key.key_id
            );
        }
    }
    answered.sort();
    answered
}

/// When one proxy refused a revoked key, and when guardctl acknowledged the revoke, both counted
/// from the moment the revoke request was sent.
#[derive(Debug, Clone, Copy)]
pub struct RevocationTiming {
    pub refused_after_send: Duration,
    pub answered_after_send: Duration,
}

impl RevocationTiming {
    /// How long after the revoke was acknowledged the proxy still accepted the key (zero when it
    /// already refused it by then): the window in which a request can still be forwarded.
    pub fn window_after_answer(&self) -> Duration {
        self.refused_after_send
            .saturating_sub(self.answered_after_send)
    }
}

/// Revokes `keys` one after another through the admin API and, for each, measures how long
/// every proxy takes to refuse it (one probing thread per proxy, from the moment the revoke
/// request is sent). Returns one latency per key and proxy; panics if a proxy never refuses.
pub fn measure_revocations(
    guardctl: &Guardctl,
    proxy_ports: &[u16],
    keys: &[IssuedKey],
) -> Vec<Duration> {
    time_revocations(guardctl, proxy_ports, keys)
        .iter()
        .map(|t| t.refused_after_send)
        .collect()
}

/// [`measure_revocations`], with the time of guardctl's answer too.
pub fn time_revocations(
    guardctl: &Guardctl,
    proxy_ports: &[u16],
    keys: &[IssuedKey],
) -> Vec<RevocationTiming> {
    let admin = format!("Bearer {}", guardctl.admin_token());
    let mut timings = Vec::with_capacity(keys.len() * proxy_ports.len());
    for key in keys {
        let start = Instant::now();
        let probes: Vec<_> = proxy_ports
            .iter()
            .map(|&port| {
                let token = key.token.clone();
                std::thread::spawn(move || {
                    while start.elapsed() < Duration::from_secs(10) {
                        if refused_by(port, &token) {
                            return Some(start.elapsed());
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    None
                })
            })
            .collect();
        let mut revoke =
            Request::get(&format!("/v1/keys/{}", key.key_id)).header("authorization", &admin);
        revoke.method = "DELETE".into();
        let answer = revoke.send(guardctl.port);
        let answered_after_send = start.elapsed();
        assert!(answer.status < 300, "revoke failed: {answer:?}");
        for (probe, port) in probes.into_iter().zip(proxy_ports) {
            let refused = probe.join().unwrap().unwrap_or_else(|| {
                panic!(
                    "the proxy on port {port} still accepts revoked key {}",
                    key.key_id
                )
            });
            timings.push(RevocationTiming {
                refused_after_send: refused,
                answered_after_send,
            });
        }
    }
    timings
}

/// The `p`-quantile (0..=1) of `sorted` by the nearest-rank method.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
