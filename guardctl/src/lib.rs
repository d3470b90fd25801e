//! guardctl: the control plane of mcp-guard. It issues API keys, keeps their SHA-256 hash rows
//! in SQLite and serves them to the proxies; see docs/protocol.md for the wire contract.
//!
//! The library half exists so that tests can run the server in-process; the `guardctl` binary
//! (src/main.rs) is a thin command-line layer over it.

pub mod admin_token;
pub mod client;
pub mod human;
pub mod import;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod store;
pub mod sync;
pub mod token;
pub mod validate;
