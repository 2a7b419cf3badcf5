//! Lake age benchmark: what months of commits do to a lake table, with
//! maintenance on and off, and `AS OF` on deep histories with state
//! checkpoints, without, and PyIceberg + DuckDB on the same files.
//!
//! Both parts drive the lake's own commit path (`ChangelogTable::append`,
//! one Iceberg commit per call, as the shipper makes them) and read through
//! the query service in process, so the figures are the lake's, not the
//! OLTP tier's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use catalog::{CatalogConfig, Warehouse};
use iceberg::{Catalog, TableIdent};
use model::{Change, Op, Row};
use serde_json::{Value, json};

use ::lake::maintain::{self, MaintenanceStats};
use ::lake::table::{ChangelogTable, SchemaVersion};
use ::lake::{MaintenanceConfig, Partitioning, SourceTable, checkpoint};

use crate::Report;
use crate::query::{baseline, median, timestamp_text};

/// Commits between two maintenance runs.
const MAINTAIN_EVERY: u64 = 100;
/// Snapshots kept, in commits: the default 10-minute retention at one
/// commit a second.
const RETAINED_COMMITS: u64 = 600;
/// Commits with maintenance off (each rewrites every earlier snapshot's
/// metadata: quadratic, so this stops early).
const COMMITS_OFF: u64 = 500;
const KEYS: u64 = 100_000;
const REPEAT: usize = 3;
/// Base commit time of the synthetic histories (µs): 2026-11-01 00:00 UTC.
const BASE_MICROS: i64 = 1_793_491_200_000_000;

fn version(table: &str, second: &str) -> Result<SchemaVersion> {
    Ok(serde_json::from_value(json!({
        "version": 1, "tableOid": 100, "schema": "public", "table": table,
        "columns": [{"name": "id", "type": "integer", "typeOid": 23, "attnum": 1},
                    {"name": second, "type": "bigint", "typeOid": 20, "attnum": 2}],
        "primaryKey": ["id"], "lsn": 1, "commitTs": "2026-11-01 00:00:00+00",
    }))?)
}

async fn open(warehouse: &Warehouse, tenant: &str, table: &str, second: &str) -> Result<ChangelogTable> {
    let ns = ::lake::names::namespace(tenant)?;
    if !warehouse.catalog().namespace_exists(&ns).await? {
        warehouse.create_namespace(&ns, HashMap::from([("tidelake.tenant".to_owned(), tenant.to_owned())])).await?;
    }
    let source = SourceTable::new("public", table);
    Ok(ChangelogTable::open(warehouse, &ns, tenant, &source, &version(table, second)?, Partitioning::Day).await?)
}

/// Median milliseconds of `query` (and its first row) over `REPEAT` runs.
async fn timed(queries: &query_service::QueryService, query: &str) -> Result<(f64, Value)> {
    let mut times = Vec::new();
    let mut first = Value::Null;
    for _ in 0..REPEAT {
        let started = Instant::now();
        let answer = queries.sql(query).await.map_err(|e| anyhow::anyhow!("{query}: {e}"))?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        first = first_row(&answer);
    }
    Ok((median(times), first))
}

pub async fn run(out: Option<PathBuf>, python: String, commits_on: u64, max_changes: u64) -> Result<()> {
    let mut report = Report::default();
    if commits_on > 0 {
        commits(&mut report, commits_on).await?;
    }
    depths(&mut report, &python, max_changes).await?;
    report.save(out.as_deref())
}

/// Part one: one-row commits accumulating, maintenance off and on.
async fn commits(report: &mut Report, commits_on: u64) -> Result<()> {
    report.line(format!(
        "## One table, one-row commits accumulating (maintenance every {MAINTAIN_EVERY} commits, snapshots of the last {RETAINED_COMMITS} commits kept)"
    ));
    report.line(String::new());
    report.line("| maintenance | commits | ms per commit (last stretch) | metadata.json | metadata dir | data files | manifests | snapshots | state now, ms | AS OF commit 100, ms |".into());
    report.line("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|".into());
    for (on, total) in [(false, COMMITS_OFF), (true, commits_on)] {
        let work = tempfile::tempdir()?;
        let warehouse = Warehouse::open(CatalogConfig::in_data_dir(work.path())).await?;
        let queries = query_service::QueryService::new(warehouse.clone(), query_service::Limits::default());
        let mut table = open(&warehouse, "day", "ev", "v").await?;
        let v = version("ev", "v")?;
        let ident = TableIdent::new(::lake::names::namespace("day")?, "ev".to_owned());
        let conflicts = AtomicU64::new(0);
        let stats = MaintenanceStats::default();
        let marks = [250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 86_400, 100_000];
        let mut commit_times: Vec<Instant> = Vec::new();
        let mut stretch = (Instant::now(), 0u64);
        for n in 1..=total {
            let at = BASE_MICROS + n as i64 * 1_000_000;
            let change: Change = serde_json::from_value(json!({"op": "insert", "lsn": n, "xid": n,
                "commitTs": timestamp_text(at), "table": "day", "new": {"id": n, "v": n}}))?;
            table.append(&warehouse, "day", &v, &[&change], n, n, &conflicts).await?;
            commit_times.push(Instant::now());
            if on && n % MAINTAIN_EVERY == 0 {
                let kept_since = commit_times[n.saturating_sub(RETAINED_COMMITS) as usize];
                let config = MaintenanceConfig {
                    snapshot_retention: kept_since.elapsed(),
                    orphan_age: Duration::from_secs(3600),
                    ..MaintenanceConfig::default()
                };
                maintain::maintain_table(&warehouse, &ident, &config, &stats).await?;
                // The shipper's table goes on from the maintained one.
                table = open(&warehouse, "day", "ev", "v").await?;
            }
            if marks.contains(&n) || n == total {
                let per_commit = stretch.0.elapsed().as_secs_f64() * 1000.0 / (n - stretch.1) as f64;
                let loaded = warehouse.catalog().load_table(&ident).await?;
                let listed = warehouse.list_files(loaded.metadata().location()).await?;
                let s = maintain::table_stats(&loaded, Some(&listed)).await?;
                let (now_ms, now) = timed(&queries, "SELECT count(*) AS n, sum(v) AS s FROM day.ev").await?;
                let early = format!(
                    "SELECT count(*) AS n FROM day.ev FOR SYSTEM_TIME AS OF '{}'",
                    timestamp_text(BASE_MICROS + 100 * 1_000_000)
                );
                let (early_ms, then) = timed(&queries, &early).await?;
                if now != json!({"n": n, "s": n * (n + 1) / 2}) || then != json!({"n": 100}) {
                    bail!("wrong answers after {n} commits: {now} and {then}");
                }
                report.line(format!(
                    "| {} | {n} | {per_commit:.1} | {} | {} | {} | {} | {} | {now_ms:.0} | {early_ms:.0} |",
                    if on { "on" } else { "off" },
                    human(s.metadata_bytes),
                    human(s.metadata_dir_bytes),
                    s.data_files,
                    s.manifests,
                    s.snapshots,
                ));
                stretch = (Instant::now(), n);
            }
        }
    }
    report.line(String::new());
    Ok(())
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}

/// The changes of the synthetic history `from..to`: KEYS inserts, then
/// rounds updating every key; change n sets key n % KEYS + 1 to n / KEYS.
fn history(from: u64, to: u64) -> Vec<Change> {
    (from..to)
        .map(|n| {
            let lsn = n + 1;
            let mut row = Row::new();
            row.insert("id".into(), json!(n % KEYS + 1));
            row.insert("qty".into(), json!(n / KEYS));
            Change {
                lsn,
                xid: lsn,
                commit_ts: Some(timestamp_text(BASE_MICROS + lsn as i64 * 10_000)),
                schema_version: 1,
                op: if n < KEYS { Op::Insert } else { Op::Update },
                schema: "public".into(),
                table: "deep".into(),
                new: Some(row),
                old: None,
            }
        })
        .collect()
}

/// Part two: `AS OF` at depths of a deep history.
async fn depths(report: &mut Report, python: &str, max_changes: u64) -> Result<()> {
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    let warehouse = Warehouse::open(CatalogConfig::in_data_dir(&data)).await?;
    let conflicts = AtomicU64::new(0);
    let mut plain = open(&warehouse, "deep", "plain", "qty").await?;
    let mut ckpt = open(&warehouse, "deep", "ckpt", "qty").await?;
    let ckpt_ident = TableIdent::new(::lake::names::namespace("deep")?, "ckpt".to_owned());
    let plain_version = version("plain", "qty")?;
    let ckpt_version = version("ckpt", "qty")?;
    let batch = 250_000u64;
    let started = Instant::now();
    let mut checkpoint_ms = 0.0;
    let mut written = 0;
    while written < max_changes {
        let to = (written + batch).min(max_changes);
        let changes = history(written, to);
        let refs: Vec<&Change> = changes.iter().collect();
        plain.append(&warehouse, "deep", &plain_version, &refs, written + 1, to, &conflicts).await?;
        ckpt.append(&warehouse, "deep", &ckpt_version, &refs, written + 1, to, &conflicts).await?;
        // The maintenance policy's checkpoints, as the history grows.
        let t = Instant::now();
        let table = warehouse.catalog().load_table(&ckpt_ident).await?;
        checkpoint::maybe_checkpoint(&warehouse, &table, to, 100_000).await?;
        checkpoint_ms += t.elapsed().as_secs_f64() * 1000.0;
        written = to;
    }
    let checkpoints = checkpoint::load(&warehouse, &ckpt_ident).await?.map(|t| checkpoint::checkpoints(&t).len()).unwrap_or(0);
    eprintln!("wrote {max_changes} changes twice in {:.0?}; {checkpoints} checkpoints in {checkpoint_ms:.0} ms", started.elapsed());

    // The catalog over HTTP for the outside reader: the real binary.
    let (mut catalog, url) = serve_catalog(&data)?;
    let queries = query_service::QueryService::new(warehouse.clone(), query_service::Limits::default());
    report.line(format!(
        "## AS OF on a history of {max_changes} changes over {KEYS} keys ({checkpoints} checkpoints taken as it grew; median of {REPEAT}, ms)"
    ));
    report.line(String::new());
    report.line("| changes up to the instant | with checkpoints | without | PyIceberg + DuckDB | DuckDB / with checkpoints |".into());
    report.line("|---:|---:|---:|---:|---:|".into());
    let mut depth = KEYS;
    let mut result = Ok(());
    while depth <= max_changes {
        let at = BASE_MICROS + depth as i64 * 10_000;
        let expected = json!({"n": KEYS.min(depth), "s": KEYS * (depth / KEYS - 1)});
        let query = |t: &str| {
            format!("SELECT count(*) AS n, sum(qty) AS s FROM deep.{t} FOR SYSTEM_TIME AS OF '{}'", timestamp_text(at))
        };
        let (with_ms, with) = timed(&queries, &query("ckpt")).await?;
        let (without_ms, without) = timed(&queries, &query("plain")).await?;
        let theirs = {
            let (python, url) = (python.to_owned(), url.clone());
            tokio::task::spawn_blocking(move || baseline(&python, &url, "deep.plain", at)).await??
        };
        if with != expected || without != expected || theirs["count"] != expected["n"] || theirs["sum"] != expected["s"] {
            result = Err(anyhow::anyhow!("answers differ at {depth}: {with}, {without}, {theirs}, expected {expected}"));
            break;
        }
        let base = median(theirs["ms"].as_array().unwrap().iter().filter_map(Value::as_f64).collect());
        report.line(format!("| {depth} | {with_ms:.0} | {without_ms:.0} | {base:.0} | {:.2}× |", base / with_ms));
        depth *= 10;
    }
    let _ = catalog.kill();
    let _ = catalog.wait();
    result?;
    report.line(String::new());
    Ok(())
}

/// `tidelake catalog` on a free port over `data`: the process and its URL.
fn serve_catalog(data: &Path) -> Result<(std::process::Child, String)> {
    use std::io::BufRead;
    let mut child = Command::new(tidelake_tests::binary())
        .args(["catalog", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("TIDELAKE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start tidelake catalog")?;
    let stdout = child.stdout.take().context("catalog stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let url = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    if !url.starts_with("http://") {
        let _ = child.kill();
        bail!("tidelake catalog said {line:?}");
    }
    Ok((child, url))
}

/// The first row of an answer of integer columns, as JSON.
fn first_row(answer: &query_service::Answer) -> Value {
    use arrow_array::{Array, Int64Array};
    let Some(batch) = answer.batches.iter().find(|b| b.num_rows() > 0) else { return Value::Null };
    let mut row = serde_json::Map::new();
    for (i, field) in batch.schema().fields().iter().enumerate() {
        let value = batch
            .column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .filter(|a| !a.is_null(0))
            .map_or(Value::Null, |a| json!(a.value(0)));
        row.insert(field.name().clone(), value);
    }
    Value::Object(row)
}
