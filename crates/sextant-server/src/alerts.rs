//! Alert receivers: `POST /api/v1/alertmanager` (Alertmanager's webhook payload, version 4)
//! and `POST /api/v1/events` (Sextant's own JSON event). Both store `alert` events,
//! deduplicated by fingerprint (a repeat updates the stored alert's status, count and last
//! seen time), and wake the correlator. A token with role `ingest` or above may send them.
//!
//! `POST /api/v1/events` takes one object or an array of them:
//!
//! ```json
//! {"source": "ci", "service": "payment", "severity": "critical", "title": "Deploy failed",
//!  "summary": "...", "labels": {"env": "prod"}, "fingerprint": "optional",
//!  "status": "firing", "time": "2026-12-01T12:00:00Z", "details": {}}
//! ```
//!
//! `title` is required; `status` is `firing` (default) or `resolved`; `time` (RFC 3339 or Unix
//! seconds, milliseconds or nanoseconds) defaults to now; without a `fingerprint`, one is
//! derived from source, service, title and labels. Alertmanager alerts take `alertname` as the
//! title, the `service` label (or `service_name`, `app`, `job`) as the service, the
//! `severity` label, the `summary` (or `description`) annotation, `startsAt` as the first time,
//! the time of receipt (or `endsAt` when resolved) as the newest, and Alertmanager's own
//! fingerprint.
//!
//! Limits: at most [`MAX_ALERTS`] alerts per request, [`MAX_LABELS`] labels per alert, label
//! names and values and titles up to [`MAX_TEXT`] characters; a request breaking one is refused
//! whole (400, naming the alert and the field), nothing stored.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_model::{Event, EventKind, IngestKind, TenantId};
use sha2::{Digest, Sha256};

use crate::auth::authorize_ingest;
use crate::read_params::{now_ns, parse_time};
use crate::{ApiError, AppState, Principal};

pub const MAX_ALERTS: usize = 1_000;
pub const MAX_LABELS: usize = 64;
pub const MAX_TEXT: usize = 1_024;
/// Longest summary kept, in characters; longer ones are cut.
const MAX_SUMMARY: usize = 4_096;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookPayload {
    version: String,
    #[serde(default)]
    group_key: String,
    #[serde(default)]
    receiver: String,
    #[serde(default, rename = "externalURL")]
    external_url: String,
    alerts: Vec<WebhookAlert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    #[serde(default)]
    fingerprint: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostedEvent {
    #[serde(default)]
    source: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    severity: String,
    title: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    time: Option<Value>,
    #[serde(default)]
    details: Option<Value>,
}

/// The caller, checked to be allowed to ingest (JSON receivers share it).
pub(crate) fn ingest_principal(
    state: &AppState,
    headers: &HeaderMap,
    kind: IngestKind,
) -> Result<Principal, ApiError> {
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = state.auth.authenticate(authorization)?;
    let tenant_header = headers
        .get(crate::auth::TENANT_HEADER)
        .and_then(|v| v.to_str().ok());
    authorize_ingest(&principal, kind, tenant_header)?;
    Ok(principal)
}

pub async fn alertmanager(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = ingest_principal(&state, &headers, IngestKind::Alerts)?;
    let payload: WebhookPayload = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("not an Alertmanager webhook payload: {e}")))?;
    if payload.version != "4" {
        return Err(ApiError::BadRequest(format!(
            "webhook payload version `{}`; version 4 is understood",
            payload.version
        )));
    }
    check_count(payload.alerts.len())?;
    let now = now_ns();
    let mut events = Vec::with_capacity(payload.alerts.len());
    for (i, alert) in payload.alerts.into_iter().enumerate() {
        let at = |field: &str, problem: String| {
            ApiError::BadRequest(format!("alert {i}: `{field}` {problem}"))
        };
        let resolved = match alert.status.as_str() {
            "firing" => false,
            "resolved" => true,
            other => return Err(at("status", format!("is `{other}`; firing or resolved"))),
        };
        check_labels(&alert.labels).map_err(|p| at("labels", p))?;
        let title = alert.labels.get("alertname").cloned().unwrap_or_default();
        if title.is_empty() {
            return Err(at("labels", "have no `alertname`".into()));
        }
        // A firing notification is news as of now (Alertmanager repeats it with the same
        // `startsAt`); a resolved one as of its `endsAt`.
        let starts = parse_time(&alert.starts_at).unwrap_or(now);
        let time = if resolved {
            parse_time(&alert.ends_at).unwrap_or(now)
        } else {
            now
        };
        let service = ["service", "service_name", "app", "job"]
            .iter()
            .find_map(|k| alert.labels.get(*k).filter(|v| !v.is_empty()))
            .cloned()
            .unwrap_or_default();
        let fingerprint = if alert.fingerprint.is_empty() {
            derived_fingerprint("alertmanager", &service, &title, &alert.labels)
        } else {
            format!("alertmanager:{}", alert.fingerprint)
        };
        let summary = alert
            .annotations
            .get("summary")
            .or_else(|| alert.annotations.get("description"))
            .cloned()
            .unwrap_or_else(|| title.clone());
        events.push(alert_event(
            &principal.tenant,
            AlertFields {
                source: "alertmanager".into(),
                severity: alert.labels.get("severity").cloned().unwrap_or_default(),
                title,
                summary,
                fingerprint,
                resolved,
                first_time: starts.min(time),
                time,
                labels: alert.labels,
                service,
                details: json!({
                    "annotations": alert.annotations,
                    "starts_at": alert.starts_at,
                    "ends_at": alert.ends_at,
                    "generator_url": alert.generator_url,
                    "receiver": payload.receiver,
                    "group_key": payload.group_key,
                    "external_url": payload.external_url,
                }),
            },
        ));
    }
    store(&state, events).await
}

pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = ingest_principal(&state, &headers, IngestKind::Alerts)?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(ApiError::BadRequest(
                "the body must be an event object or an array of them".into(),
            ));
        }
    };
    check_count(items.len())?;
    let now = now_ns();
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = |field: &str, problem: String| {
            ApiError::BadRequest(format!("event {i}: `{field}` {problem}"))
        };
        let posted: PostedEvent = serde_json::from_value(item)
            .map_err(|e| ApiError::BadRequest(format!("event {i}: {e}")))?;
        if posted.title.trim().is_empty() {
            return Err(at("title", "is empty".into()));
        }
        for (field, value) in [
            ("title", &posted.title),
            ("source", &posted.source),
            ("service", &posted.service),
            ("severity", &posted.severity),
            ("fingerprint", &posted.fingerprint),
        ] {
            if value.chars().count() > MAX_TEXT {
                return Err(at(field, format!("is longer than {MAX_TEXT} characters")));
            }
        }
        check_labels(&posted.labels).map_err(|p| at("labels", p))?;
        known_severity(&posted.severity).map_err(|p| at("severity", p))?;
        let resolved = match posted.status.as_str() {
            "" | "firing" => false,
            "resolved" => true,
            other => return Err(at("status", format!("is `{other}`; firing or resolved"))),
        };
        let time = match &posted.time {
            None | Some(Value::Null) => now,
            Some(Value::String(text)) => parse_time(text)
                .ok_or_else(|| at("time", "is not RFC 3339 or a Unix time".into()))?,
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| parse_time(&n.to_string()))
                .ok_or_else(|| at("time", "is not a Unix time".into()))?,
            Some(_) => return Err(at("time", "must be a string or a number".into())),
        };
        let source = if posted.source.is_empty() {
            "api".to_owned()
        } else {
            posted.source
        };
        let fingerprint = if posted.fingerprint.is_empty() {
            derived_fingerprint(&source, &posted.service, &posted.title, &posted.labels)
        } else {
            posted.fingerprint
        };
        events.push(alert_event(
            &principal.tenant,
            AlertFields {
                summary: if posted.summary.is_empty() {
                    posted.title.clone()
                } else {
                    posted.summary
                },
                source,
                severity: posted.severity,
                title: posted.title,
                fingerprint,
                resolved,
                first_time: time,
                time,
                labels: posted.labels,
                service: posted.service,
                details: posted.details.unwrap_or(Value::Null),
            },
        ));
    }
    store(&state, events).await
}

fn check_count(n: usize) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::BadRequest("no alerts in the request".into()));
    }
    if n > MAX_ALERTS {
        return Err(ApiError::BadRequest(format!(
            "{n} alerts in one request; at most {MAX_ALERTS}"
        )));
    }
    Ok(())
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("has {} labels; at most {MAX_LABELS}", labels.len()));
    }
    if let Some((name, _)) = labels
        .iter()
        .find(|(k, v)| k.is_empty() || k.chars().count() > MAX_TEXT || v.chars().count() > MAX_TEXT)
    {
        return Err(format!(
            "label `{}` has an empty name or a name or value over {MAX_TEXT} characters",
            name.chars().take(40).collect::<String>()
        ));
    }
    Ok(())
}

fn derived_fingerprint(
    source: &str,
    service: &str,
    title: &str,
    labels: &BTreeMap<String, String>,
) -> String {
    let mut hash = Sha256::new();
    for part in [source, service, title] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    for (k, v) in labels {
        hash.update(k.as_bytes());
        hash.update([1]);
        hash.update(v.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..8])
}

struct AlertFields {
    source: String,
    service: String,
    severity: String,
    title: String,
    summary: String,
    fingerprint: String,
    resolved: bool,
    first_time: i64,
    time: i64,
    labels: BTreeMap<String, String>,
    details: Value,
}

fn normal_severity(severity: &str) -> String {
    match severity.to_ascii_lowercase().as_str() {
        "" => "warning".into(),
        "crit" | "critical" | "page" | "fatal" | "p1" => "critical".into(),
        "err" | "error" | "high" | "p2" => "error".into(),
        "warn" | "warning" | "medium" | "p3" => "warning".into(),
        "info" | "low" | "notice" | "p4" | "p5" => "info".into(),
        other => other.chars().take(32).collect(),
    }
}

/// Refuses a posted event's severity that is none of the known names (Alertmanager's labels,
/// which Sextant does not choose, are kept as they are).
fn known_severity(severity: &str) -> Result<(), String> {
    match normal_severity(severity).as_str() {
        "critical" | "error" | "warning" | "info" => Ok(()),
        _ => Err(format!(
            "is `{severity}`; one of critical, error, warning, info (or crit, page, fatal, p1, \
             err, high, p2, warn, medium, p3, low, notice, p4, p5)"
        )),
    }
}

fn alert_event(tenant: &TenantId, fields: AlertFields) -> Event {
    let mut hash = Sha256::new();
    hash.update(tenant.as_str().as_bytes());
    hash.update([0]);
    hash.update(fields.fingerprint.as_bytes());
    hash.update(fields.first_time.to_le_bytes());
    Event {
        id: hex::encode(&hash.finalize()[..8]),
        tenant: tenant.clone(),
        time_unix_nano: fields.first_time,
        kind: EventKind::Alert,
        source: fields.source,
        service: fields.service,
        severity: normal_severity(&fields.severity),
        title: fields.title,
        summary: fields.summary.chars().take(MAX_SUMMARY).collect(),
        fingerprint: fields.fingerprint,
        status: if fields.resolved {
            "resolved"
        } else {
            "firing"
        }
        .to_owned(),
        labels: fields.labels,
        details: fields.details,
        count: 1,
        last_seen_unix_nano: fields.time,
        decision: None,
    }
}

async fn store(state: &AppState, events: Vec<Event>) -> Result<axum::Json<Value>, ApiError> {
    let services = state.services()?;
    let meta = state.meta.clone();
    let tenant = events[0].tenant.as_str().to_owned();
    let received = events.len();
    let stored = tokio::task::spawn_blocking(move || meta.upsert_alerts(&events))
        .await
        .map_err(|_| ApiError::Internal)??;
    metrics::counter!("sextant_alerts_received_total", "tenant" => tenant)
        .increment(received as u64);
    services.correlation.notify();
    let new = stored.iter().filter(|(_, new)| *new).count();
    Ok(axum::Json(json!({
        "accepted": received,
        "new": new,
        "events": stored.iter().map(|(e, new)| json!({
            "id": e.id, "fingerprint": e.fingerprint, "status": e.status, "count": e.count, "new": new,
        })).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_are_normalised() {
        for (given, expected) in [
            ("", "warning"),
            ("CRITICAL", "critical"),
            ("page", "critical"),
            ("warn", "warning"),
            ("P4", "info"),
            ("bespoke", "bespoke"),
        ] {
            assert_eq!(normal_severity(given), expected, "{given}");
        }
        assert!(known_severity("P1").is_ok());
        assert!(known_severity("").is_ok());
        let refused = known_severity("urgent").unwrap_err();
        assert!(
            refused.contains("is `urgent`; one of critical"),
            "{refused}"
        );
    }

    #[test]
    fn derived_fingerprints_depend_on_every_part() {
        let labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let base = derived_fingerprint("s", "svc", "t", &labels);
        assert_eq!(base, derived_fingerprint("s", "svc", "t", &labels.clone()));
        assert_ne!(base, derived_fingerprint("s", "svc", "t2", &labels));
        assert_ne!(base, derived_fingerprint("s", "svcx", "t", &labels));
        assert_ne!(base, derived_fingerprint("s", "svc", "t", &BTreeMap::new()));
    }
}
