//! Micro-benchmarks of the filter's pure logic, run by `make bench` natively and compiled to
//! wasm32-wasip1 in Node's V8 (the engine Envoy embeds). One JSON object per line on stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Instant;

use mcp_guard::auth::authenticate;
use mcp_guard::auth::request::RequestHeaders;
use mcp_guard::auth::smuggled::holds_token;
use mcp_guard::auth::token::parse_authorization;
use mcp_guard::keyset::record::{Entry, KeyRecord, VersionedEntry};
use mcp_guard::keyset::Lookup;
use mcp_guard::mcp::json::{parse_with, ParseBuffers, ParseOptions};
use mcp_guard::mcp::{inspect_body, InspectConfig, NamePolicy};
use sha2::{Digest, Sha256};

const TOKEN: &str = "amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";

/// Median nanoseconds per call of `op` over several timed batches of calibrated size. With
/// `MICRO_BENCH_ITERATIONS=n` in the environment, one batch of exactly `n` calls instead (for
/// counting instructions with `perf stat`).
fn ns_per_op(mut op: impl FnMut()) -> f64 {
    if let Some(n) = std::env::var("MICRO_BENCH_ITERATIONS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        let start = Instant::now();
        for _ in 0..n {
            op();
        }
        return start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    }
    let mut iterations = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..iterations {
            op();
        }
        if start.elapsed().as_millis() >= 20 {
            break;
        }
        iterations *= 2;
    }
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                op();
            }
            start.elapsed().as_nanos() as f64 / iterations as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Benchmarks to run: those whose name contains the first command-line argument (all without).
fn selected(name: &str) -> bool {
    std::env::args()
        .nth(1)
        .is_none_or(|filter| name.contains(filter.as_str()))
}

fn report(name: &str, ns: impl FnOnce() -> f64, bytes: Option<usize>) {
    if !selected(name) {
        return;
    }
    let ns = ns();
    let throughput = bytes.map_or(String::new(), |b| {
        format!(",\"mb_per_s\":{:.1}", b as f64 / ns * 1e9 / 1e6)
    });
    println!("{{\"name\":\"{name}\",\"ns_per_op\":{ns:.1}{throughput}}}");
}

fn main() {
    let header = format!("Bearer {TOKEN}");
    let record = KeyRecord {
        sha256: Sha256::digest(TOKEN.as_bytes()).into(),
        expires_at: None,
        org: "demo".into(),
        role: "member".into(),
        user: None,
    };

    report(
        "token_parse",
        || {
            ns_per_op(|| {
                black_box(parse_authorization(&[black_box(header.as_str())]).is_ok());
            })
        },
        None,
    );
    report(
        "token_parse_hash_compare",
        || {
            ns_per_op(|| {
                let token = parse_authorization(&[black_box(header.as_str())]).unwrap();
                let lookup = Lookup::Active(record.clone());
                black_box(authenticate(token, lookup, Some("demo"), || 0).is_ok());
            })
        },
        None,
    );
    // A typical MCP request's headers, as Envoy hands them over: the header decision reads
    // them all, and scans every value but Authorization for a credential in any encoding.
    let typical: Vec<(String, String)> = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "mcp.internal.example:10000"),
        (":path", "/api/mcp?session=2f6c"),
        ("user-agent", "claude-code/2.1.233 (linux; x64) node/20.18.0"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("content-length", "1024"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "search_issues"),
        ("x-forwarded-for", "10.12.0.7"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "6f1c9a3e-77ab-4c2d-9e1f-0a1b2c3d4e5f"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("cookie", "theme=dark; sid=Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4cXV1eA"),
        ("authorization", header.as_str()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    report(
        "request_headers_typical",
        || ns_per_op(|| drop(black_box(RequestHeaders::from_pairs(black_box(&typical))))),
        None,
    );
    report(
        "credential_scan_typical_headers",
        || {
            ns_per_op(|| {
                for (name, value) in black_box(&typical) {
                    if name != "authorization" {
                        black_box(holds_token(name) || holds_token(value));
                    }
                }
            })
        },
        None,
    );
    // The credential-format scan alone, on 1 KiB of one letter and of prose (whose letters
    // start formats often).
    let formats = mcp_guard::mcp::formats::FormatPolicy::default();
    let plain = "a".repeat(1024);
    let prose = "the quick brown fox jumps over the lazy dog; she sells sea shells. ".repeat(16)
        [..1024]
        .to_string();
    for (name, text) in [
        ("format_scan_1k_plain", &plain),
        ("format_scan_1k_prose", &prose),
    ] {
        report(
            name,
            || {
                ns_per_op(|| {
                    black_box(mcp_guard::mcp::formats::find_format(
                        black_box(text.as_bytes()),
                        &formats,
                    ));
                })
            },
            Some(text.len()),
        );
    }
    let stored = VersionedEntry {
        version: 42,
        entry: Entry::Active(record.clone()),
    }
    .encode();
    let config = InspectConfig::default();
    for (name, body) in [
        ("inspect_tools_call_1k_typical", tools_call_typical(1 << 10)),
        ("inspect_tools_call_1k_dense", tools_call_dense(1 << 10)),
        ("inspect_tools_call_64k_dense", tools_call_dense(64 << 10)),
        ("inspect_tools_call_1m_dense", tools_call_dense(1 << 20)),
    ] {
        if !selected(name) {
            continue;
        }
        let verdict = inspect_body(body.as_bytes(), &config);
        assert!(verdict.is_allow(), "{name} must be clean: {verdict:?}");
        report(
            name,
            || {
                ns_per_op(|| {
                    black_box(inspect_body(black_box(body.as_bytes()), &config).is_allow());
                })
            },
            Some(body.len()),
        );
    }
    // The strict parser alone (reusing its buffers, as the inspector does).
    let dense = tools_call_dense(64 << 10);
    let mut buffers = ParseBuffers::default();
    let options = ParseOptions::default();
    report(
        "json_parse_64k_dense",
        || {
            ns_per_op(|| {
                let doc = parse_with(black_box(dense.as_bytes()), &options, &mut buffers).unwrap();
                black_box(doc.node_count());
                buffers.recycle(doc);
            })
        },
        Some(dense.len()),
    );
    let policy = NamePolicy::default();
    report(
        "name_check_benign_camel_case",
        || {
            ns_per_op(|| {
                black_box(policy.check(black_box("nextPageToken")).is_none());
            })
        },
        None,
    );
    report(
        "name_check_secret",
        || {
            ns_per_op(|| {
                black_box(policy.check(black_box("client_secret")).is_some());
            })
        },
        None,
    );
    report(
        "key_record_decode",
        || {
            ns_per_op(|| {
                black_box(VersionedEntry::decode(black_box(&stored)).is_some());
            })
        },
        None,
    );
}

/// One long text argument, as most tool calls are.
fn tools_call_typical(size: usize) -> String {
    let head = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":""#;
    let tail = r#""}}}"#;
    format!(
        "{head}{}{tail}",
        "a".repeat(size.saturating_sub(head.len() + tail.len()))
    )
}

/// Many small keyed items with nested objects and escapes: the parser's worst ordinary case.
fn tools_call_dense(size: usize) -> String {
    let mut items = Vec::new();
    let mut len = 0;
    let mut i = 0;
    while len < size.saturating_sub(120) {
        let item = format!(
            r#"{{"id":{i},"name":"item \"{i}\"","tags":["a","b"],"meta":{{"page_token":"p{i}","max_tokens":{i}}}}}"#
        );
        len += item.len() + 1;
        items.push(item);
        i += 1;
    }
    format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"search","arguments":{{"items":[{}]}}}}}}"#,
        items.join(",")
    )
}
