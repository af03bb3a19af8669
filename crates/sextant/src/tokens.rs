//! `sextant tokens create|list|revoke`: API tokens, in a data directory's metadata store or,
//! with `--url`, through a running server's `/api/v1/tokens` with an admin token.

use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use sextant_model::{Role, Scope, TenantId};
use sextant_store::meta::{
    AuditRecord, MetadataStore, SqliteMetadata, TokenInfo, TokenOptions, TokenStore,
};

use crate::DataDirArg;

/// Where the tokens are: a data directory, or a running server.
#[derive(Debug, clap::Args)]
pub struct Target {
    #[command(flatten)]
    data: DataDirArg,
    /// Work through a running server at this base URL (`http://127.0.0.1:7300`) instead of a
    /// data directory, with an admin token of the tenant (--token): only that tenant's tokens.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// With --url: an admin token of the tenant (else `SEXTANT_TOKEN`).
    #[arg(long)]
    token: Option<String>,
}

impl Target {
    /// The server to call, when `--url` was given.
    fn server(&self) -> anyhow::Result<Option<Server>> {
        let Some(url) = &self.url else {
            // (`SEXTANT_TOKEN` set for other commands is no mistake; `--token` given here is.)
            if self.token.is_some() {
                anyhow::bail!(
                    "--token goes with --url (a running server's token API); without --url the \
                     data directory's tokens are changed directly and no token is used"
                );
            }
            return Ok(None);
        };
        let token = self
            .token
            .clone()
            .or_else(|| std::env::var("SEXTANT_TOKEN").ok());
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            anyhow::bail!("--url needs an admin token of the tenant: --token or SEXTANT_TOKEN");
        };
        eprintln!("server: {url}");
        Ok(Some(Server {
            base: url.trim_end_matches('/').to_owned(),
            token,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent(),
        }))
    }
}

/// A running server's token API.
struct Server {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// A call to the token API.
enum Verb {
    Get,
    Post(serde_json::Value),
    Delete,
}

impl Server {
    /// Calls `/api/v1/tokens{path}`; the answer's JSON, or an error with the server's message.
    /// `tenant`: the tenant the caller means (the server refuses one that is not its token's).
    fn call(
        &self,
        verb: Verb,
        path: &str,
        tenant: Option<&str>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}/api/v1/tokens{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let sent = match verb {
            Verb::Get => self.agent.get(&url).header("Authorization", &auth).call(),
            Verb::Delete => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            Verb::Post(body) => {
                let mut request = self
                    .agent
                    .post(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json");
                if let Some(tenant) = tenant {
                    request = request.header("X-Sextant-Tenant", tenant);
                }
                request.send(body.to_string().as_bytes())
            }
        };
        let mut response = sent.with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .context("cannot read the answer")?;
        let answer: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        if !status.is_success() {
            let message = answer
                .as_ref()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            anyhow::bail!("{url}: {} {message}", status.as_u16());
        }
        answer.with_context(|| format!("{url}: the answer is not JSON"))
    }
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it once (only its hash is stored).
    Create {
        #[command(flatten)]
        target: Target,
        /// Tenant the token belongs to (a-z, 0-9, `-`, `_`); created if new. With --url, the
        /// admin token's own tenant (named or not).
        #[arg(long)]
        tenant: Option<String>,
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
        target: Target,
    },
    /// Revoke a token by id; a running server stops accepting it within a second.
    Revoke {
        #[command(flatten)]
        target: Target,
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
            target,
            tenant,
            role,
            expires_in,
            scope,
            init,
        } => {
            let tenant = tenant.as_deref().map(TenantId::new).transpose()?;
            let role: Role = role.parse()?;
            let lifetime = expires_in.as_deref().map(parse_duration).transpose()?;
            let scopes = scope
                .as_deref()
                .map(Scope::parse_list)
                .transpose()
                .context("`--scope`")?;
            let (secret, info) = if let Some(server) = target.server()? {
                if init {
                    anyhow::bail!("--init creates a data directory: it does not go with --url");
                }
                let body = serde_json::json!({
                    "role": role.as_str(),
                    "expires_in_seconds": lifetime,
                    "scopes": scopes.as_ref().map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
                });
                let answer =
                    server.call(Verb::Post(body), "", tenant.as_ref().map(TenantId::as_str))?;
                let secret = answer["token"].as_str().unwrap_or_default().to_owned();
                (secret, info_from_json(&answer)?)
            } else {
                let Some(tenant) = tenant else {
                    anyhow::bail!("--tenant is needed to create a token in a data directory");
                };
                let options = TokenOptions {
                    expires_at: lifetime.map(|seconds| now() + seconds),
                    scopes,
                };
                let meta = open_existing_metadata(&target.data, init)?;
                let token = meta.create_token_with(&tenant, role, &options)?;
                audit_token(meta.as_ref(), &cli_actor(), "token.create", &token.info)?;
                (token.secret, token.info)
            };
            let until = info.expires_at.map_or(String::new(), |at| {
                format!(", expiring at {}", time(Some(at)))
            });
            let narrowed = info.scopes.as_ref().map_or(String::new(), |scopes| {
                format!(", narrowed to `{}`", scope_list(scopes))
            });
            eprintln!(
                "created token {} for tenant `{}` with role `{}`{narrowed}{until}; it is shown only now:",
                info.id, info.tenant, info.role
            );
            println!("{secret}");
        }
        TokensCommand::List { target } => {
            let tokens = match target.server()? {
                Some(server) => server.call(Verb::Get, "", None)?["tokens"]
                    .as_array()
                    .map(|tokens| tokens.iter().map(info_from_json).collect())
                    .unwrap_or(Ok(Vec::new()))?,
                None => open_existing_metadata(&target.data, false)?.list_tokens()?,
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
            for token in tokens {
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
        TokensCommand::Revoke { target, id } => {
            let token = match target.server()? {
                Some(server) => {
                    info_from_json(&server.call(Verb::Delete, &format!("/{id}"), None)?)?
                }
                None => {
                    let meta = open_existing_metadata(&target.data, false)?;
                    let token = meta.revoke_token(&id)?;
                    audit_token(meta.as_ref(), &cli_actor(), "token.revoke", &token)?;
                    token
                }
            };
            eprintln!("revoked token {} of tenant `{}`", token.id, token.tenant);
        }
    }
    Ok(())
}

/// Unix seconds as RFC 3339, `-` for none.
fn time(t: Option<i64>) -> String {
    t.map_or("-".to_owned(), |t| {
        sextant_model::time::format_rfc3339(t.saturating_mul(1_000_000_000))
    })
}

/// A token as `/api/v1/tokens` answers it.
fn info_from_json(token: &serde_json::Value) -> anyhow::Result<TokenInfo> {
    let text = |name: &str| token[name].as_str().unwrap_or_default();
    let time = |name: &str| -> anyhow::Result<Option<i64>> {
        match token[name].as_str() {
            None => Ok(None),
            Some(t) => sextant_model::time::parse_rfc3339(t)
                .map(|ns| Some(ns.div_euclid(1_000_000_000)))
                .with_context(|| format!("the server's `{name}` is not RFC 3339: {t}")),
        }
    };
    let scopes = match token["scopes"].as_array() {
        None => None,
        Some(names) => {
            let names: Vec<&str> = names.iter().filter_map(|n| n.as_str()).collect();
            Some(Scope::parse_list(&names.join(","))?)
        }
    };
    Ok(TokenInfo {
        id: text("id").to_owned(),
        tenant: TenantId::new(text("tenant"))?,
        role: text("role").parse()?,
        created_at: time("created_at")?.unwrap_or(0),
        revoked_at: time("revoked_at")?,
        expires_at: time("expires_at")?,
        scopes,
        last_used_at: time("last_used_at")?,
    })
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
    meta.audit(&[admin_record(
        &token.tenant,
        actor,
        kind,
        &token.id,
        token.audit_detail().to_string(),
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
