//! The forecaster on the M4 competition's hourly series (414 series, horizon 48, season 24),
//! scored as M4 does: sMAPE and MASE (seasonal naive scaling, m = 24) per series, averaged.
//! Also checks the scorer: seasonal naive must land on M4's published 13.912 / 1.193.
//! Run with `cargo test --release -p sextant-analytics --test m4 -- --nocapture` to see the
//! scores and the time.

use std::path::Path;
use std::time::Instant;

use sextant_analytics::forecast::{ForecastConfig, forecast, mase, parse_m4_csv, smape};

const HORIZON: usize = 48;
const SEASON: usize = 24;

/// Training series and their next 48 values, by series.
fn load() -> Vec<(Vec<f64>, Vec<f64>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/m4-hourly");
    let read = |name: &str| {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        parse_m4_csv(&text).unwrap()
    };
    let (train, test) = (read("Hourly-train.csv"), read("Hourly-test.csv"));
    assert_eq!(train.len(), 414);
    assert_eq!(test.len(), 414);
    train
        .into_iter()
        .zip(test)
        .map(|((id, history), (test_id, actual))| {
            assert_eq!(id, test_id);
            assert_eq!(actual.len(), HORIZON);
            (history, actual)
        })
        .collect()
}

/// Mean sMAPE and MASE of `forecasts` over all series.
fn score(series: &[(Vec<f64>, Vec<f64>)], forecasts: &[Vec<f64>]) -> (f64, f64) {
    let (mut s, mut m) = (0.0, 0.0);
    for ((history, actual), f) in series.iter().zip(forecasts) {
        s += smape(actual, f);
        m += mase(history, actual, f, SEASON);
    }
    (s / series.len() as f64, m / series.len() as f64)
}

#[test]
fn m4_hourly_scores() {
    let series = load();

    let naive: Vec<Vec<f64>> = series
        .iter()
        .map(|(history, _)| {
            let last_day = &history[history.len() - SEASON..];
            (0..HORIZON).map(|h| last_day[h % SEASON]).collect()
        })
        .collect();
    let (naive_smape, naive_mase) = score(&series, &naive);
    println!("seasonal naive: sMAPE {naive_smape:.3}, MASE {naive_mase:.3}");
    assert!((naive_smape - 13.912).abs() < 0.01, "{naive_smape}");
    assert!((naive_mase - 1.193).abs() < 0.001, "{naive_mase}");

    let config = ForecastConfig::default();
    let started = Instant::now();
    let forecasts: Vec<Vec<f64>> = series
        .iter()
        .map(|(history, _)| {
            let f = forecast(history, HORIZON, Some(SEASON), &config).unwrap();
            assert_eq!(f.mean.len(), HORIZON);
            f.mean
        })
        .collect();
    let elapsed = started.elapsed();
    let (s, m) = score(&series, &forecasts);
    println!("forecaster: sMAPE {s:.3}, MASE {m:.3}, {elapsed:.2?} for 414 series");
    assert!(s < 10.2, "sMAPE regressed: {s}");
    assert!(m < 0.93, "MASE regressed: {m}");
}
