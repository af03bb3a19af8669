//! [`EventSource`]: the seam between the HTTP API and the events and detectors that storage
//! keeps (anomalies, capacity warnings, feedback).

use sextant_analytics::anomaly::{DetectorConfig, Feedback};
use sextant_model::{Event, TenantId};

use crate::Result;
use crate::meta::{EventFilter, FeedbackRecord};

/// Events and the detectors behind them. Embedded: the telemetry store.
pub trait EventSource: Send + Sync {
    /// A tenant's events by `filter`, newest first, each with the feedback it got.
    fn events(
        &self,
        tenant: &TenantId,
        filter: &EventFilter,
    ) -> Result<Vec<(Event, Option<String>)>>;
    /// One event of a tenant, with the feedback it got.
    fn event(&self, tenant: &TenantId, id: &str) -> Result<Option<(Event, Option<String>)>>;
    /// Stores events made outside the detectors; returns how many were new.
    fn insert_events(&self, events: &[Event]) -> Result<usize>;
    /// Applies feedback on anomaly `event_id` to its series' sensitivity and records it.
    fn anomaly_feedback(
        &self,
        tenant: &TenantId,
        event_id: &str,
        feedback: Feedback,
        comment: &str,
        actor: &str,
    ) -> Result<FeedbackRecord>;
    /// The feedback given on an event, oldest first.
    fn feedback(&self, tenant: &TenantId, event_id: &str) -> Result<Vec<FeedbackRecord>>;
    /// The detector configuration the live detectors use (for bands drawn after the fact).
    fn detector_config(&self) -> DetectorConfig;
}
