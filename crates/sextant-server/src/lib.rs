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

pub mod action_runner;
pub mod alerts;
mod api_anomalies;
mod api_forecast;
mod api_incidents;
mod api_logs;
mod api_metrics;
mod api_patterns;
mod api_rules;
mod api_runbooks;
mod api_sql;
mod api_tenant;
mod api_tokens;
mod api_topology;
mod api_traces;
pub mod audit;
pub mod auth;
pub mod capacity;
pub mod correlation;
pub mod derived_series;
pub mod egress;
mod error;
mod health;
pub mod listen;
mod loki;
mod ndjson;
mod otlp_grpc;
mod otlp_http;
mod range_series;
pub mod rca_live;
mod read_params;
mod remote_write;
mod rpc_status;
pub mod runbooks;
pub mod secrets;
pub mod syslog;
pub mod throttle;
pub mod tls;
mod ui;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use sextant_ingest::IngestPipeline;
use sextant_ingest::remote_write::PromState;
use sextant_model::TenantId;
use sextant_query::QueryEngine;
use sextant_store::meta::MetadataStore;
use sextant_store::{EventSource, TableSource};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use auth::{Authenticator, Principal};

/// Failed authentications per source address and minute before the address is refused.
pub const DEFAULT_MAX_FAILED_AUTHENTICATIONS: u32 = 30;
pub use error::ApiError;

/// What the server needs once storage is open: ingest, table snapshots, and the query engine.
pub struct Services {
    pub pipeline: Arc<IngestPipeline>,
    pub tables: Arc<dyn TableSource>,
    pub query: Arc<QueryEngine>,
    /// Anomalies, capacity warnings and the detectors' feedback.
    pub events: Arc<dyn EventSource>,
    /// Alerts and anomalies into incidents.
    pub correlation: Arc<correlation::Correlation>,
    /// The tenants' runbooks.
    pub runbooks: Arc<runbooks::Runbooks>,
}

/// State shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    auth: Arc<Authenticator>,
    meta: Arc<dyn MetadataStore>,
    services: Arc<OnceLock<Services>>,
    request_slots: Arc<Semaphore>,
    max_concurrent_requests: usize,
    /// Each tenant's share of the request slots.
    tenant_slots: Arc<parking_lot::Mutex<HashMap<TenantId, Arc<Semaphore>>>>,
    metrics: Option<PrometheusHandle>,
    /// What each tenant's remote_write traffic has taught (metadata, counter starts); each
    /// tenant's behind its own lock, so tenants convert in parallel.
    prom: Arc<parking_lot::Mutex<HashMap<TenantId, Arc<parking_lot::Mutex<PromState>>>>>,
    /// Failed authentications per source address.
    throttle: Arc<throttle::AuthThrottle>,
    /// Show every tenant's self-metrics on `/metrics` without a token.
    public_tenant_metrics: bool,
}

impl AppState {
    /// A server that is not ready yet: it answers health checks and refuses everything else
    /// until [`AppState::set_ready`] hands it the services (after the write-ahead log is
    /// replayed).
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        max_concurrent_requests: usize,
        metrics: Option<PrometheusHandle>,
    ) -> AppState {
        AppState {
            auth: Arc::new(Authenticator::new(meta.clone())),
            meta,
            services: Arc::new(OnceLock::new()),
            request_slots: Arc::new(Semaphore::new(max_concurrent_requests)),
            max_concurrent_requests,
            tenant_slots: Arc::default(),
            metrics,
            prom: Arc::default(),
            throttle: Arc::new(throttle::AuthThrottle::new(
                DEFAULT_MAX_FAILED_AUTHENTICATIONS,
            )),
            public_tenant_metrics: false,
        }
    }

    /// `/metrics` shows every tenant's series to anyone (`true`), or each tenant's only to its
    /// tokens (`false`, the default).
    pub fn with_public_tenant_metrics(mut self, public: bool) -> AppState {
        self.public_tenant_metrics = public;
        self
    }

    /// Refuse an address or token id for the rest of the minute after `per_minute` failed
    /// authentications (0: never), reading client addresses from `X-Forwarded-For` behind the
    /// `trusted_proxies` only.
    pub fn with_auth_throttle(
        mut self,
        per_minute: u32,
        trusted_proxies: &[String],
    ) -> Result<AppState, String> {
        self.throttle = Arc::new(
            throttle::AuthThrottle::new(per_minute).with_trusted_proxies(trusted_proxies)?,
        );
        Ok(self)
    }

    /// Starts taking requests.
    pub fn set_ready(&self, services: Services) {
        let _ = self.services.set(services);
    }

    /// The services, once ready.
    pub fn services(&self) -> Result<&Services, ApiError> {
        self.services.get().ok_or(ApiError::Starting)
    }

    /// The ingest pipeline, once ready.
    pub fn pipeline(&self) -> Result<&Arc<IngestPipeline>, ApiError> {
        Ok(&self.services()?.pipeline)
    }

    /// A slot for one request of `tenant`: one of the tenant's share (a quarter of all, at
    /// least one) and one of all; none free means too many requests at once.
    fn request_slot(&self, tenant: &TenantId) -> Result<RequestSlot, ApiError> {
        let share = {
            let mut shares = self.tenant_slots.lock();
            shares
                .entry(tenant.clone())
                .or_insert_with(|| {
                    Arc::new(Semaphore::new((self.max_concurrent_requests / 4).max(1)))
                })
                .clone()
        };
        let own = share
            .try_acquire_owned()
            .map_err(|_| ApiError::TooManyRequests)?;
        let any = self
            .request_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::TooManyRequests)?;
        Ok(RequestSlot(own, any))
    }
}

/// A request whose `Content-Length` passes the body limit is answered 413 at once, before a
/// byte of its body is read.
async fn refuse_declared_too_large(
    request: axum::extract::Request,
    next: axum::middleware::Next,
    limit: usize,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return ApiError::Ingest(sextant_ingest::Error::BodyTooLarge { limit }).into_response();
    }
    next.run(request).await
}

/// A request's slots: one of its tenant's share, one of all. Held until the request is answered.
pub(crate) struct RequestSlot(
    #[allow(dead_code)] OwnedSemaphorePermit,
    #[allow(dead_code)] OwnedSemaphorePermit,
);

/// Every route: health, self-metrics, OTLP/HTTP and OTLP/gRPC.
pub fn router(state: AppState, max_grpc_message_bytes: usize) -> Router {
    Router::new()
        .route("/", get(ui::index))
        .route("/assets/{file}", get(ui::asset))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/logs", post(otlp_http::logs))
        .route("/v1/metrics", post(otlp_http::metrics))
        .route("/v1/traces", post(otlp_http::traces))
        .route("/api/v1/sql", post(api_sql::sql))
        .route(
            "/api/v1/tenant/data",
            axum::routing::delete(api_tenant::erase_data),
        )
        .route("/api/v1/logs/search", get(api_logs::search))
        .route("/api/v1/logs/ndjson", post(ndjson::logs))
        .route("/loki/api/v1/push", post(loki::push))
        .route("/api/v1/prom/write", post(remote_write::write))
        .route("/api/v1/metrics/query_range", get(api_metrics::query_range))
        .route("/api/v1/traces/{trace_id}", get(api_traces::trace))
        .route("/api/v1/patterns", get(api_patterns::patterns))
        .route("/api/v1/patterns/{id}/series", get(api_patterns::series))
        .route("/api/v1/anomalies", get(api_anomalies::list))
        .route("/api/v1/anomalies/{id}", get(api_anomalies::one))
        .route(
            "/api/v1/anomalies/{id}/feedback",
            post(api_anomalies::feedback),
        )
        .route("/api/v1/forecast", get(api_forecast::forecast))
        .route("/api/v1/topology", get(api_topology::topology))
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/runbooks", get(api_runbooks::list))
        .route("/api/v1/actions", get(api_runbooks::actions))
        .route(
            "/api/v1/runbooks/{name}",
            axum::routing::put(api_runbooks::put)
                .delete(api_runbooks::delete)
                .post(api_runbooks::switch),
        )
        .route(
            "/api/v1/tokens",
            get(api_tokens::list).post(api_tokens::create),
        )
        .route(
            "/api/v1/tokens/{id}",
            axum::routing::delete(api_tokens::revoke),
        )
        .route("/api/v1/secrets", get(secrets::list))
        .route(
            "/api/v1/secrets/{name}",
            axum::routing::put(secrets::put).delete(secrets::delete),
        )
        .route("/api/v1/runs", get(api_runbooks::runs))
        .route("/api/v1/runs/{id}", get(api_runbooks::one_run))
        .route(
            "/api/v1/runs/{id}/link",
            get(api_runbooks::link_page).post(api_runbooks::link),
        )
        .route("/api/v1/runs/{id}/{action}", post(api_runbooks::decide))
        .route("/api/v1/alertmanager", post(alerts::alertmanager))
        .route("/api/v1/events", post(alerts::events))
        .route("/api/v1/incidents", get(api_incidents::list))
        .route("/api/v1/incidents/{id}", get(api_incidents::one))
        .route("/api/v1/incidents/{id}/rca", get(api_incidents::rca))
        .route(
            "/api/v1/incidents/{id}/{action}",
            post(api_incidents::action),
        )
        .route(
            "/api/v1/silences",
            get(api_rules::list_silences).post(api_rules::create_silence),
        )
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(api_rules::delete_silence),
        )
        .route(
            "/api/v1/inhibit_rules",
            get(api_rules::list_inhibit_rules).post(api_rules::create_inhibit_rule),
        )
        .route(
            "/api/v1/inhibit_rules/{id}",
            axum::routing::delete(api_rules::delete_inhibit_rule),
        )
        .with_state(state.clone())
        .merge(otlp_grpc::router(state.clone(), max_grpc_message_bytes))
        .fallback(health::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::tenant_guard,
        ))
        .layer(axum::middleware::from_fn_with_state(state, throttle::guard))
        .layer(axum::extract::DefaultBodyLimit::max(max_grpc_message_bytes))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                refuse_declared_too_large(request, next, max_grpc_message_bytes)
            },
        ))
        .layer(axum::middleware::map_response(error::json_errors))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use sextant_model::{Role, TenantId};
    use sextant_store::meta::SqliteMetadata;
    use tower::ServiceExt;

    use super::*;
    use sextant_store::meta::TokenStore;

    async fn status(app: &Router, request: Request<Body>) -> (StatusCode, String) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let retry = response.headers().get("retry-after").cloned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let mut text = String::from_utf8_lossy(&body).into_owned();
        if let Some(retry) = retry {
            text.push_str(&format!(" retry-after={}", retry.to_str().unwrap()));
        }
        (status, text)
    }

    #[tokio::test]
    async fn not_ready_until_the_log_is_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(SqliteMetadata::open(&dir.path().join("meta.db")).unwrap());
        let token = meta
            .create_token(&TenantId::new("acme").unwrap(), Role::Ingest)
            .unwrap();
        let app = router(AppState::new(meta, 8, None), 1 << 20);

        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
        assert_eq!(status(&app, get("/healthz")).await.0, StatusCode::OK);
        let (code, body) = status(&app, get("/readyz")).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");

        let ingest = Request::post("/v1/logs")
            .header("authorization", format!("Bearer {}", token.secret))
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let (code, body) = status(&app, ingest).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("starting") && body.ends_with("retry-after=1"),
            "{body}"
        );

        let (code, body) = status(&app, get("/no/such/route")).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    }
}
