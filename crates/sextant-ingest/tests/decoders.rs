//! Every ingest decoder fed random and mutated bytes: OTLP (protobuf and JSON, gzip or not, each
//! signal), Prometheus remote_write, Loki push (JSON and protobuf) and syslog (the parser and
//! the TCP framing). None may panic; each answers with a value or an error, and a decoder's
//! output stays within a small multiple of its input. `PROPTEST_CASES` sets the cases per
//! property (default 256; SECURITY.md records a long run).

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;
use sextant_ingest::otlp::{self, Encoding};
use sextant_ingest::remote_write::{self, Label, PromState, Sample, TimeSeries, WriteRequest};
use sextant_ingest::{loki, syslog};
use sextant_model::{Signal, TenantId};

const LIMIT: usize = 1 << 20;

/// Valid inputs to mutate: the decoders' own formats, so mutations reach deep into them.
fn seeds() -> Vec<Vec<u8>> {
    let write = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "http_requests_total".into(),
                },
                Label {
                    name: "job".into(),
                    value: "api".into(),
                },
            ],
            samples: vec![Sample {
                value: 3.0,
                timestamp: 1_700_000_000_000,
            }],
            exemplars: Vec::new(),
        }],
        metadata: Vec::new(),
    };
    vec![
        write.encode_to_vec(),
        br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}}]},"scopeLogs":[{"logRecords":[{"timeUnixNano":"1","body":{"stringValue":"x"},"traceId":"0af7651916cd43dd8448eb211c80319c"}]}]}]}"#.to_vec(),
        br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","histogram":{"dataPoints":[{"count":"2","bucketCounts":["1","1"],"explicitBounds":[1.0]}],"aggregationTemporality":2}}]}]}]}"#.to_vec(),
        br#"{"streams":[{"stream":{"job":"x"},"values":[["1","line",{"k":"v"}]]}]}"#.to_vec(),
        b"<34>1 2003-10-11T22:14:15.003Z host su - ID47 [a@1 b=\"c\\\"d\"] msg".to_vec(),
        b"<13>Dec  1 09:05:01 host cron[123]: job done".to_vec(),
        b"98 <13>1 2026-12-01T14:55:40.577352+00:00 vm api - - - hello tcp\n".to_vec(),
    ]
}

fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for &(at, op, value) in edits {
        if bytes.is_empty() {
            bytes.push(value);
            continue;
        }
        let at = at % bytes.len();
        match op % 4 {
            0 => bytes[at] = value,
            1 => bytes.insert(at, value),
            2 => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .expect("snappy")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Every decoder on `bytes`, raw and wrapped in each compression it takes.
fn decode_everything(bytes: &[u8]) {
    let tenant = TenantId::new("fuzz").expect("a tenant");
    let gzipped = Encoding {
        gzip: true,
        ..Encoding::protobuf()
    };
    for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
        for (encoding, body) in [
            (Encoding::protobuf(), bytes.to_vec()),
            (Encoding::json(), bytes.to_vec()),
            (gzipped, gzip(bytes)),
        ] {
            if let Ok(batch) = otlp::decode(&tenant, signal, encoding, Bytes::from(body), LIMIT) {
                assert!(batch.rows.num_rows() <= bytes.len() + 1);
            }
        }
    }
    for body in [bytes.to_vec(), snappy(bytes)] {
        if let Ok(write) = remote_write::decode(&body, LIMIT) {
            let converted = PromState::default().convert(write);
            assert!(converted.samples <= bytes.len());
        }
        if let Ok(streams) = loki::decode_protobuf(&body, LIMIT) {
            let _ = loki::to_otlp(streams, 0);
        }
    }
    if let Ok(streams) = loki::decode_json(bytes) {
        let _ = loki::to_otlp(streams, 0);
    }
    let _ = loki::parse_labels(&String::from_utf8_lossy(bytes));
    let message = syslog::parse(bytes, 1_700_000_000_000_000_000);
    assert!(message.message.len() <= 3 * bytes.len() + 3);
    let mut frames = Vec::new();
    let mut decoder = syslog::FrameDecoder::new(512);
    for chunk in bytes.chunks(7) {
        decoder.push(chunk, &mut frames);
    }
    decoder.finish(&mut frames);
    assert!(frames.iter().all(|f| f.len() <= 512));
}

proptest! {
    #[test]
    fn random_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_valid_inputs_never_panic_a_decoder(
        seed in 0usize..7,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..12),
    ) {
        let seeds = seeds();
        decode_everything(&mutate(&seeds[seed % seeds.len()], &edits));
    }
}

#[test]
fn a_snappy_bomb_is_refused_before_it_is_inflated() {
    // 64 MiB of zeros compresses to about 3 MiB; the limit is checked on the declared length.
    let body = snappy(&vec![0u8; 64 << 20]);
    assert!(
        remote_write::decode(&body, LIMIT)
            .unwrap_err()
            .contains("over the limit")
    );
    assert!(
        loki::decode_protobuf(&body, LIMIT)
            .unwrap_err()
            .contains("over the limit")
    );
}
