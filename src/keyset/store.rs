//! The shared-data interface the key-set logic is written against.
//!
//! The filter implements it over `proxy_wasm::hostcalls`; unit tests use [`MemoryStore`]. Keeping the
//! logic behind this trait is what lets lookups, versioned writes and the sync lease be tested natively.

/// Compare-and-swap token returned by a read and checked by a write (proxy-wasm `cas`).
pub type Cas = Option<u32>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote the value since we read it.
    CasMismatch,
    /// The host refused the call.
    Host,
}

pub trait SharedStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Cas), StoreError>;
    fn set(&self, key: &str, value: &[u8], cas: Cas) -> Result<(), StoreError>;
}

/// Names of the shared-data entries of one key set (one sync cluster).
///
/// Shared data is per `vm_id`: the cluster name in every key keeps two filter configurations
/// that sync from different control planes apart, and the page format two module versions
/// that read different formats. Keys live under a *generation*, so a full
/// reload (new database, restored backup) fills a fresh namespace and switches over atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    // The fixed names, built once per configuration: `state` is read on every request.
    state: String,
    cursor: String,
    lease: String,
    owner_sequence: String,
    instance: String,
}

impl Keys {
    pub fn new(cluster: &str) -> Self {
        // The page format is part of the name: a filter that reads a newer format than the one
        // whose cursor it would inherit (a module update keeps the VM's shared data) loads the
        // whole set again, instead of skipping what the older format left out (policies).
        let format = mcp_guard_protocol::sync::PAGE_FORMAT;
        let prefix = format!("mcp-guard/{cluster}/f{format}/");
        Self {
            state: format!("{prefix}state"),
            cursor: format!("{prefix}cursor"),
            lease: format!("{prefix}lease"),
            owner_sequence: format!("{prefix}owner-seq"),
            instance: format!("{prefix}instance"),
            prefix,
        }
    }
    /// Which generation serves requests, at which version (see [`crate::keyset::state`]).
    pub fn state(&self) -> &str {
        &self.state
    }
    /// Where the sync loop is writing (generation, version, epoch).
    pub fn cursor(&self) -> &str {
        &self.cursor
    }
    pub fn lease(&self) -> &str {
        &self.lease
    }
    pub fn owner_sequence(&self) -> &str {
        &self.owner_sequence
    }
    /// This Envoy's instance id, part of its proxy name ([`crate::keyset::state::proxy_name`]).
    pub fn instance(&self) -> &str {
        &self.instance
    }
    pub fn key(&self, generation: u32, key_id: &str) -> String {
        format!("{}g{generation}/k/{key_id}", self.prefix)
    }
    /// An org's tool policy, in the same generation as its keys.
    pub fn policy(&self, generation: u32, org: &str) -> String {
        format!("{}g{generation}/p/{org}", self.prefix)
    }
}

#[cfg(test)]
pub use memory::MemoryStore;

#[cfg(test)]
mod memory {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// In-memory stand-in for Envoy's shared data, with the same CAS rules: a write with a CAS
    /// must match the current one; a write without a CAS always succeeds; each write bumps the CAS.
    #[derive(Default)]
    pub struct MemoryStore {
        entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next_cas: RefCell<u32>,
    }

    impl MemoryStore {
        pub fn entry_count(&self) -> usize {
            self.entries.borrow().len()
        }
        pub fn clear(&self) {
            self.entries.borrow_mut().clear();
        }
    }

    impl SharedStore for MemoryStore {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Cas), StoreError> {
            Ok(match self.entries.borrow().get(key) {
                Some((value, cas)) => (Some(value.clone()), Some(*cas)),
                None => (None, None),
            })
        }

        fn set(&self, key: &str, value: &[u8], cas: Cas) -> Result<(), StoreError> {
            let mut entries = self.entries.borrow_mut();
            if let (Some(expected), Some((_, current))) = (cas, entries.get(key)) {
                if expected != *current {
                    return Err(StoreError::CasMismatch);
                }
            }
            let mut next = self.next_cas.borrow_mut();
            *next += 1;
            entries.insert(key.to_string(), (value.to_vec(), *next));
            Ok(())
        }
    }
}
