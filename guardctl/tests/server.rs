//! In-process tests of `guardctl serve`: the admin API, the key-set sync API with long-polling,
//! and durability across a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestServer;
use guardctl::cli::client::CreateKeyParams;
use guardctl::keys::token::sha256_hex;
use serde_json::Value;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GET `url`, returning the status and the JSON body (`Value::Null` if not JSON).
fn get(url: &str, admin_token: Option<&str>) -> (u16, Value) {
    let mut request = http().get(url);
    if let Some(token) = admin_token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn post_json(url: &str, admin_token: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = http().post(url).content_type("application/json");
    if let Some(token) = admin_token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.send(body).unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn keyset(server: &TestServer, since: u64, wait_ms: u64) -> Value {
    let url = format!("{}/v1/keyset?since={since}&wait_ms={wait_ms}", server.url);
    let (status, body) = get(&url, None);
    assert_eq!(status, 200, "{body}");
    body
}

fn db_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data").join("guard.db")
}

fn params(name: &str) -> CreateKeyParams {
    CreateKeyParams {
        org: "demo".into(),
        role: Some("admin".into()),
        user: None,
        name: name.into(),
        expires_in_seconds: None,
    }
}

#[test]
fn create_list_long_poll_revoke_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let server = TestServer::start(&db);
    let client = server.client();

    // Create.
    let first = client.create_key(&params("first")).unwrap();
    let second = client
        .create_key(&CreateKeyParams {
            expires_in_seconds: Some(3600),
            ..params("second")
        })
        .unwrap();
    assert!(first.token.starts_with(&format!("amt_{}_", first.key_id)));
    assert_eq!(first.token.len(), 4 + 12 + 1 + 43);
    assert_eq!(
        second.expires_at.map(|at| at - second.created_at),
        Some(3600)
    );

    // List: both keys, never a token or a hash.
    let (status, listed) = get(
        &format!("{}/v1/keys", server.url),
        Some(&server.admin_token),
    );
    assert_eq!(status, 200);
    let ids: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![first.key_id.as_str(), second.key_id.as_str()]);
    let listed_text = listed.to_string();
    assert!(!listed_text.contains(&first.token));
    assert!(!listed_text.contains(&sha256_hex(first.token.as_bytes())));
    assert!(!listed_text.contains("sha256") && !listed_text.contains("token"));

    // Full sync: the hash rows.
    let page = keyset(&server, 0, 0);
    assert_eq!(page["version"], 2);
    assert_eq!(page["more"], false);
    let epoch = page["epoch"].as_str().unwrap().to_string();
    assert_eq!(epoch.len(), 16);
    assert_eq!(
        page["upserts"][0]["sha256"].as_str().unwrap(),
        sha256_hex(first.token.as_bytes())
    );
    assert_eq!(page["upserts"][0]["version"], 1);
    assert_eq!(page["upserts"][0]["org"], "demo");
    assert_eq!(page["upserts"][0]["expires_at"], Value::Null);
    assert_eq!(page["upserts"][1]["expires_at"], second.expires_at.unwrap());

    // A long-poll at the current version is answered by the revoke, not by its timeout.
    let poll_url = format!("{}/v1/keyset?since=2&wait_ms=20000", server.url);
    let poller = thread::spawn(move || {
        let started = Instant::now();
        let answer = get(&poll_url, None);
        (answer, started.elapsed())
    });
    wait_for_long_polls(&server.url, 1);
    let revoked = client.revoke_key(&first.key_id).unwrap();
    assert!(revoked.revoked);
    assert_eq!(revoked.version, 3);
    let ((status, woken), waited) = poller.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        waited < Duration::from_secs(10),
        "long-poll took {waited:?}"
    );
    assert_eq!(woken["version"], 3);
    assert_eq!(woken["upserts"], Value::Array(vec![]));
    assert_eq!(woken["revocations"][0]["key_id"], first.key_id.as_str());
    assert_eq!(woken["revocations"][0]["version"], 3);

    // After the revoke a fresh load never carries the revoked key's hash.
    let fresh = keyset(&server, 0, 0);
    assert!(!fresh
        .to_string()
        .contains(&sha256_hex(first.token.as_bytes())));
    assert_eq!(fresh["revocations"][0]["key_id"], first.key_id.as_str());
    assert_eq!(fresh["revocations"][0]["version"], 1);

    // Nothing new: the long-poll times out with version = since and empty lists.
    let started = Instant::now();
    let idle = keyset(&server, 3, 300);
    assert!(started.elapsed() >= Duration::from_millis(290));
    assert_eq!(idle["version"], 3);
    assert_eq!(idle["more"], false);
    assert_eq!(idle["upserts"], Value::Array(vec![]));
    assert_eq!(idle["revocations"], Value::Array(vec![]));

    // Revoking twice: 404.
    let again = client.revoke_key(&first.key_id).unwrap_err().to_string();
    assert!(again.contains("no such key"), "{again}");

    let admin_token = server.admin_token.clone();
    server.stop();

    // Restart on the same database: same admin token, epoch, version and keys.
    let server = TestServer::start(&db);
    assert_eq!(server.admin_token, admin_token);
    let listed = server.client().list_keys().unwrap();
    assert_eq!(listed.keys.len(), 1);
    assert_eq!(listed.keys[0].key_id, second.key_id);
    assert_eq!(listed.keys[0].name, "second");
    let page = keyset(&server, 3, 0);
    assert_eq!(page["epoch"].as_str(), Some(epoch.as_str()));
    assert_eq!(page["version"], 3);
    server.stop();
}

#[test]
fn admin_api_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&db_in(&dir));
    let keys_url = format!("{}/v1/keys", server.url);
    let token = Some(server.admin_token.as_str());

    // No token, wrong token, wrong scheme: 401 with a JSON error.
    let good_body = r#"{"org":"demo","role":"admin","name":"x"}"#;
    for bad in [None, Some("wrong"), Some("")] {
        let (status, body) = post_json(&keys_url, bad, good_body);
        assert_eq!(status, 401);
        assert!(body["error"].is_string());
        assert_eq!(get(&keys_url, bad).0, 401);
    }
    let mut response = http()
        .get(&keys_url)
        .header("Authorization", format!("Basic {}", server.admin_token))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let _ = response.body_mut().read_to_string();

    // Bad input: 400 with a JSON error, and nothing created.
    for body in [
        r#"{"org":"Demo","role":"admin","name":"x"}"#,
        r#"{"org":"demo","role":"-admin","name":"x"}"#,
        r#"{"org":"demo","role":"admin","name":""}"#,
        r#"{"org":"demo","role":"admin","name":"line\nbreak"}"#,
        r#"{"org":"demo","role":"admin","name":"x","expires_in_seconds":0}"#,
        r#"{"org":"demo","role":"admin","name":"x","expires_in_seconds":-1}"#,
        r#"{"org":"demo","role":"admin","name":"x","expires_in_seconds":1.5}"#,
        r#"{"org":"demo","role":"admin","name":"x","expires_in_seconds":"60"}"#,
        r#"{"org":"demo","role":"admin"}"#,
        r#"{"org":"demo","role":"admin","name":"x","extra":1}"#,
        r#"not json"#,
    ] {
        let (status, answer) = post_json(&keys_url, token, body);
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(answer["error"].is_string(), "{body} -> {answer}");
    }
    let long_name = format!(
        r#"{{"org":"demo","role":"admin","name":"{}"}}"#,
        "n".repeat(129)
    );
    assert_eq!(post_json(&keys_url, token, &long_name).0, 400);
    assert_eq!(get(&keys_url, token).1["keys"], Value::Array(vec![]));

    // A good one, with and without expiry (null is the same as absent).
    let (status, created) = post_json(&keys_url, token, good_body);
    assert_eq!(status, 201, "{created}");
    for field in ["key_id", "token", "org", "role", "name", "created_at"] {
        assert!(!created[field].is_null(), "{field} missing");
    }
    assert_eq!(created["expires_at"], Value::Null);
    let with_null = r#"{"org":"demo","role":"admin","name":"y","expires_in_seconds":null}"#;
    assert_eq!(post_json(&keys_url, token, with_null).0, 201);

    // Revoke of unknown or malformed ids: 404.
    for id in ["aaaaaaaaaaaa", "NOT-AN-ID", "x"] {
        let mut response = http()
            .delete(&format!("{keys_url}/{id}"))
            .header("Authorization", format!("Bearer {}", server.admin_token))
            .call()
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{id}");
        let body: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert!(body["error"].is_string());
    }

    // Sync API: malformed parameters get 400; it needs no admin token.
    for query in [
        "since=-1",
        "since=abc",
        "since=",
        "wait_ms=soon",
        "since=1&since=2",
    ] {
        let (status, body) = get(&format!("{}/v1/keyset?{query}", server.url), None);
        assert_eq!(status, 400, "{query}");
        assert!(body["error"].is_string(), "{query}");
    }
    assert_eq!(get(&format!("{}/v1/keyset", server.url), None).0, 200);

    // since beyond the current version (restored database): the same answer as since=0.
    assert_eq!(keyset(&server, 999, 5000), keyset(&server, 0, 0));

    // Health check without auth.
    let mut health = http()
        .get(&format!("{}/healthz", server.url))
        .call()
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.body_mut().read_to_string().unwrap(), "ok");

    assert_eq!(get(&format!("{}/nope", server.url), None).0, 404);
}

#[test]
fn sync_pages_through_a_large_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_page_size(&db_in(&dir), 4);
    let client = server.client();
    let created: Vec<_> = (0..10)
        .map(|i| client.create_key(&params(&format!("k{i}"))).unwrap())
        .collect();
    client.revoke_key(&created[9].key_id).unwrap(); // version 11

    let mut since = 0;
    let mut pages = 0;
    let mut live = std::collections::HashMap::new();
    loop {
        let page = keyset(&server, since, 0);
        pages += 1;
        for upsert in page["upserts"].as_array().unwrap() {
            live.insert(upsert["key_id"].as_str().unwrap().to_string(), ());
        }
        for revocation in page["revocations"].as_array().unwrap() {
            live.remove(revocation["key_id"].as_str().unwrap());
        }
        since = page["version"].as_u64().unwrap();
        if page["more"] == false {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(since, 11);
    assert_eq!(live.len(), 9);
    assert!(!live.contains_key(&created[9].key_id));
}

#[test]
fn shutdown_answers_pending_long_polls() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&db_in(&dir));
    let poll_url = format!("{}/v1/keyset?since=0&wait_ms=60000", server.url);
    let poller = thread::spawn(move || get(&poll_url, None));
    wait_for_long_polls(&server.url, 1);
    let started = Instant::now();
    server.shutdown_within(Duration::from_secs(5));
    let (status, body) = poller.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status, 200);
    assert_eq!(body["version"], 0);
    assert_eq!(body["upserts"], Value::Array(vec![]));
}

/// A thousand proxies long-polling at once cost no thread each, and one commit wakes them all.
#[test]
fn a_thousand_long_polls_wake_on_one_change() {
    // Client and server sockets live in this one process: two descriptors per poll. Run fewer
    // polls rather than fail where the open-file limit is low (the binary raises its own).
    let poll_count = 1000.min(open_file_limit().saturating_sub(200) / 2);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&db_in(&dir));
    let address = server.url.trim_start_matches("http://").to_string();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answers = runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut polls = tokio::task::JoinSet::new();
        for _ in 0..poll_count {
            let address = address.clone();
            polls.spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(&address).await?;
                let request = format!(
                    "GET /v1/keyset?since=0&wait_ms=30000 HTTP/1.1\r\nHost: {address}\r\n\
                     Connection: close\r\n\r\n"
                );
                stream.write_all(request.as_bytes()).await?;
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await?;
                Ok::<String, std::io::Error>(answer)
            });
        }
        // Every poll parked before the change: each is woken by it, none answered at once.
        let url = server.url.clone();
        tokio::task::spawn_blocking(move || wait_for_long_polls(&url, poll_count as u64))
            .await
            .unwrap();
        let client = server.client();
        let created = tokio::task::spawn_blocking(move || client.create_key(&params("wake")))
            .await
            .unwrap()
            .unwrap();
        let started = Instant::now();
        let mut answers = Vec::new();
        while let Some(answer) = polls.join_next().await {
            answers.push(answer.unwrap().unwrap());
        }
        (created, answers, started.elapsed())
    });
    let (created, answers, elapsed) = answers;
    assert_eq!(answers.len(), poll_count);
    assert!(elapsed < Duration::from_secs(20), "waking took {elapsed:?}");
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(&created.key_id), "{answer}");
    }
}

/// The soft limit on open files, from /proc/self/limits (1024 if unreadable).
fn open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(1024)
}

/// `POST /v1/keys/import` through the real server: batches of hash rows become keys the sync API
/// serves and a token then matches; bad rows and reused key-ids are refused naming the row.
#[test]
fn import_hash_rows_in_batches() {
    use guardctl::keys::import::{self, ImportRow};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&db_in(&dir));
    let client = server.client();
    let existing = client.create_key(&params("existing")).unwrap();
    let import_url = format!("{}/v1/keys/import", server.url);
    let token = Some(server.admin_token.as_str());

    // 2,000 rows (well above the 64 KiB body limit of the other admin requests), in two batches.
    let tokens: Vec<String> = (0..2000)
        .map(|i| format!("amt_imp{i:08}_{}", "S".repeat(40)))
        .collect();
    let rows: Vec<ImportRow> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| ImportRow {
            key_id: format!("imp{i:08}"),
            sha256: sha256_hex(token.as_bytes()).to_uppercase(),
            org: "acme".into(),
            role: "reader".into(),
            expires_at: (i % 2 == 0).then_some(4_000_000_000),
            name: (i == 0).then(|| "first imported".to_string()),
        })
        .collect();
    let first = client.import_batch(&rows[..1500]).unwrap();
    assert_eq!((first.imported, first.version), (1500, 1501));
    let second = client.import_batch(&rows[1500..]).unwrap();
    assert_eq!((second.imported, second.version), (500, 2001));

    let listed = client.list_keys().unwrap().keys;
    assert_eq!(listed.len(), 2001);
    assert_eq!(listed[0].key_id, existing.key_id);
    assert_eq!(listed[1].name, "first imported");
    assert_eq!(listed[2].name, import::DEFAULT_NAME);
    assert_eq!(listed[1].expires_at, Some(4_000_000_000));
    assert_eq!(listed[2].expires_at, None);

    // The sync API pages the imported rows like created ones, hashes lower-cased.
    let page = keyset(&server, 1, 0);
    assert_eq!(page["version"], 1001);
    assert_eq!(page["more"], true);
    let upsert = &page["upserts"][0];
    assert_eq!(upsert["key_id"], "imp00000000");
    assert_eq!(upsert["sha256"], sha256_hex(tokens[0].as_bytes()));
    assert_eq!(upsert["version"], 2);
    assert_eq!(upsert["expires_at"], 4_000_000_000u64);

    // A reused key-id (live, revoked, or twice in the batch) refuses the batch with 409 and
    // the index of the row; nothing of it is written.
    client.revoke_key("imp00000005").unwrap();
    let fresh = |key_id: &str| serde_json::json!({"key_id": key_id, "sha256": "ab".repeat(32), "org": "acme", "role": "reader"});
    for (keys, index) in [
        (vec![fresh("newkey0001"), fresh(&existing.key_id)], 1),
        (vec![fresh("newkey0001"), fresh("imp00000005")], 1),
        (vec![fresh("imp00000007")], 0),
        (
            vec![
                fresh("newkey0001"),
                fresh("newkey0002"),
                fresh("newkey0001"),
            ],
            2,
        ),
    ] {
        let body = serde_json::json!({ "keys": keys }).to_string();
        let (status, answer) = post_json(&import_url, token, &body);
        assert_eq!(status, 409, "{answer}");
        assert_eq!(answer["index"], index, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("already used"),
            "{answer}"
        );
    }
    assert_eq!(client.list_keys().unwrap().keys.len(), 2000);

    // Bad rows: 400 naming the row; plaintext tokens and unknown fields refused.
    let plaintext = &tokens[0];
    for (row, index) in [
        (
            serde_json::json!({"key_id": "short", "sha256": "ab".repeat(32), "org": "acme", "role": "r"}),
            0,
        ),
        (
            serde_json::json!({"key_id": "newkey0003", "sha256": "xyz", "org": "acme", "role": "r"}),
            0,
        ),
        (
            serde_json::json!({"key_id": "newkey0003", "sha256": "ab".repeat(32), "org": "Acme", "role": "r"}),
            0,
        ),
        (
            serde_json::json!({"key_id": "newkey0003", "sha256": "ab".repeat(32), "org": "acme", "role": "r", "expires_at": -1}),
            0,
        ),
        (
            serde_json::json!({"key_id": "newkey0003", "sha256": "ab".repeat(32), "org": "acme", "role": "r", "name": format!("k {plaintext}")}),
            0,
        ),
    ] {
        let body = serde_json::json!({ "keys": [fresh("newkey0004"), row] }).to_string();
        let (status, answer) = post_json(&import_url, token, &body);
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["index"], 1 + index, "{answer}");
        assert!(!answer.to_string().contains(plaintext.as_str()), "{answer}");
    }
    for body in [
        serde_json::json!({"keys": []}).to_string(),
        format!(
            r#"{{"keys":[{{"key_id":"newkey0003","sha256":"{}","org":"a","role":"r","token":"{plaintext}"}}]}}"#,
            "ab".repeat(32)
        ),
        "not json".to_string(),
    ] {
        let (status, answer) = post_json(&import_url, token, &body);
        assert_eq!(status, 400, "{answer}");
        assert!(!answer.to_string().contains(plaintext.as_str()), "{answer}");
    }
    let (status, _) = post_json(&import_url, None, r#"{"keys":[]}"#);
    assert_eq!(status, 401);
    let (status, _) = post_json(&import_url, Some("wrong"), r#"{"keys":[]}"#);
    assert_eq!(status, 401);
    assert_eq!(client.list_keys().unwrap().keys.len(), 2000);
    server.stop();
}

/// GET `url` as text: status, body and content type.
fn get_text(url: &str) -> (u16, String, String) {
    let mut response = http().get(url).call().unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (
        status,
        response.body_mut().read_to_string().unwrap(),
        content_type,
    )
}

/// Waits until exactly `n` long-polls are parked in the server (`guardctl_long_polls` on
/// `/metrics`), so a test acts only once its polls are really waiting.
fn wait_for_long_polls(server_url: &str, n: u64) {
    let started = Instant::now();
    loop {
        let (_, page, _) = get_text(&format!("{server_url}/metrics"));
        if sample(&page, "guardctl_long_polls") == Some(n) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never {n} parked long-polls:\n{page}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// The value of one sample of a Prometheus text page (`series` with its labels, exactly).
fn sample(page: &str, series: &str) -> Option<u64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

/// `/healthz`, `/readyz` and `/metrics` on the real server: every metric moves with the admin
/// actions and sync requests that drive it, and the page never shows a key-id, token or hash.
#[test]
fn probes_and_metrics() {
    use guardctl::keys::import::ImportRow;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&db_in(&dir));
    let client = server.client();

    assert_eq!(get_text(&format!("{}/healthz", server.url)).0, 200);
    let (status, body, _) = get_text(&format!("{}/readyz", server.url));
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    // Version 1, 2: two creates; 3..5: three imported rows; 6: a revoke.
    let first = client.create_key(&params("one")).unwrap();
    let second = client.create_key(&params("two")).unwrap();
    let imported_token = format!("amt_metrics01_{}", "M".repeat(40));
    let rows: Vec<ImportRow> = (0..3)
        .map(|i| ImportRow {
            key_id: format!("metrics0{i}"),
            sha256: sha256_hex(format!("amt_metrics0{i}_{}", "M".repeat(40)).as_bytes()),
            org: "acme".into(),
            role: "reader".into(),
            expires_at: None,
            name: None,
        })
        .collect();
    client.import_batch(&rows).unwrap();
    client.revoke_key(&first.key_id).unwrap();

    // Sync: one page with changes, one empty answer, one long-poll that times out, one error.
    assert_eq!(keyset(&server, 0, 0)["version"], 6);
    assert_eq!(keyset(&server, 6, 0)["version"], 6);
    assert_eq!(keyset(&server, 6, 100)["version"], 6);
    let (status, _) = get(&format!("{}/v1/keyset?since=soon", server.url), None);
    assert_eq!(status, 400);
    assert_eq!(get(&format!("{}/no/such/path", server.url), None).0, 404);

    // A long-poll waiting while the page is read shows in guardctl_long_polls.
    let poll_url = format!("{}/v1/keyset?since=6&wait_ms=60000", server.url);
    let poller = thread::spawn(move || get(&poll_url, None));
    let started = Instant::now();
    let page = loop {
        let (status, page, content_type) = get_text(&format!("{}/metrics", server.url));
        assert_eq!(status, 200);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        if sample(&page, "guardctl_long_polls") == Some(1) || started.elapsed().as_secs() > 10 {
            break page;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(sample(&page, "guardctl_long_polls"), Some(1), "{page}");
    assert_eq!(sample(&page, "guardctl_keys"), Some(4), "{page}");
    assert_eq!(sample(&page, "guardctl_keyset_version"), Some(6));
    assert_eq!(sample(&page, "guardctl_keys_created_total"), Some(2));
    assert_eq!(sample(&page, "guardctl_keys_imported_total"), Some(3));
    assert_eq!(sample(&page, "guardctl_revocations_total"), Some(1));
    assert_eq!(sample(&page, "guardctl_ready"), Some(1));
    for (result, count) in [("changes", 1), ("empty", 1), ("timeout", 1), ("error", 1)] {
        assert_eq!(
            sample(
                &page,
                &format!("guardctl_sync_requests_total{{result=\"{result}\"}}")
            ),
            Some(count),
            "{result}: {page}"
        );
    }
    // Each of the sync requests above came on its own connection (a fresh ureq agent each).
    let clients = sample(&page, "guardctl_sync_clients").unwrap();
    assert!((1..=6).contains(&clients), "{page}");
    for (route, code, count) in [
        ("/v1/keys", 201, 2),
        ("/v1/keys/import", 200, 1),
        ("/v1/keys/{key_id}", 200, 1),
        ("/v1/keyset", 200, 3),
        ("/v1/keyset", 400, 1),
        ("/healthz", 200, 1),
        ("/readyz", 200, 1),
        ("other", 404, 1),
    ] {
        assert_eq!(
            sample(
                &page,
                &format!("guardctl_http_requests_total{{route=\"{route}\",code=\"{code}\"}}")
            ),
            Some(count),
            "{route} {code}: {page}"
        );
    }
    for secret in [
        first.key_id.as_str(),
        second.key_id.as_str(),
        second.token.as_str(),
        &sha256_hex(second.token.as_bytes()),
        &server.admin_token,
        &imported_token,
        "metrics0",
    ] {
        assert!(!page.contains(secret), "{secret} in {page}");
    }

    // Stopping answers the waiting poll at once.
    drop(server);
    let (status, body) = poller.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["version"], 6);
}

/// Users through the admin API: a key issued by a user carries the user's role of that moment,
/// in the key list and in the sync page, and keeps it after `set-role`; a user with keys is
/// removed only with `revoke_keys`, which revokes them; the audit trail has every step.
#[test]
fn users_freeze_roles_into_keys_and_every_step_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("guard.db"));
    let client = server.client();
    client.add_user("demo", "alice", "viewer").unwrap();
    let duplicate = client
        .add_user("demo", "alice", "admin")
        .unwrap_err()
        .to_string();
    assert!(
        duplicate.contains("409") && duplicate.contains("already exists"),
        "{duplicate}"
    );
    let bad_name = client
        .add_user("demo", "Alice", "viewer")
        .unwrap_err()
        .to_string();
    assert!(bad_name.contains("user must be"), "{bad_name}");

    let org = client.org_of_user("alice", None).unwrap();
    let key = client
        .create_key(&CreateKeyParams {
            org,
            role: None,
            user: Some("alice".into()),
            ..params("alice's agent")
        })
        .unwrap();
    assert_eq!(
        (key.role.as_str(), key.user.as_deref()),
        ("viewer", Some("alice"))
    );
    let both = client
        .create_key(&CreateKeyParams {
            user: Some("alice".into()),
            ..params("both")
        })
        .unwrap_err()
        .to_string();
    assert!(both.contains("not both"), "{both}");
    let nobody = client
        .create_key(&CreateKeyParams {
            role: None,
            user: Some("bob".into()),
            ..params("nobody")
        })
        .unwrap_err()
        .to_string();
    assert!(
        nobody.contains("404") && nobody.contains("no user bob"),
        "{nobody}"
    );

    let change = client.set_user_role("demo", "alice", "admin").unwrap();
    assert_eq!(
        (change.from.as_str(), change.to.as_str()),
        ("viewer", "admin")
    );
    let listed = client.list_keys().unwrap().keys;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].role.as_str(), listed[0].user.as_deref()),
        ("viewer", Some("alice"))
    );
    // The issuing user travels in format 2 only: a format-1 reader refuses members it does not
    // know, and one that names a newer format than guardctl's gets guardctl's.
    let (_, page) = get(&format!("{}/v1/keyset?since=0&format=2", server.url), None);
    assert_eq!(page["upserts"][0]["role"], "viewer", "{page}");
    assert_eq!(page["upserts"][0]["user"], "alice", "{page}");
    let (_, newer) = get(&format!("{}/v1/keyset?since=0&format=9", server.url), None);
    assert_eq!(newer, page);
    for old in ["", "&format=1"] {
        let (_, page) = get(&format!("{}/v1/keyset?since=0{old}", server.url), None);
        assert_eq!(page["upserts"][0]["role"], "viewer", "{page}");
        assert!(page["upserts"][0].get("user").is_none(), "{page}");
    }
    let (status, _) = get(&format!("{}/v1/keyset?since=0&format=x", server.url), None);
    assert_eq!(status, 400);
    assert_eq!(client.list_users().unwrap().users[0].keys, 1);

    let refused = client
        .remove_user("demo", "alice", false)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("409") && refused.contains("--revoke-keys"),
        "{refused}"
    );
    let removed = client.remove_user("demo", "alice", true).unwrap();
    assert_eq!(removed.revoked.len(), 1);
    assert_eq!(removed.revoked[0].key_id, key.key_id);
    let (_, page) = get(&format!("{}/v1/keyset?since=1", server.url), None);
    assert_eq!(
        page["revocations"][0]["key_id"],
        key.key_id.as_str(),
        "{page}"
    );
    assert!(client.list_keys().unwrap().keys.is_empty());

    let events = client.audit(0).unwrap().events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.add",
            "key.create",
            "user.set-role",
            "key.revoke",
            "user.remove"
        ]
    );
    let everything = serde_json::to_string(&events).unwrap();
    assert!(!everything.contains(&key.token), "{everything}");
    assert!(
        !everything.contains(&sha256_hex(key.token.as_bytes())),
        "{everything}"
    );
    let (status, _) = get(&format!("{}/v1/audit", server.url), None);
    assert_eq!(status, 401);
    server.stop();
}

#[test]
fn a_policy_is_validated_versioned_in_the_key_set_log_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("guard.db"));
    let client = server.client();
    client.add_user("demo", "alice", "viewer").unwrap();
    client.add_user("demo", "bob", "member").unwrap();
    let source = "# viewers read, members all but deletes\nroles:\n  viewer:\n    tools: [\"search_*\", echo]\n  member:\n    tools: [\"*\"]\n    deny_tools: [\"delete_*\"]\n";

    // Refused with the line: a pattern, a role nobody holds, an empty document.
    for (bad, words) in [
        (source.replace("echo", "\"e cho\""), "line 4:"),
        (
            source.replace("member:", "admin:"),
            "line 5: role \"admin\"",
        ),
        (String::new(), "empty"),
    ] {
        let refused = client
            .set_policy("demo", &bad, false)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("400") && refused.contains(words),
            "{refused}"
        );
    }
    assert!(client.policy("demo").unwrap().is_none());

    let set = client.set_policy("demo", source, false).unwrap();
    assert_eq!(set.version, 1);
    let shown = client.policy("demo").unwrap().unwrap();
    assert_eq!((shown.version, shown.source.as_str()), (1, source));
    assert_eq!(
        shown.policy["roles"][1]["role"], "viewer",
        "{}",
        shown.policy
    );
    let verdict =
        guardctl::policy::check::explain(Some(&shown), "member", Some("delete_repo".into()), None)
            .unwrap();
    assert!(!verdict.allowed);
    assert_eq!(verdict.reason, "tool_denied");
    assert_eq!(
        verdict.rule.as_deref(),
        Some("roles.member.deny_tools \"delete_*\"")
    );

    // The policy travels with the keys, at its version, to readers of format 3 only.
    let key = client
        .create_key(&CreateKeyParams {
            role: None,
            user: Some("alice".into()),
            ..params("alice")
        })
        .unwrap();
    let page = |format: u32| {
        let (status, page) = get(
            &format!("{}/v1/keyset?since=0&format={format}", server.url),
            None,
        );
        assert_eq!(status, 200);
        page
    };
    let three = page(3);
    assert_eq!(three["version"], 2);
    assert_eq!(three["policies"][0]["org"], "demo");
    assert_eq!(three["policies"][0]["version"], 1);
    assert_eq!(three["policies"][0]["policy"], shown.policy);
    assert_eq!(three["upserts"][0]["key_id"], key.key_id.as_str());
    assert!(page(2).get("policies").is_none(), "{}", page(2));

    // A long-poll wakes for a policy change like for a key change.
    let url = server.url.clone();
    let poll = thread::spawn(move || {
        get(
            &format!("{url}/v1/keyset?since=2&wait_ms=10000&format=3"),
            None,
        )
        .1
    });
    wait_for_long_polls(&server.url, 1);
    let removed = client.remove_policy("demo").unwrap();
    assert_eq!(removed.version, 3);
    let woken = poll.join().unwrap();
    assert_eq!(woken["policies"][0]["policy"], Value::Null, "{woken}");
    assert!(client.policy("demo").unwrap().is_none());
    let again = client.remove_policy("demo").unwrap_err().to_string();
    assert!(again.contains("no policy"), "{again}");

    let actions: Vec<String> = client
        .audit(0)
        .unwrap()
        .events
        .into_iter()
        .map(|event| event.action)
        .collect();
    assert_eq!(
        actions,
        [
            "user.add",
            "user.add",
            "policy.set",
            "key.create",
            "policy.remove"
        ]
    );
    server.stop();
}
