//! The detector's saved state: a compact binary form, versioned and checksummed.
//!
//! Layout, little-endian: the model version (`u32`), then every field of the model in a fixed
//! order (`u64`, `i64` or `f64`, 8 bytes each), then an FNV-1a 64 checksum of all the bytes
//! before it. Floats are saved bit for bit, so a restored detector continues exactly.

use super::{
    DAILY_BINS, Detector, MAX_SENSITIVITY, MIN_SENSITIVITY, MODEL_VERSION, SurpriseStats,
    WEEKLY_BINS,
};
use crate::error::{Error, Result};

/// Fields saved: 2 counters, 2 times, 24 scalars, the daily and weekly offsets.
const FIELDS: usize = 2 + 2 + 24 + DAILY_BINS + WEEKLY_BINS;
/// Bytes of an encoded detector.
pub(super) const ENCODED_LEN: usize = 4 + 8 * FIELDS + 8;

pub(super) fn encode(detector: &Detector) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENCODED_LEN);
    out.extend_from_slice(&MODEL_VERSION.to_le_bytes());
    let d = detector;
    for word in [d.points, d.scored] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for time in [d.first_time_ms, d.last_time_ms] {
        out.extend_from_slice(&time.to_le_bytes());
    }
    let [a0, a1, a2, a3, a4] = d.level_view.fields();
    let [b0, b1, b2, b3, b4] = d.seasonal_view.fields();
    let [c0, c1, c2, c3, c4] = d.range_view.fields();
    let scalars = [
        d.sensitivity,
        d.level,
        d.level_error,
        d.seasonal_level,
        d.seasonal_error,
        d.magnitude,
        d.peak,
        a0,
        a1,
        a2,
        a3,
        a4,
        b0,
        b1,
        b2,
        b3,
        b4,
        d.high,
        d.low,
        c0,
        c1,
        c2,
        c3,
        c4,
    ];
    for value in scalars.iter().chain(&d.daily).chain(&d.weekly) {
        out.extend_from_slice(&value.to_le_bytes());
    }
    debug_assert_eq!(out.len(), ENCODED_LEN - 8);
    let checksum = fnv1a(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

pub(super) fn decode(bytes: &[u8]) -> Result<Detector> {
    let version = bytes.get(..4).ok_or(Error::InvalidState {
        reason: "detector state shorter than its version",
    })?;
    if u32::from_le_bytes(version.try_into().expect("4 bytes")) != MODEL_VERSION {
        return Err(Error::InvalidState {
            reason: "detector state of another model version",
        });
    }
    if bytes.len() != ENCODED_LEN {
        return Err(Error::InvalidState {
            reason: "detector state of the wrong length",
        });
    }
    let (body, checksum) = bytes.split_at(ENCODED_LEN - 8);
    if fnv1a(body).to_le_bytes() != checksum {
        return Err(Error::InvalidState {
            reason: "detector state fails its checksum",
        });
    }
    let mut words = body[4..]
        .chunks_exact(8)
        .map(|chunk| u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
    let mut next = || words.next().unwrap_or(0);
    let points = next();
    let scored = next();
    let first_time_ms = next() as i64;
    let last_time_ms = next() as i64;
    let mut float = || f64::from_bits(next());
    let mut detector = Detector {
        points,
        scored,
        first_time_ms,
        last_time_ms,
        sensitivity: float(),
        level: float(),
        level_error: float(),
        seasonal_level: float(),
        seasonal_error: float(),
        magnitude: float(),
        peak: float(),
        level_view: SurpriseStats::from_fields([float(), float(), float(), float(), float()]),
        seasonal_view: SurpriseStats::from_fields([float(), float(), float(), float(), float()]),
        high: float(),
        low: float(),
        range_view: SurpriseStats::from_fields([float(), float(), float(), float(), float()]),
        daily: [0.0; DAILY_BINS],
        weekly: [0.0; WEEKLY_BINS],
    };
    for slot in detector.daily.iter_mut().chain(detector.weekly.iter_mut()) {
        *slot = float();
    }
    let finite = [
        detector.level,
        detector.level_error,
        detector.seasonal_level,
        detector.seasonal_error,
        detector.magnitude,
        detector.peak,
    ]
    .iter()
    .chain(&detector.level_view.fields())
    .chain(&detector.seasonal_view.fields())
    .chain(&detector.range_view.fields())
    .chain(&[detector.high, detector.low])
    .chain(&detector.daily)
    .chain(&detector.weekly)
    .all(|v| v.is_finite());
    if !finite
        || !(MIN_SENSITIVITY..=MAX_SENSITIVITY).contains(&detector.sensitivity)
        || scored > points
    {
        return Err(Error::InvalidState {
            reason: "detector state holds impossible values",
        });
    }
    Ok(detector)
}

/// FNV-1a, 64 bits: a cheap check that the bytes were not damaged.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
