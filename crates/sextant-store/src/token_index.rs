//! The token index of log bodies: for each block of [`BLOCK_ROWS`] rows of a segment, a Bloom
//! filter of the tokens of its bodies. It is stored inside the segment's Parquet file, so that a
//! word search reads only the blocks that may hold its words.
//!
//! A token is a maximal run of token bytes: ASCII letters and digits, `_`, and every byte of a
//! non-ASCII character; ASCII letters are folded to lower case. [`WordMatcher`] is the match the
//! index serves: a word (or phrase) matches a body that contains it, ignoring ASCII case, where
//! it neither starts nor ends inside a longer token. So every token of the word is a whole token
//! of a matching body, and a block whose filter lacks one of them cannot hold a match.
//!
//! Layout (little-endian): `SXTI`, version byte, three zero bytes, rows (u64), rows per block
//! (u32), blocks (u32); per block the number of 64-bit words of its filter (u32) and the words;
//! then a CRC-32 of everything before it. The file's key-value metadata [`METADATA_KEY`] holds
//! `OFFSET:LENGTH` of these bytes in the file.

use arrow::array::{Array, StringArray};
use memchr::memmem::Finder;

use crate::{Error, Result};

/// Rows per block: the unit a search skips or reads (about one data page of bodies).
pub const BLOCK_ROWS: usize = 8192;
/// The Parquet key-value metadata key that locates the index in its file.
pub const METADATA_KEY: &str = "sextant.token_index";
/// Filter bits per distinct token and probes per token: about 0.3% false positives.
const BITS_PER_TOKEN: usize = 12;
const PROBES: u64 = 8;
const MAGIC: &[u8; 4] = b"SXTI";
const VERSION: u8 = 1;
const HEADER_BYTES: usize = 4 + 4 + 8 + 4 + 4;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80
}

/// Calls `f` with the hash of each token of `text` (stable across versions: it is stored).
pub fn for_each_token_hash(text: &[u8], mut f: impl FnMut(u64)) {
    let mut i = 0;
    while i < text.len() {
        if !is_token_byte(text[i]) {
            i += 1;
            continue;
        }
        let mut hash = FNV_OFFSET;
        while i < text.len() && is_token_byte(text[i]) {
            hash = (hash ^ u64::from(text[i].to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
            i += 1;
        }
        f(finish(hash));
    }
}

/// The hashes of the tokens of `text`, each once.
pub fn token_hashes(text: &str) -> Vec<u64> {
    let mut hashes = Vec::new();
    for_each_token_hash(text.as_bytes(), |hash| hashes.push(hash));
    hashes.sort_unstable();
    hashes.dedup();
    hashes
}

/// Spreads FNV's bits (the filter uses both halves of the hash).
fn finish(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

fn probes(hash: u64, bits: u64) -> impl Iterator<Item = u64> {
    let step = hash.rotate_left(32) | 1;
    (0..PROBES).map(move |i| hash.wrapping_add(i.wrapping_mul(step)) % bits)
}

/// Matches one word or phrase against bodies the way the index assumes (see the module
/// documentation). Reuses one buffer for the lower-cased body.
#[derive(Debug)]
pub struct WordMatcher {
    word: Vec<u8>,
    finder: Finder<'static>,
    starts_in_token: bool,
    ends_in_token: bool,
    lowered: Vec<u8>,
}

impl WordMatcher {
    pub fn new(word: &str) -> WordMatcher {
        let word = word.as_bytes().to_ascii_lowercase();
        WordMatcher {
            finder: Finder::new(&word).into_owned(),
            starts_in_token: word.first().is_some_and(|&b| is_token_byte(b)),
            ends_in_token: word.last().is_some_and(|&b| is_token_byte(b)),
            word,
            lowered: Vec::new(),
        }
    }

    /// Whether `body` contains the word at token boundaries, ignoring ASCII case.
    pub fn matches(&mut self, body: &str) -> bool {
        if self.word.is_empty() {
            return true;
        }
        let body = body.as_bytes();
        let haystack: &[u8] = if body.iter().any(u8::is_ascii_uppercase) {
            self.lowered.clear();
            self.lowered.extend(body.iter().map(u8::to_ascii_lowercase));
            &self.lowered
        } else {
            body
        };
        let len = self.word.len();
        self.finder.find_iter(haystack).any(|at| {
            let start_ok = !self.starts_in_token || at == 0 || !is_token_byte(haystack[at - 1]);
            let end = at + len;
            let end_ok =
                !self.ends_in_token || end == haystack.len() || !is_token_byte(haystack[end]);
            start_ok && end_ok
        })
    }
}

/// The token filters of one segment's bodies, block by block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenIndex {
    rows: u64,
    block_rows: u32,
    /// Filter words of all blocks, one after another; block `b` has `words[ends[b-1]..ends[b]]`.
    words: Vec<u64>,
    ends: Vec<usize>,
}

impl TokenIndex {
    /// Indexes `bodies` (nulls have no tokens) in blocks of [`BLOCK_ROWS`].
    pub fn build(bodies: &StringArray) -> TokenIndex {
        let mut index = TokenIndex {
            rows: bodies.len() as u64,
            block_rows: BLOCK_ROWS as u32,
            words: Vec::new(),
            ends: Vec::new(),
        };
        let mut hashes = Vec::new();
        let mut start = 0;
        while start < bodies.len() {
            let end = (start + BLOCK_ROWS).min(bodies.len());
            hashes.clear();
            for row in start..end {
                if bodies.is_valid(row) {
                    for_each_token_hash(bodies.value(row).as_bytes(), |hash| hashes.push(hash));
                }
            }
            hashes.sort_unstable();
            hashes.dedup();
            let words = (hashes.len() * BITS_PER_TOKEN).div_ceil(64).max(1);
            let first = index.words.len();
            index.words.resize(first + words, 0);
            let filter = &mut index.words[first..];
            let bits = (words * 64) as u64;
            for &hash in &hashes {
                for bit in probes(hash, bits) {
                    filter[(bit / 64) as usize] |= 1 << (bit % 64);
                }
            }
            index.ends.push(index.words.len());
            start = end;
        }
        index
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn block_rows(&self) -> usize {
        self.block_rows as usize
    }

    pub fn blocks(&self) -> usize {
        self.ends.len()
    }

    /// Bytes held in memory.
    pub fn memory_size(&self) -> usize {
        self.words.len() * 8 + self.ends.len() * std::mem::size_of::<usize>()
    }

    fn filter(&self, block: usize) -> &[u64] {
        let start = if block == 0 { 0 } else { self.ends[block - 1] };
        &self.words[start..self.ends[block]]
    }

    /// For each block, whether it may hold every token of `hashes` (false means it holds none
    /// of the rows a search for them wants).
    pub fn blocks_with_all(&self, hashes: &[u64]) -> Vec<bool> {
        (0..self.blocks())
            .map(|block| {
                let filter = self.filter(block);
                let bits = (filter.len() * 64) as u64;
                hashes.iter().all(|&hash| {
                    probes(hash, bits)
                        .all(|bit| filter[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
                })
            })
            .collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(HEADER_BYTES + self.words.len() * 8 + self.ends.len() * 4 + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[VERSION, 0, 0, 0]);
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&self.block_rows.to_le_bytes());
        out.extend_from_slice(&(self.blocks() as u32).to_le_bytes());
        for block in 0..self.blocks() {
            let filter = self.filter(block);
            out.extend_from_slice(&(filter.len() as u32).to_le_bytes());
            for word in filter {
                out.extend_from_slice(&word.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<TokenIndex> {
        let bad = |what: &str| Error::Decode(format!("token index: {what}"));
        if bytes.len() < HEADER_BYTES + 4 {
            return Err(bad("too short"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(bad("checksum mismatch"));
        }
        if &body[..4] != MAGIC {
            return Err(bad("not a token index"));
        }
        if body[4] != VERSION {
            return Err(bad(&format!("unknown version {}", body[4])));
        }
        let mut at = 8;
        let mut take = |n: usize| -> Result<&[u8]> {
            let part = body.get(at..at + n).ok_or_else(|| bad("truncated"))?;
            at += n;
            Ok(part)
        };
        let rows = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        let block_rows = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
        let blocks = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        if block_rows == 0 || (blocks as u64) != rows.div_ceil(u64::from(block_rows)) {
            return Err(bad("block count does not fit the row count"));
        }
        let mut words = Vec::new();
        let mut ends = Vec::with_capacity(blocks);
        for _ in 0..blocks {
            let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            if count == 0 {
                return Err(bad("empty filter"));
            }
            let raw = take(
                count
                    .checked_mul(8)
                    .ok_or_else(|| bad("filter too large"))?,
            )?;
            words.extend(
                raw.chunks_exact(8)
                    .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))),
            );
            ends.push(words.len());
        }
        if at != body.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(TokenIndex {
            rows,
            block_rows,
            words,
            ends,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut current = String::new();
        for byte in text.bytes() {
            if is_token_byte(byte) {
                current.push(byte.to_ascii_lowercase() as char);
            } else if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }

    #[test]
    fn tokens_are_runs_of_word_bytes_folded_to_lower_case() {
        assert_eq!(
            tokens("Got blk_-160 from 10.0.0.1:50010, OK"),
            [
                "got", "blk_", "160", "from", "10", "0", "0", "1", "50010", "ok"
            ]
        );
        let mut hashes = Vec::new();
        for_each_token_hash(b"ERROR error Error", |h| hashes.push(h));
        assert_eq!(hashes.len(), 3);
        assert!(hashes.iter().all(|&h| h == hashes[0]));
        assert_eq!(token_hashes("a-b a"), token_hashes("B A"));
    }

    fn check(word: &str, body: &str, expected: bool) {
        let mut matcher = WordMatcher::new(word);
        assert_eq!(matcher.matches(body), expected, "{word:?} in {body:?}");
    }

    #[test]
    fn words_match_whole_tokens_ignoring_case() {
        check("error", "Connection ERROR: reset", true);
        check("error", "errors were seen", false);
        check("rror", "error", false);
        check("blk_-160", "Receiving blk_-1608 src", false);
        check("blk_-1608", "Receiving blk_-1608 src", true);
        check("-1608", "Receiving blk_-1608 src", true);
        check("connection reset", "a Connection Reset by peer", true);
        check("connection reset", "a connection resetting", false);
        check(":50010", "10.0.0.1:50010", true);
        check("0.0.1", "10.0.0.1:50010", true);
        check("", "anything", true);
        check("naïve", "a NAÏVE idea", false); // only ASCII letters fold
        check("naïve", "a naïve idea", true);
        check("x", "xx x", true);
    }

    fn bodies(lines: &[String]) -> StringArray {
        StringArray::from(lines.iter().map(String::as_str).collect::<Vec<_>>())
    }

    #[test]
    fn blocks_without_a_token_are_ruled_out_and_none_with_it_are() {
        let lines: Vec<String> = (0..3 * BLOCK_ROWS + 5)
            .map(|i| format!("request {i} served in {} ms", i % 97))
            .collect();
        let mut with_needle = lines.clone();
        with_needle[BLOCK_ROWS + 7].push_str(" needle-42");
        let index = TokenIndex::build(&bodies(&with_needle));
        assert_eq!((index.rows(), index.blocks()), (lines.len() as u64, 4));

        assert_eq!(
            index.blocks_with_all(&token_hashes("needle-42")),
            [false, true, false, false]
        );
        assert_eq!(index.blocks_with_all(&token_hashes("served")), [true; 4]);
        // A token in every block and one in none: no block has both.
        assert_eq!(
            index.blocks_with_all(&token_hashes("served absent-word")),
            [false; 4]
        );
        assert_eq!(index.blocks_with_all(&[]), [true; 4]);
    }

    #[test]
    fn false_positives_stay_rare() {
        let lines: Vec<String> = (0..BLOCK_ROWS)
            .map(|i| format!("user{i} logged in from host{}", i * 7))
            .collect();
        let index = TokenIndex::build(&bodies(&lines));
        let hits = (0..10_000)
            .filter(|i| index.blocks_with_all(&token_hashes(&format!("absent{i}")))[0])
            .count();
        assert!(
            hits < 100,
            "{hits} of 10000 absent tokens passed the filter"
        );
    }

    #[test]
    fn encode_then_decode_gives_the_same_index_and_damage_is_refused() {
        let lines: Vec<String> = (0..BLOCK_ROWS + 1).map(|i| format!("line {i}")).collect();
        let index = TokenIndex::build(&bodies(&lines));
        let bytes = index.encode();
        assert_eq!(TokenIndex::decode(&bytes).unwrap(), index);

        let mut flipped = bytes.clone();
        flipped[HEADER_BYTES + 9] ^= 1;
        assert!(
            TokenIndex::decode(&flipped)
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
        assert!(TokenIndex::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(TokenIndex::decode(b"short").is_err());

        let empty = TokenIndex::build(&bodies(&[]));
        assert_eq!(TokenIndex::decode(&empty.encode()).unwrap(), empty);
    }
}
