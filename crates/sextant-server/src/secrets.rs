//! Runbook secrets: values sealed with XChaCha20-Poly1305 under a key kept in the data
//! directory (`secrets.key`, owner-only), bound to their tenant and name, and stored sealed.
//! `PUT /api/v1/secrets/{name}` (`{"value": "..."}`, editor or admin) and
//! `DELETE /api/v1/secrets/{name}` change them; `GET /api/v1/secrets` lists names and times
//! only — a value is never returned. Steps name them as `{{secret:NAME}}`; the run's record
//! shows `***` in their place.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use bytes::Bytes;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_model::TenantId;
use sextant_store::crypto::Keyring;

use crate::auth::authorize_edit;
use crate::read_params::format_time;
use crate::{ApiError, AppState};

/// Longest secret value, in bytes.
pub const MAX_SECRET_BYTES: usize = 16 * 1024;
/// Most secrets per tenant.
pub const MAX_SECRETS: usize = 1_000;

/// Seals and opens secrets, in one of two ways.
pub enum SecretBox {
    /// Under the key in `secrets.key`.
    KeyFile(XChaCha20Poly1305),
    /// Encryption at rest: under each tenant's data key.
    Keyring(Arc<Keyring>),
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox")
    }
}

/// The 32-byte key in `path`, made (random, owner-only) if the file is missing. A file of
/// another size is refused, never replaced: what was sealed or signed with it would be lost.
pub fn key_file(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    match std::fs::read(path) {
        Ok(bytes) => bytes.try_into().map_err(|bytes: Vec<u8>| {
            std::io::Error::other(format!(
                "`{}` holds {} bytes, not a 32-byte key",
                path.display(),
                bytes.len()
            ))
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(std::io::Error::other)?;
            std::fs::write(path, key)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(key)
        }
        Err(err) => Err(err),
    }
}

fn associated(tenant: &TenantId, name: &str) -> Vec<u8> {
    format!("{tenant}\0{name}").into_bytes()
}

impl SecretBox {
    /// The box with the key in `path`, made (32 random bytes, owner-only) if missing. A key file
    /// of another size is refused, never replaced: secrets sealed with it would be lost.
    pub fn open(path: &std::path::Path) -> std::io::Result<SecretBox> {
        let key = key_file(path)?;
        Ok(SecretBox::KeyFile(
            XChaCha20Poly1305::new_from_slice(&key).expect("a 32-byte key"),
        ))
    }

    /// With encryption at rest on: secrets are sealed with their tenant's data key (wrapped by
    /// the master key), and no key file is read or made.
    pub fn with_keyring(keyring: Arc<Keyring>) -> SecretBox {
        SecretBox::Keyring(keyring)
    }

    /// Nonce (24 bytes) then ciphertext with its tag; under a keyring, its sealed form.
    pub fn seal(&self, tenant: &TenantId, name: &str, value: &str) -> Result<Vec<u8>, ApiError> {
        let cipher = match self {
            SecretBox::KeyFile(cipher) => cipher,
            // A tenant's data key is made (and stored) on first use, which can fail.
            SecretBox::Keyring(keyring) => {
                return Ok(keyring.seal(tenant, &associated(tenant, name), value.as_bytes())?);
            }
        };
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let aad = associated(tenant, name);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("sealing cannot fail");
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// The value, or `None` when the sealed bytes were not made here for this tenant and name.
    pub fn unseal(&self, tenant: &TenantId, name: &str, sealed: &[u8]) -> Option<String> {
        let cipher = match self {
            SecretBox::KeyFile(cipher) => cipher,
            SecretBox::Keyring(keyring) => {
                let plain = keyring
                    .open_sealed(tenant, &associated(tenant, name), sealed)
                    .ok()?;
                return String::from_utf8(plain).ok();
            }
        };
        if sealed.len() < 24 {
            return None;
        }
        let aad = associated(tenant, name);
        let plain = cipher
            .decrypt(
                XNonce::from_slice(&sealed[..24]),
                Payload {
                    msg: &sealed[24..],
                    aad: &aad,
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }

    /// Every secret of `tenant` in the clear (for a step about to run); unreadable ones are
    /// left out and logged.
    pub fn all(&self, state: &AppState, tenant: &TenantId) -> HashMap<String, String> {
        let Ok(rows) = state.meta.secrets(tenant) else {
            return HashMap::new();
        };
        rows.into_iter()
            .filter_map(
                |(name, sealed, _)| match self.unseal(tenant, &name, &sealed) {
                    Some(value) => Some((name, value)),
                    None => {
                        tracing::error!(%tenant, %name, "secret cannot be opened with this key");
                        None
                    }
                },
            )
            .collect()
    }
}

fn valid_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiError::BadRequest(
            "a secret name is 1 to 64 letters, digits, `-`, `_` or `.`".into(),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: String,
}

pub async fn put(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    authorize_edit(&principal)?;
    valid_name(&name)?;
    let posted: SecretBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("the body must be {{\"value\": \"...\"}}: {e}"))
    })?;
    if posted.value.is_empty() || posted.value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::BadRequest(format!(
            "`value` must be 1 to {MAX_SECRET_BYTES} bytes"
        )));
    }
    let existing = state.meta.secrets(&principal.tenant)?;
    if existing.len() >= MAX_SECRETS && !existing.iter().any(|(n, _, _)| *n == name) {
        return Err(ApiError::BadRequest(format!(
            "the tenant has {MAX_SECRETS} secrets already"
        )));
    }
    let sealed =
        state
            .services()?
            .runbooks
            .secrets()
            .seal(&principal.tenant, &name, &posted.value)?;
    state.meta.put_secret(&principal.tenant, &name, &sealed)?;
    crate::audit::record(
        &state,
        &principal.tenant,
        &principal.token_id,
        "secret.put",
        &name,
        json!({}),
    )
    .await?;
    Ok(axum::Json(json!({ "name": name })))
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let rows = state.meta.secrets(&principal.tenant)?;
    Ok(axum::Json(json!({
        "secrets": rows.iter().map(|(name, _, at)| json!({
            "name": name,
            "updated_at": format_time(at.saturating_mul(1_000_000_000)),
        })).collect::<Vec<_>>(),
    })))
}

pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    authorize_edit(&principal)?;
    valid_name(&name)?;
    if !state.meta.delete_secret(&principal.tenant, &name)? {
        return Err(ApiError::NotFound(format!("no secret `{name}`")));
    }
    crate::audit::record(
        &state,
        &principal.tenant,
        &principal.token_id,
        "secret.delete",
        &name,
        json!({}),
    )
    .await?;
    Ok(axum::Json(json!({ "deleted": name })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_a_keyring_secrets_use_the_tenant_data_key_and_no_key_file() {
        use sextant_store::crypto::MasterKey;
        use sextant_store::meta::{MetadataStore, SqliteMetadata};
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetadataStore> =
            Arc::new(SqliteMetadata::open(&dir.path().join("meta.db")).unwrap());
        let master = MasterKey::from_hex(&"42".repeat(32)).unwrap();
        let keyring = Arc::new(Keyring::open(&master, meta.clone()).unwrap());
        let b = SecretBox::with_keyring(keyring);
        let ops = TenantId::new("ops").unwrap();
        let sealed = b.seal(&ops, "token", "s3cret").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(b.unseal(&ops, "token", &sealed).as_deref(), Some("s3cret"));
        assert_eq!(
            b.unseal(&TenantId::new("x").unwrap(), "token", &sealed),
            None
        );
        assert_eq!(b.unseal(&ops, "other", &sealed), None);
        // Another server with the same master key and metadata opens it.
        let again = SecretBox::with_keyring(Arc::new(Keyring::open(&master, meta).unwrap()));
        assert_eq!(
            again.unseal(&ops, "token", &sealed).as_deref(),
            Some("s3cret")
        );
        assert!(!dir.path().join("secrets.key").exists());
    }

    #[test]
    fn sealed_values_open_only_for_their_tenant_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let b = SecretBox::open(&path).unwrap();
        let (ops, other) = (
            TenantId::new("ops").unwrap(),
            TenantId::new("other").unwrap(),
        );
        let sealed = b.seal(&ops, "token", "s3cret").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(b.unseal(&ops, "token", &sealed).as_deref(), Some("s3cret"));
        assert_eq!(b.unseal(&other, "token", &sealed), None);
        assert_eq!(b.unseal(&ops, "other-name", &sealed), None);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(b.unseal(&ops, "token", &tampered), None);
        let again = SecretBox::open(&path).unwrap();
        assert_eq!(
            again.unseal(&ops, "token", &sealed).as_deref(),
            Some("s3cret")
        );
        std::fs::write(&path, b"short").unwrap();
        assert!(
            SecretBox::open(&path)
                .unwrap_err()
                .to_string()
                .contains("not a 32-byte key")
        );
    }
}
