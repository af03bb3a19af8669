//! Syslog through the real senders: `logger` (util-linux) straight to Sextant's UDP and TCP
//! listeners in RFC 5424 and RFC 3164, and Debian's `rsyslog` forwarding to them (octet-counted
//! RFC 5424 over TCP, its forward format over UDP). Host, app, severity, facility and time
//! arrive right, an unparseable line is kept whole, and each listener's tenant holds only its
//! own messages.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Kill, Sextant, create_token, program_or_skip, sql};

/// A port free for both TCP and UDP.
fn free_tcp_and_udp_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn logger(args: &[&str]) {
    let status = Command::new("logger").args(args).status().unwrap();
    assert!(status.success(), "logger {args:?}");
}

fn hostname() -> String {
    let output = Command::new("hostname").output().unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The rows whose body is `body`, once `n` of them have arrived.
fn wait_rows(server: &Sextant, token: &str, body: &str, n: usize) -> Vec<Value> {
    let query = format!(
        "SELECT service, resource_attributes['host.name'] AS host, severity_number, severity_text, \
         attributes['syslog.facility'] AS facility, attributes['syslog.format'] AS format, \
         attributes['syslog.msgid'] AS msgid, attributes['order@32473.id'] AS order_id, \
         CAST(time AS BIGINT) AS t, template_id IS NOT NULL AS mined FROM logs WHERE body = '{body}'"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, rows) = sql(server, token, &query);
        assert_eq!(status, 200, "{rows}");
        let rows = rows["rows"].as_array().unwrap().clone();
        if rows.len() >= n {
            return rows;
        }
        assert!(Instant::now() < deadline, "`{body}`: {rows:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn logger_and_rsyslog_messages_arrive_with_host_app_severity_and_time() {
    let (Some(_), Some(rsyslogd)) = (
        program_or_skip("/usr/bin/logger"),
        program_or_skip("/usr/sbin/rsyslogd"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let edge = create_token(&data, "edge", "viewer");
    let core = create_token(&data, "core", "viewer");
    let (edge_port, core_port) = (free_tcp_and_udp_port(), free_tcp_and_udp_port());
    let server = Sextant::start_with_config(
        &data,
        Some(&format!(
            "[[syslog]]\ntenant = \"edge\"\nudp = \"127.0.0.1:{edge_port}\"\ntcp = \"127.0.0.1:{edge_port}\"\n\n\
             [[syslog]]\ntenant = \"core\"\ntcp = \"127.0.0.1:{core_port}\"\n"
        )),
    );
    let host = hostname();
    let port = edge_port.to_string();
    let before = now_ns() - 1_000_000_000;
    // RFC 5424 over UDP, with a message id and structured data.
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-d",
        "--rfc5424",
        "-t",
        "billing",
        "-p",
        "local3.err",
        "--msgid",
        "PAY",
        "--sd-id",
        "order@32473",
        "--sd-param",
        "id=\"9\"",
        "payment failed",
    ]);
    // RFC 5424 over TCP, octet-counted; RFC 3164 over UDP and over TCP (newline framing).
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-T",
        "--octet-count",
        "--rfc5424",
        "-t",
        "api",
        "-p",
        "user.warning",
        "slow request",
    ]);
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-d",
        "--rfc3164",
        "-t",
        "cron",
        "-p",
        "cron.info",
        "job done",
    ]);
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-T",
        "--rfc3164",
        "-t",
        "sshd",
        "-p",
        "auth.notice",
        "session opened",
    ]);
    // A line with no syslog header at all, kept whole.
    {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", edge_port)).unwrap();
        stream.write_all(b"no header here\n").unwrap();
    }
    // The other tenant's listener.
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &core_port.to_string(),
        "-T",
        "--rfc5424",
        "-t",
        "db",
        "-p",
        "daemon.crit",
        "disk full",
    ]);
    let after = now_ns() + 1_000_000_000;

    let in_time = |row: &Value| {
        let t = row["t"].as_i64().unwrap();
        t >= before && t <= after
    };
    let row = &wait_rows(&server, &edge, "payment failed", 1)[0];
    assert_eq!(row["service"], "billing");
    assert_eq!(row["host"], host.as_str());
    assert_eq!(
        (
            row["severity_number"].as_i64(),
            row["severity_text"].as_str()
        ),
        (Some(17), Some("err"))
    );
    assert_eq!(
        (row["facility"].as_str(), row["format"].as_str()),
        (Some("local3"), Some("rfc5424"))
    );
    assert_eq!(
        (row["msgid"].as_str(), row["order_id"].as_str()),
        (Some("PAY"), Some("9"))
    );
    assert!(in_time(row), "{row}");
    assert_eq!(row["mined"], true);
    for (body, service, severity, facility, format) in [
        ("slow request", "api", 13, "user", "rfc5424"),
        ("job done", "cron", 9, "cron", "rfc3164"),
        ("session opened", "sshd", 10, "auth", "rfc3164"),
    ] {
        let row = &wait_rows(&server, &edge, body, 1)[0];
        assert_eq!(
            (
                row["service"].as_str(),
                row["host"].as_str(),
                row["severity_number"].as_i64()
            ),
            (Some(service), Some(host.as_str()), Some(severity)),
            "{body}: {row}"
        );
        assert_eq!(
            (row["facility"].as_str(), row["format"].as_str()),
            (Some(facility), Some(format))
        );
        assert!(in_time(row), "{body}: {row}");
    }
    let raw = &wait_rows(&server, &edge, "no header here", 1)[0];
    assert_eq!(raw["format"], "raw");
    assert_eq!(raw["severity_number"], 0);
    assert!(in_time(raw), "a raw line takes its arrival time: {raw}");

    // rsyslog as a relay: it takes `logger`'s messages on its own UDP port and forwards them,
    // RFC 5424 octet-counted over TCP and its forward format (RFC 3164 header, RFC 3339 time)
    // over UDP.
    let relay_port = free_tcp_and_udp_port();
    let work = dir.path().join("rsyslog");
    std::fs::create_dir_all(&work).unwrap();
    let config = dir.path().join("rsyslog.conf");
    std::fs::write(
        &config,
        format!(
            "global(workDirectory=\"{work}\")\n\
             module(load=\"imudp\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{relay_port}\")\n\
             action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{edge_port}\" protocol=\"tcp\" \
             TCP_Framing=\"octet-counted\" template=\"RSYSLOG_SyslogProtocol23Format\")\n\
             action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{edge_port}\" protocol=\"udp\" \
             template=\"RSYSLOG_ForwardFormat\")\n",
            work = work.display()
        ),
    )
    .unwrap();
    let _rsyslog = Kill(
        Command::new(rsyslogd)
            .args(["-n", "-f"])
            .arg(&config)
            .arg("-i")
            .arg(dir.path().join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // rsyslog may take a moment to open its port: resend until the message comes through.
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = "queue backlog 4000";
    let relayed = loop {
        logger(&[
            "-n",
            "127.0.0.1",
            "-P",
            &relay_port.to_string(),
            "-d",
            "--rfc3164",
            "-t",
            "worker",
            "-p",
            "local0.warning",
            body,
        ]);
        std::thread::sleep(Duration::from_millis(500));
        let (_, rows) = sql(
            &server,
            &edge,
            &format!(
                "SELECT count(DISTINCT attributes['syslog.format']) AS n FROM logs WHERE body = '{body}'"
            ),
        );
        if rows["rows"][0]["n"].as_i64() == Some(2) {
            break wait_rows(&server, &edge, body, 2);
        }
        assert!(
            Instant::now() < deadline,
            "rsyslog did not relay both ways: {rows}"
        );
    };
    for row in &relayed {
        assert_eq!(
            (
                row["service"].as_str(),
                row["host"].as_str(),
                row["severity_number"].as_i64()
            ),
            (Some("worker"), Some(host.as_str()), Some(13)),
            "{row}"
        );
        assert_eq!(row["facility"], "local0");
        assert!(row["t"].as_i64().unwrap() >= before, "{row}");
    }
    let formats: Vec<&str> = relayed
        .iter()
        .map(|r| r["format"].as_str().unwrap())
        .collect();
    assert!(
        formats.contains(&"rfc5424") && formats.contains(&"rfc3164"),
        "{formats:?}"
    );

    // Each listener's tenant holds only its own messages.
    let row = &wait_rows(&server, &core, "disk full", 1)[0];
    assert_eq!(
        (row["service"].as_str(), row["severity_number"].as_i64()),
        (Some("db"), Some(21))
    );
    let (_, rows) = sql(
        &server,
        &core,
        "SELECT count(*) AS n FROM logs WHERE body <> 'disk full'",
    );
    assert_eq!(rows["rows"][0]["n"], 0);
    let (_, rows) = sql(
        &server,
        &edge,
        "SELECT count(*) AS n FROM logs WHERE body = 'disk full'",
    );
    assert_eq!(rows["rows"][0]["n"], 0);
    server.stop();
}
