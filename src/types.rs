//! `tidelake types`: TypeScript or Rust types for a tenant's tables, from
//! its live schema on a running server (`--tenant`), or from the
//! deployment's migrations applied to a scratch database — the schema every
//! new tenant starts with (see `model::types`).

use anyhow::{Context, Result, bail};
use model::types::{Lang, generate};

use crate::settings::Settings;

/// A tenant's schema, from the server.
pub async fn of_tenant(server: &crate::Server, tenant: &str, lang: Lang) -> Result<String> {
    let body = server.get_json(&format!("/t/{tenant}/schema")).await?;
    let source = format!("tenant {tenant}'s schema (fingerprint {})", body["fingerprint"].as_str().unwrap_or("?"));
    generate(&body["tables"], lang, &source).map_err(anyhow::Error::msg)
}

/// The schema the deployment's migrations make, on a scratch database.
pub fn of_migrations(settings: &Settings, lang: Lang) -> Result<String> {
    let (Some(dir), Some(set)) = (settings.migrations_dir.as_ref(), settings.oltp.migrations.as_ref()) else {
        bail!("say whose types: --tenant <id> (a running server's tenant), or --migrations DIR (the schema new tenants start with)");
    };
    let mut scratch = oltp_do::scratch::Scratch::new(&settings.oltp.engine).context("make a scratch database")?;
    let status = scratch.migrate(set)?;
    if let Some(failed) = &status.failed {
        bail!("migration {} fails on a new database ({} {}): `tidelake migrate check` says more", failed.name, failed.code, failed.message);
    }
    let schema = scratch.schema()?;
    let source = format!("the migrations in {} (version {})", dir.display(), status.version);
    generate(&schema["tables"], lang, &source).map_err(anyhow::Error::msg)
}
