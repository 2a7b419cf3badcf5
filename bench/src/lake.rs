//! Lake benchmark: how fast the shipper moves change logs into Iceberg (one
//! tenant; many tenants), side by side with the pipeline a user would write
//! by hand (read `GET changes`, append with PyIceberg), and how long a
//! commit takes to become visible in Iceberg at a steady write rate.
//!
//! Throughput runs load the change logs with the lake off, then start the
//! server with the lake on and time it until every change is in the lake;
//! the server's CPU time over that run gives changes per CPU-second.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tidelake_tests::{Client, Server};

use crate::{Report, ms, summarize};

const ONE_TENANT_CHANGES: usize = 200_000;
const MANY_TENANTS: usize = 50;
const PER_TENANT_CHANGES: usize = 10_000;
const ROWS_PER_STATEMENT: usize = 10_000;
const LAG_RATE: u64 = 100;
const LAG_SECONDS: u64 = 20;
const LAG_TENANTS: usize = 10;
const LAG_RATE_PER_TENANT: u64 = 10;

const TABLE: &str = "CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL, amount numeric(12,2), \
     at timestamptz NOT NULL DEFAULT now(), payload jsonb)";

fn insert_sql(first: usize, n: usize) -> String {
    format!(
        "INSERT INTO events (id, kind, amount, payload) SELECT g, 'kind ' || (g % 7), g * 1.25, \
         jsonb_build_object('n', g, 'tag', 'event') FROM generate_series({}, {}) g",
        first + 1,
        first + n
    )
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// Lake status of every tenant, from `GET /health`.
async fn shipped_lsns(c: &Client) -> Vec<(String, u64)> {
    let (_, health) = c.get("/health").await;
    health["tenants"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| (t["tenant"].as_str().unwrap_or_default().to_owned(), t["lake"]["shippedLsn"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Load `tenants` change logs of `per_tenant` changes each with the lake
/// off; then time a server with the lake on until all are shipped.
/// The server's CPU is counted beyond what an idle start costs.
async fn ship_all(dir: &Path, tenants: &[String], per_tenant: usize) -> Result<Shipped> {
    let mut loader = Server::start(dir, &["--lake-enabled=false"]).await;
    let c = loader.client();
    for t in tenants {
        c.exec(t, TABLE).await;
        for first in (0..per_tenant).step_by(ROWS_PER_STATEMENT) {
            c.exec(t, &insert_sql(first, ROWS_PER_STATEMENT.min(per_tenant - first))).await;
        }
    }
    loader.stop();

    let started = Instant::now();
    let mut server = Server::start(dir, &[]).await;
    let c = server.client();
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let shipped = shipped_lsns(&c).await;
        let done = tenants
            .iter()
            .all(|t| shipped.iter().any(|(name, lsn)| name == t && *lsn == per_tenant as u64));
        if done {
            break;
        }
        if Instant::now() > deadline {
            bail!("the lake did not catch up within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid())?;
    server.stop();
    // What starting the server costs when there is nothing to ship, and
    // what opening the tenants costs without shipping anything.
    let mut idle = Server::start(dir, &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let startup = cpu_seconds(idle.pid())?;
    let c = idle.client();
    for t in tenants {
        c.exec(t, "SELECT 1").await;
    }
    let wakes = cpu_seconds(idle.pid())? - startup;
    idle.stop();
    Ok(Shipped { seconds, cpu: cpu - startup, wakes })
}

struct Shipped {
    seconds: f64,
    /// Server CPU seconds beyond an idle start.
    cpu: f64,
    /// CPU seconds of opening the tenants alone (part of `cpu`).
    wakes: f64,
}

impl Shipped {
    fn row(&self, label: &str, changes: usize) -> String {
        format!(
            "| {label} | {changes} | {:.2} | {:.0} | {:.2} | {:.0} | {:.2} | {:.0} |",
            self.seconds,
            changes as f64 / self.seconds,
            self.cpu,
            changes as f64 / self.cpu,
            self.wakes,
            changes as f64 / (self.cpu - self.wakes)
        )
    }
}

/// The hand-written pipeline: PyIceberg reading `GET changes` and appending.
fn pyiceberg_ship(python: &str, base: &str, tenant: &str) -> Result<Value> {
    let script = Path::new("bench/pyiceberg_ship.py");
    let out = Command::new(python)
        .arg(script)
        .args([base, tenant, "20000"])
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !out.status.success() {
        bail!("pyiceberg_ship.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(stdout.lines().last().unwrap_or_default())?)
}

/// The newest `tidelake.lsn-to` of a changelog table, read through the REST catalog.
async fn visible_lsn(c: &Client, tenant: &str) -> Option<u64> {
    let (status, table) = c.get(&format!("/catalog/v1/namespaces/{tenant}/tables/events")).await;
    if status != reqwest::StatusCode::OK {
        return None;
    }
    let meta = &table["metadata"];
    let current = meta["current-snapshot-id"].as_i64()?;
    let snapshot = meta["snapshots"].as_array()?.iter().find(|s| s["snapshot-id"] == current)?;
    snapshot["summary"]["tidelake.lsn-to"].as_str()?.parse().ok()
}

/// Write one-row transactions to `tenant` at `rate` per second for
/// `seconds`, while polling the catalog every `poll`; returns each commit's
/// lag from its acknowledgement to its first sighting in the catalog.
async fn commit_to_visible(c: &Client, tenant: &str, rate: u64, seconds: u64, poll: Duration) -> Result<Vec<Duration>> {
    let (_, page) = c.get(&format!("/t/{tenant}/changes?since=0&limit=1")).await;
    let base = page["headLsn"].as_u64().unwrap_or(0);
    let total = rate * seconds;
    let poller = {
        let c = c.clone();
        let tenant = tenant.to_owned();
        tokio::spawn(async move {
            let mut seen: Vec<(Instant, u64)> = Vec::new();
            let mut last = 0;
            let deadline = Instant::now() + Duration::from_secs(seconds + 60);
            while last < base + total && Instant::now() < deadline {
                if let Some(lsn) = visible_lsn(&c, &tenant).await
                    && lsn > last
                {
                    seen.push((Instant::now(), lsn));
                    last = lsn;
                }
                tokio::time::sleep(poll).await;
            }
            seen
        })
    };
    let mut acked = Vec::with_capacity(total as usize);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..total {
        ticks.tick().await;
        let (status, body) = c
            .query(tenant, "INSERT INTO events (id, kind) VALUES ($1, 'tick')", json!([1_000_000_000 + i]))
            .await;
        if !status.is_success() {
            bail!("insert: {status} {body}");
        }
        acked.push(Instant::now());
    }
    let seen = poller.await?;
    let mut lags = Vec::with_capacity(acked.len());
    for (i, at) in acked.iter().enumerate() {
        let lsn = base + 1 + i as u64;
        let (visible, _) = seen
            .iter()
            .find(|(_, l)| *l >= lsn)
            .with_context(|| format!("LSN {lsn} never became visible"))?;
        lags.push(visible.saturating_duration_since(*at));
    }
    Ok(lags)
}

pub async fn run(out: Option<PathBuf>, python: String) -> Result<()> {
    let work = tempfile::tempdir()?;
    let mut report = Report::default();

    // --- Throughput: one tenant ------------------------------------------------
    let one = vec!["one".to_owned()];
    let dir = work.path().join("one");
    let shipped = ship_all(&dir, &one, ONE_TENANT_CHANGES).await?;
    let ours = ONE_TENANT_CHANGES as f64 / shipped.seconds;
    let ours_per_cpu = ONE_TENANT_CHANGES as f64 / shipped.cpu;
    report.line("## Shipping throughput (change log → Iceberg, from a cold start of the server)".into());
    report.line(String::new());
    report.line(
        "| run | changes | seconds | changes/s | CPU s | changes per CPU-second | of which opening tenants, CPU s | changes per CPU-second without it |"
            .into(),
    );
    report.line("|---|---:|---:|---:|---:|---:|---:|---:|".into());
    report.line(shipped.row("tidelake, 1 tenant", ONE_TENANT_CHANGES));

    // The same change log shipped by hand: GET changes + PyIceberg appends.
    let server = Server::start(&dir, &[]).await;
    let base = server.base.clone();
    let cpu_before = cpu_seconds(server.pid())?;
    let py = {
        let python = python.clone();
        tokio::task::spawn_blocking(move || pyiceberg_ship(&python, &base, "one")).await??
    };
    let server_cpu = cpu_seconds(server.pid())? - cpu_before;
    let py_secs = py["seconds"].as_f64().unwrap_or(f64::NAN);
    let py_changes = py["changes"].as_u64().unwrap_or(0);
    if py_changes != ONE_TENANT_CHANGES as u64 {
        bail!("the PyIceberg pipeline shipped {py_changes} changes, not {ONE_TENANT_CHANGES}");
    }
    let py_cpu = py["cpu"].as_f64().unwrap_or(f64::NAN) + server_cpu;
    report.line(format!(
        "| PyIceberg by hand (GET changes + append), 1 tenant (tenant already open) | {py_changes} | {py_secs:.2} | {:.0} | {py_cpu:.2} (client + server) | {:.0} | – | – |",
        py_changes as f64 / py_secs,
        py_changes as f64 / py_cpu
    ));
    drop(server);

    // --- Throughput: many tenants ----------------------------------------------
    let many: Vec<String> = (0..MANY_TENANTS).map(|i| format!("tenant-{i:02}")).collect();
    let total = MANY_TENANTS * PER_TENANT_CHANGES;
    let shipped = ship_all(&work.path().join("many"), &many, PER_TENANT_CHANGES).await?;
    report.line(shipped.row(&format!("tidelake, {MANY_TENANTS} tenants × {PER_TENANT_CHANGES}"), total));
    report.line(String::new());
    report.line(format!(
        "tidelake vs the hand-written pipeline, 1 tenant: {:.1}× the changes per second, {:.1}× per CPU-second.",
        ours / (py_changes as f64 / py_secs),
        ours_per_cpu / (py_changes as f64 / py_cpu)
    ));

    // --- Lag at a steady write rate ---------------------------------------------
    report.line(String::new());
    report.line("## Commit → visible in Iceberg (default 1 s flush interval)".into());
    report.line(String::new());
    report.line("| load | commits | p50 ms | p99 ms | max ms | catalog polled every |".into());
    report.line("|---|---:|---:|---:|---:|---|".into());
    let server = Server::start(&work.path().join("lag"), &[]).await;
    let c = server.client();
    c.exec("lag", TABLE).await;
    let lags = commit_to_visible(&c, "lag", LAG_RATE, LAG_SECONDS, Duration::from_millis(20)).await?;
    report.line(lag_row(&format!("1 tenant, {LAG_RATE} one-row commits/s for {LAG_SECONDS} s"), lags, "20 ms"));
    let tenants: Vec<String> = (0..LAG_TENANTS).map(|i| format!("lag-{i}")).collect();
    for t in &tenants {
        c.exec(t, TABLE).await;
    }
    let mut tasks = Vec::new();
    for t in tenants.clone() {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            commit_to_visible(&c, &t, LAG_RATE_PER_TENANT, LAG_SECONDS, Duration::from_millis(100)).await
        }));
    }
    let mut lags = Vec::new();
    for t in tasks {
        lags.extend(t.await??);
    }
    let label = format!("{LAG_TENANTS} tenants × {LAG_RATE_PER_TENANT} one-row commits/s for {LAG_SECONDS} s");
    report.line(lag_row(&label, lags, "100 ms"));
    report.save(out.as_deref())
}

fn lag_row(label: &str, lags: Vec<Duration>, poll: &str) -> String {
    let n = lags.len();
    let max = lags.iter().max().copied().unwrap_or_default();
    let s = summarize(lags);
    format!("| {label} | {n} | {} | {} | {} | {poll} |", ms(s.p50), ms(s.p99), ms(max))
}
