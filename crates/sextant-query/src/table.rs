//! [`SnapshotTable`]: a tenant's table as DataFusion sees it, the union of its pruned Parquet
//! segments and its unflushed rows. Files are pruned by the catalog's time ranges, then, for
//! `word_match(body, '...')` filters, by the segments' token indexes (down to blocks of rows).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::project_schema;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DataFusionResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use futures::StreamExt;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use sextant_store::token_index::{TokenIndex, token_hashes};
use sextant_store::{SegmentFile, TableSnapshot};

use crate::error::Error;
use crate::index_cache::TokenIndexCache;
use crate::time_range::TimeRange;
use crate::word_match::required_words;

/// The column whose words the segments' token index knows.
const INDEXED_COLUMN: &str = "body";
/// Token indexes read at once while planning a scan.
const INDEX_READS: usize = 8;

/// The bytes of segment files one query may read, shared by all its table scans. Scans are
/// planned before anything executes, so a refusal here comes before any data is read.
#[derive(Debug)]
pub(crate) struct ScanBudget {
    limit: u64,
    planned: AtomicU64,
}

impl ScanBudget {
    pub fn new(limit: u64) -> ScanBudget {
        ScanBudget {
            limit,
            planned: AtomicU64::new(0),
        }
    }

    /// Adds `bytes` to what the query will read, or refuses once the total passes the limit.
    fn charge(&self, bytes: u64) -> Result<(), Error> {
        let total = self
            .planned
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        if total > self.limit {
            return Err(Error::ScanTooLarge {
                bytes: total,
                limit: self.limit,
            });
        }
        Ok(())
    }
}

/// One tenant's table in one query: the catalog's files (pruned by time in [`Self::scan`]) and
/// the rows not yet flushed.
#[derive(Debug)]
pub(crate) struct SnapshotTable {
    schema: SchemaRef,
    files: Vec<SegmentFile>,
    /// Partitions of unflushed rows, every batch in `schema`.
    buffered: Vec<Vec<RecordBatch>>,
    segments_url: ObjectStoreUrl,
    budget: Arc<ScanBudget>,
    indexes: Arc<TokenIndexCache>,
}

/// A file to scan, with the rows of it that may match when its token index narrowed them.
struct FileScan<'a> {
    file: &'a SegmentFile,
    rows: Option<RowSelection>,
}

impl SnapshotTable {
    /// Spreads the unflushed batches over `partitions` so they are scanned in parallel.
    pub fn new(
        snapshot: TableSnapshot,
        segments_url: ObjectStoreUrl,
        budget: Arc<ScanBudget>,
        indexes: Arc<TokenIndexCache>,
        partitions: usize,
    ) -> Result<SnapshotTable, Error> {
        let TableSnapshot {
            table,
            schema,
            files,
            buffered,
        } = snapshot;
        let partitions = partitions.clamp(1, buffered.len().max(1));
        let mut spread = vec![Vec::new(); partitions];
        for (index, batch) in buffered.into_iter().enumerate() {
            if batch.num_rows() == 0 {
                continue;
            }
            // A batch may carry different field metadata; its columns must still fit.
            let batch = if batch.schema() == schema {
                batch
            } else {
                batch.with_schema(schema.clone()).map_err(|err| {
                    Error::internal(format!(
                        "unflushed rows of `{table}` do not match the table's schema: {err}"
                    ))
                })?
            };
            spread[index % partitions].push(batch);
        }
        spread.retain(|partition| !partition.is_empty());
        Ok(SnapshotTable {
            schema,
            files,
            buffered: spread,
            segments_url,
            budget,
            indexes,
        })
    }

    /// The files that can hold rows the filters keep; with a `limit` and no filters, only as
    /// many as needed to produce `limit` rows after the unflushed ones.
    fn files_to_scan(&self, filters: &[Expr], limit: Option<usize>) -> Vec<&SegmentFile> {
        let range = TimeRange::from_filters(filters);
        let mut files: Vec<&SegmentFile> = self
            .files
            .iter()
            .filter(|file| range.overlaps(file.min_time, file.max_time))
            .collect();
        if let Some(limit) = limit
            && filters.is_empty()
        {
            let buffered_rows: usize = self
                .buffered
                .iter()
                .flatten()
                .map(RecordBatch::num_rows)
                .sum();
            let mut needed = (limit as u64).saturating_sub(buffered_rows as u64);
            files.retain(|file| {
                let keep = needed > 0;
                needed = needed.saturating_sub(file.rows);
                keep
            });
        }
        files
    }

    /// Drops the files, and selects the blocks of rows, that the token index rules out for the
    /// words the filters require. Files without an index are kept whole.
    async fn narrow_by_words<'a>(
        &self,
        state: &dyn Session,
        files: Vec<&'a SegmentFile>,
        filters: &[Expr],
    ) -> DataFusionResult<Vec<FileScan<'a>>> {
        let words = required_words(filters, INDEXED_COLUMN);
        let whole = |file| FileScan { file, rows: None };
        if words.is_empty() || files.is_empty() || self.schema.index_of(INDEXED_COLUMN).is_err() {
            return Ok(files.into_iter().map(whole).collect());
        }
        let mut hashes: Vec<u64> = words.iter().flat_map(|word| token_hashes(word)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        let store = state.runtime_env().object_store(&self.segments_url)?;
        let mut reads = Vec::with_capacity(files.len());
        for &file in &files {
            let (store, cache, file) = (store.clone(), self.indexes.clone(), file.clone());
            reads.push(async move { cache.get(&store, &file).await });
        }
        let indexes: Vec<_> = futures::stream::iter(reads)
            .buffered(INDEX_READS)
            .collect()
            .await;
        Ok(files
            .into_iter()
            .zip(indexes)
            .filter_map(|(file, index)| match index {
                None => Some(whole(file)),
                Some(index) => {
                    let rows = matching_rows(&index, &hashes)?;
                    Some(FileScan { file, rows })
                }
            })
            .collect())
    }

    async fn parquet_scan(
        &self,
        state: &dyn Session,
        files: Vec<FileScan<'_>>,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        // No predicate here: DataFusion's physical filter pushdown hands the filters kept above
        // the scan to the Parquet source, which prunes row groups and pages by them.
        let source = ParquetSource::new(self.schema.clone());
        // The catalog's `bytes` is the object's size, so no file is asked for it (a wrong size
        // makes the footer unreadable and fails the query).
        let partitioned_files: Vec<PartitionedFile> = files
            .into_iter()
            .map(|scan| {
                let file = PartitionedFile::new(scan.file.path.clone(), scan.file.bytes);
                match scan.rows {
                    Some(rows) => file.with_extension(ParquetRowSelection::new(rows)),
                    None => file,
                }
            })
            .collect();
        let file_groups =
            FileGroup::new(partitioned_files).split_files(state.config().target_partitions());
        let config = FileScanConfigBuilder::new(self.segments_url.clone(), Arc::new(source))
            .with_file_groups(file_groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        // ParquetFormat adds the session's Parquet options and the runtime's metadata cache.
        ParquetFormat::default()
            .with_options(state.table_options().parquet.clone())
            .create_physical_plan(state, config)
            .await
    }
}

/// The rows of a file that may hold all of `hashes`: `None` outside `Some` when no block can,
/// `Some(None)` when every block may (no selection needed).
fn matching_rows(index: &TokenIndex, hashes: &[u64]) -> Option<Option<RowSelection>> {
    let blocks = index.blocks_with_all(hashes);
    if !blocks.contains(&true) {
        return None;
    }
    if !blocks.contains(&false) {
        return Some(None);
    }
    let rows = index.rows() as usize;
    let mut selectors: Vec<RowSelector> = Vec::new();
    for (block, keep) in blocks.into_iter().enumerate() {
        let start = block * index.block_rows();
        let count = index.block_rows().min(rows - start);
        match selectors.last_mut() {
            Some(last) if last.skip != keep => last.row_count += count,
            _ if keep => selectors.push(RowSelector::select(count)),
            _ => selectors.push(RowSelector::skip(count)),
        }
    }
    Some(Some(RowSelection::from(selectors)))
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Every filter is offered to the scan for pruning, and still applied above it.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DataFusionResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        let files = self.files_to_scan(filters, limit);
        let files = self.narrow_by_words(state, files, filters).await?;
        let bytes = files.iter().map(|scan| scan.file.bytes).sum();
        self.budget
            .charge(bytes)
            .map_err(|err| DataFusionError::External(Box::new(err)))?;

        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::with_capacity(2);
        if !files.is_empty() {
            inputs.push(self.parquet_scan(state, files, projection, limit).await?);
        }
        if !self.buffered.is_empty() {
            let memory = MemorySourceConfig::try_new(
                &self.buffered,
                self.schema.clone(),
                projection.cloned(),
            )?
            .with_limit(limit);
            inputs.push(DataSourceExec::from_data_source(memory));
        }
        if inputs.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(
                &self.schema,
                projection,
            )?)));
        }
        UnionExec::try_new(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_once_the_total_passes_the_limit() {
        let budget = ScanBudget::new(100);
        assert!(budget.charge(60).is_ok());
        assert!(budget.charge(40).is_ok());
        let err = budget.charge(1).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ScanTooLarge {
                    bytes: 101,
                    limit: 100
                }
            ),
            "{err:?}"
        );
    }
}
