//! The `sextant` binary: `serve` runs the engine, `demo` runs it with a simulated shop, `query`
//! asks it SQL, `tokens` manages who may talk to it, `keys` its master key; `patterns`, `detect` and `forecast` run the
//! analytics offline and `eval` scores them on public benchmarks; `rca` ranks root causes
//! offline; `import` loads recorded telemetry into a data directory.

mod config;
mod demo;
mod detect;
mod eval;
mod eval_nezha;
mod eval_series;
mod import;
mod keys;
mod patterns;
mod query;
mod rca;
mod serve;
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sextant: an open AIOps engine in one binary.
#[derive(Debug, Parser)]
#[command(name = "sextant", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: HTTP API, OTLP/HTTP and OTLP/gRPC on one port.
    Serve(serve::ServeArgs),
    /// Run the server with a simulated shop sending it telemetry and faults (tenant `demo`).
    Demo(demo::DemoArgs),
    /// Run SQL on a server and print the result.
    Query(query::QueryArgs),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Make and rotate the master key of encryption at rest.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Mine log templates offline.
    #[command(subcommand)]
    Patterns(patterns::PatternsCommand),
    /// Score a `timestamp,value` CSV with the anomaly detector, streaming (one score per row).
    Detect(detect::DetectArgs),
    /// Forecast each series of a long `series_id,timestamp,value` CSV.
    Forecast(detect::ForecastArgs),
    /// Rank the likely root cause of an incident from two wide CSV files (before and during).
    Rca(rca::RcaArgs),
    /// Load recorded OTLP telemetry (JSON lines or protobuf) into a data directory, each
    /// record with its own time.
    Import(import::ImportArgs),
    /// Score analytics against public benchmarks.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
}

/// The data directory option shared by commands that work on a data directory offline.
#[derive(Debug, clap::Args)]
pub struct DataDirArg {
    /// Sextant's data directory.
    #[arg(long, env = "SEXTANT_DATA_DIR", default_value = "sextant-data")]
    pub data_dir: PathBuf,
}

fn main() -> ExitCode {
    // Whatever the caller's umask, what Sextant writes (the data directory, its database, log
    // and segments) is its user's alone: directories 0700, files 0600.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Query(args) => query::run(args),
        Command::Tokens(command) => tokens::run(command),
        Command::Keys(command) => keys::run(command),
        Command::Patterns(command) => patterns::run(command),
        Command::Detect(args) => detect::detect(args),
        Command::Forecast(args) => detect::forecast_csv(args),
        Command::Rca(args) => rca::run(args),
        Command::Import(args) => import::run(args),
        Command::Eval(command) => eval::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`sextant detect ... | head`): not an error.
        Err(err)
            if err.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
