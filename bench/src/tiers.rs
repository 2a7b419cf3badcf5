//! Tier benchmark: time to answer the first query of a tenant that is cold
//! (archived in object storage), against its size, beside a warm wake (from
//! local disk) and beside native PostgreSQL brought back the same way: the
//! same archive format (tar + zstd, verified) unpacked, `pg_ctl start`, a
//! connection and the same query. Then the time to list many hibernated
//! tenants with their sizes, beside native PostgreSQL listing as many
//! databases with theirs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tidelake_tests::{Client, Server, eventually};

use crate::Report;
use crate::native::{NativePg, chown_postgres};

/// Table data per tenant, in megabytes (0: a fresh tenant).
const SIZES_MB: [u64; 3] = [0, 10, 50];
const REPEAT: usize = 3;
/// Bytes per row of the filler table, roughly, on disk.
const ROW_BYTES: u64 = 150;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn tier(c: &Client, tenant: &str) -> String {
    let (_, health) = c.get(&format!("/t/{tenant}/health")).await;
    health["tenant"]["tier"].as_str().unwrap_or_default().to_owned()
}

async fn fill(c: &Client, tenant: &str, mb: u64) {
    c.exec(tenant, "CREATE TABLE filler (id bigint PRIMARY KEY, body text)").await;
    let rows = mb * 1_000_000 / ROW_BYTES;
    let mut first = 1;
    while first <= rows {
        let last = (first + 99_999).min(rows);
        c.exec(tenant, &format!("INSERT INTO filler SELECT g, repeat(md5(g::text), 3) FROM generate_series({first}, {last}) g")).await;
        first = last + 1;
    }
}

/// First query after the tenant reached `wanted`, timed.
async fn first_query(c: &Client, tenant: &str, wanted: &str) -> Result<Duration> {
    if !eventually(Duration::from_secs(120), || async { tier(c, tenant).await == wanted }).await {
        bail!("{tenant} never became {wanted}");
    }
    let started = Instant::now();
    let rows = c.rows(tenant, "SELECT count(*) AS n FROM filler", json!([])).await;
    let took = started.elapsed();
    anyhow::ensure!(rows[0]["n"].as_u64().is_some(), "no count");
    Ok(took)
}

pub async fn run(out: Option<PathBuf>, pg_bin: PathBuf) -> Result<()> {
    let work = tempfile::tempdir()?;
    // PostgreSQL runs as its own user and must reach its directories.
    std::fs::set_permissions(work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let mut report = Report::default();
    report.line("## Wake from the cold tier".into());
    report.line(String::new());
    report.line("First query (`SELECT count(*)`) of a tenant, by tier, against native PostgreSQL restored the same way".into());
    report.line(format!("(archive unpacked, `pg_ctl start`, connect, same query); median of {REPEAT}; archive on the local file system."));
    report.line(String::new());
    report.line("Directory: its files' lengths (what the archive packs); on disk: what they take (`du`), hibernated.".into());
    report.line(String::new());
    report.line("| table data | directory | on disk | archive | cold wake | warm wake | native PostgreSQL from archive | cold / native |".into());
    report.line("|---|---|---|---|---|---|---|---|".into());

    for mb in SIZES_MB {
        let tenant = format!("size-{mb}");
        // Cold wakes.
        let dir = work.path().join(format!("cold-{mb}"));
        let server = Server::start(
            &dir,
            &["--tenants-hibernate-after", "200ms", "--archive-cold-after", "300ms", "--archive-backup-interval", "off", "--lake-enabled=false"],
        )
        .await;
        let c = server.client();
        c.exec(&tenant, "SELECT 1").await;
        fill(&c, &tenant, mb).await;
        let mut cold = Vec::new();
        for _ in 0..REPEAT {
            cold.push(first_query(&c, &tenant, "cold").await?);
        }
        if !eventually(Duration::from_secs(60), || async { tier(&c, &tenant).await == "cold" }).await {
            bail!("{tenant} did not go cold again");
        }
        let (_, health) = c.get(&format!("/t/{tenant}/health")).await;
        let archive = health["tenant"]["archiveBytes"].as_u64().context("archiveBytes")?;
        let (_, backups) = c.get(&format!("/t/{tenant}/backups")).await;
        let raw = backups["backups"].as_array().and_then(|b| b.last()).and_then(|b| b["rawBytes"].as_u64()).context("rawBytes")?;
        drop(server);

        // Warm wakes: hibernated, on local disk.
        let dir = work.path().join(format!("warm-{mb}"));
        let server = Server::start(&dir, &["--tenants-hibernate-after", "200ms", "--archive-cold-after", "off", "--archive-backup-interval", "off", "--lake-enabled=false"]).await;
        let c = server.client();
        fill(&c, &tenant, mb).await;
        if !eventually(Duration::from_secs(60), || async { tier(&c, &tenant).await == "warm" }).await {
            bail!("{tenant} did not hibernate");
        }
        let on_disk = oltp_do::files::disk_usage(&dir.join("tenants").join(&tenant));
        let mut warm = Vec::new();
        for _ in 0..REPEAT {
            warm.push(first_query(&c, &tenant, "warm").await?);
        }
        drop(server);

        let native = native_from_archive(&pg_bin, &work.path().join(format!("pg-{mb}")), mb)?;
        let (cold, warm) = (median(cold), median(warm));
        report.line(format!(
            "| {mb} MB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} | {} | {} | {:.2} |",
            raw as f64 / 1048576.0,
            on_disk as f64 / 1048576.0,
            archive as f64 / 1048576.0,
            ms(cold),
            ms(warm),
            ms(native),
            cold.as_secs_f64() / native.as_secs_f64()
        ));
    }
    listing(&mut report, work.path(), &pg_bin).await?;
    report.save(out.as_deref())
}

/// Tenants in the listing benchmark.
const LISTED: usize = 300;
/// Listings timed on each side.
const LISTINGS: usize = 21;

/// Listing every tenant with its size — `GET /health` with `LISTED`
/// hibernated tenants — beside native PostgreSQL listing as many databases
/// of one cluster with theirs (`pg_database_size`, which walks each
/// database's directory), each over a connection already open.
async fn listing(report: &mut Report, work: &Path, pg_bin: &Path) -> Result<()> {
    let server = Server::start(
        &work.join("listing"),
        &["--tenants-hibernate-after", "200ms", "--archive-cold-after", "off", "--archive-backup-interval", "off", "--lake-enabled=false"],
    )
    .await;
    let c = server.client();
    for i in 0..LISTED {
        c.exec(&format!("t{i}"), "CREATE TABLE items (id int PRIMARY KEY, body text); INSERT INTO items VALUES (1, 'one')").await;
    }
    let all_warm = eventually(Duration::from_secs(120), || async {
        let (_, health) = c.get("/health").await;
        let tenants = health["tenants"].as_array().cloned().unwrap_or_default();
        tenants.len() == LISTED && tenants.iter().all(|t| t["tier"] == "warm")
    })
    .await;
    anyhow::ensure!(all_warm, "the {LISTED} tenants did not all hibernate");
    let mut ours = Vec::new();
    let mut listed_bytes = 0;
    for _ in 0..LISTINGS {
        let started = Instant::now();
        let (_, health) = c.get("/health").await;
        ours.push(started.elapsed());
        let tenants = health["tenants"].as_array().context("tenants")?;
        anyhow::ensure!(tenants.len() == LISTED, "listed {} tenants", tenants.len());
        listed_bytes = tenants.iter().map(|t| t["diskBytes"].as_u64().unwrap_or(0)).sum::<u64>();
    }
    let tenants_on_disk = oltp_do::files::disk_usage(&work.join("listing").join("tenants"));
    drop(server);

    let pg = NativePg::new(pg_bin, &work.join("pg-listing"))?;
    let data = work.join("pg-listing").join("data");
    pg.initdb(&data)?;
    pg.start(&data)?;
    pg.psql("CREATE TABLE items (id int PRIMARY KEY, body text); INSERT INTO items VALUES (1, 'one')")?;
    let (client, conn) =
        tokio_postgres::connect(&format!("host=127.0.0.1 port={} user=postgres dbname=postgres", pg.port()), tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(conn);
    for i in 0..LISTED {
        // Each a copy of the `postgres` database, table and row included.
        client.batch_execute(&format!("CREATE DATABASE t{i} TEMPLATE postgres")).await?;
    }
    let mut native = Vec::new();
    let mut native_bytes = 0;
    for _ in 0..LISTINGS {
        let started = Instant::now();
        let rows = client
            .query("SELECT datname::text, pg_database_size(oid) FROM pg_database WHERE datname ~ '^t[0-9]+$'", &[])
            .await?;
        native.push(started.elapsed());
        anyhow::ensure!(rows.len() == LISTED, "native listed {} databases", rows.len());
        native_bytes = rows.iter().map(|r| r.get::<_, i64>(1) as u64).sum::<u64>();
    }
    drop(client);
    let _ = connection.await;
    pg.stop(&data)?;
    let cluster_on_disk = oltp_do::files::disk_usage(&data);

    let (ours, native) = (median(ours), median(native));
    report.line(String::new());
    report.line("## Listing many tenants".into());
    report.line(String::new());
    report.line(format!(
        "`GET /health` listing {LISTED} hibernated tenants with tier, size and last access, beside native PostgreSQL listing {LISTED} databases"
    ));
    report.line(format!("of one cluster with `pg_database_size` over an open connection; median of {LISTINGS}."));
    report.line(String::new());
    report.line("Listed: the sizes each side lists, summed (tidelake: what each tenant directory takes on disk; `pg_database_size`: its files' lengths).".into());
    report.line("On disk: `du` of the tenants directory / of the whole cluster (WAL included).".into());
    report.line(String::new());
    report.line("| tenants | tidelake `GET /health` | native `pg_database_size` | tidelake / native | listed (tidelake) | listed (native) | on disk (tidelake) | on disk (native) |".into());
    report.line("|---|---|---|---|---|---|---|---|".into());
    let mib = |b: u64| b as f64 / 1048576.0;
    report.line(format!(
        "| {LISTED} | {:.1} ms | {:.1} ms | {:.2} | {:.0} MiB | {:.0} MiB | {:.0} MiB | {:.0} MiB |",
        ours.as_secs_f64() * 1000.0,
        native.as_secs_f64() * 1000.0,
        ours.as_secs_f64() / native.as_secs_f64(),
        mib(listed_bytes),
        mib(native_bytes),
        mib(tenants_on_disk),
        mib(cluster_on_disk)
    ));
    Ok(())
}

/// Native PostgreSQL with the same data: packed like a tenant, then timed
/// from the archive to the answer of the first query. Median of REPEAT.
fn native_from_archive(pg_bin: &Path, work: &Path, mb: u64) -> Result<Duration> {
    let pg = NativePg::new(pg_bin, work)?;
    let data = work.join("data");
    pg.initdb(&data)?;
    pg.start(&data)?;
    pg.psql("CREATE TABLE filler (id bigint PRIMARY KEY, body text)")?;
    let rows = mb * 1_000_000 / ROW_BYTES;
    if rows > 0 {
        pg.psql(&format!("INSERT INTO filler SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, {rows}) g"))?;
    }
    pg.stop(&data)?;
    let packed = oltp_do::archive::pack(&data)?;
    let mut times = Vec::new();
    for round in 0..REPEAT {
        let restored = work.join(format!("restored-{round}"));
        let started = Instant::now();
        oltp_do::archive::unpack(&packed.bytes, &restored)?;
        chown_postgres(&restored)?;
        std::fs::set_permissions(&restored, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        pg.start(&restored)?;
        let count = pg.psql("SELECT count(*) FROM filler")?;
        times.push(started.elapsed());
        anyhow::ensure!(count == rows.to_string(), "native count {count} != {rows}");
        pg.stop(&restored)?;
    }
    Ok(median(times))
}
