//! Log templates through the real binary: `sextant patterns mine` (CSV out of a small stdin),
//! `sextant eval loghub` (the accuracy floors on the shared loghub-2k benchmark), the
//! template ids that ingested log rows carry across a crash, and the patterns API.

use std::io::Write;
use std::process::{Command, Stdio};

use prost::Message;
use serde_json::{Value, json};

use crate::support::{Sextant, agent, binary, create_token, datasets_dir, logs_request, sql};

/// Floors on the corrected loghub-2k labels (mean over the 16 systems): the miner reached
/// GA 0.978 and PA 0.880; the floors are that less a small margin, and above the targets of
/// 0.95 and 0.80. A change that drops below them is a regression in template mining.
const MEAN_GA_FLOOR: f64 = 0.97;
const MEAN_PA_FLOOR: f64 = 0.87;

#[test]
fn patterns_mine_writes_quoted_csv_from_stdin() {
    // Five user names: enough variants for the name to count as a variable.
    let mut input = Vec::new();
    for (user, port) in [
        ("root", 52211),
        ("admin", 40022),
        ("oracle", 1022),
        ("test", 7),
    ] {
        writeln!(
            input,
            "Accepted password for {user} from 10.0.0.7 port {port} ssh2"
        )
        .unwrap();
    }
    input.extend_from_slice(b"Accepted password for guest from 10.0.0.9 port 22 ssh2\r\n");
    input.extend_from_slice(b"\ndisk \"/dev/sda1\", full\nbad \xff byte\n");
    let mut child = Command::new(binary())
        .args(["patterns", "mine"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sextant");
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "exit {}", output.status);
    let mut reader = csv::Reader::from_reader(output.stdout.as_slice());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["line", "template_id", "template"]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|record| record.unwrap().iter().map(str::to_owned).collect())
        .collect();
    let lines: Vec<&str> = rows.iter().map(|row| row[0].as_str()).collect();
    assert_eq!(lines, ["1", "2", "3", "4", "5", "6", "7", "8"]);
    let template = |at: usize| rows[at][2].as_str();
    assert_eq!(
        template(0),
        "Accepted password for <*> from <*> port <*> ssh2"
    );
    assert!(
        rows[..5].iter().all(|row| row[1] == rows[0][1]),
        "all logins share a template id"
    );
    assert_eq!(template(5), "", "an empty line gets its own template");
    assert_eq!(
        template(6),
        "disk \"<*>\", full",
        "quotes and commas survive CSV"
    );
    assert_eq!(
        template(7),
        "bad \u{fffd} byte",
        "invalid UTF-8 is replaced"
    );
    let ids: std::collections::HashSet<&str> = rows.iter().map(|row| row[1].as_str()).collect();
    assert_eq!(ids.len(), 4);
}

#[test]
fn patterns_mine_cuts_endless_lines() {
    let mut input = vec![b'x'; 1_000_000];
    input.extend_from_slice(b"\nafter\n");
    let mut child = Command::new(binary())
        .args(["patterns", "mine"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sextant");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success(), "exit {}", output.status);
    let mut reader = csv::Reader::from_reader(output.stdout.as_slice());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0][2].len(),
        64 * 1024,
        "the miner looks at the first 64 KiB"
    );
    assert_eq!(&rows[1][2], "after");
}

#[test]
fn eval_loghub_meets_accuracy_floors() {
    let datasets = datasets_dir();
    let (dir, labels) = (
        datasets.join("loghub-2k"),
        datasets.join("loghub-2k-corrected"),
    );
    if !labels.is_dir() {
        eprintln!("skipped: no loghub-2k labels at {}", labels.display());
        return;
    }
    let output = Command::new(binary())
        .args(["eval", "loghub", "--dir"])
        .arg(&dir)
        .arg("--labels")
        .arg(&labels)
        .output()
        .expect("run sextant eval loghub");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    let systems = stdout
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with("mean"))
        .count();
    assert_eq!(systems, 16, "{stdout}");
    let mean: Vec<f64> = stdout
        .lines()
        .find(|line| line.starts_with("mean"))
        .expect("a mean row")
        .split_whitespace()
        .skip(1)
        .map(|value| value.parse().unwrap())
        .collect();
    let (ga, pa) = (mean[0], mean[1]);
    assert!(ga >= MEAN_GA_FLOOR, "mean GA {ga} below {MEAN_GA_FLOOR}");
    assert!(pa >= MEAN_PA_FLOOR, "mean PA {pa} below {MEAN_PA_FLOOR}");
}

fn post_logs(server: &Sextant, token: &str, bodies: &[String]) {
    let body = logs_request("auth", bodies).encode_to_vec();
    let status = agent()
        .post(&server.url("/v1/logs"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/x-protobuf")
        .send(&body[..])
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

/// `(body, template_id)` of every stored log row, by body.
fn templates(server: &Sextant, token: &str) -> Vec<(String, u64)> {
    let (status, answer) = sql(
        server,
        token,
        "SELECT body, template_id FROM logs ORDER BY body",
    );
    assert_eq!(status, 200, "{answer}");
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let id = row["template_id"]
                .as_u64()
                .unwrap_or_else(|| panic!("no template id in {row}"));
            (row["body"].as_str().unwrap().to_owned(), id)
        })
        .collect()
}

#[test]
fn ingested_logs_carry_template_ids_that_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = create_token(dir.path(), "acme", "ingest");
    let viewer = create_token(dir.path(), "acme", "viewer");
    let server = Sextant::start(dir.path());
    // Numbers and addresses are variables from the first line on, so these four share one
    // template id from the start (word variants would merge later, leaving aliases).
    let logins: Vec<String> = (1..=4)
        .map(|i| {
            format!(
                "session opened for uid {} from 10.1.0.{i} port 22",
                1000 + i
            )
        })
        .collect();
    let disks: Vec<String> = ["sda1", "sdb2"]
        .iter()
        .map(|d| format!("disk /dev/{d} is 95% full"))
        .collect();
    post_logs(&server, &ingest, &logins);
    post_logs(&server, &ingest, &disks);
    let before = templates(&server, &viewer);
    assert_eq!(before.len(), 6);
    let login_id = before[2].1; // sorted: two disk lines, then the four logins
    assert!(
        before[2..].iter().all(|(_, id)| *id == login_id),
        "{before:?}"
    );
    assert_ne!(before[0].1, login_id);

    // SIGKILL: nothing was flushed; the rows come back from the log with the same ids.
    server.kill();
    let server = Sextant::start(dir.path());
    assert_eq!(templates(&server, &viewer), before);

    // A later line of a known pattern gets the known id, and `template:ID` finds its lines.
    post_logs(
        &server,
        &ingest,
        &["session opened for uid 1009 from 10.1.0.9 port 22".to_owned()],
    );
    let mut response = agent()
        .get(&server.url("/api/v1/logs/search"))
        .query("q", format!("template:{login_id}"))
        .query("from", "0")
        .header("Authorization", &format!("Bearer {viewer}"))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(answer["logs"].as_array().unwrap().len(), 5, "{answer}");
}

fn get_json(server: &Sextant, token: &str, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let mut request = agent()
        .get(&server.url(path))
        .header("Authorization", &format!("Bearer {token}"));
    for (name, value) in params {
        request = request.query(*name, *value);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn patterns_api_counts_templates_per_tenant_and_per_step() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = create_token(dir.path(), "acme", "ingest");
    let viewer = create_token(dir.path(), "acme", "viewer");
    let other_ingest = create_token(dir.path(), "globex", "ingest");
    let other_viewer = create_token(dir.path(), "globex", "viewer");
    let server = Sextant::start(dir.path());
    let lines: Vec<String> = (1..=3)
        .map(|i| format!("request {i} took {} ms", 10 * i))
        .chain(["cache miss for key 42".to_owned()])
        .collect();
    post_logs(&server, &ingest, &lines);
    post_logs(&server, &other_ingest, &["globex only line 7".to_owned()]);

    let range = [("from", "1699999000"), ("to", "1700003600")];
    let (status, answer) = get_json(&server, &viewer, "/api/v1/patterns", &range);
    assert_eq!(status, 200, "{answer}");
    let patterns = answer["patterns"].as_array().unwrap();
    assert_eq!(patterns.len(), 2, "{answer}");
    assert_eq!(patterns[0]["template"], "request <*> took <*> ms");
    assert_eq!(patterns[0]["count"], 3);
    // The support request sets no severity text.
    assert_eq!(patterns[0]["severity"][""], 3, "{answer}");
    assert_eq!(patterns[0]["example"], "request 1 took 10 ms");
    assert_eq!(patterns[0]["first_seen"], "2023-11-14T22:13:20Z");
    assert_eq!(patterns[0]["last_seen"], "2023-11-14T22:13:20Z");
    assert_eq!(patterns[1]["count"], 1);

    let mut with_q = range.to_vec();
    with_q.push(("q", "CACHE"));
    let (_, answer) = get_json(&server, &viewer, "/api/v1/patterns", &with_q);
    assert_eq!(answer["patterns"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["patterns"][0]["template"], "cache miss for key <*>");

    // The other tenant sees only its own template.
    let (_, answer) = get_json(&server, &other_viewer, "/api/v1/patterns", &range);
    let theirs: Vec<&str> = answer["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["template"].as_str().unwrap())
        .collect();
    assert_eq!(theirs, ["globex only line <*>"]);

    // One template's lines per step, empty steps included.
    let id = patterns[0]["id"].as_u64().unwrap().to_string();
    let path = format!("/api/v1/patterns/{id}/series");
    let mut stepped = range.to_vec();
    stepped.push(("step", "30m"));
    let (status, answer) = get_json(&server, &viewer, &path, &stepped);
    assert_eq!(status, 200, "{answer}");
    let points = answer["points"].as_array().unwrap();
    // Steps start at multiples of 30 min since the epoch: 22:10 to 23:20 touches four.
    assert_eq!(points.len(), 4, "{answer}");
    let total: u64 = points.iter().map(|p| p[1].as_u64().unwrap()).sum();
    assert_eq!(total, 3);
    assert!(
        sextant_model::time::parse_rfc3339(points[0][0].as_str().unwrap()).is_some(),
        "{answer}"
    );
    // Ids are per tenant: the same id names the other tenant's own template for it.
    let (status, answer) = get_json(&server, &other_viewer, &path, &stepped);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["template"], "globex only line <*>");
    let (status, _) = get_json(&server, &viewer, "/api/v1/patterns/999/series", &stepped);
    assert_eq!(status, 404);
    let (status, _) = get_json(&server, &viewer, "/api/v1/patterns/x/series", &stepped);
    assert_eq!(status, 400);

    // The text is also a table to join in SQL.
    let (status, answer) = sql(
        &server,
        &viewer,
        "SELECT t.template, count(*) AS n FROM logs l \
         JOIN templates t ON l.template_id = t.template_id GROUP BY 1 ORDER BY 2 DESC",
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["rows"][0]["template"], "request <*> took <*> ms",
        "{answer}"
    );
    assert_eq!(answer["rows"][0]["n"], 3);
}

#[test]
fn a_merged_template_is_listed_once_and_its_old_id_still_finds_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = create_token(dir.path(), "acme", "ingest");
    let viewer = create_token(dir.path(), "acme", "viewer");
    let server = Sextant::start(dir.path());
    // alice and bob start two templates; carol's line makes the name a variable and merges
    // them. The lines keep the ids they were stored with.
    for user in ["alice", "bob", "carol"] {
        post_logs(
            &server,
            &ingest,
            &[format!("session opened for user {user}")],
        );
    }
    let carried = templates(&server, &viewer);
    let bob = carried[1].1;
    assert_ne!(carried[0].1, bob, "{carried:?}");

    let (status, answer) = sql(
        &server,
        &viewer,
        "SELECT template_id, ids, template, count FROM templates",
    );
    assert_eq!(status, 200, "{answer}");
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{answer}");
    assert_eq!(rows[0]["template"], "session opened for user <*>");
    assert_eq!(rows[0]["count"], 3);
    assert_eq!(rows[0]["ids"].as_array().unwrap().len(), 2, "{answer}");
    let survivor = rows[0]["template_id"].as_u64().unwrap();

    // Joined through `ids`, every line counts for the template once.
    let (status, answer) = sql(
        &server,
        &viewer,
        "SELECT t.template_id, count(*) AS n FROM logs l \
         JOIN (SELECT unnest(ids) AS id, template_id FROM templates) t \
         ON l.template_id = t.id GROUP BY 1",
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"], json!([{"template_id": survivor, "n": 3}]));

    let range = [("from", "1699999000"), ("to", "1700003600")];
    let (_, answer) = get_json(&server, &viewer, "/api/v1/patterns", &range);
    assert_eq!(answer["patterns"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["patterns"][0]["id"], survivor);
    assert_eq!(answer["patterns"][0]["count"], 3);

    // The old id names the template it merged into.
    let (status, answer) = get_json(
        &server,
        &viewer,
        &format!("/api/v1/patterns/{bob}/series"),
        &[("from", "1699999000"), ("to", "1700003600"), ("step", "1h")],
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], survivor);
    let total: u64 = answer["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .sum();
    assert_eq!(total, 3, "{answer}");
    let (status, answer) = get_json(
        &server,
        &viewer,
        "/api/v1/logs/search",
        &[("q", &format!("template:{bob}")), ("from", "0")],
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["logs"].as_array().unwrap().len(), 3, "{answer}");
}
