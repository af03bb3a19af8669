//! The streaming detector's contract: scores in `[0, 1]` with no look-ahead, robustness to odd
//! input, exact restore from a small versioned state, bounded feedback, and live sense (a
//! spike or a level shift fires, flat noise rarely does).

use proptest::prelude::*;
use sextant_analytics::anomaly::{
    Detector, DetectorConfig, Feedback, MODEL_VERSION, Seasonality, Verdict,
};

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

/// A deterministic pseudo-random number in `[-0.5, 0.5)` (xorshift).
fn noise(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

/// Five-minute points of a daily and weekly pattern with noise.
fn seasonal_series(points: usize) -> Vec<(i64, f64)> {
    let mut rng = 0x9e37_79b9_7f4a_7c15;
    (0..points as i64)
        .map(|i| {
            let t = 1_400_000_000_000 + i * 5 * MINUTE;
            let day = (t % DAY) as f64 / DAY as f64 * std::f64::consts::TAU;
            let weekend = if (t / DAY) % 7 < 2 { -20.0 } else { 0.0 };
            (
                t,
                100.0 + 30.0 * day.sin() + weekend + 4.0 * noise(&mut rng),
            )
        })
        .collect()
}

fn run(config: &DetectorConfig, series: &[(i64, f64)]) -> Vec<Verdict> {
    let mut detector = Detector::new(config);
    series
        .iter()
        .map(|&(t, v)| detector.update(config, t, v))
        .collect()
}

fn same(a: &Verdict, b: &Verdict) -> bool {
    let eq = |x: f64, y: f64| x == y || (x.is_nan() && y.is_nan());
    eq(a.score, b.score)
        && eq(a.expected, b.expected)
        && eq(a.lower, b.lower)
        && eq(a.upper, b.upper)
        && a.anomalous == b.anomalous
        && a.warming_up == b.warming_up
}

#[test]
fn restore_mid_stream_gives_identical_verdicts() {
    let config = DetectorConfig::default();
    let series = seasonal_series(6000);
    let whole = run(&config, &series);
    for cut in [1, 29, 30, 500, 3001] {
        let mut detector = Detector::new(&config);
        for &(t, v) in &series[..cut] {
            detector.update(&config, t, v);
        }
        let mut restored = Detector::decode(&detector.encode()).unwrap();
        assert_eq!(restored, detector);
        for (i, &(t, v)) in series.iter().enumerate().skip(cut) {
            let verdict = restored.update(&config, t, v);
            assert!(same(&verdict, &whole[i]), "cut {cut}, point {i}");
        }
    }
}

#[test]
fn state_stays_under_two_kib_after_a_long_seasonal_series() {
    let config = DetectorConfig::default();
    let mut detector = Detector::new(&config);
    let fresh = detector.encode().len();
    // Eight weeks of five-minute points.
    for (t, v) in seasonal_series(8 * 7 * 288) {
        detector.update(&config, t, v);
    }
    let encoded = detector.encode();
    assert!(encoded.len() <= 2048, "{} bytes", encoded.len());
    assert_eq!(encoded.len(), fresh, "the state has a fixed size");
}

#[test]
fn decode_refuses_other_versions_and_damage_without_panicking() {
    let config = DetectorConfig::default();
    let mut detector = Detector::new(&config);
    for (t, v) in seasonal_series(1000) {
        detector.update(&config, t, v);
    }
    let bytes = detector.encode();
    let mut other = bytes.clone();
    other[..4].copy_from_slice(&(MODEL_VERSION + 1).to_le_bytes());
    assert_eq!(
        Detector::decode(&other).unwrap_err().code(),
        "invalid_state"
    );
    assert!(Detector::decode(&[]).is_err());
    assert!(Detector::decode(&bytes[..bytes.len() - 1]).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Detector::decode(&longer).is_err());
    for i in 0..bytes.len() {
        for flip in [0x01, 0x80] {
            let mut damaged = bytes.clone();
            damaged[i] ^= flip;
            assert!(Detector::decode(&damaged).is_err(), "byte {i} flipped");
        }
    }
}

#[test]
fn no_look_ahead_a_prefix_scores_the_same() {
    let config = DetectorConfig::default();
    let series = seasonal_series(2000);
    let whole = run(&config, &series);
    let prefix = run(&config, &series[..1200]);
    assert!(prefix.iter().zip(&whole).all(|(a, b)| same(a, b)));
}

#[test]
fn odd_values_and_times_teach_nothing_and_stay_finite() {
    let config = DetectorConfig::default();
    let mut detector = Detector::new(&config);
    let mut t = 0;
    for i in 0..200 {
        t += MINUTE;
        detector.update(&config, t, 10.0 + (i % 3) as f64);
    }
    let points = detector.points();
    let before = detector.clone();
    for odd in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let verdict = detector.update(&config, t + MINUTE, odd);
        assert_eq!(verdict.score, 0.0);
        assert!(!verdict.anomalous);
    }
    // The same time again (a duplicate) and an earlier time are ignored.
    let verdict = detector.update(&config, t, 1e9);
    assert_eq!((verdict.score, verdict.anomalous), (0.0, false));
    detector.update(&config, t - 10 * MINUTE, 1e9);
    assert_eq!(detector, before);
    assert_eq!(detector.points(), points);

    // Huge values and irregular gaps never produce NaN.
    for (i, value) in [1e300, -1e300, f64::MAX, f64::MIN, 0.0, 1e-300, 5.0]
        .into_iter()
        .cycle()
        .take(500)
        .enumerate()
    {
        t += MINUTE * (1 + (i as i64 % 7) * 97);
        let verdict = detector.update(&config, t, value);
        assert!((0.0..=1.0).contains(&verdict.score), "{verdict:?}");
        assert!(!verdict.expected.is_nan() && !verdict.lower.is_nan() && !verdict.upper.is_nan());
        let (expected, lower, upper) = detector.expected(&config, t + MINUTE).unwrap();
        assert!(expected.is_finite() && lower <= expected && expected <= upper);
    }
    Detector::decode(&detector.encode()).unwrap();
}

#[test]
fn warm_up_scores_zero_without_a_band() {
    let config = DetectorConfig::default();
    let mut detector = Detector::new(&config);
    assert_eq!(detector.expected(&config, 0), None);
    for i in 0..config.warm_up_points as i64 {
        let verdict = detector.update(&config, i * MINUTE, (i * i) as f64);
        assert!(verdict.warming_up && verdict.score == 0.0 && !verdict.anomalous);
        assert!(verdict.expected.is_nan());
    }
    assert!(detector.expected(&config, 0).is_some());
}

#[test]
fn flat_noise_rarely_fires_and_a_spike_fires_at_once() {
    let config = DetectorConfig::default();
    let mut rng = 7;
    let mut detector = Detector::new(&config);
    let mut fired = 0;
    let points = 20_000;
    for i in 0..points {
        let verdict = detector.update(&config, i * MINUTE, 50.0 + noise(&mut rng));
        fired += usize::from(verdict.anomalous);
    }
    assert!(fired <= points as usize / 1000, "{fired} alarms on noise");
    let spike = detector.update(&config, points * MINUTE, 80.0);
    assert!(spike.anomalous, "{spike:?}");
    assert!(spike.upper < 80.0);
}

#[test]
fn a_new_series_is_quiet_after_warm_up() {
    // Ordinary noise right after warm-up raises nothing, whatever the seed.
    let config = DetectorConfig::default();
    for seed in 1..=8 {
        let mut rng = seed;
        let mut detector = Detector::new(&config);
        for i in 0..2000 {
            let verdict = detector.update(&config, i * MINUTE, 10.0 + noise(&mut rng));
            assert!(!verdict.anomalous, "seed {seed}, point {i}: {verdict:?}");
        }
    }
}

#[test]
fn a_young_series_flags_a_huge_spike() {
    // Twenty points after warm-up the likelihood is not calibrated yet; the extreme view still
    // sees a spike of 20 on noise of ±0.5.
    let config = DetectorConfig::default();
    for seed in 1..=8 {
        let mut rng = seed;
        let mut detector = Detector::new(&config);
        for i in 0..50 {
            detector.update(&config, i * MINUTE, 50.0 + noise(&mut rng));
        }
        let spike = detector.update(&config, 50 * MINUTE, 70.0);
        assert!(spike.anomalous, "seed {seed}: {spike:?}");
    }
}

#[test]
fn a_long_flat_series_that_moves_scores_high() {
    let config = DetectorConfig::default();
    let mut detector = Detector::new(&config);
    for i in 0..1000 {
        detector.update(&config, i * MINUTE, 5.0);
    }
    let moved = detector.update(&config, 1000 * MINUTE, 5.5);
    assert!(moved.anomalous && moved.score > 0.5, "{moved:?}");
}

#[test]
fn magnitude_and_offset_do_not_matter() {
    // The same noise and spike, scaled by tiny and huge factors and shifted far from zero:
    // the verdicts agree with the plain series.
    let config = DetectorConfig::default();
    let run_scaled = |scale: f64, offset: f64| {
        let mut rng = 3;
        let mut detector = Detector::new(&config);
        let mut fired = 0;
        for i in 0..5000 {
            let value = offset + scale * (50.0 + noise(&mut rng));
            fired += usize::from(detector.update(&config, i * MINUTE, value).anomalous);
        }
        // The band brackets the usual values and is about as wide as the noise.
        let (_, lower, upper) = detector.expected(&config, 5000 * MINUTE).unwrap();
        let usual = offset + scale * 50.0;
        assert!(lower < usual && usual < upper, "{lower} {usual} {upper}");
        assert!(upper - lower < scale * 10.0, "{lower} {upper}");
        let spike = detector.update(&config, 5000 * MINUTE, offset + scale * 80.0);
        Detector::decode(&detector.encode()).unwrap();
        (fired, spike.anomalous)
    };
    let (fired, spiked) = run_scaled(1.0, 0.0);
    assert!(fired <= 5 && spiked, "{fired} {spiked}");
    for (scale, offset) in [
        (1e-30, 0.0),
        (1e-300, 0.0),
        (1e30, 0.0),
        (1e120, 0.0),
        (1.0, 1e9),
    ] {
        let (f, s) = run_scaled(scale, offset);
        assert!(
            f <= 5 && s,
            "scale {scale} offset {offset}: {f} alarms, spike {s}"
        );
    }
}

#[test]
fn a_level_shift_fires_quickly_then_the_model_adapts() {
    let config = DetectorConfig::default();
    let mut rng = 11;
    let mut detector = Detector::new(&config);
    let mut t = 0;
    for _ in 0..5000 {
        t += MINUTE;
        detector.update(&config, t, 20.0 + noise(&mut rng));
    }
    let mut first_alarm = None;
    let mut late_alarms = 0;
    for i in 0..5000 {
        t += MINUTE;
        let verdict = detector.update(&config, t, 35.0 + noise(&mut rng));
        if verdict.anomalous {
            first_alarm.get_or_insert(i);
            if i > 1000 {
                late_alarms += 1;
            }
        }
    }
    assert!(first_alarm.is_some_and(|i| i < 5), "{first_alarm:?}");
    assert_eq!(late_alarms, 0, "still alarming long after the shift");
    let (expected, _, _) = detector.expected(&config, t + MINUTE).unwrap();
    assert!((expected - 35.0).abs() < 1.0, "{expected}");
}

#[test]
fn the_seasonal_band_follows_the_day() {
    let series = seasonal_series(14 * 288);
    let weekly = DetectorConfig {
        seasonality: Seasonality::Weekly,
        ..DetectorConfig::default()
    };
    for config in [DetectorConfig::default(), weekly] {
        let mut detector = Detector::new(&config);
        for &(t, v) in &series {
            detector.update(&config, t, v);
        }
        // Predict a whole next day: the band should follow the daily sine (amplitude 30).
        let last = series.last().unwrap().0;
        let mut worst: f64 = 0.0;
        for step in 1..=288 {
            let t = last + step * 5 * MINUTE;
            let day = (t % DAY) as f64 / DAY as f64 * std::f64::consts::TAU;
            let weekend = if (t / DAY) % 7 < 2 { -20.0 } else { 0.0 };
            let truth = 100.0 + 30.0 * day.sin() + weekend;
            let (expected, lower, upper) = detector.expected(&config, t).unwrap();
            assert!(lower < expected && expected < upper);
            worst = worst.max((expected - truth).abs());
        }
        assert!(
            worst < 10.0,
            "{:?}: seasonal forecast off by {worst}",
            config.seasonality
        );
    }
    // Without seasonality the forecast is flat and much further off.
    let flat = DetectorConfig {
        seasonality: Seasonality::None,
        ..DetectorConfig::default()
    };
    let verdicts = run(&flat, &series);
    let v = verdicts.last().unwrap();
    assert!(v.upper - v.lower > 0.0);
}

#[test]
fn feedback_moves_the_threshold_within_bounds() {
    let config = DetectorConfig::default();
    let mut detector = Detector::new(&config);
    let base = detector.effective_threshold(&config);
    assert_eq!(base, config.threshold);
    let (before, after) = detector.feedback(Feedback::FalsePositive);
    assert!(after < before);
    assert!(detector.effective_threshold(&config) > base);
    for _ in 0..100 {
        detector.feedback(Feedback::FalsePositive);
    }
    let floor = detector.sensitivity();
    assert!(floor > 0.0);
    assert!(detector.effective_threshold(&config) <= 1.0);
    let (before, after) = detector.feedback(Feedback::Confirmed);
    assert!(after > before && after - before < 0.5 * before);
    for _ in 0..100 {
        detector.feedback(Feedback::Confirmed);
    }
    assert!(detector.sensitivity() <= 1.5);
    assert!(detector.effective_threshold(&config) > 0.0);
    // Feedback is part of the saved state.
    let restored = Detector::decode(&detector.encode()).unwrap();
    assert_eq!(restored.sensitivity(), detector.sensitivity());
}

#[test]
fn config_validates_and_refuses_unknown_fields() {
    DetectorConfig::default().validate().unwrap();
    let parsed: DetectorConfig = serde_json::from_str(r#"{"threshold": 0.7}"#).unwrap();
    assert_eq!(parsed.threshold, 0.7);
    assert_eq!(parsed.seasonality, Seasonality::Auto);
    assert!(serde_json::from_str::<DetectorConfig>(r#"{"treshold": 0.7}"#).is_err());
    for bad in [
        DetectorConfig {
            threshold: 0.0,
            ..DetectorConfig::default()
        },
        DetectorConfig {
            level_alpha: f64::NAN,
            ..DetectorConfig::default()
        },
        DetectorConfig {
            long_points: 1.0,
            ..DetectorConfig::default()
        },
    ] {
        assert_eq!(bad.validate().unwrap_err().code(), "invalid_config");
    }
}

proptest! {
    #[test]
    fn scores_stay_in_unit_interval(values in prop::collection::vec(
        prop_oneof![any::<f64>(), -1e6f64..1e6, Just(0.0)], 1..300),
        steps in prop::collection::vec(-2i64..50, 1..300)) {
        let config = DetectorConfig::default();
        let mut detector = Detector::new(&config);
        let mut t = 0;
        for (value, step) in values.iter().zip(steps.iter().cycle()) {
            t += step * MINUTE;
            let verdict = detector.update(&config, t, *value);
            prop_assert!((0.0..=1.0).contains(&verdict.score));
            prop_assert!(!(verdict.warming_up && verdict.anomalous));
            // An anomaly is always outside the band it is shown with.
            let value = value.clamp(-1e150, 1e150);
            prop_assert!(
                !verdict.anomalous || value < verdict.lower || value > verdict.upper,
                "{value} inside {verdict:?}"
            );
        }
        let restored = Detector::decode(&detector.encode()).unwrap();
        prop_assert_eq!(restored, detector);
    }
}
