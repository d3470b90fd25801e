//! Fuzzes the credential grammar (`mcp_guard::auth::token`).
//!
//! Properties:
//! 1. nothing panics;
//! 2. `parse_authorization(&[v])` is `Ok` **iff** `v` is exactly `Bearer` (any case), one space
//!    and a token of the documented grammar (checked against an independent reference), and
//!    the returned token / key-id are the right slices of `v`;
//! 3. `parse_token(t)` is `Some` iff `t` is a token; `is_valid_key_id` agrees with the grammar;
//! 4. more than one `Authorization` value is always `Malformed`, none is `Missing`;
//! 5. `contains_token_like(s)` is true for every `s` that contains a valid token (as any
//!    substring), and only then; the inspector's scanner `mcp_guard_protocol::token::contains_token` agrees.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_guard::auth::token::{
    contains_token_like, is_valid_key_id, parse_authorization, parse_token, CredentialError,
};
use mcp_guard_protocol::token::contains_token;

mod common;
use common::{ref_contains_token, ref_is_authorization, ref_is_token};

fuzz_target!(|data: &[u8]| {
    let owned;
    let s: &str = match std::str::from_utf8(data) {
        Ok(s) => s,
        Err(_) => {
            owned = String::from_utf8_lossy(data).into_owned();
            &owned
        }
    };
    check_one(s);
    // A few derived shapes so a token found anywhere gets tried as a whole value too.
    if let Some(at) = s.find("amt_") {
        check_one(&s[at..]);
        let end = s[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(s.len(), |e| at + e);
        check_one(&s[at..end]);
        let bearer = format!("Bearer {}", &s[at..end]);
        check_one(&bearer);
    }

    // Several header values: never accepted, whatever they are.
    let values: Vec<&str> = s.split('\n').collect();
    if values.len() > 1 {
        assert_eq!(
            parse_authorization(&values),
            Err(CredentialError::Malformed),
            "{} Authorization values accepted: {values:?}",
            values.len()
        );
    }
    assert_eq!(parse_authorization(&[]), Err(CredentialError::Missing));
});

fn check_one(s: &str) {
    // 2. Authorization value.
    let auth = parse_authorization(&[s]);
    let expect = ref_is_authorization(s);
    match auth {
        Ok(token) => {
            assert!(expect, "accepted a value outside the grammar: {s:?}");
            assert_eq!(
                token.as_str(),
                &s[7..],
                "token is not the value after `Bearer `"
            );
            let key_id = &s[11..11 + token.key_id().len()];
            assert_eq!(token.key_id(), key_id);
            assert!(is_valid_key_id(token.key_id()));
        }
        Err(e) => {
            assert!(!expect, "refused a value of the grammar: {s:?}");
            assert_eq!(e, CredentialError::Malformed);
        }
    }

    // 3. Bare token and key-id.
    let tok = parse_token(s);
    assert_eq!(
        tok.is_some(),
        ref_is_token(s),
        "parse_token disagrees on {s:?}"
    );
    if let Some(t) = tok {
        assert_eq!(t.as_str(), s);
        assert_eq!(&s[4..4 + t.key_id().len()], t.key_id());
        assert_eq!(s.as_bytes().get(4 + t.key_id().len()), Some(&b'_'));
    }
    let key_id_ref = (8..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    assert_eq!(
        is_valid_key_id(s),
        key_id_ref,
        "is_valid_key_id disagrees on {s:?}"
    );

    // 5. Scanners.
    let contains = ref_contains_token(s);
    let like = contains_token_like(s);
    assert!(
        !like || contains,
        "contains_token_like true without a token: {s:?}"
    );
    assert_eq!(
        contains_token(s.as_bytes()),
        contains,
        "contains_token disagrees with the grammar on {s:?}"
    );
    assert!(
        like || !contains || common::skipped("token_like_suffix"),
        "contains_token_like misses a valid token in {s:?}"
    );
}
