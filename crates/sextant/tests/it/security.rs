//! Security through the real binary: TLS on the HTTP port and on syslog with certificates made
//! here (rcgen), client certificates for ingest, certificate reload, the refusal to listen in
//! the clear off loopback, narrowed token scopes, last-used times, admin actions in the audit
//! trail, failed-authentication throttling, and encryption at rest (no plaintext of a marker
//! anywhere under the data directory, while queries still find it; wrong and missing keys
//! refused; key rotation).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use serde_json::{Value, json};

use crate::support::{Sextant, agent, binary, cli, create_token, free_port, logs_request};

// --- certificates ---------------------------------------------------------------------------

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf certificate and key (PEM) signed by `issuer`: for the server (SAN 127.0.0.1) or a
/// client.
fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, name: &str, client: bool) -> (String, String) {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// An agent that trusts `ca_pem` only, showing `client` (certificate, key) if given.
fn tls_agent(ca_pem: &str, client: Option<&(String, String)>) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let root = Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let client = client.map(|(cert, key)| {
        ClientCert::new_with_certs(
            &[Certificate::from_pem(cert.as_bytes()).unwrap()],
            PrivateKey::from_pem(key.as_bytes()).unwrap(),
        )
    });
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(vec![root])))
        .client_cert(client)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// (status, body) of a request, `Err` when no HTTP answer came (a refused handshake).
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, String), ureq::Error> {
    let auth = format!("Bearer {token}");
    let mut response = match method {
        "GET" => agent.get(url).header("Authorization", &auth).call()?,
        "DELETE" => agent.delete(url).header("Authorization", &auth).call()?,
        "PUT" => agent
            .put(url)
            .header("Authorization", &auth)
            .header("Content-Type", content_type)
            .send(body)?,
        _ => agent
            .post(url)
            .header("Authorization", &auth)
            .header("Content-Type", content_type)
            .send(body)?,
    };
    let status = response.status().as_u16();
    Ok((status, response.body_mut().read_to_string().unwrap()))
}

fn sql_with(agent: &ureq::Agent, server: &Sextant, token: &str, query: &str) -> (u16, Value) {
    let body = json!({ "sql": query }).to_string();
    let (status, text) = send(
        agent,
        "POST",
        &server.url("/api/v1/sql"),
        token,
        "application/json",
        body.as_bytes(),
    )
    .unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn rows(answer: &Value) -> usize {
    answer["rows"].as_array().map_or(0, Vec::len)
}

/// Waits until `query` returns at least one row.
fn wait_rows(agent: &ureq::Agent, server: &Sextant, token: &str, query: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer) = sql_with(agent, server, token, query);
        if status == 200 && rows(&answer) > 0 {
            return answer;
        }
        assert!(Instant::now() < deadline, "no rows for {query}: {answer}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends one octet-counted syslog message over TLS, with `client` certificate if given;
/// `Err` when the server refuses the handshake.
fn syslog_over_tls(
    port: u16,
    ca_pem: &str,
    client: Option<&(String, String)>,
    line: &str,
) -> std::io::Result<()> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = std::net::TcpStream::connect(("127.0.0.1", port))?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut stream = rustls::StreamOwned::new(connection, socket);
    let frame = format!("{} {line}", line.len());
    stream.write_all(frame.as_bytes())?;
    stream.flush()?;
    stream.conn.send_close_notify();
    stream.flush()?;
    // Read to the end: a refused client certificate shows up here with TLS 1.3.
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
        Err(err) => Err(err),
    }
}

/// A server CA and certificate, a client CA and one client's certificate, written under
/// `dir/pki`; `tls` is the `[tls]` section that uses them with `client_auth = "ingest"`.
struct Pki {
    dir: PathBuf,
    server_ca: CertifiedIssuer<'static, KeyPair>,
    cert_file: PathBuf,
    key_file: PathBuf,
    /// The client's certificate and key (PEM).
    client: (String, String),
    tls: String,
}

fn pki(dir: &Path) -> Pki {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let server_ca = ca("Sextant test server CA");
    let client_ca = ca("Sextant test client CA");
    let (cert, key) = leaf(&server_ca, "sextant", false);
    let cert_file = write(&pki, "server.pem", &cert);
    let key_file = write(&pki, "server.key", &key);
    let client_ca_file = write(&pki, "clients.pem", &client_ca.pem());
    let client = leaf(&client_ca, "collector-1", true);
    let tls = format!(
        "[tls]\ncert_file = {cert_file:?}\nkey_file = {key_file:?}\n\
         client_ca_file = {client_ca_file:?}\nclient_auth = \"ingest\"\n"
    );
    Pki {
        dir: pki,
        server_ca,
        cert_file,
        key_file,
        client,
        tls,
    }
}

// --- TLS --------------------------------------------------------------------------------------

#[test]
fn tls_serves_checks_client_certificates_and_reloads_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Pki {
        server_ca,
        cert_file,
        key_file,
        client,
        tls,
        ..
    } = pki(dir.path());
    let rogue_ca = ca("Someone else's CA");
    let rogue = leaf(&rogue_ca, "collector-1", true);
    let syslog_port = free_port();
    let config = format!(
        "{tls}reload_seconds = 1\n\
         [[syslog]]\ntenant = \"acme\"\ntcp = \"127.0.0.1:{syslog_port}\"\ntls = true\n"
    );
    let data = dir.path().join("data");
    let token = create_token(&data, "acme", "admin");
    let trusting = tls_agent(&server_ca.pem(), None);
    let server = Sextant::start_custom(&data, Some(&config), &[], Some(trusting.clone()));
    assert!(server.url("/").starts_with("https://"));
    // A client that connects and never starts the handshake is dropped after 10 s, and does
    // not hold up anyone else meanwhile (checked at the end).
    let addr = server.addr;
    let stalled = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let opened = Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let read = stream.read(&mut [0u8; 1]);
        (read.map_err(|err| err.kind()), opened.elapsed())
    });

    // Plain HTTP to the TLS port gets no HTTP answer; a client that does not trust the CA
    // does not get through either.
    let plain = format!("http://{}/readyz", server.addr);
    assert!(agent().get(&plain).call().is_err());
    assert!(
        tls_agent(&rogue_ca.pem(), None)
            .get(server.url("/readyz"))
            .call()
            .is_err()
    );

    // Queries need no client certificate; ingest does.
    let (status, _) = sql_with(&trusting, &server, &token, "SELECT 1 AS one");
    assert_eq!(status, 200);
    let body = logs_request("api", &["over tls".to_owned()]).encode_to_vec();
    let ingest = |agent: &ureq::Agent| {
        send(
            agent,
            "POST",
            &server.url("/v1/logs"),
            &token,
            "application/x-protobuf",
            &body,
        )
    };
    let (status, text) = ingest(&trusting).unwrap();
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("client certificate"), "{text}");
    let with_client = tls_agent(&server_ca.pem(), Some(&client));
    assert_eq!(ingest(&with_client).unwrap().0, 200);
    // A certificate from another CA is refused at the handshake.
    assert!(ingest(&tls_agent(&server_ca.pem(), Some(&rogue))).is_err());
    wait_rows(
        &trusting,
        &server,
        &token,
        "SELECT body FROM logs WHERE body = 'over tls'",
    );

    // Syslog over TLS: a sender with a client certificate is taken, one without is not.
    let ca_pem = server_ca.pem();
    syslog_over_tls(
        syslog_port,
        &ca_pem,
        Some(&client),
        "<13>1 2026-12-01T10:00:00Z web01 shop 1 - - syslog over tls",
    )
    .unwrap();
    let _ = syslog_over_tls(
        syslog_port,
        &ca_pem,
        None,
        "<13>1 2026-12-01T10:00:00Z web01 shop 1 - - syslog without a certificate",
    );
    let _ = syslog_over_tls(
        syslog_port,
        &ca_pem,
        Some(&rogue),
        "<13>1 2026-12-01T10:00:00Z web01 shop 1 - - syslog with a rogue certificate",
    );
    wait_rows(
        &trusting,
        &server,
        &token,
        "SELECT body FROM logs WHERE body = 'syslog over tls'",
    );
    std::thread::sleep(Duration::from_millis(500));
    let (_, refused) = sql_with(
        &trusting,
        &server,
        &token,
        "SELECT body FROM logs WHERE body LIKE 'syslog with%'",
    );
    assert_eq!(rows(&refused), 0, "{refused}");

    // A new certificate from another CA: after the files change, new connections get it.
    let renewed_ca = ca("Sextant test renewed CA");
    let (cert, key) = leaf(&renewed_ca, "sextant", false);
    let renewed = tls_agent(&renewed_ca.pem(), None);
    assert!(renewed.get(server.url("/readyz")).call().is_err());
    std::fs::write(&key_file, key).unwrap();
    std::fs::write(&cert_file, cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while renewed.get(server.url("/readyz")).call().is_err() {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not taken"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        tls_agent(&server_ca.pem(), None)
            .get(server.url("/readyz"))
            .call()
            .is_err(),
        "the old certificate is still served"
    );
    let (read, held) = stalled.join().unwrap();
    assert!(
        matches!(read, Ok(0) | Err(std::io::ErrorKind::ConnectionReset)),
        "a stalled handshake was not dropped: {read:?} after {held:?}"
    );
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(15)).contains(&held),
        "dropped after {held:?}"
    );
    server.stop();
}

#[test]
fn the_python_sdk_exports_over_tls_with_a_client_certificate() {
    let Some(python) = crate::otlp_sdk::python_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let server_ca = &pki.server_ca;
    let ca_file = write(&pki.dir, "ca.pem", &server_ca.pem());
    let client_cert = write(&pki.dir, "client.pem", &pki.client.0);
    let client_key = write(&pki.dir, "client.key", &pki.client.1);
    let config = pki.tls.clone();
    let data = dir.path().join("data");
    let ingest = create_token(&data, "acme", "ingest");
    let admin = create_token(&data, "acme", "admin");
    let trusting = tls_agent(&server_ca.pem(), None);
    let server = Sextant::start_custom(&data, Some(&config), &[], Some(trusting.clone()));
    let endpoint = server.url("");
    let tls_env = [
        ("SEXTANT_CA_FILE", ca_file.as_path()),
        ("SEXTANT_CLIENT_CERT", client_cert.as_path()),
        ("SEXTANT_CLIENT_KEY", client_key.as_path()),
    ];
    for protocol in ["http", "grpc"] {
        let run_id = format!("tls-{protocol}-{}", std::process::id());
        let run = crate::otlp_sdk::run_script_with(
            &python, &endpoint, &ingest, protocol, &run_id, &tls_env,
        );
        assert!(run.status.success(), "{protocol}: {}", run.stderr);
        for query in [
            format!("SELECT body FROM logs WHERE body LIKE 'sdk log {run_id}%'"),
            format!("SELECT name FROM spans WHERE name = 'sdk parent {run_id}'"),
            format!("SELECT name FROM metrics WHERE attributes['run_id'] = '{run_id}'"),
        ] {
            wait_rows(&trusting, &server, &admin, &query);
        }
    }
    // Without its client certificate the SDK's exports are refused.
    let run = crate::otlp_sdk::run_script_with(
        &python,
        &endpoint,
        &ingest,
        "grpc",
        "no-certificate",
        &tls_env[..1],
    );
    assert!(!run.status.success());
    assert!(run.stderr.contains("UNAUTHENTICATED"), "{}", run.stderr);
    server.stop();
}

#[test]
fn listening_in_the_clear_off_loopback_needs_insecure_listen() {
    let dir = tempfile::tempdir().unwrap();
    let refused = Command::new(binary())
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("without TLS") && stderr.contains("--insecure-listen"),
        "{stderr}"
    );

    let mut child = Command::new(binary())
        .args([
            "serve",
            "--insecure-listen",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(line.starts_with("sextant listening on 0.0.0.0:"), "{line}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in the clear"), "no warning: {stderr}");
}

// --- tokens -----------------------------------------------------------------------------------

/// `sextant tokens ARGS --data-dir DATA`; its stdout.
fn token_cli(data: &Path, args: &[&str]) -> String {
    let mut all: Vec<OsString> = vec!["tokens".into()];
    all.extend(args.iter().map(OsString::from));
    all.extend(["--data-dir".into(), data.into()]);
    cli(&all)
}

fn id_of(token: &str) -> &str {
    token
        .strip_prefix("sxt_")
        .and_then(|rest| rest.split('_').next())
        .unwrap()
}

#[test]
fn scopes_narrow_tokens_use_is_recorded_admin_actions_are_audited_and_guessing_is_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = create_token(&data, "acme", "admin");
    let logs_only = token_cli(
        &data,
        &[
            "create",
            "--tenant",
            "acme",
            "--role",
            "ingest",
            "--scope",
            "ingest:logs",
        ],
    )
    .trim()
    .to_owned();
    let read_only = token_cli(
        &data,
        &[
            "create", "--tenant", "acme", "--role", "admin", "--scope", "read",
        ],
    )
    .trim()
    .to_owned();
    let doomed = create_token(&data, "acme", "viewer");
    token_cli(&data, &["revoke", id_of(&doomed)]);
    let unknown = Command::new(binary())
        .args(["tokens", "create", "--tenant", "acme", "--role", "admin"])
        .args(["--scope", "read,ingest:profiles", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("ingest:profiles"), "{stderr}");
    let config = "[auth]\nmax_failed_per_minute = 5\n";
    let server = Sextant::start_with_config(&data, Some(config));
    let http = agent();
    let post = |token: &str, path: &str, content_type: &str, body: &[u8]| {
        send(&http, "POST", &server.url(path), token, content_type, body).unwrap()
    };

    let logs = logs_request("api", &["scoped".to_owned()]).encode_to_vec();
    let metrics = br#"{"resourceMetrics":[]}"#;
    assert_eq!(
        post(&logs_only, "/v1/logs", "application/x-protobuf", &logs).0,
        200
    );
    let (status, text) = post(&logs_only, "/v1/metrics", "application/json", metrics);
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("narrowed to scopes `ingest:logs`") && text.contains("ingest metrics"),
        "{text}"
    );
    let (status, text) = post(&read_only, "/v1/logs", "application/x-protobuf", &logs);
    assert_eq!(status, 403, "{text}");
    let (status, _) = sql_with(&http, &server, &read_only, "SELECT 1 AS one");
    assert_eq!(status, 200);
    let erase = |token: &str| {
        send(
            &http,
            "DELETE",
            &server.url("/api/v1/tenant/data"),
            token,
            "",
            b"",
        )
        .unwrap()
    };
    let (status, text) = erase(&read_only);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("may not administer"), "{text}");

    // The admin erases the tenant's data: recorded, with the tokens' creation and
    // revocation (the erasure empties the trail, so those are checked before it).
    let audit = |kind: &str| {
        let (status, text) = send(
            &http,
            "GET",
            &server.url(&format!("/api/v1/audit?kind={kind}")),
            &admin,
            "",
            b"",
        )
        .unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()["records"]
            .as_array()
            .unwrap()
            .clone()
    };
    let created = audit("token.create");
    assert_eq!(created.len(), 4, "{created:?}");
    assert!(created.iter().any(|r| r["subject"] == id_of(&logs_only)
        && r["detail"]["scopes"] == "ingest:logs"
        && r["actor"].as_str().unwrap().starts_with("cli")));
    let revoked = audit("token.revoke");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["subject"], id_of(&doomed));
    assert_eq!(audit("retention.set")[0]["detail"]["days"], 30);
    let (status, text) = erase(&admin);
    assert_eq!(status, 200, "{text}");
    let erased = audit("tenant.erase");
    assert_eq!(erased.len(), 1, "{erased:?}");
    assert_eq!(erased[0]["actor"], id_of(&admin));

    // Last use is recorded (to the minute) and listed; unused tokens show none.
    let listing = token_cli(&data, &["list"]);
    let line_of = |token: &str| {
        listing
            .lines()
            .find(|line| line.starts_with(id_of(token)))
            .unwrap()
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // ID TENANT ROLE SCOPES CREATED EXPIRES LAST-USED REVOKED
    assert_eq!(line_of(&logs_only)[3], "ingest:logs");
    assert_ne!(line_of(&logs_only)[6], "-");
    assert_eq!(line_of(&doomed)[6], "-");
    assert_ne!(line_of(&doomed)[7], "-");

    // Guessing: five refusals from this address (one of them on `/metrics`), then further
    // guesses are refused outright, while a good token from the same address still passes
    // (a guesser behind a team's proxy locks out only itself).
    let (status, text) = send(&http, "GET", &server.url("/metrics"), "sxt_guess", "", b"").unwrap();
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("unknown token"), "{text}");
    for guess in 1..5 {
        let (status, _) = sql_with(&http, &server, &format!("sxt_guess{guess}"), "SELECT 1");
        assert_eq!(status, 401);
    }
    let mut response = http
        .post(server.url("/api/v1/sql"))
        .header("Authorization", "Bearer sxt_guess6")
        .send(json!({"sql": "SELECT 1"}).to_string().as_bytes())
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let text = response.body_mut().read_to_string().unwrap();
    assert!(text.contains("too many failed authentications"), "{text}");
    let (status, answer) = sql_with(&http, &server, &admin, "SELECT 1");
    assert_eq!(status, 200, "a valid token was refused: {answer}");
    assert_eq!(
        http.get(server.url("/healthz")).call().unwrap().status(),
        200
    );
    server.stop();
}

// --- encryption at rest -------------------------------------------------------------------------

const MARKER: &str = "zq7marker4vv";

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

/// Runs `serve` expecting it to refuse to start; its stderr.
fn refused_start(data: &Path, config: &Path, env: &[(&str, &str)]) -> String {
    let mut child = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return stderr;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sextant started although it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn generate_key(path: &Path) {
    std::fs::write(path, cli(&["keys", "generate"])).unwrap();
}

#[test]
fn encryption_at_rest_leaves_no_plaintext_and_refuses_wrong_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (key1, key2, stranger) = (keys.join("k1"), keys.join("k2"), keys.join("k3"));
    for key in [&key1, &key2, &stranger] {
        generate_key(key);
    }
    let data = dir.path().join("data");
    let token = create_token(&data, "acme", "admin");
    let config_with = |key: &Path| {
        format!("[encryption]\nmaster_key_file = {key:?}\n[storage]\nflush_interval_seconds = 1\n")
    };
    let server = Sextant::start_with_config(&data, Some(&config_with(&key1)));
    let http = agent();
    let post = |path: &str, content_type: &str, body: &[u8]| {
        let (status, text) =
            send(&http, "POST", &server.url(path), &token, content_type, body).unwrap();
        assert_eq!(status, 200, "{path}: {text}");
    };
    let now = now_ns();
    let logs = logs_request("pay", &[format!("card declined {MARKER} retry")]).encode_to_vec();
    post("/v1/logs", "application/x-protobuf", &logs);
    let resource =
        json!({"attributes": [{"key": "service.name", "value": {"stringValue": "pay"}}]});
    let metrics = json!({"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": [{
        "name": "queue.depth",
        "gauge": {"dataPoints": [{"asDouble": 3.0, "timeUnixNano": now.to_string(),
            "attributes": [{"key": "card", "value": {"stringValue": MARKER}}]}]}
    }]}]}]});
    post(
        "/v1/metrics",
        "application/json",
        metrics.to_string().as_bytes(),
    );
    let traces = json!({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [{
        "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
        "name": format!("charge {MARKER}"), "kind": 2,
        "startTimeUnixNano": (now - 5_000_000).to_string(), "endTimeUnixNano": now.to_string()
    }]}]}]});
    post(
        "/v1/traces",
        "application/json",
        traces.to_string().as_bytes(),
    );
    let (status, text) = send(
        &http,
        "PUT",
        &server.url("/api/v1/secrets/card"),
        &token,
        "application/json",
        json!({ "value": MARKER }).to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");

    let queries = [
        format!("SELECT body FROM logs WHERE body LIKE '%{MARKER}%'"),
        format!("SELECT name FROM spans WHERE name LIKE '%{MARKER}%'"),
        format!("SELECT value FROM metrics WHERE attributes['card'] = '{MARKER}'"),
    ];
    for query in &queries {
        wait_rows(&http, &server, &token, query);
    }
    // Let a flush write segments, then stop cleanly (states saved, everything flushed).
    std::thread::sleep(Duration::from_secs(3));
    server.stop();
    let holding = files_holding(&data, MARKER.as_bytes());
    assert!(holding.is_empty(), "plaintext of the marker in {holding:?}");
    assert!(
        files_holding(&data.join("segments"), b"PAR1").is_empty(),
        "a segment file is readable as Parquet"
    );

    // The same key reads it all back (segments and the log); another key, or none, is refused.
    let server = Sextant::start_with_config(&data, Some(&config_with(&key1)));
    for query in &queries {
        wait_rows(&http, &server, &token, query);
    }
    server.stop();
    let wrong = write(dir.path(), "wrong.toml", &config_with(&stranger));
    let stderr = refused_start(&data, &wrong, &[]);
    assert!(
        stderr.contains("does not open this data directory"),
        "{stderr}"
    );
    let none = write(dir.path(), "none.toml", "");
    let stderr = refused_start(&data, &none, &[]);
    assert!(
        stderr.contains("is encrypted") && stderr.contains("SEXTANT_MASTER_KEY"),
        "{stderr}"
    );
    assert!(
        stderr.contains("give its master key with `encryption.master_key_file` or"),
        "{stderr}"
    );

    // Rotation re-wraps the data keys: the new key opens everything, the old one nothing.
    let (old_key, new_key) = (key1.as_os_str(), key2.as_os_str());
    cli(&[
        OsStr::new("keys"),
        OsStr::new("rotate"),
        OsStr::new("--data-dir"),
        data.as_os_str(),
        OsStr::new("--old-key-file"),
        old_key,
        OsStr::new("--new-key-file"),
        new_key,
    ]);
    let old = write(dir.path(), "old.toml", &config_with(&key1));
    let stderr = refused_start(&data, &old, &[]);
    assert!(stderr.contains("does not open"), "{stderr}");
    // The key may come from the environment instead of a file.
    let key2_hex = std::fs::read_to_string(&key2).unwrap();
    let server = Sextant::start_custom(
        &data,
        Some("[storage]\nflush_interval_seconds = 1\n"),
        &[("SEXTANT_MASTER_KEY", key2_hex.trim())],
        None,
    );
    for query in &queries {
        wait_rows(&http, &server, &token, query);
    }
    let (status, text) = send(
        &http,
        "GET",
        &server.url("/api/v1/audit?kind=key.rotate"),
        &token,
        "",
        b"",
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("key.rotate"), "{text}");
    server.stop();

    // Turning encryption on over telemetry stored in the clear is refused.
    let plain = dir.path().join("plain");
    let plain_token = create_token(&plain, "acme", "admin");
    let server = Sextant::start(&plain);
    send(
        &http,
        "POST",
        &server.url("/v1/logs"),
        &plain_token,
        "application/x-protobuf",
        &logs,
    )
    .unwrap();
    server.stop();
    // (Without encryption the marker is there to find: the search above can fail.)
    assert!(!files_holding(&plain, MARKER.as_bytes()).is_empty());
    let turn_on = write(dir.path(), "on.toml", &config_with(&key1));
    let stderr = refused_start(&plain, &turn_on, &[]);
    assert!(stderr.contains("without encryption"), "{stderr}");
    assert!(
        stderr.contains("without encryption; encryption at rest starts with a new data directory"),
        "{stderr}"
    );
}
