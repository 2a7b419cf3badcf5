//! The settings of every command: one serde-derived configuration
//! ([`Config`]) merged by figment from, in rising precedence, the TOML file,
//! environment variables and flags; built-in defaults fill what none gives.
//!
//! A setting has one name: its key in the file (`tenants.max_open`), from
//! which its flag (`--tenants-max-open`) and its environment variable
//! (`TIDELAKE_TENANTS_MAX_OPEN`) follow. [`SETTINGS`] lists every one, with
//! the flag an earlier version used where it differs (still accepted, as is
//! its environment variable, with a warning).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context, Result};
use catalog::CatalogConfig;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use lake::{MaintenanceConfig, ShipperConfig};
use oltp_do::OltpConfig;

use crate::edge_source::EdgeSettings;
use model::parse_bytes;
use oltp_do::config::parse_duration;
use serde::de::{self, Deserializer};
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7432";
pub const DEFAULT_PG_LISTEN: &str = "127.0.0.1:7433";
pub const DEFAULT_TENANT_PG_LISTEN: &str = "127.0.0.1:7434";
pub const DEFAULT_DATA_DIR: &str = "./tidelake-data";

/// How a flag or an environment variable's text becomes a value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Text, read by the setting's own type (durations, sizes, names).
    Text,
    /// A whole number.
    Count,
    /// `true` or `false`; a flag alone means `true`.
    Bool,
    /// Comma-separated text (an array in the file).
    List,
}

/// One setting of [`SETTINGS`].
pub struct Setting {
    /// The key in the config file: `section.name`, or `name` at the top.
    pub key: &'static str,
    kind: Kind,
    /// The flag an earlier version used, where it differs.
    old_flag: Option<&'static str>,
    help: &'static str,
}

const fn setting(key: &'static str, kind: Kind, old_flag: Option<&'static str>, help: &'static str) -> Setting {
    Setting { key, kind, old_flag, help }
}

use Kind::{Bool, Count, List, Text};

/// Every setting that has a flag and an environment variable (the maps —
/// `catalog.storage`, `archive.storage`, `postgres.settings`,
/// `tenants.overrides` — are the file's alone).
pub static SETTINGS: &[Setting] = &[
    setting("listen", Text, None, "Address to serve HTTP on; port 0 picks a free port [default: 127.0.0.1:7432]"),
    setting("pg_listen", Text, None, "Address to serve lake queries over the Postgres wire protocol on, or `off` [default: 127.0.0.1:7433]"),
    setting("tenant_pg_listen", Text, None, "Address to serve the tenants over the Postgres wire protocol on (the database name picks the tenant), or `off` [default: 127.0.0.1:7434]"),
    setting("pg_tls_cert", Text, None, "PEM certificate chain of the Postgres wire front's TLS (with --pg-tls-key); clients ask with sslmode=require"),
    setting("pg_tls_key", Text, None, "PEM private key of --pg-tls-cert"),
    setting("data_dir", Text, None, "Where tenant databases and everything else live [default: ./tidelake-data]"),
    setting("migrations", Text, None, "A folder of migrations (NNNN_name.sql, or Drizzle Kit's output) every tenant is brought to when it opens (docs/migrations.md)"),
    setting("tenants.hibernate_after", Text, Some("hibernate-after"), "Hibernate a tenant after this long without requests (e.g. 30s, 5m) [default: 5m]"),
    setting("tenants.max_open", Count, Some("max-open-tenants"), "Most tenant databases open at once; more evicts the least recently used [default: 64]"),
    setting("tenants.max_body_bytes", Text, Some("max-body-bytes"), "Largest accepted request body (e.g. 8MiB); larger ones get 413 [default: 8MiB]"),
    setting("tenants.base_domain", Text, Some("base-domain"), "Route `{tenant}.{base-domain}` host names to tenants"),
    setting("tenants.blocked_names", List, None, "Names no tenant may have, comma-separated; replaces the default list (docs/configuration.md)"),
    setting("tenants.queue_depth", Count, None, "Requests queued per tenant before senders wait [default: 256]"),
    setting("tenants.spares", Count, None, "Tenant databases copied ahead of need [default: 2]"),
    setting("tenants.queue_timeout", Text, Some("queue-timeout"), "Refuse (503) a request still waiting behind earlier work on its tenant after this long [default: 30s]"),
    setting("tenants.ws_send_timeout", Text, Some("ws-send-timeout"), "Disconnect a WebSocket client that takes no message for this long [default: 10s]"),
    setting("tenants.idle_in_transaction_timeout", Text, None, "Close a wire-protocol connection whose transaction stays idle longer, rolling it back (a transaction holds the tenant) [default: 20s]"),
    setting("tenants.statement_timeout", Text, Some("statement-timeout"), "Stop a statement that runs longer than this (SQLSTATE 57014); a request may ask for less [default: 30s]"),
    setting("tenants.max_result_bytes", Text, Some("max-result-bytes"), "Refuse (`result_too_large`) an answer to a query larger than this (e.g. 16MiB) [default: 16MiB]"),
    setting("tenants.max_result_rows", Count, Some("max-result-rows"), "Refuse (`result_too_large`) an answer to a query with more rows than this [default: 1000000]"),
    setting("tenants.ws_max_in_flight", Count, Some("ws-max-in-flight"), "Queries one WebSocket connection may have queued or running at once [default: 16]"),
    setting("tenants.disk_quota", Text, Some("tenant-disk-quota"), "Local disk one tenant may take (e.g. 1GB); over it, writes fail with SQLSTATE 53100 and reads go on [default: none]"),
    setting("tenants.memory", Text, Some("tenant-memory"), "Memory one tenant's engine may take; past it a statement fails with SQLSTATE 53200 [default: 512MiB]"),
    setting("capture.enabled", Bool, Some("capture"), "Capture every committed change into each tenant's change log [default: true]"),
    setting("capture.retention", Text, Some("change-retention"), "Keep acknowledged changes in the change log this long [default: 1h]"),
    setting("catalog.name", Text, None, "The catalog's name in the SQL catalog's tables [default: tidelake]"),
    setting("catalog.uri", Text, None, "Iceberg catalog database: sqlite:PATH or postgres://… [default: sqlite in the data dir]"),
    setting("catalog.warehouse", Text, Some("warehouse"), "Iceberg warehouse: file:///PATH or s3://bucket/prefix [default: warehouse/ in the data dir]"),
    setting("lake.enabled", Bool, Some("lake"), "Ship every tenant's change log into Iceberg tables [default: true; needs capture]"),
    setting("lake.flush_interval", Text, None, "Ship a tenant's new changes at most this often (e.g. 1s, 500ms) [default: 1s]"),
    setting("lake.batch_size", Count, None, "Most changes per Iceberg commit [default: 20000]"),
    setting("lake.partition", Text, None, "Partition changelog tables by `day` or `hour` of the commit time [default: day]"),
    setting("lake.concurrency", Count, None, "Tenants shipped at the same time [default: 4]"),
    setting("lake.max_lag", Text, None, "Let a tenant's changes wait up to this long while they would make a small commit (under lake.min_commit_changes); 0s commits every flush [default: 10s]"),
    setting("lake.min_commit_changes", Count, None, "A batch this large (or a backlog) commits at once [default: 1000]"),
    setting("lake.maintenance_interval", Text, None, "Compact, merge manifests, expire snapshots and remove orphans of every lake table this often, or `off` [default: 5m]"),
    setting("lake.target_file_size", Text, None, "Compaction writes files up to this size [default: 64MiB]"),
    setting("lake.min_compact_files", Count, None, "Small files a partition needs before they are rewritten [default: 8]"),
    setting("lake.max_manifests", Count, None, "Manifests of the current snapshot before they are merged [default: 16]"),
    setting("lake.snapshot_retention", Text, None, "Keep lake snapshots this long (the current one always); outside readers must finish reading a snapshot within it [default: 10m]"),
    setting("lake.orphan_age", Text, None, "Remove files no lake table references once they are this old [default: 24h]"),
    setting("lake.checkpoint_changes", Text, None, "Checkpoint a lake table's state once it has taken this many changes since its last checkpoint (and at least that one's rows), or `off` [default: 100000]"),
    setting("query.memory", Text, None, "Memory lake queries may hold in sorts, joins and aggregates, all running queries together (e.g. 2GB) [default: 512MiB]"),
    setting("query.timeout", Text, None, "Cancel a lake query (/sql, the Postgres wire front, /diff, /growth, /activity) running longer than this [default: 30s]"),
    setting("query.max_buckets", Count, Some("max-buckets"), "Refuse a growth or activity series of more buckets than this [default: 10000]"),
    setting("query.max_result_rows", Count, None, "Refuse (`result_too_large`) a lake query's answer (/sql, /diff, /growth, /activity) with more rows than this [default: 1000000]"),
    setting("query.max_result_bytes", Text, None, "Refuse (`result_too_large`) a lake query's answer larger than this, as encoded (e.g. 256MiB) [default: 64MiB]"),
    setting("archive.location", Text, Some("archive"), "Where base backups and cold tenants go: file:///PATH or s3://bucket/prefix [default: archive/ in the data dir]"),
    setting("archive.cold_after", Text, Some("cold-after"), "Archive a hibernated tenant and remove it from local disk after this long idle, or `off` [default: 24h]"),
    setting("archive.disk_budget", Text, Some("disk-budget"), "Move least recently used hibernated tenants to the cold tier while local tenants take more than this (e.g. 20GB) [default: none]"),
    setting("archive.backup_interval", Text, Some("backup-interval"), "Take a base backup of a tenant with new changes this often, or `off` [default: 6h]"),
    setting("archive.backup_retention", Text, Some("backup-retention"), "Keep base backups this long (and the newest older one) [default: 7d]"),
    setting("archive.backup_min_interval", Text, Some("backup-min-interval"), "Base backups a client asks for are at least this far apart per tenant [default: 1m]"),
    setting("archive.schema_backups", Bool, Some("schema-backups"), "Take a base backup after schema changes, before the data changes again, so every instant after one is restorable [default: true]"),
    setting("postgres.shared_buffers", Text, Some("shared-buffers"), "PostgreSQL shared_buffers per tenant [default: 4MB]"),
    setting("postgres.max_wal_size", Text, None, "WAL written between checkpoints; segments no longer needed are removed [default: 64MB]"),
    setting("edge.url", Text, None, "Ship the history of the tenants of this tidelake edge Worker (https://…) into the lake too (docs/edge.md)"),
    setting("edge.token", Text, None, "The token the lake shows the edge Worker: an API key with the admin scope over every tenant there"),
    setting("edge.poll_interval", Text, None, "Read the edge's tenant directory for new changes this often [default: 1s]"),
    setting("auth.jwks_url", Text, Some("jwks-url"), "Accept JWTs signed by the keys of this JWKS (RS256, ES256), e.g. https://auth.example.com/.well-known/jwks.json"),
    setting("auth.jwt_secret", Text, Some("jwt-secret"), "Accept HS256 JWTs signed with this shared secret (at least 32 bytes)"),
    setting("auth.issuer", Text, Some("jwt-issuer"), "A JWT's `iss` must be this"),
    setting("auth.audience", Text, Some("jwt-audience"), "A JWT's `aud` must include this"),
    setting("auth.tenant_claim", Text, Some("tenant-claim"), "A database per user: a JWT reaches the one tenant named by this claim (e.g. sub), encoded as docs/auth.md says"),
    setting("auth.jwks_refresh", Text, Some("jwks-refresh"), "Fetch the JWKS again this often [default: 5m]"),
    setting("auth.allowed_origins", List, Some("allowed-origins"), "Origins whose web pages may call the server, comma-separated, or * [default: the server's own pages only]"),
    setting("auth.allowed_hosts", List, Some("allowed-hosts"), "Host names the server answers besides IP addresses, localhost and the base domain, comma-separated"),
    setting("auth.insecure_no_auth", Bool, Some("insecure-no-auth"), "Serve without auth on addresses other than loopback: anyone who reaches the port is an administrator"),
];

/// The one earlier flag that took no value (the others took one each).
const OLD_SWITCH: &str = "insecure-no-auth";

/// A setting's flag and environment variable, made once from its key.
struct Names {
    flag: String,
    env: String,
    old_id: Option<String>,
    old_env: Option<String>,
}

static NAMES: LazyLock<Vec<Names>> = LazyLock::new(|| {
    SETTINGS
        .iter()
        .map(|s| Names {
            flag: flag_of(s.key),
            env: env_of(s.key),
            old_id: s.old_flag.map(|old| format!("old {old}")),
            old_env: s.old_flag.map(env_of),
        })
        .collect()
});

/// `tenants.max_open` → `tenants-max-open`.
fn flag_of(key: &str) -> String {
    key.replace(['.', '_'], "-")
}

/// `tenants.max_open` (or the old flag `max-open-tenants`) →
/// `TIDELAKE_TENANTS_MAX_OPEN`.
fn env_of(key: &str) -> String {
    format!("TIDELAKE_{}", key.replace(['.', '-'], "_").to_ascii_uppercase())
}

/// The configuration, as the file, the environment and the flags give it.
/// Every key is optional; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Option<String>,
    pub pg_listen: Option<String>,
    pub tenant_pg_listen: Option<String>,
    pub pg_tls_cert: Option<PathBuf>,
    pub pg_tls_key: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// The deployment's migrations folder.
    pub migrations: Option<PathBuf>,
    /// Where an earlier version read the five keys above: still read, with
    /// a warning; the top-level keys win.
    pub server: Option<OldServerSection>,
    #[serde(default)]
    pub tenants: TenantsSection,
    #[serde(default)]
    pub capture: CaptureSection,
    #[serde(default)]
    pub catalog: CatalogSection,
    #[serde(default)]
    pub lake: LakeSection,
    #[serde(default)]
    pub query: QuerySection,
    #[serde(default)]
    pub archive: ArchiveSection,
    #[serde(default)]
    pub postgres: PostgresSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub edge: EdgeSection,
}

/// The edge Worker whose tenants' history the lake takes too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSection {
    pub url: Option<String>,
    pub token: Option<String>,
    pub poll_interval: Option<Span>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OldServerSection {
    pub listen: Option<String>,
    pub pg_listen: Option<String>,
    pub pg_tls_cert: Option<PathBuf>,
    pub pg_tls_key: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsSection {
    pub hibernate_after: Option<Span>,
    pub max_open: Option<usize>,
    pub max_body_bytes: Option<Size>,
    pub base_domain: Option<String>,
    pub blocked_names: Option<Vec<String>>,
    pub queue_depth: Option<usize>,
    pub spares: Option<usize>,
    pub queue_timeout: Option<Span>,
    pub ws_send_timeout: Option<Span>,
    pub idle_in_transaction_timeout: Option<Span>,
    pub statement_timeout: Option<Span>,
    pub max_result_bytes: Option<Size>,
    pub max_result_rows: Option<u64>,
    pub ws_max_in_flight: Option<usize>,
    pub disk_quota: Option<Size>,
    pub memory: Option<Size>,
    /// `[tenants.overrides.<tenant>]`: settings of one tenant.
    #[serde(default)]
    pub overrides: BTreeMap<String, TenantOverrideSection>,
}

/// What one tenant may have of its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOverrideSection {
    pub statement_timeout: Option<Span>,
    pub disk_quota: Option<Size>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    pub enabled: Option<bool>,
    pub retention: Option<Span>,
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
pub struct LakeSection {
    pub enabled: Option<bool>,
    pub flush_interval: Option<Span>,
    pub batch_size: Option<u64>,
    pub partition: Option<String>,
    pub concurrency: Option<usize>,
    pub max_lag: Option<Span>,
    pub min_commit_changes: Option<u64>,
    pub maintenance_interval: Option<OrOff<Span>>,
    pub target_file_size: Option<Size>,
    pub min_compact_files: Option<usize>,
    pub max_manifests: Option<usize>,
    pub snapshot_retention: Option<Span>,
    pub orphan_age: Option<Span>,
    pub checkpoint_changes: Option<OrOff<Positive>>,
}

/// The lake query service's limits (docs/query.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySection {
    pub memory: Option<Size>,
    pub timeout: Option<Span>,
    pub max_buckets: Option<u64>,
    pub max_result_rows: Option<u64>,
    pub max_result_bytes: Option<Size>,
}

/// Base backups and the cold tier.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSection {
    pub location: Option<String>,
    pub cold_after: Option<OrOff<Span>>,
    pub disk_budget: Option<Size>,
    pub backup_interval: Option<OrOff<Span>>,
    pub backup_retention: Option<Span>,
    pub backup_min_interval: Option<Span>,
    pub schema_backups: Option<bool>,
    /// S3 properties; the catalog's are used when this is empty.
    #[serde(default)]
    pub storage: BTreeMap<String, String>,
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

/// Who may call the server (docs/auth.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub jwks_url: Option<String>,
    pub jwt_secret: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub tenant_claim: Option<String>,
    pub jwks_refresh: Option<Span>,
    pub allowed_origins: Option<Vec<String>>,
    pub allowed_hosts: Option<Vec<String>>,
    pub insecure_no_auth: Option<bool>,
}

/// A value read from text — a string, or a bare number in the file — by
/// its own rules.
trait FromText: Sized {
    fn from_text(text: &str) -> Result<Self, String>;
}

/// Reads any [`FromText`] value from a string or a number.
struct TextVisitor<T>(std::marker::PhantomData<T>);

impl<T: FromText> de::Visitor<'_> for TextVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string or a number")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        T::from_text(text).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
        self.visit_str(&n.to_string())
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        self.visit_str(&n.to_string())
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<T, E> {
        self.visit_str(&n.to_string())
    }
}

macro_rules! deserialize_from_text {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(TextVisitor(std::marker::PhantomData))
            }
        }
    )*};
}

/// A duration: `250ms`, `30s`, `5m`, `2h`, `7d`, `1h 30m`, or a bare
/// number of seconds (`2`, `0.5`).
#[derive(Clone, Copy, Debug)]
pub struct Span(pub Duration);

/// A size: `20GB`, `512MiB`, `1.5 GiB`, or a bare number of bytes.
#[derive(Clone, Copy, Debug)]
pub struct Size(pub u64);

/// A number of changes, at least one.
#[derive(Clone, Copy, Debug)]
pub struct Positive(pub u64);

/// A value, or `off`.
#[derive(Clone, Copy, Debug)]
pub enum OrOff<T> {
    Off,
    On(T),
}

impl<T> OrOff<T> {
    fn into_option(self) -> Option<T> {
        match self {
            OrOff::Off => None,
            OrOff::On(value) => Some(value),
        }
    }
}

impl FromText for Span {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_duration(text).map(Span)
    }
}

impl FromText for Size {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_bytes(text).map(Size)
    }
}

impl FromText for Positive {
    fn from_text(text: &str) -> Result<Self, String> {
        text.trim().parse::<u64>().ok().filter(|n| *n > 0).map(Positive).ok_or_else(|| format!("{text:?} is not a positive number of changes"))
    }
}

impl<T: FromText> FromText for OrOff<T> {
    fn from_text(text: &str) -> Result<Self, String> {
        if text.trim() == "off" { Ok(OrOff::Off) } else { T::from_text(text).map(OrOff::On).map_err(|e| format!("{e}, or `off`")) }
    }
}

deserialize_from_text!(Span, Size, Positive, OrOff<Span>, OrOff<Positive>);

/// A flag's or an environment variable's text as the value its kind reads:
/// text the setting's type cannot read stays text, so that the error names
/// the setting and its source.
fn value_of(kind: Kind, text: &str) -> Value {
    match kind {
        Text => Value::from(text.to_owned()),
        Count => text.trim().parse::<u64>().map_or_else(|_| Value::from(text.to_owned()), Value::from),
        Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Value::from(true),
            "false" | "0" | "no" | "off" => Value::from(false),
            _ => Value::from(text.to_owned()),
        },
        List => Value::from(
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::from(s.to_owned())).collect::<Vec<_>>(),
        ),
    }
}

/// Settings given by the environment or by flags, as a figment provider
/// whose errors name the variable or the flag.
struct Given {
    source: &'static str,
    /// Key path → the name the source knows it by.
    name_of: fn(&[&str]) -> String,
    values: Dict,
}

impl Given {
    fn new(source: &'static str, name_of: fn(&[&str]) -> String) -> Self {
        Given { source, name_of, values: Dict::new() }
    }

    fn set(&mut self, setting: &Setting, text: &str) {
        let value = value_of(setting.kind, text);
        match setting.key.split_once('.') {
            None => {
                self.values.insert(setting.key.to_owned(), value);
            }
            Some((section, name)) => {
                let section = self.values.entry(section.to_owned()).or_insert_with(|| Value::from(Dict::new()));
                if let Value::Dict(_, dict) = section {
                    dict.insert(name.to_owned(), value);
                }
            }
        }
    }

    fn has(&self, key: &str) -> bool {
        match key.split_once('.') {
            None => self.values.contains_key(key),
            Some((section, name)) => matches!(self.values.get(section), Some(Value::Dict(_, d)) if d.contains_key(name)),
        }
    }

    /// The settings of the environment `vars`, under their names or (with
    /// a warning) an earlier version's.
    fn environment(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars: BTreeMap<String, String> = vars.into_iter().filter(|(k, _)| k.starts_with("TIDELAKE_")).collect();
        let mut given = Given::new("environment variable", |path| env_of(&path.join(".")));
        for (setting, names) in SETTINGS.iter().zip(NAMES.iter()) {
            if let Some(text) = vars.get(&names.env) {
                given.set(setting, text);
            }
            let Some(old) = names.old_env.as_ref().filter(|old| vars.contains_key(*old)) else { continue };
            if given.has(setting.key) {
                tracing::warn!("{old} is ignored: {} is set too (it is the new name of the setting)", names.env);
            } else {
                tracing::warn!("{old} is an old name: it is read as {}, write that instead", names.env);
                given.set(setting, &vars[old]);
            }
        }
        given
    }
}

impl Provider for Given {
    fn metadata(&self) -> Metadata {
        let name_of = self.name_of;
        Metadata::named(self.source).interpolater(move |_, path| name_of(path))
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// The config file (`--config`), and the settings given as flags: every
/// command that reads settings takes them.
#[derive(Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    /// (index into SETTINGS, text), in the order given.
    flags: Vec<(usize, String)>,
}

impl Overrides {
    fn provider(&self) -> Given {
        let mut given = Given::new("command-line flag", |path| format!("--{}", flag_of(&path.join("."))));
        for (index, text) in &self.flags {
            given.set(&SETTINGS[*index], text);
        }
        given
    }
}

impl clap::Args for Overrides {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        use clap::{Arg, ArgAction};
        let mut cmd = cmd.arg(
            Arg::new("config")
                .long("config")
                .env("TIDELAKE_CONFIG")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML config file (docs/configuration.md)"),
        );
        for (setting, names) in SETTINGS.iter().zip(NAMES.iter()) {
            let help = format!("{} [env: {}]", setting.help, names.env);
            let mut arg = Arg::new(setting.key).long(names.flag.as_str()).help(help).value_name(match setting.kind {
                Count => "N",
                Bool => "BOOL",
                List => "LIST",
                Text => "VALUE",
            });
            arg = match setting.kind {
                // `--lake-enabled` alone is `true`; a value needs `=`.
                Bool => arg.num_args(0..=1).require_equals(true).default_missing_value("true"),
                List => arg.action(ArgAction::Append),
                Count | Text => arg,
            };
            cmd = cmd.arg(arg);
            if let (Some(old), Some(id)) = (setting.old_flag, names.old_id.as_deref()) {
                let old_arg = Arg::new(id).long(old).hide(true);
                cmd = cmd.arg(if old == OLD_SWITCH { old_arg.action(ArgAction::SetTrue) } else { old_arg });
            }
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for Overrides {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut overrides = Overrides { config: matches.get_one::<PathBuf>("config").cloned(), flags: Vec::new() };
        for (index, (setting, names)) in SETTINGS.iter().zip(NAMES.iter()).enumerate() {
            let new = matches.get_many::<String>(setting.key).map(|values| values.cloned().collect::<Vec<_>>().join(","));
            let old = match (setting.old_flag, names.old_id.as_deref()) {
                (Some(OLD_SWITCH), Some(id)) => matches.get_flag(id).then(|| "true".to_owned()),
                (_, Some(id)) => matches.get_one::<String>(id).cloned(),
                (_, None) => None,
            };
            if let (Some(_), Some(old_flag)) = (&old, setting.old_flag) {
                if new.is_some() {
                    tracing::warn!("--{old_flag} is ignored: --{} is given too (it is the new name of the setting)", names.flag);
                } else {
                    tracing::warn!("--{old_flag} is an old name: it is read as --{}, write that instead", names.flag);
                }
            }
            if let Some(text) = new.or(old) {
                overrides.flags.push((index, text));
            }
        }
        Ok(overrides)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

pub struct Settings {
    pub listen: SocketAddr,
    /// None: no Postgres wire front.
    pub pg_listen: Option<SocketAddr>,
    /// None: the tenants are not served over the Postgres wire protocol.
    pub tenant_pg_listen: Option<SocketAddr>,
    /// The wire front's TLS certificate chain and key files.
    pub pg_tls: Option<(PathBuf, PathBuf)>,
    pub oltp: OltpConfig,
    pub catalog: CatalogConfig,
    /// None: the lake shipper is off.
    pub lake: Option<ShipperConfig>,
    pub maintenance: MaintenanceConfig,
    pub query: query_service::Limits,
    pub auth: AuthSettings,
    /// None: no edge's history is shipped.
    pub edge: Option<EdgeSettings>,
    /// The deployment's migrations folder (read into `oltp.migrations`).
    pub migrations_dir: Option<PathBuf>,
}

/// How callers prove who they are, and which pages and hosts are served.
pub struct AuthSettings {
    pub jwt: auth::JwtConfig,
    pub browser: auth::http::Browser,
    pub insecure_no_auth: bool,
}

impl Settings {
    /// The settings of the config file, this process's environment and the
    /// flags.
    pub fn load(overrides: Overrides) -> Result<Self> {
        Self::load_from(&overrides, std::env::vars())
    }

    fn load_from(overrides: &Overrides, env: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut figment = Figment::new();
        if let Some(path) = &overrides.config {
            // figment reads a missing file as an empty one.
            std::fs::metadata(path).with_context(|| format!("read config file {}", path.display()))?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let figment = figment.merge(Given::environment(env)).merge(overrides.provider());
        let config: Config = figment.extract().map_err(|e| {
            let errors = e.into_iter().map(|e| match &e.metadata {
                Some(metadata) if !e.path.is_empty() => format!("{}: {}", spelled(metadata, &e.path), e.kind),
                _ => e.to_string(),
            });
            anyhow::anyhow!("invalid configuration: {}", errors.collect::<Vec<_>>().join("; "))
        })?;
        Self::from_config(config, &Origins(&figment))
    }

    fn from_config(config: Config, origins: &Origins) -> Result<Self> {
        let server = config.server.unwrap_or_default();
        if let Some(path) = origins.file_with("server") {
            tracing::warn!(
                "{path}: the [server] section is an old name: write its keys (listen, pg_listen, pg_tls_cert, pg_tls_key, data_dir) at the top of the file"
            );
        }
        let data_dir = config.data_dir.or(server.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen_text = config.listen.or(server.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().map_err(|_| origins.invalid("listen", format!("{listen_text:?} is not an address like 127.0.0.1:7432")))?;
        let pg_listen = match config.pg_listen.or(server.pg_listen).unwrap_or_else(|| DEFAULT_PG_LISTEN.to_owned()).as_str() {
            "off" | "" => None,
            text => Some(text.parse().map_err(|_| origins.invalid("pg_listen", format!("{text:?} is not an address like 127.0.0.1:7433, or `off`")))?),
        };
        let tenant_pg_listen = match config.tenant_pg_listen.unwrap_or_else(|| DEFAULT_TENANT_PG_LISTEN.to_owned()).as_str() {
            "off" | "" => None,
            text => Some(text.parse().map_err(|_| origins.invalid("tenant_pg_listen", format!("{text:?} is not an address like 127.0.0.1:7434, or `off`")))?),
        };
        let pg_tls = match (config.pg_tls_cert.or(server.pg_tls_cert), config.pg_tls_key.or(server.pg_tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => anyhow::bail!("the wire front's TLS needs both pg_tls_cert and pg_tls_key"),
        };

        let mut catalog = CatalogConfig::in_data_dir(&data_dir);
        let cat = config.catalog;
        if let Some(name) = cat.name {
            catalog.name = name;
        }
        if let Some(uri) = cat.uri {
            catalog.uri = uri;
        }
        if let Some(warehouse) = cat.warehouse {
            catalog.warehouse = warehouse;
        }
        catalog.storage = cat.storage.into_iter().collect();

        let mut oltp = OltpConfig::new(data_dir);
        let t = config.tenants;
        if let Some(Span(d)) = t.hibernate_after {
            oltp.hibernate_after = d;
        }
        if let Some(n) = t.max_open {
            oltp.max_open_tenants = origins.at_least("tenants.max_open", n, 1)?;
        }
        if let Some(Size(n)) = t.max_body_bytes {
            oltp.max_body_bytes = usize::try_from(origins.at_least("tenants.max_body_bytes", n, 1)?).unwrap_or(usize::MAX);
        }
        oltp.base_domain = t.base_domain;
        if let Some(names) = t.blocked_names {
            oltp.blocked_names = names;
        }
        if let Some(n) = t.queue_depth {
            oltp.tenant_queue_depth = origins.at_least("tenants.queue_depth", n, 1)?;
        }
        if let Some(n) = t.spares {
            oltp.spare_tenants = n;
        }
        if let Some(Span(d)) = t.queue_timeout {
            oltp.queue_timeout = d;
        }
        if let Some(Span(d)) = t.ws_send_timeout {
            oltp.ws_send_timeout = d;
        }
        if let Some(span) = t.idle_in_transaction_timeout {
            oltp.idle_in_transaction_timeout = origins.positive("tenants.idle_in_transaction_timeout", span)?;
        }
        if let Some(span) = t.statement_timeout {
            oltp.statement_timeout = origins.positive("tenants.statement_timeout", span)?;
        }
        if let Some(Size(n)) = t.max_result_bytes {
            oltp.max_result_bytes = origins.at_least("tenants.max_result_bytes", n, 1)?;
        }
        if let Some(n) = t.max_result_rows {
            oltp.max_result_rows = origins.at_least("tenants.max_result_rows", n, 1)?;
        }
        let migrations_dir = config.migrations;
        if let Some(dir) = &migrations_dir {
            let set = oltp_do::migrations::load(dir).map_err(|e| anyhow::anyhow!("migrations: {e}"))?;
            oltp.migrations = Some(std::sync::Arc::new(set));
        }
        if let Some(n) = t.ws_max_in_flight {
            oltp.ws_max_in_flight = origins.at_least("tenants.ws_max_in_flight", n, 1)?;
        }
        if let Some(Size(n)) = t.disk_quota {
            oltp.tenant_disk_quota = Some(n);
        }
        if let Some(Size(n)) = t.memory {
            oltp.tenant_memory = origins.at_least("tenants.memory", n, 64 << 20).map_err(|_| origins.invalid("tenants.memory", "must be at least 64MiB".to_owned()))?;
        }
        for (tenant, o) in t.overrides {
            oltp_do::TenantId::parse(&tenant).map_err(|e| anyhow::anyhow!("tenants.overrides.{tenant}: {e}"))?;
            let statement_timeout = match o.statement_timeout {
                Some(span) => Some(origins.positive(&format!("tenants.overrides.{tenant}.statement_timeout"), span)?),
                None => None,
            };
            let settings = oltp_do::config::TenantOverrides { statement_timeout, disk_quota: o.disk_quota.map(|Size(n)| n) };
            oltp.tenant_overrides.insert(tenant, settings);
        }
        let c = config.capture;
        if let Some(enabled) = c.enabled {
            oltp.engine.capture = enabled;
        }
        if let Some(Span(d)) = c.retention {
            oltp.change_retention = d;
        }
        let p = config.postgres;
        if let Some(v) = p.shared_buffers {
            oltp.engine.shared_buffers = v;
        }
        if let Some(v) = p.max_wal_size {
            oltp.engine.max_wal_size = v;
        }
        oltp.engine.extra = p.settings;

        let l = config.lake;
        let mut shipper = ShipperConfig::default();
        if let Some(Span(d)) = l.flush_interval {
            shipper.flush_interval = d;
        }
        if let Some(n) = l.batch_size {
            shipper.batch_size = origins.at_least("lake.batch_size", n, 1)?;
        }
        if let Some(text) = l.partition {
            shipper.partitioning = text.parse().map_err(|e: String| origins.invalid("lake.partition", e))?;
        }
        if let Some(n) = l.concurrency {
            shipper.concurrency = origins.at_least("lake.concurrency", n, 1)?;
        }
        if let Some(Span(d)) = l.max_lag {
            shipper.max_lag = d;
        }
        if let Some(n) = l.min_commit_changes {
            shipper.min_commit_changes = n;
        }
        let mut maintenance = MaintenanceConfig::default();
        if let Some(interval) = l.maintenance_interval {
            maintenance.interval = interval.into_option().map(|Span(d)| d);
        }
        if let Some(Size(n)) = l.target_file_size {
            maintenance.target_file_bytes = n.max(1024);
        }
        if let Some(n) = l.min_compact_files {
            maintenance.min_input_files = origins.at_least("lake.min_compact_files", n, 2)?;
        }
        if let Some(n) = l.max_manifests {
            maintenance.max_manifests = n;
        }
        if let Some(Span(d)) = l.snapshot_retention {
            maintenance.snapshot_retention = d;
        }
        if let Some(Span(d)) = l.orphan_age {
            maintenance.orphan_age = d;
        }
        if let Some(changes) = l.checkpoint_changes {
            maintenance.checkpoint_changes = changes.into_option().map(|Positive(n)| n);
        }
        anyhow::ensure!(
            l.enabled != Some(true) || oltp.engine.capture,
            "{} ships the change log: it needs capture.enabled",
            origins.name("lake.enabled")
        );
        let lake = (l.enabled.unwrap_or(true) && oltp.engine.capture).then_some(shipper);

        let a = config.archive;
        if let Some(location) = a.location {
            oltp.archive.location = location;
        }
        oltp.archive.storage = if a.storage.is_empty() { catalog.storage.clone().into_iter().collect() } else { a.storage };
        if let Some(after) = a.cold_after {
            oltp.cold_after = after.into_option().map(|Span(d)| d);
        }
        if let Some(Size(n)) = a.disk_budget {
            oltp.disk_budget = Some(n);
        }
        if let Some(interval) = a.backup_interval {
            oltp.backup_interval = interval.into_option().map(|Span(d)| d);
        }
        if let Some(Span(d)) = a.backup_retention {
            oltp.backup_retention = d;
        }
        if let Some(on) = a.schema_backups {
            oltp.schema_backups = on;
        }
        if let Some(Span(d)) = a.backup_min_interval {
            oltp.backup_min_interval = d;
        }

        let q = config.query;
        let mut query = query_service::Limits::default();
        if let Some(Size(n)) = q.memory {
            let n = origins.at_least("query.memory", n, 1 << 20).map_err(|_| origins.invalid("query.memory", "must be at least 1MiB".to_owned()))?;
            query.memory = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(span) = q.timeout {
            query.timeout = origins.positive("query.timeout", span)?;
        }
        if let Some(n) = q.max_buckets {
            query.max_buckets = origins.at_least("query.max_buckets", n, 1)?;
        }
        if let Some(n) = q.max_result_rows {
            query.max_result_rows = origins.at_least("query.max_result_rows", n, 1)?;
        }
        if let Some(Size(n)) = q.max_result_bytes {
            query.max_result_bytes = origins.at_least("query.max_result_bytes", n, 1)?;
        }

        let u = config.auth;
        let jwt = auth::JwtConfig {
            jwks_url: u.jwks_url,
            hs256_secret: u.jwt_secret,
            issuer: u.issuer,
            audience: u.audience,
            tenant_claim: u.tenant_claim,
            jwks_refresh: match u.jwks_refresh {
                Some(span) => origins.positive("auth.jwks_refresh", span)?,
                None => Duration::from_secs(300),
            },
        };
        let browser = auth::http::Browser {
            allowed_origins: u.allowed_origins.unwrap_or_default(),
            allowed_hosts: u.allowed_hosts.unwrap_or_default(),
            base_domain: oltp.base_domain.clone(),
        };
        let auth = AuthSettings { jwt, browser, insecure_no_auth: u.insecure_no_auth.unwrap_or(false) };

        let e = config.edge;
        let edge = match e.url.filter(|url| !url.is_empty()) {
            Some(url) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) || url.parse::<reqwest::Url>().is_err() {
                    return Err(origins.invalid("edge.url", format!("{url:?} is not an http:// or https:// address")));
                }
                anyhow::ensure!(
                    lake.is_some(),
                    "{} ships the edge's history into the lake: it needs lake.enabled",
                    origins.name("edge.url")
                );
                let poll_interval = match e.poll_interval {
                    Some(span) => origins.positive("edge.poll_interval", span)?,
                    None => Duration::from_secs(1),
                };
                Some(EdgeSettings { url, token: e.token, poll_interval })
            }
            None => None,
        };
        Ok(Self { listen, pg_listen, tenant_pg_listen, pg_tls, oltp, catalog, lake, maintenance, query, auth, edge, migrations_dir })
    }
}

/// A key as its source spells it, and the source: `--tenants-max-open
/// (command-line flag)`, `tenants.max_open (in /etc/tidelake.toml)`.
fn spelled<K: AsRef<str>>(metadata: &Metadata, path: &[K]) -> String {
    match &metadata.source {
        // The file's own spelling is the key (figment's would add the profile).
        Some(source) => format!("{} (in {source})", path.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(".")),
        None => format!("{} ({})", metadata.interpolate(&Profile::Default, path), metadata.name),
    }
}

/// Where each value came from, for errors that name the setting as its
/// source spells it (`--tenants-max-open`, `TIDELAKE_TENANTS_MAX_OPEN`, or
/// the key in the config file).
struct Origins<'a>(&'a Figment);

impl Origins<'_> {
    fn name(&self, key: &str) -> String {
        match self.0.find_metadata(key) {
            Some(metadata) => spelled(metadata, &key.split('.').collect::<Vec<_>>()),
            None => key.to_owned(),
        }
    }

    /// The config file, if it has this key.
    fn file_with(&self, key: &str) -> Option<String> {
        let metadata = self.0.find_metadata(key)?;
        metadata.source.as_ref().map(ToString::to_string)
    }

    fn invalid(&self, key: &str, message: String) -> anyhow::Error {
        anyhow::anyhow!("{}: {message}", self.name(key))
    }

    fn at_least<T: PartialOrd + std::fmt::Display>(&self, key: &str, value: T, least: T) -> Result<T> {
        if value < least {
            return Err(self.invalid(key, format!("must be at least {least}")));
        }
        Ok(value)
    }

    fn positive(&self, key: &str, Span(d): Span) -> Result<Duration> {
        if d.is_zero() {
            return Err(self.invalid(key, "must be longer than zero".to_owned()));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        overrides: Overrides,
    }

    fn flags(args: &[&str]) -> Overrides {
        Cli::try_parse_from(std::iter::once("tidelake").chain(args.iter().copied())).expect("flags parse").overrides
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tidelake.toml");
        std::fs::write(&path, text).expect("write config");
        (dir, path)
    }

    fn error(result: Result<Settings>) -> String {
        match result {
            Ok(_) => panic!("settings were accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let (_dir, path) = config_file("[tenants]\nmax_open = 10\nhibernate_after = \"1m\"\n[lake]\nbatch_size = 7\n");
        let config = path.to_str().unwrap();
        let file_only = Settings::load_from(&flags(&["--config", config]), env(&[])).unwrap();
        assert_eq!(file_only.oltp.max_open_tenants, 10);
        assert_eq!(file_only.oltp.hibernate_after, Duration::from_secs(60));
        let with_env = Settings::load_from(&flags(&["--config", config]), env(&[("TIDELAKE_TENANTS_MAX_OPEN", "20")])).unwrap();
        assert_eq!(with_env.oltp.max_open_tenants, 20);
        assert_eq!(with_env.lake.as_ref().map(|l| l.batch_size), Some(7));
        let with_flag = Settings::load_from(
            &flags(&["--config", config, "--tenants-max-open", "30", "--tenants-hibernate-after", "5s"]),
            env(&[("TIDELAKE_TENANTS_MAX_OPEN", "20")]),
        )
        .unwrap();
        assert_eq!(with_flag.oltp.max_open_tenants, 30);
        assert_eq!(with_flag.oltp.hibernate_after, Duration::from_secs(5));
        assert_eq!(with_flag.lake.as_ref().map(|l| l.batch_size), Some(7));
    }

    #[test]
    fn every_setting_is_read_from_its_flag_and_its_variable() {
        // One value each kind reads; the settings are compared by the file's
        // key, so the three names of a setting reach the same field.
        let value = |s: &Setting| match (s.kind, s.key) {
            (Bool, "lake.enabled") => "false",
            (Bool, _) => "true",
            (Count, _) => "3",
            (List, _) => "a,b",
            (Text, "listen") => "127.0.0.1:1",
            (Text, "pg_listen") => "127.0.0.1:2",
            (Text, "tenant_pg_listen") => "127.0.0.1:3",
            (Text, key) if key.contains("timeout") || key.contains("after") || key.contains("interval") || key.contains("retention") || key.contains("lag") || key.contains("age") || key.contains("refresh") => "7s",
            (Text, "lake.partition") => "hour",
            (Text, key) if key.contains("bytes") || key.contains("size") || key.contains("quota") || key.contains("memory") || key.contains("budget") => "70MiB",
            (Text, "lake.checkpoint_changes") => "5",
            // Empty: no edge (the lake is off here; the edge's history needs it).
            (Text, "edge.url") => "",
            // A folder without migrations (no .sql file).
            (Text, "migrations") => concat!(env!("CARGO_MANIFEST_DIR"), "/docs"),
            (Text, _) => "x",
        };
        let mut args = Vec::new();
        let mut vars = Vec::new();
        for (s, names) in SETTINGS.iter().zip(NAMES.iter()) {
            let v = value(s);
            args.push(if s.kind == Bool { format!("--{}={v}", names.flag) } else { format!("--{}", names.flag) });
            if s.kind != Bool {
                args.push(v.to_owned());
            }
            vars.push((names.env.clone(), v.to_owned()));
        }
        let from_flags = Settings::load_from(&flags(&args.iter().map(String::as_str).collect::<Vec<_>>()), env(&[])).unwrap();
        let from_env = Settings::load_from(&Overrides::default(), vars).unwrap();
        for settings in [&from_flags, &from_env] {
            assert_eq!(settings.listen.port(), 1);
            assert_eq!(settings.oltp.max_open_tenants, 3);
            assert_eq!(settings.oltp.hibernate_after, Duration::from_secs(7));
            assert_eq!(settings.oltp.tenant_memory, 70 << 20);
            assert_eq!(settings.oltp.blocked_names, ["a", "b"]);
            assert_eq!(settings.catalog.warehouse, "x");
            assert!(settings.lake.is_none(), "lake.enabled=false");
            assert_eq!(settings.oltp.migrations.as_ref().map(|m| m.list.len()), Some(0));
            assert_eq!(settings.maintenance.checkpoint_changes, Some(5));
            assert_eq!(settings.oltp.cold_after, Some(Duration::from_secs(7)));
            assert_eq!(settings.query.max_buckets, 3);
            assert_eq!(settings.auth.jwt.hs256_secret.as_deref(), Some("x"));
            assert_eq!(settings.auth.browser.allowed_hosts, ["a", "b"]);
            assert!(settings.auth.insecure_no_auth);
        }
    }

    #[test]
    fn old_names_are_still_read() {
        let old = Settings::load_from(
            &flags(&["--max-open-tenants", "5", "--lake", "false", "--insecure-no-auth", "--change-retention", "2m"]),
            env(&[("TIDELAKE_COLD_AFTER", "off"), ("TIDELAKE_WAREHOUSE", "file:///w")]),
        )
        .unwrap();
        assert_eq!(old.oltp.max_open_tenants, 5);
        assert!(old.lake.is_none());
        assert!(old.auth.insecure_no_auth);
        assert_eq!(old.oltp.change_retention, Duration::from_secs(120));
        assert_eq!(old.oltp.cold_after, None);
        assert_eq!(old.catalog.warehouse, "file:///w");
        // The new name wins over the old one.
        let both = Settings::load_from(&flags(&["--max-open-tenants", "5", "--tenants-max-open", "6"]), env(&[])).unwrap();
        assert_eq!(both.oltp.max_open_tenants, 6);
        let both = Settings::load_from(&Overrides::default(), env(&[("TIDELAKE_MAX_OPEN_TENANTS", "5"), ("TIDELAKE_TENANTS_MAX_OPEN", "6")])).unwrap();
        assert_eq!(both.oltp.max_open_tenants, 6);
        // The [server] section of earlier files.
        let (_dir, path) = config_file("[server]\nlisten = \"127.0.0.1:9\"\ndata_dir = \"/tmp/old\"\n");
        let old_file = Settings::load_from(&flags(&["--config", path.to_str().unwrap()]), env(&[])).unwrap();
        assert_eq!(old_file.listen.port(), 9);
        assert_eq!(old_file.oltp.data_dir, PathBuf::from("/tmp/old"));
    }

    #[test]
    fn errors_name_the_setting_as_its_source_spells_it() {
        let e = error(Settings::load_from(&Overrides::default(), env(&[("TIDELAKE_TENANTS_MAX_OPEN", "lots")])));
        assert!(e.contains("TIDELAKE_TENANTS_MAX_OPEN"), "{e}");
        let e = error(Settings::load_from(&flags(&["--tenants-hibernate-after", "soon"]), env(&[])));
        assert!(e.contains("--tenants-hibernate-after") && e.contains("invalid duration"), "{e}");
        let e = error(Settings::load_from(&flags(&["--tenants-max-open", "0"]), env(&[])));
        assert!(e.contains("--tenants-max-open") && e.contains("at least 1"), "{e}");
        let (_dir, path) = config_file("[tenants]\nmax_opne = 3\n");
        let e = error(Settings::load_from(&flags(&["--config", path.to_str().unwrap()]), env(&[])));
        assert!(e.contains("max_opne") && e.contains("tidelake.toml"), "{e}");
        let (_dir, path) = config_file("[query]\ntimeout = \"0s\"\n");
        let e = error(Settings::load_from(&flags(&["--config", path.to_str().unwrap()]), env(&[])));
        assert!(e.contains("query.timeout (in ") && !e.contains("default.") && e.contains("longer than zero"), "{e}");
        let e = error(Settings::load_from(&flags(&["--config", "/nonexistent/tidelake.toml"]), env(&[])));
        assert!(e.contains("/nonexistent/tidelake.toml"), "{e}");
        let e = error(Settings::load_from(&flags(&["--capture-enabled=false", "--lake-enabled"]), env(&[])));
        assert!(e.contains("--lake-enabled") && e.contains("capture.enabled"), "{e}");
    }

    #[test]
    fn an_edge_is_read_and_checked() {
        let edge = Settings::load_from(
            &flags(&["--edge-url", "https://tidelake.example.workers.dev", "--edge-poll-interval", "250ms"]),
            env(&[("TIDELAKE_EDGE_TOKEN", "tlk_secret")]),
        )
        .unwrap()
        .edge
        .unwrap();
        assert_eq!(edge.url, "https://tidelake.example.workers.dev");
        assert_eq!(edge.token.as_deref(), Some("tlk_secret"));
        assert_eq!(edge.poll_interval, Duration::from_millis(250));
        assert_eq!(Settings::load_from(&Overrides::default(), env(&[])).unwrap().edge.map(|e| e.poll_interval), None);
        let e = error(Settings::load_from(&flags(&["--edge-url", "tidelake.example.workers.dev"]), env(&[])));
        assert!(e.contains("--edge-url") && e.contains("https://"), "{e}");
        let e = error(Settings::load_from(&flags(&["--edge-url", "http://127.0.0.1:8787", "--lake-enabled=false"]), env(&[])));
        assert!(e.contains("--edge-url") && e.contains("lake.enabled"), "{e}");
        let e = error(Settings::load_from(&flags(&["--edge-url", "http://127.0.0.1:8787", "--edge-poll-interval", "0s"]), env(&[])));
        assert!(e.contains("--edge-poll-interval"), "{e}");
    }

    #[test]
    fn the_configuration_docs_name_every_setting() {
        let docs = include_str!("../docs/configuration.md");
        for (s, names) in SETTINGS.iter().zip(NAMES.iter()) {
            assert!(docs.contains(&format!("--{}", names.flag)), "docs/configuration.md lacks --{} ({})", names.flag, s.key);
        }
    }

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
