//! How model states (template miners, detectors) are kept in the metadata store: zstd-compressed,
//! and told apart from the plain states saved before by the frame's first bytes.

use std::borrow::Cow;

/// The first bytes of a zstd frame. No plain state starts so: a miner's is JSON (`{`), a
/// detector's starts with its description's length, never that large.
pub(crate) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// `plain`, compressed for saving.
pub(crate) fn compress(plain: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(plain, 3).expect("zstd compresses into a growing buffer")
}

/// A saved state as it was before saving: decompressed, or as it is if saved plain.
pub(crate) fn plain(saved: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    if saved.starts_with(&ZSTD_MAGIC) {
        zstd::stream::decode_all(saved)
            .map(Cow::Owned)
            .map_err(|e| format!("a compressed state does not decompress: {e}"))
    } else {
        Ok(Cow::Borrowed(saved))
    }
}
