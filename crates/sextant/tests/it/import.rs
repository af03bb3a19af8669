//! `sextant import` through the real binary: OTLP JSON lines and length-prefixed protobuf are
//! stored with their own timestamps and read back by a server; a malformed line is reported by
//! number and the rest kept; importing the same file again stores nothing twice; records older
//! than the retention are refused unless `--retention-days` says otherwise; a directory in use
//! by a server is refused.

use std::path::Path;
use std::process::{Command, Output};

use prost::Message;

use crate::support::{Sextant, binary, create_token, logs_request, sql};

const HOUR: i64 = 3_600_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn import(data: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("import")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One OTLP/JSON logs request of `service` with a line per (time, body).
fn log_line(service: &str, lines: &[(i64, &str)]) -> String {
    let records: Vec<String> = lines
        .iter()
        .map(|(time, body)| {
            format!(
                "{{\"timeUnixNano\": \"{time}\", \"severityNumber\": 17, \"body\": {{\"stringValue\": \"{body}\"}}}}"
            )
        })
        .collect();
    format!(
        "{{\"resourceLogs\": [{{\"resource\": {{\"attributes\": [{{\"key\": \"service.name\", \
         \"value\": {{\"stringValue\": \"{service}\"}}}}]}}, \"scopeLogs\": [{{\"logRecords\": [{}]}}]}}]}}",
        records.join(", ")
    )
}

fn metric_line(service: &str, time: i64, value: f64) -> String {
    format!(
        "{{\"resourceMetrics\": [{{\"resource\": {{\"attributes\": [{{\"key\": \"service.name\", \
         \"value\": {{\"stringValue\": \"{service}\"}}}}]}}, \"scopeMetrics\": [{{\"metrics\": [{{\
         \"name\": \"queue_depth\", \"gauge\": {{\"dataPoints\": [{{\"timeUnixNano\": \"{time}\", \
         \"asDouble\": {value}}}]}}}}]}}]}}]}}"
    )
}

#[test]
fn recorded_telemetry_is_imported_once_with_its_own_times() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let t0 = now_ns() - 2 * HOUR;
    let file = dir.path().join("day.jsonl");
    let lines = [
        log_line(
            "shop",
            &[(t0, "order 1 placed"), (t0 + 1_000, "order 2 placed")],
        ),
        metric_line("shop", t0, 3.0),
        "{\"resourceLogs\": [ broken".to_owned(),
        String::new(),
        log_line("shop", &[(t0 + HOUR, "card 7 declined")]),
        metric_line("shop", t0 + HOUR, 9.0),
    ];
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let file = file.to_str().unwrap().to_owned();

    // A malformed line is reported by its number; the others are stored.
    let first = import(&data, &["--tenant", "ops", &file]);
    assert!(!first.status.success(), "one line was refused");
    let (stdout, stderr) = (text(&first.stdout), text(&first.stderr));
    assert!(
        stdout.contains(
            "imported 4 requests (5 records) for tenant `ops`; 0 already imported; 1 refused"
        ),
        "{stdout}"
    );
    assert!(stderr.contains(&format!("{file}:line 3: ")), "{stderr}");

    // The same file again stores nothing twice.
    let again = import(&data, &["--tenant", "ops", &file]);
    assert!(
        text(&again.stdout).contains(
            "imported 0 requests (0 records) for tenant `ops`; 4 already imported; 1 refused"
        ),
        "{}",
        text(&again.stdout)
    );

    // Records older than the retention are refused, unless the import is told to keep them.
    let old = dir.path().join("old.jsonl");
    let long_ago = now_ns() - 40 * 24 * HOUR;
    std::fs::write(
        &old,
        log_line("shop", &[(long_ago, "archived line")]) + "\n",
    )
    .unwrap();
    let old = old.to_str().unwrap().to_owned();
    let refused = import(&data, &["--tenant", "ops", &old]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr)
            .contains("older than the tenant's retention of 30 days (give `--retention-days`"),
        "{}",
        text(&refused.stderr)
    );
    let kept = import(&data, &["--tenant", "ops", "--retention-days", "60", &old]);
    assert!(kept.status.success(), "{}", text(&kept.stderr));

    // Length-prefixed protobuf, one signal per file.
    let proto = dir.path().join("logs.pb");
    let mut bytes = Vec::new();
    for n in 0..3 {
        let mut request = logs_request("cart", &[format!("cart {n} emptied")]);
        request.resource_logs[0].scope_logs[0].log_records[0].time_unix_nano =
            (t0 + n * 1_000_000) as u64;
        let body = request.encode_to_vec();
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
    }
    std::fs::write(&proto, &bytes).unwrap();
    let proto = proto.to_str().unwrap().to_owned();
    let without = import(&data, &["--tenant", "ops", &proto]);
    assert!(
        text(&without.stderr).contains("needs `--signal"),
        "{}",
        text(&without.stderr)
    );
    let with = import(&data, &["--tenant", "ops", "--signal", "logs", &proto]);
    assert!(with.status.success(), "{}", text(&with.stderr));
    assert!(text(&with.stdout).contains("imported 3 requests (3 records)"));

    // A server reads it all back, once, at the records' own times, mined into templates; while
    // it runs, the directory is not the import's.
    let token = create_token(&data, "ops", "viewer");
    let server = Sextant::start_with_config(
        &data,
        Some("[storage]\nretention_days_per_tenant = { ops = 60 }\n"),
    );
    let busy = import(&data, &["--tenant", "ops", &file]);
    assert!(
        text(&busy.stderr).contains("is in use by another Sextant process"),
        "{}",
        text(&busy.stderr)
    );
    let (status, answer) = sql(
        &server,
        &token,
        "SELECT service, count(*) AS n, count(template_id) AS mined \
         FROM logs GROUP BY service ORDER BY service",
    );
    assert_eq!(status, 200, "{answer}");
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{answer}");
    assert_eq!(
        (&rows[0]["service"], &rows[0]["n"]),
        (&"cart".into(), &3.into())
    );
    assert_eq!(
        (&rows[1]["service"], &rows[1]["n"]),
        (&"shop".into(), &4.into())
    );
    assert_eq!(rows[1]["mined"], 4);
    let (_, archived) = sql(
        &server,
        &token,
        "SELECT body FROM logs WHERE time < now() - INTERVAL '30 days'",
    );
    assert_eq!(
        archived["rows"],
        serde_json::json!([{"body": "archived line"}])
    );
    let (_, metrics) = sql(&server, &token, "SELECT value FROM metrics ORDER BY time");
    assert_eq!(
        metrics["rows"],
        serde_json::json!([{"value": 3.0}, {"value": 9.0}])
    );
    server.stop();
}

/// The services of the recorded shop: each calls the next.
const CHAIN: [&str; 3] = ["frontend", "cart", "db"];
const STEP: i64 = 30_000_000_000;
const MINUTE: i64 = 60_000_000_000;

fn resource(service: &str) -> String {
    format!(
        "\"resource\": {{\"attributes\": [{{\"key\": \"service.name\", \
         \"value\": {{\"stringValue\": \"{service}\"}}}}]}}"
    )
}

/// The request latency of `service` at step `n`, `slow` times its usual when the fault is on.
fn latency(service: usize, n: i64, slow: f64) -> f64 {
    let usual = 0.010 * (service as f64 + 1.0);
    let wobble = 1.0 + 0.05 * ((n * 7 + service as i64 * 3) % 11) as f64 / 10.0;
    usual * wobble * slow
}

/// A recorded three hours of the shop, a minute per metrics request and per traces request, in
/// time order: db slows down twentyfold from minute 150 to minute 160, its callers with it; at
/// minute 10 a point carries a time a year ahead.
fn recorded_day(t0: i64) -> String {
    let mut lines = Vec::new();
    for minute in 0..180 {
        let fault = (150..160).contains(&minute);
        let mut resources = Vec::new();
        let mut spans = Vec::new();
        for (s, service) in CHAIN.iter().enumerate() {
            let slow = if fault { [3.0, 5.0, 20.0][s] } else { 1.0 };
            let points: Vec<String> = (0..2)
                .map(|k| {
                    let n = minute * 2 + k;
                    format!(
                        "{{\"timeUnixNano\": \"{}\", \"asDouble\": {}}}",
                        t0 + n * STEP,
                        latency(s, n, slow)
                    )
                })
                .collect();
            resources.push(format!(
                "{{{}, \"scopeMetrics\": [{{\"metrics\": [{{\"name\": \"request_latency_seconds\", \
                 \"gauge\": {{\"dataPoints\": [{}]}}}}]}}]}}",
                resource(service),
                points.join(", ")
            ));
            let start = t0 + minute * MINUTE + s as i64 * 1_000_000;
            let end = start + (latency(s, minute * 2, slow) * 1e9) as i64;
            let parent = if s == 0 {
                String::new()
            } else {
                format!("{:016x}", minute * 10 + s as i64)
            };
            spans.push(format!(
                "{{{}, \"scopeSpans\": [{{\"spans\": [{{\"traceId\": \"{:032x}\", \
                 \"spanId\": \"{:016x}\", \"parentSpanId\": \"{parent}\", \"name\": \"GET /{service}\", \
                 \"kind\": 2, \"startTimeUnixNano\": \"{start}\", \"endTimeUnixNano\": \"{end}\"}}]}}]}}",
                resource(service),
                minute + 1,
                minute * 10 + s as i64 + 1,
            ));
        }
        lines.push(format!(
            "{{\"resourceMetrics\": [{}]}}",
            resources.join(", ")
        ));
        lines.push(format!("{{\"resourceSpans\": [{}]}}", spans.join(", ")));
        if minute == 10 {
            // A point of a damaged clock, a year ahead: refused, and no clock moves.
            lines.push(format!(
                "{{\"resourceMetrics\": [{{{}, \"scopeMetrics\": [{{\"metrics\": [{{\"name\": \
                 \"build_info\", \"gauge\": {{\"dataPoints\": [{{\"timeUnixNano\": \"{}\", \
                 \"asDouble\": 1}}]}}}}]}}]}}]}}",
                resource("frontend"),
                now_ns() + 365 * 24 * HOUR
            ));
        }
    }
    lines.join("\n") + "\n"
}

/// The incidents a data directory holds, ids aside, and the first service of each one's
/// ranking.
fn replayed_incidents(data: &Path) -> Vec<serde_json::Value> {
    let token = create_token(data, "shop", "viewer");
    let server = Sextant::start(data);
    let (status, answer) = sql(
        &server,
        &token,
        "SELECT id, status, body FROM incidents ORDER BY time",
    );
    assert_eq!(status, 200, "{answer}");
    let mut found = Vec::new();
    for row in answer["rows"].as_array().unwrap() {
        let body: serde_json::Value = serde_json::from_str(row["body"].as_str().unwrap()).unwrap();
        let detail =
            crate::support::get_json(&server, &token, &format!("/api/v1/incidents/{}", row["id"]));
        found.push(serde_json::json!({
            "status": row["status"],
            "opened_at": body["opened_at"],
            "resolved_at": body["resolved_at"],
            "services": body["services"],
            "members": body["members"].as_array().unwrap().iter()
                .map(|m| m["event_id"].clone()).collect::<Vec<_>>(),
            "first": detail["root_cause"]["services"][0]["service"],
        }));
    }
    server.stop();
    found
}

#[test]
fn a_replayed_day_opens_and_resolves_its_incidents_in_event_time_the_same_each_time() {
    let dir = tempfile::tempdir().unwrap();
    // Three days ago, on a minute.
    let t0 = (now_ns() - 72 * HOUR).div_euclid(MINUTE) * MINUTE;
    let file = dir.path().join("day.jsonl");
    std::fs::write(&file, recorded_day(t0)).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let mut replays = Vec::new();
    for name in ["first", "second"] {
        let data = dir.path().join(name);
        let out = import(&data, &["--tenant", "shop", &file]);
        assert!(!out.status.success(), "the future line is refused");
        assert!(
            text(&out.stderr).contains(":line 23: records from ")
                && text(&out.stderr).contains("are in the future"),
            "{}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("imported 360 requests"),
            "{}",
            text(&out.stdout)
        );
        replays.push(replayed_incidents(&data));
    }
    let incidents = &replays[0];
    let fault = t0 + 150 * MINUTE;
    let covering: Vec<&serde_json::Value> = incidents
        .iter()
        .filter(|i| {
            let opened = i["opened_at"].as_i64().unwrap();
            (fault..fault + 10 * MINUTE).contains(&opened)
        })
        .collect();
    assert_eq!(
        covering.len(),
        1,
        "one incident for the fault: {incidents:#?}"
    );
    let incident = covering[0];
    // Resolved at telemetry time (once its anomalies ended and five minutes passed quietly),
    // within the recorded day, not at the time the import ran.
    let resolved = incident["resolved_at"].as_i64().expect("resolved");
    assert_eq!(incident["status"], "resolved");
    assert!(
        (fault + 5 * MINUTE..t0 + 180 * MINUTE).contains(&resolved),
        "resolved {} minutes after the fault began",
        (resolved - fault) / MINUTE
    );
    assert_eq!(incident["first"], "db", "{incident:#?}");
    // A second replay of the day gives the same incidents.
    assert_eq!(replays[0], replays[1]);
}
