//! The edge (edge/, wrangler.toml) under `wrangler dev --local`, offline:
//! the Worker routes by the server's tenant rules, the tenant's Durable
//! Object runs PGlite with tenant SQL in the least-privileged role and
//! change capture, answers in the server's JSON, and every acknowledged
//! commit survives the local runtime being killed and started again.

use std::process::Command;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tidelake_tests::columns;
use tidelake_tests::edge::EdgeDev;
use tidelake_tests::jwt::{Jwks, Signer, now};

/// The API's calls, as the tests below make them.
trait Calls {
    async fn post(&self, path: &str, body: Value) -> (u16, Value);
    async fn get(&self, path: &str) -> (u16, Value);
}

impl Calls for EdgeDev {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = reqwest::Client::new().post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }
}

fn rows(answer: &Value) -> &Value {
    &answer["rows"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_tenants_answer_as_the_server_does_and_keep_every_acknowledged_commit() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let vars = [
        ("MAX_BODY_BYTES", "4096".to_owned()),
        ("MAX_RESULT_BYTES", "4MiB".to_owned()),
        ("MAX_RESULT_ROWS", "1000".to_owned()),
    ];
    let dev = EdgeDev::start_with(&state, &vars).await;

    // Routing: the server's tenant-id rules, before any work.
    let (status, body) = dev.get("/t/Not_A_Tenant/ping").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_tenant")));
    let (status, body) = dev.get("/t/admin/ping").await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("tenant_blocked")));
    let (status, body) = dev.get("/ping").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("missing_tenant")));

    // Without auth configured the Worker serves loopback hosts only, as the
    // server without auth listens on loopback only.
    let resp = reqwest::Client::new()
        .get(format!("{}/t/acme/ping", dev.base))
        .header("host", "db.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // `ping` answers at once, and creates no tenant.
    let (status, body) = dev.get("/t/acme/ping").await;
    assert_eq!((status, &body["tenant"], &body["exists"], &body["engine"]), (200, &json!("acme"), &json!(false), &json!("hibernated")), "{body}");

    // Queries, parameters, row modes: the server's JSON.
    let (status, body) = dev
        .post("/t/acme/query", json!({"sql": "CREATE TABLE items (id int PRIMARY KEY, name text, tags text[], price numeric)"}))
        .await;
    assert_eq!((status, body["command"].as_str()), (200, Some("CREATE TABLE")), "{body}");
    let (status, body) = dev
        .post(
            "/t/acme/query",
            json!({"sql": "INSERT INTO items VALUES ($1, $2, $3, $4) RETURNING *", "params": [1, "apple", ["red", "fruit"], "1.50"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rowCount"], 1);
    assert_eq!(rows(&body), &json!([{"id": 1, "name": "apple", "tags": ["red", "fruit"], "price": "1.50"}]));
    assert_eq!(body["fields"][0], json!({"name": "id", "dataTypeID": 23}));
    let (_, body) = dev
        .post("/t/acme/query", json!({"sql": "SELECT id, name FROM items", "rowMode": "array"}))
        .await;
    assert_eq!(rows(&body), &json!([[1, "apple"]]));

    // The schema and the versions the change log recorded, as the server
    // answers them; a schema change moves the fingerprint.
    let (status, before) = dev.get("/t/acme/schema").await;
    assert_eq!((status, &before["tenant"]), (200, &json!("acme")), "{before}");
    let table = &before["tables"][0];
    assert_eq!((&table["schema"], &table["name"], &table["primaryKey"]), (&json!("public"), &json!("items"), &json!(["id"])));
    let columns = columns(table);
    assert_eq!(columns, [("id", "integer", false), ("name", "text", true), ("tags", "text[]", true), ("price", "numeric", true)]);
    let versions = before["versions"].as_array().unwrap();
    assert_eq!((versions.len(), &versions[0]["table"]), (1, &json!("items")), "{before}");
    dev.post("/t/acme/query", json!({"sql": "ALTER TABLE items ADD COLUMN note text"})).await;
    let (_, after) = dev.get("/t/acme/schema").await;
    assert_ne!(before["fingerprint"], after["fingerprint"]);
    assert_eq!((after["tables"][0]["columns"].as_array().unwrap().len(), after["versions"].as_array().unwrap().len()), (5, 2));
    let (status, config) = dev.get("/t/acme/config").await;
    assert_eq!((status, &config["tenant"], &config["platform"]), (200, &json!("acme"), &json!("edge")), "{config}");
    assert_eq!(config["maxBodyBytes"], 4096, "{config}");

    // A batch stops at its first failure, naming it; what came before stays.
    let (status, body) = dev
        .post(
            "/t/acme/batch",
            json!({"statements": [
                {"sql": "INSERT INTO items (id, name) VALUES (2, 'pear')"},
                {"sql": "INSERT INTO items (id, name) VALUES (1, 'again')"},
            ]}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!((body["error"]["code"].as_str(), body["error"]["statementIndex"].as_u64()), (Some("23505"), Some(1)));

    // A transaction is all or nothing.
    let (status, body) = dev
        .post(
            "/t/acme/transaction",
            json!({"statements": [
                {"sql": "UPDATE items SET name = $1 WHERE id = 2", "params": ["pear2"]},
                {"sql": "INSERT INTO items (id, name) VALUES (1, 'again')"},
            ]}),
        )
        .await;
    assert_eq!((status, body["error"]["statementIndex"].as_u64()), (409, Some(1)), "{body}");
    let (status, body) = dev
        .post(
            "/t/acme/transaction",
            json!({"statements": [
                {"sql": "UPDATE items SET name = $1 WHERE id = 2", "params": ["pear3"]},
                {"sql": "DELETE FROM items WHERE id = 1"},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][1]["rowCount"], 1);

    // Errors as the server gives them.
    let (status, body) = dev.post("/t/acme/query", json!({"sql": "SELECT * FROM nowhere"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("42P01")));
    let resp = reqwest::Client::new()
        .post(format!("{}/t/acme/query", dev.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "malformed_json");

    // Tenant SQL cannot become the superuser nor touch the history.
    for sql in ["SET SESSION AUTHORIZATION postgres", "RESET SESSION AUTHORIZATION; DELETE FROM tidelake.changes"] {
        let (status, body) = dev.post("/t/acme/query", json!({"sql": sql})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("42501")), "{sql}: {body}");
    }
    let (_, body) = dev.post("/t/acme/query", json!({"sql": "SELECT session_user, current_user"})).await;
    assert_eq!(rows(&body), &json!([{"session_user": "tenant", "current_user": "tenant"}]));

    // Every committed change, in order; nothing of what was rolled back.
    let (status, log) = dev.get("/t/acme/changes?since=0").await;
    assert_eq!(status, 200, "{log}");
    // The page says where the schema stood (the lake needs no second request).
    assert_eq!(log["schemaVersion"], after["versions"].as_array().unwrap().last().unwrap()["version"], "{log}");
    let ops: Vec<(String, i64)> = log["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["op"].as_str().unwrap().to_owned(), c["new"]["id"].as_i64().or(c["old"]["id"].as_i64()).unwrap()))
        .collect();
    let expected = [("insert", 1), ("insert", 2), ("update", 2), ("delete", 1)];
    assert_eq!(ops, expected.map(|(op, id)| (op.to_owned(), id)));
    assert_eq!(log["changes"][2]["new"]["name"], "pear3");
    let (status, body) = dev.get("/t/acme/changes?limit=0").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")));

    // The local runtime killed and started again: every acknowledged
    // commit is there, and nothing else.
    dev.kill();
    let dev = EdgeDev::start_with(&state, &vars).await;
    // `ping` answers at once, the engine loading behind it.
    let (status, body) = dev.get("/t/acme/ping").await;
    assert_eq!((status, &body["exists"]), (200, &json!(true)), "{body}");
    assert!(["loading", "loaded"].contains(&body["engine"].as_str().unwrap()), "{body}");
    let (status, body) = dev.post("/t/acme/query", json!({"sql": "SELECT id, name FROM items ORDER BY id"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows(&body), &json!([{"id": 2, "name": "pear3"}]));
    let (_, again) = dev.get("/t/acme/changes?since=0").await;
    assert_eq!(again["changes"], log["changes"]);
    let (_, schema) = dev.get("/t/acme/schema").await;
    assert_eq!(schema, after, "the schema and its recorded versions survive too");
    // And it goes on from there.
    let (status, _) = dev.post("/t/acme/query", json!({"sql": "INSERT INTO items (id, name) VALUES (3, 'plum')"})).await;
    assert_eq!(status, 200);
    let (_, body) = dev.get("/t/acme/changes?since=4").await;
    assert_eq!(body["changes"][0]["lsn"], 5);

    // The WebSocket protocol, by the server's own test of it: queries, a
    // filtered subscription replayed, resumed after a disconnect and live.
    crate::capture::websocket_queries_and_subscriptions(&dev.base, &dev.client()).await;
    // And the server's API tests: one suite, two targets.
    crate::api::typed_rows_fields_and_command(&dev.client(), "types").await;
    crate::api::batches_and_transactions(&dev.client(), "t1").await;
    crate::api::clean_sessions(&dev.client(), "sess").await;
    // And the server's hostile-SQL tests: the history cannot be switched
    // off, forged or erased, and capture follows any identifier.
    crate::hostile::history_cannot_be_switched_off_forged_or_erased(&dev.client(), "hostile").await;
    crate::hostile::capture_follows_any_identifier_and_schema_change(&dev.client(), "ids").await;
    // And the server's tests of schema and health, and of reads that
    // create nothing.
    crate::api::schema_and_health_describe_the_tenant(&dev.client(), "shop").await;
    crate::hostile::unknown_tenants_are_read_without_being_made(&dev.client(), "ghost").await;
    // And the server's test of the answer caps.
    crate::hostile::answers_over_the_caps_are_refused(&dev.client(), "big").await;
    // Temporary files are memory at the edge: a statement whose spill
    // passes temp_file_limit fails with 53400, and the tenant goes on.
    let (status, body) = dev.post("/t/big/query", json!({"sql": "SELECT count(*) FROM generate_series(1, 20000000)"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("53400")), "{body}");
    let (status, body) = dev.post("/t/big/query", json!({"sql": "SELECT count(*) AS n FROM generate_series(1, 100000)"})).await;
    assert_eq!((status, &body["rows"][0]["n"]), (200, &json!(100000)), "{body}");
    // And the server's bad-input test: clear errors, nothing lost.
    crate::bad_input::malformed_requests_get_clear_errors(&dev.client(), "bad", 4096).await;
    let resp = reqwest::get(format!("{}/t/acme/ws", dev.base)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 426, "a plain GET of ws");
    dev.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_routes_tenants_as_the_server_does_and_serves_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    // A host other than loopback needs auth, or this explicit opt-out.
    let vars = [("BASE_DOMAIN", "db.example.test".to_owned()), ("TIDELAKE_AUTH_INSECURE_NO_AUTH", "true".to_owned())];
    let dev = EdgeDev::start_with(&dir.path().join("state"), &vars).await;
    crate::api::routed_by_path_header_and_subdomain(&dev.client()).await;

    // A page in a real browser (Debian's Chromium): fetch for queries, a
    // WebSocket for a subscription and a query, as an application would.
    let base = dev.base.clone();
    let seen = tokio::task::spawn_blocking(move || tidelake_tests::run_python("edge_browser.py", &[&base, "web"])).await.unwrap();
    assert!(seen.get("failed").is_none(), "{seen}");
    assert_eq!((&seen["create"]["status"], &seen["insert"]["status"], &seen["update"]["status"]), (&json!(200), &json!(200), &json!(200)), "{seen}");
    assert_eq!(seen["insert"]["body"]["rowCount"], 2, "{seen}");
    assert_eq!(seen["result"]["result"]["rows"], json!([{"id": 1, "body": "from the browser"}, {"id": 2, "body": "edited"}]), "{seen}");
    assert_eq!((&seen["error"]["error"]["code"], &seen["subscribed"]["since"]), (&json!("42P01"), &json!(0)), "{seen}");
    let changes: Vec<(&str, &Value, &Value)> = seen["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["op"].as_str().unwrap(), &c["new"]["id"], &c["new"]["body"]))
        .collect();
    assert_eq!(
        changes,
        [("insert", &json!(1), &json!("from the browser")), ("insert", &json!(2), &json!("é ✓")), ("update", &json!(2), &json!("edited"))],
        "{seen}"
    );
    let lsns: Vec<u64> = seen["changes"].as_array().unwrap().iter().map(|c| c["lsn"].as_u64().unwrap()).collect();
    assert_eq!(lsns, [1, 2, 3]);
    dev.kill();
}

/// One request with an optional bearer token and headers: (status,
/// WWW-Authenticate, body).
async fn call(
    dev: &EdgeDev,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", dev.base);
    let mut request = match body {
        Some(body) => client.post(url).json(&body),
        None => client.get(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    (status, challenge, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_takes_the_servers_tokens_and_scopes() {
    let dir = tempfile::tempdir().unwrap();
    // API keys made by the server's CLI; their file becomes the Worker's secret.
    let data = dir.path().join("data");
    let create = |tenants: &str, scope: &str| {
        let out = Command::new(tidelake_tests::binary())
            .args(["token", "create", "--tenant", tenants, "--scope", scope, "--data-dir"])
            .arg(&data)
            .env_remove("TIDELAKE_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let writer = create("acme", "write");
    let reader = create("acme", "read");
    let admin = create("acme", "admin");
    let keys = std::fs::read_to_string(data.join("auth/api-keys.json")).unwrap();
    // An identity provider: RS256 and ES256 keys in a JWKS on 127.0.0.1, and
    // a shared HS256 secret.
    let jwks = Jwks::start().await;
    let rsa = Signer::load("rsa-1.pem", "k1", Algorithm::RS256);
    let ec = Signer::load("ec-1.pem", "e1", Algorithm::ES256);
    jwks.publish(&[&rsa, &ec]);
    let secret = "a shared secret of the edge test, 32 bytes or more";
    let dev = EdgeDev::start_with(
        &dir.path().join("state"),
        &[
            ("TIDELAKE_API_KEYS", keys),
            ("TIDELAKE_AUTH_JWKS_URL", jwks.url.clone()),
            ("TIDELAKE_AUTH_JWT_SECRET", secret.to_owned()),
            ("TIDELAKE_AUTH_AUDIENCE", "tidelake".to_owned()),
            ("TIDELAKE_AUTH_ALLOWED_ORIGINS", "https://app.example.com".to_owned()),
        ],
    )
    .await;
    let create_table = json!({"sql": "CREATE TABLE notes (id int PRIMARY KEY, body text)"});

    // Without a token, or with a wrong one: 401 and a challenge, before the
    // tenant's object wakes.
    for token in [None, Some("tlk_000000000000_nope"), Some("not.a.jwt"), Some(&writer[..writer.len() - 1])] {
        let (status, challenge, body) = call(&dev, "/t/acme/query", Some(create_table.clone()), token, &[]).await;
        assert_eq!((status, code(&body)), (401, "unauthorized"), "{token:?}: {body}");
        assert!(challenge.is_some_and(|c| c.starts_with("Bearer realm=\"tidelake\"")), "{token:?}");
    }
    // A tenant's liveness stays public, as on the server.
    let (status, _, _) = call(&dev, "/t/acme/liveness", None, None, &[]).await;
    assert_eq!(status, 200);

    // A write key writes its tenant, and reaches no other.
    let (status, _, body) = call(&dev, "/t/acme/query", Some(create_table.clone()), Some(&writer), &[]).await;
    assert_eq!(status, 200, "{body}");
    let insert = json!({"sql": "INSERT INTO notes VALUES (1, 'from the writer')"});
    let (status, _, body) = call(&dev, "/t/acme/query", Some(insert), Some(&writer), &[]).await;
    assert_eq!((status, body["rowCount"].as_u64()), (200, Some(1)), "{body}");
    let (status, challenge, body) = call(&dev, "/t/other/query", Some(json!({"sql": "SELECT 1"})), Some(&writer), &[]).await;
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    assert!(challenge.is_some_and(|c| c.contains("insufficient_scope")));

    // A read key reads; its writes, DDL and transaction control are refused
    // with the server's error, in every endpoint, and change nothing.
    let (status, _, body) = call(&dev, "/t/acme/query", Some(json!({"sql": "SELECT body FROM notes"})), Some(&reader), &[]).await;
    assert_eq!((status, rows(&body)), (200, &json!([{"body": "from the writer"}])), "{body}");
    for (path, request) in [
        ("/t/acme/query", json!({"sql": "INSERT INTO notes VALUES (2, 'from the reader')"})),
        ("/t/acme/query", json!({"sql": "COMMIT; INSERT INTO notes VALUES (2, 'x')"})),
        ("/t/acme/query", json!({"sql": "DROP TABLE notes"})),
        ("/t/acme/batch", json!({"statements": [{"sql": "SELECT 1"}, {"sql": "DELETE FROM notes"}]})),
        ("/t/acme/transaction", json!({"statements": [{"sql": "UPDATE notes SET body = 'changed'"}]})),
    ] {
        let (status, _, body) = call(&dev, path, Some(request.clone()), Some(&reader), &[]).await;
        assert_eq!((status, code(&body)), (403, "42501"), "{path} {request}: {body}");
    }
    // Nor can it make its read-only transaction read-write.
    let sneak = json!({"statements": [{"sql": "SET TRANSACTION READ WRITE"}, {"sql": "DELETE FROM notes"}]});
    let (status, _, body) = call(&dev, "/t/acme/transaction", Some(sneak), Some(&reader), &[]).await;
    assert!((400..500).contains(&status), "{body}");
    assert_eq!(body["error"]["statementIndex"], 0, "{body}");
    let (_, _, body) = call(&dev, "/t/acme/query", Some(json!({"sql": "SELECT id, body FROM notes"})), Some(&writer), &[]).await;
    assert_eq!(rows(&body), &json!([{"id": 1, "body": "from the writer"}]));
    // The change log is the reader's to read.
    let (status, _, body) = call(&dev, "/t/acme/changes?since=0", None, Some(&reader), &[]).await;
    assert_eq!((status, body["changes"].as_array().map(Vec::len)), (200, Some(1)), "{body}");

    // JWTs: HS256 with the shared secret, RS256 and ES256 from the JWKS;
    // scopes and tenants from the claims, audience and expiry checked.
    let hs256 = |claims: Value| {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()).unwrap()).unwrap()
    };
    let claims = |scope: &str, tenants: &str, exp: u64| json!({"sub": "u1", "scope": scope, "tenants": [tenants], "aud": "tidelake", "exp": exp});
    let later = now() + 600;
    for (id, (token, status)) in (100..).zip([
        (hs256(claims("write", "acme", later)), 200),
        (rsa.sign(&claims("write", "ac*", later)), 200),
        (ec.sign(&claims("admin", "*", later)), 200),
        (hs256(claims("read", "acme", later)), 403),
        (hs256(claims("write", "other", later)), 403),
        (hs256(claims("write", "acme", now() - 120)), 401),
        (hs256(json!({"sub": "u1", "scope": "write", "tenants": ["acme"], "aud": "someone-else", "exp": later})), 401),
        (Signer::load("rsa-2.pem", "k1", Algorithm::RS256).sign(&claims("write", "acme", later)), 401),
    ]) {
        let request = json!({"sql": "INSERT INTO notes VALUES ($1, 'by token') RETURNING id", "params": [id]});
        let (got, _, body) = call(&dev, "/t/acme/query", Some(request), Some(&token), &[]).await;
        assert_eq!(got, status, "{token}: {body}");
    }

    // Acknowledging the change log is an operator's call (admin), checked
    // and applied as on the server.
    let ack = |consumer: &str, lsn: u64| json!({"consumer": consumer, "lsn": lsn});
    let (status, _, body) = call(&dev, "/t/acme/changes/ack", Some(ack("lake", 1)), Some(&writer), &[]).await;
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    let (_, _, page) = call(&dev, "/t/acme/changes?since=0", None, Some(&reader), &[]).await;
    let head = page["headLsn"].as_u64().unwrap();
    assert_eq!(head, 4, "{page}");
    let (status, _, body) = call(&dev, "/t/acme/changes/ack", Some(ack("", 1)), Some(&admin), &[]).await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    let (status, _, body) = call(&dev, "/t/acme/changes/ack", Some(json!({"consumer": "lake", "lsn": -1})), Some(&admin), &[]).await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    let (status, _, body) = call(&dev, "/t/acme/changes/ack", Some(ack("lake", head + 1)), Some(&admin), &[]).await;
    assert_eq!((status / 100, code(&body)), (4, "22023"), "{body}");
    let (status, _, body) = call(&dev, "/t/acme/changes/ack", Some(ack("lake", head)), Some(&admin), &[]).await;
    assert_eq!((status, &body["consumer"]), (200, &json!("lake")), "{body}");
    let log = &body["changeLog"];
    // Acknowledged up to the head; young changes stay (the server's default
    // retention, an hour).
    assert_eq!((log["ackedLsn"].as_u64(), log["headLsn"].as_u64(), log["tailLsn"].as_u64()), (Some(head), Some(head), Some(1)), "{body}");

    // Browser safety: pages of other origins are refused, a form cannot post.
    let origin = [("origin", "https://evil.example")];
    let (status, _, body) = call(&dev, "/t/acme/query", Some(json!({"sql": "SELECT 1"})), Some(&writer), &origin).await;
    assert_eq!((status, code(&body)), (403, "origin_not_allowed"), "{body}");
    let allowed = [("origin", "https://app.example.com")];
    let resp = reqwest::Client::new()
        .post(format!("{}/t/acme/query", dev.base))
        .bearer_auth(&writer)
        .header("origin", "https://app.example.com")
        .json(&json!({"sql": "SELECT 1 AS one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some("https://app.example.com"));
    assert_eq!(resp.json::<Value>().await.unwrap()["rows"], json!([{"one": 1}]));
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/t/acme/query", dev.base))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    assert_eq!(preflight.headers()["access-control-allow-headers"], "authorization, content-type, accept, x-tenant-id");
    let (status, _, _) = call(&dev, "/t/acme/query", None, None, &allowed).await;
    assert_eq!(status, 401, "a GET of query is still the caller's");
    let form = reqwest::Client::new()
        .post(format!("{}/t/acme/query", dev.base))
        .bearer_auth(&writer)
        .header("content-type", "text/plain")
        .body(r#"{"sql": "DELETE FROM notes"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 415);
    dev.kill();
}

/// The HTTP API of one target (`tidelake serve` or the edge), with a token
/// where the target asks for one.
struct Api {
    base: String,
    token: Option<String>,
}

impl Calls for Api {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let mut request = reqwest::Client::new().post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let resp = request.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let mut request = reqwest::Client::new().get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let resp = request.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }
}

impl Api {
    async fn ok(&self, tenant: &str, sql: &str, params: Value) -> Value {
        let (status, body) = self.post(&format!("/t/{tenant}/query"), json!({"sql": sql, "params": params})).await;
        assert_eq!(status, 200, "{sql}: {body}");
        body
    }

    /// The database's clock after everything committed so far.
    async fn instant(&self, tenant: &str) -> String {
        let body = self.ok(tenant, "SELECT clock_timestamp()::text AS now", json!([])).await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        body["rows"][0]["now"].as_str().unwrap().to_owned()
    }

    /// Every change in the tenant's log, without what differs between two
    /// runs of one workload (transaction ids, commit times).
    async fn change_log(&self, tenant: &str) -> Vec<Value> {
        let (status, page) = self.get(&format!("/t/{tenant}/changes?since=0&limit=10000")).await;
        assert_eq!(status, 200, "{page}");
        page["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!([c["lsn"], c["op"], c["schema"], c["table"], c["schemaVersion"], c["new"], c["old"]]))
            .collect()
    }
}

/// One workload, whatever runs it: the instants after its first and its
/// last phase.
async fn workload(api: &Api, tenant: &str, first: &[&str], second: &[&str]) -> (String, String) {
    for sql in first {
        api.ok(tenant, sql, json!([])).await;
    }
    let (status, body) = api
        .post(
            &format!("/t/{tenant}/transaction"),
            json!({"statements": [
                {"sql": "UPDATE items SET price = price * 2, tags = $1 WHERE id = 2", "params": [["sale", "x"]]},
                {"sql": "DELETE FROM items WHERE id = 3"},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let t1 = api.instant(tenant).await;
    for sql in second {
        api.ok(tenant, sql, json!([])).await;
    }
    let t2 = api.instant(tenant).await;
    (t1, t2)
}

const FIRST: &[&str] = &[
    "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(12,2), tags text[], at timestamptz)",
    "INSERT INTO items VALUES (1, 'apple', 1.50, '{red}', '2026-01-02 03:04:05.123456+00'), \
     (2, 'pear', 2.25, NULL, NULL), (3, 'plum', 99999999.99, '{}', 'infinity')",
];
const SECOND: &[&str] = &[
    "ALTER TABLE items ADD COLUMN note text",
    "INSERT INTO items (id, name, note) VALUES (4, 'fig', 'é ✓ \"quoted\"')",
    "UPDATE items SET name = 'green apple' WHERE id = 1",
    "CREATE TABLE kept_empty (id bigint PRIMARY KEY)",
];

/// Rows of a lake query, through the server's query service.
async fn lake(server: &Api, sql: &str) -> Vec<Value> {
    let (status, body) = server.post("/sql", json!({ "sql": sql })).await;
    assert_eq!(status, 200, "{sql}: {body}");
    body["rows"].as_array().cloned().unwrap_or_default()
}

/// The lake's state of `items` of a tenant: now, at `t1` and between them.
async fn lake_answers(server: &Api, tenant: &str, t1: &str, t2: &str) -> Value {
    let columns = "id, name, price::text AS price, tags, at::text AS at";
    json!({
        "now": lake(server, &format!("SELECT {columns}, note FROM {tenant}.items ORDER BY id")).await,
        "t1": lake(server, &format!("SELECT {columns} FROM {tenant}.items FOR SYSTEM_TIME AS OF '{t1}' ORDER BY id")).await,
        "diff": lake(server, &format!("SELECT id, change FROM table_diff('{tenant}.items', '{t1}', '{t2}') ORDER BY id")).await,
        "empty": lake(server, &format!("SELECT count(*) AS n FROM {tenant}.kept_empty")).await,
    })
}

/// The server's `health` says the lake holds the edge tenant through `head`.
async fn edge_shipped(server: &Api, tenant: &str, head: u64) -> bool {
    tidelake_tests::eventually(std::time::Duration::from_secs(90), || async {
        let (_, health) = server.get("/health").await;
        health["edge"]["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["tenant"] == tenant && t["lake"]["shippedLsn"].as_u64() == Some(head) && t["lake"]["lagLsn"] == 0)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_tenants_history_lands_in_the_lake_as_a_server_tenants_does() {
    let dir = tempfile::tempdir().unwrap();
    // The lake's key to the edge: admin over every tenant, made by the
    // server's CLI; its key file becomes the Worker's secret.
    let keys = dir.path().join("keys");
    let out = Command::new(tidelake_tests::binary())
        .args(["token", "create", "--tenant", "*", "--scope", "admin", "--data-dir"])
        .arg(&keys)
        .env_remove("TIDELAKE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let key_file = std::fs::read_to_string(keys.join("auth/api-keys.json")).unwrap();
    let state = dir.path().join("state");
    let dev = EdgeDev::start_with(&state, &[("TIDELAKE_API_KEYS", key_file.clone())]).await;
    let edge = Api { base: dev.base.clone(), token: Some(token.clone()) };

    // The directory of the edge's tenants is the lake's business: admin only.
    let (status, _) = Api { base: dev.base.clone(), token: None }.get("/health").await;
    assert_eq!(status, 401);

    let data = dir.path().join("data");
    let args = [
        "--edge-url", &dev.base, "--edge-token", &token, "--edge-poll-interval", "200ms",
        "--lake-flush-interval", "100ms", "--archive-backup-interval", "off",
    ];
    let mut server = tidelake_tests::Server::start(&data, &args).await;
    let mut local = Api { base: server.base.clone(), token: None };

    // One workload on a tenant of the server and on one of the edge.
    let (home_t1, home_t2) = workload(&local, "home", FIRST, SECOND).await;
    let (acme_t1, acme_t2) = workload(&edge, "acme", FIRST, SECOND).await;

    // The same change log.
    let log = edge.change_log("acme").await;
    assert_eq!(log, local.change_log("home").await);
    let head = log.last().unwrap()[0].as_u64().unwrap();

    // The edge tenant's history reaches the lake, and the lake answers for
    // it what it answers for the server's tenant.
    let shipped = edge_shipped(&local, "acme", head).await;
    assert!(shipped, "the edge tenant never reached the lake: {}", local.get("/health").await.1["edge"]);
    server.client().wait_shipped("home").await;
    // A table created without rows reaches the lake with the schema (it may
    // come a moment after the last change).
    for tenant in ["acme", "home"] {
        let created = tidelake_tests::eventually(std::time::Duration::from_secs(30), || async {
            local.post("/sql", json!({ "sql": format!("SELECT count(*) AS n FROM {tenant}.kept_empty") })).await.0 == 200
        })
        .await;
        assert!(created, "{tenant}.kept_empty never reached the lake");
    }
    // The directory (its last report is in: the lake has the last schema):
    // every tenant that wrote, with where its log stands; asked with an
    // earlier listing's asOf, only those that reported since.
    let (status, listing) = edge.get("/health").await;
    assert_eq!(status, 200, "{listing}");
    let acme = listing["tenants"].as_array().unwrap().iter().find(|t| t["tenant"] == "acme").cloned();
    assert_eq!(acme.map(|t| t["headLsn"].clone()), Some(json!(head)), "{listing}");
    let (_, since) = edge.get(&format!("/health?changedSince={}", listing["asOf"])).await;
    assert_eq!(since["tenants"], json!([]), "{since}");
    let (status, _) = edge.get("/health?changedSince=yesterday").await;
    assert_eq!(status, 400);
    let at_edge = lake_answers(&local, "acme", &acme_t1, &acme_t2).await;
    assert_eq!(at_edge, lake_answers(&local, "home", &home_t1, &home_t2).await);
    assert_eq!(at_edge["t1"].as_array().unwrap().len(), 2, "{at_edge}");
    assert_eq!(at_edge["now"][2]["note"], "é ✓ \"quoted\"", "{at_edge}");
    assert_eq!(at_edge["empty"], json!([{"n": 0}]));

    // PyIceberg, an independent reader, finds every change exactly once.
    let lsns_in_lake = |lake: &Value| -> Vec<u64> {
        let mut all: Vec<u64> = lake["tables"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(name, _)| !name.ends_with("$checkpoint"))
            .flat_map(|(_, t)| t["rows"].as_array().unwrap().iter().map(|r| r["_lsn"].as_u64().unwrap()))
            .collect();
        all.sort();
        all
    };
    let read = crate::lake::read_lake(&server, &["acme"]).await;
    assert_eq!(lsns_in_lake(&read), (1..=head).collect::<Vec<_>>());

    // The server stopped; the edge goes on; the server's next start ships
    // what it missed, and nothing twice.
    server.stop();
    edge.ok("acme", "INSERT INTO items (id, name) VALUES (5, 'kiwi'), (6, 'lime')", json!([])).await;
    edge.ok("acme", "DELETE FROM items WHERE id = 4", json!([])).await;
    server.restart().await;
    local.base = server.base.clone();
    let head = edge.change_log("acme").await.last().unwrap()[0].as_u64().unwrap();
    assert!(edge_shipped(&local, "acme", head).await, "{}", local.get("/health").await.1["edge"]);
    let read = crate::lake::read_lake(&server, &["acme"]).await;
    assert_eq!(lsns_in_lake(&read), (1..=head).collect::<Vec<_>>());
    let now = lake(&local, "SELECT id FROM acme.items ORDER BY id").await;
    assert_eq!(now, json!([{"id": 1}, {"id": 2}, {"id": 5}, {"id": 6}]).as_array().unwrap().clone());

    // The lake acknowledged what it took: the edge may trim its log.
    let (_, health) = edge.get("/t/acme/health").await;
    assert_eq!(health["tenant"]["changeLog"]["ackedLsn"], head, "{health}");

    // An edge tenant's history restores into a tenant of the server, from
    // the lake alone: at t1 it holds what the server's own tenant, restored
    // from its base backup and log to its t1, holds — tables, column types,
    // nullability, keys and rows.
    let (status, body) = local.post("/t/acme/restore", json!({ "to": acme_t1 })).await;
    assert_eq!((status, code(&body)), (400, "restore_needs_into"), "{body}");
    let (status, body) = local.post("/t/acme/restore", json!({ "to": acme_t1, "into": "home" })).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = local.post("/t/acme/restore", json!({ "to": format!("lsn:{}", head + 1), "into": "acme-later" })).await;
    assert_eq!((status, code(&body)), (400, "lsn_beyond_head"), "{body}");
    let (status, body) = local.post("/t/nobody/restore", json!({ "to": acme_t1, "into": "nobody-b" })).await;
    assert_eq!((status, code(&body)), (404, "tenant_not_found"), "{body}");
    let mark = reqwest::Client::new()
        .get(format!("{}/t/acme/bookmark", local.base))
        .query(&[("at", acme_t1.as_str())])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    // t1 is right after the change before the second phase's first (fig's insert).
    let t1_lsn = log.iter().find(|c| c[5]["name"] == "fig").unwrap()[0].as_u64().unwrap() - 1;
    assert_eq!((&mark["bookmark"], &mark["source"]), (&json!(format!("lsn:{t1_lsn}")), &json!("lake")), "{mark}");
    let (status, report) = local.post("/t/acme/restore", json!({ "to": acme_t1, "into": "acme-t1" })).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!((&report["origin"], &report["replayedFrom"], &report["replayed"]), (&json!("edge"), &json!("lake"), &json!(2)), "{report}");
    assert_eq!(report["target"]["bookmark"], mark["bookmark"], "{report}");
    let (status, report) = local.post("/t/home/restore", json!({ "to": home_t1, "into": "home-t1" })).await;
    assert_eq!(status, 200, "{report}");
    let t1 = shape(&local, "acme-t1").await;
    assert_eq!(t1, shape(&local, "home-t1").await);
    assert_eq!(t1["rows"]["items"].as_array().map(Vec::len), Some(2), "{t1}");
    assert_eq!(t1["rows"]["items"][1], json!({"id": 2, "name": "pear", "price": "4.50", "tags": ["sale", "x"], "at": null}), "{t1}");

    // Now, from the command line: a column added since, a table without
    // rows, rows written while the server was down; the branch is this
    // server's tenant from then on, its log holding every row.
    let out = Command::new(tidelake_tests::binary())
        .args(["restore", "--tenant", "acme", "--to", &format!("lsn:{head}"), "--into", "acme-now", "--url", &server.base])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.starts_with(&format!("branched acme into acme-now at lsn:{head} from the lake's history of the edge's tenant (4 rows loaded, ")), "{printed}");
    let now_shape = shape(&local, "acme-now").await;
    assert_eq!(now_shape, shape(&edge, "acme").await);
    assert_eq!(now_shape["rows"]["kept_empty"], json!([]), "{now_shape}");
    local.ok("acme-now", "INSERT INTO items (id, name) VALUES (7, 'date')", json!([])).await;
    let branch_log = local.change_log("acme-now").await;
    let mut inserted: Vec<u64> = branch_log.iter().filter(|c| c[1] == "insert").map(|c| c[5]["id"].as_u64().unwrap()).collect();
    inserted.sort();
    assert_eq!(inserted, [1, 2, 5, 6, 7], "{branch_log:?}");

    // What the lake keeps of types a new database lacks, tables without a
    // key, JSON, and a table dropped: an enum's column comes back as text
    // (the report names it), rows without a key as a multiset, JSON as
    // JSON, the dropped table not at all; an update of a table without a
    // key cannot be placed, and says so.
    for sql in [
        "CREATE TYPE mood AS ENUM ('ok', 'sad')",
        "CREATE TABLE notes (body text NOT NULL, mood mood, doc jsonb)",
        "INSERT INTO notes VALUES ('a', 'ok', '{\"k\": [1, 2]}'), ('a', 'ok', '{\"k\": [1, 2]}'), ('b', 'sad', NULL)",
        "DELETE FROM notes WHERE ctid = (SELECT min(ctid) FROM notes WHERE body = 'a')",
        "CREATE TABLE gone (id int PRIMARY KEY)",
        "INSERT INTO gone VALUES (1)",
        "DROP TABLE gone",
    ] {
        edge.ok("acme", sql, json!([])).await;
    }
    let before_update = edge.change_log("acme").await.last().unwrap()[0].as_u64().unwrap();
    edge.ok("acme", "UPDATE notes SET body = 'c' WHERE body = 'b'", json!([])).await;
    let (status, report) = local.post("/t/acme/restore", json!({ "to": format!("lsn:{before_update}"), "into": "acme-notes" })).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["asText"], json!(["public.notes.mood (public.mood)"]), "{report}");
    let notes = local.ok("acme-notes", "SELECT body, mood, doc, pg_typeof(mood)::text AS t FROM notes ORDER BY body", json!([])).await;
    assert_eq!(
        notes["rows"],
        json!([{"body": "a", "mood": "ok", "doc": {"k": [1, 2]}, "t": "text"}, {"body": "b", "mood": "sad", "doc": null, "t": "text"}])
    );
    let tables = local.ok("acme-notes", "SELECT string_agg(tablename, ',' ORDER BY tablename) AS t FROM pg_tables WHERE schemaname = 'public'", json!([])).await;
    assert_eq!(tables["rows"][0]["t"], "items,kept_empty,notes");
    let (status, body) = local.post("/t/acme/restore", json!({ "to": format!("lsn:{}", before_update + 1), "into": "acme-upd" })).await;
    assert_eq!((status, code(&body)), (400, "replay_needs_old_row"), "{body}");
    let (_, health) = local.get("/t/acme-upd/health").await;
    assert_eq!(health["tenant"]["exists"], false, "a refused branch leaves nothing behind: {health}");

    // A server tenant of the edge tenant's name does not mix its log into
    // the edge tenant's history: it is refused, and says why.
    local.ok("acme", "CREATE TABLE items (id int PRIMARY KEY)", json!([])).await;
    local.ok("acme", "INSERT INTO items VALUES (100)", json!([])).await;
    let refused = tidelake_tests::eventually(std::time::Duration::from_secs(30), || async {
        let (_, health) = local.get("/t/acme/health").await;
        health["tenant"]["lake"]["error"].as_str().is_some_and(|e| e.contains("edge"))
    })
    .await;
    assert!(refused, "{}", local.get("/t/acme/health").await.1);
    assert_eq!(lake(&local, "SELECT id FROM acme.items ORDER BY id").await, now);
    dev.kill();
}

/// What a restore must bring back of a tenant: its tables in `public`,
/// their columns (type, nullability), primary keys, and rows (as text
/// where the JSON would differ by how the value was typed).
async fn shape(api: &Api, tenant: &str) -> Value {
    let columns = api
        .ok(
            tenant,
            "SELECT c.table_name, c.column_name, c.data_type, c.udt_name, c.is_nullable, c.numeric_precision, c.numeric_scale \
             FROM information_schema.columns c WHERE c.table_schema = 'public' ORDER BY c.table_name, c.ordinal_position",
            json!([]),
        )
        .await;
    let keys = api
        .ok(
            tenant,
            "SELECT conrelid::regclass::text AS t, pg_get_constraintdef(oid) AS def FROM pg_constraint \
             WHERE contype = 'p' AND connamespace = 'public'::regnamespace ORDER BY 1",
            json!([]),
        )
        .await;
    let mut rows = serde_json::Map::new();
    for (table, row) in [
        ("items", "to_jsonb(t) - 'price' - 'at' || jsonb_build_object('price', price::text, 'at', at::text)"),
        ("kept_empty", "to_jsonb(t)"),
    ] {
        let sql = format!("SELECT {row} AS r FROM {table} t ORDER BY t.id");
        let (status, body) = api.post(&format!("/t/{tenant}/query"), json!({ "sql": sql })).await;
        if status == 200 {
            rows.insert(table.to_owned(), body["rows"].as_array().unwrap().iter().map(|r| r["r"].clone()).collect());
        }
    }
    json!({ "columns": columns["rows"], "keys": keys["rows"], "rows": rows })
}

/// The tenant's `health` once its tier is `tier`/// The tenant's `health` once its tier is `tier` (`None`: never within a minute).
async fn once_tier(api: &Api, tenant: &str, tier: &str) -> Option<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let (status, health) = api.get(&format!("/t/{tenant}/health")).await;
        assert_eq!(status, 200, "{health}");
        if health["tenant"]["tier"] == tier {
            return Some(health["tenant"].clone());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    None
}

/// Everything a user would check of a tenant's data: the rows (as text,
/// every column), the change log and the schema with its versions.
async fn tenant_state(api: &Api, tenant: &str) -> Value {
    let rows = api
        .ok(tenant, "SELECT string_agg(f::text, '|' ORDER BY id) AS rows, count(*) AS n FROM frost.facts f", json!([]))
        .await;
    let (status, schema) = api.get(&format!("/t/{tenant}/schema")).await;
    assert_eq!(status, 200, "{schema}");
    json!({ "rows": rows["rows"], "log": api.change_log(tenant).await, "schema": schema })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_edge_tenants_go_to_r2_and_come_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let vars = [("COLD_AFTER", "4s".to_owned()), ("WARM_FOR", "8s".to_owned())];
    let dev = EdgeDev::start_with(&state, &vars).await;
    let api = Api { base: dev.base.clone(), token: None };
    let tenant = "frost";
    for sql in [
        "CREATE SCHEMA frost",
        "CREATE TABLE frost.facts (id int PRIMARY KEY, body text, doc jsonb, price numeric(12,2), at timestamptz, raw bytea)",
        "INSERT INTO frost.facts SELECT g, repeat(md5(g::text), 8), jsonb_build_object('g', g, 'even', g % 2 = 0), \
         g * 1.25, '2026-01-01'::timestamptz + g * interval '1 minute', sha256(g::text::bytea) FROM generate_series(1, 3000) g",
        "UPDATE frost.facts SET body = 'changed' WHERE id % 7 = 0",
        "DELETE FROM frost.facts WHERE id > 2900",
    ] {
        api.ok(tenant, sql, json!([])).await;
    }
    let before = tenant_state(&api, tenant).await;
    assert_eq!(before["rows"][0]["n"], 2900);
    let head = before["log"].as_array().unwrap().last().unwrap()[0].as_u64().unwrap();

    // Idle: its pages leave the object for R2, a copy in the cache.
    let warm = once_tier(&api, tenant, "warm").await.expect("the idle tenant goes warm");
    assert_eq!(warm["engine"], "hibernated", "{warm}");
    assert_eq!((&warm["diskBytes"], &warm["exists"]), (&json!(0), &json!(true)), "nothing left in the object: {warm}");
    let archive = warm["archive"].clone();
    assert_eq!(archive["headLsn"], head, "{warm}");
    assert_eq!(archive["tenant"], tenant);
    assert!(archive["bytes"].as_u64().unwrap() > 0 && archive["bytes"] == warm["archiveBytes"], "{warm}");
    assert!(archive["rawBytes"].as_u64().unwrap() > archive["bytes"].as_u64().unwrap(), "compressed: {archive}");
    // The cache's copy expires: cold, in R2 only.
    let cold = once_tier(&api, tenant, "cold").await.expect("the cache's copy expires");
    assert_eq!(cold["archive"], archive);

    // The runtime killed and started again: still cold, the pointer kept.
    dev.kill();
    let dev = EdgeDev::start_with(&state, &vars).await;
    let api = Api { base: dev.base.clone(), token: None };
    let health = api.get(&format!("/t/{tenant}/health")).await.1["tenant"].clone();
    assert_eq!((&health["tier"], &health["archive"]), (&json!("cold"), &archive), "{health}");

    // A damaged archive is refused, naming it; the tenant stays cold and
    // comes back once the archive is intact again.
    let blobs: Vec<_> = std::fs::read_dir(state.join("v3/r2/tidelake-archive/blobs"))
        .expect("the local R2's blobs")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(blobs.len(), 1, "one archive in R2: {blobs:?}");
    let intact = std::fs::read(&blobs[0]).unwrap();
    let mut damaged = intact.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(&blobs[0], &damaged).unwrap();
    let (status, body) = api.post(&format!("/t/{tenant}/query"), json!({"sql": "SELECT 1"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (500, Some("archive_corrupt")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(archive["key"].as_str().unwrap()), "{body}");
    let health = api.get(&format!("/t/{tenant}/health")).await.1["tenant"].clone();
    assert_eq!((&health["tier"], &health["archive"]), (&json!("cold"), &archive), "{health}");
    std::fs::write(&blobs[0], &intact).unwrap();

    // Back from R2: every row, the change log and the schema, exactly.
    assert_eq!(tenant_state(&api, tenant).await, before);
    let health = api.get(&format!("/t/{tenant}/health")).await.1["tenant"].clone();
    assert_eq!((&health["tier"], &health["wokeFrom"]), (&json!("hot"), &json!("r2")), "{health}");

    // It goes on from there; idle again, it wakes from the cache's copy.
    api.ok(tenant, "INSERT INTO frost.facts (id, body) VALUES (5000, 'after the wake')", json!([])).await;
    let after = tenant_state(&api, tenant).await;
    assert_eq!(after["log"].as_array().unwrap().len(), before["log"].as_array().unwrap().len() + 1);
    let warm = once_tier(&api, tenant, "warm").await.expect("idle again");
    assert_ne!(warm["archive"]["key"], archive["key"], "a new archive");
    assert_eq!(warm["archive"]["headLsn"], head + 1);
    assert_eq!(tenant_state(&api, tenant).await, after);
    let health = api.get(&format!("/t/{tenant}/health")).await.1["tenant"].clone();
    assert_eq!(health["wokeFrom"], "cache", "{health}");
    let blobs = std::fs::read_dir(state.join("v3/r2/tidelake-archive/blobs")).unwrap().count();
    assert_eq!(blobs, 1, "the older archive is removed once a newer one holds the tenant");
    dev.kill();
}
