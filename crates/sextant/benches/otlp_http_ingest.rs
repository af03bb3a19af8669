//! OTLP/HTTP log ingest benchmark; run it with `cargo bench -p sextant --bench otlp_http_ingest`.
//!
//! Options go after `--`: `--threads N`, `--seconds S`, `--warmup S`, `--sweep 1,2,4,8`, and
//! `--modes plain,tls,encrypted,tls+encrypted` to run the server in each of those ways one
//! after another (default `plain`): `tls` serves HTTPS with a certificate made here (rcgen),
//! `encrypted` turns encryption at rest on with a fresh master key.
//!
//! It reads the 2,000-line samples of the 16 Loghub datasets
//! (<https://github.com/logpai/loghub>) from `../shared/datasets/loghub-2k` next to the
//! workspace (or `$SEXTANT_DATASETS/loghub-2k`), encodes them into OTLP
//! `ExportLogsServiceRequest` bodies of 1,000 records each before any timing, starts the
//! release `sextant serve` on a fresh data directory (default configuration: fsync on), and
//! POSTs the bodies to `/v1/logs` from several keep-alive client threads. It reports records,
//! bytes and batches per second over the timed window, and the server's CPU time from
//! `/proc/<pid>/stat` over the same window.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use support::{
    DATASETS, Machine, Server, Start, clock_ticks, cpu_ticks, create_token, datasets_dir,
    metric_sum, severity, string_value,
};

const RECORDS_PER_BATCH: usize = 1_000;
/// Client threads (one keep-alive connection each) unless `--threads` says otherwise. On the
/// 2-core machine of BENCHMARKS.md a 1/2/3/4/6/8 sweep peaked at 8 (6 was within noise).
const DEFAULT_THREADS: usize = 8;
const DEFAULT_SECONDS: f64 = 10.0;
const DEFAULT_WARMUP: f64 = 2.0;
/// 2023-11-14T22:13:20Z; record `i` of the run is stamped `i` milliseconds later.
const BASE_TIME_NANOS: u64 = 1_700_000_000_000_000_000;

fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("otlp_http_ingest: {message}");
            std::process::exit(2);
        }
    };
    let loghub = datasets_dir().join("loghub-2k");
    let loghub = std::fs::canonicalize(&loghub).unwrap_or(loghub);
    let bodies = match load_bodies(&loghub) {
        Ok(bodies) => bodies,
        Err(reason) => {
            println!("otlp_http_ingest: skipped: {reason}");
            return;
        }
    };
    let total_records: usize = bodies.iter().map(|b| b.records).sum();
    let total_bytes: usize = bodies.iter().map(|b| b.bytes.len()).sum();
    println!(
        "OTLP/HTTP protobuf log ingest: {} bodies pre-encoded from {} ({} records, {:.2} MB; \
         {} records per body)",
        bodies.len(),
        loghub.display(),
        total_records,
        total_bytes as f64 / 1e6,
        RECORDS_PER_BATCH
    );
    let machine = Machine::read();
    println!(
        "machine: {} CPUs (nproc), {}, {:.1} GiB RAM",
        machine.cpus, machine.cpu_model, machine.mem_gib
    );
    let bodies = Arc::new(bodies);

    let mut results = Vec::new();
    for &mode in &options.modes {
        for &threads in &options.threads {
            println!(
                "\n--- {}, {threads} client thread(s): {:.0} s warm-up, {:.0} s timed ---",
                mode.name(),
                options.warmup.as_secs_f64(),
                options.seconds.as_secs_f64()
            );
            let result = run(&bodies, mode, threads, options.warmup, options.seconds);
            result.print(&machine);
            results.push(result);
        }
    }
    if results.len() > 1 {
        println!("\nsummary:");
        println!(
            "{:>14} {:>8} {:>12} {:>8} {:>10} {:>16} {:>18}",
            "mode",
            "threads",
            "records/s",
            "MB/s",
            "batches/s",
            "srv CPU s/Mrec",
            "records/srv-CPU-s"
        );
        for r in &results {
            println!(
                "{:>14} {:>8} {:>12.0} {:>8.1} {:>10.1} {:>16.3} {:>18.0}",
                r.mode.name(),
                r.threads,
                r.records_per_sec(),
                r.mb_per_sec(),
                r.batches_per_sec(),
                r.server_cpu_per_million(),
                r.records_per_server_cpu_sec()
            );
        }
    }
}

struct Options {
    threads: Vec<usize>,
    seconds: Duration,
    warmup: Duration,
    modes: Vec<Mode>,
}

/// How the server runs: over TLS or not, with encryption at rest or not.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Mode {
    tls: bool,
    encrypted: bool,
}

impl Mode {
    const PLAIN: Mode = Mode {
        tls: false,
        encrypted: false,
    };

    fn parse(text: &str) -> Result<Mode, String> {
        let mut mode = Mode::PLAIN;
        for part in text.trim().split('+') {
            match part {
                "plain" => {}
                "tls" => mode.tls = true,
                "encrypted" => mode.encrypted = true,
                other => {
                    return Err(format!(
                        "unknown mode `{other}` (expected plain, tls, encrypted, tls+encrypted)"
                    ));
                }
            }
        }
        Ok(mode)
    }

    fn name(self) -> &'static str {
        match (self.tls, self.encrypted) {
            (false, false) => "plain",
            (true, false) => "tls",
            (false, true) => "encrypted",
            (true, true) => "tls+encrypted",
        }
    }
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            threads: vec![DEFAULT_THREADS],
            seconds: Duration::from_secs_f64(DEFAULT_SECONDS),
            warmup: Duration::from_secs_f64(DEFAULT_WARMUP),
            modes: vec![Mode::PLAIN],
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                // `cargo bench` passes `--bench` to harness-less benchmarks.
                "--bench" => {}
                "--threads" => options.threads = vec![parse_count(&value("--threads")?)?],
                "--sweep" => {
                    options.threads = value("--sweep")?
                        .split(',')
                        .map(parse_count)
                        .collect::<Result<_, _>>()?;
                }
                "--seconds" => options.seconds = parse_seconds(&value("--seconds")?)?,
                "--warmup" => options.warmup = parse_seconds(&value("--warmup")?)?,
                "--modes" => {
                    options.modes = value("--modes")?
                        .split(',')
                        .map(Mode::parse)
                        .collect::<Result<_, _>>()?;
                }
                other => {
                    return Err(format!(
                        "unknown argument `{other}` (expected --threads N, --sweep N,N,.., \
                         --seconds S, --warmup S, --modes M,M,..)"
                    ));
                }
            }
        }
        if options.seconds.is_zero() {
            return Err("--seconds must be greater than 0".into());
        }
        Ok(options)
    }
}

fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a positive thread count")),
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(secs) if secs >= 0.0 && secs.is_finite() => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!("`{s}` is not a number of seconds")),
    }
}

/// One pre-encoded request body.
struct Body {
    bytes: Vec<u8>,
    records: usize,
}

fn load_bodies(loghub: &Path) -> Result<Vec<Body>, String> {
    let mut bodies = Vec::new();
    let mut record_index: u64 = 0;
    for dataset in DATASETS {
        let path = loghub.join(dataset).join(format!("{dataset}_2k.log"));
        let raw =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&raw);
        let lines: Vec<&str> = text.lines().filter(|line| !line.is_empty()).collect();
        if lines.is_empty() {
            return Err(format!("{} has no lines", path.display()));
        }
        for chunk in lines.chunks(RECORDS_PER_BATCH) {
            let request = logs_request(dataset, chunk, &mut record_index);
            bodies.push(Body {
                bytes: request.encode_to_vec(),
                records: chunk.len(),
            });
        }
    }
    Ok(bodies)
}

/// One request: the dataset's name as `service.name`, one record per raw line.
fn logs_request(dataset: &str, lines: &[&str], index: &mut u64) -> ExportLogsServiceRequest {
    let log_records = lines
        .iter()
        .map(|line| {
            let time = BASE_TIME_NANOS + *index * 1_000_000;
            *index += 1;
            let (severity_number, severity_text) = severity(line);
            LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: time,
                severity_number,
                severity_text: severity_text.to_owned(),
                body: string_value(line),
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: string_value(&dataset.to_ascii_lowercase()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "loghub".into(),
                    ..Default::default()
                }),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Counters shared by the client threads.
#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    partial_rejected: AtomicU64,
    /// Non-200 answers and transport errors, by kind, with the first message of each.
    failures: Mutex<BTreeMap<String, (u64, String)>>,
}

impl Counters {
    fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.records.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    fn fail(&self, kind: String, message: String) {
        let mut failures = self.failures.lock().unwrap();
        failures.entry(kind).or_insert((0, message)).0 += 1;
    }
}

fn client(
    id: usize,
    agent: ureq::Agent,
    url: String,
    auth: String,
    bodies: Arc<Vec<Body>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let mut next = id * 7 % bodies.len();
    while !stop.load(Ordering::Relaxed) {
        let body = &bodies[next];
        next = (next + 1) % bodies.len();
        let result = agent
            .post(&url)
            .header("Content-Type", "application/x-protobuf")
            .header("Authorization", &auth)
            .send(&body.bytes[..]);
        match result {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // Read to the end so the connection goes back to the pool.
                let answer = response.body_mut().read_to_vec().unwrap_or_default();
                if status == 200 {
                    if let Ok(answer) = ExportLogsServiceResponse::decode(&answer[..])
                        && let Some(partial) = answer.partial_success
                    {
                        counters
                            .partial_rejected
                            .fetch_add(partial.rejected_log_records as u64, Ordering::Relaxed);
                    }
                    counters.batches.fetch_add(1, Ordering::Relaxed);
                    counters
                        .records
                        .fetch_add(body.records as u64, Ordering::Relaxed);
                    counters
                        .bytes
                        .fetch_add(body.bytes.len() as u64, Ordering::Relaxed);
                } else {
                    counters.fail(
                        format!("HTTP {status}"),
                        String::from_utf8_lossy(&answer).chars().take(200).collect(),
                    );
                }
            }
            Err(err) => {
                counters.fail("transport error".into(), err.to_string());
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

struct RunResult {
    mode: Mode,
    threads: usize,
    elapsed: f64,
    batches: u64,
    records: u64,
    bytes: u64,
    server_cpu: f64,
    client_cpu: f64,
    sent_records: u64,
    server_accepted: Option<u64>,
    partial_rejected: u64,
    failures: BTreeMap<String, (u64, String)>,
    fsync: Vec<String>,
}

impl RunResult {
    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed
    }

    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed
    }

    fn batches_per_sec(&self) -> f64 {
        self.batches as f64 / self.elapsed
    }

    fn server_cpu_per_million(&self) -> f64 {
        self.server_cpu / (self.records as f64 / 1e6)
    }

    fn records_per_server_cpu_sec(&self) -> f64 {
        self.records as f64 / self.server_cpu
    }

    fn print(&self, machine: &Machine) {
        println!("server: {}", self.mode.name());
        println!("client threads (keep-alive connections): {}", self.threads);
        println!(
            "timed window: {:.2} s, {} batches of {} records, {} records, {:.1} MB",
            self.elapsed,
            self.batches,
            RECORDS_PER_BATCH,
            self.records,
            self.bytes as f64 / 1e6
        );
        println!(
            "records/s:                        {:>12.0}",
            self.records_per_sec()
        );
        println!(
            "MB/s (request bytes, 1 MB = 1e6): {:>12.1}",
            self.mb_per_sec()
        );
        println!(
            "batches/s:                        {:>12.1}",
            self.batches_per_sec()
        );
        println!(
            "server CPU:                       {:>12.2} s ({:.2} of {} cores busy)",
            self.server_cpu,
            self.server_cpu / self.elapsed,
            machine.cpus
        );
        println!(
            "server CPU s per million records: {:>12.3}",
            self.server_cpu_per_million()
        );
        println!(
            "records per server-CPU-second:    {:>12.0}  (per-core figure; target >= 300000: {})",
            self.records_per_server_cpu_sec(),
            if self.records_per_server_cpu_sec() >= 300_000.0 {
                "met"
            } else {
                "NOT met"
            }
        );
        println!(
            "client CPU (this process):        {:>12.2} s ({:.2} cores)",
            self.client_cpu,
            self.client_cpu / self.elapsed
        );
        println!("machine: {} CPUs, {}", machine.cpus, machine.cpu_model);
        match self.server_accepted {
            Some(accepted) if accepted == self.sent_records => println!(
                "check: server counted {accepted} accepted records, as many as the clients got \
                 200 for"
            ),
            Some(accepted) => println!(
                "check: MISMATCH: server counted {accepted} accepted records, clients got 200 \
                 for {}",
                self.sent_records
            ),
            None => println!("check: could not read sextant_ingest_records_total from /metrics"),
        }
        if self.partial_rejected > 0 {
            println!(
                "partial success: server rejected {} records",
                self.partial_rejected
            );
        }
        if self.failures.is_empty() {
            println!("non-200 responses: none");
        }
        for (kind, (count, first)) in &self.failures {
            println!("non-200 responses: {count} x {kind}; first: {first}");
        }
        if !self.fsync.is_empty() {
            println!(
                "server /metrics, whole run (sextant_wal_fsync_seconds times the write() and \
                 fdatasync of each group commit):"
            );
        }
        for line in &self.fsync {
            println!("  {line}");
        }
    }
}

fn run(
    bodies: &Arc<Vec<Body>>,
    mode: Mode,
    threads: usize,
    warmup: Duration,
    seconds: Duration,
) -> RunResult {
    let dir = tempfile::Builder::new()
        .prefix("sextant-bench-")
        .tempdir()
        .expect("create a temporary directory");
    let data_dir = dir.path().join("data");
    // A token made before the first start also keeps the server from printing its bootstrap
    // admin token.
    let token = create_token(&data_dir, "ingest");
    let mut start = Start::default();
    let config_file = dir.path().join("sextant.toml");
    if mode.tls {
        let (ca_pem, tls) = tls_files(dir.path());
        std::fs::write(&config_file, tls).expect("write the bench config");
        start.config = Some(&config_file);
        start.ca_pem = Some(ca_pem);
    }
    if mode.encrypted {
        start.env.push(("SEXTANT_MASTER_KEY", master_key()));
    }
    let server = Server::start_custom(&data_dir, start);
    let pid = server.pid();
    let ticks = clock_ticks();
    let url = format!("{}/v1/logs", server.base);
    let auth = format!("Bearer {token}");
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..threads)
        .map(|id| {
            let (agent, url, auth) = (server.agent(), url.clone(), auth.clone());
            let (bodies, counters, stop) = (bodies.clone(), counters.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("client-{id}"))
                .spawn(move || client(id, agent, url, auth, bodies, counters, stop))
                .expect("spawn a client thread")
        })
        .collect();

    std::thread::sleep(warmup);
    let (batches0, records0, bytes0) = counters.snapshot();
    let (server0, client0) = (cpu_ticks(&pid), cpu_ticks("self"));
    let started = Instant::now();
    std::thread::sleep(seconds);
    let (batches1, records1, bytes1) = counters.snapshot();
    let (server1, client1) = (cpu_ticks(&pid), cpu_ticks("self"));
    let elapsed = started.elapsed().as_secs_f64();

    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.join().expect("client thread panicked");
    }
    let metrics = server.metrics(&token);
    let server_accepted = metric_sum(
        &metrics,
        "sextant_ingest_records_total",
        &["outcome=\"accepted\""],
    );
    let fsync: Vec<String> = metrics
        .lines()
        .filter(|line| {
            line.starts_with("sextant_wal_fsync_seconds")
                || line.starts_with("sextant_wal_group_commits_total")
        })
        .map(str::to_owned)
        .collect();
    server.stop();

    RunResult {
        mode,
        threads,
        elapsed,
        batches: batches1 - batches0,
        records: records1 - records0,
        bytes: bytes1 - bytes0,
        server_cpu: server1.saturating_sub(server0) as f64 / ticks,
        client_cpu: client1.saturating_sub(client0) as f64 / ticks,
        sent_records: counters.records.load(Ordering::Relaxed),
        server_accepted,
        partial_rejected: counters.partial_rejected.load(Ordering::Relaxed),
        failures: std::mem::take(&mut *counters.failures.lock().unwrap()),
        fsync,
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, written under `dir`: the CA's PEM
/// and the `[tls]` section naming the files.
fn tls_files(dir: &Path) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("a CA key"))
        .expect("a self-signed CA");
    let key = KeyPair::generate().expect("a server key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server parameters")
        .signed_by(&key, &ca)
        .expect("a server certificate");
    let (cert_file, key_file) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_file, cert.pem()).expect("write the certificate");
    std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
    let tls = format!("[tls]\ncert_file = {cert_file:?}\nkey_file = {key_file:?}\n");
    (ca.pem(), tls)
}

/// A fresh master key from `sextant keys generate`.
fn master_key() -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(["keys", "generate"])
        .output()
        .expect("run `sextant keys generate`");
    assert!(output.status.success(), "sextant keys generate failed");
    String::from_utf8(output.stdout)
        .expect("the key is UTF-8")
        .trim()
        .to_owned()
}
