//! The SQLite side of events, detector states and feedback: the queries behind the
//! [`super::MetadataStore`] methods that deal with them.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sextant_model::{Event, EventKind, TenantId};

use crate::{Error, Result};

/// The tables, created with the rest of the schema.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    tenant      TEXT NOT NULL,
    id          TEXT NOT NULL,
    time        INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    source      TEXT NOT NULL,
    service     TEXT NOT NULL,
    severity    TEXT NOT NULL,
    title       TEXT NOT NULL,
    summary     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      TEXT NOT NULL,
    labels      TEXT NOT NULL,
    details     TEXT NOT NULL,
    feedback    TEXT,
    count       INTEGER NOT NULL DEFAULT 1,
    last_seen   INTEGER NOT NULL DEFAULT 0,
    decision    TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (tenant, time);
-- Every new event and every change of one (a repeat, a resolution), in order: what the
-- correlator reads. Rows are deleted once it has taken them.
CREATE TABLE IF NOT EXISTS event_changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant   TEXT NOT NULL,
    event_id TEXT NOT NULL,
    time     INTEGER NOT NULL,
    status   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS detectors (
    tenant TEXT NOT NULL,
    series TEXT NOT NULL,
    state  BLOB NOT NULL,
    PRIMARY KEY (tenant, series)
);
CREATE TABLE IF NOT EXISTS series_sensitivity (
    tenant      TEXT NOT NULL,
    series      TEXT NOT NULL,
    sensitivity REAL NOT NULL,
    PRIMARY KEY (tenant, series)
);
CREATE TABLE IF NOT EXISTS anomaly_feedback (
    tenant     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    series     TEXT NOT NULL,
    verdict    TEXT NOT NULL,
    comment    TEXT NOT NULL,
    actor      TEXT NOT NULL,
    before     REAL NOT NULL,
    after      REAL NOT NULL,
    at         INTEGER NOT NULL
);
";

/// Columns added after the first release: (name, definition). Added to older files on open.
const ADDED_COLUMNS: [(&str, &str); 3] = [
    ("count", "INTEGER NOT NULL DEFAULT 1"),
    ("last_seen", "INTEGER NOT NULL DEFAULT 0"),
    ("decision", "TEXT"),
];

/// Brings an `events` table written by an older version up to the current columns.
pub(super) fn migrate(connection: &Connection) -> Result<()> {
    let existing: Vec<String> = connection
        .prepare("SELECT name FROM pragma_table_info('events')")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, definition) in ADDED_COLUMNS {
        if !existing.iter().any(|c| c == name) {
            connection.execute_batch(&format!(
                "ALTER TABLE events ADD COLUMN {name} {definition}"
            ))?;
        }
    }
    Ok(())
}

/// Notes a new event or a change of one for the correlator.
pub(super) fn record_change(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    event_id: &str,
    time: i64,
    status: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO event_changes (tenant, event_id, time, status) VALUES (?1, ?2, ?3, ?4)",
        params![tenant.as_str(), event_id, time, status],
    )?;
    Ok(())
}

/// Which events to read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventFilter {
    /// Inclusive, nanoseconds since the epoch.
    pub from: Option<i64>,
    /// Exclusive, nanoseconds since the epoch.
    pub to: Option<i64>,
    pub kind: Option<EventKind>,
    pub service: Option<String>,
    /// At most this many, newest first. 0 means no limit.
    pub limit: usize,
}

/// An engineer's judgement of an anomaly and the sensitivity change it made.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackRecord {
    pub tenant: TenantId,
    pub event_id: String,
    /// The anomaly's series (its fingerprint).
    pub series: String,
    /// `false_positive` or `confirmed`.
    pub verdict: String,
    pub comment: String,
    /// Who gave it (the token id).
    pub actor: String,
    pub before: f64,
    pub after: f64,
    /// Seconds since the Unix epoch.
    pub at: i64,
}

pub(super) fn insert(connection: &mut Connection, events: &[Event]) -> Result<usize> {
    let tx = connection.transaction()?;
    let mut inserted = 0;
    {
        let mut statement = tx.prepare(
            "INSERT OR IGNORE INTO events (tenant, id, time, kind, source, service, severity,
             title, summary, fingerprint, status, labels, details, count, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        for event in events {
            let new = statement.execute(params![
                event.tenant.as_str(),
                event.id,
                event.time_unix_nano,
                event.kind.as_str(),
                event.source,
                event.service,
                event.severity,
                event.title,
                event.summary,
                event.fingerprint,
                event.status,
                serde_json::to_string(&event.labels).expect("labels serialise"),
                event.details.to_string(),
                event.count as i64,
                event.last_seen_unix_nano.max(event.time_unix_nano),
            ])?;
            if new > 0 {
                record_change(
                    &tx,
                    &event.tenant,
                    &event.id,
                    event.time_unix_nano,
                    &event.status,
                )?;
            }
            inserted += new;
        }
    }
    tx.commit()?;
    Ok(inserted)
}

/// Marks events resolved, each at its time (the telemetry time that ended it).
pub(super) fn resolve(
    connection: &mut Connection,
    resolved: &[(TenantId, String, i64)],
) -> Result<()> {
    let tx = connection.transaction()?;
    {
        let mut statement =
            tx.prepare("UPDATE events SET status = 'resolved' WHERE tenant = ?1 AND id = ?2")?;
        for (tenant, id, at) in resolved {
            if statement.execute(params![tenant.as_str(), id])? > 0 {
                record_change(&tx, tenant, id, *at, "resolved")?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) const EVENT_COLUMNS: &str = "tenant, id, time, kind, source, service, severity,
    title, summary, fingerprint, status, labels, details, feedback, count, last_seen, decision";

pub(super) fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Event, Option<String>)> {
    let bad = |column: usize, message: String| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            message.into(),
        )
    };
    let tenant: String = row.get(0)?;
    let kind: String = row.get(3)?;
    let labels: String = row.get(11)?;
    let details: String = row.get(12)?;
    let decision: Option<String> = row.get(16)?;
    let mut event = Event {
        tenant: TenantId::new(&tenant).map_err(|e| bad(0, e.to_string()))?,
        id: row.get(1)?,
        time_unix_nano: row.get(2)?,
        kind: EventKind::from_name(&kind).ok_or_else(|| bad(3, format!("event kind `{kind}`")))?,
        source: row.get(4)?,
        service: row.get(5)?,
        severity: row.get(6)?,
        title: row.get(7)?,
        summary: row.get(8)?,
        fingerprint: row.get(9)?,
        status: row.get(10)?,
        labels: serde_json::from_str::<BTreeMap<String, String>>(&labels)
            .map_err(|e| bad(11, e.to_string()))?,
        details: serde_json::from_str(&details).map_err(|e| bad(12, e.to_string()))?,
        count: row.get::<_, i64>(14)?.max(1) as u64,
        last_seen_unix_nano: row.get(15)?,
        decision: decision
            .map(|d| serde_json::from_str(&d).map_err(|e| bad(16, e.to_string())))
            .transpose()?,
    };
    event.last_seen_unix_nano = event.last_seen_unix_nano.max(event.time_unix_nano);
    Ok((event, row.get(13)?))
}

pub(super) fn select(
    connection: &Connection,
    tenant: &TenantId,
    filter: &EventFilter,
) -> Result<Vec<(Event, Option<String>)>> {
    let limit = if filter.limit == 0 {
        -1
    } else {
        filter.limit as i64
    };
    let mut statement = connection.prepare(&format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE tenant = ?1 AND time >= ?2 AND time < ?3
           AND (?4 IS NULL OR kind = ?4) AND (?5 IS NULL OR service = ?5)
         ORDER BY time DESC, id LIMIT ?6"
    ))?;
    let rows = statement.query_map(
        params![
            tenant.as_str(),
            filter.from.unwrap_or(i64::MIN),
            filter.to.unwrap_or(i64::MAX),
            filter.kind.map(EventKind::as_str),
            filter.service,
            limit
        ],
        event_from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn select_one(
    connection: &Connection,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<(Event, Option<String>)>> {
    Ok(connection
        .query_row(
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE tenant = ?1 AND id = ?2"),
            params![tenant.as_str(), id],
            event_from_row,
        )
        .optional()?)
}

pub(super) fn save_detectors(
    tx: &Transaction<'_>,
    states: &[super::DetectorState<'_>],
) -> Result<()> {
    let mut save = tx.prepare(
        "INSERT INTO detectors (tenant, series, state) VALUES (?1, ?2, ?3)
         ON CONFLICT(tenant, series) DO UPDATE SET state = excluded.state",
    )?;
    let mut delete = tx.prepare("DELETE FROM detectors WHERE tenant = ?1 AND series = ?2")?;
    for &(tenant, series, state) in states {
        // An empty state: the series was retired.
        if state.is_empty() {
            delete.execute(params![tenant.as_str(), series])?;
        } else {
            save.execute(params![tenant.as_str(), series, state])?;
        }
    }
    Ok(())
}

fn tenant_of(name: &str) -> Result<TenantId> {
    TenantId::new(name).map_err(|e| Error::Decode(e.to_string()))
}

pub(super) fn detector_states(connection: &Connection) -> Result<Vec<(TenantId, String, Vec<u8>)>> {
    let mut statement = connection
        .prepare("SELECT tenant, series, state FROM detectors ORDER BY tenant, series")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut states = Vec::new();
    for row in rows {
        let (tenant, series, state) = row?;
        states.push((tenant_of(&tenant)?, series, state));
    }
    Ok(states)
}

pub(super) fn record_feedback(connection: &mut Connection, record: &FeedbackRecord) -> Result<()> {
    let tx = connection.transaction()?;
    tx.execute(
        "INSERT INTO anomaly_feedback (tenant, event_id, series, verdict, comment, actor, before,
         after, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            record.tenant.as_str(),
            record.event_id,
            record.series,
            record.verdict,
            record.comment,
            record.actor,
            record.before,
            record.after,
            record.at
        ],
    )?;
    tx.execute(
        "INSERT INTO series_sensitivity (tenant, series, sensitivity) VALUES (?1, ?2, ?3)
         ON CONFLICT(tenant, series) DO UPDATE SET sensitivity = excluded.sensitivity",
        params![record.tenant.as_str(), record.series, record.after],
    )?;
    tx.execute(
        "UPDATE events SET feedback = ?3 WHERE tenant = ?1 AND id = ?2",
        params![record.tenant.as_str(), record.event_id, record.verdict],
    )?;
    tx.commit()?;
    Ok(())
}

pub(super) fn feedback_of(
    connection: &Connection,
    tenant: &TenantId,
    event_id: &str,
) -> Result<Vec<FeedbackRecord>> {
    let mut statement = connection.prepare(
        "SELECT tenant, event_id, series, verdict, comment, actor, before, after, at
         FROM anomaly_feedback WHERE tenant = ?1 AND event_id = ?2 ORDER BY rowid",
    )?;
    let rows = statement.query_map(params![tenant.as_str(), event_id], |row| {
        Ok((
            row.get::<_, String>(0)?,
            FeedbackRecord {
                tenant: TenantId::new("x").expect("a valid name"),
                event_id: row.get(1)?,
                series: row.get(2)?,
                verdict: row.get(3)?,
                comment: row.get(4)?,
                actor: row.get(5)?,
                before: row.get(6)?,
                after: row.get(7)?,
                at: row.get(8)?,
            },
        ))
    })?;
    let mut records = Vec::new();
    for row in rows {
        let (tenant, mut record) = row?;
        record.tenant = tenant_of(&tenant)?;
        records.push(record);
    }
    Ok(records)
}

pub(super) fn sensitivities(connection: &Connection) -> Result<Vec<(TenantId, String, f64)>> {
    let mut statement = connection
        .prepare("SELECT tenant, series, sensitivity FROM series_sensitivity ORDER BY tenant")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, f64>(2)?,
        ))
    })?;
    let mut values = Vec::new();
    for row in rows {
        let (tenant, series, sensitivity) = row?;
        values.push((tenant_of(&tenant)?, series, sensitivity));
    }
    Ok(values)
}

/// Removes everything of `tenant` these tables hold (its data is being erased).
pub(super) fn erase(tx: &Transaction<'_>, tenant: &TenantId) -> Result<()> {
    for table in [
        "events",
        "event_changes",
        "detectors",
        "series_sensitivity",
        "anomaly_feedback",
    ] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE tenant = ?1"),
            [tenant.as_str()],
        )?;
    }
    Ok(())
}
