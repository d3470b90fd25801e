//! Fuzzes the request-headers decision for credentials outside `Authorization`
//! (`mcp_guard::request`, `mcp_guard::auth::smuggled`).
//!
//! Input: lines `name:value` (names lower-cased, as Envoy hands them over); a first line starting
//! with `/` is the `:path`. A valid `Authorization` for a live key is added to every request.
//!
//! Properties, judged by the independent reference `common::ref_holds_token` (raw, percent-decoded
//! up to three times, base64 from every position):
//! 1. nothing panics;
//! 2. an accepted request holds no token outside `Authorization` (no header name or value, and no
//!    `access_token` in the query);
//! 3. a refused request's redactions (what Envoy will log) hold no token, and leave a value that
//!    holds none unchanged; `Authorization` is always removed;
//! 4. the filter refuses exactly when the reference finds a token (no false refusals).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_guard::auth::request::{decide, redactions, Redaction, RequestHeaders};
use mcp_guard::auth::smuggled::redact;
use mcp_guard::config::Config;
use mcp_guard::keyset::record::KeyRecord;
use mcp_guard::keyset::Lookup;
use sha2::{Digest, Sha256};

mod common;
use common::ref_holds_token;

const TOKEN: &str = "amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";

/// An `access_token` query parameter, however a server reads the name (`&` or `;` between
/// parameters, percent-encoded up to three times, a `[]` suffix).
fn access_token_param(path: &str) -> bool {
    let Some((_, query)) = path.split_once('?') else {
        return false;
    };
    query.split(|c| c == '&' || c == ';').any(|param| {
        let mut name = param.split('=').next().unwrap_or("").to_string();
        for _ in 0..3 {
            if let Some(decoded) = common::ref_percent_decode_str(&name) {
                name = decoded;
            }
        }
        name.strip_suffix("[]").unwrap_or(&name) == "access_token"
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut pairs: Vec<(String, String)> = vec![
        (":method".into(), "GET".into()),
        (":authority".into(), "mcp.example".into()),
    ];
    let mut lines = text.split('\n').peekable();
    let path = match lines.peek() {
        Some(first) if first.starts_with('/') => lines.next().unwrap_or("/").to_string(),
        _ => "/api/mcp".to_string(),
    };
    pairs.push((":path".into(), path.clone()));
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let name = name.to_ascii_lowercase();
        if name.is_empty() || name == "authorization" || name.starts_with(':') {
            continue;
        }
        pairs.push((name, value.to_string()));
    }
    pairs.push(("authorization".into(), format!("Bearer {TOKEN}")));

    let Ok(config) = Config::from_json(br#"{"org":"demo","keyset_cluster":"g"}"#) else {
        return;
    };
    let record = KeyRecord {
        sha256: Sha256::digest(TOKEN.as_bytes()).into(),
        expires_at: None,
        org: "demo".into(),
        role: "member".into(),
        user: None,
    };
    let headers = RequestHeaders::from_pairs(&pairs);
    let decision = decide(&headers, &config, |_| Lookup::Active(record), || 0);

    let outside: Vec<&(String, String)> =
        pairs.iter().filter(|(n, _)| n != "authorization").collect();
    let reference_finds = access_token_param(&path)
        || outside
            .iter()
            .any(|(n, v)| ref_holds_token(n) || ref_holds_token(v));
    match &decision.result {
        Ok(_) => assert!(
            !reference_finds,
            "accepted a request holding a token outside Authorization: {pairs:?}"
        ),
        Err(reason) => {
            assert!(
                reason.is_smuggled_credential(),
                "refused for {reason:?}: {pairs:?}"
            );
            assert!(
                reference_finds,
                "refused a request with no token outside Authorization: {pairs:?}"
            );
        }
    }

    let planned = redactions(&pairs);
    assert_eq!(
        planned.first(),
        Some(&Redaction::Remove("authorization".into()))
    );
    for redaction in &planned {
        if let Redaction::Replace(name, values) = redaction {
            for value in values {
                assert!(
                    !ref_holds_token(value),
                    "{name} still holds a token after redaction: {value:?}"
                );
            }
        }
    }
    for (name, value) in &outside {
        let redacted = redact(value);
        assert!(
            !ref_holds_token(&redacted),
            "redact left a token in {name}: {redacted:?}"
        );
        if !ref_holds_token(value) {
            assert_eq!(&redacted, value, "redact changed a clean value");
        }
    }
});
