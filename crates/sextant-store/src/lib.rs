//! Sextant's storage: the write-ahead log that makes ingest durable, and the metadata store
//! that holds tenants and tokens.
//!
//! The main types:
//! - [`wal::Wal`]: an append-only log of ingest batches with group commit. A batch is
//!   acknowledged only after it is written and fsynced; [`wal::Wal::open`] replays the log and
//!   cuts a torn tail; [`wal::read_records`] scans it read-only.
//! - [`meta::MetadataStore`]: the seam for metadata, one trait per concern (tokens, catalog,
//!   events, incidents, runbooks, audit), with [`meta::SqliteMetadata`] as the embedded
//!   implementation.
//! - [`TelemetryReader`]: reads a tenant's stored telemetry back as rows.
//! - [`TelemetryStore`]: the embedded store, and the embedded ingest bus
//!   ([`sextant_tables::IngestBus`]); as rows commit it labels log templates and feeds the
//!   anomaly detectors (`detectors.rs`), whose findings become events. The tables' schemas
//!   are `sextant_tables::schema`.
//! - [`segments::SegmentStore`]: Parquet segment files; [`token_index::TokenIndex`] is the word
//!   index each log segment carries.
//!
//! ```no_run
//! use sextant_model::{Signal, TenantId};
//! use sextant_store::wal::{Wal, WalConfig};
//!
//! # async fn example() -> sextant_store::Result<()> {
//! let (wal, _replay) = Wal::open(WalConfig::new("data/wal"))?;
//! let tenant = TenantId::new("acme").unwrap();
//! let seq = wal.append(tenant, Signal::Logs, bytes::Bytes::from_static(b"..."))?.await?;
//! println!("durable as record {seq}");
//! wal.close();
//! # Ok(()) }
//! ```

mod bus;
pub mod crypto;
mod detectors;
pub mod encrypted_store;
mod error;
mod event_source;
mod free_space;
mod incident_table;
mod maintenance;
pub mod meta;
mod reader;
mod saved_state;
pub mod segments;
mod snapshot;
mod store;
mod templates;
pub mod token_index;
pub mod wal;

pub use detectors::{DetectorSettings, PATTERN_RATE_METRIC};
pub use error::{Error, Result};
pub use event_source::EventSource;
pub use reader::{TelemetryReader, metadata_path, wal_dir};
pub use snapshot::{ErasureReport, SegmentFile, TIME_COLUMN, TableSnapshot, TableSource};
pub use store::{StoreConfig, TelemetryStore, segments_dir};
