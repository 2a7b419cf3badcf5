//! Restore benchmark: time to restore a tenant to an instant against the
//! number of changes replayed on top of its base backup, with the changes
//! read from the change log and from the lake, beside native PostgreSQL's
//! own point-in-time recovery of the same workload (a `pg_basebackup`, WAL
//! archived with `archive_command`, recovery to `recovery_target_lsn`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tidelake_tests::{Client, Server};

use crate::Report;
use crate::native::{NativePg, chown_postgres, run_ok};

/// Changes replayed per run.
const CHANGES: [u64; 3] = [10_000, 50_000, 200_000];
/// Rows in the table when the base backup is taken.
const SEED: u64 = 50_000;

/// The workload after the base backup, as SQL statements: per 10 000
/// changes, 6 000 updates, 2 000 inserts, 2 000 deletes (`mixed`), or
/// 10 000 inserts (append-only, as an event log).
fn workload(changes: u64, mixed: bool) -> Vec<String> {
    if !mixed {
        return (0..changes.div_ceil(10_000))
            .map(|i| {
                let first = SEED + 1 + i * 10_000;
                let last = (first + 9_999).min(SEED + changes);
                format!("INSERT INTO acct SELECT g, g % 1000, md5(g::text) FROM generate_series({first}, {last}) g")
            })
            .collect();
    }
    let mut statements = Vec::new();
    let mut next_id = SEED + 1;
    let mut oldest = 1;
    let mut done = 0;
    while done < changes {
        let chunk = (changes - done).min(10_000);
        let (updates, inserts) = (chunk * 6 / 10, chunk * 2 / 10);
        let deletes = chunk - updates - inserts;
        statements.push(format!(
            "UPDATE acct SET balance = balance + 1, note = 'u' || balance WHERE id IN (SELECT id FROM acct ORDER BY id DESC LIMIT {updates})"
        ));
        statements.push(format!(
            "INSERT INTO acct SELECT g, g % 1000, md5(g::text) FROM generate_series({next_id}, {}) g",
            next_id + inserts - 1
        ));
        statements.push(format!("DELETE FROM acct WHERE id BETWEEN {oldest} AND {}", oldest + deletes - 1));
        next_id += inserts;
        oldest += deletes;
        done += chunk;
    }
    statements
}

const CREATE: &str = "CREATE TABLE acct (id bigint PRIMARY KEY, balance bigint NOT NULL, note text)";

fn seed_sql() -> String {
    format!("INSERT INTO acct SELECT g, g % 1000, md5(g::text) FROM generate_series(1, {SEED}) g")
}

const CHECK: &str = "SELECT count(*) AS n, coalesce(sum(balance), 0)::bigint AS total, md5(string_agg(note, ',' ORDER BY id)) AS notes FROM acct";

struct Run {
    read: Duration,
    replay: Duration,
    total: Duration,
    from: String,
}

/// Build a tenant with the workload after a base backup; restore it into
/// a branch at its head; check the branch equals it.
async fn tidelake(c: &Client, tenant: &str, changes: u64, lake: bool, mixed: bool) -> Result<Run> {
    c.exec(tenant, CREATE).await;
    c.exec(tenant, &seed_sql()).await;
    let (status, body) = c.post(&format!("/t/{tenant}/backups"), &json!({})).await;
    ensure!(status.is_success(), "backup: {body}");
    for statement in workload(changes, mixed) {
        c.exec(tenant, &statement).await;
    }
    let head = c.head_lsn(tenant).await;
    if lake {
        c.wait_shipped(tenant).await;
    }
    let expected = c.rows(tenant, CHECK, json!([])).await;
    let branch = format!("{tenant}-branch");
    let (status, report) = c.post(&format!("/t/{tenant}/restore"), &json!({ "to": format!("lsn:{head}"), "into": branch })).await;
    ensure!(status.is_success(), "restore: {report}");
    ensure!(report["replayed"].as_u64() == Some(changes), "replayed {} of {changes}", report["replayed"]);
    ensure!(c.rows(&branch, CHECK, json!([])).await == expected, "the branch differs from the tenant");
    let ms = |k: &str| Duration::from_millis(report[k].as_u64().unwrap_or(0));
    Ok(Run { read: ms("readMs"), replay: ms("replayMs"), total: ms("tookMs"), from: report["replayedFrom"].as_str().unwrap_or("?").to_owned() })
}

/// An in-place restore of a tenant to its base backup, undoing the last
/// `changes`: (whole restore, changes the restored database logged, time
/// until the lake held them).
async fn undo_in_place(c: &Client, tenant: &str, changes: u64) -> Result<(Duration, u64, Duration)> {
    c.exec(tenant, CREATE).await;
    c.exec(tenant, &seed_sql()).await;
    let (status, body) = c.post(&format!("/t/{tenant}/backups"), &json!({})).await;
    ensure!(status.is_success(), "backup: {body}");
    let (base, expected) = (c.head_lsn(tenant).await, c.rows(tenant, CHECK, json!([])).await);
    for statement in workload(changes, true) {
        c.exec(tenant, &statement).await;
    }
    c.wait_shipped(tenant).await;
    let (status, report) = c.post(&format!("/t/{tenant}/restore"), &json!({ "to": format!("lsn:{base}") })).await;
    ensure!(status.is_success(), "restore: {report}");
    let shipping = Instant::now();
    c.wait_shipped(tenant).await;
    let shipped = shipping.elapsed();
    ensure!(c.rows(tenant, CHECK, json!([])).await == expected, "the restored tenant differs from its base");
    let logged = report["logged"].as_u64().unwrap_or(0);
    Ok((Duration::from_millis(report["tookMs"].as_u64().unwrap_or(0)), logged, shipped))
}

/// Native PostgreSQL: base backup, the same workload with its WAL archived,
/// then recovery of the base backup to the workload's last LSN, timed from
/// `pg_ctl start` to the first answer after promotion.
fn native(pg_bin: &Path, work: &Path, changes: u64, mixed: bool) -> Result<(Duration, Value)> {
    let pg = NativePg::new(pg_bin, work)?;
    let archive = work.join("wal-archive");
    std::fs::create_dir_all(&archive)?;
    chown_postgres(&archive)?;
    let data = work.join("data");
    pg.initdb(&data)?;
    let conf = format!(
        "\nwal_level = replica\narchive_mode = on\narchive_command = 'cp %p {}/%f'\n",
        archive.display()
    );
    append(&data.join("postgresql.conf"), &conf)?;
    pg.start(&data)?;
    pg.psql(CREATE)?;
    pg.psql(&seed_sql())?;
    let base = work.join("base");
    run_ok(pg.program("pg_basebackup").arg("-D").arg(&base).args([
        "-h",
        "127.0.0.1",
        "-p",
        &pg.port().to_string(),
        "-U",
        "postgres",
        "-X",
        "stream",
        "-c",
        "fast",
    ]))?;
    for statement in workload(changes, mixed) {
        pg.psql(&statement)?;
    }
    let expected = pg.psql(&format!("SELECT row_to_json(c) FROM ({CHECK}) c"))?;
    let target = pg.psql("SELECT pg_current_wal_lsn()")?;
    let segment = pg.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")?;
    pg.psql("SELECT pg_switch_wal()")?;
    let archived = Instant::now();
    while pg.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")? < segment {
        ensure!(archived.elapsed() < Duration::from_secs(120), "WAL segment {segment} was never archived");
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.stop(&data)?;

    // Recovery of the base backup to the target, as PostgreSQL's PITR does it.
    let restored = work.join("restored");
    run_ok(Command::new("cp").arg("-a").arg(&base).arg(&restored))?;
    append(
        &restored.join("postgresql.auto.conf"),
        &format!(
            "\narchive_mode = off\nrestore_command = 'cp {}/%f %p'\nrecovery_target_lsn = '{target}'\nrecovery_target_action = 'promote'\n",
            archive.display()
        ),
    )?;
    std::fs::write(restored.join("recovery.signal"), "")?;
    chown_postgres(&restored)?;
    std::fs::set_permissions(&restored, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let started = Instant::now();
    pg.start(&restored)?;
    while pg.psql("SELECT pg_is_in_recovery()")? != "f" {
        ensure!(started.elapsed() < Duration::from_secs(600), "native recovery never finished");
        std::thread::sleep(Duration::from_millis(10));
    }
    let answer = pg.psql(&format!("SELECT row_to_json(c) FROM ({CHECK}) c"))?;
    let took = started.elapsed();
    pg.stop(&restored)?;
    ensure!(answer == expected, "native recovery differs: {answer} != {expected}");
    Ok((took, serde_json::from_str(&answer)?))
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).with_context(|| format!("open {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn rate(changes: u64, d: Duration) -> String {
    format!("{:.0}k/s", changes as f64 / d.as_secs_f64().max(1e-3) / 1000.0)
}

pub async fn run(out: Option<PathBuf>, pg_bin: PathBuf) -> Result<()> {
    let work = tempfile::tempdir()?;
    std::fs::set_permissions(work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let mut report = Report::default();
    report.line("## Restore against replayed changes".into());
    report.line(String::new());
    report.line(format!(
        "A {SEED}-row table, a base backup, then the changes (60% updates, 20% inserts, 20% deletes, in bulk statements);"
    ));
    report.line("restore into a branch at the last change, checked equal (count, sum, digest of a text column). Replay = applying".into());
    report.line("the changes to the unpacked base backup; total = the whole restore (fetch, unpack, read, replay, start the".into());
    report.line("branch's log, back it up). Native PostgreSQL: `pg_basebackup`, the same statements with WAL archived, then".into());
    report.line("recovery to `recovery_target_lsn`, timed from `pg_ctl start` to the first answer after promotion.".into());
    report.line(String::new());
    report.line("| changes | from the log: replay | rate | total | from the lake: read | replay | total | native PITR | log replay / native |".into());
    report.line("|---|---|---|---|---|---|---|---|---|".into());
    for changes in CHANGES {
        let dir = work.path().join(format!("log-{changes}"));
        let server = Server::start(&dir, &["--archive-backup-interval", "off", "--archive-cold-after", "off", "--lake-enabled=false"]).await;
        let from_log = tidelake(&server.client(), "bench", changes, false, true).await?;
        ensure!(from_log.from == "log", "replayed from {}", from_log.from);
        drop(server);

        let dir = work.path().join(format!("lake-{changes}"));
        let server = Server::start(
            &dir,
            &["--archive-backup-interval", "off", "--archive-cold-after", "off", "--capture-retention", "0s", "--lake-flush-interval", "200ms"],
        )
        .await;
        let from_lake = tidelake(&server.client(), "bench", changes, true, true).await?;
        ensure!(from_lake.from == "lake", "replayed from {}", from_lake.from);
        drop(server);

        let (native, _) = native(&pg_bin, &work.path().join(format!("pg-{changes}")), changes, true)?;
        report.line(format!(
            "| {changes} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            secs(from_log.replay),
            rate(changes, from_log.replay),
            secs(from_log.total),
            secs(from_lake.read),
            secs(from_lake.replay),
            secs(from_lake.total),
            secs(native),
            from_log.replay.as_secs_f64() / native.as_secs_f64()
        ));
    }
    report.line(String::new());
    report.line("Append-only (every change an insert), replayed from the log:".into());
    report.line(String::new());
    report.line("| changes | replay | rate | total | native PITR | replay / native |".into());
    report.line("|---|---|---|---|---|---|".into());
    let changes = 200_000;
    let dir = work.path().join("append");
    let server = Server::start(&dir, &["--archive-backup-interval", "off", "--archive-cold-after", "off", "--lake-enabled=false"]).await;
    let appended = tidelake(&server.client(), "bench", changes, false, false).await?;
    drop(server);
    let (native, _) = native(&pg_bin, &work.path().join("pg-append"), changes, false)?;
    report.line(format!(
        "| {changes} | {} | {} | {} | {} | {:.2} |",
        secs(appended.replay),
        rate(changes, appended.replay),
        secs(appended.total),
        secs(native),
        appended.replay.as_secs_f64() / native.as_secs_f64()
    ));
    report.line(String::new());
    report.line(format!(
        "Undo in place: the {SEED}-row tenant restored in place to its base backup, undoing the last changes (mixed, as above),"
    ));
    report.line("with the lake on; the restored database logs only the keys that differ from the replaced one (a table logged".into());
    report.line(format!("whole would be {} changes). Lake: from the restore's answer until the lake holds its changes.", SEED + 1));
    report.line(String::new());
    report.line("| changes undone | restore in place | changes logged | lake caught up after |".into());
    report.line("|---|---|---|---|".into());
    for changes in [100, 1_000, 10_000] {
        let dir = work.path().join(format!("undo-{changes}"));
        let server = Server::start(&dir, &["--archive-backup-interval", "off", "--archive-cold-after", "off", "--lake-flush-interval", "200ms"]).await;
        let (took, logged, shipped) = undo_in_place(&server.client(), "bench", changes).await?;
        drop(server);
        report.line(format!("| {changes} | {} | {logged} | {} |", secs(took), secs(shipped)));
    }
    report.save(out.as_deref())
}
