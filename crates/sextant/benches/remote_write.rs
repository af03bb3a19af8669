//! Prometheus remote_write ingest, Sextant beside VictoriaMetrics; run it with
//! `cargo bench -p sextant --bench remote_write` (options after `--`: `--shards N`,
//! `--rounds N`, `--hosts N`).
//!
//! Before any timing it builds node-exporter-like series (153 per host: CPU seconds by core and
//! mode, network and disk counters, filesystem and memory gauges, load averages; `job`,
//! `instance` and their own labels), scrapes them every 15 s of simulated time for `--rounds`
//! rounds, and encodes the samples as Prometheus does: one `TimeSeries` per sample with all its
//! labels, series spread over `--shards` shards by series, 2,000 samples per request,
//! snappy-compressed. Each shard is one client thread with one keep-alive connection that sends
//! its requests in order (so each series' samples arrive in order, as from Prometheus).
//!
//! The same bodies then go to a fresh release `sextant serve` (default configuration: every
//! request answered after its write-ahead log fsync), to the same with `wal.fsync = false`, and
//! to a fresh Debian `victoria-metrics` (which answers once samples are buffered in memory and
//! writes them out within a second or so), one after the other, each alone on the machine. It
//! reports samples per second of wall time and per second of the receiver's CPU time
//! (`/proc/<pid>/stat`, all threads), and checks that each receiver counted every sample.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use sextant_ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest};

use support::{Machine, Server, agent, clock_ticks, cpu_ticks, create_token, metric_sum};

const SAMPLES_PER_REQUEST: usize = 2_000;
const SCRAPE_MS: i64 = 15_000;

struct Options {
    shards: usize,
    rounds: usize,
    hosts: usize,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            shards: 4,
            rounds: 40,
            hosts: 300,
        };
        let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> Result<usize, String> {
                args.next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name} needs a positive whole number"))
            };
            match arg.as_str() {
                "--shards" => options.shards = number("--shards")?,
                "--rounds" => options.rounds = number("--rounds")?,
                "--hosts" => options.hosts = number("--hosts")?,
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(options)
    }
}

/// One series: its sorted labels, whether it is a counter, and its value now.
struct Series {
    labels: Vec<Label>,
    counter: bool,
    value: f64,
}

fn series_of_host(host: usize) -> Vec<Series> {
    let instance = format!("10.0.{}.{}:9100", host / 256, host % 256);
    let mut all = Vec::new();
    let mut add = |name: &str, extra: &[(&str, &str)], counter: bool| {
        let mut labels: Vec<(String, String)> = vec![
            ("__name__".into(), name.into()),
            ("instance".into(), instance.clone()),
            ("job".into(), "node".into()),
        ];
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        labels.sort();
        all.push(Series {
            labels: labels
                .into_iter()
                .map(|(name, value)| Label { name, value })
                .collect(),
            counter,
            value: 1_000.0 + host as f64,
        });
    };
    for cpu in 0..8 {
        for mode in [
            "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
        ] {
            add(
                "node_cpu_seconds_total",
                &[("cpu", &cpu.to_string()), ("mode", mode)],
                true,
            );
        }
    }
    for device in ["eth0", "lo"] {
        for direction in ["receive", "transmit"] {
            for what in ["bytes", "packets", "errs", "drop"] {
                add(
                    &format!("node_network_{direction}_{what}_total"),
                    &[("device", device)],
                    true,
                );
            }
        }
    }
    for (device, mountpoint) in [
        ("/dev/sda1", "/"),
        ("/dev/sda2", "/var"),
        ("/dev/sdb1", "/home"),
        ("/dev/sda3", "/boot"),
    ] {
        for what in [
            "avail_bytes",
            "size_bytes",
            "free_bytes",
            "files",
            "files_free",
        ] {
            add(
                &format!("node_filesystem_{what}"),
                &[
                    ("device", device),
                    ("fstype", "ext4"),
                    ("mountpoint", mountpoint),
                ],
                false,
            );
        }
    }
    for i in 0..40 {
        add(&format!("node_memory_field{i:02}_bytes"), &[], false);
    }
    for device in ["sda", "sdb"] {
        for what in [
            "reads_completed",
            "writes_completed",
            "read_bytes",
            "written_bytes",
            "io_time_seconds",
        ] {
            add(
                &format!("node_disk_{what}_total"),
                &[("device", device)],
                true,
            );
        }
    }
    for name in ["node_load1", "node_load5", "node_load15"] {
        add(name, &[], false);
    }
    all
}

/// Snappy-compressed remote_write bodies per shard, in send order, and the sample count.
fn build_bodies(options: &Options, base_ms: i64) -> (Vec<Vec<Vec<u8>>>, usize) {
    let mut series: Vec<Series> = (0..options.hosts).flat_map(series_of_host).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut shards: Vec<Vec<Vec<u8>>> = vec![Vec::new(); options.shards];
    let mut samples = 0;
    for round in 0..options.rounds {
        let time = base_ms + round as i64 * SCRAPE_MS;
        let mut pending: Vec<Vec<TimeSeries>> = vec![Vec::new(); options.shards];
        for (i, s) in series.iter_mut().enumerate() {
            s.value = if s.counter {
                s.value + (next() * 100.0).floor()
            } else {
                (s.value * (0.95 + 0.1 * next())).max(0.0)
            };
            let shard = i % options.shards;
            pending[shard].push(TimeSeries {
                labels: s.labels.clone(),
                samples: vec![Sample {
                    value: s.value,
                    timestamp: time + (i % 1000) as i64,
                }],
                exemplars: Vec::new(),
            });
            samples += 1;
            if pending[shard].len() == SAMPLES_PER_REQUEST {
                shards[shard].push(encode(std::mem::take(&mut pending[shard])));
            }
        }
        for (shard, rest) in pending.into_iter().enumerate() {
            if !rest.is_empty() {
                shards[shard].push(encode(rest));
            }
        }
    }
    (shards, samples)
}

fn encode(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    let request = WriteRequest {
        timeseries,
        metadata: Vec::new(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy")
}

/// Sends every shard's bodies from its own thread; returns the wall time and retries.
fn send_all(url: &str, auth: Option<&str>, shards: &Arc<Vec<Vec<Vec<u8>>>>) -> (Duration, u64) {
    let started = Instant::now();
    let threads: Vec<_> = (0..shards.len())
        .map(|shard| {
            let shards = shards.clone();
            let url = url.to_owned();
            let auth = auth.map(str::to_owned);
            std::thread::spawn(move || {
                let agent = agent();
                let mut retries = 0u64;
                for body in &shards[shard] {
                    loop {
                        let mut request = agent
                            .post(&url)
                            .header("Content-Type", "application/x-protobuf")
                            .header("Content-Encoding", "snappy")
                            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
                        if let Some(auth) = &auth {
                            request = request.header("Authorization", auth);
                        }
                        let mut response = request.send(body.as_slice()).expect("POST");
                        let status = response.status().as_u16();
                        if (200..300).contains(&status) {
                            break;
                        }
                        let text = response.body_mut().read_to_string().unwrap_or_default();
                        assert!(
                            status == 429 || status == 503,
                            "HTTP {status} from {url}: {text}"
                        );
                        retries += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                retries
            })
        })
        .collect();
    let retries = threads.into_iter().map(|t| t.join().expect("sender")).sum();
    (started.elapsed(), retries)
}

struct Outcome {
    name: String,
    wall: Duration,
    cpu_seconds: f64,
    counted: u64,
    retries: u64,
}

fn report(outcome: &Outcome, samples: usize) {
    let per_second = samples as f64 / outcome.wall.as_secs_f64();
    let per_cpu_second = samples as f64 / outcome.cpu_seconds;
    println!(
        "{:<32} {:>9.2} s wall {:>12.0} samples/s {:>8.2} CPU-s {:>12.0} samples/CPU-s  \
         counted {} (retries {})",
        outcome.name,
        outcome.wall.as_secs_f64(),
        per_second,
        outcome.cpu_seconds,
        per_cpu_second,
        outcome.counted,
        outcome.retries
    );
}

fn run_sextant(
    name: &str,
    fsync: bool,
    shards: &Arc<Vec<Vec<Vec<u8>>>>,
    samples: usize,
) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = create_token(dir.path(), "ingest");
    let config = dir.path().join("bench.toml");
    std::fs::write(&config, format!("[wal]\nfsync = {fsync}\n")).expect("write config");
    let server = Server::start_with_config(dir.path(), Some(&config));
    let pid = server.pid();
    let ticks = cpu_ticks(&pid);
    let (wall, retries) = send_all(
        &format!("{}/api/v1/prom/write", server.base),
        Some(&format!("Bearer {token}")),
        shards,
    );
    let cpu_seconds = (cpu_ticks(&pid) - ticks) as f64 / clock_ticks();
    let counted = metric_sum(
        &server.metrics(&token),
        "sextant_ingest_records_total",
        &["signal=\"metrics\"", "outcome=\"accepted\""],
    )
    .unwrap_or(0);
    assert_eq!(counted, samples as u64, "{name} counted every sample");
    server.stop();
    Outcome {
        name: name.to_owned(),
        wall,
        cpu_seconds,
        counted,
        retries,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

fn run_victoria_metrics(binary: &Path, shards: &Arc<Vec<Vec<Vec<u8>>>>, samples: usize) -> Outcome {
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = Kill(
        Command::new(binary)
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=1y")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start victoria-metrics"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent()
        .get(&format!("{base}/health"))
        .call()
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "victoria-metrics did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.0.id().to_string();
    let ticks = cpu_ticks(&pid);
    let (wall, retries) = send_all(&format!("{base}/api/v1/write"), None, shards);
    let cpu_seconds = (cpu_ticks(&pid) - ticks) as f64 / clock_ticks();
    let metrics = agent()
        .get(&format!("{base}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    let counted = metric_sum(
        &metrics,
        "vm_rows_inserted_total",
        &["type=\"promremotewrite\""],
    )
    .unwrap_or(0);
    assert_eq!(
        counted, samples as u64,
        "victoria-metrics counted every sample"
    );
    Outcome {
        name: "victoria-metrics".into(),
        wall,
        cpu_seconds,
        counted,
        retries,
    }
}

fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("remote_write: {message}");
            std::process::exit(2);
        }
    };
    let machine = Machine::read();
    println!(
        "machine: {} CPUs (nproc), {}, {:.1} GiB RAM",
        machine.cpus, machine.cpu_model, machine.mem_gib
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    // The run ends a minute before now, so no receiver sees samples from the future.
    let base_ms = (now_ms - 60_000 - options.rounds as i64 * SCRAPE_MS) / 1000 * 1000;
    let (shards, samples) = build_bodies(&options, base_ms);
    let bytes: usize = shards.iter().flatten().map(Vec::len).sum();
    let requests: usize = shards.iter().map(Vec::len).sum();
    println!(
        "remote_write: {} hosts x 153 series x {} rounds = {samples} samples in {requests} \
         requests ({SAMPLES_PER_REQUEST} samples each, {:.1} MB snappy), {} shards",
        options.hosts,
        options.rounds,
        bytes as f64 / 1e6,
        options.shards
    );
    let shards = Arc::new(shards);
    let mut outcomes = vec![
        run_sextant("sextant (fsync per request)", true, &shards, samples),
        run_sextant("sextant (wal.fsync = false)", false, &shards, samples),
    ];
    let vm = Path::new("/usr/bin/victoria-metrics");
    if vm.exists() {
        outcomes.push(run_victoria_metrics(vm, &shards, samples));
    } else {
        println!("victoria-metrics: not installed (apt-get install victoria-metrics); skipped");
    }
    for outcome in &outcomes {
        report(outcome, samples);
    }
    if let Some(vm) = outcomes.iter().find(|o| o.name == "victoria-metrics") {
        let vm_per_cpu = samples as f64 / vm.cpu_seconds;
        for o in outcomes.iter().filter(|o| o.name != vm.name) {
            println!(
                "{}: {:.2}x victoria-metrics per CPU-second, {:.2}x in wall time",
                o.name,
                samples as f64 / o.cpu_seconds / vm_per_cpu,
                vm.wall.as_secs_f64() / o.wall.as_secs_f64()
            );
        }
    }
}
