//! One server for every command that serves: `serve` runs every part on
//! one address; `catalog` and `query-service` run one part alone over the
//! same lake. Authentication, listening, the Postgres wire front and the
//! shutdown are the same for all.

use std::sync::Arc;

use anyhow::{Context, Result};
use catalog::Warehouse;
use oltp_do::Tenants;
use oltp_do::tenants::{Reporter, Services};
use prometheus_client::collector::Collector;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::edge_source::{EdgeReporter, EdgeSettings, EdgeSource};
use crate::lake_source;
use crate::settings::Settings;

/// What a command serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every part: the tenants, the lake shipper and maintenance, the
    /// catalog, the query service.
    All,
    /// The Iceberg REST catalog alone.
    Catalog,
    /// The query service alone (HTTP and the Postgres wire front).
    QueryService,
}

impl Role {
    /// The first line on stdout: where the server listens (port 0 picks one).
    fn banner(self, addr: std::net::SocketAddr) -> String {
        match self {
            Self::All => format!("tidelake listening on http://{addr}"),
            Self::Catalog => format!("tidelake catalog listening on http://{addr}/catalog"),
            Self::QueryService => format!("tidelake query service listening on http://{addr}/sql"),
        }
    }

    fn serves_catalog(self) -> bool {
        matches!(self, Self::All | Self::Catalog)
    }

    fn serves_queries(self) -> bool {
        matches!(self, Self::All | Self::QueryService)
    }
}

/// Serve `role` until SIGTERM or Ctrl-C, then stop in order: connections,
/// the lake shipper (pending changes shipped), the tenants (closed cleanly).
pub async fn run(settings: Settings, role: Role) -> Result<()> {
    let auth = authenticator(&settings).await?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    println!("{}", role.banner(addr));
    tracing::info!(%addr, ?role, data_dir = %settings.oltp.data_dir.display(), "serving");

    let warehouse = Warehouse::open(settings.catalog)
        .await
        .context("open the Iceberg catalog")?;
    let tenants = match role {
        Role::All => Some(TenantsPart::start(settings.oltp, settings.lake, settings.edge, settings.maintenance, &warehouse)?),
        _ => None,
    };
    let mut app = match &tenants {
        Some(part) => oltp_do::api::router(part.tenants.clone()),
        None => axum::Router::new(),
    };
    if role.serves_catalog() {
        app = app.nest("/catalog", catalog::rest::router(warehouse.clone()));
    }
    let mut wire = None;
    if role.serves_queries() {
        let queries = query_service::QueryService::new(warehouse, settings.query);
        wire = start_wire(settings.pg_listen, settings.pg_tls.as_ref(), &queries, &auth).await?;
        app = app.merge(query_service::http::router(queries));
    }
    let tenant_wire = match (&tenants, settings.tenant_pg_listen) {
        (Some(part), Some(address)) => {
            let listener = TcpListener::bind(address).await.with_context(|| {
                format!("listen for tenant Postgres connections on {address} (choose another with --tenant-pg-listen, or `off`)")
            })?;
            println!("tidelake tenant postgres listening on {}", listener.local_addr()?);
            let tls = tenant_tls(settings.pg_tls.as_ref())?;
            Some(tokio::spawn(oltp_do::pg::serve(listener, part.tenants.clone(), auth.clone(), tls, std::future::pending())))
        }
        _ => None,
    };
    let served = serve_until_signal(listener, secured(app, auth, settings.auth.browser)).await;
    if let Some(wire) = wire {
        wire.abort();
    }
    if let Some(wire) = tenant_wire {
        wire.abort();
    }
    if let Some(tenants) = tenants {
        tenants.stop().await;
    }
    served
}

/// The tenants and what reads them: the lake shipper and maintenance, and
/// the background work (hibernation, tiers).
struct TenantsPart {
    tenants: Arc<Tenants>,
    reaper: JoinHandle<()>,
    tiering: JoinHandle<()>,
    stop_lake: tokio::sync::watch::Sender<bool>,
    maintenance: Option<JoinHandle<()>>,
    shipper: Option<JoinHandle<()>>,
    /// The shipper of the edge's tenants, if an edge is configured.
    edge_shipper: Option<JoinHandle<()>>,
}

impl TenantsPart {
    fn start(
        oltp: oltp_do::OltpConfig,
        lake: Option<lake::ShipperConfig>,
        edge: Option<EdgeSettings>,
        maintenance: lake::MaintenanceConfig,
        warehouse: &Arc<Warehouse>,
    ) -> Result<Self> {
        let maintainer = lake::maintain::Maintainer::new(warehouse.clone(), maintenance);
        // The edge's tenants ship into the same lake by the same rules,
        // into namespaces of their own origin.
        let edge = match (edge, &lake) {
            (Some(edge), Some(config)) => {
                let source = Arc::new(EdgeSource::new(edge)?);
                let config = lake::ShipperConfig { origin: lake::spec::EDGE_ORIGIN.to_owned(), ..config.clone() };
                Some((source.clone(), lake::Shipper::new(source, warehouse.clone(), config)))
            }
            _ => None,
        };
        // The shipper reads the tenants; the tenants report its lag and
        // restore from what it shipped.
        let mut shipper = None;
        let tenants = Tenants::with_services(oltp, |tenants| {
            shipper = lake.map(|config| {
                let source = Arc::new(lake_source::TenantsSource(tenants));
                lake::Shipper::new(source, warehouse.clone(), config)
            });
            let reporters = shipper
                .iter()
                .map(|shipper| {
                    Arc::new(lake_source::LakeReporter { shipper: shipper.clone(), maintainer: maintainer.clone() })
                        as Arc<dyn Reporter>
                })
                .chain(edge.iter().map(|(source, shipper)| {
                    Arc::new(EdgeReporter { source: source.clone(), shipper: shipper.clone() }) as Arc<dyn Reporter>
                }));
            let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
            if let Some(shipper) = &shipper {
                collectors.push(Box::new(lake::metrics::ShipperMetrics(shipper.clone())));
                collectors.push(Box::new(lake::metrics::MaintainerMetrics(maintainer.clone())));
            }
            Services {
                history: Some(Arc::new(lake_source::LakeHistory {
                    warehouse: warehouse.clone(),
                    shipper: shipper.clone(),
                    edge: edge.clone(),
                })),
                reporters: reporters.collect(),
                collectors,
            }
        })
        .context("open the data directory")?;
        let reaper = tokio::spawn(tenants.clone().run_reaper());
        let tiering = tokio::spawn(tenants.clone().run_tiering());
        let (stop_lake, stop) = tokio::sync::watch::channel(false);
        let maintenance = shipper.is_some().then(|| tokio::spawn(maintainer.clone().run(stop.clone())));
        let edge_shipper = edge.map(|(_, shipper)| tokio::spawn(shipper.run(stop.clone())));
        let shipper = shipper.map(|shipper| tokio::spawn(shipper.run(stop)));
        Ok(Self { tenants, reaper, tiering, stop_lake, maintenance, shipper, edge_shipper })
    }

    async fn stop(self) {
        let _ = self.stop_lake.send(true);
        if let Some(maintenance) = self.maintenance {
            // A run in progress stops where it is: the next start finishes it.
            maintenance.abort();
        }
        let shippers: Vec<JoinHandle<()>> = self.shipper.into_iter().chain(self.edge_shipper).collect();
        if !shippers.is_empty() {
            tracing::info!("shutting down: shipping pending changes to the lake");
            // They ship at once, each a task of its own: one deadline for all.
            let deadline = tokio::time::Instant::now() + SHIPPER_STOP_TIMEOUT;
            for shipper in shippers {
                if tokio::time::timeout_at(deadline, shipper).await.is_err() {
                    tracing::warn!("the lake shipper did not finish in time; it resumes on the next start");
                }
            }
        }
        tracing::info!("shutting down: closing open tenant databases");
        self.reaper.abort();
        self.tiering.abort();
        self.tenants.shutdown(TENANT_CLOSE_PATIENCE).await;
        tracing::info!("all tenant databases closed");
    }
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

/// Serve lake queries over the Postgres wire protocol, if configured; the
/// address goes to stdout after the HTTP one.
async fn start_wire(
    address: Option<std::net::SocketAddr>,
    tls: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    queries: &Arc<query_service::QueryService>,
    auth: &Arc<auth::Auth>,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(address) = address else { return Ok(None) };
    let tls = match tls {
        Some((cert, key)) => {
            let read = |path: &std::path::PathBuf| std::fs::read(path).with_context(|| format!("read {}", path.display()));
            let acceptor = query_service::wire::tls_acceptor(&read(cert)?, &read(key)?)
                .map_err(|e| anyhow::anyhow!("the Postgres wire front's TLS: {e}"))?;
            Some(acceptor)
        }
        None => None,
    };
    let listener = TcpListener::bind(address).await.with_context(|| {
        format!("listen for Postgres connections on {address} (choose another with --pg-listen, or `off`)")
    })?;
    println!("tidelake postgres wire listening on {}", listener.local_addr()?);
    let queries = queries.clone();
    let serve = query_service::wire::serve(listener, queries, auth.clone(), tls, std::future::pending());
    Ok(Some(tokio::spawn(serve)))
}

/// The tenants' wire protocol takes TLS with the lake front's certificate.
fn tenant_tls(files: Option<&(std::path::PathBuf, std::path::PathBuf)>) -> Result<Option<Arc<dyn oltp_do::pg::Tls>>> {
    struct Acceptor(query_service::wire::TlsAcceptor);
    impl oltp_do::pg::Tls for Acceptor {
        fn accept(
            &self,
            stream: Box<dyn oltp_do::pg::Stream>,
        ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Box<dyn oltp_do::pg::Stream>>> + Send>> {
            let accept = self.0.accept(stream);
            Box::pin(async move { Ok(Box::new(accept.await?) as Box<dyn oltp_do::pg::Stream>) })
        }
    }
    let Some((cert, key)) = files else { return Ok(None) };
    let read = |path: &std::path::PathBuf| std::fs::read(path).with_context(|| format!("read {}", path.display()));
    let acceptor = query_service::wire::tls_acceptor(&read(cert)?, &read(key)?)
        .map_err(|e| anyhow::anyhow!("the Postgres wire protocol's TLS: {e}"))?;
    Ok(Some(Arc::new(Acceptor(acceptor))))
}

/// The server's authenticator, once it is clear that a server without auth
/// serves loopback only (or is told loudly otherwise).
async fn authenticator(settings: &Settings) -> Result<Arc<auth::Auth>> {
    let auth = auth::Auth::new(&settings.oltp.data_dir, settings.auth.jwt.clone()).map_err(|e| anyhow::anyhow!("auth: {e}"))?;
    if auth.is_enabled() {
        auth.start().await;
        tracing::info!("auth is on: every request needs a token (docs/auth.md)");
        return Ok(auth);
    }
    let exposed: Vec<String> = [Some(settings.listen), settings.pg_listen, settings.tenant_pg_listen]
        .into_iter()
        .flatten()
        .filter(|a| !a.ip().is_loopback())
        .map(|a| a.to_string())
        .collect();
    if exposed.is_empty() {
        tracing::info!("auth is off: serving loopback only (docs/auth.md turns it on)");
    } else if settings.auth.insecure_no_auth {
        eprintln!(
            "WARNING: auth is off and tidelake listens on {}: anyone who reaches it reads, changes and restores every tenant (--auth-insecure-no-auth)",
            exposed.join(", ")
        );
    } else {
        anyhow::bail!(
            "refusing to listen on {} without auth: anyone who reached it could read and change every tenant. \
             Turn auth on (--auth-jwks-url, --auth-jwt-secret or `tidelake token create`; see docs/auth.md), listen on 127.0.0.1, \
             or pass --auth-insecure-no-auth",
            exposed.join(", ")
        );
    }
    Ok(auth)
}

/// Every route behind browser safety and authentication.
fn secured(app: axum::Router, auth: Arc<auth::Auth>, browser: auth::http::Browser) -> axum::Router {
    app.layer(axum::middleware::from_fn_with_state(auth, auth::http::authenticate))
        .layer(axum::middleware::from_fn_with_state(Arc::new(browser), auth::http::guard))
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
