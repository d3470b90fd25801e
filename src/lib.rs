//! mcp-guard: a proxy-wasm HTTP filter that authenticates MCP requests against a key set pushed by
//! guardctl.
//!
//! Pure logic makes no host calls and is unit-tested natively and on wasm32: [`auth`] decides
//! (the `Authorization` header, the key, credentials elsewhere), [`mcp`] judges bodies (the
//! body planner, the strict parser, the policy), [`keyset`] keeps the key set current, [`streams`]
//! re-checks requests in flight, [`config`] and [`reply`] configure and answer, [`text`] holds
//! the text utilities. The wire shared with guardctl is the `mcp-guard-protocol` crate. [`filter`] is the thin proxy-wasm layer that moves data in and out.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod auth;
pub mod config;
pub mod header_map;
pub mod keyset;
pub mod mcp;
pub mod reply;
pub mod streams;
pub mod text;

// The host layer exists only in the module Envoy loads, not in unit-test binaries.
#[cfg(all(target_arch = "wasm32", not(test)))]
mod filter;
