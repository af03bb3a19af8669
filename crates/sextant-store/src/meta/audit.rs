//! The audit trail in SQLite: append-only records of who did what and when (incident actions,
//! anomaly feedback, rule changes, runbook runs and their steps, approvals). Records are only
//! ever inserted; nothing updates or deletes them except a tenant's erasure.

use rusqlite::{Connection, params};
use sextant_model::TenantId;

use crate::{Error, Result};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant  TEXT NOT NULL,
    number  INTEGER,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (tenant, at);
CREATE TRIGGER IF NOT EXISTS audit_is_append_only BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
";

/// Trails from before per-tenant numbers get them, in the order they were written (the one
/// time records are changed: the append-only trigger is lifted for it, in one transaction).
pub(super) fn migrate(connection: &Connection) -> Result<()> {
    let numbered = connection
        .prepare("SELECT 1 FROM pragma_table_info('audit') WHERE name = 'number'")?
        .exists([])?;
    if !numbered {
        connection.execute_batch(
            "BEGIN;
             ALTER TABLE audit ADD COLUMN number INTEGER;
             DROP TRIGGER audit_is_append_only;
             UPDATE audit SET number = (SELECT count(*) FROM audit AS earlier
                                        WHERE earlier.tenant = audit.tenant
                                          AND earlier.seq <= audit.seq);
             CREATE TRIGGER audit_is_append_only BEFORE UPDATE ON audit
             BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
             COMMIT;",
        )?;
    }
    connection.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS audit_by_number ON audit (tenant, number);",
    )?;
    Ok(())
}

/// One record of the audit trail.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    /// Its place in its tenant's trail, from 1 (set when stored; 0 before): numbers say
    /// nothing of other tenants' records.
    pub seq: u64,
    pub tenant: TenantId,
    /// Nanoseconds since the Unix epoch.
    pub at: i64,
    /// A token id, or `sextant` (and a component) for what Sextant did itself.
    pub actor: String,
    /// `incident.ack`, `anomaly.feedback`, `runbook.step`, `run.approve`, ...
    pub kind: String,
    /// What it was done to: an incident, a run, a rule.
    pub subject: String,
    /// The inputs and outputs, as JSON text.
    pub detail: String,
}

/// Which records to read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditFilter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Records whose kind is this or starts with it and a `.` (`runbook` takes `runbook.*`).
    pub kind: Option<String>,
    /// Records of this actor (a token id, `sextant.correlator`, ...).
    pub actor: Option<String>,
    /// Records about this subject (an incident's number, a run's id, a rule's name).
    pub subject: Option<String>,
    /// 0: no limit.
    pub limit: usize,
}

pub(super) fn append(connection: &mut Connection, records: &[AuditRecord]) -> Result<()> {
    let tx = connection.transaction()?;
    append_in(&tx, records)?;
    tx.commit()?;
    Ok(())
}

/// Appends `records` inside a transaction the caller commits.
pub(super) fn append_in(tx: &rusqlite::Transaction<'_>, records: &[AuditRecord]) -> Result<()> {
    let mut insert = tx.prepare(
        "INSERT INTO audit (tenant, number, at, actor, kind, subject, detail)
         VALUES (?1, (SELECT COALESCE(MAX(number), 0) + 1 FROM audit WHERE tenant = ?1),
                 ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in records {
        insert.execute(params![
            r.tenant.as_str(),
            r.at,
            r.actor,
            r.kind,
            r.subject,
            r.detail
        ])?;
    }
    Ok(())
}

pub(super) fn select(
    connection: &Connection,
    tenant: &TenantId,
    filter: &AuditFilter,
) -> Result<Vec<AuditRecord>> {
    let limit = if filter.limit == 0 {
        -1
    } else {
        filter.limit as i64
    };
    let mut statement = connection.prepare(
        "SELECT number, tenant, at, actor, kind, subject, detail FROM audit
         WHERE tenant = ?1 AND at >= ?2 AND at < ?3
           AND (?4 IS NULL OR kind = ?4 OR substr(kind, 1, length(?4) + 1) = ?4 || '.')
           AND (?6 IS NULL OR actor = ?6) AND (?7 IS NULL OR subject = ?7)
         ORDER BY number DESC LIMIT ?5",
    )?;
    let rows = statement.query_map(
        params![
            tenant.as_str(),
            filter.from.unwrap_or(i64::MIN),
            filter.to.unwrap_or(i64::MAX),
            filter.kind,
            limit,
            filter.actor,
            filter.subject
        ],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
            ))
        },
    )?;
    let mut records = Vec::new();
    for row in rows {
        let (seq, tenant, at, actor, kind, subject, detail) = row?;
        records.push(AuditRecord {
            seq: seq as u64,
            tenant: TenantId::new(&tenant).map_err(|e| Error::Decode(e.to_string()))?,
            at,
            actor,
            kind,
            subject,
            detail,
        });
    }
    Ok(records)
}

/// A tenant's records go with its data.
pub(super) fn erase(tx: &rusqlite::Transaction<'_>, tenant: &TenantId) -> Result<()> {
    tx.execute("DELETE FROM audit WHERE tenant = ?1", [tenant.as_str()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tenant: &str, kind: &str) -> AuditRecord {
        AuditRecord {
            seq: 0,
            tenant: TenantId::new(tenant).unwrap(),
            at: 1,
            actor: "t".into(),
            kind: kind.into(),
            subject: String::new(),
            detail: "{}".into(),
        }
    }

    fn numbers(connection: &Connection, tenant: &str) -> Vec<(u64, String)> {
        let filter = AuditFilter::default();
        select(connection, &TenantId::new(tenant).unwrap(), &filter)
            .unwrap()
            .into_iter()
            .map(|r| (r.seq, r.kind))
            .collect()
    }

    #[test]
    fn each_tenant_numbers_its_own_trail_and_old_trails_are_numbered() {
        let mut connection = Connection::open_in_memory().unwrap();
        // A trail from before per-tenant numbers.
        connection
            .execute_batch(&SCHEMA.replace("    number  INTEGER,\n", ""))
            .unwrap();
        for (tenant, kind) in [("a", "a1"), ("b", "b1"), ("a", "a2")] {
            connection
                .execute(
                    "INSERT INTO audit (tenant, at, actor, kind, subject, detail)
                     VALUES (?1, 1, 't', ?2, '', '{}')",
                    params![tenant, kind],
                )
                .unwrap();
        }
        migrate(&connection).unwrap();
        migrate(&connection).unwrap();
        append(&mut connection, &[record("b", "b2"), record("a", "a3")]).unwrap();
        assert_eq!(
            numbers(&connection, "a"),
            [(3, "a3".into()), (2, "a2".into()), (1, "a1".into())]
        );
        assert_eq!(
            numbers(&connection, "b"),
            [(2, "b2".into()), (1, "b1".into())]
        );
        let refused = connection.execute("UPDATE audit SET kind = 'x'", []);
        assert!(refused.is_err(), "the trail is append-only again");
    }

    #[test]
    fn records_filter_by_kind_family_actor_and_subject() {
        let mut connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(SCHEMA).unwrap();
        migrate(&connection).unwrap();
        let with = |kind: &str, actor: &str, subject: &str| AuditRecord {
            actor: actor.into(),
            subject: subject.into(),
            ..record("a", kind)
        };
        append(
            &mut connection,
            &[
                with("runbook.step", "sextant.runbooks", "run-1"),
                with("runbooks.pause", "tok1", ""),
                with("runbook_x.odd", "tok1", ""),
                with("incident.ack", "tok1", "7"),
                with("incident.resolve", "tok2", "7"),
                with("incident.ack", "tok2", "8"),
            ],
        )
        .unwrap();
        let kinds = |filter: AuditFilter| -> Vec<String> {
            select(&connection, &TenantId::new("a").unwrap(), &filter)
                .unwrap()
                .into_iter()
                .map(|r| r.kind)
                .collect()
        };
        let some = |s: &str| Some(s.to_owned());
        // A family is its own name and what follows a dot: not `runbooks`, not `runbook_x`
        // (`_` is no wildcard).
        assert_eq!(
            kinds(AuditFilter {
                kind: some("runbook"),
                ..Default::default()
            }),
            ["runbook.step"]
        );
        assert_eq!(
            kinds(AuditFilter {
                kind: some("incident"),
                subject: some("7"),
                ..Default::default()
            }),
            ["incident.resolve", "incident.ack"]
        );
        assert_eq!(
            kinds(AuditFilter {
                actor: some("tok2"),
                ..Default::default()
            }),
            ["incident.ack", "incident.resolve"]
        );
    }
}
