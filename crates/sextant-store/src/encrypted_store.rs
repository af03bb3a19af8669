//! Segment files encrypted at rest: an [`ObjectStore`] in front of another that seals what is
//! put with the tenant's data key (the tenant is a path's first part) and opens what is read,
//! so the query engine, compaction and the token index read plaintext through it unchanged.
//!
//! A file is sealed in chunks, so a range read opens only the chunks it covers:
//!
//! ```text
//! [magic "SXE1"][key id: u32 LE][file id: 16 random bytes]
//! then per 64 KiB of plaintext: [ciphertext][tag: 16 bytes]
//! ```
//!
//! Chunk `i`'s nonce is the file id followed by `i` (u64 LE); its associated data is the tenant,
//! and whether it is the last chunk, so reordered, swapped or cut chunks fail to open. Sizes
//! reported by `head` and `list` are the plaintext's (each is computed from the stored size).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, Payload};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use sextant_model::TenantId;

use crate::crypto::Keyring;

const MAGIC: &[u8; 4] = b"SXE1";
/// Magic, key id, file id.
const HEADER: u64 = 4 + 4 + 16;
/// Plaintext bytes per chunk.
const CHUNK: u64 = 64 * 1024;
const TAG: u64 = 16;
const STORE: &str = "encrypted segments";

/// Seals and opens segment files on their way to and from `inner`.
pub struct EncryptedStore {
    inner: Arc<dyn ObjectStore>,
    keyring: Arc<Keyring>,
}

impl EncryptedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, keyring: Arc<Keyring>) -> EncryptedStore {
        EncryptedStore { inner, keyring }
    }
}

impl fmt::Debug for EncryptedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedStore({})", self.inner)
    }
}

impl fmt::Display for EncryptedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedStore({})", self.inner)
    }
}

fn error(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: message.into(),
    }
}

fn tenant_of(location: &Path) -> object_store::Result<TenantId> {
    let first = location
        .parts()
        .next()
        .ok_or_else(|| error(format!("`{location}` names no tenant")))?;
    TenantId::new(first.as_ref()).map_err(|e| error(format!("`{location}`: {e}")))
}

/// The plaintext size of a sealed file of `stored` bytes.
pub fn plaintext_size(stored: u64) -> Option<u64> {
    let body = stored.checked_sub(HEADER)?;
    let full = body / (CHUNK + TAG);
    match body % (CHUNK + TAG) {
        0 if full > 0 => Some(full * CHUNK),
        0 => None,
        rest if rest >= TAG => Some(full * CHUNK + rest - TAG),
        _ => None,
    }
}

fn chunks(size: u64) -> u64 {
    size.div_ceil(CHUNK).max(1)
}

fn nonce(file_id: &[u8], index: u64) -> chacha20poly1305::XNonce {
    let mut nonce = [0u8; 24];
    nonce[..16].copy_from_slice(file_id);
    nonce[16..].copy_from_slice(&index.to_le_bytes());
    nonce.into()
}

fn aad(tenant: &TenantId, last: bool) -> Vec<u8> {
    let mut aad = b"sextant segment\0".to_vec();
    aad.extend_from_slice(tenant.as_str().as_bytes());
    aad.push(u8::from(last));
    aad
}

/// Seals a whole file.
fn seal(cipher: &XChaCha20Poly1305, key_id: u32, tenant: &TenantId, plaintext: &[u8]) -> Vec<u8> {
    let mut file_id = [0u8; 16];
    getrandom::fill(&mut file_id).expect("the operating system's random source failed");
    let count = chunks(plaintext.len() as u64);
    let mut out = Vec::with_capacity(HEADER as usize + plaintext.len() + (count * TAG) as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&key_id.to_le_bytes());
    out.extend_from_slice(&file_id);
    for index in 0..count {
        let start = (index * CHUNK) as usize;
        let end = (start + CHUNK as usize).min(plaintext.len());
        let sealed = cipher
            .encrypt(
                &nonce(&file_id, index),
                Payload {
                    msg: &plaintext[start..end],
                    aad: &aad(tenant, index + 1 == count),
                },
            )
            .expect("encryption of an in-memory buffer does not fail");
        out.extend_from_slice(&sealed);
    }
    out
}

impl EncryptedStore {
    /// The key id and file id of a file's header.
    fn header(location: &Path, header: &[u8]) -> object_store::Result<(u32, [u8; 16])> {
        if header.len() as u64 != HEADER || &header[..4] != MAGIC {
            return Err(error(format!(
                "`{location}` is not an encrypted segment file (written without encryption?)"
            )));
        }
        let key_id = u32::from_le_bytes(header[4..8].try_into().unwrap());
        Ok((key_id, header[8..24].try_into().unwrap()))
    }

    /// Opens the plaintext `range` of a file whose plaintext is `size` bytes.
    async fn read(
        &self,
        location: &Path,
        size: u64,
        range: Range<u64>,
    ) -> object_store::Result<Bytes> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        let tenant = tenant_of(location)?;
        let count = chunks(size);
        let first = range.start / CHUNK;
        let last = (range.end - 1) / CHUNK;
        let stored = HEADER + first * (CHUNK + TAG)
            ..(HEADER + (last + 1) * (CHUNK + TAG)).min(HEADER + size + count * TAG);
        // The header and the chunks in one request (object stores coalesce nearby ranges).
        let parts = self
            .inner
            .get_ranges(location, &[0..HEADER, stored])
            .await?;
        let (key_id, file_id) = Self::header(location, &parts[0])?;
        let sealed = &parts[1];
        let cipher = self
            .keyring
            .key(&tenant, key_id)
            .map_err(|e| error(format!("`{location}`: {e}")))?;
        let mut plaintext = Vec::with_capacity(((last - first + 1) * CHUNK) as usize);
        for (offset, chunk) in sealed.chunks((CHUNK + TAG) as usize).enumerate() {
            let index = first + offset as u64;
            let opened = cipher
                .decrypt(
                    &nonce(&file_id, index),
                    Payload {
                        msg: chunk,
                        aad: &aad(&tenant, index + 1 == count),
                    },
                )
                .map_err(|_| {
                    error(format!(
                        "`{location}` chunk {index} does not decrypt: the file was changed, cut, \
                         or sealed with another key"
                    ))
                })?;
            plaintext.extend_from_slice(&opened);
        }
        let skip = (range.start - first * CHUNK) as usize;
        let take = (range.end - range.start) as usize;
        Ok(Bytes::from(plaintext).slice(skip..skip + take))
    }

    fn plain_meta(meta: ObjectMeta) -> object_store::Result<ObjectMeta> {
        let size = plaintext_size(meta.size).ok_or_else(|| {
            error(format!(
                "`{}` is too short to be an encrypted segment file",
                meta.location
            ))
        })?;
        Ok(ObjectMeta { size, ..meta })
    }
}

#[async_trait]
impl ObjectStore for EncryptedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let tenant = tenant_of(location)?;
        let (key_id, cipher) = self
            .keyring
            .current(&tenant)
            .map_err(|e| error(e.to_string()))?;
        let plaintext = Bytes::from(payload);
        let sealed = seal(&cipher, key_id, &tenant, &plaintext);
        self.inner
            .put_opts(location, PutPayload::from(sealed), opts)
            .await
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(object_store::Error::NotSupported {
            source: "encrypted segments are written whole, not in parts".into(),
        })
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let range = options.range.clone();
        let only_head = options.head;
        let head = GetOptions {
            head: true,
            range: None,
            ..options
        };
        let stored = self.inner.get_opts(location, head).await?;
        let attributes = stored.attributes.clone();
        let meta = Self::plain_meta(stored.meta)?;
        let size = meta.size;
        let wanted = match range {
            None => 0..size,
            Some(GetRange::Bounded(r)) => {
                if r.start >= size || r.start >= r.end {
                    return Err(error(format!(
                        "range {}..{} of `{location}` ({size} bytes) is empty or past its end",
                        r.start, r.end
                    )));
                }
                r.start..r.end.min(size)
            }
            Some(GetRange::Offset(start)) => {
                if start >= size && size > 0 {
                    return Err(error(format!(
                        "offset {start} is past the end of `{location}` ({size} bytes)"
                    )));
                }
                start.min(size)..size
            }
            Some(GetRange::Suffix(n)) => size.saturating_sub(n)..size,
        };
        let bytes = if only_head {
            Bytes::new()
        } else {
            self.read(location, size, wanted.clone()).await?
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
            meta,
            range: wanted,
            attributes,
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner
            .list(prefix)
            .map(|meta| meta.and_then(EncryptedStore::plain_meta))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let listed = self.inner.list_with_delimiter(prefix).await?;
        Ok(ListResult {
            common_prefixes: listed.common_prefixes,
            objects: listed
                .objects
                .into_iter()
                .map(EncryptedStore::plain_meta)
                .collect::<object_store::Result<_>>()?,
        })
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        if tenant_of(from)? != tenant_of(to)? {
            return Err(error(format!(
                "`{from}` cannot be copied to another tenant's `{to}`"
            )));
        }
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;
    use crate::crypto::MasterKey;
    use crate::meta::{MetadataStore, SqliteMetadata};

    fn stores() -> (tempfile::TempDir, Arc<InMemory>, EncryptedStore) {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetadataStore> =
            Arc::new(SqliteMetadata::open(&dir.path().join("meta.db")).unwrap());
        let master = MasterKey::from_hex(&"11".repeat(32)).unwrap();
        let keyring = Arc::new(Keyring::open(&master, meta).unwrap());
        let inner = Arc::new(InMemory::new());
        let store = EncryptedStore::new(inner.clone(), keyring);
        (dir, inner, store)
    }

    #[tokio::test]
    async fn ranges_read_back_what_was_put_and_nothing_is_stored_in_the_clear() {
        let (_dir, inner, store) = stores();
        // Sizes around chunk edges, and an empty file.
        for size in [0usize, 1, 65_535, 65_536, 65_537, 200_000] {
            let plain: Vec<u8> = (0..size).map(|i| b"marker-"[i % 7]).collect();
            let path = Path::from(format!("acme/logs/f{size}.parquet"));
            store.put(&path, plain.clone().into()).await.unwrap();
            let stored = inner.get(&path).await.unwrap().bytes().await.unwrap();
            assert!(!stored.windows(7).any(|w| w == b"marker-"), "{size}");
            assert_eq!(plaintext_size(stored.len() as u64), Some(size as u64));
            assert_eq!(store.head(&path).await.unwrap().size, size as u64);
            let whole = store.get(&path).await.unwrap().bytes().await.unwrap();
            assert_eq!(whole, plain);
            if size == 0 {
                continue;
            }
            for range in [
                0..1,
                (size as u64 / 3)..(size as u64 * 2 / 3).max(size as u64 / 3 + 1),
                (size as u64 - 1)..size as u64,
            ] {
                let got = store.get_range(&path, range.clone()).await.unwrap();
                assert_eq!(&got[..], &plain[range.start as usize..range.end as usize]);
            }
            let suffix = store
                .get_opts(
                    &path,
                    GetOptions {
                        range: Some(GetRange::Suffix(10)),
                        ..GetOptions::default()
                    },
                )
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(&suffix[..], &plain[size.saturating_sub(10)..]);
        }
        let listed: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.list(None))
            .await
            .unwrap();
        assert!(listed.iter().any(|m| m.size == 200_000));
    }

    #[tokio::test]
    async fn a_changed_cut_or_moved_file_does_not_open() {
        let (_dir, inner, store) = stores();
        let path = Path::from("acme/logs/a.parquet");
        let plain = vec![7u8; 150_000];
        store.put(&path, plain.into()).await.unwrap();
        let stored = inner.get(&path).await.unwrap().bytes().await.unwrap();

        let mut changed = stored.to_vec();
        changed[100] ^= 1;
        inner.put(&path, changed.into()).await.unwrap();
        let error = store.get(&path).await.unwrap_err().to_string();
        assert!(error.contains("does not decrypt"), "{error}");

        // Cut at a chunk boundary: the new last chunk was not sealed as last.
        let cut = stored.slice(..(HEADER + CHUNK + TAG) as usize);
        inner.put(&path, cut.into()).await.unwrap();
        assert!(store.get(&path).await.is_err());

        // Another tenant's path: its key (and associated data) differ.
        let other = Path::from("globex/logs/a.parquet");
        store.put(&other, vec![1u8; 10].into()).await.unwrap();
        inner.put(&other, stored.clone().into()).await.unwrap();
        assert!(store.get(&other).await.is_err());

        // A file stored without encryption is named as such.
        let plain_path = Path::from("acme/logs/plain.parquet");
        inner
            .put(&plain_path, vec![b'P'; 100].into())
            .await
            .unwrap();
        let error = store.get(&plain_path).await.unwrap_err().to_string();
        assert!(error.contains("not an encrypted segment"), "{error}");
    }
}
