//! Real network middlemen for the proxy tests, started as processes on loopback:
//!
//! - [`ForwardProxy`]: `tinyproxy` (a forward HTTP proxy, a system package), optionally
//!   requiring Basic credentials; its log says what it forwarded and tunnelled;
//! - [`TestCa`] and [`TlsServer`]: a throwaway certificate authority made with the `openssl`
//!   command, and `openssl s_server` answering HTTPS with it (optionally requiring a client
//!   certificate), so that https through a `CONNECT` tunnel can be tested end to end.
//!
//! Each has its own files in a temporary directory and is killed (by its process id) when
//! dropped; they start in milliseconds, so every test can have its own.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A fresh directory for one helper's files.
fn scratch(kind: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("junction-{kind}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// A loopback port free right now (the caller retries if someone takes it meanwhile).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Kills a helper process by its id and waits for it.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A running `tinyproxy` on loopback.
#[derive(Debug)]
pub struct ForwardProxy {
    child: Child,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    credentials: Option<(String, String)>,
}

impl ForwardProxy {
    /// A proxy that forwards for anyone on loopback.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// A proxy that requires `user` and `password` (Basic; neither may contain spaces or
    /// quotes) and answers 407 without them.
    pub fn with_basic_auth(user: &str, password: &str) -> Self {
        Self::launch(Some((user.to_owned(), password.to_owned())))
    }

    fn launch(credentials: Option<(String, String)>) -> Self {
        let dir = scratch("tinyproxy");
        let log = dir.join("tinyproxy.log");
        let mut last_output = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.join("tinyproxy.conf");
            // No `ConnectPort` line: CONNECT is allowed to every port.
            let mut text = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 200\n\
                 LogFile \"{}\"\nLogLevel Info\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
                log.display()
            );
            if let Some((user, password)) = &credentials {
                text.push_str(&format!("BasicAuth {user} {password}\n"));
            }
            std::fs::write(&config, text).expect("write the tinyproxy configuration");
            let _ = std::fs::remove_file(&log);
            let output = std::fs::File::create(dir.join("output.txt")).expect("create a file");
            let mut child = Command::new("tinyproxy")
                .arg("-d")
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(output.try_clone().expect("clone a file handle"))
                .stderr(output)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start tinyproxy ({e}); install it: apt-get install tinyproxy")
                });
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let logged = std::fs::read_to_string(&log).unwrap_or_default();
                if logged.contains("Accepting connections") {
                    return Self {
                        child,
                        port,
                        dir,
                        log,
                        credentials,
                    };
                }
                if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                    kill(&mut child);
                    last_output = format!(
                        "{logged}{}",
                        std::fs::read_to_string(dir.join("output.txt")).unwrap_or_default()
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        panic!("tinyproxy did not start; its last words:\n{last_output}");
    }

    /// `http://127.0.0.1:<port>`, without credentials.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The URL with the proxy's credentials in it (as `HTTP_PROXY` carries them), or
    /// [`ForwardProxy::url`] when it requires none.
    pub fn url_with_credentials(&self) -> String {
        match &self.credentials {
            Some((user, password)) => format!("http://{user}:{password}@127.0.0.1:{}", self.port),
            None => self.url(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its whole log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every request it received, as `METHOD target` (`GET http://127.0.0.1:8080/path`,
    /// `CONNECT 127.0.0.1:8443`), whether it forwarded it or refused it (407).
    pub fn attempts(&self) -> Vec<String> {
        parse_log(&self.log()).0
    }

    /// The requests it forwarded or tunnelled: those after which it connected to their host
    /// (`GET http://127.0.0.1:8080/path`, `CONNECT 127.0.0.1:8443`).
    pub fn requests(&self) -> Vec<String> {
        parse_log(&self.log()).1
    }

    /// Whether a request for `host_port` (such as `127.0.0.1:8080`) went through it.
    pub fn forwarded_to(&self, host_port: &str) -> bool {
        self.requests()
            .iter()
            .any(|r| target_host_port(r) == host_port)
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        kill(&mut self.child);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `host:port` of a request as [`ForwardProxy::requests`] lists it.
fn target_host_port(request: &str) -> String {
    let target = request.split_whitespace().nth(1).unwrap_or_default();
    match target.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.contains(':') {
                authority.to_owned()
            } else {
                format!("{authority}:{}", if scheme == "https" { 443 } else { 80 })
            }
        }
        None => target.to_owned(),
    }
}

/// The host of a `host:port`, without IPv6 brackets.
fn host_of(host_port: &str) -> &str {
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => host_port,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Reads tinyproxy's log: every request received, and those it connected onwards for.
///
/// Lines look like `CONNECT   Nov 22 07:03:00.081 [18026]: Request (file descriptor 5): GET
/// http://127.0.0.1:18998/ HTTP/1.1`, then `Established connection to host "127.0.0.1"
/// using file descriptor 6.` Client connections are threads whose lines may interleave: an
/// established connection is credited to the latest pending request for that host, and a
/// client's pending request is dropped when its descriptor is closed or reused.
fn parse_log(log: &str) -> (Vec<String>, Vec<String>) {
    let mut attempts = Vec::new();
    let mut forwarded = Vec::new();
    // Client descriptor -> (order, request).
    let mut pending: HashMap<String, (usize, String)> = HashMap::new();
    for (order, line) in log.lines().enumerate() {
        let Some((_, message)) = line.split_once("]: ") else {
            continue;
        };
        if let Some(rest) = message.strip_prefix("Request (file descriptor ") {
            let Some((fd, request)) = rest.split_once("): ") else {
                continue;
            };
            let request = request
                .trim_end()
                .trim_end_matches(" HTTP/1.1")
                .trim_end_matches(" HTTP/1.0")
                .to_owned();
            attempts.push(request.clone());
            pending.insert(fd.to_owned(), (order, request));
        } else if let Some(rest) = message.strip_prefix("Connect (file descriptor ") {
            if let Some((fd, _)) = rest.split_once("): ") {
                pending.remove(fd);
            }
        } else if let Some(rest) =
            message.strip_prefix("Closed connection between local client (fd:")
        {
            if let Some((fd, _)) = rest.split_once(')') {
                pending.remove(fd);
            }
        } else if let Some(rest) = message.strip_prefix("Established connection to host \"") {
            let Some((host, _)) = rest.split_once('"') else {
                continue;
            };
            let latest = pending
                .iter()
                .filter(|(_, (_, request))| host_of(&target_host_port(request)) == host)
                .max_by_key(|(_, (order, _))| *order)
                .map(|(fd, _)| fd.clone());
            if let Some((_, request)) = latest.and_then(|fd| pending.remove(&fd)) {
                forwarded.push(request);
            }
        }
    }
    (attempts, forwarded)
}

/// Runs `openssl` with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}); install it: apt-get install openssl")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway certificate authority (P-256), its files in a temporary directory.
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
}

/// A certificate issued by a [`TestCa`], and its key, as PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let dir = scratch("test-ca");
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Junction Test CA",
            ],
        );
        Self { dir }
    }

    /// The CA's certificate (PEM): what a client must trust.
    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.cert_path()).expect("read the CA certificate")
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `localhost` and `127.0.0.1`, good for a server and a client.
    pub fn issue(&self, name: &str) -> Issued {
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("write the extensions");
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "1000",
                "-days",
                "2",
                "-out",
                &cert,
                "-extfile",
                &ext,
            ],
        );
        let cert_path = self.dir.join(&cert);
        let key_path = self.dir.join(&key);
        Issued {
            cert_pem: std::fs::read(&cert_path).expect("read the certificate"),
            key_pem: std::fs::read(&key_path).expect("read the key"),
            cert_path,
            key_path,
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `openssl s_server -www` on loopback: answers every `GET` with 200 and an HTML page over
/// TLS (HTTP/1.0, then closes).
#[derive(Debug)]
pub struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    /// Serves with a certificate of `ca` for localhost and 127.0.0.1; with
    /// `require_client_cert`, only to clients presenting a certificate `ca` issued.
    pub fn start(ca: &TestCa, require_client_cert: bool) -> Self {
        let server = ca.issue("server");
        for _ in 0..5 {
            let port = free_port();
            let mut command = Command::new("openssl");
            command
                .arg("s_server")
                .arg("-accept")
                .arg(format!("127.0.0.1:{port}"))
                .arg("-cert")
                .arg(&server.cert_path)
                .arg("-key")
                .arg(&server.key_path)
                .arg("-www");
            if require_client_cert {
                command
                    .arg("-Verify")
                    .arg("1")
                    .arg("-CAfile")
                    .arg(ca.cert_path());
            }
            let mut child = command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start openssl s_server: {e}"));
            let Some(stdout) = child.stdout.take() else {
                kill(&mut child);
                continue;
            };
            // It prints ACCEPT once it listens, and exits when the port is taken.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.trim() == "ACCEPT" {
                        let _ = tx.send(());
                    }
                }
            });
            if rx.recv_timeout(Duration::from_secs(10)).is_ok() {
                return Self { child, port };
            }
            kill(&mut child);
        }
        panic!("openssl s_server did not start");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://<host>:<port>`.
    pub fn url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_says_what_was_forwarded_refused_and_tunnelled() {
        let log = r#"NOTICE    Nov 22 07:02:59.045 [18026]: Initializing tinyproxy ...
INFO      Nov 22 07:02:59.046 [18026]: Starting main loop. Accepting connections.
CONNECT   Nov 22 07:03:00.080 [18026]: Connect (file descriptor 5): 127.0.0.1
CONNECT   Nov 22 07:03:00.081 [18026]: Request (file descriptor 5): GET http://127.0.0.1:18998/ HTTP/1.1
CONNECT   Nov 22 07:03:00.104 [18026]: Connect (file descriptor 5): 127.0.0.1
CONNECT   Nov 22 07:03:00.104 [18026]: Request (file descriptor 5): GET http://localhost:18998/x HTTP/1.1
INFO      Nov 22 07:03:00.104 [18026]: No upstream proxy for localhost
CONNECT   Nov 22 07:03:00.105 [18026]: Established connection to host "localhost" using file descriptor 6.
INFO      Nov 22 07:03:00.120 [18026]: Closed connection between local client (fd:5) and remote client (fd:6)
CONNECT   Nov 22 07:03:00.137 [18026]: Connect (file descriptor 5): 127.0.0.1
CONNECT   Nov 22 07:03:00.137 [18026]: Request (file descriptor 5): CONNECT 127.0.0.1:18997 HTTP/1.1
CONNECT   Nov 22 07:03:00.138 [18026]: Established connection to host "127.0.0.1" using file descriptor 6.
"#;
        let (attempts, forwarded) = parse_log(log);
        assert_eq!(
            attempts,
            [
                "GET http://127.0.0.1:18998/",
                "GET http://localhost:18998/x",
                "CONNECT 127.0.0.1:18997"
            ]
        );
        assert_eq!(
            forwarded,
            ["GET http://localhost:18998/x", "CONNECT 127.0.0.1:18997"]
        );
        assert_eq!(
            target_host_port("GET http://example.org/x"),
            "example.org:80"
        );
        assert_eq!(target_host_port("CONNECT [::1]:8443"), "[::1]:8443");
        assert_eq!(host_of("[::1]:8443"), "::1");
    }
}
