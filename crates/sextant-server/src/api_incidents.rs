//! Incidents: `GET /api/v1/incidents` (list, with the tenant's alert-to-incident totals),
//! `GET /api/v1/incidents/{id}` (members with why each joined, timeline, affected services,
//! explanation, the newest root-cause ranking), `GET /api/v1/incidents/{id}/rca` (the ranking
//! and its earlier versions), and the actions `POST /api/v1/incidents/{id}/ack`, `/resolve`, `/merge`
//! (`{"from": ID}`: folds incident ID into this one) and `/split`
//! (`{"fingerprints": [...]}`: moves those members to a new incident), each with an optional
//! `comment`, from an `editor` or `admin` token, recorded on the timeline with the token id.
//!
//! List parameters: `from`, `to` (opening time; default no bound), `status` (`open`,
//! `acknowledged`, `resolved`, `merged`; default all), `limit` (100 by default, at most
//! 1,000; newest first).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_incidents::correlator::Incident;
use sextant_store::meta::{IncidentFilter, IncidentRow};

use crate::auth::authorize_edit;
use crate::read_params::{Params, bad, format_time};
use crate::{ApiError, AppState};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
const MAX_COMMENT_CHARS: usize = 1000;

fn parse_incident(row: &IncidentRow) -> Result<Incident, ApiError> {
    serde_json::from_str(&row.body).map_err(|e| {
        tracing::error!(id = row.id, error = %e, "stored incident unreadable");
        ApiError::Internal
    })
}

fn time(nanos: i64) -> Value {
    Value::String(format_time(nanos))
}

/// An incident's headline fields.
fn summary_json(incident: &Incident) -> Value {
    json!({
        "id": incident.id,
        "status": incident.status.as_str(),
        "title": incident.title,
        "severity": incident.severity,
        "opened_at": time(incident.opened_at),
        "updated_at": time(incident.updated_at),
        "resolved_at": incident.resolved_at.map(time),
        "services": incident.services,
        "members": incident.members.len(),
        "firing": incident.members.iter().filter(|m| !m.resolved).count(),
        "notifications": incident.notifications,
        "acknowledged_by": incident.acknowledged_by,
        "merged_into": incident.merged_into,
        "explanation": incident.explanation(),
    })
}

/// The whole incident.
pub(crate) fn incident_json(incident: &Incident) -> Value {
    let mut value = summary_json(incident);
    let members: Vec<Value> = incident
        .members
        .iter()
        .map(|m| {
            json!({
                "fingerprint": m.fingerprint,
                "event_id": m.event_id,
                "kind": m.kind,
                "source": m.source,
                "service": m.service,
                "title": m.title,
                "severity": m.severity,
                "labels": m.labels,
                "status": if m.resolved { "resolved" } else { "firing" },
                "flapping": m.flapping,
                "first_seen": time(m.first_seen),
                "last_seen": time(m.last_seen),
                "count": m.count,
                "reason": m.reason,
            })
        })
        .collect();
    let timeline: Vec<Value> = incident
        .timeline
        .iter()
        .map(|e| {
            json!({
                "at": time(e.at),
                "actor": e.actor,
                "action": e.action,
                "fingerprint": e.fingerprint,
                "detail": e.detail,
            })
        })
        .collect();
    let object = value.as_object_mut().expect("an object");
    object.insert("members".into(), Value::Array(members));
    object.insert("timeline".into(), Value::Array(timeline));
    object.insert("timeline_dropped".into(), json!(incident.timeline_dropped));
    value
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let params = Params::new(query, &["from", "to", "status", "limit"])?;
    let status = match params.get("status") {
        None | Some("all") => None,
        Some(s @ ("open" | "acknowledged" | "resolved" | "merged")) => Some(s.to_owned()),
        Some(_) => {
            return Err(bad(
                "status",
                "must be `open`, `acknowledged`, `resolved`, `merged` or `all`",
            ));
        }
    };
    let limit = params.count("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let filter = IncidentFilter {
        from: params.time("from")?,
        to: params.time("to")?,
        status,
        limit,
    };
    let correlation = state.services()?.correlation.clone();
    let meta = state.meta.clone();
    let tenant = principal.tenant.clone();
    let rows = tokio::task::spawn_blocking(move || meta.incidents(&tenant, &filter))
        .await
        .map_err(|_| ApiError::Internal)??;
    let incidents = rows
        .iter()
        .map(|row| parse_incident(row).map(|i| summary_json(&i)))
        .collect::<Result<Vec<_>, _>>()?;
    let counters = correlation.counters(&principal.tenant).await?;
    Ok(axum::Json(json!({
        "incidents": incidents,
        "stats": {
            "signals": counters.signals,
            "suppressed": counters.suppressed,
            "deduplicated": counters.deduplicated,
            "incidents": counters.incidents,
            "reduction": counters.reduction(),
        },
    })))
}

fn parse_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| bad("id", "must be an incident number"))
}

async fn stored(
    state: &AppState,
    tenant: &sextant_model::TenantId,
    id: u64,
) -> Result<Incident, ApiError> {
    let meta = state.meta.clone();
    let t = tenant.clone();
    let row = tokio::task::spawn_blocking(move || meta.incident(&t, id))
        .await
        .map_err(|_| ApiError::Internal)??
        .ok_or_else(|| ApiError::NotFound(format!("no incident {id}")))?;
    parse_incident(&row)
}

pub async fn one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let id = parse_id(&id)?;
    let incident = stored(&state, &principal.tenant, id).await?;
    let mut value = incident_json(&incident);
    let tenant = principal.tenant.clone();
    let state2 = state.clone();
    let ranking =
        tokio::task::spawn_blocking(move || crate::rca_live::latest(&state2, &tenant, id))
            .await
            .map_err(|_| ApiError::Internal)??;
    value
        .as_object_mut()
        .expect("an object")
        .insert("root_cause".into(), ranking.unwrap_or(Value::Null));
    Ok(axum::Json(value))
}

/// Most ranking versions one request returns.
const MAX_VERSIONS: usize = 100;

/// `GET /api/v1/incidents/{id}/rca[?versions=N]`: the newest root-cause ranking, and the
/// newest N versions (default 1) with their times.
pub async fn rca(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let params = Params::new(query, &["versions"])?;
    let id = parse_id(&id)?;
    let limit = params.count("versions", 1, MAX_VERSIONS)?;
    stored(&state, &principal.tenant, id).await?;
    let tenant = principal.tenant.clone();
    let state2 = state.clone();
    let versions =
        tokio::task::spawn_blocking(move || crate::rca_live::versions(&state2, &tenant, id, limit))
            .await
            .map_err(|_| ApiError::Internal)??;
    Ok(axum::Json(json!({
        "incident": id,
        "ranking": versions.first().cloned().unwrap_or(Value::Null),
        "versions": versions,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    comment: String,
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    fingerprints: Vec<String>,
}

pub async fn action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    authorize_edit(&principal)?;
    let id = parse_id(&id)?;
    let body: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not a valid action: {e}")))?
    };
    if body.comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(ApiError::BadRequest(format!(
            "`comment` is longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    // A 404 for an incident that does not exist; a 409 for one that is no longer open.
    stored(&state, &principal.tenant, id).await?;
    let actor = principal.token_id.clone();
    let comment = body.comment.clone();
    let correlation = state.services()?.correlation.clone();
    let changed = match action.as_str() {
        "ack" => {
            correlation
                .act(&principal.tenant, |c, now| {
                    Ok(vec![c.acknowledge(id, &actor, &comment, now)?])
                })
                .await?
        }
        "resolve" => {
            correlation
                .act(&principal.tenant, |c, now| {
                    Ok(vec![c.resolve(id, &actor, &comment, now)?])
                })
                .await?
        }
        "merge" => {
            let from = body.from.ok_or_else(|| {
                ApiError::BadRequest("merge needs `from`: the incident to fold in".into())
            })?;
            stored(&state, &principal.tenant, from).await?;
            correlation
                .act(&principal.tenant, |c, now| {
                    let (into, gone) = c.merge(id, from, &actor, &comment, now)?;
                    Ok(vec![into, gone])
                })
                .await?
        }
        "split" => {
            let fingerprints = body.fingerprints.clone();
            correlation
                .act(&principal.tenant, |c, now| {
                    let (old, new) = c.split(id, &fingerprints, &actor, &comment, now)?;
                    Ok(vec![old, new])
                })
                .await?
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "no incident action `{other}`; ack, resolve, merge or split"
            )));
        }
    };
    crate::audit::record(
        &state,
        &principal.tenant,
        &principal.token_id,
        &format!("incident.{action}"),
        &id.to_string(),
        json!({
            "comment": body.comment,
            "from": body.from,
            "fingerprints": body.fingerprints,
            "changed": changed.iter().map(|i| json!({"id": i.id, "status": i.status.as_str()})).collect::<Vec<_>>(),
        }),
    )
    .await?;
    Ok(axum::Json(json!({
        "incidents": changed.iter().map(incident_json).collect::<Vec<_>>(),
    })))
}
