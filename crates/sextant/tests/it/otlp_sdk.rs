//! The official OpenTelemetry Python SDK, over OTLP/HTTP and OTLP/gRPC, against the real binary:
//! every log, span and metric kind the SDK produces is stored under the token's tenant, intact.
//!
//! Runs `tests/python/send_telemetry.py` with the interpreter in `SEXTANT_TEST_PYTHON`, or else
//! `<workspace>/.venv/bin/python`. Without a usable interpreter the test is skipped, except when
//! `CI` is set, where it fails.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sextant_model::{AttrValue, Attributes, LogRow, MetricKind, MetricRow, SpanRow, TenantId};
use sextant_store::TelemetryReader;

use crate::support::{self, Sextant};

/// Longest one run of the script may take (its exporters give up after 10 s per request).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(45);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/send_telemetry.py")
}

/// The interpreter to use, or why there is none.
fn find_python() -> Result<PathBuf, String> {
    let python = std::env::var_os("SEXTANT_TEST_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        PathBuf::from,
    );
    if !python.exists() {
        return Err(format!(
            "no Python interpreter at {} (set SEXTANT_TEST_PYTHON, or create the venv: \
             python3 -m venv .venv && .venv/bin/pip install opentelemetry-sdk \
             opentelemetry-exporter-otlp-proto-http opentelemetry-exporter-otlp-proto-grpc)",
            python.display()
        ));
    }
    let output = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, \
             opentelemetry.exporter.otlp.proto.grpc",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} cannot import the OpenTelemetry SDK and OTLP exporters: {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(python)
}

/// The interpreter, or `None` after printing why the test is skipped. Panics under CI.
pub(crate) fn python_or_skip() -> Option<PathBuf> {
    match find_python() {
        Ok(python) => Some(python),
        Err(why) if std::env::var_os("CI").is_some() => panic!("CI needs the Python SDK: {why}"),
        Err(why) => {
            println!("skipping: {why}");
            None
        }
    }
}

pub(crate) struct ScriptRun {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs the script once; kills it after [`SCRIPT_TIMEOUT`].
fn run_script(
    python: &Path,
    server: &Sextant,
    token: &str,
    protocol: &str,
    run_id: &str,
) -> ScriptRun {
    run_script_with(python, &server.url(""), token, protocol, run_id, &[])
}

/// The script against `endpoint`, with more environment (the TLS files, say).
pub(crate) fn run_script_with(
    python: &Path,
    endpoint: &str,
    token: &str,
    protocol: &str,
    run_id: &str,
    env: &[(&str, &Path)],
) -> ScriptRun {
    let mut command = Command::new(python);
    command
        .arg(script())
        .env("SEXTANT_ENDPOINT", endpoint)
        .env("SEXTANT_TOKEN", token)
        .env("SEXTANT_PROTOCOL", protocol)
        .env("SEXTANT_RUN_ID", run_id)
        .envs(env.iter().map(|(key, value)| (*key, value.as_os_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The SDK reads OTEL_* variables (temporality, compression, headers...); the script must see
    // only what it sets itself.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    // `requests` lets these override the CA an exporter is given, so a test's own CA would be
    // ignored where the machine sets them.
    command
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE");
    let mut child = command.spawn().expect("start the Python script");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "send_telemetry.py ({protocol}) ran longer than {SCRIPT_TIMEOUT:?}; stderr:\n{}",
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ScriptRun {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn send(python: &Path, server: &Sextant, token: &str, protocol: &str, run_id: &str) {
    let run = run_script(python, server, token, protocol, run_id);
    assert!(
        run.status.success(),
        "send_telemetry.py ({protocol}) exited with {}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
}

fn attr<'a>(attributes: &'a Attributes, key: &str) -> Option<&'a AttrValue> {
    attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn has_run_id(attributes: &Attributes, run_id: &str) -> bool {
    attr(attributes, "run_id") == Some(&AttrValue::Str(run_id.to_owned()))
}

/// The three spans of one run: parent first, then the children by name.
fn check_spans<'a>(spans: &'a [SpanRow], service: &str, run_id: &str) -> &'a SpanRow {
    let mine: Vec<&SpanRow> = spans.iter().filter(|s| s.name.contains(run_id)).collect();
    let names: BTreeSet<&str> = mine.iter().map(|s| s.name.as_str()).collect();
    let expected: BTreeSet<String> = [
        format!("sdk parent {run_id}"),
        format!("sdk child {run_id} 0"),
        format!("sdk child {run_id} 1"),
    ]
    .into();
    assert_eq!(
        names,
        expected.iter().map(String::as_str).collect(),
        "span names of run {run_id}"
    );
    assert_eq!(mine.len(), 3, "spans of run {run_id}: {mine:#?}");
    let parent = mine
        .iter()
        .find(|s| s.name.starts_with("sdk parent"))
        .unwrap();
    assert_eq!(parent.trace_id.len(), 16);
    assert_eq!(parent.span_id.len(), 8);
    assert!(parent.trace_id.iter().any(|&b| b != 0));
    assert!(
        parent.parent_span_id.is_empty(),
        "the parent is a root span: {parent:#?}"
    );
    let mut child_ids = BTreeSet::new();
    for span in &mine {
        assert_eq!(span.service, service, "{span:#?}");
        assert_eq!(span.scope_name, "sextant.sdk_test");
        assert_eq!(span.scope_version, "1.0.0");
        assert_eq!(span.kind, 1, "SDK spans are internal by default");
        assert!(span.start_time_unix_nano > 0);
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
        if span.name.starts_with("sdk child") {
            assert_eq!(
                span.trace_id, parent.trace_id,
                "child in the parent's trace"
            );
            assert_eq!(span.parent_span_id, parent.span_id, "child's parent link");
            assert_eq!(span.span_id.len(), 8);
            assert_ne!(span.span_id, parent.span_id);
            child_ids.insert(span.span_id.clone());
            let index: i64 = span.name.rsplit(' ').next().unwrap().parse().unwrap();
            // Attribute values are stored as text.
            assert_eq!(
                attr(&span.attributes, "child.index"),
                Some(&AttrValue::Str(index.to_string()))
            );
            assert!(span.start_time_unix_nano >= parent.start_time_unix_nano);
            assert!(span.end_time_unix_nano <= parent.end_time_unix_nano);
        }
    }
    assert_eq!(child_ids.len(), 2, "children have distinct span ids");
    parent
}

fn check_logs(logs: &[LogRow], service: &str, run_id: &str, parent: &SpanRow) {
    let mine: Vec<&LogRow> = logs
        .iter()
        .filter(|l| l.body.to_text().contains(run_id))
        .collect();
    let bodies: BTreeSet<String> = mine.iter().map(|l| l.body.to_text()).collect();
    let expected: BTreeSet<String> = (0..5).map(|i| format!("sdk log {run_id} {i}")).collect();
    assert_eq!(bodies, expected, "log bodies of run {run_id}");
    assert_eq!(mine.len(), 5, "each log stored once: {mine:#?}");
    for log in mine {
        assert_eq!(log.service, service, "{log:#?}");
        assert!(matches!(log.body, AttrValue::Str(_)), "{log:#?}");
        assert_eq!(log.severity_number, 9, "INFO");
        assert_eq!(log.severity_text, "INFO");
        assert_eq!(log.scope_name, "sextant.sdk_test");
        assert!(has_run_id(&log.attributes, run_id), "{log:#?}");
        assert!(log.time_unix_nano > 0);
        // Emitted inside the parent span: the record carries its trace context.
        assert_eq!(log.trace_id, parent.trace_id, "{log:#?}");
        assert_eq!(log.span_id, parent.span_id, "{log:#?}");
        assert_eq!(
            attr(&log.resource_attributes, "service.name"),
            Some(&AttrValue::Str(service.to_owned()))
        );
    }
}

/// The rows of one metric of one run. The SDK exports cumulative points on `force_flush` and
/// again on `shutdown`, so there may be more than one row, all with the same values.
fn metric<'a>(
    metrics: &'a [MetricRow],
    service: &str,
    run_id: &str,
    name: &str,
) -> Vec<&'a MetricRow> {
    let rows: Vec<&MetricRow> = metrics
        .iter()
        .filter(|m| m.service == service && m.name == name && has_run_id(&m.attributes, run_id))
        .collect();
    assert!(!rows.is_empty(), "no rows for {name} of run {run_id}");
    rows
}

fn check_metrics(metrics: &[MetricRow], service: &str, run_id: &str) {
    let mut kinds = BTreeSet::new();
    for row in metrics.iter().filter(|m| has_run_id(&m.attributes, run_id)) {
        assert_eq!(row.service, service, "{row:#?}");
        assert!(row.name.starts_with("sdk_test."), "{row:#?}");
        assert_eq!(row.scope_name, "sextant.sdk_test");
        assert!(row.time_unix_nano > 0, "{row:#?}");
        kinds.insert(row.kind.as_str());
    }
    let expected_kinds: BTreeSet<&str> = [
        MetricKind::Sum,
        MetricKind::Gauge,
        MetricKind::Histogram,
        MetricKind::ExponentialHistogram,
    ]
    .into_iter()
    .map(MetricKind::as_str)
    .collect();
    assert_eq!(kinds, expected_kinds, "metric kinds of run {run_id}");

    for row in metric(metrics, service, run_id, "sdk_test.counter") {
        assert_eq!(row.kind, MetricKind::Sum, "{row:#?}");
        assert_eq!(row.value, Some(7.0), "3 + 4: {row:#?}");
        assert!(row.is_monotonic);
        assert_eq!(row.temporality, 2, "cumulative");
        assert_eq!(row.unit, "1");
        assert_eq!(row.description, "a counter");
        assert!(row.start_time_unix_nano > 0 && row.start_time_unix_nano <= row.time_unix_nano);
    }
    for row in metric(metrics, service, run_id, "sdk_test.updown") {
        assert_eq!(row.kind, MetricKind::Sum, "{row:#?}");
        assert_eq!(row.value, Some(6.0), "10 - 4: {row:#?}");
        assert!(!row.is_monotonic);
        assert_eq!(row.temporality, 2, "cumulative");
    }
    for row in metric(metrics, service, run_id, "sdk_test.gauge") {
        assert_eq!(row.kind, MetricKind::Gauge, "{row:#?}");
        assert_eq!(row.value, Some(42.5), "{row:#?}");
        assert_eq!(row.unit, "C");
        assert_eq!(row.temporality, 0);
    }
    for row in metric(metrics, service, run_id, "sdk_test.histogram") {
        assert_eq!(row.kind, MetricKind::Histogram, "{row:#?}");
        assert_eq!(row.count, Some(4), "{row:#?}");
        assert_eq!(row.value, Some(5555.0), "sum of 5, 50, 500, 5000");
        assert_eq!(row.min, Some(5.0));
        assert_eq!(row.max, Some(5000.0));
        assert_eq!(row.bucket_bounds, [10.0, 100.0, 1000.0]);
        assert_eq!(row.bucket_counts, [1, 1, 1, 1]);
        assert_eq!(row.temporality, 2, "cumulative");
        assert_eq!(row.unit, "ms");
    }
    let recorded = [1.5, 2.5, 10.0, 100.0];
    for row in metric(metrics, service, run_id, "sdk_test.exp_histogram") {
        assert_eq!(row.kind, MetricKind::ExponentialHistogram, "{row:#?}");
        assert_eq!(row.count, Some(4), "{row:#?}");
        assert_eq!(row.value, Some(114.0), "sum of 1.5, 2.5, 10, 100");
        assert_eq!(row.min, Some(1.5));
        assert_eq!(row.max, Some(100.0));
        assert_eq!(row.temporality, 2, "cumulative");
        assert_eq!(row.bucket_counts.len(), row.bucket_bounds.len() + 1);
        assert_eq!(row.bucket_counts.iter().sum::<u64>(), 4, "{row:#?}");
        assert!(
            row.bucket_bounds.windows(2).all(|w| w[0] < w[1]),
            "bounds ascend: {:?}",
            row.bucket_bounds
        );
        // Each recorded value lands in a non-empty bucket (lower, upper].
        for value in recorded {
            let bucket = row.bucket_bounds.partition_point(|&upper| upper < value);
            assert!(
                bucket < row.bucket_bounds.len() && row.bucket_counts[bucket] > 0,
                "{value} falls in bucket {bucket}, which is empty: {row:#?}"
            );
        }
    }
}

fn run_id(protocol: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{protocol}-{}-{nanos:x}", std::process::id())
}

#[test]
fn python_sdk_over_http_and_grpc_stores_every_signal() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tenant_a_token = support::create_token(dir.path(), "tenant-a", "ingest");
    let _tenant_b_token = support::create_token(dir.path(), "tenant-b", "ingest");
    let server = Sextant::start(dir.path());

    let runs = [("http", run_id("http")), ("grpc", run_id("grpc"))];
    for (protocol, run_id) in &runs {
        send(&python, &server, &tenant_a_token, protocol, run_id);
    }
    // The script reports failed exports: a token the server rejects makes it exit non-zero.
    let rejected = run_script(&python, &server, "not-a-token", "http", "rejected");
    assert!(
        !rejected.status.success(),
        "the script must fail when the server rejects its exports; stderr:\n{}",
        rejected.stderr
    );
    // Over gRPC the refusals carry the matching status codes.
    let viewer = support::create_token(dir.path(), "tenant-a", "viewer");
    for (token, code) in [
        ("not-a-token", "UNAUTHENTICATED"),
        (viewer.as_str(), "PERMISSION_DENIED"),
    ] {
        let rejected = run_script(&python, &server, token, "grpc", "rejected");
        assert!(!rejected.status.success(), "gRPC with {code}");
        assert!(
            rejected.stderr.contains(code),
            "expected {code} in stderr:\n{}",
            rejected.stderr
        );
    }
    // Each kind reads right by default: histograms as their mean observation (not an average
    // of cumulative sums), counters as a rate, gauges and up-down sums as they are.
    let (_, http_run) = &runs[0];
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, agg, value) in [
        ("sdk_test.histogram", "mean", Some(5555.0 / 4.0)),
        ("sdk_test.exp_histogram", "mean", Some(114.0 / 4.0)),
        ("sdk_test.gauge", "avg", Some(42.5)),
        ("sdk_test.updown", "avg", Some(6.0)),
        ("sdk_test.counter", "rate", None),
    ] {
        let path =
            format!("/api/v1/metrics/query_range?name={name}&match=run_id={http_run}&step=60s");
        let answer = loop {
            let answer = support::get_json(&server, &viewer, &path);
            if !answer["series"][0]["points"]
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                break answer;
            }
            assert!(Instant::now() < deadline, "{name}: {answer}");
            std::thread::sleep(Duration::from_millis(200));
        };
        let series = &answer["series"][0];
        assert_eq!(series["agg"], agg, "{name}: {answer}");
        if let Some(value) = value {
            let points = series["points"].as_array().unwrap();
            let last = points.last().unwrap()[1].as_f64().unwrap();
            assert!(
                (last - value).abs() < 1e-9,
                "{name}: {last} for {value}: {answer}"
            );
        }
    }
    server.stop();

    let reader = TelemetryReader::new(dir.path());
    let tenant_a = TenantId::new("tenant-a").unwrap();
    let logs = reader.log_rows(&tenant_a).unwrap();
    let spans = reader.span_rows(&tenant_a).unwrap();
    let metrics = reader.metric_rows(&tenant_a).unwrap();
    for (protocol, run_id) in &runs {
        let service = format!("sdk-{protocol}");
        let parent = check_spans(&spans, &service, run_id);
        check_logs(&logs, &service, run_id, parent);
        check_metrics(&metrics, &service, run_id);
    }
    assert!(
        logs.iter().all(|l| !l.body.to_text().contains("rejected")),
        "nothing of the rejected run is stored"
    );

    let tenant_b = TenantId::new("tenant-b").unwrap();
    assert!(reader.log_rows(&tenant_b).unwrap().is_empty());
    assert!(reader.span_rows(&tenant_b).unwrap().is_empty());
    assert!(reader.metric_rows(&tenant_b).unwrap().is_empty());
}
