//! Real Synapse for the homeserver tests.
//!
//! `VESTIBULE_SYNAPSE_VENV` names a virtualenv with `matrix-synapse`
//! installed (`scripts/synapse.sh` prints one; `scripts/test.sh` sets it).
//! Without it the Synapse tests are skipped with a message, unless
//! `VESTIBULE_REQUIRE_SYNAPSE=1`, which makes them fail.
//!
//! [`Synapse::start`] generates a `homeserver.yaml` in a temporary directory
//! (client listener on a free 127.0.0.1 port, SQLite, no key servers,
//! `matrix_authentication_service` pointing at our production router served
//! in-process on 127.0.0.1), starts Synapse in its own process group and
//! waits for `GET /health`. Dropping it kills the process group; after a
//! failed test the directory (config, database, logs) is kept and its path
//! printed.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use vestibule_server::{Resources, homeserver::SynapseHomeserver};

use crate::harness::TestApp;

/// The `server_name` of the test homeserver.
pub const SERVER_NAME: &str = "localhost";
/// How long Synapse may take to answer `/health`.
const STARTUP_TIMEOUT: Duration = Duration::from_mins(1);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The Synapse virtualenv, or `None` to skip (panics when Synapse is required).
pub fn synapse_venv(test: &str) -> Option<PathBuf> {
    let required =
        std::env::var("VESTIBULE_REQUIRE_SYNAPSE").is_ok_and(|v| !v.is_empty() && v != "0");
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
                !required,
                "VESTIBULE_REQUIRE_SYNAPSE is set but VESTIBULE_SYNAPSE_VENV is not \
                 (VESTIBULE_SYNAPSE_VENV=\"$(scripts/synapse.sh)\")"
            );
            eprintln!(
                "skipping {test}: VESTIBULE_SYNAPSE_VENV is not set \
                 (VESTIBULE_SYNAPSE_VENV=\"$(scripts/synapse.sh)\" to run it)"
            );
            None
        }
    }
}

/// Our production router, served on 127.0.0.1 for Synapse to call.
pub struct Vestibule {
    pub app: TestApp,
    pub port: u16,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Vestibule {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let port = listener.local_addr().expect("address").port();
        let app = TestApp::new(&format!("http://127.0.0.1:{port}/")).await;
        let router = app.router(&Resources::all(), None);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
                .expect("serving");
        });
        Self {
            app,
            port,
            stop,
            task: Some(task),
        }
    }
}

impl Drop for Vestibule {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A Synapse process with `matrix_authentication_service` enabled.
pub struct Synapse {
    venv: PathBuf,
    dir: Option<tempfile::TempDir>,
    pub port: u16,
    pub secret: String,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binding 127.0.0.1:0")
        .local_addr()
        .expect("local address")
        .port()
}

impl Synapse {
    /// Generates a config whose `matrix_authentication_service.endpoint` is
    /// `http://127.0.0.1:{vestibule_port}/`, starts Synapse and waits for it.
    pub async fn start(venv: &Path, vestibule_port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vestibule-synapse-")
            .tempdir()
            .expect("temporary directory");
        let config = dir.path().join("homeserver.yaml");
        let out = Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                SERVER_NAME,
                "--config-path",
            ])
            .arg(&config)
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

        let port = free_port();
        let secret = format!("test-secret-{port}-{}", std::process::id());
        let text = std::fs::read_to_string(&config).expect("reading homeserver.yaml");
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("parsing YAML");
        let set = |doc: &mut serde_yaml::Value, key: &str, value: serde_yaml::Value| {
            doc[key] = value;
        };
        let yaml = |s: &str| -> serde_yaml::Value { serde_yaml::from_str(s).expect("YAML") };
        set(
            &mut doc,
            "listeners",
            yaml(&format!(
                "[{{port: {port}, bind_addresses: ['127.0.0.1'], type: http, tls: false, \
                 x_forwarded: false, resources: [{{names: [client], compress: false}}]}}]"
            )),
        );
        set(&mut doc, "trusted_key_servers", yaml("[]"));
        set(&mut doc, "suppress_key_server_warning", yaml("true"));
        set(
            &mut doc,
            "public_baseurl",
            format!("http://127.0.0.1:{port}/").into(),
        );
        set(&mut doc, "serve_client_wellknown", yaml("true"));
        // Delegation refuses to start with password login on (the default).
        set(&mut doc, "password_config", yaml("{enabled: false}"));
        // A fresh database starts with pending background updates (e.g. the
        // unique index `create_profile` upserts on); run them without pauses.
        set(
            &mut doc,
            "background_updates",
            yaml("{sleep_enabled: false}"),
        );
        assert_eq!(
            doc["database"]["name"].as_str(),
            Some("sqlite3"),
            "the generated config uses SQLite"
        );
        let mut mas = serde_yaml::Mapping::new();
        mas.insert("enabled".into(), true.into());
        mas.insert(
            "endpoint".into(),
            format!("http://127.0.0.1:{vestibule_port}/").into(),
        );
        mas.insert("secret".into(), secret.clone().into());
        set(
            &mut doc,
            "matrix_authentication_service",
            serde_yaml::Value::Mapping(mas),
        );
        std::fs::write(&config, serde_yaml::to_string(&doc).expect("YAML")).expect("writing");

        let mut synapse = Self {
            venv: venv.to_owned(),
            dir: Some(dir),
            port,
            secret,
            child: None,
        };
        synapse.start_again().await;
        synapse
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("directory").path()
    }

    /// Starts the (stopped) Synapse again on the same config and database.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "Synapse is already running");
        let console = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("console.log"))
            .expect("console log");
        let child = Command::new(self.venv.join("bin/python"))
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(self.dir().join("homeserver.yaml"))
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("console log"))
            .stderr(console)
            // Its own process group, so teardown can end it and anything it
            // spawned at once.
            .process_group(0)
            .spawn()
            .expect("starting Synapse");
        self.child = Some(child);
        self.wait_healthy().await;
    }

    /// Polls `GET /health` and the background updates (Synapse gives no
    /// other readiness signal): a bounded loop, failing with the log after
    /// [`STARTUP_TIMEOUT`].
    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let url = format!("http://127.0.0.1:{}/health", self.port);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("child")
                .try_wait()
                .expect("waiting for Synapse")
            {
                self.child = None;
                panic!("Synapse exited during startup ({status})\n{}", self.log());
            }
            if let Ok(res) = client.get(&url).send().await
                && res.status().is_success()
                && self.background_updates_done()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Synapse did not answer {url} within {STARTUP_TIMEOUT:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Synapse on a fresh database is not fully usable until its background
    /// updates (schema work) are done: `reactivate_user`, for one, fails
    /// until the unique index on `profiles.full_user_id` exists.
    fn background_updates_done(&self) -> bool {
        self.sql("SELECT COUNT(*) FROM background_updates") == ["0"]
    }

    /// SIGTERM to the process group, then SIGKILL if it lingers.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal_group(&child, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while child.try_wait().expect("waiting for Synapse").is_none() {
            if Instant::now() >= deadline {
                signal_group(&child, "KILL");
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client for its `/_synapse/mas` API with the right secret.
    pub fn client(&self) -> SynapseHomeserver {
        self.client_with_secret(&self.secret)
    }

    pub fn client_with_secret(&self, secret: &str) -> SynapseHomeserver {
        SynapseHomeserver::new(
            SERVER_NAME,
            &format!("http://127.0.0.1:{}/", self.port)
                .parse()
                .expect("URL"),
            secret,
        )
        .expect("client")
    }

    /// Rows of a query on Synapse's own SQLite database (columns joined by
    /// `|`), to check what the `/_synapse/mas` API cannot show (emails,
    /// devices, the locked flag).
    pub fn sql(&self, query: &str) -> Vec<String> {
        let out = Command::new(self.venv.join("bin/python"))
            .args([
                "-c",
                "import sqlite3, sys\n\
                 db = sqlite3.connect(sys.argv[1])\n\
                 for row in db.execute(sys.argv[2]):\n    \
                 print('|'.join('' if v is None else str(v) for v in row))",
            ])
            .arg(self.dir().join("homeserver.db"))
            .arg(query)
            .stdin(Stdio::null())
            .output()
            .expect("running python");
        assert!(
            out.status.success(),
            "query {query:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The end of Synapse's log and console output.
    pub fn log(&self) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.dir().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(80)..].join("\n")
        };
        format!(
            "--- {} ---\n--- homeserver.log (tail) ---\n{}\n--- console.log (tail) ---\n{}",
            self.dir().display(),
            tail("homeserver.log"),
            tail("console.log")
        )
    }
}

fn signal_group(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_group(&child, "KILL");
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!(
                "Synapse's directory is kept for inspection: {}",
                kept.display()
            );
        }
    }
}
