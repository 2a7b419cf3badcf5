//! Wiring between the tenant databases and the lake shipper: the change
//! source the shipper reads through, and the shipper's lag in `health` and
//! `/metrics`.

use std::sync::{Arc, Weak};

use catalog::Warehouse;
use lake::maintain::Maintainer;
use lake::{ChangePage, ChangeSource, Shipper, SourceError};
use oltp_do::tenants::restore::BoxFuture;
use oltp_do::tenants::{History, Reporter};
use oltp_do::{Error, TenantId, Tenants};
use model::{Change, EDGE_ORIGIN, SchemaVersion, TableAt};

use crate::edge_source::EdgeSource;
use serde_json::{Map, Value};

/// The consumer name the lake acknowledges changes under.
const CONSUMER: &str = "lake";

/// The tenants, as the shipper they own reads them (weakly, so the shipper
/// does not keep them alive).
pub struct TenantsSource(pub Weak<Tenants>);

impl TenantsSource {
    fn tenants(&self) -> Result<Arc<Tenants>, SourceError> {
        self.0.upgrade().ok_or_else(|| SourceError::failed("the server is shutting down"))
    }
}

fn tenant(name: &str) -> Result<TenantId, SourceError> {
    TenantId::parse(name).map_err(SourceError::failed)
}

fn failed(err: Error) -> SourceError {
    SourceError::failed(err)
}

impl ChangeSource for TenantsSource {
    fn take_committed(&self) -> Vec<String> {
        let Some(tenants) = self.0.upgrade() else { return Vec::new() };
        tenants.commits().take().into_iter().map(|t| t.to_string()).collect()
    }

    async fn wait_committed(&self) {
        match self.0.upgrade() {
            Some(tenants) => tenants.commits().wait().await,
            None => std::future::pending().await,
        }
    }

    fn tenants(&self) -> Vec<(String, Option<u64>)> {
        let Some(tenants) = self.0.upgrade() else { return Vec::new() };
        tenants
            .tenant_ids()
            .into_iter()
            .map(|t| {
                let head = tenants.closed_head(&t);
                (t.to_string(), head)
            })
            .collect()
    }

    async fn read(&self, name: &str, since: u64, limit: u64) -> Result<ChangePage, SourceError> {
        let t = tenant(name)?;
        let tenants = self.tenants()?;
        // Read before the changes: a schema change after it shows next time.
        let schema_epoch = tenants.feed(&t).schema_epoch();
        match tenants.read_changes_quietly(&t, since, limit).await {
            Ok(page) => Ok(ChangePage {
                changes: page.changes,
                head_lsn: page.head_lsn,
                schema_epoch,
            }),
            Err(Error::Gone(_)) => {
                let stats = tenants.log_stats(&t).await.map_err(failed)?;
                Err(SourceError::Trimmed { tail: stats.tail_lsn })
            }
            Err(err) => Err(failed(err)),
        }
    }

    async fn schema_versions(&self, name: &str) -> Result<Vec<SchemaVersion>, SourceError> {
        self.tenants()?.schema_versions_quietly(&tenant(name)?).await.map_err(failed)
    }

    async fn acknowledge(&self, name: &str, lsn: u64) -> Result<(), SourceError> {
        self.tenants()?.acknowledge_quietly(&tenant(name)?, CONSUMER, lsn).await.map_err(failed)
    }
}

pub struct LakeReporter {
    pub shipper: Arc<Shipper<TenantsSource>>,
    pub maintainer: Arc<Maintainer>,
}

impl Reporter for LakeReporter {
    fn tenant_status(&self, tenant: &TenantId) -> Map<String, Value> {
        let mut fields = Map::new();
        if let Some(mut status) = self.shipper.tenant_status(tenant.as_str()) {
            // Each table's files, snapshots and metadata size, as of its latest maintenance.
            status["tables"] = Value::Object(self.maintainer.tenant_tables(tenant.as_str()));
            fields.insert("lake".into(), status);
        }
        fields
    }
}

/// The lake as the tenants' history beyond their change logs, for restores
/// and bookmarks: of this server's tenants, and of the edge's.
pub struct LakeHistory {
    pub warehouse: Arc<Warehouse>,
    /// The running shipper knows what it shipped before the catalog says so.
    pub shipper: Option<Arc<Shipper<TenantsSource>>>,
    /// The edge whose tenants ship into the lake too, and their shipper.
    pub edge: Option<(Arc<EdgeSource>, Arc<Shipper<EdgeSource>>)>,
}

fn lake_error(err: lake::LakeError) -> Error {
    match err {
        lake::LakeError::NeedsOldRow(message) => Error::bad_request("replay_needs_old_row", message),
        err => Error::Engine(format!("lake: {err}")),
    }
}

impl LakeHistory {
    /// What the running shipper of `origin` has shipped of the tenant.
    fn shipped(&self, tenant: &str, origin: &str) -> u64 {
        let lag = match origin {
            EDGE_ORIGIN => self.edge.as_ref().and_then(|(_, shipper)| shipper.lag(tenant)),
            _ => self.shipper.as_ref().and_then(|s| s.lag(tenant)),
        };
        lag.map_or(0, |l| l.shipped_lsn)
    }
}

impl History for LakeHistory {
    fn changes<'a>(&'a self, tenant: &'a TenantId, after: u64, upto: u64) -> BoxFuture<'a, oltp_do::Result<Vec<Change>>> {
        Box::pin(async move { lake::history::changes(&self.warehouse, tenant.as_str(), after, upto).await.map_err(lake_error) })
    }

    fn lsn_at<'a>(&'a self, tenant: &'a TenantId, origin: &'a str, at_us: i64) -> BoxFuture<'a, oltp_do::Result<Option<u64>>> {
        Box::pin(async move {
            lake::history::lsn_at(&self.warehouse, tenant.as_str(), origin, at_us).await.map_err(lake_error)
        })
    }

    fn held_through<'a>(&'a self, tenant: &'a TenantId, origin: &'a str) -> BoxFuture<'a, oltp_do::Result<u64>> {
        Box::pin(async move {
            let recorded = lake::history::shipped_lsn(&self.warehouse, tenant.as_str(), origin).await.map_err(lake_error)?;
            Ok(self.shipped(tenant.as_str(), origin).max(recorded))
        })
    }

    fn grows(&self) -> bool {
        self.shipper.is_some()
    }

    /// The lake's word; for a tenant it has nothing of yet, the edge's (a
    /// tenant the edge has, whose history has not reached the lake yet).
    fn origin<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, oltp_do::Result<Option<String>>> {
        Box::pin(async move {
            if let Some(origin) = lake::history::origin(&self.warehouse, tenant.as_str()).await.map_err(lake_error)? {
                return Ok(Some(origin));
            }
            let Some((edge, _)) = &self.edge else { return Ok(None) };
            Ok(edge.has(tenant.as_str()).await.then(|| EDGE_ORIGIN.to_owned()))
        })
    }

    /// For an edge tenant, with the edge configured: its head as the edge
    /// answers now.
    fn head_of<'a>(&'a self, tenant: &'a TenantId, origin: &'a str) -> BoxFuture<'a, oltp_do::Result<Option<u64>>> {
        Box::pin(async move {
            let Some((edge, _)) = self.edge.as_ref().filter(|_| origin == EDGE_ORIGIN) else { return Ok(None) };
            let held = self.held_through(tenant, origin).await?;
            let head = edge.head(tenant.as_str(), held).await.map_err(|e| Error::Unavailable(format!("the edge: {e}")))?;
            Ok(Some(head))
        })
    }

    fn nudge(&self, tenant: &TenantId, origin: &str) {
        if let Some((edge, _)) = self.edge.as_ref().filter(|_| origin == EDGE_ORIGIN) {
            edge.mark(tenant.as_str());
        }
    }

    fn tables_at<'a>(
        &'a self,
        tenant: &'a TenantId,
        origin: &'a str,
        lsn: u64,
        at_us: Option<i64>,
    ) -> BoxFuture<'a, oltp_do::Result<Vec<TableAt>>> {
        Box::pin(async move {
            let at = lake::history::AsOf { lsn, at_us };
            lake::history::state_at(&self.warehouse, tenant.as_str(), origin, at).await.map_err(lake_error)
        })
    }
}
