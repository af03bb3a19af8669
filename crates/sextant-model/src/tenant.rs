//! Tenants and roles: who owns a row, and what a token may do.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::{Error, Result};

/// The longest tenant name accepted.
pub const MAX_TENANT_LEN: usize = 64;

/// A tenant name: 1 to 64 characters of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
/// Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    pub fn new(name: &str) -> Result<TenantId> {
        let invalid = |reason| Error::InvalidTenant {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        if name.len() > MAX_TENANT_LEN {
            return Err(invalid("longer than 64 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(invalid("only a-z, 0-9, `-` and `_` are allowed"));
        }
        if !name.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(invalid("must start with a letter or digit"));
        }
        Ok(TenantId(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl serde::Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TenantId, D::Error> {
        let name = String::deserialize(deserializer)?;
        TenantId::new(&name).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a token may do. Each role includes the ones below it except `ingest`, which may only
/// write telemetry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including tenant administration and data deletion.
    Admin,
    /// Ingest, query, and change rules and runbooks.
    Editor,
    /// Query only.
    Viewer,
    /// Write telemetry only (for agents and collectors).
    Ingest,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Editor, Role::Viewer, Role::Ingest];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Ingest => "ingest",
        }
    }

    /// May send telemetry.
    pub fn can_ingest(self) -> bool {
        matches!(self, Role::Admin | Role::Editor | Role::Ingest)
    }

    /// May read telemetry and incidents.
    pub fn can_query(self) -> bool {
        matches!(self, Role::Admin | Role::Editor | Role::Viewer)
    }

    /// May change rules, give feedback and act on incidents.
    pub fn can_edit(self) -> bool {
        matches!(self, Role::Admin | Role::Editor)
    }

    /// May administer the tenant (tokens, retention, data deletion).
    pub fn can_administer(self) -> bool {
        matches!(self, Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| Error::UnknownRole { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_tenant(name: &str, ok: bool) {
        assert_eq!(TenantId::new(name).is_ok(), ok, "{name:?}");
    }

    #[test]
    fn tenant_names() {
        check_tenant("acme", true);
        check_tenant("acme-prod_2", true);
        check_tenant("0team", true);
        check_tenant("", false);
        check_tenant("Acme", false);
        check_tenant("-acme", false);
        check_tenant("a/b", false);
        check_tenant("../x", false);
        check_tenant(&"a".repeat(64), true);
        check_tenant(&"a".repeat(65), false);
    }

    #[test]
    fn roles() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert_eq!(
            "root".parse::<Role>().unwrap_err().to_string(),
            "unknown role `root` (expected one of admin, editor, viewer, ingest)"
        );
        assert!(Role::Ingest.can_ingest() && !Role::Ingest.can_query());
        assert!(Role::Viewer.can_query() && !Role::Viewer.can_ingest());
        assert!(Role::Admin.can_administer() && !Role::Editor.can_administer());
    }
}

/// What a request does, as far as authorization is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send telemetry or alerts of one kind.
    Ingest(IngestKind),
    /// Read telemetry, incidents, rules and runbooks.
    Read,
    /// Change rules, runbooks and secrets; act on incidents and runs; give feedback.
    Edit,
    /// Administer the tenant: erase its data, read its audit trail.
    Administer,
}

/// The kinds of data a narrowed ingest token may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IngestKind {
    /// OTLP logs, Loki push, NDJSON lines.
    Logs,
    /// OTLP metrics, Prometheus remote_write.
    Metrics,
    /// OTLP traces.
    Traces,
    /// Alertmanager webhooks and Sextant's JSON events.
    Alerts,
}

impl From<crate::Signal> for IngestKind {
    fn from(signal: crate::Signal) -> IngestKind {
        match signal {
            crate::Signal::Logs => IngestKind::Logs,
            crate::Signal::Metrics => IngestKind::Metrics,
            crate::Signal::Traces => IngestKind::Traces,
        }
    }
}

impl Role {
    /// May this role do `action` at all (before a token's scopes narrow it)?
    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::Ingest(_) => self.can_ingest(),
            Action::Read => self.can_query(),
            Action::Edit => self.can_edit(),
            Action::Administer => self.can_administer(),
        }
    }
}

/// A narrowing of a token's role: a token with scopes may do only what its role allows *and*
/// one of its scopes names. A token without scopes may do all its role allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read only.
    Read,
    /// Change things (implies nothing else: combine with `read` to see what is changed).
    Edit,
    /// Tenant administration.
    Admin,
    /// Ingest of every kind, or of one.
    Ingest(Option<IngestKind>),
}

impl Scope {
    /// Every scope's name, as `--scope` takes it and the metadata store keeps it.
    pub const NAMES: [&'static str; 8] = [
        "read",
        "edit",
        "admin",
        "ingest",
        "ingest:logs",
        "ingest:metrics",
        "ingest:traces",
        "ingest:alerts",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Edit => "edit",
            Scope::Admin => "admin",
            Scope::Ingest(None) => "ingest",
            Scope::Ingest(Some(IngestKind::Logs)) => "ingest:logs",
            Scope::Ingest(Some(IngestKind::Metrics)) => "ingest:metrics",
            Scope::Ingest(Some(IngestKind::Traces)) => "ingest:traces",
            Scope::Ingest(Some(IngestKind::Alerts)) => "ingest:alerts",
        }
    }

    /// Does this scope cover `action`?
    pub fn covers(self, action: Action) -> bool {
        match (self, action) {
            (Scope::Read, Action::Read)
            | (Scope::Edit, Action::Edit)
            | (Scope::Admin, Action::Administer)
            | (Scope::Ingest(None), Action::Ingest(_)) => true,
            (Scope::Ingest(Some(kind)), Action::Ingest(asked)) => kind == asked,
            _ => false,
        }
    }

    /// Parses a comma-separated list (`ingest:logs,read`); empty parts are refused.
    pub fn parse_list(text: &str) -> Result<Vec<Scope>> {
        text.split(',').map(|part| part.trim().parse()).collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = Error;

    fn from_str(s: &str) -> Result<Scope> {
        let all = [
            Scope::Read,
            Scope::Edit,
            Scope::Admin,
            Scope::Ingest(None),
            Scope::Ingest(Some(IngestKind::Logs)),
            Scope::Ingest(Some(IngestKind::Metrics)),
            Scope::Ingest(Some(IngestKind::Traces)),
            Scope::Ingest(Some(IngestKind::Alerts)),
        ];
        all.into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| Error::UnknownScope { name: s.to_owned() })
    }
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    #[test]
    fn scopes_narrow_and_parse_back() {
        for name in Scope::NAMES {
            assert_eq!(name.parse::<Scope>().unwrap().as_str(), name);
        }
        let logs = Scope::Ingest(Some(IngestKind::Logs));
        assert!(logs.covers(Action::Ingest(IngestKind::Logs)));
        assert!(!logs.covers(Action::Ingest(IngestKind::Metrics)));
        assert!(!logs.covers(Action::Read));
        assert!(Scope::Ingest(None).covers(Action::Ingest(IngestKind::Alerts)));
        assert!(!Scope::Read.covers(Action::Edit));
        assert_eq!(
            Scope::parse_list("ingest:logs, read").unwrap(),
            vec![logs, Scope::Read]
        );
        assert!(matches!(
            Scope::parse_list("read,"),
            Err(Error::UnknownScope { .. })
        ));
        assert!(Role::Viewer.allows(Action::Read) && !Role::Viewer.allows(Action::Edit));
    }
}
