//! Small text records that coordinate the workers of one Envoy process through shared data.

use super::store::{Cas, SharedStore, StoreError};

/// What requests read: which generation of keys is complete and serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServingState {
    /// 0 until the first complete load: requests then get 503, never 401 and never allow.
    pub generation: u32,
    pub version: u64,
    /// When the last sync answer arrived (ms since the Unix epoch).
    pub synced_at_ms: u64,
}

impl ServingState {
    pub fn is_loaded(&self) -> bool {
        self.generation != 0
    }
    /// True when the last sync answer is older than `max_staleness_ms` (a loaded set only).
    pub fn is_stale(&self, now_ms: u64, max_staleness_ms: u64) -> bool {
        self.is_loaded() && now_ms.saturating_sub(self.synced_at_ms) > max_staleness_ms
    }
    /// Which key-set contents this state stands for: equal marks mean nothing changed between two
    /// reads, so a key verified at one is still verified at the other.
    pub fn mark(&self) -> (u32, u64) {
        (self.generation, self.version)
    }
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.generation, self.version, self.synced_at_ms)
    }
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut fields = core::str::from_utf8(bytes).ok()?.split(' ');
        let state = Self {
            generation: fields.next()?.parse().ok()?,
            version: fields.next()?.parse().ok()?,
            synced_at_ms: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(state)
    }
    /// Reads the state; a missing or unreadable entry means "not loaded" (fail closed).
    pub fn read(store: &impl SharedStore, key: &str) -> Result<(Self, Cas), StoreError> {
        let (value, cas) = store.get(key)?;
        Ok((
            value.and_then(|v| Self::decode(&v)).unwrap_or_default(),
            cas,
        ))
    }
}

/// What the sync loop is writing: generation, the version it has applied, and the epoch (database
/// identity) of the control plane it is loading from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    pub generation: u32,
    pub version: u64,
    pub epoch: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.generation, self.version, self.epoch)
    }
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut fields = core::str::from_utf8(bytes).ok()?.split(' ');
        let cursor = Self {
            generation: fields.next()?.parse().ok()?,
            version: fields.next()?.parse().ok()?,
            epoch: fields.next()?.to_string(),
        };
        fields.next().is_none().then_some(cursor)
    }
    pub fn read(store: &impl SharedStore, key: &str) -> Result<(Self, Cas), StoreError> {
        let (value, cas) = store.get(key)?;
        Ok((
            value.and_then(|v| Self::decode(&v)).unwrap_or_default(),
            cas,
        ))
    }
}

/// The sync lease: one worker per Envoy process runs the sync loop; the others take over when
/// the lease is not renewed before it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub owner: u64,
    pub expires_at_ms: u64,
}

impl Lease {
    fn encode(&self) -> String {
        format!("{} {}", self.owner, self.expires_at_ms)
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (owner, expires) = core::str::from_utf8(bytes).ok()?.split_once(' ')?;
        Some(Self {
            owner: owner.parse().ok()?,
            expires_at_ms: expires.parse().ok()?,
        })
    }

    /// Takes or renews the lease for `owner`. Returns whether `owner` holds it afterwards.
    pub fn acquire(
        store: &impl SharedStore,
        key: &str,
        owner: u64,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let (value, cas) = store.get(key)?;
        let current = value.and_then(|v| Self::decode(&v));
        if let Some(lease) = current {
            if lease.owner != owner && lease.expires_at_ms > now_ms {
                return Ok(false);
            }
        }
        let mine = Self {
            owner,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        };
        match store.set(key, mine.encode().as_bytes(), cas) {
            Ok(()) => {}
            Err(StoreError::CasMismatch) => return Ok(false),
            Err(e) => return Err(e),
        }
        // A first write has no CAS to check: read back so two workers racing to create the
        // lease agree on one winner.
        let (value, _) = store.get(key)?;
        Ok(value.and_then(|v| Self::decode(&v)) == Some(mine))
    }
}

/// Hands out a process-unique owner id per root context (a CAS-incremented counter).
pub fn next_owner_id(store: &impl SharedStore, key: &str) -> Result<u64, StoreError> {
    for _ in 0..64 {
        let (value, cas) = store.get(key)?;
        let current: u64 = value
            .and_then(|v| core::str::from_utf8(&v).ok()?.parse().ok())
            .unwrap_or(0);
        let next = current.saturating_add(1);
        match store.set(key, next.to_string().as_bytes(), cas) {
            Ok(()) => return Ok(next),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

/// This proxy's name in its sync requests: `node` (Envoy's node id, made fit) and an instance id
/// kept in shared data, so every VM of the process (a new sync leader too) gives the same name
/// and a restarted Envoy a new one. `fresh` makes the instance id when there is none yet; only
/// the lease holder calls this, so two VMs do not race to create it.
pub fn proxy_name(
    store: &impl SharedStore,
    key: &str,
    node: &str,
    fresh: impl FnOnce() -> String,
) -> Result<String, StoreError> {
    let (value, cas) = store.get(key)?;
    let instance = match value.and_then(|v| String::from_utf8(v).ok()) {
        Some(instance) if !instance.is_empty() => instance,
        _ => {
            let instance = fresh();
            store.set(key, instance.as_bytes(), cas)?;
            instance
        }
    };
    let node = if node.is_empty() { "envoy" } else { node };
    let limit = mcp_guard_protocol::sync::MAX_PROXY_LEN.saturating_sub(instance.len() + 1);
    let mut name = mcp_guard_protocol::sync::proxy_name_from(node);
    name.truncate(limit);
    Ok(format!("{name}.{instance}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyset::store::MemoryStore;

    #[test]
    fn the_proxy_name_is_made_once_per_process_and_always_valid() {
        let store = MemoryStore::default();
        let first =
            proxy_name(&store, "i", "sidecar~10.0.0.7~p.ns~ns.svc", || "a1".into()).unwrap();
        assert_eq!(first, "sidecar~10.0.0.7~p.ns~ns.svc.a1");
        let again = proxy_name(&store, "i", "sidecar~10.0.0.7~p.ns~ns.svc", || "b2".into());
        assert_eq!(again.unwrap(), first, "another VM of the same process");
        let unnamed = proxy_name(&store, "i", "", || unreachable!()).unwrap();
        assert_eq!(unnamed, "envoy.a1");
        let long = proxy_name(&store, "i", &"n o".repeat(200), || unreachable!()).unwrap();
        assert!(
            mcp_guard_protocol::sync::is_valid_proxy_name(&long),
            "{long}"
        );
        assert!(long.ends_with(".a1"));
    }

    #[test]
    fn staleness_starts_just_past_max_staleness_and_only_for_a_loaded_set() {
        let loaded = ServingState {
            generation: 1,
            version: 5,
            synced_at_ms: 10_000,
        };
        assert!(!loaded.is_stale(16_000, 6_000), "exactly max_staleness old");
        assert!(loaded.is_stale(16_001, 6_000), "one ms more");
        assert!(!loaded.is_stale(9_000, 6_000), "a clock behind the sync");
        assert!(!loaded.is_stale(10_000, 0));
        assert!(loaded.is_stale(10_001, 0));
        let not_loaded = ServingState {
            generation: 0,
            ..loaded
        };
        // Not stale but not loaded: requests get 503 keyset_not_loaded, not keyset_stale.
        assert!(!not_loaded.is_stale(u64::MAX, 1));
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let state = ServingState {
            generation: 2,
            version: 99,
            synced_at_ms: 1_700_000_000_000,
        };
        assert_eq!(ServingState::decode(state.encode().as_bytes()), Some(state));
        let cursor = Cursor {
            generation: 3,
            version: 7,
            epoch: "abc123".into(),
        };
        assert_eq!(Cursor::decode(cursor.encode().as_bytes()), Some(cursor));
        for garbage in ["", "1 2", "1 2 3 4", "a b c", "-1 2 3"] {
            assert_eq!(ServingState::decode(garbage.as_bytes()), None, "{garbage}");
        }
    }

    #[test]
    fn missing_state_reads_as_not_loaded() {
        let store = MemoryStore::default();
        let (state, _) = ServingState::read(&store, "s").unwrap();
        assert!(!state.is_loaded());
        store.set("s", b"garbage", None).unwrap();
        let (state, _) = ServingState::read(&store, "s").unwrap();
        assert!(!state.is_loaded());
    }

    #[test]
    fn one_owner_holds_the_lease_until_it_expires() {
        let store = MemoryStore::default();
        assert!(Lease::acquire(&store, "l", 1, 1_000, 3_000).unwrap());
        assert!(!Lease::acquire(&store, "l", 2, 2_000, 3_000).unwrap());
        assert!(
            Lease::acquire(&store, "l", 1, 3_500, 3_000).unwrap(),
            "renewal"
        );
        assert!(!Lease::acquire(&store, "l", 2, 6_000, 3_000).unwrap());
        assert!(
            Lease::acquire(&store, "l", 2, 6_501, 3_000).unwrap(),
            "takeover"
        );
        assert!(!Lease::acquire(&store, "l", 1, 6_600, 3_000).unwrap());
    }

    #[test]
    fn owner_ids_are_unique() {
        let store = MemoryStore::default();
        let ids: Vec<u64> = (0..5)
            .map(|_| next_owner_id(&store, "seq").unwrap())
            .collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    }
}
