//! Evidence that a newer incident claims: a live ranking looks at its incident's services for
//! minutes after it opened, and trouble that starts there later may be another fault. When the
//! correlator opened a newer incident for it (it judged that trouble new, not a spread of this
//! one), each service that newer incident holds is weighed for this one only up to the time it
//! opened: what the service does after it is the newer incident's evidence.
//!
//! Cut evidence is left out, not discounted: series points from the cut on, error log patterns
//! first seen after it, and the traces that reach the service after it (whole traces, so that a
//! caller's own time does not absorb the wait for a callee whose spans were taken away).

use std::collections::{BTreeMap, BTreeSet};

use super::traces::SpanRecord;
use super::{CandidateSeries, LogSignal};
use crate::correlator::Incident;

/// Per service, the time from which its evidence belongs to a newer incident.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims {
    cut: BTreeMap<String, i64>,
}

impl Claims {
    /// What the incidents opened after `incident` (of `others`: merged ones and itself are
    /// skipped) claim of its evidence: each of their services from their opening on, the
    /// earliest opening where several hold one.
    pub fn of_newer(incident: &Incident, others: &[Incident]) -> Claims {
        let mut cut: BTreeMap<String, i64> = BTreeMap::new();
        for other in others {
            if other.id == incident.id
                || other.merged_into.is_some()
                || other.opened_at <= incident.opened_at
            {
                continue;
            }
            for service in &other.services {
                let at = cut.entry(service.clone()).or_insert(other.opened_at);
                *at = (*at).min(other.opened_at);
            }
        }
        Claims { cut }
    }

    pub fn is_empty(&self) -> bool {
        self.cut.is_empty()
    }

    /// The services claimed, each with the time its evidence stops counting.
    pub fn cuts(&self) -> &BTreeMap<String, i64> {
        &self.cut
    }

    /// Drops the incident points of claimed services from their cut on.
    pub fn series(&self, series: &mut [CandidateSeries]) {
        for s in series {
            if let Some(&cut) = self.cut.get(&s.service) {
                s.anomalous.retain(|&(t, _)| t < cut);
            }
        }
    }

    /// Drops the log signals of claimed services first seen from their cut on.
    pub fn logs(&self, logs: &mut Vec<LogSignal>) {
        logs.retain(|l| {
            self.cut
                .get(&l.service)
                .is_none_or(|&cut| l.first_seen < cut)
        });
    }

    /// Drops every trace with a span of a claimed service starting from its cut on.
    pub fn spans(&self, spans: &mut Vec<SpanRecord>) {
        if self.cut.is_empty() {
            return;
        }
        let claimed: BTreeSet<u128> = spans
            .iter()
            .filter(|s| self.cut.get(&s.service).is_some_and(|&cut| s.start >= cut))
            .map(|s| s.trace_id)
            .collect();
        spans.retain(|s| !claimed.contains(&s.trace_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000_000;

    fn incident(id: u64, opened_minute: i64, services: &[&str]) -> Incident {
        let mut incident = Incident::new(id, "", "warning", opened_minute * MINUTE);
        incident.services = services.iter().map(|s| s.to_string()).collect();
        incident
    }

    fn series(service: &str, minutes: &[i64]) -> CandidateSeries {
        CandidateSeries {
            service: service.to_owned(),
            metric: "cpu".to_owned(),
            normal: vec![1.0; 10],
            anomalous: minutes.iter().map(|&m| (m * MINUTE, 9.0)).collect(),
        }
    }

    #[test]
    fn a_service_a_newer_incident_holds_counts_only_up_to_its_opening() {
        let this = incident(1, 100, &["food", "travel"]);
        let others = [
            this.clone(),
            // Older: claims nothing.
            incident(2, 90, &["food"]),
            // Newer: travel from minute 114 on, and a service this one does not hold.
            incident(3, 114, &["travel", "station"]),
            incident(4, 118, &["travel"]),
        ];
        let claims = Claims::of_newer(&this, &others);
        assert_eq!(
            claims
                .cuts()
                .iter()
                .map(|(s, t)| (s.as_str(), t / MINUTE))
                .collect::<Vec<_>>(),
            [("station", 114), ("travel", 114)]
        );
        let mut candidates = [
            series("food", &[101, 110, 115]),
            series("travel", &[101, 113, 114, 116]),
        ];
        claims.series(&mut candidates);
        assert_eq!(candidates[0].anomalous.len(), 3);
        assert_eq!(
            candidates[1]
                .anomalous
                .iter()
                .map(|(t, _)| t / MINUTE)
                .collect::<Vec<_>>(),
            [101, 113]
        );
        let signal = |service: &str, minute: i64| LogSignal {
            service: service.to_owned(),
            template_id: 1,
            template: "failed".to_owned(),
            new: true,
            ratio: 5.0,
            first_seen: minute * MINUTE,
        };
        let mut logs = vec![
            signal("travel", 113),
            signal("travel", 115),
            signal("food", 115),
        ];
        claims.logs(&mut logs);
        assert_eq!(
            logs.iter()
                .map(|l| (l.service.as_str(), l.first_seen / MINUTE))
                .collect::<Vec<_>>(),
            [("travel", 113), ("food", 115)]
        );
    }

    #[test]
    fn a_trace_that_reaches_a_claimed_service_after_its_cut_is_left_out_whole() {
        let claims = Claims::of_newer(
            &incident(1, 100, &["front"]),
            &[incident(2, 110, &["back"])],
        );
        let span =
            |trace: u128, id: u64, parent: Option<u64>, service: &str, minute: i64| SpanRecord {
                trace_id: trace,
                span_id: id,
                parent_span_id: parent,
                service: service.to_owned(),
                start: minute * MINUTE,
                end: minute * MINUTE + 1,
            };
        let mut spans = vec![
            span(1, 1, None, "front", 105),
            span(1, 2, Some(1), "back", 105),
            span(2, 3, None, "front", 111),
            span(2, 4, Some(3), "back", 111),
            span(3, 5, None, "front", 112),
        ];
        claims.spans(&mut spans);
        assert_eq!(
            spans.iter().map(|s| s.span_id).collect::<Vec<_>>(),
            [1, 2, 5]
        );
        // No newer incident: nothing is claimed.
        assert!(
            Claims::of_newer(
                &incident(2, 110, &["back"]),
                &[incident(1, 100, &["front"])]
            )
            .is_empty()
        );
    }
}
