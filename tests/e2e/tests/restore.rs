//! The proxy follows the database guardctl serves, whole: another database (a new epoch) or a
//! restored older backup (a version below what the proxy has) makes it load the set again, so a
//! key that exists only in the database it served before gets 401.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;

use mcp_guard_e2e::*;

/// Copies every file of guardctl's data directory (the database, its WAL, the admin token).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn another_database_replaces_the_whole_key_set() {
    let mut stack = Stack::start("restore-epoch");
    let old = stack.guardctl.create_key("demo", "member", None);
    stack.wait_until_allowed(&old.token);
    let reloads_before = stack.envoy.stat("mcp_guard.sync.succeeded");

    // A new install on the same address: a fresh database with its own epoch.
    stack.guardctl.stop();
    fs::rename(
        &stack.guardctl.data_dir,
        stack.dir.join("guardctl-data.first"),
    )
    .unwrap();
    stack.guardctl.restart();
    let new = stack.guardctl.create_key("demo", "member", None);
    stack.wait_until_allowed(&new.token);
    assert_eq!(
        stack.mcp(Some(&old.token)).status,
        401,
        "a key only the previous database had is still accepted"
    );
    assert_eq!(stack.mcp(Some(&new.token)).status, 200);
    assert!(stack.envoy.stat("mcp_guard.sync.succeeded") > reloads_before);
}

#[test]
fn a_restored_older_backup_is_what_the_proxy_serves() {
    let mut stack = Stack::start("restore-backup");
    let kept = stack.guardctl.create_key("demo", "member", None);
    stack.wait_until_allowed(&kept.token);

    // A consistent backup: the server stopped, every file copied.
    stack.guardctl.stop();
    let backup = stack.dir.join("backup");
    copy_dir(&stack.guardctl.data_dir, &backup);
    stack.guardctl.restart();
    let later = stack.guardctl.create_key("demo", "member", None);
    let also_later = stack.guardctl.create_key("demo", "member", None);
    stack.wait_until_allowed(&later.token);
    stack.wait_until_allowed(&also_later.token);

    // Restore the backup: its version is below what the proxy has applied.
    stack.guardctl.stop();
    fs::remove_dir_all(&stack.guardctl.data_dir).unwrap();
    copy_dir(&backup, &stack.guardctl.data_dir);
    stack.guardctl.restart();
    stack.wait_until_refused(&later.token);
    assert_eq!(stack.mcp(Some(&also_later.token)).status, 401);
    assert_eq!(stack.mcp(Some(&kept.token)).status, 200);
    // And the restored database goes on from there.
    let after = stack.guardctl.create_key("demo", "member", None);
    stack.wait_until_allowed(&after.token);
    assert_eq!(stack.mcp(Some(&later.token)).status, 401);
}
