//! `GET /readyz` and `GET /metrics` (`/healthz` is a constant answer in the router).

use super::state::AppState;
use crate::telemetry::metrics::{self, Snapshot};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::{Duration, Instant};
use tracing::warn;

/// `/readyz` and `/metrics` give the database this long to answer a read.
const PROBE_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /readyz`: 200 when the database answers a read and the server is not shutting down,
/// else 503. (`/healthz` only says the process serves HTTP; it never touches the database.)
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_stopping() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match tokio::time::timeout(
        PROBE_READ_TIMEOUT,
        state.read(|store| store.current_version()),
    )
    .await
    {
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
pub(super) async fn metrics_page(State(state): State<AppState>) -> Response {
    let keys = tokio::time::timeout(PROBE_READ_TIMEOUT, state.read(|store| store.key_count()))
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
