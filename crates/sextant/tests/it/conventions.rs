//! House rules checked as tests: every Rust source file opens with a `//!` line, and every
//! command and option of the command line says what it is for.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_opens_with_a_doc_line() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&crates, &mut files);
    assert!(files.len() > 10, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            !text.starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line: {missing:?}"
    );
}

/// The subcommands a help text lists under `Commands:` (but `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// What is wrong with one command's help text.
fn help_problems(path: &[String], help: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let lines: Vec<&str> = help.lines().collect();
    if lines
        .first()
        .is_none_or(|line| line.trim().is_empty() || line.starts_with("Usage:"))
    {
        problems.push(format!("{path:?}: no description"));
    }
    let mut in_options = false;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("Options:") || line.starts_with("Arguments:") {
            in_options = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_options = false;
        }
        let item = line.trim_start();
        let is_item =
            item.starts_with('-') || (item.starts_with('<') && !item.contains("  ") && i > 0);
        if in_options && is_item && line.len() - item.len() <= 6 {
            let described = item
                .split("  ")
                .filter(|part| !part.trim().is_empty())
                .count()
                > 1
                || lines.get(i + 1).is_some_and(|next| {
                    let next = next.trim_start();
                    !next.is_empty() && !next.starts_with('-') && !next.starts_with('<')
                });
            if !described {
                problems.push(format!("{path:?}: `{}` has no help", item.trim()));
            }
        }
        if line.matches("[default:").count() > 1 {
            problems.push(format!("{path:?}: a default twice in `{}`", line.trim()));
        }
    }
    problems
}

#[test]
fn every_command_and_option_has_help() {
    let mut pending = vec![Vec::<String>::new()];
    let mut problems = Vec::new();
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let output = std::process::Command::new(crate::support::binary())
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        assert!(output.status.success(), "{path:?} --help failed");
        let help = String::from_utf8(output.stdout).unwrap();
        problems.extend(help_problems(&path, &help));
        for name in subcommands(&help) {
            let mut next = path.clone();
            next.push(name);
            pending.push(next);
        }
        seen += 1;
    }
    assert!(seen > 15, "only {seen} commands");
    assert!(problems.is_empty(), "{problems:#?}");
}
