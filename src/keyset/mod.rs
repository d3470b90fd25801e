//! The key set: hash rows pushed by guardctl, held in proxy-wasm shared data.
//!
//! - [`record`]: the binary value stored per key (live key or revocation tombstone).
//! - [`policy`]: the orgs' tool policies in shared data, and each VM's compiled copy.
//! - [`store`]: the shared-data trait and the names of its entries.
//! - [`state`]: serving state, sync cursor and the one-sync-per-process lease.
//! - [`sync`]: the guardctl sync protocol and how a page is applied.

pub mod policy;
pub mod record;
pub mod state;
pub mod store;
pub mod sync;

use record::{Entry, KeyRecord, VersionedEntry};
use state::ServingState;
use store::{Keys, SharedStore, StoreError};

/// What the key set says about one key-id, as the request path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No complete key set yet (first sync pending, or shared data lost): fail closed with 503.
    NotLoaded,
    /// Loaded, but not synced for longer than `max_staleness_ms`: revocations may be missing,
    /// so fail closed with 503.
    Stale,
    Unknown,
    Revoked,
    Active(KeyRecord),
}

/// The clock and the configured bound for [`lookup_fresh`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub now_ms: u64,
    pub max_staleness_ms: u64,
}

/// Two small shared-data reads whatever the size of the set: the serving state, then one key.
pub fn lookup(store: &impl SharedStore, keys: &Keys, key_id: &str) -> Result<Lookup, StoreError> {
    Ok(lookup_fresh(store, keys, key_id, None)?.0)
}

/// [`lookup`] that also refuses a key set older than `freshness` allows, and returns the serving
/// state it read (what a live stream remembers as "verified at").
pub fn lookup_fresh(
    store: &impl SharedStore,
    keys: &Keys,
    key_id: &str,
    freshness: Option<Freshness>,
) -> Result<(Lookup, ServingState), StoreError> {
    let (state, _) = ServingState::read(store, keys.state())?;
    if freshness.is_some_and(|f| state.is_stale(f.now_ms, f.max_staleness_ms)) {
        return Ok((Lookup::Stale, state));
    }
    Ok((lookup_in(store, keys, &state, key_id)?, state))
}

/// One key in the generation `state` serves (the state already read by the caller).
pub fn lookup_in(
    store: &impl SharedStore,
    keys: &Keys,
    state: &ServingState,
    key_id: &str,
) -> Result<Lookup, StoreError> {
    if !state.is_loaded() {
        return Ok(Lookup::NotLoaded);
    }
    let (value, _) = store.get(&keys.key(state.generation, key_id))?;
    Ok(match value.and_then(|v| VersionedEntry::decode(&v)) {
        None => Lookup::Unknown,
        Some(VersionedEntry {
            entry: Entry::Revoked,
            ..
        }) => Lookup::Revoked,
        Some(VersionedEntry {
            entry: Entry::Active(record),
            ..
        }) => Lookup::Active(record),
    })
}
