//! Operator access to one tenant's database as its owner (the bootstrap
//! superuser), with the server stopped: for repairs no tenant may make
//! (`tidelake maintain`). Whoever can run it can read the data directory
//! anyway; tenant SQL never gets here.

use std::path::Path;


use crate::config::OltpConfig;
use crate::engine::{Session, TenantDb};
use crate::error::{Error, Result};
use crate::protocol::QueryResult;
use model::TenantId;

/// Run `sql` (a script) in `tenant`'s database as its owner, with capture
/// on as the server runs it. The database must be on local disk and not
/// open elsewhere (its directory lock refuses a second opener).
pub fn run_as_owner(config: &OltpConfig, tenant: &TenantId, sql: &str) -> Result<Vec<QueryResult>> {
    let root = config.tenants_dir().join(tenant.as_str());
    if !root.is_dir() {
        return Err(Error::NotFound(format!(
            "tenant {tenant} is not on local disk at {} (a cold tenant is brought back by its next request)",
            root.display()
        )));
    }
    crate::engine::runtime::preload()?;
    let mut db = TenantDb::open(&root, &config.engine, Session::Owner)?;
    let results = db.owner_script(sql);
    db.close()?;
    remove_closed_head(&root);
    results
}

/// The head recorded at the last clean close may no longer be the head.
fn remove_closed_head(root: &Path) {
    let _ = std::fs::remove_file(root.join(crate::layout::CLOSED_HEAD_FILE));
}
