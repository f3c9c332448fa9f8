//! The real `junction serve` process for end-to-end tests: start it on a data directory
//! with the test connectors, talk to it over HTTP, stop it with SIGTERM, and read its logs.

use crate::components;
use reqwest::StatusCode;
use serde_json::Value;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A fresh, empty data directory under the system's temp directory.
pub fn data_dir(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("junction-e2e-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The connectors every test service loads: github, http and the probe.
pub fn test_connectors() -> String {
    [components::GITHUB, components::HTTP, components::PROBE].join(":")
}

/// The flag that opens loopback to a test service's outbound connections: its upstream
/// APIs, OAuth server and the like run there. Services started by [`Service::start`] get
/// it unless the test gives `--egress-allow` itself; commands a test builds add it.
pub const LOOPBACK_EGRESS: [&str; 2] = ["--egress-allow", "127.0.0.0/8,::1/128"];

/// The variables that send a process's outbound HTTP through a proxy. A developer's own
/// are not inherited by the services the tests start.
pub const PROXY_VARIABLES: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// A running `junction serve`.
#[derive(Debug)]
pub struct Service {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
    /// The thread reading stderr; joined once the process has exited, so `logs()` then
    /// holds everything the process wrote.
    reader: Option<std::thread::JoinHandle<()>>,
}

/// Why the service did not come up: its exit status and everything it logged.
#[derive(Debug)]
pub struct StartFailure {
    pub status: Option<ExitStatus>,
    pub log: String,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "the service exited ({status}) before listening")?,
            None => write!(f, "the service did not listen in time (killed)")?,
        }
        write!(f, "; its log:\n{}", self.log)
    }
}

impl Service {
    /// Starts `bin serve` on `data_dir` with the test connectors, a free port, JSON logs,
    /// loopback opened to its outbound connections ([`LOOPBACK_EGRESS`], unless `extra`
    /// gives `--egress-allow`) and `extra` flags; waits until it listens.
    pub fn start(bin: &Path, data_dir: &Path, extra: &[&str]) -> Result<Self, StartFailure> {
        Self::start_with_env(bin, data_dir, extra, &[])
    }

    pub fn start_with_env(
        bin: &Path,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, StartFailure> {
        let mut command = Command::new(bin);
        command
            .arg("--log-json")
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--connectors")
            .arg(test_connectors())
            .args(extra)
            .env_remove("JUNCTION_KEY")
            .env("RUST_LOG", "info,junction=debug,sqlx=warn");
        if !extra.iter().any(|a| a.starts_with("--egress-allow")) {
            command.args(LOOPBACK_EGRESS);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        Self::start_command(command, data_dir)
    }

    /// Starts a command line of the caller's (`junction serve` with whatever arguments,
    /// environment and configuration file it needs) and waits until it listens. The
    /// service must log JSON (`--log-json`, or `log_json = true` in its configuration
    /// file) so that its `listening` line can be read; `data_dir` is only recorded.
    ///
    /// The test's own `JUNCTION_*` and proxy variables ([`PROXY_VARIABLES`]) are not
    /// passed on: a service is configured only by what the test sets on `command` (or in
    /// `start_with_env`'s `env`), and reaches its upstream APIs directly unless told
    /// otherwise.
    pub fn start_command(mut command: Command, data_dir: &Path) -> Result<Self, StartFailure> {
        let explicit: Vec<String> = command
            .get_envs()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        let inherited = std::env::vars_os()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .filter(|name| name.starts_with("JUNCTION_"));
        let names: Vec<String> = PROXY_VARIABLES
            .iter()
            .map(|n| (*n).to_owned())
            .chain(inherited)
            .collect();
        for name in names {
            if !explicit.contains(&name) {
                command.env_remove(name);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| StartFailure {
            status: None,
            log: format!("cannot spawn {:?}: {e}", command.get_program()),
        })?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().ok_or_else(|| StartFailure {
            status: None,
            log: "no stderr".into(),
        })?;
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    {
                        let mut log = log.lock().unwrap();
                        log.push_str(&line);
                        log.push('\n');
                    }
                    let listening = serde_json::from_str::<Value>(&line)
                        .ok()
                        .filter(|v| v["message"] == "listening")
                        .and_then(|v| v["address"].as_str().map(str::to_owned));
                    if let Some(address) = listening {
                        let _ = tx.send(address);
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(address) = rx.recv_timeout(Duration::from_millis(50)) {
                return Ok(Self {
                    child: Some(child),
                    url: format!("http://{address}"),
                    data_dir: data_dir.to_owned(),
                    log,
                    reader: Some(reader),
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                // The reader ends at the end of stderr: then the log is complete.
                let _ = reader.join();
                return Err(StartFailure {
                    status: Some(status),
                    log: log.lock().unwrap().clone(),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                return Err(StartFailure {
                    status: None,
                    log: log.lock().unwrap().clone(),
                });
            }
        }
    }

    /// Everything the service logged so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The JSON log lines so far (lines that are not JSON are left out).
    pub fn log_lines(&self) -> Vec<Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The JSON log lines whose `message` is `message`.
    pub fn log_lines_with(&self, message: &str) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|l| l["message"] == message)
            .collect()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits for the process and for the end of its stderr.
    fn reap(&mut self, mut child: Child) -> ExitStatus {
        let status = child.wait().expect("wait for the service");
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }

    /// Sends SIGTERM and waits for the process to exit; returns its status.
    pub fn stop(&mut self) -> ExitStatus {
        let child = self.child.take().expect("the service is running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        self.reap(child)
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_stop(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Waits for the process to exit (after [`Service::signal_stop`]).
    pub fn wait(&mut self) -> ExitStatus {
        let child = self.child.take().expect("the service is running");
        self.reap(child)
    }

    /// A client with `token`.
    pub fn client(&self, token: &str) -> Client {
        Client::new(&self.url, Some(token))
    }

    /// A client without a token.
    pub fn anonymous(&self) -> Client {
        Client::new(&self.url, None)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `junction admin <args> --data-dir <data_dir>`: what it prints, as JSON.
fn admin(bin: &Path, data_dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(bin)
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("JUNCTION_KEY")
        .output()
        .expect("run junction admin");
    assert!(
        out.status.success(),
        "junction admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("junction admin prints JSON")
}

/// `junction admin create-tenant` on a data directory: the tenant, its administrator and
/// the administrator's token.
pub fn create_tenant(bin: &Path, data_dir: &Path, name: &str, admin_name: &str) -> Value {
    admin(
        bin,
        data_dir,
        &["create-tenant", name, "--admin", admin_name],
    )
}

/// `junction admin create-operator` on a data directory: the operator and its token.
pub fn create_operator(bin: &Path, data_dir: &Path, name: &str) -> Value {
    admin(bin, data_dir, &["create-operator", name])
}

/// One response, kept for checks over everything the service answered.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub status: StatusCode,
    pub headers: String,
    pub text: String,
}

impl Exchange {
    /// A response header's value (the first one), as text; `name` in lower case.
    pub fn header(&self, name: &str) -> Option<String> {
        // `headers` is the `Debug` form of the header map: `{"name": "value", ...}`.
        let start = self.headers.find(&format!("\"{name}\": \""))? + name.len() + 5;
        let rest = &self.headers[start..];
        rest.find('"').map(|end| rest[..end].to_owned())
    }

    pub fn json(&self) -> Value {
        if self.text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.text).unwrap_or(Value::String(self.text.clone()))
        }
    }
}

/// Every exchange of every client of this test binary.
pub fn exchanges() -> Vec<Exchange> {
    EXCHANGES.lock().unwrap().clone()
}

static EXCHANGES: Mutex<Vec<Exchange>> = Mutex::new(Vec::new());

/// An HTTP client of the API that records every exchange.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
        }
    }

    /// Sends a request with an optional JSON body and raw extra headers.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Exchange {
        self.exchange(method, path, headers, |r| match body {
            Some(body) => r.json(body),
            None => r,
        })
        .await
    }

    /// Sends raw bytes as the body with a content type.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Exchange {
        let headers: Vec<(&str, &str)> = content_type
            .map(|ct| ("content-type", ct))
            .into_iter()
            .collect();
        self.exchange(method, path, &headers, |r| r.body(body))
            .await
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Exchange {
        let method_value = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method_value, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = body(request).send().await.expect("the service answers");
        let status = response.status();
        let headers = format!("{:?}", response.headers());
        let text = response.text().await.unwrap_or_default();
        let exchange = Exchange {
            method: method.to_owned(),
            path: path.to_owned(),
            status,
            headers,
            text,
        };
        EXCHANGES.lock().unwrap().push(exchange.clone());
        exchange
    }

    pub async fn get(&self, path: &str) -> Exchange {
        self.send("GET", path, None, &[]).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Exchange {
        self.send("POST", path, Some(&body), &[]).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Exchange {
        self.send("PATCH", path, Some(&body), &[]).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Exchange {
        self.send("PUT", path, Some(&body), &[]).await
    }
    pub async fn delete(&self, path: &str) -> Exchange {
        self.send("DELETE", path, None, &[]).await
    }
}

/// Every file under `dir`, as bytes (the database, its WAL, the key file…).
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}
