//! The SQLite store: the current keys, the append-only change log that versions the key set, and
//! the database epoch, in one file.
//! Writes go through one
//! connection behind a mutex (SQLite has one writer anyway); reads use a small pool of
//! connections so that long sync pages or key listings do not hold up each other. WAL mode lets
//! readers run while a write commits, and `synchronous=FULL` makes every acknowledged change
//! durable before the client hears about it.

use super::{
    Change, ChangesRead, CreatedKey, HashRow, ImportOutcome, KeyInfo, KeyStore, NewKey, StoreError,
    StoreResult,
};
use crate::keys::import::{ImportRow, DEFAULT_NAME};
use crate::keys::token;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Schema version kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;
/// Read connections kept open for reuse. The server runs at most this many reads at once.
pub const READER_POOL_SIZE: usize = 4;
/// How often a create retries when the random key-id is already taken. With 36^12 possible ids a
/// second attempt is already astronomically rare; the bound only guards against a broken RNG.
const KEY_ID_ATTEMPTS: usize = 8;

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
    expires_at INTEGER
);
CREATE TABLE IF NOT EXISTS changes (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id  TEXT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('upsert', 'revoke'))
);
-- Lets a create check that a new key-id was never used before, revoked keys included,
-- so a key-id always names one key for the whole life of the database.
CREATE INDEX IF NOT EXISTS changes_by_key_id ON changes (key_id);
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

    /// Issues a new key: inserts the key row and its 'upsert' change in one transaction.
    fn create_key(&self, new_key: &NewKey) -> StoreResult<CreatedKey> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut fresh = None;
        for _ in 0..KEY_ID_ATTEMPTS {
            let candidate = token::generate_token();
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM keys WHERE key_id = ?1)
                     OR EXISTS (SELECT 1 FROM changes WHERE key_id = ?1)",
                [&candidate.key_id],
                |row| row.get(0),
            )?;
            if !taken {
                fresh = Some(candidate);
                break;
            }
        }
        let token = fresh.ok_or_else(|| {
            StoreError::Unusable("could not find an unused key-id; is the RNG broken?".into())
        })?;
        tx.execute(
            "INSERT INTO keys (key_id, sha256, org, role, name, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                token.key_id,
                token.sha256,
                new_key.org,
                new_key.role,
                new_key.name,
                new_key.created_at,
                new_key.expires_at
            ],
        )?;
        let version = insert_change(&tx, &token.key_id, "upsert")?;
        tx.commit()?;
        Ok(CreatedKey {
            info: KeyInfo {
                key_id: token.key_id.clone(),
                org: new_key.org.clone(),
                role: new_key.role.clone(),
                name: new_key.name.clone(),
                created_at: new_key.created_at,
                expires_at: new_key.expires_at,
            },
            token,
            version,
        })
    }

    /// Revokes a key: deletes its row (and so its hash) and appends a 'revoke' change, in one
    /// transaction. Returns the version of the change, or `None` when no such key exists.
    fn revoke_key(&self, key_id: &str) -> StoreResult<Option<u64>> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let deleted = tx.execute("DELETE FROM keys WHERE key_id = ?1", [key_id])?;
        if deleted == 0 {
            return Ok(None); // dropping `tx` rolls back the empty transaction
        }
        let version = insert_change(&tx, key_id, "revoke")?;
        tx.commit()?;
        Ok(Some(version))
    }

    /// Adds imported hash rows (already validated) in one transaction: a key row and an
    /// 'upsert' change each, in the given order. A key-id already used in this database, by a
    /// live or a revoked key, or twice in `rows`, refuses the whole batch: the outcome names the
    /// first offending row and nothing is written.
    fn import_keys(&self, rows: &[ImportRow], created_at: i64) -> StoreResult<ImportOutcome> {
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
        tx.commit()?;
        Ok(ImportOutcome::Imported {
            count: u64::try_from(rows.len()).unwrap_or(u64::MAX),
            version,
        })
    }

    /// All live keys, oldest first. SQLite gives each new row a rowid above every existing
    /// one, so rowid order is creation order without an extra index.
    fn list_keys(&self) -> StoreResult<Vec<KeyInfo>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare(
                "SELECT key_id, org, role, name, created_at, expires_at FROM keys ORDER BY rowid",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(KeyInfo {
                    key_id: row.get(0)?,
                    org: row.get(1)?,
                    role: row.get(2)?,
                    name: row.get(3)?,
                    created_at: row.get(4)?,
                    expires_at: row.get(5)?,
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
                    "SELECT c.version, c.key_id, k.sha256, k.org, k.role, k.expires_at
                     FROM changes AS c
                     LEFT JOIN keys AS k ON c.kind = 'upsert' AND k.key_id = c.key_id
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
                            expires_at: row.get(5)?,
                        }),
                        None => None,
                    };
                    Ok(Change {
                        version: u64::try_from(version).unwrap_or(0),
                        key_id: row.get(1)?,
                        hash_row,
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

    pub(crate) fn new_key(name: &str) -> NewKey {
        NewKey {
            org: "demo".into(),
            role: "admin".into(),
            name: name.into(),
            created_at: 1_700_000_000,
            expires_at: None,
        }
    }

    #[test]
    fn create_list_revoke() {
        let (_dir, store) = temp_store();
        assert_eq!(store.current_version().unwrap(), 0);
        let a = store.create_key(&new_key("a")).unwrap();
        let b = store
            .create_key(&NewKey {
                expires_at: Some(1_700_000_090),
                ..new_key("b")
            })
            .unwrap();
        assert_eq!((a.version, b.version), (1, 2));
        assert_eq!(store.current_version().unwrap(), 2);
        assert_eq!(store.key_count().unwrap(), 2);

        let listed = store.list_keys().unwrap();
        assert_eq!(listed, vec![a.info.clone(), b.info.clone()]);
        assert_eq!(listed[1].expires_at, Some(1_700_000_090));

        assert_eq!(store.revoke_key(&a.info.key_id).unwrap(), Some(3));
        assert_eq!(store.revoke_key(&a.info.key_id).unwrap(), None);
        assert_eq!(store.revoke_key("nosuchkey123").unwrap(), None);
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
        let live = store.create_key(&new_key("live")).unwrap();
        let gone = store.create_key(&new_key("gone")).unwrap();
        store.revoke_key(&gone.info.key_id).unwrap();
        let hash = |n: u8| format!("{n:02x}").repeat(32);

        let rows = vec![
            import_row("imported01", &hash(1)),
            import_row("imported02", &hash(2)),
        ];
        assert_eq!(
            store.import_keys(&rows, 1_700_000_100).unwrap(),
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
                store.import_keys(&batch, 1_700_000_200).unwrap(),
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
        let created = store.create_key(&new_key("secretive")).unwrap();
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
        let created = store.create_key(&new_key("kept")).unwrap();
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
        let a = store.create_key(&new_key("a")).unwrap();
        let b = store.create_key(&new_key("b")).unwrap();
        store.revoke_key(&a.info.key_id).unwrap();

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
}
