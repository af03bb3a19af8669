//! Detector state under pod churn, `cargo bench -p sextant-store --bench series_churn`: do
//! metric series of replaced pods stay bounded?
//!
//! Options go after `--`: `--days N` (default 3), `--pods N` live at a time (default 100),
//! `--metrics N` per pod (default 10), `--lifetime-hours N` of a pod before it is replaced
//! (default 2). Every minute of metric time each live pod sends one gauge point per metric
//! (`pod` attribute, service `checkout`), straight into a `TelemetryStore` on a temporary
//! directory (no fsync). Run twice: with the default `anomaly.series_idle_seconds` (1 day) and
//! with idle retirement off. Prints, per run, the series watched at the end and at most, the
//! saved detector states after a clean stop (count and bytes), and the points per second.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sextant_model::{Signal, TenantId};
use sextant_store::meta::{CatalogStore, SqliteMetadata};
use sextant_store::{StoreConfig, TelemetryStore};

const MINUTE_NS: i64 = 60_000_000_000;
/// 2023-11-14 22:13:00 UTC.
const START_NS: i64 = 1_699_999_980_000_000_000;

struct Options {
    days: i64,
    pods: usize,
    metrics: usize,
    lifetime_hours: i64,
}

fn options() -> Options {
    let mut options = Options {
        days: 3,
        pods: 100,
        metrics: 10,
        lifetime_hours: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || -> i64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{arg} takes a whole number"))
        };
        match arg.as_str() {
            "--days" => options.days = number(),
            "--pods" => options.pods = number() as usize,
            "--metrics" => options.metrics = number() as usize,
            "--lifetime-hours" => options.lifetime_hours = number(),
            _ => {}
        }
    }
    options
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// One minute's points of every live pod. Pods are replaced one by one, spread over their
/// lifetime, so a fixed number are live at any time.
fn minute_request(options: &Options, minute: i64) -> Bytes {
    let lifetime = options.lifetime_hours * 60;
    let time = (START_NS + minute * MINUTE_NS) as u64;
    let metrics = (0..options.metrics)
        .map(|m| Metric {
            name: format!("app.metric_{m}"),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: (0..options.pods)
                    .map(|slot| {
                        // Slot `slot` replaces its pod at minutes ≡ slot·lifetime/pods.
                        let offset = slot as i64 * lifetime / options.pods as i64;
                        let generation = (minute + lifetime - offset) / lifetime;
                        let value =
                            100.0 + ((minute * 7 + slot as i64 * 13 + m as i64) % 11) as f64;
                        NumberDataPoint {
                            attributes: vec![text("pod", &format!("checkout-{slot}-{generation}"))],
                            time_unix_nano: time,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }
                    })
                    .collect(),
            })),
            ..Default::default()
        })
        .collect();
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![text("service.name", "checkout")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(request.encode_to_vec())
}

fn run(options: &Options, idle_seconds: i64, label: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let meta = Arc::new(
        SqliteMetadata::open(&sextant_store::metadata_path(dir.path())).expect("open meta.db"),
    );
    let mut config = StoreConfig::new(dir.path());
    config.wal.fsync = false;
    config.detectors.series_idle_seconds = idle_seconds;
    let store = TelemetryStore::open(config, meta.clone())
        .expect("open the store")
        .0;
    let tenant = TenantId::new("acme").expect("a tenant id");
    let minutes = options.days * 24 * 60;
    let started = Instant::now();
    let mut most = 0;
    for minute in 0..minutes {
        store
            .append(
                tenant.clone(),
                Signal::Metrics,
                minute_request(options, minute),
                None,
            )
            .expect("accepted")
            .wait()
            .expect("durable");
        most = most.max(store.watched_series(&tenant));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let watched = store.watched_series(&tenant);
    store.close();
    drop(store);
    let states = meta.detector_states().expect("read the detector states");
    let bytes: usize = states.iter().map(|(_, k, s)| k.len() + s.len()).sum();
    let points = minutes as f64 * (options.pods * options.metrics) as f64;
    println!(
        "{label:<22} {watched:>8} {most:>8} {:>8} {:>12} {:>10.0}",
        states.len(),
        bytes,
        points / elapsed
    );
}

fn main() {
    let options = options();
    println!(
        "series_churn: {} days of metric time, {} pods live × {} metrics, each pod replaced \
         after {} h ({} series at a time, {} pods in all)",
        options.days,
        options.pods,
        options.metrics,
        options.lifetime_hours,
        options.pods * options.metrics,
        options.pods as i64 * (options.days * 24 / options.lifetime_hours + 1)
    );
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>12} {:>10}",
        "idle retirement", "watched", "most", "saved", "saved bytes", "points/s"
    );
    run(&options, 86_400, "after 1 day (default)");
    run(&options, 100 * 365 * 86_400, "off");
}
