//! [`Runbook`]: what to do when an incident matches — a match on the incident's properties,
//! then ordered steps (a webhook, a chat message, an operator's action, a wait for approval)
//! with the safety settings around them. Read from TOML, checked at load with the line and the
//! reason of every problem, matched against incidents, and templated from them.
//!
//! ```toml
//! name = "restart-payment"            # letters, digits, `-`, `_`
//! description = "restart payment when it runs out of memory"
//! dry_run = false                     # true: record each step, do nothing
//! cooldown_seconds = 600              # no new run within this long of the last
//! max_runs_per_hour = 4
//!
//! [match]                             # every given condition must hold
//! services = ["payment"]              # the incident touches one of these
//! severity = "critical"               # at least this severity
//! labels = { team = "payments" }      # some member has all of these labels
//! root_cause = "payment"              # the ranking puts this service first
//! pattern = "OutOfMemory"             # a member's title contains this text
//!
//! [[step]]
//! kind = "chat"                       # Slack- and Teams-compatible incoming webhook
//! url = "https://chat.example/hooks/T0"
//! format = "slack"                    # or "teams"
//!
//! [[step]]
//! kind = "wait_for_approval"
//! expires_seconds = 1800
//!
//! [[step]]
//! kind = "webhook"
//! method = "POST"
//! url = "https://orchestrator.example/restart"
//! headers = { Authorization = "Bearer {{secret:orchestrator}}" }
//! body = '{"service": "{{incident.root_cause}}", "incident": {{incident.id}}}'
//! retries = 3
//!
//! [[step]]
//! kind = "action"                     # a program the operator defined (`crate::action`)
//! action = "restart-service"
//! params = { service = "{{incident.root_cause}}" }   # checked after templating, every run
//! continue_on_error = true            # any step: a failure does not stop the run
//! ```
//!
//! Templates: `{{incident.id}}`, `{{incident.title}}`, `{{incident.severity}}`,
//! `{{incident.status}}`, `{{incident.services}}` (comma-separated), `{{incident.root_cause}}`
//! (empty before a ranking), `{{incident.summary}}`, `{{incident.link}}`, and
//! `{{secret:NAME}}` (a stored secret, resolved only when the step runs, never shown; not in an
//! action's parameters, which a process list would show).
//!
//! A tenant never names a program: the `command` step of earlier versions (a program and its
//! arguments in the runbook) is refused at load, with what to write instead.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::action::Actions;
use crate::correlator::{Incident, severity_rank};

/// Longest runbook file, in bytes.
pub const MAX_RUNBOOK_BYTES: usize = 64 * 1024;
/// Most steps in a runbook.
pub const MAX_STEPS: usize = 32;
/// Longest an approval may wait, in seconds.
pub const MAX_APPROVAL_SECONDS: u64 = 7 * 86_400;

/// A problem in a runbook file: where, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct RunbookError {
    pub file: String,
    /// 1-based; 1 when the problem is the whole file.
    pub line: usize,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub root_cause: Option<String>,
    #[serde(default)]
    pub pattern: Option<String>,
}

fn default_method() -> String {
    "POST".into()
}
fn default_retries() -> u32 {
    2
}
fn default_approval_seconds() -> u64 {
    3_600
}
fn default_format() -> String {
    "slack".into()
}

/// One step of a runbook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    Webhook {
        #[serde(default = "default_method")]
        method: String,
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// A JSON body template; empty sends the incident summary as JSON.
        #[serde(default)]
        body: String,
        /// Retries after the first try, with back-off (1 s, 2 s, 4 s, ...).
        #[serde(default = "default_retries")]
        retries: u32,
        #[serde(default)]
        continue_on_error: bool,
    },
    Chat {
        url: String,
        /// `slack` or `teams`.
        #[serde(default = "default_format")]
        format: String,
        #[serde(default)]
        continue_on_error: bool,
    },
    /// An action the operator defined in the server's configuration, with its parameters
    /// (templates, checked against the action's parameter types when the step runs).
    Action {
        action: String,
        #[serde(default)]
        params: BTreeMap<String, String>,
        #[serde(default)]
        continue_on_error: bool,
    },
    /// A program and arguments named by the runbook, as earlier versions took them: refused by
    /// [`Runbook::parse`], and never run. It is kept only so that runs stored before the change
    /// still read (their remaining command steps fail).
    Command {
        #[serde(default)]
        program: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        timeout_seconds: u64,
        #[serde(default)]
        env: Vec<String>,
        #[serde(default)]
        continue_on_error: bool,
    },
    WaitForApproval {
        #[serde(default = "default_approval_seconds")]
        expires_seconds: u64,
    },
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Webhook { .. } => "webhook",
            Step::Chat { .. } => "chat",
            Step::Action { .. } => "action",
            Step::Command { .. } => "command",
            Step::WaitForApproval { .. } => "wait_for_approval",
        }
    }

    pub fn continue_on_error(&self) -> bool {
        match self {
            Step::Webhook {
                continue_on_error, ..
            }
            | Step::Chat {
                continue_on_error, ..
            }
            | Step::Action {
                continue_on_error, ..
            }
            | Step::Command {
                continue_on_error, ..
            } => *continue_on_error,
            Step::WaitForApproval { .. } => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub cooldown_seconds: u64,
    #[serde(default)]
    pub max_runs_per_hour: Option<u32>,
    #[serde(default, rename = "match")]
    pub matcher: Match,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

/// The line of the `n`-th (0-based) `[[step]]` header of `text`, or 1.
fn step_line(text: &str, n: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[step]]"))
        .nth(n)
        .map_or(1, |(i, _)| i + 1)
}

/// The line of the first line starting with `key` (as `key =`), or 1.
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

impl Runbook {
    /// Parses and checks `text` (the contents of `file`); every problem names its line.
    pub fn parse(file: &str, text: &str) -> Result<Runbook, RunbookError> {
        let error = |line: usize, reason: String| RunbookError {
            file: file.to_owned(),
            line,
            reason,
        };
        if text.len() > MAX_RUNBOOK_BYTES {
            return Err(error(1, format!("longer than {MAX_RUNBOOK_BYTES} bytes")));
        }
        let runbook: Runbook = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |span| {
                text[..span.start.min(text.len())].lines().count().max(1)
            });
            let line = if e
                .span()
                .is_some_and(|s| text[..s.start.min(text.len())].ends_with('\n'))
            {
                line + 1
            } else {
                line
            };
            error(line, e.message().to_owned())
        })?;
        let name_ok = !runbook.name.is_empty()
            && runbook.name.len() <= 64
            && runbook
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(error(
                key_line(text, "name"),
                "`name` must be 1 to 64 letters, digits, `-` or `_`".into(),
            ));
        }
        if let Some(severity) = &runbook.matcher.severity
            && severity_rank(severity) == 0
        {
            return Err(error(
                key_line(text, "severity"),
                format!("severity `{severity}`: info, warning, error or critical"),
            ));
        }
        if runbook.steps.is_empty() {
            return Err(error(1, "a runbook needs at least one `[[step]]`".into()));
        }
        if runbook.steps.len() > MAX_STEPS {
            return Err(error(
                step_line(text, MAX_STEPS),
                format!("more than {MAX_STEPS} steps"),
            ));
        }
        if runbook.max_runs_per_hour == Some(0) {
            return Err(error(
                key_line(text, "max_runs_per_hour"),
                "`max_runs_per_hour` must be at least 1 (use dry_run to stop a runbook)".into(),
            ));
        }
        for (i, step) in runbook.steps.iter().enumerate() {
            let at = step_line(text, i);
            let url_ok = |url: &str| url.starts_with("http://") || url.starts_with("https://");
            match step {
                Step::Webhook { method, url, .. } => {
                    if !url_ok(url) {
                        return Err(error(
                            at,
                            format!("step {}: `url` must be http:// or https://", i + 1),
                        ));
                    }
                    if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                        return Err(error(
                            at,
                            format!(
                                "step {}: method `{method}`: GET, POST, PUT, PATCH or DELETE",
                                i + 1
                            ),
                        ));
                    }
                }
                Step::Chat { url, format, .. } => {
                    if !url_ok(url) {
                        return Err(error(
                            at,
                            format!("step {}: `url` must be http:// or https://", i + 1),
                        ));
                    }
                    if !matches!(format.as_str(), "slack" | "teams") {
                        return Err(error(
                            at,
                            format!("step {}: format `{format}`: slack or teams", i + 1),
                        ));
                    }
                }
                Step::Command { .. } => {
                    return Err(error(
                        at,
                        format!(
                            "step {}: `command` steps are not accepted: the programs runbooks run \
                             are defined by the operator in the server's configuration. Write \
                             kind = \"action\", action = \"NAME\", params = {{ ... }} with an \
                             action offered to this tenant (GET /api/v1/actions lists them)",
                            i + 1
                        ),
                    ));
                }
                Step::Action { action, params, .. } => {
                    if action.is_empty() {
                        return Err(error(at, format!("step {}: `action` is empty", i + 1)));
                    }
                    for (param, value) in params {
                        if value.contains("{{secret:") {
                            return Err(error(
                                at,
                                format!(
                                    "step {}: parameter `{param}`: secrets cannot be action \
                                     parameters (a process list shows arguments); the operator \
                                     gives an action its secrets in its `env`",
                                    i + 1
                                ),
                            ));
                        }
                        if let Err(why) =
                            render(value, &TemplateContext::default(), Escape::None, &|_| None)
                        {
                            return Err(error(
                                at,
                                format!("step {}: parameter `{param}`: {why}", i + 1),
                            ));
                        }
                    }
                }
                Step::WaitForApproval { expires_seconds } => {
                    if !(1..=MAX_APPROVAL_SECONDS).contains(expires_seconds) {
                        return Err(error(
                            at,
                            format!(
                                "step {}: `expires_seconds` must be 1 to {MAX_APPROVAL_SECONDS}",
                                i + 1
                            ),
                        ));
                    }
                }
            }
        }
        Ok(runbook)
    }

    /// Checks the runbook's action steps against the actions `tenant` may use: each names one,
    /// gives exactly its parameters, and every value without a template is allowed already
    /// (templated values are checked when the step runs). `text` is the file, for line numbers.
    pub fn check_actions(
        &self,
        file: &str,
        text: &str,
        tenant: &str,
        actions: &Actions,
    ) -> Result<(), RunbookError> {
        for (i, step) in self.steps.iter().enumerate() {
            let Step::Action { action, params, .. } = step else {
                continue;
            };
            let refuse = |reason: String| RunbookError {
                file: file.to_owned(),
                line: step_line(text, i),
                reason: format!("step {}: {reason}", i + 1),
            };
            let Some(defined) = actions.get(tenant, action) else {
                let offered: Vec<String> = actions
                    .available_to(tenant)
                    .into_iter()
                    .map(|a| format!("`{}`", a.name))
                    .collect();
                return Err(refuse(format!(
                    "no action `{action}` for this tenant (offered: {})",
                    if offered.is_empty() {
                        "none; the operator defines actions in the server's configuration".into()
                    } else {
                        offered.join(", ")
                    }
                )));
            };
            defined.check_names(params.keys()).map_err(refuse)?;
            for (param, value) in params.iter().filter(|(_, v)| !v.contains("{{")) {
                defined.check(param, value).map_err(refuse)?;
            }
        }
        Ok(())
    }

    /// Whether `incident` (with its ranked-first service, if any) meets every condition.
    pub fn matches(&self, incident: &Incident, root_cause: Option<&str>) -> bool {
        let m = &self.matcher;
        (m.services.is_empty() || m.services.iter().any(|s| incident.services.contains(s)))
            && m.severity
                .as_ref()
                .is_none_or(|s| severity_rank(&incident.severity) >= severity_rank(s))
            && (m.labels.is_empty()
                || incident.members.iter().any(|member| {
                    m.labels
                        .iter()
                        .all(|(k, v)| member.labels.get(k) == Some(v))
                }))
            && m.root_cause
                .as_ref()
                .is_none_or(|want| root_cause == Some(want.as_str()))
            && m.pattern.as_ref().is_none_or(|p| {
                incident
                    .members
                    .iter()
                    .any(|member| member.title.contains(p.as_str()))
            })
    }
}

/// What templates can name of an incident.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateContext {
    pub id: u64,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub services: String,
    pub root_cause: String,
    pub summary: String,
    pub link: String,
}

impl TemplateContext {
    pub fn of(incident: &Incident, root_cause: Option<&str>, link: &str) -> TemplateContext {
        TemplateContext {
            id: incident.id,
            title: incident.title.clone(),
            severity: incident.severity.clone(),
            status: incident.status.as_str().to_owned(),
            services: incident
                .services
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            root_cause: root_cause.unwrap_or_default().to_owned(),
            summary: incident.explanation(),
            link: link.to_owned(),
        }
    }
}

/// How a value is put into a template: as it is, or escaped for a JSON string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    None,
    Json,
}

/// The names of the secrets `template` uses (`{{secret:NAME}}`).
pub fn secret_names(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        if let Some(name) = after[..end].trim().strip_prefix("secret:") {
            names.push(name.trim().to_owned());
        }
        rest = &after[end + 2..];
    }
    names
}

/// Fills `template`'s `{{incident.*}}` and `{{secret:NAME}}` placeholders; `secret` looks a
/// secret up (`None`: the template names an unknown secret, an error). Unknown placeholders
/// are errors too, so a typo never sends `{{incident.tilte}}` to an orchestrator.
pub fn render(
    template: &str,
    context: &TemplateContext,
    escape: Escape,
    secret: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a `{{` without its `}}`".to_owned())?;
        let name = after[..end].trim();
        let value = if let Some(secret_name) = name.strip_prefix("secret:") {
            secret(secret_name.trim())
                .ok_or_else(|| format!("no secret `{}`", secret_name.trim()))?
        } else {
            match name {
                "incident.id" => context.id.to_string(),
                "incident.title" => context.title.clone(),
                "incident.severity" => context.severity.clone(),
                "incident.status" => context.status.clone(),
                "incident.services" => context.services.clone(),
                "incident.root_cause" => context.root_cause.clone(),
                "incident.summary" => context.summary.clone(),
                "incident.link" => context.link.clone(),
                other => return Err(format!("unknown placeholder `{{{{{other}}}}}`")),
            }
        };
        match escape {
            Escape::None => out.push_str(&value),
            Escape::Json => {
                let quoted = serde_json::to_string(&value).expect("strings serialise");
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that mean something to TOML, for mutations.
    const TOML_BYTES: &[u8] = b"=[]{}\"\n#.x1";

    #[test]
    fn mutated_runbooks_are_refused_with_a_line_and_never_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let lines = GOOD.lines().count().max(1);
        for round in 0..20_000 {
            let mut bytes = GOOD.as_bytes().to_vec();
            for _ in 0..1 + round % 6 {
                let at = next() as usize % bytes.len().max(1);
                match next() % 3 {
                    0 if !bytes.is_empty() => bytes[at] = next() as u8,
                    1 => bytes.insert(at, TOML_BYTES[next() as usize % TOML_BYTES.len()]),
                    _ => bytes.truncate(at),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = Runbook::parse("r.toml", &text) {
                assert!(e.line >= 1 && e.line <= lines + 12, "{e:?}");
                assert!(!e.reason.is_empty());
            }
        }
    }

    const GOOD: &str = r#"
name = "restart-payment"
cooldown_seconds = 600

[match]
services = ["payment"]
severity = "error"

[[step]]
kind = "chat"
url = "http://127.0.0.1:1/hook"

[[step]]
kind = "action"
action = "restart"
params = { service = "{{incident.root_cause}}" }
"#;

    #[test]
    fn a_good_runbook_parses_with_its_defaults() {
        let runbook = Runbook::parse("r.toml", GOOD).unwrap();
        assert_eq!(runbook.steps.len(), 2);
        assert_eq!(runbook.steps[0].kind(), "chat");
        match &runbook.steps[1] {
            Step::Action {
                action,
                params,
                continue_on_error,
            } => {
                assert_eq!((action.as_str(), params.len()), ("restart", 1));
                assert!(!continue_on_error);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_runbooks_name_the_line_and_the_reason() {
        let check = |text: &str, line: usize, reason: &str| {
            let error = Runbook::parse("bad.toml", text).unwrap_err();
            assert_eq!(error.line, line, "{error}");
            assert!(error.reason.contains(reason), "{error}");
            assert!(error.to_string().starts_with(&format!("bad.toml:{line}: ")));
        };
        check(
            "name = \"x\"\n[[step]]\nkind = \"teleport\"\n",
            3,
            "teleport",
        );
        check(
            "name = \"x\"\nbogus = 1\n[[step]]\nkind = \"chat\"\nurl = \"http://a\"\n",
            2,
            "bogus",
        );
        check(
            "name = \"x y\"\n[[step]]\nkind = \"chat\"\nurl = \"http://a\"\n",
            1,
            "`name`",
        );
        check("name = \"x\"\n", 1, "at least one");
        check(
            "name = \"x\"\n[[step]]\nkind = \"chat\"\nurl = \"http://a\"\n[[step]]\nkind = \"command\"\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"id\"]\n",
            5,
            "`command` steps are not accepted",
        );
        check(
            "name = \"x\"\n[[step]]\nkind = \"action\"\naction = \"a\"\nparams = { p = \"{{secret:k}}\" }\n",
            2,
            "secrets cannot be action parameters",
        );
        check(
            "name = \"x\"\n[[step]]\nkind = \"action\"\naction = \"a\"\nparams = { p = \"{{incident.nope}}\" }\n",
            2,
            "unknown placeholder",
        );
        check(
            "name = \"x\"\n[[step]]\nkind = \"webhook\"\nurl = \"ftp://a\"\n",
            2,
            "http://",
        );
        check(
            "name = \"x\"\n[match]\nseverity = \"apocalyptic\"\n[[step]]\nkind = \"chat\"\nurl = \"http://a\"\n",
            3,
            "severity",
        );
        check(
            "name = \"x\"\nmax_runs_per_hour = 0\n[[step]]\nkind = \"chat\"\nurl = \"http://a\"\n",
            2,
            "at least 1",
        );
    }

    #[test]
    fn action_steps_are_checked_against_the_tenants_actions() {
        let specs: BTreeMap<String, crate::action::ActionSpec> = toml::from_str(
            "[restart]\nprogram = \"/bin/echo\"\nargs = [\"{{service}}\"]\ntenants = [\"shop\"]\n\
             [restart.params.service]\npattern = \"[a-z]+\"\n\
             [other]\nprogram = \"/bin/echo\"\ntenants = [\"elsewhere\"]\n",
        )
        .unwrap();
        let actions = Actions::new(&specs).unwrap();
        let check = |text: &str, tenant: &str, expected: Result<(), (usize, &str)>| {
            let runbook = Runbook::parse("r.toml", text).unwrap();
            match (
                runbook.check_actions("r.toml", text, tenant, &actions),
                expected,
            ) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err((line, reason))) => {
                    assert_eq!(e.line, line, "{e}");
                    assert!(e.reason.contains(reason), "{e}");
                }
                (got, want) => panic!("{text}: {got:?}, expected {want:?}"),
            }
        };
        check(GOOD, "shop", Ok(()));
        let step = "name = \"x\"\n[[step]]\nkind = \"chat\"\nurl = \"http://a\"\n[[step]]\nkind = \"action\"\n";
        check(
            GOOD,
            "elsewhere",
            Err((13, "no action `restart` for this tenant (offered: `other`)")),
        );
        check(
            &format!("{step}action = \"other\"\n"),
            "shop",
            Err((5, "no action `other` for this tenant (offered: `restart`)")),
        );
        check(
            &format!("{step}action = \"restart\"\n"),
            "shop",
            Err((5, "needs parameter `service`")),
        );
        check(
            &format!(
                "{step}action = \"restart\"\nparams = {{ service = \"a\", program = \"/bin/sh\" }}\n"
            ),
            "shop",
            Err((5, "no parameter `program`")),
        );
        // A literal value is checked at load; a template only when it runs.
        check(
            &format!("{step}action = \"restart\"\nparams = {{ service = \"x; id\" }}\n"),
            "shop",
            Err((5, "does not match `[a-z]+`")),
        );
        check(
            &format!(
                "{step}action = \"restart\"\nparams = {{ service = \"{{{{incident.services}}}}\" }}\n"
            ),
            "shop",
            Ok(()),
        );
    }

    #[test]
    fn secret_names_are_found() {
        assert_eq!(
            secret_names("Bearer {{secret:a}} {{ secret: b }} {{incident.id}} {{secret:c"),
            ["a", "b"]
        );
    }

    #[test]
    fn templates_fill_escape_and_refuse_unknown_names() {
        let context = TemplateContext {
            id: 7,
            title: "disk \"full\"".into(),
            root_cause: "db".into(),
            ..TemplateContext::default()
        };
        let secret = |name: &str| (name == "token").then(|| "s3cret".to_owned());
        let check = |template: &str, escape: Escape, expected: Result<&str, &str>| {
            let got = render(template, &context, escape, &secret);
            match expected {
                Ok(text) => assert_eq!(got.as_deref(), Ok(text), "{template}"),
                Err(reason) => assert!(got.unwrap_err().contains(reason), "{template}"),
            }
        };
        check(
            "#{{incident.id}} {{ incident.root_cause }}",
            Escape::None,
            Ok("#7 db"),
        );
        check(
            r#"{"t": "{{incident.title}}"}"#,
            Escape::Json,
            Ok(r#"{"t": "disk \"full\""}"#),
        );
        check("Bearer {{secret:token}}", Escape::None, Ok("Bearer s3cret"));
        check(
            "{{secret:missing}}",
            Escape::None,
            Err("no secret `missing`"),
        );
        check(
            "{{incident.tilte}}",
            Escape::None,
            Err("unknown placeholder"),
        );
        check("{{incident.id", Escape::None, Err("without its"));
    }
}
