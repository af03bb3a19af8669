//! Sextant's incidents: from alerts and anomalies to a few explained incidents. Pure and
//! synchronous: no I/O, no tokio.
//!
//! The main types:
//! - [`topology::ServiceMap`]: services and who calls whom, derived from spans; distances on it.
//! - [`matcher::Matcher`]: a label condition of a silence or an inhibition rule.
//! - [`correlator::IncidentCorrelator`]: one tenant's incidents; takes one
//!   [`correlator::Signal`] at a time and returns its [`correlator::Decision`] (opened,
//!   joined, deduplicated, silenced, inhibited, ...) with the reason written out.
//! - [`rca::rank`]: the root-cause ranking of an incident's candidate series, each candidate
//!   with its [`rca::Evidence`] and a sentence.
//! - [`action::Actions`]: the programs runbooks may run, as the operator defined them; every
//!   parameter value checked before it reaches a program.
//! - [`runbook::Runbook`]: what to do when an incident matches, checked at load with the line
//!   of every problem; [`runbook::render`] fills its templates.
//! - [`scenario::Scenario`]: a correlation scenario from `testdata/incidents/`, run and scored.
//!
//! ```
//! use sextant_incidents::correlator::{CorrelatorConfig, Decision, IncidentCorrelator, Rules, Signal};
//! use sextant_incidents::topology::ServiceMap;
//!
//! let map = ServiceMap::from_pairs([("checkout", "postgres"), ("cart", "postgres")]);
//! let rules = Rules { map: Some(&map), ..Rules::default() };
//! let config = CorrelatorConfig::default();
//! let mut correlator = IncidentCorrelator::new();
//! let alert = |fingerprint: &str, service: &str, second: i64| Signal {
//!     event_id: format!("{fingerprint}-{second}"),
//!     fingerprint: fingerprint.into(),
//!     time: second * 1_000_000_000,
//!     kind: "alert".into(),
//!     source: "alertmanager".into(),
//!     service: service.into(),
//!     severity: "critical".into(),
//!     title: "HighLatency".into(),
//!     resolved: false,
//!     labels: Default::default(),
//! };
//! let (first, _) = correlator.process(&config, rules, &alert("a", "postgres", 0));
//! let (second, _) = correlator.process(&config, rules, &alert("b", "checkout", 30));
//! let (again, _) = correlator.process(&config, rules, &alert("b", "checkout", 60));
//! assert!(matches!(first, Decision::Opened { incident: 1, .. }));
//! assert!(matches!(second, Decision::Joined { incident: 1, ref reason } if reason.rule == "topology"));
//! assert!(matches!(again, Decision::Deduplicated { incident: 1, count: 2 }));
//! ```

pub mod action;
pub mod correlator;
mod error;
pub mod matcher;
pub mod rca;
pub mod runbook;
pub mod scenario;
pub mod topology;

pub use error::{Error, Result};
