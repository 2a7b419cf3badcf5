//! The Iceberg REST catalog at /catalog, checked by PyIceberg as an
//! independent client and over raw HTTP for the spec's error contract.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Server, run_python};

#[tokio::test]
async fn pyiceberg_drives_the_rest_catalog_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let url = format!("{}/catalog", server.base);
    let seen = tokio::task::spawn_blocking(move || run_python("catalog_roundtrip.py", &[&url]))
        .await
        .unwrap();

    assert_eq!(seen["namespaces"], json!([["acme"]]));
    assert_eq!(seen["properties"], json!({"tier": "gold"}));
    assert_eq!(
        seen["rows"],
        json!([{"id": 1, "name": "a"}, {"id": 2, "name": null}, {"id": 3, "name": "c"}])
    );
    assert_eq!(seen["rows_at_first_snapshot"], json!([{"id": 1, "name": "a"}, {"id": 2, "name": null}]));
    assert_eq!(seen["snapshots"], 2);
    assert_eq!(seen["ids_after_concurrent_appends"], json!([1, 2, 3, 10, 20]));
    assert_eq!(seen["drop_non_empty"], "NamespaceNotEmptyError");
    assert_eq!(seen["tables"], json!([["acme", "things"]]));
    assert_eq!(seen["old_name"], "NoSuchTableError");
    assert_eq!(seen["namespaces_after_drop"], json!([]));
    assert_eq!(seen["dropped_namespace"], "NoSuchNamespaceError");
    // The warehouse is in the data dir.
    assert!(dir.path().join("data/warehouse").is_dir());
    assert!(dir.path().join("data/catalog.db").is_file());
}

#[tokio::test]
async fn rest_errors_and_commit_conflicts_follow_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    let error_type = |body: &Value| body["error"]["type"].as_str().unwrap_or_default().to_owned();

    let (status, config) = c.get("/catalog/v1/config").await;
    assert_eq!(status, StatusCode::OK);
    assert!(config["endpoints"].as_array().unwrap().contains(&json!("POST /v1/{prefix}/namespaces/{namespace}/tables/{table}")));

    let (status, body) = c.get("/catalog/v1/namespaces/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_type(&body), "NoSuchNamespaceException");
    assert_eq!(body["error"]["code"], 404);

    let (status, _) = c.post("/catalog/v1/namespaces", &json!({"namespace": ["ns"]})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = c.post("/catalog/v1/namespaces", &json!({"namespace": ["ns"]})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_type(&body), "AlreadyExistsException");
    let head = c.http.head(c.url("/catalog/v1/namespaces/ns")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::NO_CONTENT);
    let (status, body) = c.post("/catalog/v1/namespaces", &json!({"namespace": "not a list"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let schema = json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "type": "long", "required": true}]});
    let (status, created) = c
        .post("/catalog/v1/namespaces/ns/tables", &json!({"name": "t", "schema": schema}))
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let uuid = created["metadata"]["table-uuid"].clone();
    assert!(created["metadata-location"].as_str().unwrap().ends_with(".metadata.json"));

    // A commit whose requirement holds is applied …
    let (status, body) = c
        .post(
            "/catalog/v1/namespaces/ns/tables/t",
            &json!({
                "requirements": [{"type": "assert-table-uuid", "uuid": uuid}],
                "updates": [{"action": "set-properties", "updates": {"owner": "lake"}}],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["metadata"]["properties"]["owner"], "lake");
    // … one whose requirement no longer holds is a 409 and changes nothing.
    let (status, body) = c
        .post(
            "/catalog/v1/namespaces/ns/tables/t",
            &json!({
                "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 42}],
                "updates": [{"action": "set-properties", "updates": {"owner": "someone else"}}],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_type(&body), "CommitFailedException");
    let (_, loaded) = c.get("/catalog/v1/namespaces/ns/tables/t").await;
    assert_eq!(loaded["metadata"]["properties"]["owner"], "lake");

    let (status, body) = c.get("/catalog/v1/namespaces/ns/tables/missing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_type(&body), "NoSuchTableException");
    // Tenant routes and the catalog share the server without clashing.
    let (status, _) = c.get("/t/acme/ping").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_warehouse_can_live_on_s3() {
    let s3 = tidelake_tests::LocalS3::start("lake").await;
    let dir = tempfile::tempdir().unwrap();
    let config = s3.config_file(dir.path(), "lake", "");
    let server = Server::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]).await;
    let url = format!("{}/catalog", server.base);
    let env = tidelake_tests::LocalS3::reader_env();
    let seen = tokio::task::spawn_blocking(move || tidelake_tests::run_python_with("catalog_roundtrip.py", &[&url], &env))
        .await
        .unwrap();
    assert_eq!(
        seen["rows"],
        json!([{"id": 1, "name": "a"}, {"id": 2, "name": null}, {"id": 3, "name": "c"}])
    );
    assert_eq!(seen["ids_after_concurrent_appends"], json!([1, 2, 3, 10, 20]));
    // Metadata and data went to the bucket, not to the data dir.
    let keys = s3.keys("lake").await;
    assert!(keys.iter().any(|k| k.ends_with(".metadata.json")), "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with(".parquet")), "{keys:?}");
    assert!(!dir.path().join("data/warehouse").exists());
}

#[tokio::test]
async fn tidelake_catalog_serves_the_catalog_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, first) = start_alone(&["catalog", "--listen", "127.0.0.1:0"], dir.path());
    let url = first.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
    let c = tidelake_tests::Client::new(&url);
    let (status, body) = c.post("/v1/namespaces", &json!({"namespace": ["solo"]})).await;
    let (list_status, list) = c.get("/v1/namespaces").await;
    // No tenant routes here: only the catalog.
    let (ping_status, _) = tidelake_tests::Client::new(url.trim_end_matches("/catalog")).get("/t/a/ping").await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(list_status, StatusCode::OK);
    assert_eq!(list["namespaces"], json!([["solo"]]));
    assert_eq!(ping_status, StatusCode::NOT_FOUND);
    assert!(dir.path().join("catalog.db").is_file());
}

/// `tidelake query-service` serves lake SQL alone: the same server as
/// `serve`, without the tenants or the catalog.
#[tokio::test]
async fn tidelake_query_service_serves_lake_sql_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, first) = start_alone(&["query-service", "--listen", "127.0.0.1:0", "--pg-listen", "off"], dir.path());
    let url = first.split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches("/sql").to_owned();
    let c = tidelake_tests::Client::new(&url);
    let (status, body) = c.post("/sql", &json!({"sql": "SELECT 40 + 2 AS answer"})).await;
    let (missing_status, missing) = c.post("/sql", &json!({"sql": "SELECT * FROM acme.items VERSION AS OF 1"})).await;
    // No tenant routes and no catalog here.
    let (ping_status, _) = c.get("/t/a/ping").await;
    let (catalog_status, _) = c.get("/catalog/v1/config").await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("tidelake query service listening on http://"), "{first}");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"], json!([{"answer": 42}]));
    assert_eq!(missing_status, StatusCode::NOT_FOUND, "{missing}");
    assert_eq!(missing["error"]["code"], "not_found");
    assert_eq!(ping_status, StatusCode::NOT_FOUND);
    assert_eq!(catalog_status, StatusCode::NOT_FOUND);
}

/// Start `tidelake <args> --data-dir <data_dir>`: the child, and the first
/// line it prints (where it listens).
fn start_alone(args: &[&str], data_dir: &std::path::Path) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(tidelake_tests::binary())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    (child, first)
}
