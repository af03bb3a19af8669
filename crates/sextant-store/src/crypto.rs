//! Encryption at rest: a master key (from a file or the environment, never stored) wraps one
//! random data key per tenant; data keys seal the write-ahead log's payloads, the segment files
//! ([`EncryptedStore`](crate::encrypted_store::EncryptedStore)), the template miners' and
//! detectors' saved states, and runbook secrets. Everything is XChaCha20-Poly1305 (random
//! 192-bit nonces, so no counter to keep).
//!
//! Wrapped data keys live in the metadata store next to a *check*: a known value sealed by the
//! master key. Opening with another master key fails on the check, before anything is read,
//! with an error that says so; a data directory whose check exists cannot be opened without a
//! key. Rotation ([`rotate`]) unwraps every data key with the old master key and wraps it with
//! the new one in one metadata transaction; no data file is rewritten.
//!
//! A sealed value reads `[key id: u32 LE][nonce: 24 bytes][ciphertext and tag]`; the key id
//! names which of the tenant's data keys sealed it, so data keys can be added later without
//! rewriting old data.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use parking_lot::RwLock;
use sextant_model::TenantId;

use crate::meta::MetadataStore;
use crate::{Error, Result};

/// Bytes of a key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a nonce.
pub const NONCE_BYTES: usize = 24;
/// Bytes a sealed value adds to its plaintext: key id, nonce, tag.
pub const SEAL_OVERHEAD: usize = 4 + NONCE_BYTES + 16;
/// What the check seals.
const CHECK_PLAINTEXT: &[u8] = b"sextant master key check v1";
/// The data key id new tenants get.
const FIRST_KEY_ID: u32 = 1;

/// The master key: 32 bytes given as 64 hex digits.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_BYTES]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<MasterKey> {
        let bytes = hex::decode(text.trim()).map_err(|_| {
            Error::Crypto("a master key is 64 hex digits (32 bytes); this is not hex".to_owned())
        })?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|b: Vec<u8>| {
            Error::Crypto(format!(
                "a master key is 64 hex digits (32 bytes); this is {} bytes",
                b.len()
            ))
        })?;
        Ok(MasterKey(key))
    }

    /// Reads a key file of 64 hex digits.
    pub fn from_file(path: &Path) -> Result<MasterKey> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        MasterKey::from_hex(&text).map_err(|e| match e {
            Error::Crypto(message) => Error::Crypto(format!("`{}`: {message}", path.display())),
            other => other,
        })
    }

    /// A new random key, as hex (for `sextant keys generate`).
    pub fn generate_hex() -> String {
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).expect("the operating system's random source failed");
        hex::encode(key)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }
}

/// Seals `plaintext` with `cipher`, binding `aad`.
pub fn seal_with(cipher: &XChaCha20Poly1305, key_id: u32, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).expect("the operating system's random source failed");
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("XChaCha20-Poly1305 encryption does not fail for in-memory buffers");
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + plaintext.len());
    out.extend_from_slice(&key_id.to_le_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// The key id a sealed value names, if it is long enough to be one.
fn key_id_of(sealed: &[u8]) -> Option<u32> {
    (sealed.len() >= SEAL_OVERHEAD).then(|| u32::from_le_bytes(sealed[..4].try_into().unwrap()))
}

fn open_with(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let nonce = XNonce::from_slice(&sealed[4..4 + NONCE_BYTES]);
    cipher
        .decrypt(
            nonce,
            Payload {
                msg: &sealed[4 + NONCE_BYTES..],
                aad,
            },
        )
        .ok()
}

fn wrap_aad(tenant: &TenantId, key_id: u32) -> Vec<u8> {
    format!("sextant data key\0{tenant}\0{key_id}").into_bytes()
}

/// The tenants' data keys, unwrapped in memory; new tenants get one on first use.
pub struct Keyring {
    master: XChaCha20Poly1305,
    meta: Arc<dyn MetadataStore>,
    keys: RwLock<HashMap<(TenantId, u32), Arc<XChaCha20Poly1305>>>,
    current: RwLock<HashMap<TenantId, u32>>,
    /// Per tenant, a secret derived from its first data key that names sealed things (series)
    /// without showing their names.
    name_keys: RwLock<HashMap<TenantId, [u8; 32]>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("tenants", &self.current.read().len())
            .finish()
    }
}

impl Keyring {
    /// Opens the keyring of a data directory with `master`. The first open records the check;
    /// later ones verify it and fail with [`Error::Crypto`] for another key.
    pub fn open(master: &MasterKey, meta: Arc<dyn MetadataStore>) -> Result<Keyring> {
        let cipher = master.cipher();
        match meta.key_check()? {
            Some(check) => {
                if open_with(&cipher, b"check", &check).as_deref() != Some(CHECK_PLAINTEXT) {
                    return Err(Error::Crypto(
                        "the master key does not open this data directory (it was encrypted \
                         with another key)"
                            .to_owned(),
                    ));
                }
            }
            None => meta.set_key_check(&seal_with(&cipher, 0, b"check", CHECK_PLAINTEXT))?,
        }
        let keyring = Keyring {
            master: cipher,
            meta,
            keys: RwLock::new(HashMap::new()),
            current: RwLock::new(HashMap::new()),
            name_keys: RwLock::new(HashMap::new()),
        };
        for (tenant, key_id, wrapped) in keyring.meta.data_keys()? {
            let key = open_with(&keyring.master, &wrap_aad(&tenant, key_id), &wrapped)
                .filter(|k| k.len() == KEY_BYTES)
                .ok_or_else(|| {
                    Error::Crypto(format!(
                        "the data key {key_id} of tenant `{tenant}` does not unwrap: the \
                         metadata store is damaged"
                    ))
                })?;
            let cipher = Arc::new(XChaCha20Poly1305::new_from_slice(&key).expect("32 bytes"));
            keyring
                .keys
                .write()
                .insert((tenant.clone(), key_id), cipher);
            if key_id == FIRST_KEY_ID {
                keyring
                    .name_keys
                    .write()
                    .insert(tenant.clone(), name_key(&key));
            }
            let mut current = keyring.current.write();
            let newest = current.entry(tenant).or_insert(key_id);
            *newest = (*newest).max(key_id);
        }
        Ok(keyring)
    }

    /// The tenant's current data key (made and stored on first use) and its id.
    pub fn current(&self, tenant: &TenantId) -> Result<(u32, Arc<XChaCha20Poly1305>)> {
        if let Some(&id) = self.current.read().get(tenant) {
            return Ok((id, self.key(tenant, id)?));
        }
        let mut current = self.current.write();
        if let Some(&id) = current.get(tenant) {
            return Ok((id, self.key(tenant, id)?));
        }
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).expect("the operating system's random source failed");
        let id = FIRST_KEY_ID;
        let wrapped = seal_with(&self.master, 0, &wrap_aad(tenant, id), &key);
        self.meta.put_data_key(tenant, id, &wrapped)?;
        let cipher = Arc::new(XChaCha20Poly1305::new((&key).into()));
        self.keys
            .write()
            .insert((tenant.clone(), id), cipher.clone());
        self.name_keys
            .write()
            .insert(tenant.clone(), name_key(&key));
        current.insert(tenant.clone(), id);
        Ok((id, cipher))
    }

    /// The tenant's data key `id`.
    pub fn key(&self, tenant: &TenantId, id: u32) -> Result<Arc<XChaCha20Poly1305>> {
        self.keys
            .read()
            .get(&(tenant.clone(), id))
            .cloned()
            .ok_or_else(|| {
                Error::Crypto(format!(
                    "tenant `{tenant}` has no data key {id}: the data was written with keys \
                     this data directory does not hold"
                ))
            })
    }

    /// Seals `plaintext` for `tenant`, binding `aad` (what the value is, where it lives).
    pub fn seal(&self, tenant: &TenantId, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let (id, cipher) = self.current(tenant)?;
        Ok(seal_with(&cipher, id, aad, plaintext))
    }

    /// Opens what [`Keyring::seal`] sealed; a wrong tenant, `aad` or a changed byte fails.
    pub fn open_sealed(&self, tenant: &TenantId, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let id = key_id_of(sealed)
            .ok_or_else(|| Error::Crypto("an encrypted value is truncated".to_owned()))?;
        open_with(&*self.key(tenant, id)?, aad, sealed).ok_or_else(|| {
            Error::Crypto(format!(
                "an encrypted value of tenant `{tenant}` does not open: it was changed or \
                 sealed with another key"
            ))
        })
    }
}

fn name_key(data_key: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(b"sextant names\0");
    hash.update(data_key);
    hash.finalize().into()
}

/// What a sealed payload or state starts with: `0xFF` can begin neither a protobuf message
/// (wire type 7 does not exist) nor the saved states' own encodings.
const SEALED_MAGIC: [u8; 4] = [0xFF, b'S', b'X', b'1'];

impl Keyring {
    /// A stable stand-in for `name` (a series key) that does not show it: keyed SHA-256, hex.
    pub fn hidden_name(&self, tenant: &TenantId, name: &str) -> Result<String> {
        use sha2::Digest;
        self.current(tenant)?;
        let key = *self
            .name_keys
            .read()
            .get(tenant)
            .ok_or_else(|| Error::Crypto(format!("tenant `{tenant}` has no data key 1")))?;
        let mut hash = sha2::Sha256::new();
        hash.update(key);
        hash.update(name.as_bytes());
        Ok(format!("sealed:{}", hex::encode(hash.finalize())))
    }
}

/// Seals `plain` (a WAL payload, a saved state) for `tenant` when a keyring is given; `what`
/// names what it is, so one kind of value cannot stand in for another.
pub fn seal_value(
    keyring: Option<&Keyring>,
    tenant: &TenantId,
    what: &str,
    plain: &[u8],
) -> Result<Vec<u8>> {
    let Some(keyring) = keyring else {
        return Ok(plain.to_vec());
    };
    let mut out = SEALED_MAGIC.to_vec();
    out.extend_from_slice(&keyring.seal(tenant, what.as_bytes(), plain)?);
    Ok(out)
}

/// Opens what [`seal_value`] made. A sealed value without a keyring, or one that does not open,
/// is an error; an unsealed value passes as it is (data from before encryption was on).
pub fn open_value<'a>(
    keyring: Option<&Keyring>,
    tenant: &TenantId,
    what: &str,
    stored: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>> {
    match (stored.strip_prefix(&SEALED_MAGIC), keyring) {
        (None, _) => Ok(std::borrow::Cow::Borrowed(stored)),
        (Some(sealed), Some(keyring)) => keyring
            .open_sealed(tenant, what.as_bytes(), sealed)
            .map(std::borrow::Cow::Owned),
        (Some(_), None) => Err(Error::Crypto(format!(
            "a {what} of tenant `{tenant}` is encrypted and no master key is configured"
        ))),
    }
}

/// Re-wraps every data key and the check under `new`, in one transaction; the data is left as
/// it is. Returns the tenants whose keys were re-wrapped.
pub fn rotate(meta: &dyn MetadataStore, old: &MasterKey, new: &MasterKey) -> Result<Vec<TenantId>> {
    let old_cipher = old.cipher();
    let new_cipher = new.cipher();
    let check = meta.key_check()?.ok_or_else(|| {
        Error::Crypto("this data directory is not encrypted; there is no key to rotate".to_owned())
    })?;
    if open_with(&old_cipher, b"check", &check).as_deref() != Some(CHECK_PLAINTEXT) {
        return Err(Error::Crypto(
            "the old master key does not open this data directory".to_owned(),
        ));
    }
    let mut rewrapped = Vec::new();
    for (tenant, id, wrapped) in meta.data_keys()? {
        let aad = wrap_aad(&tenant, id);
        let key = open_with(&old_cipher, &aad, &wrapped).ok_or_else(|| {
            Error::Crypto(format!(
                "the data key {id} of tenant `{tenant}` does not unwrap"
            ))
        })?;
        rewrapped.push((tenant, id, seal_with(&new_cipher, 0, &aad, &key)));
    }
    let new_check = seal_with(&new_cipher, 0, b"check", CHECK_PLAINTEXT);
    meta.replace_data_keys(&rewrapped, &new_check)?;
    let mut tenants: Vec<TenantId> = rewrapped.into_iter().map(|(t, _, _)| t).collect();
    tenants.dedup();
    Ok(tenants)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::SqliteMetadata;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_hex(&hex::encode([byte; 32])).unwrap()
    }

    #[test]
    fn sealed_values_open_only_with_their_tenant_aad_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetadataStore> =
            Arc::new(SqliteMetadata::open(&dir.path().join("meta.db")).unwrap());
        let acme = TenantId::new("acme").unwrap();
        let globex = TenantId::new("globex").unwrap();
        let keyring = Keyring::open(&key(1), meta.clone()).unwrap();
        let sealed = keyring.seal(&acme, b"wal", b"secret line").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            keyring.open_sealed(&acme, b"wal", &sealed).unwrap(),
            b"secret line"
        );
        keyring.seal(&globex, b"wal", b"x").unwrap();
        assert!(keyring.open_sealed(&globex, b"wal", &sealed).is_err());
        assert!(keyring.open_sealed(&acme, b"segment", &sealed).is_err());
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(keyring.open_sealed(&acme, b"wal", &changed).is_err());
        drop(keyring);

        // The same key opens the directory again and finds the data keys.
        let again = Keyring::open(&key(1), meta.clone()).unwrap();
        assert_eq!(
            again.open_sealed(&acme, b"wal", &sealed).unwrap(),
            b"secret line"
        );
        // Another key is refused at once, and says so.
        let wrong = Keyring::open(&key(2), meta.clone())
            .unwrap_err()
            .to_string();
        assert!(
            wrong.contains("does not open this data directory"),
            "{wrong}"
        );

        // Rotation: the new key opens the old data; the old key no longer opens anything.
        let rotated = rotate(meta.as_ref(), &key(1), &key(3)).unwrap();
        assert_eq!(rotated, [acme.clone(), globex]);
        let after = Keyring::open(&key(3), meta.clone()).unwrap();
        assert_eq!(
            after.open_sealed(&acme, b"wal", &sealed).unwrap(),
            b"secret line"
        );
        assert!(Keyring::open(&key(1), meta.clone()).is_err());
        assert!(rotate(meta.as_ref(), &key(1), &key(4)).is_err());
    }

    #[test]
    fn master_keys_must_be_64_hex_digits() {
        assert!(MasterKey::from_hex(&"ab".repeat(32)).is_ok());
        for bad in ["", "xyz", &"ab".repeat(31)] {
            let error = MasterKey::from_hex(bad).unwrap_err().to_string();
            assert!(error.contains("64 hex digits"), "{error}");
        }
        assert_eq!(MasterKey::generate_hex().len(), 64);
    }
}
