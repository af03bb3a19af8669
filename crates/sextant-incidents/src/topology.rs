//! [`ServiceMap`]: which services call which, as derived from spans, and how far apart two
//! services are on it (the correlator's notion of "connected").

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// OTLP span kinds, as stored in the `kind` column of `spans`.
pub mod span_kind {
    pub const SERVER: i32 = 2;
    pub const CLIENT: i32 = 3;
    pub const PRODUCER: i32 = 4;
    pub const CONSUMER: i32 = 5;
}

/// Traffic figures of a service or an edge over a time range.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// Spans counted.
    pub requests: u64,
    /// Of them, spans with status ERROR.
    pub errors: u64,
    /// Requests per second over the range.
    pub request_rate: f64,
    /// `errors / requests`, 0 when there were none.
    pub error_rate: f64,
    /// Duration quantiles in milliseconds.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl Traffic {
    /// Figures from counts and quantiles over `seconds`.
    pub fn new(requests: u64, errors: u64, seconds: f64, quantiles_ms: [f64; 3]) -> Traffic {
        Traffic {
            requests,
            errors,
            request_rate: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            error_rate: if requests > 0 {
                errors as f64 / requests as f64
            } else {
                0.0
            },
            p50_ms: quantiles_ms[0],
            p95_ms: quantiles_ms[1],
            p99_ms: quantiles_ms[2],
        }
    }
}

/// A node of the map: a service that emitted spans, or an external system (a database, a
/// third-party API) that only appears as the peer of client spans.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    /// `service` or `external`.
    pub kind: String,
    /// What the service served (its SERVER and CONSUMER spans, or its root spans).
    pub traffic: Traffic,
}

/// A directed edge: `caller` sent requests to `callee`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub caller: String,
    pub callee: String,
    /// The callee's spans (or, to an external node, the caller's client spans) on this edge.
    pub traffic: Traffic,
}

/// The service map of one tenant over a time range.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceMap {
    nodes: BTreeMap<String, Node>,
    edges: BTreeMap<(String, String), Edge>,
    #[serde(skip)]
    neighbours: HashMap<String, BTreeSet<String>>,
}

impl ServiceMap {
    /// A map of `edges`; nodes named by an edge but missing from `nodes` are added as services
    /// without traffic. Self-edges are ignored.
    pub fn new(nodes: Vec<Node>, edges: Vec<Edge>) -> ServiceMap {
        let mut map = ServiceMap::default();
        for node in nodes {
            map.nodes.insert(node.name.clone(), node);
        }
        for edge in edges {
            if edge.caller == edge.callee {
                continue;
            }
            for name in [&edge.caller, &edge.callee] {
                map.nodes.entry(name.clone()).or_insert_with(|| Node {
                    name: name.clone(),
                    kind: "service".into(),
                    traffic: Traffic::default(),
                });
            }
            map.neighbours
                .entry(edge.caller.clone())
                .or_default()
                .insert(edge.callee.clone());
            map.neighbours
                .entry(edge.callee.clone())
                .or_default()
                .insert(edge.caller.clone());
            map.edges
                .insert((edge.caller.clone(), edge.callee.clone()), edge);
        }
        map
    }

    /// A map of bare `(caller, callee)` pairs, for tests and scenario files.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> ServiceMap {
        let edges = pairs
            .into_iter()
            .map(|(caller, callee)| Edge {
                caller: caller.into(),
                callee: callee.into(),
                traffic: Traffic::default(),
            })
            .collect();
        ServiceMap::new(Vec::new(), edges)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn edges(&self) -> impl Iterator<Item = &Edge> {
        self.edges.values()
    }

    pub fn contains(&self, service: &str) -> bool {
        self.nodes.contains_key(service)
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The shortest path from `from` to any of `targets`, ignoring edge direction, at most
    /// `max_hops` edges long: the services along it, `from` first. `None` when no target is
    /// that close (or `from` is not on the map).
    pub fn path_to_any(
        &self,
        from: &str,
        targets: &BTreeSet<String>,
        max_hops: usize,
    ) -> Option<Vec<String>> {
        if targets.contains(from) {
            return Some(vec![from.to_owned()]);
        }
        if !self.neighbours.contains_key(from) {
            return None;
        }
        let mut previous: HashMap<&str, &str> = HashMap::new();
        let mut queue = VecDeque::from([(from, 0usize)]);
        previous.insert(from, from);
        while let Some((at, hops)) = queue.pop_front() {
            if hops == max_hops {
                continue;
            }
            for next in self.neighbours.get(at).into_iter().flatten() {
                if previous.contains_key(next.as_str()) {
                    continue;
                }
                previous.insert(next, at);
                if targets.contains(next) {
                    let mut path = vec![next.clone()];
                    let mut step = at;
                    while step != from {
                        path.push(step.to_owned());
                        step = previous[step];
                    }
                    path.push(from.to_owned());
                    path.reverse();
                    return Some(path);
                }
                queue.push_back((next, hops + 1));
            }
        }
        None
    }

    /// Whether `caller` calls `callee` directly.
    pub fn calls(&self, caller: &str, callee: &str) -> bool {
        self.edges
            .contains_key(&(caller.to_owned(), callee.to_owned()))
    }

    /// Rebuilds the neighbour index (after deserialising).
    pub fn reindex(self) -> ServiceMap {
        let nodes = self.nodes.into_values().collect();
        let edges = self.edges.into_values().collect();
        ServiceMap::new(nodes, edges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paths_ignore_direction_and_stop_at_the_hop_limit() {
        let map = ServiceMap::from_pairs([
            ("frontend", "cart"),
            ("frontend", "checkout"),
            ("checkout", "payment"),
            ("cart", "redis"),
            ("checkout", "redis"),
            ("lonely", "lonely"),
        ]);
        let check = |from: &str, to: &[&str], hops: usize, expected: Option<&[&str]>| {
            let path = map.path_to_any(from, &set(to), hops);
            let expected = expected.map(|p| p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(path, expected, "{from} -> {to:?} in {hops}");
        };
        check("cart", &["cart"], 0, Some(&["cart"]));
        check("cart", &["redis"], 1, Some(&["cart", "redis"]));
        check("redis", &["cart"], 1, Some(&["redis", "cart"]));
        check(
            "cart",
            &["checkout"],
            2,
            Some(&["cart", "frontend", "checkout"]),
        );
        check("payment", &["cart"], 2, None);
        check(
            "payment",
            &["cart"],
            3,
            Some(&["payment", "checkout", "frontend", "cart"]),
        );
        check("lonely", &["cart"], 9, None);
        check("unknown", &["cart"], 9, None);
        assert!(map.calls("checkout", "payment") && !map.calls("payment", "checkout"));
        assert!(!map.contains("lonely"), "self-edges add nothing");
    }

    #[test]
    fn traffic_rates() {
        let t = Traffic::new(120, 6, 60.0, [1.0, 2.0, 3.0]);
        assert_eq!((t.request_rate, t.error_rate), (2.0, 0.05));
        assert_eq!(Traffic::new(0, 0, 0.0, [0.0; 3]).error_rate, 0.0);
    }
}
