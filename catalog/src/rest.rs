//! The Iceberg REST catalog API (Apache Iceberg REST OpenAPI spec), for the
//! endpoints clients use: config; namespaces (create, list, load, exists,
//! drop, properties); tables (create, list, load, exists, drop, rename,
//! commit with requirements, 409 on a conflicting commit). No prefix: paths
//! are `/v1/namespaces/…` under wherever the router is mounted. A location
//! outside the warehouse (a namespace's or table's `location`, a commit
//! moving a table or its data) is a 400 and nothing is created or changed.
//!
//! Who may do what: reads need `read` on the namespace's tenant (a
//! namespace is named by its tenant id; listings show only what the token
//! reaches); writes need `admin` over every tenant. What makes a table a
//! tenant's history is the shipper's alone, even for an administrator: the
//! `tidelake.*` properties (of namespaces and tables), locations once set,
//! and dropping or renaming a tenant's namespace or tables are a 403.

use std::collections::HashMap;
use std::sync::Arc;

use auth::Principal;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use iceberg::spec::{Schema, SortOrder, TableMetadata, UnboundPartitionSpec};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent, TableRequirement, TableUpdate};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::CatalogError;
use crate::warehouse::Warehouse;

type AppState = Arc<Warehouse>;
type Result<T> = std::result::Result<T, CatalogError>;

/// The REST catalog router (mount it at `/catalog`, or serve it alone).
pub fn router(warehouse: Arc<Warehouse>) -> Router {
    Router::new()
        .route("/v1/config", get(config))
        .route("/v1/namespaces", get(list_namespaces).post(create_namespace))
        .route(
            "/v1/namespaces/{ns}",
            get(load_namespace).head(namespace_exists).delete(drop_namespace),
        )
        .route("/v1/namespaces/{ns}/properties", post(update_properties))
        .route("/v1/namespaces/{ns}/tables", get(list_tables).post(create_table))
        .route(
            "/v1/namespaces/{ns}/tables/{table}",
            get(load_table).head(table_exists).delete(drop_table).post(commit_table),
        )
        .route("/v1/tables/rename", post(rename_table))
        .fallback(|| async {
            let body = json!({"error": {"message": "no such endpoint", "type": "NotFoundException", "code": 404}});
            (StatusCode::NOT_FOUND, Json(body))
        })
        .with_state(warehouse)
}

/// The caller of a request (401 without a valid token).
struct Who(Principal);

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = CatalogError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        Ok(Who(auth::http::caller(parts)?))
    }
}

impl Who {
    fn read(&self, namespace: &NamespaceIdent) -> Result<()> {
        let tenant = namespace.join(".");
        if self.0.may_read(&tenant) {
            Ok(())
        } else {
            Err(CatalogError::Forbidden(format!("this token does not reach namespace {tenant:?}")))
        }
    }

    fn write(&self) -> Result<()> {
        Ok(self.0.may_administer()?)
    }
}

/// Properties only the shipper writes: what makes a table a tenant's history.
const SHIPPER_PREFIX: &str = "tidelake.";

fn shippers<'a>(mut keys: impl Iterator<Item = &'a String>) -> bool {
    keys.any(|k| k.starts_with(SHIPPER_PREFIX))
}

fn shipper_only(what: &str) -> CatalogError {
    CatalogError::Forbidden(format!("{what}: only tidelake's shipper writes a tenant's history and its tidelake.* properties"))
}

/// The SQL catalog (ours and PyIceberg's) keeps a namespace alive with this
/// property; it is the catalog's bookkeeping, not the user's.
const EXISTS_MARKER: &str = "exists";

fn user_properties(properties: &HashMap<String, String>) -> HashMap<String, String> {
    properties
        .iter()
        .filter(|(k, _)| k.as_str() != EXISTS_MARKER)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Namespace levels are separated by the unit separator (0x1F) in paths.
fn namespace(raw: &str) -> Result<NamespaceIdent> {
    NamespaceIdent::from_vec(raw.split('\u{1f}').map(str::to_owned).collect())
        .map_err(|e| CatalogError::BadRequest(format!("invalid namespace {raw:?}: {e}")))
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| CatalogError::BadRequest(format!("invalid request body: {e}")))
}

async fn config(State(w): State<AppState>, _: Who) -> Json<Value> {
    Json(json!({
        "defaults": w.client_config(),
        "overrides": {},
        "endpoints": [
            "GET /v1/{prefix}/namespaces", "POST /v1/{prefix}/namespaces", "GET /v1/{prefix}/namespaces/{namespace}",
            "HEAD /v1/{prefix}/namespaces/{namespace}", "DELETE /v1/{prefix}/namespaces/{namespace}",
            "POST /v1/{prefix}/namespaces/{namespace}/properties", "GET /v1/{prefix}/namespaces/{namespace}/tables",
            "POST /v1/{prefix}/namespaces/{namespace}/tables", "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
            "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}", "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
            "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}", "POST /v1/{prefix}/tables/rename",
        ],
    }))
}

#[derive(Deserialize)]
struct ListNamespacesQuery {
    parent: Option<String>,
}

async fn list_namespaces(
    State(w): State<AppState>,
    who: Who,
    Query(q): Query<ListNamespacesQuery>,
) -> Result<Json<Value>> {
    let parent = q.parent.as_deref().map(namespace).transpose()?;
    let namespaces = w.catalog().list_namespaces(parent.as_ref()).await?;
    let namespaces: Vec<Vec<String>> =
        namespaces.into_iter().filter(|n| who.read(n).is_ok()).map(|n| n.inner()).collect();
    Ok(Json(json!({ "namespaces": namespaces })))
}

#[derive(Deserialize)]
struct CreateNamespaceRequest {
    namespace: Vec<String>,
    #[serde(default)]
    properties: HashMap<String, String>,
}

async fn create_namespace(State(w): State<AppState>, who: Who, bytes: axum::body::Bytes) -> Result<Json<Value>> {
    who.write()?;
    let req: CreateNamespaceRequest = body(&bytes)?;
    if shippers(req.properties.keys()) {
        return Err(shipper_only("a namespace with tidelake.* properties"));
    }
    let ident = NamespaceIdent::from_vec(req.namespace)
        .map_err(|e| CatalogError::BadRequest(e.to_string()))?;
    let ns = w.create_namespace(&ident, req.properties).await?;
    Ok(Json(json!({ "namespace": ns.name().clone().inner(), "properties": user_properties(ns.properties()) })))
}

async fn load_namespace(State(w): State<AppState>, who: Who, Path(ns): Path<String>) -> Result<Json<Value>> {
    let ident = namespace(&ns)?;
    who.read(&ident)?;
    let ns = w.catalog().get_namespace(&ident).await?;
    Ok(Json(json!({ "namespace": ns.name().clone().inner(), "properties": user_properties(ns.properties()) })))
}

async fn namespace_exists(State(w): State<AppState>, who: Who, Path(ns): Path<String>) -> Result<StatusCode> {
    let ident = namespace(&ns)?;
    who.read(&ident)?;
    Ok(if w.catalog().namespace_exists(&ident).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    })
}

async fn drop_namespace(State(w): State<AppState>, who: Who, Path(ns): Path<String>) -> Result<StatusCode> {
    who.write()?;
    let ident = namespace(&ns)?;
    if shippers(w.catalog().get_namespace(&ident).await?.properties().keys()) {
        return Err(shipper_only("dropping a tenant's namespace"));
    }
    w.catalog().drop_namespace(&ident).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct UpdatePropertiesRequest {
    #[serde(default)]
    removals: Vec<String>,
    #[serde(default)]
    updates: HashMap<String, String>,
}

async fn update_properties(
    State(w): State<AppState>,
    who: Who,
    Path(ns): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>> {
    who.write()?;
    let req: UpdatePropertiesRequest = body(&bytes)?;
    if shippers(req.removals.iter().chain(req.updates.keys())) {
        return Err(shipper_only("changing tidelake.* properties"));
    }
    if req.removals.iter().chain(req.updates.keys()).any(|k| k == "location") {
        return Err(CatalogError::Forbidden("a namespace's location is set once, when it is created".into()));
    }
    if let Some(key) = req.removals.iter().find(|k| req.updates.contains_key(*k)) {
        return Err(CatalogError::BadRequest(format!("{key} is both updated and removed")));
    }
    if req.removals.iter().chain(req.updates.keys()).any(|k| k == EXISTS_MARKER) {
        return Err(CatalogError::BadRequest(format!("{EXISTS_MARKER} is a reserved property")));
    }
    w.check_namespace_properties(&req.updates)?;
    let ident = namespace(&ns)?;
    let mut properties = w.catalog().get_namespace(&ident).await?.properties().clone();
    let (mut removed, mut missing) = (Vec::new(), Vec::new());
    for key in &req.removals {
        if properties.remove(key).is_some() {
            removed.push(key.clone());
        } else {
            missing.push(key.clone());
        }
    }
    let updated: Vec<String> = req.updates.keys().cloned().collect();
    properties.extend(req.updates);
    w.remove_namespace_properties(&ident, &removed).await?;
    w.catalog().update_namespace(&ident, properties).await?;
    Ok(Json(json!({ "updated": updated, "removed": removed, "missing": missing })))
}

async fn list_tables(State(w): State<AppState>, who: Who, Path(ns): Path<String>) -> Result<Json<Value>> {
    let ident = namespace(&ns)?;
    who.read(&ident)?;
    let tables = w.catalog().list_tables(&ident).await?;
    let identifiers: Vec<Value> = tables.iter().map(table_identifier).collect();
    Ok(Json(json!({ "identifiers": identifiers })))
}

fn table_identifier(t: &TableIdent) -> Value {
    json!({ "namespace": t.namespace().clone().inner(), "name": t.name() })
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CreateTableRequest {
    name: String,
    location: Option<String>,
    schema: Schema,
    partition_spec: Option<UnboundPartitionSpec>,
    write_order: Option<SortOrder>,
    #[serde(default)]
    stage_create: bool,
    #[serde(default)]
    properties: HashMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct LoadTableResult {
    metadata_location: String,
    metadata: TableMetadata,
    config: HashMap<String, String>,
}

async fn create_table(
    State(w): State<AppState>,
    who: Who,
    Path(ns): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response> {
    who.write()?;
    let req: CreateTableRequest = body(&bytes)?;
    if shippers(req.properties.keys()) {
        return Err(shipper_only("a table with tidelake.* properties"));
    }
    if req.stage_create {
        return Err(CatalogError::Unsupported("staged table creation is not supported".into()));
    }
    let ident = namespace(&ns)?;
    let creation = TableCreation::builder()
        .name(req.name)
        .location_opt(req.location)
        .schema(req.schema)
        .partition_spec_opt(req.partition_spec)
        .sort_order_opt(req.write_order)
        .properties(req.properties)
        .build();
    let table = w.create_table(&ident, creation).await?;
    Ok(load_result(&w, &table)?.into_response())
}

fn load_result(w: &Warehouse, table: &iceberg::table::Table) -> Result<Json<LoadTableResult>> {
    Ok(Json(LoadTableResult {
        metadata_location: table.metadata_location_result()?.to_owned(),
        metadata: table.metadata().clone(),
        config: w.client_config(),
    }))
}

async fn load_table(
    State(w): State<AppState>,
    who: Who,
    Path((ns, table)): Path<(String, String)>,
) -> Result<Json<LoadTableResult>> {
    let ident = TableIdent::new(namespace(&ns)?, table);
    who.read(ident.namespace())?;
    let table = w.catalog().load_table(&ident).await?;
    load_result(&w, &table)
}

async fn table_exists(
    State(w): State<AppState>,
    who: Who,
    Path((ns, table)): Path<(String, String)>,
) -> Result<StatusCode> {
    let ident = TableIdent::new(namespace(&ns)?, table);
    who.read(ident.namespace())?;
    Ok(if w.catalog().table_exists(&ident).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    })
}

async fn drop_table(
    State(w): State<AppState>,
    who: Who,
    Path((ns, table)): Path<(String, String)>,
) -> Result<StatusCode> {
    who.write()?;
    let ident = TableIdent::new(namespace(&ns)?, table);
    if tenant_owned(&w, &ident).await? {
        return Err(shipper_only("dropping a tenant's table"));
    }
    w.catalog().drop_table(&ident).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Identifier {
    namespace: Vec<String>,
    name: String,
}

impl Identifier {
    fn ident(self) -> Result<TableIdent> {
        let ns = NamespaceIdent::from_vec(self.namespace).map_err(|e| CatalogError::BadRequest(e.to_string()))?;
        Ok(TableIdent::new(ns, self.name))
    }
}

#[derive(Deserialize)]
struct RenameRequest {
    source: Identifier,
    destination: Identifier,
}

async fn rename_table(State(w): State<AppState>, who: Who, bytes: axum::body::Bytes) -> Result<StatusCode> {
    who.write()?;
    let req: RenameRequest = body(&bytes)?;
    // A table keeps its files where they are; its new name must still be
    // one a location could be derived from.
    crate::location::check_segment(&req.destination.name)
        .map_err(|e| CatalogError::BadRequest(format!("table name {:?}: {e}", req.destination.name)))?;
    let (source, destination) = (req.source.ident()?, req.destination.ident()?);
    if tenant_owned(&w, &source).await? || shippers(w.catalog().get_namespace(destination.namespace()).await?.properties().keys()) {
        return Err(shipper_only("renaming a tenant's table, or into a tenant's namespace"));
    }
    w.catalog().rename_table(&source, &destination).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether a table is a tenant's history: it or its namespace carries
/// the shipper's properties.
async fn tenant_owned(w: &Warehouse, ident: &TableIdent) -> Result<bool> {
    let namespace = w.catalog().get_namespace(ident.namespace()).await?;
    if shippers(namespace.properties().keys()) {
        return Ok(true);
    }
    let table = w.catalog().load_table(ident).await?;
    Ok(shippers(table.metadata().properties().keys()))
}

#[derive(Deserialize)]
struct CommitRequest {
    #[serde(default)]
    requirements: Vec<TableRequirement>,
    #[serde(default)]
    updates: Vec<TableUpdate>,
}

async fn commit_table(
    State(w): State<AppState>,
    who: Who,
    Path((ns, table)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>> {
    who.write()?;
    let req: CommitRequest = body(&bytes)?;
    for update in &req.updates {
        match update {
            TableUpdate::SetProperties { updates } if shippers(updates.keys()) => {
                return Err(shipper_only("changing tidelake.* properties"));
            }
            TableUpdate::RemoveProperties { removals } if shippers(removals.iter()) => {
                return Err(shipper_only("removing tidelake.* properties"));
            }
            TableUpdate::SetLocation { .. } => {
                return Err(CatalogError::Forbidden("a table's location is set once, when it is created".into()));
            }
            _ => {}
        }
    }
    let ident = TableIdent::new(namespace(&ns)?, table);
    let table = w.commit(&ident, req.requirements, req.updates).await?;
    Ok(Json(json!({ "metadata-location": table.metadata_location(), "metadata": table.metadata() })))
}
