//! The offline analytics commands through the real binary: `sextant detect` (one score per row,
//! streaming: a prefix scores the same), `sextant forecast` (long CSV in, one row per step
//! out), `sextant rca` (a ranking in JSON), `sextant eval nab`, `sextant eval m4` and `sextant
//! eval rca` and `sextant eval nezha` (their tables), `sextant rca` with a map, spans and log
//! lines, and their errors on bad input.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{binary, datasets_dir};

fn run(args: &[&str]) -> Output {
    Command::new(binary()).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr_of_failure(output: &Output) -> String {
    assert!(!output.status.success(), "should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// NAB's `timestamp,value` rows: five-minute steps, a daily wave, one spike.
fn nab_style_csv(rows: usize) -> String {
    let mut text = String::from("timestamp,value\n");
    for i in 0..rows {
        let minutes = i * 5;
        let (day, hour, minute) = (1 + minutes / 1440, minutes / 60 % 24, minutes % 60);
        let wave = (i as f64 / 288.0 * std::f64::consts::TAU).sin();
        let value = if i == 1500 {
            400.0
        } else {
            100.0 + 20.0 * wave
        };
        text.push_str(&format!(
            "2024-03-{day:02} {hour:02}:{minute:02}:00,{value:.3}\n"
        ));
    }
    text
}

fn scores(csv: &str) -> Vec<f64> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("timestamp,value,anomaly_score"));
    lines
        .map(|line| line.rsplit(',').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn detect_scores_every_row_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let full = write(dir.path(), "full.csv", &nab_style_csv(2000));
    let prefix = write(dir.path(), "prefix.csv", &nab_style_csv(1600));
    let out = dir.path().join("scores.csv");
    stdout(&run(&[
        "detect",
        "--input",
        &full,
        "--output",
        out.to_str().unwrap(),
    ]));
    let all = scores(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(all.len(), 2000);
    assert!(all.iter().all(|s| (0.0..=1.0).contains(s)));
    // After the first 15% (NAB's probation: the model is still learning the wave), the spike
    // scores highest.
    let top = (300..all.len())
        .max_by(|&a, &b| all[a].total_cmp(&all[b]))
        .unwrap();
    assert_eq!(top, 1500, "{:?}", &all[1490..1510]);
    // No look-ahead: the first 1,600 rows score the same without the rest.
    let head = scores(&stdout(&run(&["detect", "--input", &prefix])));
    assert_eq!(head[..], all[..1600]);

    let bad_header = write(dir.path(), "h.csv", "time,v\n2024-03-01 00:00:00,1\n");
    let err = stderr_of_failure(&run(&["detect", "--input", &bad_header]));
    assert!(err.contains("timestamp,value"), "{err}");
    let bad_value = write(
        dir.path(),
        "v.csv",
        "timestamp,value\n2024-03-01 00:00:00,1\n2024-03-01 00:05:00,lots\n",
    );
    let err = stderr_of_failure(&run(&["detect", "--input", &bad_value]));
    assert!(err.contains("line 3") && err.contains("lots"), "{err}");
    let err = stderr_of_failure(&run(&["detect", "--input", "/no/such/file.csv"]));
    assert!(err.contains("/no/such/file.csv"), "{err}");
}

#[test]
fn forecast_writes_each_series_steps_with_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("series_id,timestamp,value\n");
    for t in 0..48 {
        // `daily`: a season of 4 steps; `trend`: a line.
        text.push_str(&format!("daily,{t},{}\n", [10.0, 20.0, 30.0, 20.0][t % 4]));
        text.push_str(&format!("trend,{t},{}\n", 5.0 + 2.0 * t as f64));
    }
    let input = write(dir.path(), "long.csv", &text);
    let out = stdout(&run(&[
        "forecast",
        "--input",
        &input,
        "--horizon",
        "8",
        "--season",
        "4",
    ]));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("series_id,step,forecast,lo,hi"));
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 16);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], if i < 8 { "daily" } else { "trend" });
        assert_eq!(row[1], ((i % 8) + 1).to_string());
        let (f, lo, hi): (f64, f64, f64) = (
            row[2].parse().unwrap(),
            row[3].parse().unwrap(),
            row[4].parse().unwrap(),
        );
        assert!(lo <= f && f <= hi, "{row:?}");
    }
    // The season's shape and the line are continued.
    let value = |i: usize| rows[i][2].parse::<f64>().unwrap();
    assert!((value(0) - 10.0).abs() < 1.0 && (value(2) - 30.0).abs() < 1.0);
    assert!((value(8) - 101.0).abs() < 2.0, "{}", value(8));

    // Gaps are fine where the times keep to one grid (here every 2); off the grid, not.
    let gappy = write(
        dir.path(),
        "gappy.csv",
        "series_id,timestamp,value\na,0,1\na,2,1\na,6,1\na,8,1\n",
    );
    let out = stdout(&run(&["forecast", "--input", &gappy, "--horizon", "2"]));
    assert_eq!(out.lines().count(), 3, "{out}");
    let irregular = write(
        dir.path(),
        "irregular.csv",
        "series_id,timestamp,value\na,0,1\na,2,1\na,5,1\n",
    );
    let err = stderr_of_failure(&run(&["forecast", "--input", &irregular, "--horizon", "2"]));
    assert!(
        err.contains("series `a`") && err.contains("regularly spaced"),
        "{err}"
    );
    let err = stderr_of_failure(&run(&["forecast", "--input", &input, "--horizon", "0"]));
    assert!(err.contains("--horizon"), "{err}");
    let bad = write(dir.path(), "bad.csv", "id,t,v\n");
    let err = stderr_of_failure(&run(&["forecast", "--input", &bad, "--horizon", "2"]));
    assert!(err.contains("series_id,timestamp,value"), "{err}");
}

#[test]
fn eval_nab_prints_the_three_profiles() {
    let nab = datasets_dir().join("nab");
    if !nab.join("labels/combined_windows.json").exists() {
        println!("skipped: NAB not found at {}", nab.display());
        return;
    }
    let out = stdout(&run(&["eval", "nab", "--dir", nab.to_str().unwrap()]));
    assert!(out.starts_with("NAB: 58 files, 365558 points"), "{out}");
    for profile in ["standard", "reward_low_FP_rate", "reward_low_FN_rate"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(profile))
            .unwrap_or_else(|| panic!("no {profile} line in {out}"));
        let score: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!((0.0..=100.0).contains(&score), "{line}");
    }
    let err = stderr_of_failure(&run(&["eval", "nab", "--dir", "/no/such/nab"]));
    assert!(err.contains("/no/such/nab"), "{err}");
}

#[test]
fn eval_m4_scores_forecasts_of_a_small_set() {
    let dir = tempfile::tempdir().unwrap();
    // Two hourly series in M4's wide format: 10 days of a daily shape, then the next 48 hours.
    let shape = |h: usize| 50.0 + 10.0 * (h as f64 / 24.0 * std::f64::consts::TAU).sin();
    let row = |id: &str, range: std::ops::Range<usize>| {
        let values: Vec<String> = range.map(|h| format!("\"{:.4}\"", shape(h))).collect();
        format!("\"{id}\",{}\n", values.join(","))
    };
    let header = |n: usize| {
        let names: Vec<String> = (1..=n + 1).map(|i| format!("\"V{i}\"")).collect();
        format!("{}\n", names.join(","))
    };
    let train = write(
        dir.path(),
        "train.csv",
        &format!("{}{}{}", header(240), row("H1", 0..240), row("H2", 0..240)),
    );
    let test = write(
        dir.path(),
        "test.csv",
        &format!(
            "{}{}{}",
            header(48),
            row("H1", 240..288),
            row("H2", 240..288)
        ),
    );
    let out = stdout(&run(&["eval", "m4", "--train", &train, "--test", &test]));
    assert!(out.contains("M4 hourly: 2 series"), "{out}");
    let line = out.lines().find(|l| l.starts_with("sextant")).unwrap();
    let smape: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        smape < 1.0,
        "a clean daily shape is forecast almost exactly: {line}"
    );
    let mismatched = write(
        dir.path(),
        "short.csv",
        &format!("{}{}", header(48), row("H1", 0..48)),
    );
    let err = stderr_of_failure(&run(&[
        "eval",
        "m4",
        "--train",
        &train,
        "--test",
        &mismatched,
    ]));
    assert!(err.contains("2 training series but 1 test series"), "{err}");
}

#[test]
fn rca_ranks_a_sock_shop_case_and_eval_rca_prints_both_levels() {
    let case = datasets_dir().join("sock-shop-rcd/orders-cpu/1");
    let normal = case.join("normal.csv");
    let anomalous = case.join("anomalous.csv");
    let output = run(&[
        "rca",
        "--normal",
        normal.to_str().unwrap(),
        "--anomalous",
        anomalous.to_str().unwrap(),
    ]);
    let answer: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let ranking = answer["ranking"]["services"].as_array().unwrap();
    assert_eq!(ranking[0]["service"], "orders", "{answer}");
    assert_eq!(ranking[0]["metric"], "cpu");
    assert!(
        ranking[0]["evidence"]["series"][0]["deviation"]
            .as_f64()
            .unwrap()
            > 10.0
    );
    assert!(
        ranking[0]["sentence"]
            .as_str()
            .unwrap()
            .starts_with("#1 orders")
    );
    let services: std::collections::BTreeSet<&str> = ranking
        .iter()
        .map(|r| r["service"].as_str().unwrap())
        .collect();
    assert_eq!(services.len(), ranking.len(), "one entry per service");
    assert!(
        ranking
            .windows(2)
            .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64())
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.csv", "time,cpu\n1,2\n");
    let error = stderr_of_failure(&run(&["rca", "--normal", &bad, "--anomalous", &bad]));
    assert!(error.contains("`<service>_<metric>`"), "{error}");
    let error = stderr_of_failure(&run(&[
        "rca",
        "--normal",
        "/no/such.csv",
        "--anomalous",
        &bad,
    ]));
    assert!(error.contains("cannot read"), "{error}");

    let dir = datasets_dir().join("sock-shop-rcd");
    let table = stdout(&run(&["eval", "rca", "--dir", dir.to_str().unwrap()]));
    assert!(table.contains("(30 cases)"), "{table}");
    let line = |level: &str| -> Vec<f64> {
        let row = table.lines().find(|l| l.starts_with(level)).unwrap();
        row.split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect()
    };
    assert!(line("service")[0] >= 0.98, "{table}");
    assert!(line("metric")[0] >= 0.90, "{table}");
}

#[test]
fn eval_nezha_ranks_every_fault_of_a_recorded_day_against_the_reference() {
    let archive = datasets_dir().join("nezha/2023-01-30.tar.zst");
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .args(["--zstd", "-xf"])
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "cannot extract {}", archive.display());
    let table = stdout(&run(&[
        "eval",
        "nezha",
        "--dir",
        dir.path().to_str().unwrap(),
    ]));
    let faults: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("2023-01-30 "))
        .collect();
    assert_eq!(faults.len(), 17, "{table}");
    for fault in &faults {
        // The day has spans and lines for every fault, and every ranker ranks the true
        // service: a number in each of the four rank columns.
        let cells: Vec<&str> = fault.split_whitespace().skip(4).take(6).collect();
        let numbers: Vec<usize> = cells.iter().filter_map(|c| c.parse().ok()).collect();
        assert_eq!(numbers.len(), 6, "{fault}");
        assert!(numbers[0] > 0 && numbers[1] > 0, "{fault}");
    }
    for ranker in ["metrics", "+map", "all", "trivial"] {
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().any(|w| w == ranker) && l.ends_with(" 17")),
            "no summary of {ranker}: {table}"
        );
    }
    let error = stderr_of_failure(&run(&["eval", "nezha", "--dir", "/no/such/dir"]));
    assert!(error.contains("cannot read `/no/such/dir`"), "{error}");
}

#[test]
fn rca_takes_the_map_spans_and_log_lines_and_they_move_the_blame() {
    let dir = tempfile::tempdir().unwrap();
    let at = |s: i64| s * 1_000_000_000;
    // The front end's latency rises at t = 600 s; nothing else moves in the metrics.
    let wide = |from: i64, to: i64, lat: f64| {
        let mut text = String::from("time,front_lat_99,cart_cpu,catalogue_cpu\n");
        for t in (from..to).step_by(10) {
            let wobble = (t / 10 % 3) as f64;
            text.push_str(&format!(
                "{t},{},{},{}\n",
                lat + wobble,
                20.0 + wobble,
                30.0 + wobble
            ));
        }
        text
    };
    let normal = write(dir.path(), "normal.csv", &wide(0, 600, 100.0));
    let anomalous = write(dir.path(), "anomalous.csv", &wide(600, 900, 400.0));
    let map = write(
        dir.path(),
        "map.csv",
        "caller,callee\nfront,cart\nfront,catalogue\n",
    );
    // Every call between the front end and the cart spends 300 ms more on the wire from 600 s.
    let mut spans =
        String::from("trace_id,span_id,parent_span_id,service,start_unix_nano,end_unix_nano\n");
    for i in 0..90i64 {
        let start = at(i * 10);
        let delay = if i >= 60 { 300_000_000 } else { 0 };
        for (n, callee, inner) in [(1, "cart", 20_000_000i64), (2, "catalogue", 10_000_000)] {
            let trace = format!("{:032x}", i * 10 + n);
            let extra = if callee == "cart" { delay } else { 0 };
            let total = inner + 2_000_000 + (i % 3) * 100_000 + extra;
            let child_start = start + (total - inner) / 2;
            spans.push_str(&format!(
                "{trace},{:016x},,front,{start},{}\n",
                1,
                start + total
            ));
            spans.push_str(&format!(
                "{trace},{:016x},{:016x},{callee},{child_start},{}\n",
                2,
                1,
                child_start + inner
            ));
        }
    }
    let spans = write(dir.path(), "spans.csv", &spans);
    let mut logs = String::from("time_unix_nano,service,severity,body\n");
    for i in 0..90i64 {
        logs.push_str(&format!("{},front,INFO,served request {i}\n", at(i * 10)));
        if i >= 62 {
            logs.push_str(&format!(
                "{},cart,,ERROR redis timeout after {i} ms\n",
                at(i * 10)
            ));
        }
    }
    let logs = write(dir.path(), "logs.csv", &logs);
    let first = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["rca", "--normal", &normal, "--anomalous", &anomalous];
        all.extend_from_slice(args);
        let answer: serde_json::Value = serde_json::from_str(&stdout(&run(&all))).unwrap();
        answer["ranking"]["services"][0].clone()
    };
    assert_eq!(first(&[])["service"], "front");
    let top = first(&["--map", &map, "--spans", &spans, "--logs", &logs]);
    assert_eq!(top["service"], "cart", "{top}");
    let trace = &top["evidence"]["trace"];
    assert_eq!(trace["gaps"][0]["caller"], "front", "{top}");
    assert_eq!(trace["measured_calls"], 1, "{top}");
    assert_eq!(top["evidence"]["logs"][0]["new"], true, "{top}");
    assert!(
        top["sentence"]
            .as_str()
            .unwrap()
            .contains("Calls front → cart spent"),
        "{top}"
    );

    let bad = write(dir.path(), "bad.csv", "trace_id,span_id\n1,2\n");
    let error = stderr_of_failure(&run(&[
        "rca",
        "--normal",
        &normal,
        "--anomalous",
        &anomalous,
        "--spans",
        &bad,
    ]));
    assert!(error.contains("has no `parent_span_id` column"), "{error}");
    let loud = write(
        dir.path(),
        "loud.csv",
        "time_unix_nano,service,severity,body\n1,a,LOUD,x\n",
    );
    let error = stderr_of_failure(&run(&[
        "rca",
        "--normal",
        &normal,
        "--anomalous",
        &anomalous,
        "--logs",
        &loud,
    ]));
    assert!(
        error.contains("row 2: severity `LOUD` is not a level"),
        "{error}"
    );
}
