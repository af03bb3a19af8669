//! Run with `cargo bench -p sextant-analytics --bench template_miner`: mines the 32,000
//! loghub-2k lines (the `Content` column of all 16 systems) and prints lines per second.
//!
//! Reads `../shared/datasets/loghub-2k-corrected` beside the workspace (or `$SEXTANT_DATASETS`).
//! One fresh miner per system, as the accuracy evaluation does; the figure is the best of
//! several rounds so one slow round (another process on the core) does not decide it.

use std::time::{Duration, Instant};

use sextant_analytics::patterns::{MinerConfig, TemplateMiner};

mod common;
use common::{SYSTEMS, contents, datasets_dir};

fn mine_all(systems: &[Vec<String>]) -> u64 {
    let mut templates = 0;
    for lines in systems {
        let mut miner = TemplateMiner::new(MinerConfig::default()).unwrap();
        for (at, line) in lines.iter().enumerate() {
            std::hint::black_box(miner.mine(line, at as i64));
        }
        templates += miner.len() as u64;
    }
    templates
}

fn main() {
    let labels = datasets_dir().join("loghub-2k-corrected");
    let systems: Vec<Vec<String>> = SYSTEMS
        .iter()
        .map(|system| contents(&labels, system))
        .collect();
    let lines: usize = systems.iter().map(Vec::len).sum();
    let templates = mine_all(&systems);
    let mut best = Duration::MAX;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let round = Instant::now();
        std::hint::black_box(mine_all(&systems));
        best = best.min(round.elapsed());
    }
    let rate = lines as f64 / best.as_secs_f64();
    println!(
        "template_miner: {lines} lines, {templates} templates, best round {:.2} ms, {:.0} lines/s",
        best.as_secs_f64() * 1e3,
        rate
    );
}
