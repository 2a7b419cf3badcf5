//! The edge beside the server, one machine, one client: warm query latency
//! (the same statements over HTTP to a tenant of `tidelake serve` and to an
//! edge tenant under `wrangler dev --local`, interleaved request by
//! request), time to the first query of a new tenant and of a restarted
//! one (the edge's durability path included: its pages read back from the
//! object's SQLite and PostgreSQL's recovery), and memory per tenant.

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
        for sql in [
            "CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL)",
            "INSERT INTO accounts SELECT g, 'account ' || g FROM generate_series(1, 10000) g",
        ] {
            query(c, TENANT, sql, json!([])).await?;
        }
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
    report.line("| server | edge (workerd) |".into());
    report.line("|---:|---:|".into());
    report.line(format!(
        "| {} | {} |",
        per_tenant(server_rss_before, server_rss_after),
        per_tenant(edge_rss_before, edge_rss_after)
    ));
    report.save(out.as_deref())
}
