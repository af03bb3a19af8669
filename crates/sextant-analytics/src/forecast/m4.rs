//! Parsing the M4 competition's wide CSV text: a `"V1","V2",...` header, then one row per
//! series (`"H1","605","586",...`), rows of varying length padded with empty cells.

use crate::error::{Error, Result};

/// Parses M4's wide CSV `text` into `(id, values)` pairs, in row order. Empty cells (the
/// padding after a short series) are skipped; a cell that is not a number is an error.
pub fn parse_m4_csv(text: &str) -> Result<Vec<(String, Vec<f64>)>> {
    let mut lines = text.lines();
    match lines.next() {
        Some(header) if header.trim_start_matches('\u{feff}').starts_with("\"V1\"") => {}
        _ => {
            return Err(Error::InvalidInput {
                reason: "m4 csv must start with a `\"V1\",...` header",
            });
        }
    }
    let mut series = Vec::new();
    for line in lines {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let mut cells = line.split(',').map(unquote);
        let id = match cells.next() {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => {
                return Err(Error::InvalidInput {
                    reason: "m4 csv row without a series id",
                });
            }
        };
        let mut values = Vec::new();
        for cell in cells {
            if cell.is_empty() {
                continue;
            }
            let value: f64 = cell.parse().map_err(|_| Error::InvalidInput {
                reason: "m4 csv cell is not a number",
            })?;
            values.push(value);
        }
        series.push((id, values));
    }
    Ok(series)
}

/// A cell without its surrounding quotes and blanks.
fn unquote(cell: &str) -> &str {
    let cell = cell.trim();
    cell.strip_prefix('"')
        .and_then(|c| c.strip_suffix('"'))
        .unwrap_or(cell)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &[(&str, &[f64])]) {
        let parsed = parse_m4_csv(text).unwrap();
        let expected: Vec<(String, Vec<f64>)> = expected
            .iter()
            .map(|(id, v)| (id.to_string(), v.to_vec()))
            .collect();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn rows_of_varying_length() {
        check(
            "\"V1\",\"V2\",\"V3\",\"V4\"\n\"H1\",\"605\",\"586\",\"1.5\"\n\"H2\",\"7\",\"\",\"\"\n",
            &[("H1", &[605.0, 586.0, 1.5]), ("H2", &[7.0])],
        );
        check("\"V1\",\"V2\"\r\n\"H1\",\"3\"\r\n\r\n", &[("H1", &[3.0])]);
        check("\"V1\",\"V2\"\n", &[]);
    }

    #[test]
    fn refuses_malformed_text() {
        assert!(parse_m4_csv("").is_err());
        assert!(parse_m4_csv("id,value\nH1,3\n").is_err());
        assert!(parse_m4_csv("\"V1\",\"V2\"\n\"H1\",\"x\"\n").is_err());
        assert!(parse_m4_csv("\"V1\",\"V2\"\n\"\",\"3\"\n").is_err());
    }
}
