//! The admin API's key handlers: `POST /v1/keys` (create), `GET /v1/keys` (list),
//! `POST /v1/keys/import` and `DELETE /v1/keys/{key_id}` (revoke). Each validates, hands the
//! write to the store, and announces the committed version to the waiting long-polls.

use super::admin::Admin;
use super::state::{json_body, short, unix_now, ApiError, AppState};
use crate::keys::import::{self, ImportRequest, ImportResponse};
use crate::keys::{rules, token};
use crate::store::{Actor, ImportOutcome, Issuer, KeyInfo, NewKey, StoreError};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::info;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyRequest {
    org: String,
    /// A service key's role; left out for a user's key, which takes the user's role.
    #[serde(default)]
    role: Option<String>,
    /// The issuing user, in `org`.
    #[serde(default)]
    user: Option<String>,
    name: String,
    #[serde(default)]
    expires_in_seconds: Option<i64>,
}

#[derive(Debug, Serialize)]
struct CreateKeyResponse {
    key_id: String,
    token: String,
    org: String,
    role: String,
    user: Option<String>,
    name: String,
    created_at: i64,
    expires_at: Option<i64>,
}

pub(super) async fn create_key(
    _: Admin,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CreateKeyRequest = json_body(body)?;
    rules::check_label("org", &request.org).map_err(ApiError::bad_request)?;
    let issuer = match (request.user, request.role) {
        (Some(user), None) => {
            rules::check_user_name(&user).map_err(ApiError::bad_request)?;
            Issuer::User {
                org: request.org,
                name: user,
            }
        }
        (None, Some(role)) => {
            rules::check_label("role", &role).map_err(ApiError::bad_request)?;
            Issuer::Service {
                org: request.org,
                role,
            }
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give user or role, not both: a user's key takes the user's role",
            ))
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "give user (a user's key) or role (a service key)",
            ))
        }
    };
    rules::check_name(&request.name).map_err(ApiError::bad_request)?;
    let created_at = unix_now();
    let expires_at = match request.expires_in_seconds {
        Some(seconds) => {
            rules::check_expires_in(seconds).map_err(ApiError::bad_request)?;
            Some(created_at.saturating_add(seconds))
        }
        None => None,
    };
    let new_key = NewKey {
        issuer,
        name: request.name,
        created_at,
        expires_at,
    };
    let created = state
        .write(move |store| store.create_key(&new_key, &admin_at(created_at)))
        .await?;
    state.publish_version(created.version);
    state.0.metrics.key_created();

    let info = created.info;
    info!(
        key_id = %info.key_id,
        org = %info.org,
        role = %info.role,
        user = info.user.as_deref().unwrap_or(""),
        expires_at = info.expires_at,
        version = created.version,
        "key created"
    );
    let answer = CreateKeyResponse {
        key_id: info.key_id,
        token: created.token.token,
        org: info.org,
        role: info.role,
        user: info.user,
        name: info.name,
        created_at: info.created_at,
        expires_at: info.expires_at,
    };
    let mut response = (StatusCode::CREATED, Json(answer)).into_response();
    // The answer holds the only copy of the plaintext token: keep it out of any cache.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The admin token's actor at `at`. One token today, so one actor; per-operator tokens would
/// name theirs here.
pub(super) fn admin_at(at: i64) -> Actor<'static> {
    Actor { name: "admin", at }
}

#[derive(Serialize)]
struct KeyList<'a> {
    keys: &'a [KeyInfo],
}

pub(super) async fn list_keys(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    // Serialised on the blocking thread too: with a million keys this is real work.
    let body = state
        .read(|store| {
            let keys = store.list_keys()?;
            serde_json::to_vec(&KeyList { keys: &keys })
                .map_err(|err| StoreError::Unusable(format!("cannot encode key list: {err}")))
        })
        .await?;
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response())
}

/// `POST /v1/keys/import`: one batch of existing hash rows, all or nothing, in one transaction.
pub(super) async fn import_keys(
    _: Admin,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImportResponse>, ApiError> {
    let body = body.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            format!(
                "cannot read request body: {} (at most {} rows and {} MiB per request)",
                rejection.body_text(),
                import::MAX_BATCH_ROWS,
                import::MAX_IMPORT_BODY_BYTES >> 20
            ),
        )
    })?;
    let request: ImportRequest = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(short(format!("invalid request body: {err}"))))?;
    if request.keys.is_empty() || request.keys.len() > import::MAX_BATCH_ROWS {
        return Err(ApiError::bad_request(format!(
            "keys must hold 1 to {} rows",
            import::MAX_BATCH_ROWS
        )));
    }
    let now = unix_now();
    let rows = request
        .keys
        .into_iter()
        .enumerate()
        .map(|(index, row)| {
            import::check_row(row, now)
                .map_err(|why| ApiError::bad_request(format!("keys[{index}]: {why}")).at_row(index))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = {
        let rows = Arc::new(rows);
        let batch = Arc::clone(&rows);
        let outcome = state
            .write(move |store| store.import_keys(&batch, &admin_at(now)))
            .await?;
        match outcome {
            ImportOutcome::Imported { count, version } => Ok((count, version)),
            ImportOutcome::Duplicate { index } => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "keys[{index}]: key_id {} is already used in this database (by a live or \
                     a revoked key, or earlier in this batch); nothing from this batch was imported",
                    rows[index].key_id
                ),
            )
            .at_row(index)),
        }
    };
    let (imported, version) = outcome?;
    state.publish_version(version);
    state.0.metrics.keys_imported(imported);
    info!(count = imported, version, "keys imported");
    Ok(Json(ImportResponse { imported, version }))
}

#[derive(Serialize)]
pub(super) struct RevokeResponse {
    key_id: String,
    revoked: bool,
    version: u64,
    /// Which live proxies had applied the revocation when this answer was sent.
    enforced: super::confirm::Enforcement,
}

pub(super) async fn revoke_key(
    _: Admin,
    State(state): State<AppState>,
    key_id: Result<Path<String>, PathRejection>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let no_such_key = || ApiError::not_found("no such key");
    let Ok(Path(key_id)) = key_id else {
        return Err(no_such_key());
    };
    if !token::is_valid_key_id(&key_id) {
        return Err(no_such_key());
    }
    let revoked = {
        let key_id = key_id.clone();
        state
            .write(move |store| store.revoke_key(&key_id, &admin_at(unix_now())))
            .await?
    };
    let version = revoked.ok_or_else(no_such_key)?;
    state.publish_version(version);
    state.0.metrics.key_revoked();
    let enforced = state.await_enforcement(version).await;
    info!(
        key_id = %key_id,
        version,
        confirmed = enforced.confirmed.len(),
        unconfirmed = enforced.unconfirmed.len(),
        waited_ms = enforced.waited_ms,
        "key revoked"
    );
    Ok(Json(RevokeResponse {
        key_id,
        revoked: true,
        version,
        enforced,
    }))
}
