//! Tenant isolation through every route of the real binary: tenant `alpha` gets data of every
//! kind (logs over OTLP, NDJSON and Loki, metrics over OTLP and remote_write, a trace, an
//! anomaly, alerts and their incidents, a silence, an inhibition rule, a runbook with a run
//! waiting for approval, a secret), then tenant `beta`'s admin token goes through every route
//! in `ROUTES`. Beta reads nothing of alpha's, a 404 for an alpha id is the same as for an id
//! that never existed, writes and deletes aimed at alpha's objects change nothing of alpha's,
//! and ingest that names alpha in `X-Sextant-Tenant` is refused everywhere. `ROUTES` is checked
//! against the router's source, so a new route without an isolation check fails here.
//!
//! The OTLP/gRPC routes (merged from `otlp_grpc::router`, not `.route("...")` strings) have
//! their own test, through grpcio from the Python SDK's environment. Not covered: the syslog
//! listeners (their tenant is set by configuration, not by a token).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::{Sextant, agent, create_token, markers_dir, touch_action_config};

/// Every route of `sextant_server::router` as (method, path pattern), with what beta's check of
/// it is.
const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/", "the UI page holds no tenant data"),
    ("GET", "/assets/{file}", "a UI asset holds no tenant data"),
    ("GET", "/healthz", "no tenant data"),
    ("GET", "/readyz", "no tenant data"),
    ("GET", "/metrics", "beta's series only, not alpha's name"),
    ("POST", "/v1/logs", "403 with alpha's tenant header"),
    ("POST", "/v1/metrics", "403 with alpha's tenant header"),
    ("POST", "/v1/traces", "403 with alpha's tenant header"),
    (
        "POST",
        "/api/v1/sql",
        "every table empty, EXPLAIN names no alpha file",
    ),
    ("DELETE", "/api/v1/tenant/data", "erases beta only"),
    ("GET", "/api/v1/logs/search", "empty"),
    (
        "POST",
        "/api/v1/logs/ndjson",
        "403 with alpha's tenant header",
    ),
    (
        "POST",
        "/loki/api/v1/push",
        "403 with alpha's tenant header",
    ),
    (
        "POST",
        "/api/v1/prom/write",
        "403 with alpha's tenant header",
    ),
    ("GET", "/api/v1/metrics/query_range", "no series"),
    (
        "GET",
        "/api/v1/traces/{trace_id}",
        "alpha's trace: the unknown 404",
    ),
    ("GET", "/api/v1/patterns", "empty"),
    (
        "GET",
        "/api/v1/patterns/{id}/series",
        "alpha's template: the unknown 404",
    ),
    ("GET", "/api/v1/anomalies", "empty"),
    (
        "GET",
        "/api/v1/anomalies/{id}",
        "alpha's anomaly: the unknown 404",
    ),
    (
        "POST",
        "/api/v1/anomalies/{id}/feedback",
        "alpha's anomaly: the unknown 404",
    ),
    ("GET", "/api/v1/forecast", "no series"),
    ("GET", "/api/v1/topology", "no nodes, no edges"),
    ("GET", "/api/v1/audit", "none of alpha's records"),
    (
        "GET",
        "/api/v1/runbooks",
        "none of alpha's, not paused by alpha",
    ),
    (
        "GET",
        "/api/v1/actions",
        "none of the actions only alpha may use",
    ),
    (
        "PUT",
        "/api/v1/runbooks/{name}",
        "alpha's name: beta's own runbook",
    ),
    (
        "DELETE",
        "/api/v1/runbooks/{name}",
        "alpha's runbook: the unknown 404",
    ),
    (
        "POST",
        "/api/v1/runbooks/{name}",
        "pausing pauses beta only",
    ),
    ("GET", "/api/v1/secrets", "none of alpha's"),
    ("GET", "/api/v1/tokens", "beta's own tokens only"),
    ("POST", "/api/v1/tokens", "403 with alpha's tenant header"),
    (
        "DELETE",
        "/api/v1/tokens/{id}",
        "alpha's token: the unknown 404",
    ),
    (
        "PUT",
        "/api/v1/secrets/{name}",
        "alpha's name: beta's own secret",
    ),
    (
        "DELETE",
        "/api/v1/secrets/{name}",
        "alpha's secret: the unknown 404",
    ),
    ("GET", "/api/v1/runs", "none of alpha's"),
    ("GET", "/api/v1/runs/{id}", "alpha's run: the unknown 404"),
    (
        "GET",
        "/api/v1/runs/{id}/link",
        "alpha's run: the unknown 403",
    ),
    (
        "POST",
        "/api/v1/runs/{id}/link",
        "alpha's run: the unknown 403",
    ),
    (
        "POST",
        "/api/v1/runs/{id}/{action}",
        "alpha's run: the unknown 404",
    ),
    (
        "POST",
        "/api/v1/alertmanager",
        "403 with alpha's tenant header",
    ),
    ("POST", "/api/v1/events", "403 with alpha's tenant header"),
    ("GET", "/api/v1/incidents", "empty, zero signals"),
    (
        "GET",
        "/api/v1/incidents/{id}",
        "alpha's incident: the unknown 404",
    ),
    (
        "GET",
        "/api/v1/incidents/{id}/rca",
        "alpha's incident: the unknown 404",
    ),
    (
        "POST",
        "/api/v1/incidents/{id}/{action}",
        "alpha's incident: the unknown 404",
    ),
    ("GET", "/api/v1/silences", "none of alpha's"),
    ("POST", "/api/v1/silences", "beta's own silence"),
    (
        "DELETE",
        "/api/v1/silences/{id}",
        "alpha's silence: the unknown 404",
    ),
    ("GET", "/api/v1/inhibit_rules", "none of alpha's"),
    ("POST", "/api/v1/inhibit_rules", "beta's own rule"),
    (
        "DELETE",
        "/api/v1/inhibit_rules/{id}",
        "alpha's rule: the unknown 404",
    ),
];

/// In everything alpha sends (bodies, services, names, titles), so a reply to beta that holds
/// any of it is caught by a substring search.
const MARK: &str = "alphamarker";
const TRACE: &str = "a1fa2b3c4d5e6f708192a3b4c5d6e7f8";
const SECRET_VALUE: &str = "tok-alphamarker-5ec7e7";
/// Telemetry time (Unix seconds, a multiple of 60); metric points follow one a minute.
const T0: i64 = 1_700_000_040;
/// A range (query string) around all of alpha's telemetry, under 11,000 one-minute steps.
const RANGE: &str = "from=1699990000&to=1700100000";
/// A range around everything, telemetry and events made now.
const EVERYTHING: &str = "from=1600000000&to=4102444800";

/// An answer: status, body text, and the body as JSON (a string when it is not JSON).
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    text: String,
    json: Value,
}

/// The routes a [`Client`] has called, as (method, pattern).
type Exercised = RefCell<BTreeSet<(String, String)>>;

/// A tenant's token and the routes it called.
struct Client<'a> {
    server: &'a Sextant,
    token: String,
    exercised: &'a Exercised,
}

/// The `ROUTES` pattern a path is served by: the one with the fewest placeholders, as axum
/// prefers static segments.
fn pattern_of(method: &str, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    ROUTES
        .iter()
        .filter(|(m, pattern, _)| {
            let parts: Vec<&str> = pattern.split('/').collect();
            *m == method
                && parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p == s || (p.starts_with('{') && !s.is_empty()))
        })
        .min_by_key(|(_, pattern, _)| pattern.matches('{').count())
        .map(|(_, pattern, _)| *pattern)
        .unwrap_or_else(|| panic!("{method} {path} is no route in ROUTES"))
}

impl Client<'_> {
    fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.exercised
            .borrow_mut()
            .insert((method.to_owned(), pattern_of(method, path).to_owned()));
        let url = self.server.url(path);
        let auth = format!("Bearer {}", self.token);
        let response = match method {
            "GET" => {
                let mut request = agent().get(&url).header("Authorization", &auth);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            "DELETE" => {
                let mut request = agent().delete(&url).header("Authorization", &auth);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            "PUT" => {
                let mut request = agent().put(&url).header("Authorization", &auth);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.send(body)
            }
            "POST" => {
                let mut request = agent().post(&url).header("Authorization", &auth);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.send(body)
            }
            other => panic!("no method {other}"),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Reply { status, text, json }
    }

    fn get(&self, path: &str) -> Reply {
        self.call("GET", path, &[], b"")
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        self.call("POST", path, &[JSON], body.to_string().as_bytes())
    }

    /// GET that must answer 200.
    fn ok(&self, path: &str) -> Value {
        let reply = self.get(path);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
        reply.json
    }

    fn sql(&self, query: &str) -> Value {
        let reply = self.post("/api/v1/sql", &json!({ "sql": query }));
        assert_eq!(reply.status, 200, "{query}: {}", reply.text);
        reply.json
    }

    fn count(&self, table: &str) -> u64 {
        self.sql(&format!("SELECT count(*) AS n FROM {table}"))["rows"][0]["n"]
            .as_u64()
            .unwrap()
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Alpha's view once its own background work (correlation, runbooks) has settled: the same
/// two seconds apart.
fn settled_view(alpha: &Client) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = alpha_view(alpha);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = alpha_view(alpha);
        if now == last {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "alpha's view keeps changing: {now}"
        );
        last = now;
    }
}

/// `text` with every value the request itself carried (path segments and query values) put
/// back as `{echo}`: what is left is what the server chose to say.
fn scrub(text: &str, path: &str) -> String {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut echoes: Vec<String> = path
        .split('/')
        .chain(
            query
                .split('&')
                .filter_map(|kv| kv.split_once('=').map(|(_, v)| v)),
        )
        .filter(|v| v.len() > 3)
        .map(decode)
        .collect();
    echoes.sort_by_key(|e| std::cmp::Reverse(e.len()));
    let mut text = text.to_owned();
    for echo in echoes {
        text = text.replace(&echo, "{echo}");
    }
    text
}

/// Percent-decoding of a query value (`+` is a space).
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = value
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, byte) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encoding of a query value.
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Checks that a reply to beta holds nothing of alpha's beyond what beta's request said.
fn assert_clean(reply: &Reply, path: &str, alpha_ids: &[String]) {
    let said = scrub(&reply.text, path);
    assert!(
        !said.contains(MARK) && !said.contains(TRACE) && !said.contains(SECRET_VALUE),
        "{path} shows alpha's data to beta: {said}"
    );
    for id in alpha_ids {
        assert!(
            !said.contains(id.as_str()),
            "{path} shows alpha's id {id}: {said}"
        );
    }
}

/// Beta's answer about alpha's object is the answer about one that never existed: same
/// status, same body once the id asked about is set aside.
fn assert_same_refusal(what: &str, status: u16, alpha: (&Reply, &str), never: (&Reply, &str)) {
    let (a, alpha_id) = alpha;
    let (n, never_id) = never;
    assert_eq!(
        a.status, status,
        "{what} of alpha's `{alpha_id}`: {}",
        a.text
    );
    assert_eq!(n.status, status, "{what} of `{never_id}`: {}", n.text);
    assert_eq!(
        a.text.replace(alpha_id, "{id}"),
        n.text.replace(never_id, "{id}"),
        "{what}: alpha's object and one that never existed are told apart"
    );
    assert!(!a.text.trim().is_empty(), "{what}: an empty refusal");
}

/// An id of the same length and alphabet that no one has: digits and hex letters as zeros.
fn never(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { '0' } else { c })
        .collect()
}

fn resource(service: &str) -> String {
    format!(r#"{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}}"#)
}

fn otlp_logs(service: &str, bodies: &[&str]) -> String {
    let records: Vec<String> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            format!(
                r#"{{"timeUnixNano":"{}","severityText":"ERROR","severityNumber":17,
                  "body":{{"stringValue":"{body}"}},"traceId":"{TRACE}","spanId":"00000000000000a1"}}"#,
                (T0 + i as i64) * 1_000_000_000
            )
        })
        .collect();
    format!(
        r#"{{"resourceLogs":[{{"resource":{},"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        resource(service),
        records.join(",")
    )
}

fn otlp_trace(prefix: &str, trace: &str) -> String {
    let span = |id: &str, parent: &str, name: &str, kind: u8, start_ms: i64, end_ms: i64| {
        format!(
            r#"{{"traceId":"{trace}","spanId":"{id}","parentSpanId":"{parent}","name":"{name}",
              "kind":{kind},"startTimeUnixNano":"{}","endTimeUnixNano":"{}"}}"#,
            T0 * 1_000_000_000 + start_ms * 1_000_000,
            T0 * 1_000_000_000 + end_ms * 1_000_000,
        )
    };
    format!(
        r#"{{"resourceSpans":[
          {{"resource":{},"scopeSpans":[{{"spans":[{},{}]}}]}},
          {{"resource":{},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        resource(&format!("{prefix}-frontend")),
        span(
            "00000000000000a1",
            "",
            &format!("{prefix} GET /checkout"),
            2,
            0,
            900
        ),
        span(
            "00000000000000a2",
            "00000000000000a1",
            "call cart",
            3,
            100,
            500
        ),
        resource(&format!("{prefix}-cart")),
        span(
            "00000000000000a3",
            "00000000000000a2",
            "serve cart",
            2,
            120,
            480
        ),
    )
}

/// A gauge of `service`, one point a minute from T0 for `minutes`, about 100; `spike` replaces
/// one minute's value.
fn otlp_gauge(
    service: &str,
    name: &str,
    minutes: std::ops::Range<i64>,
    spike: Option<(i64, f64)>,
) -> String {
    let points: Vec<String> = minutes
        .map(|m| {
            let value = match spike {
                Some((at, v)) if at == m => v,
                // A small deterministic wobble, so the detector sees noise.
                _ => 100.0 + ((m * 7919) % 11) as f64 - 5.0,
            };
            format!(
                r#"{{"timeUnixNano":"{}","asDouble":{value}}}"#,
                (T0 + 60 * m) * 1_000_000_000
            )
        })
        .collect();
    format!(
        r#"{{"resourceMetrics":[{{"resource":{},"scopeMetrics":[{{"metrics":[{{
           "name":"{name}","gauge":{{"dataPoints":[{}]}}}}]}}]}}]}}"#,
        resource(service),
        points.join(",")
    )
}

fn ndjson(service: &str, message: &str) -> String {
    format!(
        "{}\n",
        json!({"ts": T0 + 10, "level": "warn", "msg": message, "service": service})
    )
}

fn loki(service: &str, line: &str) -> String {
    json!({"streams": [{"stream": {"service_name": service},
        "values": [[((T0 + 20) * 1_000_000_000).to_string(), line]]}]})
    .to_string()
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A snappy-compressed Prometheus `WriteRequest` with one series of one sample (written field
/// by field from `remote.proto`).
fn remote_write(name: &str, job: &str, value: f64, millis: i64) -> Vec<u8> {
    let mut series = Vec::new();
    for (label, text) in [("__name__", name), ("job", job)] {
        let mut pair = Vec::new();
        field_bytes(&mut pair, 1, label.as_bytes());
        field_bytes(&mut pair, 2, text.as_bytes());
        field_bytes(&mut series, 1, &pair);
    }
    let mut sample = vec![0x09];
    sample.extend_from_slice(&value.to_le_bytes());
    varint(&mut sample, 2 << 3);
    varint(&mut sample, millis as u64);
    field_bytes(&mut series, 2, &sample);
    let mut request = Vec::new();
    field_bytes(&mut request, 1, &series);
    snap::raw::Encoder::new().compress_vec(&request).unwrap()
}

const REMOTE_WRITE: [(&str, &str); 3] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

fn webhook(service: &str, alertname: &str, fingerprint: &str) -> Value {
    json!({
        "version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "sextant",
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": alertname, "service": service, "severity": "critical"},
            "annotations": {"summary": format!("{alertname} on {service}")},
            "startsAt": "2026-12-01T10:00:00.000Z", "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": fingerprint,
        }],
    })
}

/// One ingest request: path, headers, body.
type IngestRequest = (&'static str, Vec<(&'static str, &'static str)>, Vec<u8>);

/// Every way telemetry and alerts come in, as (path, headers, body), carrying `prefix` in
/// their text.
fn ingest_requests(prefix: &str) -> Vec<IngestRequest> {
    vec![
        (
            "/v1/logs",
            vec![JSON],
            otlp_logs(&format!("{prefix}-otlp"), &[&format!("{prefix} smuggled log")])
                .into_bytes(),
        ),
        (
            "/v1/metrics",
            vec![JSON],
            otlp_gauge(&format!("{prefix}-otlp"), &format!("{prefix}.gauge"), 0..2, None)
                .into_bytes(),
        ),
        (
            "/v1/traces",
            vec![JSON],
            otlp_trace(prefix, "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0").into_bytes(),
        ),
        (
            "/api/v1/logs/ndjson",
            vec![],
            ndjson(&format!("{prefix}-ndjson"), &format!("{prefix} smuggled line")).into_bytes(),
        ),
        (
            "/loki/api/v1/push",
            vec![JSON],
            loki(&format!("{prefix}-loki"), &format!("{prefix} smuggled loki")).into_bytes(),
        ),
        (
            "/api/v1/prom/write",
            REMOTE_WRITE.to_vec(),
            remote_write(&format!("{prefix}_jobs_total"), prefix, 1.0, T0 * 1000),
        ),
        (
            "/api/v1/alertmanager",
            vec![JSON],
            webhook(
                &format!("{prefix}-cart"),
                &format!("{prefix}_smuggled_alert"),
                "smuggled-f1",
            )
            .to_string()
            .into_bytes(),
        ),
        (
            "/api/v1/events",
            vec![JSON],
            json!({"title": format!("{prefix} smuggled event"), "service": format!("{prefix}-events")})
                .to_string()
                .into_bytes(),
        ),
    ]
}

/// Alpha's objects, by id or name.
#[derive(Debug)]
struct AlphaIds {
    incident: u64,
    anomaly: String,
    run: String,
    run_step: u64,
    template: u64,
    silence: String,
    inhibit: String,
    runbook: String,
    secret: String,
}

/// What alpha sees of its own objects, leaving out what moves by itself (times, the open
/// silences' `active`, ranking versions).
fn alpha_view(alpha: &Client) -> Value {
    let incidents: Vec<Value> = alpha.ok("/api/v1/incidents")["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            json!([
                i["id"],
                i["title"],
                i["status"],
                i["acknowledged_by"],
                i["members"],
                i["notifications"],
                i["merged_into"]
            ])
        })
        .collect();
    let runs: Vec<Value> = alpha.ok("/api/v1/runs")["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!([
                r["id"],
                r["status"],
                r["runbook"]["name"],
                r["steps"].as_array().map(Vec::len)
            ])
        })
        .collect();
    let silences: Vec<Value> = alpha.ok("/api/v1/silences")["silences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["id"], s["matchers"], s["ends_at"], s["comment"]]))
        .collect();
    let anomalies: Vec<Value> =
        alpha.ok(&format!("/api/v1/anomalies?kind=all&{EVERYTHING}"))["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| json!([a["id"], a["kind"], a["feedback"], a["count"]]))
            .collect();
    let audit: Vec<Value> = alpha.ok("/api/v1/audit?limit=1000")["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["kind"], r["subject"], r["actor"]]))
        .collect();
    let rows: Vec<Value> = [
        "logs",
        "spans",
        "metrics",
        "templates",
        "events",
        "incidents",
    ]
    .iter()
    .map(|t| json!([t, alpha.count(t)]))
    .collect();
    json!({
        "incidents": incidents,
        "signals": alpha.ok("/api/v1/incidents")["stats"]["signals"],
        "runs": runs,
        "runbooks": alpha.ok("/api/v1/runbooks"),
        "secrets": alpha.ok("/api/v1/secrets")["secrets"].as_array().unwrap().iter()
            .map(|s| s["name"].clone()).collect::<Vec<_>>(),
        "silences": silences,
        "inhibit_rules": alpha.ok("/api/v1/inhibit_rules"),
        "anomalies": anomalies,
        "audit": audit,
        "rows": rows,
        "events": alpha.sql("SELECT id, kind, count, fingerprint FROM events ORDER BY id")["rows"],
        "logs": alpha.sql("SELECT service, body FROM logs ORDER BY time, body")["rows"],
        "trace": alpha.ok(&format!("/api/v1/traces/{TRACE}")),
        "patterns": alpha.ok(&format!("/api/v1/patterns?{RANGE}")),
        "topology": alpha.ok(&format!("/api/v1/topology?{RANGE}"))["edges"],
    })
}

/// Alpha sends data of every kind with its own tokens and waits until it sees all of it.
fn give_alpha_everything(admin: &Client, ingest: &Client, marker_file: &Path) -> AlphaIds {
    let runbook = format!("{MARK}-page");
    let toml = format!(
        "name = \"{runbook}\"\n[match]\nservices = [\"{MARK}-cart\"]\n\
         [[step]]\nkind = \"wait_for_approval\"\nexpires_seconds = 3600\n\
         [[step]]\nkind = \"action\"\naction = \"touch\"\nparams = {{ name = \"{}\" }}\n",
        marker_file.file_name().unwrap().to_str().unwrap()
    );
    let reply = admin.call(
        "PUT",
        &format!("/api/v1/runbooks/{runbook}"),
        &[],
        toml.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let secret = format!("{MARK}-key");
    let reply = admin.call(
        "PUT",
        &format!("/api/v1/secrets/{secret}"),
        &[JSON],
        json!({ "value": SECRET_VALUE }).to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = admin.post(
        "/api/v1/silences",
        &json!({"matchers": [format!("service=\"{MARK}-silenced\"")],
                "ends_at": now_s() + 30 * 86_400, "comment": format!("{MARK} quiet")}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let silence = reply.json["id"].as_str().unwrap().to_owned();
    let reply = admin.post(
        "/api/v1/inhibit_rules",
        &json!({"source": [format!("alertname=\"{MARK}_source\"")],
                "target": [format!("alertname=\"{MARK}_target\"")], "equal": ["host"],
                "comment": format!("{MARK} rule")}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let inhibit = reply.json["id"].as_str().unwrap().to_owned();

    // Telemetry over every receiver.
    let send = |path: &str, headers: &[(&str, &str)], body: &[u8], ok: u16| {
        let reply = ingest.call("POST", path, headers, body);
        assert_eq!(reply.status, ok, "{path}: {}", reply.text);
        assert!(
            !reply.text.contains("rejected\":1"),
            "{path}: {}",
            reply.text
        );
    };
    send(
        "/v1/logs",
        &[JSON],
        otlp_logs(
            &format!("{MARK}-checkout"),
            &[
                &format!("{MARK} payment timeout after 30s"),
                &format!("{MARK} payment timeout after 31s"),
            ],
        )
        .as_bytes(),
        200,
    );
    send(
        "/api/v1/logs/ndjson",
        &[],
        ndjson(&format!("{MARK}-ndjson"), &format!("{MARK} ndjson line")).as_bytes(),
        200,
    );
    send(
        "/loki/api/v1/push",
        &[JSON],
        loki(&format!("{MARK}-loki"), &format!("{MARK} loki line")).as_bytes(),
        204,
    );
    send(
        "/v1/traces",
        &[JSON],
        otlp_trace(MARK, TRACE).as_bytes(),
        200,
    );
    send(
        "/api/v1/prom/write",
        &REMOTE_WRITE,
        &remote_write(&format!("{MARK}_jobs_total"), MARK, 5.0, T0 * 1000),
        204,
    );
    let gauge = format!("{MARK}.queue.depth");
    let service = format!("{MARK}-queue");
    send(
        "/v1/metrics",
        &[JSON],
        otlp_gauge(&service, &gauge, 0..300, None).as_bytes(),
        200,
    );
    send(
        "/v1/metrics",
        &[JSON],
        otlp_gauge(&service, &gauge, 300..310, Some((300, 400.0))).as_bytes(),
        200,
    );
    send(
        "/api/v1/alertmanager",
        &[JSON],
        webhook(
            &format!("{MARK}-cart"),
            &format!("{MARK}_cart_down"),
            "alpha-f1",
        )
        .to_string()
        .as_bytes(),
        200,
    );
    send(
        "/api/v1/events",
        &[JSON],
        json!({"title": format!("{MARK} deploy failed"), "service": format!("{MARK}-deploy"),
               "severity": "warning", "fingerprint": "alpha-deploy"})
        .to_string()
        .as_bytes(),
        200,
    );

    // Alpha sees it all.
    let search = format!("/api/v1/logs/search?{EVERYTHING}&q={MARK}");
    eventually("alpha's logs are searchable", || {
        admin.ok(&search)["logs"].as_array().unwrap().len() == 4
    });
    let mut anomaly = String::new();
    eventually("alpha's anomaly", || {
        let found = admin.ok(&format!("/api/v1/anomalies?{RANGE}"));
        match found["anomalies"].as_array().unwrap().first() {
            Some(first) => {
                anomaly = first["id"].as_str().unwrap().to_owned();
                true
            }
            None => false,
        }
    });
    let mut incident = 0;
    eventually("alpha's alert incident", || {
        let list = admin.ok("/api/v1/incidents");
        match list["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["services"] == json!([format!("{MARK}-cart")]))
        {
            Some(found) => {
                incident = found["id"].as_u64().unwrap();
                true
            }
            None => false,
        }
    });
    // The alert, the event and the anomaly all reached the correlator.
    eventually("alpha's signals", || {
        admin.ok("/api/v1/incidents")["stats"]["signals"]
            .as_u64()
            .is_some_and(|n| n >= 3)
    });
    let mut run = (String::new(), 0);
    eventually("alpha's run waits for approval", || {
        let runs = admin.ok("/api/v1/runs");
        match runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "waiting_approval")
        {
            Some(found) => {
                run = (
                    found["id"].as_str().unwrap().to_owned(),
                    found["next_step"].as_u64().unwrap_or(0),
                );
                true
            }
            None => false,
        }
    });
    eventually("the run's audit records", || {
        admin.ok("/api/v1/audit?kind=runbook.approval_requested")["records"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    let patterns = admin.ok(&format!("/api/v1/patterns?{RANGE}"));
    let template = patterns["patterns"][0]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("alpha has no patterns: {patterns}"));
    let series = admin.ok(&format!(
        "/api/v1/patterns/{template}/series?{RANGE}&step=1h"
    ));
    assert!(!series["points"].as_array().unwrap().is_empty(), "{series}");
    let trace = admin.ok(&format!("/api/v1/traces/{TRACE}"));
    assert_eq!(trace["spans"].as_array().unwrap().len(), 1, "{trace}");
    let topology = admin.ok(&format!("/api/v1/topology?{RANGE}"));
    assert!(
        !topology["edges"].as_array().unwrap().is_empty(),
        "{topology}"
    );
    let range = admin.ok(&format!(
        "/api/v1/metrics/query_range?{RANGE}&name={}",
        enc(&gauge)
    ));
    assert_eq!(range["series"].as_array().unwrap().len(), 1, "{range}");
    let range = admin.ok(&format!(
        "/api/v1/metrics/query_range?{RANGE}&name={MARK}_jobs_total"
    ));
    assert_eq!(range["series"].as_array().unwrap().len(), 1, "{range}");
    let forecast = admin.ok(&format!(
        "/api/v1/forecast?from={}&to={}&name={}&horizon=10m",
        T0,
        T0 + 310 * 60,
        enc(&gauge)
    ));
    assert_eq!(
        forecast["series"].as_array().unwrap().len(),
        1,
        "{forecast}"
    );
    admin.ok(&format!("/api/v1/incidents/{incident}"));
    admin.ok(&format!("/api/v1/incidents/{incident}/rca"));
    admin.ok(&format!("/api/v1/anomalies/{anomaly}"));
    admin.ok(&format!("/api/v1/runs/{}", run.0));
    assert_eq!(admin.ok("/api/v1/secrets")["secrets"][0]["name"], secret);
    assert_eq!(admin.ok("/api/v1/runbooks")["runbooks"][0]["name"], runbook);
    assert_eq!(admin.ok("/api/v1/silences")["silences"][0]["id"], silence);
    assert_eq!(
        admin.ok("/api/v1/inhibit_rules")["inhibit_rules"][0]["id"],
        inhibit
    );
    assert!(
        !admin.ok("/api/v1/audit")["records"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    for table in [
        "logs",
        "spans",
        "metrics",
        "templates",
        "events",
        "incidents",
    ] {
        assert!(admin.count(table) > 0, "alpha's {table} is empty");
    }
    AlphaIds {
        incident,
        anomaly,
        run: run.0,
        run_step: run.1,
        template,
        silence,
        inhibit,
        runbook,
        secret,
    }
}

/// Beta reads through every read route: nothing of alpha's, and alpha's ids are unknown.
fn beta_reads_nothing(beta: &Client, ids: &AlphaIds) {
    let alpha_ids = [
        ids.anomaly.clone(),
        ids.run.clone(),
        ids.silence.clone(),
        ids.inhibit.clone(),
    ];
    let read = |path: &str| {
        let reply = beta.get(path);
        assert_clean(&reply, path, &alpha_ids);
        reply
    };
    let empty = |path: &str, field: &str| {
        let reply = read(path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(reply.json[field], json!([]), "{path}: {}", reply.text);
    };

    // SQL over every table, JSON and CSV, and the plan.
    for table in [
        "logs",
        "spans",
        "metrics",
        "events",
        "incidents",
        "templates",
    ] {
        for (query, format) in [
            (format!("SELECT * FROM {table}"), "json"),
            (format!("SELECT count(*) AS n FROM {table}"), "json"),
            (format!("SELECT * FROM {table}"), "csv"),
            (format!("EXPLAIN SELECT * FROM {table}"), "json"),
        ] {
            let reply = beta.post("/api/v1/sql", &json!({"sql": query, "format": format}));
            assert_eq!(reply.status, 200, "{query}: {}", reply.text);
            assert_clean(&reply, "/api/v1/sql", &alpha_ids);
            assert!(
                !reply.text.contains("alpha"),
                "{query} names alpha: {}",
                reply.text
            );
            if query.starts_with("SELECT *") && format == "json" {
                assert_eq!(reply.json["rows"], json!([]), "{query}: {}", reply.text);
            }
            if query.contains("count(*)") {
                assert_eq!(reply.json["rows"][0]["n"], 0, "{query}: {}", reply.text);
            }
        }
    }
    // Every table named at once, and a join of logs with templates, as the patterns page does.
    let reply = beta.post(
        "/api/v1/sql",
        &json!({"sql": "SELECT (SELECT count(*) FROM logs) + (SELECT count(*) FROM spans) + \
                 (SELECT count(*) FROM metrics) + (SELECT count(*) FROM events) + \
                 (SELECT count(*) FROM incidents) + (SELECT count(*) FROM templates) AS n"}),
    );
    assert_eq!(reply.json["rows"][0]["n"], 0, "{}", reply.text);

    // Telemetry reads.
    empty(&format!("/api/v1/logs/search?{EVERYTHING}"), "logs");
    empty(
        &format!("/api/v1/logs/search?{EVERYTHING}&q={MARK}"),
        "logs",
    );
    empty(
        &format!("/api/v1/logs/search?{EVERYTHING}&q=trace_id%3A{TRACE}"),
        "logs",
    );
    empty(
        &format!(
            "/api/v1/logs/search?{EVERYTHING}&q=template%3A{}",
            ids.template
        ),
        "logs",
    );
    for name in [format!("{MARK}.queue.depth"), format!("{MARK}_jobs_total")] {
        empty(
            &format!("/api/v1/metrics/query_range?{RANGE}&name={}", enc(&name)),
            "series",
        );
        empty(
            &format!(
                "/api/v1/metrics/query_range?{RANGE}&name={}&band=true&agg=max",
                enc(&name)
            ),
            "series",
        );
        empty(
            &format!(
                "/api/v1/forecast?from={}&to={}&name={}&horizon=10m",
                T0,
                T0 + 310 * 60,
                enc(&name)
            ),
            "series",
        );
    }
    empty(&format!("/api/v1/patterns?{RANGE}"), "patterns");
    empty(
        &format!("/api/v1/patterns?{EVERYTHING}&q={MARK}"),
        "patterns",
    );
    empty(
        &format!("/api/v1/anomalies?kind=all&{EVERYTHING}"),
        "anomalies",
    );
    empty(&format!("/api/v1/anomalies?{RANGE}"), "anomalies");
    let topology = read(&format!("/api/v1/topology?{RANGE}"));
    assert_eq!(
        (&topology.json["nodes"], &topology.json["edges"]),
        (&json!([]), &json!([])),
        "{}",
        topology.text
    );

    // Operations reads.
    empty("/api/v1/incidents", "incidents");
    empty("/api/v1/incidents?status=open&limit=1000", "incidents");
    let stats = read("/api/v1/incidents").json["stats"].clone();
    assert_eq!(stats["signals"], 0, "{stats}");
    assert_eq!(stats["incidents"], 0, "{stats}");
    // Beta's trail holds only its own admin records: its tokens' creation and its retention.
    let trail = read("/api/v1/audit?limit=1000");
    assert_eq!(trail.status, 200, "{}", trail.text);
    for record in trail.json["records"].as_array().unwrap() {
        assert!(
            record["kind"] == "token.create" || record["kind"] == "retention.set",
            "{}",
            trail.text
        );
    }
    empty("/api/v1/runs", "runs");
    empty("/api/v1/secrets", "secrets");
    empty("/api/v1/silences", "silences");
    empty("/api/v1/inhibit_rules", "inhibit_rules");
    let books = read("/api/v1/runbooks");
    assert_eq!(
        books.json,
        json!({"runbooks": [], "errors": {}, "paused": false}),
        "{}",
        books.text
    );
    empty("/api/v1/actions", "actions");

    // Alpha's ids are as unknown to beta as ids no one has.
    let by_id =
        |what: &str, status: u16, method: &str, path: &str, alpha_id: &str, body: &Value| {
            let never_id = if alpha_id.bytes().all(|b| b.is_ascii_digit()) {
                "987654321".to_owned()
            } else {
                never(alpha_id)
            };
            let send = |id: &str| {
                let path = path.replace("{id}", id);
                let reply = match method {
                    "GET" => beta.get(&path),
                    "DELETE" => beta.call("DELETE", &path, &[], b""),
                    _ => beta.post(&path, body),
                };
                assert_clean(&reply, &path, &[]);
                reply
            };
            let (a, n) = (send(alpha_id), send(&never_id));
            assert_same_refusal(what, status, (&a, alpha_id), (&n, &never_id));
        };
    let none = Value::Null;
    let incident = ids.incident.to_string();
    by_id("a trace", 404, "GET", "/api/v1/traces/{id}", TRACE, &none);
    by_id(
        "a pattern's series",
        404,
        "GET",
        &format!("/api/v1/patterns/{{id}}/series?{RANGE}"),
        &ids.template.to_string(),
        &none,
    );
    by_id(
        "an anomaly",
        404,
        "GET",
        "/api/v1/anomalies/{id}",
        &ids.anomaly,
        &none,
    );
    by_id(
        "an incident",
        404,
        "GET",
        "/api/v1/incidents/{id}",
        &incident,
        &none,
    );
    by_id(
        "an incident's ranking",
        404,
        "GET",
        "/api/v1/incidents/{id}/rca?versions=5",
        &incident,
        &none,
    );
    by_id("a run", 404, "GET", "/api/v1/runs/{id}", &ids.run, &none);
    // A chat message's signed link: without alpha's signature, the same refusal whatever the
    // run.
    for (tenant, method) in [
        ("alpha", "GET"),
        ("beta", "GET"),
        ("alpha", "POST"),
        ("beta", "POST"),
    ] {
        by_id(
            "a run's approval link",
            403,
            method,
            &format!(
                "/api/v1/runs/{{id}}/link?tenant={tenant}&decision=approve&step={}&sig={}",
                ids.run_step,
                "0".repeat(64)
            ),
            &ids.run,
            &none,
        );
    }

    // Writes aimed at alpha's objects: the same 404 as for objects no one has.
    by_id(
        "feedback on an anomaly",
        404,
        "POST",
        "/api/v1/anomalies/{id}/feedback",
        &ids.anomaly,
        &json!({"feedback": "false_positive", "comment": "not mine"}),
    );
    for action in ["ack", "resolve", "split"] {
        by_id(
            &format!("incident action {action}"),
            404,
            "POST",
            &format!("/api/v1/incidents/{{id}}/{action}"),
            &incident,
            &json!({"comment": "not mine", "fingerprints": ["alertmanager:alpha-f1"]}),
        );
    }
    by_id(
        "incident action merge",
        404,
        "POST",
        "/api/v1/incidents/{id}/merge",
        &incident,
        &json!({"from": ids.incident}),
    );
    for action in ["approve", "reject"] {
        by_id(
            &format!("run action {action}"),
            404,
            "POST",
            &format!("/api/v1/runs/{{id}}/{action}"),
            &ids.run,
            &json!({"comment": "beta says go"}),
        );
    }
    by_id(
        "deleting a silence",
        404,
        "DELETE",
        "/api/v1/silences/{id}",
        &ids.silence,
        &none,
    );
    by_id(
        "deleting an inhibition rule",
        404,
        "DELETE",
        "/api/v1/inhibit_rules/{id}",
        &ids.inhibit,
        &none,
    );
    let never_name = |name: &str| format!("zz{}", &name[2..]);
    for (what, path, name) in [
        ("deleting a runbook", "/api/v1/runbooks/", &ids.runbook),
        ("deleting a secret", "/api/v1/secrets/", &ids.secret),
    ] {
        let a = beta.call("DELETE", &format!("{path}{name}"), &[], b"");
        let other = never_name(name);
        let n = beta.call("DELETE", &format!("{path}{other}"), &[], b"");
        assert_same_refusal(what, 404, (&a, name), (&n, &other));
    }
    // `POST /api/v1/runbooks/{name}` only knows `pause` and `resume`: alpha's runbook name is
    // just another unknown action.
    let a = beta.post(&format!("/api/v1/runbooks/{}", ids.runbook), &none);
    let other = never_name(&ids.runbook);
    let n = beta.post(&format!("/api/v1/runbooks/{other}"), &none);
    assert_same_refusal("a runbooks action", 404, (&a, &ids.runbook), (&n, &other));

    // Unauthenticated routes hold nothing of any tenant's.
    for path in ["/", "/assets/app.js", "/healthz", "/readyz"] {
        let reply = beta.get(path);
        assert!(reply.status < 500, "{path}: {}", reply.status);
        assert_clean(&reply, path, &alpha_ids);
    }
    // Sextant's own metrics show beta's token beta's series only: not even alpha's name.
    let reply = beta.get("/metrics");
    assert_eq!(reply.status, 200);
    assert_clean(&reply, "/metrics", &alpha_ids);
    assert!(
        !reply.text.contains("tenant=\"alpha\""),
        "alpha's name on /metrics: {}",
        reply.text
    );
}

/// Beta's admin lists its own tokens only, cannot create one for alpha, and cannot revoke
/// alpha's: its id is as unknown as one that never existed.
fn beta_keeps_to_its_tokens(beta: &Client, alpha_secret: &str) {
    let alpha_id = alpha_secret.split('_').nth(1).unwrap();
    let listed = beta.ok("/api/v1/tokens");
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{listed}");
    for token in tokens {
        assert_eq!(token["tenant"], "beta", "{listed}");
        assert_ne!(token["id"], alpha_id, "{listed}");
    }
    let body = json!({"role": "admin"}).to_string();
    let create_as = |tenant: &str| {
        beta.call(
            "POST",
            "/api/v1/tokens",
            &[JSON, ("X-Sextant-Tenant", tenant)],
            body.as_bytes(),
        )
    };
    assert_same_refusal(
        "creating a token as another tenant",
        403,
        (&create_as("alpha"), "alpha"),
        (&create_as("nobody"), "nobody"),
    );
    let other = never(alpha_id);
    let a = beta.call("DELETE", &format!("/api/v1/tokens/{alpha_id}"), &[], b"");
    let n = beta.call("DELETE", &format!("/api/v1/tokens/{other}"), &[], b"");
    assert_same_refusal("revoking a token", 404, (&a, alpha_id), (&n, &other));
}

/// Ingest that names alpha in `X-Sextant-Tenant` is refused on every route, with the refusal
/// given for a tenant that does not exist, and stores nothing anywhere.
fn beta_cannot_ingest_as_alpha(beta_tokens: &[&Client]) {
    for beta in beta_tokens {
        for (path, headers, body) in ingest_requests("betasmuggled") {
            let refusal = |tenant: &str| {
                let mut with = headers.clone();
                with.push(("X-Sextant-Tenant", tenant));
                beta.call("POST", path, &with, &body)
            };
            let alpha = refusal("alpha");
            let nobody = refusal("nobody");
            assert_eq!(alpha.status, 403, "{path}: {}", alpha.text);
            assert_same_refusal(
                &format!("ingest to {path} as another tenant"),
                403,
                (&alpha, "alpha"),
                (&nobody, "nobody"),
            );
        }
    }
}

#[test]
fn no_route_shows_or_changes_another_tenants_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tokens = [
        ("alpha", "admin"),
        ("alpha", "ingest"),
        ("beta", "admin"),
        ("beta", "ingest"),
    ]
    .map(|(tenant, role)| create_token(&data, tenant, role));
    // Nothing resolves by itself while the test runs; only alpha may use the `touch` action.
    let markers = markers_dir(dir.path());
    let config = format!(
        "[incidents]\nresolve_quiet_seconds = 86400\n{}",
        touch_action_config(&markers, "\"alpha\"")
    );
    let server = Sextant::start_with_config(&data, Some(&config));
    let (by_alpha, exercised) = (Exercised::default(), Exercised::default());
    let client = |token: &str, exercised| Client {
        server: &server,
        token: token.to_owned(),
        exercised,
    };
    let (alpha, alpha_ingest, beta, beta_ingest) = (
        client(&tokens[0], &by_alpha),
        client(&tokens[1], &by_alpha),
        client(&tokens[2], &exercised),
        client(&tokens[3], &exercised),
    );
    let marker = markers.join("approved-by-someone");

    let ids = give_alpha_everything(&alpha, &alpha_ingest, &marker);
    let before = settled_view(&alpha);

    beta_reads_nothing(&beta, &ids);
    beta_cannot_ingest_as_alpha(&[&beta, &beta_ingest]);
    beta_keeps_to_its_tokens(&beta, &tokens[0]);
    for table in ["logs", "spans", "metrics", "events"] {
        assert_eq!(beta.count(table), 0, "beta's {table}");
    }
    assert_eq!(alpha_view(&alpha), before, "alpha's data changed");

    // Beta's own writes, under alpha's names and fingerprints, are beta's alone.
    let put = |path: &str, body: &[u8]| {
        let reply = beta.call("PUT", path, &[JSON], body);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    };
    put(
        &format!("/api/v1/runbooks/{}", ids.runbook),
        format!(
            "name = \"{}\"\n[match]\nservices = [\"nothing\"]\n\
             [[step]]\nkind = \"chat\"\nurl = \"http://127.0.0.1:9/beta\"\n",
            ids.runbook
        )
        .as_bytes(),
    );
    put(
        &format!("/api/v1/secrets/{}", ids.secret),
        json!({"value": "beta's own"}).to_string().as_bytes(),
    );
    // Alpha's action is not beta's: a runbook naming it is refused as one naming no action.
    let reply = beta.call(
        "PUT",
        "/api/v1/runbooks/borrow",
        &[JSON],
        b"name = \"borrow\"\n[[step]]\nkind = \"action\"\naction = \"touch\"\nparams = { name = \"x\" }\n",
    );
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(
        reply
            .text
            .contains("no action `touch` for this tenant (offered: none"),
        "{}",
        reply.text
    );
    assert_eq!(
        beta.ok("/api/v1/runbooks")["runbooks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        beta.ok("/api/v1/secrets")["secrets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for action in ["pause", "resume", "pause"] {
        let reply = beta.post(&format!("/api/v1/runbooks/{action}"), &Value::Null);
        assert_eq!(reply.status, 200, "{action}: {}", reply.text);
    }
    assert_eq!(beta.ok("/api/v1/runbooks")["paused"], true);
    let reply = beta.post(
        "/api/v1/silences",
        &json!({"matchers": ["service=\"beta-quiet\""], "ends_at": now_s() + 3600}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let beta_silence = reply.json["id"].as_str().unwrap().to_owned();
    let reply = beta.post(
        "/api/v1/inhibit_rules",
        &json!({"source": ["alertname=\"x\""], "target": ["service=\"beta-quiet\""]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let beta_rule = reply.json["id"].as_str().unwrap().to_owned();
    // The same Alertmanager fingerprint and service as alpha's alert: beta's own incident.
    let reply = beta_ingest.post(
        "/api/v1/alertmanager",
        &webhook(&format!("{MARK}-cart"), "beta_cart_down", "alpha-f1"),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    eventually("beta's own incident", || {
        beta.ok("/api/v1/incidents")["incidents"]
            .as_array()
            .unwrap()
            .len()
            == 1
    });
    let beta_incident = beta.ok("/api/v1/incidents")["incidents"][0].clone();
    assert_eq!(beta_incident["title"], "beta_cart_down", "{beta_incident}");
    let id = beta_incident["id"].as_u64().unwrap();
    let reply = beta.post(
        &format!("/api/v1/incidents/{id}/ack"),
        &json!({"comment": "beta's"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    // Beta's own deletes take beta's objects, never alpha's of the same name.
    for path in [
        format!("/api/v1/runbooks/{}", ids.runbook),
        format!("/api/v1/secrets/{}", ids.secret),
        format!("/api/v1/silences/{beta_silence}"),
        format!("/api/v1/inhibit_rules/{beta_rule}"),
    ] {
        let reply = beta.call("DELETE", &path, &[], b"");
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    }
    let reply = beta.call("DELETE", "/api/v1/tenant/data", &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["tenant"], "beta", "{}", reply.text);
    eventually("beta's incidents erased", || {
        beta.ok("/api/v1/incidents")["incidents"] == json!([])
    });

    // Alpha's objects are as they were; its run still waits, its command never ran.
    assert_eq!(alpha_view(&alpha), before, "alpha's data changed");
    let run = alpha.ok(&format!("/api/v1/runs/{}", ids.run));
    assert_eq!(run["status"], "waiting_approval", "{run}");
    assert!(!marker.exists(), "beta's approval ran alpha's command");
    let incident = alpha.ok(&format!("/api/v1/incidents/{}", ids.incident));
    assert_eq!(incident["status"], "open", "{incident}");
    assert_eq!(incident["acknowledged_by"], Value::Null, "{incident}");

    // Beta went through every route.
    let exercised = exercised.into_inner();
    let missing: Vec<_> = ROUTES
        .iter()
        .filter(|(m, p, _)| !exercised.contains(&(m.to_string(), p.to_string())))
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert!(missing.is_empty(), "routes beta never called: {missing:?}");
    server.stop();
}

/// The (method, path) pairs `sextant_server::router` registers with `.route("...", ...)`,
/// read from its source.
fn router_routes() -> BTreeSet<(String, String)> {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../sextant-server/src/lib.rs"),
    )
    .unwrap();
    let start = source.find("pub fn router(").expect("`router` in lib.rs");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").expect("the end of `router`")];
    let mut routes = BTreeSet::new();
    for call in body.split(".route(").skip(1) {
        let call = call.split(".with_state(").next().unwrap();
        let path = call
            .trim_start()
            .strip_prefix('"')
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("a route without a string path: {call}"));
        let mut methods = 0;
        for method in ["get", "post", "put", "delete"] {
            let pattern = format!("{method}(");
            for (at, _) in call.match_indices(&pattern) {
                let before = call[..at].chars().next_back();
                if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                    methods += 1;
                }
            }
        }
        assert!(methods > 0, "no method found for route {path}");
    }
    routes
}

#[test]
fn the_isolation_table_covers_every_route_of_the_router() {
    let routes = router_routes();
    assert!(routes.len() > 40, "found only {routes:?}");
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(table.len(), ROUTES.len(), "ROUTES lists a route twice");
    let unchecked: Vec<_> = routes.difference(&table).collect();
    assert!(
        unchecked.is_empty(),
        "routes with no isolation check in tests/it/isolation.rs: {unchecked:?}"
    );
    let gone: Vec<_> = table.difference(&routes).collect();
    assert!(
        gone.is_empty(),
        "ROUTES names routes the router no longer has: {gone:?}"
    );
}

/// Runs `tests/python/grpc_export.py`: each signal's Export with `token` and, unless `-`, the
/// tenant header; returns (signal, status code, details) per call.
fn grpc_export(
    python: &Path,
    server: &Sextant,
    token: &str,
    tenant: &str,
    bodies: &[(&str, std::path::PathBuf)],
) -> Vec<(String, String, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/grpc_export.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(server.addr.to_string())
        .args([token, tenant])
        .args(
            bodies
                .iter()
                .map(|(signal, file)| format!("{signal}={}", file.display())),
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "grpc_export.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let mut next = || parts.next().unwrap_or_default().to_owned();
            (next(), next(), next())
        })
        .collect()
}

/// The OTLP/gRPC routes: beta's tokens that name alpha in `x-sextant-tenant` get
/// PERMISSION_DENIED, worded as for a tenant that does not exist, and store nothing; the same
/// calls without the header land in beta's own tables (so the refusal is not a broken call);
/// failed authentications over gRPC are throttled.
#[test]
fn grpc_ingest_cannot_name_another_tenant() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    let Some(python) = crate::otlp_sdk::python_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tokens = [("alpha", "admin"), ("beta", "admin"), ("beta", "ingest")]
        .map(|(tenant, role)| create_token(&data, tenant, role));
    // Throttling is checked last: three refusals, then the address waits.
    let server = Sextant::start_with_config(&data, Some("[auth]\nmax_failed_per_minute = 3\n"));
    let exercised = Exercised::default();
    let client = |token: &str| Client {
        server: &server,
        token: token.to_owned(),
        exercised: &exercised,
    };
    let (alpha, beta) = (client(&tokens[0]), client(&tokens[1]));
    let alpha_logs = alpha.call(
        "POST",
        "/v1/logs",
        &[JSON],
        otlp_logs("alpha-api", &["alpha's own line"]).as_bytes(),
    );
    assert_eq!(alpha_logs.status, 200, "{}", alpha_logs.text);
    eventually("alpha's line", || alpha.count("logs") == 1);

    let write = |name: &str, bytes: Vec<u8>| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let logs: ExportLogsServiceRequest =
        serde_json::from_str(&otlp_logs("grpc-smuggled", &["grpc smuggled line"])).unwrap();
    let traces: ExportTraceServiceRequest =
        serde_json::from_str(&otlp_trace("grpc-smuggled", TRACE)).unwrap();
    let metrics: ExportMetricsServiceRequest =
        serde_json::from_str(&otlp_gauge("grpc-smuggled", "grpc_smuggled", 0..3, None)).unwrap();
    let bodies = [
        ("logs", write("logs.pb", logs.encode_to_vec())),
        ("traces", write("traces.pb", traces.encode_to_vec())),
        ("metrics", write("metrics.pb", metrics.encode_to_vec())),
    ];

    for token in &tokens[1..] {
        let as_alpha = grpc_export(&python, &server, token, "alpha", &bodies);
        let as_nobody = grpc_export(&python, &server, token, "nobody", &bodies);
        assert_eq!(as_alpha.len(), 3, "{as_alpha:?}");
        for (alpha_call, nobody_call) in as_alpha.iter().zip(&as_nobody) {
            assert_eq!(alpha_call.1, "PERMISSION_DENIED", "{alpha_call:?}");
            assert_eq!(
                alpha_call.2.replace("alpha", "TENANT"),
                nobody_call.2.replace("nobody", "TENANT"),
                "the refusal tells alpha from a tenant that does not exist"
            );
        }
    }
    let own = grpc_export(&python, &server, &tokens[2], "-", &bodies);
    assert!(own.iter().all(|call| call.1 == "OK"), "{own:?}");
    eventually("beta's own gRPC telemetry", || {
        ["logs", "spans", "metrics"]
            .iter()
            .all(|table| beta.count(table) > 0)
    });
    assert_eq!(beta.count("logs"), 1, "beta's logs");
    assert_eq!(alpha.count("logs"), 1, "alpha's logs");
    for table in ["spans", "metrics"] {
        assert_eq!(alpha.count(table), 0, "alpha's {table}");
    }

    // Guessing over gRPC is throttled like HTTP: each refusal counts, then further guesses get
    // RESOURCE_EXHAUSTED, while a good token still passes.
    for _ in 0..3 {
        let guess = grpc_export(&python, &server, "sxt_guess", "-", &bodies[..1]);
        assert_eq!(guess[0].1, "UNAUTHENTICATED", "{guess:?}");
    }
    let waiting = grpc_export(&python, &server, "sxt_guess", "-", &bodies[..1]);
    assert_eq!(waiting[0].1, "RESOURCE_EXHAUSTED", "{waiting:?}");
    let good = grpc_export(&python, &server, &tokens[2], "-", &bodies[..1]);
    assert_eq!(good[0].1, "OK", "{good:?}");
    server.stop();
}
