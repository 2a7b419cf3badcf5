//! The per-tenant HTTP API: query, batch, transaction, schema, routing.

use reqwest::StatusCode;
use serde_json::json;
use tidelake_tests::{Client, Server, columns};

#[tokio::test]
async fn query_returns_typed_rows_fields_and_command() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    typed_rows_fields_and_command(&server.client(), "acme").await;
}

/// Against a target (`tidelake serve` here, the edge in `edge.rs`).
pub(crate) async fn typed_rows_fields_and_command(c: &tidelake_tests::Client, tenant: &str) {
    c.exec(
        tenant,
        "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), \
         tags text[], meta jsonb, active bool, big int8, at timestamptz)",
    )
    .await;
    let (status, body) = c
        .query(
            tenant,
            "INSERT INTO items VALUES ($1, $2, $3, $4, $5, $6, $7, $8), ($9, $10, NULL, NULL, NULL, NULL, NULL, NULL)",
            json!([1, "widget", "19.99", ["a", "b c"], {"k": [1, 2]}, true,
                   9007199254740993i64, "2026-01-02 03:04:05+00", 2, "gadget"]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["command"], "INSERT");
    assert_eq!(body["rowCount"], 2);

    let (status, body) = c
        .query(tenant, "SELECT * FROM items WHERE id = $1", json!([1]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["command"], "SELECT");
    assert_eq!(body["rowCount"], 1);
    let fields: Vec<(&str, i64)> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["dataTypeID"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        fields,
        [("id", 23), ("name", 25), ("price", 1700), ("tags", 1009), ("meta", 3802),
         ("active", 16), ("big", 20), ("at", 1184)]
    );
    assert_eq!(
        body["rows"][0],
        json!({"id": 1, "name": "widget", "price": "19.99", "tags": ["a", "b c"],
               "meta": {"k": [1, 2]}, "active": true, "big": 9007199254740993i64,
               "at": "2026-01-02 03:04:05+00"})
    );

    // rowMode array, NULLs kept as null.
    let (status, body) = c
        .post(
            &format!("/t/{tenant}/query"),
            &json!({"sql": "SELECT id, price, tags FROM items ORDER BY id", "rowMode": "array"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"], json!([[1, "19.99", ["a", "b c"]], [2, null, null]]));
}

#[tokio::test]
async fn batch_and_transaction_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    batches_and_transactions(&server.client(), "t1").await;
}

/// Against a target (`tidelake serve` here, the edge in `edge.rs`).
pub(crate) async fn batches_and_transactions(c: &tidelake_tests::Client, tenant: &str) {
    c.exec(tenant, "CREATE TABLE acct (id int PRIMARY KEY, balance int CHECK (balance >= 0))")
        .await;

    let (status, body) = c
        .post(
            &format!("/t/{tenant}/batch"),
            &json!({"statements": [
                {"sql": "INSERT INTO acct VALUES (1, 100), (2, 50)"},
                {"sql": "SELECT sum(balance) AS total FROM acct"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["rowCount"], 2);
    assert_eq!(body["results"][1]["rows"][0]["total"], 150);

    // A transfer that would overdraw: the whole transaction is rolled back and
    // the error names the failing statement.
    let (status, body) = c
        .post(
            &format!("/t/{tenant}/transaction"),
            &json!({"statements": [
                {"sql": "UPDATE acct SET balance = balance + $1 WHERE id = 1", "params": [80]},
                {"sql": "UPDATE acct SET balance = balance - $1 WHERE id = 2", "params": [80]},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "23514");
    assert_eq!(body["error"]["statementIndex"], 1);
    let rows = c.rows(tenant, "SELECT id, balance FROM acct ORDER BY id", json!([])).await;
    assert_eq!(rows, vec![json!({"id": 1, "balance": 100}), json!({"id": 2, "balance": 50})]);

    // A good transfer commits both statements.
    let (status, body) = c
        .post(
            &format!("/t/{tenant}/transaction"),
            &json!({"isolationLevel": "serializable", "statements": [
                {"sql": "UPDATE acct SET balance = balance + 30 WHERE id = 1"},
                {"sql": "UPDATE acct SET balance = balance - 30 WHERE id = 2 RETURNING balance"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][1]["rows"][0]["balance"], 20);
    let rows = c.rows(tenant, "SELECT sum(balance) AS s FROM acct", json!([])).await;
    assert_eq!(rows[0]["s"], 150);

    // Transaction control inside POST transaction is refused before anything runs.
    let (status, body) = c
        .post(
            &format!("/t/{tenant}/transaction"),
            &json!({"statements": [
                {"sql": "UPDATE acct SET balance = 0"},
                {"sql": "COMMIT"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["statementIndex"], 1);
    let rows = c.rows(tenant, "SELECT sum(balance) AS s FROM acct", json!([])).await;
    assert_eq!(rows[0]["s"], 150);

    // A batch stops at the first failure; what ran before it is committed.
    let (status, body) = c
        .post(
            &format!("/t/{tenant}/batch"),
            &json!({"statements": [
                {"sql": "INSERT INTO acct VALUES (3, 1)"},
                {"sql": "INSERT INTO acct VALUES (3, 1)"},
                {"sql": "INSERT INTO acct VALUES (4, 1)"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "23505");
    assert_eq!(body["error"]["statementIndex"], 1);
    let rows = c.rows(tenant, "SELECT id FROM acct WHERE id > 2 ORDER BY id", json!([])).await;
    assert_eq!(rows, vec![json!({"id": 3})]);

    // A query that leaves a transaction open is rolled back, not leaked.
    let (status, body) = c
        .query(tenant, "BEGIN; DELETE FROM acct", json!([]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "25000");
    let rows = c.rows(tenant, "SELECT count(*) AS n FROM acct", json!([])).await;
    assert_eq!(rows[0]["n"], 3);
}

#[tokio::test]
async fn tenants_are_isolated_and_routed_by_path_header_and_subdomain() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--tenants-base-domain", "db.example.test"],
    )
    .await;
    routed_by_path_header_and_subdomain(&server.client()).await;
}

/// The test above against any target (the server, the edge) whose base
/// domain is `db.example.test`: tenants are isolated, and named by path,
/// `X-Tenant-Id` or subdomain, blocked names refused however they arrive.
pub(crate) async fn routed_by_path_header_and_subdomain(c: &Client) {
    c.exec("alpha", "CREATE TABLE notes (body text)").await;
    c.exec("alpha", "INSERT INTO notes VALUES ('alpha secret')").await;

    // The same table name in another tenant is another table.
    let (status, body) = c.query("beta", "SELECT * FROM notes", json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "42P01");
    c.exec("beta", "CREATE TABLE notes (body text)").await;
    assert!(c.rows("beta", "SELECT * FROM notes", json!([])).await.is_empty());

    // Header routing on the unprefixed path.
    let resp = c
        .http
        .post(c.url("/query"))
        .header("X-Tenant-Id", "alpha")
        .json(&json!({"sql": "SELECT body FROM notes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["rows"][0]["body"], "alpha secret");

    // Subdomain routing by Host header.
    let resp = c
        .http
        .post(c.url("/query"))
        .header("Host", "alpha.db.example.test")
        .json(&json!({"sql": "SELECT count(*) AS n FROM notes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["rows"][0]["n"], 1);

    // Blocked names are refused however they arrive.
    let resp = c
        .http
        .get(c.url("/ping"))
        .header("Host", "www.db.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let (status, body) = c.get("/t/admin/ping").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "tenant_blocked");

    // Path and header naming different tenants is a client error.
    let resp = c
        .http
        .get(c.url("/t/alpha/ping"))
        .header("X-Tenant-Id", "beta")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // No tenant at all.
    let (status, body) = c.post("/query", &json!({"sql": "SELECT 1"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "missing_tenant");
}

#[tokio::test]
async fn schema_config_and_health_describe_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--tenants-queue-timeout", "5s"]).await;
    let c = server.client();
    schema_and_health_describe_the_tenant(&c, "shop").await;

    let (status, config) = c.get("/t/shop/config").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["queueTimeoutMs"], 5000);
    assert_eq!(config["sharedBuffers"], "4MB");

    let (status, health) = c.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = health["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop"]);
    assert_eq!(health["openTenants"], 1);

    for path in ["/liveness", "/readiness"] {
        let (status, body) = c.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["ok"], true, "{path}");
    }
    let response = c.http.get(c.url("/metrics")).send().await.unwrap();
    let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("application/openmetrics-text; version=1.0.0"), "{kind}");
    let metrics = response.text().await.unwrap();
    assert!(metrics.contains("tidelake_tenants_open 1"), "{metrics}");
    assert!(metrics.contains("# TYPE tidelake_requests counter\n"), "{metrics}");
    assert!(metrics.lines().any(|l| l.strip_prefix("tidelake_requests_total ").is_some_and(|n| n.parse::<u64>().unwrap() >= 1)), "{metrics}");
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
}

/// A tenant's `schema` (its tables, their columns and primary keys, a
/// fingerprint that moves with DDL), `config`, `health` (its engine, tier
/// and size), liveness and readiness, on any target (the server, the edge).
pub(crate) async fn schema_and_health_describe_the_tenant(c: &Client, tenant: &str) {
    c.exec(
        tenant,
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, total numeric(12,2) DEFAULT 0)",
    )
    .await;
    let (status, before) = c.get(&format!("/t/{tenant}/schema")).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert_eq!(before["tenant"], tenant);
    let table = &before["tables"][0];
    assert_eq!(table["schema"], "public");
    assert_eq!(table["name"], "orders");
    assert_eq!(table["primaryKey"], json!(["id"]));
    let columns = columns(table);
    assert_eq!(
        columns,
        [("id", "bigint", false), ("customer", "text", false), ("total", "numeric(12,2)", true)]
    );

    c.exec(tenant, "ALTER TABLE orders ADD COLUMN note text").await;
    let (_, after) = c.get(&format!("/t/{tenant}/schema")).await;
    assert_ne!(before["fingerprint"], after["fingerprint"]);
    assert_eq!(after["tables"][0]["columns"].as_array().unwrap().len(), 4);

    let (status, config) = c.get(&format!("/t/{tenant}/config")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&config["tenant"], &config["engine"], &config["postgresVersion"]), (&json!(tenant), &json!("pglite"), &json!("17.5")));
    assert!(config["maxBodyBytes"].as_u64().unwrap() > 0, "{config}");

    let (status, health) = c.get(&format!("/t/{tenant}/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&health["ok"], &health["runtime"]), (&json!(true), &json!("ready")), "{health}");
    let status = &health["tenant"];
    assert_eq!((&status["tenant"], &status["engine"], &status["tier"], &status["exists"]), (&json!(tenant), &json!("loaded"), &json!("hot"), &json!(true)), "{health}");
    assert!(status["diskBytes"].as_u64().unwrap() > 0, "{health}");
    assert!(status["lastAccessMs"].as_u64().unwrap() > 0, "{health}");
    assert!(status["changeLog"]["headLsn"].is_u64(), "{health}");

    for path in [format!("/t/{tenant}/liveness"), format!("/t/{tenant}/readiness")] {
        let (status, body) = c.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["ok"], true, "{path}");
    }
}

#[tokio::test]
async fn each_request_starts_from_a_clean_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    clean_sessions(&server.client(), "sess").await;
}

/// Against a target (`tidelake serve` here, the edge in `edge.rs`).
pub(crate) async fn clean_sessions(c: &tidelake_tests::Client, tenant: &str) {
    c.exec(tenant, "CREATE SCHEMA other; CREATE TABLE other.t (v int); INSERT INTO other.t VALUES (1)").await;

    // Within one request, session settings apply to the statements after them.
    let rows = c
        .rows(tenant, "SET search_path TO other; SELECT v FROM t", json!([]))
        .await;
    assert_eq!(rows, vec![json!({"v": 1})]);
    // The next request does not inherit them, nor temporary tables or prepared statements.
    let rows = c.rows(tenant, "SHOW search_path", json!([])).await;
    assert_eq!(rows[0]["search_path"], "public");
    c.exec(tenant, "CREATE TEMP TABLE scratch (x int); PREPARE p AS SELECT 1").await;
    let (status, body) = c.query(tenant, "SELECT * FROM scratch", json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "42P01");
    let (status, body) = c.query(tenant, "EXECUTE p", json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "26000");
    // Capture still works after a reset.
    c.exec(tenant, "INSERT INTO other.t VALUES (2)").await;
    let (_, page) = c.get(&format!("/t/{tenant}/changes?since=0")).await;
    let values: Vec<i64> = page["changes"].as_array().unwrap().iter().map(|ch| ch["new"]["v"].as_i64().unwrap()).collect();
    assert_eq!(values, [1, 2]);
    // A function that changes a setting, called by a query that does not
    // say so: the next request starts clean all the same.
    c.exec(
        tenant,
        "CREATE FUNCTION elsewhere() RETURNS int LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_catalog.set_config('search_path', 'other', false); RETURN 1; END $$",
    )
    .await;
    assert_eq!(c.rows(tenant, "SELECT elsewhere() AS one", json!([])).await, vec![json!({"one": 1})]);
    let rows = c.rows(tenant, "SHOW search_path", json!([])).await;
    assert_eq!(rows[0]["search_path"], "public");
}
