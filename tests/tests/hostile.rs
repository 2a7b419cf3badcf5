//! A tenant's SQL, and any client, trying to break the history, another
//! tenant or the server: every attempt is refused with the error a user
//! would check, nothing changes, and the tenant and the server keep serving.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Client, Server, Ws, eventually};

use crate::capture::{all_changes, lsns};

/// A statement that must be refused with `code` (and `status`).
async fn refused(c: &Client, tenant: &str, sql: &str, status: StatusCode, code: &str) -> Value {
    let (got, body) = c.query(tenant, sql, json!([])).await;
    assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{sql}: {body}");
    body
}

/// Tenant SQL runs as an ordinary role: it can neither switch capture off,
/// nor forge or erase the change log, nor become the superuser, nor reach
/// the server's files; each attempt is refused with 42501 and changes
/// nothing, and capture goes on with the next write.
#[tokio::test]
async fn tenant_sql_cannot_switch_off_forge_or_erase_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-enabled=false"]).await;
    let c = server.client();
    history_cannot_be_switched_off_forged_or_erased(&c, "acme").await;
}

/// The test above against any target (the server, the edge).
pub(crate) async fn history_cannot_be_switched_off_forged_or_erased(c: &Client, tenant: &str) {
    c.exec(tenant, "CREATE TABLE todos (id serial PRIMARY KEY, title text NOT NULL)").await;
    c.exec(tenant, "INSERT INTO todos (title) VALUES ('one'), ('two')").await;
    let before = all_changes(c, tenant).await;
    assert_eq!(lsns(&before), [1, 2]);
    let capture_fn = c
        .rows(tenant, "SELECT 'tidelake.capture_' || 'todos'::regclass::oid AS f", json!([]))
        .await[0]["f"]
        .as_str()
        .unwrap()
        .to_owned();

    let forbidden = [
        "ALTER TABLE todos DISABLE TRIGGER tidelake_capture".to_owned(),
        "ALTER TABLE todos DISABLE TRIGGER ALL".to_owned(),
        "ALTER TABLE todos ENABLE REPLICA TRIGGER tidelake_capture".to_owned(),
        "ALTER TABLE todos DISABLE TRIGGER tidelake_capture_truncate".to_owned(),
        "DROP TRIGGER tidelake_capture ON todos".to_owned(),
        "DROP TRIGGER tidelake_capture_truncate ON todos".to_owned(),
        "CREATE OR REPLACE TRIGGER tidelake_capture AFTER INSERT ON todos FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()".to_owned(),
        "ALTER TRIGGER tidelake_capture ON todos RENAME TO quiet".to_owned(),
        "DO $$ BEGIN EXECUTE 'ALTER TABLE todos DISABLE TRIGGER tidelake_capture'; INSERT INTO todos (title) VALUES ('hidden'); END $$".to_owned(),
        "SET session_replication_role = replica".to_owned(),
        "SELECT set_config('session_replication_role', 'replica', false)".to_owned(),
        "SET SESSION AUTHORIZATION postgres".to_owned(),
        "SET ROLE postgres".to_owned(),
        "SELECT set_config('role', 'postgres', false)".to_owned(),
        "DO $$ BEGIN EXECUTE 'SET SESSION AUTHORIZATION postgres'; END $$".to_owned(),
        "DELETE FROM tidelake.changes".to_owned(),
        "TRUNCATE tidelake.changes".to_owned(),
        "INSERT INTO tidelake.changes VALUES (3, 1, 1, 'delete', 'public', 'todos', NULL, '{\"id\": 1}')".to_owned(),
        "UPDATE tidelake.changes SET op = 'delete' WHERE lsn = 1".to_owned(),
        "UPDATE tidelake.meta SET value = '0' WHERE key = 'capture_version'".to_owned(),
        "DELETE FROM tidelake.schema_versions".to_owned(),
        "ALTER TABLE tidelake.changes DISABLE ROW LEVEL SECURITY".to_owned(),
        "CREATE TRIGGER eraser AFTER INSERT ON tidelake.changes FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()".to_owned(),
        format!("CREATE OR REPLACE FUNCTION {capture_fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"),
        format!("ALTER FUNCTION {capture_fn}() OWNER TO tenant"),
        "DROP FUNCTION tidelake.sync_schema()".to_owned(),
        "CREATE FUNCTION tidelake.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'".to_owned(),
        "SELECT pg_read_file('/etc/passwd')".to_owned(),
        "SELECT pg_ls_dir('.')".to_owned(),
        "COPY todos TO '/tmp/tidelake-hostile-copy'".to_owned(),
        "COPY todos FROM PROGRAM 'echo 1'".to_owned(),
        "SELECT lo_import('/etc/passwd')".to_owned(),
        "SELECT lo_export(1, '/tmp/tidelake-hostile-lo')".to_owned(),
        "ALTER SYSTEM SET work_mem = '1GB'".to_owned(),
        "CREATE ROLE intruder SUPERUSER".to_owned(),
        "ALTER ROLE tenant SUPERUSER".to_owned(),
        "ALTER ROLE tenant BYPASSRLS".to_owned(),
        "GRANT pg_read_server_files TO tenant".to_owned(),
        "LOAD 'plpgsql'".to_owned(),
        "CREATE FUNCTION evil() RETURNS int LANGUAGE c AS 'libc', 'getpid'".to_owned(),
        "SELECT pg_terminate_backend(pg_backend_pid())".to_owned(),
    ];
    for sql in &forbidden {
        refused(c, tenant, sql, StatusCode::FORBIDDEN, "42501").await;
    }
    // The same inside a transaction: the whole transaction is refused.
    let (status, body) = c
        .post(
            &format!("/t/{tenant}/transaction"),
            &json!({"statements": [
                {"sql": "INSERT INTO todos (title) VALUES ('in tx')"},
                {"sql": "ALTER TABLE todos DISABLE TRIGGER tidelake_capture"},
                {"sql": "INSERT INTO todos (title) VALUES ('unseen')"}]}),
        )
        .await;
    assert_eq!((status, &body["error"]["code"], &body["error"]["statementIndex"]), (StatusCode::FORBIDDEN, &json!("42501"), &json!(1)), "{body}");

    // Nothing changed: the log, the rows, who the session is, the triggers.
    assert_eq!(all_changes(c, tenant).await, before);
    assert_eq!(c.rows(tenant, "SELECT count(*) AS n FROM todos", json!([])).await[0]["n"], 2);
    assert_eq!(
        c.rows(tenant, "SELECT current_user AS cu, session_user AS su, current_setting('is_superuser') AS s", json!([])).await[0],
        json!({"cu": "tenant", "su": "tenant", "s": "off"})
    );
    let triggers = c
        .rows(
            tenant,
            "SELECT tgname, tgenabled::text AS enabled FROM pg_trigger WHERE tgrelid = 'todos'::regclass ORDER BY tgname",
            json!([]),
        )
        .await;
    assert_eq!(
        triggers,
        [json!({"tgname": "tidelake_capture", "enabled": "O"}), json!({"tgname": "tidelake_capture_truncate", "enabled": "O"})]
    );
    assert!(!std::path::Path::new("/tmp/tidelake-hostile-copy").exists());

    // A session cannot get back what it never had: RESET / DEFAULT keep it
    // the tenant's, for this request and the next.
    c.exec(tenant, "RESET SESSION AUTHORIZATION; SET SESSION AUTHORIZATION DEFAULT; RESET ROLE").await;
    assert_eq!(c.rows(tenant, "SELECT current_user AS cu", json!([])).await[0]["cu"], "tenant");

    // A forged next LSN (the setting capture keeps it in) cannot reorder,
    // reuse or skip LSNs: the log goes on gap-free, in commit order; one
    // naming a taken LSN makes the write fail, nothing else.
    c.exec(
        tenant,
        "BEGIN; SELECT set_config('tidelake.next_lsn', '1', true); INSERT INTO todos (title) VALUES ('three');
         SELECT set_config('tidelake.next_lsn', '1000', true); INSERT INTO todos (title) VALUES ('four'); COMMIT",
    )
    .await;
    refused(c, tenant, "SET tidelake.next_lsn = '2'; UPDATE todos SET title = 'lost' WHERE id = 1", StatusCode::CONFLICT, "23505").await;
    c.exec(tenant, "SET tidelake.next_lsn = '999'; UPDATE todos SET title = 'ONE' WHERE id = 1").await;
    let after = all_changes(c, tenant).await;
    assert_eq!(lsns(&after), [1, 2, 3, 4, 5]);
    assert_eq!(after[..2], before[..]);
    let tail: Vec<(&str, &Value)> = after[2..].iter().map(|ch| (ch["op"].as_str().unwrap(), &ch["new"]["title"])).collect();
    assert_eq!(tail, [("insert", &json!("three")), ("insert", &json!("four")), ("update", &json!("ONE"))]);

    // The tenant may read its own history.
    let read = c.rows(tenant, "SELECT count(*) AS n FROM tidelake.changes", json!([])).await;
    assert_eq!(read[0]["n"], 5);
}

/// Everything an application does keeps working under the tenant role.
#[tokio::test]
async fn applications_keep_everything_they_use() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-enabled=false"]).await;
    let c = server.client();
    c.exec(
        "shop",
        "CREATE SCHEMA billing;
         CREATE TABLE billing.invoices (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner text NOT NULL, amount numeric(12,2) NOT NULL);
         CREATE TABLE audit (at timestamptz DEFAULT now(), what text);
         CREATE FUNCTION log_invoice() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit (what) VALUES ('invoice ' || NEW.id); RETURN NEW; END $$;
         CREATE TRIGGER on_invoice AFTER INSERT ON billing.invoices FOR EACH ROW EXECUTE FUNCTION log_invoice();
         CREATE VIEW totals AS SELECT owner, sum(amount) AS total FROM billing.invoices GROUP BY owner;
         ALTER TABLE billing.invoices ENABLE ROW LEVEL SECURITY;
         CREATE POLICY mine ON billing.invoices USING (owner = current_setting('app.uid', true));
         ALTER TABLE billing.invoices FORCE ROW LEVEL SECURITY;
         CREATE SEQUENCE tickets;
         CREATE INDEX ON billing.invoices (owner);
         CREATE TYPE mood AS ENUM ('ok', 'great');
         CREATE DOMAIN positive AS int CHECK (VALUE > 0);
         CREATE TABLE feelings (id positive PRIMARY KEY, m mood)",
    )
    .await;
    c.exec("shop", "SET app.uid = 'ann'; INSERT INTO billing.invoices (owner, amount) VALUES ('ann', 10.5), ('ann', 2)").await;
    c.exec("shop", "SET app.uid = 'bob'; INSERT INTO billing.invoices (owner, amount) VALUES ('bob', 7)").await;
    // Row-level security applies to the tenant's own role (FORCE).
    let ann = c.rows("shop", "SET app.uid = 'ann'; SELECT total FROM totals", json!([])).await;
    assert_eq!(ann, [json!({"total": "12.50"})]);
    assert_eq!(c.rows("shop", "SELECT count(*) AS n FROM audit", json!([])).await[0]["n"], 3);
    assert_eq!(c.rows("shop", "SELECT nextval('tickets') AS n", json!([])).await[0]["n"], 1);
    c.exec("shop", "INSERT INTO feelings VALUES (1, 'great')").await;
    refused(&c, "shop", "INSERT INTO feelings VALUES (-1, 'ok')", StatusCode::CONFLICT, "23514").await;
    c.exec("shop", "CREATE TEMP TABLE scratch (x int); INSERT INTO scratch VALUES (1)").await;
    c.exec("shop", "ALTER TABLE audit ADD COLUMN who text; DROP VIEW totals; DROP TABLE audit CASCADE").await;
    c.exec("shop", "GRANT SELECT ON billing.invoices TO PUBLIC; COMMENT ON TABLE billing.invoices IS 'money'").await;
    // Every write above is in the change log, the trigger's and the DDL's too.
    let log = all_changes(&c, "shop").await;
    let tables: Vec<&str> = log.iter().map(|ch| ch["table"].as_str().unwrap()).collect();
    assert_eq!(tables.iter().filter(|t| **t == "invoices").count(), 3, "{tables:?}");
    // audit: the trigger's three inserts, then its drop.
    assert_eq!(tables.iter().filter(|t| **t == "audit").count(), 4, "{tables:?}");
    assert_eq!(log.last().map(|ch| (&ch["op"], &ch["table"])), Some((&json!("drop"), &json!("audit"))), "{log:?}");
    assert_eq!(tables.iter().filter(|t| **t == "feelings").count(), 1, "{tables:?}");
    // The tenant owns what it made.
    let owners = c
        .rows("shop", "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname IN ('public', 'billing')", json!([]))
        .await;
    assert_eq!(owners, [json!({"tableowner": "tenant"})]);
}

/// Capture follows tables of any name and any column name, and a schema
/// change made where no statement shows it.
#[tokio::test]
async fn capture_follows_any_identifier_and_any_schema_change() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-enabled=false"]).await;
    let c = server.client();
    capture_follows_any_identifier_and_schema_change(&c, "ids").await;
}

/// The test above against any target (the server, the edge).
pub(crate) async fn capture_follows_any_identifier_and_schema_change(c: &Client, tenant: &str) {
    let long = "x".repeat(63);
    let create = format!(
        "CREATE TABLE \"we$ird'$$\" (\"a$body$b\" int PRIMARY KEY, \"q\"\"uote\" text, \"ünï😀\" text, \"$f$\" int, \"{long}\" text)"
    );
    // In autocommit, and the same inside a transaction.
    c.exec(tenant, &create).await;
    c.exec(tenant, "INSERT INTO \"we$ird'$$\" VALUES (1, 'q', 'ü', 2, 'long')").await;
    let (status, body) = c
        .post(
            &format!("/t/{tenant}/transaction"),
            &json!({"statements": [
                {"sql": "CREATE TABLE \"$body$\" (\"$fn$\" int)"},
                {"sql": "INSERT INTO \"$body$\" VALUES (7)"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // DDL hidden in a function called from a query, in EXPLAIN ANALYZE, in DO.
    c.exec(tenant, "CREATE FUNCTION mk() RETURNS void LANGUAGE plpgsql AS $$ BEGIN CREATE TABLE made_in_fn (id int); INSERT INTO made_in_fn VALUES (1); END $$").await;
    c.exec(tenant, "SELECT mk()").await;
    c.exec(tenant, "INSERT INTO made_in_fn VALUES (2)").await;
    c.exec(tenant, "EXPLAIN ANALYZE CREATE TABLE explained AS SELECT 3 AS v").await;
    c.exec(tenant, "DO $$ BEGIN CREATE TABLE done_in_do (v int); INSERT INTO done_in_do VALUES (4); END $$").await;
    let log = all_changes(c, tenant).await;
    let seen: Vec<(&str, &Value)> = log.iter().map(|ch| (ch["table"].as_str().unwrap(), &ch["new"])).collect();
    assert_eq!(
        seen,
        [
            ("we$ird'$$", &json!({"a$body$b": 1, "q\"uote": "q", "ünï😀": "ü", "$f$": 2, long.as_str(): "long"})),
            ("$body$", &json!({"$fn$": 7})),
            ("made_in_fn", &json!({"id": 1})),
            ("made_in_fn", &json!({"id": 2})),
            ("explained", &json!({"v": 3})),
            ("done_in_do", &json!({"v": 4})),
        ]
    );
    // Columns named as capture's own SQL names things (`r`, `tidelake_row`,
    // `src`, `x`), in a table wide enough (over 50 columns) that its rows are
    // written through a subquery, through a schema change that logs every row.
    let filler: Vec<String> = (0..50).map(|i| format!("f{i} int DEFAULT {i}")).collect();
    c.exec(tenant, &format!("CREATE TABLE wide (r int PRIMARY KEY, tidelake_row text, src text, x text, {})", filler.join(", "))).await;
    c.exec(tenant, "INSERT INTO wide (r, tidelake_row, src, x) VALUES (1, 'a', 'b', 'c')").await;
    c.exec(tenant, "ALTER TABLE wide ADD COLUMN added text DEFAULT 'd'").await;
    let wide: Vec<(String, Value)> = all_changes(c, tenant)
        .await
        .into_iter()
        .filter(|ch| ch["table"] == "wide")
        .map(|ch| (ch["op"].as_str().unwrap().to_owned(), ch["new"].clone()))
        .collect();
    let ops: Vec<&str> = wide.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(ops, ["insert", "truncate", "insert"], "{wide:?}");
    let row = &wide[2].1;
    assert_eq!((&row["r"], &row["tidelake_row"], &row["src"], &row["x"]), (&json!(1), &json!("a"), &json!("b"), &json!("c")));
    assert_eq!((&row["f49"], &row["added"]), (&json!(49), &json!("d")), "{row}");
    assert_eq!(wide[0].1["tidelake_row"], "a");

    // The tenant kept serving all along, and reopens fine.
    assert_eq!(c.rows(tenant, "SELECT count(*) AS n FROM \"we$ird'$$\"", json!([])).await[0]["n"], 1);
}

/// State a request leaves in the session (settings, prepared statements,
/// temporary tables), however it was made, is gone for the next request.
#[tokio::test]
async fn no_session_state_leaks_into_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-enabled=false"]).await;
    let c = server.client();
    let path = c.rows("s", "SHOW search_path", json!([])).await[0]["search_path"].clone();
    c.exec("s", "DO $$ BEGIN EXECUTE 'SET search_path = nowhere'; END $$").await;
    assert_eq!(c.rows("s", "SHOW search_path", json!([])).await[0]["search_path"], path);
    c.exec("s", "CREATE FUNCTION tz() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET TimeZone = 'Asia/Tokyo'; END $$").await;
    c.exec("s", "SELECT tz()").await;
    assert_eq!(c.rows("s", "SHOW TimeZone", json!([])).await[0]["TimeZone"], "UTC");
    c.exec("s", "SELECT set_config('statement_timeout', '1', false)").await;
    assert_eq!(c.rows("s", "SHOW statement_timeout", json!([])).await[0]["statement_timeout"], "0");
    c.exec("s", "CREATE FUNCTION tmp() RETURNS void LANGUAGE plpgsql AS $$ BEGIN CREATE TEMP TABLE t1 (x int); END $$").await;
    c.exec("s", "SELECT tmp()").await;
    c.exec("s", "PREPARE p AS SELECT 1").await;
    c.exec("s", "CREATE TEMP TABLE t1 (x int)").await;
    refused(&c, "s", "EXECUTE p", StatusCode::BAD_REQUEST, "26000").await;
}

/// A statement over the statement timeout is stopped with 57014, whether it
/// computes or sleeps; the tenant keeps serving and keeps every committed
/// row; a request may ask for less; a client may cancel.
#[tokio::test]
async fn statements_are_bounded_in_time_and_the_tenant_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-enabled=false", "--tenants-statement-timeout", "2s"]).await;
    let c = server.client();
    c.exec("slow", "CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept SELECT generate_series(1, 100)").await;

    for sql in ["SELECT count(*) FROM generate_series(1, 10000000000)", "SELECT pg_sleep(100000)"] {
        let started = Instant::now();
        let body = refused(&c, "slow", sql, StatusCode::REQUEST_TIMEOUT, "57014").await;
        let took = started.elapsed();
        assert!(body["error"]["message"].as_str().unwrap().contains("statement timeout"), "{body}");
        // 2 s, plus the grace a statement gets to notice, plus slack.
        assert!(took < Duration::from_secs(15), "{sql} took {took:?}");
        assert_eq!(c.rows("slow", "SELECT count(*) AS n FROM kept", json!([])).await[0]["n"], 100);
    }
    // Within a transaction: nothing of it is applied.
    let (status, body) = c
        .post(
            "/t/slow/transaction",
            &json!({"statements": [{"sql": "INSERT INTO kept VALUES (101)"}, {"sql": "SELECT pg_sleep(100000)"}]}),
        )
        .await;
    assert_eq!((status, &body["error"]["statementIndex"]), (StatusCode::REQUEST_TIMEOUT, &json!(1)), "{body}");
    assert_eq!(c.rows("slow", "SELECT count(*) AS n FROM kept", json!([])).await[0]["n"], 100);
    assert_eq!(lsns(&all_changes(&c, "slow").await).len(), 100);

    // A request may lower its timeout (never raise it).
    let started = Instant::now();
    let (status, body) = c
        .post("/t/slow/query", &json!({"sql": "SELECT count(*) FROM generate_series(1, 10000000000)", "statementTimeout": 200}))
        .await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::REQUEST_TIMEOUT, &json!("57014")), "{body}");
    assert!(started.elapsed() < Duration::from_millis(1900), "{:?}", started.elapsed());
    for bad in [json!(0), json!(-1), json!("soon"), json!(1.5)] {
        let (status, body) = c.post("/t/slow/query", &json!({"sql": "SELECT 1", "statementTimeout": bad})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // A client's cancel stops what the tenant runs.
    let running = {
        let c = c.clone();
        tokio::spawn(async move { c.query("slow", "SELECT count(*) FROM generate_series(1, 10000000000)", json!([])).await })
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            c.post("/t/slow/cancel", &json!({})).await.1["cancelled"] == true
        })
        .await,
        "nothing to cancel"
    );
    let (status, body) = running.await.unwrap();
    assert_eq!((status, &body["error"]["code"]), (StatusCode::REQUEST_TIMEOUT, &json!("57014")), "{body}");
    assert_eq!(c.post("/t/slow/cancel", &json!({})).await.1["cancelled"], false);
    assert_eq!(c.rows("slow", "SELECT 1 AS one", json!([])).await[0]["one"], 1);
}

/// Answers are capped in rows and bytes: a multi-gigabyte result is
/// refused with `result_too_large` while the server's memory stays bounded;
/// a value too big for the tenant's engine memory fails the statement
/// (53200), not the tenant.
#[tokio::test]
async fn answers_are_capped_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--lake-enabled=false", "--tenants-max-result-bytes", "4MiB", "--tenants-max-result-rows", "1000", "--tenants-statement-timeout", "60s",
            "--tenants-memory", "512MiB",
        ],
    )
    .await;
    let c = server.client();
    answers_over_the_caps_are_refused(&c, "big").await;
    let rss = rss_bytes(server.pid());
    assert!(rss < 1536 << 20, "server peak RSS {rss} bytes after refusing 5 GB and 4 GB answers");
    assert_eq!(c.rows("big", "SELECT 2 AS two", json!([])).await[0]["two"], 2);
}

/// Answers over the caps (1000 rows, 4 MiB) are refused with
/// `result_too_large`, a 5 GB one stopped early; a write whose RETURNING
/// rows are too many is committed and the error says so; a value larger
/// than the engine's memory cap fails its statement (53200); the tenant
/// goes on. On any target (the server, the edge) configured with those caps.
pub(crate) async fn answers_over_the_caps_are_refused(c: &Client, tenant: &str) {
    let body = refused(c, tenant, "SELECT g FROM generate_series(1, 1001) g", StatusCode::UNPROCESSABLE_ENTITY, "result_too_large").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("1000 rows"), "{body}");
    assert_eq!(c.rows(tenant, "SELECT g FROM generate_series(1, 1000) g", json!([])).await.len(), 1000);
    // 5 GB of rows (streamed: a set-returning function in the select list
    // is not materialized first).
    let started = Instant::now();
    let body = refused(
        c,
        tenant,
        "SELECT repeat('y', 1000) AS y, generate_series(1, 5000000) AS g",
        StatusCode::UNPROCESSABLE_ENTITY,
        "result_too_large",
    )
    .await;
    assert!(body["error"]["message"].as_str().unwrap().contains("4194304 bytes"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    // A write's RETURNING rows are sent once it has run: it is committed,
    // and the refusal says so.
    c.exec(tenant, "CREATE TABLE returned (id int PRIMARY KEY)").await;
    let body = refused(
        c,
        tenant,
        "INSERT INTO returned SELECT generate_series(1, 1001) RETURNING id",
        StatusCode::UNPROCESSABLE_ENTITY,
        "result_too_large",
    )
    .await;
    assert!(body["error"]["detail"].as_str().unwrap_or_default().contains("committed"), "{body}");
    assert_eq!(c.rows(tenant, "SELECT count(*) AS n FROM returned", json!([])).await[0]["n"], 1001);
    // 4 GB in 200 MB values: the engine's memory cap stops the first.
    refused(c, tenant, "SELECT repeat('x', 200000000) FROM generate_series(1, 20)", StatusCode::SERVICE_UNAVAILABLE, "53200").await;
    assert_eq!(c.rows(tenant, "SELECT 3 AS three", json!([])).await[0]["three"], 3);
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb * 1024
}

/// Reads of a tenant that does not exist create nothing and say so; the
/// first query creates it.
#[tokio::test]
async fn reads_of_an_unknown_tenant_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--lake-enabled=false"]).await;
    let c = server.client();
    let (status, body) = c.get("/t/ghost/bookmark?at=2026-01-01T00:00:00Z").await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::NOT_FOUND, &json!("tenant_not_found")), "{body}");
    let (status, body) = c.post("/t/ghost/backups", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let mut ws = Ws::connect(&server.base, "ghost").await;
    ws.send(json!({"type": "subscribe", "id": "s", "since": 0})).await;
    let msg = ws.recv(Duration::from_secs(10)).await.expect("an answer");
    assert_eq!((&msg["type"], &msg["error"]["code"]), (&json!("error"), &json!("tenant_not_found")), "{msg}");
    assert!(!data.join("tenants").join("ghost").exists(), "a read created the tenant");
    unknown_tenants_are_read_without_being_made(&c, "ghost").await;
    assert!(data.join("tenants").join("ghost").exists());
}

/// Reads of a tenant that does not exist (schema, changes, an
/// acknowledgement, ping, health) create nothing and say so, on any target
/// (the server, the edge); its first query creates it.
pub(crate) async fn unknown_tenants_are_read_without_being_made(c: &Client, tenant: &str) {
    for path in [format!("/t/{tenant}/schema"), format!("/t/{tenant}/changes?since=0")] {
        let (status, body) = c.get(&path).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::NOT_FOUND, &json!("tenant_not_found")), "{path}: {body}");
    }
    let (status, body) = c.post(&format!("/t/{tenant}/changes/ack"), &json!({"consumer": "x", "lsn": 0})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for _ in 0..2 {
        let (_, ping) = c.get(&format!("/t/{tenant}/ping")).await;
        assert_eq!(ping["exists"], false, "{ping}");
        let (_, health) = c.get(&format!("/t/{tenant}/health")).await;
        assert_eq!(health["tenant"]["exists"], false, "{health}");
    }
    c.exec(tenant, "SELECT 1").await;
    let (_, ping) = c.get(&format!("/t/{tenant}/ping")).await;
    assert_eq!(ping["exists"], true, "{ping}");
}

/// Numbers out of range are refused with 400, never overflow or wedge a
/// tenant; the tenant answers right after.
#[tokio::test]
async fn numbers_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-enabled=false"]).await;
    let c = server.client();
    c.exec("n", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)").await;
    for path in [
        "/t/n/changes?since=18446744073709551615",
        "/t/n/changes?since=9223372036854775808",
        "/t/n/changes?since=-1",
        "/t/n/changes?since=0&limit=0",
        "/t/n/changes?since=0&limit=18446744073709551616",
        "/t/n/changes?since=0&wait=99999999999",
    ] {
        let (status, body) = c.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
    let (status, _) = c.post("/t/n/changes/ack", &json!({"consumer": "x", "lsn": 18446744073709551615u64})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = c.post("/t/n/restore", &json!({"to": "lsn:18446744073709551615"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut ws = Ws::connect(&server.base, "n").await;
    ws.send(json!({"type": "subscribe", "id": "s", "since": 18446744073709551615u64})).await;
    let msg = ws.expect_any(Duration::from_secs(10)).await;
    assert_eq!(msg["type"], "error", "{msg}");
    ws.send(json!({"type": "subscribe", "id": "t", "since": 0})).await;
    ws.expect("subscribed", Duration::from_secs(10)).await;
    assert_eq!(ws.expect("change", Duration::from_secs(10)).await["change"]["lsn"], 1);
    let (status, body) = c.get("/t/n/changes?since=0").await;
    assert_eq!((status, body["changes"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
}

/// One WebSocket connection can have only so many queries in flight, and
/// base backups on request are one at a time and spaced apart.
#[tokio::test]
async fn per_connection_and_per_tenant_work_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-enabled=false", "--tenants-ws-max-in-flight", "3"]).await;
    let c = server.client();
    c.exec("w", "SELECT 1").await;
    let mut ws = Ws::connect(&server.base, "w").await;
    for i in 0..10 {
        ws.send(json!({"type": "query", "id": i, "sql": "SELECT pg_sleep(0.3)"})).await;
    }
    let mut results = 0;
    let mut refusals = 0;
    while results + refusals < 10 {
        let msg = ws.recv(Duration::from_secs(30)).await.expect("an answer to every query");
        match msg["type"].as_str() {
            Some("result") => results += 1,
            Some("error") => {
                assert_eq!(msg["error"]["code"], "too_many_in_flight", "{msg}");
                refusals += 1;
            }
            _ => {}
        }
    }
    assert_eq!((results, refusals), (3, 7));

    let (status, body) = c.post("/t/w/backups", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let resp = c.http.post(c.url("/t/w/backups")).json(&json!({})).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_some());
    let (_, list) = c.get("/t/w/backups").await;
    let manual = list["backups"].as_array().unwrap().iter().filter(|b| b["reason"] == "manual").count();
    assert_eq!(manual, 1, "{list}");
}

/// Over its disk quota a tenant's writes fail with 53100 and its reads go on.
#[tokio::test]
async fn a_tenant_over_its_disk_quota_can_read_but_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--lake-enabled=false", "--tenants-disk-quota", "16MB", "--archive-backup-interval", "off", "--archive-cold-after", "off"],
    )
    .await;
    let c = server.client();
    c.exec("full", "CREATE TABLE blob (id serial PRIMARY KEY, b text)").await;
    // Rows that do not compress: 6.4 kB of random hex each, 19 MB in all.
    c.exec(
        "full",
        "INSERT INTO blob SELECT g, (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 200) i) FROM generate_series(1, 3000) g",
    )
    .await;
    c.exec("roomy", "CREATE TABLE t (id int)").await;
    let refused_write = eventually(Duration::from_secs(30), || async {
        let (status, body) = c.query("full", "INSERT INTO blob VALUES (0, 'more')", json!([])).await;
        status == StatusCode::INSUFFICIENT_STORAGE && body["error"]["code"] == "53100"
    })
    .await;
    assert!(refused_write, "writes were never refused");
    let count = c.rows("full", "SELECT count(*) AS n FROM blob", json!([])).await[0]["n"].clone();
    for sql in [
        "UPDATE blob SET b = 'x' WHERE id = 1",
        "CREATE TABLE more (id int)",
        "BEGIN; SET TRANSACTION READ WRITE; INSERT INTO blob VALUES (-1, 'x'); COMMIT",
        "SET default_transaction_read_only = off; INSERT INTO blob VALUES (-2, 'x')",
        "SELECT nextval(pg_get_serial_sequence('blob', 'id'))",
    ] {
        let (status, body) = c.query("full", sql, json!([])).await;
        assert!(status.is_client_error() || status == StatusCode::INSUFFICIENT_STORAGE, "{sql}: {body}");
        assert_ne!(status, StatusCode::OK, "{sql}: {body}");
    }
    assert_eq!(c.rows("full", "SELECT count(*) AS n FROM blob", json!([])).await[0]["n"], count);
    // Other tenants are not affected.
    c.exec("roomy", "INSERT INTO t VALUES (1)").await;
}

/// A shutdown finishes in bounded time even with a statement that would
/// run for a day, a WebSocket and a long poll open; nothing committed is
/// lost.
#[tokio::test]
async fn shutdown_completes_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), &["--lake-enabled=false"]).await;
    let c = server.client();
    c.exec("z", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)").await;
    let mut ws = Ws::connect(&server.base, "z").await;
    ws.send(json!({"type": "subscribe", "id": "s"})).await;
    ws.expect("subscribed", Duration::from_secs(10)).await;
    let poller = {
        let c = c.clone();
        tokio::spawn(async move { c.get("/t/z/changes?since=10&wait=60000").await })
    };
    let sleeper = {
        let c = c.clone();
        tokio::spawn(async move { c.query("z", "SELECT pg_sleep(86400)", json!([])).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(45), "shutdown took {:?}", started.elapsed());
    let _ = (sleeper.await, poller.await);
    server.restart().await;
    let c = server.client();
    assert_eq!(c.rows("z", "SELECT count(*) AS n FROM t", json!([])).await[0]["n"], 10);
}

/// The open-tenant cap counts tenants still closing: bursts over many
/// tenants never have more open than the cap.
#[tokio::test]
async fn the_open_tenant_cap_is_a_real_cap() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-enabled=false", "--tenants-max-open", "3"]).await;
    let c = server.client();
    let watcher = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut most = 0;
            for _ in 0..400 {
                let (_, health) = c.get("/health").await;
                let alive = health["tenants"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|t| t["engine"] != "hibernated")
                    .count();
                most = most.max(alive);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };
    let mut clients = Vec::new();
    for i in 0..12 {
        let c = c.clone();
        clients.push(tokio::spawn(async move {
            let tenant = format!("cap{}", i % 6);
            c.query(&tenant, "SELECT pg_sleep(0.05)", json!([])).await.0
        }));
    }
    for client in clients {
        assert_eq!(client.await.unwrap(), StatusCode::OK);
    }
    let most = watcher.await.unwrap();
    assert!(most <= 3, "{most} tenants were open or closing at once with a cap of 3");
}

/// `COPY … FROM STDIN` over HTTP has no data to read: it is refused before
/// the engine sees it (the engine would read past its input), alone or
/// inside a script, and the tenant serves on with its data.
#[tokio::test]
async fn copy_from_the_client_over_http_is_refused_and_the_tenant_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    c.exec("copier", "CREATE TABLE t (a int); INSERT INTO t VALUES (1)").await;
    for sql in ["COPY t FROM STDIN", "INSERT INTO t VALUES (2); copy t (a) from stdin with (format csv)"] {
        let body = refused(&c, "copier", sql, StatusCode::BAD_REQUEST, "0A000").await;
        assert!(body["error"]["message"].as_str().unwrap().contains("\\copy"), "{body}");
    }
    let (status, body) = c.query("copier", "SELECT count(*)::int AS n FROM t", json!([])).await;
    assert_eq!((status, &body["rows"]), (StatusCode::OK, &json!([{"n": 1}])), "{body}");
}
