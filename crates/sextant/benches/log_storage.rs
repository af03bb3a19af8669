//! Log storage and search benchmark, `cargo bench -p sextant --bench log_storage`: bytes on disk per log line (Parquet segments, write-ahead log) against the raw text and `zstd -3`, a rare-token search against `rg -c`, a one-hour one-service SQL query, and ingest throughput.
//!
//! Options go after `--`: `--lines N` (default 10,000,000), `--threads N` (client threads,
//! default 4).
//!
//! It builds N log lines by repeating the raw lines of the 16 Loghub 2k samples
//! (`../shared/datasets/loghub-2k/*/*_2k.log` next to the workspace, or
//! `$SEXTANT_DATASETS/loghub-2k`). Copy `c` of a line has `c` added to every number of two or
//! more digits in it (same width, wrapping), so repeats are not byte-identical. Line `i` gets
//! the time stamp `start + i * 24 h / N`, where `start` is the top of the hour 25 hours ago.
//! One random token `sextant-needle-<16 hex digits>` is appended to exactly 3 lines. The lines
//! are written to a raw text file (one per line, bodies only) in a temporary directory.
//!
//! It then starts the release `sextant serve` on a fresh data directory with the default
//! configuration (fsync on, `storage.flush_bytes` 64 MiB), sends every line over OTLP/HTTP
//! protobuf in requests of 1,000 records from several client threads (`service.name` = the
//! dataset's name, time = the line's time stamp), stops the server with SIGTERM (it flushes its
//! buffers to Parquet), and starts it again on the same directory so that queries read segment
//! files. Then it measures, in the same run:
//! - bytes of `segments/` and `wal/` per line, against the raw file and `zstd -3` of it;
//! - the compressed bytes per line of each column and of the token indexes;
//! - the rare-token search through `GET /api/v1/logs/search` (also its first, cold run after
//!   the restart) and through SQL `word_match` and `LIKE`, against
//!   `rg -c` on the raw file (one untimed warm-up, then the median of 5 runs each);
//! - a one-hour, one-service `SELECT ... ORDER BY time DESC LIMIT 100` through
//!   `POST /api/v1/sql` (one untimed warm-up, then p50 of 20 runs).
//!
//! A missing `zstd` or `rg` skips its comparison with the reason printed.

mod support;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;

use support::{
    DATASETS, Machine, Server, agent, clock_ticks, cpu_ticks, create_token, datasets_dir, dir_size,
    file_size, get_json, metric_sum, severity, sql, string_value, time_runs,
};

const RECORDS_PER_BATCH: usize = 1_000;
const DEFAULT_LINES: u64 = 10_000_000;
const DEFAULT_THREADS: usize = 4;
const NEEDLES: usize = 3;
const HOUR_NS: i64 = 3_600_000_000_000;
const SPAN_NS: i64 = 24 * HOUR_NS;
const SEARCH_RUNS: usize = 5;
const HOUR_QUERY_RUNS: usize = 20;
/// The service of the one-hour query.
const HOUR_QUERY_SERVICE: &str = "HDFS";

fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("log_storage: {message}");
            std::process::exit(2);
        }
    };
    let loghub = datasets_dir().join("loghub-2k");
    let loghub = std::fs::canonicalize(&loghub).unwrap_or(loghub);
    let corpus = match Corpus::load(&loghub) {
        Ok(corpus) => corpus,
        Err(reason) => {
            println!("log_storage: skipped: {reason}");
            return;
        }
    };
    let machine = Machine::read();
    println!(
        "machine: {} CPUs (nproc), {}, {:.1} GiB RAM",
        machine.cpus, machine.cpu_model, machine.mem_gib
    );

    let n = options.lines;
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64;
    let start_ns = (now_ns / HOUR_NS - 25) * HOUR_NS;
    let random = random_u64();
    let token = format!("sextant-needle-{random:016x}");
    let mut needles = Vec::new();
    let mut state = random;
    while needles.len() < NEEDLES.min(n as usize) {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let i = (state >> 11) % n;
        if !needles.contains(&i) {
            needles.push(i);
        }
    }
    needles.sort_unstable();
    let generator = Arc::new(Generator {
        corpus,
        n,
        start_ns,
        token: token.clone(),
        needles,
    });
    println!(
        "data: {n} lines from {} raw lines of {} ({} copies), times {} .. {} (24 h), token \
         `{token}` in lines {:?}",
        generator.corpus.lines.len(),
        loghub.display(),
        n.div_ceil(generator.corpus.lines.len() as u64),
        generator.time(0),
        generator.time(n - 1),
        generator.needles
    );

    // 1. The raw text file.
    let work = tempfile::Builder::new()
        .prefix("sextant-logbench-")
        .tempdir()
        .expect("create a temporary directory");
    let raw_path = work.path().join("raw.log");
    let started = Instant::now();
    {
        let file = std::fs::File::create(&raw_path).expect("create the raw file");
        let mut out = BufWriter::with_capacity(8 << 20, file);
        for i in 0..n {
            let (_, line) = generator.line(i);
            out.write_all(line.as_bytes()).expect("write the raw file");
            out.write_all(b"\n").expect("write the raw file");
        }
        out.flush().expect("write the raw file");
    }
    let raw_bytes = file_size(&raw_path);
    println!(
        "raw text file: {} bytes ({:.1} bytes/line), written in {:.1} s",
        raw_bytes,
        raw_bytes as f64 / n as f64,
        started.elapsed().as_secs_f64()
    );

    // zstd -3 of the raw file.
    let zst_path = work.path().join("raw.log.zst");
    let started = Instant::now();
    let zstd = Command::new("zstd")
        .args(["-3", "-q", "-f", "-o"])
        .arg(&zst_path)
        .arg(&raw_path)
        .status();
    let zstd = match zstd {
        Ok(status) if status.success() => {
            let secs = started.elapsed().as_secs_f64();
            let bytes = file_size(&zst_path);
            println!(
                "zstd -3 (CLI, default single thread): {} bytes ({:.2} bytes/line, {:.2}% of \
                 raw) in {:.1} s",
                bytes,
                bytes as f64 / n as f64,
                100.0 * bytes as f64 / raw_bytes as f64,
                secs
            );
            Some((bytes, secs))
        }
        Ok(status) => {
            println!("zstd comparison skipped: `zstd -3` exited with {status}");
            None
        }
        Err(err) => {
            println!(
                "zstd comparison skipped: cannot run `zstd` ({err}); install it with \
                 `apt-get install zstd`"
            );
            None
        }
    };
    let _ = std::fs::remove_file(&zst_path);

    // 2. Ingest.
    let data_dir = work.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("create the data directory");
    let ingest_token = create_token(&data_dir, "ingest");
    let viewer_token = create_token(&data_dir, "viewer");
    let server = Server::start(&data_dir);
    let pid = server.pid();
    let ticks = clock_ticks();
    let url = format!("{}/v1/logs", server.base);
    let auth = format!("Bearer {ingest_token}");
    let next_batch = Arc::new(AtomicU64::new(0));
    let sent_bytes = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let (server0, client0) = (cpu_ticks(&pid), cpu_ticks("self"));
    let started = Instant::now();
    let handles: Vec<_> = (0..options.threads)
        .map(|id| {
            let (url, auth, generator) = (url.clone(), auth.clone(), generator.clone());
            let (next_batch, sent_bytes, retries) =
                (next_batch.clone(), sent_bytes.clone(), retries.clone());
            std::thread::Builder::new()
                .name(format!("client-{id}"))
                .spawn(move || client(&url, &auth, &generator, &next_batch, &sent_bytes, &retries))
                .expect("spawn a client thread")
        })
        .collect();
    for handle in handles {
        handle.join().expect("client thread panicked");
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let (server1, client1) = (cpu_ticks(&pid), cpu_ticks("self"));
    let server_cpu = server1.saturating_sub(server0) as f64 / ticks;
    let client_cpu = client1.saturating_sub(client0) as f64 / ticks;
    let accepted = metric_sum(
        &server.metrics(&ingest_token),
        "sextant_ingest_records_total",
        &["outcome=\"accepted\""],
    );
    let sent_bytes = sent_bytes.load(Ordering::Relaxed);
    println!(
        "ingest: {n} records in {ingest_secs:.1} s = {:.0} records/s, {:.1} MB/s of OTLP \
         protobuf ({:.1} bytes/record), {} threads; server CPU {server_cpu:.1} s ({:.0} \
         records per server-CPU-s), client CPU {client_cpu:.1} s; 429/503 retries: {}; server \
         counted {accepted:?} accepted",
        n as f64 / ingest_secs,
        sent_bytes as f64 / 1e6 / ingest_secs,
        sent_bytes as f64 / n as f64,
        options.threads,
        n as f64 / server_cpu,
        retries.load(Ordering::Relaxed)
    );
    let wal_after_ingest = dir_size(&data_dir.join("wal"));
    let segments_after_ingest = dir_size(&data_dir.join("segments"));
    println!(
        "on disk right after ingest: wal/ {} bytes in {} files, segments/ {} bytes in {} files",
        wal_after_ingest.0, wal_after_ingest.1, segments_after_ingest.0, segments_after_ingest.1
    );
    let started = Instant::now();
    server.stop();
    let stop_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let server = Server::start(&data_dir);
    let restart_secs = started.elapsed().as_secs_f64();
    println!(
        "SIGTERM to exit (final flush): {stop_secs:.1} s; restart to ready: {restart_secs:.1} s"
    );

    // 3. Bytes on disk.
    let (segments_bytes, segment_files) = dir_size(&data_dir.join("segments"));
    let (wal_bytes, wal_files) = dir_size(&data_dir.join("wal"));
    let per_line = |bytes: u64| bytes as f64 / n as f64;
    println!(
        "after restart: segments/ {segments_bytes} bytes in {segment_files} files ({:.2} \
         bytes/line, {:.2}% of raw); wal/ {wal_bytes} bytes in {wal_files} files ({:.2} \
         bytes/line)",
        per_line(segments_bytes),
        100.0 * segments_bytes as f64 / raw_bytes as f64,
        per_line(wal_bytes)
    );

    print_column_sizes(&data_dir.join("segments"), n);

    let viewer = format!("Bearer {viewer_token}");
    let count = sql(&server, &viewer, "SELECT count(*) AS n FROM logs");
    println!(
        "check: SELECT count(*) FROM logs = {}",
        count
            .rows
            .first()
            .and_then(|r| r.get("n"))
            .unwrap_or(&Value::Null)
    );

    // Rare-token search.
    let from = generator.time(0);
    let to = generator.time(n - 1) + 1;
    let search_url = format!(
        "{}/api/v1/logs/search?q={token}&from={from}&to={to}&limit=100",
        server.base
    );
    // The first search after a restart reads the token indexes of the files it considers.
    let started = Instant::now();
    let cold_found = get_json(&search_url, &viewer)["logs"]
        .as_array()
        .map_or(0, Vec::len);
    let cold_ms = started.elapsed().as_secs_f64() * 1e3;
    println!(
        "search GET /api/v1/logs/search?q=<token>, first after restart: {cold_ms:.1} ms, \
         {cold_found} records found"
    );
    let search = time_runs(SEARCH_RUNS, || {
        let answer = get_json(&search_url, &viewer);
        answer["logs"].as_array().map_or(0, Vec::len)
    });
    println!(
        "search GET /api/v1/logs/search?q=<token> over 24 h: median {:.1} ms (runs {}), {} \
         records found",
        search.median_ms(),
        search.list(),
        search.found
    );
    let like_sql = format!("SELECT time, service, body FROM logs WHERE body LIKE '%{token}%'");
    let like = time_runs(SEARCH_RUNS, || sql(&server, &viewer, &like_sql).rows.len());
    println!(
        "search SQL `body LIKE '%<token>%'`: median {:.1} ms (runs {}), {} rows",
        like.median_ms(),
        like.list(),
        like.found
    );
    let word_sql =
        format!("SELECT time, service, body FROM logs WHERE word_match(body, '{token}')");
    let word = time_runs(SEARCH_RUNS, || sql(&server, &viewer, &word_sql).rows.len());
    println!(
        "search SQL `word_match(body, '<token>')`: median {:.1} ms (runs {}), {} rows",
        word.median_ms(),
        word.list(),
        word.found
    );
    let rg = match Command::new("rg").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let rg = time_runs(SEARCH_RUNS, || {
                let out = Command::new("rg")
                    .arg("-c")
                    .arg(&token)
                    .arg(&raw_path)
                    .output()
                    .expect("run rg");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(0)
            });
            println!(
                "rg -c <token> <raw file>: median {:.1} ms (runs {}), count {}",
                rg.median_ms(),
                rg.list(),
                rg.found
            );
            Some(rg)
        }
        _ => {
            println!(
                "rg comparison skipped: cannot run `rg`; install it with `apt-get install \
                 ripgrep`"
            );
            None
        }
    };

    // One hour, one service.
    let hour = start_ns + 12 * HOUR_NS;
    let hour_sql = format!(
        "SELECT time, body FROM logs WHERE service = '{HOUR_QUERY_SERVICE}' AND time >= \
         to_timestamp_nanos({hour}) AND time < to_timestamp_nanos({}) ORDER BY time DESC \
         LIMIT 100",
        hour + HOUR_NS
    );
    let hour_query = time_runs(HOUR_QUERY_RUNS, || {
        sql(&server, &viewer, &hour_sql).rows.len()
    });
    println!(
        "one-hour one-service SQL ({HOUR_QUERY_SERVICE}, hour 12 of 24): p50 {:.1} ms, p90 {:.1} \
         ms, max {:.1} ms over {HOUR_QUERY_RUNS} runs, {} rows",
        hour_query.percentile_ms(0.5),
        hour_query.percentile_ms(0.9),
        hour_query.percentile_ms(1.0),
        hour_query.found
    );
    println!(
        "metric range query (10,000 series x 1 day): not measured; this benchmark does not \
         ingest metrics"
    );
    drop(server);

    // 4. Summary.
    println!(
        "\nsummary ({n} lines; machine: {} CPUs, {}):",
        machine.cpus, machine.cpu_model
    );
    println!("{:<48} {:>16} {:>12}", "figure", "value", "ratio");
    let row = |name: &str, value: String, ratio: String| {
        println!("{name:<48} {value:>16} {ratio:>12}");
    };
    row(
        "raw text bytes/line",
        format!("{:.2}", per_line(raw_bytes)),
        String::new(),
    );
    match zstd {
        Some((bytes, secs)) => {
            row(
                "zstd -3 bytes/line",
                format!("{:.2}", per_line(bytes)),
                format!("{:.3} raw", bytes as f64 / raw_bytes as f64),
            );
            row("zstd -3 time (s)", format!("{secs:.1}"), String::new());
            row(
                "Sextant segments/ bytes/line",
                format!("{:.2}", per_line(segments_bytes)),
                format!("{:.2}x zstd", segments_bytes as f64 / bytes as f64),
            );
        }
        None => row(
            "Sextant segments/ bytes/line",
            format!("{:.2}", per_line(segments_bytes)),
            "(no zstd)".into(),
        ),
    }
    row(
        "Sextant wal/ bytes/line (after restart)",
        format!("{:.2}", per_line(wal_bytes)),
        String::new(),
    );
    row(
        "OTLP protobuf request bytes/line",
        format!("{:.2}", per_line(sent_bytes)),
        String::new(),
    );
    row(
        "ingest records/s",
        format!("{:.0}", n as f64 / ingest_secs),
        String::new(),
    );
    row(
        "search API median (ms)",
        format!("{:.1}", search.median_ms()),
        rg.as_ref().map_or("(no rg)".into(), |rg| {
            format!("rg {:.3}x", rg.median_ms() / search.median_ms())
        }),
    );
    row(
        "search API first after restart (ms)",
        format!("{cold_ms:.1}"),
        String::new(),
    );
    row(
        "SQL word_match median (ms)",
        format!("{:.1}", word.median_ms()),
        rg.as_ref().map_or("(no rg)".into(), |rg| {
            format!("rg {:.3}x", rg.median_ms() / word.median_ms())
        }),
    );
    row(
        "SQL LIKE median (ms)",
        format!("{:.1}", like.median_ms()),
        rg.as_ref().map_or("(no rg)".into(), |rg| {
            format!("rg {:.3}x", rg.median_ms() / like.median_ms())
        }),
    );
    if let Some(rg) = &rg {
        row(
            "rg -c median (ms)",
            format!("{:.1}", rg.median_ms()),
            String::new(),
        );
    }
    row(
        "1-hour 1-service SQL p50 (ms)",
        format!("{:.1}", hour_query.percentile_ms(0.5)),
        String::new(),
    );
    println!("(ratio `rg Nx` = rg time / Sextant time; above 1 means Sextant was faster)");
}

struct Options {
    lines: u64,
    threads: usize,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            lines: DEFAULT_LINES,
            threads: DEFAULT_THREADS,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                // `cargo bench` passes `--bench` to harness-less benchmarks.
                "--bench" => {}
                "--lines" => {
                    let text = value("--lines")?;
                    options.lines = text
                        .replace('_', "")
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or(format!("`{text}` is not a positive number of lines"))?;
                }
                "--threads" => {
                    let text = value("--threads")?;
                    options.threads = text
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or(format!("`{text}` is not a positive thread count"))?;
                }
                other => {
                    return Err(format!(
                        "unknown argument `{other}` (expected --lines N, --threads N)"
                    ));
                }
            }
        }
        Ok(options)
    }
}

/// Compressed bytes per line of each column of the segment files, and of their token indexes,
/// from the files' footers.
fn print_column_sizes(segments: &Path, lines: u64) {
    use parquet::file::reader::FileReader;
    let mut columns: std::collections::BTreeMap<String, u64> = Default::default();
    let mut index_bytes = 0u64;
    let mut files = vec![segments.to_owned()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read a segment directory") {
                files.push(entry.expect("a directory entry").path());
            }
            continue;
        }
        let file = std::fs::File::open(&path).expect("open a segment file");
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(file)
            .expect("a Parquet segment file");
        let metadata = reader.metadata();
        for row_group in metadata.row_groups() {
            for column in row_group.columns() {
                let name = column.column_path().parts()[0].clone();
                *columns.entry(name).or_default() += column.compressed_size() as u64;
            }
        }
        let place = metadata
            .file_metadata()
            .key_value_metadata()
            .and_then(|kvs| kvs.iter().find(|kv| kv.key == "sextant.token_index"))
            .and_then(|kv| kv.value.clone());
        if let Some((_, len)) = place.as_deref().and_then(|p| p.split_once(':')) {
            index_bytes += len.parse::<u64>().unwrap_or(0);
        }
    }
    let per_line = |bytes: u64| bytes as f64 / lines as f64;
    let mut parts: Vec<String> = columns
        .iter()
        .filter(|&(_, &bytes)| per_line(bytes) >= 0.005)
        .map(|(name, &bytes)| format!("{name} {:.2}", per_line(bytes)))
        .collect();
    parts.push(format!("token index {:.2}", per_line(index_bytes)));
    println!(
        "segment bytes/line by column (others under 0.01): {}",
        parts.join(", ")
    );
}

fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// The raw Loghub lines, with the index of each one's dataset.
struct Corpus {
    lines: Vec<String>,
    dataset: Vec<usize>,
}

impl Corpus {
    fn load(loghub: &Path) -> Result<Corpus, String> {
        let mut corpus = Corpus {
            lines: Vec::new(),
            dataset: Vec::new(),
        };
        for (index, dataset) in DATASETS.iter().enumerate() {
            let path = loghub.join(dataset).join(format!("{dataset}_2k.log"));
            let raw =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let text = String::from_utf8_lossy(&raw);
            let before = corpus.lines.len();
            for line in text.lines().filter(|line| !line.is_empty()) {
                corpus.lines.push(line.to_owned());
                corpus.dataset.push(index);
            }
            if corpus.lines.len() == before {
                return Err(format!("{} has no lines", path.display()));
            }
        }
        Ok(corpus)
    }
}

/// Line `i` of the run, computed on demand (the raw file and the requests agree).
struct Generator {
    corpus: Corpus,
    n: u64,
    start_ns: i64,
    token: String,
    needles: Vec<u64>,
}

impl Generator {
    fn time(&self, i: u64) -> i64 {
        self.start_ns + (i128::from(i) * i128::from(SPAN_NS) / i128::from(self.n)) as i64
    }

    /// The dataset index and text of line `i`.
    fn line(&self, i: u64) -> (usize, String) {
        let count = self.corpus.lines.len() as u64;
        let (copy, j) = (i / count, (i % count) as usize);
        let mut bytes = self.corpus.lines[j].clone().into_bytes();
        if copy > 0 {
            add_to_numbers(&mut bytes, copy);
        }
        let mut text = String::from_utf8(bytes).expect("only ASCII digits were changed");
        if self.needles.contains(&i) {
            text.push(' ');
            text.push_str(&self.token);
        }
        (self.corpus.dataset[j], text)
    }
}

/// Adds `add` to every run of two or more ASCII digits, keeping its width (wrapping around).
fn add_to_numbers(bytes: &mut [u8], add: u64) {
    let mut k = 0;
    while k < bytes.len() {
        if !bytes[k].is_ascii_digit() {
            k += 1;
            continue;
        }
        let begin = k;
        while k < bytes.len() && bytes[k].is_ascii_digit() {
            k += 1;
        }
        if k - begin < 2 {
            continue;
        }
        let mut carry = add;
        for digit in bytes[begin..k].iter_mut().rev() {
            if carry == 0 {
                break;
            }
            let sum = u64::from(*digit - b'0') + carry;
            *digit = b'0' + (sum % 10) as u8;
            carry = sum / 10;
        }
    }
}

/// The request for lines `begin..end`: one resource (`service.name` = dataset) per run of lines
/// from the same dataset.
fn logs_request(generator: &Generator, begin: u64, end: u64) -> ExportLogsServiceRequest {
    let mut resource_logs: Vec<ResourceLogs> = Vec::new();
    let mut current: Option<usize> = None;
    for i in begin..end {
        let (dataset, text) = generator.line(i);
        let time = generator.time(i) as u64;
        let (severity_number, severity_text) = severity(&text);
        let record = LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time,
            severity_number,
            severity_text: severity_text.to_owned(),
            body: string_value(&text),
            ..Default::default()
        };
        if current != Some(dataset) {
            current = Some(dataset);
            resource_logs.push(ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: string_value(DATASETS[dataset]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "loghub".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        let last = resource_logs.last_mut().expect("a resource was pushed");
        last.scope_logs[0].log_records.push(record);
    }
    ExportLogsServiceRequest { resource_logs }
}

/// Sends batches until none are left; retries 429 and 503 answers and transport errors.
fn client(
    url: &str,
    auth: &str,
    generator: &Generator,
    next_batch: &AtomicU64,
    sent_bytes: &AtomicU64,
    retries: &AtomicU64,
) {
    let agent = agent();
    loop {
        let batch = next_batch.fetch_add(1, Ordering::Relaxed);
        let begin = batch * RECORDS_PER_BATCH as u64;
        if begin >= generator.n {
            return;
        }
        let end = (begin + RECORDS_PER_BATCH as u64).min(generator.n);
        let body = logs_request(generator, begin, end).encode_to_vec();
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts < 1000, "batch {batch} was refused 1000 times");
            let result = agent
                .post(url)
                .header("Content-Type", "application/x-protobuf")
                .header("Authorization", auth)
                .send(&body[..]);
            match result {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let answer = response.body_mut().read_to_vec().unwrap_or_default();
                    match status {
                        200 => {
                            sent_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                            break;
                        }
                        429 | 503 => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        _ => panic!(
                            "batch {batch}: HTTP {status}: {}",
                            String::from_utf8_lossy(&answer)
                        ),
                    }
                }
                Err(err) => {
                    retries.fetch_add(1, Ordering::Relaxed);
                    eprintln!("batch {batch}: transport error, retrying: {err}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
