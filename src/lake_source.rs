//! Wiring between the tenant databases and the lake shipper: the change
//! source the shipper reads through, and the shipper's lag in `health` and
//! `/metrics`.

use std::sync::Arc;

use lake::{ChangePage, ChangeSource, Shipper, SourceError};
use oltp_do::tenants::Reporter;
use oltp_do::{Error, TenantId, Tenants};
use serde_json::{Map, Value};

/// The consumer name the lake acknowledges changes under.
const CONSUMER: &str = "lake";

pub struct TenantsSource(pub Arc<Tenants>);

fn tenant(name: &str) -> Result<TenantId, SourceError> {
    TenantId::parse(name).map_err(|e| SourceError::Failed(e.to_string()))
}

fn failed(err: Error) -> SourceError {
    SourceError::Failed(err.to_string())
}

impl ChangeSource for TenantsSource {
    fn take_committed(&self) -> Vec<String> {
        self.0.commits().take().into_iter().map(|t| t.to_string()).collect()
    }

    async fn wait_committed(&self) {
        self.0.commits().wait().await
    }

    fn tenants(&self) -> Vec<(String, Option<u64>)> {
        self.0
            .tenant_ids()
            .into_iter()
            .map(|t| {
                let head = self.0.closed_head(&t);
                (t.to_string(), head)
            })
            .collect()
    }

    async fn read(&self, name: &str, since: u64, limit: u64) -> Result<ChangePage, SourceError> {
        let t = tenant(name)?;
        match self.0.read_changes(&t, since, limit).await {
            Ok(page) => Ok(ChangePage {
                changes: page.changes,
                head_lsn: page.head_lsn,
            }),
            Err(Error::Gone(_)) => {
                let stats = self.0.log_stats(&t).await.map_err(failed)?;
                Err(SourceError::Trimmed { tail: stats.tail_lsn })
            }
            Err(err) => Err(failed(err)),
        }
    }

    async fn schema_versions(&self, name: &str) -> Result<Vec<Value>, SourceError> {
        self.0.schema_versions(&tenant(name)?).await.map_err(failed)
    }

    async fn acknowledge(&self, name: &str, lsn: u64) -> Result<(), SourceError> {
        self.0.acknowledge_quietly(&tenant(name)?, CONSUMER, lsn).await.map_err(failed)
    }
}

pub struct LakeReporter(pub Arc<Shipper<TenantsSource>>);

impl Reporter for LakeReporter {
    fn tenant_status(&self, tenant: &TenantId) -> Map<String, Value> {
        let mut fields = Map::new();
        if let Some(status) = self.0.tenant_status(tenant.as_str()) {
            fields.insert("lake".into(), status);
        }
        fields
    }

    fn metrics(&self, out: &mut String) {
        self.0.write_metrics(out);
    }
}
