//! The prepared template every new tenant database is copied from, so no
//! tenant ever pays for `initdb`.
//!
//! The template is a closed, checkpointed PGlite root under
//! `<data-dir>/template`. A new tenant is a copy of it made under a hidden
//! name and renamed into place, so a crash mid-copy never leaves a
//! half-made tenant behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::database::{Session, TenantDb};
use super::settings::EngineSettings;
use model::migrations::Migrations;
use crate::error::{Error, Result};

/// Bumped whenever what a template contains changes; an older template on
/// disk is rebuilt (existing tenants are not touched).
const TEMPLATE_VERSION: &str = "tidelake-template-10 capture-9 pglite-oxide-0.5.1";
const MARKER: &str = ".tidelake-template";
const LOCK_FILE: &str = ".pglite-oxide.lock";

/// Make sure a current template exists at `dir`, building it if needed:
/// with the deployment's `migrations` applied, so a new tenant starts at
/// the latest (a migration that fails leaves the template at the version
/// before it; tenants then apply the rest when they open, and say why
/// they cannot).
pub fn prepare(dir: &Path, settings: &EngineSettings, migrations: Option<&Migrations>) -> Result<()> {
    let marker = dir.join(MARKER);
    let version = match migrations {
        Some(set) => format!("{TEMPLATE_VERSION}\nmigrations {}", set.digest()),
        None => TEMPLATE_VERSION.to_owned(),
    };
    if fs::read_to_string(&marker).is_ok_and(|v| v.trim() == version) {
        return Ok(());
    }
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| Error::io("remove stale template", dir, e))?;
    }
    let building = dir.with_extension("building");
    if building.exists() {
        fs::remove_dir_all(&building).map_err(|e| Error::io("remove", &building, e))?;
    }
    let mut db = TenantDb::open(&building, settings, Session::Owner)?;
    if let Some(set) = migrations {
        let status = db.migrate(set, false)?;
        match &status.failed {
            None => tracing::info!(version = status.version, "the template is at the latest migration"),
            Some(failed) => tracing::error!(migration = %failed.name, code = %failed.code, error = %failed.message,
                version = status.version, "a migration failed in the template; new tenants start at the version before it"),
        }
    }
    db.close()?;
    fs::write(building.join(MARKER), version)
        .map_err(|e| Error::io("write", &building, e))?;
    fs::rename(&building, dir).map_err(|e| Error::io("install template", dir, e))?;
    Ok(())
}

/// Create the tenant root `root` as a copy of the template, unless it exists.
pub fn instantiate(template: &Path, root: &Path) -> Result<()> {
    if root.exists() {
        return Ok(());
    }
    let staging = crate::layout::creating(root);
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| Error::io("remove", &staging, e))?;
    }
    copy_tree(template, &staging).map_err(|e| Error::io("copy template to", &staging, e))?;
    let _ = fs::remove_file(staging.join(MARKER));
    fs::rename(&staging, root).map_err(|e| Error::io("create tenant", root, e))?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == LOCK_FILE {
            continue;
        }
        let target: PathBuf = to.join(&name);
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if file_type.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else {
            // Over half of a fresh cluster is zero pages (most of its WAL
            // segment): holes halve what creating a tenant writes.
            crate::files::copy_sparse(&entry.path(), &target)?;
        }
    }
    Ok(())
}


/// Spare tenant roots copied from the template ahead of need, so creating a
/// tenant is a rename rather than a copy (a copy writes ~10 MB, which the
/// kernel may throttle behind other writeback).
pub struct Spares {
    dir: PathBuf,
    template: PathBuf,
    target: usize,
    wanted: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
}

const SPARE_PREFIX: &str = "spare-";

impl Spares {
    /// Spares made from an older template must not be handed out, so the
    /// pool starts empty on every start-up.
    pub fn new(dir: PathBuf, template: PathBuf, target: usize) -> Self {
        let _ = fs::remove_dir_all(&dir);
        Self {
            dir,
            template,
            target,
            wanted: std::sync::Mutex::new(true),
            wake: std::sync::Condvar::new(),
        }
    }

    /// Move a spare into place as `root`; false if none is ready.
    pub fn take(&self, root: &Path) -> bool {
        let taken = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(SPARE_PREFIX)))
            // Another tenant may take the same spare first: then try the next.
            .any(|spare| fs::rename(spare.path(), root).is_ok());
        *self.wanted.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.wake.notify_one();
        taken
    }

    /// Keep `target` spares ready; runs on its own thread for the process's life.
    pub fn replenish_forever(&self) {
        let mut made: u64 = 0;
        loop {
            {
                let mut wanted = self.wanted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                while !*wanted {
                    wanted = self.wake.wait(wanted).unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                *wanted = false;
            }
            if fs::create_dir_all(&self.dir).is_err() {
                continue;
            }
            let count = fs::read_dir(&self.dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(SPARE_PREFIX)))
                .count();
            for _ in count..self.target {
                made += 1;
                let spare = self.dir.join(format!("{SPARE_PREFIX}{}-{made}", std::process::id()));
                if let Err(err) = instantiate(&self.template, &spare) {
                    tracing::warn!(error = %err, "could not prepare a spare tenant");
                    break;
                }
            }
        }
    }
}
