//! Runbooks and their runs through the API: `GET /api/v1/runbooks` (in use, load errors with
//! file and line, paused or not), `PUT /api/v1/runbooks/{name}` (TOML body; refused with the
//! line and reason, nothing changed), `DELETE /api/v1/runbooks/{name}`,
//! `POST /api/v1/runbooks/pause` and `/resume` (the tenant's kill switch), `GET /api/v1/runs`,
//! `GET /api/v1/runs/{id}`, `POST /api/v1/runs/{id}/approve` and `/reject`
//! (`{"comment": "..."}`, required), the signed links of chat messages (`GET
//! /api/v1/runs/{id}/link` shows a confirmation page, its form's `POST` decides), `GET /api/v1/actions` (the operator's actions this tenant
//! may use: name, description, parameters, time limit; not the program). Reading needs a query
//! role; everything else `editor` or `admin`, and goes to the audit trail.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::authorize_edit;
use crate::read_params::format_time;
use crate::runbooks::{self, Run};
use crate::{ApiError, AppState};

const MAX_COMMENT_CHARS: usize = 1000;

/// A run as the API shows it: times in RFC 3339 like every answer, the incident's services as
/// a list (templates see them joined, as `{{services}}`).
fn run_json(run: &Run) -> Value {
    let mut value = serde_json::to_value(run).expect("runs serialise");
    value["created_at"] = json!(format_time(run.created_at));
    value["steps"] = run.steps.iter().map(|step| step.to_json()).collect();
    if let Some(approval) = &run.approval {
        value["approval"]["requested_at"] = json!(format_time(approval.requested_at));
        value["approval"]["expires_at"] = json!(format_time(approval.expires_at));
    }
    value["context"]["services"] = json!(
        run.context
            .services
            .split(", ")
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    );
    // Runs recorded before links were kept out of records may still hold them.
    runbooks::hide_link_signatures(&mut value);
    value
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let books = state.services()?.runbooks.clone();
    Ok(axum::Json(json!({
        "runbooks": books.of(&principal.tenant),
        "errors": books.errors(&principal.tenant),
        "paused": runbooks::paused(&state, &principal.tenant),
    })))
}

/// `GET /api/v1/actions`: the actions a runbook of this tenant may name.
pub async fn actions(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let books = state.services()?.runbooks.clone();
    Ok(axum::Json(json!({
        "actions": books.actions().actions().available_to(principal.tenant.as_str()),
    })))
}

fn valid_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::BadRequest(
            "a runbook name is 1 to 64 letters, digits, `-` or `_`".into(),
        ));
    }
    Ok(())
}

pub async fn put(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    authorize_edit(&principal)?;
    valid_name(&name)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the runbook is not UTF-8 text".into()))?
        .to_owned();
    let books = state.services()?.runbooks.clone();
    let tenant = principal.tenant.clone();
    let (n, t) = (name.clone(), text.clone());
    let runbook = tokio::task::spawn_blocking(move || books.put(&tenant, &n, &t))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    crate::audit::record(
        &state,
        &principal.tenant,
        &principal.token_id,
        "runbook.put",
        &name,
        json!({"toml": text}),
    )
    .await?;
    Ok(axum::Json(json!({ "runbook": runbook })))
}

pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    authorize_edit(&principal)?;
    valid_name(&name)?;
    let books = state.services()?.runbooks.clone();
    let tenant = principal.tenant.clone();
    let n = name.clone();
    if !tokio::task::spawn_blocking(move || books.delete(&tenant, &n))
        .await
        .map_err(|_| ApiError::Internal)?
    {
        return Err(ApiError::NotFound(format!("no runbook `{name}`")));
    }
    crate::audit::record(
        &state,
        &principal.tenant,
        &principal.token_id,
        "runbook.delete",
        &name,
        json!({}),
    )
    .await?;
    Ok(axum::Json(json!({ "deleted": name })))
}

pub async fn switch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(action): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    authorize_edit(&principal)?;
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        other => {
            return Err(ApiError::NotFound(format!(
                "no runbooks action `{other}`; pause or resume"
            )));
        }
    };
    state.meta.put_rule(
        &principal.tenant,
        "runbooks",
        "paused",
        if paused { "true" } else { "false" },
    )?;
    crate::audit::record(
        &state,
        &principal.tenant,
        &principal.token_id,
        &format!("runbooks.{action}"),
        "runbooks",
        json!({}),
    )
    .await?;
    state.services()?.runbooks.notify();
    Ok(axum::Json(json!({ "paused": paused })))
}

pub async fn runs(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let rows = state.meta.runs(Some(&principal.tenant), None, 1000)?;
    Ok(axum::Json(json!({
        "runs": rows.iter().filter_map(runbooks::parse_run).map(|r| run_json(&r)).collect::<Vec<_>>(),
    })))
}

pub async fn one_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let run = state
        .meta
        .run(&principal.tenant, &id)?
        .as_ref()
        .and_then(runbooks::parse_run)
        .ok_or_else(|| ApiError::NotFound(format!("no run `{id}`")))?;
    Ok(axum::Json(run_json(&run)))
}

/// A signed approval link from a chat message, checked: its signature matches and its run
/// still waits on its step.
struct SignedLink {
    tenant: sextant_model::TenantId,
    run: Run,
    approve: bool,
    /// The query string, to post back.
    query: String,
}

type LinkQuery = Result<
    axum::extract::Query<std::collections::HashMap<String, String>>,
    axum::extract::rejection::QueryRejection,
>;

impl SignedLink {
    /// 403 when the signature does not match, 409 when the run no longer waits on the step
    /// (decided, expired), so a link works once.
    fn check(state: &AppState, id: &str, query: LinkQuery) -> Result<SignedLink, ApiError> {
        let params =
            crate::read_params::Params::new(query, &["tenant", "decision", "step", "sig"])?;
        let missing = |name: &str| crate::read_params::bad(name, "is required");
        let tenant =
            sextant_model::TenantId::new(params.get("tenant").ok_or_else(|| missing("tenant"))?)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let decision = params.get("decision").ok_or_else(|| missing("decision"))?;
        let step: usize = params
            .get("step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| crate::read_params::bad("step", "must be a step number"))?;
        let sig = params.get("sig").ok_or_else(|| missing("sig"))?;
        let books = state.services()?.runbooks.clone();
        if !books.links().verify(&tenant, id, decision, step, sig) {
            return Err(ApiError::Forbidden(
                "the link's signature does not match".into(),
            ));
        }
        let approve = match decision {
            "approve" => true,
            "reject" => false,
            _ => {
                return Err(crate::read_params::bad(
                    "decision",
                    "must be approve or reject",
                ));
            }
        };
        let run = state
            .meta
            .run(&tenant, id)?
            .as_ref()
            .and_then(runbooks::parse_run)
            .filter(|r| r.status == "waiting_approval" && r.next_step == step)
            .ok_or_else(|| {
                ApiError::Conflict(format!(
                    "run `{id}` is not waiting on step {} (the link was used, or the run moved on)",
                    step + 1
                ))
            })?;
        let query = format!(
            "tenant={tenant}&decision={decision}&step={step}&sig={}",
            sig.to_ascii_lowercase()
        );
        Ok(SignedLink {
            tenant,
            run,
            approve,
            query,
        })
    }

    fn decision(&self) -> &'static str {
        if self.approve { "approve" } else { "reject" }
    }
}

/// `GET /api/v1/runs/{id}/link?tenant=&decision=&step=&sig=` (and `HEAD`): the page a signed
/// link from a chat message opens. It shows the run and asks to confirm; it never decides, so
/// a link previewer or prefetcher that fetches it changes nothing.
pub async fn link_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: LinkQuery,
) -> Result<Response, ApiError> {
    let link = SignedLink::check(&state, &id, query)?;
    let run = &link.run;
    let verb = if link.approve { "Approve" } else { "Reject" };
    let step = &run.runbook.steps[run.next_step];
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{verb} run {id}</title>\
         </head><body><h1>{verb} step {step_number} of runbook {runbook}?</h1>\
         <p>Run {id} of incident {incident} ({title}), waiting on step {step_number} ({kind}).</p>\
         <form method=\"post\" action=\"/api/v1/runs/{id}/link?{query}\">\
         <button type=\"submit\">{verb}</button></form></body></html>",
        id = html(&run.id),
        step_number = run.next_step + 1,
        runbook = html(&run.runbook.name),
        incident = run.incident,
        title = html(&run.context.title),
        kind = html(step.kind()),
        query = html(&link.query),
    );
    Ok(link_response(body))
}

/// `POST /api/v1/runs/{id}/link?tenant=&decision=&step=&sig=`: the confirmation page's form;
/// takes the link's decision, once. The audit names the run and the chat step that carried
/// the link.
pub async fn link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: LinkQuery,
) -> Result<Response, ApiError> {
    let link = SignedLink::check(&state, &id, query)?;
    let books = state.services()?.runbooks.clone();
    let channel = runbooks::link_channel(&link.run, link.run.next_step);
    let run = runbooks::decide(
        &state,
        &books,
        &link.tenant,
        &id,
        link.approve,
        &format!("link:{}", link.decision()),
        &format!("by the signed link sent by {channel}"),
    )
    .await?;
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Run {id}</title></head>\
         <body><h1>Run {id}: {status}</h1></body></html>",
        id = html(&run.id),
        status = html(&run.status),
    );
    Ok(link_response(body))
}

/// An HTML answer that is never cached, framed or sent on as a referrer.
fn link_response(body: String) -> Response {
    use axum::http::header;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

/// `text` with HTML's special characters escaped.
fn html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    comment: String,
}

pub async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    authorize_edit(&principal)?;
    let approve = match action.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::NotFound(format!(
                "no run action `{other}`; approve or reject"
            )));
        }
    };
    let decision: Decision = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("the body must be {{\"comment\": \"...\"}}: {e}"))
    })?;
    if decision.comment.trim().is_empty() || decision.comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(ApiError::BadRequest(format!(
            "`comment` is required, at most {MAX_COMMENT_CHARS} characters"
        )));
    }
    let books = state.services()?.runbooks.clone();
    let run = runbooks::decide(
        &state,
        &books,
        &principal.tenant,
        &id,
        approve,
        &principal.token_id,
        &decision.comment,
    )
    .await?;
    Ok(axum::Json(run_json(&run)))
}
