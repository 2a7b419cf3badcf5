//! The `tidelake` binary: wires the crates together and serves them on one
//! address. No business logic lives here.

mod lake_source;
mod restore;
mod settings;

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use catalog::Warehouse;
use oltp_do::Tenants;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use settings::{Overrides, Settings};

#[derive(Parser)]
#[command(name = "tidelake", version, about = "PostgreSQL for every tenant, with its whole history in the lake")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve everything on one address with embedded defaults.
    Serve(Overrides),
    /// Serve only the Iceberg REST catalog (at /catalog/v1/…).
    Catalog(Overrides),
    /// Serve only the query service (POST /sql) over the lake.
    QueryService(Overrides),
    /// List the tenants of a running server: tier, size, last access, lake lag.
    Tenants {
        /// The server [default: http://<--listen>].
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Take a base backup of a tenant now, on a running server, and print its manifest.
    Backup {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The server [default: http://<--listen>].
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Restore a tenant to an instant: in place (undoable: the state it replaces
    /// is kept, and the undo bookmark printed), or into a new tenant (a branch).
    Restore {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The instant: a timestamp ("2026-11-28 07:00:00+00", RFC 3339) or a bookmark (lsn:<n>).
        #[arg(long)]
        to: String,
        /// Make a branch: this new tenant at that instant, the original untouched.
        #[arg(long)]
        into: Option<String>,
        /// The server [default: http://<--listen>].
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// The bookmark (an LSN) of a tenant's instant, which `restore --to` accepts.
    Bookmark {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The instant: a timestamp ("2026-11-28 07:00:00+00", RFC 3339).
        #[arg(long)]
        at: String,
        /// The server [default: http://<--listen>].
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Run SQL in one tenant's database as its owner (the superuser), for
    /// repairs; the server must be stopped. Prints each statement's result as JSON.
    Maintain {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The SQL script.
        sql: String,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Work on the lake directly (the server may be running).
    Lake {
        #[command(subcommand)]
        command: LakeCommand,
    },
    /// Run one SQL query over the lake and print the answer as a table.
    Sql {
        /// The query, e.g. "SELECT * FROM acme.todos FOR SYSTEM_TIME AS OF '2026-11-27 10:00:00+00'".
        query: String,
        #[command(flatten)]
        overrides: Overrides,
    },
}

#[derive(Subcommand)]
enum LakeCommand {
    /// Compact small files, merge manifests, expire old snapshots and remove
    /// orphan files of every lake table (of one tenant with --tenant), now.
    Maintain {
        /// Only this tenant's tables.
        #[arg(long)]
        tenant: Option<String>,
        /// Print each table's report as a JSON line instead of a progress bar.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        overrides: Overrides,
    },
}

fn main() -> Result<()> {
    // Library errors (iceberg's) capture a backtrace when RUST_BACKTRACE is
    // set, which costs milliseconds each on the commit path; keep panics'
    // backtraces, skip the libraries' unless asked for.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("TIDELAKE_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    match cli.command {
        Command::Serve(overrides) => runtime.block_on(serve(Settings::load(overrides)?)),
        Command::Catalog(overrides) => runtime.block_on(serve_alone(
            Settings::load(overrides)?,
            "catalog",
            "/catalog",
            |warehouse| (axum::Router::new().nest("/catalog", catalog::rest::router(warehouse)), None),
        )),
        Command::QueryService(overrides) => {
            let settings = Settings::load(overrides)?;
            let limits = settings.query.clone();
            runtime.block_on(serve_alone(settings, "query service", "/sql", move |warehouse| {
                let queries = query_service::QueryService::new(warehouse, limits);
                (query_service::http::router(queries.clone()), Some(queries))
            }))
        }
        Command::Sql { query, overrides } => runtime.block_on(run_sql(Settings::load(overrides)?, &query)),
        Command::Lake { command: LakeCommand::Maintain { tenant, json, overrides } } => {
            runtime.block_on(maintain_lake(Settings::load(overrides)?, tenant.as_deref(), json))
        }
        Command::Maintain { tenant, sql, overrides } => {
            let settings = Settings::load(overrides)?;
            let tenant = oltp_do::TenantId::parse(&tenant)?;
            let results = oltp_do::maintenance::run_as_owner(&settings.oltp, &tenant, &sql)?;
            for result in results {
                println!("{}", serde_json::to_string(&result)?);
            }
            Ok(())
        }
        Command::Tenants { url, overrides } => runtime.block_on(tenants_table(&server_url(url, overrides))),
        Command::Backup { tenant, url, overrides } => runtime.block_on(backup_now(&server_url(url, overrides), &tenant)),
        Command::Restore { tenant, to, into, url, overrides } => {
            runtime.block_on(restore::restore(&server_url(url, overrides), &tenant, &to, into.as_deref()))
        }
        Command::Bookmark { tenant, at, url, overrides } => {
            runtime.block_on(restore::bookmark(&server_url(url, overrides), &tenant, &at))
        }
    }
}

async fn serve(settings: Settings) -> Result<()> {
    let tenants = Tenants::new(settings.oltp).context("open the data directory")?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    // The first line on stdout says where we listen (port 0 picks one).
    println!("tidelake listening on http://{addr}");
    tracing::info!(%addr, data_dir = %tenants.config().data_dir.display(), "serving");

    let warehouse = Warehouse::open(settings.catalog)
        .await
        .context("open the Iceberg catalog")?;
    let reaper = tokio::spawn(tenants.clone().run_reaper());
    let tiering = tokio::spawn(tenants.clone().run_tiering());
    let (stop_shipper, stop) = tokio::sync::watch::channel(false);
    let maintainer = lake::maintain::Maintainer::new(warehouse.clone(), settings.maintenance);
    let shipper = settings.lake.map(|config| {
        let source = Arc::new(lake_source::TenantsSource(tenants.clone()));
        let shipper = lake::Shipper::new(source, warehouse.clone(), config);
        let reporter = lake_source::LakeReporter { shipper: shipper.clone(), maintainer: maintainer.clone() };
        tenants.add_reporter(Arc::new(reporter));
        shipper
    });
    tenants.set_history(Arc::new(lake_source::LakeHistory { warehouse: warehouse.clone(), shipper: shipper.clone() }));
    let maintenance = shipper.is_some().then(|| tokio::spawn(maintainer.clone().run(stop.clone())));
    let shipper = shipper.map(|shipper| tokio::spawn(shipper.run(stop)));
    let queries = query_service::QueryService::new(warehouse.clone(), settings.query);
    let wire = start_wire(settings.pg_listen, &queries).await?;
    let app = oltp_do::api::router(tenants.clone())
        .nest("/catalog", catalog::rest::router(warehouse))
        .merge(query_service::http::router(queries));
    serve_until_signal(listener, app).await?;
    if let Some(wire) = wire {
        wire.abort();
    }

    let _ = stop_shipper.send(true);
    if let Some(maintenance) = maintenance {
        // A run in progress stops where it is: the next start finishes it.
        maintenance.abort();
    }
    if let Some(shipper) = shipper {
        tracing::info!("shutting down: shipping pending changes to the lake");
        if tokio::time::timeout(SHIPPER_STOP_TIMEOUT, shipper).await.is_err() {
            tracing::warn!("the lake shipper did not finish in time; it resumes on the next start");
        }
    }
    tracing::info!("shutting down: closing open tenant databases");
    reaper.abort();
    tiering.abort();
    Arc::clone(&tenants).shutdown(TENANT_CLOSE_PATIENCE).await;
    tracing::info!("all tenant databases closed");
    Ok(())
}

/// How long a stopping server waits for open connections (requests in
/// flight, WebSockets, long polls) before it closes them.
const HTTP_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a stopping server lets tenants finish queued work before it
/// cancels what they run.
const TENANT_CLOSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve HTTP until SIGTERM or Ctrl-C, then let open connections finish for
/// at most `HTTP_DRAIN`: a WebSocket or a long poll never holds a shutdown.
async fn serve_until_signal(listener: TcpListener, app: axum::Router) -> Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(stopped(stop_rx.clone()));
    tokio::select! {
        served = server => served.context("serve HTTP"),
        () = async {
            stopped(stop_rx).await;
            tokio::time::sleep(HTTP_DRAIN).await;
        } => {
            tracing::warn!("connections still open {HTTP_DRAIN:?} after the stop signal are closed");
            Ok(())
        }
    }
}

/// How long a stopping server waits for the lake to take pending changes.
const SHIPPER_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Serve one part alone over the lake: `what` names it on stdout, `path`
/// completes the address printed.
async fn serve_alone(
    settings: Settings,
    what: &str,
    path: &str,
    app: impl FnOnce(Arc<Warehouse>) -> (axum::Router, Option<Arc<query_service::QueryService>>),
) -> Result<()> {
    let warehouse = Warehouse::open(settings.catalog)
        .await
        .context("open the Iceberg catalog")?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listen on {}", settings.listen))?;
    println!("tidelake {what} listening on http://{}{path}", listener.local_addr()?);
    let (router, queries) = app(warehouse);
    let wire = match queries {
        Some(queries) => start_wire(settings.pg_listen, &queries).await?,
        None => None,
    };
    let served = serve_until_signal(listener, router).await;
    if let Some(wire) = wire {
        wire.abort();
    }
    served
}

/// Serve lake queries over the Postgres wire protocol, if configured; the
/// address goes to stdout after the HTTP one.
async fn start_wire(
    address: Option<std::net::SocketAddr>,
    queries: &Arc<query_service::QueryService>,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(address) = address else { return Ok(None) };
    let listener = TcpListener::bind(address).await.with_context(|| {
        format!("listen for Postgres connections on {address} (choose another with --pg-listen, or `off`)")
    })?;
    println!("tidelake postgres wire listening on {}", listener.local_addr()?);
    let queries = queries.clone();
    Ok(Some(tokio::spawn(query_service::wire::serve(listener, queries, std::future::pending()))))
}

async fn run_sql(settings: Settings, query: &str) -> Result<()> {
    let warehouse = Warehouse::open(settings.catalog)
        .await
        .context("open the Iceberg catalog")?;
    let answer = query_service::QueryService::new(warehouse, settings.query)
        .sql(query)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let table = query_service::pretty(&answer).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{table}");
    println!("({} row{})", answer.row_count(), if answer.row_count() == 1 { "" } else { "s" });
    Ok(())
}

/// `tidelake lake maintain`: one maintenance run, with a progress bar on
/// stderr (or JSON lines on stdout), and a summary.
async fn maintain_lake(settings: Settings, tenant: Option<&str>, json: bool) -> Result<()> {
    use std::io::Write as _;
    let warehouse = Warehouse::open(settings.catalog)
        .await
        .context("open the Iceberg catalog")?;
    let maintainer = lake::maintain::Maintainer::new(warehouse, settings.maintenance);
    let mut failed = 0;
    let reports = maintainer
        .run_once(tenant, |done, total, outcome| {
            let line = match outcome {
                Ok(r) => format!(
                    "{}.{}: {} files → {}, {} snapshots expired, {} files removed",
                    r.tenant, r.table, r.compacted_files, r.written_files, r.expired_snapshots,
                    r.removed_files + r.removed_orphans
                ),
                Err(e) => {
                    failed += 1;
                    format!("failed: {e}")
                }
            };
            if json {
                if let Ok(r) = outcome {
                    println!("{}", serde_json::to_string(r).unwrap_or_default());
                }
                return;
            }
            let width = 30;
            let filled = if total == 0 { width } else { done * width / total };
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K[{}{}] {done}/{total} {line}", "#".repeat(filled), " ".repeat(width - filled));
            let _ = err.flush();
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !json {
        eprintln!();
        let sum = |f: fn(&lake::maintain::TableReport) -> u64| reports.iter().map(f).sum::<u64>();
        println!(
            "{} tables maintained: {} small files rewritten into {}, {} snapshots expired, {} files removed",
            reports.len(),
            sum(|r| r.compacted_files),
            sum(|r| r.written_files),
            sum(|r| r.expired_snapshots),
            sum(|r| r.removed_files + r.removed_orphans),
        );
    }
    anyhow::ensure!(failed == 0, "{failed} table(s) could not be maintained (see the messages above)");
    Ok(())
}

/// The running server to talk to: `--url`, else the configured listen address.
fn server_url(url: Option<String>, overrides: Overrides) -> String {
    url.unwrap_or_else(|| {
        let listen = Settings::load(overrides)
            .map(|s| s.listen)
            .unwrap_or_else(|_| settings::DEFAULT_LISTEN.parse().expect("default address"));
        format!("http://{listen}")
    })
}

/// `tidelake backup`: `POST /t/{tenant}/backups`.
async fn backup_now(url: &str, tenant: &str) -> Result<()> {
    let response = reqwest::Client::new()
        .post(format!("{}/t/{tenant}/backups", url.trim_end_matches('/')))
        .send()
        .await
        .with_context(|| format!("reach the server at {url} (is `tidelake serve` running? --url names another)"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("read the server's answer")?;
    if !status.is_success() {
        anyhow::bail!("backup of {tenant} failed ({status}): {}", body["error"]["message"].as_str().unwrap_or("no message"));
    }
    println!("{}", serde_json::to_string_pretty(&body["backup"])?);
    Ok(())
}

/// `tidelake tenants`: the server's `health`, as a table.
async fn tenants_table(url: &str) -> Result<()> {
    let health: serde_json::Value = reqwest::get(format!("{}/health", url.trim_end_matches('/')))
        .await
        .with_context(|| format!("reach the server at {url} (is `tidelake serve` running? --url names another)"))?
        .json()
        .await
        .context("read the server's health")?;
    let mut rows = vec![["TENANT", "TIER", "LOCAL", "ARCHIVE", "LAST ACCESS (UTC)", "LAKE"].map(String::from).to_vec()];
    for t in health["tenants"].as_array().into_iter().flatten() {
        let bytes = |v: &serde_json::Value| v.as_u64().map_or("-".to_owned(), human_bytes);
        let access = t["lastAccessMs"].as_u64().map_or("-".to_owned(), utc_text);
        let lake = match &t["lake"] {
            serde_json::Value::Null => "-".to_owned(),
            l if l["lagLsn"].as_u64() == Some(0) => "up to date".to_owned(),
            l => format!("{} behind ({:.1} s)", l["lagLsn"], l["lagSeconds"].as_f64().unwrap_or(0.0)),
        };
        rows.push(vec![
            t["tenant"].as_str().unwrap_or("?").to_owned(),
            t["tier"].as_str().unwrap_or("?").to_owned(),
            bytes(&t["diskBytes"]),
            bytes(&t["archiveBytes"]),
            access,
            lake,
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut n, mut i) = (bytes as f64, 0);
    while n >= 1024.0 && i < units.len() - 1 {
        n /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{bytes} B") } else { format!("{n:.1} {}", units[i]) }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
fn utc_text(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
