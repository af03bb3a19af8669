//! `sextant rca` and `sextant eval rca`: the root-cause ranking offline, on wide CSV files (a
//! `time` column, then `<service>_<metric>` columns), the same code the server ranks incidents
//! with.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;
use sextant_incidents::rca::{self, Ranking, RcaConfig, RcaInput, RcaScores};

#[derive(Debug, clap::Args)]
pub struct RcaArgs {
    /// The period before the incident (the baseline).
    #[arg(long)]
    pub normal: PathBuf,
    /// The incident's period.
    #[arg(long)]
    pub anomalous: PathBuf,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
}

/// The ranking of one normal and anomalous pair.
pub fn rank_files(normal: &Path, anomalous: &Path) -> anyhow::Result<Ranking> {
    let candidates = rca::candidates_from_csv(&read(normal)?, &read(anomalous)?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if candidates.is_empty() {
        bail!("no column is in both files");
    }
    let input = RcaInput {
        series: &candidates,
        ..RcaInput::default()
    };
    Ok(rca::rank(&input, &RcaConfig::default()))
}

pub fn run(args: RcaArgs) -> anyhow::Result<()> {
    let ranking = rank_files(&args.normal, &args.anomalous)?;
    let entries: Vec<_> = ranking
        .services
        .iter()
        .map(|s| {
            json!({
                "service": s.service,
                "metric": s.metric,
                "score": s.score,
                "evidence": s.evidence,
                "sentence": s.sentence,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "ranking": entries }))?
    );
    Ok(())
}

/// The cases under `dir`: `<service>-<fault>/<run>/` with `normal.csv` and `anomalous.csv`;
/// the true cause is the service and the series `<service>_<fault>`.
fn cases(dir: &Path) -> anyhow::Result<Vec<(String, String, PathBuf)>> {
    let mut cases = Vec::new();
    for case in
        std::fs::read_dir(dir).with_context(|| format!("cannot read `{}`", dir.display()))?
    {
        let case = case?;
        if !case.file_type()?.is_dir() {
            continue;
        }
        let name = case.file_name().to_string_lossy().into_owned();
        let Some((service, fault)) = name.rsplit_once('-') else {
            bail!("case `{name}` is not `<service>-<fault>`");
        };
        for run in std::fs::read_dir(case.path())? {
            let run = run?;
            if run.path().join("anomalous.csv").exists() {
                cases.push((service.to_owned(), fault.to_owned(), run.path()));
            }
        }
    }
    cases.sort_by(|a, b| a.2.cmp(&b.2));
    if cases.is_empty() {
        bail!(
            "no `<service>-<fault>/<run>/anomalous.csv` under `{}`",
            dir.display()
        );
    }
    Ok(cases)
}

pub fn eval(dir: &Path) -> anyhow::Result<()> {
    let mut ranks = Vec::new();
    println!(
        "{:<28} {:>13} {:>12} ranked first",
        "case", "service rank", "metric rank"
    );
    for (service, fault, path) in cases(dir)? {
        let ranking = rank_files(&path.join("normal.csv"), &path.join("anomalous.csv"))?;
        let found = rca::case_ranks(&ranking, &service, &fault);
        let show = |r: Option<usize>| r.map_or("-".to_owned(), |r| r.to_string());
        let case = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        let first = ranking
            .services
            .first()
            .map_or(String::new(), |s| format!("{} ({})", s.service, s.metric));
        println!(
            "{case:<28} {:>13} {:>12} {first}",
            show(found.0),
            show(found.1)
        );
        ranks.push(found);
    }
    let scores = RcaScores::from_ranks(&ranks);
    println!();
    println!("level     AC@1   AC@3   Avg@5   ({} cases)", scores.cases);
    println!(
        "service  {:.3}  {:.3}  {:.3}",
        scores.service_ac1, scores.service_ac3, scores.service_avg5
    );
    println!(
        "metric   {:.3}  {:.3}  {:.3}",
        scores.metric_ac1, scores.metric_ac3, scores.metric_avg5
    );
    Ok(())
}
