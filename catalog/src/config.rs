//! Where the catalog and the warehouse live.

use std::collections::HashMap;
use std::path::Path;

/// Catalog settings. The defaults put both in the data dir.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// The catalog's name in the SQL catalog tables (clients must use the same).
    pub name: String,
    /// SQL catalog URL: `sqlite:<path>` or `postgres://…`.
    pub uri: String,
    /// Where table data and metadata go: `file:///…` or `s3://bucket/prefix`.
    pub warehouse: String,
    /// Storage properties passed to the file IO (`s3.endpoint`,
    /// `s3.access-key-id`, `s3.secret-access-key`, `s3.region`,
    /// `s3.path-style-access`, …); also handed to REST clients in `config`.
    pub storage: HashMap<String, String>,
}

impl CatalogConfig {
    /// SQLite catalog and local warehouse under `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        let dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        Self {
            name: "tidelake".to_owned(),
            uri: format!("sqlite:{}?mode=rwc", dir.join("catalog.db").display()),
            warehouse: format!("file://{}", dir.join("warehouse").display()),
            storage: HashMap::new(),
        }
    }

    pub fn is_s3(&self) -> bool {
        self.warehouse.starts_with("s3://") || self.warehouse.starts_with("s3a://")
    }
}
