//! The admin API's tool policies, one per org: `PUT /v1/policies/{org}` (set, from YAML or
//! JSON source), `GET /v1/policies/{org}` (show), `DELETE /v1/policies/{org}` (remove).
//!
//! A policy change is a change of the key set's log: it gets the next version and reaches the
//! proxies through the same long-poll as a revocation (docs/protocol.md, "Policies").

use super::admin::Admin;
use super::keys::admin_at;
use super::state::{internal, json_body, unix_now, ApiError, AppState};
use crate::keys::rules;
use crate::policy::document::{self, DocumentError};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::Json;
use mcp_guard_protocol::policy::Policy;
use serde::{Deserialize, Serialize};
use tracing::info;

/// Largest request body: the largest document, escaped in JSON, with room to spare.
pub const MAX_POLICY_BODY_BYTES: usize = 4 * document::MAX_DOCUMENT_BYTES;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPolicyRequest {
    /// The document as the operator wrote it: YAML, or JSON.
    source: String,
    /// Accept roles that no user or key of the org holds yet.
    #[serde(default)]
    allow_unknown_roles: bool,
}

/// A policy as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PolicyView {
    pub org: String,
    pub version: u64,
    pub set_at: i64,
    /// What `policy set` was given.
    pub source: String,
    /// What the proxies enforce: the canonical form (every list explicit, roles sorted).
    pub policy: serde_json::Value,
    /// `mode ...; roles ...`, as the audit trail records it.
    pub summary: String,
    /// In the answer to a set: which live proxies had applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced: Option<super::confirm::Enforcement>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PolicyRemoved {
    pub org: String,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced: Option<super::confirm::Enforcement>,
}

fn org_path(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Ok(Path(org)) = path else {
        return Err(ApiError::not_found("no such policy"));
    };
    rules::check_label("org", &org).map_err(ApiError::bad_request)?;
    Ok(org)
}

fn view(
    org: String,
    version: u64,
    set_at: i64,
    source: String,
    policy: &Policy,
) -> Result<PolicyView, ApiError> {
    let canonical = serde_json::to_value(policy)
        .map_err(|err| internal(format!("policy does not encode: {err}")))?;
    Ok(PolicyView {
        org,
        version,
        set_at,
        source,
        policy: canonical,
        summary: document::summary(policy),
        enforced: None,
    })
}

pub(super) async fn set_policy(
    _: Admin,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PolicyView>, ApiError> {
    let org = org_path(path)?;
    let request: SetPolicyRequest = json_body(body)?;
    let known = if request.allow_unknown_roles {
        None
    } else {
        let org = org.clone();
        Some(state.read(move |store| store.roles_in_org(&org)).await?)
    };
    let policy = document::parse(&request.source, known.as_deref())
        .map_err(|err: DocumentError| ApiError::bad_request(err.to_string()))?;
    let summary = document::summary(&policy);
    let set_at = unix_now();
    let version = {
        let (org, document, source, summary) = (
            org.clone(),
            policy.encode(),
            request.source.clone(),
            summary.clone(),
        );
        state
            .write(move |store| {
                store.set_policy(&org, &document, &source, &summary, &admin_at(set_at))
            })
            .await?
    };
    state.publish_version(version);
    let enforced = state.await_enforcement(version).await;
    info!(org = %org, version, summary = %summary, unconfirmed = enforced.unconfirmed.len(), "policy set");
    let mut answer = view(org, version, set_at, request.source, &policy)?;
    answer.enforced = Some(enforced);
    Ok(Json(answer))
}

pub(super) async fn show_policy(
    _: Admin,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PolicyView>, ApiError> {
    let org = org_path(path)?;
    let stored = {
        let org = org.clone();
        state.read(move |store| store.policy(&org)).await?
    };
    let stored = stored.ok_or_else(|| ApiError::not_found(format!("org {org} has no policy")))?;
    let org = stored.org.clone();
    let policy = Policy::decode(stored.document.as_bytes())
        .ok_or_else(|| internal(format!("stored policy of org {org} does not decode")))?;
    Ok(Json(view(
        stored.org,
        stored.version,
        stored.set_at,
        stored.source,
        &policy,
    )?))
}

pub(super) async fn remove_policy(
    _: Admin,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PolicyRemoved>, ApiError> {
    let org = org_path(path)?;
    let version = {
        let org = org.clone();
        state
            .write(move |store| store.remove_policy(&org, &admin_at(unix_now())))
            .await?
    };
    state.publish_version(version);
    let enforced = Some(state.await_enforcement(version).await);
    info!(org = %org, version, "policy removed; every role may call every tool");
    Ok(Json(PolicyRemoved {
        org,
        version,
        enforced,
    }))
}
