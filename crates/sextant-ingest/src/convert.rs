//! What the receivers that turn other formats into OTLP share: string attributes, logs grouped
//! by service as one request, and snappy bodies inflated within a limit.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// A string value.
pub fn string_value(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(value.to_owned())),
    })
}

/// A string attribute.
pub fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: string_value(value),
        ..Default::default()
    }
}

/// One OTLP logs request from records grouped by service (`""`: no `service.name`).
pub fn logs_by_service(by_service: BTreeMap<String, Vec<LogRecord>>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: by_service
            .into_iter()
            .map(|(service, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: if service.is_empty() {
                        Vec::new()
                    } else {
                        vec![string_attribute("service.name", &service)]
                    },
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Inflates a snappy (block format) body; its declared length is checked against `max_bytes`
/// before anything is allocated.
pub fn unsnappy(body: &[u8], max_bytes: usize) -> Result<Vec<u8>, String> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| format!("the body is not snappy-compressed: {e}"))?;
    if len > max_bytes {
        return Err(format!(
            "the body decompresses to {len} bytes, over the limit of {max_bytes}"
        ));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("the body is not snappy-compressed: {e}"))
}
