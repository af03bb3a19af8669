//! Run with `cargo bench -p sextant-analytics --bench long_stream`: does the miner's template
//! count stay put on a long stream whose values keep changing? Each of the 16 Loghub 2k
//! samples (raw lines, as a stream carries them) is cycled to `LONG_STREAM_LINES` lines in all
//! (default 1,000,000, spread evenly over the systems), every pass after the first with its
//! digits redrawn at random ([`long_stream`]), through one miner per system. Prints per system
//! the templates after the first pass and at the end, their ratio, the ids handed out to lines
//! and how many of them still resolve to a template, and lines per second.
//! `LONG_STREAM_SHOW=BGL` also prints that system's templates made after the first pass.

use std::collections::BTreeSet;
use std::time::Instant;

use sextant_analytics::patterns::{MinerConfig, TemplateMiner, long_stream};

mod common;
use common::{SYSTEMS, datasets_dir, raw_lines};

fn main() {
    let total: usize = std::env::var("LONG_STREAM_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let per_system = total / SYSTEMS.len();
    let datasets = datasets_dir();
    let show = std::env::var("LONG_STREAM_SHOW").unwrap_or_default();
    println!(
        "{:<12} {:>7} {:>7} {:>6} {:>9} {:>9} {:>10}",
        "system", "pass 1", "end", "ratio", "ids", "resolved", "lines/s"
    );
    let (mut first_all, mut end_all, mut worst) = (0, 0, 0.0f64);
    for (n, system) in SYSTEMS.iter().enumerate() {
        let lines = raw_lines(&datasets, system);
        let mut miner = TemplateMiner::new(MinerConfig::default()).unwrap();
        let mut ids = BTreeSet::new();
        let (mut first_pass, mut first_ids) = (0, BTreeSet::new());
        let started = Instant::now();
        for (at, line) in long_stream(&lines, per_system, n as u64 + 1).enumerate() {
            ids.insert(miner.mine(&line, at as i64).id);
            if at + 1 == lines.len() {
                first_pass = miner.len();
                first_ids = miner.templates().map(|t| t.id()).collect();
            }
        }
        if show == *system {
            for template in miner.templates().filter(|t| !first_ids.contains(&t.id())) {
                println!("  new: {} ({} lines)", template.text(), template.count());
            }
        }
        let rate = per_system as f64 / started.elapsed().as_secs_f64();
        let resolved: BTreeSet<_> = ids.iter().filter_map(|&id| miner.resolve(id)).collect();
        let ratio = miner.len() as f64 / first_pass.max(1) as f64;
        worst = worst.max(ratio);
        first_all += first_pass;
        end_all += miner.len();
        println!(
            "{system:<12} {first_pass:>7} {:>7} {ratio:>6.2} {:>9} {:>9} {rate:>10.0}",
            miner.len(),
            ids.len(),
            resolved.len()
        );
    }
    println!(
        "long_stream: {total} lines, templates {first_all} after the first pass, {end_all} at \
         the end ({:.2}x), worst system {worst:.2}x",
        end_all as f64 / first_all.max(1) as f64
    );
}
