//! Bounds on the `time` column read from a scan's pushed-down filters, used to prune segment
//! files by the catalog's min/max time before they are opened.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;
use sextant_store::TIME_COLUMN;

/// An inclusive range of nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeRange {
    pub start: i64,
    pub end: i64,
}

impl TimeRange {
    pub const ALL: TimeRange = TimeRange {
        start: i64::MIN,
        end: i64::MAX,
    };

    /// The bounds that `filters` (ANDed together, as DataFusion hands them to a scan) put on
    /// `time`. Only what is certain narrows the range: a filter this does not understand (an
    /// `OR`, a function of `time`, a comparison with a non-literal) leaves it as it is, so
    /// every row the filters keep lies inside the result.
    ///
    /// The filters are the simplified ones, so `now() - interval '1 hour'`,
    /// `to_timestamp('...')` and `'2026-01-01'::timestamp` arrive as timestamp literals.
    pub fn from_filters(filters: &[Expr]) -> TimeRange {
        let mut range = TimeRange::ALL;
        for filter in filters {
            range.narrow(filter);
        }
        range
    }

    /// Whether a file whose `time` values lie in `[min, max]` can hold a row in this range.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        min <= self.end && max >= self.start
    }

    fn narrow(&mut self, expr: &Expr) {
        match expr {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::And,
                right,
            }) => {
                self.narrow(left);
                self.narrow(right);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if is_time_column(left)
                    && let Some(value) = timestamp_nanos(right)
                {
                    self.apply(*op, value);
                } else if is_time_column(right)
                    && let Some(value) = timestamp_nanos(left)
                    && let Some(op) = op.swap()
                {
                    self.apply(op, value);
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_time_column(expr) => {
                if let Some(low) = timestamp_nanos(low) {
                    self.apply(Operator::GtEq, low);
                }
                if let Some(high) = timestamp_nanos(high) {
                    self.apply(Operator::LtEq, high);
                }
            }
            _ => {}
        }
    }

    /// Narrows to the rows where `time OP value` holds.
    fn apply(&mut self, op: Operator, value: i64) {
        match op {
            Operator::Eq => {
                self.start = self.start.max(value);
                self.end = self.end.min(value);
            }
            Operator::Gt => self.start = self.start.max(value.saturating_add(1)),
            Operator::GtEq => self.start = self.start.max(value),
            Operator::Lt => self.end = self.end.min(value.saturating_sub(1)),
            Operator::LtEq => self.end = self.end.min(value),
            _ => {}
        }
    }
}

/// `time` itself, or `time` cast to a nanosecond timestamp in UTC or without a zone (which
/// keeps its value).
fn is_time_column(expr: &Expr) -> bool {
    match expr {
        Expr::Column(column) => column.name == TIME_COLUMN,
        Expr::Cast(cast) => {
            keeps_nanos(cast.field.data_type())
                && matches!(&*cast.expr, Expr::Column(c) if c.name == TIME_COLUMN)
        }
        Expr::TryCast(cast) => {
            keeps_nanos(cast.field.data_type())
                && matches!(&*cast.expr, Expr::Column(c) if c.name == TIME_COLUMN)
        }
        _ => false,
    }
}

fn keeps_nanos(data_type: &DataType) -> bool {
    match data_type {
        DataType::Timestamp(TimeUnit::Nanosecond, None) => true,
        DataType::Timestamp(TimeUnit::Nanosecond, Some(zone)) => {
            matches!(zone.as_ref(), "UTC" | "utc" | "+00:00" | "Z" | "Etc/UTC")
        }
        _ => false,
    }
}

/// A timestamp literal as nanoseconds since the epoch (any unit; the stored value is UTC
/// whatever the zone says).
fn timestamp_nanos(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    fn ts(nanos: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(nanos),
            Some("UTC".into()),
        ))
    }

    fn check(filters: Vec<Expr>, expected: (i64, i64)) {
        let range = TimeRange::from_filters(&filters);
        assert_eq!((range.start, range.end), expected, "filters: {filters:?}");
    }

    #[test]
    fn comparisons_bound_the_range() {
        check(vec![col("time").gt_eq(ts(10))], (10, i64::MAX));
        check(vec![col("time").gt(ts(10))], (11, i64::MAX));
        check(vec![col("time").lt(ts(10))], (i64::MIN, 9));
        check(vec![col("time").lt_eq(ts(10))], (i64::MIN, 10));
        check(vec![col("time").eq(ts(10))], (10, 10));
        check(vec![ts(10).lt(col("time"))], (11, i64::MAX));
        check(vec![ts(10).gt_eq(col("time"))], (i64::MIN, 10));
    }

    #[test]
    fn conjunctions_and_between_intersect() {
        check(
            vec![col("time").gt_eq(ts(10)), col("time").lt(ts(20))],
            (10, 19),
        );
        check(
            vec![
                col("time")
                    .gt_eq(ts(10))
                    .and(col("time").lt(ts(20)).and(col("service").eq(lit("a")))),
            ],
            (10, 19),
        );
        check(vec![col("time").between(ts(10), ts(20))], (10, 20));
        check(
            vec![col("time").not_between(ts(10), ts(20))],
            (i64::MIN, i64::MAX),
        );
    }

    #[test]
    fn other_units_are_converted() {
        let seconds = lit(ScalarValue::TimestampSecond(Some(2), None));
        check(vec![col("time").gt_eq(seconds)], (2_000_000_000, i64::MAX));
        let millis = lit(ScalarValue::TimestampMillisecond(
            Some(3),
            Some("UTC".into()),
        ));
        check(vec![col("time").lt(millis)], (i64::MIN, 2_999_999));
    }

    #[test]
    fn what_is_not_understood_does_not_narrow() {
        let all = (i64::MIN, i64::MAX);
        check(vec![col("time").gt(ts(10)).or(col("time").lt(ts(5)))], all);
        check(vec![col("other").gt(ts(10))], all);
        check(vec![col("time").gt(col("other"))], all);
        check(vec![col("time").not_eq(ts(10))], all);
        check(
            vec![col("time").gt(lit(ScalarValue::TimestampNanosecond(None, None)))],
            all,
        );
        let to_seconds = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(col("time")),
            DataType::Timestamp(TimeUnit::Second, None),
        ));
        check(vec![to_seconds.gt(ts(10))], all);
    }

    #[test]
    fn casts_that_keep_the_value_still_bound() {
        let naive = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(col("time")),
            DataType::Timestamp(TimeUnit::Nanosecond, None),
        ));
        check(vec![naive.gt_eq(ts(10))], (10, i64::MAX));
    }

    #[test]
    fn overlap_is_inclusive() {
        let range = TimeRange { start: 10, end: 20 };
        assert!(range.overlaps(0, 10));
        assert!(range.overlaps(20, 30));
        assert!(range.overlaps(12, 13));
        assert!(!range.overlaps(0, 9));
        assert!(!range.overlaps(21, 30));
    }
}
