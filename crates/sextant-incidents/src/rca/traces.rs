//! Trace evidence for the root-cause ranking: what spans say about each service's own timing,
//! before and during an incident.
//!
//! Two measurements, each compared between the baseline spans (those that start before the
//! incident) and the incident's, by their medians in units of the baseline's spread:
//!
//! - **Own time**: a span's duration less the time its child spans cover, for spans that call
//!   no other service (a client span's own time is the wait for its call, measured as a call
//!   gap). A service whose own work slows (CPU starved, a lock, an uninstrumented database)
//!   shows it here; a service that only waits on a slow callee does not, since the callee's
//!   span covers the wait.
//! - **Call gaps**: for a call from one service to another (a child span on another service),
//!   the caller's span duration less the callee's. The gap is the network and the queues
//!   between them: a delayed network interface, or a saturated callee that takes a while to
//!   start on a request, shows here. A gap that widens is blamed on both ends, each in the
//!   share of its measured calls that widened: a service whose network is slow has every call
//!   to and from it widen, while its partners have only the calls to it.
//!
//! The incident's median is that of its worst stretch of
//! [`super::RcaConfig::trace_stretch_seconds`] (stretches counted from the incident's start, each
//! with enough values), so a delay that lasts part of a long window still shows.
//!
//! Only rises count (a fault does not make things faster), past
//! [`super::RcaConfig::saturation_sigmas`] only logarithmically. A spread is at least 1 % of
//! the median and at least [`MIN_SPREAD_NANOS`], so sub-millisecond jitter never counts as a
//! delay.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{RcaConfig, saturate};

/// The smallest spread a timing is measured in: 0.1 ms.
pub const MIN_SPREAD_NANOS: f64 = 100_000.0;
/// The fewest baseline and incident values a measurement needs.
const MIN_BASELINE: usize = 5;
const MIN_INCIDENT: usize = 3;

/// One span, as the ranking needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRecord {
    pub trace_id: u128,
    pub span_id: u64,
    /// `None` for a root span.
    pub parent_span_id: Option<u64>,
    pub service: String,
    /// Nanoseconds since the Unix epoch.
    pub start: i64,
    pub end: i64,
}

/// A timing's move from the baseline to the incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimingShift {
    /// Medians, in milliseconds.
    pub baseline_ms: f64,
    pub incident_ms: f64,
    /// The rise in baseline spreads (0 when it fell).
    pub spreads: f64,
    /// Values measured in the baseline and in the incident.
    pub baseline_count: usize,
    pub incident_count: usize,
}

/// A call gap that widened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GapShift {
    pub caller: String,
    pub callee: String,
    pub shift: TimingShift,
}

/// What the spans say about one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEvidence {
    pub service: String,
    /// The score the ranking uses: the larger of the own-time rise and the call-gap share,
    /// saturated like series deviations.
    pub deviation: f64,
    pub own_time: Option<TimingShift>,
    /// The widened gaps of calls to and from it, widest first.
    pub gaps: Vec<GapShift>,
    /// Calls to and from it measured in both periods.
    pub measured_calls: usize,
    /// The start of its first incident span past the onset threshold, if any.
    pub onset: Option<i64>,
}

/// Median and spread of `values` (sorted in place).
fn center(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let q = |p: f64| super::quantile(values, p);
    let median = q(0.5);
    let spread = (q(0.75) - q(0.25))
        .max(0.01 * median.abs())
        .max(MIN_SPREAD_NANOS);
    (median, spread)
}

/// (time, value) samples of one measurement, split at the incident's start.
struct Samples {
    incident_start: i64,
    baseline: Vec<f64>,
    incident: Vec<(i64, f64)>,
}

impl Samples {
    fn starting(incident_start: i64) -> Samples {
        Samples {
            incident_start,
            baseline: Vec::new(),
            incident: Vec::new(),
        }
    }

    fn push(&mut self, time: i64, value: f64) {
        if time < self.incident_start {
            self.baseline.push(value);
        } else {
            self.incident.push((time, value));
        }
    }

    /// The shift and the onset, when both periods have enough values.
    fn shift(mut self, config: &RcaConfig) -> Option<(TimingShift, Option<i64>)> {
        if self.baseline.len() < MIN_BASELINE || self.incident.len() < MIN_INCIDENT {
            return None;
        }
        let (median, spread) = center(&mut self.baseline);
        self.incident.sort_by_key(|(t, _)| *t);
        let incident_median = self.worst_median(config);
        let spreads = ((incident_median - median) / spread).max(0.0);
        // The onset: the first incident value from which on the running median is past the
        // threshold (a lone slow call is not an onset).
        let threshold = median + config.onset_sigmas * spread;
        let onset = (spreads >= config.onset_sigmas)
            .then(|| {
                self.incident
                    .iter()
                    .find(|(_, v)| *v >= threshold)
                    .map(|(t, _)| *t)
            })
            .flatten();
        Some((
            TimingShift {
                baseline_ms: median / 1e6,
                incident_ms: incident_median / 1e6,
                spreads,
                baseline_count: self.baseline.len(),
                incident_count: self.incident.len(),
            },
            onset,
        ))
    }

    /// The incident's median: of its worst stretch of `trace_stretch_seconds` that has enough
    /// values, or of all its values (stretches off, or none with enough).
    fn worst_median(&self, config: &RcaConfig) -> f64 {
        let median = |values: &mut Vec<f64>| {
            values.sort_by(f64::total_cmp);
            super::quantile(values, 0.5)
        };
        let stretch = config.trace_stretch_seconds as i64 * 1_000_000_000;
        if stretch > 0 {
            let mut stretches: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for &(time, value) in &self.incident {
                let at = (time - self.incident_start).div_euclid(stretch);
                stretches.entry(at).or_default().push(value);
            }
            let worst = stretches
                .into_values()
                .filter(|values| values.len() >= MIN_INCIDENT)
                .map(|mut values| median(&mut values))
                .fold(f64::NEG_INFINITY, f64::max);
            if worst.is_finite() {
                return worst;
            }
        }
        median(&mut self.incident.iter().map(|(_, v)| *v).collect())
    }
}

/// The evidence of every service the spans show, by service. Spans that start before
/// `incident_start` are the baseline; a parent is found among `spans` only.
pub fn trace_evidence(
    spans: &[SpanRecord],
    incident_start: i64,
    config: &RcaConfig,
) -> BTreeMap<String, TraceEvidence> {
    let index: HashMap<(u128, u64), usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.trace_id, s.span_id), i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut parent_of: Vec<Option<usize>> = vec![None; spans.len()];
    for (i, span) in spans.iter().enumerate() {
        if let Some(parent) = span
            .parent_span_id
            .and_then(|p| index.get(&(span.trace_id, p)))
            && *parent != i
        {
            children[*parent].push(i);
            parent_of[i] = Some(*parent);
        }
    }
    let mut own: BTreeMap<&str, Samples> = BTreeMap::new();
    let mut gaps: BTreeMap<(&str, &str), Samples> = BTreeMap::new();
    for (i, span) in spans.iter().enumerate() {
        if span.end < span.start {
            continue;
        }
        let duration = (span.end - span.start) as f64;
        // A span that calls another service (a client span) spends its own time waiting on
        // the call: that wait is the call gap, measured below, not the service's work.
        let calls_out = children[i]
            .iter()
            .any(|c| spans[*c].service != span.service);
        if !calls_out {
            let covered = covered_nanos(span, children[i].iter().map(|c| &spans[*c]));
            own.entry(&span.service)
                .or_insert_with(|| Samples::starting(incident_start))
                .push(span.start, duration - covered);
        }
        if let Some(parent) = parent_of[i].map(|p| &spans[p])
            && parent.service != span.service
            && parent.end >= parent.start
        {
            let gap = (parent.end - parent.start) as f64 - duration;
            gaps.entry((&parent.service, &span.service))
                .or_insert_with(|| Samples::starting(incident_start))
                .push(parent.start, gap);
        }
    }
    let mut evidence: BTreeMap<String, TraceEvidence> = BTreeMap::new();
    let entry = |evidence: &mut BTreeMap<String, TraceEvidence>, service: &str| {
        evidence
            .entry(service.to_owned())
            .or_insert_with(|| TraceEvidence {
                service: service.to_owned(),
                deviation: 0.0,
                own_time: None,
                gaps: Vec::new(),
                measured_calls: 0,
                onset: None,
            })
            .service
            .clone()
    };
    for (service, samples) in own {
        if let Some((shift, onset)) = samples.shift(config) {
            entry(&mut evidence, service);
            let e = evidence.get_mut(service).expect("just made");
            e.onset = earliest(e.onset, onset);
            e.own_time = Some(shift);
        }
    }
    for ((caller, callee), samples) in gaps {
        let Some((shift, onset)) = samples.shift(config) else {
            continue;
        };
        let widened = shift.spreads >= config.onset_sigmas;
        for end in [caller, callee] {
            entry(&mut evidence, end);
            let e = evidence.get_mut(end).expect("just made");
            e.measured_calls += 1;
            if widened {
                e.gaps.push(GapShift {
                    caller: caller.to_owned(),
                    callee: callee.to_owned(),
                    shift: shift.clone(),
                });
                e.onset = earliest(e.onset, onset);
            }
        }
    }
    for e in evidence.values_mut() {
        e.gaps
            .sort_by(|a, b| b.shift.spreads.total_cmp(&a.shift.spreads));
        let limit = config.saturation_sigmas;
        let gap_share = if e.measured_calls == 0 {
            0.0
        } else {
            e.gaps
                .iter()
                .map(|g| saturate(g.shift.spreads, limit))
                .sum::<f64>()
                / e.measured_calls as f64
        };
        let own = e
            .own_time
            .as_ref()
            .map_or(0.0, |s| saturate(s.spreads, limit));
        e.deviation = gap_share.max(own);
    }
    evidence.retain(|_, e| e.deviation > 0.0);
    evidence
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The nanoseconds of `span` that `children` cover (their union, clipped to the span).
fn covered_nanos<'a>(span: &SpanRecord, children: impl Iterator<Item = &'a SpanRecord>) -> f64 {
    let mut intervals: Vec<(i64, i64)> = children
        .map(|c| (c.start.max(span.start), c.end.min(span.end)))
        .filter(|(a, b)| b > a)
        .collect();
    intervals.sort_unstable();
    let mut covered = 0i64;
    let mut current: Option<(i64, i64)> = None;
    for (a, b) in intervals {
        match &mut current {
            Some((_, end)) if a <= *end => *end = (*end).max(b),
            _ => {
                if let Some((s, e)) = current {
                    covered += e - s;
                }
                current = Some((a, b));
            }
        }
    }
    if let Some((s, e)) = current {
        covered += e - s;
    }
    covered as f64
}

/// The service map the spans show: (caller, callee) for every call from one service to
/// another.
pub fn call_pairs(spans: &[SpanRecord]) -> Vec<(String, String)> {
    let service: HashMap<(u128, u64), &str> = spans
        .iter()
        .map(|s| ((s.trace_id, s.span_id), s.service.as_str()))
        .collect();
    let mut pairs: Vec<(String, String)> = spans
        .iter()
        .filter_map(|s| {
            let caller = service.get(&(s.trace_id, s.parent_span_id?))?;
            (*caller != s.service).then(|| ((*caller).to_owned(), s.service.clone()))
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    /// A call from `caller` to `callee` at `at` ms: the caller's span lasts `total` ms, the
    /// callee's `inner` ms, started `gap / 2` ms later.
    fn call(
        spans: &mut Vec<SpanRecord>,
        trace: u128,
        at: i64,
        parts: (&str, &str),
        times: (i64, i64),
    ) {
        let (caller, callee) = parts;
        let (total, inner) = times;
        let root = SpanRecord {
            trace_id: trace,
            span_id: 1,
            parent_span_id: None,
            service: caller.into(),
            start: at * MS,
            end: (at + total) * MS,
        };
        let offset = (total - inner) / 2;
        let child = SpanRecord {
            trace_id: trace,
            span_id: 2,
            parent_span_id: Some(1),
            service: callee.into(),
            start: (at + offset) * MS,
            end: (at + offset + inner) * MS,
        };
        spans.push(root);
        spans.push(child);
    }

    #[test]
    fn a_delay_in_part_of_a_long_window_shows_in_its_worst_stretch() {
        let minute = 60_000;
        let mut spans = Vec::new();
        let mut trace = 0u128;
        // A call every 10 s for an hour of baseline and 20 minutes of incident; the cart's
        // calls take 200 ms longer on the wire in the incident's first five minutes only.
        for i in 0..480i64 {
            let at = i * 10_000;
            let slow = (60 * minute..65 * minute).contains(&at);
            trace += 1;
            let total = if slow { 230 } else { 30 };
            call(&mut spans, trace, at, ("front", "cart"), (total, 20));
        }
        let start = 60 * minute * MS;
        let gap = |config: &RcaConfig| {
            trace_evidence(&spans, start, config)
                .get("cart")
                .and_then(|e| e.gaps.first().map(|g| g.shift.spreads))
                .unwrap_or(0.0)
        };
        let config = RcaConfig::default();
        assert!(gap(&config) >= config.onset_sigmas, "{}", gap(&config));
        // Over the whole window, the median call is a normal one.
        let whole = RcaConfig {
            trace_stretch_seconds: 0,
            ..config.clone()
        };
        assert!(gap(&whole) < config.onset_sigmas, "{}", gap(&whole));
    }

    #[test]
    fn own_time_excludes_what_children_cover() {
        let span = |start, end| SpanRecord {
            trace_id: 1,
            span_id: 1,
            parent_span_id: None,
            service: "a".into(),
            start,
            end,
        };
        let parent = span(0, 100);
        let children = [span(10, 30), span(20, 40), span(90, 150), span(200, 300)];
        assert_eq!(covered_nanos(&parent, children.iter()), 40.0);
    }

    #[test]
    fn a_delayed_network_widens_every_call_of_its_service() {
        let config = RcaConfig::default();
        let mut spans = Vec::new();
        let mut trace = 0u128;
        // The front end calls the cart and the catalogue, the cart calls redis; from t = 1 s
        // every call to and from the cart takes 200 ms longer on the wire.
        for i in 0..40i64 {
            let at = i * 50;
            let delay = if at >= 1_000 { 200 } else { 0 };
            let jitter = i % 3;
            for (parts, inner, extra) in [
                (("front", "cart"), 20, delay),
                (("front", "catalogue"), 10, 0),
                (("cart", "redis"), 2, delay),
            ] {
                trace += 1;
                call(
                    &mut spans,
                    trace,
                    at,
                    parts,
                    (inner + 2 + jitter + extra, inner + jitter),
                );
            }
        }
        let evidence = trace_evidence(&spans, 1_000 * MS, &config);
        let cart = &evidence["cart"];
        assert_eq!((cart.gaps.len(), cart.measured_calls), (2, 2), "{cart:#?}");
        assert!(cart.deviation >= 10.0, "{cart:#?}");
        assert_eq!(cart.onset, Some(1_000 * MS));
        let front = &evidence["front"];
        assert_eq!((front.gaps.len(), front.measured_calls), (1, 2));
        assert!(front.deviation < cart.deviation / 1.5, "{front:#?}");
        assert!(!evidence.contains_key("catalogue"), "{evidence:#?}");
        assert_eq!(
            call_pairs(&spans),
            [
                ("cart".to_owned(), "redis".to_owned()),
                ("front".to_owned(), "cart".to_owned()),
                ("front".to_owned(), "catalogue".to_owned()),
            ]
        );
    }

    #[test]
    fn a_starved_service_shows_in_its_own_time_not_its_callers() {
        let config = RcaConfig::default();
        let mut spans = Vec::new();
        for i in 0..40i64 {
            let at = i * 50;
            // The catalogue's own work goes from 10 to 40 ms; the front end waits for it.
            let work = if at >= 1_000 { 40 } else { 10 } + i % 2;
            call(
                &mut spans,
                i as u128,
                at,
                ("front", "catalogue"),
                (work + 2, work),
            );
        }
        let evidence = trace_evidence(&spans, 1_000 * MS, &config);
        let catalogue = &evidence["catalogue"];
        let own = catalogue.own_time.as_ref().unwrap();
        assert_eq!((own.baseline_ms, own.incident_ms), (10.5, 40.5), "{own:?}");
        assert!(catalogue.deviation >= 10.0);
        assert!(
            !evidence.contains_key("front"),
            "the front end's own time and the gap did not move: {evidence:#?}"
        );
    }
}
