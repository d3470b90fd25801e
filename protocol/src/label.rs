//! Org and role names: `[a-z0-9][a-z0-9-]{0,62}`; user names: `[a-z0-9][a-z0-9._@-]{0,63}`, so
//! that an e-mail address in lower case is one. They travel in sync pages and in the identity
//! headers and access-log fields the filter sets, so they hold nothing a header or a log line
//! could misread.

/// Longest org or role name.
pub const MAX_LABEL_LEN: usize = 63;

/// The rule, as the admin API and the filter's configuration errors state it.
pub const LABEL_RULE: &str =
    "1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit";

/// True when `name` is a valid org or role name.
pub fn is_valid_label(name: &str) -> bool {
    is_name(name, MAX_LABEL_LEN, |b| b == b'-')
}

/// 1 to `max` bytes of a-z and 0-9, and after the first also those `punctuation` allows.
fn is_name(name: &str, max: usize, punctuation: impl Fn(u8) -> bool) -> bool {
    let lower_or_digit = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    bytes.first().is_some_and(|&b| lower_or_digit(b))
        && bytes.len() <= max
        && bytes.iter().all(|&b| lower_or_digit(b) || punctuation(b))
}

/// Longest user name.
pub const MAX_USER_NAME_LEN: usize = 64;

/// The user-name rule, as guardctl states it.
pub const USER_NAME_RULE: &str =
    "1 to 64 characters of a-z, 0-9, '.', '_', '@' and '-', starting with a letter or digit";

/// True when `name` is a valid user name (unique within its org).
pub fn is_valid_user_name(name: &str) -> bool {
    is_name(name, MAX_USER_NAME_LEN, |b| {
        matches!(b, b'.' | b'_' | b'@' | b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "0", "demo", "team-42", "a-", &"a".repeat(63)] {
            assert!(is_valid_label(ok), "{ok}");
        }
        for bad in ["", "-a", "Demo", "a_b", "a b", "é", "a.b", &"a".repeat(64)] {
            assert!(!is_valid_label(bad), "{bad}");
        }
    }

    #[test]
    fn user_names() {
        for ok in [
            "alice",
            "a",
            "ci-bot_2",
            "alice@example.com",
            &"a".repeat(64),
        ] {
            assert!(is_valid_user_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".a",
            "@a",
            "Alice",
            "a b",
            "a/b",
            "é",
            "a:b",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_user_name(bad), "{bad}");
        }
    }
}
