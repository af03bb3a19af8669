//! Parquet segment files: buffered rows of one tenant's table become files partitioned by hour
//! (`TENANT/TABLE/YYYY-MM-DD/HH/NAME.parquet`), sorted by service then time, zstd-compressed,
//! with column statistics and the page index. Log segments also carry a
//! [`TokenIndex`](crate::token_index::TokenIndex) of their bodies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, StringArray, TimestampNanosecondArray, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sextant_model::{Table, TenantId};

use crate::token_index::{METADATA_KEY, TokenIndex};
use crate::{Error, Result, SegmentFile, TIME_COLUMN};

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;
/// Rows per Parquet row group; smaller groups let statistics skip more.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// zstd level of every column: 6 made Loghub bodies about 15% smaller than 3 for about 30%
/// more encoding time, in a one-off comparison (see BENCHMARKS.md, which says how loosely).
const ZSTD_LEVEL: i32 = 6;
/// Bytes read from the end of a file to find its footer (most footers fit).
const FOOTER_READ: u64 = 64 * 1024;
/// Text columns that keep page statistics (queries filter on them).
const STATISTICS_TEXT_COLUMNS: [&str; 4] = ["service", "name", "severity_text", "kind"];
/// The log message column, whose tokens are indexed.
const BODY_COLUMN: &str = "body";

/// Where segment files live: an object store, plus its folder when it is the local disk (so
/// new files can be fsynced before the write-ahead log lets go of their rows).
#[derive(Clone, Debug)]
pub struct SegmentStore {
    pub store: Arc<dyn ObjectStore>,
    local_root: Option<PathBuf>,
}

impl SegmentStore {
    /// Segments in a folder of the local disk.
    pub fn local(root: &Path) -> Result<SegmentStore> {
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(root)
            .map_err(|e| Error::ObjectStore(e.to_string()))?;
        Ok(SegmentStore {
            store: Arc::new(store),
            local_root: Some(root.to_owned()),
        })
    }

    /// The same folder, every file sealed with its tenant's data key when `keyring` is given.
    pub fn with_keyring(self, keyring: Option<Arc<crate::crypto::Keyring>>) -> SegmentStore {
        match keyring {
            None => self,
            Some(keyring) => SegmentStore {
                store: Arc::new(crate::encrypted_store::EncryptedStore::new(
                    self.store, keyring,
                )),
                local_root: self.local_root,
            },
        }
    }

    /// Writes one tenant's table rows as segment files, one per hour of `time`. `name` makes
    /// the file names unique (the caller passes the flush's checkpoint and a counter).
    pub async fn write(
        &self,
        tenant: &TenantId,
        table: Table,
        batches: &[RecordBatch],
        name: &str,
    ) -> Result<Vec<SegmentFile>> {
        let Some(first) = batches.first() else {
            return Ok(Vec::new());
        };
        let all = concat_batches(&first.schema(), batches).map_err(arrow_error)?;
        let mut files = Vec::new();
        for (hour, rows) in split_by_hour(&all)? {
            let sorted = sort_by_service_then_time(&rows)?;
            let (min_time, max_time) = time_range(&sorted)?;
            let path = format!(
                "{tenant}/{table}/{}/{:02}/{name}.parquet",
                civil_date(hour.div_euclid(24)),
                hour.rem_euclid(24)
            );
            let bytes = encode_parquet(&sorted)?;
            let size = bytes.len() as u64;
            self.store
                .put(&ObjectPath::from(path.as_str()), bytes.into())
                .await
                .map_err(|e| Error::ObjectStore(e.to_string()))?;
            self.sync(&path)?;
            files.push(SegmentFile {
                path,
                min_time,
                max_time,
                rows: sorted.num_rows() as u64,
                bytes: size,
            });
        }
        Ok(files)
    }

    fn sync(&self, path: &str) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let file = root.join(path);
        std::fs::File::open(&file)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&file, e))?;
        if let Some(dir) = file.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(dir, e))?;
        }
        Ok(())
    }

    /// Reads a whole segment file back as rows (for compaction).
    pub async fn read(&self, path: &str) -> Result<Vec<RecordBatch>> {
        let bytes = self
            .store
            .get(&ObjectPath::from(path))
            .await
            .map_err(|e| Error::ObjectStore(e.to_string()))?
            .bytes()
            .await
            .map_err(|e| Error::ObjectStore(e.to_string()))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|builder| builder.build())
            .map_err(|e| Error::Decode(format!("segment file `{path}`: {e}")))?;
        reader
            .map(|batch| batch.map_err(|e| Error::Decode(format!("segment file `{path}`: {e}"))))
            .collect()
    }

    /// Deletes segment files.
    pub async fn delete(&self, paths: &[String]) -> Result<()> {
        for path in paths {
            match self.store.delete(&ObjectPath::from(path.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::ObjectStore(e.to_string())),
            }
        }
        Ok(())
    }

    /// Every file in the store (to find files the catalog does not know: leftovers of a flush or
    /// compaction that crashed before its catalog commit).
    pub async fn list(&self) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let listed: Vec<_> = self
            .store
            .list(None)
            .try_collect()
            .await
            .map_err(|e| Error::ObjectStore(e.to_string()))?;
        Ok(listed.into_iter().map(|m| m.location.to_string()).collect())
    }
}

/// The token index of a segment file of `size` bytes, `None` for a file without one (not a
/// log segment, or written before segments had one).
pub async fn read_token_index(
    store: Arc<dyn ObjectStore>,
    path: &str,
    size: u64,
) -> Result<Option<TokenIndex>> {
    let location = ObjectPath::from(path);
    let bad = |what: String| Error::Decode(format!("segment file `{path}`: {what}"));
    let get = |range: std::ops::Range<u64>| {
        let (store, location) = (store.clone(), location.clone());
        async move {
            store
                .get_range(&location, range)
                .await
                .map_err(|e| Error::ObjectStore(e.to_string()))
        }
    };
    // One read usually covers the footer: its length, then `PAR1`, end the file.
    let tail = get(size.saturating_sub(FOOTER_READ)..size).await?;
    if tail.len() < 8 || &tail[tail.len() - 4..] != b"PAR1" {
        return Err(bad("not a Parquet file".to_owned()));
    }
    let footer_len = u64::from(u32::from_le_bytes(
        tail[tail.len() - 8..tail.len() - 4]
            .try_into()
            .expect("4 bytes"),
    ));
    let footer_start = size
        .checked_sub(footer_len + 8)
        .ok_or_else(|| bad("footer longer than the file".to_owned()))?;
    let footer = if footer_len + 8 <= tail.len() as u64 {
        tail.slice(tail.len() - 8 - footer_len as usize..tail.len() - 8)
    } else {
        get(footer_start..size - 8).await?
    };
    let metadata = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer)
        .map_err(|e| bad(e.to_string()))?;
    let Some(place) = metadata
        .file_metadata()
        .key_value_metadata()
        .and_then(|kvs| kvs.iter().find(|kv| kv.key == METADATA_KEY))
        .and_then(|kv| kv.value.as_deref())
    else {
        return Ok(None);
    };
    let range = place
        .split_once(':')
        .and_then(|(offset, len)| Some((offset.parse::<u64>().ok()?, len.parse::<u64>().ok()?)))
        .filter(|&(offset, len)| offset.checked_add(len).is_some_and(|end| end <= size))
        .ok_or_else(|| bad(format!("bad token index location `{place}`")))?;
    let bytes = get(range.0..range.0 + range.1).await?;
    TokenIndex::decode(&bytes)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

fn arrow_error(err: arrow::error::ArrowError) -> Error {
    Error::Decode(err.to_string())
}

fn times(batch: &RecordBatch) -> Result<&TimestampNanosecondArray> {
    batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| Error::Decode(format!("batch has no `{TIME_COLUMN}` timestamp column")))
}

/// Rows grouped by hour since the epoch.
fn split_by_hour(batch: &RecordBatch) -> Result<BTreeMap<i64, RecordBatch>> {
    let times = times(batch)?;
    let mut groups: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (i, time) in times.values().iter().enumerate() {
        groups
            .entry(time.div_euclid(NANOS_PER_HOUR))
            .or_default()
            .push(i as u32);
    }
    if groups.len() == 1 {
        let hour = *groups.keys().next().expect("one group");
        return Ok(BTreeMap::from([(hour, batch.clone())]));
    }
    groups
        .into_iter()
        .map(|(hour, indices)| {
            let rows =
                take_record_batch(batch, &UInt32Array::from(indices)).map_err(arrow_error)?;
            Ok((hour, rows))
        })
        .collect()
}

/// Rows ordered by service, then time. Services are ranked once, so the sort compares
/// integers, not strings.
fn sort_by_service_then_time(batch: &RecordBatch) -> Result<RecordBatch> {
    let times = times(batch)?.values();
    let services = batch
        .column_by_name("service")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>());
    let ranks: Vec<u32> = match services {
        Some(services) => {
            let mut distinct: Vec<&str> = services
                .iter()
                .map(Option::unwrap_or_default)
                .collect::<std::collections::HashSet<&str>>()
                .into_iter()
                .collect();
            distinct.sort_unstable();
            let rank: std::collections::HashMap<&str, u32> = distinct
                .iter()
                .enumerate()
                .map(|(i, s)| (*s, i as u32))
                .collect();
            services
                .iter()
                .map(|s| rank[s.unwrap_or_default()])
                .collect()
        }
        None => vec![0; batch.num_rows()],
    };
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.sort_unstable_by_key(|&i| (ranks[i as usize], times[i as usize], i));
    take_record_batch(batch, &UInt32Array::from(order)).map_err(arrow_error)
}

fn time_range(batch: &RecordBatch) -> Result<(i64, i64)> {
    let times = times(batch)?;
    let min = arrow::compute::min(times).unwrap_or(0);
    let max = arrow::compute::max(times).unwrap_or(0);
    Ok((min, max))
}

/// zstd everywhere; time stamps delta-encoded (sorted by service then time, their differences
/// are small); no dictionary for log bodies (nearly every body differs, so a dictionary only
/// fills up and is dropped). Page statistics only where a query can prune by them: numbers,
/// times and the few text columns queries filter on. Min and max of free text or of
/// attribute maps prune nothing, and computing them compares every value (it was the
/// largest single cost of a flush).
fn writer_properties(batch: &RecordBatch) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).expect("valid level"),
        ))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for field in batch.schema().fields() {
        let column = ColumnPath::from(field.name().as_str());
        let prunes = match field.data_type() {
            DataType::Utf8 => STATISTICS_TEXT_COLUMNS.contains(&field.name().as_str()),
            data_type => data_type.is_primitive() || matches!(data_type, DataType::Boolean),
        };
        if prunes {
            builder =
                builder.set_column_statistics_enabled(column.clone(), EnabledStatistics::Page);
        }
        if matches!(field.data_type(), DataType::Timestamp(..)) {
            builder = builder
                .set_column_dictionary_enabled(column.clone(), false)
                .set_column_encoding(column, Encoding::DELTA_BINARY_PACKED);
        }
    }
    builder
        .set_column_dictionary_enabled(ColumnPath::from(BODY_COLUMN), false)
        .build()
}

/// The batch as a Parquet file; with a string `body` column, the file also holds the token
/// index of the bodies, after the last row group, located by the [`METADATA_KEY`] metadata.
fn encode_parquet(batch: &RecordBatch) -> Result<Vec<u8>> {
    let parquet_error = |e: parquet::errors::ParquetError| Error::Decode(e.to_string());
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(writer_properties(batch)))
        .map_err(parquet_error)?;
    writer.write(batch).map_err(parquet_error)?;
    let bodies = batch
        .column_by_name(BODY_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>());
    if let Some(bodies) = bodies {
        writer.flush().map_err(parquet_error)?;
        let index = TokenIndex::build(bodies).encode();
        let offset = writer.bytes_written();
        writer
            .write_all(&index)
            .map_err(|e| Error::Decode(format!("writing the token index: {e}")))?;
        writer.append_key_value_metadata(KeyValue::new(
            METADATA_KEY.to_owned(),
            format!("{offset}:{}", index.len()),
        ));
    }
    writer.close().map_err(parquet_error)?;
    Ok(out)
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (proleptic Gregorian; days-to-civil).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use arrow::array::StringArray;
    use arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    #[test]
    fn civil_dates() {
        for (days, date) in [
            (0, "1970-01-01"),
            (-1, "1969-12-31"),
            (19_722, "2023-12-31"),
            (20_415, "2025-11-23"),
            (11_016, "2000-02-29"),
        ] {
            assert_eq!(civil_date(days), date, "{days}");
        }
    }

    fn batch(rows: &[(&str, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                TIME_COLUMN,
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("service", DataType::Utf8, false),
            Field::new(BODY_COLUMN, DataType::Utf8, false),
        ]));
        let times = TimestampNanosecondArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())
            .with_timezone("UTC");
        let services = StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
        let bodies = StringArray::from(
            rows.iter()
                .map(|r| format!("request to {}", r.0))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(
            schema,
            vec![Arc::new(times), Arc::new(services), Arc::new(bodies)],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn segments_split_by_hour_and_sort_by_service_then_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::local(dir.path()).unwrap();
        let hour = NANOS_PER_HOUR;
        let base = 20_415 * 24 * hour; // 2025-11-23T00:00Z
        let rows = batch(&[
            ("web", base + 5),
            ("api", base + 9),
            ("api", base + 1),
            ("web", base + hour + 2),
        ]);
        let tenant = TenantId::new("acme").unwrap();
        let files = store
            .write(&tenant, Table::Logs, &[rows], "f1")
            .await
            .unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "acme/logs/2025-11-23/00/f1.parquet",
                "acme/logs/2025-11-23/01/f1.parquet"
            ]
        );
        assert_eq!(
            (files[0].rows, files[0].min_time, files[0].max_time),
            (3, base + 1, base + 9)
        );
        assert!(files[0].bytes > 0);

        let file = std::fs::File::open(dir.path().join(&files[0].path)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let read: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let services = read[0]
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let times = times(&read[0]).unwrap();
        let order: Vec<_> = (0..3)
            .map(|i| (services.value(i), times.value(i) - base))
            .collect();
        assert_eq!(order, [("api", 1), ("api", 9), ("web", 5)]);

        // Log segments carry the token index of their bodies; other tables have none.
        let index = read_token_index(store.store.clone(), &files[0].path, files[0].bytes)
            .await
            .unwrap()
            .expect("an index");
        assert_eq!(index.rows(), 3);
        assert_eq!(
            index.blocks_with_all(&crate::token_index::token_hashes("web")),
            [true]
        );
        assert_eq!(
            index.blocks_with_all(&crate::token_index::token_hashes("absent")),
            [false]
        );

        assert_eq!(store.list().await.unwrap().len(), 2);
        store.delete(&[files[0].path.clone()]).await.unwrap();
        assert_eq!(store.list().await.unwrap().len(), 1);
    }
}
