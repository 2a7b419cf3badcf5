//! Point-in-time recovery inside a restored database: replaying changes on
//! top of a base backup, and starting its change log afresh afterwards.
//!
//! Replay runs with `session_replication_role = replica`, so neither the
//! capture triggers nor foreign-key checks fire: the log already holds every
//! row a cascade or a trigger wrote (nor does the check of a `DEFERRABLE`
//! key, a trigger too: see `Table::deferrable_key`). Changes are applied per
//! run of one table: for a table with a primary key, the run is reduced to
//! each touched key's final row (or none, deleted), and applied as at most
//! one DELETE, one UPDATE and one INSERT, each through
//! `json_populate_recordset`, so PostgreSQL parses every value with the
//! column's own input function. A table without a primary key is replayed
//! change by change, matching whole rows.

use std::collections::HashMap;

use model::{Change, Op, Row, SchemaVersion};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};

use super::database::TenantDb;
use super::wire::{self, OutcomeExt};
use crate::error::{Error, Result};
use crate::protocol::RowMode;
use crate::values::json_to_param;

/// Changes reduced and applied together, at most: the more, the more
/// repeated changes of one key collapse into one (200 000 mixed changes
/// replayed 1.5× faster with 50 000 than with 5 000, docs/benchmarks.md).
const RUN_LIMIT: usize = 50_000;
/// Row data a run holds, at most, roughly (bounds memory and the JSON sent
/// in one statement when rows are large).
const RUN_BYTES: usize = 16 << 20;

/// What the replayed changes carry of an update: the row it replaced as
/// well as the new one (a tenant's change log), or the new row only (the
/// lake). Values are faithful either way; without old rows, whether a key
/// held a row before a run is inferred (see `flush`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Images {
    OldAndNew,
    NewOnly,
}

/// A table as replay writes it.
struct Table {
    /// `"schema"."table"`.
    name: String,
    /// Columns an INSERT may name (not generated), quoted, comma-separated.
    insert_columns: String,
    primary_key: Vec<String>,
    /// `t.k = r.k` for every primary-key column, joined by AND.
    key_match: String,
    /// The primary key is DEFERRABLE: its uniqueness is checked by a
    /// trigger, which does not fire while replaying (replica role), so an
    /// insert into a taken key would not fail but duplicate the key.
    deferrable_key: bool,
    identity_always: bool,
    /// `c = r.c` for every column an UPDATE may set (not generated, not in
    /// the key); empty when rows are replaced by DELETE and INSERT instead.
    update_set: String,
}

/// The changes of one table, reduced to each touched key's final row.
#[derive(Default)]
struct Run {
    table: Option<(String, String)>,
    /// Key → position in `rows`.
    keys: HashMap<String, usize>,
    rows: Vec<Touched>,
    /// Rows to insert into a table without a primary key.
    inserts: Vec<Value>,
    changes: usize,
    /// Size of the rows of `changes`, roughly, as JSON.
    bytes: usize,
}

use model::sql::quote_ident as quote;

impl TenantDb {
    /// Run one trusted statement of ours; a PostgreSQL error is returned as such.
    pub(super) fn exec(&mut self, sql: &str, params: &[Value], row_mode: RowMode) -> Result<Vec<Value>> {
        let params: Vec<Option<String>> = params.iter().map(json_to_param).collect();
        let outcome = self.round_trip(&wire::extended_query(sql, &params), row_mode)?.or_client_error()?;
        Ok(outcome.results.into_iter().last().map(|r| r.rows).unwrap_or_default())
    }

    pub(super) fn simple(&mut self, sql: &str) -> Result<()> {
        self.round_trip(&wire::simple_query(sql), RowMode::Array)?.or_client_error().map(drop)
    }

    /// Apply the changes `pages` yields (pages of change-log objects, in LSN
    /// order, until None) in one transaction; a page that is an error aborts
    /// it. `progress` is told how many have been applied so far. `renames`
    /// maps a table's name in the changes (`schema.table`) to its name here,
    /// with its column renames, for changes read from the lake under later names.
    pub fn replay(
        &mut self,
        pages: &mut dyn FnMut() -> Option<Result<Vec<Change>>>,
        images: Images,
        renames: &HashMap<String, (String, String, HashMap<String, String>)>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<()> {
        // Replica mode: neither capture nor the tenant's own triggers fire.
        // The rows are written as the tenant, whose tables they are: the
        // tenant's code they may run (domain checks, index expressions,
        // ALWAYS triggers) never runs as the superuser.
        self.simple("SET session_replication_role = replica")?;
        let replayed = self.as_tenant(|db| {
            db.simple("BEGIN")?;
            match db.replay_in_transaction(pages, images, renames, progress) {
                Ok(()) => db.simple("COMMIT"),
                Err(err) => {
                    let _ = db.simple("ROLLBACK");
                    Err(err)
                }
            }
        });
        let reset = self.simple("RESET session_replication_role");
        replayed.and(reset)
    }

    fn replay_in_transaction(
        &mut self,
        pages: &mut dyn FnMut() -> Option<Result<Vec<Change>>>,
        images: Images,
        renames: &HashMap<String, (String, String, HashMap<String, String>)>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<()> {
        let mut tables: HashMap<(String, String), Table> = HashMap::new();
        let mut run = Run::default();
        let mut done = 0;
        while let Some(page) = pages() {
            let page = page?;
            for change in &page {
                let lsn = change.lsn;
                let (schema, table) = (change.schema.as_str(), change.table.as_str());
                let renamed = renames.get(&format!("{schema}.{table}"));
                let key = match renamed {
                    Some((s, t, _)) => (s.clone(), t.clone()),
                    None => (schema.to_owned(), table.to_owned()),
                };
                if run.table.as_ref() != Some(&key) || run.changes >= RUN_LIMIT || run.bytes >= RUN_BYTES {
                    done += self.flush(&mut run, &tables, images)?;
                    progress(done);
                    run.table = Some(key.clone());
                }
                if !tables.contains_key(&key) {
                    let info = self.table_info(&key.0, &key.1).map_err(|e| {
                        Error::Engine(format!("replaying LSN {lsn}: table {}.{} of the base backup: {e}", key.0, key.1))
                    })?;
                    tables.insert(key.clone(), info);
                }
                let info = &tables[&key];
                let fix = |row: Option<&Row>| -> Value { restore_row(row, renamed.map(|r| &r.2)) };
                run.changes += 1;
                run.bytes += row_size(change.new.as_ref()) + row_size(change.old.as_ref());
                match change.op {
                    Op::Insert => {
                        let new = fix(change.new.as_ref());
                        if info.primary_key.is_empty() {
                            run.inserts.push(new);
                        } else {
                            run.put(&info.primary_key, None, Some(new), false);
                        }
                    }
                    Op::Update => {
                        let new = fix(change.new.as_ref());
                        let old = change.old.as_ref().map(|o| fix(Some(o)));
                        if info.primary_key.is_empty() {
                            let Some(old) = old else {
                                return Err(Error::bad_request(
                                    "replay_needs_old_row",
                                    format!(
                                        "LSN {lsn} updates {}, which has no primary key, and the changes replayed (the lake's) keep only the new rows of updates: restore to an instant the change log still holds, or give the table a primary key",
                                        info.name
                                    ),
                                ));
                            };
                            done += self.flush(&mut run, &tables, images)?;
                            self.delete_row(info, &old)?;
                            self.insert_rows(info, vec![new])?;
                        } else {
                            run.put(&info.primary_key, old, Some(new), true);
                        }
                    }
                    Op::Delete => {
                        let old = fix(change.old.as_ref());
                        if info.primary_key.is_empty() {
                            done += self.flush(&mut run, &tables, images)?;
                            self.delete_row(info, &old)?;
                        } else {
                            run.put(&info.primary_key, Some(old), None, false);
                        }
                    }
                    Op::Truncate => {
                        done += self.flush(&mut run, &tables, images)?;
                        let name = info.name.clone();
                        self.simple(&format!("TRUNCATE {name} CASCADE"))?;
                    }
                    Op::Drop => {
                        return Err(Error::Engine(format!(
                            "LSN {lsn}: {} was dropped, and replay does not cross schema changes",
                            info.name
                        )));
                    }
                }
            }
        }
        done += self.flush(&mut run, &tables, images)?;
        self.exec("SELECT tidelake.advance_sequences()", &[], RowMode::Array)?;
        progress(done);
        Ok(())
    }

    /// Apply what a run holds. Returns how many changes it held.
    ///
    /// With old rows (the log's), whether a key held a row before the run is
    /// known. Without them (the lake keeps new rows only) it is inferred:
    /// an insert's key held nothing, an update's key held its row. Rows that
    /// traded keys in a chain within one statement under a `DEFERRABLE`
    /// key (logged as updates of the keys they moved into), and key changes
    /// captured before capture version 5 (logged as updates), break that
    /// inference; so without old rows every key is applied as the lake's own
    /// state has it — the key's last row, or none — whatever it held: an
    /// update that finds no row inserts it, an insert that finds one
    /// replaces it, a delete removes whatever the key holds.
    fn flush(&mut self, run: &mut Run, tables: &HashMap<(String, String), Table>, images: Images) -> Result<usize> {
        let held = std::mem::take(&mut run.changes);
        run.bytes = 0;
        let Some(info) = run.table.as_ref().and_then(|k| tables.get(k)) else { return Ok(held) };
        let inferred = images == Images::NewOnly;
        if !run.rows.is_empty() {
            let touched = std::mem::take(&mut run.rows);
            run.keys.clear();
            let (mut gone, mut updated, mut inserted) = (Vec::new(), Vec::new(), Vec::new());
            for t in touched {
                match (t.row, t.existed) {
                    // Updated in place where the table allows it.
                    (Some(row), true) if !info.update_set.is_empty() => updated.push(row),
                    (Some(row), existed) => {
                        if existed {
                            gone.push(t.key);
                        }
                        inserted.push(row);
                    }
                    (None, existed) if existed || inferred => gone.push(t.key),
                    (None, _) => {}
                }
            }
            if !gone.is_empty() {
                self.delete_keys(info, &Value::String(Value::Array(gone).to_string()))?;
            }
            if !updated.is_empty() {
                let count = updated.len();
                let rows = Value::String(Value::Array(updated).to_string());
                let sql = format!("WITH u AS ({} RETURNING 1) SELECT count(*) FROM u", update_statement(info));
                let found = self.exec(&sql, std::slice::from_ref(&rows), RowMode::Array)?;
                let found = found.first().and_then(|r| r[0].as_u64()).unwrap_or(0) as usize;
                if found < count {
                    if !inferred {
                        return Err(Error::Engine(format!(
                            "replaying {}: {} updated keys hold no row in the base backup",
                            info.name,
                            count - found
                        )));
                    }
                    self.insert_missing(info, rows)?;
                }
            }
            if !inferred || inserted.is_empty() {
                self.insert_rows(info, inserted)?;
            } else if info.deferrable_key {
                self.upsert_rows(info, Value::String(Value::Array(inserted).to_string()))?;
            } else {
                // Inserted as a batch; should a key already hold a row (key
                // changes captured as updates), it is applied as state instead.
                let rows = Value::String(Value::Array(inserted).to_string());
                self.simple("SAVEPOINT tidelake_replay_run")?;
                match self.insert_json(info, &rows) {
                    Ok(()) => self.simple("RELEASE SAVEPOINT tidelake_replay_run")?,
                    Err(Error::Database(err)) if err.code == "23505" => {
                        self.simple("ROLLBACK TO SAVEPOINT tidelake_replay_run; RELEASE SAVEPOINT tidelake_replay_run")?;
                        self.upsert_rows(info, rows)?;
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        let inserts = std::mem::take(&mut run.inserts);
        self.insert_rows(info, inserts)?;
        Ok(held)
    }

    /// Give every key of `rows` (a JSON array as text) the row given,
    /// whether or not it holds one.
    fn upsert_rows(&mut self, info: &Table, rows: Value) -> Result<()> {
        if info.update_set.is_empty() {
            self.delete_keys(info, &rows)?;
        } else {
            self.exec(&update_statement(info), std::slice::from_ref(&rows), RowMode::Array)?;
        }
        self.insert_missing(info, rows)
    }

    /// Delete the rows at the keys of `rows` (a JSON array as text).
    fn delete_keys(&mut self, info: &Table, rows: &Value) -> Result<()> {
        let sql = format!("DELETE FROM {name} AS t USING json_populate_recordset(NULL::{name}, $1) AS r WHERE {on}", name = info.name, on = info.key_match);
        self.exec(&sql, std::slice::from_ref(rows), RowMode::Array)?;
        Ok(())
    }

    /// Insert the rows of `rows` (a JSON array as text) whose keys hold none.
    fn insert_missing(&mut self, info: &Table, rows: Value) -> Result<()> {
        let overriding = if info.identity_always { " OVERRIDING SYSTEM VALUE" } else { "" };
        let sql = format!(
            "INSERT INTO {name} ({cols}){overriding} SELECT {cols} FROM json_populate_recordset(NULL::{name}, $1) AS r WHERE NOT EXISTS (SELECT 1 FROM {name} AS t WHERE {on})",
            name = info.name,
            cols = info.insert_columns,
            on = info.key_match
        );
        self.exec(&sql, &[rows], RowMode::Array)?;
        Ok(())
    }

    fn insert_rows(&mut self, info: &Table, rows: Vec<Value>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.insert_json(info, &Value::String(Value::Array(rows).to_string()))
    }

    /// Insert the rows of `rows` (a JSON array as text).
    fn insert_json(&mut self, info: &Table, rows: &Value) -> Result<()> {
        let overriding = if info.identity_always { " OVERRIDING SYSTEM VALUE" } else { "" };
        let sql = format!(
            "INSERT INTO {} ({cols}){overriding} SELECT {cols} FROM json_populate_recordset(NULL::{}, $1)",
            info.name,
            info.name,
            cols = info.insert_columns
        );
        self.exec(&sql, std::slice::from_ref(rows), RowMode::Array)?;
        Ok(())
    }

    /// Delete one row equal to `old` in every column (a table without a primary key).
    fn delete_row(&mut self, info: &Table, old: &Value) -> Result<()> {
        let sql = format!(
            "DELETE FROM {name} WHERE ctid = (SELECT t.ctid FROM {name} AS t, json_populate_record(NULL::{name}, $1) AS o WHERE (t.*) IS NOT DISTINCT FROM (o.*) LIMIT 1)",
            name = info.name
        );
        self.exec(&sql, &[Value::String(old.to_string())], RowMode::Array)?;
        Ok(())
    }

    fn table_info(&mut self, schema: &str, table: &str) -> Result<Table> {
        self.table_named(qualified(schema, table))
    }

    /// A table by its quoted, qualified name.
    fn table_named(&mut self, name: String) -> Result<Table> {
        let columns = self.exec(
            "SELECT a.attname AS name, a.attgenerated <> '' AS generated, a.attidentity = 'a' AS always \
             FROM pg_attribute a \
             WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[json!(name)],
            RowMode::Object,
        )?;
        let pk = self.exec(
            "SELECT tidelake.table_primary_key($1::regclass) AS pk, \
             EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1::regclass AND indisunique AND NOT indisprimary) AS unique, \
             EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p' AND condeferrable) AS deferrable",
            &[json!(name)],
            RowMode::Object,
        )?;
        let truthy = |v: &Value| v.as_bool().unwrap_or_else(|| v.as_str() == Some("t"));
        let name_of = |c: &Value| c["name"].as_str().unwrap_or_default().to_owned();
        let primary_key = match pk.first().map(|r| &r["pk"]) {
            Some(Value::Array(cols)) => cols.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect(),
            Some(Value::String(text)) => serde_json::from_str(text).unwrap_or_default(),
            _ => Vec::new(),
        };
        let identity_always = columns.iter().any(|c| truthy(&c["always"]));
        // In one UPDATE, rows trading values of another unique column would
        // collide midway; such tables (and identity columns that refuse
        // explicit values) have their rows replaced instead.
        let in_place = !identity_always && !pk.first().is_some_and(|r| truthy(&r["unique"]));
        let update_set = if in_place {
            columns
                .iter()
                .filter(|c| !truthy(&c["generated"]) && !primary_key.contains(&name_of(c)))
                .map(|c| format!("{0} = r.{0}", quote(&name_of(c))))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            String::new()
        };
        let key_match = primary_key.iter().map(|c| format!("t.{0} = r.{0}", quote(c))).collect::<Vec<_>>().join(" AND ");
        Ok(Table {
            update_set,
            key_match,
            deferrable_key: pk.first().is_some_and(|r| truthy(&r["deferrable"])),
            insert_columns: columns
                .iter()
                .filter(|c| !truthy(&c["generated"]))
                .map(|c| quote(&name_of(c)))
                .collect::<Vec<_>>()
                .join(", "),
            identity_always,
            primary_key,
            name,
        })
    }

    /// Where each table's newest schema version (`latest`, as the lake names
    /// its changes) is found here, keyed `schema.table`: its name here and
    /// its columns renamed since, by attnum. Only tables named differently.
    pub fn renames_for(&mut self, latest: &[SchemaVersion]) -> Result<HashMap<String, (String, String, HashMap<String, String>)>> {
        let mut renames = HashMap::new();
        for version in latest {
            let oid = version.table_oid;
            let rows = self.exec(
                "SELECT n.nspname AS schema, c.relname AS table,                  (SELECT json_object_agg(a.attnum::text, a.attname) FROM pg_attribute a                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)::text AS columns                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::oid",
                &[json!(oid)],
                RowMode::Object,
            )?;
            let Some(here) = rows.first() else { continue };
            let here_columns: HashMap<String, String> =
                here["columns"].as_str().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
            let mut columns = HashMap::new();
            for column in &version.columns {
                if let Some(then) = here_columns.get(&column.attnum.to_string())
                    && *then != column.name
                {
                    columns.insert(column.name.clone(), then.clone());
                }
            }
            let (schema, table) = (here["schema"].as_str().unwrap_or_default(), here["table"].as_str().unwrap_or_default());
            let (latest_schema, latest_table) = (version.schema.as_str(), version.table.as_str());
            if !columns.is_empty() || schema != latest_schema || table != latest_table {
                renames.insert(format!("{latest_schema}.{latest_table}"), (schema.to_owned(), table.to_owned(), columns));
            }
        }
        Ok(renames)
    }

    /// After a restore: start the change log afresh above `lsn_floor`
    /// (`tidelake.rebase` in capture.sql), keeping `versions`. Tables in
    /// `diff` (see `rows_at_head`) log only how they differ from the rows
    /// the replaced database ended with; every other table is logged whole.
    /// Returns the new head.
    pub fn rebase(&mut self, lsn_floor: u64, versions: &[StoredVersion], diff: Option<Value>) -> Result<u64> {
        // What differs, computed in the tenant's session (see `diff_rows`).
        let diff = match diff {
            Some(Value::Object(tables)) => Some(Value::Object(self.as_tenant(|db| {
                tables
                    .into_iter()
                    .map(|(name, entries)| {
                        let rows = db.exec(
                            "SELECT coalesce(json_agg(json_build_object('op', d.op, 'now', d.now, 'head', d.head) ORDER BY d.ord), '[]')::text AS rows \
                             FROM tidelake.diff_rows($1::regclass, $2::json) d",
                            &[json!(name), Value::String(entries.to_string())],
                            RowMode::Object,
                        )?;
                        let text = rows.first().and_then(|r| r["rows"].as_str()).unwrap_or("[]");
                        let rows: Value = serde_json::from_str(text).map_err(|source| Error::Malformed { what: format!("diff of {name}"), source })?;
                        Ok((name, rows))
                    })
                    .collect::<Result<serde_json::Map<String, Value>>>()
            })?)),
            other => other,
        };
        let rows = self.exec(
            "SELECT tidelake.rebase($1, $2::json, $3::json) AS head",
            &[
                json!(lsn_floor),
                Value::String(serde_json::to_string(versions).map_err(|source| Error::Malformed { what: "schema versions".into(), source })?),
                diff.map_or(Value::Null, |d| Value::String(d.to_string())),
            ],
            RowMode::Object,
        )?;
        Ok(rows.first().and_then(|r| r["head"].as_u64()).unwrap_or(lsn_floor))
    }

    /// Create the tables of `versions` (a branch from the lake alone), each
    /// in its schema, with its columns' types, `NOT NULL` where the lake
    /// recorded it, and its primary key, in one transaction, in the
    /// tenant's session: the tenant owns them. Type names come from the
    /// lake: each is read by this database (`to_regtype`) before it is
    /// written into SQL, and one it does not have (an enum, a domain, an
    /// extension's type) or cannot read becomes `text`; those columns are
    /// returned, as `schema.table.column (type)`.
    pub fn create_tables(&mut self, versions: &[SchemaVersion]) -> Result<Vec<String>> {
        self.as_tenant(|db| {
            let mut as_text = Vec::new();
            let mut statements = Vec::new();
            for v in versions {
                let mut columns = Vec::new();
                for c in &v.columns {
                    let read = db
                        .exec(
                            "SELECT format_type(to_regtype($1), to_regtypemod($1)) AS type",
                            &[json!(c.type_name)],
                            RowMode::Object,
                        )
                        .ok()
                        .and_then(|rows| rows.first().and_then(|r| r["type"].as_str().map(str::to_owned)));
                    let type_name = read.unwrap_or_else(|| {
                        as_text.push(format!("{}.{}.{} ({})", v.schema, v.table, c.name, c.type_name));
                        "text".to_owned()
                    });
                    let not_null = if c.nullable == Some(false) { " NOT NULL" } else { "" };
                    columns.push(format!("{} {type_name}{not_null}", quote(&c.name)));
                }
                if !v.primary_key.is_empty() {
                    let key: Vec<String> = v.primary_key.iter().map(|k| quote(k)).collect();
                    columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
                }
                statements.push(format!("CREATE SCHEMA IF NOT EXISTS {}", quote(&v.schema)));
                statements.push(format!("CREATE TABLE {} ({})", qualified(&v.schema, &v.table), columns.join(", ")));
            }
            db.simple("BEGIN")?;
            for statement in &statements {
                if let Err(err) = db.simple(statement) {
                    let _ = db.simple("ROLLBACK");
                    return Err(Error::Engine(format!("creating the tables of the lake: {statement}: {err}")));
                }
            }
            db.simple("COMMIT")?;
            Ok(as_text)
        })
    }

    /// Every schema version as stored (all columns), oldest first: what a
    /// restore in place keeps, so version numbers are never reused.
    pub fn stored_schema_versions(&mut self) -> Result<Vec<StoredVersion>> {
        let rows = self.exec(
            // With each version's commit time: a restored database carries
            // the versions over, not the transactions they were committed in.
            "SELECT coalesce(json_agg(s ORDER BY s.version), '[]'::json)::text AS versions FROM ( \
               SELECT v.version, v.lsn, v.xid, v.table_oid, v.table_schema, v.table_name, v.columns, v.primary_key, \
                      v.dropped, v.signature, \
                      coalesce(v.commit_ts, pg_xact_commit_timestamp((v.xid % 4294967296)::text::xid)) AS commit_ts \
               FROM tidelake.schema_versions v) s",
            &[],
            RowMode::Object,
        )?;
        let text = rows.first().and_then(|r| r["versions"].as_str()).unwrap_or("[]");
        serde_json::from_str(text).map_err(|source| Error::Malformed { what: "schema versions".into(), source })
    }
}

impl Run {
    /// Record a change of a table with a primary key: `old` row (None for
    /// an insert, and for an update read from the lake, which keeps only
    /// new rows: its key is taken not to change) and `new` row (None for a
    /// delete).
    fn put(&mut self, primary_key: &[String], old: Option<Value>, new: Option<Value>, update: bool) {
        let new_key = new.as_ref().map(|new| key_of(primary_key, new));
        let mut old_key = None;
        if let Some(old) = old {
            let (key, object) = key_of(primary_key, &old);
            let moves = new_key.as_ref().is_some_and(|(k, _)| *k != key);
            match self.keys.get(&key).map(|&at| &mut self.rows[at]) {
                // Keys traded within one statement (a deferrable key): the
                // row another update moved here stays; the key held a row.
                Some(touched) if moves && touched.row.as_ref().is_some_and(|row| *row != old) => touched.existed = true,
                _ => self.set(key.clone(), object, None, true),
            }
            old_key = Some(key);
        }
        if let (Some(new), Some((key, object))) = (new, new_key) {
            // A key an update moves a row to held nothing before (in a
            // consistent history); one it keeps, or an update without its
            // old row, held the row.
            let existed = update && old_key.as_ref().is_none_or(|k| *k == key);
            self.set(key, object, Some(new), existed);
        }
    }

    fn set(&mut self, key: String, object: Value, row: Option<Value>, existed: bool) {
        match self.keys.get(&key) {
            Some(&at) => self.rows[at].row = row,
            None => {
                self.keys.insert(key, self.rows.len());
                self.rows.push(Touched { key: object, row, existed });
            }
        }
    }
}

/// The row each key touched by `changes` holds after them, per table, for
/// the tables of `tables` (`"schema"."table"`, quoted as `qualified` does,
/// → primary-key columns): `"schema"."table"` → `[{"key", "head"}]`, `head`
/// null where the key ends empty. Every table of `tables` is in the result
/// (untouched: an empty list) but those the changes truncate, whose rows
/// cannot be told by key.
pub fn rows_at_head(changes: &[Change], tables: &HashMap<String, Vec<String>>) -> Value {
    let mut runs: HashMap<&str, Run> = tables.keys().map(|t| (t.as_str(), Run::default())).collect();
    for change in changes {
        let table = qualified(&change.schema, &change.table);
        let (Some(primary_key), Some(run)) = (tables.get(&table), runs.get_mut(table.as_str())) else { continue };
        let row = |row: &Option<Row>| row.clone().map(Value::Object);
        match change.op {
            Op::Insert => run.put(primary_key, None, row(&change.new), false),
            Op::Update => run.put(primary_key, row(&change.old), row(&change.new), true),
            Op::Delete => run.put(primary_key, row(&change.old), None, false),
            // Truncated or dropped: logged whole.
            Op::Truncate | Op::Drop => {
                runs.remove(table.as_str());
            }
        }
    }
    let mut out = Map::new();
    for (table, run) in runs {
        let entries = run.rows.into_iter().map(|t| json!({"key": t.key, "head": t.row})).collect();
        out.insert(table.to_owned(), Value::Array(entries));
    }
    Value::Object(out)
}

/// `"schema"."table"`, quoted as PostgreSQL quotes identifiers.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(table))
}

/// A key a run touched.
struct Touched {
    /// The key's columns, as an object.
    key: Value,
    /// The row the key ends with (None: deleted).
    row: Option<Value>,
    /// Whether the key held a row before the run.
    existed: bool,
}

/// A row's primary key: as a string to compare, and as an object to send.
fn key_of(primary_key: &[String], row: &Value) -> (String, Value) {
    let mut object = Map::new();
    for column in primary_key {
        object.insert(column.clone(), row.get(column).cloned().unwrap_or(Value::Null));
    }
    let object = Value::Object(object);
    (object.to_string(), object)
}

/// The UPDATE that gives the rows at the keys of `$1` (a JSON array of
/// rows) the values given.
fn update_statement(info: &Table) -> String {
    format!(
        "UPDATE {name} AS t SET {set} FROM json_populate_recordset(NULL::{name}, $1) AS r WHERE {on}",
        name = info.name,
        set = info.update_set,
        on = info.key_match
    )
}

/// About how many bytes `value` takes as JSON text (not serialized).
/// About how many bytes a row of a change takes as JSON.
fn row_size(row: Option<&Row>) -> usize {
    row.map_or(4, |entries| 2 + entries.iter().map(|(k, v)| k.len() + 4 + json_size(v)).sum::<usize>())
}

fn json_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(text) => text.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|v| json_size(v) + 1).sum::<usize>(),
        Value::Object(entries) => 2 + entries.iter().map(|(k, v)| k.len() + 4 + json_size(v)).sum::<usize>(),
    }
}

/// A row of `tidelake.schema_versions` as stored, every column: what a
/// restore in place carries over, so version numbers are never reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVersion {
    pub version: i64,
    pub lsn: u64,
    pub xid: u64,
    /// PostgreSQL writes an oid in JSON as a string.
    #[serde(deserialize_with = "oid")]
    pub table_oid: u32,
    pub table_schema: String,
    pub table_name: String,
    /// The columns as capture records them, carried over as they are.
    pub columns: Value,
    pub primary_key: Vec<String>,
    pub dropped: bool,
    pub signature: String,
    /// When the version was committed (`None`: its xid's commit time).
    pub commit_ts: Option<String>,
    /// Columns a later capture version adds, carried over too.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

fn oid<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u32, D::Error> {
    use serde::de::Error as _;
    match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| D::Error::custom(format!("oid {n} out of range"))),
        Value::String(text) => text.parse().map_err(|_| D::Error::custom(format!("oid {text:?} is not a number"))),
        other => Err(D::Error::custom(format!("expected an oid, found {other}"))),
    }
}

/// A row as `json_populate_record` takes it: columns renamed to their
/// names here.
fn restore_row(row: Option<&Row>, renames: Option<&HashMap<String, String>>) -> Value {
    let Some(entries) = row else { return Value::Null };
    let Some(renames) = renames else { return Value::Object(entries.clone()) };
    let renamed = entries.iter().map(|(name, value)| (renames.get(name).unwrap_or(name).clone(), value.clone()));
    Value::Object(renamed.collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn change(lsn: u64, op: &str, old: Value, new: Value) -> Change {
        serde_json::from_value(json!({"lsn": lsn, "op": op, "table": "t", "old": old, "new": new})).unwrap()
    }

    /// A run keeps one entry per key touched, in the order first touched:
    /// the row the key ends with (None: removed) and whether it held a row
    /// before the run — which decides delete-then-insert against update.
    #[test]
    fn a_run_reduces_each_key_to_its_last_row() {
        let key = ["id".to_owned()];
        let row = |id: i64, v: &str| json!({"id": id, "v": v});
        let mut run = Run::default();
        run.put(&key, None, Some(row(1, "a")), false); // inserted…
        run.put(&key, Some(row(1, "a")), Some(row(1, "b")), true); // …then updated: still new
        run.put(&key, Some(row(2, "x")), None, false); // a row the run did not make, deleted
        run.put(&key, Some(row(3, "m")), Some(row(4, "m")), true); // key 3 moves to 4
        run.put(&key, None, Some(row(5, "n")), false); // inserted and deleted again
        run.put(&key, Some(row(5, "n")), None, false);
        // Two rows trading keys in one statement (a deferrable key).
        run.put(&key, Some(row(6, "p")), Some(row(7, "p")), true);
        run.put(&key, Some(row(7, "q")), Some(row(6, "q")), true);
        let found: Vec<(Value, Option<Value>, bool)> =
            run.rows.iter().map(|t| (t.key.clone(), t.row.clone(), t.existed)).collect();
        assert_eq!(
            found,
            vec![
                (json!({"id": 1}), Some(row(1, "b")), false),
                (json!({"id": 2}), None, true),
                (json!({"id": 3}), None, true),
                (json!({"id": 4}), Some(row(4, "m")), false),
                // Nothing before, nothing after: the run leaves it alone.
                (json!({"id": 5}), None, false),
                (json!({"id": 6}), Some(row(6, "q")), true),
                (json!({"id": 7}), Some(row(7, "p")), true),
            ]
        );
    }

    /// What a restore in place diffs against: each key's row at the head
    /// per table with a key, none for a table a truncate made unknowable,
    /// and tables the changes do not name left out.
    #[test]
    fn rows_at_head_follow_each_key_and_give_up_on_truncated_tables() {
        let tables = HashMap::from([
            (qualified("public", "t"), vec!["id".to_owned()]),
            (qualified("public", "gone"), vec!["id".to_owned()]),
        ]);
        let mut changes = vec![
            change(1, "insert", Value::Null, json!({"id": 1, "v": "a"})),
            change(2, "update", json!({"id": 1, "v": "a"}), json!({"id": 1, "v": "b"})),
            change(3, "delete", json!({"id": 2, "v": "z"}), Value::Null),
            change(4, "insert", Value::Null, json!({"id": 9})),
        ];
        changes[3].table = "gone".into();
        changes.push(change(5, "truncate", Value::Null, Value::Null));
        changes[4].table = "gone".into();
        changes.push(change(6, "insert", Value::Null, json!({"id": 1})));
        changes[5].table = "untracked".into();
        let heads = rows_at_head(&changes, &tables);
        assert_eq!(
            heads,
            json!({qualified("public", "t"): [
                {"key": {"id": 1}, "head": {"id": 1, "v": "b"}},
                {"key": {"id": 2}, "head": null},
            ]})
        );
    }
}
