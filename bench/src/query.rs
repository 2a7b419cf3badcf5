//! Query benchmark: `AS OF` latency on a table with 1M changes at several
//! history depths, beside PyIceberg + DuckDB computing the same answer from
//! the same Iceberg table (bench/pyiceberg_duckdb_as_of.py).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tidelake_tests::{Client, Server};

use crate::Report;

const ROWS: u64 = 100_000;
/// Rounds of updating every row after the inserts: 1M changes in all.
const ROUNDS: u64 = 9;
const REPEAT: usize = 3;

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The tenant's clock in microseconds since the epoch, after its last commit.
async fn clock_micros(c: &Client) -> Result<i64> {
    let rows = c
        .rows("hist", "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS t", json!([]))
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    rows[0]["t"].as_i64().context("clock")
}

/// PyIceberg + DuckDB's state of `table` at `micros` (count and sum of
/// `qty`, and the timings of `REPEAT` runs).
pub(crate) fn baseline(python: &str, url: &str, table: &str, micros: i64) -> Result<Value> {
    let script = Path::new("bench/pyiceberg_duckdb_as_of.py");
    let out = Command::new(python)
        .arg(script)
        .args([url, table, &micros.to_string(), &REPEAT.to_string()])
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !out.status.success() {
        bail!("baseline failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default())?)
}

pub async fn run(out: Option<PathBuf>, python: String) -> Result<()> {
    let work = tempfile::tempdir()?;
    let mut report = Report::default();
    let server = Server::start(&work.path().join("data"), &[]).await;
    let c = server.client();
    c.exec("hist", "CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL, note text)").await;
    let mut instants = Vec::new();
    for first in (0..ROWS).step_by(10_000) {
        c.exec(
            "hist",
            &format!("INSERT INTO items SELECT g, 0, 'row ' || g FROM generate_series({}, {}) g", first + 1, first + 10_000),
        )
        .await;
    }
    instants.push(clock_micros(&c).await?);
    for _ in 0..ROUNDS {
        c.exec("hist", "UPDATE items SET qty = qty + 1").await;
        instants.push(clock_micros(&c).await?);
    }
    let head = c.wait_shipped("hist").await;
    let url = format!("{}/catalog", server.base);

    report.line(format!("## AS OF on a table of {ROWS} rows with {head} changes (median of {REPEAT}, ms)"));
    report.line(String::new());
    report.line("| instant | changes up to it | tidelake POST /sql | PyIceberg + DuckDB | ratio |".into());
    report.line("|---|---:|---:|---:|---:|".into());
    for (round, micros) in instants.iter().enumerate() {
        if ![0, 3, 6, 9].contains(&round) {
            continue;
        }
        let query = format!(
            "SELECT count(*) AS n, sum(qty) AS s FROM hist.items FOR SYSTEM_TIME AS OF '{}'",
            timestamp_text(*micros)
        );
        let mut ours = Vec::new();
        let mut answer = Value::Null;
        for _ in 0..REPEAT {
            let started = Instant::now();
            let (status, body) = c.post("/sql", &json!({ "sql": query })).await;
            if status != reqwest::StatusCode::OK {
                bail!("{query}: {body}");
            }
            ours.push(started.elapsed().as_secs_f64() * 1000.0);
            answer = body["rows"][0].clone();
        }
        let theirs = {
            let (python, url, micros) = (python.clone(), url.clone(), *micros);
            tokio::task::spawn_blocking(move || baseline(&python, &url, "hist.items", micros)).await??
        };
        let expected = json!({"n": ROWS, "s": ROWS * round as u64});
        if answer != expected || theirs["count"] != ROWS || theirs["sum"] != ROWS * round as u64 {
            bail!("answers differ at round {round}: ours {answer}, baseline {theirs}, expected {expected}");
        }
        let base = median(theirs["ms"].as_array().unwrap().iter().filter_map(Value::as_f64).collect());
        let ours = median(ours);
        report.line(format!(
            "| after round {round} | {} | {ours:.0} | {base:.0} | {:.2}× |",
            ROWS * (round as u64 + 1),
            base / ours
        ));
    }
    report.line(String::new());
    report.line("ratio = baseline time / tidelake time (above 1: tidelake is faster).".into());
    report.save(out.as_deref())
}

/// Microseconds since the epoch as `YYYY-MM-DD HH:MM:SS.ffffff+00`.
pub(crate) fn timestamp_text(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map_or_else(|| micros.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
}
