//! The lake's wire front answers PostgreSQL's catalogs: psql's `\dt` and
//! `\d`, and the schema queries Grafana's and Metabase's PostgreSQL data
//! sources send, each as its source writes it, over the protocol that
//! client uses.

use std::process::Command;

use serde_json::json;
use tidelake_tests::Server;

use crate::query::{simple, sql, wire};

/// Text rows of psql's output for `commands`, unaligned, without headers.
fn psql(server: &Server, commands: &[&str]) -> String {
    let out = psql_output(server, commands);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{commands:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn psql_output(server: &Server, commands: &[&str]) -> std::process::Output {
    let (host, port) = server.pg.as_deref().expect("the wire front is on").rsplit_once(':').unwrap();
    let mut psql = Command::new("psql");
    psql.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", "analyst", "-d", "lake"]);
    for command in commands {
        psql.args(["-c", command]);
    }
    psql.output().expect("run psql (the test set-up installs postgresql-client)")
}

/// tests/java/LakeMetadata.java run by the JDK against `url`: what it printed.
fn jdbc(url: &str, schema: &str, table: &str) -> serde_json::Value {
    let program = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("java/LakeMetadata.java");
    let out = Command::new("java")
        .args(["-cp", "/usr/share/java/postgresql.jar"])
        .arg(&program)
        .args([url, schema, table])
        .output()
        .expect("run java (the test set-up installs a JDK and Debian's libpostgresql-jdbc-java)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn rows(text: &[&str]) -> Vec<Vec<Option<String>>> {
    text.iter().map(|row| row.split('|').map(|v| (v != "∅").then(|| v.to_owned())).collect()).collect()
}

/// Grafana's PostgreSQL data source (public/app/plugins/datasource/
/// grafana-postgresql-datasource/postgresMetaQuery.ts): the search-path
/// test its table and column lists share.
const GRAFANA_SEARCH_PATH: &str = "
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )";

const GRAFANA_SCHEMAS: &str = "SELECT schema_name AS \"name\"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name";

fn grafana_tables() -> String {
    format!(
        "SELECT
    CASE WHEN {GRAFANA_SEARCH_PATH}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS \"table\"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN {GRAFANA_SEARCH_PATH} THEN 0 ELSE 1 END, 1"
    )
}

fn grafana_tables_of(schema: &str) -> String {
    format!(
        "SELECT quote_ident(table_name) AS \"table\"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = '{schema}'
      ORDER BY 1"
    )
}

fn grafana_columns(table: &str) -> String {
    let table = format!("'{}'", table.replace('\'', "''"));
    format!(
        "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident({table}),1) = 2
        THEN quote_ident(table_schema) = (parse_ident({table}))[1]
          AND quote_ident(table_name) = (parse_ident({table}))[2]
        ELSE quote_ident(table_name) = {table}
          AND {GRAFANA_SEARCH_PATH}
      END"
    )
}

/// Metabase's PostgreSQL driver (src/metabase/driver/postgres.clj,
/// `get-tables-sql`) as HoneySQL writes it for two schemas: its strings are
/// parameters, sent by pgjdbc over the extended protocol.
const METABASE_TABLES: &str = "SELECT \"n\".\"nspname\" AS \"schema\", \"c\".\"relname\" AS \"name\", CASE \"c\".\"relkind\" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS \"type\", \"d\".\"description\" AS \"description\", \"stat\".\"n_live_tup\" AS \"estimated_row_count\" FROM \"pg_catalog\".\"pg_class\" AS \"c\" INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"n\" ON \"c\".\"relnamespace\" = \"n\".\"oid\" LEFT JOIN \"pg_catalog\".\"pg_description\" AS \"d\" ON (\"c\".\"oid\" = \"d\".\"objoid\") AND (\"d\".\"objsubid\" = 0) AND (\"d\".\"classoid\" = 'pg_class'::regclass) LEFT JOIN \"pg_stat_user_tables\" AS \"stat\" ON (\"n\".\"nspname\" = \"stat\".\"schemaname\") AND (\"c\".\"relname\" = \"stat\".\"relname\") WHERE (\"c\".\"relnamespace\" = \"n\".\"oid\") AND (\"n\".\"nspname\" !~ $1) AND (\"n\".\"nspname\" <> $2) AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND (\"n\".\"nspname\" IN ($3, $4)) ORDER BY \"type\" ASC, \"schema\" ASC, \"name\" ASC";

/// Metabase's `describe-fields-sql` for one schema and two tables (pgjdbc's
/// `getColumns` made one query: information_schema with the primary keys,
/// and materialized views from pg_attribute).
const METABASE_FIELDS: &str = "SELECT \"c\".\"column_name\" AS \"name\", CASE WHEN \"c\".\"udt_schema\" IN ('public', 'pg_catalog') THEN FORMAT('%s', \"c\".\"udt_name\") ELSE FORMAT('\"%s\".\"%s\"', \"c\".\"udt_schema\", \"c\".\"udt_name\") END AS \"database-type\", \"c\".\"ordinal_position\" - 1 AS \"database-position\", \"c\".\"table_schema\" AS \"table-schema\", \"c\".\"table_name\" AS \"table-name\", \"pk\".\"column_name\" IS NOT NULL AS \"pk?\", COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', CAST(\"c\".\"table_schema\" AS TEXT), CAST(\"c\".\"table_name\" AS TEXT)) AS REGCLASS) AS OID), \"c\".\"ordinal_position\") AS \"field-comment\", ((\"column_default\" IS NULL) OR (LOWER(\"column_default\") = 'null')) AND (\"is_nullable\" = 'NO') AND NOT (((\"column_default\" IS NOT NULL) AND (\"column_default\" LIKE '%nextval(%')) OR (\"is_identity\" <> 'NO')) AS \"database-required\", ((\"column_default\" IS NOT NULL) AND (\"column_default\" LIKE '%nextval(%')) OR (\"is_identity\" <> 'NO') AS \"database-is-auto-increment\" FROM \"information_schema\".\"columns\" AS \"c\" LEFT JOIN (SELECT \"tc\".\"table_schema\", \"tc\".\"table_name\", \"kc\".\"column_name\" FROM \"information_schema\".\"table_constraints\" AS \"tc\" INNER JOIN \"information_schema\".\"key_column_usage\" AS \"kc\" ON (\"tc\".\"constraint_name\" = \"kc\".\"constraint_name\") AND (\"tc\".\"table_schema\" = \"kc\".\"table_schema\") AND (\"tc\".\"table_name\" = \"kc\".\"table_name\") WHERE \"tc\".\"constraint_type\" = 'PRIMARY KEY') AS \"pk\" ON (\"c\".\"table_schema\" = \"pk\".\"table_schema\") AND (\"c\".\"table_name\" = \"pk\".\"table_name\") AND (\"c\".\"column_name\" = \"pk\".\"column_name\") WHERE c.table_schema !~ '^information_schema|catalog_history|pg_' AND (\"c\".\"table_schema\" IN ($1)) AND (\"c\".\"table_name\" IN ($2, $3)) UNION ALL SELECT \"pa\".\"attname\" AS \"name\", CASE WHEN \"ptn\".\"nspname\" IN ('public', 'pg_catalog') THEN FORMAT('%s', \"pt\".\"typname\") ELSE FORMAT('\"%s\".\"%s\"', \"ptn\".\"nspname\", \"pt\".\"typname\") END AS \"database-type\", \"pa\".\"attnum\" - 1 AS \"database-position\", \"pn\".\"nspname\" AS \"table-schema\", \"pc\".\"relname\" AS \"table-name\", FALSE AS \"pk?\", NULL AS \"field-comment\", FALSE AS \"database-required\", FALSE AS \"database-is-auto-increment\" FROM \"pg_catalog\".\"pg_class\" AS \"pc\" INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"pn\" ON \"pn\".\"oid\" = \"pc\".\"relnamespace\" INNER JOIN \"pg_catalog\".\"pg_attribute\" AS \"pa\" ON \"pa\".\"attrelid\" = \"pc\".\"oid\" INNER JOIN \"pg_catalog\".\"pg_type\" AS \"pt\" ON \"pt\".\"oid\" = \"pa\".\"atttypid\" INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"ptn\" ON \"ptn\".\"oid\" = \"pt\".\"typnamespace\" WHERE (\"pc\".\"relkind\" = 'm') AND (\"pa\".\"attnum\" >= 1) AND (\"pn\".\"nspname\" IN ($4)) AND (\"pc\".\"relname\" IN ($5, $6)) ORDER BY \"table-schema\" ASC, \"table-name\" ASC, \"database-position\" ASC";

#[tokio::test]
async fn psql_grafana_and_metabase_browse_the_lake_through_its_catalogs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--lake-flush-interval", "100ms"]).await;
    let c = server.client();
    c.exec("acme", "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty int, price numeric(8,2), at timestamptz)").await;
    c.exec("acme", "INSERT INTO items VALUES (1, 'one', 10, 1.50, '2026-12-01 10:00+00'), (2, 'two', 20, 2.25, NULL)").await;
    // No primary key: read as its changes, and listed so.
    c.exec("acme", "CREATE TABLE events (k text, v jsonb)").await;
    c.exec("acme", "INSERT INTO events VALUES ('a', '{\"n\": 1}')").await;
    c.exec("acme", "CREATE SCHEMA billing; CREATE TABLE billing.invoices (n int PRIMARY KEY, total numeric(10,2))").await;
    c.exec("acme", "INSERT INTO billing.invoices VALUES (7, 70.00)").await;
    c.exec("beta", "CREATE TABLE \"Orders\" (id int PRIMARY KEY, total float8)").await;
    c.exec("beta", "INSERT INTO \"Orders\" VALUES (1, 9.5)").await;
    c.wait_shipped("acme").await;
    c.wait_shipped("beta").await;

    // psql: the tables, the schemas, one table's columns (the type a query
    // answers with, the key NOT NULL), the changes of a keyless table, and
    // `\d` by pattern; every name is one a query takes.
    let tables = "acme|billing__invoices|table|postgres\nacme|events$changes|table|postgres\nacme|items|table|postgres\nbeta|-4frders|table|postgres\n";
    assert_eq!(psql(&server, &["\\dt"]), tables);
    assert_eq!(psql(&server, &["\\dt acme.*"]), tables.lines().take(3).map(|l| format!("{l}\n")).collect::<String>());
    assert_eq!(psql(&server, &["\\dn"]), "acme|postgres\nall_tenants|postgres\nbeta|postgres\n");
    // all_tenants: a view per table name over the tenants that have its state.
    assert_eq!(
        psql(&server, &["\\dv"]),
        "all_tenants|-4frders|view|postgres\nall_tenants|billing__invoices|view|postgres\nall_tenants|items|view|postgres\n"
    );
    assert_eq!(
        psql(&server, &["\\d all_tenants.items"]),
        "tenant|text|||\nid|bigint|||\nname|text|||\nqty|integer|||\nprice|numeric(8,2)|||\nat|timestamp with time zone|||\n"
    );
    assert_eq!(
        psql(&server, &["\\d acme.items"]),
        "id|bigint||not null|\nname|text|||\nqty|integer|||\nprice|numeric(8,2)|||\nat|timestamp with time zone|||\n"
    );
    assert_eq!(
        psql(&server, &["\\d acme.events$changes"]),
        "k|text|||\nv|text|||\n_op|text|||\n_lsn|bigint|||\n_xid|bigint|||\n_commit_ts|timestamp with time zone|||\n"
    );
    assert_eq!(psql(&server, &["\\d beta.*"]), "id|integer||not null|\ntotal|double precision|||\n");
    let nothing = psql_output(&server, &["\\d acme.nothing"]);
    assert_eq!(String::from_utf8_lossy(&nothing.stderr).trim(), "Did not find any relation named \"acme.nothing\".");
    assert!(psql(&server, &["\\dt+", "\\l", "\\dx", "\\df"]).contains("lake|postgres|"), "the database is listed");

    // What the catalogs list, a lake query reads, on the same connection.
    let pg = wire(&server).await;
    assert_eq!(simple(&pg, "SELECT count(*) FROM acme.\"events$changes\"").await, rows(&["1"]));
    assert_eq!(simple(&pg, "SELECT total FROM beta.\"-4frders\"").await, rows(&["9.5"]));
    assert_eq!(simple(&pg, "SELECT n, total FROM acme.billing__invoices").await, rows(&["7|70.00"]));
    assert_eq!(simple(&pg, "SELECT tenant, id FROM all_tenants.items ORDER BY id").await, rows(&["acme|1", "acme|2"]));
    // OIDs hold from one query and connection to the next, as `\d` needs.
    let oid = "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'acme' AND c.relname = 'items'";
    let first = simple(&pg, oid).await;
    assert_eq!(simple(&wire(&server).await, oid).await, first);
    let by_oid = format!("SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = '{}' AND attnum > 0 ORDER BY attnum", first[0][0].as_deref().unwrap());
    assert_eq!(simple(&pg, &by_oid).await, rows(&["id", "name", "qty", "price", "at"]));
    // A query reads the lake or the catalogs.
    let err = pg.simple_query("SELECT * FROM acme.items JOIN pg_catalog.pg_class ON true").await.unwrap_err();
    let err = err.as_db_error().expect("an error of the server's");
    assert_eq!((err.code().code(), err.message().contains("not both")), ("42601", true), "{err}");

    // Grafana: the configuration page (version, TimescaleDB), then the
    // query editor's schema, table and column lists. Its backend sends
    // queries without arguments as simple queries.
    assert_eq!(simple(&pg, "SELECT current_setting('server_version_num')::int/100 as version").await, rows(&["1600"]));
    assert_eq!(simple(&pg, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").await, rows(&[]));
    assert_eq!(simple(&pg, GRAFANA_SCHEMAS).await, rows(&["acme", "all_tenants", "beta"]));
    // No tenant is on the search path (`public`): every table with its
    // schema, in byte order (PostgreSQL's C collation).
    assert_eq!(
        simple(&pg, &grafana_tables()).await,
        rows(&[
            "acme.\"events$changes\"",
            "acme.billing__invoices",
            "acme.items",
            "all_tenants.\"-4frders\"",
            "all_tenants.billing__invoices",
            "all_tenants.items",
            "beta.\"-4frders\"",
        ])
    );
    assert_eq!(simple(&pg, &grafana_tables_of("acme")).await, rows(&["\"events$changes\"", "billing__invoices", "items"]));
    assert_eq!(
        simple(&pg, &grafana_columns("acme.items")).await,
        rows(&["id|bigint", "name|text", "qty|integer", "price|numeric", "at|timestamp with time zone"])
    );
    assert_eq!(simple(&pg, &grafana_columns("acme.billing__invoices")).await, rows(&["n|integer", "total|numeric"]));

    // Metabase: the tables of the schemas it syncs, then their fields with
    // the primary key, over pgjdbc's extended protocol with parameters.
    let listed = pg.query(METABASE_TABLES, &[&"^pg_", &"information_schema", &"acme", &"beta"]).await.unwrap();
    let listed: Vec<(String, String, String)> = listed.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let table = |s: &str, n: &str| (s.to_owned(), n.to_owned(), "TABLE".to_owned());
    assert_eq!(
        listed,
        [table("acme", "billing__invoices"), table("acme", "events$changes"), table("acme", "items"), table("beta", "-4frders")]
    );
    // all_tenants' views, for analyses across tenants.
    let listed = pg.query(METABASE_TABLES, &[&"^pg_", &"information_schema", &"all_tenants", &"nobody"]).await.unwrap();
    let listed: Vec<(String, String)> = listed.iter().map(|r| (r.get(1), r.get(2))).collect();
    let view = |n: &str| (n.to_owned(), "VIEW".to_owned());
    assert_eq!(listed, [view("-4frders"), view("billing__invoices"), view("items")]);
    let fields =
        pg.query(METABASE_FIELDS, &[&"acme", &"items", &"events$changes", &"acme", &"items", &"events$changes"]).await.unwrap();
    let fields: Vec<(String, String, i64, String, bool, bool)> =
        fields.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(4), r.get(5), r.get(7))).collect();
    let field = |name: &str, ty: &str, position: i64, table: &str, key: bool| {
        (name.to_owned(), ty.to_owned(), position, table.to_owned(), key, key)
    };
    assert_eq!(
        fields,
        [
            field("k", "text", 0, "events$changes", false),
            field("v", "text", 1, "events$changes", false),
            field("_op", "text", 2, "events$changes", false),
            field("_lsn", "int8", 3, "events$changes", false),
            field("_xid", "int8", 4, "events$changes", false),
            field("_commit_ts", "timestamptz", 5, "events$changes", false),
            field("id", "int8", 0, "items", true),
            field("name", "text", 1, "items", false),
            field("qty", "int4", 2, "items", false),
            field("price", "numeric", 3, "items", false),
            field("at", "timestamptz", 4, "items", false),
        ]
    );

    // pgjdbc (Debian's), as DBeaver, Metabase and JDBC apps use it: the
    // server, schemas, tables and columns from DatabaseMetaData, then a
    // prepared query with a parameter.
    let (host, port) = server.pg.as_deref().unwrap().rsplit_once(':').unwrap();
    let seen = jdbc(&format!("jdbc:postgresql://{host}:{port}/lake?user=analyst"), "acme", "items");
    assert_eq!(seen["product"], "PostgreSQL 16.6", "{seen}");
    assert_eq!(seen["schemas"], json!(["acme", "all_tenants", "beta", "information_schema", "pg_catalog"]), "{seen}");
    assert_eq!(
        seen["tables"],
        json!(["acme.billing__invoices:TABLE", "acme.events$changes:TABLE", "acme.items:TABLE"]),
        "{seen}"
    );
    // Position, name, type, java.sql.Types code, nullable.
    assert_eq!(
        seen["columns"],
        json!(["1 id int8 -5 NO", "2 name text 12 YES", "3 qty int4 4 YES", "4 price numeric 2 YES", "5 at timestamptz 93 YES"]),
        "{seen}"
    );
    assert_eq!(seen["rows"], json!(["2 two"]), "{seen}");

    // The catalogs follow the lake: a column added and shipped is there at once.
    c.exec("acme", "ALTER TABLE items ADD COLUMN note text").await;
    c.exec("acme", "UPDATE items SET note = 'added' WHERE id = 1").await;
    c.wait_shipped("acme").await;
    assert!(psql(&server, &["\\d acme.items"]).ends_with("note|text|||\n"));

    // Over HTTP too (`POST /sql`, as `tidelake sql`).
    let listed = sql(&c, "SELECT table_schema, table_name FROM information_schema.tables ORDER BY 1, 2").await;
    assert_eq!(listed[0], json!({"table_schema": "acme", "table_name": "billing__invoices"}));
    assert_eq!(listed.len(), 7, "four tables, three all_tenants views: {listed:?}");
}
