//! The SQLite side of correlation: alerts deduplicated by fingerprint, the change feed the
//! correlator reads, its saved state, incidents, and silence and inhibition rules.

use rusqlite::{Connection, OptionalExtension, params};
use sextant_model::{Event, TenantId};

use super::events::{EVENT_COLUMNS, event_from_row, record_change};
use crate::{Error, Result};

pub(super) const SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS events_by_fingerprint ON events (tenant, fingerprint, kind);
CREATE TABLE IF NOT EXISTS incidents (
    tenant     TEXT NOT NULL,
    id         INTEGER NOT NULL,
    status     TEXT NOT NULL,
    opened_at  INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS incidents_by_time ON incidents (tenant, opened_at);
CREATE TABLE IF NOT EXISTS correlators (
    tenant TEXT PRIMARY KEY,
    state  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS incident_rca (
    tenant      TEXT NOT NULL,
    incident    INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    computed_at INTEGER NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (tenant, incident, version)
);
CREATE TABLE IF NOT EXISTS runbook_runs (
    tenant     TEXT NOT NULL,
    id         TEXT NOT NULL,
    runbook    TEXT NOT NULL,
    incident   INTEGER NOT NULL,
    status     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS runbook_runs_by_runbook ON runbook_runs (tenant, runbook, created_at);
CREATE TABLE IF NOT EXISTS correlation_rules (
    tenant     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind, id)
);
";

/// One change of an event for the correlator: the event as it is now, with the status and time
/// of this change (a repeat, a resolution).
#[derive(Clone, Debug, PartialEq)]
pub struct EventChange {
    pub seq: u64,
    pub event: Event,
    pub time: i64,
    pub status: String,
}

/// An incident row: the columns lists filter on, and the whole incident as JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentRow {
    pub tenant: TenantId,
    pub id: u64,
    pub status: String,
    /// Nanoseconds since the Unix epoch.
    pub opened_at: i64,
    pub updated_at: i64,
    pub body: String,
}

/// What one correlation step decided, stored in one transaction: the decision on each event,
/// the incidents it changed, the tenants' correlator states, and the change feed position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CorrelationCommit {
    /// (tenant, event id, decision JSON).
    pub decisions: Vec<(TenantId, String, String)>,
    pub incidents: Vec<IncidentRow>,
    /// (tenant, state JSON).
    pub states: Vec<(TenantId, String)>,
    /// Changes through this sequence number are taken (and deleted); `None` leaves the feed.
    pub through_seq: Option<u64>,
    /// Audit records of these decisions, stored with them.
    pub audit: Vec<super::AuditRecord>,
}

/// Which incidents to list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncidentFilter {
    /// Opened at or after (nanoseconds).
    pub from: Option<i64>,
    /// Opened before.
    pub to: Option<i64>,
    pub status: Option<String>,
    /// 0: no limit.
    pub limit: usize,
}

/// Stores alert notifications, deduplicated: a notification whose (tenant, fingerprint) has an
/// alert event already updates it (status, newest time, count, title, labels, details) instead
/// of adding one. Returns each stored event as it is now, and whether it was new.
pub(super) fn upsert_alerts(
    connection: &mut Connection,
    alerts: &[Event],
) -> Result<Vec<(Event, bool)>> {
    let tx = connection.transaction()?;
    let mut stored = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let existing: Option<String> = tx
            .query_row(
                "SELECT id FROM events WHERE tenant = ?1 AND fingerprint = ?2 AND kind = ?3",
                params![
                    alert.tenant.as_str(),
                    alert.fingerprint,
                    alert.kind.as_str()
                ],
                |row| row.get(0),
            )
            .optional()?;
        let new = existing.is_none();
        let id = match existing {
            Some(id) => {
                tx.execute(
                    "UPDATE events SET status = ?3, severity = ?4, title = ?5, summary = ?6,
                     labels = ?7, details = ?8, service = ?9, count = count + 1,
                     last_seen = max(last_seen, ?10)
                     WHERE tenant = ?1 AND id = ?2",
                    params![
                        alert.tenant.as_str(),
                        id,
                        alert.status,
                        alert.severity,
                        alert.title,
                        alert.summary,
                        serde_json::to_string(&alert.labels).expect("labels serialise"),
                        alert.details.to_string(),
                        alert.service,
                        alert.time_unix_nano.max(alert.last_seen_unix_nano),
                    ],
                )?;
                id
            }
            None => {
                tx.execute(
                    "INSERT INTO events (tenant, id, time, kind, source, service, severity,
                     title, summary, fingerprint, status, labels, details, count, last_seen)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1, ?3)",
                    params![
                        alert.tenant.as_str(),
                        alert.id,
                        alert.time_unix_nano,
                        alert.kind.as_str(),
                        alert.source,
                        alert.service,
                        alert.severity,
                        alert.title,
                        alert.summary,
                        alert.fingerprint,
                        alert.status,
                        serde_json::to_string(&alert.labels).expect("labels serialise"),
                        alert.details.to_string(),
                    ],
                )?;
                alert.id.clone()
            }
        };
        let time = alert.last_seen_unix_nano.max(alert.time_unix_nano);
        record_change(&tx, &alert.tenant, &id, time, &alert.status)?;
        let (event, _) = tx.query_row(
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE tenant = ?1 AND id = ?2"),
            params![alert.tenant.as_str(), id],
            event_from_row,
        )?;
        stored.push((event, new));
    }
    tx.commit()?;
    Ok(stored)
}

/// The changes after `after_seq`, oldest first, at most `limit`.
pub(super) fn changes(
    connection: &Connection,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<EventChange>> {
    let columns: String = EVENT_COLUMNS
        .split(',')
        .map(|c| format!("e.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut statement = connection.prepare(&format!(
        "SELECT {columns}, c.seq, c.time, c.status FROM event_changes c
         JOIN events e ON e.tenant = c.tenant AND e.id = c.event_id
         WHERE c.seq > ?1 ORDER BY c.seq LIMIT ?2"
    ))?;
    let rows = statement.query_map(params![after_seq as i64, limit as i64], |row| {
        let (event, _) = event_from_row(row)?;
        Ok(EventChange {
            event,
            seq: row.get::<_, i64>(17)? as u64,
            time: row.get(18)?,
            status: row.get(19)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn commit(connection: &mut Connection, commit: &CorrelationCommit) -> Result<()> {
    let tx = connection.transaction()?;
    {
        let mut decide =
            tx.prepare("UPDATE events SET decision = ?3 WHERE tenant = ?1 AND id = ?2")?;
        for (tenant, id, decision) in &commit.decisions {
            decide.execute(params![tenant.as_str(), id, decision])?;
        }
        let mut incident = tx.prepare(
            "INSERT INTO incidents (tenant, id, status, opened_at, updated_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(tenant, id) DO UPDATE SET status = excluded.status,
             opened_at = excluded.opened_at, updated_at = excluded.updated_at,
             body = excluded.body",
        )?;
        for row in &commit.incidents {
            incident.execute(params![
                row.tenant.as_str(),
                row.id as i64,
                row.status,
                row.opened_at,
                row.updated_at,
                row.body
            ])?;
        }
        let mut state = tx.prepare(
            "INSERT INTO correlators (tenant, state) VALUES (?1, ?2)
             ON CONFLICT(tenant) DO UPDATE SET state = excluded.state",
        )?;
        for (tenant, body) in &commit.states {
            state.execute(params![tenant.as_str(), body])?;
        }
        if let Some(seq) = commit.through_seq {
            tx.execute("DELETE FROM event_changes WHERE seq <= ?1", [seq as i64])?;
        }
        super::audit::append_in(&tx, &commit.audit)?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn correlator_state(
    connection: &Connection,
    tenant: &TenantId,
) -> Result<Option<String>> {
    Ok(connection
        .query_row(
            "SELECT state FROM correlators WHERE tenant = ?1",
            [tenant.as_str()],
            |row| row.get(0),
        )
        .optional()?)
}

fn incident_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, IncidentRow)> {
    Ok((
        row.get(0)?,
        IncidentRow {
            tenant: TenantId::new("x").expect("a valid name"),
            id: row.get::<_, i64>(1)? as u64,
            status: row.get(2)?,
            opened_at: row.get(3)?,
            updated_at: row.get(4)?,
            body: row.get(5)?,
        },
    ))
}

fn with_tenant(found: (String, IncidentRow)) -> Result<IncidentRow> {
    let (tenant, mut row) = found;
    row.tenant = TenantId::new(&tenant).map_err(|e| Error::Decode(e.to_string()))?;
    Ok(row)
}

pub(super) fn incidents(
    connection: &Connection,
    tenant: &TenantId,
    filter: &IncidentFilter,
) -> Result<Vec<IncidentRow>> {
    let limit = if filter.limit == 0 {
        -1
    } else {
        filter.limit as i64
    };
    let mut statement = connection.prepare(
        "SELECT tenant, id, status, opened_at, updated_at, body FROM incidents
         WHERE tenant = ?1 AND opened_at >= ?2 AND opened_at < ?3
           AND (?4 IS NULL OR status = ?4)
         ORDER BY opened_at DESC, id DESC LIMIT ?5",
    )?;
    let rows = statement.query_map(
        params![
            tenant.as_str(),
            filter.from.unwrap_or(i64::MIN),
            filter.to.unwrap_or(i64::MAX),
            filter.status,
            limit
        ],
        incident_from_row,
    )?;
    rows.map(|row| with_tenant(row?)).collect()
}

pub(super) fn incident(
    connection: &Connection,
    tenant: &TenantId,
    id: u64,
) -> Result<Option<IncidentRow>> {
    connection
        .query_row(
            "SELECT tenant, id, status, opened_at, updated_at, body FROM incidents
             WHERE tenant = ?1 AND id = ?2",
            params![tenant.as_str(), id as i64],
            incident_from_row,
        )
        .optional()?
        .map(with_tenant)
        .transpose()
}

/// Adds or replaces rule `id` of `kind` (`silence`, `inhibit`).
pub(super) fn put_rule(
    connection: &Connection,
    tenant: &TenantId,
    kind: &str,
    id: &str,
    body: &str,
) -> Result<()> {
    connection.execute(
        "INSERT INTO correlation_rules (tenant, kind, id, body, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(tenant, kind, id) DO UPDATE SET body = excluded.body",
        params![tenant.as_str(), kind, id, body, super::now()],
    )?;
    Ok(())
}

/// The rules of `kind`, oldest first, as (id, body).
pub(super) fn rules(
    connection: &Connection,
    tenant: &TenantId,
    kind: &str,
) -> Result<Vec<(String, String)>> {
    let mut statement = connection.prepare(
        "SELECT id, body FROM correlation_rules WHERE tenant = ?1 AND kind = ?2
         ORDER BY created_at, id",
    )?;
    let rows = statement.query_map(params![tenant.as_str(), kind], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Removes a rule; whether it existed.
pub(super) fn delete_rule(
    connection: &Connection,
    tenant: &TenantId,
    kind: &str,
    id: &str,
) -> Result<bool> {
    Ok(connection.execute(
        "DELETE FROM correlation_rules WHERE tenant = ?1 AND kind = ?2 AND id = ?3",
        params![tenant.as_str(), kind, id],
    )? > 0)
}

/// Adds a new version of an incident's root-cause ranking; returns its version (1, 2, ...).
pub(super) fn add_ranking(
    connection: &mut Connection,
    tenant: &TenantId,
    incident: u64,
    computed_at: i64,
    body: &str,
) -> Result<u64> {
    let tx = connection.transaction()?;
    let version: i64 = tx.query_row(
        "SELECT coalesce(max(version), 0) + 1 FROM incident_rca WHERE tenant = ?1 AND incident = ?2",
        params![tenant.as_str(), incident as i64],
        |row| row.get(0),
    )?;
    tx.execute(
        "INSERT INTO incident_rca (tenant, incident, version, computed_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![tenant.as_str(), incident as i64, version, computed_at, body],
    )?;
    tx.commit()?;
    Ok(version as u64)
}

/// An incident's rankings as (version, computed at, JSON), newest first, at most `limit`.
pub(super) fn rankings(
    connection: &Connection,
    tenant: &TenantId,
    incident: u64,
    limit: usize,
) -> Result<Vec<(u64, i64, String)>> {
    let mut statement = connection.prepare(
        "SELECT version, computed_at, body FROM incident_rca WHERE tenant = ?1 AND incident = ?2
         ORDER BY version DESC LIMIT ?3",
    )?;
    let rows = statement.query_map(
        params![tenant.as_str(), incident as i64, limit as i64],
        |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?, row.get(2)?)),
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A runbook run as stored: the columns lists filter on, and the whole run as JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRow {
    pub tenant: TenantId,
    pub id: String,
    pub runbook: String,
    pub incident: u64,
    pub status: String,
    /// Nanoseconds since the Unix epoch.
    pub created_at: i64,
    pub body: String,
}

pub(super) fn put_run(connection: &Connection, run: &RunRow) -> Result<()> {
    connection.execute(
        "INSERT INTO runbook_runs (tenant, id, runbook, incident, status, created_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(tenant, id) DO UPDATE SET status = excluded.status, body = excluded.body",
        params![
            run.tenant.as_str(),
            run.id,
            run.runbook,
            run.incident as i64,
            run.status,
            run.created_at,
            run.body
        ],
    )?;
    Ok(())
}

fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, RunRow)> {
    Ok((
        row.get::<_, String>(0)?,
        RunRow {
            tenant: TenantId::new("x").expect("a valid name"),
            id: row.get(1)?,
            runbook: row.get(2)?,
            incident: row.get::<_, i64>(3)? as u64,
            status: row.get(4)?,
            created_at: row.get(5)?,
            body: row.get(6)?,
        },
    ))
}

fn run_with_tenant(found: (String, RunRow)) -> Result<RunRow> {
    let (tenant, mut run) = found;
    run.tenant = TenantId::new(&tenant).map_err(|e| Error::Decode(e.to_string()))?;
    Ok(run)
}

/// Runs newest first, at most `limit` (0: all): of one tenant (every tenant's when `None`),
/// of one runbook (every runbook's when `None`).
pub(super) fn runs(
    connection: &Connection,
    tenant: Option<&TenantId>,
    runbook: Option<&str>,
    limit: usize,
) -> Result<Vec<RunRow>> {
    let limit = if limit == 0 { -1 } else { limit as i64 };
    let mut statement = connection.prepare(
        "SELECT tenant, id, runbook, incident, status, created_at, body FROM runbook_runs
         WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR runbook = ?2)
         ORDER BY created_at DESC, id LIMIT ?3",
    )?;
    let rows = statement.query_map(
        params![tenant.map(TenantId::as_str), runbook, limit],
        run_from_row,
    )?;
    rows.map(|row| run_with_tenant(row?)).collect()
}

/// One run of a tenant.
pub(super) fn run(connection: &Connection, tenant: &TenantId, id: &str) -> Result<Option<RunRow>> {
    connection
        .query_row(
            "SELECT tenant, id, runbook, incident, status, created_at, body FROM runbook_runs
             WHERE tenant = ?1 AND id = ?2",
            params![tenant.as_str(), id],
            run_from_row,
        )
        .optional()?
        .map(run_with_tenant)
        .transpose()
}

/// Removes everything of `tenant` these tables hold.
pub(super) fn erase(tx: &rusqlite::Transaction<'_>, tenant: &TenantId) -> Result<()> {
    for table in [
        "incidents",
        "incident_rca",
        "correlators",
        "correlation_rules",
    ] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE tenant = ?1"),
            [tenant.as_str()],
        )?;
    }
    Ok(())
}
