//! Prometheus remote_write through the real senders: Debian's `prometheus` scrapes Debian's
//! `prometheus-node-exporter` and remote-writes to Sextant; the node metrics arrive in the
//! token's tenant with their kinds and metadata, a `query_range` answer equals Prometheus's own
//! raw samples for the same series and time, and the stale markers written when the target goes
//! away arrive as points without a value. Hand-made requests check resets and refusals.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Kill, Sextant, agent, create_token, free_port, program_or_skip, sql};

fn get_json(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = agent().get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    match request.call() {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Sextant's answer for one series as (bucket second, value), one-second buckets, `max`.
fn sextant_points(
    server: &Sextant,
    token: &str,
    name: &str,
    matchers: &str,
    from_ms: i64,
    to_ms: i64,
) -> Vec<(i64, f64)> {
    let url = server.url(&format!(
        "/api/v1/metrics/query_range?name={name}&match={matchers}&from={from_ms}&to={to_ms}&step=1s&agg=max&time_format=unix"
    ));
    let (status, answer) = get_json(&url, Some(token));
    assert_eq!(status, 200, "{answer}");
    let series = answer["series"].as_array().expect("series");
    assert_eq!(series.len(), 1, "one series matches: {answer}");
    series[0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

/// Prometheus's raw samples of `selector` in `(to - range, to]`, as (second, value).
fn prometheus_points(
    prometheus: &str,
    selector: &str,
    to_ms: i64,
    range_s: i64,
) -> Vec<(i64, f64)> {
    let query = format!("{selector}[{range_s}s]");
    let url = format!(
        "{prometheus}/api/v1/query?query={}&time={}.{:03}",
        encode(&query),
        to_ms / 1000,
        to_ms % 1000
    );
    let (status, answer) = get_json(&url, None);
    assert_eq!(status, 200, "{answer}");
    let result = answer["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{answer}");
    result[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let seconds = v[0].as_f64().unwrap();
            let value: f64 = v[1].as_str().unwrap().parse().unwrap();
            (seconds.floor() as i64, value)
        })
        .collect()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn prometheus_remote_writes_node_metrics_that_match_its_own_answers() {
    let (Some(prometheus_bin), Some(exporter_bin)) = (
        program_or_skip("/usr/bin/prometheus"),
        program_or_skip("/usr/bin/prometheus-node-exporter"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ingest = create_token(&data, "nodes", "ingest");
    let viewer = create_token(&data, "nodes", "viewer");
    let stranger = create_token(&data, "other", "viewer");
    let server = Sextant::start(&data);

    let exporter_port = free_port();
    let exporter = Kill(
        Command::new(exporter_bin)
            .arg(format!("--web.listen-address=127.0.0.1:{exporter_port}"))
            .args([
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.loadavg",
                "--collector.meminfo",
                "--collector.stat",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prometheus_port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n- job_name: node\n  static_configs:\n  - targets: ['127.0.0.1:{exporter_port}']\n\
             remote_write:\n- url: http://{}/api/v1/prom/write\n  authorization:\n    type: Bearer\n    \
             credentials: {ingest}\n  queue_config:\n    batch_send_deadline: 1s\n    min_backoff: 100ms\n    \
             max_backoff: 1s\n  metadata_config:\n    send_interval: 1s\n",
            server.addr
        ),
    )
    .unwrap();
    let _prometheus = Kill(
        Command::new(prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prometheus = format!("http://127.0.0.1:{prometheus_port}");
    let count = |query: &str| -> i64 {
        let (status, rows) = sql(&server, &viewer, query);
        assert_eq!(status, 200, "{rows}");
        rows["rows"][0]["n"].as_i64().unwrap_or(0)
    };
    let started = now_ms();
    wait_until(
        "12 s of node metrics in Sextant",
        Duration::from_secs(60),
        || count("SELECT count(DISTINCT time) AS n FROM metrics WHERE name = 'node_load1'") >= 12,
    );

    // The same series over the same 8 seconds, ending 3 s ago (remote_write lags the scrape).
    let to_ms = now_ms() - 3_000;
    let range_s = 8;
    assert!(to_ms - range_s * 1000 > started);
    let instance = format!("instance=127.0.0.1:{exporter_port}");
    for (name, matchers, selector) in [
        ("node_load1", "", "node_load1"),
        (
            "node_cpu_seconds_total",
            "cpu=0,mode=idle",
            r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#,
        ),
        (
            "node_memory_MemAvailable_bytes",
            instance.as_str(),
            "node_memory_MemAvailable_bytes",
        ),
    ] {
        let ours = sextant_points(
            &server,
            &viewer,
            name,
            matchers,
            to_ms - range_s * 1000 + 1,
            to_ms + 1,
        );
        let theirs = prometheus_points(&prometheus, selector, to_ms, range_s);
        assert!(theirs.len() >= range_s as usize - 1, "{name}: {theirs:?}");
        assert_eq!(
            ours, theirs,
            "{name}: Sextant's answer equals Prometheus's samples"
        );
    }

    // Kinds from the metadata, the service from `job`, descriptions from the help texts.
    let (_, rows) = sql(
        &server,
        &viewer,
        "SELECT name, kind, service, max(description) AS help FROM metrics \
         WHERE name IN ('node_cpu_seconds_total', 'node_load1', 'up') GROUP BY name, kind, service ORDER BY name",
    );
    let rows = rows["rows"].as_array().unwrap().clone();
    let kinds: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["service"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("node_cpu_seconds_total", "sum", "node"),
            ("node_load1", "gauge", "node"),
            ("up", "gauge", "node")
        ],
        "{rows:?}"
    );
    wait_until("metadata (help texts)", Duration::from_secs(30), || {
        count(
            "SELECT count(*) AS n FROM metrics WHERE name = 'node_load1' AND description = '1m load average.'",
        ) > 0
    });

    // Another tenant sees none of it.
    let (_, none) = sql(&server, &stranger, "SELECT count(*) AS n FROM metrics");
    assert_eq!(none["rows"][0]["n"], 0);

    // The target goes away: Prometheus writes stale markers, which arrive as points with no value.
    drop(exporter);
    wait_until("stale markers", Duration::from_secs(30), || {
        count(
            "SELECT count(*) AS n FROM metrics WHERE name = 'node_load1' AND value IS NULL AND flags = 1",
        ) > 0
    });
    server.stop();
}

/// A series as its labels and (value, milliseconds) samples.
type Series<'a> = (&'a [(&'a str, &'a str)], &'a [(f64, i64)]);

/// A remote_write body written field by field from Prometheus's `remote.proto`.
fn write_request(series: &[Series<'_>]) -> Vec<u8> {
    use crate::ndjson::{field_bytes, field_varint};
    let mut request = Vec::new();
    for (labels, samples) in series {
        let mut ts = Vec::new();
        for (name, value) in *labels {
            let mut label = Vec::new();
            field_bytes(&mut label, 1, name.as_bytes());
            field_bytes(&mut label, 2, value.as_bytes());
            field_bytes(&mut ts, 1, &label);
        }
        for (value, timestamp) in *samples {
            let mut sample = Vec::new();
            // field 1, wire type 1 (64-bit): the double's bytes, little-endian.
            sample.push(0x09);
            sample.extend_from_slice(&value.to_le_bytes());
            field_varint(&mut sample, 2, *timestamp as u64);
            field_bytes(&mut ts, 2, &sample);
        }
        field_bytes(&mut request, 1, &ts);
    }
    snap::raw::Encoder::new().compress_vec(&request).unwrap()
}

#[test]
fn remote_write_handles_resets_and_refuses_bad_series_alone() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = create_token(dir.path(), "nodes", "ingest");
    let viewer = create_token(dir.path(), "nodes", "viewer");
    let server = Sextant::start(dir.path());
    let post = |body: &[u8], encoding: &str| {
        let mut response = agent()
            .post(&server.url("/api/v1/prom/write"))
            .header("Authorization", &format!("Bearer {ingest}"))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", encoding)
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    };
    let base = 1_796_126_400_000i64;
    let labels: &[(&str, &str)] = &[
        ("__name__", "jobs_total"),
        ("job", "worker"),
        ("queue", "mail"),
    ];
    // 10, 20, 30, then a restart: 5, 15. Rate over the minute counts 20 + 5 + 10 = 35.
    let samples: Vec<(f64, i64)> = [10.0, 20.0, 30.0, 5.0, 15.0]
        .iter()
        .enumerate()
        .map(|(i, v)| (*v, base + i as i64 * 10_000))
        .collect();
    let (status, answer) = post(&write_request(&[(labels, &samples)]), "snappy");
    assert_eq!(status, 204, "{answer}");
    let (_, rows) = sql(
        &server,
        &viewer,
        "SELECT kind, CAST(start_time AS BIGINT) AS s, service FROM metrics WHERE name = 'jobs_total' ORDER BY time",
    );
    let rows = rows["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter()
            .all(|r| r["kind"] == "sum" && r["service"] == "worker")
    );
    assert_eq!(rows[2]["s"].as_i64(), Some(base * 1_000_000));
    assert_eq!(
        rows[3]["s"].as_i64(),
        Some((base + 30_000) * 1_000_000),
        "the reset moves the start"
    );
    assert_eq!(rows[4]["s"], rows[3]["s"]);
    let (status, answer) = get_json(
        &server.url(&format!(
            "/api/v1/metrics/query_range?name=jobs_total&from={base}&to={}&step=1m&agg=rate",
            base + 60_000
        )),
        Some(&viewer),
    );
    assert_eq!(status, 200, "{answer}");
    let rate = answer["series"][0]["points"][0][1].as_f64().unwrap();
    assert!((rate - 35.0 / 60.0).abs() < 1e-9, "{answer}");

    // One bad series among good ones: the good are stored, the answer names the bad.
    let good: &[(&str, &str)] = &[("__name__", "queue_depth"), ("queue", "mail")];
    let no_name: &[(&str, &str)] = &[("queue", "mail")];
    let (status, answer) = post(
        &write_request(&[(good, &[(3.0, base)]), (no_name, &[(1.0, base)])]),
        "snappy",
    );
    assert_eq!(status, 400);
    assert!(
        answer.contains("1 series refused") && answer.contains("__name__"),
        "{answer}"
    );
    let (_, rows) = sql(
        &server,
        &viewer,
        "SELECT count(*) AS n FROM metrics WHERE name = 'queue_depth'",
    );
    assert_eq!(rows["rows"][0]["n"], 1);
    // Not snappy, not protobuf, not this encoding: refused whole with a reason.
    let (status, answer) = post(b"\xff\xff\xff\xff\xff\xff", "snappy");
    assert_eq!(status, 400);
    assert!(answer.contains("snappy"), "{answer}");
    let (status, answer) = post(
        &snap::raw::Encoder::new().compress_vec(b"\xff\xff").unwrap(),
        "snappy",
    );
    assert_eq!(status, 400);
    assert!(answer.contains("WriteRequest"), "{answer}");
    let (status, _) = post(&write_request(&[(good, &[(1.0, base)])]), "gzip");
    assert_eq!(status, 415);
    let (_, rows) = sql(&server, &viewer, "SELECT count(*) AS n FROM metrics");
    assert_eq!(rows["rows"][0]["n"], 6, "refused requests stored nothing");
    server.stop();
}
