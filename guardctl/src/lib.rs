//! guardctl: the control plane of mcp-guard. It issues API keys, keeps their SHA-256 hash rows
//! and serves them to the proxies; see docs/protocol.md for the wire contract, defined in the
//! `mcp-guard-protocol` crate.
//!
//! - `api/`: the HTTP API of `guardctl serve` (admin API, key-set sync, probes).
//! - `store/`: the database behind one interface (SQLite today).
//! - `keys/`: tokens, the rules of key fields, import rows.
//! - `policy/`: tool-policy documents (YAML or JSON) validated into the protocol's `Policy`.
//! - `cli/`: the admin API's command-line client.
//! - `telemetry/`: logs and metrics.
//!
//! The library half exists so that tests can run the server in-process; the `guardctl` binary
//! (src/main.rs) is a thin command-line layer over it.

pub mod api;
pub mod cli;
pub mod keys;
pub mod policy;
pub mod store;
pub mod telemetry;
