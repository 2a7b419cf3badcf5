//! A tenant's schema as `GET /t/{tenant}/schema` answers it, on the server
//! and at the edge: the user tables with their columns (name, type,
//! nullability, default; where they apply, a domain's base type, identity,
//! generated, an enum's labels, the extension a type belongs to) and primary keys, a
//! fingerprint of the whole that changes whenever any of it does, and the
//! schema versions the change log recorded.

use serde_json::{Value, json};

use crate::SchemaVersion;

/// Tables outside the system schemas, with columns in order and the
/// primary key, as one JSON document.
pub const SCHEMA_SQL: &str = r#"
SELECT json_agg(t ORDER BY t.schema, t.name) AS tables FROM (
  SELECT n.nspname AS schema, c.relname AS name,
    (SELECT json_agg(json_build_object(
        'name', a.attname,
        'type', format_type(a.atttypid, a.atttypmod),
        'typeOid', a.atttypid::int,
        'nullable', NOT a.attnotnull,
        'default', pg_get_expr(d.adbin, d.adrelid))::jsonb || jsonb_strip_nulls(jsonb_build_object(
        'baseTypeOid', CASE WHEN ty.typtype = 'd' THEN ty.typbasetype::int END,
        'identity', CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
        'generated', CASE WHEN a.attgenerated <> '' THEN true END,
        'extension', (SELECT e.extname FROM pg_depend dep JOIN pg_extension e ON e.oid = dep.refobjid
                       WHERE dep.classid = 'pg_type'::regclass AND dep.objid = ty.oid AND dep.deptype = 'e' LIMIT 1),
        'enum', (SELECT jsonb_build_object('schema', en.nspname, 'name', et.typname,
                   'labels', (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder)
                                FROM pg_enum e WHERE e.enumtypid = et.oid))
                   FROM pg_type et JOIN pg_namespace en ON en.oid = et.typnamespace
                  WHERE et.oid = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END
                    AND et.typtype = 'e')))
        ORDER BY a.attnum)
       FROM pg_attribute a
       JOIN pg_type ty ON ty.oid = a.atttypid
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
    COALESCE((SELECT json_agg(a.attname ORDER BY k.ord)
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = c.oid AND i.indisprimary), '[]'::json) AS "primaryKey"
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tidelake')
    AND n.nspname NOT LIKE 'pg\_%'
) t
"#;

/// The schema versions the change log recorded, oldest first (the owner's
/// to read).
pub const SCHEMA_HISTORY_SQL: &str = "SELECT * FROM tidelake.schema_history()";

/// The answer, from [`SCHEMA_SQL`]'s rows and the recorded versions.
pub fn answer(rows: Vec<Value>, versions: &[SchemaVersion]) -> Value {
    let tables = rows
        .into_iter()
        .next()
        .and_then(|row| row.get("tables").cloned())
        .filter(|v| !v.is_null())
        .unwrap_or_else(|| json!([]));
    let fingerprint = format!("{:016x}", fnv1a(tables.to_string().as_bytes()));
    json!({ "fingerprint": fingerprint, "tables": tables, "versions": versions })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn the_fingerprint_follows_the_tables() {
        let one = super::answer(vec![json!({"tables": [{"name": "a"}]})], &[]);
        let two = super::answer(vec![json!({"tables": [{"name": "b"}]})], &[]);
        let none = super::answer(vec![json!({"tables": null})], &[]);
        assert_ne!(one["fingerprint"], two["fingerprint"]);
        assert_eq!(none["tables"], json!([]));
        assert_eq!(one["fingerprint"], super::answer(vec![json!({"tables": [{"name": "a"}]})], &[])["fingerprint"]);
    }
}
