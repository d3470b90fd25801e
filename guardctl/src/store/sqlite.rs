//! The SQLite store: the current keys, the append-only change log that versions the key set, and
//! the database epoch, in one file.
//! Writes go through one
//! connection behind a mutex (SQLite has one writer anyway); reads use a small pool of
//! connections so that long sync pages or key listings do not hold up each other. WAL mode lets
//! readers run while a write commits, and `synchronous=FULL` makes every acknowledged change
//! durable before the client hears about it.

use super::{
    import_detail, unused_token, user_object, Actor, AuditEvent, Change, ChangesRead, CreatedKey,
    HashRow, ImportOutcome, Issuer, KeyInfo, KeyStore, NewKey, Refusal, RemovedUser, RoleChange,
    StoreError, StoreResult, StoredPolicy, UserInfo,
};
use crate::keys::import::{ImportRow, DEFAULT_NAME};
use crate::keys::token;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Schema version kept in `PRAGMA user_version`. 1: keys and changes; 2: users, the issuing
/// user of a key, the audit trail; 3: tool policies, versioned in the same change log.
const SCHEMA_VERSION: i64 = 3;
/// Read connections kept open for reuse. The server runs at most this many reads at once.
pub const READER_POOL_SIZE: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    key_id     TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL,
    org        TEXT NOT NULL,
    role       TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    user       TEXT
);
-- One log for keys and policies, so that a proxy at version N has every change up to N of
-- both. A policy change's `key_id` holds the org.
CREATE TABLE IF NOT EXISTS changes (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id  TEXT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('upsert', 'revoke', 'policy'))
);
-- Lets a create check that a new key-id was never used before, revoked keys included,
-- so a key-id always names one key for the whole life of the database.
CREATE INDEX IF NOT EXISTS changes_by_key_id ON changes (key_id);
";

/// What schema 2 adds; run after `keys` has its `user` column.
const SCHEMA_2: &str = "
CREATE TABLE IF NOT EXISTS users (
    org        TEXT NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org, name)
);
CREATE INDEX IF NOT EXISTS keys_by_user ON keys (org, user);
CREATE TABLE IF NOT EXISTS audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at);
";

/// Schema 3: every policy an org ever had, by the version of the change that set it
/// (`document` NULL: removed). The newest row of an org is its policy.
const SCHEMA_3: &str = "
CREATE TABLE IF NOT EXISTS policies (
    version  INTEGER PRIMARY KEY,
    org      TEXT NOT NULL,
    document TEXT,
    source   TEXT,
    set_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS policies_by_org ON policies (org, version);
";

/// Schema 1 and 2 logs allow only key changes; SQLite cannot alter a CHECK, so the table is
/// rebuilt with its rows and versions (AUTOINCREMENT carries on from the largest).
const WIDEN_CHANGES: &str = "
CREATE TABLE changes_v3 (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id  TEXT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('upsert', 'revoke', 'policy'))
);
INSERT INTO changes_v3 (version, key_id, kind) SELECT version, key_id, kind FROM changes;
DROP TABLE changes;
ALTER TABLE changes_v3 RENAME TO changes;
CREATE INDEX changes_by_key_id ON changes (key_id);
";

pub struct SqliteStore {
    path: PathBuf,
    epoch: String,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating it (schema and epoch) if it does not exist.
    /// The folder must already exist.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        create_private_file(path)?;
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unusable(format!(
                "{}: cannot switch to WAL journal mode (got {mode})",
                path.display()
            )));
        }
        let epoch = init_schema(&mut writer)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            epoch,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A poisoned lock only means another thread panicked while holding it; its open
        // transaction was rolled back when dropped, so the connection is still sound.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `read` on a pooled read connection, opening one if the pool is empty.
    fn with_reader<T>(
        &self,
        read: impl FnOnce(&mut Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open(&self.path)?;
                configure(&conn)?;
                conn.pragma_update(None, "query_only", true)?;
                conn
            }
        };
        let result = read(&mut conn);
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < READER_POOL_SIZE {
            pool.push(conn);
        }
        result
    }
}

impl KeyStore for SqliteStore {
    /// Random 16-hex identifier chosen when the database was created. A proxy that sees a
    /// different epoch knows its versions mean nothing here and reloads from scratch.
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn max_concurrent_reads(&self) -> usize {
        READER_POOL_SIZE
    }

    /// Issues a new key: inserts the key row, its 'upsert' change and its audit row in one
    /// transaction. A user's key takes the user's role as it is in this transaction.
    fn create_key(&self, new_key: &NewKey, actor: &Actor) -> StoreResult<CreatedKey> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (org, role, user) = match &new_key.issuer {
            Issuer::Service { org, role } => (org.clone(), role.clone(), None),
            Issuer::User { org, name } => {
                let role = user_role(&tx, org, name)?;
                (org.clone(), role, Some(name.clone()))
            }
        };
        let token = unused_token(|key_id| {
            Ok(tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM keys WHERE key_id = ?1)
                     OR EXISTS (SELECT 1 FROM changes WHERE key_id = ?1)",
                [key_id],
                |row| row.get(0),
            )?)
        })?;
        tx.execute(
            "INSERT INTO keys (key_id, sha256, org, role, name, created_at, expires_at, user)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                token.key_id,
                token.sha256,
                org,
                role,
                new_key.name,
                new_key.created_at,
                new_key.expires_at,
                user
            ],
        )?;
        let version = insert_change(&tx, &token.key_id, "upsert")?;
        let (created, object, detail) =
            CreatedKey::issued(token, (org, role, user), new_key, version);
        audit(&tx, actor, "key.create", &object, &detail)?;
        tx.commit()?;
        Ok(created)
    }

    /// Revokes a key: deletes its row (and so its hash) and appends a 'revoke' change, in one
    /// transaction. Returns the version of the change, or `None` when no such key exists.
    fn revoke_key(&self, key_id: &str, actor: &Actor) -> StoreResult<Option<u64>> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = revoke_in(&tx, key_id, actor)?;
        if version.is_some() {
            tx.commit()?;
        } // else dropping `tx` rolls back the empty transaction
        Ok(version)
    }

    /// Adds imported hash rows (already validated) in one transaction: a key row and an
    /// 'upsert' change each, in the given order. A key-id already used in this database, by a
    /// live or a revoked key, or twice in `rows`, refuses the whole batch: the outcome names the
    /// first offending row and nothing is written.
    fn import_keys(&self, rows: &[ImportRow], actor: &Actor) -> StoreResult<ImportOutcome> {
        let created_at = actor.at;
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut version = read_current_version(&tx)?;
        {
            let mut taken = tx.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM keys WHERE key_id = ?1)
                     OR EXISTS (SELECT 1 FROM changes WHERE key_id = ?1)",
            )?;
            let mut insert_key = tx.prepare_cached(
                "INSERT INTO keys (key_id, sha256, org, role, name, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut insert_change =
                tx.prepare_cached("INSERT INTO changes (key_id, kind) VALUES (?1, 'upsert')")?;
            for (index, row) in rows.iter().enumerate() {
                // Earlier rows of this batch are already inserted, so a repeat is caught too.
                if taken.query_row([&row.key_id], |r| r.get::<_, bool>(0))? {
                    return Ok(ImportOutcome::Duplicate { index });
                }
                insert_key.execute(params![
                    row.key_id,
                    row.sha256,
                    row.org,
                    row.role,
                    row.name.as_deref().unwrap_or(DEFAULT_NAME),
                    created_at,
                    row.expires_at
                ])?;
                insert_change.execute([&row.key_id])?;
                version = u64::try_from(tx.last_insert_rowid()).unwrap_or(0);
            }
        }
        audit(
            &tx,
            actor,
            "key.import",
            "keys",
            &import_detail(rows, version),
        )?;
        tx.commit()?;
        Ok(ImportOutcome::imported(rows, version))
    }

    fn set_policy(
        &self,
        org: &str,
        document: &str,
        source: &str,
        summary: &str,
        actor: &Actor,
    ) -> StoreResult<u64> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = insert_change(&tx, org, "policy")?;
        tx.execute(
            "INSERT INTO policies (version, org, document, source, set_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![version_param(version), org, document, source, actor.at],
        )?;
        audit(&tx, actor, "policy.set", &format!("policy {org}"), summary)?;
        tx.commit()?;
        Ok(version)
    }

    fn remove_policy(&self, org: &str, actor: &Actor) -> StoreResult<u64> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if current_policy(&tx, org)?.is_none() {
            return Err(StoreError::Refused(Refusal::NoSuchPolicy {
                org: org.into(),
            }));
        }
        let version = insert_change(&tx, org, "policy")?;
        tx.execute(
            "INSERT INTO policies (version, org, document, source, set_at)
             VALUES (?1, ?2, NULL, NULL, ?3)",
            params![version_param(version), org, actor.at],
        )?;
        audit(&tx, actor, "policy.remove", &format!("policy {org}"), "")?;
        tx.commit()?;
        Ok(version)
    }

    fn policy(&self, org: &str) -> StoreResult<Option<StoredPolicy>> {
        self.with_reader(|conn| current_policy(conn, org))
    }

    fn roles_in_org(&self, org: &str) -> StoreResult<Vec<String>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare(
                "SELECT role FROM users WHERE org = ?1
                 UNION SELECT role FROM keys WHERE org = ?1
                 ORDER BY role",
            )?;
            let rows = stmt.query_map([org], |row| row.get::<_, String>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// All live keys, oldest first. SQLite gives each new row a rowid above every existing
    /// one, so rowid order is creation order without an extra index.
    fn list_keys(&self) -> StoreResult<Vec<KeyInfo>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare(
                "SELECT key_id, org, role, user, name, created_at, expires_at FROM keys
                 ORDER BY rowid",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(KeyInfo {
                    key_id: row.get(0)?,
                    org: row.get(1)?,
                    role: row.get(2)?,
                    user: row.get(3)?,
                    name: row.get(4)?,
                    created_at: row.get(5)?,
                    expires_at: row.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn add_user(&self, org: &str, name: &str, role: &str, actor: &Actor) -> StoreResult<UserInfo> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let inserted = tx.execute(
            "INSERT INTO users (org, name, role, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (org, name) DO NOTHING",
            params![org, name, role, actor.at],
        )?;
        if inserted == 0 {
            return Err(refused_exists(org, name));
        }
        audit(
            &tx,
            actor,
            "user.add",
            &user_object(org, name),
            &format!("role {role}"),
        )?;
        tx.commit()?;
        Ok(UserInfo {
            org: org.into(),
            name: name.into(),
            role: role.into(),
            created_at: actor.at,
            keys: 0,
        })
    }

    fn set_user_role(
        &self,
        org: &str,
        name: &str,
        role: &str,
        actor: &Actor,
    ) -> StoreResult<RoleChange> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let from = user_role(&tx, org, name)?;
        tx.execute(
            "UPDATE users SET role = ?3 WHERE org = ?1 AND name = ?2",
            params![org, name, role],
        )?;
        let detail = format!("role {from} -> {role}");
        audit(
            &tx,
            actor,
            "user.set-role",
            &user_object(org, name),
            &detail,
        )?;
        tx.commit()?;
        Ok(RoleChange {
            from,
            to: role.into(),
        })
    }

    fn remove_user(
        &self,
        org: &str,
        name: &str,
        revoke_keys: bool,
        actor: &Actor,
    ) -> StoreResult<RemovedUser> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        user_role(&tx, org, name)?;
        let key_ids = {
            let mut stmt =
                tx.prepare("SELECT key_id FROM keys WHERE org = ?1 AND user = ?2 ORDER BY rowid")?;
            let rows = stmt.query_map([org, name], |row| row.get::<_, String>(0))?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        if !key_ids.is_empty() && !revoke_keys {
            return Err(StoreError::Refused(Refusal::UserHasKeys {
                org: org.into(),
                name: name.into(),
                keys: u64::try_from(key_ids.len()).unwrap_or(u64::MAX),
            }));
        }
        let mut removed = RemovedUser::default();
        for key_id in key_ids {
            if let Some(version) = revoke_in(&tx, &key_id, actor)? {
                removed.revoked.push((key_id, version));
            }
        }
        tx.execute(
            "DELETE FROM users WHERE org = ?1 AND name = ?2",
            [org, name],
        )?;
        let detail = format!("{} key(s) revoked with it", removed.revoked.len());
        audit(&tx, actor, "user.remove", &user_object(org, name), &detail)?;
        tx.commit()?;
        Ok(removed)
    }

    fn list_users(&self) -> StoreResult<Vec<UserInfo>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare(
                "SELECT u.org, u.name, u.role, u.created_at,
                        (SELECT COUNT(*) FROM keys AS k WHERE k.org = u.org AND k.user = u.name)
                 FROM users AS u ORDER BY u.org, u.name",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(UserInfo {
                    org: row.get(0)?,
                    name: row.get(1)?,
                    role: row.get(2)?,
                    created_at: row.get(3)?,
                    keys: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn audit_since(&self, since: i64, limit: usize) -> StoreResult<Vec<AuditEvent>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, at, actor, action, object, detail FROM audit
                 WHERE at >= ?1 ORDER BY id LIMIT ?2",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![since, limit], |row| {
                Ok(AuditEvent {
                    id: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                    at: row.get(1)?,
                    actor: row.get(2)?,
                    action: row.get(3)?,
                    object: row.get(4)?,
                    detail: row.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The version of the newest change (0 for an empty log).
    fn current_version(&self) -> StoreResult<u64> {
        self.with_reader(|conn| read_current_version(conn))
    }

    fn key_count(&self) -> StoreResult<u64> {
        self.with_reader(|conn| {
            let count: i64 = conn.query_row("SELECT COUNT(*) FROM keys", [], |row| row.get(0))?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    /// Up to `limit` changes with a version above `since`, oldest first, together with the
    /// current version, all from one snapshot of the database.
    fn changes_since(&self, since: u64, limit: usize) -> StoreResult<ChangesRead> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let current_version = read_current_version(&tx)?;
            let changes = {
                let mut stmt = tx.prepare_cached(
                    "SELECT c.version, c.key_id, k.sha256, k.org, k.role, k.expires_at, k.user,
                            c.kind = 'policy', p.document
                     FROM changes AS c
                     LEFT JOIN keys AS k ON c.kind = 'upsert' AND k.key_id = c.key_id
                     LEFT JOIN policies AS p ON c.kind = 'policy' AND p.version = c.version
                     WHERE c.version > ?1
                     ORDER BY c.version
                     LIMIT ?2",
                )?;
                let since = i64::try_from(since).unwrap_or(i64::MAX);
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = stmt.query_map(params![since, limit], |row| {
                    let version: i64 = row.get(0)?;
                    let sha256: Option<String> = row.get(2)?;
                    let hash_row = match sha256 {
                        Some(sha256) => Some(HashRow {
                            sha256,
                            org: row.get(3)?,
                            role: row.get(4)?,
                            user: row.get(6)?,
                            expires_at: row.get(5)?,
                        }),
                        None => None,
                    };
                    let is_policy: bool = row.get(7)?;
                    Ok(Change {
                        version: u64::try_from(version).unwrap_or(0),
                        key_id: row.get(1)?,
                        hash_row,
                        policy: if is_policy { Some(row.get(8)?) } else { None },
                    })
                })?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            tx.finish()?;
            Ok(ChangesRead {
                changes,
                current_version,
            })
        })
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(err))
    }
}

/// Creates an empty database file readable by its owner only; SQLite gives its `-wal` and `-shm`
/// files the same mode. An existing file is left as it is.
fn create_private_file(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(StoreError::Unusable(format!(
            "cannot create {}: {err}",
            path.display()
        ))),
    }
}

/// Per-connection settings (journal mode is a property of the file and is set once in `open`).
fn configure(conn: &Connection) -> StoreResult<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Creates the tables on a new database and returns the epoch, minting it on first use.
fn init_schema(conn: &mut Connection) -> StoreResult<String> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let schema_version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if schema_version > SCHEMA_VERSION {
        return Err(StoreError::Unusable(format!(
            "database schema version {schema_version} is newer than this guardctl understands \
             ({SCHEMA_VERSION})"
        )));
    }
    tx.execute_batch(SCHEMA)?;
    if schema_version == 1 {
        // Keys made before users existed are service keys: no issuing user.
        tx.execute_batch("ALTER TABLE keys ADD COLUMN user TEXT")?;
    }
    tx.execute_batch(SCHEMA_2)?;
    if (1..3).contains(&schema_version) {
        tx.execute_batch(WIDEN_CHANGES)?;
    }
    tx.execute_batch(SCHEMA_3)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    let existing: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE name = 'epoch'", [], |row| {
            row.get(0)
        })
        .optional()?;
    let epoch = match existing {
        Some(epoch) => epoch,
        None => {
            let epoch = token::random_hex(16);
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('epoch', ?1)",
                [&epoch],
            )?;
            epoch
        }
    };
    tx.commit()?;
    Ok(epoch)
}

fn insert_change(conn: &Connection, key_id: &str, kind: &str) -> StoreResult<u64> {
    conn.execute(
        "INSERT INTO changes (key_id, kind) VALUES (?1, ?2)",
        [key_id, kind],
    )?;
    Ok(u64::try_from(conn.last_insert_rowid()).unwrap_or(0))
}

/// Deletes a key's row and appends its revoke change and audit row; `None` when no such key.
fn revoke_in(conn: &Connection, key_id: &str, actor: &Actor) -> StoreResult<Option<u64>> {
    if conn.execute("DELETE FROM keys WHERE key_id = ?1", [key_id])? == 0 {
        return Ok(None);
    }
    let version = insert_change(conn, key_id, "revoke")?;
    audit(conn, actor, "key.revoke", &format!("key {key_id}"), "")?;
    Ok(Some(version))
}

/// Appends one row to the audit trail, in the caller's transaction.
fn audit(
    conn: &Connection,
    actor: &Actor,
    action: &str,
    object: &str,
    detail: &str,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, action, object, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![actor.at, actor.name, action, object, detail])?;
    Ok(())
}

fn version_param(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// The org's newest policy row, unless it removed its policy.
fn current_policy(conn: &Connection, org: &str) -> StoreResult<Option<StoredPolicy>> {
    let row = conn
        .query_row(
            "SELECT version, set_at, document, source FROM policies
             WHERE org = ?1 ORDER BY version DESC LIMIT 1",
            [org],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                ))
            },
        )
        .optional()?;
    Ok(row.and_then(|(version, set_at, document, source)| {
        Some(StoredPolicy {
            org: org.into(),
            version: u64::try_from(version).unwrap_or(0),
            set_at,
            document: document?,
            source: source.unwrap_or_default(),
        })
    }))
}

/// The current role of a user, or the refusal that names it.
fn user_role(conn: &Connection, org: &str, name: &str) -> StoreResult<String> {
    conn.query_row(
        "SELECT role FROM users WHERE org = ?1 AND name = ?2",
        [org, name],
        |row| row.get(0),
    )
    .optional()?
    .ok_or_else(|| {
        StoreError::Refused(Refusal::NoSuchUser {
            org: org.into(),
            name: name.into(),
        })
    })
}

fn refused_exists(org: &str, name: &str) -> StoreError {
    StoreError::Refused(Refusal::UserExists {
        org: org.into(),
        name: name.into(),
    })
}

fn read_current_version(conn: &Connection) -> StoreResult<u64> {
    let version: i64 =
        conn.query_row("SELECT COALESCE(MAX(version), 0) FROM changes", [], |row| {
            row.get(0)
        })?;
    Ok(u64::try_from(version).unwrap_or(0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn temp_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("guard.db")).expect("open store");
        (dir, store)
    }

    pub(crate) const ADMIN: Actor<'static> = Actor {
        name: "admin",
        at: 1_700_000_000,
    };

    pub(crate) fn actor_at(at: i64) -> Actor<'static> {
        Actor { name: "admin", at }
    }

    pub(crate) fn new_key(name: &str) -> NewKey {
        NewKey {
            issuer: Issuer::Service {
                org: "demo".into(),
                role: "admin".into(),
            },
            name: name.into(),
            created_at: 1_700_000_000,
            expires_at: None,
        }
    }

    #[test]
    fn create_list_revoke() {
        let (_dir, store) = temp_store();
        assert_eq!(store.current_version().unwrap(), 0);
        let a = store.create_key(&new_key("a"), &ADMIN).unwrap();
        let b = store
            .create_key(
                &NewKey {
                    expires_at: Some(1_700_000_090),
                    ..new_key("b")
                },
                &ADMIN,
            )
            .unwrap();
        assert_eq!((a.version, b.version), (1, 2));
        assert_eq!(store.current_version().unwrap(), 2);
        assert_eq!(store.key_count().unwrap(), 2);

        let listed = store.list_keys().unwrap();
        assert_eq!(listed, vec![a.info.clone(), b.info.clone()]);
        assert_eq!(listed[1].expires_at, Some(1_700_000_090));

        assert_eq!(store.revoke_key(&a.info.key_id, &ADMIN).unwrap(), Some(3));
        assert_eq!(store.revoke_key(&a.info.key_id, &ADMIN).unwrap(), None);
        assert_eq!(store.revoke_key("nosuchkey123", &ADMIN).unwrap(), None);
        assert_eq!(store.current_version().unwrap(), 3);
        assert_eq!(store.list_keys().unwrap(), vec![b.info]);
    }

    fn import_row(key_id: &str, sha256: &str) -> ImportRow {
        ImportRow {
            key_id: key_id.into(),
            sha256: sha256.into(),
            org: "acme".into(),
            role: "reader".into(),
            expires_at: Some(1_900_000_000),
            name: Some("migrated".into()),
        }
    }

    #[test]
    fn import_batches_version_every_row_and_refuse_reused_key_ids() {
        let (_dir, store) = temp_store();
        let live = store.create_key(&new_key("live"), &ADMIN).unwrap();
        let gone = store.create_key(&new_key("gone"), &ADMIN).unwrap();
        store.revoke_key(&gone.info.key_id, &ADMIN).unwrap();
        let hash = |n: u8| format!("{n:02x}").repeat(32);

        let rows = vec![
            import_row("imported01", &hash(1)),
            import_row("imported02", &hash(2)),
        ];
        assert_eq!(
            store.import_keys(&rows, &actor_at(1_700_000_100)).unwrap(),
            ImportOutcome::Imported {
                count: 2,
                version: 5
            }
        );
        let read = store.changes_since(3, 10).unwrap();
        assert_eq!(read.current_version, 5);
        assert_eq!(read.changes.len(), 2);
        assert_eq!(read.changes[1].key_id, "imported02");
        assert_eq!(
            read.changes[1].hash_row,
            Some(HashRow {
                sha256: hash(2),
                org: "acme".into(),
                role: "reader".into(),
                user: None,
                expires_at: Some(1_900_000_000),
            })
        );
        let listed = store.list_keys().unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[2].name, "migrated");
        assert_eq!(listed[2].created_at, 1_700_000_100);

        // A live key-id, a revoked one, a repeat within the batch: refused, nothing written.
        for (batch, index) in [
            (
                vec![
                    import_row("imported03", &hash(3)),
                    import_row(&live.info.key_id, &hash(4)),
                ],
                1,
            ),
            (vec![import_row(&gone.info.key_id, &hash(5))], 0),
            (vec![import_row("imported01", &hash(6))], 0),
            (
                vec![
                    import_row("imported04", &hash(7)),
                    import_row("imported05", &hash(8)),
                    import_row("imported04", &hash(9)),
                ],
                2,
            ),
        ] {
            assert_eq!(
                store.import_keys(&batch, &actor_at(1_700_000_200)).unwrap(),
                ImportOutcome::Duplicate { index }
            );
        }
        assert_eq!(store.current_version().unwrap(), 5);
        assert_eq!(store.key_count().unwrap(), 3);
        assert!(store
            .list_keys()
            .unwrap()
            .iter()
            .all(|k| k.key_id != "imported03" && k.key_id != "imported04"));
    }

    #[test]
    fn no_plaintext_token_is_stored() {
        let (dir, store) = temp_store();
        let created = store.create_key(&new_key("secretive"), &ADMIN).unwrap();
        drop(store);
        let conn = Connection::open(dir.path().join("guard.db")).unwrap();
        let (sha256, count): (String, i64) = conn
            .query_row("SELECT sha256, COUNT(*) FROM keys", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert_eq!(count, 1);
        assert_eq!(sha256, token::sha256_hex(created.token.token.as_bytes()));
        let secret = created.token.token.rsplit('_').next().unwrap();
        for file in ["guard.db", "guard.db-wal"] {
            if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "secret found in {file}"
                );
            }
        }
    }

    #[test]
    fn every_connection_runs_wal_with_synchronous_full() {
        // The SIGKILL test (tests/e2e/tests/durability.rs) cannot tell FULL from OFF: the OS
        // keeps what was written. This pins the settings that make a commit survive power loss.
        let (_dir, store) = temp_store();
        let settings = |conn: &Connection| -> (String, i64) {
            (
                conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))
                    .unwrap(),
                conn.query_row("PRAGMA synchronous", [], |row| row.get(0))
                    .unwrap(),
            )
        };
        let full = 2;
        assert_eq!(settings(&store.writer()), ("wal".to_string(), full));
        let reader = store.with_reader(|conn| Ok(settings(conn))).unwrap();
        assert_eq!(reader, ("wal".to_string(), full));
    }

    #[test]
    fn reopening_keeps_epoch_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard.db");
        let store = SqliteStore::open(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for file in ["guard.db", "guard.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let epoch = store.epoch().to_string();
        assert_eq!(epoch.len(), 16);
        assert!(epoch.bytes().all(|b| b.is_ascii_hexdigit()));
        let created = store.create_key(&new_key("kept"), &ADMIN).unwrap();
        drop(store);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.epoch(), epoch);
        assert_eq!(store.list_keys().unwrap(), vec![created.info]);
        assert_eq!(store.current_version().unwrap(), 1);

        let other = SqliteStore::open(&dir.path().join("other.db")).unwrap();
        assert_ne!(other.epoch(), epoch);
    }

    #[test]
    fn changes_since_reports_revoked_upserts_without_hash() {
        let (_dir, store) = temp_store();
        let a = store.create_key(&new_key("a"), &ADMIN).unwrap();
        let b = store.create_key(&new_key("b"), &ADMIN).unwrap();
        store.revoke_key(&a.info.key_id, &ADMIN).unwrap();

        let read = store.changes_since(0, 100).unwrap();
        assert_eq!(read.current_version, 3);
        let versions: Vec<u64> = read.changes.iter().map(|c| c.version).collect();
        assert_eq!(versions, vec![1, 2, 3]);
        assert_eq!(read.changes[0].key_id, a.info.key_id);
        assert_eq!(read.changes[0].hash_row, None, "revoked key's hash leaked");
        assert_eq!(
            read.changes[1].hash_row.as_ref().map(|h| h.sha256.clone()),
            Some(b.token.sha256.clone())
        );
        assert_eq!(read.changes[2].hash_row, None);

        let tail = store.changes_since(1, 1).unwrap();
        assert_eq!(tail.changes.len(), 1);
        assert_eq!(tail.changes[0].version, 2);
        assert!(store.changes_since(3, 10).unwrap().changes.is_empty());
        assert!(store
            .changes_since(u64::MAX, 10)
            .unwrap()
            .changes
            .is_empty());
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Unusable(_))
        ));
    }

    fn user_key(user: &str, name: &str) -> NewKey {
        NewKey {
            issuer: Issuer::User {
                org: "demo".into(),
                name: user.into(),
            },
            ..new_key(name)
        }
    }

    #[test]
    fn a_users_key_keeps_the_role_it_was_created_with() {
        let (_dir, store) = temp_store();
        store.add_user("demo", "alice", "viewer", &ADMIN).unwrap();
        let first = store
            .create_key(&user_key("alice", "first"), &ADMIN)
            .unwrap();
        assert_eq!(
            (first.info.role.as_str(), first.info.user.as_deref()),
            ("viewer", Some("alice"))
        );
        let change = store
            .set_user_role("demo", "alice", "admin", &ADMIN)
            .unwrap();
        assert_eq!(
            (change.from.as_str(), change.to.as_str()),
            ("viewer", "admin")
        );
        let second = store
            .create_key(&user_key("alice", "second"), &ADMIN)
            .unwrap();
        assert_eq!(second.info.role, "admin");
        // The first key is unchanged in the list and in what the proxies get.
        let listed = store.list_keys().unwrap();
        assert_eq!(listed, vec![first.info.clone(), second.info.clone()]);
        let rows = store.changes_since(0, 10).unwrap().changes;
        let roles: Vec<_> = rows
            .iter()
            .map(|c| c.hash_row.as_ref().unwrap().role.as_str())
            .collect();
        assert_eq!(roles, ["viewer", "admin"]);
        // A role change is not a key-set change.
        assert_eq!(store.current_version().unwrap(), 2);
    }

    #[test]
    fn users_are_unique_within_an_org_and_must_exist() {
        let (_dir, store) = temp_store();
        store.add_user("demo", "alice", "viewer", &ADMIN).unwrap();
        store.add_user("acme", "alice", "admin", &ADMIN).unwrap();
        let again = store
            .add_user("demo", "alice", "admin", &ADMIN)
            .unwrap_err();
        assert!(
            matches!(again, StoreError::Refused(Refusal::UserExists { .. })),
            "{again}"
        );
        let missing = store.create_key(&user_key("bob", "k"), &ADMIN).unwrap_err();
        assert_eq!(missing.to_string(), "no user bob in org demo");
        assert!(store.set_user_role("demo", "bob", "x", &ADMIN).is_err());
        assert!(store.remove_user("demo", "bob", true, &ADMIN).is_err());
        assert_eq!(store.current_version().unwrap(), 0);
        let users = store.list_users().unwrap();
        let names: Vec<_> = users
            .iter()
            .map(|u| (u.org.as_str(), u.role.as_str()))
            .collect();
        assert_eq!(names, [("acme", "admin"), ("demo", "viewer")]);
    }

    #[test]
    fn removing_a_user_with_keys_needs_revoke_keys_and_revokes_them_at_once() {
        let (_dir, store) = temp_store();
        store.add_user("demo", "alice", "viewer", &ADMIN).unwrap();
        let a = store.create_key(&user_key("alice", "a"), &ADMIN).unwrap();
        let b = store.create_key(&user_key("alice", "b"), &ADMIN).unwrap();
        let service = store.create_key(&new_key("service"), &ADMIN).unwrap();
        assert_eq!(store.list_users().unwrap()[0].keys, 2);

        let refused = store
            .remove_user("demo", "alice", false, &ADMIN)
            .unwrap_err();
        assert!(
            matches!(
                refused,
                StoreError::Refused(Refusal::UserHasKeys { keys: 2, .. })
            ),
            "{refused}"
        );
        assert_eq!(store.list_users().unwrap().len(), 1);
        assert_eq!(store.current_version().unwrap(), 3);

        let removed = store.remove_user("demo", "alice", true, &ADMIN).unwrap();
        assert_eq!(
            removed.revoked,
            vec![(a.info.key_id.clone(), 4), (b.info.key_id.clone(), 5)]
        );
        assert!(store.list_users().unwrap().is_empty());
        assert_eq!(store.list_keys().unwrap(), vec![service.info]);
        let page = store.changes_since(3, 10).unwrap();
        assert!(page.changes.iter().all(|c| c.hash_row.is_none()));
        // A user without keys goes without the flag.
        store.add_user("demo", "bob", "viewer", &ADMIN).unwrap();
        assert!(store
            .remove_user("demo", "bob", false, &ADMIN)
            .unwrap()
            .revoked
            .is_empty());
    }

    #[test]
    fn every_admin_action_is_audited_without_tokens_or_hashes() {
        let (_dir, store) = temp_store();
        store
            .add_user("demo", "alice", "viewer", &actor_at(10))
            .unwrap();
        let key = store
            .create_key(&user_key("alice", "k"), &actor_at(11))
            .unwrap();
        store
            .set_user_role("demo", "alice", "admin", &actor_at(12))
            .unwrap();
        store.revoke_key(&key.info.key_id, &actor_at(13)).unwrap();
        store
            .import_keys(&[import_row("imported1", &"ab".repeat(32))], &actor_at(14))
            .unwrap();
        store
            .remove_user("demo", "alice", false, &actor_at(15))
            .unwrap();
        let _ = store.remove_user("demo", "alice", false, &actor_at(16)); // refused: not audited

        let events = store.audit_since(0, 100).unwrap();
        let actions: Vec<_> = events
            .iter()
            .map(|e| (e.at, e.action.as_str(), e.object.as_str()))
            .collect();
        let key_object = format!("key {}", key.info.key_id);
        assert_eq!(
            actions,
            [
                (10, "user.add", "user demo/alice"),
                (11, "key.create", key_object.as_str()),
                (12, "user.set-role", "user demo/alice"),
                (13, "key.revoke", key_object.as_str()),
                (14, "key.import", "keys"),
                (15, "user.remove", "user demo/alice"),
            ]
        );
        assert!(events.iter().all(|e| e.actor == "admin"));
        assert_eq!(events[1].detail, "org demo role viewer user alice");
        assert_eq!(events[2].detail, "role viewer -> admin");
        let secret = key.token.token.split('_').next_back().unwrap().to_string();
        for event in &events {
            let text = format!("{} {} {}", event.action, event.object, event.detail);
            assert!(
                !text.contains(&secret) && !text.contains(&key.token.sha256),
                "{text}"
            );
            assert!(!text.contains(&"ab".repeat(32)), "{text}");
        }
        assert_eq!(store.audit_since(13, 100).unwrap().len(), 3);
        assert_eq!(store.audit_since(0, 2).unwrap().len(), 2);
    }

    /// A database made by the first schema opens, keeps its keys as service keys, and gains
    /// users and the audit trail.
    #[test]
    fn schema_1_databases_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE keys (key_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL,
                     org TEXT NOT NULL, role TEXT NOT NULL, name TEXT NOT NULL,
                     created_at INTEGER NOT NULL, expires_at INTEGER);
                 CREATE TABLE changes (version INTEGER PRIMARY KEY AUTOINCREMENT,
                     key_id TEXT NOT NULL,
                     kind TEXT NOT NULL CHECK (kind IN ('upsert', 'revoke')));
                 INSERT INTO meta VALUES ('epoch', 'e0e0e0e0e0e0e0e0');
                 INSERT INTO keys VALUES ('oldkey12', '00', 'demo', 'admin', 'old', 5, NULL);
                 INSERT INTO changes (key_id, kind) VALUES ('oldkey12', 'upsert');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.epoch(), "e0e0e0e0e0e0e0e0");
        let keys = store.list_keys().unwrap();
        assert_eq!(
            (keys[0].key_id.as_str(), keys[0].user.as_deref()),
            ("oldkey12", None)
        );
        store.add_user("demo", "alice", "viewer", &ADMIN).unwrap();
        let created = store.create_key(&user_key("alice", "new"), &ADMIN).unwrap();
        assert_eq!(created.version, 2);
        // The widened log takes policy changes and carries on numbering.
        let version = store
            .set_policy(
                "demo",
                r#"{"mode":"enforce","roles":[]}"#,
                "roles: {}",
                "",
                &ADMIN,
            )
            .unwrap();
        assert_eq!(version, 3);
        drop(store);
        // Opening again is a no-op.
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.list_keys().unwrap().len(), 2);
        assert_eq!(store.audit_since(0, 10).unwrap().len(), 3);
        let read = store.changes_since(0, 10).unwrap();
        let versions: Vec<u64> = read.changes.iter().map(|c| c.version).collect();
        assert_eq!(versions, [1, 2, 3]);
        assert_eq!(read.changes[0].key_id, "oldkey12");
        assert_eq!(
            read.changes[2].policy,
            Some(Some(r#"{"mode":"enforce","roles":[]}"#.to_string()))
        );
        assert_eq!(store.policy("demo").unwrap().unwrap().version, 3);
        assert_eq!(store.roles_in_org("demo").unwrap(), ["admin", "viewer"]);
        assert_eq!(
            store
                .create_key(&user_key("alice", "newer"), &ADMIN)
                .unwrap()
                .version,
            4
        );
    }
}
