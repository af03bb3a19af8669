//! [`QueryEngine`]: read-only SQL over one tenant's tables, under [`QueryLimits`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider,
};
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::execution::object_store::{
    DefaultObjectStoreRegistry, ObjectStoreRegistry, ObjectStoreUrl,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionConfig;
use futures::StreamExt;
use sextant_store::TableSnapshot;
use tokio::runtime::{Handle, Runtime};
use tokio::task::AbortHandle;

use crate::complexity;
use crate::cooperative::YieldingJoins;
use crate::error::{Error, Result};
use crate::index_cache::{DEFAULT_CACHE_BYTES, TokenIndexCache};
use crate::output::QueryOutput;
use crate::read_only;
use crate::table::{ScanBudget, SnapshotTable};

/// Where the segment object store is registered; no other store is, so no query can name a
/// local file or a URL.
const SEGMENTS_URL: &str = "sextant://segments/";

/// The table functions a query may call: they generate rows and read nothing.
const ALLOWED_TABLE_FUNCTIONS: &[&str] = &["generate_series", "range"];

/// Stack of each query thread. Planning recurses over a query's trees, which
/// [`complexity`]'s limits keep shallow; the room left is for dropping the longest tree the
/// text limit lets through (a `1+1+...` chain of [`complexity::MAX_SQL_BYTES`] / 2 terms),
/// which recurses once per level. The pages are only mapped as they are used.
const QUERY_THREAD_STACK_BYTES: usize = 32 * 1024 * 1024;

/// What one query may cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// Wall-clock time for planning and running a query, 30 s by default.
    pub timeout: Duration,
    /// Rows returned at most, 100 000 by default; a longer result is cut and marked truncated.
    pub max_rows: usize,
    /// Bytes of segment files a query may read after pruning, 10 GiB by default; a query over
    /// more is refused before it starts.
    pub max_scan_bytes: u64,
}

impl Default for QueryLimits {
    fn default() -> QueryLimits {
        QueryLimits {
            timeout: Duration::from_secs(30),
            max_rows: 100_000,
            max_scan_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

impl QueryLimits {
    pub fn validate(&self) -> Result<()> {
        let problem = if self.timeout.is_zero() {
            "`timeout` must be more than zero"
        } else if self.max_rows == 0 {
            "`max_rows` must be at least 1"
        } else {
            return Ok(());
        };
        Err(Error::InvalidLimits {
            message: problem.to_owned(),
        })
    }
}

/// Runs read-only SQL over a tenant's [`TableSnapshot`]s.
///
/// Queries run on the engine's own Tokio runtime (one worker per core), so a heavy query never
/// holds up the caller's runtime, and a query past its timeout is dropped there.
pub struct QueryEngine {
    /// Functions, options and the DataFusion runtime (object store, caches, memory pool), cloned
    /// for each query with only that query's tables in its catalog.
    template: Arc<SessionState>,
    limits: QueryLimits,
    /// Token indexes of log segments, shared by all queries.
    indexes: Arc<TokenIndexCache>,
    /// `None` if the runtime could not be started: queries then run on the caller's runtime.
    runtime: Option<Runtime>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// `segments` holds the Parquet files that [`sextant_store::SegmentFile::path`] names.
    pub fn new(segments: Arc<dyn object_store::ObjectStore>, limits: QueryLimits) -> QueryEngine {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sextant-query")
            .thread_stack_size(QUERY_THREAD_STACK_BYTES)
            .enable_all()
            .build()
            .inspect_err(|err| {
                tracing::warn!(%err, "no query runtime; queries share the caller's runtime");
            })
            .ok();
        QueryEngine {
            template: Arc::new(session_template(segments, threads)),
            limits,
            indexes: Arc::new(TokenIndexCache::new(DEFAULT_CACHE_BYTES)),
            runtime,
        }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Runs `sql` over the given tables (one [`TableSnapshot`] per table name: `logs`, `spans`,
    /// `metrics`) and returns the result, cut at `max_rows`.
    pub async fn sql(&self, tables: Vec<TableSnapshot>, sql: &str) -> Result<QueryOutput> {
        let max_rows = self.limits.max_rows;
        self.spawn(tables, sql, move |state, sql| run(state, sql, max_rows))
            .await
    }

    /// Runs `sql` and hands each result batch to `visit` as it comes, without the row limit:
    /// for answers reduced while they stream (a metric range of millions of points), so no
    /// result is held whole. An error from `visit` stops the query and is returned as
    /// [`Error::ResultTooLarge`].
    pub async fn fold<A, F>(
        &self,
        tables: Vec<TableSnapshot>,
        sql: &str,
        init: A,
        visit: F,
    ) -> Result<A>
    where
        A: Send + 'static,
        F: FnMut(&mut A, &RecordBatch) -> std::result::Result<(), String> + Send + 'static,
    {
        self.spawn(tables, sql, move |state, sql| {
            fold_batches(state, sql, init, visit)
        })
        .await
    }

    /// Runs `work` on the query runtime under the timeout, in a session over `tables`.
    async fn spawn<T, W, Fut>(&self, tables: Vec<TableSnapshot>, sql: &str, work: W) -> Result<T>
    where
        T: Send + 'static,
        W: FnOnce(SessionState, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let limit = self.limits.timeout;
        let template = self.template.clone();
        let limits = self.limits.clone();
        let indexes = self.indexes.clone();
        let sql = sql.to_owned();
        // Everything, even cloning the session, happens on the query runtime.
        let query = async move {
            let state = session(&template, &limits, &indexes, tables)?;
            work(state, sql).await
        };
        let task = match &self.runtime {
            Some(runtime) => runtime.spawn(query),
            None => Handle::current().spawn(query),
        };
        // Past the timeout, or when the caller stops waiting, the query is dropped: its
        // partitions stop at their next yield.
        let _abort = AbortOnDrop(task.abort_handle());
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => Err(Error::internal(format!("query task failed: {err}"))),
            Err(_) => Err(Error::Timeout { limit }),
        }
    }
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for QueryEngine {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which Tokio forbids inside async code: let it wind down.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A session whose catalog holds only `tables`.
fn session(
    template: &SessionState,
    limits: &QueryLimits,
    indexes: &Arc<TokenIndexCache>,
    tables: Vec<TableSnapshot>,
) -> Result<SessionState> {
    let mut state = template.clone();
    let options = state.config().options();
    let catalog_name = options.catalog.default_catalog.clone();
    let schema_name = options.catalog.default_schema.clone();
    let partitions = state.config().target_partitions();

    let budget = Arc::new(ScanBudget::new(limits.max_scan_bytes));
    let segments_url =
        ObjectStoreUrl::parse(SEGMENTS_URL).map_err(|err| Error::internal(err.to_string()))?;
    let schema = MemorySchemaProvider::new();
    for snapshot in tables {
        let name = snapshot.table.as_str();
        let table = SnapshotTable::new(
            snapshot,
            segments_url.clone(),
            budget.clone(),
            indexes.clone(),
            partitions,
        )?;
        if schema
            .register_table(name.to_owned(), Arc::new(table))?
            .is_some()
        {
            return Err(Error::internal(format!("table `{name}` given twice")));
        }
    }
    let catalog = MemoryCatalogProvider::new();
    catalog.register_schema(&schema_name, Arc::new(schema))?;
    let catalogs = MemoryCatalogProviderList::new();
    catalogs.register_catalog(catalog_name, Arc::new(catalog));
    state.register_catalog_list(Arc::new(catalogs));
    // `now()` is the moment the query starts.
    state.mark_start_execution();
    Ok(state)
}

/// Parses `sql`, checks that it only reads, and plans it.
async fn plan(state: &SessionState, sql: &str) -> Result<LogicalPlan> {
    complexity::check_text(sql)?;
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state
        .sql_to_statement(sql, &dialect)
        .map_err(|err| match err {
            DataFusionError::NotImplemented(message)
                if message.contains("single SQL statement") =>
            {
                Error::InvalidSql {
                    message: "only one statement per query is supported".to_owned(),
                }
            }
            err => Error::from(err),
        })?;
    read_only::check_statement(&statement, sql)?;
    if let Some(statement) = read_only::inner_statement(&statement) {
        complexity::check_statement(statement)?;
    }
    let plan = state.statement_to_plan(statement).await?;
    read_only::check_plan(&plan)?;
    Ok(plan)
}

/// Plans and runs `sql`, handing every batch to `visit`.
async fn fold_batches<A, F>(state: SessionState, sql: String, mut acc: A, mut visit: F) -> Result<A>
where
    F: FnMut(&mut A, &RecordBatch) -> std::result::Result<(), String>,
{
    let plan = plan(&state, &sql).await?;
    let physical = state.create_physical_plan(&plan).await?;
    let mut stream = execute_stream(physical, state.task_ctx())?;
    while let Some(batch) = stream.next().await {
        visit(&mut acc, &batch?).map_err(|message| Error::ResultTooLarge { message })?;
    }
    Ok(acc)
}

/// Plans and runs one query, collecting at most `max_rows` rows.
async fn run(state: SessionState, sql: String, max_rows: usize) -> Result<QueryOutput> {
    let plan = plan(&state, &sql).await?;
    // One row past the limit tells a cut result from one that fits; with the limit in the
    // plan, DataFusion stops early too (a sort becomes a top-k).
    let plan = match plan {
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) | LogicalPlan::DescribeTable(_) => plan,
        plan => LogicalPlanBuilder::from(plan)
            .limit(0, Some(max_rows.saturating_add(1)))?
            .build()?,
    };
    // Scans are planned here: a scan too large is refused before anything is read.
    let physical = state.create_physical_plan(&plan).await?;
    let schema = physical.schema();
    let mut stream = execute_stream(physical, state.task_ctx())?;

    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut rows = 0usize;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        if rows == max_rows {
            truncated = true;
            break;
        }
        let take = batch.num_rows().min(max_rows - rows);
        rows += take;
        if take < batch.num_rows() {
            batches.push(batch.slice(0, take));
            truncated = true;
            break;
        }
        batches.push(batch);
    }
    Ok(QueryOutput {
        schema,
        batches,
        truncated,
    })
}

/// The session every query starts from: DataFusion's functions, no tables, no way out.
fn session_template(
    segments: Arc<dyn object_store::ObjectStore>,
    partitions: usize,
) -> SessionState {
    let segments_url = ObjectStoreUrl::parse(SEGMENTS_URL).expect("SEGMENTS_URL is a valid URL");
    // The default registry serves `file://`; only the segment store stays.
    let registry = DefaultObjectStoreRegistry::new();
    let _ = registry.deregister_store(ObjectStoreUrl::local_filesystem().as_ref());
    registry.register_store(segments_url.as_ref(), segments);
    let runtime_env = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(registry))
        .build_arc()
        .expect("the default DataFusion runtime builds");

    let mut config = SessionConfig::new()
        .with_target_partitions(partitions.max(1))
        .with_information_schema(false)
        .with_create_default_catalog_and_schema(false);
    // Parquet: prune row groups and pages by the statistics the segment writer keeps.
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.enable_page_index = true;
    parquet.pruning = true;

    let mut builder = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime_env)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(YieldingJoins));
    // No `CREATE EXTERNAL TABLE` factories, and only table functions that read nothing.
    *builder.table_factories() = Some(HashMap::new());
    if let Some(functions) = builder.table_functions() {
        functions.retain(|name, _| ALLOWED_TABLE_FUNCTIONS.contains(&name.as_str()));
    }
    let mut state = builder.build();
    state
        .register_udf(crate::word_match::udf())
        .expect("registering a function does not fail");
    state
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    /// Holds both query threads for minutes unless it is dropped.
    const HEAVY: &str = "SELECT max(a.value * b.value) FROM generate_series(1, 1000000) a \
                         CROSS JOIN generate_series(1, 1000000) b";

    async fn wait_until_idle(engine: &QueryEngine) {
        let metrics = engine.runtime.as_ref().unwrap().metrics();
        for _ in 0..50 {
            if metrics.num_alive_tasks() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("a dropped query is still running");
    }

    #[tokio::test]
    async fn dropped_queries_stop_running() {
        let limits = QueryLimits {
            timeout: Duration::from_millis(200),
            ..QueryLimits::default()
        };
        let engine = QueryEngine::new(Arc::new(InMemory::new()), limits);

        let err = engine.sql(Vec::new(), HEAVY).await.unwrap_err();
        assert_eq!(err.code(), "timeout");
        wait_until_idle(&engine).await;

        let caller_gave_up =
            tokio::time::timeout(Duration::from_millis(50), engine.sql(Vec::new(), HEAVY));
        assert!(caller_gave_up.await.is_err());
        wait_until_idle(&engine).await;
    }

    /// A query of `size` repetitions of one construct: chained, nested or listed.
    fn shaped_query(construct: usize, size: usize) -> String {
        let repeat = |text: &str| text.repeat(size);
        let chain = |term: &str, operator: &str| vec![term; size].join(operator);
        match construct {
            0 => format!("SELECT {}", chain("1", "+")),
            1 => format!("SELECT 1 WHERE {}", chain("true", " AND ")),
            2 => format!("SELECT {}", chain("'a'", " || ")),
            3 => format!("SELECT {}1{}", repeat("("), repeat(")")),
            4 => format!("SELECT {}1{}", repeat("abs("), repeat(")")),
            5 => format!(
                "SELECT {}1{}",
                repeat("CASE WHEN true THEN "),
                repeat(" END")
            ),
            6 => format!("SELECT {}true", repeat("NOT ")),
            7 => format!("SELECT 1{}", repeat("::BIGINT")),
            8 => format!("SELECT {}", chain("1 IS NULL", " OR ")),
            9 => chain("SELECT 1", " UNION ALL "),
            10 => format!("SELECT {}1{}", repeat("(SELECT "), repeat(")")),
            11 => format!("SELECT 1 IN ({})", chain("1", ", ")),
            12 => format!("SELECT {}1{}", repeat("["), repeat("]")),
            13 => format!("SELECT coalesce({})", chain("1", ", ")),
            14 => format!(
                "SELECT * FROM {}",
                chain("generate_series(1, 2)", " CROSS JOIN ")
            ),
            15 => format!("SELECT {}1", repeat("- ")),
            _ => format!("SELECT 1 WHERE 1 IN ({})", chain("SELECT 1", " UNION ")),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Deep and wide queries of every shape are answered or refused with a client error;
        /// none takes the process down.
        #[test]
        fn no_query_shape_crashes_the_engine(construct in 0usize..17, exponent in 0u32..=15) {
            let size = 1usize << exponent;
            let sql = shaped_query(construct, size);
            let limits = QueryLimits { timeout: Duration::from_secs(20), ..QueryLimits::default() };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let result = runtime.block_on(async {
                let engine = QueryEngine::new(Arc::new(InMemory::new()), limits);
                engine.sql(Vec::new(), &sql).await
            });
            if let Err(err) = result {
                let code = err.code();
                proptest::prop_assert!(
                    matches!(code, "invalid_sql" | "query_too_complex" | "query_failed" | "timeout"),
                    "construct {construct} x {size}: {code}: {err}"
                );
            }
        }
    }

    #[tokio::test]
    async fn the_longest_chains_are_refused_by_name() {
        let engine = QueryEngine::new(Arc::new(InMemory::new()), QueryLimits::default());
        let terms = (complexity::MAX_SQL_BYTES - "SELECT ".len()) / 2;
        let sql = format!("SELECT {}", vec!["1"; terms].join("+"));
        let err = engine.sql(Vec::new(), &sql).await.unwrap_err();
        assert_eq!(err.code(), "query_too_complex", "{err}");
        assert!(err.to_string().contains("nested more than"), "{err}");
        let one_short = "1+".repeat(60);
        let output = engine
            .sql(Vec::new(), &format!("SELECT {one_short}1 AS n"))
            .await
            .unwrap();
        assert_eq!(output.to_json_rows(), serde_json::json!([{"n": 61}]));
    }

    #[test]
    fn default_limits_are_valid_and_zero_ones_are_not() {
        assert!(QueryLimits::default().validate().is_ok());
        let no_time = QueryLimits {
            timeout: Duration::ZERO,
            ..QueryLimits::default()
        };
        assert_eq!(no_time.validate().unwrap_err().code(), "invalid_limits");
        let no_rows = QueryLimits {
            max_rows: 0,
            ..QueryLimits::default()
        };
        assert!(no_rows.validate().is_err());
    }
}
