//! Streaming anomaly detection: one [`Detector`] per series, updated one point at a time with
//! no look-ahead, scoring each point in `[0, 1]` against the band it expected.
//!
//! The method (`seasonal-likelihood`), per point:
//! 1. Forecasts: a fast exponentially weighted level, and a Holt-Winters style seasonal one
//!    (a slow level plus a daily profile of 24 interpolated hourly offsets and a weekly
//!    profile of 7 day offsets, placed by the point's time so gaps and irregular sampling do
//!    not shift them). The seasonal forecast counts when its running error is clearly lower
//!    (the season found from the data), or always/never when configured.
//! 2. Three surprises, each capped: the error of each forecast over its running mean
//!    absolute error (a robust scale), and how far the value steps out of the range of values
//!    seen (whose ends drift slowly back to the level, so a lasting shift becomes normal), in
//!    units of 2% of that range.
//! 3. Anomaly likelihood (Numenta's idea), per surprise: how improbable its recent average is
//!    under the long-run distribution of that average. With `x` the tail's `−log10`, a view
//!    scores `x / (x + 10)`; the point's score is the largest of the three.
//! 4. After a high score, the next are damped (by `1 − peak`, the peak halving every 200
//!    points), so one event is reported once.
//!
//! The defaults were chosen on the Numenta Anomaly Benchmark, one set for the whole corpus
//! (see `tests/nab.rs`). The state is a fixed set of 59 numbers (484 bytes encoded); an
//! update costs a few dozen floating point operations.

mod codec;
mod math;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The name of the method, written into every anomaly's explanation.
pub const METHOD: &str = "seasonal-likelihood";
/// The version of the model and its saved state; a saved state of another version is refused.
pub const MODEL_VERSION: u32 = 2;

const DAY_MS: i64 = 86_400_000;
const DAILY_BINS: usize = 24;
const WEEKLY_BINS: usize = 7;
/// Values are clamped to this magnitude so differences and sums stay finite.
const VALUE_LIMIT: f64 = 1e150;
/// Standard deviations per mean absolute deviation of a normal distribution.
const MAD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;

/// Which seasonal profiles the forecast may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seasonality {
    /// Use the daily and weekly profiles when they forecast clearly better (the default).
    #[default]
    Auto,
    /// Never: the fast level alone.
    None,
    /// Always the daily profile (once two days are seen), never the weekly one.
    Daily,
    /// Always the daily and weekly profiles (once two days are seen).
    Weekly,
}

/// The detector's settings, one set for every series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Score at or above which a point is an anomaly (at sensitivity 1). Default 0.28278, the
    /// threshold NAB's optimiser chose for the default detector on the standard profile.
    pub threshold: f64,
    /// Which seasonal profiles to use. Default `auto`.
    pub seasonality: Seasonality,
    /// Points seen before any is judged. Default 30.
    pub warm_up_points: u64,
    /// Weight of each new point in the fast level, in `(0, 1]`. Default 0.3.
    pub level_alpha: f64,
    /// Weight of each new point in the seasonal forecast's level, in `(0, 1]`. Default 0.05.
    pub seasonal_level_alpha: f64,
    /// Weight of each new point in the seasonal offsets it falls on, in `(0, 1]`. Default 0.1.
    pub season_alpha: f64,
    /// Weight of each new point in the error scales, in `(0, 1]`. Default 0.01.
    pub scale_alpha: f64,
    /// Surprise cap, in mean absolute errors. Default 10.
    pub surprise_cap: f64,
    /// Weight of each new point in the recent average of surprise, in `(0, 1]`. Default 0.2.
    pub short_alpha: f64,
    /// Points in the long-run distribution of surprise (its memory). Default 5000.
    pub long_points: f64,
    /// Smallest standard deviation of surprise used in the likelihood. Default 0.1.
    pub min_surprise_std: f64,
    /// Weight of the single point's likelihood against the recent average's, in `[0, 1]`.
    /// Default 0.
    pub point_weight: f64,
    /// Weight of the range view (stepping out of the values seen), in `[0, 1]`. Default 1.
    pub range_weight: f64,
    /// Unit of the range view's surprise, as a share of the range. Default 0.02.
    pub range_unit: f64,
    /// Points over which the range's ends drift back to the level (its memory). Default 5000.
    pub range_memory: f64,
    /// Points over which the damping after a high score halves. Default 200.
    pub damping_half_life: f64,
    /// How much the recent peak score damps the next: each score is multiplied by
    /// `1 − damping · peak`, in `[0, 1]`. Default 1.
    pub damping: f64,
    /// The −log10 tail probability that scores 0.5. Default 10.
    pub likelihood_half: f64,
    /// Half-width of the expected band, in standard deviations of the error. Default 3.
    pub band_sigmas: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            threshold: 0.28278,
            seasonality: Seasonality::Auto,
            warm_up_points: 30,
            level_alpha: 0.3,
            seasonal_level_alpha: 0.05,
            season_alpha: 0.1,
            scale_alpha: 0.01,
            surprise_cap: 10.0,
            short_alpha: 0.2,
            long_points: 5000.0,
            min_surprise_std: 0.1,
            point_weight: 0.0,
            range_weight: 1.0,
            range_unit: 0.02,
            range_memory: 5000.0,
            damping_half_life: 200.0,
            damping: 1.0,
            likelihood_half: 10.0,
            band_sigmas: 3.0,
        }
    }
}

impl DetectorConfig {
    /// Refuses settings outside their ranges.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, field: &'static str, reason: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidConfig { field, reason })
            }
        };
        let unit = |v: f64| v > 0.0 && v <= 1.0;
        check(unit(self.threshold), "threshold", "must be in (0, 1]")?;
        check(unit(self.level_alpha), "level_alpha", "must be in (0, 1]")?;
        check(
            unit(self.seasonal_level_alpha),
            "seasonal_level_alpha",
            "must be in (0, 1]",
        )?;
        check(unit(self.season_alpha), "season_alpha", "must be in (0, 1]")?;
        check(unit(self.scale_alpha), "scale_alpha", "must be in (0, 1]")?;
        check(unit(self.short_alpha), "short_alpha", "must be in (0, 1]")?;
        check(
            (0.0..=1.0).contains(&self.damping),
            "damping",
            "must be in [0, 1]",
        )?;
        check(
            self.likelihood_half > 0.0 && self.likelihood_half <= 1e3,
            "likelihood_half",
            "must be in (0, 1e3]",
        )?;
        check(
            (0.0..=1.0).contains(&self.point_weight),
            "point_weight",
            "must be in [0, 1]",
        )?;
        check(
            (0.0..=1.0).contains(&self.range_weight),
            "range_weight",
            "must be in [0, 1]",
        )?;
        check(
            self.range_unit > 0.0 && self.range_unit <= 1e3,
            "range_unit",
            "must be in (0, 1e3]",
        )?;
        check(
            self.range_memory >= 1.0 && self.range_memory <= 1e9,
            "range_memory",
            "must be in [1, 1e9]",
        )?;
        check(
            self.surprise_cap >= 1.0 && self.surprise_cap <= 1e6,
            "surprise_cap",
            "must be in [1, 1e6]",
        )?;
        check(
            self.long_points >= 10.0 && self.long_points <= 1e9,
            "long_points",
            "must be in [10, 1e9]",
        )?;
        check(
            self.min_surprise_std > 0.0 && self.min_surprise_std <= 1e3,
            "min_surprise_std",
            "must be in (0, 1e3]",
        )?;
        check(
            self.damping_half_life > 0.0 && self.damping_half_life <= 1e9,
            "damping_half_life",
            "must be in (0, 1e9]",
        )?;
        check(
            self.band_sigmas > 0.0 && self.band_sigmas <= 1e3,
            "band_sigmas",
            "must be in (0, 1e3]",
        )?;
        check(
            self.warm_up_points <= 1_000_000,
            "warm_up_points",
            "must be at most 1000000",
        )?;
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

/// Lowest sensitivity reachable by false positives.
const MIN_SENSITIVITY: f64 = 0.25;
/// Highest sensitivity reachable by confirmations.
const MAX_SENSITIVITY: f64 = 1.5;

/// One series' model. Small (its encoding stays under 2 KiB) and cheap to update.
#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    /// Points learnt from.
    points: u64,
    /// Time of the first and the last point learnt from.
    first_time_ms: i64,
    last_time_ms: i64,
    sensitivity: f64,
    /// The fast level and its running mean absolute error.
    level: f64,
    level_error: f64,
    /// The seasonal forecast: slow level, daily and weekly offsets, running error.
    seasonal_level: f64,
    daily: [f64; DAILY_BINS],
    weekly: [f64; WEEKLY_BINS],
    seasonal_error: f64,
    /// Running mean of the magnitude of values (floors the error scale).
    magnitude: f64,
    /// The likelihood of the fast level's surprise and of the seasonal forecast's.
    level_view: SurpriseStats,
    seasonal_view: SurpriseStats,
    /// The range of values seen, each end drifting back towards the level, and the
    /// likelihood of stepping out of it.
    high: f64,
    low: f64,
    range_view: SurpriseStats,
    /// Points scored (after warm-up), for the long-run distribution's learning rate.
    scored: u64,
    /// The recent peak score, decaying; scores below it are damped.
    peak: f64,
}

/// The forecast for one time: expected value and the error scale (mean absolute error).
#[derive(Debug, Clone, Copy)]
struct Forecast {
    expected: f64,
    scale: f64,
}

impl Detector {
    /// A detector that has seen nothing.
    pub fn new(_config: &DetectorConfig) -> Self {
        Detector {
            points: 0,
            first_time_ms: i64::MIN,
            last_time_ms: i64::MIN,
            sensitivity: 1.0,
            level: 0.0,
            level_error: 0.0,
            seasonal_level: 0.0,
            daily: [0.0; DAILY_BINS],
            weekly: [0.0; WEEKLY_BINS],
            seasonal_error: 0.0,
            magnitude: 0.0,
            level_view: SurpriseStats::default(),
            seasonal_view: SurpriseStats::default(),
            high: 0.0,
            low: 0.0,
            range_view: SurpriseStats::default(),
            scored: 0,
            peak: 0.0,
        }
    }

    /// Scores `value` at `time_ms` against what came before, then learns from it. NaN and
    /// infinite values, and points at or before the last one's time (duplicates), score 0 and
    /// teach nothing.
    pub fn update(&mut self, config: &DetectorConfig, time_ms: i64, value: f64) -> Verdict {
        if !value.is_finite() || time_ms <= self.last_time_ms {
            let band = self.expected(config, time_ms);
            return verdict(band, 0.0, false, band.is_none());
        }
        let value = value.clamp(-VALUE_LIMIT, VALUE_LIMIT);
        if self.points == 0 {
            self.first_time_ms = time_ms;
            self.level = value;
            self.seasonal_level = value;
            self.magnitude = value.abs();
            self.high = value;
            self.low = value;
        }
        let warming_up = self.points < config.warm_up_points.max(2);
        let forecast = self.forecast(config, time_ms);
        let level_surprise =
            ((value - self.level).abs() / self.scale(self.level_error)).min(config.surprise_cap);
        let seasonal_surprise = if self.seasonal_in_use(config) {
            let weekly = config.seasonality != Seasonality::Daily;
            let seasonal = self.seasonal_level + self.season(time_ms, weekly);
            ((value - seasonal).abs() / self.scale(self.seasonal_error)).min(config.surprise_cap)
        } else {
            0.0
        };
        let range = self.high - self.low;
        let excess = (value - self.high).max(self.low - value).max(0.0);
        let range_surprise = if range > 0.0 {
            (excess / (config.range_unit * range)).min(config.surprise_cap)
        } else {
            0.0
        };
        let score = if warming_up {
            0.0
        } else {
            self.score(config, level_surprise, seasonal_surprise, range_surprise)
        };
        self.learn(config, time_ms, value);
        let band = (!warming_up).then(|| band(config, forecast));
        let anomalous = !warming_up && score >= self.effective_threshold(config);
        verdict(band, score, anomalous, warming_up)
    }

    /// The band expected at `time_ms`, as (expected, lower, upper); `None` while warming up.
    pub fn expected(&self, config: &DetectorConfig, time_ms: i64) -> Option<(f64, f64, f64)> {
        if self.points < config.warm_up_points.max(2) {
            return None;
        }
        Some(band(config, self.forecast(config, time_ms)))
    }

    /// The threshold this series' scores are held to, after feedback.
    pub fn effective_threshold(&self, config: &DetectorConfig) -> f64 {
        // 1 − (1 − threshold)·sensitivity, written so sensitivity 1 gives the threshold exactly.
        (config.threshold + (1.0 - config.threshold) * (1.0 - self.sensitivity)).clamp(0.01, 1.0)
    }

    /// The series' sensitivity: 1 at first, lower after false positives, higher after
    /// confirmations; between 0.25 and 1.5.
    pub fn sensitivity(&self) -> f64 {
        self.sensitivity
    }

    /// Sets the sensitivity (as saved after feedback), kept within the bounds feedback keeps.
    pub fn set_sensitivity(&mut self, sensitivity: f64) {
        if sensitivity.is_finite() {
            self.sensitivity = sensitivity.clamp(MIN_SENSITIVITY, MAX_SENSITIVITY);
        }
    }

    /// Applies an engineer's feedback; returns the sensitivity before and after.
    pub fn feedback(&mut self, feedback: Feedback) -> (f64, f64) {
        let before = self.sensitivity;
        self.sensitivity = match feedback {
            Feedback::FalsePositive => (before * 0.8).max(MIN_SENSITIVITY),
            Feedback::Confirmed => (before * 1.1).min(MAX_SENSITIVITY),
        };
        (before, self.sensitivity)
    }

    /// Points learnt from so far.
    pub fn points(&self) -> u64 {
        self.points
    }

    /// The state as saved: a version, the model, a checksum.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// A detector from [`Detector::encode`]'s bytes; another version or damage is refused.
    pub fn decode(bytes: &[u8]) -> Result<Detector> {
        codec::decode(bytes)
    }

    /// Whether the seasonal forecast is the one to use.
    fn seasonal_in_use(&self, config: &DetectorConfig) -> bool {
        let seen_two_days = self.last_time_ms.saturating_sub(self.first_time_ms) >= 2 * DAY_MS;
        match config.seasonality {
            Seasonality::None => false,
            Seasonality::Daily | Seasonality::Weekly => seen_two_days,
            Seasonality::Auto => seen_two_days && self.seasonal_error < 0.8 * self.level_error,
        }
    }

    fn forecast(&self, config: &DetectorConfig, time_ms: i64) -> Forecast {
        let (expected, error) = if self.seasonal_in_use(config) {
            let weekly = config.seasonality != Seasonality::Daily;
            (
                self.seasonal_level + self.season(time_ms, weekly),
                self.seasonal_error,
            )
        } else {
            (self.level, self.level_error)
        };
        Forecast {
            expected,
            scale: self.scale(error),
        }
    }

    /// The seasonal offset at a time: the daily profile interpolated between hourly bins,
    /// plus the weekly offset of the day.
    fn season(&self, time_ms: i64, weekly: bool) -> f64 {
        let (low, high, frac) = daily_position(time_ms);
        let daily = self.daily[low] * (1.0 - frac) + self.daily[high] * frac;
        if weekly {
            daily + self.weekly[weekday(time_ms)]
        } else {
            daily
        }
    }

    /// The error scale, floored so a flat series does not divide by zero.
    fn scale(&self, error: f64) -> f64 {
        error.max(1e-6 * self.magnitude + 1e-12)
    }

    /// The score of a point from its surprises, then learning their distributions and
    /// damping after a high score.
    fn score(&mut self, config: &DetectorConfig, level: f64, seasonal: f64, range: f64) -> f64 {
        self.scored += 1;
        let rate = (1.0 / self.scored as f64).max(1.0 / config.long_points);
        let first = self.scored == 1;
        let raw = self
            .level_view
            .score(config, level, rate, first)
            .max(self.seasonal_view.score(config, seasonal, rate, first))
            .max(config.range_weight * self.range_view.score(config, range, rate, first));
        let previous_peak = self.peak;
        let decay = 0.5f64.powf(1.0 / config.damping_half_life);
        self.peak = raw.max(self.peak * decay);
        raw * (1.0 - config.damping * previous_peak)
    }

    fn learn(&mut self, config: &DetectorConfig, time_ms: i64, value: f64) {
        self.points += 1;
        self.last_time_ms = time_ms;
        let warm = |alpha: f64| alpha.max(1.0 / self.points as f64);

        // The fast level and its error.
        let level_error = (value - self.level).abs();
        self.level_error += warm(config.scale_alpha) * (level_error - self.level_error);
        self.level += config.level_alpha * (value - self.level);

        // The seasonal forecast (daily and weekly) and its error.
        let season = self.season(time_ms, config.seasonality != Seasonality::Daily);
        let seasonal_error = (value - self.seasonal_level - season).abs();
        self.seasonal_error += warm(config.scale_alpha) * (seasonal_error - self.seasonal_error);
        let (low, high, frac) = daily_position(time_ms);
        let deseasoned = value - self.seasonal_level;
        let rate = config.season_alpha;
        self.daily[low] +=
            rate * (1.0 - frac) * (deseasoned - self.weekly[weekday(time_ms)] - self.daily[low]);
        self.daily[high] +=
            rate * frac * (deseasoned - self.weekly[weekday(time_ms)] - self.daily[high]);
        let day = weekday(time_ms);
        let daily_now = self.daily[low] * (1.0 - frac) + self.daily[high] * frac;
        self.weekly[day] += rate * 0.1 * (deseasoned - daily_now - self.weekly[day]);
        let season = self.season(time_ms, config.seasonality != Seasonality::Daily);
        self.seasonal_level +=
            warm(config.seasonal_level_alpha) * (value - season - self.seasonal_level);

        let drift = 1.0 / config.range_memory;
        self.high = value.max(self.high - drift * (self.high - self.level));
        self.low = value.min(self.low + drift * (self.level - self.low));

        self.magnitude += warm(config.scale_alpha) * (value.abs() - self.magnitude);
    }
}

/// The running distribution of one view's surprise: its recent average, and the long-run
/// mean and variance of that average and of the surprise itself.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct SurpriseStats {
    short: f64,
    short_mean: f64,
    short_var: f64,
    point_mean: f64,
    point_var: f64,
}

impl SurpriseStats {
    /// The likelihood score of a surprise (the larger of the recent average's and the
    /// point's), then learning it with weight `rate`.
    fn score(&mut self, config: &DetectorConfig, surprise: f64, rate: f64, first: bool) -> f64 {
        self.short += config.short_alpha * (surprise - self.short);
        // With x the upper tail's −log10 under a normal of the moments so far, x / (x + h).
        let likelihood = |value: f64, mean: f64, var: f64| {
            if first {
                return 0.0;
            }
            let std = var.sqrt().max(config.min_surprise_std);
            let x = -math::log10_normal_tail((value - mean) / std);
            x / (x + config.likelihood_half)
        };
        let score = likelihood(self.short, self.short_mean, self.short_var)
            .max(config.point_weight * likelihood(surprise, self.point_mean, self.point_var));
        ew_moments(&mut self.short_mean, &mut self.short_var, self.short, rate);
        ew_moments(&mut self.point_mean, &mut self.point_var, surprise, rate);
        score
    }

    fn fields(&self) -> [f64; 5] {
        [
            self.short,
            self.short_mean,
            self.short_var,
            self.point_mean,
            self.point_var,
        ]
    }

    fn from_fields(f: [f64; 5]) -> Self {
        SurpriseStats {
            short: f[0],
            short_mean: f[1],
            short_var: f[2],
            point_mean: f[3],
            point_var: f[4],
        }
    }
}

/// Exponentially weighted mean and variance, `rate` the new value's weight.
fn ew_moments(mean: &mut f64, var: &mut f64, value: f64, rate: f64) {
    let delta = value - *mean;
    *mean += rate * delta;
    *var = (1.0 - rate) * (*var + rate * delta * delta);
}

/// The two hourly bins around a time of day and the weight of the later one.
fn daily_position(time_ms: i64) -> (usize, usize, f64) {
    let hours = time_ms.rem_euclid(DAY_MS) as f64 / (DAY_MS as f64 / DAILY_BINS as f64);
    let low = (hours.floor() as usize).min(DAILY_BINS - 1);
    (low, (low + 1) % DAILY_BINS, hours - low as f64)
}

/// Day of the week, 0 for Thursday (1970-01-01 was one).
fn weekday(time_ms: i64) -> usize {
    time_ms.div_euclid(DAY_MS).rem_euclid(WEEKLY_BINS as i64) as usize
}

fn band(config: &DetectorConfig, forecast: Forecast) -> (f64, f64, f64) {
    let width = config.band_sigmas * MAD_TO_SIGMA * forecast.scale;
    (
        forecast.expected,
        forecast.expected - width,
        forecast.expected + width,
    )
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
