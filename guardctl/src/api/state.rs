//! What every handler shares: the state (store, admin token check, version watch, metrics,
//! concurrency permits), the peer address, and the error answer.

use super::admin_token::AdminTokenCheck;
use crate::store::{KeyStore, Refusal, StoreError};
use crate::telemetry::metrics::Metrics;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{watch, Semaphore};
use tracing::error;

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
pub struct AppState(pub(super) Arc<Shared>);

pub(super) struct Shared {
    pub(super) store: Arc<dyn KeyStore>,
    pub(super) admin: AdminTokenCheck,
    /// The newest committed version. Long-polls wait on it instead of on the database, so a
    /// thousand waiting proxies cost a thousand small futures and no threads.
    pub(super) versions: watch::Sender<u64>,
    /// Turns true when the server starts shutting down: /readyz answers 503 and long-polls are
    /// released.
    pub(super) stopping: watch::Receiver<bool>,
    pub(super) metrics: Metrics,
    pub(super) sync_page_size: usize,
    /// SQLite work runs on blocking threads; these bound how many at once (reads to the size of
    /// the read-connection pool, writes to the one writer), so a burst of requests queues here
    /// as futures instead of parking hundreds of threads on a mutex.
    pub(super) read_permits: Semaphore,
    pub(super) write_permits: Semaphore,
    /// Which proxies have applied which version.
    pub(super) proxies: super::confirm::ProxyRegistry,
    pub(super) confirm_timeout: std::time::Duration,
}

impl AppState {
    /// Waits (up to the configured timeout) until every live proxy has applied `version`.
    pub(super) async fn await_enforcement(&self, version: u64) -> super::confirm::Enforcement {
        self.0
            .proxies
            .await_version(&self.0.store, version, self.0.confirm_timeout)
            .await
    }

    /// A sync request of `proxy` confirms `since`; it stays live while `wait` lasts, and
    /// [`confirm::GRACE`](super::confirm::GRACE) after the returned guard is dropped.
    pub(super) fn proxy_polling(
        &self,
        proxy: String,
        since: u64,
        wait: std::time::Duration,
    ) -> ProxyPoll {
        let poll = ProxyPoll {
            state: self.clone(),
            proxy,
            since,
        };
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        poll.record(wait_ms);
        poll
    }

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

    pub(super) fn is_stopping(&self) -> bool {
        *self.0.stopping.borrow()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Runs a read on a blocking thread, at most [`KeyStore::max_concurrent_reads`] at once.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn KeyStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.blocking(&self.0.read_permits, read).await
    }

    /// Runs a write on a blocking thread, one at a time.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&dyn KeyStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.blocking(&self.0.write_permits, write).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        permits: &Semaphore,
        work: impl FnOnce(&dyn KeyStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = permits.acquire().await.map_err(internal)?;
        let store = Arc::clone(&self.0.store);
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .map_err(internal)?
            .map_err(ApiError::from)
    }

    /// Announces a committed version to waiting long-polls. Never moves backwards, whatever the
    /// order in which concurrent writers get here.
    pub(super) fn publish_version(&self, version: u64) {
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

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(super) fn at_row(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }
}

/// A refused write is the client's to hear about; any other store error is a 500.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Refused(refusal) => {
                let status = match refusal {
                    Refusal::NoSuchUser { .. } | Refusal::NoSuchPolicy { .. } => {
                        StatusCode::NOT_FOUND
                    }
                    Refusal::UserExists { .. } | Refusal::UserHasKeys { .. } => {
                        StatusCode::CONFLICT
                    }
                };
                ApiError::new(status, refusal.to_string())
            }
            other => internal(other),
        }
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
pub(super) fn internal(err: impl std::fmt::Display) -> ApiError {
    error!(%err, "internal error");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Decodes a JSON request body, with client-safe messages for an unreadable or bad one.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|rejection| {
        ApiError::bad_request(format!(
            "cannot read request body: {}",
            rejection.body_text()
        ))
    })?;
    serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(short(format!("invalid request body: {err}"))))
}

/// Caps a client-facing message: serde errors may quote (part of) the offending input.
pub(super) fn short(mut message: String) -> String {
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

/// One proxy's sync request: recorded when it starts and again when it ends (or its connection
/// drops), each time shared with the other replicas (in order, off the async threads).
pub(super) struct ProxyPoll {
    state: AppState,
    proxy: String,
    since: u64,
}

impl ProxyPoll {
    fn record(&self, wait_ms: u64) {
        let grace_ms = u64::try_from(super::confirm::GRACE.as_millis()).unwrap_or(u64::MAX);
        let live_until = super::confirm::unix_ms()
            .saturating_add(wait_ms)
            .saturating_add(grace_ms);
        self.state
            .0
            .proxies
            .record(&self.proxy, self.since, live_until);
    }
}

impl Drop for ProxyPoll {
    fn drop(&mut self) {
        self.record(0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn short_messages_stay_short() {
        assert_eq!(short("fine".into()), "fine");
        let long = short("é".repeat(300));
        assert!(long.len() <= 203);
        assert!(long.ends_with('…'));
    }
}
