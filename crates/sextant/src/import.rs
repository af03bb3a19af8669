//! `sextant import`: recorded OpenTelemetry telemetry into a data directory, through the same
//! pipeline as live ingest (the tenant's limits, the write-ahead log, template mining, the
//! detectors), each record with its own timestamp.
//!
//! A file is either JSON lines, one OTLP export request per line in OTLP/JSON (as the
//! OpenTelemetry Collector's file exporter writes them; each line says its signal by its
//! `resourceLogs`, `resourceMetrics` or `resourceSpans`), or protobuf: export requests of one
//! signal (`--signal`), each after its length in 4 bytes, big-endian (the file exporter's
//! `proto` format). Blank lines are skipped.
//!
//! Every request is stored at most once per tenant: its id (SHA-256 of its signal and bytes) is
//! recorded once its write is durable, and a request already recorded is skipped, so importing
//! a file twice stores nothing twice. A request that cannot be imported (malformed, too large,
//! or holding records older than the tenant's retention) is reported by file and line and the
//! rest are imported; the command then ends with an error. A request with a record dated in the
//! future (more than a minute past the wall clock) is refused the same way: its clock is damaged.
//!
//! The import runs what a server runs on the telemetry, in event time: after each request the
//! correlator takes the anomalies the detectors found, on the replay clock (the newest record
//! time imported, never the wall clock), and the incidents whose evidence changed are ranked
//! (at most every [`rca_live::MIN_INTERVAL`] of event time). Requests are taken in file order, so
//! a faithful replay gives them in time order, as a collector writes them. Runbooks do not run
//! and derived span series are not written (a server does both). `--retention-days` sets the tenant's
//! retention for the import (keep it in the server's `storage.retention_days_per_tenant`, or
//! the server drops those days at its next retention pass). The data directory is locked while
//! the import runs: it refuses to run beside a server on the same directory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use sextant_ingest::otlp::{self, Encoding};
use sextant_ingest::{IngestBus, IngestPipeline};
use sextant_model::{Signal, TenantId};
use sextant_server::correlation::{Clock, Correlation};
use sextant_server::{AppState, rca_live};
use sextant_store::TelemetryStore;
use sextant_store::meta::MetadataStore;
use sha2::{Digest, Sha256};

use crate::DataDirArg;
use crate::config::SextantConfig;

/// Most problems listed (all are counted).
const MAX_LISTED: usize = 100;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// TOML configuration file, as the server's (limits, storage, patterns, anomaly).
    #[arg(long, env = "SEXTANT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: sextant-data].
    #[arg(long, env = "SEXTANT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The tenant the telemetry is stored for.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The signal of protobuf files: logs, metrics or traces (JSON lines name their own).
    #[arg(long)]
    signal: Option<String>,
    /// The tenant's retention in days for this import; without it, records older than the
    /// configured retention are refused.
    #[arg(long)]
    retention_days: Option<u32>,
    /// Files of OTLP export requests: JSON lines, or length-prefixed protobuf.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// One export request of a file: where it is, its signal and its bytes.
#[derive(Debug)]
struct Unit {
    /// `line N` or `request N` (1-based).
    at: String,
    signal: Result<Signal, String>,
    bytes: Bytes,
}

/// The export requests of a file's contents.
fn units(
    contents: &Bytes,
    protobuf_signal: Option<Signal>,
) -> Result<(Encoding, Vec<Unit>), String> {
    let first = contents.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_none_or(|b| *b == b'{') {
        let mut units = Vec::new();
        let mut start = 0;
        for (n, line) in contents.split(|b| *b == b'\n').enumerate() {
            let end = start + line.len();
            if line.iter().any(|b| !b.is_ascii_whitespace()) {
                units.push(Unit {
                    at: format!("line {}", n + 1),
                    signal: json_signal(line),
                    bytes: contents.slice(start..end),
                });
            }
            start = end + 1;
        }
        return Ok((Encoding::json(), units));
    }
    let signal = protobuf_signal
        .ok_or("a protobuf file needs `--signal logs|metrics|traces` (JSON lines name theirs)")?;
    let mut units = Vec::new();
    let mut at = 0usize;
    while at < contents.len() {
        let n = units.len() + 1;
        let Some(header) = contents.get(at..at + 4) else {
            return Err(format!("request {n}: the file ends inside its length"));
        };
        let length = u32::from_be_bytes(header.try_into().expect("four bytes")) as usize;
        let body = at + 4;
        if body + length > contents.len() {
            return Err(format!(
                "request {n}: its length says {length} bytes, the file holds {}",
                contents.len() - body
            ));
        }
        units.push(Unit {
            at: format!("request {n}"),
            signal: Ok(signal),
            bytes: contents.slice(body..body + length),
        });
        at = body + length;
    }
    Ok((Encoding::protobuf(), units))
}

/// The signal an OTLP/JSON line holds, by its top-level key.
fn json_signal(line: &[u8]) -> Result<Signal, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Keys {
        resource_logs: Option<serde::de::IgnoredAny>,
        resource_metrics: Option<serde::de::IgnoredAny>,
        resource_spans: Option<serde::de::IgnoredAny>,
    }
    let keys: Keys = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    match (
        keys.resource_logs,
        keys.resource_metrics,
        keys.resource_spans,
    ) {
        (Some(_), None, None) => Ok(Signal::Logs),
        (None, Some(_), None) => Ok(Signal::Metrics),
        (None, None, Some(_)) => Ok(Signal::Traces),
        (None, None, None) => Err("no `resourceLogs`, `resourceMetrics` or `resourceSpans`".into()),
        _ => Err("more than one of `resourceLogs`, `resourceMetrics`, `resourceSpans`".into()),
    }
}

fn batch_id(signal: Signal, bytes: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(signal.as_str().as_bytes())
        .chain_update([0])
        .chain_update(bytes)
        .finalize();
    hex::encode(&digest[..16])
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: usize,
    pub records: usize,
    pub already: usize,
    pub problems: Vec<String>,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => SextantConfig::from_file(path)?,
        None => SextantConfig::default(),
    };
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    let tenant = TenantId::new(&args.tenant)
        .map_err(|e| anyhow::anyhow!("invalid tenant `{}`: {e}", args.tenant))?;
    if let Some(days) = args.retention_days {
        config
            .storage
            .retention_days_per_tenant
            .insert(tenant.to_string(), days);
    }
    config.validate()?;
    let signal = match args.signal.as_deref() {
        None => None,
        Some("logs") => Some(Signal::Logs),
        Some("metrics") => Some(Signal::Metrics),
        Some("traces") => Some(Signal::Traces),
        Some(other) => bail!("`--signal {other}`: logs, metrics or traces"),
    };
    let mut importer = Importer::open(config, tenant.clone())?;
    for file in &args.files {
        let read = std::fs::read(file).map_err(|err| format!("cannot read it: {err}"));
        match read.and_then(|contents| units(&Bytes::from(contents), signal)) {
            Ok((encoding, units)) => {
                for unit in units {
                    let at = format!("{}:{}", file.display(), unit.at);
                    importer.request(unit.signal, encoding, unit.bytes, &at)?;
                }
            }
            Err(why) => importer
                .tally
                .problems
                .push(format!("{}: {why}", file.display())),
        }
    }
    let (tally, meta) = importer.finish();
    let incidents = meta.incidents(&tenant, &Default::default())?.len();
    println!(
        "imported {} requests ({} records) for tenant `{tenant}`; {} already imported; {} refused; \
         {incidents} incidents",
        tally.requests,
        tally.records,
        tally.already,
        tally.problems.len()
    );
    for problem in tally.problems.iter().take(MAX_LISTED) {
        eprintln!("{problem}");
    }
    if tally.problems.len() > MAX_LISTED {
        eprintln!("... and {} more", tally.problems.len() - MAX_LISTED);
    }
    if !tally.problems.is_empty() {
        bail!(
            "{} of the requests were not imported (the others were)",
            tally.problems.len()
        );
    }
    Ok(())
}

/// An import into one data directory for one tenant: the store, the engine on the replay
/// clock, and the directory's lock, until [`Importer::finish`].
pub struct Importer {
    tenant: TenantId,
    meta: Arc<dyn MetadataStore>,
    bus: Arc<dyn IngestBus>,
    pipeline: Arc<IngestPipeline>,
    replay: Replay,
    seen: std::collections::HashSet<String>,
    runtime: tokio::runtime::Runtime,
    /// The oldest record time kept, and the retention in days.
    oldest: (i64, u64),
    max_body_bytes: usize,
    tally: Tally,
    _lock: std::fs::File,
}

impl Importer {
    /// Opens `config.data_dir` (creating it) for importing `tenant`'s telemetry.
    pub fn open(config: SextantConfig, tenant: TenantId) -> anyhow::Result<Importer> {
        crate::serve::create_private_dir(&config.data_dir)?;
        let lock = crate::serve::lock_data_dir(&config.data_dir)?;
        let meta: Arc<dyn MetadataStore> = crate::tokens::open_metadata(&DataDirArg {
            data_dir: config.data_dir.clone(),
        })?;
        let keyring = crate::serve::open_keyring(&config, meta.clone())?;
        let mut store_config = config.store_config();
        store_config.keyring = keyring.clone();
        let retention = store_config.retention_of(&tenant);
        let (store, _) = TelemetryStore::open(store_config, meta.clone())
            .context("cannot open the telemetry store")?;
        let store = Arc::new(store);
        let bus: Arc<dyn IngestBus> = store.clone();
        let services = crate::serve::engine(
            &config,
            store,
            meta.clone(),
            keyring,
            sextant_server::action_runner::ActionRunner::default(),
            format!("http://{}", config.listen),
            Clock::Replay,
        )?;
        let (pipeline, correlation) = (services.pipeline.clone(), services.correlation.clone());
        let state = AppState::new(meta.clone(), config.ingest.max_concurrent_requests, None);
        state.set_ready(services);
        let oldest = sextant_ingest::wall_clock_ns() - retention.as_nanos() as i64;
        Ok(Importer {
            seen: meta.imported_batches(&tenant)?,
            tenant,
            meta,
            bus,
            pipeline,
            replay: Replay {
                state,
                correlation,
                ranked: HashMap::new(),
            },
            runtime: tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?,
            oldest: (oldest, retention.as_secs() / 86_400),
            max_body_bytes: config.ingest.max_body_bytes,
            tally: Tally::default(),
            _lock: lock,
        })
    }

    /// Imports one export request (`at` names it in problems), then correlates and ranks what
    /// it changed. A request that cannot be imported is counted as a problem; only a failure of
    /// the engine is an error.
    pub fn request(
        &mut self,
        signal: Result<Signal, String>,
        encoding: Encoding,
        bytes: Bytes,
        at: &str,
    ) -> anyhow::Result<()> {
        let unit = Unit {
            at: at.to_owned(),
            signal,
            bytes,
        };
        let outcome = self.runtime.block_on(import_one(
            &self.pipeline,
            self.meta.as_ref(),
            &self.tenant,
            &mut self.seen,
            (encoding, &unit),
            self.oldest,
            self.max_body_bytes,
        ));
        match outcome {
            Ok(Some(records)) => {
                self.tally.requests += 1;
                self.tally.records += records;
                self.runtime.block_on(self.replay.settle(&self.tenant))?;
            }
            Ok(None) => self.tally.already += 1,
            Err(why) => self.tally.problems.push(format!("{at}: {why}")),
        }
        Ok(())
    }

    /// Makes everything durable and lets the directory go; what was done, and the metadata.
    pub fn finish(self) -> (Tally, Arc<dyn MetadataStore>) {
        self.bus.close();
        (self.tally, self.meta)
    }
}

/// What the import runs after each request: correlation and rankings on the replay clock.
struct Replay {
    state: AppState,
    correlation: Arc<Correlation>,
    /// Per open incident, the basis of its last ranking and the event time it was made at.
    ranked: HashMap<u64, (serde_json::Value, i64)>,
}

impl Replay {
    /// Correlates what the detectors found so far, then ranks the incidents that are due.
    async fn settle(&mut self, tenant: &TenantId) -> anyhow::Result<()> {
        let batch = sextant_server::correlation::BATCH;
        while self
            .correlation
            .step(&self.state)
            .await
            .map_err(|e| anyhow::anyhow!("correlation failed: {e}"))?
            >= batch
        {}
        let Some(now) = self
            .state
            .pipeline()
            .ok()
            .and_then(|p| p.watermarks().get(tenant))
            .map(|mark| mark.newest)
        else {
            return Ok(());
        };
        let interval = rca_live::MIN_INTERVAL.as_nanos() as i64;
        for (of, incident) in self.correlation.open_snapshot().await {
            if of != *tenant
                || !rca_live::due(&incident, self.ranked.get(&incident.id), now, interval)
            {
                continue;
            }
            match rca_live::rank_and_keep(&self.state, tenant, &incident).await {
                Ok(()) => {}
                Err(err) => eprintln!("incident {} not ranked: {err}", incident.id),
            }
            self.ranked
                .insert(incident.id, (rca_live::basis(&incident), now));
        }
        Ok(())
    }
}

/// Imports one request: `Some(records)` once durable, `None` when it was imported before.
async fn import_one(
    pipeline: &IngestPipeline,
    meta: &dyn MetadataStore,
    tenant: &TenantId,
    seen: &mut std::collections::HashSet<String>,
    (encoding, unit): (Encoding, &Unit),
    (oldest, retention_days): (i64, u64),
    max_body_bytes: usize,
) -> Result<Option<usize>, String> {
    let signal = unit.signal.clone()?;
    let id = batch_id(signal, &unit.bytes);
    if seen.contains(&id) {
        return Ok(None);
    }
    let batch = otlp::decode(tenant, signal, encoding, unit.bytes.clone(), max_body_bytes)
        .map_err(|e| e.to_string())?;
    if let Some((first, last)) = batch.time_range() {
        if first < oldest {
            return Err(format!(
                "records from {} are older than the tenant's retention of {retention_days} days \
                 (give `--retention-days` to keep them)",
                sextant_model::time::format_rfc3339(first)
            ));
        }
        // A recording holds no future; such times are damaged, and would move the replay clock.
        if last > sextant_ingest::wall_clock_ns() + sextant_ingest::MAX_CLOCK_SKEW_NANOS {
            return Err(format!(
                "records from {} are in the future (a damaged clock?)",
                sextant_model::time::format_rfc3339(last)
            ));
        }
    }
    loop {
        match pipeline
            .ingest_batch(tenant, batch.clone(), unit.bytes.len())
            .await
        {
            Ok(outcome) => {
                meta.record_import(tenant, &id).map_err(|e| e.to_string())?;
                seen.insert(id);
                return Ok(Some(outcome.accepted));
            }
            // The tenant's limits or the log writer's queue: wait, as a client would.
            Err(sextant_ingest::Error::Overloaded { retry_after, .. }) => {
                tokio::time::sleep(retry_after.max(Duration::from_millis(10))).await;
            }
            Err(err) => return Err(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_split_into_requests_by_line_or_length() {
        let json = Bytes::from_static(
            b"{\"resourceLogs\": []}\n\n{\"resourceSpans\": []}\n{\"x\": 1}\nnot json\n",
        );
        let (encoding, lines) = units(&json, None).unwrap();
        assert_eq!(encoding, Encoding::json());
        let found: Vec<(String, Result<Signal, String>)> = lines
            .iter()
            .map(|u| (u.at.clone(), u.signal.clone()))
            .collect();
        assert_eq!(found[0], ("line 1".into(), Ok(Signal::Logs)));
        assert_eq!(found[1], ("line 3".into(), Ok(Signal::Traces)));
        assert!(
            found[2]
                .1
                .as_ref()
                .unwrap_err()
                .contains("no `resourceLogs`")
        );
        assert!(found[3].1.as_ref().unwrap_err().contains("not JSON"));
        assert_eq!(&lines[1].bytes[..], b"{\"resourceSpans\": []}");

        let mut proto = Vec::new();
        for body in [&b"abc"[..], b"", b"hello"] {
            proto.extend_from_slice(&(body.len() as u32).to_be_bytes());
            proto.extend_from_slice(body);
        }
        let proto = Bytes::from(proto);
        assert!(units(&proto, None).unwrap_err().contains("--signal"));
        let (_, units_found) = units(&proto, Some(Signal::Metrics)).unwrap();
        let bodies: Vec<&[u8]> = units_found.iter().map(|u| &u.bytes[..]).collect();
        assert_eq!(bodies, [&b"abc"[..], b"", b"hello"]);
        let cut = proto.slice(..proto.len() - 1);
        assert!(
            units(&cut, Some(Signal::Metrics))
                .unwrap_err()
                .contains("request 3: its length says 5 bytes, the file holds 4")
        );
    }
}
