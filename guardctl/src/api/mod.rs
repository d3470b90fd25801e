//! The HTTP API of `guardctl serve`, one listener: the admin API (`keys.rs`, behind the admin
//! token of `admin.rs`; users and the audit trail in `users.rs`, tool policies in `policies.rs`), the key-set sync API for the proxies (`sync.rs`), and the probes and
//! metrics (`probes.rs`). This file opens the server, routes, and stops it gracefully.

pub mod admin;
pub mod admin_token;
pub mod confirm;
pub mod keys;
pub mod policies;
pub mod probes;
pub mod state;
pub mod sync;
pub mod users;

use crate::keys::import;
use crate::store::{self as stores, StoreError};
use crate::telemetry::metrics::Metrics;
use admin_token::AdminTokenCheck;
use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, patch, post, put};
use axum::Router;
use state::{ApiError, AppState, Shared};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn};

/// Create requests are a few hundred bytes; anything much larger is a mistake or an attack.
const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;
/// Default number of changes in one sync page.
pub const DEFAULT_SYNC_PAGE_SIZE: u32 = 1000;
/// Default of [`ServeConfig::confirm_timeout`].
pub const DEFAULT_CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// What `serve` needs besides the listener.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub db_path: PathBuf,
    pub sync_page_size: usize,
    /// The admin token file, read at start (created, mode 0600, if missing). `None`: the file
    /// `admin-token` in the folder of `db_path`.
    pub admin_token_file: Option<PathBuf>,
    /// How long a revoke or a policy change waits for every live proxy to confirm it before
    /// answering (zero: answer at commit).
    pub confirm_timeout: std::time::Duration,
}

impl ServeConfig {
    pub fn new(db_path: impl Into<PathBuf>) -> Self {
        ServeConfig {
            db_path: db_path.into(),
            sync_page_size: DEFAULT_SYNC_PAGE_SIZE as usize,
            admin_token_file: None,
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
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
        let store = stores::open(&config.db_path)
            .with_context(|| format!("cannot open database {}", config.db_path.display()))?;
        let version = store.current_version()?;
        let (versions, _) = watch::channel(version);
        let (stopping, stopping_rx) = watch::channel(false);
        let store: Arc<dyn crate::store::KeyStore> = Arc::from(store);
        let state = AppState(Arc::new(Shared {
            read_permits: Semaphore::new(store.max_concurrent_reads()),
            proxies: confirm::ProxyRegistry::sharing_through(store.clone()),
            store,
            admin: AdminTokenCheck::new(&admin_token),
            versions,
            stopping: stopping_rx,
            metrics: Metrics::default(),
            sync_page_size: config.sync_page_size.max(1),
            write_permits: Semaphore::new(1),
            confirm_timeout: config.confirm_timeout,
        }));
        // Changes committed by other replicas wake this one's long-polls too. Weak: the
        // listener stops once the server is gone.
        let weak = Arc::downgrade(&state.0);
        state.0.store.follow_versions(Arc::new(move |version| {
            let Some(shared) = weak.upgrade() else {
                return false;
            };
            AppState(shared).publish_version(version);
            true
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
            db = %state.0.store.location(),
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
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(probes::metrics_page))
        .route("/v1/keys", post(keys::create_key).get(keys::list_keys))
        .route(
            "/v1/keys/import",
            post(keys::import_keys).layer(DefaultBodyLimit::max(import::MAX_IMPORT_BODY_BYTES)),
        )
        .route("/v1/keys/{key_id}", delete(keys::revoke_key))
        .route("/v1/users", post(users::add_user).get(users::list_users))
        .route(
            "/v1/users/{org}/{name}",
            patch(users::set_role).delete(users::remove_user),
        )
        .route("/v1/audit", get(users::audit_list))
        .route(
            "/v1/policies/{org}",
            put(policies::set_policy)
                .get(policies::show_policy)
                .delete(policies::remove_policy)
                .layer(DefaultBodyLimit::max(policies::MAX_POLICY_BODY_BYTES)),
        )
        .route(mcp_guard_protocol::sync::SYNC_PATH, get(sync::keyset))
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

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
        let ready = probes::readyz(State(state.clone())).await;
        assert_eq!(ready.status(), StatusCode::OK);
        let metrics = probes::metrics_page(State(state.clone())).await;
        assert_eq!(metrics.status(), StatusCode::OK);

        let mut released = state.long_polls_stopped();
        server.stopping.send_replace(true);
        assert!(*released.borrow_and_update());
        let stopping = probes::readyz(State(state.clone())).await;
        assert_eq!(stopping.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(
            probes::metrics_page(State(state)).await.into_body(),
            1 << 20,
        )
        .await
        .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("\nguardctl_ready 0\n"), "{text}");
        assert!(text.contains("\nguardctl_keys 0\n"), "{text}");
    }
}
