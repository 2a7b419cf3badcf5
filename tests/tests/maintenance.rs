//! Lake maintenance: compaction, snapshot expiry, bounded metadata, orphan
//! removal and adaptive commits, through the real binary — the server's
//! background policy and `tidelake lake maintain` — with PyIceberg reading
//! what they leave.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tidelake_tests::{Client, Server, binary, eventually};

use crate::lake::{assert_exactly_the_log, state_from_changelog};
use crate::query::{instant, sql};

/// Files below `dir` whose names end with `suffix`.
fn files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path.display().to_string());
        }
    }
    found
}

/// `tidelake lake maintain --json` over `data_dir`: its reports, or its exit
/// status when it did not finish.
fn maintain(data_dir: &Path, tenant: &str, extra: &[&str], crash_at: Option<&str>) -> Result<Vec<Value>, String> {
    let mut args = vec!["--data-dir", data_dir.to_str().unwrap()];
    args.extend(extra);
    maintain_with(tenant, &args, crash_at)
}

/// `tidelake lake maintain --json --tenant T` with `args` (where the
/// catalog and warehouse are), crashing at `crash_at` if given.
pub(crate) fn maintain_with(tenant: &str, args: &[&str], crash_at: Option<&str>) -> Result<Vec<Value>, String> {
    let mut command = Command::new(binary());
    command
        .args(["lake", "maintain", "--json", "--tenant", tenant])
        .args(args)
        .env_remove("TIDELAKE_CONFIG")
        .env_remove("TIDELAKE_CRASH_AT");
    if let Some(step) = crash_at {
        command.env("TIDELAKE_CRASH_AT", step);
    }
    let out = command.output().expect("run tidelake lake maintain");
    if !out.status.success() {
        return Err(format!("{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect())
}

/// A small deterministic generator (xorshift), for the workload.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// An instant, and the rows `acc` had then as PostgreSQL answers them.
struct Seen {
    at: String,
    rows: Vec<Value>,
}

const ACC_ROWS: &str = "SELECT id, owner, balance FROM acc ORDER BY id";

/// `rounds` small transactions on `acc` (inserts, updates, deletes), each
/// its own lake commit; every ten, an instant and the rows then.
async fn workload(c: &Client, t: &str, rng: &mut Rng, next_id: &mut u64, rounds: usize, seen: &mut Vec<Seen>) {
    for round in 0..rounds {
        let sql = match rng.below(4) {
            0 | 1 => {
                *next_id += 1;
                format!("INSERT INTO acc (id, owner, balance) VALUES ({next_id}, 'owner {}', {}.25)", rng.below(50), rng.below(10_000))
            }
            2 => format!("UPDATE acc SET balance = balance + {} WHERE id = {}", rng.below(100), 1 + rng.below((*next_id).max(1))),
            _ => format!("DELETE FROM acc WHERE id = {}", 1 + rng.below((*next_id).max(1))),
        };
        c.exec(t, &sql).await;
        // Longer than the flush interval: each transaction its own commit.
        tokio::time::sleep(Duration::from_millis(30)).await;
        if round % 10 == 9 {
            let rows = c.rows(t, ACC_ROWS, json!([])).await;
            seen.push(Seen { at: instant(c, t).await, rows });
        }
    }
}

/// What a user reads of `acc` through the query service: its state at each
/// instant — which must be what PostgreSQL had then — its changes up to
/// `upto`, a diff and growth.
async fn answers(c: &Client, t: &str, seen: &[Seen], upto: u64) -> Vec<Vec<Value>> {
    let mut all = Vec::new();
    for Seen { at, rows } in seen {
        let state = sql(c, &format!("SELECT id, owner, balance FROM {t}.acc FOR SYSTEM_TIME AS OF '{at}' ORDER BY id")).await;
        assert_eq!(&state, rows, "{t}.acc as of {at}");
        all.push(state);
    }
    let instants: Vec<&String> = seen.iter().map(|s| &s.at).collect();
    all.push(sql(c, &format!("SELECT _op, _lsn, id, balance FROM {t}.\"acc$changes\" WHERE _lsn <= {upto} ORDER BY _lsn")).await);
    let (first, last) = (instants[0], instants[instants.len() - 1]);
    all.push(sql(c, &format!("SELECT * FROM table_diff('{t}.acc', '{first}', '{last}') ORDER BY id")).await);
    all.push(sql(c, &format!("SELECT * FROM growth('{t}.acc', '{first}', '{last}', '1 minute')")).await);
    all
}

/// The `tidelake_lake_table_*` gauge of one table, from `/metrics`.
async fn gauge(c: &Client, name: &str, tenant: &str, table: &str) -> Option<u64> {
    let metrics = c.http.get(c.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let prefix = format!("{name}{{tenant=\"{tenant}\",table=\"{table}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok())
}

async fn counter(c: &Client, name: &str) -> u64 {
    let metrics = c.http.get(c.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let prefix = format!("{name} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A table of a few hundred one-transaction commits, with a schema change
/// half way, is compacted while the shipper keeps committing to it: every
/// answer — `AS OF` each instant, its changes, a diff, growth — is the same
/// after as before, every change is in the lake exactly once, PyIceberg
/// reads the compacted table equal to the change log, and what is left is
/// a few files, one snapshot and a bounded metadata directory.
#[tokio::test]
async fn maintenance_keeps_every_answer_and_bounds_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        &["--lake-flush-interval", "20ms", "--lake-maintenance-interval", "off"],
    )
    .await;
    let c = server.client();
    let t = "tidy";
    c.exec(t, "CREATE TABLE acc (id int PRIMARY KEY, owner text, balance numeric(12,2))").await;
    let (mut rng, mut next_id, mut seen) = (Rng(566_363), 0, Vec::new());
    workload(&c, t, &mut rng, &mut next_id, 80, &mut seen).await;
    c.exec(t, "ALTER TABLE acc ADD COLUMN tier text DEFAULT 'basic'").await;
    workload(&c, t, &mut rng, &mut next_id, 80, &mut seen).await;
    let head = c.wait_shipped(t).await;
    let before = answers(&c, t, &seen, head).await;
    let table_dir = data.join("warehouse").join(t).join("acc");
    let parquet_before = files(&table_dir.join("data"), ".parquet").len();
    assert!(parquet_before >= 50, "the workload made {parquet_before} commits' files");

    // Maintenance while the tenant goes on writing to the same table.
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            for id in 0..60 {
                c.exec(t, &format!("INSERT INTO acc (id, owner, balance) VALUES ({}, 'late', 1)", 100_000 + id)).await;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let reports = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            maintain(&data, t, &["--lake-snapshot-retention", "0s", "--lake-orphan-age", "1h"], None)
        })
        .await
        .unwrap()
        .unwrap()
    };
    writer.await.unwrap();
    let acc = reports.iter().find(|r| r["table"] == "acc").expect("acc maintained");
    // (Two partitions if the test runs across midnight UTC.)
    assert!(acc["compactedFiles"].as_u64().unwrap() >= parquet_before as u64 / 2, "{acc}");
    assert!(acc["expiredSnapshots"].as_u64().unwrap() >= parquet_before as u64, "{acc}");
    assert!(acc["removedFiles"].as_u64().unwrap() >= parquet_before as u64, "{acc}");

    // The same answers; every change once, as PyIceberg reads it.
    assert_eq!(answers(&c, t, &seen, head).await, before, "answers changed by maintenance");
    let lake = assert_exactly_the_log(&c, &server, t).await;
    let rows = &lake["tables"]["tidy.acc"]["rows"];
    let state = state_from_changelog(rows, "id", u64::MAX);
    let now = sql(&c, "SELECT id, owner, balance, tier FROM tidy.acc ORDER BY id").await;
    assert_eq!(state.len(), now.len());
    for row in &now {
        let id = row["id"].to_string();
        assert_eq!(state[&id]["balance"], row["balance"], "id {id}");
        assert_eq!(state[&id]["tier"], row["tier"], "id {id}");
    }
    // And again with the late writes shipped and a second run: a bounded lake.
    // (How many late files the first run left depends on timing: the
    // second compacts any two, not the default eight.)
    let reports = maintain(
        &data,
        t,
        &["--lake-snapshot-retention", "0s", "--lake-orphan-age", "1h", "--lake-min-compact-files", "2"],
        None,
    )
    .unwrap();
    let acc = reports.iter().find(|r| r["table"] == "acc").unwrap();
    let stats = &acc["stats"];
    assert!(stats["dataFiles"].as_u64().unwrap() <= 2, "{acc}");
    assert_eq!(stats["manifests"], 1, "{acc}");
    assert_eq!(stats["snapshots"], 1, "{acc}");
    let metadata_files = files(&table_dir.join("metadata"), ".metadata.json").len();
    assert!(metadata_files <= 11, "{metadata_files} metadata files kept");
    assert_eq!(files(&table_dir.join("data"), ".parquet").len() as u64, stats["dataFiles"].as_u64().unwrap());
    assert_eq!(answers(&c, t, &seen, head).await, before);
}

/// Small transactions wait to make larger commits while the most lag
/// allowed permits — and still reach the lake within it; the server's
/// background maintenance then compacts and reports each table's files,
/// snapshots and metadata size in `health` and `/metrics`.
#[tokio::test]
async fn adaptive_commits_and_background_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    // Compact as soon as a partition has two small files.
    let config = dir.path().join("tidelake.toml");
    std::fs::write(&config, "[lake]\nmin_compact_files = 2\n").unwrap();
    let config = config.display().to_string();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--config", &config,
            "--lake-flush-interval", "20ms",
            "--lake-max-lag", "2s",
            "--lake-maintenance-interval", "1s",
            "--lake-snapshot-retention", "0s",
            "--lake-orphan-age", "1h",
        ],
    )
    .await;
    let c = server.client();
    let t = "steady";
    c.exec(t, "CREATE TABLE ev (id serial PRIMARY KEY, v int)").await;
    let commits_before = counter(&c, "tidelake_lake_commits_total").await;
    let started = std::time::Instant::now();
    for v in 0..120 {
        c.exec(t, &format!("INSERT INTO ev (v) VALUES ({v})")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let writing = started.elapsed();
    c.wait_shipped(t).await;
    let commits = counter(&c, "tidelake_lake_commits_total").await - commits_before;
    // One commit per 2 s of writing (and the last batch), not one per transaction.
    let most = writing.as_secs() / 2 + 3;
    assert!(commits <= most, "{commits} commits for 120 transactions over {writing:?}");
    assert!(counter(&c, "tidelake_lake_deferred_batches_total").await > 0);
    let rows = sql(&c, &format!("SELECT count(*) AS n, sum(v) AS s FROM {t}.ev")).await;
    assert_eq!(rows[0], json!({"n": 120, "s": (0..120).sum::<i64>()}));

    // The background policy: a handful of files become one, in health and metrics.
    for v in 120..140 {
        c.exec(t, &format!("INSERT INTO ev (v) VALUES ({v})")).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    c.wait_shipped(t).await;
    let compacted = eventually(Duration::from_secs(60), || async {
        let (_, health) = c.get(&format!("/t/{t}/health")).await;
        let ev = &health["tenant"]["lake"]["tables"]["ev"];
        ev["dataFiles"] == 1 && ev["snapshots"] == 1 && ev["records"] == 140
    })
    .await;
    let (_, health) = c.get(&format!("/t/{t}/health")).await;
    assert!(compacted, "never compacted: {}", health["tenant"]["lake"]);
    let ev = &health["tenant"]["lake"]["tables"]["ev"];
    assert!(ev["metadataBytes"].as_u64().unwrap() > 0, "{ev}");
    assert_eq!(gauge(&c, "tidelake_lake_table_data_files", t, "ev").await, Some(1));
    assert_eq!(gauge(&c, "tidelake_lake_table_snapshots", t, "ev").await, Some(1));
    assert!(gauge(&c, "tidelake_lake_table_metadata_bytes", t, "ev").await.unwrap() > 0);
    assert!(counter(&c, "tidelake_lake_compacted_files_total").await >= 2);
    let rows = sql(&c, &format!("SELECT count(*) AS n, sum(v) AS s FROM {t}.ev")).await;
    assert_eq!(rows[0], json!({"n": 140, "s": (0..140).sum::<i64>()}));
    assert_exactly_the_log(&c, &server, t).await;
}

/// `tidelake lake maintain` killed at each step — a compaction's files
/// written but not committed, right after its replace commit, a
/// checkpoint's files written, right after its commit, right after the
/// expiry commit — leaves the table readable with every answer (equal to
/// what PostgreSQL had) and every change exactly once; the next run
/// finishes the work and removes what the crashed ones left behind. The
/// states are then read from checkpoints, which PyIceberg reads equal to
/// tidelake's answer at their LSN.
#[tokio::test]
async fn a_crash_at_each_maintenance_step_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--lake-flush-interval", "20ms", "--lake-maintenance-interval", "off"]).await;
    let c = server.client();
    let t = "crashy";
    c.exec(t, "CREATE TABLE acc (id int PRIMARY KEY, owner text, balance numeric(12,2))").await;
    let (mut rng, mut next_id, mut seen) = (Rng(7), 0, Vec::new());
    let retention = ["--lake-snapshot-retention", "0s", "--lake-orphan-age", "0s", "--lake-checkpoint-changes", "10"];
    let steps = ["compaction-written", "compaction-committed", "checkpoint-written", "checkpoint-committed", "expiry-committed"];
    for step in steps {
        workload(&c, t, &mut rng, &mut next_id, 30, &mut seen).await;
        let head = c.wait_shipped(t).await;
        let before = answers(&c, t, &seen, head).await;
        let crashed = maintain(&data, t, &retention, Some(step));
        let status = crashed.expect_err("the run was to crash");
        assert!(status.contains(&format!("crashing at {step}")), "{step}: {status}");
        assert_eq!(answers(&c, t, &seen, head).await, before, "after a crash at {step}");
        assert_exactly_the_log(&c, &server, t).await;
    }
    // Enough changes for a checkpoint on top of the last one.
    workload(&c, t, &mut rng, &mut next_id, 120, &mut seen).await;
    let head = c.wait_shipped(t).await;
    let before = answers(&c, t, &seen, head).await;
    let reports = maintain(&data, t, &retention, None).unwrap();
    let acc = reports.iter().find(|r| r["table"] == "acc").unwrap();
    let table_dir = data.join("warehouse").join(t).join("acc");
    // Nothing left behind: every data file on disk is the table's.
    assert_eq!(files(&table_dir.join("data"), ".parquet").len() as u64, acc["stats"]["dataFiles"].as_u64().unwrap(), "{acc}");
    assert_eq!(acc["stats"]["snapshots"], 1, "{acc}");
    assert_eq!(answers(&c, t, &seen, head).await, before);
    let lake = assert_exactly_the_log(&c, &server, t).await;

    // The checkpoints: one per phase that took enough changes, the newest
    // read by PyIceberg equal to tidelake's state at its LSN.
    let checkpoints = &lake["tables"]["crashy.acc$checkpoint"];
    let snapshots = checkpoints["snapshots"].as_array().expect("a checkpoint table");
    assert!(snapshots.len() >= 2, "{} checkpoints", snapshots.len());
    let newest = snapshots.last().unwrap();
    let lsn = newest["summary"]["tidelake.checkpoint-lsn"].as_str().unwrap().parse::<u64>().unwrap();
    let mut from_pyiceberg: Vec<Value> = checkpoints["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({"id": r["id"], "owner": r["owner"], "balance": r["balance"]}))
        .collect();
    from_pyiceberg.sort_by_key(|r| r["id"].as_i64());
    let at_lsn = sql(&c, &format!("SELECT id, owner, balance FROM {t}.acc VERSION AS OF {lsn} ORDER BY id")).await;
    assert_eq!(from_pyiceberg, at_lsn, "the checkpoint at LSN {lsn}");
    assert_eq!(newest["summary"]["tidelake.checkpoint-rows"], json!(at_lsn.len().to_string()));
    // The current state starts from it.
    let plan = sql(&c, &format!("EXPLAIN SELECT * FROM {t}.acc")).await;
    assert!(json!(plan).to_string().contains(&format!("acc$checkpoint@{lsn}")), "{plan:?}");
    // Hostile arguments are refused, each with its reason, and touch nothing.
    let everything = || {
        let mut all = files(&data.join("warehouse"), "");
        all.sort();
        all
    };
    let untouched = everything();
    let data_dir = data.to_str().unwrap();
    for (tenant, extra, why) in [
        ("../crashy", None, "is not a tenant id"),
        ("crashy/../x", None, "is not a tenant id"),
        ("crashy", Some("--lake-checkpoint-changes=-5"), "is not a positive number of changes"),
        ("crashy", Some("--lake-checkpoint-changes=0"), "is not a positive number of changes"),
        ("crashy", Some("--lake-checkpoint-changes=99999999999999999999999"), "is not a positive number of changes"),
        ("crashy", Some("--lake-snapshot-retention=-1s"), "invalid duration"),
        ("crashy", Some("--lake-orphan-age=soon"), "invalid duration"),
    ] {
        let mut args = vec!["--data-dir", data_dir];
        args.extend(extra);
        let refused = maintain_with(tenant, &args, None).expect_err(tenant);
        assert!(refused.contains(why), "{tenant} {extra:?}: {refused}");
    }
    // A tenant id that names no lake: nothing to do.
    assert_eq!(maintain(&data, "nobody", &[], None).unwrap(), Vec::<Value>::new());
    assert_eq!(everything(), untouched, "a refused run changed the warehouse");

    // The shipper goes on after all of it.
    c.exec(t, "INSERT INTO acc (id, owner, balance) VALUES (999999, 'after', 1)").await;
    assert_exactly_the_log(&c, &server, t).await;
}
