//! Exponential smoothing (damped trend, optionally additive seasonality) with its parameters
//! fit by minimising the in-sample one-step squared error (Nelder-Mead on a bounded box).

/// Fitted smoothing parameters, each in `[0, 1]`; `gamma` is unused without a season.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Smoothing {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub phi: f64,
    /// Whether the trend is used at all (`false`: simple exponential smoothing).
    pub trend: bool,
}

/// The state after running the recursions over a series.
struct Run {
    level: f64,
    slope: f64,
    seasonal: Vec<f64>,
    /// Mean squared one-step error.
    mse: f64,
}

/// Runs the recursions over `z` with season `m` (0 for none) and returns the final state.
fn run(z: &[f64], m: usize, p: &Smoothing) -> Run {
    let n = z.len();
    let (mut level, mut slope, mut seasonal) = initial_state(z, m);
    if !p.trend {
        slope = 0.0;
    }
    let phi = if p.trend { p.phi } else { 0.0 };
    let mut sse = 0.0;
    let mut count = 0usize;
    for (t, &y) in z.iter().enumerate() {
        let s = if m > 0 { seasonal[t % m] } else { 0.0 };
        let predicted = level + phi * slope + s;
        let error = y - predicted;
        if t >= m.max(1) {
            sse += error * error;
            count += 1;
        }
        let new_level = level + phi * slope + p.alpha * error;
        if p.trend {
            slope = phi * slope + p.beta * error;
        }
        level = new_level;
        if m > 0 {
            seasonal[t % m] = s + p.gamma * error;
        }
    }
    // Rotate so that seasonal[0] belongs to the first step after the series.
    if m > 0 {
        seasonal.rotate_left(n % m);
    }
    Run {
        level,
        slope,
        seasonal,
        mse: if count > 0 { sse / count as f64 } else { 0.0 },
    }
}

/// Level, slope and seasonal indices from the first cycles of `z`.
fn initial_state(z: &[f64], m: usize) -> (f64, f64, Vec<f64>) {
    let n = z.len();
    if m == 0 || n < 2 * m {
        let k = n.min(10);
        let level = z[0];
        let slope = if k > 1 {
            (z[k - 1] - z[0]) / (k - 1) as f64
        } else {
            0.0
        };
        return (level, slope, vec![0.0; m]);
    }
    let cycles = (n / m).min(4);
    let means: Vec<f64> = (0..cycles)
        .map(|c| z[c * m..(c + 1) * m].iter().sum::<f64>() / m as f64)
        .collect();
    let slope = (means[cycles - 1] - means[0]) / ((cycles - 1) * m) as f64;
    let mut seasonal = vec![0.0; m];
    for (c, mean) in means.iter().enumerate() {
        for (i, s) in seasonal.iter_mut().enumerate() {
            let trend_here = mean + slope * (i as f64 - (m as f64 - 1.0) / 2.0);
            *s += (z[c * m + i] - trend_here) / cycles as f64;
        }
    }
    let level = means[0] - slope * (m as f64 - 1.0) / 2.0 - slope;
    (level, slope, seasonal)
}

/// Fits the smoothing parameters for `z` with season `m` (0 for none).
pub(crate) fn fit(z: &[f64], m: usize, trend: bool) -> Smoothing {
    // The search runs over [0, 1] per used parameter: alpha, then beta (a share of alpha) and
    // phi (0.8 to 0.98) with a trend, then gamma (a share of 1 - alpha) with a season.
    let to_params = |x: &[f64]| -> Smoothing {
        let alpha = x[0].clamp(0.0001, 0.9999);
        let (beta, phi) = if trend {
            (
                x[1].clamp(0.0, 1.0) * alpha,
                0.8 + 0.18 * x[2].clamp(0.0, 1.0),
            )
        } else {
            (0.0, 0.0)
        };
        let gamma = if m > 0 {
            x[x.len() - 1].clamp(0.0, 1.0) * (1.0 - alpha)
        } else {
            0.0
        };
        Smoothing {
            alpha,
            beta,
            gamma,
            phi,
            trend,
        }
    };
    let objective = |x: &[f64]| -> f64 {
        let outside: f64 = x
            .iter()
            .map(|&v| (v.min(0.0)).powi(2) + (v - 1.0).max(0.0).powi(2))
            .sum();
        run(z, m, &to_params(x)).mse * (1.0 + 100.0 * outside)
    };
    let mut start = vec![0.3];
    if trend {
        start.extend([0.1, 0.8]);
    }
    if m > 0 {
        start.push(0.1);
    }
    let budget = 30 * start.len();
    let best = nelder_mead(&objective, &start, 0.2, budget);
    to_params(&best)
}

/// Forecasts `horizon` steps after `z` with the parameters `p` and season `m` (0 for none).
pub(crate) fn predict(z: &[f64], m: usize, p: &Smoothing, horizon: usize) -> Vec<f64> {
    let state = run(z, m, p);
    let mut damped = 0.0;
    let mut power = 1.0;
    (0..horizon)
        .map(|h| {
            if p.trend {
                power *= p.phi;
                damped += power;
            }
            let s = if m > 0 { state.seasonal[h % m] } else { 0.0 };
            state.level + damped * state.slope + s
        })
        .collect()
}

/// Minimises `f` from `start` with the Nelder-Mead simplex method, at most `budget` evaluations.
fn nelder_mead(f: &dyn Fn(&[f64]) -> f64, start: &[f64], step: f64, budget: usize) -> Vec<f64> {
    let d = start.len();
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(d + 1);
    simplex.push((start.to_vec(), f(start)));
    for i in 0..d {
        let mut x = start.to_vec();
        x[i] += if x[i] + step <= 1.0 { step } else { -step };
        let v = f(&x);
        simplex.push((x, v));
    }
    let mut evaluations = d + 1;
    while evaluations < budget {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        if (simplex[d].1 - simplex[0].1).abs() <= 1e-10 * simplex[0].1.abs().max(1e-300) {
            break;
        }
        let mut centroid = vec![0.0; d];
        for (x, _) in &simplex[..d] {
            for (c, v) in centroid.iter_mut().zip(x) {
                *c += v / d as f64;
            }
        }
        let towards = |t: f64| -> Vec<f64> {
            centroid
                .iter()
                .zip(&simplex[d].0)
                .map(|(c, w)| c + t * (w - c))
                .collect()
        };
        let reflected = towards(-1.0);
        let fr = f(&reflected);
        evaluations += 1;
        if fr < simplex[0].1 {
            let expanded = towards(-2.0);
            let fe = f(&expanded);
            evaluations += 1;
            simplex[d] = if fe < fr {
                (expanded, fe)
            } else {
                (reflected, fr)
            };
        } else if fr < simplex[d - 1].1 {
            simplex[d] = (reflected, fr);
        } else {
            let contracted = if fr < simplex[d].1 {
                towards(-0.5)
            } else {
                towards(0.5)
            };
            let fc = f(&contracted);
            evaluations += 1;
            if fc < fr.min(simplex[d].1) {
                simplex[d] = (contracted, fc);
            } else {
                let best = simplex[0].0.clone();
                for (x, v) in simplex.iter_mut().skip(1) {
                    for (xi, bi) in x.iter_mut().zip(&best) {
                        *xi = bi + 0.5 * (*xi - bi);
                    }
                    *v = f(x);
                    evaluations += 1;
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex.swap_remove(0).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nelder_mead_finds_a_quadratic_minimum() {
        let f = |x: &[f64]| (x[0] - 0.3).powi(2) + (x[1] - 0.7).powi(2);
        let x = nelder_mead(&f, &[0.5, 0.5], 0.2, 400);
        assert!(
            (x[0] - 0.3).abs() < 1e-3 && (x[1] - 0.7).abs() < 1e-3,
            "{x:?}"
        );
    }

    #[test]
    fn seasonal_smoothing_continues_a_clean_season() {
        let z: Vec<f64> = (0..240)
            .map(|t| 10.0 + 0.01 * t as f64 + [0.0, 1.0, 3.0, 1.0][t % 4])
            .collect();
        let p = fit(&z, 4, true);
        let f = predict(&z, 4, &p, 8);
        for (h, v) in f.iter().enumerate() {
            let expected = 10.0 + 0.01 * (240 + h) as f64 + [0.0, 1.0, 3.0, 1.0][h % 4];
            assert!((v - expected).abs() < 0.1, "step {h}: {v} vs {expected}");
        }
    }
}
