//! The tenants of a tidelake edge Worker as a change source of the lake:
//! the shipper that ships the server's own tenants ships these the same
//! way, exactly once, into the same catalog, from the edge's change feed
//! over HTTP (`GET /t/{tenant}/changes`, `GET /t/{tenant}/schema`,
//! `POST /t/{tenant}/changes/ack`, the answers every tenant gives).
//!
//! Which tenants have new changes is read from the Worker's root `health`,
//! its tenant directory (Durable Objects cannot be listed): each tenant's
//! object reports its change log's head and schema version there shortly
//! after it commits. The listing is polled, after the first time only for
//! tenants that reported since the last one (`changedSince`); a tenant whose
//! head or schema version moved is due. The first listing after a
//! start makes every listed tenant due once, so what the lake missed while
//! the server was down ships then (from the LSN the lake records, as for
//! local tenants).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lake::{ChangePage, ChangeSource, Shipper, SourceError};
use model::SchemaVersion;
use oltp_do::TenantId;
use oltp_do::tenants::Reporter;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The consumer name the lake acknowledges edge changes under (as local ones).
const CONSUMER: &str = "lake";
/// Longest wait for one answer from the edge.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the lake reads an edge from.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// The Worker's address, e.g. `https://tidelake.example.workers.dev`.
    pub url: String,
    /// An API key (or JWT) with the admin scope over every tenant there.
    pub token: Option<String>,
    /// How often the tenant directory is read.
    pub poll_interval: Duration,
}

pub struct EdgeSource {
    settings: EdgeSettings,
    http: reqwest::Client,
    /// Each tenant's (head LSN, schema version) at the last listing.
    known: Mutex<HashMap<String, (u64, i64)>>,
    committed: Mutex<BTreeSet<String>>,
    last_poll: Mutex<Option<Instant>>,
    /// The `asOf` of the first page of the last whole listing (0: none yet).
    listed_as_of: Mutex<u64>,
    /// Why the last listing failed, if it did.
    poll_error: Mutex<Option<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    tenants: Vec<Listed>,
    next: Option<String>,
    /// The directory's clock when it answered: the next listing asks only
    /// for tenants that reported since.
    as_of: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    tenant: String,
    head_lsn: u64,
    schema_version: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The edge's answer to one call, or why there is none.
struct Failed(String);

impl From<Failed> for SourceError {
    fn from(Failed(message): Failed) -> Self {
        SourceError::failed(message)
    }
}

impl EdgeSource {
    pub fn new(settings: EdgeSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
        Ok(Self {
            settings,
            http,
            known: Mutex::default(),
            committed: Mutex::default(),
            last_poll: Mutex::default(),
            listed_as_of: Mutex::default(),
            poll_error: Mutex::default(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.settings.url.trim_end_matches('/')));
        match &self.settings.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Send, and read a 200's JSON; any other answer is the edge's error.
    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> Result<(u16, Value), Failed> {
        let answer = request.send().await.map_err(|e| Failed(format!("the edge did not answer {what}: {e}")))?;
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.map_err(|e| Failed(format!("the edge's answer to {what} is not JSON: {e}")))?;
        Ok((status, body))
    }

    async fn ok(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value, Failed> {
        match self.call(request, what).await? {
            (200, body) => Ok(body),
            (status, body) => Err(Failed(format!(
                "the edge answered {what} with {status}: {}",
                body["error"]["message"].as_str().map_or_else(|| body.to_string(), str::to_owned)
            ))),
        }
    }

    /// Read the tenant directory (after the first time, only the tenants
    /// that reported since the last listing); tenants that moved become due.
    async fn poll(&self) {
        *lock(&self.last_poll) = Some(Instant::now());
        let since = *lock(&self.listed_as_of);
        let mut listed = Vec::new();
        let mut after = String::new();
        let mut as_of = None;
        loop {
            let request = self
                .request(reqwest::Method::GET, "/health")
                .query(&[("after", after.as_str()), ("changedSince", &since.to_string())]);
            let page = match self.ok(request, "GET /health").await.and_then(|body| {
                serde_json::from_value::<Listing>(body).map_err(|e| Failed(format!("the edge's tenant listing: {e}")))
            }) {
                Ok(page) => page,
                Err(Failed(message)) => {
                    let mut last = lock(&self.poll_error);
                    if last.as_deref() != Some(&message) {
                        tracing::warn!(edge = %self.settings.url, error = %message, "lake: could not list the edge's tenants");
                    }
                    *last = Some(message);
                    return;
                }
            };
            as_of.get_or_insert(page.as_of);
            listed.extend(page.tenants);
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
        *lock(&self.poll_error) = None;
        if let Some(as_of) = as_of {
            *lock(&self.listed_as_of) = as_of;
        }
        let mut known = lock(&self.known);
        let mut committed = lock(&self.committed);
        for entry in listed {
            // A name the server would refuse is not shipped (the lake
            // names namespaces by tenant ids).
            if TenantId::parse(&entry.tenant).is_err() {
                continue;
            }
            let now = (entry.head_lsn, entry.schema_version);
            if known.get(&entry.tenant) != Some(&now) {
                known.insert(entry.tenant.clone(), now);
                committed.insert(entry.tenant);
            }
        }
    }

    /// The tenant's newest LSN as the edge answers now (reading its
    /// changes after `since`, which the lake holds).
    pub async fn head(&self, tenant: &str, since: u64) -> Result<u64, SourceError> {
        Ok(self.read(tenant, since, 1).await?.head_lsn)
    }

    /// Whether the edge has the tenant: it has committed a change (a
    /// tenant never used, or an edge that does not answer: no).
    pub async fn has(&self, tenant: &str) -> bool {
        self.head(tenant, 0).await.is_ok_and(|head| head > 0)
    }

    /// Make the tenant due: the shipper takes it at its next turn.
    pub fn mark(&self, tenant: &str) {
        lock(&self.committed).insert(tenant.to_owned());
    }

    /// The edge's part of the server's `health`.
    fn status<S: ChangeSource>(&self, shipper: &Shipper<S>) -> Value {
        let known = lock(&self.known).clone();
        let mut names: Vec<&String> = known.keys().collect();
        names.sort();
        let tenants: Vec<Value> = names
            .into_iter()
            .map(|name| json!({ "tenant": name, "lake": shipper.tenant_status(name) }))
            .collect();
        json!({
            "url": self.settings.url,
            "error": *lock(&self.poll_error),
            "tenants": tenants,
        })
    }
}

impl ChangeSource for EdgeSource {
    fn take_committed(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.committed)).into_iter().collect()
    }

    async fn wait_committed(&self) {
        loop {
            let due = lock(&self.last_poll).map_or_else(Instant::now, |at| at + self.settings.poll_interval);
            tokio::time::sleep_until(due.into()).await;
            self.poll().await;
            if !lock(&self.committed).is_empty() {
                return;
            }
        }
    }

    /// None known before the first listing, which makes every tenant due.
    fn tenants(&self) -> Vec<(String, Option<u64>)> {
        Vec::new()
    }

    async fn read(&self, tenant: &str, since: u64, limit: u64) -> Result<ChangePage, SourceError> {
        let limit = limit.clamp(1, model::api::MAX_CHANGES_LIMIT);
        let request = self
            .request(reqwest::Method::GET, &format!("/t/{tenant}/changes"))
            .query(&[("since", since), ("limit", limit)]);
        let (status, body) = self.call(request, "GET changes").await?;
        match status {
            200 => {}
            410 => {
                let health = self.ok(self.request(reqwest::Method::GET, &format!("/t/{tenant}/health")), "GET health").await?;
                let tail = health["tenant"]["changeLog"]["tailLsn"].as_u64().unwrap_or(since.saturating_add(1));
                return Err(SourceError::Trimmed { tail });
            }
            status => {
                return Err(SourceError::failed(format!(
                    "the edge answered GET changes of {tenant} with {status}: {}",
                    body["error"]["message"].as_str().map_or_else(|| body.to_string(), str::to_owned)
                )));
            }
        }
        let page: model::api::ChangePage = serde_json::from_value(body)
            .map_err(|e| SourceError::failed(format!("the edge's changes of {tenant}: {e}")))?;
        // The page says where the schema stood when it was read; an edge
        // that does not say is asked (one more request).
        let schema_version = match page.schema_version {
            Some(version) => version,
            None => self.schema_versions(tenant).await?.iter().map(|v| v.version).max().unwrap_or(0),
        };
        Ok(ChangePage { changes: page.changes, head_lsn: page.head_lsn, schema_epoch: schema_version.max(0) as u64 })
    }

    async fn schema_versions(&self, tenant: &str) -> Result<Vec<SchemaVersion>, SourceError> {
        let schema = self.ok(self.request(reqwest::Method::GET, &format!("/t/{tenant}/schema")), "GET schema").await?;
        serde_json::from_value(schema["versions"].clone())
            .map_err(|e| SourceError::failed(format!("the edge's schema versions of {tenant}: {e}")))
    }

    async fn acknowledge(&self, tenant: &str, lsn: u64) -> Result<(), SourceError> {
        let request = self
            .request(reqwest::Method::POST, &format!("/t/{tenant}/changes/ack"))
            .json(&json!({ "consumer": CONSUMER, "lsn": lsn }));
        self.ok(request, "POST changes/ack").await?;
        Ok(())
    }
}

/// The edge shipper's state in the server's `health` (`edge`).
pub struct EdgeReporter {
    pub source: Arc<EdgeSource>,
    pub shipper: Arc<Shipper<EdgeSource>>,
}

impl Reporter for EdgeReporter {
    fn tenant_status(&self, _tenant: &TenantId) -> Map<String, Value> {
        Map::new()
    }

    fn server_status(&self) -> Map<String, Value> {
        Map::from_iter([("edge".to_owned(), self.source.status(&self.shipper))])
    }
}
