//! A miner restored from its saved state (through JSON, as the store saves it) mines every
//! later line exactly as the miner it was saved from: the guard for template ids that
//! survive restarts and crash replay.

use std::path::PathBuf;

use sextant_analytics::patterns::{MinerConfig, MinerState, TemplateMiner};

/// `../shared/datasets/loghub-2k` next to the workspace, or `$SEXTANT_DATASETS/loghub-2k`.
fn loghub() -> PathBuf {
    std::env::var_os("SEXTANT_DATASETS")
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets"),
            PathBuf::from,
        )
        .join("loghub-2k")
}

#[test]
fn restored_miners_mine_on_exactly_like_the_live_ones() {
    let root = loghub();
    let mut systems: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    systems.sort();
    assert_eq!(systems.len(), 16, "the 16 Loghub systems");
    let mut compared = 0;
    for system in systems {
        let name = system.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(system.join(format!("{name}_2k.log"))).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for cut in [1, 200, 1000, 1999] {
            let mut live = TemplateMiner::new(MinerConfig::default()).unwrap();
            for (at, line) in lines[..cut].iter().enumerate() {
                live.mine(line, at as i64);
            }
            let json = serde_json::to_vec(&live.state()).unwrap();
            let state: MinerState = serde_json::from_slice(&json).unwrap();
            let mut restored = TemplateMiner::from_state(state).unwrap();
            for (at, line) in lines[cut..].iter().enumerate() {
                let expected = live.mine(line, at as i64);
                let actual = restored.mine(line, at as i64);
                assert_eq!(
                    (actual.id, actual.outcome),
                    (expected.id, expected.outcome),
                    "{name}, saved after {cut} lines, line {}: {line}",
                    cut + at + 1
                );
                compared += 1;
            }
            assert_eq!(restored.state(), live.state(), "{name} after {cut}");
        }
    }
    assert_eq!(compared, 16 * (1999 + 1800 + 1000 + 1));
}
