//! `POST /api/v1/prom/write`: Prometheus remote_write 1.0 (snappy-compressed protobuf), its
//! samples through the same pipeline as OTLP metrics (tenant limits, write-ahead log,
//! detectors). See [`sextant_ingest::remote_write`] for the mapping.
//!
//! Answers 204 when every series was taken. A body that is not snappy protobuf, or decompresses
//! past the ingest body limit, is refused whole (400; a `Content-Encoding` other than snappy,
//! 415). Series that break the rules are refused alone: the others are stored and the answer is
//! 400 naming the first problems (Prometheus does not retry a 400, so nothing is written
//! twice). Rate limits answer 429 with `Retry-After`, which Prometheus retries.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prost::Message;
use sextant_ingest::otlp::OtlpRequest;
use sextant_ingest::remote_write::{self, Converted};

use crate::{ApiError, AppState};

/// Bodies larger than this are decoded on the blocking pool.
const INLINE_BYTES: usize = 64 * 1024;

pub async fn write(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal =
        crate::alerts::ingest_principal(&state, &headers, sextant_model::IngestKind::Metrics)?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("snappy");
    if !encoding.eq_ignore_ascii_case("snappy") {
        return Err(ApiError::Ingest(
            sextant_ingest::Error::UnsupportedEncoding {
                encoding: encoding.to_owned(),
                expected: "snappy",
            },
        ));
    }
    let pipeline = state.pipeline()?.clone();
    let max = pipeline.config().max_body_bytes;
    if body.len() > max {
        return Err(ApiError::Ingest(sextant_ingest::Error::BodyTooLarge {
            limit: max,
        }));
    }
    let prom = state
        .prom
        .lock()
        .entry(principal.tenant.clone())
        .or_default()
        .clone();
    let convert = move || -> Result<Converted, String> {
        let write = remote_write::decode(&body, max)?;
        Ok(prom.lock().convert(write))
    };
    let converted = if body_len_is_small(&headers) {
        convert()
    } else {
        tokio::task::spawn_blocking(convert)
            .await
            .map_err(|_| ApiError::Internal)?
    }
    .map_err(ApiError::BadRequest)?;
    count(&principal.tenant, &converted);
    if converted.samples > 0 {
        let size = converted.request.encoded_len();
        pipeline
            .ingest_request(
                &principal.tenant,
                OtlpRequest::Metrics(converted.request),
                size,
            )
            .await?;
    }
    if converted.rejected_series > 0 {
        return Err(ApiError::BadRequest(format!(
            "{} series refused, {} samples of the others stored: {}",
            converted.rejected_series,
            converted.samples,
            converted.problems.join("; ")
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn body_len_is_small(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= INLINE_BYTES)
}

fn count(tenant: &sextant_model::TenantId, c: &Converted) {
    let tenant = tenant.to_string();
    for (what, n) in [
        ("stale_markers", c.stale_markers),
        ("exemplars", c.exemplars),
        ("exemplars_dropped", c.exemplars_dropped),
        ("metadata", c.metadata),
        ("rejected_series", c.rejected_series),
    ] {
        if n > 0 {
            metrics::counter!("sextant_remote_write_total", "tenant" => tenant.clone(), "what" => what)
                .increment(n as u64);
        }
    }
}
