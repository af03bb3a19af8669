//! Limits on a query's shape, checked after parsing and before planning, so that no query can
//! exhaust a query thread's stack or spend minutes in the planner.
//!
//! The parser bounds nesting through parentheses and subqueries itself (its recursion limit),
//! but a chain of binary operators (`1+1+...+1`) or of set operations (`SELECT 1 UNION SELECT 1
//! UNION ...`) parses in a loop into a tree as deep as the chain is long, and planning walks
//! trees recursively. So the text's length is capped first (it bounds every tree, and so the
//! stack that dropping one takes), then a walk that stops at the first limit it passes counts:
//!
//! - [`MAX_EXPRESSION_DEPTH`] expressions nested in one another;
//! - [`MAX_EXPRESSIONS`] expressions in all;
//! - [`MAX_SET_OPERATIONS`] `UNION`/`INTERSECT`/`EXCEPT` in one query body.
//!
//! The walk itself never goes deeper than these limits: it stops when one is passed, and a
//! query's set operations are counted (without recursion) before its body is walked.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Statement, Visit, Visitor};

use crate::error::{Error, Result};

/// Longest accepted SQL text, in bytes.
pub const MAX_SQL_BYTES: usize = 64 * 1024;
/// Most expressions nested in one another (`a + b` holds `a` one level down).
pub const MAX_EXPRESSION_DEPTH: usize = 128;
/// Most expressions in one statement, literals and column names included.
pub const MAX_EXPRESSIONS: usize = 20_000;
/// Most set operations (`UNION`, `INTERSECT`, `EXCEPT`) in one query body.
pub const MAX_SET_OPERATIONS: usize = 256;

/// Refuses SQL text longer than [`MAX_SQL_BYTES`], before it is parsed.
pub(crate) fn check_text(sql: &str) -> Result<()> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Error::TooComplex {
            message: format!(
                "the query is {} bytes long; at most {MAX_SQL_BYTES} are accepted",
                sql.len()
            ),
        });
    }
    Ok(())
}

/// Refuses a parsed statement past any of the limits, naming the limit.
pub(crate) fn check_statement(statement: &Statement) -> Result<()> {
    let mut shape = Shape::default();
    match statement.visit(&mut shape) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(message) => Err(Error::TooComplex { message }),
    }
}

#[derive(Default)]
struct Shape {
    depth: usize,
    expressions: usize,
}

impl Visitor for Shape {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        let operations = set_operations(&query.body);
        if operations > MAX_SET_OPERATIONS {
            return ControlFlow::Break(format!(
                "the query combines {operations} set operations (UNION, INTERSECT, EXCEPT); \
                 at most {MAX_SET_OPERATIONS} are accepted"
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<String> {
        self.depth += 1;
        self.expressions += 1;
        if self.depth > MAX_EXPRESSION_DEPTH {
            return ControlFlow::Break(format!(
                "expressions are nested more than {MAX_EXPRESSION_DEPTH} deep \
                 (a long chain like `a + b + c + ...` nests one level per operator)"
            ));
        }
        if self.expressions > MAX_EXPRESSIONS {
            return ControlFlow::Break(format!(
                "the query has more than {MAX_EXPRESSIONS} expressions"
            ));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<String> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// The set operations in one query body, counted with a stack of our own; a parenthesized
/// query inside counts with its own body when the walk reaches it.
fn set_operations(body: &SetExpr) -> usize {
    let mut count = 0;
    let mut pending = vec![body];
    while let Some(node) = pending.pop() {
        if let SetExpr::SetOperation { left, right, .. } = node {
            count += 1;
            pending.push(left);
            pending.push(right);
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn check(sql: &str) -> Result<()> {
        check_text(sql)?;
        let statements = Parser::parse_sql(&GenericDialect {}, sql).unwrap();
        check_statement(&statements[0])
    }

    fn refusal(sql: &str) -> String {
        match check(sql) {
            Err(Error::TooComplex { message }) => message,
            other => panic!("{sql:.60}... was not refused: {other:?}"),
        }
    }

    fn chain(term: &str, operator: &str, n: usize) -> String {
        vec![term; n].join(operator)
    }

    #[test]
    fn ordinary_queries_pass() {
        check("SELECT service, count(*) FROM logs WHERE severity >= 17 GROUP BY 1").unwrap();
        check(&format!(
            "SELECT {}",
            chain("1", " + ", MAX_EXPRESSION_DEPTH / 2)
        ))
        .unwrap();
        let in_list = chain("'x'", ", ", 5_000);
        check(&format!("SELECT * FROM logs WHERE service IN ({in_list})")).unwrap();
        check(&chain("SELECT 1", " UNION ALL ", MAX_SET_OPERATIONS + 1)).unwrap();
    }

    #[test]
    fn each_limit_is_named_when_passed() {
        let deep = refusal(&format!("SELECT {}", chain("1", "+", 1_000)));
        assert!(deep.contains("nested more than 128 deep"), "{deep}");
        let deep_and = refusal(&format!("SELECT 1 WHERE {}", chain("true", " AND ", 500)));
        assert!(deep_and.contains("nested"), "{deep_and}");
        let wide = refusal(&format!("SELECT {}", chain("1", ", ", MAX_EXPRESSIONS + 1)));
        assert!(wide.contains("more than 20000 expressions"), "{wide}");
        let unions = refusal(&chain("SELECT 1", " UNION ", MAX_SET_OPERATIONS + 2));
        assert!(unions.contains("257 set operations"), "{unions}");
        let nested_unions = refusal(&format!(
            "SELECT 1 WHERE 1 IN ({})",
            chain("SELECT 1", " UNION ", 1_000)
        ));
        assert!(
            nested_unions.contains("999 set operations"),
            "{nested_unions}"
        );
        let long = refusal(&" ".repeat(MAX_SQL_BYTES + 1));
        assert!(long.contains("at most 65536 are accepted"), "{long}");
    }
}
