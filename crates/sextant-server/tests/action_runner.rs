//! `ActionRunner` on real processes: an action sees exactly its environment, nothing it starts
//! outlives it (at the time limit or after it exits), and its output is cut at 64 KiB without
//! blocking it. Actions run as `nobody` when the tests run as root, else as the tests' user.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sextant_incidents::action::{ActionSpec, Actions};
use sextant_server::action_runner::{ActionRunner, server_is_root};

fn spec(program: &str, args: &[&str], timeout_seconds: u64) -> ActionSpec {
    let root = server_is_root();
    ActionSpec {
        description: String::new(),
        program: program.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        params: BTreeMap::new(),
        timeout_seconds,
        env: BTreeMap::from([("ONLY".to_owned(), "this".to_owned())]),
        user: root.then(|| "nobody".to_owned()),
        run_as_server_user: !root,
        working_dir: "/".into(),
        tenants: vec!["t".into()],
    }
}

/// Runs `spec` once: (succeeded, output, seconds taken).
fn run(spec: ActionSpec) -> (bool, serde_json::Value, f64) {
    let data = tempfile::tempdir().unwrap();
    let actions = Actions::new(&BTreeMap::from([("a".to_owned(), spec)])).unwrap();
    let runner = ActionRunner::new(actions, data.path()).unwrap();
    let action = runner.actions().get("t", "a").unwrap();
    let args = action.arguments(&BTreeMap::new()).unwrap();
    let started = Instant::now();
    let (ok, output) = runner.run(action, &args);
    (ok, output, started.elapsed().as_secs_f64())
}

/// Whether a process whose command line holds `needle` is alive, after up to 3 s.
fn still_running(needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let alive = std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
        });
        if !alive || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_environment_is_exactly_the_actions() {
    let (ok, output, _) = run(spec("/usr/bin/env", &[], 10));
    assert!(ok, "{output}");
    assert_eq!(output["stdout"], "ONLY=this\n");
}

#[test]
fn the_time_limit_kills_the_process_group() {
    let (ok, output, seconds) = run(spec("/bin/sh", &["-c", "sleep 2718 & sleep 2719"], 1));
    assert!(!ok);
    assert_eq!(
        output["error"], "killed after 1 s, with its process group",
        "{output}"
    );
    assert!(seconds < 5.0, "{seconds} s");
    assert!(!still_running("sleep 271"), "the background sleep survived");
}

#[test]
fn what_a_finished_program_started_is_killed_and_does_not_hold_the_step() {
    let (ok, output, seconds) = run(spec("/bin/sh", &["-c", "sleep 2720 & echo started"], 30));
    assert!(ok, "{output}");
    assert_eq!(output["stdout"], "started\n");
    assert!(
        seconds < 5.0,
        "the step waited for the background process: {seconds} s"
    );
    assert!(!still_running("sleep 2720"));
}

#[test]
fn long_output_is_cut_without_blocking_the_program() {
    let (ok, output, _) = run(spec(
        "/bin/sh",
        &[
            "-c",
            "head -c 300000 /dev/zero | tr '\\000' a; echo done >&2",
        ],
        30,
    ));
    assert!(ok, "{output}");
    assert_eq!(output["stdout"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(output["stderr"], "done\n");
}
