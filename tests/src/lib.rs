//! Test support: start the real `tidelake` binary on 127.0.0.1 with its own
//! data directory, and talk to it over HTTP the way a user does.
//!
//! Shared by the end-to-end tests (`tests/`) and the benchmarks (`bench/`).

pub mod edge;
pub mod jwt;
pub mod native;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

/// This checkout's `tests` folder. Cargo sets `CARGO_MANIFEST_DIR` when it
/// runs a test; the compile-time value is only a fallback, because one
/// build directory is shared by every checkout on a machine.
pub fn tests_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Path of the `tidelake` binary: `$TIDELAKE_BIN`, or the one built next to
/// the running test or bench executable.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TIDELAKE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("tidelake");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p tidelake) or set TIDELAKE_BIN",
        bin.display()
    );
    bin
}

/// A running `tidelake serve`, killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    /// `host:port` of the Postgres wire front (lake queries), if serving.
    pub pg: Option<String>,
    /// `host:port` of the tenants' Postgres wire protocol, if serving.
    pub tenant_pg: Option<String>,
    pub data_dir: PathBuf,
    args: Vec<String>,
    bin: PathBuf,
}

impl Server {
    /// Start `tidelake serve` on a free port with `data_dir` and extra flags,
    /// and wait until it reports ready.
    pub async fn start(data_dir: &Path, args: &[&str]) -> Server {
        // Every change committed to the lake within the flush interval,
        // unless the test is about adaptive commits.
        let mut args = args.to_vec();
        if !args.contains(&"--lake-max-lag") {
            args.extend(["--lake-max-lag", "0s"]);
        }
        Self::start_binary(&binary(), data_dir, &args).await
    }

    /// `start`, with another build of `tidelake` (a benchmark's earlier release).
    pub async fn start_binary(bin: &Path, data_dir: &Path, args: &[&str]) -> Server {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut server = Server {
            child: None,
            base: String::new(),
            pg: None,
            tenant_pg: None,
            data_dir: data_dir.to_path_buf(),
            args,
            bin: bin.to_path_buf(),
        };
        server.spawn();
        server.wait_ready().await;
        server
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data_dir).expect("create data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .expect("open server log");
        // The Postgres wire front on a free port too, unless the test says.
        let pg_default = !self.args.iter().any(|a| a == "--pg-listen");
        // (A benchmark's earlier release may not have the tenants' listener.)
        let tenant_pg_default = !self.args.iter().any(|a| a == "--tenant-pg-listen") && self.bin == binary();
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(if pg_default { &["--pg-listen", "127.0.0.1:0"][..] } else { &[] })
            .args(if tenant_pg_default { &["--tenant-pg-listen", "127.0.0.1:0"][..] } else { &[] })
            .args(&self.args)
            .env_remove("TIDELAKE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn tidelake");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next()
            .expect("tidelake printed nothing")
            .expect("read stdout");
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        self.base = url.to_owned();
        let wire_on = pg_default || self.args.windows(2).any(|w| w[0] == "--pg-listen" && w[1] != "off");
        self.pg = wire_on.then(|| {
            let line = lines.next().expect("tidelake printed no Postgres address").expect("read stdout");
            let address = line.strip_prefix("tidelake postgres wire listening on ");
            address.unwrap_or_else(|| panic!("unexpected second line {line:?}")).to_owned()
        });
        let tenant_wire_on = tenant_pg_default || self.args.windows(2).any(|w| w[0] == "--tenant-pg-listen" && w[1] != "off");
        self.tenant_pg = tenant_wire_on.then(|| {
            let line = lines.next().expect("tidelake printed no tenant Postgres address").expect("read stdout");
            let address = line.strip_prefix("tidelake tenant postgres listening on ");
            address.unwrap_or_else(|| panic!("unexpected line {line:?}")).to_owned()
        });
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// Poll `/readiness` until it answers 200.
    pub async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(resp) = http.get(format!("{}/readiness", self.base)).send().await
                && resp.status() == StatusCode::OK
            {
                return;
            }
            assert!(Instant::now() < deadline, "server at {} never became ready", self.base);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no shutdown, no flush, nothing.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Graceful stop (SIGTERM), waiting for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("tidelake did not stop within 60s of SIGTERM");
        }
    }

    /// `tidelake maintain`: run `sql` in `tenant`'s database as its owner
    /// (the server must be stopped). Returns each statement's result.
    pub fn maintain(&self, tenant: &str, sql: &str) -> Vec<Value> {
        assert!(self.child.is_none(), "stop the server first");
        let out = Command::new(binary())
            .arg("maintain")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--tenant", tenant, sql])
            .env_remove("TIDELAKE_CONFIG")
            .output()
            .expect("run tidelake maintain");
        assert!(
            out.status.success(),
            "tidelake maintain failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON result"))
            .collect()
    }

    /// Start the same server again (same data dir and flags) after a stop or kill.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        self.spawn();
        self.wait_ready().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An HTTP client for one server.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("http client"),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET a path; returns status and JSON body (Null if the body is not JSON).
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self.http.get(self.url(path)).send().await.expect("GET");
        read(resp).await
    }

    /// POST a JSON body to a path.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        read(resp).await
    }

    /// `POST /t/{tenant}/query`.
    pub async fn query(&self, tenant: &str, sql: &str, params: Value) -> (StatusCode, Value) {
        self.post(
            &format!("/t/{tenant}/query"),
            &json!({ "sql": sql, "params": params }),
        )
        .await
    }

    /// A query that must succeed; returns its rows.
    pub async fn rows(&self, tenant: &str, sql: &str, params: Value) -> Vec<Value> {
        let (status, body) = self.query(tenant, sql, params).await;
        assert_eq!(status, StatusCode::OK, "{sql}: {body}");
        body["rows"].as_array().cloned().unwrap_or_default()
    }

    /// A statement that must succeed.
    pub async fn exec(&self, tenant: &str, sql: &str) {
        let (status, body) = self.query(tenant, sql, json!([])).await;
        assert_eq!(status, StatusCode::OK, "{sql}: {body}");
    }

    /// The tenant's newest change LSN, read from its database.
    pub async fn head_lsn(&self, tenant: &str) -> u64 {
        let rows = self.rows(tenant, "SELECT tidelake.next_lsn() - 1 AS head", json!([])).await;
        rows[0]["head"].as_u64().unwrap_or_else(|| panic!("no head: {rows:?}"))
    }

    /// Wait until `health` says the lake holds every change of the tenant;
    /// returns the tenant's head LSN.
    pub async fn wait_shipped(&self, tenant: &str) -> u64 {
        let head = self.head_lsn(tenant).await;
        let shipped = eventually(Duration::from_secs(60), || async {
            let (_, health) = self.get(&format!("/t/{tenant}/health")).await;
            let lake = &health["tenant"]["lake"];
            lake["shippedLsn"].as_u64() == Some(head) && lake["lagLsn"] == 0
        })
        .await;
        let (_, health) = self.get(&format!("/t/{tenant}/health")).await;
        assert!(shipped, "tenant {tenant} never caught up to LSN {head}: {}", health["tenant"]);
        head
    }

    /// `GET /t/{tenant}/ping` → the engine state.
    pub async fn engine_state(&self, tenant: &str) -> String {
        let (status, body) = self.get(&format!("/t/{tenant}/ping")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["engine"].as_str().unwrap_or_default().to_owned()
    }
}

async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A table of a `schema` answer as (name, type, nullable) per column.
pub fn columns(table: &Value) -> Vec<(&str, &str, bool)> {
    table["columns"]
        .as_array()
        .expect("a table's columns")
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap(), c["nullable"].as_bool().unwrap()))
        .collect()
}

/// Poll `check` until it returns true or `timeout` passes; returns whether it did.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A WebSocket connection to `/t/{tenant}/ws`, speaking JSON messages.
pub struct Ws {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    pub async fn connect(server_base: &str, tenant: &str) -> Ws {
        let url = format!("{}/t/{tenant}/ws", server_base.replacen("http://", "ws://", 1));
        let (stream, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket connect");
        Ws { stream }
    }

    pub async fn send(&mut self, msg: Value) {
        use futures_util::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(msg.to_string().into()))
            .await
            .expect("WebSocket send");
    }

    /// The next JSON message, or `None` if none arrives within `timeout` or
    /// the connection closed.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.stream.next()).await {
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) => {
                    return Some(serde_json::from_str(text.as_str()).expect("JSON message"));
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The code of the close frame that ends the connection within
    /// `timeout` (text messages before it are skipped); `None` if it does
    /// not close so.
    pub async fn close_code(&mut self, timeout: Duration) -> Option<u16> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.stream.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next message, whatever its type (panics after `timeout`).
    pub async fn expect_any(&mut self, timeout: Duration) -> Value {
        self.recv(timeout).await.unwrap_or_else(|| panic!("no message within {timeout:?}"))
    }

    /// Receive until a message of `kind` arrives (panics after `timeout`).
    pub async fn expect(&mut self, kind: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no {kind} message within {timeout:?}"));
            let msg = self
                .recv(left)
                .await
                .unwrap_or_else(|| panic!("no {kind} message within {timeout:?}"));
            if msg["type"] == kind {
                return msg;
            }
            assert_ne!(msg["type"], "error", "unexpected error while waiting for {kind}: {msg}");
        }
    }
}

/// Run one of the Python scripts in `tests/python` with the test Python
/// environment (`$TIDELAKE_PYTHON`, set up by `scripts/test`) and parse the
/// JSON it prints last.
pub fn run_python(script: &str, args: &[&str]) -> Value {
    run_python_with(script, args, &[])
}

/// `run_python` with extra environment variables (e.g. a reader's own
/// storage credentials, `LocalS3::reader_env`).
pub fn run_python_with(script: &str, args: &[&str], env: &[(String, String)]) -> Value {
    let python = python_path();
    assert!(
        Path::new(&python).exists(),
        "{python} not found: run the tests with ./scripts/test, which sets up PyIceberg"
    );
    let path = tests_dir().join("python").join(script);
    let out = Command::new(&python)
        .arg(&path)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}

fn python_path() -> String {
    std::env::var("TIDELAKE_PYTHON").unwrap_or_else(|_| {
        let cache = std::env::var("XDG_CACHE_HOME")
            .unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap_or_default()));
        format!("{cache}/tidelake/venv/bin/python")
    })
}

/// A local S3 server (moto) on 127.0.0.1 with one bucket; stopped when dropped.
pub struct LocalS3 {
    child: Child,
    pub endpoint: String,
}

impl LocalS3 {
    pub async fn start(bucket: &str) -> LocalS3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(python_path())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (run the tests with ./scripts/test)");
        let s3 = LocalS3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let url = format!("{}/{bucket}", s3.endpoint);
        let up = eventually(Duration::from_secs(60), || async {
            http.put(&url).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(up, "local S3 server did not come up at {}", s3.endpoint);
        s3
    }

    /// Write a tidelake config file in `dir` putting the warehouse in
    /// `bucket` on this server, followed by `extra` TOML; returns its path.
    pub fn config_file(&self, dir: &Path, bucket: &str, extra: &str) -> PathBuf {
        let config = dir.join("tidelake.toml");
        let text = format!(
            "[catalog]\nwarehouse = \"s3://{bucket}/warehouse\"\n\n[catalog.storage]\n\
             \"s3.endpoint\" = \"{}\"\n\"s3.access-key-id\" = \"test\"\n\"s3.secret-access-key\" = \"test\"\n\
             \"s3.region\" = \"us-east-1\"\n\"s3.path-style-access\" = \"true\"\n\n{extra}",
            self.endpoint
        );
        std::fs::write(&config, text).expect("write config file");
        config
    }

    /// What a reader brings to the catalog's tables on a server of these
    /// test buckets: its own credentials (the catalog vends none), for the
    /// test scripts. Harmless where the warehouse is on local disk.
    pub fn reader_env() -> Vec<(String, String)> {
        let properties = json!({"s3.access-key-id": "test", "s3.secret-access-key": "test"});
        vec![("TIDELAKE_CATALOG_PROPERTIES".to_owned(), properties.to_string())]
    }

    /// Keys of the objects in `bucket`.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let body = reqwest::get(format!("{}/{bucket}?list-type=2", self.endpoint))
            .await
            .expect("list bucket")
            .text()
            .await
            .unwrap_or_default();
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
