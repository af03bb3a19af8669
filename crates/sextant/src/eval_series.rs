//! `sextant eval nab` and `sextant eval m4`: the anomaly detector on the Numenta Anomaly
//! Benchmark and the forecaster on M4's hourly series, scored the benchmarks' own way, with
//! one configuration (the defaults) for the whole corpus.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use sextant_analytics::anomaly::{Detector, DetectorConfig};
use sextant_analytics::forecast::{ForecastConfig, forecast, mase, parse_m4_csv, smape};
use sextant_analytics::nab::{self, ScoredFile};

/// The three profiles NAB reports, in its order.
const NAB_PROFILES: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];

struct NabFile {
    name: String,
    times: Vec<i64>,
    values: Vec<f64>,
    windows: Vec<(i64, i64)>,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
}

/// The corpus's data files, as `<category>/<file>.csv`, sorted.
fn nab_files(data: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for category in
        std::fs::read_dir(data).with_context(|| format!("cannot read `{}`", data.display()))?
    {
        let category = category?;
        if !category.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(category.path())? {
            let file = file?.file_name().to_string_lossy().into_owned();
            if file.ends_with(".csv") {
                names.push(format!("{}/{file}", category.file_name().to_string_lossy()));
            }
        }
    }
    names.sort();
    Ok(names)
}

pub fn nab(dir: &Path) -> anyhow::Result<()> {
    let windows = nab::parse_windows(&read(&dir.join("labels/combined_windows.json"))?)?;
    let profiles = nab::parse_profiles(&read(&dir.join("config/profiles.json"))?)?;
    let mut files = Vec::new();
    for name in nab_files(&dir.join("data"))? {
        let (times, values) = nab::parse_csv(&read(&dir.join("data").join(&name))?)
            .with_context(|| format!("`{name}`"))?;
        let windows = windows
            .get(&name)
            .with_context(|| format!("`{name}` has no entry in the labels"))?
            .clone();
        files.push(NabFile {
            name,
            times,
            values,
            windows,
        });
    }
    if files.is_empty() {
        bail!("no data files under `{}`", dir.join("data").display());
    }
    let config = DetectorConfig::default();
    let started = Instant::now();
    let scores: Vec<Vec<f64>> = files
        .iter()
        .map(|file| {
            let mut detector = Detector::new(&config);
            file.times
                .iter()
                .zip(&file.values)
                .map(|(&time, &value)| detector.update(&config, time, value).score)
                .collect()
        })
        .collect();
    let elapsed = started.elapsed();
    let points: usize = files.iter().map(|f| f.values.len()).sum();
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
    println!(
        "NAB: {} files, {points} points, detector `{}` (default configuration) in {:.2} s",
        files.len(),
        sextant_analytics::anomaly::METHOD,
        elapsed.as_secs_f64()
    );
    println!(
        "{:<20} {:>7} {:>10} {:>9} {:>5}",
        "profile", "score", "threshold", "windows", "FPs"
    );
    for name in NAB_PROFILES {
        let profile = profiles
            .get(name)
            .with_context(|| format!("profile `{name}` missing from profiles.json"))?;
        let result = nab::score(&scored, profile)?;
        println!(
            "{:<20} {:>7.2} {:>10.6} {:>5}/{:<3} {:>5}",
            name,
            result.normalized,
            result.threshold,
            result.detected_windows,
            result.windows,
            result.false_positives
        );
    }
    println!(
        "published (standard / low FP / low FN): ARTime 74.9 / 65.1 / 80.4; Numenta HTM 70.5 / \
         62.6 / 75.2; CAD OSE 69.9 / 67.0 / 73.2"
    );
    Ok(())
}

/// M4's horizon and season for hourly series.
const M4_HORIZON: usize = 48;
const M4_SEASON: usize = 24;

pub fn m4(train: &Path, test: &Path) -> anyhow::Result<()> {
    let train = parse_m4_csv(&read(train)?).context("training file")?;
    let test = parse_m4_csv(&read(test)?).context("test file")?;
    if train.len() != test.len() {
        bail!(
            "{} training series but {} test series",
            train.len(),
            test.len()
        );
    }
    let config = ForecastConfig::default();
    let started = Instant::now();
    let mut forecasts = Vec::with_capacity(train.len());
    for ((id, history), (test_id, actual)) in train.iter().zip(&test) {
        if id != test_id || actual.len() != M4_HORIZON {
            bail!("test series `{test_id}` does not match training series `{id}` with 48 values");
        }
        let result = forecast(history, M4_HORIZON, Some(M4_SEASON), &config)
            .with_context(|| format!("series `{id}`"))?;
        forecasts.push(result.mean);
    }
    let elapsed = started.elapsed();
    let score = |forecasts: &[Vec<f64>]| {
        let (mut s, mut m) = (0.0, 0.0);
        for (((_, history), (_, actual)), f) in train.iter().zip(&test).zip(forecasts) {
            s += smape(actual, f);
            m += mase(history, actual, f, M4_SEASON);
        }
        (s / train.len() as f64, m / train.len() as f64)
    };
    let naive: Vec<Vec<f64>> = train
        .iter()
        .map(|(_, history)| {
            let last_day = &history[history.len().saturating_sub(M4_SEASON)..];
            (0..M4_HORIZON)
                .map(|h| last_day[h % last_day.len()])
                .collect()
        })
        .collect();
    let (s, m) = score(&forecasts);
    let (naive_s, naive_m) = score(&naive);
    println!(
        "M4 hourly: {} series, horizon {M4_HORIZON}, season {M4_SEASON}",
        train.len()
    );
    println!(
        "{:<16} {:>7} {:>7} {:>9}",
        "method", "sMAPE", "MASE", "seconds"
    );
    println!(
        "{:<16} {:>7.3} {:>7.3} {:>9.2}",
        "sextant",
        s,
        m,
        elapsed.as_secs_f64()
    );
    println!("{:<16} {naive_s:>7.3} {naive_m:>7.3}", "seasonal naive");
    println!("published: winner (Smyl) 9.328 / 0.893; seasonal naive 13.912 / 1.193");
    Ok(())
}
