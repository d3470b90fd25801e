//! Tool policies in shared data: one entry per org and generation, written by the sync loop in
//! the same pass as the keys of a page, and each VM's compiled copy of them.
//!
//! An entry is `kind (1 byte) | version (u64 LE) | canonical JSON`, the kind saying whether the
//! org has a policy; its first nine bytes read like a key entry's, so the same write-if-newer
//! rule keeps a stale page from undoing a newer policy.
//!
//! **Per request.** The org's entry is read (one shared-data read) and compiled again only when
//! its version moved. It is read every time, not skipped while the serving state stays the
//! same: the sync loop writes a page's entries before it moves the serving state, so a worker
//! can see a page's new key before its state moves, and must then see that page's policy too
//! (written first).

use std::collections::HashMap;
use std::rc::Rc;

use mcp_guard_protocol::policy::{CompiledPolicy, Policy};

use super::state::ServingState;
use super::store::{Keys, SharedStore, StoreError};

const POLICY: u8 = 2;
const NO_POLICY: u8 = 3;

/// The shared-data value of an org's policy as of `version` (`None`: removed).
pub fn encode_entry(version: u64, policy: Option<&Policy>) -> Vec<u8> {
    let json = policy.map(Policy::encode).unwrap_or_default();
    let mut out = Vec::with_capacity(9 + json.len());
    out.push(if policy.is_some() { POLICY } else { NO_POLICY });
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

/// The version of a stored entry, if it is a policy entry.
fn entry_version(bytes: &[u8]) -> Option<u64> {
    let (&kind, rest) = bytes.split_first()?;
    let version = rest.first_chunk::<8>()?;
    matches!(kind, POLICY | NO_POLICY).then(|| u64::from_le_bytes(*version))
}

/// Decodes a stored entry: its version and policy; `None` when malformed.
pub fn decode_entry(bytes: &[u8]) -> Option<(u64, Option<Policy>)> {
    let version = entry_version(bytes)?;
    let json = bytes.get(9..)?;
    match *bytes.first()? {
        NO_POLICY if json.is_empty() => Some((version, None)),
        POLICY => Some((version, Some(Policy::decode(json)?))),
        _ => None,
    }
}

/// Why an org's policy could not be known: the request fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyError {
    Store(StoreError),
    /// A stored entry that does not decode (never written so by the sync loop).
    Corrupt,
}

impl From<StoreError> for PolicyError {
    fn from(err: StoreError) -> Self {
        PolicyError::Store(err)
    }
}

struct Cached {
    generation: u32,
    /// The entry's own version (`None`: no entry, the org never had a policy).
    entry_version: Option<u64>,
    policy: Option<Rc<CompiledPolicy>>,
}

/// One VM's compiled policies, by org. Bounded by the orgs this VM has served; an org's
/// compiled policy is replaced, never accumulated.
#[derive(Default)]
pub struct PolicyCache {
    orgs: HashMap<String, Cached>,
}

impl PolicyCache {
    /// The org's compiled policy in the generation `state` serves (`None`: the org has none).
    pub fn policy_for(
        &mut self,
        store: &impl SharedStore,
        keys: &Keys,
        state: &ServingState,
        org: &str,
    ) -> Result<Option<Rc<CompiledPolicy>>, PolicyError> {
        let (value, _) = store.get(&keys.policy(state.generation, org))?;
        let entry_version = match &value {
            Some(bytes) => Some(entry_version(bytes).ok_or(PolicyError::Corrupt)?),
            None => None,
        };
        if let Some(cached) = self.orgs.get(org) {
            if cached.generation == state.generation && cached.entry_version == entry_version {
                return Ok(cached.policy.clone());
            }
        }
        let policy = match &value {
            None => None,
            Some(bytes) => {
                let (_, policy) = decode_entry(bytes).ok_or(PolicyError::Corrupt)?;
                policy.map(|policy| Rc::new(CompiledPolicy::compile(&policy)))
            }
        };
        let cached = Cached {
            generation: state.generation,
            entry_version,
            policy: policy.clone(),
        };
        self.orgs.insert(org.to_string(), cached);
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyset::store::MemoryStore;
    use mcp_guard_protocol::policy::{Mode, RoleRules};

    fn policy(tools: &[&str]) -> Policy {
        Policy {
            mode: Mode::Enforce,
            roles: vec![RoleRules {
                role: "viewer".into(),
                tools: tools.iter().map(|t| t.to_string()).collect(),
                ..RoleRules::default()
            }],
        }
    }

    fn state(generation: u32, version: u64) -> ServingState {
        ServingState {
            generation,
            version,
            synced_at_ms: 0,
        }
    }

    fn allows(policy: &Option<Rc<CompiledPolicy>>, tool: &str) -> Option<bool> {
        policy
            .as_ref()
            .map(|p| p.decide("viewer", Some("tools/call"), Some(tool)).allowed)
    }

    #[test]
    fn entries_round_trip_and_refuse_garbage() {
        let p = policy(&["echo"]);
        assert_eq!(
            decode_entry(&encode_entry(7, Some(&p))),
            Some((7, Some(p.clone())))
        );
        assert_eq!(decode_entry(&encode_entry(8, None)), Some((8, None)));
        let mut trailing = encode_entry(8, None);
        trailing.push(b'x');
        assert_eq!(decode_entry(&trailing), None);
        let good = encode_entry(7, Some(&p));
        assert_eq!(decode_entry(&good[..good.len() - 1]), None);
        assert_eq!(decode_entry(&[1, 0, 0]), None);
    }

    #[test]
    fn the_cache_follows_the_entry_and_compiles_only_when_it_moves() {
        let store = MemoryStore::default();
        let keys = Keys::new("guardctl");
        let mut cache = PolicyCache::default();
        // No entry: the org has no policy.
        assert!(cache
            .policy_for(&store, &keys, &state(1, 5), "demo")
            .unwrap()
            .is_none());
        store
            .set(
                &keys.policy(1, "demo"),
                &encode_entry(6, Some(&policy(&["echo"]))),
                None,
            )
            .unwrap();
        // Seen at once, even before the serving state moves (the sync loop writes it first).
        let early = cache
            .policy_for(&store, &keys, &state(1, 5), "demo")
            .unwrap();
        assert_eq!(allows(&early, "echo"), Some(true));
        let now = cache
            .policy_for(&store, &keys, &state(1, 6), "demo")
            .unwrap();
        assert_eq!(allows(&now, "echo"), Some(true));
        assert_eq!(allows(&now, "delete"), Some(false));
        // A newer serving version without a policy change keeps the compiled copy.
        let again = cache
            .policy_for(&store, &keys, &state(1, 9), "demo")
            .unwrap();
        assert!(Rc::ptr_eq(now.as_ref().unwrap(), again.as_ref().unwrap()));
        assert!(Rc::ptr_eq(early.as_ref().unwrap(), again.as_ref().unwrap()));
        store
            .set(&keys.policy(1, "demo"), &encode_entry(10, None), None)
            .unwrap();
        assert!(cache
            .policy_for(&store, &keys, &state(1, 10), "demo")
            .unwrap()
            .is_none());
        // Another generation is another namespace.
        assert!(cache
            .policy_for(&store, &keys, &state(2, 10), "demo")
            .unwrap()
            .is_none());
        store
            .set(&keys.policy(2, "demo"), b"\x02junk", None)
            .unwrap();
        assert_eq!(
            cache.policy_for(&store, &keys, &state(2, 11), "demo").err(),
            Some(PolicyError::Corrupt)
        );
    }
}
