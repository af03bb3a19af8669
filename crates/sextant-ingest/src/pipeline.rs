//! The ingest pipeline: memory budget, decoding, tenant limits, then the bus.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sextant_model::{Signal, TenantId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::otlp::{self, DecodedBatch, Encoding, OtlpRequest};
use crate::{Error, IngestBus, IngestConfig, Result, TenantRateLimiter};

/// Bodies larger than this are decoded on the blocking pool, so no async worker is held for
/// long.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// What happened to an accepted request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Records now durable.
    pub accepted: usize,
    /// Records dropped for breaking OTLP rules (reported to the client as partial success).
    pub rejected: usize,
    /// Why the first dropped record was dropped.
    pub message: Option<String>,
}

/// A record time may run ahead of the wall clock by this much (clients' clocks drift); later
/// times count as this.
pub const MAX_CLOCK_SKEW_NANOS: i64 = 60_000_000_000;

/// Each tenant's event time: the newest median record time of its durable batches (never more
/// than [`MAX_CLOCK_SKEW_NANOS`] ahead of the wall clock), with the wall-clock time it was
/// reached at. What the correlator runs on.
#[derive(Debug, Default)]
pub struct Watermarks(parking_lot::Mutex<HashMap<TenantId, Watermark>>);

/// A tenant's newest record time and the wall-clock time it was reached at, in Unix ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermark {
    pub newest: i64,
    pub reached_at: i64,
}

impl Watermark {
    /// Raises `mark` to `newest` (held to [`MAX_CLOCK_SKEW_NANOS`] past `wall`), reached at
    /// `wall`; an older time leaves it as it is.
    pub fn raise(mark: &mut Option<Watermark>, newest: i64, wall: i64) {
        let newest = newest.min(wall.saturating_add(MAX_CLOCK_SKEW_NANOS));
        if mark.is_none_or(|m| newest > m.newest) {
            *mark = Some(Watermark {
                newest,
                reached_at: wall,
            });
        }
    }
}

impl Watermarks {
    /// `tenant`'s records up to `newest` are durable.
    pub fn observe(&self, tenant: &TenantId, newest: i64) {
        let mut marks = self.0.lock();
        let mut mark = marks.get(tenant).copied();
        Watermark::raise(&mut mark, newest, wall_clock_ns());
        if let Some(mark) = mark {
            marks.insert(tenant.clone(), mark);
        }
    }

    /// `tenant`'s watermark, if it sent telemetry since the start.
    pub fn get(&self, tenant: &TenantId) -> Option<Watermark> {
        self.0.lock().get(tenant).copied()
    }
}

/// The wall clock in Unix nanoseconds.
pub fn wall_clock_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Takes tenants' batches and answers once they are durable.
pub struct IngestPipeline {
    config: IngestConfig,
    bus: Arc<dyn IngestBus>,
    limiter: TenantRateLimiter,
    in_flight: Arc<Semaphore>,
    watermarks: Watermarks,
}

impl std::fmt::Debug for IngestPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestPipeline")
            .field("config", &self.config)
            .finish()
    }
}

impl IngestPipeline {
    pub fn new(config: IngestConfig, bus: Arc<dyn IngestBus>) -> IngestPipeline {
        IngestPipeline {
            limiter: TenantRateLimiter::new(config.limits.clone()),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight_bytes)),
            config,
            bus,
            watermarks: Watermarks::default(),
        }
    }

    /// Each tenant's event time, from the records made durable through this pipeline.
    pub fn watermarks(&self) -> &Watermarks {
        &self.watermarks
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    pub fn bus(&self) -> &Arc<dyn IngestBus> {
        &self.bus
    }

    /// Bytes of requests held in memory right now.
    pub fn in_flight_bytes(&self) -> usize {
        self.config.max_in_flight_bytes - self.in_flight.available_permits()
    }

    fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit> {
        if bytes > self.config.max_body_bytes {
            return Err(Error::BodyTooLarge {
                limit: self.config.max_body_bytes,
            });
        }
        let permits = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
        self.in_flight
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| Error::Overloaded {
                reason: "in-flight request bytes at their limit",
                retry_after: Duration::from_secs(1),
            })
    }

    /// Decodes an OTLP/HTTP body and makes its records durable.
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        signal: Signal,
        encoding: Encoding,
        body: Bytes,
    ) -> Result<IngestOutcome> {
        let body_len = body.len();
        let result = async {
            let _permit = self.reserve(body_len)?;
            let max = self.config.max_body_bytes;
            let batch = if body_len <= INLINE_DECODE_BYTES {
                otlp::decode(tenant, signal, encoding, body, max)?
            } else {
                let tenant = tenant.clone();
                tokio::task::spawn_blocking(move || {
                    otlp::decode(&tenant, signal, encoding, body, max)
                })
                .await
                .map_err(|e| Error::Unavailable {
                    reason: format!("decoder task failed: {e}"),
                })??
            };
            self.commit(tenant, batch).await
        }
        .await;
        record(tenant, signal, body_len, &result);
        result
    }

    /// Makes an already decoded request (OTLP/gRPC) durable. `encoded_len` is its size on the
    /// wire, for the memory budget and the metrics.
    pub async fn ingest_request(
        &self,
        tenant: &TenantId,
        request: OtlpRequest,
        encoded_len: usize,
    ) -> Result<IngestOutcome> {
        let signal = request.signal();
        let result = async {
            let _permit = self.reserve(encoded_len)?;
            let batch = if encoded_len <= INLINE_DECODE_BYTES {
                DecodedBatch::from_request(tenant, request, None)
            } else {
                let tenant = tenant.clone();
                tokio::task::spawn_blocking(move || {
                    DecodedBatch::from_request(&tenant, request, None)
                })
                .await
                .map_err(|e| Error::Unavailable {
                    reason: format!("decoder task failed: {e}"),
                })?
            };
            self.commit(tenant, batch).await
        }
        .await;
        record(tenant, signal, encoded_len, &result);
        result
    }

    /// Makes an already decoded batch durable (`sextant import`): the tenant's limits, the bus
    /// and the metrics as for any request. `encoded_len` is its size as read.
    pub async fn ingest_batch(
        &self,
        tenant: &TenantId,
        batch: DecodedBatch,
        encoded_len: usize,
    ) -> Result<IngestOutcome> {
        let signal = batch.signal;
        let result = async {
            let _permit = self.reserve(encoded_len)?;
            self.commit(tenant, batch).await
        }
        .await;
        record(tenant, signal, encoded_len, &result);
        result
    }

    async fn commit(&self, tenant: &TenantId, batch: DecodedBatch) -> Result<IngestOutcome> {
        let outcome = IngestOutcome {
            accepted: batch.checked.accepted,
            rejected: batch.checked.rejected,
            message: batch.checked.first_error.as_ref().map(|e| e.to_string()),
        };
        if outcome.accepted == 0 {
            return Ok(outcome);
        }
        self.limiter
            .check(tenant, outcome.accepted as u64, batch.payload.len() as u64)?;
        // A batch counts by its median record time, so a few damaged timestamps do not move a
        // tenant's clock (the live one is also held to the wall clock; a replay's is not).
        let newest = batch.median_time();
        let ack = self
            .bus
            .publish(tenant.clone(), batch.signal, batch.payload, batch.rows)?;
        ack.await?;
        if let Some(newest) = newest {
            self.watermarks.observe(tenant, newest);
        }
        Ok(outcome)
    }
}

/// Counts one request's outcome: per batch, never per record.
fn record(tenant: &TenantId, signal: Signal, bytes: usize, result: &Result<IngestOutcome>) {
    let labels = |outcome: &'static str| {
        [
            ("tenant", tenant.to_string()),
            ("signal", signal.as_str().to_owned()),
            ("outcome", outcome.to_owned()),
        ]
    };
    match result {
        Ok(outcome) => {
            metrics::counter!("sextant_ingest_records_total", &labels("accepted"))
                .increment(outcome.accepted as u64);
            metrics::counter!("sextant_ingest_bytes_total", &labels("accepted"))
                .increment(bytes as u64);
            if outcome.rejected > 0 {
                metrics::counter!("sextant_ingest_records_total", &labels("rejected"))
                    .increment(outcome.rejected as u64);
            }
        }
        Err(err) => {
            metrics::counter!("sextant_ingest_bytes_total", &labels("rejected"))
                .increment(bytes as u64);
            let labels = [
                ("tenant", tenant.to_string()),
                ("signal", signal.as_str().to_owned()),
                ("code", err.code().as_str().to_owned()),
            ];
            metrics::counter!("sextant_ingest_rejected_requests_total", &labels).increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arrow::record_batch::RecordBatch;
    use prost::Message;

    use super::*;

    #[test]
    fn a_watermark_is_the_newest_record_time_never_far_past_the_wall_clock() {
        let marks = Watermarks::default();
        let tenant = TenantId::new("acme").unwrap();
        assert_eq!(marks.get(&tenant), None);
        let before = wall_clock_ns();
        marks.observe(&tenant, 2_000);
        marks.observe(&tenant, 1_000);
        let mark = marks.get(&tenant).unwrap();
        assert_eq!(mark.newest, 2_000, "a late batch does not move it back");
        assert!(mark.reached_at >= before && mark.reached_at <= wall_clock_ns());
        let far = wall_clock_ns() + 3_600 * 1_000_000_000;
        marks.observe(&tenant, far);
        let newest = marks.get(&tenant).unwrap().newest;
        assert!(newest < far && newest <= wall_clock_ns() + MAX_CLOCK_SKEW_NANOS);
        assert_eq!(marks.get(&TenantId::new("other").unwrap()), None);
    }
    use crate::{AckFuture, BusError};

    /// A bus that takes `capacity` batches and never makes any durable: Sextant falling behind.
    struct StalledBus {
        capacity: usize,
        queued: AtomicUsize,
    }

    impl IngestBus for StalledBus {
        fn publish(
            &self,
            _: TenantId,
            _: Signal,
            _: Bytes,
            _: RecordBatch,
        ) -> Result<AckFuture, BusError> {
            if self.queued.fetch_add(1, Ordering::SeqCst) >= self.capacity {
                return Err(BusError::Overloaded("test queue full"));
            }
            Ok(Box::pin(std::future::pending()))
        }
        fn queue_depth(&self) -> usize {
            self.queued.load(Ordering::SeqCst)
        }
        fn is_healthy(&self) -> bool {
            true
        }
        fn close(&self) {}
    }

    fn body() -> Bytes {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); 10],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Bytes::from(request.encode_to_vec())
    }

    fn pipeline(max_in_flight_bytes: usize, bus_capacity: usize) -> Arc<IngestPipeline> {
        let config = IngestConfig {
            max_body_bytes: 1024,
            max_in_flight_bytes,
            ..IngestConfig::default()
        };
        let bus = StalledBus {
            capacity: bus_capacity,
            queued: AtomicUsize::new(0),
        };
        Arc::new(IngestPipeline::new(config, Arc::new(bus)))
    }

    async fn ingest_in_background(pipeline: &Arc<IngestPipeline>) {
        let pipeline = pipeline.clone();
        tokio::spawn(async move {
            let tenant = TenantId::new("t").unwrap();
            let _ = pipeline
                .ingest(&tenant, Signal::Logs, Encoding::protobuf(), body())
                .await;
        });
        tokio::task::yield_now().await;
    }

    async fn ingest_now(pipeline: &IngestPipeline) -> Result<IngestOutcome> {
        let tenant = TenantId::new("t").unwrap();
        pipeline
            .ingest(&tenant, Signal::Logs, Encoding::protobuf(), body())
            .await
    }

    #[tokio::test]
    async fn full_memory_budget_answers_overloaded() {
        let pipeline = pipeline(body().len() + 10, 100);
        ingest_in_background(&pipeline).await;
        assert_eq!(pipeline.in_flight_bytes(), body().len());
        let err = ingest_now(&pipeline).await.unwrap_err();
        assert!(matches!(err, Error::Overloaded { .. }), "{err}");
        assert!(err.retry_after().is_some());
    }

    #[tokio::test]
    async fn full_bus_answers_overloaded() {
        let pipeline = pipeline(1 << 20, 1);
        ingest_in_background(&pipeline).await;
        let err = ingest_now(&pipeline).await.unwrap_err();
        assert!(matches!(err, Error::Overloaded { .. }), "{err}");
        // The refused batch released its share of the budget.
        assert_eq!(pipeline.in_flight_bytes(), body().len());
    }

    #[tokio::test]
    async fn oversized_body_is_refused_before_decoding() {
        let pipeline = pipeline(1 << 20, 1);
        let tenant = TenantId::new("t").unwrap();
        let big = Bytes::from(vec![0u8; 2048]);
        let err = pipeline
            .ingest(&tenant, Signal::Logs, Encoding::protobuf(), big)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BodyTooLarge { limit: 1024 }), "{err}");
    }
}
