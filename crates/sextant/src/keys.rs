//! `sextant keys generate|rotate`: the master key of encryption at rest. `generate` prints a
//! new key; `rotate` re-wraps a data directory's tenant data keys under a new master key (the
//! server stopped), recording `key.rotate` in every tenant's audit trail.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use sextant_store::crypto::{MasterKey, rotate};
use sextant_store::meta::AuditStore;

use crate::DataDirArg;

/// Environment variable that may hold the master key (64 hex digits) instead of a file.
pub const MASTER_KEY_ENV: &str = "SEXTANT_MASTER_KEY";

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random master key (64 hex digits) for `encryption.master_key_file`.
    Generate,
    /// Re-wrap the data keys under a new master key; no data file is rewritten. Stop the
    /// server first, then start it with the new key.
    Rotate {
        #[command(flatten)]
        data: DataDirArg,
        /// The current master key's file (or set SEXTANT_MASTER_KEY).
        #[arg(long, value_name = "FILE")]
        old_key_file: Option<PathBuf>,
        /// The new master key's file.
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
}

/// The master key from `file`, else from the environment; `None` if neither gives one.
pub fn master_key(file: Option<&std::path::Path>) -> anyhow::Result<Option<MasterKey>> {
    if let Some(file) = file {
        return Ok(Some(MasterKey::from_file(file)?));
    }
    match std::env::var(MASTER_KEY_ENV) {
        Ok(text) => Ok(Some(
            MasterKey::from_hex(&text).with_context(|| format!("`{MASTER_KEY_ENV}`"))?,
        )),
        Err(_) => Ok(None),
    }
}

pub fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate => println!("{}", MasterKey::generate_hex()),
        KeysCommand::Rotate {
            data,
            old_key_file,
            new_key_file,
        } => {
            let old = master_key(old_key_file.as_deref())?.with_context(|| {
                format!("give the current master key with `--old-key-file` or `{MASTER_KEY_ENV}`")
            })?;
            let new = MasterKey::from_file(&new_key_file)?;
            let meta = crate::tokens::open_existing_metadata(&data, false)?;
            let tenants = rotate(meta.as_ref(), &old, &new)?;
            let actor = crate::tokens::cli_actor();
            let records: Vec<_> = tenants
                .iter()
                .map(|tenant| {
                    crate::tokens::admin_record(
                        tenant,
                        &actor,
                        "key.rotate",
                        "master_key",
                        "{}".to_owned(),
                    )
                })
                .collect();
            meta.audit(&records)
                .context("keys rotated, but the audit trail could not record it")?;
            eprintln!(
                "re-wrapped the data keys of {} tenant(s) under the new master key; start the \
                 server with `{}`",
                tenants.len(),
                new_key_file.display()
            );
        }
    }
    Ok(())
}
