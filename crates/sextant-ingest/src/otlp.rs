//! The OTLP receiver's decoding: protobuf or JSON bodies, gzip or not, for logs, metrics and
//! traces, into a checked batch ready for the ingest bus.
//!
//! OTLP/JSON follows the protocol's JSON rules (hex trace and span ids, 64-bit integers as
//! strings or numbers, enums as numbers, lowerCamelCase field names). Whatever the wire form,
//! the batch's payload is OTLP protobuf: the body itself when it arrived as protobuf and nothing
//! was dropped, a fresh encoding otherwise.

use std::io::Read;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use sextant_model::otlp::{
    Checked, count_data_points, log_rows, metric_rows, retain_valid_logs, retain_valid_spans,
    span_rows,
};
use sextant_model::{Signal, TenantId};
use sextant_tables::schema;

use crate::{Error, Result};

/// How a body is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Protobuf => "protobuf",
            Format::Json => "json",
        }
    }
}

/// A body's format and compression, from its `Content-Type` and `Content-Encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoding {
    pub format: Format,
    pub gzip: bool,
}

impl Encoding {
    pub fn protobuf() -> Encoding {
        Encoding {
            format: Format::Protobuf,
            gzip: false,
        }
    }

    pub fn json() -> Encoding {
        Encoding {
            format: Format::Json,
            gzip: false,
        }
    }

    /// Reads the two headers. A missing content type is an error (OTLP/HTTP requires one).
    pub fn from_headers(
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Result<Encoding> {
        let media_type = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let format = match media_type.as_str() {
            "application/x-protobuf" | "application/protobuf" => Format::Protobuf,
            "application/json" => Format::Json,
            _ => {
                return Err(Error::UnsupportedContentType {
                    content_type: content_type.unwrap_or("").to_owned(),
                    expected: "application/x-protobuf or application/json",
                });
            }
        };
        let gzip = match content_encoding
            .map(|e| e.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("identity") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(Error::UnsupportedEncoding {
                    encoding: other.to_owned(),
                    expected: "gzip or none",
                });
            }
        };
        Ok(Encoding { format, gzip })
    }
}

/// A decoded export request of any signal.
#[derive(Clone, Debug, PartialEq)]
pub enum OtlpRequest {
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Traces(ExportTraceServiceRequest),
}

impl OtlpRequest {
    pub fn signal(&self) -> Signal {
        match self {
            OtlpRequest::Logs(_) => Signal::Logs,
            OtlpRequest::Metrics(_) => Signal::Metrics,
            OtlpRequest::Traces(_) => Signal::Traces,
        }
    }

    /// Counts records and drops those that break OTLP's id rules.
    pub fn check(&mut self) -> Checked {
        match self {
            OtlpRequest::Logs(r) => retain_valid_logs(r),
            OtlpRequest::Metrics(r) => count_data_points(r),
            OtlpRequest::Traces(r) => retain_valid_spans(r),
        }
    }

    /// The request's records as rows of their table.
    pub fn rows(&self, tenant: &TenantId) -> RecordBatch {
        match self {
            OtlpRequest::Logs(r) => schema::log_batch(&log_rows(tenant, r)),
            OtlpRequest::Metrics(r) => schema::metric_batch(&metric_rows(tenant, r)),
            OtlpRequest::Traces(r) => schema::span_batch(&span_rows(tenant, r)),
        }
    }

    pub fn encode(&self) -> Bytes {
        Bytes::from(match self {
            OtlpRequest::Logs(r) => r.encode_to_vec(),
            OtlpRequest::Metrics(r) => r.encode_to_vec(),
            OtlpRequest::Traces(r) => r.encode_to_vec(),
        })
    }
}

/// A request ready for the ingest bus.
#[derive(Clone, Debug)]
pub struct DecodedBatch {
    pub signal: Signal,
    /// OTLP protobuf of the accepted records.
    pub payload: Bytes,
    /// The accepted records as rows of their table.
    pub rows: RecordBatch,
    pub checked: Checked,
}

impl DecodedBatch {
    /// The records' times (nanoseconds since the Unix epoch), those they have.
    fn record_times(&self) -> Vec<i64> {
        use arrow::array::{Array, TimestampNanosecondArray};
        let Some(times) = self
            .rows
            .column_by_name("time")
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        else {
            return Vec::new();
        };
        (0..times.len())
            .filter(|i| times.is_valid(*i))
            .map(|i| times.value(i))
            .collect()
    }

    /// The earliest and latest record time, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let times = self.record_times();
        Some((*times.iter().min()?, *times.iter().max()?))
    }

    /// The median time of the batch's records: where a batch stands in time, moved by no few
    /// records with damaged timestamps.
    pub fn median_time(&self) -> Option<i64> {
        let mut times = self.record_times();
        if times.is_empty() {
            return None;
        }
        let middle = times.len() / 2;
        Some(*times.select_nth_unstable(middle).1)
    }

    /// Checks a decoded request and turns it into rows; `original` is its protobuf body when it
    /// came as one.
    pub fn from_request(
        tenant: &TenantId,
        mut request: OtlpRequest,
        original: Option<Bytes>,
    ) -> DecodedBatch {
        let checked = request.check();
        let payload = match original {
            Some(body) if checked.rejected == 0 => body,
            _ => request.encode(),
        };
        DecodedBatch {
            signal: request.signal(),
            payload,
            rows: request.rows(tenant),
            checked,
        }
    }
}

/// Decodes one OTLP/HTTP body of `tenant`. `max_bytes` bounds the body after decompression.
pub fn decode(
    tenant: &TenantId,
    signal: Signal,
    encoding: Encoding,
    body: Bytes,
    max_bytes: usize,
) -> Result<DecodedBatch> {
    let body = if encoding.gzip {
        gunzip(&body, max_bytes, signal, encoding.format)?
    } else {
        body
    };
    let malformed = |message: String| Error::Malformed {
        signal,
        format: encoding.format.as_str(),
        message,
    };
    let request = match encoding.format {
        Format::Protobuf => {
            let decoded = match signal {
                Signal::Logs => {
                    ExportLogsServiceRequest::decode(body.clone()).map(OtlpRequest::Logs)
                }
                Signal::Metrics => {
                    ExportMetricsServiceRequest::decode(body.clone()).map(OtlpRequest::Metrics)
                }
                Signal::Traces => {
                    ExportTraceServiceRequest::decode(body.clone()).map(OtlpRequest::Traces)
                }
            };
            let request = decoded.map_err(|e| malformed(e.to_string()))?;
            return Ok(DecodedBatch::from_request(tenant, request, Some(body)));
        }
        Format::Json => match signal {
            Signal::Logs => serde_json::from_slice(&body).map(OtlpRequest::Logs),
            Signal::Metrics => serde_json::from_slice(&body).map(OtlpRequest::Metrics),
            Signal::Traces => serde_json::from_slice(&body).map(OtlpRequest::Traces),
        }
        .map_err(|e| malformed(e.to_string()))?,
    };
    Ok(DecodedBatch::from_request(tenant, request, None))
}

fn gunzip(body: &[u8], max_bytes: usize, signal: Signal, format: Format) -> Result<Bytes> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max_bytes));
    flate2::read::GzDecoder::new(body)
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Malformed {
            signal,
            format: format.as_str(),
            message: format!("gzip body does not decompress: {e}"),
        })?;
    if out.len() > max_bytes {
        return Err(Error::BodyTooLarge { limit: max_bytes });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const LIMIT: usize = 1 << 20;

    fn tenant() -> TenantId {
        TenantId::new("t").unwrap()
    }

    fn check_encoding(
        content_type: Option<&str>,
        encoding: Option<&str>,
        expected: Option<Encoding>,
    ) {
        let got = Encoding::from_headers(content_type, encoding).ok();
        assert_eq!(got, expected, "{content_type:?} {encoding:?}");
    }

    #[test]
    fn encodings_from_headers() {
        let gz = |format| Some(Encoding { format, gzip: true });
        check_encoding(
            Some("application/x-protobuf"),
            None,
            Some(Encoding::protobuf()),
        );
        check_encoding(
            Some("application/json; charset=utf-8"),
            None,
            Some(Encoding::json()),
        );
        check_encoding(Some("application/json"), Some("gzip"), gz(Format::Json));
        check_encoding(
            Some("Application/Protobuf"),
            Some("GZIP"),
            gz(Format::Protobuf),
        );
        check_encoding(Some("text/plain"), None, None);
        check_encoding(None, None, None);
        check_encoding(Some("application/json"), Some("br"), None);
    }

    #[test]
    fn garbage_protobuf_is_malformed() {
        let err = decode(
            &tenant(),
            Signal::Logs,
            Encoding::protobuf(),
            Bytes::from_static(b"\xff\xff\xff"),
            LIMIT,
        )
        .unwrap_err();
        assert_eq!(err.code(), "malformed_request");
        assert!(
            err.to_string()
                .starts_with("malformed protobuf logs request: "),
            "{err}"
        );
    }

    #[test]
    fn json_errors_name_the_place() {
        let err = decode(
            &tenant(),
            Signal::Traces,
            Encoding::json(),
            Bytes::from_static(b"{\"resourceSpans\": 5}"),
            LIMIT,
        )
        .unwrap_err();
        assert!(err.to_string().contains("line 1 column"), "{err}");
    }

    #[test]
    fn gzip_bombs_are_too_large() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b' '; LIMIT + 10]).unwrap();
        let body = Bytes::from(encoder.finish().unwrap());
        let encoding = Encoding {
            format: Format::Json,
            gzip: true,
        };
        let err = decode(&tenant(), Signal::Logs, encoding, body, LIMIT).unwrap_err();
        assert!(matches!(err, Error::BodyTooLarge { .. }), "{err}");
    }

    fn decode_json(signal: Signal, json: &str) -> DecodedBatch {
        decode(
            &tenant(),
            signal,
            Encoding::json(),
            Bytes::from(json.to_owned()),
            LIMIT,
        )
        .unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn json_integers_as_strings_or_numbers_and_enums_as_numbers() {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let logs = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
            {"timeUnixNano":"1700000000000000001","severityNumber":17,
             "body":{"intValue":"-42"},"attributes":[{"key":"n","value":{"intValue":7}}]},
            {"timeUnixNano":1700000000000000002,"traceId":"5B8EFFF798038103D269B633813FC60C",
             "spanId":"eee19b7ec3c1b174","body":{"doubleValue":1.5}}]}]}]}"#;
        let batch = decode_json(Signal::Logs, logs);
        let request = ExportLogsServiceRequest::decode(batch.payload).unwrap();
        let records = &request.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(records[0].time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(records[0].severity_number, 17);
        assert_eq!(
            records[0].body.as_ref().unwrap().value,
            Some(Value::IntValue(-42))
        );
        let attribute = records[0].attributes[0].value.as_ref().unwrap();
        assert_eq!(attribute.value, Some(Value::IntValue(7)));
        assert_eq!(records[1].time_unix_nano, 1_700_000_000_000_000_002);
        assert_eq!(records[1].trace_id[0], 0x5b);
        assert_eq!(records[1].span_id.len(), 8);

        let traces = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
            "spanId":"eee19b7ec3c1b174","name":"GET /","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":2,
            "status":{"code":2,"message":"boom"}}]}]}]}"#;
        let batch = decode_json(Signal::Traces, traces);
        let request = ExportTraceServiceRequest::decode(batch.payload).unwrap();
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            (
                span.kind,
                span.start_time_unix_nano,
                span.end_time_unix_nano
            ),
            (2, 1, 2)
        );
        assert_eq!(span.status.as_ref().unwrap().code, 2);

        let metrics = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"h","histogram":{
            "aggregationTemporality":2,"dataPoints":[{"count":3,"sum":6,"bucketCounts":["1",2],
            "explicitBounds":[1.0],"timeUnixNano":"5"}]}},{"name":"s","summary":{"dataPoints":[
            {"count":"2","sum":3.5,"quantileValues":[{"quantile":0.5,"value":1}]}]}}]}]}]}"#;
        let batch = decode_json(Signal::Metrics, metrics);
        assert_eq!(batch.checked.accepted, 2);
        let request = ExportMetricsServiceRequest::decode(batch.payload).unwrap();
        let rows =
            sextant_model::otlp::metric_rows(&sextant_model::TenantId::new("t").unwrap(), &request);
        assert_eq!(rows[0].bucket_counts, vec![1, 2]);
        assert_eq!(rows[0].count, Some(3));
        assert_eq!(rows[1].quantiles, vec![(0.5, 1.0)]);
    }

    fn example(name: &str) -> Option<Bytes> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/datasets/otlp-examples")
            .join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Some(Bytes::from(bytes)),
            Err(_) => {
                eprintln!("skipping: {} not found", path.display());
                None
            }
        }
    }

    #[test]
    fn official_examples_decode() {
        for (name, signal, records) in [
            ("logs.json", Signal::Logs, 1),
            ("trace.json", Signal::Traces, 1),
            ("metrics.json", Signal::Metrics, 4),
            ("events.json", Signal::Logs, 1),
        ] {
            let Some(body) = example(name) else { continue };
            let batch = decode(&tenant(), signal, Encoding::json(), body, LIMIT)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(batch.checked.accepted, records, "{name}");
            assert_eq!(batch.checked.rejected, 0, "{name}");
        }
    }
}
