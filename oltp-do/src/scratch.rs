//! A throwaway tenant database in a temporary directory, for the
//! deployment's tools that need the real engine but no tenant: `tidelake
//! types` from the migrations alone, `tidelake migrate check` trying each
//! migration up, down and up again. Nothing of it is kept.

use serde_json::Value;

use crate::engine::{EngineSettings, MigrationStatus, Session, TenantDb};
use crate::error::{DbError, Error, Result};
use crate::protocol::{BatchRequest, RowMode, Statement};
use model::migrations::Migrations;

/// Every object a migration may make or change outside the server's own
/// schemas, one sorted line each: schemas, relations and their columns,
/// constraints, indexes, views, types, functions, triggers (not the change
/// capture's), extensions. Two databases with the same lines have the
/// same schema, as far as migrations go.
const CATALOG_SQL: &str = r#"
WITH ns AS (
  SELECT oid, nspname FROM pg_namespace
   WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'tidelake') AND nspname NOT LIKE 'pg\_%'
)
SELECT coalesce(json_agg(line ORDER BY line), '[]')::text AS lines FROM (
  SELECT format('schema %I', nspname) AS line FROM ns
  UNION ALL
  SELECT format('relation %I.%I kind %s', ns.nspname, c.relname, c.relkind)
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
  UNION ALL
  SELECT format('column %I.%I.%I %s%s%s%s%s', ns.nspname, c.relname, a.attname,
         format_type(a.atttypid, a.atttypmod),
         CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
         coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''),
         CASE a.attidentity WHEN 'a' THEN ' identity always' WHEN 'd' THEN ' identity by default' ELSE '' END,
         CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END)
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN ns ON ns.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT format('constraint %I.%I %I %s', ns.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid))
    FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT format('index %s', pg_get_indexdef(i.indexrelid))
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT format('view %I.%I %s', ns.nspname, c.relname, pg_get_viewdef(c.oid))
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')
  UNION ALL
  SELECT format('type %I.%I %s %s', ns.nspname, t.typname, t.typtype,
         CASE t.typtype
           WHEN 'e' THEN (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)
           WHEN 'd' THEN format_type(t.typbasetype, t.typtypmod) || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END
           ELSE '' END)
    FROM pg_type t JOIN ns ON ns.oid = t.typnamespace WHERE t.typtype IN ('e', 'd', 'r', 'm')
  UNION ALL
  SELECT format('function %I.%I(%s) returns %s kind %s body %s', ns.nspname, p.proname,
         pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), p.prokind, md5(coalesce(p.prosrc, '')))
    FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
  UNION ALL
  SELECT format('trigger %s', pg_get_triggerdef(g.oid))
    FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN ns ON ns.oid = c.relnamespace
   WHERE NOT g.tgisinternal AND g.tgname NOT IN ('tidelake_capture', 'tidelake_capture_truncate')
  UNION ALL
  SELECT format('extension %I', extname) FROM pg_extension WHERE extname <> 'plpgsql'
) lines
"#;

/// A new, empty tenant database that goes away when dropped.
pub struct Scratch {
    db: Option<TenantDb>,
    _dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(settings: &EngineSettings) -> Result<Self> {
        crate::engine::runtime::preload()?;
        let dir = tempfile::Builder::new()
            .prefix("tidelake-scratch-")
            .tempdir()
            .map_err(|e| Error::io("make a scratch directory", &std::env::temp_dir(), e))?;
        let db = TenantDb::open(&dir.path().join("db"), settings, Session::Tenant)?;
        Ok(Self { db: Some(db), _dir: dir })
    }

    fn db(&mut self) -> &mut TenantDb {
        self.db.as_mut().expect("the scratch database is open until dropped")
    }

    /// Apply `set` as a tenant opening with it would.
    pub fn migrate(&mut self, set: &Migrations) -> Result<MigrationStatus> {
        self.db().migrate(set, false)
    }

    /// The schema, as `GET /t/{tenant}/schema` answers it.
    pub fn schema(&mut self) -> Result<Value> {
        self.db().schema()
    }

    /// `statements` in one transaction, as a client's `POST transaction`
    /// (a migration's up or down, unrecorded); PostgreSQL's error if one fails.
    pub fn run(&mut self, statements: &[String]) -> Result<std::result::Result<(), DbError>> {
        let request =
            BatchRequest::of(statements.iter().map(|sql| Statement { sql: sql.clone(), params: Vec::new() }).collect());
        match self.db().transaction(&request) {
            Ok(_) => Ok(Ok(())),
            Err(Error::Database(err)) => Ok(Err(*err)),
            Err(err) => Err(err),
        }
    }

    /// The schema as sorted lines (see [`CATALOG_SQL`]), to compare.
    pub fn catalog(&mut self) -> Result<Vec<String>> {
        let result = self.db().query(
            &Statement { sql: CATALOG_SQL.to_owned(), params: Vec::new() },
            RowMode::Object,
        )?;
        let text = result.rows.first().and_then(|row| row["lines"].as_str()).unwrap_or("[]");
        serde_json::from_str(text).map_err(|source| Error::Malformed { what: "the scratch database's catalog".into(), source })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            let _ = db.close();
        }
    }
}
