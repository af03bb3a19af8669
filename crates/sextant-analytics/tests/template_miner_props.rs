//! Property tests: whatever lines arrive, `TemplateMiner` never panics, keeps its template
//! bound, and every id it hands out resolves while its template lives.

use proptest::prelude::*;
use sextant_analytics::patterns::{MinerConfig, MinerState, TemplateMiner};

fn small_config(max_templates: usize) -> MinerConfig {
    MinerConfig {
        max_templates,
        max_line_bytes: 256,
        ..MinerConfig::default()
    }
}

/// Lines built from log-like pieces, so the miner's generalising paths are exercised, not only
/// its "new template" path.
fn log_like_line() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("user".to_owned()),
        Just("from".to_owned()),
        Just("session".to_owned()),
        Just("<*>".to_owned()),
        Just("\"GET".to_owned()),
        Just("(uid=0)".to_owned()),
        Just("Jun".to_owned()),
        Just("12:00:01".to_owned()),
        Just("KB)".to_owned()),
        "[a-z]{1,8}",
        "[0-9]{1,6}",
        "[a-zA-Z0-9_.:=/()\\[\\]\"'-]{1,12}",
        "\\PC{1,6}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_text_never_panics(lines in prop::collection::vec("\\PC{0,300}", 1..50)) {
        let mut miner = TemplateMiner::new(small_config(8)).unwrap();
        for (at, line) in lines.iter().enumerate() {
            let result = miner.mine(line, at as i64);
            prop_assert_eq!(result.truncated, line.len() > 256);
            prop_assert!(miner.len() <= 8);
            prop_assert!(miner.template(result.id).is_some());
        }
    }

    #[test]
    fn log_like_floods_stay_within_the_bound(
        lines in prop::collection::vec(log_like_line(), 1..300),
        max_templates in 1usize..40,
    ) {
        let mut miner = TemplateMiner::new(small_config(max_templates)).unwrap();
        for (at, line) in lines.iter().enumerate() {
            let result = miner.mine(line, at as i64);
            prop_assert!(miner.len() <= max_templates);
            let template = miner.template(result.id).expect("the line's template is live");
            prop_assert!(template.count() >= 1);
            prop_assert!(template.first_seen() <= template.last_seen());
        }
        // The state survives a round trip through JSON and carries on.
        let json = serde_json::to_string(&miner.state()).unwrap();
        let state: MinerState = serde_json::from_str(&json).unwrap();
        let mut restored = TemplateMiner::from_state(state).unwrap();
        prop_assert_eq!(restored.state(), miner.state());
        restored.mine("one more line 42", 0);
        prop_assert!(restored.len() <= max_templates);
    }
}

#[test]
fn unique_line_flood_keeps_the_bound() {
    let mut miner = TemplateMiner::new(small_config(100)).unwrap();
    for i in 0..20_000u32 {
        // Words without digits, so masking cannot fold them together.
        let word: String = i
            .to_string()
            .bytes()
            .map(|b| char::from(b'a' + (b - b'0')))
            .collect();
        let line = format!("{word} happened to {word}x at {word}y");
        miner.mine(&line, i64::from(i));
        assert!(miner.len() <= 100);
    }
}
