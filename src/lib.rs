//! mcp-guard: a proxy-wasm HTTP filter that authenticates MCP requests against a key set pushed by
//! guardctl.
//!
//! Pure logic ([`auth`], [`keyset`], [`config`], [`reply`], [`mcp`], [`streams`]) makes no host calls and is unit-tested
//! natively and on wasm32. [`filter`] is the thin proxy-wasm layer that moves data in and out.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod auth;
pub mod config;
pub mod header_map;
pub mod keyset;
pub mod mcp;
pub mod reply;
pub mod request;
pub mod streams;

// The host layer exists only in the module Envoy loads, not in unit-test binaries.
#[cfg(all(target_arch = "wasm32", not(test)))]
mod filter;
