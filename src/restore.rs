//! `tidelake restore` and `tidelake bookmark`: clients of a running server's
//! `POST /t/{tenant}/restore` (progress streamed as JSON lines, drawn as a
//! progress bar) and `GET /t/{tenant}/bookmark`.

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

fn unreachable(url: &str) -> String {
    format!("reach the server at {url} (is `tidelake serve` running? --url names another)")
}

pub async fn restore(server: &crate::Server, tenant: &str, to: &str, into: Option<&str>) -> Result<()> {
    let url = server.url.as_str();
    let mut body = json!({ "to": to });
    if let Some(into) = into {
        body["into"] = json!(into);
    }
    let mut response = server
        .client()?
        .post(format!("{}/t/{tenant}/restore", url.trim_end_matches('/')))
        .header("accept", "application/x-ndjson")
        .json(&body)
        .send()
        .await
        .with_context(|| unreachable(url))?;
    if !response.status().is_success() {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        bail!("restore of {tenant} refused ({status}): {}", body["error"]["message"].as_str().unwrap_or("no message"));
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} changes ({per_sec}, {eta} left)")
            .expect("progress template")
            .progress_chars("=> "),
    );
    let mut pending = Vec::new();
    let mut outcome = None;
    while let Some(chunk) = response.chunk().await.context("read the server's progress")? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else { continue };
            match event["phase"].as_str() {
                Some("fetching") => bar.set_message("fetching"),
                Some("replaying") => {
                    bar.set_length(event["total"].as_u64().unwrap_or(0));
                    bar.set_position(event["done"].as_u64().unwrap_or(0));
                    bar.set_message("replaying");
                }
                Some("keepingUndo") => bar.set_message("keeping"),
                Some("installing") => bar.set_message("installing"),
                _ => outcome = Some(event),
            }
        }
    }
    bar.finish_and_clear();
    let outcome = outcome.context("the server ended the restore without an outcome")?;
    if let Some(error) = outcome.get("error") {
        bail!("restore of {tenant} failed: {}", error["message"].as_str().unwrap_or("no message"));
    }
    let report = &outcome["done"];
    let base = &report["baseBackup"];
    let seconds = report["tookMs"].as_f64().unwrap_or(0.0) / 1000.0;
    let what = match report["into"].as_str() {
        Some(branch) => format!("branched {tenant} into {branch}"),
        None => format!("restored {tenant}"),
    };
    let plural = |n: &Value| if n.as_u64() == Some(1) { "" } else { "s" };
    let bookmark = report["target"]["bookmark"].as_str().unwrap_or("?");
    match report["origin"].as_str() {
        // A tenant of the edge, from the lake alone.
        Some(origin) => println!(
            "{what} at {bookmark} from the lake's history of the {origin}'s tenant ({} row{} loaded, {} logged for the lake) in {seconds:.1} s",
            report["replayed"],
            plural(&report["replayed"]),
            report["logged"],
        ),
        None => println!(
            "{what} at {bookmark} from the base backup at LSN {} ({} change{} replayed, {} logged for the lake) in {seconds:.1} s",
            base["lsn"],
            report["replayed"],
            plural(&report["replayed"]),
            report["logged"],
        ),
    }
    for column in report["asText"].as_array().into_iter().flatten() {
        println!("as text (the type is not in a new database): {}", column.as_str().unwrap_or("?"));
    }
    if let Some(undo) = report["undo"].as_str() {
        println!("undo with: tidelake restore --tenant {tenant} --to {undo}");
    }
    Ok(())
}

pub async fn bookmark(server: &crate::Server, tenant: &str, at: &str) -> Result<()> {
    let url = server.url.as_str();
    let response = server
        .client()?
        .get(format!("{}/t/{tenant}/bookmark", url.trim_end_matches('/')))
        .query(&[("at", at)])
        .send()
        .await
        .with_context(|| unreachable(url))?;
    let status = response.status();
    let body: Value = response.json().await.context("read the server's answer")?;
    if !status.is_success() {
        bail!("no bookmark for {tenant} at {at} ({status}): {}", body["error"]["message"].as_str().unwrap_or("no message"));
    }
    println!("{}", body["bookmark"].as_str().unwrap_or("?"));
    Ok(())
}
