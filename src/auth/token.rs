//! The `Authorization` header, enforced before any lookup. The token grammar itself is the
//! protocol's (`mcp_guard_protocol::token`, re-exported here).
//!
//! ```text
//! authorization = "Bearer" SP token          ; scheme case-insensitive, exactly one space
//! ```
//! Anything else (other schemes, tabs, extra spaces, commas, non-ASCII, over-long values) is
//! malformed. The length is capped before anything else so a 10 KB header costs nothing.

pub use mcp_guard_protocol::token::{
    is_valid_key_id, parse_token, Token, KEY_ID_LEN, MAX_TOKEN_LEN, PREFIX, SECRET_LEN,
};

const SCHEME: &str = "Bearer";
pub const MAX_AUTHORIZATION_LEN: usize = SCHEME.len() + 1 + MAX_TOKEN_LEN;

/// Why a credential was rejected before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// No `Authorization` header at all.
    Missing,
    /// Present but not exactly one well-formed `Bearer amt_...` value.
    Malformed,
}

/// Parses the complete list of `Authorization` header values of one request.
pub fn parse_authorization<'a>(values: &[&'a str]) -> Result<Token<'a>, CredentialError> {
    match values {
        [] => Err(CredentialError::Missing),
        [value] => parse_bearer(value).ok_or(CredentialError::Malformed),
        _ => Err(CredentialError::Malformed),
    }
}

fn parse_bearer(value: &str) -> Option<Token<'_>> {
    if value.len() > MAX_AUTHORIZATION_LEN || value.len() <= SCHEME.len() + 1 {
        return None;
    }
    let (scheme, rest) = value.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    parse_token(rest.strip_prefix(' ')?)
}

/// True when a string contains something shaped like one of our tokens: used to refuse credentials
/// smuggled in the query string, where they would be logged by every hop.
pub fn contains_token_like(text: &str) -> bool {
    // The protocol's scanner: it also finds a token followed by more word characters
    // (`?t=<token>_x`), which a whole-run match would miss.
    mcp_guard_protocol::token::contains_token(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_ID: &str = "k3x9a0b1c2d3";
    const SECRET: &str = "Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8";

    fn token() -> String {
        format!("amt_{KEY_ID}_{SECRET}")
    }

    #[test]
    fn accepts_a_well_formed_bearer_token() {
        let value = format!("Bearer {}", token());
        let parsed = parse_authorization(&[&value]).unwrap();
        assert_eq!(parsed.key_id(), KEY_ID);
        assert_eq!(parsed.as_str(), token());
    }

    #[test]
    fn scheme_is_case_insensitive() {
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let value = format!("{scheme} {}", token());
            assert!(parse_authorization(&[&value]).is_ok(), "{scheme}");
        }
    }

    #[test]
    fn missing_header_is_distinguished_from_malformed() {
        assert_eq!(parse_authorization(&[]), Err(CredentialError::Missing));
        assert_eq!(parse_authorization(&[""]), Err(CredentialError::Malformed));
    }

    #[test]
    fn two_authorization_headers_are_malformed_even_if_both_are_valid() {
        let value = format!("Bearer {}", token());
        assert_eq!(
            parse_authorization(&[&value, &value]),
            Err(CredentialError::Malformed)
        );
    }

    #[test]
    fn rejects_every_malformed_shape() {
        let t = token();
        let long_secret = "a".repeat(65);
        let cases = [
            "Bearer".to_string(),
            "Bearer ".to_string(),
            format!("Bearer  {t}"),
            format!("Bearer\t{t}"),
            format!("Bearer {t} "),
            format!(" Bearer {t}"),
            format!("Bearer {t},Bearer {t}"),
            format!("Basic {t}"),
            format!("Bearerx{t}"),
            format!("Token {t}"),
            t.clone(),
            format!("Bearer AMT_{KEY_ID}_{SECRET}"),
            format!("Bearer amt_{}_{SECRET}", KEY_ID.to_uppercase()),
            format!("Bearer amt_short_{SECRET}"),
            format!("Bearer amt_{}_{SECRET}", "a".repeat(33)),
            format!("Bearer amt_{KEY_ID}_{}", &SECRET[..31]),
            format!("Bearer amt_{KEY_ID}_{long_secret}"),
            format!("Bearer amt_{KEY_ID}_{SECRET}_extra"),
            format!("Bearer amt_{KEY_ID}_{}é", &SECRET[..40]),
            format!("Bearer amt_{KEY_ID}-{SECRET}"),
            format!("Bearer amt__{SECRET}"),
            format!("Bearer amt_{KEY_ID}_"),
            format!("Bearer amt_{KEY_ID}_{}=", &SECRET[..40]),
            format!("Bearer {}", "a".repeat(10_000)),
            "Bearer é".to_string(),
        ];
        for case in &cases {
            assert_eq!(
                parse_authorization(&[case]),
                Err(CredentialError::Malformed),
                "{case:?}"
            );
        }
    }

    #[test]
    fn length_bounds_are_inclusive() {
        let shortest = format!("amt_{}_{}", "a".repeat(8), "B".repeat(32));
        let longest = format!("amt_{}_{}", "a".repeat(32), "B".repeat(64));
        assert!(parse_token(&shortest).is_some());
        assert_eq!(longest.len(), MAX_TOKEN_LEN);
        assert!(parse_token(&longest).is_some());
        let value = format!("Bearer {longest}");
        assert_eq!(value.len(), MAX_AUTHORIZATION_LEN);
        assert!(parse_authorization(&[&value]).is_ok());
    }

    #[test]
    fn finds_tokens_embedded_in_query_strings() {
        let t = token();
        assert!(contains_token_like(&format!("/api/mcp?api_key={t}")));
        assert!(contains_token_like(&format!("/api/mcp?x=1&t={t}&y=2")));
        assert!(
            contains_token_like(&format!("/api/mcp?t={t}_x")),
            "suffix after the token"
        );
        assert!(
            contains_token_like(&format!("/api/mcp?t={t}ABC")),
            "longer secret run"
        );
        assert!(!contains_token_like("/api/mcp?amt_=1&name=amt_short"));
        assert!(!contains_token_like("/api/mcp"));
    }
}
