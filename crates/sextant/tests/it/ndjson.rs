//! NDJSON logs through the real binary: good lines are stored with their fields mapped (time,
//! severity, body, service, attributes) and a template id, a bad line is reported by number
//! while the others are kept, and the rows stay in the token's tenant.

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
