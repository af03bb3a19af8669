//! Incidents through the real binary: the service map derived from traces sent over OTLP, the
//! scenario suite (`testdata/incidents/`) played through `POST /api/v1/events` with its
//! silences and inhibition rules made through the API, each scenario in its own tenant and
//! scored from `GET /api/v1/incidents`; an Alertmanager webhook payload; incidents resolving
//! when their members are quiet; and the incident actions with their refusals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sextant_incidents::scenario::Scenario;

use crate::support::{Kill, Sextant, agent, create_token, free_port};

const NANOS: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn call(
    server: &Sextant,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let url = server.url(path);
    let auth = format!("Bearer {token}");
    let mut response = match (method, body) {
        ("GET", _) => agent().get(&url).header("Authorization", &auth).call(),
        ("DELETE", _) => agent().delete(&url).header("Authorization", &auth).call(),
        (_, body) => agent()
            .post(&url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body.map_or(String::new(), Value::to_string).as_bytes()),
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn post(server: &Sextant, token: &str, path: &str, body: &Value) -> Value {
    let (status, answer) = call(server, token, "POST", path, Some(body));
    assert_eq!(status, 200, "{path}: {answer}");
    answer
}

fn get(server: &Sextant, token: &str, path: &str) -> Value {
    let (status, answer) = call(server, token, "GET", path, None);
    assert_eq!(status, 200, "{path}: {answer}");
    answer
}

/// One trace per `(caller, callee)`: the caller's SERVER span, its CLIENT span, and the
/// callee's SERVER span under it; `errors` of every ten callee spans fail. Plus, for each
/// `(service, system)` in `databases`, a CLIENT span with `db.system` that no server answers.
fn traces_json(
    edges: &[(&str, &str)],
    databases: &[(&str, &str)],
    start: i64,
    errors: u32,
) -> Value {
    let mut by_service: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut next_id = 1u64;
    let mut id = |width: usize| {
        next_id += 1;
        format!("{:0width$x}", next_id * 7919 + 13)
    };
    let span = |trace: &str,
                span_id: &str,
                parent: &str,
                kind: i32,
                name: &str,
                error: bool,
                attrs: Value| {
        json!({
            "traceId": trace, "spanId": span_id, "parentSpanId": parent, "name": name,
            "kind": kind, "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": (start + 20_000_000).to_string(),
            "status": {"code": if error { 2 } else { 1 }},
            "attributes": attrs,
        })
    };
    for round in 0..10u32 {
        for (caller, callee) in edges {
            let trace = id(32);
            let (root, client, server) = (id(16), id(16), id(16));
            let calls = by_service.entry(caller.to_string()).or_default();
            calls.push(span(&trace, &root, "", 2, "GET /", false, json!([])));
            calls.push(span(&trace, &client, &root, 3, "call", false, json!([])));
            by_service.entry(callee.to_string()).or_default().push(span(
                &trace,
                &server,
                &client,
                2,
                "handle",
                round < errors,
                json!([]),
            ));
        }
        for (service, system) in databases {
            let trace = id(32);
            let (root, client) = (id(16), id(16));
            let spans = by_service.entry(service.to_string()).or_default();
            spans.push(span(&trace, &root, "", 2, "GET /", false, json!([])));
            spans.push(span(
                &trace,
                &client,
                &root,
                3,
                "SELECT",
                false,
                json!([{"key": "db.system", "value": {"stringValue": system}}]),
            ));
        }
    }
    let resource_spans: Vec<Value> = by_service
        .into_iter()
        .map(|(service, spans)| {
            json!({
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"spans": spans}],
            })
        })
        .collect();
    json!({ "resourceSpans": resource_spans })
}

/// A topology answer's edges: (caller, callee) to traffic.
fn edge_traffic(map: &Value) -> BTreeMap<(String, String), Value> {
    map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let end = |k: &str| e[k].as_str().unwrap().to_owned();
            ((end("caller"), end("callee")), e["traffic"].clone())
        })
        .collect()
}

fn send_traces(server: &Sextant, token: &str, body: &Value) {
    let response = agent()
        .post(&server.url("/v1/traces"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Waits until the tenant's correlator has taken `signals` notifications.
fn wait_for_signals(server: &Sextant, token: &str, signals: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = get(server, token, "/api/v1/incidents?limit=1")["stats"].clone();
        if stats["signals"].as_u64() == Some(signals as u64) {
            return;
        }
        assert!(Instant::now() < deadline, "{stats}, {signals} expected");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_service_map_comes_from_traces_with_rates_errors_and_external_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = create_token(&data, "shop", "editor");
    let other = create_token(&data, "elsewhere", "editor");
    let server = Sextant::start(&data);
    let start = now_ns() - 60 * NANOS;
    send_traces(
        &server,
        &token,
        &traces_json(
            &[("frontend", "cart"), ("cart", "redis")],
            &[("orders", "postgresql")],
            start,
            3,
        ),
    );
    let map = get(&server, &token, "/api/v1/topology");
    let edges = edge_traffic(&map);
    let keys: Vec<(&str, &str)> = edges
        .keys()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("cart", "redis"),
            ("frontend", "cart"),
            ("orders", "postgresql")
        ],
        "{map}"
    );
    let cart = &edges[&("frontend".to_string(), "cart".to_string())];
    assert_eq!(
        (cart["requests"].as_u64(), cart["errors"].as_u64()),
        (Some(10), Some(3)),
        "{cart}"
    );
    assert!((cart["error_rate"].as_f64().unwrap() - 0.3).abs() < 1e-9);
    assert!(
        (cart["p50_ms"].as_f64().unwrap() - 20.0).abs() < 0.5,
        "{cart}"
    );
    let nodes: BTreeMap<&str, &str> = map["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(nodes.get("postgresql"), Some(&"external"), "{map}");
    assert_eq!(nodes.get("redis"), Some(&"service"));
    // cart serves 10 requests from the frontend: its SERVER spans (and root spans) count.
    let cart_node = map["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "cart")
        .unwrap();
    assert_eq!(
        cart_node["traffic"]["requests"].as_u64(),
        Some(20),
        "{cart_node}"
    );

    let elsewhere = get(&server, &other, "/api/v1/topology");
    assert_eq!(elsewhere["edges"], json!([]), "another tenant sees nothing");
    let (status, body) = call(&server, &token, "GET", "/api/v1/topology?from=2&to=1", None);
    assert_eq!(status, 400, "{body}");
    server.stop();
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/incidents");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// The service an incident's newest ranking puts first, once a ranking covers all its
/// `members`.
fn ranked_first(server: &Sextant, token: &str, id: u64, members: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rca = get(server, token, &format!("/api/v1/incidents/{id}/rca"));
        let covered = rca["ranking"]["basis"]["members"].as_u64() == Some(members as u64);
        if let (true, Some(first)) = (covered, rca["ranking"]["services"][0]["service"].as_str()) {
            return first.to_owned();
        }
        assert!(Instant::now() < deadline, "incident {id} not ranked: {rca}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The fault a scenario fingerprint belongs to (`fault/title/service/instance`).
fn fault_of(fingerprint: &str) -> &str {
    fingerprint.split('/').next().unwrap()
}

#[test]
fn the_scenario_suite_through_the_api_gives_few_pure_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files = scenario_files();
    let tokens: Vec<String> = files
        .iter()
        .map(|p| {
            create_token(
                &data,
                &format!("sc-{}", p.file_stem().unwrap().to_string_lossy()),
                "editor",
            )
        })
        .collect();
    // Alerts only (the detectors would add anomalies of the scenario's metrics, which have
    // no fault to score them by), and rankings as soon as the evidence changes.
    let config = "[anomaly]\nenabled = false\n[topology]\nderived_series = false\n[rca]\ncheck_seconds = 1\n";
    let server = Sextant::start_with_config(&data, Some(config));
    let (mut sent, mut incidents_total) = (0usize, 0usize);
    let (mut ranked, mut ranked_right) = (0usize, 0usize);
    let mut failures = Vec::new();
    for (path, token) in files.iter().zip(&tokens) {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let scenario = Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        // Times start a minute ago: the scenario runs into the future, so nothing resolves
        // while it is being sent (resolution is checked offline and in its own test).
        let base = now_ns() - 60 * NANOS;
        send_traces(
            &server,
            token,
            &traces_json(&scenario.edge_pairs(), &[], base, 0),
        );
        for (service, name, points) in scenario.metric_series(base) {
            send_metrics(&server, token, &gauge_json(&service, &name, &points));
        }
        for silence in scenario.silences(base) {
            post(
                &server,
                token,
                "/api/v1/silences",
                &json!({
                    "matchers": silence.matchers.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                    "starts_at": silence.starts_at.to_string(),
                    "ends_at": silence.ends_at.to_string(),
                    "comment": silence.comment,
                }),
            );
        }
        for rule in scenario.inhibitions() {
            post(
                &server,
                token,
                "/api/v1/inhibit_rules",
                &json!({
                    "source": rule.source.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                    "target": rule.target.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                    "equal": rule.equal,
                }),
            );
        }
        let notifications = scenario.notifications(base);
        for chunk in notifications.chunks(500) {
            let events: Vec<Value> = chunk
                .iter()
                .map(|n| {
                    json!({
                        "source": "scenario",
                        "service": n.signal.service,
                        "severity": n.signal.severity,
                        "title": n.signal.title,
                        "labels": n.signal.labels,
                        "fingerprint": n.signal.fingerprint,
                        "status": if n.signal.resolved { "resolved" } else { "firing" },
                        "time": n.signal.time.to_string(),
                    })
                })
                .collect();
            let answer = post(&server, token, "/api/v1/events", &Value::Array(events));
            assert_eq!(answer["accepted"].as_u64(), Some(chunk.len() as u64));
        }
        wait_for_signals(&server, token, notifications.len());

        let list = get(&server, token, "/api/v1/incidents?limit=1000");
        let incidents = list["incidents"].as_array().unwrap();
        let mut fault_incidents: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        let mut min_purity = 1.0f64;
        for summary in incidents {
            let id = summary["id"].as_u64().unwrap();
            let incident = get(&server, token, &format!("/api/v1/incidents/{id}"));
            let mut per_fault: BTreeMap<&str, u64> = BTreeMap::new();
            for member in incident["members"].as_array().unwrap() {
                let fault = fault_of(member["fingerprint"].as_str().unwrap());
                *per_fault.entry(fault).or_default() += member["count"].as_u64().unwrap();
                fault_incidents
                    .entry(fault.to_owned())
                    .or_default()
                    .insert(id);
                assert!(
                    member["reason"]["text"]
                        .as_str()
                        .is_some_and(|t| !t.is_empty()),
                    "{member}"
                );
            }
            let total: u64 = per_fault.values().sum();
            let purity = *per_fault.values().max().unwrap() as f64 / total as f64;
            min_purity = min_purity.min(purity);
            let main_fault = per_fault
                .iter()
                .max_by_key(|(_, n)| **n)
                .unwrap()
                .0
                .to_string();
            if let Some(cause) = scenario.expect.root_causes.get(&main_fault) {
                let members = incident["members"].as_array().unwrap().len();
                let first = ranked_first(&server, token, id, members);
                ranked += 1;
                if first == *cause {
                    ranked_right += 1;
                } else {
                    println!(
                        "{name}: incident {id} ({main_fault}) ranks {first} first, not {cause}"
                    );
                }
            }
        }
        for (fault, ids) in &fault_incidents {
            if scenario.expect.suppressed.contains(fault) {
                failures.push(format!(
                    "{name}: suppressed fault {fault} in incidents {ids:?}"
                ));
            } else if ids.len() > 1 {
                failures.push(format!("{name}: fault {fault} split across {ids:?}"));
            }
        }
        if min_purity < 1.0 {
            failures.push(format!(
                "{name}: an incident mixes faults (purity {min_purity:.3})"
            ));
        }
        if let Some(expected) = scenario.expect.incidents
            && expected != incidents.len()
        {
            failures.push(format!(
                "{name}: {} incidents, expected {expected}",
                incidents.len()
            ));
        }
        let stats = &list["stats"];
        assert_eq!(
            stats["signals"].as_u64(),
            Some(notifications.len() as u64),
            "{name}: {stats}"
        );
        println!(
            "{name:<16} {:>5} notifications {:>2} incidents, suppressed {}, reduction {:.1}%",
            notifications.len(),
            incidents.len(),
            stats["suppressed"],
            100.0 * (1.0 - incidents.len() as f64 / notifications.len() as f64)
        );
        sent += notifications.len();
        incidents_total += incidents.len();
    }
    let reduction = 1.0 - incidents_total as f64 / sent as f64;
    println!(
        "all: {sent} notifications, {incidents_total} incidents, reduction {:.2}%",
        100.0 * reduction
    );
    let right = ranked_right as f64 / ranked.max(1) as f64;
    println!(
        "root cause ranked first in {ranked_right} of {ranked} incidents ({:.0}%)",
        100.0 * right
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(reduction >= 0.95, "{reduction}");
    assert!(ranked >= 10, "{ranked} incidents with a known root cause");
    assert!(
        right >= 0.9,
        "root cause first in {ranked_right} of {ranked}"
    );

    // A tenant's series show to its own tokens.
    let storm = files
        .iter()
        .position(|p| p.file_stem().unwrap() == "storm")
        .expect("the storm scenario");
    let metrics = agent()
        .get(&server.url("/metrics"))
        .header("Authorization", &format!("Bearer {}", tokens[storm]))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("sextant_alert_reduction_ratio{tenant=\"sc-storm\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sextant_alerts_received_total{tenant=\"sc-storm\"} 2052"),
        "{metrics}"
    );
    server.stop();
}

/// An Alertmanager webhook payload (version 4) as Alertmanager sends it.
fn webhook(status: &str, alerts: &[(&str, &str, &str, &str)]) -> Value {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"x\"}", "truncatedAlerts": 0,
        "status": status, "receiver": "sextant", "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": alerts.iter().map(|(status, name, service, fingerprint)| json!({
            "status": status,
            "labels": {"alertname": name, "service": service, "severity": "critical"},
            "annotations": {"summary": format!("{name} on {service}")},
            "startsAt": "2026-12-01T10:00:00.000Z",
            "endsAt": if *status == "resolved" { "2026-12-01T10:05:00.000Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": fingerprint,
        })).collect::<Vec<_>>(),
    })
}

#[test]
fn webhooks_deduplicate_incidents_resolve_and_engineers_act_on_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let editor = create_token(&data, "ops", "editor");
    let viewer = create_token(&data, "ops", "viewer");
    let ingest = create_token(&data, "ops", "ingest");
    let stranger = create_token(&data, "other", "admin");
    let admin = create_token(&data, "ops", "admin");
    // Incidents resolve two seconds after their members do, so the test sees it happen.
    let config = "[incidents]\nresolve_quiet_seconds = 2\n";
    let server = Sextant::start_with_config(&data, Some(config));

    // Bad payloads are refused whole, with the reason.
    for (body, reason) in [
        (json!({"version": "3", "alerts": []}), "version 4"),
        (json!({"version": "4"}), "alerts"),
        (
            webhook("firing", &[("burning", "A", "cart", "f1")]),
            "status",
        ),
        (
            json!({"version": "4", "alerts": [{"status": "firing", "labels": {}}]}),
            "alertname",
        ),
    ] {
        let (status, answer) = call(
            &server,
            &ingest,
            "POST",
            "/api/v1/alertmanager",
            Some(&body),
        );
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(reason), "{reason}: {answer}");
    }
    let (status, answer) = call(
        &server,
        &ingest,
        "POST",
        "/api/v1/events",
        Some(&json!({"title": ""})),
    );
    assert_eq!(
        (status, answer.to_string().contains("title")),
        (400, true),
        "{answer}"
    );
    let (status, _) = call(
        &server,
        &viewer,
        "POST",
        "/api/v1/events",
        Some(&json!({"title": "x"})),
    );
    assert_eq!(status, 403, "a viewer may not send alerts");

    // Two unrelated alerts (no map, different services and labels), each sent three times.
    for _ in 0..3 {
        let answer = post(
            &server,
            &ingest,
            "/api/v1/alertmanager",
            &webhook(
                "firing",
                &[
                    ("firing", "DiskFull", "cart", "f1"),
                    ("firing", "CertExpiry", "payment", "f2"),
                ],
            ),
        );
        assert_eq!(answer["accepted"], 2);
    }
    wait_for_signals(&server, &editor, 6);
    let list = get(&server, &editor, "/api/v1/incidents");
    assert_eq!(list["incidents"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list["stats"]["signals"], 6);
    assert_eq!(list["stats"]["deduplicated"], 4);
    let (status, answer) = crate::support::sql(
        &server,
        &editor,
        "SELECT count, decision FROM events ORDER BY title",
    );
    assert_eq!(status, 200);
    assert_eq!(answer["rows"][0]["count"], 3, "{answer}");
    assert!(
        answer["rows"][0]["decision"]
            .as_str()
            .unwrap()
            .contains("deduplicated"),
        "{answer}"
    );
    let (status, rows) = crate::support::sql(
        &server,
        &editor,
        "SELECT id, status, members, notifications, services FROM incidents ORDER BY id",
    );
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows["rows"].as_array().unwrap().len(), 2, "{rows}");
    assert_eq!(rows["rows"][0]["notifications"], 3, "{rows}");
    assert_eq!(rows["rows"][0]["services"], "[\"cart\"]", "{rows}");
    let (_, none) = crate::support::sql(&server, &stranger, "SELECT count(*) AS n FROM incidents");
    assert_eq!(none["rows"][0]["n"], 0, "{none}");
    let stranger_list = get(&server, &stranger, "/api/v1/incidents");
    assert_eq!(
        stranger_list["incidents"],
        json!([]),
        "tenants are isolated"
    );
    let ids: Vec<u64> = list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    let (a, b) = (ids[1], ids[0]);

    // Actions: refused without the role, on another tenant, on a missing incident.
    let (status, _) = call(
        &server,
        &viewer,
        "POST",
        &format!("/api/v1/incidents/{a}/ack"),
        None,
    );
    assert_eq!(status, 403);
    let (status, _) = call(
        &server,
        &stranger,
        "POST",
        &format!("/api/v1/incidents/{a}/ack"),
        None,
    );
    assert_eq!(status, 404);
    let (status, _) = call(&server, &editor, "POST", "/api/v1/incidents/999/ack", None);
    assert_eq!(status, 404);
    let (status, _) = call(
        &server,
        &editor,
        "POST",
        &format!("/api/v1/incidents/{a}/explode"),
        None,
    );
    assert_eq!(status, 404);

    let acked = post(
        &server,
        &editor,
        &format!("/api/v1/incidents/{a}/ack"),
        &json!({"comment": "on it"}),
    );
    assert_eq!(acked["incidents"][0]["status"], "acknowledged");
    let merged = post(
        &server,
        &editor,
        &format!("/api/v1/incidents/{a}/merge"),
        &json!({"from": b, "comment": "one change"}),
    );
    assert_eq!(
        merged["incidents"][0]["members"].as_array().unwrap().len(),
        2
    );
    assert_eq!(merged["incidents"][1]["status"], "merged");
    let (status, answer) = call(
        &server,
        &editor,
        "POST",
        &format!("/api/v1/incidents/{b}/ack"),
        None,
    );
    assert_eq!(status, 409, "a merged incident takes no action: {answer}");
    let split = post(
        &server,
        &editor,
        &format!("/api/v1/incidents/{a}/split"),
        &json!({"fingerprints": ["alertmanager:f2"], "comment": "separate"}),
    );
    let c = split["incidents"][1]["id"].as_u64().unwrap();
    assert_eq!(
        split["incidents"][1]["members"][0]["reason"]["rule"],
        "split"
    );

    // f1 resolves: its incident resolves once it has been quiet for two seconds.
    post(
        &server,
        &ingest,
        "/api/v1/alertmanager",
        &webhook("resolved", &[("resolved", "DiskFull", "cart", "f1")]),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let incident = get(&server, &editor, &format!("/api/v1/incidents/{a}"));
        if incident["status"] == "resolved" {
            let actions: Vec<&str> = incident["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["action"].as_str().unwrap())
                .collect();
            assert_eq!(
                actions,
                [
                    "opened",
                    "acknowledged",
                    "merged",
                    "split",
                    "resolved_member",
                    "resolved"
                ],
                "{incident}"
            );
            assert_eq!(incident["timeline"][1]["detail"], "on it");
            let actor = incident["timeline"][1]["actor"].as_str().unwrap();
            assert!(
                !actor.is_empty() && actor != "sextant",
                "the token's id: {actor}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{incident}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let resolved = post(
        &server,
        &editor,
        &format!("/api/v1/incidents/{c}/resolve"),
        &json!({"comment": "renewed"}),
    );
    assert_eq!(resolved["incidents"][0]["status"], "resolved");
    let (status, _) = call(
        &server,
        &editor,
        "POST",
        &format!("/api/v1/incidents/{c}/resolve"),
        None,
    );
    assert_eq!(status, 409);

    // Rules: bad matchers are refused; a silence is listed and deleted.
    let (status, answer) = call(
        &server,
        &editor,
        "POST",
        "/api/v1/silences",
        Some(&json!({"matchers": ["service=~\"(\""], "ends_at": "2099-01-01T00:00:00Z"})),
    );
    assert_eq!(status, 400);
    assert!(
        answer.to_string().contains("regular expression"),
        "{answer}"
    );
    let (status, _) = call(
        &server,
        &viewer,
        "POST",
        "/api/v1/silences",
        Some(&json!({"matchers": ["a=b"], "ends_at": "2099-01-01T00:00:00Z"})),
    );
    assert_eq!(status, 403);
    let silence = post(
        &server,
        &editor,
        "/api/v1/silences",
        &json!({"matchers": ["service=\"cart\""], "ends_at": "2099-01-01T00:00:00Z"}),
    );
    let id = silence["id"].as_str().unwrap();
    assert_eq!(
        get(&server, &viewer, "/api/v1/silences")["silences"][0]["active"],
        true
    );
    // A silenced alert that keeps firing is recorded as silenced once, not at every repeat.
    let send = |event: Value| {
        let (status, answer) = call(&server, &ingest, "POST", "/api/v1/events", Some(&event));
        assert!((200..300).contains(&status), "{answer}");
    };
    for _ in 0..3 {
        send(json!({"title": "DiskSpaceLow", "service": "cart", "fingerprint": "disk-cart"}));
    }
    // Signals are correlated in order: once a later one has opened its incident, the three
    // were decided.
    send(json!({"title": "Marker", "service": "marker", "fingerprint": "marker"}));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get(&server, &admin, "/api/v1/audit?kind=correlation.opened")["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["detail"]["title"] == "Marker")
    {
        assert!(Instant::now() < deadline, "the marker was never correlated");
        std::thread::sleep(Duration::from_millis(100));
    }
    let silenced = get(&server, &admin, "/api/v1/audit?kind=correlation.silenced");
    assert_eq!(
        silenced["records"].as_array().unwrap().len(),
        1,
        "{silenced}"
    );
    send(
        json!({"title": "Marker", "service": "marker", "fingerprint": "marker", "status": "resolved"}),
    );
    while get(&server, &editor, "/api/v1/incidents?status=open")["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["title"] == "Marker")
    {
        assert!(
            Instant::now() < deadline,
            "the marker's incident never resolved"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(silenced["records"][0]["detail"]["title"], "DiskSpaceLow");
    assert_eq!(
        call(
            &server,
            &stranger,
            "DELETE",
            &format!("/api/v1/silences/{id}"),
            None
        )
        .0,
        404
    );
    assert_eq!(
        call(
            &server,
            &editor,
            "DELETE",
            &format!("/api/v1/silences/{id}"),
            None
        )
        .0,
        200
    );
    assert_eq!(
        get(&server, &viewer, "/api/v1/silences")["silences"],
        json!([])
    );

    // Every action is in the audit trail with who did it; only an admin reads it.
    assert_eq!(call(&server, &editor, "GET", "/api/v1/audit", None).0, 403);
    let trail = get(&server, &admin, "/api/v1/audit?limit=1000");
    let kinds: Vec<&str> = trail["records"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    // The correlator's groupings are there too, before the engineers' actions.
    let opened = kinds.iter().filter(|k| **k == "correlation.opened").count();
    // (The two alerts' incidents, and the marker's after the silence.)
    assert_eq!(opened, 3, "{kinds:?}");
    // (Token creation and the retention seen at start are the tenant's admin records.)
    let people: Vec<&str> = kinds
        .into_iter()
        .filter(|k| {
            !k.starts_with("correlation.") && !k.starts_with("token.") && *k != "retention.set"
        })
        .collect();
    assert_eq!(
        people,
        [
            "incident.ack",
            "incident.merge",
            "incident.split",
            "incident.resolve",
            "silence.create",
            "silence.delete"
        ],
        "{trail}"
    );
    let ack = trail["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "incident.ack")
        .unwrap();
    assert_eq!(ack["detail"]["comment"], "on it", "{trail}");
    let grouped = trail["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "correlation.opened")
        .unwrap();
    assert_eq!(grouped["actor"], "sextant.correlator");
    assert!(
        grouped["detail"]["decision"]["reason"]["text"].is_string(),
        "{grouped}"
    );
    assert!(
        trail["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["actor"] != "" && r["actor"] != "sextant")
    );
    let incidents_only = get(&server, &admin, "/api/v1/audit?kind=incident");
    assert_eq!(incidents_only["records"].as_array().unwrap().len(), 4);
    // Filters by who and by what; an unknown kind is a mistake, not an empty trail.
    let by_correlator = get(&server, &admin, "/api/v1/audit?actor=sextant.correlator");
    assert!(
        by_correlator["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["actor"] == "sextant.correlator"),
        "{by_correlator}"
    );
    let subject = ack["subject"].as_str().unwrap();
    let about = get(
        &server,
        &admin,
        &format!("/api/v1/audit?kind=incident&subject={subject}"),
    );
    assert!(
        !about["records"].as_array().unwrap().is_empty()
            && about["records"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["subject"] == subject),
        "{about}"
    );
    let (status, answer) = call(&server, &admin, "GET", "/api/v1/audit?kind=bogus", None);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("`bogus`"),
        "{answer}"
    );
    let foreign = get(&server, &stranger, "/api/v1/audit");
    let foreign_kinds: Vec<&str> = foreign["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(
        foreign_kinds
            .iter()
            .all(|k| *k == "token.create" || *k == "retention.set"),
        "another tenant sees only its own admin records: {foreign}"
    );

    // The state survives a restart: the next repeat of f2 follows it into incident c's
    // successor, not into a resolved one.
    server.stop();
    let server = Sextant::start_with_config(&data, Some(config));
    let list = get(&server, &editor, "/api/v1/incidents");
    // (Seven alert notifications, the three silenced repeats and the marker's two.)
    assert_eq!(list["stats"]["signals"], 12, "{list}");
    post(
        &server,
        &ingest,
        "/api/v1/alertmanager",
        &webhook("firing", &[("firing", "CertExpiry", "payment", "f2")]),
    );
    wait_for_signals(&server, &editor, 13);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&server, &editor, "/api/v1/incidents?status=open")["incidents"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(200));
    }
    let open = get(&server, &editor, "/api/v1/incidents?status=open");
    assert!(open["incidents"][0]["id"].as_u64().unwrap() > c, "{open}");
    server.stop();
}

#[test]
fn the_python_sdk_s_multi_service_traces_make_the_expected_edges() {
    let Some(python) = crate::otlp_sdk::python_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = create_token(&data, "sdk", "editor");
    let server = Sextant::start(&data);
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/send_service_trace.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .env("SEXTANT_ENDPOINT", format!("http://{}", server.addr))
        .env("SEXTANT_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let map = get(&server, &token, "/api/v1/topology");
    let edges = edge_traffic(&map);
    let pairs: Vec<(&str, &str)> = edges
        .keys()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("checkout", "payment"),
            ("checkout", "postgresql"),
            ("frontend", "checkout")
        ],
        "{map}"
    );
    let pay = &edges[&("checkout".to_string(), "payment".to_string())];
    assert_eq!(
        (pay["requests"].as_u64(), pay["errors"].as_u64()),
        (Some(20), Some(4)),
        "{pay}"
    );
    assert!((pay["error_rate"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    assert!(pay["request_rate"].as_f64().unwrap() > 0.0);
    let db = &edges[&("checkout".to_string(), "postgresql".to_string())];
    assert_eq!(db["requests"].as_u64(), Some(20), "{db}");
    let kinds: BTreeMap<&str, &str> = map["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("checkout", "service"),
            ("frontend", "service"),
            ("payment", "service"),
            ("postgresql", "external")
        ]),
        "{map}"
    );
    server.stop();
}

/// The Alertmanager binary (Debian's `prometheus-alertmanager`), or `None` after printing why
/// the test is skipped. Panics under CI, which installs it.
fn alertmanager_or_skip() -> Option<PathBuf> {
    let found = ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    match found {
        Some(path) => Some(path),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI needs prometheus-alertmanager (.ci/run installs it)")
        }
        None => {
            println!("skipping: prometheus-alertmanager is not installed");
            None
        }
    }
}

fn rfc3339(unix_nanos: i64) -> String {
    let seconds = unix_nanos / NANOS;
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[test]
fn alerts_posted_to_the_real_alertmanager_arrive_as_events_and_are_grouped() {
    let Some(alertmanager) = alertmanager_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = create_token(&data, "ops", "editor");
    let server = Sextant::start(&data);
    send_traces(
        &server,
        &token,
        &traces_json(&[("frontend", "cart"), ("cart", "redis")], &[], now_ns(), 0),
    );

    let port = free_port();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: sextant\n  group_by: ['alertname', 'service']\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n- name: sextant\n  webhook_configs:\n  \
             - url: http://{}/api/v1/alertmanager\n    send_resolved: true\n    http_config:\n      \
             authorization:\n        type: Bearer\n        credentials: {token}\n",
            server.addr
        ),
    )
    .unwrap();
    let child = Kill(
        std::process::Command::new(alertmanager)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let am = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent()
        .get(&format!("{am}/-/ready"))
        .call()
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "alertmanager did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let alerts = |ends: Option<i64>| {
        let starts = rfc3339(now_ns() - 120 * NANOS);
        let mut list = Vec::new();
        for (name, service) in [("RedisDown", "redis"), ("HighErrorRate", "cart")] {
            let mut alert = json!({
                "labels": {"alertname": name, "service": service, "severity": "critical"},
                "annotations": {"summary": format!("{name} on {service}")},
                "startsAt": starts,
                "generatorURL": "http://prometheus.example/graph",
            });
            if let Some(ends) = ends {
                alert["endsAt"] = json!(rfc3339(ends));
            }
            list.push(alert);
        }
        Value::Array(list)
    };
    let response = agent()
        .post(&format!("{am}/api/v2/alerts"))
        .header("Content-Type", "application/json")
        .send(alerts(None).to_string().as_bytes())
        .unwrap();
    assert_eq!(response.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(60);
    let incident = loop {
        let list = get(&server, &token, "/api/v1/incidents");
        let incidents = list["incidents"].as_array().unwrap();
        if incidents.len() == 1 && incidents[0]["members"] == 2 {
            let id = incidents[0]["id"].as_u64().unwrap();
            break get(&server, &token, &format!("/api/v1/incidents/{id}"));
        }
        assert!(
            incidents.len() <= 1,
            "the two alerts belong together: {list}"
        );
        assert!(Instant::now() < deadline, "{list}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let members = incident["members"].as_array().unwrap();
    assert!(
        members.iter().all(|m| m["source"] == "alertmanager"),
        "{incident}"
    );
    let joined = members
        .iter()
        .find(|m| m["reason"]["rule"] == "topology")
        .expect("one joined by the map");
    let text = joined["reason"]["text"].as_str().unwrap();
    assert!(
        text.contains("cart – redis") || text.contains("redis – cart"),
        "{joined}"
    );
    let (status, events) =
        crate::support::sql(&server, &token, "SELECT kind, source, details FROM events");
    assert_eq!(status, 200);
    assert_eq!(events["rows"].as_array().unwrap().len(), 2, "{events}");
    assert!(
        events["rows"][0]["details"]
            .as_str()
            .unwrap()
            .contains("prometheus.example"),
        "{events}"
    );

    // Resolving them in Alertmanager sends `resolved`; Sextant marks the members resolved.
    let response = agent()
        .post(&format!("{am}/api/v2/alerts"))
        .header("Content-Type", "application/json")
        .send(alerts(Some(now_ns() - NANOS)).to_string().as_bytes())
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = incident["id"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let incident = get(&server, &token, &format!("/api/v1/incidents/{id}"));
        if incident["firing"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{incident}");
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(child);
    server.stop();
}

#[test]
fn each_service_and_edge_gets_derived_series_stored_with_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = create_token(&data, "shop", "editor");
    let config = "[topology]\nderived_step_seconds = 2\nderived_lag_seconds = 1\n";
    let server = Sextant::start_with_config(&data, Some(config));
    send_traces(
        &server,
        &token,
        &traces_json(&[("frontend", "cart")], &[], now_ns(), 3),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let (status, answer) = crate::support::sql(
            &server,
            &token,
            "SELECT name, service, value, attributes['caller'] AS caller FROM metrics \
             WHERE name LIKE 'sextant.%' ORDER BY name, service",
        );
        assert_eq!(status, 200, "{answer}");
        let rows = answer["rows"].as_array().unwrap().clone();
        if rows.len() >= 15 {
            break rows;
        }
        assert!(Instant::now() < deadline, "{answer}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let value = |name: &str, service: &str| {
        rows.iter()
            .find(|r| r["name"] == name && r["service"] == service)
            .unwrap_or_else(|| panic!("{name} of {service}: {rows:?}"))["value"]
            .as_f64()
            .unwrap()
    };
    // Ten calls in a two-second step, three of them failed, each 20 ms long.
    assert_eq!(value("sextant.edge.request_rate", "cart"), 5.0);
    assert!((value("sextant.edge.error_rate", "cart") - 0.3).abs() < 1e-9);
    assert!((value("sextant.edge.duration_p95", "cart") - 20.0).abs() < 0.5);
    assert_eq!(value("sextant.service.request_rate", "cart"), 5.0);
    assert_eq!(value("sextant.service.request_rate", "frontend"), 5.0);
    assert_eq!(value("sextant.service.error_rate", "frontend"), 0.0);
    let edge = rows
        .iter()
        .find(|r| r["name"] == "sextant.edge.request_rate")
        .unwrap();
    assert_eq!(edge["caller"], "frontend", "{edge}");
    server.stop();
}

/// An OTLP/JSON gauge request: one series `name` of `service`, one point per (ns, value).
fn gauge_json(service: &str, name: &str, points: &[(i64, f64)]) -> Value {
    json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeMetrics": [{"metrics": [{"name": name, "gauge": {"dataPoints": points.iter().map(|(t, v)| json!({
            "timeUnixNano": t.to_string(), "asDouble": v,
        })).collect::<Vec<_>>()}}]}],
    }]})
}

fn send_metrics(server: &Sextant, token: &str, body: &Value) {
    let response = agent()
        .post(&server.url("/v1/metrics"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// A minute's noise in [-1, 1), the same on every run.
fn wobble(i: i64) -> f64 {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5e47;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// A series one point a minute from 70 minutes ago until now: `normal` give or take
/// `noise`, and `fault` in the last `fault_minutes`.
fn series(normal: f64, noise: f64, fault: f64, fault_minutes: i64, now: i64) -> Vec<(i64, f64)> {
    (0..=70)
        .map(|m| {
            let t = now - (70 - m) * 60 * NANOS;
            let base = if 70 - m < fault_minutes {
                fault
            } else {
                normal
            };
            (t, base + noise * wobble(m * 7 + normal as i64))
        })
        .collect()
}

#[test]
fn incidents_are_ranked_with_the_callee_that_explains_its_callers_first() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = create_token(&data, "shop", "editor");
    let config = "[rca]\ncheck_seconds = 1\n[topology]\nderived_series = false\n";
    let server = Sextant::start_with_config(&data, Some(config));
    let now = now_ns();
    send_traces(
        &server,
        &token,
        &traces_json(
            &[("frontend", "cart"), ("cart", "redis")],
            &[],
            now - 120 * NANOS,
            0,
        ),
    );
    // redis's cpu saturates; its callers' latency follows, the frontend's the most; cart's
    // cpu stays as it was.
    for (service, name, normal, noise, fault) in [
        ("redis", "process.cpu.utilization", 20.0, 1.0, 95.0),
        ("cart", "http.server.request.latency_p99", 50.0, 3.0, 400.0),
        (
            "frontend",
            "http.server.request.latency_p99",
            80.0,
            5.0,
            900.0,
        ),
        ("cart", "process.cpu.utilization", 30.0, 2.0, 31.0),
    ] {
        send_metrics(
            &server,
            &token,
            &gauge_json(service, name, &series(normal, noise, fault, 6, now)),
        );
    }
    // redis logs a new error in the incident (after an hour of the same info line).
    let log = |minutes_ago: i64, severity: i32, body: &str| {
        json!({"timeUnixNano": (now - minutes_ago * 60 * NANOS).to_string(), "severityNumber": severity,
               "body": {"stringValue": body}})
    };
    let mut records: Vec<Value> = (10..70)
        .map(|m| log(m, 9, &format!("background save took {m} ms")))
        .collect();
    records.extend((0..4).map(|m| {
        log(
            m,
            17,
            &format!("OOM command not allowed when used memory > maxmemory (client {m})"),
        )
    }));
    let logs = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "redis"}}]},
        "scopeLogs": [{"logRecords": records}],
    }]});
    let response = agent()
        .post(&server.url("/v1/logs"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(logs.to_string().as_bytes())
        .unwrap();
    assert_eq!(response.status(), 200);
    let alerts: Vec<Value> = [
        ("RedisSlow", "redis"),
        ("HighLatency", "cart"),
        ("HighLatency", "frontend"),
    ]
    .iter()
    .map(|(title, service)| {
        json!({"title": title, "service": service, "severity": "critical",
                   "time": (now - 180 * NANOS).to_string()})
    })
    .collect();
    post(&server, &token, "/api/v1/events", &Value::Array(alerts));
    // The detectors find the metric jumps too: their anomalies join the same incident.
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&server, &token, "/api/v1/incidents")["stats"]["signals"]
        .as_u64()
        .unwrap()
        < 3
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(200));
    }
    let list = get(&server, &token, "/api/v1/incidents");
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1, "{list}");
    let id = list["incidents"][0]["id"].as_u64().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let incident = loop {
        let incident = get(&server, &token, &format!("/api/v1/incidents/{id}"));
        if !incident["root_cause"].is_null() {
            break incident;
        }
        assert!(Instant::now() < deadline, "no ranking: {incident}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let ranking = &incident["root_cause"];
    let first = &ranking["services"][0];
    assert_eq!(first["service"], "redis", "{ranking:#}");
    assert_eq!(first["metric"], "process.cpu.utilization", "{first}");
    let explains = &first["evidence"]["topology"]["explains"];
    assert_eq!(*explains, json!(["cart", "frontend"]), "{first}");
    assert!(
        first["sentence"].as_str().unwrap().starts_with("#1 redis"),
        "{first}"
    );
    let log = &first["evidence"]["logs"][0];
    assert_eq!(log["new"], true, "{first}");
    assert!(
        log["template"]
            .as_str()
            .unwrap()
            .starts_with("OOM command not allowed"),
        "{log}"
    );
    assert!(
        first["sentence"].as_str().unwrap().contains("is new"),
        "{first}"
    );
    let anomalies = first["evidence"]["anomalies"].as_array().unwrap();
    assert!(
        !anomalies.is_empty() && anomalies.iter().all(|a| a["event_id"].is_string()),
        "{first}"
    );
    assert_eq!(ranking["version"], 1);
    let frontend = ranking["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "frontend")
        .unwrap();
    assert!(
        frontend["evidence"]["topology"]["explained_by"]
            .as_array()
            .unwrap()
            .contains(&json!("redis")),
        "{frontend}"
    );

    // New evidence, a new version; the old one is kept.
    post(
        &server,
        &token,
        "/api/v1/events",
        &json!({"title": "CartErrors", "service": "cart", "time": now.to_string()}),
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let rca = get(
            &server,
            &token,
            &format!("/api/v1/incidents/{id}/rca?versions=10"),
        );
        let versions = rca["versions"].as_array().unwrap();
        if versions.len() >= 2 {
            assert_eq!(rca["ranking"]["version"], versions.len());
            assert_eq!(versions.last().unwrap()["version"], 1);
            assert_eq!(rca["ranking"]["services"][0]["service"], "redis", "{rca}");
            break;
        }
        assert!(Instant::now() < deadline, "no second version: {rca}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let (status, _) = call(&server, &token, "GET", "/api/v1/incidents/999/rca", None);
    assert_eq!(status, 404);
    let (status, _) = call(
        &server,
        &token,
        "GET",
        &format!("/api/v1/incidents/{id}/rca?versions=0"),
        None,
    );
    assert_eq!(status, 400);
    server.stop();
}
