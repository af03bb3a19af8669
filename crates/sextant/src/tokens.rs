//! `sextant tokens create|list|revoke`: API tokens in the metadata store.

use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use sextant_model::{Role, Scope, TenantId};
use sextant_store::meta::{AuditRecord, MetadataStore, SqliteMetadata, TokenOptions};

use crate::DataDirArg;

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it once (only its hash is stored).
    Create {
        #[command(flatten)]
        data: DataDirArg,
        /// Tenant the token belongs to (a-z, 0-9, `-`, `_`); created if new.
        #[arg(long)]
        tenant: String,
        /// One of admin, editor, viewer, ingest.
        #[arg(long)]
        role: String,
        /// Refuse the token after this long: a whole number with `s`, `m`, `h` or `d` (`90d`).
        /// Default: it never expires.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// Narrow the token within its role: a comma-separated list of read, edit, admin,
        /// ingest, ingest:logs, ingest:metrics, ingest:traces, ingest:alerts. Default: all its
        /// role allows.
        #[arg(long, value_name = "SCOPES")]
        scope: Option<String>,
        /// Create the data directory if there is none yet (without it, a directory that is not
        /// Sextant's is refused, so a mistyped path cannot hand out a token no server knows).
        #[arg(long)]
        init: bool,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Revoke a token by id; a running server stops accepting it within a second.
    Revoke {
        #[command(flatten)]
        data: DataDirArg,
        /// The token's id, as `tokens list` shows it.
        id: String,
    },
}

/// The metadata of an existing data directory: one without `meta.db` is refused, naming the
/// directory, unless `init` (then it is created). Says on standard error which directory it
/// uses.
pub fn open_existing_metadata(
    data: &DataDirArg,
    init: bool,
) -> anyhow::Result<Arc<SqliteMetadata>> {
    let path = sextant_store::metadata_path(&data.data_dir);
    let shown = std::path::absolute(&data.data_dir).unwrap_or_else(|_| data.data_dir.clone());
    if !init && !path.exists() {
        anyhow::bail!(
            "`{}` is not a Sextant data directory (it holds no meta.db): give the directory \
             `sextant serve` uses with --data-dir (or SEXTANT_DATA_DIR){}",
            shown.display(),
            if data.data_dir.exists() {
                ""
            } else {
                ", or --init to create a new one there"
            }
        );
    }
    eprintln!("data directory: {}", shown.display());
    open_metadata(data)
}

pub fn open_metadata(data: &DataDirArg) -> anyhow::Result<Arc<SqliteMetadata>> {
    let path = sextant_store::metadata_path(&data.data_dir);
    let meta = SqliteMetadata::open(&path)
        .with_context(|| format!("cannot open metadata `{}`", path.display()))?;
    Ok(Arc::new(meta))
}

pub fn run(command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create {
            data,
            tenant,
            role,
            expires_in,
            scope,
            init,
        } => {
            let tenant = TenantId::new(&tenant)?;
            let role: Role = role.parse()?;
            let expires_at = expires_in
                .as_deref()
                .map(|d| parse_duration(d).map(|seconds| now() + seconds))
                .transpose()?;
            let scopes = scope
                .as_deref()
                .map(Scope::parse_list)
                .transpose()
                .context("`--scope`")?;
            let options = TokenOptions { expires_at, scopes };
            let meta = open_existing_metadata(&data, init)?;
            let token = meta.create_token_with(&tenant, role, &options)?;
            audit_token(meta.as_ref(), &cli_actor(), "token.create", &token.info)?;
            let until = expires_at.map_or(String::new(), |at| {
                format!(", expiring at {at} (Unix seconds)")
            });
            let narrowed = options.scopes.as_ref().map_or(String::new(), |scopes| {
                format!(", narrowed to `{}`", scope_list(scopes))
            });
            eprintln!(
                "created token {} for tenant `{}` with role `{}`{narrowed}{until}; it is shown only now:",
                token.info.id, tenant, role
            );
            println!("{}", token.secret);
        }
        TokensCommand::List { data } => {
            let time = |t: Option<i64>| {
                t.map_or("-".to_owned(), |t| {
                    sextant_model::time::format_rfc3339(t.saturating_mul(1_000_000_000))
                })
            };
            let mut rows = vec![
                [
                    "ID",
                    "TENANT",
                    "ROLE",
                    "SCOPES",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                    "REVOKED",
                ]
                .map(str::to_owned),
            ];
            for token in open_existing_metadata(&data, false)?.list_tokens()? {
                rows.push([
                    token.id,
                    token.tenant.to_string(),
                    token.role.to_string(),
                    token.scopes.as_deref().map_or("-".to_owned(), scope_list),
                    time(Some(token.created_at)),
                    time(token.expires_at),
                    time(token.last_used_at),
                    time(token.revoked_at),
                ]);
            }
            print!("{}", aligned(&rows));
        }
        TokensCommand::Revoke { data, id } => {
            let meta = open_existing_metadata(&data, false)?;
            let token = meta.revoke_token(&id)?;
            audit_token(meta.as_ref(), &cli_actor(), "token.revoke", &token)?;
            eprintln!("revoked token {} of tenant `{}`", token.id, token.tenant);
        }
    }
    Ok(())
}

/// `rows` as text columns, each as wide as its widest cell, two spaces apart.
fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

fn scope_list(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Who ran a command line: `cli` and the operating system user, if known.
pub fn cli_actor() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => "cli".to_owned(),
    }
}

/// Records a token's creation or revocation in its tenant's audit trail.
pub fn audit_token(
    meta: &dyn MetadataStore,
    actor: &str,
    kind: &str,
    token: &sextant_store::meta::TokenInfo,
) -> anyhow::Result<()> {
    let detail = serde_json::json!({
        "role": token.role.as_str(),
        "scopes": token.scopes.as_deref().map(scope_list),
        "expires_at": token.expires_at,
    });
    meta.audit(&[admin_record(
        &token.tenant,
        actor,
        kind,
        &token.id,
        detail.to_string(),
    )])
    .context("cannot record the change in the audit trail")
}

/// An audit record of an admin action made now (token, key or retention changes).
pub fn admin_record(
    tenant: &TenantId,
    actor: &str,
    kind: &str,
    subject: &str,
    detail: String,
) -> AuditRecord {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    AuditRecord {
        seq: 0,
        tenant: tenant.clone(),
        at,
        actor: actor.to_owned(),
        kind: kind.to_owned(),
        subject: subject.to_owned(),
        detail,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `30s`, `15m`, `12h`, `90d` as seconds.
fn parse_duration(text: &str) -> anyhow::Result<i64> {
    let bad = || {
        anyhow::anyhow!("`--expires-in {text}`: expected a whole number with s, m, h or d (`90d`)")
    };
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if number <= 0 {
        anyhow::bail!(
            "`--expires-in {text}`: a token must live more than zero seconds (leave the option \
             out for one that never expires)"
        );
    }
    number.checked_mul(unit).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_are_named() {
        assert_eq!(parse_duration("90d").unwrap(), 90 * 86_400);
        assert_eq!(parse_duration("2s").unwrap(), 2);
        for bad in ["", "d", "10", "10w", "-5m", "0s"] {
            assert!(
                parse_duration(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("--expires-in"),
                "{bad}"
            );
        }
        let zero = parse_duration("0s").unwrap_err().to_string();
        assert!(zero.contains("more than zero seconds"), "{zero}");
    }
}
