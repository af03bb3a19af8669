//! Syslog listeners (UDP and TCP, RFC 5424 and RFC 3164), each with the tenant its
//! configuration names, since syslog carries no token. Messages are parsed by
//! [`sextant_ingest::syslog`], batched (up to [`BATCH_MESSAGES`] or [`BATCH_WAIT`]) and sent
//! through the same pipeline as OTLP logs (tenant limits, write-ahead log, template mining,
//! detectors).
//!
//! Mapping: the app name is the resource's `service.name`, the hostname its `host.name`; the
//! syslog severity gives the OTLP severity (and `severity_text` its syslog name); attributes
//! `syslog.facility`, `syslog.procid`, `syslog.msgid`, `syslog.format` (`rfc5424`, `rfc3164` or
//! `raw`), `net.peer.ip`, and each structured-data parameter as `SDID.PARAM`. A message with no
//! time takes its arrival time. A line that does not parse is kept whole as the body with
//! `syslog.format = raw` and counted (`sextant_syslog_messages_total{format="raw"}`), never
//! dropped.
//!
//! Limits: a message is at most `max_message_bytes` (default 64 KiB; a longer TCP frame is cut
//! there, a longer datagram truncated by the socket); at most [`MAX_CONNECTIONS`] TCP connections
//! per listener. Plain syslog has no acknowledgement: when the tenant is over its rate limit or
//! ingest is overloaded, a batch is retried for up to [`RETRY_FOR`], then dropped and counted
//! (`sextant_syslog_dropped_total`); a full queue drops UDP datagrams (counted) and slows TCP
//! senders down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::{Deserialize, Serialize};
use sextant_ingest::convert::{string_attribute as text, string_value};
use sextant_ingest::otlp::OtlpRequest;
use sextant_ingest::syslog::{self, FrameDecoder, SyslogMessage};
use sextant_model::TenantId;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::AppState;
use crate::read_params::now_ns;
use crate::tls::{Tls, check_plaintext, client_certificate};

/// Most messages in one batch.
pub const BATCH_MESSAGES: usize = 1_000;
/// Longest a message waits for its batch.
pub const BATCH_WAIT: Duration = Duration::from_millis(200);
/// Most open TCP connections per listener.
pub const MAX_CONNECTIONS: usize = 1_000;
/// How long a refused batch is retried before it is dropped.
pub const RETRY_FOR: Duration = Duration::from_secs(30);
/// Messages queued per listener before UDP drops and TCP waits.
const QUEUE: usize = 10_000;

/// One `[[syslog]]` listener of the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogListener {
    /// The tenant every message of this listener belongs to.
    pub tenant: String,
    /// `IP:PORT` for UDP, if any.
    #[serde(default)]
    pub udp: Option<String>,
    /// `IP:PORT` for TCP (octet-counting or newline framing), if any.
    #[serde(default)]
    pub tcp: Option<String>,
    /// Longest message taken, in bytes. Default 65,536.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// TCP with TLS (RFC 5425) using the `[tls]` certificate; with `tls.client_auth` set, a
    /// sender must show a client certificate. Default false.
    #[serde(default)]
    pub tls: bool,
}

fn default_max_message_bytes() -> usize {
    64 * 1024
}

impl SyslogListener {
    /// The tenant and addresses, or what is wrong with them.
    pub fn validate(&self) -> Result<(TenantId, Option<SocketAddr>, Option<SocketAddr>), String> {
        let tenant = TenantId::new(&self.tenant)
            .map_err(|e| format!("syslog tenant `{}`: {e}", self.tenant))?;
        let parse = |what: &str, addr: &Option<String>| -> Result<Option<SocketAddr>, String> {
            addr.as_deref()
                .map(|a| {
                    a.parse()
                        .map_err(|_| format!("syslog {what} address `{a}` is not IP:PORT"))
                })
                .transpose()
        };
        let (udp, tcp) = (parse("udp", &self.udp)?, parse("tcp", &self.tcp)?);
        if udp.is_none() && tcp.is_none() {
            return Err(format!(
                "the syslog listener of tenant `{}` has neither `udp` nor `tcp`",
                self.tenant
            ));
        }
        if !(480..=16 << 20).contains(&self.max_message_bytes) {
            return Err("syslog `max_message_bytes` must be between 480 and 16 MiB".into());
        }
        Ok((tenant, udp, tcp))
    }
}

/// A message as received: the text and who sent it.
struct Received {
    bytes: Vec<u8>,
    peer: SocketAddr,
    at_ns: i64,
}

/// Binds every listener (so a taken port fails the start) and spawns their tasks. Returns the
/// bound addresses as (`udp` or `tcp`, address, tenant).
pub async fn start(
    state: AppState,
    listeners: &[SyslogListener],
    tls: Option<Arc<Tls>>,
    insecure_listen: bool,
) -> Result<Vec<(&'static str, SocketAddr, TenantId)>, String> {
    let mut bound = Vec::new();
    for listener in listeners {
        let (tenant, udp, tcp) = listener.validate()?;
        let tls = match (listener.tls, &tls) {
            (true, Some(tls)) => Some(tls.clone()),
            (true, None) => {
                return Err(format!(
                    "syslog listener of tenant `{tenant}` asks for TLS but there is no `[tls]` section"
                ));
            }
            (false, _) => None,
        };
        if listener.tls && tcp.is_none() {
            return Err(format!(
                "syslog listener of tenant `{tenant}`: `tls` needs a `tcp` address"
            ));
        }
        for addr in udp.iter().chain(tcp.iter().filter(|_| tls.is_none())) {
            check_plaintext("a syslog listener", *addr, insecure_listen)
                .map_err(|e| e.to_string())?;
        }
        let (tx, rx) = mpsc::channel::<Received>(QUEUE);
        if let Some(addr) = udp {
            let socket = tokio::net::UdpSocket::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for syslog on udp {addr}: {e}"))?;
            bound.push(("udp", socket.local_addr().unwrap_or(addr), tenant.clone()));
            tokio::spawn(receive_udp(
                socket,
                tx.clone(),
                listener.max_message_bytes,
                tenant.clone(),
            ));
        }
        if let Some(addr) = tcp {
            let socket = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for syslog on tcp {addr}: {e}"))?;
            bound.push(("tcp", socket.local_addr().unwrap_or(addr), tenant.clone()));
            tokio::spawn(accept_tcp(
                socket,
                tx.clone(),
                listener.max_message_bytes,
                tls,
            ));
        }
        drop(tx);
        tokio::spawn(ingest(state.clone(), tenant, rx));
    }
    Ok(bound)
}

async fn receive_udp(
    socket: tokio::net::UdpSocket,
    tx: mpsc::Sender<Received>,
    max: usize,
    tenant: TenantId,
) {
    let mut buffer = vec![0u8; max];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        let received = Received {
            bytes: buffer[..n].to_vec(),
            peer,
            at_ns: now_ns(),
        };
        if tx.try_send(received).is_err() {
            metrics::counter!("sextant_syslog_dropped_total", "tenant" => tenant.to_string(), "reason" => "queue_full")
                .increment(1);
        }
    }
}

async fn accept_tcp(
    listener: tokio::net::TcpListener,
    tx: mpsc::Sender<Received>,
    max: usize,
    tls: Option<Arc<Tls>>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "syslog connection refused: {MAX_CONNECTIONS} already open");
            continue;
        };
        let tx = tx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => read_tcp(stream, peer, tx, max).await,
                Some(tls) => {
                    let accept = tls.acceptor().accept(stream);
                    match tokio::time::timeout(Duration::from_secs(10), accept).await {
                        Ok(Ok(stream)) => {
                            let shown = client_certificate(stream.get_ref().1).is_some();
                            if tls.ingest_needs_client_certificate() && !shown {
                                tracing::warn!(%peer, "syslog TLS connection without a client certificate refused");
                            } else {
                                read_tcp(stream, peer, tx, max).await;
                            }
                        }
                        Ok(Err(err)) => {
                            tracing::warn!(%peer, error = %err, "syslog TLS handshake failed")
                        }
                        Err(_) => tracing::warn!(%peer, "syslog TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
}

async fn read_tcp<S: tokio::io::AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    tx: mpsc::Sender<Received>,
    max: usize,
) {
    let mut decoder = FrameDecoder::new(max);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut frames = Vec::new();
    loop {
        let n = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 {
            decoder.finish(&mut frames);
        } else {
            decoder.push(&buffer[..n], &mut frames);
        }
        let at_ns = now_ns();
        for bytes in frames.drain(..) {
            if tx.send(Received { bytes, peer, at_ns }).await.is_err() {
                return;
            }
        }
        if n == 0 {
            return;
        }
    }
}

/// Takes a listener's messages in batches into the pipeline.
async fn ingest(state: AppState, tenant: TenantId, mut rx: mpsc::Receiver<Received>) {
    let mut batch = Vec::with_capacity(BATCH_MESSAGES);
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH_MESSAGES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(message)) => batch.push(message),
                Ok(None) | Err(_) => break,
            }
        }
        let request = to_request(&tenant, batch.drain(..));
        send(&state, &tenant, request).await;
    }
}

async fn send(state: &AppState, tenant: &TenantId, request: ExportLogsServiceRequest) {
    let records: usize = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    let started = Instant::now();
    loop {
        let pipeline = match state.pipeline() {
            Ok(p) => p.clone(),
            Err(_) => {
                // Still replaying the write-ahead log.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let size = request.encoded_len();
        let error = match pipeline
            .ingest_request(tenant, OtlpRequest::Logs(request.clone()), size)
            .await
        {
            Ok(_) => return,
            Err(e) => e,
        };
        match error.retry_after() {
            Some(wait) if started.elapsed() < RETRY_FOR => tokio::time::sleep(wait).await,
            _ => {
                tracing::warn!(%tenant, records, %error, "syslog batch dropped");
                metrics::counter!("sextant_syslog_dropped_total", "tenant" => tenant.to_string(), "reason" => error.code().as_str())
                    .increment(records as u64);
                return;
            }
        }
    }
}

/// One batch as an OTLP logs request, a resource per (app, host).
fn to_request(
    tenant: &TenantId,
    messages: impl Iterator<Item = Received>,
) -> ExportLogsServiceRequest {
    let mut resources: Vec<ResourceLogs> = Vec::new();
    let mut index: std::collections::HashMap<(String, String), usize> = Default::default();
    for received in messages {
        let message = syslog::parse(&received.bytes, received.at_ns);
        let format = match message.format {
            syslog::Format::Rfc5424 => "rfc5424",
            syslog::Format::Rfc3164 => "rfc3164",
            syslog::Format::Raw => "raw",
        };
        metrics::counter!("sextant_syslog_messages_total", "tenant" => tenant.to_string(), "format" => format)
            .increment(1);
        let app = message.app_name.clone().unwrap_or_default();
        let host = message.hostname.clone().unwrap_or_default();
        let i = *index.entry((app.clone(), host.clone())).or_insert_with(|| {
            let mut attributes = Vec::new();
            if !app.is_empty() {
                attributes.push(text("service.name", &app));
            }
            if !host.is_empty() {
                attributes.push(text("host.name", &host));
            }
            resources.push(ResourceLogs {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs::default()],
                ..Default::default()
            });
            resources.len() - 1
        });
        resources[i].scope_logs[0]
            .log_records
            .push(record(message, format, &received));
    }
    ExportLogsServiceRequest {
        resource_logs: resources,
    }
}

fn record(message: SyslogMessage, format: &str, received: &Received) -> LogRecord {
    let mut attributes = vec![
        text("syslog.format", format),
        text("net.peer.ip", &received.peer.ip().to_string()),
    ];
    if let Some(facility) = message.facility {
        attributes.push(text("syslog.facility", syslog::facility_name(facility)));
    }
    for (key, value) in [
        ("syslog.procid", &message.proc_id),
        ("syslog.msgid", &message.msg_id),
    ] {
        if let Some(value) = value {
            attributes.push(text(key, value));
        }
    }
    for (key, value) in &message.structured_data {
        attributes.push(text(key, value));
    }
    let (severity_number, severity_text) = match message.severity {
        Some(s) => (
            syslog::otlp_severity(s),
            syslog::severity_name(s).to_owned(),
        ),
        None => (0, String::new()),
    };
    let time = message
        .time_unix_nano
        .filter(|t| *t >= 0)
        .unwrap_or(received.at_ns);
    LogRecord {
        time_unix_nano: time as u64,
        observed_time_unix_nano: received.at_ns as u64,
        severity_number,
        severity_text,
        body: string_value(&message.message),
        attributes,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(tenant: &str, udp: Option<&str>, tcp: Option<&str>, max: usize) -> SyslogListener {
        SyslogListener {
            tenant: tenant.into(),
            udp: udp.map(Into::into),
            tcp: tcp.map(Into::into),
            max_message_bytes: max,
            tls: false,
        }
    }

    #[test]
    fn a_listener_that_cannot_work_is_refused_with_the_reason() {
        let ok = listener("ops", Some("127.0.0.1:5514"), None, 65_536)
            .validate()
            .unwrap();
        assert_eq!(ok.0.as_str(), "ops");
        for (bad, why) in [
            (
                listener("Ops!", Some("127.0.0.1:1"), None, 65_536),
                "syslog tenant `Ops!`",
            ),
            (
                listener("ops", Some("localhost"), None, 65_536),
                "`localhost` is not IP:PORT",
            ),
            (
                listener("ops", None, Some("1.2.3.4"), 65_536),
                "tcp address `1.2.3.4`",
            ),
            (
                listener("ops", None, None, 65_536),
                "neither `udp` nor `tcp`",
            ),
            (
                listener("ops", Some("127.0.0.1:1"), None, 100),
                "max_message_bytes",
            ),
        ] {
            let error = bad.validate().unwrap_err();
            assert!(error.contains(why), "{error}");
        }
    }

    #[test]
    fn a_batch_groups_by_app_and_host_and_keeps_unparsed_lines_whole() {
        let peer: SocketAddr = "10.0.0.7:514".parse().unwrap();
        let tenant = TenantId::new("ops").unwrap();
        let received = |bytes: &[u8]| Received {
            bytes: bytes.to_vec(),
            peer,
            at_ns: 1_700_000_000_000_000_000,
        };
        let request = to_request(
            &tenant,
            [
                received(b"<13>Dec  1 09:05:01 web1 cron[12]: job done"),
                received(b"<13>Dec  1 09:05:02 web1 cron[12]: job done again"),
                received(b"no header at all"),
            ]
            .into_iter(),
        );
        assert_eq!(
            request.resource_logs.len(),
            2,
            "cron on web1, and the raw line"
        );
        let raw = &request.resource_logs[1].scope_logs[0].log_records[0];
        assert_eq!(raw.body, string_value("no header at all"));
        assert_eq!(raw.time_unix_nano, 1_700_000_000_000_000_000);
        assert!(raw.attributes.contains(&text("syslog.format", "raw")));
        assert!(raw.attributes.contains(&text("net.peer.ip", "10.0.0.7")));
    }
}
