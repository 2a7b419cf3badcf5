//! A deployment's migrations over many tenants (docs/migrations.md): the
//! first query of a hibernated tenant after a deploy (its wake and its
//! migrations) beside the plain wake of one before it, `tidelake migrate
//! up` over every other tenant, and a new tenant's first query with the
//! template at the latest beside one without migrations.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::json;
use tidelake_tests::{Client, Server};

use crate::Report;

/// Tenants timed one by one (first queries).
const TIMED: usize = 20;

/// The first deployment: the table every tenant's data is in.
const FIRST: (&str, &str) = ("0001_items.sql", "CREATE TABLE items (id int PRIMARY KEY, title text);");

/// The deploy measured: a new table, and a column with a default and its index.
const DEPLOY: [(&str, &str); 2] = [
    ("0002_users.sql", "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());\nCREATE UNIQUE INDEX users_email ON users (email);"),
    ("0003_items_price.sql", "ALTER TABLE items ADD COLUMN price numeric(10,2) NOT NULL DEFAULT 0;\nCREATE INDEX items_price ON items (price);"),
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn first_query(c: &Client, tenant: &str) -> Result<Duration> {
    let started = Instant::now();
    let (status, body) = c.query(tenant, "SELECT count(*) FROM items", json!([])).await;
    ensure!(status.is_success(), "{tenant}: {body}");
    Ok(started.elapsed())
}

/// Every tenant hibernated (the server's `health` counts none open).
async fn all_hibernated(c: &Client) -> Result<()> {
    let done = tidelake_tests::eventually(Duration::from_secs(120), || async {
        c.get("/health").await.1["openTenants"] == 0
    })
    .await;
    ensure!(done, "tenants stayed open");
    Ok(())
}

pub async fn run(out: Option<PathBuf>, tenants: usize) -> Result<()> {
    ensure!(tenants > 2 * TIMED, "--tenants must be above {}", 2 * TIMED);
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    let folder = work.path().join("migrations");
    let quiet = ["--tenants-hibernate-after", "300ms", "--archive-backup-interval", "off", "--lake-enabled=false"];
    let mut report = Report::default();

    // Tenants of the first deployment, with rows of their own, all hibernated.
    std::fs::create_dir_all(&folder)?;
    std::fs::write(folder.join(FIRST.0), FIRST.1)?;
    let folder_arg = folder.to_str().unwrap_or_default().to_owned();
    let mut args = quiet.to_vec();
    args.extend(["--migrations", &folder_arg]);
    let mut server = Server::start(&data, &args).await;
    let c = server.client();
    let name = |i: usize| format!("t{i:05}");
    for i in 0..tenants {
        c.exec(&name(i), "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g").await;
    }
    all_hibernated(&c).await?;
    // The plain wake, before the deploy; and a new tenant without migrations.
    let mut plain = Vec::new();
    for i in 0..TIMED {
        plain.push(first_query(&c, &name(i)).await?);
    }
    let mut new_plain = Vec::new();
    for i in 0..TIMED {
        let tenant = format!("plain{i}");
        let started = Instant::now();
        c.exec(&tenant, "SELECT count(*) FROM items").await;
        new_plain.push(started.elapsed());
    }
    server.stop();

    // The deploy: two migrations more.
    for (file, sql) in DEPLOY {
        std::fs::write(folder.join(file), sql)?;
    }
    let mut server = Server::start(&data, &args).await;
    let c = server.client();
    // First queries after it: the wake and the migrations.
    let mut migrated = Vec::new();
    for i in TIMED..2 * TIMED {
        migrated.push(first_query(&c, &name(i)).await?);
    }
    let mut new_migrated = Vec::new();
    for i in 0..TIMED {
        let tenant = format!("fresh{i}");
        let started = Instant::now();
        c.exec(&tenant, "SELECT count(*) FROM users").await;
        new_migrated.push(started.elapsed());
    }
    all_hibernated(&c).await?;
    // `migrate up` over every other tenant.
    let rest = tenants - 2 * TIMED;
    let mut up = Vec::new();
    for concurrency in ["1", "4"] {
        let started = Instant::now();
        let out = std::process::Command::new(tidelake_tests::binary())
            .args(["migrate", "up", "--concurrency", concurrency, "--url", &server.base])
            .output()?;
        up.push((concurrency, started.elapsed(), String::from_utf8_lossy(&out.stdout).into_owned()));
        ensure!(out.status.success(), "migrate up: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        all_hibernated(&c).await?;
    }
    let applied = c.rows(&name(tenants - 1), "SELECT count(*)::int AS n FROM tidelake.migrations", json!([])).await;
    ensure!(applied[0]["n"] == 3, "the last tenant has {applied:?}");
    server.stop();

    let (plain, migrated) = (median(plain), median(migrated));
    report.line(format!("## A deploy of 2 migrations over {tenants} hibernated tenants (each with 100 rows in the table they alter)\n"));
    report.line(format!("| first query (median of {TIMED}) | before the deploy | after it | after / before |"));
    report.line("|---|---:|---:|---:|".into());
    report.line(format!(
        "| hibernated tenant (before: wake; after: wake + 2 migrations) | {} | {} | {:.2}× |",
        ms(plain),
        ms(migrated),
        migrated.as_secs_f64() / plain.as_secs_f64()
    ));
    let (new_plain, new_migrated) = (median(new_plain), median(new_migrated));
    report.line(format!(
        "| new tenant (from the template at the latest: 1 migration, then 3) | {} | {} | {:.2}× |",
        ms(new_plain),
        ms(new_migrated),
        new_migrated.as_secs_f64() / new_plain.as_secs_f64()
    ));
    let all = tenants + 2 * TIMED;
    report.line(format!(
        "\n`tidelake migrate up` over every tenant ({all}: the {rest} not yet opened since the deploy are migrated by the first run; the second finds every one at the latest, so it wakes them only):\n"
    ));
    report.line("| run | concurrency | took | tenants / s | printed |".into());
    report.line("|---|---:|---:|---:|---|".into());
    for ((concurrency, took, printed), run) in up.into_iter().zip(["migrates", "wakes only"]) {
        report.line(format!(
            "| {run} | {concurrency} | {:.1} s | {:.0} | {} |",
            took.as_secs_f64(),
            all as f64 / took.as_secs_f64(),
            printed.lines().next().unwrap_or_default()
        ));
    }
    report.save(out.as_deref())
}
