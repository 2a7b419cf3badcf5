//! Reading a deployment's migrations folder (`--migrations DIR`): Drizzle
//! Kit's layout when it has `meta/_journal.json`, else tidelake's
//! `NNNN_name.sql` files (see `model::migrations`).

use std::collections::BTreeMap;
use std::path::Path;

use model::migrations::Migrations;

use crate::error::{Error, Result};

/// The migrations in `dir`.
pub fn load(dir: &Path) -> Result<Migrations> {
    let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e));
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("read the migrations folder", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read the migrations folder", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".sql") && entry.path().is_file() {
            files.insert(name, read(&entry.path())?);
        }
    }
    let journal = dir.join("meta").join("_journal.json");
    let set = if journal.is_file() { Migrations::drizzle(&read(&journal)?, &files) } else { Migrations::tidelake(&files) };
    set.map_err(|why| Error::bad_request("invalid_migrations", format!("the migrations in {}: {why}", dir.display())))
}
