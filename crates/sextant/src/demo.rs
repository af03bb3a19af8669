//! `sextant demo`: Sextant on a demo data directory with a simulated shop sending it live
//! telemetry with faults on a schedule, so a newcomer sees incidents explained within minutes.
//!
//! The server is the real one (`serve`), with the defaults changed only where a demo needs
//! minutes instead of hours: incidents resolve after 20 quiet seconds, anomaly episodes close
//! after 2 points inside the band, root causes are ranked every 2 s, capacity is checked every
//! 10 s with one rule (cart's memory), and the shop's own request metrics replace the series
//! derived from spans. The shop ([`shop`]) sends over OTLP/HTTP with a token of tenant `demo`.

mod shop;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sextant_model::{Role, TenantId};
use sextant_server::capacity::CapacityRule;
use sextant_store::meta::MetadataStore;

use crate::DataDirArg;
use crate::config::SextantConfig;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Data directory of the demo [default: sextant-demo].
    #[arg(long, default_value = "sextant-demo")]
    data_dir: PathBuf,
    /// Address for HTTP and gRPC.
    #[arg(long, default_value = crate::config::DEFAULT_LISTEN)]
    listen: String,
}

/// The demo's configuration: the defaults, shortened where a demo needs it.
pub fn demo_config(data_dir: PathBuf, listen: String) -> SextantConfig {
    let mut config = SextantConfig {
        data_dir,
        listen,
        ..SextantConfig::default()
    };
    config.incidents.resolve_quiet_seconds = 20;
    config.incidents.group_window_seconds = 300;
    config.anomaly.quiet_points = 2;
    config.anomaly.capacity_check_seconds = 10;
    config.anomaly.capacity = vec![CapacityRule {
        name: "process.memory.usage".into(),
        r#match: "service=cart".into(),
        limit: shop::CART_MEMORY_LIMIT_BYTES,
        horizon: "1h".into(),
        step: "1m".into(),
        // The recent trend: the leak's, not the flat hours before it.
        history: "20m".into(),
        agg: "max".into(),
    }];
    config.topology.derived_series = false;
    config.rca.check_seconds = 2;
    config
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let config = demo_config(args.data_dir, args.listen);
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create data directory `{}`",
            config.data_dir.display()
        )
    })?;
    let tenant = TenantId::new("demo").expect("a valid tenant name");
    let (admin, ingest) = {
        let meta = crate::tokens::open_metadata(&DataDirArg {
            data_dir: config.data_dir.clone(),
        })?;
        (
            meta.create_token(&tenant, Role::Admin)?.secret,
            meta.create_token(&tenant, Role::Ingest)?.secret,
        )
    };
    crate::serve::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(crate::serve::serve(config, Some(ready_tx)));
        let Ok(addr) = ready_rx.await else {
            // The server stopped before it was ready: its error says why.
            return server.await?;
        };
        println!("sextant demo: tenant `demo`, admin token {admin}");
        println!("  HTTP API: http://{addr}/api/v1/incidents (Authorization: Bearer TOKEN)");
        println!(
            "  the shop sends {} of history, then live; faults (seconds after start):",
            humanize(shop::HISTORY_SECONDS)
        );
        for f in shop::FAULTS {
            let when = if f.start < 0 {
                format!("since {} before", humanize(-f.start))
            } else {
                format!("{}-{} s", f.start, f.end)
            };
            println!("    {:<28} {:<10} {when}", f.name, f.service);
        }
        let target = shop::Target {
            base: format!("http://{addr}"),
            ingest_token: ingest,
            admin_token: admin,
        };
        // The shop runs until the process ends; the server until SIGTERM or SIGINT.
        std::thread::spawn(move || shop::run(&target));
        let result = server.await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        result
    })
}

fn humanize(seconds: i64) -> String {
    match seconds {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}
