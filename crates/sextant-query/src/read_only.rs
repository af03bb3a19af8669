//! The read-only gate: only queries (and `EXPLAIN` or `DESCRIBE` of them) get through.
//!
//! Two checks, so that one mistake is not enough: the parsed statement must be a query, and the
//! logical plan must hold no DDL, DML or statement node (DataFusion's [`SQLOptions`] with all
//! three disallowed, plus `COPY`).

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;

use crate::error::{Error, Result};

/// Refuses any statement that is not a query, before it is planned. `sql` names what was
/// refused.
pub(crate) fn check_statement(statement: &DFStatement, sql: &str) -> Result<()> {
    let allowed = match statement {
        DFStatement::Statement(statement) => is_read_only(statement),
        DFStatement::Explain(explain) => {
            return check_statement(&explain.statement, sql);
        }
        DFStatement::CreateExternalTable(_) | DFStatement::CopyTo(_) | DFStatement::Reset(_) => {
            false
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::NotAllowed {
            what: leading_keywords(sql),
        })
    }
}

/// The SQL statement that `statement` runs or explains (`None` for DataFusion's own
/// statements, which [`check_statement`] refuses).
pub(crate) fn inner_statement(statement: &DFStatement) -> Option<&Statement> {
    match statement {
        DFStatement::Statement(statement) => Some(statement),
        DFStatement::Explain(explain) => inner_statement(&explain.statement),
        _ => None,
    }
}

fn is_read_only(statement: &Statement) -> bool {
    match statement {
        Statement::Query(_) => true,
        // `DESCRIBE logs`: the table's columns.
        Statement::ExplainTable { .. } => true,
        Statement::Explain { statement, .. } => is_read_only(statement),
        _ => false,
    }
}

/// Refuses a plan that would change anything (`SELECT ... INTO` plans as `CREATE TABLE`).
pub(crate) fn check_plan(plan: &LogicalPlan) -> Result<()> {
    let mut refused = None;
    plan.apply_with_subqueries(|node| {
        let what = match node {
            LogicalPlan::Ddl(ddl) => Some(plan_words(ddl.name())),
            LogicalPlan::Dml(dml) => Some(plan_words(&dml.op.to_string())),
            LogicalPlan::Copy(_) => Some("COPY".to_owned()),
            LogicalPlan::Statement(statement) => Some(plan_words(statement.name())),
            _ => None,
        };
        Ok(match what {
            Some(what) => {
                refused = Some(what);
                TreeNodeRecursion::Stop
            }
            None => TreeNodeRecursion::Continue,
        })
    })?;
    if let Some(what) = refused {
        return Err(Error::NotAllowed { what });
    }
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    options.verify_plan(plan).map_err(|err| Error::NotAllowed {
        what: format!("this statement ({})", err.message()),
    })
}

/// The statement's kind in its own words: `DROP TABLE`, `INSERT`, `COPY`, `SET`, ... (of
/// what an `EXPLAIN` explains).
fn leading_keywords(sql: &str) -> String {
    const OBJECTS: &[&str] = &[
        "TABLE", "VIEW", "SCHEMA", "DATABASE", "CATALOG", "FUNCTION", "INDEX",
    ];
    let words: Vec<String> = sql
        .split_whitespace()
        .take(8)
        .map(|word| {
            word.trim_matches(|c: char| !c.is_ascii_alphabetic())
                .to_ascii_uppercase()
        })
        .take_while(|word| !word.is_empty())
        .skip_while(|word| matches!(word.as_str(), "EXPLAIN" | "ANALYZE" | "VERBOSE"))
        .collect();
    let Some(first) = words.first() else {
        return "this statement".to_owned();
    };
    if matches!(first.as_str(), "CREATE" | "DROP" | "ALTER")
        && let Some(end) = words
            .iter()
            .position(|word| OBJECTS.contains(&word.as_str()))
    {
        return words[..=end].join(" ");
    }
    first.clone()
}

/// `CreateMemoryTable` as `CREATE MEMORY TABLE`, `Insert Into` as `INSERT INTO`.
fn plan_words(name: &str) -> String {
    let mut words = String::with_capacity(name.len() + 4);
    for (index, c) in name.chars().enumerate() {
        if c.is_uppercase() && index > 0 && !words.ends_with(' ') {
            words.push(' ');
        }
        words.push(c.to_ascii_uppercase());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str, expected: &str) {
        assert_eq!(leading_keywords(sql), expected);
    }

    #[test]
    fn refusals_name_the_statement() {
        check("drop table logs", "DROP TABLE");
        check(
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "CREATE EXTERNAL TABLE",
        );
        check(
            "create or replace view v as select 1",
            "CREATE OR REPLACE VIEW",
        );
        check("insert into logs values (1)", "INSERT");
        check("  set datafusion.execution.batch_size = 1", "SET");
        check("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY");
        check("", "this statement");
    }

    #[test]
    fn plan_names_read_as_sql() {
        assert_eq!(plan_words("CreateMemoryTable"), "CREATE MEMORY TABLE");
        assert_eq!(plan_words("Insert Into"), "INSERT INTO");
    }

    #[test]
    fn explain_is_named_by_what_it_explains() {
        check("EXPLAIN ANALYZE drop table logs", "DROP TABLE");
        check("explain verbose insert into logs select 1", "INSERT");
    }
}
