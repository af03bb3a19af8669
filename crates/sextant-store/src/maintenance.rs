//! Which segment files compaction merges and retention drops: pure planning over a table's file
//! list, no I/O. The telemetry store's flusher carries the plans out.

use std::collections::BTreeMap;

use crate::SegmentFile;

/// The hour partition of a segment file: its path without the file name
/// (`TENANT/TABLE/YYYY-MM-DD/HH`).
pub(crate) fn partition_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Groups of small files to merge, one group per hour partition that has at least `min_files`
/// files under `target_bytes`. A group takes the partition's small files in order until their
/// sizes add up to `target_bytes`, so the merged file stays near the target.
pub(crate) fn plan_compactions(
    files: &[SegmentFile],
    min_files: usize,
    target_bytes: u64,
) -> Vec<Vec<SegmentFile>> {
    let mut small: BTreeMap<&str, Vec<&SegmentFile>> = BTreeMap::new();
    for file in files.iter().filter(|f| f.bytes < target_bytes) {
        small
            .entry(partition_of(&file.path))
            .or_default()
            .push(file);
    }
    let mut plans = Vec::new();
    for candidates in small.into_values() {
        let mut group = Vec::new();
        let mut bytes = 0u64;
        for file in candidates {
            if !group.is_empty() && bytes + file.bytes > target_bytes {
                break;
            }
            bytes += file.bytes;
            group.push(file.clone());
        }
        if group.len() >= min_files.max(2) {
            plans.push(group);
        }
    }
    plans
}

/// Files of every hour partition whose newest row is older than `cutoff` (ns since the epoch).
/// A partition goes whole or not at all.
pub(crate) fn expired_files(files: &[SegmentFile], cutoff: i64) -> Vec<String> {
    let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
    for file in files {
        let max = newest.entry(partition_of(&file.path)).or_insert(i64::MIN);
        *max = (*max).max(file.max_time);
    }
    files
        .iter()
        .filter(|f| newest[partition_of(&f.path)] < cutoff)
        .map(|f| f.path.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, bytes: u64, max_time: i64) -> SegmentFile {
        SegmentFile {
            path: path.to_owned(),
            min_time: 0,
            max_time,
            rows: 1,
            bytes,
        }
    }

    fn paths(files: &[SegmentFile]) -> Vec<&str> {
        files.iter().map(|f| f.path.as_str()).collect()
    }

    /// `files` as (path, bytes); expects the planned groups as paths.
    fn check_compaction(files: &[(&str, u64)], min_files: usize, expected: &[&[&str]]) {
        let files: Vec<_> = files.iter().map(|(p, b)| file(p, *b, 0)).collect();
        let plans = plan_compactions(&files, min_files, 100);
        let planned: Vec<Vec<&str>> = plans.iter().map(|g| paths(g)).collect();
        assert_eq!(planned, expected);
    }

    #[test]
    fn compaction_merges_small_files_per_hour_partition() {
        // Three small files in hour 00: merged; hour 01 has only one small file.
        check_compaction(
            &[
                ("a/logs/d/00/1.parquet", 10),
                ("a/logs/d/00/2.parquet", 10),
                ("a/logs/d/01/1.parquet", 10),
                ("a/logs/d/00/3.parquet", 10),
            ],
            2,
            &[&[
                "a/logs/d/00/1.parquet",
                "a/logs/d/00/2.parquet",
                "a/logs/d/00/3.parquet",
            ]],
        );
        // Files at or over the target are left alone; too few small ones: nothing to do.
        check_compaction(
            &[
                ("a/logs/d/00/big.parquet", 100),
                ("a/logs/d/00/1.parquet", 10),
            ],
            2,
            &[],
        );
        check_compaction(
            &[("a/logs/d/00/1.parquet", 10), ("a/logs/d/00/2.parquet", 10)],
            3,
            &[],
        );
        // A group stops before the target; the rest waits for the next round.
        check_compaction(
            &[
                ("a/logs/d/00/1.parquet", 60),
                ("a/logs/d/00/2.parquet", 30),
                ("a/logs/d/00/3.parquet", 30),
            ],
            2,
            &[&["a/logs/d/00/1.parquet", "a/logs/d/00/2.parquet"]],
        );
    }

    #[test]
    fn retention_drops_whole_partitions_past_the_cutoff() {
        let files = [
            file("a/logs/d/00/1.parquet", 1, 10),
            file("a/logs/d/00/2.parquet", 1, 30),
            file("a/logs/d/01/1.parquet", 1, 15),
            file("a/logs/d/02/1.parquet", 1, 40),
        ];
        // Hour 00 has a row at 30, so it stays whole while hour 01 (newest 15) goes.
        assert_eq!(expired_files(&files, 20), ["a/logs/d/01/1.parquet"]);
        assert_eq!(
            expired_files(&files, 31),
            [
                "a/logs/d/00/1.parquet",
                "a/logs/d/00/2.parquet",
                "a/logs/d/01/1.parquet"
            ]
        );
        assert!(expired_files(&files, 10).is_empty());
    }
}
