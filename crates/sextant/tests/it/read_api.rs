//! The read endpoints (`/api/v1/logs/search`, `/api/v1/metrics/query_range`,
//! `/api/v1/traces/{id}`) through the real binary: search grammar, paging, aggregation, trace
//! trees, parameter errors, and that each answer holds only the token's tenant's rows.

use serde_json::{Value, json};

use crate::support::{Sextant, agent, create_token};

/// The trace id both tenants use.
const TRACE: &str = "5b8efff798038103d269b633813fc60c";
/// Logs and spans start here (Unix seconds).
const T0: u64 = 1_700_000_000;
/// Metrics start here: a multiple of 60 s, so the steps below start with it.
const M0: u64 = 1_700_000_040;

/// Unix seconds as the API writes times by default.
fn rfc3339(seconds: u64) -> String {
    sextant_model::time::format_rfc3339(seconds as i64 * 1_000_000_000)
}
/// A range around all of it.
const RANGE: [(&str, &str); 2] = [("from", "1699990000"), ("to", "2023-11-14T23:00:00Z")];

fn resource(service: &str) -> String {
    format!(r#"{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}}"#)
}

fn attributes(pairs: &[(&str, &str)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!(r#"{{"key":"{k}","value":{{"stringValue":"{v}"}}}}"#))
        .collect();
    format!("[{}]", items.join(","))
}

fn log(offset: u64, severity: &str, body: &str, attrs: &[(&str, &str)], extra: &str) -> String {
    format!(
        r#"{{"timeUnixNano":"{}","severityText":"{severity}","severityNumber":9,
          "body":{{"stringValue":"{body}"}},"attributes":{}{extra}}}"#,
        (T0 + offset) * 1_000_000_000,
        attributes(attrs)
    )
}

fn span(id: &str, parent: &str, name: &str, start_ms: u64, end_ms: u64) -> String {
    let parent = if parent.is_empty() {
        String::new()
    } else {
        format!(r#""parentSpanId":"{parent}","#)
    };
    format!(
        r#"{{"traceId":"{TRACE}","spanId":"{id}",{parent}"name":"{name}",
          "kind":2,"startTimeUnixNano":"{}","endTimeUnixNano":"{}",
          "attributes":{}}}"#,
        T0 * 1_000_000_000 + start_ms * 1_000_000,
        T0 * 1_000_000_000 + end_ms * 1_000_000,
        attributes(&[("span.name", name)])
    )
}

/// Both tenants send the same services, trace id and metric names; bodies and span names
/// start with the tenant, and metric values differ.
fn send_tenant_data(server: &Sextant, token: &str, tenant: &str) {
    let checkout_logs = [
        log(
            0,
            "INFO",
            &format!("{tenant} order placed"),
            &[("user", "ada")],
            &format!(r#","traceId":"{TRACE}","spanId":"eee19b7ec3c1b174""#),
        ),
        log(
            1,
            "ERROR",
            &format!("{tenant} Payment timeout after 30s"),
            &[("user", "bob")],
            "",
        ),
        log(4, "INFO", &format!("{tenant} health check ok"), &[], ""),
        log(4, "INFO", &format!("{tenant} cache warm"), &[], ""),
    ];
    let payments_logs = [
        log(
            2,
            "Warn",
            &format!("{tenant} retrying payment"),
            &[("user", "ada"), ("region", "eu")],
            "",
        ),
        log(
            3,
            "error",
            &format!("{tenant} connection reset by peer"),
            &[("region", "us")],
            "",
        ),
    ];
    let logs = format!(
        r#"{{"resourceLogs":[
          {{"resource":{},"scopeLogs":[{{"logRecords":[{}]}}]}},
          {{"resource":{},"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        resource("checkout"),
        checkout_logs.join(","),
        resource("payments"),
        payments_logs.join(",")
    );
    let spans = format!(
        r#"{{"resourceSpans":[
          {{"resource":{},"scopeSpans":[{{"spans":[{},{},{}]}}]}},
          {{"resource":{},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        resource("checkout"),
        span(
            "00000000000000a1",
            "",
            &format!("{tenant} GET /checkout"),
            0,
            900
        ),
        span("00000000000000a3", "00000000000000a1", "render", 600, 800),
        span("00000000000000b1", "ffffffffffffffff", "orphan", 950, 990),
        resource("payments"),
        span("00000000000000a2", "00000000000000a1", "charge", 100, 500),
    );
    // Beta's counter grows twice as fast; its latencies all sit in the (5, 10] bucket.
    let scale = if tenant == "alpha" { 1 } else { 2 };
    let counter_point = |offset: u64, value: u64| {
        format!(
            r#"{{"asInt":"{}","timeUnixNano":"{}","startTimeUnixNano":"{}","attributes":{}}}"#,
            value * scale,
            (M0 + offset) * 1_000_000_000,
            M0 * 1_000_000_000,
            attributes(&[("route", "/a")])
        )
    };
    let counts = if tenant == "alpha" {
        r#"["20","40","40","0"]"#
    } else {
        r#"["0","0","100","0"]"#
    };
    let metrics = format!(
        r#"{{"resourceMetrics":[{{"resource":{},"scopeMetrics":[{{"metrics":[
          {{"name":"requests","sum":{{"aggregationTemporality":2,"isMonotonic":true,
            "dataPoints":[{}]}}}},
          {{"name":"latency","histogram":{{"aggregationTemporality":1,"dataPoints":[
            {{"timeUnixNano":"{}","count":"100","sum":500,"bucketCounts":{counts},
              "explicitBounds":[1,5,10],"attributes":{}}}]}}}}]}}]}}]}}"#,
        resource("checkout"),
        [
            counter_point(0, 10),
            counter_point(30, 40),
            counter_point(59, 70),
            counter_point(60, 100),
            counter_point(90, 160),
        ]
        .join(","),
        (M0 + 10) * 1_000_000_000,
        attributes(&[("route", "/a")])
    );
    for (path, body) in [
        ("/v1/logs", logs),
        ("/v1/traces", spans),
        ("/v1/metrics", metrics),
    ] {
        let mut response = agent()
            .post(&server.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap();
        assert_eq!(status, 200, "{path} for {tenant}: {text}");
        assert!(!text.contains("rejected"), "{path} for {tenant}: {text}");
    }
}

/// GET `path` with `params` (URL-encoded here) and the token; the status and JSON answer.
fn get(server: &Sextant, token: &str, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let mut request = agent()
        .get(&server.url(path))
        .header("Authorization", &format!("Bearer {token}"));
    for (key, value) in params {
        request = request.query(*key, *value);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

/// The bodies of a log search (in the range around the test data), and the next cursor.
fn search(server: &Sextant, token: &str, params: &[(&str, &str)]) -> (Vec<String>, Value) {
    let mut all = RANGE.to_vec();
    all.extend_from_slice(params);
    let (status, answer) = get(server, token, "/api/v1/logs/search", &all);
    assert_eq!(status, 200, "{params:?}: {answer}");
    let bodies = answer["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|log| log["body"].as_str().unwrap().to_owned())
        .collect();
    (bodies, answer["next_cursor"].clone())
}

/// The search's bodies without the tenant prefix, checking that every one has it.
fn bodies(server: &Sextant, token: &str, tenant: &str, q: &str) -> Vec<String> {
    let (bodies, _) = search(server, token, &[("q", q)]);
    bodies
        .iter()
        .map(|body| {
            body.strip_prefix(&format!("{tenant} "))
                .unwrap_or_else(|| panic!("{tenant} sees {body:?}"))
                .to_owned()
        })
        .collect()
}

fn check_log_search(server: &Sextant, token: &str, tenant: &str) {
    let all = bodies(server, token, tenant, "");
    // Newest first; the two records at T0+4 in a fixed order.
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(
        all[2..],
        [
            "connection reset by peer",
            "retrying payment",
            "Payment timeout after 30s",
            "order placed"
        ]
    );
    let check = |q: &str, expected: &[&str]| {
        assert_eq!(bodies(server, token, tenant, q), expected, "q = {q}");
    };
    check(
        "PAYMENT",
        &["retrying payment", "Payment timeout after 30s"],
    );
    check("payment -timeout", &["retrying payment"]);
    check(r#""reset by""#, &["connection reset by peer"]);
    check(r#""by reset""#, &[]);
    check("user:ada", &["retrying payment", "order placed"]);
    // Records without the attribute are kept by an exclusion.
    check(
        "-user:ada -health -cache",
        &["connection reset by peer", "Payment timeout after 30s"],
    );
    check(
        "level:ERROR",
        &["connection reset by peer", "Payment timeout after 30s"],
    );
    check("severity:warn region:eu", &["retrying payment"]);
    check("service:payments -region:us", &["retrying payment"]);
    check(
        &format!("trace_id:{}", TRACE.to_uppercase()),
        &["order placed"],
    );
    check("it's", &[]);
    // Nothing of the other tenant is found, even by its name.
    let other = if tenant == "alpha" { "beta" } else { "alpha" };
    check(other, &[]);

    let (found, _) = search(
        server,
        token,
        &[("service", "payments"), ("severity", "ERROR")],
    );
    assert_eq!(found, [format!("{tenant} connection reset by peer")]);

    // Paging one record at a time walks the same list, the tie at T0+4 included.
    let mut paged = Vec::new();
    let mut cursor = Value::Null;
    for _ in 0..10 {
        let mut params = vec![("limit", "1")];
        let text;
        if let Value::String(c) = &cursor {
            text = c.clone();
            params.push(("cursor", &text));
        }
        let (page, next) = search(server, token, &params);
        paged.extend(page);
        cursor = next;
        if cursor.is_null() {
            break;
        }
    }
    let all_prefixed: Vec<String> = all.iter().map(|b| format!("{tenant} {b}")).collect();
    assert_eq!(paged, all_prefixed);
    let (first, next) = search(server, token, &[("limit", "4")]);
    let (rest, last) = search(
        server,
        token,
        &[("limit", "4"), ("cursor", next.as_str().unwrap())],
    );
    assert_eq!([first, rest].concat(), all_prefixed);
    assert!(last.is_null());

    // The fields of a record.
    let (status, answer) = get(
        server,
        token,
        "/api/v1/logs/search",
        &[RANGE[0], RANGE[1], ("q", "user:bob")],
    );
    assert_eq!(status, 200);
    let log = &answer["logs"][0];
    assert_eq!(log["service"], "checkout");
    assert_eq!(log["severity_text"], "ERROR");
    assert_eq!(log["severity_number"], 9);
    assert_eq!(log["attributes"], json!({"user": "bob"}));
    assert_eq!(log["time"], "2023-11-14T22:13:21Z");
}

fn check_trace(server: &Sextant, token: &str, tenant: &str) {
    let (status, answer) = get(server, token, &format!("/api/v1/traces/{TRACE}"), &[]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["trace_id"], TRACE);
    fn shape(span: &Value) -> String {
        let children: Vec<String> = span["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(shape)
            .collect();
        let name = span["name"].as_str().unwrap();
        if children.is_empty() {
            name.to_owned()
        } else {
            format!("{name}({})", children.join(" "))
        }
    }
    let roots: Vec<String> = answer["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(shape)
        .collect();
    assert_eq!(
        roots,
        [
            format!("{tenant} GET /checkout(charge render)"),
            "orphan".to_owned()
        ]
    );
    let charge = &answer["spans"][0]["children"][0];
    assert_eq!(charge["service"], "payments");
    assert_eq!(charge["parent_span_id"], "00000000000000a1");
    assert_eq!(charge["duration_ns"], 400_000_000);
    assert_eq!(charge["kind"], 2);
    assert_eq!(charge["start"], "2023-11-14T22:13:20.100Z");
    assert_eq!(charge["attributes"], json!({"span.name": "charge"}));

    // Upper case works; an unknown trace is a JSON 404.
    let (status, _) = get(
        server,
        token,
        &format!("/api/v1/traces/{}", TRACE.to_uppercase()),
        &[],
    );
    assert_eq!(status, 200);
    let (status, answer) = get(
        server,
        token,
        &format!("/api/v1/traces/{}", "0".repeat(32)),
        &[],
    );
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"], "not_found");
}

fn query_range(server: &Sextant, token: &str, params: &[(&str, &str)]) -> Value {
    let mut all = RANGE.to_vec();
    all.extend_from_slice(params);
    let (status, answer) = get(server, token, "/api/v1/metrics/query_range", &all);
    assert_eq!(status, 200, "{params:?}: {answer}");
    answer
}

fn check_metrics(server: &Sextant, token: &str, tenant: &str) {
    let scale = if tenant == "alpha" { 1.0 } else { 2.0 };
    let answer = query_range(
        server,
        token,
        &[
            ("name", "requests"),
            ("agg", "rate"),
            ("step", "1m"),
            ("match", "service=checkout,route=/a"),
        ],
    );
    assert_eq!(
        answer,
        json!({"series": [{
            "labels": {"service": "checkout", "route": "/a"},
            "agg": "rate",
            "points": [[rfc3339(M0), scale], [rfc3339(M0 + 60), scale]],
        }]})
    );
    // M0 is a multiple of 120 s as well: one step holds every point.
    let answer = query_range(
        server,
        token,
        &[
            ("name", "requests"),
            ("agg", "max"),
            ("step", "2m"),
            ("time_format", "unix"),
        ],
    );
    assert_eq!(answer["series"][0]["points"], json!([[M0, 160.0 * scale]]));
    let answer = query_range(
        server,
        token,
        &[
            ("name", "requests"),
            ("agg", "count"),
            ("step", "30s"),
            ("time_format", "unix"),
        ],
    );
    assert_eq!(
        answer["series"][0]["points"],
        json!([[M0, 1.0], [M0 + 30, 2.0], [M0 + 60, 1.0], [M0 + 90, 1.0]])
    );
    let answer = query_range(
        server,
        token,
        &[("name", "requests"), ("match", "route=/b")],
    );
    assert_eq!(answer, json!({"series": []}));

    // Alpha: 20 in (0, 1], 40 in (1, 5], 40 in (5, 10]; beta: all 100 in (5, 10].
    let quantile = |agg: &str| {
        let answer = query_range(
            server,
            token,
            &[("name", "latency"), ("agg", agg), ("time_format", "unix")],
        );
        assert_eq!(answer["series"].as_array().unwrap().len(), 1, "{answer}");
        assert_eq!(answer["series"][0]["points"][0][0], M0);
        answer["series"][0]["points"][0][1].as_f64().unwrap()
    };
    if tenant == "alpha" {
        assert_eq!((quantile("p50"), quantile("p95")), (4.0, 9.375));
    } else {
        assert_eq!((quantile("p50"), quantile("p95")), (7.5, 9.75));
    }
}

#[test]
fn read_endpoints_search_page_aggregate_and_stay_in_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let ingest_a = create_token(dir.path(), "alpha", "ingest");
    let ingest_b = create_token(dir.path(), "beta", "ingest");
    let viewer_a = create_token(dir.path(), "alpha", "viewer");
    let editor_b = create_token(dir.path(), "beta", "editor");
    let server = Sextant::start(dir.path());
    send_tenant_data(&server, &ingest_a, "alpha");
    send_tenant_data(&server, &ingest_b, "beta");

    for (tenant, token) in [("alpha", &viewer_a), ("beta", &editor_b)] {
        check_log_search(&server, token, tenant);
        check_trace(&server, token, tenant);
        check_metrics(&server, token, tenant);
    }

    // After a restart the rows come from segment files; the answers are the same.
    server.stop();
    let server = Sextant::start(dir.path());
    check_log_search(&server, &editor_b, "beta");
    check_trace(&server, &viewer_a, "alpha");
    check_metrics(&server, &editor_b, "beta");
}

#[test]
fn read_endpoints_refuse_bad_parameters_and_ingest_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = create_token(dir.path(), "acme", "ingest");
    let viewer = create_token(dir.path(), "acme", "viewer");
    let server = Sextant::start(dir.path());

    let logs = "/api/v1/logs/search";
    let metrics = "/api/v1/metrics/query_range";
    for (path, params, parameter) in [
        (logs, &[("limit", "0")][..], "limit"),
        (logs, &[("limit", "5000")], "limit"),
        (logs, &[("cursor", "not-a-cursor")], "cursor"),
        (logs, &[("from", "last tuesday")], "from"),
        (
            logs,
            &[("from", "1700000100"), ("to", "1700000000")],
            "from",
        ),
        (logs, &[("q", "\"unterminated")], "q"),
        (logs, &[("q", "key:")], "q"),
        (logs, &[("color", "red")], "color"),
        (metrics, &[], "name"),
        (metrics, &[("name", "x"), ("step", "fast")], "step"),
        (
            metrics,
            &[("name", "x"), ("step", "1s"), ("from", "1600000000")],
            "step",
        ),
        (metrics, &[("name", "x"), ("agg", "median")], "agg"),
        (metrics, &[("name", "x"), ("match", "route")], "match"),
        (
            metrics,
            &[("name", "x"), ("to", "2023-11-14T25:00:00Z")],
            "to",
        ),
    ] {
        let (status, answer) = get(&server, &viewer, path, params);
        assert_eq!(status, 400, "{path} {params:?}: {answer}");
        assert_eq!(answer["error"], "bad_request");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{parameter}`")),
            "{params:?}: {message}"
        );
    }
    for id in [
        "xyz",
        "5b8efff798038103d269b633813fc60",
        "5b8efff798038103d269b633813fc60g",
    ] {
        let (status, answer) = get(&server, &viewer, &format!("/api/v1/traces/{id}"), &[]);
        assert_eq!(status, 400, "{id}: {answer}");
    }

    for path in [logs, metrics, &format!("/api/v1/traces/{TRACE}")] {
        let (status, answer) = get(&server, &ingest, path, &[("name", "x")]);
        assert_eq!(status, 403, "{path}: {answer}");
        let (status, _) = get(&server, "not-a-token", path, &[]);
        assert_eq!(status, 401, "{path}");
    }
}
