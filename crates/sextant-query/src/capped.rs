//! Functions whose cost an argument chooses, refused before they run when a call would pass a
//! limit.
//!
//! A query is stopped at its timeout when its tasks next yield, which they do between batches;
//! but one call of a function on one batch cannot be interrupted, and what it allocates is not
//! seen by the memory pool. `repeat('a', 500000000)` allocates half a gigabyte at once and
//! `levenshtein` of two 180,000-character strings works for minutes. So the functions whose
//! output or work grows with an argument (not only with their input) are wrapped: before a call
//! runs on a batch, the wrapper works out from the arguments what it would produce or do, and
//! refuses the call past [`MAX_OUTPUT_BYTES`] of output, [`MAX_ELEMENTS`] list elements or
//! [`MAX_EDIT_CELLS`] steps of edit distance per batch.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{FunctionRegistry, SessionState};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// Most bytes one call may produce on one batch.
pub const MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;
/// Most list elements one call may produce on one batch.
pub const MAX_ELEMENTS: u64 = 8 * 1024 * 1024;
/// Most steps of edit distance (the product of the two lengths) one call may take on one
/// batch: about a tenth of a second.
pub const MAX_EDIT_CELLS: u64 = 100_000_000;

/// What a wrapped function's cost grows with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Cost {
    /// `repeat(text, n)`: the text's length times `n`.
    Repeat,
    /// `lpad`/`rpad(text, n [, fill])`: `n` characters of up to 4 bytes.
    Pad,
    /// `levenshtein(a, b)`: the product of the lengths.
    EditDistance,
    /// `replace(text, from, to)`: every `from` in the text becomes `to`.
    Replace,
    /// `regexp_replace(text, pattern, replacement [, flags])`: at worst every position of the
    /// text matches (an empty match) and becomes the replacement.
    RegexpReplace,
    /// `concat(...)`, `concat_ws(sep, ...)`: the sum of the lengths (the separator once per
    /// argument).
    Concat,
    /// `array_repeat(value, n)`, `array_resize(list, n [, value])`: `n` elements.
    Elements,
    /// `range`/`generate_series(start, stop [, step])`: `(stop - start) / step` elements.
    Range,
}

const CAPPED: &[(&str, Cost)] = &[
    ("repeat", Cost::Repeat),
    ("lpad", Cost::Pad),
    ("rpad", Cost::Pad),
    ("levenshtein", Cost::EditDistance),
    ("replace", Cost::Replace),
    ("regexp_replace", Cost::RegexpReplace),
    ("concat", Cost::Concat),
    ("concat_ws", Cost::Concat),
    ("array_repeat", Cost::Elements),
    ("array_resize", Cost::Elements),
    ("range", Cost::Range),
    ("generate_series", Cost::Range),
];

/// Replaces each function of [`CAPPED`] that `state` has by its capped form.
pub(crate) fn register(state: &mut SessionState) {
    for &(name, cost) in CAPPED {
        let Some(inner) = state.scalar_functions().get(name).cloned() else {
            continue;
        };
        let capped = ScalarUDF::new_from_impl(Capped {
            inner: inner.as_ref().clone(),
            cost,
        });
        state
            .register_udf(Arc::new(capped))
            .expect("registering a function does not fail");
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Capped {
    inner: ScalarUDF,
    cost: Cost,
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        check(self.name(), self.cost, &args.args, args.number_rows)?;
        self.inner.invoke_with_args(args)
    }
}

/// Refuses a call whose cost on `rows` rows passes its limit, naming the function and limit.
fn check(name: &str, cost: Cost, args: &[ColumnarValue], rows: usize) -> Result<()> {
    let rows = rows.max(1);
    let (total, limit, unit) = match cost {
        Cost::Repeat => (
            sum(rows, |i| Ok(length(args, 0, i)? * count(args, 1, i)?), args)?,
            MAX_OUTPUT_BYTES,
            "bytes",
        ),
        Cost::Pad => (
            sum(rows, |i| Ok(count(args, 1, i)? * 4), args)?,
            MAX_OUTPUT_BYTES,
            "bytes",
        ),
        Cost::EditDistance => (
            sum(
                rows,
                |i| Ok(length(args, 0, i)? * length(args, 1, i)?),
                args,
            )?,
            MAX_EDIT_CELLS,
            "steps",
        ),
        Cost::Replace => (
            sum(
                rows,
                |i| {
                    let text = length(args, 0, i)?;
                    let from = length(args, 1, i)?.max(1);
                    Ok(text + text / from * length(args, 2, i)?)
                },
                args,
            )?,
            MAX_OUTPUT_BYTES,
            "bytes",
        ),
        Cost::RegexpReplace => (
            sum(
                rows,
                |i| {
                    let text = length(args, 0, i)?;
                    Ok(text + (text + 1) * length(args, 2, i)?)
                },
                args,
            )?,
            MAX_OUTPUT_BYTES,
            "bytes",
        ),
        Cost::Concat => (
            sum(
                rows,
                |i| {
                    let mut total = 0u64;
                    for arg in 0..args.len() {
                        total = total.saturating_add(length(args, arg, i)?);
                    }
                    // concat_ws adds its separator between arguments: counted once each.
                    Ok(total.saturating_add(length(args, 0, i)?.saturating_mul(args.len() as u64)))
                },
                args,
            )?,
            MAX_OUTPUT_BYTES,
            "bytes",
        ),
        Cost::Elements => (
            sum(rows, |i| count(args, 1, i), args)?,
            MAX_ELEMENTS,
            "elements",
        ),
        Cost::Range => (
            sum(rows, |i| range_elements(args, i), args)?,
            MAX_ELEMENTS,
            "elements",
        ),
    };
    if total > limit {
        return Err(DataFusionError::Execution(format!(
            "{name} would produce or take {total} {unit} on one batch of rows, more than the \
             limit of {limit}: use smaller arguments"
        )));
    }
    Ok(())
}

/// `cost(i)` summed over the rows, computed once when every argument is a constant. Saturates.
fn sum(rows: usize, cost: impl Fn(usize) -> Result<u64>, args: &[ColumnarValue]) -> Result<u64> {
    if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        return Ok(cost(0)?.saturating_mul(rows as u64));
    }
    let mut total = 0u64;
    for i in 0..rows {
        total = total.saturating_add(cost(i)?);
    }
    Ok(total)
}

/// Argument `index` at row `i` as one value (a constant is the same at every row).
fn value(args: &[ColumnarValue], index: usize, i: usize) -> Result<Option<(ArrayRef, usize)>> {
    Ok(match args.get(index) {
        None => None,
        Some(ColumnarValue::Scalar(scalar)) => Some((scalar.to_array_of_size(1)?, 0)),
        Some(ColumnarValue::Array(array)) => Some((array.clone(), i)),
    })
}

/// The length in bytes of argument `index` at row `i` if it is text (or binary); 0 if it is
/// null, missing or of another type.
fn length(args: &[ColumnarValue], index: usize, i: usize) -> Result<u64> {
    // A constant's length without making an array of it at every row.
    if let Some(ColumnarValue::Scalar(scalar)) = args.get(index) {
        use datafusion::common::ScalarValue;
        return Ok(match scalar {
            ScalarValue::Utf8(Some(text))
            | ScalarValue::LargeUtf8(Some(text))
            | ScalarValue::Utf8View(Some(text)) => text.len(),
            ScalarValue::Binary(Some(bytes))
            | ScalarValue::LargeBinary(Some(bytes))
            | ScalarValue::BinaryView(Some(bytes)) => bytes.len(),
            _ => 0,
        } as u64);
    }
    let Some((array, at)) = value(args, index, i)? else {
        return Ok(0);
    };
    if array.is_null(at) {
        return Ok(0);
    }
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(at).len(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(at).len(),
        DataType::Utf8View => array.as_string_view().value(at).len(),
        DataType::Binary => array.as_binary::<i32>().value(at).len(),
        DataType::LargeBinary => array.as_binary::<i64>().value(at).len(),
        DataType::BinaryView => array.as_binary_view().value(at).len(),
        _ => 0,
    } as u64)
}

/// Argument `index` at row `i` as a count: an integer, negatives and nulls as 0.
fn count(args: &[ColumnarValue], index: usize, i: usize) -> Result<u64> {
    Ok(integer(args, index, i)?.map_or(0, |n| n.max(0) as u64))
}

fn integer(args: &[ColumnarValue], index: usize, i: usize) -> Result<Option<i64>> {
    let Some((array, at)) = value(args, index, i)? else {
        return Ok(None);
    };
    if !array.data_type().is_integer() {
        return Ok(None);
    }
    let array = arrow::compute::cast(&array.slice(at, 1), &DataType::Int64)?;
    let array = array.as_primitive::<Int64Type>();
    Ok((!array.is_null(0)).then(|| array.value(0)))
}

/// The elements `range(start, stop, step)` (or `range(stop)`, `range(start, stop)`) would
/// hold. Bounds that are not integers (dates, timestamps) are refused here: use the table
/// function `generate_series`, which streams.
fn range_elements(args: &[ColumnarValue], i: usize) -> Result<u64> {
    let mut bounds = Vec::with_capacity(args.len());
    for index in 0..args.len() {
        let data_type = args[index].data_type();
        if !(data_type.is_integer() || data_type == DataType::Null) {
            return Err(DataFusionError::Execution(
                "range and generate_series as functions take integer bounds here; for dates \
                 and times use the table function: SELECT * FROM generate_series(...)"
                    .to_owned(),
            ));
        }
        bounds.push(integer(args, index, i)?);
    }
    let (start, stop, step) = match bounds.as_slice() {
        [stop] => (Some(0), *stop, Some(1)),
        [start, stop] => (*start, *stop, Some(1)),
        [start, stop, step] => (*start, *stop, *step),
        _ => return Ok(0),
    };
    let (Some(start), Some(stop), Some(step)) = (start, stop, step) else {
        return Ok(0);
    };
    if step == 0 {
        return Ok(0);
    }
    let span = (i128::from(stop) - i128::from(start)) / i128::from(step);
    Ok(u64::try_from(span.max(0) + 1).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc as StdArc;

    use object_store::memory::InMemory;

    use crate::{QueryEngine, QueryLimits};

    async fn run(sql: &str) -> Result<String, String> {
        let engine = QueryEngine::new(StdArc::new(InMemory::new()), QueryLimits::default());
        engine
            .sql(Vec::new(), sql)
            .await
            .map(|output| output.to_json_rows().to_string())
            .map_err(|err| format!("{}: {err}", err.code()))
    }

    #[tokio::test]
    async fn calls_past_a_limit_are_refused_before_they_run() {
        for (sql, says) in [
            (
                "SELECT length(repeat('a', 500000000))",
                "repeat would produce",
            ),
            (
                "SELECT levenshtein(repeat('a', 180000), repeat('b', 180000))",
                "levenshtein would produce or take 32400000000 steps",
            ),
            ("SELECT lpad('x', 100000000)", "lpad would"),
            ("SELECT rpad('x', 100000000, 'ab')", "rpad would"),
            (
                "SELECT cardinality(array_repeat(1, 100000000))",
                "array_repeat would",
            ),
            ("SELECT cardinality(range(1, 10000000000))", "range would"),
            (
                "SELECT cardinality(generate_series(1, 10000000000, 2))",
                "generate_series would",
            ),
            (
                "SELECT length(replace(repeat('a', 1000000), 'a', repeat('b', 100)))",
                "replace would",
            ),
            (
                "SELECT length(regexp_replace(repeat('a', 1000000), 'x*', repeat('b', 100), 'g'))",
                "regexp_replace would",
            ),
            (
                "SELECT length(repeat('a', value)) FROM generate_series(100000, 110000)",
                "repeat would",
            ),
        ] {
            let err = match run(sql).await {
                Ok(answer) => panic!("{sql} answered {:.200}", answer),
                Err(err) => err,
            };
            assert!(err.starts_with("query_failed: "), "{sql}: {err}");
            assert!(err.contains(says), "{sql}: {err}");
        }
    }

    #[tokio::test]
    async fn ordinary_calls_still_answer() {
        for (sql, answer) in [
            ("SELECT repeat('ab', 3) AS v", r#"[{"v":"ababab"}]"#),
            ("SELECT lpad('7', 3, '0') AS v", r#"[{"v":"007"}]"#),
            (
                "SELECT levenshtein('kitten', 'sitting') AS v",
                r#"[{"v":3}]"#,
            ),
            (
                "SELECT replace('a-b-c', '-', '::') AS v",
                r#"[{"v":"a::b::c"}]"#,
            ),
            (
                "SELECT regexp_replace('id 42 and 7', '[0-9]+', '<N>', 'g') AS v",
                r#"[{"v":"id <N> and <N>"}]"#,
            ),
            ("SELECT concat_ws('-', 'a', 'b') AS v", r#"[{"v":"a-b"}]"#),
            ("SELECT cardinality(range(1, 1000)) AS v", r#"[{"v":999}]"#),
            ("SELECT array_repeat(1, 2) AS v", r#"[{"v":[1,1]}]"#),
            (
                "SELECT count(*) AS v FROM generate_series(1, 3) WHERE length(repeat('x', value)) > 1",
                r#"[{"v":2}]"#,
            ),
        ] {
            assert_eq!(run(sql).await.unwrap(), answer, "{sql}");
        }
    }
}
