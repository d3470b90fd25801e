//! Runs `examples/micro_bench.rs` natively and as wasm32-wasip1 in Node's V8.

use std::process::Command;

use mcp_guard_e2e::{repo_root, Value};

/// `cargo <verb> --quiet --release -p mcp-guard --example micro_bench <extra>` in the repo.
fn cargo_micro(verb: &str, extra: &[&str]) -> std::process::Output {
    Command::new("cargo")
        .current_dir(repo_root())
        .args([
            verb,
            "--quiet",
            "--release",
            "-p",
            "mcp-guard",
            "--example",
            "micro_bench",
        ])
        .args(extra)
        .output()
        .unwrap()
}

pub fn run() -> Value {
    let root = repo_root();
    let native = cargo_micro("run", &[]);
    let build = cargo_micro("build", &["--target", "wasm32-wasip1"]);
    assert!(
        build.status.success(),
        "cannot build micro_bench for wasm32"
    );
    let wasm = Command::new("node")
        .current_dir(&root)
        .args([
            "--no-warnings",
            "tools/wasi-test-runner.mjs",
            "target/wasm32-wasip1/release/examples/micro_bench.wasm",
        ])
        .output()
        .unwrap();
    serde_json::json!({
        "native": parse(&native.stdout),
        "wasm32_v8": parse(&wasm.stdout),
    })
}

fn parse(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
