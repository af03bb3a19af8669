//! Anomaly detection and forecasting through the real binary: a metric spike sent over
//! OTLP/HTTP becomes an explained anomaly in `/api/v1/anomalies` and the `events` table, survives
//! `kill -9`, takes feedback (with its refusals), `query_range` draws the expected band, the
//! forecast endpoint answers with intervals, and a capacity rule warns before a limit.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{Sextant, agent, create_token, sql};

/// Points start here (Unix seconds, a multiple of 60), one a minute.
const T0: i64 = 1_700_000_040;
/// A range around all of them.
const RANGE: &str = "from=1699990000&to=1700100000";

/// A noise in [-1, 1) that is the same on every run.
fn noise(i: i64) -> f64 {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5e47;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// An OTLP/JSON gauge request: `name{queue="orders"}` of service `checkout`, one point per
/// (Unix seconds, value).
fn gauge_json(name: &str, points: &[(i64, f64)]) -> String {
    let points: Vec<String> = points
        .iter()
        .map(|(seconds, value)| {
            format!(
                r#"{{"timeUnixNano":"{}","asDouble":{value},
                  "attributes":[{{"key":"queue","value":{{"stringValue":"orders"}}}}]}}"#,
                seconds * 1_000_000_000
            )
        })
        .collect();
    format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name",
           "value":{{"stringValue":"checkout"}}}}]}},"scopeMetrics":[{{"metrics":[{{
           "name":"{name}","gauge":{{"dataPoints":[{}]}}}}]}}]}}]}}"#,
        points.join(",")
    )
}

/// Queue depth about 100, give or take 5, for minutes `range`; `spike` replaces one minute.
fn queue_points(range: std::ops::Range<i64>, spike: Option<(i64, f64)>) -> Vec<(i64, f64)> {
    range
        .map(|m| {
            let value = match spike {
                Some((at, value)) if at == m => value,
                _ => 100.0 + 5.0 * noise(m),
            };
            (T0 + 60 * m, value)
        })
        .collect()
}

fn send(server: &Sextant, token: &str, body: &str) {
    let response = agent()
        .post(&server.url("/v1/metrics"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn get(server: &Sextant, token: &str, path: &str) -> (u16, Value) {
    let mut response = agent()
        .get(&server.url(path))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

fn post(server: &Sextant, token: &str, path: &str, body: &str) -> (u16, Value) {
    let mut response = agent()
        .post(&server.url(path))
        .header("Authorization", &format!("Bearer {token}"))
        .send(body.as_bytes())
        .unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

fn anomalies(server: &Sextant, token: &str, query: &str) -> Vec<Value> {
    let (status, answer) = get(server, token, &format!("/api/v1/anomalies?{RANGE}{query}"));
    assert_eq!(status, 200, "{answer}");
    answer["anomalies"].as_array().unwrap().clone()
}

#[test]
fn a_metric_spike_becomes_an_explained_anomaly_that_survives_kill_and_takes_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = create_token(dir.path(), "shop", "ingest");
    let viewer = create_token(dir.path(), "shop", "viewer");
    let editor = create_token(dir.path(), "shop", "editor");
    let other = create_token(dir.path(), "other", "admin");
    let server = Sextant::start(dir.path());

    send(
        &server,
        &ingest,
        &gauge_json("queue.depth", &queue_points(0..300, None)),
    );
    assert!(anomalies(&server, &viewer, "").is_empty());
    send(
        &server,
        &ingest,
        &gauge_json("queue.depth", &queue_points(300..310, Some((300, 400.0)))),
    );

    let found = anomalies(&server, &viewer, "&service=checkout");
    assert_eq!(found.len(), 1, "{found:?}");
    let anomaly = &found[0];
    let id = anomaly["id"].as_str().unwrap().to_owned();
    assert_eq!(anomaly["kind"], "anomaly");
    assert_eq!(
        anomaly["time"],
        sextant_model::time::format_rfc3339((T0 + 300 * 60) * 1_000_000_000).as_str()
    );
    let explanation = &anomaly["explanation"];
    assert_eq!(explanation["series"]["name"], "queue.depth");
    assert_eq!(explanation["observed"], 400.0);
    assert!(
        explanation["band"][1].as_f64().unwrap() < 400.0,
        "{explanation}"
    );
    assert!(
        anomaly["summary"]
            .as_str()
            .unwrap()
            .starts_with("checkout: queue.depth{queue=orders} at 400 is above the expected"),
        "{anomaly}"
    );
    // The correlator folds the anomaly into an incident, saying so on the event.
    let deadline = Instant::now() + Duration::from_secs(30);
    let incident = loop {
        let (status, list) = get(&server, &viewer, "/api/v1/incidents");
        assert_eq!(status, 200, "{list}");
        if let Some(first) = list["incidents"].as_array().unwrap().first() {
            break first.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no incident for the anomaly: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        incident["services"],
        serde_json::json!(["checkout"]),
        "{incident}"
    );
    let (_, full) = get(
        &server,
        &viewer,
        &format!("/api/v1/incidents/{}", incident["id"]),
    );
    assert_eq!(full["members"][0]["kind"], "anomaly", "{full}");
    assert_eq!(full["members"][0]["event_id"], id.as_str(), "{full}");
    let (_, decided) = get(&server, &viewer, &format!("/api/v1/anomalies/{id}"));
    assert_eq!(decided["decision"]["incident"], incident["id"], "{decided}");

    // Another service, another time range, another tenant: nothing.
    assert!(anomalies(&server, &viewer, "&service=payments").is_empty());
    let (_, none) = get(
        &server,
        &viewer,
        "/api/v1/anomalies?from=1600000000&to=1600001000",
    );
    assert_eq!(none["anomalies"], Value::Array(Vec::new()));
    assert!(anomalies(&server, &other, "").is_empty());
    let (status, _) = get(&server, &other, &format!("/api/v1/anomalies/{id}"));
    assert_eq!(status, 404);
    let (status, answer) = get(&server, &viewer, "/api/v1/anomalies?kind=everything");
    assert_eq!(status, 400);
    assert!(answer.to_string().contains("kind"), "{answer}");

    // Feedback: viewers may not give it, bodies are checked, editors move the sensitivity.
    let path = format!("/api/v1/anomalies/{id}/feedback");
    let (status, _) = post(&server, &viewer, &path, r#"{"feedback":"false_positive"}"#);
    assert_eq!(status, 403);
    let (status, answer) = post(&server, &editor, &path, r#"{"feedback":"maybe"}"#);
    assert_eq!(status, 400);
    assert!(answer.to_string().contains("false_positive"), "{answer}");
    let (status, _) = post(
        &server,
        &editor,
        "/api/v1/anomalies/0123456789abcdef/feedback",
        r#"{"feedback":"confirmed"}"#,
    );
    assert_eq!(status, 404);
    let (status, answer) = post(
        &server,
        &editor,
        &path,
        r#"{"feedback":"false_positive","comment":"nightly batch"}"#,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["sensitivity_before"], 1.0);
    assert_eq!(answer["sensitivity_after"], 0.8);

    // The events table in SQL, for this tenant only.
    let (status, answer) = sql(
        &server,
        &viewer,
        "SELECT kind, service, feedback, details FROM events",
    );
    assert_eq!(status, 200, "{answer}");
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{answer}");
    assert_eq!(rows[0]["kind"], "anomaly");
    assert_eq!(rows[0]["feedback"], "false_positive");
    let details: Value = serde_json::from_str(rows[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["observed"], 400.0);
    let (_, answer) = sql(&server, &other, "SELECT count(*) AS n FROM events");
    assert_eq!(answer["rows"][0]["n"], 0, "{answer}");

    // kill -9, start again: the anomaly and its feedback are there.
    server.kill();
    let server = Sextant::start(dir.path());
    let found = anomalies(&server, &viewer, "");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["feedback"], "false_positive");
    let (status, one) = get(&server, &viewer, &format!("/api/v1/anomalies/{id}"));
    assert_eq!(status, 200);
    assert_eq!(one["feedback_history"][0]["comment"], "nightly batch");

    // A clean stop saves the models with the flush; after it, the log holds nothing to replay,
    // so a detector that knows the series can only be the saved one. A fresh one would still be
    // warming up 15 points in, and miss the spike.
    send(
        &server,
        &ingest,
        &gauge_json("queue.depth", &queue_points(310..600, None)),
    );
    server.stop();
    let server = Sextant::start(dir.path());
    send(
        &server,
        &ingest,
        &gauge_json("queue.depth", &queue_points(600..620, Some((615, 600.0)))),
    );
    let found = anomalies(&server, &viewer, "");
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0]["time"],
        sextant_model::time::format_rfc3339((T0 + 615 * 60) * 1_000_000_000).as_str()
    );
    // The lowered sensitivity was kept too: the new anomaly was held to a higher threshold.
    assert!(
        found[0]["explanation"]["threshold"].as_f64().unwrap()
            > found[1]["explanation"]["threshold"].as_f64().unwrap(),
        "{found:?}"
    );
    server.stop();
}

#[test]
fn query_range_draws_the_band_and_forecast_answers_with_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = create_token(dir.path(), "shop", "ingest");
    let viewer = create_token(dir.path(), "shop", "viewer");
    let server = Sextant::start(dir.path());
    send(
        &server,
        &ingest,
        &gauge_json("queue.depth", &queue_points(0..300, Some((250, 400.0)))),
    );

    let (status, answer) = get(
        &server,
        &viewer,
        &format!("/api/v1/metrics/query_range?name=queue.depth&{RANGE}&step=60s&band=true"),
    );
    assert_eq!(status, 200, "{answer}");
    let series = &answer["series"][0];
    let points = series["points"].as_array().unwrap();
    let band = series["band"].as_array().unwrap();
    assert_eq!(points.len(), 300);
    assert_eq!(band.len(), 300);
    // Warming up at first (no band), then a band around 100 that the spike leaves.
    assert_eq!(band[0][1], Value::Null);
    let at_spike = &band[250];
    // Times in RFC 3339 unless the client asks for numbers.
    let spike_time = sextant_model::time::format_rfc3339((T0 + 250 * 60) * 1_000_000_000);
    assert_eq!(at_spike[0], spike_time.as_str());
    assert_eq!(points[250][0], spike_time.as_str());
    let (expected, lower, upper) = (
        at_spike[1].as_f64().unwrap(),
        at_spike[2].as_f64().unwrap(),
        at_spike[3].as_f64().unwrap(),
    );
    assert!(
        lower < 100.0 && 100.0 < upper && upper < 400.0,
        "{at_spike}"
    );
    assert!((90.0..110.0).contains(&expected), "{at_spike}");
    let (status, _) = get(
        &server,
        &viewer,
        &format!("/api/v1/metrics/query_range?name=queue.depth&{RANGE}&band=yes"),
    );
    assert_eq!(status, 400);

    let (status, answer) = get(
        &server,
        &viewer,
        &format!(
            "/api/v1/forecast?name=queue.depth&match=queue=orders&{RANGE}&step=60s&horizon=30m\
             &time_format=unix"
        ),
    );
    assert_eq!(status, 200, "{answer}");
    let series = &answer["series"][0];
    assert_eq!(series["labels"]["service"], "checkout");
    assert_eq!(series["history_points"], 300);
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 30);
    assert_eq!(points[0][0], T0 + 300 * 60);
    for point in points {
        let (mean, lower, upper) = (
            point[1].as_f64().unwrap(),
            point[2].as_f64().unwrap(),
            point[3].as_f64().unwrap(),
        );
        assert!(lower <= mean && mean <= upper, "{point}");
        assert!((80.0..120.0).contains(&mean), "{point}");
    }
    for bad in [
        "horizon=soon",
        "step=0s&horizon=1h",
        "season=90s&horizon=1h",
    ] {
        let (status, answer) = get(
            &server,
            &viewer,
            &format!("/api/v1/forecast?name=queue.depth&{RANGE}&{bad}"),
        );
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    let (status, _) = get(
        &server,
        &viewer,
        &format!("/api/v1/forecast?name=queue.depth&{RANGE}"),
    );
    assert_eq!(status, 400, "the horizon is required");
}

#[test]
fn a_capacity_rule_warns_before_the_limit_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = create_token(dir.path(), "shop", "ingest");
    let viewer = create_token(dir.path(), "shop", "viewer");
    let config = r#"
[anomaly]
capacity_check_seconds = 1

[[anomaly.capacity]]
name = "disk.used_gb"
limit = 1000
horizon = "12h"
step = "5m"
history = "6h"
"#;
    let server = Sextant::start_with_config(dir.path(), Some(config));
    // Six hours of a disk filling by 50 GB an hour, now at about 700 GB: full in about 6 h.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let points: Vec<(i64, f64)> = (0..72)
        .map(|i| {
            let ago = (72 - i) * 300;
            (now - ago, 700.0 - 50.0 * ago as f64 / 3600.0 + noise(i))
        })
        .collect();
    send(&server, &ingest, &gauge_json("disk.used_gb", &points));

    let deadline = Instant::now() + Duration::from_secs(30);
    let warning = loop {
        let (status, answer) = get(
            &server,
            &viewer,
            &format!(
                "/api/v1/anomalies?kind=capacity&from={}&to={}",
                now - 3600,
                now + 3600
            ),
        );
        assert_eq!(status, 200, "{answer}");
        if let Some(first) = answer["anomalies"].as_array().unwrap().first() {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no capacity warning within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(warning["kind"], "capacity");
    let summary = warning["summary"].as_str().unwrap();
    assert!(summary.contains("reaches 1000 in about"), "{summary}");
    assert_eq!(warning["explanation"]["method"], "linear-trend");
    // About 6 h (the disk grows 50 GB an hour and has 300 GB left), within the interval (give
    // or take the 5-minute step the history is counted in).
    let eta = warning["explanation"]["reaches_in_seconds"]
        .as_i64()
        .unwrap();
    assert!((5 * 3600..7 * 3600).contains(&eta), "{warning}");
    let interval = &warning["explanation"]["interval_seconds"];
    assert!(interval[0].as_i64().unwrap() <= 6 * 3600 + 300, "{warning}");
    assert!(interval[1].as_i64().unwrap() >= 6 * 3600 - 300, "{warning}");
}

#[test]
fn alerts_are_listed_when_asked_for_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let editor = create_token(&data, "shop", "editor");
    let server = Sextant::start_with_config(&data, Some("[anomaly]\nenabled = false\n"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let alert = format!(
        r#"[{{"title": "DiskSpaceLow", "service": "db", "severity": "warning",
             "fingerprint": "disk-low", "status": "firing", "time": "{now}"}}]"#
    );
    for _ in 0..3 {
        let (status, answer) = post(&server, &editor, "/api/v1/events", &alert);
        assert_eq!(status, 200, "{answer}");
    }
    let listed = |query: &str| -> Vec<Value> {
        let (status, answer) = get(&server, &editor, &format!("/api/v1/anomalies?{query}"));
        assert_eq!(status, 200, "{answer}");
        answer["anomalies"].as_array().unwrap().clone()
    };
    let kinds = |query: &str| -> Vec<(String, String)> {
        listed(query)
            .iter()
            .map(|a| {
                (
                    a["kind"].as_str().unwrap_or_default().to_owned(),
                    a["title"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let alert_row = ("alert".to_owned(), "DiskSpaceLow".to_owned());
    assert_eq!(kinds("kind=alert"), std::slice::from_ref(&alert_row));
    assert_eq!(kinds("kind=all"), [alert_row]);
    assert!(kinds("").is_empty(), "alerts are not anomalies");
    let alerts = listed("kind=alert");
    assert_eq!(alerts[0]["count"], 3, "{alerts:?}");
    server.stop();
}
