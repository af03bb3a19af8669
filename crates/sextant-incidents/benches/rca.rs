//! Root-cause ranking time: `cargo bench -p sextant-incidents --bench rca`. One incident with
//! 500 candidate series (100 services × 5 series, an hour of baseline and 15 minutes of
//! incident at one point every 10 s), a 100-service map and 20
//! log signals; prints the time per ranking (target: under 50 ms).

use std::time::Instant;

use sextant_incidents::rca::{CandidateSeries, LogSignal, RcaConfig, RcaInput, rank};
use sextant_incidents::topology::ServiceMap;

fn noise(i: u64) -> f64 {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5e47;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn main() {
    let names: Vec<String> = (0..100).map(|i| format!("svc-{i}")).collect();
    let map =
        ServiceMap::from_pairs((1..100).map(|i| (names[(i - 1) / 3].as_str(), names[i].as_str())));
    let metrics = [
        "cpu",
        "mem",
        "sextant.service.duration_p95",
        "sextant.service.error_rate",
        "sextant.service.request_rate",
    ];
    let mut series = Vec::new();
    let mut seed = 0u64;
    for (s, service) in names.iter().enumerate() {
        for metric in metrics {
            let level = 50.0 + 10.0 * noise(seed);
            seed += 1;
            let normal: Vec<f64> = (0..360).map(|i| level + noise(seed + i)).collect();
            seed += 360;
            let anomalous: Vec<(i64, f64)> = (0..90)
                .map(|i| {
                    let fault = if s == 42 && i > 10 { 30.0 } else { 0.0 };
                    (i as i64 * 10_000_000_000, level + noise(seed + i) + fault)
                })
                .collect();
            seed += 90;
            series.push(CandidateSeries {
                service: service.clone(),
                metric: metric.to_string(),
                normal,
                anomalous,
            });
        }
    }
    let logs: Vec<LogSignal> = (0..20)
        .map(|i| LogSignal {
            service: names[i * 5].clone(),
            template_id: i as u64,
            template: format!("error talking to <*> ({i})"),
            new: i % 2 == 0,
            ratio: 3.0,
            first_seen: 100_000_000_000,
        })
        .collect();
    let input = RcaInput {
        series: &series,
        logs: &logs,
        map: Some(&map),
        traces: &[],
    };
    let config = RcaConfig::default();
    let mut best = f64::MAX;
    let mut top = String::new();
    for _ in 0..20 {
        let started = Instant::now();
        let ranking = rank(&input, &config);
        best = best.min(started.elapsed().as_secs_f64());
        top = ranking.services[0].service.clone();
    }
    println!(
        "{} candidate series, {} services: {:.2} ms per ranking (best of 20); ranked first: {top}",
        series.len(),
        names.len(),
        best * 1e3
    );
}
