//! Storage tiers and base backups: tenants go cold into object storage and
//! come back with exactly their data; corrupt archives are refused; the
//! disk budget moves the least recently used out; backups are periodic,
//! on request, and expire.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Client, LocalS3, Server, eventually};

/// Everything a user would compare after a round trip: every table's rows.
async fn contents(c: &Client, tenant: &str) -> Vec<Value> {
    let mut all = c.rows(tenant, "SELECT id, name, price, tags, meta, at FROM items ORDER BY id", json!([])).await;
    all.extend(c.rows(tenant, "SELECT * FROM notes ORDER BY n", json!([])).await);
    all
}

async fn fill(c: &Client, tenant: &str, rows: i64) {
    c.exec(
        tenant,
        "CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, name text, price numeric(10,2), tags text[], meta jsonb, at timestamptz);
         CREATE TABLE IF NOT EXISTS notes (n serial PRIMARY KEY, body text)",
    )
    .await;
    let (status, body) = c
        .query(
            tenant,
            "INSERT INTO items SELECT g, 'item ' || g, g * 1.25, ARRAY['t' || g, 'x'], jsonb_build_object('g', g), '2026-11-28 10:00:00+00'::timestamptz + g * interval '1 minute'
             FROM generate_series((SELECT coalesce(max(id), 0) + 1 FROM items), (SELECT coalesce(max(id), 0) FROM items) + $1::bigint) g",
            json!([rows]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    c.exec(tenant, "INSERT INTO notes (body) VALUES ('hello'), (NULL); UPDATE items SET name = 'first' WHERE id = 1").await;
}

async fn tier(c: &Client, tenant: &str) -> String {
    let (status, health) = c.get(&format!("/t/{tenant}/health")).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    health["tenant"]["tier"].as_str().unwrap_or_default().to_owned()
}

async fn wait_tier(c: &Client, tenant: &str, wanted: &str) {
    let reached = eventually(Duration::from_secs(60), || async { tier(c, tenant).await == wanted }).await;
    assert!(reached, "{tenant} never became {wanted} (is {})", tier(c, tenant).await);
}

fn archives(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(".tar.zst")).collect())
        .unwrap_or_default();
    files.sort();
    files
}

async fn metric(c: &Client, name: &str) -> u64 {
    let text = c.http.get(c.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[tokio::test]
async fn a_cold_tenant_wakes_with_exactly_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        // Base backups only as tiers take them: a cold tenant's archive is its only one.
        &["--tenants-hibernate-after", "300ms", "--archive-cold-after", "1s", "--archive-backup-interval", "off", "--archive-schema-backups=false", "--lake-flush-interval", "100ms"],
    )
    .await;
    let c = server.client();
    fill(&c, "acme", 500).await;
    fill(&c, "beta", 20).await;
    let (acme, beta) = (contents(&c, "acme").await, contents(&c, "beta").await);
    let shipped = c.wait_shipped("acme").await;

    wait_tier(&c, "acme", "cold").await;
    wait_tier(&c, "beta", "cold").await;
    // Gone from local disk, kept in the archive.
    assert!(!data.join("tenants/acme").exists());
    assert!(data.join("tenants/acme.cold").exists());
    let acme_archives = archives(&data.join("archive/tenants/acme/backups"));
    assert_eq!(acme_archives.len(), 1, "{acme_archives:?}");
    let (_, health) = c.get("/t/acme/health").await;
    assert_eq!(health["tenant"]["diskBytes"], 0, "{health}");
    assert!(health["tenant"]["archiveBytes"].as_u64().unwrap() > 0, "{health}");
    assert_eq!(c.engine_state("acme").await, "hibernated");
    // The lake does not wake a cold tenant it has shipped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tier(&c, "acme").await, "cold");

    // `tidelake tenants` lists it.
    let out = std::process::Command::new(tidelake_tests::binary()).args(["tenants", "--url", &server.base]).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{listing}{}", String::from_utf8_lossy(&out.stderr));
    let line = listing.lines().find(|l| l.starts_with("acme ")).unwrap_or_else(|| panic!("{listing}"));
    assert!(line.contains(" cold ") && line.contains("up to date"), "{listing}");

    // The next request brings it back, transparently, with exactly its data.
    assert_eq!(contents(&c, "acme").await, acme);
    assert_eq!(tier(&c, "acme").await, "hot");
    assert!(!data.join("tenants/acme.cold").exists());
    assert_eq!(metric(&c, "tidelake_tenant_promotions_total").await, 1);
    // Unpacked with the WAL segment's unwritten part left as holes: it
    // takes less disk than its files' lengths add up to.
    let (used, length) = (dir_size(&data.join("tenants/acme")), dir_length(&data.join("tenants/acme")));
    assert!(length - used > 8 << 20, "{used} bytes on disk of {length}");
    // It keeps working, and a second cold cycle keeps the new writes too.
    fill(&c, "acme", 10).await;
    let acme = contents(&c, "acme").await;
    assert_eq!(acme.len(), 510 + 4);
    wait_tier(&c, "acme", "cold").await;
    assert_eq!(contents(&c, "acme").await, acme);
    assert_eq!(contents(&c, "beta").await, beta);
    assert!(c.wait_shipped("acme").await > shipped);
    assert!(metric(&c, "tidelake_tenant_demotions_total").await >= 3);

    // A restart keeps cold tenants cold, and they still wake.
    let mut server = server;
    wait_tier(&c, "beta", "cold").await;
    server.stop();
    server.restart().await;
    let c = server.client();
    assert_eq!(tier(&c, "beta").await, "cold");
    assert_eq!(contents(&c, "beta").await, beta);
}

#[tokio::test]
async fn a_corrupt_archive_is_refused_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server =
        Server::start(&data, &["--tenants-hibernate-after", "300ms", "--archive-cold-after", "1s", "--archive-backup-interval", "off"]).await;
    let c = server.client();
    fill(&c, "acme", 100).await;
    let before = contents(&c, "acme").await;
    wait_tier(&c, "acme", "cold").await;

    let archive = archives(&data.join("archive/tenants/acme/backups")).pop().unwrap();
    let good = std::fs::read(&archive).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x5a;
    for damaged in [bad, good[..good.len() / 3].to_vec()] {
        std::fs::write(&archive, &damaged).unwrap();
        let (status, body) = c.query("acme", "SELECT count(*) FROM items", json!([])).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(body["error"]["code"], "archive_corrupt", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("corrupt") && message.contains("nothing was opened"), "{message}");
        // Never opened, never replaced by a fresh database.
        assert!(!data.join("tenants/acme").exists());
        assert_eq!(tier(&c, "acme").await, "cold");
    }
    // With the archive intact again, everything is there.
    std::fs::write(&archive, &good).unwrap();
    assert_eq!(contents(&c, "acme").await, before);
}

#[tokio::test]
async fn the_disk_budget_sends_the_least_recently_used_cold() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server =
        Server::start(&data, &["--tenants-hibernate-after", "300ms", "--archive-cold-after", "off", "--archive-backup-interval", "off", "--lake-enabled=false"]).await;
    let c = server.client();
    let mut states = Vec::new();
    for tenant in ["t-old", "t-mid", "t-new"] {
        fill(&c, tenant, 50).await;
        states.push(contents(&c, tenant).await);
        // Each is closed before the next is used: least recently used first.
        let closed = eventually(Duration::from_secs(30), || async { c.engine_state(tenant).await == "hibernated" }).await;
        assert!(closed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop();
    let size = |t: &str| dir_size(&data.join("tenants").join(t));
    let sizes: Vec<u64> = ["t-old", "t-mid", "t-new"].iter().map(|t| size(t)).collect();
    let total: u64 = sizes.iter().sum();
    // Room for all but the smallest half of one: exactly one must go.
    let budget = total - sizes.iter().min().unwrap() / 2;
    let budget = budget.to_string();
    server = Server::start(&data, &["--archive-cold-after", "off", "--archive-backup-interval", "off", "--lake-enabled=false", "--archive-disk-budget", &budget]).await;
    let c = server.client();
    wait_tier(&c, "t-old", "cold").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tier(&c, "t-mid").await, "warm");
    assert_eq!(tier(&c, "t-new").await, "warm");
    for (tenant, state) in ["t-old", "t-mid", "t-new"].iter().zip(&states) {
        assert_eq!(&contents(&c, tenant).await, state);
    }
}

/// The size health and `tidelake tenants` show is the directory's, and
/// follows it when the tenant wakes, writes and sleeps again (a closed
/// tenant's size is measured once per close, not at every listing).
#[tokio::test]
async fn listed_sizes_follow_the_directory_across_wakes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--tenants-hibernate-after", "300ms", "--archive-cold-after", "off", "--archive-backup-interval", "off", "--lake-enabled=false"]).await;
    let c = server.client();
    let listed = |c: &Client| {
        let c = c.clone();
        async move {
            let (status, health) = c.get("/health").await;
            assert_eq!(status, StatusCode::OK, "{health}");
            let entry = health["tenants"].as_array().unwrap().iter().find(|t| t["tenant"] == "acme").cloned();
            entry.unwrap_or_else(|| panic!("{health}"))["diskBytes"].as_u64().unwrap()
        }
    };
    let mut sizes = Vec::new();
    for rows in [50, 3000] {
        fill(&c, "acme", rows).await;
        let closed = eventually(Duration::from_secs(30), || async { c.engine_state("acme").await == "hibernated" }).await;
        assert!(closed);
        let on_disk = dir_size(&data.join("tenants/acme"));
        assert_eq!(listed(&c).await, on_disk);
        assert_eq!(listed(&c).await, on_disk, "listed twice");
        sizes.push(on_disk);
    }
    assert!(sizes[1] > sizes[0], "{sizes:?}");
}

/// What the directory takes on disk, as `du` counts it.
fn dir_size(path: &Path) -> u64 {
    du(path, "--block-size=1")
}

/// What the lengths of the directory's files add up to.
fn dir_length(path: &Path) -> u64 {
    du(path, "--bytes")
}

fn du(path: &Path, unit: &str) -> u64 {
    let out = std::process::Command::new("du").args([unit, "-s"]).arg(path).output().unwrap();
    assert!(out.status.success(), "du {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("du printed {text}"))
}

#[tokio::test]
async fn base_backups_are_periodic_on_request_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        // The periodic policy alone (schema changes wait for the schema to be quiet).
        &["--archive-cold-after", "off", "--archive-backup-interval", "300ms", "--archive-backup-retention", "3s", "--archive-schema-backups=false", "--lake-enabled=false"],
    )
    .await;
    let c = server.client();
    let backups = |c: &Client| {
        let c = c.clone();
        async move {
            let (status, body) = c.get("/t/acme/backups").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["backups"].as_array().cloned().unwrap_or_default()
        }
    };
    fill(&c, "acme", 10).await;
    let head = c.head_lsn("acme").await;
    let got = eventually(Duration::from_secs(30), || async {
        backups(&c).await.last().is_some_and(|b| b["lsn"] == head && b["reason"] == "periodic")
    })
    .await;
    assert!(got, "no periodic backup at LSN {head}: {:?}", backups(&c).await);
    // Nothing new, nothing taken; and the tables created before that backup
    // need no backup of their own once their schema has been quiet for 2 s.
    let count = backups(&c).await.len();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let list = backups(&c).await;
    assert_eq!(list.len(), count, "{list:?}");
    assert!(list.iter().all(|b| b["reason"] == "periodic"), "{list:?}");

    fill(&c, "acme", 10).await;
    let head2 = c.head_lsn("acme").await;
    let out = std::process::Command::new(tidelake_tests::binary())
        .args(["backup", "--tenant", "acme", "--url", &server.base])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manual: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manual = &manual;
    assert_eq!(manual["lsn"], head2);
    assert_eq!(manual["reason"], "manual");
    assert_eq!(manual["sha256"].as_str().unwrap().len(), 64);
    assert!(manual["rawBytes"].as_u64().unwrap() > manual["bytes"].as_u64().unwrap());

    // Past the retention only the newest older backup stays, beside the
    // ones inside the window.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    fill(&c, "acme", 1).await;
    let head3 = c.head_lsn("acme").await;
    // (A periodic backup may also land between the fill's statements.)
    let done = eventually(Duration::from_secs(30), || async {
        let list = backups(&c).await;
        list.last().is_some_and(|b| b["lsn"] == head3) && list.first().is_some_and(|b| b["lsn"] == head2)
    })
    .await;
    let list = backups(&c).await;
    assert!(done, "{list:?}");
    assert!(list[1..].iter().all(|b| b["reason"] == "periodic" && b["lsn"].as_u64() > Some(head2)), "{list:?}");
    assert_eq!(archives(&data.join("archive/tenants/acme/backups")).len(), list.len());

    let (status, body) = c.get("/t/nobody/backups").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["backups"], json!([]));
    let (status, body) = c.post("/t/nobody/backups", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let out = std::process::Command::new(tidelake_tests::binary())
        .args(["backup", "--tenant", "nobody", "--url", &server.base])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant nobody does not exist"));
}

#[tokio::test]
async fn the_cold_tier_on_s3() {
    let s3 = LocalS3::start("tiers").await;
    let dir = tempfile::tempdir().unwrap();
    let config = s3.config_file(dir.path(), "tiers", "");
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--archive-location",
            "s3://tiers/archive",
            "--tenants-hibernate-after",
            "300ms",
            "--archive-cold-after",
            "1s",
            "--archive-backup-interval",
            "off",
        ],
    )
    .await;
    let c = server.client();
    fill(&c, "acme", 200).await;
    let before = contents(&c, "acme").await;
    wait_tier(&c, "acme", "cold").await;
    let keys = s3.keys("tiers").await;
    assert!(keys.iter().any(|k| k.starts_with("archive/tenants/acme/backups/") && k.ends_with(".tar.zst")), "{keys:?}");
    assert!(!dir.path().join("data/tenants/acme").exists());
    assert_eq!(contents(&c, "acme").await, before);
}
