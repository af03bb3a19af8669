//! [`SeriesBuilder`]: the answer of `query_range`, built batch by batch as the query streams
//! its rows, so that a range of millions of points is never held as rows.
//!
//! Each series (one distinct service and attribute set) gets one compact cell per step of the
//! range (24 bytes), allocated when the series is first seen; histograms for quantiles are kept
//! per step only where they occur.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use arrow::array::{
    Array, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, MapArray, StringArray,
    UInt64Array,
};
use arrow::record_batch::RecordBatch;

use sextant_analytics::anomaly::{Detector, DetectorConfig};

use crate::read_params::{NANOS_PER_SECOND, TimeFormat};

/// One series of an answer: its labels and its (bucket start in Unix seconds, value) points.
pub type LabeledPoints = (BTreeMap<String, String>, Vec<(i64, f64)>);

/// A series of an answer with how it was aggregated.
type AggregatedPoints = (BTreeMap<String, String>, Aggregation, Vec<(i64, f64)>);

/// OTLP `AggregationTemporality` of delta points.
const TEMPORALITY_DELTA: i32 = 1;

/// What each bucket of a series holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Aggregation {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Rate,
    Quantile(f64),
    /// The mean observation of histograms and summaries: the step's increase of their sum of
    /// observations over the increase of their count.
    Mean,
    /// Each series by its kind ([`Aggregation::of_kind`]): the default.
    Auto,
}

impl Aggregation {
    pub fn parse(text: &str) -> Option<Aggregation> {
        Some(match text {
            "sum" => Aggregation::Sum,
            "avg" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "count" => Aggregation::Count,
            "rate" => Aggregation::Rate,
            "p50" => Aggregation::Quantile(0.5),
            "p90" => Aggregation::Quantile(0.9),
            "p95" => Aggregation::Quantile(0.95),
            "p99" => Aggregation::Quantile(0.99),
            "mean" => Aggregation::Mean,
            "auto" => Aggregation::Auto,
            _ => return None,
        })
    }

    pub fn name(self) -> String {
        match self {
            Aggregation::Sum => "sum".into(),
            Aggregation::Avg => "avg".into(),
            Aggregation::Min => "min".into(),
            Aggregation::Max => "max".into(),
            Aggregation::Count => "count".into(),
            Aggregation::Rate => "rate".into(),
            Aggregation::Quantile(q) => format!("p{}", (q * 100.0).round()),
            Aggregation::Mean => "mean".into(),
            Aggregation::Auto => "auto".into(),
        }
    }

    /// What a series of a kind is read as by default: a gauge and an up-down sum as their
    /// average, a monotonic sum (a counter) as its per-second rate, a histogram (explicit or
    /// exponential) and a summary as their mean observation.
    pub fn of_kind(kind: &str, monotonic: bool) -> Aggregation {
        match kind {
            "sum" if monotonic => Aggregation::Rate,
            "histogram" | "exponential_histogram" | "summary" => Aggregation::Mean,
            _ => Aggregation::Avg,
        }
    }

    /// Whether the rows must come in time order (a counter's increase, a histogram's latest
    /// cumulative point).
    pub fn needs_time_order(self) -> bool {
        matches!(
            self,
            Aggregation::Rate | Aggregation::Quantile(_) | Aggregation::Mean | Aggregation::Auto
        )
    }
}

/// One step of one series: `a` and `b` by aggregation (sum; min; max; rate's increase and the
/// previous counter value; the mean's increases of sum and count), `rows` seen and `values`
/// that were not null.
#[derive(Clone, Copy, Debug, Default)]
struct Cell {
    a: f64,
    b: f64,
    rows: u32,
    values: u32,
}

/// Upper bounds and counts, one more count than bounds (`+Inf`).
type Histogram = (Vec<f64>, Vec<f64>);

#[derive(Debug)]
struct Series {
    labels: BTreeMap<String, String>,
    /// How its steps are aggregated (the builder's, or by its kind for `auto`).
    agg: Aggregation,
    cells: Vec<Cell>,
    histograms: HashMap<usize, Histogram>,
    /// The previous cumulative (sum, count) of a histogram or summary, for the mean.
    last: Option<(f64, f64)>,
}

/// The columns of one batch the builder reads.
struct Columns<'a> {
    time: &'a Int64Array,
    service: &'a StringArray,
    attributes: &'a MapArray,
    keys: &'a StringArray,
    attribute_values: &'a StringArray,
    value: &'a Float64Array,
    temporality: Option<&'a Int32Array>,
    kind: Option<&'a StringArray>,
    monotonic: Option<&'a BooleanArray>,
    count: Option<&'a UInt64Array>,
    bounds: Option<&'a ListArray>,
    counts: Option<&'a ListArray>,
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("range query result lacks column `{name}` of the expected type"))
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Columns<'a>, String> {
        let attributes: &MapArray = column(batch, "attributes")?;
        let keys = attributes
            .keys()
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("attribute keys are not strings")?;
        let attribute_values = attributes
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("attribute values are not strings")?;
        Ok(Columns {
            time: column(batch, "time_ns")?,
            service: column(batch, "service")?,
            attributes,
            keys,
            attribute_values,
            value: column(batch, "value")?,
            temporality: column(batch, "temporality").ok(),
            kind: column(batch, "kind").ok(),
            monotonic: column(batch, "is_monotonic").ok(),
            count: column(batch, "count").ok(),
            bounds: column(batch, "bucket_bounds").ok(),
            counts: column(batch, "bucket_counts").ok(),
        })
    }
}

/// Builds the series of one range query from its rows.
#[derive(Debug)]
pub(crate) struct SeriesBuilder {
    agg: Aggregation,
    step_ns: i64,
    first_bucket: i64,
    steps: usize,
    max_rows: u64,
    rows: u64,
    /// Raw key (service and attributes in arrival order) to series index.
    by_key: HashMap<Vec<u8>, usize>,
    /// Canonical labels to series index (two arrival orders of one attribute set are one series).
    by_labels: HashMap<BTreeMap<String, String>, usize>,
    series: Vec<Series>,
    key: Vec<u8>,
}

impl SeriesBuilder {
    /// For buckets of `step_seconds` covering `[from, to)` (ns); refuses more than `max_rows`
    /// rows.
    pub fn new(
        agg: Aggregation,
        from: i64,
        to: i64,
        step_seconds: i64,
        max_rows: u64,
    ) -> SeriesBuilder {
        let step_ns = step_seconds * NANOS_PER_SECOND;
        let first_bucket = from.div_euclid(step_ns) * step_ns;
        let last_bucket = (to - 1).max(from).div_euclid(step_ns) * step_ns;
        SeriesBuilder {
            agg,
            step_ns,
            first_bucket,
            steps: ((last_bucket - first_bucket) / step_ns) as usize + 1,
            max_rows,
            rows: 0,
            by_key: HashMap::new(),
            by_labels: HashMap::new(),
            series: Vec::new(),
            key: Vec::new(),
        }
    }

    /// Adds a batch of rows (in time order when [`Aggregation::needs_time_order`]).
    pub fn add(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.rows += batch.num_rows() as u64;
        if self.rows > self.max_rows {
            return Err(format!(
                "the range holds more than {} data points; narrow `from`/`to` or `match`",
                self.max_rows
            ));
        }
        let columns = Columns::of(batch)?;
        for row in 0..batch.num_rows() {
            if columns.time.is_null(row) {
                continue;
            }
            let bucket = columns.time.value(row).div_euclid(self.step_ns) * self.step_ns;
            let Ok(step) = usize::try_from((bucket - self.first_bucket) / self.step_ns) else {
                continue;
            };
            if step >= self.steps {
                continue;
            }
            let index = self.series_of(&columns, row);
            self.add_row(index, step, &columns, row);
        }
        Ok(())
    }

    fn series_of(&mut self, columns: &Columns<'_>, row: usize) -> usize {
        let offsets = columns.attributes.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        self.key.clear();
        self.key
            .extend_from_slice(columns.service.value(row).as_bytes());
        for entry in start..end {
            self.key.push(0xff);
            self.key
                .extend_from_slice(columns.keys.value(entry).as_bytes());
            self.key.push(0xfe);
            self.key
                .extend_from_slice(columns.attribute_values.value(entry).as_bytes());
        }
        if let Some(&index) = self.by_key.get(self.key.as_slice()) {
            return index;
        }
        let mut labels: BTreeMap<String, String> = (start..end)
            .map(|entry| {
                (
                    columns.keys.value(entry).to_owned(),
                    columns.attribute_values.value(entry).to_owned(),
                )
            })
            .collect();
        labels.insert("service".to_owned(), columns.service.value(row).to_owned());
        let index = match self.by_labels.get(&labels) {
            Some(&index) => index,
            None => {
                let index = self.series.len();
                self.by_labels.insert(labels.clone(), index);
                let agg = match self.agg {
                    Aggregation::Auto => Aggregation::of_kind(
                        columns
                            .kind
                            .filter(|k| k.is_valid(row))
                            .map_or("", |k| k.value(row)),
                        columns
                            .monotonic
                            .is_some_and(|m| m.is_valid(row) && m.value(row)),
                    ),
                    agg => agg,
                };
                self.series.push(Series {
                    labels,
                    agg,
                    cells: vec![Cell::default(); self.steps],
                    histograms: HashMap::new(),
                    last: None,
                });
                index
            }
        };
        self.by_key.insert(self.key.clone(), index);
        index
    }

    fn add_row(&mut self, index: usize, step: usize, columns: &Columns<'_>, row: usize) {
        let series = &mut self.series[index];
        let cell = &mut series.cells[step];
        let value = columns
            .value
            .is_valid(row)
            .then(|| columns.value.value(row));
        let delta = columns
            .temporality
            .is_some_and(|t| t.is_valid(row) && t.value(row) == TEMPORALITY_DELTA);
        cell.rows += 1;
        match series.agg {
            Aggregation::Count | Aggregation::Auto => {}
            Aggregation::Sum | Aggregation::Avg => {
                if let Some(value) = value {
                    cell.a += value;
                    cell.values += 1;
                }
            }
            Aggregation::Min | Aggregation::Max => {
                if let Some(value) = value {
                    let keep_min = series.agg == Aggregation::Min;
                    cell.a = match cell.values {
                        0 => value,
                        _ if keep_min => cell.a.min(value),
                        _ => cell.a.max(value),
                    };
                    cell.values += 1;
                }
            }
            Aggregation::Rate => {
                if let Some(value) = value {
                    if delta {
                        cell.a += value;
                    } else if cell.values > 0 {
                        // A drop is a counter reset: the new value is all increase.
                        cell.a += if value >= cell.b {
                            value - cell.b
                        } else {
                            value
                        };
                    }
                    cell.b = value;
                    cell.values += 1;
                }
            }
            Aggregation::Mean => {
                let count = columns
                    .count
                    .filter(|c| c.is_valid(row))
                    .map(|c| c.value(row) as f64);
                let (Some(sum), Some(count)) = (value, count) else {
                    return;
                };
                // A delta point, the series' first point and a reset (a count that fell) are
                // their own increase; a cumulative point adds what it grew by.
                let (sum_up, count_up) = match series.last {
                    Some((last_sum, last_count)) if !delta && count >= last_count => {
                        (sum - last_sum, count - last_count)
                    }
                    _ => (sum, count),
                };
                if !delta {
                    series.last = Some((sum, count));
                }
                cell.a += sum_up;
                cell.b += count_up;
                cell.values += 1;
            }
            Aggregation::Quantile(_) => {
                let is_histogram = columns.kind.is_some_and(|k| {
                    k.is_valid(row) && matches!(k.value(row), "histogram" | "exponential_histogram")
                });
                let (Some(bounds), Some(counts)) = (columns.bounds, columns.counts) else {
                    return;
                };
                if !is_histogram || bounds.is_null(row) || counts.is_null(row) {
                    return;
                }
                let bounds = floats(&bounds.value(row));
                let counts = floats(&counts.value(row));
                if counts.len() != bounds.len() + 1 {
                    return;
                }
                let merged = series.histograms.entry(step);
                match merged {
                    std::collections::hash_map::Entry::Occupied(mut held)
                        if delta && held.get().0 == bounds =>
                    {
                        held.get_mut()
                            .1
                            .iter_mut()
                            .zip(&counts)
                            .for_each(|(c, n)| *c += n);
                    }
                    entry => {
                        // A cumulative point replaces what came before (it holds it).
                        *entry.or_default() = (bounds, counts);
                    }
                }
            }
        }
    }

    /// The series ordered by labels, each with its (bucket start in Unix seconds, value) points;
    /// steps without a value are left out, and so are series without any.
    pub fn into_series(self) -> Vec<LabeledPoints> {
        self.into_aggregated()
            .into_iter()
            .map(|(labels, _, points)| (labels, points))
            .collect()
    }

    /// [`SeriesBuilder::into_series`], with how each series was aggregated.
    fn into_aggregated(mut self) -> Vec<AggregatedPoints> {
        self.series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let mut out = Vec::with_capacity(self.series.len());
        for series in &self.series {
            let points: Vec<(i64, f64)> = series
                .cells
                .iter()
                .enumerate()
                .filter_map(|(step, cell)| {
                    let value = self.value(series, step, cell)?;
                    let seconds =
                        (self.first_bucket + step as i64 * self.step_ns) / NANOS_PER_SECOND;
                    Some((seconds, value))
                })
                .collect();
            if !points.is_empty() {
                out.push((series.labels.clone(), series.agg, points));
            }
        }
        out
    }

    /// The answer: `{"series": [{"labels": {...}, "agg": "rate", "points": [[time, value],
    /// ...]}]}`, series ordered by labels, steps without a value left out (`agg`: how the series
    /// was aggregated, which `auto` decides by its kind; `time`: the bucket's start as `times`
    /// says). With `band`, each series also has `"band": [[time, expected, lower, upper], ...]`:
    /// the band a fresh detector (this configuration) expected at each point, having seen the
    /// points before it in the answer (null while it warms up).
    pub fn finish(self, band: Option<&DetectorConfig>, times: TimeFormat) -> String {
        let mut out = String::from("{\"series\":[");
        for (i, (labels, agg, points)) in self.into_aggregated().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"labels\":");
            out.push_str(&serde_json::to_string(labels).unwrap_or_default());
            let _ = write!(out, ",\"agg\":\"{}\"", agg.name());
            out.push_str(",\"points\":[");
            for (j, (seconds, value)) in points.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push('[');
                times.write(&mut out, *seconds);
                let _ = write!(out, ",{}]", json_number(*value));
            }
            out.push(']');
            if let Some(config) = band {
                out.push_str(",\"band\":[");
                let mut detector = Detector::new(config);
                for (j, (seconds, value)) in points.iter().enumerate() {
                    let verdict = detector.update(config, seconds * 1000, *value);
                    if j > 0 {
                        out.push(',');
                    }
                    out.push('[');
                    times.write(&mut out, *seconds);
                    let _ = write!(
                        out,
                        ",{},{},{}]",
                        json_number(verdict.expected),
                        json_number(verdict.lower),
                        json_number(verdict.upper)
                    );
                }
                out.push(']');
            }
            out.push('}');
        }
        out.push_str("]}");
        out
    }

    fn value(&self, series: &Series, step: usize, cell: &Cell) -> Option<f64> {
        if cell.rows == 0 {
            return None;
        }
        let value = match series.agg {
            Aggregation::Sum => cell.a,
            Aggregation::Mean => {
                if cell.b <= 0.0 {
                    return None;
                }
                cell.a / cell.b
            }
            Aggregation::Auto => return None,
            Aggregation::Avg => {
                if cell.values == 0 {
                    return None;
                }
                cell.a / f64::from(cell.values)
            }
            Aggregation::Min | Aggregation::Max => {
                if cell.values == 0 {
                    return None;
                }
                cell.a
            }
            Aggregation::Count => f64::from(cell.rows),
            Aggregation::Rate => cell.a / (self.step_ns / NANOS_PER_SECOND) as f64,
            Aggregation::Quantile(q) => {
                let (bounds, counts) = series.histograms.get(&step)?;
                histogram_quantile(q, bounds, counts)?
            }
        };
        value.is_finite().then_some(value)
    }
}

/// A JSON number, or `null` for NaN and infinities.
fn json_number(value: f64) -> String {
    serde_json::Number::from_f64(value).map_or_else(|| "null".to_owned(), |n| n.to_string())
}

fn floats(list: &dyn Array) -> Vec<f64> {
    if let Some(values) = list.as_any().downcast_ref::<Float64Array>() {
        values.iter().map(|v| v.unwrap_or(0.0)).collect()
    } else if let Some(values) = list.as_any().downcast_ref::<UInt64Array>() {
        values.iter().map(|v| v.unwrap_or(0) as f64).collect()
    } else {
        Vec::new()
    }
}

/// The `q` quantile of a histogram with upper `bounds` and `counts` (one more count than
/// bounds, the last for `+Inf`), interpolated linearly inside the bucket that holds it.
pub(crate) fn histogram_quantile(q: f64, bounds: &[f64], counts: &[f64]) -> Option<f64> {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut below = 0.0;
    for (i, &count) in counts.iter().enumerate() {
        if count > 0.0 && below + count >= rank {
            let Some(&upper) = bounds.get(i) else {
                // The `+Inf` bucket: the largest finite bound is all that is known.
                return bounds.last().copied();
            };
            let lower = match i {
                0 if upper > 0.0 => 0.0,
                0 => return Some(upper),
                _ => bounds[i - 1],
            };
            return Some(lower + (upper - lower) * (rank - below) / count);
        }
        below += count;
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, MapBuilder, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    const S: i64 = NANOS_PER_SECOND;

    /// (seconds, service, attributes, temporality, value).
    type Row<'a> = (i64, &'a str, &'a [(&'a str, &'a str)], i32, Option<f64>);

    fn batch(rows: &[Row<'_>]) -> RecordBatch {
        let mut attributes = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for (_, _, pairs, _, _) in rows {
            for (k, v) in *pairs {
                attributes.keys().append_value(k);
                attributes.values().append_value(v);
            }
            attributes.append(true).unwrap();
        }
        let attributes = attributes.finish();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0 * S))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(attributes.clone()),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.4))),
        ];
        let schema = Schema::new(vec![
            Field::new("time_ns", DataType::Int64, false),
            Field::new("service", DataType::Utf8, false),
            Field::new("attributes", attributes.data_type().clone(), false),
            Field::new("temporality", DataType::Int32, false),
            Field::new("value", DataType::Float64, true),
        ]);
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    fn check(agg: Aggregation, batches: &[RecordBatch], expected: serde_json::Value) {
        let mut builder = SeriesBuilder::new(agg, 0, 600 * S, 60, 1_000);
        for batch in batches {
            builder.add(batch).unwrap();
        }
        let mut answer: serde_json::Value =
            serde_json::from_str(&builder.finish(None, TimeFormat::UnixSeconds)).unwrap();
        // Each series says how it was aggregated: `agg` itself, unless it is `auto`.
        for series in answer["series"].as_array_mut().unwrap() {
            let said = series.as_object_mut().unwrap().remove("agg").unwrap();
            if agg != Aggregation::Auto {
                assert_eq!(said, agg.name(), "{agg:?}");
            }
        }
        // Through text as well: serde_json's parser may round the last digit differently.
        let expected: serde_json::Value = serde_json::from_str(&expected.to_string()).unwrap();
        assert_eq!(answer, expected, "{agg:?}");
    }

    /// `batch` with each row's kind, monotonicity and count beside it.
    fn with_kinds(batch: RecordBatch, kinds: &[(&str, bool, Option<u64>)]) -> RecordBatch {
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend([
            Field::new("kind", DataType::Utf8, false),
            Field::new("is_monotonic", DataType::Boolean, false),
            Field::new("count", DataType::UInt64, true),
        ]);
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(StringArray::from_iter_values(
            kinds.iter().map(|k| k.0),
        )));
        columns.push(Arc::new(BooleanArray::from_iter(
            kinds.iter().map(|k| Some(k.1)),
        )));
        columns.push(Arc::new(UInt64Array::from_iter(kinds.iter().map(|k| k.2))));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    #[test]
    fn each_kind_reads_right_by_default_and_histograms_as_their_mean() {
        let none: &[(&str, &str)] = &[];
        // A cumulative histogram (sum, count): 10 ms over 2 requests, then 40 ms more over 2
        // more (the mean of the second minute is 20, not an average of running sums), then a
        // reset to 30 ms over 1; one alone in its minute still draws.
        let histogram = with_kinds(
            batch(&[
                (0, "h", none, 2, Some(10.0)),
                (60, "h", none, 2, Some(50.0)),
                (120, "h", none, 2, Some(30.0)),
            ]),
            &[
                ("histogram", false, Some(2)),
                ("histogram", false, Some(4)),
                ("histogram", false, Some(1)),
            ],
        );
        let expected = serde_json::json!({"series": [
            {"labels": {"service": "h"}, "points": [[0, 5.0], [60, 20.0], [120, 30.0]]},
        ]});
        check(
            Aggregation::Mean,
            std::slice::from_ref(&histogram),
            expected.clone(),
        );
        check(
            Aggregation::Auto,
            std::slice::from_ref(&histogram),
            expected,
        );
        // Delta points add their sums and counts.
        let delta = with_kinds(
            batch(&[(0, "d", none, 1, Some(6.0)), (30, "d", none, 1, Some(4.0))]),
            &[
                ("exponential_histogram", false, Some(2)),
                ("exponential_histogram", false, Some(3)),
            ],
        );
        check(
            Aggregation::Auto,
            &[delta],
            serde_json::json!({"series": [{"labels": {"service": "d"}, "points": [[0, 2.0]]}]}),
        );
        // A counter is read as its rate, a gauge and an up-down sum as their average.
        let mixed = with_kinds(
            batch(&[
                (0, "c", none, 2, Some(0.0)),
                (30, "c", none, 2, Some(60.0)),
                (0, "g", none, 0, Some(4.0)),
                (30, "g", none, 0, Some(8.0)),
                (0, "u", none, 2, Some(10.0)),
                (30, "u", none, 2, Some(4.0)),
            ]),
            &[
                ("sum", true, None),
                ("sum", true, None),
                ("gauge", false, None),
                ("gauge", false, None),
                ("sum", false, None),
                ("sum", false, None),
            ],
        );
        let mut builder = SeriesBuilder::new(Aggregation::Auto, 0, 600 * S, 60, 1_000);
        builder.add(&mixed).unwrap();
        let answer: serde_json::Value =
            serde_json::from_str(&builder.finish(None, TimeFormat::UnixSeconds)).unwrap();
        let read: Vec<(String, f64)> = answer["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["agg"].as_str().unwrap().to_owned(),
                    s["points"][0][1].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                ("rate".into(), 1.0),
                ("avg".into(), 6.0),
                ("avg".into(), 7.0)
            ]
        );
    }

    #[test]
    fn series_group_by_service_and_attributes_in_aligned_buckets() {
        let kv: &[(&str, &str)] = &[("k", "v")];
        let rows = batch(&[
            (60, "a", kv, 2, Some(1.0)),
            (90, "a", kv, 2, Some(31.0)),
            (119, "a", kv, 2, Some(61.0)),
            (120, "a", kv, 2, Some(70.0)),
            (100, "b", kv, 2, Some(5.0)),
        ]);
        check(
            Aggregation::Rate,
            std::slice::from_ref(&rows),
            serde_json::json!({"series": [
                {"labels": {"k": "v", "service": "a"}, "points": [[60, 1.0], [120, 0.0]]},
                {"labels": {"k": "v", "service": "b"}, "points": [[60, 0.0]]},
            ]}),
        );
        check(
            Aggregation::Avg,
            std::slice::from_ref(&rows),
            serde_json::json!({"series": [
                {"labels": {"k": "v", "service": "a"}, "points": [[60, 31.0], [120, 70.0]]},
                {"labels": {"k": "v", "service": "b"}, "points": [[60, 5.0]]},
            ]}),
        );
    }

    #[test]
    fn every_aggregation_over_one_bucket() {
        let none: &[(&str, &str)] = &[];
        // Attributes in another order are the same series; a null value counts as a row only.
        let rows = [
            batch(&[
                (0, "s", &[("a", "1"), ("b", "2")], 2, Some(4.0)),
                (10, "s", none, 2, Some(9.0)),
            ]),
            batch(&[
                (20, "s", &[("b", "2"), ("a", "1")], 2, Some(2.0)),
                (30, "s", &[("a", "1"), ("b", "2")], 2, None),
            ]),
        ];
        let ab = serde_json::json!({"a": "1", "b": "2", "service": "s"});
        let plain = serde_json::json!({"service": "s"});
        for (agg, value) in [
            (Aggregation::Sum, 6.0),
            (Aggregation::Avg, 3.0),
            (Aggregation::Min, 2.0),
            (Aggregation::Max, 4.0),
            (Aggregation::Count, 3.0),
        ] {
            check(
                agg,
                &rows,
                serde_json::json!({"series": [
                    {"labels": ab, "points": [[0, value]]},
                    {"labels": plain, "points": [[0, if agg == Aggregation::Count { 1.0 } else { 9.0 }]]},
                ]}),
            );
        }
    }

    #[test]
    fn rates_survive_counter_resets_and_add_deltas() {
        let none: &[(&str, &str)] = &[];
        let cumulative = batch(&[
            (0, "c", none, 2, Some(5.0)),
            (10, "c", none, 2, Some(8.0)),
            (20, "c", none, 2, Some(2.0)),
            (30, "c", none, 2, Some(4.0)),
        ]);
        // 3 up, reset to 2 (counted whole), 2 up: 7 in 60 s.
        check(
            Aggregation::Rate,
            &[cumulative],
            serde_json::json!({"series": [{"labels": {"service": "c"}, "points": [[0, 7.0 / 60.0]]}]}),
        );
        let delta = batch(&[
            (0, "d", none, 1, Some(30.0)),
            (30, "d", none, 1, Some(30.0)),
        ]);
        check(
            Aggregation::Rate,
            &[delta],
            serde_json::json!({"series": [{"labels": {"service": "d"}, "points": [[0, 1.0]]}]}),
        );
    }

    #[test]
    fn rows_past_the_limit_are_refused_and_outside_the_range_ignored() {
        let none: &[(&str, &str)] = &[];
        let mut builder = SeriesBuilder::new(Aggregation::Sum, 0, 120 * S, 60, 3);
        builder
            .add(&batch(&[
                (0, "s", none, 2, Some(1.0)),
                (500, "s", none, 2, Some(1.0)),
            ]))
            .unwrap();
        let err = builder
            .add(&batch(&[
                (1, "s", none, 2, Some(1.0)),
                (2, "s", none, 2, Some(1.0)),
            ]))
            .unwrap_err();
        assert!(err.contains("more than 3 data points"), "{err}");
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let bounds = [1.0, 5.0, 10.0];
        // 10 below 1, 30 in (1, 5], 60 in (5, 10], none above.
        let counts = [10.0, 30.0, 60.0, 0.0];
        assert_eq!(histogram_quantile(0.05, &bounds, &counts), Some(0.5));
        assert_eq!(histogram_quantile(0.25, &bounds, &counts), Some(3.0));
        assert_eq!(histogram_quantile(0.7, &bounds, &counts), Some(7.5));
        assert_eq!(histogram_quantile(1.0, &bounds, &counts), Some(10.0));
        assert_eq!(
            histogram_quantile(0.99, &bounds, &[0.0, 0.0, 1.0, 9.0]),
            Some(10.0)
        );
        assert_eq!(histogram_quantile(0.5, &bounds, &[0.0; 4]), None);
    }
}
