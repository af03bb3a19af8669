//! `sextant patterns mine` and `sextant eval loghub` through the real binary: CSV out of a
//! small stdin, and the accuracy floors on the shared loghub-2k benchmark.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{binary, datasets_dir};

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
