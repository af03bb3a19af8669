//! [`IncidentCorrelator`]: folds a tenant's alerts and anomalies into incidents, one signal at a
//! time — deduplicated by fingerprint, silenced, inhibited, grouped by time, distance on the
//! service map and similarity — and records why each signal went where it did.

mod score;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sextant_model::Event;

use crate::matcher::{Matcher, all_match};
use crate::topology::ServiceMap;
use crate::{Error, Result};

pub use score::JoinReason;

const NANOS_PER_SECOND: i64 = 1_000_000_000;
/// Most timeline entries an incident keeps; later ones are counted, not kept.
pub const MAX_TIMELINE: usize = 1_000;
/// Most members an incident takes; a signal that would join a full incident opens a new one.
pub const MAX_MEMBERS: usize = 10_000;
/// Status changes remembered per fingerprint (for flapping).
const MAX_CHANGES: usize = 16;

/// How signals are grouped and when incidents close. One configuration for every tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelatorConfig {
    /// A signal can join an incident that opened, and whose members were active, at most this
    /// long before (or after) it: an incident takes new signals for its first quarter of an
    /// hour; later trouble is its own incident (merge them by hand when they are one).
    /// Seconds; default 900.
    pub group_window_seconds: u64,
    /// Score in `[0, 1]` a signal needs to join an incident; below it, it opens one. Default 0.5.
    pub join_threshold: f64,
    /// Services further apart than this many edges on the map are not related. Default 3.
    pub max_hops: usize,
    /// A new signal joins an incident only if it began at most this long after the newest
    /// start in it (a member joining or firing again). One fault's effects spread through the
    /// map within minutes; trouble that starts later, while the incident's signals only go on
    /// firing, is new and opens its own incident. Seconds; default 300.
    pub spread_window_seconds: u64,
    /// An incident resolves when all its members are resolved and none changed for this long.
    /// Seconds; default 300.
    pub resolve_quiet_seconds: u64,
    /// A member that never sends `resolved` (capacity warnings, one-shot events) counts as
    /// resolved when not seen for this long. Seconds; default 3600.
    pub member_timeout_seconds: u64,
    /// A fingerprint that changes status this many times within `flap_window_seconds` is
    /// flapping: it stays in its incident and holds it open. Default 4.
    pub flap_changes: usize,
    /// Seconds; default 1800.
    pub flap_window_seconds: u64,
}

impl Default for CorrelatorConfig {
    fn default() -> CorrelatorConfig {
        CorrelatorConfig {
            group_window_seconds: 900,
            join_threshold: 0.5,
            max_hops: 3,
            spread_window_seconds: 300,
            resolve_quiet_seconds: 300,
            member_timeout_seconds: 3600,
            flap_changes: 4,
            flap_window_seconds: 1800,
        }
    }
}

impl CorrelatorConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason| Err(Error::InvalidConfig { field, reason });
        if self.group_window_seconds == 0 {
            return bad("group_window_seconds", "must be at least 1");
        }
        if !(self.join_threshold > 0.0 && self.join_threshold <= 1.0) {
            return bad("join_threshold", "must be in (0, 1]");
        }
        if self.flap_changes < 2 {
            return bad("flap_changes", "must be at least 2");
        }
        if self.flap_window_seconds == 0 {
            return bad("flap_window_seconds", "must be at least 1");
        }
        Ok(())
    }
}

/// What the correlator is told: one alert notification or anomaly, as stored in `events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub event_id: String,
    pub fingerprint: String,
    /// Nanoseconds since the Unix epoch.
    pub time: i64,
    /// `alert`, `anomaly` or `capacity`.
    pub kind: String,
    pub source: String,
    pub service: String,
    pub severity: String,
    pub title: String,
    pub resolved: bool,
    pub labels: BTreeMap<String, String>,
}

impl Signal {
    pub fn from_event(event: &Event) -> Signal {
        Signal {
            event_id: event.id.clone(),
            fingerprint: event.fingerprint.clone(),
            time: event.time_unix_nano,
            kind: event.kind.as_str().to_owned(),
            source: event.source.clone(),
            service: event.service.clone(),
            severity: event.severity.clone(),
            title: event.title.clone(),
            resolved: event.status == "resolved",
            labels: event.labels.clone(),
        }
    }

    /// The labels silences and inhibition rules see: the signal's own, plus `service`,
    /// `severity`, `source`, `kind` and `alertname` (the title) unless it has them.
    pub fn match_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        for (name, value) in [
            ("service", &self.service),
            ("severity", &self.severity),
            ("source", &self.source),
            ("kind", &self.kind),
            ("alertname", &self.title),
        ] {
            if !value.is_empty() {
                labels
                    .entry(name.to_owned())
                    .or_insert_with(|| value.clone());
            }
        }
        labels
    }
}

/// A silence or maintenance window: signals matching all `matchers` between `starts_at` and
/// `ends_at` open no incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    /// Nanoseconds since the Unix epoch, inclusive.
    pub starts_at: i64,
    /// Exclusive.
    pub ends_at: i64,
    pub comment: String,
    pub created_by: String,
}

impl Silence {
    pub fn covers(&self, time: i64, labels: &BTreeMap<String, String>) -> bool {
        (self.starts_at..self.ends_at).contains(&time) && all_match(&self.matchers, labels)
    }
}

/// While a signal matching `source` fires, signals matching `target` with the same values of
/// the `equal` labels are suppressed (Alertmanager's inhibition).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InhibitRule {
    pub id: String,
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    #[serde(default)]
    pub equal: Vec<String>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub created_by: String,
}

/// The rules a signal is checked against.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rules<'a> {
    pub silences: &'a [Silence],
    pub inhibitions: &'a [InhibitRule],
    pub map: Option<&'a ServiceMap>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    Acknowledged,
    Resolved,
    /// Folded into another incident (`merged_into`).
    Merged,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Acknowledged => "acknowledged",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Merged => "merged",
        }
    }

    pub fn is_open(self) -> bool {
        matches!(self, IncidentStatus::Open | IncidentStatus::Acknowledged)
    }
}

/// One fingerprint in an incident: the alert (or anomalous series) and its notifications.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub fingerprint: String,
    /// The newest event of this fingerprint.
    pub event_id: String,
    pub kind: String,
    pub source: String,
    pub service: String,
    pub title: String,
    pub severity: String,
    pub labels: BTreeMap<String, String>,
    pub resolved: bool,
    pub flapping: bool,
    /// Nanoseconds since the Unix epoch.
    pub first_seen: i64,
    pub last_seen: i64,
    /// When it last began firing: `first_seen`, or the time it fired again after resolving.
    /// (0 in incidents saved before it was kept: `first_seen` then.)
    #[serde(default)]
    pub onset: i64,
    /// Notifications received (repeats included).
    pub count: u64,
    /// Why it is in this incident.
    pub reason: JoinReason,
}

/// Something that happened to an incident, and who did it (`sextant` for the correlator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Nanoseconds since the Unix epoch.
    pub at: i64,
    pub actor: String,
    /// `opened`, `joined`, `resolved_member`, `fired_again`, `flapping`, `acknowledged`,
    /// `resolved`, `merged`, `merged_into`, `split`, `split_from`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u64,
    pub status: IncidentStatus,
    pub title: String,
    /// The highest severity of its members.
    pub severity: String,
    /// Nanoseconds since the Unix epoch: the first member's time.
    pub opened_at: i64,
    /// The newest member activity.
    pub updated_at: i64,
    pub resolved_at: Option<i64>,
    pub services: BTreeSet<String>,
    pub members: Vec<Member>,
    pub timeline: Vec<TimelineEntry>,
    /// Timeline entries dropped past [`MAX_TIMELINE`].
    pub timeline_dropped: u64,
    /// Notifications folded into this incident (repeats included).
    pub notifications: u64,
    pub acknowledged_by: Option<String>,
    pub merged_into: Option<u64>,
}

impl Incident {
    /// An open incident with no members yet.
    pub fn new(id: u64, title: &str, severity: &str, time: i64) -> Incident {
        Incident {
            id,
            status: IncidentStatus::Open,
            title: title.to_owned(),
            severity: severity.to_owned(),
            opened_at: time,
            updated_at: time,
            resolved_at: None,
            services: BTreeSet::new(),
            members: Vec::new(),
            timeline: Vec::new(),
            timeline_dropped: 0,
            notifications: 0,
            acknowledged_by: None,
            merged_into: None,
        }
    }

    fn log(
        &mut self,
        at: i64,
        actor: &str,
        action: &str,
        fingerprint: Option<&str>,
        detail: String,
    ) {
        if self.timeline.len() >= MAX_TIMELINE {
            self.timeline_dropped += 1;
            return;
        }
        self.timeline.push(TimelineEntry {
            at,
            actor: actor.to_owned(),
            action: action.to_owned(),
            fingerprint: fingerprint.map(str::to_owned),
            detail,
        });
    }

    fn add_member(&mut self, member: Member) {
        if severity_rank(&member.severity) > severity_rank(&self.severity) {
            self.severity = member.severity.clone();
        }
        if !member.service.is_empty() {
            self.services.insert(member.service.clone());
        }
        self.opened_at = self.opened_at.min(member.first_seen);
        self.updated_at = self.updated_at.max(member.last_seen);
        self.notifications += member.count;
        self.members.push(member);
    }

    fn recompute(&mut self) {
        self.services = self
            .members
            .iter()
            .filter(|m| !m.service.is_empty())
            .map(|m| m.service.clone())
            .collect();
        self.severity = self
            .members
            .iter()
            .map(|m| m.severity.as_str())
            .max_by_key(|s| severity_rank(s))
            .unwrap_or("info")
            .to_owned();
        self.opened_at = self.members.iter().map(|m| m.first_seen).min().unwrap_or(0);
        self.updated_at = self.members.iter().map(|m| m.last_seen).max().unwrap_or(0);
        self.notifications = self.members.iter().map(|m| m.count).sum();
    }

    /// The newest time one of its members began firing.
    pub fn latest_onset(&self) -> i64 {
        self.members
            .iter()
            .map(|m| m.onset.max(m.first_seen))
            .max()
            .unwrap_or(self.opened_at)
    }

    /// A sentence or two on what the incident holds and why its members belong together.
    pub fn explanation(&self) -> String {
        let firing = self.members.iter().filter(|m| !m.resolved).count();
        let services: Vec<&str> = self.services.iter().map(String::as_str).collect();
        let mut text = format!(
            "{} signal{} ({} notification{}, {} firing) from {}.",
            self.members.len(),
            plural(self.members.len() as u64),
            self.notifications,
            plural(self.notifications),
            firing,
            match services.len() {
                0 => "no named service".to_owned(),
                1 => format!("service {}", services[0]),
                n => format!("{n} services: {}", services.join(", ")),
            }
        );
        let mut rules: BTreeMap<&str, usize> = BTreeMap::new();
        for member in &self.members[1.min(self.members.len())..] {
            *rules.entry(member.reason.rule.as_str()).or_default() += 1;
        }
        if !rules.is_empty() {
            let parts: Vec<String> = rules
                .iter()
                .map(|(rule, n)| format!("{n} by {}", rule.replace('_', " ")))
                .collect();
            text.push_str(&format!(" Grouped: {}.", parts.join(", ")));
        }
        text
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `critical` > `error` > `warning` > `info` > anything else.
pub fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" | "page" | "fatal" => 4,
        "error" | "high" => 3,
        "warning" | "warn" | "medium" => 2,
        "info" | "low" => 1,
        _ => 0,
    }
}

/// What happened to one signal; stored on its event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    /// It opened a new incident.
    Opened { incident: u64, reason: JoinReason },
    /// It joined an open incident.
    Joined { incident: u64, reason: JoinReason },
    /// A repeat of a fingerprint already in an incident: count and last seen updated.
    Deduplicated { incident: u64, count: u64 },
    /// Its fingerprint resolved within its incident.
    Resolved { incident: u64 },
    /// It keeps changing status; it stays in its incident.
    Flapping { incident: u64, changes: usize },
    /// A silence or maintenance window covers it. `repeat`: its fingerprint was already
    /// suppressed and still fires (the audit trail records the first time only).
    Silenced {
        silence: String,
        comment: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        repeat: bool,
    },
    /// A firing signal matching an inhibition rule's source suppresses it.
    Inhibited {
        rule: String,
        by_fingerprint: String,
        by_title: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        repeat: bool,
    },
    /// Nothing to do (a resolution of something in no open incident).
    Ignored { reason: String },
}

/// What the correlator remembers of a fingerprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct AlertState {
    labels: BTreeMap<String, String>,
    title: String,
    resolved: bool,
    suppressed: bool,
    last_seen: i64,
    /// Times of the last status changes, oldest first.
    changes: Vec<i64>,
    incident: Option<u64>,
}

/// Running totals, for `/metrics` and the API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Signals processed (every notification, repeats included).
    pub signals: u64,
    /// Of them, suppressed by a silence or an inhibition.
    pub suppressed: u64,
    /// Of them, repeats of a fingerprint already in an incident.
    pub deduplicated: u64,
    /// Incidents opened.
    pub incidents: u64,
}

impl Counters {
    /// `1 - incidents / signals`: the share of notifications that did not become an incident.
    pub fn reduction(&self) -> f64 {
        if self.signals == 0 {
            0.0
        } else {
            1.0 - self.incidents as f64 / self.signals as f64
        }
    }
}

/// One tenant's correlation state: the open incidents and the fingerprints it has seen.
/// Serialisable, so it is saved with what it decided and restored on start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IncidentCorrelator {
    next_incident: u64,
    alerts: BTreeMap<String, AlertState>,
    open: BTreeMap<u64, Incident>,
    pub counters: Counters,
}

const SEXTANT: &str = "sextant";

impl IncidentCorrelator {
    pub fn new() -> IncidentCorrelator {
        IncidentCorrelator {
            next_incident: 1,
            ..IncidentCorrelator::default()
        }
    }

    fn allocate_id(&mut self) -> u64 {
        let id = self.next_incident.max(1);
        self.next_incident = id + 1;
        id
    }

    /// The open (and acknowledged) incidents.
    pub fn open_incidents(&self) -> impl Iterator<Item = &Incident> {
        self.open.values()
    }

    pub fn open_incident(&self, id: u64) -> Option<&Incident> {
        self.open.get(&id)
    }

    /// Takes one signal; returns what became of it and the open incident it changed, if any
    /// (to store: [`IncidentCorrelator::open_incident`] has it).
    pub fn process(
        &mut self,
        config: &CorrelatorConfig,
        rules: Rules<'_>,
        signal: &Signal,
    ) -> (Decision, Option<u64>) {
        self.counters.signals += 1;
        let labels = signal.match_labels();
        let flap_window = secs(config.flap_window_seconds);
        let alert = self
            .alerts
            .entry(signal.fingerprint.clone())
            .or_insert_with(|| AlertState {
                labels: labels.clone(),
                title: signal.title.clone(),
                resolved: true,
                suppressed: false,
                last_seen: signal.time,
                changes: Vec::new(),
                incident: None,
            });
        let changed = alert.resolved != signal.resolved;
        // Suppressed before and still firing: a suppression again is a repeat.
        let repeat = alert.suppressed && !changed;
        if changed {
            alert.changes.push(signal.time);
            if alert.changes.len() > MAX_CHANGES {
                alert.changes.remove(0);
            }
        }
        let recent_changes = alert
            .changes
            .iter()
            .filter(|&&t| t > signal.time - flap_window)
            .count();
        let flapping = recent_changes >= config.flap_changes;
        alert.labels = labels.clone();
        alert.title = signal.title.clone();
        alert.resolved = signal.resolved;
        alert.last_seen = alert.last_seen.max(signal.time);

        if let Some(id) = alert.incident
            && let Some(incident) = self.open.get_mut(&id)
            && let Some(member) = incident
                .members
                .iter_mut()
                .find(|m| m.fingerprint == signal.fingerprint)
        {
            member.count += 1;
            member.event_id = signal.event_id.clone();
            member.last_seen = member.last_seen.max(signal.time);
            member.resolved = signal.resolved;
            let newly_flapping = flapping && !member.flapping;
            member.flapping = flapping;
            // Firing again is a new start (a flapping one's is only noise).
            if changed && !signal.resolved && !flapping {
                member.onset = signal.time;
            }
            let count = member.count;
            incident.notifications += 1;
            incident.updated_at = incident.updated_at.max(signal.time);
            let fingerprint = Some(signal.fingerprint.as_str());
            let decision = if newly_flapping {
                incident.log(
                    signal.time,
                    SEXTANT,
                    "flapping",
                    fingerprint,
                    format!(
                        "{} changed status {recent_changes} times within {}",
                        signal.title,
                        duration_text(config.flap_window_seconds)
                    ),
                );
                Decision::Flapping {
                    incident: id,
                    changes: recent_changes,
                }
            } else if changed && signal.resolved {
                incident.log(
                    signal.time,
                    SEXTANT,
                    "resolved_member",
                    fingerprint,
                    format!("{} resolved", signal.title),
                );
                Decision::Resolved { incident: id }
            } else if changed {
                incident.log(
                    signal.time,
                    SEXTANT,
                    "fired_again",
                    fingerprint,
                    format!("{} fired again", signal.title),
                );
                Decision::Deduplicated {
                    incident: id,
                    count,
                }
            } else {
                self.counters.deduplicated += 1;
                Decision::Deduplicated {
                    incident: id,
                    count,
                }
            };
            return (decision, Some(id));
        }
        alert.incident = None;
        if signal.resolved {
            return (
                Decision::Ignored {
                    reason: "resolved, and in no open incident".into(),
                },
                None,
            );
        }

        if let Some(silence) = rules
            .silences
            .iter()
            .find(|s| s.covers(signal.time, &labels))
        {
            alert.suppressed = true;
            self.counters.suppressed += 1;
            return (
                Decision::Silenced {
                    silence: silence.id.clone(),
                    comment: silence.comment.clone(),
                    repeat,
                },
                None,
            );
        }
        if let Some((rule, by)) = self.inhibitor(rules.inhibitions, &signal.fingerprint, &labels) {
            let decision = Decision::Inhibited {
                rule: rule.id.clone(),
                by_fingerprint: by.to_owned(),
                by_title: self.alerts[by].title.clone(),
                repeat,
            };
            let alert = self
                .alerts
                .get_mut(&signal.fingerprint)
                .expect("inserted above");
            alert.suppressed = true;
            self.counters.suppressed += 1;
            return (decision, None);
        }
        self.alerts
            .get_mut(&signal.fingerprint)
            .expect("inserted above")
            .suppressed = false;

        // An incident whose members had all recovered by the signal's time is over but for its
        // quiet time: its own members may come back (a flapping alert stays in its incident),
        // but new trouble opens a new incident. In event time: a resolution that arrived first
        // but happened later does not count.
        let recovered = |incident: &Incident| {
            incident
                .members
                .iter()
                .all(|m| m.resolved && m.last_seen <= signal.time)
        };
        let best = self
            .open
            .values()
            .filter(|i| i.members.len() < MAX_MEMBERS && !recovered(i))
            .filter_map(|incident| {
                score::relatedness(config, rules.map, signal, incident)
                    .map(|reason| (incident.id, reason))
            })
            .max_by(|a, b| a.1.score.total_cmp(&b.1.score).then(b.0.cmp(&a.0)));
        let member = |reason: JoinReason| Member {
            fingerprint: signal.fingerprint.clone(),
            event_id: signal.event_id.clone(),
            kind: signal.kind.clone(),
            source: signal.source.clone(),
            service: signal.service.clone(),
            title: signal.title.clone(),
            severity: signal.severity.clone(),
            labels: signal.labels.clone(),
            resolved: false,
            flapping,
            first_seen: signal.time,
            last_seen: signal.time,
            onset: signal.time,
            count: 1,
            reason,
        };
        let (id, decision) = match best {
            Some((id, reason)) if reason.score >= config.join_threshold => {
                let incident = self.open.get_mut(&id).expect("a candidate is open");
                incident.log(
                    signal.time,
                    SEXTANT,
                    "joined",
                    Some(&signal.fingerprint),
                    format!("{}: {}", signal.title, reason.text),
                );
                incident.add_member(member(reason.clone()));
                (
                    id,
                    Decision::Joined {
                        incident: id,
                        reason,
                    },
                )
            }
            best => {
                let id = self.allocate_id();
                self.counters.incidents += 1;
                let reason = JoinReason::opened(best.map(|(other, reason)| (other, reason.score)));
                let mut incident = Incident::new(id, &signal.title, &signal.severity, signal.time);
                incident.log(
                    signal.time,
                    SEXTANT,
                    "opened",
                    Some(&signal.fingerprint),
                    format!("{}: {}", signal.title, reason.text),
                );
                incident.add_member(member(reason.clone()));
                self.open.insert(id, incident);
                (
                    id,
                    Decision::Opened {
                        incident: id,
                        reason,
                    },
                )
            }
        };
        self.alerts
            .get_mut(&signal.fingerprint)
            .expect("inserted above")
            .incident = Some(id);
        (decision, Some(id))
    }

    /// A firing, unsuppressed signal other than `fingerprint` that inhibits one with `labels`.
    fn inhibitor<'r>(
        &self,
        rules: &'r [InhibitRule],
        fingerprint: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<(&'r InhibitRule, &str)> {
        for rule in rules.iter().filter(|r| all_match(&r.target, labels)) {
            let by = self.alerts.iter().find(|(other, alert)| {
                other.as_str() != fingerprint
                    && !alert.resolved
                    && !alert.suppressed
                    && all_match(&rule.source, &alert.labels)
                    && rule
                        .equal
                        .iter()
                        .all(|name| alert.labels.get(name) == labels.get(name))
            });
            if let Some((by, _)) = by {
                return Some((rule, by.as_str()));
            }
        }
        None
    }

    /// Resolves the incidents whose members are all resolved (or timed out) and quiet, and
    /// forgets fingerprints nobody needs; returns the incidents it changed.
    pub fn tick(&mut self, config: &CorrelatorConfig, now: i64) -> Vec<Incident> {
        let quiet = secs(config.resolve_quiet_seconds);
        let timeout = secs(config.member_timeout_seconds);
        let flap_quiet = secs(config.flap_window_seconds);
        let settled: Vec<u64> = self
            .open
            .values()
            .filter(|incident| {
                incident.members.iter().all(|m| {
                    let idle = now - m.last_seen;
                    (m.resolved && idle >= if m.flapping { flap_quiet } else { quiet })
                        || idle >= timeout
                })
            })
            .map(|incident| incident.id)
            .collect();
        let mut changed = Vec::new();
        for id in settled {
            let mut incident = self.open.remove(&id).expect("listed above");
            incident.status = IncidentStatus::Resolved;
            incident.resolved_at = Some(now);
            let detail = format!(
                "all {} members resolved or silent, none changed for {}",
                incident.members.len(),
                duration_text(config.resolve_quiet_seconds)
            );
            incident.log(now, SEXTANT, "resolved", None, detail);
            self.detach(&incident);
            changed.push(incident);
        }
        let keep = secs(
            config
                .flap_window_seconds
                .max(config.member_timeout_seconds),
        );
        self.alerts
            .retain(|_, a| a.incident.is_some() || (!a.resolved && now - a.last_seen < keep));
        changed
    }

    fn detach(&mut self, incident: &Incident) {
        for member in &incident.members {
            if let Some(alert) = self.alerts.get_mut(&member.fingerprint)
                && alert.incident == Some(incident.id)
            {
                alert.incident = None;
            }
        }
    }

    fn open_mut(&mut self, id: u64) -> Result<&mut Incident> {
        self.open.get_mut(&id).ok_or(Error::NoOpenIncident { id })
    }

    /// An engineer has seen it; it stays open for grouping.
    pub fn acknowledge(
        &mut self,
        id: u64,
        actor: &str,
        comment: &str,
        now: i64,
    ) -> Result<Incident> {
        let incident = self.open_mut(id)?;
        if incident.status == IncidentStatus::Acknowledged {
            return Err(Error::BadAction {
                action: "acknowledge",
                reason: format!("incident {id} is already acknowledged"),
            });
        }
        incident.status = IncidentStatus::Acknowledged;
        incident.acknowledged_by = Some(actor.to_owned());
        incident.log(now, actor, "acknowledged", None, comment.to_owned());
        Ok(incident.clone())
    }

    /// Closes it now; its members' next notifications open a new incident.
    pub fn resolve(&mut self, id: u64, actor: &str, comment: &str, now: i64) -> Result<Incident> {
        let mut incident = self.open.remove(&id).ok_or(Error::NoOpenIncident { id })?;
        incident.status = IncidentStatus::Resolved;
        incident.resolved_at = Some(now);
        incident.log(now, actor, "resolved", None, comment.to_owned());
        self.detach(&incident);
        Ok(incident)
    }

    /// Moves every member of `from` into `into`; `from` ends as `merged`. Returns both.
    pub fn merge(
        &mut self,
        into: u64,
        from: u64,
        actor: &str,
        comment: &str,
        now: i64,
    ) -> Result<(Incident, Incident)> {
        if into == from {
            return Err(Error::BadAction {
                action: "merge",
                reason: "an incident cannot be merged into itself".into(),
            });
        }
        self.open_mut(into)?;
        let mut source = self
            .open
            .remove(&from)
            .ok_or(Error::NoOpenIncident { id: from })?;
        let target = self.open.get_mut(&into).expect("checked above");
        for member in &source.members {
            let mut member = member.clone();
            member.reason =
                JoinReason::by_hand("merged", &format!("merged from incident {from} by {actor}"));
            if let Some(alert) = self.alerts.get_mut(&member.fingerprint) {
                alert.incident = Some(into);
            }
            target.members.push(member);
        }
        target.recompute();
        target.log(
            now,
            actor,
            "merged",
            None,
            format!("incident {from} merged in: {comment}"),
        );
        source.status = IncidentStatus::Merged;
        source.merged_into = Some(into);
        source.resolved_at = Some(now);
        source.log(
            now,
            actor,
            "merged_into",
            None,
            format!("merged into incident {into}: {comment}"),
        );
        Ok((target.clone(), source))
    }

    /// Moves the members with `fingerprints` out of incident `id` into a new incident. Returns
    /// the old incident and the new one.
    pub fn split(
        &mut self,
        id: u64,
        fingerprints: &[String],
        actor: &str,
        comment: &str,
        now: i64,
    ) -> Result<(Incident, Incident)> {
        let incident = self.open_mut(id)?;
        let bad = |reason: String| Error::BadAction {
            action: "split",
            reason,
        };
        if fingerprints.is_empty() {
            return Err(bad("name at least one member fingerprint".into()));
        }
        for fingerprint in fingerprints {
            if !incident
                .members
                .iter()
                .any(|m| &m.fingerprint == fingerprint)
            {
                return Err(bad(format!(
                    "`{fingerprint}` is not a member of incident {id}"
                )));
            }
        }
        if fingerprints.len() >= incident.members.len() {
            return Err(bad("it would leave the incident empty".into()));
        }
        let (moved, kept): (Vec<Member>, Vec<Member>) = std::mem::take(&mut incident.members)
            .into_iter()
            .partition(|m| fingerprints.contains(&m.fingerprint));
        incident.members = kept;
        incident.recompute();
        let new_id = self.allocate_id();
        let incident = self.open.get_mut(&id).expect("checked above");
        incident.log(
            now,
            actor,
            "split",
            None,
            format!(
                "{} members moved to incident {new_id}: {comment}",
                moved.len()
            ),
        );
        let mut split = Incident::new(
            new_id,
            &moved[0].title,
            &moved[0].severity,
            moved[0].first_seen,
        );
        for mut member in moved {
            member.reason =
                JoinReason::by_hand("split", &format!("split from incident {id} by {actor}"));
            if let Some(alert) = self.alerts.get_mut(&member.fingerprint) {
                alert.incident = Some(new_id);
            }
            split.members.push(member);
        }
        split.recompute();
        split.log(
            now,
            actor,
            "split_from",
            None,
            format!("split from incident {id}: {comment}"),
        );
        let old = incident.clone();
        self.open.insert(new_id, split.clone());
        Ok((old, split))
    }
}

fn secs(seconds: u64) -> i64 {
    i64::try_from(seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(NANOS_PER_SECOND)
}

/// `90 s`, `15 min`, `2 h`.
pub(crate) fn duration_text(seconds: u64) -> String {
    if seconds < 120 {
        format!("{seconds} s")
    } else if seconds < 7200 {
        format!("{} min", seconds / 60)
    } else {
        format!("{} h", seconds / 3600)
    }
}
