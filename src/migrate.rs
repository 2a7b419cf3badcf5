//! `tidelake migrate status`, `up` and `down`: clients of a running
//! server's `GET /health` (every tenant, with where it stands with the
//! deployment's migrations), `POST /t/{tenant}/migrate` and
//! `POST /t/{tenant}/migrate/down`.

use anyhow::{Result, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

/// The server's `health`: its migrations and every tenant.
async fn health(server: &crate::Server) -> Result<Value> {
    let body = server.get_json("/health").await?;
    if body["migrations"].is_null() {
        bail!("the server has no migrations (start it with --migrations DIR)");
    }
    Ok(body)
}

/// A tenant's state, for people: `latest`, `pending (n)`, `failed: …`, or
/// `unknown` (not opened since the server started with these migrations).
fn state(status: &Value, latest: i64) -> String {
    if let Some(failed) = status.get("failed").filter(|f| !f.is_null()) {
        return format!(
            "failed: {} ({} {})",
            failed["name"].as_str().unwrap_or("?"),
            failed["code"].as_str().unwrap_or("?"),
            failed["message"].as_str().unwrap_or("")
        );
    }
    let changed: Vec<&str> = status["changed"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let changed = if changed.is_empty() { String::new() } else { format!(" (files changed since applied: {})", changed.join(", ")) };
    match status["version"].as_i64() {
        Some(v) if v >= latest => format!("latest{changed}"),
        Some(v) if status["held"] == true => format!("held ({} pending, by a restore or `migrate down`: `migrate up --tenant` moves it on)", latest - v),
        Some(v) => format!("pending ({})", latest - v),
        None => "unknown (not opened since)".to_owned(),
    }
}

/// Every tenant's version; exit status 1 if any migration failed.
pub async fn status(server: &crate::Server) -> Result<bool> {
    let health = health(server).await?;
    let latest = health["migrations"]["latest"].as_i64().unwrap_or(0);
    println!("latest: {latest} ({} layout)", health["migrations"]["layout"].as_str().unwrap_or("?"));
    let mut rows = vec![["TENANT", "TIER", "VERSION", "STATE"].map(String::from).to_vec()];
    let mut failed = false;
    for t in health["tenants"].as_array().into_iter().flatten() {
        let status = &t["migrations"];
        failed |= status.get("failed").is_some_and(|f| !f.is_null());
        rows.push(vec![
            t["tenant"].as_str().unwrap_or("?").to_owned(),
            t["tier"].as_str().unwrap_or("?").to_owned(),
            status["version"].as_i64().map_or("-".to_owned(), |v| v.to_string()),
            state(status, latest),
        ]);
    }
    crate::print_table(&rows);
    Ok(!failed)
}

/// Bring `tenants` (all the server's when empty) to the latest migration,
/// `concurrency` at a time; false if any failed.
pub async fn up(server: &crate::Server, tenants: &[String], concurrency: usize) -> Result<bool> {
    let health = health(server).await?;
    let latest = health["migrations"]["latest"].as_i64().unwrap_or(0);
    let outcomes = each_tenant(server, &health, tenants, concurrency, "migrating", "migrate", json!({})).await?;
    let mut ok = 0;
    let mut problems = Vec::new();
    for (tenant, outcome) in outcomes {
        match outcome {
            Ok(body) if body["migrations"]["version"].as_i64() >= Some(latest) && body["migrations"]["failed"].is_null() => ok += 1,
            Ok(body) => problems.push(format!("{tenant}: {}", state(&body["migrations"], latest))),
            Err(err) => problems.push(format!("{tenant}: {err:#}")),
        }
    }
    problems.sort();
    println!("{ok} tenant{} at version {latest}", if ok == 1 { "" } else { "s" });
    for problem in &problems {
        println!("{problem}");
    }
    Ok(problems.is_empty())
}

/// Take `tenants` (all the server's when empty) down to version `to` by
/// their down migrations, `concurrency` at a time; false if any failed.
pub async fn down(server: &crate::Server, tenants: &[String], to: i64, concurrency: usize) -> Result<bool> {
    let health = health(server).await?;
    let outcomes = each_tenant(server, &health, tenants, concurrency, "undoing", "migrate/down", json!({ "to": to })).await?;
    let mut ok = 0;
    let mut problems = Vec::new();
    for (tenant, outcome) in outcomes {
        match outcome {
            Ok(body) if body["failed"].is_null() => {
                ok += 1;
                let undone: Vec<&str> = body["undone"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                if !undone.is_empty() {
                    println!("{tenant}: undid {}", undone.join(", "));
                }
            }
            Ok(body) => problems.push(format!(
                "{tenant}: at version {}: {} failed ({} {})",
                body["migrations"]["version"],
                body["failed"]["name"].as_str().unwrap_or("?"),
                body["failed"]["code"].as_str().unwrap_or("?"),
                body["failed"]["message"].as_str().unwrap_or("")
            )),
            Err(err) => problems.push(format!("{tenant}: {err:#}")),
        }
    }
    problems.sort();
    println!(
        "{ok} tenant{} at version {to} or below, held there until `migrate up --tenant` names them",
        if ok == 1 { "" } else { "s" }
    );
    for problem in &problems {
        println!("{problem}");
    }
    Ok(problems.is_empty())
}

/// `POST /t/{tenant}/{path}` with `body` for each of `tenants` (all the
/// server's when empty), `concurrency` at a time, behind a progress bar:
/// each tenant's answer or why there is none.
async fn each_tenant(
    server: &crate::Server,
    health: &Value,
    tenants: &[String],
    concurrency: usize,
    doing: &str,
    path: &str,
    body: Value,
) -> Result<Vec<(String, Result<Value>)>> {
    let names: Vec<String> = if tenants.is_empty() {
        health["tenants"].as_array().into_iter().flatten().filter_map(|t| t["tenant"].as_str().map(str::to_owned)).collect()
    } else {
        tenants.to_vec()
    };
    let bar = ProgressBar::new(names.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!("{doing} [{{bar:40}}] {{pos}}/{{len}} tenants ({{per_sec}}, {{eta}} left)"))
            .expect("progress template")
            .progress_chars("=> "),
    );
    let outcomes = futures::stream::iter(names)
        .map(|tenant| {
            let (bar, body) = (bar.clone(), &body);
            async move {
                let outcome = server.post_json(&format!("/t/{tenant}/{path}"), body).await;
                bar.inc(1);
                (tenant, outcome)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    Ok(outcomes)
}
