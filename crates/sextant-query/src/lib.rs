//! Sextant's query engine: read-only SQL over one tenant's tables with DataFusion.
//!
//! The main types:
//! - [`QueryEngine`]: holds the segment object store and the DataFusion runtime; its
//!   [`QueryEngine::sql`] runs one query over the [`TableSnapshot`]s it is given (the only
//!   tables the query can see) under [`QueryLimits`] (timeout, rows returned, bytes scanned).
//! - [`QueryOutput`]: the result as Arrow batches, with JSON-rows and CSV renderings.
//! - [`Error`]: what went wrong, with a stable [`Error::code`].
//!
//! A table is the union of its Parquet segments and its unflushed rows. Segment files whose
//! catalog time range cannot match the query's bounds on `time` are never opened, and a query
//! whose remaining files are too large is refused before it reads anything. The function
//! `word_match(text, 'words')` finds whole words, ignoring ASCII case; on `logs.body` the
//! segments' token index skips the blocks of rows that cannot hold them. Statements that
//! would change anything (DDL, DML, `COPY`, `SET`) are refused, and no table function or
//! object store lets a query read a file or URL.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use object_store::local::LocalFileSystem;
//! use sextant_query::{QueryEngine, QueryLimits};
//! use sextant_store::TableSnapshot;
//!
//! # async fn example(logs: TableSnapshot) -> sextant_query::Result<()> {
//! let segments = Arc::new(LocalFileSystem::new_with_prefix("data/segments").unwrap());
//! let engine = QueryEngine::new(segments, QueryLimits::default());
//! let output = engine
//!     .sql(
//!         vec![logs],
//!         "SELECT service, count(*) AS n FROM logs \
//!          WHERE time > now() - interval '1 hour' GROUP BY service ORDER BY n DESC",
//!     )
//!     .await?;
//! println!("{} rows, truncated: {}", output.num_rows(), output.truncated);
//! println!("{}", output.to_json_rows());
//! # Ok(()) }
//! ```

pub mod capped;
pub mod complexity;
mod cooperative;
mod engine;
mod error;
mod index_cache;
mod output;
mod read_only;
mod table;
mod time_range;
mod word_match;

pub use engine::{QueryEngine, QueryLimits};
pub use error::{Error, Result};
pub use output::QueryOutput;
pub use sextant_store::{SegmentFile, TableSnapshot};
