//! The audit trail: [`record`] appends what an engineer or Sextant did (incident actions,
//! anomaly feedback, rule changes, runbook runs, steps and approvals), and
//! `GET /api/v1/audit?from=&to=&kind=&actor=&subject=&limit=` reads it back (role `admin`,
//! newest first; `kind` is a family such as `incident` or `runbook` or a whole kind such as
//! `run.approve`, and one outside [`KIND_FAMILIES`] is refused; `actor` and `subject` match
//! exactly; `limit` 100 by default, at most 1,000).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};
use sextant_model::TenantId;
use sextant_store::meta::{AuditFilter, AuditRecord};

use crate::read_params::{Params, format_time, now_ns};
use crate::{ApiError, AppState};

/// The families of audit kinds (the part before the first `.`): what `kind=` may name.
pub const KIND_FAMILIES: [&str; 15] = [
    "anomaly",
    "approval",
    "correlation",
    "incident",
    "inhibit",
    "key",
    "rca",
    "retention",
    "run",
    "runbook",
    "runbooks",
    "secret",
    "silence",
    "tenant",
    "token",
];

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

/// Whether `kind` names a family of [`KIND_FAMILIES`] or a kind in one.
fn known_kind(kind: &str) -> bool {
    let family = kind.split('.').next().unwrap_or_default();
    KIND_FAMILIES.contains(&family)
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
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
    let params = Params::new(query, &["from", "to", "kind", "actor", "subject", "limit"])?;
    let limit = params.count("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let kind = params.get("kind").map(str::to_owned);
    if let Some(kind) = &kind
        && !known_kind(kind)
    {
        return Err(ApiError::BadRequest(format!(
            "parameter `kind`: `{kind}` is no audit kind; kinds start with one of {}",
            KIND_FAMILIES.join(", ")
        )));
    }
    let filter = AuditFilter {
        from: params.time("from")?,
        to: params.time("to")?,
        kind,
        actor: params.get("actor").map(str::to_owned),
        subject: params.get("subject").map(str::to_owned),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_families_or_kinds_in_them() {
        for kind in [
            "incident",
            "run.approve",
            "correlation.silenced",
            "runbooks",
        ] {
            assert!(known_kind(kind), "{kind}");
        }
        for kind in ["bogus", "", "Incident", "incidents", "run approve", "%"] {
            assert!(!known_kind(kind), "{kind}");
        }
    }
}
