//! `sextant tokens create|list|revoke`: API tokens in the metadata store.

use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use sextant_model::{Role, TenantId};
use sextant_store::meta::{MetadataStore, SqliteMetadata};

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
        } => {
            let tenant = TenantId::new(&tenant)?;
            let role: Role = role.parse()?;
            let expires_at = expires_in
                .as_deref()
                .map(|d| parse_duration(d).map(|seconds| now() + seconds))
                .transpose()?;
            let token = open_metadata(&data)?.create_expiring_token(&tenant, role, expires_at)?;
            let until = expires_at.map_or(String::new(), |at| {
                format!(", expiring at {at} (Unix seconds)")
            });
            eprintln!(
                "created token {} for tenant `{}` with role `{}`{until}; it is shown only now:",
                token.info.id, tenant, role
            );
            println!("{}", token.secret);
        }
        TokensCommand::List { data } => {
            println!(
                "{:<14} {:<24} {:<8} {:<12} {:<12} REVOKED",
                "ID", "TENANT", "ROLE", "CREATED", "EXPIRES"
            );
            for token in open_metadata(&data)?.list_tokens()? {
                println!(
                    "{:<14} {:<24} {:<8} {:<12} {:<12} {}",
                    token.id,
                    token.tenant,
                    token.role,
                    token.created_at,
                    token.expires_at.map_or("-".to_owned(), |t| t.to_string()),
                    token.revoked_at.map_or("-".to_owned(), |t| t.to_string())
                );
            }
        }
        TokensCommand::Revoke { data, id } => {
            let token = open_metadata(&data)?.revoke_token(&id)?;
            eprintln!("revoked token {} of tenant `{}`", token.id, token.tenant);
        }
    }
    Ok(())
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
    number.checked_mul(unit).filter(|s| *s > 0).ok_or_else(bad)
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
    }
}
