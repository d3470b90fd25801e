//! Micro-benchmarks of the filter's pure logic, run by `make bench` natively and compiled to
//! wasm32-wasip1 in Node's V8 (the engine Envoy embeds). One JSON object per line on stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Instant;

use mcp_guard::auth::authenticate;
use mcp_guard::auth::token::parse_authorization;
use mcp_guard::keyset::record::{Entry, KeyRecord, VersionedEntry};
use mcp_guard::keyset::Lookup;
use sha2::{Digest, Sha256};

const TOKEN: &str = "amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";

/// Median nanoseconds per call of `op` over several timed batches of calibrated size.
fn ns_per_op(mut op: impl FnMut()) -> f64 {
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

fn report(name: &str, ns: f64, bytes: Option<usize>) {
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
    };

    report(
        "token_parse",
        ns_per_op(|| {
            black_box(parse_authorization(&[black_box(header.as_str())]).is_ok());
        }),
        None,
    );
    report(
        "token_parse_hash_compare",
        ns_per_op(|| {
            let token = parse_authorization(&[black_box(header.as_str())]).unwrap();
            let lookup = Lookup::Active(record.clone());
            black_box(authenticate(token, lookup, Some("demo"), || 0).is_ok());
        }),
        None,
    );
    let stored = VersionedEntry {
        version: 42,
        entry: Entry::Active(record.clone()),
    }
    .encode();
    report(
        "key_record_decode",
        ns_per_op(|| {
            black_box(VersionedEntry::decode(black_box(&stored)).is_some());
        }),
        None,
    );
}
