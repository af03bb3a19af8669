//! `sextant detect` and `sextant forecast`: the live detector and forecaster run offline over
//! CSV files, the same code and configuration the server uses.

use std::collections::HashMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sextant_analytics::anomaly::{Detector, DetectorConfig};
use sextant_analytics::forecast::{ForecastConfig, forecast};
use sextant_analytics::nab::parse_timestamp;

#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// CSV with a header and `timestamp,value` rows (NAB's format). Timestamps are
    /// `YYYY-MM-DD HH:MM:SS[.fff]` (UTC), or integer Unix seconds or milliseconds.
    #[arg(long)]
    input: PathBuf,
    /// Where to write `timestamp,value,anomaly_score`; standard output by default.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ForecastArgs {
    /// Long CSV with a header and `series_id,timestamp,value` rows. Each series' timestamps
    /// must be regularly spaced (gaps are allowed); they may be integer indexes, integer Unix
    /// times, or `YYYY-MM-DD HH:MM:SS` times.
    #[arg(long)]
    input: PathBuf,
    /// Steps to forecast after each series' last.
    #[arg(long)]
    horizon: usize,
    /// Season length in steps; by default each series' season is looked for.
    #[arg(long)]
    season: Option<usize>,
    /// Where to write `series_id,step,forecast,lo,hi`; standard output by default.
    #[arg(long)]
    output: Option<PathBuf>,
}

fn read(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
}

fn writer(output: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match output {
        Some(path) => Box::new(BufWriter::new(
            fs::File::create(path)
                .with_context(|| format!("cannot create `{}`", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    })
}

/// A timestamp as milliseconds: an integer (seconds below 10^11, else milliseconds) or a
/// date and time.
fn millis(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i64>() {
        return Some(if number.abs() < 100_000_000_000 {
            number * 1000
        } else {
            number
        });
    }
    parse_timestamp(text).ok()
}

/// A value cell: empty, `nan` and the like are gaps (NaN).
fn value(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return Some(f64::NAN);
    }
    text.parse::<f64>().ok()
}

pub fn detect(args: DetectArgs) -> anyhow::Result<()> {
    let text = read(&args.input)?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim().trim_start_matches('\u{feff}') == "timestamp,value" => {}
        _ => bail!(
            "`{}`: the first line must be the header `timestamp,value`",
            args.input.display()
        ),
    }
    let config = DetectorConfig::default();
    let mut detector = Detector::new(&config);
    let mut out = writer(args.output.as_deref())?;
    writeln!(out, "timestamp,value,anomaly_score")?;
    for (index, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let row = index + 1;
        let (time_text, value_text) = line.split_once(',').with_context(|| {
            format!(
                "`{}` line {row}: expected `timestamp,value`",
                args.input.display()
            )
        })?;
        let time = millis(time_text).with_context(|| {
            format!(
                "`{}` line {row}: timestamp `{time_text}` is not a date and time or an integer",
                args.input.display()
            )
        })?;
        let value = value(value_text).with_context(|| {
            format!(
                "`{}` line {row}: value `{value_text}` is not a number",
                args.input.display()
            )
        })?;
        let verdict = detector.update(&config, time, value);
        writeln!(out, "{time_text},{value_text},{:.6}", verdict.score)?;
    }
    out.flush()?;
    Ok(())
}

/// One series of the forecast input: (time, value) in file order.
type Points = Vec<(i64, f64)>;

pub fn forecast_csv(args: ForecastArgs) -> anyhow::Result<()> {
    if args.horizon == 0 || args.horizon > 100_000 {
        bail!("`--horizon` must be 1 to 100000 steps");
    }
    let text = read(&args.input)?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header))
            if header.trim().trim_start_matches('\u{feff}') == "series_id,timestamp,value" => {}
        _ => bail!(
            "`{}`: the first line must be the header `series_id,timestamp,value`",
            args.input.display()
        ),
    }
    let mut order: Vec<String> = Vec::new();
    let mut series: HashMap<String, Points> = HashMap::new();
    for (index, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let row = index + 1;
        let mut cells = line.splitn(3, ',');
        let (Some(id), Some(time_text), Some(value_text)) =
            (cells.next(), cells.next(), cells.next())
        else {
            bail!(
                "`{}` line {row}: expected `series_id,timestamp,value`",
                args.input.display()
            );
        };
        // An integer index is taken as it is; a date and time as milliseconds.
        let time = time_text
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| parse_timestamp(time_text).ok())
            .with_context(|| {
                format!(
                    "`{}` line {row}: timestamp `{time_text}` is not an integer or a date and time",
                    args.input.display()
                )
            })?;
        let value = value(value_text).with_context(|| {
            format!(
                "`{}` line {row}: value `{value_text}` is not a number",
                args.input.display()
            )
        })?;
        let id = id.trim();
        if !series.contains_key(id) {
            order.push(id.to_owned());
        }
        series.entry(id.to_owned()).or_default().push((time, value));
    }
    let config = ForecastConfig::default();
    let mut out = writer(args.output.as_deref())?;
    writeln!(out, "series_id,step,forecast,lo,hi")?;
    for id in order {
        let history = regular(&series[&id])
            .with_context(|| format!("series `{id}`: timestamps are not regularly spaced"))?;
        let result = forecast(&history, args.horizon, args.season, &config)
            .with_context(|| format!("series `{id}` cannot be forecast"))?;
        for step in 0..args.horizon {
            writeln!(
                out,
                "{id},{},{},{},{}",
                step + 1,
                result.mean[step],
                result.lower[step],
                result.upper[step]
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Values at regular steps (the smallest gap between distinct times), NaN where a step has no
/// value; a repeated time keeps its last value. `None` when times do not fall on the steps.
fn regular(points: &Points) -> Option<Vec<f64>> {
    let mut points = points.clone();
    points.sort_by_key(|&(time, _)| time);
    let step = points
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .filter(|&d| d > 0)
        .min()
        .unwrap_or(1);
    let first = points.first()?.0;
    let last = points.last()?.0;
    let steps = usize::try_from((last - first) / step).ok()? + 1;
    if steps > 10_000_000 {
        return None;
    }
    let mut values = vec![f64::NAN; steps];
    for (time, value) in points {
        if (time - first) % step != 0 {
            return None;
        }
        values[((time - first) / step) as usize] = value;
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_accepted_form() {
        assert_eq!(millis("1700000000"), Some(1_700_000_000_000));
        assert_eq!(millis("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(millis("1970-01-01 00:01:00"), Some(60_000));
        assert_eq!(millis("yesterday"), None);
    }

    #[test]
    fn irregular_series_are_placed_on_their_steps() {
        let points = vec![(10, 1.0), (30, 3.0), (20, 2.0), (50, 5.0)];
        let values = regular(&points).unwrap();
        assert_eq!(values.len(), 5);
        assert_eq!(&values[..3], &[1.0, 2.0, 3.0]);
        assert!(values[3].is_nan());
        assert_eq!(
            regular(&vec![(0, 1.0), (2, 1.0), (3, 1.0), (5, 1.0)]).map(|v| v.len()),
            Some(6)
        );
        assert_eq!(
            regular(&vec![(0, 1.0), (10, 1.0), (15, 1.0)]).map(|v| v.len()),
            Some(4)
        );
    }
}
