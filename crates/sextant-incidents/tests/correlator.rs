//! The correlator's decisions one signal at a time: deduplication, flapping, resolution after
//! quiet, silences, inhibition, and the actions engineers take (acknowledge, resolve, merge,
//! split), each on the timeline with who did it.

use std::collections::BTreeMap;

use sextant_incidents::Error;
use sextant_incidents::correlator::{
    CorrelatorConfig, Decision, IncidentCorrelator, IncidentStatus, InhibitRule, Rules, Signal,
    Silence,
};
use sextant_incidents::matcher::Matcher;
use sextant_incidents::topology::ServiceMap;

const S: i64 = 1_000_000_000;

fn signal(fingerprint: &str, service: &str, title: &str, second: i64, resolved: bool) -> Signal {
    Signal {
        event_id: format!("{fingerprint}@{second}"),
        fingerprint: fingerprint.into(),
        time: second * S,
        kind: "alert".into(),
        source: "test".into(),
        service: service.into(),
        severity: "warning".into(),
        title: title.into(),
        resolved,
        labels: BTreeMap::from([("host".to_string(), format!("{service}-host"))]),
    }
}

fn shop() -> ServiceMap {
    ServiceMap::from_pairs([
        ("frontend", "cart"),
        ("frontend", "checkout"),
        ("checkout", "payment"),
        ("cart", "redis"),
    ])
}

fn incident_of(decision: &Decision) -> u64 {
    match decision {
        Decision::Opened { incident, .. }
        | Decision::Joined { incident, .. }
        | Decision::Deduplicated { incident, .. }
        | Decision::Resolved { incident }
        | Decision::Flapping { incident, .. } => *incident,
        other => panic!("no incident: {other:?}"),
    }
}

#[test]
fn repeats_deduplicate_and_the_incident_resolves_after_its_members_stay_quiet() {
    let config = CorrelatorConfig::default();
    let map = shop();
    let rules = Rules {
        map: Some(&map),
        ..Rules::default()
    };
    let mut c = IncidentCorrelator::new();
    let (d, _) = c.process(&config, rules, &signal("r", "redis", "RedisDown", 0, false));
    assert!(matches!(d, Decision::Opened { incident: 1, .. }), "{d:?}");
    for (i, second) in [60, 120, 180].into_iter().enumerate() {
        let (d, changed) = c.process(
            &config,
            rules,
            &signal("r", "redis", "RedisDown", second, false),
        );
        assert_eq!(
            d,
            Decision::Deduplicated {
                incident: 1,
                count: i as u64 + 2
            }
        );
        let incident = c.open_incident(changed.unwrap()).unwrap();
        assert_eq!(incident.members[0].count, i as u64 + 2);
        assert_eq!(incident.members[0].last_seen, second * S);
    }
    let (d, _) = c.process(
        &config,
        rules,
        &signal("c", "cart", "HighErrorRate", 200, false),
    );
    let Decision::Joined {
        incident: 1,
        reason,
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(
        (reason.rule.as_str(), reason.path.clone()),
        ("topology", vec!["cart".to_string(), "redis".to_string()])
    );
    assert!(reason.text.contains("direct neighbour"), "{}", reason.text);

    c.process(
        &config,
        rules,
        &signal("r", "redis", "RedisDown", 240, true),
    );
    assert!(c.tick(&config, 2000 * S).is_empty(), "cart still fires");
    let (d, _) = c.process(
        &config,
        rules,
        &signal("c", "cart", "HighErrorRate", 300, true),
    );
    assert_eq!(d, Decision::Resolved { incident: 1 });
    assert!(c.tick(&config, 500 * S).is_empty(), "quiet for 200 s only");
    let closed = c.tick(&config, 600 * S);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].status, IncidentStatus::Resolved);
    assert!(
        closed[0]
            .explanation()
            .contains("2 signals (7 notifications, 0 firing) from 2 services: cart, redis"),
        "{}",
        closed[0].explanation()
    );
    let actions: Vec<&str> = closed[0]
        .timeline
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "opened",
            "joined",
            "resolved_member",
            "resolved_member",
            "resolved"
        ]
    );

    let (d, _) = c.process(
        &config,
        rules,
        &signal("r", "redis", "RedisDown", 700, false),
    );
    assert!(
        matches!(d, Decision::Opened { incident: 2, .. }),
        "a closed incident takes nothing: {d:?}"
    );
    assert_eq!((c.counters.signals, c.counters.incidents), (8, 2));
}

#[test]
fn new_trouble_after_every_member_recovered_opens_a_new_incident() {
    let config = CorrelatorConfig::default();
    let map = shop();
    let rules = Rules {
        map: Some(&map),
        ..Rules::default()
    };
    let mut c = IncidentCorrelator::new();
    let (d, _) = c.process(&config, rules, &signal("r", "redis", "RedisDown", 0, false));
    assert_eq!(incident_of(&d), 1);
    // While redis is down, trouble next to it joins its incident.
    let (d, _) = c.process(&config, rules, &signal("c", "cart", "CartSlow", 30, false));
    assert!(matches!(d, Decision::Joined { incident: 1, .. }), "{d:?}");
    c.process(&config, rules, &signal("r", "redis", "RedisDown", 60, true));
    c.process(&config, rules, &signal("c", "cart", "CartSlow", 60, true));
    // Both recovered; incident 1 waits out its quiet time, and takes nothing new.
    assert!(c.open_incident(1).is_some());
    let (d, _) = c.process(
        &config,
        rules,
        &signal("f", "frontend", "FrontendSlow", 120, false),
    );
    assert!(matches!(d, Decision::Opened { incident: 2, .. }), "{d:?}");
    // Its own member coming back still goes to it.
    let (d, _) = c.process(
        &config,
        rules,
        &signal("r", "redis", "RedisDown", 150, false),
    );
    assert_eq!(incident_of(&d), 1);
}

#[test]
fn trouble_that_starts_long_after_a_lasting_fault_began_is_new() {
    let config = CorrelatorConfig::default();
    let map = shop();
    let rules = Rules {
        map: Some(&map),
        ..Rules::default()
    };
    let mut c = IncidentCorrelator::new();
    let firing = |c: &mut IncidentCorrelator, fingerprint, service, title, second| {
        c.process(
            &config,
            rules,
            &signal(fingerprint, service, title, second, false),
        )
        .0
    };
    assert_eq!(
        incident_of(&firing(&mut c, "r", "redis", "RedisDown", 0)),
        1
    );
    // Its neighbour within the spread window: the fault's effect, it joins.
    let d = firing(&mut c, "c", "cart", "CartSlow", 120);
    assert!(matches!(d, Decision::Joined { incident: 1, .. }), "{d:?}");
    // Both go on firing for ten minutes.
    for second in (180..=720).step_by(60) {
        firing(&mut c, "r", "redis", "RedisDown", second);
        firing(&mut c, "c", "cart", "CartSlow", second);
    }
    // Something new next to them, seven minutes after the last start: a new incident, and
    // the reason says why it did not join.
    let d = firing(&mut c, "f", "frontend", "FrontendSlow", 540);
    match &d {
        Decision::Opened {
            incident: 2,
            reason,
        } => {
            assert!(reason.text.contains("windows"), "{}", reason.text)
        }
        other => panic!("{other:?}"),
    }
    // cart resolves and fires again: a new start, so new trouble with it may join again.
    c.process(&config, rules, &signal("c", "cart", "CartSlow", 780, true));
    firing(&mut c, "c", "cart", "CartSlow", 800);
    let d = firing(&mut c, "e", "cart", "CartErrors", 830);
    assert!(matches!(d, Decision::Joined { incident: 1, .. }), "{d:?}");
    assert_eq!(c.open_incident(1).unwrap().latest_onset(), 830 * S);
    // Past its first quarter of an hour it takes nothing new, however recently something began.
    let d = firing(&mut c, "l", "cart", "CartLatency", 960);
    assert!(matches!(d, Decision::Opened { .. }), "{d:?}");
    assert_eq!(c.open_incident(1).unwrap().members.len(), 3);
}

#[test]
fn a_flapping_alert_stays_in_its_incident_and_holds_it_open() {
    let config = CorrelatorConfig::default();
    let mut c = IncidentCorrelator::new();
    let rules = Rules::default();
    let mut decisions = Vec::new();
    for step in 0..8 {
        let second = step * 60;
        decisions.push(
            c.process(
                &config,
                rules,
                &signal("f", "cart", "HighLatency", second, step % 2 == 1),
            )
            .0,
        );
        c.tick(&config, second * S + 30 * S);
    }
    assert!(
        decisions.iter().all(|d| incident_of(d) == 1),
        "{decisions:?}"
    );
    assert!(
        decisions
            .iter()
            .any(|d| matches!(d, Decision::Flapping { .. })),
        "{decisions:?}"
    );
    assert!(
        c.tick(&config, 1200 * S).is_empty(),
        "a flapping member needs the flap window's quiet"
    );
    assert_eq!(c.tick(&config, 2400 * S).len(), 1);
}

#[test]
fn silences_cover_their_window_and_inhibition_needs_a_firing_source() {
    let config = CorrelatorConfig::default();
    let silences = [Silence {
        id: "s1".into(),
        matchers: vec![Matcher::parse("service=~\"cart|search\"").unwrap()],
        starts_at: 0,
        ends_at: 100 * S,
        comment: "deploy".into(),
        created_by: "ops".into(),
    }];
    let inhibitions = [InhibitRule {
        id: "i1".into(),
        source: vec![Matcher::equal("alertname", "NodeDown")],
        target: vec![Matcher::equal("alertname", "ServiceDown")],
        equal: vec!["host".into()],
        comment: String::new(),
        created_by: "ops".into(),
    }];
    let rules = Rules {
        silences: &silences,
        inhibitions: &inhibitions,
        map: None,
    };
    let mut c = IncidentCorrelator::new();
    let (d, changed) = c.process(
        &config,
        rules,
        &signal("a", "cart", "HighLatency", 10, false),
    );
    assert_eq!(
        d,
        Decision::Silenced {
            silence: "s1".into(),
            comment: "deploy".into(),
            repeat: false,
        }
    );
    assert!(changed.is_none());
    // The same alert again under the silence: a repeat (the audit trail records the first).
    let (d, _) = c.process(
        &config,
        rules,
        &signal("a", "cart", "HighLatency", 20, false),
    );
    assert!(
        matches!(d, Decision::Silenced { repeat: true, .. }),
        "{d:?}"
    );
    let (d, _) = c.process(
        &config,
        rules,
        &signal("a", "cart", "HighLatency", 100, false),
    );
    assert!(
        matches!(d, Decision::Opened { .. }),
        "the silence ended: {d:?}"
    );

    let node = |second, resolved| {
        let mut s = signal("n", "", "NodeDown", second, resolved);
        s.labels = BTreeMap::from([("host".to_string(), "node-7".to_string())]);
        s
    };
    let service_down = |fp: &str, host: &str, second| {
        let mut s = signal(fp, "checkout", "ServiceDown", second, false);
        s.labels = BTreeMap::from([("host".to_string(), host.to_string())]);
        s
    };
    c.process(&config, rules, &node(200, false));
    let (d, _) = c.process(&config, rules, &service_down("x", "node-7", 210));
    assert_eq!(
        d,
        Decision::Inhibited {
            rule: "i1".into(),
            by_fingerprint: "n".into(),
            by_title: "NodeDown".into(),
            repeat: false,
        }
    );
    let (d, _) = c.process(&config, rules, &service_down("x", "node-7", 212));
    assert!(
        matches!(d, Decision::Inhibited { repeat: true, .. }),
        "{d:?}"
    );
    let (d, _) = c.process(&config, rules, &service_down("y", "node-3", 215));
    assert!(
        matches!(d, Decision::Opened { .. } | Decision::Joined { .. }),
        "another host: {d:?}"
    );
    c.process(&config, rules, &node(300, true));
    let (d, _) = c.process(&config, rules, &service_down("x", "node-7", 310));
    assert!(
        !matches!(d, Decision::Inhibited { .. }),
        "NodeDown resolved: {d:?}"
    );
    assert_eq!(c.counters.suppressed, 4);
}

#[test]
fn engineers_acknowledge_merge_split_and_resolve_with_their_names_on_the_timeline() {
    let config = CorrelatorConfig::default();
    let rules = Rules::default();
    let mut c = IncidentCorrelator::new();
    let one = incident_of(
        &c.process(&config, rules, &signal("a", "cart", "A", 0, false))
            .0,
    );
    c.process(&config, rules, &signal("b", "cart", "B", 10, false));
    let two = incident_of(
        &c.process(&config, rules, &signal("c", "payment", "C", 20, false))
            .0,
    );
    assert_ne!(one, two, "no map, different hosts: unrelated");

    let acked = c.acknowledge(one, "tok-ada", "looking", 30 * S).unwrap();
    assert_eq!(
        (acked.status, acked.acknowledged_by.as_deref()),
        (IncidentStatus::Acknowledged, Some("tok-ada"))
    );
    assert!(matches!(
        c.acknowledge(one, "tok-ada", "", 31 * S),
        Err(Error::BadAction { .. })
    ));

    let (merged, gone) = c.merge(one, two, "tok-bob", "same deploy", 40 * S).unwrap();
    assert_eq!(merged.members.len(), 3);
    assert_eq!(merged.services.len(), 2);
    assert_eq!(
        (gone.status, gone.merged_into),
        (IncidentStatus::Merged, Some(one))
    );
    assert_eq!(
        gone.members.len(),
        1,
        "the merged incident keeps its history"
    );
    assert_eq!(
        c.merge(one, two, "tok-bob", "", 41 * S).unwrap_err(),
        Error::NoOpenIncident { id: two }
    );
    let (d, _) = c.process(&config, rules, &signal("c", "payment", "C", 50, false));
    assert_eq!(incident_of(&d), one, "repeats follow the merge");

    let err = c
        .split(one, &["zzz".into()], "tok-bob", "", 60 * S)
        .unwrap_err();
    assert!(err.to_string().contains("not a member"), "{err}");
    let all: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    assert!(
        c.split(one, &all, "tok-bob", "", 60 * S)
            .unwrap_err()
            .to_string()
            .contains("empty")
    );
    let (old, new) = c
        .split(one, &["c".into()], "tok-bob", "payment is separate", 60 * S)
        .unwrap();
    assert_eq!((old.members.len(), new.members.len()), (2, 1));
    assert_eq!(new.members[0].reason.rule, "split");
    let (d, _) = c.process(&config, rules, &signal("c", "payment", "C", 70, false));
    assert_eq!(incident_of(&d), new.id);

    let resolved = c.resolve(new.id, "tok-cy", "fixed", 80 * S).unwrap();
    assert_eq!(resolved.status, IncidentStatus::Resolved);
    let last = resolved.timeline.last().unwrap();
    assert_eq!(
        (
            last.actor.as_str(),
            last.action.as_str(),
            last.detail.as_str()
        ),
        ("tok-cy", "resolved", "fixed")
    );
    assert!(c.open_incident(new.id).is_none());
}

#[test]
fn the_state_survives_a_round_trip_through_json() {
    let config = CorrelatorConfig::default();
    let mut c = IncidentCorrelator::new();
    c.process(
        &config,
        Rules::default(),
        &signal("a", "cart", "A", 0, false),
    );
    let restored: IncidentCorrelator =
        serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(restored, c);
    let mut restored = restored;
    let (d, _) = restored.process(
        &config,
        Rules::default(),
        &signal("a", "cart", "A", 60, false),
    );
    assert_eq!(
        d,
        Decision::Deduplicated {
            incident: 1,
            count: 2
        }
    );
}
