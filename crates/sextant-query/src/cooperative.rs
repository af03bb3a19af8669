//! A physical optimizer rule that makes joins give the thread back, so a timed-out query stops.
//!
//! A query past its timeout is dropped, and its tasks end at their next yield. DataFusion's
//! sources yield through Tokio's cooperative budget, but a join that emits from rows it already
//! holds (a cross join of two generated series, say) can run for seconds inside one poll,
//! keeping the query's threads after it was dropped. Wrapping each join in
//! [`CooperativeExec`] charges the budget for every batch it emits, so it yields as often as a
//! source does.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result as DataFusionResult;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::union::UnionExec;

#[derive(Debug, Default)]
pub(crate) struct YieldingJoins;

impl PhysicalOptimizerRule for YieldingJoins {
    fn name(&self) -> &str {
        "sextant_yielding_joins"
    }

    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            // Every operator with two inputs but a union (which only passes batches on) is a join.
            if node.children().len() < 2 || node.is::<UnionExec>() {
                return Ok(Transformed::no(node));
            }
            let wrapped: Arc<dyn ExecutionPlan> = Arc::new(CooperativeExec::new(node));
            Ok(Transformed::yes(wrapped))
        })
        .map(|transformed| transformed.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}
