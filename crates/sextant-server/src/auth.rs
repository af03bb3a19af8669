//! Bearer-token authentication: the token decides the tenant and the role.
//!
//! Lookups go through a small cache in front of the metadata store. Entries live one second,
//! so a token revoked from the command line stops working within a second on a running server,
//! and a flood of bad tokens costs one metadata lookup per distinct token per second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sextant_model::{Role, TenantId};
use sextant_store::meta::{MetadataStore, TokenInfo};

use crate::ApiError;

/// How long a lookup result is reused.
const CACHE_TTL: Duration = Duration::from_secs(1);
/// Entries kept at most; the cache is emptied when it grows past this.
const CACHE_CAPACITY: usize = 10_000;

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub role: Role,
    pub token_id: String,
}

/// Checks bearer tokens against the metadata store.
pub struct Authenticator {
    meta: Arc<dyn MetadataStore>,
    cache: Mutex<HashMap<String, (Option<TokenInfo>, Instant)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator")
    }
}

impl Authenticator {
    pub fn new(meta: Arc<dyn MetadataStore>) -> Authenticator {
        Authenticator {
            meta,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Authenticates an `Authorization` header value (`Bearer TOKEN`).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let header = authorization.ok_or(ApiError::Unauthenticated(
            "missing `Authorization: Bearer TOKEN` header",
        ))?;
        let (scheme, token) = header
            .trim()
            .split_once(' ')
            .ok_or(ApiError::Unauthenticated(
                "malformed `Authorization` header",
            ))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthenticated(
                "`Authorization` must use the Bearer scheme",
            ));
        }
        let info = self
            .lookup(token.trim())?
            .ok_or(ApiError::Unauthenticated("unknown token"))?;
        if info.revoked_at.is_some() {
            return Err(ApiError::Unauthenticated("token has been revoked"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if info.expires_at.is_some_and(|at| now >= at) {
            return Err(ApiError::Unauthenticated("token has expired"));
        }
        Ok(Principal {
            tenant: info.tenant,
            role: info.role,
            token_id: info.id,
        })
    }

    fn lookup(&self, token: &str) -> Result<Option<TokenInfo>, ApiError> {
        let now = Instant::now();
        if let Some((info, at)) = self.cache.lock().get(token)
            && now.duration_since(*at) < CACHE_TTL
        {
            return Ok(info.clone());
        }
        let info = self.meta.find_token(token).map_err(|err| {
            tracing::error!(error = %err, "token lookup failed");
            ApiError::Internal
        })?;
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(token.to_owned(), (info.clone(), now));
        Ok(info)
    }
}

/// Checks that a principal may ingest, and that an explicit tenant header (if sent) names the
/// token's own tenant.
pub fn authorize_ingest(
    principal: &Principal,
    tenant_header: Option<&str>,
) -> Result<(), ApiError> {
    if !principal.role.can_ingest() {
        return Err(ApiError::Forbidden(format!(
            "role `{}` may not ingest telemetry",
            principal.role
        )));
    }
    check_tenant_header(principal, tenant_header)
}

/// Checks that a principal may read telemetry.
pub fn authorize_query(principal: &Principal) -> Result<(), ApiError> {
    if principal.role.can_query() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "role `{}` may not query telemetry",
            principal.role
        )))
    }
}

/// Checks that a principal may change things (feedback, rules, incident actions).
pub fn authorize_edit(principal: &Principal) -> Result<(), ApiError> {
    if principal.role.can_edit() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "role `{}` may not change anything; an `editor` or `admin` token may",
            principal.role
        )))
    }
}

/// Header a client may send to state which tenant it means; it must match the token.
pub const TENANT_HEADER: &str = "x-sextant-tenant";

fn check_tenant_header(principal: &Principal, tenant_header: Option<&str>) -> Result<(), ApiError> {
    match tenant_header {
        Some(name) if name != principal.tenant.as_str() => Err(ApiError::Forbidden(format!(
            "token belongs to tenant `{}`, not to `{name}`",
            principal.tenant
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use sextant_store::meta::SqliteMetadata;

    use super::*;

    #[test]
    fn tokens_decide_tenant_and_role() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(SqliteMetadata::open(&dir.path().join("meta.db")).unwrap());
        let acme = TenantId::new("acme").unwrap();
        let token = meta.create_token(&acme, Role::Viewer).unwrap();
        let auth = Authenticator::new(meta.clone());

        let principal = auth
            .authenticate(Some(&format!("Bearer {}", token.secret)))
            .unwrap();
        assert_eq!(principal.tenant, acme);
        assert!(matches!(
            authorize_ingest(&principal, None),
            Err(ApiError::Forbidden(_))
        ));

        for header in [
            None,
            Some("Basic abc"),
            Some("Bearer"),
            Some("Bearer sxt_nope"),
        ] {
            assert!(
                matches!(auth.authenticate(header), Err(ApiError::Unauthenticated(_))),
                "{header:?}"
            );
        }
    }

    #[test]
    fn tenant_header_must_match() {
        let principal = Principal {
            tenant: TenantId::new("acme").unwrap(),
            role: Role::Ingest,
            token_id: "t".into(),
        };
        assert!(authorize_ingest(&principal, Some("acme")).is_ok());
        assert!(authorize_ingest(&principal, None).is_ok());
        assert!(matches!(
            authorize_ingest(&principal, Some("other")),
            Err(ApiError::Forbidden(_))
        ));
    }
}
