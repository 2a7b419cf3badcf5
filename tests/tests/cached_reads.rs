//! Cacheable reads: a read's answer carries an ETag made of the tables it
//! read and each one's newest change; `If-None-Match` with it answers 304
//! until one of those tables is written (over HTTP or the wire protocol) or
//! the schema changes; a write elsewhere leaves it; answers that can change
//! without a write carry none. `GET query` serves reads by URL.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use serde_json::{Value, json};
use tidelake_tests::{Client, Server};

/// One answer as a cache sees it.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    etag: Option<String>,
    cache_control: Option<String>,
    body: String,
}

impl Answer {
    fn tag(&self) -> String {
        self.etag.clone().unwrap_or_else(|| panic!("no ETag: {self:?}"))
    }

    fn rows(&self) -> Value {
        serde_json::from_str::<Value>(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))["rows"].clone()
    }
}

async fn answer(resp: reqwest::Response) -> Answer {
    let header = |name| resp.headers().get(name).map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned());
    let (etag, cache_control) = (header(ETAG), header(CACHE_CONTROL));
    let status = resp.status();
    Answer { status, etag, cache_control, body: resp.text().await.unwrap() }
}

async fn post(c: &Client, tenant: &str, body: Value, if_none_match: Option<&str>) -> Answer {
    let mut req = c.http.post(c.url(&format!("/t/{tenant}/query"))).json(&body);
    if let Some(tag) = if_none_match {
        req = req.header(IF_NONE_MATCH, tag);
    }
    answer(req.send().await.unwrap()).await
}

async fn read(c: &Client, tenant: &str, sql: &str, if_none_match: Option<&str>) -> Answer {
    post(c, tenant, json!({ "sql": sql }), if_none_match).await
}

async fn get(c: &Client, tenant: &str, query: &[(&str, &str)], if_none_match: Option<&str>) -> Answer {
    let mut req = c.http.get(c.url(&format!("/t/{tenant}/query"))).query(query);
    if let Some(tag) = if_none_match {
        req = req.header(IF_NONE_MATCH, tag);
    }
    answer(req.send().await.unwrap()).await
}

/// The read is answered 304 (no body) for `tag`, and `tag` is still its tag.
async fn still(c: &Client, tenant: &str, sql: &str, tag: &str) {
    let again = read(c, tenant, sql, Some(tag)).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{sql}: {again:?}");
    assert_eq!(again.body, "", "a 304 has no body");
    assert_eq!(again.etag.as_deref(), Some(tag));
}

/// The read is answered 200 with a new tag for `tag`; the new tag.
async fn changed(c: &Client, tenant: &str, sql: &str, tag: &str) -> String {
    let again = read(c, tenant, sql, Some(tag)).await;
    assert_eq!(again.status, StatusCode::OK, "{sql}: {again:?}");
    assert_ne!(again.tag(), tag, "{sql}");
    again.tag()
}

#[tokio::test]
async fn etags_follow_the_tables_a_read_reads() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    let t = "cache";
    c.exec(
        t,
        "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text);
         CREATE VIEW va AS SELECT id, upper(v) AS v FROM a;
         CREATE TABLE p (id int, at date) PARTITION BY RANGE (at);
         CREATE TABLE p_2026 PARTITION OF p FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         INSERT INTO a VALUES (1, 'x'), (2, 'y'); INSERT INTO b VALUES (1, 'q'); INSERT INTO p VALUES (1, '2026-05-01')",
    )
    .await;
    let sql = "SELECT id, v FROM a ORDER BY id";
    let first = read(&c, t, sql, None).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.rows(), json!([{"id": 1, "v": "x"}, {"id": 2, "v": "y"}]));
    assert_eq!(first.cache_control.as_deref(), Some("private, no-cache"));
    let tag = first.tag();
    assert!(tag.starts_with("W/\""), "{tag}");
    still(&c, t, sql, &tag).await;
    // Several tags, one of them current; and `*`.
    assert_eq!(read(&c, t, sql, Some(&format!("W/\"other\", {tag}"))).await.status, StatusCode::NOT_MODIFIED);
    assert_eq!(read(&c, t, sql, Some("*")).await.status, StatusCode::NOT_MODIFIED);

    // A write elsewhere leaves the tag; a write to the table changes it.
    c.exec(t, "INSERT INTO b VALUES (2, 'r')").await;
    still(&c, t, sql, &tag).await;
    c.exec(t, "UPDATE a SET v = 'z' WHERE id = 2").await;
    let tag = changed(&c, t, sql, &tag).await;
    assert_eq!(read(&c, t, sql, None).await.rows(), json!([{"id": 1, "v": "x"}, {"id": 2, "v": "z"}]));
    still(&c, t, sql, &tag).await;
    // A write that changes no row leaves it.
    c.exec(t, "DELETE FROM a WHERE id = 99").await;
    still(&c, t, sql, &tag).await;

    // A join follows both tables; a view the table under it; a partitioned
    // table its partitions' rows.
    let join = "SELECT a.id, b.v FROM a JOIN b USING (id) ORDER BY a.id";
    let join_tag = read(&c, t, join, None).await.tag();
    c.exec(t, "UPDATE b SET v = 's' WHERE id = 1").await;
    let join_tag = changed(&c, t, join, &join_tag).await;
    still(&c, t, sql, &tag).await;
    let view = "SELECT * FROM va ORDER BY id";
    let view_tag = read(&c, t, view, None).await.tag();
    c.exec(t, "INSERT INTO a VALUES (3, 'w')").await;
    changed(&c, t, view, &view_tag).await;
    changed(&c, t, join, &join_tag).await;
    let part = "SELECT count(*) AS n FROM p WHERE at >= '2026-01-01'";
    let part_tag = read(&c, t, part, None).await.tag();
    c.exec(t, "INSERT INTO p VALUES (2, '2026-06-01')").await;
    changed(&c, t, part, &part_tag).await;

    // A write over the tenant's wire protocol counts as much.
    let tag = read(&c, t, sql, None).await.tag();
    let client = crate::tenant_wire::connect(&server, t).await;
    client.execute("INSERT INTO a VALUES (4, 'wire')", &[]).await.unwrap();
    drop(client);
    let tag = changed(&c, t, sql, &tag).await;

    // A schema change moves every tag (a view's definition may have changed).
    let b_read = "SELECT * FROM b ORDER BY id";
    let b_tag = read(&c, t, b_read, None).await.tag();
    c.exec(t, "CREATE OR REPLACE VIEW va AS SELECT id, lower(v) AS v FROM a").await;
    changed(&c, t, sql, &tag).await;
    changed(&c, t, b_read, &b_tag).await;

    // The tag is the request's too: other parameters, row mode or SQL.
    let by_id = json!({"sql": "SELECT v FROM a WHERE id = $1", "params": [1]});
    let tag1 = post(&c, t, by_id.clone(), None).await.tag();
    let other = post(&c, t, json!({"sql": "SELECT v FROM a WHERE id = $1", "params": [2]}), Some(&tag1)).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_ne!(other.tag(), tag1);
    let arrays = post(&c, t, json!({"sql": "SELECT v FROM a WHERE id = $1", "params": [1], "rowMode": "array"}), Some(&tag1)).await;
    assert_eq!((arrays.status, arrays.rows()), (StatusCode::OK, json!([["x"]])));
    assert_eq!(post(&c, t, by_id, Some(&tag1)).await.status, StatusCode::NOT_MODIFIED);
    assert_eq!(read(&c, t, "SELECT 1 AS one", None).await.etag.is_some(), true, "a read of no table is cacheable");

    // A forged tag, or another tenant's tag for the very same read, is no
    // match: the whole answer comes.
    c.exec("other", "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'x')").await;
    let theirs = read(&c, "other", sql, None).await.tag();
    for forged in ["W/\"00000000000000000000000000000000\"", theirs.as_str(), "", "W/", "garbage, \"\""] {
        let mine = read(&c, t, sql, Some(forged)).await;
        assert_eq!(mine.status, StatusCode::OK, "{forged}: {mine:?}");
        assert_eq!(mine.rows().as_array().map(Vec::len), Some(4), "{forged}: {mine:?}");
    }
}

#[tokio::test]
async fn answers_that_change_without_a_write_carry_no_tag() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    let t = "volatile";
    c.exec(
        t,
        "CREATE TABLE a (id int PRIMARY KEY, at timestamptz DEFAULT now()); INSERT INTO a (id) VALUES (1), (2);
         CREATE SEQUENCE s;
         CREATE VIEW recent AS SELECT id FROM a WHERE at > now() - interval '1 hour';
         CREATE FUNCTION count_a() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM a';
         CREATE FUNCTION count_b() RETURNS bigint LANGUAGE plpgsql STABLE AS 'BEGIN RETURN 1; END'",
    )
    .await;
    for sql in [
        "SELECT now()",
        "SELECT CURRENT_TIMESTAMP",
        "SELECT random()",
        "SELECT id FROM a WHERE id < random() * 10",
        "SELECT * FROM recent",
        "SELECT clock_timestamp()",
        "SELECT last_value FROM s",
        "SELECT count(*) FROM tidelake.changes",
        "SELECT count_b()",
        "SELECT * FROM a FOR UPDATE",
        "SELECT current_setting('TimeZone')",
    ] {
        let answer = read(&c, t, sql, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{sql}: {answer:?}");
        assert_eq!(answer.etag, None, "{sql}");
        assert_eq!(answer.cache_control, None, "{sql}");
    }
    // A read that moves the session's search_path, so that its plan can no
    // longer be made after it: answered all the same, without a tag.
    c.exec(t, "CREATE FUNCTION elsewhere() RETURNS int LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_catalog.set_config('search_path', 'nowhere', false); RETURN 1; END $$").await;
    for _ in 0..2 {
        let moved = read(&c, t, "SELECT elsewhere() AS one", None).await;
        assert_eq!((moved.status, moved.rows(), moved.etag), (StatusCode::OK, json!([{"one": 1}]), None));
    }
    // A stable function of the tenant's may read any table: no tag, even inlined.
    let counted = read(&c, t, "SELECT count_a() AS n", None).await;
    assert_eq!(counted.rows(), json!([{"n": 2}]));
    assert_eq!(counted.etag, None);
    // Writes, a script of several statements, batches and transactions carry none.
    for sql in ["INSERT INTO a (id) VALUES (3) RETURNING id", "WITH w AS (INSERT INTO a (id) VALUES (4) RETURNING id) SELECT * FROM w", "SELECT 1; SELECT 2"] {
        let answer = read(&c, t, sql, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{sql}: {answer:?}");
        assert_eq!(answer.etag, None, "{sql}");
    }
    for path in ["batch", "transaction"] {
        let resp = c.http.post(c.url(&format!("/t/{t}/{path}"))).json(&json!({"statements": [{"sql": "SELECT id FROM a"}]})).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get(ETAG).is_none(), "{path}");
    }
    // Stable built-ins that read no clock are fine.
    assert!(read(&c, t, "SELECT json_agg(id ORDER BY id) AS ids, to_char(1234, '9999') AS n FROM a", None).await.etag.is_some());
}

#[tokio::test]
async fn get_query_reads_by_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    let t = "urls";
    c.exec(t, "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'x'), (2, 'y')").await;
    let q = [("sql", "SELECT v FROM a WHERE id = $1"), ("params", "[2]")];
    let first = get(&c, t, &q, None).await;
    assert_eq!((first.status, first.rows()), (StatusCode::OK, json!([{"v": "y"}])));
    assert_eq!(first.cache_control.as_deref(), Some("private, no-cache"));
    let again = get(&c, t, &q, Some(&first.tag())).await;
    assert_eq!((again.status, again.body.as_str()), (StatusCode::NOT_MODIFIED, ""));
    // The same read by POST has the same tag.
    let posted = post(&c, t, json!({"sql": "SELECT v FROM a WHERE id = $1", "params": [2]}), Some(&first.tag())).await;
    assert_eq!(posted.status, StatusCode::NOT_MODIFIED);
    c.exec(t, "UPDATE a SET v = 'z' WHERE id = 2").await;
    let after = get(&c, t, &q, Some(&first.tag())).await;
    assert_eq!((after.status, after.rows()), (StatusCode::OK, json!([{"v": "z"}])));
    let arrays = get(&c, t, &[("sql", "SELECT id FROM a ORDER BY id"), ("rowMode", "array")], None).await;
    assert_eq!(arrays.rows(), json!([[1], [2]]));
    // Uncacheable by GET: told not to store.
    let now = get(&c, t, &[("sql", "SELECT now()")], None).await;
    assert_eq!((now.status, now.etag.as_deref(), now.cache_control.as_deref()), (StatusCode::OK, None, Some("no-store")));

    // GET only reads: a write is refused and nothing is written.
    for sql in ["INSERT INTO a VALUES (9, 'no')", "SELECT 1; INSERT INTO a VALUES (9, 'no')", "CREATE TABLE nope (id int)"] {
        let refused = get(&c, t, &[("sql", sql)], None).await;
        let body: Value = serde_json::from_str(&refused.body).unwrap();
        assert!(refused.status.is_client_error(), "{sql}: {refused:?}");
        assert_eq!(body["error"]["code"], "25006", "{sql}: {body}");
        assert!(body["error"]["hint"].as_str().unwrap_or_default().contains("POST"), "{body}");
    }
    assert_eq!(c.rows(t, "SELECT count(*) AS n FROM a", json!([])).await, vec![json!({"n": 2})]);
    let tables = c.rows(t, "SELECT count(*) AS n FROM pg_tables WHERE tablename = 'nope'", json!([])).await;
    assert_eq!(tables, vec![json!({"n": 0})]);
    // Bad parameters are the client's error.
    for (query, says) in [
        (vec![("sql", "SELECT $1::int"), ("params", "{\"a\": 1}")], "params must be a JSON array"),
        (vec![("sql", "SELECT $1::int"), ("params", "[1")], "params must be a JSON array"),
        (vec![("params", "[]")], "sql"),
        (vec![("sql", "SELECT 1"), ("color", "red")], "color"),
    ] {
        let bad = get(&c, t, &query, None).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{query:?}: {bad:?}");
        assert!(bad.body.contains(says), "{query:?}: {}", bad.body);
    }
}

/// A write the change log no longer holds when the next read comes (shipped
/// to the lake and trimmed at once) still changes the tag: never a stale 304.
#[tokio::test]
async fn a_write_trimmed_from_the_log_before_the_next_read_still_changes_the_tag() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(&dir.path().join("data"), &["--lake-flush-interval", "100ms", "--capture-retention", "0s"]).await;
    let c = server.client();
    let t = "trimmed";
    c.exec(t, "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'x'); CREATE TABLE b (id int)").await;
    let sql = "SELECT v FROM a";
    let tag = read(&c, t, sql, None).await.tag();
    still(&c, t, sql, &tag).await;
    let before = c.head_lsn(t).await;
    // The update, then a write elsewhere (the log keeps its newest change).
    c.exec(t, "UPDATE a SET v = 'y'").await;
    c.exec(t, "INSERT INTO b VALUES (1)").await;
    let head = c.wait_shipped(t).await;
    // The update's change is gone from the log (as `restore.rs` waits for it).
    let trimmed = tidelake_tests::eventually(std::time::Duration::from_secs(60), || async {
        c.get(&format!("/t/{t}/changes?since={before}")).await.0 == StatusCode::GONE
    })
    .await;
    assert!(trimmed, "the change log was never trimmed past {head}");
    let after = read(&c, t, sql, Some(&tag)).await;
    assert_eq!((after.status, after.rows()), (StatusCode::OK, json!([{"v": "y"}])));
    still(&c, t, sql, &after.tag()).await;
}

/// A browser (Debian's Chromium) keeps a read's answer in its own cache and
/// revalidates it: the second fetch takes only headers from the network
/// (a 304 behind the scenes), the one after a write the whole new answer.
#[tokio::test]
async fn a_browser_revalidates_a_read_and_sees_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    let t = "browser";
    // An answer of some 40 KB, so a full answer and a revalidation differ plainly.
    c.exec(t, "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, repeat('x', 40) FROM generate_series(1, 800) g").await;
    let base = server.base.clone();
    let seen = tokio::task::spawn_blocking(move || tidelake_tests::run_python("etag_browser.py", &[&base, t])).await.unwrap();
    assert!(seen.get("failed").is_none(), "{seen}");
    let reads = seen["reads"].as_array().unwrap();
    for read in reads {
        assert_eq!((&read["status"], &read["rows"]), (&json!(200), &json!(800)), "{seen}");
    }
    assert_eq!(reads[0]["first"], json!({"id": 1, "body": "x".repeat(40)}));
    assert_eq!(reads[1]["etag"], reads[0]["etag"], "{seen}");
    assert_eq!(seen["write"], 200);
    assert_eq!(reads[2]["first"], json!({"id": 1, "body": "changed"}), "the write is seen, not the cached answer");
    assert_ne!(reads[2]["etag"], reads[0]["etag"]);
    let timing = seen["timing"].as_array().unwrap();
    assert_eq!(timing.len(), 3, "{seen}");
    let transfer = |i: usize| timing[i]["transfer"].as_u64().unwrap();
    let body = |i: usize| timing[i]["body"].as_u64().unwrap();
    assert!(body(0) > 30_000 && transfer(0) > body(0), "the first answer came whole: {seen}");
    assert!(transfer(1) < 2_000 && body(1) == body(0), "the second was revalidated (headers only): {seen}");
    assert!(transfer(2) > body(2), "the third came whole again: {seen}");
}
