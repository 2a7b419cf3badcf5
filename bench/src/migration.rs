//! Schema changes: what a migration costs now that schema changes that
//! change values are logged and every schema change is followed by a base
//! backup, and what a restore just after a schema change takes — beside
//! native PostgreSQL running the same migration through the same kind of
//! client session (one statement per round trip).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use tidelake_tests::{Client, Server};

use crate::Report;
use crate::native::NativePg;

/// Rows in the table the migration alters (about 10 MB in PostgreSQL).
const ROWS: u64 = 120_000;

const CREATE: &str = "CREATE TABLE acct (id bigint PRIMARY KEY, balance bigint NOT NULL, note text)";

/// Ten statements of a typical migration: two rewrite every row's values
/// (a column with a default, a type change), one is DML.
const MIGRATION: [&str; 10] = [
    "ALTER TABLE acct ADD COLUMN tier text DEFAULT 'basic'",
    "ALTER TABLE acct ADD COLUMN flag boolean",
    "CREATE INDEX acct_balance ON acct (balance)",
    "ALTER TABLE acct ALTER COLUMN balance TYPE numeric(20,2)",
    "ALTER TABLE acct RENAME COLUMN note TO memo",
    "CREATE TABLE audit (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), what text)",
    "ALTER TABLE acct ADD CONSTRAINT balance_sane CHECK (balance > -1000000)",
    "UPDATE acct SET flag = true WHERE id % 10 = 0",
    "ALTER TABLE acct DROP COLUMN flag",
    "COMMENT ON TABLE acct IS 'accounts'",
];

fn seed_sql() -> String {
    format!("INSERT INTO acct SELECT g, g % 1000, md5(g::text) FROM generate_series(1, {ROWS}) g")
}

struct Run {
    /// Each statement, one request each (or the whole migration as one transaction).
    took: Vec<Duration>,
    logged: u64,
    backups: usize,
    table_mb: f64,
}

/// The migration on a fresh tenant of a server started with `args` (of
/// the build `bin`, or this one).
async fn tidelake(dir: &std::path::Path, args: &[&str], one_transaction: bool) -> Result<(Run, Server)> {
    tidelake_of(None, dir, args, one_transaction).await
}

async fn tidelake_of(bin: Option<&std::path::Path>, dir: &std::path::Path, args: &[&str], one_transaction: bool) -> Result<(Run, Server)> {
    let server = match bin {
        Some(bin) => Server::start_binary(bin, dir, args).await,
        None => Server::start(dir, args).await,
    };
    let c = server.client();
    c.exec("bench", CREATE).await;
    c.exec("bench", &seed_sql()).await;
    let size = c.rows("bench", "SELECT pg_total_relation_size('acct')::float8 / 1048576 AS mb", json!([])).await;
    let table_mb = size[0]["mb"].as_f64().unwrap_or(0.0);
    let capture_off = args.contains(&"--capture-enabled=false");
    let before = if capture_off { 0 } else { c.head_lsn("bench").await };
    let backups_before = backups(&c).await;
    let mut took = Vec::new();
    if one_transaction {
        let statements: Vec<Value> = MIGRATION.iter().map(|s| json!({ "sql": s })).collect();
        let started = Instant::now();
        let (status, body) = c.post("/t/bench/transaction", &json!({ "statements": statements })).await;
        ensure!(status.is_success(), "migration: {body}");
        took.push(started.elapsed());
    } else {
        for statement in MIGRATION {
            let started = Instant::now();
            let (status, body) = c.query("bench", statement, json!([])).await;
            ensure!(status.is_success(), "{statement}: {body}");
            took.push(started.elapsed());
        }
    }
    let logged = if capture_off { 0 } else { c.head_lsn("bench").await - before };
    let backups = backups(&c).await - backups_before;
    Ok((Run { took, logged, backups, table_mb }, server))
}

async fn backups(c: &Client) -> usize {
    let (_, body) = c.get("/t/bench/backups").await;
    body["backups"].as_array().map_or(0, Vec::len)
}

/// The same migration on native PostgreSQL, one statement per round trip.
async fn native(pg_bin: &std::path::Path, work: &std::path::Path) -> Result<Vec<Duration>> {
    let pg = NativePg::new(pg_bin, work)?;
    let data = work.join("data");
    pg.initdb(&data)?;
    pg.start(&data)?;
    let (client, connection) =
        tokio_postgres::connect(&format!("host=127.0.0.1 port={} user=postgres dbname=postgres", pg.port()), tokio_postgres::NoTls)
            .await?;
    tokio::spawn(connection);
    client.batch_execute(CREATE).await?;
    client.batch_execute(&seed_sql()).await?;
    let mut took = Vec::new();
    for statement in MIGRATION {
        let started = Instant::now();
        client.batch_execute(statement).await?;
        took.push(started.elapsed());
    }
    drop(client);
    pg.stop(&data)?;
    Ok(took)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(out: Option<PathBuf>, pg_bin: PathBuf) -> Result<()> {
    let work = tempfile::tempdir()?;
    std::fs::set_permissions(work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let mut report = Report::default();
    let quiet = ["--archive-backup-interval", "off", "--archive-cold-after", "off", "--lake-enabled=false"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> { quiet.iter().copied().chain(extra.iter().copied()).collect() };

    let native = native(&pg_bin, &work.path().join("native")).await?;
    let (bare, _) = tidelake(&work.path().join("bare"), &with(&["--capture-enabled=false"]), false).await?;
    let (logged, _) = tidelake(&work.path().join("logged"), &with(&["--archive-schema-backups=false"]), false).await?;
    let (full, server) = tidelake(&work.path().join("full"), &with(&[]), false).await?;
    let (one, _) = tidelake(&work.path().join("one"), &with(&[]), true).await?;
    // The release before value logging and schema backups, when given.
    let before = match std::env::var_os("TIDELAKE_BEFORE_BIN") {
        Some(bin) => Some(tidelake_of(Some(std::path::Path::new(&bin)), &work.path().join("before"), &with(&[]), false).await?.0),
        None => None,
    };

    report.line("## A migration, and a restore just after it".into());
    report.line(String::new());
    report.line(format!(
        "A table of {ROWS} rows ({:.1} MB in PostgreSQL), then ten statements, each its own request: two change every row's values",
        full.table_mb
    ));
    report.line("(`ADD COLUMN … DEFAULT`, `ALTER COLUMN … TYPE`), one index, one table, a rename, a constraint, a comment, a drop,".into());
    report.line("an `UPDATE` of a tenth of the rows. Native PostgreSQL runs the same statements over one connection.".into());
    report.line(String::new());
    let total = |t: &[Duration]| t.iter().sum::<Duration>();
    let ratio = |t: &[Duration]| total(t).as_secs_f64() / total(&native).as_secs_f64();
    let (before_head, before_rule) = if before.is_some() { (" previous release |", "---|") } else { ("", "") };
    report.line(format!(
        "| statement | native | tidelake, no capture |{before_head} capture, no schema backups | capture + schema backups (default) |"
    ));
    report.line(format!("|---|---|---|{before_rule}---|---|"));
    for (i, statement) in MIGRATION.iter().enumerate() {
        let before_cell = before.as_ref().map(|b| format!(" {} |", ms(b.took[i]))).unwrap_or_default();
        report.line(format!(
            "| `{}` | {} | {} |{before_cell} {} | {} |",
            statement.split_whitespace().take(6).collect::<Vec<_>>().join(" "),
            ms(native[i]),
            ms(bare.took[i]),
            ms(logged.took[i]),
            ms(full.took[i])
        ));
    }
    let before_total =
        before.as_ref().map(|b| format!(" **{}** ({:.1}×) |", ms(total(&b.took)), ratio(&b.took))).unwrap_or_default();
    report.line(format!(
        "| **total** | **{}** | **{}** ({:.1}×) |{before_total} **{}** ({:.1}×) | **{}** ({:.1}×) |",
        ms(total(&native)),
        ms(total(&bare.took)),
        ratio(&bare.took),
        ms(total(&logged.took)),
        ratio(&logged.took),
        ms(total(&full.took)),
        ratio(&full.took),
    ));
    if let Some(before) = &before {
        report.line(String::new());
        report.line(format!(
            "Previous release (`TIDELAKE_BEFORE_BIN`): {} changes logged, {} base backups (it logged no rows for schema changes).",
            before.logged, before.backups
        ));
    }
    report.line(String::new());
    report.line(format!(
        "Changes logged by the migration: {} (no schema backups) and {} (default); base backups taken: {} and {}. The same",
        logged.logged, full.logged, logged.backups, full.backups
    ));
    report.line(format!(
        "migration sent as one `POST /transaction`: {} ({:.1}× native's ten statements), {} base backup(s).",
        ms(total(&one.took)),
        total(&one.took).as_secs_f64() / total(&native).as_secs_f64(),
        one.backups
    ));

    // Restores at an instant just after a schema change (the column
    // dropped by statement 9): before schema backups, refused
    // (`schema_changed_in_window`) until a backup followed the change.
    let c = server.client();
    let (_, history) = c.get("/t/bench/schema").await;
    let versions = history["versions"].as_array().cloned().unwrap_or_default();
    let after_drop = versions
        .iter()
        .rfind(|v| v["table"] == "acct")
        .and_then(|v| v["commitTs"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no schema version of acct: {history}"))?;
    // Just after it: a millisecond later.
    let at = instant_plus(&after_drop, 1000);
    let expected = c.rows("bench", "SELECT count(*) AS n FROM acct", json!([])).await;
    let started = Instant::now();
    let (status, branch) = c.post("/t/bench/restore", &json!({ "to": at, "into": "bench-branch" })).await;
    ensure!(status.is_success(), "branch: {branch}");
    let branch_took = started.elapsed();
    ensure!(c.rows("bench-branch", "SELECT count(*) AS n FROM acct", json!([])).await == expected, "the branch differs");
    let started = Instant::now();
    let (status, in_place) = c.post("/t/bench/restore", &json!({ "to": at })).await;
    ensure!(status.is_success(), "restore: {in_place}");
    let in_place_took = started.elapsed();
    report.line(String::new());
    report.line(format!(
        "Restore to 1 ms after the column was dropped (statement 9): a branch {} (base backup at LSN {}, {} changes replayed); in place {} (logged {}).",
        ms(branch_took),
        branch["baseBackup"]["lsn"],
        branch["replayed"],
        ms(in_place_took),
        in_place["logged"]
    ));
    report.line("Before schema backups, both were refused until a backup followed the change (2 s of quiet, then a backup); an instant".into());
    report.line("between two of the back-to-back DDL statements (say, after the type change) is still refused: no backup holds it.".into());
    report.save(out.as_deref())
}

/// A `YYYY-MM-DD HH:MM:SS.ffffff+00` instant `micros` later, in the same form.
fn instant_plus(text: &str, micros: i64) -> String {
    let parsed = chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z").expect("a commit time");
    (parsed + chrono::Duration::microseconds(micros)).format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}
