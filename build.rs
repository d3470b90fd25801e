//! Stamps the module with the git commit it was built from; logged once when the VM starts.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let sha = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok());
    if let Some(sha) = sha {
        println!("cargo:rustc-env=MCP_GUARD_GIT_SHA={}", sha.trim());
    }
}
