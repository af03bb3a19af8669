//! Sextant's vocabulary: tenants, roles, signals and the rows telemetry becomes. No I/O.
//!
//! The main types:
//! - [`TenantId`]: a validated tenant name; every row and request belongs to one.
//! - [`Role`]: what a token may do (`admin`, `editor`, `viewer`, `ingest`).
//! - [`Signal`]: logs, metrics or traces, the three OTLP signals; [`Table`]: where their rows
//!   land (`logs`, `metrics`, `spans`).
//! - [`LogRow`], [`SpanRow`], [`MetricRow`]: one stored row each, flattened from OTLP by
//!   [`otlp`] (one row per log record, per span, per metric data point).
//! - [`Event`]: an anomaly, a capacity warning or an alert, with its explanation.
//!
//! ```
//! use sextant_model::{Role, TenantId};
//!
//! let tenant = TenantId::new("acme-prod").unwrap();
//! assert_eq!(tenant.as_str(), "acme-prod");
//! assert!(Role::Editor.can_ingest());
//! assert!(!Role::Viewer.can_ingest());
//! ```

mod code;
mod error;
mod event;
pub mod otlp;
mod rows;
pub mod severity;
mod signal;
mod table;
mod tenant;
pub mod time;

pub use code::ErrorCode;
pub use error::{Error, Result};
pub use event::{Event, EventKind};
pub use rows::{AttrValue, Attributes, LogRow, MetricKind, MetricRow, SpanRow};
pub use signal::Signal;
pub use table::Table;
pub use tenant::{Action, IngestKind, Role, Scope, TenantId};
