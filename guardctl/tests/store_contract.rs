//! The store contract, one suite for both implementations: SQLite always, PostgreSQL when
//! `GUARDCTL_TEST_POSTGRES` names a server (`make test` starts one with tools/postgres.sh; each
//! test gets a database of its own). Every test runs against each store it can reach.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use guardctl::keys::import::ImportRow;
use guardctl::store::{self, Actor, ImportOutcome, Issuer, KeyStore, NewKey, Refusal, StoreError};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

const ADMIN: Actor<'static> = Actor {
    name: "admin",
    at: 1_700_000_000,
};

/// A fresh database of each kind, opened twice (two handles on one database, as two replicas
/// would have), and what it is called in messages.
struct Fresh {
    what: &'static str,
    open: Box<dyn Fn() -> Box<dyn KeyStore>>,
    _dir: Option<tempfile::TempDir>,
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

fn fresh_stores() -> Vec<Fresh> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guard.db");
    let mut out = vec![Fresh {
        what: "sqlite",
        open: Box::new(move || store::open(&path).unwrap()),
        _dir: Some(dir),
    }];
    match fresh_postgres() {
        Some(url) => out.push(Fresh {
            what: "postgres",
            open: Box::new(move || store::open(&PathBuf::from(&url)).unwrap()),
            _dir: None,
        }),
        None => eprintln!("GUARDCTL_TEST_POSTGRES not set: the store contract runs on SQLite only"),
    }
    out
}

/// The URL of a new, empty database on the test server, if there is one.
fn fresh_postgres() -> Option<String> {
    let server = std::env::var("GUARDCTL_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())?;
    let name = format!(
        "contract_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::SeqCst)
    );
    let mut admin = postgres::Client::connect(&server, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    // The server URL names database `guard`: the same server, this test's database.
    Some(server.replacen("/guard", &format!("/{name}"), 1))
}

fn service_key(name: &str) -> NewKey {
    NewKey {
        issuer: Issuer::Service {
            org: "demo".into(),
            role: "member".into(),
        },
        name: name.into(),
        created_at: ADMIN.at,
        expires_at: None,
    }
}

fn user_key(user: &str) -> NewKey {
    NewKey {
        issuer: Issuer::User {
            org: "demo".into(),
            name: user.into(),
        },
        ..service_key(user)
    }
}

#[test]
fn every_change_gets_the_next_version_and_reads_back_from_one_snapshot() {
    for fresh in fresh_stores() {
        let what = fresh.what;
        let store = (fresh.open)();
        assert_eq!(store.current_version().unwrap(), 0, "{what}");
        let a = store.create_key(&service_key("a"), &ADMIN).unwrap();
        let b = store.create_key(&service_key("b"), &ADMIN).unwrap();
        assert_eq!((a.version, b.version), (1, 2), "{what}");
        assert_eq!(store.revoke_key(&a.info.key_id, &ADMIN).unwrap(), Some(3));
        assert_eq!(store.revoke_key(&a.info.key_id, &ADMIN).unwrap(), None);
        let policy = r#"{"mode":"enforce","roles":[]}"#;
        assert_eq!(
            store
                .set_policy("demo", policy, "roles: {}", "s", &ADMIN)
                .unwrap(),
            4
        );
        let rows: Vec<ImportRow> = (0..2)
            .map(|i| ImportRow {
                key_id: format!("imported0{i}"),
                sha256: format!("{i:064}"),
                org: "acme".into(),
                role: "reader".into(),
                expires_at: Some(1_900_000_000),
                name: None,
            })
            .collect();
        assert_eq!(
            store.import_keys(&rows, &ADMIN).unwrap(),
            ImportOutcome::Imported {
                count: 2,
                version: 6
            },
            "{what}"
        );
        // A repeated key-id refuses the whole batch and writes nothing.
        assert_eq!(
            store.import_keys(&rows[..1], &ADMIN).unwrap(),
            ImportOutcome::Duplicate { index: 0 }
        );
        let read = store.changes_since(0, 100).unwrap();
        assert_eq!(read.current_version, 6, "{what}");
        let versions: Vec<u64> = read.changes.iter().map(|c| c.version).collect();
        assert_eq!(versions, [1, 2, 3, 4, 5, 6], "{what}");
        // a's upsert is served as a revocation (no hash); b's with its row.
        assert!(read.changes[0].hash_row.is_none());
        assert_eq!(
            read.changes[1].hash_row.as_ref().unwrap().sha256,
            b.token.sha256
        );
        assert_eq!(read.changes[3].policy, Some(Some(policy.to_string())));
        assert_eq!(read.changes[4].key_id, "imported00");
        let tail = store.changes_since(4, 1).unwrap();
        assert_eq!(tail.changes.len(), 1);
        assert_eq!(tail.changes[0].version, 5);
        assert_eq!(store.key_count().unwrap(), 3);
        let listed: Vec<String> = store
            .list_keys()
            .unwrap()
            .into_iter()
            .map(|k| k.key_id)
            .collect();
        assert_eq!(
            listed,
            [
                b.info.key_id.clone(),
                "imported00".into(),
                "imported01".into()
            ],
            "{what}: creation order"
        );
        let epoch = store.epoch().to_string();
        drop(store);
        let again = (fresh.open)();
        assert_eq!(
            again.epoch(),
            epoch,
            "{what}: the epoch lives in the database"
        );
        assert_eq!(again.current_version().unwrap(), 6);
    }
}

#[test]
fn users_freeze_their_role_into_keys_and_refusals_write_nothing() {
    for fresh in fresh_stores() {
        let what = fresh.what;
        let store = (fresh.open)();
        store.add_user("demo", "alice", "viewer", &ADMIN).unwrap();
        assert!(matches!(
            store.add_user("demo", "alice", "admin", &ADMIN),
            Err(StoreError::Refused(Refusal::UserExists { .. }))
        ));
        assert!(matches!(
            store.create_key(&user_key("bob"), &ADMIN),
            Err(StoreError::Refused(Refusal::NoSuchUser { .. }))
        ));
        let key = store.create_key(&user_key("alice"), &ADMIN).unwrap();
        assert_eq!(key.info.role, "viewer");
        let change = store
            .set_user_role("demo", "alice", "admin", &ADMIN)
            .unwrap();
        assert_eq!(
            (change.from.as_str(), change.to.as_str()),
            ("viewer", "admin")
        );
        assert_eq!(
            store.list_keys().unwrap()[0].role,
            "viewer",
            "{what}: frozen"
        );
        assert_eq!(store.roles_in_org("demo").unwrap(), ["admin", "viewer"]);
        assert!(matches!(
            store.remove_user("demo", "alice", false, &ADMIN),
            Err(StoreError::Refused(Refusal::UserHasKeys { keys: 1, .. }))
        ));
        let removed = store.remove_user("demo", "alice", true, &ADMIN).unwrap();
        assert_eq!(removed.revoked, [(key.info.key_id.clone(), 2)], "{what}");
        assert!(store.list_users().unwrap().is_empty());
        assert!(matches!(
            store.remove_policy("demo", &ADMIN),
            Err(StoreError::Refused(Refusal::NoSuchPolicy { .. }))
        ));
        let actions: Vec<String> = store
            .audit_since(0, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            [
                "user.add",
                "key.create",
                "user.set-role",
                "key.revoke",
                "user.remove"
            ],
            "{what}"
        );
        // Refused writes took no version.
        assert_eq!(store.current_version().unwrap(), 2, "{what}");
    }
}

/// Two handles on one database (two replicas) write at once while a reader follows the log
/// like a proxy: no version is ever skipped, none repeats, and each appears once committed.
#[test]
fn concurrent_writers_through_two_handles_never_make_a_reader_skip_a_version() {
    const WRITERS: usize = 4;
    const WRITES: usize = 150;
    for fresh in fresh_stores() {
        let what = fresh.what;
        let stores: Vec<Arc<dyn KeyStore>> =
            vec![Arc::from((fresh.open)()), Arc::from((fresh.open)())];
        let done = Arc::new(AtomicUsize::new(0));
        let reader = {
            let store = stores[1].clone();
            let done = done.clone();
            thread::spawn(move || {
                let mut seen = 0u64;
                let mut all = BTreeSet::new();
                loop {
                    let finished = done.load(Ordering::SeqCst) == WRITERS;
                    let read = store.changes_since(seen, 50).unwrap();
                    for change in &read.changes {
                        assert_eq!(change.version, seen + 1, "a version was skipped");
                        seen = change.version;
                        assert!(all.insert(change.version));
                    }
                    if finished && read.changes.is_empty() {
                        return all.len();
                    }
                }
            })
        };
        let writers: Vec<_> = (0..WRITERS)
            .map(|i| {
                let store = stores[i % 2].clone();
                let done = done.clone();
                thread::spawn(move || {
                    for n in 0..WRITES {
                        let key = store
                            .create_key(&service_key(&format!("w{i}-{n}")), &ADMIN)
                            .unwrap();
                        if n % 3 == 0 {
                            store.revoke_key(&key.info.key_id, &ADMIN).unwrap();
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let seen = reader.join().unwrap();
        let expected = WRITERS * (WRITES + WRITES.div_ceil(3));
        assert_eq!(seen, expected, "{what}");
        assert_eq!(stores[0].current_version().unwrap(), expected as u64);
    }
}

/// `guardctl db migrate` creates the schema (as `serve` does), and running it again, as every
/// replica may, changes nothing: the same epoch.
#[test]
fn db_migrate_creates_the_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("guard.db");
    let migrate = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_guardctl"))
            .args(["db", "migrate", "--db"])
            .arg(&db)
            .env_remove("GUARDCTL_DB")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = migrate();
    assert!(
        first.contains("epoch ") && first.contains("version 0"),
        "{first}"
    );
    assert_eq!(migrate(), first);
    assert_eq!(
        store::open(&db).unwrap().epoch(),
        first
            .split("epoch ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
    );
}

fn guardctl(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_guardctl"))
        .args(args)
        .env_remove("GUARDCTL_DB")
        .output()
        .unwrap()
}

/// `guardctl db copy` moves a SQLite installation into PostgreSQL: the same live keys (hashes,
/// issuers, creation times), users, policies and audit trail, a revoked key still gone, a new
/// epoch, and a refusal to copy into a database that is not empty.
#[test]
fn db_copy_moves_a_sqlite_installation_into_postgres() {
    let Some(url) = fresh_postgres() else {
        eprintln!("GUARDCTL_TEST_POSTGRES not set: no PostgreSQL to copy into");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guard.db");
    let sqlite = store::open(&path).unwrap();
    sqlite.add_user("demo", "alice", "viewer", &ADMIN).unwrap();
    let alices = sqlite.create_key(&user_key("alice"), &ADMIN).unwrap();
    let service = sqlite.create_key(&service_key("svc"), &ADMIN).unwrap();
    let revoked = sqlite.create_key(&service_key("gone"), &ADMIN).unwrap();
    sqlite.revoke_key(&revoked.info.key_id, &ADMIN).unwrap();
    let policy = r#"{"mode":"enforce","roles":[]}"#;
    sqlite
        .set_policy("demo", policy, "roles: {}  # kept", "s", &ADMIN)
        .unwrap();
    sqlite.set_policy("gone", policy, "x", "s", &ADMIN).unwrap();
    sqlite.remove_policy("gone", &ADMIN).unwrap();
    let hashes = |store: &dyn KeyStore| -> Vec<(String, String)> {
        let mut rows: Vec<(String, String)> = store
            .changes_since(0, usize::MAX)
            .unwrap()
            .changes
            .into_iter()
            .filter_map(|c| Some((c.key_id, c.hash_row?.sha256)))
            .collect();
        rows.sort();
        rows
    };
    let (keys, users, audit, sqlite_hashes) = (
        sqlite.list_keys().unwrap(),
        sqlite.list_users().unwrap(),
        sqlite.audit_since(0, usize::MAX).unwrap(),
        hashes(&*sqlite),
    );
    let sqlite_epoch = sqlite.epoch().to_string();
    drop(sqlite);

    let out = guardctl(&["db", "copy", "--from", path.to_str().unwrap(), "--to", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains("Copied 2 keys, 1 users, 1 policies"),
        "{printed}"
    );

    let pg = store::open(&PathBuf::from(&url)).unwrap();
    assert_eq!(pg.list_keys().unwrap(), keys);
    assert_eq!(
        pg.list_keys()
            .unwrap()
            .iter()
            .map(|k| &k.key_id)
            .collect::<Vec<_>>(),
        [&alices.info.key_id, &service.info.key_id]
    );
    assert_eq!(pg.list_users().unwrap(), users);
    assert_eq!(hashes(&*pg), sqlite_hashes);
    let copied = pg.policy("demo").unwrap().unwrap();
    assert_eq!(
        (copied.document.as_str(), copied.source.as_str()),
        (policy, "roles: {}  # kept")
    );
    assert_eq!(pg.policy("gone").unwrap(), None);
    // Two keys and one policy: three changes, and nothing of the revoked key in the log.
    assert_eq!(pg.current_version().unwrap(), 3);
    assert!(pg
        .changes_since(0, usize::MAX)
        .unwrap()
        .changes
        .iter()
        .all(|c| c.key_id != revoked.info.key_id));
    let pg_audit = pg.audit_since(0, usize::MAX).unwrap();
    let strip = |events: &[store::AuditEvent]| -> Vec<(i64, String, String, String, String)> {
        events
            .iter()
            .map(|e| {
                (
                    e.at,
                    e.actor.clone(),
                    e.action.clone(),
                    e.object.clone(),
                    e.detail.clone(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&pg_audit[..audit.len()]), strip(&audit));
    assert_eq!(pg_audit.len(), audit.len() + 1);
    assert_eq!(pg_audit[audit.len()].action, "db.copy");
    assert!(pg_audit[audit.len()].detail.contains(&sqlite_epoch));
    assert_ne!(pg.epoch(), sqlite_epoch);
    drop(pg);

    let again = guardctl(&["db", "copy", "--from", path.to_str().unwrap(), "--to", &url]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let missing = guardctl(&[
        "db",
        "copy",
        "--from",
        "/nonexistent/guard.db",
        "--to",
        &url,
    ]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such SQLite database file"));
}
