//! A hostile tenant and a hostile anonymous client against the real binary, on loopback: each
//! attack is answered with a client error (never a crash), and afterwards the server still
//! answers another tenant.

use serde_json::Value;

use crate::runbooks::call;
use crate::support::{Sextant, create_token, sql};

/// The other tenant's query still answers, correctly.
fn still_serves(server: &Sextant, token: &str, after: &str) {
    let (status, answer) = sql(server, token, "SELECT 40 + 2 AS n");
    assert_eq!(status, 200, "after {after}: {answer}");
    assert_eq!(answer["rows"][0]["n"], 42, "after {after}: {answer}");
}

fn refused(status: u16, answer: &Value, code: &str, says: &str, what: &str) {
    assert_eq!(status, 400, "{what}: {answer}");
    assert_eq!(answer["error"], code, "{what}: {answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{what}: {message}");
}

#[test]
fn deep_and_wide_queries_are_refused_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let viewer = create_token(&data, "mallory", "viewer");
    let other = create_token(&data, "alice", "viewer");
    let server = Sextant::start(&data);

    // The requests that took the server down: a 1,000-term sum, 700 and 1,000 matchers.
    let sum = format!("SELECT {}", vec!["1"; 1000].join("+"));
    let (status, answer) = sql(&server, &viewer, &sum);
    refused(
        status,
        &answer,
        "query_too_complex",
        "nested more than 128 deep",
        "a long sum",
    );
    still_serves(&server, &other, "a long sum");

    let matchers = |n: usize| {
        (0..n)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let range = format!(
        "/api/v1/metrics/query_range?name=cpu&match={}",
        matchers(700)
    );
    let (status, answer) = call(&server, &viewer, "GET", &range, "");
    refused(status, &answer, "bad_request", "at most 32", "700 matchers");
    still_serves(&server, &other, "700 matchers");
    let forecast = format!("/api/v1/forecast?name=cpu&match={}", matchers(1000));
    let (status, answer) = call(&server, &viewer, "GET", &forecast, "");
    refused(
        status,
        &answer,
        "bad_request",
        "at most 32",
        "1,000 matchers",
    );
    still_serves(&server, &other, "1,000 matchers");
    // 32 matchers are still a query.
    let range = format!(
        "/api/v1/metrics/query_range?name=cpu&match={}",
        matchers(32)
    );
    let (status, answer) = call(&server, &viewer, "GET", &range, "");
    assert_eq!(status, 200, "{answer}");

    // Deep and wide values in every parameter of every read route: a client error or an
    // answer, never a crash.
    let shapes = [
        "(".repeat(5_000),
        "1+".repeat(10_000),
        "a=b,".repeat(2_000),
        "x ".repeat(5_000),
        "[".repeat(5_000),
        "\"".repeat(5_000),
        "NOT ".repeat(3_000),
    ];
    let routes: &[(&str, &[&str])] = &[
        (
            "/api/v1/logs/search",
            &["q", "service", "from", "to", "limit", "cursor"],
        ),
        (
            "/api/v1/metrics/query_range",
            &["name", "match", "step", "agg", "from"],
        ),
        ("/api/v1/forecast", &["name", "match", "horizon", "season"]),
        ("/api/v1/patterns", &["service", "q", "limit"]),
        ("/api/v1/anomalies", &["kind", "service", "limit"]),
        ("/api/v1/incidents", &["status", "limit"]),
        ("/api/v1/topology", &["from", "to"]),
        ("/api/v1/audit", &["kind", "limit"]),
    ];
    for (route, params) in routes {
        for param in *params {
            for shape in &shapes {
                let encoded: String = shape
                    .bytes()
                    .map(|b| match b {
                        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                let path = format!("{route}?name=cpu&{param}={encoded}");
                let (status, answer) = call(&server, &viewer, "GET", &path, "");
                assert!(
                    (200..500).contains(&status),
                    "{route} {param}={:.20}...: {status} {answer}",
                    shape
                );
            }
        }
        still_serves(&server, &other, route);
    }
    for shape in &shapes {
        let (status, answer) = sql(&server, &viewer, &format!("SELECT {shape}1"));
        assert_eq!(status, 400, "{shape:.20}: {answer}");
    }
    still_serves(&server, &other, "deep SQL");
    server.stop();
}
