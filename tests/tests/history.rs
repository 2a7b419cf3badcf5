//! History fidelity: schema changes that change rows' values without any
//! DML are in the history (the lake's state, `AS OF`, diffs and restores
//! equal PostgreSQL after them), a dropped table is a change, every instant
//! after a schema change is restorable, and the lake answers exact values
//! over HTTP (JSON, CSV) and the Postgres wire protocol (text and binary).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Client, Server};

/// The database's clock now, after everything committed so far.
use crate::restore::instant;

async fn lake(c: &Client, sql: &str) -> Vec<Value> {
    let (status, body) = c.post("/sql", &json!({ "sql": sql })).await;
    assert_eq!(status, StatusCode::OK, "{sql}: {body}");
    body["rows"].as_array().cloned().unwrap_or_default()
}

/// Rows as PostgreSQL holds them, each value as text (how the tenant API and
/// the lake's JSON write numerics, and comparable across both).
async fn pg_text(c: &Client, tenant: &str, table: &str, columns: &[&str]) -> Vec<Vec<Option<String>>> {
    let list: Vec<String> = columns.iter().map(|c| format!("{c}::text AS {c}")).collect();
    let rows = c.rows(tenant, &format!("SELECT {} FROM {table} ORDER BY {table}.id", list.join(", ")), json!([])).await;
    rows.iter().map(|r| columns.iter().map(|c| r[*c].as_str().map(str::to_owned)).collect()).collect()
}

/// The lake's state of a table at an instant (None: now), as text.
async fn lake_text(c: &Client, table: &str, columns: &[&str], at: Option<&str>) -> Vec<Vec<Option<String>>> {
    let at = at.map(|t| format!(" FOR SYSTEM_TIME AS OF '{t}'")).unwrap_or_default();
    let rows = lake(c, &format!("SELECT {} FROM {table}{at} ORDER BY id", columns.join(", "))).await;
    rows.iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| match &r[*c] {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect()
        })
        .collect()
}

async fn restore(c: &Client, tenant: &str, body: Value) -> (StatusCode, Value) {
    c.post(&format!("/t/{tenant}/restore"), &body).await
}

#[tokio::test]
async fn schema_changes_that_change_values_are_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-flush-interval", "100ms", "--archive-backup-interval", "off"]).await;
    let c = server.client();
    c.exec("hist", "CREATE TABLE accounts (id int PRIMARY KEY, name text, amount numeric(20,10), note text)").await;
    c.exec(
        "hist",
        "INSERT INTO accounts SELECT g, 'a' || g, 1234567890.1234567891 + g, 'n' || g FROM generate_series(1, 20) g",
    )
    .await;

    // Each step: the DDL, then the columns it leaves, PostgreSQL's rows and the instant.
    let steps = [
        ("CREATE", "SELECT 1", vec!["id", "name", "amount", "note"]),
        ("a column with a default", "ALTER TABLE accounts ADD COLUMN tier text DEFAULT 'basic'", vec!["id", "name", "amount", "note", "tier"]),
        (
            "a generated column",
            "ALTER TABLE accounts ADD COLUMN doubled int GENERATED ALWAYS AS (id * 2) STORED",
            vec!["id", "name", "amount", "note", "tier", "doubled"],
        ),
        (
            "a type change with USING",
            "ALTER TABLE accounts ALTER COLUMN amount TYPE numeric(30,10) USING amount * 2",
            vec!["id", "name", "amount", "note", "tier", "doubled"],
        ),
        ("a dropped column", "ALTER TABLE accounts DROP COLUMN note", vec!["id", "name", "amount", "tier", "doubled"]),
        (
            "an identity column",
            "ALTER TABLE accounts ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY",
            vec!["id", "name", "amount", "tier", "doubled", "seq"],
        ),
        (
            "a volatile default",
            "ALTER TABLE accounts ADD COLUMN r int DEFAULT (random() * 1000000)::int",
            vec!["id", "name", "amount", "tier", "doubled", "seq", "r"],
        ),
        (
            "a default changed, nothing written",
            "ALTER TABLE accounts ALTER COLUMN tier SET DEFAULT 'gold'",
            vec!["id", "name", "amount", "tier", "doubled", "seq", "r"],
        ),
    ];
    let mut seen = Vec::new();
    for (what, ddl, columns) in &steps {
        let before = c.head_lsn("hist").await;
        c.exec("hist", ddl).await;
        let logged = c.head_lsn("hist").await - before;
        let rows = pg_text(&c, "hist", "accounts", columns).await;
        seen.push((what, columns.clone(), rows, instant(&c, "hist").await, logged));
    }
    // What each change logged: a truncate and all 20 rows where values changed, nothing where none did.
    let logged: Vec<u64> = seen.iter().map(|s| s.4).collect();
    assert_eq!(logged, vec![0, 21, 21, 21, 0, 21, 21, 0], "{seen:?}");
    c.wait_shipped("hist").await;

    // The lake's state now equals PostgreSQL's, value by value.
    let (_, columns, rows, _, _) = seen.last().unwrap();
    assert_eq!(&lake_text(&c, "hist.accounts", columns, None).await, rows);
    // At every instant, the columns the table had then (of those it has
    // now: `AS OF` answers with the current columns) hold what PostgreSQL held.
    let current = &seen.last().unwrap().1;
    for (what, columns, rows, at, _) in &seen {
        let kept: Vec<usize> = (0..columns.len()).filter(|i| current.contains(&columns[*i])).collect();
        let names: Vec<&str> = kept.iter().map(|i| columns[*i]).collect();
        let expected: Vec<Vec<Option<String>>> = rows.iter().map(|r| kept.iter().map(|i| r[*i].clone()).collect()).collect();
        assert_eq!(lake_text(&c, "hist.accounts", &names, Some(at)).await, expected, "AS OF after {what}");
    }
    assert_eq!(seen[1].2[0][4].as_deref(), Some("basic"));
    assert_eq!(seen[3].2[0][2].as_deref(), Some("2469135782.2469135782"));

    // The default's change shows in the history: a truncate, then every row.
    let ops = lake(
        &c,
        &format!(
            "SELECT _op, count(*) AS n FROM hist.\"accounts$changes\" WHERE _commit_ts > '{}' AND _commit_ts <= '{}' GROUP BY _op ORDER BY _op",
            seen[0].3, seen[1].3
        ),
    )
    .await;
    assert_eq!(ops, vec![json!({"_op": "insert", "n": 20}), json!({"_op": "truncate", "n": 1})]);
    // A diff across it: every row changed, to the default.
    let diff = lake(
        &c,
        &format!(
            "SELECT change, id, after.tier AS tier FROM table_diff('hist.accounts', '{}', '{}') ORDER BY id",
            seen[0].3, seen[1].3
        ),
    )
    .await;
    assert_eq!(diff.len(), 20, "{diff:?}");
    assert!(diff.iter().all(|d| d["change"] == "changed" && d["tier"] == "basic"), "{diff:?}");

    // A branch at the instant right after each schema change is that instant.
    for (i, (what, columns, rows, at, _)) in seen.iter().enumerate().skip(1) {
        let branch = format!("hist-{i}");
        let (status, report) = restore(&c, "hist", json!({ "to": at, "into": branch })).await;
        assert_eq!(status, StatusCode::OK, "branch after {what}: {report}");
        assert_eq!(&pg_text(&c, &branch, "accounts", columns).await, rows, "branch after {what}");
        let now: Vec<String> = c
            .rows(&branch, "SELECT attname FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", json!([]))
            .await
            .iter()
            .map(|r| r["attname"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(&now, columns, "branch after {what}");
    }
    // The last step changed no value, but the next insert: the branch has the new default.
    c.exec("hist-7", "INSERT INTO accounts (id, name) VALUES (100, 'new')").await;
    assert_eq!(c.rows("hist-7", "SELECT tier FROM accounts WHERE id = 100", json!([])).await, vec![json!({"tier": "gold"})]);
}

#[tokio::test]
async fn a_dropped_table_is_a_change_and_every_instant_after_one_restores() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-flush-interval", "100ms", "--archive-backup-interval", "off"]).await;
    let c = server.client();

    // A new tenant: a table, rows, then an update a moment later. The
    // instant between is restorable (a base backup followed the CREATE).
    c.exec("fresh", "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    c.exec("fresh", "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g").await;
    let between = instant(&c, "fresh").await;
    let rows = c.rows("fresh", "SELECT * FROM t ORDER BY id", json!([])).await;
    c.exec("fresh", "UPDATE t SET v = 'changed' WHERE id <= 10").await;
    let (status, report) = restore(&c, "fresh", json!({ "to": between, "into": "fresh-between" })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["baseBackup"]["reason"].as_str(), report["replayed"].as_u64()), (Some("schema"), Some(100)), "{report}");
    assert_eq!(c.rows("fresh-between", "SELECT * FROM t ORDER BY id", json!([])).await, rows);

    // A dropped table: empty from its drop on, its rows before; `drop` in its changes.
    c.exec("fresh", "CREATE TABLE gone (id int PRIMARY KEY, v text); INSERT INTO gone VALUES (1, 'a'), (2, 'b'), (3, 'c')").await;
    let before_drop = instant(&c, "fresh").await;
    c.exec("fresh", "DROP TABLE gone").await;
    let after_drop = instant(&c, "fresh").await;
    c.wait_shipped("fresh").await;
    assert_eq!(lake(&c, "SELECT count(*) AS n FROM fresh.gone").await, vec![json!({"n": 0})]);
    let then = lake(&c, &format!("SELECT id, v FROM fresh.gone FOR SYSTEM_TIME AS OF '{before_drop}' ORDER BY id")).await;
    assert_eq!(then, vec![json!({"id": 1, "v": "a"}), json!({"id": 2, "v": "b"}), json!({"id": 3, "v": "c"})]);
    let last = lake(&c, "SELECT _op FROM fresh.\"gone$changes\" ORDER BY _lsn DESC LIMIT 1").await;
    assert_eq!(last, vec![json!({"_op": "drop"})]);
    for (at, rows) in [(&before_drop, 3), (&after_drop, 0)] {
        let growth = lake(&c, &format!("SELECT \"rows\" FROM growth('fresh.gone', '{at}', '{at}', '1 hour')")).await;
        assert_eq!(growth, vec![json!({"rows": rows})], "growth at {at}");
    }
    let activity = lake(&c, "SELECT sum(drops) AS drops FROM activity('fresh.gone', '2000-01-01', '2200-01-01', '100 years')").await;
    assert_eq!(activity, vec![json!({"drops": 1})]);
    // Branches on either side of the drop.
    let (status, report) = restore(&c, "fresh", json!({ "to": after_drop, "into": "fresh-dropped" })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let (status, body) = c.query("fresh-dropped", "SELECT * FROM gone", json!([])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("42P01")), "{body}");
    let (status, report) = restore(&c, "fresh", json!({ "to": before_drop, "into": "fresh-kept" })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(c.rows("fresh-kept", "SELECT count(*) AS n FROM gone", json!([])).await, vec![json!({"n": 3})]);
    // Created again under the name, it continues in the same lake table.
    c.exec("fresh", "CREATE TABLE gone (id int PRIMARY KEY, v text); INSERT INTO gone VALUES (9, 'z')").await;
    c.wait_shipped("fresh").await;
    assert_eq!(lake(&c, "SELECT id, v FROM fresh.gone").await, vec![json!({"id": 9, "v": "z"})]);

    // Schema changes no write follows reach the lake: a dropped and a
    // renamed column, a table created empty.
    c.exec("fresh", "CREATE TABLE acc (id int PRIMARY KEY, note text, v int); INSERT INTO acc VALUES (1, 'n', 5)").await;
    c.wait_shipped("fresh").await;
    let before = instant(&c, "fresh").await;
    c.exec("fresh", "ALTER TABLE acc DROP COLUMN note; ALTER TABLE acc RENAME COLUMN v TO w; CREATE TABLE later (id int PRIMARY KEY)").await;
    let reached = tidelake_tests::eventually(Duration::from_secs(30), || async {
        let (status, body) = c.post("/sql", &json!({"sql": "SELECT * FROM fresh.acc"})).await;
        status == StatusCode::OK && body["rows"] == json!([{"id": 1, "w": 5}])
    })
    .await;
    assert!(reached, "the lake never took the schema: {}", c.post("/sql", &json!({"sql": "SELECT * FROM fresh.acc"})).await.1);
    let then = lake(&c, &format!("SELECT * FROM fresh.acc FOR SYSTEM_TIME AS OF '{before}'")).await;
    assert_eq!(then, vec![json!({"id": 1, "note": "n", "v": 5})]);
    assert_eq!(lake(&c, "SELECT count(*) AS n FROM fresh.later").await, vec![json!({"n": 0})]);

    // Without schema backups, a replay that would cross a schema change is refused.
    drop(server);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-enabled=false", "--archive-schema-backups=false", "--archive-backup-interval", "off"]).await;
    let c = server.client();
    c.exec("old", "CREATE TABLE t (id int PRIMARY KEY)").await;
    let (status, body) = c.post("/t/old/backups", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    c.exec("old", "ALTER TABLE t ADD COLUMN v text; INSERT INTO t VALUES (1, 'x')").await;
    let head = c.head_lsn("old").await;
    let (status, err) = restore(&c, "old", json!({ "to": format!("lsn:{head}"), "into": "old-b" })).await;
    assert_eq!((status, err["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("schema_changed_in_window")), "{err}");
}

/// A `numeric` in PostgreSQL's binary form, read as its text (the test's own
/// reading of the format, independent of the server's writing of it).
#[derive(Debug)]
struct NumericText(String);

impl<'a> tokio_postgres::types::FromSql<'a> for NumericText {
    fn from_sql(_: &tokio_postgres::types::Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let word = |i: usize| i16::from_be_bytes([raw[i], raw[i + 1]]);
        let (ndigits, weight, sign, dscale) = (word(0) as usize, word(2) as i32, word(4) as u16, word(6) as usize);
        let digits: Vec<i32> = (0..ndigits).map(|i| word(8 + 2 * i) as i32).collect();
        // Base-10000 digit k is worth 10000^(weight - k).
        let mut whole = String::new();
        for k in 0..=weight.max(0) {
            let d = digits.get(k as usize).copied().unwrap_or(0);
            if whole.is_empty() { whole = d.to_string() } else { whole.push_str(&format!("{d:04}")) }
        }
        if weight < 0 {
            whole = "0".into();
        }
        let mut fraction = String::new();
        for position in 1..=(dscale as i32 + 3) / 4 {
            let k = weight + position;
            let d = if k >= 0 { digits.get(k as usize).copied().unwrap_or(0) } else { 0 };
            fraction.push_str(&format!("{d:04}"));
        }
        fraction.truncate(dscale);
        let sign = if sign == 0x4000 { "-" } else { "" };
        Ok(Self(if dscale > 0 { format!("{sign}{whole}.{fraction}") } else { format!("{sign}{whole}") }))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::NUMERIC
    }
}

#[tokio::test]
async fn the_lake_answers_exact_values_in_every_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-flush-interval", "100ms"]).await;
    let c = server.client();
    c.exec(
        "exact",
        "CREATE TABLE v (id int PRIMARY KEY, big numeric(30,10), wide numeric(38,0), small numeric(6,2), n8 bigint, at timestamptz)",
    )
    .await;
    c.exec(
        "exact",
        "INSERT INTO v VALUES
           (1, 12345678901234567890.1234567891, 99999999999999999999999999999999999999, 1.50, 9223372036854775807, '2026-11-28 10:00:00.123456+00'),
           (2, -0.0000000001, -12345678901234567890123456789012345678, -0.05, -9223372036854775808, '1999-12-31 23:59:59.000001+00'),
           (3, 0, 0, 0, 0, NULL)",
    )
    .await;
    let from_pg = c.rows("exact", "SELECT id, big, wide, small, n8 FROM v ORDER BY id", json!([])).await;
    let t0 = instant(&c, "exact").await;
    c.exec("exact", "UPDATE v SET big = big * 2 WHERE id = 1").await;
    let t1 = instant(&c, "exact").await;
    c.wait_shipped("exact").await;

    // JSON: decimals as strings with every digit and their scale (as the
    // tenant API answers them), 64-bit integers whole, timestamps with µs and zone.
    let state = lake(&c, &format!("SELECT id, big, wide, small, n8 FROM exact.v FOR SYSTEM_TIME AS OF '{t0}' ORDER BY id")).await;
    assert_eq!(state, from_pg);
    assert_eq!(state[0]["big"], "12345678901234567890.1234567891");
    assert_eq!(state[1]["small"], "-0.05");
    assert_eq!(state[0]["n8"].as_i64(), Some(i64::MAX));
    let at = lake(&c, "SELECT at FROM exact.v ORDER BY id").await;
    assert_eq!(at[0]["at"], "2026-11-28T10:00:00.123456Z", "{at:?}");
    assert_eq!(at[1]["at"], "1999-12-31T23:59:59.000001Z", "{at:?}");
    // The diff, whose rows are structs.
    let (status, diff) = c.get(&format!("/diff?table=exact.v&from={}&to={}", urlencode(&t0), urlencode(&t1))).await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    assert_eq!(diff["rows"][0]["before"]["big"], "12345678901234567890.1234567891", "{diff}");
    assert_eq!(diff["rows"][0]["after"]["big"], "24691357802469135780.2469135782", "{diff}");
    // CSV.
    let csv = c
        .http
        .post(c.url("/sql"))
        .header("accept", "text/csv")
        .json(&json!({"sql": "SELECT id, big, wide, n8 FROM exact.v ORDER BY id"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv,
        "id,big,wide,n8\n1,24691357802469135780.2469135782,99999999999999999999999999999999999999,9223372036854775807\n\
         2,-0.0000000001,-12345678901234567890123456789012345678,-9223372036854775808\n3,0.0000000000,0,0\n"
    );

    // The Postgres wire front, binary (tokio-postgres's extended protocol) and text (psql).
    let address = server.pg.as_deref().expect("the wire front is on");
    let (host, port) = address.rsplit_once(':').unwrap();
    let (pg, connection) = tokio_postgres::connect(&format!("host={host} port={port} user=analyst dbname=lake"), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let rows = pg.query("SELECT big, wide, small FROM exact.v ORDER BY id", &[]).await.expect("query");
    let read: Vec<Vec<String>> = rows.iter().map(|r| (0..3).map(|i| r.get::<_, NumericText>(i).0).collect()).collect();
    assert_eq!(
        read,
        vec![
            vec!["24691357802469135780.2469135782", "99999999999999999999999999999999999999", "1.50"],
            vec!["-0.0000000001", "-12345678901234567890123456789012345678", "-0.05"],
            vec!["0.0000000000", "0", "0.00"],
        ]
    );
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-h", host, "-p", port, "-U", "analyst", "-d", "lake", "-c"])
        .arg("SELECT big, wide, small FROM exact.v ORDER BY id")
        .output()
        .expect("run psql (the test set-up installs postgresql-client)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout,
        "24691357802469135780.2469135782|99999999999999999999999999999999999999|1.50\n\
         -0.0000000001|-12345678901234567890123456789012345678|-0.05\n0.0000000000|0|0.00\n"
    );
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
