//! A bounded, randomized request fuzzer over the HTTP and WebSocket bodies:
//! mutated JSON shapes, huge, negative and overflowing numbers, hostile
//! identifiers and random SQL. It runs with a fixed seed and a fresh one
//! (printed, so a failure can be replayed with `TIDELAKE_FUZZ_SEED`), and
//! asserts that no answer is a 5xx other than the documented 503 and 507,
//! that the server log has no panic, that the server still answers, and
//! that each tenant's change log still replays to its table.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Client, Server, Ws};

use crate::capture::{all_changes, lsns, replay};

/// xorshift64*: enough randomness for a fuzzer, and replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const TENANTS: [&str; 3] = ["fz-a", "fz-b", "fz-c"];

/// One character longer than a tenant id may be.
const LONG_NAME: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

const IDENTS: [&str; 12] = [
    "plain", "\"a$body$b\"", "\"x\"\"y\"", "\"$$\"", "\"ünï😀\"", "\"../../etc/passwd\"", "\"a__b\"", "\"tidelake\"",
    "\"select\"", "\"$f$\"", "\"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\"", "\"with space\"",
];

const TOKENS: [&str; 28] = [
    "SELECT", "FROM", "f", "WHERE", "(", ")", "'", "$$", ";", "BEGIN", "COMMIT", "ROLLBACK", "1/0", "pg_sleep(0.01)",
    "$1", "$2", "--", "/*", "*/", "NULL", "INTO", "tidelake.changes", "UNION", "*", "id", ",", "\\", "E'\\x00'",
];

fn number(rng: &mut Rng) -> Value {
    rng.pick(&[
        json!(0), json!(-1), json!(1), json!(i64::MAX), json!(i64::MIN), json!(u64::MAX), json!(1e308),
        json!(-1e308), json!(0.5), json!(2147483648u64), json!(-2147483649i64), json!(9007199254740993u64),
    ])
    .clone()
}

fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 4 } else { 7 }) {
        0 => Value::Null,
        1 => number(rng),
        2 => json!(rng.pick(&IDENTS)),
        3 => json!(rng.chance(50)),
        4 => Value::String("x".repeat(rng.below(3) * 5000)),
        5 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
        _ => json!({ "k": value(rng, depth + 1), "$$": "v" }),
    }
}

/// A statement: mostly the writes whose history is checked, then DDL with
/// hostile names, attempts on the capture machinery, and garbage.
fn sql(rng: &mut Rng) -> (String, Vec<Value>) {
    let id = json!(rng.below(40));
    match rng.below(14) {
        0..=2 => ("INSERT INTO f VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = excluded.v".into(), vec![id, value(rng, 0)]),
        3..=4 => ("UPDATE f SET v = $1 WHERE id = $2".into(), vec![value(rng, 0), id]),
        5 => ("DELETE FROM f WHERE id = $1".into(), vec![id]),
        6 => ("UPDATE f SET id = id + 100 WHERE id = $1".into(), vec![id]),
        7 => ("TRUNCATE f".into(), vec![]),
        8 => (format!("CREATE TABLE IF NOT EXISTS {} ({} int)", rng.pick(&IDENTS), rng.pick(&IDENTS)), vec![]),
        9 => (
            rng.pick(&[
                "ALTER TABLE f DISABLE TRIGGER tidelake_capture",
                "SET session_replication_role = replica",
                "DELETE FROM tidelake.changes",
                "DROP TRIGGER tidelake_capture ON f",
                "SET SESSION AUTHORIZATION postgres",
                "SELECT set_config('tidelake.next_lsn', '1', false)",
            ])
            .to_string(),
            vec![],
        ),
        10 => ("SELECT * FROM f WHERE id = $1".into(), vec![value(rng, 0)]),
        _ => {
            let words: Vec<&str> = (0..1 + rng.below(8)).map(|_| *rng.pick(&TOKENS)).collect();
            let params = (0..rng.below(3)).map(|_| value(rng, 0)).collect();
            (words.join(" "), params)
        }
    }
}

/// A request body: usually well-formed, sometimes mutated.
fn body(rng: &mut Rng, batch: bool) -> Vec<u8> {
    let statement = |rng: &mut Rng| {
        let (sql, params) = sql(rng);
        let mut s = json!({ "sql": sql });
        if !params.is_empty() || rng.chance(20) {
            s["params"] = Value::Array(params);
        }
        s
    };
    let mut v = if batch {
        json!({ "statements": (0..1 + rng.below(4)).map(|_| statement(rng)).collect::<Vec<_>>() })
    } else {
        statement(rng)
    };
    if rng.chance(10) {
        v["rowMode"] = json!(rng.pick(&["array", "object", "ARRAY", "x"]));
    }
    if rng.chance(10) {
        v["statementTimeout"] = number(rng);
    }
    if rng.chance(5) {
        v[*rng.pick(&["extra", "sql", "params", "statements"])] = value(rng, 0);
    }
    let text = v.to_string().into_bytes();
    match rng.below(20) {
        // Cut anywhere, also inside a UTF-8 character.
        0 => text[..rng.below(text.len().max(1))].to_vec(),
        1 => String::from_utf8_lossy(&text).replace('"', "'").into_bytes(),
        2 => b"[1,2,3]".to_vec(),
        3 => Vec::new(),
        _ => text,
    }
}

async fn fuzz(server: &Server, seed: u64, requests: usize) {
    let c = server.client();
    let mut rng = Rng(seed.max(1));
    for i in 0..requests {
        let tenant = *rng.pick(&TENANTS);
        let (status, path) = match rng.below(12) {
            0..=4 => (post(&c, &format!("/t/{tenant}/query"), body(&mut rng, false)).await, "query"),
            5 => (post(&c, &format!("/t/{tenant}/batch"), body(&mut rng, true)).await, "batch"),
            6 => (post(&c, &format!("/t/{tenant}/transaction"), body(&mut rng, true)).await, "transaction"),
            7 => {
                let (since, limit) = (number(&mut rng), number(&mut rng));
                (c.get(&format!("/t/{tenant}/changes?since={since}&limit={limit}&wait=0")).await.0, "changes")
            }
            8 => {
                let ack = json!({"consumer": rng.pick(&IDENTS), "lsn": number(&mut rng)});
                (post(&c, &format!("/t/{tenant}/changes/ack"), ack.to_string()).await, "ack")
            }
            9 => {
                let name = *rng.pick(&["..", "fz-a/../fz-b", "FZ", "%2e%2e", LONG_NAME, "fz-a%00", "-x"]);
                (c.get(&format!("/t/{name}/schema")).await.0, "bad tenant")
            }
            10 => (c.get(&format!("/t/{tenant}/{}", rng.pick(&["schema", "health", "ping", "backups", "config"]))).await.0, "read"),
            _ => (websocket(server, tenant, &mut rng).await, "ws"),
        };
        assert!(
            !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::INSUFFICIENT_STORAGE,
            "seed {seed}, request {i} ({path}): {status}"
        );
    }
}

async fn post(c: &Client, path: &str, body: impl Into<Vec<u8>>) -> StatusCode {
    let body = body.into();
    let content_type = if body.len() % 7 == 0 { "text/plain" } else { "application/json" };
    match c.http.post(c.url(path)).header("content-type", content_type).body(body).send().await {
        Ok(resp) => resp.status(),
        Err(err) => panic!("POST {path}: {err}"),
    }
}

/// A short WebSocket session of random frames; OK unless the server failed.
async fn websocket(server: &Server, tenant: &str, rng: &mut Rng) -> StatusCode {
    let mut ws = Ws::connect(&server.base, tenant).await;
    for _ in 0..1 + rng.below(5) {
        let frame = match rng.below(5) {
            0 => json!({"type": "subscribe", "id": rng.pick(&IDENTS), "since": number(rng), "tables": [rng.pick(&IDENTS)]}),
            1 => json!({"type": "unsubscribe", "id": value(rng, 0)}),
            2 => json!({"type": rng.pick(&["query", "QUERY", "nope"]), "id": value(rng, 0), "sql": sql(rng).0, "statementTimeout": number(rng)}),
            3 => value(rng, 0),
            _ => {
                let (sql, params) = sql(rng);
                json!({"type": "query", "id": 1, "sql": sql, "params": params})
            }
        };
        ws.send(frame).await;
    }
    while let Some(msg) = ws.recv(Duration::from_millis(300)).await {
        let code = msg["error"]["code"].as_str().unwrap_or("");
        assert!(!matches!(code, "engine_error" | "internal_error"), "{msg}");
    }
    StatusCode::OK
}

#[tokio::test]
async fn random_requests_break_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        &["--lake-enabled=false", "--tenants-statement-timeout", "2s", "--tenants-max-result-rows", "1000", "--tenants-max-body-bytes", "1000000"],
    )
    .await;
    let c = server.client();
    for tenant in TENANTS {
        c.exec(tenant, "CREATE TABLE f (id int PRIMARY KEY, v jsonb)").await;
    }
    let fresh = std::env::var("TIDELAKE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    for seed in [42, fresh] {
        println!("fuzz seed {seed} (replay with TIDELAKE_FUZZ_SEED={seed})");
        fuzz(&server, seed, 1500).await;
    }

    // The server answers; nothing panicked; every change log is gap-free
    // and replays to its table.
    let (status, _) = c.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "the server log has a panic:\n{log}");
    for tenant in TENANTS {
        let changes = all_changes(&c, tenant).await;
        assert_eq!(lsns(&changes), (1..=changes.len() as u64).collect::<Vec<_>>(), "{tenant}: LSNs not gap-free");
        let of_f: Vec<Value> = changes.into_iter().filter(|ch| ch["table"] == "f" && ch["schema"] == "public").collect();
        let replayed = replay(&of_f).remove("f").unwrap_or_default();
        let table: BTreeMap<i64, Value> = c
            .rows(tenant, "SELECT id, v FROM f ORDER BY id", json!([]))
            .await
            .into_iter()
            .map(|row| (row["id"].as_i64().unwrap(), row))
            .collect();
        assert_eq!(replayed, table, "{tenant}: the change log does not replay to the table");
        let who = c.rows(tenant, "SELECT current_user AS u", json!([])).await;
        assert_eq!(who[0]["u"], "tenant");
    }
}
