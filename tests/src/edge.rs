//! The edge (edge/, wrangler.toml) under `wrangler dev --local` on a free
//! port of 127.0.0.1: offline, its state kept in a folder, killed (wrangler
//! and workerd at once, no clean shutdown) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::Client;

/// Two `wrangler dev` at once contend for the runtime's own sockets: they
/// take turns within a process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct EdgeDev {
    child: Child,
    pub base: String,
    _turn: MutexGuard<'static, ()>,
}

impl EdgeDev {
    /// Started and answering, its state in `state` (the log beside it).
    pub async fn start(state: &Path) -> EdgeDev {
        EdgeDev::start_with(state, &[]).await
    }

    /// With these Worker variables (`wrangler dev --var NAME:VALUE`).
    pub async fn start_with(state: &Path, vars: &[(&str, String)]) -> EdgeDev {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let log_path = state.with_extension("log");
        let log = std::fs::File::create(&log_path).expect("the edge's log");
        let child = std::os::unix::process::CommandExt::process_group(
            Command::new(root.join("scripts/edge"))
                .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
                .args(vars.iter().flat_map(|(name, value)| ["--var".to_owned(), format!("{name}:{value}")]))
                .arg("--persist-to")
                .arg(state)
                .current_dir(&root)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("the log again"))
                .stderr(log),
            0,
        )
        .spawn()
        .expect("scripts/edge dev");
        let dev = EdgeDev { child, base: format!("http://127.0.0.1:{port}"), _turn: turn };
        let started = Instant::now();
        loop {
            if let Ok(resp) = reqwest::get(format!("{}/liveness", dev.base)).await
                && resp.status().is_success()
            {
                return dev;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "wrangler dev did not start: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }

    /// The resident memory of the runtime's processes (workerd: the one
    /// running the Worker and its objects, and wrangler's proxy), in KiB.
    pub fn runtime_rss_kib(&self) -> Option<u64> {
        let out = Command::new("pgrep").args(["-g", &self.child.id().to_string(), "workerd"]).output().ok()?;
        let pids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_owned()).collect();
        let rss = |pid: &String| -> Option<u64> {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
        };
        (!pids.is_empty()).then(|| pids.iter().filter_map(rss).sum())
    }

    /// Kill wrangler and workerd at once (no clean shutdown).
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for EdgeDev {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-s", "KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}
