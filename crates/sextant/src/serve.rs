//! `sextant serve`: open the data directory, replay the write-ahead log, and serve until
//! SIGTERM or SIGINT, then finish in-flight requests and sync the log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;
use sextant_ingest::{IngestBus, IngestPipeline};
use sextant_model::{Role, TenantId};
use sextant_query::QueryEngine;
use sextant_server::{AppState, Services};
use sextant_store::meta::MetadataStore;
use sextant_store::{TableSource, TelemetryStore};

use crate::DataDirArg;
use crate::config::SextantConfig;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (see config/sextant.example.toml).
    #[arg(long, env = "SEXTANT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: sextant-data].
    #[arg(long, env = "SEXTANT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address for HTTP and gRPC [default: 127.0.0.1:7300].
    #[arg(long, env = "SEXTANT_LISTEN")]
    listen: Option<String>,
    /// Allow listening without TLS on an address other than loopback (tokens and telemetry
    /// then cross the network in the clear).
    #[arg(long, env = "SEXTANT_INSECURE_LISTEN")]
    insecure_listen: bool,
}

impl ServeArgs {
    /// Defaults, then the file, then environment and flags.
    fn resolve(self) -> anyhow::Result<SextantConfig> {
        let mut config = match &self.config {
            Some(path) => SextantConfig::from_file(path)?,
            None => SextantConfig::default(),
        };
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        config.insecure_listen |= self.insecure_listen;
        config.validate()?;
        Ok(config)
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, None))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); coloured only on a terminal (never
/// into a file or a pipe) and never when `NO_COLOR` is set.
pub fn init_logging() {
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    tracing_subscriber::fmt()
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Serves until SIGTERM or SIGINT; `ready` is told the bound address once requests are taken.
pub async fn serve(
    config: SextantConfig,
    ready: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<()> {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    create_private_dir(&config.data_dir)?;
    // Held until the server returns; the lock goes with the process, however it ends.
    let _lock = lock_data_dir(&config.data_dir)?;
    let actions = sextant_server::action_runner::ActionRunner::new(
        config.runbook_actions()?,
        &config.data_dir,
    )
    .map_err(|e| anyhow::anyhow!("cannot offer runbook actions: {e}"))?;
    let meta = crate::tokens::open_metadata(&DataDirArg {
        data_dir: config.data_dir.clone(),
    })?;
    audit_retention(meta.as_ref(), &config)?;
    let meta: Arc<dyn MetadataStore> = meta;
    let keyring = open_keyring(&config, meta.clone())?;
    let meta_for_correlation = meta.clone();

    let addr = config.listen_addr()?;
    let tls = config
        .tls
        .clone()
        .map(sextant_server::tls::Tls::load)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if tls.is_none() {
        sextant_server::tls::check_plaintext("sextant", addr, config.insecure_listen)?;
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let state = AppState::new(
        meta.clone(),
        config.ingest.max_concurrent_requests,
        Some(metrics.clone()),
    )
    .with_auth_throttle(
        config.auth.max_failed_per_minute,
        &config.auth.trusted_proxies,
    )
    .map_err(anyhow::Error::msg)?
    .with_public_tenant_metrics(config.auth.public_tenant_metrics);
    let app = sextant_server::router(state.clone(), config.ingest.max_body_bytes);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(sextant_server::listen::serve(
        listener,
        app,
        tls.clone(),
        config.connections.to_limits(),
        async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        },
    ));
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().watch());
    }
    let syslog = sextant_server::syslog::start(
        state.clone(),
        &config.syslog,
        tls.clone(),
        config.insecure_listen,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    for (protocol, addr, tenant) in &syslog {
        tracing::info!(%protocol, %addr, %tenant, "listening for syslog");
    }
    // Only now that the ports are taken: a start that fails spends no one-time token.
    bootstrap_token(meta.as_ref(), &config, local)?;
    // Printed on stdout so scripts and tests can find the port when listening on port 0.
    println!("sextant listening on {local}");
    println!("web UI: {}://{local}/", scheme(&config));
    tracing::info!(%local, data_dir = %config.data_dir.display(), "listening; replaying write-ahead log");

    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            metrics.run_upkeep();
        }
    });

    let mut store_config = config.store_config();
    store_config.keyring = keyring.clone();
    let started = Instant::now();
    let (store, report) =
        tokio::task::spawn_blocking(move || TelemetryStore::open(store_config, meta))
            .await?
            .context("cannot open the telemetry store")?;
    tracing::info!(
        segments = report.segments,
        records = report.records,
        bytes = report.bytes,
        torn_bytes = report.torn_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "write-ahead log replayed; ready"
    );
    let store = Arc::new(store);
    let bus: Arc<dyn IngestBus> = store.clone();
    let services = engine(
        &config,
        store,
        meta_for_correlation,
        keyring,
        actions,
        format!("{}://{local}", scheme(&config)),
        sextant_server::correlation::Clock::Live,
    )?;
    let (runbooks, correlation) = (services.runbooks.clone(), services.correlation.clone());
    state.set_ready(services);
    if let Some(ready) = ready {
        let _ = ready.send(local);
    }
    tokio::spawn(sextant_server::runbooks::run(
        state.clone(),
        runbooks,
        correlation.clone(),
    ));
    tokio::spawn(sextant_server::rca_live::run(
        state.clone(),
        correlation.clone(),
        Duration::from_secs(config.rca.check_seconds),
    ));
    tokio::spawn(sextant_server::correlation::run(state.clone(), correlation));
    if config.topology.derived_series {
        tokio::spawn(sextant_server::derived_series::run(
            state.clone(),
            Duration::from_secs(config.topology.derived_step_seconds),
            Duration::from_secs(config.topology.derived_lag_seconds),
        ));
    }
    tokio::spawn(sextant_server::capacity::run(
        state.clone(),
        config.anomaly.capacity.clone(),
        Duration::from_secs(config.anomaly.capacity_check_seconds),
    ));

    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!("in-flight requests did not finish in {grace:?}; closing anyway"),
    }
    tokio::task::spawn_blocking(move || bus.close()).await?;
    tracing::info!("write-ahead log synced, buffers flushed; bye");
    Ok(())
}

/// What a server runs on once its store is open (`sextant import` drives the same): ingest,
/// queries, events, correlation on `clock`, runbooks. `base_url` starts approval links.
pub fn engine(
    config: &SextantConfig,
    store: Arc<TelemetryStore>,
    meta: Arc<dyn MetadataStore>,
    keyring: Option<Arc<sextant_store::crypto::Keyring>>,
    actions: sextant_server::action_runner::ActionRunner,
    base_url: String,
    clock: sextant_server::correlation::Clock,
) -> anyhow::Result<Services> {
    let bus: Arc<dyn IngestBus> = store.clone();
    let signer =
        sextant_server::runbooks::LinkSigner::open(&config.data_dir.join("approval.key"), base_url)
            .context("cannot open the approval link key")?;
    let secrets = match &keyring {
        Some(keyring) => sextant_server::secrets::SecretBox::with_keyring(keyring.clone()),
        None => sextant_server::secrets::SecretBox::open(&config.data_dir.join("secrets.key"))
            .context("cannot open the secrets key")?,
    };
    let runbooks = Arc::new(sextant_server::runbooks::Runbooks::new(
        config.data_dir.join("runbooks"),
        signer,
        secrets,
        actions,
        config.egress_policy()?,
    ));
    runbooks.reload();
    Ok(Services {
        pipeline: Arc::new(IngestPipeline::new(config.ingest.clone(), bus)),
        query: Arc::new(QueryEngine::new(
            store.segment_store(),
            config.query.to_limits(),
        )),
        tables: store.clone(),
        events: store,
        correlation: Arc::new(sextant_server::correlation::Correlation::new(
            meta,
            config.incidents.clone(),
            clock,
        )),
        runbooks,
    })
}

/// Takes `DATA_DIR/lock` for this process (an advisory lock the system drops when the process
/// ends, however it ends): a second server on the same directory would interleave its
/// write-ahead log and segments with this one's. The file names the holder's pid.
pub fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::io::Write;
    let path = dir.join("lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open `{}`", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            writeln!(file, "{}", std::process::id())?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "the data directory `{}` is in use by another Sextant process (pid {}); stop it \
                 first, or give this one another `--data-dir`",
                dir.display(),
                holder.trim()
            )
        }
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("cannot lock `{}`", path.display()))
        }
    }
}

/// Creates the data directory if needed and makes it owner-only (0700) whatever the umask, so
/// that no other user — the users runbook actions run as among them — can read what it holds.
pub fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory `{}`", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("cannot read data directory `{}`", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
                || format!("cannot make data directory `{}` owner-only", dir.display()),
            )?;
            tracing::info!(dir = %dir.display(), "data directory made owner-only (0700)");
        }
    }
    Ok(())
}

/// On a fresh data directory, create an admin token for tenant `default` and print it once, so
/// a newcomer can send data straight away; called once the server holds its ports (`local`:
/// the address it listens on), so a start that fails spends no token.
fn bootstrap_token(
    meta: &dyn MetadataStore,
    config: &SextantConfig,
    local: std::net::SocketAddr,
) -> anyhow::Result<()> {
    if !meta.list_tokens()?.is_empty() {
        return Ok(());
    }
    let tenant = TenantId::new("default").expect("valid tenant name");
    let token = meta.create_token(&tenant, Role::Admin)?;
    crate::tokens::audit_token(meta, "sextant.bootstrap", "token.create", &token.info)?;
    eprintln!(
        "\nFirst start: created an admin token for tenant `default` (shown only now):\n\n  {}\n\n\
         Send a log line with it:\n\n  curl -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\\n    \
         -d '{{\"resourceLogs\":[{{\"scopeLogs\":[{{\"logRecords\":[{{\"body\":{{\"stringValue\":\"hello\"}}}}]}}]}}]}}' \\\n    \
         {}://{local}/v1/logs\n\nMore tokens: sextant tokens create --data-dir {} --tenant NAME --role ingest\n",
        token.secret,
        token.secret,
        scheme(config),
        config.data_dir.display()
    );
    Ok(())
}

/// The scheme of the server's URLs (approval links, the first-start hint).
fn scheme(config: &SextantConfig) -> &'static str {
    if config.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// The keyring when encryption at rest is on. Refuses an encrypted data directory without its
/// key (or with another one), and turning encryption on over telemetry stored in the clear.
pub fn open_keyring(
    config: &SextantConfig,
    meta: Arc<dyn MetadataStore>,
) -> anyhow::Result<Option<Arc<sextant_store::crypto::Keyring>>> {
    let master = crate::keys::master_key(config.encryption.master_key_file.as_deref())?;
    let encrypted = meta.key_check()?.is_some();
    let Some(master) = master else {
        if encrypted {
            anyhow::bail!(
                "the data directory `{}` is encrypted: give its master key with \
                 `encryption.master_key_file` or `{}`",
                config.data_dir.display(),
                crate::keys::MASTER_KEY_ENV
            );
        }
        return Ok(None);
    };
    if !encrypted && holds_telemetry(&config.data_dir, meta.as_ref())? {
        anyhow::bail!(
            "the data directory `{}` already holds telemetry stored without encryption; \
             encryption at rest starts with a new data directory",
            config.data_dir.display()
        );
    }
    let keyring = sextant_store::crypto::Keyring::open(&master, meta)?;
    tracing::info!("encryption at rest is on");
    Ok(Some(Arc::new(keyring)))
}

fn holds_telemetry(data_dir: &std::path::Path, meta: &dyn MetadataStore) -> anyhow::Result<bool> {
    if meta.checkpoint()? > 0 || !meta.segments()?.is_empty() {
        return Ok(true);
    }
    let wal = sextant_store::wal_dir(data_dir);
    let Ok(entries) = std::fs::read_dir(&wal) else {
        return Ok(false);
    };
    for entry in entries {
        if entry?.metadata()?.len() > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Records each tenant's retention in its audit trail when it differs from the last recorded
/// (`retention.set`, actor `config`): retention is set in the configuration file, so a change
/// is seen at the start that brings it.
fn audit_retention(meta: &dyn MetadataStore, config: &SextantConfig) -> anyhow::Result<()> {
    use sextant_store::meta::AuditFilter;
    let store = config.store_config();
    let filter = AuditFilter {
        kind: Some("retention.set".to_owned()),
        limit: 1,
        ..AuditFilter::default()
    };
    let mut records = Vec::new();
    for tenant in meta.tenants()? {
        let days = store.retention_of(&tenant).as_secs() / crate::config::DAY_SECONDS;
        let previous = meta
            .audit_records(&tenant, &filter)?
            .first()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.detail).ok())
            .and_then(|detail| detail["days"].as_u64());
        if previous == Some(days) {
            continue;
        }
        records.push(crate::tokens::admin_record(
            &tenant,
            "config",
            "retention.set",
            "retention_days",
            serde_json::json!({"days": days, "previous": previous}).to_string(),
        ));
    }
    meta.audit(&records)
        .context("cannot record retention in the audit trail")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
