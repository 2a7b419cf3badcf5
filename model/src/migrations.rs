//! A deployment's migrations, as read from its folder (no I/O here: the
//! server reads the files, the edge may bundle them): tidelake's own
//! layout of `NNNN_name.sql` files, each with an optional
//! `NNNN_name.down.sql`, or a folder as Drizzle Kit writes it
//! (`meta/_journal.json` and one `<tag>.sql` per entry, statements
//! separated by `--> statement-breakpoint`).
//!
//! Each migration is applied in its own transaction and recorded in the
//! tenant: tidelake's own in `tidelake.migrations`, Drizzle's in
//! `drizzle.__drizzle_migrations` exactly as drizzle-orm's migrator records
//! them (the SHA-256 of the file's text, and the journal entry's `when`),
//! so either can continue what the other began.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How the folder is laid out, and so how migrations are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `NNNN_name.sql` (+ `NNNN_name.down.sql`), recorded in `tidelake.migrations`.
    Tidelake,
    /// Drizzle Kit's output, recorded in `drizzle.__drizzle_migrations`.
    Drizzle,
}

/// One migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Its number: `NNNN` of tidelake's files; a Drizzle journal entry's
    /// `idx` + 1 (so the first is 1, as the files' `0000_` is the first).
    pub version: i64,
    /// The file's name without `.sql` (`0003_add_orders`; Drizzle's tag).
    pub name: String,
    /// The statements, in order (tidelake's: the file split at its
    /// top-level semicolons, as psql would).
    pub up: Vec<String>,
    /// The down migration's statements, where one exists.
    pub down: Option<Vec<String>>,
    /// SHA-256 of the up file's whole text, hex: drizzle-orm's `hash`.
    pub hash: String,
    /// A Drizzle journal entry's `when` (ms since the epoch): drizzle-orm's
    /// `created_at`, by which it tells applied migrations from pending ones.
    pub when: Option<i64>,
}

/// A deployment's migrations, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrations {
    pub layout: Layout,
    pub list: Vec<Migration>,
}

/// What Drizzle Kit separates a file's statements with.
pub const DRIZZLE_BREAKPOINT: &str = "--> statement-breakpoint";

#[derive(Deserialize)]
struct Journal {
    dialect: Option<String>,
    entries: Vec<JournalEntry>,
}

#[derive(Deserialize)]
struct JournalEntry {
    idx: i64,
    when: i64,
    tag: String,
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl Migrations {
    /// tidelake's layout, from the folder's `.sql` files (name → text).
    /// Every `.sql` file must be `NNNN_name.sql` or `NNNN_name.down.sql`;
    /// versions are unique, and a down migration has its up migration.
    pub fn tidelake(files: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut ups: BTreeMap<i64, (String, String)> = BTreeMap::new();
        let mut downs: BTreeMap<i64, (String, String)> = BTreeMap::new();
        for (file, text) in files {
            let Some(stem) = file.strip_suffix(".sql") else { continue };
            let (stem, down) = match stem.strip_suffix(".down") {
                Some(stem) => (stem, true),
                None => (stem, false),
            };
            let version = stem
                .split_once('_')
                .filter(|(digits, name)| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty())
                .and_then(|(digits, _)| digits.parse::<i64>().ok())
                .ok_or_else(|| format!("{file}: a migration is named NNNN_name.sql (or NNNN_name.down.sql), NNNN its number"))?;
            let into = if down { &mut downs } else { &mut ups };
            if let Some((other, _)) = into.insert(version, (stem.to_owned(), text.clone())) {
                return Err(format!("{file} and {other}.sql have the same number {version}"));
            }
        }
        if let Some((version, (name, _))) = downs.iter().find(|(v, _)| !ups.contains_key(v)) {
            return Err(format!("{name}.down.sql has no up migration {version}"));
        }
        let list = ups
            .into_iter()
            .map(|(version, (name, text))| {
                let down = downs.get(&version).map(|(down_name, down)| {
                    (down_name == &name).then(|| crate::sql::split(down).into_iter().map(str::to_owned).collect()).ok_or_else(|| {
                        format!("{down_name}.down.sql is named otherwise than its up migration {name}.sql")
                    })
                });
                let up = crate::sql::split(&text).into_iter().map(str::to_owned).collect();
                Ok(Migration { version, hash: sha256_hex(&text), name, up, down: down.transpose()?, when: None })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self { layout: Layout::Tidelake, list })
    }

    /// Drizzle Kit's layout: `meta/_journal.json`'s text, and the folder's
    /// `.sql` files (name → text). Every journal entry needs its file.
    pub fn drizzle(journal: &str, files: &BTreeMap<String, String>) -> Result<Self, String> {
        let journal: Journal =
            serde_json::from_str(journal).map_err(|e| format!("meta/_journal.json is not Drizzle Kit's journal: {e}"))?;
        if let Some(dialect) = journal.dialect.as_deref().filter(|d| *d != "postgresql") {
            return Err(format!("meta/_journal.json is for {dialect}, not PostgreSQL"));
        }
        let mut entries = journal.entries;
        entries.sort_by_key(|e| e.idx);
        let mut list = Vec::with_capacity(entries.len());
        for entry in entries {
            let file = format!("{}.sql", entry.tag);
            let text = files.get(&file).ok_or_else(|| format!("the journal names {file}, which the folder does not have"))?;
            let up = text.split(DRIZZLE_BREAKPOINT).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
            if list.last().is_some_and(|m: &Migration| m.when >= Some(entry.when)) {
                return Err(format!("{file}: its journal entry's `when` is not after the one before it"));
            }
            list.push(Migration {
                version: entry.idx + 1,
                name: entry.tag,
                up,
                down: None,
                hash: sha256_hex(text),
                when: Some(entry.when),
            });
        }
        Ok(Self { layout: Layout::Drizzle, list })
    }

    /// The newest version (0 with none).
    pub fn latest(&self) -> i64 {
        self.list.last().map_or(0, |m| m.version)
    }

    /// What identifies this set: a new template is made when it changes.
    pub fn digest(&self) -> String {
        let mut all = format!("{:?}", self.layout);
        for m in &self.list {
            all.push_str(&format!("\n{} {} {}", m.version, m.name, m.hash));
        }
        sha256_hex(&all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect()
    }

    #[test]
    fn tidelake_folders_pair_ups_and_downs_by_number() {
        let set = Migrations::tidelake(&files(&[
            ("0002_orders.sql", "CREATE TABLE orders (id int);"),
            ("0001_users.sql", "CREATE TABLE users (id int);"),
            ("0002_orders.down.sql", "DROP TABLE orders;"),
            ("README.md", "not a migration"),
        ]))
        .unwrap();
        assert_eq!(set.list.iter().map(|m| (m.version, m.name.as_str())).collect::<Vec<_>>(), [(1, "0001_users"), (2, "0002_orders")]);
        assert_eq!(set.list[1].down, Some(vec!["DROP TABLE orders".to_owned()]));
        assert_eq!(set.list[0].down, None);
        assert_eq!(set.latest(), 2);
        // SHA-256 of the text, as `sha256sum` prints it.
        assert_eq!(set.list[0].hash.len(), 64);
        for (bad, why) in [
            (&[("users.sql", "")][..], "NNNN_name"),
            (&[("0001_a.sql", ""), ("01_b.sql", "")][..], "same number"),
            (&[("0001_a.down.sql", "")][..], "no up migration"),
            (&[("0001_a.sql", ""), ("0001_b.down.sql", "")][..], "named otherwise"),
        ] {
            let err = Migrations::tidelake(&files(bad)).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn drizzle_folders_follow_the_journal() {
        let journal = r#"{"version": "7", "dialect": "postgresql", "entries": [
            {"idx": 1, "version": "7", "when": 1700000001000, "tag": "0001_orders", "breakpoints": true},
            {"idx": 0, "version": "7", "when": 1700000000000, "tag": "0000_users", "breakpoints": true}]}"#;
        let first = "CREATE TABLE \"users\" (\"id\" serial PRIMARY KEY);\n--> statement-breakpoint\nCREATE INDEX \"u\" ON \"users\" (\"id\");";
        let set = Migrations::drizzle(
            journal,
            &files(&[("0000_users.sql", first), ("0001_orders.sql", "CREATE TABLE \"orders\" (\"id\" int);")]),
        )
        .unwrap();
        assert_eq!(set.layout, Layout::Drizzle);
        assert_eq!(set.list[0].up, ["CREATE TABLE \"users\" (\"id\" serial PRIMARY KEY);", "CREATE INDEX \"u\" ON \"users\" (\"id\");"]);
        assert_eq!((set.list[0].version, set.list[0].when), (1, Some(1_700_000_000_000)));
        assert_eq!(set.list[1].name, "0001_orders");
        assert_eq!(set.list[0].hash, sha256_hex(first));
        assert!(Migrations::drizzle(journal, &files(&[("0000_users.sql", first)])).unwrap_err().contains("0001_orders.sql"));
        assert!(Migrations::drizzle(r#"{"dialect": "sqlite", "entries": []}"#, &files(&[])).unwrap_err().contains("sqlite"));
    }
}
