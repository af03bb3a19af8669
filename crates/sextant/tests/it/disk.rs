//! A full disk, on a real small file system (a 96 MiB tmpfs mounted for the test; skipped where
//! mounting is not allowed): ingest is refused with 507 and a message once free space falls
//! below `storage.min_free_bytes`, what was accepted stays, the server stays ready, `/metrics`
//! counts the refusals, and ingest resumes by itself when space returns; and with no reserve,
//! a write-ahead log that runs into the full disk refuses the batches it could not write and
//! carries on when space returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Sextant, agent, create_token, running_as_root, sql};

/// Unmounts its mount point when dropped (lazily, so a crashed server cannot hold it).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A tmpfs of `megabytes` at `at`, or `None` where this process may not mount one.
fn small_file_system(at: &Path, megabytes: u64) -> Option<Mounted> {
    if !running_as_root() {
        return None;
    }
    std::fs::create_dir_all(at).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    mounted.then(|| Mounted(at.to_owned()))
}

fn free_bytes(at: &Path) -> u64 {
    let stat = rustix::fs::statvfs(at).unwrap();
    stat.f_bavail * stat.f_frsize
}

fn send(server: &Sextant, token: &str, line: &str) -> (u16, String) {
    let body = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "disk-test"}}]},
        "scopeLogs": [{"logRecords": [{"body": {"stringValue": line}}]}],
    }]});
    let mut response = agent()
        .post(&server.url("/v1/logs"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// Sends `line` until the answer is `status` (the free space is looked up at most once a
/// second); the last answer's body, and how many sends before it were accepted.
fn send_until(server: &Sextant, token: &str, line: &str, status: u16) -> (String, usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut accepted = 0;
    loop {
        let (got, body) = send(server, token, line);
        if got == status {
            return (body, accepted);
        }
        accepted += usize::from(got == 200);
        assert!(
            Instant::now() < deadline,
            "wanted {status}, got {got}: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A server on a fresh tmpfs of its own, with acme's ingest and viewer tokens. Fields drop in
/// order: the server stops before its file system is unmounted.
struct SmallDisk {
    server: Sextant,
    ingest: String,
    viewer: String,
    /// The tmpfs's mount point (the data directory is `data` in it).
    at: PathBuf,
    _mounted: Mounted,
    _dir: tempfile::TempDir,
}

/// [`SmallDisk`] of `megabytes` with `config`; `None`, said on stderr, where this process may
/// not mount one.
fn small_disk(megabytes: u64, config: &str) -> Option<SmallDisk> {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("small");
    let Some(mounted) = small_file_system(&at, megabytes) else {
        eprintln!("skipped: this process cannot mount a tmpfs (it needs root)");
        return None;
    };
    let data = at.join("data");
    let ingest = create_token(&data, "acme", "ingest");
    let viewer = create_token(&data, "acme", "viewer");
    let server = Sextant::start_with_config(&data, Some(config));
    Some(SmallDisk {
        server,
        ingest,
        viewer,
        at,
        _mounted: mounted,
        _dir: dir,
    })
}

fn assert_ready(server: &Sextant, why: &str) {
    assert_eq!(
        agent().get(&server.url("/readyz")).call().unwrap().status(),
        200,
        "{why}"
    );
}

/// Waits until `last` is stored, then checks that `first` is too and that `during` is stored
/// exactly `taken` times: nothing accepted was lost, nothing refused was kept.
fn assert_stored(disk: &SmallDisk, first: &str, during: &str, taken: usize, last: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer) = sql(
            &disk.server,
            &disk.viewer,
            "SELECT body FROM logs WHERE service = 'disk-test' ORDER BY time",
        );
        assert_eq!(status, 200, "{answer}");
        let bodies: Vec<&str> = answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["body"].as_str())
            .collect();
        if bodies.contains(&last) {
            assert!(bodies.contains(&first), "{bodies:?}");
            let stored = bodies.iter().filter(|b| **b == during).count();
            assert_eq!(
                stored, taken,
                "only the accepted sends are stored: {bodies:?}"
            );
            return;
        }
        assert!(Instant::now() < deadline, "{answer}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_full_disk_refuses_ingest_with_507_keeps_what_was_accepted_and_recovers() {
    // A 32 MiB reserve; write-ahead log segments of 4 MiB so the log fits the small disk.
    let config = "[storage]\nmin_free_bytes = 33554432\n[wal]\nsegment_bytes = 4194304\n";
    let Some(disk) = small_disk(96, config) else {
        return;
    };
    let (server, ingest, small) = (&disk.server, &disk.ingest, &disk.at);
    send_until(server, ingest, "before the disk filled", 200);

    // Something else fills the disk to 16 MiB free: below the reserve.
    let filler = small.join("filler");
    let fill = free_bytes(small).saturating_sub(16 * 1024 * 1024);
    std::fs::write(&filler, vec![0u8; fill as usize]).unwrap();
    // (Sends within a second of the filling may still be taken: each is stored.)
    let (refused, taken) = send_until(server, ingest, "while the disk is full", 507);
    let answer: serde_json::Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(answer["error"], "disk_full", "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("disk is full") && message.contains("storage.min_free_bytes"),
        "{message}"
    );
    assert_ready(
        server,
        "the server stays ready: it refuses, it has not failed",
    );
    let metrics = agent()
        .get(&server.url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let refusals = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sextant_ingest_refused_disk_full_total "))
        .and_then(|n| n.trim().parse::<f64>().ok());
    assert!(refusals.is_some_and(|n| n >= 1.0), "{metrics}");

    // Space returns: ingest resumes without a restart, and nothing accepted was lost.
    space_returns(disk, &filler, taken);
}

#[test]
fn a_write_ahead_log_that_finds_no_space_refuses_that_batch_and_carries_on() {
    // No reserve: the log itself runs into the full disk.
    let config = "[storage]\nmin_free_bytes = 0\n[wal]\nsegment_bytes = 4194304\n";
    let Some(disk) = small_disk(64, config) else {
        return;
    };
    let (server, ingest) = (&disk.server, &disk.ingest);
    send_until(server, ingest, "before the disk filled", 200);

    // Something else takes every free byte.
    let filler = disk.at.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&[0u8; 512]).is_ok() {}
    }
    let (refused, taken) = send_until(server, ingest, "while the disk is full", 507);
    let answer: serde_json::Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(answer["error"], "disk_full", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("write-ahead log could not write"),
        "{answer}"
    );
    assert_ready(server, "the log refused one batch, it has not failed");

    // Space returns: the same log takes batches again, without a restart.
    space_returns(disk, &filler, taken);
}

/// Removes the file that filled `disk`, sends until a batch is taken again, checks that every
/// batch taken before, during (`taken` of them) and after is stored, and stops the server.
fn space_returns(disk: SmallDisk, filler: &std::path::Path, taken: usize) {
    std::fs::remove_file(filler).unwrap();
    send_until(&disk.server, &disk.ingest, "after space returned", 200);
    assert_stored(
        &disk,
        "before the disk filled",
        "while the disk is full",
        taken,
        "after space returned",
    );
    disk.server.stop();
}
