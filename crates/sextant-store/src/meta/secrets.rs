//! The SQLite side of runbook secrets: sealed values only (nonce and ciphertext, sealed by the
//! server with a key SQLite never sees), listed by name, never returned in the clear.

use rusqlite::{Connection, params};
use sextant_model::TenantId;

use crate::Result;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS secrets (
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    sealed     BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
";

pub(super) fn put(
    connection: &Connection,
    tenant: &TenantId,
    name: &str,
    sealed: &[u8],
) -> Result<()> {
    connection.execute(
        "INSERT INTO secrets (tenant, name, sealed, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(tenant, name) DO UPDATE SET sealed = excluded.sealed,
         updated_at = excluded.updated_at",
        params![tenant.as_str(), name, sealed, super::now()],
    )?;
    Ok(())
}

/// A tenant's secrets as (name, sealed value, updated at in Unix seconds), by name.
pub(super) fn all(
    connection: &Connection,
    tenant: &TenantId,
) -> Result<Vec<(String, Vec<u8>, i64)>> {
    let mut statement = connection
        .prepare("SELECT name, sealed, updated_at FROM secrets WHERE tenant = ?1 ORDER BY name")?;
    let rows = statement.query_map([tenant.as_str()], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn delete(connection: &Connection, tenant: &TenantId, name: &str) -> Result<bool> {
    Ok(connection.execute(
        "DELETE FROM secrets WHERE tenant = ?1 AND name = ?2",
        params![tenant.as_str(), name],
    )? > 0)
}

pub(super) fn erase(tx: &rusqlite::Transaction<'_>, tenant: &TenantId) -> Result<()> {
    tx.execute("DELETE FROM secrets WHERE tenant = ?1", [tenant.as_str()])?;
    Ok(())
}
