//! `GET /api/v1/traces/{trace_id}`: one trace of the caller's tenant as a tree of spans.
//!
//! The id is 32 hex digits (either case). A span whose parent is not in the trace is a root;
//! roots and each span's children are ordered by start time, then span id. Spans that only
//! reach each other through a cycle of parent ids are shown as roots too, so every stored span
//! appears exactly once. `start` and `end` are RFC 3339; `kind` and `status_code` are the OTLP
//! numbers.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Map, Value, json};
use sextant_model::Table;

use crate::read_params::{bad, is_hex, json_rows, run_query, sql_string};
use crate::{ApiError, AppState};

/// Most spans returned for one trace; a longer trace is cut (and marked `truncated`).
const MAX_SPANS: usize = 10_000;

pub async fn trace(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(trace_id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    run(&state, &headers, &trace_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound("no spans with this trace id".into()))
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    trace_id: &str,
) -> Result<Option<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(state, headers)?;
    if !is_hex(trace_id, 32) {
        return Err(bad("trace_id", "must be 32 hex digits"));
    }
    let trace_id = trace_id.to_ascii_lowercase();
    let sql = format!(
        "SELECT span_id, parent_span_id, name, service, kind, time AS start, end_time AS \"end\", \
         duration_ns, status_code, status_message, attributes FROM spans WHERE trace_id = {} \
         ORDER BY time, span_id LIMIT {MAX_SPANS}",
        sql_string(&trace_id)
    );
    let output = run_query(state, &principal, Table::Spans, &sql).await?;
    let spans = json_rows(&output);
    if spans.is_empty() {
        return Ok(None);
    }
    let truncated = spans.len() >= MAX_SPANS;
    Ok(Some(json!({
        "trace_id": trace_id,
        "spans": span_tree(spans),
        "truncated": truncated,
    })))
}

/// Nests `spans` (ordered as they should appear among siblings) under their parents.
fn span_tree(spans: Vec<Map<String, Value>>) -> Vec<Value> {
    let id = |span: &Map<String, Value>, key: &str| -> String {
        span.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let index: HashMap<String, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, span)| (id(span, "span_id"), i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        match index.get(&id(span, "parent_span_id")) {
            Some(&parent) if parent != i => children[parent].push(i),
            _ => roots.push(i),
        }
    }
    // Spans not reachable from a root sit on a cycle of parents: the first of each is a root.
    let mut reached = vec![false; spans.len()];
    let mut order = Vec::with_capacity(spans.len());
    let visit = |start: usize, reached: &mut Vec<bool>, order: &mut Vec<usize>| {
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut reached[i], true) {
                order.push(i);
                stack.extend(children[i].iter().copied().filter(|&c| !reached[c]));
            }
        }
    };
    for &root in &roots {
        visit(root, &mut reached, &mut order);
    }
    for i in 0..spans.len() {
        if !reached[i] {
            roots.push(i);
            visit(i, &mut reached, &mut order);
        }
    }
    // Build each span's JSON after its children's (reverse of the visiting order), so no
    // recursion is needed however deep the tree.
    let mut slots: Vec<Option<Map<String, Value>>> = spans.into_iter().map(Some).collect();
    let mut built: Vec<Option<Value>> = vec![None; slots.len()];
    for &i in order.iter().rev() {
        let Some(mut span) = slots[i].take() else {
            continue;
        };
        let kids: Vec<Value> = children[i]
            .iter()
            .filter_map(|&c| built[c].take())
            .collect();
        span.insert("children".to_owned(), Value::Array(kids));
        built[i] = Some(Value::Object(span));
    }
    roots.into_iter().filter_map(|i| built[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `spans` as (id, parent) pairs, the tree as nested `id(child, ...)` text.
    fn check(spans: &[(&str, &str)], expected: &str) {
        let rows = spans
            .iter()
            .map(
                |(id, parent)| match json!({"span_id": id, "parent_span_id": parent}) {
                    Value::Object(map) => map,
                    _ => unreachable!(),
                },
            )
            .collect();
        fn render(span: &Value) -> String {
            let kids: Vec<String> = span["children"]
                .as_array()
                .unwrap()
                .iter()
                .map(render)
                .collect();
            let id = span["span_id"].as_str().unwrap();
            if kids.is_empty() {
                id.to_owned()
            } else {
                format!("{id}({})", kids.join(" "))
            }
        }
        let actual: Vec<String> = span_tree(rows).iter().map(render).collect();
        assert_eq!(actual.join(" "), expected, "{spans:?}");
    }

    #[test]
    fn spans_nest_under_their_parents_in_order() {
        check(&[("a", "")], "a");
        check(
            &[("a", ""), ("b", "a"), ("c", "b"), ("d", "a")],
            "a(b(c) d)",
        );
        check(&[("c", "b"), ("b", "a"), ("a", "")], "a(b(c))");
    }

    #[test]
    fn spans_with_a_missing_parent_are_roots() {
        check(&[("a", "zz"), ("b", "a"), ("c", "yy")], "a(b) c");
    }

    #[test]
    fn cycles_and_self_parents_still_show_every_span_once() {
        check(&[("a", "a")], "a");
        check(&[("a", "b"), ("b", "a"), ("r", "")], "r a(b)");
    }
}
