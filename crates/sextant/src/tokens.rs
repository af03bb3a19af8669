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
        TokensCommand::Create { data, tenant, role } => {
            let tenant = TenantId::new(&tenant)?;
            let role: Role = role.parse()?;
            let token = open_metadata(&data)?.create_token(&tenant, role)?;
            eprintln!(
                "created token {} for tenant `{}` with role `{}`; it is shown only now:",
                token.info.id, tenant, role
            );
            println!("{}", token.secret);
        }
        TokensCommand::List { data } => {
            println!(
                "{:<14} {:<24} {:<8} {:<12} REVOKED",
                "ID", "TENANT", "ROLE", "CREATED"
            );
            for token in open_metadata(&data)?.list_tokens()? {
                println!(
                    "{:<14} {:<24} {:<8} {:<12} {}",
                    token.id,
                    token.tenant,
                    token.role,
                    token.created_at,
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
