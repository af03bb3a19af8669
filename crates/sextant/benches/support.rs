//! What the benchmarks that drive a real `sextant serve` share: starting and stopping it, tokens,
//! HTTP calls, timing runs, facts about the machine, and the Loghub lines as OTLP values. Each
//! benchmark uses part of it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::Value;

/// Timings of repeated runs after one untimed warm-up, and what the last run found.
pub struct Runs {
    pub millis: Vec<f64>,
    pub found: usize,
}

impl Runs {
    pub fn percentile_ms(&self, q: f64) -> f64 {
        let mut sorted = self.millis.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    pub fn median_ms(&self) -> f64 {
        self.percentile_ms(0.5)
    }

    pub fn list(&self) -> String {
        self.millis
            .iter()
            .map(|ms| format!("{ms:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn time_runs(runs: usize, mut f: impl FnMut() -> usize) -> Runs {
    let mut found = f();
    let mut millis = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        found = f();
        millis.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Runs { millis, found }
}

pub struct SqlAnswer {
    pub rows: Vec<Value>,
}

pub fn sql(server: &Server, auth: &str, sql: &str) -> SqlAnswer {
    let body = serde_json::json!({"sql": sql, "format": "json"}).to_string();
    let mut response = agent()
        .post(format!("{}/api/v1/sql", server.base))
        .header("Content-Type", "application/json")
        .header("Authorization", auth)
        .send(body)
        .expect("POST /api/v1/sql");
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .expect("read the SQL answer");
    assert!(status == 200, "SQL `{sql}`: HTTP {status}: {text}");
    let answer: Value = serde_json::from_str(&text).expect("SQL answer is JSON");
    SqlAnswer {
        rows: answer["rows"].as_array().cloned().unwrap_or_default(),
    }
}

/// GETs `url` and returns the answer's text (up to 4 GiB); panics on a status other than 200.
pub fn get_text(url: &str, auth: &str) -> String {
    let mut response = agent()
        .get(url)
        .header("Authorization", auth)
        .call()
        .expect("GET");
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(4 << 30)
        .read_to_string()
        .expect("read the answer");
    assert!(status == 200, "GET {url}: HTTP {status}: {text}");
    text
}

pub fn get_json(url: &str, auth: &str) -> Value {
    serde_json::from_str(&get_text(url, auth)).expect("answer is JSON")
}

pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Bytes (apparent file sizes) and number of files under `dir`, recursively.
pub fn dir_size(dir: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (bytes, files) = dir_size(&entry.path());
            total.0 += bytes;
            total.1 += files;
        } else {
            total.0 += meta.len();
            total.1 += 1;
        }
    }
    total
}

pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_gib: f64,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_gib: mem_kib / (1024.0 * 1024.0),
        }
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User plus system CPU time of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, so 12 and 13 after `) `.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// A process's resident memory now and at its peak (`VmRSS`, `VmHWM`), in KiB.
pub fn resident_kib(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Sum of a counter's samples whose labels contain every one of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> Option<u64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if !labels.iter().all(|label| rest.contains(label)) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            sum += value;
            found = true;
        }
    }
    found.then_some(sum as u64)
}

/// `sextant tokens create` on `data_dir` for tenant `bench`; prints nothing of the token.
pub fn create_token(data_dir: &Path, role: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args([
            "tokens", "create", "--init", "--tenant", "bench", "--role", role,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run `sextant tokens create`");
    assert!(
        output.status.success(),
        "tokens create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("token is UTF-8")
        .trim()
        .to_owned()
}

/// A running `sextant serve`.
pub struct Server {
    child: Child,
    pub base: String,
    /// The CA the server's certificate chains to, when it serves TLS.
    ca_pem: Option<String>,
}

/// How to start a server beyond its data directory.
#[derive(Default)]
pub struct Start<'a> {
    /// `--config FILE`.
    pub config: Option<&'a Path>,
    /// Extra environment variables (`SEXTANT_MASTER_KEY`).
    pub env: Vec<(&'static str, String)>,
    /// The server's `[tls]` certificate chains to this CA: the clients trust it and use https.
    pub ca_pem: Option<String>,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with_config(data_dir, None)
    }

    /// Same, with `--config FILE`.
    pub fn start_with_config(data_dir: &Path, config: Option<&Path>) -> Server {
        Server::start_custom(
            data_dir,
            Start {
                config,
                ..Start::default()
            },
        )
    }

    pub fn start_custom(data_dir: &Path, start: Start<'_>) -> Server {
        let config = start.config;
        let mut command = Command::new(env!("CARGO_BIN_EXE_sextant"));
        // Encryption at rest is what `start.env` says, not what the caller's shell has.
        command.env_remove("SEXTANT_MASTER_KEY");
        command.envs(start.env.iter().map(|(k, v)| (k, v)));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start `sextant serve`");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("sextant exited before listening")
                .expect("read sextant's stdout");
            if let Some(addr) = line.strip_prefix("sextant listening on ") {
                break addr.trim().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let scheme = if start.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        let server = Server {
            child,
            base: format!("{scheme}://{addr}"),
            ca_pem: start.ca_pem,
        };
        server.wait_ready();
        server
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(600);
        let agent = self.agent();
        loop {
            if let Ok(response) = agent.get(format!("{}/readyz", self.base)).call()
                && response.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "sextant did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new client (its own connection pool) that can reach the server, over TLS if it
    /// serves TLS.
    pub fn agent(&self) -> ureq::Agent {
        match &self.ca_pem {
            None => agent(),
            Some(pem) => {
                use ureq::tls::{Certificate, RootCerts, TlsConfig};
                let root = Certificate::from_pem(pem.as_bytes()).expect("the bench CA's PEM");
                let tls = TlsConfig::builder()
                    .root_certs(RootCerts::Specific(std::sync::Arc::new(vec![
                        root.to_owned(),
                    ])))
                    .build();
                ureq::Agent::config_builder()
                    .tls_config(tls)
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(120)))
                    .build()
                    .new_agent()
            }
        }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// `/metrics` as a token of the bench tenant sees it (its own series).
    pub fn metrics(&self, token: &str) -> String {
        self.agent()
            .get(format!("{}/metrics", self.base))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default()
    }

    /// SIGTERM, then waits for the clean exit (buffers flushed to Parquet).
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let exit = self.child.wait().expect("wait for sextant");
        assert!(exit.success(), "sextant exited with {exit} after SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs an OTLP protobuf body until it gets 200, counting retries after 429 and 503 (and
/// transport errors) in `retries`; panics on any other answer.
pub fn post_protobuf(agent: &ureq::Agent, url: &str, auth: &str, body: &[u8], retries: &AtomicU64) {
    for _ in 0..1000 {
        let result = agent
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .header("Authorization", auth)
            .send(body);
        match result {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let answer = response.body_mut().read_to_vec().unwrap_or_default();
                match status {
                    200 => return,
                    429 | 503 => {}
                    _ => panic!("HTTP {status}: {}", String::from_utf8_lossy(&answer)),
                }
            }
            Err(err) => eprintln!("transport error, retrying: {err}"),
        }
        retries.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("a request was refused 1000 times");
}

/// An export request of gauge `name` (in `unit`): `by_service[i]` are the points of service
/// `svc-<i>`, one resource per service that has any.
pub fn gauge_request(
    name: &str,
    unit: &str,
    by_service: Vec<Vec<NumberDataPoint>>,
) -> ExportMetricsServiceRequest {
    let resource_metrics = by_service
        .into_iter()
        .enumerate()
        .filter(|(_, points)| !points.is_empty())
        .map(|(service, data_points)| ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: string_value(&format!("svc-{service}")),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    unit: unit.into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .new_agent()
}

/// The Loghub samples as the miner's own benchmarks read them: one list of the 16 systems
/// (each has `<DS>/<DS>_2k.log`) and one way to find the datasets, for both crates.
#[path = "../../sextant-analytics/benches/common/mod.rs"]
mod loghub;
#[allow(unused_imports)] // Each benchmark uses part of it.
pub use loghub::{SYSTEMS as DATASETS, datasets_dir};

pub fn string_value(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    })
}

/// The OTLP severity of a raw line: the first level word it contains, if any.
pub fn severity(line: &str) -> (i32, &'static str) {
    for word in line
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() >= 4)
        .take(12)
    {
        match word {
            "TRACE" | "VERBOSE" => return (1, "TRACE"),
            "DEBUG" | "debug" => return (5, "DEBUG"),
            "INFO" | "info" | "notice" | "Info" => return (9, "INFO"),
            "WARN" | "WARNING" | "warn" | "warning" | "Warning" => return (13, "WARN"),
            "ERROR" | "error" | "Error" | "FAILURE" | "SEVERE" => return (17, "ERROR"),
            "FATAL" | "fatal" | "CRITICAL" | "crit" | "emerg" => return (21, "FATAL"),
            _ => {}
        }
    }
    (0, "")
}
