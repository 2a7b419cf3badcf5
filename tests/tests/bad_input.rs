//! Bad input gets a clear JSON error with the right status, and the server
//! keeps serving without losing what was committed.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Client, Server, Ws};

async fn post_raw(c: &Client, path: &str, body: &str) -> (StatusCode, Value) {
    let resp = c
        .http
        .post(c.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A POST whose body comes in chunks (no Content-Length): the status.
fn chunked_post(base: &str, path: &str, body: &str) -> u16 {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    // The answer may come before the whole body is taken.
    let _ = stream.write_all(head.as_bytes());
    for piece in body.as_bytes().chunks(1024) {
        let _ = write!(stream, "{:x}\r\n", piece.len());
        let _ = stream.write_all(piece);
        let _ = stream.write_all(b"\r\n");
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn malformed_requests_get_clear_errors_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--tenants-max-body-bytes", "4096"]).await;
    let c = server.client();
    malformed_requests_get_clear_errors(&c, "bad", 4096).await;
    // A tenant that was only ever sent bad requests was never created.
    let (_, ping) = c.get("/t/never-made/ping").await;
    assert_eq!(ping["exists"], false);
}

/// The test above against any target (the server, the edge) whose body
/// limit is `max_body` bytes.
pub(crate) async fn malformed_requests_get_clear_errors(c: &Client, tenant: &str, max_body: usize) {
    c.exec(tenant, "CREATE TABLE kept (v int)").await;
    c.exec(tenant, "INSERT INTO kept VALUES (1), (2), (3)").await;

    let query = format!("/t/{tenant}/query");
    let batch = format!("/t/{tenant}/batch");
    let nope = format!("/t/{tenant}/nope");
    let cases: &[(&str, &str, StatusCode, &str)] = &[
        (&query, "{\"sql\": ", StatusCode::BAD_REQUEST, "malformed_json"),
        (&query, "not json at all", StatusCode::BAD_REQUEST, "malformed_json"),
        (&query, "", StatusCode::BAD_REQUEST, "malformed_json"),
        (&query, "{\"sql\": 42}", StatusCode::BAD_REQUEST, "invalid_request"),
        (&query, "{\"sql\": \"SELECT 1\", \"params\": \"x\"}", StatusCode::BAD_REQUEST, "invalid_request"),
        (&query, "{\"sql\": \"SELECT 1\", \"rowMode\": \"table\"}", StatusCode::BAD_REQUEST, "invalid_request"),
        (&query, "{\"query\": \"SELECT 1\"}", StatusCode::BAD_REQUEST, "invalid_request"),
        (&batch, "{\"statements\": {}}", StatusCode::BAD_REQUEST, "invalid_request"),
        (&query, "{\"sql\": \"\"}", StatusCode::BAD_REQUEST, "42601"),
        (&query, "{\"sql\": \"   \"}", StatusCode::BAD_REQUEST, "42601"),
        (&query, "{\"sql\": \"-- only a comment\"}", StatusCode::BAD_REQUEST, "42601"),
        (&query, "{\"sql\": \"SELEC 1\"}", StatusCode::BAD_REQUEST, "42601"),
        (&query, "{\"sql\": \"SELECT * FROM missing\"}", StatusCode::BAD_REQUEST, "42P01"),
        (&query, "{\"sql\": \"SELECT 1/0\"}", StatusCode::BAD_REQUEST, "22012"),
        (&query, "{\"sql\": \"SELECT $1::int\", \"params\": [\"abc\"]}", StatusCode::BAD_REQUEST, "22P02"),
        (&query, "{\"sql\": \"SELECT $1, $2\", \"params\": [1]}", StatusCode::BAD_REQUEST, "08P01"),
        (&query, "{\"sql\": \"SELECT 1; SELECT $1\", \"params\": [1]}", StatusCode::BAD_REQUEST, "42601"),
        (&query, "{\"sql\": \"SELECT 'a\\u0000b'\"}", StatusCode::BAD_REQUEST, "invalid_sql"),
        ("/t/Bad/query", "{\"sql\": \"SELECT 1\"}", StatusCode::BAD_REQUEST, "invalid_tenant"),
        ("/t/-x/query", "{\"sql\": \"SELECT 1\"}", StatusCode::BAD_REQUEST, "invalid_tenant"),
        ("/t/a_b/query", "{\"sql\": \"SELECT 1\"}", StatusCode::BAD_REQUEST, "invalid_tenant"),
        ("/t/api/query", "{\"sql\": \"SELECT 1\"}", StatusCode::FORBIDDEN, "tenant_blocked"),
        (&nope, "{}", StatusCode::NOT_FOUND, "not_found"),
    ];
    for (path, body, want_status, want_code) in cases {
        let (status, resp) = post_raw(c, path, body).await;
        assert_eq!(status, *want_status, "{path} {body:?}: {resp}");
        assert_eq!(resp["error"]["code"], *want_code, "{path} {body:?}: {resp}");
        assert!(resp["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{resp}");
    }

    // A too-long tenant id and a GET on a POST endpoint.
    let (status, resp) = c.get(&format!("/t/{}/ping", "a".repeat(64))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    let (status, resp) = c.get(&query.replace("/query", "/batch")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{resp}");

    // Oversized bodies are refused with 413 before any work, whether they
    // say their length or not.
    let big = json!({"sql": format!("SELECT '{}'", "x".repeat(max_body + 1))});
    let (status, resp) = c.post(&query, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{resp}");
    assert_eq!(resp["error"]["code"], "payload_too_large");
    let (base, path, body) = (c.url(""), query.clone(), big.to_string());
    let status = tokio::task::spawn_blocking(move || chunked_post(&base, &path, &body)).await.unwrap();
    assert_eq!(status, 413, "a body without a length");

    // A WebSocket message over the limit closes its connection with 1009
    // (message too big).
    let mut ws = Ws::connect(c.url("").trim_end_matches('/'), tenant).await;
    ws.send(json!({"type": "query", "id": "big", "sql": format!("SELECT '{}'", "x".repeat(max_body + 1))})).await;
    assert_eq!(ws.close_code(Duration::from_secs(30)).await, Some(1009));

    // Nothing committed was lost and the tenant still serves.
    let rows = c.rows(tenant, "SELECT sum(v) AS s FROM kept", json!([])).await;
    assert_eq!(rows[0]["s"], 6);
}

#[tokio::test]
async fn dropped_connections_do_not_disturb_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    c.exec("drop", "CREATE TABLE t (v int)").await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    // Half a request, then hang up.
    {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"POST /t/drop/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"sql\":")
            .unwrap();
    }
    // A whole request whose client leaves before the answer: the statement
    // still completes (or not) atomically.
    {
        let body = r#"{"sql":"INSERT INTO t SELECT g FROM generate_series(1, 20000) g"}"#;
        let mut s = TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST /t/drop/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            body
        )
        .unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // Whether or not the server ran it before noticing the hang-up, the
    // statement is all there or not there at all, every time we look.
    let mut seen = 0;
    for _ in 0..20 {
        let rows = c.rows("drop", "SELECT count(*) AS n FROM t", json!([])).await;
        seen = rows[0]["n"].as_i64().unwrap();
        assert!(seen == 0 || seen == 20000, "partial insert visible: {seen}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.exec("drop", "INSERT INTO t VALUES (-1)").await;
    let rows = c.rows("drop", "SELECT count(*) AS n FROM t", json!([])).await;
    assert_eq!(rows[0]["n"], seen + 1);
}

#[tokio::test]
async fn work_queued_past_the_queue_timeout_is_refused_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--tenants-queue-timeout", "300ms"]).await;
    let c = server.client();
    // Opening a new tenant may itself take longer than the queue timeout
    // when the machine is busy: set-up retries until the tenant is open.
    let created = tidelake_tests::eventually(Duration::from_secs(30), || async {
        c.query("queued", "CREATE TABLE IF NOT EXISTS t (v int)", json!([])).await.0 == StatusCode::OK
    })
    .await;
    assert!(created, "the tenant never opened");

    let slow = {
        let c = c.clone();
        tokio::spawn(async move {
            c.query("queued", "SELECT count(*) AS n FROM generate_series(1, 30000000)", json!([]))
                .await
        })
    };
    assert!(
        tidelake_tests::eventually(Duration::from_secs(10), || async {
            let (_, h) = c.get("/t/queued/health").await;
            h["tenant"]["inFlight"] == 1
        })
        .await
    );
    // Behind the slow statement, this insert waits past the queue timeout.
    let (status, body) = c.query("queued", "INSERT INTO t VALUES (1)", json!([])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "tenant_busy");

    // The statement that had started ran to its end and answered.
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["n"], 30000000);
    // The refused insert never ran.
    let rows = c.rows("queued", "SELECT count(*) AS n FROM t", json!([])).await;
    assert_eq!(rows[0]["n"], 0);
}
