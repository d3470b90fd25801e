//! The store: keys, their hash rows, and the append-only change log that versions the key set.
//!
//! [`KeyStore`] is the one interface the API uses; `sqlite.rs` is the implementation today (the
//! embedded default). Every method is blocking: the server calls them from `spawn_blocking`,
//! bounded by [`KeyStore::max_concurrent_reads`] and one writer at a time.

pub(crate) mod sqlite;

pub use sqlite::SqliteStore;

use crate::keys::import::ImportRow;
use crate::keys::token::NewToken;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// An error from the store. Its text is for the server log, not for API clients.
#[derive(Debug)]
pub enum StoreError {
    /// The database failed a query (its driver's error).
    Database(Box<dyn std::error::Error + Send + Sync>),
    /// The database exists but cannot be used (newer schema, missing epoch, not WAL, ...).
    Unusable(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Database(err) => write!(f, "database: {err}"),
            StoreError::Unusable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// A key as the admin API shows it: never a hash, never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub key_id: String,
    pub org: String,
    pub role: String,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// The fields an operator chooses for a new key, already validated.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub org: String,
    pub role: String,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// The outcome of a create: the stored key, its plaintext token (to hand out once) and the
/// key-set version of the change.
#[derive(Debug)]
pub struct CreatedKey {
    pub info: KeyInfo,
    pub token: NewToken,
    pub version: u64,
}

/// The outcome of an import batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// All rows were committed; `version` is the key-set version after the last one.
    Imported { count: u64, version: u64 },
    /// Row `index` reuses a key-id; nothing was written.
    Duplicate { index: usize },
}

/// The hash row a proxy needs to authenticate a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashRow {
    pub sha256: String,
    pub org: String,
    pub role: String,
    pub expires_at: Option<i64>,
}

/// One entry of the change log as the sync API sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub version: u64,
    pub key_id: String,
    /// `Some` for an upsert of a key that still exists; `None` for a revocation, and also for an
    /// upsert whose key was revoked later (its hash must never be sent again).
    pub hash_row: Option<HashRow>,
}

/// A consistent read of the change log: the changes after some version plus the version the
/// database was at when they were read.
#[derive(Debug)]
pub struct ChangesRead {
    pub changes: Vec<Change>,
    pub current_version: u64,
}

/// What the API needs from a database. Every write is one transaction that also appends its
/// change to the log, and gets the next version; reads see one consistent snapshot.
pub trait KeyStore: Send + Sync {
    /// The identifier of this database's history (see `mcp_guard_protocol::sync`).
    fn epoch(&self) -> &str;
    /// Where the database is, for the start-up log line (never a password).
    fn location(&self) -> String;
    /// How many reads may run at once.
    fn max_concurrent_reads(&self) -> usize;
    /// Issues a new key: its row and its upsert change in one transaction.
    fn create_key(&self, new_key: &NewKey) -> StoreResult<CreatedKey>;
    /// Revokes a key: deletes its hash row and appends a revoke change, in one transaction.
    /// `None` when no such key exists.
    fn revoke_key(&self, key_id: &str) -> StoreResult<Option<u64>>;
    /// Adds imported hash rows (already validated), all or nothing.
    fn import_keys(&self, rows: &[ImportRow], created_at: i64) -> StoreResult<ImportOutcome>;
    /// All live keys, oldest first.
    fn list_keys(&self) -> StoreResult<Vec<KeyInfo>>;
    /// The version of the newest change (0 for an empty log).
    fn current_version(&self) -> StoreResult<u64>;
    /// Live keys (expired ones included).
    fn key_count(&self) -> StoreResult<u64>;
    /// Up to `limit` changes after `since`, oldest first, with the current version, from one
    /// snapshot.
    fn changes_since(&self, since: u64, limit: usize) -> StoreResult<ChangesRead>;
}

/// Opens the database at `path` (SQLite), creating it if it does not exist.
pub fn open(path: &Path) -> StoreResult<Box<dyn KeyStore>> {
    Ok(Box::new(SqliteStore::open(path)?))
}
