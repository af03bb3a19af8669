//! The detector on the Numenta Anomaly Benchmark: a fresh default `Detector` per file, scored
//! for NAB's three profiles with one threshold per profile over the corpus.
//!
//! Run with `cargo test -p sextant-analytics --release --test nab -- --nocapture` to see the
//! table. Reads `../../../shared/datasets/nab` beside the crate (or `$SEXTANT_DATASETS/nab`);
//! skips with a printed reason when it is missing. Tuning aid: `SEXTANT_NAB_CONFIGS` may hold
//! a JSON list of detector configs to score as well (printed, not asserted);
//! `SEXTANT_NAB_VERBOSE=1` prints each file's score on the standard profile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sextant_analytics::anomaly::{Detector, DetectorConfig};
use sextant_analytics::nab::{self, CorpusScore, CostProfile, ScoredFile};

/// Floors a little below what the default detector scores, so a regression fails.
/// Measured: standard 72.63, low FP 65.86, low FN 77.15.
const FLOORS: [(&str, f64); 3] = [
    ("standard", 71.5),
    ("reward_low_FP_rate", 64.5),
    ("reward_low_FN_rate", 76.0),
];

struct DataFile {
    name: String,
    times: Vec<i64>,
    values: Vec<f64>,
    windows: Vec<(i64, i64)>,
}

fn nab_dir() -> PathBuf {
    std::env::var_os("SEXTANT_DATASETS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/nab"),
        |dir| PathBuf::from(dir).join("nab"),
    )
}

fn load(dir: &Path) -> (Vec<DataFile>, BTreeMap<String, CostProfile>) {
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let windows = nab::parse_windows(&read(dir.join("labels/combined_windows.json"))).unwrap();
    let profiles = nab::parse_profiles(&read(dir.join("config/profiles.json"))).unwrap();
    let files = windows
        .iter()
        .map(|(name, windows)| {
            let (times, values) = nab::parse_csv(&read(dir.join("data").join(name))).unwrap();
            DataFile {
                name: name.clone(),
                times,
                values,
                windows: windows.clone(),
            }
        })
        .collect();
    (files, profiles)
}

/// Each file's scores from a fresh detector.
fn run(files: &[DataFile], config: &DetectorConfig) -> Vec<Vec<f64>> {
    files
        .iter()
        .map(|file| {
            let mut detector = Detector::new(config);
            file.times
                .iter()
                .zip(&file.values)
                .map(|(&t, &v)| detector.update(config, t, v).score)
                .collect()
        })
        .collect()
}

fn score_all(
    files: &[DataFile],
    scores: &[Vec<f64>],
    profiles: &BTreeMap<String, CostProfile>,
) -> BTreeMap<String, CorpusScore> {
    let scored: Vec<ScoredFile<'_>> = files
        .iter()
        .zip(scores)
        .map(|(file, scores)| ScoredFile {
            name: &file.name,
            timestamps: &file.times,
            scores,
            windows: &file.windows,
        })
        .collect();
    profiles
        .iter()
        .map(|(name, profile)| (name.clone(), nab::score(&scored, profile).unwrap()))
        .collect()
}

fn print_table(label: &str, results: &BTreeMap<String, CorpusScore>) {
    println!("{label}");
    println!(
        "  {:<20} {:>7} {:>10} {:>9} {:>8} {:>5}",
        "profile", "score", "threshold", "raw", "windows", "FPs"
    );
    for (name, r) in results {
        println!(
            "  {:<20} {:>7.2} {:>10.6} {:>9.3} {:>4}/{:<3} {:>5}",
            name,
            r.normalized,
            r.threshold,
            r.raw,
            r.detected_windows,
            r.windows,
            r.false_positives
        );
    }
}

#[test]
fn default_detector_scores_on_nab() {
    let dir = nab_dir();
    if !dir.join("labels/combined_windows.json").exists() {
        println!("skipped: NAB not found at {}", dir.display());
        return;
    }
    let (files, profiles) = load(&dir);
    assert_eq!(files.len(), 58);
    let points: usize = files.iter().map(|f| f.values.len()).sum();

    let config = DetectorConfig::default();
    let started = Instant::now();
    let scores = run(&files, &config);
    let elapsed = started.elapsed();
    let results = score_all(&files, &scores, &profiles);
    print_table(
        &format!("default detector, {points} points in {elapsed:.2?}"),
        &results,
    );

    if std::env::var_os("SEXTANT_NAB_VERBOSE").is_some() {
        let standard = &profiles["standard"];
        let threshold = results["standard"].threshold;
        let scored: Vec<ScoredFile<'_>> = files
            .iter()
            .zip(&scores)
            .map(|(file, scores)| ScoredFile {
                name: &file.name,
                timestamps: &file.times,
                scores,
                windows: &file.windows,
            })
            .collect();
        let per_file = nab::file_scores(&scored, standard, threshold).unwrap();
        for (file, raw) in files.iter().zip(per_file) {
            println!("  {:>7.3} {:>2} {}", raw, file.windows.len(), file.name);
        }
    }

    if let Ok(json) = std::env::var("SEXTANT_NAB_CONFIGS") {
        let configs: Vec<DetectorConfig> = serde_json::from_str(&json).unwrap();
        for (i, config) in configs.iter().enumerate() {
            config.validate().unwrap();
            let scores = run(&files, config);
            let results = score_all(&files, &scores, &profiles);
            print_table(&format!("config {i}: {config:?}"), &results);
        }
    }

    for (profile, floor) in FLOORS {
        let got = results[profile].normalized;
        assert!(got >= floor, "{profile}: {got:.2} under the floor {floor}");
    }
}

#[test]
fn windows_at_their_start_score_about_one_hundred() {
    let dir = nab_dir();
    if !dir.join("labels/combined_windows.json").exists() {
        println!("skipped: NAB not found at {}", dir.display());
        return;
    }
    let (files, profiles) = load(&dir);
    // A detector that fires exactly at each window's first row and nowhere else.
    let scores: Vec<Vec<f64>> = files
        .iter()
        .map(|file| {
            let mut scores = vec![0.0; file.times.len()];
            for &(start, _) in &file.windows {
                scores[file.times.partition_point(|&t| t < start)] = 1.0;
            }
            scores
        })
        .collect();
    for (name, result) in score_all(&files, &scores, &profiles) {
        assert!(
            (result.normalized - 100.0).abs() < 1e-9,
            "{name}: {}",
            result.normalized
        );
    }
    // And a detector that never fires scores 0.
    let zeros: Vec<Vec<f64>> = files.iter().map(|f| vec![0.0; f.times.len()]).collect();
    for (name, result) in score_all(&files, &zeros, &profiles) {
        assert_eq!(result.normalized, 0.0, "{name}");
    }
}
