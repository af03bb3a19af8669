//! The HTTP/gRPC listener: accepts connections (TLS when configured), serves HTTP/1.1 and
//! HTTP/2 on each, tags every request with its peer address and verified client certificate,
//! and on shutdown stops accepting and lets open requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::ApiError;
use crate::tls::{ClientCertificate, Tls, client_certificate};

/// A TLS handshake must finish within this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then waits for open connections'
/// requests to finish (callers bound that wait with a timeout).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
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
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        // Each connection holds a watcher from its accept on, so shutdown waits for handshakes
        // in progress too (bounded by the handshake timeout).
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match tls {
                None => connection(TokioIo::new(stream), peer, None, false, app, watcher).await,
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
                            )
                            .await
                        }
                        Ok(Err(err)) => {
                            metrics::counter!("sextant_tls_handshake_failures_total").increment(1);
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
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
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
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
            app.oneshot(request.map(Body::new)).await
        }
    });
    let builder = Builder::new(TokioExecutor::new());
    let serving = builder.serve_connection_with_upgrades(io, service);
    if let Err(err) = watcher.watch(serving.into_owned()).await {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
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
