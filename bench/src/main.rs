//! OLTP benchmark: tidelake's HTTP API against native PostgreSQL through a
//! standard Rust client, in one run on one machine. See bench/README.md and
//! docs/benchmarks.md for how to run it and the recorded figures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tidelake_tests::{Client, Server};
use tokio_postgres::NoTls;

mod auth;
mod capture;
mod catalogs;
mod deploy;
mod edge;
mod lake;
mod lake_age;
mod migration;
mod native;
mod query;
mod restore;
mod tiers;

struct Args {
    pg_url: Option<String>,
    pg_nofsync_url: Option<String>,
    iterations: usize,
    tenants: usize,
    out: Option<PathBuf>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args> {
    let mut args = Args {
        pg_url: None,
        pg_nofsync_url: None,
        iterations: 2000,
        tenants: 100,
        out: None,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--pg-url" => args.pg_url = Some(value()?),
            "--pg-nofsync-url" => args.pg_nofsync_url = Some(value()?),
            "--iterations" => args.iterations = value()?.parse()?,
            "--tenants" => args.tenants = value()?.parse()?,
            "--out" => args.out = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

/// The `--flag value` pairs after a subcommand; any flag not in `known`, or
/// one without its value, is an error showing `usage`.
fn flags(mut argv: impl Iterator<Item = String>, known: &[&str], usage: &str) -> Result<std::collections::HashMap<String, String>> {
    let mut found = std::collections::HashMap::new();
    while let Some(flag) = argv.next() {
        match argv.next() {
            Some(value) if known.contains(&flag.as_str()) => {
                found.insert(flag, value);
            }
            _ => bail!("usage: {usage}"),
        }
    }
    Ok(found)
}

/// A report printed as it is written and saved to a file at the end.
#[derive(Default)]
pub(crate) struct Report(String);

impl Report {
    pub(crate) fn line(&mut self, s: String) {
        println!("{s}");
        self.0.push_str(&s);
        self.0.push('\n');
    }

    pub(crate) fn save(&self, out: Option<&std::path::Path>) -> Result<()> {
        if let Some(out) = out {
            std::fs::write(out, &self.0).with_context(|| format!("write {}", out.display()))?;
        }
        Ok(())
    }
}

/// Latency percentiles of a set of samples.
#[derive(Clone, Copy)]
pub(crate) struct Summary {
    pub p50: Duration,
    pub p99: Duration,
    pub mean: Duration,
}

pub(crate) fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let total: Duration = samples.iter().sum();
    Summary {
        p50: at(0.50),
        p99: at(0.99),
        mean: total / samples.len() as u32,
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

const OPS: [(&str, &str); 3] = [
    ("SELECT 1", "SELECT 1"),
    ("primary-key lookup", "SELECT id, name, balance FROM accounts WHERE id = $1"),
    ("one-row insert", "INSERT INTO events (account, kind) VALUES ($1, $2)"),
];
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, name text NOT NULL, balance bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events (id bigserial PRIMARY KEY, account int NOT NULL, kind text NOT NULL)",
    "INSERT INTO accounts SELECT g, 'account ' || g, g * 10 FROM generate_series(1, 10000) g ON CONFLICT DO NOTHING",
];

async fn tidelake_op(c: &Client, tenant: &str, op: usize, i: usize) -> Result<()> {
    let (sql, params) = match op {
        0 => (OPS[0].1, json!([])),
        1 => (OPS[1].1, json!([(i % 10000) + 1])),
        _ => (OPS[2].1, json!([(i % 10000) + 1, "bench"])),
    };
    let (status, body) = c.query(tenant, sql, params).await;
    if !status.is_success() {
        bail!("{sql}: {status} {body}");
    }
    Ok(())
}

/// A table row per native server: our figure for statement `op` beside
/// its, timed now (or ours alone when no native server is given).
async fn beside_native(
    line: &mut impl FnMut(String),
    name: &str,
    ours: Summary,
    natives: &[(&str, tokio_postgres::Client)],
    op: usize,
    iterations: usize,
) -> Result<()> {
    if natives.is_empty() {
        line(format!("| {name} | {} | {} | – | – | – | – | – |", ms(ours.p50), ms(ours.p99)));
    }
    for (native_name, pg) in natives {
        let theirs = time_native(pg, op, iterations).await?;
        line(format!(
            "| {name} | {} | {} | {} | {} | {:.2}× | {:.2}× | {native_name} |",
            ms(ours.p50),
            ms(ours.p99),
            ms(theirs.p50),
            ms(theirs.p99),
            ours.p50.as_secs_f64() / theirs.p50.as_secs_f64(),
            ours.p99.as_secs_f64() / theirs.p99.as_secs_f64(),
        ));
    }
    Ok(())
}

/// One of `OPS` by its SQL text; past them, the primary-key lookup through
/// a statement the client prepared once.
async fn native_op(pg: &tokio_postgres::Client, op: usize, i: usize, prepared: Option<&tokio_postgres::Statement>) -> Result<()> {
    let id = ((i % 10000) + 1) as i32;
    match (op, prepared) {
        (0, _) => pg.query(OPS[0].1, &[]).await?,
        (1, _) => pg.query(OPS[1].1, &[&id]).await?,
        (2, _) => pg.query(OPS[2].1, &[&id, &"bench"]).await?,
        (_, Some(statement)) => pg.query(statement, &[&id]).await?,
        (_, None) => bail!("no prepared statement"),
    };
    Ok(())
}

async fn time_tidelake(c: &Client, tenant: &str, op: usize, n: usize) -> Result<Summary> {
    for i in 0..n / 10 {
        tidelake_op(c, tenant, op, i).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        tidelake_op(c, tenant, op, i).await?;
        samples.push(t.elapsed());
    }
    Ok(summarize(samples))
}

async fn time_native(pg: &tokio_postgres::Client, op: usize, n: usize) -> Result<Summary> {
    let prepared = match op {
        op if op >= OPS.len() => Some(pg.prepare_typed(OPS[1].1, &[tokio_postgres::types::Type::INT4]).await?),
        _ => None,
    };
    for i in 0..n / 10 {
        native_op(pg, op, i, prepared.as_ref()).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        native_op(pg, op, i, prepared.as_ref()).await?;
        samples.push(t.elapsed());
    }
    Ok(summarize(samples))
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connect {url}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.batch_execute("DROP TABLE IF EXISTS accounts, events").await?;
    for sql in SCHEMA {
        client.batch_execute(sql).await?;
    }
    Ok(client)
}

fn flush_page_cache() {
    let _ = std::process::Command::new("sync").status();
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS not found")
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1).peekable();
    match argv.peek().map(String::as_str) {
        Some("auth") => {
            argv.next();
            let mut f = flags(argv, &["--out", "--iterations"], "oltp-bench auth [--iterations N] [--out FILE]")?;
            let iterations = f.remove("--iterations").map(|v| v.parse()).transpose()?.unwrap_or(5000);
            auth::run(f.remove("--out").map(PathBuf::from), iterations).await
        }
        Some("edge") => {
            argv.next();
            let mut f = flags(argv, &["--out", "--iterations"], "oltp-bench edge [--iterations N] [--out FILE]")?;
            let iterations = f.remove("--iterations").map(|v| v.parse()).transpose()?.unwrap_or(500);
            edge::run(f.remove("--out").map(PathBuf::from), iterations).await
        }
        Some("deploy") => {
            argv.next();
            let mut f = flags(argv, &["--out", "--tenants"], "oltp-bench deploy [--tenants N] [--out FILE]")?;
            let tenants = f.remove("--tenants").map(|v| v.parse()).transpose()?.unwrap_or(1000);
            deploy::run(f.remove("--out").map(PathBuf::from), tenants).await
        }
        Some("capture") => {
            argv.next();
            let mut f = flags(argv, &["--out"], "oltp-bench capture [--out FILE]")?;
            capture::run(f.remove("--out").map(PathBuf::from)).await
        }
        Some("lake") => {
            argv.next();
            let mut f = flags(argv, &["--out", "--python"], "oltp-bench lake --python PYTHON [--out FILE]")?;
            let python = f.remove("--python").context("--python: a Python with PyIceberg (bench/run-lake.sh sets it)")?;
            lake::run(f.remove("--out").map(PathBuf::from), python).await
        }
        Some("lake-age") => {
            argv.next();
            let usage = "oltp-bench lake-age --python PYTHON [--commits N] [--changes N] [--out FILE]";
            let mut f = flags(argv, &["--out", "--python", "--commits", "--changes"], usage)?;
            let python = f.remove("--python").context("--python: a Python with PyIceberg and DuckDB (bench/run-lake-age.sh sets it)")?;
            let number = |v: Option<String>, default: u64| -> Result<u64> { Ok(v.map(|v| v.parse()).transpose()?.unwrap_or(default)) };
            let commits = number(f.remove("--commits"), 20_000)?;
            let changes = number(f.remove("--changes"), 10_000_000)?;
            lake_age::run(f.remove("--out").map(PathBuf::from), python, commits, changes).await
        }
        Some("query") => {
            argv.next();
            let mut f = flags(argv, &["--out", "--python"], "oltp-bench query --python PYTHON [--out FILE]")?;
            let python = f.remove("--python").context("--python: a Python with PyIceberg and DuckDB (bench/run-query.sh sets it)")?;
            query::run(f.remove("--out").map(PathBuf::from), python).await
        }
        Some(which @ ("tiers" | "restore" | "migration" | "catalogs")) => {
            let which = which.to_owned();
            argv.next();
            let usage = format!("oltp-bench {which} --pg-bin DIR [--out FILE]");
            let mut f = flags(argv, &["--out", "--pg-bin"], &usage)?;
            let pg_bin = f
                .remove("--pg-bin")
                .map(PathBuf::from)
                .with_context(|| format!("--pg-bin: PostgreSQL's bin directory (bench/run-{which}.sh sets it)"))?;
            let out = f.remove("--out").map(PathBuf::from);
            match which.as_str() {
                "tiers" => tiers::run(out, pg_bin).await,
                "migration" => migration::run(out, pg_bin).await,
                "catalogs" => catalogs::run(out, pg_bin).await,
                _ => restore::run(out, pg_bin).await,
            }
        }
        Some("oltp") => {
            argv.next();
            oltp(parse_args(argv)?).await
        }
        _ => oltp(parse_args(argv)?).await,
    }
}

async fn oltp(args: Args) -> Result<()> {
    let work = tempfile::tempdir()?;
    let mut report = Report::default();
    let mut line = |s: String| report.line(s);

    // --- Latency of single statements over loopback --------------------------
    let server = Server::start(&work.path().join("latency"), &[]).await;
    let c = server.client();
    for sql in SCHEMA {
        c.exec("bench", sql).await;
    }
    let natives = [
        ("native PostgreSQL (fsync on)", &args.pg_url),
        ("native PostgreSQL (fsync off)", &args.pg_nofsync_url),
    ];
    let mut native_clients = Vec::new();
    for (name, url) in natives {
        if let Some(url) = url {
            native_clients.push((name, connect(url).await?));
        }
    }
    line(format!(
        "## Statement latency, {} sequential requests each (ms)\n",
        args.iterations
    ));
    line("| statement | tidelake HTTP p50 | p99 | native p50 | p99 | ratio p50 | ratio p99 | against |".into());
    line("|---|---:|---:|---:|---:|---:|---:|---|".into());
    for (op, (name, _)) in OPS.iter().enumerate() {
        let ours = time_tidelake(&c, "bench", op, args.iterations).await?;
        beside_native(&mut line, name, ours, &native_clients, op, args.iterations).await?;
    }

    // --- The same statements over the tenant wire protocol -------------------
    // One client library on both sides (tokio-postgres): `query` with the
    // SQL text (a Parse and a Bind round trip each), and a statement
    // prepared once and executed again (what pools and ORMs do).
    let address = server.tenant_pg.clone().context("the tenant wire protocol is served")?;
    let (host, port) = address.rsplit_once(':').context("host:port")?;
    let (wire, wire_conn) = tokio_postgres::connect(&format!("host={host} port={port} user=bench dbname=bench"), NoTls).await?;
    tokio::spawn(async move {
        let _ = wire_conn.await;
    });
    line(String::new());
    line(format!(
        "## Statement latency over the PostgreSQL wire protocol (tokio-postgres on both sides), {} sequential statements each (ms)\n",
        args.iterations
    ));
    line("| statement | tidelake wire p50 | p99 | native p50 | p99 | ratio p50 | ratio p99 | against |".into());
    line("|---|---:|---:|---:|---:|---:|---:|---|".into());
    for op in 0..=OPS.len() {
        let name = OPS.get(op).map_or("primary-key lookup, prepared once", |(name, _)| *name);
        let ours = time_native(&wire, op, args.iterations).await?;
        beside_native(&mut line, name, ours, &native_clients, op, args.iterations).await?;
    }
    drop(wire);
    drop(server);

    // --- Time to first query -------------------------------------------------
    // Flush what earlier sections wrote, so its writeback does not throttle
    // the copies that create tenants here.
    flush_page_cache();
    let server = Server::start(&work.path().join("ttfq"), &["--tenants-hibernate-after", "200ms"]).await;
    let c = server.client();
    let k = 20;
    let mut new_tenant = Vec::new();
    for i in 0..k {
        // Sign-ups arrive one every 100 ms, not all in the same instant.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        c.exec(&format!("new-{i}"), "SELECT 1").await;
        new_tenant.push(t.elapsed());
    }
    for i in 0..k {
        c.exec(&format!("new-{i}"), "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g").await;
    }
    let mut wake = Vec::new();
    for i in 0..k {
        let tenant = format!("new-{i}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.engine_state(&tenant).await != "hibernated" {
            if Instant::now() > deadline {
                bail!("{tenant} never hibernated");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t = Instant::now();
        c.exec(&tenant, "SELECT count(*) FROM t").await;
        wake.push(t.elapsed());
    }
    let mut open = Vec::new();
    c.exec("new-0", "SELECT 1").await;
    for _ in 0..200 {
        let t = Instant::now();
        c.exec("new-0", "SELECT count(*) FROM t").await;
        open.push(t.elapsed());
    }
    drop(server);
    line(format!("\n## Time to first query ({k} tenants; open: 200 queries) (ms)\n"));
    line("| tenant | p50 | p99 | mean |".into());
    line("|---|---:|---:|---:|".into());
    for (name, samples) in [
        ("brand-new (created from the template)", new_tenant),
        ("hibernated (woken from local disk)", wake),
        ("open", open),
    ] {
        let s = summarize(samples);
        line(format!("| {name} | {} | {} | {} |", ms(s.p50), ms(s.p99), ms(s.mean)));
    }

    // --- Memory per open tenant ----------------------------------------------
    let n = args.tenants;
    let server = Server::start(
        &work.path().join("rss"),
        &["--tenants-max-open", &(n + 10).to_string()],
    )
    .await;
    let c = server.client();
    c.exec("warm", "SELECT 1").await;
    let base = rss_kib(server.pid())?;
    for i in 0..n {
        let tenant = format!("rss-{i}");
        c.exec(&tenant, "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
        c.exec(&tenant, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100) g").await;
        c.exec(&tenant, "SELECT * FROM t WHERE id = 7").await;
    }
    let (_, health) = c.get("/health").await;
    let open_now = health["openTenants"].as_u64().unwrap_or(0);
    let total = rss_kib(server.pid())?;
    drop(server);
    line(format!("\n## Memory with {n} tenants open\n"));
    line("| process RSS, 1 tenant open | RSS, all open | open tenants | per open tenant |".into());
    line("|---:|---:|---:|---:|".into());
    line(format!(
        "| {:.1} MiB | {:.1} MiB | {open_now} | {:.1} MiB |",
        base as f64 / 1024.0,
        total as f64 / 1024.0,
        (total.saturating_sub(base)) as f64 / 1024.0 / (open_now.max(2) - 1) as f64
    ));

    report.save(args.out.as_deref())
}
