//! OTLP/gRPC receiver: the `LogsService`, `MetricsService` and `TraceService` exporters, on the
//! same port as HTTP. The token comes in the `authorization` metadata key.

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use sextant_ingest::IngestOutcome;
use sextant_ingest::otlp::OtlpRequest;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::auth::{TENANT_HEADER, authorize_ingest};
use crate::rpc_status::RpcStatus;
use crate::{ApiError, AppState};

/// The three OTLP gRPC services over one shared state.
#[derive(Clone)]
pub struct OtlpGrpc {
    state: AppState,
}

/// The gRPC services as axum routes (one `Export` method each), ready to merge with the HTTP
/// routes.
pub fn router(state: AppState, max_message_bytes: usize) -> axum::Router {
    let service = OtlpGrpc { state };
    let gzip = CompressionEncoding::Gzip;
    let logs = LogsServiceServer::new(service.clone())
        .accept_compressed(gzip)
        .max_decoding_message_size(max_message_bytes);
    let metrics = MetricsServiceServer::new(service.clone())
        .accept_compressed(gzip)
        .max_decoding_message_size(max_message_bytes);
    let traces = TraceServiceServer::new(service)
        .accept_compressed(gzip)
        .max_decoding_message_size(max_message_bytes);
    axum::Router::new()
        .route_service(&export_path::<LogsServiceServer<OtlpGrpc>>(), logs)
        .route_service(&export_path::<MetricsServiceServer<OtlpGrpc>>(), metrics)
        .route_service(&export_path::<TraceServiceServer<OtlpGrpc>>(), traces)
}

fn export_path<S: NamedService>() -> String {
    format!("/{}/Export", S::NAME)
}

fn status(err: ApiError) -> Status {
    let message = err.public_message();
    match err.retry_after() {
        Some(delay) => {
            let details = RpcStatus::new(err.grpc_code(), message.clone(), Some(delay));
            Status::with_details(err.grpc_code(), message, details.encode_to_vec().into())
        }
        None => Status::new(err.grpc_code(), message),
    }
}

impl OtlpGrpc {
    async fn export(
        &self,
        metadata: &MetadataMap,
        request: OtlpRequest,
        encoded_len: usize,
    ) -> Result<IngestOutcome, Status> {
        let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
        let result = async {
            let principal = self.state.auth.authenticate(text("authorization"))?;
            let _slot = self.state.request_slot(&principal.tenant)?;
            authorize_ingest(&principal, request.signal().into(), text(TENANT_HEADER))?;
            let pipeline = self.state.pipeline()?;
            Ok::<_, ApiError>(
                pipeline
                    .ingest_request(&principal.tenant, request, encoded_len)
                    .await?,
            )
        }
        .await;
        result.map_err(status)
    }
}

fn rejected(outcome: &IngestOutcome) -> Option<(i64, String)> {
    (outcome.rejected > 0).then(|| {
        (
            outcome.rejected as i64,
            outcome.message.clone().unwrap_or_default(),
        )
    })
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let len = request.get_ref().encoded_len();
        let (metadata, _, message) = request.into_parts();
        let outcome = OtlpGrpc::export(self, &metadata, OtlpRequest::Logs(message), len).await?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: rejected(&outcome).map(|(rejected_log_records, error_message)| {
                ExportLogsPartialSuccess {
                    rejected_log_records,
                    error_message,
                }
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let len = request.get_ref().encoded_len();
        let (metadata, _, message) = request.into_parts();
        let outcome = OtlpGrpc::export(self, &metadata, OtlpRequest::Metrics(message), len).await?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: rejected(&outcome).map(|(rejected_data_points, error_message)| {
                ExportMetricsPartialSuccess {
                    rejected_data_points,
                    error_message,
                }
            }),
        }))
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let len = request.get_ref().encoded_len();
        let (metadata, _, message) = request.into_parts();
        let outcome = OtlpGrpc::export(self, &metadata, OtlpRequest::Traces(message), len).await?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: rejected(&outcome).map(|(rejected_spans, error_message)| {
                ExportTracePartialSuccess {
                    rejected_spans,
                    error_message,
                }
            }),
        }))
    }
}
