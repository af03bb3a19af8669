//! Queries through the real HTTP API and CLI: every answer is confined to the token's tenant,
//! from the moment rows are acknowledged and after they are flushed to segments.

use std::process::Command;

use prost::Message;

use crate::support::{Sextant, agent, binary, create_token, sql};

/// Both tenants send the same service names and the same trace ids.
fn send_tenant_data(server: &Sextant, token: &str, tenant: &str) {
    let logs = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"checkout"}}}}]}},
        "scopeLogs":[{{"logRecords":[
          {{"timeUnixNano":"1700000000000000000","body":{{"stringValue":"{tenant} one"}},"traceId":"5b8efff798038103d269b633813fc60c"}},
          {{"timeUnixNano":"1700000001000000000","body":{{"stringValue":"{tenant} two"}}}}]}}]}}]}}"#
    );
    let spans = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"checkout"}}}}]}},
        "scopeSpans":[{{"spans":[{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
          "name":"{tenant} span","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000500000000"}}]}}]}}]}}"#
    );
    let metrics = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"checkout"}}}}]}},
        "scopeMetrics":[{{"metrics":[{{"name":"requests","sum":{{"aggregationTemporality":2,"isMonotonic":true,
          "dataPoints":[{{"asInt":"{}","timeUnixNano":"1700000000000000000"}}]}}}}]}}]}}]}}"#,
        if tenant == "alpha" { 1 } else { 2 }
    );
    for (path, body) in [
        ("/v1/logs", logs),
        ("/v1/traces", spans),
        ("/v1/metrics", metrics),
    ] {
        let status = agent()
            .post(&server.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap()
            .status();
        assert_eq!(status, 200, "{path} for {tenant}");
    }
}

fn column(answer: &serde_json::Value, name: &str) -> Vec<String> {
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| match &row[name] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn check_isolation(server: &Sextant, viewers: &[(&str, String)]) {
    for (tenant, token) in viewers {
        let (status, answer) = sql(server, token, "SELECT body FROM logs ORDER BY time");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            column(&answer, "body"),
            [format!("{tenant} one"), format!("{tenant} two")]
        );
        let (_, answer) = sql(
            server,
            token,
            "SELECT name FROM spans WHERE trace_id = '5b8efff798038103d269b633813fc60c'",
        );
        assert_eq!(column(&answer, "name"), [format!("{tenant} span")]);
        let (_, answer) = sql(server, token, "SELECT sum(value) AS total FROM metrics");
        let expected = if *tenant == "alpha" { "1.0" } else { "2.0" };
        assert_eq!(column(&answer, "total"), [expected]);
        // A join across every table still sees only this tenant.
        let (_, answer) = sql(
            server,
            token,
            "SELECT count(*) AS n FROM logs l JOIN spans s ON l.trace_id = s.trace_id",
        );
        assert_eq!(column(&answer, "n"), ["1"]);
        // Word search (through the segments' token index after a restart) finds only this
        // tenant's rows, even when the word is the other tenant's name.
        let (_, answer) = sql(
            server,
            token,
            "SELECT body FROM logs WHERE word_match(body, 'ONE')",
        );
        assert_eq!(column(&answer, "body"), [format!("{tenant} one")]);
        let other = if *tenant == "alpha" { "beta" } else { "alpha" };
        let (_, answer) = sql(
            server,
            token,
            &format!("SELECT count(*) AS n FROM logs WHERE word_match(body, '{other}')"),
        );
        assert_eq!(column(&answer, "n"), ["0"]);
    }
}

#[test]
fn queries_see_only_the_tokens_tenant_before_and_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let ingest_a = create_token(dir.path(), "alpha", "ingest");
    let ingest_b = create_token(dir.path(), "beta", "ingest");
    let viewers = [
        ("alpha", create_token(dir.path(), "alpha", "viewer")),
        ("beta", create_token(dir.path(), "beta", "viewer")),
    ];
    let server = Sextant::start(dir.path());
    send_tenant_data(&server, &ingest_a, "alpha");
    send_tenant_data(&server, &ingest_b, "beta");
    // Rows are visible as soon as they are acknowledged (still in buffers).
    check_isolation(&server, &viewers);

    // An ingest token may not query.
    let (status, answer) = sql(&server, &ingest_a, "SELECT 1");
    assert_eq!(status, 403, "{answer}");
    // Nothing outside the tenant's tables can be named.
    for query in [
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM 'segments/beta/logs'",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/'",
        "COPY logs TO '/tmp/x.csv'",
        "INSERT INTO logs SELECT * FROM logs",
    ] {
        let (status, answer) = sql(&server, &viewers[0].1, query);
        assert_eq!(status, 400, "{query}: {answer}");
    }

    // After a restart the rows are in segment files; the answers are the same.
    server.stop();
    let server = Sextant::start(dir.path());
    check_isolation(&server, &viewers);

    // The CLI prints the tenant's rows as a table.
    let output = Command::new(binary())
        .args(["query", "--url", &server.url(""), "--token", &viewers[1].1])
        .arg("SELECT service, body FROM logs ORDER BY time")
        .output()
        .unwrap();
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        table,
        "service  | body\n---------+---------\ncheckout | beta one\ncheckout | beta two\n(2 rows)\n"
    );
    let output = Command::new(binary())
        .args(["query", "--url", &server.url(""), "--token", &viewers[1].1])
        .arg("SELEC nonsense")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8(output.stderr).unwrap().contains("400"));
}

#[test]
fn row_limit_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = create_token(dir.path(), "acme", "ingest");
    let viewer = create_token(dir.path(), "acme", "viewer");
    let server = Sextant::start_with_config(dir.path(), Some("[query]\nmax_rows = 3\n"));
    let bodies: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
    let body = crate::support::logs_request("svc", &bodies).encode_to_vec();
    let status = agent()
        .post(&server.url("/v1/logs"))
        .header("Authorization", &format!("Bearer {ingest}"))
        .header("Content-Type", "application/x-protobuf")
        .send(&body[..])
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let (status, answer) = sql(&server, &viewer, "SELECT body FROM logs");
    assert_eq!(status, 200);
    assert_eq!(
        (answer["row_count"].as_u64(), answer["truncated"].as_bool()),
        (Some(3), Some(true))
    );
    let (_, answer) = sql(&server, &viewer, "SELECT count(*) AS n FROM logs");
    assert_eq!(column(&answer, "n"), ["10"]);
    assert_eq!(answer["truncated"], false);
}
