//! The Numenta Anomaly Benchmark's scoring, pure: parsing its files (CSV data, label windows,
//! cost profiles) and scoring a corpus of anomaly scores as NAB's sweeper and optimiser do.
//!
//! The rules, as NAB (`nab/sweeper.py`, `nab/runner.py`) applies them:
//! - the first 15% of each file's rows (at most 750) are a probation period: not scored, and a
//!   window with no row after probation does not count;
//! - a row inside a labelled window is worth `tpWeight · σ(p) / σ(−1)`, where `p =
//!   −(end − i + 1)/width` is its relative position and `σ(x) = 2/(1 + e^{5x}) − 1` the scaled
//!   sigmoid, so a detection at a window's first row earns exactly `tpWeight`; a window earns
//!   its best (earliest) detected row, or costs `−fnWeight` if none is detected;
//! - a row outside every window, detected, costs `fpWeight · σ(|i − prev_end| / (prev_width −
//!   1))` after a window (about `−fpWeight` far from it) and `−fpWeight` before any window;
//! - one threshold per profile for the whole corpus (a row is detected when its score is at
//!   least the threshold), chosen by sweeping every distinct score and keeping the best total
//!   (the highest threshold among equal totals);
//! - the normalised score is `100 · (raw − null) / (perfect − null)`, with `null` what a
//!   detector that never fires gets (`−fnWeight` per scored window) and `perfect` `tpWeight`
//!   per labelled window.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The share of each file's rows in the probation period.
pub const PROBATION_FRACTION: f64 = 0.15;
/// The probation period's upper bound in rows (NAB's `0.15 · 5000`).
pub const PROBATION_MAX_ROWS: usize = 750;

/// The weights of one application profile (NAB's cost matrix).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct CostProfile {
    /// Reward for a detection at the very start of a window.
    #[serde(rename = "tpWeight")]
    pub tp_weight: f64,
    /// Cost of a detection outside every window, far from the preceding one.
    #[serde(rename = "fpWeight")]
    pub fp_weight: f64,
    /// Cost of a window with no detection.
    #[serde(rename = "fnWeight")]
    pub fn_weight: f64,
}

impl CostProfile {
    /// NAB's `standard` profile.
    pub const STANDARD: CostProfile = CostProfile {
        tp_weight: 1.0,
        fp_weight: 0.11,
        fn_weight: 1.0,
    };
}

/// One file of the corpus with the detector's scores, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ScoredFile<'a> {
    /// The file's name, as in the labels (`realKnownCause/nyc_taxi.csv`).
    pub name: &'a str,
    /// Row times, unix milliseconds, ascending.
    pub timestamps: &'a [i64],
    /// The detector's anomaly score of each row.
    pub scores: &'a [f64],
    /// The labelled windows, inclusive `(start, end)` in unix milliseconds.
    pub windows: &'a [(i64, i64)],
}

/// A corpus scored for one profile at the threshold that suits it best.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusScore {
    /// `100 · (raw − null) / (perfect − null)`.
    pub normalized: f64,
    /// The threshold chosen: rows scoring at least this are detections.
    pub threshold: f64,
    /// The sum of the files' scores at that threshold.
    pub raw: f64,
    /// What a detector that never fires gets.
    pub null: f64,
    /// What a detector that fires at the first row of every window gets.
    pub perfect: f64,
    /// Windows with at least one detection.
    pub detected_windows: usize,
    /// Windows scored (with a row after probation).
    pub windows: usize,
    /// Detections outside every window.
    pub false_positives: usize,
}

/// Rows of a file of `rows` rows in the probation period.
pub fn probation_rows(rows: usize) -> usize {
    ((PROBATION_FRACTION * rows as f64).floor() as usize).min(PROBATION_MAX_ROWS)
}

/// NAB's scaled sigmoid of a relative position: about 0.987 at −1 (a window's start), 0 at 0
/// (its end), about −0.987 at 1 and −1 from 3 on.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// Parses NAB's timestamp (`2014-04-10 07:15:00`, optionally with a `T` for the space and a
/// fraction of a second) into unix milliseconds, taking it as UTC.
pub fn parse_timestamp(text: &str) -> Result<i64> {
    const BAD: Error = Error::InvalidInput {
        reason: "timestamp is not `YYYY-MM-DD HH:MM:SS[.fff]`",
    };
    let text = text.trim();
    let bytes = text.as_bytes();
    if bytes.len() < 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !(bytes[10] == b' ' || bytes[10] == b'T')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return Err(BAD);
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64> {
        let part = &text[range];
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse::<i64>().map_err(|_| BAD)
        } else {
            Err(BAD)
        }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(BAD);
    }
    let mut millis = 0;
    if bytes.len() > 19 {
        if bytes[19] != b'.' || bytes.len() == 20 {
            return Err(BAD);
        }
        let fraction = &text[20..];
        if !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BAD);
        }
        // Milliseconds: the first three digits, the rest truncated.
        for (place, digit) in fraction.bytes().take(3).enumerate() {
            millis += i64::from(digit - b'0') * [100, 10, 1][place];
        }
    }
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Count years from March, so the leap day is the last day of the counted year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Parses a NAB data file (`timestamp,value` with a header row) into row times (unix
/// milliseconds) and values.
pub fn parse_csv(text: &str) -> Result<(Vec<i64>, Vec<f64>)> {
    let mut lines = text.lines();
    let header = lines.next().ok_or(Error::InvalidInput {
        reason: "empty NAB file",
    })?;
    if header.trim().trim_start_matches('\u{feff}') != "timestamp,value" {
        return Err(Error::InvalidInput {
            reason: "NAB file header is not `timestamp,value`",
        });
    }
    let mut times = Vec::new();
    let mut values = Vec::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (time, value) = line.split_once(',').ok_or(Error::InvalidInput {
            reason: "NAB row without a comma",
        })?;
        times.push(parse_timestamp(time)?);
        values.push(
            value
                .trim()
                .parse::<f64>()
                .map_err(|_| Error::InvalidInput {
                    reason: "NAB value is not a number",
                })?,
        );
    }
    Ok((times, values))
}

/// Parses `combined_windows.json`: file name to its windows, inclusive `(start, end)` in unix
/// milliseconds, in time order.
pub fn parse_windows(json: &str) -> Result<BTreeMap<String, Vec<(i64, i64)>>> {
    let raw: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(json).map_err(|_| Error::InvalidInput {
            reason: "windows are not a map of file names to [start, end] pairs",
        })?;
    let mut parsed = BTreeMap::new();
    for (name, windows) in raw {
        let mut list = Vec::with_capacity(windows.len());
        for (start, end) in windows {
            let window = (parse_timestamp(&start)?, parse_timestamp(&end)?);
            if window.0 > window.1 {
                return Err(Error::InvalidInput {
                    reason: "window ends before it starts",
                });
            }
            list.push(window);
        }
        list.sort_unstable();
        parsed.insert(name, list);
    }
    Ok(parsed)
}

/// Parses `profiles.json`: profile name to its cost matrix.
pub fn parse_profiles(json: &str) -> Result<BTreeMap<String, CostProfile>> {
    #[derive(Deserialize)]
    struct Profile {
        #[serde(rename = "CostMatrix")]
        cost_matrix: CostProfile,
    }
    let raw: BTreeMap<String, Profile> =
        serde_json::from_str(json).map_err(|_| Error::InvalidInput {
            reason: "profiles are not a map of names to cost matrices",
        })?;
    Ok(raw
        .into_iter()
        .map(|(name, profile)| (name, profile.cost_matrix))
        .collect())
}

/// One scored row: its anomaly score, what detecting it is worth, and its window.
#[derive(Debug, Clone, Copy)]
struct Row {
    score: f64,
    worth: f64,
    /// Index into the corpus' windows, or `usize::MAX` outside every window.
    window: usize,
}

const OUTSIDE: usize = usize::MAX;

/// The rows after probation of every file, and the number of windows they fall in.
fn scorable_rows(files: &[ScoredFile<'_>], profile: &CostProfile) -> Result<(Vec<Row>, usize)> {
    let max_tp = scaled_sigmoid(-1.0);
    let mut rows = Vec::new();
    let mut windows = 0;
    for file in files {
        if file.timestamps.len() != file.scores.len() {
            return Err(Error::LengthMismatch {
                predicted: file.scores.len(),
                truth: file.timestamps.len(),
            });
        }
        if file.scores.iter().any(|s| s.is_nan()) {
            return Err(Error::InvalidInput {
                reason: "anomaly score is NaN",
            });
        }
        let times = file.timestamps;
        // Each window as inclusive row indices; windows with no rows are dropped.
        let spans: Vec<(usize, usize)> = file
            .windows
            .iter()
            .filter_map(|&(start, end)| {
                let first = times.partition_point(|&t| t < start);
                let last = times.partition_point(|&t| t <= end);
                (first < last).then(|| (first, last - 1))
            })
            .collect();
        let probation = probation_rows(times.len());
        let mut next = 0;
        let mut previous: Option<(usize, usize)> = None;
        let mut counted = vec![false; spans.len()];
        for (i, &score) in file.scores.iter().enumerate() {
            while next < spans.len() && spans[next].1 < i {
                previous = Some(spans[next]);
                next += 1;
            }
            let inside = next < spans.len() && spans[next].0 <= i;
            if i < probation {
                continue;
            }
            let row = if inside {
                let (start, end) = spans[next];
                let width = (end - start + 1) as f64;
                let position = -((end - i + 1) as f64) / width;
                if !counted[next] {
                    counted[next] = true;
                    windows += 1;
                }
                Row {
                    score,
                    worth: scaled_sigmoid(position) * profile.tp_weight / max_tp,
                    // Windows are numbered as first met, so the one being met is the last.
                    window: windows - 1,
                }
            } else {
                let position = match previous {
                    Some((start, end)) if end > start => (i - end) as f64 / (end - start) as f64,
                    _ => 3.0,
                };
                Row {
                    score,
                    worth: scaled_sigmoid(position) * profile.fp_weight,
                    window: OUTSIDE,
                }
            };
            rows.push(row);
        }
    }
    Ok((rows, windows))
}

/// The corpus' total score at every distinct threshold, highest threshold first, starting
/// with a threshold above every score (nothing detected).
fn sweep(rows: &mut [Row], windows: usize, profile: &CostProfile) -> Vec<(f64, f64)> {
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut best_in_window = vec![-profile.fn_weight; windows];
    let mut total = -profile.fn_weight * windows as f64;
    let mut curve = vec![(f64::INFINITY, total)];
    let mut i = 0;
    while i < rows.len() {
        let threshold = rows[i].score;
        while i < rows.len() && rows[i].score == threshold {
            let row = rows[i];
            if row.window == OUTSIDE {
                total += row.worth;
            } else if row.worth > best_in_window[row.window] {
                total += row.worth - best_in_window[row.window];
                best_in_window[row.window] = row.worth;
            }
            i += 1;
        }
        curve.push((threshold, total));
    }
    curve
}

/// Scores a corpus for one profile: chooses the threshold with the best total over the whole
/// corpus, as NAB's optimiser does, and normalises the total.
pub fn score(files: &[ScoredFile<'_>], profile: &CostProfile) -> Result<CorpusScore> {
    let (mut rows, windows) = scorable_rows(files, profile)?;
    let labelled: usize = files.iter().map(|f| f.windows.len()).sum();
    let curve = sweep(&mut rows, windows, profile);
    // The highest threshold among the best totals, as NAB's stable sort keeps it.
    let (threshold, raw) =
        curve
            .iter()
            .copied()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |best, point| {
                if point.1 > best.1 { point } else { best }
            });
    let null = -profile.fn_weight * windows as f64;
    let perfect = profile.tp_weight * labelled as f64;
    let normalized = if perfect > null {
        100.0 * (raw - null) / (perfect - null)
    } else {
        0.0
    };
    let (detected_windows, false_positives) = counts(&rows, threshold, windows);
    Ok(CorpusScore {
        normalized,
        threshold: if threshold.is_finite() {
            threshold
        } else {
            1.0
        },
        raw,
        null,
        perfect,
        detected_windows,
        windows,
        false_positives,
    })
}

/// Each file's raw score at `threshold` (rows at or above it are detections), in order.
pub fn file_scores(
    files: &[ScoredFile<'_>],
    profile: &CostProfile,
    threshold: f64,
) -> Result<Vec<f64>> {
    files
        .iter()
        .map(|file| {
            let (mut rows, windows) = scorable_rows(std::slice::from_ref(file), profile)?;
            let curve = sweep(&mut rows, windows, profile);
            // The last point of the curve whose threshold is at least `threshold`.
            Ok(curve
                .iter()
                .take_while(|point| point.0 >= threshold)
                .last()
                .map_or(0.0, |point| point.1))
        })
        .collect()
}

fn counts(rows: &[Row], threshold: f64, windows: usize) -> (usize, usize) {
    let mut detected = vec![false; windows];
    let mut false_positives = 0;
    for row in rows.iter().filter(|row| row.score >= threshold) {
        if row.window == OUTSIDE {
            false_positives += 1;
        } else {
            detected[row.window] = true;
        }
    }
    (detected.iter().filter(|&&d| d).count(), false_positives)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn times(rows: usize) -> Vec<i64> {
        (0..rows as i64).map(|i| i * MINUTE).collect()
    }

    fn check(scores: &[f64], windows: &[(usize, usize)], profile: CostProfile) -> CorpusScore {
        let times = times(scores.len());
        let windows: Vec<(i64, i64)> = windows.iter().map(|&(a, b)| (times[a], times[b])).collect();
        let file = ScoredFile {
            name: "a.csv",
            timestamps: &times,
            scores,
            windows: &windows,
        };
        score(&[file], &profile).unwrap()
    }

    #[test]
    fn timestamps_parse_to_unix_millis() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00").unwrap(), 0);
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00").unwrap(),
            1_397_114_100_000
        );
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00.250000").unwrap(),
            1_397_114_100_250
        );
        assert_eq!(
            parse_timestamp("2000-02-29 23:59:59").unwrap(),
            951_868_799_000
        );
        for bad in [
            "2014-04-10",
            "2014-13-01 00:00:00",
            "2014-02-30 00:00:00",
            "x",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_and_json_parse() {
        let (t, v) =
            parse_csv("timestamp,value\n2014-04-10 07:15:00,1.5\n2014-04-10 07:20:00,2\n").unwrap();
        assert_eq!(t, vec![1_397_114_100_000, 1_397_114_400_000]);
        assert_eq!(v, vec![1.5, 2.0]);
        assert!(parse_csv("time,value\n").is_err());
        let windows = parse_windows(
            r#"{"a/b.csv": [["2014-04-10 07:20:00.000000", "2014-04-10 07:30:00.000000"]], "c.csv": []}"#,
        )
        .unwrap();
        assert_eq!(
            windows["a/b.csv"],
            vec![(1_397_114_400_000, 1_397_115_000_000)]
        );
        assert!(windows["c.csv"].is_empty());
        let profiles = parse_profiles(
            r#"{"standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}}}"#,
        )
        .unwrap();
        assert_eq!(profiles["standard"], CostProfile::STANDARD);
    }

    #[test]
    fn probation_is_fifteen_percent_up_to_750_rows() {
        assert_eq!(probation_rows(100), 15);
        assert_eq!(probation_rows(4032), 604);
        assert_eq!(probation_rows(10_000), 750);
    }

    #[test]
    fn sigmoid_values_match_nab() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298).abs() < 1e-8);
        assert!((scaled_sigmoid(-0.5) - 0.848_283_639).abs() < 1e-8);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
    }

    #[test]
    fn null_detector_scores_zero_and_perfect_one_hundred() {
        let windows = [(40, 49), (70, 79)];
        let null = check(&[0.0; 100], &windows, CostProfile::STANDARD);
        assert_eq!(null.normalized, 0.0);
        assert_eq!(null.raw, -2.0);
        let mut perfect = [0.0; 100];
        perfect[40] = 1.0;
        perfect[70] = 1.0;
        let scored = check(&perfect, &windows, CostProfile::STANDARD);
        assert!((scored.normalized - 100.0).abs() < 1e-12);
        assert_eq!(scored.threshold, 1.0);
        assert_eq!((scored.detected_windows, scored.false_positives), (2, 0));
    }

    #[test]
    fn a_detection_mid_window_earns_the_sigmoid_of_its_position() {
        // Window of 10 rows at 40..=49; a detection at row 45 has position −(49 − 45 + 1)/10.
        let mut scores = [0.0; 100];
        scores[45] = 0.8;
        scores[46] = 0.9; // a later detection in the same window adds nothing
        let scored = check(&scores, &[(40, 49)], CostProfile::STANDARD);
        let expected = scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0);
        assert!((scored.raw - expected).abs() < 1e-12);
        assert_eq!(scored.threshold, 0.8);
        assert!((scored.normalized - 100.0 * (expected + 1.0) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn false_positives_cost_by_distance_from_the_preceding_window() {
        // Window 40..=49 (width 10). A detection at row 60 is 11/9 widths past its end; one at
        // row 20 precedes every window and costs the full weight.
        let mut scores = [0.0; 100];
        scores[40] = 1.0;
        scores[60] = 1.0;
        scores[20] = 1.0;
        let scored = check(&scores, &[(40, 49)], CostProfile::STANDARD);
        let expected = 1.0 + 0.11 * scaled_sigmoid(11.0 / 9.0) - 0.11;
        assert!((scored.raw - expected).abs() < 1e-12, "{}", scored.raw);
        assert_eq!(scored.false_positives, 2);
        // Twice the cost of a false positive: detecting nothing is better.
        let low_fp = CostProfile {
            fp_weight: 10.0,
            ..CostProfile::STANDARD
        };
        let scored = check(&scores, &[(40, 49)], low_fp);
        assert_eq!((scored.raw, scored.normalized), (-1.0, 0.0));
    }

    #[test]
    fn the_threshold_is_the_best_over_the_corpus_and_rows_in_probation_are_ignored() {
        // Rows 0..15 are probation: the 0.95 there does not count.
        let mut scores = [0.1; 100];
        scores[3] = 0.95;
        scores[42] = 0.6;
        scores[80] = 0.7; // a false positive above the true one
        let scored = check(&scores, &[(40, 49)], CostProfile::STANDARD);
        assert_eq!(scored.threshold, 0.6);
        let expected = scaled_sigmoid(-0.8) / scaled_sigmoid(-1.0) - 0.11;
        assert!((scored.raw - expected).abs() < 1e-12);
        // Counting the false positive costs more than the window earns for a large FP weight.
        let heavy = CostProfile {
            fp_weight: 2.0,
            ..CostProfile::STANDARD
        };
        assert_eq!(check(&scores, &[(40, 49)], heavy).raw, -1.0);
    }

    #[test]
    fn file_scores_add_up_to_the_corpus_score() {
        let t = times(100);
        let mut a = vec![0.0; 100];
        a[41] = 0.9;
        a[90] = 0.5;
        let b = vec![0.2; 100];
        let wa = [(t[40], t[49])];
        let wb = [(t[60], t[69])];
        let files = [
            ScoredFile {
                name: "a",
                timestamps: &t,
                scores: &a,
                windows: &wa,
            },
            ScoredFile {
                name: "b",
                timestamps: &t,
                scores: &b,
                windows: &wb,
            },
        ];
        let corpus = score(&files, &CostProfile::STANDARD).unwrap();
        let per_file = file_scores(&files, &CostProfile::STANDARD, corpus.threshold).unwrap();
        assert!((per_file.iter().sum::<f64>() - corpus.raw).abs() < 1e-9);
    }
}
