//! NDJSON logs and Loki pushes (JSON and snappy protobuf) through the real binary: good lines
//! are stored with their fields mapped (time, severity, body, service, attributes) and a
//! template id, a bad line is reported by number while the others are kept, and the rows stay
//! in the token's tenant.

use serde_json::Value;

use crate::support::{Sextant, agent, create_token, sql};

fn post(server: &Sextant, token: &str, body: &str) -> (u16, Value) {
    let mut response = agent()
        .post(&server.url("/api/v1/logs/ndjson"))
        .header("Authorization", &format!("Bearer {token}"))
        .send(body.as_bytes())
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn ndjson_lines_become_log_rows_and_a_bad_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = create_token(dir.path(), "shop", "ingest");
    let viewer = create_token(dir.path(), "shop", "viewer");
    let other = create_token(dir.path(), "other", "viewer");
    let server = Sextant::start(dir.path());
    let body = concat!(
        r#"{"ts": "2026-12-01T12:00:00Z", "level": "error", "msg": "payment declined for order 41", "service": "payment", "order": 41}"#,
        "\n",
        r#"{"time": 1796126401, "severity": "info", "message": "payment accepted for order 42", "service": "payment"}"#,
        "\n",
        "{not json\n",
        "\n",
        r#"{"timestamp": "2026-12-01T12:00:02Z", "message": "cart saved", "service": "cart", "user": "ada"}"#,
        "\n",
    );
    let (status, answer) = post(&server, &ingest, body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(3), Some(1)),
        "{answer}"
    );
    assert_eq!(answer["problems"][0]["line"], 3);
    assert!(
        answer["problems"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );

    let (status, rows) = sql(
        &server,
        &viewer,
        "SELECT service, severity_number, body, attributes['order'] AS order_id, \
         attributes['user'] AS user_name, template_id IS NOT NULL AS mined, \
         CAST(time AS BIGINT) AS t FROM logs ORDER BY time",
    );
    assert_eq!(status, 200, "{rows}");
    let rows = rows["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["service"], "payment");
    assert_eq!(rows[0]["severity_number"], 17);
    assert_eq!(rows[0]["order_id"], "41");
    assert_eq!(rows[0]["t"].as_i64(), Some(1_796_126_400_000_000_000));
    assert_eq!(rows[1]["severity_number"], 9);
    assert_eq!(rows[2]["service"], "cart");
    assert_eq!(rows[2]["user_name"], "ada");
    assert!(rows.iter().all(|r| r["mined"] == true), "{rows:?}");
    let (_, none) = sql(&server, &other, "SELECT count(*) AS n FROM logs");
    assert_eq!(none["rows"][0]["n"], 0);

    let (status, _) = post(&server, &viewer, body);
    assert_eq!(status, 403, "a viewer may not ingest");
    // Only bad lines: nothing stored, each named.
    let (status, answer) = post(&server, &ingest, "[1]\n{\"level\": \"info\"}\n");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 0);
    assert_eq!(answer["problems"][1]["line"], 2, "{answer}");
    assert!(
        answer["problems"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("no `message`")
    );
    server.stop();
}

#[test]
fn a_loki_json_push_becomes_log_rows_with_the_stream_labels() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = create_token(dir.path(), "shop", "ingest");
    let viewer = create_token(dir.path(), "shop", "viewer");
    let server = Sextant::start(dir.path());
    // As Grafana's clients (promtail, the Loki exporters) send it.
    let push = serde_json::json!({"streams": [
        {"stream": {"service_name": "checkout", "env": "prod"},
         "values": [["1796126400000000000", "order 7 placed"], ["1796126401000000000", "order 8 placed"]]},
        {"stream": {"job": "nginx"}, "values": [["1796126402000000000", "GET /health 200"]]},
    ]});
    let send_bytes = |body: &[u8], content_type: &str| {
        let mut response = agent()
            .post(&server.url("/loki/api/v1/push"))
            .header("Authorization", &format!("Bearer {ingest}"))
            .header("Content-Type", content_type)
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    };
    let (status, answer) = send_bytes(push.to_string().as_bytes(), "application/json");
    assert_eq!(status, 204, "{answer}");
    let (_, rows) = sql(
        &server,
        &viewer,
        "SELECT service, body, attributes['env'] AS env, CAST(time AS BIGINT) AS t FROM logs ORDER BY time",
    );
    let rows = rows["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        (rows[0]["service"].as_str(), rows[0]["env"].as_str()),
        (Some("checkout"), Some("prod"))
    );
    assert_eq!(rows[0]["t"].as_i64(), Some(1_796_126_400_000_000_000));
    assert_eq!(rows[2]["service"], "nginx");
    assert_eq!(rows[2]["body"], "GET /health 200");

    // The protobuf form, snappy-compressed, as Grafana's clients send it by default: written
    // here field by field from Loki's `push.proto`, not with the server's own types.
    let entry = |seconds: u64, nanos: u64, line: &str, metadata: &[(&str, &str)]| {
        let mut timestamp = Vec::new();
        field_varint(&mut timestamp, 1, seconds);
        field_varint(&mut timestamp, 2, nanos);
        let mut entry = Vec::new();
        field_bytes(&mut entry, 1, &timestamp);
        field_bytes(&mut entry, 2, line.as_bytes());
        for (name, value) in metadata {
            let mut pair = Vec::new();
            field_bytes(&mut pair, 1, name.as_bytes());
            field_bytes(&mut pair, 2, value.as_bytes());
            field_bytes(&mut entry, 3, &pair);
        }
        entry
    };
    let mut stream = Vec::new();
    field_bytes(
        &mut stream,
        1,
        br#"{service_name="payment", level="error", pod="payment-7f9c"}"#,
    );
    field_bytes(
        &mut stream,
        2,
        &entry(
            1_796_126_500,
            250,
            "card declined",
            &[("trace_id", "4bf92f35")],
        ),
    );
    field_bytes(
        &mut stream,
        2,
        &entry(1_796_126_501, 0, "card accepted", &[]),
    );
    field_varint(&mut stream, 3, 0x1234_5678);
    let mut push = Vec::new();
    field_bytes(&mut push, 1, &stream);
    let compressed = snap::raw::Encoder::new().compress_vec(&push).unwrap();
    let (status, answer) = send_bytes(&compressed, "application/x-protobuf");
    assert_eq!(status, 204, "{answer}");
    let (_, rows) = sql(
        &server,
        &viewer,
        "SELECT body, attributes['pod'] AS pod, attributes['trace_id'] AS trace, \
         CAST(time AS BIGINT) AS t FROM logs WHERE service = 'payment' ORDER BY time",
    );
    let rows = rows["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["body"], "card declined");
    assert_eq!(rows[0]["pod"], "payment-7f9c");
    assert_eq!(rows[0]["trace"], "4bf92f35");
    assert_eq!(rows[0]["t"].as_i64(), Some(1_796_126_500_000_000_250));
    assert_eq!(rows[1]["trace"], Value::Null);

    let (status, answer) = send_bytes(
        br#"{"streams": [{"stream": {}, "values": [["soon", "x"]]}]}"#,
        "application/json",
    );
    assert_eq!(status, 400);
    assert!(answer.contains("stream 0, value 0"), "{answer}");
    let (status, answer) = send_bytes(b"\x00snappy", "application/x-protobuf");
    assert_eq!(status, 400, "{answer}");
    let mut bad_labels = Vec::new();
    field_bytes(&mut bad_labels, 1, b"service_name=payment");
    let mut push = Vec::new();
    field_bytes(&mut push, 1, &bad_labels);
    let compressed = snap::raw::Encoder::new().compress_vec(&push).unwrap();
    let (status, answer) = send_bytes(&compressed, "application/x-protobuf");
    assert_eq!(status, 400);
    assert!(answer.contains("not in braces"), "{answer}");
    let (status, _) = send_bytes(b"line", "text/plain");
    assert_eq!(status, 415);
    let (_, count) = sql(&server, &viewer, "SELECT count(*) AS n FROM logs");
    assert_eq!(count["rows"][0]["n"], 5, "refused pushes stored nothing");
    server.stop();
}

/// Appends a protobuf varint field.
pub fn field_varint(out: &mut Vec<u8>, field: u32, value: u64) {
    varint(out, u64::from(field) << 3);
    varint(out, value);
}

/// Appends a protobuf length-delimited field.
pub fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, (u64::from(field) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}
