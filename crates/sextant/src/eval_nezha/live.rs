//! `sextant eval nezha --live`: each recorded day through the live pipeline. The day's metric
//! rows, spans and log lines become OTLP export requests, minute by minute in time order
//! (metrics, then spans, then lines of each minute), and are imported into a fresh data
//! directory by [`Importer`], which runs the detectors, the correlator and the ranking on the
//! records' own time. Each fault is then matched to the incident that covers it (of those
//! whose life overlaps the five minutes after the injection, the one opened nearest the
//! injection) and scored twice: by the ranking an on-call engineer saw five minutes into the
//! fault (the last version computed from the incident's evidence up to then; the first
//! version if none was), and by the incident's final ranking, which later trouble joining the
//! same incident may have turned to another cause. Besides all faults, the figures cover the
//! faults with at least 30 minutes of recorded data before them: no detector can judge a
//! series it has not seen for its warm-up, and some days' data starts minutes before the first
//! fault.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use serde_json::json;
use sextant_incidents::correlator::Incident;
use sextant_ingest::otlp::Encoding;
use sextant_model::time::NANOS_PER_SECOND;
use sextant_model::{Signal, TenantId};

use super::{Day, Outcome, position, read_days, scores};
use crate::config::SextantConfig;
use crate::import::Importer;

const MINUTE: i64 = 60 * NANOS_PER_SECOND;

/// Recorded data a fault needs before it for the detectors to have learnt anything: their
/// warm-up (30 points) at the day's one metric row a minute.
fn history() -> i64 {
    sextant_analytics::anomaly::DetectorConfig::default().warm_up_points as i64 * MINUTE
}

/// Spans or lines per export request at most, so a busy minute stays well under the body limit.
const PER_REQUEST: usize = 2_000;

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![crate::demo::attribute("service.name", service)],
        ..Default::default()
    })
}

/// The minute (start, in ns) `t` falls in.
fn minute_of(t: i64) -> i64 {
    t.div_euclid(MINUTE) * MINUTE
}

/// One minute of a day, by signal, as export requests.
#[derive(Default)]
struct Minute {
    /// service → metric column → points.
    metrics: BTreeMap<String, BTreeMap<String, Vec<NumberDataPoint>>>,
    /// service → spans.
    spans: BTreeMap<String, Vec<Span>>,
    /// service → log records.
    lines: BTreeMap<String, Vec<LogRecord>>,
}

/// The day's telemetry, minute by minute, in time order, and how many records were left out
/// for a time before 1970 (damaged in the data; OTLP times are unsigned).
fn minutes(day: &Day) -> (BTreeMap<i64, Minute>, usize) {
    let mut minutes: BTreeMap<i64, Minute> = BTreeMap::new();
    let mut unusable = 0;
    for ((service, column), points) in &day.series {
        for &(t, value) in points {
            if !value.is_finite() {
                continue;
            }
            if t <= 0 {
                unusable += 1;
                continue;
            }
            minutes
                .entry(minute_of(t))
                .or_default()
                .metrics
                .entry(service.clone())
                .or_default()
                .entry(column.clone())
                .or_default()
                .push(NumberDataPoint {
                    time_unix_nano: t as u64,
                    value: Some(number_data_point::Value::AsDouble(value)),
                    ..Default::default()
                });
        }
    }
    for record in &day.spans {
        if record.start <= 0 {
            unusable += 1;
            continue;
        }
        minutes
            .entry(minute_of(record.start))
            .or_default()
            .spans
            .entry(record.service.clone())
            .or_default()
            .push(Span {
                trace_id: record.trace_id.to_be_bytes().to_vec(),
                span_id: record.span_id.to_be_bytes().to_vec(),
                parent_span_id: record
                    .parent_span_id
                    .map_or_else(Vec::new, |p| p.to_be_bytes().to_vec()),
                name: record.service.clone(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: record.start as u64,
                end_time_unix_nano: record.end.max(record.start) as u64,
                ..Default::default()
            });
    }
    for line in &day.lines {
        if line.time <= 0 {
            unusable += 1;
            continue;
        }
        minutes
            .entry(minute_of(line.time))
            .or_default()
            .lines
            .entry(line.service.clone())
            .or_default()
            .push(LogRecord {
                time_unix_nano: line.time as u64,
                severity_number: line.severity,
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(line.body.clone())),
                }),
                ..Default::default()
            });
    }
    (minutes, unusable)
}

/// A minute's requests: (signal, protobuf body).
fn requests(minute: Minute) -> Vec<(Signal, Vec<u8>)> {
    let mut out = Vec::new();
    if !minute.metrics.is_empty() {
        let request = ExportMetricsServiceRequest {
            resource_metrics: minute
                .metrics
                .into_iter()
                .map(|(service, columns)| ResourceMetrics {
                    resource: resource(&service),
                    scope_metrics: vec![ScopeMetrics {
                        metrics: columns
                            .into_iter()
                            .map(|(name, data_points)| Metric {
                                name,
                                data: Some(metric::Data::Gauge(Gauge { data_points })),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        out.push((Signal::Metrics, request.encode_to_vec()));
    }
    for (service, spans) in minute.spans {
        for chunk in spans.chunks(PER_REQUEST) {
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: resource(&service),
                    scope_spans: vec![ScopeSpans {
                        spans: chunk.to_vec(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            out.push((Signal::Traces, request.encode_to_vec()));
        }
    }
    for (service, lines) in minute.lines {
        for chunk in lines.chunks(PER_REQUEST) {
            let request = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: resource(&service),
                    scope_logs: vec![ScopeLogs {
                        log_records: chunk.to_vec(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            out.push((Signal::Logs, request.encode_to_vec()));
        }
    }
    out
}

/// The incident covering a fault injected at `at`: of those alive at some time in the five
/// minutes after it, the one opened nearest to it.
fn covering(incidents: &[Incident], at: i64) -> Option<&Incident> {
    let end = at + super::INCIDENT_SECONDS * NANOS_PER_SECOND;
    incidents
        .iter()
        .filter(|i| {
            if i.merged_into.is_some() {
                return false;
            }
            let last = i.resolved_at.unwrap_or(i64::MAX).max(i.updated_at);
            i.opened_at <= end && last >= at
        })
        .min_by_key(|i| ((i.opened_at - at).abs(), i.id))
}

/// An incident's ranking versions, oldest first: the event time its evidence reached (the
/// incident's `updated_at` when it was ranked) and the services in ranked order.
type Versions = Vec<(i64, Vec<String>)>;

/// The services of the ranking seen at `at`: the last version whose evidence reached no later
/// than `at`, or the first version when every one came later.
fn ranked_at(versions: &Versions, at: i64) -> &[String] {
    versions
        .iter()
        .rev()
        .find(|(evidence, _)| *evidence <= at)
        .or(versions.first())
        .map_or(&[], |(_, services)| services.as_slice())
}

/// The ranking versions of incident `id` (see [`Versions`]).
fn versions(
    meta: &dyn sextant_store::meta::IncidentStore,
    tenant: &TenantId,
    id: u64,
) -> anyhow::Result<Versions> {
    let mut versions: Versions = meta
        .rankings(tenant, id, 100_000)?
        .into_iter()
        .filter_map(|(_, _, body)| {
            let ranking: serde_json::Value = serde_json::from_str(&body).ok()?;
            let evidence = ranking["basis"]["updated_at"].as_i64()?;
            let services = ranking["services"]
                .as_array()?
                .iter()
                .filter_map(|s| s["service"].as_str().map(str::to_owned))
                .collect();
            Some((evidence, services))
        })
        .collect();
    // Stored newest first.
    versions.reverse();
    Ok(versions)
}

/// Imports every day under `dir` into a fresh data directory under `work` and scores the
/// rankings of the incidents that cover the faults; one JSON line per fault into `output`.
pub fn eval(dir: &Path, work: &Path, output: Option<&Path>) -> anyhow::Result<()> {
    let mut out: Option<Box<dyn Write>> = match output {
        Some(path) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create `{}`", path.display()))?,
        ))),
        None => None,
    };
    let tenant = TenantId::new("nezha").expect("a valid tenant");
    let mut outcomes = Vec::new();
    // Per outcome: whether the day had [`history`] of data before the fault.
    let mut with_history = Vec::new();
    println!(
        "{:<11} {:<12} {:<15} {:<28} {:>8} {:>9} {:>5}  ranked first",
        "day", "injected", "type", "true service", "incident", "services", "rank"
    );
    for day in read_days(dir)? {
        let data_dir = work.join(&day.name);
        if data_dir.exists() {
            // Only an earlier evaluation's data directory is emptied, never another folder.
            if !data_dir.join("meta.db").exists() {
                anyhow::bail!(
                    "`{}` exists and is not a Sextant data directory; give `--live` another folder",
                    data_dir.display()
                );
            }
            std::fs::remove_dir_all(&data_dir)
                .with_context(|| format!("cannot empty `{}`", data_dir.display()))?;
        }
        let mut config = SextantConfig {
            data_dir: data_dir.clone(),
            ..SextantConfig::default()
        };
        // The recorded days are years old: keep them all.
        config
            .storage
            .retention_days_per_tenant
            .insert(tenant.to_string(), 36_500);
        let started = std::time::Instant::now();
        let mut importer = Importer::open(config, tenant.clone())?;
        let (minutes, unusable) = minutes(&day);
        let first_minute = minutes.keys().next().copied().unwrap_or(i64::MAX);
        for (n, (_, minute)) in minutes.into_iter().enumerate() {
            for (signal, body) in requests(minute) {
                importer.request(
                    Ok(signal),
                    Encoding::protobuf(),
                    Bytes::from(body),
                    &format!("{} minute {n}", day.name),
                )?;
            }
        }
        let (tally, meta) = importer.finish();
        let rows = meta.incidents(&tenant, &Default::default())?;
        let incidents: Vec<Incident> = rows
            .iter()
            .filter_map(|row| serde_json::from_str(&row.body).ok())
            .collect();
        eprintln!(
            "{}: imported {} requests ({} records, {} requests refused, {unusable} records with \
             times before 1970 left out) in {:.0} s: {} incidents",
            day.name,
            tally.requests,
            tally.records,
            tally.problems.len(),
            started.elapsed().as_secs_f64(),
            incidents.len()
        );
        for problem in tally.problems.iter().take(5) {
            eprintln!("  {problem}");
        }
        for (index, fault) in day.faults.iter().enumerate() {
            let incident = covering(&incidents, fault.at);
            let versions = match incident {
                Some(incident) => versions(meta.as_ref(), &tenant, incident.id)?,
                None => Vec::new(),
            };
            let seen_at = fault.at + super::INCIDENT_SECONDS * NANOS_PER_SECOND;
            let ranked = ranked_at(&versions, seen_at).to_vec();
            let last = versions.last().map_or(&[][..], |(_, services)| services);
            let rank = position(&ranked, &fault.service);
            let final_rank = position(last, &fault.service);
            println!(
                "{:<11} {:<12} {:<15} {:<28} {:>8} {:>9} {:>5}  {}",
                day.name,
                fault.at / NANOS_PER_SECOND,
                fault.kind,
                fault.service,
                incident.map_or("-".to_owned(), |i| i.id.to_string()),
                incident.map_or(0, |i| i.services.len()),
                rank.map_or("-".to_owned(), |r| r.to_string()),
                ranked.first().map_or("", String::as_str),
            );
            if let Some(out) = out.as_mut() {
                writeln!(
                    out,
                    "{}",
                    json!({
                        "fault": format!("{}#{}", day.name, index + 1),
                        "injected_at": fault.at / NANOS_PER_SECOND,
                        "type": fault.kind,
                        "true_service": fault.service,
                        "incident": incident.map(|i| i.id),
                        "ranked": ranked,
                        "ranked_final": last,
                    })
                )?;
            }
            with_history.push(fault.at.saturating_sub(first_minute) >= history());
            outcomes.push(Outcome {
                day: day.name.clone(),
                kind: fault.kind.clone(),
                ranks: [rank, final_rank, None, None],
            });
        }
    }
    if let Some(mut out) = out {
        out.flush()?;
    }
    for (column, title) in [(0, "live, 5 minutes in"), (1, "live, final ranking")] {
        println!();
        println!(
            "{:<28} {:>6} {:>6} {:>6} {:>7}",
            title, "AC@1", "AC@3", "Avg@5", "faults"
        );
        let mut groups: BTreeMap<String, Vec<Option<usize>>> = BTreeMap::new();
        for (o, had_history) in outcomes.iter().zip(&with_history) {
            let mut names = vec![
                format!("day {}", o.day),
                format!("type {}", o.kind),
                "all".to_owned(),
            ];
            if *had_history {
                names.push(format!("with {} min of data before", history() / MINUTE));
            }
            for group in names {
                groups.entry(group).or_default().push(o.ranks[column]);
            }
        }
        for (group, ranks) in &groups {
            println!("{group:<28}{} {:>7}", scores(ranks), ranks.len());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(id: u64, opened_at: i64, updated_at: i64, resolved_at: Option<i64>) -> Incident {
        let mut incident = Incident::new(id, "", "warning", opened_at);
        incident.updated_at = updated_at;
        incident.resolved_at = resolved_at;
        incident
    }

    #[test]
    fn a_fault_is_covered_by_the_live_incident_opened_nearest_it() {
        let at = 100 * MINUTE;
        let incidents = [
            // Ended before the fault.
            incident(1, 80 * MINUTE, 90 * MINUTE, Some(95 * MINUTE)),
            // Open since long before, still open.
            incident(2, 50 * MINUTE, 101 * MINUTE, None),
            // Opened a minute after the injection.
            incident(3, 101 * MINUTE, 103 * MINUTE, Some(110 * MINUTE)),
            // Opened after the five minutes.
            incident(4, 106 * MINUTE, 107 * MINUTE, None),
        ];
        assert_eq!(covering(&incidents, at).map(|i| i.id), Some(3));
        assert_eq!(covering(&incidents[..2], at).map(|i| i.id), Some(2));
        assert_eq!(covering(&incidents[..1], at).map(|i| i.id), None);
    }

    #[test]
    fn a_fault_is_scored_by_the_ranking_seen_five_minutes_in() {
        let versions: Versions = vec![
            (3 * MINUTE, vec!["cart".into()]),
            (6 * MINUTE, vec!["cart".into(), "ads".into()]),
            (20 * MINUTE, vec!["ads".into(), "cart".into()]),
        ];
        assert_eq!(ranked_at(&versions, 7 * MINUTE), ["cart", "ads"]);
        assert_eq!(ranked_at(&versions, 30 * MINUTE), ["ads", "cart"]);
        // Every version came later: the first.
        assert_eq!(ranked_at(&versions, MINUTE), ["cart"]);
        assert!(ranked_at(&Vec::new(), MINUTE).is_empty());
    }
}
