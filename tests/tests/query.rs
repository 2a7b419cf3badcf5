//! The query service: SQL over the lake with time travel, checked against
//! the states PostgreSQL itself had at recorded instants.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Client, Server};

/// The tenant's clock now, as a timestamptz literal, after its last commit.
pub(crate) async fn instant(c: &Client, tenant: &str) -> String {
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
pub(crate) async fn sql(c: &Client, query: &str) -> Vec<Value> {
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
    let resp = c.http.post(c.url("/sql")).header("content-type", "application/json").body("{not json").send().await.unwrap();
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
                    let sql = match rng.below(5) {
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
                        3 => format!("DELETE FROM t WHERE id % 11 = {}", rng.below(11)),
                        // A row moved to another key.
                        _ => format!("UPDATE t SET id = id + 100000 WHERE id = (SELECT max(id) FROM t WHERE id % 5 = {} AND id < 100000)", rng.below(5)),
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

/// Connect to the server's Postgres wire front.
pub(crate) async fn wire(server: &Server) -> tokio_postgres::Client {
    let address = server.pg.as_deref().expect("the wire front is on");
    let (host, port) = address.rsplit_once(':').unwrap();
    let config = format!("host={host} port={port} user=analyst dbname=lake");
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// The text rows of a simple-protocol query.
pub(crate) async fn simple(client: &tokio_postgres::Client, query: &str) -> Vec<Vec<Option<String>>> {
    let messages = client.simple_query(query).await.unwrap_or_else(|e| panic!("{query}: {e}"));
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_postgres_wire_front() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-flush-interval", "100ms"]).await;
    let c = server.client();
    c.exec("acme", "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, price numeric(8,2))").await;
    c.exec("acme", "INSERT INTO items VALUES (1, 'one', 10, 1.50), (2, 'two', 20, 2.25), (3, 'three', 30, NULL)").await;
    let t1 = instant(&c, "acme").await;
    let lsn1 = c.head_lsn("acme").await;
    c.exec("acme", "UPDATE items SET qty = 21, name = 'TWO' WHERE id = 2").await;
    c.exec("acme", "DELETE FROM items WHERE id = 3").await;
    c.wait_shipped("acme").await;

    let pg = wire(&server).await;
    // Simple protocol (psql's): time travel parses and answers.
    let q = "SELECT id, name, qty, price FROM acme.items";
    let current = vec![
        vec![Some("1".into()), Some("one".into()), Some("10".into()), Some("1.50".into())],
        vec![Some("2".into()), Some("TWO".into()), Some("21".into()), Some("2.25".into())],
    ];
    assert_eq!(simple(&pg, &format!("{q} ORDER BY id")).await, current);
    let then = vec![
        vec![Some("1".into()), Some("one".into()), Some("10".into()), Some("1.50".into())],
        vec![Some("2".into()), Some("two".into()), Some("20".into()), Some("2.25".into())],
        vec![Some("3".into()), Some("three".into()), Some("30".into()), None],
    ];
    assert_eq!(simple(&pg, &format!("{q} FOR SYSTEM_TIME AS OF '{t1}' ORDER BY id")).await, then);
    assert_eq!(simple(&pg, &format!("{q} VERSION AS OF {lsn1} ORDER BY id")).await, then);
    // Several statements in one message, session statements among them.
    let script = format!("SET application_name = 'grafana'; SHOW application_name; SELECT count(*) FROM acme.items TIMESTAMP AS OF '{t1}'");
    assert_eq!(simple(&pg, &script).await, vec![vec![Some("grafana".into())], vec![Some("3".into())]]);
    pg.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();

    // Extended protocol (drivers', BI tools'): typed columns and parameters,
    // whose types come from the query.
    let rows = pg
        .query(&format!("SELECT id, name, qty FROM acme.items FOR SYSTEM_TIME AS OF '{t1}' WHERE id >= $1 ORDER BY id"), &[&2i64])
        .await
        .unwrap();
    let got: Vec<(i64, String, i32)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got, vec![(2, "two".to_owned(), 20), (3, "three".to_owned(), 30)]);
    let statement = pg.prepare("SELECT name FROM acme.items WHERE id = $1").await.unwrap();
    assert_eq!(statement.params(), &[tokio_postgres::types::Type::INT8]);
    // A prepared statement reads the lake as it is when executed.
    let name = |rows: Vec<tokio_postgres::Row>| rows.first().map(|r| r.get::<_, String>(0));
    assert_eq!(name(pg.query(&statement, &[&1i64]).await.unwrap()), Some("one".into()));
    c.exec("acme", "UPDATE items SET name = 'ONE' WHERE id = 1").await;
    c.wait_shipped("acme").await;
    assert_eq!(name(pg.query(&statement, &[&1i64]).await.unwrap()), Some("ONE".into()));

    // Errors carry a SQLSTATE and leave the connection usable.
    let code = |e: tokio_postgres::Error| e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("no code: {e}"));
    assert_eq!(code(pg.simple_query("SELEC 1").await.unwrap_err()), "42601");
    assert_eq!(code(pg.simple_query("SELECT * FROM acme.nope").await.unwrap_err()), "42P01");
    assert_eq!(code(pg.simple_query("DELETE FROM acme.items").await.unwrap_err()), "42601");
    assert_eq!(code(pg.simple_query("SET search_path = acme").await.unwrap_err()), "42601");
    assert_eq!(code(pg.query("SELECT nope FROM acme.items", &[]).await.unwrap_err()), "42000");
    let e = pg.simple_query("WITH x AS (SELECT 1 AS a) SELECT * FROM x FOR SYSTEM_TIME AS OF '2026-01-01'").await.unwrap_err();
    let message = e.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message.contains("AS OF applies to lake tables"), "{message}");
    assert_eq!(simple(&pg, "SELECT count(*) FROM acme.items").await, vec![vec![Some("2".into())]]);

    // psql itself.
    let (host, port) = server.pg.as_deref().unwrap().rsplit_once(':').unwrap();
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-h", host, "-p", port, "-U", "analyst", "-d", "lake", "-c"])
        .arg(format!("SELECT id, name FROM acme.items FOR SYSTEM_TIME AS OF '{t1}' ORDER BY id"))
        .output()
        .expect("run psql (the test set-up installs postgresql-client)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "1|one\n2|two\n3|three\n");
}

/// Sizes as the dashboard writes them.
fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut n, mut i) = (bytes as f64, 0);
    while n >= 1024.0 && i < units.len() - 1 {
        n /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{bytes} B") } else { format!("{n:.1} {}", units[i]) }
}

#[tokio::test]
async fn the_dashboard_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(&dir.path().join("data"), &["--lake-flush-interval", "100ms", "--tenants-max-open", "2"]).await;
    let c = server.client();
    c.exec("acme", "CREATE TABLE items (id int PRIMARY KEY, name text)").await;
    c.exec("beta", "CREATE TABLE items (id int PRIMARY KEY, name text)").await;
    let start = instant(&c, "acme").await;
    c.exec("acme", "INSERT INTO items SELECT g, 'a' || g FROM generate_series(1, 4) g").await;
    c.exec("beta", "INSERT INTO items SELECT g, 'b' || g FROM generate_series(1, 9) g").await;
    c.exec("beta", "UPDATE items SET name = 'B' WHERE id <= 3").await;
    c.exec("beta", "DELETE FROM items WHERE id > 7").await;
    c.exec("acme", "DELETE FROM items WHERE id = 4").await;
    let acme_rows = c.rows("acme", "SELECT id, name FROM items ORDER BY id", json!([])).await;
    let beta_rows = c.rows("beta", "SELECT id, name FROM items ORDER BY id", json!([])).await;
    let acme_lsn = c.wait_shipped("acme").await;
    let beta_lsn = c.wait_shipped("beta").await;
    // A third tenant evicts the least recently used one: acme goes warm.
    c.exec("gamma", "CREATE TABLE notes (body text)").await;
    c.exec("gamma", "INSERT INTO notes VALUES ('hello')").await;
    let gamma_lsn = c.wait_shipped("gamma").await;
    assert_eq!(c.engine_state("acme").await, "hibernated");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let end = instant(&c, "beta").await;

    let page = dir.path().join("dashboard.png");
    let shown = tidelake_tests::run_python(
        "dashboard.py",
        &[
            &server.base,
            "items",
            &start,
            &end,
            "1 second",
            // A 64-bit integer past 2^53 shows every digit.
            "SELECT tenant, id, name, 9223372036854775807 AS big FROM all_tenants.items ORDER BY tenant, id",
            "SELECT * FROM acme.missing",
            page.to_str().unwrap(),
        ],
    );
    assert_eq!(shown["charts"], "ready", "{shown}");
    assert_eq!(shown["tenantsState"], "ready", "{shown}");

    // The growth chart draws what /growth answers, point by point, at the
    // height its axis gives each value; it starts empty and ends at the
    // row counts PostgreSQL has.
    let (_, growth) = c
        .get(&format!("/growth?table=items&start={}&end={}&interval=1%20second", urlencode(&start), urlencode(&end)))
        .await;
    let expected: Vec<(String, f64)> = growth["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["tenant"].as_str().unwrap().to_owned(), r["rows"].as_f64().unwrap()))
        .collect();
    let chart = &shown["growth"];
    let y_max = chart["yMax"].as_f64().unwrap();
    let mut drawn: Vec<(String, f64, String, f64)> = chart["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let value = p["value"].as_f64().unwrap();
            let cy = p["cy"].as_f64().unwrap();
            assert!((cy - (232.0 - value / y_max * 220.0)).abs() < 0.01, "point drawn at the wrong height: {p}");
            assert!(p["title"].as_str().unwrap().ends_with(&format!(": {value} rows")), "{p}");
            (p["tenant"].as_str().unwrap().to_owned(), value, p["at"].as_str().unwrap().to_owned(), cy)
        })
        .collect();
    drawn.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    assert_eq!(drawn.iter().map(|d| (d.0.clone(), d.1)).collect::<Vec<_>>(), expected);
    assert!(drawn.len() >= 4, "{shown}");
    for tenant in ["acme", "beta"] {
        let values: Vec<f64> = drawn.iter().filter(|d| d.0 == tenant).map(|d| d.1).collect();
        assert_eq!(values.first(), Some(&0.0), "{tenant} had no rows at the start");
    }
    let last = |tenant: &str| drawn.iter().rfind(|d| d.0 == tenant).unwrap().1;
    assert_eq!(last("acme"), acme_rows.len() as f64);
    assert_eq!(last("beta"), beta_rows.len() as f64);
    assert_eq!(y_max, 10.0, "the axis rounds the largest count (7) up");
    assert_eq!(chart["legend"], json!(["acme: 3 rows", "beta: 7 rows"]));

    // The activity chart: every change, by tenant and kind, bar heights to scale.
    let activity = &shown["activity"];
    let y_max = activity["yMax"].as_f64().unwrap();
    let mut sums = std::collections::BTreeMap::<(String, String), f64>::new();
    for bar in activity["bars"].as_array().unwrap() {
        let value = bar["value"].as_f64().unwrap();
        assert!((bar["height"].as_f64().unwrap() - value / y_max * 220.0).abs() < 0.01, "{bar}");
        *sums.entry((bar["tenant"].as_str().unwrap().into(), bar["op"].as_str().unwrap().into())).or_default() += value;
    }
    let sums: Vec<_> = sums.into_iter().map(|((t, op), v)| format!("{t} {op} {v}")).collect();
    assert_eq!(sums, ["acme deletes 1", "acme inserts 4", "beta deletes 2", "beta inserts 9", "beta updates 3"]);
    assert_eq!(activity["totals"], "acme: 5 changes · beta: 14 changes");

    // The tenant list: tiers, sizes and lake freshness as health has them.
    let (_, health) = c.get("/health").await;
    let tenants = shown["tenants"].as_array().unwrap();
    let names: Vec<&str> = tenants.iter().map(|t| t["tenant"].as_str().unwrap()).collect();
    assert_eq!(names.iter().copied().filter(|n| ["acme", "beta", "gamma"].contains(n)).count(), 3, "{shown}");
    for (tenant, tier, lsn) in [("acme", "warm", acme_lsn), ("beta", "hot", beta_lsn), ("gamma", "hot", gamma_lsn)] {
        let row = tenants.iter().find(|t| t["tenant"] == tenant).unwrap();
        assert_eq!(row["tier"], tier, "{row}");
        assert_eq!(row["lake"], "up to date", "{row}");
        assert_eq!(row["lsn"], lsn.to_string(), "{row}");
        let bytes = row["bytes"].as_u64().unwrap();
        assert!(bytes > 0, "{row}");
        assert_eq!(row["size"], human_bytes(bytes), "{row}");
        let status = health["tenants"].as_array().unwrap().iter().find(|t| t["tenant"] == tenant).unwrap();
        assert!(status["diskBytes"].as_u64().unwrap() > 0);
    }

    // Another range chosen in the form redraws: one point per tenant.
    let by_day = shown["growthByDay"]["points"].as_array().unwrap();
    assert_eq!(by_day.len(), 2, "{shown}");
    assert!(by_day.iter().all(|p| p["value"] == 0.0), "{shown}");

    // The SQL box answers the query, and shows the service's error.
    let sql_box = &shown["sql"];
    assert_eq!(sql_box["state"], "ready", "{sql_box}");
    let mut expected = vec![vec!["tenant".to_owned(), "id".into(), "name".into(), "big".into()]];
    for (tenant, rows) in [("acme", &acme_rows), ("beta", &beta_rows)] {
        for r in rows {
            expected.push(vec![tenant.into(), r["id"].to_string(), r["name"].as_str().unwrap().into(), i64::MAX.to_string()]);
        }
    }
    assert_eq!(sql_box["rows"], json!(expected));
    assert!(sql_box["status"].as_str().unwrap().starts_with("10 rows in "), "{sql_box}");
    let bad = &shown["badSql"];
    assert_eq!(bad["state"], "error", "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("no lake table acme.missing"), "{bad}");
    assert!(page.exists());
}

/// CPU seconds the process has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the command name (which may hold spaces), from field 3.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// POST /sql that must be refused: (status, code, message, seconds taken).
async fn refused(c: &Client, query: &str, accept: Option<&str>) -> (StatusCode, String, String, f64) {
    let started = std::time::Instant::now();
    let mut request = c.http.post(c.url("/sql")).json(&json!({ "sql": query }));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("POST /sql");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let elapsed = started.elapsed().as_secs_f64();
    assert!(!status.is_success(), "{query}: expected a refusal, got {status} {body}");
    let code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
    let message = body["error"]["message"].as_str().unwrap_or_default().to_owned();
    (status, code, message, elapsed)
}

#[tokio::test]
async fn every_lake_query_is_bounded_and_the_service_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let limits = [
        "--query-timeout", "2s",
        "--query-memory", "64MB",
        "--query-max-buckets", "100",
        "--query-max-result-rows", "10",
        "--query-max-result-bytes", "1MB",
    ];
    let server = Server::start(&dir.path().join("data"), &[&["--lake-flush-interval", "100ms"][..], &limits].concat()).await;
    let c = server.client();
    c.exec("acme", "CREATE TABLE items (id int PRIMARY KEY, name text, qty int)").await;
    c.exec("acme", "INSERT INTO items SELECT g, 'item ' || g, g * 10 FROM generate_series(1, 7) g").await;
    c.wait_shipped("acme").await;
    let expected = items(&c, "acme").await.into_iter().map(|r| json!({"id": r["id"], "name": r["name"]})).collect::<Vec<_>>();
    let ordinary = "SELECT id, name FROM acme.items ORDER BY id";
    assert_eq!(sql(&c, ordinary).await, expected);

    // Memory: a list of 5·10⁹ values is refused before it is built, a join
    // whose build side cannot spill when the pool is used up.
    let (status, code, message, elapsed) =
        refused(&c, "SELECT max(x) FROM unnest(generate_series(1, 5000000000)) t(x)", None).await;
    assert_eq!((status, code.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "query_memory_exceeded"), "{message}");
    assert!(message.contains("limit of 64 MB (--query-memory"), "{message}");
    assert!(elapsed < 2.0, "refused in {elapsed:.2}s, not at once");
    assert_eq!(sql(&c, ordinary).await, expected);
    let join = "SELECT count(*) FROM generate_series(1, 5000000) a(x) JOIN generate_series(1, 5000000) b(y) ON a.x = b.y";
    let (status, code, message, _) = refused(&c, join, None).await;
    assert_eq!((status, code.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "query_memory_exceeded"), "{message}");
    assert_eq!(sql(&c, ordinary).await, expected);
    // Under the limit the same kinds of query answer exactly.
    let small = "SELECT max(x) AS m, count(*) AS n FROM unnest(generate_series(1, 100000)) t(x)";
    assert_eq!(sql(&c, small).await, vec![json!({"m": 100000, "n": 100000})]);
    let join = "SELECT count(*) AS n FROM generate_series(1, 1000) a(x) JOIN generate_series(1, 1000) b(y) ON a.x = b.y";
    assert_eq!(sql(&c, join).await, vec![json!({"n": 1000})]);

    // Time: a query that needs little memory but runs for ever is cancelled
    // at the timeout, and its work stops.
    let endless = "SELECT max(x) FROM generate_series(1, 5000000000) t(x)";
    let (status, code, message, elapsed) = refused(&c, endless, None).await;
    assert_eq!((status, code.as_str()), (StatusCode::REQUEST_TIMEOUT, "query_timeout"), "{message}");
    assert!(message.contains("2s (--query-timeout)"), "{message}");
    assert!((1.9..10.0).contains(&elapsed), "answered after {elapsed:.2}s with a 2s timeout");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_seconds(server.pid());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = cpu_seconds(server.pid()) - before;
    assert!(busy < 1.0, "the server used {busy:.2} CPU seconds in the 2s after the timeout: the query still runs");
    assert_eq!(sql(&c, ordinary).await, expected);
    // A query of the catalogs runs under the same bounds: time, and rows.
    let endless = "SELECT max(length(a.proname || b.proname || c.proname)) FROM pg_catalog.pg_proc a, pg_catalog.pg_proc b, pg_catalog.pg_proc c";
    let (status, code, message, elapsed) = refused(&c, endless, None).await;
    assert_eq!((status, code.as_str()), (StatusCode::REQUEST_TIMEOUT, "query_timeout"), "{message}");
    assert!((1.9..10.0).contains(&elapsed), "answered after {elapsed:.2}s with a 2s timeout");
    let (status, code, message, _) = refused(&c, "SELECT proname FROM pg_catalog.pg_proc", None).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "result_too_large"), "{message}");
    assert_eq!(sql(&c, ordinary).await, expected);
    // The diff, growth and activity endpoints run under the same timeout.
    let (status, body) = c.get("/activity?table=acme.items&start=2026-01-01&end=2026-01-02&interval=6%20hours").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Buckets: refused before anything runs, with the count and the cap.
    let started = std::time::Instant::now();
    let (status, body) = c.get("/growth?table=items&start=2000-01-01&end=2200-01-01&interval=1%20second").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "too_many_buckets", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("asks for 6311433601 buckets") && message.contains("limit of 100 (--query-max-buckets)"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(1), "refusing took {:?}", started.elapsed());
    let (_, code, message, _) = refused(&c, "SELECT * FROM activity('acme.items', '2026-01-01', '2026-02-01', '1 hour')", None).await;
    assert_eq!(code, "too_many_buckets", "{message}");
    assert!(message.contains("asks for 745 buckets"), "{message}");
    assert_eq!(sql(&c, ordinary).await, expected);
    // Every number a client gives these endpoints is range-checked.
    for path in [
        "/growth?table=items&start=2026-01-01&end=2026-01-02&interval=0%20seconds",
        "/growth?table=items&start=2026-01-01&end=2026-01-02&interval=-1%20day",
        "/activity?table=items&start=2026-01-02&end=2026-01-01&interval=1%20hour",
        "/growth?table=items&start=1500-01-01&end=2026-01-01&interval=1%20year",
        "/growth?table=items&start=2026-01-01&end=99999-01-01&interval=1%20year",
        "/activity?table=items&start=2026-01-01&end=2026-01-02&interval=sometimes",
        "/diff?table=acme.items&from=99999999999999999999999&to=1",
    ] {
        let (status, body) = c.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(matches!(body["error"]["code"].as_str(), Some("invalid_argument" | "invalid_sql")), "{path}: {body}");
    }
    // Under the cap: a growth series answers every bucket with the row count.
    let (status, body) = c.get("/growth?table=items&start=2100-01-01&end=2100-01-03&interval=1%20day").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let counts: Vec<(String, u64)> =
        body["rows"].as_array().unwrap().iter().map(|r| (r["tenant"].as_str().unwrap().to_owned(), r["rows"].as_u64().unwrap())).collect();
    assert_eq!(counts, vec![("acme".to_owned(), 7); 3], "{body}");

    // Answers: refused past the rows or the bytes, in every encoding, and
    // without reading an endless query to its end.
    for accept in [None, Some("text/csv"), Some("application/vnd.apache.arrow.stream")] {
        let (status, code, message, _) = refused(&c, "SELECT x FROM generate_series(1, 11) t(x)", accept).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "result_too_large"), "{accept:?}: {message}");
        assert!(message.contains("more than 10 rows") && message.contains("--query-max-result-rows"), "{message}");
    }
    let (_, code, message, elapsed) = refused(&c, "SELECT x FROM generate_series(1, 5000000000) t(x)", None).await;
    assert_eq!(code, "result_too_large", "{message}");
    assert!(elapsed < 2.0, "refused after {elapsed:.2}s: the answer was read past the cap");
    let wide = "SELECT repeat('x', 200000) AS s FROM generate_series(1, 10) t(x)";
    for accept in [None, Some("text/csv"), Some("application/vnd.apache.arrow.stream")] {
        let (status, code, message, _) = refused(&c, wide, accept).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "result_too_large"), "{accept:?}: {message}");
        assert!(message.contains("larger than 1 MB") && message.contains("--query-max-result-bytes"), "{message}");
    }
    assert_eq!(sql(&c, ordinary).await, expected);
    let ten: Vec<Value> = (1..=10).map(|x| json!({ "x": x })).collect();
    assert_eq!(sql(&c, "SELECT x FROM generate_series(1, 10) t(x) ORDER BY x").await, ten);
    let csv = c.http.post(c.url("/sql")).header("accept", "text/csv").json(&json!({"sql": "SELECT x FROM generate_series(1, 10) t(x) ORDER BY x"}));
    let csv = csv.send().await.unwrap().text().await.unwrap();
    assert_eq!(csv, format!("x\n{}\n", (1..=10).map(|x| x.to_string()).collect::<Vec<_>>().join("\n")));

    // The Postgres wire front: the same timeout (SQLSTATE 57014) and memory
    // limit (53200), and the connection goes on.
    let pg = wire(&server).await;
    let code = |e: tokio_postgres::Error| e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("no code: {e}"));
    let started = std::time::Instant::now();
    assert_eq!(code(pg.simple_query(endless).await.unwrap_err()), "57014");
    let elapsed = started.elapsed().as_secs_f64();
    assert!((1.9..10.0).contains(&elapsed), "answered after {elapsed:.2}s with a 2s timeout");
    assert_eq!(simple(&pg, "SELECT count(*) FROM acme.items").await, vec![vec![Some("7".into())]]);
    let started = std::time::Instant::now();
    assert_eq!(code(pg.query(endless, &[]).await.unwrap_err()), "57014");
    assert!(started.elapsed() < Duration::from_secs(10), "extended protocol: {:?}", started.elapsed());
    let rows = pg.query("SELECT id, name FROM acme.items WHERE id <= $1 ORDER BY id", &[&2i32]).await.unwrap();
    let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, "item 1".to_owned()), (2, "item 2".to_owned())]);
    let e = pg.simple_query("SELECT max(x) FROM unnest(generate_series(1, 5000000000)) t(x)").await.unwrap_err();
    assert_eq!(code(e), "53200");
    assert_eq!(simple(&pg, "SELECT count(*) FROM acme.items").await, vec![vec![Some("7".into())]]);
    assert_eq!(sql(&c, ordinary).await, expected);
}
