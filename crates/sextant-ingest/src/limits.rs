//! Per-tenant rate limits: token buckets for records and bytes per second.
//!
//! A bucket holds at most one second of its rate. A batch is let through whenever the bucket is
//! not in debt, and its full size is taken even if that puts the bucket in debt; so batches
//! larger than one second's allowance still pass, and the average rate holds. A rejected batch
//! takes nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sextant_model::TenantId;

use crate::{Error, RateLimit, Result, TenantLimits};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
}

impl Bucket {
    fn new(rate: u64) -> Bucket {
        Bucket {
            tokens: rate as f64,
            rate: rate as f64,
        }
    }

    fn refill(&mut self, elapsed: f64) {
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
    }

    /// Time until the bucket is out of debt.
    fn wait(&self) -> Option<Duration> {
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

#[derive(Debug)]
struct TenantBuckets {
    limit: RateLimit,
    records: Option<Bucket>,
    bytes: Option<Bucket>,
    last: Instant,
}

/// Rate limiters of all tenants.
#[derive(Debug)]
pub struct TenantRateLimiter {
    limits: TenantLimits,
    buckets: Mutex<HashMap<TenantId, TenantBuckets>>,
}

impl TenantRateLimiter {
    pub fn new(limits: TenantLimits) -> TenantRateLimiter {
        TenantRateLimiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `records` and `bytes` from the tenant's buckets, or says how long to wait.
    pub fn check(&self, tenant: &TenantId, records: u64, bytes: u64) -> Result<()> {
        self.check_at(tenant, records, bytes, Instant::now())
    }

    fn check_at(&self, tenant: &TenantId, records: u64, bytes: u64, now: Instant) -> Result<()> {
        let mut all = self.buckets.lock();
        let buckets = all.entry(tenant.clone()).or_insert_with(|| {
            let limit = self.limits.for_tenant(tenant.as_str());
            TenantBuckets {
                limit,
                records: (limit.records_per_second > 0)
                    .then(|| Bucket::new(limit.records_per_second)),
                bytes: (limit.bytes_per_second > 0).then(|| Bucket::new(limit.bytes_per_second)),
                last: now,
            }
        });
        let elapsed = now.saturating_duration_since(buckets.last).as_secs_f64();
        buckets.last = now;
        for (bucket, what, limit) in [
            (
                &mut buckets.records,
                "records",
                buckets.limit.records_per_second,
            ),
            (&mut buckets.bytes, "bytes", buckets.limit.bytes_per_second),
        ] {
            let Some(bucket) = bucket else { continue };
            bucket.refill(elapsed);
            if let Some(wait) = bucket.wait() {
                return Err(Error::RateLimited {
                    tenant: tenant.to_string(),
                    what,
                    limit,
                    retry_after: wait.max(Duration::from_secs(1)),
                });
            }
        }
        if let Some(bucket) = &mut buckets.records {
            bucket.tokens -= records as f64;
        }
        if let Some(bucket) = &mut buckets.bytes {
            bucket.tokens -= bytes as f64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(records_per_second: u64, bytes_per_second: u64) -> TenantRateLimiter {
        let mut limits = TenantLimits::default();
        limits.tenants.insert(
            "limited".into(),
            RateLimit {
                records_per_second,
                bytes_per_second,
            },
        );
        TenantRateLimiter::new(limits)
    }

    #[test]
    fn unlimited_by_default() {
        let limiter = limiter(10, 10);
        let free = TenantId::new("free").unwrap();
        for _ in 0..100 {
            limiter.check(&free, 1_000_000, 1_000_000).unwrap();
        }
    }

    #[test]
    fn debt_blocks_until_repaid() {
        let limiter = limiter(100, 0);
        let tenant = TenantId::new("limited").unwrap();
        let start = Instant::now();
        // A batch larger than one second's allowance passes once, then puts the bucket in debt.
        limiter.check_at(&tenant, 250, 0, start).unwrap();
        let err = limiter
            .check_at(&tenant, 1, 0, start + Duration::from_millis(500))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::RateLimited {
                    what: "records",
                    ..
                }
            ),
            "{err}"
        );
        // 150 in debt after 0.5 s of refill (100 - 250 + 50 = -100): one more second repays it.
        limiter
            .check_at(&tenant, 1, 0, start + Duration::from_millis(1_501))
            .unwrap();
    }

    #[test]
    fn bytes_are_limited_too() {
        let limiter = limiter(0, 1_000);
        let tenant = TenantId::new("limited").unwrap();
        let now = Instant::now();
        limiter.check_at(&tenant, 1, 1_500, now).unwrap();
        let err = limiter.check_at(&tenant, 1, 1, now).unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    }
}
