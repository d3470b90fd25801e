//! The proxy side of guardctl's key-set sync protocol (docs/protocol.md): parse one page and apply
//! it to shared data. Pure logic over [`SharedStore`]; the root context only moves bytes.

use mcp_guard_protocol::sync::SyncPage;

use super::policy;
use super::record::{Entry, KeyRecord, VersionedEntry};
use super::state::{Cursor, ServingState};
use super::store::{Keys, SharedStore, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncError {
    /// The body is not a valid page (`mcp_guard_protocol::sync`: shape, field rules, versions).
    BadPage,
    Store(StoreError),
}

impl From<StoreError> for SyncError {
    fn from(e: StoreError) -> Self {
        SyncError::Store(e)
    }
}

impl core::fmt::Display for SyncError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SyncError::BadPage => f.write_str("invalid key-set page"),
            SyncError::Store(StoreError::CasMismatch) => f.write_str("shared data contention"),
            SyncError::Store(StoreError::Host) => f.write_str("shared data unavailable"),
        }
    }
}

/// What the sync loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Page applied. `caught_up` is false while more pages wait (ask again at once).
    Applied { caught_up: bool },
    /// The control plane has another database, or went back in time: reload everything from
    /// version 0 into a fresh generation. Ask again at once.
    Reload,
    /// Another worker moved the cursor while this answer was in flight; nothing applied.
    Stale,
}

/// Decodes the answer to `?since=<asked_since>` with the protocol's rules.
pub fn parse_page(body: &[u8], asked_since: u64) -> Result<SyncPage, SyncError> {
    SyncPage::decode(body, asked_since).map_err(|_| SyncError::BadPage)
}

/// The version to ask for next.
pub fn next_since(store: &impl SharedStore, keys: &Keys) -> Result<u64, StoreError> {
    Ok(Cursor::read(store, keys.cursor())?.0.version)
}

/// Applies one page that answered `?since=<asked_since>`.
pub fn apply_page(
    store: &impl SharedStore,
    keys: &Keys,
    asked_since: u64,
    page: &SyncPage,
    now_ms: u64,
) -> Result<Outcome, SyncError> {
    let (mut cursor, cursor_cas) = Cursor::read(store, keys.cursor())?;
    if cursor.version != asked_since {
        return Ok(Outcome::Stale);
    }
    let (serving, _) = ServingState::read(store, keys.state())?;

    let first_load = cursor.generation == 0;
    let applied_epoch = (!first_load).then_some(cursor.epoch.as_str());
    if page.starts_another_history(asked_since, applied_epoch) {
        let fresh = Cursor {
            generation: cursor.generation.max(serving.generation).saturating_add(1),
            version: 0,
            epoch: page.epoch.clone(),
        };
        return match store.set(keys.cursor(), fresh.encode().as_bytes(), cursor_cas) {
            Ok(()) => Ok(Outcome::Reload),
            Err(StoreError::CasMismatch) => Ok(Outcome::Stale),
            Err(e) => Err(e.into()),
        };
    }
    if first_load {
        cursor.generation = serving.generation.saturating_add(1);
        cursor.epoch = page.epoch.clone();
    }

    // Policies first: a worker that sees a key of this page also sees the policies up to it.
    for change in &page.policies {
        let entry = policy::encode_entry(change.version, change.policy.as_ref());
        let key = keys.policy(cursor.generation, &change.org);
        write_if_newer(store, &key, change.version, &entry)?;
    }
    let entries = validated_entries(page);
    for (key_id, entry) in &entries {
        let key = keys.key(cursor.generation, key_id);
        write_if_newer(store, &key, entry.version, &entry.encode())?;
    }

    cursor.version = page.version;
    match store.set(keys.cursor(), cursor.encode().as_bytes(), cursor_cas) {
        Ok(()) => {}
        // The entries we wrote are versioned, so losing this race leaves nothing inconsistent.
        Err(StoreError::CasMismatch) => return Ok(Outcome::Stale),
        Err(e) => return Err(e.into()),
    }

    let caught_up = !page.more;
    update_serving_state(store, keys, &cursor, caught_up, now_ms)?;
    Ok(Outcome::Applied { caught_up })
}

/// The page's entries (already checked by the decoder), oldest change first.
fn validated_entries(page: &SyncPage) -> Vec<(&str, VersionedEntry)> {
    let upserts = page.upserts.iter().map(|upsert| {
        let record = KeyRecord {
            sha256: upsert.sha256.0,
            expires_at: upsert.expires_at,
            org: upsert.org.clone(),
            role: upsert.role.clone(),
            user: upsert.user.clone(),
        };
        let entry = VersionedEntry {
            version: upsert.version,
            entry: Entry::Active(record),
        };
        (upsert.key_id.as_str(), entry)
    });
    let revocations = page.revocations.iter().map(|revocation| {
        let entry = VersionedEntry {
            version: revocation.version,
            entry: Entry::Revoked,
        };
        (revocation.key_id.as_str(), entry)
    });
    let mut entries: Vec<_> = upserts.chain(revocations).collect();
    entries.sort_by_key(|(_, entry)| entry.version);
    entries
}

/// Writes `encoded` (a key or policy entry of `version`) unless the stored entry comes from the
/// same or a newer change: a stale page can never revive a revoked key or an older policy.
fn write_if_newer(
    store: &impl SharedStore,
    key: &str,
    version: u64,
    encoded: &[u8],
) -> Result<(), StoreError> {
    for _ in 0..16 {
        let (current, cas) = store.get(key)?;
        // Both kinds of entry start with a kind byte and the version.
        if let Some(stored) = current.and_then(|v| VersionedEntry::decode_version(&v)) {
            if stored >= version {
                return Ok(());
            }
        }
        match store.set(key, encoded, cas) {
            Ok(()) => return Ok(()),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

fn update_serving_state(
    store: &impl SharedStore,
    keys: &Keys,
    cursor: &Cursor,
    caught_up: bool,
    now_ms: u64,
) -> Result<(), StoreError> {
    for _ in 0..16 {
        let (serving, cas) = ServingState::read(store, keys.state())?;
        let next = if serving.generation == cursor.generation || caught_up {
            // Same generation: move forward. New generation complete: switch requests to it.
            ServingState {
                generation: cursor.generation,
                version: cursor.version,
                synced_at_ms: now_ms,
            }
        } else {
            // A reload is still filling the next generation; keep serving the current one.
            return Ok(());
        };
        match store.set(keys.state(), next.encode().as_bytes(), cas) {
            Ok(()) => return Ok(()),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyset::store::MemoryStore;
    use crate::keyset::{lookup, Lookup};

    const HASH: &str = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4";

    fn upsert(id: &str, version: u64) -> String {
        format!(
            r#"{{"key_id":"{id}","sha256":"{HASH}","org":"demo","role":"admin","expires_at":null,"version":{version}}}"#
        )
    }
    fn revoke(id: &str, version: u64) -> String {
        format!(r#"{{"key_id":"{id}","version":{version}}}"#)
    }
    fn body(epoch: &str, version: u64, more: bool, ups: &[String], revs: &[String]) -> String {
        format!(
            r#"{{"epoch":"{epoch}","version":{version},"more":{more},"upserts":[{}],"revocations":[{}]}}"#,
            ups.join(","),
            revs.join(",")
        )
    }
    /// A page as the decoder gives it; the tests of the apply step send it at any `since`, so
    /// it is decoded with the widest one (every entry in `(0, version]`).
    fn page(epoch: &str, version: u64, more: bool, ups: &[String], revs: &[String]) -> SyncPage {
        SyncPage::decode(body(epoch, version, more, ups, revs).as_bytes(), 0).unwrap()
    }
    fn sync(store: &MemoryStore, keys: &Keys, p: &SyncPage) -> Outcome {
        let since = next_since(store, keys).unwrap();
        apply_page(store, keys, since, p, 1_000).unwrap()
    }

    #[test]
    fn not_loaded_until_the_first_complete_page() {
        let store = MemoryStore::default();
        let keys = Keys::new("guardctl");
        assert_eq!(
            lookup(&store, &keys, "aaaaaaaa").unwrap(),
            Lookup::NotLoaded
        );
        let first = page("e1", 1, true, &[upsert("aaaaaaaa", 1)], &[]);
        assert_eq!(
            sync(&store, &keys, &first),
            Outcome::Applied { caught_up: false }
        );
        assert_eq!(
            lookup(&store, &keys, "aaaaaaaa").unwrap(),
            Lookup::NotLoaded
        );
        let last = page("e1", 2, false, &[upsert("bbbbbbbb", 2)], &[]);
        assert_eq!(
            sync(&store, &keys, &last),
            Outcome::Applied { caught_up: true }
        );
        assert!(matches!(
            lookup(&store, &keys, "aaaaaaaa").unwrap(),
            Lookup::Active(_)
        ));
        assert_eq!(lookup(&store, &keys, "cccccccc").unwrap(), Lookup::Unknown);
    }

    #[test]
    fn an_empty_set_counts_as_loaded() {
        let store = MemoryStore::default();
        let keys = Keys::new("guardctl");
        sync(&store, &keys, &page("e1", 0, false, &[], &[]));
        assert_eq!(lookup(&store, &keys, "aaaaaaaa").unwrap(), Lookup::Unknown);
    }

    #[test]
    fn revocation_leaves_a_tombstone_that_stale_pages_cannot_overwrite() {
        let store = MemoryStore::default();
        let keys = Keys::new("guardctl");
        sync(
            &store,
            &keys,
            &page("e1", 1, false, &[upsert("aaaaaaaa", 1)], &[]),
        );
        sync(
            &store,
            &keys,
            &page("e1", 2, false, &[], &[revoke("aaaaaaaa", 2)]),
        );
        assert_eq!(lookup(&store, &keys, "aaaaaaaa").unwrap(), Lookup::Revoked);

        // A stale worker writing an older upsert directly must not revive the key.
        let stale = VersionedEntry {
            version: 1,
            entry: Entry::Active(KeyRecord {
                sha256: [0; 32],
                expires_at: None,
                org: "demo".into(),
                role: "admin".into(),
                user: None,
            }),
        };
        write_if_newer(&store, &keys.key(1, "aaaaaaaa"), 1, &stale.encode()).unwrap();
        assert_eq!(lookup(&store, &keys, "aaaaaaaa").unwrap(), Lookup::Revoked);
    }

    #[test]
    fn policies_are_written_with_the_keys_and_a_stale_one_never_wins() {
        use crate::keyset::policy::PolicyCache;
        use crate::keyset::state::ServingState;
        let store = MemoryStore::default();
        let keys = Keys::new("guardctl");
        let policy = |tools: &str, version: u64| {
            format!(
                r#"{{"org":"demo","version":{version},"policy":{{"mode":"enforce","roles":[{{"role":"admin","tools":[{tools}],"deny_tools":[],"methods":[],"deny_methods":[]}}]}}}}"#
            )
        };
        let with_policies = |version: u64, ups: &[String], policies: &[String]| {
            let mut text = body("e1", version, false, ups, &[]);
            text.pop();
            text.push_str(&format!(r#","policies":[{}]}}"#, policies.join(",")));
            SyncPage::decode(text.as_bytes(), 0).unwrap()
        };
        sync(
            &store,
            &keys,
            &with_policies(2, &[upsert("aaaaaaaa", 1)], &[policy(r#""echo""#, 2)]),
        );
        let allowed = |tool: &str| {
            let (state, _) = ServingState::read(&store, keys.state()).unwrap();
            PolicyCache::default()
                .policy_for(&store, &keys, &state, "demo")
                .unwrap()
                .map(|p| p.decide("admin", Some("tools/call"), Some(tool)).allowed)
        };
        assert_eq!(allowed("echo"), Some(true));
        assert_eq!(allowed("other"), Some(false));
        // An older policy written late (a stale worker) does not undo the newer one.
        let stale = crate::keyset::policy::encode_entry(1, None);
        write_if_newer(&store, &keys.policy(1, "demo"), 1, &stale).unwrap();
        assert_eq!(allowed("echo"), Some(true));
        // Removed at version 3: no policy, every tool.
        let removed = r#"{"org":"demo","version":3,"policy":null}"#.to_string();
        sync(&store, &keys, &with_policies(3, &[], &[removed]));
        assert_eq!(allowed("other"), None);
    }

    #[test]
    fn an_answer_to_an_old_cursor_is_discarded() {
        let store = MemoryStore::default();
        let keys = Keys::new("guardctl");
        sync(
            &store,
            &keys,
            &page("e1", 2, false, &[upsert("aaaaaaaa", 2)], &[]),
        );
        let late = page("e1", 1, false, &[upsert("bbbbbbbb", 1)], &[]);
        assert_eq!(
            apply_page(&store, &keys, 0, &late, 5).unwrap(),
            Outcome::Stale
        );
        assert_eq!(lookup(&store, &keys, "bbbbbbbb").unwrap(), Lookup::Unknown);
    }

    #[test]
    fn a_new_epoch_reloads_into_a_fresh_generation_and_switches_when_complete() {
        let store = MemoryStore::default();
        let keys = Keys::new("guardctl");
        sync(
            &store,
            &keys,
            &page("e1", 1, false, &[upsert("aaaaaaaa", 1)], &[]),
        );
        assert_eq!(
            sync(&store, &keys, &page("e2", 5, false, &[], &[])),
            Outcome::Reload
        );
        assert_eq!(next_since(&store, &keys).unwrap(), 0);
        // While the new generation loads, the old one keeps serving.
        sync(
            &store,
            &keys,
            &page("e2", 1, true, &[upsert("bbbbbbbb", 1)], &[]),
        );
        assert!(matches!(
            lookup(&store, &keys, "aaaaaaaa").unwrap(),
            Lookup::Active(_)
        ));
        sync(
            &store,
            &keys,
            &page("e2", 2, false, &[upsert("cccccccc", 2)], &[]),
        );
        assert_eq!(lookup(&store, &keys, "aaaaaaaa").unwrap(), Lookup::Unknown);
        assert!(matches!(
            lookup(&store, &keys, "bbbbbbbb").unwrap(),
            Lookup::Active(_)
        ));
    }

    #[test]
    fn a_server_behind_the_proxy_triggers_a_reload() {
        let store = MemoryStore::default();
        let keys = Keys::new("guardctl");
        sync(
            &store,
            &keys,
            &page("e1", 9, false, &[upsert("aaaaaaaa", 9)], &[]),
        );
        assert_eq!(
            sync(&store, &keys, &page("e1", 4, false, &[], &[])),
            Outcome::Reload
        );
    }

    #[test]
    fn lost_shared_data_fails_closed_until_resynced() {
        let store = MemoryStore::default();
        let keys = Keys::new("guardctl");
        sync(
            &store,
            &keys,
            &page("e1", 1, false, &[upsert("aaaaaaaa", 1)], &[]),
        );
        store.clear();
        assert_eq!(
            lookup(&store, &keys, "aaaaaaaa").unwrap(),
            Lookup::NotLoaded
        );
        assert_eq!(next_since(&store, &keys).unwrap(), 0);
        sync(
            &store,
            &keys,
            &page("e1", 1, false, &[upsert("aaaaaaaa", 1)], &[]),
        );
        assert!(matches!(
            lookup(&store, &keys, "aaaaaaaa").unwrap(),
            Lookup::Active(_)
        ));
    }

    #[test]
    fn invalid_pages_are_rejected_whole() {
        let bad = [
            r#"{"epoch":"e1","version":1}trailing"#.to_string(),
            r#"{"epoch":"","version":1}"#.to_string(),
            r#"{"epoch":"e 1","version":1}"#.to_string(),
            r#"{"version":1}"#.to_string(),
            body("e1", 1, false, &[upsert("aaaaaaaa", 2)], &[]),
            body("e1", 1, false, &[upsert("AAAAAAAA", 1)], &[]),
            body("e1", 1, false, &[upsert("aaaaaaaa", 0)], &[]),
            body("e1", 1, false, &[], &[revoke("a", 1)]),
            body(
                "e1",
                1,
                false,
                &[upsert("aaaaaaaa", 1).replace(HASH, &HASH.to_uppercase())],
                &[],
            ),
            body(
                "e1",
                1,
                false,
                &[upsert("aaaaaaaa", 1).replace("\"demo\"", "\"Demo Org\"")],
                &[],
            ),
        ];
        for b in &bad {
            assert_eq!(parse_page(b.as_bytes(), 0), Err(SyncError::BadPage), "{b}");
        }
        let good = body("e1", 1, false, &[upsert("aaaaaaaa", 1)], &[]);
        assert!(parse_page(good.as_bytes(), 0).is_ok());
    }
}
