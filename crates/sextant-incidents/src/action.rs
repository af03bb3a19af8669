//! [`Actions`]: the programs runbooks may run, defined by the operator in the server's
//! configuration and never by a tenant. A tenant's runbook names an action and gives its
//! parameters; the program, its fixed arguments, its environment, its user, its time limit and
//! who may use it are the operator's.
//!
//! ```toml
//! [actions.restart-service]
//! description = "restart a service of the shop"   # shown to tenants
//! program = "/usr/bin/systemctl"                  # absolute path: no shell, no PATH lookup
//! args = ["restart", "{{service}}.service"]       # `{{NAME}}`: parameter NAME's value
//! tenants = ["shop"]                              # who may use it ("*": every tenant)
//! user = "sextant-actions"                        # a name from /etc/passwd, or "UID:GID"
//! timeout_seconds = 30                            # its process group is killed after it
//! env = { PATH = "/usr/bin:/bin" }                # exactly these variables, nothing else
//! working_dir = "/"
//!
//! [actions.restart-service.params.service]
//! pattern = "[a-z0-9-]+"                          # the whole value must match
//! # or: values = ["payment", "cart"]              # one of these
//! ```
//!
//! A value is checked after the runbook's templates are filled, at every run: it must be
//! non-empty, at most [`MAX_PARAM_BYTES`] long, free of control characters, and allowed by its
//! parameter; a pattern parameter also refuses a value starting with `-` (it would read as an
//! option), unless the pattern itself starts with `-`. The checks here are pure; running the
//! program (the user switch, `no_new_privs`, the process group) is the server's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Longest parameter value, in bytes.
pub const MAX_PARAM_BYTES: usize = 256;
/// Longest an action may run, in seconds.
pub const MAX_ACTION_SECONDS: u64 = 3_600;

fn default_timeout() -> u64 {
    60
}

fn default_working_dir() -> PathBuf {
    PathBuf::from("/")
}

/// One action as the operator writes it (`[actions.NAME]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// What it does, shown to the tenants that may use it. Default empty.
    #[serde(default)]
    pub description: String,
    /// Absolute path of the program (no shell, no `PATH` lookup).
    pub program: String,
    /// Fixed arguments; `{{NAME}}` inside one puts parameter NAME's checked value there.
    /// Default none.
    #[serde(default)]
    pub args: Vec<String>,
    /// The parameters a runbook must give, each with its allowed values or pattern.
    /// Default none.
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    /// Seconds before the action's process group is killed; 1 to 3600. Default 60.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// The environment, exactly: nothing of the server's is passed on. Default empty.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The user to run as: a name in `/etc/passwd` or `UID:GID`. Required when the server runs
    /// as root; never root. Default none (see `run_as_server_user`).
    #[serde(default)]
    pub user: Option<String>,
    /// Without `user`, run as the server's own user, who can read the data directory. The
    /// server refuses to start with such an action unless this is true. Default false.
    #[serde(default)]
    pub run_as_server_user: bool,
    /// Working directory (absolute, outside the data directory). Default `/`.
    #[serde(default = "default_working_dir")]
    pub working_dir: PathBuf,
    /// Tenants that may use the action; `"*"` for every tenant. Default none.
    #[serde(default)]
    pub tenants: Vec<String>,
}

/// What a parameter may be: one of `values`, or a value the whole of which matches `pattern`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// The allowed values. Default none.
    #[serde(default)]
    pub values: Vec<String>,
    /// A regular expression the whole value must match (`^` and `$` are implied). Default none.
    #[serde(default)]
    pub pattern: Option<String>,
}

/// A checked action: its spec and its compiled patterns.
#[derive(Clone, Debug)]
pub struct Action {
    name: String,
    spec: ActionSpec,
    patterns: BTreeMap<String, Regex>,
}

/// Every action of the server, checked.
#[derive(Clone, Debug, Default)]
pub struct Actions {
    actions: BTreeMap<String, Action>,
}

/// What a tenant sees of an action: not its program or arguments.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActionSummary {
    pub name: String,
    pub description: String,
    pub params: BTreeMap<String, ParamSpec>,
    pub timeout_seconds: u64,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The `{{NAME}}` placeholders of `template`, or why it is malformed.
fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("`{template}`: a `{{{{` without its `}}}}`"))?;
        names.push(after[..end].trim());
        rest = &after[end + 2..];
    }
    Ok(names)
}

impl Actions {
    /// Checks every spec; the error names the action and the problem.
    pub fn new(specs: &BTreeMap<String, ActionSpec>) -> Result<Actions, String> {
        let mut actions = BTreeMap::new();
        for (name, spec) in specs {
            let action = Action::new(name, spec).map_err(|e| format!("action `{name}`: {e}"))?;
            actions.insert(name.clone(), action);
        }
        Ok(Actions { actions })
    }

    /// The action `name` if `tenant` may use it; `None` both when it does not exist and when it
    /// is not the tenant's, so a tenant learns nothing of other tenants' actions.
    pub fn get(&self, tenant: &str, name: &str) -> Option<&Action> {
        self.actions.get(name).filter(|a| a.allows(tenant))
    }

    /// Every action.
    pub fn iter(&self) -> impl Iterator<Item = &Action> {
        self.actions.values()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The actions `tenant` may use, as it may see them.
    pub fn available_to(&self, tenant: &str) -> Vec<ActionSummary> {
        self.actions
            .values()
            .filter(|a| a.allows(tenant))
            .map(|a| ActionSummary {
                name: a.name.clone(),
                description: a.spec.description.clone(),
                params: a.spec.params.clone(),
                timeout_seconds: a.spec.timeout_seconds,
            })
            .collect()
    }
}

impl Action {
    fn new(name: &str, spec: &ActionSpec) -> Result<Action, String> {
        if !valid_name(name) {
            return Err("a name is 1 to 64 letters, digits, `-` or `_`".into());
        }
        if !spec.program.starts_with('/') {
            return Err("`program` must be an absolute path (no shell, no PATH lookup)".into());
        }
        if !(1..=MAX_ACTION_SECONDS).contains(&spec.timeout_seconds) {
            return Err(format!(
                "`timeout_seconds` must be 1 to {MAX_ACTION_SECONDS}"
            ));
        }
        if !spec.working_dir.is_absolute() {
            return Err("`working_dir` must be an absolute path".into());
        }
        for tenant in &spec.tenants {
            if tenant != "*" && sextant_model::TenantId::new(tenant).is_err() {
                return Err(format!("`tenants`: `{tenant}` is not a tenant name"));
            }
        }
        for key in spec.env.keys() {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(format!("`env`: `{key}` is not a variable name"));
            }
        }
        if spec.env.values().any(|v| v.contains('\0')) || spec.args.iter().any(|a| a.contains('\0'))
        {
            return Err("`env` and `args` may not hold NUL bytes".into());
        }
        let mut patterns = BTreeMap::new();
        for (param, kind) in &spec.params {
            if !valid_name(param) {
                return Err(format!(
                    "parameter `{param}`: a name is letters, digits, `-` or `_`"
                ));
            }
            match (&kind.pattern, kind.values.is_empty()) {
                (Some(pattern), true) => {
                    let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| format!("parameter `{param}`: bad `pattern`: {e}"))?;
                    patterns.insert(param.clone(), regex);
                }
                (None, false) => {}
                _ => {
                    return Err(format!(
                        "parameter `{param}`: give either `values` or `pattern`"
                    ));
                }
            }
        }
        for arg in &spec.args {
            for used in placeholders(arg).map_err(|e| format!("`args`: {e}"))? {
                if !spec.params.contains_key(used) {
                    return Err(format!(
                        "`args` names `{{{{{used}}}}}`, which is not one of its `params`"
                    ));
                }
            }
        }
        Ok(Action {
            name: name.to_owned(),
            spec: spec.clone(),
            patterns,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn spec(&self) -> &ActionSpec {
        &self.spec
    }

    /// Whether `tenant` may use it.
    pub fn allows(&self, tenant: &str) -> bool {
        self.spec.tenants.iter().any(|t| t == "*" || t == tenant)
    }

    /// Whether `value` is allowed for parameter `param`; the error says why not.
    pub fn check(&self, param: &str, value: &str) -> Result<(), String> {
        let Some(kind) = self.spec.params.get(param) else {
            return Err(format!("action `{}` has no parameter `{param}`", self.name));
        };
        let refuse = |why: &str| {
            Err(format!(
                "parameter `{param}` = {}: {why}",
                serde_json::to_string(value).expect("strings serialise")
            ))
        };
        if value.is_empty() {
            return refuse("empty");
        }
        if value.len() > MAX_PARAM_BYTES {
            return refuse(&format!("longer than {MAX_PARAM_BYTES} bytes"));
        }
        if value.chars().any(char::is_control) {
            return refuse("holds a control character");
        }
        match (self.patterns.get(param), &kind.pattern) {
            (Some(regex), Some(pattern)) => {
                if value.starts_with('-') && !pattern.starts_with('-') {
                    return refuse("starts with `-` (it would read as an option)");
                }
                if !regex.is_match(value) {
                    return refuse(&format!("does not match `{pattern}`"));
                }
            }
            _ => {
                if !kind.values.iter().any(|v| v == value) {
                    return refuse(&format!("not one of {:?}", kind.values));
                }
            }
        }
        Ok(())
    }

    /// Checks that `params` names every parameter once and nothing else (their values are
    /// checked by [`Action::check`]).
    pub fn check_names<'a>(
        &self,
        params: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), String> {
        let given: Vec<&String> = params.into_iter().collect();
        if let Some(unknown) = given.iter().find(|p| !self.spec.params.contains_key(**p)) {
            return Err(format!(
                "action `{}` has no parameter `{unknown}` (it takes: {})",
                self.name,
                self.param_list()
            ));
        }
        if let Some(missing) = self.spec.params.keys().find(|p| !given.contains(p)) {
            return Err(format!(
                "action `{}` needs parameter `{missing}` (it takes: {})",
                self.name,
                self.param_list()
            ));
        }
        Ok(())
    }

    fn param_list(&self) -> String {
        if self.spec.params.is_empty() {
            return "none".into();
        }
        self.spec
            .params
            .keys()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The program's arguments for these parameter values, every value checked first.
    pub fn arguments(&self, params: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
        self.check_names(params.keys())?;
        for (param, value) in params {
            self.check(param, value)?;
        }
        self.spec
            .args
            .iter()
            .map(|arg| {
                let mut out = String::with_capacity(arg.len());
                let mut rest = arg.as_str();
                while let Some(start) = rest.find("{{") {
                    out.push_str(&rest[..start]);
                    let after = &rest[start + 2..];
                    let end = after.find("}}").expect("checked when the action was made");
                    out.push_str(&params[after[..end].trim()]);
                    rest = &after[end + 2..];
                }
                out.push_str(rest);
                Ok(out)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Actions, String> {
        let specs: BTreeMap<String, ActionSpec> =
            toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Actions::new(&specs)
    }

    const RESTART: &str = r#"
[restart-service]
program = "/usr/bin/systemctl"
args = ["restart", "{{service}}.service", "--reason={{reason}}"]
tenants = ["shop"]
[restart-service.params.service]
pattern = "[a-z0-9-]+"
[restart-service.params.reason]
values = ["incident", "drill"]
"#;

    #[test]
    fn values_are_checked_after_templating_and_put_into_the_arguments() {
        let actions = parse(RESTART).unwrap();
        let action = actions.get("shop", "restart-service").unwrap();
        let params = |service: &str, reason: &str| {
            BTreeMap::from([
                ("service".to_owned(), service.to_owned()),
                ("reason".to_owned(), reason.to_owned()),
            ])
        };
        assert_eq!(
            action.arguments(&params("payment", "drill")).unwrap(),
            ["restart", "payment.service", "--reason=drill"]
        );
        let check = |service: &str, reason: &str, why: &str| {
            let err = action.arguments(&params(service, reason)).unwrap_err();
            assert!(err.contains(why), "{service:?}: {err}");
        };
        check("x; rm -rf /", "drill", "does not match `[a-z0-9-]+`");
        check("../../etc", "drill", "does not match");
        check("payment\nx", "drill", "control character");
        check("", "drill", "empty");
        check("--force", "drill", "starts with `-`");
        check(&"a".repeat(MAX_PARAM_BYTES + 1), "drill", "longer than");
        check("payment", "because", "not one of");
        // The pattern is anchored: a match inside the value is not enough.
        check("ok$(id)", "drill", "does not match");

        let mut extra = params("payment", "drill");
        extra.insert("program".into(), "/bin/sh".into());
        assert!(
            action
                .arguments(&extra)
                .unwrap_err()
                .contains("no parameter `program`")
        );
        let mut missing = params("payment", "drill");
        missing.remove("reason");
        assert!(
            action
                .arguments(&missing)
                .unwrap_err()
                .contains("needs parameter `reason`")
        );
    }

    #[test]
    fn only_listed_tenants_see_an_action() {
        let actions = parse(RESTART).unwrap();
        assert!(actions.get("shop", "restart-service").is_some());
        assert!(actions.get("other", "restart-service").is_none());
        assert!(actions.get("shop", "nothing").is_none());
        assert_eq!(actions.available_to("shop").len(), 1);
        assert!(actions.available_to("other").is_empty());
        let everyone = parse("[echo]\nprogram = \"/bin/echo\"\ntenants = [\"*\"]\n").unwrap();
        assert!(everyone.get("anyone", "echo").is_some());
        let nobody = parse("[echo]\nprogram = \"/bin/echo\"\n").unwrap();
        assert!(
            nobody.get("anyone", "echo").is_none(),
            "no tenant by default"
        );
    }

    #[test]
    fn bad_specs_are_named() {
        let check = |toml_text: &str, why: &str| {
            let err = parse(toml_text).unwrap_err();
            assert!(err.contains(why), "{toml_text}: {err}");
        };
        check("[x]\nprogram = \"sh\"\n", "absolute path");
        check(
            "[x]\nprogram = \"/bin/echo\"\ntimeout_seconds = 0\n",
            "timeout_seconds",
        );
        check(
            "[x]\nprogram = \"/bin/echo\"\nargs = [\"{{who}}\"]\n",
            "not one of its `params`",
        );
        check(
            "[x]\nprogram = \"/bin/echo\"\nargs = [\"{{who\"]\n[x.params.who]\nvalues = [\"a\"]\n",
            "without its",
        );
        check(
            "[x]\nprogram = \"/bin/echo\"\n[x.params.who]\n",
            "either `values` or `pattern`",
        );
        check(
            "[x]\nprogram = \"/bin/echo\"\n[x.params.who]\nvalues = [\"a\"]\npattern = \"a\"\n",
            "either `values` or `pattern`",
        );
        check(
            "[x]\nprogram = \"/bin/echo\"\n[x.params.who]\npattern = \"(\"\n",
            "bad `pattern`",
        );
        check(
            "[x]\nprogram = \"/bin/echo\"\ntenants = [\"Not A Tenant\"]\n",
            "not a tenant name",
        );
        check(
            "[x]\nprogram = \"/bin/echo\"\nworking_dir = \"tmp\"\n",
            "working_dir",
        );
        check("[\"a b\"]\nprogram = \"/bin/echo\"\n", "a name is");
        check("[x]\nprogram = \"/bin/echo\"\nshell = true\n", "shell");
    }
}
