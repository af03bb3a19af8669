//! `sextant rca` and `sextant eval rca`: the root-cause ranking offline, on wide CSV files (a
//! `time` column, then `<service>_<metric>` columns), with the service map, spans and log
//! lines when given, the same code the server ranks incidents with.
//!
//! The other inputs, each a CSV file with a header line naming its columns (in any order;
//! other columns are ignored):
//! - `--map`: `caller,callee`, one call edge per row;
//! - `--spans`: `trace_id`, `span_id`, `parent_span_id` (hex; empty for a root), `service`,
//!   `start_unix_nano`, `end_unix_nano`;
//! - `--logs`: `time_unix_nano`, `service`, `severity` (a level name or an OpenTelemetry
//!   severity number; empty: the level the body states), `body`.
//!
//! Spans and lines before the anomalous file's first time are the baseline, the rest the
//! incident. Lines are mined into templates in time order (the server's miner, its default
//! configuration); the error patterns (severity ERROR and above) new in the incident or
//! running three times their baseline rate are the log evidence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;
use sextant_analytics::patterns::{MinerConfig, TemplateMiner};
use sextant_incidents::rca::traces::{SpanRecord, TraceEvidence, trace_evidence};
use sextant_incidents::rca::{
    self, LogSignal, PatternCount, Ranking, RcaConfig, RcaInput, RcaScores,
};
use sextant_incidents::topology::ServiceMap;
use sextant_model::time::NANOS_PER_SECOND;

#[derive(Debug, clap::Args)]
pub struct RcaArgs {
    /// The period before the incident (the baseline).
    #[arg(long)]
    pub normal: PathBuf,
    /// The incident's period.
    #[arg(long)]
    pub anomalous: PathBuf,
    /// The service map: CSV `caller,callee`.
    #[arg(long)]
    pub map: Option<PathBuf>,
    /// Spans of both periods: CSV `trace_id,span_id,parent_span_id,service,start_unix_nano,
    /// end_unix_nano`.
    #[arg(long)]
    pub spans: Option<PathBuf>,
    /// Log lines of both periods: CSV `time_unix_nano,service,severity,body`.
    #[arg(long)]
    pub logs: Option<PathBuf>,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
}

/// The ranking of one normal and anomalous pair.
pub fn rank_files(normal: &Path, anomalous: &Path) -> anyhow::Result<Ranking> {
    rank_all(normal, anomalous, None, None, None)
}

/// The ranking of one normal and anomalous pair, with the map, spans and log lines given.
pub fn rank_all(
    normal: &Path,
    anomalous: &Path,
    map: Option<&Path>,
    spans: Option<&Path>,
    logs: Option<&Path>,
) -> anyhow::Result<Ranking> {
    let anomalous_text = read(anomalous)?;
    let candidates = rca::candidates_from_csv(&read(normal)?, &anomalous_text)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if candidates.is_empty() {
        bail!("no column is in both files");
    }
    let incident_start = rca::parse_wide_csv(&anomalous_text)
        .ok()
        .and_then(|(times, _)| times.into_iter().min())
        .context("the anomalous file has no rows")?;
    let config = RcaConfig::default();
    let map = map.map(read_map).transpose()?;
    let traces: Vec<TraceEvidence> = match spans {
        Some(path) => trace_evidence(&read_spans(path)?, incident_start, &config)
            .into_values()
            .collect(),
        None => Vec::new(),
    };
    let logs = match logs {
        Some(path) => log_evidence(read_logs(path)?, incident_start),
        None => Vec::new(),
    };
    let input = RcaInput {
        series: &candidates,
        map: map.as_ref(),
        traces: &traces,
        logs: &logs,
    };
    Ok(rca::rank(&input, &config))
}

/// The rows of a CSV file with a header, as maps from column name to cell; `required` names
/// the columns that must be there.
fn csv_rows(path: &Path, required: &[&str]) -> anyhow::Result<Vec<BTreeMap<String, String>>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("`{}` has no header line", path.display()))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    if let Some(missing) = required.iter().find(|r| !header.iter().any(|h| h == *r)) {
        bail!(
            "`{}` has no `{missing}` column (it needs {})",
            path.display(),
            required.join(", ")
        );
    }
    let mut rows = Vec::new();
    for (n, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("`{}` row {}", path.display(), n + 2))?;
        rows.push(
            header
                .iter()
                .cloned()
                .zip(row.iter().map(|c| c.trim().to_owned()))
                .collect(),
        );
    }
    Ok(rows)
}

fn read_map(path: &Path) -> anyhow::Result<ServiceMap> {
    let rows = csv_rows(path, &["caller", "callee"])?;
    Ok(ServiceMap::from_pairs(
        rows.iter()
            .map(|r| (r["caller"].as_str(), r["callee"].as_str()))
            .filter(|(a, b)| !a.is_empty() && !b.is_empty() && a != b),
    ))
}

fn read_spans(path: &Path) -> anyhow::Result<Vec<SpanRecord>> {
    let rows = csv_rows(
        path,
        &[
            "trace_id",
            "span_id",
            "parent_span_id",
            "service",
            "start_unix_nano",
            "end_unix_nano",
        ],
    )?;
    let mut spans = Vec::with_capacity(rows.len());
    for (n, row) in rows.iter().enumerate() {
        let bad = |what: &str| anyhow::anyhow!("`{}` row {}: {what}", path.display(), n + 2);
        spans.push(SpanRecord {
            trace_id: u128::from_str_radix(&row["trace_id"], 16)
                .map_err(|_| bad("`trace_id` is not hex"))?,
            span_id: u64::from_str_radix(&row["span_id"], 16)
                .map_err(|_| bad("`span_id` is not hex"))?,
            parent_span_id: match row["parent_span_id"].as_str() {
                "" => None,
                hex => Some(
                    u64::from_str_radix(hex, 16).map_err(|_| bad("`parent_span_id` is not hex"))?,
                ),
            },
            service: row["service"].clone(),
            start: row["start_unix_nano"]
                .parse()
                .map_err(|_| bad("`start_unix_nano` is not a number"))?,
            end: row["end_unix_nano"]
                .parse()
                .map_err(|_| bad("`end_unix_nano` is not a number"))?,
        });
    }
    Ok(spans)
}

/// One log line, as the log evidence needs it.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// Nanoseconds since the Unix epoch.
    pub time: i64,
    pub service: String,
    /// The OpenTelemetry severity number (0: unknown).
    pub severity: i32,
    pub body: String,
}

fn read_logs(path: &Path) -> anyhow::Result<Vec<LogLine>> {
    let rows = csv_rows(path, &["time_unix_nano", "service", "severity", "body"])?;
    let mut lines = Vec::with_capacity(rows.len());
    for (n, row) in rows.into_iter().enumerate() {
        let bad = |what: &str| anyhow::anyhow!("`{}` row {}: {what}", path.display(), n + 2);
        let severity = match row["severity"].as_str() {
            "" => sextant_model::severity::of_line(&row["body"]).unwrap_or(0),
            text => match text.parse::<i32>() {
                Ok(number @ 1..=24) => number,
                _ => sextant_model::severity::of_name(text)
                    .ok_or_else(|| bad(&format!("severity `{text}` is not a level")))?,
            },
        };
        lines.push(LogLine {
            time: row["time_unix_nano"]
                .parse()
                .map_err(|_| bad("`time_unix_nano` is not a number"))?,
            service: row["service"].clone(),
            severity,
            body: row["body"].clone(),
        });
    }
    Ok(lines)
}

/// The error patterns of `lines` that are evidence: every line mined in time order (the
/// server's miner with its default configuration), the ERROR-and-above lines counted per
/// service and template before and after `incident_start`, then [`rca::log_signals`].
pub fn log_evidence(mut lines: Vec<LogLine>, incident_start: i64) -> Vec<LogSignal> {
    if lines.is_empty() {
        return Vec::new();
    }
    lines.sort_by_key(|l| l.time);
    let mut miner =
        TemplateMiner::new(MinerConfig::default()).expect("the default config is valid");
    let mut counts: BTreeMap<(String, u64), (u64, u64, i64)> = BTreeMap::new();
    let mut mined = Vec::with_capacity(lines.len());
    for line in &lines {
        mined.push(miner.mine(&line.body, line.time).id);
    }
    for (line, id) in lines.iter().zip(mined) {
        if line.severity < sextant_model::severity::ERROR {
            continue;
        }
        let id = miner.resolve(id).unwrap_or(id);
        let entry = counts
            .entry((line.service.clone(), id.0))
            .or_insert((0, 0, i64::MAX));
        if line.time < incident_start {
            entry.0 += 1;
        } else {
            entry.1 += 1;
            entry.2 = entry.2.min(line.time);
        }
    }
    let counts: Vec<PatternCount> = counts
        .into_iter()
        .map(
            |((service, id), (before, in_window, first_seen))| PatternCount {
                service,
                template_id: id,
                template: miner
                    .template(sextant_analytics::patterns::TemplateId(id))
                    .map(|t| t.text())
                    .unwrap_or_default(),
                before,
                in_window,
                first_seen,
            },
        )
        .collect();
    let minutes = |nanos: i64| nanos as f64 / (60 * NANOS_PER_SECOND) as f64;
    let first = lines.first().map_or(incident_start, |l| l.time);
    let last = lines.last().map_or(incident_start, |l| l.time);
    rca::log_signals(
        &counts,
        minutes(incident_start - first),
        minutes(last - incident_start),
    )
}

pub fn run(args: RcaArgs) -> anyhow::Result<()> {
    let ranking = rank_all(
        &args.normal,
        &args.anomalous,
        args.map.as_deref(),
        args.spans.as_deref(),
        args.logs.as_deref(),
    )?;
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
        // The shape of a live incident's ranking (`GET /api/v1/incidents/ID/rca`).
        serde_json::to_string_pretty(&json!({
            "ranking": {"services": entries, "series_considered": ranking.series.len()}
        }))?
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
