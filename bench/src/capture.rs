//! Capture benchmark: write throughput on one tenant with change capture on
//! and off in the same run, and WebSocket fan-out latency from commit to 100
//! live subscribers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;
use tidelake_tests::{Client, Server, Ws};
use tokio::sync::Mutex;

use crate::{Report, ms, summarize};

const CLIENTS: usize = 4;
const ROUNDS: usize = 3;
const SEQUENTIAL: usize = 500;
const PER_CLIENT: usize = 750;
const BULK_ROWS: usize = 50_000;
const SUBSCRIBERS: usize = 100;
const FANOUT_COMMITS: usize = 200;

/// Requests per second of `sql` (with `$1` = a fresh id from `first`) from
/// `CLIENTS` concurrent clients.
async fn throughput(c: &Client, tenant: &str, sql: &'static str, first: usize) -> Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let c = c.clone();
        let tenant = tenant.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_CLIENT {
                let id = (first + client * PER_CLIENT + i + 1) as i64;
                let (status, body) = c.query(&tenant, sql, json!([id])).await;
                if !status.is_success() {
                    return Err(anyhow::anyhow!("{sql}: {status} {body}"));
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((CLIENTS * PER_CLIENT) as f64 / started.elapsed().as_secs_f64())
}

/// Median latency of `n` sequential requests of `sql` (one client).
async fn latency(c: &Client, tenant: &str, sql: &'static str, first: usize, n: usize) -> Result<Duration> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let (status, body) = c.query(tenant, sql, json!([(first + i + 1) as i64])).await;
        if !status.is_success() {
            bail!("{sql}: {status} {body}");
        }
        samples.push(t.elapsed());
    }
    Ok(summarize(samples).p50)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Rows per second of one statement touching `BULK_ROWS` rows.
async fn bulk(c: &Client, tenant: &str, sql: &str) -> Result<f64> {
    let started = Instant::now();
    let (status, body) = c.query(tenant, sql, json!([])).await;
    if !status.is_success() {
        bail!("{sql}: {status} {body}");
    }
    Ok(BULK_ROWS as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(out: Option<PathBuf>) -> Result<()> {
    let work = tempfile::tempdir()?;
    let mut report = Report::default();
    let mut line = |s: String| report.line(s);

    // --- Throughput, capture on vs off ------------------------------------------
    let on = Server::start(&work.path().join("on"), &["--capture-enabled=true"]).await;
    let off = Server::start(&work.path().join("off"), &["--capture-enabled=false"]).await;
    let workloads: [(&str, &str); 2] = [
        ("one-row insert per request", "INSERT INTO t VALUES ($1, 'payload of a typical row', 0)"),
        ("one-row update per request", "UPDATE t SET n = n + 1 WHERE id = $1"),
    ];
    let bulks: [(&str, String); 2] = [
        (
            "insert of 50,000 rows in one statement",
            format!("INSERT INTO b SELECT g, 'payload of a typical row', 0 FROM generate_series(1, {BULK_ROWS}) g"),
        ),
        ("update of 50,000 rows in one statement", "UPDATE b SET n = n + 1".to_owned()),
    ];
    let servers = [on.client(), off.client()];
    for c in &servers {
        for table in ["t", "b"] {
            c.exec("cap", &format!("CREATE TABLE {table} (id int PRIMARY KEY, v text, n int)")).await;
        }
    }
    // Rounds alternate between the two servers so drift in the machine's
    // load hits both alike; each figure is the median of the rounds.
    let mut results = [Vec::new(), Vec::new()];
    let mut sequential = [Vec::new(), Vec::new()];
    for (w, (_, sql)) in workloads.iter().enumerate() {
        let mut rates = [Vec::new(), Vec::new()];
        for round in 0..ROUNDS {
            for (k, c) in servers.iter().enumerate() {
                let first = if w == 0 { round * CLIENTS * PER_CLIENT } else { 0 };
                rates[k].push(throughput(c, "cap", sql, first).await?);
            }
        }
        for k in 0..2 {
            results[k].push(median(rates[k].clone()));
        }
    }
    let inserted = ROUNDS * CLIENTS * PER_CLIENT;
    for (w, (_, sql)) in workloads.iter().enumerate() {
        let mut p50s = [Vec::new(), Vec::new()];
        for round in 0..ROUNDS {
            for (k, c) in servers.iter().enumerate() {
                let first = if w == 0 { inserted + round * SEQUENTIAL } else { 0 };
                p50s[k].push(latency(c, "cap", sql, first, SEQUENTIAL).await?.as_secs_f64());
            }
        }
        for k in 0..2 {
            sequential[k].push(median(p50s[k].clone()));
        }
    }
    for (k, c) in servers.iter().enumerate() {
        for (_, sql) in &bulks {
            results[k].push(bulk(c, "cap", sql).await?);
        }
    }
    let (_, page) = on.client().get("/t/cap/changes?since=0&limit=1").await;
    let captured = page["headLsn"].as_u64().unwrap_or(0);
    let expected = (2 * ROUNDS * CLIENTS * PER_CLIENT + 2 * ROUNDS * SEQUENTIAL + 2 * BULK_ROWS) as u64;
    if captured != expected {
        bail!("capture logged {captured} changes, expected {expected}");
    }
    drop(on);
    drop(off);
    line(format!(
        "## Write throughput on one tenant, capture on vs off ({CLIENTS} concurrent HTTP clients, median of {ROUNDS} alternating rounds; bulk: one statement)\n"
    ));
    line("| workload | capture off | capture on | on/off | capture cost |".into());
    line("|---|---:|---:|---:|---:|".into());
    let names = workloads.iter().map(|w| w.0).chain(bulks.iter().map(|b| b.0));
    for (i, name) in names.enumerate() {
        let (on, off) = (results[0][i], results[1][i]);
        let unit = if i < 2 { "req/s" } else { "rows/s" };
        line(format!(
            "| {name} | {off:.0} {unit} | {on:.0} {unit} | {:.2} | {:.0}% |",
            on / off,
            (1.0 - on / off) * 100.0
        ));
    }
    line(format!(
        "\n## Latency of one write per request, one client ({SEQUENTIAL} requests × {ROUNDS} rounds, median p50, ms)\n"
    ));
    line("| workload | capture off | capture on | added by capture |".into());
    line("|---|---:|---:|---:|".into());
    for (i, (name, _)) in workloads.iter().enumerate() {
        let (on, off) = (sequential[0][i] * 1000.0, sequential[1][i] * 1000.0);
        line(format!("| {name} | {off:.3} | {on:.3} | {:.3} ({:.0}%) |", on - off, (on / off - 1.0) * 100.0));
    }
    line(format!("\n({captured} changes captured and checked.)"));

    // --- WebSocket fan-out ----------------------------------------------------
    let server = Server::start(&work.path().join("fanout"), &[]).await;
    let c = server.client();
    c.exec("fan", "CREATE TABLE t (id int PRIMARY KEY)").await;
    // Per subscriber: (lsn, when it arrived) for every change it received.
    type Arrivals = Vec<(u64, Instant)>;
    let received: Arc<Mutex<Vec<Arrivals>>> = Arc::default();
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut ws = Ws::connect(&server.base, "fan").await;
        ws.send(json!({"type": "subscribe", "id": "s"})).await;
        ws.expect("subscribed", Duration::from_secs(30)).await;
        let received = received.clone();
        subscribers.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(FANOUT_COMMITS);
            while mine.len() < FANOUT_COMMITS {
                let Some(msg) = ws.recv(Duration::from_secs(30)).await else { break };
                if msg["type"] == "change" {
                    mine.push((msg["change"]["lsn"].as_u64().unwrap_or(0), Instant::now()));
                }
            }
            received.lock().await.push(mine);
        }));
    }
    let mut sent = Vec::with_capacity(FANOUT_COMMITS);
    for i in 0..FANOUT_COMMITS {
        let t = Instant::now();
        c.query("fan", "INSERT INTO t VALUES ($1)", json!([i])).await;
        sent.push(t);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for s in subscribers {
        s.await?;
    }
    let received = received.lock().await;
    let mut each = Vec::new();
    let mut last_of_all = vec![Duration::ZERO; FANOUT_COMMITS];
    for mine in received.iter() {
        if mine.len() != FANOUT_COMMITS {
            bail!("a subscriber got {} of {FANOUT_COMMITS} changes", mine.len());
        }
        for (lsn, at) in mine {
            let k = (*lsn - 1) as usize;
            let latency = at.duration_since(sent[k]);
            each.push(latency);
            last_of_all[k] = last_of_all[k].max(latency);
        }
    }
    let each = summarize(each);
    let all = summarize(last_of_all);
    line(format!(
        "\n## WebSocket fan-out: {FANOUT_COMMITS} single-row commits, {SUBSCRIBERS} live subscribers (ms, from sending the write)\n"
    ));
    line("| measure | p50 | p99 | mean |".into());
    line("|---|---:|---:|---:|".into());
    line(format!("| commit → one subscriber | {} | {} | {} |", ms(each.p50), ms(each.p99), ms(each.mean)));
    line(format!("| commit → all {SUBSCRIBERS} subscribers | {} | {} | {} |", ms(all.p50), ms(all.p99), ms(all.mean)));

    report.save(out.as_deref())
}
