//! Catalog benchmark: the catalog queries psql, Grafana and Metabase send
//! to the lake's wire front, against the number of lake tables the caller
//! may read, beside native PostgreSQL answering the same queries over the
//! same tables (one schema per tenant), through the same client
//! (tokio-postgres, simple protocol as psql and Grafana send them).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tidelake_tests::Server;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::native::NativePg;
use crate::{Report, summarize};

/// Tenants, each with `TABLES` tables.
const TENANTS: [usize; 2] = [10, 50];
const TABLES: usize = 10;
const REPEAT: usize = 7;

fn table_ddl(table: usize) -> String {
    format!(
        "CREATE TABLE t{table} (id bigint PRIMARY KEY, name text, qty int, price numeric(10,2), at timestamptz); \
         INSERT INTO t{table} VALUES (1, 'a', 1, 1.0, now());"
    )
}

/// psql 15's `\dt tenant*.*`.
const PSQL_DT: &str = "SELECT n.nspname as \"Schema\",
  c.relname as \"Name\",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as \"Type\",
  pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','t','s','')
  AND n.nspname OPERATOR(pg_catalog.~) '^(tenant.*)$' COLLATE pg_catalog.default
ORDER BY 1,2";

/// psql 15's `\d tenant3.t7`: its first query, then (with the OID) the two
/// that give the table's kind and its columns.
const PSQL_D_LOOKUP: &str = "SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(t7)$' COLLATE pg_catalog.default
  AND n.nspname OPERATOR(pg_catalog.~) '^(tenant3)$' COLLATE pg_catalog.default
ORDER BY 2, 3";

fn psql_d_columns(oid: &str) -> String {
    format!(
        "SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '{oid}' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum"
    )
}

/// Grafana's table list (postgresMetaQuery.ts, `showTables` of a schema)
/// and column list (`getSchema`).
const GRAFANA_TABLES: &str = "SELECT quote_ident(table_name) AS \"table\"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'tenant3'
      ORDER BY 1";
const GRAFANA_COLUMNS: &str = "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\"
    FROM information_schema.columns
    WHERE quote_ident(table_schema) = (parse_ident('tenant3.t7'))[1]
      AND quote_ident(table_name) = (parse_ident('tenant3.t7'))[2]";
/// Every column of every table: a schema browser's first sync (Metabase's
/// `describe-fields` reads information_schema.columns).
const ALL_COLUMNS: &str = "SELECT count(*) FROM information_schema.columns WHERE table_schema LIKE 'tenant%'";

/// The rows of a simple query (the last statement's), as text.
async fn rows(client: &Client, sql: &str) -> Result<Vec<Vec<String>>> {
    let messages = client.simple_query(sql).await.with_context(|| sql.to_owned())?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).unwrap_or_default().to_owned()).collect()),
            _ => None,
        })
        .collect())
}

/// Median time of `sql`, and its row count.
async fn timed(client: &Client, sql: &str) -> Result<(Duration, usize)> {
    let mut samples = Vec::with_capacity(REPEAT);
    let mut count = 0;
    for _ in 0..REPEAT {
        let started = Instant::now();
        count = rows(client, sql).await?.len();
        samples.push(started.elapsed());
    }
    Ok((summarize(samples).p50, count))
}

/// psql's `\d` of one table: the lookup, then the columns by its OID.
async fn describe(client: &Client) -> Result<(Duration, usize)> {
    let mut samples = Vec::with_capacity(REPEAT);
    let mut count = 0;
    for _ in 0..REPEAT {
        let started = Instant::now();
        let found = rows(client, PSQL_D_LOOKUP).await?;
        let oid = found.first().context("\\d found no table")?[0].clone();
        count = rows(client, &psql_d_columns(&oid)).await?.len();
        samples.push(started.elapsed());
    }
    Ok((summarize(samples).p50, count))
}

async fn connect(port: u16, user: &str, database: &str) -> Result<Client> {
    let (client, connection) =
        tokio_postgres::connect(&format!("host=127.0.0.1 port={port} user={user} dbname={database}"), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(out: Option<PathBuf>, pg_bin: PathBuf) -> Result<()> {
    let work = tempfile::tempdir()?;
    std::fs::set_permissions(work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let mut report = Report::default();
    report.line("## Catalog queries on the lake's wire front".into());
    report.line(String::new());
    report.line(format!(
        "Tenants of {TABLES} tables each (5 columns, primary key), all readable by the caller; each query's median of {REPEAT}, \
         tokio-postgres simple protocol, beside native PostgreSQL with the same tables in one schema per tenant."
    ));
    report.line(String::new());
    report.line("| tables | query | rows | tidelake | native PostgreSQL | tidelake / native |".into());
    report.line("|---|---|---|---|---|---|".into());

    let native = NativePg::new(&pg_bin, &work.path().join("pg"))?;
    let data = work.path().join("pg/data");
    native.initdb(&data)?;
    native.start(&data)?;
    let server = Server::start(&work.path().join("tidelake"), &["--lake-flush-interval", "100ms"]).await;
    let c = server.client();
    let port = |address: &str| -> Result<u16> { Ok(address.rsplit_once(':').context("an address")?.1.parse()?) };
    let lake = connect(port(server.pg.as_deref().context("the wire front")?)?, "analyst", "lake").await?;
    let pg = connect(native.port(), "postgres", "postgres").await?;

    let mut created = 0;
    for tenants in TENANTS {
        for tenant in created..tenants {
            let ddl: String = (1..=TABLES).map(table_ddl).collect();
            c.exec(&format!("tenant{tenant}"), &ddl).await;
            native.psql(&format!("CREATE SCHEMA tenant{tenant}; SET search_path = tenant{tenant}; {ddl}"))?;
        }
        for tenant in created..tenants {
            c.wait_shipped(&format!("tenant{tenant}")).await;
        }
        let new_tables = (tenants - created) * TABLES;
        created = tenants;
        let tables = tenants * TABLES;
        // The first catalog query describes each table not seen before (a
        // load of its metadata and a plan); later ones only list them.
        let started = Instant::now();
        let count = rows(&lake, ALL_COLUMNS).await?.len();
        report.line(format!(
            "| {tables} | first query after {new_tables} new tables (every column) | {count} | {} | – | – |",
            ms(started.elapsed())
        ));
        let queries: [(&str, &str); 4] = [
            ("psql `\\dt tenant*.*`", PSQL_DT),
            ("Grafana: a schema's tables", GRAFANA_TABLES),
            ("Grafana: a table's columns", GRAFANA_COLUMNS),
            ("every column (a browser's first sync)", ALL_COLUMNS),
        ];
        for (name, sql) in queries {
            let (ours, count) = timed(&lake, sql).await?;
            let (theirs, native_count) = timed(&pg, sql).await?;
            anyhow::ensure!(count == native_count, "{name}: {count} rows, native {native_count}");
            report.line(format!(
                "| {tables} | {name} | {count} | {} | {} | {:.0}× |",
                ms(ours),
                ms(theirs),
                ours.as_secs_f64() / theirs.as_secs_f64()
            ));
        }
        let (ours, count) = describe(&lake).await?;
        let (theirs, native_count) = describe(&pg).await?;
        anyhow::ensure!(count == native_count, "\\d: {count} columns, native {native_count}");
        report.line(format!(
            "| {tables} | psql `\\d tenant3.t7` (lookup + columns) | {count} | {} | {} | {:.0}× |",
            ms(ours),
            ms(theirs),
            ours.as_secs_f64() / theirs.as_secs_f64()
        ));
    }
    drop(server);
    native.stop(&data)?;
    report.line(String::new());
    report.save(out.as_deref())
}
