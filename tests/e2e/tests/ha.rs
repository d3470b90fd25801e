//! guardctl replicas on a real PostgreSQL behind the real Envoy and the shipped config, whose
//! guardctl cluster lists both replicas (`make test-postgres`; ignored elsewhere, since it needs
//! `GUARDCTL_TEST_POSTGRES` and `GUARDCTL_TEST_POSTGRES_DIR`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mcp_guard_e2e::{
    accepted_by, native_bin, percentile, port_outside_ephemeral_range, postgres_tool,
    revoke_and_check_enforced, run_printed_curl, scratch_dir, start_stack_script, time_revocations,
    wait_until, wait_until_allowed_on, Envoy, EnvoyOptions, Guardctl, IssuedKey, Request, Upstream,
    INITIALIZE,
};

/// One test at a time: one of them stops the database server that all of them use.
static SERIAL: Mutex<()> = Mutex::new(());

/// What the filter logs when it throws its key set away and loads it whole.
const FULL_RELOAD: &str = "reloading the whole key set";

struct HaStack {
    _serial: MutexGuard<'static, ()>,
    a: Guardctl,
    b: Guardctl,
    _upstream: Upstream,
    envoy: Envoy,
    /// More proxies, when asked for: all of them sync from both replicas.
    more: Vec<Envoy>,
}

/// A database of its own on the test server; its URL.
fn database_named(test: &str) -> String {
    let server = std::env::var("GUARDCTL_TEST_POSTGRES").expect("GUARDCTL_TEST_POSTGRES");
    let name = format!("ha_{test}_{}", std::process::id());
    let mut admin = postgres::Client::connect(&server, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    server.replacen("/guard", &format!("/{name}"), 1)
}

/// Two replicas on one database (sharing one admin token file, as a Secret would give them), the
/// demo upstream, and one Envoy whose guardctl cluster has both.
fn ha_stack(test: &str) -> HaStack {
    ha_stack_with_proxies(test, 1)
}

fn ha_stack_with_proxies(test: &str, proxies: usize) -> HaStack {
    let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let db = database_named(test);
    let dir = scratch_dir(test);
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let a = Guardctl::replica(&dir, "replica-a", &db, &shared);
    let b = Guardctl::replica(&dir, "replica-b", &db, &shared);
    let upstream = Upstream::start(&dir);
    let mut options = EnvoyOptions::new(upstream.port, a.port);
    options.guardctl_replica_port = Some(b.port);
    options.concurrency = 1;
    let mut all: Vec<Envoy> = (0..proxies).map(|_| Envoy::start(&dir, &options)).collect();
    for envoy in &all {
        envoy.wait_for_keyset();
    }
    let envoy = all.remove(0);
    HaStack {
        _serial: serial,
        a,
        b,
        _upstream: upstream,
        envoy,
        more: all,
    }
}

fn ready(replica: &Guardctl) -> u16 {
    Request::get("/readyz").send(replica.port).status
}

fn postgres(action: &str) {
    let dir = std::env::var("GUARDCTL_TEST_POSTGRES_DIR").expect("GUARDCTL_TEST_POSTGRES_DIR");
    postgres_tool(action, &dir);
}

fn refused(port: u16, token: &str) -> bool {
    Request::get("/not-mcp").bearer(token).send(port).status == 401
}

fn full_reloads(envoy: &Envoy) -> usize {
    envoy.process.log_text().matches(FULL_RELOAD).count()
}

#[test]
#[ignore = "needs GUARDCTL_TEST_POSTGRES: run by make test-postgres"]
fn a_key_created_or_revoked_through_either_replica_reaches_the_proxy() {
    let stack = ha_stack("either_replica");
    let through_a = stack.a.create_key("demo", "member", None);
    let through_b = stack.b.create_key("demo", "member", None);
    wait_until_allowed_on(stack.envoy.port, &through_a.token);
    wait_until_allowed_on(stack.envoy.port, &through_b.token);

    // Keys made through A, revoked through B (and the other way round): the proxy long-polls
    // whichever replica Envoy picks, so both directions cross replicas.
    let keys: Vec<IssuedKey> = (0..20)
        .map(|_| stack.a.create_key("demo", "member", None))
        .collect();
    wait_until("every key on the proxy", Duration::from_secs(10), || {
        keys.iter().all(|k| accepted_by(stack.envoy.port, &k.token))
    });
    let (first, second) = keys.split_at(10);
    let mut latencies: Vec<Duration> = time_revocations(&stack.b, &[stack.envoy.port], first)
        .iter()
        .chain(&time_revocations(&stack.a, &[stack.envoy.port], second))
        .map(|t| t.refused_after_send)
        .collect();
    latencies.sort();
    println!(
        "revoke-to-401 through either of two replicas, {} revocations: p50 {:?} max {:?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 1.0)
    );
    assert!(accepted_by(stack.envoy.port, &through_a.token));
    assert_eq!(
        full_reloads(&stack.envoy),
        0,
        "a proxy reloaded its key set"
    );
}

/// Acknowledged means enforced across replicas: three proxies long-poll whichever replica Envoy
/// picks, and a revoke through either answers only once all three have applied it (their
/// confirmations meet in the database). Revoke-to-answer p50/p99 printed.
#[test]
#[ignore = "needs GUARDCTL_TEST_POSTGRES: run by make test-postgres"]
fn a_revoke_through_either_replica_answers_once_every_proxy_enforces_it() {
    let stack = ha_stack_with_proxies("confirm", 3);
    let ports: Vec<u16> = std::iter::once(&stack.envoy)
        .chain(&stack.more)
        .map(|e| e.port)
        .collect();
    let keys: Vec<IssuedKey> = (0..40)
        .map(|_| stack.a.create_key("demo", "member", None))
        .collect();
    wait_until("every key on every proxy", Duration::from_secs(10), || {
        ports
            .iter()
            .all(|&port| keys.iter().all(|k| accepted_by(port, &k.token)))
    });
    let replicas = [&stack.a, &stack.b];
    let answered = revoke_and_check_enforced(|i| replicas[i % 2], &ports, &keys);
    println!(
        "revoke-to-answer through two replicas, {} revocations, 3 proxies, each enforced before \
         its answer: p50 {:?} p99 {:?} max {:?}",
        answered.len(),
        percentile(&answered, 0.5),
        percentile(&answered, 0.99),
        percentile(&answered, 1.0)
    );
}

/// SIGKILL the replica holding the proxy's long-poll, twice (one replica, then the other): each
/// time the proxy resumes on the survivor from its version, with no full reload, and every change
/// acknowledged before the kill still holds.
#[test]
#[ignore = "needs GUARDCTL_TEST_POSTGRES: run by make test-postgres"]
fn the_proxy_resumes_on_the_other_replica_when_its_replica_is_killed() {
    let mut stack = ha_stack("failover");
    let mut acknowledged: Vec<IssuedKey> = Vec::new();
    let mut revoked: Vec<IssuedKey> = Vec::new();
    for round in 0..2 {
        let key = stack.a.create_key("demo", "member", None);
        let gone = stack.b.create_key("demo", "member", None);
        stack.a.revoke(&gone.key_id);
        acknowledged.push(key);
        revoked.push(gone);
        wait_until_allowed_on(stack.envoy.port, &acknowledged[round].token);

        let mut holder = None;
        wait_until(
            "one replica to hold the long-poll",
            Duration::from_secs(10),
            || {
                holder = match (stack.a.long_polls(), stack.b.long_polls()) {
                    (Some(1), Some(0)) => Some(true),
                    (Some(0), Some(1)) => Some(false),
                    _ => None,
                };
                holder.is_some()
            },
        );
        let (victim, survivor) = if holder == Some(true) {
            (&mut stack.a, &mut stack.b)
        } else {
            (&mut stack.b, &mut stack.a)
        };
        victim.crash();
        let killed = Instant::now();
        let after = survivor.create_key("demo", "member", None);
        wait_until(
            "the proxy to sync from the survivor",
            Duration::from_secs(15),
            || accepted_by(stack.envoy.port, &after.token),
        );
        println!(
            "round {round}: long-poll replica SIGKILLed; a change through the other replica was \
             enforced {:?} later",
            killed.elapsed()
        );
        acknowledged.push(after);
        victim.restart();
        wait_until(
            "the restarted replica to be ready",
            Duration::from_secs(10),
            || ready(victim) == 200,
        );
    }
    for key in &acknowledged {
        assert!(
            accepted_by(stack.envoy.port, &key.token),
            "lost key {}",
            key.key_id
        );
    }
    for key in &revoked {
        assert!(
            refused(stack.envoy.port, &key.token),
            "revived key {}",
            key.key_id
        );
    }
    assert_eq!(
        full_reloads(&stack.envoy),
        0,
        "a proxy reloaded its key set"
    );
}

/// The database stops under load and starts again. Meanwhile the proxy keeps serving its
/// last-known set (every request with a live key answered, a revoked key never accepted),
/// the replicas turn unready and refuse writes; after it, they reconnect and a revoke reaches
/// the proxy again.
#[test]
#[ignore = "needs GUARDCTL_TEST_POSTGRES and GUARDCTL_TEST_POSTGRES_DIR: run by make test-postgres"]
fn the_proxy_serves_its_last_known_set_while_the_database_restarts() {
    let stack = ha_stack("db_restart");
    let live = stack.a.create_key("demo", "member", None);
    let gone = stack.a.create_key("demo", "member", None);
    stack.b.revoke(&gone.key_id);
    wait_until_allowed_on(stack.envoy.port, &live.token);
    wait_until("the revoke on the proxy", Duration::from_secs(10), || {
        refused(stack.envoy.port, &gone.token)
    });

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let port = stack.envoy.port;
    let load = {
        let (stop, served, live, gone) = (stop.clone(), served.clone(), live.clone(), gone.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let answer = Request::post_json("/api/mcp", INITIALIZE)
                    .bearer(&live.token)
                    .send(port);
                if answer.status != 200 {
                    failures.push((sent, format!("live key got {}", answer.status)));
                }
                if !refused(port, &gone.token) {
                    failures.push((sent, "revoked key accepted".to_string()));
                }
                served.fetch_add(1, Ordering::Relaxed);
                // 25 a second: under the shipped per-key rate limit (50/s).
                std::thread::sleep(Duration::from_millis(40));
            }
            failures
        })
    };

    postgres("pause");
    wait_until("both replicas unready", Duration::from_secs(15), || {
        ready(&stack.a) == 503 && ready(&stack.b) == 503
    });
    let refused_write = stack.a.cli(&[
        "keys", "create", "--org", "demo", "--role", "member", "--name", "down",
    ]);
    assert!(
        !refused_write.status.success(),
        "a write acknowledged without a database"
    );
    std::thread::sleep(Duration::from_secs(2));
    postgres("resume");
    wait_until("both replicas ready again", Duration::from_secs(15), || {
        ready(&stack.a) == 200 && ready(&stack.b) == 200
    });
    let revoke_sent = Instant::now();
    stack.a.revoke(&live.key_id);
    let revoked_at = Instant::now();
    // The proxy's sync loop backs off while guardctl is unreachable (up to 10 s between tries).
    wait_until(
        "the revoke after the restart",
        Duration::from_secs(20),
        || refused(port, &live.token),
    );
    println!(
        "database restarted: a revoke after it was enforced {:?} after its answer",
        revoked_at.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    let failures = load.join().unwrap();
    // The live key is refused once revoked: only what was sent before the revoke counts.
    let unexpected: Vec<&String> = failures
        .iter()
        .filter(|(sent, what)| *sent < revoke_sent || what.as_str() != "live key got 401")
        .map(|(_, what)| what)
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    assert!(served.load(Ordering::Relaxed) > 10, "the load never ran");
    assert_eq!(
        full_reloads(&stack.envoy),
        0,
        "a proxy reloaded its key set"
    );
}

/// `make run-ha`'s stack: two replicas on a local PostgreSQL behind the shipped Envoy config. The
/// printed curl line answers, a key made through the second replica works through Envoy, and
/// Ctrl-C stops every component and removes the database.
#[test]
#[ignore = "needs PostgreSQL (Debian's): run by make test-postgres"]
fn make_run_ha_serves_keys_from_either_replica_and_stops_on_ctrl_c() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    const PORTS: [u16; 5] = [10000, 9901, 8081, 8082, 8000];
    let open = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    for port in PORTS {
        assert!(
            !open(port),
            "port {port} is busy: stop `make run-ha` before `make test`"
        );
    }
    let dir = scratch_dir("make-run-ha");
    let data = dir.join("data");
    let mut stack = start_stack_script(&dir, &data, true);
    let message = run_printed_curl(&stack.log_text());
    assert_eq!(
        message["result"]["serverInfo"]["name"], "mcp-demo-server",
        "{message}"
    );

    let created = std::process::Command::new(native_bin("guardctl"))
        .args([
            "keys", "create", "--org", "demo", "--role", "member", "--name", "b", "--json",
        ])
        .env("GUARDCTL_SERVER", "http://127.0.0.1:8082")
        .env("GUARDCTL_ADMIN_TOKEN_FILE", data.join("admin-token"))
        .env_remove("GUARDCTL_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    wait_until_allowed_on(10000, key["token"].as_str().unwrap());

    stack.signal_group(libc::SIGINT);
    wait_until("every component to stop", Duration::from_secs(20), || {
        !stack.is_running() && PORTS.iter().all(|p| !open(*p))
    });
    assert!(
        !data.join("pg").exists(),
        "the throwaway database was left behind"
    );
}

/// An installation on one SQLite node moves to PostgreSQL with `guardctl db copy`: the proxy,
/// whose guardctl cluster already lists the replica's address, reloads the copy whole once (new
/// epoch), and every key, revocation, user role and policy holds as before.
#[test]
#[ignore = "needs GUARDCTL_TEST_POSTGRES: run by make test-postgres"]
fn after_db_copy_the_proxy_reloads_the_copy_and_enforces_the_same_keys_and_policy() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = scratch_dir("db_copy");
    let mut single = Guardctl::start(&dir);
    let upstream = Upstream::start(&dir);
    let replica_port = port_outside_ephemeral_range();
    let mut options = EnvoyOptions::new(upstream.port, single.port);
    options.guardctl_replica_port = Some(replica_port);
    let envoy = Envoy::start(&dir, &options);
    envoy.wait_for_keyset();

    single.ok(&["users", "add", "ana", "--org", "demo", "--role", "viewer"]);
    let viewer = single.create_user_key("ana");
    let service = single.create_key("demo", "member", None);
    let gone = single.create_key("demo", "member", None);
    single.revoke(&gone.key_id);
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "roles:\n  viewer:\n    tools: [echo]\n  member:\n    tools: [\"*\"]\n",
    )
    .unwrap();
    single.ok(&[
        "policy",
        "set",
        "--org",
        "demo",
        "--file",
        policy.to_str().unwrap(),
    ]);
    wait_until_allowed_on(envoy.port, &viewer.token);
    wait_until_allowed_on(envoy.port, &service.token);
    let call = |token: &str, tool: &str| {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
        );
        Request::post_json("/api/mcp-json", &body)
            .bearer(token)
            .send(envoy.port)
            .status
    };
    assert_eq!(
        call(&viewer.token, "whoami"),
        403,
        "the policy before the copy"
    );

    single.stop();
    let url = database_named("db_copy");
    let sqlite = single.data_dir.join("guard.db");
    let copy = std::process::Command::new(native_bin("guardctl"))
        .args([
            "db",
            "copy",
            "--from",
            sqlite.to_str().unwrap(),
            "--to",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    let replica = Guardctl::replica_on_port(&dir, "replica", &url, &single.data_dir, replica_port);

    // A key made on the replica reaches the proxy: it has switched to the copy.
    let after = replica.create_key("demo", "member", None);
    wait_until_allowed_on(envoy.port, &after.token);
    assert_eq!(full_reloads(&envoy), 1, "one reload: the copy's new epoch");
    assert!(accepted_by(envoy.port, &viewer.token));
    assert!(accepted_by(envoy.port, &service.token));
    assert!(refused(envoy.port, &gone.token), "a revoked key came back");
    assert_eq!(
        call(&viewer.token, "whoami"),
        403,
        "the policy after the copy"
    );
    assert_ne!(call(&service.token, "whoami"), 403);
    replica.revoke(&service.key_id);
    wait_until("a revoke on the copy", Duration::from_secs(10), || {
        refused(envoy.port, &service.token)
    });
}
