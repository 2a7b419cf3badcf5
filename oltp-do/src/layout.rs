//! A tenant's place on local disk, and the sweep that finishes or undoes
//! what a crash interrupted. Every name below `tenants/` is made here:
//!
//! | path | what |
//! |---|---|
//! | `<tenant>/` | the tenant's PGlite root |
//! | `<tenant>/closed-head-lsn` | its newest change LSN, written at a clean close, removed when it opens |
//! | `<tenant>.cold` | a cold tenant: the manifest of the archive it is kept in |
//! | `<tenant>.cold-writing` | that manifest being written |
//! | `<tenant>.migrations` | where it stood with the deployment's migrations when it last opened (kept while it is cold) |
//! | `<tenant>.migrations-hold` | a restored tenant, not migrated when it opens until `migrate up` names it |
//! | `.creating-<tenant>/` | a new tenant being copied from the template |
//! | `.unpacking-<name>/` | an archive being unpacked (a wake from cold, a restore) |
//! | `.restoring-<tenant>/` | a restore's new state being built |
//! | `.replaced-<tenant>/` | the state a restore in place moved aside |
//! | `.removing-<tenant>/` | a tenant gone cold, being removed |
//!
//! Each step is written aside and renamed into place, so a crash leaves at
//! most one of the hidden names behind; [`recover`] clears them at start.

use std::path::{Path, PathBuf};

/// Written at a clean close: the head LSN the database directory holds.
pub const CLOSED_HEAD_FILE: &str = "closed-head-lsn";

const CREATING: &str = ".creating-";
const UNPACKING: &str = ".unpacking-";
const RESTORING: &str = ".restoring-";
const REPLACED: &str = ".replaced-";
const REMOVING: &str = ".removing-";
const COLD: &str = "cold";
const COLD_WRITING: &str = "cold-writing";
const MIGRATIONS: &str = "migrations";
const MIGRATIONS_HOLD: &str = "migrations-hold";

/// The marker a cold tenant leaves on local disk.
pub fn cold_marker(root: &Path) -> PathBuf {
    root.with_extension(COLD)
}

/// Where the tenant stood with the deployment's migrations when it last
/// opened (JSON), beside its root so it outlives the root going cold.
pub fn migrations_status(root: &Path) -> PathBuf {
    root.with_extension(MIGRATIONS)
}

/// Beside a restored tenant's root: it keeps the schema of the instant
/// restored when it opens (not migrated) until `migrate up` names it.
pub fn migrations_hold(root: &Path) -> PathBuf {
    root.with_extension(MIGRATIONS_HOLD)
}

/// The cold marker while it is written.
pub fn cold_marker_writing(root: &Path) -> PathBuf {
    root.with_extension(COLD_WRITING)
}

/// The tenant id a cold marker's file name holds, if it is one.
pub fn cold_tenant(file_name: &str) -> Option<&str> {
    file_name.strip_suffix(COLD).and_then(|n| n.strip_suffix('.'))
}

fn beside(path: &Path, prefix: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.parent().unwrap_or(Path::new(".")).join(format!("{prefix}{name}"))
}

/// Where a new tenant at `root` is copied before it is renamed into place.
pub fn creating(root: &Path) -> PathBuf {
    beside(root, CREATING)
}

/// Where an archive for `into` is unpacked before it is renamed into place.
pub fn unpacking(into: &Path) -> PathBuf {
    beside(into, UNPACKING)
}

/// Where a restore builds the new state of the tenant at `root`.
pub fn restoring(root: &Path) -> PathBuf {
    beside(root, RESTORING)
}

/// Where a restore in place moves the state it replaces.
pub fn replaced(root: &Path) -> PathBuf {
    beside(root, REPLACED)
}

/// Where a tenant gone cold is moved before it is removed.
pub fn removing(root: &Path) -> PathBuf {
    beside(root, REMOVING)
}

/// The head a database directory recorded at its clean close (None: open,
/// or not closed cleanly).
pub fn closed_head(root: &Path) -> Option<u64> {
    std::fs::read_to_string(root.join(CLOSED_HEAD_FILE)).ok()?.trim().parse().ok()
}

/// At start: clear what interrupted work left in `tenants_dir`. Half-made
/// tenants, unpacked archives, a restore's unfinished state, a cold
/// tenant's half-removed directory and a half-written cold marker are
/// removed (each was only ever a copy, or its move already done); a tenant
/// a restore had moved aside, but not yet replaced, comes back.
pub fn recover(tenants_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(tenants_dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if [CREATING, UNPACKING, RESTORING, REMOVING].iter().any(|p| name.starts_with(p)) {
            if let Err(err) = std::fs::remove_dir_all(&path) {
                tracing::error!(path = %path.display(), error = %err, "could not remove what interrupted work left");
            }
        } else if name.ends_with(&format!(".{COLD_WRITING}")) {
            let _ = std::fs::remove_file(&path);
        } else if let Some(tenant) = name.strip_prefix(REPLACED) {
            let root = tenants_dir.join(tenant);
            let outcome = if root.exists() { std::fs::remove_dir_all(&path) } else { std::fs::rename(&path, &root) };
            match outcome {
                Ok(()) => tracing::warn!(tenant, "finished a restore interrupted by a crash"),
                Err(err) => tracing::error!(tenant, error = %err, "could not recover from an interrupted restore"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_at_any_step_leaves_nothing_that_start_does_not_clear() {
        let dir = tempfile::tempdir().unwrap();
        let tenants = dir.path();
        let mk = |p: PathBuf| {
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("PG_VERSION"), "17").unwrap();
            p
        };
        let root = |t: &str| tenants.join(t);
        // Leftovers of every kind of interrupted work.
        mk(creating(&root("new")));
        mk(unpacking(&root("waking")));
        mk(restoring(&root("branch")));
        mk(removing(&root("gone-cold")));
        std::fs::write(cold_marker(&root("gone-cold")), "{}").unwrap();
        mk(root("demoting"));
        std::fs::write(cold_marker_writing(&root("demoting")), "{").unwrap();
        // A restore in place that had moved the old state aside only.
        mk(replaced(&root("moved-aside")));
        // One that had moved the new state in too.
        mk(replaced(&root("restored")));
        mk(root("restored"));
        std::fs::write(root("restored").join("new"), "").unwrap();

        recover(tenants);
        let mut left: Vec<String> =
            std::fs::read_dir(tenants).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["demoting", "gone-cold.cold", "moved-aside", "restored"]);
        assert!(root("restored").join("new").exists(), "the restored state is kept");
        assert_eq!(cold_tenant("gone-cold.cold"), Some("gone-cold"));
        assert_eq!(cold_tenant("gone-cold.cold-writing"), None);
    }
}
