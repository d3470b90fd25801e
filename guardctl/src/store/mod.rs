//! The store: users, keys, their hash rows, the append-only change log that versions the key set,
//! and the audit trail of every admin action.
//!
//! [`KeyStore`] is the one interface the API uses; `sqlite.rs` is the embedded default and
//! `postgres.rs` the database replicas share. Every method is blocking: the server calls them from `spawn_blocking`,
//! bounded by [`KeyStore::max_concurrent_reads`] and one writer at a time.

pub mod copy;
pub(crate) mod postgres;
pub(crate) mod sqlite;

pub use postgres::{is_postgres_url, PgStore};
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
    /// The write contradicts what the database holds; nothing was written. The API answers
    /// it to the client (404 or 409), not as a failure.
    Refused(Refusal),
}

/// Why a write was refused. The text is client-safe: it names only what the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoSuchUser {
        org: String,
        name: String,
    },
    UserExists {
        org: String,
        name: String,
    },
    /// The user still has live keys (and the caller did not ask to revoke them).
    UserHasKeys {
        org: String,
        name: String,
        keys: u64,
    },
    NoSuchPolicy {
        org: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoSuchUser { org, name } => write!(f, "no user {name} in org {org}"),
            Refusal::UserExists { org, name } => {
                write!(f, "user {name} already exists in org {org}")
            }
            Refusal::UserHasKeys { org, name, keys } => write!(
                f,
                "user {name} in org {org} has {keys} live key(s): revoke them first, or remove \
                 the user with --revoke-keys"
            ),
            Refusal::NoSuchPolicy { org } => write!(f, "org {org} has no policy"),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Database(err) => write!(f, "database: {err}"),
            StoreError::Unusable(why) => f.write_str(why),
            StoreError::Refused(refusal) => refusal.fmt(f),
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
    /// The user who issued the key; `None` for a service key (created with an org and a role).
    pub user: Option<String>,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// Who a new key acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuer {
    /// A service key: the org and role given.
    Service { org: String, role: String },
    /// A user's key: the user's org, and the user's role as it is when the key is created,
    /// frozen (read in the same transaction that writes the key).
    User { org: String, name: String },
}

/// The fields an operator chooses for a new key, already validated.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub issuer: Issuer,
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
    /// The user who issued the key; `None` for a service key.
    pub user: Option<String>,
    pub expires_at: Option<i64>,
}

/// A user as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub org: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    /// Live keys the user issued.
    pub keys: u64,
}

/// A role change: what it was and what it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    pub from: String,
    pub to: String,
}

/// A removed user and the keys revoked with it, with the key-set version of each revocation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemovedUser {
    pub revoked: Vec<(String, u64)>,
}

/// One row of the audit trail. Never a token, never a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the trail, 1 for the first action.
    pub id: u64,
    /// Unix seconds.
    pub at: i64,
    /// Who did it: `admin` for the admin token.
    pub actor: String,
    /// `user.add`, `user.set-role`, `user.remove`, `key.create`, `key.revoke`, `key.import`.
    pub action: String,
    /// What it was done to: `user <org>/<name>`, `key <key-id>`, `keys` (an import).
    pub object: String,
    /// The facts of the change (`role viewer -> member`, `org demo role viewer user alice`).
    pub detail: String,
}

/// How often a create retries when the random key-id is already taken. With 36^12 possible ids a
/// second attempt is already astronomically rare; the bound only guards against a broken RNG.
const KEY_ID_ATTEMPTS: usize = 8;

/// A new token whose key-id `taken` says was never used in the database.
pub(crate) fn unused_token(
    mut taken: impl FnMut(&str) -> StoreResult<bool>,
) -> StoreResult<NewToken> {
    for _ in 0..KEY_ID_ATTEMPTS {
        let candidate = crate::keys::token::generate_token();
        if !taken(&candidate.key_id)? {
            return Ok(candidate);
        }
    }
    Err(StoreError::Unusable(
        "could not find an unused key-id; is the RNG broken?".into(),
    ))
}

impl CreatedKey {
    /// The outcome of a create, and the audit row's object and detail for it.
    pub(crate) fn issued(
        token: NewToken,
        (org, role, user): (String, String, Option<String>),
        new_key: &NewKey,
        version: u64,
    ) -> (CreatedKey, String, String) {
        let issued_by = user
            .as_deref()
            .map_or_else(String::new, |user| format!(" user {user}"));
        let object = format!("key {}", token.key_id);
        let detail = format!("org {org} role {role}{issued_by}");
        let created = CreatedKey {
            info: KeyInfo {
                key_id: token.key_id.clone(),
                org,
                role,
                user,
                name: new_key.name.clone(),
                created_at: new_key.created_at,
                expires_at: new_key.expires_at,
            },
            token,
            version,
        };
        (created, object, detail)
    }
}

/// The audit object of a user.
pub(crate) fn user_object(org: &str, name: &str) -> String {
    format!("user {org}/{name}")
}

impl ImportOutcome {
    /// All of `rows` committed, the last at `version`.
    pub(crate) fn imported(rows: &[ImportRow], version: u64) -> ImportOutcome {
        ImportOutcome::Imported {
            count: u64::try_from(rows.len()).unwrap_or(u64::MAX),
            version,
        }
    }
}

/// The audit detail of an import batch.
pub(crate) fn import_detail(rows: &[ImportRow], version: u64) -> String {
    let first = rows.first().map_or("", |row| row.key_id.as_str());
    format!(
        "{} rows, first key {first}, up to version {version}",
        rows.len()
    )
}

/// The admin who makes a write, and when: recorded in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub at: i64,
}

/// One entry of the change log as the sync API sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub version: u64,
    /// The key of a key change; the org of a policy change.
    pub key_id: String,
    /// `Some` for an upsert of a key that still exists; `None` for a revocation, and also for an
    /// upsert whose key was revoked later (its hash must never be sent again).
    pub hash_row: Option<HashRow>,
    /// `Some` for a policy change: the org's policy (canonical JSON) as of this version, or
    /// `None` inside when it was removed.
    pub policy: Option<Option<String>>,
}

/// An org's tool policy as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    pub org: String,
    /// The version of the change that set it.
    pub version: u64,
    pub set_at: i64,
    /// Canonical JSON (`mcp_guard_protocol::policy::Policy`).
    pub document: String,
    /// The document as the operator wrote it (YAML or JSON, comments included).
    pub source: String,
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
    /// Issues a new key: its row, its upsert change and its audit row in one transaction.
    fn create_key(&self, new_key: &NewKey, actor: &Actor) -> StoreResult<CreatedKey>;
    /// Revokes a key: deletes its hash row and appends a revoke change, in one transaction.
    /// `None` when no such key exists.
    fn revoke_key(&self, key_id: &str, actor: &Actor) -> StoreResult<Option<u64>>;
    /// Adds imported hash rows (already validated), all or nothing.
    fn import_keys(&self, rows: &[ImportRow], actor: &Actor) -> StoreResult<ImportOutcome>;
    /// Adds a user (unique within its org).
    fn add_user(&self, org: &str, name: &str, role: &str, actor: &Actor) -> StoreResult<UserInfo>;
    /// Changes a user's role; keys the user issued keep the role they were created with.
    fn set_user_role(
        &self,
        org: &str,
        name: &str,
        role: &str,
        actor: &Actor,
    ) -> StoreResult<RoleChange>;
    /// Removes a user: refused while it has live keys, unless `revoke_keys`, which revokes them
    /// in the same transaction.
    fn remove_user(
        &self,
        org: &str,
        name: &str,
        revoke_keys: bool,
        actor: &Actor,
    ) -> StoreResult<RemovedUser>;
    /// All users, by org then name.
    fn list_users(&self) -> StoreResult<Vec<UserInfo>>;
    /// Up to `limit` audit rows at or after `since` (Unix seconds), oldest first.
    fn audit_since(&self, since: i64, limit: usize) -> StoreResult<Vec<AuditEvent>>;
    /// Sets an org's tool policy (already validated): its row, its change and its audit row in
    /// one transaction. Returns the version.
    fn set_policy(
        &self,
        org: &str,
        document: &str,
        source: &str,
        summary: &str,
        actor: &Actor,
    ) -> StoreResult<u64>;
    /// Removes an org's policy (every role may call every tool again). Refused when it has none.
    fn remove_policy(&self, org: &str, actor: &Actor) -> StoreResult<u64>;
    /// The org's current policy, if it has one.
    fn policy(&self, org: &str) -> StoreResult<Option<StoredPolicy>>;
    /// The roles in use in an org: of its users and of its live keys, sorted.
    fn roles_in_org(&self, org: &str) -> StoreResult<Vec<String>>;
    /// All live keys, oldest first.
    fn list_keys(&self) -> StoreResult<Vec<KeyInfo>>;
    /// The version of the newest change (0 for an empty log).
    fn current_version(&self) -> StoreResult<u64>;
    /// Live keys (expired ones included).
    fn key_count(&self) -> StoreResult<u64>;
    /// Up to `limit` changes after `since`, oldest first, with the current version, from one
    /// snapshot.
    fn changes_since(&self, since: u64, limit: usize) -> StoreResult<ChangesRead>;
    /// Calls `on_version` with the current version whenever another process may have committed
    /// a change, until it returns false. SQLite has one writing process, which announces its
    /// own writes: nothing to follow.
    fn follow_versions(&self, _on_version: VersionListener) {}
    /// Shares with the other replicas that `proxy` has applied `version` and is live until
    /// `live_until` (Unix ms). One SQLite node has no other replica: nothing to share.
    fn record_proxy(&self, _proxy: &str, _version: u64, _live_until: u64) -> StoreResult<()> {
        Ok(())
    }
    /// The proxies every replica has shared that are live at `now` (Unix ms): name, applied
    /// version, live until.
    fn live_proxies(&self, _now: u64) -> StoreResult<Vec<(String, u64, u64)>> {
        Ok(Vec::new())
    }
}

/// Told the database's current version; returns false to stop listening.
pub type VersionListener = std::sync::Arc<dyn Fn(u64) -> bool + Send + Sync>;

/// Opens the database `db`: a `postgres://` or `postgresql://` URL, else a SQLite file, created
/// if it does not exist.
pub fn open(db: &Path) -> StoreResult<Box<dyn KeyStore>> {
    match db.to_str().filter(|db| is_postgres_url(db)) {
        Some(url) => Ok(Box::new(PgStore::open(url)?)),
        None => Ok(Box::new(SqliteStore::open(db)?)),
    }
}
