//! The `tidelake` binary: wires the crates together and serves them on one
//! address. No business logic lives here.

mod lake_source;
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
    /// Run one SQL query over the lake and print the answer as a table.
    Sql {
        /// The query, e.g. "SELECT * FROM acme.todos FOR SYSTEM_TIME AS OF '2026-11-27 10:00:00+00'".
        query: String,
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
            |warehouse| axum::Router::new().nest("/catalog", catalog::rest::router(warehouse)),
        )),
        Command::QueryService(overrides) => runtime.block_on(serve_alone(
            Settings::load(overrides)?,
            "query service",
            "/sql",
            |warehouse| query_service::http::router(query_service::QueryService::new(warehouse)),
        )),
        Command::Sql { query, overrides } => runtime.block_on(run_sql(Settings::load(overrides)?, &query)),
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
    let (stop_shipper, stop) = tokio::sync::watch::channel(false);
    let shipper = settings.lake.map(|config| {
        let source = Arc::new(lake_source::TenantsSource(tenants.clone()));
        let shipper = lake::Shipper::new(source, warehouse.clone(), config);
        tenants.add_reporter(Arc::new(lake_source::LakeReporter(shipper.clone())));
        tokio::spawn(shipper.run(stop))
    });
    let queries = query_service::QueryService::new(warehouse.clone());
    let app = oltp_do::api::router(tenants.clone())
        .nest("/catalog", catalog::rest::router(warehouse))
        .merge(query_service::http::router(queries));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serve HTTP")?;

    if let Some(shipper) = shipper {
        tracing::info!("shutting down: shipping pending changes to the lake");
        let _ = stop_shipper.send(true);
        if tokio::time::timeout(SHIPPER_STOP_TIMEOUT, shipper).await.is_err() {
            tracing::warn!("the lake shipper did not finish in time; it resumes on the next start");
        }
    }
    tracing::info!("shutting down: closing open tenant databases");
    reaper.abort();
    Arc::clone(&tenants).shutdown().await;
    tracing::info!("all tenant databases closed");
    Ok(())
}

/// How long a stopping server waits for the lake to take pending changes.
const SHIPPER_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Serve one part alone over the lake: `what` names it on stdout, `path`
/// completes the address printed.
async fn serve_alone(
    settings: Settings,
    what: &str,
    path: &str,
    app: impl FnOnce(Arc<Warehouse>) -> axum::Router,
) -> Result<()> {
    let warehouse = Warehouse::open(settings.catalog)
        .await
        .context("open the Iceberg catalog")?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listen on {}", settings.listen))?;
    println!("tidelake {what} listening on http://{}{path}", listener.local_addr()?);
    axum::serve(listener, app(warehouse))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serve HTTP")
}

async fn run_sql(settings: Settings, query: &str) -> Result<()> {
    let warehouse = Warehouse::open(settings.catalog)
        .await
        .context("open the Iceberg catalog")?;
    let answer = query_service::QueryService::new(warehouse)
        .sql(query)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let table = query_service::pretty(&answer).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{table}");
    println!("({} row{})", answer.row_count(), if answer.row_count() == 1 { "" } else { "s" });
    Ok(())
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
