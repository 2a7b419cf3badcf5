//! Tiers at the edge: an idle tenant's data leaves its object for R2.
//!
//! - **hot**: the tenant's pages are in its object's SQLite storage (its
//!   engine running in memory, or not: `engine` says which).
//! - **warm**: idle for `COLD_AFTER`, its pages were packed into one archive
//!   in R2 (binding `ARCHIVE`) and removed from the object, which keeps a
//!   pointer; a copy of the archive is in this location's cache (the Cache
//!   API) for `WARM_FOR`, so the next request wakes it from there.
//! - **cold**: the same, the cache's copy gone: waking reads R2.
//!
//! The next request that needs the engine brings the pages back (checked
//! against the pointer's size and SHA-256 before anything is written) and
//! is then answered as usual. `health` shows the tier without waking the
//! tenant. The moves themselves are `js/engine.js`'s (`engineDemote`, and
//! the promotion inside `engineStart`); this module decides when.

use std::cell::Cell;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;
use worker::*;

use crate::engine::js_message;
use crate::vars::setting;

/// The R2 bucket binding archives go to.
const BUCKET: &str = "ARCHIVE";
const DEFAULT_COLD_AFTER: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_WARM_FOR: Duration = Duration::from_secs(3600);
/// The last access is stored at most this often (and at most every tenth
/// of `COLD_AFTER`): a tenant goes cold within that of its idle time.
const MAX_ACCESS_STALENESS_MS: f64 = 60_000.0;

#[wasm_bindgen(module = "/js/engine.js")]
extern "C" {
    #[wasm_bindgen(js_name = engineStored, catch)]
    fn engine_stored(storage: &JsValue, measure: bool) -> std::result::Result<String, JsValue>;
    #[wasm_bindgen(js_name = engineCached)]
    async fn engine_cached(archive_key: &str) -> JsValue;
    #[wasm_bindgen(js_name = engineDemote, catch)]
    async fn engine_demote(
        key: &str,
        storage: &JsValue,
        bucket: &JsValue,
        archive_key: &str,
        warm_seconds: f64,
        meta: &str,
    ) -> std::result::Result<JsValue, JsValue>;
}

/// When tenants move, from the Worker's variables.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Idle time after which a tenant's pages go to R2; `None`: never.
    pub cold_after: Option<Duration>,
    /// How long this location's cache keeps a copy of a new archive.
    pub warm_for: Duration,
}

/// `COLD_AFTER` (a duration, or `off`; default 24h) and `WARM_FOR` (default
/// 1h), read as the server reads durations. Without an `ARCHIVE` bucket,
/// tenants stay hot.
pub fn policy(env: &Env) -> std::result::Result<Policy, String> {
    let duration = |name: &str, default: Duration| -> std::result::Result<Option<Duration>, String> {
        match setting(env, name) {
            None => Ok(Some(default)),
            Some(text) if text.trim().eq_ignore_ascii_case("off") => Ok(None),
            Some(text) => model::parse_duration(&text).map(Some).map_err(|e| format!("{name}: {e}")),
        }
    };
    let cold_after = duration("COLD_AFTER", DEFAULT_COLD_AFTER)?.filter(|_| !bucket(env).is_undefined());
    let warm_for = duration("WARM_FOR", DEFAULT_WARM_FOR)?.unwrap_or(Duration::ZERO);
    Ok(Policy { cold_after, warm_for })
}

/// The archive bucket's binding (undefined without one).
pub fn bucket(env: &Env) -> JsValue {
    js_sys::Reflect::get(env, &JsValue::from_str(BUCKET)).unwrap_or(JsValue::UNDEFINED)
}

/// What the object stores, read without waking anything.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    /// The tenant has pages, or an archive holds them.
    pub exists: bool,
    /// The bytes of its pages, when measured.
    pub stored_bytes: Option<u64>,
    /// The pointer of the archive its data is in while warm or cold.
    pub archive: Option<Value>,
}

/// `measure`: also sum the bytes of its pages (a scan of them).
pub fn stored(state: &State, measure: bool) -> Result<Stored> {
    let text = engine_stored(&storage(state), measure).map_err(|e| Error::RustError(js_message(e)))?;
    serde_json::from_str(&text).map_err(|e| Error::RustError(format!("what the object stores: {e}")))
}

/// The object's storage as JavaScript sees it.
pub fn storage(state: &State) -> JsValue {
    let storage = state.storage();
    let raw: &JsValue = storage.as_raw().as_ref();
    raw.clone()
}

// ---- idle time --------------------------------------------------------------

const ACCESS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tl_access (
    one INTEGER PRIMARY KEY CHECK (one = 1), tenant TEXT NOT NULL, last_access INTEGER NOT NULL)";

#[derive(Debug, Deserialize)]
struct Accessed {
    tenant: String,
    last_access: f64,
}

fn accessed(sql: &SqlStorage) -> Result<Option<Accessed>> {
    sql.exec(ACCESS_SCHEMA, None::<Vec<SqlStorageValue>>)?;
    let rows: Vec<Accessed> =
        sql.exec("SELECT tenant, last_access FROM tl_access WHERE one = 1", None::<Vec<SqlStorageValue>>)?.to_array()?;
    Ok(rows.into_iter().next())
}

/// The object's memory of its last access (ms since the epoch): the last
/// request it saw, and the last one it stored.
#[derive(Debug, Default)]
pub struct Access {
    seen: Cell<f64>,
    stored: Cell<f64>,
}

/// A request that needs the tenant's data: note the access (stored at most
/// every tenth of `COLD_AFTER`), and make sure an alarm will look at the
/// tenant once it may have gone idle.
pub async fn touch(state: &State, env: &Env, access: &Access, tenant: &str) -> Result<()> {
    let now = Date::now().as_millis() as f64;
    access.seen.set(now);
    let Ok(Policy { cold_after: Some(after), .. }) = policy(env) else { return Ok(()) };
    let after_ms = after.as_millis() as f64;
    if now - access.stored.get() < (after_ms / 10.0).min(MAX_ACCESS_STALENESS_MS) || tenant.is_empty() {
        return Ok(());
    }
    let sql = state.storage().sql();
    sql.exec(ACCESS_SCHEMA, None::<Vec<SqlStorageValue>>)?;
    sql.exec(
        "INSERT OR REPLACE INTO tl_access (one, tenant, last_access) VALUES (1, ?, ?)",
        vec![tenant.into(), (now as i64).into()],
    )?;
    access.stored.set(now);
    alarm_by(state, now + after_ms).await
}

/// Make sure the object's alarm rings by `at_ms` (it has one alarm: the
/// earliest of what it is needed for wins).
pub async fn alarm_by(state: &State, at_ms: f64) -> Result<()> {
    match state.storage().get_alarm().await? {
        Some(set) if set as f64 <= at_ms => Ok(()),
        _ => state.storage().set_alarm(ScheduledTime::new(js_sys::Date::new(&JsValue::from_f64(at_ms)))).await,
    }
}

/// The alarm: a tenant idle for `COLD_AFTER` goes to R2 (a request during
/// the move keeps it hot); one not idle yet is looked at again when it may
/// be. An error makes the runtime retry the alarm.
pub async fn tick(state: &State, env: &Env, access: &Access, key: &str) -> Result<()> {
    let policy = match policy(env) {
        Ok(policy) => policy,
        Err(message) => {
            console_error!("tiers are off: {message}");
            return Ok(());
        }
    };
    let Some(after) = policy.cold_after else { return Ok(()) };
    if stored(state, false)?.archive.is_some() {
        return Ok(());
    }
    let storage = storage(state);
    let sql = state.storage().sql();
    let Some(row) = accessed(&sql)? else { return Ok(()) };
    let after_ms = after.as_millis() as f64;
    let idle_since = row.last_access.max(access.seen.get());
    let now = Date::now().as_millis() as f64;
    if now < idle_since + after_ms {
        return alarm_by(state, idle_since + after_ms).await;
    }
    let position = crate::directory::position(&sql)?.unwrap_or_default();
    let archive_key = format!("tenants/{}/{:020}-{}.tlarc", row.tenant, position.head_lsn, now as u64);
    let meta = json!({ "tenant": row.tenant, "headLsn": position.head_lsn, "schemaVersion": position.schema_version });
    let moved = engine_demote(key, &storage, &bucket(env), &archive_key, policy.warm_for.as_secs_f64(), &meta.to_string())
        .await
        .map_err(|e| Error::RustError(format!("tenant {} to R2: {}", row.tenant, js_message(e))))?;
    match moved.as_string().filter(|p| !p.is_empty()) {
        Some(pointer) => console_log!("tenant {} went to R2: {pointer}", row.tenant),
        // A request woke it meanwhile: look again once it may be idle.
        None => alarm_by(state, now + after_ms).await?,
    }
    Ok(())
}

/// Where the tenant is, for `health`, without waking it: its tier, its
/// archive's pointer while warm or cold, when it was last used, and the
/// policy (or why tiers are off), as fields of the server's tenant status.
pub async fn status(state: &State, env: &Env, access: &Access, stored: &Stored) -> Result<Value> {
    let sql = state.storage().sql();
    let last = accessed(&sql)?.map(|a| a.last_access).unwrap_or(0.0).max(access.seen.get());
    let mut body = json!({ "tier": "hot", "lastAccessMs": (last > 0.0).then_some(last as u64) });
    match policy(env) {
        Ok(policy) => body["coldAfterMs"] = json!(policy.cold_after.map(|d| d.as_millis() as u64)),
        Err(message) => body["tierError"] = json!(message),
    }
    if let Some(pointer) = &stored.archive {
        let key = pointer["key"].as_str().unwrap_or_default().to_owned();
        let warm = engine_cached(&key).await.as_bool().unwrap_or(false);
        body["tier"] = json!(if warm { "warm" } else { "cold" });
        body["archiveBytes"] = pointer["bytes"].clone();
        body["archive"] = pointer.clone();
    }
    Ok(body)
}
