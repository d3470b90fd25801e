//! `make run`'s stack script: it comes up on the documented ports, the curl line it prints returns
//! an MCP answer through Envoy, and Ctrl-C (SIGINT to the process group) stops every component.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpStream;
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
    let mut stack = start_stack_script(&dir, &dir.join("data"), false);
    let message = run_printed_curl(&stack.log_text());
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
