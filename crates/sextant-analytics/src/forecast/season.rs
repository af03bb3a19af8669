//! Finding a series' season length from its autocorrelation, and filling gaps (NaN) by linear
//! interpolation so the methods see a complete series.

/// The season length of `history` in steps, at most `max`, or `None` if no lag correlates
/// clearly. The series is detrended (least-squares line) first; among the lags whose
/// autocorrelation is a local peak above 0.3, the shortest one within 80% of the best peak
/// wins, so a daily season is preferred to the weekly one it repeats into. Gaps (NaN) are
/// interpolated first.
pub fn find_season(history: &[f64], max: usize) -> Option<usize> {
    let z = fill_gaps(history)?;
    let n = z.len();
    let max = max.min(n / 2);
    if max < 2 {
        return None;
    }
    let residual = detrended(&z);
    let variance: f64 = residual.iter().map(|r| r * r).sum::<f64>();
    if variance <= 0.0 || !variance.is_finite() {
        return None;
    }
    let acf: Vec<f64> = (0..=max + 1)
        .map(|lag| {
            if lag >= n {
                return 0.0;
            }
            let sum: f64 = residual[lag..]
                .iter()
                .zip(&residual)
                .map(|(a, b)| a * b)
                .sum();
            sum / variance
        })
        .collect();
    let threshold = 0.3f64.max(2.0 / (n as f64).sqrt());
    let peaks: Vec<(usize, f64)> = (2..=max)
        .filter(|&lag| acf[lag] > threshold && acf[lag] >= acf[lag - 1] && acf[lag] >= acf[lag + 1])
        .map(|lag| (lag, acf[lag]))
        .collect();
    let best = peaks.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    peaks
        .iter()
        .find(|p| p.1 >= 0.8 * best)
        .map(|&(lag, _)| lag)
}

/// `z` minus its least-squares line.
pub(crate) fn detrended(z: &[f64]) -> Vec<f64> {
    let (intercept, slope) = least_squares_line(z);
    z.iter()
        .enumerate()
        .map(|(t, v)| v - intercept - slope * t as f64)
        .collect()
}

/// Intercept and slope of the least-squares line through `(t, z[t])`.
pub(crate) fn least_squares_line(z: &[f64]) -> (f64, f64) {
    let n = z.len() as f64;
    if z.len() < 2 {
        return (z.first().copied().unwrap_or(0.0), 0.0);
    }
    let mean_t = (n - 1.0) / 2.0;
    let mean_z = z.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, v) in z.iter().enumerate() {
        let dt = t as f64 - mean_t;
        sxy += dt * (v - mean_z);
        sxx += dt * dt;
    }
    let slope = sxy / sxx;
    (mean_z - slope * mean_t, slope)
}

/// `history` with gaps (non-finite values) filled by linear interpolation between the nearest
/// known values, and leading or trailing gaps by the nearest known value. `None` if nothing is
/// known.
pub(crate) fn fill_gaps(history: &[f64]) -> Option<Vec<f64>> {
    let first = history.iter().position(|v| v.is_finite())?;
    let mut z = history.to_vec();
    let mut last_known = first;
    for t in 0..z.len() {
        if !z[t].is_finite() {
            continue;
        }
        if t > last_known + 1 {
            let (a, b) = (z[last_known], z[t]);
            let span = (t - last_known) as f64;
            for (k, v) in z[last_known + 1..t].iter_mut().enumerate() {
                *v = a + (b - a) * (k + 1) as f64 / span;
            }
        }
        last_known = t;
    }
    let (head, tail) = (z[first], z[last_known]);
    z[..first].iter_mut().for_each(|v| *v = head);
    z[last_known + 1..].iter_mut().for_each(|v| *v = tail);
    Some(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_fill(history: &[f64], expected: Option<&[f64]>) {
        assert_eq!(fill_gaps(history).as_deref(), expected);
    }

    #[test]
    fn gaps_are_interpolated() {
        let nan = f64::NAN;
        check_fill(&[nan, 1.0, nan, 3.0, nan], Some(&[1.0, 1.0, 2.0, 3.0, 3.0]));
        check_fill(&[1.0, nan, nan, 4.0], Some(&[1.0, 2.0, 3.0, 4.0]));
        check_fill(&[nan, f64::INFINITY], None);
        check_fill(&[], None);
    }

    #[test]
    fn daily_season_is_found_under_a_weekly_one() {
        let z: Vec<f64> = (0..24 * 7 * 4)
            .map(|t| {
                let hour = (t % 24) as f64;
                let weekend = if (t / 24) % 7 >= 5 { 0.6 } else { 1.0 };
                100.0
                    + 0.05 * t as f64
                    + 30.0 * weekend * (hour / 24.0 * std::f64::consts::TAU).sin()
            })
            .collect();
        assert_eq!(find_season(&z, 200), Some(24));
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<f64> = (0..500)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 1000) as f64
            })
            .collect();
        assert_eq!(find_season(&noise, 200), None);
        assert_eq!(find_season(&[1.0; 100], 50), None);
        assert_eq!(find_season(&[1.0, 2.0], 50), None);
    }
}
