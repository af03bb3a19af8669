//! The HTTP/gRPC listener: accepts connections (TLS when configured), serves HTTP/1.1 and
//! HTTP/2 on each, tags every request with its peer address and verified client certificate,
//! and on shutdown stops accepting and lets open requests finish.
//!
//! Connections are bounded by [`ConnectionLimits`]: a request's headers must arrive within the
//! header timeout (an idle keep-alive connection waiting for its next request too), a connection
//! on which no byte moves either way for the idle timeout is closed, one address holds at most
//! so many connections, and all together stay below the process's file limit; connections past
//! a cap are closed as soon as they are accepted.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::ApiError;
use crate::tls::{ClientCertificate, Tls, client_certificate};

/// A TLS handshake must finish within this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// File descriptors kept for everything but HTTP connections (segments, the log, syslog).
const RESERVED_FILES: u64 = 256;

/// What connections may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request's headers (and an idle keep-alive connection's next request) must arrive
    /// within this long. Default 20 s.
    pub header_timeout: Duration,
    /// A connection on which no byte moves either way this long is closed. Default 75 s.
    pub idle_timeout: Duration,
    /// Open connections from one address. Default 256.
    pub max_per_address: usize,
    /// Open connections in all. Default 8,192, and never more than the process's file limit
    /// less [`RESERVED_FILES`].
    pub max_total: usize,
    /// A request body must arrive at this many bytes per second on average, after the first
    /// [`ConnectionLimits::body_grace`]; a slower one is cut. Default 16 KiB/s.
    pub min_body_bytes_per_second: u64,
    /// Default 10 s.
    pub body_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(75),
            max_per_address: 256,
            max_total: 8192,
            min_body_bytes_per_second: 16 * 1024,
            body_grace: Duration::from_secs(10),
        }
    }
}

impl ConnectionLimits {
    /// `max_total`, lowered to what the process's open-file limit allows.
    fn total_cap(&self) -> usize {
        let files = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let room = files.saturating_sub(RESERVED_FILES).max(16);
        self.max_total
            .min(usize::try_from(room).unwrap_or(usize::MAX))
    }
}

/// Open connections, per address and in all.
#[derive(Debug, Default)]
struct OpenConnections {
    per_address: std::sync::Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
}

/// One counted connection; uncounted when dropped.
struct Counted {
    open: Arc<OpenConnections>,
    address: IpAddr,
}

impl OpenConnections {
    /// Counts a connection from `address`, or `None` past a cap.
    fn admit(
        self: &Arc<Self>,
        address: IpAddr,
        limits: &ConnectionLimits,
        total_cap: usize,
    ) -> Option<Counted> {
        let mut per_address = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let here = per_address.entry(address).or_insert(0);
        if *here >= limits.max_per_address || self.total.load(Ordering::Relaxed) >= total_cap {
            if *here == 0 {
                per_address.remove(&address);
            }
            return None;
        }
        *here += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Counted {
            open: self.clone(),
            address,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.total.fetch_sub(1, Ordering::Relaxed);
        let mut per_address = self
            .open
            .per_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(here) = per_address.get_mut(&self.address) {
            *here -= 1;
            if *here == 0 {
                per_address.remove(&self.address);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for open connections'
/// requests to finish (callers bound that wait with a timeout).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<Tls>>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let total_cap = limits.total_cap();
    let open = Arc::new(OpenConnections::default());
    let limits = Arc::new(limits);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(counted) = open.admit(peer.ip(), &limits, total_cap) else {
            metrics::counter!("sextant_connections_refused_total").increment(1);
            tracing::debug!(%peer, "connection refused: too many open");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let limits = limits.clone();
        // Each connection holds a watcher from its accept on, so shutdown waits for handshakes
        // in progress too (bounded by the handshake timeout).
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _counted = counted;
            let (stream, activity) = Watched::new(stream);
            let idle = idle(activity, limits.header_timeout, limits.idle_timeout);
            let limits = &limits;
            let serving = async move {
                match tls {
                    None => {
                        connection(
                            TokioIo::new(stream),
                            peer,
                            None,
                            false,
                            app,
                            watcher,
                            limits,
                        )
                        .await
                    }
                    Some(tls) => {
                        let accept = tls.acceptor().accept(stream);
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                            Ok(Ok(stream)) => {
                                let certificate = client_certificate(stream.get_ref().1);
                                let needed = tls.ingest_needs_client_certificate();
                                connection(
                                    TokioIo::new(stream),
                                    peer,
                                    certificate,
                                    needed,
                                    app,
                                    watcher,
                                    limits,
                                )
                                .await
                            }
                            Ok(Err(err)) => {
                                metrics::counter!("sextant_tls_handshake_failures_total")
                                    .increment(1);
                                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                () = serving => {}
                () = idle => tracing::debug!(%peer, "idle connection closed"),
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn connection<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    certificate: Option<ClientCertificate>,
    ingest_needs_certificate: bool,
    app: Router,
    watcher: Watcher,
    limits: &ConnectionLimits,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (grace, min_rate) = (limits.body_grace, limits.min_body_bytes_per_second.max(1));
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(|body| Body::new(Paced::new(body, grace, min_rate)));
        let app = app.clone();
        request.extensions_mut().insert(ConnectInfo(peer));
        let refused =
            ingest_needs_certificate && certificate.is_none() && is_ingest(request.uri().path());
        if let Some(certificate) = &certificate {
            request.extensions_mut().insert(certificate.clone());
        }
        async move {
            if refused {
                return Ok(refusal(&request));
            }
            app.oneshot(request).await
        }
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let serving = builder.serve_connection_with_upgrades(io, service);
    if let Err(err) = watcher.watch(serving.into_owned()).await {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

/// Resolves once no byte has moved on the connection for `timeout`, or none has come at all
/// within `first` (a client that connects and says nothing).
async fn idle(activity: Arc<AtomicU64>, first: Duration, timeout: Duration) {
    let started = Instant::now();
    loop {
        let last = activity.load(Ordering::Relaxed);
        let limit = if last == 0 { first } else { timeout };
        let quiet = started
            .elapsed()
            .saturating_sub(Duration::from_millis(last));
        if quiet >= limit {
            return;
        }
        tokio::time::sleep(limit - quiet).await;
    }
}

/// A stream that notes when a byte last moved either way (milliseconds since it was opened).
struct Watched<S> {
    inner: S,
    opened: Instant,
    activity: Arc<AtomicU64>,
}

impl<S> Watched<S> {
    fn new(inner: S) -> (Watched<S>, Arc<AtomicU64>) {
        let activity = Arc::new(AtomicU64::new(0));
        let watched = Watched {
            inner,
            opened: Instant::now(),
            activity: activity.clone(),
        };
        (watched, activity)
    }
}

fn note(opened: &Instant, activity: &AtomicU64) {
    let millis = u64::try_from(opened.elapsed().as_millis()).map_or(u64::MAX, |m| m.max(1));
    activity.store(millis, Ordering::Relaxed);
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            note(&self.opened, &self.activity);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            note(&self.opened, &self.activity);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that must keep arriving: by `grace` plus the time its bytes so far justify
/// at `min_rate` bytes per second, more must have come, or the body fails (and the request with
/// it) instead of holding a request slot while it trickles in.
struct Paced {
    inner: Incoming,
    started: tokio::time::Instant,
    received: u64,
    grace: Duration,
    min_rate: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Paced {
    fn new(inner: Incoming, grace: Duration, min_rate: u64) -> Paced {
        let started = tokio::time::Instant::now();
        Paced {
            inner,
            started,
            received: 0,
            grace,
            min_rate,
            deadline: Box::pin(tokio::time::sleep_until(started + grace)),
        }
    }
}

/// Why a paced body failed.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than {0} bytes per second")]
struct TooSlow(u64);

impl hyper::body::Body for Paced {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let earned =
                        Duration::from_secs_f64(this.received as f64 / this.min_rate as f64);
                    this.deadline
                        .as_mut()
                        .reset(this.started + this.grace + earned);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(TooSlow(this.min_rate).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The ingest routes, which a configured `client_auth` guards.
pub fn is_ingest(path: &str) -> bool {
    matches!(
        path,
        "/v1/logs"
            | "/v1/metrics"
            | "/v1/traces"
            | "/api/v1/logs/ndjson"
            | "/loki/api/v1/push"
            | "/api/v1/prom/write"
            | "/api/v1/alertmanager"
            | "/api/v1/events"
    ) || path.starts_with("/opentelemetry.proto.collector.")
}

fn refusal<B>(request: &hyper::Request<B>) -> axum::response::Response {
    const MESSAGE: &str = "a client certificate signed by the configured CA is needed to ingest";
    let grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        tonic::Status::unauthenticated(MESSAGE).into_http::<Body>()
    } else {
        ApiError::Unauthenticated(MESSAGE).into_response()
    }
}
