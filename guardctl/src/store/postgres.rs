//! The PostgreSQL store: the same tables and guarantees as `sqlite.rs`, for guardctl replicas
//! that share one database (`--db postgres://...`).
//!
//! **Versions every replica agrees on.** A write takes its version from the one row of
//! `version_counter`, updated inside the write's own transaction: the row lock orders the
//! commits, so version N commits only after N-1 has, and a reader whose snapshot shows version N
//! sees every change up to N. (A sequence would not: two writers can commit N+1 before N, and a
//! long-poll at `since=N` would skip N for good.) The epoch lives in `meta`, so every replica
//! reports the same one.
//!
//! **Wake-ups across replicas.** Every change also sends `NOTIFY guardctl_versions` (delivered
//! at commit). Each replica keeps one connection that LISTENs and, on every notification, on
//! every reconnect (notifications sent while it was down are lost) and at least every
//! [`SAFETY_POLL`], re-reads the version from the counter row: the notification is a hint, the
//! row is the truth. LISTEN needs a session of its own: a pooler in transaction mode
//! (PgBouncer's default) breaks it, and it must reach the primary.

use super::copy::{Installation, Restored};
use super::{
    import_detail, unused_token, user_object, Actor, AuditEvent, Change, ChangesRead, CreatedKey,
    HashRow, ImportOutcome, Issuer, KeyInfo, KeyStore, NewKey, Refusal, RemovedUser, RoleChange,
    StoreError, StoreResult, StoredPolicy, UserInfo,
};
use crate::keys::import::{ImportRow, DEFAULT_NAME};
use crate::keys::token;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel, NoTls, Transaction};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;
use tracing::{debug, warn};

/// Schema version in `meta`; the same history as SQLite's `user_version` (3: policies).
const SCHEMA_VERSION: i64 = 3;
/// The channel of version notifications.
const CHANNEL: &str = "guardctl_versions";
/// The slowest a replica learns of another's change when notifications are lost.
pub const SAFETY_POLL: Duration = Duration::from_secs(2);
/// Read connections kept open for reuse.
pub const READER_POOL_SIZE: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS version_counter (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO version_counter (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS keys (
    seq        BIGSERIAL UNIQUE,
    key_id     TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL,
    org        TEXT NOT NULL,
    role       TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    \"user\"   TEXT
);
CREATE TABLE IF NOT EXISTS changes (
    version BIGINT PRIMARY KEY,
    key_id  TEXT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('upsert', 'revoke', 'policy'))
);
CREATE INDEX IF NOT EXISTS changes_by_key_id ON changes (key_id);
CREATE TABLE IF NOT EXISTS users (
    org        TEXT NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org, name)
);
CREATE INDEX IF NOT EXISTS keys_by_user ON keys (org, \"user\");
CREATE TABLE IF NOT EXISTS audit (
    id     BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at);
CREATE TABLE IF NOT EXISTS policies (
    version  BIGINT PRIMARY KEY,
    org      TEXT NOT NULL,
    document TEXT,
    source   TEXT,
    set_at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS policies_by_org ON policies (org, version);
CREATE TABLE IF NOT EXISTS proxies (
    proxy      TEXT PRIMARY KEY,
    version    BIGINT NOT NULL,
    live_until BIGINT NOT NULL
);
";

/// True when `db` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

impl From<postgres::Error> for StoreError {
    fn from(err: postgres::Error) -> Self {
        StoreError::Database(Box::new(err))
    }
}

pub struct PgStore {
    url: String,
    epoch: String,
    /// `None` only while a broken connection is replaced.
    writer: Mutex<Option<Client>>,
    readers: Mutex<Vec<Client>>,
    /// Proxies' confirmations are written on a connection of their own, so a wave of them never
    /// queues behind (or ahead of) the admin's writes.
    confirmations: Mutex<Option<Client>>,
}

impl PgStore {
    /// Connects, and creates the schema and the epoch if they do not exist. Several replicas
    /// may start at once: the schema is created under an advisory lock.
    pub fn open(url: &str) -> StoreResult<PgStore> {
        let mut writer = Client::connect(url, NoTls)?;
        let epoch = init_schema(&mut writer)?;
        Ok(PgStore {
            url: url.to_string(),
            epoch,
            writer: Mutex::new(Some(writer)),
            readers: Mutex::new(Vec::new()),
            confirmations: Mutex::new(None),
        })
    }

    /// Writes a whole installation (`guardctl db copy`) into this database, which must hold no
    /// key, user, policy or audit row yet, in one transaction: users, keys with their hashes,
    /// issuers and creation times (each key one upsert change, oldest first), current policies
    /// (one change each), the audit trail (renumbered, times and actors kept), an audit row for
    /// the copy itself, and a new epoch. Replicas started before it keep the old epoch until
    /// they restart: copy first.
    pub fn restore(
        &self,
        installation: &Installation,
        summary: &str,
        actor: &Actor,
    ) -> StoreResult<Restored> {
        self.write(|tx| {
            tx.execute("SELECT pg_advisory_xact_lock(724061)", &[])?;
            let used: i64 = tx
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM changes) + (SELECT COUNT(*) FROM users)
                          + (SELECT COUNT(*) FROM audit)",
                    &[],
                )?
                .get(0);
            if used > 0 {
                return Err(StoreError::Unusable(
                    "the destination database is not empty: copy into a new database".into(),
                ));
            }
            for user in &installation.users {
                tx.execute(
                    "INSERT INTO users (org, name, role, created_at) VALUES ($1, $2, $3, $4)",
                    &[&user.org, &user.name, &user.role, &user.created_at],
                )?;
            }
            let mut version = 0;
            for (key, sha256) in &installation.keys {
                tx.execute(
                    "INSERT INTO keys (key_id, sha256, org, role, name, created_at, expires_at, \"user\")
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &key.key_id,
                        sha256,
                        &key.org,
                        &key.role,
                        &key.name,
                        &key.created_at,
                        &key.expires_at,
                        &key.user,
                    ],
                )?;
                version = insert_change(tx, &key.key_id, "upsert")?;
            }
            for policy in &installation.policies {
                version = insert_change(tx, &policy.org, "policy")?;
                tx.execute(
                    "INSERT INTO policies (version, org, document, source, set_at)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &as_i64(version),
                        &policy.org,
                        &policy.document,
                        &policy.source,
                        &policy.set_at,
                    ],
                )?;
            }
            for event in &installation.audit {
                let at = Actor {
                    name: &event.actor,
                    at: event.at,
                };
                audit(tx, &at, &event.action, &event.object, &event.detail)?;
            }
            audit(tx, actor, "db.copy", "database", summary)?;
            let epoch = token::random_hex(16);
            tx.execute("UPDATE meta SET value = $1 WHERE name = 'epoch'", &[&epoch])?;
            Ok(Restored { version, epoch })
        })
    }

    /// Runs `f` on the writer connection (one writer at a time), reconnecting it if it broke.
    fn with_writer<T>(&self, f: impl FnOnce(&mut Client) -> StoreResult<T>) -> StoreResult<T> {
        let mut guard: MutexGuard<'_, Option<Client>> =
            self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let client = match guard.take() {
            Some(client) if !client.is_closed() => client,
            _ => Client::connect(&self.url, NoTls)?,
        };
        f(guard.insert(client))
    }

    /// Runs `read` in a read-only snapshot on a pooled connection.
    fn with_reader<T>(
        &self,
        read: impl FnOnce(&mut Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut client = match pooled {
            Some(client) if !client.is_closed() => client,
            _ => Client::connect(&self.url, NoTls)?,
        };
        let result = (|| {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let value = read(&mut tx)?;
            tx.commit()?;
            Ok(value)
        })();
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < READER_POOL_SIZE && !client.is_closed() {
            pool.push(client);
        }
        result
    }

    /// Runs `write` in one transaction on the writer connection; commits when it returns Ok.
    fn write<T>(
        &self,
        write: impl FnOnce(&mut Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.with_writer(|client| {
            let mut tx = client.transaction()?;
            let value = write(&mut tx)?;
            tx.commit()?;
            Ok(value)
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The sync client closes its connection with a runtime of its own, which cannot start
        // on a thread that drives async tasks (where the server drops its store): close them
        // on a plain thread.
        let writer = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let readers = std::mem::take(
            self.readers
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let confirmations = self
            .confirmations
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Ok(closing) =
            thread::Builder::new().spawn(move || drop((writer, readers, confirmations)))
        {
            let _ = closing.join();
        }
    }
}

fn init_schema(client: &mut Client) -> StoreResult<String> {
    let mut tx = client.transaction()?;
    // One replica at a time creates or upgrades the schema.
    tx.execute("SELECT pg_advisory_xact_lock(724061)", &[])?;
    tx.batch_execute(SCHEMA)?;
    let schema: Option<String> = tx
        .query_opt("SELECT value FROM meta WHERE name = 'schema_version'", &[])?
        .map(|row| row.get(0));
    let schema: i64 = schema
        .and_then(|s| s.parse().ok())
        .unwrap_or(SCHEMA_VERSION);
    if schema > SCHEMA_VERSION {
        return Err(StoreError::Unusable(format!(
            "database schema version {schema} is newer than this guardctl understands \
             ({SCHEMA_VERSION})"
        )));
    }
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('schema_version', $1)
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        &[&SCHEMA_VERSION.to_string()],
    )?;
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('epoch', $1) ON CONFLICT (name) DO NOTHING",
        &[&token::random_hex(16)],
    )?;
    let epoch: String = tx
        .query_one("SELECT value FROM meta WHERE name = 'epoch'", &[])?
        .get(0);
    tx.commit()?;
    Ok(epoch)
}

/// The next version: the counter row, locked until this transaction commits.
fn next_version(tx: &mut Transaction<'_>) -> StoreResult<u64> {
    let version: i64 = tx
        .query_one(
            "UPDATE version_counter SET version = version + 1 WHERE id = 1 RETURNING version",
            &[],
        )?
        .get(0);
    Ok(u64::try_from(version).unwrap_or(0))
}

fn insert_change(tx: &mut Transaction<'_>, key_id: &str, kind: &str) -> StoreResult<u64> {
    let version = next_version(tx)?;
    tx.execute(
        "INSERT INTO changes (version, key_id, kind) VALUES ($1, $2, $3)",
        &[&as_i64(version), &key_id, &kind],
    )?;
    // Delivered to the other replicas when (and only if) this transaction commits.
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&CHANNEL, &version.to_string()],
    )?;
    Ok(version)
}

/// One import batch in one transaction; a key-id already used refuses it whole (rolled back).
fn import_in(client: &mut Client, rows: &[ImportRow], actor: &Actor) -> StoreResult<ImportOutcome> {
    let mut tx = client.transaction()?;
    let mut version = read_current_version(&mut tx)?;
    for (index, row) in rows.iter().enumerate() {
        if key_id_taken(&mut tx, &row.key_id)? {
            // Dropping `tx` rolls the batch back.
            return Ok(ImportOutcome::Duplicate { index });
        }
        tx.execute(
            "INSERT INTO keys (key_id, sha256, org, role, name, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &row.key_id,
                &row.sha256,
                &row.org,
                &row.role,
                &row.name.as_deref().unwrap_or(DEFAULT_NAME),
                &actor.at,
                &row.expires_at,
            ],
        )?;
        version = insert_change(&mut tx, &row.key_id, "upsert")?;
    }
    audit(
        &mut tx,
        actor,
        "key.import",
        "keys",
        &import_detail(rows, version),
    )?;
    tx.commit()?;
    Ok(ImportOutcome::imported(rows, version))
}

/// The replica's listening session: LISTEN, read the version, then again on every notification,
/// timeout and reconnect, until `on_version` says stop.
fn listen(url: &str, on_version: &(dyn Fn(u64) -> bool + Send + Sync)) {
    loop {
        let mut client = match Client::connect(url, NoTls) {
            Ok(client) => client,
            Err(err) => {
                warn!(%err, "version listener cannot connect; retrying");
                thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(err) = client.batch_execute(&format!("LISTEN {CHANNEL}")) {
            warn!(%err, "version listener cannot LISTEN; retrying");
            thread::sleep(Duration::from_secs(1));
            continue;
        }
        loop {
            // The notification only says "look": the counter row says what there is.
            let version: Result<i64, _> = client
                .query_one("SELECT version FROM version_counter WHERE id = 1", &[])
                .map(|row| row.get(0));
            match version {
                Ok(version) => {
                    if !on_version(u64::try_from(version).unwrap_or(0)) {
                        return;
                    }
                }
                Err(err) => {
                    debug!(%err, "version listener lost its connection; reconnecting");
                    break;
                }
            }
            let mut notifications = client.notifications();
            let next = notifications.timeout_iter(SAFETY_POLL).next();
            match next {
                // A notification, or the safety poll's timeout: read the version again.
                Ok(_) => {}
                Err(err) => {
                    debug!(%err, "version listener lost its connection; reconnecting");
                    break;
                }
            }
            // Several notifications may be queued: one read covers them all.
            while let Ok(Some(_)) = notifications.iter().next() {}
        }
    }
}

fn as_i64(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

fn audit(
    tx: &mut Transaction<'_>,
    actor: &Actor,
    action: &str,
    object: &str,
    detail: &str,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, object, detail) VALUES ($1, $2, $3, $4, $5)",
        &[&actor.at, &actor.name, &action, &object, &detail],
    )?;
    Ok(())
}

fn revoke_in(tx: &mut Transaction<'_>, key_id: &str, actor: &Actor) -> StoreResult<Option<u64>> {
    if tx.execute("DELETE FROM keys WHERE key_id = $1", &[&key_id])? == 0 {
        return Ok(None);
    }
    let version = insert_change(tx, key_id, "revoke")?;
    audit(tx, actor, "key.revoke", &format!("key {key_id}"), "")?;
    Ok(Some(version))
}

fn user_role(tx: &mut Transaction<'_>, org: &str, name: &str) -> StoreResult<String> {
    tx.query_opt(
        "SELECT role FROM users WHERE org = $1 AND name = $2",
        &[&org, &name],
    )?
    .map(|row| row.get(0))
    .ok_or_else(|| {
        StoreError::Refused(Refusal::NoSuchUser {
            org: org.into(),
            name: name.into(),
        })
    })
}

fn key_id_taken(tx: &mut Transaction<'_>, key_id: &str) -> StoreResult<bool> {
    Ok(tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM keys WHERE key_id = $1)
                 OR EXISTS (SELECT 1 FROM changes WHERE key_id = $1 AND kind <> 'policy')",
            &[&key_id],
        )?
        .get(0))
}

fn current_policy(tx: &mut Transaction<'_>, org: &str) -> StoreResult<Option<StoredPolicy>> {
    let row = tx.query_opt(
        "SELECT version, set_at, document, source FROM policies
         WHERE org = $1 ORDER BY version DESC LIMIT 1",
        &[&org],
    )?;
    Ok(row.and_then(|row| {
        let document: Option<String> = row.get(2);
        Some(StoredPolicy {
            org: org.into(),
            version: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            set_at: row.get(1),
            document: document?,
            source: row.get::<_, Option<String>>(3).unwrap_or_default(),
        })
    }))
}

fn read_current_version(tx: &mut Transaction<'_>) -> StoreResult<u64> {
    let version: i64 = tx
        .query_one("SELECT version FROM version_counter WHERE id = 1", &[])?
        .get(0);
    Ok(u64::try_from(version).unwrap_or(0))
}

impl KeyStore for PgStore {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn location(&self) -> String {
        // Never the password: only where it is.
        match self.url.rsplit_once('@') {
            Some((_, host)) => format!("postgres://…@{host}"),
            None => self.url.clone(),
        }
    }

    fn max_concurrent_reads(&self) -> usize {
        READER_POOL_SIZE
    }

    fn create_key(&self, new_key: &NewKey, actor: &Actor) -> StoreResult<CreatedKey> {
        self.write(|tx| {
            let (org, role, user) = match &new_key.issuer {
                Issuer::Service { org, role } => (org.clone(), role.clone(), None),
                Issuer::User { org, name } => (org.clone(), user_role(tx, org, name)?, Some(name.clone())),
            };
            let token = unused_token(|key_id| key_id_taken(tx, key_id))?;
            tx.execute(
                "INSERT INTO keys (key_id, sha256, org, role, name, created_at, expires_at, \"user\")
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &token.key_id,
                    &token.sha256,
                    &org,
                    &role,
                    &new_key.name,
                    &new_key.created_at,
                    &new_key.expires_at,
                    &user,
                ],
            )?;
            let version = insert_change(tx, &token.key_id, "upsert")?;
            let (created, object, detail) =
                CreatedKey::issued(token, (org, role, user), new_key, version);
            audit(tx, actor, "key.create", &object, &detail)?;
            Ok(created)
        })
    }

    fn revoke_key(&self, key_id: &str, actor: &Actor) -> StoreResult<Option<u64>> {
        self.write(|tx| revoke_in(tx, key_id, actor))
    }

    fn import_keys(&self, rows: &[ImportRow], actor: &Actor) -> StoreResult<ImportOutcome> {
        self.with_writer(|client| import_in(client, rows, actor))
    }

    fn add_user(&self, org: &str, name: &str, role: &str, actor: &Actor) -> StoreResult<UserInfo> {
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO users (org, name, role, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (org, name) DO NOTHING",
                &[&org, &name, &role, &actor.at],
            )?;
            if inserted == 0 {
                return Err(StoreError::Refused(Refusal::UserExists {
                    org: org.into(),
                    name: name.into(),
                }));
            }
            audit(
                tx,
                actor,
                "user.add",
                &user_object(org, name),
                &format!("role {role}"),
            )?;
            Ok(UserInfo {
                org: org.into(),
                name: name.into(),
                role: role.into(),
                created_at: actor.at,
                keys: 0,
            })
        })
    }

    fn set_user_role(
        &self,
        org: &str,
        name: &str,
        role: &str,
        actor: &Actor,
    ) -> StoreResult<RoleChange> {
        self.write(|tx| {
            let from = user_role(tx, org, name)?;
            tx.execute(
                "UPDATE users SET role = $3 WHERE org = $1 AND name = $2",
                &[&org, &name, &role],
            )?;
            audit(
                tx,
                actor,
                "user.set-role",
                &user_object(org, name),
                &format!("role {from} -> {role}"),
            )?;
            Ok(RoleChange {
                from,
                to: role.into(),
            })
        })
    }

    fn remove_user(
        &self,
        org: &str,
        name: &str,
        revoke_keys: bool,
        actor: &Actor,
    ) -> StoreResult<RemovedUser> {
        self.write(|tx| {
            user_role(tx, org, name)?;
            let key_ids: Vec<String> = tx
                .query(
                    "SELECT key_id FROM keys WHERE org = $1 AND \"user\" = $2 ORDER BY seq",
                    &[&org, &name],
                )?
                .into_iter()
                .map(|row| row.get(0))
                .collect();
            if !key_ids.is_empty() && !revoke_keys {
                return Err(StoreError::Refused(Refusal::UserHasKeys {
                    org: org.into(),
                    name: name.into(),
                    keys: u64::try_from(key_ids.len()).unwrap_or(u64::MAX),
                }));
            }
            let mut removed = RemovedUser::default();
            for key_id in key_ids {
                if let Some(version) = revoke_in(tx, &key_id, actor)? {
                    removed.revoked.push((key_id, version));
                }
            }
            tx.execute(
                "DELETE FROM users WHERE org = $1 AND name = $2",
                &[&org, &name],
            )?;
            let detail = format!("{} key(s) revoked with it", removed.revoked.len());
            audit(tx, actor, "user.remove", &user_object(org, name), &detail)?;
            Ok(removed)
        })
    }

    fn list_users(&self) -> StoreResult<Vec<UserInfo>> {
        self.with_reader(|tx| {
            let rows = tx.query(
                "SELECT u.org, u.name, u.role, u.created_at,
                        (SELECT COUNT(*) FROM keys AS k WHERE k.org = u.org AND k.\"user\" = u.name)
                 FROM users AS u ORDER BY u.org, u.name",
                &[],
            )?;
            Ok(rows
                .into_iter()
                .map(|row| UserInfo {
                    org: row.get(0),
                    name: row.get(1),
                    role: row.get(2),
                    created_at: row.get(3),
                    keys: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
                })
                .collect())
        })
    }

    fn audit_since(&self, since: i64, limit: usize) -> StoreResult<Vec<AuditEvent>> {
        self.with_reader(|tx| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = tx.query(
                "SELECT id, at, actor, action, object, detail FROM audit
                 WHERE at >= $1 ORDER BY id LIMIT $2",
                &[&since, &limit],
            )?;
            Ok(rows
                .into_iter()
                .map(|row| AuditEvent {
                    id: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                    at: row.get(1),
                    actor: row.get(2),
                    action: row.get(3),
                    object: row.get(4),
                    detail: row.get(5),
                })
                .collect())
        })
    }

    fn set_policy(
        &self,
        org: &str,
        document: &str,
        source: &str,
        summary: &str,
        actor: &Actor,
    ) -> StoreResult<u64> {
        self.write(|tx| {
            let version = insert_change(tx, org, "policy")?;
            tx.execute(
                "INSERT INTO policies (version, org, document, source, set_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&as_i64(version), &org, &document, &source, &actor.at],
            )?;
            audit(tx, actor, "policy.set", &format!("policy {org}"), summary)?;
            Ok(version)
        })
    }

    fn remove_policy(&self, org: &str, actor: &Actor) -> StoreResult<u64> {
        self.write(|tx| {
            if current_policy(tx, org)?.is_none() {
                return Err(StoreError::Refused(Refusal::NoSuchPolicy {
                    org: org.into(),
                }));
            }
            let version = insert_change(tx, org, "policy")?;
            tx.execute(
                "INSERT INTO policies (version, org, document, source, set_at)
                 VALUES ($1, $2, NULL, NULL, $3)",
                &[&as_i64(version), &org, &actor.at],
            )?;
            audit(tx, actor, "policy.remove", &format!("policy {org}"), "")?;
            Ok(version)
        })
    }

    fn policy(&self, org: &str) -> StoreResult<Option<StoredPolicy>> {
        self.with_reader(|tx| current_policy(tx, org))
    }

    fn roles_in_org(&self, org: &str) -> StoreResult<Vec<String>> {
        self.with_reader(|tx| {
            let rows = tx.query(
                "SELECT role FROM users WHERE org = $1
                 UNION SELECT role FROM keys WHERE org = $1
                 ORDER BY role",
                &[&org],
            )?;
            Ok(rows.into_iter().map(|row| row.get(0)).collect())
        })
    }

    fn list_keys(&self) -> StoreResult<Vec<KeyInfo>> {
        self.with_reader(|tx| {
            let rows = tx.query(
                "SELECT key_id, org, role, \"user\", name, created_at, expires_at FROM keys
                 ORDER BY seq",
                &[],
            )?;
            Ok(rows
                .into_iter()
                .map(|row| KeyInfo {
                    key_id: row.get(0),
                    org: row.get(1),
                    role: row.get(2),
                    user: row.get(3),
                    name: row.get(4),
                    created_at: row.get(5),
                    expires_at: row.get(6),
                })
                .collect())
        })
    }

    fn current_version(&self) -> StoreResult<u64> {
        self.with_reader(read_current_version)
    }

    fn key_count(&self) -> StoreResult<u64> {
        self.with_reader(|tx| {
            let count: i64 = tx.query_one("SELECT COUNT(*) FROM keys", &[])?.get(0);
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    fn follow_versions(&self, on_version: super::VersionListener) {
        let url = self.url.clone();
        let spawned = thread::Builder::new()
            .name("guardctl-listen".into())
            .spawn(move || listen(&url, &*on_version));
        if let Err(err) = spawned {
            warn!(%err, "cannot start the version listener: other replicas' changes wake long-polls only at their timeout");
        }
    }

    fn record_proxy(&self, proxy: &str, version: u64, live_until: u64) -> StoreResult<()> {
        let mut guard = self
            .confirmations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let client = match guard.take() {
            Some(client) if !client.is_closed() => client,
            _ => Client::connect(&self.url, NoTls)?,
        };
        let client = guard.insert(client);
        // Old rows go with the writes: a proxy gone for a day is not worth keeping.
        client.execute(
            // Never backwards: the end of a poll on one replica can land after the start of
            // the proxy's next poll on another. Only versions of this history are recorded.
            "INSERT INTO proxies (proxy, version, live_until) VALUES ($1, $2, $3)
             ON CONFLICT (proxy) DO UPDATE
                 SET version = GREATEST(proxies.version, EXCLUDED.version),
                     live_until = GREATEST(proxies.live_until, EXCLUDED.live_until)",
            &[&proxy, &as_i64(version), &as_i64(live_until)],
        )?;
        client.execute(
            "DELETE FROM proxies WHERE live_until < $1",
            &[&as_i64(live_until.saturating_sub(86_400_000))],
        )?;
        Ok(())
    }

    fn live_proxies(&self, now: u64) -> StoreResult<Vec<(String, u64, u64)>> {
        self.with_reader(|tx| {
            let rows = tx.query(
                "SELECT proxy, version, live_until FROM proxies WHERE live_until > $1",
                &[&as_i64(now)],
            )?;
            Ok(rows
                .into_iter()
                .map(|row| {
                    let number = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
                    (row.get(0), number(1), number(2))
                })
                .collect())
        })
    }

    fn changes_since(&self, since: u64, limit: usize) -> StoreResult<ChangesRead> {
        self.with_reader(|tx| {
            let current_version = read_current_version(tx)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = tx.query(
                "SELECT c.version, c.key_id, k.sha256, k.org, k.role, k.expires_at, k.\"user\",
                        c.kind = 'policy', p.document
                 FROM changes AS c
                 LEFT JOIN keys AS k ON c.kind = 'upsert' AND k.key_id = c.key_id
                 LEFT JOIN policies AS p ON c.kind = 'policy' AND p.version = c.version
                 WHERE c.version > $1
                 ORDER BY c.version
                 LIMIT $2",
                &[&as_i64(since), &limit],
            )?;
            let changes = rows
                .into_iter()
                .map(|row| {
                    let sha256: Option<String> = row.get(2);
                    let hash_row = sha256.map(|sha256| HashRow {
                        sha256,
                        org: row.get(3),
                        role: row.get(4),
                        user: row.get(6),
                        expires_at: row.get(5),
                    });
                    let is_policy: bool = row.get(7);
                    Change {
                        version: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                        key_id: row.get(1),
                        hash_row,
                        policy: is_policy.then(|| row.get(8)),
                    }
                })
                .collect();
            Ok(ChangesRead {
                changes,
                current_version,
            })
        })
    }
}
