//! Health, readiness and Sextant's own metrics in Prometheus format.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once the write-ahead log is replayed and while it can still take writes.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.services.get().map(|s| &s.pipeline) {
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: replaying the write-ahead log\n",
        )
            .into_response(),
        Some(pipeline) if !pipeline.bus().is_healthy() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the write-ahead log failed a write; see the server log\n",
        )
            .into_response(),
        Some(_) => "ready\n".into_response(),
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response();
    };
    if let Some(pipeline) = state.services.get().map(|s| &s.pipeline) {
        metrics::gauge!("sextant_ingest_queue_depth").set(pipeline.bus().queue_depth() as f64);
        metrics::gauge!("sextant_ingest_in_flight_bytes").set(pipeline.in_flight_bytes() as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

pub async fn not_found() -> Response {
    crate::ApiError::NotFound("no such route".into()).into_response()
}
