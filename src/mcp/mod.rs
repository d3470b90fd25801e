//! MCP request-body inspection: pure logic, no host calls.
//!
//! - [`body`]: accumulates the body from proxy-wasm callbacks (cumulative sizes, size limit).
//! - [`json`]: a strict, non-recursive JSON parser that refuses anything peers could read
//!   differently (duplicate or case-colliding keys, invisible key characters, BOM, trailing data,
//!   lone surrogates, out-of-range numbers, too deep nesting).
//! - [`formats`]: credential formats found in string values (GitHub, AWS, PEM, JWT, ...).
//! - [`names`]: secret-name matching on whole words after case folding and splitting.
//! - [`inspect`]: the JSON-RPC / MCP policy and the JSON-RPC error replies.
//! - [`gate`]: the tool policy's decision on every call of a body (403, or noted in audit mode).
//! - [`tools_list`]: `tools/list` answers (JSON or SSE) cut down to the role's tools.
//! - [`plan`]: from the request headers alone, whether the body is held, passes, or is refused.
//!
//! Case folding and escaping live in [`crate::text`]; the `amt_` token scanner in the protocol
//! crate (`mcp_guard_protocol::token`).

pub mod body;
pub mod formats;
pub mod gate;
pub mod inspect;
pub mod json;
pub mod names;
pub mod plan;
pub mod tools_list;

#[cfg(test)]
mod corpus_tests;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
#[cfg(test)]
mod tests;

pub use body::{BodyBuffer, Outcome, PushError, Step};
pub use inspect::{
    check_param_header, check_param_header_name, inspect_body, inspect_request,
    inspect_request_gated, inspect_request_noting, InspectConfig, McpHeaders, RejectKind,
    Rejection, Verdict,
};
pub use names::NamePolicy;
