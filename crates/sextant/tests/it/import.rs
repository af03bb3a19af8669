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
