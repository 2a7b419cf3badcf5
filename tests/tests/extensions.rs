//! Extensions: every one tenants are offered is created with plain SQL by
//! the tenant role; the others, and those the engine lacks, are refused
//! with what to use instead; pgvector end to end — an HNSW index and a
//! nearest-neighbour query over HTTP and the wire protocol, vectors as
//! arrays of numbers in answers, text in the change log, lists of floats
//! in the lake (read back by PyIceberg and `AS OF`), through hibernation,
//! the cold tier and a branch.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tidelake_tests::{Client, Server, eventually};

use crate::restore::{instant, tier};

/// The extensions a tenant is offered (docs/postgres.md lists the same).
const OFFERED: [&str; 25] = [
    "bloom", "btree_gin", "btree_gist", "citext", "cube", "dict_int", "dict_xsyn", "earthdistance", "fuzzystrmatch",
    "hstore", "intarray", "isn", "lo", "ltree", "pg_hashids", "pg_trgm", "pg_uuidv7", "pgtap", "seg", "tablefunc",
    "tcn", "tsm_system_rows", "tsm_system_time", "unaccent", "vector",
];

async fn refused(c: &Client, tenant: &str, sql: &str) -> Value {
    let (status, body) = c.query(tenant, sql, json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
    body["error"].clone()
}

#[tokio::test]
async fn offered_extensions_are_created_with_plain_sql_and_the_others_say_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let c = server.client();
    for name in OFFERED {
        let (status, body) = c.query("exts", &format!("CREATE EXTENSION {name}"), json!([])).await;
        assert_eq!(status, StatusCode::OK, "CREATE EXTENSION {name}: {body}");
    }
    let rows = c.rows("exts", "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname", json!([])).await;
    let created: Vec<&str> = rows.iter().filter_map(|r| r["extname"].as_str()).collect();
    assert_eq!(created, OFFERED.to_vec());
    // (Checked again after the refusals below: still exactly these.)
    // Each works for the tenant (its module loads), not just its catalog rows.
    let row = &c
        .rows(
            "exts",
            "SELECT 'Ab'::citext = 'aB' AS citext, similarity('word', 'words') > 0.5 AS trgm,
                    levenshtein('kitten', 'sitting') AS lev, 'a.b.c'::ltree @> 'a.b.c.d' AS ltree,
                    cube_distance('(0,0)'::cube, '(3,4)'::cube) AS cube, unaccent('Hôtel') AS unaccent,
                    uuid_v7_to_timestamptz(uuid_generate_v7()) > now() - interval '1 hour' AS uuidv7,
                    '[1,2]'::vector <-> '[4,6]' AS l2, ('a=>1'::hstore) -> 'a' AS hstore",
            json!([]),
        )
        .await[0];
    assert_eq!(
        *row,
        json!({"citext": true, "trgm": true, "lev": 3, "ltree": true, "cube": 5.0, "unaccent": "Hotel", "uuidv7": true, "l2": 5.0, "hstore": "1"})
    );

    // Not in the engine: the error names the built-in alternatives.
    let err = refused(&c, "exts", "CREATE EXTENSION pgcrypto").await;
    assert_eq!(err["code"], "0A000", "{err}");
    assert!(err["message"].as_str().unwrap().contains("not in tidelake's engine"), "{err}");
    for alternative in ["gen_random_uuid()", "sha256()", "md5()"] {
        assert!(err["hint"].as_str().unwrap().contains(alternative), "{err}");
    }
    let err = refused(&c, "exts", "create extension if not exists \"uuid-ossp\"").await;
    assert!(err["hint"].as_str().unwrap().contains("gen_random_uuid()"), "{err}");
    // What reads the server's storage is not offered, however it is asked for.
    let err = refused(&c, "exts", "CREATE EXTENSION pageinspect").await;
    assert_eq!(err["code"], "0A000", "{err}");
    assert!(err["message"].as_str().unwrap().contains("not offered to tenants"), "{err}");
    let (status, body) =
        c.query("exts", "DO $$BEGIN EXECUTE 'CREATE EXTENSION pageinspect'; END$$", json!([])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "42501", "PostgreSQL's own check holds: {body}");
    // An extension's objects are the superuser's: the tenant cannot change them.
    let (status, body) = c.query("exts", "CREATE OR REPLACE FUNCTION public.levenshtein(text, text) RETURNS int LANGUAGE sql AS 'SELECT 0'", json!([])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "42501", "{body}");

    // Into a schema the tenant may not create in (the extension's script
    // would run as the owner there): refused, nothing created (below).
    for schema in ["pg_catalog", "tidelake"] {
        let (status, body) = c.query("exts-other", &format!("CREATE EXTENSION bloom SCHEMA {schema}"), json!([])).await;
        assert!(status.is_client_error(), "{schema}: {body}");
        assert_eq!(body["error"]["code"], "42501", "{schema}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("public by default"), "{body}");
    }
    // Hidden in a DO block, the same.
    let (status, body) =
        c.query("exts-other", "DO $$BEGIN EXECUTE 'CREATE EXTENSION hstore SCHEMA pg_catalog'; END$$", json!([])).await;
    assert!(status.is_client_error(), "{body}");
    assert_eq!(body["error"]["code"], "42501", "{body}");
    // The extensions are the tenant's own: another tenant has none of them.
    let theirs = c.rows("exts-other", "SELECT count(*) AS n FROM pg_extension WHERE extname <> 'plpgsql'", json!([])).await;
    assert_eq!(theirs, vec![json!({"n": 0})]);

    // Over the wire protocol the refusal carries its hint too.
    let client = crate::tenant_wire::connect(&server, "exts").await;
    let err = client.simple_query("CREATE EXTENSION pgcrypto").await.unwrap_err();
    let err = err.as_db_error().unwrap();
    assert_eq!(err.code().code(), "0A000");
    assert!(err.hint().unwrap_or_default().contains("gen_random_uuid()"), "{err:?}");
    assert_eq!(client.simple_query("SELECT 1").await.unwrap().len(), 3, "the connection goes on");
    let rows = c.rows("exts", "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname", json!([])).await;
    let after: Vec<&str> = rows.iter().filter_map(|r| r["extname"].as_str()).collect();
    assert_eq!(after, OFFERED.to_vec(), "no refused extension was created");
}

/// The ids a nearest-neighbour query finds, nearest first.
async fn nearest(c: &Client, tenant: &str, to: &str) -> Vec<i64> {
    c.rows(tenant, "SELECT id FROM docs ORDER BY embedding <-> $1 LIMIT 3", json!([to]))
        .await
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn pgvector_end_to_end_through_the_lake_the_tiers_and_a_branch() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--tenants-hibernate-after", "300ms", "--archive-cold-after", "1s", "--archive-backup-interval", "off",
            "--lake-flush-interval", "100ms",
        ],
    )
    .await;
    let c = server.client();
    let t = "vecs";
    c.exec(
        t,
        "CREATE EXTENSION vector; CREATE EXTENSION hstore;
         CREATE TABLE docs (id bigint PRIMARY KEY, embedding vector(3), tags hstore, half halfvec(2));
         CREATE INDEX docs_embedding ON docs USING hnsw (embedding vector_l2_ops)",
    )
    .await;
    c.exec(
        t,
        "INSERT INTO docs VALUES (1, '[1,2,3]', 'lang=>en, draft=>NULL', '[0.5,1]'), (2, '[4,5,6]', NULL, NULL),
                                 (3, '[1,1,1.5]', 'lang=>fr', '[2,0.25]'), (4, '[9,9,9]', '', '[1,1]')",
    )
    .await;
    // Parameters as vectors' text, or numbers cast from an array.
    let (status, body) =
        c.query(t, "INSERT INTO docs (id, embedding) VALUES (5, $1::real[]::vector)", json!([[0.0, 0.0, 0.5]])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let near = nearest(&c, t, "[1,1,1]").await;
    assert_eq!(near, vec![3, 5, 1]);

    // Answers: vectors as arrays of numbers, hstore as an object.
    let rows = c.rows(t, "SELECT id, embedding, tags, half FROM docs WHERE id IN (1, 2) ORDER BY id", json!([])).await;
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "embedding": [1.0, 2.0, 3.0], "tags": {"lang": "en", "draft": null}, "half": [0.5, 1.0]}),
            json!({"id": 2, "embedding": [4.0, 5.0, 6.0], "tags": null, "half": null}),
        ]
    );
    // The index answers the query (the wire protocol, as an app would ask).
    let client = crate::tenant_wire::connect(&server, t).await;
    let plan: Vec<String> = client
        .simple_query("SET enable_seqscan = off; EXPLAIN SELECT id FROM docs ORDER BY embedding <-> '[1,1,1]' LIMIT 3")
        .await
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert!(plan.iter().any(|line| line.contains("Index Scan using docs_embedding")), "{plan:?}");
    let ids: Vec<i64> = client
        .query("SELECT id FROM docs ORDER BY embedding <-> $1::text::vector LIMIT 2", &[&"[9,9,8]"])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![4, 2]);
    drop(client);

    // Generated types say what the answers hold.
    let out = std::process::Command::new(tidelake_tests::binary())
        .args(["types", "--tenant", t, "--lang", "typescript", "--url", &server.base])
        .env_remove("TIDELAKE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ts = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| ts.lines().find(|l| l.trim_start().starts_with(&format!("{name}:"))).map(str::trim).unwrap_or_default().to_owned();
    assert_eq!(field("embedding"), "embedding: (Float | null)[] | null;", "{ts}");
    assert_eq!(field("tags"), "tags: Json | null;", "{ts}");

    // The change log holds a vector's text, which replays as it is.
    let changes = crate::capture::all_changes(&c, t).await;
    let first = changes.iter().find(|ch| ch["new"]["id"] == 1).expect("the insert of 1 is captured");
    assert_eq!(first["new"]["embedding"], "[1,2,3]");
    assert_eq!(first["new"]["half"], "[0.5,1]");
    let before_update = instant(&c, t).await;
    c.exec(t, "UPDATE docs SET embedding = '[7,7,7]' WHERE id = 1").await;

    // The lake: lists of floats, read by PyIceberg, and by `AS OF`.
    c.wait_shipped(t).await;
    let lake = crate::lake::read_lake(&server, &[t]).await;
    let table = lake["tables"].as_object().unwrap().iter().find(|(name, _)| name.ends_with(".docs")).map(|(_, v)| v).unwrap();
    let by_lsn = table["rows"].as_array().unwrap();
    let of = |id: i64| -> Vec<Value> { by_lsn.iter().filter(|r| r["id"] == id).map(|r| r["embedding"].clone()).collect() };
    assert_eq!(of(1), vec![json!([1.0, 2.0, 3.0]), json!([7.0, 7.0, 7.0])]);
    assert_eq!(of(5), vec![json!([0.0, 0.0, 0.5])]);
    assert_eq!(by_lsn.iter().find(|r| r["id"] == 3).unwrap()["half"], json!([2.0, 0.25]));
    assert_eq!(by_lsn.iter().find(|r| r["id"] == 3).unwrap()["tags"], "\"lang\"=>\"fr\"");
    let type_of = |name: &str| table["schema"].as_array().unwrap().iter().find(|f| f["name"] == name).map(|f| f["type"].clone());
    assert_eq!(type_of("embedding"), Some(json!("list<float>")), "{}", table["schema"]);
    assert_eq!(type_of("half"), Some(json!("list<float>")));
    assert_eq!(type_of("tags"), Some(json!("string")));
    let (status, body) = c
        .post("/sql", &json!({"sql": format!("SELECT id, embedding FROM {t}.docs FOR SYSTEM_TIME AS OF '{before_update}' WHERE id = 1")}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"], json!([{"id": 1, "embedding": [1.0, 2.0, 3.0]}]));

    // A vector column added later: a new list field beside the others.
    c.exec(t, "ALTER TABLE docs ADD COLUMN extra vector(2); UPDATE docs SET extra = '[0.25,2]' WHERE id = 3").await;
    c.wait_shipped(t).await;
    let lake = crate::lake::read_lake(&server, &[t]).await;
    let table = lake["tables"].as_object().unwrap().iter().find(|(name, _)| name.ends_with(".docs")).map(|(_, v)| v).unwrap();
    let last = table["rows"].as_array().unwrap().last().unwrap();
    assert_eq!((&last["id"], &last["extra"], &last["embedding"]), (&json!(3), &json!([0.25, 2.0]), &json!([1.0, 1.0, 1.5])));
    let ids: Vec<&Value> = table["schema"].as_array().unwrap().iter().map(|f| &f["id"]).collect();
    assert_eq!(ids.len(), ids.iter().collect::<std::collections::HashSet<_>>().len(), "unique field ids: {}", table["schema"]);

    // Hibernation and the cold tier: the extension and its index come back.
    let after = nearest(&c, t, "[7,7,7]").await;
    assert_eq!(after, vec![1, 4, 2]);
    let cold = eventually(Duration::from_secs(60), || async { tier(&c, t).await == "cold" }).await;
    assert!(cold, "{t} never went cold: {}", tier(&c, t).await);
    assert_eq!(nearest(&c, t, "[7,7,7]").await, after, "woken from the cold tier");

    // A branch before the update: vectors as they were, the index usable.
    let (status, body) = c.post(&format!("/t/{t}/restore"), &json!({"to": before_update, "into": "vecs-branch"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(nearest(&c, "vecs-branch", "[1,1,1]").await, vec![3, 5, 1]);
    let rows = c.rows("vecs-branch", "SELECT embedding FROM docs WHERE id = 1", json!([])).await;
    assert_eq!(rows, vec![json!({"embedding": [1.0, 2.0, 3.0]})]);
    c.exec("vecs-branch", "INSERT INTO docs (id, embedding) VALUES (6, '[1,1,1]')").await;
    assert_eq!(nearest(&c, "vecs-branch", "[1,1,1]").await[0], 6);
}
