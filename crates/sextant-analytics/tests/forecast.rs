//! The forecaster's behaviour on awkward and typical inputs: very short, constant, zero, huge
//! and gappy histories never panic or give NaN; intervals contain the point forecast and widen
//! with the horizon; a noisy linear trend is continued and a daily season keeps its shape.

use proptest::prelude::Just;
use sextant_analytics::Error;
use sextant_analytics::forecast::{
    Forecast, ForecastConfig, LINEAR_TREND, find_season, forecast, linear_trend,
};

/// A small deterministic noise source in [-1, 1] (xorshift).
fn noise(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed.max(1);
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 20_001) as f64 / 10_000.0 - 1.0
    }
}

/// Checks the invariants every forecast keeps, and returns it.
fn check(history: &[f64], horizon: usize, season: Option<usize>) -> Forecast {
    let f = forecast(history, horizon, season, &ForecastConfig::default()).unwrap();
    assert_eq!(f.mean.len(), horizon);
    assert_eq!(f.lower.len(), horizon);
    assert_eq!(f.upper.len(), horizon);
    let (mut above, mut below) = (0.0, 0.0);
    for h in 0..horizon {
        let (lo, m, hi) = (f.lower[h], f.mean[h], f.upper[h]);
        assert!(
            lo.is_finite() && m.is_finite() && hi.is_finite(),
            "{history:?} -> {f:?}"
        );
        assert!(lo <= m && m <= hi, "step {h}: {lo} {m} {hi}");
        // Each half widens, except that the lower end may stop at zero. The slack allows the
        // rounding of values this large: a zero-width interval may come out a few ulps wide.
        let slack = 1e-12 * m.abs().max(1.0);
        assert!(
            hi - m >= above * (1.0 - 1e-9) - slack,
            "upper half narrows at {h}: {f:?}"
        );
        assert!(
            m - lo >= below * (1.0 - 1e-9) - slack || lo == 0.0,
            "lower half narrows at {h}"
        );
        (above, below) = (hi - m, m - lo);
    }
    f
}

#[test]
fn a_zero_width_interval_may_round_but_never_narrows() {
    // Two points far apart leave no residual spread; the interval is the mean, up to rounding
    // (a proptest case once failed on an upper end one ulp above the mean at one step only).
    let f = check(
        &[-670_582.796_417_708, f64::NAN, 267_913.531_997_110_7],
        8,
        None,
    );
    for h in 0..8 {
        assert!(
            (f.upper[h] - f.mean[h]).abs() <= 1e-6 * f.mean[h].abs(),
            "{f:?}"
        );
    }
}

#[test]
fn short_histories_are_forecast() {
    for history in [
        &[5.0][..],
        &[5.0, 7.0],
        &[5.0, 7.0, 6.0],
        &[1.0, 2.0, 3.0, 4.0, 5.0],
    ] {
        for season in [None, Some(2), Some(24)] {
            let f = check(history, 10, season);
            assert!(f.mean.iter().all(|&v| (0.0..=20.0).contains(&v)), "{f:?}");
        }
    }
    assert_eq!(check(&[5.0], 3, None).mean, vec![5.0; 3]);
    assert!(check(&[1.0; 50], 0, None).mean.is_empty());
}

#[test]
fn constant_zero_and_negative_series() {
    let f = check(&[42.0; 300], 48, Some(24));
    assert!(f.mean.iter().all(|&v| (v - 42.0).abs() < 1e-9), "{f:?}");
    let f = check(&[0.0; 300], 48, None);
    assert!(f.mean.iter().all(|&v| v == 0.0), "{f:?}");
    let mut next = noise(3);
    let sparse: Vec<f64> = (0..400)
        .map(|t| if t % 5 == 0 { 10.0 + next() } else { 0.0 })
        .collect();
    let f = check(&sparse, 48, None);
    assert!(
        f.mean.iter().all(|&v| v >= 0.0),
        "never-negative history: {f:?}"
    );
    let negative: Vec<f64> = (0..200).map(|t| -50.0 + (t % 24) as f64).collect();
    check(&negative, 48, Some(24));
}

#[test]
fn huge_values_do_not_overflow() {
    let huge: Vec<f64> = (0..400).map(|t| 1e300 * (1.0 + (t % 24) as f64)).collect();
    let f = check(&huge, 48, Some(24));
    assert!(f.mean.iter().all(|&v| v > 1e299), "{f:?}");
    let mixed: Vec<f64> = (0..400)
        .map(|t| if t % 7 == 0 { 0.0 } else { 1e307 })
        .collect();
    check(&mixed, 48, None);
}

#[test]
fn gaps_are_tolerated() {
    let nan = f64::NAN;
    let mut history: Vec<f64> = (0..24 * 14)
        .map(|t| 100.0 + 10.0 * ((t % 24) as f64 / 24.0 * std::f64::consts::TAU).sin())
        .collect();
    for t in [0, 1, 50, 51, 52, 200] {
        history[t] = nan;
    }
    *history.last_mut().unwrap() = nan;
    let f = check(&history, 48, None);
    assert_eq!(f.season, Some(24));
    check(&[nan, 3.0, nan], 5, None);
    assert_eq!(
        forecast(&[nan, nan], 5, None, &ForecastConfig::default()),
        Err(Error::InvalidInput {
            reason: "no finite value to forecast from"
        })
    );
    assert!(forecast(&[], 5, None, &ForecastConfig::default()).is_err());
}

#[test]
fn noisy_linear_trend_is_continued() {
    // Disk usage growing 0.5% of capacity a day in hourly samples with noise.
    let mut next = noise(7);
    let line = |t: usize| 20.0 + 0.5 / 24.0 * t as f64;
    let history: Vec<f64> = (0..24 * 20).map(|t| line(t) + 0.3 * next()).collect();
    let f = check(&history, 24 * 7, None);
    for (h, v) in f.mean.iter().enumerate() {
        let expected = line(history.len() + h);
        assert!(
            (v - expected).abs() < 0.05 * expected,
            "step {h}: {v} vs {expected}"
        );
    }
    let last = f.mean.len() - 1;
    assert!(f.lower[last] < line(history.len() + last));
    assert!(f.upper[last] > line(history.len() + last));
}

#[test]
fn daily_season_keeps_its_shape() {
    let mut next = noise(11);
    let shape = |t: usize| 60.0 + 25.0 * ((t % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
    let history: Vec<f64> = (0..24 * 21).map(|t| shape(t) + 2.0 * next()).collect();
    let f = check(&history, 48, None);
    assert_eq!(f.season, Some(24));
    for (h, v) in f.mean.iter().enumerate() {
        let expected = shape(history.len() + h);
        assert!((v - expected).abs() < 5.0, "step {h}: {v} vs {expected}");
    }
    assert_eq!(find_season(&history, 100), Some(24));
}

#[test]
fn config_is_validated_and_parsed() {
    let bad = ForecastConfig { level: 1.0 };
    assert!(matches!(
        forecast(&[1.0, 2.0], 3, None, &bad),
        Err(Error::InvalidConfig { field: "level", .. })
    ));
    let parsed: ForecastConfig = serde_json::from_str(r#"{"level": 0.8}"#).unwrap();
    assert_eq!(parsed.level, 0.8);
    assert_eq!(
        serde_json::from_str::<ForecastConfig>("{}").unwrap(),
        ForecastConfig::default()
    );
    assert!(serde_json::from_str::<ForecastConfig>(r#"{"levels": 0.8}"#).is_err());
}

#[test]
fn wider_level_gives_wider_intervals() {
    let mut next = noise(5);
    let history: Vec<f64> = (0..300).map(|t| 50.0 + (t % 24) as f64 + next()).collect();
    let narrow = forecast(&history, 24, Some(24), &ForecastConfig { level: 0.5 }).unwrap();
    let wide = forecast(&history, 24, Some(24), &ForecastConfig { level: 0.99 }).unwrap();
    assert_eq!(narrow.mean, wide.mean);
    assert!(wide.upper[23] - wide.lower[23] > narrow.upper[23] - narrow.lower[23]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any history (gaps, zeros, negatives, any length) with any season either forecasts
    /// finite values inside widening intervals or refuses it as invalid input.
    #[test]
    fn any_history_forecasts_or_is_refused(
        history in proptest::collection::vec(
            proptest::prop_oneof![
                Just(f64::NAN),
                Just(0.0),
                -1e6..1e6f64,
            ],
            0..400,
        ),
        horizon in 0usize..60,
        season in proptest::option::of(0usize..200),
    ) {
        match forecast(&history, horizon, season, &ForecastConfig::default()) {
            Ok(_) => {
                check(&history, horizon, season);
            }
            Err(error) => proptest::prop_assert_eq!(error.code(), "invalid_input"),
        }
    }
}

#[test]
fn a_linear_trend_reaches_a_limit_when_the_line_does() {
    // A disk filling by 4 a step from 400, give or take 1, for 72 steps, with a gap: the line
    // reaches 1000 about 78 steps after the last (at 1000 = 400 + 4·t, t = 150).
    let mut next = noise(5);
    let mut history: Vec<f64> = (0..72).map(|t| 400.0 + 4.0 * t as f64 + next()).collect();
    history[30] = f64::NAN;
    let f = linear_trend(&history, 144, &ForecastConfig::default()).unwrap();
    assert_eq!(f.method, LINEAR_TREND);
    assert_eq!(f.mean.len(), 144);
    let crossing = f.mean.iter().position(|&v| v >= 1000.0).unwrap() + 1;
    assert!((76..=80).contains(&crossing), "{crossing}");
    for h in 0..144 {
        assert!(f.lower[h] < f.mean[h] && f.mean[h] < f.upper[h]);
        // The truth stays inside the interval, which widens with the distance.
        let truth = 400.0 + 4.0 * (71 + h + 1) as f64;
        assert!(f.lower[h] < truth && truth < f.upper[h], "step {h}");
    }
    assert!(f.upper[143] - f.lower[143] > f.upper[0] - f.lower[0]);
    // Too little to draw a line through.
    let err = linear_trend(&[1.0, f64::NAN, 2.0], 3, &ForecastConfig::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
}
