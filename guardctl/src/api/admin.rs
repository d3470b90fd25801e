//! The admin token check on the admin API's requests.

use super::state::{ApiError, AppState};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use std::net::SocketAddr;
use tracing::warn;

/// Extractor that admits only requests carrying the admin token. Listed before the body in a
/// handler's arguments, so an unauthenticated request gets 401 before its body is read.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        match presented {
            Some(token) if state.0.admin.matches(token) => Ok(Admin),
            _ => {
                let peer = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|info| info.0.to_string());
                warn!(
                    method = %parts.method,
                    path = parts.uri.path(),
                    peer,
                    token_presented = presented.is_some(),
                    "admin request refused: missing or wrong admin token"
                );
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong admin token",
                ))
            }
        }
    }
}

/// The credentials of an `Authorization: Bearer <token>` header (scheme is case-insensitive).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
