//! The lake: every tenant's change log shipped into Iceberg tables behind our
//! REST catalog, read back by PyIceberg as an independent reader and compared
//! with what PostgreSQL holds and what the change log recorded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Client, LocalS3, Server, eventually, run_python};

/// Every change of the tenant's log, in LSN order.
async fn change_log(c: &Client, tenant: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut since = 0;
    loop {
        let (status, page) = c.get(&format!("/t/{tenant}/changes?since={since}&limit=10000")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let changes = page["changes"].as_array().cloned().unwrap_or_default();
        if changes.is_empty() {
            return all;
        }
        since = page["nextLsn"].as_u64().unwrap();
        all.extend(changes);
    }
}

/// PyIceberg's view of the lake (`tests/python/lake_read.py`).
/// The reader brings its own storage credentials (a bucket's, if the
/// warehouse is on the test S3 server).
pub(crate) async fn read_lake(server: &Server, args: &[&str]) -> Value {
    let env = LocalS3::reader_env();
    let url = format!("{}/catalog", server.base);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut all = vec![url.as_str()];
        all.extend(args.iter().map(String::as_str));
        tidelake_tests::run_python_with("lake_read.py", &all, &env)
    })
    .await
    .unwrap()
}

fn lsns(rows: &Value) -> Vec<u64> {
    rows.as_array().unwrap().iter().filter_map(|r| r["_lsn"].as_u64()).collect()
}

/// Rebuild a table's state from its changelog rows (in LSN order, up to
/// `upto`): latest change per key, deletes dropped, truncates clearing all.
pub(crate) fn state_from_changelog(rows: &Value, key: &str, upto: u64) -> BTreeMap<String, Value> {
    let mut state = BTreeMap::new();
    for row in rows.as_array().unwrap() {
        if row["_lsn"].as_u64().unwrap() > upto {
            break;
        }
        let mut values = row.as_object().unwrap().clone();
        values.retain(|k, _| !k.starts_with('_'));
        let id = row[key].to_string();
        match row["_op"].as_str().unwrap() {
            "insert" | "update" => {
                state.insert(id, Value::Object(values));
            }
            "delete" => {
                state.remove(&id);
            }
            "truncate" => state.clear(),
            op => panic!("unexpected op {op}"),
        }
    }
    state
}

const ITEMS_SELECT: &str = "SELECT id, name, price, flag, born, (extract(epoch FROM at) * 1000000)::bigint AS at, \
     doc, encode(data, 'hex') AS data FROM items ORDER BY id";

/// PostgreSQL's items by id.
async fn items_in_postgres(c: &Client, tenant: &str) -> BTreeMap<String, Value> {
    c.rows(tenant, ITEMS_SELECT, json!([]))
        .await
        .into_iter()
        .map(|row| (row["id"].to_string(), row))
        .collect()
}

#[tokio::test]
async fn pyiceberg_reads_every_tenant_as_postgres_had_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-flush-interval", "200ms"]).await;
    let c = server.client();
    let tenants = ["shop-a", "shop-b"];
    for t in tenants {
        c.exec(
            t,
            "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), flag boolean, \
             born date, at timestamptz, doc jsonb, data bytea); \
             CREATE TABLE notes (id serial PRIMARY KEY, body text)",
        )
        .await;
        c.exec(
            t,
            "INSERT INTO items SELECT g, 'item ' || g, g * 1.25, g % 2 = 0, date '2000-01-01' + g, \
             timestamptz '2026-03-04 05:06:07.891234+00' + g * interval '1 hour', \
             jsonb_build_object('n', g, 'tags', jsonb_build_array('a', g)), decode(lpad(to_hex(g), 4, '0'), 'hex') \
             FROM generate_series(1, 50) g; \
             INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 5) g",
        )
        .await;
    }
    let mut first = BTreeMap::new();
    for t in tenants {
        let head = c.wait_shipped(t).await;
        first.insert(t, (head, items_in_postgres(&c, t).await));
    }

    // More history: updates, deletes, a NULL, a truncate, in several transactions.
    for t in tenants {
        c.exec(t, "UPDATE items SET price = price + 0.01, name = NULL WHERE id % 5 = 0").await;
        c.exec(t, "DELETE FROM items WHERE id > 45").await;
        c.exec(t, "INSERT INTO items (id, name, doc) VALUES (100, 'late', '[1, {\"x\": null}]')").await;
        c.exec(t, "TRUNCATE notes").await;
        c.exec(t, "INSERT INTO notes (body) VALUES ('after truncate')").await;
    }
    c.exec("shop-b", "UPDATE items SET flag = NULL WHERE id = 1").await;

    let mut heads = BTreeMap::new();
    for t in tenants {
        heads.insert(t, c.wait_shipped(t).await);
    }
    let lake = read_lake(&server, &[]).await;
    assert_eq!(lake["namespaces"], json!(["shop-a", "shop-b"]));

    for t in tenants {
        let log = change_log(&c, t).await;
        assert_eq!(log.len() as u64, heads[t]);
        let items = &lake["tables"][format!("{t}.items")];
        let notes = &lake["tables"][format!("{t}.notes")];
        assert_eq!(items["partition"], json!(["day"]));
        assert_eq!(items["properties"]["tidelake.primary-key"], "id");

        // Exactly the change log, each change once, in the table it belongs to.
        for (table, rows) in [("items", &items["rows"]), ("notes", &notes["rows"])] {
            let expected: Vec<u64> = log
                .iter()
                .filter(|ch| ch["table"] == table)
                .map(|ch| ch["lsn"].as_u64().unwrap())
                .collect();
            assert_eq!(lsns(rows), expected, "{t}.{table}");
        }
        // Every change's op and commit time as the log recorded them.
        let by_lsn: BTreeMap<u64, &Value> =
            items["rows"].as_array().unwrap().iter().map(|r| (r["_lsn"].as_u64().unwrap(), r)).collect();
        for ch in log.iter().filter(|ch| ch["table"] == "items") {
            let row = by_lsn[&ch["lsn"].as_u64().unwrap()];
            assert_eq!(row["_op"], ch["op"]);
            assert_eq!(row["_xid"], ch["xid"]);
        }

        // The current snapshot, replayed, is PostgreSQL's table now.
        let now = items_in_postgres(&c, t).await;
        let lake_now = state_from_changelog(&items["rows"], "id", u64::MAX);
        let lake_now: BTreeMap<String, Value> = lake_now
            .into_iter()
            .map(|(k, mut v)| {
                // The lake keeps jsonb as its JSON text.
                v["doc"] = v["doc"].as_str().map_or(Value::Null, |s| serde_json::from_str(s).unwrap());
                (k, v)
            })
            .collect();
        assert_eq!(lake_now, now, "{t}: lake state differs from PostgreSQL");
        assert_eq!(now.len(), 46);
        let notes_now = state_from_changelog(&notes["rows"], "id", u64::MAX);
        assert_eq!(notes_now.values().map(|v| v["body"].clone()).collect::<Vec<_>>(), vec![json!("after truncate")]);

        // An older snapshot holds exactly the changes up to the first batch,
        // and replays to the table as it was then.
        let (first_head, first_state) = &first[t];
        let older = items["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["summary"]["tidelake.lsn-to"] == json!(first_head.to_string()))
            .unwrap_or_else(|| panic!("{t}: no snapshot ends at LSN {first_head}: {}", items["snapshots"]));
        let upto_first: Vec<u64> = lsns(&items["rows"]).into_iter().filter(|l| l <= first_head).collect();
        assert_eq!(older["lsns"], json!(upto_first));
        let then = state_from_changelog(&items["rows"], "id", *first_head);
        assert_eq!(then.len(), first_state.len());
        for (k, v) in then {
            assert_eq!(v["price"], first_state[&k]["price"], "{t} item {k} at the older snapshot");
            assert_eq!(v["name"], first_state[&k]["name"]);
            assert_eq!(v["at"], first_state[&k]["at"]);
        }
        for s in items["snapshots"].as_array().unwrap() {
            assert_eq!(s["summary"]["tidelake.tenant"], t);
        }

        // Shipped changes are acknowledged, and the lag is visible.
        let (_, health) = c.get(&format!("/t/{t}/health")).await;
        assert_eq!(health["tenant"]["changeLog"]["ackedLsn"], heads[t]);
        assert_eq!(health["tenant"]["lake"]["lagSeconds"], 0.0);
    }
    let metrics = c.http.get(c.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tidelake_lake_lag_lsn{tenant=\"shop-a\"} 0"), "{metrics}");
    let shipped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tidelake_lake_changes_shipped_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_eq!(shipped, heads.values().sum::<u64>());
}

/// Each tenant's lake, as LSN lists per table, must equal its change log.
pub(crate) async fn assert_exactly_the_log(c: &Client, server: &Server, tenant: &str) -> Value {
    let head = c.wait_shipped(tenant).await;
    let log = change_log(c, tenant).await;
    assert_eq!(log.iter().map(|ch| ch["lsn"].as_u64().unwrap()).collect::<Vec<_>>(), (1..=head).collect::<Vec<_>>());
    let lake = read_lake(server, &[tenant]).await;
    let mut all: Vec<u64> = Vec::new();
    for (name, table) in lake["tables"].as_object().unwrap() {
        // State checkpoints hold rows of the changelog, not changes.
        if name.ends_with("$checkpoint") {
            continue;
        }
        let source = name.rsplit('.').next().unwrap();
        let mine: Vec<u64> = table["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["_op"] != "external")
            .map(|r| r["_lsn"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = log
            .iter()
            .filter(|ch| ch["table"] == source)
            .map(|ch| ch["lsn"].as_u64().unwrap())
            .collect();
        assert_eq!(mine, expected, "{name}: the lake differs from the change log");
        all.extend(mine);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=head).collect::<Vec<_>>(), "{tenant}: changes lost or written twice");
    lake
}

#[tokio::test]
async fn restarts_and_kill_9_ship_every_change_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        &dir.path().join("data"),
        &["--lake-flush-interval", "50ms", "--lake-batch-size", "40"],
    )
    .await;
    let tenant = "ledger";
    server
        .client()
        .exec(tenant, "CREATE TABLE entries (id bigserial PRIMARY KEY, amount int, memo text); \
                       CREATE TABLE audit (id bigserial PRIMARY KEY, what text)")
        .await;
    let mut n = 0;
    // Three kill -9 while writes commit and shipping runs, then a clean restart.
    for round in 0..4 {
        let c = server.client();
        for _ in 0..60 {
            n += 1;
            let (status, body) = c
                .post(
                    &format!("/t/{tenant}/transaction"),
                    &json!({"statements": [
                        {"sql": "INSERT INTO entries (amount, memo) SELECT $1, 'x' FROM generate_series(1, 3)", "params": [n]},
                        {"sql": "UPDATE entries SET memo = 'y' WHERE id = (SELECT max(id) FROM entries)"},
                        {"sql": "INSERT INTO audit (what) VALUES ($1)", "params": [format!("txn {n}")]},
                    ]}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        if round < 3 {
            server.kill9();
        } else {
            server.stop();
        }
        server.restart().await;
    }
    let c = server.client();
    assert_eq!(c.rows(tenant, "SELECT count(*) AS n FROM audit", json!([])).await[0]["n"], 240);
    let lake = assert_exactly_the_log(&c, &server, tenant).await;
    // Commits are batched (at most 40 changes each), not one per transaction.
    let snapshots = lake["tables"]["ledger.entries"]["snapshots"].as_array().unwrap().len();
    assert!(snapshots < 240, "{snapshots} snapshots for 240 transactions");
    for s in lake["tables"]["ledger.entries"]["snapshots"].as_array().unwrap() {
        let from: u64 = s["summary"]["tidelake.lsn-from"].as_str().unwrap().parse().unwrap();
        let to: u64 = s["summary"]["tidelake.lsn-to"].as_str().unwrap().parse().unwrap();
        assert!(from <= to && to - from < 40 + 40, "{s}");
    }
}

#[tokio::test]
async fn schema_changes_evolve_the_iceberg_schema_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-flush-interval", "100ms"]).await;
    let c = server.client();
    let t = "evolve";
    c.exec(t, "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(8,2), at timestamptz DEFAULT now())").await;
    c.exec(t, "INSERT INTO items (id, name, price) VALUES (1, 'a', 1.50), (2, 'b', 2.50)").await;
    c.wait_shipped(t).await;
    // Several versions inside one shipping batch.
    for sql in [
        "ALTER TABLE items ADD COLUMN qty int",
        "INSERT INTO items (id, name, qty) VALUES (3, 'c', 5)",
        "ALTER TABLE items RENAME COLUMN name TO title",
        "ALTER TABLE items ALTER COLUMN qty TYPE bigint",
        "UPDATE items SET title = 'cc', qty = 7000000000 WHERE id = 3",
        "ALTER TABLE items ALTER COLUMN price TYPE text",
        "ALTER TABLE items DROP COLUMN at",
        "INSERT INTO items (id, title, qty, price) VALUES (4, 'd', 9, 'cheap')",
    ] {
        c.exec(t, sql).await;
    }
    let before_recreate = c.wait_shipped(t).await;
    c.exec(t, "DROP TABLE items; CREATE TABLE items (sku text PRIMARY KEY, id int)").await;
    c.exec(t, "INSERT INTO items VALUES ('s1', 1)").await;
    assert_exactly_the_log(&c, &server, t).await;
    let lake = read_lake(&server, &["--snapshot-rows", t]).await;
    let items = &lake["tables"]["evolve.items"];

    let schemas = items["schemas"].as_object().unwrap();
    let field = |schema: &Value, name: &str| -> Value {
        schema.as_array().unwrap().iter().find(|f| f["name"] == name).cloned().unwrap_or(Value::Null)
    };
    let original = &schemas["0"];
    let snapshot = items["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["summary"]["tidelake.lsn-to"] == json!(before_recreate.to_string()))
        .unwrap();
    let evolved = &schemas[&snapshot["schema_id"].to_string()];
    // A rename keeps the field id; a widening keeps it with the wider type;
    // an incompatible type change is a new field, the old one kept as
    // `<name>$<id>`, as is a dropped column's.
    let kept = |name: &str, original_name: &str| format!("{name}${}", field(original, original_name)["id"]);
    assert_eq!(field(evolved, "id")["id"], field(original, "id")["id"]);
    assert_eq!(field(evolved, "title")["id"], field(original, "name")["id"]);
    assert_eq!(field(evolved, "qty")["type"], "long");
    assert_eq!(field(evolved, "price")["type"], "string");
    assert_ne!(field(evolved, "price")["id"], field(original, "price")["id"]);
    assert_eq!(field(evolved, &kept("price", "price"))["type"], field(original, "price")["type"]);
    assert!(field(evolved, "at").is_null() && field(evolved, "name").is_null());
    assert_eq!(field(evolved, &kept("at", "at"))["id"], field(original, "at")["id"]);
    // The type changes rewrote the rows: each logged a truncate and every row
    // (LSNs 4–7 for qty, 9–12 for price), as PostgreSQL holds them after it.
    let rows = &snapshot["rows"];
    let row = |lsn: u64| rows.as_array().unwrap().iter().find(|r| r["_lsn"] == lsn).unwrap().clone();
    assert_eq!((row(4)["_op"].clone(), row(9)["_op"].clone()), (json!("truncate"), json!("truncate")));
    // Rows written before the rename read under the new name, old data untouched.
    assert_eq!(row(1)["title"], "a", "{snapshot}");
    assert_eq!(row(8)["title"], "cc");
    assert_eq!(row(8)["qty"], 7_000_000_000u64);
    assert_eq!(row(13)["price"], "cheap");
    assert_eq!(row(13)["qty"], 9);
    // The older rows' decimal price is in the kept field; the rewrite logged
    // it again as text.
    assert!(row(1)["price"].is_null());
    assert_eq!(row(1)[&kept("price", "price")], "1.50");
    assert_eq!(row(10)["price"], "1.50");
    let first = &items["snapshots"][0]["rows"];
    assert_eq!(first[0]["price"], "1.50");
    assert_eq!(first[0]["name"], "a");

    // A table dropped and created again is a new relation: a column of the
    // same name and type continues its field, the others are new; the old
    // relation's other fields stay, kept.
    let current = &items["schema"];
    let names: Vec<&str> = current.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names[..2], ["sku", "id"]);
    assert_eq!(names[names.len() - 4..], ["_op", "_lsn", "_xid", "_commit_ts"]);
    for name in [kept("title", "name"), kept("price", "price"), kept("at", "at")] {
        assert!(names.contains(&name.as_str()), "{name} in {names:?}");
    }
    assert_eq!(field(current, "id")["id"], field(original, "id")["id"]);
    let sku = field(current, "sku")["id"].clone();
    assert!(schemas.values().flat_map(|s| s.as_array().unwrap()).all(|f| f["name"] == "sku" || f["id"] != sku));
    let relations = items["properties"]["tidelake.relations"].as_str().unwrap();
    assert_eq!(relations.split(',').count(), 2, "{relations}");
    let last = items["rows"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["sku"].clone(), last["id"].clone()), (json!("s1"), json!(1)));
}

#[tokio::test]
async fn many_tenants_ship_at_once_in_few_commits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    let tenants: Vec<String> = (0..24).map(|i| format!("t{i:02}")).collect();
    let mut writers = tokio::task::JoinSet::new();
    for t in tenants.clone() {
        let c = c.clone();
        writers.spawn(async move {
            c.exec(&t, "CREATE TABLE events (id serial PRIMARY KEY, kind text)").await;
            for i in 0..8 {
                c.exec(&t, &format!("INSERT INTO events (kind) VALUES ('k{i}'), ('k{i}')")).await;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    for t in &tenants {
        assert_eq!(c.wait_shipped(t).await, 16);
    }
    let lake = read_lake(&server, &[]).await;
    assert_eq!(lake["namespaces"].as_array().unwrap().len(), 24);
    let mut snapshots = 0;
    for t in &tenants {
        let events = &lake["tables"][format!("{t}.events")];
        assert_eq!(lsns(&events["rows"]), (1..=16).collect::<Vec<u64>>(), "{t}");
        snapshots += events["snapshots"].as_array().unwrap().len();
    }
    // 8 transactions per tenant within about a flush interval: batched.
    assert!(snapshots < 24 * 8, "{snapshots} commits for {} transactions", 24 * 8);
}

#[tokio::test]
async fn the_lake_ships_to_s3() {
    let s3 = LocalS3::start("lake").await;
    let dir = tempfile::tempdir().unwrap();
    let config = s3.config_file(dir.path(), "lake", "[lake]\npartition = \"hour\"\nmin_compact_files = 2\n");
    let server = Server::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]).await;
    let c = server.client();
    c.exec("acme", "CREATE TABLE orders (id int PRIMARY KEY, total numeric(12,2))").await;
    c.exec("acme", "INSERT INTO orders SELECT g, g * 10.5 FROM generate_series(1, 300) g").await;
    c.exec("acme", "DELETE FROM orders WHERE id <= 100").await;
    assert_exactly_the_log(&c, &server, "acme").await;
    let lake = read_lake(&server, &["acme"]).await;
    let orders = &lake["tables"]["acme.orders"];
    assert_eq!(orders["partition"], json!(["hour"]));
    let state = state_from_changelog(&orders["rows"], "id", u64::MAX);
    assert_eq!(state.len(), 200);
    assert_eq!(state["101"]["total"], "1060.50");
    let keys = s3.keys("lake").await;
    let data: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("warehouse/acme/orders/data/_commit_ts_hour=") && k.ends_with(".parquet"))
        .collect();
    assert!(!data.is_empty(), "no data files in the bucket: {keys:?}");
    assert!(!dir.path().join("data/warehouse/acme").exists());

    // Maintenance on the bucket: a compaction that crashed after writing
    // its files leaves orphans; the next run compacts, checkpoints, expires
    // and lists the bucket to remove them.
    for i in 0..10 {
        c.exec("acme", &format!("UPDATE orders SET total = total + 1 WHERE id = {}", 101 + i)).await;
        c.wait_shipped("acme").await;
    }
    let data_dir = dir.path().join("data");
    let args = [
        "--config", config.to_str().unwrap(), "--data-dir", data_dir.to_str().unwrap(),
        "--lake-snapshot-retention", "0s", "--lake-orphan-age", "0s", "--lake-checkpoint-changes", "10",
    ];
    let crashed = crate::maintenance::maintain_with("acme", &args, Some("compaction-written"));
    assert!(crashed.is_err(), "the run was to crash");
    let reports = crate::maintenance::maintain_with("acme", &args, None).unwrap();
    let report = reports.iter().find(|r| r["table"] == "orders").unwrap();
    assert!(report["removedOrphans"].as_u64().unwrap() > 0, "{report}");
    assert!(report["checkpoint"]["lsn"].as_u64().is_some(), "{report}");
    let keys = s3.keys("lake").await;
    let data = keys
        .iter()
        .filter(|k| k.starts_with("warehouse/acme/orders/data/") && k.ends_with(".parquet"))
        .count() as u64;
    assert_eq!(data, report["stats"]["dataFiles"].as_u64().unwrap(), "{report} {keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("warehouse/acme/orders$checkpoint/data/")), "{keys:?}");
    let lake = assert_exactly_the_log(&c, &server, "acme").await;
    let state = state_from_changelog(&lake["tables"]["acme.orders"]["rows"], "id", u64::MAX);
    assert_eq!(state.len(), 200);
    assert_eq!(state["101"]["total"], "1061.50");
}

#[tokio::test]
async fn another_writer_committing_alongside_the_shipper_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-flush-interval", "50ms"]).await;
    let c = server.client();
    let t = "busy";
    c.exec(t, "CREATE TABLE ticks (id serial PRIMARY KEY, at timestamptz DEFAULT now())").await;
    c.exec(t, "INSERT INTO ticks DEFAULT VALUES").await;
    c.wait_shipped(t).await;

    let url = format!("{}/catalog", server.base);
    let foreign = |seconds: &'static str| {
        let url = url.clone();
        async move {
            let seen = tokio::task::spawn_blocking(move || {
                run_python("lake_foreign_appends.py", &[&url, "busy.ticks", seconds])
            })
            .await
            .unwrap();
            seen["appended"].as_u64().unwrap()
        }
    };
    let mut external = 0;

    // While the tenant is quiet the other writer commits unopposed; the
    // shipper's next commit starts from a table it read before: it goes on
    // from the other writer's snapshot, keeping its rows.
    for _ in 0..2 {
        let appended = foreign("0.3").await;
        assert!(appended > 0, "the other writer appended nothing while the shipper was idle");
        external += appended;
        c.exec(t, "INSERT INTO ticks DEFAULT VALUES").await;
        c.wait_shipped(t).await;
    }

    // Then both write at once: whoever loses a race between reading the
    // table and committing retries (iceberg-rust re-reads the table before
    // each commit, so the window is narrow and a busy machine may never hit
    // it: the lake maintenance tests meet conflicts deterministically), and
    // nothing is lost. The writer stops between statements: aborting it could drop a request the
    // server still commits after the head was read.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let c = c.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                c.exec(t, "INSERT INTO ticks DEFAULT VALUES").await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    external += foreign("3").await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let lake = assert_exactly_the_log(&c, &server, t).await;
    let foreign = lake["tables"]["busy.ticks"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["_op"] == "external")
        .count() as u64;
    assert_eq!(foreign, external, "the other writer's rows are all kept");
}

/// The lake reading a tenant's changes, schema and acknowledging them is
/// not a use of the tenant: its last access stays its client's, so shipping
/// changes neither when it hibernates nor which tenant is evicted first.
#[tokio::test]
async fn shipping_is_not_a_use_of_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-flush-interval", "300ms"]).await;
    let c = server.client();
    let health = async |c: &Client| c.get("/t/quiet/health").await.1["tenant"].clone();
    c.exec("quiet", "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'one'), (2, 'two')").await;
    let used = health(&c).await["lastAccessMs"].as_u64().unwrap();
    let shipped = eventually(Duration::from_secs(30), || async {
        let h = health(&c).await;
        h["lake"]["shippedLsn"].as_u64() == Some(2) && h["changeLog"]["ackedLsn"].as_u64() == Some(2)
    })
    .await;
    let after = health(&c).await;
    assert!(shipped, "{after}");
    assert_eq!(after["engine"], "loaded", "{after}");
    assert_eq!(after["lastAccessMs"].as_u64(), Some(used), "{after}");
}

#[tokio::test]
async fn shipping_does_not_wake_hibernated_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        &dir.path().join("data"),
        &["--tenants-hibernate-after", "150ms", "--lake-flush-interval", "1500ms"],
    )
    .await;
    let c = server.client();
    let t = "sleeper";
    c.exec(t, "CREATE TABLE notes (id int PRIMARY KEY, body text)").await;
    // A commit right after a shipping round waits for the next one, by
    // which time the tenant has hibernated.
    c.exec(t, "INSERT INTO notes VALUES (1, 'first')").await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            let (_, health) = c.get(&format!("/t/{t}/health")).await;
            health["tenant"]["lake"]["shippedLsn"] == 1
        })
        .await
    );
    c.exec(t, "INSERT INTO notes VALUES (2, 'second'), (3, 'third')").await;
    assert!(eventually(Duration::from_secs(30), || async { c.engine_state(t).await == "hibernated" }).await);
    let wakes = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("tidelake_tenant_wakes_total "))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let metrics = c.http.get(c.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let woken = wakes(&metrics);
    let shipped = eventually(Duration::from_secs(30), || async {
        let (_, health) = c.get(&format!("/t/{t}/health")).await;
        health["tenant"]["lake"]["shippedLsn"] == 3
    })
    .await;
    assert!(shipped, "the lake never caught up");
    assert_eq!(c.engine_state(t).await, "hibernated");
    let metrics = c.http.get(c.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(wakes(&metrics), woken, "the shipper woke the tenant");

    // Waking it applies the acknowledgement deferred while it slept. (A read
    // of its changes may be served from what it kept in memory: a query wakes it.)
    let (_, page) = c.get(&format!("/t/{t}/changes?since=0&limit=1")).await;
    assert_eq!(page["headLsn"], 3);
    assert_eq!(c.rows(t, "SELECT count(*) AS n FROM notes", json!([])).await, vec![json!({"n": 3})]);
    let (_, health) = c.get(&format!("/t/{t}/health")).await;
    assert_eq!(health["tenant"]["changeLog"]["ackedLsn"], 3);

    // After a clean restart, a tenant the lake has caught up with stays asleep.
    assert!(eventually(Duration::from_secs(30), || async { c.engine_state(t).await == "hibernated" }).await);
    server.stop();
    server.restart().await;
    let c = server.client();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.engine_state(t).await, "hibernated");
    let lake = read_lake(&server, &[t]).await;
    assert_eq!(lsns(&lake["tables"]["sleeper.notes"]["rows"]), vec![1, 2, 3]);
}

/// Every file under `dir`, relative, with its size and modification time.
fn files_under(dir: &std::path::Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else { continue };
        for entry in entries.flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                let name = entry.path().strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, (meta.len(), meta.modified().unwrap()));
            }
        }
    }
    files
}

/// A tenant's table names are not paths: tables named to climb out of the
/// warehouse or into another tenant's directory, and two tables the old
/// `<schema>__<table>` rule gave one name, each get a lake table of their
/// own, inside their tenant's directory; and the catalog refuses any
/// location outside the warehouse (docs/lake.md, "Names").
#[tokio::test]
async fn hostile_table_names_stay_in_their_own_lake_tables() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--lake-flush-interval", "200ms"]).await;
    let c = server.client();
    // At most 8 hex digits: the escaped name stays within 103 characters (not base32).
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let unique = format!("{:x}", nanos ^ std::process::id());
    let escape = format!("../../../../../../../../tmp/tl-esc-{unique}");
    let escaped_to = std::path::PathBuf::from(format!("/tmp/tl-esc-{unique}"));

    // The tenant the second name aims at, shipped before anything else happens.
    c.exec("othertenant", "CREATE TABLE todos (id int PRIMARY KEY, v text); INSERT INTO todos VALUES (1, 'mine')").await;
    c.wait_shipped("othertenant").await;
    let other_dir = data.join("warehouse/othertenant");
    let other_before = files_under(&other_dir);
    assert!(!other_before.is_empty());

    let quoted = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    c.exec(
        "acme",
        &format!(
            "CREATE TABLE {} (id int PRIMARY KEY, v text); \
             CREATE TABLE \"../othertenant/todos\" (id int PRIMARY KEY, v text); \
             CREATE TABLE public.\"a__b\" (id int PRIMARY KEY, v text); \
             CREATE SCHEMA a; CREATE TABLE a.b (id int PRIMARY KEY, v text)",
            quoted(&escape)
        ),
    )
    .await;
    c.exec(
        "acme",
        &format!(
            "INSERT INTO {} VALUES (1, 'escape'), (2, 'escape'); \
             INSERT INTO \"../othertenant/todos\" VALUES (10, 'traversal'); \
             INSERT INTO public.\"a__b\" VALUES (20, 'public a__b'), (21, 'public a__b'), (22, 'public a__b'); \
             INSERT INTO a.b VALUES (30, 'a.b')",
            quoted(&escape)
        ),
    )
    .await;
    c.wait_shipped("acme").await;
    let (_, health) = c.get("/t/acme/health").await;
    assert_eq!(health["tenant"]["lake"]["error"], Value::Null, "{health}");

    // Nothing outside the data dir, nothing in the other tenant's directory.
    assert!(!escaped_to.exists(), "{} was written", escaped_to.display());
    let mut beside: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    beside.sort();
    assert_eq!(beside, ["data", "data.log"]);
    assert_eq!(files_under(&other_dir), other_before, "the other tenant's directory changed");
    let mut tenants: Vec<String> = std::fs::read_dir(data.join("warehouse"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    tenants.sort();
    assert_eq!(tenants, ["acme", "othertenant"]);

    // One lake table per source table, each named safely, each inside acme's directory.
    let escape_lake = format!("-2e-2e-2f-2e-2e-2f-2e-2e-2f-2e-2e-2f-2e-2e-2f-2e-2e-2f-2e-2e-2f-2e-2e-2ftmp-2ftl-2desc-2d{unique}");
    let (status, listed) = c.get("/catalog/v1/namespaces/acme/tables").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let mut names: Vec<String> =
        listed["identifiers"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    let mut expected = vec![escape_lake.clone(), "-2e-2e-2fothertenant-2ftodos".into(), "a-5f_b".into(), "a__b".into()];
    expected.sort();
    assert_eq!(names, expected);
    let acme_dir = format!("file://{}/", std::path::absolute(data.join("warehouse/acme")).unwrap().display());
    for name in &names {
        assert!(!name.contains('/') && !name.contains('\\') && !name.contains(".."), "{name}");
        let (status, table) = c.get(&format!("/catalog/v1/namespaces/acme/tables/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{table}");
        let location = table["metadata"]["location"].as_str().unwrap();
        assert!(location.starts_with(&acme_dir), "{name} is at {location}");
        assert!(table["metadata-location"].as_str().unwrap().starts_with(&acme_dir), "{table}");
    }

    // Each holds exactly its own rows, read back by the names the tenant
    // used (or the lake name), through the query service.
    let rows = async |sql: String| -> Vec<Value> {
        let (status, body) = c.post("/sql", &json!({ "sql": sql })).await;
        assert_eq!(status, StatusCode::OK, "{sql}: {body}");
        body["rows"].as_array().unwrap().clone()
    };
    let ids = |rows: &[Value], v: &str| -> Vec<i64> {
        assert!(rows.iter().all(|r| r["v"] == v), "{rows:?}");
        rows.iter().map(|r| r["id"].as_i64().unwrap()).collect()
    };
    let read = |table: &str| format!("SELECT id, v FROM acme.{} ORDER BY id", quoted(table));
    assert_eq!(ids(&rows(read(&escape)).await, "escape"), [1, 2]);
    assert_eq!(ids(&rows(read(&escape_lake)).await, "escape"), [1, 2]);
    assert_eq!(ids(&rows(read("../othertenant/todos")).await, "traversal"), [10]);
    assert_eq!(ids(&rows(read("a-5f_b")).await, "public a__b"), [20, 21, 22]);
    assert_eq!(ids(&rows(read("a__b")).await, "a.b"), [30]);
    let changes = rows(format!("SELECT count(*) AS n FROM acme.{}", quoted("a-5f_b$changes"))).await;
    assert_eq!(changes[0]["n"], 3);
    // The other tenant's todos is its own still.
    assert_eq!(ids(&rows("SELECT id, v FROM othertenant.todos".into()).await, "mine"), [1]);
    // PyIceberg, as an independent reader, sees the same.
    let lake = read_lake(&server, &["acme"]).await;
    for (name, count) in [(escape_lake.as_str(), 2), ("-2e-2e-2fothertenant-2ftodos", 1), ("a-5f_b", 3), ("a__b", 1)] {
        let table = &lake["tables"][format!("acme.{name}")];
        assert_eq!(table["rows"].as_array().map(Vec::len), Some(count), "{name}: {table}");
    }
    assert_eq!(lake["tables"]["acme.a__b"]["properties"]["tidelake.source-schema"], "a");
    assert_eq!(lake["tables"]["acme.a-5f_b"]["properties"]["tidelake.source-table"], "a__b");

    // The catalog refuses locations outside the warehouse, and creates nothing.
    let outside = format!("file:///tmp/tl-evil-{unique}");
    let climbing = format!("{}../../../tmp/tl-evil-{unique}", acme_dir);
    let schema = json!({"type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "id", "type": "long", "required": true}]});
    // A location outside the warehouse is a bad request; moving one once
    // set is refused outright (docs/auth.md).
    let refused = |status: StatusCode, body: &Value| {
        let kind = if status == StatusCode::FORBIDDEN { "ForbiddenException" } else { "BadRequestException" };
        assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["type"], kind, "{body}");
        assert_eq!(body["error"]["code"], status.as_u16(), "{body}");
    };
    let (status, body) =
        c.post("/catalog/v1/namespaces", &json!({"namespace": ["evil"], "properties": {"location": outside}})).await;
    refused(status, &body);
    assert_eq!(c.get("/catalog/v1/namespaces/evil").await.0, StatusCode::NOT_FOUND);
    for location in [&outside, &climbing, &"s3://elsewhere/lake".to_owned()] {
        let (status, body) = c
            .post("/catalog/v1/namespaces/acme/tables", &json!({"name": "evil", "location": location, "schema": schema}))
            .await;
        refused(status, &body);
    }
    let (status, body) = c.post("/catalog/v1/namespaces/acme/tables", &json!({"name": "../../evil", "schema": schema})).await;
    refused(status, &body);
    let (status, body) = c
        .post(
            "/catalog/v1/namespaces/acme/tables",
            &json!({"name": "evil", "schema": schema, "properties": {"write.data.path": outside}}),
        )
        .await;
    refused(status, &body);
    assert_eq!(c.get("/catalog/v1/namespaces/acme/tables/evil").await.0, StatusCode::NOT_FOUND);
    let (status, body) = c.post("/catalog/v1/namespaces/acme/properties", &json!({"updates": {"location": outside}})).await;
    refused(status, &body);
    // A commit moving a table, or its data, out is refused and changes nothing.
    let (status, created) = c.post("/catalog/v1/namespaces/acme/tables", &json!({"name": "scratch", "schema": schema})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    for update in [
        json!({"action": "set-location", "location": outside}),
        json!({"action": "set-properties", "updates": {"write.data.path": climbing}}),
    ] {
        let (status, body) = c.post("/catalog/v1/namespaces/acme/tables/scratch", &json!({"updates": [update]})).await;
        refused(status, &body);
    }
    let (_, scratch) = c.get("/catalog/v1/namespaces/acme/tables/scratch").await;
    assert_eq!(scratch["metadata"]["location"], created["metadata"]["location"]);
    assert_eq!(scratch["metadata-location"], created["metadata-location"]);
    assert!(!std::path::Path::new(&format!("/tmp/tl-evil-{unique}")).exists());
    assert_eq!(files_under(&other_dir), other_before, "the other tenant's directory changed");
}
