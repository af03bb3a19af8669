//! Property test of the read endpoints' query strings: random bytes, mutations of valid
//! requests (huge, negative, NaN, empty and very long values, repeated and unknown keys) and
//! random path ids go to every GET route of `sextant_server::router`, in process, on a ready
//! server (real store, query engine, correlation and runbooks over an empty data directory)
//! and on one still starting. None may panic, answer a 5xx (other than the starting server's
//! 503), or refuse with an empty body.
//!
//! 256 cases by default; `PROPTEST_CASES=200000 cargo test -p sextant-server --test
//! query_params` for a long run.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use proptest::test_runner::Config;
use sextant_ingest::{IngestBus, IngestConfig, IngestPipeline};
use sextant_model::{Role, TenantId};
use sextant_query::{QueryEngine, QueryLimits};
use sextant_server::correlation::{Clock, Correlation};
use sextant_server::runbooks::{LinkSigner, Runbooks};
use sextant_server::secrets::SecretBox;
use sextant_server::{AppState, Services, router};
use sextant_store::meta::{MetadataStore, SqliteMetadata, TokenStore};
use sextant_store::{StoreConfig, TableSource, TelemetryStore};
use tower::ServiceExt;

/// Every GET route, with the parameters a valid request may carry. `{id}` and the like are
/// filled by the test.
const GET_ROUTES: &[(&str, &[&str])] = &[
    ("/", &[]),
    ("/assets/{file}", &[]),
    ("/healthz", &[]),
    ("/readyz", &[]),
    ("/metrics", &[]),
    (
        "/api/v1/logs/search",
        &["q", "from", "to", "service", "severity", "limit", "cursor"],
    ),
    (
        "/api/v1/metrics/query_range",
        &[
            "name",
            "match",
            "from",
            "to",
            "step",
            "agg",
            "band",
            "time_format",
        ],
    ),
    ("/api/v1/traces/{trace_id}", &[]),
    ("/api/v1/patterns", &["from", "to", "service", "q", "limit"]),
    (
        "/api/v1/patterns/{id}/series",
        &["from", "to", "step", "time_format"],
    ),
    (
        "/api/v1/anomalies",
        &["from", "to", "service", "kind", "limit"],
    ),
    ("/api/v1/anomalies/{id}", &[]),
    (
        "/api/v1/forecast",
        &[
            "name",
            "match",
            "from",
            "to",
            "step",
            "agg",
            "horizon",
            "season",
            "time_format",
        ],
    ),
    ("/api/v1/topology", &["from", "to"]),
    (
        "/api/v1/audit",
        &["from", "to", "kind", "actor", "subject", "limit"],
    ),
    ("/api/v1/runbooks", &[]),
    ("/api/v1/actions", &[]),
    ("/api/v1/secrets", &[]),
    ("/api/v1/tokens", &[]),
    ("/api/v1/runs", &[]),
    ("/api/v1/runs/{id}", &[]),
    (
        "/api/v1/runs/{id}/link",
        &["tenant", "decision", "step", "sig"],
    ),
    ("/api/v1/incidents", &["from", "to", "status", "limit"]),
    ("/api/v1/incidents/{id}", &[]),
    ("/api/v1/incidents/{id}/rca", &["versions"]),
    ("/api/v1/silences", &[]),
    ("/api/v1/inhibit_rules", &[]),
];

/// Values a parameter parser may trip on, valid ones among them.
const VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "+5",
    " 5",
    "1.5",
    "1e3",
    "1e309",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "0x10",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "99999999999",
    "100000000000",
    "99999999999999",
    "100000000000000",
    "1700000000",
    "1700000000000",
    "1700000000000000000",
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00.123456789+05:30",
    "2026-13-45T25:61:61Z",
    "2024-02-29T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "2262-04-11T23:47:16.854775807Z",
    "2262-04-11T23:47:16.854775808Z",
    "1s",
    "0s",
    "-60s",
    "60s",
    "1m",
    "1h",
    "1d",
    "365d",
    "366d",
    "1y",
    "9999999999999999999d",
    "s",
    "avg",
    "sum",
    "min",
    "max",
    "count",
    "rate",
    "p50",
    "p99",
    "p100",
    "p0",
    "true",
    "false",
    "all",
    "open",
    "anomaly",
    "approve",
    "reject",
    "acme",
    "Acme",
    "../acme",
    "service=checkout",
    "service=checkout,route=/a",
    "route",
    "=",
    ",",
    ",,=,",
    "a=b=c",
    "\"",
    "\"unterminated",
    "\"\"",
    "-",
    "--",
    "key:",
    ":value",
    "a:b:c",
    "template:17",
    "template:+5",
    "template:18446744073709551615",
    "template:99999999999999999999",
    "template:-1",
    "trace_id:5B8EFFF798038103D269B633813FC60C",
    "-service:x \"a phrase\" level:ERROR word",
    "'; DROP TABLE logs; --",
    "\\'",
    "0000000000000000ffffffffffffffff",
    "7fffffffffffffff0000000000000000",
    "00000000000000000000000000000001",
    "ffffffffffffffffffffffffffffffff",
    "5b8efff798038103d269b633813fc60c",
    "é☃𝄞",
    "\u{0}",
    "\u{7f}\u{1b}[31m",
    "%",
    "%zz",
    "%00",
    "+",
];

/// What one request is: the route, the path ids, and the query string as sent (already
/// encoded).
#[derive(Debug, Clone)]
struct Case {
    route: usize,
    id: String,
    query: String,
}

/// Percent-encodes every byte but unreserved ones.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Bytes as they may appear raw in a query: structure characters and `%` kept (so malformed
/// escapes come through), everything else encoded.
fn encode_loosely(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'&' | b'=' | b'%' | b'+' | b',' | b':' | b'/' | b'\'' | b'!' | b'*' | b'(' | b')' => {
                (b as char).to_string()
            }
            _ => encode(&[b]),
        })
        .collect()
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(VALUES).prop_map(str::to_owned),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|n| n.to_string()),
        1 => (1u32..100_000, prop::sample::select(&["s", "m", "h", "d", "", "ms", "w"][..]))
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        2 => ".{0,40}",
        1 => (1usize..3_000, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
        1 => prop::collection::vec(prop::sample::select(VALUES), 1..8)
            .prop_map(|parts| parts.join(" ")),
    ]
}

/// A valid query string of each parameterised route, the start of its mutations.
fn valid_query(route: &str) -> &'static str {
    const RANGE: &str = "from=1700000000&to=1700003600";
    match route {
        "/api/v1/logs/search" => {
            "q=error%20-debug%20service%3Acheckout&from=1700000000&to=1700003600&limit=10"
        }
        "/api/v1/metrics/query_range" => {
            "name=x&match=service%3Dcheckout&step=60s&agg=rate&from=1700000000&to=1700003600"
        }
        "/api/v1/patterns" => "q=timeout&limit=5&from=1700000000&to=1700003600",
        "/api/v1/patterns/{id}/series" => "step=5m&from=1700000000&to=1700003600",
        "/api/v1/anomalies" => "kind=all&service=checkout&limit=5&from=1700000000&to=1700003600",
        "/api/v1/forecast" => "name=x&horizon=10m&season=1h&from=1700000000&to=1700003600",
        "/api/v1/topology" => RANGE,
        "/api/v1/audit" => {
            "kind=incident&actor=alice&subject=1&limit=10&from=1700000000&to=1700003600"
        }
        "/api/v1/runs/{id}/link" => "tenant=acme&decision=approve&step=0&sig=00",
        "/api/v1/incidents" => "status=open&limit=10&from=1700000000&to=1700003600",
        "/api/v1/incidents/{id}/rca" => "versions=2",
        _ => "",
    }
}

/// How a pair is written: strictly encoded, loosely (raw `%`, `&`, `=` ...), or a bare key.
fn write_pair(key: &str, value: &str, form: u8) -> String {
    match form {
        0 => encode(key.as_bytes()),
        1 => format!(
            "{}={}",
            encode(key.as_bytes()),
            encode_loosely(value.as_bytes())
        ),
        _ => format!("{}={}", encode(key.as_bytes()), encode(value.as_bytes())),
    }
}

/// A query string: the route's valid one with a few mutations (a value replaced, a key
/// dropped, repeated, added, or unknown), each pair written strictly or loosely.
fn mutated_query(
    route: &'static str,
    known: &'static [&'static str],
) -> impl Strategy<Value = String> {
    let base: Vec<(String, String)> = valid_query(route)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                k.to_owned(),
                v.replace("%20", " ")
                    .replace("%3A", ":")
                    .replace("%3D", "="),
            )
        })
        .collect();
    let unknown =
        prop::sample::select(&["x", "", "FROM", "from ", "limit[]", "q\0", "%", "a=b"][..]);
    let mutation = (0u8..6, any::<prop::sample::Index>(), value(), unknown);
    let forms = prop::collection::vec(
        prop_oneof![1 => Just(0u8), 2 => Just(1u8), 12 => Just(2u8)],
        16,
    );
    (prop::collection::vec(mutation, 0..4), forms).prop_map(move |(mutations, forms)| {
        let mut pairs = base.clone();
        for (op, at, value, unknown) in mutations {
            let key = if known.is_empty() {
                "from"
            } else {
                *at.get(known)
            };
            match op {
                0 | 1 if !pairs.is_empty() => {
                    let i = at.index(pairs.len());
                    pairs[i].1 = value;
                }
                2 if !pairs.is_empty() => {
                    pairs.remove(at.index(pairs.len()));
                }
                3 if !pairs.is_empty() => {
                    let i = at.index(pairs.len());
                    pairs.push((pairs[i].0.clone(), value));
                }
                4 => pairs.push((unknown.to_owned(), value)),
                _ => pairs.push((key.to_owned(), value)),
            }
        }
        pairs
            .iter()
            .zip(forms.iter().cycle())
            .map(|((key, value), form)| write_pair(key, value, *form))
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// The longest query string sent: `http::Uri` takes at most 65,534 bytes in all.
const MAX_QUERY_BYTES: usize = 60_000;

fn case() -> impl Strategy<Value = Case> {
    (0..GET_ROUTES.len()).prop_flat_map(|route| {
        let (path, known) = GET_ROUTES[route];
        let query = prop_oneof![
            6 => mutated_query(path, known),
            2 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| encode_loosely(&b)),
            1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| encode(&b)),
        ];
        let id = prop_oneof![
            3 => prop::sample::select(VALUES).prop_map(|v| encode(v.as_bytes())),
            1 => "[0-9a-fA-F]{16,32}",
            1 => prop::collection::vec(any::<u8>(), 1..80).prop_map(|b| encode(&b)),
        ];
        (Just(route), id, query).prop_map(|(route, id, mut query)| {
            // Encoded, so ASCII: any cut is at a character boundary (and may leave a broken
            // escape, which is fine).
            query.truncate(MAX_QUERY_BYTES);
            Case { route, id, query }
        })
    })
}

/// A ready server over an empty data directory and one still starting, with an admin token of
/// tenant `acme` that both know.
struct Fixture {
    ready: Router,
    starting: Router,
    token: String,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let sqlite = Arc::new(SqliteMetadata::open(&data.join("meta.db")).unwrap());
    let token = sqlite
        .create_token(&TenantId::new("acme").unwrap(), Role::Admin)
        .unwrap()
        .secret;
    let meta: Arc<dyn MetadataStore> = sqlite;
    let (store, _) = TelemetryStore::open(StoreConfig::new(data), meta.clone()).unwrap();
    let store = Arc::new(store);
    let bus: Arc<dyn IngestBus> = store.clone();
    let runbooks = Runbooks::new(
        data.join("runbooks"),
        LinkSigner::open(&data.join("approval.key"), "http://127.0.0.1:7300".into()).unwrap(),
        SecretBox::open(&data.join("secrets.key")).unwrap(),
        Default::default(),
        Default::default(),
    );
    let state = AppState::new(meta.clone(), 256, None);
    state.set_ready(Services {
        pipeline: Arc::new(IngestPipeline::new(IngestConfig::default(), bus)),
        query: Arc::new(QueryEngine::new(
            store.segment_store(),
            QueryLimits::default(),
        )),
        tables: store.clone(),
        events: store,
        correlation: Arc::new(Correlation::new(
            meta.clone(),
            Default::default(),
            Clock::Live,
        )),
        runbooks: Arc::new(runbooks),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Fixture {
        ready: router(state, 1 << 20),
        starting: router(AppState::new(meta, 256, None), 1 << 20),
        token,
        runtime,
        _dir: dir,
    }
});

/// The path of `case`, its route's placeholders filled with its id.
fn path(case: &Case) -> String {
    let route = GET_ROUTES[case.route].0;
    let mut path = String::new();
    for segment in route.split('/').skip(1) {
        path.push('/');
        if segment.starts_with('{') {
            path.push_str(if case.id.is_empty() { "x" } else { &case.id });
        } else {
            path.push_str(segment);
        }
    }
    if route == "/" {
        path = "/".to_owned();
    }
    format!("{path}?{}", case.query)
}

/// Sends `case` to `app`; the status and body.
fn send(app: &Router, case: &Case) -> (u16, String) {
    let fixture = &*FIXTURE;
    let uri = path(case);
    let request = Request::get(&uri)
        .header("authorization", format!("Bearer {}", fixture.token))
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("the test built a bad request `{uri}`: {e}"));
    fixture.runtime.block_on(async {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

/// A 4xx says why: a non-empty body, and a non-empty `message` when it is the API's JSON.
fn check_refusal(status: u16, body: &str, uri: &str) -> Result<(), TestCaseError> {
    if (400..500).contains(&status) {
        prop_assert!(!body.trim().is_empty(), "{status} without a body: {uri}");
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(body)
            && let Some(message) = json.get("message")
        {
            prop_assert!(
                message.as_str().is_some_and(|m| !m.trim().is_empty()),
                "{status} with an empty message: {uri}: {body}"
            );
        }
    }
    Ok(())
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        // Failures are printed with their shrunk case; a regression worth keeping becomes a
        // named test below.
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_query_string_panics_or_fails_the_server(case in case()) {
        let uri = path(&case);
        let (status, body) = send(&FIXTURE.ready, &case);
        prop_assert!(status < 500, "{status} from the ready server: {uri}: {body}");
        check_refusal(status, &body, &uri)?;

        let (status, body) = send(&FIXTURE.starting, &case);
        prop_assert!(
            status < 500 || (status == 503 && body.contains("starting")),
            "{status} from the starting server: {uri}: {body}"
        );
        check_refusal(status, &body, &uri)?;
    }
}

/// One request, for the regression tests: the ready server's status and body.
fn ready(uri: &str) -> (u16, String) {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let route = GET_ROUTES
        .iter()
        .position(|(r, _)| *r == path)
        .unwrap_or_else(|| panic!("{path} is not in GET_ROUTES"));
    send(
        &FIXTURE.ready,
        &Case {
            route,
            id: "1".into(),
            query: query.to_owned(),
        },
    )
}

#[test]
fn valid_requests_are_answered() {
    for uri in [
        "/api/v1/logs/search?q=error&from=1700000000&to=1700003600&limit=10",
        "/api/v1/metrics/query_range?name=x&step=60s&agg=p99&from=2026-01-01T00:00:00Z&to=1767229200",
        "/api/v1/patterns?limit=5",
        "/api/v1/patterns/{id}/series?step=1h",
        "/api/v1/anomalies?kind=all",
        "/api/v1/forecast?name=x&horizon=1h",
        "/api/v1/topology?from=1700000000",
        "/api/v1/audit?kind=incident",
        "/api/v1/incidents?status=open&limit=1000",
    ] {
        let (status, body) = ready(uri);
        let expected = if uri.contains("{id}") { 404 } else { 200 };
        assert_eq!(status, expected, "{uri}: {body}");
    }
}

/// The GET routes of `router`, read from its source, as the isolation test reads them.
fn router_get_routes() -> BTreeSet<String> {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let start = source.find("pub fn router(").expect("`router` in lib.rs");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").expect("the end of `router`")];
    body.split(".route(")
        .skip(1)
        .filter_map(|call| {
            let call = call.split(".with_state(").next().unwrap();
            let path = call.trim_start().strip_prefix('"')?.split('"').next()?;
            let has_get = call.match_indices("get(").any(|(at, _)| {
                call[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric() && c != '_')
            });
            has_get.then(|| path.to_owned())
        })
        .collect()
}

#[test]
fn every_get_route_is_in_the_property_test() {
    let routes = router_get_routes();
    assert!(routes.len() > 20, "found only {routes:?}");
    let tested: BTreeSet<String> = GET_ROUTES.iter().map(|(r, _)| r.to_string()).collect();
    assert_eq!(
        routes, tested,
        "GET_ROUTES and the router's GET routes differ"
    );
}
