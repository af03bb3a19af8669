//! Run with `cargo bench -p sextant-analytics --bench template_miner`: mines the 32,000
//! loghub-2k lines (the `Content` column of all 16 systems) and prints lines per second.
//!
//! Reads `../shared/datasets/loghub-2k-corrected` beside the workspace (or `$SEXTANT_DATASETS`).
//! One fresh miner per system, as the accuracy evaluation does; the figure is the best of
//! several rounds so one slow round (another process on the core) does not decide it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sextant_analytics::patterns::{MinerConfig, TemplateMiner};

const SYSTEMS: [&str; 16] = [
    "Android",
    "Apache",
    "BGL",
    "HDFS",
    "HPC",
    "Hadoop",
    "HealthApp",
    "Linux",
    "Mac",
    "OpenSSH",
    "OpenStack",
    "Proxifier",
    "Spark",
    "Thunderbird",
    "Windows",
    "Zookeeper",
];

fn datasets_dir() -> PathBuf {
    std::env::var_os("SEXTANT_DATASETS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets"),
        PathBuf::from,
    )
}

/// The `Content` column of one system's corrected structured CSV.
fn contents(labels: &Path, system: &str) -> Vec<String> {
    let path = labels
        .join(system)
        .join(format!("{system}_2k.log_structured_corrected.csv"));
    let mut reader = csv::Reader::from_path(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let content = reader
        .headers()
        .unwrap()
        .iter()
        .position(|name| name == "Content")
        .expect("a `Content` column");
    reader
        .byte_records()
        .map(|record| String::from_utf8_lossy(&record.unwrap()[content]).into_owned())
        .collect()
}

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
