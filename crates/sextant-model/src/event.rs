//! [`Event`]: something that happened to a tenant's systems and deserves a look — an anomaly
//! the detectors found, a capacity warning, or (with the alert receivers) an alert from outside.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::TenantId;

/// What produced an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A series left its expected band.
    Anomaly,
    /// A series is forecast to reach its configured limit.
    Capacity,
    /// An alert sent by another system.
    Alert,
}

impl EventKind {
    pub const ALL: [EventKind; 3] = [EventKind::Anomaly, EventKind::Capacity, EventKind::Alert];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Anomaly => "anomaly",
            EventKind::Capacity => "capacity",
            EventKind::Alert => "alert",
        }
    }

    /// The kind named by [`EventKind::as_str`].
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// One event row. `details` holds the structured explanation (for an anomaly: the series,
/// observed and expected values, band, score, method and contributing factors); `summary` is
/// the sentence rendered from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable id: the same event found again (a replay after a crash) gets the same id.
    pub id: String,
    pub tenant: TenantId,
    /// When it happened (the data's time), nanoseconds since the Unix epoch.
    pub time_unix_nano: i64,
    pub kind: EventKind,
    /// What emitted it: `sextant.detector`, `sextant.capacity`, `alertmanager`, ...
    pub source: String,
    /// The service it concerns; empty when none.
    pub service: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub title: String,
    pub summary: String,
    /// Events with one fingerprint are about one thing (for anomalies: the series).
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub details: serde_json::Value,
    /// Notifications received for it (an alert's repeats update one event); 1 when new.
    #[serde(default = "one")]
    pub count: u64,
    /// The newest notification's time (equal to `time_unix_nano` when new).
    #[serde(default)]
    pub last_seen_unix_nano: i64,
    /// What the correlator did with it (joined an incident and why, silenced, inhibited, ...);
    /// `None` until it has looked.
    #[serde(default)]
    pub decision: Option<serde_json::Value>,
}

fn one() -> u64 {
    1
}
