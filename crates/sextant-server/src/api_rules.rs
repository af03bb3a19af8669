//! Silences (and maintenance windows) and inhibition rules:
//! `GET|POST /api/v1/silences`, `DELETE /api/v1/silences/{id}`,
//! `GET|POST /api/v1/inhibit_rules`, `DELETE /api/v1/inhibit_rules/{id}`. Reading needs a
//! query role; changing, `editor` or `admin` (the creator's token id is kept).
//!
//! A silence: `{"matchers": ["service=\"search\"", "env=~\"stag.*\""], "starts_at": TIME,
//! "ends_at": TIME, "comment": "..."}` (times RFC 3339 or Unix; `starts_at` defaults to now).
//! An inhibition rule: `{"source": [...], "target": [...], "equal": ["host"], "comment": "..."}`:
//! while a signal matching `source` fires, signals matching `target` with the same `equal`
//! labels are suppressed. Matchers are Alertmanager's (`=`, `!=`, `=~`, `!~`); they see an
//! event's labels plus `service`, `severity`, `source`, `kind` and `alertname` (its title).
//! A rule with a bad matcher is refused (400) with the matcher and the reason.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_incidents::correlator::{InhibitRule, Silence};
use sextant_incidents::matcher::Matcher;
use sha2::{Digest, Sha256};

use crate::auth::authorize_edit;
use crate::correlation::MAX_RULES;
use crate::read_params::{format_time, now_ns, parse_time};
use crate::{ApiError, AppState, Principal};

const MAX_MATCHERS: usize = 32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    matchers: Vec<String>,
    #[serde(default)]
    starts_at: Option<Value>,
    ends_at: Value,
    #[serde(default)]
    comment: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InhibitBody {
    source: Vec<String>,
    target: Vec<String>,
    #[serde(default)]
    equal: Vec<String>,
    #[serde(default)]
    comment: String,
}

fn matchers(field: &str, texts: &[String]) -> Result<Vec<Matcher>, ApiError> {
    if texts.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "`{field}` needs at least one matcher"
        )));
    }
    if texts.len() > MAX_MATCHERS {
        return Err(ApiError::BadRequest(format!(
            "`{field}` has {} matchers; at most {MAX_MATCHERS}",
            texts.len()
        )));
    }
    texts
        .iter()
        .map(|t| Matcher::parse(t).map_err(|e| ApiError::BadRequest(format!("`{field}`: {e}"))))
        .collect()
}

fn time_field(field: &str, value: &Value) -> Result<i64, ApiError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(ApiError::BadRequest(format!("`{field}` must be a time"))),
    };
    parse_time(&text)
        .ok_or_else(|| ApiError::BadRequest(format!("`{field}` is not RFC 3339 or a Unix time")))
}

fn new_id(principal: &Principal, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(principal.tenant.as_str().as_bytes());
    hash.update(now_ns().to_le_bytes());
    hash.update(body);
    hex::encode(&hash.finalize()[..6])
}

fn silence_json(s: &Silence) -> Value {
    json!({
        "id": s.id,
        "matchers": s.matchers,
        "starts_at": format_time(s.starts_at),
        "ends_at": format_time(s.ends_at),
        "active": (s.starts_at..s.ends_at).contains(&now_ns()),
        "comment": s.comment,
        "created_by": s.created_by,
    })
}

async fn stored<T: serde::de::DeserializeOwned>(
    state: &AppState,
    principal: &Principal,
    kind: &'static str,
) -> Result<Vec<T>, ApiError> {
    let meta = state.meta.clone();
    let tenant = principal.tenant.clone();
    let rows = tokio::task::spawn_blocking(move || meta.rules(&tenant, kind))
        .await
        .map_err(|_| ApiError::Internal)??;
    Ok(rows
        .into_iter()
        .filter_map(|(_, body)| serde_json::from_str(&body).ok())
        .collect())
}

async fn put(
    state: &AppState,
    principal: &Principal,
    kind: &'static str,
    id: String,
    body: String,
) -> Result<(), ApiError> {
    let count = state
        .meta
        .rules(&principal.tenant, kind)
        .map_err(ApiError::from)?
        .len();
    if count >= MAX_RULES {
        return Err(ApiError::BadRequest(format!(
            "the tenant has {count} {kind} rules already; at most {MAX_RULES}"
        )));
    }
    let meta = state.meta.clone();
    let tenant = principal.tenant.clone();
    tokio::task::spawn_blocking(move || meta.put_rule(&tenant, kind, &id, &body))
        .await
        .map_err(|_| ApiError::Internal)??;
    state
        .services()?
        .correlation
        .reload_rules(&principal.tenant)
        .await
}

pub async fn list_silences(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let silences: Vec<Silence> = stored(&state, &principal, "silence").await?;
    Ok(axum::Json(json!({
        "silences": silences.iter().map(silence_json).collect::<Vec<_>>(),
    })))
}

pub async fn create_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    authorize_edit(&principal)?;
    let posted: SilenceBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("not a silence: {e}")))?;
    let starts_at = match &posted.starts_at {
        None | Some(Value::Null) => now_ns(),
        Some(value) => time_field("starts_at", value)?,
    };
    let ends_at = time_field("ends_at", &posted.ends_at)?;
    if ends_at <= starts_at {
        return Err(ApiError::BadRequest(
            "`ends_at` must be after `starts_at`".into(),
        ));
    }
    let silence = Silence {
        id: new_id(&principal, &body),
        matchers: matchers("matchers", &posted.matchers)?,
        starts_at,
        ends_at,
        comment: posted.comment.chars().take(1000).collect(),
        created_by: principal.token_id.clone(),
    };
    let json = serde_json::to_string(&silence).expect("silences serialise");
    put(&state, &principal, "silence", silence.id.clone(), json).await?;
    crate::audit::record(
        &state,
        &principal.tenant,
        &principal.token_id,
        "silence.create",
        &silence.id,
        silence_json(&silence),
    )
    .await?;
    Ok(axum::Json(silence_json(&silence)))
}

pub async fn list_inhibit_rules(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let rules: Vec<InhibitRule> = stored(&state, &principal, "inhibit").await?;
    Ok(axum::Json(json!({ "inhibit_rules": rules })))
}

pub async fn create_inhibit_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    authorize_edit(&principal)?;
    let posted: InhibitBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("not an inhibition rule: {e}")))?;
    if posted.equal.len() > MAX_MATCHERS {
        return Err(ApiError::BadRequest(format!(
            "`equal` has more than {MAX_MATCHERS} labels"
        )));
    }
    let rule = InhibitRule {
        id: new_id(&principal, &body),
        source: matchers("source", &posted.source)?,
        target: matchers("target", &posted.target)?,
        equal: posted.equal,
        comment: posted.comment.chars().take(1000).collect(),
        created_by: principal.token_id.clone(),
    };
    let json = serde_json::to_string(&rule).expect("rules serialise");
    put(&state, &principal, "inhibit", rule.id.clone(), json).await?;
    crate::audit::record(
        &state,
        &principal.tenant,
        &principal.token_id,
        "inhibit.create",
        &rule.id,
        serde_json::to_value(&rule).expect("rules serialise"),
    )
    .await?;
    Ok(axum::Json(
        serde_json::to_value(&rule).expect("rules serialise"),
    ))
}

async fn delete(
    state: AppState,
    headers: HeaderMap,
    kind: &'static str,
    id: String,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    authorize_edit(&principal)?;
    let meta = state.meta.clone();
    let tenant = principal.tenant.clone();
    let rule_id = id.clone();
    let existed = tokio::task::spawn_blocking(move || meta.delete_rule(&tenant, kind, &rule_id))
        .await
        .map_err(|_| ApiError::Internal)??;
    if !existed {
        return Err(ApiError::NotFound(format!("no {kind} rule `{id}`")));
    }
    state
        .services()?
        .correlation
        .reload_rules(&principal.tenant)
        .await?;
    crate::audit::record(
        &state,
        &principal.tenant,
        &principal.token_id,
        &format!("{kind}.delete"),
        &id,
        json!({}),
    )
    .await?;
    Ok(axum::Json(json!({ "deleted": id })))
}

pub async fn delete_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    delete(state, headers, "silence", id).await
}

pub async fn delete_inhibit_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    delete(state, headers, "inhibit", id).await
}
