//! The metadata seam: tenants, tokens, the segment catalog, erasure markers, and the events,
//! detector states and feedback of the analytics. SQLite in the embedded mode.
//!
//! A token is shown once, when it is created; only its SHA-256 hash is stored. Tokens are
//! random 192-bit secrets, so a plain hash is enough (no password stretching needed). A token
//! reads `sxt_<id>_<secret>`: it is found by its public id and its hash compared in constant
//! time, so how long a refusal takes says nothing about how close a guess was. (Tokens from
//! before ids were part of them are found by their hash.)

mod audit;
mod events;
mod incidents;
mod secrets;

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use sextant_model::{Event, Role, Scope, Table, TenantId};
use sha2::{Digest, Sha256};

use crate::{Error, Result, SegmentFile};

pub use audit::{AuditFilter, AuditRecord};
pub use events::{EventFilter, FeedbackRecord};
pub use incidents::{CorrelationCommit, EventChange, IncidentFilter, IncidentRow, RunRow};

/// Prefix of every token, so leaked tokens are easy to recognise in logs and scanners.
pub const TOKEN_PREFIX: &str = "sxt_";

/// A token as stored: everything but the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Public handle used to list and revoke the token.
    pub id: String,
    pub tenant: TenantId,
    pub role: Role,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// Seconds since the Unix epoch after which the token is refused; `None`: never.
    pub expires_at: Option<i64>,
    /// What the token is narrowed to within its role; `None`: all its role allows.
    pub scopes: Option<Vec<Scope>>,
    /// Seconds since the Unix epoch of the last request it authenticated (to the minute).
    pub last_used_at: Option<i64>,
}

impl TokenInfo {
    /// What the audit trail records of a token's creation or revocation (the same from the
    /// command line and the API): its role, scopes and expiry (RFC 3339).
    pub fn audit_detail(&self) -> serde_json::Value {
        let scopes: Option<Vec<&str>> = self
            .scopes
            .as_ref()
            .map(|scopes| scopes.iter().map(|s| s.as_str()).collect());
        serde_json::json!({
            "role": self.role.as_str(),
            "scopes": scopes.map(|s| s.join(",")),
            "expires_at": self.expires_at.map(|at| {
                sextant_model::time::format_rfc3339(at.saturating_mul(1_000_000_000))
            }),
        })
    }
}

/// How a new token is narrowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenOptions {
    /// Unix seconds after which it is refused; `None`: never.
    pub expires_at: Option<i64>,
    /// `None`: all its role allows.
    pub scopes: Option<Vec<Scope>>,
}

/// Last-used times are written at most this often per token (seconds).
pub const LAST_USED_RESOLUTION: i64 = 60;

/// A token just created: the secret is shown to the caller once and never stored.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub secret: String,
    pub info: TokenInfo,
}

/// One detector state to save: (tenant, series key, encoded state; empty: delete the saved
/// state, the series was retired).
pub type DetectorState<'a> = (&'a TenantId, &'a str, &'a [u8]);

/// Tenants and their tokens (hashes only).
pub trait TokenStore: Send + Sync {
    /// Creates a token for `tenant` (creating the tenant if new) that never expires.
    fn create_token(&self, tenant: &TenantId, role: Role) -> Result<NewToken> {
        self.create_token_with(tenant, role, &TokenOptions::default())
    }
    /// Creates a token, perhaps expiring, perhaps narrowed to some scopes.
    fn create_token_with(
        &self,
        tenant: &TenantId,
        role: Role,
        options: &TokenOptions,
    ) -> Result<NewToken>;
    /// Records that a token authenticated a request at `at` (Unix seconds).
    fn touch_token(&self, id: &str, at: i64) -> Result<()>;
    /// All tokens, revoked ones included, oldest first.
    fn list_tokens(&self) -> Result<Vec<TokenInfo>>;
    /// Revokes a token by id; revoking twice keeps the first time.
    fn revoke_token(&self, id: &str) -> Result<TokenInfo>;
    /// Finds the token whose secret this is, revoked or not.
    fn find_token(&self, secret: &str) -> Result<Option<TokenInfo>>;
    /// Every tenant that has ever had a token.
    fn tenants(&self) -> Result<Vec<TenantId>>;
}

/// The telemetry store's own records: segment files, the checkpoint with the model states
/// saved as of it, erasures, encryption keys, imported batches.
pub trait CatalogStore: Send + Sync {
    /// The ids of the batches `sextant import` stored for a tenant.
    fn imported_batches(&self, tenant: &TenantId) -> Result<std::collections::HashSet<String>>;
    /// Records that an imported batch is stored (after its write is durable).
    fn record_import(&self, tenant: &TenantId, batch: &str) -> Result<()>;
    /// The master key check of an encrypted data directory (`None`: never encrypted).
    fn key_check(&self) -> Result<Option<Vec<u8>>>;
    /// Records the master key check (the first time encryption is on).
    fn set_key_check(&self, check: &[u8]) -> Result<()>;
    /// Every wrapped data key: (tenant, key id, wrapped key).
    fn data_keys(&self) -> Result<Vec<(TenantId, u32, Vec<u8>)>>;
    /// Stores a tenant's new wrapped data key.
    fn put_data_key(&self, tenant: &TenantId, id: u32, wrapped: &[u8]) -> Result<()>;
    /// Replaces every wrapped data key and the check in one transaction (key rotation).
    fn replace_data_keys(&self, keys: &[(TenantId, u32, Vec<u8>)], check: &[u8]) -> Result<()>;
    /// Every segment file the catalog knows, oldest first.
    fn segments(&self) -> Result<Vec<CatalogEntry>>;
    /// Sequence number through which the write-ahead log is safely in segments (0: none).
    fn checkpoint(&self) -> Result<u64>;
    /// Records new segment files, moves the checkpoint forward and saves the log template
    /// miners' and the detectors' states as of that checkpoint (only those that changed), in one
    /// transaction.
    fn commit_flush(
        &self,
        added: &[CatalogEntry],
        checkpoint: u64,
        miners: &[(TenantId, Vec<u8>)],
        detectors: &[DetectorState<'_>],
    ) -> Result<()>;
    /// Each saved detector state (tenant, series key, state), as of the checkpoint.
    fn detector_states(&self) -> Result<Vec<(TenantId, String, Vec<u8>)>>;
    /// Each tenant's saved template miner state (as of the checkpoint).
    fn miner_states(&self) -> Result<Vec<(TenantId, Vec<u8>)>>;
    /// Replaces segment files (compaction, retention, erasure) in one transaction.
    fn replace_segments(&self, removed: &[String], added: &[CatalogEntry]) -> Result<()>;
    /// Erases a tenant's telemetry from the catalog: removes every segment file of the tenant
    /// and its saved template miner, and records, in the same transaction, that write-ahead log records of the tenant up to
    /// `up_to_seq` must not be replayed. Returns the removed entries (the caller deletes the
    /// files).
    fn erase_tenant(&self, tenant: &TenantId, up_to_seq: u64) -> Result<Vec<CatalogEntry>>;
    /// Erasure markers: per tenant, the sequence number through which its log records are
    /// erased.
    fn erasures(&self) -> Result<HashMap<TenantId, u64>>;
}

/// Events (alerts and anomalies), their change feed, and feedback on anomalies.
pub trait EventStore: Send + Sync {
    /// Per series, the sensitivity feedback left it at.
    fn sensitivities(&self) -> Result<Vec<(TenantId, String, f64)>>;
    /// Adds events; one whose (tenant, id) is already stored is left as it is. Returns how many
    /// were new.
    fn insert_events(&self, events: &[Event]) -> Result<usize>;
    /// Marks events resolved (an anomaly's series came back inside its band).
    fn resolve_events(&self, events: &[(TenantId, String, i64)]) -> Result<()>;
    /// A tenant's events by `filter`, newest first, each with the feedback it got.
    fn events(
        &self,
        tenant: &TenantId,
        filter: &EventFilter,
    ) -> Result<Vec<(Event, Option<String>)>>;
    /// One event of a tenant, with the feedback it got.
    fn event(&self, tenant: &TenantId, id: &str) -> Result<Option<(Event, Option<String>)>>;
    /// Records feedback on an anomaly and the series' new sensitivity, in one transaction.
    fn record_feedback(&self, record: &FeedbackRecord) -> Result<()>;
    /// The feedback given on one event, oldest first.
    fn feedback(&self, tenant: &TenantId, event_id: &str) -> Result<Vec<FeedbackRecord>>;
    /// Stores alert notifications deduplicated by (tenant, fingerprint, kind): a repeat updates the
    /// stored alert (status, count, newest time) instead of adding one. Returns each alert as
    /// stored, and whether it was new.
    fn upsert_alerts(&self, alerts: &[Event]) -> Result<Vec<(Event, bool)>>;
    /// New events and changes of events after `after_seq`, oldest first, at most `limit`.
    fn event_changes(&self, after_seq: u64, limit: usize) -> Result<Vec<EventChange>>;
}

/// Incidents, the correlator's state and rules, and root-cause rankings.
pub trait IncidentStore: Send + Sync {
    /// Stores what the correlator decided, in one transaction.
    fn commit_correlation(&self, commit: &CorrelationCommit) -> Result<()>;
    /// A tenant's saved correlator state (JSON).
    fn correlator_state(&self, tenant: &TenantId) -> Result<Option<String>>;
    /// A tenant's incidents by `filter`, newest first.
    fn incidents(&self, tenant: &TenantId, filter: &IncidentFilter) -> Result<Vec<IncidentRow>>;
    fn incident(&self, tenant: &TenantId, id: u64) -> Result<Option<IncidentRow>>;
    /// Adds or replaces a correlation rule (`kind`: `silence` or `inhibit`), as JSON.
    fn put_rule(&self, tenant: &TenantId, kind: &str, id: &str, body: &str) -> Result<()>;
    /// A tenant's rules of `kind`, oldest first, as (id, JSON).
    fn rules(&self, tenant: &TenantId, kind: &str) -> Result<Vec<(String, String)>>;
    /// Removes a rule; whether it existed.
    fn delete_rule(&self, tenant: &TenantId, kind: &str, id: &str) -> Result<bool>;
    /// Keeps a new version of an incident's root-cause ranking (JSON); returns its version.
    fn add_ranking(
        &self,
        tenant: &TenantId,
        incident: u64,
        computed_at: i64,
        body: &str,
    ) -> Result<u64>;
    /// An incident's rankings as (version, computed at, JSON), newest first, at most `limit`.
    fn rankings(
        &self,
        tenant: &TenantId,
        incident: u64,
        limit: usize,
    ) -> Result<Vec<(u64, i64, String)>>;
}

/// Runbook runs and the sealed secrets they use.
pub trait RunbookStore: Send + Sync {
    /// Stores a sealed secret under `name` (replacing one of that name).
    fn put_secret(&self, tenant: &TenantId, name: &str, sealed: &[u8]) -> Result<()>;
    /// A tenant's sealed secrets as (name, sealed, updated at in Unix seconds), by name.
    fn secrets(&self, tenant: &TenantId) -> Result<Vec<(String, Vec<u8>, i64)>>;
    /// Removes a secret; whether it existed.
    fn delete_secret(&self, tenant: &TenantId, name: &str) -> Result<bool>;
    /// Adds or updates a runbook run.
    fn put_run(&self, run: &RunRow) -> Result<()>;
    /// Runs, newest first, at most `limit` (0: all): one tenant's (or every tenant's), one
    /// runbook's (or every runbook's).
    fn runs(
        &self,
        tenant: Option<&TenantId>,
        runbook: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRow>>;
    /// One run of a tenant.
    fn run(&self, tenant: &TenantId, id: &str) -> Result<Option<RunRow>>;
}

/// The audit trail.
pub trait AuditStore: Send + Sync {
    /// Appends records to the audit trail, in one transaction.
    fn audit(&self, records: &[AuditRecord]) -> Result<()>;
    /// A tenant's audit records by `filter`, newest first.
    fn audit_records(&self, tenant: &TenantId, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;
}

/// All the metadata: the stores of each concern above, which code that needs only one takes
/// instead (a `&dyn MetadataStore` coerces to any of them). Embedded: [`SqliteMetadata`];
/// cluster mode: PostgreSQL.
pub trait MetadataStore:
    TokenStore + CatalogStore + EventStore + IncidentStore + RunbookStore + AuditStore
{
}

impl<T> MetadataStore for T where
    T: TokenStore + CatalogStore + EventStore + IncidentStore + RunbookStore + AuditStore
{
}

/// One catalog row: which tenant's table a segment file belongs to, and its statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    pub tenant: TenantId,
    pub table: Table,
    pub file: SegmentFile,
}

/// Metadata in one SQLite file (WAL journal mode, so the CLI and a running server can share
/// it).
pub struct SqliteMetadata {
    connection: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteMetadata")
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    tenant     TEXT NOT NULL REFERENCES tenants(name),
    role       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    expires_at INTEGER,
    scopes     TEXT,
    last_used_at INTEGER
);
CREATE TABLE IF NOT EXISTS segments (
    path       TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    tbl        TEXT NOT NULL,
    min_time   INTEGER NOT NULL,
    max_time   INTEGER NOT NULL,
    rows       INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS template_miners (
    tenant     TEXT PRIMARY KEY,
    state      BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS encryption (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS data_keys (
    tenant     TEXT NOT NULL,
    key_id     INTEGER NOT NULL,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key_id)
);
CREATE TABLE IF NOT EXISTS erasures (
    tenant     TEXT PRIMARY KEY,
    up_to_seq  INTEGER NOT NULL,
    erased_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS imports (
    tenant      TEXT NOT NULL,
    batch       TEXT NOT NULL,
    imported_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, batch)
);
";

/// The checkpoint row of the embedded write-ahead log.
const WAL_CHECKPOINT: &str = "wal";

fn insert_segments(tx: &rusqlite::Transaction<'_>, added: &[CatalogEntry]) -> Result<()> {
    let mut insert = tx.prepare(
        "INSERT INTO segments (path, tenant, tbl, min_time, max_time, rows, bytes, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let created_at = now();
    for entry in added {
        insert.execute(params![
            entry.file.path,
            entry.tenant.as_str(),
            entry.table.as_str(),
            entry.file.min_time,
            entry.file.max_time,
            entry.file.rows as i64,
            entry.file.bytes as i64,
            created_at
        ])?;
    }
    Ok(())
}

impl SqliteMetadata {
    pub fn open(path: &Path) -> Result<SqliteMetadata> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let connection = Connection::open(path)?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted rows are overwritten, not left in free pages.
        connection.pragma_update(None, "secure_delete", "ON")?;
        connection.execute_batch(SCHEMA)?;
        migrate_tokens(&connection)?;
        connection.execute_batch(events::SCHEMA)?;
        events::migrate(&connection)?;
        connection.execute_batch(incidents::SCHEMA)?;
        connection.execute_batch(audit::SCHEMA)?;
        audit::migrate(&connection)?;
        connection.execute_batch(secrets::SCHEMA)?;
        Ok(SqliteMetadata {
            connection: Mutex::new(connection),
        })
    }
}

/// Copies the write-ahead log into the database and empties it, so that a replaced or deleted
/// value (a sealed secret) does not linger in the log's old frames.
fn forget_old_pages(connection: &Connection) -> Result<()> {
    connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Data directories from before token expiry, scopes or last-used times get the columns.
fn migrate_tokens(connection: &Connection) -> Result<()> {
    for (column, kind) in [
        ("expires_at", "INTEGER"),
        ("scopes", "TEXT"),
        ("last_used_at", "INTEGER"),
    ] {
        let present = connection
            .prepare("SELECT 1 FROM pragma_table_info('tokens') WHERE name = ?1")?
            .exists([column])?;
        if !present {
            connection.execute_batch(&format!("ALTER TABLE tokens ADD COLUMN {column} {kind}"))?;
        }
    }
    Ok(())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    hex::encode(buf)
}

/// The stored form of a token secret.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    let tenant: String = row.get(1)?;
    let role: String = row.get(2)?;
    let bad = |column: usize, message: String| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            message.into(),
        )
    };
    Ok(TokenInfo {
        id: row.get(0)?,
        tenant: TenantId::new(&tenant).map_err(|e| bad(1, e.to_string()))?,
        role: role
            .parse()
            .map_err(|e: sextant_model::Error| bad(2, e.to_string()))?,
        created_at: row.get(3)?,
        revoked_at: row.get(4)?,
        expires_at: row.get(5)?,
        scopes: row
            .get::<_, Option<String>>(6)?
            .map(|text| Scope::parse_list(&text).map_err(|e| bad(6, e.to_string())))
            .transpose()?,
        last_used_at: row.get(7)?,
    })
}

const TOKEN_COLUMNS: &str =
    "id, tenant, role, created_at, revoked_at, expires_at, scopes, last_used_at";

/// The id inside a token of the `sxt_<id>_<secret>` form.
fn token_id_of(secret: &str) -> Option<&str> {
    let rest = secret.strip_prefix(TOKEN_PREFIX)?;
    let (id, _) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

impl TokenStore for SqliteMetadata {
    fn create_token_with(
        &self,
        tenant: &TenantId,
        role: Role,
        options: &TokenOptions,
    ) -> Result<NewToken> {
        let id = random_hex(6);
        let secret = format!("{TOKEN_PREFIX}{id}_{}", random_hex(24));
        let info = TokenInfo {
            id,
            tenant: tenant.clone(),
            role,
            created_at: now(),
            revoked_at: None,
            expires_at: options.expires_at,
            scopes: options.scopes.clone(),
            last_used_at: None,
        };
        let scopes = info.scopes.as_ref().map(|scopes| {
            scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        });
        let mut connection = self.connection.lock();
        let tx = connection.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?1, ?2)",
            params![tenant.as_str(), info.created_at],
        )?;
        tx.execute(
            "INSERT INTO tokens (id, hash, tenant, role, created_at, expires_at, scopes) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                info.id,
                hash_token(&secret),
                tenant.as_str(),
                role.as_str(),
                info.created_at,
                info.expires_at,
                scopes
            ],
        )?;
        tx.commit()?;
        Ok(NewToken { secret, info })
    }

    fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let connection = self.connection.lock();
        let mut statement = connection.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"
        ))?;
        let rows = statement.query_map([], token_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn revoke_token(&self, id: &str) -> Result<TokenInfo> {
        let connection = self.connection.lock();
        connection.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now()],
        )?;
        connection
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
                [id],
                token_from_row,
            )
            .optional()?
            .ok_or_else(|| Error::TokenNotFound { id: id.to_owned() })
    }

    fn find_token(&self, secret: &str) -> Result<Option<TokenInfo>> {
        use subtle::ConstantTimeEq;
        let hash = hash_token(secret);
        let connection = self.connection.lock();
        let found = match token_id_of(secret) {
            Some(id) => connection
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS}, hash FROM tokens WHERE id = ?1"),
                    [id],
                    |row| Ok((token_from_row(row)?, row.get::<_, String>(8)?)),
                )
                .optional()?,
            None => connection
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS}, hash FROM tokens WHERE hash = ?1"),
                    [&hash],
                    |row| Ok((token_from_row(row)?, row.get::<_, String>(8)?)),
                )
                .optional()?,
        };
        Ok(found.and_then(|(info, stored)| {
            bool::from(stored.as_bytes().ct_eq(hash.as_bytes())).then_some(info)
        }))
    }

    fn touch_token(&self, id: &str, at: i64) -> Result<()> {
        self.connection.lock().execute(
            "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }

    fn tenants(&self) -> Result<Vec<TenantId>> {
        let connection = self.connection.lock();
        let mut statement = connection.prepare("SELECT name FROM tenants ORDER BY name")?;
        let names = statement.query_map([], |row| row.get::<_, String>(0))?;
        let mut tenants = Vec::new();
        for name in names {
            tenants.push(TenantId::new(&name?).map_err(|e| Error::Decode(e.to_string()))?);
        }
        Ok(tenants)
    }
}

impl CatalogStore for SqliteMetadata {
    fn key_check(&self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .connection
            .lock()
            .query_row(
                "SELECT value FROM encryption WHERE name = 'check'",
                [],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn set_key_check(&self, check: &[u8]) -> Result<()> {
        self.connection.lock().execute(
            "INSERT INTO encryption (name, value) VALUES ('check', ?1)",
            [check],
        )?;
        Ok(())
    }

    fn data_keys(&self) -> Result<Vec<(TenantId, u32, Vec<u8>)>> {
        let connection = self.connection.lock();
        let mut statement = connection
            .prepare("SELECT tenant, key_id, wrapped FROM data_keys ORDER BY tenant, key_id")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, u32>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut keys = Vec::new();
        for row in rows {
            let (tenant, id, wrapped) = row?;
            let tenant = TenantId::new(&tenant).map_err(|e| Error::Decode(e.to_string()))?;
            keys.push((tenant, id, wrapped));
        }
        Ok(keys)
    }

    fn put_data_key(&self, tenant: &TenantId, id: u32, wrapped: &[u8]) -> Result<()> {
        self.connection.lock().execute(
            "INSERT INTO data_keys (tenant, key_id, wrapped, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![tenant.as_str(), id, wrapped, now()],
        )?;
        Ok(())
    }

    fn replace_data_keys(&self, keys: &[(TenantId, u32, Vec<u8>)], check: &[u8]) -> Result<()> {
        let mut connection = self.connection.lock();
        let tx = connection.transaction()?;
        for (tenant, id, wrapped) in keys {
            tx.execute(
                "UPDATE data_keys SET wrapped = ?3 WHERE tenant = ?1 AND key_id = ?2",
                params![tenant.as_str(), id, wrapped],
            )?;
        }
        tx.execute(
            "UPDATE encryption SET value = ?1 WHERE name = 'check'",
            [check],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn imported_batches(&self, tenant: &TenantId) -> Result<std::collections::HashSet<String>> {
        let connection = self.connection.lock();
        let mut statement = connection.prepare("SELECT batch FROM imports WHERE tenant = ?1")?;
        let batches = statement.query_map(params![tenant.as_str()], |row| row.get(0))?;
        Ok(batches.collect::<rusqlite::Result<_>>()?)
    }

    fn record_import(&self, tenant: &TenantId, batch: &str) -> Result<()> {
        self.connection.lock().execute(
            "INSERT OR IGNORE INTO imports (tenant, batch, imported_at) VALUES (?1, ?2, ?3)",
            params![tenant.as_str(), batch, now()],
        )?;
        Ok(())
    }

    fn segments(&self) -> Result<Vec<CatalogEntry>> {
        let connection = self.connection.lock();
        select_segments(&connection, None)
    }

    fn checkpoint(&self) -> Result<u64> {
        let connection = self.connection.lock();
        let seq: Option<i64> = connection
            .query_row(
                "SELECT seq FROM checkpoints WHERE name = ?1",
                [WAL_CHECKPOINT],
                |row| row.get(0),
            )
            .optional()?;
        Ok(seq.unwrap_or(0) as u64)
    }

    fn commit_flush(
        &self,
        added: &[CatalogEntry],
        checkpoint: u64,
        miners: &[(TenantId, Vec<u8>)],
        detectors: &[DetectorState<'_>],
    ) -> Result<()> {
        let mut connection = self.connection.lock();
        let tx = connection.transaction()?;
        insert_segments(&tx, added)?;
        tx.execute(
            "INSERT INTO checkpoints (name, seq) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET seq = max(seq, excluded.seq)",
            params![WAL_CHECKPOINT, checkpoint as i64],
        )?;
        {
            let mut save = tx.prepare(
                "INSERT INTO template_miners (tenant, state) VALUES (?1, ?2)
                 ON CONFLICT(tenant) DO UPDATE SET state = excluded.state",
            )?;
            for (tenant, state) in miners {
                save.execute(params![tenant.as_str(), state])?;
            }
        }
        events::save_detectors(&tx, detectors)?;
        tx.commit()?;
        Ok(())
    }

    fn detector_states(&self) -> Result<Vec<(TenantId, String, Vec<u8>)>> {
        events::detector_states(&self.connection.lock())
    }

    fn miner_states(&self) -> Result<Vec<(TenantId, Vec<u8>)>> {
        let connection = self.connection.lock();
        let mut statement =
            connection.prepare("SELECT tenant, state FROM template_miners ORDER BY tenant")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        let mut states = Vec::new();
        for row in rows {
            let (tenant, state) = row?;
            let tenant = TenantId::new(&tenant).map_err(|e| Error::Decode(e.to_string()))?;
            states.push((tenant, state));
        }
        Ok(states)
    }

    fn replace_segments(&self, removed: &[String], added: &[CatalogEntry]) -> Result<()> {
        let mut connection = self.connection.lock();
        let tx = connection.transaction()?;
        {
            let mut delete = tx.prepare("DELETE FROM segments WHERE path = ?1")?;
            for path in removed {
                delete.execute([path])?;
            }
        }
        insert_segments(&tx, added)?;
        tx.commit()?;
        Ok(())
    }

    fn erase_tenant(&self, tenant: &TenantId, up_to_seq: u64) -> Result<Vec<CatalogEntry>> {
        let mut connection = self.connection.lock();
        let tx = connection.transaction()?;
        let removed = select_segments(&tx, Some(tenant))?;
        tx.execute("DELETE FROM segments WHERE tenant = ?1", [tenant.as_str()])?;
        // What was imported is gone: importing it again stores it again.
        tx.execute("DELETE FROM imports WHERE tenant = ?1", [tenant.as_str()])?;
        // Templates hold example lines: they go with the rest of the tenant's data, and so do
        // its events and detectors.
        tx.execute(
            "DELETE FROM template_miners WHERE tenant = ?1",
            [tenant.as_str()],
        )?;
        events::erase(&tx, tenant)?;
        incidents::erase(&tx, tenant)?;
        audit::erase(&tx, tenant)?;
        secrets::erase(&tx, tenant)?;
        tx.execute(
            "INSERT INTO erasures (tenant, up_to_seq, erased_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(tenant) DO UPDATE
             SET up_to_seq = max(up_to_seq, excluded.up_to_seq), erased_at = excluded.erased_at",
            params![tenant.as_str(), up_to_seq as i64, now()],
        )?;
        tx.commit()?;
        Ok(removed)
    }

    fn erasures(&self) -> Result<HashMap<TenantId, u64>> {
        let connection = self.connection.lock();
        let mut statement = connection.prepare("SELECT tenant, up_to_seq FROM erasures")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        let mut erasures = HashMap::new();
        for row in rows {
            let (tenant, seq) = row?;
            let tenant = TenantId::new(&tenant).map_err(|e| Error::Decode(e.to_string()))?;
            erasures.insert(tenant, seq as u64);
        }
        Ok(erasures)
    }
}

impl EventStore for SqliteMetadata {
    fn sensitivities(&self) -> Result<Vec<(TenantId, String, f64)>> {
        events::sensitivities(&self.connection.lock())
    }

    fn insert_events(&self, events: &[Event]) -> Result<usize> {
        if events.is_empty() {
            return Ok(0);
        }
        events::insert(&mut self.connection.lock(), events)
    }

    fn resolve_events(&self, resolved: &[(TenantId, String, i64)]) -> Result<()> {
        if resolved.is_empty() {
            return Ok(());
        }
        events::resolve(&mut self.connection.lock(), resolved)
    }

    fn events(
        &self,
        tenant: &TenantId,
        filter: &EventFilter,
    ) -> Result<Vec<(Event, Option<String>)>> {
        events::select(&self.connection.lock(), tenant, filter)
    }

    fn event(&self, tenant: &TenantId, id: &str) -> Result<Option<(Event, Option<String>)>> {
        events::select_one(&self.connection.lock(), tenant, id)
    }

    fn record_feedback(&self, record: &FeedbackRecord) -> Result<()> {
        events::record_feedback(&mut self.connection.lock(), record)
    }

    fn feedback(&self, tenant: &TenantId, event_id: &str) -> Result<Vec<FeedbackRecord>> {
        events::feedback_of(&self.connection.lock(), tenant, event_id)
    }

    fn upsert_alerts(&self, alerts: &[Event]) -> Result<Vec<(Event, bool)>> {
        incidents::upsert_alerts(&mut self.connection.lock(), alerts)
    }

    fn event_changes(&self, after_seq: u64, limit: usize) -> Result<Vec<EventChange>> {
        incidents::changes(&self.connection.lock(), after_seq, limit)
    }
}

impl IncidentStore for SqliteMetadata {
    fn commit_correlation(&self, commit: &CorrelationCommit) -> Result<()> {
        incidents::commit(&mut self.connection.lock(), commit)
    }

    fn correlator_state(&self, tenant: &TenantId) -> Result<Option<String>> {
        incidents::correlator_state(&self.connection.lock(), tenant)
    }

    fn incidents(&self, tenant: &TenantId, filter: &IncidentFilter) -> Result<Vec<IncidentRow>> {
        incidents::incidents(&self.connection.lock(), tenant, filter)
    }

    fn incident(&self, tenant: &TenantId, id: u64) -> Result<Option<IncidentRow>> {
        incidents::incident(&self.connection.lock(), tenant, id)
    }

    fn put_rule(&self, tenant: &TenantId, kind: &str, id: &str, body: &str) -> Result<()> {
        incidents::put_rule(&self.connection.lock(), tenant, kind, id, body)
    }

    fn rules(&self, tenant: &TenantId, kind: &str) -> Result<Vec<(String, String)>> {
        incidents::rules(&self.connection.lock(), tenant, kind)
    }

    fn delete_rule(&self, tenant: &TenantId, kind: &str, id: &str) -> Result<bool> {
        incidents::delete_rule(&self.connection.lock(), tenant, kind, id)
    }

    fn add_ranking(
        &self,
        tenant: &TenantId,
        incident: u64,
        computed_at: i64,
        body: &str,
    ) -> Result<u64> {
        incidents::add_ranking(
            &mut self.connection.lock(),
            tenant,
            incident,
            computed_at,
            body,
        )
    }

    fn rankings(
        &self,
        tenant: &TenantId,
        incident: u64,
        limit: usize,
    ) -> Result<Vec<(u64, i64, String)>> {
        incidents::rankings(&self.connection.lock(), tenant, incident, limit)
    }
}

impl RunbookStore for SqliteMetadata {
    fn put_secret(&self, tenant: &TenantId, name: &str, sealed: &[u8]) -> Result<()> {
        let connection = self.connection.lock();
        secrets::put(&connection, tenant, name, sealed)?;
        forget_old_pages(&connection)
    }

    fn secrets(&self, tenant: &TenantId) -> Result<Vec<(String, Vec<u8>, i64)>> {
        secrets::all(&self.connection.lock(), tenant)
    }

    fn delete_secret(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        let connection = self.connection.lock();
        let deleted = secrets::delete(&connection, tenant, name)?;
        forget_old_pages(&connection)?;
        Ok(deleted)
    }

    fn put_run(&self, run: &RunRow) -> Result<()> {
        incidents::put_run(&self.connection.lock(), run)
    }

    fn runs(
        &self,
        tenant: Option<&TenantId>,
        runbook: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRow>> {
        incidents::runs(&self.connection.lock(), tenant, runbook, limit)
    }

    fn run(&self, tenant: &TenantId, id: &str) -> Result<Option<RunRow>> {
        incidents::run(&self.connection.lock(), tenant, id)
    }
}

impl AuditStore for SqliteMetadata {
    fn audit(&self, records: &[AuditRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        audit::append(&mut self.connection.lock(), records)
    }

    fn audit_records(&self, tenant: &TenantId, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        audit::select(&self.connection.lock(), tenant, filter)
    }
}

/// Catalog rows, all or one tenant's, oldest first.
fn select_segments(
    connection: &Connection,
    tenant: Option<&TenantId>,
) -> Result<Vec<CatalogEntry>> {
    let mut statement = connection.prepare(
        "SELECT path, tenant, tbl, min_time, max_time, rows, bytes FROM segments
         WHERE ?1 IS NULL OR tenant = ?1
         ORDER BY created_at, path",
    )?;
    let rows = statement.query_map([tenant.map(TenantId::as_str)], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, i64>(5)?,
            row.get::<_, i64>(6)?,
        ))
    })?;
    let mut entries = Vec::new();
    for row in rows {
        let (path, tenant, table, min_time, max_time, rows, bytes) = row?;
        entries.push(CatalogEntry {
            tenant: TenantId::new(&tenant).map_err(|e| Error::Decode(e.to_string()))?,
            table: table
                .parse()
                .map_err(|e: sextant_model::Error| Error::Decode(e.to_string()))?,
            file: SegmentFile {
                path,
                min_time,
                max_time,
                rows: rows as u64,
                bytes: bytes as u64,
            },
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_from_before_token_expiry_gains_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let legacy = "sxt_0123456789abcdef0123456789abcdef0123456789abcdef";
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(&format!(
                "CREATE TABLE tenants (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL);
                 CREATE TABLE tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE,
                   tenant TEXT NOT NULL REFERENCES tenants(name), role TEXT NOT NULL,
                   created_at INTEGER NOT NULL, revoked_at INTEGER);
                 INSERT INTO tenants VALUES ('acme', 1);
                 INSERT INTO tokens VALUES ('old1', '{}', 'acme', 'viewer', 1, NULL);",
                hash_token(legacy)
            ))
            .unwrap();
        }
        let meta = SqliteMetadata::open(&path).unwrap();
        let tenant = TenantId::new("acme").unwrap();
        let new = meta
            .create_token_with(
                &tenant,
                Role::Ingest,
                &TokenOptions {
                    expires_at: Some(2_000_000_000),
                    scopes: Some(vec![Scope::Read]),
                },
            )
            .unwrap();
        let found = meta.find_token(&new.secret).unwrap().unwrap();
        assert_eq!(found.expires_at, Some(2_000_000_000));
        assert_eq!(found.scopes, Some(vec![Scope::Read]));
        assert!(new.secret.starts_with(&format!("sxt_{}_", found.id)));
        // The right id with a wrong secret finds nothing.
        let wrong = format!("sxt_{}_{}", found.id, "0".repeat(48));
        assert_eq!(meta.find_token(&wrong).unwrap(), None);
        // A token from before ids were part of tokens is still found, by its hash.
        assert_eq!(meta.find_token(legacy).unwrap().unwrap().id, "old1");
        meta.touch_token(&found.id, 1_900_000_000).unwrap();
        let tokens = meta.list_tokens().unwrap();
        assert_eq!(tokens[0].id, "old1");
        assert_eq!(tokens[0].expires_at, None);
        assert_eq!(tokens[0].scopes, None);
        assert_eq!(tokens[1].last_used_at, Some(1_900_000_000));
        drop(meta);
        // Opening again finds the column and changes nothing.
        assert_eq!(
            SqliteMetadata::open(&path)
                .unwrap()
                .list_tokens()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn tokens_are_created_found_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMetadata::open(&dir.path().join("meta.db")).unwrap();
        let acme = TenantId::new("acme").unwrap();
        let token = meta.create_token(&acme, Role::Ingest).unwrap();
        assert!(token.secret.starts_with(TOKEN_PREFIX));
        let found = meta.find_token(&token.secret).unwrap().unwrap();
        assert_eq!(found, token.info);
        assert_eq!(meta.find_token("sxt_not-a-token").unwrap(), None);

        let revoked = meta.revoke_token(&token.info.id).unwrap();
        assert!(revoked.revoked_at.is_some());
        let again = meta.revoke_token(&token.info.id).unwrap();
        assert_eq!(again.revoked_at, revoked.revoked_at);
        assert!(matches!(
            meta.revoke_token("nope"),
            Err(Error::TokenNotFound { .. })
        ));
        assert_eq!(meta.tenants().unwrap(), vec![acme]);
        assert_eq!(meta.list_tokens().unwrap().len(), 1);
    }

    #[test]
    fn catalog_commits_files_with_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMetadata::open(&dir.path().join("meta.db")).unwrap();
        assert_eq!(meta.checkpoint().unwrap(), 0);
        let entry = |path: &str| CatalogEntry {
            tenant: TenantId::new("acme").unwrap(),
            table: Table::Logs,
            file: SegmentFile {
                path: path.to_owned(),
                min_time: 1,
                max_time: 2,
                rows: 3,
                bytes: 4,
            },
        };
        let acme = TenantId::new("acme").unwrap();
        meta.commit_flush(
            &[entry("a.parquet")],
            10,
            &[(acme.clone(), b"one".to_vec())],
            &[],
        )
        .unwrap();
        meta.commit_flush(&[], 7, &[(acme.clone(), b"two".to_vec())], &[])
            .unwrap();
        assert_eq!(
            meta.miner_states().unwrap(),
            [(acme.clone(), b"two".to_vec())]
        );
        assert_eq!(
            meta.checkpoint().unwrap(),
            10,
            "the checkpoint never moves back"
        );
        meta.replace_segments(&["a.parquet".into()], &[entry("b.parquet")])
            .unwrap();
        assert_eq!(meta.segments().unwrap(), vec![entry("b.parquet")]);
        // A failed transaction changes nothing: the path is already there.
        assert!(
            meta.commit_flush(&[entry("b.parquet")], 20, &[], &[])
                .is_err()
        );
        assert_eq!(meta.checkpoint().unwrap(), 10);
    }

    #[test]
    fn erasure_removes_a_tenants_files_and_records_its_marker_together() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMetadata::open(&dir.path().join("meta.db")).unwrap();
        let entry = |tenant: &str, path: &str| CatalogEntry {
            tenant: TenantId::new(tenant).unwrap(),
            table: Table::Logs,
            file: SegmentFile {
                path: path.to_owned(),
                min_time: 1,
                max_time: 2,
                rows: 3,
                bytes: 4,
            },
        };
        let acme = TenantId::new("acme").unwrap();
        let globex = TenantId::new("globex").unwrap();
        let miners = [(acme.clone(), vec![1]), (globex.clone(), vec![2])];
        meta.commit_flush(&[entry("acme", "a"), entry("globex", "g")], 5, &miners, &[])
            .unwrap();
        assert_eq!(
            meta.erase_tenant(&acme, 9).unwrap(),
            vec![entry("acme", "a")]
        );
        assert_eq!(meta.segments().unwrap(), vec![entry("globex", "g")]);
        assert_eq!(meta.miner_states().unwrap(), [(globex, vec![2])]);
        meta.erase_tenant(&acme, 4).unwrap();
        assert_eq!(
            meta.erasures().unwrap(),
            HashMap::from([(acme, 9)]),
            "the marker never moves back"
        );
    }

    #[test]
    fn only_the_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let meta = SqliteMetadata::open(&path).unwrap();
        let token = meta
            .create_token(&TenantId::new("acme").unwrap(), Role::Admin)
            .unwrap();
        drop(meta);
        let raw = std::fs::read(&path).unwrap();
        let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
        let needle = token.secret.as_bytes();
        for bytes in [&raw, &wal] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
    }
}
