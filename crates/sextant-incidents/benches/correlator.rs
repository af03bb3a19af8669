//! Correlator throughput: `cargo bench -p sextant-incidents --bench correlator`. One core, one
//! tenant: a service map of 300 services, 60 faults at once (each a service and up to four of
//! its callers alerting from several pods, every 30 s for 20 minutes), with silences and an
//! inhibition rule to check; prints signals per second and the incidents made.

use std::collections::BTreeMap;
use std::time::Instant;

use sextant_incidents::correlator::{
    CorrelatorConfig, Decision, IncidentCorrelator, InhibitRule, Rules, Signal, Silence,
};
use sextant_incidents::matcher::Matcher;
use sextant_incidents::topology::ServiceMap;

const S: i64 = 1_000_000_000;

fn main() {
    // A tree: service i calls 3i+1, 3i+2, 3i+3.
    let names: Vec<String> = (0..300).map(|i| format!("svc-{i}")).collect();
    let pairs: Vec<(&str, &str)> = (0..300)
        .flat_map(|i| (1..=3).map(move |k| (i, 3 * i + k)))
        .filter(|&(_, j)| j < 300)
        .map(|(i, j)| (names[i].as_str(), names[j].as_str()))
        .collect();
    let map = ServiceMap::from_pairs(pairs);
    let silences: Vec<Silence> = (0..20)
        .map(|i| Silence {
            id: format!("s{i}"),
            matchers: vec![Matcher::parse(&format!("team=\"team-{i}\"")).unwrap()],
            starts_at: 0,
            ends_at: i64::MAX,
            comment: String::new(),
            created_by: "bench".into(),
        })
        .collect();
    let inhibitions = vec![InhibitRule {
        id: "node".into(),
        source: vec![Matcher::equal("alertname", "NodeDown")],
        target: vec![Matcher::equal("alertname", "ServiceDown")],
        equal: vec!["host".into()],
        comment: String::new(),
        created_by: "bench".into(),
    }];
    let rules = Rules {
        silences: &silences,
        inhibitions: &inhibitions,
        map: Some(&map),
    };

    // Faults at leaves far apart: services 100, 104, ..., 336 clipped to the tree.
    let mut signals = Vec::new();
    for round in 0..40i64 {
        for fault in 0..60usize {
            let root = 100 + fault * 3;
            let mut services = vec![root];
            let mut at = root;
            while at > 0 && services.len() < 5 {
                at = (at - 1) / 3;
                services.push(at);
            }
            for (depth, &service) in services.iter().enumerate().take(3) {
                for pod in 0..4 {
                    let fingerprint = format!("f{fault}/s{service}/p{pod}");
                    signals.push(Signal {
                        event_id: format!("{fingerprint}@{round}"),
                        fingerprint,
                        time: (round * 30 + depth as i64) * S,
                        kind: "alert".into(),
                        source: "bench".into(),
                        service: names[service].clone(),
                        severity: "critical".into(),
                        title: if depth == 0 {
                            "HighLatency"
                        } else {
                            "HighErrorRate"
                        }
                        .into(),
                        resolved: false,
                        labels: BTreeMap::from([
                            ("pod".to_string(), pod.to_string()),
                            ("host".to_string(), format!("host-{}", service % 40)),
                        ]),
                    });
                }
            }
        }
    }
    signals.sort_by_key(|s| s.time);
    let config = CorrelatorConfig::default();
    let mut best = f64::MAX;
    let mut opened = 0;
    for _ in 0..5 {
        let mut correlator = IncidentCorrelator::new();
        let started = Instant::now();
        let mut n = 0;
        for signal in &signals {
            if let (Decision::Opened { .. }, _) = correlator.process(&config, rules, signal) {
                n += 1;
            }
        }
        best = best.min(started.elapsed().as_secs_f64());
        opened = n;
    }
    println!(
        "{} signals in {:.1} ms: {:.0} signals/s on one core; {opened} incidents opened",
        signals.len(),
        best * 1e3,
        signals.len() as f64 / best
    );
}
