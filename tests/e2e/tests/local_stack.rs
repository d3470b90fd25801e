//! `make run`'s stack script: it comes up on the documented ports, the curl line it prints returns
//! an MCP answer through Envoy, and Ctrl-C (SIGINT to the process group) stops every component.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use mcp_guard_e2e::*;

const STACK_PORTS: [u16; 4] = [10000, 9901, 8081, 8000];

fn port_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn make_run_prints_a_curl_line_that_returns_an_mcp_answer_and_stops_on_ctrl_c() {
    for port in STACK_PORTS {
        assert!(
            !port_open(port),
            "port {port} is busy: stop `make run` before `make test`"
        );
    }
    let dir = scratch_dir("make-run");
    let mut stack = Process::spawn_group(
        "run-local",
        &dir,
        Command::new(repo_root().join("tools/run-local.sh"))
            .current_dir(repo_root())
            .env("MCP_GUARD_DATA", dir.join("data"))
            .env("ENVOY", envoy_bin())
            .env_remove("MCP_UPSTREAM"),
    );
    wait_until("the stack to come up", Duration::from_secs(60), || {
        assert!(
            stack.is_running(),
            "run-local.sh exited:\n{}",
            stack.log_text()
        );
        stack.log_text().contains("Ctrl-C stops everything")
    });

    let printed = stack.log_text();
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
    let message: Value = serde_json::from_str(message).unwrap();
    assert_eq!(
        message["result"]["serverInfo"]["name"], "mcp-demo-server",
        "{message}"
    );

    // Ctrl-C in a terminal: SIGINT to the whole foreground process group.
    stack.signal_group(libc::SIGINT);
    wait_until("every component to stop", Duration::from_secs(15), || {
        !stack.is_running() && STACK_PORTS.iter().all(|p| !port_open(*p))
    });
}
