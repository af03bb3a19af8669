//! Run with `cargo bench -p sextant-analytics --bench detector`: feeds the streaming anomaly
//! detector a synthetic seasonal series and prints points per second and the state's size.
//!
//! One detector per series, 64 series of 20,000 five-minute points each (1.28 million
//! updates); the figure is the best of several rounds so one slow round (another process on
//! the core) does not decide it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sextant_analytics::anomaly::{Detector, DetectorConfig};

const SERIES: usize = 64;
const POINTS: usize = 20_000;
const ROUNDS: usize = 5;

fn series(seed: u64) -> Vec<(i64, f64)> {
    let mut state = seed | 1;
    (0..POINTS as i64)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let t = 1_400_000_000_000 + i * 300_000;
            let day = (t % 86_400_000) as f64 / 86_400_000.0 * std::f64::consts::TAU;
            (t, 100.0 + 30.0 * day.sin() + 5.0 * noise)
        })
        .collect()
}

fn main() {
    let config = DetectorConfig::default();
    let data: Vec<Vec<(i64, f64)>> = (0..SERIES as u64).map(|s| series(s + 1)).collect();
    let mut best = Duration::MAX;
    let mut anomalies = 0;
    let mut state_bytes = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        anomalies = 0;
        for points in &data {
            let mut detector = Detector::new(&config);
            for &(t, v) in points {
                anomalies += usize::from(black_box(detector.update(&config, t, v)).anomalous);
            }
            state_bytes = detector.encode().len();
        }
        best = best.min(started.elapsed());
    }
    let updates = SERIES * POINTS;
    println!(
        "detector: {updates} updates in {best:.2?} (best of {ROUNDS}): {:.0} points/s on one core, \
         {anomalies} anomalies, {state_bytes} bytes of state per series encoded, {} in memory",
        updates as f64 / best.as_secs_f64(),
        std::mem::size_of::<Detector>()
    );
}
