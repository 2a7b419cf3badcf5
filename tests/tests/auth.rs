//! Who may do what: every route refuses a caller without a valid token
//! (401) or without the tenant or the scope (403) and changes nothing;
//! JWTs from an identity provider's JWKS (rotated mid-test) and a
//! database per user from `sub`; API keys made, listed and revoked with
//! the CLI; the Postgres wire front with SCRAM and with a token as the
//! password; PyIceberg with a token; and the browser attacks refused.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::jwt::{Jwks, Signer, now};
use tidelake_tests::{Client, Server, binary, eventually, run_python, tests_dir};

pub(crate) const SECRET: &str = "a shared secret of the tests, at least 32 bytes long";
pub(crate) const AUDIENCE: &str = "tidelake-tests";
const ISSUER: &str = "https://issuer.test";

/// An HS256 token: `scope`, `tenants`, valid for an hour unless `claims` say otherwise.
fn hs256(scope: &str, tenants: &[&str], claims: Value, secret: &str) -> String {
    let mut body = json!({"sub": "tester", "scope": scope, "tenants": tenants, "aud": AUDIENCE, "exp": now() + 3600});
    for (k, v) in claims.as_object().unwrap() {
        body[k] = v.clone();
    }
    encode(&Header::new(Algorithm::HS256), &body, &EncodingKey::from_secret(secret.as_bytes()).unwrap()).unwrap()
}

/// `tidelake token create` in a data dir: the key it prints.
pub(crate) fn create_key(data_dir: &Path, tenants: &str, scope: &str) -> String {
    let out = Command::new(binary())
        .args(["token", "create", "--tenant", tenants, "--scope", scope, "--data-dir"])
        .arg(data_dir)
        .env_remove("TIDELAKE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn tidelake(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary()).args(args).arg("--data-dir").arg(data_dir).env_remove("TIDELAKE_CONFIG").output().unwrap()
}

/// A request with an optional bearer token: (status, WWW-Authenticate, JSON body).
async fn call(c: &Client, method: &str, path: &str, body: Option<&Value>, token: Option<&str>) -> (StatusCode, Option<String>, Value) {
    let mut request = c.http.request(method.parse().unwrap(), c.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap_or_default();
    (status, challenge, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Each tenant gets `items (id int PRIMARY KEY)` holding ids 1 to n, in the lake.
async fn items_in_the_lake(c: &Client, admin: &str, tenants: &[(&str, u32)]) {
    for (tenant, rows) in tenants {
        for sql in ["CREATE TABLE items (id int PRIMARY KEY)".to_owned(), format!("INSERT INTO items SELECT generate_series(1, {rows})")] {
            let (status, _, body) = call(c, "POST", &format!("/t/{tenant}/query"), Some(&json!({"sql": sql})), Some(admin)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let shipped = eventually(Duration::from_secs(60), || async {
            let (_, _, h) = call(c, "GET", &format!("/t/{tenant}/health"), None, Some(admin)).await;
            h["tenant"]["lake"]["lagLsn"] == 0 && h["tenant"]["lake"]["shippedLsn"].as_u64().is_some_and(|l| l > 0)
        })
        .await;
        assert!(shipped, "{tenant} never shipped");
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Need {
    Read,
    Write,
    Admin,
    /// `admin` over every tenant.
    Server,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_asks_for_a_token_the_tenant_and_the_scope() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin_key = create_key(&data, "*", "admin");
    // A deployment without migrations yet: `migrate` answers for every tenant.
    let migrations = dir.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    let migrations = migrations.to_str().unwrap().to_owned();
    let server =
        Server::start(&data, &["--auth-jwt-secret", SECRET, "--auth-audience", AUDIENCE, "--migrations", &migrations]).await;
    let c = server.client();
    let admin = Some(admin_key.as_str());
    for sql in ["CREATE TABLE items (id int PRIMARY KEY, name text)", "INSERT INTO items VALUES (1, 'one'), (2, 'two')"] {
        let (status, _, body) = call(&c, "POST", "/t/acme/query", Some(&json!({"sql": sql})), admin).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _, body) = call(&c, "POST", "/t/beta/query", Some(&json!({"sql": sql})), admin).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (head, at) = {
        let sql = r#"SELECT tidelake.next_lsn() - 1 AS h, to_char(now() AT TIME ZONE 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at"#;
        let (_, _, body) = call(&c, "POST", "/t/acme/query", Some(&json!({"sql": sql})), admin).await;
        (body["rows"][0]["h"].as_u64().unwrap(), body["rows"][0]["at"].as_str().unwrap().to_owned())
    };
    // The lake has acme's table before the lake's routes are tried.
    assert!(eventually(Duration::from_secs(60), || async {
        let (_, _, body) = call(&c, "GET", "/t/acme/health", None, admin).await;
        body["tenant"]["lake"]["shippedLsn"].as_u64() == Some(head)
    })
    .await);

    let insert = json!({"sql": "INSERT INTO items VALUES (100, 'written')"});
    let batch = json!({"statements": [{"sql": "INSERT INTO items VALUES (101, 'batched')"}]});
    let transaction = json!({"statements": [{"sql": "INSERT INTO items VALUES (102, 'in a transaction')"}]});
    let routes: Vec<(&str, String, Option<Value>, Need)> = vec![
        ("GET", "/t/acme/ping".into(), None, Need::Read),
        ("GET", "/t/acme/config".into(), None, Need::Read),
        ("GET", "/t/acme/schema".into(), None, Need::Read),
        ("GET", "/t/acme/health".into(), None, Need::Read),
        ("POST", "/t/acme/query".into(), Some(json!({"sql": "SELECT count(*) AS n FROM items"})), Need::Read),
        ("GET", "/t/acme/query?sql=SELECT%20count(*)%20AS%20n%20FROM%20items".into(), None, Need::Read),
        ("GET", "/t/acme/changes?since=0".into(), None, Need::Read),
        ("POST", "/sql".into(), Some(json!({"sql": "SELECT count(*) AS n FROM acme.items"})), Need::Read),
        ("GET", format!("/diff?table=acme.items&from=0&to={head}"), None, Need::Read),
        ("GET", format!("/growth?table=acme.items&start=2026-11-01%2000:00:00%2B00&end={at}&interval=1%20day"), None, Need::Read),
        ("GET", format!("/activity?table=acme.items&start=2026-11-01%2000:00:00%2B00&end={at}&interval=1%20day"), None, Need::Read),
        ("GET", "/catalog/v1/namespaces/acme".into(), None, Need::Read),
        ("HEAD", "/catalog/v1/namespaces/acme/tables/items".into(), None, Need::Read),
        ("GET", "/catalog/v1/namespaces/acme/tables".into(), None, Need::Read),
        ("GET", "/catalog/v1/namespaces/acme/tables/items".into(), None, Need::Read),
        ("POST", "/t/acme/query".into(), Some(insert.clone()), Need::Write),
        ("POST", "/t/acme/batch".into(), Some(batch.clone()), Need::Write),
        ("POST", "/t/acme/transaction".into(), Some(transaction), Need::Write),
        ("POST", "/t/acme/cancel".into(), Some(json!({})), Need::Write),
        ("GET", "/t/acme/backups".into(), None, Need::Admin),
        ("POST", "/t/acme/backups".into(), Some(json!({})), Need::Admin),
        ("GET", format!("/t/acme/bookmark?at={at}"), None, Need::Admin),
        ("POST", "/t/acme/changes/ack".into(), Some(json!({"consumer": "auditor", "lsn": 1})), Need::Admin),
        ("POST", "/t/acme/restore".into(), Some(json!({"to": format!("lsn:{head}"), "into": "acme-copy"})), Need::Admin),
        ("POST", "/t/acme/migrate".into(), Some(json!({})), Need::Admin),
        ("POST", "/t/acme/migrate/down".into(), Some(json!({"to": 0})), Need::Admin),
        ("GET", "/health".into(), None, Need::Server),
        ("GET", "/metrics".into(), None, Need::Server),
        ("POST", "/catalog/v1/namespaces".into(), Some(json!({"namespace": ["scratch"]})), Need::Server),
    ];
    let wrong_secret = "another secret, also at least 32 bytes long";
    let refused: Vec<(&str, Option<String>, StatusCode)> = vec![
        ("no token", None, StatusCode::UNAUTHORIZED),
        ("bad signature", Some(hs256("admin", &["*"], json!({}), wrong_secret)), StatusCode::UNAUTHORIZED),
        ("expired", Some(hs256("admin", &["*"], json!({"exp": now() - 600}), SECRET)), StatusCode::UNAUTHORIZED),
        ("wrong audience", Some(hs256("admin", &["*"], json!({"aud": "someone-else"}), SECRET)), StatusCode::UNAUTHORIZED),
        ("a revoked API key", Some(create_key(&data, "*", "admin")), StatusCode::UNAUTHORIZED),
        ("other tenant", Some(hs256("admin", &["beta", "acme2", "acm*x"], json!({}), SECRET)), StatusCode::FORBIDDEN),
    ];
    let revoked = refused[4].1.clone().unwrap();
    let id = revoked.split('_').take(2).collect::<Vec<_>>().join("_");
    assert!(tidelake(&data, &["token", "revoke", &id]).status.success());

    for (method, path, body, need) in &routes {
        for (case, token, status) in &refused {
            let (got, challenge, answer) = call(&c, method, path, body.as_ref(), token.as_deref()).await;
            assert_eq!(got, *status, "{case}: {method} {path}: {answer}");
            if *status == StatusCode::UNAUTHORIZED {
                assert!(challenge.is_some_and(|h| h.starts_with("Bearer")), "{case}: {method} {path} has no challenge");
            }
        }
        // One scope less than the route needs, on the right tenant.
        let (scope, tenants): (&str, &[&str]) = match need {
            Need::Read => ("none", &["acme"]),
            Need::Write => ("read", &["acme"]),
            Need::Admin => ("write", &["acme", "acme-*"]),
            Need::Server => ("admin", &["acme", "acme-*", "beta"]),
        };
        let token = hs256(scope, tenants, json!({}), SECRET);
        let (got, _, answer) = call(&c, method, path, body.as_ref(), Some(&token)).await;
        assert_eq!(got, StatusCode::FORBIDDEN, "missing scope: {method} {path}: {answer}");
    }

    // The WebSocket: refused at the handshake without a token, taken with one.
    let ws_url = format!("{}/t/acme/ws", server.base.replacen("http://", "ws://", 1));
    let handshake = |token: Option<String>| {
        let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws_url.as_str()).unwrap();
        if let Some(token) = token {
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        tokio_tungstenite::connect_async(request)
    };
    for (token, status) in [(None, StatusCode::UNAUTHORIZED), (Some(hs256("read", &["beta"], json!({}), SECRET)), StatusCode::FORBIDDEN)] {
        match handshake(token).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), status),
            other => panic!("a WebSocket with {status} expected: {:?}", other.map(|_| ())),
        }
    }
    assert!(handshake(Some(hs256("read", &["acme"], json!({}), SECRET))).await.is_ok(), "a read token subscribes");

    // Nothing was changed by any refused request.
    let (_, _, rows) = call(&c, "POST", "/t/acme/query", Some(&json!({"sql": "SELECT id FROM items ORDER BY id"})), admin).await;
    assert_eq!(rows["rows"], json!([{"id": 1}, {"id": 2}]));
    let (_, _, backups) = call(&c, "GET", "/t/acme/backups", None, admin).await;
    let backups_before = backups["backups"].as_array().unwrap().len();
    let (status, _, _) = call(&c, "GET", "/t/acme-copy/ping", None, admin).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, ping) = call(&c, "GET", "/t/acme-copy/ping", None, admin).await;
    assert_eq!(ping["exists"], false, "no branch was made");
    let (status, _, _) = call(&c, "GET", "/catalog/v1/namespaces/scratch", None, admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no namespace was made");
    let (_, _, changes) = call(&c, "GET", "/t/acme/changes?since=0", None, admin).await;
    assert_eq!(changes["changes"].as_array().unwrap().len() as u64, head, "the change log is whole");

    // The right scope on the right tenant: each route answers.
    for (method, path, body, need) in &routes {
        let (scope, tenants): (&str, &[&str]) = match need {
            Need::Read => ("read", &["acme"]),
            Need::Write => ("write", &["acme"]),
            Need::Admin => ("admin", &["acme", "acme-*"]),
            Need::Server => ("admin", &["*"]),
        };
        let token = hs256(scope, tenants, json!({}), SECRET);
        let (got, _, answer) = call(&c, method, path, body.as_ref(), Some(&token)).await;
        assert!(got.is_success(), "{scope}: {method} {path}: {got} {answer}");
    }
    let (_, _, rows) = call(&c, "POST", "/t/acme/query", Some(&json!({"sql": "SELECT id FROM items ORDER BY id"})), admin).await;
    assert_eq!(rows["rows"], json!([{"id": 1}, {"id": 2}, {"id": 100}, {"id": 101}, {"id": 102}]), "written by the write scope only");
    let (_, _, backups) = call(&c, "GET", "/t/acme/backups", None, admin).await;
    assert_eq!(backups["backups"].as_array().unwrap().len(), backups_before + 1);

    // A read token's SQL is read-only whatever it tries; its lake reads see its tenants.
    let reader = hs256("read", &["acme"], json!({}), SECRET);
    for sql in [
        "INSERT INTO items VALUES (7, 'x')",
        "COMMIT; INSERT INTO items VALUES (7, 'x')",
        "SET TRANSACTION READ WRITE; INSERT INTO items VALUES (7, 'x')",
        "CREATE TABLE sneaky (x int)",
        "DO $$ BEGIN INSERT INTO items VALUES (7, 'x'); END $$",
        "TRUNCATE items",
    ] {
        let (status, _, body) = call(&c, "POST", "/t/acme/query", Some(&json!({"sql": sql})), Some(&reader)).await;
        assert!(status == StatusCode::FORBIDDEN || status == StatusCode::BAD_REQUEST, "{sql}: {status} {body}");
    }
    let (_, _, count) = call(&c, "POST", "/t/acme/query", Some(&json!({"sql": "SELECT count(*) AS n FROM items"})), Some(&reader)).await;
    assert_eq!(count["rows"][0]["n"], 5, "the read token changed nothing: {count}");
    let (status, _, body) = call(&c, "POST", "/sql", Some(&json!({"sql": "SELECT * FROM beta.items"})), Some(&reader)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let both = hs256("read", &["acme", "beta"], json!({}), SECRET);
    let (_, _, union) = call(&c, "POST", "/sql", Some(&json!({"sql": "SELECT count(DISTINCT tenant) AS n FROM all_tenants.items"})), Some(&reader)).await;
    assert_eq!(union["rows"][0]["n"], 1, "{union}");
    let (_, _, union) = call(&c, "POST", "/sql", Some(&json!({"sql": "SELECT count(DISTINCT tenant) AS n FROM all_tenants.items"})), Some(&both)).await;
    assert_eq!(union["rows"][0]["n"], 2, "{union}");
    let (_, _, tables) = call(&c, "GET", "/tables", None, Some(&reader)).await;
    assert!(tables["tables"].as_array().unwrap().iter().all(|t| t["tenant"] == "acme"), "{tables}");
    let (_, _, namespaces) = call(&c, "GET", "/catalog/v1/namespaces", None, Some(&reader)).await;
    assert_eq!(namespaces["namespaces"], json!([["acme"]]));

    // Even an administrator cannot rewrite what makes a table a tenant's history.
    for (method, path, body) in [
        ("DELETE", "/catalog/v1/namespaces/acme/tables/items", None),
        ("DELETE", "/catalog/v1/namespaces/acme", None),
        ("POST", "/catalog/v1/namespaces/acme/properties", Some(json!({"updates": {"tidelake.shipped-lsn": "999999"}}))),
        ("POST", "/catalog/v1/namespaces/acme/tables/items", Some(json!({"updates": [{"action": "set-properties", "updates": {"tidelake.lsn-to": "999999"}}]}))),
        ("POST", "/catalog/v1/namespaces/acme/tables/items", Some(json!({"updates": [{"action": "set-location", "location": "/tmp/elsewhere"}]}))),
        ("POST", "/catalog/v1/namespaces", Some(json!({"namespace": ["newco"], "properties": {"tidelake.shipped-lsn": "5"}}))),
    ] {
        let (status, _, answer) = call(&c, method, path, body.as_ref(), admin).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["type"], "ForbiddenException");
    }
    let (status, _, _) = call(&c, "GET", "/catalog/v1/namespaces/acme/tables/items", None, admin).await;
    assert_eq!(status, StatusCode::OK, "the tenant's table is still there");

    // The CLI lists what each key allows, and talks to the server with a token.
    let list = tidelake(&data, &["token", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.lines().count() == 3 && text.contains("admin") && text.contains(&id), "{text}");
    assert!(!text.contains(&admin_key), "keys are never shown again");
    let out = Command::new(binary()).args(["tenants", "--url", &server.base, "--token", &admin_key]).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("acme"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(binary()).args(["tenants", "--url", &server.base]).env_remove("TIDELAKE_TOKEN").output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_per_user_with_keys_rotated_by_the_identity_provider() {
    let k1 = Signer::load("rsa-1.pem", "k1", Algorithm::RS256);
    let k2 = Signer::load("rsa-2.pem", "k2", Algorithm::RS256);
    let e1 = Signer::load("ec-1.pem", "e1", Algorithm::ES256);
    let jwks = Jwks::start().await;
    jwks.publish(&[&k1, &e1]);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--auth-jwks-url", &jwks.url, "--auth-issuer", "https://issuer.test", "--auth-audience", AUDIENCE, "--auth-tenant-claim", "sub", "--auth-jwks-refresh", "2s"],
    )
    .await;
    let c = server.client();

    // Each user writes their own database, named from their `sub`.
    let alice = k1.token("auth0|alice", "read write", ISSUER, AUDIENCE);
    let bob = e1.token("bob", "write", ISSUER, AUDIENCE);
    let alice_db = "u-mf2xi2bqprqwy2ldmu"; // "auth0|alice" in lowercase base32, docs/auth.md
    for (token, tenant, name) in [(&alice, alice_db, "alice"), (&bob, "bob", "bob")] {
        for sql in ["CREATE TABLE notes (id int PRIMARY KEY, body text)".to_owned(), format!("INSERT INTO notes VALUES (1, '{name}')")] {
            let (status, _, body) = call(&c, "POST", &format!("/t/{tenant}/query"), Some(&json!({"sql": sql})), Some(token)).await;
            assert_eq!(status, StatusCode::OK, "{tenant}: {body}");
        }
    }
    let (status, _, body) = call(&c, "POST", "/t/bob/query", Some(&json!({"sql": "SELECT * FROM notes"})), Some(&alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "alice may not read bob's database: {body}");
    let (status, _, _) = call(&c, "POST", &format!("/t/{alice_db}/query"), Some(&json!({"sql": "SELECT 1"})), Some(&bob)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, _, rows) = call(&c, "POST", &format!("/t/{alice_db}/query"), Some(&json!({"sql": "SELECT body FROM notes"})), Some(&alice)).await;
    assert_eq!(rows["rows"], json!([{"body": "alice"}]));

    // A key the provider has not published yet: refused (the JWKS was
    // fetched moments ago, so it is not fetched again for it) ...
    let by_k2 = k2.token("auth0|alice", "read", ISSUER, AUDIENCE);
    let (status, _, body) = call(&c, "GET", &format!("/t/{alice_db}/ping"), None, Some(&by_k2)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // ... then published: taken by the next refresh.
    jwks.publish(&[&k1, &k2, &e1]);
    let ping = |token: String| {
        let c = c.clone();
        async move { call(&c, "GET", &format!("/t/{alice_db}/ping"), None, Some(&token)).await.0 }
    };
    assert!(eventually(Duration::from_secs(20), || ping(by_k2.clone()).then_ok()).await, "k2 never accepted");
    // The old key retired: its tokens stop working.
    jwks.publish(&[&k2, &e1]);
    assert!(eventually(Duration::from_secs(20), || ping(alice.clone()).then_unauthorized()).await, "k1 still accepted");
    assert_eq!(ping(by_k2.clone()).await, StatusCode::OK);

    // A token of another issuer, or with no tidelake scope.
    let foreign = k2.sign(&json!({"sub": "bob", "scope": "write", "iss": "https://evil.test", "aud": AUDIENCE, "exp": now() + 600}));
    assert_eq!(call(&c, "GET", "/t/bob/ping", None, Some(&foreign)).await.0, StatusCode::UNAUTHORIZED);
    let unscoped = k2.token("bob", "openid profile", ISSUER, AUDIENCE);
    assert_eq!(call(&c, "GET", "/t/bob/ping", None, Some(&unscoped)).await.0, StatusCode::FORBIDDEN);
}

trait StatusCheck {
    async fn then_ok(self) -> bool;
    async fn then_unauthorized(self) -> bool;
}

impl<F: Future<Output = StatusCode>> StatusCheck for F {
    async fn then_ok(self) -> bool {
        self.await == StatusCode::OK
    }
    async fn then_unauthorized(self) -> bool {
        self.await == StatusCode::UNAUTHORIZED
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wire_front_and_pyiceberg_take_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = create_key(&data, "*", "admin");
    let reader = create_key(&data, "acme", "read");
    let reader_user = reader.split('_').take(2).collect::<Vec<_>>().join("_");
    let config = dir.path().join("tidelake.toml");
    // A credential of the object store the catalog must never hand out.
    std::fs::write(&config, "[catalog.storage]\n\"s3.secret-access-key\" = \"do-not-share\"\n\"s3.region\" = \"us-east-1\"\n").unwrap();
    let server = Server::start(&data, &["--config", config.to_str().unwrap()]).await;
    let c = server.client();
    items_in_the_lake(&c, &admin, &[("acme", 2), ("beta", 2)]).await;

    let (status, _, config) = call(&c, "GET", "/catalog/v1/config", None, Some(&reader)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!config.to_string().contains("do-not-share") && config["defaults"]["s3.region"] == "us-east-1", "{config}");

    // The wire front: no password, a wrong one, SCRAM with an API key's
    // user name, and a token sent as the password.
    let pg = server.pg.clone().unwrap();
    let (host, port) = pg.rsplit_once(':').unwrap();
    let connect = |user: &str, password: Option<&str>| {
        let mut config = format!("host={host} port={port} user={user} dbname=lake");
        if let Some(password) = password {
            config.push_str(&format!(" password={password}"));
        }
        async move { tokio_postgres::connect(&config, tokio_postgres::NoTls).await }
    };
    assert!(connect("someone", None).await.is_err(), "a connection without a password");
    let err = connect(&reader_user, Some("tlk_000000000000_wrong")).await.err().expect("a wrong password is refused");
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("28P01"), "{err}");
    for (user, password) in [(reader_user.as_str(), reader.as_str()), ("analyst", reader.as_str())] {
        let (client, connection) = connect(user, Some(password)).await.unwrap_or_else(|e| panic!("{user}: {e}"));
        tokio::spawn(connection);
        let rows = client.simple_query("SELECT count(*) AS n FROM acme.items").await.unwrap();
        let n = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        });
        assert_eq!(n.as_deref(), Some("2"), "{user}");
        let err = client.simple_query("SELECT * FROM beta.items").await.err().expect("beta is out of reach");
        assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("42501"), "{err}");
    }
    // psql, with the key as PGPASSWORD (SCRAM-SHA-256).
    let out = Command::new("psql")
        .args(["-h", host, "-p", port, "-U", &reader_user, "-d", "lake", "-At", "-c", "SELECT count(*) FROM all_tenants.items"])
        .env("PGPASSWORD", &reader)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (Debian's postgresql-client)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2", "all_tenants is acme's two rows for this key");
    // The catalogs list what the key may read: psql's `\dt`, `\dn`, and information_schema.
    let out = Command::new("psql")
        .args(["-h", host, "-p", port, "-U", &reader_user, "-d", "lake", "-At", "-c", "\\dt", "-c", "\\dn"])
        .args(["-c", "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'beta'"])
        .env("PGPASSWORD", &reader)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (Debian's postgresql-client)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "acme|items|table|postgres\nacme|postgres\nall_tenants|postgres\n0\n");

    // PyIceberg's RestCatalog with the key as its token.
    let seen = run_python("catalog_token.py", &[&format!("{}/catalog", server.base), &reader, "acme.items", "beta.items"]);
    assert_eq!(seen["namespaces"], json!(["acme"]), "{seen}");
    let ids: Vec<i64> = seen["rows"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2], "{seen}");
    assert_eq!(seen["forbidden"], "ForbiddenError", "{seen}");
    assert_eq!(seen["bad_token"], "UnauthorizedError", "{seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_page_cannot_drive_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--tenants-base-domain", "db.test", "--auth-allowed-origins", "https://app.test"]).await;
    let c = server.client();
    let http = &c.http;

    // A form or `fetch` without preflight: text/plain is refused, and nothing runs.
    let resp = http
        .post(c.url("/t/acme/query"))
        .header("content-type", "text/plain")
        .body(r#"{"sql": "CREATE TABLE planted (x int)"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (_, ping) = c.get("/t/acme/ping").await;
    assert_eq!(ping["exists"], false, "no tenant was made: {ping}");
    let resp = http.post(c.url("/t/acme/backups")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "a POST without a body says JSON too");

    // DNS rebinding: a name that is not this server's.
    let resp = http.get(c.url("/health")).header("host", "rebind.attacker.example:7432").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);
    // A tenant's host with another tenant's header or path.
    let resp = http.get(c.url("/ping")).header("host", "acme.db.test").header("x-tenant-id", "victim").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = http.get(c.url("/t/victim/ping")).header("host", "acme.db.test").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = http.get(c.url("/ping")).header("host", "acme.db.test").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // CORS: the allowed origin is answered, another refused.
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, c.url("/t/acme/query"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let ok = preflight("https://app.test").await.unwrap();
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.test");
    assert!(ok.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    assert_eq!(preflight("https://evil.example").await.unwrap().status(), StatusCode::FORBIDDEN);

    // WebSockets: another origin is refused at the handshake; the server's own page is not.
    let ws_url = format!("{}/t/acme/ws", server.base.replacen("http://", "ws://", 1));
    let host = server.base.trim_start_matches("http://").to_owned();
    let handshake = |origin: String| {
        let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws_url.as_str()).unwrap();
        request.headers_mut().insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    match handshake("https://evil.example".into()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), StatusCode::FORBIDDEN),
        other => panic!("a WebSocket from another origin: {:?}", other.map(|_| ())),
    }
    assert!(handshake(format!("http://{host}")).await.is_ok(), "the same origin connects");

    // No auth, and an address other than loopback: the server will not start.
    let refused = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--pg-listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("exposed"))
        .env_remove("TIDELAKE_CONFIG")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("without auth") && message.contains("--auth-insecure-no-auth"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wire_front_speaks_tls_and_takes_token_passwords_only_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data, "*", "read");
    let user = key.split('_').take(2).collect::<Vec<_>>().join("_");
    let tls = tests_dir().join("fixtures/tls");
    let (cert, private) = (tls.join("server.crt"), tls.join("server.key"));
    let server = Server::start(&data, &["--pg-tls-cert", cert.to_str().unwrap(), "--pg-tls-key", private.to_str().unwrap()]).await;
    let pg = server.pg.clone().unwrap();
    let (host, port) = pg.rsplit_once(':').unwrap();
    let psql = |user: &str, sslmode: &str| {
        Command::new("psql")
            .arg(format!("host={host} port={port} user={user} dbname=lake sslmode={sslmode}"))
            .args(["-At", "-c", "SELECT 40 + 2"])
            .env("PGPASSWORD", &key)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql (Debian's postgresql-client)")
    };
    for (who, sslmode) in [(user.as_str(), "require"), (user.as_str(), "disable"), ("analyst", "require")] {
        let out = psql(who, sslmode);
        assert!(out.status.success(), "{who} with sslmode={sslmode}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    }
    // A token sent as is never crosses the network in clear.
    let out = psql("analyst", "disable");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("over TLS only"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_signs_in_with_a_token_and_shows_what_it_may_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = create_key(&data, "*", "admin");
    let reader = create_key(&data, "acme", "read");
    let server = Server::start(&data, &[]).await;
    let c = server.client();
    items_in_the_lake(&c, &admin, &[("acme", 3), ("beta", 5)]).await;
    let base = server.base.clone();
    let sql = "SELECT tenant, count(*) AS n FROM all_tenants.items GROUP BY tenant ORDER BY tenant";
    let shown = tokio::task::spawn_blocking(move || run_python("dashboard_signin.py", &[&base, &reader, sql])).await.unwrap();
    assert_eq!(shown["before"], "needed", "{shown}");
    assert_eq!(shown["formShown"], true, "{shown}");
    assert_eq!(shown["tables"], json!(["items"]), "{shown}");
    assert_eq!(shown["charts"], "ready", "{shown}");
    assert_eq!(shown["tenantsInGrowth"], json!(["acme"]), "only the token's tenant is drawn: {shown}");
    assert_eq!(shown["tenantsState"], "unavailable", "the tenant list needs admin over all: {shown}");
    assert_eq!(shown["sql"], json!([["tenant", "n"], ["acme", "3"]]), "{shown}");
    assert_eq!(shown["sessionStorage"], true, "{shown}");
    assert_eq!(shown["localStorage"], 0, "the token is kept for the browser session only: {shown}");
    assert_eq!(shown["signOutShown"], true, "{shown}");
    assert_eq!(shown["afterSignOut"], "needed", "{shown}");
}
