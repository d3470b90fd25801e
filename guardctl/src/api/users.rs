//! The admin API's users and audit trail: `POST /v1/users` (add), `GET /v1/users` (list),
//! `PATCH /v1/users/{org}/{name}` (set the role), `DELETE /v1/users/{org}/{name}` (remove,
//! `?revoke_keys=true` to revoke the user's keys in the same transaction), `GET /v1/audit`.
//!
//! A user's role is what a key issued by the user is frozen to; changing it later changes no
//! existing key, so nothing here touches the key set except a removal with `revoke_keys`.

use super::admin::Admin;
use super::keys::admin_at;
use super::state::{json_body, short, unix_now, ApiError, AppState};
use crate::keys::rules;
use crate::store::{AuditEvent, UserInfo};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tracing::info;

/// Most audit rows in one answer.
pub const MAX_AUDIT_ROWS: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddUserRequest {
    org: String,
    name: String,
    role: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRoleRequest {
    role: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoveQuery {
    #[serde(default)]
    revoke_keys: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    #[serde(default)]
    since: i64,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Serialize)]
pub(super) struct UserList {
    users: Vec<UserInfo>,
}

#[derive(Serialize)]
pub(super) struct RoleChanged {
    org: String,
    name: String,
    from: String,
    to: String,
}

#[derive(Serialize)]
pub(super) struct RevokedKey {
    key_id: String,
    version: u64,
}

#[derive(Serialize)]
pub(super) struct UserRemoved {
    org: String,
    name: String,
    removed: bool,
    revoked: Vec<RevokedKey>,
    /// When keys were revoked: which live proxies had applied the last revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    enforced: Option<super::confirm::Enforcement>,
}

#[derive(Serialize)]
pub(super) struct AuditList {
    events: Vec<AuditEvent>,
}

/// The `{org}/{name}` of a user path, checked against their grammars.
fn user_path(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    let Ok(Path((org, name))) = path else {
        return Err(ApiError::not_found("no such user"));
    };
    rules::check_label("org", &org).map_err(ApiError::bad_request)?;
    rules::check_user_name(&name).map_err(ApiError::bad_request)?;
    Ok((org, name))
}

pub(super) async fn add_user(
    _: Admin,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    let request: AddUserRequest = json_body(body)?;
    rules::check_label("org", &request.org).map_err(ApiError::bad_request)?;
    rules::check_user_name(&request.name).map_err(ApiError::bad_request)?;
    rules::check_label("role", &request.role).map_err(ApiError::bad_request)?;
    let user = state
        .write(move |store| {
            store.add_user(
                &request.org,
                &request.name,
                &request.role,
                &admin_at(unix_now()),
            )
        })
        .await?;
    info!(org = %user.org, user = %user.name, role = %user.role, "user added");
    Ok((StatusCode::CREATED, Json(user)))
}

pub(super) async fn list_users(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<UserList>, ApiError> {
    let users = state.read(|store| store.list_users()).await?;
    Ok(Json(UserList { users }))
}

pub(super) async fn set_role(
    _: Admin,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RoleChanged>, ApiError> {
    let (org, name) = user_path(path)?;
    let request: SetRoleRequest = json_body(body)?;
    rules::check_label("role", &request.role).map_err(ApiError::bad_request)?;
    let change = {
        let (org, name) = (org.clone(), name.clone());
        state
            .write(move |store| {
                store.set_user_role(&org, &name, &request.role, &admin_at(unix_now()))
            })
            .await?
    };
    info!(org = %org, user = %name, from = %change.from, to = %change.to, "user role changed; existing keys keep theirs");
    Ok(Json(RoleChanged {
        org,
        name,
        from: change.from,
        to: change.to,
    }))
}

pub(super) async fn remove_user(
    _: Admin,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<RemoveQuery>, QueryRejection>,
) -> Result<Json<UserRemoved>, ApiError> {
    let (org, name) = user_path(path)?;
    let Query(query) = query.map_err(|err| ApiError::bad_request(short(err.body_text())))?;
    let removed = {
        let (org, name) = (org.clone(), name.clone());
        state
            .write(move |store| {
                store.remove_user(&org, &name, query.revoke_keys, &admin_at(unix_now()))
            })
            .await?
    };
    let mut enforced = None;
    if let Some(version) = removed.revoked.iter().map(|(_, version)| *version).max() {
        state.publish_version(version);
        enforced = Some(state.await_enforcement(version).await);
    }
    for _ in &removed.revoked {
        state.0.metrics.key_revoked();
    }
    info!(org = %org, user = %name, keys_revoked = removed.revoked.len(), "user removed");
    Ok(Json(UserRemoved {
        org,
        name,
        removed: true,
        revoked: removed
            .revoked
            .into_iter()
            .map(|(key_id, version)| RevokedKey { key_id, version })
            .collect(),
        enforced,
    }))
}

pub(super) async fn audit_list(
    _: Admin,
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditList>, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(short(err.body_text())))?;
    let limit = query
        .limit
        .unwrap_or(MAX_AUDIT_ROWS)
        .clamp(1, MAX_AUDIT_ROWS);
    let events = state
        .read(move |store| store.audit_since(query.since, limit))
        .await?;
    Ok(Json(AuditList { events }))
}
