//! Input rules for the admin API (docs/protocol.md, "Tokens and hash rows").
//!
//! The messages are returned to the client as-is, so they name the rule and never echo
//! large or hostile input back verbatim.

use mcp_guard_protocol::label::{is_valid_label, is_valid_user_name, LABEL_RULE, USER_NAME_RULE};

/// Longest key lifetime accepted: 100 years. Keeps `expires_at` far from integer overflow
/// and catches unit mistakes (milliseconds sent as seconds).
pub const MAX_EXPIRES_IN_SECONDS: i64 = 100 * 365 * 24 * 60 * 60;
/// Longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Checks an org or role name against the protocol's label grammar. `what` is "org" or
/// "role" and only shapes the message.
pub fn check_label(what: &str, value: &str) -> Result<(), String> {
    if is_valid_label(value) {
        Ok(())
    } else {
        Err(format!("{what} must be {LABEL_RULE}"))
    }
}

/// Checks a user name against the protocol's user-name grammar.
pub fn check_user_name(value: &str) -> Result<(), String> {
    if is_valid_user_name(value) {
        Ok(())
    } else {
        Err(format!("user must be {USER_NAME_RULE}"))
    }
}

/// A key name is 1 to 128 characters with no control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(format!("name must be 1 to {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".to_string());
    }
    Ok(())
}

/// `expires_in_seconds` is a positive whole number of seconds, at most 100 years.
pub fn check_expires_in(seconds: i64) -> Result<(), String> {
    if seconds <= 0 {
        return Err("expires_in_seconds must be a positive integer".to_string());
    }
    if seconds > MAX_EXPIRES_IN_SECONDS {
        return Err(format!(
            "expires_in_seconds must be at most {MAX_EXPIRES_IN_SECONDS} (100 years)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "0", "demo", "team-42", "a-", &"a".repeat(63)] {
            assert!(check_label("org", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "Demo", "a_b", "a b", "é", &"a".repeat(64)] {
            assert!(check_label("org", bad).is_err(), "{bad}");
        }
        let message = check_label("role", "X").err().unwrap_or_default();
        assert!(message.starts_with("role "));
    }

    #[test]
    fn names() {
        assert!(check_name("ci bot").is_ok());
        assert!(check_name("Ünïcödé name ✓").is_ok());
        assert!(check_name(&"é".repeat(128)).is_ok());
        assert!(check_name(&"é".repeat(129)).is_err());
        assert!(check_name("").is_err());
        assert!(check_name("tab\there").is_err());
        assert!(check_name("new\nline").is_err());
        assert!(check_name("nul\0").is_err());
        assert!(check_name("del\u{7f}").is_err());
        assert!(check_name("c1\u{85}").is_err());
    }

    #[test]
    fn expiry() {
        assert!(check_expires_in(1).is_ok());
        assert!(check_expires_in(MAX_EXPIRES_IN_SECONDS).is_ok());
        assert!(check_expires_in(0).is_err());
        assert!(check_expires_in(-5).is_err());
        assert!(check_expires_in(MAX_EXPIRES_IN_SECONDS + 1).is_err());
    }
}
