//! [`redraw_digits`]: the long-stream generator of the miner's tests and benchmarks. A short
//! sample of real log lines, cycled, holds few distinct values; a real stream keeps bringing
//! new ones. Redrawing every run of digits at random (same length, no leading zero made where
//! there was none) makes the sample's lines look like a long stream's: the words stay, the
//! numbers, ids, addresses and counters inside and around them change.

/// A small deterministic random number generator (xorshift64*), so a stream is the same run
/// after run.
#[derive(Clone, Debug)]
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `line` with every run of ASCII digits replaced by random digits of the same length; a run
/// that did not start with `0` does not start with `0` after.
pub fn redraw_digits(line: &str, random: &mut Xorshift) -> String {
    let mut out = String::with_capacity(line.len());
    let mut run_start = true;
    for c in line.chars() {
        if c.is_ascii_digit() {
            let digit = if run_start && c != '0' {
                1 + random.below(9)
            } else {
                random.below(10)
            };
            out.push(char::from(b'0' + digit as u8));
            run_start = false;
        } else {
            out.push(c);
            run_start = true;
        }
    }
    out
}

/// `lines` cycled until `total` lines, every pass after the first with its digits redrawn
/// (the first pass is the sample as it is).
pub fn long_stream<'a>(
    lines: &'a [String],
    total: usize,
    seed: u64,
) -> impl Iterator<Item = String> + 'a {
    let mut random = Xorshift::new(seed);
    (0..total).map(move |i| {
        let line = &lines[i % lines.len()];
        if i < lines.len() {
            line.clone()
        } else {
            redraw_digits(line, &mut random)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_redrawn_and_words_kept() {
        let mut random = Xorshift::new(7);
        let line = "node-217 gige5 link 0x1f up after 30 s (id 007)";
        let a = redraw_digits(line, &mut random);
        let b = redraw_digits(line, &mut random);
        assert_ne!(a, b);
        assert_eq!(a.len(), line.len());
        let shape = |s: &str| s.replace(|c: char| c.is_ascii_digit(), "9");
        assert_eq!(shape(&a), shape(line));
        // A run that did not start with 0 does not start with 0 after.
        let node = a.split_whitespace().next().unwrap();
        assert!(!node.starts_with("node-0"), "{a}");
        let lines = vec!["a 1".to_owned(), "b 2".to_owned()];
        let stream: Vec<String> = long_stream(&lines, 5, 1).collect();
        assert_eq!(&stream[..2], &lines[..]);
        assert_eq!(stream.len(), 5);
        assert!(stream[2].starts_with("a ") && stream[3].starts_with("b "));
    }
}
