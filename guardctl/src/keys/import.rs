//! Bulk import of existing hash rows (`guardctl keys import`, `POST /v1/keys/import`), for
//! operators who move an existing key store to guardctl.
//!
//! A row is what a proxy needs plus a label: `key_id`, `sha256` (hex SHA-256 of the whole token),
//! `org`, `role`, optional `expires_at` (Unix seconds) and optional `name`. Never a plaintext
//! token: unknown fields (a `token` column) are refused, and so is a name that holds one.
//!
//! The same rules apply in the CLI (which checks the whole file before sending anything, so a bad
//! line costs nothing) and in the server (which trusts no client).

use crate::keys::rules;
use crate::keys::token;
use anyhow::{anyhow, bail, Context};
use mcp_guard_protocol::sync::Sha256;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Rows the CLI sends per request by default: one SQLite transaction each on the server.
pub const DEFAULT_BATCH_ROWS: usize = 10_000;
/// Most rows the server accepts in one request.
pub const MAX_BATCH_ROWS: usize = 50_000;
/// Largest import request body: 50,000 rows of the longest legal fields fit.
pub const MAX_IMPORT_BODY_BYTES: usize = 32 * 1024 * 1024;
/// The name given to an imported key whose row has none.
pub const DEFAULT_NAME: &str = "imported";

/// One hash row, as a line of the import file and as an element of the request's `keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRow {
    pub key_id: String,
    pub sha256: String,
    pub org: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Body of `POST /v1/keys/import`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub keys: Vec<ImportRow>,
}

/// Answer of `POST /v1/keys/import`: how many keys the batch added, and the key-set version
/// after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportResponse {
    pub imported: u64,
    pub version: u64,
}

/// Checks one row against the rules of `POST /v1/keys` and normalises it (lowercase hex,
/// default name). `now` (Unix seconds) bounds `expires_at` like `expires_in_seconds` is bounded.
pub fn check_row(mut row: ImportRow, now: i64) -> Result<ImportRow, String> {
    if !token::is_valid_key_id(&row.key_id) {
        return Err("key_id must be 8 to 32 characters of a-z and 0-9".to_string());
    }
    let Some(sha256) = Sha256::from_hex(&row.sha256, false) else {
        return Err(
            "sha256 must be 64 hex digits: the SHA-256 of the whole token, never the token"
                .to_string(),
        );
    };
    row.sha256 = sha256.to_hex();
    rules::check_label("org", &row.org)?;
    rules::check_label("role", &row.role)?;
    if let Some(expires_at) = row.expires_at {
        let latest = now.saturating_add(rules::MAX_EXPIRES_IN_SECONDS);
        if expires_at <= 0 || expires_at > latest {
            return Err(format!(
                "expires_at must be Unix seconds between 1 and {latest} (100 years from now)"
            ));
        }
    }
    let name = row.name.take().unwrap_or_else(|| DEFAULT_NAME.to_string());
    rules::check_name(&name)?;
    if holds_token(&name) {
        return Err("name holds what looks like a plaintext amt_ token; import hashes only".into());
    }
    row.name = Some(name);
    Ok(row)
}

/// True when `text` contains something of the token grammar (the protocol's scanner).
fn holds_token(text: &str) -> bool {
    mcp_guard_protocol::token::contains_token(text.as_bytes())
}

/// Parses one line of an import file (JSON Lines). Messages never quote the line: it might hold
/// a secret that should not have been there.
pub fn parse_line(line: &str, now: i64) -> Result<ImportRow, String> {
    let row: ImportRow = serde_json::from_str(line).map_err(|err| {
        let what = if err.is_data() {
            // serde names the field at fault ("unknown field `token`", "missing field `org`").
            let text = err.to_string();
            text.split(" at line ").next().unwrap_or("").to_string()
        } else {
            format!("not a JSON object ({})", category(&err))
        };
        format!(
            "{what}; each line must be {{\"key_id\", \"sha256\", \"org\", \"role\", \
             \"expires_at\"?, \"name\"?}}"
        )
    })?;
    check_row(row, now)
}

/// Why the server refused a batch: its message, and the row at fault when it named one.
#[derive(Debug)]
pub struct BatchFailure {
    pub message: String,
    pub index: Option<usize>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub imported: u64,
    pub batches: u64,
    /// Key-set version after the last batch (`None` for an empty file).
    pub version: Option<u64>,
}

/// Imports the JSON Lines file at `path` through `send`, `batch_rows` rows per call.
///
/// The whole file is checked first (every line against the rules, key-ids unique within the
/// file), so a mistake anywhere costs nothing. Then it is read again and sent batch by batch;
/// each batch is one transaction on the server. If the server refuses a batch (a key-id already
/// in its database), the error names the line and says how many rows before it were imported.
/// Blank lines are skipped.
pub fn import_file(
    path: &Path,
    batch_rows: usize,
    now: i64,
    mut send: impl FnMut(&[ImportRow]) -> Result<ImportResponse, BatchFailure>,
    mut progress: impl FnMut(&ImportSummary),
) -> anyhow::Result<ImportSummary> {
    let batch_rows = batch_rows.clamp(1, MAX_BATCH_ROWS);
    let mut seen = HashMap::new();
    for_each_row(path, now, |line, row| {
        if let Some(first) = seen.insert(row.key_id, line) {
            bail!(
                "{}: line {line}: duplicate key_id (already on line {first})",
                path.display()
            );
        }
        Ok(())
    })
    .map_err(|err| anyhow!("{err:#}; nothing was imported"))?;
    drop(seen);

    let mut summary = ImportSummary {
        imported: 0,
        batches: 0,
        version: None,
    };
    let mut batch = Vec::with_capacity(batch_rows);
    let mut lines = Vec::with_capacity(batch_rows);
    let mut flush =
        |batch: &mut Vec<ImportRow>, lines: &mut Vec<usize>, summary: &mut ImportSummary| {
            if batch.is_empty() {
                return Ok(());
            }
            match send(batch) {
                Ok(answer) => {
                    summary.imported += answer.imported;
                    summary.batches += 1;
                    summary.version = Some(answer.version);
                    progress(summary);
                    batch.clear();
                    lines.clear();
                    Ok(())
                }
                Err(failure) => {
                    let at = failure
                        .index
                        .and_then(|index| lines.get(index))
                        .map_or_else(String::new, |line| format!("line {line}: "));
                    let first_line = lines.first().copied().unwrap_or(0);
                    bail!(
                        "{}: {at}{}. The {} rows before line {first_line} were imported{}; \
                     the rows from line {first_line} on were not.",
                        path.display(),
                        failure.message,
                        summary.imported,
                        summary
                            .version
                            .map_or_else(String::new, |v| format!(" (key-set version {v})")),
                    )
                }
            }
        };
    for_each_row(path, now, |line, row| {
        batch.push(row);
        lines.push(line);
        if batch.len() >= batch_rows {
            flush(&mut batch, &mut lines, &mut summary)?;
        }
        Ok(())
    })?;
    flush(&mut batch, &mut lines, &mut summary)?;
    Ok(summary)
}

/// Calls `each` with the 1-based line number and the checked row of every non-blank line.
fn for_each_row(
    path: &Path,
    now: i64,
    mut each: impl FnMut(usize, ImportRow) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    for (number, line) in BufReader::with_capacity(1 << 20, file).lines().enumerate() {
        let line_number = number + 1;
        let line =
            line.with_context(|| format!("{}: cannot read line {line_number}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let row = parse_line(&line, now)
            .map_err(|why| anyhow!("{}: line {line_number}: {why}", path.display()))?;
        each(line_number, row)?;
    }
    Ok(())
}

fn category(err: &serde_json::Error) -> &'static str {
    match err.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "wrong field",
        serde_json::error::Category::Eof => "truncated JSON",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn row() -> ImportRow {
        ImportRow {
            key_id: "abcd1234efgh".into(),
            sha256: "AB".repeat(32),
            org: "demo".into(),
            role: "member".into(),
            expires_at: None,
            name: None,
        }
    }

    #[test]
    fn a_good_row_is_normalised() {
        let checked = check_row(row(), NOW).unwrap();
        assert_eq!(checked.sha256, "ab".repeat(32));
        assert_eq!(checked.name.as_deref(), Some(DEFAULT_NAME));
        let named = check_row(
            ImportRow {
                name: Some("ci bot".into()),
                expires_at: Some(NOW + 60),
                ..row()
            },
            NOW,
        )
        .unwrap();
        assert_eq!(named.name.as_deref(), Some("ci bot"));
        // An already expired key is still a key to migrate (proxies refuse it as expired).
        assert!(check_row(
            ImportRow {
                expires_at: Some(1),
                ..row()
            },
            NOW
        )
        .is_ok());
    }

    #[test]
    fn the_rules_of_create_apply() {
        let bad = |row: ImportRow| check_row(row, NOW).unwrap_err();
        assert!(bad(ImportRow {
            key_id: "short".into(),
            ..row()
        })
        .starts_with("key_id"));
        assert!(bad(ImportRow {
            key_id: "ABCD1234".into(),
            ..row()
        })
        .starts_with("key_id"));
        assert!(bad(ImportRow {
            key_id: "a".repeat(33),
            ..row()
        })
        .starts_with("key_id"));
        assert!(bad(ImportRow {
            sha256: "ab".repeat(31),
            ..row()
        })
        .starts_with("sha256"));
        assert!(bad(ImportRow {
            sha256: "zz".repeat(32),
            ..row()
        })
        .starts_with("sha256"));
        assert!(bad(ImportRow {
            org: "Demo".into(),
            ..row()
        })
        .starts_with("org"));
        assert!(bad(ImportRow {
            role: "a_b".into(),
            ..row()
        })
        .starts_with("role"));
        assert!(bad(ImportRow {
            name: Some(String::new()),
            ..row()
        })
        .starts_with("name"));
        assert!(bad(ImportRow {
            expires_at: Some(0),
            ..row()
        })
        .starts_with("expires_at"));
        assert!(bad(ImportRow {
            expires_at: Some(-5),
            ..row()
        })
        .starts_with("expires_at"));
        assert!(bad(ImportRow {
            expires_at: Some(NOW + rules::MAX_EXPIRES_IN_SECONDS + 1),
            ..row()
        })
        .starts_with("expires_at"));
    }

    #[test]
    fn plaintext_tokens_are_refused() {
        let token = format!("amt_abcd1234efgh_{}", "Z".repeat(43));
        let err = check_row(
            ImportRow {
                name: Some(format!("key {token}")),
                ..row()
            },
            NOW,
        )
        .unwrap_err();
        assert!(err.contains("plaintext"), "{err}");
        assert!(!err.contains(&token));
        assert!(check_row(
            ImportRow {
                name: Some("amt_ migration batch 3".into()),
                ..row()
            },
            NOW
        )
        .is_ok());

        let line = format!(
            r#"{{"key_id":"abcd1234efgh","sha256":"{}","org":"demo","role":"member","token":"{token}"}}"#,
            "ab".repeat(32)
        );
        let err = parse_line(&line, NOW).unwrap_err();
        assert!(err.contains("unknown field `token`"), "{err}");
        assert!(!err.contains(&token), "{err}");
    }

    fn line(key_id: &str) -> String {
        format!(
            r#"{{"key_id":"{key_id}","sha256":"{}","org":"demo","role":"member"}}"#,
            "ab".repeat(32)
        )
    }

    fn file_with(lines: &[String]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        (dir, path)
    }

    /// A stand-in server: accepts batches, refuses a key-id listed in `taken`.
    fn fake_server<'a>(
        taken: &'a [&'a str],
        sent: &'a mut Vec<Vec<String>>,
    ) -> impl FnMut(&[ImportRow]) -> Result<ImportResponse, BatchFailure> + 'a {
        let mut version = 100;
        move |rows: &[ImportRow]| {
            if let Some(index) = rows.iter().position(|r| taken.contains(&r.key_id.as_str())) {
                return Err(BatchFailure {
                    message: format!("keys[{index}]: key_id is already used"),
                    index: Some(index),
                });
            }
            sent.push(rows.iter().map(|r| r.key_id.clone()).collect());
            version += rows.len() as u64;
            Ok(ImportResponse {
                imported: rows.len() as u64,
                version,
            })
        }
    }

    #[test]
    fn files_go_in_batches() {
        let mut lines: Vec<String> = (0..7).map(|i| line(&format!("key0000{i}"))).collect();
        lines.insert(3, "   ".into());
        let (_dir, path) = file_with(&lines);
        let mut sent = Vec::new();
        let mut seen_progress = 0;
        let summary = import_file(&path, 3, NOW, fake_server(&[], &mut sent), |_| {
            seen_progress += 1
        })
        .unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                imported: 7,
                batches: 3,
                version: Some(107)
            }
        );
        assert_eq!(seen_progress, 3);
        assert_eq!(sent[0], ["key00000", "key00001", "key00002"]);
        assert_eq!(sent[2], ["key00006"]);
    }

    #[test]
    fn bad_lines_and_duplicates_stop_everything_before_anything_is_sent() {
        let mut lines: Vec<String> = (0..5).map(|i| line(&format!("key0000{i}"))).collect();
        lines.push(line("key00002"));
        let (_dir, path) = file_with(&lines);
        let mut sent = Vec::new();
        let err = import_file(&path, 2, NOW, fake_server(&[], &mut sent), |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 6: duplicate key_id (already on line 3)"),
            "{err}"
        );
        assert!(err.contains("nothing was imported"), "{err}");
        assert!(sent.is_empty());

        lines[5] = line("BAD");
        let (_dir, path) = file_with(&lines);
        let err = import_file(&path, 2, NOW, fake_server(&[], &mut sent), |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 6: key_id must be"), "{err}");
        assert!(sent.is_empty());
    }

    #[test]
    fn a_refused_batch_names_its_line_and_what_was_imported() {
        let lines: Vec<String> = (0..6).map(|i| line(&format!("key0000{i}"))).collect();
        let (_dir, path) = file_with(&lines);
        let mut sent = Vec::new();
        let err = import_file(&path, 2, NOW, fake_server(&["key00003"], &mut sent), |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 4: keys[1]: key_id is already used"),
            "{err}"
        );
        assert!(
            err.contains("The 2 rows before line 3 were imported (key-set version 102)"),
            "{err}"
        );
        assert_eq!(sent.len(), 1);
    }

    #[test]
    fn lines() {
        let line = format!(
            r#"{{"key_id":"abcd1234efgh","sha256":"{}","org":"demo","role":"member","expires_at":null}}"#,
            "0f".repeat(32)
        );
        assert_eq!(parse_line(&line, NOW).unwrap().key_id, "abcd1234efgh");
        let err = parse_line(r#"{"key_id":"abcd1234efgh"}"#, NOW).unwrap_err();
        assert!(err.contains("missing field"), "{err}");
        let err = parse_line("not json", NOW).unwrap_err();
        assert!(err.contains("invalid JSON"), "{err}");
        let err = parse_line(r#"{"key_id": 5}"#, NOW).unwrap_err();
        assert!(err.starts_with("invalid type"), "{err}");
    }
}
