//! [`SeriesDetectors`]: every metric series and every log pattern's per-minute rate gets its own
//! streaming [`Detector`], fed as rows are committed, in write-ahead log order. A point that
//! leaves its band opens an anomaly episode and becomes an [`Event`] with its explanation; the
//! episode closes after a few quiet points back inside the band it had when the episode opened
//! (a detector that has learnt the faulty level as normal does not close it while the fault
//! goes on), or after many points the detector takes as normal (a lasting change of level).
//!
//! What a series is fed: a gauge's value; a monotonic counter's per-second rate (a drop is a
//! reset: the new value counts as the increase); a delta counter's value over its interval; a
//! histogram's or summary's mean observation since the previous point. A log pattern's series
//! counts the lines of one (service, template) per minute of log time; minutes without lines
//! count 0.
//!
//! States are saved with the flush checkpoint (only the series that changed, and only once
//! their detector is past its warm-up: a series seen a few times costs no disk) and replay
//! feeds the same records again, so a restart carries on where it stopped. Events have ids
//! derived from (tenant, series, time), so an anomaly found again by a replay is not stored
//! twice. A series not fed for its idle time (of its tenant's own clock: metric time for
//! metric series, log time for patterns) is retired, so churning pods and one-off patterns
//! do not pile up.

mod explain;

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};

use arrow::array::{
    Array, BooleanArray, Float64Array, Int32Array, MapArray, StringArray, TimestampNanosecondArray,
    UInt64Array,
};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use sextant_analytics::anomaly::{Detector, DetectorConfig, Feedback, Verdict};
use sextant_model::{Event, TenantId};
use sextant_tables::schema::TEMPLATE_ID_COLUMN;

use crate::{Error, Result, TIME_COLUMN};

pub use explain::PATTERN_RATE_METRIC;

const NANOS_PER_MS: i64 = 1_000_000;
const NANOS_PER_SECOND: i64 = 1_000_000_000;
/// OTLP `AggregationTemporality` of delta points.
const TEMPORALITY_DELTA: i32 = 1;
/// The saved-state key of a tenant's open pattern-rate minute (never a series key: those
/// start with a metric name).
const PATTERN_CLOCK_KEY: &str = "";

/// Settings of the live detectors.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorSettings {
    /// Watch series at all. Default true.
    pub enabled: bool,
    /// The detector of every series.
    pub detector: DetectorConfig,
    /// Series watched per tenant; new series past this are not watched (and counted in
    /// `sextant_detector_series_dropped_total`). Default 100,000.
    pub max_series_per_tenant: usize,
    /// Log pattern rates are counted per this many seconds of log time. Default 60.
    pub pattern_step_seconds: i64,
    /// An anomaly episode closes after this many points in a row inside the band, and inside
    /// the band it had when the episode opened. Default 5.
    pub quiet_points: u32,
    /// An episode also closes after this many points in a row that the detector finds normal
    /// though they stay outside the band the episode opened with: the series settled at a new
    /// level. Default 60.
    pub settle_points: u32,
    /// Series states are saved with a flush's checkpoint at most this often (pattern clocks at
    /// every flush, everything on a clean stop): after a crash a model misses at most this
    /// long of learning. Default 60 s.
    pub save_interval: std::time::Duration,
    /// A series whose score reached the detector's threshold within this many seconds before
    /// another's anomaly (same service) is named among its related series. Default 300.
    pub related_window_seconds: i64,
    /// A log pattern's series with no line for this many seconds of log time is retired (its
    /// model and saved state dropped; it starts afresh if the pattern comes back). Default 7
    /// days.
    pub pattern_idle_seconds: i64,
    /// A metric series with no point while its tenant's metric time moved on this many
    /// seconds is retired the same way (a replaced pod's series, a label value gone).
    /// Default 1 day.
    pub series_idle_seconds: i64,
}

impl Default for DetectorSettings {
    fn default() -> Self {
        DetectorSettings {
            enabled: true,
            detector: DetectorConfig::default(),
            max_series_per_tenant: 100_000,
            pattern_step_seconds: 60,
            quiet_points: 5,
            settle_points: 60,
            save_interval: std::time::Duration::from_secs(60),
            related_window_seconds: 300,
            pattern_idle_seconds: 7 * 86_400,
            series_idle_seconds: 86_400,
        }
    }
}

/// How a series' points become the values its detector sees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Feed {
    Gauge,
    /// Cumulative monotonic counter: per-second rate between points.
    CounterRate {
        last: Option<(i64, f64)>,
    },
    /// Delta counter: the value over its interval, per second.
    DeltaRate,
    /// Histogram or summary: mean observation since the previous point (cumulative), or of
    /// the point (delta).
    Mean {
        last: Option<(f64, f64)>,
    },
    /// Lines of one log template per step.
    PatternRate {
        template_id: u64,
    },
}

/// An open anomaly episode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Episode {
    event_id: String,
    /// Points in a row back to normal.
    quiet: u32,
    /// The band (lower, upper) when the episode opened: back to normal is back inside it.
    #[serde(default)]
    before: Option<(f64, f64)>,
    /// Points in a row the detector finds normal while outside `before`.
    #[serde(default)]
    settled: u32,
}

impl Episode {
    /// Counts one point the detector found normal; whether the episode is over.
    fn normal_point(&mut self, value: f64, settings: &DetectorSettings) -> bool {
        let back = self
            .before
            .is_none_or(|(lower, upper)| (lower..=upper).contains(&value));
        if back {
            self.quiet += 1;
        } else {
            self.quiet = 0;
            self.settled += 1;
        }
        self.quiet >= settings.quiet_points || self.settled >= settings.settle_points
    }
}

/// One watched series.
#[derive(Clone, Debug)]
struct Watched {
    key: String,
    name: String,
    service: String,
    /// Sorted by label; a slice, not a map, as most series have only a few.
    labels: Box<[(String, String)]>,
    feed: Feed,
    detector: Detector,
    episode: Option<Episode>,
    /// Its tenant's clock (ns) when it was last fed: the time of its newest point for a
    /// metric series, the start of the last step with a line for a pattern; 0 when unknown
    /// (a state saved before it was kept), taken as now.
    last_seen: i64,
    /// Listed in its tenant's `changed`.
    dirty: bool,
}

/// A series as saved: everything but the detector, whose own encoding follows it (see
/// [`encode_series`]).
#[derive(Deserialize)]
struct SavedSeries {
    name: String,
    service: String,
    labels: Vec<(String, String)>,
    feed: Feed,
    episode: Option<Episode>,
    #[serde(default)]
    last_seen: i64,
}

/// [`SavedSeries`] borrowed from a watched series, for writing.
#[derive(Serialize)]
struct SavedSeriesRef<'a> {
    name: &'a str,
    service: &'a str,
    labels: &'a [(String, String)],
    feed: &'a Feed,
    episode: &'a Option<Episode>,
    last_seen: i64,
}

/// A tenant's open pattern-rate step.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct PatternClock {
    /// Start of the open step (ns); `None` before the first log line.
    step_start: Option<i64>,
    /// Lines per (service, template) in the open step.
    counts: Vec<(String, u64, u64)>,
    /// Where each template's entries are in `counts`, and how many entries that covers
    /// (rebuilt when it falls out of step, as after loading a saved clock).
    #[serde(skip)]
    positions: HashMap<u64, Vec<usize>>,
    #[serde(skip)]
    indexed: usize,
}

impl PatternClock {
    /// Counts one line of `template` from `service` in the open step.
    fn count(&mut self, service: &str, template: u64) {
        if self.indexed != self.counts.len() {
            self.positions.clear();
            for (i, (_, t, _)) in self.counts.iter().enumerate() {
                self.positions.entry(*t).or_default().push(i);
            }
            self.indexed = self.counts.len();
        }
        let positions = self.positions.entry(template).or_default();
        match positions.iter().find(|&&i| self.counts[i].0 == service) {
            Some(&i) => self.counts[i].2 += 1,
            None => {
                positions.push(self.counts.len());
                self.counts.push((service.to_owned(), template, 1));
                self.indexed += 1;
            }
        }
    }

    /// The open step's counts, leaving it empty.
    fn take_counts(&mut self) -> Vec<(String, u64, u64)> {
        self.positions.clear();
        self.indexed = 0;
        std::mem::take(&mut self.counts)
    }
}

/// What the detectors need of a tenant's log templates.
pub(crate) trait Templates {
    /// The template `id` belongs to now (itself unless it merged into another; itself when
    /// unknown).
    fn resolve(&self, id: u64) -> u64;
    /// Its text, following merges.
    fn text(&self, id: u64) -> Option<String>;
}

/// A series that moved recently, for explanations.
#[derive(Clone, Debug)]
struct Mover {
    time: i64,
    series: usize,
    score: f64,
    value: f64,
    expected: f64,
}

#[derive(Debug, Default)]
struct TenantDetectors {
    series: Vec<Watched>,
    by_key: HashMap<String, usize>,
    /// Hash of (name, service, attributes in arrival order) to series.
    by_raw: HashMap<u64, usize, foldhash::fast::RandomState>,
    /// (service, template) to series.
    by_pattern: HashMap<(String, u64), usize>,
    clock: PatternClock,
    clock_changed: bool,
    /// The newest metric time seen (ns), and when idle metric series are next looked for.
    metric_clock: i64,
    next_sweep: i64,
    /// Per service, series that moved lately (oldest first).
    movers: HashMap<String, Vec<Mover>>,
    /// Series changed since their state was last taken for saving (each once; see
    /// [`Watched::dirty`]).
    changed: Vec<usize>,
    /// Slots of retired series, for new ones to take.
    free: Vec<usize>,
    /// Keys of retired series whose saved states are to be deleted.
    retired: Vec<String>,
    /// The watched series reached the cap (logged once).
    capped: bool,
}

/// Detector states taken for saving: all encoded into one buffer (one allocation, handed
/// back whole when saved, rather than one per series), each entry naming its range.
#[derive(Debug, Default)]
pub(crate) struct SavedStates {
    bytes: Vec<u8>,
    entries: Vec<(TenantId, String, std::ops::Range<usize>)>,
}

impl SavedStates {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The states as the metadata store saves them.
    pub fn views(&self) -> Vec<crate::meta::DetectorState<'_>> {
        self.entries
            .iter()
            .map(|(tenant, key, range)| (tenant, key.as_str(), &self.bytes[range.clone()]))
            .collect()
    }
}

/// What a batch of rows made of the detectors: new anomaly events, and episodes that closed.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub events: Vec<Event>,
    /// (tenant, event id, time) of anomalies whose series came back inside its band, at the
    /// time of the point that closed the episode.
    pub resolved: Vec<(TenantId, String, i64)>,
}

impl Findings {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.resolved.is_empty()
    }
}

/// The detectors of every tenant.
#[derive(Debug)]
pub(crate) struct SeriesDetectors {
    settings: DetectorSettings,
    /// When series states were last taken for saving.
    last_saved: Option<std::time::Instant>,
    tenants: HashMap<TenantId, TenantDetectors>,
    hasher: foldhash::fast::FixedState,
}

/// One metric row's columns.
struct MetricColumns<'a> {
    time: &'a TimestampNanosecondArray,
    start_time: &'a TimestampNanosecondArray,
    service: &'a StringArray,
    name: &'a StringArray,
    kind: &'a StringArray,
    value: &'a Float64Array,
    count: &'a UInt64Array,
    temporality: &'a Int32Array,
    is_monotonic: &'a BooleanArray,
    attributes: &'a MapArray,
    keys: &'a StringArray,
    values: &'a StringArray,
}

fn column<'a, T: 'static>(rows: &'a RecordBatch, name: &str) -> Option<&'a T> {
    rows.column_by_name(name)?.as_any().downcast_ref::<T>()
}

impl<'a> MetricColumns<'a> {
    fn of(rows: &'a RecordBatch) -> Option<MetricColumns<'a>> {
        let attributes: &MapArray = column(rows, "attributes")?;
        Some(MetricColumns {
            time: column(rows, TIME_COLUMN)?,
            start_time: column(rows, "start_time")?,
            service: column(rows, "service")?,
            name: column(rows, "name")?,
            kind: column(rows, "kind")?,
            value: column(rows, "value")?,
            count: column(rows, "count")?,
            temporality: column(rows, "temporality")?,
            is_monotonic: column(rows, "is_monotonic")?,
            keys: attributes.keys().as_any().downcast_ref::<StringArray>()?,
            values: attributes.values().as_any().downcast_ref::<StringArray>()?,
            attributes,
        })
    }

    fn attribute_range(&self, row: usize) -> std::ops::Range<usize> {
        let offsets = self.attributes.value_offsets();
        offsets[row] as usize..offsets[row + 1] as usize
    }
}

/// The canonical key of a series: `name{label="value",...}` with labels sorted and `service`
/// among them.
pub(crate) fn series_key(name: &str, labels: &BTreeMap<String, String>) -> String {
    let mut key = String::with_capacity(name.len() + 32);
    key.push_str(name);
    key.push('{');
    for (i, (label, value)) in labels.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        key.push_str(label);
        key.push_str("=\"");
        for c in value.chars() {
            if matches!(c, '"' | '\\') {
                key.push('\\');
            }
            key.push(c);
        }
        key.push('"');
    }
    key.push('}');
    key
}

impl SeriesDetectors {
    /// Detectors carrying on from their saved states; `sensitivities` (from feedback) replace
    /// the saved ones. A state that does not load is dropped with a warning: that series
    /// learns again, which costs a warm-up, not correctness.
    pub fn restore(
        settings: DetectorSettings,
        saved: Vec<(TenantId, String, Vec<u8>)>,
        sensitivities: Vec<(TenantId, String, f64)>,
    ) -> Result<Self> {
        settings
            .detector
            .validate()
            .map_err(|e| Error::Decode(format!("detector settings: {e}")))?;
        let mut detectors = SeriesDetectors {
            settings,
            last_saved: None,
            tenants: HashMap::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x5e47a47),
        };
        for (tenant, key, bytes) in saved {
            let state = detectors.tenants.entry(tenant.clone()).or_default();
            if key == PATTERN_CLOCK_KEY {
                match serde_json::from_slice(&bytes) {
                    Ok(clock) => state.clock = clock,
                    Err(err) => {
                        tracing::warn!(%tenant, error = %err, "saved pattern clock dropped")
                    }
                }
                continue;
            }
            match decode_series(&key, &bytes) {
                Ok(watched) => {
                    state.add(watched);
                }
                Err(reason) => {
                    tracing::warn!(%tenant, series = %key, %reason, "saved detector dropped; the series learns again");
                }
            }
        }
        for (tenant, key, sensitivity) in sensitivities {
            if let Some(state) = detectors.tenants.get_mut(&tenant)
                && let Some(&index) = state.by_key.get(&key)
            {
                state.series[index].detector.set_sensitivity(sensitivity);
            }
        }
        Ok(detectors)
    }

    pub fn settings(&self) -> &DetectorSettings {
        &self.settings
    }

    /// Feeds a committed batch of metric rows.
    pub fn observe_metrics(&mut self, tenant: &TenantId, rows: &RecordBatch) -> Findings {
        let mut findings = Findings::default();
        if !self.settings.enabled || rows.num_rows() == 0 {
            return findings;
        }
        let Some(columns) = MetricColumns::of(rows) else {
            return findings;
        };
        let settings = &self.settings;
        let hasher = &self.hasher;
        let state = self.tenants.entry(tenant.clone()).or_default();
        for row in 0..rows.num_rows() {
            let mut hash = hasher.build_hasher();
            hash.write(columns.name.value(row).as_bytes());
            hash.write_u8(0xff);
            hash.write(columns.service.value(row).as_bytes());
            for entry in columns.attribute_range(row) {
                hash.write_u8(0xfe);
                hash.write(columns.keys.value(entry).as_bytes());
                hash.write_u8(0xfd);
                hash.write(columns.values.value(entry).as_bytes());
            }
            let raw = hash.finish();
            let index = match state.by_raw.get(&raw) {
                Some(&index) => index,
                None => {
                    let Some(index) = state.metric_series(settings, tenant, &columns, row) else {
                        continue;
                    };
                    state.by_raw.insert(raw, index);
                    index
                }
            };
            let time = columns.time.value(row);
            state.metric_clock = state.metric_clock.max(time);
            state.series[index].last_seen = state.metric_clock;
            let Some(value) = state.series[index].feed_value(&columns, row) else {
                state.mark(index);
                continue;
            };
            state.judge(settings, tenant, index, time, value, &mut findings, None);
        }
        if state.metric_clock >= state.next_sweep {
            state.retire_idle_metric_series(settings, tenant, &mut findings);
        }
        findings
    }

    /// Feeds a committed batch of log rows (already labelled with their templates): each line
    /// counts for the template its id resolves to in `templates`, which also names templates
    /// for explanations.
    pub fn observe_logs(
        &mut self,
        tenant: &TenantId,
        rows: &RecordBatch,
        templates: &dyn Templates,
    ) -> Findings {
        let mut findings = Findings::default();
        if !self.settings.enabled || rows.num_rows() == 0 {
            return findings;
        }
        let (Some(times), Some(services), Some(ids)) = (
            column::<TimestampNanosecondArray>(rows, TIME_COLUMN),
            column::<StringArray>(rows, "service"),
            column::<UInt64Array>(rows, TEMPLATE_ID_COLUMN),
        ) else {
            return findings;
        };
        let step = self.settings.pattern_step_seconds.max(1) * NANOS_PER_SECOND;
        let settings = self.settings.clone();
        let state = self.tenants.entry(tenant.clone()).or_default();
        for row in 0..rows.num_rows() {
            if ids.is_null(row) {
                continue;
            }
            let bucket = times.value(row).div_euclid(step) * step;
            match state.clock.step_start {
                None => state.clock.step_start = Some(bucket),
                Some(open) if bucket > open => {
                    state.close_steps(&settings, tenant, bucket, step, templates, &mut findings);
                }
                // A late line counts in the open step.
                Some(_) => {}
            }
            let service = services.value(row);
            // By the id the line carries; the step's counts go to the template each id
            // belongs to when the step closes.
            let template = ids.value(row);
            state.clock_changed = true;
            state.clock.count(service, template);
        }
        findings
    }

    /// Applies feedback to a series; the sensitivity before and after, or `None` for a series
    /// not watched.
    pub fn feedback(
        &mut self,
        tenant: &TenantId,
        series: &str,
        feedback: Feedback,
    ) -> Option<(f64, f64)> {
        let state = self.tenants.get_mut(tenant)?;
        let index = *state.by_key.get(series)?;
        state.mark(index);
        Some(state.series[index].detector.feedback(feedback))
    }

    /// The states that changed since the last call, for saving. Series states are taken at
    /// most every `save_interval` unless `all`; pattern clocks always.
    pub fn take_changed(&mut self, all: bool) -> SavedStates {
        let now = std::time::Instant::now();
        let series_due = all
            || self
                .last_saved
                .is_none_or(|at| now.duration_since(at) >= self.settings.save_interval);
        if series_due {
            self.last_saved = Some(now);
        }
        let mut saved = SavedStates::default();
        for (tenant, state) in &mut self.tenants {
            if std::mem::take(&mut state.clock_changed) {
                let start = saved.bytes.len();
                serde_json::to_writer(&mut saved.bytes, &state.clock)
                    .expect("a pattern clock serialises");
                saved.entries.push((
                    tenant.clone(),
                    PATTERN_CLOCK_KEY.to_owned(),
                    start..saved.bytes.len(),
                ));
            }
            // A retired series' state is deleted: an empty state says so.
            for key in std::mem::take(&mut state.retired) {
                let at = saved.bytes.len();
                saved.entries.push((tenant.clone(), key, at..at));
            }
            if !series_due {
                continue;
            }
            // A slot may be listed twice (retired and taken again) or hold a retired series.
            for index in std::mem::take(&mut state.changed) {
                let watched = &mut state.series[index];
                if !std::mem::take(&mut watched.dirty)
                    || state.by_key.get(&watched.key) != Some(&index)
                {
                    continue;
                }
                // A young series is not saved: a restart costs it part of a warm-up, and the
                // many series seen only a few times cost no disk.
                if !watched.detector.is_warm(&self.settings.detector) {
                    continue;
                }
                let watched = &*watched;
                let start = saved.bytes.len();
                encode_series(watched, &mut saved.bytes);
                saved.entries.push((
                    tenant.clone(),
                    watched.key.clone(),
                    start..saved.bytes.len(),
                ));
            }
        }
        saved
            .entries
            .sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
        saved
    }

    /// Marks states changed again (they were taken but not saved).
    pub fn mark_changed(&mut self, taken: &SavedStates) {
        for (tenant, key, _) in &taken.entries {
            let Some(state) = self.tenants.get_mut(tenant) else {
                continue;
            };
            if key == PATTERN_CLOCK_KEY {
                state.clock_changed = true;
            } else if let Some(&index) = state.by_key.get(key) {
                state.mark(index);
            } else {
                // A deletion that was not saved.
                state.retired.push(key.clone());
            }
        }
    }

    /// Number of series watched for `tenant`.
    pub fn series_count(&self, tenant: &TenantId) -> usize {
        self.tenants.get(tenant).map_or(0, TenantDetectors::watched)
    }

    /// Drops a tenant's detectors (its data was erased).
    pub fn forget(&mut self, tenant: &TenantId) {
        self.tenants.remove(tenant);
    }
}

impl TenantDetectors {
    /// Notes that series `index` changed since it was last taken for saving.
    fn mark(&mut self, index: usize) {
        let watched = &mut self.series[index];
        if !watched.dirty {
            watched.dirty = true;
            self.changed.push(index);
        }
    }

    fn add(&mut self, watched: Watched) -> usize {
        let index = self.free.pop().unwrap_or(self.series.len());
        self.by_key.insert(watched.key.clone(), index);
        if let Feed::PatternRate { template_id, .. } = watched.feed {
            self.by_pattern
                .insert((watched.service.clone(), template_id), index);
        }
        if index == self.series.len() {
            self.series.push(watched);
        } else {
            self.series[index] = watched;
        }
        index
    }

    /// Stops watching series `index`: it is judged no more, its saved state is deleted with
    /// the next save, and a new series takes its slot.
    fn retire(&mut self, index: usize) {
        let watched = &self.series[index];
        // A live series is the one its key names; a retired slot's key names another or none.
        if self.by_key.get(&watched.key) != Some(&index) {
            return;
        }
        self.by_key.remove(&watched.key);
        if let Feed::PatternRate { template_id, .. } = watched.feed {
            self.by_pattern
                .remove(&(watched.service.clone(), template_id));
        }
        self.retired.push(watched.key.clone());
        if let Some(movers) = self.movers.get_mut(&watched.service) {
            movers.retain(|m| m.series != index);
        }
        // (Its entry in `changed`, if any, is passed over when states are taken.)
        self.free.push(index);
    }

    /// [`TenantDetectors::retire`], resolving at `time` the anomaly the series had open.
    fn retire_at(&mut self, index: usize, tenant: &TenantId, time: i64, findings: &mut Findings) {
        if let Some(episode) = self.series[index].episode.take() {
            findings
                .resolved
                .push((tenant.clone(), episode.event_id, time));
        }
        self.retire(index);
    }

    /// Series watched now (retired ones left out).
    fn watched(&self) -> usize {
        self.series.len() - self.free.len()
    }

    /// Retires the metric series not fed while the tenant's metric time moved on
    /// `series_idle_seconds` (looked for about every 24th of that, at least every minute).
    fn retire_idle_metric_series(
        &mut self,
        settings: &DetectorSettings,
        tenant: &TenantId,
        findings: &mut Findings,
    ) {
        let idle = settings
            .series_idle_seconds
            .saturating_mul(NANOS_PER_SECOND);
        let now = self.metric_clock;
        self.next_sweep = now.saturating_add((idle / 24).max(60 * NANOS_PER_SECOND));
        let mut stale = Vec::new();
        for &index in self.by_key.values() {
            let watched = &mut self.series[index];
            if matches!(watched.feed, Feed::PatternRate { .. }) {
                continue;
            }
            if watched.last_seen == 0 {
                watched.last_seen = now;
            } else if now - watched.last_seen > idle {
                stale.push(index);
            }
        }
        if stale.is_empty() {
            return;
        }
        for &index in &stale {
            self.retire_at(index, tenant, now, findings);
        }
        // Rows map to series by a hash of their raw attributes too; those of a retired
        // series must not find the slot's next tenant.
        let retired: std::collections::HashSet<usize> = stale.into_iter().collect();
        self.by_raw.retain(|_, index| !retired.contains(index));
    }

    /// Whether a new series may be watched; past the tenant's cap it is counted (per tenant)
    /// and, the first time, logged.
    fn has_room(&mut self, settings: &DetectorSettings, tenant: &TenantId) -> bool {
        if self.watched() < settings.max_series_per_tenant {
            return true;
        }
        metrics::counter!("sextant_detector_series_dropped_total", "tenant" => tenant.to_string())
            .increment(1);
        if !std::mem::replace(&mut self.capped, true) {
            tracing::warn!(%tenant, cap = settings.max_series_per_tenant, "the tenant's watched series reached `anomaly.max_series_per_tenant`: new series are stored but not watched");
        }
        false
    }

    /// The series of a metric row seen for the first time in this process (found by its
    /// canonical key, or created).
    fn metric_series(
        &mut self,
        settings: &DetectorSettings,
        tenant: &TenantId,
        columns: &MetricColumns<'_>,
        row: usize,
    ) -> Option<usize> {
        let mut labels: BTreeMap<String, String> = columns
            .attribute_range(row)
            .map(|entry| {
                (
                    columns.keys.value(entry).to_owned(),
                    columns.values.value(entry).to_owned(),
                )
            })
            .collect();
        let service = columns.service.value(row).to_owned();
        labels.insert("service".to_owned(), service.clone());
        let name = columns.name.value(row);
        let key = series_key(name, &labels);
        if let Some(&index) = self.by_key.get(&key) {
            return Some(index);
        }
        if !self.has_room(settings, tenant) {
            return None;
        }
        let delta = columns.temporality.value(row) == TEMPORALITY_DELTA;
        let feed = match columns.kind.value(row) {
            "gauge" => Feed::Gauge,
            "sum" if !columns.is_monotonic.value(row) => Feed::Gauge,
            "sum" if delta => Feed::DeltaRate,
            "sum" => Feed::CounterRate { last: None },
            _ => Feed::Mean { last: None },
        };
        labels.remove("service");
        let index = self.add(Watched {
            key,
            name: name.to_owned(),
            service,
            labels: labels.into_iter().collect(),
            feed,
            detector: Detector::new(&settings.detector),
            episode: None,
            last_seen: 0,
            dirty: false,
        });
        self.mark(index);
        Some(index)
    }

    /// Closes the open pattern step (and empty steps up to `next`, at most a day's worth), then
    /// opens `next`.
    fn close_steps(
        &mut self,
        settings: &DetectorSettings,
        tenant: &TenantId,
        next: i64,
        step: i64,
        templates: &dyn Templates,
        findings: &mut Findings,
    ) {
        let Some(open) = self.clock.step_start else {
            return;
        };
        // A template merged into another since its series began: the survivor's series
        // counts its lines from now on, and its own is retired.
        let merged: Vec<usize> = self
            .by_pattern
            .iter()
            .filter(|((_, template), _)| templates.resolve(*template) != *template)
            .map(|(_, &index)| index)
            .collect();
        for index in merged {
            // An anomaly it had open ends here: the survivor's series carries on.
            self.retire_at(index, tenant, open, findings);
        }
        // Counts kept from before a merge (a saved clock) go to the survivor too.
        let counts = self.clock.take_counts();
        let mut resolved: HashMap<(String, u64), u64> = HashMap::new();
        for (service, template, count) in counts {
            *resolved
                .entry((service, templates.resolve(template)))
                .or_default() += count;
        }
        let mut counts: Vec<(String, u64, u64)> = resolved
            .into_iter()
            .map(|((service, template), count)| (service, template, count))
            .collect();
        counts.sort_unstable();
        for (service, template, _) in &counts {
            if !self.by_pattern.contains_key(&(service.clone(), *template))
                && self.has_room(settings, tenant)
            {
                let labels = Box::new([("template_id".to_owned(), template.to_string())]);
                let mut key_labels: BTreeMap<String, String> = labels.iter().cloned().collect();
                key_labels.insert("service".to_owned(), service.clone());
                let index = self.add(Watched {
                    key: series_key(PATTERN_RATE_METRIC, &key_labels),
                    name: PATTERN_RATE_METRIC.to_owned(),
                    service: service.clone(),
                    labels,
                    feed: Feed::PatternRate {
                        template_id: *template,
                    },
                    detector: Detector::new(&settings.detector),
                    episode: None,
                    last_seen: open,
                    dirty: false,
                });
                self.mark(index);
            }
        }
        let per_step: HashMap<(&str, u64), u64> = counts
            .iter()
            .map(|(service, template, count)| ((service.as_str(), *template), *count))
            .collect();
        // A pattern with lines in this step is fresh; one without any for
        // `pattern_idle_seconds` is retired (if it comes back it starts afresh).
        let idle = settings
            .pattern_idle_seconds
            .saturating_mul(NANOS_PER_SECOND);
        let mut stale = Vec::new();
        for ((service, template), &index) in &self.by_pattern {
            let watched = &mut self.series[index];
            if watched.last_seen == 0 || per_step.contains_key(&(service.as_str(), *template)) {
                watched.last_seen = open;
            } else if open - watched.last_seen > idle {
                stale.push(index);
            }
        }
        for index in stale {
            self.retire_at(index, tenant, open, findings);
        }
        let mut patterns: Vec<(usize, u64, String)> = self
            .by_pattern
            .iter()
            .map(|((service, template), &index)| (index, *template, service.clone()))
            .collect();
        patterns.sort_unstable();
        let empty_steps =
            ((next - open) / step - 1).clamp(0, 86_400 / (step / NANOS_PER_SECOND).max(1));
        let last_empty = next - step;
        let first_empty = last_empty - (empty_steps - 1) * step;
        for (index, template, service) in patterns {
            let count = per_step
                .get(&(service.as_str(), template))
                .copied()
                .unwrap_or(0);
            let text = || templates.text(template);
            self.judge(
                settings,
                tenant,
                index,
                open,
                count as f64,
                findings,
                Some(&text),
            );
            if empty_steps > 0 {
                let mut at = first_empty;
                while at <= last_empty {
                    self.judge(settings, tenant, index, at, 0.0, findings, Some(&text));
                    at += step;
                }
            }
        }
        self.clock.step_start = Some(next);
        self.clock_changed = true;
    }

    /// Scores one point of series `index`, opening or closing its anomaly episode.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        settings: &DetectorSettings,
        tenant: &TenantId,
        index: usize,
        time: i64,
        value: f64,
        findings: &mut Findings,
        template_text: Option<&dyn Fn() -> Option<String>>,
    ) {
        self.mark(index);
        let watched = &mut self.series[index];
        let mut verdict = watched
            .detector
            .update(&settings.detector, time / NANOS_PER_MS, value);
        if verdict.warming_up {
            return;
        }
        if matches!(watched.feed, Feed::PatternRate { .. }) {
            widen_to_count_noise(&mut verdict, value);
        }
        if verdict.score >= settings.detector.threshold {
            let movers = self.movers.entry(watched.service.clone()).or_default();
            let oldest = time - settings.related_window_seconds * NANOS_PER_SECOND;
            movers.retain(|m| m.time >= oldest && m.series != index);
            movers.push(Mover {
                time,
                series: index,
                score: verdict.score,
                value,
                expected: verdict.expected,
            });
            if movers.len() > 64 {
                movers.remove(0);
            }
        }
        let watched = &mut self.series[index];
        match (&mut watched.episode, verdict.anomalous) {
            (Some(episode), true) => {
                episode.quiet = 0;
                episode.settled = 0;
            }
            (Some(episode), false) => {
                if episode.normal_point(value, settings) {
                    let episode = watched.episode.take().expect("an open episode");
                    findings
                        .resolved
                        .push((tenant.clone(), episode.event_id, time));
                }
            }
            (None, false) => {}
            (None, true) => {
                let event = self.anomaly_event(
                    settings,
                    tenant,
                    index,
                    time,
                    value,
                    &verdict,
                    template_text,
                );
                let before = (verdict.lower.is_finite() && verdict.upper.is_finite())
                    .then_some((verdict.lower, verdict.upper));
                self.series[index].episode = Some(Episode {
                    event_id: event.id.clone(),
                    quiet: 0,
                    before,
                    settled: 0,
                });
                metrics::counter!("sextant_anomalies_total").increment(1);
                findings.events.push(event);
            }
        }
    }

    /// The anomaly event of series `index` at `time`, with the other series of its service
    /// that moved in the last window as related.
    #[allow(clippy::too_many_arguments)]
    fn anomaly_event(
        &self,
        settings: &DetectorSettings,
        tenant: &TenantId,
        index: usize,
        time: i64,
        value: f64,
        verdict: &Verdict,
        template_text: Option<&dyn Fn() -> Option<String>>,
    ) -> Event {
        let watched = &self.series[index];
        let mut related: Vec<&Mover> = self
            .movers
            .get(&watched.service)
            .map(|movers| movers.iter().filter(|m| m.series != index).collect())
            .unwrap_or_default();
        related.sort_by(|a, b| b.score.total_cmp(&a.score));
        related.truncate(3);
        let related = related
            .into_iter()
            .map(|m| explain::Related {
                series: self.series[m.series].key.clone(),
                score: m.score,
                value: m.value,
                expected: m.expected,
                time: m.time,
            })
            .collect();
        let template = match (&watched.feed, template_text) {
            (Feed::PatternRate { template_id, .. }, Some(text)) => Some((*template_id, text())),
            _ => None,
        };
        explain::anomaly_event(explain::Anomaly {
            tenant,
            key: &watched.key,
            name: &watched.name,
            service: &watched.service,
            labels: &watched.labels.iter().cloned().collect(),
            time,
            value,
            verdict,
            threshold: watched.detector.effective_threshold(&settings.detector),
            sensitivity: watched.detector.sensitivity(),
            points: watched.detector.points(),
            step_seconds: matches!(watched.feed, Feed::PatternRate { .. })
                .then_some(settings.pattern_step_seconds),
            template,
            related,
        })
    }
}

impl Watched {
    /// The value a metric row gives this series' detector, updating the feed's memory; `None`
    /// when the row gives none (a counter's first point, a null value).
    fn feed_value(&mut self, columns: &MetricColumns<'_>, row: usize) -> Option<f64> {
        let time = columns.time.value(row);
        let value = columns
            .value
            .is_valid(row)
            .then(|| columns.value.value(row));
        match &mut self.feed {
            Feed::Gauge => value,
            Feed::CounterRate { last } => {
                let value = value?;
                let previous = last.replace((time, value));
                let (then, before) = previous?;
                if time <= then {
                    return None;
                }
                let increase = if value >= before {
                    value - before
                } else {
                    value
                };
                Some(increase * NANOS_PER_SECOND as f64 / (time - then) as f64)
            }
            Feed::DeltaRate => {
                let value = value?;
                let start = columns.start_time.value(row);
                Some(if start > 0 && start < time {
                    value * NANOS_PER_SECOND as f64 / (time - start) as f64
                } else {
                    value
                })
            }
            Feed::Mean { last } => {
                let sum = value?;
                let count = columns
                    .count
                    .is_valid(row)
                    .then(|| columns.count.value(row))? as f64;
                if columns.temporality.value(row) == TEMPORALITY_DELTA {
                    return (count > 0.0).then(|| sum / count);
                }
                let previous = last.replace((sum, count));
                let (sum_before, count_before) = previous.unwrap_or((0.0, 0.0));
                let (sum, count) = if count >= count_before {
                    (sum - sum_before, count - count_before)
                } else {
                    (sum, count)
                };
                (count > 0.0).then(|| sum / count)
            }
            Feed::PatternRate { .. } => None,
        }
    }
}

/// Line counts are noisy even when nothing changes (about Poisson: a spread of the square root
/// of the mean), so a count's band is at least `expected ± (3·√expected + 1)`, never below zero,
/// and only a count outside it is an anomaly. A pattern seen once a minute for hours, then
/// twice, is not news; then 150 times is.
fn widen_to_count_noise(verdict: &mut Verdict, count: f64) {
    if !verdict.expected.is_finite() {
        return;
    }
    let expected = verdict.expected.max(0.0);
    let half = 3.0 * expected.sqrt() + 1.0;
    verdict.lower = verdict.lower.min(expected - half).max(0.0);
    verdict.upper = verdict.upper.max(expected + half);
    verdict.anomalous &= count < verdict.lower || count > verdict.upper;
}

/// A series' saved state: its description's length (u32 LE), the description (JSON) and the
/// detector's own encoding, zstd-compressed (about 2.5 times smaller).
fn encode_series(watched: &Watched, out: &mut Vec<u8>) {
    let mut plain = Vec::with_capacity(2_560);
    plain.extend_from_slice(&[0; 4]);
    serde_json::to_writer(
        &mut plain,
        &SavedSeriesRef {
            name: &watched.name,
            service: &watched.service,
            labels: &watched.labels,
            feed: &watched.feed,
            episode: &watched.episode,
            last_seen: watched.last_seen,
        },
    )
    .expect("a series description serialises");
    let length = (plain.len() - 4) as u32;
    plain[..4].copy_from_slice(&length.to_le_bytes());
    plain.extend_from_slice(&watched.detector.encode());
    out.extend_from_slice(&crate::saved_state::compress(&plain));
}

/// A saved series: compressed, or plain as states were saved before.
fn decode_series(key: &str, bytes: &[u8]) -> std::result::Result<Watched, String> {
    decode_plain_series(key, &crate::saved_state::plain(bytes)?)
}

fn decode_plain_series(key: &str, bytes: &[u8]) -> std::result::Result<Watched, String> {
    let (length, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or("a saved series is too short")?;
    let length = u32::from_le_bytes(*length) as usize;
    if rest.len() < length {
        return Err("a saved series' description is cut short".to_owned());
    }
    let (description, detector) = rest.split_at(length);
    let saved: SavedSeries = serde_json::from_slice(description).map_err(|e| e.to_string())?;
    let detector = Detector::decode(detector).map_err(|e| e.to_string())?;
    Ok(Watched {
        key: key.to_owned(),
        name: saved.name,
        service: saved.service,
        labels: saved.labels.into_boxed_slice(),
        feed: saved.feed,
        detector,
        episode: saved.episode,
        last_seen: saved.last_seen,
        dirty: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The band and verdict a count gets: (expected, lower, upper, anomalous) in, the same out.
    fn check(count: f64, given: (f64, f64, f64, bool), widened: (f64, f64, bool)) {
        let mut verdict = Verdict {
            score: 0.9,
            expected: given.0,
            lower: given.1,
            upper: given.2,
            anomalous: given.3,
            warming_up: false,
        };
        widen_to_count_noise(&mut verdict, count);
        assert_eq!(
            (verdict.lower, verdict.upper, verdict.anomalous),
            widened,
            "{count} {given:?}"
        );
    }

    #[test]
    fn count_bands_are_at_least_the_poisson_spread() {
        // A pattern always seen once a minute: twice is inside, 150 times is not.
        check(2.0, (1.0, 1.0, 1.0, true), (0.0, 5.0, false));
        check(150.0, (1.0, 1.0, 1.0, true), (0.0, 5.0, true));
        // A wide band stays as it is; a drop of a rare pattern to zero is not news.
        check(0.0, (4.0, -10.0, 30.0, false), (0.0, 30.0, false));
        check(0.0, (100.0, 90.0, 110.0, true), (69.0, 131.0, true));
    }

    #[test]
    fn series_states_are_saved_compressed_and_plain_ones_still_load() {
        let config = DetectorSettings::default().detector;
        let mut detector = Detector::new(&config);
        for minute in 0..500 {
            detector.update(&config, minute * 60_000, 100.0 + (minute % 7) as f64);
        }
        let watched = Watched {
            key: "queue.depth{service=\"checkout\"}".into(),
            name: "queue.depth".into(),
            service: "checkout".into(),
            labels: Box::new([]),
            feed: Feed::Gauge,
            detector,
            episode: None,
            last_seen: 0,
            dirty: false,
        };
        let mut compressed = Vec::new();
        encode_series(&watched, &mut compressed);
        assert!(compressed.starts_with(&crate::saved_state::ZSTD_MAGIC));
        let plain = zstd::stream::decode_all(compressed.as_slice()).unwrap();
        assert!(
            compressed.len() * 2 < plain.len(),
            "{} of {}",
            compressed.len(),
            plain.len()
        );
        for saved in [compressed, plain] {
            let loaded = decode_series(&watched.key, &saved).unwrap();
            assert_eq!(loaded.name, watched.name);
            assert_eq!(loaded.detector.encode(), watched.detector.encode());
        }
    }

    #[test]
    fn pattern_counts_carry_on_after_the_clock_is_saved_and_loaded() {
        let mut clock = PatternClock::default();
        for (service, template) in [("a", 1), ("b", 1), ("a", 2), ("a", 1)] {
            clock.count(service, template);
        }
        let mut clock: PatternClock =
            serde_json::from_slice(&serde_json::to_vec(&clock).unwrap()).unwrap();
        clock.count("b", 1);
        clock.count("c", 3);
        assert_eq!(
            clock.take_counts(),
            [
                ("a".to_owned(), 1, 2),
                ("b".to_owned(), 1, 2),
                ("a".to_owned(), 2, 1),
                ("c".to_owned(), 3, 1)
            ]
        );
        clock.count("a", 1);
        assert_eq!(clock.take_counts(), [("a".to_owned(), 1, 1)]);
    }
}
