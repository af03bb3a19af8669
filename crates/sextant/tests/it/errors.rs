//! Every way a request can be refused: each gets a clear status and message, and a refused
//! request stores nothing.

use std::process::Command;
use std::time::Duration;

use prost::Message;
use sextant_model::TenantId;
use sextant_store::TelemetryReader;

use crate::support::{Sextant, agent, binary, create_token, datasets_dir, logs_request};

struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

fn post(server: &Sextant, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut request = agent().post(&server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.send(body).unwrap();
    Reply {
        status: response.status().as_u16(),
        retry_after: response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: response.body_mut().read_to_string().unwrap_or_default(),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

const JSON: (&str, &str) = ("Content-Type", "application/json");
const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");

fn one_log(text: &str) -> Vec<u8> {
    logs_request("errors-test", &[text.to_owned()]).encode_to_vec()
}

fn stored_bodies(server: Sextant, tenant: &str) -> Vec<String> {
    let dir = server.data_dir.clone();
    server.stop();
    let mut bodies: Vec<String> = TelemetryReader::new(dir)
        .log_rows(&TenantId::new(tenant).unwrap())
        .unwrap()
        .into_iter()
        .map(|row| row.body.to_text())
        .collect();
    bodies.sort();
    bodies
}

#[test]
fn refused_requests_get_clear_errors_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = create_token(dir.path(), "acme", "ingest");
    let viewer = create_token(dir.path(), "acme", "viewer");
    let server = Sextant::start_with_config(
        dir.path(),
        Some("[ingest]\nmax_body_bytes = 4096\nmax_in_flight_bytes = 65536\n"),
    );
    let auth = bearer(&ingest);
    let ok = |text: &str| {
        post(
            &server,
            "/v1/logs",
            &[("Authorization", &auth), PROTOBUF],
            &one_log(text),
        )
    };

    assert_eq!(ok("accepted-1").status, 200);

    // No token, a malformed header, an unknown token: 401.
    let reply = post(&server, "/v1/logs", &[PROTOBUF], &one_log("no-token"));
    assert_eq!(reply.status, 401);
    let reply = post(
        &server,
        "/v1/logs",
        &[("Authorization", "Basic eDp5"), JSON],
        b"{}",
    );
    assert_eq!(reply.status, 401);
    assert!(reply.body.contains("Bearer"), "{}", reply.body);
    let reply = post(
        &server,
        "/v1/logs",
        &[("Authorization", "Bearer sxt_0000"), JSON],
        b"{}",
    );
    assert_eq!(
        (reply.status, reply.body.contains("unknown token")),
        (401, true)
    );

    // A role that may not ingest: 403.
    let reply = post(
        &server,
        "/v1/logs",
        &[("Authorization", &bearer(&viewer)), PROTOBUF],
        &one_log("viewer"),
    );
    assert_eq!(reply.status, 403);

    // A tenant the token does not belong to: 403.
    let reply = post(
        &server,
        "/v1/logs",
        &[
            ("Authorization", &auth),
            ("X-Sextant-Tenant", "globex"),
            PROTOBUF,
        ],
        &one_log("other-tenant"),
    );
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("`globex`"), "{}", reply.body);

    // Garbage bodies: 400 naming the problem.
    let reply = post(
        &server,
        "/v1/logs",
        &[("Authorization", &auth), JSON],
        b"{\"resourceLogs\": 7}",
    );
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.contains("malformed json logs request"),
        "{}",
        reply.body
    );
    let reply = post(
        &server,
        "/v1/traces",
        &[("Authorization", &auth), PROTOBUF],
        b"\x0a\xff\xff\xff\xff",
    );
    assert_eq!(reply.status, 400);

    // A content type that is not OTLP: 415.
    let reply = post(
        &server,
        "/v1/logs",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        b"hello",
    );
    assert_eq!(reply.status, 415);
    assert!(reply.body.contains("text/plain"), "{}", reply.body);

    // A body over the limit: 413.
    let big: Vec<String> = (0..200).map(|i| format!("oversized line {i:04}")).collect();
    let body = logs_request("errors-test", &big).encode_to_vec();
    assert!(body.len() > 4096);
    let reply = post(
        &server,
        "/v1/logs",
        &[("Authorization", &auth), PROTOBUF],
        &body,
    );
    assert_eq!(reply.status, 413);

    // Malformed ids are dropped with a partial-success answer; the rest is kept.
    let partial = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
        {"body":{"stringValue":"partial-kept"}},
        {"body":{"stringValue":"partial-dropped"},"traceId":"abcd"}]}]}]}"#;
    let reply = post(
        &server,
        "/v1/logs",
        &[("Authorization", &auth), JSON],
        partial,
    );
    assert_eq!(reply.status, 200);
    let answer: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"], 1,
        "{}",
        reply.body
    );

    assert_eq!(ok("accepted-2").status, 200);
    assert_eq!(
        stored_bodies(server, "acme"),
        vec!["accepted-1", "accepted-2", "partial-kept"]
    );
}

#[test]
fn revoked_token_stops_working_on_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path(), "acme", "ingest");
    let server = Sextant::start(dir.path());
    let auth = bearer(&token);
    let send = || {
        post(
            &server,
            "/v1/logs",
            &[("Authorization", &auth), PROTOBUF],
            &one_log("x"),
        )
        .status
    };
    assert_eq!(send(), 200);

    let list = Command::new(binary())
        .args(["tokens", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let listing = String::from_utf8(list.stdout).unwrap();
    let id = listing
        .lines()
        .find(|line| line.contains(" acme "))
        .and_then(|line| line.split_whitespace().next())
        .unwrap()
        .to_owned();
    let revoke = Command::new(binary())
        .args(["tokens", "revoke", &id, "--data-dir"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(revoke.success());
    // Lookups are cached for one second.
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(send(), 401);
}

#[test]
fn tokens_are_handed_out_through_a_running_server_with_an_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let admin = create_token(dir.path(), "acme", "admin");
    let other_admin = create_token(dir.path(), "globex", "admin");
    let viewer = create_token(dir.path(), "acme", "viewer");
    let server = Sextant::start(dir.path());
    let url = server.url("");
    // No data directory here: the server's is the one that counts.
    let elsewhere = tempfile::tempdir().unwrap();
    let tokens = |token: &str, args: &[&str]| {
        Command::new(binary())
            .current_dir(elsewhere.path())
            .env_remove("SEXTANT_DATA_DIR")
            .env_remove("SEXTANT_TOKEN")
            .arg("tokens")
            .args(args)
            .args(["--url", &url, "--token", token])
            .output()
            .unwrap()
    };
    let created = tokens(
        &admin,
        &["create", "--role", "ingest", "--expires-in", "1d"],
    );
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(created.status.success(), "{stderr}");
    assert!(
        stderr.contains("for tenant `acme` with role `ingest`"),
        "{stderr}"
    );
    assert!(stderr.contains("expiring at 20"), "{stderr}");
    let secret = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let send = || {
        post(
            &server,
            "/v1/logs",
            &[("Authorization", &bearer(&secret)), PROTOBUF],
            &one_log("x"),
        )
        .status
    };
    assert_eq!(send(), 200);
    assert!(
        !elsewhere.path().join("sextant-data").exists(),
        "nothing is made in the working directory"
    );

    // The tenant's tokens only, aligned as from a data directory.
    let listed = tokens(&admin, &["list"]);
    assert!(listed.status.success());
    let listing = String::from_utf8(listed.stdout).unwrap();
    let acme_lines: Vec<&str> = listing.lines().filter(|l| l.contains(" acme ")).collect();
    assert_eq!(acme_lines.len(), 3, "{listing}");
    assert!(!listing.contains("globex"), "{listing}");
    let id = secret.split('_').nth(1).unwrap();
    assert!(
        acme_lines
            .iter()
            .any(|l| l.starts_with(id) && l.contains(" ingest ")),
        "{listing}"
    );

    // Refusals name why: a viewer cannot, another tenant's admin neither sees nor revokes it,
    // and a tenant that is not the token's is refused.
    for (token, args, expected) in [
        (&viewer, vec!["create", "--role", "viewer"], "403"),
        (&viewer, vec!["create", "--role", "viewer"], "administer"),
        (&other_admin, vec!["revoke", id], "404"),
        (
            &admin,
            vec!["create", "--role", "viewer", "--tenant", "globex"],
            "403",
        ),
        (&admin, vec!["create", "--role", "root"], "unknown role"),
        (
            &admin,
            vec!["create", "--role", "viewer", "--init"],
            "--init",
        ),
    ] {
        let output = tokens(token, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let no_token = Command::new(binary())
        .env_remove("SEXTANT_TOKEN")
        .args(["tokens", "list", "--url", &url])
        .output()
        .unwrap();
    assert!(!no_token.status.success());
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("--token"));
    // A token given without a server would be ignored: said instead.
    let no_url = Command::new(binary())
        .args(["tokens", "list", "--data-dir"])
        .arg(dir.path())
        .args(["--token", &admin])
        .output()
        .unwrap();
    assert!(!no_url.status.success());
    assert!(
        String::from_utf8_lossy(&no_url.stderr).contains("--token goes with --url"),
        "{}",
        String::from_utf8_lossy(&no_url.stderr)
    );

    let revoked = tokens(&admin, &["revoke", id]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    // Lookups are cached for one second.
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(send(), 401);
    // Both changes are in the tenant's audit trail, by the admin token.
    let admin_id = admin.split('_').nth(1).unwrap();
    let audit = crate::support::get_json(&server, &admin, "/api/v1/audit?kind=token");
    let kinds: Vec<(&str, &str)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == admin_id)
        .map(|r| (r["kind"].as_str().unwrap(), r["subject"].as_str().unwrap()))
        .collect();
    assert!(kinds.contains(&("token.create", id)), "{audit}");
    assert!(kinds.contains(&("token.revoke", id)), "{audit}");
}

#[test]
fn an_expired_token_is_refused_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(binary())
        .args(["tokens", "create", "--tenant", "acme", "--role", "ingest"])
        .args(["--expires-in", "5s", "--init", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("expiring at"));
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let bad = Command::new(binary())
        .args(["tokens", "create", "--tenant", "acme", "--role", "ingest"])
        .args(["--expires-in", "soon", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--expires-in soon"));
    let server = Sextant::start(dir.path());
    let auth = bearer(&token);
    let send = || {
        post(
            &server,
            "/v1/logs",
            &[("Authorization", &auth), PROTOBUF],
            &one_log("x"),
        )
    };
    assert_eq!(send().status, 200);
    // Past the expiry and the one-second lookup cache.
    std::thread::sleep(Duration::from_millis(6_200));
    let refused = send();
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("expired"), "{}", refused.body);
}

#[test]
fn cli_names_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (
            vec!["--tenant", "Acme", "--role", "ingest"],
            "invalid tenant `Acme`",
        ),
        (
            vec!["--tenant", "acme", "--role", "root"],
            "unknown role `root`",
        ),
    ] {
        let output = Command::new(binary())
            .args(["tokens", "create", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(expected), "{stderr}");
    }
    // A directory that is not Sextant's is refused by name, and nothing is created in it.
    let run = |args: &[&str], data: &std::path::Path| {
        let output = Command::new(binary())
            .args(["tokens"])
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let missing = dir.path().join("typo");
    for args in [
        &["list"][..],
        &["revoke", "nope"],
        &["create", "--tenant", "acme", "--role", "ingest"],
    ] {
        let (ok, stderr) = run(args, &missing);
        assert!(!ok, "{args:?}");
        assert!(
            stderr.contains("is not a Sextant data directory"),
            "{stderr}"
        );
        assert!(stderr.contains("typo"), "{stderr}");
        assert!(!missing.exists(), "{args:?} created the directory");
    }
    let (ok, stderr) = run(&["list"], dir.path());
    assert!(!ok && stderr.contains("holds no meta.db"), "{stderr}");
    let (ok, stderr) = run(
        &["create", "--tenant", "acme", "--role", "ingest", "--init"],
        &missing,
    );
    assert!(ok && stderr.contains("data directory:"), "{stderr}");
    let (ok, stderr) = run(&["revoke", "nope"], &missing);
    assert!(
        !ok && stderr.contains("no token with id `nope`"),
        "{stderr}"
    );
}

#[test]
fn a_flood_meets_the_tenant_limit() {
    let dir = tempfile::tempdir().unwrap();
    let noisy = create_token(dir.path(), "noisy", "ingest");
    let quiet = create_token(dir.path(), "quiet", "ingest");
    let server = Sextant::start_with_config(
        dir.path(),
        Some("[ingest.limits.tenants.noisy]\nrecords_per_second = 100\n"),
    );
    let batch: Vec<String> = (0..60).map(|i| format!("flood {i}")).collect();
    let body = logs_request("flood", &batch).encode_to_vec();
    let send = |token: &str| {
        post(
            &server,
            "/v1/logs",
            &[("Authorization", &bearer(token)), PROTOBUF],
            &body,
        )
    };
    let statuses: Vec<u16> = (0..5).map(|_| send(&noisy).status).collect();
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    let limited = send(&noisy);
    assert_eq!(limited.status, 429, "{statuses:?}");
    assert!(limited.retry_after.is_some());
    assert!(
        limited
            .body
            .contains("tenant `noisy` is over its records limit of 100/s"),
        "{}",
        limited.body
    );
    // Another tenant is not affected.
    for _ in 0..5 {
        assert_eq!(send(&quiet).status, 200);
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    // Sextant's own metrics count records per tenant and refusals per error code.
    let metrics = agent()
        .get(&server.url("/metrics"))
        .header("Authorization", &format!("Bearer {noisy}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let accepted_line = format!(
        "sextant_ingest_records_total{{tenant=\"noisy\",signal=\"logs\",outcome=\"accepted\"}} {}",
        accepted * 60
    );
    assert!(metrics.contains(&accepted_line), "{metrics}");
    assert!(
        metrics.contains("sextant_ingest_rejected_requests_total{tenant=\"noisy\",signal=\"logs\",code=\"rate_limited\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("sextant_wal_fsync_seconds"), "{metrics}");
    assert!(metrics.contains("sextant_ingest_queue_depth"), "{metrics}");
    assert_eq!(stored_bodies(server, "noisy").len(), accepted * 60);
}

#[test]
fn official_otlp_examples_are_accepted_and_read_back() {
    let examples = datasets_dir().join("otlp-examples");
    if !examples.exists() {
        println!("skipping: {} not found", examples.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path(), "examples", "ingest");
    let server = Sextant::start(dir.path());
    let auth = bearer(&token);
    for (file, path) in [
        ("logs.json", "/v1/logs"),
        ("events.json", "/v1/logs"),
        ("metrics.json", "/v1/metrics"),
        ("trace.json", "/v1/traces"),
    ] {
        let body = std::fs::read(examples.join(file)).unwrap();
        let reply = post(&server, path, &[("Authorization", &auth), JSON], &body);
        assert_eq!((reply.status, reply.body.as_str()), (200, "{}"), "{file}");
    }
    // The same trace again, gzip-compressed: stored a second time.
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(
        &mut gzip,
        &std::fs::read(examples.join("trace.json")).unwrap(),
    )
    .unwrap();
    let reply = post(
        &server,
        "/v1/traces",
        &[("Authorization", &auth), JSON, ("Content-Encoding", "gzip")],
        &gzip.finish().unwrap(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let dir = server.data_dir.clone();
    server.stop();
    let reader = TelemetryReader::new(dir);
    let tenant = TenantId::new("examples").unwrap();
    let logs = reader.log_rows(&tenant).unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].service, "my.service");
    assert_eq!(logs[0].trace_id.len(), 16);
    let spans = reader.span_rows(&tenant).unwrap();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0], spans[1]);
    assert_eq!(
        hex_of(&spans[0].trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    let metrics = reader.metric_rows(&tenant).unwrap();
    let kinds: Vec<&str> = metrics.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["sum", "gauge", "histogram", "exponential_histogram"]
    );
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_second_server_on_a_data_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Sextant::start(&data);
    let output = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("is in use by another Sextant process (pid"),
        "{stderr}"
    );
    // The first server carries on; once it is killed, the directory is free again.
    assert_eq!(
        agent().get(&server.url("/readyz")).call().unwrap().status(),
        200
    );
    server.kill();
    let again = Sextant::start(&data);
    again.stop();
}

/// Runs `serve` on `listen` until its stderr has shown `until` (then stops it), or until it
/// exits; its stderr.
fn serve_stderr(data: &std::path::Path, listen: &str, until: &str) -> String {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(binary())
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(until) {
            let _ = child.kill();
            break;
        }
    }
    let _ = child.wait();
    seen
}

#[test]
fn a_start_that_fails_spends_no_one_time_token_and_logs_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The port is taken: the start fails before any token is made.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let failed = serve_stderr(&data, &listen, "First start");
    assert!(failed.contains("cannot listen on"), "{failed}");
    assert!(!failed.contains("First start"), "{failed}");
    drop(taken);
    // The next start that listens prints the token, with the address it really listens on.
    let first = serve_stderr(&data, "127.0.0.1:0", "write-ahead log replayed");
    assert!(
        first.contains("First start: created an admin token"),
        "{first}"
    );
    assert!(!first.contains("127.0.0.1:0/v1/logs"), "{first}");
    // Logs into a pipe are plain text.
    assert!(first.contains("INFO"), "{first}");
    assert!(!first.contains('\u{1b}'), "{first:?}");
}

#[test]
fn settings_come_from_environment_and_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("from-env");
    let config = dir.path().join("sextant.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:1\"\n").unwrap();
    // Environment beats the file: the server listens on a free port, not on port 1.
    let mut child = Command::new(binary())
        .arg("serve")
        .env("SEXTANT_DATA_DIR", &data_dir)
        .env("SEXTANT_LISTEN", "127.0.0.1:0")
        .env("SEXTANT_CONFIG", &config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("sextant listening on 127.0.0.1:"),
        "{line}"
    );
    assert!(!line.trim_end().ends_with(":1"), "{line}");
    assert!(data_dir.join("meta.db").exists());

    // A config file with an unknown key is refused, naming the key.
    std::fs::write(&config, "listen_port = 7300\n").unwrap();
    let output = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("unknown field `listen_port`"), "{stderr}");
}
