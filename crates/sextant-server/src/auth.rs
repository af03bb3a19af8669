//! Bearer-token authentication: the token decides the tenant, the role and (if narrowed) the
//! scopes.
//!
//! Lookups go through a small cache in front of the metadata store, keyed by the token's
//! SHA-256 (so no comparison ever runs over a secret). Entries live one second, so a token
//! revoked from the command line stops working within a second on a running server, and a
//! flood of bad tokens costs one metadata lookup per distinct token per second. A token's
//! last-used time is written at most once a minute.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sextant_model::{Action, IngestKind, Role, Scope, TenantId};
use sextant_store::meta::{LAST_USED_RESOLUTION, MetadataStore, TokenInfo, hash_token};

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
    /// What the token is narrowed to; `None`: all its role allows.
    pub scopes: Option<Vec<Scope>>,
}

impl Principal {
    /// Sextant itself reading a tenant's data (`component` names who, for the audit trail).
    pub fn internal(tenant: &TenantId, component: &str) -> Principal {
        Principal {
            tenant: tenant.clone(),
            role: Role::Viewer,
            token_id: component.to_owned(),
            scopes: None,
        }
    }

    /// May this principal do `action`? Its role must allow it, and its scopes (if any) cover it.
    pub fn may(&self, action: Action) -> bool {
        self.role.allows(action)
            && self
                .scopes
                .as_ref()
                .is_none_or(|scopes| scopes.iter().any(|scope| scope.covers(action)))
    }

    /// `Ok` if the principal may do `action`, else a 403 that says what is missing.
    pub fn authorize(&self, action: Action) -> Result<(), ApiError> {
        if self.may(action) {
            return Ok(());
        }
        let what = action_words(action);
        Err(ApiError::Forbidden(if self.role.allows(action) {
            let scopes: Vec<&str> = self.scopes.iter().flatten().map(|s| s.as_str()).collect();
            format!(
                "this token is narrowed to scopes `{}` and may not {what}",
                scopes.join(",")
            )
        } else {
            format!("role `{}` may not {what}", self.role)
        }))
    }
}

/// What `action` is, in words ("ingest logs", "query telemetry").
pub(crate) fn action_words(action: Action) -> &'static str {
    match action {
        Action::Ingest(IngestKind::Logs) => "ingest logs",
        Action::Ingest(IngestKind::Metrics) => "ingest metrics",
        Action::Ingest(IngestKind::Traces) => "ingest traces",
        Action::Ingest(IngestKind::Alerts) => "ingest alerts",
        Action::Read => "query telemetry",
        Action::Edit => "change anything",
        Action::Administer => "administer the tenant",
    }
}

/// Checks bearer tokens against the metadata store.
pub struct Authenticator {
    meta: Arc<dyn MetadataStore>,
    /// Token hash → what the store said, and when.
    cache: Mutex<HashMap<String, (Option<TokenInfo>, Instant)>>,
    /// Token id → the last-used time last written.
    touched: Mutex<HashMap<String, i64>>,
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
            touched: Mutex::new(HashMap::new()),
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
        self.touch(&info, now);
        Ok(Principal {
            tenant: info.tenant,
            role: info.role,
            token_id: info.id,
            scopes: info.scopes,
        })
    }

    /// Writes the token's last-used time if the stored one is a minute old.
    fn touch(&self, info: &TokenInfo, now: i64) {
        let mut touched = self.touched.lock();
        let last = touched
            .get(&info.id)
            .copied()
            .or(info.last_used_at)
            .unwrap_or(i64::MIN);
        if now.saturating_sub(last) < LAST_USED_RESOLUTION {
            return;
        }
        if touched.len() >= CACHE_CAPACITY {
            touched.clear();
        }
        touched.insert(info.id.clone(), now);
        drop(touched);
        let (meta, id) = (self.meta.clone(), info.id.clone());
        let write = move || {
            if let Err(err) = meta.touch_token(&id, now) {
                tracing::warn!(token_id = %id, error = %err, "cannot record the token's last use");
            }
        };
        // A SQLite write: off the request's async worker when there is a runtime.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(write)),
            Err(_) => write(),
        }
    }

    fn lookup(&self, token: &str) -> Result<Option<TokenInfo>, ApiError> {
        let now = Instant::now();
        let key = hash_token(token);
        if let Some((info, at)) = self.cache.lock().get(&key)
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
        cache.insert(key, (info.clone(), now));
        Ok(info)
    }
}

/// Checks that a principal may ingest `kind`, and that an explicit tenant header (if sent)
/// names the token's own tenant.
pub fn authorize_ingest(
    principal: &Principal,
    kind: IngestKind,
    tenant_header: Option<&str>,
) -> Result<(), ApiError> {
    principal.authorize(Action::Ingest(kind))?;
    check_tenant_header(principal, tenant_header)
}

/// Checks that a principal may read telemetry.
pub fn authorize_query(principal: &Principal) -> Result<(), ApiError> {
    principal.authorize(Action::Read)
}

/// Checks that a principal may change things (feedback, rules, incident actions).
pub fn authorize_edit(principal: &Principal) -> Result<(), ApiError> {
    principal.authorize(Action::Edit)
}

/// Checks that a principal may administer its tenant (erasure, the audit trail).
pub fn authorize_admin(principal: &Principal) -> Result<(), ApiError> {
    principal.authorize(Action::Administer)
}

/// Header a client may send to state which tenant it means; it must match the token.
pub const TENANT_HEADER: &str = "x-sextant-tenant";

/// A middleware over every route: a request that names a tenant (the `X-Sextant-Tenant` header
/// or a `tenant` query parameter) must name its token's tenant, or it is refused with 403
/// before any handler runs, so no route can act on one tenant while the caller meant another.
/// The signed approval links, whose `tenant` parameter is part of what they sign, and gRPC
/// (whose methods check the header themselves and answer in gRPC's terms) are left to their
/// handlers; a request whose token does not authenticate is too (it gets its 401 there).
pub async fn tenant_guard(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let headers = request.headers();
    let grpc = headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let link = request.uri().path().ends_with("/link");
    let header = headers
        .get(TENANT_HEADER)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned());
    let parameter = (!link)
        .then(|| {
            axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(
                request.uri(),
            )
            .ok()
            .and_then(|query| query.0.get("tenant").cloned())
        })
        .flatten();
    if grpc || (header.is_none() && parameter.is_none()) {
        return next.run(request).await;
    }
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Ok(principal) = state.auth.authenticate(authorization) {
        for named in [header.as_deref(), parameter.as_deref()] {
            if let Err(refusal) = check_tenant_header(&principal, named) {
                return refusal.into_response();
            }
        }
    }
    next.run(request).await
}

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
    use sextant_store::meta::TokenStore;

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
            authorize_ingest(&principal, IngestKind::Logs, None),
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
            scopes: None,
        };
        let logs = IngestKind::Logs;
        assert!(authorize_ingest(&principal, logs, Some("acme")).is_ok());
        assert!(authorize_ingest(&principal, logs, None).is_ok());
        assert!(matches!(
            authorize_ingest(&principal, logs, Some("other")),
            Err(ApiError::Forbidden(_))
        ));
    }

    #[test]
    fn scopes_narrow_a_role_and_say_so() {
        let principal = Principal {
            tenant: TenantId::new("acme").unwrap(),
            role: Role::Admin,
            token_id: "t".into(),
            scopes: Some(vec![Scope::Ingest(Some(IngestKind::Metrics)), Scope::Read]),
        };
        assert!(authorize_ingest(&principal, IngestKind::Metrics, None).is_ok());
        assert!(authorize_query(&principal).is_ok());
        for refused in [
            authorize_ingest(&principal, IngestKind::Logs, None),
            authorize_edit(&principal),
            authorize_admin(&principal),
        ] {
            match refused {
                Err(ApiError::Forbidden(message)) => {
                    assert!(
                        message.contains("narrowed to scopes `ingest:metrics,read`"),
                        "{message}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        // Scopes never widen a role.
        let viewer = Principal {
            role: Role::Viewer,
            scopes: Some(vec![Scope::Edit]),
            ..principal
        };
        assert!(authorize_edit(&viewer).is_err());
    }

    #[test]
    fn last_use_is_recorded_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(SqliteMetadata::open(&dir.path().join("meta.db")).unwrap());
        let token = meta
            .create_token(&TenantId::new("acme").unwrap(), Role::Viewer)
            .unwrap();
        let auth = Authenticator::new(meta.clone());
        let header = format!("Bearer {}", token.secret);
        auth.authenticate(Some(&header)).unwrap();
        let first = meta.list_tokens().unwrap()[0].last_used_at.unwrap();
        meta.touch_token(&token.info.id, 5).unwrap();
        std::thread::sleep(CACHE_TTL);
        auth.authenticate(Some(&header)).unwrap();
        // Within the minute nothing is written again.
        assert_eq!(meta.list_tokens().unwrap()[0].last_used_at, Some(5));
        assert!(first > 1_700_000_000);
    }
}
