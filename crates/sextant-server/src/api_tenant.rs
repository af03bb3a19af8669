//! `DELETE /api/v1/tenant/data`: erase all of the caller's tenant's telemetry (admin only),
//! recorded as `tenant.erase` in the (new) audit trail.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState};

pub async fn erase_data(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    run(&state, &headers).await
}

async fn run(state: &AppState, headers: &HeaderMap) -> Result<Response, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = state.auth.authenticate(authorization)?;
    crate::auth::authorize_admin(&principal)?;
    let tables = state.services()?.tables.clone();
    let correlation = state.services()?.correlation.clone();
    let tenant = principal.tenant.clone();
    // Erasure takes the store's catalog lock and commits to SQLite: not for an async worker.
    let report = tokio::task::spawn_blocking(move || tables.erase_tenant(&tenant))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|err| {
            tracing::error!(tenant = %principal.tenant, error = %err, "erasure failed");
            ApiError::Internal
        })?;
    // The erasure removed the tenant's incidents and correlator state; what memory holds of
    // them goes too.
    correlation.forget(&principal.tenant).await;
    // Erasure took the tenant's audit trail with it; the erasure itself is its first record.
    crate::audit::record(
        state,
        &principal.tenant,
        &principal.token_id,
        "tenant.erase",
        principal.tenant.as_str(),
        serde_json::json!({
            "erased_files": report.files,
            "erased_rows": report.rows,
            "up_to_seq": report.up_to_seq,
        }),
    )
    .await?;
    tracing::info!(
        tenant = %principal.tenant,
        token_id = %principal.token_id,
        files = report.files,
        rows = report.rows,
        "tenant telemetry erased"
    );
    Ok(axum::Json(serde_json::json!({
        "tenant": principal.tenant.as_str(),
        "erased_files": report.files,
        "erased_rows": report.rows,
        "up_to_seq": report.up_to_seq,
    }))
    .into_response())
}
