//! Runbooks live: loaded from `DATA_DIR/runbooks/<tenant>/*.toml` (a bad file is refused with
//! its line and reason and the last good version of it stays in use), matched against open
//! incidents, and run — one run per runbook and incident — step by step, each step's input
//! and output in the run and in the audit trail.
//!
//! Safety: `dry_run` records what each step would do and does nothing; `cooldown_seconds` and
//! `max_runs_per_hour` hold new runs back (recorded once per incident); the tenant's kill
//! switch (`POST /api/v1/runbooks/pause`, `/resume`) stops new runs and steps; a failed step
//! ends the run unless it says `continue_on_error`; webhooks and chat messages are retried
//! with back-off (1 s, 2 s, 4 s, ...) and reach only what the egress rules allow
//! (`egress.rs`), and their records keep the status and the first KiB of an answer, with the
//! secrets the step used masked. An `action` step runs a program only as the operator defined
//! it (`action_runner.rs`): the runbook gives parameters, which are templated and then checked
//! against the action's types; a refused value fails the step and is audited
//! (`runbook.action_refused`). A `wait_for_approval` step waits for
//! `POST /api/v1/runs/{id}/approve` or `/reject` (editor or admin, with a comment) until it
//! expires, or for one of the signed links a chat message before the approval step carries
//! (`GET /api/v1/runs/{id}/link?...&sig=`, HMAC-SHA256 with a key in the data directory; a link
//! works once, since a decided approval takes no other). Secrets (`{{secret:NAME}}`, see
//! `secrets.rs`) go into what a step sends only as it runs; its record shows `***`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sextant_incidents::correlator::Incident;
use sextant_incidents::runbook::{
    Escape, Runbook, RunbookError, Step, TemplateContext, render, secret_names,
};
use sextant_model::TenantId;
use sextant_store::meta::RunRow;
use sha2::{Digest, Sha256};

use crate::action_runner::ActionRunner;
use crate::correlation::Correlation;
use crate::egress::EgressPolicy;
use crate::read_params::{NANOS_PER_SECOND, format_time, now_ns};
use crate::{ApiError, AppState};

/// Most of a response body a step's record keeps, in bytes.
const MAX_RECORDED_BODY: usize = 1024;
/// Most of a response body read, in bytes.
const MAX_READ_BODY: u64 = 64 * 1024;
/// Most runbooks per tenant.
pub const MAX_RUNBOOKS: usize = 200;

/// A run's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub tenant: TenantId,
    pub runbook: Runbook,
    pub incident: u64,
    pub context: TemplateContext,
    /// `running`, `waiting_approval`, `succeeded`, `failed`, `rejected`, `expired`, `paused`.
    pub status: String,
    pub next_step: usize,
    pub steps: Vec<StepRecord>,
    /// Nanoseconds since the Unix epoch.
    pub created_at: i64,
    pub approval: Option<Approval>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub index: usize,
    pub kind: String,
    /// `succeeded`, `failed`, `refused` (an action's parameter was not allowed), `dry_run`,
    /// `waiting`, `approved`, `rejected`, `expired`.
    pub status: String,
    pub attempts: u32,
    pub started_at: i64,
    pub finished_at: i64,
    /// What was (or would be) sent or run; secrets are never in it.
    pub input: Value,
    pub output: Value,
}

impl StepRecord {
    /// The record as answers and the audit trail show it: times in RFC 3339.
    pub fn to_json(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("records serialise");
        value["started_at"] = json!(format_time(self.started_at));
        value["finished_at"] = json!(format_time(self.finished_at));
        value
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub requested_at: i64,
    pub expires_at: i64,
    pub decided_by: Option<String>,
    pub decision: Option<String>,
    pub comment: Option<String>,
}

/// A tenant's runbook files: per file name, the last good runbook and its modification time.
type LoadedFiles = BTreeMap<String, (Runbook, SystemTime)>;

/// A webhook as it will be sent: URL, headers, body.
type RenderedRequest = (String, Vec<(String, String)>, String);

/// The loaded runbooks of every tenant.
pub struct Runbooks {
    dir: PathBuf,
    /// Per tenant, per file name: the last good runbook and the file's modification time.
    loaded: Mutex<HashMap<TenantId, LoadedFiles>>,
    /// Per tenant, per file: the newest load error (cleared when the file loads).
    errors: Mutex<HashMap<TenantId, BTreeMap<String, String>>>,
    /// Runs being driven now.
    active: Mutex<HashSet<String>>,
    /// (tenant, runbook, incident) held back by cooldown or rate and already recorded.
    held: Mutex<HashSet<(TenantId, String, u64)>>,
    wake: tokio::sync::Notify,
    links: LinkSigner,
    secrets: crate::secrets::SecretBox,
    actions: ActionRunner,
    egress: Arc<EgressPolicy>,
}

/// Signs the one-time approval links chat messages carry: HMAC-SHA256 over the tenant, the
/// run, the decision and the approval step, with a key kept in the data directory.
pub struct LinkSigner {
    key: [u8; 32],
    /// Where links point: the server's address as clients reach it.
    base: String,
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| -> Vec<u8> { block.iter().map(|b| b ^ byte).collect() };
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

impl LinkSigner {
    /// The signer with the key in `path` ([`crate::secrets::key_file`]).
    pub fn open(path: &std::path::Path, base: String) -> std::io::Result<LinkSigner> {
        Ok(LinkSigner {
            key: crate::secrets::key_file(path)?,
            base,
        })
    }

    fn signature(&self, tenant: &TenantId, run: &str, decision: &str, step: usize) -> String {
        let message = format!("{tenant}\n{run}\n{decision}\n{step}");
        hex::encode(hmac_sha256(&self.key, message.as_bytes()))
    }

    /// The link that takes `decision` on run `run`'s approval step `step`.
    pub fn link(&self, tenant: &TenantId, run: &str, decision: &str, step: usize) -> String {
        format!(
            "{}/api/v1/runs/{run}/link?tenant={tenant}&decision={decision}&step={step}&sig={}",
            self.base,
            self.signature(tenant, run, decision, step)
        )
    }

    /// Whether `sig` signs these; compared in constant time.
    pub fn verify(
        &self,
        tenant: &TenantId,
        run: &str,
        decision: &str,
        step: usize,
        sig: &str,
    ) -> bool {
        let want = self.signature(tenant, run, decision, step);
        want.len() == sig.len()
            && want
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl std::fmt::Debug for Runbooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runbooks")
    }
}

impl Runbooks {
    pub fn new(
        dir: PathBuf,
        links: LinkSigner,
        secrets: crate::secrets::SecretBox,
        actions: ActionRunner,
        egress: EgressPolicy,
    ) -> Runbooks {
        Runbooks {
            links,
            secrets,
            actions,
            egress: Arc::new(egress),
            dir,
            loaded: Mutex::new(HashMap::new()),
            errors: Mutex::new(HashMap::new()),
            active: Mutex::new(HashSet::new()),
            held: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn tenant_dir(&self, tenant: &TenantId) -> PathBuf {
        self.dir.join(tenant.as_str())
    }

    /// Parses `text` (the file `file` of `tenant`) and checks its action steps against the
    /// actions the tenant may use.
    fn parse(&self, tenant: &TenantId, file: &str, text: &str) -> Result<Runbook, RunbookError> {
        let runbook = Runbook::parse(file, text)?;
        runbook.check_actions(file, text, tenant.as_str(), self.actions.actions())?;
        Ok(runbook)
    }

    /// The actions the operator defined, with the users they run as.
    pub fn actions(&self) -> &ActionRunner {
        &self.actions
    }

    /// The file `name` was loaded from and its modification time.
    fn source(&self, tenant: &TenantId, name: &str) -> Option<(String, SystemTime)> {
        self.loaded.lock().get(tenant).and_then(|files| {
            files
                .iter()
                .find(|(_, (runbook, _))| runbook.name == name)
                .map(|(file, (_, at))| (file.clone(), *at))
        })
    }

    /// Re-reads the files that changed; a bad file keeps its last good version.
    pub fn reload(&self) {
        let Ok(tenants) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in tenants.flatten() {
            let Ok(tenant) = TenantId::new(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            let mut present = HashSet::new();
            for file in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = file.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".toml") {
                    continue;
                }
                present.insert(name.clone());
                let modified = file.metadata().and_then(|m| m.modified()).ok();
                let unchanged = self
                    .loaded
                    .lock()
                    .get(&tenant)
                    .and_then(|files| files.get(&name))
                    .is_some_and(|(_, at)| Some(*at) == modified);
                let errored = self
                    .errors
                    .lock()
                    .get(&tenant)
                    .is_some_and(|e| e.contains_key(&name));
                if unchanged && !errored {
                    continue;
                }
                let text = std::fs::read_to_string(file.path()).unwrap_or_default();
                match self.parse(&tenant, &name, &text) {
                    Ok(runbook) => {
                        self.loaded
                            .lock()
                            .entry(tenant.clone())
                            .or_default()
                            .insert(
                                name.clone(),
                                (runbook, modified.unwrap_or(SystemTime::UNIX_EPOCH)),
                            );
                        if let Some(errors) = self.errors.lock().get_mut(&tenant) {
                            errors.remove(&name);
                        }
                    }
                    Err(err) => {
                        let known = self
                            .errors
                            .lock()
                            .get(&tenant)
                            .and_then(|e| e.get(&name))
                            .cloned();
                        if known.as_deref() != Some(&err.to_string()) {
                            tracing::warn!(%tenant, error = %err, "runbook refused; the last good version stays");
                        }
                        self.errors
                            .lock()
                            .entry(tenant.clone())
                            .or_default()
                            .insert(name, err.to_string());
                    }
                }
            }
            if let Some(files) = self.loaded.lock().get_mut(&tenant) {
                files.retain(|name, _| present.contains(name));
            }
            if let Some(errors) = self.errors.lock().get_mut(&tenant) {
                errors.retain(|name, _| present.contains(name));
            }
        }
    }

    /// A tenant's runbooks in use.
    pub fn of(&self, tenant: &TenantId) -> Vec<Runbook> {
        self.loaded
            .lock()
            .get(tenant)
            .map(|files| files.values().map(|(r, _)| r.clone()).collect())
            .unwrap_or_default()
    }

    /// A tenant's load errors, by file.
    pub fn errors(&self, tenant: &TenantId) -> BTreeMap<String, String> {
        self.errors.lock().get(tenant).cloned().unwrap_or_default()
    }

    /// Checks `text` and writes it as the tenant's runbook file `<name>.toml`.
    pub fn put(&self, tenant: &TenantId, name: &str, text: &str) -> Result<Runbook, RunbookError> {
        let file = format!("{name}.toml");
        let runbook = self.parse(tenant, &file, text)?;
        if runbook.name != name {
            return Err(RunbookError {
                file,
                line: 1,
                reason: format!("`name` is `{}` but the path says `{name}`", runbook.name),
            });
        }
        if !self.of(tenant).iter().any(|r| r.name == name) && self.of(tenant).len() >= MAX_RUNBOOKS
        {
            return Err(RunbookError {
                file,
                line: 1,
                reason: format!("the tenant has {MAX_RUNBOOKS} runbooks already"),
            });
        }
        let dir = self.tenant_dir(tenant);
        let written =
            std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(&file), text));
        if let Err(err) = written {
            return Err(RunbookError {
                file,
                line: 1,
                reason: format!("cannot write it: {err}"),
            });
        }
        self.reload();
        Ok(runbook)
    }

    /// Removes a runbook file; whether it existed.
    pub fn delete(&self, tenant: &TenantId, name: &str) -> bool {
        let removed =
            std::fs::remove_file(self.tenant_dir(tenant).join(format!("{name}.toml"))).is_ok();
        self.reload();
        removed
    }

    pub fn notify(&self) {
        self.wake.notify_one();
    }

    pub fn links(&self) -> &LinkSigner {
        &self.links
    }

    pub fn secrets(&self) -> &crate::secrets::SecretBox {
        &self.secrets
    }
}

fn run_id(tenant: &TenantId, runbook: &str, incident: u64) -> String {
    let mut hash = Sha256::new();
    for part in [tenant.as_str(), runbook, &incident.to_string()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..8])
}

fn row(run: &Run) -> RunRow {
    RunRow {
        tenant: run.tenant.clone(),
        id: run.id.clone(),
        runbook: run.runbook.name.clone(),
        incident: run.incident,
        status: run.status.clone(),
        created_at: run.created_at,
        body: serde_json::to_string(run).expect("runs serialise"),
    }
}

/// A stored run.
pub fn parse_run(row: &RunRow) -> Option<Run> {
    serde_json::from_str(&row.body).ok()
}

async fn store(state: &AppState, run: &Run) -> Result<(), ApiError> {
    let meta = state.meta.clone();
    let row = row(run);
    tokio::task::spawn_blocking(move || meta.put_run(&row))
        .await
        .map_err(|_| ApiError::Internal)??;
    Ok(())
}

async fn audit(state: &AppState, run: &Run, actor: &str, kind: &str, detail: Value) {
    let _ = crate::audit::record(state, &run.tenant, actor, kind, &run.id, detail).await;
}

/// Whether the tenant's runbooks are paused.
pub fn paused(state: &AppState, tenant: &TenantId) -> bool {
    state
        .meta
        .rules(tenant, "runbooks")
        .map(|rules| {
            rules
                .iter()
                .any(|(id, body)| id == "paused" && body == "true")
        })
        .unwrap_or(false)
}

/// Matches open incidents to runbooks and drives runs, until the process ends.
pub async fn run(state: AppState, runbooks: Arc<Runbooks>, correlation: Arc<Correlation>) {
    // Runs a restart interrupted go on from their next step (a step cut mid-way runs again).
    if let Ok(rows) = state.meta.runs(None, None, 0) {
        for run in rows.iter().filter_map(parse_run) {
            if run.status == "running" || run.status == "waiting_approval" {
                spawn_drive(state.clone(), runbooks.clone(), run);
            }
        }
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = runbooks.wake.notified() => {}
        }
        let reload = runbooks.clone();
        let _ = tokio::task::spawn_blocking(move || reload.reload()).await;
        // Each tenant's runbooks and kill switch once per pass, not once per incident.
        let mut tenants: HashMap<TenantId, Option<Vec<Runbook>>> = HashMap::new();
        for (tenant, incident) in correlation.open_snapshot().await {
            let books = tenants.entry(tenant.clone()).or_insert_with(|| {
                let books = runbooks.of(&tenant);
                (!books.is_empty() && !paused(&state, &tenant)).then_some(books)
            });
            let Some(books) = books.clone() else {
                continue;
            };
            let root_cause = crate::rca_live::latest(&state, &tenant, incident.id)
                .ok()
                .flatten()
                .and_then(|r| r["services"][0]["service"].as_str().map(str::to_owned));
            for book in books
                .iter()
                .filter(|b| b.matches(&incident, root_cause.as_deref()))
            {
                start_if_due(
                    &state,
                    &runbooks,
                    &tenant,
                    book,
                    &incident,
                    root_cause.as_deref(),
                )
                .await;
            }
        }
    }
}

async fn start_if_due(
    state: &AppState,
    runbooks: &Arc<Runbooks>,
    tenant: &TenantId,
    book: &Runbook,
    incident: &Incident,
    root_cause: Option<&str>,
) {
    let id = run_id(tenant, &book.name, incident.id);
    if !matches!(state.meta.run(tenant, &id), Ok(None)) {
        return;
    }
    let Ok(mine) = state.meta.runs(Some(tenant), Some(&book.name), 0) else {
        return;
    };
    let now = now_ns();
    let cooling = book.cooldown_seconds > 0
        && mine
            .iter()
            .any(|r| now - r.created_at < book.cooldown_seconds as i64 * NANOS_PER_SECOND);
    let last_hour = mine
        .iter()
        .filter(|r| now - r.created_at < 3_600 * NANOS_PER_SECOND)
        .count();
    let over_rate = book
        .max_runs_per_hour
        .is_some_and(|max| last_hour >= max as usize);
    if cooling || over_rate {
        let key = (tenant.clone(), book.name.clone(), incident.id);
        if runbooks.held.lock().insert(key) {
            let reason = if cooling {
                "cooldown"
            } else {
                "max_runs_per_hour"
            };
            let _ = crate::audit::record(
                state,
                tenant,
                "sextant.runbooks",
                "runbook.held",
                &book.name,
                json!({"incident": incident.id, "reason": reason, "runs_last_hour": last_hour}),
            )
            .await;
        }
        return;
    }
    let link = format!("/api/v1/incidents/{}", incident.id);
    let run = Run {
        id,
        tenant: tenant.clone(),
        runbook: book.clone(),
        incident: incident.id,
        context: TemplateContext::of(incident, root_cause, &link),
        status: "running".into(),
        next_step: 0,
        steps: Vec::new(),
        created_at: now,
        approval: None,
    };
    if store(state, &run).await.is_err() {
        return;
    }
    let defined_by = defined_by(state, runbooks, tenant, &book.name).await;
    audit(
        state,
        &run,
        "sextant.runbooks",
        "runbook.run",
        json!({"runbook": book.name, "incident": incident.id, "dry_run": book.dry_run,
               "root_cause": root_cause, "match": book.matcher, "defined_by": defined_by}),
    )
    .await;
    spawn_drive(state.clone(), runbooks.clone(), run);
}

/// Who defined runbook `name`, for its runs' audit records: the token whose `PUT` wrote it, or
/// its file when the file changed on disk after that (or no `PUT` is on record).
async fn defined_by(state: &AppState, runbooks: &Runbooks, tenant: &TenantId, name: &str) -> Value {
    let source = runbooks.source(tenant, name);
    let meta = state.meta.clone();
    let (tenant, name) = (tenant.clone(), name.to_owned());
    let put = tokio::task::spawn_blocking(move || {
        let filter = sextant_store::meta::AuditFilter {
            kind: Some("runbook.put".into()),
            limit: 1000,
            ..Default::default()
        };
        meta.audit_records(&tenant, &filter)
            .ok()?
            .into_iter()
            .find(|r| r.subject == name)
    })
    .await
    .ok()
    .flatten();
    let modified = source.as_ref().map_or(0, |(_, at)| {
        at.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64)
    });
    match (put, source) {
        // The API writes the file, then records the put.
        (Some(put), _) if modified <= put.at + NANOS_PER_SECOND => {
            json!({"token": put.actor, "at": format_time(put.at)})
        }
        (_, Some((file, _))) => json!({"file": file, "modified_at": format_time(modified)}),
        (None, None) => Value::Null,
        (Some(put), None) => json!({"token": put.actor, "at": format_time(put.at)}),
    }
}

fn spawn_drive(state: AppState, runbooks: Arc<Runbooks>, run: Run) {
    if !runbooks.active.lock().insert(run.id.clone()) {
        return;
    }
    tokio::spawn(async move {
        let id = run.id.clone();
        drive(&state, &runbooks, run).await;
        runbooks.active.lock().remove(&id);
    });
}

/// Runs steps until the run ends or waits; a waiting run is checked every second until it is
/// decided or expires.
async fn drive(state: &AppState, runbooks: &Arc<Runbooks>, mut run: Run) {
    let signer = runbooks.links();
    loop {
        if run.status == "waiting_approval" {
            match wait_for_decision(state, &mut run).await {
                Some(true) => {}
                _ => return,
            }
        }
        if run.status != "running" {
            return;
        }
        if paused(state, &run.tenant) {
            run.status = "paused".into();
            let _ = store(state, &run).await;
            audit(
                state,
                &run,
                "sextant.runbooks",
                "runbook.paused",
                json!({"at_step": run.next_step + 1}),
            )
            .await;
            return;
        }
        let Some(step) = run.runbook.steps.get(run.next_step).cloned() else {
            run.status = if run
                .steps
                .iter()
                .any(|s| s.status == "failed" || s.status == "refused")
            {
                "failed_steps_continued".into()
            } else {
                "succeeded".into()
            };
            let _ = store(state, &run).await;
            audit(
                state,
                &run,
                "sextant.runbooks",
                "runbook.finished",
                json!({"status": run.status}),
            )
            .await;
            return;
        };
        let started = now_ns();
        let index = run.next_step;
        if let Step::WaitForApproval { expires_seconds } = step {
            if run.runbook.dry_run {
                run.steps.push(StepRecord {
                    index,
                    kind: step.kind().into(),
                    status: "dry_run".into(),
                    attempts: 0,
                    started_at: started,
                    finished_at: started,
                    input: json!({"expires_seconds": expires_seconds}),
                    output: json!("would wait for approval"),
                });
                run.next_step += 1;
            } else {
                run.status = "waiting_approval".into();
                run.approval = Some(Approval {
                    requested_at: started,
                    expires_at: started + expires_seconds as i64 * NANOS_PER_SECOND,
                    decided_by: None,
                    decision: None,
                    comment: None,
                });
                audit(state, &run, "sextant.runbooks", "runbook.approval_requested",
                      json!({"step": index + 1, "expires_at": format_time(started + expires_seconds as i64 * NANOS_PER_SECOND)})).await;
            }
            let _ = store(state, &run).await;
            continue;
        }
        let dry = run.runbook.dry_run;
        let context = run.context.clone();
        // A chat message before an approval step carries its signed approve and reject links.
        let links = run.runbook.steps[index..]
            .iter()
            .position(|s| matches!(s, Step::WaitForApproval { .. }))
            .map(|offset| {
                let step = index + offset;
                (
                    signer.link(&run.tenant, &run.id, "approve", step),
                    signer.link(&run.tenant, &run.id, "reject", step),
                )
            });
        let secrets = if dry {
            HashMap::new()
        } else {
            runbooks.secrets().all(state, &run.tenant)
        };
        let books = runbooks.clone();
        let tenant = run.tenant.clone();
        let (status, attempts, mut input, mut output) = tokio::task::spawn_blocking(move || {
            let target = Target {
                tenant: &tenant,
                books: &books,
                links,
                secrets: &secrets,
            };
            execute(&step, &context, dry, &target)
        })
        .await
        .unwrap_or_else(|e| {
            (
                "failed".into(),
                0,
                Value::Null,
                json!(format!("step task failed: {e}")),
            )
        });
        // A signed link is a capability to decide: it goes to the chat channel only, never
        // into the run's record, where anyone who may read runs would find it.
        hide_link_signatures(&mut input);
        hide_link_signatures(&mut output);
        if status == "refused" {
            audit(
                state,
                &run,
                "sextant.runbooks",
                "runbook.action_refused",
                json!({"step": index + 1, "input": input, "reason": output["refused"]}),
            )
            .await;
        }
        let failed = status == "failed" || status == "refused";
        let kind = run.runbook.steps[index].kind().to_owned();
        let record = StepRecord {
            index,
            kind,
            status,
            attempts,
            started_at: started,
            finished_at: now_ns(),
            input,
            output,
        };
        audit(
            state,
            &run,
            "sextant.runbooks",
            "runbook.step",
            record.to_json(),
        )
        .await;
        run.steps.push(record);
        run.next_step += 1;
        if failed && !run.runbook.steps[index].continue_on_error() {
            run.status = "failed".into();
        }
        let _ = store(state, &run).await;
    }
}

/// Waits for an approval decision or its expiry; `Some(true)` when approved.
async fn wait_for_decision(state: &AppState, run: &mut Run) -> Option<bool> {
    loop {
        let fresh = state.meta.run(&run.tenant, &run.id).ok()??;
        let fresh = parse_run(&fresh)?;
        *run = fresh;
        if run.status == "running" {
            return Some(true);
        }
        if run.status != "waiting_approval" {
            return Some(false);
        }
        let expires = run.approval.as_ref().map_or(i64::MAX, |a| a.expires_at);
        let over = incident_resolved(state, run);
        if now_ns() >= expires || over.is_some() {
            let why = match &over {
                Some(resolved) => format!("{resolved} before a decision: the run ends unrun"),
                None => "no decision before the approval expired".to_owned(),
            };
            run.status = "expired".into();
            run.steps.push(StepRecord {
                index: run.next_step,
                kind: "wait_for_approval".into(),
                status: "expired".into(),
                attempts: 0,
                started_at: run.approval.as_ref().map_or(0, |a| a.requested_at),
                finished_at: now_ns(),
                input: Value::Null,
                output: json!(why),
            });
            let _ = store(state, run).await;
            audit(
                state,
                run,
                "sextant.runbooks",
                "run.expired",
                json!({"step": run.next_step + 1, "reason": why}),
            )
            .await;
            return Some(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether the incident a run acts on has resolved: when, in words ("incident 4 resolved at
/// ..."); a step approved then would act on a fault that is over.
fn incident_resolved(state: &AppState, run: &Run) -> Option<String> {
    let row = state.meta.incident(&run.tenant, run.incident).ok()??;
    // The row's status first: a waiting run asks four times a second, and an open incident's
    // body (up to thousands of members) is not worth parsing each time.
    if row.status != "resolved" {
        return None;
    }
    let incident: Incident = serde_json::from_str(&row.body).ok()?;
    (incident.status == sextant_incidents::correlator::IncidentStatus::Resolved).then(|| {
        format!(
            "incident {} resolved at {}",
            incident.id,
            format_time(incident.resolved_at.unwrap_or(row.updated_at))
        )
    })
}

/// An editor's decision on a waiting run: approve continues it, reject ends it; a run whose
/// incident has resolved cannot be approved (it expires, saying why).
pub async fn decide(
    state: &AppState,
    runbooks: &Arc<Runbooks>,
    tenant: &TenantId,
    id: &str,
    approve: bool,
    actor: &str,
    comment: &str,
) -> Result<Run, ApiError> {
    let mut run = state
        .meta
        .run(tenant, id)?
        .as_ref()
        .and_then(parse_run)
        .ok_or_else(|| ApiError::NotFound(format!("no run `{id}`")))?;
    if run.status != "waiting_approval" {
        return Err(ApiError::Conflict(format!(
            "run `{id}` is {}, not waiting for approval",
            run.status
        )));
    }
    if approve && let Some(resolved) = incident_resolved(state, &run) {
        return Err(ApiError::Conflict(format!(
            "run `{id}` was not approved: {resolved}, so its remaining steps will not run"
        )));
    }
    let now = now_ns();
    let approval = run.approval.get_or_insert(Approval {
        requested_at: now,
        expires_at: now,
        decided_by: None,
        decision: None,
        comment: None,
    });
    if now >= approval.expires_at {
        return Err(ApiError::Conflict(format!(
            "the approval of run `{id}` has expired"
        )));
    }
    approval.decided_by = Some(actor.to_owned());
    approval.decision = Some(if approve { "approved" } else { "rejected" }.into());
    approval.comment = Some(comment.to_owned());
    run.steps.push(StepRecord {
        index: run.next_step,
        kind: "wait_for_approval".into(),
        status: if approve { "approved" } else { "rejected" }.into(),
        attempts: 0,
        started_at: approval.requested_at,
        finished_at: now,
        input: Value::Null,
        output: json!({"by": actor, "comment": comment}),
    });
    if approve {
        run.next_step += 1;
        run.status = "running".into();
    } else {
        run.status = "rejected".into();
    }
    store(state, &run).await?;
    crate::audit::record(
        state,
        tenant,
        actor,
        if approve { "run.approve" } else { "run.reject" },
        id,
        json!({"comment": comment, "step": run.next_step}),
    )
    .await?;
    if approve {
        // The waiting task sees the decision; after a restart none waits, so drive it here.
        spawn_drive(state.clone(), runbooks.clone(), run.clone());
    }
    Ok(run)
}

/// What a step runs against: its tenant, the runbooks (actions, egress rules, link signer), the
/// approval links a chat message carries, and the tenant's secrets.
struct Target<'a> {
    tenant: &'a TenantId,
    books: &'a Runbooks,
    links: Option<(String, String)>,
    secrets: &'a HashMap<String, String>,
}

/// Runs one step (or, in a dry run, describes it): (status, attempts, input, output).
fn execute(
    step: &Step,
    context: &TemplateContext,
    dry: bool,
    target: &Target<'_>,
) -> (String, u32, Value, Value) {
    let failed = |input: Value, why: String| ("failed".to_owned(), 0, input, json!(why));
    let secrets = target.secrets;
    // What is sent uses the secrets; what is recorded shows `***` in their place. A dry run
    // has no secrets to hand and records every placeholder as `***`.
    let real = |name: &str| secrets.get(name).cloned();
    let shown = |name: &str| (dry || secrets.contains_key(name)).then(|| "***".to_owned());
    match step {
        Step::Webhook {
            method,
            url,
            headers,
            body,
            retries,
            ..
        } => {
            let rendered =
                |secret: &dyn Fn(&str) -> Option<String>| -> Result<RenderedRequest, String> {
                    let url = render(url, context, Escape::None, secret)?;
                    let mut sent = Vec::new();
                    for (k, v) in headers {
                        sent.push((k.clone(), render(v, context, Escape::None, secret)?));
                    }
                    let body = if body.is_empty() {
                        serde_json::to_string(context).expect("contexts serialise")
                    } else {
                        render(body, context, Escape::Json, secret)?
                    };
                    Ok((url, sent, body))
                };
            let (shown_url, shown_headers, shown_body) = match rendered(&shown) {
                Ok(r) => r,
                Err(why) => return failed(json!({"url": url}), why),
            };
            let input = json!({"method": method, "url": shown_url,
                               "headers": shown_headers.into_iter().collect::<BTreeMap<_, _>>(),
                               "body": shown_body});
            if dry {
                return ("dry_run".into(), 0, input, json!("would send"));
            }
            // The values of the secrets the step's templates name, to mask in its record.
            let used: Vec<String> = std::iter::once(url.as_str())
                .chain(headers.values().map(String::as_str))
                .chain(std::iter::once(body.as_str()))
                .flat_map(secret_names)
                .filter_map(|name| secrets.get(&name).cloned())
                .collect();
            let (url, sent, body) = match rendered(&real) {
                Ok(r) => r,
                Err(why) => return failed(input, why),
            };
            let agent = target.books.egress.agent(target.tenant, SEND_TIMEOUT);
            let (ok, attempts, mut output) = send(&agent, method, &url, &sent, &body, *retries);
            redact(&mut output, &used);
            (
                if ok { "succeeded" } else { "failed" }.into(),
                attempts,
                input,
                output,
            )
        }
        Step::Chat { url, format, .. } => {
            let payload = chat_payload(context, format, target.links.as_ref());
            let input = json!({"url": url, "format": format, "payload": payload});
            if dry {
                return ("dry_run".into(), 0, input, json!("would post"));
            }
            let agent = target.books.egress.agent(target.tenant, SEND_TIMEOUT);
            let (ok, attempts, output) = send(
                &agent,
                "POST",
                url,
                &[],
                &payload.to_string(),
                default_chat_retries(),
            );
            (
                if ok { "succeeded" } else { "failed" }.into(),
                attempts,
                input,
                output,
            )
        }
        Step::Action { action, params, .. } => {
            let rendered: Result<BTreeMap<String, String>, String> = params
                .iter()
                .map(|(k, v)| Ok((k.clone(), render(v, context, Escape::None, &|_| None)?)))
                .collect();
            let runner = target.books.actions();
            let mut input = json!({"action": action, "params": params});
            let rendered = match rendered {
                Ok(r) => r,
                Err(why) => return failed(input, why),
            };
            input["params"] = json!(rendered);
            // The action is looked up at every run: the operator may have changed it since the
            // runbook was loaded.
            let Some(defined) = runner.actions().get(target.tenant.as_str(), action) else {
                return (
                    "refused".into(),
                    0,
                    input,
                    json!({"refused": format!("no action `{action}` for this tenant")}),
                );
            };
            let args = match defined.arguments(&rendered) {
                Ok(args) => args,
                Err(why) => return ("refused".into(), 0, input, json!({ "refused": why })),
            };
            input["program"] = json!(defined.spec().program);
            input["args"] = json!(args);
            input["user"] = json!(runner.user_of(defined));
            input["timeout_seconds"] = json!(defined.spec().timeout_seconds);
            if dry {
                return ("dry_run".into(), 0, input, json!("would run"));
            }
            let (ok, output) = runner.run(defined, &args);
            (
                if ok { "succeeded" } else { "failed" }.into(),
                1,
                input,
                output,
            )
        }
        Step::Command { program, .. } => failed(
            json!({"program": program}),
            "`command` steps no longer run: the programs runbooks run are the operator's \
             actions (kind = \"action\")"
                .into(),
        ),
        Step::WaitForApproval { .. } => (
            "failed".into(),
            0,
            Value::Null,
            json!("approval is not executed"),
        ),
    }
}

/// A chat message about the incident, with the approval links when a step waits for one.
fn chat_payload(
    context: &TemplateContext,
    format: &str,
    links: Option<&(String, String)>,
) -> Value {
    let text = format!(
        "Incident {} [{}] {}: {} Root cause: {}. {}",
        context.id,
        context.severity,
        context.title,
        context.summary,
        if context.root_cause.is_empty() {
            "not ranked yet"
        } else {
            &context.root_cause
        },
        context.link
    );
    let text = match links {
        Some((approve, reject)) => format!("{text} Approve: {approve} Reject: {reject}"),
        None => text,
    };
    let mut actions = vec![json!({"@type": "OpenUri", "name": "Open incident",
                                  "targets": [{"os": "default", "uri": context.link}]})];
    let mut buttons = Vec::new();
    if let Some((approve, reject)) = links {
        for (name, url) in [("Approve", approve), ("Reject", reject)] {
            actions.push(json!({"@type": "OpenUri", "name": name,
                                "targets": [{"os": "default", "uri": url}]}));
            buttons.push(
                json!({"type": "button", "text": {"type": "plain_text", "text": name}, "url": url}),
            );
        }
    }
    if format == "teams" {
        json!({"@type": "MessageCard", "@context": "https://schema.org/extensions",
               "summary": format!("Incident {}", context.id),
               "title": format!("Incident {}: {}", context.id, context.title),
               "text": text,
               "potentialAction": actions})
    } else {
        let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})];
        if !buttons.is_empty() {
            blocks.push(json!({"type": "actions", "elements": buttons}));
        }
        json!({"text": text, "blocks": blocks})
    }
}

fn default_chat_retries() -> u32 {
    2
}

/// How long one attempt of a webhook or chat message may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Replaces every occurrence of each of `secrets` in the strings of `value` with `***`.
/// Replaces the signature of every approval link in `value`'s strings by `hidden`.
pub(crate) fn hide_link_signatures(value: &mut Value) {
    match value {
        Value::String(text) if text.contains("sig=") => {
            let mut shown = String::with_capacity(text.len());
            let mut rest = text.as_str();
            while let Some(at) = rest.find("sig=") {
                let (before, after) = rest.split_at(at + "sig=".len());
                shown.push_str(before);
                let digits = after.len()
                    - after
                        .trim_start_matches(|c: char| c.is_ascii_hexdigit())
                        .len();
                if digits > 0 {
                    shown.push_str("hidden");
                }
                rest = &after[digits..];
            }
            shown.push_str(rest);
            *text = shown;
        }
        Value::Array(items) => items.iter_mut().for_each(hide_link_signatures),
        Value::Object(fields) => fields.values_mut().for_each(hide_link_signatures),
        _ => {}
    }
}

/// Where the links to decide approval step `step` of `run` were sent: the last chat step
/// before it, as `chat step N (FORMAT, HOST)` (the host only: a chat webhook's path is often
/// its credential).
pub fn link_channel(run: &Run, step: usize) -> String {
    run.steps
        .iter()
        .rev()
        .find(|record| record.index < step && record.kind == "chat")
        .map_or_else(
            || "no chat step of the run".to_owned(),
            |record| {
                let url = record.input["url"].as_str().unwrap_or_default();
                let host = url
                    .split_once("://")
                    .map_or(url, |(_, rest)| rest)
                    .split(['/', '?', '#'])
                    .next()
                    .unwrap_or_default();
                let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
                let format = record.input["format"].as_str().unwrap_or("slack");
                format!("chat step {} ({format}, {host})", record.index + 1)
            },
        )
}

/// Masks every secret in `value`'s strings as `***`: as sent, and as a receiver that echoes it
/// back would write it (JSON-escaped, percent-encoded); a string that ends with the start of
/// one (a recorded body cut at its limit) has that start masked too.
fn redact(value: &mut Value, secrets: &[String]) {
    let forms: Vec<String> = secrets
        .iter()
        .filter(|s| !s.is_empty())
        .flat_map(|secret| secret_forms(secret))
        .collect();
    redact_forms(value, &forms);
}

/// The shortest start of a secret that is masked at the end of a string.
const MIN_MASKED_PREFIX: usize = 4;

fn redact_forms(value: &mut Value, forms: &[String]) {
    match value {
        Value::String(text) => {
            for form in forms {
                if text.contains(form.as_str()) {
                    *text = text.replace(form.as_str(), "***");
                }
            }
            let cut = forms
                .iter()
                .filter_map(|form| {
                    (MIN_MASKED_PREFIX.min(form.len())..form.len())
                        .rev()
                        .filter(|&n| form.is_char_boundary(n))
                        .find(|&n| text.ends_with(&form[..n]))
                })
                .max();
            if let Some(n) = cut {
                text.truncate(text.len() - n);
                text.push_str("***");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_forms(v, forms)),
        Value::Object(fields) => fields.values_mut().for_each(|v| redact_forms(v, forms)),
        _ => {}
    }
}

/// A secret as written raw, inside a JSON string, and percent-encoded (upper- and lower-case
/// hex, space as `%20` and as `+`).
fn secret_forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).expect("strings serialise");
    let mut forms = vec![secret.to_owned(), json[1..json.len() - 1].to_owned()];
    for (hex_case, space) in [(true, "%20"), (false, "%20"), (true, "+")] {
        let mut encoded = String::new();
        for byte in secret.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    encoded.push(byte as char);
                }
                b' ' => encoded.push_str(space),
                _ if hex_case => encoded.push_str(&format!("%{byte:02X}")),
                _ => encoded.push_str(&format!("%{byte:02x}")),
            }
        }
        forms.push(encoded);
    }
    forms.sort();
    forms.dedup();
    // Longer forms first, so a form that holds another is masked whole.
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms
}

/// The first [`MAX_RECORDED_BODY`] bytes of `text` (on a character boundary), and whether
/// that is all of it.
fn bounded(text: &str) -> (&str, bool) {
    if text.len() <= MAX_RECORDED_BODY {
        return (text, true);
    }
    let mut end = MAX_RECORDED_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], false)
}

/// Sends with retries and back-off; (succeeded, attempts, the last answer: its status and the
/// start of its body).
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &str,
    retries: u32,
) -> (bool, u32, Value) {
    let mut last = Value::Null;
    for attempt in 0..=retries {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1 << (attempt - 1).min(5)));
        }
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        request = request.header("content-type", "application/json");
        for (k, v) in headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let result = match request.body(body.to_owned()) {
            Ok(request) => agent.run(request),
            Err(err) => return (false, attempt + 1, json!(format!("bad request: {err}"))),
        };
        match result {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let text = response
                    .body_mut()
                    .with_config()
                    .limit(MAX_READ_BODY)
                    .read_to_string()
                    .unwrap_or_default();
                let (start, whole) = bounded(&text);
                last = json!({"status": status, "body": start, "body_truncated": !whole});
                if (200..300).contains(&status) {
                    return (true, attempt + 1, last);
                }
            }
            Err(err) => {
                last = json!({"error": err.to_string()});
                // A refused address stays refused: no retry.
                if matches!(&err, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied)
                {
                    return (false, attempt + 1, last);
                }
            }
        }
    }
    (false, retries + 1, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn https_targets_get_as_far_as_the_tls_handshake() {
        // A listener that answers in plain text: the client must try TLS and fail its handshake.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                use std::io::Write;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let policy = Arc::new(
            EgressPolicy::new(&crate::egress::EgressSettings {
                allow: vec!["127.0.0.1".into()],
                ..Default::default()
            })
            .unwrap(),
        );
        let agent = policy.agent(&TenantId::new("ops").unwrap(), SEND_TIMEOUT);
        let (ok, _, output) = send(
            &agent,
            "POST",
            &format!("https://127.0.0.1:{port}/hook"),
            &[],
            "{}",
            0,
        );
        let error = output["error"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(!ok, "{output}");
        // rustls read the plain-text answer as a TLS record (without TLS the client would say
        // "tls required, but transport is unsecured").
        assert!(
            error.contains("invalidcontenttype") || error.contains("corrupt"),
            "{error}"
        );
    }

    #[test]
    fn recorded_answers_are_bounded_and_masked() {
        let long = format!("{}é", "a".repeat(MAX_RECORDED_BODY - 1));
        let (start, whole) = bounded(&long);
        assert_eq!((start.len(), whole), (MAX_RECORDED_BODY - 1, false));
        assert_eq!(bounded("short"), ("short", true));
        let mut output = json!({"status": 200, "body": "echo: key=s3cr3t-value, again s3cr3t-value",
                                "nested": ["s3cr3t-value"]});
        redact(&mut output, &["s3cr3t-value".to_owned(), String::new()]);
        assert_eq!(
            output,
            json!({"status": 200, "body": "echo: key=***, again ***", "nested": ["***"]})
        );
    }

    #[test]
    fn secrets_are_masked_however_the_receiver_wrote_them() {
        let secret = "p\"w/d &x";
        let cut_body = format!("tail {}", &secret[..5]);
        let mut output = json!({
            "raw": format!("a {secret} b"),
            "json": format!("{{\"echo\": {}}}", serde_json::to_string(secret).unwrap()),
            "url": "http://x/?k=p%22w%2Fd%20%26x&l=p%22w%2fd%20%26x&m=p%22w%2Fd+%26x",
            "cut": cut_body,
            "short": "tail p",
        });
        redact(&mut output, &[secret.to_owned()]);
        assert_eq!(
            output,
            json!({"raw": "a *** b", "json": "{\"echo\": \"***\"}",
                   "url": "http://x/?k=***&l=***&m=***", "cut": "tail ***", "short": "tail p"})
        );
    }

    #[test]
    fn link_signatures_never_reach_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LinkSigner::open(&dir.path().join("k"), "http://x".into()).unwrap();
        let tenant = TenantId::new("ops").unwrap();
        let link = signer.link(&tenant, "run1", "approve", 2);
        let mut input = json!({"payload": {"text": format!("Approve: {link} Reject: {link}"),
                                           "blocks": [{"url": link}]}, "sig": "sig=zz"});
        hide_link_signatures(&mut input);
        let text = input.to_string();
        assert!(
            !text.contains(link.rsplit("sig=").next().unwrap()),
            "{text}"
        );
        assert_eq!(text.matches("sig=hidden").count(), 3, "{text}");
        assert_eq!(input["sig"], "sig=zz");
    }

    #[test]
    fn links_verify_only_what_they_signed() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LinkSigner::open(&dir.path().join("k"), "http://x".into()).unwrap();
        let tenant = TenantId::new("ops").unwrap();
        let link = signer.link(&tenant, "run1", "approve", 2);
        let sig = link.rsplit("sig=").next().unwrap();
        assert!(signer.verify(&tenant, "run1", "approve", 2, sig));
        assert!(!signer.verify(&tenant, "run1", "reject", 2, sig));
        assert!(!signer.verify(&tenant, "run1", "approve", 3, sig));
        assert!(!signer.verify(&TenantId::new("other").unwrap(), "run1", "approve", 2, sig));
        assert!(!signer.verify(&tenant, "run1", "approve", 2, &sig[1..]));
        let again = LinkSigner::open(&dir.path().join("k"), "http://x".into()).unwrap();
        assert!(
            again.verify(&tenant, "run1", "approve", 2, sig),
            "the key is kept"
        );
    }
}
