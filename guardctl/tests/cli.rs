//! End-to-end tests of the `guardctl` binary: `serve` as a child process, `keys ...` against it,
//! and a graceful stop on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_guardctl");

/// `guardctl serve` on an ephemeral port; killed on drop if still running.
struct ServeProcess {
    child: Child,
    url: String,
    /// Every line the server wrote to stderr so far.
    lines: Arc<Mutex<Vec<String>>>,
    /// The thread draining stderr; it ends when the server's stderr closes.
    reader: Option<thread::JoinHandle<()>>,
}

impl ServeProcess {
    fn start(data_dir: &Path) -> ServeProcess {
        Self::start_with(|command| {
            command
                .args(["serve", "--listen", "127.0.0.1:0", "--db"])
                .arg(data_dir.join("guard.db"));
        })
    }

    /// Starts `guardctl` with arguments and environment set by `configure` (the GUARDCTL_*
    /// variables of the calling environment are removed first).
    fn start_with(configure: impl FnOnce(&mut Command)) -> ServeProcess {
        let mut command = Command::new(BIN);
        for name in [
            "GUARDCTL_LISTEN",
            "GUARDCTL_DB",
            "GUARDCTL_ADMIN_TOKEN_FILE",
            "GUARDCTL_SYNC_PAGE_SIZE",
            "GUARDCTL_LOG_FORMAT",
            "GUARDCTL_LOG",
        ] {
            command.env_remove(name);
        }
        configure(&mut command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The start-up line names the address actually bound; keep draining stderr after it so
        // the server never blocks on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines_rx) = mpsc::channel();
        let reader = {
            let lines = Arc::clone(&lines);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line.clone());
                    let _ = lines_tx.send(line);
                }
            })
        };
        let line = loop {
            let line = lines_rx
                .recv_timeout(Duration::from_secs(20))
                .expect("no start-up line from guardctl serve");
            if line.contains("listening on ") {
                break line;
            }
        };
        let rest = &line[line.find("listening on ").unwrap() + "listening on ".len()..];
        let url: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect();
        assert!(url.starts_with("http://"), "no address in {line:?}");
        assert!(
            !line.contains("amt_"),
            "start-up line shows a token: {line}"
        );
        ServeProcess {
            child,
            url,
            lines,
            reader: Some(reader),
        }
    }

    /// [`Self::terminate`], then every line the server wrote: read once the reader thread has
    /// drained stderr to its end, so no last line is missed.
    fn terminate_with_log(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let reader = self.reader.take();
        let lines = Arc::clone(&self.lines);
        let status = self.terminate();
        if let Some(reader) = reader {
            reader.join().unwrap();
        }
        let log = lines.lock().unwrap().clone();
        (status, log)
    }

    /// Sends SIGTERM and returns the exit status once the server has stopped.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no exit after SIGTERM"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `guardctl keys ...` against `server`, with the token taken from the data folder.
fn keys(server: &ServeProcess, data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("keys")
        .args(args)
        .arg("--server")
        .arg(&server.url)
        .arg("--admin-token-file")
        .arg(data_dir.join("admin-token"))
        .env_remove("GUARDCTL_ADMIN_TOKEN")
        .env_remove("GUARDCTL_SERVER")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn keys_commands_against_a_served_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let server = ServeProcess::start(&data);

    // create --json: one JSON object with the token.
    let created: Value = serde_json::from_str(&stdout(&keys(
        &server,
        &data,
        &[
            "create",
            "--org",
            "demo",
            "--role",
            "admin",
            "--name",
            "ci bot",
            "--expires-in",
            "30d",
            "--json",
        ],
    )))
    .unwrap();
    let key_id = created["key_id"].as_str().unwrap().to_string();
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with(&format!("amt_{key_id}_")));
    assert_eq!(created["name"], "ci bot");
    assert_eq!(
        created["expires_at"].as_i64().unwrap() - created["created_at"].as_i64().unwrap(),
        30 * 86_400
    );

    // create (text): the token on its own line and the show-once warning.
    let text = stdout(&keys(
        &server,
        &data,
        &[
            "create", "--org", "demo", "--role", "reader", "--name", "human",
        ],
    ));
    assert!(text.contains("shown only once"), "{text}");
    let second_token = text
        .lines()
        .find(|line| line.starts_with("amt_"))
        .expect("token line");
    let second_id = second_token.split('_').nth(1).unwrap().to_string();

    // list: a table naming both keys; --json parses.
    let table = stdout(&keys(&server, &data, &["list"]));
    assert!(table.starts_with("KEY ID"), "{table}");
    assert!(
        table.contains(&key_id) && table.contains(&second_id),
        "{table}"
    );
    assert!(!table.contains("amt_"));
    let listed: Value =
        serde_json::from_str(&stdout(&keys(&server, &data, &["list", "--json"]))).unwrap();
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);

    // revoke, then revoke again: a clear error and a non-zero exit.
    let revoked = stdout(&keys(&server, &data, &["revoke", &key_id]));
    assert!(revoked.contains(&key_id), "{revoked}");
    let again = keys(&server, &data, &["revoke", &key_id]);
    assert!(!again.status.success());
    let message = String::from_utf8_lossy(&again.stderr);
    assert!(message.contains("no such key"), "{message}");

    // Bad input is refused with the server's message.
    let bad = keys(
        &server,
        &data,
        &[
            "create", "--org", "Bad Org", "--role", "admin", "--name", "x",
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("org must be"));
    let bad_duration = keys(
        &server,
        &data,
        &[
            "create",
            "--org",
            "demo",
            "--role",
            "admin",
            "--name",
            "x",
            "--expires-in",
            "soon",
        ],
    );
    assert!(!bad_duration.status.success());

    // A wrong admin token is a 401 with a hint, not a crash.
    let wrong = Command::new(BIN)
        .args(["keys", "list", "--server", &server.url])
        .env("GUARDCTL_ADMIN_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("admin token"));

    // SIGTERM: a clean exit; the keys are there after a restart.
    assert!(server.terminate().success());
    let server = ServeProcess::start(&data);
    let listed: Value =
        serde_json::from_str(&stdout(&keys(&server, &data, &["list", "--json"]))).unwrap();
    let ids: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![second_id.as_str()]);
    assert!(server.terminate().success());
}

#[test]
fn unreachable_server_and_missing_token_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Command::new(BIN)
        .args(["keys", "list", "--admin-token-file"])
        .arg(dir.path().join("no-such-file"))
        .env_remove("GUARDCTL_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read the admin token"));

    let unreachable = Command::new(BIN)
        .args(["keys", "list", "--server", "http://127.0.0.1:1"])
        .env("GUARDCTL_ADMIN_TOKEN", "whatever")
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"));

    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("serve") && help.contains("keys"));
}

/// `guardctl keys import --file`: a JSON Lines file of hash rows, through the binary and a
/// served database; a bad line or a reused key-id is named by its line.
#[test]
fn keys_import_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let server = ServeProcess::start(&data);
    let row = |key_id: &str| {
        format!(
            r#"{{"key_id":"{key_id}","sha256":"{}","org":"demo","role":"member","name":"old store"}}"#,
            "0a".repeat(32)
        )
    };
    let rows: Vec<String> = (0..25).map(|i| row(&format!("imported{i:04}"))).collect();
    let file = dir.path().join("rows.jsonl");
    std::fs::write(&file, rows.join("\n") + "\n").unwrap();
    let file_arg = file.to_str().unwrap();

    let summary: Value = serde_json::from_str(&stdout(&keys(
        &server,
        &data,
        &["import", "--file", file_arg, "--batch-size", "10", "--json"],
    )))
    .unwrap();
    assert_eq!(summary["imported"], 25);
    assert_eq!(summary["batches"], 3);
    assert_eq!(summary["version"], 25);
    let listed: Value =
        serde_json::from_str(&stdout(&keys(&server, &data, &["list", "--json"]))).unwrap();
    assert_eq!(listed["keys"].as_array().unwrap().len(), 25);
    assert_eq!(listed["keys"][3]["name"], "old store");

    // Importing again: the first batch is refused, naming line 1; nothing more is written.
    let again = keys(&server, &data, &["import", "--file", file_arg]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("line 1: server answered 409"), "{err}");
    assert!(
        err.contains("The 0 rows before line 1 were imported"),
        "{err}"
    );

    // A bad line stops the import before anything is sent.
    let mut fresh: Vec<String> = (0..5).map(|i| row(&format!("fresh{i:04}abc"))).collect();
    fresh.insert(
        3,
        r#"{"key_id":"fresh9999abc","sha256":"nothex","org":"demo","role":"member"}"#.into(),
    );
    std::fs::write(&file, fresh.join("\n")).unwrap();
    let bad = keys(&server, &data, &["import", "--file", file_arg]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("line 4: sha256 must be 64 hex digits"),
        "{err}"
    );
    assert!(err.contains("nothing was imported"), "{err}");
    let text = stdout(&keys(&server, &data, &["list", "--json"]));
    assert!(!text.contains("fresh0000abc"), "{text}");

    let help = Command::new(BIN)
        .args(["keys", "import", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("JSON Lines"), "{help}");
    assert!(help.contains("--batch-size"), "{help}");
    drop(server);
}

fn http_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(90)))
        .build()
        .into();
    let mut response = agent.get(url).call().unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

fn help_of(args: &[&str]) -> String {
    let output = Command::new(BIN).args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// `guardctl --help` reads like kubectl's: a description, commands by group, examples with real
/// invocations and the pointer to per-command help; `serve --help` names every variable.
#[test]
fn help_reads_like_kubectl() {
    let root = help_of(&["--help"]);
    for expected in [
        "guardctl controls mcp-guard's API keys",
        "Server Commands:\n  serve",
        "Key Commands",
        "  keys create",
        "  keys list",
        "  keys revoke",
        "  keys import",
        "Examples:\n  # ",
        "\n  guardctl serve --listen",
        "\n  guardctl keys create --org",
        "Usage:\n  guardctl <command> [options]",
        "Use \"guardctl <command> --help\" for more information about a command.",
    ] {
        assert!(root.contains(expected), "{expected:?} not in:\n{root}");
    }
    assert_eq!(help_of(&["-h"]), root, "-h and --help agree");

    let serve = help_of(&["serve", "--help"]);
    for variable in [
        "GUARDCTL_LISTEN",
        "GUARDCTL_DB",
        "GUARDCTL_ADMIN_TOKEN_FILE",
        "GUARDCTL_SYNC_PAGE_SIZE",
        "GUARDCTL_LOG_FORMAT",
        "GUARDCTL_LOG=",
    ] {
        assert!(
            serve.contains(&format!("[env: {variable}")),
            "{variable} not in:\n{serve}"
        );
    }
    assert!(serve.contains("Examples:") && serve.contains("/readyz") && serve.contains("/metrics"));

    let keys = help_of(&["keys", "--help"]);
    assert!(keys.contains("Examples:") && keys.contains("guardctl keys revoke"));
    assert!(keys.contains("GUARDCTL_SERVER"), "{keys}");
}

/// The production set-up, through the real binary: configuration by environment only, JSON logs
/// at debug, the admin token from a Secret-like file outside the data folder; SIGTERM answers a
/// waiting long-poll at once and exits 0; the log has the promised lines and never a secret.
#[test]
fn env_config_json_logs_and_sigterm_answers_long_polls() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let secret_dir = dir.path().join("secret");
    std::fs::create_dir_all(&secret_dir).unwrap();
    let token_file = secret_dir.join("admin-token");
    let admin_token = "operator-chosen-admin-token-0123456789";
    std::fs::write(&token_file, format!("{admin_token}\n")).unwrap();
    // Mode 0440: how a Kubernetes Secret reaches a non-root pod through its fsGroup.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o440)).unwrap();

    let server = ServeProcess::start_with(|command| {
        command
            .arg("serve")
            .env("GUARDCTL_LISTEN", "127.0.0.1:0")
            .env("GUARDCTL_DB", data.join("guard.db"))
            .env("GUARDCTL_ADMIN_TOKEN_FILE", &token_file)
            .env("GUARDCTL_SYNC_PAGE_SIZE", "50")
            .env("GUARDCTL_LOG_FORMAT", "json")
            .env("GUARDCTL_LOG", "debug");
    });
    assert!(
        !data.join("admin-token").exists(),
        "the token comes from --admin-token-file"
    );

    let keys_cli = |args: &[&str]| {
        Command::new(BIN)
            .arg("keys")
            .args(args)
            .args(["--server", &server.url])
            .env("GUARDCTL_ADMIN_TOKEN_FILE", &token_file)
            .env_remove("GUARDCTL_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let created: Value = serde_json::from_str(&stdout(&keys_cli(&[
        "create", "--org", "acme", "--role", "admin", "--name", "logged", "--json",
    ])))
    .unwrap();
    let key_id = created["key_id"].as_str().unwrap().to_string();
    let token = created["token"].as_str().unwrap().to_string();
    let second: Value = serde_json::from_str(&stdout(&keys_cli(&[
        "create", "--org", "acme", "--role", "member", "--name", "gone", "--json",
    ])))
    .unwrap();
    let second_id = second["key_id"].as_str().unwrap().to_string();
    stdout(&keys_cli(&["revoke", &second_id]));

    assert_eq!(http_get(&format!("{}/readyz", server.url)).0, 200);
    let (status, page) = http_get(&format!("{}/v1/keyset?since=0", server.url));
    assert_eq!(status, 200);
    let hash = serde_json::from_str::<Value>(&page).unwrap()["upserts"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();

    // A long-poll that would wait a minute; SIGTERM must answer it at once.
    let poll_url = format!("{}/v1/keyset?since=3&wait_ms=60000", server.url);
    let poller = thread::spawn(move || {
        let answer = http_get(&poll_url);
        (answer, Instant::now())
    });
    let waited = Instant::now();
    loop {
        let (_, metrics) = http_get(&format!("{}/metrics", server.url));
        if metrics.lines().any(|line| line == "guardctl_long_polls 1") {
            assert!(
                metrics.lines().any(|line| line == "guardctl_keys 1"),
                "{metrics}"
            );
            assert!(
                metrics
                    .lines()
                    .any(|line| line == "guardctl_revocations_total 1"),
                "{metrics}"
            );
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(10), "{metrics}");
        thread::sleep(Duration::from_millis(20));
    }
    let signalled = Instant::now();
    let (status, log) = server.terminate_with_log();
    let ((poll_status, poll_body), answered) = poller.join().unwrap();
    assert!(
        answered.duration_since(signalled) < Duration::from_secs(3),
        "long-poll answered {:?} after SIGTERM",
        answered.duration_since(signalled)
    );
    assert_eq!(poll_status, 200, "{poll_body}");
    let poll: Value = serde_json::from_str(&poll_body).unwrap();
    assert_eq!(poll["version"], 3);
    assert_eq!(poll["upserts"], serde_json::json!([]));
    assert_eq!(poll["revocations"], serde_json::json!([]));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");

    // The log: JSON objects only, the promised lines, and no secret anywhere.
    let events: Vec<Value> = log
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let event = |message: &str| {
        events
            .iter()
            .find(|event| {
                event["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .unwrap_or_else(|| panic!("no {message:?} in:\n{}", log.join("\n")))
    };
    let start = event("listening on http://127.0.0.1:");
    assert_eq!(start["level"], "INFO");
    assert_eq!(start["db"], data.join("guard.db").display().to_string());
    assert_eq!(start["version"], 0);
    assert_eq!(start["keys"], 0);
    assert!(start["epoch"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(start["guardctl_version"], env!("CARGO_PKG_VERSION"));
    assert!(start["timestamp"].is_string());
    let created_event = event("key created");
    assert_eq!(created_event["key_id"], key_id.as_str());
    assert_eq!(created_event["org"], "acme");
    assert_eq!(created_event["role"], "admin");
    assert_eq!(event("key revoked")["key_id"], second_id.as_str());
    let synced = event("sync answered");
    assert_eq!(synced["level"], "DEBUG");
    assert!(synced["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
    assert_eq!(event("shutting down")["long_polls"], 1);
    event("stopped");
    let whole = log.join("\n");
    for secret in [token.as_str(), hash.as_str(), admin_token] {
        assert!(
            !whole.contains(secret),
            "secret {secret} in the log:\n{whole}"
        );
    }
    assert!(!whole.contains("amt_"), "{whole}");
    assert!(
        !whole.contains("open to other users"),
        "0440 is fine: {whole}"
    );
}

/// The default text log keeps "listening on http://<address>" (scripts and the e2e harness
/// find the port in it), and a bad --log-level is refused before anything starts.
#[test]
fn text_logs_and_bad_log_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let server = ServeProcess::start(&data);
    let (status, lines) = server.terminate_with_log();
    assert!(status.success());
    let log = lines.join("\n");
    let start = log
        .lines()
        .find(|line| line.contains("listening on http://127.0.0.1:"))
        .unwrap();
    assert!(start.contains(" INFO "), "{start}");
    for field in [
        "listen=",
        "db=",
        "epoch=",
        "version=0",
        "keys=0",
        "guardctl_version=",
    ] {
        assert!(start.contains(field), "{field} not in {start}");
    }
    assert!(!start.contains('\u{1b}'), "no colours into a pipe: {start}");
    assert!(log.contains("stopped"), "{log}");

    // SIGTERM the moment the start-up line appears: the signal is already watched, so the stop
    // is graceful (exit 0), never the default action's kill.
    for _ in 0..5 {
        assert!(ServeProcess::start(&data).terminate().success());
    }

    for (flag, value) in [("--log-level", "guardctl=shouty"), ("--log-format", "xml")] {
        let refused = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(data.join("guard.db"))
            .args([flag, value])
            .output()
            .unwrap();
        assert_eq!(
            refused.status.code().map(|code| code != 0),
            Some(true),
            "{flag}"
        );
        assert!(String::from_utf8_lossy(&refused.stderr).contains(value));
    }
}
