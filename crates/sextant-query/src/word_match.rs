//! The SQL function `word_match(text, words)`: true when `text` contains `words` (a word or a
//! phrase) as whole tokens, ignoring ASCII case. It is what log search runs, and on the `body`
//! of `logs` the segments' token index lets a scan skip the blocks that cannot match.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use sextant_store::token_index::WordMatcher;

/// The function's name in SQL.
pub const NAME: &str = "word_match";

pub fn udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::from(WordMatch {
        signature: Signature::string(2, Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct WordMatch {
    signature: Signature,
}

impl ScalarUDFImpl for WordMatch {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text, words] = args.args.as_slice() else {
            return exec_err!("{NAME} takes two arguments: a text and the words to find in it");
        };
        let rows = args.number_rows;
        if let ColumnarValue::Scalar(words) = words {
            let Some(words) = scalar_text(words)? else {
                return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
            };
            let mut matcher = WordMatcher::new(&words);
            return match text {
                ColumnarValue::Scalar(text) => Ok(ColumnarValue::Scalar(ScalarValue::Boolean(
                    scalar_text(text)?.map(|text| matcher.matches(&text)),
                ))),
                ColumnarValue::Array(texts) => {
                    let texts = utf8(texts)?;
                    let texts = texts.as_any().downcast_ref::<StringArray>().expect("utf8");
                    let result: BooleanArray = texts
                        .iter()
                        .map(|text| text.map(|text| matcher.matches(text)))
                        .collect();
                    Ok(ColumnarValue::Array(Arc::new(result)))
                }
            };
        }
        // Words that differ by row: one matcher per row.
        let texts = utf8(&text.to_array(rows)?)?;
        let words = utf8(&words.to_array(rows)?)?;
        let texts = texts.as_any().downcast_ref::<StringArray>().expect("utf8");
        let words = words.as_any().downcast_ref::<StringArray>().expect("utf8");
        let result: BooleanArray = texts
            .iter()
            .zip(words.iter())
            .map(|(text, words)| Some(WordMatcher::new(words?).matches(text?)))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(result)))
    }
}

fn utf8(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(arrow::compute::cast(array, &DataType::Utf8)?)
}

fn scalar_text(value: &ScalarValue) -> Result<Option<String>> {
    match value.cast_to(&DataType::Utf8)? {
        ScalarValue::Utf8(text) => Ok(text),
        other => exec_err!("{NAME} needs text, not {}", other.data_type()),
    }
}

/// The words that every row a scan returns must contain in `column`: the literal second
/// arguments of `word_match(column, '...')` filters that hold on their own (not under `NOT` or
/// `OR`).
pub(crate) fn required_words<'a>(filters: &'a [Expr], column: &str) -> Vec<&'a str> {
    let mut words = Vec::new();
    for filter in filters {
        for conjunct in split_conjunction(filter) {
            let Expr::ScalarFunction(call) = conjunct else {
                continue;
            };
            if call.func.name() != NAME {
                continue;
            }
            if let [Expr::Column(target), Expr::Literal(value, _)] = call.args.as_slice()
                && target.name == column
                && let ScalarValue::Utf8(Some(text))
                | ScalarValue::Utf8View(Some(text))
                | ScalarValue::LargeUtf8(Some(text)) = value
            {
                words.push(text.as_str());
            }
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use std::ops::Not;

    use datafusion::prelude::{col, lit};

    use super::*;

    #[test]
    fn only_words_every_row_must_contain_are_required() {
        let call = |column: &str, word: &str| udf().call(vec![col(column), lit(word)]);
        let filters = vec![
            call("body", "timeout").and(col("service").eq(lit("api"))),
            call("body", "db"),
            call("body", "maybe").or(call("body", "perhaps")),
            call("body", "excluded").not(),
            call("service", "other column"),
        ];
        assert_eq!(required_words(&filters, "body"), ["timeout", "db"]);
    }
}
