//! `sextant demo` left alone: within three minutes its simulated shop's faults become one
//! incident each with the true root cause ranked first (the database's latency, the bad deploy
//! of payment, cart's memory leak caught by the capacity forecast), the silenced disk alert
//! opens none, and payment's rollback runbook, once approved, runs the demo's `rollback`
//! action.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Kill, agent, binary};

/// When the demo's database fault ends, in seconds after the shop starts (its schedule:
/// `FAULTS` in `src/demo/shop.rs`, which `sextant demo` also prints).
const DATABASE_FAULT_END_S: u64 = 65;

fn get(url: &str, token: &str) -> Value {
    let mut response = agent()
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{url}");
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

/// One incident as the test sees it.
struct Seen {
    /// The service ranked first.
    top: String,
    kinds: Vec<String>,
    titles: Vec<String>,
    services: Vec<String>,
}

fn incidents(base: &str, token: &str) -> Vec<Seen> {
    let list = get(&format!("{base}/api/v1/incidents?limit=100"), token);
    list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|summary| {
            let id = summary["id"].as_u64().unwrap();
            let incident = get(&format!("{base}/api/v1/incidents/{id}"), token);
            let top = incident["root_cause"]["services"][0]["service"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let members = incident["members"].as_array().unwrap();
            let field = |name: &str| {
                members
                    .iter()
                    .map(|m| m[name].as_str().unwrap_or("").to_owned())
                    .collect()
            };
            Seen {
                top,
                kinds: field("kind"),
                titles: field("title"),
                services: field("service"),
            }
        })
        .collect()
}

#[test]
fn the_demo_opens_an_incident_per_fault_with_its_true_root_cause_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let demo = Kill(child);
    let (mut addr, mut token) = (None, None);
    while addr.is_none() || token.is_none() {
        let line = lines
            .next()
            .expect("the demo printed its address and token")
            .unwrap();
        if let Some(rest) = line.strip_prefix("sextant listening on ") {
            addr = Some(rest.trim().to_owned());
        }
        if let Some((_, rest)) = line.split_once("admin token ") {
            token = Some(rest.trim().to_owned());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    // No later than the shop's start: its fault schedule counts from a moment after this.
    let shop_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let (base, token) = (format!("http://{}", addr.unwrap()), token.unwrap());

    let expected = ["postgres", "payment", "cart"];
    let caught = |found: &[Seen]| {
        found
            .iter()
            .any(|i| i.top == "cart" && i.kinds.iter().any(|k| k == "capacity"))
    };
    let started = Instant::now();
    let found = loop {
        std::thread::sleep(Duration::from_secs(5));
        let found = incidents(&base, &token);
        let done = expected
            .iter()
            .all(|service| found.iter().any(|i| i.top == *service))
            && caught(&found);
        if done || started.elapsed() > Duration::from_secs(180) {
            break found;
        }
    };
    let summary: Vec<String> = found
        .iter()
        .map(|i| format!("{} first: {:?} {:?}", i.top, i.services, i.titles))
        .collect();
    for service in expected {
        assert!(
            found.iter().any(|i| i.top == service),
            "no incident with {service} ranked first within 3 minutes: {summary:#?}"
        );
    }
    assert!(
        caught(&found),
        "cart's memory leak is caught by the capacity forecast: {summary:#?}"
    );
    for i in &found {
        assert!(
            !i.titles.iter().any(|t| t.contains("DiskSpaceLow")),
            "the silenced alert opened or joined an incident: {summary:#?}"
        );
    }
    // One incident per fault: the database's symptoms and payment's are not mixed.
    let db = found.iter().find(|i| i.top == "postgres").unwrap();
    let payment = found.iter().find(|i| i.top == "payment").unwrap();
    assert!(
        !db.services
            .iter()
            .any(|s| s == "payment" || s == "checkout"),
        "{summary:#?}"
    );
    assert!(
        !payment
            .services
            .iter()
            .any(|s| s == "postgres" || s == "catalogue"),
        "{summary:#?}"
    );

    // The rollback waits for approval, then runs the operator's action.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let runs = get(&format!("{base}/api/v1/runs"), &token);
        if let Some(run) = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "waiting_approval")
        {
            break run.clone();
        }
        assert!(Instant::now() < deadline, "no rollback waits: {runs}");
        std::thread::sleep(Duration::from_secs(1));
    };
    let id = run["id"].as_str().unwrap();
    let answer = agent()
        .post(&format!("{base}/api/v1/runs/{id}/approve"))
        .header("Authorization", &format!("Bearer {token}"))
        .send(r#"{"comment": "roll back"}"#.as_bytes())
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let done = get(&format!("{base}/api/v1/runs/{id}"), &token);
        if done["status"] != "running" && done["status"] != "waiting_approval" {
            break done;
        }
        assert!(Instant::now() < deadline, "{done}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    let step = &done["steps"][1];
    assert_eq!(step["input"]["action"], "rollback", "{done}");
    assert_eq!(
        step["output"]["stdout"],
        format!("rolling back payment for incident {}\n", run["incident"]),
        "{done}"
    );

    // The database's fault runs from 20 to 65 s: its incident stays open at least that long
    // (a detector that learnt the slow level as normal does not close it early).
    let fault_end = DATABASE_FAULT_END_S;
    std::thread::sleep(Duration::from_secs(fault_end + 5).saturating_sub(started.elapsed()));
    let list = get(&format!("{base}/api/v1/incidents?limit=100"), &token);
    let db_incidents: Vec<&Value> = list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["services"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "postgres")
        })
        .collect();
    for incident in &db_incidents {
        if let Some(resolved) = incident["resolved_at"].as_str() {
            let at = sextant_model::time::parse_rfc3339(resolved).unwrap();
            assert!(
                at >= shop_start + fault_end as i64 * 1_000_000_000,
                "postgres's incident resolved {} s after the shop started, before its fault \
                 ended at {fault_end} s: {incident}",
                (at - shop_start) / 1_000_000_000
            );
        }
    }
    drop(demo);
}
