//! `POST /api/v1/sql`: read-only SQL over the caller's tenant, as JSON rows or CSV.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use sextant_model::Table;

use crate::auth::{Principal, authorize_query};
use crate::{ApiError, AppState};

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    format: SqlFormat,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SqlFormat {
    #[default]
    Json,
    Csv,
}

/// Authenticates a request to the query API and checks that its role may read.
pub fn query_principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = state.auth.authenticate(authorization)?;
    authorize_query(&principal)?;
    Ok(principal)
}

pub async fn sql(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    run(&state, &headers, &body).await
}

async fn run(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let principal = query_principal(state, headers)?;
    let request: SqlRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "body must be JSON like {{\"sql\": \"SELECT ...\", \"format\": \"json\"}}: {e}"
        ))
    })?;
    let services = state.services()?;
    // `templates` is built from the tenant's template miner, under the lock that ingest takes
    // too, and `events` is read from the metadata store: only for a query that can name them.
    let snapshots = Table::ALL
        .into_iter()
        .filter(|&table| Table::STORED.contains(&table) || mentions(&request.sql, table.as_str()))
        .map(|table| services.tables.snapshot(&principal.tenant, table))
        .collect();
    let output = services
        .query
        .sql_for(principal.tenant.as_str(), snapshots, &request.sql)
        .await?;
    Ok(match request.format {
        SqlFormat::Json => axum::Json(serde_json::json!({
            "columns": output
                .schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect::<Vec<_>>(),
            "rows": output.to_json_rows(),
            "row_count": output.num_rows(),
            "truncated": output.truncated,
        }))
        .into_response(),
        SqlFormat::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::HeaderName::from_static("x-sextant-truncated"),
                    if output.truncated { "true" } else { "false" },
                ),
            ],
            output.to_csv(),
        )
            .into_response(),
    })
}

/// Whether `sql` contains `name` anywhere, ignoring ASCII case (a query that does not can not
/// refer to the table).
fn mentions(sql: &str, name: &str) -> bool {
    sql.to_ascii_lowercase().contains(name)
}
