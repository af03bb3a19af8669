//! [`QueryEngine`]: read-only SQL over one tenant's tables, under [`QueryLimits`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider,
};
use datafusion::error::{DataFusionError, Result as DataFusionResult};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, MemoryReservation};
use datafusion::execution::object_store::{
    DefaultObjectStoreRegistry, ObjectStoreRegistry, ObjectStoreUrl,
};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionConfig;
use futures::StreamExt;
use sextant_store::TableSnapshot;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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

/// Query threads per core.
const THREADS_PER_CORE: usize = 4;

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
    /// Memory one query's operators (sorts, joins, aggregations) may hold, 512 MiB by default;
    /// past it the query fails (nothing spills to disk).
    pub max_memory_bytes: usize,
    /// Memory all running queries together may hold, 1 GiB by default.
    pub max_total_memory_bytes: usize,
    /// Queries of one tenant running at once, 2 by default; more wait their turn, within
    /// their timeout.
    pub max_concurrent_per_tenant: usize,
}

impl Default for QueryLimits {
    fn default() -> QueryLimits {
        QueryLimits {
            timeout: Duration::from_secs(30),
            max_rows: 100_000,
            max_scan_bytes: 10 * 1024 * 1024 * 1024,
            max_memory_bytes: 512 * 1024 * 1024,
            max_total_memory_bytes: 1024 * 1024 * 1024,
            max_concurrent_per_tenant: 2,
        }
    }
}

impl QueryLimits {
    pub fn validate(&self) -> Result<()> {
        let problem = if self.timeout.is_zero() {
            "`timeout` must be more than zero"
        } else if self.max_rows == 0 {
            "`max_rows` must be at least 1"
        } else if self.max_concurrent_per_tenant == 0 {
            "`max_concurrent_per_tenant` must be at least 1"
        } else if self.max_memory_bytes == 0 || self.max_memory_bytes > self.max_total_memory_bytes
        {
            "`max_memory_bytes` must be more than zero and at most `max_total_memory_bytes`"
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
    /// The segment store, for each query's own DataFusion runtime.
    registry: Arc<dyn ObjectStoreRegistry>,
    /// What all queries' operators hold; each query also has its own share.
    memory: Arc<dyn MemoryPool>,
    /// Each tenant's turns to run.
    turns: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A tenant's turn to run a query, from [`QueryEngine::admit`]; the next waiting query of the
/// tenant runs when it is dropped.
#[derive(Debug)]
struct Turn(#[allow(dead_code)] OwnedSemaphorePermit);

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
        // More threads than cores: an operator that computes for long inside one batch holds
        // its thread, and the operating system then shares the cores between it and the other
        // threads, so other tenants' queries still run (see [`QueryLimits::max_concurrent_per_tenant`]).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads * THREADS_PER_CORE)
            .thread_name("sextant-query")
            .thread_stack_size(QUERY_THREAD_STACK_BYTES)
            .enable_all()
            .build()
            .inspect_err(|err| {
                tracing::warn!(%err, "no query runtime; queries share the caller's runtime");
            })
            .ok();
        let registry = segment_registry(segments);
        QueryEngine {
            template: Arc::new(session_template(registry.clone(), threads)),
            memory: Arc::new(GreedyMemoryPool::new(limits.max_total_memory_bytes)),
            limits,
            indexes: Arc::new(TokenIndexCache::new(DEFAULT_CACHE_BYTES)),
            runtime,
            registry,
            turns: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for `tenant`'s turn to run a query: at most
    /// [`QueryLimits::max_concurrent_per_tenant`] of its queries run at once, the others wait in
    /// order of arrival. Past the query timeout the wait fails as [`Error::Timeout`].
    async fn admit(&self, tenant: &str) -> Result<Turn> {
        let turns = {
            let mut all = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            all.entry(tenant.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.limits.max_concurrent_per_tenant)))
                .clone()
        };
        let limit = self.limits.timeout;
        match tokio::time::timeout(limit, turns.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Turn(permit)),
            Ok(Err(_)) => Err(Error::internal("the query turns were closed")),
            Err(_) => Err(Error::Timeout { limit }),
        }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Runs `sql` over the given tables (one [`TableSnapshot`] per table name: `logs`, `spans`,
    /// `metrics`) and returns the result, cut at `max_rows`.
    pub async fn sql(&self, tables: Vec<TableSnapshot>, sql: &str) -> Result<QueryOutput> {
        let max_rows = self.limits.max_rows;
        self.spawn(None, tables, sql, move |state, sql| {
            run(state, sql, max_rows)
        })
        .await
    }

    /// [`QueryEngine::sql`] in one of `tenant`'s turns ([`QueryEngine::admit`]): what queries
    /// on behalf of a tenant use, so that its heavy queries wait for each other, not for
    /// another tenant's.
    pub async fn sql_for(
        &self,
        tenant: &str,
        tables: Vec<TableSnapshot>,
        sql: &str,
    ) -> Result<QueryOutput> {
        let turn = self.admit(tenant).await?;
        let max_rows = self.limits.max_rows;
        self.spawn(Some(turn), tables, sql, move |state, sql| {
            run(state, sql, max_rows)
        })
        .await
    }

    /// Runs `sql` in one of `tenant`'s turns ([`QueryEngine::admit`]) and hands each result
    /// batch to `visit` as it comes, without the row limit: for answers reduced while they
    /// stream (a metric range of millions of points), so no result is held whole. An error from
    /// `visit` stops the query and is returned as [`Error::ResultTooLarge`].
    pub async fn fold_for<A, F>(
        &self,
        tenant: &str,
        tables: Vec<TableSnapshot>,
        sql: &str,
        init: A,
        visit: F,
    ) -> Result<A>
    where
        A: Send + 'static,
        F: FnMut(&mut A, &RecordBatch) -> std::result::Result<(), String> + Send + 'static,
    {
        let turn = self.admit(tenant).await?;
        self.spawn(Some(turn), tables, sql, move |state, sql| {
            fold_batches(state, sql, init, visit)
        })
        .await
    }

    /// Runs `work` on the query runtime under the timeout, in a session over `tables`. The
    /// tenant's `turn` is held until the work has stopped, not only until the caller stops
    /// waiting: work that runs on past its timeout (inside a long batch) still counts.
    async fn spawn<T, W, Fut>(
        &self,
        turn: Option<Turn>,
        tables: Vec<TableSnapshot>,
        sql: &str,
        work: W,
    ) -> Result<T>
    where
        T: Send + 'static,
        W: FnOnce(SessionState, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let limit = self.limits.timeout;
        let template = self.template.clone();
        let limits = self.limits.clone();
        let indexes = self.indexes.clone();
        let runtime_env = self.runtime_env()?;
        let sql = sql.to_owned();
        // Everything, even cloning the session, happens on the query runtime.
        let query = async move {
            let _turn = turn;
            let state = session(&template, runtime_env, &limits, &indexes, tables)?;
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
            Ok(Ok(result)) => result.map_err(|err| out_of_memory(err, &self.limits)),
            Ok(Err(err)) => Err(Error::internal(format!("query task failed: {err}"))),
            Err(_) => Err(Error::Timeout { limit }),
        }
    }
}

impl QueryEngine {
    /// One query's DataFusion runtime: the segment store, a memory pool of its own within the
    /// engine's, and no disk to spill to.
    fn runtime_env(&self) -> Result<Arc<RuntimeEnv>> {
        let pool = QueryPool {
            shared: self.memory.clone(),
            limit: self.limits.max_memory_bytes,
            held: AtomicUsize::new(0),
        };
        RuntimeEnvBuilder::new()
            .with_object_store_registry(self.registry.clone())
            .with_memory_pool(Arc::new(pool))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|err| Error::internal(err.to_string()))
    }
}

/// One query's memory: at most `limit` bytes of its own, and only while the engine's pool
/// (shared by all queries) has them.
#[derive(Debug)]
struct QueryPool {
    shared: Arc<dyn MemoryPool>,
    limit: usize,
    held: AtomicUsize,
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "query memory: {} of {} bytes",
            self.reserved(),
            self.limit
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "sextant_query"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.held.fetch_add(additional, Ordering::Relaxed);
        self.shared.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.held.fetch_sub(shrink, Ordering::Relaxed);
        self.shared.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DataFusionResult<()> {
        let held = self.held.fetch_add(additional, Ordering::Relaxed);
        if held + additional > self.limit {
            self.held.fetch_sub(additional, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the query needs more than its memory limit of {} MiB (`query.max_memory_bytes`)",
                self.limit / (1024 * 1024)
            )));
        }
        if let Err(err) = self.shared.try_grow(reservation, additional) {
            self.held.fetch_sub(additional, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the running queries hold all the memory queries may use \
                 (`query.max_total_memory_bytes`): {}",
                err.message()
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// A query that ran out of its memory says so and names the setting, whichever operator ran
/// out (one that would spill to disk reports that it may not).
fn out_of_memory(err: Error, limits: &QueryLimits) -> Error {
    match err {
        Error::Execution { message }
            if message.contains("Resources exhausted")
                || message.contains("DiskManager is disabled") =>
        {
            Error::Execution {
                message: format!(
                    "the query needs more memory than its limit of {} MiB \
                     (`query.max_memory_bytes`), or than the running queries leave \
                     (`query.max_total_memory_bytes`): aggregate or filter more ({message})",
                    limits.max_memory_bytes / (1024 * 1024)
                ),
            }
        }
        err => err,
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
    runtime_env: Arc<RuntimeEnv>,
    limits: &QueryLimits,
    indexes: &Arc<TokenIndexCache>,
    tables: Vec<TableSnapshot>,
) -> Result<SessionState> {
    let mut state = SessionStateBuilder::new_from_existing(template.clone())
        .with_runtime_env(runtime_env)
        .build();
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

/// The object stores a query can reach: the segment store only.
fn segment_registry(segments: Arc<dyn object_store::ObjectStore>) -> Arc<dyn ObjectStoreRegistry> {
    let segments_url = ObjectStoreUrl::parse(SEGMENTS_URL).expect("SEGMENTS_URL is a valid URL");
    // The default registry serves `file://`; only the segment store stays.
    let registry = DefaultObjectStoreRegistry::new();
    let _ = registry.deregister_store(ObjectStoreUrl::local_filesystem().as_ref());
    registry.register_store(segments_url.as_ref(), segments);
    Arc::new(registry)
}

/// The session every query starts from: DataFusion's functions, no tables, no way out. Each
/// query runs it with a runtime of its own ([`QueryEngine::runtime_env`]).
fn session_template(registry: Arc<dyn ObjectStoreRegistry>, partitions: usize) -> SessionState {
    let runtime_env = RuntimeEnvBuilder::new()
        .with_object_store_registry(registry)
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
    crate::capped::register(&mut state);
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
                let code = err.code().as_str();
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

    #[tokio::test]
    async fn a_query_past_its_memory_fails_and_gives_it_back() {
        let limits = QueryLimits {
            max_memory_bytes: 32 * 1024 * 1024,
            max_total_memory_bytes: 64 * 1024 * 1024,
            ..QueryLimits::default()
        };
        let engine = QueryEngine::new(Arc::new(InMemory::new()), limits);
        let err = engine
            .sql(
                Vec::new(),
                "SELECT cardinality(array_agg(value)) FROM generate_series(1, 20000000)",
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "query_failed", "{err}");
        assert!(err.to_string().contains("limit of 32 MiB"), "{err}");
        // The query's other partitions end at their next yield after the error.
        wait_until_idle(&engine).await;
        assert_eq!(
            engine.memory.reserved(),
            0,
            "memory held after the query ended"
        );
        let output = engine
            .sql(
                Vec::new(),
                "SELECT count(DISTINCT value % 1000) AS n FROM generate_series(1, 100000)",
            )
            .await
            .unwrap();
        assert_eq!(output.to_json_rows(), serde_json::json!([{"n": 1000}]));
    }

    #[tokio::test]
    async fn a_tenants_queries_take_turns_and_others_do_not_wait() {
        let limits = QueryLimits {
            timeout: Duration::from_millis(300),
            max_concurrent_per_tenant: 1,
            ..QueryLimits::default()
        };
        let engine = QueryEngine::new(Arc::new(InMemory::new()), limits);
        let first = engine.admit("busy").await.unwrap();
        let waited = engine.admit("busy").await.unwrap_err();
        assert_eq!(waited.code(), "timeout");
        let other = tokio::time::timeout(Duration::from_millis(50), engine.admit("calm")).await;
        assert!(matches!(other, Ok(Ok(_))), "another tenant waited");
        let next = engine.admit("busy");
        drop(first);
        tokio::time::timeout(Duration::from_millis(50), next)
            .await
            .unwrap()
            .unwrap();
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
