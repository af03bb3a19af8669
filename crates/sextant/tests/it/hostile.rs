//! A hostile tenant and a hostile anonymous client against the real binary, on loopback: each
//! attack is answered with a client error (never a crash), and afterwards the server still
//! answers another tenant.

use std::time::{Duration, Instant};

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

/// A query that runs until its timeout, yielding between batches.
const LONG: &str = "SELECT count(*) FROM generate_series(1, 1000000) a CROSS JOIN \
                    generate_series(1, 1000000) b WHERE a.value + b.value = 3";

#[test]
fn one_tenants_heavy_queries_neither_starve_another_nor_take_the_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let viewer = create_token(&data, "mallory", "viewer");
    let other = create_token(&data, "alice", "viewer");
    let config = "[query]\ntimeout_seconds = 6\nmax_memory_bytes = 67108864\n\
                  max_total_memory_bytes = 134217728\n";
    let server = Sextant::start_with_config(&data, Some(config));
    let start_kib = server.memory_kib("VmRSS");

    // Calls whose work or output an argument chooses are refused before they run.
    for query in [
        "SELECT levenshtein(repeat('a',180000), repeat('b',180000))",
        "SELECT length(repeat('a',500000000))",
    ] {
        let started = Instant::now();
        let (status, answer) = sql(&server, &viewer, query);
        refused(
            status,
            &answer,
            "query_failed",
            "more than the limit",
            query,
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{query}");
    }
    // An aggregation past the query's memory fails at its limit.
    let (status, answer) = sql(
        &server,
        &viewer,
        "SELECT cardinality(array_agg(value)) FROM generate_series(1, 300000000)",
    );
    refused(
        status,
        &answer,
        "query_failed",
        "limit of 64 MiB",
        "array_agg",
    );
    let peak_kib = server.memory_kib("VmHWM");
    assert!(
        peak_kib < start_kib + 400 * 1024,
        "peak {peak_kib} KiB from {start_kib} KiB at the start"
    );

    // Two (and a third, waiting its turn) long queries of one tenant; the other tenant's
    // query still answers in well under a second.
    let heavy: Vec<_> = (0..3)
        .map(|_| {
            let url = server.url("/api/v1/sql");
            let token = viewer.clone();
            std::thread::spawn(move || {
                crate::support::agent()
                    .post(&url)
                    .header("Authorization", &format!("Bearer {token}"))
                    .send(serde_json::json!({ "sql": LONG }).to_string().as_bytes())
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        still_serves(&server, &other, "the other tenant's heavy queries");
        let (status, answer) = sql(&server, &other, "SELECT count(*) AS n FROM logs");
        assert_eq!(status, 200, "{answer}");
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "the other tenant's slowest answer: {slowest:?}; peak RSS {peak_kib} KiB from \
         {start_kib} KiB at the start"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "slowest answer took {slowest:?}"
    );
    let statuses: Vec<u16> = heavy.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 504), "{statuses:?}");
    server.stop();
}

/// A connection to the server from `source` (another loopback address than the victim's).
fn connect_from(server: &Sextant, source: &str) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    socket.into()
}

/// `POST /v1/logs` of one record for `token`: the status.
fn ingest(server: &Sextant, token: &str) -> u16 {
    use prost::Message;
    let body = crate::support::logs_request("checkout", &["still here".to_owned()]).encode_to_vec();
    crate::support::agent()
        .post(&server.url("/v1/logs"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/x-protobuf")
        .send(&body[..])
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Whether the server has closed `stream` (or answered and closed) within `within`.
fn closed_within(stream: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

#[test]
fn slow_uploads_take_only_their_tenants_share_and_are_cut() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let slow = create_token(&data, "mallory", "ingest");
    let other = create_token(&data, "alice", "ingest");
    let server = Sextant::start(&data);

    // 300 uploads that promise 100,000 bytes and send one: past the per-address cap (256)
    // the connections are closed at once; past the tenant's share of request slots (64 of
    // 256) the requests are refused.
    let started = Instant::now();
    let mut uploads: Vec<std::net::TcpStream> = (0..300)
        .map(|_| {
            let mut stream = connect_from(&server, "127.0.0.2");
            let head = format!(
                "POST /v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {slow}\r\n\
                 Content-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\n\x0a"
            );
            let _ = stream.write_all(head.as_bytes());
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        assert_eq!(ingest(&server, &other), 200, "the other tenant was refused");
    }
    // Within the grace period and the time one byte earns, every slow upload is answered or
    // closed.
    let mut open_after = 0;
    for stream in &mut uploads {
        let left = Duration::from_secs(15).saturating_sub(started.elapsed());
        if !closed_within(stream, left.max(Duration::from_millis(10))) {
            open_after += 1;
        }
    }
    assert_eq!(
        open_after,
        0,
        "slow uploads still open after {:?}",
        started.elapsed()
    );
    assert_eq!(ingest(&server, &other), 200);
    server.stop();
}

#[test]
fn idle_and_trickling_connections_are_closed() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let other = create_token(&data, "alice", "ingest");
    let config = "[connections]\nheader_timeout_seconds = 2\nmax_per_address = 100\n";
    let server = Sextant::start_with_config(&data, Some(config));

    // Connections that say nothing, and ones that trickle their headers.
    let started = Instant::now();
    let mut silent: Vec<_> = (0..50)
        .map(|_| connect_from(&server, "127.0.0.3"))
        .collect();
    let mut trickling: Vec<_> = (0..50)
        .map(|_| {
            let mut stream = connect_from(&server, "127.0.0.3");
            stream
                .write_all(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            stream
        })
        .collect();
    // Past the per-address cap, a connection is closed as soon as it is accepted.
    let mut excess = connect_from(&server, "127.0.0.3");
    assert!(
        closed_within(&mut excess, Duration::from_secs(1)),
        "over the cap, still open"
    );
    assert_eq!(ingest(&server, &other), 200, "another address was refused");
    for second in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        for stream in &mut trickling {
            let _ = stream.write_all(format!("X-Slow-{second}: 1\r\n").as_bytes());
        }
    }
    let deadline = Duration::from_secs(6);
    for stream in silent.iter_mut().chain(trickling.iter_mut()) {
        let left = deadline
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(10));
        assert!(
            closed_within(stream, left),
            "open after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(ingest(&server, &other), 200);
    server.stop();
}

#[test]
fn tenants_cannot_be_named_across_numbers_stay_private_and_files_are_owners_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let alpha_admin = create_token(&data, "alpha", "admin");
    let beta_admin = create_token(&data, "beta", "admin");
    let beta_ingest = create_token(&data, "beta", "ingest");
    let server = Sextant::start(&data);
    let send = |method: &str, path: &str, token: &str, tenant: Option<&str>, body: &[u8]| {
        let url = server.url(path);
        let agent = crate::support::agent();
        let mut request = match method {
            "DELETE" => agent
                .delete(&url)
                .header("Authorization", &format!("Bearer {token}")),
            _ => agent
                .get(&url)
                .header("Authorization", &format!("Bearer {token}")),
        };
        if let Some(tenant) = tenant {
            request = request.header("X-Sextant-Tenant", tenant);
        }
        let reply = if method == "POST" {
            let mut post = agent
                .post(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .header("Content-Type", "application/x-ndjson");
            if let Some(tenant) = tenant {
                post = post.header("X-Sextant-Tenant", tenant);
            }
            post.send(body)
        } else {
            request.call()
        };
        let mut reply = reply.unwrap();
        let status = reply.status().as_u16();
        let text = reply.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
        )
    };
    let line = |n: usize| format!("{{\"message\": \"line {n}\", \"service\": \"api\"}}\n");
    let (status, answer) = send(
        "POST",
        "/api/v1/logs/ndjson",
        &beta_ingest,
        None,
        line(1).as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");

    // Beta's admin naming alpha, by header or parameter, is refused before anything happens.
    for (path, header) in [
        ("/api/v1/tenant/data", Some("alpha")),
        ("/api/v1/tenant/data?tenant=alpha", None),
    ] {
        let (status, answer) = send("DELETE", path, &beta_admin, header, b"");
        assert_eq!(status, 403, "{path}: {answer}");
        assert_eq!(answer["error"], "forbidden", "{answer}");
    }
    let (status, answer) = send(
        "GET",
        "/api/v1/incidents?tenant=alpha",
        &beta_admin,
        None,
        b"",
    );
    assert_eq!(status, 403, "{answer}");
    let mut sql_request = crate::support::agent()
        .post(&server.url("/api/v1/sql"))
        .header("Authorization", &format!("Bearer {beta_admin}"))
        .header("X-Sextant-Tenant", "alpha");
    sql_request = sql_request.header("Content-Type", "application/json");
    let reply = sql_request.send(&b"{\"sql\": \"SELECT 1\"}"[..]).unwrap();
    assert_eq!(reply.status().as_u16(), 403);
    let (status, answer) = sql(&server, &beta_admin, "SELECT count(*) AS n FROM logs");
    assert_eq!(
        (status, answer["rows"][0]["n"].as_i64()),
        (200, Some(1)),
        "beta's data was erased"
    );

    // Each tenant numbers its own audit trail from 1: beta's actions do not show in alpha's.
    let (status, _) = send(
        "DELETE",
        "/api/v1/tenant/data",
        &alpha_admin,
        Some("alpha"),
        b"",
    );
    assert_eq!(status, 200);
    for _ in 0..3 {
        let (status, _) = send("DELETE", "/api/v1/tenant/data", &beta_admin, None, b"");
        assert_eq!(status, 200);
    }
    let (status, _) = send("DELETE", "/api/v1/tenant/data", &alpha_admin, None, b"");
    assert_eq!(status, 200);
    let (_, trail) = send("GET", "/api/v1/audit", &alpha_admin, None, b"");
    let numbers: Vec<u64> = trail["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=numbers.len() as u64).rev().collect();
    assert_eq!(numbers, expected, "{trail}");

    // Bodies up to the documented 16 MiB are taken on every ingest route; past it, a 413 in
    // the JSON error shape.
    let lines: String = (0..60_000).map(line).collect();
    assert!(lines.len() > 2 * 1024 * 1024);
    let (status, answer) = send(
        "POST",
        "/api/v1/logs/ndjson",
        &beta_ingest,
        None,
        lines.as_bytes(),
    );
    assert_eq!(status, 200, "a 2+ MiB body: {answer}");
    // (Declared, not sent: the server answers before reading a body it will not take.)
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    let head = format!(
        "POST /api/v1/logs/ndjson HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {beta_ingest}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        17 * 1024 * 1024
    );
    std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = std::io::Read::read(&mut stream, &mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&answer).contains('}') {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"error\":\"body_too_large\""), "{answer}");
    // A method a route does not take answers in the same shape.
    let (status, answer) = send("GET", "/api/v1/sql", &beta_admin, None, b"");
    assert_eq!(status, 405, "{answer}");
    assert_eq!(answer["error"], "method_not_allowed", "{answer}");
    server.stop();

    // Whatever the umask it was started under, the server's files are its user's alone.
    use std::os::unix::fs::PermissionsExt;
    let mut checked = 0;
    let mut dirs = vec![data.clone()];
    while let Some(dir) = dirs.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked > 3, "only {checked} files");
}
