//! Runbooks through the real binary against a real HTTP receiver on loopback: a bad runbook is
//! refused with its line, a chat message arrives with the incident's fields, a webhook succeeds
//! after the receiver fails twice, an operator's action waits for approval and runs only after
//! it, never after a rejection or an expiry; a dry run sends nothing; the cooldown and the kill
//! switch hold runs back; and every step is in the audit trail. The server's configuration
//! allows egress to loopback (the receivers) and defines the `touch` action
//! ([`touch_action_config`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Sextant, agent, create_token, markers_dir, touch_action_config};

/// A request the receiver got: path and body.
pub type Received = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP receiver that records every request and answers 500 to the first `fail` requests
/// of each path ending in `/flaky`, the request's body to a path ending in `/echo`, a redirect
/// to `http://REST` to a path `/redirect/REST`, and 200 to the rest.
pub fn receiver(fail: usize) -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let got: Received = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut got = seen.lock().unwrap();
            let earlier = got.iter().filter(|(p, _)| *p == path).count();
            got.push((path.clone(), String::from_utf8_lossy(&body).into_owned()));
            drop(got);
            let (status, extra, answer) = if path.ends_with("/flaky") && earlier < fail {
                ("500 Internal Server Error", String::new(), b"ok".to_vec())
            } else if let Some(to) = path.strip_prefix("/redirect/") {
                (
                    "302 Found",
                    format!("location: http://{to}\r\n"),
                    Vec::new(),
                )
            } else if path.ends_with("/echo") {
                ("200 OK", String::new(), body)
            } else {
                ("200 OK", String::new(), b"ok".to_vec())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n",
                answer.len()
            );
            let _ = stream.write_all(&answer);
        }
    });
    (addr, got)
}

pub fn call(server: &Sextant, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let url = server.url(path);
    let auth = format!("Bearer {token}");
    let mut response = match method {
        "GET" => agent().get(&url).header("Authorization", &auth).call(),
        "PUT" => agent()
            .put(&url)
            .header("Authorization", &auth)
            .send(body.as_bytes()),
        _ => agent()
            .post(&url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body.as_bytes()),
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn put_runbook(server: &Sextant, token: &str, name: &str, toml: &str) {
    let (status, answer) = call(
        server,
        token,
        "PUT",
        &format!("/api/v1/runbooks/{name}"),
        toml,
    );
    assert_eq!(status, 200, "{name}: {answer}");
}

pub fn alert(server: &Sextant, token: &str, service: &str, title: &str) {
    let body = json!({"title": title, "service": service, "severity": "critical"}).to_string();
    let (status, answer) = call(server, token, "POST", "/api/v1/events", &body);
    assert_eq!(status, 200, "{answer}");
}

/// Waits until `check` finds what it wants in the runs list.
pub fn wait_for_run(
    server: &Sextant,
    token: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, runs) = call(server, token, "GET", "/api/v1/runs", "");
        if let Some(run) = runs["runs"].as_array().unwrap().iter().find(|r| check(r)) {
            return run.clone();
        }
        assert!(Instant::now() < deadline, "{what}: {runs}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn runbooks_notify_retry_wait_for_approval_and_keep_a_trail() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let editor = create_token(&data, "ops", "editor");
    let viewer = create_token(&data, "ops", "viewer");
    let admin = create_token(&data, "ops", "admin");
    let markers = markers_dir(dir.path());
    let config = touch_action_config(&markers, "\"ops\"");
    let server = Sextant::start_with_config(&data, Some(&config));
    let (hook, received) = receiver(2);
    let marker = |name: &str| markers.join(name);

    // A bad runbook is refused with its line; nothing is stored.
    let (status, answer) = call(
        &server,
        &editor,
        "PUT",
        "/api/v1/runbooks/bad",
        "name = \"bad\"\n[[step]]\nkind = \"teleport\"\n",
    );
    assert_eq!(status, 400);
    assert!(answer.to_string().contains("bad.toml:3:"), "{answer}");
    let (status, _) = call(
        &server,
        &viewer,
        "PUT",
        "/api/v1/runbooks/x",
        "name = \"x\"",
    );
    assert_eq!(status, 403);

    // A secret the webhook sends: stored sealed, listed by name only.
    let (status, _) = call(
        &server,
        &viewer,
        "PUT",
        "/api/v1/secrets/orch",
        "{\"value\": \"x\"}",
    );
    assert_eq!(status, 403);
    let (status, answer) = call(
        &server,
        &editor,
        "PUT",
        "/api/v1/secrets/orch",
        "{\"value\": \"tok-9f3a51-secret\"}",
    );
    assert_eq!(status, 200, "{answer}");
    let (_, listed) = call(&server, &viewer, "GET", "/api/v1/secrets", "");
    assert_eq!(listed["secrets"][0]["name"], "orch");
    assert!(!listed.to_string().contains("tok-9f3a51"), "{listed}");
    put_runbook(
        &server,
        &editor,
        "restart-cart",
        &format!(
            "name = \"restart-cart\"\n[match]\nservices = [\"cart\"]\nseverity = \"warning\"\n\
         [[step]]\nkind = \"chat\"\nurl = \"{hook}/chat\"\n\
         [[step]]\nkind = \"webhook\"\nurl = \"{hook}/flaky\"\nbody = '{{\"incident\": {{{{incident.id}}}}, \"title\": \"{{{{incident.title}}}}\", \"key\": \"{{{{secret:orch}}}}\"}}'\nretries = 3\n\
         [[step]]\nkind = \"wait_for_approval\"\nexpires_seconds = 60\n\
         [[step]]\nkind = \"action\"\naction = \"touch\"\nparams = {{ name = \"approved\" }}\n"
        ),
    );
    put_runbook(
        &server,
        &editor,
        "guarded",
        "name = \"guarded\"\n[match]\nservices = [\"payment\"]\n\
         [[step]]\nkind = \"wait_for_approval\"\n\
         [[step]]\nkind = \"action\"\naction = \"touch\"\nparams = { name = \"rejected\" }\n",
    );
    put_runbook(
        &server,
        &editor,
        "expiring",
        "name = \"expiring\"\n[match]\nservices = [\"search\"]\n\
         [[step]]\nkind = \"wait_for_approval\"\nexpires_seconds = 1\n\
         [[step]]\nkind = \"action\"\naction = \"touch\"\nparams = { name = \"expired\" }\n",
    );
    put_runbook(
        &server,
        &editor,
        "dry",
        &format!(
            "name = \"dry\"\ndry_run = true\n[match]\nservices = [\"shipping\"]\n\
         [[step]]\nkind = \"webhook\"\nurl = \"{hook}/dry\"\n"
        ),
    );
    let (_, listed) = call(&server, &viewer, "GET", "/api/v1/runbooks", "");
    assert_eq!(listed["runbooks"].as_array().unwrap().len(), 4, "{listed}");

    // The notify-retry-approve-run path.
    alert(&server, &editor, "cart", "HighErrorRate");
    let run = wait_for_run(&server, &editor, "restart-cart waits", |r| {
        r["runbook"]["name"] == "restart-cart" && r["status"] == "waiting_approval"
    });
    {
        let got = received.lock().unwrap();
        let chat: Vec<&(String, String)> = got.iter().filter(|(p, _)| p == "/chat").collect();
        assert_eq!(chat.len(), 1);
        let message: Value = serde_json::from_str(&chat[0].1).unwrap();
        let text = message["text"].as_str().unwrap();
        assert!(
            text.contains("HighErrorRate")
                && text.contains("[critical]")
                && text.contains("/api/v1/incidents/"),
            "{text}"
        );
        let flaky: Vec<&(String, String)> = got.iter().filter(|(p, _)| p == "/flaky").collect();
        assert_eq!(flaky.len(), 3, "two failures, then success");
        let body: Value = serde_json::from_str(&flaky[2].1).unwrap();
        assert_eq!(body["title"], "HighErrorRate");
        assert_eq!(body["key"], "tok-9f3a51-secret", "the secret is sent");
    }
    assert_eq!(run["steps"][1]["attempts"], 3, "{run}");
    // Times are RFC 3339 like every answer; the incident's services a list.
    for time in [
        &run["created_at"],
        &run["steps"][1]["started_at"],
        &run["steps"][1]["finished_at"],
        &run["approval"]["requested_at"],
        &run["approval"]["expires_at"],
    ] {
        let text = time.as_str().unwrap_or_default();
        assert!(
            text.len() == 24 && text.ends_with('Z') && text.as_bytes()[10] == b'T',
            "{time} in {run}"
        );
    }
    assert!(run["context"]["services"].is_array(), "{run}");
    let recorded = run["steps"][1]["input"]["body"].as_str().unwrap();
    assert!(recorded.contains("\"key\": \"***\""), "{recorded}");
    assert!(
        !run.to_string().contains("tok-9f3a51"),
        "the run never shows the secret"
    );
    assert!(
        !marker("approved").exists(),
        "the action waits for approval"
    );
    let id = run["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &server,
        &viewer,
        "POST",
        &format!("/api/v1/runs/{id}/approve"),
        "{\"comment\": \"go\"}",
    );
    assert_eq!(status, 403);
    let (status, _) = call(
        &server,
        &editor,
        "POST",
        &format!("/api/v1/runs/{id}/approve"),
        "{\"comment\": \"\"}",
    );
    assert_eq!(status, 400, "a comment is required");
    let (status, answer) = call(
        &server,
        &editor,
        "POST",
        &format!("/api/v1/runs/{id}/approve"),
        "{\"comment\": \"go ahead\"}",
    );
    assert_eq!(status, 200, "{answer}");
    let done = wait_for_run(&server, &editor, "restart-cart succeeds", |r| {
        r["id"] == id.as_str() && r["status"] == "succeeded"
    });
    assert!(marker("approved").exists());
    assert_eq!(done["approval"]["comment"], "go ahead");
    assert_eq!(done["steps"][3]["output"]["exit_code"], 0, "{done}");

    // Rejected: the action never runs.
    alert(&server, &editor, "payment", "CardDeclines");
    let run = wait_for_run(&server, &editor, "guarded waits", |r| {
        r["runbook"]["name"] == "guarded" && r["status"] == "waiting_approval"
    });
    let id = run["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &server,
        &editor,
        "POST",
        &format!("/api/v1/runs/{id}/reject"),
        "{\"comment\": \"not now\"}",
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        &server,
        &editor,
        "POST",
        &format!("/api/v1/runs/{id}/approve"),
        "{\"comment\": \"changed my mind\"}",
    );
    assert_eq!(status, 409, "a rejected run stays rejected");

    // Expired: the action never runs, and approval comes too late.
    alert(&server, &editor, "search", "IndexLag");
    let run = wait_for_run(&server, &editor, "expiring expires", |r| {
        r["runbook"]["name"] == "expiring" && r["status"] == "expired"
    });
    let id = run["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &server,
        &editor,
        "POST",
        &format!("/api/v1/runs/{id}/approve"),
        "{\"comment\": \"late\"}",
    );
    assert_eq!(status, 409);

    // Dry run: recorded, nothing sent.
    alert(&server, &editor, "shipping", "QueueGrowing");
    let run = wait_for_run(&server, &editor, "dry succeeds", |r| {
        r["runbook"]["name"] == "dry" && r["status"] == "succeeded"
    });
    assert_eq!(run["steps"][0]["status"], "dry_run", "{run}");
    assert!(
        run["steps"][0]["input"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/dry")
    );

    // The kill switch: no run while paused; one after resuming.
    let (status, _) = call(&server, &editor, "POST", "/api/v1/runbooks/pause", "");
    assert_eq!(status, 200);
    put_runbook(
        &server,
        &editor,
        "cool",
        &format!(
            "name = \"cool\"\ncooldown_seconds = 3600\n[match]\nservices = [\"user\"]\n\
         [[step]]\nkind = \"chat\"\nurl = \"{hook}/cool\"\n"
        ),
    );
    alert(&server, &editor, "user", "LoginErrors");
    std::thread::sleep(Duration::from_secs(3));
    let (_, runs) = call(&server, &editor, "GET", "/api/v1/runs", "");
    assert!(
        !runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["runbook"]["name"] == "cool"),
        "{runs}"
    );
    call(&server, &editor, "POST", "/api/v1/runbooks/resume", "");
    wait_for_run(&server, &editor, "cool runs after resume", |r| {
        r["runbook"]["name"] == "cool" && r["status"] == "succeeded"
    });

    // Cooldown: a second incident of `user` within the hour gets no run.
    let (_, incidents) = call(&server, &editor, "GET", "/api/v1/incidents?status=open", "");
    let user = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["services"] == json!(["user"]))
        .unwrap();
    let user_id = user["id"].as_u64().unwrap();
    let (status, _) = call(
        &server,
        &editor,
        "POST",
        &format!("/api/v1/incidents/{user_id}/resolve"),
        "{}",
    );
    assert_eq!(status, 200);
    alert(&server, &editor, "user", "LoginErrors");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, trail) = call(
            &server,
            &admin,
            "GET",
            "/api/v1/audit?kind=runbook.held",
            "",
        );
        if !trail["records"].as_array().unwrap().is_empty() {
            assert_eq!(
                trail["records"][0]["detail"]["reason"], "cooldown",
                "{trail}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no held run recorded");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, runs) = call(&server, &editor, "GET", "/api/v1/runs", "");
    let cool = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["runbook"]["name"] == "cool")
        .count();
    assert_eq!(cool, 1);
    assert_eq!(
        received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == "/cool")
            .count(),
        1
    );
    assert!(!received.lock().unwrap().iter().any(|(p, _)| p == "/dry"));
    assert!(!marker("rejected").exists() && !marker("expired").exists());

    // Nothing under the data directory holds the secret in the clear.
    let mut files = vec![data.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(10).any(|w| w == b"tok-9f3a51"),
                "{} holds the secret",
                path.display()
            );
        }
    }

    // The trail holds every run, step, approval and rejection.
    let (_, trail) = call(&server, &admin, "GET", "/api/v1/audit?limit=1000", "");
    let kinds: Vec<&str> = trail["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "runbook.put",
        "runbook.run",
        "runbook.step",
        "runbook.approval_requested",
        "run.approve",
        "run.reject",
        "run.expired",
        "runbooks.pause",
        "runbooks.resume",
        "runbook.finished",
        "secret.put",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let steps = kinds.iter().filter(|k| **k == "runbook.step").count();
    assert!(steps >= 5, "{kinds:?}");
    server.stop();
}

#[test]
fn a_run_waiting_on_an_incident_that_resolves_expires_and_cannot_be_approved() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let editor = create_token(&data, "ops", "editor");
    let markers = markers_dir(dir.path());
    // Incidents resolve a second after their members do.
    let config = format!(
        "{}[incidents]\nresolve_quiet_seconds = 1\n",
        touch_action_config(&markers, "\"ops\"")
    );
    let server = Sextant::start_with_config(&data, Some(&config));
    put_runbook(
        &server,
        &editor,
        "restart-db",
        "name = \"restart-db\"\n[match]\nservices = [\"db\"]\n\
         [[step]]\nkind = \"wait_for_approval\"\nexpires_seconds = 600\n\
         [[step]]\nkind = \"action\"\naction = \"touch\"\nparams = { name = \"restarted\" }\n",
    );
    alert(&server, &editor, "db", "DbDown");
    let run = wait_for_run(&server, &editor, "a run waits", |r| {
        r["status"] == "waiting_approval"
    });
    let id = run["id"].as_str().unwrap().to_owned();
    // The fault ends before anyone decides: the incident resolves, and the run says so.
    let resolved =
        json!({"title": "DbDown", "service": "db", "severity": "critical", "status": "resolved"});
    let (status, answer) = call(
        &server,
        &editor,
        "POST",
        "/api/v1/events",
        &resolved.to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    let run = wait_for_run(&server, &editor, "the run expires", |r| {
        r["id"] == id.as_str() && r["status"] == "expired"
    });
    let why = run["steps"][0]["output"].as_str().unwrap_or_default();
    assert!(
        why.contains("resolved at") && why.contains("unrun"),
        "{run}"
    );
    let (status, answer) = call(
        &server,
        &editor,
        "POST",
        &format!("/api/v1/runs/{id}/approve"),
        "{\"comment\": \"too late\"}",
    );
    assert_eq!(status, 409, "{answer}");
    assert!(!markers.join("restarted").exists(), "nothing ran");
}

#[test]
fn a_scenario_suite_incident_triggers_its_runbook_once() {
    use sextant_incidents::scenario::Scenario;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let editor = create_token(&data, "shop", "editor");
    let admin = create_token(&data, "shop", "admin");
    let markers = markers_dir(dir.path());
    let config = format!(
        "[anomaly]\nenabled = false\n{}",
        touch_action_config(&markers, "\"shop\"")
    );
    let server = Sextant::start_with_config(&data, Some(&config));
    let (hook, received) = receiver(0);
    put_runbook(
        &server,
        &editor,
        "page-dba",
        &format!(
            "name = \"page-dba\"\n[match]\nservices = [\"postgres\"]\nseverity = \"critical\"\n\
         [[step]]\nkind = \"chat\"\nurl = \"{hook}/dba\"\nformat = \"teams\"\n\
         [[step]]\nkind = \"wait_for_approval\"\n\
         [[step]]\nkind = \"action\"\naction = \"touch\"\nparams = {{ name = \"linked\" }}\n"
        ),
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/incidents/db-cascade.toml");
    let scenario = Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        - 60_000_000_000;
    let events: Vec<Value> = scenario
        .notifications(base)
        .iter()
        .map(|n| {
            json!({"title": n.signal.title, "service": n.signal.service, "severity": n.signal.severity,
                   "labels": n.signal.labels, "fingerprint": n.signal.fingerprint,
                   "status": if n.signal.resolved { "resolved" } else { "firing" },
                   "time": n.signal.time.to_string()})
        })
        .collect();
    let (status, answer) = call(
        &server,
        &editor,
        "POST",
        "/api/v1/events",
        &Value::Array(events).to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    let run = wait_for_run(&server, &editor, "page-dba waits", |r| {
        r["runbook"]["name"] == "page-dba" && r["status"] == "waiting_approval"
    });
    std::thread::sleep(Duration::from_secs(2));
    let (_, runs) = call(&server, &editor, "GET", "/api/v1/runs", "");
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        1,
        "one incident, one run: {runs}"
    );
    let got = received.lock().unwrap();
    assert_eq!(got.len(), 1);
    let card: Value = serde_json::from_str(&got[0].1).unwrap();
    assert_eq!(card["@type"], "MessageCard");
    assert!(
        card["title"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Incident {}", run["incident"])),
        "{card}"
    );
    // The card's signed link approves, once; a tampered one is refused.
    let approve = card["potentialAction"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "Approve")
        .unwrap()["targets"][0]["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(got);
    let open_link = |method: &str, url: &str| {
        let reply = match method {
            "GET" => agent().get(url).call(),
            "HEAD" => agent().head(url).call(),
            _ => agent().post(url).send_empty(),
        };
        let mut reply = reply.unwrap();
        let status = reply.status().as_u16();
        (
            status,
            reply.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    // The signature's last hex digit changed (to one it is not).
    let last = if approve.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{last}", &approve[..approve.len() - 1]);
    assert_eq!(open_link("GET", &tampered).0, 403);
    assert_eq!(open_link("POST", &tampered).0, 403);
    // Opening the link (as a person, a link previewer or a prefetcher would) only shows what
    // it would do, with a form that confirms.
    for method in ["HEAD", "GET"] {
        let (status, page) = open_link(method, &approve);
        assert_eq!(status, 200, "{method}: {page}");
        if method == "GET" {
            assert!(
                page.contains("Approve step 2 of runbook page-dba?"),
                "{page}"
            );
            assert!(page.contains("<form method=\"post\""), "{page}");
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !markers.join("linked").exists(),
        "opening a link decides nothing"
    );
    let (_, waiting) = call(
        &server,
        &editor,
        "GET",
        &format!("/api/v1/runs/{}", run["id"].as_str().unwrap()),
        "",
    );
    assert_eq!(waiting["status"], "waiting_approval", "{waiting}");
    // The run's record shows the message it sent, without the links' signatures.
    let signature = approve.rsplit("sig=").next().unwrap();
    assert!(!waiting.to_string().contains(signature), "{waiting}");
    assert!(waiting.to_string().contains("sig=hidden"), "{waiting}");
    let (status, page) = open_link("POST", &approve);
    assert_eq!(status, 200, "{page}");
    wait_for_run(&server, &editor, "page-dba succeeds", |r| {
        r["runbook"]["name"] == "page-dba" && r["status"] == "succeeded"
    });
    assert!(markers.join("linked").exists());
    assert_eq!(open_link("POST", &approve).0, 409, "a link works once");
    assert_eq!(open_link("GET", &approve).0, 409);
    // The audit names who decided and where the link was sent.
    let (_, audit) = call(&server, &admin, "GET", "/api/v1/audit?kind=run.approve", "");
    let text = audit.to_string();
    assert!(text.contains("link:approve"), "{text}");
    assert!(
        text.contains("by the signed link sent by chat step 1 (teams, 127.0.0.1:"),
        "{text}"
    );
    assert!(!text.contains(signature), "{text}");

    // A file broken on disk is refused with its line; the running server keeps the last good
    // version.
    let file = data.join("runbooks/shop/page-dba.toml");
    std::fs::write(
        &file,
        "name = \"page-dba\"\n[[step]]\nkind = \"chat\"\nurl = \"gopher://x\"\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, listed) = call(&server, &editor, "GET", "/api/v1/runbooks", "");
        if let Some(error) = listed["errors"]["page-dba.toml"].as_str() {
            assert!(error.starts_with("page-dba.toml:2:"), "{error}");
            let books = listed["runbooks"].as_array().unwrap();
            assert_eq!(books.len(), 1, "{listed}");
            assert!(
                books[0]["step"][0]["url"]
                    .as_str()
                    .unwrap()
                    .ends_with("/dba"),
                "{listed}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{listed}");
        std::thread::sleep(Duration::from_millis(200));
    }
    server.stop();
}
