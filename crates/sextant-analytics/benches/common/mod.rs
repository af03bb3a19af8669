//! The Loghub 2k samples, as the miner's benchmarks and its long-stream test read them.

// Each target that includes this module uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub const SYSTEMS: [&str; 16] = [
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

pub fn datasets_dir() -> PathBuf {
    std::env::var_os("SEXTANT_DATASETS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets"),
        PathBuf::from,
    )
}

/// The `Content` column of one system's corrected structured CSV.
pub fn contents(labels: &Path, system: &str) -> Vec<String> {
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

/// One system's raw sample lines (`SYSTEM_2k.log`), as a stream would carry them.
pub fn raw_lines(datasets: &Path, system: &str) -> Vec<String> {
    let path = datasets
        .join("loghub-2k")
        .join(system)
        .join(format!("{system}_2k.log"));
    let text =
        std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}
