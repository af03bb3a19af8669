//! Sextant's network face: one port for the HTTP API, OTLP/HTTP and OTLP/gRPC, with bearer-token
//! auth and Sextant's own health and metrics endpoints.
//!
//! The main types:
//! - [`AppState`]: what every handler shares (authenticator, ingest pipeline, limits).
//! - [`router`]: the axum `Router` with every route, gRPC included.
//! - [`auth::Authenticator`]: turns `Authorization: Bearer TOKEN` into a [`auth::Principal`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use sextant_server::{AppState, router};
//! use sextant_store::meta::SqliteMetadata;
//!
//! # async fn example() -> std::io::Result<()> {
//! let meta = Arc::new(SqliteMetadata::open("data/meta.db".as_ref()).unwrap());
//! let state = AppState::new(meta, 256, None);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7300").await?;
//! axum::serve(listener, router(state, 16 << 20)).await
//! # }
//! ```

pub mod auth;
mod error;
mod health;
mod otlp_grpc;
mod otlp_http;
mod rpc_status;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use sextant_ingest::IngestPipeline;
use sextant_store::meta::MetadataStore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use auth::{Authenticator, Principal};
pub use error::ApiError;

/// State shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    auth: Arc<Authenticator>,
    pipeline: Arc<OnceLock<Arc<IngestPipeline>>>,
    request_slots: Arc<Semaphore>,
    metrics: Option<PrometheusHandle>,
}

impl AppState {
    /// A server that is not ready yet: it answers health checks and refuses ingest until
    /// [`AppState::set_ready`] hands it the pipeline (after the write-ahead log is replayed).
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        max_concurrent_requests: usize,
        metrics: Option<PrometheusHandle>,
    ) -> AppState {
        AppState {
            auth: Arc::new(Authenticator::new(meta)),
            pipeline: Arc::new(OnceLock::new()),
            request_slots: Arc::new(Semaphore::new(max_concurrent_requests)),
            metrics,
        }
    }

    /// Starts taking telemetry.
    pub fn set_ready(&self, pipeline: Arc<IngestPipeline>) {
        let _ = self.pipeline.set(pipeline);
    }

    /// The pipeline, once ready.
    pub fn pipeline(&self) -> Result<&Arc<IngestPipeline>, ApiError> {
        self.pipeline.get().ok_or(ApiError::Starting)
    }

    /// A slot for one request; none free means too many requests at once.
    fn request_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.request_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::TooManyRequests)
    }
}

/// Every route: health, self-metrics, OTLP/HTTP and OTLP/gRPC.
pub fn router(state: AppState, max_grpc_message_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/logs", post(otlp_http::logs))
        .route("/v1/metrics", post(otlp_http::metrics))
        .route("/v1/traces", post(otlp_http::traces))
        .with_state(state.clone())
        .merge(otlp_grpc::router(state, max_grpc_message_bytes))
        .fallback(health::not_found)
}
