//! Org and role names: `[a-z0-9][a-z0-9-]{0,62}`. They travel in sync pages and in the identity
//! headers the filter sets, so they hold nothing a header or a log line could misread.

/// Longest org or role name.
pub const MAX_LABEL_LEN: usize = 63;

/// The rule, as the admin API and the filter's configuration errors state it.
pub const LABEL_RULE: &str =
    "1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit";

/// True when `name` is a valid org or role name.
pub fn is_valid_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok
        && bytes.len() <= MAX_LABEL_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
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
}
