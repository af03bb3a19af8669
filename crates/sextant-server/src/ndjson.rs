//! `POST /api/v1/logs/ndjson`: logs as newline-delimited JSON, one object per line, turned into
//! an OTLP logs request and sent through the same pipeline as OTLP (tenant limits, write-ahead
//! log, template mining, detectors). A role that may ingest may send them.
//!
//! Field mapping: `timestamp`, `time` or `ts` (RFC 3339, or Unix seconds, milliseconds or
//! nanoseconds; default now) → the record's time; `level` or `severity` (`trace`, `debug`,
//! `info`, `warn`/`warning`, `error`, `fatal`/`critical`, or an OTLP severity number) →
//! severity (number, and text as OpenTelemetry spells it: `TRACE`, `DEBUG`, `INFO`, `WARN`,
//! `ERROR`, `FATAL`); `message` or `msg` → the body; `service` → the resource's `service.name`; every
//! other field → an attribute (strings as they are, other values as JSON). A line that is not
//! a JSON object, or has no message, is reported by its number (1-based) with the reason, and
//! the other lines are kept. Blank lines are skipped. Limits: the ingest body limit, at most
//! [`MAX_LINES`] lines.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde_json::{Value, json};
use sextant_ingest::otlp::OtlpRequest;

use crate::read_params::{now_ns, parse_time};
use crate::{ApiError, AppState};

/// Most lines in one request.
pub const MAX_LINES: usize = 100_000;
/// Most problems listed in an answer (the count is always whole).
const MAX_LISTED: usize = 100;

use sextant_ingest::convert::string_value as text;

/// The OTLP severity number and text of a level.
fn severity(value: &Value) -> Result<(i32, String), String> {
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(n @ 1..=24) => Ok((n as i32, sextant_model::severity::name(n as i32).into())),
            _ => Err(format!("severity number {n} is not 1 to 24")),
        },
        Value::String(s) => match sextant_model::severity::of_name(s) {
            Some(number) => Ok((number, sextant_model::severity::name(number).into())),
            None => Err(format!("level `{}` is not known", s.to_ascii_lowercase())),
        },
        _ => Err("`level` must be a string or a number".into()),
    }
}

/// One line as (service, record), or why not.
fn record(line: &str, now: i64) -> Result<(String, LogRecord), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut fields) = value else {
        return Err("not a JSON object".into());
    };
    let take = |fields: &mut serde_json::Map<String, Value>, names: &[&str]| {
        names.iter().find_map(|n| fields.remove(*n))
    };
    let time = match take(&mut fields, &["timestamp", "time", "ts"]) {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => {
            parse_time(&s).ok_or("the time is not RFC 3339 or a Unix time")?
        }
        Some(Value::Number(n)) => {
            let whole = n
                .as_f64()
                .filter(|v| *v >= 0.0)
                .ok_or("the time is negative")?;
            parse_time(&format!("{}", whole.trunc() as u64)).ok_or("the time is out of range")?
        }
        Some(_) => return Err("the time must be a string or a number".into()),
    };
    let (severity_number, severity_text) = match take(&mut fields, &["level", "severity"]) {
        None | Some(Value::Null) => (0, String::new()),
        Some(level) => severity(&level)?,
    };
    let message = match take(&mut fields, &["message", "msg"]) {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => return Err("no `message` or `msg`".into()),
        Some(other) => other.to_string(),
    };
    let service = match fields.remove("service") {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let attributes = fields
        .into_iter()
        .map(|(key, value)| KeyValue {
            key,
            value: text(&match value {
                Value::String(s) => s,
                other => other.to_string(),
            }),
            ..Default::default()
        })
        .collect();
    Ok((
        service,
        LogRecord {
            time_unix_nano: time as u64,
            observed_time_unix_nano: now as u64,
            severity_number,
            severity_text,
            body: text(&message),
            attributes,
            ..Default::default()
        },
    ))
}

pub async fn logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let principal =
        crate::alerts::ingest_principal(&state, &headers, sextant_model::IngestKind::Logs)?;
    let pipeline = state.pipeline()?.clone();
    if body.len() > pipeline.config().max_body_bytes {
        return Err(ApiError::Ingest(sextant_ingest::Error::BodyTooLarge {
            limit: pipeline.config().max_body_bytes,
        }));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not UTF-8: {e}")))?;
    let now = now_ns();
    let mut by_service: BTreeMap<String, Vec<LogRecord>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut rejected = 0usize;
    let mut lines = 0usize;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        if lines > MAX_LINES {
            return Err(ApiError::BadRequest(format!(
                "more than {MAX_LINES} lines in one request"
            )));
        }
        match record(line, now) {
            Ok((service, record)) => by_service.entry(service).or_default().push(record),
            Err(reason) => {
                rejected += 1;
                if problems.len() < MAX_LISTED {
                    problems.push(json!({"line": i + 1, "reason": reason}));
                }
            }
        }
    }
    let accepted: usize = by_service.values().map(Vec::len).sum();
    if accepted > 0 {
        let request = sextant_ingest::convert::logs_by_service(by_service);
        let size = request.encoded_len();
        pipeline
            .ingest_request(&principal.tenant, OtlpRequest::Logs(request), size)
            .await?;
    }
    Ok(axum::Json(json!({
        "accepted": accepted,
        "rejected": rejected,
        "problems": problems,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value;

    /// Bytes that mean something to JSON, for mutations.
    const JSON_BYTES: &[u8] = b"{}[]\":,0-e.";

    #[test]
    fn mutated_lines_never_panic_and_refusals_say_why() {
        let good = r#"{"ts": "2026-12-01T12:00:00.5Z", "level": "warn", "msg": "disk 91% full", "service": "db", "n": [1, {"a": null}]}"#;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let mut bytes = good.as_bytes().to_vec();
            for _ in 0..1 + round % 5 {
                let at = next() as usize % bytes.len().max(1);
                match next() % 3 {
                    0 if !bytes.is_empty() => bytes[at] = next() as u8,
                    1 => bytes.insert(at, JSON_BYTES[next() as usize % JSON_BYTES.len()]),
                    _ => bytes.truncate(at),
                }
            }
            if let Err(reason) = record(&String::from_utf8_lossy(&bytes), 0) {
                assert!(!reason.is_empty());
            }
        }
    }

    #[test]
    fn lines_map_to_records_and_bad_ones_say_why() {
        let now = 1_700_000_000_000_000_000;
        let (service, r) = record(
            r#"{"ts": "2026-12-01T12:00:00Z", "level": "warn", "msg": "disk 91% full", "service": "db", "host": "h1", "pct": 91}"#,
            now,
        )
        .unwrap();
        assert_eq!(service, "db");
        assert_eq!(r.severity_number, 13);
        assert_eq!(
            r.severity_text, "WARN",
            "one spelling of a level, as OTLP's"
        );
        assert_eq!(r.time_unix_nano, 1_796_126_400_000_000_000);
        let attrs: Vec<(&str, String)> = r
            .attributes
            .iter()
            .map(|kv| match &kv.value.as_ref().unwrap().value {
                Some(any_value::Value::StringValue(s)) => (kv.key.as_str(), s.clone()),
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            attrs,
            [("host", "h1".to_string()), ("pct", "91".to_string())]
        );
        let (_, r) = record(
            r#"{"message": "x", "time": 1700000000123, "severity": 17}"#,
            now,
        )
        .unwrap();
        assert_eq!(
            (r.time_unix_nano, r.severity_number),
            (1_700_000_000_123_000_000, 17)
        );
        let (_, r) = record(r#"{"message": "x"}"#, now).unwrap();
        assert_eq!(r.time_unix_nano, now as u64);
        for (line, reason) in [
            ("nope", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"level": "info"}"#, "no `message`"),
            (r#"{"msg": "x", "level": "loud"}"#, "level `loud`"),
            (r#"{"msg": "x", "time": "yesterday"}"#, "RFC 3339"),
            (r#"{"msg": "x", "severity": 99}"#, "1 to 24"),
        ] {
            let error = record(line, now).unwrap_err();
            assert!(error.contains(reason), "{line}: {error}");
        }
    }
}
