//! Durability of `guardctl serve` across crashes: the real binary takes concurrent creates and
//! revokes through its admin API, is SIGKILLed (its whole process group) in the middle of them,
//! and restarts on the same database, a few times over. Every change a caller was told about
//! (a 2xx answer) must still be there after each restart, as the admin API lists it and as a
//! proxy syncing from `since=0` sees it, and the key-set version must never go backwards. One
//! writer sets the org's tool policy over and over instead: the last acknowledged one (or a
//! later one that committed unanswered) must be the policy after the restart.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mcp_guard_e2e::{scratch_dir, Guardctl, Value};

const CYCLES: usize = 6;
const WRITERS: usize = 6;

/// One HTTP/1.1 exchange that reports failure instead of panicking: the server may die at any
/// byte. `None` unless a whole answer arrived (status line, headers, all of its body).
fn exchange(
    port: u16,
    method: &str,
    path: &str,
    admin_token: Option<&str>,
    body: &str,
) -> Option<(u16, Value)> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: guardctl\r\nconnection: close\r\n");
    if let Some(token) = admin_token {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("content-type: application/json\r\n");
    }
    head.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })?;
    if body.len() != length {
        return None;
    }
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// What the callers were told, over all cycles.
#[derive(Default)]
struct Acknowledged {
    /// Keys whose create answered 201.
    created: BTreeSet<String>,
    /// Keys whose revoke answered 200, with the version it reported.
    revoked: BTreeMap<String, u64>,
    /// Keys whose revoke was sent but got no answer: either outcome is allowed.
    revoke_unknown: BTreeSet<String>,
    /// Created and not yet picked for a revoke.
    revocable: Vec<String>,
    /// Anything else than 201/200 or no answer (e.g. a 404 for an acknowledged key).
    unexpected: Vec<String>,
    /// The last policy set that answered 200: its number and version.
    policy: Option<(u64, u64)>,
    /// The highest policy number sent, answered or not.
    policy_sent: u64,
}

/// Policy number `n`: the tool name says which one it was.
fn policy_body(n: u64) -> String {
    let source = format!("roles:\n  member:\n    tools: [\"tool_{n}\"]\n");
    serde_json::json!({ "source": source, "allow_unknown_roles": true }).to_string()
}

/// Sets policies one after another until the server dies.
fn policy_writer(
    port: u16,
    token: String,
    acked: Arc<Mutex<Acknowledged>>,
    crashed: Arc<AtomicBool>,
) {
    while !crashed.load(Ordering::SeqCst) {
        let n = {
            let mut acked = acked.lock().unwrap();
            acked.policy_sent += 1;
            acked.policy_sent
        };
        let answer = exchange(
            port,
            "PUT",
            "/v1/policies/demo",
            Some(&token),
            &policy_body(n),
        );
        let mut acked = acked.lock().unwrap();
        match answer {
            Some((200, body)) => {
                let version = body["version"].as_u64().unwrap();
                acked.policy = Some((n, version));
            }
            None => {}
            Some((status, body)) => acked
                .unexpected
                .push(format!("policy {n}: {status} {body}")),
        }
    }
}

/// Creates and revokes as fast as the server answers until it dies, then stops.
fn writer(
    port: u16,
    token: String,
    id: usize,
    acked: Arc<Mutex<Acknowledged>>,
    crashed: Arc<AtomicBool>,
) {
    let mut turn = id;
    while !crashed.load(Ordering::SeqCst) {
        turn += 1;
        let victim = turn
            .is_multiple_of(2)
            .then(|| acked.lock().unwrap().revocable.pop())
            .flatten();
        match victim {
            Some(key_id) => {
                let answer = exchange(
                    port,
                    "DELETE",
                    &format!("/v1/keys/{key_id}"),
                    Some(&token),
                    "",
                );
                let mut acked = acked.lock().unwrap();
                match answer {
                    Some((200, body)) => {
                        assert_eq!(body["key_id"], key_id.as_str(), "{body}");
                        let version = body["version"].as_u64().unwrap();
                        acked.revoked.insert(key_id, version);
                    }
                    None => {
                        acked.revoke_unknown.insert(key_id);
                    }
                    Some((status, body)) => {
                        acked
                            .unexpected
                            .push(format!("revoke {key_id}: {status} {body}"));
                    }
                }
            }
            None => {
                let answer = exchange(
                    port,
                    "POST",
                    "/v1/keys",
                    Some(&token),
                    r#"{"org":"demo","role":"member","name":"durability"}"#,
                );
                match answer {
                    Some((201, body)) => {
                        let key_id = body["key_id"].as_str().unwrap().to_string();
                        let mut acked = acked.lock().unwrap();
                        acked.created.insert(key_id.clone());
                        acked.revocable.push(key_id);
                    }
                    None => {} // no answer: the key may or may not exist
                    Some((status, body)) => {
                        acked
                            .lock()
                            .unwrap()
                            .unexpected
                            .push(format!("create: {status} {body}"));
                    }
                }
            }
        }
    }
}

/// Long-polls the sync API like a proxy and records the highest version it was ever served.
fn observer(port: u16, seen: Arc<Mutex<u64>>, crashed: Arc<AtomicBool>) {
    let mut since = *seen.lock().unwrap();
    while !crashed.load(Ordering::SeqCst) {
        let path = format!("/v1/keyset?since={since}&wait_ms=200");
        let Some((200, page)) = exchange(port, "GET", &path, None, "") else {
            continue;
        };
        let version = page["version"].as_u64().unwrap();
        let mut seen = seen.lock().unwrap();
        *seen = (*seen).max(version);
        since = version;
    }
}

/// The whole change log from `since=0`, page by page: key-id → (version, revoked?) of its last
/// change, the final version and the epoch.
fn sync_from_zero(port: u16) -> (BTreeMap<String, (u64, bool)>, u64, String) {
    let mut state = BTreeMap::new();
    let mut since = 0;
    loop {
        let path = format!("/v1/keyset?since={since}&wait_ms=0&format=3");
        let (status, page) = exchange(port, "GET", &path, None, "").expect("sync answer");
        assert_eq!(status, 200, "{page}");
        let epoch = page["epoch"].as_str().unwrap().to_string();
        let version = page["version"].as_u64().unwrap();
        let mut entries: Vec<(u64, String, bool)> = Vec::new();
        for (list, revoked) in [("upserts", false), ("revocations", true)] {
            for entry in page[list].as_array().unwrap() {
                let v = entry["version"].as_u64().unwrap();
                assert!(
                    v > since && v <= version,
                    "entry {entry} outside page ({since}, {version}]"
                );
                entries.push((v, entry["key_id"].as_str().unwrap().to_string(), revoked));
            }
        }
        for entry in page["policies"].as_array().into_iter().flatten() {
            let v = entry["version"].as_u64().unwrap();
            assert!(v > since && v <= version, "policy {entry} outside the page");
            entries.push((
                v,
                format!("policy:{}", entry["org"].as_str().unwrap()),
                false,
            ));
        }
        entries.sort();
        for (v, key_id, revoked) in entries {
            state.insert(key_id, (v, revoked));
        }
        assert!(
            version >= since,
            "sync version went from {since} back to {version}"
        );
        let more = page["more"].as_bool().unwrap();
        since = version;
        if !more {
            return (state, version, epoch);
        }
    }
}

/// The live keys as `GET /v1/keys` lists them.
fn listed(port: u16, token: &str) -> BTreeSet<String> {
    let (status, body) = exchange(port, "GET", "/v1/keys", Some(token), "").expect("list answer");
    assert_eq!(status, 200, "{body}");
    body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn acknowledged_changes_survive_sigkill() {
    let started = Instant::now();
    let dir = scratch_dir("durability");
    let mut guardctl = Guardctl::start_in_own_group(&dir);
    let token = guardctl.admin_token();
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let highest_seen = Arc::new(Mutex::new(0u64));
    let (_, _, epoch) = sync_from_zero(guardctl.port);
    let mut version_after_restart = 0;

    for cycle in 0..CYCLES {
        let port = guardctl.port;
        let crashed = Arc::new(AtomicBool::new(false));
        let (created_before, revoked_before) = {
            let acked = acked.lock().unwrap();
            (acked.created.len(), acked.revoked.len())
        };
        let mut threads: Vec<_> = (0..WRITERS)
            .map(|id| {
                let (token, acked, crashed) = (token.clone(), acked.clone(), crashed.clone());
                thread::spawn(move || writer(port, token, id, acked, crashed))
            })
            .collect();
        let (seen, flag) = (highest_seen.clone(), crashed.clone());
        threads.push(thread::spawn(move || observer(port, seen, flag)));
        let (policy_token, policy_acked, flag) = (token.clone(), acked.clone(), crashed.clone());
        threads.push(thread::spawn(move || {
            policy_writer(port, policy_token, policy_acked, flag)
        }));

        // Let changes flow (at least a few acknowledged both ways, so the kill lands among
        // writes in flight), then kill at a point that differs from cycle to cycle.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let acked = acked.lock().unwrap();
            if acked.created.len() >= created_before + 20
                && acked.revoked.len() >= revoked_before + 5
            {
                break;
            }
            drop(acked);
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(Duration::from_millis(50 + 70 * cycle as u64));
        guardctl.crash();
        crashed.store(true, Ordering::SeqCst);
        for thread in threads {
            thread.join().unwrap();
        }

        guardctl.restart();
        let acked = acked.lock().unwrap();
        assert!(
            acked.unexpected.is_empty(),
            "unexpected answers: {:?}",
            acked.unexpected
        );
        assert!(
            acked.created.len() > created_before && acked.revoked.len() > revoked_before,
            "cycle {cycle}: no change was acknowledged before the kill"
        );

        let live = listed(guardctl.port, &token);
        let (synced, version, epoch_now) = sync_from_zero(guardctl.port);
        assert_eq!(
            epoch_now, epoch,
            "the database epoch changed across a crash"
        );
        for key_id in &acked.created {
            if acked.revoked.contains_key(key_id) || acked.revoke_unknown.contains(key_id) {
                continue;
            }
            assert!(
                live.contains(key_id),
                "cycle {cycle}: acknowledged key {key_id} lost from the list"
            );
            assert_eq!(
                synced.get(key_id).map(|(_, revoked)| *revoked),
                Some(false),
                "cycle {cycle}: acknowledged key {key_id} not served by the sync API"
            );
        }
        for (key_id, revoked_at) in &acked.revoked {
            assert!(
                !live.contains(key_id),
                "cycle {cycle}: revoked key {key_id} listed again"
            );
            assert_eq!(
                synced.get(key_id),
                Some(&(*revoked_at, true)),
                "cycle {cycle}: acknowledged revocation of {key_id} lost or changed"
            );
        }
        // The policy: the last acknowledged one, or a later one that committed unanswered; the
        // sync API serves it at the version the admin API shows.
        let (status, policy) =
            exchange(guardctl.port, "GET", "/v1/policies/demo", Some(&token), "")
                .expect("policy answer");
        assert_eq!(status, 200, "cycle {cycle}: {policy}");
        let stored_version = policy["version"].as_u64().unwrap();
        let stored: u64 = policy["policy"]["roles"][0]["tools"][0]
            .as_str()
            .and_then(|tool| tool.strip_prefix("tool_"))
            .and_then(|n| n.parse().ok())
            .unwrap();
        let (acked_n, acked_version) = acked.policy.expect("a policy was acknowledged");
        assert!(
            stored >= acked_n && stored <= acked.policy_sent && stored_version >= acked_version,
            "cycle {cycle}: policy {stored} at {stored_version} after the acknowledged \
             {acked_n} at {acked_version}"
        );
        assert_eq!(synced.get("policy:demo"), Some(&(stored_version, false)));

        // Whatever happened to the unanswered ones, the list and the sync API tell the same story.
        let synced_live: BTreeSet<String> = synced
            .iter()
            .filter(|(key, _)| !key.starts_with("policy:"))
            .filter(|(_, (_, revoked))| !revoked)
            .map(|(key_id, _)| key_id.clone())
            .collect();
        assert_eq!(
            live, synced_live,
            "cycle {cycle}: list and sync API disagree"
        );
        let highest_acked = acked.revoked.values().copied().max().unwrap_or(0);
        let highest_served = *highest_seen.lock().unwrap();
        assert!(
            version >= highest_acked && version >= highest_served && version >= version_after_restart,
            "cycle {cycle}: version {version} after restart is behind an acknowledged {highest_acked}, \
             a served {highest_served} or the previous restart's {version_after_restart}"
        );
        eprintln!(
            "cycle {cycle}: {} creates and {} revokes acknowledged so far ({} revokes unanswered); \
             version {version} after restart ({:.1} s)",
            acked.created.len(),
            acked.revoked.len(),
            acked.revoke_unknown.len(),
            started.elapsed().as_secs_f64()
        );
        version_after_restart = version;
    }
}
