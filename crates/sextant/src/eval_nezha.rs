//! `sextant eval nezha`: the root-cause ranking scored on recorded days of the Nezha dataset
//! (microservice systems on Kubernetes with one fault injected into one pod at a time), in the
//! dataset's own layout: `DAY/DAY-fault_list.json`, `DAY/metric/<pod>_metric.csv` (a row per
//! minute per pod), `DAY/metric/dependency.csv` (caller, callee).
//!
//! For every fault, the candidate series are every metric column of every service (a pod's
//! name without its two trailing hash segments): the baseline is the 30 minutes before the
//! injection without the minutes that fall within 5 minutes after any other fault, the incident
//! the 5 minutes after it; the spans of `DAY/trace/*.csv` and the lines of `DAY/log/*.csv` in
//! the same windows give the trace and log evidence. Each fault is ranked four ways: Sextant's
//! ranking on the metrics alone, with the call graph (`dependency.csv`, else the calls the
//! spans show), with the call graph, the spans and the lines ("all"), and a trivial reference (a service's largest |z| of the window means, the spread
//! floored at 1 % of the baseline mean). Accuracy is reported at service level (AC@1, AC@3,
//! Avg@5) per day and per fault type, and each fault's line says how many spans and log lines
//! its incident window holds (the dataset lacks them for some).
//!
//! Times come from each row's `Time` text when it parses (the `TimeStamp` column is damaged in
//! places), else from `TimeStamp`. Unparsable cells are gaps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sextant_incidents::rca::traces::{SpanRecord, TraceEvidence, call_pairs, trace_evidence};
use sextant_incidents::rca::{self, CandidateSeries, LogSignal, RcaConfig, RcaInput};
use sextant_incidents::topology::ServiceMap;
use sextant_model::time::{NANOS_PER_SECOND, parse_rfc3339};

use crate::rca::{LogLine, log_evidence};

pub mod live;

/// Baseline before an injection, and the incident after it, in seconds.
const BASELINE_SECONDS: i64 = 30 * 60;
const INCIDENT_SECONDS: i64 = 5 * 60;

/// One injected fault.
#[derive(Clone, Debug)]
struct Fault {
    /// Nanoseconds since the Unix epoch.
    at: i64,
    service: String,
    kind: String,
}

/// A metric series: (time in nanoseconds, value), in time order.
type Series = Vec<(i64, f64)>;

/// One recorded day, read.
struct Day {
    name: String,
    faults: Vec<Fault>,
    series: BTreeMap<(String, String), Series>,
    edges: Vec<(String, String)>,
    spans: Vec<SpanRecord>,
    lines: Vec<LogLine>,
}

/// A pod's service: its name without the two trailing hash segments
/// (`cartservice-579f59597d-wc2lz` is `cartservice`).
fn service_of_pod(pod: &str) -> String {
    let mut parts: Vec<&str> = pod.split('-').collect();
    if parts.len() > 2 {
        parts.truncate(parts.len() - 2);
    }
    parts.join("-")
}

/// `2022-08-22 03:51:19.799087274 +0000 UTC m=+0.30` as nanoseconds.
fn parse_time_text(text: &str) -> Option<i64> {
    let mut words = text.split_whitespace();
    let (date, time, offset) = (words.next()?, words.next()?, words.next()?);
    if offset.len() != 5 {
        return None;
    }
    parse_rfc3339(&format!("{date}T{time}{}:{}", &offset[..3], &offset[3..]))
}

/// The day folders under `dir` (or `dir` itself): those holding `*-fault_list.json`.
fn day_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let has_faults = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .ends_with("-fault_list.json")
            })
        })
    };
    if has_faults(dir) {
        return Ok(vec![dir.to_owned()]);
    }
    let mut days: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read `{}`", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && has_faults(p))
        .collect();
    days.sort();
    if days.is_empty() {
        bail!(
            "no day folder with a `*-fault_list.json` under `{}`",
            dir.display()
        );
    }
    Ok(days)
}

fn read_faults(dir: &Path) -> anyhow::Result<Vec<Fault>> {
    let file = std::fs::read_dir(dir)?
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with("-fault_list.json")
        })
        .context("no fault list")?
        .path();
    let text = std::fs::read_to_string(&file)?;
    let hours: BTreeMap<String, Vec<serde_json::Value>> = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a fault list", file.display()))?;
    let mut faults = Vec::new();
    for fault in hours.values().flatten() {
        let seconds: i64 = match &fault["inject_timestamp"] {
            serde_json::Value::String(s) => s.trim().parse().ok(),
            other => other.as_i64(),
        }
        .with_context(|| format!("a fault without `inject_timestamp`: {fault}"))?;
        let pod = fault["inject_pod"].as_str().context("no `inject_pod`")?;
        faults.push(Fault {
            at: seconds * NANOS_PER_SECOND,
            service: service_of_pod(pod),
            kind: fault["inject_type"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned(),
        });
    }
    faults.sort_by_key(|f| f.at);
    Ok(faults)
}

/// Every `metric/*_metric.csv`: per (service, column), its values in time order.
fn read_metrics(dir: &Path) -> anyhow::Result<BTreeMap<(String, String), Series>> {
    let mut series: BTreeMap<(String, String), Series> = BTreeMap::new();
    let metric_dir = dir.join("metric");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&metric_dir)
        .with_context(|| format!("cannot read `{}`", metric_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("_metric.csv"))
        .collect();
    files.sort();
    for file in files {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(&file)
            .with_context(|| format!("cannot read `{}`", file.display()))?;
        let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
        let column = |name: &str| header.iter().position(|h| h == name);
        let (time_text, time_stamp, pod) = (column("Time"), column("TimeStamp"), column("PodName"));
        let skip = [time_text, time_stamp, pod];
        for row in reader.records() {
            let Ok(row) = row else { continue };
            let at = time_text
                .and_then(|i| row.get(i))
                .and_then(parse_time_text)
                .or_else(|| {
                    time_stamp
                        .and_then(|i| row.get(i))
                        .and_then(|s| s.trim().parse::<i64>().ok())
                        .map(|s| s * NANOS_PER_SECOND)
                });
            let (Some(at), Some(pod)) = (at, pod.and_then(|i| row.get(i))) else {
                continue;
            };
            let service = service_of_pod(pod);
            for (i, name) in header.iter().enumerate() {
                if skip.contains(&Some(i)) {
                    continue;
                }
                let value = row
                    .get(i)
                    .and_then(|c| c.trim().parse::<f64>().ok())
                    .unwrap_or(f64::NAN);
                series
                    .entry((service.clone(), name.clone()))
                    .or_default()
                    .push((at, value));
            }
        }
    }
    for values in series.values_mut() {
        values.sort_by_key(|(t, _)| *t);
    }
    Ok(series)
}

/// `metric/dependency.csv` as (caller, callee) pairs; none when the file is missing.
fn read_edges(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let path = dir.join("metric/dependency.csv");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut reader = csv::Reader::from_path(&path)?;
    let mut edges = Vec::new();
    for row in reader.records() {
        let row = row?;
        if let (Some(from), Some(to)) = (row.get(0), row.get(1))
            && from != to
        {
            edges.push((from.trim().to_owned(), to.trim().to_owned()));
        }
    }
    Ok(edges)
}

fn read_day(dir: &Path) -> anyhow::Result<Day> {
    Ok(Day {
        name: dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        faults: read_faults(dir)?,
        series: read_metrics(dir)?,
        edges: read_edges(dir)?,
        spans: read_spans(dir)?,
        lines: read_lines(dir)?,
    })
}

/// The candidate series of `fault`: each series' baseline and incident windows.
fn candidates(day: &Day, fault: &Fault) -> Vec<CandidateSeries> {
    let incident_end = fault.at + INCIDENT_SECONDS * NANOS_PER_SECOND;
    day.series
        .iter()
        .map(|((service, metric), values)| CandidateSeries {
            service: service.clone(),
            metric: metric.clone(),
            normal: values
                .iter()
                .filter(|(t, _)| in_baseline(day, fault, *t))
                .map(|(_, v)| *v)
                .collect(),
            anomalous: values
                .iter()
                .filter(|(t, _)| *t >= fault.at && *t < incident_end)
                .copied()
                .collect(),
        })
        .collect()
}

/// The CSV files of `dir/folder`, sorted; none when the folder is missing.
fn csv_files(dir: &Path, folder: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join(folder)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    files
}

/// A CSV file's reader and the positions of the columns `names`; the error names the file.
fn open_columns<const N: usize>(
    file: &Path,
    names: [&str; N],
) -> anyhow::Result<(csv::Reader<std::fs::File>, [usize; N])> {
    let mut reader = csv::Reader::from_path(file)
        .with_context(|| format!("cannot read `{}`", file.display()))?;
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let mut positions = [0; N];
    for (position, name) in positions.iter_mut().zip(names) {
        *position = header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("`{}` has no `{name}` column", file.display()))?;
    }
    Ok((reader, positions))
}

/// Every `log/*.csv` (`TimeUnixNano`, `PodName`, `Log`: the container's JSON line, whose `log`
/// is the program's line); the level is the line's own (a JSON `severity` or `level`, else the
/// first level word). None when the folder is missing.
fn read_lines(dir: &Path) -> anyhow::Result<Vec<LogLine>> {
    let mut services: BTreeMap<String, String> = BTreeMap::new();
    let mut lines = Vec::new();
    for file in csv_files(dir, "log") {
        let (mut reader, [time, pod, log]) =
            open_columns(&file, ["TimeUnixNano", "PodName", "Log"])?;
        for row in reader.records().flatten() {
            let field = |i: usize| row.get(i).unwrap_or_default().trim();
            let Ok(time) = field(time).parse::<i64>() else {
                continue;
            };
            let raw = field(log);
            let body = serde_json::from_str::<serde_json::Value>(raw)
                .ok()
                .and_then(|v| v["log"].as_str().map(|s| s.trim_end().to_owned()))
                .unwrap_or_else(|| raw.to_owned());
            let named = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    ["severity", "level"]
                        .iter()
                        .find_map(|k| v[*k].as_str().and_then(sextant_model::severity::of_name))
                });
            let severity = named
                .or_else(|| sextant_model::severity::of_line(&body))
                .unwrap_or(0);
            let pod = field(pod);
            let service = services
                .entry(pod.to_owned())
                .or_insert_with(|| service_of_pod(pod))
                .clone();
            lines.push(LogLine {
                time,
                service,
                severity,
                body,
            });
        }
    }
    Ok(lines)
}

/// Every `trace/*.csv` (`TraceID`, `SpanID`, `ParentID` (`root` for none), `PodName`,
/// `StartTimeUnixNano`, `EndTimeUnixNano`); rows that do not parse are skipped. None when the
/// folder is missing.
fn read_spans(dir: &Path) -> anyhow::Result<Vec<SpanRecord>> {
    let mut services: BTreeMap<String, String> = BTreeMap::new();
    let mut spans = Vec::new();
    for file in csv_files(dir, "trace") {
        let (mut reader, [trace, span, parent, pod, start, end]) = open_columns(
            &file,
            [
                "TraceID",
                "SpanID",
                "ParentID",
                "PodName",
                "StartTimeUnixNano",
                "EndTimeUnixNano",
            ],
        )?;
        for row in reader.records().flatten() {
            let field = |i: usize| row.get(i).unwrap_or_default().trim();
            let (Ok(trace_id), Ok(span_id), Ok(start), Ok(end)) = (
                u128::from_str_radix(field(trace), 16),
                u64::from_str_radix(field(span), 16),
                field(start).parse::<i64>(),
                field(end).parse::<i64>(),
            ) else {
                continue;
            };
            let pod = field(pod);
            let service = services
                .entry(pod.to_owned())
                .or_insert_with(|| service_of_pod(pod))
                .clone();
            spans.push(SpanRecord {
                trace_id,
                span_id,
                parent_span_id: u64::from_str_radix(field(parent), 16).ok(),
                service,
                start,
                end,
            });
        }
    }
    Ok(spans)
}

/// The trivial reference: services by their largest |z| of the window means, the spread
/// floored at 1 % of the baseline mean.
fn trivial_ranking(candidates: &[CandidateSeries]) -> Vec<String> {
    let mut best: BTreeMap<&str, f64> = BTreeMap::new();
    for c in candidates {
        let normal: Vec<f64> = c.normal.iter().copied().filter(|v| v.is_finite()).collect();
        let window: Vec<f64> = c
            .anomalous
            .iter()
            .map(|(_, v)| *v)
            .filter(|v| v.is_finite())
            .collect();
        if normal.is_empty() || window.is_empty() {
            continue;
        }
        let mean = normal.iter().sum::<f64>() / normal.len() as f64;
        let std =
            (normal.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / normal.len() as f64).sqrt();
        let spread = std.max(0.01 * mean.abs());
        if spread == 0.0 {
            continue;
        }
        let z = ((window.iter().sum::<f64>() / window.len() as f64 - mean) / spread).abs();
        let entry = best.entry(&c.service).or_insert(0.0);
        *entry = entry.max(z);
    }
    let mut ranked: Vec<(&str, f64)> = best.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked.into_iter().map(|(s, _)| s.to_owned()).collect()
}

/// The rankers compared, by name: Sextant's ranking on the metrics alone, with the call graph,
/// with the call graph, the spans and the log lines, and the trivial reference.
const RANKERS: [&str; 4] = ["metrics", "+map", "all", "trivial"];

/// One fault's inputs, gathered from its day.
struct Case {
    candidates: Vec<CandidateSeries>,
    /// Trace evidence of the fault's windows; empty without spans there.
    traces: Vec<TraceEvidence>,
    /// Error patterns new or spiking in the incident.
    logs: Vec<LogSignal>,
    /// Spans and log lines in the incident window.
    incident_spans: usize,
    incident_lines: usize,
}

impl Case {
    /// The services each ranker puts first, in order.
    fn rankings(&self, map: Option<&ServiceMap>, config: &RcaConfig) -> [Vec<String>; 4] {
        let rank = |map, traces: &[TraceEvidence], logs: &[LogSignal]| {
            rca::rank(
                &RcaInput {
                    series: &self.candidates,
                    map,
                    traces,
                    logs,
                },
                config,
            )
            .services
            .into_iter()
            .map(|s| s.service)
            .collect::<Vec<String>>()
        };
        [
            rank(None, &[], &[]),
            rank(map, &[], &[]),
            rank(map, &self.traces, &self.logs),
            trivial_ranking(&self.candidates),
        ]
    }
}

/// The baseline of `fault`: 30 minutes before it, less the 5 minutes after any other fault.
fn in_baseline(day: &Day, fault: &Fault, t: i64) -> bool {
    let incident = INCIDENT_SECONDS * NANOS_PER_SECOND;
    t >= fault.at - BASELINE_SECONDS * NANOS_PER_SECOND
        && t < fault.at
        && !day
            .faults
            .iter()
            .any(|o| o.at != fault.at && t >= o.at && t <= o.at + incident)
}

fn case(day: &Day, fault: &Fault, config: &RcaConfig) -> Case {
    let incident_end = fault.at + INCIDENT_SECONDS * NANOS_PER_SECOND;
    let spans: Vec<SpanRecord> = day
        .spans
        .iter()
        .filter(|s| {
            in_baseline(day, fault, s.start) || (s.start >= fault.at && s.start < incident_end)
        })
        .cloned()
        .collect();
    let incident_spans = spans.iter().filter(|s| s.start >= fault.at).count();
    let lines: Vec<LogLine> = day
        .lines
        .iter()
        .filter(|l| {
            in_baseline(day, fault, l.time) || (l.time >= fault.at && l.time < incident_end)
        })
        .cloned()
        .collect();
    let incident_lines = lines.iter().filter(|l| l.time >= fault.at).count();
    Case {
        candidates: candidates(day, fault),
        traces: trace_evidence(&spans, fault.at, config)
            .into_values()
            .collect(),
        logs: log_evidence(lines, fault.at),
        incident_spans,
        incident_lines,
    }
}

/// The day's call graph: `metric/dependency.csv`, else the calls its spans show.
fn service_map(day: &Day) -> Option<ServiceMap> {
    let pairs = if day.edges.is_empty() {
        call_pairs(&day.spans)
    } else {
        day.edges.clone()
    };
    (!pairs.is_empty())
        .then(|| ServiceMap::from_pairs(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str()))))
}

/// One fault's outcome: the true service's rank (1-based) under each ranker.
struct Outcome {
    day: String,
    kind: String,
    ranks: [Option<usize>; 4],
}

fn position(services: &[String], wanted: &str) -> Option<usize> {
    services.iter().position(|s| s == wanted).map(|i| i + 1)
}

/// Every day under `dir`, read.
fn read_days(dir: &Path) -> anyhow::Result<Vec<Day>> {
    day_dirs(dir)?.iter().map(|d| read_day(d)).collect()
}

/// The ablation: AC@1, AC@3 and Avg@5 of the ranking with the call graph and the spans, per
/// day and over all faults, with every rule and with each rule turned off in turn.
pub fn ablation(dir: &Path) -> anyhow::Result<()> {
    let days = read_days(dir)?;
    let base = RcaConfig::default();
    let mut variants = vec![("all rules", base.clone())];
    variants.extend(base.ablations());
    let mut header = format!("{:<30}", "");
    let mut columns = format!("{:<30}", "configuration");
    for name in days.iter().map(|d| d.name.as_str()).chain(["all"]) {
        header.push_str(&format!(" {name:>20}"));
        columns.push_str(&format!(" {:>8} {:>5} {:>5}", "AC@1", "AC@3", "Avg@5"));
    }
    println!("{header}\n{columns}");
    for (name, config) in variants {
        let mut line = format!("{name:<30}");
        let mut all = Vec::new();
        for day in &days {
            let map = service_map(day);
            let ranks: Vec<Option<usize>> = day
                .faults
                .iter()
                .map(|fault| {
                    let [_, _, full, _] = case(day, fault, &config).rankings(map.as_ref(), &config);
                    position(&full, &fault.service)
                })
                .collect();
            line.push_str(&scores(&ranks));
            all.extend(ranks);
        }
        line.push_str(&scores(&all));
        println!("{line}");
    }
    Ok(())
}

/// `AC@1 AC@3 Avg@5` of `ranks`, as table cells.
fn scores(ranks: &[Option<usize>]) -> String {
    format!(
        " {:>8.3} {:>5.3} {:>5.3}",
        rca::accuracy_at(ranks, 1),
        rca::accuracy_at(ranks, 3),
        rca::average_at_5(ranks)
    )
}

pub fn eval(dir: &Path, explain: bool) -> anyhow::Result<()> {
    let config = RcaConfig::default();
    let mut outcomes = Vec::new();
    println!(
        "{:<11} {:<12} {:<15} {:<28} {:>7} {:>7} {:>7} {:>5} {:>5} {:>7}  ranked first (all)",
        "day",
        "injected",
        "type",
        "true service",
        "spans",
        "lines",
        RANKERS[0],
        RANKERS[1],
        RANKERS[2],
        RANKERS[3],
    );
    for day in read_days(dir)? {
        let map = service_map(&day);
        for fault in &day.faults {
            let case = case(&day, fault, &config);
            let rankings = case.rankings(map.as_ref(), &config);
            let ranks = rankings
                .each_ref()
                .map(|order| position(order, &fault.service));
            let show = |r: Option<usize>| r.map_or("-".to_owned(), |r| r.to_string());
            println!(
                "{:<11} {:<12} {:<15} {:<28} {:>7} {:>7} {:>7} {:>5} {:>5} {:>7}  {}",
                day.name,
                fault.at / NANOS_PER_SECOND,
                fault.kind,
                fault.service,
                case.incident_spans,
                case.incident_lines,
                show(ranks[0]),
                show(ranks[1]),
                show(ranks[2]),
                show(ranks[3]),
                rankings[2].first().map_or("", String::as_str),
            );
            if explain {
                let ranking = rca::rank(
                    &RcaInput {
                        series: &case.candidates,
                        map: map.as_ref(),
                        traces: &case.traces,
                        logs: &case.logs,
                    },
                    &config,
                );
                let true_rank = ranks[2].unwrap_or(usize::MAX);
                for (i, s) in ranking.services.iter().enumerate() {
                    if i < 3 || i + 1 == true_rank {
                        println!("    {}", s.sentence);
                    }
                }
            }
            outcomes.push(Outcome {
                day: day.name.clone(),
                kind: fault.kind.clone(),
                ranks,
            });
        }
    }
    println!();
    println!(
        "{:<28} {:<12} {:>6} {:>6} {:>6} {:>7}",
        "faults", "ranker", "AC@1", "AC@3", "Avg@5", "faults"
    );
    let mut groups: BTreeMap<String, Vec<&Outcome>> = BTreeMap::new();
    for o in &outcomes {
        groups.entry(format!("day {}", o.day)).or_default().push(o);
        groups
            .entry(format!("type {}", o.kind))
            .or_default()
            .push(o);
        groups.entry("all".into()).or_default().push(o);
    }
    for (group, members) in &groups {
        for (i, ranker) in RANKERS.iter().enumerate() {
            let ranks: Vec<Option<usize>> = members.iter().map(|o| o.ranks[i]).collect();
            println!(
                "{:<28} {:<12} {:>6.3} {:>6.3} {:>6.3} {:>7}",
                if i == 0 { group.as_str() } else { "" },
                ranker,
                rca::accuracy_at(&ranks, 1),
                rca::accuracy_at(&ranks, 3),
                rca::average_at_5(&ranks),
                ranks.len()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_name_their_service() {
        assert_eq!(
            service_of_pod("cartservice-579f59597d-wc2lz"),
            "cartservice"
        );
        assert_eq!(
            service_of_pod("ts-contacts-service-866bd68c97-dzqgd"),
            "ts-contacts-service"
        );
        assert_eq!(service_of_pod("redis"), "redis");
    }

    #[test]
    fn time_texts_parse_with_their_offset() {
        assert_eq!(
            parse_time_text("2022-08-22 03:51:19.799087274 +0000 UTC m=+0.305041286"),
            Some(1_661_140_279_799_087_274)
        );
        assert_eq!(
            parse_time_text("2022-08-22 05:51:19 +0200 CEST"),
            Some(1_661_140_279_000_000_000)
        );
        assert_eq!(parse_time_text("1661140279"), None);
    }
}
