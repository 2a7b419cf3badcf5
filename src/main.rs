//! The `tidelake` binary: wires the crates together and serves them on one
//! address. No business logic lives here.

mod check;
mod edge_source;
mod lake_source;
mod migrate;
mod restore;
mod server;
mod settings;
mod types;


use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use catalog::Warehouse;
use tracing_subscriber::EnvFilter;

use server::Role;
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
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Take a base backup of a tenant now, on a running server, and print its manifest.
    Backup {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        server: ServerArgs,
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
        #[command(flatten)]
        server: ServerArgs,
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
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// The deployment's migrations (`serve --migrations DIR`) on a running
    /// server: where every tenant stands, and bringing tenants to the latest.
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
    },
    /// TypeScript interfaces or Rust structs for the tables: a row as the HTTP
    /// API answers it and what an insert may give; from a tenant's live
    /// schema (--tenant, on a running server) or from the deployment's
    /// migrations (the schema every new tenant starts with).
    Types {
        /// The tenant whose schema to read (on the server at --url).
        #[arg(long)]
        tenant: Option<String>,
        /// typescript (ts) or rust (rs).
        #[arg(long)]
        lang: String,
        /// Write to this file [default: standard output].
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
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
    /// API keys (kept hashed in the data directory; the server sees changes at once).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
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
enum MigrateCommand {
    /// Every tenant's version and state (latest, pending, failed); exits 1 if a migration failed.
    Status {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Bring tenants to the latest migration now — hibernated and cold ones
    /// too (each is opened, which migrates it); exits 1 if any failed.
    Up(Rollout),
    /// Undo migrations newer than --to by their down migrations (NNNN_name.down.sql),
    /// newest first; each tenant is then held at that version (not migrated up when
    /// it opens) until `migrate up --tenant` names it. Exits 1 if any failed.
    Down {
        /// The version to go down to (0: before the first migration).
        #[arg(long)]
        to: i64,
        #[command(flatten)]
        rollout: Rollout,
    },
    /// Check the migrations before a deploy (no server needed): squawk's lint rules and
    /// tidelake's, every migration applied to a scratch database, each down migration
    /// tried up, down, up. Exits 1 on an error (or a warning, with --deny-warnings).
    Check {
        /// Judge only migrations newer than this version (those already deployed are
        /// still applied to the scratch database) [default: every migration].
        #[arg(long, default_value_t = 0)]
        since: i64,
        /// text or json.
        #[arg(long, default_value = "text")]
        format: String,
        /// Exit 1 on warnings too.
        #[arg(long)]
        deny_warnings: bool,
        #[command(flatten)]
        overrides: Overrides,
    },
}

/// Which tenants `migrate up`/`down` take, how many at once, on which server.
#[derive(clap::Args)]
struct Rollout {
    /// Only these tenants (repeat or separate with commas) [default: every tenant].
    #[arg(long = "tenant", value_delimiter = ',')]
    tenants: Vec<String>,
    /// Tenants taken at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make an API key and print it (once: only its hash is kept).
    Create {
        /// The tenants it reaches: ids, patterns with * (acme-*), or * for all; repeat or separate with commas.
        #[arg(long = "tenant", required = true, value_delimiter = ',')]
        tenants: Vec<String>,
        /// read, write or admin.
        #[arg(long)]
        scope: String,
        /// A name to recognise it by in `token list`.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// The API keys: id, name, scope, tenants, made, revoked.
    List {
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Revoke an API key by its id (tlk_<id> or <id>); a running server refuses it from the next request.
    Revoke {
        id: String,
        #[command(flatten)]
        overrides: Overrides,
    },
}

/// How a command reaches a running server.
#[derive(clap::Args)]
struct ServerArgs {
    /// The server [default: http://<--listen>].
    #[arg(long)]
    url: Option<String>,
    /// A token with the scope the command needs (an API key or a JWT).
    #[arg(long, env = "TIDELAKE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// A running server and the token to show it.
pub struct Server {
    pub url: String,
    token: Option<String>,
    /// Made once: a command's requests share its connections.
    client: std::sync::OnceLock<reqwest::Client>,
}

impl Server {
    fn of(args: ServerArgs, overrides: Overrides) -> Server {
        Server { url: server_url(args.url, overrides), token: args.token, client: std::sync::OnceLock::new() }
    }

    /// An HTTP client that shows the token, if one is given.
    pub fn client(&self) -> Result<reqwest::Client> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &self.token {
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).context("the token is not a valid header value")?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder().default_headers(headers).build()?;
        Ok(self.client.get_or_init(|| client).clone())
    }

    /// `GET {path}` (`/health`, `/t/acme/schema`): the server's JSON answer,
    /// or why there is none.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        self.answer(self.client()?.get(format!("{}{path}", self.url.trim_end_matches('/')))).await
    }

    /// `POST {path}` with the JSON `body`: the server's JSON answer, or why there is none.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
        self.answer(self.client()?.post(format!("{}{path}", self.url.trim_end_matches('/'))).json(body)).await
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> Result<serde_json::Value> {
        let url = &self.url;
        let response = request
            .send()
            .await
            .with_context(|| format!("reach the server at {url} (is `tidelake serve` running? --url names another)"))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.context("read the server's answer")?;
        if !status.is_success() {
            anyhow::bail!("the server refused ({status}): {}", body["error"]["message"].as_str().unwrap_or("no message"));
        }
        Ok(body)
    }
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
        Command::Serve(overrides) => runtime.block_on(server::run(Settings::load(overrides)?, Role::All)),
        Command::Catalog(overrides) => runtime.block_on(server::run(Settings::load(overrides)?, Role::Catalog)),
        Command::QueryService(overrides) => runtime.block_on(server::run(Settings::load(overrides)?, Role::QueryService)),
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
        Command::Tenants { server, overrides } => runtime.block_on(tenants_table(&Server::of(server, overrides))),
        Command::Backup { tenant, server, overrides } => runtime.block_on(backup_now(&Server::of(server, overrides), &tenant)),
        Command::Restore { tenant, to, into, server, overrides } => {
            runtime.block_on(restore::restore(&Server::of(server, overrides), &tenant, &to, into.as_deref()))
        }
        Command::Bookmark { tenant, at, server, overrides } => {
            runtime.block_on(restore::bookmark(&Server::of(server, overrides), &tenant, &at))
        }
        Command::Token { command } => tokens(command),
        Command::Types { tenant, lang, out, server, overrides } => {
            let lang = model::types::Lang::parse(&lang)
                .ok_or_else(|| anyhow::anyhow!("--lang {lang:?}: expected typescript (ts) or rust (rs)"))?;
            let source = match tenant {
                Some(tenant) => runtime.block_on(types::of_tenant(&Server::of(server, overrides), &tenant, lang))?,
                None => types::of_migrations(&Settings::load(overrides)?, lang)?,
            };
            match out {
                Some(path) => std::fs::write(&path, source).with_context(|| format!("write {}", path.display()))?,
                None => print!("{source}"),
            }
            Ok(())
        }
        Command::Migrate { command } => {
            let ok = match command {
                MigrateCommand::Status { server, overrides } => runtime.block_on(migrate::status(&Server::of(server, overrides)))?,
                MigrateCommand::Up(Rollout { tenants, concurrency, server, overrides }) => {
                    runtime.block_on(migrate::up(&Server::of(server, overrides), &tenants, concurrency))?
                }
                MigrateCommand::Down { to, rollout: Rollout { tenants, concurrency, server, overrides } } => {
                    runtime.block_on(migrate::down(&Server::of(server, overrides), &tenants, to, concurrency))?
                }
                MigrateCommand::Check { since, format, deny_warnings, overrides } => {
                    return migrate_check(Settings::load(overrides)?, since, &format, deny_warnings);
                }
            };
            if !ok {
                anyhow::bail!("some tenants' migrations failed (above)");
            }
            Ok(())
        }
    }
}

/// `tidelake migrate check`: the findings, and an error for CI if any.
fn migrate_check(settings: Settings, since: i64, format: &str, deny_warnings: bool) -> Result<()> {
    let (Some(dir), Some(set)) = (settings.migrations_dir.as_ref(), settings.oltp.migrations.as_ref()) else {
        anyhow::bail!("no migrations to check: name the folder with --migrations DIR (or `migrations` in the config)");
    };
    if !matches!(format, "text" | "json") {
        anyhow::bail!("--format {format:?}: expected text or json");
    }
    let findings = check::check(dir, set, &settings.oltp.engine, since)?;
    let checked = set.list.iter().filter(|m| m.version > since).count();
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "checked": checked, "findings": findings }))?),
        _ => check::print(&findings, checked),
    }
    let errors = findings.iter().filter(|f| f.severity == check::Severity::Error).count();
    let warnings = findings.iter().filter(|f| f.severity == check::Severity::Warning).count();
    if errors > 0 || (deny_warnings && warnings > 0) {
        anyhow::bail!("the migrations have {errors} error(s) and {warnings} warning(s)");
    }
    Ok(())
}

/// `tidelake token create | list | revoke`.
fn tokens(command: TokenCommand) -> Result<()> {
    let store = |overrides: Overrides| -> Result<auth::KeyStore> {
        Ok(auth::KeyStore::open(&Settings::load(overrides)?.oltp.data_dir))
    };
    match command {
        TokenCommand::Create { tenants, scope, name, overrides } => {
            let scope = auth::Scope::parse(&scope)
                .ok_or_else(|| anyhow::anyhow!("--scope {scope:?}: expected read, write or admin"))?;
            let reach = auth::Reach::of(tenants).map_err(|e| anyhow::anyhow!("--tenant {e}"))?;
            let store = store(overrides)?;
            let made = store.create(scope, reach, name).with_context(|| format!("write {}", store.path().display()))?;
            eprintln!(
                "API key {} ({} on {}); it is shown once, keep it secret:",
                made.stored.user(),
                made.stored.scope,
                made.stored.tenants
            );
            println!("{}", made.key);
        }
        TokenCommand::List { overrides } => {
            let store = store(overrides)?;
            let keys = store.list().with_context(|| format!("read {}", store.path().display()))?;
            let mut rows = vec![["ID", "NAME", "SCOPE", "TENANTS", "CREATED (UTC)", "REVOKED (UTC)"].map(String::from).to_vec()];
            for k in keys {
                rows.push(vec![
                    k.user(),
                    k.name.clone().unwrap_or_default(),
                    k.scope.to_string(),
                    k.tenants.to_string(),
                    utc_text(k.created_ms),
                    k.revoked_ms.map_or_else(String::new, utc_text),
                ]);
            }
            print_table(&rows);
        }
        TokenCommand::Revoke { id, overrides } => {
            let store = store(overrides)?;
            anyhow::ensure!(store.revoke(&id)?, "no API key {id} in {}", store.path().display());
            eprintln!("revoked {id}");
        }
    }
    Ok(())
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
async fn backup_now(server: &Server, tenant: &str) -> Result<()> {
    let body = server
        .post_json(&format!("/t/{tenant}/backups"), &serde_json::json!({}))
        .await
        .with_context(|| format!("backup of {tenant} failed"))?;
    println!("{}", serde_json::to_string_pretty(&body["backup"])?);
    Ok(())
}

/// `tidelake tenants`: the server's `health`, as a table.
async fn tenants_table(server: &Server) -> Result<()> {
    let health = server.get_json("/health").await?;
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
    print_table(&rows);
    Ok(())
}

/// Rows as aligned columns, the first the header.
fn print_table(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// `512 B`, `1.5 KiB`, `20.0 GiB`.
fn human_bytes(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
fn utc_text(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}
