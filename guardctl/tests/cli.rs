//! End-to-end tests of the `guardctl` binary: `serve` as a child process, `keys ...` against it,
//! and a graceful stop on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_guardctl");

/// `guardctl serve` on an ephemeral port; killed on drop if still running.
struct ServeProcess {
    child: Child,
    url: String,
}

impl ServeProcess {
    fn start(data_dir: &Path) -> ServeProcess {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(data_dir.join("guard.db"))
            .env_remove("GUARDCTL_LISTEN")
            .env_remove("GUARDCTL_DB")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The start-up line names the address actually bound; keep draining stderr after it so
        // the server never blocks on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let line = lines_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("no start-up line from guardctl serve");
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        assert!(
            !line.contains("amt_"),
            "start-up line shows a token: {line}"
        );
        ServeProcess { child, url }
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
