//! Streaming anomaly detection: one [`Detector`] per series, updated one point at a time with
//! no look-ahead, scoring each point in `[0, 1]` against the band it expected.
//!
//! This is a placeholder that fixes the interface (a rolling mean and deviation); the seasonal,
//! robust detector replaces it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The name of the method, written into every anomaly's explanation.
pub const METHOD: &str = "rolling-z";
/// The version of the model and its saved state; a saved state of another version is refused.
pub const MODEL_VERSION: u32 = 1;

/// The detector's settings, one set for every series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Score at or above which a point is an anomaly (at sensitivity 1). Default 0.9.
    pub threshold: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig { threshold: 0.9 }
    }
}

impl DetectorConfig {
    /// Refuses settings outside their ranges.
    pub fn validate(&self) -> Result<()> {
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(Error::InvalidConfig {
                field: "threshold",
                reason: "must be in (0, 1]",
            });
        }
        Ok(())
    }
}

/// What the detector made of one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// How unusual the point is, in `[0, 1]`.
    pub score: f64,
    /// The value expected at this point; NaN while warming up or for an unusable value.
    pub expected: f64,
    /// The lower end of the expected band; NaN when `expected` is.
    pub lower: f64,
    /// The upper end of the expected band; NaN when `expected` is.
    pub upper: f64,
    /// The score reached the threshold, adjusted by the series' sensitivity, after warm-up.
    pub anomalous: bool,
    /// Too few points yet to judge; `score` is 0.
    pub warming_up: bool,
}

/// An engineer's judgement of an anomaly, which moves the series' sensitivity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feedback {
    /// Not a problem: the series becomes less sensitive.
    FalsePositive,
    /// A real problem: the series becomes a little more sensitive.
    Confirmed,
}

/// One series' model. Small (its encoding stays under 2 KiB) and cheap to update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    points: u64,
    mean: f64,
    var: f64,
    last_time_ms: i64,
    sensitivity: f64,
}

impl Detector {
    /// A detector that has seen nothing.
    pub fn new(_config: &DetectorConfig) -> Self {
        Detector {
            points: 0,
            mean: 0.0,
            var: 0.0,
            last_time_ms: i64::MIN,
            sensitivity: 1.0,
        }
    }

    /// Scores `value` at `time_ms` against what came before, then learns from it. NaN and
    /// infinite values, and points at or before the last one's time, score 0 and teach nothing.
    pub fn update(&mut self, config: &DetectorConfig, time_ms: i64, value: f64) -> Verdict {
        let band = self.expected(config, time_ms);
        if !value.is_finite() || time_ms <= self.last_time_ms {
            return verdict(band, 0.0, false, band.is_none());
        }
        self.last_time_ms = time_ms;
        let warming_up = self.points < 30;
        let z = if self.var > 0.0 {
            (value - self.mean).abs() / self.var.sqrt()
        } else {
            0.0
        };
        let score = if warming_up {
            0.0
        } else {
            1.0 - (-z / 3.0).exp()
        };
        self.points += 1;
        let alpha = 1.0 / (self.points.min(200) as f64);
        let delta = value - self.mean;
        self.mean += alpha * delta;
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta);
        let anomalous = !warming_up && score >= self.effective_threshold(config);
        verdict(band, score, anomalous, warming_up)
    }

    /// The band expected at `time_ms`, as (expected, lower, upper); `None` while warming up.
    pub fn expected(&self, _config: &DetectorConfig, _time_ms: i64) -> Option<(f64, f64, f64)> {
        if self.points < 30 {
            return None;
        }
        let width = 3.0 * self.var.sqrt();
        Some((self.mean, self.mean - width, self.mean + width))
    }

    /// The threshold this series' scores are held to, after feedback.
    pub fn effective_threshold(&self, config: &DetectorConfig) -> f64 {
        1.0 - (1.0 - config.threshold) * self.sensitivity
    }

    /// The series' sensitivity: 1 at first, lower after false positives.
    pub fn sensitivity(&self) -> f64 {
        self.sensitivity
    }

    /// Applies an engineer's feedback; returns the sensitivity before and after.
    pub fn feedback(&mut self, feedback: Feedback) -> (f64, f64) {
        let before = self.sensitivity;
        self.sensitivity = match feedback {
            Feedback::FalsePositive => (before * 0.5).max(0.05),
            Feedback::Confirmed => (before * 1.25).min(2.0),
        };
        (before, self.sensitivity)
    }

    /// Points learnt from so far.
    pub fn points(&self) -> u64 {
        self.points
    }

    /// The state as saved: a version, then the model.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = MODEL_VERSION.to_le_bytes().to_vec();
        bytes.extend(serde_json::to_vec(self).expect("a detector serialises"));
        bytes
    }

    /// A detector from [`Detector::encode`]'s bytes; another version or damage is refused.
    pub fn decode(bytes: &[u8]) -> Result<Detector> {
        let (version, body) = bytes.split_at_checked(4).ok_or(Error::InvalidState {
            reason: "detector state shorter than its version",
        })?;
        if u32::from_le_bytes(version.try_into().expect("4 bytes")) != MODEL_VERSION {
            return Err(Error::InvalidState {
                reason: "detector state of another model version",
            });
        }
        serde_json::from_slice(body).map_err(|_| Error::InvalidState {
            reason: "detector state does not decode",
        })
    }
}

fn verdict(
    band: Option<(f64, f64, f64)>,
    score: f64,
    anomalous: bool,
    warming_up: bool,
) -> Verdict {
    let (expected, lower, upper) = band.unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    Verdict {
        score,
        expected,
        lower,
        upper,
        anomalous,
        warming_up,
    }
}
