//! The wire between guardctl and the mcp-guard filter, defined once.
//!
//! Both sides build on these types and rules, so that they agree byte for byte: the filter on
//! wasm32, guardctl natively. Plain data and pure functions: no host calls, no I/O, no async.
//!
//! - [`token`]: the API key grammar `amt_<key-id>_<secret>`, its parser, its formatter and the
//!   scanner that finds a token inside any text.
//! - [`label`]: the grammar of org and role names.
//! - [`policy`]: per-org tool policy: the document as it travels, its rules, the compiled form
//!   and the decision both guardctl (`policy check`) and the filter make.
//! - [`sync`]: the key-set sync page (`GET /v1/keyset`): hash rows, revocations, the version and
//!   epoch rules, the strict decoder the filter uses and the encoder guardctl uses.
//!
//! `docs/protocol.md` describes the same wire for people; this crate is its definition.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod label;
pub mod policy;
mod reader;
pub mod sync;
pub mod token;
