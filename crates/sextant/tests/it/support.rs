//! Test support: start and stop the real binary, create tokens, send OTLP requests.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// Path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sextant")
}

/// `../shared/datasets` relative to the workspace root, or `SEXTANT_DATASETS`.
pub fn datasets_dir() -> PathBuf {
    std::env::var_os("SEXTANT_DATASETS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets"),
        PathBuf::from,
    )
}

/// A running `sextant serve`.
pub struct Sextant {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// `http` or `https`.
    scheme: &'static str,
}

impl Sextant {
    /// Starts the server on a free loopback port and waits until `/readyz` says ready.
    pub fn start(data_dir: &Path) -> Sextant {
        Sextant::start_with_config(data_dir, None)
    }

    /// Same, with a TOML config file written from `config`.
    pub fn start_with_config(data_dir: &Path, config: Option<&str>) -> Sextant {
        Sextant::start_custom(data_dir, config, &[], None)
    }

    /// Same, with more environment variables, and over TLS when `tls_agent` is given (an
    /// agent that trusts the server's certificate; readiness is asked over `https`).
    pub fn start_custom(
        data_dir: &Path,
        config: Option<&str>,
        env: &[(&str, &str)],
        tls_agent: Option<ureq::Agent>,
    ) -> Sextant {
        let mut command = Command::new(binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(config) = config {
            std::fs::create_dir_all(data_dir).unwrap();
            let path = data_dir.join("test-config.toml");
            std::fs::write(&path, config).unwrap();
            command.arg("--config").arg(path);
        }
        let mut child = command.spawn().expect("start sextant");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("sextant exited before listening")
                .unwrap();
            if let Some(addr) = line.strip_prefix("sextant listening on ") {
                break addr.parse().unwrap();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let server = Sextant {
            child,
            addr,
            data_dir: data_dir.to_owned(),
            scheme: if tls_agent.is_some() { "https" } else { "http" },
        };
        server.wait_ready(tls_agent.unwrap_or_else(agent));
        server
    }

    fn wait_ready(&self, agent: ureq::Agent) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = agent.get(self.url("/readyz")).call()
                && response.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "sextant did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of the server's `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`: the peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// SIGKILL: no chance to flush or sync anything.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "sextant exited with {exit} after SIGTERM");
    }
}

impl Drop for Sextant {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with `args`; panics with its stderr unless it succeeds; returns its stdout.
pub fn cli<S: AsRef<OsStr>>(args: &[S]) -> String {
    let output = Command::new(binary()).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "sextant {:?} failed: {}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Creates a token with the real CLI and returns its secret.
pub fn create_token(data_dir: &Path, tenant: &str, role: &str) -> String {
    cli(&[
        OsStr::new("tokens"),
        OsStr::new("create"),
        OsStr::new("--tenant"),
        OsStr::new(tenant),
        OsStr::new("--role"),
        OsStr::new(role),
        OsStr::new("--init"),
        OsStr::new("--data-dir"),
        data_dir.as_os_str(),
    ])
    .trim()
    .to_owned()
}

/// A blocking HTTP client that returns 4xx and 5xx responses instead of errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

fn string_value(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    })
}

/// An OTLP logs request with one record per body, from `service`.
pub fn logs_request(service: &str, bodies: &[String]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: string_value(service),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .iter()
                    .map(|body| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        severity_number: 9,
                        body: string_value(body),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `POST /api/v1/sql` with `query`: the status and the JSON answer.
pub fn sql(server: &Sextant, token: &str, query: &str) -> (u16, serde_json::Value) {
    let mut response = agent()
        .post(&server.url("/api/v1/sql"))
        .header("Authorization", &format!("Bearer {token}"))
        .send(serde_json::json!({ "sql": query }).to_string().as_bytes())
        .unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

/// `GET path` with a bearer token; the answer's JSON, whatever its status.
pub fn get_json(server: &Sextant, token: &str, path: &str) -> serde_json::Value {
    let body = agent()
        .get(&server.url(path))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

/// Kills a helper process (a real sender or receiver) however the test ends.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An outside program at `path`, or `None` after saying why the test is skipped. Panics under
/// CI, which installs them.
pub fn program_or_skip(path: &str) -> Option<PathBuf> {
    let path = PathBuf::from(path);
    match path.exists() {
        true => Some(path),
        false if std::env::var_os("CI").is_some() => {
            panic!("CI needs {} (.ci/run installs it)", path.display())
        }
        false => {
            println!("skipping: {} is not installed", path.display());
            None
        }
    }
}

/// Whether the tests run as root (then runbook actions must switch to another user).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The line of an `[actions.NAME]` table that says whom the action runs as: `nobody` when the
/// tests run as root (actions never run as root), else the tests' own user.
pub fn action_user() -> &'static str {
    if running_as_root() {
        "user = \"nobody\""
    } else {
        "run_as_server_user = true"
    }
}

/// `DIR/markers`, a directory the users actions run as may write into (`DIR` made 0755 so
/// they can reach it).
pub fn markers_dir(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let markers = dir.join("markers");
    std::fs::create_dir_all(&markers).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&markers, std::fs::Permissions::from_mode(0o777)).unwrap();
    markers
}

/// The configuration of an action `touch` for `tenants` (TOML list items) that creates
/// `MARKERS/NAME` for a parameter `name` of lower-case letters and `-`, and an egress rule that
/// lets steps reach receivers on 127.0.0.1.
pub fn touch_action_config(markers: &Path, tenants: &str) -> String {
    format!(
        "[egress]\nallow = [\"127.0.0.1\"]\n\
         [actions.touch]\nprogram = \"/usr/bin/touch\"\nargs = [\"{}/{{{{name}}}}\"]\n\
         tenants = [{tenants}]\n{}\n\
         [actions.touch.params.name]\npattern = \"[a-z-]+\"\n",
        markers.display(),
        action_user()
    )
}

/// Every file under `dir`, at any depth (none if `dir` is missing).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flat_map(|e| {
                    let path = e.unwrap().path();
                    if path.is_dir() {
                        files_under(&path)
                    } else {
                        vec![path]
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}
