//! Point-in-time recovery: a tenant written across several instants, with a
//! hibernate → cold → wake cycle between them, is restored to each instant
//! as a branch, and in place followed by undo, and each time equals what
//! PostgreSQL held at that instant (recorded as the test went). Replay
//! comes from the lake once the change log is trimmed, and from the change
//! log while it holds the changes. Instants outside the retention window,
//! and other impossible restores, are refused with clear errors.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Client, Server, eventually};

/// Every table's rows, as a user would compare them.
async fn state(c: &Client, tenant: &str) -> Value {
    json!({
        "items": c.rows(tenant, "SELECT id, name, price, tags, meta, at, raw, uid, day, ok, score FROM items ORDER BY id", json!([])).await,
        "notes": c.rows(tenant, "SELECT n, body FROM notes ORDER BY n", json!([])).await,
        "events": c.rows(tenant, "SELECT kind, n FROM events ORDER BY kind, n", json!([])).await,
    })
}

/// The database's clock now, after everything committed so far.
pub(crate) async fn instant(c: &Client, tenant: &str) -> String {
    let rows = c.rows(tenant, "SELECT clock_timestamp()::text AS now", json!([])).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    rows[0]["now"].as_str().unwrap().to_owned()
}

async fn restore(c: &Client, tenant: &str, body: Value) -> (StatusCode, Value) {
    c.post(&format!("/t/{tenant}/restore"), &body).await
}

/// A server shipping every change to the lake at once and trimming the
/// change log right behind it, without periodic backups: restores past a
/// base backup replay from the lake once the log is trimmed.
async fn lake_replay_server(dir: &tempfile::TempDir) -> Server {
    Server::start(
        &dir.path().join("data"),
        &["--archive-backup-interval", "off", "--lake-flush-interval", "100ms", "--capture-retention", "0s"],
    )
    .await
}

/// Wait until the tenant's change log no longer holds the changes after `since`.
async fn wait_trimmed(c: &Client, tenant: &str, since: u64) {
    let trimmed = eventually(Duration::from_secs(30), || async {
        c.get(&format!("/t/{tenant}/changes?since={since}")).await.0 == StatusCode::GONE
    })
    .await;
    assert!(trimmed, "the change log of {tenant} was not trimmed behind the lake");
}

pub(crate) async fn tier(c: &Client, tenant: &str) -> String {
    let (_, health) = c.get(&format!("/t/{tenant}/health")).await;
    health["tenant"]["tier"].as_str().unwrap_or_default().to_owned()
}

async fn lake_count(c: &Client, sql: &str) -> i64 {
    let (status, body) = c.post("/sql", &json!({ "sql": sql })).await;
    assert_eq!(status, StatusCode::OK, "{sql}: {body}");
    body["rows"][0]["n"].as_i64().unwrap_or_else(|| panic!("{sql}: {body}"))
}

async fn lake_rows(c: &Client, sql: &str) -> Value {
    let (status, body) = c.post("/sql", &json!({ "sql": sql })).await;
    assert_eq!(status, StatusCode::OK, "{sql}: {body}");
    body["rows"].clone()
}

/// The items of a recorded state, as the lake query above selects them.
fn items_seen(state: &Value) -> Value {
    state["items"].as_array().unwrap().iter().map(|r| json!({"id": r["id"], "name": r["name"], "ok": r["ok"]})).collect()
}

const SCHEMA: &str = "
    CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(10,2), tags text[], meta jsonb,
                        at timestamptz, raw bytea, uid uuid, day date, ok boolean, score double precision);
    CREATE TABLE notes (n serial PRIMARY KEY, body text);
    CREATE TABLE events (kind text, n int)";

const SEED: &str = "
    INSERT INTO items SELECT g, 'item ' || g, g * 1.25, ARRAY['t' || g, 'x'], jsonb_build_object('g', g, 'nested', jsonb_build_array(g, 'a')),
        '2026-11-28 10:00:00.123456+00'::timestamptz + g * interval '1 minute', decode(lpad(to_hex(g), 4, '0'), 'hex'),
        md5(g::text)::uuid, date '2026-01-01' + g, g % 2 = 0, g / 3.0
    FROM generate_series(1, 40) g;
    INSERT INTO notes (body) VALUES ('hello'), (NULL);
    INSERT INTO events VALUES ('a', 1), ('a', 2), ('b', 3)";

#[tokio::test]
async fn restore_to_each_instant_as_a_branch_and_in_place_with_undo() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--tenants-hibernate-after", "300ms", "--archive-cold-after", "1s", "--archive-backup-interval", "off",
            "--lake-flush-interval", "100ms", "--capture-retention", "0s",
        ],
    )
    .await;
    let c = server.client();
    let before = instant(&c, "acme").await;
    c.exec("acme", SCHEMA).await;
    c.exec("acme", SEED).await;
    let (status, body) = c.post("/t/acme/backups", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut states = vec![state(&c, "acme").await];
    let mut heads = vec![c.head_lsn("acme").await];
    let mut instants = vec![instant(&c, "acme").await];

    // Instant 1: updates, deletes, inserts; a delete from a table without a key.
    c.exec(
        "acme",
        "UPDATE items SET price = price + 1, meta = meta || '{\"u\": 1}' WHERE id % 3 = 0;
         DELETE FROM items WHERE id % 7 = 0;
         INSERT INTO notes (body) VALUES ('one');
         DELETE FROM events WHERE n = 2;
         INSERT INTO events VALUES ('b', 9)",
    )
    .await;
    states.push(state(&c, "acme").await);
    heads.push(c.head_lsn("acme").await);
    instants.push(instant(&c, "acme").await);

    // Hibernate → cold (a base backup) → wake: exactly the data comes back.
    c.wait_shipped("acme").await;
    let cold = eventually(Duration::from_secs(60), || async { tier(&c, "acme").await == "cold" }).await;
    assert!(cold, "acme never went cold: {}", tier(&c, "acme").await);
    assert_eq!(state(&c, "acme").await, states[1]);

    // Instant 2: a truncate, array and bytea updates, new rows.
    c.exec(
        "acme",
        "TRUNCATE notes;
         INSERT INTO notes (body) VALUES ('after truncate');
         UPDATE items SET tags = tags || 'two'::text, raw = '\\xdeadbeef', score = 'NaN' WHERE id < 10;
         INSERT INTO items (id, name, price, meta, ok) VALUES (41, 'late', 0.01, '[1, \"two\", null]', true), (42, NULL, NULL, '\"text\"', NULL)",
    )
    .await;
    states.push(state(&c, "acme").await);
    heads.push(c.head_lsn("acme").await);
    instants.push(instant(&c, "acme").await);

    // Instant 3: more deletes and updates of many rows.
    c.exec("acme", "DELETE FROM items WHERE id > 30 AND id < 41; UPDATE items SET name = name || '!'; INSERT INTO events VALUES ('c', 4)").await;
    states.push(state(&c, "acme").await);
    heads.push(c.head_lsn("acme").await);
    instants.push(instant(&c, "acme").await);
    c.wait_shipped("acme").await;

    // Bookmarks: each instant resolves to the LSN the tenant was at.
    for (at, head) in instants.iter().zip(&heads) {
        let (status, mark) = c.get(&format!("/t/acme/bookmark?at={}", urlencode(at))).await;
        assert_eq!(status, StatusCode::OK, "{mark}");
        assert_eq!(mark["bookmark"], format!("lsn:{head}"), "{at}: {mark}");
    }

    // Branches at every instant equal that instant's state; the log was
    // trimmed behind the lake, so changes after a base backup come from the lake.
    for (i, at) in instants.iter().enumerate() {
        let branch = format!("acme-b{i}");
        let (status, report) = restore(&c, "acme", json!({ "to": at, "into": branch })).await;
        assert_eq!(status, StatusCode::OK, "restore to instant {i}: {report}");
        assert_eq!(report["target"]["lsn"], heads[i], "{report}");
        // A branch logs all its rows: its log starts at LSN 1.
        assert_eq!(report["logged"], report["headLsn"], "{report}");
        let base = report["baseBackup"]["lsn"].as_u64().unwrap();
        assert_eq!(report["replayed"].as_u64().unwrap(), heads[i] - base, "{report}");
        if heads[i] > base {
            assert_eq!(report["replayedFrom"], "lake", "{report}");
        }
        if i == 2 {
            // From the base backup taken when it went cold.
            assert_eq!(base, heads[1], "{report}");
        }
        assert_eq!(state(&c, &branch).await, states[i], "branch at instant {i}");
    }
    // A branch is a tenant of its own; the original is untouched.
    c.exec("acme-b3", "INSERT INTO notes (body) VALUES ('only in the branch')").await;
    assert_eq!(state(&c, "acme").await, states[3]);

    // Refused, with clear errors and nothing changed.
    let (status, err) = restore(&c, "acme", json!({ "to": before })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "outside_retention_window", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("oldest base backup"), "{err}");
    let (status, err) = restore(&c, "acme", json!({ "to": format!("lsn:{}", heads[3] + 100) })).await;
    assert_eq!((status, err["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("lsn_beyond_head")), "{err}");
    let (status, err) = restore(&c, "acme", json!({ "to": instants[1], "into": "acme-b0" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    let (status, err) = restore(&c, "acme", json!({ "to": "last tuesday" })).await;
    assert_eq!((status, err["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_instant")), "{err}");
    let (status, err) = restore(&c, "nobody", json!({ "to": instants[1] })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    assert_eq!(state(&c, "acme").await, states[3]);

    // In place, from the command line: back to instant 1, undoable.
    let out = std::process::Command::new(tidelake_tests::binary())
        .args(["restore", "--tenant", "acme", "--to", &instants[1], "--url", &server.base])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.starts_with(&format!("restored acme at lsn:{} ", heads[1])), "{printed}");
    assert!(printed.contains(" logged for the lake) in "), "{printed}");
    let undo = format!("lsn:{}", heads[3]);
    assert!(printed.contains(&format!("undo with: tidelake restore --tenant acme --to {undo}")), "{printed}");
    assert_eq!(state(&c, "acme").await, states[1]);

    // The lake tells the same story: the restored state now, the old one before.
    c.wait_shipped("acme").await;
    let count = |s: &Value, t: &str| s[t].as_array().unwrap().len() as i64;
    assert_eq!(lake_count(&c, "SELECT count(*) AS n FROM acme.items").await, count(&states[1], "items"));
    assert_eq!(lake_rows(&c, "SELECT n, body FROM acme.notes ORDER BY n").await, states[1]["notes"]);
    assert_eq!(lake_rows(&c, "SELECT id, name, ok FROM acme.items ORDER BY id").await, items_seen(&states[1]));
    let as_of = format!("SELECT count(*) AS n FROM acme.items FOR SYSTEM_TIME AS OF '{}'", instants[3]);
    assert_eq!(lake_count(&c, &as_of).await, count(&states[3], "items"));

    // Undo: the state the restore replaced comes back.
    let (status, report) = restore(&c, "acme", json!({ "to": undo })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["replayed"], 0, "{report}");
    assert_eq!(state(&c, "acme").await, states[3]);
    // In place to every other instant, each followed by its undo.
    for i in [0, 2] {
        let (status, report) = restore(&c, "acme", json!({ "to": instants[i] })).await;
        assert_eq!(status, StatusCode::OK, "in place to instant {i}: {report}");
        assert_eq!(report["target"]["lsn"], heads[i], "{report}");
        assert_eq!(state(&c, "acme").await, states[i], "in place at instant {i}");
        let undo = report["undo"].as_str().unwrap().to_owned();
        let (status, report) = restore(&c, "acme", json!({ "to": undo })).await;
        assert_eq!(status, StatusCode::OK, "undo of instant {i}: {report}");
        assert_eq!(state(&c, "acme").await, states[3], "undo of instant {i}");
    }
    // And the tenant carries on, its log above every LSN it used.
    let head = c.head_lsn("acme").await;
    assert!(head > heads[3], "head {head} after undo");
    c.exec("acme", "INSERT INTO notes (body) VALUES ('after the undo')").await;
    assert_eq!(c.head_lsn("acme").await, head + 1);
    c.wait_shipped("acme").await;
    assert_eq!(lake_count(&c, "SELECT count(*) AS n FROM acme.notes").await, count(&states[3], "notes") + 1);
    assert_eq!(lake_count(&c, "SELECT count(*) AS n FROM acme.items").await, count(&states[3], "items"));
    assert_eq!(lake_rows(&c, "SELECT id, name, ok FROM acme.items ORDER BY id").await, items_seen(&states[3]));

    // `tidelake bookmark` prints what restore takes.
    let out = std::process::Command::new(tidelake_tests::binary())
        .args(["bookmark", "--tenant", "acme", "--at", &instants[2], "--url", &server.base])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("lsn:{}", heads[2]));
}

#[tokio::test]
async fn restore_replays_from_the_change_log_while_it_holds_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    // Periodic backups on (not due within the test): they also follow schema changes.
    let server = Server::start(&dir.path().join("data"), &["--archive-backup-interval", "1h", "--lake-enabled=false"]).await;
    let c = server.client();
    c.exec(
        "solo",
        "CREATE TABLE kv (k int PRIMARY KEY, v text); CREATE TABLE tally (n int); CREATE TABLE login (id int PRIMARY KEY, email text UNIQUE);
         CREATE TABLE pair (id int PRIMARY KEY DEFERRABLE, v text)",
    )
    .await;
    c.exec(
        "solo",
        "INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 100) g; INSERT INTO tally SELECT 1 FROM generate_series(1, 3);
         INSERT INTO login VALUES (1, 'a@x'), (2, 'b@x'); INSERT INTO pair SELECT g, 'p' || g FROM generate_series(1, 4) g",
    )
    .await;
    let (status, body) = c.post("/t/solo/backups", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A key change, a repeated update of one row, an update of a row
    // without a key, deletes: all within one replay window. The large rows
    // updated twice make the replay apply them in more than one run (runs
    // are bounded by their bytes), keys of one run touched again in the next.
    c.exec(
        "solo",
        "UPDATE kv SET k = 1000 WHERE k = 1; UPDATE kv SET v = 'again' WHERE k = 2; UPDATE kv SET v = 'and again' WHERE k = 2;
         DELETE FROM kv WHERE k BETWEEN 50 AND 60; UPDATE tally SET n = 2 WHERE ctid = (SELECT min(ctid) FROM tally);
         UPDATE login SET email = 'swap' WHERE id = 1; UPDATE login SET email = 'a@x' WHERE id = 2; UPDATE login SET email = 'b@x' WHERE id = 1;
         UPDATE kv SET k = k - 1 WHERE k BETWEEN 2 AND 10; UPDATE pair SET id = 3 - id WHERE id IN (1, 2); UPDATE pair SET id = 40 WHERE id = 4;
         INSERT INTO kv SELECT g, 'bulk ' || g FROM generate_series(1001, 26000) g;
         UPDATE kv SET v = repeat('x', 4000) || k WHERE k BETWEEN 1001 AND 3000; UPDATE kv SET v = repeat('y', 4000) || k WHERE k BETWEEN 1001 AND 3000;
         DELETE FROM kv WHERE k % 7 = 0 AND k > 1000",
    )
    .await;
    let login = c.rows("solo", "SELECT * FROM login ORDER BY id", json!([])).await;
    let pair = c.rows("solo", "SELECT * FROM pair ORDER BY id", json!([])).await;
    assert_eq!(pair[0], json!({"id": 1, "v": "p2"}), "{pair:?}");
    let kv = c.rows("solo", "SELECT * FROM kv ORDER BY k", json!([])).await;
    let tally = c.rows("solo", "SELECT * FROM tally ORDER BY n", json!([])).await;
    let head = c.head_lsn("solo").await;
    c.exec("solo", "DELETE FROM kv; DELETE FROM tally; DELETE FROM login; DELETE FROM pair").await;

    let (status, report) = restore(&c, "solo", json!({ "to": format!("lsn:{head}"), "into": "solo-then" })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["replayedFrom"], "log", "{report}");
    // Read from the log in several pages as the replay goes.
    assert!(report["replayed"].as_u64().unwrap() > 25_000, "{report}");
    assert_eq!(c.rows("solo-then", "SELECT * FROM kv ORDER BY k", json!([])).await, kv);
    assert_eq!(c.rows("solo-then", "SELECT * FROM tally ORDER BY n", json!([])).await, tally);
    // Two rows that traded a unique value within the window.
    assert_eq!(c.rows("solo-then", "SELECT * FROM login ORDER BY id", json!([])).await, login);
    assert_eq!(login, vec![json!({"id": 1, "email": "b@x"}), json!({"id": 2, "email": "a@x"})]);
    // Keys traded within one statement under a deferrable key.
    assert_eq!(c.rows("solo-then", "SELECT * FROM pair ORDER BY id", json!([])).await, pair);
    assert!(c.rows("solo", "SELECT * FROM kv", json!([])).await.is_empty());

    // A schema change is followed by a base backup before the data changes
    // again: the instants after it restore from there.
    c.exec("solo", "ALTER TABLE kv ADD COLUMN w int; INSERT INTO kv VALUES (1, 'x', 1)").await;
    let late = c.head_lsn("solo").await;
    let (status, report) = restore(&c, "solo", json!({ "to": format!("lsn:{late}"), "into": "solo-ddl" })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["baseBackup"]["lsn"].as_u64(), report["replayed"].as_u64()), (Some(late), Some(0)), "{report}");
    assert_eq!(report["baseBackup"]["reason"], "schema", "{report}");
    assert_eq!(
        c.rows("solo-ddl", "SELECT * FROM kv ORDER BY k", json!([])).await,
        c.rows("solo", "SELECT * FROM kv ORDER BY k", json!([])).await
    );
    c.exec("solo", "UPDATE kv SET w = 2 WHERE k = 1; INSERT INTO kv VALUES (2, 'y', 3)").await;
    let kv = c.rows("solo", "SELECT * FROM kv ORDER BY k", json!([])).await;
    let (status, report) = restore(&c, "solo", json!({ "to": format!("lsn:{}", late + 2), "into": "solo-late" })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["baseBackup"]["lsn"].as_u64(), report["replayed"].as_u64()), (Some(late), Some(2)), "{report}");
    assert_eq!(c.rows("solo-late", "SELECT * FROM kv ORDER BY k", json!([])).await, kv);

    // In place, with the change log holding what it undoes (no lake here):
    // kv logs its three differing keys; tally, without a primary key, is
    // logged whole (a truncate: it is empty), and so is login, truncated
    // since (a truncate and its row); untouched tables log nothing.
    c.exec("solo", "INSERT INTO login VALUES (5, 'e@x')").await;
    let head = c.head_lsn("solo").await;
    c.exec("solo", "UPDATE kv SET v = 'changed' WHERE k = 1; DELETE FROM kv WHERE k = 2; INSERT INTO kv VALUES (3, 'z', 0); TRUNCATE login").await;
    let (status, report) = restore(&c, "solo", json!({ "to": format!("lsn:{head}") })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let undo = head + 4;
    assert_eq!(report["undo"], format!("lsn:{undo}"), "{report}");
    assert_eq!((report["headLsn"].as_u64(), report["logged"].as_u64()), (Some(undo + 6), Some(6)), "{report}");
    assert_eq!(c.rows("solo", "SELECT * FROM login", json!([])).await, vec![json!({"id": 5, "email": "e@x"})]);
    assert_eq!(c.rows("solo", "SELECT * FROM kv ORDER BY k", json!([])).await, kv);
    let (status, page) = c.get(&format!("/t/solo/changes?since={undo}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let logged: Vec<Value> = page["changes"].as_array().unwrap().iter().map(|c| json!([c["op"], c["table"], c["new"], c["old"]])).collect();
    assert_eq!(
        logged,
        vec![
            json!(["update", "kv", {"k": 1, "v": "x", "w": 2}, {"k": 1, "v": "changed", "w": 2}]),
            json!(["insert", "kv", {"k": 2, "v": "y", "w": 3}, null]),
            json!(["delete", "kv", null, {"k": 3, "v": "z", "w": 0}]),
            json!(["truncate", "tally", null, null]),
            json!(["truncate", "login", null, null]),
            json!(["insert", "login", {"id": 5, "email": "e@x"}, null]),
        ]
    );
}

#[tokio::test]
async fn key_changes_move_rows_in_the_lake_and_in_restores() {
    let dir = tempfile::tempdir().unwrap();
    let server = lake_replay_server(&dir).await;
    let c = server.client();
    c.exec(
        "keys",
        "CREATE TABLE acct (id int PRIMARY KEY, v text); CREATE TABLE pair (id int PRIMARY KEY, v text);
         CREATE TABLE dual (a int, b text, v int, PRIMARY KEY (a, b))",
    )
    .await;
    c.exec(
        "keys",
        "INSERT INTO acct SELECT g, 'a' || g FROM generate_series(1, 6) g; INSERT INTO pair SELECT g, 'p' || g FROM generate_series(1, 4) g;
         INSERT INTO dual VALUES (1, 'x', 1), (2, 'y', 2)",
    )
    .await;
    // The key made deferrable after capture began, in one statement that
    // leaves the table's columns and key columns as they were.
    c.exec("keys", "ALTER TABLE pair DROP CONSTRAINT pair_pkey, ADD PRIMARY KEY (id) DEFERRABLE").await;
    let (status, body) = c.post("/t/keys/backups", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tables = async |tenant: &str| {
        json!({
            "acct": c.rows(tenant, "SELECT id, v FROM acct ORDER BY id", json!([])).await,
            "pair": c.rows(tenant, "SELECT id, v FROM pair ORDER BY id", json!([])).await,
            "dual": c.rows(tenant, "SELECT a, b, v FROM dual ORDER BY a, b", json!([])).await,
        })
    };
    let before = tables("keys").await;
    let base = c.head_lsn("keys").await;

    // A key moved, a chain of rows each taking the key the row before left,
    // a composite key changed; under a deferrable key, keys traded and a
    // chain in one statement moving rows up a key, into one never used.
    c.exec(
        "keys",
        "UPDATE acct SET id = 100 WHERE id = 1; UPDATE acct SET id = id - 1 WHERE id BETWEEN 2 AND 6;
         UPDATE dual SET b = 'z' WHERE a = 1; UPDATE dual SET v = 5 WHERE a = 2;
         UPDATE pair SET id = 3 - id WHERE id IN (1, 2); UPDATE pair SET id = id + 1 WHERE id >= 2",
    )
    .await;
    let after = tables("keys").await;
    assert_eq!(after["acct"][0], json!({"id": 1, "v": "a2"}), "{after}");
    assert_eq!(after["pair"], json!([{"id": 1, "v": "p2"}, {"id": 3, "v": "p1"}, {"id": 4, "v": "p3"}, {"id": 5, "v": "p4"}]));
    let head = c.head_lsn("keys").await;
    c.wait_shipped("keys").await;

    // The lake's state per key is PostgreSQL's, at both LSNs: no row is
    // left behind at a key it moved away from.
    let lake = async |at: u64| {
        let mut got = json!({});
        for (table, columns, order) in [("acct", "id, v", "id"), ("pair", "id, v", "id"), ("dual", "a, b, v", "a, b")] {
            let sql = format!("SELECT {columns} FROM keys.{table} VERSION AS OF {at} ORDER BY {order}");
            let (status, body) = c.post("/sql", &json!({ "sql": sql })).await;
            assert_eq!(status, StatusCode::OK, "{sql}: {body}");
            got[table] = body["rows"].clone();
        }
        got
    };
    assert_eq!(lake(head).await, after);
    assert_eq!(lake(base).await, before);
    // A moved key is a delete and an insert; traded keys stay updates.
    let (status, body) = c
        .post("/sql", &json!({ "sql": format!("SELECT _op AS op, id FROM keys.\"acct$changes\" WHERE _lsn > {base} ORDER BY _lsn LIMIT 4") }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"],
        json!([{"op": "delete", "id": 1}, {"op": "insert", "id": 100}, {"op": "delete", "id": 2}, {"op": "insert", "id": 1}])
    );
    let (status, body) = c
        .post("/sql", &json!({ "sql": format!("SELECT _op AS op, count(*) AS n FROM keys.\"pair$changes\" WHERE _lsn > {base} GROUP BY _op ORDER BY _op") }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The chain: the row whose old key nobody took moved (delete + insert),
    // the two that moved into taken keys are updates.
    assert_eq!(body["rows"], json!([{"op": "delete", "n": 1}, {"op": "insert", "n": 1}, {"op": "update", "n": 4}]));

    // Once the log is trimmed, a restore replays the window from the lake.
    wait_trimmed(&c, "keys", base).await;
    let (status, report) = restore(&c, "keys", json!({ "to": format!("lsn:{head}"), "into": "keys-then" })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["replayedFrom"].as_str(), report["replayed"].as_u64()), (Some("lake"), Some(head - base)), "{report}");
    assert_eq!(tables("keys-then").await, after);

    // In place back to the base: the restored database logs only the keys
    // that differ — acct 1–5 updated, 6 back, 100 gone; pair 1, 3 and 4
    // updated, 2 back, 5 gone; dual (1,x) back, (1,z) gone, (2,y) updated —
    // not every row again. The lake follows, and still has the old timeline.
    let (status, report) = restore(&c, "keys", json!({ "to": format!("lsn:{base}") })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["undo"], format!("lsn:{head}"), "{report}");
    let restored_head = report["headLsn"].as_u64().unwrap();
    assert_eq!((restored_head - head, report["logged"].as_u64()), (7 + 5 + 3, Some(7 + 5 + 3)), "{report}");
    assert_eq!(tables("keys").await, before);
    c.wait_shipped("keys").await;
    assert_eq!(lake(restored_head).await, before);
    assert_eq!(lake(head).await, after);
    // Undone the same way.
    let (status, report) = restore(&c, "keys", json!({ "to": format!("lsn:{head}") })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let undone_head = report["headLsn"].as_u64().unwrap();
    assert_eq!((undone_head - restored_head, report["logged"].as_u64()), (7 + 5 + 3, Some(7 + 5 + 3)), "{report}");
    assert_eq!(tables("keys").await, after);
    c.wait_shipped("keys").await;
    assert_eq!(lake(undone_head).await, after);
    assert_eq!(lake(restored_head).await, before);
}

/// Key changes captured as updates (as capture did before version 5) replay
/// from the lake as the lake's state has them: the moved row appears at its
/// new key, and a later insert at the key it left replaces what the base
/// backup held there.
#[tokio::test]
async fn key_changes_captured_as_updates_replay_from_the_lake_as_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = lake_replay_server(&dir).await;
    let c = server.client();
    c.exec("legacy", "CREATE TABLE acct (id int PRIMARY KEY, v text); INSERT INTO acct SELECT g, 'a' || g FROM generate_series(1, 3) g").await;
    c.wait_shipped("legacy").await;
    // The table's trigger as an older capture wrote it (the operator's
    // owner access; no tenant can): a key change is logged as one update.
    server.stop();
    server.maintain(
        "legacy",
        "DO $$ DECLARE f text; BEGIN
           SELECT pg_get_functiondef(p.oid) INTO f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'tidelake' AND p.proname = 'capture_' || 'acct'::regclass::oid;
           EXECUTE replace(f, 'TG_OP = ''UPDATE'' AND ROW(', 'TG_OP = ''UPDATE'' AND false AND ROW(');
         END $$",
    );
    server.restart().await;
    let c = server.client();
    let (status, body) = c.post("/t/legacy/backups", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let base = c.head_lsn("legacy").await;
    c.exec("legacy", "UPDATE acct SET id = 100 WHERE id = 1; INSERT INTO acct VALUES (1, 'new one'); UPDATE acct SET v = 'x' WHERE id = 2").await;
    let (status, page) = c.get(&format!("/t/legacy/changes?since={base}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ops: Vec<&str> = page["changes"].as_array().unwrap().iter().map(|ch| ch["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["update", "insert", "update"]);
    let now = c.rows("legacy", "SELECT id, v FROM acct ORDER BY id", json!([])).await;
    let head = c.wait_shipped("legacy").await;
    wait_trimmed(&c, "legacy", base).await;

    let (status, report) = restore(&c, "legacy", json!({ "to": format!("lsn:{head}"), "into": "legacy-then" })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["replayedFrom"], "lake", "{report}");
    assert_eq!(
        now,
        vec![json!({"id": 1, "v": "new one"}), json!({"id": 2, "v": "x"}), json!({"id": 3, "v": "a3"}), json!({"id": 100, "v": "a1"})]
    );
    assert_eq!(c.rows("legacy-then", "SELECT id, v FROM acct ORDER BY id", json!([])).await, now);
}

/// A crash in the middle of a restore in place, at the two points where the
/// disk holds something half done: the server comes back with the tenant
/// as the restore found it (moved aside, not yet replaced: put back) or as
/// the restore made it (replaced, the old directory not yet removed).
#[tokio::test]
async fn a_crash_mid_restore_leaves_the_tenant_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--archive-backup-interval", "off", "--lake-enabled=false"]).await;
    let c = server.client();
    c.exec("acme", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'a' || g FROM generate_series(1, 50) g").await;
    let (status, body) = c.post("/t/acme/backups", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let at_backup = c.head_lsn("acme").await;
    c.exec("acme", "UPDATE t SET v = 'b' WHERE id <= 10; DELETE FROM t WHERE id > 40").await;
    let rows = |c: &Client, t: &'static str| {
        let c = c.clone();
        async move { c.rows(t, "SELECT id, v FROM t ORDER BY id", json!([])).await }
    };
    let live = rows(&c, "acme").await;
    // A finished restore of the tenant, to stand in as the staged database.
    let (status, report) = restore(&c, "acme", json!({ "to": format!("lsn:{at_backup}"), "into": "staged" })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let restored = rows(&c, "staged").await;
    assert_ne!(restored, live);
    server.stop();

    // Crashed between moving the tenant aside and moving the restored one in.
    let tenants = data.join("tenants");
    std::fs::rename(tenants.join("acme"), tenants.join(".replaced-acme")).unwrap();
    std::fs::rename(tenants.join("staged"), tenants.join(".restoring-acme")).unwrap();
    server.restart().await;
    let c = server.client();
    assert_eq!(rows(&c, "acme").await, live, "the tenant the restore had moved aside is back");
    assert!(!tenants.join(".replaced-acme").exists() && !tenants.join(".restoring-acme").exists());
    let (_, ping) = c.get("/t/staged/ping").await;
    assert_eq!(ping["exists"], false, "{ping}");
    let head = c.head_lsn("acme").await;
    c.exec("acme", "INSERT INTO t VALUES (100, 'after')").await;
    assert_eq!(c.head_lsn("acme").await, head + 1);
    let live = rows(&c, "acme").await;
    server.stop();

    // Crashed after the swap, before the replaced directory was removed.
    let copied = std::process::Command::new("cp")
        .args(["-a", tenants.join("acme").to_str().unwrap(), tenants.join(".replaced-acme").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());
    server.restart().await;
    let c = server.client();
    assert_eq!(rows(&c, "acme").await, live, "the tenant in place stays");
    assert!(!tenants.join(".replaced-acme").exists());
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
