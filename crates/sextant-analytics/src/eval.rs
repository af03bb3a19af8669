//! Scoring a log parser against ground truth: grouping accuracy and parsing accuracy.
//!
//! Both are shares of lines in `[0, 1]`; no lines score 1 (nothing is wrong).

use std::hash::Hash;

use foldhash::HashMap;

use crate::error::{Error, Result};

/// Grouping accuracy (GA): the share of lines whose predicted group holds exactly the same
/// lines as their ground-truth group. A predicted group counts whole or not at all.
pub fn grouping_accuracy<P, T>(predicted: &[P], truth: &[T]) -> Result<f64>
where
    P: Hash + Eq,
    T: Hash + Eq,
{
    check_lengths(predicted.len(), truth.len())?;
    if predicted.is_empty() {
        return Ok(1.0);
    }
    let mut truth_sizes: HashMap<&T, usize> = HashMap::default();
    for label in truth {
        *truth_sizes.entry(label).or_default() += 1;
    }
    // Per predicted group: its size, and its one true label if all members share one.
    let mut groups: HashMap<&P, (usize, Option<&T>, bool)> = HashMap::default();
    for (group, label) in predicted.iter().zip(truth) {
        let entry = groups.entry(group).or_insert((0, Some(label), true));
        entry.0 += 1;
        if entry.1 != Some(label) {
            entry.2 = false;
        }
    }
    let correct: usize = groups
        .values()
        .filter_map(|&(size, label, pure)| {
            let label = label?;
            (pure && truth_sizes[label] == size).then_some(size)
        })
        .sum();
    Ok(correct as f64 / predicted.len() as f64)
}

/// Parsing accuracy (PA): the share of lines whose predicted template equals the true one
/// once runs of whitespace are made one space and the ends trimmed.
pub fn parsing_accuracy<A, B>(predicted: &[A], truth: &[B]) -> Result<f64>
where
    A: AsRef<str>,
    B: AsRef<str>,
{
    check_lengths(predicted.len(), truth.len())?;
    if predicted.is_empty() {
        return Ok(1.0);
    }
    let correct = predicted
        .iter()
        .zip(truth)
        .filter(|(a, b)| same_modulo_whitespace(a.as_ref(), b.as_ref()))
        .count();
    Ok(correct as f64 / predicted.len() as f64)
}

/// Whether `a` and `b` have the same whitespace-separated words.
pub fn same_modulo_whitespace(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

fn check_lengths(predicted: usize, truth: usize) -> Result<()> {
    if predicted == truth {
        Ok(())
    } else {
        Err(Error::LengthMismatch { predicted, truth })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(predicted: &[u32], truth: &[&str], expected: f64) {
        let got = grouping_accuracy(predicted, truth).unwrap();
        assert!(
            (got - expected).abs() < 1e-9,
            "{predicted:?} {truth:?}: {got}"
        );
    }

    #[test]
    fn grouping() {
        check(&[], &[], 1.0);
        check(&[1, 1, 2], &["a", "a", "b"], 1.0);
        // Ids need not match labels, only the partition counts.
        check(&[7, 7, 3], &["x", "x", "y"], 1.0);
        // Split true group: both halves wrong; the other group right.
        check(&[1, 2, 3], &["a", "a", "b"], 1.0 / 3.0);
        // Merged groups: all wrong.
        check(&[1, 1, 1], &["a", "a", "b"], 0.0);
        check(&[1, 1, 2, 2], &["a", "a", "b", "c"], 0.5);
    }

    #[test]
    fn parsing() {
        let got = parsing_accuracy(&["a <*>  b", "x", " c d "], &["a <*> b", "y", "c d"]).unwrap();
        assert!((got - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            parsing_accuracy(&["a"], &["a", "b"]),
            Err(Error::LengthMismatch {
                predicted: 1,
                truth: 2
            })
        );
    }
}
