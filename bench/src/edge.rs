//! The edge beside the server, one machine, one client: warm query latency
//! (the same statements over HTTP to a tenant of `tidelake serve` and to an
//! edge tenant under `wrangler dev --local`, interleaved request by
//! request), time to the first query of a new tenant and of a restarted
//! one (the edge's durability path included: its pages read back from the
//! object's SQLite and PostgreSQL's recovery), memory per tenant, and the
//! first query of an idle tenant whose pages went to R2 — woken from the
//! location's cache (warm) and from R2 (cold) — beside a cold tenant of the
//! server (its archive on the local file system).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tidelake_tests::edge::EdgeDev;
use tidelake_tests::{Client, Server};

use crate::{Report, ms, rss_kib, summarize};

const TENANT: &str = "bench";
const NEW_TENANTS: usize = 5;
const RESTARTS: usize = 3;
const WAKES: usize = 3;

/// The statements timed: the cheapest one, a primary-key lookup, and a
/// one-row update (a commit: captured, and at the edge its pages stored and
/// its position noted for the lake).
const OPS: [(&str, &str); 3] = [
    ("SELECT 1", "SELECT 1"),
    ("primary-key lookup", "SELECT id, name FROM accounts WHERE id = $1"),
    ("one-row update", "UPDATE accounts SET name = name || '' WHERE id = $1"),
];

async fn query(c: &Client, tenant: &str, sql: &str, params: Value) -> Result<()> {
    let (status, body) = c.query(tenant, sql, params).await;
    ensure!(status.is_success(), "{sql}: {status} {body}");
    Ok(())
}

async fn timed(c: &Client, tenant: &str, sql: &str, params: Value) -> Result<Duration> {
    let started = Instant::now();
    query(c, tenant, sql, params).await?;
    Ok(started.elapsed())
}

/// The benchmark's tenant: a table of 10 000 accounts.
async fn accounts(c: &Client) -> Result<()> {
    accounts_in(c, TENANT).await
}

async fn accounts_in(c: &Client, tenant: &str) -> Result<()> {
    for sql in [
        "CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL)",
        "INSERT INTO accounts SELECT g, 'account ' || g FROM generate_series(1, 10000) g",
    ] {
        query(c, tenant, sql, json!([])).await?;
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ratio(edge: Duration, server: Duration) -> String {
    format!("{:.2}×", edge.as_secs_f64() / server.as_secs_f64())
}

pub async fn run(out: Option<PathBuf>, iterations: usize) -> Result<()> {
    let work = tempfile::tempdir()?;
    let mut report = Report::default();
    let mut server = Server::start(&work.path().join("server"), &[]).await;
    let state = work.path().join("edge");
    let mut edge = EdgeDev::start(&state).await;
    let (server_c, edge_c) = (server.client(), edge.client());
    for c in [&server_c, &edge_c] {
        accounts(c).await?;
    }

    report.line(format!("## Warm queries, {iterations} sequential requests each, interleaved request by request (ms)\n"));
    report.line("| statement | server p50 | p99 | edge p50 | p99 | edge / server p50 |".into());
    report.line("|---|---:|---:|---:|---:|---:|".into());
    for (name, sql) in OPS {
        let (mut on_server, mut on_edge) = (Vec::with_capacity(iterations), Vec::with_capacity(iterations));
        for i in 0..iterations + iterations / 10 {
            let params = if sql.contains("$1") { json!([1 + i % 10_000]) } else { json!([]) };
            let s = timed(&server_c, TENANT, sql, params.clone()).await?;
            let e = timed(&edge_c, TENANT, sql, params).await?;
            // The first tenth warms both up and is not counted.
            if i >= iterations / 10 {
                on_server.push(s);
                on_edge.push(e);
            }
        }
        let (s, e) = (summarize(on_server), summarize(on_edge));
        report.line(format!("| {name} | {} | {} | {} | {} | {} |", ms(s.p50), ms(s.p99), ms(e.p50), ms(e.p99), ratio(e.p50, s.p50)));
    }

    // New tenants: the first query of a tenant never seen (the edge: a new
    // object, the template laid, PostgreSQL started, the session prepared).
    let edge_rss_before = edge.runtime_rss_kib().context("workerd's processes")?;
    let server_rss_before = rss_kib(server.pid())?;
    let (mut new_server, mut new_edge) = (Vec::new(), Vec::new());
    for i in 0..NEW_TENANTS {
        let tenant = format!("fresh{i}");
        new_server.push(timed(&server_c, &tenant, "SELECT 1", json!([])).await?);
        new_edge.push(timed(&edge_c, &tenant, "SELECT 1", json!([])).await?);
    }
    let edge_rss_after = edge.runtime_rss_kib().context("workerd's processes")?;
    // Of an edge tenant, its engine's WebAssembly memory (what a Worker
    // isolate accounts for it, resident or not).
    let (_, health) = edge_c.get("/t/fresh0/health").await;
    let wasm_memory = health["tenant"]["memoryBytes"].as_u64().unwrap_or(0);
    let server_rss_after = rss_kib(server.pid())?;

    // Restarted: the runtime killed (-9) and started again, then the first
    // query of the tenant with 10 000 rows; the server the same way.
    let (mut restarted_server, mut restarted_edge) = (Vec::new(), Vec::new());
    for _ in 0..RESTARTS {
        server.kill9();
        server.restart().await;
        restarted_server.push(timed(&server.client(), TENANT, OPS[1].1, json!([42])).await?);
        edge.kill();
        edge = EdgeDev::start(&state).await;
        restarted_edge.push(timed(&edge.client(), TENANT, OPS[1].1, json!([42])).await?);
    }

    report.line(format!("\n## First query (median of {NEW_TENANTS} new tenants, {RESTARTS} restarts)\n"));
    report.line("| | server | edge | edge / server |".into());
    report.line("|---|---:|---:|---:|".into());
    for (name, server_times, edge_times) in
        [("new tenant", new_server, new_edge), ("restarted tenant (10 000 rows)", restarted_server, restarted_edge)]
    {
        let (s, e) = (median(server_times), median(edge_times));
        report.line(format!("| {name} | {} | {} | {} |", ms(s), ms(e), ratio(e, s)));
    }
    let per_tenant = |before: u64, after: u64| format!("{:.0} MiB", after.saturating_sub(before) as f64 / 1024.0 / NEW_TENANTS as f64);
    report.line(format!("\n## Memory per tenant (resident, {NEW_TENANTS} new tenants loaded)\n"));
    report.line("| server | edge (workerd) | of which the edge engine's WebAssembly memory |".into());
    report.line("|---:|---:|---:|".into());
    report.line(format!(
        "| {} | {} | {:.0} MiB |",
        per_tenant(server_rss_before, server_rss_after),
        per_tenant(edge_rss_before, edge_rss_after),
        wasm_memory as f64 / 1048576.0
    ));
    drop(edge);
    server.stop();
    wakes(&mut report, work.path()).await?;
    restores(&mut report, work.path()).await?;
    report.save(out.as_deref())
}

/// A branch at the head of a tenant with 10 000 rows (and 1 000 updates):
/// the edge tenant's from the lake alone, beside the server tenant's from
/// its base backup and change log, by the same server.
async fn restores(report: &mut Report, work: &std::path::Path) -> Result<()> {
    let edge = EdgeDev::start(&work.join("edge-restore")).await;
    let args = ["--edge-url", edge.base.as_str(), "--edge-poll-interval", "200ms", "--lake-flush-interval", "100ms"];
    let server = Server::start(&work.join("server-restore"), &args).await;
    let (edge_c, server_c) = (edge.client(), server.client());
    // The same workload on both (10 000 inserts, then 1 000 updates: LSN
    // 11 000 is the head); the server's tenant under another name, as one
    // name is one tenant's in the lake.
    let local = "local";
    for (c, tenant) in [(&server_c, local), (&edge_c, TENANT)] {
        accounts_in(c, tenant).await?;
        query(c, tenant, "UPDATE accounts SET name = name || ' (renamed)' WHERE id % 10 = 0", json!([])).await?;
    }
    let (mut from_lake, mut from_backup) = (Vec::new(), Vec::new());
    for i in 0..RESTARTS {
        for (times, tenant) in [(&mut from_lake, TENANT), (&mut from_backup, local)] {
            let started = Instant::now();
            let body = json!({ "to": "lsn:11000", "into": format!("{tenant}-branch-{i}") });
            let (status, body) = server_c.post(&format!("/t/{tenant}/restore"), &body).await;
            ensure!(status.is_success(), "restore of {tenant}: {status} {body}");
            times.push(started.elapsed());
            let (status, rows) = server_c.query(&format!("{tenant}-branch-{i}"), "SELECT count(*) AS n FROM accounts", json!([])).await;
            ensure!(status.is_success() && rows["rows"][0]["n"] == 10_000, "{tenant}'s branch: {rows}");
        }
    }
    let (lake, backup) = (median(from_lake), median(from_backup));
    report.line(format!("\n## A branch of a tenant with 10 000 rows at its head (median of {RESTARTS})\n"));
    report.line("| server tenant (base backup + change log) | edge tenant (the lake alone) | edge / server |".into());
    report.line("|---:|---:|---:|".into());
    report.line(format!("| {} | {} | {} |", ms(backup), ms(lake), ratio(lake, backup)));
    report.line(
        "\nThe edge tenant's includes asking the edge for its head and the lake catching up to it (it had, before the first)."
            .into(),
    );
    Ok(())
}

/// A tenant's tier as its `health` says.
async fn tier(c: &Client, tenant: &str) -> String {
    let (_, health) = c.get(&format!("/t/{tenant}/health")).await;
    health["tenant"]["tier"].as_str().unwrap_or_default().to_owned()
}

/// The first query once the tenant is `wanted`, timed.
async fn first_query(c: &Client, tenant: &str, wanted: &str) -> Result<Duration> {
    let reached = tidelake_tests::eventually(Duration::from_secs(120), || async { tier(c, tenant).await == wanted }).await;
    ensure!(reached, "{tenant} never became {wanted}");
    timed(c, tenant, OPS[1].1, json!([42])).await
}

/// Idle tenants with 10 000 rows woken by a primary-key lookup: the edge's
/// from the location's cache and from R2, the server's from its archive.
async fn wakes(report: &mut Report, work: &std::path::Path) -> Result<()> {
    let vars = [("COLD_AFTER", "1s".to_owned()), ("WARM_FOR", "3s".to_owned())];
    let edge = EdgeDev::start_with(&work.join("edge-tiers"), &vars).await;
    let server = Server::start(
        &work.join("server-tiers"),
        &["--tenants-hibernate-after", "200ms", "--archive-cold-after", "300ms", "--archive-backup-interval", "off", "--lake-enabled=false"],
    )
    .await;
    let (edge_c, server_c) = (edge.client(), server.client());
    for c in [&server_c, &edge_c] {
        accounts(c).await?;
    }
    let (mut from_cache, mut from_r2, mut server_cold) = (Vec::new(), Vec::new(), Vec::new());
    // Of each wake, the archive read, checked and laid back (the rest is
    // the engine's start, as after a restart).
    let (mut laid_cache, mut laid_r2) = (Vec::new(), Vec::new());
    let laid = |health: &Value| Duration::from_millis(health["tenant"]["wakeMs"].as_u64().unwrap_or(0));
    let mut archive_bytes = 0;
    for _ in 0..WAKES {
        server_cold.push(first_query(&server_c, TENANT, "cold").await?);
        // Used, then idle: warm (its archive in R2, a copy in the cache).
        query(&edge_c, TENANT, "SELECT 1", json!([])).await?;
        from_cache.push(first_query(&edge_c, TENANT, "warm").await?);
        let (_, health) = edge_c.get(&format!("/t/{TENANT}/health")).await;
        ensure!(health["tenant"]["wokeFrom"] == "cache", "woke from the cache: {health}");
        laid_cache.push(laid(&health));
        // Idle again, until the cache's copy expires: cold.
        from_r2.push(first_query(&edge_c, TENANT, "cold").await?);
        let (_, health) = edge_c.get(&format!("/t/{TENANT}/health")).await;
        ensure!(health["tenant"]["wokeFrom"] == "r2", "woke from R2: {health}");
        laid_r2.push(laid(&health));
        archive_bytes = health["tenant"]["wokeArchiveBytes"].as_u64().unwrap_or(archive_bytes);
    }
    let (cache, r2, server_cold) = (median(from_cache), median(from_r2), median(server_cold));
    report.line(format!(
        "\n## First query of an idle tenant with 10 000 rows (median of {WAKES}; the edge's archive {:.0} KiB)\n",
        archive_bytes as f64 / 1024.0
    ));
    report.line("| server, cold (archive on local disk) | edge, warm (location's cache) | edge, cold (R2) | warm / server | cold / server |".into());
    report.line("|---:|---:|---:|---:|---:|".into());
    report.line(format!("| {} | {} | {} | {} | {} |", ms(server_cold), ms(cache), ms(r2), ratio(cache, server_cold), ratio(r2, server_cold)));
    report.line(format!(
        "\nOf the edge's wakes, reading the archive, checking it and laying its pages back took {} (cache) and {} (R2); the rest is the engine's start.",
        ms(median(laid_cache)),
        ms(median(laid_r2))
    ));
    Ok(())
}
