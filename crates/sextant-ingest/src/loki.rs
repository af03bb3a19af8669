//! Loki's push API bodies, JSON and snappy protobuf, decoded into streams and turned into an
//! OTLP logs request.
//!
//! A stream's labels become each record's attributes and `service_name` (else `service`, else
//! `job`) the resource's `service.name`; an entry's structured metadata adds attributes. A
//! malformed stream or entry refuses the whole body, naming it, as Loki does.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::Value;

use crate::convert::{logs_by_service, string_attribute as text, string_value};

/// One stream of a push: its labels and entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stream {
    pub labels: Vec<(String, String)>,
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entry {
    pub time_unix_nano: u64,
    pub line: String,
    pub structured_metadata: Vec<(String, String)>,
}

/// Loki's `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// Labels in Prometheus's text form: `{job="api", level="info"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPair>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Decodes a snappy-compressed protobuf push. `max_bytes` bounds the decompressed size.
pub fn decode_protobuf(body: &[u8], max_bytes: usize) -> Result<Vec<Stream>, String> {
    let raw = crate::convert::unsnappy(body, max_bytes)?;
    let push = <PushRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| format!("not a Loki PushRequest: {e}"))?;
    push.streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let labels = parse_labels(&s.labels).map_err(|e| format!("stream {i}: {e}"))?;
            let entries = s
                .entries
                .into_iter()
                .enumerate()
                .map(|(j, e)| {
                    let t = e.timestamp.unwrap_or_default();
                    let time = u64::try_from(t.seconds)
                        .ok()
                        .and_then(|s| s.checked_mul(1_000_000_000))
                        .and_then(|ns| ns.checked_add(u64::try_from(t.nanos).ok()?))
                        .ok_or_else(|| {
                            format!("stream {i}, entry {j}: the time is out of range")
                        })?;
                    Ok(Entry {
                        time_unix_nano: time,
                        line: e.line,
                        structured_metadata: e
                            .structured_metadata
                            .into_iter()
                            .map(|p| (p.name, p.value))
                            .collect(),
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(Stream { labels, entries })
        })
        .collect()
}

/// Decodes a JSON push: `{"streams": [{"stream": {labels}, "values": [["<unix ns>", "line"],
/// or with a third element, an object of structured metadata]}]}`.
pub fn decode_json(body: &[u8]) -> Result<Vec<Stream>, String> {
    let push: Value =
        serde_json::from_slice(body).map_err(|e| format!("not a Loki push body: {e}"))?;
    let streams = push["streams"]
        .as_array()
        .ok_or("the body has no `streams` array")?;
    let pairs = |object: &serde_json::Map<String, Value>| -> Option<Vec<(String, String)>> {
        object
            .iter()
            .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect()
    };
    streams
        .iter()
        .enumerate()
        .map(|(i, stream)| {
            let labels = stream["stream"]
                .as_object()
                .and_then(pairs)
                .ok_or_else(|| {
                    format!("stream {i}: `stream` must be an object of string labels")
                })?;
            let values = stream["values"]
                .as_array()
                .ok_or_else(|| format!("stream {i}: `values` must be an array"))?;
            let entries = values
                .iter()
                .enumerate()
                .map(|(j, value)| {
                    let bad = || {
                        format!(
                            "stream {i}, value {j}: must be [\"<unix nanoseconds>\", \"line\"] \
                             with an optional object of structured metadata"
                        )
                    };
                    let pair = value.as_array().filter(|p| (2..=3).contains(&p.len()));
                    let pair = pair.ok_or_else(bad)?;
                    let time = pair[0]
                        .as_str()
                        .and_then(|t| t.parse::<u64>().ok())
                        .ok_or_else(bad)?;
                    let line = pair[1].as_str().ok_or_else(bad)?;
                    let structured_metadata = match pair.get(2) {
                        None => Vec::new(),
                        Some(Value::Object(o)) => pairs(o).ok_or_else(bad)?,
                        Some(_) => return Err(bad()),
                    };
                    Ok(Entry {
                        time_unix_nano: time,
                        line: line.to_owned(),
                        structured_metadata,
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(Stream { labels, entries })
        })
        .collect()
}

/// Parses Prometheus's label text, `{name="value", ...}`, values with `\"`, `\\` and `\n`
/// escapes.
pub fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("labels `{text}` are not in braces"))?;
    let mut labels = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("labels `{text}`: a name without `=`"))?;
        let name = rest[..eq].trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(format!("labels `{text}`: label name `{name}` is not valid"));
        }
        let after = rest[eq + 1..].trim_start();
        let mut chars = after.strip_prefix('"').ok_or_else(|| {
            format!("labels `{text}`: the value of `{name}` is not in double quotes")
        })?;
        let mut value = String::new();
        loop {
            let Some(c) = chars.chars().next() else {
                return Err(format!(
                    "labels `{text}`: the value of `{name}` is not closed"
                ));
            };
            chars = &chars[c.len_utf8()..];
            match c {
                '"' => break,
                '\\' => {
                    let Some(e) = chars.chars().next() else {
                        continue;
                    };
                    chars = &chars[e.len_utf8()..];
                    value.push(if e == 'n' { '\n' } else { e });
                }
                c => value.push(c),
            }
        }
        labels.push((name.to_owned(), value));
        rest = chars.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(labels)
}

/// The streams as one OTLP logs request; `now` is the observed time.
pub fn to_otlp(streams: Vec<Stream>, now: u64) -> ExportLogsServiceRequest {
    let mut by_service: BTreeMap<String, Vec<LogRecord>> = BTreeMap::new();
    for stream in streams {
        let label = |k: &str| stream.labels.iter().find(|(n, _)| n == k).map(|(_, v)| v);
        let service = label("service_name")
            .or_else(|| label("service"))
            .or_else(|| label("job"))
            .cloned()
            .unwrap_or_default();
        let attributes: Vec<KeyValue> = stream.labels.iter().map(|(k, v)| text(k, v)).collect();
        let records = by_service.entry(service).or_default();
        for entry in stream.entries {
            let mut attributes = attributes.clone();
            attributes.extend(entry.structured_metadata.iter().map(|(k, v)| text(k, v)));
            records.push(LogRecord {
                time_unix_nano: entry.time_unix_nano,
                observed_time_unix_nano: now,
                body: string_value(&entry.line),
                attributes,
                ..Default::default()
            });
        }
    }
    logs_by_service(by_service)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn label_text_parses_with_escapes_and_refuses_bad_forms() {
        assert_eq!(
            parse_labels(r#"{job="api", msg="say \"hi\"\n", a_b="c\\d"}"#).unwrap(),
            [
                ("job".to_string(), "api".to_string()),
                ("msg".into(), "say \"hi\"\n".into()),
                ("a_b".into(), "c\\d".into()),
            ]
        );
        assert_eq!(parse_labels("{}").unwrap(), []);
        for bad in ["job=\"x\"", "{job}", "{job=x}", "{job=\"x}", "{=\"x\"}"] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn protobuf_and_json_pushes_give_the_same_streams() {
        let push = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{service_name="cart", level="error"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: 1_764_590_400,
                        nanos: 5,
                    }),
                    line: "cart is empty".into(),
                    structured_metadata: vec![LabelPair {
                        name: "trace_id".into(),
                        value: "abc".into(),
                    }],
                }],
                hash: 0,
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&push.encode_to_vec())
            .unwrap();
        let from_protobuf = decode_protobuf(&body, 1 << 20).unwrap();
        let from_json = decode_json(
            br#"{"streams": [{"stream": {"service_name": "cart", "level": "error"},
                 "values": [["1764590400000000005", "cart is empty", {"trace_id": "abc"}]]}]}"#,
        )
        .unwrap();
        // JSON objects are read in key order.
        let mut sorted = from_protobuf.clone();
        sorted[0].labels.sort();
        assert_eq!(sorted, from_json);
        let request = to_otlp(from_protobuf, 7);
        let resource = &request.resource_logs[0];
        assert_eq!(
            resource.resource.as_ref().unwrap().attributes[0],
            text("service.name", "cart")
        );
        let record = &resource.scope_logs[0].log_records[0];
        assert_eq!(record.time_unix_nano, 1_764_590_400_000_000_005);
        assert_eq!(record.attributes.len(), 3);
        assert!(decode_protobuf(&body, 8).unwrap_err().contains("limit"));
        assert!(decode_protobuf(b"{\"streams\":[]}", 1 << 20).is_err());
        for (bad, why) in [
            (
                r#"{"streams": [{"stream": {"a": 1}, "values": []}]}"#,
                "stream 0",
            ),
            (
                r#"{"streams": [{"stream": {}, "values": [["x", "line"]]}]}"#,
                "stream 0, value 0",
            ),
            (r#"{"nope": 1}"#, "`streams`"),
        ] {
            let error = decode_json(bad.as_bytes()).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}
