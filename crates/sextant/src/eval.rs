//! `sextant eval`: template mining accuracy on loghub-2k (here), anomaly detection on NAB and
//! forecasting on M4 hourly (`eval_series.rs`), root causes on Sock Shop (`rca.rs`) and on
//! Nezha's recorded days (`eval_nezha.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use sextant_analytics::eval::{grouping_accuracy, parsing_accuracy};
use sextant_analytics::patterns::{MinerConfig, TemplateMiner};

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Score the template miner on loghub-2k: one fresh miner per system, one configuration
    /// for all, input the `Content` column; prints grouping (GA) and parsing (PA) accuracy.
    Loghub {
        /// The raw loghub-2k folder (`<DS>/<DS>_2k.log`); each system's line count is checked
        /// against its labels.
        #[arg(long)]
        dir: PathBuf,
        /// The corrected labels folder (`<DS>/<DS>_2k.log_structured_corrected.csv`).
        #[arg(long)]
        labels: PathBuf,
    },
    /// Score the anomaly detector on the Numenta Anomaly Benchmark (`data/`, `labels/`,
    /// `config/profiles.json` under DIR): the standard, reward-low-FP and reward-low-FN
    /// profiles, each at the one threshold that suits it best over the whole corpus.
    Nab {
        /// The NAB checkout (or a copy of its `data/`, `labels/` and `config/`).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Score the root-cause ranking on cases `<service>-<fault>/<run>/` (each with
    /// `normal.csv` and `anomalous.csv`): AC@1, AC@3 and Avg@5 at service and metric level.
    Rca {
        /// The folder of cases, one `<service>-<fault>/<run>/` each.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Score the root-cause ranking on recorded days of the Nezha dataset (DIR: a day folder
    /// with its `*-fault_list.json` and `metric/`, or a folder of them): AC@1, AC@3 and Avg@5
    /// at service level per day and per fault type, against a trivial reference.
    Nezha {
        /// A recorded day's folder, or a folder of them.
        #[arg(long)]
        dir: PathBuf,
        /// Print, under each fault, the sentences of the first three services and of the true
        /// one.
        #[arg(long)]
        explain: bool,
        /// Print instead the scores with every rule of the ranking and with each rule turned
        /// off in turn.
        #[arg(long)]
        ablation: bool,
        /// Score instead the live pipeline: each day converted to OTLP and imported in event
        /// time into a fresh data directory under WORK (detectors, correlator, ranking), each
        /// fault scored by the ranking of the incident that covers it.
        #[arg(long, value_name = "WORK")]
        live: Option<PathBuf>,
        /// With `--live`: one JSON line per fault (fault id, true service, incident id, ranked
        /// services).
        #[arg(long, requires = "live")]
        output: Option<PathBuf>,
    },
    /// Score the forecaster on M4's hourly series: sMAPE and MASE over the 48 steps after
    /// each training series.
    M4 {
        /// `Hourly-train.csv`.
        #[arg(long)]
        train: PathBuf,
        /// `Hourly-test.csv`.
        #[arg(long)]
        test: PathBuf,
    },
}

pub fn run(command: EvalCommand) -> anyhow::Result<()> {
    match command {
        EvalCommand::Loghub { dir, labels } => loghub(&dir, &labels),
        EvalCommand::Nab { dir } => crate::eval_series::nab(&dir),
        EvalCommand::M4 { train, test } => crate::eval_series::m4(&train, &test),
        EvalCommand::Rca { dir } => crate::rca::eval(&dir),
        EvalCommand::Nezha {
            dir,
            ablation: true,
            ..
        } => crate::eval_nezha::ablation(&dir),
        EvalCommand::Nezha {
            dir,
            live: Some(work),
            output,
            ..
        } => crate::eval_nezha::live::eval(&dir, &work, output.as_deref()),
        EvalCommand::Nezha { dir, explain, .. } => crate::eval_nezha::eval(&dir, explain),
    }
}

/// One system's labelled lines.
struct Labelled {
    contents: Vec<String>,
    templates: Vec<String>,
}

fn loghub(dir: &Path, labels: &Path) -> anyhow::Result<()> {
    let systems = systems(labels)?;
    if systems.is_empty() {
        bail!(
            "no `<DS>/<DS>_2k.log_structured_corrected.csv` under `{}`",
            labels.display()
        );
    }
    println!(
        "{:<12} {:>6} {:>9} {:>9} {:>6} {:>6}",
        "system", "lines", "templates", "truth", "GA", "PA"
    );
    let (mut ga_sum, mut pa_sum) = (0.0, 0.0);
    for system in &systems {
        let labelled = read_labels(labels, system)?;
        let raw = dir.join(system).join(format!("{system}_2k.log"));
        let raw_lines = fs::read(&raw)
            .with_context(|| format!("cannot read `{}`", raw.display()))?
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .count();
        if raw_lines != labelled.contents.len() {
            bail!(
                "`{}` has {raw_lines} lines but its labels {}",
                raw.display(),
                labelled.contents.len()
            );
        }
        let mut miner = TemplateMiner::new(MinerConfig::default())?;
        let ids: Vec<_> = labelled
            .contents
            .iter()
            .enumerate()
            .map(|(at, line)| miner.mine(line, at as i64).id)
            .collect();
        // Score each line by the template it ended up in.
        let mut predicted = Vec::with_capacity(ids.len());
        let mut texts = Vec::with_capacity(ids.len());
        for id in ids {
            let template = miner
                .template(id)
                .with_context(|| format!("template {id} evicted during `{system}`"))?;
            predicted.push(template.id());
            texts.push(template.text());
        }
        let ga = grouping_accuracy(&predicted, &labelled.templates)?;
        let pa = parsing_accuracy(&texts, &labelled.templates)?;
        let truth = labelled
            .templates
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        println!(
            "{:<12} {:>6} {:>9} {:>9} {:>6.3} {:>6.3}",
            system,
            labelled.contents.len(),
            miner.len(),
            truth,
            ga,
            pa
        );
        ga_sum += ga;
        pa_sum += pa;
    }
    let count = systems.len() as f64;
    println!(
        "{:<12} {:>6} {:>9} {:>9} {:>6.3} {:>6.3}",
        "mean",
        "",
        "",
        "",
        ga_sum / count,
        pa_sum / count
    );
    Ok(())
}

/// The systems under `labels`: folders holding a corrected structured CSV, sorted.
fn systems(labels: &Path) -> anyhow::Result<Vec<String>> {
    let mut systems = Vec::new();
    for entry in
        fs::read_dir(labels).with_context(|| format!("cannot read `{}`", labels.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if structured_csv(labels, &name).is_file() {
            systems.push(name);
        }
    }
    systems.sort();
    Ok(systems)
}

fn structured_csv(labels: &Path, system: &str) -> PathBuf {
    labels
        .join(system)
        .join(format!("{system}_2k.log_structured_corrected.csv"))
}

/// The `Content` and `EventTemplate` columns (invalid UTF-8 replaced).
fn read_labels(labels: &Path, system: &str) -> anyhow::Result<Labelled> {
    let path = structured_csv(labels, system);
    let mut reader = csv::Reader::from_path(&path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let headers = reader.byte_headers()?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|header| header == name.as_bytes())
            .with_context(|| format!("`{}` has no `{name}` column", path.display()))
    };
    let (content, template) = (column("Content")?, column("EventTemplate")?);
    let mut labelled = Labelled {
        contents: Vec::new(),
        templates: Vec::new(),
    };
    for record in reader.byte_records() {
        let record = record.with_context(|| format!("bad CSV in `{}`", path.display()))?;
        let text =
            |at: usize| String::from_utf8_lossy(record.get(at).unwrap_or_default()).into_owned();
        labelled.contents.push(text(content));
        labelled.templates.push(text(template));
    }
    Ok(labelled)
}
