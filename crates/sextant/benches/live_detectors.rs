//! Live anomaly detection benchmark, `cargo bench -p sextant --bench live_detectors`: many
//! metric series sent over OTLP/HTTP to the release `sextant serve`, once with the detectors on
//! (the default) and once with `[anomaly] enabled = false`, to measure what watching every
//! series costs in ingest speed, CPU and memory, and what the detectors find.
//!
//! Options go after `--`: `--series N` (default 100,000), `--minutes M` (default 60),
//! `--threads N` (client threads, default 4).
//!
//! The gauge `queue.depth` has N series (`service.name` = `svc-<i mod 50>`, point attribute
//! `queue` = `q-<i>`), one point a minute for M minutes ending at the top of the current hour:
//! `50 + 10 sin(i) + u`, `u` uniform in [−1, 1]. Every 1,000th series gets a spike of +20 at
//! minute M − 10. Each request holds one minute of 1,000 series. Each run starts a fresh data
//! directory; after the last point is acknowledged the benchmark reads the server's resident
//! memory (`VmRSS`, `VmHWM` in `/proc/<pid>/status`) and CPU time, then lists the anomalies.
//! The difference in memory between the two runs is what the detectors hold.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, number_data_point};
use prost::Message;
use serde_json::Value;

use support::{
    Machine, Server, agent, clock_ticks, cpu_ticks, create_token, gauge_request, get_json,
    post_protobuf, resident_kib, sql, string_value,
};

const METRIC: &str = "queue.depth";
const SERVICES: usize = 50;
const SERIES_PER_REQUEST: usize = 1_000;
const SPIKE_EVERY: usize = 1_000;
const MINUTE_NS: i64 = 60_000_000_000;
const HOUR_NS: i64 = 60 * MINUTE_NS;

struct Options {
    series: usize,
    minutes: usize,
    threads: usize,
}

/// What one run measured.
struct Run {
    seconds: f64,
    cpu_seconds: f64,
    rss_kib: u64,
    peak_kib: u64,
    /// Anomalies found in all.
    anomalies: u64,
    /// Anomalies at the spike's minute.
    at_spike: Vec<Value>,
}

fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("live_detectors: {message}");
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
    let start = end - options.minutes as i64 * MINUTE_NS;
    let points = (options.series * options.minutes) as u64;
    println!(
        "data: {} series x {} minutes = {points} points of `{METRIC}`; {} spiked series",
        options.series,
        options.minutes,
        options.series.div_ceil(SPIKE_EVERY)
    );

    let on = run(&options, start, true);
    let off = run(&options, start, false);
    let found_spikes = on
        .at_spike
        .iter()
        .filter(|a| {
            a["labels"]["queue"]
                .as_str()
                .and_then(|q| q.strip_prefix("q-"))
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| i % SPIKE_EVERY == 0)
        })
        .count();
    let others = on.anomalies - found_spikes as u64;
    let series = options.series as f64;
    println!("\nsummary ({} series, {} points):", options.series, points);
    for (label, r) in [("detectors on", &on), ("detectors off", &off)] {
        println!(
            "{label}: {:.0} points/s, server CPU {:.2} s ({:.3} s per million points), resident \
             {:.1} MiB (peak {:.1} MiB)",
            points as f64 / r.seconds,
            r.cpu_seconds,
            r.cpu_seconds / points as f64 * 1e6,
            r.rss_kib as f64 / 1024.0,
            r.peak_kib as f64 / 1024.0
        );
    }
    println!(
        "detectors' memory (resident on − off): {:.1} MiB = {:.0} bytes per series",
        (on.rss_kib as f64 - off.rss_kib as f64) / 1024.0,
        (on.rss_kib as f64 - off.rss_kib as f64) * 1024.0 / series
    );
    println!(
        "anomalies: {found_spikes} of {} spikes found; {others} others ({:.2} per million scored \
         points)",
        options.series.div_ceil(SPIKE_EVERY),
        others as f64 / (series * (options.minutes as f64 - 30.0).max(1.0)) * 1e6
    );
}

fn run(options: &Options, start: i64, detectors: bool) -> Run {
    let work = tempfile::Builder::new()
        .prefix("sextant-livebench-")
        .tempdir()
        .expect("create a temporary directory");
    let data_dir = work.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("create the data directory");
    let config = work.path().join("config.toml");
    std::fs::write(&config, format!("[anomaly]\nenabled = {detectors}\n")).expect("write config");
    let ingest_token = create_token(&data_dir, "ingest");
    let viewer_token = create_token(&data_dir, "viewer");
    let server = Server::start_with_config(&data_dir, Some(Path::new(&config)));
    let pid = server.pid();

    let blocks = options.series.div_ceil(SERIES_PER_REQUEST) as u64;
    let requests = options.minutes as u64 * blocks;
    let next = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let url = format!("{}/v1/metrics", server.base);
    let auth = format!("Bearer {ingest_token}");
    let cpu_before = cpu_ticks(&pid);
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
                    // Minute by minute, so every series' points arrive in time order.
                    let minute = request / blocks;
                    let block = (request % blocks) as usize;
                    let first = block * SERIES_PER_REQUEST;
                    let last = (first + SERIES_PER_REQUEST).min(options.series);
                    let body = request_body(options, start, minute as usize, first..last);
                    post_protobuf(&agent, &url, &auth, &body, &retries);
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = (cpu_ticks(&pid) - cpu_before) as f64 / clock_ticks();
    let (rss_kib, peak_kib) = resident_kib(&pid);
    let viewer = format!("Bearer {viewer_token}");
    let counted = sql(
        &server,
        &viewer,
        "SELECT count(*) AS n FROM events WHERE kind = 'anomaly'",
    );
    let anomalies = counted
        .rows
        .first()
        .and_then(|row| row["n"].as_u64())
        .unwrap_or(0);
    let spike = start + (options.minutes as i64 - 10) * MINUTE_NS;
    let answer = get_json(
        &format!(
            "{}/api/v1/anomalies?from={spike}&to={}&limit=1000",
            server.base,
            spike + 1
        ),
        &viewer,
    );
    let at_spike = answer["anomalies"].as_array().cloned().unwrap_or_default();
    println!(
        "detectors {}: {} points in {seconds:.1} s, {} retried after 429/503, {anomalies} \
         anomalies",
        if detectors { "on" } else { "off" },
        options.series * options.minutes,
        retries.load(Ordering::Relaxed),
    );
    server.stop();
    Run {
        seconds,
        cpu_seconds,
        rss_kib,
        peak_kib,
        anomalies,
        at_spike,
    }
}

/// The body of one request: minute `minute` of series `series`, one resource per service.
fn request_body(
    options: &Options,
    start: i64,
    minute: usize,
    series: std::ops::Range<usize>,
) -> Vec<u8> {
    let time = (start + minute as i64 * MINUTE_NS) as u64;
    let mut by_service: Vec<Vec<NumberDataPoint>> = vec![Vec::new(); SERVICES];
    for i in series {
        // A uniform noise in [-1, 1) from (series, minute), the same on every run.
        let mut x = (i as u64) << 20 | minute as u64;
        x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 29;
        let noise = (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0;
        let spike = if i % SPIKE_EVERY == 0 && minute + 10 == options.minutes {
            20.0
        } else {
            0.0
        };
        by_service[i % SERVICES].push(NumberDataPoint {
            attributes: vec![KeyValue {
                key: "queue".into(),
                value: string_value(&format!("q-{i}")),
                ..Default::default()
            }],
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsDouble(
                50.0 + 10.0 * (i as f64).sin() + noise + spike,
            )),
            ..Default::default()
        });
    }
    gauge_request(METRIC, "", by_service).encode_to_vec()
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            series: 100_000,
            minutes: 60,
            threads: 4,
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
                "--minutes" => options.minutes = value("--minutes")?,
                "--threads" => options.threads = value("--threads")?,
                other => {
                    return Err(format!(
                        "unknown argument `{other}` (expected --series N, --minutes M, \
                         --threads N)"
                    ));
                }
            }
        }
        if options.minutes <= 40 {
            return Err(
                "--minutes must be over 40 (30 to warm up, the spike 10 before the end)".into(),
            );
        }
        Ok(options)
    }
}
