//! The candidate methods the forecaster chooses among: naive and seasonal naive, averages of
//! past cycles with level adjustment, a seasonal profile with a smoothed level, exponential
//! smoothing (damped trend, Holt-Winters) and a straight line. Each forecasts a (possibly
//! log-transformed) series `z` without gaps.

use super::season::least_squares_line;
use super::smoothing;

/// The seasons a series is forecast with: the primary one and, when the history covers
/// several of them, a longer one (a week of days).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Seasons {
    pub short: Option<usize>,
    pub long: Option<usize>,
}

/// Every candidate method's forecast of `horizon` steps after `z`, by name.
pub(crate) fn candidates(
    z: &[f64],
    horizon: usize,
    seasons: Seasons,
) -> Vec<(&'static str, Vec<f64>)> {
    let n = z.len();
    let mut out: Vec<(&'static str, Vec<f64>)> = Vec::new();
    out.push(("naive", vec![z[n - 1]; horizon]));
    if n >= 3 {
        out.push(("linear", linear(z, horizon)));
        out.push(("drift", recent_drift(z, horizon)));
        let p = smoothing::fit(z, 0, true);
        out.push(("damped", smoothing::predict(z, 0, &p, horizon)));
    }
    if let Some(s) = seasons.short {
        if n >= s {
            out.push(("snaive", cycle_mean(z, horizon, s, 1, 0, false)));
        }
        if n >= 3 * s + s {
            out.push(("smean3", cycle_mean(z, horizon, s, 3, s, true)));
        }
        if n >= 7 * s + s {
            out.push(("smean7", cycle_mean(z, horizon, s, 7, s, true)));
        }
        if n >= 3 * s {
            let p = smoothing::fit(z, s, true);
            out.push(("hw", smoothing::predict(z, s, &p, horizon)));
            let p = smoothing::fit(z, s, false);
            out.push(("ses_s", smoothing::predict(z, s, &p, horizon)));
            out.push(("profile_s", profile(z, horizon, s, 7)));
        }
    }
    if let (Some(s), Some(w)) = (seasons.short, seasons.long) {
        if n >= w {
            out.push(("lnaive", cycle_mean(z, horizon, w, 1, 0, false)));
        }
        if n >= 2 * w + s {
            out.push(("lmean2", cycle_mean(z, horizon, w, 2, s, true)));
        }
        if n >= 3 * w + s {
            out.push(("lmean3", cycle_mean(z, horizon, w, 3, s, true)));
        }
        if n >= 4 * w + s {
            out.push(("lmean4", cycle_mean(z, horizon, w, 4, s, true)));
        }
        if n >= 2 * w {
            out.push(("profile_w", profile(z, horizon, w, 4)));
            let p = smoothing::fit(z, w, true);
            out.push(("hw_long", smoothing::predict(z, w, &p, horizon)));
            let p = smoothing::fit(z, w, false);
            out.push(("ses_long", smoothing::predict(z, w, &p, horizon)));
        }
    }
    out
}

/// The last value, moving on at the mean step of the last `horizon` steps (at most the whole
/// series): a trend as recent as the forecast is long, so a climb that began late in a long
/// flat history is followed (a leak, a filling disk), where a line through all of it is not.
pub(crate) fn recent_drift(z: &[f64], horizon: usize) -> Vec<f64> {
    let n = z.len();
    let k = horizon.clamp(1, n - 1);
    let slope = (z[n - 1] - z[n - 1 - k]) / k as f64;
    (1..=horizon).map(|h| z[n - 1] + slope * h as f64).collect()
}

/// A straight least-squares line through the whole series, continued.
pub(crate) fn linear(z: &[f64], horizon: usize) -> Vec<f64> {
    let (intercept, slope) = least_squares_line(z);
    let n = z.len();
    (0..horizon)
        .map(|h| intercept + slope * (n + h) as f64)
        .collect()
}

/// The mean of the last `cycles` cycles of length `period` at each step's phase. With `adjust`,
/// each past cycle is shifted by the difference between the last `window` steps and the
/// `window` steps before the same point of that cycle (a level adjustment).
fn cycle_mean(
    z: &[f64],
    horizon: usize,
    period: usize,
    cycles: usize,
    window: usize,
    adjust: bool,
) -> Vec<f64> {
    let n = z.len();
    let cycles = cycles.min(n / period).max(1);
    let recent = if adjust { mean(&z[n - window..]) } else { 0.0 };
    let shifts: Vec<f64> = (1..=cycles)
        .map(|j| {
            if adjust && n >= j * period + window {
                recent - mean(&z[n - j * period - window..n - j * period])
            } else {
                0.0
            }
        })
        .collect();
    (0..horizon)
        .map(|h| {
            let phase = h % period;
            (1..=cycles)
                .map(|j| z[n - j * period + phase] + shifts[j - 1])
                .sum::<f64>()
                / cycles as f64
        })
        .collect()
}

/// A seasonal profile (mean deviation from each cycle's mean over the last `cycles` cycles)
/// plus a smoothed level of the deseasonalised series.
fn profile(z: &[f64], horizon: usize, period: usize, cycles: usize) -> Vec<f64> {
    let n = z.len();
    let cycles = cycles.min(n / period).max(1);
    let mut shape = vec![0.0; period];
    for j in 1..=cycles {
        let cycle = &z[n - j * period..n - (j - 1) * period];
        let m = mean(cycle);
        for (s, v) in shape.iter_mut().zip(cycle) {
            *s += (v - m) / cycles as f64;
        }
    }
    // phase of t: (t - n) mod period, so that phase 0 is the step after the series.
    let phase = |t: usize| (t + period * (n / period + 1) - n) % period;
    let start = n.saturating_sub(cycles * period);
    let deseasonalised: Vec<f64> = (start..n).map(|t| z[t] - shape[phase(t)]).collect();
    let p = smoothing::fit(&deseasonalised, 0, false);
    let level = smoothing::predict(&deseasonalised, 0, &p, 1)[0];
    (0..horizon).map(|h| level + shape[h % period]).collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}
