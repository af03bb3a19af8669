//! Runbooks in a server shared by tenants: a tenant's editor cannot run a program of its own
//! choosing (the probe of `sh -c "id > FILE"` is refused at `PUT` and at load, and nothing
//! runs), only the operator's actions, as their configured user with `no_new_privs`, with
//! every templated parameter checked (an incident named `x; rm -rf /` or `../../etc` is refused
//! and audited), only by the tenants listed, and killed with its process group at the time
//! limit; a configuration that would run an action as root stops the start. Webhooks reach
//! loopback only where the operator allows it, and never through a redirect.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::runbooks::{alert, call, put_runbook, receiver, wait_for_run};
use crate::support::{
    Sextant, action_user, binary, create_token, files_under, markers_dir, running_as_root,
};

/// The probe: a runbook whose command step runs a shell that records who it is and lists the
/// data directory.
fn probe(file: &Path, data: &Path) -> String {
    format!(
        "name = \"probe\"\n[match]\nservices = [\"x\"]\n\
         [[step]]\nkind = \"command\"\nprogram = \"/bin/sh\"\n\
         args = [\"-c\", \"id > {0}; ls {1} >> {0}\"]\n",
        file.display(),
        data.display()
    )
}

/// Waits until the audit trail holds a record of `kind` that `check` accepts.
fn wait_for_audit(
    server: &Sextant,
    admin: &str,
    kind: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, trail) = call(
            server,
            admin,
            "GET",
            &format!("/api/v1/audit?kind={kind}&limit=1000"),
            "",
        );
        if let Some(record) = trail["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind && check(r))
        {
            return record.clone();
        }
        assert!(Instant::now() < deadline, "no {kind} record: {trail}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The processes whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

#[test]
fn a_tenants_editor_runs_only_the_operators_actions_checked_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let markers = markers_dir(dir.path());
    let editor = create_token(&data, "alpha", "editor");
    let admin = create_token(&data, "alpha", "admin");
    let beta = create_token(&data, "beta", "editor");
    let user = action_user();
    let config = format!(
        "[actions.whoami]\nprogram = \"/usr/bin/id\"\ntenants = [\"alpha\"]\n{user}\n\
         [actions.status]\nprogram = \"/bin/grep\"\n\
         args = [\"-E\", \"^(NoNewPrivs|Uid|Groups):\", \"/proc/self/status\"]\n\
         tenants = [\"alpha\"]\n{user}\nenv = {{ MARK = \"set-by-operator\" }}\n\
         [actions.peek]\nprogram = \"/bin/ls\"\nargs = [\"{data}\"]\ntenants = [\"alpha\"]\n{user}\n\
         [actions.restart]\ndescription = \"restart a service\"\nprogram = \"/bin/echo\"\n\
         args = [\"restarting\", \"{{{{service}}}}\"]\ntenants = [\"alpha\"]\n{user}\n\
         [actions.restart.params.service]\npattern = \"[a-z0-9-]+\"\n\
         [actions.hang]\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"sleep 3141 & sleep 3142; echo never\"]\n\
         timeout_seconds = 1\ntenants = [\"alpha\"]\n{user}\n",
        data = data.display()
    );
    let server = Sextant::start_with_config(&data, Some(&config));

    // The probe is refused at PUT, with the line and what to write instead.
    let file = markers.join("probe-ran");
    let (status, answer) = call(
        &server,
        &editor,
        "PUT",
        "/api/v1/runbooks/probe",
        &probe(&file, &data),
    );
    assert_eq!(status, 400, "{answer}");
    let reason = answer.to_string();
    assert!(
        reason.contains("probe.toml:4: step 1: `command` steps are not accepted")
            && reason.contains("kind = \\\"action\\\""),
        "{reason}"
    );
    // The same file on disk is refused at load; its error is listed.
    let on_disk = data.join("runbooks/alpha");
    std::fs::create_dir_all(&on_disk).unwrap();
    std::fs::write(on_disk.join("probe.toml"), probe(&file, &data)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, listed) = call(&server, &editor, "GET", "/api/v1/runbooks", "");
        if let Some(error) = listed["errors"]["probe.toml"].as_str() {
            assert!(
                error.starts_with("probe.toml:4: step 1: `command` steps are not accepted"),
                "{error}"
            );
            assert_eq!(listed["runbooks"], json!([]), "{listed}");
            break;
        }
        assert!(Instant::now() < deadline, "{listed}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A tenant sees the actions offered to it, without their programs; beta sees none and
    // cannot name alpha's.
    let (_, offered) = call(&server, &editor, "GET", "/api/v1/actions", "");
    let names: Vec<&str> = offered["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hang", "peek", "restart", "status", "whoami"]);
    assert!(!offered.to_string().contains("/usr/bin/id"), "{offered}");
    assert_eq!(
        offered["actions"][2]["params"]["service"]["pattern"],
        "[a-z0-9-]+"
    );
    let (_, none) = call(&server, &beta, "GET", "/api/v1/actions", "");
    assert_eq!(none, json!({"actions": []}));
    let (status, answer) = call(
        &server,
        &beta,
        "PUT",
        "/api/v1/runbooks/borrow",
        "name = \"borrow\"\n[[step]]\nkind = \"action\"\naction = \"whoami\"\n",
    );
    assert_eq!(status, 400);
    assert!(
        answer
            .to_string()
            .contains("borrow.toml:2: step 1: no action `whoami` for this tenant"),
        "{answer}"
    );

    put_runbook(
        &server,
        &editor,
        "inspect",
        "name = \"inspect\"\n[match]\nservices = [\"probe-a\"]\n\
         [[step]]\nkind = \"action\"\naction = \"whoami\"\n\
         [[step]]\nkind = \"action\"\naction = \"status\"\n\
         [[step]]\nkind = \"action\"\naction = \"peek\"\ncontinue_on_error = true\n\
         [[step]]\nkind = \"action\"\naction = \"restart\"\n\
         params = { service = \"{{incident.services}}\" }\n",
    );
    put_runbook(
        &server,
        &editor,
        "guard",
        "name = \"guard\"\n[match]\npattern = \"Hostile\"\n\
         [[step]]\nkind = \"action\"\naction = \"restart\"\n\
         params = { service = \"{{incident.services}}\" }\n",
    );
    put_runbook(
        &server,
        &editor,
        "slow",
        "name = \"slow\"\n[match]\nservices = [\"probe-slow\"]\n\
         [[step]]\nkind = \"action\"\naction = \"hang\"\n",
    );

    // Allowed parameters run, as the configured user, without new privileges.
    alert(&server, &editor, "probe-a", "Inspect");
    let run = wait_for_run(&server, &editor, "inspect finishes", |r| {
        r["runbook"]["name"] == "inspect" && r["status"] != "running"
    });
    let steps = run["steps"].as_array().unwrap();
    let stdout = |i: usize| steps[i]["output"]["stdout"].as_str().unwrap_or_default();
    assert_eq!(steps.len(), 4, "{run}");
    assert_eq!(steps[3]["status"], "succeeded", "{run}");
    assert_eq!(stdout(3), "restarting probe-a\n");
    assert_eq!(steps[3]["input"]["args"], json!(["restarting", "probe-a"]));
    assert!(stdout(1).contains("NoNewPrivs:\t1"), "{run}");
    if running_as_root() {
        assert_eq!(run["status"], "failed_steps_continued", "{run}");
        assert!(
            stdout(0).starts_with("uid=65534(nobody) gid=65534"),
            "{run}"
        );
        assert!(
            !stdout(0).contains("groups=0") && !stdout(0).contains("(root)"),
            "no group of root's is kept: {run}"
        );
        assert!(
            stdout(1).contains("Uid:\t65534\t65534\t65534\t65534"),
            "{run}"
        );
        assert!(
            steps[0]["input"]["user"]
                .as_str()
                .unwrap()
                .starts_with("nobody (65534:65534)"),
            "{run}"
        );
        // The data directory is not the action user's to read.
        assert_eq!(steps[2]["status"], "failed", "{run}");
        assert!(
            steps[2]["output"]["stderr"]
                .as_str()
                .unwrap()
                .contains("Permission denied"),
            "{run}"
        );
    } else {
        println!("not root: the actions ran as this user (`run_as_server_user = true`)");
    }

    // The probe's incident (checked at the end, after the other runs): nothing runs.
    alert(&server, &editor, "x", "probe");

    // A parameter outside its pattern after templating is refused, run after run, and audited.
    for (service, title) in [
        ("x; rm -rf /", "HostileShell"),
        ("../../etc", "HostilePath"),
    ] {
        alert(&server, &editor, service, title);
        let run = wait_for_run(&server, &editor, title, |r| {
            r["runbook"]["name"] == "guard"
                && r["context"]["services"][0] == service
                && r["status"] == "failed"
        });
        assert_eq!(run["steps"][0]["status"], "refused", "{run}");
        assert!(
            run["steps"][0]["output"]["refused"]
                .as_str()
                .unwrap()
                .contains("does not match `[a-z0-9-]+`"),
            "{run}"
        );
        assert!(run["steps"][0]["input"].get("args").is_none(), "{run}");
        wait_for_audit(&server, &admin, "runbook.action_refused", |r| {
            r["detail"]["input"]["params"]["service"] == service
        });
    }

    // The time limit kills the whole process group.
    alert(&server, &editor, "probe-slow", "Slow");
    let run = wait_for_run(&server, &editor, "slow is killed", |r| {
        r["runbook"]["name"] == "slow" && r["status"] == "failed"
    });
    assert!(
        run["steps"][0]["output"]["error"]
            .as_str()
            .unwrap()
            .starts_with("killed after 1 s"),
        "{run}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with("sleep 314").is_empty() {
        assert!(
            Instant::now() < deadline,
            "left running: {:?}",
            processes_with("sleep 314")
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The probe never ran, and no run was made for it.
    let (_, runs) = call(&server, &editor, "GET", "/api/v1/runs", "");
    assert!(
        !runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["runbook"]["name"] == "probe"),
        "{runs}"
    );
    assert!(!file.exists(), "the probe ran");

    // The trail names the action, its parameters and who defined the runbook.
    let put = wait_for_audit(&server, &admin, "runbook.put", |r| {
        r["subject"] == "inspect"
    });
    let started = wait_for_audit(&server, &admin, "runbook.run", |r| {
        r["detail"]["runbook"] == "inspect"
    });
    assert_eq!(
        started["detail"]["defined_by"]["token"], put["actor"],
        "{started}"
    );
    let step = wait_for_audit(&server, &admin, "runbook.step", |r| {
        r["detail"]["input"]["action"] == "restart"
            && r["detail"]["input"]["params"]["service"] == "probe-a"
    });
    assert_eq!(step["detail"]["input"]["program"], "/bin/echo", "{step}");
    server.stop();
}

#[test]
fn a_start_that_would_run_an_action_as_root_or_as_the_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let refused = |action: &str, why: &str| {
        let config = dir.path().join("refused.toml");
        std::fs::write(
            &config,
            format!("[actions.x]\nprogram = \"/bin/echo\"\ntenants = [\"*\"]\n{action}"),
        )
        .unwrap();
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "{action}: started");
        assert!(stderr.contains(why), "{action}: {stderr}");
    };
    if running_as_root() {
        refused(
            "",
            "action `x`: the server runs as root: give the action an unprivileged `user`",
        );
        refused("run_as_server_user = true\n", "the server runs as root");
    } else {
        refused("", "action `x`: it would run as the server's own user");
    }
    refused("user = \"root\"\n", "actions never run as root");
    refused("user = \"0:0\"\n", "actions never run as root");
    refused("user = \"no-such-user-here\"\n", "not in /etc/passwd");
    refused(
        &format!("{}\nworking_dir = \"{}\"\n", action_user(), data.display()),
        "is inside the data directory",
    );
}

#[test]
fn webhooks_reach_loopback_only_where_allowed_and_never_by_a_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let editor = create_token(&data, "ops", "editor");
    let admin = create_token(&data, "ops", "admin");
    let (allowed, received) = receiver(0);
    let allowed_addr = allowed.trim_start_matches("http://").to_owned();
    // A refused port: it counts every connection it gets.
    let refused = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_port = refused.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in refused.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let config = format!("[egress]\nallow = [\"{allowed_addr}\"]\n");
    let server = Sextant::start_with_config(&data, Some(&config));
    let (status, answer) = call(
        &server,
        &editor,
        "PUT",
        "/api/v1/secrets/tok",
        // Quotes and a slash: the receiver's echo holds the value JSON-escaped.
        "{\"value\": \"s3cr3t-egress \\\"v\\\"/x\"}",
    );
    assert_eq!(status, 200, "{answer}");
    let webhook = |url: &str| {
        format!(
            "[[step]]\nkind = \"webhook\"\nurl = \"{url}\"\nretries = 1\ncontinue_on_error = true\n"
        )
    };
    let runbook = [
        "name = \"egress\"\n[match]\nservices = [\"edge\"]\n".to_owned(),
        webhook(&format!("http://127.0.0.1:{refused_port}/direct")),
        webhook(&format!("http://[::1]:{refused_port}/v6")),
        webhook(&format!("http://localhost:{refused_port}/name")),
        webhook(&format!("{allowed}/ok")),
        webhook(&format!("{allowed}/redirect/127.0.0.1:{refused_port}/stolen")),
        format!(
            "[[step]]\nkind = \"webhook\"\nurl = \"{allowed}/echo\"\nbody = '{{\"key\": \"{{{{secret:tok}}}}\"}}'\n"
        ),
    ]
    .concat();
    put_runbook(&server, &editor, "egress", &runbook);
    alert(&server, &editor, "edge", "EdgeDown");
    let run = wait_for_run(&server, &editor, "egress finishes", |r| {
        r["runbook"]["name"] == "egress"
            && r["status"] != "running"
            && r["status"] != "waiting_approval"
    });
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6, "{run}");
    for (i, what) in [
        (0, "127.0.0.1"),
        (1, "::1"),
        (2, "localhost"),
        (4, "redirect"),
    ] {
        let error = steps[i]["output"]["error"].as_str().unwrap_or_default();
        assert_eq!(steps[i]["status"], "failed", "{what}: {run}");
        assert!(
            error.contains("egress refused") && error.contains("a loopback address"),
            "{what}: {error}"
        );
        assert_eq!(steps[i]["attempts"], 1, "a refusal is not retried: {run}");
    }
    assert_eq!(steps[3]["status"], "succeeded", "{run}");
    assert_eq!(steps[3]["output"]["status"], 200);
    assert_eq!(steps[3]["output"]["body"], "ok");
    // The echo of the secret is recorded masked.
    assert_eq!(steps[5]["status"], "succeeded", "{run}");
    assert_eq!(steps[5]["output"]["body"], "{\"key\": \"***\"}", "{run}");
    assert!(!run.to_string().contains("s3cr3t-egress"), "{run}");
    let (_, audit) = call(&server, &admin, "GET", "/api/v1/audit?limit=1000", "");
    assert!(audit["records"].as_array().unwrap().len() > 6, "{audit}");
    assert!(!audit.to_string().contains("s3cr3t-egress"), "{audit}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the refused port was reached"
    );
    server.stop();
    // Nor is it anywhere in the data directory: not in meta.db, its WAL or a segment.
    for file in files_under(&data) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(13).any(|w| w == b"s3cr3t-egress"),
            "{} holds the secret",
            file.display()
        );
    }
    let paths: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    // The allowed receiver answered the redirect; its target was never reached.
    assert!(paths.contains(&"/ok".to_owned()), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.starts_with("/redirect/")),
        "{paths:?}"
    );
}
