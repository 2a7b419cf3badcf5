//! The query service: SQL over the lake with time travel, checked against
//! the states PostgreSQL itself had at recorded instants.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Client, Server};

/// The tenant's clock now, as a timestamptz literal, after its last commit.
async fn instant(c: &Client, tenant: &str) -> String {
    let rows = c
        .rows(
            tenant,
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t",
            json!([]),
        )
        .await;
    // Commits after this instant get a later commit time.
    tokio::time::sleep(Duration::from_millis(20)).await;
    rows[0]["t"].as_str().unwrap().to_owned()
}

async fn items(c: &Client, tenant: &str) -> Vec<Value> {
    c.rows(tenant, "SELECT id, name, qty FROM items ORDER BY id", json!([])).await
}

/// `POST /sql`, which must succeed; returns the rows.
async fn sql(c: &Client, query: &str) -> Vec<Value> {
    let (status, body) = c.post("/sql", &json!({ "sql": query })).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    assert_eq!(body["rowCount"].as_u64().unwrap() as usize, body["rows"].as_array().unwrap().len());
    body["rows"].as_array().unwrap().clone()
}

#[tokio::test]
async fn as_of_any_instant_equals_what_postgres_had() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-flush-interval", "100ms"]).await;
    let c = server.client();
    c.exec("acme", "CREATE TABLE items (id int PRIMARY KEY, name text, qty int)").await;
    c.exec("acme", "INSERT INTO items SELECT g, 'item ' || g, g * 10 FROM generate_series(1, 5) g").await;
    let t1 = instant(&c, "acme").await;
    let (state1, lsn1) = (items(&c, "acme").await, c.head_lsn("acme").await);

    c.exec("acme", "UPDATE items SET qty = qty + 1, name = NULL WHERE id <= 2").await;
    c.exec("acme", "DELETE FROM items WHERE id = 5").await;
    c.exec("acme", "INSERT INTO items VALUES (6, 'six', 60)").await;
    let t2 = instant(&c, "acme").await;
    let state2 = items(&c, "acme").await;

    c.exec("acme", "TRUNCATE items").await;
    c.exec("acme", "INSERT INTO items VALUES (7, 'seven', 70), (8, 'eight', 80)").await;
    c.exec("acme", "UPDATE items SET qty = 71 WHERE id = 7").await;
    let state3 = items(&c, "acme").await;
    c.wait_shipped("acme").await;

    let q = |clause: &str| format!("SELECT id, name, qty FROM acme.items {clause} ORDER BY id");
    assert_eq!(sql(&c, &q("")).await, state3);
    assert_eq!(sql(&c, &q(&format!("FOR SYSTEM_TIME AS OF '{t1}'"))).await, state1);
    assert_eq!(sql(&c, &q(&format!("TIMESTAMP AS OF '{t2}'"))).await, state2);
    assert_eq!(sql(&c, &q(&format!("VERSION AS OF {lsn1}"))).await, state1);
    // Before the tenant existed: empty; in the future: the current state.
    assert_eq!(sql(&c, &q("FOR SYSTEM_TIME AS OF '2000-01-01 00:00:00+00'")).await, Vec::<Value>::new());
    assert_eq!(sql(&c, &q("FOR SYSTEM_TIME AS OF '2999-01-01 00:00:00+00'")).await, state3);

    // Two instants in one query, joined.
    let joined = sql(
        &c,
        &format!(
            "SELECT a.id, a.qty AS before, b.qty AS after \
             FROM acme.items FOR SYSTEM_TIME AS OF '{t1}' AS a \
             JOIN acme.items FOR SYSTEM_TIME AS OF '{t2}' AS b ON a.id = b.id ORDER BY a.id"
        ),
    )
    .await;
    let expected: Vec<Value> = state1
        .iter()
        .filter_map(|a| {
            let b = state2.iter().find(|b| b["id"] == a["id"])?;
            Some(json!({"id": a["id"], "before": a["qty"], "after": b["qty"]}))
        })
        .collect();
    assert_eq!(joined, expected);
    // In a CTE and a subquery.
    let counted = sql(
        &c,
        &format!(
            "WITH old AS (SELECT * FROM acme.items FOR SYSTEM_TIME AS OF '{t1}') \
             SELECT count(*) AS n FROM old WHERE id NOT IN (SELECT id FROM acme.items TIMESTAMP AS OF '{t2}')"
        ),
    )
    .await;
    assert_eq!(counted, vec![json!({"n": 1})]);

    // What changed between two instants (or LSNs): the difference of the
    // two states PostgreSQL had.
    let diff = |from: &[Value], to: &[Value]| -> Vec<Value> {
        let mut ids: Vec<i64> = from.iter().chain(to).map(|r| r["id"].as_i64().unwrap()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .filter_map(|id| {
                let a = from.iter().find(|r| r["id"] == id).cloned().unwrap_or(Value::Null);
                let b = to.iter().find(|r| r["id"] == id).cloned().unwrap_or(Value::Null);
                let change = match (a.is_null(), b.is_null()) {
                    (true, _) => "added",
                    (_, true) => "removed",
                    _ if a == b => return None,
                    _ => "changed",
                };
                Some(json!({"change": change, "id": id, "before": a, "after": b}))
            })
            .collect()
    };
    let diffed = sql(&c, &format!("SELECT * FROM table_diff('acme.items', '{t1}', '{t2}') ORDER BY id")).await;
    assert_eq!(diffed, diff(&state1, &state2));
    assert_eq!(diffed.len(), 4);
    let lsn_head = c.head_lsn("acme").await;
    let by_lsn = sql(&c, &format!("SELECT * FROM table_diff('acme.items', {lsn1}, {lsn_head}) ORDER BY id")).await;
    assert_eq!(by_lsn, diff(&state1, &state3));
    let (status, body) = c.get(&format!("/diff?table=acme.items&from={lsn1}&to={}", urlencode(&t2))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut rows = body["rows"].as_array().unwrap().clone();
    rows.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(rows, diff(&state1, &state2));

    // Growth: the row count at an instant is the size of the state then.
    for (at, state) in [(&t1, &state1), (&t2, &state2)] {
        let rows = sql(&c, &format!("SELECT tenant, rows FROM growth('acme.items', '{at}', '{at}', '1 hour')")).await;
        assert_eq!(rows, vec![json!({"tenant": "acme", "rows": state.len()})], "at {at}");
    }
    // Activity: every change of the log, by kind, in one interval.
    let log = {
        let (_, page) = c.get("/t/acme/changes?since=0&limit=10000").await;
        page["changes"].as_array().unwrap().clone()
    };
    let kinds = |op: &str| log.iter().filter(|ch| ch["op"] == op).count();
    let (status, body) = c
        .get("/activity?table=items&start=2026-01-01&end=2027-01-01&interval=1%20year")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let year = &body["rows"][0];
    assert_eq!(
        (year["inserts"].as_u64(), year["updates"].as_u64(), year["deletes"].as_u64(), year["truncates"].as_u64()),
        (Some(kinds("insert") as u64), Some(kinds("update") as u64), Some(kinds("delete") as u64), Some(kinds("truncate") as u64)),
        "{body}"
    );
    let (status, body) = c.get("/growth?table=items&start=2100-01-01&end=2100-01-01").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["rows"], state3.len());

    // A table dropped and created again: its state starts anew, and the
    // old table's state is still there at earlier instants.
    let t3 = instant(&c, "acme").await;
    c.exec("acme", "DROP TABLE items; CREATE TABLE items (id int PRIMARY KEY, name text, qty bigint)").await;
    c.exec("acme", "INSERT INTO items VALUES (7, 'again', 1)").await;
    c.wait_shipped("acme").await;
    assert_eq!(sql(&c, &q("")).await, vec![json!({"id": 7, "name": "again", "qty": 1})]);
    assert_eq!(sql(&c, &q(&format!("FOR SYSTEM_TIME AS OF '{t3}'"))).await, state3);
    assert_eq!(sql(&c, &q(&format!("FOR SYSTEM_TIME AS OF '{t1}'"))).await, state1);

    // The changelog and the snapshots, also as of an LSN.
    let head = c.head_lsn("acme").await;
    assert_eq!(sql(&c, "SELECT count(*) AS n FROM acme.\"items$changes\"").await, vec![json!({"n": head})]);
    assert_eq!(
        sql(&c, &format!("SELECT count(*) AS n FROM acme.\"items$changes\" VERSION AS OF {lsn1}")).await,
        vec![json!({"n": lsn1})]
    );
    let snapshots = sql(&c, "SELECT max(lsn_to) AS lsn, count(*) AS n FROM acme.\"items$snapshots\"").await;
    assert_eq!(snapshots[0]["lsn"], head);
    assert!(snapshots[0]["n"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn all_tenants_and_the_fronts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-flush-interval", "100ms"]).await;
    let c = server.client();
    c.exec("acme", "CREATE TABLE items (id int PRIMARY KEY, name text)").await;
    c.exec("acme", "INSERT INTO items VALUES (1, 'a'), (2, 'b')").await;
    c.exec("beta", "CREATE TABLE items (id int PRIMARY KEY, name text, color text)").await;
    c.exec("beta", "INSERT INTO items VALUES (1, 'x', 'red')").await;
    c.exec("beta", "CREATE TABLE log (line text)").await;
    c.exec("beta", "INSERT INTO log VALUES ('no key')").await;
    c.wait_shipped("acme").await;
    c.wait_shipped("beta").await;

    // Across tenants, by column name; a column a tenant lacks is NULL.
    assert_eq!(
        sql(&c, "SELECT tenant, id, name, color FROM all_tenants.items ORDER BY tenant, id").await,
        vec![
            json!({"tenant": "acme", "id": 1, "name": "a", "color": null}),
            json!({"tenant": "acme", "id": 2, "name": "b", "color": null}),
            json!({"tenant": "beta", "id": 1, "name": "x", "color": "red"}),
        ]
    );

    // Arrow IPC and CSV by Accept.
    let resp = c
        .http
        .post(c.url("/sql"))
        .header("accept", "text/csv")
        .json(&json!({"sql": "SELECT id, name FROM acme.items ORDER BY id"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/csv");
    assert_eq!(resp.text().await.unwrap(), "id,name\n1,a\n2,b\n");
    let resp = c
        .http
        .post(c.url("/sql"))
        .header("accept", "application/vnd.apache.arrow.stream")
        .json(&json!({"sql": "SELECT id FROM acme.items"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/vnd.apache.arrow.stream");
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(&bytes[..4], &[0xff, 0xff, 0xff, 0xff], "an Arrow IPC stream starts with a continuation marker");

    // Clear errors for what cannot be answered.
    let error = |status: StatusCode, body: &Value| (status, body["error"]["code"].as_str().unwrap_or_default().to_owned());
    let (s, b) = c.post("/sql", &json!({"sql": "WITH x AS (SELECT 1 AS a) SELECT * FROM x FOR SYSTEM_TIME AS OF '2026-01-01'"})).await;
    assert_eq!(error(s, &b), (StatusCode::BAD_REQUEST, "invalid_sql".into()), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("AS OF applies to lake tables"), "{b}");
    let (s, b) = c.post("/sql", &json!({"sql": "SELECT * FROM acme.items AT(TIMESTAMP => '2026-01-01')"})).await;
    assert_eq!(error(s, &b), (StatusCode::BAD_REQUEST, "invalid_sql".into()), "{b}");
    let (s, b) = c.post("/sql", &json!({"sql": "CREATE TABLE t (a int)"})).await;
    assert_eq!(error(s, &b), (StatusCode::BAD_REQUEST, "invalid_sql".into()), "{b}");
    let (s, b) = c.post("/sql", &json!({"sql": "COPY (SELECT 1) TO '/tmp/x.csv'"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = c.post("/sql", &json!({"sql": "SELECT * FROM acme.nope"})).await;
    assert_eq!(error(s, &b), (StatusCode::NOT_FOUND, "not_found".into()), "{b}");
    let (s, b) = c.post("/sql", &json!({"sql": "SELECT * FROM beta.log"})).await;
    assert_eq!(error(s, &b), (StatusCode::BAD_REQUEST, "invalid_sql".into()), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("log$changes"), "{b}");
    assert_eq!(sql(&c, "SELECT line FROM beta.\"log$changes\"").await, vec![json!({"line": "no key"})]);
    let (s, b) = c.post("/sql", &json!({"sql": "SELEC 1"})).await;
    assert_eq!(error(s, &b), (StatusCode::BAD_REQUEST, "invalid_sql".into()), "{b}");
    let (s, b) = c.post("/sql", &json!({"sql": "SELECT nope FROM acme.items"})).await;
    assert_eq!(error(s, &b), (StatusCode::BAD_REQUEST, "query_failed".into()), "{b}");
    let resp = c.http.post(c.url("/sql")).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // One query from the shell.
    let out = std::process::Command::new(tidelake_tests::binary())
        .args(["sql", "--data-dir"])
        .arg(&server.data_dir)
        .arg("SELECT id, name FROM acme.items ORDER BY id")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("| 1  | a    |") && stdout.contains("(2 rows)"), "{stdout}");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A small deterministic generator for workloads (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

#[tokio::test]
async fn a_generated_workload_reads_back_exactly_at_every_instant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-flush-interval", "200ms"]).await;
    let c = server.client();
    let tenants = ["gen-a", "gen-b", "gen-c"];
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    // Per tenant: (instant, state) after each phase.
    let mut recorded: Vec<Vec<(String, Vec<Value>)>> = vec![Vec::new(); tenants.len()];
    for t in tenants {
        c.exec(t, "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, s text)").await;
    }
    let mut next_id = [0u64; 3];
    for phase in 0..6 {
        for (k, t) in tenants.iter().enumerate() {
            if phase == 3 && k == 1 {
                c.exec(t, "TRUNCATE t").await;
            }
            if phase == 4 {
                c.exec(t, "ALTER TABLE t ADD COLUMN w int").await;
            }
            for _ in 0..4 {
                let mut statements = Vec::new();
                for _ in 0..(1 + rng.below(5)) {
                    let sql = match rng.below(4) {
                        0 | 1 => {
                            next_id[k] += 1;
                            format!("INSERT INTO t (id, v, s) VALUES ({}, {}, 's{}')", next_id[k], rng.below(1000), rng.below(50))
                        }
                        2 => format!(
                            "UPDATE t SET v = v + {}, s = {} WHERE id % 7 = {}",
                            1 + rng.below(9),
                            if rng.below(3) == 0 { "NULL".to_owned() } else { format!("'u{}'", rng.below(50)) },
                            rng.below(7)
                        ),
                        _ => format!("DELETE FROM t WHERE id % 11 = {}", rng.below(11)),
                    };
                    statements.push(json!({"sql": sql}));
                }
                if phase >= 4 {
                    statements.push(json!({"sql": format!("UPDATE t SET w = v * 2 WHERE id % 3 = {}", rng.below(3))}));
                }
                let (status, body) = c.post(&format!("/t/{t}/transaction"), &json!({"statements": statements})).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
            let at = instant(&c, t).await;
            let state = c.rows(t, "SELECT id, v, s FROM t ORDER BY id", json!([])).await;
            recorded[k].push((at, state));
        }
    }
    for t in tenants {
        c.wait_shipped(t).await;
    }
    for (k, t) in tenants.iter().enumerate() {
        for (phase, (at, state)) in recorded[k].iter().enumerate() {
            let got = sql(&c, &format!("SELECT id, v, s FROM \"{t}\".t FOR SYSTEM_TIME AS OF '{at}' ORDER BY id")).await;
            assert_eq!(&got, state, "{t} after phase {phase}");
        }
        // The difference between two instants is the difference of the states.
        let ((from, before), (to, after)) = (&recorded[k][1], &recorded[k][5]);
        let diffed = sql(
            &c,
            &format!(
                "SELECT change, id, before.v AS v0, before.s AS s0, after.v AS v1, after.s AS s1 \
                 FROM table_diff('{t}.t', '{from}', '{to}') ORDER BY id"
            ),
        )
        .await;
        let mut ids: Vec<i64> = before.iter().chain(after).map(|r| r["id"].as_i64().unwrap()).collect();
        ids.sort_unstable();
        ids.dedup();
        let expected: Vec<Value> = ids
            .into_iter()
            .filter_map(|id| {
                let a = before.iter().find(|r| r["id"] == id);
                let b = after.iter().find(|r| r["id"] == id);
                let field = |r: Option<&Value>, f: &str| r.map_or(Value::Null, |r| r[f].clone());
                let change = match (a, b) {
                    (None, _) => "added",
                    (_, None) => "removed",
                    (Some(a), Some(b)) if a == b => {
                        // Same id, v, s: a change only if w differs (phase 5 added it).
                        return None;
                    }
                    _ => "changed",
                };
                Some(json!({"change": change, "id": id, "v0": field(a, "v"), "s0": field(a, "s"),
                            "v1": field(b, "v"), "s1": field(b, "s")}))
            })
            .collect();
        // Rows whose only difference is the added column w are "changed" too.
        let diffed: Vec<Value> = diffed
            .into_iter()
            .filter(|r| !(r["change"] == "changed" && r["v0"] == r["v1"] && r["s0"] == r["s1"]))
            .collect();
        assert_eq!(diffed, expected, "{t}: table_diff between phases 1 and 5");
    }
}
