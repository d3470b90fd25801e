//! `guardctl serve`: the HTTP listener with the admin API (`/v1/keys`), the key-set sync API
//! (`/v1/keyset`, in `sync.rs`) and `/healthz`.

use crate::admin_token::{self, AdminTokenCheck};
use crate::import::{self, ImportRequest, ImportResponse};
use crate::store::{ImportOutcome, KeyInfo, NewKey, Store, StoreError, READER_POOL_SIZE};
use crate::sync;
use crate::token;
use crate::validate;
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Create requests are a few hundred bytes; anything much larger is a mistake or an attack.
const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;
/// Default number of changes in one sync page.
pub const DEFAULT_SYNC_PAGE_SIZE: u32 = 1000;

/// What `serve` needs besides the listener.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub db_path: PathBuf,
    pub sync_page_size: usize,
}

/// A server whose database and admin token are ready; `run` starts answering requests.
pub struct Server {
    state: AppState,
    admin_token_path: PathBuf,
    stop_long_polls: watch::Sender<bool>,
}

impl Server {
    /// Creates the data folder, the admin token and the database as needed. Blocking.
    pub fn open(config: &ServeConfig) -> anyhow::Result<Server> {
        let data_dir = admin_token::data_dir_of(&config.db_path);
        admin_token::ensure_data_dir(&data_dir)?;
        let admin_token_path = data_dir.join(admin_token::ADMIN_TOKEN_FILE);
        let admin_token = admin_token::load_or_create(&admin_token_path)?;
        let store = Store::open(&config.db_path)
            .with_context(|| format!("cannot open database {}", config.db_path.display()))?;
        let version = store.current_version()?;
        let (versions, _) = watch::channel(version);
        let (stop_long_polls, long_polls_stopped) = watch::channel(false);
        let state = AppState(Arc::new(Shared {
            store: Arc::new(store),
            admin: AdminTokenCheck::new(&admin_token),
            versions,
            long_polls_stopped,
            sync_page_size: config.sync_page_size.max(1),
            read_permits: Semaphore::new(READER_POOL_SIZE),
            write_permits: Semaphore::new(1),
        }));
        Ok(Server {
            state,
            admin_token_path,
            stop_long_polls,
        })
    }

    pub fn admin_token_path(&self) -> &FsPath {
        &self.admin_token_path
    }

    /// Serves on `listener` until `shutdown` completes, then stops gracefully: pending long-polls
    /// are answered at once (as if their wait ran out) and in-flight requests finish.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let store = Arc::clone(&state.0.store);
        let (version, keys) = tokio::task::spawn_blocking(move || {
            Ok::<_, StoreError>((store.current_version()?, store.key_count()?))
        })
        .await??;
        let address = listener.local_addr()?;
        let plural = if keys == 1 { "" } else { "s" };
        eprintln!(
            "guardctl: listening on http://{address} (db {}, version {version}, {keys} key{plural})",
            state.0.store.path().display()
        );
        let stop_long_polls = self.stop_long_polls;
        let on_shutdown = async move {
            shutdown.await;
            eprintln!("guardctl: shutting down");
            stop_long_polls.send_replace(true);
        };
        axum::serve(listener, router(state))
            .with_graceful_shutdown(on_shutdown)
            .await
            .context("server failed")
    }
}

/// Binds `listen`, opens the database and serves until SIGINT or SIGTERM.
pub async fn serve(listen: &str, config: ServeConfig) -> anyhow::Result<()> {
    raise_open_file_limit();
    let server = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Server::open(&config)).await??
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    server.run(listener, shutdown_signal()).await
}

/// Every long-polling proxy holds a socket open, and the usual default soft limit of 1024 file
/// descriptors would cap the server just around a thousand proxies. Raise the soft limit to the
/// hard one, as the Go runtime does for its servers. Failure only leaves the old limit.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // Linux refuses more than fs.nr_open (1Mi by default) even when the hard limit is "unlimited".
    const CEILING: u64 = 1 << 20;
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.unwrap_or(CEILING).min(CEILING);
    if let Some(current) = limit.current.filter(|current| *current < target) {
        let raised = Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        };
        if let Err(err) = setrlimit(Resource::Nofile, raised) {
            eprintln!("guardctl: warning: cannot raise the open-file limit from {current}: {err}");
        }
    }
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
        }
        Err(err) => {
            eprintln!("guardctl: cannot watch SIGTERM ({err}); only Ctrl-C stops the server");
            let _ = interrupt.await;
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route(
            "/v1/keys/import",
            post(import_keys).layer(DefaultBodyLimit::max(import::MAX_IMPORT_BODY_BYTES)),
        )
        .route("/v1/keys/{key_id}", delete(revoke_key))
        .route("/v1/keyset", get(sync::keyset))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY_BYTES))
        .with_state(state)
}

/// State shared by all handlers.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    store: Arc<Store>,
    admin: AdminTokenCheck,
    /// The newest committed version. Long-polls wait on it instead of on the database, so a
    /// thousand waiting proxies cost a thousand small futures and no threads.
    versions: watch::Sender<u64>,
    /// Turns true when the server stops, to release long-polls.
    long_polls_stopped: watch::Receiver<bool>,
    sync_page_size: usize,
    /// SQLite work runs on blocking threads; these bound how many at once (reads to the size of
    /// the read-connection pool, writes to the one writer), so a burst of requests queues here
    /// as futures instead of parking hundreds of threads on a mutex.
    read_permits: Semaphore,
    write_permits: Semaphore,
}

impl AppState {
    pub(crate) fn epoch(&self) -> &str {
        self.0.store.epoch()
    }

    pub(crate) fn sync_page_size(&self) -> usize {
        self.0.sync_page_size
    }

    pub(crate) fn subscribe_versions(&self) -> watch::Receiver<u64> {
        self.0.versions.subscribe()
    }

    pub(crate) fn long_polls_stopped(&self) -> watch::Receiver<bool> {
        self.0.long_polls_stopped.clone()
    }

    /// Runs a read on a blocking thread with a pooled connection.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self.0.read_permits.acquire().await.map_err(internal)?;
        let store = Arc::clone(&self.0.store);
        tokio::task::spawn_blocking(move || read(&store))
            .await
            .map_err(internal)?
            .map_err(internal)
    }

    /// Runs a write on a blocking thread, one at a time.
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self.0.write_permits.acquire().await.map_err(internal)?;
        let store = Arc::clone(&self.0.store);
        tokio::task::spawn_blocking(move || write(&store))
            .await
            .map_err(internal)?
            .map_err(internal)
    }

    /// Announces a committed version to waiting long-polls. Never moves backwards, whatever the
    /// order in which concurrent writers get here.
    fn publish_version(&self, version: u64) {
        self.0.versions.send_if_modified(|current| {
            if version > *current {
                *current = version;
                true
            } else {
                false
            }
        });
    }
}

/// An error answer: `{"error": "<client-safe message>"}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// For an import batch: the position in `keys` of the row at fault.
    index: Option<usize>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            index: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    fn at_row(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.index {
            Some(index) => serde_json::json!({ "error": self.message, "index": index }),
            None => serde_json::json!({ "error": self.message }),
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Logs the details of an unexpected failure and gives the client only a generic 500.
fn internal(err: impl std::fmt::Display) -> ApiError {
    eprintln!("guardctl: internal error: {err}");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

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
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong admin token",
            )),
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyRequest {
    org: String,
    role: String,
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
    name: String,
    created_at: i64,
    expires_at: Option<i64>,
}

async fn create_key(
    _: Admin,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        ApiError::bad_request(format!(
            "cannot read request body: {}",
            rejection.body_text()
        ))
    })?;
    let request: CreateKeyRequest = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(short(format!("invalid request body: {err}"))))?;
    validate::check_label("org", &request.org).map_err(ApiError::bad_request)?;
    validate::check_label("role", &request.role).map_err(ApiError::bad_request)?;
    validate::check_name(&request.name).map_err(ApiError::bad_request)?;
    let created_at = unix_now();
    let expires_at = match request.expires_in_seconds {
        Some(seconds) => {
            validate::check_expires_in(seconds).map_err(ApiError::bad_request)?;
            Some(created_at.saturating_add(seconds))
        }
        None => None,
    };
    let new_key = NewKey {
        org: request.org,
        role: request.role,
        name: request.name,
        created_at,
        expires_at,
    };
    let created = state.write(move |store| store.create_key(&new_key)).await?;
    state.publish_version(created.version);

    let info = created.info;
    let answer = CreateKeyResponse {
        key_id: info.key_id,
        token: created.token.token,
        org: info.org,
        role: info.role,
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

#[derive(Serialize)]
struct KeyList<'a> {
    keys: &'a [KeyInfo],
}

async fn list_keys(_: Admin, State(state): State<AppState>) -> Result<Response, ApiError> {
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
async fn import_keys(
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
            .write(move |store| store.import_keys(&batch, now))
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
    Ok(Json(ImportResponse { imported, version }))
}

#[derive(Serialize)]
struct RevokeResponse {
    key_id: String,
    revoked: bool,
    version: u64,
}

async fn revoke_key(
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
        state.write(move |store| store.revoke_key(&key_id)).await?
    };
    let version = revoked.ok_or_else(no_such_key)?;
    state.publish_version(version);
    Ok(Json(RevokeResponse {
        key_id,
        revoked: true,
        version,
    }))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Caps a client-facing message: serde errors may quote (part of) the offending input.
fn short(mut message: String) -> String {
    const MAX: usize = 200;
    if message.len() > MAX {
        let mut end = MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

#[cfg(test)]
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

    #[test]
    fn short_messages_stay_short() {
        assert_eq!(short("fine".into()), "fine");
        let long = short("é".repeat(300));
        assert!(long.len() <= 203);
        assert!(long.ends_with('…'));
    }
}
