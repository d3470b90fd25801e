//! `GET /metrics`: the server's counters in the Prometheus text exposition format 0.0.4,
//! written by hand (a dozen series do not need a metrics library).
//!
//! Unauthenticated like the sync API: it exposes counts only, never a key-id, token or hash.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A sync client counts in `guardctl_sync_clients` for this long after its last request.
pub const SYNC_CLIENT_WINDOW: Duration = Duration::from_secs(60);

/// How a key-set sync request was answered (the `result` label of `guardctl_sync_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncResult {
    /// The answer carried changes (upserts or revocations).
    Changes,
    /// Nothing new and no wait asked (`wait_ms=0`): answered at once, empty.
    Empty,
    /// A long-poll that ended without a change: its wait ran out or the server stopped.
    Timeout,
    /// 400 or 500.
    Error,
}

impl SyncResult {
    const ALL: [SyncResult; 4] = [
        SyncResult::Changes,
        SyncResult::Empty,
        SyncResult::Timeout,
        SyncResult::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SyncResult::Changes => "changes",
            SyncResult::Empty => "empty",
            SyncResult::Timeout => "timeout",
            SyncResult::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters shared by the handlers. Gauges that live elsewhere (live keys in the database, the
/// key-set version) are passed to [`Metrics::render`].
#[derive(Default)]
pub struct Metrics {
    keys_created: AtomicU64,
    keys_imported: AtomicU64,
    revocations: AtomicU64,
    sync_requests: [AtomicU64; 4],
    long_polls: AtomicU64,
    sync_clients: Mutex<SyncClients>,
    http_requests: Mutex<BTreeMap<(String, u16), u64>>,
}

/// Values read at scrape time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Live (not revoked) keys in the database; `None` if the database did not answer.
    pub keys: Option<u64>,
    pub keyset_version: u64,
    /// 1 while the server is ready (see `/readyz`), 0 once it is shutting down.
    pub ready: bool,
}

impl Metrics {
    pub fn key_created(&self) {
        self.keys_created.fetch_add(1, Ordering::Relaxed);
    }

    pub fn keys_imported(&self, count: u64) {
        self.keys_imported.fetch_add(count, Ordering::Relaxed);
    }

    pub fn key_revoked(&self) {
        self.revocations.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sync_request(&self, result: SyncResult) {
        self.sync_requests[result.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a waiting long-poll until the returned guard drops (answered or abandoned).
    pub fn long_poll_started(&self) -> LongPollGuard<'_> {
        self.long_polls.fetch_add(1, Ordering::Relaxed);
        LongPollGuard(self)
    }

    pub fn long_polls(&self) -> u64 {
        self.long_polls.load(Ordering::Relaxed)
    }

    /// Notes a sync request from the connection `peer`.
    pub fn sync_client_seen(&self, peer: SocketAddr, now: Instant) {
        if let Ok(mut clients) = self.sync_clients.lock() {
            clients.seen(peer, now);
        }
    }

    pub fn sync_clients(&self, now: Instant) -> u64 {
        self.sync_clients
            .lock()
            .map_or(0, |mut clients| clients.count(now))
    }

    pub fn http_request(&self, route: &str, code: u16) {
        if let Ok(mut requests) = self.http_requests.lock() {
            *requests.entry((route.to_string(), code)).or_insert(0) += 1;
        }
    }

    /// The whole exposition, `# HELP` and `# TYPE` lines included.
    pub fn render(&self, snapshot: Snapshot, now: Instant) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let plain = |value: u64| vec![(String::new(), value)];
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);

        metric(
            "guardctl_build_info",
            "gauge",
            "Always 1; the version label is the guardctl version.",
            &[(format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")), 1)],
        );
        metric(
            "guardctl_ready",
            "gauge",
            "1 while /readyz can answer 200, 0 once the server is shutting down.",
            &plain(u64::from(snapshot.ready)),
        );
        if let Some(keys) = snapshot.keys {
            metric(
                "guardctl_keys",
                "gauge",
                "Live (not revoked) keys in the database, expired ones included.",
                &plain(keys),
            );
        }
        metric(
            "guardctl_keyset_version",
            "gauge",
            "Newest committed key-set version (what an up-to-date proxy reports).",
            &plain(snapshot.keyset_version),
        );
        metric(
            "guardctl_keys_created_total",
            "counter",
            "Keys created through POST /v1/keys since the server started.",
            &plain(load(&self.keys_created)),
        );
        metric(
            "guardctl_keys_imported_total",
            "counter",
            "Hash rows imported through POST /v1/keys/import since the server started.",
            &plain(load(&self.keys_imported)),
        );
        metric(
            "guardctl_revocations_total",
            "counter",
            "Keys revoked since the server started.",
            &plain(load(&self.revocations)),
        );
        let sync: Vec<(String, u64)> = SyncResult::ALL
            .iter()
            .map(|result| {
                (
                    format!("{{result=\"{}\"}}", result.label()),
                    load(&self.sync_requests[result.index()]),
                )
            })
            .collect();
        metric(
            "guardctl_sync_requests_total",
            "counter",
            "Key-set sync answers by result: changes, empty (nothing new, no wait), timeout (a long-poll ended without a change), error.",
            &sync,
        );
        metric(
            "guardctl_long_polls",
            "gauge",
            "Sync requests waiting for a change right now.",
            &plain(self.long_polls()),
        );
        metric(
            "guardctl_sync_clients",
            "gauge",
            "Distinct client connections (peer address and port) that called /v1/keyset in the last 60 seconds.",
            &plain(self.sync_clients(now)),
        );
        let http: Vec<(String, u64)> = self
            .http_requests
            .lock()
            .map(|requests| {
                requests
                    .iter()
                    .map(|((route, code), count)| {
                        (
                            format!("{{route=\"{}\",code=\"{code}\"}}", escape_label(route)),
                            *count,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "guardctl_http_requests_total",
            "counter",
            "HTTP requests answered, by route pattern (\"other\" for unknown paths) and status code.",
            &http,
        );
        out
    }
}

/// Decrements `guardctl_long_polls` when dropped.
pub struct LongPollGuard<'a>(&'a Metrics);

impl Drop for LongPollGuard<'_> {
    fn drop(&mut self) {
        self.0.long_polls.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Last request time per client connection, pruned of entries older than the window.
#[derive(Default)]
struct SyncClients {
    last_seen: HashMap<SocketAddr, Instant>,
    last_pruned: Option<Instant>,
}

impl SyncClients {
    fn seen(&mut self, peer: SocketAddr, now: Instant) {
        self.last_seen.insert(peer, now);
        // Bounded memory without a scan per request: prune at most every few seconds.
        let due = self
            .last_pruned
            .is_none_or(|pruned| now.saturating_duration_since(pruned) >= Duration::from_secs(5));
        if due {
            self.prune(now);
        }
    }

    fn count(&mut self, now: Instant) -> u64 {
        self.prune(now);
        u64::try_from(self.last_seen.len()).unwrap_or(u64::MAX)
    }

    fn prune(&mut self, now: Instant) {
        self.last_seen
            .retain(|_, seen| now.saturating_duration_since(*seen) < SYNC_CLIENT_WINDOW);
        self.last_pruned = Some(now);
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            keys: Some(7),
            keyset_version: 42,
            ready: true,
        }
    }

    /// docs/guardctl.md lists exactly the metrics `/metrics` serves, with their types.
    #[test]
    fn the_operations_reference_lists_every_metric() {
        const DOC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/guardctl.md"));
        let documented: std::collections::BTreeSet<(String, String)> = DOC
            .lines()
            .filter(|line| line.starts_with("| `guardctl_"))
            .map(|line| {
                let cells: Vec<&str> = line.split(" | ").collect();
                let name = cells[0]
                    .trim_start_matches("| `")
                    .split(['`', '{'])
                    .next()
                    .unwrap();
                (name.to_string(), cells[1].trim().to_string())
            })
            .collect();
        let text = Metrics::default().render(snapshot(), Instant::now());
        let served: std::collections::BTreeSet<(String, String)> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_once(' '))
            .map(|(name, kind)| (name.to_string(), kind.to_string()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn renders_every_series_with_help_and_type() {
        let metrics = Metrics::default();
        let now = Instant::now();
        metrics.key_created();
        metrics.key_created();
        metrics.keys_imported(500);
        metrics.key_revoked();
        metrics.sync_request(SyncResult::Changes);
        metrics.sync_request(SyncResult::Timeout);
        metrics.sync_request(SyncResult::Timeout);
        metrics.http_request("/v1/keys", 201);
        metrics.http_request("/v1/keys", 201);
        metrics.http_request("other", 404);
        let text = metrics.render(snapshot(), now);

        assert_eq!(sample(&text, "guardctl_keys"), Some(7));
        assert_eq!(sample(&text, "guardctl_keyset_version"), Some(42));
        assert_eq!(sample(&text, "guardctl_keys_created_total"), Some(2));
        assert_eq!(sample(&text, "guardctl_keys_imported_total"), Some(500));
        assert_eq!(sample(&text, "guardctl_revocations_total"), Some(1));
        assert_eq!(sample(&text, "guardctl_ready"), Some(1));
        assert_eq!(
            sample(&text, "guardctl_sync_requests_total{result=\"changes\"}"),
            Some(1)
        );
        assert_eq!(
            sample(&text, "guardctl_sync_requests_total{result=\"timeout\"}"),
            Some(2)
        );
        assert_eq!(
            sample(&text, "guardctl_sync_requests_total{result=\"error\"}"),
            Some(0)
        );
        assert_eq!(
            sample(
                &text,
                "guardctl_http_requests_total{route=\"/v1/keys\",code=\"201\"}"
            ),
            Some(2)
        );
        assert_eq!(
            sample(
                &text,
                "guardctl_http_requests_total{route=\"other\",code=\"404\"}"
            ),
            Some(1)
        );
        // Every sample belongs to a family announced by HELP and TYPE just before it.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(kind == "gauge" || kind == "counter", "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                family = name.to_string();
            } else if !line.starts_with("# HELP ") {
                assert!(line.starts_with(&family), "{line} outside {family}");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn keys_gauge_is_left_out_when_the_database_does_not_answer() {
        let text = Metrics::default().render(
            Snapshot {
                keys: None,
                ..snapshot()
            },
            Instant::now(),
        );
        assert_eq!(sample(&text, "guardctl_keys"), None);
        assert_eq!(sample(&text, "guardctl_keyset_version"), Some(42));
    }

    #[test]
    fn long_polls_count_while_waiting() {
        let metrics = Metrics::default();
        let first = metrics.long_poll_started();
        let second = metrics.long_poll_started();
        assert_eq!(metrics.long_polls(), 2);
        drop(first);
        assert_eq!(metrics.long_polls(), 1);
        drop(second);
        assert_eq!(metrics.long_polls(), 0);
    }

    #[test]
    fn sync_clients_are_connections_seen_in_the_last_minute() {
        let metrics = Metrics::default();
        let start = Instant::now();
        let a: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:40001".parse().unwrap();
        let c: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        metrics.sync_client_seen(a, start);
        metrics.sync_client_seen(b, start);
        metrics.sync_client_seen(a, start + Duration::from_secs(30));
        assert_eq!(metrics.sync_clients(start + Duration::from_secs(31)), 2);
        metrics.sync_client_seen(c, start + Duration::from_secs(50));
        assert_eq!(metrics.sync_clients(start + Duration::from_secs(50)), 3);
        // b was last seen at 0 s, a at 30 s, c at 50 s.
        assert_eq!(metrics.sync_clients(start + Duration::from_secs(61)), 2);
        assert_eq!(metrics.sync_clients(start + Duration::from_secs(95)), 1);
        assert_eq!(metrics.sync_clients(start + Duration::from_secs(200)), 0);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
