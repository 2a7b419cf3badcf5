//! What authentication costs a request: the same statements over HTTP on a
//! server without auth, and on one with auth on — an API key, and an RS256
//! JWT whose JWKS key is cached — interleaved request by request so drift
//! weighs on all three alike; and the verification alone, in process.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tidelake_tests::jwt::{Jwks, Signer};
use tidelake_tests::{Client, Server, binary};

use crate::{Report, Summary, ms, summarize};

const AUDIENCE: &str = "tidelake-bench";
const ISSUER: &str = "https://issuer.bench";

/// The statements timed: the cheapest one (where auth weighs most) and a
/// primary-key lookup.
const OPS: [(&str, &str); 2] = [("SELECT 1", "SELECT 1"), ("primary-key lookup", "SELECT id, name FROM accounts WHERE id = $1")];

pub async fn run(out: Option<PathBuf>, iterations: usize) -> Result<()> {
    let work = tempfile::tempdir()?;
    let mut report = Report::default();

    let signer = Signer::load("rsa-1.pem", "bench", jsonwebtoken::Algorithm::RS256);
    let jwks = Jwks::start().await;
    jwks.publish(&[&signer]);
    let secured_dir = work.path().join("secured");
    let key = create_key(&secured_dir)?;
    let jwt = jwt_for_the_bench_tenant(&signer);

    // Two servers without auth: the difference between them is the noise
    // floor of comparing one server with another.
    let open = Server::start(&work.path().join("open"), &[]).await;
    let open_too = Server::start(&work.path().join("open-too"), &[]).await;
    let secured = Server::start(
        &secured_dir,
        &["--auth-jwks-url", &jwks.url, "--auth-issuer", ISSUER, "--auth-audience", AUDIENCE],
    )
    .await;
    let (open_c, open_too_c, secured_c) = (open.client(), open_too.client(), secured.client());
    for c in [&open_c, &open_too_c, &secured_c] {
        for sql in [
            "CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL)",
            "INSERT INTO accounts SELECT g, 'account ' || g FROM generate_series(1, 10000) g",
        ] {
            query(c, None, sql, json!([]), Some(&key)).await?;
        }
    }

    report.line(format!("## Auth's cost per request, {iterations} sequential requests each, interleaved request by request (ms)\n"));
    report.line("| statement | no auth p50 | p99 | no auth, 2nd server p50 | Δ p50 (noise floor) | API key p50 | p99 | Δ p50 | RS256 JWT p50 | p99 | Δ p50 |".into());
    report.line("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".into());
    for (op, (name, _)) in OPS.iter().enumerate() {
        let variants: [(&Client, Option<&str>); 4] =
            [(&open_c, None), (&open_too_c, None), (&secured_c, Some(&key)), (&secured_c, Some(&jwt))];
        let [none, none_too, by_key, by_jwt] = interleaved(op, iterations, &variants).await?;
        let (none, none_too, by_key, by_jwt) = (summarize(none), summarize(none_too), summarize(by_key), summarize(by_jwt));
        let delta = |s: &Summary| format!("{:+.1} %", (s.p50.as_secs_f64() / none.p50.as_secs_f64() - 1.0) * 100.0);
        report.line(format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ms(none.p50),
            ms(none.p99),
            ms(none_too.p50),
            delta(&none_too),
            ms(by_key.p50),
            ms(by_key.p99),
            delta(&by_key),
            ms(by_jwt.p50),
            ms(by_jwt.p99),
            delta(&by_jwt),
        ));
    }
    drop((open, open_too, secured));

    // The verification alone: what `authenticate` takes per token.
    let auth = auth::Auth::new(
        &secured_dir,
        auth::JwtConfig {
            jwks_url: Some(jwks.url.clone()),
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            jwks_refresh: Duration::from_secs(300),
            ..Default::default()
        },
    )
    .map_err(anyhow::Error::msg)?;
    auth.start().await;
    report.line("\n## Verification alone, in process (µs per token)\n".into());
    report.line("| token | p50 | p99 |".into());
    report.line("|---|---:|---:|".into());
    let fresh = |i: usize| {
        let now = tidelake_tests::jwt::now();
        signer.sign(&json!({"sub": format!("user-{i}"), "scope": "read", "tenants": ["bench"], "iss": ISSUER, "aud": AUDIENCE, "exp": now + 3600}))
    };
    let first_sight: Vec<String> = (0..2000).map(fresh).collect();
    for (name, tokens) in [
        ("API key (SHA-256, key file stat)", vec![key.clone()]),
        ("RS256 JWT, seen before (verified once, remembered)", vec![jwt.clone()]),
        ("RS256 JWT, first sight (signature checked)", first_sight),
    ] {
        let headers: Vec<String> = tokens.iter().map(|t| format!("Bearer {t}")).collect();
        let mut samples = Vec::with_capacity(headers.len().max(2000));
        for i in 0..headers.len().max(2000) {
            let header = &headers[i % headers.len()];
            let t = Instant::now();
            auth.authenticate(Some(header)).await.map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            samples.push(t.elapsed());
        }
        let s = summarize(samples);
        report.line(format!("| {name} | {:.1} | {:.1} |", s.p50.as_secs_f64() * 1e6, s.p99.as_secs_f64() * 1e6));
    }
    report.save(out.as_deref())
}

/// An API key with write on every tenant, made in the server's data dir.
fn create_key(data_dir: &std::path::Path) -> Result<String> {
    let out = Command::new(binary())
        .args(["token", "create", "--tenant", "*", "--scope", "write", "--data-dir"])
        .arg(data_dir)
        .env_remove("TIDELAKE_CONFIG")
        .output()
        .context("run tidelake token create")?;
    if !out.status.success() {
        bail!("tidelake token create: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A JWT with write on the benchmark's tenant, valid an hour.
fn jwt_for_the_bench_tenant(signer: &Signer) -> String {
    let now = tidelake_tests::jwt::now();
    signer.sign(&json!({
        "sub": "bench-user", "scope": "write", "tenants": ["bench"],
        "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600,
    }))
}

async fn query(c: &Client, token: Option<&str>, sql: &str, params: Value, fallback: Option<&str>) -> Result<()> {
    let mut request = c.http.post(c.url("/t/bench/query")).json(&json!({"sql": sql, "params": params}));
    if let Some(token) = token.or(fallback) {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        bail!("{sql}: {status} {}", response.text().await.unwrap_or_default());
    }
    Ok(())
}

/// `n` requests of statement `op` on each variant (a server and a token),
/// after a tenth as many to warm up: request by request in turn, the turn
/// rotating, so that whatever else the machine does weighs on all alike.
async fn interleaved<const V: usize>(op: usize, n: usize, variants: &[(&Client, Option<&str>); V]) -> Result<[Vec<Duration>; V]> {
    let sql = OPS[op].1;
    let params = |i: usize| if op == 0 { json!([]) } else { json!([(i % 10000) + 1]) };
    let mut samples: [Vec<Duration>; V] = std::array::from_fn(|_| Vec::with_capacity(n));
    for i in 0..n + n / 10 {
        for turn in 0..V {
            let which = (i + turn) % V;
            let (c, token) = variants[which];
            let t = Instant::now();
            query(c, token, sql, params(i), None).await?;
            if i >= n / 10 {
                samples[which].push(t.elapsed());
            }
        }
    }
    Ok(samples)
}
