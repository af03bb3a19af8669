//! OTLP/HTTP receiver: `POST /v1/logs`, `/v1/metrics`, `/v1/traces`, protobuf or JSON.
//!
//! Answers follow the OTLP/HTTP specification: 200 with an export response (its
//! `partialSuccess` set when records were dropped), or an error status whose body is a
//! `google.rpc.Status` in the request's format.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use sextant_ingest::IngestOutcome;
use sextant_ingest::otlp::{Encoding, Format};
use sextant_model::Signal;

use crate::auth::{TENANT_HEADER, authorize_ingest};
use crate::rpc_status::RpcStatus;
use crate::{ApiError, AppState};

pub async fn logs(state: State<AppState>, headers: HeaderMap, body: Body) -> Response {
    export(state, headers, body, Signal::Logs).await
}

pub async fn metrics(state: State<AppState>, headers: HeaderMap, body: Body) -> Response {
    export(state, headers, body, Signal::Metrics).await
}

pub async fn traces(state: State<AppState>, headers: HeaderMap, body: Body) -> Response {
    export(state, headers, body, Signal::Traces).await
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
) -> Response {
    // Errors are written in the request's format when it can be told, JSON otherwise.
    let encoding = Encoding::from_headers(
        header_str(&headers, header::CONTENT_TYPE),
        header_str(&headers, header::CONTENT_ENCODING),
    );
    let format = encoding.as_ref().map_or(Format::Json, |e| e.format);
    match accept(&state, &headers, body, signal, encoding).await {
        Ok(outcome) => success(signal, format, &outcome),
        Err(err) => error_response(&err, format),
    }
}

async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    signal: Signal,
    encoding: Result<Encoding, sextant_ingest::Error>,
) -> Result<IngestOutcome, ApiError> {
    let principal = state
        .auth
        .authenticate(header_str(headers, header::AUTHORIZATION))?;
    let _slot = state.request_slot(&principal.tenant)?;
    authorize_ingest(
        &principal,
        signal.into(),
        header_str(headers, TENANT_HEADER),
    )?;
    let encoding = encoding?;
    let pipeline = state.pipeline()?;
    let limit = pipeline.config().max_body_bytes;
    let too_large = || sextant_ingest::Error::BodyTooLarge { limit };
    let declared = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large().into());
    }
    let body: Bytes = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|err| {
            if err.is::<http_body_util::LengthLimitError>() {
                ApiError::Ingest(too_large())
            } else {
                ApiError::Ingest(sextant_ingest::Error::Malformed {
                    signal,
                    format: encoding.format.as_str(),
                    message: format!("request body could not be read: {err}"),
                })
            }
        })?
        .to_bytes();
    Ok(pipeline
        .ingest(&principal.tenant, signal, encoding, body)
        .await?)
}

fn success(signal: Signal, format: Format, outcome: &IngestOutcome) -> Response {
    let partial = (outcome.rejected > 0).then(|| {
        (
            outcome.rejected as i64,
            outcome.message.clone().unwrap_or_default(),
        )
    });
    let body = match format {
        Format::Protobuf => match signal {
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: partial.map(|(rejected_log_records, error_message)| {
                    ExportLogsPartialSuccess {
                        rejected_log_records,
                        error_message,
                    }
                }),
            }
            .encode_to_vec(),
            Signal::Metrics => ExportMetricsServiceResponse {
                partial_success: partial.map(|(rejected_data_points, error_message)| {
                    ExportMetricsPartialSuccess {
                        rejected_data_points,
                        error_message,
                    }
                }),
            }
            .encode_to_vec(),
            Signal::Traces => ExportTraceServiceResponse {
                partial_success: partial.map(|(rejected_spans, error_message)| {
                    ExportTracePartialSuccess {
                        rejected_spans,
                        error_message,
                    }
                }),
            }
            .encode_to_vec(),
        },
        // OTLP/JSON: a fully accepted request gets `{}`; field names follow the protobuf ones.
        Format::Json => {
            let body = match partial {
                None => serde_json::json!({}),
                Some((rejected, message)) => {
                    let count_field = match signal {
                        Signal::Logs => "rejectedLogRecords",
                        Signal::Metrics => "rejectedDataPoints",
                        Signal::Traces => "rejectedSpans",
                    };
                    serde_json::json!({
                        "partialSuccess": { count_field: rejected, "errorMessage": message }
                    })
                }
            };
            body.to_string().into_bytes()
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type(format))],
        body,
    )
        .into_response()
}

fn content_type(format: Format) -> HeaderValue {
    HeaderValue::from_static(match format {
        Format::Protobuf => "application/x-protobuf",
        Format::Json => "application/json",
    })
}

/// An OTLP error response: the status, `Retry-After` when retrying helps, and a
/// `google.rpc.Status` body.
pub fn error_response(err: &ApiError, format: Format) -> Response {
    let status =
        StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = err.public_message();
    let retry_after = err.retry_after();
    let body = match format {
        Format::Protobuf => RpcStatus::new(err.grpc_code(), message, retry_after).encode_to_vec(),
        Format::Json => serde_json::to_vec(&serde_json::json!({
            "code": err.grpc_code() as i32,
            "message": message,
            "error": err.code(),
        }))
        .unwrap_or_default(),
    };
    let mut response =
        (status, [(header::CONTENT_TYPE, content_type(format))], body).into_response();
    if let Some(delay) = retry_after {
        let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
