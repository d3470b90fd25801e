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

/// One test at a time: one of them stops the database.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn keyset(url: &str, query: &str) -> Value {
    let mut response = ureq::get(&format!("{url}/v1/keyset?{query}"))
        .call()
        .unwrap();
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

/// A database of its own on the test server.
fn database_named(test: &str) -> PathBuf {
    let server = std::env::var("GUARDCTL_TEST_POSTGRES").expect("GUARDCTL_TEST_POSTGRES");
    let name = format!("replicas_{test}_{}", std::process::id());
    let mut admin = postgres::Client::connect(&server, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    PathBuf::from(server.replacen("/guard", &format!("/{name}"), 1))
}

/// Two replicas on a database of their own, holding the lock that runs one such test at a time.
/// Both read the same admin token file (as a Secret would give them).
fn two_replicas(
    test: &str,
) -> (
    std::sync::MutexGuard<'static, ()>,
    tempfile::TempDir,
    TestServer,
    TestServer,
) {
    let serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let db = database_named(test);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    let a = TestServer::start_with(&db, Some(token.clone()));
    let b = TestServer::start_with(&db, Some(token));
    (serial, dir, a, b)
}

#[test]
#[ignore = "needs GUARDCTL_TEST_POSTGRES: run by make test-postgres"]
fn a_long_poll_on_one_replica_wakes_for_a_change_through_the_other() {
    let (_serial, _dir, a, b) = two_replicas("wake");
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

fn ready(url: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(&format!("{url}/readyz"))
        .call()
        .unwrap()
        .status()
        .as_u16()
}

fn postgres(action: &str) {
    let dir = std::env::var("GUARDCTL_TEST_POSTGRES_DIR").expect("GUARDCTL_TEST_POSTGRES_DIR");
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/postgres.sh");
    let status = std::process::Command::new(tool)
        .args([action, &dir])
        .status()
        .unwrap();
    assert!(status.success(), "postgres.sh {action}");
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(15), "{what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The database stops and starts again: `/readyz` says so on every replica meanwhile, and
/// afterwards they write again and wake each other again (sessions reconnect).
#[test]
#[ignore = "needs GUARDCTL_TEST_POSTGRES and GUARDCTL_TEST_POSTGRES_DIR: run by make test-postgres"]
fn replicas_turn_unready_while_the_database_is_down_and_recover_after() {
    let (_serial, _dir, a, b) = two_replicas("restart");
    assert_eq!((ready(&a.url), ready(&b.url)), (200, 200));
    let create = |name: &str| {
        a.client().create_key(&CreateKeyParams {
            org: "demo".into(),
            role: Some("member".into()),
            user: None,
            name: name.into(),
            expires_in_seconds: None,
        })
    };
    create("before").unwrap();

    postgres("pause");
    wait_for("replicas to turn unready", || {
        ready(&a.url) == 503 && ready(&b.url) == 503
    });
    assert!(
        create("while down").is_err(),
        "a write acknowledged without a database"
    );
    postgres("resume");
    wait_for("replicas to turn ready again", || {
        ready(&a.url) == 200 && ready(&b.url) == 200
    });

    // B's listener reconnects: a long-poll on B wakes for a write through A.
    let since = keyset(&b.url, "since=0")["version"].as_u64().unwrap();
    let url = b.url.clone();
    let poll = thread::spawn(move || keyset(&url, &format!("since={since}&wait_ms=10000")));
    thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    let key = create("after").unwrap();
    let page = poll.join().unwrap();
    assert_eq!(page["upserts"][0]["key_id"], key.key_id.as_str(), "{page}");
    // The listener's safety poll bounds this even if its LISTEN were not yet back.
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
}
