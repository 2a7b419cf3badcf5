//! Tenant lifecycle: persistence across restarts and crashes, hibernation,
//! eviction under the open-tenant cap, tenants running in parallel, and the
//! settings that shape them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tidelake_tests::{Server, eventually};

#[tokio::test]
async fn restart_keeps_committed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    c.exec("keep", "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    c.exec("keep", "INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g").await;
    c.exec("other", "CREATE TABLE o (x int)").await;
    c.exec("other", "INSERT INTO o VALUES (7)").await;

    server.stop();
    server.restart().await;
    let c = server.client();
    let rows = c
        .rows("keep", "SELECT count(*) AS n, max(v) AS top FROM t", json!([]))
        .await;
    assert_eq!(rows[0], json!({"n": 500, "top": "row 99"}));
    let rows = c.rows("other", "SELECT x FROM o", json!([])).await;
    assert_eq!(rows, vec![json!({"x": 7})]);
}

#[tokio::test]
async fn kill_9_mid_workload_loses_no_acknowledged_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    for tenant in ["crash-a", "crash-b"] {
        c.exec(tenant, "CREATE TABLE w (id int PRIMARY KEY, writer int, payload text)").await;
    }

    // Four writers over two tenants; each remembers the ids the server acknowledged.
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..4i64 {
        let c = c.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let tenant = if writer % 2 == 0 { "crash-a" } else { "crash-b" };
            for i in 0.. {
                let id = writer * 1_000_000 + i;
                let sent = c
                    .http
                    .post(c.url(&format!("/t/{tenant}/transaction")))
                    .json(&json!({"statements": [
                        {"sql": "INSERT INTO w VALUES ($1, $2, repeat('x', 200))", "params": [id, writer]},
                        {"sql": "UPDATE w SET payload = payload || '!' WHERE id = $1", "params": [id]},
                    ]}))
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status() == StatusCode::OK => {
                        acked.lock().unwrap().push((tenant.to_owned(), id));
                    }
                    Ok(resp) => panic!("write failed before the crash: {}", resp.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    assert!(
        eventually(Duration::from_secs(60), || async { acked.lock().unwrap().len() >= 200 }).await,
        "writers made no progress"
    );
    server.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    server.restart().await;
    let c = server.client();
    for tenant in ["crash-a", "crash-b"] {
        let rows = c
            .rows(tenant, "SELECT id, payload FROM w ORDER BY id", json!([]))
            .await;
        let present: BTreeSet<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        // Every row is whole: the transaction's second statement is there too.
        for r in &rows {
            assert_eq!(r["payload"].as_str().unwrap().len(), 201, "torn transaction: {r}");
        }
        let missing: Vec<i64> = acked
            .iter()
            .filter(|(t, id)| t == tenant && !present.contains(id))
            .map(|(_, id)| *id)
            .collect();
        assert!(missing.is_empty(), "{tenant}: acknowledged but lost: {missing:?}");
    }
    // And the database accepts writes again.
    c.exec("crash-a", "INSERT INTO w VALUES (-1, -1, 'after')").await;
}

#[tokio::test]
async fn hibernated_tenant_wakes_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--tenants-hibernate-after", "300ms"]).await;
    let c = server.client();
    c.exec("sleepy", "CREATE TABLE t (v text)").await;
    c.exec("sleepy", "INSERT INTO t VALUES ('before sleep')").await;
    assert_eq!(c.engine_state("sleepy").await, "loaded");

    assert!(
        eventually(Duration::from_secs(30), || async {
            c.engine_state("sleepy").await == "hibernated"
        })
        .await,
        "tenant never hibernated"
    );
    // ping did not wake it.
    assert_eq!(c.engine_state("sleepy").await, "hibernated");
    let (_, health) = c.get("/health").await;
    assert_eq!(health["openTenants"], 0);

    let rows = c.rows("sleepy", "SELECT v FROM t", json!([])).await;
    assert_eq!(rows, vec![json!({"v": "before sleep"})]);
    assert_eq!(c.engine_state("sleepy").await, "loaded");
    let metrics = c.http.get(c.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("tidelake_tenant_hibernations_total 0"), "{metrics}");
}

#[tokio::test]
async fn least_recently_used_tenant_is_evicted_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--tenants-max-open", "2"]).await;
    let c = server.client();
    for tenant in ["lru-1", "lru-2", "lru-3"] {
        c.exec(tenant, "CREATE TABLE t (name text)").await;
        c.query(tenant, "INSERT INTO t VALUES ($1)", json!([tenant])).await;
    }
    // lru-1 was least recently used when lru-3 opened.
    assert!(
        eventually(Duration::from_secs(30), || async {
            c.engine_state("lru-1").await == "hibernated"
        })
        .await
    );
    assert_eq!(c.engine_state("lru-2").await, "loaded");
    assert_eq!(c.engine_state("lru-3").await, "loaded");
    let (_, health) = c.get("/health").await;
    assert_eq!(health["openTenants"], 2);

    // Waking lru-1 evicts lru-2, now the least recently used.
    let rows = c.rows("lru-1", "SELECT name FROM t", json!([])).await;
    assert_eq!(rows, vec![json!({"name": "lru-1"})]);
    assert!(
        eventually(Duration::from_secs(30), || async {
            c.engine_state("lru-2").await == "hibernated"
        })
        .await
    );
    assert_eq!(c.engine_state("lru-3").await, "loaded");
    for tenant in ["lru-2", "lru-3"] {
        let rows = c.rows(tenant, "SELECT name FROM t", json!([])).await;
        assert_eq!(rows, vec![json!({"name": tenant})]);
    }
}

#[tokio::test]
async fn a_slow_tenant_does_not_stall_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    c.exec("fast", "CREATE TABLE t (v int)").await;
    c.exec("busy", "SELECT 1").await;

    let slow = {
        let c = c.clone();
        tokio::spawn(async move {
            c.query(
                "busy",
                "SELECT count(*) AS n FROM generate_series(1, 30000000)",
                json!([]),
            )
            .await
        })
    };
    // Wait until the slow query is running on the busy tenant.
    assert!(
        eventually(Duration::from_secs(10), || async {
            let (_, h) = c.get("/t/busy/health").await;
            h["tenant"]["inFlight"] == 1
        })
        .await
    );
    // Many requests on another tenant complete while it is still running.
    for i in 0..20 {
        c.query("fast", "INSERT INTO t VALUES ($1)", json!([i])).await;
    }
    assert!(!slow.is_finished(), "the slow query finished first; make it slower");
    let rows = c.rows("fast", "SELECT count(*) AS n FROM t", json!([])).await;
    assert_eq!(rows[0]["n"], 20);
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["n"], 30000000);
}

#[tokio::test]
async fn many_clients_on_many_tenants_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--tenants-max-open", "6"]).await;
    let c = server.client();
    let mut tasks = Vec::new();
    for client in 0..24 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let tenant = format!("many-{}", client % 8);
            c.exec(&tenant, "CREATE TABLE IF NOT EXISTS t (client int, i int)").await;
            for i in 0..10 {
                let (status, body) = c
                    .query(&tenant, "INSERT INTO t VALUES ($1, $2)", json!([client, i]))
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for tenant in 0..8 {
        let rows = c
            .rows(&format!("many-{tenant}"), "SELECT count(*) AS n, count(DISTINCT client) AS clients FROM t", json!([]))
            .await;
        assert_eq!(rows[0], json!({"n": 30, "clients": 3}));
    }
    let (_, health) = c.get("/health").await;
    assert!(health["openTenants"].as_u64().unwrap() <= 6, "{health}");
}

/// One name per setting through the real binary: a flag beats the file
/// (here under its earlier name, read with a warning), and a bad value is
/// refused naming the flag or the variable it came from.
#[tokio::test]
async fn settings_are_merged_from_file_and_flags_and_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tidelake.toml");
    std::fs::write(&config, "[tenants]\nmax_open = 1\n").unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", config.to_str().unwrap(), "--max-open-tenants", "2"]).await;
    let c = server.client();
    for tenant in ["cap-1", "cap-2", "cap-3"] {
        c.exec(tenant, "CREATE TABLE t (name text)").await;
    }
    assert!(eventually(Duration::from_secs(30), || async { c.engine_state("cap-1").await == "hibernated" }).await);
    let (_, health) = c.get("/health").await;
    assert_eq!(health["maxOpenTenants"], 2, "the flag's 2, not the file's 1: {health}");
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(log.contains("--max-open-tenants is an old name") && log.contains("--tenants-max-open"), "{log}");
    drop(server);

    let refused = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(tidelake_tests::binary())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--pg-listen", "off", "--data-dir"])
            .arg(dir.path().join("refused"))
            .args(args)
            .envs(env.iter().copied())
            .env_remove("TIDELAKE_CONFIG")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} {env:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = refused(&["--tenants-hibernate-after", "soon"], &[]);
    assert!(stderr.contains("--tenants-hibernate-after") && stderr.contains("invalid duration \"soon\""), "{stderr}");
    let stderr = refused(&[], &[("TIDELAKE_TENANTS_MAX_OPEN", "lots")]);
    assert!(stderr.contains("TIDELAKE_TENANTS_MAX_OPEN"), "{stderr}");
    let stderr = refused(&["--tenants-max-open", "0"], &[]);
    assert!(stderr.contains("--tenants-max-open") && stderr.contains("at least 1"), "{stderr}");
}
