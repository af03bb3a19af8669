//! Snapshot tests over `testdata/patterns/*.log`: each file is mined with the default
//! configuration and compared with its committed `*.expected` (one `line<TAB>template` per
//! input line, final templates). After a reviewed change, regenerate them with
//! `UPDATE_EXPECT=1 cargo test -p sextant-analytics --test patterns_testdata`.

use std::fmt::Write;
use std::path::Path;

use sextant_analytics::patterns::{MinerConfig, TemplateMiner};

/// The expected-file text for `input`.
fn mine(input: &str) -> String {
    let mut miner = TemplateMiner::new(MinerConfig::default()).unwrap();
    let ids: Vec<_> = input
        .lines()
        .enumerate()
        .map(|(at, line)| miner.mine(line, at as i64).id)
        .collect();
    let mut out = String::new();
    for (line, id) in input.lines().zip(ids) {
        let template = miner
            .template(id)
            .expect("nothing is evicted in a small file");
        writeln!(out, "{line}\t{}", template.text()).unwrap();
    }
    out
}

#[test]
fn testdata_templates_match_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/patterns");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "log") {
            continue;
        }
        let actual = mine(&std::fs::read_to_string(&path).unwrap());
        let expected_path = path.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
        } else {
            let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
            assert_eq!(
                actual,
                expected,
                "{} differs from {}; rerun with UPDATE_EXPECT=1 after review",
                path.display(),
                expected_path.display()
            );
        }
        checked += 1;
    }
    assert!(checked > 0, "no testdata in {}", dir.display());
}
