//! A blocking client for the admin API, used by `guardctl keys ...`, `users ...` and `audit ...`.

use crate::api::policies::{PolicyRemoved, PolicyView};
use crate::keys::import::{BatchFailure, ImportResponse, ImportRow};
use crate::store::{AuditEvent, UserInfo};
use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use ureq::http::Response;
use ureq::Body;

/// Environment variable that overrides the admin token file.
pub const ADMIN_TOKEN_ENV: &str = "GUARDCTL_ADMIN_TOKEN";

/// The admin token from `GUARDCTL_ADMIN_TOKEN` if set, else from `file`.
pub fn resolve_admin_token(file: &Path) -> anyhow::Result<String> {
    if let Ok(token) = std::env::var(ADMIN_TOKEN_ENV) {
        let token = token.trim();
        if !token.is_empty() {
            return Ok(token.to_string());
        }
    }
    let raw = std::fs::read_to_string(file).with_context(|| {
        format!(
            "cannot read the admin token from {} (`guardctl serve` writes it next to its \
             database; point --admin-token-file at it or set {ADMIN_TOKEN_ENV})",
            file.display()
        )
    })?;
    let token = raw.trim();
    if token.is_empty() {
        bail!("the admin token file {} is empty", file.display());
    }
    Ok(token.to_string())
}

#[derive(Debug, Clone, Serialize)]
pub struct CreateKeyParams {
    pub org: String,
    /// A service key's role (`None` for a user's key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The issuing user (`None` for a service key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
}

/// The answer to a create, including the one-time plaintext token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedKey {
    pub key_id: String,
    pub token: String,
    pub org: String,
    pub role: String,
    pub user: Option<String>,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// A key as `GET /v1/keys` lists it: the store's row, never a hash or a token.
pub use crate::store::KeyInfo as ListedKey;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<ListedKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokedKey {
    pub key_id: String,
    pub revoked: bool,
    pub version: u64,
    /// Absent from servers older than the confirmations.
    #[serde(default)]
    pub enforced: Option<crate::api::confirm::Enforcement>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserList {
    pub users: Vec<UserInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleChanged {
    pub org: String,
    pub name: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRemoved {
    pub org: String,
    pub name: String,
    pub removed: bool,
    pub revoked: Vec<RevokedVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced: Option<crate::api::confirm::Enforcement>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokedVersion {
    pub key_id: String,
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditList {
    pub events: Vec<AuditEvent>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// `/v1/policies/{org}`, the org checked first so that it cannot reshape the URL.
fn policy_path(org: &str) -> anyhow::Result<String> {
    crate::keys::rules::check_label("org", org).map_err(|why| anyhow!(why))?;
    Ok(format!("/v1/policies/{org}"))
}

/// `/v1/users/{org}/{name}`; both are checked first so that they cannot reshape the URL.
fn user_path(org: &str, name: &str) -> anyhow::Result<String> {
    crate::keys::rules::check_label("org", org).map_err(|why| anyhow!(why))?;
    crate::keys::rules::check_user_name(name).map_err(|why| anyhow!(why))?;
    Ok(format!("/v1/users/{org}/{name}"))
}

pub struct AdminClient {
    agent: ureq::Agent,
    base_url: String,
    admin_token: String,
}

impl AdminClient {
    /// `server` is the base URL of `guardctl serve`, e.g. `http://127.0.0.1:8081`
    /// (a bare `host:port` is taken as http).
    pub fn new(server: &str, admin_token: String) -> anyhow::Result<Self> {
        let server = server.trim().trim_end_matches('/');
        let base_url = if server.starts_with("http://") {
            server.to_string()
        } else if server.starts_with("https://") {
            bail!("{server}: guardctl serves plain http; use an http:// URL")
        } else if server.contains("://") {
            bail!("{server}: only http:// URLs are supported")
        } else {
            format!("http://{server}")
        };
        let agent = ureq::Agent::config_builder()
            // Error answers carry a JSON message worth showing; read them like any other.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Ok(AdminClient {
            agent,
            base_url,
            admin_token,
        })
    }

    pub fn create_key(&self, params: &CreateKeyParams) -> anyhow::Result<CreatedKey> {
        self.send_json(Method::Post, "/v1/keys", params)
    }

    pub fn list_keys(&self) -> anyhow::Result<KeyList> {
        self.call(Method::Get, "/v1/keys".into(), None)
    }

    pub fn revoke_key(&self, key_id: &str) -> anyhow::Result<RevokedKey> {
        // Key-ids are [a-z0-9]; anything else cannot name a key, and must not reshape the URL.
        if key_id.is_empty() || !key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            bail!("no such key: {key_id:?} (key ids are letters and digits)");
        }
        let not_found = Some(format!("no such key: {key_id}"));
        self.call(Method::Delete, format!("/v1/keys/{key_id}"), not_found)
    }

    pub fn add_user(&self, org: &str, name: &str, role: &str) -> anyhow::Result<UserInfo> {
        let body = serde_json::json!({ "org": org, "name": name, "role": role });
        self.send_json(Method::Post, "/v1/users", &body)
    }

    pub fn list_users(&self) -> anyhow::Result<UserList> {
        self.call(Method::Get, "/v1/users".into(), None)
    }

    /// The org of user `name`: `org` when given, else the one org that has such a user.
    pub fn org_of_user(&self, name: &str, org: Option<String>) -> anyhow::Result<String> {
        if let Some(org) = org {
            return Ok(org);
        }
        let orgs: Vec<String> = self
            .list_users()?
            .users
            .into_iter()
            .filter(|user| user.name == name)
            .map(|user| user.org)
            .collect();
        match orgs.as_slice() {
            [org] => Ok(org.clone()),
            [] => bail!("no user {name} in any org"),
            many => bail!(
                "user {name} exists in orgs {}: say which with --org",
                many.join(", ")
            ),
        }
    }

    pub fn set_user_role(&self, org: &str, name: &str, role: &str) -> anyhow::Result<RoleChanged> {
        let path = user_path(org, name)?;
        self.send_json(Method::Patch, &path, &serde_json::json!({ "role": role }))
    }

    pub fn remove_user(
        &self,
        org: &str,
        name: &str,
        revoke_keys: bool,
    ) -> anyhow::Result<UserRemoved> {
        let path = format!("{}?revoke_keys={revoke_keys}", user_path(org, name)?);
        self.call(Method::Delete, path, None)
    }

    /// Sets an org's policy from its source text (validated by the server, which names the line).
    pub fn set_policy(
        &self,
        org: &str,
        source: &str,
        allow_unknown_roles: bool,
    ) -> anyhow::Result<PolicyView> {
        let body =
            serde_json::json!({ "source": source, "allow_unknown_roles": allow_unknown_roles });
        self.send_json(Method::Put, &policy_path(org)?, &body)
    }

    /// The org's policy; `None` when it has none.
    pub fn policy(&self, org: &str) -> anyhow::Result<Option<PolicyView>> {
        let path = policy_path(org)?;
        let url = format!("{}{path}", self.base_url);
        let response = self
            .agent
            .get(&url)
            .header("Authorization", self.authorization())
            .call();
        if matches!(&response, Ok(answer) if answer.status() == 404) {
            return Ok(None);
        }
        self.decode(&url, response, None).map(Some)
    }

    pub fn remove_policy(&self, org: &str) -> anyhow::Result<PolicyRemoved> {
        let not_found = Some(format!("org {org} has no policy"));
        self.call(Method::Delete, policy_path(org)?, not_found)
    }

    pub fn audit(&self, since: i64) -> anyhow::Result<AuditList> {
        self.call(Method::Get, format!("/v1/audit?since={since}"), None)
    }

    /// A request without a body.
    fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        path: String,
        not_found: Option<String>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base_url);
        let authorization = self.authorization();
        let response = match method {
            Method::Get => self
                .agent
                .get(&url)
                .header("Authorization", authorization)
                .call(),
            Method::Delete => self
                .agent
                .delete(&url)
                .header("Authorization", authorization)
                .call(),
            Method::Post | Method::Put | Method::Patch => {
                bail!("{url}: this request needs a body")
            }
        };
        self.decode(&url, response, not_found)
    }

    /// A request with a JSON body.
    fn send_json<T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base_url);
        let body = serde_json::to_string(body)?;
        let request = match method {
            Method::Post => self.agent.post(&url),
            Method::Put => self.agent.put(&url),
            Method::Patch => self.agent.patch(&url),
            Method::Get | Method::Delete => bail!("{url}: this request takes no body"),
        };
        let response = request
            .header("Authorization", self.authorization())
            .content_type("application/json")
            .send(body.as_str());
        self.decode(&url, response, None)
    }

    /// Sends one batch of hash rows to `POST /v1/keys/import`. A refusal keeps the server's
    /// message and the index of the row at fault, so the caller can name the line.
    pub fn import_batch(&self, rows: &[ImportRow]) -> Result<ImportResponse, BatchFailure> {
        let url = format!("{}/v1/keys/import", self.base_url);
        let fail = |message: String| BatchFailure {
            message,
            index: None,
        };
        #[derive(Serialize)]
        struct Batch<'a> {
            keys: &'a [ImportRow],
        }
        let body = serde_json::to_vec(&Batch { keys: rows })
            .map_err(|err| fail(format!("cannot encode the batch: {err}")))?;
        let response = self
            .agent
            .post(&url)
            .header("Authorization", self.authorization())
            .content_type("application/json")
            .send(&body[..]);
        let mut response = response.map_err(|err| {
            fail(format!(
                "cannot reach the guardctl server at {} ({err}); is `guardctl serve` running?",
                self.base_url
            ))
        })?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|err| fail(format!("cannot read the answer from {url}: {err}")))?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|err| fail(format!("unexpected answer from {url}: {err}")));
        }
        #[derive(Deserialize)]
        struct RowError {
            error: String,
            index: Option<usize>,
        }
        match serde_json::from_str::<RowError>(&text) {
            Ok(refused) if status.as_u16() != 401 => Err(BatchFailure {
                message: format!("server answered {}: {}", status.as_u16(), refused.error),
                index: refused.index,
            }),
            Ok(refused) => Err(fail(format!(
                "the server rejected the admin token ({}); check --admin-token-file or \
                 {ADMIN_TOKEN_ENV}",
                refused.error
            ))),
            Err(_) => Err(fail(format!(
                "server answered {}: {}",
                status.as_u16(),
                text.chars().take(200).collect::<String>()
            ))),
        }
    }

    fn authorization(&self) -> String {
        format!("Bearer {}", self.admin_token)
    }

    /// Turns an answer into `T`, or into an error that says what went wrong in plain words.
    fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        response: Result<Response<Body>, ureq::Error>,
        not_found: Option<String>,
    ) -> anyhow::Result<T> {
        let mut response = response.map_err(|err| {
            anyhow!(
                "cannot reach the guardctl server at {} ({err}); is `guardctl serve` running? \
                 (set --server or GUARDCTL_SERVER)",
                self.base_url
            )
        })?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX) // a million keys are far more than the default 10 MB
            .read_to_string()
            .with_context(|| format!("cannot read the answer from {url}"))?;
        if status.is_success() {
            return serde_json::from_str(&body)
                .with_context(|| format!("unexpected answer from {url}"));
        }
        let message = serde_json::from_str::<ErrorBody>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| body.chars().take(200).collect());
        match (status.as_u16(), not_found) {
            (401, _) => bail!(
                "the server rejected the admin token ({message}); check --admin-token-file \
                 or {ADMIN_TOKEN_ENV}"
            ),
            (404, Some(not_found)) => bail!("{not_found}"),
            (code, _) => bail!("server answered {code}: {message}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let token = || "t".to_string();
        assert_eq!(
            AdminClient::new("http://127.0.0.1:8081/", token())
                .unwrap()
                .base_url,
            "http://127.0.0.1:8081"
        );
        assert_eq!(
            AdminClient::new("localhost:9000", token())
                .unwrap()
                .base_url,
            "http://localhost:9000"
        );
        assert!(AdminClient::new("https://example.test", token()).is_err());
        assert!(AdminClient::new("ftp://example.test", token()).is_err());
    }

    #[test]
    fn unreachable_server_is_a_clear_error() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let client = AdminClient::new("http://127.0.0.1:1", "t".into()).unwrap();
        let err = client.list_keys().unwrap_err().to_string();
        assert!(err.contains("cannot reach"), "{err}");
    }
}
