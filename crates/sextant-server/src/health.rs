//! Health, readiness and Sextant's own metrics in Prometheus format.
//!
//! Series labelled with a tenant are shown only to a token of that tenant (Prometheus scrapes
//! with `authorization: {type: Bearer, credentials: TOKEN}`); without a token `/metrics`
//! shows the series no tenant owns, so tenant names do not leak to whoever reaches the port.
//! `auth.public_tenant_metrics = true` shows every tenant's series to anyone, as before.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once the write-ahead log is replayed and while it can still take writes.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.services.get().map(|s| &s.pipeline) {
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: replaying the write-ahead log\n",
        )
            .into_response(),
        Some(pipeline) if !pipeline.bus().is_healthy() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the write-ahead log failed a write; see the server log\n",
        )
            .into_response(),
        Some(_) => "ready\n".into_response(),
    }
}

pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let Some(handle) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response();
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let tenant = match authorization {
        None => None,
        Some(value) => match state.auth.authenticate(Some(value)) {
            Ok(principal) => Some(principal.tenant),
            Err(err) => return err.into_response(),
        },
    };
    if let Some(pipeline) = state.services.get().map(|s| &s.pipeline) {
        metrics::gauge!("sextant_ingest_queue_depth").set(pipeline.bus().queue_depth() as f64);
        metrics::gauge!("sextant_ingest_in_flight_bytes").set(pipeline.in_flight_bytes() as f64);
    }
    let text = handle.render();
    let text = if state.public_tenant_metrics {
        text
    } else {
        only_tenant(&text, tenant.as_ref().map(|t| t.as_str()))
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The exposition `text` without the samples of tenants other than `tenant` (all tenants'
/// samples go when it is `None`). Comment lines stay.
fn only_tenant(text: &str, tenant: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let owner = (!line.starts_with('#'))
            .then(|| {
                let labels = line.split_once('{')?.1;
                let (at, _) = labels
                    .match_indices("tenant=\"")
                    .find(|&(i, _)| i == 0 || labels.as_bytes()[i - 1] == b',')?;
                let value = &labels[at + 8..];
                value.split_once('"').map(|(name, _)| name)
            })
            .flatten();
        if owner.is_none_or(|owner| Some(owner) == tenant) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

pub async fn not_found() -> Response {
    crate::ApiError::NotFound("no such route".into()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_sees_its_own_series_and_nobody_sees_others() {
        let text = "# TYPE a counter\na{tenant=\"acme\",signal=\"logs\"} 3\n\
                    a{signal=\"logs\",tenant=\"globex\"} 4\nb 1\nc{subtenant=\"acme\"} 2\n\
                    d{subtenant=\"x\",tenant=\"globex\"} 5\n";
        let acme = only_tenant(text, Some("acme"));
        assert!(
            acme.contains("tenant=\"acme\"") && !acme.contains("globex"),
            "{acme}"
        );
        assert!(acme.contains("b 1") && acme.contains("c{subtenant") && acme.contains("# TYPE"));
        let anonymous = only_tenant(text, None);
        assert!(
            !anonymous.contains("{tenant=") && !anonymous.contains(",tenant="),
            "{anonymous}"
        );
        assert!(anonymous.contains("b 1") && anonymous.contains("c{subtenant"));
    }
}
