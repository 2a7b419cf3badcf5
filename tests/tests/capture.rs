//! Change capture: the per-tenant change log, the change feed, WebSocket
//! subscriptions and trimming.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Client, Server, Ws, eventually};

/// Every change of a tenant from the start of its log.
pub(crate) async fn all_changes(c: &Client, tenant: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut since = 0;
    loop {
        let (status, page) = c
            .get(&format!("/t/{tenant}/changes?since={since}&limit=700"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let changes = page["changes"].as_array().unwrap().clone();
        if changes.is_empty() {
            return out;
        }
        since = page["nextLsn"].as_u64().unwrap();
        out.extend(changes);
    }
}

pub(crate) fn lsns(changes: &[Value]) -> Vec<u64> {
    changes.iter().map(|c| c["lsn"].as_u64().unwrap()).collect()
}

/// Replay changes into per-table maps keyed by the row's `id`.
pub(crate) fn replay(changes: &[Value]) -> BTreeMap<String, BTreeMap<i64, Value>> {
    let mut tables: BTreeMap<String, BTreeMap<i64, Value>> = BTreeMap::new();
    for c in changes {
        let table = tables.entry(c["table"].as_str().unwrap().to_owned()).or_default();
        match c["op"].as_str().unwrap() {
            "insert" | "update" => {
                if c["op"] == "update" {
                    table.remove(&c["old"]["id"].as_i64().unwrap());
                }
                table.insert(c["new"]["id"].as_i64().unwrap(), c["new"].clone());
            }
            "delete" => {
                table.remove(&c["old"]["id"].as_i64().unwrap());
            }
            "truncate" => table.clear(),
            other => panic!("unknown op {other}"),
        }
    }
    tables
}

#[tokio::test]
async fn mixed_workload_is_logged_gap_free_in_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    for t in ["a", "b", "c"] {
        c.exec("mix", &format!("CREATE TABLE {t} (id int PRIMARY KEY, v int NOT NULL)")).await;
    }
    // Six clients at once: single statements, batches and transactions over
    // three tables, with updates, deletes and a failing transaction each.
    let mut tasks = Vec::new();
    for client in 0..6i64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15i64 {
                let id = client * 1000 + i;
                let t = ["a", "b", "c"][(i % 3) as usize];
                c.query("mix", &format!("INSERT INTO {t} VALUES ($1, $2)"), json!([id, i])).await;
                let (status, body) = c
                    .post(
                        "/t/mix/transaction",
                        &json!({"statements": [
                            {"sql": format!("UPDATE {t} SET v = v + 100 WHERE id = $1"), "params": [id]},
                            {"sql": "INSERT INTO a VALUES ($1, 0)", "params": [id + 500]},
                            {"sql": "DELETE FROM a WHERE id = $1", "params": [id + 500]},
                        ]}),
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                // Rolled back: the duplicate key fails the second statement.
                let (status, _) = c
                    .post(
                        "/t/mix/transaction",
                        &json!({"statements": [
                            {"sql": "INSERT INTO b VALUES ($1, 1)", "params": [id + 700]},
                            {"sql": "INSERT INTO b VALUES ($1, 1)", "params": [id + 700]},
                        ]}),
                    )
                    .await;
                assert_eq!(status, StatusCode::CONFLICT);
                if i % 4 == 0 {
                    c.query("mix", &format!("DELETE FROM {t} WHERE id = $1"), json!([id])).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let changes = all_changes(&c, "mix").await;
    // Gap-free from 1, in order.
    let expected: Vec<u64> = (1..=changes.len() as u64).collect();
    assert_eq!(lsns(&changes), expected);
    // A transaction's changes are contiguous and share a commit time.
    let mut seen_xids = Vec::new();
    for w in changes.windows(2) {
        if w[0]["xid"] != w[1]["xid"] {
            assert!(!seen_xids.contains(&w[1]["xid"]), "transaction {} interleaved", w[1]["xid"]);
            seen_xids.push(w[0]["xid"].clone());
        } else {
            assert_eq!(w[0]["commitTs"], w[1]["commitTs"]);
        }
        assert!(w[0]["commitTs"].as_str() <= w[1]["commitTs"].as_str());
    }
    // Nothing from the failed transactions.
    assert!(!changes.iter().any(|ch| ch["new"]["id"].as_i64().is_some_and(|id| id % 1000 >= 700)));
    // Replaying the log gives exactly the tables as they are.
    let replayed = replay(&changes);
    for t in ["a", "b", "c"] {
        let rows = c.rows("mix", &format!("SELECT id, v FROM {t} ORDER BY id"), json!([])).await;
        let from_log: Vec<Value> = replayed.get(t).map(|m| m.values().cloned().collect()).unwrap_or_default();
        assert_eq!(rows, from_log, "table {t}");
    }
}

#[tokio::test]
async fn rolled_back_work_leaves_nothing_and_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    c.exec("rb", "CREATE TABLE t (id int PRIMARY KEY)").await;
    c.exec("rb", "INSERT INTO t VALUES (1)").await;
    // A failing script (implicit transaction), an explicit rollback, a
    // statement that fails half way, a failing transaction.
    let (status, _) = c.query("rb", "INSERT INTO t VALUES (2); INSERT INTO t VALUES (1)", json!([])).await;
    assert_eq!(status, StatusCode::CONFLICT);
    c.exec("rb", "BEGIN; INSERT INTO t VALUES (3); ROLLBACK").await;
    let (status, _) = c.query("rb", "INSERT INTO t VALUES (4), (1)", json!([])).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = c
        .post("/t/rb/transaction", &json!({"statements": [
            {"sql": "INSERT INTO t VALUES (5)"}, {"sql": "SELECT 1/0"}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    c.exec("rb", "INSERT INTO t VALUES (6)").await;

    let changes = all_changes(&c, "rb").await;
    let ids: Vec<i64> = changes.iter().map(|ch| ch["new"]["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 6]);
    assert_eq!(lsns(&changes), [1, 2]);
}

#[tokio::test]
async fn schema_changes_mid_stream_are_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    let steps = [
        "CREATE TABLE items (id int PRIMARY KEY, name text)",
        "INSERT INTO items VALUES (1, 'one')",
        "ALTER TABLE items ADD COLUMN price numeric(8,2)",
        "INSERT INTO items VALUES (2, 'two', 2.50)",
        "ALTER TABLE items RENAME COLUMN name TO title",
        "UPDATE items SET title = 'uno' WHERE id = 1",
        "ALTER TABLE items ALTER COLUMN id TYPE bigint",
        "INSERT INTO items VALUES (3, 'three', 3)",
        "ALTER TABLE items DROP COLUMN price",
        "DELETE FROM items WHERE id = 2",
        "ALTER TABLE items RENAME TO products",
        "INSERT INTO products VALUES (4, 'four')",
        "TRUNCATE products",
        "DROP TABLE products",
    ];
    for sql in steps {
        c.exec("ddl", sql).await;
    }
    let (_, schema) = c.get("/t/ddl/schema").await;
    let versions = schema["versions"].as_array().unwrap().clone();
    let shape: Vec<(String, Vec<String>, bool)> = versions
        .iter()
        .map(|v| {
            let cols = v["columns"].as_array().unwrap().iter()
                .map(|c| format!("{}:{}", c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
                .collect();
            (v["table"].as_str().unwrap().to_owned(), cols, v["dropped"].as_bool().unwrap())
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        shape,
        vec![
            ("items".into(), s(&["id:integer", "name:text"]), false),
            ("items".into(), s(&["id:integer", "name:text", "price:numeric(8,2)"]), false),
            ("items".into(), s(&["id:integer", "title:text", "price:numeric(8,2)"]), false),
            ("items".into(), s(&["id:bigint", "title:text", "price:numeric(8,2)"]), false),
            ("items".into(), s(&["id:bigint", "title:text"]), false),
            ("products".into(), s(&["id:bigint", "title:text"]), false),
            ("products".into(), s(&["id:bigint", "title:text"]), true),
        ]
    );
    // A rename keeps the column's attnum, so it is not a drop and an add.
    assert_eq!(versions[2]["columns"][1]["attnum"], versions[1]["columns"][1]["attnum"]);
    assert_eq!(versions[0]["primaryKey"], json!(["id"]));

    // Every change carries the version in force, and its row has exactly
    // that version's columns. The type change rewrote the rows (a truncate
    // and every row, as they are after it); the drop is a change too.
    let changes = all_changes(&c, "ddl").await;
    let ops: Vec<(&str, &str)> = changes.iter().map(|c| (c["op"].as_str().unwrap(), c["table"].as_str().unwrap())).collect();
    assert_eq!(
        ops,
        [("insert", "items"), ("insert", "items"), ("update", "items"),
         ("truncate", "items"), ("insert", "items"), ("insert", "items"), ("insert", "items"),
         ("delete", "items"), ("insert", "products"), ("truncate", "products"), ("drop", "products")]
    );
    for ch in &changes {
        let v = ch["schemaVersion"].as_u64().unwrap();
        let version = versions.iter().find(|x| x["version"] == v).unwrap();
        assert!(version["lsn"].as_u64().unwrap() <= ch["lsn"].as_u64().unwrap());
        if ch["op"] == "drop" {
            assert_eq!(version["dropped"], true, "change {ch}");
            continue;
        }
        let in_force = versions.iter()
            .rfind(|x| x["lsn"].as_u64() <= ch["lsn"].as_u64() && !x["dropped"].as_bool().unwrap())
            .unwrap();
        assert_eq!(in_force["version"], v, "change {ch}");
        let row = if ch["new"].is_object() { &ch["new"] } else { &ch["old"] };
        if let Some(row) = row.as_object() {
            let keys: Vec<&String> = row.keys().collect();
            let cols: Vec<&str> = version["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
            assert_eq!(keys, cols, "change {ch}");
        }
    }
    assert_eq!(changes[2]["old"], json!({"id": 1, "title": "one", "price": null}));
    // The type change's rows, in whatever order the table holds them.
    let rewritten: Vec<&Value> = changes[4..6].iter().map(|c| &c["new"]).collect();
    assert!(rewritten.contains(&&json!({"id": 1, "title": "uno", "price": null})), "{rewritten:?}");
    assert!(rewritten.contains(&&json!({"id": 2, "title": "two", "price": "2.50"})), "{rewritten:?}");
    assert_eq!(changes[6]["new"], json!({"id": 3, "title": "three", "price": "3.00"}));
}

#[tokio::test]
async fn values_keep_their_types_through_the_change_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    c.exec(
        "types",
        "CREATE TABLE t (id int PRIMARY KEY, b bool, i2 int2, i8 int8, f4 float4, f8 float8, \
         n numeric, n2 numeric(20,10), tx text, vc varchar(10), ch char(3), by bytea, \
         ts timestamp, tz timestamptz, d date, tm time, iv interval, u uuid, j json, jb jsonb, \
         ai int[], at text[], an numeric[], aj jsonb[], inet_ inet, m money, e_big numeric)",
    )
    .await;
    c.exec(
        "types",
        "INSERT INTO t VALUES (1, true, -32768, 9223372036854775807, 1.5, 0.1, \
         '-12345678901234567890.123456789012', 3.1415926535, 'tab\there \"quoted\" é', 'short', 'ab', '\\x00ff10', \
         '2026-02-03 04:05:06.789', '2026-02-03 04:05:06.789+02', '2026-02-03', '23:59:59', '1 year 2 days 03:04:05', \
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"z\": 1, \"a\": [true, null]}', '{\"k\": {\"n\": 1.25}}', \
         '{1,NULL,3}', '{\"a,b\",NULL,\"c\\\"d\"}', '{1.10,2.20}', ARRAY['{\"x\":1}'::jsonb], '192.168.0.1/24', 12.34, 'NaN'), \
         (2, NULL, NULL, NULL, 'Infinity', '-Infinity', NULL, NULL, '', NULL, NULL, '\\x', NULL, NULL, NULL, NULL, NULL, \
          NULL, 'null', '[]', '{}', '{}', NULL, NULL, NULL, NULL, NULL)",
    )
    .await;
    let rows = c.rows("types", "SELECT * FROM t ORDER BY id", json!([])).await;
    let changes = all_changes(&c, "types").await;
    assert_eq!(changes.len(), 2);
    for (row, change) in rows.iter().zip(&changes) {
        let row = row.as_object().unwrap();
        let new = change["new"].as_object().unwrap();
        assert_eq!(new.keys().collect::<Vec<_>>(), row.keys().collect::<Vec<_>>());
        for (column, value) in row {
            assert_eq!(&new[column], value, "column {column}");
        }
    }
    // Spot checks of what a user would look at.
    let new = &changes[0]["new"];
    assert_eq!(new["i8"], json!(9223372036854775807i64));
    assert_eq!(new["n"], "-12345678901234567890.123456789012");
    assert_eq!(new["by"], "\\x00ff10");
    assert_eq!(new["tz"], "2026-02-03 02:05:06.789+00");
    assert_eq!(new["at"], json!(["a,b", null, "c\"d"]));
    assert_eq!(new["an"], json!(["1.10", "2.20"]));
    assert_eq!(new["jb"], json!({"k": {"n": 1.25}}));
    // NULL is present as null, distinct from an absent column.
    assert!(changes[1]["new"].as_object().unwrap().contains_key("b"));
    assert_eq!(changes[1]["new"]["b"], Value::Null);
}

#[tokio::test]
async fn long_poll_answers_when_a_change_commits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    c.exec("lp", "CREATE TABLE t (id int)").await;
    let (_, empty) = c.get("/t/lp/changes?since=0&wait=100").await;
    assert_eq!(empty["changes"], json!([]));
    assert_eq!(empty["nextLsn"], 0);

    let waiting = {
        let c = c.clone();
        tokio::spawn(async move { c.get("/t/lp/changes?since=0&wait=30000").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    c.exec("lp", "INSERT INTO t VALUES (42)").await;
    let (status, page) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["changes"][0]["new"], json!({"id": 42}));
    assert_eq!(page["nextLsn"], 1);

    for bad in ["since=-1", "limit=0", "limit=100000", "wait=999999", "since=x", "bogus=1"] {
        let (status, body) = c.get(&format!("/t/lp/changes?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn websocket_subscription_resumes_after_a_forced_disconnect() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    websocket_queries_and_subscriptions(&server.base, &server.client()).await;
}

/// The WebSocket protocol against a target (`tidelake serve` here, the edge
/// in `edge.rs`): queries, a filtered subscription replayed from an LSN, a
/// forced disconnect, resumption without a gap or a repeat, live changes,
/// unsubscribing and protocol errors.
pub(crate) async fn websocket_queries_and_subscriptions(base: &str, c: &tidelake_tests::Client) {
    c.exec("wsr", "CREATE TABLE t (id int PRIMARY KEY, v text, secret text)").await;
    c.exec("wsr", "CREATE TABLE other (id int)").await;
    for i in 1..=5 {
        c.query("wsr", "INSERT INTO t VALUES ($1, 'v', 's')", json!([i])).await;
    }
    c.exec("wsr", "INSERT INTO other VALUES (1)").await;

    let mut ws = Ws::connect(base, "wsr").await;
    // Queries over the same socket.
    ws.send(json!({"type": "query", "id": 7, "sql": "SELECT count(*) AS n FROM t"})).await;
    let result = ws.expect("result", Duration::from_secs(10)).await;
    assert_eq!(result["id"], 7);
    assert_eq!(result["result"]["rows"][0]["n"], 5);
    ws.send(json!({"type": "query", "id": "bad", "sql": "SELECT * FROM nope"})).await;
    let err = ws.expect("error", Duration::from_secs(10)).await;
    assert_eq!(err["error"]["code"], "42P01");

    // Replay from the start, filtered to inserts into t with two columns.
    ws.send(json!({"type": "subscribe", "id": "s", "since": 0, "tables": ["t"],
                   "ops": ["insert", "update"], "columns": ["id", "v"]})).await;
    assert_eq!(ws.expect("subscribed", Duration::from_secs(10)).await["since"], 0);
    let mut got: Vec<Value> = Vec::new();
    for _ in 0..3 {
        got.push(ws.expect("change", Duration::from_secs(10)).await["change"].clone());
    }
    assert_eq!(got[0]["new"], json!({"id": 1, "v": "v"}));
    let last = got.last().unwrap()["lsn"].as_u64().unwrap();
    drop(ws); // forced disconnect mid-stream

    // Live writes while disconnected, including ones the filter drops.
    c.exec("wsr", "UPDATE t SET v = 'w' WHERE id = 1").await;
    c.exec("wsr", "DELETE FROM t WHERE id = 2").await;
    c.exec("wsr", "INSERT INTO t VALUES (6, 'v', 's')").await;

    let mut ws = Ws::connect(base, "wsr").await;
    ws.send(json!({"type": "subscribe", "id": "s", "since": last, "tables": ["public.t"],
                   "ops": ["insert", "update"], "columns": ["id", "v"]})).await;
    ws.expect("subscribed", Duration::from_secs(10)).await;
    let mut resumed = Vec::new();
    // 2 more replayed inserts (4, 5), the update and the insert of 6.
    for _ in 0..4 {
        resumed.push(ws.expect("change", Duration::from_secs(10)).await["change"].clone());
    }
    let ids: Vec<(String, i64)> = resumed.iter().map(|ch| (ch["op"].as_str().unwrap().to_owned(), ch["new"]["id"].as_i64().unwrap())).collect();
    assert_eq!(ids, [("insert".into(), 4), ("insert".into(), 5), ("update".into(), 1), ("insert".into(), 6)]);
    assert_eq!(resumed[2]["old"], json!({"id": 1, "v": "v"}));
    let all: Vec<u64> = got.iter().chain(&resumed).map(|ch| ch["lsn"].as_u64().unwrap()).collect();
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(all, sorted, "duplicate or out of order at the seam");
    // Live: the next change arrives without asking.
    c.exec("wsr", "INSERT INTO t VALUES (7, 'live', 's')").await;
    let live = ws.expect("change", Duration::from_secs(10)).await;
    assert_eq!(live["change"]["new"], json!({"id": 7, "v": "live"}));
    // Nothing else (the filter excludes deletes and the other table).
    assert!(ws.recv(Duration::from_millis(300)).await.is_none());
    ws.send(json!({"type": "unsubscribe", "id": "s"})).await;
    ws.expect("unsubscribed", Duration::from_secs(10)).await;
    ws.send(json!({"type": "subscribe"})).await;
    assert_eq!(ws.expect("error", Duration::from_secs(10)).await["error"]["code"], "invalid_message");
}

#[tokio::test]
async fn hibernated_tenant_subscriber_receives_the_next_change() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--tenants-hibernate-after", "300ms"]).await;
    let c = server.client();
    c.exec("hib", "CREATE TABLE t (id int)").await;
    let mut ws = Ws::connect(&server.base, "hib").await;
    ws.send(json!({"type": "subscribe", "id": "live"})).await;
    let since = ws.expect("subscribed", Duration::from_secs(10)).await["since"].as_u64().unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async { c.engine_state("hib").await == "hibernated" }).await,
        "an idle subscriber kept the tenant open"
    );
    c.exec("hib", "INSERT INTO t VALUES (1)").await;
    let change = ws.expect("change", Duration::from_secs(10)).await;
    assert_eq!(change["change"]["new"], json!({"id": 1}));
    assert_eq!(change["change"]["lsn"].as_u64().unwrap(), since + 1);
}

#[tokio::test]
async fn trimming_keeps_everything_after_the_lowest_acknowledged_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--capture-retention", "0s"]).await;
    let c = server.client();
    c.exec("trim", "CREATE TABLE t (id int)").await;
    c.exec("trim", "INSERT INTO t SELECT generate_series(1, 10)").await;

    let ack = |consumer: &'static str, lsn: u64| {
        let c = c.clone();
        async move { c.post("/t/trim/changes/ack", &json!({"consumer": consumer, "lsn": lsn})).await }
    };
    let (status, body) = ack("lake", 6).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["changeLog"]["tailLsn"], 6);
    assert_eq!(body["changeLog"]["rows"], 5);
    // A second consumer further behind holds trimming back.
    let (status, _) = ack("audit", 3).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = ack("lake", 9).await;
    assert_eq!(body["changeLog"]["tailLsn"], 6);
    assert_eq!(body["changeLog"]["ackedLsn"], 3);
    let (_, body) = ack("audit", 8).await;
    assert_eq!(body["changeLog"]["tailLsn"], 8);

    // Trimmed changes are a clear error, kept ones are all there.
    let (status, body) = c.get("/t/trim/changes?since=0").await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["error"]["code"], "changes_trimmed");
    let (_, page) = c.get("/t/trim/changes?since=7").await;
    assert_eq!(lsns(page["changes"].as_array().unwrap()), [8, 9, 10]);
    // Acknowledging what does not exist yet is refused.
    let (status, _) = ack("lake", 11).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, health) = c.get("/t/trim/health").await;
    assert_eq!(health["tenant"]["changeLog"]["headLsn"], 10);
    assert_eq!(health["tenant"]["changeLog"]["tailLsn"], 8);
    assert!(health["tenant"]["changeLog"]["bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn retention_keeps_young_acknowledged_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--capture-retention", "2s"]).await;
    let c = server.client();
    c.exec("ret", "CREATE TABLE t (id int)").await;
    c.exec("ret", "INSERT INTO t SELECT generate_series(1, 5)").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.exec("ret", "INSERT INTO t SELECT generate_series(6, 8)").await;
    let (_, body) = c.post("/t/ret/changes/ack", &json!({"consumer": "lake", "lsn": 8})).await;
    // The first five are old enough to go; the last three are kept though acknowledged.
    assert_eq!(body["changeLog"]["tailLsn"], 6, "{body}");
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_disconnected_and_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--tenants-ws-send-timeout", "1s"]).await;
    let c = server.client();
    c.exec("slowsub", "CREATE TABLE t (id int PRIMARY KEY, blob text)").await;
    // About 30 MB of changes: more than socket buffers hold.
    for chunk in 0..6 {
        c.query(
            "slowsub",
            "INSERT INTO t SELECT g, repeat(md5(g::text), 320) FROM generate_series($1::int, $1::int + 499) g",
            json!([chunk * 500]),
        )
        .await;
    }
    let mut slow = Ws::connect(&server.base, "slowsub").await;
    slow.send(json!({"type": "subscribe", "id": "s", "since": 0})).await;
    // Do not read for a while: the server must give up on this client.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Meanwhile the tenant and other subscribers are served.
    let mut other = Ws::connect(&server.base, "slowsub").await;
    other.send(json!({"type": "subscribe", "id": "live", "tables": ["t"]})).await;
    other.expect("subscribed", Duration::from_secs(10)).await;
    c.exec("slowsub", "INSERT INTO t VALUES (-1, 'after')").await;
    let change = other.expect("change", Duration::from_secs(10)).await;
    assert_eq!(change["change"]["new"]["blob"], "after");

    // The slow client gets what was already in flight, then the end.
    let mut received = 0;
    while let Some(msg) = slow.recv(Duration::from_secs(5)).await {
        if msg["type"] == "change" {
            received += 1;
        }
    }
    assert!(received > 0, "the subscription delivered nothing");
    assert!(received < 3000, "a client that stopped reading still got all {received} changes");
}

/// A tenant whose change log an older release installed is upgraded when it
/// next opens: its triggers are rewritten, and its rows, change log and
/// schema versions stay as they were, capture going on at the next LSN.
#[tokio::test]
async fn an_older_capture_install_is_upgraded_when_the_tenant_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), &["--tenants-hibernate-after", "300ms", "--lake-enabled=false"]).await;
    let c = server.client();
    c.exec("old", "CREATE TABLE pair (id int PRIMARY KEY DEFERRABLE, v text); INSERT INTO pair SELECT g, 'p' || g FROM generate_series(1, 3) g").await;
    // What an older release left behind, made by the operator's owner
    // access (no tenant can): its version mark, a trigger that is not this
    // release's, and the table owned by the superuser, as tenant SQL ran
    // as the superuser then.
    server.stop();
    let results = server.maintain(
        "old",
        "UPDATE tidelake.meta SET value = '5' WHERE key = 'capture_version';
         ALTER TABLE pair OWNER TO CURRENT_USER;
         DO $$ BEGIN EXECUTE format('CREATE OR REPLACE FUNCTION tidelake.%I() RETURNS trigger LANGUAGE plpgsql AS $b$ BEGIN RAISE EXCEPTION ''an old trigger ran''; END $b$', 'capture_' || 'pair'::regclass::oid); END $$;
         SELECT tableowner FROM pg_tables WHERE tablename = 'pair'",
    );
    let owner = &results.last().unwrap()["rows"][0]["tableowner"];
    assert_ne!(owner, "tenant", "{results:?}");
    server.restart().await;
    let c = server.client();
    let before = all_changes(&c, "old").await;
    assert_eq!(lsns(&before), vec![1, 2, 3]);
    let (_, schema) = c.get("/t/old/schema").await;
    let versions = schema["versions"].clone();
    assert!(
        eventually(Duration::from_secs(30), || async { c.engine_state("old").await == "hibernated" }).await,
        "the tenant did not hibernate"
    );

    // Reopened: a chain of key moves under the deferrable key is logged as
    // this release logs it (the row whose old key nobody took: delete +
    // insert; the others: updates).
    c.exec("old", "UPDATE pair SET id = id + 1").await;
    let version = c.rows("old", "SELECT value FROM tidelake.meta WHERE key = 'capture_version'", json!([])).await;
    assert_ne!(version[0]["value"], "5", "{version:?}");
    let after = all_changes(&c, "old").await;
    assert_eq!(after[..3], before[..]);
    assert_eq!(lsns(&after), vec![1, 2, 3, 4, 5, 6, 7]);
    let ops: Vec<&str> = after[3..].iter().map(|ch| ch["op"].as_str().unwrap()).collect();
    let mut sorted = ops.clone();
    sorted.sort();
    assert_eq!(sorted, ["delete", "insert", "update", "update"], "{ops:?}");
    assert_eq!(c.get("/t/old/schema").await.1["versions"], versions);
    assert_eq!(
        c.rows("old", "SELECT id, v FROM pair ORDER BY id", json!([])).await,
        vec![json!({"id": 2, "v": "p1"}), json!({"id": 3, "v": "p2"}), json!({"id": 4, "v": "p3"})]
    );
    // The upgrade gave the table to the tenant role, and its capture is
    // protected like any table's.
    let owner = c.rows("old", "SELECT tableowner FROM pg_tables WHERE tablename = 'pair'", json!([])).await;
    assert_eq!(owner[0]["tableowner"], "tenant");
    let (status, body) = c.query("old", "ALTER TABLE pair DISABLE TRIGGER tidelake_capture", json!([])).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::FORBIDDEN, &json!("42501")), "{body}");
}
