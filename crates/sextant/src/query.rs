//! `sextant query --url URL --token T "SQL"`: runs SQL on a server and prints a table.

use anyhow::{Context, bail};

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// Base URL of the server.
    #[arg(long, env = "SEXTANT_URL", default_value = "http://127.0.0.1:7300")]
    url: String,
    /// A token with the viewer, editor or admin role.
    #[arg(long, env = "SEXTANT_TOKEN")]
    token: String,
    /// Print CSV instead of a table.
    #[arg(long)]
    csv: bool,
    /// The query, e.g. "SELECT service, count(*) FROM logs GROUP BY service".
    sql: String,
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let url = format!("{}/api/v1/sql", args.url.trim_end_matches('/'));
    let format = if args.csv { "csv" } else { "json" };
    let body = serde_json::json!({"sql": args.sql, "format": format}).to_string();
    let mut response = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {}", args.token))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .context("cannot read the answer")?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("{} {message}", status.as_u16());
    }
    if args.csv {
        print!("{text}");
        return Ok(());
    }
    let answer: serde_json::Value = serde_json::from_str(&text).context("answer is not JSON")?;
    print!("{}", render_table(&answer));
    Ok(())
}

/// The answer of `/api/v1/sql` as an aligned text table, with a row count line.
fn render_table(answer: &serde_json::Value) -> String {
    let columns: Vec<&str> = answer["columns"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = answer["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    columns
                        .iter()
                        .map(|name| match &row[*name] {
                            serde_json::Value::Null => String::new(),
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([name.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join(" | ").trim_end())
    };
    let mut out = line(&columns.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    out.push_str(&format!(
        "{}\n",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    ));
    for row in &rows {
        out.push_str(&line(row));
    }
    let truncated = if answer["truncated"].as_bool() == Some(true) {
        " (truncated)"
    } else {
        ""
    };
    out.push_str(&format!("({} rows{truncated})\n", rows.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_aligned() {
        let answer = serde_json::json!({
            "columns": [{"name": "service"}, {"name": "n"}],
            "rows": [{"service": "checkout", "n": 12}, {"service": "api", "n": null}],
            "truncated": false,
        });
        assert_eq!(
            render_table(&answer),
            "service  | n\n---------+---\ncheckout | 12\napi      |\n(2 rows)\n"
        );
    }
}
