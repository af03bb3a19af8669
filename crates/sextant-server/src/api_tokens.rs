//! The caller's tenant's API tokens, for an admin token: `GET /api/v1/tokens` lists them
//! (never their secrets), `POST /api/v1/tokens` (`{"role": "viewer", "expires_in_seconds":
//! 86400, "scopes": ["read"]}`, the last two optional) creates one and answers its secret once,
//! `DELETE /api/v1/tokens/{id}` revokes one (a running server refuses it within a second).
//! `sextant tokens --url` speaks this API, so tokens can be handed out without the data
//! directory. A token can only create tokens that may do no more than it may itself; each
//! change is in the audit trail as `token.create` or `token.revoke`, with the caller's token id.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_model::{Action, IngestKind, Role, Scope};
use sextant_store::meta::{TokenInfo, TokenOptions};

use crate::auth::{Principal, action_words, authorize_admin};
use crate::read_params::format_time;
use crate::{ApiError, AppState};

/// Longest lifetime a token can be given: ten years, in seconds.
const MAX_LIFETIME_SECONDS: i64 = 10 * 366 * 86_400;
/// Every action a token can be allowed.
const ACTIONS: [Action; 7] = [
    Action::Read,
    Action::Edit,
    Action::Administer,
    Action::Ingest(IngestKind::Logs),
    Action::Ingest(IngestKind::Metrics),
    Action::Ingest(IngestKind::Traces),
    Action::Ingest(IngestKind::Alerts),
];

/// A token as the API shows it (times RFC 3339).
pub(crate) fn token_json(token: &TokenInfo) -> Value {
    let time = |t: Option<i64>| t.map(|t| format_time(t.saturating_mul(1_000_000_000)));
    json!({
        "id": token.id,
        "tenant": token.tenant.as_str(),
        "role": token.role.as_str(),
        "scopes": token.scopes.as_ref().map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
        "created_at": time(Some(token.created_at)),
        "expires_at": time(token.expires_at),
        "last_used_at": time(token.last_used_at),
        "revoked_at": time(token.revoked_at),
    })
}

fn admin(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = state.auth.authenticate(authorization)?;
    authorize_admin(&principal)?;
    Ok(principal)
}

/// Runs a metadata call off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> sextant_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|err| {
            tracing::error!(error = %err, "token metadata failed");
            ApiError::Internal
        })
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = admin(&state, &headers)?;
    let meta = state.meta.clone();
    let tokens = blocking(move || meta.list_tokens()).await?;
    let tokens: Vec<Value> = tokens
        .iter()
        .filter(|t| t.tenant == principal.tenant)
        .map(token_json)
        .collect();
    Ok(axum::Json(json!({ "tokens": tokens })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    role: String,
    #[serde(default)]
    expires_in_seconds: Option<i64>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// What a create request asks for, checked: role, options, and that the caller may do all
/// the new token may.
fn checked_request(
    principal: &Principal,
    body: &[u8],
    now: i64,
) -> Result<(Role, TokenOptions), ApiError> {
    let body: CreateBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a token request: {e}")))?;
    let role: Role = body
        .role
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("`role`: {e}")))?;
    let expires_at = match body.expires_in_seconds {
        None => None,
        Some(seconds) if (1..=MAX_LIFETIME_SECONDS).contains(&seconds) => Some(now + seconds),
        Some(seconds) => {
            return Err(ApiError::BadRequest(format!(
                "`expires_in_seconds` is {seconds}: a token lives 1 to {MAX_LIFETIME_SECONDS} \
                 seconds (leave it out for one that never expires)"
            )));
        }
    };
    let scopes = body
        .scopes
        .map(|names| Scope::parse_list(&names.join(",")))
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("`scopes`: {e}")))?;
    let new = Principal {
        tenant: principal.tenant.clone(),
        role,
        token_id: String::new(),
        scopes: scopes.clone(),
    };
    if let Some(wider) = ACTIONS.iter().find(|&&a| new.may(a) && !principal.may(a)) {
        return Err(ApiError::Forbidden(format!(
            "the new token could {}, which this token may not: a token creates only tokens \
             that may do no more than it",
            action_words(*wider)
        )));
    }
    Ok((role, TokenOptions { expires_at, scopes }))
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let principal = admin(&state, &headers)?;
    let now = crate::read_params::now_ns() / 1_000_000_000;
    let (role, options) = checked_request(&principal, &body, now)?;
    let meta = state.meta.clone();
    let tenant = principal.tenant.clone();
    let token = blocking(move || meta.create_token_with(&tenant, role, &options)).await?;
    crate::audit::record(
        &state,
        &principal.tenant,
        &principal.token_id,
        "token.create",
        &token.info.id,
        token.info.audit_detail(),
    )
    .await?;
    let mut answer = token_json(&token.info);
    answer["token"] = Value::String(token.secret);
    Ok((StatusCode::CREATED, axum::Json(answer)))
}

pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = admin(&state, &headers)?;
    let meta = state.meta.clone();
    let tenant = principal.tenant.clone();
    let wanted = id.clone();
    // Another tenant's token is as unknown as one that does not exist.
    let token = blocking(move || {
        let mine = meta
            .list_tokens()?
            .into_iter()
            .any(|t| t.id == wanted && t.tenant == tenant);
        mine.then(|| meta.revoke_token(&wanted)).transpose()
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no token `{id}` in this tenant")))?;
    crate::audit::record(
        &state,
        &principal.tenant,
        &principal.token_id,
        "token.revoke",
        &token.id,
        token.audit_detail(),
    )
    .await?;
    Ok(axum::Json(token_json(&token)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sextant_model::TenantId;

    fn principal(role: Role, scopes: Option<Vec<Scope>>) -> Principal {
        Principal {
            tenant: TenantId::new("acme").unwrap(),
            role,
            token_id: "t".into(),
            scopes,
        }
    }

    #[test]
    fn a_token_creates_only_tokens_that_may_do_no_more_than_it() {
        let full = principal(Role::Admin, None);
        let (role, options) = checked_request(
            &full,
            br#"{"role": "viewer", "expires_in_seconds": 60}"#,
            1000,
        )
        .unwrap();
        assert_eq!((role, options.expires_at), (Role::Viewer, Some(1060)));
        assert!(checked_request(&full, br#"{"role": "admin"}"#, 0).is_ok());
        // Narrowed to administration and reading: it cannot mint an ingest or editor token.
        let narrowed = principal(Role::Admin, Some(vec![Scope::Admin, Scope::Read]));
        for body in [
            r#"{"role": "ingest"}"#,
            r#"{"role": "editor"}"#,
            r#"{"role": "admin"}"#,
        ] {
            let err = checked_request(&narrowed, body.as_bytes(), 0).unwrap_err();
            assert!(matches!(err, ApiError::Forbidden(_)), "{body}: {err:?}");
        }
        assert!(checked_request(&narrowed, br#"{"role": "viewer"}"#, 0).is_ok());
        assert!(checked_request(&narrowed, br#"{"role": "admin", "scopes": ["read"]}"#, 0).is_ok());
        for (body, named) in [
            (r#"{"role": "root"}"#, "`role`"),
            (
                r#"{"role": "viewer", "expires_in_seconds": 0}"#,
                "expires_in_seconds",
            ),
            (r#"{"role": "viewer", "scopes": ["all"]}"#, "`scopes`"),
            (r#"{"role": "viewer", "tenant": "other"}"#, "unknown field"),
        ] {
            let err = checked_request(&full, body.as_bytes(), 0).unwrap_err();
            assert!(
                matches!(&err, ApiError::BadRequest(m) if m.contains(named)),
                "{body}: {err:?}"
            );
        }
    }
}
