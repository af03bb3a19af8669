//! Numerical helpers of the detector: the normal distribution's upper tail, on a log scale.

/// `log10` of the probability that a standard normal variable exceeds `z`, accurate to about
/// 1e−7 relative in the tail probability and finite however large `z` is.
pub(super) fn log10_normal_tail(z: f64) -> f64 {
    // Q(z) = erfc(z / √2) / 2, with erfc from its Chebyshev-fitted form (Numerical Recipes'
    // `erfcc`): erfc(x) = t·exp(−x² + P(t)) for x ≥ 0, t = 1 / (1 + x/2).
    let x = z.abs() * std::f64::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let ln_erfc = t.ln() - x * x + poly;
    if z >= 0.0 {
        (ln_erfc - std::f64::consts::LN_2) * std::f64::consts::LOG10_E
    } else {
        (1.0 - 0.5 * ln_erfc.exp()).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(z: f64, tail: f64) {
        let got = 10f64.powf(log10_normal_tail(z));
        assert!(
            (got - tail).abs() <= 1e-6 * tail,
            "Q({z}) = {got}, not {tail}"
        );
    }

    #[test]
    fn tail_matches_tables() {
        check(0.0, 0.5);
        check(1.0, 0.158_655_253_9);
        check(-1.0, 0.841_344_746_1);
        check(3.0, 1.349_898_032e-3);
        check(6.0, 9.865_876_450e-10);
        assert!(log10_normal_tail(1e6).is_finite());
        assert!(log10_normal_tail(-1e6) <= 0.0);
    }
}
