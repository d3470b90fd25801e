//! The key-set sync API, `GET /v1/keyset?since=<version>&wait_ms=<ms>` (docs/protocol.md,
//! "Key-set sync API"): pages of the change log for the proxies, with long-polling.

use super::state::{ApiError, AppState, Peer};
use crate::store::{KeyStore, StoreError, StoreResult};
use crate::telemetry::metrics::SyncResult;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mcp_guard_protocol::policy::Policy;
use mcp_guard_protocol::sync::{
    is_valid_proxy_name, PolicyChange, Revocation, Sha256, SyncPage, Upsert, MAX_PROXY_LEN,
    PAGE_FORMAT,
};
use serde::Deserialize;
use std::time::{Duration, Instant};
use tracing::debug;

pub use mcp_guard_protocol::sync::MAX_WAIT_MS;

/// Reads the page of changes after `since` (at most `page_size` of them).
///
/// A `since` beyond the newest version means the proxy knows a database this one is not (a
/// restored backup): it gets the same answer as `since=0`, whose lower `version` tells it to
/// reload from scratch.
pub fn read_page(store: &dyn KeyStore, since: u64, page_size: usize) -> StoreResult<SyncPage> {
    let page_size = page_size.max(1);
    // One extra row tells whether anything lies beyond this page.
    let mut read = store.changes_since(since, page_size.saturating_add(1))?;
    if since > read.current_version {
        read = store.changes_since(0, page_size.saturating_add(1))?;
    }
    let more = read.changes.len() > page_size;
    read.changes.truncate(page_size);
    let version = read
        .changes
        .last()
        .map_or(read.current_version, |change| change.version);

    let mut upserts = Vec::new();
    let mut revocations = Vec::new();
    let mut policies = Vec::new();
    for change in read.changes {
        if let Some(document) = change.policy {
            let policy = match document {
                None => None,
                Some(json) => Some(Policy::decode(json.as_bytes()).ok_or_else(|| {
                    StoreError::Unusable(format!(
                        "policy of version {} does not decode",
                        change.version
                    ))
                })?),
            };
            policies.push(PolicyChange {
                org: change.key_id,
                version: change.version,
                policy,
            });
            continue;
        }
        match change.hash_row {
            Some(row) => upserts.push(Upsert {
                key_id: change.key_id,
                sha256: Sha256::from_hex(&row.sha256, true).ok_or_else(|| {
                    StoreError::Unusable(format!(
                        "hash row of version {} is not hex",
                        change.version
                    ))
                })?,
                org: row.org,
                role: row.role,
                user: row.user,
                // Stored as SQLite integers; a key never expires before 1970.
                expires_at: row.expires_at.map(|at| u64::try_from(at).unwrap_or(0)),
                version: change.version,
            }),
            // Revocations, and upserts of keys revoked since: their hash is gone for good.
            None => revocations.push(Revocation {
                key_id: change.key_id,
                version: change.version,
            }),
        }
    }
    Ok(SyncPage {
        epoch: store.epoch().to_string(),
        version,
        more,
        upserts,
        revocations,
        policies,
    })
}

/// The query string as sent; parsed by hand so that a bad value gets our JSON 400.
#[derive(Debug, Deserialize)]
pub struct KeysetQuery {
    since: Option<String>,
    wait_ms: Option<String>,
    format: Option<String>,
    proxy: Option<String>,
}

/// Validated parameters: `since` defaults to 0, `wait_ms` to 0 and is capped at 60 s, `format`
/// defaults to 1 (a reader from before formats) and a newer one than ours reads as ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeysetParams {
    pub since: u64,
    pub wait: Duration,
    pub format: u32,
}

pub fn parse_params(query: &KeysetQuery) -> Result<KeysetParams, String> {
    let number = |name: &str, value: &Option<String>| match value {
        None => Ok(0),
        Some(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text
            .parse::<u64>()
            .map_err(|_| format!("{name} is too large")),
        Some(_) => Err(format!("{name} must be a non-negative integer")),
    };
    let since = number("since", &query.since)?;
    let wait_ms = number("wait_ms", &query.wait_ms)?.min(MAX_WAIT_MS);
    let format = match &query.format {
        None => 1,
        Some(_) => number("format", &query.format)?.clamp(1, u64::from(PAGE_FORMAT)),
    };
    Ok(KeysetParams {
        since,
        wait: Duration::from_millis(wait_ms),
        format: u32::try_from(format).unwrap_or(PAGE_FORMAT),
    })
}

/// `GET /v1/keyset`: no admin token (it serves hashes only, never tokens).
pub async fn keyset(
    State(state): State<AppState>,
    Peer(peer): Peer,
    query: Result<Query<KeysetQuery>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    if let Some(peer) = peer {
        state.metrics().sync_client_seen(peer, started);
    }
    let peer = peer.map(|peer| peer.to_string());
    match answer(&state, query).await {
        Ok((page, result)) => {
            state.metrics().sync_request(result);
            debug!(
                peer,
                version = page.version,
                upserts = page.upserts.len(),
                revocations = page.revocations.len(),
                more = page.more,
                result = result.label(),
                elapsed_ms = started.elapsed().as_millis(),
                "sync answered"
            );
            no_store(Json(page))
        }
        Err(err) => {
            state.metrics().sync_request(SyncResult::Error);
            debug!(peer, error = ?err, "sync request failed");
            err.into_response()
        }
    }
}

/// The page for one sync request, and how to count it.
async fn answer(
    state: &AppState,
    query: Result<Query<KeysetQuery>, QueryRejection>,
) -> Result<(SyncPage, SyncResult), ApiError> {
    let Query(query) = query
        .map_err(|_| ApiError::bad_request("malformed query string (since, wait_ms, format)"))?;
    let params = parse_params(&query).map_err(ApiError::bad_request)?;
    let since = params.since;
    let proxy = match query.proxy {
        Some(proxy) if !is_valid_proxy_name(&proxy) => {
            return Err(ApiError::bad_request(format!(
                "proxy must be 1 to {MAX_PROXY_LEN} of A-Z a-z 0-9 . _ ~ -"
            )))
        }
        proxy => proxy,
    };

    // Subscribe before looking, so that a commit landing between the look and the wait
    // still wakes us.
    let mut versions = state.subscribe_versions();
    let known = *versions.borrow_and_update();
    // `since > known` is either a restored database (answer at once, below) or a proxy that
    // read a commit the moment before it was announced here: the database settles which.
    let current = if since <= known {
        known
    } else {
        state.read(|store| store.current_version()).await?
    };
    // A proxy confirms only versions of this history: one asking beyond it is about to reload.
    let _confirming = proxy
        .filter(|_| since <= current)
        .map(|proxy| state.proxy_polling(proxy, since, params.wait));
    if !params.wait.is_zero()
        && since == current
        && !wait_for_newer(state, &mut versions, since, params.wait).await
    {
        let page = SyncPage {
            epoch: state.epoch().to_string(),
            version: since,
            more: false,
            upserts: Vec::new(),
            revocations: Vec::new(),
            policies: Vec::new(),
        };
        return Ok((page, SyncResult::Timeout));
    }
    let page_size = state.sync_page_size();
    let page = state
        .read(move |store| read_page(store, since, page_size))
        .await?
        .for_format(params.format);
    let result =
        if page.upserts.is_empty() && page.revocations.is_empty() && page.policies.is_empty() {
            SyncResult::Empty
        } else {
            SyncResult::Changes
        };
    Ok((page, result))
}

/// Waits until a version above `since` is committed (true), or the wait runs out or the server
/// stops (false).
async fn wait_for_newer(
    state: &AppState,
    versions: &mut tokio::sync::watch::Receiver<u64>,
    since: u64,
    wait: Duration,
) -> bool {
    let mut stopped = state.long_polls_stopped();
    let _waiting = state.metrics().long_poll_started();
    tokio::select! {
        changed = versions.wait_for(|version| *version > since) => changed.is_ok(),
        _ = tokio::time::sleep(wait) => false,
        _ = stopped.wait_for(|stopped| *stopped) => false,
    }
}

fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::sqlite::tests::{new_key, temp_store, ADMIN};
    use crate::store::{Issuer, NewKey};

    fn query(since: Option<&str>, wait_ms: Option<&str>) -> KeysetQuery {
        KeysetQuery {
            since: since.map(str::to_string),
            wait_ms: wait_ms.map(str::to_string),
            format: None,
            proxy: None,
        }
    }

    #[test]
    fn params() {
        assert_eq!(
            parse_params(&query(None, None)),
            Ok(KeysetParams {
                since: 0,
                wait: Duration::ZERO,
                format: 1,
            })
        );
        let format = |text: &str| {
            parse_params(&KeysetQuery {
                format: Some(text.into()),
                ..query(None, None)
            })
            .map(|params| params.format)
        };
        assert_eq!(format("2"), Ok(2));
        assert_eq!(format("0"), Ok(1));
        assert_eq!(format("99"), Ok(PAGE_FORMAT));
        assert!(format("two").is_err() && format("").is_err());
        let parsed = parse_params(&query(Some("42"), Some("1500"))).unwrap();
        assert_eq!(parsed.since, 42);
        assert_eq!(parsed.wait, Duration::from_millis(1500));
        let capped = parse_params(&query(Some("0"), Some("999999999"))).unwrap();
        assert_eq!(capped.wait, Duration::from_millis(MAX_WAIT_MS));
        for (since, wait) in [
            (Some("-1"), None),
            (Some(""), None),
            (Some("+1"), None),
            (Some("1.5"), None),
            (Some("abc"), None),
            (Some("99999999999999999999999"), None),
            (None, Some("-5")),
            (None, Some("soon")),
        ] {
            assert!(
                parse_params(&query(since, wait)).is_err(),
                "{since:?} {wait:?}"
            );
        }
    }

    #[test]
    fn empty_database() {
        let (_dir, store) = temp_store();
        let page = read_page(&store, 0, 10).unwrap();
        assert_eq!(page.version, 0);
        assert!(!page.more);
        assert!(page.upserts.is_empty() && page.revocations.is_empty());
        assert_eq!(page.epoch, store.epoch());
    }

    #[test]
    fn versions_are_ordered_and_revoked_keys_never_leak_their_hash() {
        let (_dir, store) = temp_store();
        let a = store.create_key(&new_key("a"), &ADMIN).unwrap(); // v1
        let b = store
            .create_key(
                &NewKey {
                    issuer: Issuer::Service {
                        org: "acme".into(),
                        role: "reader".into(),
                    },
                    expires_at: Some(1_800_000_000),
                    ..new_key("b")
                },
                &ADMIN,
            )
            .unwrap(); // v2
        store.revoke_key(&a.info.key_id, &ADMIN).unwrap(); // v3

        let page = read_page(&store, 0, 10).unwrap();
        assert_eq!(page.version, 3);
        assert!(!page.more);
        assert_eq!(
            page.upserts,
            vec![Upsert {
                key_id: b.info.key_id.clone(),
                sha256: Sha256::from_hex(&b.token.sha256, true).unwrap(),
                org: "acme".into(),
                role: "reader".into(),
                user: None,
                expires_at: Some(1_800_000_000),
                version: 2,
            }]
        );
        // a's upsert (v1) comes out as a revocation, then its revoke (v3).
        assert_eq!(
            page.revocations,
            vec![
                Revocation {
                    key_id: a.info.key_id.clone(),
                    version: 1
                },
                Revocation {
                    key_id: a.info.key_id.clone(),
                    version: 3
                },
            ]
        );
        let json = serde_json::to_string(&page).unwrap();
        assert!(!json.contains(&a.token.sha256));

        // Incremental: only what came after.
        let tail = read_page(&store, 2, 10).unwrap();
        assert_eq!(tail.version, 3);
        assert!(tail.upserts.is_empty());
        assert_eq!(tail.revocations.len(), 1);

        // Up to date: nothing, version unchanged.
        let same = read_page(&store, 3, 10).unwrap();
        assert_eq!(same.version, 3);
        assert!(same.upserts.is_empty() && same.revocations.is_empty() && !same.more);
    }

    #[test]
    fn paging_with_more() {
        let (_dir, store) = temp_store();
        let created: Vec<_> = (0..7)
            .map(|i| {
                store
                    .create_key(&new_key(&format!("k{i}")), &ADMIN)
                    .unwrap()
            })
            .collect();
        store.revoke_key(&created[5].info.key_id, &ADMIN).unwrap(); // v8

        let mut since = 0;
        let mut pages = Vec::new();
        loop {
            let page = read_page(&store, since, 3).unwrap();
            since = page.version;
            let more = page.more;
            pages.push(page);
            if !more {
                break;
            }
        }
        let versions: Vec<u64> = pages.iter().map(|p| p.version).collect();
        assert_eq!(versions, vec![3, 6, 8]);
        assert_eq!(
            pages.iter().map(|p| p.more).collect::<Vec<_>>(),
            vec![true, true, false]
        );
        for page in &pages {
            let mut entry_versions: Vec<u64> = page
                .upserts
                .iter()
                .map(|u| u.version)
                .chain(page.revocations.iter().map(|r| r.version))
                .collect();
            entry_versions.sort_unstable();
            assert!(entry_versions.len() <= 3);
            assert_eq!(entry_versions.last().copied(), Some(page.version));
        }
        // Page 2 holds v4..v6; v6 is the upsert of the key revoked at v8: a revocation.
        assert_eq!(pages[1].upserts.len(), 2);
        assert_eq!(
            pages[1].revocations,
            vec![Revocation {
                key_id: created[5].info.key_id.clone(),
                version: 6
            }]
        );
        // Exactly full last page: no `more`.
        let exact = read_page(&store, 5, 3).unwrap();
        assert_eq!(exact.version, 8);
        assert!(!exact.more);
    }

    #[test]
    fn since_beyond_current_answers_as_a_fresh_load() {
        let (_dir, store) = temp_store();
        for i in 0..3 {
            store
                .create_key(&new_key(&format!("k{i}")), &ADMIN)
                .unwrap();
        }
        let fresh = read_page(&store, 0, 2).unwrap();
        let restored = read_page(&store, 1000, 2).unwrap();
        assert_eq!(restored, fresh);
        assert_eq!(restored.version, 2);
        assert!(restored.more);
    }
}
