//! Two guardctl replicas on one PostgreSQL database (`GUARDCTL_TEST_POSTGRES`; run by
//! `make test-postgres`, ignored otherwise): a long-poll held by replica B answers within
//! milliseconds of a change committed through replica A, and both serve the same epoch and
//! versions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestServer;
use guardctl::cli::client::CreateKeyParams;
use serde_json::Value;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

fn keyset(url: &str, query: &str) -> Value {
    let mut response = ureq::get(&format!("{url}/v1/keyset?{query}"))
        .call()
        .unwrap();
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

/// A database of its own on the test server.
fn database() -> PathBuf {
    let server = std::env::var("GUARDCTL_TEST_POSTGRES").expect("GUARDCTL_TEST_POSTGRES");
    let name = format!("replicas_{}", std::process::id());
    let mut admin = postgres::Client::connect(&server, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    PathBuf::from(server.replacen("/guard", &format!("/{name}"), 1))
}

#[test]
#[ignore = "needs GUARDCTL_TEST_POSTGRES: run by make test-postgres"]
fn a_long_poll_on_one_replica_wakes_for_a_change_through_the_other() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    // Both replicas read the same admin token file (as a Secret would give them).
    let token = dir.path().join("admin-token");
    let start = |token: &PathBuf| TestServer::start_with(&db, Some(token.clone()));
    let a = start(&token);
    let b = start(&token);
    let first = keyset(&a.url, "since=0&format=3");
    assert_eq!(keyset(&b.url, "since=0&format=3")["epoch"], first["epoch"]);

    let mut waits = Vec::new();
    for round in 0..20 {
        let since = keyset(&b.url, "since=0")["version"].as_u64().unwrap();
        let url = b.url.clone();
        let poll = thread::spawn(move || {
            let page = keyset(&url, &format!("since={since}&wait_ms=10000&format=3"));
            (page, Instant::now())
        });
        // Let the long-poll settle on B before the change goes through A.
        thread::sleep(Duration::from_millis(50));
        let key = a
            .client()
            .create_key(&CreateKeyParams {
                org: "demo".into(),
                role: Some("member".into()),
                user: None,
                name: format!("round {round}"),
                expires_in_seconds: None,
            })
            .unwrap();
        let acknowledged = Instant::now();
        let (page, answered) = poll.join().unwrap();
        assert_eq!(page["upserts"][0]["key_id"], key.key_id.as_str(), "{page}");
        assert_eq!(page["version"].as_u64(), Some(since + 1));
        waits.push(answered.saturating_duration_since(acknowledged));
    }
    waits.sort();
    let p50 = waits[waits.len() / 2];
    let max = waits[waits.len() - 1];
    eprintln!("replica B answered its long-poll {p50:?} (p50), {max:?} (max) after A acknowledged");
    assert!(
        max < Duration::from_secs(1),
        "{max:?}: not a wake-up, a safety poll or a timeout"
    );
}
