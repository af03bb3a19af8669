//! An anomaly as an [`Event`]: the structured explanation (series, observed and expected
//! values, band, score, method, contributing factors) and the sentence rendered from it.

use std::collections::BTreeMap;

use serde_json::json;
use sextant_analytics::anomaly::{METHOD, MODEL_VERSION, Verdict};
use sextant_analytics::text::number;
use sextant_model::{Event, EventKind, TenantId};
use sha2::{Digest, Sha256};

/// The metric name of log pattern rate series.
pub const PATTERN_RATE_METRIC: &str = "log_pattern_rate";

/// Another series of the same service that moved in the same window.
#[derive(Debug)]
pub(crate) struct Related {
    pub series: String,
    pub score: f64,
    pub value: f64,
    pub expected: f64,
    pub time: i64,
}

/// What is known about one anomalous point.
pub(crate) struct Anomaly<'a> {
    pub tenant: &'a TenantId,
    pub key: &'a str,
    pub name: &'a str,
    pub service: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub time: i64,
    pub value: f64,
    pub verdict: &'a Verdict,
    pub threshold: f64,
    pub sensitivity: f64,
    pub points: u64,
    /// For pattern rates: the step the lines were counted over.
    pub step_seconds: Option<i64>,
    /// For pattern rates: the template's id and text.
    pub template: Option<(u64, Option<String>)>,
    pub related: Vec<Related>,
}

/// A stable event id for an anomaly of `key` at `time`.
pub(crate) fn event_id(tenant: &TenantId, key: &str, time: i64) -> String {
    let mut hash = Sha256::new();
    hash.update(tenant.as_str().as_bytes());
    hash.update([0]);
    hash.update(key.as_bytes());
    hash.update([0]);
    hash.update(time.to_le_bytes());
    hex::encode(&hash.finalize()[..8])
}

fn finite(value: f64) -> serde_json::Value {
    serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

pub(crate) fn anomaly_event(anomaly: Anomaly<'_>) -> Event {
    let verdict = anomaly.verdict;
    let above = anomaly.value >= verdict.expected || verdict.expected.is_nan();
    let direction = if above { "above" } else { "below" };
    let series_text = if anomaly.labels.is_empty() {
        anomaly.name.to_owned()
    } else {
        let labels: Vec<String> = anomaly
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}{{{}}}", anomaly.name, labels.join(","))
    };
    let mut factors = Vec::new();
    let subject = match &anomaly.template {
        Some((id, text)) => {
            factors.push(json!({
                "kind": "log_template",
                "template_id": id,
                "template": text,
            }));
            let text = text.as_deref().unwrap_or("(template no longer known)");
            let per = anomaly.step_seconds.unwrap_or(60);
            format!(
                "log pattern \"{text}\" ({} lines per {per} s)",
                number(anomaly.value)
            )
        }
        None => {
            if !anomaly.labels.is_empty() {
                factors.push(json!({"kind": "labels", "labels": anomaly.labels}));
            }
            format!("{series_text} at {}", number(anomaly.value))
        }
    };
    for related in &anomaly.related {
        factors.push(json!({
            "kind": "related_series",
            "series": related.series,
            "score": finite(related.score),
            "value": finite(related.value),
            "expected": finite(related.expected),
            "time_unix_nano": related.time,
        }));
    }
    let mut summary = format!(
        "{}: {subject} is {direction} the expected {} (band {} to {}), score {:.2}.",
        if anomaly.service.is_empty() {
            "(no service)"
        } else {
            anomaly.service
        },
        number(verdict.expected),
        number(verdict.lower),
        number(verdict.upper),
        verdict.score,
    );
    if !anomaly.related.is_empty() {
        let names: Vec<&str> = anomaly.related.iter().map(|r| r.series.as_str()).collect();
        summary.push_str(&format!(
            " Also moving in {}: {}.",
            anomaly.service,
            names.join(", ")
        ));
    }
    let width = (verdict.upper - verdict.lower).abs();
    let outside = if above {
        anomaly.value - verdict.upper
    } else {
        verdict.lower - anomaly.value
    };
    let severity = if width > 0.0 && outside > 2.0 * width {
        "critical"
    } else {
        "warning"
    };
    let step = anomaly.step_seconds.unwrap_or(0);
    let details = json!({
        "series": {
            "key": anomaly.key,
            "name": anomaly.name,
            "service": anomaly.service,
            "labels": anomaly.labels,
        },
        "observed": finite(anomaly.value),
        "expected": finite(verdict.expected),
        "band": [finite(verdict.lower), finite(verdict.upper)],
        "direction": direction,
        "score": finite(verdict.score),
        "threshold": finite(anomaly.threshold),
        "sensitivity": finite(anomaly.sensitivity),
        // A point's own time; for a pattern rate, the step its lines were counted in.
        "window": {
            "start_unix_nano": anomaly.time,
            "end_unix_nano": anomaly.time + step * 1_000_000_000,
        },
        "method": METHOD,
        "model_version": MODEL_VERSION,
        "points_learnt": anomaly.points,
        "factors": factors,
    });
    let mut labels = anomaly.labels.clone();
    labels.insert("__name__".to_owned(), anomaly.name.to_owned());
    Event {
        id: event_id(anomaly.tenant, anomaly.key, anomaly.time),
        tenant: anomaly.tenant.clone(),
        time_unix_nano: anomaly.time,
        kind: EventKind::Anomaly,
        source: "sextant.detector".to_owned(),
        service: anomaly.service.to_owned(),
        severity: severity.to_owned(),
        title: format!("{series_text} {direction} its expected band"),
        summary,
        fingerprint: anomaly.key.to_owned(),
        status: "firing".to_owned(),
        labels,
        details,
        count: 1,
        last_seen_unix_nano: anomaly.time,
        decision: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anomaly_explains_itself() {
        let tenant = TenantId::new("acme").unwrap();
        let labels = BTreeMap::from([("route".to_owned(), "/pay".to_owned())]);
        let verdict = Verdict {
            score: 0.97,
            expected: 120.0,
            lower: 80.0,
            upper: 160.0,
            anomalous: true,
            warming_up: false,
        };
        let event = anomaly_event(Anomaly {
            tenant: &tenant,
            key: "latency{route=\"/pay\",service=\"checkout\"}",
            name: "latency",
            service: "checkout",
            labels: &labels,
            time: 1_700_000_000_000_000_000,
            value: 812.0,
            verdict: &verdict,
            threshold: 0.9,
            sensitivity: 1.0,
            points: 500,
            step_seconds: None,
            template: None,
            related: vec![Related {
                series: "errors{service=\"checkout\"}".to_owned(),
                score: 0.8,
                value: 5.0,
                expected: 0.1,
                time: 1_700_000_000_000_000_000,
            }],
        });
        assert_eq!(
            event.summary,
            "checkout: latency{route=/pay} at 812 is above the expected 120 (band 80 to 160), \
             score 0.97. Also moving in checkout: errors{service=\"checkout\"}."
        );
        assert_eq!(event.severity, "critical");
        assert_eq!(event.details["observed"], 812.0);
        assert_eq!(event.details["band"][1], 160.0);
        assert_eq!(event.details["factors"][1]["kind"], "related_series");
        assert_eq!(
            event.fingerprint,
            "latency{route=\"/pay\",service=\"checkout\"}"
        );
        // The same anomaly found again has the same id.
        assert_eq!(
            event.id,
            event_id(&tenant, &event.fingerprint, event.time_unix_nano)
        );
    }
}
