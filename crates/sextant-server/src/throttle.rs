//! Failed-authentication throttling per source address and per token id: once requests from
//! one address, or naming one token id, were refused as unauthenticated `max_failures` times
//! within a minute, further requests from it (or with it) that do not authenticate are refused
//! with 429 and `Retry-After` until the minute is over. A request whose token is valid always
//! passes, so a guesser behind the same proxy or NAT as a team locks out only its own guesses.
//! (Tokens carry 192 random bits: the throttle spares the server the noise, it is not what
//! makes guessing hopeless.)
//!
//! The guard is a middleware over every route but health checks and the UI's files: it reads
//! the peer address the listener attached ([`axum::extract::ConnectInfo`]), or, when that
//! peer is one of the operator's trusted proxies (`auth.trusted_proxies`, none by default), the
//! last address in `X-Forwarded-For` that is not one of them; and counts responses with status
//! 401 (or gRPC status `UNAUTHENTICATED`). Requests without a peer address (tests calling the
//! router directly) pass unchecked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use crate::egress::Network;
use crate::{ApiError, AppState};

/// The counting window.
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses and token ids remembered at most; past this the oldest windows are forgotten.
const MAX_KEYS: usize = 100_000;

/// What failures are counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Address(IpAddr),
    /// The public id of a token (`sxt_<id>_<secret>`).
    Token(String),
}

/// Failures per address and token id in the current window.
#[derive(Debug)]
pub struct AuthThrottle {
    max_failures: u32,
    windows: Mutex<HashMap<Source, (Instant, u32)>>,
    trusted_proxies: Vec<Network>,
}

impl AuthThrottle {
    /// `max_failures` per minute and source; 0 turns throttling off.
    pub fn new(max_failures: u32) -> AuthThrottle {
        AuthThrottle {
            max_failures,
            windows: Mutex::new(HashMap::new()),
            trusted_proxies: Vec::new(),
        }
    }

    /// Addresses (`10.0.0.5`) or networks (`10.0.0.0/8`) of proxies whose `X-Forwarded-For` is
    /// believed.
    pub fn with_trusted_proxies(mut self, proxies: &[String]) -> Result<AuthThrottle, String> {
        self.trusted_proxies = proxies
            .iter()
            .map(|entry| {
                Network::parse(entry).map_err(|why| format!("`auth.trusted_proxies`: {why}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// How long `source` must still wait, if it is throttled now.
    pub fn wait(&self, source: &Source, now: Instant) -> Option<Duration> {
        if self.max_failures == 0 {
            return None;
        }
        let windows = self.windows.lock();
        let (start, failures) = windows.get(source)?;
        let end = *start + WINDOW;
        (*failures >= self.max_failures && now < end).then(|| end - now)
    }

    /// Counts one failed authentication from `source`.
    pub fn failed(&self, source: Source, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let mut windows = self.windows.lock();
        if windows.len() >= MAX_KEYS && !windows.contains_key(&source) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.len() >= MAX_KEYS {
                windows.clear();
            }
        }
        let entry = windows.entry(source).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// The client's address: the peer's, or for a trusted proxy the last address of
    /// `X-Forwarded-For` that is not a trusted proxy.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: IpAddr| self.trusted_proxies.iter().any(|net| net.contains(ip));
        if !trusted(peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|part| part.trim().parse().ok())
            .collect();
        forwarded
            .into_iter()
            .rev()
            .find(|&ip| !trusted(ip))
            .unwrap_or(peer)
    }
}

/// The public id of the bearer token in `headers`, if it has the `sxt_<id>_<secret>` form.
fn token_id(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = value.trim().split_once(' ')?.1.trim();
    let (id, _) = token.strip_prefix("sxt_")?.split_once('_')?;
    (!id.is_empty() && id.len() <= 64).then(|| id.to_owned())
}

/// Paths that need no token and are never throttled.
fn exempt(path: &str) -> bool {
    // `/metrics` takes tokens (a tenant sees its own series), so it is guarded like the API.
    matches!(path, "/" | "/healthz" | "/readyz") || path.starts_with("/assets/")
}

/// The middleware: refuse throttled sources unless the token is valid, count refusals.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let Some(peer) = peer.filter(|_| !exempt(request.uri().path())) else {
        return next.run(request).await;
    };
    let headers = request.headers();
    let address = Source::Address(state.throttle.client(peer, headers));
    let token = token_id(headers).map(Source::Token);
    let grpc = headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let now = Instant::now();
    let wait = std::iter::once(&address)
        .chain(token.as_ref())
        .filter_map(|source| state.throttle.wait(source, now))
        .max();
    if let Some(wait) = wait {
        let authorization = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if state.auth.authenticate(authorization).is_err() {
            metrics::counter!("sextant_auth_throttled_total").increment(1);
            let refusal = ApiError::AuthThrottled(wait);
            if grpc {
                return tonic::Status::resource_exhausted(refusal.public_message())
                    .into_http::<axum::body::Body>();
            }
            return refusal.into_response();
        }
    }
    let response = next.run(request).await;
    let unauthenticated = response.status() == axum::http::StatusCode::UNAUTHORIZED
        || response
            .headers()
            .get("grpc-status")
            .is_some_and(|code| code.as_bytes() == b"16");
    if unauthenticated {
        metrics::counter!("sextant_auth_failures_total").increment(1);
        let now = Instant::now();
        state.throttle.failed(address, now);
        if let Some(token) = token {
            state.throttle.failed(token, now);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_refused_for_the_rest_of_its_minute() {
        let throttle = AuthThrottle::new(3);
        let start = Instant::now();
        let guesser = Source::Address("192.0.2.7".parse().unwrap());
        let other = Source::Address("192.0.2.8".parse().unwrap());
        for _ in 0..2 {
            throttle.failed(guesser.clone(), start);
        }
        assert_eq!(throttle.wait(&guesser, start), None);
        throttle.failed(guesser.clone(), start);
        let later = start + Duration::from_secs(20);
        assert_eq!(
            throttle.wait(&guesser, later),
            Some(Duration::from_secs(40))
        );
        assert_eq!(throttle.wait(&other, later), None);
        assert_eq!(throttle.wait(&guesser, start + WINDOW), None);
        // A new window starts counting from one.
        throttle.failed(guesser.clone(), start + WINDOW);
        assert_eq!(throttle.wait(&guesser, start + WINDOW), None);
        assert_eq!(AuthThrottle::new(0).wait(&guesser, start), None);
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let throttle = AuthThrottle::new(3)
            .with_trusted_proxies(&["10.0.0.0/8".to_owned(), "192.0.2.1".to_owned()])
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.4, 10.1.2.3".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.77".parse().unwrap();
        // The last address a trusted proxy did not add is the client.
        assert_eq!(
            throttle.client(proxy, &headers),
            "198.51.100.4".parse::<IpAddr>().unwrap()
        );
        // Anyone else's header is ignored.
        assert_eq!(throttle.client(stranger, &headers), stranger);
        assert_eq!(AuthThrottle::new(3).client(proxy, &headers), proxy);
        assert!(
            AuthThrottle::new(3)
                .with_trusted_proxies(&["nope".to_owned()])
                .is_err()
        );
    }

    #[test]
    fn token_ids_are_read_from_the_bearer_header() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer sxt_ab12_secret".parse().unwrap());
        assert_eq!(token_id(&headers), Some("ab12".to_owned()));
        headers.insert("authorization", "Bearer legacy-token".parse().unwrap());
        assert_eq!(token_id(&headers), None);
    }
}
