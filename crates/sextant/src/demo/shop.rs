//! The demo's simulated shop: nine services that send OTLP metrics, logs and traces to Sextant
//! over its real OTLP/HTTP path, with a compressed daily cycle, noise and retries, and faults on
//! a schedule (see [`FAULTS`]).
//!
//! Time runs in ticks of [`TICK_SECONDS`]. On start the shop first sends [`HISTORY_SECONDS`]
//! of history (so the detectors have learnt each series' normal behaviour), then one tick every
//! [`TICK_SECONDS`] of wall time, stamped with the wall clock. Faults are placed in seconds
//! since the live part began.

use std::f64::consts::TAU;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use serde_json::json;

pub const TICK_SECONDS: i64 = 5;
/// History sent before the live part.
pub const HISTORY_SECONDS: i64 = 2 * 3600;
/// Request log lines per service per tick.
const LOG_LINES_PER_TICK: usize = 3;
/// The compressed day: traffic rises and falls with this period.
const DAY_SECONDS: f64 = 1800.0;
const NANOS: i64 = 1_000_000_000;
const MIB: f64 = 1024.0 * 1024.0;

/// One service's normal behaviour and whom it calls.
struct Service {
    name: &'static str,
    requests_per_second: f64,
    p95_ms: f64,
    error_ratio: f64,
    memory_mib: f64,
    calls: &'static [&'static str],
    /// What its request logs say, `{}` replaced by an id.
    log_line: &'static str,
}

const SERVICES: [Service; 9] = [
    Service {
        name: "frontend",
        requests_per_second: 120.0,
        p95_ms: 80.0,
        error_ratio: 0.002,
        memory_mib: 180.0,
        calls: &["catalogue", "cart", "checkout"],
        log_line: "GET /product/{} 200",
    },
    Service {
        name: "catalogue",
        requests_per_second: 90.0,
        p95_ms: 35.0,
        error_ratio: 0.001,
        memory_mib: 220.0,
        calls: &["postgres"],
        log_line: "listed 24 products for category {}",
    },
    Service {
        name: "postgres",
        requests_per_second: 150.0,
        p95_ms: 4.0,
        error_ratio: 0.0005,
        memory_mib: 900.0,
        calls: &[],
        log_line: "checkpoint complete: wrote {} buffers",
    },
    Service {
        name: "cart",
        requests_per_second: 60.0,
        p95_ms: 12.0,
        error_ratio: 0.001,
        memory_mib: 300.0,
        calls: &["redis"],
        log_line: "cart {} updated",
    },
    Service {
        name: "redis",
        requests_per_second: 200.0,
        p95_ms: 1.0,
        error_ratio: 0.0002,
        memory_mib: 120.0,
        calls: &[],
        log_line: "DB saved on disk after {} changes",
    },
    Service {
        name: "checkout",
        requests_per_second: 20.0,
        p95_ms: 140.0,
        error_ratio: 0.003,
        memory_mib: 260.0,
        calls: &["payment", "shipping"],
        log_line: "order {} placed",
    },
    Service {
        name: "payment",
        requests_per_second: 20.0,
        p95_ms: 90.0,
        error_ratio: 0.002,
        memory_mib: 240.0,
        calls: &[],
        log_line: "charge authorised for order {}",
    },
    Service {
        name: "shipping",
        requests_per_second: 18.0,
        p95_ms: 60.0,
        error_ratio: 0.002,
        memory_mib: 200.0,
        calls: &["rabbitmq"],
        log_line: "shipment {} queued",
    },
    Service {
        name: "rabbitmq",
        requests_per_second: 40.0,
        p95_ms: 3.0,
        error_ratio: 0.0001,
        memory_mib: 400.0,
        calls: &[],
        log_line: "accepted message {} on queue shipping",
    },
];

/// One injected fault: what, where the true root cause is, and when (seconds of the live part).
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub name: &'static str,
    pub service: &'static str,
    pub start: i64,
    pub end: i64,
}

/// The schedule. The memory leak began before the live part (it is in the history), so the
/// capacity forecast sees its trend at once; the disk alert is covered by a silence the demo
/// creates first, and opens no incident.
pub const FAULTS: [Fault; 4] = [
    Fault {
        name: "memory leak (capacity)",
        service: "cart",
        start: LEAK_START,
        end: i64::MAX,
    },
    Fault {
        name: "noisy disk alert (silenced)",
        service: "shipping",
        start: 10,
        end: 170,
    },
    Fault {
        name: "database latency",
        service: "postgres",
        start: 20,
        end: 65,
    },
    Fault {
        name: "bad deploy of payment",
        service: "payment",
        start: 100,
        end: 150,
    },
];

const LEAK_START: i64 = -20 * 60;
/// The leak's growth, MiB per minute.
const LEAK_MIB_PER_MINUTE: f64 = 40.0;
/// The limit of the demo's capacity rule for cart's memory.
pub const CART_MEMORY_LIMIT_BYTES: f64 = 2048.0 * MIB;
/// The demo's runbook (its action, defined in the demo's configuration, only prints what a
/// real one would do).
const ROLLBACK_RUNBOOK: &str = r#"name = "rollback-payment"
description = "roll payment back to its last good version when it is the root cause"

[match]
root_cause = "payment"

[[step]]
kind = "wait_for_approval"
expires_seconds = 1800

[[step]]
kind = "action"
action = "rollback"
params = { service = "{{incident.root_cause}}", incident = "{{incident.id}}" }
"#;
const DEPLOY_ERROR: &str =
    "charge failed: gateway rejected merchant config v2.4.1 for order {} (E_MERCHANT_CONFIG)";

fn fault(name_start: &str, t: i64) -> bool {
    FAULTS
        .iter()
        .any(|f| f.name.starts_with(name_start) && t >= f.start && t < f.end)
}

/// A noise in [-1, 1), the same for the same inputs.
fn noise(a: u64, b: u64, c: i64) -> f64 {
    let mut x = a
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
        .wrapping_add(c as u64)
        ^ 0x5e47;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// What one service shows at live second `t` (negative in the history).
#[derive(Clone, Copy, Debug)]
struct Reading {
    requests_per_second: f64,
    p95_ms: f64,
    error_ratio: f64,
    memory_bytes: f64,
    cpu: f64,
}

fn reading(index: usize, t: i64) -> Reading {
    let s = &SERVICES[index];
    let i = index as u64;
    let cycle = 1.0 + 0.25 * (TAU * t as f64 / DAY_SECONDS).sin();
    let mut r = Reading {
        requests_per_second: s.requests_per_second * cycle * (1.0 + 0.03 * noise(i, 1, t)),
        p95_ms: s.p95_ms * (1.0 + 0.1 * (cycle - 1.0)) * (1.0 + 0.04 * noise(i, 2, t)),
        error_ratio: s.error_ratio * (1.0 + 0.2 * noise(i, 3, t)),
        memory_bytes: s.memory_mib * MIB * (1.0 + 0.01 * noise(i, 4, t)),
        cpu: 0.2 * cycle * (1.0 + 0.05 * noise(i, 5, t)),
    };
    match s.name {
        "postgres" if fault("database", t) => {
            r.p95_ms *= 30.0;
            r.cpu *= 2.5;
        }
        // The callers slow down a tick after the database does.
        "catalogue" if fault("database", t - TICK_SECONDS) => r.p95_ms *= 4.0,
        "payment" if fault("bad deploy", t) => r.error_ratio = 0.25,
        "checkout" if fault("bad deploy", t - TICK_SECONDS) => {
            r.error_ratio = 0.12;
            // Retries: checkout calls payment again.
            r.p95_ms *= 1.6;
        }
        "cart" if t >= LEAK_START => {
            r.memory_bytes += (t - LEAK_START) as f64 / 60.0 * LEAK_MIB_PER_MINUTE * MIB;
        }
        _ => {}
    }
    r
}

pub(crate) fn text(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(value.to_owned())),
    })
}

pub(crate) fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: text(value),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            attribute("service.name", service),
            attribute("deployment.environment", "demo"),
        ],
        ..Default::default()
    })
}

/// Gauges of every service for the ticks `ticks` (live seconds), with their wall times.
fn metrics_request(ticks: &[(i64, i64)]) -> ExportMetricsServiceRequest {
    let gauge = |name: &str, unit: &str, points: Vec<NumberDataPoint>| Metric {
        name: name.to_owned(),
        unit: unit.to_owned(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    };
    let point = |time_ns: i64, value: f64| NumberDataPoint {
        time_unix_nano: time_ns as u64,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: SERVICES
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let readings: Vec<(i64, Reading)> = ticks
                    .iter()
                    .map(|&(t, time_ns)| (time_ns, reading(index, t)))
                    .collect();
                let series = |f: fn(&Reading) -> f64| {
                    readings
                        .iter()
                        .map(|(time, r)| point(*time, f(r)))
                        .collect()
                };
                ResourceMetrics {
                    resource: resource(s.name),
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![
                            gauge(
                                "http.server.request_rate",
                                "1/s",
                                series(|r| r.requests_per_second),
                            ),
                            gauge("http.server.duration_p95", "ms", series(|r| r.p95_ms)),
                            gauge("http.server.error_ratio", "1", series(|r| r.error_ratio)),
                            gauge("process.memory.usage", "By", series(|r| r.memory_bytes)),
                            gauge("process.cpu.utilization", "1", series(|r| r.cpu)),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            })
            .collect(),
    }
}

/// Log lines of tick `t`: `per_service` request lines each, and the faults' own lines.
fn logs_request(t: i64, time_ns: i64, per_service: usize) -> ExportLogsServiceRequest {
    let record = |severity: i32, severity_text: &str, body: String, offset: usize| LogRecord {
        time_unix_nano: (time_ns + offset as i64 * 1_000_000) as u64,
        observed_time_unix_nano: time_ns as u64,
        severity_number: severity,
        severity_text: severity_text.to_owned(),
        body: text(&body),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: SERVICES
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let mut records: Vec<LogRecord> = (0..per_service)
                    .map(|k| {
                        let id = (noise(index as u64, 7 + k as u64, t).abs() * 90_000.0) as u64
                            + 10_000;
                        record(9, "INFO", s.log_line.replace("{}", &id.to_string()), k)
                    })
                    .collect();
                if s.name == "payment" {
                    if fault("bad deploy", t) && !fault("bad deploy", t - TICK_SECONDS) {
                        records.push(record(9, "INFO", "deployed payment v2.4.1".into(), 0));
                    }
                    if fault("bad deploy", t) {
                        for k in 0..8 {
                            let order = 40_000 + (t as u64 * 8 + k) % 50_000;
                            records.push(record(
                                17,
                                "ERROR",
                                DEPLOY_ERROR.replace("{}", &order.to_string()),
                                10 + k as usize,
                            ));
                        }
                    }
                }
                if s.name == "postgres" && fault("database", t) {
                    records.push(record(
                        13,
                        "WARN",
                        format!(
                            "duration: {} ms  statement: SELECT * FROM products WHERE category = $1",
                            100 + (t % 7) * 13
                        ),
                        20,
                    ));
                }
                ResourceLogs {
                    resource: resource(s.name),
                    scope_logs: vec![ScopeLogs {
                        log_records: records,
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            })
            .collect(),
    }
}

/// A few requests through the shop at tick `t`, as traces: a server span in each service
/// reached, child of its caller's span.
fn traces_request(t: i64, time_ns: i64, traces: usize) -> ExportTraceServiceRequest {
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    for k in 0..traces {
        let trace_id: Vec<u8> = (0..16)
            .map(|b| (noise(k as u64, b, t).to_bits() >> 7) as u8)
            .collect();
        let mut next_span = 0u64;
        let start = time_ns + k as i64 * 50_000_000;
        visit(
            0,
            None,
            &trace_id,
            &mut next_span,
            start,
            t,
            &mut by_service,
        );
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .enumerate()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|(index, spans)| ResourceSpans {
                resource: resource(SERVICES[index].name),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// The span of service `index` and, under it, the spans of those it calls; returns its end.
fn visit(
    index: usize,
    parent: Option<&[u8]>,
    trace_id: &[u8],
    next_span: &mut u64,
    start: i64,
    t: i64,
    by_service: &mut [Vec<Span>],
) -> i64 {
    *next_span += 1;
    let span_id = (*next_span ^ (t as u64).rotate_left(20))
        .to_be_bytes()
        .to_vec();
    let s = &SERVICES[index];
    let r = reading(index, t);
    // A span's own work: a leaf's latency as it reads (its own faults included); a service
    // that calls others works as usual and only waits longer when they are slow, so its span
    // covers its children's and its own time stays (its latency metric shows the wait).
    let own_ms = if s.calls.is_empty() {
        r.p95_ms
    } else {
        s.p95_ms * (1.0 + 0.04 * noise(index as u64, 6, t))
    };
    let mut end = start + (own_ms * 0.6 * 1e6) as i64;
    let mut child_start = start + 200_000;
    for callee in s.calls {
        let callee = SERVICES
            .iter()
            .position(|c| c.name == *callee)
            .expect("a known service");
        let child_end = visit(
            callee,
            Some(&span_id),
            trace_id,
            next_span,
            child_start,
            t,
            by_service,
        );
        child_start = child_end + 100_000;
        end = end.max(child_end + 200_000);
    }
    let failed = noise(index as u64, *next_span, t).abs() < r.error_ratio;
    by_service[index].push(Span {
        trace_id: trace_id.to_vec(),
        span_id,
        parent_span_id: parent.map(<[u8]>::to_vec).unwrap_or_default(),
        name: format!("{} request", s.name),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start as u64,
        end_time_unix_nano: end as u64,
        status: Some(Status {
            code: if failed { 2 } else { 1 },
            message: String::new(),
        }),
        ..Default::default()
    });
    end
}

/// Where the shop sends, and with which tokens.
pub struct Target {
    base: String,
    ingest_token: String,
    admin_token: String,
    /// One client for the whole run: its connections are kept alive between ticks.
    agent: ureq::Agent,
}

impl Target {
    pub fn new(base: String, ingest_token: String, admin_token: String) -> Target {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        Target {
            base,
            ingest_token,
            admin_token,
            agent,
        }
    }

    fn post(&self, path: &str, content_type: &str, token: &str, body: Vec<u8>) {
        self.send("POST", path, content_type, token, body);
    }

    fn send(&self, method: &str, path: &str, content_type: &str, token: &str, body: Vec<u8>) {
        // Retries with back-off, as an OpenTelemetry exporter does.
        for attempt in 0..5u32 {
            let request = ureq::http::Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.base))
                .header("Content-Type", content_type)
                .header("Authorization", format!("Bearer {token}"))
                .body(body.clone());
            let sent = match request {
                Ok(request) => self.agent.run(request),
                Err(e) => {
                    tracing::warn!(path, error = %e, "demo request not built");
                    return;
                }
            };
            match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) if r.status().as_u16() < 500 && r.status().as_u16() != 429 => {
                    tracing::warn!(path, status = r.status().as_u16(), "demo request refused");
                    return;
                }
                _ => std::thread::sleep(Duration::from_millis(200 << attempt)),
            }
        }
        tracing::warn!(path, "demo request failed after 5 attempts");
    }

    fn otlp(&self, path: &str, body: Vec<u8>) {
        self.post(path, "application/x-protobuf", &self.ingest_token, body);
    }

    fn admin_json(&self, path: &str, body: serde_json::Value) {
        self.post(
            path,
            "application/json",
            &self.admin_token,
            body.to_string().into_bytes(),
        );
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Runs the shop until the process ends: the silence, the history, then live ticks.
pub fn run(target: &Target) {
    let started_ns = now_ns();
    target.admin_json(
        "/api/v1/silences",
        json!({
            "matchers": ["alertname=\"DiskSpaceLow\""],
            "ends_at": (started_ns / NANOS) + 86_400,
            "comment": "demo: shipping's log volume is cleaned up nightly; the alert is known noise",
        }),
    );
    // The runbook the bad deploy proposes: roll payment back, once someone approves.
    target.send(
        "PUT",
        "/api/v1/runbooks/rollback-payment",
        "application/toml",
        &target.admin_token,
        ROLLBACK_RUNBOOK.as_bytes().to_vec(),
    );
    // The history, an hour of ticks per metrics request.
    let history: Vec<(i64, i64)> = (1..=HISTORY_SECONDS / TICK_SECONDS)
        .rev()
        .map(|k| {
            let t = -k * TICK_SECONDS;
            (t, started_ns + t * NANOS)
        })
        .collect();
    for chunk in history.chunks(720) {
        target.otlp("/v1/metrics", metrics_request(chunk).encode_to_vec());
    }
    // Logs at the live rate, so the pattern rates have learnt it too.
    for chunk in history.chunks(60) {
        let mut request = ExportLogsServiceRequest::default();
        for &(t, time_ns) in chunk {
            request
                .resource_logs
                .extend(logs_request(t, time_ns, LOG_LINES_PER_TICK).resource_logs);
        }
        target.otlp("/v1/logs", request.encode_to_vec());
    }
    for &(t, time_ns) in history.iter().filter(|(t, _)| *t >= -600) {
        target.otlp("/v1/traces", traces_request(t, time_ns, 2).encode_to_vec());
    }
    tracing::info!("demo: history sent; the shop is live");
    let clock = Instant::now();
    let live_start_ns = started_ns;
    for tick in 0.. {
        let t = tick * TICK_SECONDS;
        let due = Duration::from_secs(t as u64);
        if let Some(wait) = due.checked_sub(clock.elapsed()) {
            std::thread::sleep(wait);
        }
        let time_ns = live_start_ns + t * NANOS;
        target.otlp(
            "/v1/metrics",
            metrics_request(&[(t, time_ns)]).encode_to_vec(),
        );
        target.otlp(
            "/v1/logs",
            logs_request(t, time_ns, LOG_LINES_PER_TICK).encode_to_vec(),
        );
        target.otlp("/v1/traces", traces_request(t, time_ns, 3).encode_to_vec());
        if fault("noisy disk", t) && t % 10 == 0 {
            target.disk_alert();
        }
    }
}

impl Target {
    /// The noisy alert: shipping's disk, as a monitor would post it.
    fn disk_alert(&self) {
        self.post(
            "/api/v1/events",
            "application/json",
            &self.ingest_token,
            json!({
                "source": "demo-monitor",
                "service": "shipping",
                "severity": "warning",
                "title": "DiskSpaceLow",
                "summary": "/var on shipping-1 is 91% full",
                "labels": {"mount": "/var", "host": "shipping-1"},
                "fingerprint": "demo-disk-shipping-var",
                "status": "firing",
            })
            .to_string()
            .into_bytes(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_change_the_readings_of_their_services_only_in_their_windows() {
        let index = |name: &str| SERVICES.iter().position(|s| s.name == name).unwrap();
        let (db, payment, cart) = (index("postgres"), index("payment"), index("cart"));
        assert!(reading(db, 30).p95_ms > 20.0 * reading(db, 10).p95_ms);
        assert!(reading(db, 70).p95_ms < 6.0);
        assert!(reading(payment, 120).error_ratio > 0.2);
        assert!(reading(payment, 90).error_ratio < 0.01);
        let early = reading(cart, -3600).memory_bytes;
        let now = reading(cart, 0).memory_bytes;
        assert!(now > early + 700.0 * MIB, "{early} {now}");
        // At the leak's pace the limit is less than an hour away.
        assert!(now + 60.0 * LEAK_MIB_PER_MINUTE * MIB > CART_MEMORY_LIMIT_BYTES);
        let logs = logs_request(120, 0, 1);
        let payment_logs = &logs.resource_logs[payment].scope_logs[0].log_records;
        assert_eq!(
            payment_logs
                .iter()
                .filter(|r| r.severity_number == 17)
                .count(),
            8
        );
    }

    #[test]
    fn traces_reach_every_service_with_parents_across_services() {
        let request = traces_request(0, 1_000, 1);
        assert_eq!(request.resource_spans.len(), SERVICES.len());
        let spans: Vec<&Span> = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans[0].spans)
            .collect();
        let roots = spans.iter().filter(|s| s.parent_span_id.is_empty()).count();
        assert_eq!(roots, 1);
        for s in &spans {
            assert!(s.end_time_unix_nano > s.start_time_unix_nano);
        }
    }
}
