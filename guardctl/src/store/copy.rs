//! `guardctl db copy`: an installation read whole from one store, to be written into an empty
//! PostgreSQL database ([`super::PgStore::restore`]).
//!
//! The read goes through [`KeyStore`]'s own methods (so any store can be a source) and checks
//! that the source's version did not move while it was read: copy from a stopped server.

use super::{AuditEvent, KeyInfo, KeyStore, StoreError, StoreResult, StoredPolicy, UserInfo};
use std::collections::{BTreeSet, HashMap};

/// Everything an installation holds: live keys with their hashes, users, current policies, and
/// the audit trail, as of `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// Live keys, oldest first, each with the SHA-256 of its token.
    pub keys: Vec<(KeyInfo, String)>,
    pub users: Vec<UserInfo>,
    pub policies: Vec<StoredPolicy>,
    pub audit: Vec<AuditEvent>,
    /// The source's key-set version and epoch when it was read (for the copy's audit row).
    pub version: u64,
    pub epoch: String,
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The destination's key-set version after the copy.
    pub version: u64,
    /// The destination's new epoch: proxies that synced from anything else reload it whole.
    pub epoch: String,
}

impl Installation {
    /// Reads `source` whole. Refused when it changed meanwhile (a server still writes to it).
    pub fn read(source: &dyn KeyStore) -> StoreResult<Installation> {
        let version = source.current_version()?;
        let changes = source.changes_since(0, usize::MAX)?;
        let mut hashes: HashMap<String, String> = HashMap::new();
        let mut orgs_with_policy_changes = BTreeSet::new();
        for change in changes.changes {
            match (change.hash_row, change.policy) {
                (Some(row), _) => {
                    hashes.insert(change.key_id, row.sha256);
                }
                (None, Some(_)) => {
                    orgs_with_policy_changes.insert(change.key_id);
                }
                (None, None) => {}
            }
        }
        let mut keys = Vec::new();
        for info in source.list_keys()? {
            let sha256 = hashes.remove(&info.key_id).ok_or_else(|| {
                StoreError::Unusable(format!(
                    "key {} has no hash row in the change log",
                    info.key_id
                ))
            })?;
            keys.push((info, sha256));
        }
        let mut policies = Vec::new();
        for org in &orgs_with_policy_changes {
            policies.extend(source.policy(org)?);
        }
        let users = source.list_users()?;
        let audit = source.audit_since(i64::MIN, usize::MAX)?;
        if source.current_version()? != version || changes.current_version != version {
            return Err(StoreError::Unusable(
                "the source changed while it was read: stop `guardctl serve` on it, then copy \
                 again"
                    .into(),
            ));
        }
        Ok(Installation {
            keys,
            users,
            policies,
            audit,
            version,
            epoch: source.epoch().to_string(),
        })
    }

    /// The copy's audit detail: what was copied, from which history.
    pub fn summary(&self, from: &str) -> String {
        format!(
            "from {from} (epoch {}, version {}): {} keys, {} users, {} policies, {} audit rows",
            self.epoch,
            self.version,
            self.keys.len(),
            self.users.len(),
            self.policies.len(),
            self.audit.len()
        )
    }
}
