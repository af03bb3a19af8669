//! The audit trail: [`record`] appends what an engineer or Sextant did (incident actions,
//! anomaly feedback, rule changes, runbook runs, steps and approvals), and
//! `GET /api/v1/audit?from=&to=&kind=&limit=` reads it back (role `admin`, newest first; `kind`
//! takes a prefix such as `incident` or `runbook`; `limit` 100 by default, at most 1,000).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};
use sextant_model::TenantId;
use sextant_store::meta::{AuditFilter, AuditRecord};

use crate::read_params::{Params, format_time, now_ns};
use crate::{ApiError, AppState};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Appends one record; a failure to store it fails the caller (an action that cannot be
/// audited is reported as an internal error, after it happened — the log says so).
pub async fn record(
    state: &AppState,
    tenant: &TenantId,
    actor: &str,
    kind: &str,
    subject: &str,
    detail: Value,
) -> Result<(), ApiError> {
    let record = AuditRecord {
        seq: 0,
        tenant: tenant.clone(),
        at: now_ns(),
        actor: actor.to_owned(),
        kind: kind.to_owned(),
        subject: subject.to_owned(),
        detail: detail.to_string(),
    };
    let meta = state.meta.clone();
    let stored = tokio::task::spawn_blocking(move || meta.audit(&[record]))
        .await
        .map_err(|_| ApiError::Internal)?;
    if let Err(err) = stored {
        tracing::error!(%tenant, kind, subject, error = %err, "audit record not stored");
        return Err(ApiError::Internal);
    }
    Ok(())
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = state.auth.authenticate(authorization)?;
    crate::auth::authorize_admin(&principal)?;
    let params = Params::new(query, &["from", "to", "kind", "limit"])?;
    let limit = params.count("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let filter = AuditFilter {
        from: params.time("from")?,
        to: params.time("to")?,
        kind: params.get("kind").map(str::to_owned),
        limit,
    };
    let meta = state.meta.clone();
    let tenant = principal.tenant.clone();
    let records = tokio::task::spawn_blocking(move || meta.audit_records(&tenant, &filter))
        .await
        .map_err(|_| ApiError::Internal)??;
    Ok(axum::Json(json!({
        "records": records.iter().map(|r| json!({
            "seq": r.seq,
            "at": format_time(r.at),
            "actor": r.actor,
            "kind": r.kind,
            "subject": r.subject,
            "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null),
        })).collect::<Vec<_>>(),
    })))
}
