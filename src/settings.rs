//! `tidelake serve` settings: built-in defaults, then the TOML config file,
//! then environment variables and flags (flags win).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use catalog::CatalogConfig;
use lake::{MaintenanceConfig, ShipperConfig};
use oltp_do::OltpConfig;
use oltp_do::config::parse_duration;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7432";
pub const DEFAULT_PG_LISTEN: &str = "127.0.0.1:7433";
pub const DEFAULT_DATA_DIR: &str = "./tidelake-data";

/// The config file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub tenants: TenantsSection,
    #[serde(default)]
    pub postgres: PostgresSection,
    #[serde(default)]
    pub capture: CaptureSection,
    #[serde(default)]
    pub catalog: CatalogSection,
    #[serde(default)]
    pub lake: LakeSection,
    #[serde(default)]
    pub archive: ArchiveSection,
    #[serde(default)]
    pub query: QuerySection,
    #[serde(default)]
    pub auth: AuthSection,
}

/// Who may call the server (docs/auth.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub jwks_url: Option<String>,
    pub jwt_secret: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub tenant_claim: Option<String>,
    pub jwks_refresh: Option<String>,
    pub allowed_origins: Option<Vec<String>>,
    pub allowed_hosts: Option<Vec<String>>,
    pub insecure_no_auth: Option<bool>,
}

/// The lake query service's limits (docs/query.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySection {
    pub memory: Option<String>,
    pub timeout: Option<String>,
    pub max_buckets: Option<u64>,
    pub max_result_rows: Option<u64>,
    pub max_result_bytes: Option<String>,
}

/// Base backups and the cold tier.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSection {
    pub location: Option<String>,
    pub cold_after: Option<String>,
    pub disk_budget: Option<String>,
    pub backup_interval: Option<String>,
    pub backup_retention: Option<String>,
    pub backup_min_interval: Option<String>,
    pub schema_backups: Option<bool>,
    /// S3 properties; the catalog's are used when this is empty.
    #[serde(default)]
    pub storage: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeSection {
    pub enabled: Option<bool>,
    pub flush_interval: Option<String>,
    pub batch_size: Option<u64>,
    pub partition: Option<String>,
    pub concurrency: Option<usize>,
    pub max_lag: Option<String>,
    pub min_commit_changes: Option<u64>,
    pub maintenance_interval: Option<String>,
    pub target_file_size: Option<String>,
    pub min_compact_files: Option<usize>,
    pub max_manifests: Option<usize>,
    pub snapshot_retention: Option<String>,
    pub orphan_age: Option<String>,
    pub checkpoint_changes: Option<CountOrOff>,
}

/// A count, or `off` (in the config file, either a number or a string).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CountOrOff {
    Count(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSection {
    pub name: Option<String>,
    pub uri: Option<String>,
    pub warehouse: Option<String>,
    /// Storage properties (s3.endpoint, s3.access-key-id, …).
    #[serde(default)]
    pub storage: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    pub enabled: Option<bool>,
    pub retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub pg_listen: Option<String>,
    pub pg_tls_cert: Option<PathBuf>,
    pub pg_tls_key: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsSection {
    pub hibernate_after: Option<String>,
    pub max_open: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub base_domain: Option<String>,
    pub blocked_names: Option<Vec<String>>,
    pub queue_depth: Option<usize>,
    pub spares: Option<usize>,
    pub queue_timeout: Option<String>,
    pub ws_send_timeout: Option<String>,
    pub statement_timeout: Option<String>,
    pub max_result_bytes: Option<String>,
    pub max_result_rows: Option<u64>,
    pub ws_max_in_flight: Option<usize>,
    pub disk_quota: Option<String>,
    pub memory: Option<String>,
    /// `[tenants.overrides.<tenant>]`: settings of one tenant.
    #[serde(default)]
    pub overrides: BTreeMap<String, TenantOverrideSection>,
}

/// What one tenant may have of its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOverrideSection {
    pub statement_timeout: Option<String>,
    pub disk_quota: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    pub shared_buffers: Option<String>,
    pub max_wal_size: Option<String>,
    /// Any other PostgreSQL setting, applied to every tenant backend.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// Values given as flags or environment variables (they override the file).
#[derive(Debug, Default, clap::Args)]
pub struct Overrides {
    /// TOML config file (see docs/configuration.md).
    #[arg(long, env = "TIDELAKE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where tenant databases and everything else live [default: ./tidelake-data].
    #[arg(long, env = "TIDELAKE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve HTTP on [default: 127.0.0.1:7432]; port 0 picks a free port.
    #[arg(long, env = "TIDELAKE_LISTEN")]
    pub listen: Option<String>,
    /// Address to serve lake queries over the Postgres wire protocol on, or `off` [default: 127.0.0.1:7433].
    #[arg(long, env = "TIDELAKE_PG_LISTEN")]
    pub pg_listen: Option<String>,
    /// PEM certificate chain of the Postgres wire front's TLS (with --pg-tls-key); clients ask with sslmode=require.
    #[arg(long, env = "TIDELAKE_PG_TLS_CERT")]
    pub pg_tls_cert: Option<PathBuf>,
    /// PEM private key of --pg-tls-cert.
    #[arg(long, env = "TIDELAKE_PG_TLS_KEY")]
    pub pg_tls_key: Option<PathBuf>,
    /// Hibernate a tenant after this long without requests (e.g. 30s, 5m) [default: 5m].
    #[arg(long, env = "TIDELAKE_HIBERNATE_AFTER")]
    pub hibernate_after: Option<String>,
    /// Most tenant databases open at once; more evicts the least recently used [default: 64].
    #[arg(long, env = "TIDELAKE_MAX_OPEN_TENANTS")]
    pub max_open_tenants: Option<usize>,
    /// Refuse (503) a request still waiting behind earlier work on its tenant after this long [default: 30s].
    #[arg(long, env = "TIDELAKE_QUEUE_TIMEOUT")]
    pub queue_timeout: Option<String>,
    /// Largest accepted request body in bytes [default: 8388608].
    #[arg(long, env = "TIDELAKE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Route `{tenant}.{base-domain}` host names to tenants.
    #[arg(long, env = "TIDELAKE_BASE_DOMAIN")]
    pub base_domain: Option<String>,
    /// Stop a statement that runs longer than this (SQLSTATE 57014); a request may ask for less [default: 30s].
    #[arg(long, env = "TIDELAKE_STATEMENT_TIMEOUT")]
    pub statement_timeout: Option<String>,
    /// Refuse (`result_too_large`) an answer to a query larger than this (e.g. 16MiB) [default: 16MiB].
    #[arg(long, env = "TIDELAKE_MAX_RESULT_BYTES")]
    pub max_result_bytes: Option<String>,
    /// Refuse (`result_too_large`) an answer to a query with more rows than this [default: 1000000].
    #[arg(long, env = "TIDELAKE_MAX_RESULT_ROWS")]
    pub max_result_rows: Option<u64>,
    /// Queries one WebSocket connection may have queued or running at once [default: 16].
    #[arg(long, env = "TIDELAKE_WS_MAX_IN_FLIGHT")]
    pub ws_max_in_flight: Option<usize>,
    /// Local disk one tenant may take (e.g. 1GB); over it, writes fail with SQLSTATE 53100 and reads go on [default: none].
    #[arg(long, env = "TIDELAKE_TENANT_DISK_QUOTA")]
    pub tenant_disk_quota: Option<String>,
    /// Memory one tenant's engine may take; past it a statement fails with SQLSTATE 53200 [default: 512MiB].
    #[arg(long, env = "TIDELAKE_TENANT_MEMORY")]
    pub tenant_memory: Option<String>,
    /// Base backups a client asks for are at least this far apart per tenant [default: 1m].
    #[arg(long, env = "TIDELAKE_BACKUP_MIN_INTERVAL")]
    pub backup_min_interval: Option<String>,
    /// Capture every committed change into each tenant's change log [default: true].
    #[arg(long, env = "TIDELAKE_CAPTURE")]
    pub capture: Option<bool>,
    /// Keep acknowledged changes in the change log this long [default: 1h].
    #[arg(long, env = "TIDELAKE_CHANGE_RETENTION")]
    pub change_retention: Option<String>,
    /// Disconnect a WebSocket client that takes no message for this long [default: 10s].
    #[arg(long, env = "TIDELAKE_WS_SEND_TIMEOUT")]
    pub ws_send_timeout: Option<String>,
    /// Iceberg catalog database: sqlite:PATH or postgres://… [default: sqlite in the data dir].
    #[arg(long, env = "TIDELAKE_CATALOG_URI")]
    pub catalog_uri: Option<String>,
    /// Iceberg warehouse: file:///PATH or s3://bucket/prefix [default: warehouse/ in the data dir].
    #[arg(long, env = "TIDELAKE_WAREHOUSE")]
    pub warehouse: Option<String>,
    /// Ship every tenant's change log into Iceberg tables [default: true; needs capture].
    #[arg(long, env = "TIDELAKE_LAKE")]
    pub lake: Option<bool>,
    /// Ship a tenant's new changes at most this often (e.g. 1s, 500ms) [default: 1s].
    #[arg(long, env = "TIDELAKE_LAKE_FLUSH_INTERVAL")]
    pub lake_flush_interval: Option<String>,
    /// Most changes per Iceberg commit [default: 20000].
    #[arg(long, env = "TIDELAKE_LAKE_BATCH_SIZE")]
    pub lake_batch_size: Option<u64>,
    /// Partition changelog tables by `day` or `hour` of the commit time [default: day].
    #[arg(long, env = "TIDELAKE_LAKE_PARTITION")]
    pub lake_partition: Option<String>,
    /// Let a tenant's changes wait up to this long while they would make a small commit (under lake.min_commit_changes); 0s commits every flush [default: 10s].
    #[arg(long, env = "TIDELAKE_LAKE_MAX_LAG")]
    pub lake_max_lag: Option<String>,
    /// Compact, merge manifests, expire snapshots and remove orphans of every lake table this often, or `off` [default: 5m].
    #[arg(long, env = "TIDELAKE_LAKE_MAINTENANCE_INTERVAL")]
    pub lake_maintenance_interval: Option<String>,
    /// Keep lake snapshots this long (the current one always); outside readers must finish reading a snapshot within it [default: 10m].
    #[arg(long, env = "TIDELAKE_LAKE_SNAPSHOT_RETENTION")]
    pub lake_snapshot_retention: Option<String>,
    /// Remove files no lake table references once they are this old [default: 24h].
    #[arg(long, env = "TIDELAKE_LAKE_ORPHAN_AGE")]
    pub lake_orphan_age: Option<String>,
    /// Checkpoint a lake table's state once it has taken this many changes since its last checkpoint (and at least that one's rows), or `off` [default: 100000].
    #[arg(long, env = "TIDELAKE_LAKE_CHECKPOINT_CHANGES")]
    pub lake_checkpoint_changes: Option<String>,
    /// Where base backups and cold tenants go: file:///PATH or s3://bucket/prefix [default: archive/ in the data dir].
    #[arg(long, env = "TIDELAKE_ARCHIVE")]
    pub archive: Option<String>,
    /// Archive a hibernated tenant and remove it from local disk after this long idle, or `off` [default: 24h].
    #[arg(long, env = "TIDELAKE_COLD_AFTER")]
    pub cold_after: Option<String>,
    /// Move least recently used hibernated tenants to the cold tier while local tenants take more than this (e.g. 20GB) [default: none].
    #[arg(long, env = "TIDELAKE_DISK_BUDGET")]
    pub disk_budget: Option<String>,
    /// Take a base backup of a tenant with new changes this often, or `off` [default: 6h].
    #[arg(long, env = "TIDELAKE_BACKUP_INTERVAL")]
    pub backup_interval: Option<String>,
    /// Keep base backups this long (and the newest older one) [default: 7d].
    #[arg(long, env = "TIDELAKE_BACKUP_RETENTION")]
    pub backup_retention: Option<String>,
    /// Take a base backup after schema changes, before the data changes again, so every instant after one is restorable [default: true].
    #[arg(long, env = "TIDELAKE_SCHEMA_BACKUPS")]
    pub schema_backups: Option<bool>,
    /// PostgreSQL shared_buffers per tenant [default: 4MB].
    #[arg(long, env = "TIDELAKE_SHARED_BUFFERS")]
    pub shared_buffers: Option<String>,
    /// Memory lake queries may hold in sorts, joins and aggregates, all running queries together (e.g. 2GB) [default: 512MiB].
    #[arg(long, env = "TIDELAKE_QUERY_MEMORY")]
    pub query_memory: Option<String>,
    /// Cancel a lake query (/sql, the Postgres wire front, /diff, /growth, /activity) running longer than this [default: 30s].
    #[arg(long, env = "TIDELAKE_QUERY_TIMEOUT")]
    pub query_timeout: Option<String>,
    /// Refuse a growth or activity series of more buckets than this [default: 10000].
    #[arg(long, env = "TIDELAKE_MAX_BUCKETS")]
    pub max_buckets: Option<u64>,
    /// Refuse (`result_too_large`) a lake query's answer (/sql, /diff, /growth, /activity) with more rows than this [default: 1000000].
    #[arg(long, env = "TIDELAKE_QUERY_MAX_RESULT_ROWS")]
    pub query_max_result_rows: Option<u64>,
    /// Refuse (`result_too_large`) a lake query's answer larger than this, as encoded (e.g. 256MiB) [default: 64MiB].
    #[arg(long, env = "TIDELAKE_QUERY_MAX_RESULT_BYTES")]
    pub query_max_result_bytes: Option<String>,
    /// Accept JWTs signed by the keys of this JWKS (RS256, ES256), e.g. https://auth.example.com/.well-known/jwks.json.
    #[arg(long, env = "TIDELAKE_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Accept HS256 JWTs signed with this shared secret (at least 32 bytes).
    #[arg(long, env = "TIDELAKE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A JWT's `iss` must be this.
    #[arg(long, env = "TIDELAKE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// A JWT's `aud` must include this.
    #[arg(long, env = "TIDELAKE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// A database per user: a JWT reaches the one tenant named by this claim (e.g. sub), encoded as docs/auth.md says.
    #[arg(long, env = "TIDELAKE_TENANT_CLAIM")]
    pub tenant_claim: Option<String>,
    /// Fetch the JWKS again this often [default: 5m].
    #[arg(long, env = "TIDELAKE_JWKS_REFRESH")]
    pub jwks_refresh: Option<String>,
    /// Origins whose web pages may call the server, comma-separated, or * [default: the server's own pages only].
    #[arg(long, env = "TIDELAKE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Host names the server answers besides IP addresses, localhost and the base domain, comma-separated.
    #[arg(long, env = "TIDELAKE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// Serve without auth on addresses other than loopback: anyone who reaches the port is an administrator.
    #[arg(long, env = "TIDELAKE_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
}

pub struct Settings {
    pub listen: SocketAddr,
    /// None: no Postgres wire front.
    pub pg_listen: Option<SocketAddr>,
    /// The wire front's TLS certificate chain and key files.
    pub pg_tls: Option<(PathBuf, PathBuf)>,
    pub oltp: OltpConfig,
    pub catalog: CatalogConfig,
    /// None: the lake shipper is off.
    pub lake: Option<ShipperConfig>,
    pub maintenance: MaintenanceConfig,
    pub query: query_service::Limits,
    pub auth: AuthSettings,
}

/// How callers prove who they are, and which pages and hosts are served.
pub struct AuthSettings {
    pub jwt: auth::JwtConfig,
    pub browser: auth::http::Browser,
    pub insecure_no_auth: bool,
}

impl Settings {
    pub fn load(overrides: Overrides) -> Result<Self> {
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = overrides
            .data_dir
            .or(file.server.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen_text = overrides
            .listen
            .or(file.server.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text
            .parse()
            .with_context(|| format!("invalid listen address {listen_text:?}"))?;
        let pg_listen_text = overrides
            .pg_listen
            .or(file.server.pg_listen)
            .unwrap_or_else(|| DEFAULT_PG_LISTEN.to_owned());
        let pg_listen = match pg_listen_text.as_str() {
            "off" | "" => None,
            text => Some(text.parse().with_context(|| format!("invalid pg_listen address {text:?} (or `off`)"))?),
        };

        let mut catalog = CatalogConfig::in_data_dir(&data_dir);
        let cat = file.catalog;
        if let Some(name) = cat.name {
            catalog.name = name;
        }
        if let Some(uri) = overrides.catalog_uri.or(cat.uri) {
            catalog.uri = uri;
        }
        if let Some(warehouse) = overrides.warehouse.or(cat.warehouse) {
            catalog.warehouse = warehouse;
        }
        catalog.storage = cat.storage.into_iter().collect();
        let mut oltp = OltpConfig::new(data_dir);
        let t = file.tenants;
        if let Some(text) = overrides.hibernate_after.or(t.hibernate_after) {
            oltp.hibernate_after = duration("hibernate_after", &text)?;
        }
        if let Some(n) = overrides.max_open_tenants.or(t.max_open) {
            anyhow::ensure!(n > 0, "max_open_tenants must be at least 1");
            oltp.max_open_tenants = n;
        }
        if let Some(n) = overrides.max_body_bytes.or(t.max_body_bytes) {
            oltp.max_body_bytes = n;
        }
        oltp.base_domain = overrides.base_domain.or(t.base_domain);
        if let Some(names) = t.blocked_names {
            oltp.blocked_names = names;
        }
        if let Some(n) = t.queue_depth {
            anyhow::ensure!(n > 0, "queue_depth must be at least 1");
            oltp.tenant_queue_depth = n;
        }
        if let Some(n) = t.spares {
            oltp.spare_tenants = n;
        }
        if let Some(text) = overrides.queue_timeout.or(t.queue_timeout) {
            oltp.queue_timeout = duration("queue_timeout", &text)?;
        }
        if let Some(text) = overrides.ws_send_timeout.or(t.ws_send_timeout) {
            oltp.ws_send_timeout = duration("ws_send_timeout", &text)?;
        }
        if let Some(text) = overrides.statement_timeout.or(t.statement_timeout) {
            oltp.statement_timeout = positive_duration("statement_timeout", &text)?;
        }
        if let Some(text) = overrides.max_result_bytes.or(t.max_result_bytes) {
            oltp.max_result_bytes = parse_bytes(&text).map_err(|e| anyhow::anyhow!("max_result_bytes: {e}"))?;
            anyhow::ensure!(oltp.max_result_bytes > 0, "max_result_bytes must be at least 1");
        }
        if let Some(n) = overrides.max_result_rows.or(t.max_result_rows) {
            anyhow::ensure!(n > 0, "max_result_rows must be at least 1");
            oltp.max_result_rows = n;
        }
        if let Some(n) = overrides.ws_max_in_flight.or(t.ws_max_in_flight) {
            anyhow::ensure!(n > 0, "ws_max_in_flight must be at least 1");
            oltp.ws_max_in_flight = n;
        }
        if let Some(text) = overrides.tenant_disk_quota.or(t.disk_quota) {
            oltp.tenant_disk_quota = Some(parse_bytes(&text).map_err(|e| anyhow::anyhow!("tenant_disk_quota: {e}"))?);
        }
        if let Some(text) = overrides.tenant_memory.or(t.memory) {
            oltp.tenant_memory = parse_bytes(&text).map_err(|e| anyhow::anyhow!("tenant_memory: {e}"))?;
            anyhow::ensure!(oltp.tenant_memory >= 64 << 20, "tenant_memory must be at least 64MiB");
        }
        for (tenant, o) in t.overrides {
            oltp_do::TenantId::parse(&tenant).map_err(|e| anyhow::anyhow!("tenants.overrides.{tenant}: {e}"))?;
            let settings = oltp_do::config::TenantOverrides {
                statement_timeout: o
                    .statement_timeout
                    .map(|text| positive_duration(&format!("tenants.overrides.{tenant}.statement_timeout"), &text))
                    .transpose()?,
                disk_quota: o
                    .disk_quota
                    .map(|text| parse_bytes(&text).map_err(|e| anyhow::anyhow!("tenants.overrides.{tenant}.disk_quota: {e}")))
                    .transpose()?,
            };
            oltp.tenant_overrides.insert(tenant, settings);
        }
        let c = file.capture;
        if let Some(enabled) = overrides.capture.or(c.enabled) {
            oltp.engine.capture = enabled;
        }
        if let Some(text) = overrides.change_retention.or(c.retention) {
            oltp.change_retention = duration("capture.retention", &text)?;
        }
        let p = file.postgres;
        if let Some(v) = overrides.shared_buffers.or(p.shared_buffers) {
            oltp.engine.shared_buffers = v;
        }
        if let Some(v) = p.max_wal_size {
            oltp.engine.max_wal_size = v;
        }
        oltp.engine.extra = p.settings;

        let l = file.lake;
        let mut shipper = ShipperConfig::default();
        if let Some(text) = overrides.lake_flush_interval.or(l.flush_interval) {
            shipper.flush_interval = duration("lake.flush_interval", &text)?;
        }
        if let Some(n) = overrides.lake_batch_size.or(l.batch_size) {
            anyhow::ensure!(n > 0, "lake batch_size must be at least 1");
            shipper.batch_size = n;
        }
        if let Some(text) = overrides.lake_partition.or(l.partition) {
            shipper.partitioning = text.parse().map_err(|e: String| anyhow::anyhow!("lake.partition: {e}"))?;
        }
        if let Some(n) = l.concurrency {
            anyhow::ensure!(n > 0, "lake concurrency must be at least 1");
            shipper.concurrency = n;
        }
        if let Some(text) = overrides.lake_max_lag.or(l.max_lag) {
            shipper.max_lag = duration("lake.max_lag", &text)?;
        }
        if let Some(n) = l.min_commit_changes {
            shipper.min_commit_changes = n;
        }
        let mut maintenance = MaintenanceConfig::default();
        if let Some(text) = overrides.lake_maintenance_interval.or(l.maintenance_interval) {
            maintenance.interval = optional_duration("lake.maintenance_interval", &text)?;
        }
        if let Some(text) = l.target_file_size {
            maintenance.target_file_bytes =
                parse_bytes(&text).map_err(|e| anyhow::anyhow!("lake.target_file_size: {e}"))?.max(1024);
        }
        if let Some(n) = l.min_compact_files {
            anyhow::ensure!(n >= 2, "lake min_compact_files must be at least 2");
            maintenance.min_input_files = n;
        }
        if let Some(n) = l.max_manifests {
            maintenance.max_manifests = n;
        }
        if let Some(text) = overrides.lake_snapshot_retention.or(l.snapshot_retention) {
            maintenance.snapshot_retention = duration("lake.snapshot_retention", &text)?;
        }
        if let Some(text) = overrides.lake_orphan_age.or(l.orphan_age) {
            maintenance.orphan_age = duration("lake.orphan_age", &text)?;
        }
        let from_file = l.checkpoint_changes.map(|v| match v {
            CountOrOff::Count(n) => n.to_string(),
            CountOrOff::Text(t) => t,
        });
        if let Some(text) = overrides.lake_checkpoint_changes.or(from_file) {
            maintenance.checkpoint_changes = match text.as_str() {
                "off" => None,
                n => Some(n.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    anyhow::anyhow!("lake.checkpoint_changes: {n:?} is not a positive number of changes or `off`")
                })?),
            };
        }
        let lake_on = overrides.lake.or(l.enabled).unwrap_or(true);
        anyhow::ensure!(
            !lake_on || oltp.engine.capture || overrides.lake.or(l.enabled).is_none(),
            "the lake ships the change log: enabling it needs capture enabled"
        );
        let lake = (lake_on && oltp.engine.capture).then_some(shipper);

        let a = file.archive;
        if let Some(location) = overrides.archive.or(a.location) {
            oltp.archive.location = location;
        }
        oltp.archive.storage = if a.storage.is_empty() { catalog.storage.clone().into_iter().collect() } else { a.storage };
        if let Some(text) = overrides.cold_after.or(a.cold_after) {
            oltp.cold_after = optional_duration("archive.cold_after", &text)?;
        }
        if let Some(text) = overrides.disk_budget.or(a.disk_budget) {
            oltp.disk_budget = Some(parse_bytes(&text).map_err(|e| anyhow::anyhow!("archive.disk_budget: {e}"))?);
        }
        if let Some(text) = overrides.backup_interval.or(a.backup_interval) {
            oltp.backup_interval = optional_duration("archive.backup_interval", &text)?;
        }
        if let Some(text) = overrides.backup_retention.or(a.backup_retention) {
            oltp.backup_retention = duration("archive.backup_retention", &text)?;
        }
        if let Some(on) = overrides.schema_backups.or(a.schema_backups) {
            oltp.schema_backups = on;
        }
        if let Some(text) = overrides.backup_min_interval.or(a.backup_min_interval) {
            oltp.backup_min_interval = duration("archive.backup_min_interval", &text)?;
        }
        let q = file.query;
        let mut query = query_service::Limits::default();
        if let Some(text) = overrides.query_memory.or(q.memory) {
            let bytes = parse_bytes(&text).map_err(|e| anyhow::anyhow!("query.memory: {e}"))?;
            anyhow::ensure!(bytes >= 1 << 20, "query.memory must be at least 1MiB");
            query.memory = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        if let Some(text) = overrides.query_timeout.or(q.timeout) {
            query.timeout = positive_duration("query.timeout", &text)?;
        }
        if let Some(n) = overrides.max_buckets.or(q.max_buckets) {
            anyhow::ensure!(n > 0, "query.max_buckets must be at least 1");
            query.max_buckets = n;
        }
        if let Some(n) = overrides.query_max_result_rows.or(q.max_result_rows) {
            anyhow::ensure!(n > 0, "query.max_result_rows must be at least 1");
            query.max_result_rows = n;
        }
        if let Some(text) = overrides.query_max_result_bytes.or(q.max_result_bytes) {
            query.max_result_bytes = parse_bytes(&text).map_err(|e| anyhow::anyhow!("query.max_result_bytes: {e}"))?;
            anyhow::ensure!(query.max_result_bytes > 0, "query.max_result_bytes must be at least 1");
        }
        let u = file.auth;
        let jwt = auth::JwtConfig {
            jwks_url: overrides.jwks_url.or(u.jwks_url),
            hs256_secret: overrides.jwt_secret.or(u.jwt_secret),
            issuer: overrides.jwt_issuer.or(u.issuer),
            audience: overrides.jwt_audience.or(u.audience),
            tenant_claim: overrides.tenant_claim.or(u.tenant_claim),
            jwks_refresh: match overrides.jwks_refresh.or(u.jwks_refresh) {
                Some(text) => positive_duration("auth.jwks_refresh", &text)?,
                None => std::time::Duration::from_secs(300),
            },
        };
        let browser = auth::http::Browser {
            allowed_origins: overrides.allowed_origins.or(u.allowed_origins).unwrap_or_default(),
            allowed_hosts: overrides.allowed_hosts.or(u.allowed_hosts).unwrap_or_default(),
            base_domain: oltp.base_domain.clone(),
        };
        let insecure_no_auth = overrides.insecure_no_auth || u.insecure_no_auth.unwrap_or(false);
        let auth = AuthSettings { jwt, browser, insecure_no_auth };
        let pg_tls = match (overrides.pg_tls_cert.or(file.server.pg_tls_cert), overrides.pg_tls_key.or(file.server.pg_tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => anyhow::bail!("the wire front's TLS needs both pg_tls_cert and pg_tls_key"),
        };
        Ok(Self { listen, pg_listen, pg_tls, oltp, catalog, lake, maintenance, query, auth })
    }
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parse config file {}", path.display()))
}

/// A duration, or `off`.
fn optional_duration(key: &str, text: &str) -> Result<Option<std::time::Duration>> {
    if text == "off" { Ok(None) } else { duration(key, text).map(Some) }
}

/// `20GB`, `512MiB`, `1.5 GiB`, `1048576`: bytes, decimal (`kB`, `MB`, `GB`,
/// `TB`) and binary (`KiB`, `MiB`, `GiB`, `TiB`) units, any case, as
/// bytesize reads them.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let size: bytesize::ByteSize = text.parse().map_err(|e| format!("expected a size like 20GB or 512MiB, got {text:?}: {e}"))?;
    // bytesize saturates: the largest value means "too large".
    if size.as_u64() == u64::MAX {
        return Err(format!("size {text:?} is out of range"));
    }
    Ok(size.as_u64())
}

/// A duration that must not be zero.
fn positive_duration(key: &str, text: &str) -> Result<std::time::Duration> {
    let d = duration(key, text)?;
    anyhow::ensure!(!d.is_zero(), "{key} must be longer than zero");
    Ok(d)
}

fn duration(key: &str, text: &str) -> Result<std::time::Duration> {
    parse_duration(text).map_err(|e| anyhow::anyhow!("{key}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_decimal_and_binary_units() {
        for (text, bytes) in [
            ("1048576", 1_048_576),
            ("20GB", 20_000_000_000),
            ("20gb", 20_000_000_000),
            ("512MiB", 512 << 20),
            ("1.5 GiB", 3 << 29),
            ("64kB", 64_000),
            (" 2TiB ", 2 << 40),
        ] {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
        for bad in ["", "lots", "5 parsecs", "-1GB", "99999999999999999999EiB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
