//! The key-set sync page decoder (`mcp_guard_protocol::sync`), the one piece of guardctl's
//! answer the filter trusts. Input: 8 bytes of `since` (little-endian), then the page body.
//!
//! Properties:
//! 1. `SyncPage::decode` never panics, and whatever it accepts keeps every rule: the epoch's
//!    grammar, key-ids, orgs, roles, users and policy patterns of their grammars, every entry's version inside the page
//!    (from 0 when the page starts another history).
//! 2. What it accepts encodes and decodes back to the same page (guardctl's encoder and the
//!    filter's decoder agree), and the encoding is canonical: encoding it again gives the same
//!    bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_guard_protocol::label::{is_valid_label, is_valid_user_name};
use mcp_guard_protocol::policy::is_valid_pattern;
use mcp_guard_protocol::sync::SyncPage;
use mcp_guard_protocol::token::is_valid_key_id;

fuzz_target!(|data: &[u8]| {
    let (since, body) = match data.split_first_chunk::<8>() {
        Some((head, body)) => (u64::from_le_bytes(*head), body),
        None => (0, data),
    };
    let Ok(page) = SyncPage::decode(body, since) else {
        return;
    };
    let base = if page.version < since { 0 } else { since };
    assert!(!page.epoch.is_empty() && page.epoch.len() <= 64);
    assert!(page.epoch.bytes().all(|b| b.is_ascii_alphanumeric()));
    for upsert in &page.upserts {
        assert!(upsert.version > base && upsert.version <= page.version);
        assert!(is_valid_key_id(&upsert.key_id));
        assert!(is_valid_label(&upsert.org) && is_valid_label(&upsert.role));
        assert!(upsert.user.as_deref().is_none_or(is_valid_user_name));
    }
    for revocation in &page.revocations {
        assert!(revocation.version > base && revocation.version <= page.version);
        assert!(is_valid_key_id(&revocation.key_id));
    }
    for change in &page.policies {
        assert!(change.version > base && change.version <= page.version);
        assert!(is_valid_label(&change.org));
        if let Some(policy) = &change.policy {
            assert!(policy.check().is_ok());
            assert!(policy.roles.iter().all(|rules| rules
                .lists()
                .iter()
                .all(|(_, patterns)| patterns.iter().all(|p| is_valid_pattern(p)))));
        }
    }
    let encoded = page.encode();
    let again = SyncPage::decode(encoded.as_bytes(), since);
    assert_eq!(again.as_ref(), Ok(&page), "round trip of {encoded}");
    assert_eq!(again.map(|p| p.encode()).as_deref(), Ok(encoded.as_str()));
});
