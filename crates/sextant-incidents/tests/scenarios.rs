//! The correlation scenario suite (`testdata/incidents/*.toml`) through the correlator alone:
//! every scenario comes out as expected, and over the suite the alert-to-incident reduction
//! is at least 95 % with every incident at least 95 % pure.

use std::path::PathBuf;

use sextant_incidents::correlator::CorrelatorConfig;
use sextant_incidents::scenario::{Scenario, run_offline};

fn scenario_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/incidents");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_scenario_suite_folds_alerts_into_pure_incidents() {
    let config = CorrelatorConfig::default();
    let (mut notifications, mut incidents, mut suppressed) = (0, 0, 0);
    let mut min_purity = 1.0f64;
    let mut failures = Vec::new();
    println!(
        "{:<20} {:>13} {:>10} {:>9} {:>9} {:>10}",
        "scenario", "notifications", "suppressed", "incidents", "reduction", "min purity"
    );
    let files = scenario_files();
    assert!(files.len() >= 8, "the suite has {} scenarios", files.len());
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let scenario = Scenario::parse(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let outcome = run_offline(&scenario, &config);
        let purity = outcome.purities().into_iter().fold(1.0, f64::min);
        println!(
            "{name:<20} {:>13} {:>10} {:>9} {:>8.1}% {:>10.3}",
            outcome.notifications,
            outcome.suppressed,
            outcome.incidents,
            100.0 * outcome.reduction(),
            purity
        );
        notifications += outcome.notifications;
        suppressed += outcome.suppressed;
        incidents += outcome.incidents;
        min_purity = min_purity.min(purity);
        failures.extend(outcome.failures.iter().map(|f| format!("{name}: {f}")));
    }
    let reduction = 1.0 - incidents as f64 / notifications as f64;
    println!(
        "{:<20} {notifications:>13} {suppressed:>10} {incidents:>9} {:>8.1}% {min_purity:>10.3}",
        "all",
        100.0 * reduction
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(reduction >= 0.95, "reduction {reduction}");
    assert!(min_purity >= 0.95, "purity {min_purity}");
}

#[test]
fn every_scenario_file_parses_and_bad_ones_say_why() {
    for path in scenario_files() {
        Scenario::parse(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let check = |text: &str, reason: &str| {
        let error = Scenario::parse(text).unwrap_err();
        assert!(error.contains(reason), "{error}");
    };
    check(
        "description = 'x'\nduration_seconds = 1\nedges = ['a-b']",
        "caller>callee",
    );
    check(
        "description = 'x'\nduration_seconds = 1\nbogus = 1",
        "unknown field",
    );
    check(
        "description = 'x'\nduration_seconds = 1\n[[alert]]\nfault='f'\ntitle='t'\nstart=0\nevery=0\nuntil=1",
        "every > 0",
    );
    check(
        "description = 'x'\nduration_seconds = 1\n[[silence]]\nmatchers=['a']\nstart=0\nend=1",
        "bad matcher",
    );
}

#[test]
fn without_the_map_the_cascade_splits_and_the_suite_says_so() {
    let path = scenario_files()
        .into_iter()
        .find(|p| p.ends_with("db-cascade.toml"))
        .unwrap();
    let scenario = Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    let blind = CorrelatorConfig {
        max_hops: 0,
        ..CorrelatorConfig::default()
    };
    let outcome = run_offline(&scenario, &blind);
    assert!(outcome.incidents > 1, "{outcome:?}");
    assert!(
        outcome.failures.iter().any(|f| f.contains("split across")),
        "{:?}",
        outcome.failures
    );
}
