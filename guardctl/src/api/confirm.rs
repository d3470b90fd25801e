//! Which proxies have applied which version: each sync request names its proxy and its `since`
//! (everything up to it is applied). A revoke or a policy change answers once every live proxy
//! confirms its version, or when the wait runs out, and says which did.
//!
//! A proxy is live while its long-poll is open and for [`GRACE`] after (it polls again at once
//! after an answer; a dead one's connection closes). Replicas share what they see through the
//! store ([`KeyStore::record_proxy`]); a single SQLite node needs only its own view.

use crate::store::KeyStore;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// How long a proxy counts as live after its last long-poll ended.
pub const GRACE: Duration = Duration::from_secs(15);
/// Proxies remembered per replica; past it, the least recently seen are forgotten.
const MAX_PROXIES: usize = 100_000;
/// How often a waiting change re-reads the other replicas' confirmations.
const SHARED_READ_EVERY: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy)]
struct Seen {
    version: u64,
    /// Unix milliseconds.
    live_until: u64,
}

#[derive(Default)]
pub struct ProxyRegistry {
    seen: Mutex<HashMap<String, Seen>>,
    confirmed: Notify,
    /// To the thread that shares records with the other replicas, in the order they were made:
    /// a poll's end (older version) must never land after the next poll's start.
    sharing: Option<Mutex<mpsc::Sender<(String, u64, u64)>>>,
}

/// The answer's account of who enforces a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Enforcement {
    /// Live proxies that have applied the change, by name.
    pub confirmed: Vec<String>,
    /// Live proxies that had not when the wait ran out (they fail closed by their
    /// `max_staleness_ms`, if set).
    pub unconfirmed: Vec<String>,
    pub waited_ms: u64,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl ProxyRegistry {
    /// A registry that also shares every record through `store`, one at a time, in order.
    pub fn sharing_through(store: Arc<dyn KeyStore>) -> ProxyRegistry {
        let (sender, records) = mpsc::channel::<(String, u64, u64)>();
        let spawned = std::thread::Builder::new()
            .name("guardctl-confirm".into())
            .spawn(move || {
                for (proxy, version, live_until) in records {
                    if let Err(err) = store.record_proxy(&proxy, version, live_until) {
                        tracing::debug!(%err, "cannot share a proxy's confirmation");
                    }
                }
            });
        ProxyRegistry {
            sharing: spawned.ok().map(|_| Mutex::new(sender)),
            ..ProxyRegistry::default()
        }
    }

    /// `proxy` has applied `version` and is live until `live_until` (Unix ms).
    pub fn record(&self, proxy: &str, version: u64, live_until: u64) {
        if let Some(sharing) = &self.sharing {
            let sender = sharing.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = sender.send((proxy.to_string(), version, live_until));
        }
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if seen.len() >= MAX_PROXIES && !seen.contains_key(proxy) {
                let now = unix_ms();
                seen.retain(|_, s| s.live_until > now);
                if seen.len() >= MAX_PROXIES {
                    return;
                }
            }
            seen.insert(
                proxy.to_string(),
                Seen {
                    version,
                    live_until,
                },
            );
        }
        self.confirmed.notify_waiters();
    }

    /// Live proxies and the version each has applied, this replica's view merged with `shared`
    /// (the other replicas', from the store).
    fn live(&self, shared: Vec<(String, u64, u64)>, now: u64) -> BTreeMap<String, u64> {
        let mut live = BTreeMap::new();
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let local = seen
            .iter()
            .map(|(p, s)| (p.clone(), s.version, s.live_until));
        for (proxy, version, live_until) in local.chain(shared) {
            if live_until > now {
                let entry = live.entry(proxy).or_insert(version);
                *entry = (*entry).max(version);
            }
        }
        live
    }

    /// Waits until every live proxy has applied `version`, or `timeout`.
    pub async fn await_version(
        &self,
        store: &Arc<dyn KeyStore>,
        version: u64,
        timeout: Duration,
    ) -> Enforcement {
        let started = tokio::time::Instant::now();
        loop {
            let woken = self.confirmed.notified();
            let shared = {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.live_proxies(unix_ms()))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default()
            };
            let live = self.live(shared, unix_ms());
            let (confirmed, unconfirmed): (Vec<_>, Vec<_>) = live
                .into_iter()
                .partition(|(_, applied)| *applied >= version);
            let elapsed = started.elapsed();
            if unconfirmed.is_empty() || elapsed >= timeout {
                return Enforcement {
                    confirmed: confirmed.into_iter().map(|(p, _)| p).collect(),
                    unconfirmed: unconfirmed.into_iter().map(|(p, _)| p).collect(),
                    waited_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                };
            }
            let left = timeout.saturating_sub(elapsed);
            let _ = tokio::time::timeout(left.min(SHARED_READ_EVERY), woken).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn only_live_proxies_count_and_the_newest_version_wins() {
        let registry = ProxyRegistry::default();
        let now = 1_000_000;
        registry.record("a", 5, now + 10);
        registry.record("gone", 1, now - 1);
        let shared = vec![
            ("a".to_string(), 7, now + 10),
            ("b".to_string(), 3, now + 1),
        ];
        let live = registry.live(shared, now);
        assert_eq!(live, BTreeMap::from([("a".into(), 7), ("b".into(), 3)]));
    }

    #[tokio::test]
    async fn a_change_waits_for_every_live_proxy_or_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn KeyStore> =
            Arc::new(crate::store::SqliteStore::open(&dir.path().join("g.db")).unwrap());
        let registry = Arc::new(ProxyRegistry::default());
        let far = unix_ms() + 60_000;
        registry.record("a", 4, far);
        registry.record("b", 4, far);
        let confirming = {
            let registry = registry.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                registry.record("a", 5, far);
                registry.record("b", 6, far);
            })
        };
        let done = registry
            .await_version(&store, 5, Duration::from_secs(5))
            .await;
        confirming.await.unwrap();
        assert_eq!(done.confirmed, ["a", "b"]);
        assert!(done.unconfirmed.is_empty());
        assert!(done.waited_ms < 5_000);

        let late = registry
            .await_version(&store, 9, Duration::from_millis(30))
            .await;
        assert_eq!(late.unconfirmed, ["a", "b"]);
        assert!(late.waited_ms >= 30);
    }
}
