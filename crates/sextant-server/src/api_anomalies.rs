//! `GET /api/v1/anomalies`, `GET /api/v1/anomalies/{id}` and
//! `POST /api/v1/anomalies/{id}/feedback`: the anomalies the detectors found in the caller's
//! tenant, with their explanations, and engineers' verdicts on them.
//!
//! List parameters (times as in [`crate::read_params`]): `from`, `to` (default: the last hour),
//! `service`, `kind` (`anomaly` by default, or `capacity`, `alert`, or `all`), `limit` (100 by default,
//! at most 1,000; newest first).
//!
//! Feedback body: `{"feedback": "false_positive" | "confirmed", "comment": "..."}` (comment
//! optional, at most 1,000 characters), from an `editor` or `admin` token. A false positive
//! makes the series less sensitive, a confirmation a little more; the answer gives the
//! sensitivity before and after, and the record (who, when, why) is kept.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_analytics::anomaly::Feedback;
use sextant_model::{Event, EventKind};
use sextant_store::meta::{EventFilter, FeedbackRecord};

use crate::auth::authorize_edit;
use crate::read_params::{Params, bad, format_time};
use crate::{ApiError, AppState};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
const MAX_COMMENT_CHARS: usize = 1000;

/// An event as the API shows it.
pub(crate) fn event_json(event: &Event, feedback: Option<&str>) -> Value {
    json!({
        "id": event.id,
        "time": format_time(event.time_unix_nano),
        "kind": event.kind.as_str(),
        "source": event.source,
        "service": event.service,
        "severity": event.severity,
        "status": event.status,
        "title": event.title,
        "summary": event.summary,
        "fingerprint": event.fingerprint,
        "labels": event.labels,
        "explanation": event.details,
        "feedback": feedback,
        "count": event.count,
        "last_seen": format_time(event.last_seen_unix_nano),
        "decision": event.decision,
    })
}

fn feedback_json(record: &FeedbackRecord) -> Value {
    json!({
        "event_id": record.event_id,
        "series": record.series,
        "feedback": record.verdict,
        "comment": record.comment,
        "actor": record.actor,
        "sensitivity_before": record.before,
        "sensitivity_after": record.after,
        "at": format_time(record.at.saturating_mul(1_000_000_000)),
    })
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let params = Params::new(query, &["from", "to", "service", "kind", "limit"])?;
    let (from, to) = params.time_range()?;
    let kind = match params.get("kind") {
        None => Some(EventKind::Anomaly),
        Some("all") => None,
        Some(name @ ("anomaly" | "capacity" | "alert")) => EventKind::from_name(name),
        Some(_) => {
            return Err(bad(
                "kind",
                "must be `anomaly`, `capacity`, `alert` or `all`",
            ));
        }
    };
    let limit = params.count("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let filter = EventFilter {
        from: Some(from),
        to: Some(to),
        kind,
        service: params.get("service").map(str::to_owned),
        limit,
    };
    let events = state.services()?.events.clone();
    let tenant = principal.tenant.clone();
    let found = tokio::task::spawn_blocking(move || events.events(&tenant, &filter))
        .await
        .map_err(|_| ApiError::Internal)??;
    let anomalies: Vec<Value> = found
        .iter()
        .map(|(event, feedback)| event_json(event, feedback.as_deref()))
        .collect();
    Ok(axum::Json(json!({ "anomalies": anomalies })))
}

pub async fn one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let events = state.services()?.events.clone();
    let tenant = principal.tenant.clone();
    let (found, history) = tokio::task::spawn_blocking(move || {
        let found = events.event(&tenant, &id);
        let history = events.feedback(&tenant, &id);
        found.and_then(|found| Ok((found.map(|f| (f, id)), history?)))
    })
    .await
    .map_err(|_| ApiError::Internal)??;
    let Some(((event, feedback), _)) = found.filter(|((e, _), _)| e.kind != EventKind::Alert)
    else {
        return Err(ApiError::NotFound("no anomaly with this id".to_owned()));
    };
    let mut answer = event_json(&event, feedback.as_deref());
    answer["feedback_history"] = history.iter().map(feedback_json).collect();
    Ok(axum::Json(answer))
}

/// The feedback body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    feedback: Feedback,
    #[serde(default)]
    comment: String,
}

pub async fn feedback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = state.auth.authenticate(authorization)?;
    authorize_edit(&principal)?;
    let request: FeedbackRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "body must be JSON like {{\"feedback\": \"false_positive\" or \"confirmed\", \
             \"comment\": \"...\"}}: {e}"
        ))
    })?;
    if request.comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(ApiError::BadRequest(format!(
            "`comment` is longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    let events = state.services()?.events.clone();
    let (tenant, actor) = (principal.tenant.clone(), principal.token_id.clone());
    let record = tokio::task::spawn_blocking(move || {
        events.anomaly_feedback(
            &principal.tenant,
            &id,
            request.feedback,
            &request.comment,
            &principal.token_id,
        )
    })
    .await
    .map_err(|_| ApiError::Internal)??;
    tracing::info!(
        event = %record.event_id,
        series = %record.series,
        feedback = %record.verdict,
        before = record.before,
        after = record.after,
        actor = %record.actor,
        "anomaly feedback changed a series' sensitivity"
    );
    crate::audit::record(
        &state,
        &tenant,
        &actor,
        "anomaly.feedback",
        &record.event_id,
        feedback_json(&record),
    )
    .await?;
    Ok(axum::Json(feedback_json(&record)))
}
