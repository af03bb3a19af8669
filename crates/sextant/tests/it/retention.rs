//! Erasure through the real binary: `DELETE /api/v1/tenant/data` removes a tenant's rows from
//! segment files, buffers and the write-ahead log, for good, and touches no other tenant.

use prost::Message;

use crate::support::{Sextant, agent, create_token, files_under, logs_request, sql};

/// Flush every second, so some rows are in segment files and some only in the log.
const CONFIG: &str = "[storage]\nflush_interval_seconds = 1\n";

fn send_logs(server: &Sextant, token: &str, bodies: &[&str]) {
    let bodies: Vec<String> = bodies.iter().map(|b| (*b).to_owned()).collect();
    let status = agent()
        .post(&server.url("/v1/logs"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/x-protobuf")
        .send(&logs_request("erasure-test", &bodies).encode_to_vec()[..])
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

fn log_count(server: &Sextant, token: &str) -> u64 {
    let (status, answer) = sql(server, token, "SELECT count(*) AS n FROM logs");
    assert_eq!(status, 200, "{answer}");
    answer["rows"][0]["n"].as_u64().unwrap()
}

fn erase(server: &Sextant, token: &str) -> (u16, serde_json::Value) {
    let mut response = agent()
        .delete(&server.url("/api/v1/tenant/data"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

#[test]
fn erased_tenant_data_stays_gone_after_restart_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    let admin = create_token(dir.path(), "acme", "admin");
    let viewer = create_token(dir.path(), "acme", "viewer");
    let other = create_token(dir.path(), "globex", "admin");
    let not_admins =
        ["viewer", "editor", "ingest"].map(|role| create_token(dir.path(), "acme", role));
    let server = Sextant::start_with_config(dir.path(), Some(CONFIG));

    send_logs(&server, &admin, &["a1", "a2"]);
    send_logs(&server, &other, &["g1"]);
    std::thread::sleep(std::time::Duration::from_millis(1_500)); // flushed to a segment file
    send_logs(&server, &admin, &["a3"]); // most likely still only in the log and buffer
    assert_eq!(log_count(&server, &viewer), 3);

    for token in &not_admins {
        let (status, answer) = erase(&server, token);
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["error"], "forbidden");
    }
    assert_eq!(
        log_count(&server, &viewer),
        3,
        "a refused erasure erases nothing"
    );

    let (status, answer) = erase(&server, &admin);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["tenant"], "acme");
    assert_eq!(answer["erased_rows"], 3, "{answer}");
    assert_eq!(log_count(&server, &viewer), 0);
    assert_eq!(log_count(&server, &other), 1);

    // SIGKILL: the erased records are still in the write-ahead log; replay must skip them.
    server.kill();
    let server = Sextant::start_with_config(dir.path(), Some(CONFIG));
    assert_eq!(log_count(&server, &viewer), 0);
    assert_eq!(log_count(&server, &other), 1);

    // Rows sent after the erasure are kept, through a clean restart too.
    send_logs(&server, &admin, &["after"]);
    server.stop();
    let server = Sextant::start_with_config(dir.path(), Some(CONFIG));
    assert_eq!(log_count(&server, &viewer), 1);
    assert_eq!(log_count(&server, &other), 1);
    server.stop();

    // On disk, only files the catalog lists are left (the erased ones went at start-up).
    let acme_files = sextant_store::segments_dir(dir.path()).join("acme");
    let listed = files_under(&acme_files);
    assert!(listed.len() <= 1, "erased files left behind: {listed:?}");
}
