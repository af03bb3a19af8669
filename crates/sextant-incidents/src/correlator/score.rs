//! How related a signal is to an open incident: time proximity times the strongest of
//! same service, distance on the service map, and label and text similarity — with the
//! reason written out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{CorrelatorConfig, Incident, Signal, duration_text, secs};
use crate::topology::ServiceMap;

/// Relatedness by hops on the service map: same service, a direct call, two hops, three.
const BY_HOPS: [f64; 4] = [1.0, 0.9, 0.6, 0.3];
/// Similarity counts for less than a known edge: it is a guess where the map is silent.
const SIMILARITY_WEIGHT: f64 = 0.8;
/// A title match is weaker evidence than shared location labels.
const TITLE_WEIGHT: f64 = 0.75;
/// Labels that say what is wrong, not where: left out of the label similarity.
const WHAT_LABELS: [&str; 6] = [
    "alertname",
    "severity",
    "summary",
    "description",
    "kind",
    "source",
];
/// Members compared for similarity (the first ones; an incident's early members define it).
const MAX_COMPARED: usize = 50;

/// Why a signal is in its incident: the rule, the score and what it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinReason {
    /// `opened`, `same_service`, `topology`, `similarity`, `merged`, `split`.
    pub rule: String,
    pub score: f64,
    /// Seconds between the signal and the incident's active span.
    pub time_gap_seconds: f64,
    /// Services from the signal's to the nearest of the incident's, on the map.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    /// Label or title similarity in `[0, 1]`.
    pub similarity: f64,
    /// The reason in words.
    pub text: String,
}

impl JoinReason {
    /// The reason of a signal that opened an incident; `nearest` is the best open incident it
    /// did not join, with its score.
    pub(super) fn opened(nearest: Option<(u64, f64)>) -> JoinReason {
        let text = match nearest {
            None => "no open incident that began or grew within its windows before it".to_owned(),
            Some((id, score)) => format!(
                "the closest open incident ({id}) scored {score:.2}, below the join threshold"
            ),
        };
        JoinReason {
            rule: "opened".into(),
            score: nearest.map_or(0.0, |(_, s)| s),
            time_gap_seconds: 0.0,
            path: Vec::new(),
            similarity: 0.0,
            text,
        }
    }

    pub(super) fn by_hand(rule: &str, text: &str) -> JoinReason {
        JoinReason {
            rule: rule.into(),
            score: 1.0,
            time_gap_seconds: 0.0,
            path: Vec::new(),
            similarity: 0.0,
            text: text.into(),
        }
    }
}

/// The reason `signal` could join `incident`, or `None` when the incident is outside the group
/// window, nothing in it began within the spread window before the signal, or nothing relates
/// them.
pub(super) fn relatedness(
    config: &CorrelatorConfig,
    map: Option<&ServiceMap>,
    signal: &Signal,
    incident: &Incident,
) -> Option<JoinReason> {
    let gap = if signal.time < incident.opened_at {
        incident.opened_at - signal.time
    } else {
        (signal.time - incident.updated_at).max(0)
    };
    let window = secs(config.group_window_seconds);
    // Past its window an incident takes no new signals, however busy it stays (a noisy system
    // always has something starting); within it, only ones that began soon after its newest.
    if gap > window
        || signal.time - incident.opened_at > window
        || signal.time - incident.latest_onset() > secs(config.spread_window_seconds)
    {
        return None;
    }
    let closeness = 1.0 - gap as f64 / window as f64;
    let time_factor = 0.5 + 0.5 * closeness;
    let gap_seconds = gap as f64 / 1e9;
    let when = if gap == 0 {
        "while it was active".to_owned()
    } else {
        format!(
            "{} from its last activity",
            duration_text(gap_seconds.round() as u64)
        )
    };

    let service = signal.service.as_str();
    let mut best: Option<JoinReason> = None;
    let mut consider = |reason: JoinReason| {
        if best.as_ref().is_none_or(|b| reason.score > b.score) {
            best = Some(reason);
        }
    };
    if !service.is_empty() && incident.services.contains(service) {
        consider(JoinReason {
            rule: "same_service".into(),
            score: time_factor,
            time_gap_seconds: gap_seconds,
            path: vec![service.to_owned()],
            similarity: 0.0,
            text: format!("same service {service}, {when}"),
        });
    }
    let on_map = |s: &str| map.is_some_and(|m| m.contains(s));
    let map_knows_both =
        !service.is_empty() && on_map(service) && incident.services.iter().any(|s| on_map(s));
    if let Some(map) = map
        && map_knows_both
        && let Some(path) = map.path_to_any(service, &incident.services, config.max_hops)
        && path.len() > 1
    {
        let hops = path.len() - 1;
        let relation = BY_HOPS.get(hops).copied().unwrap_or(0.0);
        consider(JoinReason {
            rule: "topology".into(),
            score: relation * time_factor,
            time_gap_seconds: gap_seconds,
            text: format!(
                "{} on the service map ({}), {when}",
                if hops == 1 {
                    "a direct neighbour".to_owned()
                } else {
                    format!("{hops} hops away")
                },
                path.join(" – ")
            ),
            path,
            similarity: 0.0,
        });
    }
    if !map_knows_both {
        let (similarity, on) = similarity(signal, incident);
        if similarity > 0.0 {
            consider(JoinReason {
                rule: "similarity".into(),
                score: SIMILARITY_WEIGHT * similarity * time_factor,
                time_gap_seconds: gap_seconds,
                path: Vec::new(),
                similarity,
                text: format!("similar {on} ({similarity:.2}), {when}"),
            });
        }
    }
    best
}

/// The best similarity of `signal` to the incident's first members: of the location labels
/// (the mean of their Jaccard index and overlap coefficient, so `{host}` is close to
/// `{host, mountpoint}`), or of the title words (Jaccard, weighted down); with what it was
/// found on.
fn similarity(signal: &Signal, incident: &Incident) -> (f64, &'static str) {
    let where_labels = |labels: &BTreeMap<String, String>| -> BTreeSet<(String, String)> {
        labels
            .iter()
            .filter(|(k, _)| !WHAT_LABELS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let words = |title: &str| -> BTreeSet<String> {
        title
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let signal_labels = where_labels(&signal.labels);
    let signal_words = words(&signal.title);
    let mut best = (0.0, "labels");
    for member in incident.members.iter().take(MAX_COMPARED) {
        let member_labels = where_labels(&member.labels);
        let labels = 0.5
            * (jaccard(&signal_labels, &member_labels) + overlap(&signal_labels, &member_labels));
        if labels > best.0 {
            best = (labels, "labels");
        }
        let title = TITLE_WEIGHT * jaccard(&signal_words, &words(&member.title));
        if title > best.0 {
            best = (title, "title");
        }
    }
    best
}

fn jaccard<T: Ord>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

fn overlap<T: Ord>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> f64 {
    let smaller = a.len().min(b.len());
    if smaller == 0 {
        return 0.0;
    }
    a.intersection(b).count() as f64 / smaller as f64
}
