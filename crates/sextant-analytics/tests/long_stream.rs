//! The miner on a long stream whose values keep changing: each Loghub 2k sample cycled three
//! times with its digits redrawn ([`long_stream`]) makes few templates beyond the first pass.
//! (`cargo bench -p sextant-analytics --bench long_stream` runs the million-line version.)

use sextant_analytics::patterns::{MinerConfig, TemplateMiner, long_stream};

#[path = "../benches/common/mod.rs"]
mod common;
use common::{SYSTEMS, datasets_dir, raw_lines};

#[test]
fn new_values_make_few_new_templates() {
    let (mut first_all, mut end_all) = (0, 0);
    let mut report = Vec::new();
    for (n, system) in SYSTEMS.iter().enumerate() {
        let lines = raw_lines(&datasets_dir(), system);
        let mut miner = TemplateMiner::new(MinerConfig::default()).unwrap();
        let mut first_pass = 0;
        for (at, line) in long_stream(&lines, 3 * lines.len(), n as u64 + 1).enumerate() {
            miner.mine(&line, at as i64);
            if at + 1 == lines.len() {
                first_pass = miner.len();
            }
        }
        report.push((system, first_pass, miner.len()));
        first_all += first_pass;
        end_all += miner.len();
    }
    let ratio = end_all as f64 / first_all as f64;
    println!("{report:?}\nall: {first_all} -> {end_all} ({ratio:.2}x)");
    // Before numbers inside words were taken for values: 1.35x over these 96,000 lines
    // (Thunderbird 2.4x); then 1.06x; with single digits in capitalised words (`SOCKS5`,
    // `PSR0`) made values by enough variants, 1.04x (Thunderbird 1.26x, still converging:
    // 1.11x at a million lines).
    assert!(ratio <= 1.06, "{report:?}: all {ratio:.2}x");
    for (system, first, end) in &report {
        assert!(
            *end as f64 <= 1.3 * *first as f64,
            "{system}: {first} -> {end}"
        );
    }
}
