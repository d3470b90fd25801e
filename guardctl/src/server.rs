//! `guardctl serve`: the HTTP listener with the admin API (`/v1/keys`), the key-set sync API
//! (`/v1/keyset`, in `sync.rs`), `/healthz`, `/readyz` and `/metrics` (in `metrics.rs`).

use crate::admin_token::{self, AdminTokenCheck};
use crate::import::{self, ImportRequest, ImportResponse};
use crate::metrics::{self, Metrics, Snapshot};
use crate::store::{ImportOutcome, KeyInfo, NewKey, Store, StoreError, READER_POOL_SIZE};
use crate::sync;
use crate::token;
use crate::validate;
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Request, State,
};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{error, info, warn};

/// Create requests are a few hundred bytes; anything much larger is a mistake or an attack.
const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;
/// Default number of changes in one sync page.
pub const DEFAULT_SYNC_PAGE_SIZE: u32 = 1000;
/// `/readyz` and `/metrics` give the database this long to answer a read.
const PROBE_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// What `serve` needs besides the listener.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub db_path: PathBuf,
    pub sync_page_size: usize,
    /// The admin token file, read at start (created, mode 0600, if missing). `None`: the file
    /// `admin-token` in the folder of `db_path`.
    pub admin_token_file: Option<PathBuf>,
}

impl ServeConfig {
    pub fn new(db_path: impl Into<PathBuf>) -> Self {
        ServeConfig {
            db_path: db_path.into(),
            sync_page_size: DEFAULT_SYNC_PAGE_SIZE as usize,
            admin_token_file: None,
        }
    }
}

/// A server whose database and admin token are ready; `run` starts answering requests.
pub struct Server {
    state: AppState,
    admin_token_path: PathBuf,
    stopping: watch::Sender<bool>,
}

impl Server {
    /// Creates the data folder, the admin token and the database as needed. Blocking.
    pub fn open(config: &ServeConfig) -> anyhow::Result<Server> {
        let data_dir = admin_token::data_dir_of(&config.db_path);
        admin_token::ensure_data_dir(&data_dir)?;
        let admin_token_path = config
            .admin_token_file
            .clone()
            .unwrap_or_else(|| data_dir.join(admin_token::ADMIN_TOKEN_FILE));
        let admin_token = admin_token::load_or_create(&admin_token_path)?;
        let store = Store::open(&config.db_path)
            .with_context(|| format!("cannot open database {}", config.db_path.display()))?;
        let version = store.current_version()?;
        let (versions, _) = watch::channel(version);
        let (stopping, stopping_rx) = watch::channel(false);
        let state = AppState(Arc::new(Shared {
            store: Arc::new(store),
            admin: AdminTokenCheck::new(&admin_token),
            versions,
            stopping: stopping_rx,
            metrics: Metrics::default(),
            sync_page_size: config.sync_page_size.max(1),
            read_permits: Semaphore::new(READER_POOL_SIZE),
            write_permits: Semaphore::new(1),
        }));
        Ok(Server {
            state,
            admin_token_path,
            stopping,
        })
    }

    pub fn admin_token_path(&self) -> &FsPath {
        &self.admin_token_path
    }

    /// Serves on `listener` until `shutdown` completes, then stops gracefully: `/readyz` turns
    /// 503, pending long-polls are answered at once (as if their wait ran out, so proxies poll
    /// again after the restart) and in-flight requests finish.
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
        // The e2e harness and tests find the port in "listening on http://<address>": keep it.
        info!(
            listen = %address,
            db = %state.0.store.path().display(),
            epoch = state.epoch(),
            version,
            keys,
            guardctl_version = env!("CARGO_PKG_VERSION"),
            "listening on http://{address}"
        );
        let stopping = self.stopping;
        let shutdown_state = state.clone();
        let on_shutdown = async move {
            shutdown.await;
            // One flag turns /readyz to 503 and releases every waiting long-poll.
            stopping.send_replace(true);
            info!(
                long_polls = shutdown_state.0.metrics.long_polls(),
                "shutting down: answering waiting long-polls"
            );
        };
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(on_shutdown)
            .await
            .context("server failed")?;
        info!("stopped");
        Ok(())
    }
}

/// Binds `listen`, opens the database and serves until SIGINT or SIGTERM.
pub async fn serve(listen: &str, config: ServeConfig) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    raise_open_file_limit();
    let server = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Server::open(&config)).await??
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    server.run(listener, shutdown).await
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
            warn!(current, %err, "cannot raise the open-file limit");
        }
    }
}

/// Watches SIGINT (Ctrl-C) and SIGTERM from now on, and returns a future that completes on the
/// first of them. Registering before the server announces itself matters: a signal sent right
/// after the "listening on" line would otherwise still meet the default action and kill the
/// process without a graceful stop.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let watch = |kind: SignalKind, name: &'static str| match signal(kind) {
        Ok(stream) => Some(stream),
        Err(err) => {
            warn!(%err, signal = name, "cannot watch this signal; it will stop the server without a graceful shutdown");
            None
        }
    };
    let mut interrupt = watch(SignalKind::interrupt(), "SIGINT");
    let mut terminate = watch(SignalKind::terminate(), "SIGTERM");
    async move {
        tokio::select! {
            () = next_signal(interrupt.as_mut()) => info!(signal = "SIGINT", "signal received"),
            () = next_signal(terminate.as_mut()) => info!(signal = "SIGTERM", "signal received"),
        }
    }
}

/// The next delivery of a watched signal; never, for a signal that could not be watched.
async fn next_signal(stream: Option<&mut tokio::signal::unix::Signal>) {
    match stream {
        Some(stream) => {
            stream.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route(
            "/v1/keys/import",
            post(import_keys).layer(DefaultBodyLimit::max(import::MAX_IMPORT_BODY_BYTES)),
        )
        .route("/v1/keys/{key_id}", delete(revoke_key))
        .route("/v1/keyset", get(sync::keyset))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            count_http_requests,
        ))
        .fallback(|State(state): State<AppState>| async move {
            state.0.metrics.http_request("other", 404);
            ApiError::not_found("no such endpoint")
        })
        .method_not_allowed_fallback(|State(state): State<AppState>| async move {
            state.0.metrics.http_request("other", 405);
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY_BYTES))
        .with_state(state)
}

/// Counts every answer of a known route in `guardctl_http_requests_total{route,code}`.
async fn count_http_requests(
    State(state): State<AppState>,
    route: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = route.map_or_else(|| "other".to_string(), |path| path.as_str().to_string());
    let response = next.run(request).await;
    state
        .0
        .metrics
        .http_request(&route, response.status().as_u16());
    response
}

/// `GET /readyz`: 200 when the database answers a read and the server is not shutting down,
/// else 503. (`/healthz` only says the process serves HTTP; it never touches the database.)
async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_stopping() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match tokio::time::timeout(PROBE_READ_TIMEOUT, state.read(Store::current_version)).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(_)) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response(),
        Err(_) => {
            warn!(
                timeout_ms = PROBE_READ_TIMEOUT.as_millis(),
                "readiness: the database did not answer in time"
            );
            (StatusCode::SERVICE_UNAVAILABLE, "database did not answer\n").into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text format; no admin token (counts only).
async fn metrics_page(State(state): State<AppState>) -> Response {
    let keys = tokio::time::timeout(PROBE_READ_TIMEOUT, state.read(Store::key_count))
        .await
        .ok()
        .and_then(Result::ok);
    let snapshot = Snapshot {
        keys,
        keyset_version: *state.0.versions.borrow(),
        ready: !state.is_stopping(),
    };
    let body = state.0.metrics.render(snapshot, Instant::now());
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        body,
    )
        .into_response()
}

/// The peer address of the connection, when the server was started with connect info.
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
        ))
    }
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
    /// Turns true when the server starts shutting down: /readyz answers 503 and long-polls are
    /// released.
    stopping: watch::Receiver<bool>,
    metrics: Metrics,
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
        self.0.stopping.clone()
    }

    fn is_stopping(&self) -> bool {
        *self.0.stopping.borrow()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
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
    error!(%err, "internal error");
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
    state.0.metrics.key_created();

    let info = created.info;
    info!(
        key_id = %info.key_id,
        org = %info.org,
        role = %info.role,
        expires_at = info.expires_at,
        version = created.version,
        "key created"
    );
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
    state.0.metrics.keys_imported(imported);
    info!(count = imported, version, "keys imported");
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
    state.0.metrics.key_revoked();
    info!(key_id = %key_id, version, "key revoked");
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

    /// `/readyz` answers 200 while the database reads, and 503 from the moment shutdown starts
    /// (the same flag releases the long-polls); `/metrics` shows it as `guardctl_ready`.
    #[tokio::test]
    async fn readyz_turns_503_when_stopping() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServeConfig::new(dir.path().join("guard.db"));
        let server = tokio::task::spawn_blocking(move || Server::open(&config))
            .await
            .unwrap()
            .unwrap();
        let state = server.state.clone();
        let ready = readyz(State(state.clone())).await;
        assert_eq!(ready.status(), StatusCode::OK);
        let metrics = metrics_page(State(state.clone())).await;
        assert_eq!(metrics.status(), StatusCode::OK);

        let mut released = state.long_polls_stopped();
        server.stopping.send_replace(true);
        assert!(*released.borrow_and_update());
        let stopping = readyz(State(state.clone())).await;
        assert_eq!(stopping.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(metrics_page(State(state)).await.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("\nguardctl_ready 0\n"), "{text}");
        assert!(text.contains("\nguardctl_keys 0\n"), "{text}");
    }

    #[test]
    fn short_messages_stay_short() {
        assert_eq!(short("fine".into()), "fine");
        let long = short("é".repeat(300));
        assert!(long.len() <= 203);
        assert!(long.ends_with('…'));
    }
}
