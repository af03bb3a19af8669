//! `sextant eval nezha`: the root-cause ranking scored on recorded days of the Nezha dataset
//! (microservice systems on Kubernetes with one fault injected into one pod at a time), in the
//! dataset's own layout: `DAY/DAY-fault_list.json`, `DAY/metric/<pod>_metric.csv` (a row per
//! minute per pod), `DAY/metric/dependency.csv` (caller, callee).
//!
//! For every fault, the candidate series are every metric column of every service (a pod's
//! name without its two trailing hash segments): the baseline is the 30 minutes before the
//! injection without the minutes that fall within 5 minutes after any other fault, the incident
//! the 5 minutes after it. Each fault is ranked three ways: Sextant's ranking on the metrics
//! alone, the same with the call graph, and a trivial reference (a service's largest |z| of the
//! window means, the spread floored at 1 % of the baseline mean). Accuracy is reported at
//! service level (AC@1, AC@3, Avg@5) per day and per fault type.
//!
//! Times come from each row's `Time` text when it parses (the `TimeStamp` column is damaged in
//! places), else from `TimeStamp`. Unparsable cells are gaps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sextant_incidents::rca::{self, CandidateSeries, RcaConfig, RcaInput};
use sextant_incidents::topology::ServiceMap;
use sextant_model::time::{NANOS_PER_SECOND, parse_rfc3339};

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
    })
}

/// The candidate series of `fault`: each series' baseline and incident windows.
fn candidates(day: &Day, fault: &Fault) -> Vec<CandidateSeries> {
    let incident = INCIDENT_SECONDS * NANOS_PER_SECOND;
    let others: Vec<i64> = day
        .faults
        .iter()
        .map(|f| f.at)
        .filter(|at| *at != fault.at)
        .collect();
    let in_baseline = |t: i64| {
        t >= fault.at - BASELINE_SECONDS * NANOS_PER_SECOND
            && t < fault.at
            && !others.iter().any(|o| t >= *o && t <= o + incident)
    };
    day.series
        .iter()
        .map(|((service, metric), values)| CandidateSeries {
            service: service.clone(),
            metric: metric.clone(),
            normal: values
                .iter()
                .filter(|(t, _)| in_baseline(*t))
                .map(|(_, v)| *v)
                .collect(),
            anomalous: values
                .iter()
                .filter(|(t, _)| *t >= fault.at && *t < fault.at + incident)
                .copied()
                .collect(),
        })
        .collect()
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

/// The rankers compared, by name.
const RANKERS: [&str; 3] = ["sextant", "sextant+map", "trivial"];

/// One fault's outcome: the true service's rank (1-based) under each ranker.
struct Outcome {
    day: String,
    kind: String,
    ranks: [Option<usize>; 3],
}

fn position(services: &[String], wanted: &str) -> Option<usize> {
    services.iter().position(|s| s == wanted).map(|i| i + 1)
}

/// Every day under `dir`, read.
fn read_days(dir: &Path) -> anyhow::Result<Vec<Day>> {
    day_dirs(dir)?.iter().map(|d| read_day(d)).collect()
}

/// The ablation: AC@1, AC@3 and Avg@5 of the ranking with the call graph, per day and over
/// all faults, with every rule and with each rule turned off in turn.
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
            let map =
                ServiceMap::from_pairs(day.edges.iter().map(|(a, b)| (a.as_str(), b.as_str())));
            let ranks: Vec<Option<usize>> = day
                .faults
                .iter()
                .map(|fault| {
                    let candidates = candidates(day, fault);
                    let ranking = rca::rank(
                        &RcaInput {
                            series: &candidates,
                            map: (!day.edges.is_empty()).then_some(&map),
                            ..RcaInput::default()
                        },
                        &config,
                    );
                    ranking
                        .services
                        .iter()
                        .position(|s| s.service == fault.service)
                        .map(|i| i + 1)
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
        "{:<11} {:<20} {:<15} {:<28} {:>7} {:>11} {:>7}  ranked first (sextant+map)",
        "day", "injected (UTC s)", "type", "true service", RANKERS[0], RANKERS[1], RANKERS[2]
    );
    for day in read_days(dir)? {
        let map = ServiceMap::from_pairs(day.edges.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        for fault in &day.faults {
            let candidates = candidates(&day, fault);
            let alone = rca::rank(
                &RcaInput {
                    series: &candidates,
                    ..RcaInput::default()
                },
                &config,
            );
            let with_map = rca::rank(
                &RcaInput {
                    series: &candidates,
                    map: (!day.edges.is_empty()).then_some(&map),
                    ..RcaInput::default()
                },
                &config,
            );
            let names = |r: &rca::Ranking| -> Vec<String> {
                r.services.iter().map(|s| s.service.clone()).collect()
            };
            let ranks = [
                position(&names(&alone), &fault.service),
                position(&names(&with_map), &fault.service),
                position(&trivial_ranking(&candidates), &fault.service),
            ];
            let show = |r: Option<usize>| r.map_or("-".to_owned(), |r| r.to_string());
            let first = with_map
                .services
                .first()
                .map_or(String::new(), |s| format!("{} ({})", s.service, s.metric));
            println!(
                "{:<11} {:<20} {:<15} {:<28} {:>7} {:>11} {:>7}  {first}",
                day.name,
                fault.at / NANOS_PER_SECOND,
                fault.kind,
                fault.service,
                show(ranks[0]),
                show(ranks[1]),
                show(ranks[2]),
            );
            if explain {
                let true_rank = ranks[1].unwrap_or(usize::MAX);
                for (i, s) in with_map.services.iter().enumerate() {
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
