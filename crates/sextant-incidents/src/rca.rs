//! Root-cause ranking: which service (and which of its series) most likely caused an incident,
//! with the evidence for each rank.
//!
//! Each candidate series is scored by its robust deviation from its own baseline (the values
//! before the incident): how far the incident window strays from the baseline median, in units
//! of the baseline's spread (the approach of BARO). Its onset is the first point of the window
//! past [`RcaConfig::onset_sigmas`]. A service's score is its strongest series' deviation, then
//! weighed by three more kinds of evidence, each optional: the order in which services began to
//! depart (earlier is likelier the cause), the direction of the service map (a callee whose
//! trouble explains its anomalous callers gains; a caller explained by an anomalous callee
//! loses), and log evidence (a new or spiking error pattern of the service). Every factor is
//! kept in the candidate's [`Evidence`], and a sentence is rendered from it.

pub mod traces;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::topology::ServiceMap;
use crate::{Error, Result};

/// How candidates are scored. One configuration for all data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RcaConfig {
    /// A series whose deviation reaches this many baseline spreads counts as anomalous (for
    /// onsets, and for the services the map and the onset order compare). Default 3.
    pub onset_sigmas: f64,
    /// Weight of being among the first services to depart: the first gains this share, later
    /// ones less. Default 0.2.
    pub onset_weight: f64,
    /// Weight of explaining anomalous callers on the service map. Default 0.5.
    pub topology_weight: f64,
    /// Weight of a new or spiking error log pattern. Default 0.3.
    pub log_weight: f64,
    /// Weight of symptom series (latency, errors, load) against resource and other series
    /// (cpu, memory, queues, ...): a fault shows most directly in what it consumes, while
    /// symptoms spread to every caller. Default 0.5.
    pub symptom_weight: f64,
    /// Deviations past this many spreads count only logarithmically more (0: no limit): past
    /// it a series is plainly anomalous, and how many spreads more mostly says how flat or
    /// quantised its baseline was, not how strong the fault is. Default 10.
    pub saturation_sigmas: f64,
    /// Weight of a service's client-side series (durations and errors of the calls it makes,
    /// which its callees and the network between decide) against its other series of the same
    /// kind. Default 0.5.
    pub client_weight: f64,
    /// Count only the direction in which a fault moves a kind of series: resources, latency,
    /// errors and log rates up, success rates down (load and others either way). Default true.
    pub directional: bool,
    /// A percentage or utilisation at 90 % of its capacity or more, from below it, counts as
    /// plainly anomalous (at least `saturation_sigmas`). Default true.
    pub capacity_saturation: bool,
    /// Leave out series that several services report value for value (a host's metrics that
    /// each pod on it carries): what they all share says nothing about which one is the
    /// cause. Default true.
    pub drop_shared: bool,
    /// Weight of trace evidence (a service's own time and the gaps of its calls,
    /// [`traces`]) against its series' deviation: both measure the service itself. Default 1.
    pub trace_weight: f64,
    /// A series' deviation is the one it holds for this many points of the incident (all of
    /// them when it has fewer): one point is a spike, not a shift. Default 2.
    pub persistence: usize,
    /// Span timings of the incident are taken over its worst stretch of this many seconds (by
    /// median), not over the whole window: a five-minute delay in a half-hour window leaves
    /// the window's median as it was. 0 takes the whole window. Default 300.
    pub trace_stretch_seconds: u64,
}

impl Default for RcaConfig {
    fn default() -> RcaConfig {
        RcaConfig {
            onset_sigmas: 3.0,
            onset_weight: 0.2,
            topology_weight: 0.5,
            log_weight: 0.3,
            symptom_weight: 0.5,
            saturation_sigmas: 10.0,
            client_weight: 0.5,
            directional: true,
            capacity_saturation: true,
            drop_shared: true,
            trace_weight: 1.0,
            persistence: 2,
            trace_stretch_seconds: 300,
        }
    }
}

impl RcaConfig {
    /// This configuration with each rule turned off in turn, named: what an ablation compares.
    pub fn ablations(&self) -> Vec<(&'static str, RcaConfig)> {
        let with = |change: &dyn Fn(&mut RcaConfig)| {
            let mut config = self.clone();
            change(&mut config);
            config
        };
        vec![
            ("no onset order", with(&|c| c.onset_weight = 0.0)),
            ("no map direction", with(&|c| c.topology_weight = 0.0)),
            (
                "symptoms weigh as resources",
                with(&|c| c.symptom_weight = 1.0),
            ),
            ("no saturation", with(&|c| c.saturation_sigmas = 0.0)),
            (
                "client side weighs as own",
                with(&|c| c.client_weight = 1.0),
            ),
            ("either direction counts", with(&|c| c.directional = false)),
            (
                "no capacity saturation",
                with(&|c| c.capacity_saturation = false),
            ),
            ("shared series kept", with(&|c| c.drop_shared = false)),
            ("no trace evidence", with(&|c| c.trace_weight = 0.0)),
            ("no log evidence", with(&|c| c.log_weight = 0.0)),
            ("one point counts", with(&|c| c.persistence = 1)),
            (
                "span timings over the whole window",
                with(&|c| c.trace_stretch_seconds = 0),
            ),
        ]
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason| Err(Error::InvalidConfig { field, reason });
        if self.onset_sigmas.is_nan() || self.onset_sigmas <= 0.0 {
            return bad("onset_sigmas", "must be positive");
        }
        for (field, value) in [
            ("onset_weight", self.onset_weight),
            ("topology_weight", self.topology_weight),
            ("log_weight", self.log_weight),
            ("symptom_weight", self.symptom_weight),
            ("saturation_sigmas", self.saturation_sigmas),
            ("client_weight", self.client_weight),
            ("trace_weight", self.trace_weight),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return bad(field, "must be zero or positive");
            }
        }
        Ok(())
    }
}

/// What a series measures, from its name (generic rules, no service names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// CPU, memory, disk, file descriptors, GC: what a fault consumes.
    Resource,
    /// Latency and durations: what callers feel.
    Latency,
    /// Errors and failures.
    Errors,
    /// Request rates and load: what arrives.
    Load,
    /// Log pattern rates.
    Logs,
    Other,
}

impl SeriesKind {
    /// The kind a series name suggests.
    pub fn of(metric: &str) -> SeriesKind {
        let name = metric.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| name.contains(w));
        if has(&["log_pattern"]) {
            SeriesKind::Logs
        } else if has(&["lat", "duration", "p50", "p95", "p99", "response_time"]) {
            SeriesKind::Latency
        } else if has(&["error", "fail", "5xx", "exception", "success"]) {
            SeriesKind::Errors
        } else if has(&[
            "cpu", "mem", "heap", "gc", "disk", "fd", "thread", "io", "swap",
        ]) {
            SeriesKind::Resource
        } else if has(&["lod", "load", "request", "rate", "qps", "rps", "throughput"]) {
            SeriesKind::Load
        } else {
            SeriesKind::Other
        }
    }

    fn is_symptom(self) -> bool {
        matches!(
            self,
            SeriesKind::Latency | SeriesKind::Errors | SeriesKind::Load
        )
    }
}

/// The direction in which a fault moves a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    Up,
    Down,
    Either,
}

impl Polarity {
    /// From the series' kind and name: resources, latency, errors and log rates rise; a
    /// success or availability rate falls; load and the rest may go either way.
    pub fn of(metric: &str, kind: SeriesKind) -> Polarity {
        let name = metric.to_ascii_lowercase();
        match kind {
            SeriesKind::Errors
                if ["success", "availab", "goodput"]
                    .iter()
                    .any(|w| name.contains(w)) =>
            {
                Polarity::Down
            }
            SeriesKind::Resource | SeriesKind::Latency | SeriesKind::Errors | SeriesKind::Logs => {
                Polarity::Up
            }
            SeriesKind::Load | SeriesKind::Other => Polarity::Either,
        }
    }
}

/// Whether a series measures the calls a service makes rather than those it serves (its name
/// says `client`, as in OpenTelemetry's `http.client.duration`, or outgoing, or downstream).
pub fn is_client_side(metric: &str) -> bool {
    let name = metric.to_ascii_lowercase();
    ["client", "outgoing", "outbound", "downstream"]
        .iter()
        .any(|w| name.contains(w))
}

/// The capacity of a percentage (100) or of a utilisation or ratio (1) series, from its name.
fn capacity_of(metric: &str) -> Option<f64> {
    let name = metric.to_ascii_lowercase();
    if name.contains('%') || name.contains("percent") {
        Some(100.0)
    } else if name.contains("utilization") || name.contains("utilisation") {
        Some(1.0)
    } else {
        None
    }
}

/// `deviation` past `limit` spreads, growing only logarithmically (no limit at 0).
fn saturate(deviation: f64, limit: f64) -> f64 {
    if limit <= 0.0 || deviation <= limit {
        deviation
    } else {
        limit * (1.0 + (deviation / limit).ln())
    }
}

/// One candidate series: its baseline values and its values during the incident.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateSeries {
    pub service: String,
    /// The series' name (for metrics with labels, name and labels).
    pub metric: String,
    /// Values before the incident, in time order. Non-finite values are ignored.
    pub normal: Vec<f64>,
    /// (time in nanoseconds, value) during the incident, in time order.
    pub anomalous: Vec<(i64, f64)>,
}

/// A log pattern of a service that is new, or spiking, during the incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogSignal {
    pub service: String,
    pub template_id: u64,
    pub template: String,
    /// Never seen before the incident.
    pub new: bool,
    /// Lines per minute during the incident over the baseline's (new patterns: their count).
    pub ratio: f64,
    /// Nanoseconds since the Unix epoch: its first line in the incident.
    pub first_seen: i64,
}

/// A known error pattern counts as evidence at this many times its baseline rate.
pub const LOG_SPIKE: f64 = 3.0;

/// One error log pattern of a service, counted before and during an incident.
#[derive(Clone, Debug, PartialEq)]
pub struct PatternCount {
    pub service: String,
    pub template_id: u64,
    pub template: String,
    /// Lines in the baseline and in the incident window.
    pub before: u64,
    pub in_window: u64,
    /// Nanoseconds since the Unix epoch: its first line in the window.
    pub first_seen: i64,
}

/// The error patterns that are evidence: those new in the window, and those running at least
/// [`LOG_SPIKE`] times their baseline rate (lines per minute; the periods' lengths in minutes,
/// each at least one).
pub fn log_signals(
    counts: &[PatternCount],
    baseline_minutes: f64,
    window_minutes: f64,
) -> Vec<LogSignal> {
    let (baseline_minutes, window_minutes) = (baseline_minutes.max(1.0), window_minutes.max(1.0));
    counts
        .iter()
        .filter(|c| c.in_window > 0)
        .filter_map(|c| {
            let new = c.before == 0;
            let ratio = if new {
                c.in_window as f64
            } else {
                (c.in_window as f64 / window_minutes) / (c.before as f64 / baseline_minutes)
            };
            (new || ratio >= LOG_SPIKE).then(|| LogSignal {
                service: c.service.clone(),
                template_id: c.template_id,
                template: c.template.clone(),
                new,
                ratio,
                first_seen: c.first_seen,
            })
        })
        .collect()
}

/// What [`rank`] ranks.
#[derive(Clone, Copy, Debug, Default)]
pub struct RcaInput<'a> {
    pub series: &'a [CandidateSeries],
    pub logs: &'a [LogSignal],
    /// What the spans say about each service ([`traces::trace_evidence`]).
    pub traces: &'a [traces::TraceEvidence],
    pub map: Option<&'a ServiceMap>,
}

/// One series' deviation from its baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesScore {
    pub service: String,
    pub metric: String,
    pub kind: SeriesKind,
    /// The score the ranking uses: the robust deviation the incident holds for
    /// `persistence` points, in the direction its kind moves, past `saturation_sigmas` only
    /// logarithmically larger.
    pub deviation: f64,
    /// That deviation in baseline spreads, before the saturation.
    pub spreads: f64,
    /// Whether it measures the calls the service makes (see [`is_client_side`]).
    pub client_side: bool,
    /// Whether a percentage or utilisation reached 90 % of its capacity.
    pub saturated: bool,
    /// The baseline's median and spread.
    pub baseline_median: f64,
    pub baseline_spread: f64,
    /// The value that deviation was measured at (the weakest of the `persistence` most
    /// deviating points) and its time.
    pub peak: f64,
    pub peak_at: i64,
    /// `up` or `down`.
    pub direction: String,
    /// First time the deviation passed `onset_sigmas`; `None` if it never did.
    pub onset: Option<i64>,
}

/// Where a candidate stands on the service map.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TopologyEvidence {
    /// Services with anomalous symptoms (latency, errors, widened calls) that depend on it
    /// (call it, directly or not).
    pub explains: Vec<String>,
    /// Anomalous services it depends on (which may explain it instead).
    pub explained_by: Vec<String>,
    /// The direct edges followed, as (caller, callee).
    pub edges: Vec<(String, String)>,
}

/// The multipliers a service's deviation was weighed with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreParts {
    pub deviation: f64,
    pub onset: f64,
    pub topology: f64,
    pub logs: f64,
    /// The trace evidence's score, when it was larger than the series'.
    pub trace: f64,
}

/// Why a service ranks where it does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Its strongest series, then its other anomalous ones (at most five in all).
    pub series: Vec<SeriesScore>,
    /// 1 for the first service to depart, 2 for the next...; `None` if none of its series did.
    pub onset_order: Option<usize>,
    /// Services that departed (had an onset).
    pub departed: usize,
    pub topology: Option<TopologyEvidence>,
    pub logs: Vec<LogSignal>,
    /// What its spans say, when they moved.
    pub trace: Option<traces::TraceEvidence>,
    pub parts: ScoreParts,
}

/// One ranked service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankedService {
    pub service: String,
    /// Its strongest series.
    pub metric: String,
    pub score: f64,
    pub evidence: Evidence,
    pub sentence: String,
}

/// The ranking: services best first, and every series by deviation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    pub services: Vec<RankedService>,
    pub series: Vec<SeriesScore>,
}

/// The median of sorted `values`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

/// Relative floor of a baseline's spread: a spread under a thousandth of the level is taken
/// as that thousandth. Flat baselines (a memory figure that never moved, a latency that moves
/// by float noise) would otherwise turn any step into an enormous deviation.
pub const RELATIVE_SPREAD_FLOOR: f64 = 1e-3;

/// The spread deviations are measured in: the baseline's interquartile range, at least
/// [`RELATIVE_SPREAD_FLOOR`] of its median; for a baseline at zero, its standard deviation,
/// or else a thousandth of the largest value seen (a series that appears from zero).
fn baseline_spread(sorted: &[f64], median: f64, window: &[(i64, f64)]) -> f64 {
    let iqr = quantile(sorted, 0.75) - quantile(sorted, 0.25);
    let spread = iqr.max(RELATIVE_SPREAD_FLOOR * median.abs());
    if spread > 0.0 {
        return spread;
    }
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    let std = (sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / sorted.len() as f64).sqrt();
    if std > 0.0 {
        return std;
    }
    let largest = window.iter().map(|(_, v)| v.abs()).fold(0.0, f64::max);
    (RELATIVE_SPREAD_FLOOR * largest).max(1e-9)
}

/// A series' deviation; `None` when it has no usable values.
pub fn score_series(series: &CandidateSeries, config: &RcaConfig) -> Option<SeriesScore> {
    let mut normal: Vec<f64> = series
        .normal
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let window: Vec<(i64, f64)> = series
        .anomalous
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    if normal.is_empty() || window.is_empty() {
        return None;
    }
    normal.sort_by(f64::total_cmp);
    let median = quantile(&normal, 0.5);
    let spread = baseline_spread(&normal, median, &window);
    let kind = SeriesKind::of(&series.metric);
    let polarity = if config.directional {
        Polarity::of(&series.metric, kind)
    } else {
        Polarity::Either
    };
    let z_of = |value: f64| {
        let signed = (value - median) / spread;
        match polarity {
            Polarity::Up => signed,
            Polarity::Down => -signed,
            Polarity::Either => signed.abs(),
        }
    };
    let mut onset = None;
    for &(time, value) in &window {
        if onset.is_none() && z_of(value) >= config.onset_sigmas {
            onset = Some(time);
        }
    }
    // The deviation the window holds for `persistence` points (all of them when it has fewer):
    // one point is a spike, not a shift. Its weakest point among them is the peak shown.
    let mut by_deviation: Vec<(f64, (i64, f64))> =
        window.iter().map(|&(t, v)| (z_of(v), (t, v))).collect();
    by_deviation.sort_by(|a, b| b.0.total_cmp(&a.0));
    let held = config.persistence.clamp(1, by_deviation.len()) - 1;
    let (spreads, peak) = by_deviation[held];
    let spreads = spreads.max(0.0);
    let mut deviation = saturate(spreads, config.saturation_sigmas);
    let saturated = config.capacity_saturation
        && kind == SeriesKind::Resource
        && capacity_of(&series.metric)
            .is_some_and(|capacity| peak.1 >= 0.9 * capacity && median < 0.9 * capacity);
    if saturated {
        deviation = deviation.max(config.saturation_sigmas.max(config.onset_sigmas));
        onset = onset.or(Some(peak.0));
    }
    Some(SeriesScore {
        service: series.service.clone(),
        metric: series.metric.clone(),
        kind,
        deviation,
        spreads,
        client_side: is_client_side(&series.metric),
        saturated,
        baseline_median: median,
        baseline_spread: spread,
        peak: peak.1,
        peak_at: peak.0,
        direction: if peak.1 >= median { "up" } else { "down" }.into(),
        onset,
    })
}

/// The series of `series` that another service reports value for value (the same normal and
/// incident values, at least three of them): a host's metrics each of its pods carries.
fn shared_series(series: &[CandidateSeries]) -> BTreeSet<usize> {
    let key = |s: &CandidateSeries| -> Option<(String, Vec<u64>)> {
        let values: Vec<u64> = s
            .normal
            .iter()
            .copied()
            .chain(s.anomalous.iter().map(|(_, v)| *v))
            .map(f64::to_bits)
            .collect();
        let finite = s
            .normal
            .iter()
            .chain(s.anomalous.iter().map(|(_, v)| v))
            .filter(|v| v.is_finite())
            .count();
        (finite >= 3).then(|| (s.metric.clone(), values))
    };
    let mut seen: BTreeMap<(String, Vec<u64>), Vec<usize>> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        if let Some(k) = key(s) {
            seen.entry(k).or_default().push(i);
        }
    }
    seen.into_iter()
        .filter(|(_, at)| {
            let services: BTreeSet<&str> = at.iter().map(|i| series[*i].service.as_str()).collect();
            services.len() > 1
        })
        .flat_map(|(_, at)| at)
        .collect()
}

/// Ranks the services of `input`, best first, with their evidence.
pub fn rank(input: &RcaInput<'_>, config: &RcaConfig) -> Ranking {
    // Log evidence weighs nothing at weight 0: then it is not evidence at all.
    let input_logs: &[LogSignal] = if config.log_weight > 0.0 {
        input.logs
    } else {
        &[]
    };
    let shared = if config.drop_shared {
        shared_series(input.series)
    } else {
        BTreeSet::new()
    };
    let mut series: Vec<SeriesScore> = input
        .series
        .iter()
        .enumerate()
        .filter(|(i, _)| !shared.contains(i))
        .filter_map(|(_, s)| score_series(s, config))
        .collect();
    series.sort_by(|a, b| {
        b.deviation
            .total_cmp(&a.deviation)
            .then_with(|| (&a.service, &a.metric).cmp(&(&b.service, &b.metric)))
    });
    let weighted = |s: &SeriesScore| {
        let kind = if s.kind.is_symptom() {
            config.symptom_weight
        } else {
            1.0
        };
        let side = if s.client_side {
            config.client_weight
        } else {
            1.0
        };
        s.deviation * kind * side
    };
    // Each service's series, strongest (weighted) first.
    let mut by_service: BTreeMap<&str, Vec<&SeriesScore>> = BTreeMap::new();
    for s in &series {
        by_service.entry(&s.service).or_default().push(s);
    }
    for list in by_service.values_mut() {
        list.sort_by(|a, b| weighted(b).total_cmp(&weighted(a)));
    }
    for log in input_logs {
        by_service.entry(&log.service).or_default();
    }
    let traces: BTreeMap<&str, &traces::TraceEvidence> = input
        .traces
        .iter()
        .filter(|_| config.trace_weight > 0.0)
        .map(|t| (t.service.as_str(), t))
        .collect();
    for service in traces.keys() {
        by_service.entry(service).or_default();
    }
    // Onset order of services: by the earliest onset among their series.
    let mut onsets: Vec<(i64, &str)> = by_service
        .iter()
        .filter_map(|(service, list)| {
            let log_onset = input_logs
                .iter()
                .filter(|l| l.service == *service)
                .map(|l| l.first_seen);
            let trace_onset = traces.get(service).and_then(|t| t.onset);
            list.iter()
                .filter_map(|s| s.onset)
                .chain(log_onset)
                .chain(trace_onset)
                .min()
                .map(|t| (t, *service))
        })
        .collect();
    onsets.sort();
    let departed: BTreeSet<&str> = onsets.iter().map(|(_, s)| *s).collect();
    // The services whose symptoms departed (latency or errors, or calls that widened): what a
    // callee's trouble can explain. A caller's resources or load are not its callee's doing.
    let symptomatic: BTreeSet<&str> = by_service
        .iter()
        .filter(|(service, list)| {
            list.iter().any(|s| {
                s.onset.is_some() && matches!(s.kind, SeriesKind::Latency | SeriesKind::Errors)
            }) || traces.get(*service).is_some_and(|t| !t.gaps.is_empty())
        })
        .map(|(service, _)| *service)
        .collect();

    let mut services: Vec<RankedService> = by_service
        .iter()
        .map(|(service, list)| {
            let series_deviation = list.first().map_or(0.0, |s| weighted(s));
            let trace = traces.get(service).copied();
            let trace_deviation = trace.map_or(0.0, |t| t.deviation * config.trace_weight);
            let deviation = series_deviation.max(trace_deviation);
            let onset_order = onsets.iter().position(|(_, s)| s == service).map(|i| i + 1);
            let onset = onset_order.map_or(0.0, |order| config.onset_weight / order as f64);
            let topology = input
                .map
                .map(|map| topology_evidence(map, service, &departed, &symptomatic));
            // Anomalous callees explain a service away only when what decides its score is a
            // symptom itself; its own resources or own time are its own.
            let decided_by_symptom = trace_deviation <= series_deviation
                && list
                    .first()
                    .is_some_and(|s| s.kind.is_symptom() || s.client_side);
            let topology_factor = topology.as_ref().map_or(0.0, |t| {
                let others = departed.len().saturating_sub(1).max(1) as f64;
                let explained_by = if decided_by_symptom {
                    t.explained_by.len() as f64
                } else {
                    0.0
                };
                config.topology_weight * (t.explains.len() as f64 - explained_by) / others
            });
            let logs: Vec<LogSignal> = input_logs
                .iter()
                .filter(|l| l.service == *service)
                .cloned()
                .collect();
            let log_factor = if logs.is_empty() {
                0.0
            } else {
                let strongest = logs
                    .iter()
                    .map(|l| {
                        if l.new {
                            1.0
                        } else {
                            (l.ratio / 10.0).min(1.0)
                        }
                    })
                    .fold(0.0, f64::max);
                config.log_weight * strongest
            };
            let multiplier = (1.0 + onset + topology_factor + log_factor).max(0.05);
            let score = deviation.max(if logs.is_empty() {
                0.0
            } else {
                config.onset_sigmas
            }) * multiplier;
            let evidence = Evidence {
                series: list
                    .iter()
                    .take(5)
                    .filter(|s| s.onset.is_some() || std::ptr::eq(**s, list[0]))
                    .map(|s| (*s).clone())
                    .collect(),
                onset_order,
                departed: departed.len(),
                topology,
                logs,
                trace: trace.cloned(),
                parts: ScoreParts {
                    deviation,
                    onset,
                    topology: topology_factor,
                    logs: log_factor,
                    trace: if trace_deviation > series_deviation {
                        trace_deviation
                    } else {
                        0.0
                    },
                },
            };
            RankedService {
                service: (*service).to_owned(),
                metric: list.first().map_or_else(String::new, |s| s.metric.clone()),
                sentence: String::new(),
                score,
                evidence,
            }
        })
        .collect();
    services.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.service.cmp(&b.service))
    });
    for (i, candidate) in services.iter_mut().enumerate() {
        candidate.sentence = sentence(i + 1, candidate);
    }
    Ranking { services, series }
}

/// Which services with departed symptoms depend on `service`, and which departed services it
/// depends on.
fn topology_evidence(
    map: &ServiceMap,
    service: &str,
    departed: &BTreeSet<&str>,
    symptomatic: &BTreeSet<&str>,
) -> TopologyEvidence {
    let reach = |forward: bool| -> BTreeSet<String> {
        // Services reachable from `service` along (or against) the call direction.
        let mut seen = BTreeSet::new();
        let mut stack = vec![service.to_owned()];
        while let Some(at) = stack.pop() {
            for edge in map.edges() {
                let (from, to) = if forward {
                    (&edge.caller, &edge.callee)
                } else {
                    (&edge.callee, &edge.caller)
                };
                if *from == at && to != service && seen.insert(to.clone()) {
                    stack.push(to.clone());
                }
            }
        }
        seen
    };
    let callers = reach(false);
    let callees = reach(true);
    let explains: Vec<String> = callers
        .iter()
        .filter(|s| symptomatic.contains(s.as_str()))
        .cloned()
        .collect();
    let explained_by: Vec<String> = callees
        .iter()
        .filter(|s| departed.contains(s.as_str()) && !callers.contains(*s))
        .cloned()
        .collect();
    let edges = map
        .edges()
        .filter(|e| {
            (e.callee == service && symptomatic.contains(e.caller.as_str()))
                || (e.caller == service && departed.contains(e.callee.as_str()))
        })
        .map(|e| (e.caller.clone(), e.callee.clone()))
        .collect();
    TopologyEvidence {
        explains,
        explained_by,
        edges,
    }
}

fn number(value: f64) -> String {
    if value.abs() >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

/// A sentence or two from a candidate's evidence.
fn sentence(rank: usize, candidate: &RankedService) -> String {
    let evidence = &candidate.evidence;
    let mut text = format!(
        "#{rank} {} (score {:.2})",
        candidate.service, candidate.score
    );
    match evidence.series.first() {
        Some(top) => {
            text.push_str(&format!(
                ": {} went {} to {} against a baseline of {} ({:.1} spreads",
                top.metric,
                top.direction,
                number(top.peak),
                number(top.baseline_median),
                top.spreads
            ));
            text.push_str(if top.saturated {
                ", near its capacity)"
            } else {
                ")"
            });
        }
        None if evidence.trace.is_some() => text.push_str(": its spans moved"),
        None => text.push_str(": no series of it moved"),
    }
    if let Some(order) = evidence.onset_order {
        text.push_str(&format!(
            "; it was {} of {} services to depart",
            match order {
                1 => "the first".to_owned(),
                n => format!("number {n}"),
            },
            evidence.departed
        ));
    }
    text.push('.');
    if let Some(topology) = &evidence.topology {
        if !topology.explains.is_empty() {
            text.push_str(&format!(
                " It is called by {} anomalous service{} ({}), which its trouble explains.",
                topology.explains.len(),
                if topology.explains.len() == 1 {
                    ""
                } else {
                    "s"
                },
                topology.explains.join(", ")
            ));
        }
        if !topology.explained_by.is_empty() {
            text.push_str(&format!(
                " It depends on anomalous {}, which may explain it instead.",
                topology.explained_by.join(", ")
            ));
        }
    }
    if let Some(trace) = &evidence.trace {
        text.push_str(&trace_sentence(&candidate.service, trace));
    }
    if let Some(log) = evidence.logs.first() {
        text.push_str(&format!(
            " Log pattern `{}` {}.",
            log.template.chars().take(80).collect::<String>(),
            if log.new {
                "is new".to_owned()
            } else {
                format!("runs {:.1}× its usual rate", log.ratio)
            }
        ));
    }
    text
}

/// What the spans say of `service`, as a sentence or two (starting with a space).
fn trace_sentence(service: &str, trace: &traces::TraceEvidence) -> String {
    let mut text = String::new();
    if let Some(own) = trace.own_time.as_ref().filter(|o| o.spreads > 0.0) {
        text.push_str(&format!(
            " Its own time per span went from {} to {} ms ({:.1} spreads).",
            number(own.baseline_ms),
            number(own.incident_ms),
            own.spreads
        ));
    }
    if let Some(gap) = trace.gaps.first() {
        let partner = if gap.caller == service {
            &gap.callee
        } else {
            &gap.caller
        };
        text.push_str(&format!(
            " Calls {} → {} spent {} ms between the two, up from {} ms ({:.1} spreads); {} of \
             its {} measured call paths widened (with {partner} and others).",
            gap.caller,
            gap.callee,
            number(gap.shift.incident_ms),
            number(gap.shift.baseline_ms),
            gap.shift.spreads,
            trace.gaps.len(),
            trace.measured_calls
        ));
    }
    text
}

/// One column of a wide CSV: (service, metric, values).
pub type WideColumn = (String, String, Vec<f64>);

/// A wide CSV of one period: a `time` column (Unix seconds), then one column per series named
/// `<service>_<metric>` (split at the first `_`). Returns the times (nanoseconds) and, per
/// column, (service, metric, values); empty or unparsable cells are NaN.
pub fn parse_wide_csv(text: &str) -> Result<(Vec<i64>, Vec<WideColumn>), String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or("the file is empty")?;
    let names: Vec<&str> = header
        .split(',')
        .map(|h| h.trim().trim_matches('"'))
        .collect();
    let time_column = names
        .iter()
        .position(|n| *n == "time" || *n == "timestamp")
        .ok_or("no `time` column")?;
    let mut columns: Vec<WideColumn> = Vec::new();
    let mut column_of = vec![None; names.len()];
    for (i, name) in names.iter().enumerate() {
        if i == time_column {
            continue;
        }
        let (service, metric) = name
            .split_once('_')
            .ok_or_else(|| format!("column `{name}` is not `<service>_<metric>`"))?;
        column_of[i] = Some(columns.len());
        columns.push((service.to_owned(), metric.to_owned(), Vec::new()));
    }
    let mut times = Vec::new();
    for (n, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != names.len() {
            return Err(format!(
                "row {}: {} cells, the header has {}",
                n + 2,
                cells.len(),
                names.len()
            ));
        }
        let time: f64 = cells[time_column]
            .trim()
            .parse()
            .map_err(|_| format!("row {}: `time` is not a number", n + 2))?;
        times.push((time * 1e9) as i64);
        for (i, cell) in cells.iter().enumerate() {
            if let Some(c) = column_of[i] {
                columns[c].2.push(cell.trim().parse().unwrap_or(f64::NAN));
            }
        }
    }
    Ok((times, columns))
}

/// The candidate series of a normal and an anomalous period, each a wide CSV
/// ([`parse_wide_csv`]); columns present in only one of them are left out.
pub fn candidates_from_csv(normal: &str, anomalous: &str) -> Result<Vec<CandidateSeries>, String> {
    let (_, normal) = parse_wide_csv(normal).map_err(|e| format!("normal: {e}"))?;
    let (times, anomalous) = parse_wide_csv(anomalous).map_err(|e| format!("anomalous: {e}"))?;
    let baseline: BTreeMap<(&str, &str), &Vec<f64>> = normal
        .iter()
        .map(|(s, m, v)| ((s.as_str(), m.as_str()), v))
        .collect();
    Ok(anomalous
        .iter()
        .filter_map(|(service, metric, values)| {
            let normal = baseline.get(&(service.as_str(), metric.as_str()))?;
            Some(CandidateSeries {
                service: service.clone(),
                metric: metric.clone(),
                normal: normal.to_vec(),
                anomalous: times.iter().copied().zip(values.iter().copied()).collect(),
            })
        })
        .collect())
}

/// AC@k: the share of `ranks` (1-based rank of the true cause, `None` when not ranked) at or
/// above `k`.
pub fn accuracy_at(ranks: &[Option<usize>], k: usize) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / ranks.len() as f64
}

/// Avg@5: the mean of AC@1 to AC@5.
pub fn average_at_5(ranks: &[Option<usize>]) -> f64 {
    (1..=5).map(|k| accuracy_at(ranks, k)).sum::<f64>() / 5.0
}

/// AC@1, AC@3 and Avg@5 at service and at metric level over cases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RcaScores {
    pub cases: usize,
    pub service_ac1: f64,
    pub service_ac3: f64,
    pub service_avg5: f64,
    pub metric_ac1: f64,
    pub metric_ac3: f64,
    pub metric_avg5: f64,
}

/// Where the true cause landed in one case's ranking: its service among the ranked services and
/// its series (`service`, `metric`) among all series, 1-based.
pub fn case_ranks(
    ranking: &Ranking,
    service: &str,
    metric: &str,
) -> (Option<usize>, Option<usize>) {
    (
        ranking
            .services
            .iter()
            .position(|s| s.service == service)
            .map(|i| i + 1),
        ranking
            .series
            .iter()
            .position(|s| s.service == service && s.metric == metric)
            .map(|i| i + 1),
    )
}

impl RcaScores {
    /// Scores from each case's ranks ([`case_ranks`]).
    pub fn from_ranks(ranks: &[(Option<usize>, Option<usize>)]) -> RcaScores {
        let services: Vec<Option<usize>> = ranks.iter().map(|r| r.0).collect();
        let metrics: Vec<Option<usize>> = ranks.iter().map(|r| r.1).collect();
        RcaScores {
            cases: ranks.len(),
            service_ac1: accuracy_at(&services, 1),
            service_ac3: accuracy_at(&services, 3),
            service_avg5: average_at_5(&services),
            metric_ac1: accuracy_at(&metrics, 1),
            metric_ac3: accuracy_at(&metrics, 3),
            metric_avg5: average_at_5(&metrics),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_csv_parses_and_bad_files_say_why() {
        let (times, columns) =
            parse_wide_csv("time,carts_cpu,carts-db_lat_50\n10,1.5,\n11,2,3\n").unwrap();
        assert_eq!(times, [10_000_000_000, 11_000_000_000]);
        assert_eq!(columns[0].0, "carts");
        assert_eq!(
            (columns[1].0.as_str(), columns[1].1.as_str()),
            ("carts-db", "lat_50")
        );
        assert!(columns[1].2[0].is_nan());
        for (text, reason) in [
            ("", "empty"),
            ("a_b,c_d\n1,2", "no `time`"),
            ("time,cpu\n1,2", "not `<service>_<metric>`"),
            ("time,a_b\n1,2,3", "row 2: 3 cells"),
            ("time,a_b\nx,2", "not a number"),
        ] {
            let error = parse_wide_csv(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
        let ranks = [Some(1), Some(2), None, Some(6)];
        assert_eq!(accuracy_at(&ranks, 1), 0.25);
        assert_eq!(accuracy_at(&ranks, 3), 0.5);
        assert_eq!(average_at_5(&ranks), (0.25 + 0.5 + 0.5 + 0.5 + 0.5) / 5.0);
    }

    fn series(service: &str, metric: &str, normal: &[f64], anomalous: &[f64]) -> CandidateSeries {
        CandidateSeries {
            service: service.into(),
            metric: metric.into(),
            normal: normal.to_vec(),
            anomalous: anomalous
                .iter()
                .enumerate()
                .map(|(i, v)| (i as i64 * 1_000_000_000, *v))
                .collect(),
        }
    }

    #[test]
    fn kinds_come_from_generic_words() {
        for (name, kind) in [
            ("cpu", SeriesKind::Resource),
            ("container_memory_bytes", SeriesKind::Resource),
            ("lat_99", SeriesKind::Latency),
            ("sextant.service.duration_p95", SeriesKind::Latency),
            ("sextant.service.error_rate", SeriesKind::Errors),
            ("lod", SeriesKind::Load),
            ("sextant.edge.request_rate", SeriesKind::Load),
            ("log_pattern_rate{template_id=\"3\"}", SeriesKind::Logs),
            ("queue_depth", SeriesKind::Other),
            ("PodSuccessRate(%)", SeriesKind::Errors),
            ("PodClientLatencyP99(s)", SeriesKind::Latency),
        ] {
            assert_eq!(SeriesKind::of(name), kind, "{name}");
        }
    }

    #[test]
    fn deviation_is_robust_and_flat_baselines_still_score() {
        let config = RcaConfig::default();
        let normal: Vec<f64> = (0..100).map(|i| 10.0 + (i % 5) as f64).collect();
        let s = score_series(&series("a", "cpu", &normal, &[12.0, 30.0, 31.0]), &config).unwrap();
        // median 12, IQR 2: the window holds 30 or more for two points, 9 spreads away.
        assert_eq!((s.baseline_median, s.baseline_spread), (12.0, 2.0));
        assert_eq!(
            (s.deviation, s.peak, s.direction.as_str()),
            (9.0, 30.0, "up")
        );
        assert_eq!(s.onset, Some(1_000_000_000));
        // One point is a spike: the window holds only 13, half a spread.
        let spike =
            score_series(&series("a", "cpu", &normal, &[12.0, 30.0, 13.0]), &config).unwrap();
        assert_eq!((spike.spreads, spike.peak), (0.5, 13.0));
        let flat = score_series(&series("a", "mem", &[5.0; 50], &[5.5, 5.5]), &config).unwrap();
        assert!(flat.deviation > 5.0, "{flat:?}");
        assert!(score_series(&series("a", "x", &[f64::NAN], &[1.0]), &config).is_none());
        assert!(score_series(&series("a", "x", &[1.0], &[f64::INFINITY]), &config).is_none());
    }

    #[test]
    fn series_count_in_their_kinds_direction_and_saturate() {
        let config = RcaConfig::default();
        let normal: Vec<f64> = (0..30).map(|i| 10.0 + (i % 5) as f64).collect();
        // (metric, incident values, spreads, deviation, saturated)
        let check = |metric: &str, window: &[f64], expected: (f64, f64, bool)| {
            let s = score_series(&series("a", metric, &normal, window), &config).unwrap();
            let (spreads, deviation, saturated) = expected;
            assert!((s.spreads - spreads).abs() < 1e-9, "{metric}: {s:?}");
            assert!((s.deviation - deviation).abs() < 1e-9, "{metric}: {s:?}");
            assert_eq!(s.saturated, saturated, "{metric}");
        };
        // Median 12, spread 2. Latency counts up only; a success rate down only; load both.
        check("lat_99", &[4.0], (0.0, 0.0, false));
        check("lat_99", &[20.0], (4.0, 4.0, false));
        check("PodSuccessRate(%)", &[4.0], (4.0, 4.0, false));
        check("PodSuccessRate(%)", &[20.0], (0.0, 0.0, false));
        check("lod", &[4.0], (4.0, 4.0, false));
        // Past 10 spreads, logarithmically: 1,000 spreads count 10·(1 + ln 100).
        check(
            "lat_99",
            &[2012.0],
            (1000.0, 10.0 * (1.0 + 100f64.ln()), false),
        );
        // A percentage at 90 % of its capacity is plainly anomalous, however noisy before.
        check(
            "CpuUsageRate(%)",
            &[95.0],
            (41.5, 10.0 * (1.0 + 4.15f64.ln()), true),
        );
        let noisy: Vec<f64> = (0..30).map(|i| 40.0 + 10.0 * (i % 5) as f64).collect();
        let s = score_series(&series("a", "cpu_utilization_%", &noisy, &[92.0]), &config).unwrap();
        assert_eq!((s.saturated, s.deviation), (true, 10.0), "{s:?}");
        let either = RcaConfig {
            directional: false,
            ..RcaConfig::default()
        };
        let s = score_series(&series("a", "lat_99", &normal, &[4.0]), &either).unwrap();
        assert_eq!(s.deviation, 4.0);
    }

    #[test]
    fn client_side_and_shared_series_weigh_less_or_nothing() {
        let config = RcaConfig {
            onset_weight: 0.0,
            ..RcaConfig::default()
        };
        let normal: Vec<f64> = (0..30).map(|i| 10.0 + (i % 5) as f64).collect();
        // The web service's calls slowed (client side) as much as the database's own latency
        // rose: the database ranks first.
        let input = [
            series("web", "http.client.duration", &normal, &[18.0]),
            series("db", "http.server.duration", &normal, &[18.0]),
        ];
        let ranking = rank(
            &RcaInput {
                series: &input,
                ..RcaInput::default()
            },
            &config,
        );
        assert_eq!(ranking.services[0].service, "db");
        assert!(ranking.series.iter().any(|s| s.client_side));
        // A host's metric every pod on it carries, value for value, ranks no one.
        let host: Vec<f64> = (0..30).map(|i| 50.0 + (i % 3) as f64).collect();
        let input = [
            series("a", "node_cpu", &host, &[90.0]),
            series("b", "node_cpu", &host, &[90.0]),
            series("b", "cpu", &normal, &[13.0]),
        ];
        let ranking = rank(
            &RcaInput {
                series: &input,
                ..RcaInput::default()
            },
            &config,
        );
        assert_eq!(ranking.services[0].service, "b");
        assert_eq!(ranking.services[0].metric, "cpu");
        assert!(ranking.series.iter().all(|s| s.metric != "node_cpu"));
        let kept = RcaConfig {
            drop_shared: false,
            ..config.clone()
        };
        let ranking = rank(
            &RcaInput {
                series: &input,
                ..RcaInput::default()
            },
            &kept,
        );
        assert_eq!(ranking.services[0].metric, "node_cpu");
    }

    #[test]
    fn the_map_moves_the_blame_to_the_callee_that_explains_its_callers() {
        // Symptoms weighed like resources, so only the map moves the blame.
        let config = RcaConfig {
            symptom_weight: 1.0,
            ..RcaConfig::default()
        };
        let normal: Vec<f64> = (0..60).map(|i| 100.0 + (i % 7) as f64).collect();
        // The frontend's latency moves most, but it calls checkout, which calls the database
        // whose cpu moved first.
        let input = [
            series("frontend", "lat_99", &normal, &[103.0, 103.0, 180.0, 200.0]),
            series("checkout", "lat_99", &normal, &[103.0, 150.0, 170.0, 170.0]),
            series("postgres", "cpu", &normal, &[140.0, 160.0, 160.0, 160.0]),
            series("cart", "cpu", &normal, &[103.0, 104.0, 102.0, 103.0]),
        ];
        let map = ServiceMap::from_pairs([
            ("frontend", "checkout"),
            ("checkout", "postgres"),
            ("frontend", "cart"),
        ]);
        let without = rank(
            &RcaInput {
                series: &input,
                ..RcaInput::default()
            },
            &config,
        );
        assert_eq!(without.services[0].service, "frontend");
        let with = rank(
            &RcaInput {
                series: &input,
                map: Some(&map),
                ..RcaInput::default()
            },
            &config,
        );
        let names: Vec<&str> = with.services.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(names[0], "postgres", "{with:#?}");
        let top = &with.services[0];
        assert_eq!(top.evidence.onset_order, Some(1));
        let topology = top.evidence.topology.as_ref().unwrap();
        assert_eq!(topology.explains, ["checkout", "frontend"]);
        assert_eq!(
            topology.edges,
            [("checkout".to_string(), "postgres".to_string())]
        );
        assert!(top.sentence.starts_with("#1 postgres"), "{}", top.sentence);
        assert!(
            top.sentence.contains("the first of 3 services"),
            "{}",
            top.sentence
        );
        assert!(
            top.sentence.contains("which its trouble explains"),
            "{}",
            top.sentence
        );
        assert_eq!(names.last(), Some(&"cart"));
    }

    #[test]
    fn error_patterns_are_evidence_when_new_or_spiking() {
        let count = |template_id: u64, before: u64, in_window: u64| PatternCount {
            service: "payment".into(),
            template_id,
            template: format!("pattern {template_id}"),
            before,
            in_window,
            first_seen: 7,
        };
        // A 60-minute baseline and a 10-minute window.
        let counts = [
            count(1, 0, 4),   // new
            count(2, 60, 30), // 3/min against 1/min: a spike
            count(3, 60, 20), // 2/min against 1/min: not enough
            count(4, 60, 0),  // quiet in the window
        ];
        let signals = log_signals(&counts, 60.0, 10.0);
        let found: Vec<(u64, bool, f64)> = signals
            .iter()
            .map(|s| (s.template_id, s.new, s.ratio))
            .collect();
        assert_eq!(found, [(1, true, 4.0), (2, false, 3.0)]);
        assert_eq!(signals[0].first_seen, 7);
    }

    #[test]
    fn a_new_error_pattern_counts_as_evidence() {
        let config = RcaConfig::default();
        let normal: Vec<f64> = (0..60).map(|i| 10.0 + (i % 3) as f64).collect();
        let input = [
            series("payment", "lat_99", &normal, &[11.0, 14.0, 14.0]),
            series("checkout", "lat_99", &normal, &[11.0, 14.0, 14.5]),
        ];
        let logs = [LogSignal {
            service: "payment".into(),
            template_id: 7,
            template: "card processor refused: <*>".into(),
            new: true,
            ratio: 40.0,
            first_seen: 500_000_000,
        }];
        let ranking = rank(
            &RcaInput {
                series: &input,
                logs: &logs,
                map: None,
                traces: &[],
            },
            &config,
        );
        assert_eq!(ranking.services[0].service, "payment", "{ranking:#?}");
        assert!(ranking.services[0].sentence.contains("is new"));
    }
}
