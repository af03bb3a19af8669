//! The configuration file (`--config FILE`, TOML) and how flags and environment override it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sextant_analytics::anomaly::Seasonality;
use sextant_analytics::patterns::MinerConfig;
use sextant_incidents::action::{ActionSpec, Actions};
use sextant_incidents::correlator::CorrelatorConfig;
use sextant_ingest::IngestConfig;
use sextant_model::TenantId;
use sextant_query::QueryLimits;
use sextant_server::capacity::CapacityRule;
use sextant_server::egress::{EgressPolicy, EgressSettings};
use sextant_server::listen::ConnectionLimits;
use sextant_server::syslog::SyslogListener;
use sextant_server::tls::TlsSettings;
use sextant_store::wal::WalConfig;
use sextant_store::{DetectorSettings, StoreConfig};

/// Default address: loopback only, port 7300.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7300";

/// The whole configuration. Every field has a default, so an empty file is valid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SextantConfig {
    /// Where Sextant keeps its data (write-ahead log, metadata). Default `./sextant-data`.
    pub data_dir: PathBuf,
    /// Address for HTTP and gRPC. Default `127.0.0.1:7300`.
    pub listen: String,
    /// Seconds to let in-flight requests finish on shutdown before closing anyway. Default 10.
    pub shutdown_grace_seconds: u64,
    pub ingest: IngestConfig,
    pub wal: WalSettings,
    pub storage: StorageSettings,
    pub query: QuerySettings,
    /// The `[patterns]` section: the log template miner of every tenant.
    pub patterns: MinerConfig,
    /// The `[anomaly]` section: live anomaly detection and capacity warnings.
    pub anomaly: AnomalySettings,
    /// The `[incidents]` section: how alerts and anomalies are grouped into incidents.
    pub incidents: CorrelatorConfig,
    /// The `[topology]` section: the service series derived from spans.
    pub topology: TopologySettings,
    /// The `[rca]` section: root-cause rankings of open incidents.
    pub rca: RcaSettings,
    /// `[[syslog]]` listeners, each with its tenant. None by default.
    pub syslog: Vec<SyslogListener>,
    /// The `[tls]` section: certificate, key and client CA of every TCP listener. Without it
    /// Sextant listens in plain text, on loopback only unless `insecure_listen` is set.
    pub tls: Option<TlsSettings>,
    /// Allow listening without TLS on a non-loopback address (`--insecure-listen`). Default
    /// false.
    pub insecure_listen: bool,
    /// The `[connections]` section: timeouts and caps of HTTP/gRPC connections.
    pub connections: ConnectionSettings,
    /// The `[auth]` section.
    pub auth: AuthSettings,
    /// The `[encryption]` section: encryption at rest.
    pub encryption: EncryptionSettings,
    /// `[actions.NAME]`: the programs runbooks may run, with their parameters, user, time
    /// limit and tenants (`sextant_incidents::action`). None by default: no runbook can run a
    /// program until the operator defines one here.
    pub actions: BTreeMap<String, ActionSpec>,
    /// The `[egress]` section: the non-public hosts and networks webhook and chat steps may
    /// reach. Default none (public addresses only).
    pub egress: EgressSettings,
}

/// The `[encryption]` section. Encryption at rest is on when a master key is given, here or in
/// the `SEXTANT_MASTER_KEY` environment variable (64 hex digits; `sextant keys generate`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionSettings {
    /// File holding the master key (64 hex digits). Keep it outside the data directory.
    pub master_key_file: Option<PathBuf>,
}

/// The `[auth]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// After this many failed authentications in a minute from one address, or naming one
    /// token id, its further requests that do not authenticate are refused for the rest of the
    /// minute (a valid token always passes; 0: never). Default 30.
    pub max_failed_per_minute: u32,
    /// Proxies (addresses or `ADDRESS/PREFIX` networks) whose `X-Forwarded-For` names the
    /// client for throttling. Default none: the peer address is the client.
    pub trusted_proxies: Vec<String>,
    /// `/metrics` shows series labelled with a tenant only to that tenant's tokens; true shows
    /// every tenant's to anyone who reaches the port. Default false.
    pub public_tenant_metrics: bool,
}

impl Default for AuthSettings {
    fn default() -> AuthSettings {
        AuthSettings {
            max_failed_per_minute: sextant_server::DEFAULT_MAX_FAILED_AUTHENTICATIONS,
            trusted_proxies: Vec::new(),
            public_tenant_metrics: false,
        }
    }
}

/// The `[rca]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RcaSettings {
    /// Open incidents whose members changed are ranked again this often (at most every 10 s
    /// each). Seconds; default 5.
    pub check_seconds: u64,
}

impl Default for RcaSettings {
    fn default() -> RcaSettings {
        RcaSettings { check_seconds: 5 }
    }
}

/// The `[topology]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopologySettings {
    /// Write each service's and edge's request rate, error rate and duration quantiles as
    /// metric series (watched by the detectors). Default true.
    pub derived_series: bool,
    /// One point per series per this many seconds. Default 60.
    pub derived_step_seconds: u64,
    /// A step is derived this many seconds after it ends, so late spans count. Default 30.
    pub derived_lag_seconds: u64,
}

impl Default for TopologySettings {
    fn default() -> TopologySettings {
        TopologySettings {
            derived_series: true,
            derived_step_seconds: 60,
            derived_lag_seconds: 30,
        }
    }
}

/// The `[anomaly]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalySettings {
    /// Watch every metric series and log pattern rate. Default true.
    pub enabled: bool,
    /// Score (0 to 1) at or above which a point is an anomaly, before a series' feedback moves
    /// it. Default: the detector's (the NAB standard-profile threshold).
    pub threshold: f64,
    /// Seasonal profiles: `auto` (a daily profile where it explains a series clearly better),
    /// `none`, `daily`, or `weekly` (daily plus a weekday offset). Default `auto`.
    pub seasonality: Seasonality,
    /// Series watched per tenant; new series past it are not watched. Default 100,000.
    pub max_series_per_tenant: usize,
    /// Log pattern rates are counted per this many seconds of log time. Default 60.
    pub pattern_step_seconds: i64,
    /// An anomaly episode closes after this many points in a row inside the band, and inside
    /// the band it had when it opened (a fault that goes on keeps it open). Default 5.
    pub quiet_points: u32,
    /// An episode whose series the detector finds normal again, though still outside the band
    /// it opened with (a lasting new level), closes after this many points. Default 60.
    pub settle_points: u32,
    /// A log pattern's series with no line for this many seconds of log time is retired (its
    /// model and saved state dropped; it starts afresh if the pattern comes back). Default
    /// 604,800 (7 days).
    pub pattern_idle_seconds: i64,
    /// A metric series with no point while its tenant's metric time moved on this many
    /// seconds is retired the same way (a replaced pod's series, a label value gone). Default
    /// 86,400 (1 day).
    pub series_idle_seconds: i64,
    /// Series models are saved with a flush at most this often, in seconds (all of them on a
    /// clean stop); after a crash a model misses at most this long of learning. Default 60.
    pub state_save_seconds: u64,
    /// Capacity rules are checked this often, in seconds. Default 300.
    pub capacity_check_seconds: u64,
    /// `[[anomaly.capacity]]` rules: a metric with a limit, warned about when its forecast
    /// reaches the limit within the rule's horizon. Default none.
    pub capacity: Vec<CapacityRule>,
}

impl Default for AnomalySettings {
    fn default() -> AnomalySettings {
        let live = DetectorSettings::default();
        AnomalySettings {
            enabled: live.enabled,
            threshold: live.detector.threshold,
            seasonality: live.detector.seasonality,
            max_series_per_tenant: live.max_series_per_tenant,
            pattern_step_seconds: live.pattern_step_seconds,
            quiet_points: live.quiet_points,
            settle_points: live.settle_points,
            pattern_idle_seconds: live.pattern_idle_seconds,
            series_idle_seconds: live.series_idle_seconds,
            state_save_seconds: live.save_interval.as_secs(),
            capacity_check_seconds: 300,
            capacity: Vec::new(),
        }
    }
}

impl AnomalySettings {
    /// The store's detector settings.
    pub fn detector_settings(&self) -> DetectorSettings {
        let mut settings = DetectorSettings {
            enabled: self.enabled,
            max_series_per_tenant: self.max_series_per_tenant,
            pattern_step_seconds: self.pattern_step_seconds,
            quiet_points: self.quiet_points,
            settle_points: self.settle_points,
            pattern_idle_seconds: self.pattern_idle_seconds,
            series_idle_seconds: self.series_idle_seconds,
            save_interval: std::time::Duration::from_secs(self.state_save_seconds),
            ..DetectorSettings::default()
        };
        settings.detector.threshold = self.threshold;
        settings.detector.seasonality = self.seasonality;
        settings
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.detector_settings()
            .detector
            .validate()
            .map_err(|e| anyhow::anyhow!("`anomaly`: {e}"))?;
        if self.pattern_step_seconds < 1 || self.quiet_points == 0 || self.settle_points == 0 {
            bail!(
                "`anomaly.pattern_step_seconds`, `anomaly.quiet_points` and \
                 `anomaly.settle_points` must be at least 1"
            );
        }
        if self.pattern_idle_seconds < self.pattern_step_seconds {
            bail!("`anomaly.pattern_idle_seconds` must be at least `anomaly.pattern_step_seconds`");
        }
        if self.series_idle_seconds < 60 {
            bail!("`anomaly.series_idle_seconds` must be at least 60");
        }
        if self.capacity_check_seconds == 0 {
            bail!("`anomaly.capacity_check_seconds` must be greater than 0");
        }
        for rule in &self.capacity {
            rule.validate()
                .map_err(|e| anyhow::anyhow!("`anomaly.capacity`: {e}"))?;
        }
        Ok(())
    }
}

impl Default for SextantConfig {
    fn default() -> SextantConfig {
        SextantConfig {
            data_dir: PathBuf::from("sextant-data"),
            listen: DEFAULT_LISTEN.to_owned(),
            shutdown_grace_seconds: 10,
            ingest: IngestConfig::default(),
            wal: WalSettings::default(),
            storage: StorageSettings::default(),
            query: QuerySettings::default(),
            patterns: MinerConfig::default(),
            anomaly: AnomalySettings::default(),
            incidents: CorrelatorConfig::default(),
            topology: TopologySettings::default(),
            rca: RcaSettings::default(),
            syslog: Vec::new(),
            tls: None,
            insecure_listen: false,
            connections: ConnectionSettings::default(),
            auth: AuthSettings::default(),
            encryption: EncryptionSettings::default(),
            actions: BTreeMap::new(),
            egress: EgressSettings::default(),
        }
    }
}

/// The `[wal]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalSettings {
    /// Size at which a segment file is closed and a new one started, in bytes. Default 64 MiB.
    pub segment_bytes: u64,
    /// Batches that may wait for the log writer before ingest answers 429. Default 4096.
    pub queue_capacity: usize,
    /// Most payload bytes written by one group commit. Default 16 MiB.
    pub max_group_bytes: usize,
    /// Fsync each group commit before acknowledging it. Default true. Turning it off keeps
    /// data safe from a process crash but not from a power loss.
    pub fsync: bool,
}

impl Default for WalSettings {
    fn default() -> WalSettings {
        let wal = WalConfig::new("");
        WalSettings {
            segment_bytes: wal.segment_bytes,
            queue_capacity: wal.queue_capacity,
            max_group_bytes: wal.max_group_bytes,
            fsync: wal.fsync,
        }
    }
}

/// The `[storage]` section: when buffered rows become Parquet segments, how segments are
/// compacted, and how long they are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Flush buffered rows to segment files once they take this many bytes. Default 64 MiB.
    pub flush_bytes: usize,
    /// Flush at least this often, in seconds. Default 60.
    pub flush_interval_seconds: u64,
    /// Ingest answers 429 while buffered rows take more than this many bytes. Default 1 GiB.
    pub max_buffered_bytes: usize,
    /// Compact an hour partition once it has at least this many small segment files (at least
    /// 2). Default 8.
    pub compaction_min_files: usize,
    /// A segment file under this many bytes is small; compaction merges small files into one
    /// of about this size. Default 128 MiB.
    pub compaction_target_bytes: u64,
    /// Look for partitions to compact this often, in seconds (checked after each flush).
    /// Default 60.
    pub compaction_interval_seconds: u64,
    /// Keep telemetry this many days (by row time); older hour partitions are dropped.
    /// Default 30.
    pub retention_days: u32,
    /// Per-tenant retention in days, replacing `retention_days` (`tenant-name = days`).
    /// Default none.
    pub retention_days_per_tenant: BTreeMap<String, u32>,
    /// Look for expired partitions this often, in seconds (checked after each flush; the first
    /// check is one interval after start). Default 3600.
    pub retention_interval_seconds: u64,
    /// Segment files dropped by compaction, retention or erasure are deleted this many seconds
    /// later, so queries still reading them can finish. Default 300.
    pub delete_grace_seconds: u64,
    /// Ingest answers 507 (disk full) while the data directory's file system has fewer free
    /// bytes than this: a reserve kept for flushing, compaction and the metadata, so what was
    /// accepted is never lost to a full disk. Ingest resumes by itself once space returns.
    /// Default 256 MiB.
    pub min_free_bytes: u64,
}

impl Default for StorageSettings {
    fn default() -> StorageSettings {
        let store = StoreConfig::new("");
        StorageSettings {
            flush_bytes: store.flush_bytes,
            flush_interval_seconds: store.flush_interval.as_secs(),
            max_buffered_bytes: store.max_buffered_bytes,
            compaction_min_files: store.compaction_min_files,
            compaction_target_bytes: store.compaction_target_bytes,
            compaction_interval_seconds: store.compaction_interval.as_secs(),
            retention_days: (store.retention.as_secs() / DAY_SECONDS) as u32,
            retention_days_per_tenant: BTreeMap::new(),
            retention_interval_seconds: store.retention_interval.as_secs(),
            delete_grace_seconds: store.delete_grace.as_secs(),
            min_free_bytes: store.min_free_bytes,
        }
    }
}

/// Seconds in a day, the unit of retention settings.
pub(crate) const DAY_SECONDS: u64 = 24 * 3600;

fn days(days: u32) -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(days) * DAY_SECONDS)
}

impl StorageSettings {
    fn validate(&self) -> anyhow::Result<()> {
        if self.flush_interval_seconds == 0 {
            bail!("`storage.flush_interval_seconds` must be greater than 0");
        }
        if self.max_buffered_bytes < self.flush_bytes {
            bail!("`storage.max_buffered_bytes` must be at least `storage.flush_bytes`");
        }
        if self.compaction_min_files < 2 {
            bail!("`storage.compaction_min_files` must be at least 2");
        }
        if self.compaction_target_bytes == 0 {
            bail!("`storage.compaction_target_bytes` must be greater than 0");
        }
        if self.compaction_interval_seconds == 0 || self.retention_interval_seconds == 0 {
            bail!(
                "`storage.compaction_interval_seconds` and `storage.retention_interval_seconds` \
                 must be greater than 0"
            );
        }
        if self.retention_days == 0 {
            bail!("`storage.retention_days` must be at least 1");
        }
        for (tenant, days) in &self.retention_days_per_tenant {
            TenantId::new(tenant).map_err(|e| {
                anyhow::anyhow!(
                    "`storage.retention_days_per_tenant`: invalid tenant `{tenant}`: {e}"
                )
            })?;
            if *days == 0 {
                bail!("`storage.retention_days_per_tenant.{tenant}` must be at least 1");
            }
        }
        Ok(())
    }
}

/// The `[connections]` section: what one HTTP/gRPC connection may hold, and for how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionSettings {
    /// A request's headers, and an idle keep-alive connection's next request, must arrive
    /// within this many seconds. Default 20.
    pub header_timeout_seconds: u64,
    /// A connection on which no byte moves either way for this many seconds is closed; more
    /// than `query.timeout_seconds`. Default 75.
    pub idle_timeout_seconds: u64,
    /// Open connections from one address. Default 256.
    pub max_per_address: usize,
    /// Open connections in all (never more than the open-file limit allows). Default 8192.
    pub max_total: usize,
    /// A request body must arrive at this many bytes per second on average after its first 10
    /// seconds, or the request fails. Default 16384.
    pub min_body_bytes_per_second: u64,
}

impl Default for ConnectionSettings {
    fn default() -> ConnectionSettings {
        let limits = ConnectionLimits::default();
        ConnectionSettings {
            header_timeout_seconds: limits.header_timeout.as_secs(),
            idle_timeout_seconds: limits.idle_timeout.as_secs(),
            max_per_address: limits.max_per_address,
            max_total: limits.max_total,
            min_body_bytes_per_second: limits.min_body_bytes_per_second,
        }
    }
}

impl ConnectionSettings {
    pub fn to_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: std::time::Duration::from_secs(self.header_timeout_seconds),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_seconds),
            max_per_address: self.max_per_address,
            max_total: self.max_total,
            min_body_bytes_per_second: self.min_body_bytes_per_second,
            ..ConnectionLimits::default()
        }
    }

    fn validate(&self, query_timeout_seconds: u64) -> anyhow::Result<()> {
        if self.header_timeout_seconds == 0
            || self.max_per_address == 0
            || self.max_total == 0
            || self.min_body_bytes_per_second == 0
        {
            bail!(
                "`connections.header_timeout_seconds`, `max_per_address`, `max_total` and \
                 `min_body_bytes_per_second` must be at least 1"
            );
        }
        if self.idle_timeout_seconds <= query_timeout_seconds {
            bail!(
                "`connections.idle_timeout_seconds` ({}) must be more than \
                 `query.timeout_seconds` ({query_timeout_seconds}), or connections waiting \
                 for a query's answer are closed",
                self.idle_timeout_seconds
            );
        }
        Ok(())
    }
}

/// The `[query]` section: limits every SQL query runs under.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuerySettings {
    /// A query running longer is stopped (HTTP 504). Seconds; default 30.
    pub timeout_seconds: u64,
    /// Rows returned at most; the answer says when it was cut. Default 100,000.
    pub max_rows: usize,
    /// A query whose segment files (after time pruning) add up to more bytes is refused before
    /// it starts. Default 10 GiB.
    pub max_scan_bytes: u64,
    /// Memory one query's sorts, joins and aggregations may hold; past it the query fails.
    /// Default 512 MiB.
    pub max_memory_bytes: usize,
    /// Memory all running queries may hold together. Default 1 GiB.
    pub max_total_memory_bytes: usize,
    /// Queries of one tenant that run at once; more wait their turn. Default 2.
    pub max_concurrent_per_tenant: usize,
}

impl Default for QuerySettings {
    fn default() -> QuerySettings {
        let limits = QueryLimits::default();
        QuerySettings {
            timeout_seconds: limits.timeout.as_secs(),
            max_rows: limits.max_rows,
            max_scan_bytes: limits.max_scan_bytes,
            max_memory_bytes: limits.max_memory_bytes,
            max_total_memory_bytes: limits.max_total_memory_bytes,
            max_concurrent_per_tenant: limits.max_concurrent_per_tenant,
        }
    }
}

impl QuerySettings {
    pub fn to_limits(&self) -> QueryLimits {
        QueryLimits {
            timeout: std::time::Duration::from_secs(self.timeout_seconds),
            max_rows: self.max_rows,
            max_scan_bytes: self.max_scan_bytes,
            max_memory_bytes: self.max_memory_bytes,
            max_total_memory_bytes: self.max_total_memory_bytes,
            max_concurrent_per_tenant: self.max_concurrent_per_tenant,
        }
    }
}

impl WalSettings {
    pub fn to_wal_config(&self, dir: PathBuf) -> WalConfig {
        WalConfig {
            dir,
            segment_bytes: self.segment_bytes,
            queue_capacity: self.queue_capacity,
            max_group_bytes: self.max_group_bytes,
            fsync: self.fsync,
        }
    }
}

impl SextantConfig {
    /// Reads a TOML file; unknown keys are errors.
    pub fn from_file(path: &Path) -> anyhow::Result<SextantConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file `{}`", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file `{}`", path.display()))
    }

    /// The embedded store's settings.
    pub fn store_config(&self) -> StoreConfig {
        let mut store = StoreConfig::new(&self.data_dir);
        store.wal = self.wal.to_wal_config(store.wal.dir.clone());
        store.flush_bytes = self.storage.flush_bytes;
        store.flush_interval = std::time::Duration::from_secs(self.storage.flush_interval_seconds);
        store.max_buffered_bytes = self.storage.max_buffered_bytes;
        store.compaction_min_files = self.storage.compaction_min_files;
        store.compaction_target_bytes = self.storage.compaction_target_bytes;
        store.compaction_interval =
            std::time::Duration::from_secs(self.storage.compaction_interval_seconds);
        store.retention = days(self.storage.retention_days);
        // Names are checked by `validate`; an invalid one here is skipped.
        store.tenant_retention = self
            .storage
            .retention_days_per_tenant
            .iter()
            .filter_map(|(name, d)| Some((TenantId::new(name).ok()?, days(*d))))
            .collect();
        store.retention_interval =
            std::time::Duration::from_secs(self.storage.retention_interval_seconds);
        store.delete_grace = std::time::Duration::from_secs(self.storage.delete_grace_seconds);
        store.min_free_bytes = self.storage.min_free_bytes;
        store.patterns = self.patterns.clone();
        store.detectors = self.anomaly.detector_settings();
        store
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        if self.data_dir.as_os_str().is_empty() {
            bail!("`data_dir` must not be empty");
        }
        if self.wal.queue_capacity == 0 {
            bail!("`wal.queue_capacity` must be greater than 0");
        }
        if self.wal.segment_bytes < 1024 * 1024 {
            bail!("`wal.segment_bytes` must be at least 1 MiB");
        }
        self.storage.validate()?;
        self.anomaly.validate()?;
        self.connections.validate(self.query.timeout_seconds)?;
        for listener in &self.syslog {
            listener.validate().map_err(anyhow::Error::msg)?;
        }
        if self.rca.check_seconds == 0 {
            bail!("`rca.check_seconds` must be at least 1");
        }
        if self.topology.derived_step_seconds == 0 {
            bail!("`topology.derived_step_seconds` must be at least 1");
        }
        self.incidents
            .validate()
            .map_err(|e| anyhow::anyhow!("`incidents`: {e}"))?;
        self.patterns
            .validate()
            .map_err(|e| anyhow::anyhow!("`patterns`: {e}"))?;
        if self.storage.delete_grace_seconds < self.query.timeout_seconds {
            // A query may still read a dropped file until it times out.
            bail!("`storage.delete_grace_seconds` must be at least `query.timeout_seconds`");
        }
        self.query
            .to_limits()
            .validate()
            .map_err(|e| anyhow::anyhow!("`query`: {e}"))?;
        self.runbook_actions()?;
        self.egress_policy()?;
        self.ingest.validate().map_err(anyhow::Error::msg)
    }

    /// The checked `[actions]`.
    pub fn runbook_actions(&self) -> anyhow::Result<Actions> {
        Actions::new(&self.actions).map_err(|e| anyhow::anyhow!("`actions`: {e}"))
    }

    /// The checked `[egress]` rules.
    pub fn egress_policy(&self) -> anyhow::Result<EgressPolicy> {
        EgressPolicy::new(&self.egress).map_err(anyhow::Error::msg)
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen.parse().with_context(|| {
            format!(
                "invalid listen address `{}` (expected IP:PORT)",
                self.listen
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/sextant.example.toml");
        let config = SextantConfig::from_file(&path).unwrap();
        config.validate().unwrap();
        // The example documents the defaults; only the per-tenant overrides, the capacity rule,
        // the egress entries and the action differ.
        let mut expected = SextantConfig::default();
        expected.ingest.limits.tenants.insert(
            "noisy-team".into(),
            sextant_ingest::RateLimit {
                records_per_second: 50_000,
                bytes_per_second: 50 * 1024 * 1024,
            },
        );
        expected
            .storage
            .retention_days_per_tenant
            .insert("short-lived".into(), 7);
        expected.anomaly.capacity.push(CapacityRule {
            name: "system.filesystem.usage".into(),
            r#match: "state=used".into(),
            limit: 500e9,
            horizon: "1d".into(),
            step: "5m".into(),
            history: "3d".into(),
            agg: "avg".into(),
        });
        expected.egress.allow = vec!["hooks.internal.example".into(), "10.20.0.0/16".into()];
        expected
            .egress
            .tenants
            .insert("shop".into(), vec!["192.168.7.12:8443".into()]);
        expected.actions.insert(
            "restart-service".into(),
            ActionSpec {
                description: "restart a service of the shop".into(),
                program: "/usr/bin/systemctl".into(),
                args: vec!["restart".into(), "{{service}}.service".into()],
                params: [(
                    "service".to_owned(),
                    sextant_incidents::action::ParamSpec {
                        pattern: Some("[a-z0-9-]+".into()),
                        ..Default::default()
                    },
                )]
                .into(),
                timeout_seconds: 30,
                env: [("PATH".to_owned(), "/usr/bin:/bin".to_owned())].into(),
                user: Some("sextant-actions".into()),
                run_as_server_user: false,
                working_dir: "/".into(),
                tenants: vec!["shop".into()],
            },
        );
        assert_eq!(config, expected);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<SextantConfig>("listen = \"127.0.0.1:1\"\nlisten_port = 3\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `listen_port`"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let mut config = SextantConfig {
            listen: "localhost".into(),
            ..SextantConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("`localhost`")
        );
        config.listen = DEFAULT_LISTEN.into();
        config.ingest.max_in_flight_bytes = 1;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("max_in_flight_bytes")
        );
        config.ingest = IngestConfig::default();
        config
            .storage
            .retention_days_per_tenant
            .insert("Not A Tenant!".into(), 7);
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("retention_days_per_tenant")
        );
    }

    #[test]
    fn storage_settings_reach_the_store() {
        let mut config = SextantConfig::default();
        config.storage.retention_days = 2;
        config
            .storage
            .retention_days_per_tenant
            .insert("acme".into(), 1);
        let store = config.store_config();
        let acme = TenantId::new("acme").unwrap();
        let other = TenantId::new("globex").unwrap();
        assert_eq!(store.retention_of(&acme).as_secs(), DAY_SECONDS);
        assert_eq!(store.retention_of(&other).as_secs(), 2 * DAY_SECONDS);
        assert_eq!(store.compaction_min_files, 8);
        assert_eq!(store.delete_grace.as_secs(), 300);

        config.patterns.max_templates = 50;
        assert_eq!(config.store_config().patterns.max_templates, 50);
        config.patterns.max_templates = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("`patterns`") && err.contains("max_templates"),
            "{err}"
        );
    }

    #[test]
    fn anomaly_settings_reach_the_store_and_bad_ones_are_named() {
        let config: SextantConfig = toml::from_str(
            "[anomaly]\nthreshold = 0.5\nquiet_points = 3\nmax_series_per_tenant = 10\n\
             seasonality = \"weekly\"\n",
        )
        .unwrap();
        config.validate().unwrap();
        let store = config.store_config();
        assert_eq!(store.detectors.detector.threshold, 0.5);
        assert_eq!(store.detectors.quiet_points, 3);
        assert_eq!(store.detectors.max_series_per_tenant, 10);
        assert_eq!(store.detectors.detector.seasonality, Seasonality::Weekly);

        for (toml, named) in [
            ("[anomaly]\nthreshold = 1.5\n", "threshold"),
            ("[anomaly]\nquiet_points = 0\n", "quiet_points"),
            (
                "[anomaly]\nseries_idle_seconds = 5\n",
                "series_idle_seconds",
            ),
            (
                "[anomaly]\ncapacity_check_seconds = 0\n",
                "capacity_check_seconds",
            ),
            (
                "[[anomaly.capacity]]\nname = \"disk\"\nlimit = 1\nhorizon = \"soon\"\n",
                "horizon",
            ),
            (
                "[[anomaly.capacity]]\nname = \"disk\"\nlimit = 1\nagg = \"p99\"\n",
                "agg",
            ),
            (
                "[actions.x]\nprogram = \"bin/sh\"\n",
                "`actions`: action `x`: `program` must be an absolute path",
            ),
            ("[egress]\nallow = [\"10.0.0.0/40\"]\n", "`egress.allow`"),
        ] {
            let config: SextantConfig = toml::from_str(toml).unwrap();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(named), "{toml}: {err}");
        }
        assert!(toml::from_str::<SextantConfig>("[anomaly]\nsensitivity = 2\n").is_err());
    }
}
