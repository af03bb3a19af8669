//! `POST /loki/api/v1/push`: Loki's push API, JSON or snappy protobuf (as Grafana's clients
//! send it), through the same pipeline as OTLP logs. See [`sextant_ingest::loki`] for the
//! mapping. A malformed stream or entry refuses the body whole (400, naming it); at most
//! [`crate::ndjson::MAX_LINES`] entries per request.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prost::Message;
use sextant_ingest::loki;
use sextant_ingest::otlp::OtlpRequest;

use crate::read_params::now_ns;
use crate::{ApiError, AppState};

pub async fn push(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal =
        crate::alerts::ingest_principal(&state, &headers, sextant_model::IngestKind::Logs)?;
    let pipeline = state.pipeline()?.clone();
    let max = pipeline.config().max_body_bytes;
    if body.len() > max {
        return Err(ApiError::Ingest(sextant_ingest::Error::BodyTooLarge {
            limit: max,
        }));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let streams = match media {
        "application/json" => loki::decode_json(&body),
        "application/x-protobuf" | "application/protobuf" => loki::decode_protobuf(&body, max),
        _ => {
            return Err(ApiError::Ingest(
                sextant_ingest::Error::UnsupportedContentType {
                    content_type: content_type.to_owned(),
                    expected: "application/json or application/x-protobuf",
                },
            ));
        }
    }
    .map_err(ApiError::BadRequest)?;
    let count: usize = streams.iter().map(|s| s.entries.len()).sum();
    if count > crate::ndjson::MAX_LINES {
        return Err(ApiError::BadRequest(format!(
            "{count} entries in one request, over the limit of {}",
            crate::ndjson::MAX_LINES
        )));
    }
    if count > 0 {
        let request = loki::to_otlp(streams, now_ns() as u64);
        let size = request.encoded_len();
        pipeline
            .ingest_request(&principal.tenant, OtlpRequest::Logs(request), size)
            .await?;
    }
    // Loki answers 204 with no body.
    Ok(StatusCode::NO_CONTENT.into_response())
}
