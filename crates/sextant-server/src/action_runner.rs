//! Runs the operator's actions ([`sextant_incidents::action`]) with the least privilege the
//! machine allows. At start [`ActionRunner::new`] refuses a configuration that would run an
//! action as root, or as the server's own user (who can read the data directory) unless the
//! action says `run_as_server_user = true`, or as a user the server cannot switch to, or in a
//! working directory inside the data directory. Each run then:
//!
//! - starts the program itself, without a shell, with exactly the action's environment, stdin
//!   from `/dev/null`, in the action's working directory;
//! - switches to the action's user and primary group and drops every supplementary group
//!   (the server must be root, or hold `CAP_SETUID` and `CAP_SETGID`);
//! - sets `no_new_privs`, so no set-user-id program (`sudo`, `su`) or file capability can give
//!   the process more than it started with;
//! - puts the program in a process group of its own, and kills that whole group when the time
//!   limit passes, and when the program exits (nothing it started outlives the step);
//! - keeps the first 64 KiB of stdout and of stderr.
//!
//! The data directory is kept unreadable to the action's user by its mode (0700, set by
//! `sextant serve`), since that user is never the server's unless the operator says so.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sextant_incidents::action::{Action, Actions};

/// Most output kept of each stream.
const MAX_OUTPUT: usize = 64 * 1024;
/// How long the output readers get after the process group is gone.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// A user to run as.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

/// The checked actions with the user each runs as.
#[derive(Debug, Default)]
pub struct ActionRunner {
    actions: Actions,
    /// Per action: the user to switch to (`None`: the server's own, allowed by the action).
    users: BTreeMap<String, Option<RunAs>>,
}

/// The uid and gid of `spec`: `UID:GID`, or a name looked up in `passwd`.
fn lookup_user(spec: &str, passwd: &str) -> Result<RunAs, String> {
    if let Some((uid, gid)) = spec.split_once(':')
        && let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>())
    {
        return Ok(RunAs {
            name: spec.to_owned(),
            uid,
            gid,
        });
    }
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == spec {
            let (Ok(uid), Ok(gid)) = (fields[2].parse::<u32>(), fields[3].parse::<u32>()) else {
                continue;
            };
            return Ok(RunAs {
                name: spec.to_owned(),
                uid,
                gid,
            });
        }
    }
    Err(format!(
        "user `{spec}` is not in /etc/passwd (give a user name, or `UID:GID`)"
    ))
}

/// The server's effective user id.
fn server_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether the server runs as root (then every action needs a `user`).
pub fn server_is_root() -> bool {
    server_uid() == 0
}

/// Whether this process may switch to another user and group.
fn can_switch_user() -> bool {
    if server_uid() == 0 {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::thread::CapabilitySet;
        rustix::thread::capabilities(None).is_ok_and(|caps| {
            caps.effective
                .contains(CapabilitySet::SETUID | CapabilitySet::SETGID)
        })
    }
    #[cfg(not(target_os = "linux"))]
    false
}

impl ActionRunner {
    /// Checks where and as whom every action would run; the error names the action and what
    /// to change.
    pub fn new(actions: Actions, data_dir: &Path) -> Result<ActionRunner, String> {
        if actions.is_empty() {
            return Ok(ActionRunner::default());
        }
        if !cfg!(target_os = "linux") {
            return Err("runbook actions run on Linux only".into());
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        let server = server_uid();
        let mut users = BTreeMap::new();
        for action in actions.iter() {
            let spec = action.spec();
            let refuse = |why: String| format!("action `{}`: {why}", action.name());
            let user = match &spec.user {
                Some(name) => Some(lookup_user(name, &passwd).map_err(refuse)?),
                None => None,
            };
            match &user {
                Some(user) if user.uid == 0 || user.gid == 0 => {
                    return Err(refuse(format!(
                        "`user` `{}` is root (or in root's group); actions never run as root",
                        user.name
                    )));
                }
                None if server == 0 => {
                    return Err(refuse(
                        "the server runs as root: give the action an unprivileged `user` to run as"
                            .into(),
                    ));
                }
                Some(user) if user.uid == server && !spec.run_as_server_user => {
                    return Err(refuse(format!(
                        "`user` `{}` is the server's own user, who can read the data directory; \
                         give another user, or set `run_as_server_user = true` to accept that",
                        user.name
                    )));
                }
                None if !spec.run_as_server_user => {
                    return Err(refuse(
                        "it would run as the server's own user, who can read the data \
                         directory: give it a `user`, or set `run_as_server_user = true` to \
                         accept that"
                            .into(),
                    ));
                }
                Some(user) if user.uid != server && !can_switch_user() => {
                    return Err(refuse(format!(
                        "the server (uid {server}) cannot switch to `user` `{}`: run it as root, \
                         or give it CAP_SETUID and CAP_SETGID",
                        user.name
                    )));
                }
                _ => {}
            }
            let working_dir = std::fs::canonicalize(&spec.working_dir).map_err(|e| {
                refuse(format!(
                    "`working_dir` `{}`: {e}",
                    spec.working_dir.display()
                ))
            })?;
            if working_dir.starts_with(&data_dir) {
                return Err(refuse(format!(
                    "`working_dir` `{}` is inside the data directory",
                    spec.working_dir.display()
                )));
            }
            if !Path::new(&spec.program).is_file() {
                return Err(refuse(format!(
                    "`program` `{}` is not a file",
                    spec.program
                )));
            }
            users.insert(
                action.name().to_owned(),
                user.filter(|u| u.uid != server || server == 0),
            );
        }
        Ok(ActionRunner { actions, users })
    }

    pub fn actions(&self) -> &Actions {
        &self.actions
    }

    /// Who `action` runs as, for the record.
    pub fn user_of(&self, action: &Action) -> String {
        match self.users.get(action.name()).cloned().flatten() {
            Some(user) => format!("{} ({}:{})", user.name, user.uid, user.gid),
            None => format!("the server's user ({})", server_uid()),
        }
    }

    /// Runs `action` with `args` (already checked); (exited 0 in time, output).
    pub fn run(&self, action: &Action, args: &[String]) -> (bool, Value) {
        let spec = action.spec();
        let mut command = Command::new(&spec.program);
        command
            .args(args)
            .env_clear()
            .envs(&spec.env)
            .current_dir(&spec.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
            if let Some(user) = self.users.get(action.name()).cloned().flatten() {
                // std drops the supplementary groups when it switches from root.
                command.uid(user.uid).gid(user.gid);
            }
        }
        let mut child = match spawn_without_new_privileges(command) {
            Ok(child) => child,
            Err(err) => {
                return (
                    false,
                    json!({"error": format!("cannot start `{}`: {err}", spec.program)}),
                );
            }
        };
        let stdout = drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let timeout = Duration::from_secs(spec.timeout_seconds);
        let deadline = Instant::now() + timeout;
        let pid = rustix::process::Pid::from_child(&child);
        let timed_out = loop {
            if exited(pid) {
                break false;
            }
            if Instant::now() >= deadline {
                break true;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The program is not reaped yet, so its group id cannot have been reused.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        let status = child.wait();
        let (stdout, stderr) = (collect(stdout), collect(stderr));
        match status {
            Ok(status) if !timed_out => (
                status.success(),
                json!({"exit_code": status.code(), "stdout": stdout, "stderr": stderr}),
            ),
            Ok(_) => (
                false,
                json!({"error": format!("killed after {} s, with its process group", timeout.as_secs()),
                       "stdout": stdout, "stderr": stderr}),
            ),
            Err(err) => (
                false,
                json!({"error": format!("cannot wait for it: {err}")}),
            ),
        }
    }
}

/// Whether the child has exited, without reaping it.
fn exited(pid: rustix::process::Pid) -> bool {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    !matches!(
        waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        ),
        Ok(None)
    )
}

/// Starts `command` from a thread of its own that sets `no_new_privs` first: the flag belongs
/// to the thread and is inherited by the process it starts, so the server's other threads keep
/// theirs.
fn spawn_without_new_privileges(mut command: Command) -> std::io::Result<std::process::Child> {
    std::thread::spawn(move || {
        #[cfg(target_os = "linux")]
        rustix::thread::set_no_new_privs(true)?;
        command.spawn()
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the starting thread panicked")))
}

/// Reads at most [`MAX_OUTPUT`] bytes of a pipe on a thread of its own (then keeps reading, and
/// dropping, so a chatty program never blocks on a full pipe).
fn drain(pipe: Option<Box<dyn Read + Send>>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = (&mut pipe).take(MAX_OUTPUT as u64).read_to_end(&mut out);
            let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        }
        let _ = tx.send(String::from_utf8_lossy(&out).into_owned());
    });
    rx
}

/// What a reader got; empty when the pipe stays open past the grace (a process that left the
/// group still holds it).
fn collect(reader: mpsc::Receiver<String>) -> String {
    reader.recv_timeout(DRAIN_GRACE).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                          broken:x:abc:1::/:/bin/sh\n";

    #[test]
    fn users_are_names_or_numbers() {
        let check = |spec: &str, expected: Result<(u32, u32), &str>| match (
            lookup_user(spec, PASSWD),
            expected,
        ) {
            (Ok(user), Ok(ids)) => assert_eq!((user.uid, user.gid), ids, "{spec}"),
            (Err(e), Err(why)) => assert!(e.contains(why), "{spec}: {e}"),
            (got, want) => panic!("{spec}: {got:?}, expected {want:?}"),
        };
        check("nobody", Ok((65534, 65534)));
        check("1001:1002", Ok((1001, 1002)));
        check("root", Ok((0, 0)));
        check("broken", Err("not in /etc/passwd"));
        check("ghost", Err("not in /etc/passwd"));
    }
}
