//! The live detectors through the real store: metric series and log pattern rates become
//! explained anomaly events, states carry over restarts and crashes, counter resets are not
//! anomalies, and feedback moves a series' sensitivity and is kept.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sextant_analytics::anomaly::Feedback;
use sextant_model::{Event, EventKind, Signal, TenantId};
use sextant_store::meta::{CatalogStore, EventFilter, SqliteMetadata};
use sextant_store::{EventSource, StoreConfig, TableSource, TelemetryStore};

/// 2023-11-14 22:13:20 UTC, on a minute boundary.
const START_S: i64 = 1_700_000_000 - 1_700_000_000 % 60;
const MINUTE_NS: i64 = 60_000_000_000;

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn open(dir: &Path) -> TelemetryStore {
    open_with(dir, |_| {}).0
}

/// The store in `dir` with `configure` applied to its settings; its metadata store and the
/// settings, to look into and to open it again.
fn open_with(
    dir: &Path,
    configure: impl FnOnce(&mut StoreConfig),
) -> (TelemetryStore, Arc<SqliteMetadata>, StoreConfig) {
    let meta = Arc::new(SqliteMetadata::open(&sextant_store::metadata_path(dir)).unwrap());
    let mut config = StoreConfig::new(dir);
    config.wal.fsync = false;
    configure(&mut config);
    let store = TelemetryStore::open(config.clone(), meta.clone())
        .unwrap()
        .0;
    (store, meta, config)
}

fn text(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(value.to_owned())),
    })
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: text(value),
        ..Default::default()
    }
}

/// A noise in [-1, 1) that is the same on every run.
fn noise(i: i64) -> f64 {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5e47;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

fn metric_request(metric: Metric) -> Bytes {
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![attribute("service.name", "checkout")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![metric],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(request.encode_to_vec())
}

fn point(minute: i64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: vec![attribute("queue", "orders")],
        start_time_unix_nano: START_S as u64 * 1_000_000_000,
        time_unix_nano: (START_S * 1_000_000_000 + minute * MINUTE_NS) as u64,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

/// A gauge `queue.depth` with one point per minute for `minutes`, values from `value`.
fn gauge(minutes: std::ops::Range<i64>, value: impl Fn(i64) -> f64) -> Bytes {
    metric_request(Metric {
        name: "queue.depth".to_owned(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: minutes.map(|m| point(m, value(m))).collect(),
        })),
        ..Default::default()
    })
}

/// The normal queue depth: about 100, give or take 5.
fn normal(minute: i64) -> f64 {
    100.0 + 5.0 * noise(minute)
}

fn append(store: &TelemetryStore, signal: Signal, payload: Bytes) {
    store
        .append(tenant(), signal, payload, None)
        .unwrap()
        .wait()
        .unwrap();
}

fn anomalies(store: &TelemetryStore) -> Vec<Event> {
    let filter = EventFilter {
        kind: Some(EventKind::Anomaly),
        ..EventFilter::default()
    };
    store
        .events(&tenant(), &filter)
        .unwrap()
        .into_iter()
        .map(|(event, _)| event)
        .collect()
}

#[test]
fn a_gauge_spike_becomes_one_explained_anomaly_that_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, Signal::Metrics, gauge(0..600, normal));
    assert_eq!(store.watched_series(&tenant()), 1);
    assert!(anomalies(&store).is_empty(), "{:?}", anomalies(&store));

    append(&store, Signal::Metrics, gauge(600..601, |_| 400.0));
    let found = anomalies(&store);
    assert_eq!(found.len(), 1, "{found:?}");
    let event = &found[0];
    assert_eq!(event.service, "checkout");
    assert_eq!(event.status, "firing");
    assert_eq!(
        event.time_unix_nano,
        START_S * 1_000_000_000 + 600 * MINUTE_NS
    );
    let details = &event.details;
    assert_eq!(details["series"]["name"], "queue.depth");
    assert_eq!(details["series"]["labels"]["queue"], "orders");
    assert_eq!(details["observed"], 400.0);
    let expected = details["expected"].as_f64().unwrap();
    let (lower, upper) = (
        details["band"][0].as_f64().unwrap(),
        details["band"][1].as_f64().unwrap(),
    );
    assert!((90.0..110.0).contains(&expected), "{details}");
    assert!(
        lower < expected && expected < upper && upper < 400.0,
        "{details}"
    );
    assert_eq!(details["direction"], "above");
    assert!(details["score"].as_f64().unwrap() >= details["threshold"].as_f64().unwrap());
    assert_eq!(details["method"], sextant_analytics::anomaly::METHOD);
    assert_eq!(
        details["model_version"],
        sextant_analytics::anomaly::MODEL_VERSION
    );
    assert!(
        details["factors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "labels" && f["labels"]["queue"] == "orders"),
        "{details}"
    );
    assert!(
        event
            .summary
            .starts_with("checkout: queue.depth{queue=orders} at 400 is above"),
        "{}",
        event.summary
    );

    // Back to normal: the episode closes after a few quiet points, and no new event opens.
    append(&store, Signal::Metrics, gauge(601..640, normal));
    let found = anomalies(&store);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].status, "resolved");
}

#[test]
fn an_episode_stays_open_while_the_fault_goes_on_and_closes_when_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, Signal::Metrics, gauge(0..600, normal));
    // The queue jumps to about 300 and stays there for 40 minutes: the detector soon takes
    // 300 as its expected level, yet the fault goes on, so the anomaly stays firing.
    let high = |minute: i64| 300.0 + 5.0 * noise(minute);
    append(&store, Signal::Metrics, gauge(600..640, high));
    let found = anomalies(&store);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].status, "firing", "the fault goes on: {found:?}");
    // Back to about 100: the episode closes after its quiet points.
    append(&store, Signal::Metrics, gauge(640..660, normal));
    let found = anomalies(&store);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].status, "resolved");

    // A lasting new level: once the detector has found it normal for `settle_points` (60)
    // points, the episode closes though the series never went back.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, Signal::Metrics, gauge(0..600, normal));
    append(&store, Signal::Metrics, gauge(600..720, high));
    let found = anomalies(&store);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].status, "resolved", "{found:?}");
}

#[test]
fn detector_states_carry_over_a_restart_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, Signal::Metrics, gauge(0..300, normal));
    store.flush().unwrap();
    append(&store, Signal::Metrics, gauge(300..600, normal));
    // A crash: the states saved at the flush, then the log replayed past it.
    std::mem::forget(store);
    let store = open(dir.path());
    assert_eq!(store.watched_series(&tenant()), 1);
    // A fresh detector would still be warming up and judge nothing; a restored one knows the
    // series and flags the very next spike.
    append(&store, Signal::Metrics, gauge(600..601, |_| 400.0));
    assert_eq!(anomalies(&store).len(), 1);
    append(&store, Signal::Metrics, gauge(601..700, normal));
    store.close();
    drop(store);

    // A clean restart: nothing is found twice, and the model carries on.
    let store = open(dir.path());
    assert_eq!(anomalies(&store).len(), 1);
    append(&store, Signal::Metrics, gauge(700..701, |_| 5.0));
    let found = anomalies(&store);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].details["direction"], "below");
}

#[test]
fn a_counter_reset_is_not_an_anomaly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // A cumulative counter growing by about 600 a minute (10/s), reset to zero at minute 400.
    let mut total = 0.0;
    let points: Vec<NumberDataPoint> = (0..800)
        .map(|m| {
            if m == 400 {
                total = 0.0;
            }
            total += 600.0 + 30.0 * noise(m);
            point(m, total)
        })
        .collect();
    append(
        &store,
        Signal::Metrics,
        metric_request(Metric {
            name: "orders.placed".to_owned(),
            data: Some(metric::Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        }),
    );
    assert_eq!(store.watched_series(&tenant()), 1);
    assert!(anomalies(&store).is_empty(), "{:?}", anomalies(&store));
}

fn logs(lines: &[(i64, &str)]) -> Bytes {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![attribute("service.name", "payments")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: lines
                    .iter()
                    .map(|&(time_ns, body)| LogRecord {
                        time_unix_nano: time_ns as u64,
                        body: text(body),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(request.encode_to_vec())
}

#[test]
fn a_burst_of_one_log_pattern_is_an_anomaly_naming_its_template() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let minute = |m: i64| START_S * 1_000_000_000 + m * MINUTE_NS;
    // Five hours of two quiet patterns, a few lines a minute each.
    let mut lines: Vec<(i64, String)> = Vec::new();
    for m in 0..300 {
        for k in 0..(3 + m % 3) {
            lines.push((
                minute(m) + k,
                format!("GET /cart/{m} answered 200 in {k} ms"),
            ));
        }
        lines.push((minute(m) + 10, format!("connection to db-{} reset", m % 4)));
    }
    // Then 150 resets in one minute among the usual requests, and one ordinary line in the
    // next minute to close that one.
    for k in 0..4 {
        lines.push((
            minute(300) + k,
            format!("GET /cart/300 answered 200 in {k} ms"),
        ));
    }
    for k in 0..150 {
        lines.push((minute(300) + k, format!("connection to db-{} reset", k % 4)));
    }
    lines.push((minute(301), "GET /cart/1 answered 200 in 3 ms".to_owned()));
    let borrowed: Vec<(i64, &str)> = lines.iter().map(|(t, s)| (*t, s.as_str())).collect();
    append(&store, Signal::Logs, logs(&borrowed));

    assert_eq!(store.watched_series(&tenant()), 2);
    let found = anomalies(&store);
    assert_eq!(found.len(), 1, "{found:?}");
    let event = &found[0];
    assert_eq!(event.service, "payments");
    assert_eq!(event.time_unix_nano, minute(300));
    assert_eq!(
        event.details["series"]["name"],
        sextant_store::PATTERN_RATE_METRIC
    );
    assert_eq!(event.details["observed"], 150.0);
    assert_eq!(event.details["window"]["start_unix_nano"], minute(300));
    assert_eq!(event.details["window"]["end_unix_nano"], minute(301));
    let factor = &event.details["factors"][0];
    assert_eq!(factor["kind"], "log_template", "{}", event.details);
    assert_eq!(factor["template"], "connection to <*> reset");
    assert!(
        event
            .summary
            .contains("log pattern \"connection to <*> reset\" (150 lines per 60 s)"),
        "{}",
        event.summary
    );
}

#[test]
fn feedback_moves_the_series_sensitivity_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, Signal::Metrics, gauge(0..600, normal));
    append(&store, Signal::Metrics, gauge(600..601, |_| 400.0));
    let id = anomalies(&store)[0].id.clone();

    let record = store
        .anomaly_feedback(&tenant(), &id, Feedback::FalsePositive, "batch job", "tok1")
        .unwrap();
    assert_eq!((record.before, record.after), (1.0, 0.8));
    assert_eq!(
        record.series,
        "queue.depth{queue=\"orders\",service=\"checkout\"}"
    );
    let err = store
        .anomaly_feedback(&tenant(), "no-such-id", Feedback::Confirmed, "", "tok1")
        .unwrap_err();
    assert!(matches!(err, sextant_store::Error::NotFound(_)), "{err}");
    let other = TenantId::new("other").unwrap();
    assert!(
        store
            .anomaly_feedback(&other, &id, Feedback::Confirmed, "", "tok1")
            .is_err(),
        "another tenant's anomaly is not found"
    );
    store.close();
    drop(store);

    // After a restart the lowered sensitivity holds, and the record is there.
    let store = open(dir.path());
    let history = store.feedback(&tenant(), &id).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].verdict, "false_positive");
    assert_eq!(history[0].comment, "batch job");
    let record = store
        .anomaly_feedback(&tenant(), &id, Feedback::Confirmed, "", "tok1")
        .unwrap();
    assert_eq!(record.before, 0.8);
    assert!((record.after - 0.88).abs() < 1e-12, "{}", record.after);
    let (_, feedback) = store.event(&tenant(), &id).unwrap().unwrap();
    assert_eq!(feedback.as_deref(), Some("confirmed"));
}

#[test]
fn erasing_a_tenant_erases_its_anomalies_and_models() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, Signal::Metrics, gauge(0..300, normal));
    store.flush().unwrap();
    append(&store, Signal::Metrics, gauge(300..301, |_| 400.0));
    assert_eq!(anomalies(&store).len(), 1);
    store.erase_tenant(&tenant()).unwrap();
    assert!(anomalies(&store).is_empty());
    assert_eq!(store.watched_series(&tenant()), 0);
    // A crash: the erased records are still in the log, but neither they nor the saved models
    // come back.
    std::mem::forget(store);
    let store = open(dir.path());
    assert!(anomalies(&store).is_empty());
    assert_eq!(store.watched_series(&tenant()), 0);
}

#[test]
fn series_states_are_saved_at_most_every_interval_and_all_on_a_clean_stop() {
    let open_hourly = |dir: &Path| {
        open_with(dir, |config| {
            config.detectors.save_interval = std::time::Duration::from_secs(3600)
        })
        .0
    };
    let points_learnt =
        |store: &TelemetryStore| anomalies(store)[0].details["points_learnt"].clone();

    // The first flush saves the models; a second within the hour does not. After a crash the
    // model carries on from the first (300 points), having missed the 300 between.
    let dir = tempfile::tempdir().unwrap();
    let store = open_hourly(dir.path());
    append(&store, Signal::Metrics, gauge(0..300, normal));
    store.flush().unwrap();
    append(&store, Signal::Metrics, gauge(300..600, normal));
    store.flush().unwrap();
    std::mem::forget(store);
    let store = open_hourly(dir.path());
    append(&store, Signal::Metrics, gauge(600..601, |_| 400.0));
    assert_eq!(points_learnt(&store), 301);

    // A clean stop saves them all.
    let dir = tempfile::tempdir().unwrap();
    let store = open_hourly(dir.path());
    append(&store, Signal::Metrics, gauge(0..300, normal));
    store.flush().unwrap();
    append(&store, Signal::Metrics, gauge(300..600, normal));
    store.close();
    drop(store);
    let store = open_hourly(dir.path());
    append(&store, Signal::Metrics, gauge(600..601, |_| 400.0));
    assert_eq!(points_learnt(&store), 601);
}

#[test]
fn a_merged_templates_series_is_retired_and_its_lines_count_for_the_survivor() {
    let dir = tempfile::tempdir().unwrap();
    // A model is saved once past its warm-up: two points here.
    let (store, meta, config) = open_with(dir.path(), |config| {
        config.detectors.detector.warm_up_points = 2
    });
    let minute = |m: i64| START_S * 1_000_000_000 + m * MINUTE_NS;
    let saved = |meta: &SqliteMetadata| -> Vec<String> {
        meta.detector_states()
            .unwrap()
            .into_iter()
            .map(|(_, key, _)| key)
            .filter(|key| key.starts_with(sextant_store::PATTERN_RATE_METRIC))
            .collect()
    };
    // One line every other minute: the first two names are two templates (a plain word needs
    // three variants to become a variable), and each gets its series when its minute closes.
    let lines = [
        "session opened for user alice",
        "session opened for user bob",
        "disk check passed",
        "session opened for user carol",
        "session opened for user dave",
    ];
    let send = |m: usize| {
        append(
            &store,
            Signal::Logs,
            logs(&[(minute(2 * m as i64), lines[m])]),
        )
    };
    (0..3).for_each(send);
    assert_eq!(store.watched_series(&tenant()), 2);
    store.flush().unwrap();
    let before = saved(&meta);
    assert_eq!(before.len(), 2, "{before:?}");
    let bob = before
        .iter()
        .find(|k| k.contains("template_id=\"2\""))
        .cloned();
    assert!(bob.is_some(), "{before:?}");
    // carol's line merges bob's template into alice's: at the next closed minute bob's series
    // is retired and its saved state deleted; alice's counts every user from then on.
    (3..5).for_each(send);
    assert_eq!(store.watched_series(&tenant()), 2);
    store.flush().unwrap();
    // (Deletions are saved at once; the disk check's new state waits for the save interval.)
    let after = saved(&meta);
    assert!(!after.contains(bob.as_ref().unwrap()), "{after:?}");
    assert!(
        after.iter().any(|k| k.contains("template_id=\"1\"")),
        "{after:?}"
    );
    drop(store);
    // After a restart, the same two series.
    let store = TelemetryStore::open(config, meta).unwrap().0;
    assert_eq!(store.watched_series(&tenant()), 2);
}

#[test]
fn a_pattern_unseen_for_its_idle_time_is_retired_and_starts_afresh_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), |config| {
        config.detectors.pattern_idle_seconds = 3_600
    })
    .0;
    let minute = |m: i64| START_S * 1_000_000_000 + m * MINUTE_NS;
    let send = |m: i64, line: &str| append(&store, Signal::Logs, logs(&[(minute(m), line)]));
    send(0, "backup started");
    send(1, "heartbeat ok");
    assert_eq!(store.watched_series(&tenant()), 1);
    // Heartbeats every minute for an hour: the backup's series is judged with zeros and kept
    // while it is within its idle time.
    for m in 2..60 {
        send(m, "heartbeat ok");
    }
    assert_eq!(store.watched_series(&tenant()), 2);
    // Past an hour without a backup line, its series is retired.
    for m in 60..63 {
        send(m, "heartbeat ok");
    }
    assert_eq!(store.watched_series(&tenant()), 1);
    // It comes back: a new series.
    send(63, "backup started");
    send(64, "heartbeat ok");
    assert_eq!(store.watched_series(&tenant()), 2);
}

/// A gauge `queue.depth` of queue `queue` with one point per minute for `minutes`.
fn queue_depth(queue: &str, minutes: std::ops::Range<i64>) -> Bytes {
    let points = minutes
        .map(|m| NumberDataPoint {
            attributes: vec![attribute("queue", queue)],
            ..point(m, normal(m))
        })
        .collect();
    metric_request(Metric {
        name: "queue.depth".to_owned(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    })
}

#[test]
fn a_metric_series_unfed_for_its_idle_time_is_retired_and_its_slot_reused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), |config| {
        config.detectors.series_idle_seconds = 3_600
    })
    .0;
    let send = |queue: &str, minutes| append(&store, Signal::Metrics, queue_depth(queue, minutes));
    send("orders", 0..10);
    send("refunds", 0..10);
    assert_eq!(store.watched_series(&tenant()), 2);
    // Within the hour, refunds is kept; well past it, retired (idle series are looked for
    // every 24th of the idle time).
    send("orders", 10..65);
    assert_eq!(store.watched_series(&tenant()), 2);
    send("orders", 65..80);
    assert_eq!(store.watched_series(&tenant()), 1);
    // A new series takes the retired slot; refunds coming back is a third series, not fed
    // into the new one.
    send("payments", 80..81);
    send("refunds", 80..81);
    assert_eq!(store.watched_series(&tenant()), 3);
}

#[test]
fn a_series_is_saved_only_once_past_its_warm_up() {
    let dir = tempfile::tempdir().unwrap();
    let (store, meta, config) = open_with(dir.path(), |_| {});
    let warm_up = config.detectors.detector.warm_up_points as i64;
    append(
        &store,
        Signal::Metrics,
        queue_depth("orders", 0..warm_up - 1),
    );
    append(&store, Signal::Metrics, queue_depth("refunds", 0..warm_up));
    store.close();
    drop(store);
    let saved: Vec<String> = meta
        .detector_states()
        .unwrap()
        .into_iter()
        .map(|(_, key, _)| key)
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(saved[0].contains("refunds"), "{saved:?}");
    // After a restart only the warm series is back; the young one learns again.
    let store = TelemetryStore::open(config, meta).unwrap().0;
    assert_eq!(store.watched_series(&tenant()), 1);
}
