//! Sextant's analytics: pure, synchronous computations over telemetry. No I/O, no tokio.
//!
//! The main types:
//! - [`patterns::TemplateMiner`]: streaming log template mining; each line gets a stable
//!   [`patterns::TemplateId`], templates read like `Accepted password for <*> from <*> port <*>`.
//! - [`eval`]: scoring a parser against ground truth (grouping and parsing accuracy).
//! - [`anomaly::Detector`]: one series' streaming anomaly model, scoring each point in `[0, 1]`.
//! - [`nab`]: the Numenta Anomaly Benchmark's scoring (windows, profiles, one threshold per
//!   profile over the corpus, normalised scores).
//! - [`text`]: numbers and durations written for people (explanations' sentences).
//! - [`forecast::forecast`]: a forecast with prediction intervals; [`forecast::smape`] and
//!   [`forecast::mase`] score one.
//!
//! ```
//! use sextant_analytics::patterns::{MinerConfig, TemplateMiner};
//!
//! let mut miner = TemplateMiner::new(MinerConfig::default()).unwrap();
//! let mut ids = Vec::new();
//! for (at, user) in ["root", "admin", "oracle", "test", "guest"].iter().enumerate() {
//!     let line = format!("Accepted password for {user} from 10.0.0.{at} port 5221{at} ssh2");
//!     ids.push(miner.mine(&line, at as i64).id);
//! }
//! // The first lines differ only in a plain word, so they start templates of their own; the
//! // third variant makes the word a variable and the templates merge. Merged ids resolve to
//! // the survivor, the oldest.
//! assert!(ids.iter().all(|&id| miner.resolve(id) == Some(ids[0])));
//! let template = miner.template(ids[0]).unwrap();
//! assert_eq!(template.text(), "Accepted password for <*> from <*> port <*> ssh2");
//! assert_eq!(template.count(), 5);
//! ```

pub mod anomaly;
mod error;
pub mod eval;
pub mod forecast;
pub mod nab;
pub mod patterns;
pub mod text;

pub use error::{Error, Result};
