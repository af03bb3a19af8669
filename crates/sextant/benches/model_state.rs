//! Model state against data on a long log stream, `cargo bench -p sextant --bench
//! model_state`: do templates and detectors stay bounded when only the values change?
//!
//! Options go after `--`: `--lines N` (default 1,000,000). Each of the 16 Loghub 2k samples
//! (`../shared/datasets/loghub-2k`, or `$SEXTANT_DATASETS`) is cycled to N / 16 lines, every
//! pass after the first with its digits redrawn at random
//! (`sextant_analytics::patterns::long_stream`), one service per system, times spread over the
//! 24 hours before the last hour (the systems side by side). The lines go over OTLP/HTTP
//! protobuf in requests of about 1,000 to
//! the release `sextant serve` on a fresh data directory, which is then stopped with SIGTERM
//! (it flushes and saves every model) and started again. It prints, per system and in all:
//! the distinct template ids lines carry, the live templates they resolve to, the watched
//! series and detector states; and bytes per line of the Parquet segments, of `meta.db`
//! (templates, detector states, events) and of the whole data directory. `MODEL_STATE_KEEP=1`
//! keeps the data directory to look into; `MODEL_STATE_NDJSON=FILE` also writes the lines sent
//! (`{"service", "time" (ns), "body"}` per line) for `benches/clickhouse_bytes.sh`, which
//! stores the same lines in ClickHouse to compare bytes per line.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sextant_analytics::patterns::long_stream;

use support::{
    DATASETS, Machine, Server, agent, create_token, datasets_dir, dir_size, file_size,
    post_protobuf, sql, string_value,
};

const BATCH: usize = 1_000;
const HOUR_NS: i64 = 3_600_000_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut lines: usize = 1_000_000;
    while let Some(arg) = args.next() {
        if arg == "--lines" {
            lines = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--lines takes a whole number");
        }
    }
    let loghub = datasets_dir().join("loghub-2k");
    let machine = Machine::read();
    println!(
        "machine: {} CPUs (nproc), {}, {:.1} GiB RAM",
        machine.cpus, machine.cpu_model, machine.mem_gib
    );
    let per_system = lines / DATASETS.len();
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64;
    let start_ns = (now_ns / HOUR_NS - 25) * HOUR_NS;
    let step_ns = 24 * HOUR_NS / per_system.max(1) as i64;

    let work = tempfile::Builder::new()
        .prefix("sextant-modelstate-")
        .tempdir()
        .expect("create a temporary directory");
    let data_dir = work.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("create the data directory");
    let ingest = format!("Bearer {}", create_token(&data_dir, "ingest"));
    let viewer = format!("Bearer {}", create_token(&data_dir, "viewer"));
    let server = Server::start(&data_dir);
    let client = agent();
    let url = format!("{}/v1/logs", server.base);
    let retries = AtomicU64::new(0);
    let started = Instant::now();
    // Every system's stream, sent side by side in time: each request holds the next lines of
    // every system (one resource each), so the tenant's log time only moves forward.
    let mut streams = Vec::new();
    for (n, system) in DATASETS.iter().enumerate() {
        let path = loghub.join(system).join(format!("{system}_2k.log"));
        let Ok(text) = std::fs::read(&path) else {
            println!("model_state: skipped: cannot read {}", path.display());
            return;
        };
        let sample: Vec<String> = String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        streams.push(long_stream(&sample, per_system, n as u64 + 1).collect::<Vec<String>>());
    }
    let per_request = (BATCH / DATASETS.len()).max(1);
    if let Some(path) = std::env::var_os("MODEL_STATE_NDJSON") {
        write_ndjson(std::path::Path::new(&path), &streams, start_ns, step_ns);
    }
    for first in (0..per_system).step_by(per_request) {
        let last = (first + per_request).min(per_system);
        let resource_logs = DATASETS
            .iter()
            .zip(&streams)
            .map(|(system, stream)| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: string_value(system),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: (first..last)
                        .map(|i| LogRecord {
                            time_unix_nano: (start_ns + i as i64 * step_ns) as u64,
                            body: string_value(&stream[i]),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        let request = ExportLogsServiceRequest { resource_logs };
        post_protobuf(&client, &url, &ingest, &request.encode_to_vec(), &retries);
    }
    let sent = per_system * DATASETS.len();
    println!(
        "sent {sent} lines in {:.1} s ({} retries)",
        started.elapsed().as_secs_f64(),
        retries.into_inner()
    );
    server.stop();
    let server = Server::start(&data_dir);

    let rows = |query: &str| sql(&server, &viewer, query).rows;
    let number = |row: &serde_json::Value, name: &str| row[name].as_u64().unwrap_or(0);
    // Ids lines carry, and the live templates they resolve to, per service.
    let per_service: BTreeMap<String, (u64, u64)> = rows(
        "SELECT l.service, count(DISTINCT l.template_id) AS ids, \
         count(DISTINCT t.template_id) AS templates \
         FROM logs l JOIN (SELECT unnest(ids) AS id, template_id FROM templates) t \
         ON l.template_id = t.id GROUP BY l.service",
    )
    .iter()
    .map(|row| {
        (
            row["service"].as_str().unwrap_or_default().to_owned(),
            (number(row, "ids"), number(row, "templates")),
        )
    })
    .collect();
    let live = rows("SELECT count(*) AS n FROM templates");
    server.stop();
    // The detector states saved on the clean stop, and their bytes.
    let meta_store =
        sextant_store::meta::SqliteMetadata::open(&sextant_store::metadata_path(&data_dir))
            .expect("open meta.db");
    let states = sextant_store::meta::CatalogStore::detector_states(&meta_store)
        .expect("read the detector states");
    drop(meta_store);
    let state_bytes: usize = states
        .iter()
        .map(|(_, key, state)| key.len() + state.len())
        .sum();

    println!("{:<12} {:>8} {:>10}", "service", "ids", "templates");
    for (service, (ids, templates)) in &per_service {
        println!("{service:<12} {ids:>8} {templates:>10}");
    }
    let (ids, templates) = per_service
        .values()
        .fold((0, 0), |(a, b), (i, t)| (a + i, b + t));
    println!(
        "all          {ids:>8} {templates:>10}  (live templates in `templates`: {})",
        live.first().map_or(0, |r| number(r, "n"))
    );
    let (segments, _) = dir_size(&data_dir.join("segments"));
    let meta = file_size(&data_dir.join("meta.db"))
        + file_size(&data_dir.join("meta.db-wal"))
        + file_size(&data_dir.join("meta.db-shm"));
    let (whole, _) = dir_size(&data_dir);
    let per_line = |bytes: u64| bytes as f64 / sent as f64;
    println!(
        "detector states: {} ({} bytes, {:.1} bytes per line)",
        states.len(),
        state_bytes,
        per_line(state_bytes as u64)
    );
    println!(
        "bytes per line: segments {:.1}, meta.db {:.1} ({:.0} % of segments), whole data \
         directory {:.1}",
        per_line(segments),
        per_line(meta),
        100.0 * meta as f64 / segments.max(1) as f64,
        per_line(whole)
    );
    if std::env::var_os("MODEL_STATE_KEEP").is_some() {
        println!(
            "data directory kept: {}",
            work.keep().join("data").display()
        );
    }
}

/// Writes every system's lines as NDJSON, in the order they are sent.
fn write_ndjson(path: &std::path::Path, streams: &[Vec<String>], start_ns: i64, step_ns: i64) {
    use std::io::Write;
    let file = std::fs::File::create(path).expect("create the NDJSON file");
    let mut out = std::io::BufWriter::new(file);
    let per_system = streams.first().map_or(0, Vec::len);
    for i in 0..per_system {
        for (system, stream) in DATASETS.iter().zip(streams) {
            let line = serde_json::json!({
                "service": system,
                "time": start_ns + i as i64 * step_ns,
                "body": stream[i],
            });
            writeln!(out, "{line}").expect("write the NDJSON file");
        }
    }
    out.flush().expect("write the NDJSON file");
}
