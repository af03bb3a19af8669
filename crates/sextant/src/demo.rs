//! `sextant demo`: Sextant on a demo data directory with a simulated shop sending it live
//! telemetry with faults on a schedule, so a newcomer sees incidents explained within minutes.
//!
//! The server is the real one (`serve`), with the defaults changed only where a demo needs
//! minutes instead of hours: incidents resolve after 20 quiet seconds, anomaly episodes close
//! after 2 points inside the band, root causes are ranked every 2 s, capacity is checked every
//! 10 s with one rule (cart's memory), and the shop's own request metrics replace the series
//! derived from spans. The shop ([`shop`]) sends over OTLP/HTTP with a token of tenant `demo`.
//! The configuration defines one runbook action, `rollback`, which only prints what a real
//! rollback would do (as `nobody` when the demo runs as root); the shop's runbook uses it.

mod shop;

pub(crate) use shop::attribute;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sextant_incidents::action::{ActionSpec, ParamSpec};
use sextant_model::{Role, TenantId};
use sextant_server::capacity::CapacityRule;
use sextant_store::meta::TokenStore;

use crate::DataDirArg;
use crate::config::SextantConfig;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Data directory of the demo, emptied at each run (a directory that is not a demo's is
    /// refused unless empty).
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
    config.actions.insert("rollback".into(), rollback_action());
    config
}

/// The demo's one action: `/bin/echo` says what a rollback of a service would do.
fn rollback_action() -> ActionSpec {
    let pattern = |p: &str| ParamSpec {
        pattern: Some(p.into()),
        ..ParamSpec::default()
    };
    let root = sextant_server::action_runner::server_is_root();
    ActionSpec {
        description: "roll a service back to its last good version (the demo prints what it \
                      would do)"
            .into(),
        program: "/bin/echo".into(),
        args: [
            "rolling back",
            "{{service}}",
            "for incident",
            "{{incident}}",
        ]
        .map(String::from)
        .to_vec(),
        params: [
            ("service".to_owned(), pattern("[a-z0-9-]+")),
            ("incident".to_owned(), pattern("[0-9]+")),
        ]
        .into(),
        timeout_seconds: 10,
        env: Default::default(),
        // Never root; as the demo's own user otherwise (it only echoes).
        user: root.then(|| "nobody".to_owned()),
        run_as_server_user: !root,
        working_dir: "/".into(),
        tenants: vec!["demo".into()],
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let config = demo_config(args.data_dir, args.listen);
    config.validate()?;
    fresh_data_dir(&config.data_dir)?;
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
        println!("  web UI: http://{addr}/ (sign in with the admin token)");
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
        let target = shop::Target::new(format!("http://{addr}"), ingest, admin);
        // The shop runs until the process ends; the server until SIGTERM or SIGINT.
        std::thread::spawn(move || shop::run(&target));
        let result = server.await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        result
    })
}

/// Marks a data directory as the demo's, so the next run may start it afresh.
const MARKER: &str = ".sextant-demo";

/// Every run starts from an empty directory: the shop's history would overlap the previous
/// run's telemetry. A directory of an earlier demo is emptied; any other that is not empty is
/// refused, never deleted.
fn fresh_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", dir.display())),
    };
    if !empty {
        if !dir.join(MARKER).exists() {
            anyhow::bail!(
                "`{}` is not empty and is not a demo's data directory; \
                 the demo starts from an empty directory (choose one with --data-dir)",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot empty the demo directory `{}`", dir.display()))?;
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory `{}`", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "a `sextant demo` data directory, emptied by each run\n",
    )
    .with_context(|| format!("cannot write in `{}`", dir.display()))?;
    Ok(())
}

fn humanize(seconds: i64) -> String {
    match seconds {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demo_directory_is_emptied_and_any_other_refused() {
        let dir = tempfile::tempdir().unwrap();
        let demo = dir.path().join("demo");
        fresh_data_dir(&demo).unwrap();
        std::fs::write(demo.join("meta.db"), "old").unwrap();
        fresh_data_dir(&demo).unwrap();
        assert!(!demo.join("meta.db").exists());
        let other = dir.path().join("data");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("meta.db"), "keep").unwrap();
        let error = fresh_data_dir(&other).unwrap_err().to_string();
        assert!(error.contains("not a demo's data directory"), "{error}");
        assert!(other.join("meta.db").exists());
    }
}
