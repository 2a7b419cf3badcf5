//! The warehouse: the SQL catalog plus the file IO that reads and writes
//! table metadata and data, and the one commit path both the REST server and
//! the lake shipper use.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, MetadataLocation, TableIdent, TableRequirement, TableUpdate};
use iceberg_catalog_sql::{SqlCatalog, SqlCatalogBuilder};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use crate::config::CatalogConfig;
use crate::error::CatalogError;

pub struct Warehouse {
    config: CatalogConfig,
    catalog: SqlCatalog,
    /// Our own connection to the same catalog tables, for the
    /// compare-and-swap of a REST commit.
    pool: AnyPool,
}

impl Warehouse {
    /// Connect to (and if needed create) the catalog.
    pub async fn open(config: CatalogConfig) -> Result<Arc<Self>, CatalogError> {
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
        let catalog = SqlCatalogBuilder::default()
            .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
            .load(config.name.clone(), props)
            .await?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .connect(&config.uri)
            .await
            .map_err(|e| CatalogError::Internal(format!("connect catalog {}: {e}", config.uri)))?;
        Ok(Arc::new(Self { config, catalog, pool }))
    }

    pub fn config(&self) -> &CatalogConfig {
        &self.config
    }

    /// The catalog, for reads and for iceberg-rust transactions.
    pub fn catalog(&self) -> &SqlCatalog {
        &self.catalog
    }

    /// Apply a REST commit: check every requirement against the current
    /// metadata, apply the updates, write the new metadata file and swap the
    /// table's pointer only if nobody committed in between (409 otherwise).
    pub async fn commit(
        &self,
        ident: &TableIdent,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
    ) -> Result<(String, TableMetadata), CatalogError> {
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
        let metadata = builder
            .build()
            .map_err(|e| CatalogError::BadRequest(e.to_string()))?
            .metadata;
        let location = MetadataLocation::from_str(&current)?
            .with_next_version()
            .with_new_metadata(&metadata);
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
            return Err(CatalogError::CommitFailed(format!(
                "commit to {ident} conflicted with another commit; reload the table and retry"
            )));
        }
        Ok((location, metadata))
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

    /// Storage properties handed to REST clients so they can read and write
    /// the warehouse themselves.
    pub fn client_config(&self) -> HashMap<String, String> {
        self.config.storage.clone()
    }
}
