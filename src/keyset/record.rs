//! Compact binary values stored in proxy-wasm shared data.
//!
//! One shared-data entry per key keeps the per-request read O(1) and small whatever the size of the
//! set (`get_shared_data` copies the whole value on every call). Every entry carries the version of
//! the change that wrote it, so an older change can never overwrite a newer one: a revocation
//! (tombstone) wins over any stale upsert.

const ACTIVE: u8 = 1;
const REVOKED: u8 = 0;
const NO_EXPIRY: u64 = 0;

/// The hash row of one key as the filter needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub sha256: [u8; 32],
    /// Unix seconds; `None` when the key never expires.
    pub expires_at: Option<u64>,
    pub org: String,
    pub role: String,
    /// The user who issued the key; `None` for a service key.
    pub user: Option<String>,
}

/// A stored entry: a live key or the tombstone of a revoked one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Active(KeyRecord),
    Revoked,
}

/// An entry with the version of the change that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedEntry {
    pub version: u64,
    pub entry: Entry,
}

impl VersionedEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match &self.entry {
            Entry::Revoked => {
                out.push(REVOKED);
                out.extend_from_slice(&self.version.to_le_bytes());
            }
            Entry::Active(record) => {
                out.push(ACTIVE);
                out.extend_from_slice(&self.version.to_le_bytes());
                out.extend_from_slice(&record.sha256);
                out.extend_from_slice(&record.expires_at.unwrap_or(NO_EXPIRY).to_le_bytes());
                push_short_str(&mut out, &record.org);
                push_short_str(&mut out, &record.role);
                // Last and optional, so that records written before users existed still decode.
                if let Some(user) = &record.user {
                    push_short_str(&mut out, user);
                }
            }
        }
        out
    }

    /// Decodes a stored value; `None` for anything malformed (the caller denies).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader(bytes);
        let kind = reader.u8()?;
        let version = reader.u64()?;
        let entry = match kind {
            REVOKED => Entry::Revoked,
            ACTIVE => {
                let sha256 = reader.array32()?;
                let expires_at = match reader.u64()? {
                    NO_EXPIRY => None,
                    at => Some(at),
                };
                let org = reader.short_str()?;
                let role = reader.short_str()?;
                let user = match reader.is_empty() {
                    true => None,
                    // An empty user is no user: never written, so malformed.
                    false => Some(reader.short_str().filter(|user| !user.is_empty())?),
                };
                Entry::Active(KeyRecord {
                    sha256,
                    expires_at,
                    org,
                    role,
                    user,
                })
            }
            _ => return None,
        };
        reader.is_empty().then_some(Self { version, entry })
    }

    /// Reads only the version, for the write-if-newer check during sync.
    pub fn decode_version(bytes: &[u8]) -> Option<u64> {
        let mut reader = Reader(bytes);
        reader.u8()?;
        reader.u64()
    }
}

fn push_short_str(out: &mut Vec<u8>, s: &str) {
    // Names are validated to at most 63 bytes before they get here; truncation cannot happen.
    let len = s.len().min(u8::MAX as usize);
    out.push(len as u8);
    out.extend_from_slice(&s.as_bytes()[..len]);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn array32(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }
    fn short_str(&mut self) -> Option<String> {
        let len = self.u8()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(version: u64, expires_at: Option<u64>) -> VersionedEntry {
        VersionedEntry {
            version,
            entry: Entry::Active(KeyRecord {
                sha256: [7; 32],
                expires_at,
                org: "demo".into(),
                role: "admin".into(),
                user: None,
            }),
        }
    }

    fn issued_by(user: &str) -> VersionedEntry {
        let mut entry = active(5, None);
        if let Entry::Active(record) = &mut entry.entry {
            record.user = Some(user.into());
        }
        entry
    }

    #[test]
    fn a_record_from_before_users_still_decodes() {
        // The bytes a filter without users wrote: no trailing user.
        let mut old = vec![ACTIVE];
        old.extend_from_slice(&5u64.to_le_bytes());
        old.extend_from_slice(&[7; 32]);
        old.extend_from_slice(&NO_EXPIRY.to_le_bytes());
        old.extend_from_slice(b"\x04demo\x05admin");
        assert_eq!(VersionedEntry::decode(&old), Some(active(5, None)));
        assert_eq!(active(5, None).encode(), old);
    }

    #[test]
    fn active_and_revoked_entries_round_trip() {
        for entry in [
            active(1, None),
            active(u64::MAX, Some(1_900_000_000)),
            issued_by("alice@example.com"),
            issued_by(&"u".repeat(64)),
            VersionedEntry {
                version: 42,
                entry: Entry::Revoked,
            },
        ] {
            let bytes = entry.encode();
            assert_eq!(VersionedEntry::decode(&bytes), Some(entry.clone()));
            assert_eq!(VersionedEntry::decode_version(&bytes), Some(entry.version));
        }
    }

    #[test]
    fn malformed_values_do_not_decode() {
        let with_user = issued_by("alice").encode();
        let without_user_len = active(5, None).encode().len();
        for cut in (0..with_user.len()).filter(|&cut| cut != without_user_len) {
            assert_eq!(
                VersionedEntry::decode(&with_user[..cut]),
                None,
                "cut at {cut}"
            );
        }
        let good = active(3, None).encode();
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(VersionedEntry::decode(&trailing), None);
        let mut bad_kind = good;
        bad_kind[0] = 9;
        assert_eq!(VersionedEntry::decode(&bad_kind), None);
    }
}
