//! `tools/list` answers cut down to the tools a role may call, for `application/json` bodies
//! (judged whole) and `text/event-stream` bodies (event by event, whatever the chunking).
//!
//! Only the `tools` array of a JSON-RPC response's `result` changes: every other byte of the
//! answer (other members, `nextCursor`, other events, notifications) is passed through as the
//! server wrote it. A tool without a string `name` is dropped. An answer that does not parse
//! strictly is never passed through: the caller answers with [`unfilterable`] instead.

use super::json::{self, Kind, ParseOptions, Value};
use crate::text::json_escape_into;

/// Most bytes of one answer (JSON) or one event (SSE) held for filtering.
pub const MAX_HELD_BYTES: usize = 8 * 1024 * 1024;
/// Nesting accepted in an answer: tool input schemas nest deeper than requests.
const MAX_DEPTH: usize = 256;

/// The answer could not be filtered: not strict JSON, not of the shape, or too large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unfilterable;

/// The JSON text with, in every response message (one, or each of a batch) that has a
/// `result.tools` array, only the tools `may_call` admits. `None`: nothing to change.
pub fn filter_json(
    text: &[u8],
    may_call: &dyn Fn(&str) -> bool,
) -> Result<Option<Vec<u8>>, Unfilterable> {
    if text.len() > MAX_HELD_BYTES {
        return Err(Unfilterable);
    }
    let options = ParseOptions {
        max_depth: MAX_DEPTH,
    };
    let doc = json::parse(text, &options).map_err(|_| Unfilterable)?;
    let root = doc.root();
    let messages: Vec<Value<'_, '_>> = match root.kind() {
        Kind::Array => root.items().collect(),
        _ => vec![root],
    };
    // (byte span of a tools array, its new text), in document order.
    let mut edits: Vec<(core::ops::Range<usize>, String)> = Vec::new();
    for message in messages {
        let Some(tools) = message
            .get("result")
            .filter(|r| r.kind() == Kind::Object)
            .and_then(|r| r.get("tools"))
        else {
            continue;
        };
        if tools.kind() != Kind::Array {
            return Err(Unfilterable);
        }
        let mut kept = String::from("[");
        let mut dropped = false;
        for tool in tools.items() {
            let name = tool
                .get("name")
                .and_then(|n| n.as_str())
                .map(|n| n.decode());
            if name.as_deref().is_some_and(may_call) {
                if kept.len() > 1 {
                    kept.push(',');
                }
                kept.push_str(tool.raw_text());
            } else {
                dropped = true;
            }
        }
        kept.push(']');
        if dropped {
            edits.push((tools.span(), kept));
        }
    }
    if edits.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    for (span, replacement) in edits {
        out.extend_from_slice(text.get(at..span.start).ok_or(Unfilterable)?);
        out.extend_from_slice(replacement.as_bytes());
        at = span.end;
    }
    out.extend_from_slice(text.get(at..).ok_or(Unfilterable)?);
    Ok(Some(out))
}

/// The JSON-RPC error sent instead of an answer that could not be filtered.
pub fn unfilterable(role: &str) -> String {
    let mut out = String::from(
        "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,\"message\":\"The tools/list \
         answer could not be filtered for role `",
    );
    json_escape_into(role, &mut out);
    out.push_str("`, so it was not forwarded\",\"data\":{\"rule\":\"tools_list_unfilterable\"}}}");
    out
}

/// An SSE body filtered event by event: complete events come out as soon as their blank line
/// arrives; a partial event is held until it completes.
#[derive(Debug, Default)]
pub struct SseFilter {
    held: Vec<u8>,
    /// Where the scan of the held (partial) event stopped, and where its current line starts:
    /// each byte is scanned once, however many chunks an event takes.
    scan: Scan,
}

#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    at: usize,
    line_start: usize,
}

impl SseFilter {
    /// Takes the next chunk; returns what may be sent now.
    pub fn push(
        &mut self,
        chunk: &[u8],
        may_call: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<u8>, Unfilterable> {
        self.held.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.held.len());
        let mut start = 0;
        loop {
            match event_end(&self.held, self.scan) {
                Ok(end) => {
                    let event = self.held.get(start..end).ok_or(Unfilterable)?;
                    filter_event(event, may_call, &mut out)?;
                    start = end;
                    self.scan = Scan {
                        at: end,
                        line_start: end,
                    };
                }
                Err(resume) => {
                    self.scan = resume;
                    break;
                }
            }
        }
        self.held.drain(..start);
        // Both lie at or after `start`, the end of the last whole event.
        self.scan.at = self.scan.at.saturating_sub(start);
        self.scan.line_start = self.scan.line_start.saturating_sub(start);
        if self.held.len() > MAX_HELD_BYTES {
            return Err(Unfilterable);
        }
        Ok(out)
    }

    /// The end of the body: a last event without its blank line is filtered the same way.
    pub fn finish(&mut self, may_call: &dyn Fn(&str) -> bool) -> Result<Vec<u8>, Unfilterable> {
        let rest = core::mem::take(&mut self.held);
        self.scan = Scan::default();
        let mut out = Vec::with_capacity(rest.len());
        if !rest.is_empty() {
            filter_event(&rest, may_call, &mut out)?;
        }
        Ok(out)
    }
}

/// Where the event being scanned ends: after the line break that follows an empty line (SSE
/// lines end in CRLF, LF or CR). `Err` is where to resume when more bytes arrive.
fn event_end(bytes: &[u8], scan: Scan) -> Result<usize, Scan> {
    let Scan {
        mut at,
        mut line_start,
    } = scan;
    while let Some(&b) = bytes.get(at) {
        if b == b'\n' || b == b'\r' {
            // A CR at the very end may be the first half of a CRLF: wait for more.
            if b == b'\r' && at + 1 == bytes.len() {
                return Err(Scan { at, line_start });
            }
            let next = if b == b'\r' && bytes.get(at + 1) == Some(&b'\n') {
                at + 2
            } else {
                at + 1
            };
            if at == line_start {
                return Ok(next);
            }
            line_start = next;
            at = next;
        } else {
            at += 1;
        }
    }
    Err(Scan { at, line_start })
}

/// Writes `event` to `out`, with its data filtered when it is a `tools/list` result.
fn filter_event(
    event: &[u8],
    may_call: &dyn Fn(&str) -> bool,
    out: &mut Vec<u8>,
) -> Result<(), Unfilterable> {
    let mut data: Vec<u8> = Vec::new();
    let mut has_data = false;
    for line in lines(event) {
        if let Some(value) = line.strip_prefix(b"data") {
            if value.is_empty() || value.first() == Some(&b':') {
                let value = value.get(1..).unwrap_or_default();
                let value = value.strip_prefix(b" ").unwrap_or(value);
                if has_data {
                    data.push(b'\n');
                }
                data.extend_from_slice(value);
                has_data = true;
            }
        }
    }
    let filtered = if has_data && holds_tools(&data) {
        filter_json(&data, may_call)?
    } else {
        None
    };
    let Some(filtered) = filtered else {
        out.extend_from_slice(event);
        return Ok(());
    };
    // The event again, its data lines replaced by the filtered text where the first one was.
    let mut wrote_data = false;
    for line in lines(event) {
        let is_data = line
            .strip_prefix(b"data")
            .is_some_and(|v| v.is_empty() || v.first() == Some(&b':'));
        if !is_data {
            out.extend_from_slice(line);
            out.push(b'\n');
        } else if !wrote_data {
            for text in filtered.split(|&b| b == b'\n') {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(text);
                out.push(b'\n');
            }
            wrote_data = true;
        }
    }
    out.push(b'\n');
    Ok(())
}

/// The lines of one event, without their line breaks (the blank line that ends it excluded).
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(rest.len());
        let line = rest.get(..end)?;
        let mut next = end;
        if rest.get(end) == Some(&b'\r') && rest.get(end + 1) == Some(&b'\n') {
            next += 2;
        } else if end < rest.len() {
            next += 1;
        }
        rest = rest.get(next..).unwrap_or_default();
        Some(line)
    })
    .filter(|line| !line.is_empty())
}

/// A cheap look before parsing: only data that mentions `"tools"` can need filtering.
fn holds_tools(data: &[u8]) -> bool {
    data.windows(7).any(|w| w == b"\"tools\"") || data.windows(2).any(|w| w == b"\\u")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(name: &str) -> bool {
        name.starts_with("search_") || name == "echo"
    }

    const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"delete_repo","description":"drops \"everything\""},{"name":"search_docs","annotations":{"readOnlyHint":true}}],"nextCursor":"c2"}}"#;

    fn names(text: &[u8]) -> Vec<String> {
        let doc: serde_json::Value = serde_json::from_slice(text).unwrap();
        doc["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn json_answers_keep_only_the_roles_tools_and_everything_else() {
        let out = filter_json(LIST.as_bytes(), &viewer).unwrap().unwrap();
        assert_eq!(names(&out), ["echo", "search_docs"]);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""nextCursor":"c2""#), "{text}");
        assert!(text.contains(r#"{"type":"object"}"#) && !text.contains("drops"));
        // Nothing to drop, nothing changed; a batch is filtered element by element.
        assert_eq!(filter_json(LIST.as_bytes(), &|_| true), Ok(None));
        let batch = format!(r#"[{LIST},{{"jsonrpc":"2.0","id":3,"result":{{}}}},{LIST}]"#);
        let out = filter_json(batch.as_bytes(), &viewer).unwrap().unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc[2]["result"]["tools"].as_array().unwrap().len(), 2);
        assert_eq!(doc[1]["result"], serde_json::json!({}));
        // Every tool refused: an empty list.
        let none = filter_json(LIST.as_bytes(), &|_| false).unwrap().unwrap();
        assert!(names(&none).is_empty());
    }

    #[test]
    fn what_cannot_be_filtered_is_refused_not_passed() {
        for bad in [
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":{"name":"x"}}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[],"tools":[]}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo"}]"#,
            "not json",
        ] {
            assert_eq!(
                filter_json(bad.as_bytes(), &viewer),
                Err(Unfilterable),
                "{bad}"
            );
        }
        // A tool with no string name is dropped, not passed.
        let nameless =
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"title":"?"},{"name":"echo"}]}}"#;
        let out = filter_json(nameless.as_bytes(), &viewer).unwrap().unwrap();
        assert_eq!(names(&out), ["echo"]);
        // An escaped name is judged decoded.
        let escaped = LIST.replace("delete_repo", "search\\u005fx");
        assert_eq!(filter_json(escaped.as_bytes(), &viewer), Ok(None));
        let escaped = LIST.replace("search_docs", "delete\\u005fdocs");
        let out = filter_json(escaped.as_bytes(), &viewer).unwrap().unwrap();
        assert_eq!(names(&out), ["echo"]);
        assert!(unfilterable("viewer").contains("tools_list_unfilterable"));
        let error: serde_json::Value = serde_json::from_str(&unfilterable("a\"b")).unwrap();
        assert_eq!(error["error"]["code"], -32603);
    }

    /// The SSE body of a streamable-HTTP answer: a notification, the result, in any chunking.
    fn sse_body(line_break: &str) -> String {
        let n = line_break;
        format!(
            "event: message{n}data: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"tools\":1}}}}{n}{n}\
             id: 7{n}event: message{n}data: {LIST}{n}{n}: comment{n}{n}"
        )
    }

    #[test]
    fn sse_answers_are_filtered_whatever_the_chunking() {
        for line_break in ["\n", "\r\n", "\r"] {
            let body = sse_body(line_break);
            let mut expected: Option<Vec<u8>> = None;
            for chunk_size in 1..=7 {
                let mut filter = SseFilter::default();
                let mut out = Vec::new();
                for chunk in body.as_bytes().chunks(chunk_size) {
                    out.extend(filter.push(chunk, &viewer).unwrap());
                }
                out.extend(filter.finish(&viewer).unwrap());
                let text = String::from_utf8(out.clone()).unwrap();
                assert!(!text.contains("delete_repo"), "{text}");
                assert!(
                    text.contains("search_docs") && text.contains("id: 7"),
                    "{text}"
                );
                assert!(text.contains("notifications/message"), "{text}");
                match &expected {
                    None => expected = Some(out),
                    Some(first) => assert_eq!(first, &out, "chunks of {chunk_size}"),
                }
            }
        }
    }

    #[test]
    fn sse_events_pass_as_written_unless_they_list_tools() {
        let body = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
        let mut filter = SseFilter::default();
        assert_eq!(
            filter.push(body.as_bytes(), &viewer).unwrap(),
            body.as_bytes()
        );
        // A partial event is held; the end of the stream filters it too.
        let partial = format!("data: {LIST}");
        assert!(filter.push(partial.as_bytes(), &viewer).unwrap().is_empty());
        let last = String::from_utf8(filter.finish(&viewer).unwrap()).unwrap();
        assert!(
            last.starts_with("data: ") && !last.contains("delete_repo"),
            "{last}"
        );
        // Broken JSON in a tools event is refused.
        let mut filter = SseFilter::default();
        let broken = "data: {\"result\":{\"tools\":[\n\n";
        assert_eq!(filter.push(broken.as_bytes(), &viewer), Err(Unfilterable));
    }
}
