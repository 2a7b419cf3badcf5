//! The warehouse: the SQL catalog plus the file IO that reads and writes
//! table metadata and data, and the one commit path both the REST server and
//! the lake shipper use.
//!
//! Every namespace and table it creates, and every commit it applies, keeps
//! its files strictly inside the warehouse root (`location`): a location
//! elsewhere is refused before anything is written.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{
    Catalog, CatalogBuilder, MetadataLocation, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent,
    TableRequirement, TableUpdate,
};
use iceberg_catalog_sql::{SqlCatalog, SqlCatalogBuilder};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;
use sqlx::{AnyPool, Row};
use sqlx::any::AnyPoolOptions;

use crate::config::CatalogConfig;
use crate::error::CatalogError;
use crate::location::{LOCATION_PROPERTIES, NAMESPACE_LOCATION, Root};

/// Table property: remove metadata files that leave the metadata log.
pub const PROP_DELETE_AFTER_COMMIT: &str = "write.metadata.delete-after-commit.enabled";
/// Table property: how many earlier metadata files the log keeps.
pub const PROP_PREVIOUS_VERSIONS_MAX: &str = "write.metadata.previous-versions-max";

/// A file found by [`Warehouse::list_files`].
#[derive(Debug, Clone)]
pub struct ListedFile {
    /// Its location as table metadata writes it (`file:///…`, `s3://…`).
    pub path: String,
    pub size: u64,
    pub modified: SystemTime,
}

fn list_dir(dir: &std::path::Path, found: &mut Vec<ListedFile>) -> Result<(), CatalogError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CatalogError::Internal(format!("list {}: {e}", dir.display()))),
    };
    for entry in entries {
        let entry = entry.map_err(|e| CatalogError::Internal(format!("list {}: {e}", dir.display())))?;
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            list_dir(&entry.path(), found)?;
        } else if meta.is_file() {
            found.push(ListedFile {
                path: format!("file://{}", entry.path().display()),
                size: meta.len(),
                modified: meta.modified().unwrap_or(UNIX_EPOCH),
            });
        }
    }
    Ok(())
}

/// The warehouse as an iceberg-rust [`Catalog`] for transactions: reads go
/// to the SQL catalog, commits to [`Warehouse::commit`]; creating, dropping
/// and renaming are refused (the warehouse's own methods do them).
#[derive(Debug, Clone, Copy)]
pub struct Transactions<'a>(&'a Warehouse);

pub struct Warehouse {
    config: CatalogConfig,
    root: Root,
    catalog: SqlCatalog,
    /// Our own connection to the same catalog tables, for the
    /// compare-and-swap of a REST commit.
    pool: AnyPool,
    /// The runtime the catalog's tables run their I/O on (the one it was
    /// opened in), for the tables our commits return.
    runtime: iceberg::Runtime,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the configuration: it holds the object store's credentials.
        f.debug_struct("Warehouse").field("name", &self.config.name).field("warehouse", &self.config.warehouse).finish()
    }
}

impl Warehouse {
    /// Connect to (and if needed create) the catalog.
    pub async fn open(config: CatalogConfig) -> Result<Arc<Self>, CatalogError> {
        let root = Root::parse(&config.warehouse)?;
        if let Some(path) = config.uri.strip_prefix("sqlite:") {
            let path = path.split('?').next().unwrap_or(path);
            if let Some(parent) = std::path::Path::new(path).parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| CatalogError::Internal(format!("create {}: {e}", parent.display())))?;
            }
        }
        if let Some(dir) = config.warehouse.strip_prefix("file://") {
            std::fs::create_dir_all(dir)
                .map_err(|e| CatalogError::Internal(format!("create warehouse {dir}: {e}")))?;
        }
        let mut props = config.storage.clone();
        props.insert("uri".into(), config.uri.clone());
        props.insert("warehouse".into(), config.warehouse.clone());
        let bind = if config.uri.starts_with("postgres") { "DollarNumeric" } else { "QMark" };
        props.insert("sql_bind_style".into(), bind.into());
        let runtime = iceberg::Runtime::try_current()?;
        let catalog = SqlCatalogBuilder::default()
            .with_runtime(runtime.clone())
            .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
            .load(config.name.clone(), props)
            .await?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .connect(&config.uri)
            .await
            .map_err(|e| CatalogError::Internal(format!("connect catalog {}: {e}", config.uri)))?;
        Ok(Arc::new(Self { config, root, catalog, pool, runtime }))
    }

    pub fn config(&self) -> &CatalogConfig {
        &self.config
    }

    /// The catalog, for reads. Create namespaces and tables through
    /// [`Warehouse::create_namespace`] and [`Warehouse::create_table`],
    /// which keep them inside the warehouse, and commit iceberg-rust
    /// transactions through [`Warehouse::transactions`].
    pub fn catalog(&self) -> &SqlCatalog {
        &self.catalog
    }

    /// The catalog an iceberg-rust [`iceberg::transaction::Transaction`]
    /// commits through: its commits take [`Warehouse::commit`]'s path, so a
    /// commit that loses a race leaves no metadata file behind and one
    /// that drops files from the metadata log removes them.
    pub fn transactions(&self) -> Transactions<'_> {
        Transactions(self)
    }

    /// The warehouse root, for checking locations.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Where a namespace's tables go unless it says otherwise: its levels
    /// as directories below the root (each a plain path segment).
    pub fn namespace_location(&self, namespace: &NamespaceIdent) -> Result<String, CatalogError> {
        let levels: Vec<&str> = namespace.iter().map(String::as_str).collect();
        self.root.child(&levels)
    }

    /// Create a namespace whose levels are plain path segments and whose
    /// `location`, if it has one, is inside the warehouse.
    pub async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace, CatalogError> {
        self.namespace_location(namespace)?;
        self.check_namespace_properties(&properties)?;
        Ok(self.catalog.create_namespace(namespace, properties).await?)
    }

    /// Refuse namespace properties that would place tables outside the warehouse.
    pub fn check_namespace_properties(&self, properties: &HashMap<String, String>) -> Result<(), CatalogError> {
        match properties.get(NAMESPACE_LOCATION) {
            Some(location) => self.root.check("namespace location", location),
            None => Ok(()),
        }
    }

    /// Create a table inside the warehouse: at the location it asks for if
    /// that is inside, else below its namespace's `location` or directory.
    pub async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        mut creation: TableCreation,
    ) -> Result<Table, CatalogError> {
        let location = match creation.location.take() {
            Some(location) => location,
            None => {
                let properties = self.catalog.get_namespace(namespace).await?.properties().clone();
                let base = match properties.get(NAMESPACE_LOCATION) {
                    Some(base) => {
                        self.root.check("namespace location", base)?;
                        base.trim_end_matches('/').to_owned()
                    }
                    None => self.namespace_location(namespace)?,
                };
                crate::location::check_segment(&creation.name)
                    .map_err(|e| CatalogError::BadRequest(format!("table name {:?}: {e}", creation.name)))?;
                self.unused_location(namespace, &format!("{base}/{}", creation.name)).await?
            }
        };
        self.root.check("table location", &location)?;
        self.check_table_properties(&creation.properties)?;
        creation.location = Some(location);
        Ok(self.catalog.create_table(namespace, creation).await?)
    }

    /// `location`, or if a table of the namespace has its files there (a
    /// table renamed in the catalog keeps its files, so its old name's
    /// location is taken), a new location beside it.
    pub async fn unused_location(&self, namespace: &NamespaceIdent, location: &str) -> Result<String, CatalogError> {
        let sql = self.placeholders(
            "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ?",
        );
        let rows = sqlx::query(&sql)
            .bind(&self.config.name)
            .bind(namespace.join("."))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| CatalogError::Internal(format!("list table locations of {namespace}: {e}")))?;
        let inside = format!("{}/", location.trim_end_matches('/'));
        let taken = rows.iter().any(|row| {
            row.try_get::<Option<String>, _>(0).ok().flatten().is_some_and(|metadata| metadata.starts_with(&inside))
        });
        if !taken {
            return Ok(location.to_owned());
        }
        let unique = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        Ok(format!("{}-{unique:x}", location.trim_end_matches('/')))
    }

    /// Every table of the catalog with its current metadata file, in one
    /// read of the catalog's table (the Iceberg SQL catalog's `iceberg_tables`):
    /// (namespace, table, metadata location). A table's metadata location
    /// changes with every commit, so it versions what was read from it.
    pub async fn metadata_locations(&self) -> Result<Vec<(String, String, String)>, CatalogError> {
        let sql = self.placeholders(
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables WHERE catalog_name = ?",
        );
        let rows = sqlx::query(&sql)
            .bind(&self.config.name)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| CatalogError::Internal(format!("list the catalog's tables: {e}")))?;
        let read = |e: sqlx::Error| CatalogError::Internal(format!("read the catalog's tables: {e}"));
        let mut tables = Vec::with_capacity(rows.len());
        for row in &rows {
            // A table being created has no metadata yet.
            let Some(location) = row.try_get::<Option<String>, _>(2).map_err(read)? else { continue };
            tables.push((row.try_get(0).map_err(read)?, row.try_get(1).map_err(read)?, location));
        }
        Ok(tables)
    }

    fn check_table_properties(&self, properties: &HashMap<String, String>) -> Result<(), CatalogError> {
        for key in LOCATION_PROPERTIES {
            if let Some(location) = properties.get(key) {
                self.root.check(key, location)?;
            }
        }
        Ok(())
    }

    /// Refuse table metadata that puts or reads files outside the warehouse:
    /// its location, the location properties, manifest lists and statistics.
    pub fn check_metadata(&self, metadata: &TableMetadata) -> Result<(), CatalogError> {
        self.root.check("table location", metadata.location())?;
        self.check_table_properties(metadata.properties())?;
        for snapshot in metadata.snapshots() {
            self.root.check("manifest list", snapshot.manifest_list())?;
        }
        for statistics in metadata.statistics_iter() {
            self.root.check("statistics file", &statistics.statistics_path)?;
        }
        for statistics in metadata.partition_statistics_iter() {
            self.root.check("partition statistics file", &statistics.statistics_path)?;
        }
        Ok(())
    }

    /// Refuse a table whose location or data and metadata paths are not
    /// strictly inside `base` (a namespace's directory, for a writer that
    /// must stay in it).
    pub fn check_table_under(&self, base: &str, metadata: &TableMetadata) -> Result<(), CatalogError> {
        self.root.check_under(base, "table location", metadata.location())?;
        for key in LOCATION_PROPERTIES {
            if let Some(location) = metadata.properties().get(key) {
                self.root.check_under(base, key, location)?;
            }
        }
        Ok(())
    }

    /// Apply a REST commit: check every requirement against the current
    /// metadata, apply the updates, write the new metadata file and swap the
    /// table's pointer only if nobody committed in between (409 otherwise).
    /// Returns the table as committed.
    pub async fn commit(
        &self,
        ident: &TableIdent,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
    ) -> Result<Table, CatalogError> {
        let table: Table = self.catalog.load_table(ident).await?;
        for requirement in &requirements {
            requirement
                .check(Some(table.metadata()))
                .map_err(|e| CatalogError::CommitFailed(e.to_string()))?;
        }
        let current = table.metadata_location_result()?.to_owned();
        let mut builder = table.metadata().clone().into_builder(Some(current.clone()));
        for update in updates {
            builder = update
                .apply(builder)
                .map_err(|e| CatalogError::BadRequest(e.to_string()))?;
        }
        let built = builder.build().map_err(|e| CatalogError::BadRequest(e.to_string()))?;
        let (metadata, expired) = (built.metadata, built.expired_metadata_logs);
        self.check_metadata(&metadata)?;
        let location = MetadataLocation::from_str(&current)?
            .with_next_version()
            .with_new_metadata(&metadata);
        // Next to the current one, which an older release may have put
        // anywhere: checked like the rest.
        self.root.check("metadata location", &location.to_string())?;
        metadata.write_to(table.file_io(), &location).await?;
        let location = location.to_string();

        let sql = self.placeholders(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?",
        );
        let swapped = sqlx::query(&sql)
            .bind(&location)
            .bind(&current)
            .bind(&self.config.name)
            .bind(ident.namespace().join("."))
            .bind(ident.name())
            .bind(&current)
            .execute(&self.pool)
            .await
            .map_err(|e| CatalogError::Internal(format!("commit {ident}: {e}")))?;
        if swapped.rows_affected() == 0 {
            // Nobody will read the metadata file this commit wrote.
            let _ = table.file_io().delete(&location).await;
            return Err(CatalogError::CommitFailed(format!(
                "commit to {ident} conflicted with another commit; reload the table and retry"
            )));
        }
        // Metadata files that left the metadata log (its length is the
        // table's `write.metadata.previous-versions-max`) are removed when
        // the table asks for it, as Iceberg's own writers do.
        if metadata.properties().get(PROP_DELETE_AFTER_COMMIT).is_some_and(|v| v == "true") {
            for old in expired {
                if let Err(e) = table.file_io().delete(&old.metadata_file).await {
                    tracing::warn!(table = %ident, file = %old.metadata_file, "catalog: old metadata file not removed: {e}");
                }
            }
        }
        Ok(Table::builder()
            .identifier(ident.clone())
            .metadata(metadata)
            .metadata_location(location)
            .file_io(table.file_io().clone())
            .runtime(self.runtime.clone())
            .build()?)
    }

    /// Remove namespace properties (the SQL catalog's update only sets them).
    pub async fn remove_namespace_properties(
        &self,
        namespace: &iceberg::NamespaceIdent,
        keys: &[String],
    ) -> Result<(), CatalogError> {
        let sql = self.placeholders(
            "DELETE FROM iceberg_namespace_properties \
             WHERE catalog_name = ? AND namespace = ? AND property_key = ?",
        );
        for key in keys {
            sqlx::query(&sql)
                .bind(&self.config.name)
                .bind(namespace.join("."))
                .bind(key)
                .execute(&self.pool)
                .await
                .map_err(|e| CatalogError::Internal(format!("remove property {key}: {e}")))?;
        }
        Ok(())
    }

    /// `?` placeholders as the catalog database wants them.
    fn placeholders(&self, sql: &str) -> String {
        if !self.config.uri.starts_with("postgres") {
            return sql.to_owned();
        }
        let mut n = 0;
        sql.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    }

    /// Every file below `location` (a directory of the warehouse), with its
    /// size and when it was last written: what the lake's maintenance
    /// compares with what its tables reference.
    pub async fn list_files(&self, location: &str) -> Result<Vec<ListedFile>, CatalogError> {
        self.root.check("listed location", location)?;
        let prefix = format!("{}/", location.trim_end_matches('/'));
        if let Some(dir) = prefix.strip_prefix("file://") {
            let dir = std::path::PathBuf::from(dir);
            return tokio::task::spawn_blocking(move || {
                let mut found = Vec::new();
                list_dir(&dir, &mut found)?;
                Ok(found)
            })
            .await
            .map_err(|e| CatalogError::Internal(format!("list {location}: {e}")))?;
        }
        let rest = prefix
            .strip_prefix("s3://")
            .or_else(|| prefix.strip_prefix("s3a://"))
            .ok_or_else(|| CatalogError::Unsupported(format!("listing {location}")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let scheme = &prefix[..prefix.find("://").unwrap_or(0)];
        let op = self.s3_operator(bucket)?;
        let entries = op
            .list_with(key)
            .recursive(true)
            .await
            .map_err(|e| CatalogError::Internal(format!("list {location}: {e}")))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| ListedFile {
                path: format!("{scheme}://{bucket}/{}", e.path()),
                size: e.metadata().content_length(),
                modified: e.metadata().last_modified().map(SystemTime::from).unwrap_or(UNIX_EPOCH),
            })
            .collect())
    }

    /// An operator on `bucket` with the warehouse's S3 settings (the ones
    /// its file IO reads, same meanings).
    fn s3_operator(&self, bucket: &str) -> Result<opendal::Operator, CatalogError> {
        let storage = &self.config.storage;
        let mut builder = opendal::services::S3::default().bucket(bucket);
        if let Some(v) = storage.get("s3.endpoint") {
            builder = builder.endpoint(v);
        }
        if let Some(v) = storage.get("s3.region") {
            builder = builder.region(v);
        }
        if let Some(v) = storage.get("s3.access-key-id") {
            builder = builder.access_key_id(v);
        }
        if let Some(v) = storage.get("s3.secret-access-key") {
            builder = builder.secret_access_key(v);
        }
        // As Iceberg: virtual-hosted style unless path-style is asked for.
        if storage.get("s3.path-style-access").is_none_or(|v| v != "true") {
            builder = builder.enable_virtual_host_style();
        }
        Ok(opendal::Operator::new(builder)
            .map_err(|e| CatalogError::Internal(format!("s3 bucket {bucket}: {e}")))?
            .finish())
    }

    /// Storage properties handed to REST clients so they can read and write
    /// the warehouse themselves.
    /// What clients are told of the storage (the REST catalog's config
    /// and table loads): where it is, never a credential. Clients reading
    /// an object store bring their own credentials.
    pub fn client_config(&self) -> HashMap<String, String> {
        self.config
            .storage
            .iter()
            .filter(|(key, _)| !is_credential(key))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Whether a storage property is a credential (kept from clients).
fn is_credential(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "access-key", "session-token", "token", "password", "credential", "sas"]
        .iter()
        .any(|word| key.contains(word))
}

fn refused(what: &str) -> iceberg::Error {
    iceberg::Error::new(
        iceberg::ErrorKind::FeatureUnsupported,
        format!("{what} goes through the warehouse's own method, not a transaction"),
    )
}

#[async_trait::async_trait]
impl Catalog for Transactions<'_> {
    async fn list_namespaces(&self, parent: Option<&NamespaceIdent>) -> iceberg::Result<Vec<NamespaceIdent>> {
        self.0.catalog.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        _: &NamespaceIdent,
        _: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        Err(refused("creating a namespace"))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        self.0.catalog.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        self.0.catalog.namespace_exists(namespace).await
    }

    async fn update_namespace(&self, _: &NamespaceIdent, _: HashMap<String, String>) -> iceberg::Result<()> {
        Err(refused("updating a namespace"))
    }

    async fn drop_namespace(&self, _: &NamespaceIdent) -> iceberg::Result<()> {
        Err(refused("dropping a namespace"))
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        self.0.catalog.list_tables(namespace).await
    }

    async fn create_table(&self, _: &NamespaceIdent, _: TableCreation) -> iceberg::Result<Table> {
        Err(refused("creating a table"))
    }

    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        self.0.catalog.load_table(table).await
    }

    async fn drop_table(&self, _: &TableIdent) -> iceberg::Result<()> {
        Err(refused("dropping a table"))
    }

    async fn purge_table(&self, _: &TableIdent) -> iceberg::Result<()> {
        Err(refused("purging a table"))
    }

    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        self.0.catalog.table_exists(table).await
    }

    async fn rename_table(&self, _: &TableIdent, _: &TableIdent) -> iceberg::Result<()> {
        Err(refused("renaming a table"))
    }

    async fn register_table(&self, _: &TableIdent, _: String) -> iceberg::Result<Table> {
        Err(refused("registering a table"))
    }

    async fn update_table(&self, mut commit: TableCommit) -> iceberg::Result<Table> {
        let ident = commit.identifier().clone();
        self.0
            .commit(&ident, commit.take_requirements(), commit.take_updates())
            .await
            .map_err(|e| match e {
                // Transaction::commit reloads the table and tries again.
                CatalogError::CommitFailed(why) => {
                    iceberg::Error::new(iceberg::ErrorKind::CatalogCommitConflicts, why).with_retryable(true)
                }
                CatalogError::NoSuchTable(why) => iceberg::Error::new(iceberg::ErrorKind::TableNotFound, why),
                CatalogError::BadRequest(why) => iceberg::Error::new(iceberg::ErrorKind::DataInvalid, why),
                other => iceberg::Error::new(iceberg::ErrorKind::Unexpected, other.to_string()),
            })
    }
}
