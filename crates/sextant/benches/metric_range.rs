//! Metric range benchmark, `cargo bench -p sextant --bench metric_range`: one day of one
//! metric at one point per minute for 10,000 series, sent over OTLP/HTTP, then range queries
//! over all of it.
//!
//! Options go after `--`: `--series N` (default 10,000), `--threads N` (client threads,
//! default 4).
//!
//! The metric `node.cpu.utilization` (a gauge) has N series: `service.name` = `svc-<i mod 50>`
//! and the point attribute `host` = `host-<i>`. Minute `m` of the day (the 24 hours before the
//! top of the current hour) gets value `50 + 40 sin(2π m / 1440 + i) + noise`. Each request
//! holds one minute of 1,000 series (one resource per service). The release `sextant serve`
//! runs on a fresh data directory with the default configuration; after the last point is
//! acknowledged it gets SIGTERM (flushing its buffers to Parquet) and is started again, so the
//! queries read segment files. Then, each once untimed and then timed (median of 3; the one
//! series query median of 20; the time covers the request and reading the whole answer, not
//! parsing it):
//! - `GET /api/v1/metrics/query_range` over the whole day at `step=60s`, `agg=avg`: every
//!   series, every minute (N × 1,440 points in the answer);
//! - the same with `step=1h`, `agg=max` (N × 24 points);
//! - one series (`match=host=host-42`) over the day at `step=60s`;
//! - SQL: the average over all series per minute (`date_bin`, 1,440 rows).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, number_data_point};
use prost::Message;
use serde_json::Value;

use support::{
    Machine, Server, agent, create_token, dir_size, gauge_request, get_text, post_protobuf, sql,
    time_runs,
};

const METRIC: &str = "node.cpu.utilization";
const SERVICES: usize = 50;
const MINUTES: i64 = 1_440;
const SERIES_PER_REQUEST: usize = 1_000;
const DEFAULT_SERIES: usize = 10_000;
const DEFAULT_THREADS: usize = 4;
const MINUTE_NS: i64 = 60_000_000_000;
const HOUR_NS: i64 = 60 * MINUTE_NS;
const RUNS: usize = 3;
const ONE_SERIES_RUNS: usize = 20;

fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("metric_range: {message}");
            std::process::exit(2);
        }
    };
    let machine = Machine::read();
    println!(
        "machine: {} CPUs ({}), {:.1} GiB",
        machine.cpus, machine.cpu_model, machine.mem_gib
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64;
    let end = now.div_euclid(HOUR_NS) * HOUR_NS;
    let start = end - MINUTES * MINUTE_NS;
    let points = options.series as u64 * MINUTES as u64;
    println!(
        "data: {} series x {MINUTES} minutes = {points} points of `{METRIC}`, {start} .. {end} ns",
        options.series
    );

    let work = tempfile::Builder::new()
        .prefix("sextant-metricbench-")
        .tempdir()
        .expect("create a temporary directory");
    let data_dir = work.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("create the data directory");
    let ingest_token = create_token(&data_dir, "ingest");
    let viewer_token = create_token(&data_dir, "viewer");
    let server = Server::start(&data_dir);

    // 1. Ingest: requests are (minute, block of series) pairs handed out in order.
    let blocks = options.series.div_ceil(SERIES_PER_REQUEST) as u64;
    let requests = MINUTES as u64 * blocks;
    let next = Arc::new(AtomicU64::new(0));
    let sent_bytes = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let url = format!("{}/v1/metrics", server.base);
    let auth = format!("Bearer {ingest_token}");
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..options.threads {
            scope.spawn(|| {
                let agent = agent();
                loop {
                    let request = next.fetch_add(1, Ordering::Relaxed);
                    if request >= requests {
                        return;
                    }
                    let minute = (request / blocks) as i64;
                    let block = (request % blocks) as usize;
                    let first = block * SERIES_PER_REQUEST;
                    let last = (first + SERIES_PER_REQUEST).min(options.series);
                    let body = metrics_request(start, minute, first..last).encode_to_vec();
                    post_protobuf(&agent, &url, &auth, &body, &retries);
                    sent_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    let ingest_secs = started.elapsed().as_secs_f64();
    println!(
        "ingest: {points} points in {ingest_secs:.1} s = {:.0} points/s ({} requests, {:.1} \
         bytes/point sent, {} retried after 429/503)",
        points as f64 / ingest_secs,
        requests,
        sent_bytes.load(Ordering::Relaxed) as f64 / points as f64,
        retries.load(Ordering::Relaxed)
    );

    // 2. Restart, so the queries read Parquet.
    server.stop();
    let server = Server::start(&data_dir);
    let (segment_bytes, segment_files) = dir_size(&data_dir.join("segments"));
    println!(
        "after restart: segments/ {segment_bytes} bytes in {segment_files} files ({:.2} \
         bytes/point)",
        segment_bytes as f64 / points as f64
    );

    // 3. Queries.
    let viewer = format!("Bearer {viewer_token}");
    let count = sql(
        &server,
        &viewer,
        &format!("SELECT count(*) AS n FROM metrics WHERE name = '{METRIC}'"),
    );
    println!(
        "check: count(*) = {}",
        count.rows.first().map_or(Value::Null, |r| r["n"].clone())
    );
    let range = |step: &str, agg: &str, extra: &str| {
        format!(
            "{}/api/v1/metrics/query_range?name={METRIC}&from={start}&to={end}&step={step}\
             &agg={agg}{extra}",
            server.base
        )
    };
    let mut figures = Vec::new();
    for (label, url, runs) in [
        ("all series, step 60s, avg", range("60s", "avg", ""), RUNS),
        ("all series, step 1h, max", range("1h", "max", ""), RUNS),
        (
            "one series, step 60s, avg",
            range("60s", "avg", "&match=host=host-42"),
            ONE_SERIES_RUNS,
        ),
    ] {
        // Timed: the request and reading the whole answer; parsed once afterwards.
        let mut answer = String::new();
        let runs = time_runs(runs, || {
            answer = get_text(&url, &viewer);
            answer.len()
        });
        let answer_bytes = runs.found;
        let parsed: Value = serde_json::from_str(&answer).expect("answer is JSON");
        let series = parsed["series"].as_array().cloned().unwrap_or_default();
        let answer_points: usize = series
            .iter()
            .map(|s| s["points"].as_array().map_or(0, Vec::len))
            .sum();
        println!(
            "query_range {label}: median {:.1} ms (runs {}), {} series, {answer_points} points, \
             {answer_bytes} bytes of JSON",
            runs.median_ms(),
            runs.list(),
            series.len()
        );
        figures.push((label, runs.median_ms(), series.len(), answer_points));
    }
    let per_minute = format!(
        "SELECT date_bin(INTERVAL '1 minute', time) AS minute, avg(value) AS v FROM metrics \
         WHERE name = '{METRIC}' AND time >= to_timestamp_nanos({start}) AND time < \
         to_timestamp_nanos({end}) GROUP BY 1 ORDER BY 1"
    );
    let sql_runs = time_runs(RUNS, || sql(&server, &viewer, &per_minute).rows.len());
    println!(
        "SQL average over all series per minute: median {:.1} ms (runs {}), {} rows",
        sql_runs.median_ms(),
        sql_runs.list(),
        sql_runs.found
    );
    drop(server);

    println!(
        "\nsummary ({} series x {MINUTES} minutes; machine: {} CPUs, {}):",
        options.series, machine.cpus, machine.cpu_model
    );
    println!("ingest points/s: {:.0}", points as f64 / ingest_secs);
    for (label, ms, series, points) in figures {
        println!("query_range {label}: {ms:.1} ms, answer {series} series, {points} points");
    }
    println!(
        "SQL per-minute average of all series: {:.1} ms",
        sql_runs.median_ms()
    );
}

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    })
}

/// Minute `minute` of series `series`: one resource per service, one gauge each.
fn metrics_request(
    start: i64,
    minute: i64,
    series: std::ops::Range<usize>,
) -> ExportMetricsServiceRequest {
    let time = (start + minute * MINUTE_NS) as u64;
    let mut by_service: Vec<Vec<NumberDataPoint>> = vec![Vec::new(); SERVICES];
    for i in series {
        let phase = 2.0 * std::f64::consts::PI * minute as f64 / MINUTES as f64 + i as f64;
        let noise = ((i as u64 * 7_919 + minute as u64 * 104_729) % 1_000) as f64 / 500.0 - 1.0;
        by_service[i % SERVICES].push(NumberDataPoint {
            attributes: vec![KeyValue {
                key: "host".into(),
                value: text(&format!("host-{i}")),
                ..Default::default()
            }],
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsDouble(
                50.0 + 40.0 * phase.sin() + noise,
            )),
            ..Default::default()
        });
    }
    gauge_request(METRIC, "%", by_service)
}

struct Options {
    series: usize,
    threads: usize,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            series: DEFAULT_SERIES,
            threads: DEFAULT_THREADS,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| -> Result<usize, String> {
                let text = args.next().ok_or(format!("{name} needs a value"))?;
                text.replace('_', "")
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("`{text}` is not a positive number for {name}"))
            };
            match arg.as_str() {
                // `cargo bench` passes `--bench` to harness-less benchmarks.
                "--bench" => {}
                "--series" => options.series = value("--series")?,
                "--threads" => options.threads = value("--threads")?,
                other => {
                    return Err(format!(
                        "unknown argument `{other}` (expected --series N, --threads N)"
                    ));
                }
            }
        }
        Ok(options)
    }
}
