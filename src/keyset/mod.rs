//! The key set: hash rows pushed by guardctl, held in proxy-wasm shared data.
//!
//! - [`record`]: the binary value stored per key (live key or revocation tombstone).
//! - [`store`]: the shared-data trait and the names of its entries.
//! - [`state`]: serving state, sync cursor and the one-sync-per-process lease.
//! - [`sync`]: the guardctl sync protocol and how a page is applied.

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
    Unknown,
    Revoked,
    Active(KeyRecord),
}

/// Two small shared-data reads whatever the size of the set: the serving state, then one key.
pub fn lookup(store: &impl SharedStore, keys: &Keys, key_id: &str) -> Result<Lookup, StoreError> {
    let (state, _) = ServingState::read(store, keys.state())?;
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
