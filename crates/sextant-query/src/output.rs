//! [`QueryOutput`]: a query's result, and its renderings as JSON rows and CSV.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::writer::{JsonArray, WriterBuilder as JsonWriterBuilder};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// The result of one query, cut at [`crate::QueryLimits::max_rows`].
#[derive(Clone, Debug)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// True when the result had more rows than `max_rows` and was cut.
    pub truncated: bool,
}

impl QueryOutput {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The rows as a JSON array of objects keyed by column name. Nulls are explicit,
    /// timestamps are RFC 3339 strings; a value JSON cannot hold as it is (a binary or
    /// non-finite float, say) is written as its display string.
    pub fn to_json_rows(&self) -> serde_json::Value {
        match json_rows(&self.batches) {
            Ok(rows) => rows,
            Err(err) => {
                tracing::debug!(%err, "rendering the JSON rows from display strings");
                let batches: Vec<RecordBatch> = self
                    .batches
                    .iter()
                    .map(|batch| stringify_columns(batch, |_| true))
                    .collect();
                json_rows(&batches).unwrap_or_else(|_| serde_json::Value::Array(Vec::new()))
            }
        }
    }

    /// The rows as CSV (RFC 4180) with a header line; nested values (lists, structs, maps)
    /// are written as their display strings.
    pub fn to_csv(&self) -> String {
        let mut buffer = Vec::new();
        {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut buffer);
            let empty = [RecordBatch::new_empty(self.schema.clone())];
            let batches = if self.batches.is_empty() {
                &empty[..]
            } else {
                &self.batches[..]
            };
            for batch in batches {
                let batch = stringify_columns(batch, DataType::is_nested);
                if let Err(err) = writer.write(&batch) {
                    // Unreachable for the types CSV can hold once nested ones are strings.
                    tracing::warn!(%err, "writing a query result as CSV");
                    break;
                }
            }
        }
        String::from_utf8(buffer)
            .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
    }
}

fn json_rows(batches: &[RecordBatch]) -> Result<serde_json::Value, ArrowError> {
    let mut writer = JsonWriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let buffer = writer.into_inner();
    if buffer.is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_slice(&buffer).map_err(|err| ArrowError::JsonError(err.to_string()))
}

/// `batch` with the columns whose type matches `which` replaced by their display strings.
fn stringify_columns(batch: &RecordBatch, which: impl Fn(&DataType) -> bool) -> RecordBatch {
    let schema = batch.schema();
    if !schema.fields().iter().any(|field| which(field.data_type())) {
        return batch.clone();
    }
    let options = FormatOptions::default();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !which(field.data_type()) {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let strings: StringArray = match ArrayFormatter::try_new(column.as_ref(), &options) {
            Ok(formatter) => (0..column.len())
                .map(|row| {
                    column
                        .is_valid(row)
                        .then(|| formatter.value(row).to_string())
                })
                .collect(),
            Err(_) => (0..column.len()).map(|_| None::<String>).collect(),
        };
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(strings));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap_or_else(|_| batch.clone())
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, ListArray, TimestampNanosecondArray};
    use arrow::datatypes::Int32Type;

    use super::*;

    fn output(columns: Vec<(&str, ArrayRef)>) -> QueryOutput {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        QueryOutput {
            schema: batch.schema(),
            batches: vec![batch],
            truncated: false,
        }
    }

    #[test]
    fn json_rows_are_objects_with_explicit_nulls() {
        let out = output(vec![
            (
                "time",
                Arc::new(
                    TimestampNanosecondArray::from(vec![1_000_000_000, 0]).with_timezone("UTC"),
                ),
            ),
            ("n", Arc::new(Int64Array::from(vec![Some(7), None]))),
            ("s", Arc::new(StringArray::from(vec!["a\"b", "c"]))),
        ]);
        assert_eq!(
            out.to_json_rows(),
            serde_json::json!([
                {"time": "1970-01-01T00:00:01Z", "n": 7, "s": "a\"b"},
                {"time": "1970-01-01T00:00:00Z", "n": null, "s": "c"},
            ])
        );
        assert_eq!(out.num_rows(), 2);
    }

    #[test]
    fn csv_has_a_header_quotes_and_flattens_lists() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
        ]);
        let out = output(vec![
            (
                "s",
                Arc::new(StringArray::from(vec!["a,b", "c"])) as ArrayRef,
            ),
            ("l", Arc::new(list)),
        ]);
        assert_eq!(out.to_csv(), "s,l\n\"a,b\",\"[1, 2]\"\nc,\n");
    }

    #[test]
    fn empty_results_still_have_a_csv_header() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let out = QueryOutput {
            schema,
            batches: Vec::new(),
            truncated: false,
        };
        assert_eq!(out.to_csv(), "a\n");
        assert_eq!(out.to_json_rows(), serde_json::json!([]));
    }
}
