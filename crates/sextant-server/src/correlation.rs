//! The live correlator: reads the feed of new and changed events (alerts, anomalies, capacity
//! warnings) in order, runs each tenant's [`IncidentCorrelator`] over them with the tenant's
//! silences, inhibition rules and service map (from the last hour of spans), and stores each
//! decision, the incidents it changed and the correlator's state in one transaction. Incident
//! actions (acknowledge, resolve, merge, split) go through the same lock and the same kind of
//! transaction, so the state on disk is always one the correlator was in.
//!
//! The correlator runs on event time, each tenant on its own [`Clock`]: grouping windows and
//! the quiet time before an incident resolves count in the telemetry's time, so a recorded day
//! replayed by `sextant import` groups and resolves as it would have live.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sextant_incidents::correlator::{
    CorrelatorConfig, Decision, Incident, IncidentCorrelator, InhibitRule, Rules, Signal, Silence,
};
use sextant_incidents::topology::ServiceMap;
use sextant_ingest::{MAX_CLOCK_SKEW_NANOS, Watermark};
use sextant_model::TenantId;
use sextant_store::meta::{AuditRecord, CorrelationCommit, IncidentRow, MetadataStore};
use tokio::sync::{Mutex, Notify};

use crate::read_params::{NANOS_PER_SECOND, now_ns};
use crate::{ApiError, AppState, Principal};

/// Changes read per step.
pub const BATCH: usize = 2_000;
/// How long a tenant's service map is reused before it is derived again.
const MAP_TTL: Duration = Duration::from_secs(30);
/// The spans a service map is derived from: the last hour.
const MAP_WINDOW_SECONDS: i64 = 3_600;
/// Most silences or inhibition rules per tenant.
pub const MAX_RULES: usize = 1_000;
/// The time a tenant's incidents are correlated at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// A server's: the tenant's watermark (the newest time of its durable telemetry and
    /// events), moved on by the wall-clock time passed since it was reached, so time passes for
    /// a tenant that falls silent and telemetry that arrives late keeps its lag.
    Live,
    /// A replay's (`sextant import`): the watermark alone; no wall clock.
    Replay,
}

impl Clock {
    /// A tenant's time from its watermark (`None`: nothing seen yet) and the wall clock, never
    /// more than [`MAX_CLOCK_SKEW_NANOS`] ahead of the wall clock; `None` for a replay that has
    /// seen nothing.
    pub fn now(self, watermark: Option<Watermark>, wall: i64) -> Option<i64> {
        let ceiling = wall.saturating_add(MAX_CLOCK_SKEW_NANOS);
        let time = match (self, watermark) {
            (Clock::Live, None) => wall,
            (Clock::Live, Some(mark)) => {
                mark.newest.saturating_add((wall - mark.reached_at).max(0))
            }
            (Clock::Replay, None) => return None,
            (Clock::Replay, Some(mark)) => mark.newest,
        };
        Some(time.min(ceiling))
    }
}

/// One tenant's correlator and the rules it applies.
struct TenantState {
    correlator: IncidentCorrelator,
    silences: Vec<Silence>,
    inhibitions: Vec<InhibitRule>,
    /// The service map and the tenant time it was derived at.
    map: Option<(i64, Arc<ServiceMap>)>,
    /// The newest time of the events taken (alerts carry their own).
    newest_event: Option<Watermark>,
}

/// The live correlation of every tenant.
pub struct Correlation {
    meta: Arc<dyn MetadataStore>,
    config: CorrelatorConfig,
    clock: Clock,
    tenants: Mutex<HashMap<TenantId, TenantState>>,
    wake: Notify,
}

impl std::fmt::Debug for Correlation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Correlation")
    }
}

fn blocking_error(err: tokio::task::JoinError) -> ApiError {
    tracing::error!(error = %err, "correlation task failed");
    ApiError::Internal
}

impl Correlation {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        config: CorrelatorConfig,
        clock: Clock,
    ) -> Correlation {
        Correlation {
            meta,
            config,
            clock,
            tenants: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        }
    }

    pub fn config(&self) -> &CorrelatorConfig {
        &self.config
    }

    /// New events are waiting: run a step now rather than at the next tick.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    async fn load(&self, tenant: &TenantId) -> Result<TenantState, ApiError> {
        let meta = self.meta.clone();
        let t = tenant.clone();
        let (state, silences, inhibitions) = tokio::task::spawn_blocking(move || {
            Ok::<_, sextant_store::Error>((
                meta.correlator_state(&t)?,
                meta.rules(&t, "silence")?,
                meta.rules(&t, "inhibit")?,
            ))
        })
        .await
        .map_err(blocking_error)??;
        let correlator = match state {
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                tracing::error!(tenant = %tenant, error = %e, "saved correlator state unreadable");
                ApiError::Internal
            })?,
            None => IncidentCorrelator::new(),
        };
        Ok(TenantState {
            correlator,
            silences: parse_rules(silences),
            inhibitions: parse_rules(inhibitions),
            map: None,
            newest_event: None,
        })
    }

    /// Forgets what is cached of `tenant` (after its data is erased, or its rules changed).
    pub async fn forget(&self, tenant: &TenantId) {
        self.tenants.lock().await.remove(tenant);
    }

    /// Reloads `tenant`'s silences and inhibition rules (after the API changed them).
    pub async fn reload_rules(&self, tenant: &TenantId) -> Result<(), ApiError> {
        let mut tenants = self.tenants.lock().await;
        if let Some(current) = tenants.get_mut(tenant) {
            let fresh = self.load(tenant).await?;
            current.silences = fresh.silences;
            current.inhibitions = fresh.inhibitions;
        }
        Ok(())
    }

    /// `tenant`'s time now, on this correlation's clock.
    fn tenant_now(&self, state: &AppState, tenant: &TenantId, entry: &TenantState) -> Option<i64> {
        let telemetry = state
            .pipeline()
            .ok()
            .and_then(|p| p.watermarks().get(tenant));
        // A tenant that sends telemetry runs on it (its events' times come from it, or from
        // alert senders' clocks); one that sends only alerts, on theirs.
        self.clock.now(telemetry.or(entry.newest_event), now_ns())
    }

    /// One step: takes waiting changes, correlates them, ticks every loaded tenant, stores it
    /// all. Returns how many changes it took.
    pub async fn step(&self, state: &AppState) -> Result<usize, ApiError> {
        let meta = self.meta.clone();
        let changes = tokio::task::spawn_blocking(move || meta.event_changes(0, BATCH))
            .await
            .map_err(blocking_error)??;
        let mut tenants = self.tenants.lock().await;
        if tenants.is_empty() {
            let meta = self.meta.clone();
            for tenant in tokio::task::spawn_blocking(move || meta.tenants())
                .await
                .map_err(blocking_error)??
            {
                let loaded = self.load(&tenant).await?;
                tenants.insert(tenant, loaded);
            }
        }
        let mut commit = CorrelationCommit {
            through_seq: changes.last().map(|c| c.seq),
            ..CorrelationCommit::default()
        };
        let mut changed: BTreeMap<(TenantId, u64), Incident> = BTreeMap::new();
        let mut changed_open: BTreeSet<(TenantId, u64)> = BTreeSet::new();
        let wall = now_ns();
        for change in &changes {
            let tenant = &change.event.tenant;
            if !tenants.contains_key(tenant) {
                let loaded = self.load(tenant).await?;
                tenants.insert(tenant.clone(), loaded);
            }
            let entry = tenants.get_mut(tenant).expect("loaded above");
            Watermark::raise(&mut entry.newest_event, change.time, wall);
            let now = self.tenant_now(state, tenant, entry).unwrap_or(change.time);
            if entry
                .map
                .as_ref()
                .is_none_or(|(at, _)| now - at > MAP_TTL.as_nanos() as i64 || now < *at)
            {
                let principal = Principal::internal(tenant, "sextant.correlator");
                let from = now - MAP_WINDOW_SECONDS * NANOS_PER_SECOND;
                let map = match crate::api_topology::service_map(state, &principal, from, now).await
                {
                    Ok(map) => map,
                    Err(err) => {
                        tracing::warn!(%tenant, error = %err, "service map unavailable; correlating without it");
                        ServiceMap::default()
                    }
                };
                entry.map = Some((now, Arc::new(map)));
            }
            let map = entry.map.as_ref().map(|(_, m)| m.clone());
            let mut signal = Signal::from_event(&change.event);
            signal.time = change.time;
            signal.resolved = change.status == "resolved";
            let rules = Rules {
                silences: &entry.silences,
                inhibitions: &entry.inhibitions,
                map: map.as_deref(),
            };
            let (decision, incident) = entry.correlator.process(&self.config, rules, &signal);
            // Every grouping and suppression goes to the audit trail; repeats do not.
            let repeat = matches!(
                decision,
                Decision::Deduplicated { .. }
                    | Decision::Silenced { repeat: true, .. }
                    | Decision::Inhibited { repeat: true, .. }
            );
            if !repeat {
                commit.audit.push(AuditRecord {
                    seq: 0,
                    tenant: tenant.clone(),
                    at: wall,
                    actor: "sextant.correlator".into(),
                    kind: format!("correlation.{}", decision_kind(&decision)),
                    subject: change.event.id.clone(),
                    detail: serde_json::json!({
                        "fingerprint": change.event.fingerprint,
                        "title": change.event.title,
                        "decision": decision,
                    })
                    .to_string(),
                });
            }
            commit.decisions.push((
                tenant.clone(),
                change.event.id.clone(),
                serde_json::to_string(&decision).expect("decisions serialise"),
            ));
            if let Some(id) = incident {
                changed_open.insert((tenant.clone(), id));
            }
        }
        // Each changed incident once, as it is after the whole batch.
        for (tenant, id) in changed_open {
            if let Some(incident) = tenants[&tenant].correlator.open_incident(id) {
                changed.insert((tenant, id), incident.clone());
            }
        }
        let mut touched: Vec<TenantId> = changes.iter().map(|c| c.event.tenant.clone()).collect();
        for (tenant, entry) in tenants.iter_mut() {
            let Some(now) = self.tenant_now(state, tenant, entry) else {
                continue;
            };
            let closed = entry.correlator.tick(&self.config, now);
            if !closed.is_empty() {
                touched.push(tenant.clone());
            }
            for incident in closed {
                changed.insert((tenant.clone(), incident.id), incident);
            }
        }
        touched.sort();
        touched.dedup();
        for tenant in &touched {
            let entry = &tenants[tenant];
            commit.states.push((
                tenant.clone(),
                serde_json::to_string(&entry.correlator).expect("correlator state serialises"),
            ));
            publish_metrics(tenant, &entry.correlator);
        }
        commit.incidents = changed
            .into_iter()
            .map(|((tenant, _), incident)| incident_row(&tenant, &incident))
            .collect();
        if commit.decisions.is_empty() && commit.incidents.is_empty() && commit.states.is_empty() {
            return Ok(0);
        }
        let meta = self.meta.clone();
        let result = tokio::task::spawn_blocking(move || meta.commit_correlation(&commit))
            .await
            .map_err(blocking_error)?;
        if let Err(err) = result {
            // Memory ran ahead of the disk: start again from what is stored.
            tenants.clear();
            return Err(err.into());
        }
        Ok(changes.len())
    }

    /// Applies an engineer's action to one of `tenant`'s open incidents and stores the
    /// incidents it changed. `action` gets the correlator and the time.
    pub async fn act(
        &self,
        tenant: &TenantId,
        action: impl FnOnce(&mut IncidentCorrelator, i64) -> sextant_incidents::Result<Vec<Incident>>,
    ) -> Result<Vec<Incident>, ApiError> {
        let mut tenants = self.tenants.lock().await;
        if !tenants.contains_key(tenant) {
            let loaded = self.load(tenant).await?;
            tenants.insert(tenant.clone(), loaded);
        }
        let entry = tenants.get_mut(tenant).expect("loaded above");
        let before = entry.correlator.clone();
        let incidents = match action(&mut entry.correlator, now_ns()) {
            Ok(incidents) => incidents,
            Err(err) => {
                entry.correlator = before;
                return Err(action_error(err));
            }
        };
        let commit = CorrelationCommit {
            incidents: incidents.iter().map(|i| incident_row(tenant, i)).collect(),
            states: vec![(
                tenant.clone(),
                serde_json::to_string(&entry.correlator).expect("correlator state serialises"),
            )],
            ..CorrelationCommit::default()
        };
        let meta = self.meta.clone();
        let stored = tokio::task::spawn_blocking(move || meta.commit_correlation(&commit))
            .await
            .map_err(blocking_error)?;
        if let Err(err) = stored {
            entry.correlator = before;
            return Err(err.into());
        }
        publish_metrics(tenant, &entry.correlator);
        Ok(incidents)
    }

    /// Every loaded tenant's open incidents, as they are now.
    pub async fn open_snapshot(&self) -> Vec<(TenantId, Incident)> {
        let tenants = self.tenants.lock().await;
        tenants
            .iter()
            .flat_map(|(tenant, entry)| {
                entry
                    .correlator
                    .open_incidents()
                    .map(move |incident| (tenant.clone(), incident.clone()))
            })
            .collect()
    }

    /// The tenant's running totals.
    pub async fn counters(
        &self,
        tenant: &TenantId,
    ) -> Result<sextant_incidents::correlator::Counters, ApiError> {
        let mut tenants = self.tenants.lock().await;
        if !tenants.contains_key(tenant) {
            let loaded = self.load(tenant).await?;
            tenants.insert(tenant.clone(), loaded);
        }
        Ok(tenants[tenant].correlator.counters)
    }
}

/// The audit kind of a decision: `opened`, `joined`, `silenced`, ...
fn decision_kind(decision: &Decision) -> &'static str {
    match decision {
        Decision::Opened { .. } => "opened",
        Decision::Joined { .. } => "joined",
        Decision::Deduplicated { .. } => "deduplicated",
        Decision::Resolved { .. } => "resolved",
        Decision::Flapping { .. } => "flapping",
        Decision::Silenced { .. } => "silenced",
        Decision::Inhibited { .. } => "inhibited",
        Decision::Ignored { .. } => "ignored",
    }
}

/// Stored rules as (id, JSON); unreadable ones are logged and skipped.
fn parse_rules<T: serde::de::DeserializeOwned>(rules: Vec<(String, String)>) -> Vec<T> {
    rules
        .into_iter()
        .filter_map(|(id, body)| match serde_json::from_str(&body) {
            Ok(rule) => Some(rule),
            Err(e) => {
                tracing::error!(%id, error = %e, "stored rule unreadable; skipped");
                None
            }
        })
        .collect()
}

fn action_error(err: sextant_incidents::Error) -> ApiError {
    match err {
        sextant_incidents::Error::BadMatcher { .. } => ApiError::BadRequest(err.to_string()),
        sextant_incidents::Error::NoOpenIncident { .. }
        | sextant_incidents::Error::BadAction { .. } => ApiError::Conflict(err.to_string()),
        sextant_incidents::Error::InvalidConfig { .. } => ApiError::BadRequest(err.to_string()),
    }
}

fn incident_row(tenant: &TenantId, incident: &Incident) -> IncidentRow {
    IncidentRow {
        tenant: tenant.clone(),
        id: incident.id,
        status: incident.status.as_str().to_owned(),
        opened_at: incident.opened_at,
        updated_at: incident.updated_at,
        body: serde_json::to_string(incident).expect("incidents serialise"),
    }
}

fn publish_metrics(tenant: &TenantId, correlator: &IncidentCorrelator) {
    let counters = correlator.counters;
    let tenant = tenant.as_str().to_owned();
    metrics::counter!("sextant_correlator_signals_total", "tenant" => tenant.clone())
        .absolute(counters.signals);
    metrics::counter!("sextant_correlator_suppressed_total", "tenant" => tenant.clone())
        .absolute(counters.suppressed);
    metrics::counter!("sextant_incidents_opened_total", "tenant" => tenant.clone())
        .absolute(counters.incidents);
    metrics::gauge!("sextant_incidents_open", "tenant" => tenant.clone())
        .set(correlator.open_incidents().count() as f64);
    metrics::gauge!("sextant_alert_reduction_ratio", "tenant" => tenant).set(counters.reduction());
}

/// Runs correlation steps every second (sooner when woken) until the process ends.
pub async fn run(state: AppState, correlation: Arc<Correlation>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = correlation.wake.notified() => {}
        }
        loop {
            match correlation.step(&state).await {
                Ok(taken) if taken >= BATCH => continue,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "correlation step failed; retrying");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60 * NANOS_PER_SECOND;

    #[test]
    fn the_live_clock_runs_on_from_the_watermark_a_replay_stays_on_it() {
        let wall = 1_000 * MINUTE;
        let mark = |newest, reached_at| Some(Watermark { newest, reached_at });
        // Telemetry five seconds late, reached a minute ago: still five seconds behind.
        assert_eq!(
            Clock::Live.now(mark(wall - MINUTE - 5, wall - MINUTE), wall),
            Some(wall - 5)
        );
        assert_eq!(Clock::Live.now(None, wall), Some(wall));
        // A replay of last year runs on last year's time, however long ago it was reached,
        // and has none before its first record.
        let last_year = wall - 525_600 * MINUTE;
        assert_eq!(
            Clock::Replay.now(mark(last_year, wall - 60 * MINUTE), wall),
            Some(last_year)
        );
        assert_eq!(Clock::Replay.now(None, wall), None);
        // Neither runs ahead of the wall clock by more than the skew allowed.
        let ceiling = wall + MAX_CLOCK_SKEW_NANOS;
        assert_eq!(
            Clock::Live.now(mark(wall + 60 * MINUTE, wall), wall),
            Some(ceiling)
        );
        assert_eq!(
            Clock::Replay.now(mark(wall + 60 * MINUTE, wall), wall),
            Some(ceiling)
        );
    }
}
