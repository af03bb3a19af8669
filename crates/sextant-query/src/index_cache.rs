//! [`TokenIndexCache`]: the token indexes of segment files, read once and kept in memory (the
//! files never change), up to a byte limit; the oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use object_store::ObjectStore;
use parking_lot::Mutex;
use sextant_store::SegmentFile;
use sextant_store::segments::read_token_index;
use sextant_store::token_index::TokenIndex;

/// Memory the cache may hold, 256 MiB: the index of about 150 million log lines.
pub const DEFAULT_CACHE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug)]
pub(crate) struct TokenIndexCache {
    limit: usize,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    /// `None` for a file without an index (or with an unreadable one).
    entries: HashMap<String, Option<Arc<TokenIndex>>>,
    order: VecDeque<String>,
    bytes: usize,
}

impl TokenIndexCache {
    pub fn new(limit: usize) -> TokenIndexCache {
        TokenIndexCache {
            limit,
            state: Mutex::new(CacheState::default()),
        }
    }

    /// The index of `file`, read from `store` unless cached. A file whose index cannot be read
    /// has none: it is scanned whole, never skipped.
    pub async fn get(
        &self,
        store: &Arc<dyn ObjectStore>,
        file: &SegmentFile,
    ) -> Option<Arc<TokenIndex>> {
        if let Some(entry) = self.state.lock().entries.get(&file.path) {
            return entry.clone();
        }
        let index = match read_token_index(store.clone(), &file.path, file.bytes).await {
            Ok(index) => index
                .filter(|index| index.rows() == file.rows)
                .map(Arc::new),
            Err(err) => {
                tracing::warn!(path = %file.path, %err, "unreadable token index; the file is scanned whole");
                None
            }
        };
        self.insert(&file.path, index.clone());
        index
    }

    fn insert(&self, path: &str, index: Option<Arc<TokenIndex>>) {
        let size = index.as_ref().map_or(0, |index| index.memory_size()) + path.len();
        let mut state = self.state.lock();
        if size > self.limit || state.entries.contains_key(path) {
            return;
        }
        while state.bytes + size > self.limit {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            if let Some(entry) = state.entries.remove(&oldest) {
                state.bytes -= entry.map_or(0, |index| index.memory_size()) + oldest.len();
            }
        }
        state.bytes += size;
        state.order.push_back(path.to_owned());
        state.entries.insert(path.to_owned(), index);
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::StringArray;

    use super::*;

    fn index(rows: usize) -> Arc<TokenIndex> {
        let lines: Vec<String> = (0..rows).map(|i| format!("line {i}")).collect();
        Arc::new(TokenIndex::build(&StringArray::from(
            lines.iter().map(String::as_str).collect::<Vec<_>>(),
        )))
    }

    #[test]
    fn the_oldest_entries_leave_when_the_limit_is_reached() {
        let one = index(100);
        let size = one.memory_size() + "a".len();
        let cache = TokenIndexCache::new(2 * size);
        cache.insert("a", Some(one.clone()));
        cache.insert("b", Some(one.clone()));
        cache.insert("c", Some(one));
        let state = cache.state.lock();
        let mut kept: Vec<_> = state.entries.keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, ["b", "c"]);
        assert_eq!(state.bytes, 2 * size);
    }
}
