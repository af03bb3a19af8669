//! The detector's saved state: a compact binary form, versioned and checksummed.
//!
//! Layout, little-endian: the model version (`u32`), then every field of the model in the
//! fixed order of [`Detector::visit`] (`u64`, `i64` and `f64` in 8 bytes, `f32` in 4), then an
//! FNV-1a 64 checksum of all the bytes before it. Floats are saved bit for bit, so a restored
//! detector continues exactly. One visitor serves both directions, so the two cannot drift
//! apart.

use super::{
    DAILY_BINS, Detector, DetectorConfig, Likelihood, MAX_SENSITIVITY, MIN_SENSITIVITY,
    MODEL_VERSION, PATTERN_DIMS, PATTERN_PROTOTYPES, Range, WEEKLY_BINS,
};
use crate::error::{Error, Result};

/// One field of the state, borrowed for writing or reading.
enum Slot<'a> {
    Count(&'a mut u64),
    Time(&'a mut i64),
    Float(&'a mut f64),
    Floats(&'a mut [f64]),
    Singles(&'a mut [f32]),
    Counts(&'a mut [u64]),
}

impl Slot<'_> {
    fn len(&self) -> usize {
        match self {
            Slot::Count(_) | Slot::Time(_) | Slot::Float(_) => 8,
            Slot::Floats(v) => 8 * v.len(),
            Slot::Singles(v) => 4 * v.len(),
            Slot::Counts(v) => 8 * v.len(),
        }
    }
}

/// Bytes of the model between the version and the checksum: 2 counters, 2 times, 11 scalars,
/// 3 ranges and 4 likelihoods of 3 numbers, the frame, the daily profile (`f32`) and weekly
/// offsets, and the pattern view (7 numbers, its samples and its prototypes' boxes and
/// stamps).
const BODY_LEN: usize = 8 * (2 + 2 + 11 + 3 * 3 + 4 * 3 + 2)
    + 4 * 2 * DAILY_BINS
    + 8 * WEEKLY_BINS
    + 8 * 7
    + 4 * PATTERN_DIMS * (1 + 2 * PATTERN_PROTOTYPES)
    + 8 * PATTERN_PROTOTYPES;
/// Bytes of an encoded detector.
pub(super) const ENCODED_LEN: usize = 4 + BODY_LEN + 8;

impl Detector {
    /// Visits every field of the state in the saved order.
    fn visit(&mut self, f: &mut dyn FnMut(Slot<'_>)) {
        f(Slot::Count(&mut self.points));
        f(Slot::Count(&mut self.scored));
        f(Slot::Time(&mut self.first_time_ms));
        f(Slot::Time(&mut self.last_time_ms));
        for v in [
            &mut self.sensitivity,
            &mut self.level,
            &mut self.level_error,
            &mut self.magnitude,
            &mut self.mean,
            &mut self.spread,
            &mut self.smooth,
            &mut self.season_error,
            &mut self.peak,
            &mut self.previous,
            &mut self.volatility,
        ] {
            f(Slot::Float(v));
        }
        for range in [
            &mut self.value_range,
            &mut self.smooth_range,
            &mut self.volatility_range,
        ] {
            visit_range(range, f);
        }
        for view in [
            &mut self.value_view,
            &mut self.smooth_view,
            &mut self.season_view,
            &mut self.volatility_view,
        ] {
            visit_likelihood(view, f);
        }
        f(Slot::Float(&mut self.frame.origin));
        f(Slot::Float(&mut self.frame.unit));
        f(Slot::Singles(&mut self.daily_mean));
        f(Slot::Singles(&mut self.daily_dev));
        f(Slot::Floats(&mut self.weekly));
        let p = &mut self.pattern;
        f(Slot::Count(&mut p.block_len));
        f(Slot::Float(&mut p.block_max));
        f(Slot::Float(&mut p.block_min));
        f(Slot::Float(&mut p.block_sum));
        f(Slot::Float(&mut p.block_average));
        f(Slot::Count(&mut p.samples_seen));
        f(Slot::Count(&mut p.made));
        f(Slot::Singles(&mut p.samples));
        for (low, high) in p.low.iter_mut().zip(p.high.iter_mut()) {
            f(Slot::Singles(low));
            f(Slot::Singles(high));
        }
        f(Slot::Counts(&mut p.used));
    }
}

fn visit_range(range: &mut Range, f: &mut dyn FnMut(Slot<'_>)) {
    for v in [&mut range.mean, &mut range.high, &mut range.low] {
        f(Slot::Float(v));
    }
}

fn visit_likelihood(view: &mut Likelihood, f: &mut dyn FnMut(Slot<'_>)) {
    for v in [&mut view.short, &mut view.mean, &mut view.var] {
        f(Slot::Float(v));
    }
}

pub(super) fn encode(detector: &Detector) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENCODED_LEN);
    out.extend_from_slice(&MODEL_VERSION.to_le_bytes());
    // The visitor borrows mutably; a copy keeps `encode` taking `&self`.
    let mut copy = detector.clone();
    copy.visit(&mut |slot| match slot {
        Slot::Count(v) => out.extend_from_slice(&v.to_le_bytes()),
        Slot::Time(v) => out.extend_from_slice(&v.to_le_bytes()),
        Slot::Float(v) => out.extend_from_slice(&v.to_le_bytes()),
        Slot::Floats(s) => s
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Slot::Singles(s) => s
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Slot::Counts(s) => s
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
    });
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
    let mut detector = Detector::new(&DetectorConfig::default());
    let mut rest = &body[4..];
    let mut finite = true;
    detector.visit(&mut |slot| {
        let (head, tail) = rest.split_at(slot.len());
        rest = tail;
        let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        match slot {
            Slot::Count(v) => *v = word(head),
            Slot::Time(v) => *v = word(head) as i64,
            Slot::Float(v) => {
                *v = f64::from_bits(word(head));
                finite &= v.is_finite();
            }
            Slot::Floats(s) => {
                for (v, chunk) in s.iter_mut().zip(head.chunks_exact(8)) {
                    *v = f64::from_bits(word(chunk));
                    finite &= v.is_finite();
                }
            }
            Slot::Singles(s) => {
                for (v, chunk) in s.iter_mut().zip(head.chunks_exact(4)) {
                    *v = f32::from_le_bytes(chunk.try_into().expect("4 bytes"));
                    finite &= v.is_finite();
                }
            }
            Slot::Counts(s) => {
                for (v, chunk) in s.iter_mut().zip(head.chunks_exact(8)) {
                    *v = word(chunk);
                }
            }
        }
    });
    if !finite
        || !(MIN_SENSITIVITY..=MAX_SENSITIVITY).contains(&detector.sensitivity)
        || detector.scored > detector.points
        || detector.frame.unit < 0.0
        || detector.volatility < 0.0
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
