//! Streaming anomaly detection: one [`Detector`] per series, updated one point at a time with
//! no look-ahead, scoring each point in `[0, 1]` against what the series has done so far.
//!
//! The method (`novelty-ensemble`) asks, per point, whether the series is doing something it
//! has not done before, in five views, and combines their scores:
//! 1. Value range: how far the value steps out of the range of values seen (whose ends drift
//!    slowly back towards the mean, so a lasting shift becomes normal), in units of 2% of that
//!    range (the "spatial" anomaly of Numenta's NAB runner, without knowing the file's range).
//! 2. Smoothed range: the same for a smoothed level (an exponentially weighted mean), so a
//!    sustained move into new territory counts even when no single point is extreme.
//! 3. Volatility range: the same for the series' volatility, a robust running mean of the
//!    absolute change from one point to the next (each change counted up to 5 times the mean
//!    so far, so a lone spike moves it little), so a stretch noisier (or quieter) than any seen
//!    counts even while every value stays inside the usual range.
//! 4. Daily profile: how far the value is from what this half hour of the day usually holds
//!    (48 bins, each with its own mean and spread; weekly day offsets with
//!    [`Seasonality::Weekly`]), in units of the bin's spread; used once two days are seen and
//!    the profile's error is clearly below the series' overall spread.
//! 5. Pattern novelty (after ARTime's idea): the recent window, block-downsampled to 8
//!    samples that keep each block's extreme, is matched against up to 16 learnt prototypes
//!    (hyperboxes in value space, fuzzy-ART style, the least recently used one replaced); a
//!    window that no prototype can absorb without growing past the vigilance is new and scores
//!    by how far it is from the best match.
//!
//! The first four are calibrated by anomaly likelihood (Numenta's idea): how improbable the
//! view's recent average surprise is under its long-run distribution; with `x` the tail's
//! `−log10`, a view scores `x / (x + 10)` (the volatility view's score is then halved). The
//! views combine as a noisy-or, `1 − Π(1 − s)`. After a high score the next are damped (by
//! `(1 − peak)²`, the peak halving every 100 points), so one event is reported once; a like
//! spike within the next hundred or so points is reported less, or not at all. The likelihood
//! needs history to be calibrated, so for the first 100 points after warm-up its score grows
//! from nothing to full while an uncalibrated extreme view stands in for it (a point more than
//! 8 standard deviations of the error from its expected value), fading out as it grows: a young
//! series' ordinary noise raises nothing and a huge spike is still seen. The band
//! shown with each point is the daily bin's mean ± 3 standard deviations (from the bin's mean
//! absolute deviation) when the profile is in use, else a fast level ± 3 standard deviations
//! of its error. A point is anomalous (what the live path turns into an event) when its score
//! reaches the threshold and its value lies outside that band; NAB scores the raw score.
//!
//! Measured on the Numenta Anomaly Benchmark with `DetectorConfig::default()`, one set for the
//! whole corpus (see `tests/nab.rs`): standard 72.63, reward-low-FP 65.86, reward-low-FN
//! 77.15 (100 of 116 windows, 159 false positives at the standard threshold). The state is a
//! fixed 1,996 bytes encoded; an update costs a few hundred floating point operations (about
//! 2.6 million points per second on one core, `benches/detector.rs`).

mod codec;
mod math;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The name of the method, written into every anomaly's explanation.
pub const METHOD: &str = "novelty-ensemble";
/// The version of the model and its saved state; a saved state of another version is refused.
pub const MODEL_VERSION: u32 = 4;

const DAY_MS: i64 = 86_400_000;
const DAILY_BINS: usize = 48;
const WEEKLY_BINS: usize = 7;
/// Values are clamped to this magnitude so differences and sums stay finite.
const VALUE_LIMIT: f64 = 1e150;
/// Standard deviations per mean absolute deviation of a normal distribution.
const MAD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;
/// A daily bin's spread is floored at this share of the series' overall spread.
const SEASON_FLOOR: f64 = 0.1;
/// Block samples in a pattern window.
const PATTERN_DIMS: usize = 8;
/// Pattern prototypes kept (the least recently matched one is replaced when all are used).
const PATTERN_PROTOTYPES: usize = 16;
/// Fuzzy ART's choice parameter: among prototypes that match, small ones are preferred.
const PATTERN_CHOICE: f64 = 0.001;
/// Values stored as `f32` are kept in the series' frame (see [`Frame`]) and bounded by this.
const FRAME_LIMIT: f64 = 1e30;

/// Which seasonal profiles the daily view may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seasonality {
    /// Use the daily and weekly profiles when they explain the series clearly better than its
    /// overall spread (the default).
    #[default]
    Auto,
    /// Never: no daily view; the band follows the fast level.
    None,
    /// Always the daily profile (once two days are seen), never the weekly offsets.
    Daily,
    /// Always the daily profile and the weekly offsets (once two days are seen).
    Weekly,
}

/// The detector's settings, one set for every series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Score at or above which a point is an anomaly (at sensitivity 1). Default 0.225665, the
    /// threshold NAB's optimiser chose for the default detector on the standard profile.
    pub threshold: f64,
    /// Which seasonal profiles to use. Default `auto`.
    pub seasonality: Seasonality,
    /// Points seen before any is judged. Default 30.
    pub warm_up_points: u64,
    /// Weight of each new point in the fast level (the band's centre without a daily
    /// profile), in `(0, 1]`. Default 0.3.
    pub level_alpha: f64,
    /// Weight of each new point in the smoothed level of the smoothed-range view, in
    /// `(0, 1]`. Default 0.05.
    pub smooth_alpha: f64,
    /// Weight of each new point in the daily bins it falls on, in `(0, 1]`. Default 0.1.
    pub season_alpha: f64,
    /// The daily profile is used (with `auto`) when its running error is below this share of
    /// the series' overall spread, in `(0, 1]`. Default 0.5.
    pub season_ratio: f64,
    /// Weight of each new point in the error scales and the slow mean, in `(0, 1]`. Default
    /// 0.01.
    pub scale_alpha: f64,
    /// Points over which the ends of the value and smoothed ranges drift back towards their
    /// mean (their memory). Default 10000.
    pub range_memory: f64,
    /// Unit of the range views' surprise, as a share of the range. Default 0.02.
    pub range_unit: f64,
    /// Points per block of the pattern view (each block keeps its extreme). Default 3.
    pub pattern_block: u32,
    /// Vigilance of the pattern view, in `(0, 1)`: a prototype absorbs a window when its box,
    /// grown to hold the window, spans at most `1 − vigilance` of the range per sample on
    /// average. Default 0.9.
    pub pattern_vigilance: f64,
    /// Weight of the pattern view's score, in `[0, 1]`. Default 0.8.
    pub pattern_weight: f64,
    /// Distance beyond the vigilance (in vigilance units) at which the pattern view scores
    /// half its weight. Default 3.
    pub pattern_half: f64,
    /// Weight of each new point in the volatility (a robust running mean of the absolute
    /// change from one point to the next), in `(0, 1]`. Default 0.05.
    pub volatility_alpha: f64,
    /// A change counts towards the volatility up to this many times the volatility so far (so
    /// one spike moves it little; a noisier stretch moves it steadily), in `[1, 1e3]`.
    /// Default 5.
    pub volatility_clip: f64,
    /// Weight of the volatility view's score, in `[0, 1]`. Default 0.5.
    pub volatility_weight: f64,
    /// Surprise cap, in the views' units. Default 4.
    pub surprise_cap: f64,
    /// Weight of each new point in the recent average of surprise, in `(0, 1]`. Default
    /// 0.25.
    pub short_alpha: f64,
    /// Points in the long-run distribution of surprise (its memory). Default 5000.
    pub long_points: f64,
    /// Smallest standard deviation of surprise used in the likelihood. Default 0.1.
    pub min_surprise_std: f64,
    /// The −log10 tail probability that scores 0.5. Default 10.
    pub likelihood_half: f64,
    /// Points over which the damping after a high score halves. Default 100.
    pub damping_half_life: f64,
    /// How much the recent peak score damps the next: each score is multiplied by
    /// `(1 − damping · peak)²`, in `[0, 1]`. Default 1.
    pub damping: f64,
    /// Half-width of the expected band, in standard deviations of the error. Default 3.
    pub band_sigmas: f64,
    /// The extreme view: a point further than this many standard deviations of the error from
    /// its expected value scores on its own, uncalibrated, however young the series; 0 turns
    /// the view off. Default 8.
    pub extreme_sigmas: f64,
    /// Scores (and the damping they cause) grow from 0 to full over this many points after
    /// warm-up, while the views' calibration is still young; the extreme view is not held
    /// back. Default 100.
    pub confidence_points: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            threshold: 0.225665,
            seasonality: Seasonality::Auto,
            warm_up_points: 30,
            level_alpha: 0.3,
            smooth_alpha: 0.05,
            season_alpha: 0.1,
            season_ratio: 0.5,
            scale_alpha: 0.01,
            range_memory: 10000.0,
            range_unit: 0.02,
            pattern_block: 3,
            pattern_vigilance: 0.9,
            pattern_weight: 0.8,
            pattern_half: 3.0,
            volatility_alpha: 0.05,
            volatility_clip: 5.0,
            volatility_weight: 0.5,
            surprise_cap: 4.0,
            short_alpha: 0.25,
            long_points: 5000.0,
            min_surprise_std: 0.1,
            likelihood_half: 10.0,
            damping_half_life: 100.0,
            damping: 1.0,
            band_sigmas: 3.0,
            extreme_sigmas: 8.0,
            confidence_points: 100.0,
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
        let within = |v: f64, low: f64, high: f64| v >= low && v <= high;
        check(unit(self.threshold), "threshold", "must be in (0, 1]")?;
        check(unit(self.level_alpha), "level_alpha", "must be in (0, 1]")?;
        check(unit(self.smooth_alpha), "smooth_alpha", "must be in (0, 1]")?;
        check(unit(self.season_alpha), "season_alpha", "must be in (0, 1]")?;
        check(unit(self.season_ratio), "season_ratio", "must be in (0, 1]")?;
        check(unit(self.scale_alpha), "scale_alpha", "must be in (0, 1]")?;
        check(unit(self.short_alpha), "short_alpha", "must be in (0, 1]")?;
        check(
            unit(self.volatility_alpha),
            "volatility_alpha",
            "must be in (0, 1]",
        )?;
        check(
            within(self.volatility_clip, 1.0, 1e3),
            "volatility_clip",
            "must be in [1, 1e3]",
        )?;
        check(
            within(self.volatility_weight, 0.0, 1.0),
            "volatility_weight",
            "must be in [0, 1]",
        )?;
        check(
            within(self.range_memory, 1.0, 1e9),
            "range_memory",
            "must be in [1, 1e9]",
        )?;
        check(
            self.range_unit > 0.0 && self.range_unit <= 1e3,
            "range_unit",
            "must be in (0, 1e3]",
        )?;
        check(
            (1..=1000).contains(&self.pattern_block),
            "pattern_block",
            "must be in [1, 1000]",
        )?;
        check(
            self.pattern_vigilance > 0.0 && self.pattern_vigilance < 1.0,
            "pattern_vigilance",
            "must be in (0, 1)",
        )?;
        check(
            within(self.pattern_weight, 0.0, 1.0),
            "pattern_weight",
            "must be in [0, 1]",
        )?;
        check(
            self.pattern_half > 0.0 && self.pattern_half <= 1e3,
            "pattern_half",
            "must be in (0, 1e3]",
        )?;
        check(
            within(self.surprise_cap, 1.0, 1e6),
            "surprise_cap",
            "must be in [1, 1e6]",
        )?;
        check(
            within(self.long_points, 10.0, 1e9),
            "long_points",
            "must be in [10, 1e9]",
        )?;
        check(
            self.min_surprise_std > 0.0 && self.min_surprise_std <= 1e3,
            "min_surprise_std",
            "must be in (0, 1e3]",
        )?;
        check(
            self.likelihood_half > 0.0 && self.likelihood_half <= 1e3,
            "likelihood_half",
            "must be in (0, 1e3]",
        )?;
        check(
            self.damping_half_life > 0.0 && self.damping_half_life <= 1e9,
            "damping_half_life",
            "must be in (0, 1e9]",
        )?;
        check(
            within(self.damping, 0.0, 1.0),
            "damping",
            "must be in [0, 1]",
        )?;
        check(
            (0.0..=1e3).contains(&self.extreme_sigmas),
            "extreme_sigmas",
            "must be in [0, 1e3]",
        )?;
        check(
            (0.0..=1e9).contains(&self.confidence_points),
            "confidence_points",
            "must be in [0, 1e9]",
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
    /// The score reached the threshold (adjusted by the series' sensitivity) after warm-up,
    /// and the value is outside the band `lower..=upper`.
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
    /// Points scored (after warm-up), for the long-run distributions' learning rate.
    scored: u64,
    /// Time of the first and the last point learnt from.
    first_time_ms: i64,
    last_time_ms: i64,
    sensitivity: f64,
    /// The fast level and its running mean absolute error (the band without a profile).
    level: f64,
    level_error: f64,
    /// Running mean of the magnitude of values (floors the error scales).
    magnitude: f64,
    /// The slow mean and the running mean absolute deviation around it (overall spread).
    mean: f64,
    spread: f64,
    /// The smoothed level of the smoothed-range view.
    smooth: f64,
    /// The last value learnt, and the volatility: a running mean of the absolute change from
    /// one point to the next, each change capped at `volatility_clip` times the mean so far.
    previous: f64,
    volatility: f64,
    /// The ranges of values, of the smoothed level and of the volatility.
    value_range: Range,
    smooth_range: Range,
    volatility_range: Range,
    /// Where values stored as `f32` are measured from, and in what unit.
    frame: Frame,
    /// The daily profile: per half-hour bin a mean and a mean absolute deviation (in the
    /// frame); weekly day offsets; the profile's running error.
    daily_mean: [f32; DAILY_BINS],
    daily_dev: [f32; DAILY_BINS],
    weekly: [f64; WEEKLY_BINS],
    season_error: f64,
    /// The likelihood of each calibrated view's surprise.
    value_view: Likelihood,
    smooth_view: Likelihood,
    season_view: Likelihood,
    volatility_view: Likelihood,
    pattern: Pattern,
    /// The recent peak score, decaying; scores after it are damped.
    peak: f64,
}

/// The span of a statistic seen, each end drifting back towards its running mean.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Range {
    mean: f64,
    high: f64,
    low: f64,
}

/// The running distribution of one view's surprise: its recent average and the long-run mean
/// and variance of that average.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Likelihood {
    short: f64,
    mean: f64,
    var: f64,
}

/// The series' frame for values stored as `f32`: measured from its first value, in units of
/// its first step. So a series of any magnitude or offset keeps `f32`'s relative precision
/// in its own terms. The unit is 0 until the series first varies (until then it equals the
/// origin, which stored zeros stand for).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Frame {
    origin: f64,
    unit: f64,
}

impl Frame {
    fn store(self, value: f64) -> f32 {
        if self.unit == 0.0 {
            return 0.0;
        }
        ((value - self.origin) / self.unit).clamp(-FRAME_LIMIT, FRAME_LIMIT) as f32
    }

    fn load(self, stored: f32) -> f64 {
        self.origin + self.unit * f64::from(stored)
    }
}

/// The pattern view: the block being filled, the recent block samples and the prototypes
/// (samples and boxes in the series' frame).
#[derive(Debug, Clone, PartialEq)]
struct Pattern {
    block_len: u64,
    block_max: f64,
    block_min: f64,
    block_sum: f64,
    /// A fast moving average of block means: a block keeps whichever extreme is further
    /// from it.
    block_average: f64,
    samples: [f32; PATTERN_DIMS],
    samples_seen: u64,
    /// Each prototype's box, per sample: lowest and highest value absorbed.
    low: [[f32; PATTERN_DIMS]; PATTERN_PROTOTYPES],
    high: [[f32; PATTERN_DIMS]; PATTERN_PROTOTYPES],
    /// When each prototype last absorbed a window (its sample count).
    used: [u64; PATTERN_PROTOTYPES],
    /// Prototypes made so far (those past the table replaced others).
    made: u64,
}

impl Default for Pattern {
    fn default() -> Self {
        Pattern {
            block_len: 0,
            block_max: 0.0,
            block_min: 0.0,
            block_sum: 0.0,
            block_average: 0.0,
            samples: [0.0; PATTERN_DIMS],
            samples_seen: 0,
            low: [[0.0; PATTERN_DIMS]; PATTERN_PROTOTYPES],
            high: [[0.0; PATTERN_DIMS]; PATTERN_PROTOTYPES],
            used: [0; PATTERN_PROTOTYPES],
            made: 0,
        }
    }
}

/// The expected value and band scale at one time.
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
            scored: 0,
            first_time_ms: i64::MIN,
            last_time_ms: i64::MIN,
            sensitivity: 1.0,
            level: 0.0,
            level_error: 0.0,
            magnitude: 0.0,
            mean: 0.0,
            spread: 0.0,
            smooth: 0.0,
            previous: 0.0,
            volatility: 0.0,
            value_range: Range::default(),
            smooth_range: Range::default(),
            volatility_range: Range::default(),
            frame: Frame::default(),
            daily_mean: [0.0; DAILY_BINS],
            daily_dev: [0.0; DAILY_BINS],
            weekly: [0.0; WEEKLY_BINS],
            season_error: 0.0,
            value_view: Likelihood::default(),
            smooth_view: Likelihood::default(),
            season_view: Likelihood::default(),
            volatility_view: Likelihood::default(),
            pattern: Pattern::default(),
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
            self.mean = value;
            self.smooth = value;
            self.previous = value;
            self.magnitude = value.abs();
            self.frame.origin = value;
        }
        if self.frame.unit == 0.0 && value != self.frame.origin {
            self.frame.unit = (value - self.frame.origin).abs();
        }
        let warming_up = !self.is_warm(config);
        let band = (!warming_up).then(|| band(config, self.forecast(config, time_ms)));

        // The surprises, before learning from the point (the ranges and the pattern view
        // learn as they measure).
        let smooth = self.smooth + config.smooth_alpha * (value - self.smooth);
        let value_s = self.value_range.excess(config, value, self.points);
        let smooth_s = self.smooth_range.excess(config, smooth, self.points);
        let season_s = if self.season_in_use(config) {
            let forecast = self.season_forecast(config, time_ms);
            ((value - forecast.expected).abs() / forecast.scale).min(config.surprise_cap)
        } else {
            0.0
        };
        let volatility = self.next_volatility(config, value);
        let volatility_s = self
            .volatility_range
            .excess(config, volatility, self.points);
        let range = self.value_range.high - self.value_range.low;
        let novelty = self.pattern.step(config, self.frame, value, range);

        let extreme = match self.forecast_if_warm(config, time_ms) {
            Some(forecast) if config.extreme_sigmas > 0.0 => {
                let sigmas = (value - forecast.expected).abs() / (MAD_TO_SIGMA * forecast.scale);
                let beyond = (sigmas - config.extreme_sigmas).max(0.0);
                if beyond.is_finite() {
                    beyond / (beyond + config.extreme_sigmas)
                } else {
                    1.0
                }
            }
            _ => 0.0,
        };
        let score = if warming_up {
            0.0
        } else {
            self.score(
                config,
                [value_s, smooth_s, season_s, volatility_s],
                novelty,
                extreme,
            )
        };
        self.learn(config, time_ms, value, smooth);
        self.previous = value;
        self.volatility = volatility;
        // An anomaly is a point the model finds unusual *and* that lies outside the band it
        // shows: a novelty inside the band (a changed shape, a quieter stretch) still scores,
        // but is not something a person could be told "X is above its expected band" about.
        let outside = band.is_some_and(|(_, lower, upper)| value < lower || value > upper);
        let anomalous = outside && score >= self.effective_threshold(config);
        verdict(band, score, anomalous, warming_up)
    }

    /// The band expected at `time_ms`, as (expected, lower, upper); `None` while warming up.
    pub fn expected(&self, config: &DetectorConfig, time_ms: i64) -> Option<(f64, f64, f64)> {
        if !self.is_warm(config) {
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

    /// Whether the warm-up is over: points are judged from now on.
    pub fn is_warm(&self, config: &DetectorConfig) -> bool {
        self.points >= config.warm_up_points.max(2)
    }

    /// The state as saved: a version, the model, a checksum.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// A detector from [`Detector::encode`]'s bytes; another version or damage is refused.
    pub fn decode(bytes: &[u8]) -> Result<Detector> {
        codec::decode(bytes)
    }

    /// Whether the daily profile is the one to use.
    fn season_in_use(&self, config: &DetectorConfig) -> bool {
        let seen_two_days = self.last_time_ms.saturating_sub(self.first_time_ms) >= 2 * DAY_MS;
        match config.seasonality {
            Seasonality::None => false,
            Seasonality::Daily | Seasonality::Weekly => seen_two_days,
            Seasonality::Auto => {
                seen_two_days && self.season_error < config.season_ratio * self.spread
            }
        }
    }

    fn weekly_in_use(&self, config: &DetectorConfig) -> bool {
        matches!(config.seasonality, Seasonality::Weekly)
    }

    /// The daily profile's expectation and scale at a time.
    fn season_forecast(&self, config: &DetectorConfig, time_ms: i64) -> Forecast {
        let bin = daily_bin(time_ms);
        let mut expected = self.frame.load(self.daily_mean[bin]);
        if self.weekly_in_use(config) {
            expected += self.weekly[weekday(time_ms)];
        }
        let dev = self.frame.unit * f64::from(self.daily_dev[bin]);
        Forecast {
            expected,
            scale: self.scale(dev.max(SEASON_FLOOR * self.spread)),
        }
    }

    /// The band's centre and scale: the daily profile when in use, else the fast level.
    /// The forecast once warmed up.
    fn forecast_if_warm(&self, config: &DetectorConfig, time_ms: i64) -> Option<Forecast> {
        self.is_warm(config).then(|| self.forecast(config, time_ms))
    }

    fn forecast(&self, config: &DetectorConfig, time_ms: i64) -> Forecast {
        if self.season_in_use(config) {
            self.season_forecast(config, time_ms)
        } else {
            Forecast {
                expected: self.level,
                scale: self.scale(self.level_error),
            }
        }
    }

    /// An error scale, floored (relative to the magnitude of values) so a flat series does not
    /// divide by zero.
    fn scale(&self, error: f64) -> f64 {
        error.max(1e-12 * self.magnitude).max(f64::MIN_POSITIVE)
    }

    /// The volatility after `value`: the running mean of absolute changes, each capped at
    /// `volatility_clip` times the mean so far (uncapped while the series has not moved).
    fn next_volatility(&self, config: &DetectorConfig, value: f64) -> f64 {
        let mut change = (value - self.previous).abs();
        if self.volatility > 0.0 {
            change = change.min(config.volatility_clip * self.volatility);
        }
        let rate = config.volatility_alpha.max(1.0 / (self.points + 1) as f64);
        self.volatility + rate * (change - self.volatility)
    }

    /// The score of a point: the calibrated views and the pattern view as a noisy-or, damped
    /// after a high score.
    fn score(
        &mut self,
        config: &DetectorConfig,
        surprises: [f64; 4],
        novelty: f64,
        extreme: f64,
    ) -> f64 {
        self.scored += 1;
        let rate = (1.0 / self.scored as f64).max(1.0 / config.long_points);
        let first = self.scored == 1;
        let views = [
            (&mut self.value_view, 1.0),
            (&mut self.smooth_view, 1.0),
            (&mut self.season_view, 1.0),
            (&mut self.volatility_view, config.volatility_weight),
        ];
        let mut calm = 1.0;
        for ((view, weight), surprise) in views.into_iter().zip(surprises) {
            calm *= 1.0 - weight * view.score(config, surprise, rate, first);
        }
        let beyond = (novelty - 1.0).max(0.0);
        calm *= 1.0 - config.pattern_weight * beyond / (beyond + config.pattern_half);
        let confidence = if config.confidence_points > 0.0 {
            (self.scored as f64 / config.confidence_points).min(1.0)
        } else {
            1.0
        };
        // While the calibration is young its views are held back and the extreme view stands
        // in for them; once it is grown the extreme view is left out (the calibrated views
        // judge spikes against what this series' spikes look like).
        let raw = 1.0 - (1.0 - confidence * (1.0 - calm)) * (1.0 - (1.0 - confidence) * extreme);
        let previous_peak = self.peak;
        let decay = (-1.0 / config.damping_half_life).exp2();
        self.peak = raw.max(self.peak * decay);
        let damp = 1.0 - config.damping * previous_peak;
        (raw * damp * damp).clamp(0.0, 1.0)
    }

    fn learn(&mut self, config: &DetectorConfig, time_ms: i64, value: f64, smooth: f64) {
        // The daily profile learns from the error before the point counts.
        let bin = daily_bin(time_ms);
        let day = weekday(time_ms);
        let weekly = if self.weekly_in_use(config) {
            self.weekly[day]
        } else {
            0.0
        };
        let daily = self.frame.load(self.daily_mean[bin]);
        let error = value - daily - weekly;

        self.points += 1;
        self.last_time_ms = time_ms;
        let warm = |alpha: f64| alpha.max(1.0 / self.points as f64);
        let scale_rate = warm(config.scale_alpha);

        self.season_error += scale_rate * (error.abs() - self.season_error);
        let rate = config.season_alpha;
        if self.frame.unit > 0.0 {
            let dev = self.frame.unit * f64::from(self.daily_dev[bin]);
            self.daily_mean[bin] = self.frame.store(daily + rate * error);
            let dev = dev + rate * (error.abs() - dev);
            self.daily_dev[bin] = (dev / self.frame.unit).min(FRAME_LIMIT) as f32;
        }
        if self.weekly_in_use(config) {
            let daily = self.frame.load(self.daily_mean[bin]);
            self.weekly[day] += 0.1 * rate * (value - daily - self.weekly[day]);
        }

        let level_error = (value - self.level).abs();
        self.level_error += scale_rate * (level_error - self.level_error);
        self.level += config.level_alpha * (value - self.level);

        self.spread += scale_rate * ((value - self.mean).abs() - self.spread);
        self.mean += scale_rate * (value - self.mean);
        self.smooth = smooth;
        self.magnitude += scale_rate * (value.abs() - self.magnitude);
    }
}

impl Range {
    /// How far `value` steps out of the range, in units of `range_unit` of it (capped), then
    /// learning it; `seen` is the number of values learnt before.
    fn excess(&mut self, config: &DetectorConfig, value: f64, seen: u64) -> f64 {
        let span = self.high - self.low;
        let beyond = (value - self.high).max(self.low - value).max(0.0);
        let surprise = if seen < 2 || beyond == 0.0 {
            0.0
        } else if span <= 0.0 {
            // A series that never moved, moving: as new as it gets.
            config.surprise_cap
        } else {
            (beyond / (config.range_unit * span)).min(config.surprise_cap)
        };
        if seen == 0 {
            *self = Range {
                mean: value,
                high: value,
                low: value,
            };
        }
        let rate = config.scale_alpha.max(1.0 / (seen + 1) as f64);
        self.mean += rate * (value - self.mean);
        let drift = 1.0 / config.range_memory;
        self.high = value.max(self.high - drift * (self.high - self.mean));
        self.low = value.min(self.low + drift * (self.mean - self.low));
        surprise
    }
}

impl Likelihood {
    /// The likelihood score of a surprise's recent average, then learning it with weight
    /// `rate`.
    fn score(&mut self, config: &DetectorConfig, surprise: f64, rate: f64, first: bool) -> f64 {
        self.short += config.short_alpha * (surprise - self.short);
        let score = if first {
            0.0
        } else {
            // With x the upper tail's −log10 under a normal of the moments so far, x / (x + h).
            let std = self.var.sqrt().max(config.min_surprise_std);
            let x = -math::log10_normal_tail((self.short - self.mean) / std);
            x / (x + config.likelihood_half)
        };
        let delta = self.short - self.mean;
        self.mean += rate * delta;
        self.var = (1.0 - rate) * (self.var + rate * delta * delta);
        score
    }
}

impl Pattern {
    /// Feeds one value; when a block completes, matches the window of block samples against
    /// the prototypes (learning it) and returns its novelty, `(1 − best match) / (1 −
    /// vigilance)` (above 1: no prototype could absorb it), else 0. `range` is the value
    /// range the match is measured against.
    fn step(&mut self, config: &DetectorConfig, frame: Frame, value: f64, range: f64) -> f64 {
        if self.block_len == 0 {
            self.block_max = value;
            self.block_min = value;
            self.block_sum = 0.0;
        }
        self.block_max = self.block_max.max(value);
        self.block_min = self.block_min.min(value);
        self.block_sum += value;
        self.block_len += 1;
        if self.block_len < u64::from(config.pattern_block) {
            return 0.0;
        }
        let block_mean = self.block_sum / self.block_len as f64;
        self.block_len = 0;
        if self.samples_seen == 0 {
            self.block_average = block_mean;
        }
        self.block_average = 0.5 * (self.block_average + block_mean);
        let sample = if (self.block_max - self.block_average).abs()
            < (self.block_min - self.block_average).abs()
        {
            self.block_min
        } else {
            self.block_max
        };
        self.samples.copy_within(1.., 0);
        self.samples[PATTERN_DIMS - 1] = frame.store(sample);
        self.samples_seen += 1;
        if self.samples_seen <= PATTERN_DIMS as u64 || range <= 0.0 || frame.unit == 0.0 {
            return 0.0;
        }

        // Fuzzy ART with complement coding, in value units: a prototype's match is 1 − (its
        // box grown to hold the window, summed over samples) / (samples · range).
        let scale = PATTERN_DIMS as f64 * range / frame.unit;
        let made = (self.made as usize).min(PATTERN_PROTOTYPES);
        let mut best_match: f64 = 0.0;
        let mut chosen = None;
        let mut best_choice = f64::NEG_INFINITY;
        for j in 0..made {
            let mut grown = 0.0;
            let mut width = 0.0;
            for (k, &x) in self.samples.iter().enumerate() {
                let (low, high) = (self.low[j][k], self.high[j][k]);
                grown += f64::from(high.max(x)) - f64::from(low.min(x));
                width += f64::from(high) - f64::from(low);
            }
            let matched = 1.0 - grown / scale;
            best_match = best_match.max(matched);
            let choice = matched / (PATTERN_CHOICE + 1.0 - width / scale);
            if matched >= config.pattern_vigilance && choice > best_choice {
                best_choice = choice;
                chosen = Some(j);
            }
        }
        let stamp = self.samples_seen;
        let slot = match chosen {
            Some(j) => {
                for (k, &x) in self.samples.iter().enumerate() {
                    self.low[j][k] = self.low[j][k].min(x);
                    self.high[j][k] = self.high[j][k].max(x);
                }
                j
            }
            None => {
                let slot = if made < PATTERN_PROTOTYPES {
                    made
                } else {
                    (0..PATTERN_PROTOTYPES)
                        .min_by_key(|&j| self.used[j])
                        .unwrap_or(0)
                };
                self.low[slot] = self.samples;
                self.high[slot] = self.samples;
                self.made += 1;
                slot
            }
        };
        self.used[slot] = stamp;
        if made == 0 {
            return 0.0;
        }
        ((1.0 - best_match) / (1.0 - config.pattern_vigilance)).clamp(0.0, config.surprise_cap)
    }
}

/// The daily bin of a time of day.
fn daily_bin(time_ms: i64) -> usize {
    let bin = time_ms.rem_euclid(DAY_MS) / (DAY_MS / DAILY_BINS as i64);
    (bin as usize).min(DAILY_BINS - 1)
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
