//! guardctl replicas on PostgreSQL against the single SQLite node, in the same run: a throwaway
//! PostgreSQL (tools/postgres.sh), two replicas, three proxies (shipped config, one worker each,
//! whose guardctl cluster lists both replicas).
//! - revocations: 100 keys revoked one after another, alternately through each replica; for each,
//!   the time from sending the revoke to its answer (which waits until every proxy has applied it)
//!   and to the 401 at every proxy;
//! - failover: the replica holding a proxy's long-poll SIGKILLed, five times; the time until a
//!   change made through the other one is enforced; every acknowledged change checked after;
//! - writes: creates + revokes per second from two clients (one per replica, or both on the one
//!   node), with the three proxies confirming each revoke.

use std::path::Path;
use std::time::{Duration, Instant};

use mcp_guard_e2e::{
    accepted_by, percentile, postgres_tool, revoke_via_api, time_revocations, wait_until, Envoy,
    EnvoyOptions, Guardctl, IssuedKey, Request, Upstream, Value,
};
use serde_json::json;

pub const ID: &str = "ha_replicas";
const PROXIES: usize = 3;

/// The throwaway database server, stopped and removed when dropped.
struct Postgres {
    dir: String,
    url: String,
}

impl Postgres {
    fn start(dir: &Path) -> Postgres {
        let dir = dir.join("pg").to_str().unwrap().to_string();
        let url = postgres_tool("start", &dir);
        Postgres { dir, url }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        postgres_tool("stop", &self.dir);
    }
}

/// One control plane (one node, or two replicas) and three proxies syncing from it.
struct Plane {
    replicas: Vec<Guardctl>,
    _upstream: Upstream,
    proxies: Vec<Envoy>,
}

impl Plane {
    fn start(dir: &Path, replicas: Vec<Guardctl>) -> Plane {
        let upstream = Upstream::start(dir);
        let mut options = EnvoyOptions::new(upstream.port, replicas[0].port);
        options.guardctl_replica_port = replicas.get(1).map(|r| r.port);
        options.concurrency = 1;
        let proxies: Vec<Envoy> = (0..PROXIES).map(|_| Envoy::start(dir, &options)).collect();
        for proxy in &proxies {
            proxy.wait_for_keyset();
        }
        Plane {
            replicas,
            _upstream: upstream,
            proxies,
        }
    }

    fn ports(&self) -> Vec<u16> {
        self.proxies.iter().map(|p| p.port).collect()
    }

    fn live_keys(&self, count: usize) -> Vec<IssuedKey> {
        let keys: Vec<IssuedKey> = (0..count)
            .map(|i| self.replicas[i % self.replicas.len()].create_key("demo", "member", None))
            .collect();
        let ports = self.ports();
        wait_until("every key on every proxy", Duration::from_secs(30), || {
            ports
                .iter()
                .all(|&port| keys.iter().all(|k| accepted_by(port, &k.token)))
        });
        keys
    }

    /// Send-to-answer and send-to-401-at-every-proxy, in ms: p50, p99, max of each.
    fn revocations(&self, count: usize) -> Value {
        let keys = self.live_keys(count);
        let mut answered = Vec::new();
        let mut refused = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let through = &self.replicas[i % self.replicas.len()];
            for timing in time_revocations(through, &self.ports(), std::slice::from_ref(key)) {
                answered.push(timing.answered_after_send);
                refused.push(timing.refused_after_send);
            }
        }
        answered.sort();
        refused.sort();
        json!({ "revocations": count, "answer": stats(&answered), "refused": stats(&refused) })
    }

    /// Creates and revokes per second from two clients for `run`.
    fn writes_per_second(&self, run: Duration) -> f64 {
        let started = Instant::now();
        let counts: Vec<u64> = std::thread::scope(|scope| {
            let clients: Vec<_> = (0..2)
                .map(|i| {
                    let replica = &self.replicas[i % self.replicas.len()];
                    scope.spawn(move || {
                        let mut writes = 0;
                        while started.elapsed() < run {
                            let key = create_via_api(replica);
                            revoke_via_api(replica, &key);
                            writes += 2;
                        }
                        writes
                    })
                })
                .collect();
            clients.into_iter().map(|c| c.join().unwrap()).collect()
        });
        counts.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64()
    }
}

fn create_via_api(guardctl: &Guardctl) -> String {
    let body = r#"{"org":"demo","role":"member","name":"bench"}"#;
    let answer = Request::post_json("/v1/keys", body)
        .header(
            "authorization",
            &format!("Bearer {}", guardctl.admin_token()),
        )
        .send(guardctl.port);
    assert!(answer.status < 300, "{answer:?}");
    answer.json()["key_id"].as_str().unwrap().to_string()
}

fn stats(sorted: &[Duration]) -> Value {
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    json!({
        "p50_ms": ms(percentile(sorted, 0.5)),
        "p99_ms": ms(percentile(sorted, 0.99)),
        "max_ms": ms(percentile(sorted, 1.0)),
    })
}

/// SIGKILL the replica holding the (first) proxy's long-poll `rounds` times; seconds until a
/// change through the survivor is enforced, and whether every acknowledged key survived.
fn failover(plane: &mut Plane, rounds: usize) -> Value {
    let mut seconds = Vec::new();
    let mut acknowledged: Vec<IssuedKey> = Vec::new();
    let port = plane.proxies[0].port;
    // Only the first proxy is watched: stop the others so that the long-polls counted are its.
    plane.proxies.truncate(1);
    for _ in 0..rounds {
        acknowledged.push(plane.replicas[0].create_key("demo", "member", None));
        let mut holder = None;
        wait_until(
            "one replica to hold the long-poll",
            Duration::from_secs(10),
            || {
                holder = match (
                    plane.replicas[0].long_polls(),
                    plane.replicas[1].long_polls(),
                ) {
                    (Some(1), Some(0)) => Some(0),
                    (Some(0), Some(1)) => Some(1),
                    _ => None,
                };
                holder.is_some()
            },
        );
        let victim = holder.unwrap_or(0);
        plane.replicas[victim].crash();
        let killed = Instant::now();
        let after = plane.replicas[1 - victim].create_key("demo", "member", None);
        wait_until("the proxy on the survivor", Duration::from_secs(30), || {
            accepted_by(port, &after.token)
        });
        seconds.push(killed.elapsed());
        acknowledged.push(after);
        plane.replicas[victim].restart();
    }
    let lost = acknowledged
        .iter()
        .filter(|k| !accepted_by(port, &k.token))
        .count();
    seconds.sort();
    json!({
        "rounds": rounds,
        "p50_s": percentile(&seconds, 0.5).as_secs_f64(),
        "max_s": percentile(&seconds, 1.0).as_secs_f64(),
        "acknowledged": acknowledged.len(),
        "lost": lost,
    })
}

pub fn run(dir: &Path, quick: bool, only: Option<&[&str]>) -> Option<Value> {
    if only.is_some_and(|ids| !ids.contains(&ID)) {
        return None;
    }
    let (revocations, rounds, write_for) = if quick {
        (20, 2, Duration::from_secs(2))
    } else {
        (100, 5, Duration::from_secs(5))
    };
    let dir = dir.join("ha");
    std::fs::create_dir_all(&dir).unwrap();

    let single = Plane::start(&dir, vec![Guardctl::start(&dir)]);
    let single_revocations = single.revocations(revocations);
    let single_writes = single.writes_per_second(write_for);
    drop(single);

    let postgres = Postgres::start(&dir);
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let replicas = vec![
        Guardctl::replica(&dir, "replica-a", &postgres.url, &shared),
        Guardctl::replica(&dir, "replica-b", &postgres.url, &shared),
    ];
    let mut plane = Plane::start(&dir, replicas);
    let replicated_revocations = plane.revocations(revocations);
    let replicated_writes = plane.writes_per_second(write_for);
    let failover = failover(&mut plane, rounds);
    drop(plane);
    drop(postgres);

    let result = json!({
        "proxies": PROXIES,
        "single": { "revocations": single_revocations, "writes_per_s": single_writes },
        "replicas": { "revocations": replicated_revocations, "writes_per_s": replicated_writes },
        "failover": failover,
    });
    eprintln!("  ha: {result}");
    Some(result)
}

/// The BENCHMARKS.md section.
pub fn markdown(result: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let row = |what: &str, plane: &Value| {
        let (answer, refused) = (
            &plane["revocations"]["answer"],
            &plane["revocations"]["refused"],
        );
        format!(
            "| {what} | {:.1} / {:.1} | {:.1} / {:.1} | {:.0} |\n",
            f(&answer["p50_ms"]),
            f(&answer["p99_ms"]),
            f(&refused["p50_ms"]),
            f(&refused["p99_ms"]),
            f(&plane["writes_per_s"]),
        )
    };
    let p99 = f(&result["replicas"]["revocations"]["refused"]["p99_ms"]);
    let failover = &result["failover"];
    let max_s = f(&failover["max_s"]);
    let lost = failover["lost"].as_u64().unwrap_or(u64::MAX);
    format!(
        "## High availability\n\n\
         {} proxies (shipped config, one worker each) sync from one SQLite node, then from two \
         replicas on a local PostgreSQL 15, in the same run; {} keys revoked one after another \
         (alternately through each replica). A revoke answers once every proxy has applied it. \
         Writes: two clients doing create + revoke.\n\n\
         | control plane | revoke sent → answer, p50 / p99 ms | sent → 401 at every proxy, p50 / p99 ms | writes/s |\n\
         |---|---|---|---|\n{}{}\n\
         Goal: p99 to 401 through two replicas < 100 ms: {}.\n\n\
         Failover: the replica holding the long-poll SIGKILLed {} times; a change through the other \
         was enforced after p50 {:.2} s, max {:.2} s (goal < 5 s: {}); {} of {} acknowledged keys \
         lost.\n",
        result["proxies"],
        result["replicas"]["revocations"]["revocations"],
        row("one node (SQLite)", &result["single"]),
        row("two replicas (PostgreSQL)", &result["replicas"]),
        if p99 < 100.0 { "met" } else { "**missed**" },
        failover["rounds"],
        f(&failover["p50_s"]),
        max_s,
        if max_s < 5.0 { "met" } else { "**missed**" },
        lost,
        failover["acknowledged"],
    )
}
