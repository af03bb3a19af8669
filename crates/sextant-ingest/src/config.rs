//! Ingest settings: size limits, the memory budget, and per-tenant rate limits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `[ingest]` section of the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest request body accepted, in bytes, both as sent and after gzip decompression.
    /// Larger requests get 413. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Request bytes held in memory at once across all tenants (being decoded or waiting for
    /// the write-ahead log). Beyond it requests get 429 with `Retry-After`. Default 256 MiB.
    pub max_in_flight_bytes: usize,
    /// Requests handled at once (reading, decoding or waiting). Beyond it requests get 429.
    /// Together with `max_body_bytes` this bounds memory. Default 256.
    pub max_concurrent_requests: usize,
    /// Per-tenant rate limits.
    pub limits: TenantLimits,
}

impl Default for IngestConfig {
    fn default() -> IngestConfig {
        IngestConfig {
            max_body_bytes: 16 * 1024 * 1024,
            max_in_flight_bytes: 256 * 1024 * 1024,
            max_concurrent_requests: 256,
            limits: TenantLimits::default(),
        }
    }
}

impl IngestConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 {
            return Err("ingest.max_body_bytes must be greater than 0".into());
        }
        if self.max_in_flight_bytes < self.max_body_bytes {
            return Err(format!(
                "ingest.max_in_flight_bytes ({}) must be at least ingest.max_body_bytes ({})",
                self.max_in_flight_bytes, self.max_body_bytes
            ));
        }
        if self.max_concurrent_requests == 0 {
            return Err("ingest.max_concurrent_requests must be greater than 0".into());
        }
        for name in self.limits.tenants.keys() {
            sextant_model::TenantId::new(name)
                .map_err(|e| format!("ingest.limits.tenants: {e}"))?;
        }
        Ok(())
    }
}

/// A rate limit; 0 turns a dimension off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Records (log records, spans, metric data points) per second. Default 0 (off).
    pub records_per_second: u64,
    /// Request bytes (as decoded, before compression) per second. Default 0 (off).
    pub bytes_per_second: u64,
}

/// The `[ingest.limits]` section: a default for every tenant and overrides by tenant name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimits {
    /// Records per second of every tenant without an override. Default 0 (off).
    pub records_per_second: u64,
    /// Request bytes per second of every tenant without an override. Default 0 (off).
    pub bytes_per_second: u64,
    /// `[ingest.limits.tenants.NAME]`: the limit of one tenant, replacing the default.
    pub tenants: BTreeMap<String, RateLimit>,
}

impl TenantLimits {
    /// The limit that applies to `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> RateLimit {
        self.tenants.get(tenant).copied().unwrap_or(RateLimit {
            records_per_second: self.records_per_second,
            bytes_per_second: self.bytes_per_second,
        })
    }
}
