//! Forecasting a regularly spaced series with prediction intervals, and the accuracy measures
//! forecasts are scored by (sMAPE, MASE).
//!
//! This is a placeholder that fixes the interface (seasonal naive); the real forecaster
//! replaces it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The forecaster's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// Coverage of the prediction interval, in (0, 1). Default 0.95.
    pub level: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig { level: 0.95 }
    }
}

impl ForecastConfig {
    /// Refuses settings outside their ranges.
    pub fn validate(&self) -> Result<()> {
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(Error::InvalidConfig {
                field: "level",
                reason: "must be in (0, 1)",
            });
        }
        Ok(())
    }
}

/// A forecast of `horizon` steps after the history's last.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Point forecasts, one per step.
    pub mean: Vec<f64>,
    /// Lower ends of the prediction intervals.
    pub lower: Vec<f64>,
    /// Upper ends of the prediction intervals.
    pub upper: Vec<f64>,
    /// The method used, for explanations.
    pub method: &'static str,
    /// The season length used, in steps, if any.
    pub season: Option<usize>,
}

/// Forecasts `horizon` steps after `history` (regularly spaced; NaN marks a gap). `season` is
/// the season length in steps if known; `None` lets the forecaster look for one.
pub fn forecast(
    history: &[f64],
    horizon: usize,
    season: Option<usize>,
    config: &ForecastConfig,
) -> Result<Forecast> {
    config.validate()?;
    let known: Vec<f64> = history.iter().copied().filter(|v| v.is_finite()).collect();
    if known.is_empty() {
        return Err(Error::InvalidInput {
            reason: "no finite value to forecast from",
        });
    }
    let season = season.filter(|&s| s > 1 && s <= known.len());
    let mean: Vec<f64> = (0..horizon)
        .map(|h| match season {
            Some(s) => known[known.len() - s + h % s],
            None => known[known.len() - 1],
        })
        .collect();
    Ok(Forecast {
        lower: mean.clone(),
        upper: mean.clone(),
        mean,
        method: "seasonal-naive",
        season,
    })
}

/// Symmetric mean absolute percentage error, in percent (0 to 200), as M4 scores it.
pub fn smape(actual: &[f64], forecast: &[f64]) -> f64 {
    let n = actual.len().min(forecast.len());
    if n == 0 {
        return 0.0;
    }
    let sum: f64 = actual
        .iter()
        .zip(forecast)
        .map(|(a, f)| {
            let denominator = a.abs() + f.abs();
            if denominator == 0.0 {
                0.0
            } else {
                2.0 * (a - f).abs() / denominator
            }
        })
        .sum();
    100.0 * sum / n as f64
}

/// Mean absolute scaled error: the forecast's mean absolute error over that of the seasonal
/// naive forecast (season `m`) within the history, as M4 scores it.
pub fn mase(history: &[f64], actual: &[f64], forecast: &[f64], m: usize) -> f64 {
    let m = m.max(1);
    if history.len() <= m {
        return f64::NAN;
    }
    let scale: f64 = history
        .windows(m + 1)
        .map(|w| (w[m] - w[0]).abs())
        .sum::<f64>()
        / (history.len() - m) as f64;
    let n = actual.len().min(forecast.len());
    let error: f64 = actual
        .iter()
        .zip(forecast)
        .map(|(a, f)| (a - f).abs())
        .sum::<f64>()
        / n as f64;
    error / scale
}
