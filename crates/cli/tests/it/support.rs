//! Running the binary, waiting for readiness, stopping it, and a tiny
//! blocking HTTP/1.1 client.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// How long the server may take to print `Ready` (or to stop).
pub const STARTUP_TIMEOUT: Duration = Duration::from_mins(1);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Environment variables of ours that must not leak from the test runner
/// into the child process.
const SCRUBBED_ENV: &[&str] = &[
    "VESTIBULE_CONFIG",
    "VESTIBULE_DATA_DIR",
    "VESTIBULE_LOG",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "DATABASE_URL",
    "SYNAPSE_CLIENT_SECRET",
    "OPENMEET_CLIENT_SECRET",
];

/// A `vestibule` command with a clean environment (as far as we care).
pub fn vestibule() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vestibule"));
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a command to completion and returns its output.
pub fn run(cmd: &mut Command) -> CmdOutput {
    let out = cmd.output().expect("running vestibule");
    CmdOutput::from(out)
}

/// The output of a finished command, as text.
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for CmdOutput {
    fn from(out: Output) -> Self {
        Self {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl CmdOutput {
    /// Panics unless the command succeeded.
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "expected success, got {self}");
        self
    }

    /// Panics if the command succeeded.
    pub fn assert_failure(&self) -> &Self {
        assert!(!self.status.success(), "expected failure, got {self}");
        self
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// A running `vestibule` process. Killed on drop unless it was stopped.
pub struct Server {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

fn drain<R: Read + Send + 'static>(
    source: R,
    buffer: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            {
                let mut b = buffer.lock().expect("output buffer");
                b.push_str(&line);
                b.push('\n');
            }
            if let Some(tx) = &lines {
                // The receiver may be gone once readiness was seen.
                let _ = tx.send(line);
            }
        }
    })
}

impl Server {
    /// Spawns the command with piped output; does not wait for readiness.
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning vestibule");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let readers = vec![
            drain(
                child.stdout.take().expect("piped stdout"),
                stdout.clone(),
                Some(tx),
            ),
            drain(
                child.stderr.take().expect("piped stderr"),
                stderr.clone(),
                None,
            ),
        ];
        Self {
            child: Some(child),
            lines: rx,
            stdout,
            stderr,
            readers,
        }
    }

    /// Spawns the command and waits until it prints `Ready`.
    pub fn start(cmd: Command) -> Self {
        let server = Self::spawn(cmd);
        server.wait_ready();
        server
    }

    /// Reads stdout line by line until `Ready`; fails the test on timeout or
    /// if the process ends first.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.trim_end() == "Ready" => return,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "vestibule did not print `Ready` within {STARTUP_TIMEOUT:?}\n{}",
                        self.output_so_far()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Let stderr catch up before reporting.
                    std::thread::sleep(Duration::from_millis(200));
                    panic!(
                        "vestibule closed its stdout before printing `Ready`\n{}",
                        self.output_so_far()
                    )
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running child").id()
    }

    pub fn output_so_far(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.lock().expect("stdout buffer"),
            self.stderr.lock().expect("stderr buffer")
        )
    }

    /// For a start that must fail: waits for the process to exit by itself
    /// (it closes stdout), failing the test at once if it prints `Ready`.
    pub fn wait_startup_failure(mut self) -> CmdOutput {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.trim_end() == "Ready" => {
                    panic!(
                        "vestibule started although it should have refused to\n{}",
                        self.output_so_far()
                    )
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "vestibule neither failed nor got ready within {STARTUP_TIMEOUT:?}\n{}",
                        self.output_so_far()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.finish(),
            }
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> CmdOutput {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed: {status}");
        self.finish()
    }

    /// Sends SIGTERM, then asserts a clean exit that printed `Stopped`.
    pub fn stop(self) -> CmdOutput {
        let out = self.terminate();
        assert!(out.status.success(), "unclean exit after SIGTERM: {out}");
        assert!(
            out.stdout.lines().any(|l| l.trim_end() == "Stopped"),
            "no `Stopped` after SIGTERM: {out}"
        );
        out
    }

    fn finish(&mut self) -> CmdOutput {
        let mut child = self.child.take().expect("running child");
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for vestibule") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "vestibule did not exit within {STOP_TIMEOUT:?}\n{}",
                    self.output_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        CmdOutput {
            status,
            stdout: self.stdout.lock().expect("stdout buffer").clone(),
            stderr: self.stderr.lock().expect("stderr buffer").clone(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("output of the killed vestibule:\n{}", self.output_so_far());
            }
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// `GET path` on `127.0.0.1:port` with `Connection: close`.
pub fn get(port: u16, path: &str) -> Response {
    get_with(port, path, &[])
}

/// `GET path` with extra request headers.
pub fn get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connecting to 127.0.0.1:{port}: {e}"));
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("sending request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reading response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII response head");
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    assert!(
        version.starts_with("HTTP/1."),
        "bad status line {status_line:?}"
    );
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {l:?}"));
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    response.body = if response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        dechunk(body)
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().expect("numeric content-length");
        assert!(body.len() >= len, "truncated body");
        body[..len].to_vec()
    } else {
        body.to_vec()
    };
    response
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_str = std::str::from_utf8(&data[..eol]).expect("chunk size");
        let size_str = size_str.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_str, 16).expect("hex chunk size");
        data = &data[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Reads a YAML file into a value.
pub fn read_yaml(path: &Path) -> serde_yaml::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Writes a YAML value to a file.
pub fn write_yaml(path: &Path, value: &serde_yaml::Value) {
    let text = serde_yaml::to_string(value).expect("serialising YAML");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Generates a config with `vestibule config generate -o PATH`.
pub fn generate_config(dir: &Path) -> PathBuf {
    let path = dir.join("gen.yaml");
    run(vestibule().args(["config", "generate", "-o"]).arg(&path)).assert_success();
    path
}

/// Writes a copy of the generated config at `generated` with another database
/// URL and a single web listener on `127.0.0.1:port`.
pub fn write_config_for(generated: &Path, out: &Path, database_uri: &str, port: u16) {
    let mut doc = read_yaml(generated);
    doc["database"]["uri"] = database_uri.into();
    let address = format!("127.0.0.1:{port}");
    doc["http"]["listeners"][0]["binds"][0]["address"] = address.as_str().into();
    doc["http"]["public_base"] = format!("http://{address}/").into();
    write_yaml(out, &doc);
}
