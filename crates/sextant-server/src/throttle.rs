//! Failed-authentication throttling per source address: an address whose requests were refused
//! as unauthenticated `max_failures` times within a minute is refused (429, `Retry-After`)
//! until that minute is over, whatever token it sends next. Guessing tokens from one address so
//! costs a minute per `max_failures` guesses; other addresses are unaffected.
//!
//! The guard is a middleware over every route but health checks and the UI's files: it reads
//! the peer address the listener attached ([`axum::extract::ConnectInfo`]) and counts responses
//! with status 401 (or gRPC status `UNAUTHENTICATED`). Requests without a peer address (tests
//! calling the router directly) pass unchecked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use crate::{ApiError, AppState};

/// The counting window.
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past this the oldest windows are forgotten first.
const MAX_ADDRESSES: usize = 100_000;

/// Failures per address in the current window.
#[derive(Debug)]
pub struct AuthThrottle {
    max_failures: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthThrottle {
    /// `max_failures` per minute and address; 0 turns throttling off.
    pub fn new(max_failures: u32) -> AuthThrottle {
        AuthThrottle {
            max_failures,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// How long `address` must still wait, if it is throttled now.
    pub fn wait(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        if self.max_failures == 0 {
            return None;
        }
        let windows = self.windows.lock();
        let (start, failures) = windows.get(&address)?;
        let end = *start + WINDOW;
        (*failures >= self.max_failures && now < end).then(|| end - now)
    }

    /// Counts one failed authentication from `address`.
    pub fn failed(&self, address: IpAddr, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let mut windows = self.windows.lock();
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(&address) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.len() >= MAX_ADDRESSES {
                windows.clear();
            }
        }
        let entry = windows.entry(address).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// Paths that need no token and are never throttled.
fn exempt(path: &str) -> bool {
    // `/metrics` takes tokens (a tenant sees its own series), so it is guarded like the API.
    matches!(path, "/" | "/healthz" | "/readyz") || path.starts_with("/assets/")
}

/// The middleware: refuse throttled addresses, count refusals.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let Some(peer) = peer.filter(|_| !exempt(request.uri().path())) else {
        return next.run(request).await;
    };
    let grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if let Some(wait) = state.throttle.wait(peer, Instant::now()) {
        metrics::counter!("sextant_auth_throttled_total").increment(1);
        let refusal = ApiError::AuthThrottled(wait);
        if grpc {
            return tonic::Status::resource_exhausted(refusal.public_message())
                .into_http::<axum::body::Body>();
        }
        return refusal.into_response();
    }
    let response = next.run(request).await;
    let unauthenticated = response.status() == axum::http::StatusCode::UNAUTHORIZED
        || response
            .headers()
            .get("grpc-status")
            .is_some_and(|code| code.as_bytes() == b"16");
    if unauthenticated {
        metrics::counter!("sextant_auth_failures_total").increment(1);
        state.throttle.failed(peer, Instant::now());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_for_the_rest_of_its_minute() {
        let throttle = AuthThrottle::new(3);
        let start = Instant::now();
        let guesser: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..2 {
            throttle.failed(guesser, start);
        }
        assert_eq!(throttle.wait(guesser, start), None);
        throttle.failed(guesser, start);
        let later = start + Duration::from_secs(20);
        assert_eq!(throttle.wait(guesser, later), Some(Duration::from_secs(40)));
        assert_eq!(throttle.wait(other, later), None);
        assert_eq!(throttle.wait(guesser, start + WINDOW), None);
        // A new window starts counting from one.
        throttle.failed(guesser, start + WINDOW);
        assert_eq!(throttle.wait(guesser, start + WINDOW), None);
        assert_eq!(AuthThrottle::new(0).wait(guesser, start), None);
    }
}
