//! Every bundled extension in the shared runtime (a tidelake patch of
//! pglite-oxide).
//!
//! Upstream installs an extension into one database's own runtime when the
//! host asks for it (`Pglite::enable_extension`). Here the extension files
//! (control, scripts, side modules) are unpacked once into the shared runtime
//! every database overlays, so plain `CREATE EXTENSION` finds them in any
//! database, and their side modules are seeded into the process's module
//! cache so that `dlopen` finds their precompiled code.
//!
//! The host says which extensions a non-superuser may create: their control
//! files get `trusted = true`, so PostgreSQL runs their scripts as the
//! bootstrap superuser on a role's behalf, as it does for upstream's trusted
//! extensions. The others keep upstream's control file.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use super::assets;
use super::base::{CacheLock, shared_runtime_root, unpack_bundled_extension};
use super::extensions::ALL;
use super::postgres_mod::PostgresMod;

/// What the shared runtime was last prepared with (see `MARKER`).
const MARKER: &str = ".shared-extensions";

/// Unpack every bundled extension into the shared runtime (once per runtime
/// and trusted set; other processes wait for the first), mark the
/// extensions named in `trusted` as creatable by any role with CREATE on the
/// database, and seed every side module into this process's module cache.
/// Returns the SQL names of the extensions now installed.
pub fn install_shared_extensions(trusted: &[&str]) -> Result<Vec<&'static str>> {
    let runtime_root = shared_runtime_root()?;
    let mut trusted: Vec<&str> = trusted.to_vec();
    trusted.sort_unstable();
    trusted.dedup();
    let wanted = format!("v1 trusted={}\n", trusted.join(","));
    {
        let _lock = CacheLock::acquire(&runtime_root.join(".locks").join("shared-extensions.lock"))?;
        let marker = runtime_root.join(MARKER);
        if fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
            for extension in ALL {
                let bytes = assets::extension_archive(extension.sql_name())
                    .with_context(|| format!("extension '{}' is not bundled", extension.sql_name()))?;
                unpack_bundled_extension(&runtime_root, extension.sql_name(), bytes)?;
            }
            for name in &trusted {
                mark_trusted(&runtime_root, name)?;
            }
            fs::write(&marker, &wanted).with_context(|| format!("write {}", marker.display()))?;
        }
    }
    PostgresMod::seed_installed_extension_modules(&runtime_root)?;
    Ok(ALL.iter().map(|extension| extension.sql_name()).collect())
}

/// Add `trusted = true` to extension `name`'s control file unless it says
/// whether it is trusted already. Written aside and renamed into place, so
/// a database reading it sees the old file or the new one.
fn mark_trusted(runtime_root: &Path, name: &str) -> Result<()> {
    let control = runtime_root.join("share/postgresql/extension").join(format!("{name}.control"));
    let text = fs::read_to_string(&control)
        .with_context(|| format!("extension '{name}' has no control file at {}", control.display()))?;
    if text.lines().any(|line| line.trim_start().starts_with("trusted")) {
        return Ok(());
    }
    let mut marked = text;
    if !marked.ends_with('\n') {
        marked.push('\n');
    }
    marked.push_str("trusted = true\n");
    let aside = control.with_extension("control.new");
    fs::write(&aside, marked).with_context(|| format!("write {}", aside.display()))?;
    fs::rename(&aside, &control).with_context(|| format!("replace {}", control.display()))?;
    Ok(())
}
