//! matrix-rust-sdk (the engine of Element X; unstable MSC2967 scopes, query
//! response mode) logs in through real Synapse delegating to a running
//! `vestibule` binary: discovery through Synapse's auth_metadata, dynamic
//! registration of a native client, our login and consent pages driven by a
//! cookie-keeping HTTP client, token, whoami through Synapse, a room and a
//! message, refresh, `logout()` — after which Synapse refuses the old access
//! tokens at once. Once on SQLite, once on PostgreSQL.
//!
//! Vestibule is reached over https, as in a deployment: nginx terminates TLS
//! with a certificate signed by a CA generated for the test (openssl CLI), and
//! `http.public_base` is that https URL. The matrix-sdk client and the test's
//! browser trust only that CA. matrix-sdk's `logout()` refuses a non-https
//! revocation endpoint (RFC 7009 via the `oauth2` crate), so this is what
//! lets the real `logout()` run. Synapse talks to vestibule's own port over
//! plain http (discovery and introspection only).
//!
//! Needs `VESTIBULE_SYNAPSE_VENV` (scripts/synapse.sh), `VESTIBULE_BIN` (the
//! `vestibule` binary), `nginx` and `openssl`; skipped without Synapse unless
//! `VESTIBULE_REQUIRE_SYNAPSE` is set. The PostgreSQL run needs
//! `VESTIBULE_TEST_POSTGRES_URL` (an admin URL; the test creates and drops its
//! own database); skipped without it unless `VESTIBULE_REQUIRE_POSTGRES` is
//! set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use matrix_sdk::{
    Client,
    authentication::oauth::registration::{
        ApplicationType, ClientMetadata, Localized, OAuthGrantType,
    },
    ruma::{
        OwnedDeviceId, api::client::room::create_room,
        events::room::message::RoomMessageEventContent, serde::Raw,
    },
};
use regex::Regex;
use url::Url;

const SERVER_NAME: &str = "localhost";
const USERNAME: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
const STARTUP_TIMEOUT: Duration = Duration::from_mins(1);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Every `rate_limiting` limiter, roomy enough for a test run.
const RELAXED_RATE_LIMITS: &str = "
login:
  per_ip: { burst: 1000000, per_second: 1000 }
  per_account: { burst: 1000000, per_second: 1000 }
registration: { burst: 1000000, per_second: 1000 }
device_code_link: { burst: 1000000, per_second: 1000 }
account_recovery:
  per_ip: { burst: 1000000, per_second: 1000 }
  per_address: { burst: 1000000, per_second: 1000 }
email_authentication:
  per_ip: { burst: 1000000, per_second: 1000 }
  per_address: { burst: 1000000, per_second: 1000 }
  emails_per_session: { burst: 1000000, per_second: 1000 }
  attempt_per_session: { burst: 1000000, per_second: 1000 }
";

fn required() -> bool {
    std::env::var("VESTIBULE_REQUIRE_SYNAPSE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The Synapse virtualenv, or `None` (test skipped) when it is neither
/// configured nor required.
fn synapse_venv() -> Option<PathBuf> {
    match std::env::var("VESTIBULE_SYNAPSE_VENV") {
        Ok(v) if !v.is_empty() => {
            let venv = PathBuf::from(v);
            assert!(
                venv.join("bin/python").is_file(),
                "VESTIBULE_SYNAPSE_VENV={} has no bin/python; run scripts/synapse.sh",
                venv.display()
            );
            Some(venv)
        }
        _ => {
            assert!(
                !required(),
                "VESTIBULE_REQUIRE_SYNAPSE is set but VESTIBULE_SYNAPSE_VENV is not \
                 (VESTIBULE_SYNAPSE_VENV=\"$(scripts/synapse.sh)\")"
            );
            eprintln!(
                "skipping the matrix-rust-sdk test: VESTIBULE_SYNAPSE_VENV is not set \
                 (VESTIBULE_SYNAPSE_VENV=\"$(scripts/synapse.sh)\" to run it)"
            );
            None
        }
    }
}

fn vestibule_bin() -> PathBuf {
    let bin = std::env::var("VESTIBULE_BIN").unwrap_or_default();
    assert!(
        !bin.is_empty(),
        "VESTIBULE_BIN is not set: build the server with `cargo build --bin vestibule` and set \
         VESTIBULE_BIN=\"$CARGO_TARGET_DIR/debug/vestibule\" (scripts/test.sh does)"
    );
    let bin = PathBuf::from(bin);
    assert!(
        bin.is_file(),
        "VESTIBULE_BIN={} is not a file",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binding 127.0.0.1:0")
        .local_addr()
        .expect("local address")
        .port()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0_u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    hex::encode(buf)
}

fn signal_group(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Stops a child started in its own process group: TERM, then KILL after a
/// bounded wait.
fn stop_group(child: &mut Child) {
    signal_group(child, "TERM");
    let deadline = Instant::now() + STOP_TIMEOUT;
    while child.try_wait().expect("waiting for child").is_none() {
        if Instant::now() >= deadline {
            signal_group(child, "KILL");
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `vestibule -c config server` on a free port, on SQLite (a file in a
/// temporary directory) or on a fresh PostgreSQL database, with one user.
struct Vestibule {
    dir: Option<tempfile::TempDir>,
    port: u16,
    public_base: String,
    child: Option<Child>,
    output: Arc<Mutex<String>>,
    /// Dropped after the server has stopped (fields drop after `drop`).
    _database: Option<PgDatabase>,
}

impl Vestibule {
    fn command(bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        for var in ["VESTIBULE_CONFIG", "VESTIBULE_DATA_DIR", "DATABASE_URL"] {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    fn run(bin: &Path, args: &[&str]) {
        let out = Self::command(bin)
            .args(args)
            .output()
            .expect("running vestibule");
        assert!(
            out.status.success(),
            "vestibule {args:?} failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(
        bin: &Path,
        database: Database,
        port: u16,
        public_base: &str,
        synapse_port: u16,
        secret: &str,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vestibule-e2e-rust-sdk-")
            .tempdir()
            .expect("temporary directory");
        let config = dir.path().join("config.yaml");
        let config_str = config.to_str().expect("UTF-8 path");
        Self::run(bin, &["config", "generate", "-o", config_str]);

        let text = std::fs::read_to_string(&config).expect("reading the config");
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("parsing YAML");
        let (uri, pg) = match database {
            Database::Sqlite => {
                let db = dir.path().join("vestibule.db");
                (format!("sqlite://{}", db.display()), None)
            }
            Database::Postgres(pg) => (pg.url.clone(), Some(pg)),
        };
        doc["database"]["uri"] = uri.into();
        doc["http"]["listeners"][0]["binds"][0]["address"] = format!("127.0.0.1:{port}").into();
        doc["http"]["public_base"] = public_base.into();
        doc["matrix"]["homeserver"] = SERVER_NAME.into();
        doc["matrix"]["endpoint"] = format!("http://127.0.0.1:{synapse_port}/").into();
        doc["matrix"]["secret"] = secret.into();
        // The tests sign in many times from 127.0.0.1: roomy limits here
        // only (the defaults stay MAS's).
        doc["rate_limiting"] = serde_yaml::from_str(RELAXED_RATE_LIMITS).expect("limits YAML");
        std::fs::write(&config, serde_yaml::to_string(&doc).expect("YAML")).expect("writing");

        Self::run(bin, &["-c", config_str, "database", "migrate"]);
        Self::run(
            bin,
            &[
                "-c",
                config_str,
                "manage",
                "register-user",
                USERNAME,
                "--password",
                PASSWORD,
            ],
        );

        let mut child = Self::command(bin)
            .args(["-c", config_str, "server"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("starting vestibule");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let drain = |source: Box<dyn Read + Send>, tx: Option<mpsc::Sender<String>>| {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(source).lines() {
                    let Ok(line) = line else { break };
                    {
                        let mut o = output.lock().expect("output buffer");
                        o.push_str(&line);
                        o.push('\n');
                    }
                    if let Some(tx) = &tx {
                        let _ = tx.send(line);
                    }
                }
            });
        };
        drain(Box::new(child.stdout.take().expect("stdout")), Some(tx));
        drain(Box::new(child.stderr.take().expect("stderr")), None);
        let vestibule = Self {
            dir: Some(dir),
            port,
            public_base: public_base.to_owned(),
            child: Some(child),
            output,
            _database: pg,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.trim_end() == "Ready" => break,
                Ok(_) => {}
                Err(e) => panic!(
                    "vestibule did not print `Ready` ({e})\n{}",
                    vestibule.logs()
                ),
            }
        }
        vestibule
    }

    /// The issuer: `http.public_base`, the https URL behind nginx.
    fn issuer(&self) -> String {
        self.public_base.clone()
    }

    /// Vestibule's own plain-http port, which Synapse talks to.
    fn direct_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn logs(&self) -> String {
        format!(
            "--- vestibule output (tail) ---\n{}",
            tail(&self.output.lock().expect("output buffer"), 150)
        )
    }
}

impl Drop for Vestibule {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
            if let Some(dir) = self.dir.take() {
                eprintln!("vestibule's directory is kept: {}", dir.keep().display());
            }
        }
    }
}

fn postgres_required() -> bool {
    std::env::var("VESTIBULE_REQUIRE_POSTGRES").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Where vestibule keeps its data in a run.
enum Database {
    Sqlite,
    Postgres(PgDatabase),
}

/// A fresh PostgreSQL database created with `psql` from the admin URL in
/// `VESTIBULE_TEST_POSTGRES_URL`, dropped again on drop (kept when the test
/// fails, for inspection).
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// `None` (the PostgreSQL run is skipped) when no PostgreSQL is
    /// configured and none is required.
    fn create() -> Option<Self> {
        let admin_url = match std::env::var("VESTIBULE_TEST_POSTGRES_URL") {
            Ok(v) if !v.is_empty() => v,
            _ => {
                assert!(
                    !postgres_required(),
                    "VESTIBULE_REQUIRE_POSTGRES is set but VESTIBULE_TEST_POSTGRES_URL is not"
                );
                eprintln!(
                    "skipping the matrix-rust-sdk test on PostgreSQL: \
                     VESTIBULE_TEST_POSTGRES_URL is not set"
                );
                return None;
            }
        };
        // The `vestibule_test_` prefix lets scripts/test.sh drop databases
        // left behind by interrupted runs.
        let name = format!(
            "vestibule_test_e2e_rust_sdk_{}_{}",
            std::process::id(),
            random_hex(4)
        );
        psql(&admin_url, &format!("CREATE DATABASE \"{name}\""));
        let mut url = Url::parse(&admin_url).expect("VESTIBULE_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Some(Self {
            admin_url,
            name,
            url: url.into(),
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("PostgreSQL database kept: {}", self.name);
            return;
        }
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA made for this test and a server certificate for 127.0.0.1 signed by
/// it (openssl CLI; P-256 keys, valid two days).
struct TestCa {
    dir: tempfile::TempDir,
    ca_pem: Vec<u8>,
}

impl TestCa {
    const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = Vestibule e2e test CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

    fn generate() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vestibule-e2e-tls-")
            .tempdir()
            .expect("temporary directory");
        std::fs::write(dir.path().join("openssl.cnf"), Self::OPENSSL_CONFIG)
            .expect("writing openssl.cnf");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .output()
                .expect("running openssl");
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            &[
                &[
                    "req",
                    "-x509",
                    "-config",
                    "openssl.cnf",
                    "-extensions",
                    "ca",
                ][..],
                &p256,
                &[
                    "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &[
                    "req",
                    "-new",
                    "-config",
                    "openssl.cnf",
                    "-subj",
                    "/CN=127.0.0.1",
                ][..],
                &p256,
                &["-nodes", "-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            "leaf",
            "-out",
            "server.pem",
        ]);
        let ca_pem = std::fs::read(dir.path().join("ca.pem")).expect("reading ca.pem");
        Self { dir, ca_pem }
    }

    fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A reqwest 0.12 client (the test's own) trusting only this CA.
    fn http_client(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem).expect("CA PEM"))
    }
}

/// nginx terminating TLS for vestibule on a free port, as an operator would
/// put it in front: everything to vestibule's plain-http listener.
struct TlsProxy {
    dir: Option<tempfile::TempDir>,
    port: u16,
    child: Option<Child>,
}

impl TlsProxy {
    async fn start(ca: &TestCa, port: u16, upstream_port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vestibule-e2e-nginx-")
            .tempdir()
            .expect("temporary directory");
        let d = dir.path().display();
        let config = dir.path().join("nginx.conf");
        std::fs::write(
            &config,
            format!(
                "daemon off;
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      proxy_pass http://127.0.0.1:{upstream_port};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto https;
    }}
  }}
}}
",
                cert = ca.server_cert().display(),
                key = ca.server_key().display(),
            ),
        )
        .expect("writing nginx.conf");
        let console = std::fs::File::create(dir.path().join("console.log")).expect("console log");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("console log"))
            .stderr(console)
            .process_group(0)
            .spawn()
            .expect("starting nginx (is it installed? apt-get install nginx)");
        let mut proxy = Self {
            dir: Some(dir),
            port,
            child: Some(child),
        };
        proxy.wait_ready(ca).await;
        proxy
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }

    /// nginx has no readiness signal in the foreground: a bounded poll of
    /// vestibule's /health through it, over TLS with the test CA (which also
    /// proves the certificate chain before the client uses it).
    async fn wait_ready(&mut self, ca: &TestCa) {
        let http = ca
            .http_client()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let url = format!("{}health", self.url());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("child")
                .try_wait()
                .expect("wait")
            {
                self.child = None;
                panic!("nginx exited during startup ({status})\n{}", self.logs());
            }
            let last = match http.get(&url).send().await {
                Ok(res) if res.status().is_success() => return,
                Ok(res) => format!("status {}", res.status()),
                Err(e) => format!("{e:?}"),
            };
            assert!(
                Instant::now() < deadline,
                "nginx did not answer {url} within {STARTUP_TIMEOUT:?} (last: {last})\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        let Some(dir) = self.dir.as_ref() else {
            return String::new();
        };
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        format!(
            "--- nginx error.log (tail) ---\n{}\n--- nginx console ---\n{}",
            tail(&read("error.log"), 40),
            tail(&read("console.log"), 20)
        )
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Synapse from the virtualenv with `matrix_authentication_service` pointing
/// at vestibule.
struct Synapse {
    dir: Option<tempfile::TempDir>,
    port: u16,
    child: Option<Child>,
}

impl Synapse {
    async fn start(venv: &Path, port: u16, vestibule_url: &str, secret: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vestibule-e2e-synapse-")
            .tempdir()
            .expect("temporary directory");
        let python = venv.join("bin/python");
        let base = dir.path().join("homeserver.yaml");
        let out = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "--server-name", SERVER_NAME])
            .arg("--config-path")
            .arg(&base)
            .arg("--data-directory")
            .arg(dir.path())
            .args(["--generate-config", "--report-stats=no"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("running synapse --generate-config");
        assert!(
            out.status.success(),
            "synapse --generate-config failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Synapse merges config files, later ones overriding top-level keys.
        let overrides = dir.path().join("test.yaml");
        let json = |v: &str| serde_json::to_string(v).expect("JSON string");
        std::fs::write(
            &overrides,
            format!(
                "listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    x_forwarded: false
    resources: [{{names: [client], compress: false}}]
public_baseurl: http://127.0.0.1:{port}/
trusted_key_servers: []
suppress_key_server_warning: true
serve_client_wellknown: true
password_config: {{enabled: false}}
background_updates: {{sleep_enabled: false}}
database: {{name: sqlite3, args: {{database: {db}}}}}
matrix_authentication_service:
  enabled: true
  endpoint: {endpoint}
  secret: {secret}
rc_message: {{per_second: 1000, burst_count: 1000}}
",
                db = json(dir.path().join("homeserver.db").to_str().expect("UTF-8")),
                endpoint = json(vestibule_url),
                secret = json(secret),
            ),
        )
        .expect("writing test.yaml");
        let console = std::fs::File::create(dir.path().join("console.log")).expect("console log");
        let child = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(&base)
            .arg("--config-path")
            .arg(&overrides)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("console log"))
            .stderr(console)
            .process_group(0)
            .spawn()
            .expect("starting Synapse");
        let mut synapse = Self {
            dir: Some(dir),
            port,
            child: Some(child),
        };
        synapse.wait_healthy().await;
        synapse
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Synapse has no readiness signal on stdout: a bounded poll of /health.
    async fn wait_healthy(&mut self) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let url = format!("{}health", self.url());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("child")
                .try_wait()
                .expect("wait")
            {
                self.child = None;
                panic!("Synapse exited during startup ({status})\n{}", self.logs());
            }
            if let Ok(res) = http.get(&url).send().await
                && res.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Synapse did not answer {url} within {STARTUP_TIMEOUT:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn logs(&self) -> String {
        let Some(dir) = self.dir.as_ref() else {
            return String::new();
        };
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        format!(
            "--- synapse homeserver.log (tail) ---\n{}\n--- synapse console (tail) ---\n{}",
            tail(&read("homeserver.log"), 80),
            tail(&read("console.log"), 40)
        )
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
            if let Some(dir) = self.dir.take() {
                eprintln!("Synapse's directory is kept: {}", dir.keep().display());
            }
        }
    }
}

/// A plain HTTP "browser": keeps cookies, never follows redirects by itself.
struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: reqwest::StatusCode,
    url: Url,
    location: Option<Url>,
    body: String,
}

impl Browser {
    fn new(ca: &TestCa) -> Self {
        Self {
            http: ca
                .http_client()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            cookies: BTreeMap::new(),
        }
    }

    async fn send(&mut self, url: &Url, form: Option<&[(String, String)]>) -> Page {
        let mut req = match form {
            Some(fields) => self
                .http
                .post(url.clone())
                .header("origin", url.origin().ascii_serialization())
                .form(fields),
            None => self.http.get(url.clone()),
        };
        if !self.cookies.is_empty() {
            let header = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.header("cookie", header);
        }
        let res = req.send().await.expect("HTTP request");
        for c in res.headers().get_all("set-cookie") {
            let c = c.to_str().expect("ASCII cookie");
            let mut parts = c.split(';');
            let pair = parts.next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let expired = parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if expired || value.trim().is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let status = res.status();
        let location = res.headers().get("location").map(|l| {
            url.join(l.to_str().expect("ASCII location"))
                .expect("location URL")
        });
        let body = res.text().await.expect("body");
        Page {
            status,
            url: url.clone(),
            location,
            body,
        }
    }

    /// GETs `url` and follows redirects until a page, or until the redirect
    /// leaves for `stop_at` (the client's redirect URI).
    async fn follow(&mut self, url: Url, stop_at: &str) -> Page {
        let mut current = url;
        for _ in 0..10 {
            let page = self.send(&current, None).await;
            match &page.location {
                Some(next) if page.status.is_redirection() => {
                    if next.as_str().starts_with(stop_at) {
                        return page;
                    }
                    current = next.clone();
                }
                _ => return page,
            }
        }
        panic!("too many redirects from {current}");
    }
}

struct Form {
    action: Url,
    method: String,
    /// Named `<input>`s with their values (hidden ones carry csrf, grant…).
    fields: Vec<(String, String, String)>,
}

fn decode(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Every `<form>` of a page with its action, method and inputs.
fn forms(html: &str, base: &Url) -> Vec<Form> {
    let form_re = Regex::new(r"(?is)<form\b([^>]*)>(.*?)</form>").unwrap();
    let input_re = Regex::new(r"(?is)<input\b([^>]*)>").unwrap();
    let attr = |attrs: &str, name: &str| {
        Regex::new(&format!(r#"(?i)\b{name}\s*=\s*"([^"]*)""#))
            .unwrap()
            .captures(attrs)
            .map(|c| decode(&c[1]))
    };
    form_re
        .captures_iter(html)
        .map(|f| Form {
            action: base
                .join(&attr(&f[1], "action").unwrap_or_default())
                .expect("form action"),
            method: attr(&f[1], "method")
                .unwrap_or_else(|| "get".to_owned())
                .to_lowercase(),
            fields: input_re
                .captures_iter(&f[2])
                .filter_map(|i| {
                    Some((
                        attr(&i[1], "name")?,
                        attr(&i[1], "type").unwrap_or_default().to_lowercase(),
                        attr(&i[1], "value").unwrap_or_default(),
                    ))
                })
                .collect(),
        })
        .collect()
}

/// Logs in as alice and consents on vestibule's HTML pages; returns the URL
/// vestibule redirected to (the client's callback with `code`, `state`, `iss`).
async fn log_in_and_consent(ca: &TestCa, auth_url: Url, redirect_uri: &str) -> Url {
    let mut browser = Browser::new(ca);
    let page = browser.follow(auth_url, redirect_uri).await;
    assert_eq!(
        page.status, 200,
        "login page at {}: {}",
        page.url, page.body
    );
    let login = forms(&page.body, &page.url)
        .into_iter()
        .find(|f| f.fields.iter().any(|(_, t, _)| t == "password"))
        .unwrap_or_else(|| panic!("a login form with a password field:\n{}", page.body));
    assert_eq!(login.method, "post");
    let mut fields: Vec<(String, String)> = login
        .fields
        .iter()
        .filter(|(_, t, _)| t == "hidden")
        .map(|(n, _, v)| (n.clone(), v.clone()))
        .collect();
    assert!(
        fields.iter().any(|(n, _)| n == "csrf"),
        "a CSRF token on the login form: {:?}",
        login.fields
    );
    fields.push(("username".to_owned(), USERNAME.to_owned()));
    fields.push(("password".to_owned(), PASSWORD.to_owned()));
    let res = browser.send(&login.action, Some(&fields)).await;
    assert_eq!(
        res.status, 303,
        "login POST answers 303 See Other: {}",
        res.body
    );
    let next = res.location.expect("a Location after login");
    let mut page = if next.as_str().starts_with(redirect_uri) {
        res_with(next)
    } else {
        browser.follow(next, redirect_uri).await
    };
    if page.status == 200 {
        let consent = forms(&page.body, &page.url)
            .into_iter()
            .find(|f| {
                f.method == "post"
                    && f.fields
                        .iter()
                        .any(|(n, _, v)| n == "action" && v == "allow")
            })
            .unwrap_or_else(|| panic!("a consent form with action=allow:\n{}", page.body));
        let fields: Vec<(String, String)> = consent
            .fields
            .iter()
            .map(|(n, _, v)| (n.clone(), v.clone()))
            .collect();
        page = browser.send(&consent.action, Some(&fields)).await;
        assert_eq!(
            page.status, 303,
            "consent POST answers 303 See Other: {}",
            page.body
        );
    }
    let back = page.location.unwrap_or_else(|| {
        panic!(
            "a redirect to the client, got {}: {}",
            page.status, page.body
        )
    });
    assert!(
        back.as_str().starts_with(redirect_uri),
        "redirected to the client: {back}"
    );
    back
}

fn res_with(location: Url) -> Page {
    Page {
        status: reqwest::StatusCode::SEE_OTHER,
        url: location.clone(),
        location: Some(location),
        body: String::new(),
    }
}

/// Status of a raw `GET /_matrix/client/v3/account/whoami` on Synapse.
async fn whoami_status(synapse: &str, token: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .get(format!("{synapse}_matrix/client/v3/account/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .expect("whoami request")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_rust_sdk_oauth_login_through_synapse_sqlite() {
    let Some(venv) = synapse_venv() else {
        return;
    };
    oauth_login_through_synapse(&venv, Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_rust_sdk_oauth_login_through_synapse_postgres() {
    let Some(venv) = synapse_venv() else {
        return;
    };
    let Some(database) = PgDatabase::create() else {
        return;
    };
    oauth_login_through_synapse(&venv, Database::Postgres(database)).await;
}

async fn oauth_login_through_synapse(venv: &Path, database: Database) {
    let bin = vestibule_bin();
    let ca = TestCa::generate();
    let synapse_port = free_port();
    let vestibule_port = free_port();
    let proxy_port = free_port();
    let secret = random_hex(32);
    let vestibule = Vestibule::start(
        &bin,
        database,
        vestibule_port,
        &format!("https://127.0.0.1:{proxy_port}/"),
        synapse_port,
        &secret,
    );
    let proxy = TlsProxy::start(&ca, proxy_port, vestibule_port).await;
    assert_eq!(proxy.url(), vestibule.issuer());
    let synapse = Synapse::start(venv, synapse_port, &vestibule.direct_url(), &secret).await;
    let homeserver = synapse.url();

    // Discovery through Synapse's auth_metadata (http is accepted because
    // the homeserver URL itself is http). The client trusts the test CA
    // and nothing else.
    let client = Client::builder()
        .homeserver_url(&homeserver)
        .disable_built_in_root_certificates()
        .add_root_certificates(vec![
            matrix_sdk::reqwest::Certificate::from_pem(&ca.ca_pem).expect("CA PEM"),
        ])
        .build()
        .await
        .expect("matrix-sdk client");
    let metadata = client
        .oauth()
        .server_metadata()
        .await
        .expect("server metadata through Synapse");
    assert_eq!(
        metadata.issuer.as_str(),
        vestibule.issuer(),
        "Synapse serves vestibule's discovery document"
    );

    // Dynamic registration of a native client with a loopback redirect URI,
    // then the authorization URL.
    let callback_port = free_port();
    let redirect_uri: Url = format!("http://127.0.0.1:{callback_port}/callback")
        .parse()
        .unwrap();
    let mut client_metadata = ClientMetadata::new(
        ApplicationType::Native,
        vec![OAuthGrantType::AuthorizationCode {
            redirect_uris: vec![redirect_uri.clone()],
        }],
        Localized::new("https://e2e.example.org/".parse().unwrap(), []),
    );
    client_metadata.client_name = Some(Localized::new("matrix-rust-sdk e2e".to_owned(), []));
    let registration = Raw::new(&client_metadata).expect("client metadata JSON");
    let device_id: OwnedDeviceId = "RUSTSDKDEVICE".into();
    let auth = client
        .oauth()
        .login(
            redirect_uri.clone(),
            Some(device_id.clone()),
            Some(registration.into()),
            None,
        )
        .build()
        .await
        .expect("registration and authorization URL");
    assert!(
        auth.url.as_str().starts_with(&vestibule.issuer()),
        "the authorization endpoint is vestibule's: {}",
        auth.url
    );
    assert!(client.oauth().client_id().is_some(), "client registered");

    let back = log_in_and_consent(&ca, auth.url.clone(), redirect_uri.as_str()).await;
    let query: BTreeMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(
        query.get("state").map(String::as_str),
        Some(auth.state.secret().as_str())
    );
    assert_eq!(query.get("iss"), Some(&vestibule.issuer()), "RFC 9207 iss");
    assert!(query.contains_key("code"), "a code in {back}");
    client
        .oauth()
        .finish_login(back.into())
        .await
        .expect("finish_login (code exchange)");

    // Synapse accepts the token: user and device.
    let who = client.whoami().await.expect("whoami through Synapse");
    assert_eq!(who.user_id.as_str(), format!("@{USERNAME}:{SERVER_NAME}"));
    assert_eq!(who.device_id.as_ref(), Some(&device_id));
    assert_eq!(client.device_id(), Some(&*device_id));

    let mut request = create_room::v3::Request::new();
    request.name = Some("e2e".to_owned());
    let room = client.create_room(request).await.expect("creating a room");
    let sent = room
        .send(RoomMessageEventContent::text_plain(
            "hello from matrix-rust-sdk",
        ))
        .await
        .expect("sending a message");
    assert!(sent.response.event_id.as_str().starts_with('$'));

    // Refresh: a new access token that Synapse accepts for the same device.
    let first_token = client.access_token().expect("access token");
    client
        .oauth()
        .refresh_access_token()
        .await
        .expect("refreshing the access token");
    let second_token = client.access_token().expect("access token");
    assert_ne!(
        first_token, second_token,
        "refresh issues a new access token"
    );
    let who = client.whoami().await.expect("whoami after refresh");
    assert_eq!(who.device_id.as_ref(), Some(&device_id));

    // Logout: matrix-sdk revokes the access token at vestibule's https
    // revocation endpoint (RFC 7009); vestibule ends the whole session and
    // deletes the device, so Synapse refuses the tokens at once despite its
    // two-minute introspection cache.
    assert_eq!(
        metadata.revocation_endpoint.as_str(),
        format!("{}oauth2/revoke", vestibule.issuer()),
        "the revocation endpoint is vestibule's, over https"
    );
    assert_eq!(
        whoami_status(&homeserver, &second_token).await,
        reqwest::StatusCode::OK,
        "the current access token works before logout"
    );
    let refresh_token = client
        .session_tokens()
        .and_then(|t| t.refresh_token)
        .expect("a refresh token");
    client
        .oauth()
        .logout()
        .await
        .expect("logout() revokes the session");
    for token in [&second_token, &first_token] {
        assert_eq!(
            whoami_status(&homeserver, token).await,
            reqwest::StatusCode::UNAUTHORIZED,
            "Synapse refuses an access token of the logged-out session"
        );
    }

    // Revoking the access token ended the whole session: its refresh token
    // is refused too (RFC 6749 §5.2 invalid_grant).
    let client_id = client.oauth().client_id().expect("client id").clone();
    let res = ca
        .http_client()
        .build()
        .expect("client")
        .post(metadata.token_endpoint.clone())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    let body: serde_json::Value = res.json().await.expect("JSON error body");
    assert_eq!(body["error"], "invalid_grant", "{body}");

    drop(synapse);
    drop(proxy);
    drop(vestibule);
}
