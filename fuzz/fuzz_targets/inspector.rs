//! Fuzzes the MCP body inspector (`mcp_guard::mcp`): the strict JSON parser, the body buffer,
//! the JSON-RPC / MCP policy and the `Mcp-*` header checks.
//!
//! Input layout (short inputs are zero-padded):
//!
//! ```text
//! [flags] [c0 c1 c2 c3] [max_read] body [0xFF mcp-method [0xFF mcp-name [0xFF param-hdr-name [0xFF param-hdr-value]]]]
//! ```
//!
//! `flags`: bit0 send an `Mcp-Method` header, bit1 an `Mcp-Name` header, bit2 derive both
//! values from the body (so matching headers are reachable) instead of the tail fields, bit3
//! send derived values in the SEP-2243 `=?base64?...?=` form, bit4 send `Mcp-Method` twice,
//! bit5 also replay with a limit one byte short of the body. `c0..c3` are the chunk sizes the
//! "host" grows its buffered body by (cycled; zeros skipped), `max_read` caps every host read.
//! 0xFF never occurs in UTF-8, so it cannot hide a valid body.
//!
//! Properties:
//! 1. nothing panics (inspect_request, inspect_body, check_param_header, json::parse*);
//! 2. the body fed through `BodyBuffer` in the chunking above (cumulative sizes offered twice,
//!    stale smaller sizes, short host reads, a wrong-offset push) reassembles exactly, and gives
//!    the same verdict as the whole body; `replay_chunked` agrees; a limit below the body size
//!    always ends `OverLimit` and never yields a prefix;
//! 3. `json::parse` accepts exactly when the inspector does not reject with a parse error; what
//!    it accepts serde_json accepts too, with the same structure (kinds, strings, keys, lengths);
//! 4. every accepted body parses with serde_json, is a JSON-RPC message or non-empty batch, and:
//!    - no key anywhere in what the client writes (`tools/call` and `prompts/get` arguments,
//!      `inputResponses`, `_meta`, completion context arguments, a response's `result`; objects
//!      inside arrays, and JSON held in strings, at any level) is denied by the independent
//!      reference `mcp::reference::reference_denies` (its own lists and splitting, none of the
//!      policy's code);
//!    - no string, key or value, anywhere in the message (JSON in strings included) contains a
//!      token: neither `contains_token_like` nor the reference substring check;
//!    - a plain `Mcp-Method` header that was accepted equals the body's method;
//! 5. `check_param_header`: non-`Mcp-Param-` names are allowed; a param name the reference
//!    denies, or a name or value holding a token, is rejected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_guard::auth::token::contains_token_like;
use mcp_guard::mcp::body::{replay_chunked, BodyBuffer, Outcome, PushError, Step};
use mcp_guard::mcp::json::{self, Kind, ParseOptions};
use mcp_guard::mcp::reference::{reference_denies, reference_denies_key};
use mcp_guard::mcp::{
    check_param_header, inspect_body, inspect_request, InspectConfig, McpHeaders, RejectKind,
    Verdict,
};
use serde_json::Value as J;
use std::sync::OnceLock;

mod common;
use common::ref_contains_token;

const HEADER_LEN: usize = 6;

fn config() -> &'static InspectConfig {
    static C: OnceLock<InspectConfig> = OnceLock::new();
    C.get_or_init(InspectConfig::default)
}

fuzz_target!(|data: &[u8]| {
    let mut head = [0u8; HEADER_LEN];
    let n = data.len().min(HEADER_LEN);
    head[..n].copy_from_slice(&data[..n]);
    let rest = &data[n..];
    let flags = head[0];
    let chunks: Vec<usize> = head[1..5].iter().map(|&c| usize::from(c)).collect();
    let max_read = usize::from(head[5]).max(1);

    let mut fields = rest.split(|&b| b == 0xFF);
    let body = fields.next().unwrap_or_default();
    let tail: Vec<String> = fields
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let field = |i: usize| tail.get(i).map(String::as_str).unwrap_or("");

    // Headers.
    let (derived_method, derived_name) = if flags & 4 != 0 {
        derive_headers(body, flags & 8 != 0)
    } else {
        (field(0).to_string(), field(1).to_string())
    };
    let method_one = [derived_method.as_str()];
    let method_two = [derived_method.as_str(), derived_method.as_str()];
    let name_one = [derived_name.as_str()];
    let headers = McpHeaders {
        method: match (flags & 1 != 0, flags & 16 != 0) {
            (false, _) => &[],
            (true, false) => &method_one,
            (true, true) => &method_two,
        },
        name: if flags & 2 != 0 { &name_one } else { &[] },
    };

    // 1. The verdict on the whole body.
    let verdict = inspect_request(body, &headers, config());
    if headers.method.is_empty() && headers.name.is_empty() {
        assert_eq!(
            inspect_body(body, config()),
            verdict,
            "inspect_body differs"
        );
    } else if headers.method.len() > 1 {
        assert!(!verdict.is_allow(), "two Mcp-Method headers accepted");
    }

    // 2. Chunked delivery.
    check_chunked(body, &chunks, max_read, flags & 32 != 0, &headers, &verdict);

    // 3. Strict parser vs the inspector vs serde_json.
    let opts = ParseOptions::default();
    let parsed = json::parse(body, &opts);
    if let Ok(s) = std::str::from_utf8(body) {
        assert_eq!(
            json::parse_str(s, &opts).map(|d| d.node_count()),
            parsed.as_ref().map(|d| d.node_count()).map_err(|e| *e),
            "parse and parse_str disagree"
        );
    }
    let parse_rejected = verdict
        .rejection()
        .is_some_and(|r| r.kind == RejectKind::Parse);
    assert_eq!(
        parsed.is_err(),
        parse_rejected,
        "json::parse and the inspector disagree on strictness: {parsed:?} vs {verdict:?}"
    );
    if let Ok(doc) = &parsed {
        match serde_json::from_slice::<J>(body) {
            Ok(theirs) => assert!(
                same(doc.root(), &theirs),
                "strict parser and serde_json read different documents"
            ),
            Err(e) if known_number_gap(&e) => {}
            Err(e) => panic!("strict parser accepted what serde_json refuses: {e}"),
        }
    }

    // 4. What is accepted holds no secret.
    if verdict.is_allow() {
        match serde_json::from_slice::<J>(body) {
            Ok(root) => check_accepted(&root, &headers),
            Err(e) if known_number_gap(&e) => {}
            Err(e) => panic!("accepted body is not JSON for serde_json: {e}"),
        }
    }

    // 5. Mcp-Param-* headers.
    check_param(field(2), field(3));
    check_param(&format!("Mcp-Param-{}", field(2)), field(3));
});

/// serde_json (default features: not correctly rounded) calls a number out of range that Rust's
/// correctly rounded parser reads as `f64::MAX`, e.g. `1.7976931348623158e308`. A finding;
/// skipped only with `MCP_GUARD_FUZZ_SKIP=serde_number_range`.
fn known_number_gap(e: &serde_json::Error) -> bool {
    common::skipped("serde_number_range") && e.to_string().starts_with("number out of range")
}

/// Header values taken from the body itself (plain or SEP-2243 base64).
fn derive_headers(body: &[u8], base64: bool) -> (String, String) {
    let v: J = serde_json::from_slice(body).unwrap_or(J::Null);
    let method = v
        .get("method")
        .and_then(J::as_str)
        .unwrap_or("")
        .to_string();
    let params = v.get("params");
    let name = params
        .and_then(|p| p.get("name").or_else(|| p.get("uri")))
        .and_then(J::as_str)
        .unwrap_or("")
        .to_string();
    if base64 {
        (b64(&method), b64(&name))
    } else {
        (method, name)
    }
}

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("=?base64?");
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
        }
        for _ in chunk.len()..3 {
            out.push('=');
        }
    }
    out.push_str("?=");
    out
}

fn check_chunked(
    body: &[u8],
    chunks: &[usize],
    max_read: usize,
    short_limit: bool,
    headers: &McpHeaders<'_>,
    verdict: &Verdict,
) {
    let limit = body.len();
    let mut buffer = BodyBuffer::new(limit);
    let mut sizes = chunks.iter().copied().filter(|&s| s > 0).cycle();
    let mut host_len = 0usize;
    let mut wrong_offset_tried = false;
    while host_len < body.len() {
        let step = sizes.next().unwrap_or(body.len());
        let previous = host_len;
        host_len = (host_len + step).min(body.len());
        for round in 0..2 {
            loop {
                match buffer.offer(host_len) {
                    Step::Read { offset, len } => {
                        assert_eq!(offset, buffer.copied());
                        assert!(offset + len <= host_len);
                        if !wrong_offset_tried && offset > 0 {
                            wrong_offset_tried = true;
                            let before = buffer.copied();
                            assert_eq!(
                                buffer.push(offset - 1, &body[offset - 1..offset]),
                                Err(PushError::WrongOffset {
                                    expected: offset,
                                    got: offset - 1
                                })
                            );
                            assert_eq!(buffer.copied(), before, "wrong-offset push copied bytes");
                        }
                        let end = offset + len.min(max_read);
                        assert_eq!(buffer.push(offset, &body[offset..end]), Ok(()));
                        if end < host_len {
                            assert_eq!(buffer.finish(), None, "finished with bytes missing");
                        }
                    }
                    Step::Wait => break,
                    Step::OverLimit => panic!("over limit with limit == body length"),
                }
            }
            if round == 0 {
                // A stale, smaller size is not a rewind.
                assert_eq!(buffer.offer(previous), Step::Wait);
            }
        }
    }
    match buffer.finish() {
        Some(Outcome::Complete(bytes)) => {
            assert_eq!(bytes, body, "BodyBuffer reassembled a different body");
            let again = inspect_request(bytes, headers, config());
            assert_eq!(&again, verdict, "chunked body judged differently");
        }
        other => panic!("BodyBuffer did not complete: {other:?}"),
    }
    match replay_chunked(body, chunks, max_read, limit) {
        Ok(bytes) => assert_eq!(bytes, body, "replay_chunked reassembled a different body"),
        Err(e) => panic!("replay_chunked failed within the limit: {e:?}"),
    }
    if short_limit && !body.is_empty() {
        assert_eq!(
            replay_chunked(body, chunks, max_read, body.len() - 1),
            Err(Step::OverLimit),
            "body over the limit not refused"
        );
        let mut b = BodyBuffer::new(body.len() - 1);
        let _ = b.offer(body.len());
        assert_eq!(b.finish(), Some(Outcome::OverLimit));
        assert!(b.bytes().is_empty(), "over-limit buffer kept a prefix");
    }
}

/// Our document and serde_json's agree on structure and on every string.
fn same(ours: json::Value<'_, '_>, theirs: &J) -> bool {
    match (ours.kind(), theirs) {
        (Kind::Null, J::Null) => true,
        (Kind::Bool, J::Bool(b)) => ours.as_bool() == Some(*b),
        (Kind::Number, J::Number(_)) => true,
        (Kind::String, J::String(s)) => ours.as_str().is_some_and(|o| o.decode() == s.as_str()),
        (Kind::Array, J::Array(items)) => {
            ours.len() == items.len() && ours.items().zip(items).all(|(o, t)| same(o, t))
        }
        (Kind::Object, J::Object(map)) => {
            ours.len() == map.len()
                && ours
                    .entries()
                    .all(|(k, v)| map.get(k.decode().as_ref()).is_some_and(|t| same(v, t)))
        }
        _ => false,
    }
}

fn check_accepted(root: &J, headers: &McpHeaders<'_>) {
    let messages: Vec<&J> = match root {
        J::Array(items) => {
            assert!(!items.is_empty(), "empty batch accepted");
            items.iter().collect()
        }
        other => vec![other],
    };
    for msg in &messages {
        assert!(msg.is_object(), "accepted a message that is not an object");
        assert_eq!(
            msg.get("jsonrpc"),
            Some(&J::String("2.0".into())),
            "jsonrpc not 2.0"
        );
        let method = msg.get("method").and_then(J::as_str);
        let params = msg.get("params");
        let member = |name: &str| params.and_then(|p| p.get(name));
        if method == Some("tools/call") {
            if let Some(args) = member("arguments") {
                assert!(args.is_object(), "tools/call arguments not an object");
            }
        }
        let mut client_written = vec![member("_meta"), member("inputResponses")];
        match method {
            Some("tools/call" | "prompts/get") => client_written.push(member("arguments")),
            Some("completion/complete") => {
                client_written.push(member("context").and_then(|c| c.get("arguments")));
                if let Some(name) = member("argument")
                    .and_then(|a| a.get("name"))
                    .and_then(J::as_str)
                {
                    assert_not_denied(name, "completed argument");
                }
            }
            None => {
                client_written.push(msg.get("result"));
                client_written.push(msg.get("error").and_then(|e| e.get("data")));
            }
            _ => {}
        }
        for value in client_written.into_iter().flatten() {
            walk_names(value, 0);
        }
    }
    walk_tokens(root, 0);
    if let [value] = headers.method {
        if !value.starts_with("=?base64?") {
            assert_eq!(
                root.get("method").and_then(J::as_str),
                Some(*value),
                "accepted an Mcp-Method header that differs from the body"
            );
        }
    }
}

const MAX_EMBED: usize = 8;

/// JSON held in a string, as serde_json reads it (when the text starts like JSON).
fn embedded(s: &str) -> Option<J> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r']);
    if !(t.starts_with('{') || t.starts_with('[') || t.starts_with('"')) {
        return None;
    }
    serde_json::from_str(s).ok()
}

fn walk_names(v: &J, level: usize) {
    match v {
        J::Object(map) => {
            for (k, child) in map {
                // A category container is judged by its members (docs/body-policy.md, "Word roles").
                let container = child.is_object() || child.is_array();
                // A boolean or null carries nothing (docs/body-policy.md, "Word roles").
                if child.is_boolean() || child.is_null() {
                    continue;
                }
                if let Some(phrase) = reference_denies_key(k, container) {
                    panic!(
                        "accepted a client-written key {k:?}, denied by the reference ({phrase})"
                    );
                }
                walk_names(child, level);
            }
        }
        J::Array(items) => items.iter().for_each(|i| walk_names(i, level)),
        J::String(s) if level < MAX_EMBED => {
            if let Some(inner) = embedded(s) {
                walk_names(&inner, level + 1);
            }
        }
        _ => {}
    }
}

fn assert_not_denied(name: &str, what: &str) {
    if let Some(phrase) = reference_denies(name) {
        panic!(
            "accepted a client-written {what} {name:?} (words {:?}), denied by the reference ({phrase})",
            mcp_guard::mcp::names::split_words(name),
        );
    }
}

fn assert_no_token(s: &str, what: &str) {
    assert!(
        !contains_token_like(s),
        "accepted a {what} holding a token (contains_token_like): {s:?}"
    );
    assert!(
        !ref_contains_token(s),
        "accepted a {what} holding a token (grammar): {s:?}"
    );
}

fn walk_tokens(v: &J, level: usize) {
    match v {
        J::Object(map) => {
            for (k, child) in map {
                assert_no_token(k, "key");
                walk_tokens(child, level);
            }
        }
        J::Array(items) => items.iter().for_each(|i| walk_tokens(i, level)),
        J::String(s) => {
            assert_no_token(s, "string");
            if level < MAX_EMBED {
                if let Some(inner) = embedded(s) {
                    walk_tokens(&inner, level + 1);
                }
            }
        }
        _ => {}
    }
}

fn check_param(name: &str, value: &str) {
    let v = check_param_header(name, value, config());
    let is_param = name
        .get(..10)
        .is_some_and(|p| p.eq_ignore_ascii_case("mcp-param-"));
    if !is_param {
        assert!(v.is_allow(), "non-param header {name:?} rejected");
        return;
    }
    let rest = &name[10..];
    let token = ref_contains_token(name) || ref_contains_token(value);
    if reference_denies(rest).is_some() || token {
        assert!(
            !v.is_allow(),
            "param header {name:?} allowed (value {value:?})"
        );
    }
}
