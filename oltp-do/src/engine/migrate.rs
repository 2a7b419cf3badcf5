//! Bringing a tenant to the deployment's latest migration (`--migrations`):
//! each pending migration in its own transaction, in the tenant's session
//! (the tenant owns what it makes, and the change capture sees its DDL as
//! any other), recorded in the same transaction — tidelake's layout in
//! `tidelake.migrations` (the tenant may read, add and remove rows, not
//! change them), Drizzle's in `drizzle.__drizzle_migrations` as drizzle-orm
//! records them. A migration that fails is rolled back and leaves the
//! tenant at the version before it. Down migrations (tidelake's layout
//! only: Drizzle Kit writes none) undo applied ones, newest first, each in
//! its own transaction with its record's removal.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};

use model::migrations::{Layout, Migration, Migrations};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::database::TenantDb;
use crate::error::{Error, Result};
use crate::protocol::{BatchRequest, RowMode, Statement};

/// Where a tenant stands with the deployment's migrations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// The newest version applied (0: none).
    pub version: i64,
    /// The deployment's newest.
    pub latest: i64,
    /// Applied when the tenant last opened, oldest first.
    #[serde(default)]
    pub applied: Vec<String>,
    /// The migration that failed, leaving the tenant at `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<FailedMigration>,
    /// Held where a restore put it: not migrated when it opens, until
    /// `migrate up` names it (a restore gives the schema of its instant).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Migrations the tenant applied whose files have changed since (by
    /// their SHA-256): not run again, only said.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedMigration {
    pub version: i64,
    pub name: String,
    /// PostgreSQL's SQLSTATE.
    pub code: String,
    pub message: String,
}

impl MigrationStatus {
    /// The error a client's request gets while a migration has failed.
    pub fn refusal(&self, tenant: &str) -> Option<Error> {
        let failed = self.failed.as_ref()?;
        Some(Error::MigrationFailed(format!(
            "tenant {tenant} is at migration {} of {}: migration {} failed with SQLSTATE {}: {}",
            self.version, self.latest, failed.name, failed.code, failed.message
        )))
    }
}

/// tidelake's record of applied migrations, in the server's `tidelake`
/// schema (the change capture skips it). The tenant's session applies and
/// undoes migrations, so it may add and remove rows, not change them —
/// what a tenant's own SQL could do with that is only mislead its own
/// migrations, as dropping its own tables would.
const RECORD_SQL: &str = "CREATE TABLE IF NOT EXISTS tidelake.migrations ( \
        version bigint PRIMARY KEY, name text NOT NULL, hash text NOT NULL, \
        applied_at timestamptz NOT NULL DEFAULT clock_timestamp()); \
    REVOKE ALL ON tidelake.migrations FROM PUBLIC; \
    GRANT SELECT, INSERT, DELETE ON tidelake.migrations TO tenant";

/// drizzle-orm's own table, as its migrator creates it.
const DRIZZLE_SQL: &str = "CREATE SCHEMA IF NOT EXISTS drizzle; \
    CREATE TABLE IF NOT EXISTS drizzle.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)";

/// What `migrate down` did to a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Undone {
    /// Where it stands now (held: it is not migrated up when it opens).
    pub status: MigrationStatus,
    /// The migrations undone, newest first.
    pub undone: Vec<String>,
    /// The down migration that failed (rolled back: the tenant stays at
    /// the version before it, and serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<FailedMigration>,
}

impl TenantDb {
    /// Undo every applied migration newer than `to`, newest first, each by
    /// its down migration and in its own transaction with its record's
    /// removal; stopping at the first that fails. Refused before anything
    /// runs if one of them has no down migration (or is not in `set`).
    pub fn migrate_down(&mut self, set: &Migrations, to: i64) -> Result<Undone> {
        if set.layout != Layout::Tidelake {
            return Err(Error::bad_request(
                "no_down_migrations",
                "Drizzle Kit writes no down migrations: undo a Drizzle migration with a new one",
            ));
        }
        let applied = self.tidelake_record()?;
        let mut undo = Vec::new();
        for (&version, _) in applied.range((Excluded(to), Unbounded)).rev() {
            let migration = set.list.iter().find(|m| m.version == version).ok_or_else(|| {
                Error::bad_request(
                    "no_down_migration",
                    format!("migration {version} was applied but is not in the migrations folder: nothing says how to undo it"),
                )
            })?;
            let down = migration.down.as_ref().ok_or_else(|| {
                Error::bad_request("no_down_migration", format!("migration {} has no down migration ({0}.down.sql)", migration.name))
            })?;
            undo.push((migration, down));
        }
        let mut undone = Undone {
            status: MigrationStatus {
                version: applied.keys().next_back().copied().unwrap_or(0),
                latest: set.latest(),
                applied: Vec::new(),
                failed: None,
                held: true,
                changed: Vec::new(),
            },
            undone: Vec::new(),
            failed: None,
        };
        for (migration, down) in undo {
            let statements = down
                .iter()
                .map(|sql| Statement { sql: sql.clone(), params: Vec::new() })
                .chain([Statement {
                    sql: "DELETE FROM tidelake.migrations WHERE version = $1".to_owned(),
                    params: vec![json!(migration.version)],
                }])
                .collect();
            match self.as_tenant(|db| db.transaction(&BatchRequest::of(statements)).map(drop)) {
                Ok(()) => {
                    undone.undone.push(migration.name.clone());
                    undone.status.version = applied.range(..migration.version).next_back().map_or(0, |(v, _)| *v);
                }
                Err(Error::Database(err)) => {
                    undone.failed = Some(FailedMigration {
                        version: migration.version,
                        name: format!("{}.down", migration.name),
                        code: err.code.clone(),
                        message: err.message.clone(),
                    });
                    break;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(undone)
    }

    /// Apply every migration of `set` the tenant has not had, oldest
    /// first, stopping at the first that fails (its error is in the
    /// status; `Err` is for our side failing); with `hold`, apply none and
    /// only say where the tenant stands.
    pub fn migrate(&mut self, set: &Migrations, hold: bool) -> Result<MigrationStatus> {
        let applied = match set.layout {
            Layout::Tidelake => Applied::Versions(self.tidelake_record()?),
            Layout::Drizzle => {
                let rows = self.as_tenant(|db| {
                    db.simple(DRIZZLE_SQL)?;
                    db.exec(
                        "SELECT coalesce(json_object_agg(created_at, hash) FILTER (WHERE created_at IS NOT NULL), '{}')::text AS v \
                         FROM drizzle.__drizzle_migrations",
                        &[],
                        RowMode::Object,
                    )
                })?;
                Applied::Since(recorded_hashes(&rows, "drizzle.__drizzle_migrations")?)
            }
        };
        // Applied, and their files changed since: said, not run again.
        let changed: Vec<String> = set
            .list
            .iter()
            .filter(|m| applied.recorded_hash(m).is_some_and(|hash| hash != m.hash))
            .map(|m| m.name.clone())
            .collect();
        if !changed.is_empty() {
            tracing::warn!(changed = ?changed, "migrations changed since the tenant applied them (they are not run again)");
        }
        let mut status = MigrationStatus {
            version: set.list.iter().filter(|m| applied.has(m)).map(|m| m.version).max().unwrap_or(0),
            latest: set.latest(),
            applied: Vec::new(),
            failed: None,
            held: hold,
            changed,
        };
        for migration in set.list.iter().filter(|m| !hold && !applied.has(m)) {
            match self.as_tenant(|db| db.apply(set.layout, migration)) {
                Ok(()) => {
                    status.version = status.version.max(migration.version);
                    status.applied.push(migration.name.clone());
                }
                Err(Error::Database(err)) => {
                    status.failed = Some(FailedMigration {
                        version: migration.version,
                        name: migration.name.clone(),
                        code: err.code.clone(),
                        message: err.message.clone(),
                    });
                    break;
                }
                Err(err) => return Err(err),
            }
        }
        // (Each migration ran as a client's transaction does: a base backup
        // is due after any that changed the schema.)
        Ok(status)
    }

    /// tidelake's record (made where missing, its grants kept current):
    /// each applied version with its file's hash.
    fn tidelake_record(&mut self) -> Result<BTreeMap<i64, String>> {
        self.as_owner(|db| db.simple(RECORD_SQL))?;
        let rows = self.as_tenant(|db| {
            db.exec("SELECT coalesce(json_object_agg(version, hash), '{}')::text AS v FROM tidelake.migrations", &[], RowMode::Object)
        })?;
        recorded_hashes(&rows, "tidelake.migrations")
    }

    /// One migration and its record, in one transaction, as a client's
    /// `POST transaction` runs (so the change capture follows its schema
    /// changes, and a base backup follows them).
    fn apply(&mut self, layout: Layout, migration: &Migration) -> Result<()> {
        let (sql, params): (&str, Vec<Value>) = match layout {
            Layout::Tidelake => (
                "INSERT INTO tidelake.migrations (version, name, hash) VALUES ($1, $2, $3)",
                vec![json!(migration.version), json!(migration.name), json!(migration.hash)],
            ),
            Layout::Drizzle => (
                "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ($1, $2)",
                vec![json!(migration.hash), json!(migration.when)],
            ),
        };
        let statements = migration
            .up
            .iter()
            .map(|sql| Statement { sql: sql.clone(), params: Vec::new() })
            .chain([Statement { sql: sql.to_owned(), params }])
            .collect();
        self.transaction(&BatchRequest::of(statements)).map(drop)
    }
}

/// What a tenant has had, each with the hash recorded: tidelake's by
/// version; Drizzle's by `created_at` — every migration whose `when` is
/// after the newest is pending, as drizzle-orm has it.
enum Applied {
    Versions(BTreeMap<i64, String>),
    Since(BTreeMap<i64, String>),
}

impl Applied {
    fn has(&self, m: &Migration) -> bool {
        match self {
            Applied::Versions(versions) => versions.contains_key(&m.version),
            Applied::Since(recorded) => {
                recorded.keys().next_back().is_some_and(|last| m.when.is_some_and(|when| when <= *last))
            }
        }
    }

    /// The hash recorded for `m`, if it was applied (and recorded by its key).
    fn recorded_hash(&self, m: &Migration) -> Option<&str> {
        match self {
            Applied::Versions(versions) => versions.get(&m.version),
            Applied::Since(recorded) => recorded.get(&m.when?),
        }
        .map(String::as_str)
    }
}

/// A record's `{key: hash}` object (keys are numbers as text).
fn recorded_hashes(rows: &[Value], what: &str) -> Result<BTreeMap<i64, String>> {
    let text = rows.first().and_then(|r| r["v"].as_str()).unwrap_or("{}");
    let map: BTreeMap<String, String> =
        serde_json::from_str(text).map_err(|source| Error::Malformed { what: what.into(), source })?;
    Ok(map.into_iter().filter_map(|(key, hash)| Some((key.parse().ok()?, hash))).collect())
}
