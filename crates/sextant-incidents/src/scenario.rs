//! Correlation scenarios: a service map, faults that make alerts fire (and repeat, flap,
//! resolve), silences and inhibition rules, and what should come out — read from TOML, expanded
//! into notifications, and scored (alert-to-incident reduction, purity, faults split).
//!
//! The same files drive the offline check (the correlator alone) and the live one (the real
//! API, with the map sent as traces). Format, with times in seconds from the scenario's start:
//!
//! ```toml
//! description = "a database slows; its callers alert"
//! edges = ["checkout>postgres", "cart>postgres"]   # caller>callee
//! duration_seconds = 3600                          # ticks run until then
//!
//! [[alert]]
//! fault = "db-slow"          # the true fault, for scoring
//! title = "HighLatency"
//! service = "cart"
//! severity = "warning"       # default warning
//! labels = { team = "web" }  # optional
//! start = 0
//! every = 60                 # a repeat every this many seconds
//! until = 900                # the last firing notification
//! resolve = true             # a `resolved` one follows (default true)
//! instances = 1              # distinct fingerprints (label `instance` = 1, 2, ...)
//! flap_every = 0             # if > 0: alternates firing and resolved at this period
//!
//! [[silence]]
//! matchers = ['service="search"']
//! start = 0
//! end = 1800
//! comment = "planned maintenance"
//!
//! [[inhibit]]
//! source = ['alertname="NodeDown"']
//! target = ['alertname="ServiceDown"']
//! equal = ["host"]
//!
//! [[metric]]                  # optional: a series for the root-cause ranking
//! service = "postgres"
//! name = "process.cpu.utilization"
//! normal = 20.0
//! noise = 1.0                # a fixed wobble of this size
//! fault = 95.0               # the level from `start` to `until`
//! start = 0
//! until = 1200
//!
//! [expect]
//! incidents = 1              # optional: exactly this many
//! suppressed = ["noise"]     # faults whose alerts must open no incident
//! root_causes = { db-slow = "postgres" }   # the service ranked first for a fault's incident
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::correlator::{
    CorrelatorConfig, Decision, IncidentCorrelator, InhibitRule, Rules, Signal, Silence,
};
use crate::matcher::Matcher;
use crate::topology::ServiceMap;

const NANOS_PER_SECOND: i64 = 1_000_000_000;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub description: String,
    #[serde(default)]
    pub edges: Vec<String>,
    pub duration_seconds: i64,
    #[serde(default, rename = "alert")]
    pub alerts: Vec<AlertSpec>,
    #[serde(default, rename = "silence")]
    pub silences: Vec<SilenceSpec>,
    #[serde(default, rename = "inhibit")]
    pub inhibitions: Vec<InhibitSpec>,
    #[serde(default, rename = "metric")]
    pub metrics: Vec<MetricSpec>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    pub fault: String,
    pub title: String,
    #[serde(default)]
    pub service: String,
    #[serde(default = "warning")]
    pub severity: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub start: i64,
    pub every: i64,
    pub until: i64,
    #[serde(default = "yes")]
    pub resolve: bool,
    #[serde(default = "one")]
    pub instances: u32,
    #[serde(default)]
    pub flap_every: i64,
}

fn warning() -> String {
    "warning".into()
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    pub matchers: Vec<Matcher>,
    pub start: i64,
    pub end: i64,
    #[serde(default)]
    pub comment: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitSpec {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    #[serde(default)]
    pub equal: Vec<String>,
}

/// A metric series of a service: `normal` give or take `noise` (a fixed pseudo-random
/// wobble), at `fault` from `start` to `until` (seconds; repeat the entry for more windows),
/// one point a minute from an hour before the scenario starts until it ends.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub service: String,
    pub name: String,
    pub normal: f64,
    #[serde(default)]
    pub noise: f64,
    pub fault: f64,
    pub start: i64,
    pub until: i64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub incidents: Option<usize>,
    #[serde(default)]
    pub suppressed: Vec<String>,
    /// Per fault, the service its incident's root-cause ranking must put first.
    #[serde(default)]
    pub root_causes: BTreeMap<String, String>,
}

/// A wobble in [-1, 1) that is the same on every run.
fn wobble(i: u64) -> f64 {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5e47;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// A scenario's metric series: (service, name, points of (nanoseconds, value)).
pub type MetricSeries = (String, String, Vec<(i64, f64)>);

/// One notification of a scenario: when, and for which fault.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// Seconds from the scenario's start.
    pub at: i64,
    pub fault: String,
    pub signal: Signal,
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        for alert in &scenario.alerts {
            if alert.every <= 0 || alert.until < alert.start || alert.instances == 0 {
                return Err(format!(
                    "alert `{}`: needs every > 0, until >= start, instances >= 1",
                    alert.title
                ));
            }
        }
        for edge in &scenario.edges {
            if edge.split_once('>').is_none() {
                return Err(format!("edge `{edge}`: write it `caller>callee`"));
            }
        }
        Ok(scenario)
    }

    /// The `(caller, callee)` pairs of the map.
    pub fn edge_pairs(&self) -> Vec<(&str, &str)> {
        self.edges
            .iter()
            .filter_map(|e| e.split_once('>'))
            .map(|(a, b)| (a.trim(), b.trim()))
            .collect()
    }

    pub fn map(&self) -> ServiceMap {
        ServiceMap::from_pairs(self.edge_pairs())
    }

    /// The silences, with times `base` nanoseconds plus their offsets.
    pub fn silences(&self, base: i64) -> Vec<Silence> {
        self.silences
            .iter()
            .enumerate()
            .map(|(i, s)| Silence {
                id: format!("silence-{}", i + 1),
                matchers: s.matchers.clone(),
                starts_at: base + s.start * NANOS_PER_SECOND,
                ends_at: base + s.end * NANOS_PER_SECOND,
                comment: s.comment.clone(),
                created_by: "scenario".into(),
            })
            .collect()
    }

    pub fn inhibitions(&self) -> Vec<InhibitRule> {
        self.inhibitions
            .iter()
            .enumerate()
            .map(|(i, r)| InhibitRule {
                id: format!("inhibit-{}", i + 1),
                source: r.source.clone(),
                target: r.target.clone(),
                equal: r.equal.clone(),
                comment: String::new(),
                created_by: "scenario".into(),
            })
            .collect()
    }

    /// The metric series as (service, name, points of (nanoseconds, value)), one point a
    /// minute from an hour before `base` until the scenario ends; entries with the same
    /// service and name make one series with several fault windows.
    pub fn metric_series(&self, base: i64) -> Vec<MetricSeries> {
        let mut grouped: BTreeMap<(String, String), Vec<&MetricSpec>> = BTreeMap::new();
        for spec in &self.metrics {
            grouped
                .entry((spec.service.clone(), spec.name.clone()))
                .or_default()
                .push(spec);
        }
        grouped
            .into_iter()
            .enumerate()
            .map(|(n, ((service, name), specs))| {
                let points = (-3600..=self.duration_seconds)
                    .step_by(60)
                    .enumerate()
                    .map(|(i, at)| {
                        let faulty = specs.iter().find(|s| (s.start..=s.until).contains(&at));
                        let spec = specs[0];
                        let level = faulty.map_or(spec.normal, |s| s.fault);
                        let seed = (n as u64) << 32 | i as u64;
                        (
                            base + at * NANOS_PER_SECOND,
                            level + spec.noise * wobble(seed),
                        )
                    })
                    .collect();
                (service, name, points)
            })
            .collect()
    }

    /// Every notification in time order (file order among equal times), with signal times
    /// `base` nanoseconds plus their offsets.
    pub fn notifications(&self, base: i64) -> Vec<Notification> {
        let mut out = Vec::new();
        for alert in &self.alerts {
            for instance in 1..=alert.instances {
                let mut labels = alert.labels.clone();
                labels.insert("alertname".into(), alert.title.clone());
                if !alert.service.is_empty() {
                    labels.insert("service".into(), alert.service.clone());
                }
                if alert.instances > 1 {
                    labels.insert("instance".into(), instance.to_string());
                }
                let fingerprint = format!(
                    "{}/{}/{}/{instance}",
                    alert.fault, alert.title, alert.service
                );
                let mut push = |at: i64, resolved: bool| {
                    out.push(Notification {
                        at,
                        fault: alert.fault.clone(),
                        signal: Signal {
                            event_id: format!("{fingerprint}@{at}"),
                            fingerprint: fingerprint.clone(),
                            time: base + at * NANOS_PER_SECOND,
                            kind: "alert".into(),
                            source: "scenario".into(),
                            service: alert.service.clone(),
                            severity: alert.severity.clone(),
                            title: alert.title.clone(),
                            resolved,
                            labels: labels.clone(),
                        },
                    });
                };
                let mut at = alert.start;
                while at <= alert.until {
                    let resolved =
                        alert.flap_every > 0 && (at - alert.start) / alert.flap_every % 2 == 1;
                    push(at, resolved);
                    at += alert.every;
                }
                if alert.resolve {
                    push(at, true);
                }
            }
        }
        out.sort_by_key(|n| n.at);
        out
    }
}

/// How one scenario came out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Notifications sent (all of them, suppressed ones included).
    pub notifications: usize,
    /// Of them, silenced or inhibited.
    pub suppressed: usize,
    pub incidents: usize,
    /// Per incident: notifications of each fault.
    pub incident_faults: BTreeMap<u64, BTreeMap<String, usize>>,
    /// Problems with what was expected (empty: as expected).
    pub failures: Vec<String>,
}

impl Outcome {
    /// `1 - incidents / notifications`.
    pub fn reduction(&self) -> f64 {
        if self.notifications == 0 {
            0.0
        } else {
            1.0 - self.incidents as f64 / self.notifications as f64
        }
    }

    /// Per incident, the share of its notifications that belong to its main fault.
    pub fn purities(&self) -> Vec<f64> {
        self.incident_faults
            .values()
            .map(|faults| {
                let total: usize = faults.values().sum();
                let main = faults.values().copied().max().unwrap_or(0);
                main as f64 / total.max(1) as f64
            })
            .collect()
    }
}

/// Scores `decisions` (one per notification, in order) against the scenario's truth.
pub fn score(
    scenario: &Scenario,
    notifications: &[Notification],
    decisions: &[Decision],
) -> Outcome {
    let mut outcome = Outcome {
        notifications: notifications.len(),
        ..Outcome::default()
    };
    let mut fault_incidents: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for (notification, decision) in notifications.iter().zip(decisions) {
        let incident = match decision {
            Decision::Opened { incident, .. }
            | Decision::Joined { incident, .. }
            | Decision::Deduplicated { incident, .. }
            | Decision::Resolved { incident }
            | Decision::Flapping { incident, .. } => Some(*incident),
            Decision::Silenced { .. } | Decision::Inhibited { .. } => {
                outcome.suppressed += 1;
                None
            }
            Decision::Ignored { .. } => None,
        };
        if let Some(incident) = incident {
            *outcome
                .incident_faults
                .entry(incident)
                .or_default()
                .entry(notification.fault.clone())
                .or_default() += 1;
            fault_incidents
                .entry(&notification.fault)
                .or_default()
                .insert(incident);
        }
    }
    outcome.incidents = outcome.incident_faults.len();
    for (fault, incidents) in &fault_incidents {
        if scenario.expect.suppressed.iter().any(|f| f == fault) {
            outcome.failures.push(format!(
                "fault `{fault}` should be suppressed but is in incidents {incidents:?}"
            ));
        } else if incidents.len() > 1 {
            outcome.failures.push(format!(
                "fault `{fault}` is split across incidents {incidents:?}"
            ));
        }
    }
    for (incident, faults) in &outcome.incident_faults {
        if faults.len() > 1 {
            outcome.failures.push(format!(
                "incident {incident} mixes faults {:?}",
                faults.keys().collect::<Vec<_>>()
            ));
        }
    }
    if let Some(expected) = scenario.expect.incidents
        && expected != outcome.incidents
    {
        outcome.failures.push(format!(
            "{} incidents, expected {expected}",
            outcome.incidents
        ));
    }
    outcome
}

/// Runs `scenario` through a fresh correlator (ticking every 30 s of scenario time) and scores
/// it: the offline check of the correlation rules.
pub fn run_offline(scenario: &Scenario, config: &CorrelatorConfig) -> Outcome {
    let base = 1_700_000_000 * NANOS_PER_SECOND;
    let map = scenario.map();
    let silences = scenario.silences(base);
    let inhibitions = scenario.inhibitions();
    let rules = Rules {
        silences: &silences,
        inhibitions: &inhibitions,
        map: Some(&map),
    };
    let notifications = scenario.notifications(base);
    let mut correlator = IncidentCorrelator::new();
    let mut decisions = Vec::with_capacity(notifications.len());
    let tick = 30;
    let mut next_tick = 0;
    for notification in &notifications {
        while next_tick <= notification.at {
            correlator.tick(config, base + next_tick * NANOS_PER_SECOND);
            next_tick += tick;
        }
        decisions.push(correlator.process(config, rules, &notification.signal).0);
    }
    while next_tick <= scenario.duration_seconds {
        correlator.tick(config, base + next_tick * NANOS_PER_SECOND);
        next_tick += tick;
    }
    let mut outcome = score(scenario, &notifications, &decisions);
    if let Some(open) = correlator.open_incidents().next() {
        outcome.failures.push(format!(
            "incident {} still open at the end ({} s)",
            open.id, scenario.duration_seconds
        ));
    }
    outcome
}
