//! The Postgres wire front: `psql`, BI tools and Grafana's PostgreSQL data
//! source run lake queries — `AS OF` included — over the simple and the
//! extended query protocol (pgwire and arrow-pg, as `datafusion-postgres`
//! ships them).
//!
//! Every statement is parsed with the lake's dialect, not PostgreSQL's, so
//! the version clauses survive; queries go through [`QueryService`] exactly
//! as over HTTP. Queries of PostgreSQL's catalogs (psql's `\d`, BI tools'
//! schema browsers) are PostgreSQL's SQL and are planned over the catalogs
//! of the lake ([`crate::catalogs`]). The few session statements clients send on their own
//! (`SET`, `SHOW`, `BEGIN`/`COMMIT`/`ROLLBACK`) are answered here. The lake
//! is read-only: each query reads the tables as the catalog has them when it
//! starts, inside a "transaction" or not.
//!
//! A query is bounded by the query timeout from the moment its Execute (or
//! simple Query) arrives to its last row: past it, its rows stop, it is
//! cancelled and the client gets SQLSTATE 57014; the connection goes on.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Decimal128Type};
use datafusion::sql::sqlparser::ast::{Expr, Set, Statement, Value};
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, into_pg_type};
use datafusion_postgres::arrow_pg::encoder::{Encoder as RowFields, encode_value};
use datafusion_postgres::pgwire;
use futures::{Sink, SinkExt, StreamExt, stream};
use auth::{Auth, Principal, StoredKey};
use pgwire::api::auth::sasl::scram::{ScramServerAuth, ScramServerAuthWaitingForClientFinal};
use pgwire::api::auth::{self as auth_api, DefaultServerParameterProvider, Password, StartupHandler};
use pgwire::api::{METADATA_USER, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::messages::startup::Authentication;
pub use pgwire::tokio::TlsAcceptor;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use tokio::net::TcpListener;

use crate::error::QueryError;
use crate::catalogs::{self, Reads};
use crate::{Prepared, QueryService, rewrite};

/// Accept Postgres connections on `listener` until `shutdown` resolves;
/// each authenticates with `auth` (see [`TokenStartup`]), over TLS when
/// `tls` is given and the client asks for it.
pub async fn serve(
    listener: TcpListener,
    service: Arc<QueryService>,
    auth: Arc<Auth>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let handlers = Arc::new(Handlers { backend: Arc::new(Backend { service }), auth, tls: tls.is_some() });
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept a Postgres connection");
                    continue;
                }
            },
        };
        let (handlers, tls) = (handlers.clone(), tls.clone());
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!(%peer, error = %e, "Postgres connection ended");
            }
        });
    }
}

struct Handlers {
    backend: Arc<Backend>,
    auth: Arc<Auth>,
    /// TLS is offered: a password sent as is must come over it.
    tls: bool,
}

/// The TLS side of the wire front, from PEM text: the certificate chain
/// and its private key.
pub fn tls_acceptor(certificate_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(certificate_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("the private key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and its key: {e}"))?;
    // PostgreSQL 17's clients name the protocol (direct TLS negotiation).
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.backend.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.backend.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(TokenStartup { auth: self.auth.clone(), tls: self.tls, phase: tokio::sync::Mutex::new(Phase::Start) })
    }
}

/// One connection's authentication. The password is a token: with the
/// user name of an API key (`tlk_<id>`) it is checked by SCRAM-SHA-256
/// against the key's salted password, so the key never crosses the wire;
/// with any other user name the password is sent as is and may be an API
/// key or a JWT — over TLS only, when TLS is offered. Without auth, no
/// password is asked for. The
/// caller becomes the session's [`Principal`]: its queries read the
/// tenants it reaches.
struct TokenStartup {
    auth: Arc<Auth>,
    tls: bool,
    phase: tokio::sync::Mutex<Phase>,
}

enum Phase {
    Start,
    Password,
    ScramFirst(StoredKey),
    ScramFinal(StoredKey, Box<ScramServerAuthWaitingForClientFinal>),
}

/// The parameters a session starts with, as `SHOW` and `current_setting` say them.
fn server_parameters() -> DefaultServerParameterProvider {
    let setting = |name: &str| catalogs::setting(name).unwrap_or_default().to_owned();
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = setting("server_version");
    parameters.search_path = setting("search_path");
    parameters.default_transaction_read_only = true;
    parameters
}

fn refused(user: &str, why: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        "28P01".into(),
        format!("password authentication failed for user \"{user}\": {why}"),
    )))
}

#[async_trait]
impl StartupHandler for TokenStartup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut phase = self.phase.lock().await;
        let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
        match (message, &*phase) {
            (PgWireFrontendMessage::Startup(startup), Phase::Start) => {
                auth_api::protocol_negotiation(client, &startup).await?;
                auth_api::save_startup_parameters_to_metadata(client, &startup);
                let (pid, secret) = RandomPidSecretKeyGenerator::default().generate(client);
                client.set_pid_and_secret_key(pid, secret);
                if !self.auth.is_enabled() {
                    client.session_extensions().insert(Principal::open());
                    return auth_api::finish_authentication(client, &server_parameters()).await;
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
                *phase = match self.auth.key_of_user(&user) {
                    Some(key) => {
                        client.send(PgWireBackendMessage::Authentication(Authentication::SASL(vec!["SCRAM-SHA-256".into()]))).await?;
                        Phase::ScramFirst(key)
                    }
                    None if self.tls && !client.is_secure() => {
                        return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                            "FATAL".into(),
                            "28000".into(),
                            format!(
                                "user \"{user}\" signs in with a token as the password, which this server takes over TLS only: \
                                 connect with sslmode=require, or sign in with SCRAM as an API key's id (tlk_…)"
                            ),
                        ))));
                    }
                    None => {
                        client.send(PgWireBackendMessage::Authentication(Authentication::CleartextPassword)).await?;
                        Phase::Password
                    }
                };
                Ok(())
            }
            (PgWireFrontendMessage::PasswordMessageFamily(message), Phase::Password) => {
                let password = message.into_password()?.password;
                let principal = self.auth.token(&password).await.map_err(|denied| refused(&user, &denied.to_string()))?;
                client.session_extensions().insert(principal);
                *phase = Phase::Start;
                auth_api::finish_authentication(client, &server_parameters()).await
            }
            (PgWireFrontendMessage::PasswordMessageFamily(message), Phase::ScramFirst(key)) => {
                let initial = message.into_sasl_initial_response()?;
                if initial.auth_method != "SCRAM-SHA-256" {
                    return Err(refused(&user, &format!("{} is not offered: use SCRAM-SHA-256", initial.auth_method)));
                }
                let data = initial.data.ok_or_else(|| refused(&user, "empty SCRAM message"))?;
                let expected = key_password(key).ok_or_else(|| refused(&user, "the key's SCRAM secret is damaged"))?;
                let (server_first, waiting) = ScramServerAuth::new().on_client_first_message(&data, expected)?;
                client.send(PgWireBackendMessage::Authentication(Authentication::SASLContinue(server_first.into()))).await?;
                *phase = Phase::ScramFinal(key.clone(), Box::new(waiting));
                Ok(())
            }
            (PgWireFrontendMessage::PasswordMessageFamily(message), Phase::ScramFinal(key, waiting)) => {
                let response = message.into_sasl_response()?;
                let server_final = waiting
                    .on_client_final_message(&response.data)
                    .map_err(|_| refused(&user, "the password is not this key"))?;
                client.send(PgWireBackendMessage::Authentication(Authentication::SASLFinal(server_final.into()))).await?;
                client.session_extensions().insert(key.principal());
                *phase = Phase::Start;
                auth_api::finish_authentication(client, &server_parameters()).await
            }
            _ => Err(refused(&user, "unexpected message during authentication")),
        }
    }
}

/// The SCRAM secret pgwire checks a key's proof against.
fn key_password(key: &StoredKey) -> Option<Password> {
    let (salt, salted) = key.scram_secret()?;
    Some(Password::new(Some(salt), salted))
}

/// The caller a connection authenticated as.
fn caller(client: &impl ClientInfo) -> PgWireResult<Principal> {
    client.session_extensions().get::<Principal>().map(|p| (*p).clone()).ok_or_else(|| {
        PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), "28000".into(), "not authenticated".into())))
    })
}

struct Backend {
    service: Arc<QueryService>,
}

/// A statement as the extended protocol keeps it between Parse and Execute.
#[derive(Clone, Debug)]
pub enum WireStatement {
    Empty,
    Session(Session),
    /// A query, and whether it reads the lake or the catalogs.
    Query(Box<Statement>, Reads),
}

/// The session statements answered without the lake.
#[derive(Clone, Debug)]
pub enum Session {
    Set { name: String, value: String },
    Show(String),
    Begin,
    Commit,
    Rollback,
}

fn classify(statement: Statement, reads: Reads) -> Result<WireStatement, QueryError> {
    let unsupported = |what: &str| QueryError::Sql(format!("{what} is not supported by the lake query service"));
    Ok(match statement {
        Statement::Set(set) => WireStatement::Session(match set {
            Set::SingleAssignment { variable, values, .. } => {
                let value = values.iter().map(setting_value).collect::<Vec<_>>().join(", ");
                Session::Set { name: variable.to_string().to_lowercase(), value }
            }
            Set::SetTimeZone { value, .. } => Session::Set { name: "timezone".into(), value: setting_value(&value) },
            Set::SetNames { charset_name, .. } => {
                Session::Set { name: "client_encoding".into(), value: charset_name.value }
            }
            // The lake is read-only and every query a consistent snapshot.
            Set::SetTransaction { .. } => Session::Set { name: "transaction".into(), value: String::new() },
            other => return Err(unsupported(&other.to_string())),
        }),
        Statement::ShowVariable { variable } => WireStatement::Session(Session::Show(
            variable.iter().map(|v| v.value.to_lowercase()).collect::<Vec<_>>().join(" "),
        )),
        Statement::StartTransaction { .. } => WireStatement::Session(Session::Begin),
        Statement::Commit { .. } => WireStatement::Session(Session::Commit),
        Statement::Rollback { .. } => WireStatement::Session(Session::Rollback),
        other => WireStatement::Query(Box::new(rewrite::only_query(other)?), reads),
    })
}

/// The statements of `sql`, each classified (`catalogs::parse_all`).
fn parse_statements(sql: &str) -> Result<Vec<Result<WireStatement, QueryError>>, QueryError> {
    Ok(catalogs::parse_all(sql)?
        .into_iter()
        .map(|parsed| parsed.and_then(|(statement, reads)| classify(statement, reads)))
        .collect())
}

fn setting_value(expr: &Expr) -> String {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    }
}

/// The settings a session may change, and the values each accepts.
fn check_setting(name: &str, value: &str) -> Result<(), QueryError> {
    let lower = value.to_lowercase();
    let accepted = match name {
        "application_name" | "extra_float_digits" | "client_min_messages" | "statement_timeout" | "transaction" => {
            true
        }
        "client_encoding" | "names" => matches!(lower.as_str(), "utf8" | "utf-8" | "unicode"),
        "datestyle" => lower.starts_with("iso"),
        "intervalstyle" => lower == "postgres",
        "bytea_output" => lower == "hex",
        "timezone" | "time zone" => matches!(lower.as_str(), "utc" | "etc/utc" | "gmt" | "z" | "+00" | "+00:00" | "0"),
        "search_path" => matches!(lower.as_str(), "public" | "\"$user\", public" | "$user, public"),
        _ => {
            return Err(QueryError::Sql(format!(
                "SET {name} is not supported by the lake query service (tables are named <tenant>.<table>)"
            )));
        }
    };
    if accepted {
        Ok(())
    } else {
        Err(QueryError::Sql(format!("SET {name} = '{value}' is not supported by the lake query service")))
    }
}

/// `SHOW <name>`: the session's value, or the service's fixed one.
fn show_value(name: &str, client: &impl ClientInfo) -> Result<String, QueryError> {
    let name = match name {
        "time zone" => "timezone",
        "transaction isolation level" => "transaction_isolation",
        other => other,
    };
    if let Some(value) = client.metadata().get(name) {
        return Ok(value.clone());
    }
    catalogs::setting(name)
        .map(str::to_owned)
        .ok_or_else(|| QueryError::Sql(format!("unrecognized configuration parameter \"{name}\"")))
}

/// Every setting as the session has it, for `current_setting`.
fn settings(client: &impl ClientInfo) -> catalogs::Settings {
    let mut settings = catalogs::default_settings();
    for (name, value) in &mut settings {
        if let Some(set) = client.metadata().get(name) {
            value.clone_from(set);
        }
    }
    settings
}

/// Run one session statement.
fn run_session<C: ClientInfo>(session: &Session, client: &mut C, format: &Format) -> Result<Response, QueryError> {
    Ok(match session {
        Session::Set { name, value } => {
            check_setting(name, value)?;
            if !matches!(name.as_str(), "transaction" | "names") {
                let key = if name == "time zone" { "timezone" } else { name.as_str() };
                client.metadata_mut().insert(key.to_owned(), value.clone());
            }
            Response::Execution(Tag::new("SET"))
        }
        Session::Show(name) => {
            let value = show_value(name, client)?;
            let fields = Arc::new(show_fields(name, format));
            let mut encoder = DataRowEncoder::new(fields.clone());
            encoder.encode_field(&value).map_err(|e| QueryError::Internal(e.to_string()))?;
            let row = encoder.take_row();
            Response::Query(QueryResponse::new(fields, stream::iter([Ok(row)])))
        }
        Session::Begin => Response::TransactionStart(Tag::new("BEGIN")),
        Session::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
        Session::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
    })
}

fn show_fields(name: &str, format: &Format) -> Vec<FieldInfo> {
    vec![FieldInfo::new(name.replace(' ', "_"), None, None, Type::TEXT, format.format_for(0))]
}

fn wire_error(err: QueryError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), err.sqlstate().into(), err.to_string())))
}

/// Who runs a query, and their session's settings.
struct Caller {
    who: Principal,
    settings: catalogs::Settings,
}

fn caller_of(client: &impl ClientInfo) -> PgWireResult<Caller> {
    Ok(Caller { who: caller(client)?, settings: settings(client) })
}

impl Backend {
    /// Plan a query over the lake or the catalogs.
    async fn prepare(&self, statement: &Statement, reads: Reads, caller: &Caller) -> Result<Prepared, QueryError> {
        self.service.prepare_reading(statement.clone(), reads, &caller.who, &caller.settings).await
    }

    /// Plan a query, run it with its parameters and encode the answer.
    async fn query(
        &self,
        (statement, reads): (&Statement, Reads),
        parameters: Option<&Portal<WireStatement>>,
        format: &Format,
        options: Arc<FormatOptions>,
        caller: &Caller,
    ) -> Result<Response, PgWireError> {
        let deadline = self.service.deadline();
        let prepared = deadline.run(self.prepare(statement, reads, caller)).await.map_err(wire_error)?;
        let values = match parameters {
            Some(portal) if portal.parameter_len() > 0 => {
                let types = prepared.parameter_types().map_err(wire_error)?;
                let types: Vec<Option<&DataType>> = types.iter().map(Option::as_ref).collect();
                Some(deserialize_parameters(portal, &types)?)
            }
            _ => None,
        };
        let fields = Arc::new(arrow_schema_to_pg_fields(&prepared.schema(), format, Some(options))?);
        let batches = deadline.run(prepared.run(values)).await.map_err(wire_error)?;
        // Errors while the rows stream (the timeout among them) keep their
        // SQLSTATE, as errors before them do.
        let row_fields = fields.clone();
        let rows = deadline
            .bound(batches)
            .map(move |batch| -> Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send> {
                match batch {
                    Ok(batch) => encode_rows(row_fields.clone(), batch),
                    Err(e) => Box::new(std::iter::once(Err(wire_error(e.into())))),
                }
            })
            .flat_map(stream::iter);
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }

    /// The parameter types and result columns of a statement.
    async fn describe(
        &self,
        statement: &WireStatement,
        format: &Format,
        options: Arc<FormatOptions>,
        caller: &Caller,
    ) -> Result<(Vec<Type>, Vec<FieldInfo>), PgWireError> {
        match statement {
            WireStatement::Empty => Ok((vec![], vec![])),
            WireStatement::Session(Session::Show(name)) => Ok((vec![], show_fields(name, format))),
            WireStatement::Session(_) => Ok((vec![], vec![])),
            WireStatement::Query(statement, reads) => {
                let deadline = self.service.deadline();
                let prepared = deadline.run(self.prepare(statement, *reads, caller)).await.map_err(wire_error)?;
                let parameters = prepared
                    .parameter_types()
                    .map_err(wire_error)?
                    .iter()
                    .map(|t| t.as_ref().map_or(Ok(Type::TEXT), into_pg_type))
                    .collect::<PgWireResult<Vec<_>>>()?;
                let fields = arrow_schema_to_pg_fields(&prepared.schema(), format, Some(options))?;
                Ok((parameters, fields))
            }
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = parse_statements(query).map_err(wire_error)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            // A failing statement ends the script, as in PostgreSQL; the ones
            // before it keep their answers.
            let response = match statement {
                Ok(WireStatement::Session(session)) => run_session(&session, client, &Format::UnifiedText),
                Ok(WireStatement::Query(statement, reads)) => {
                    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
                    match self.query((&statement, reads), None, &Format::UnifiedText, options, &caller_of(client)?).await {
                        Ok(response) => Ok(response),
                        Err(PgWireError::UserError(info)) => {
                            responses.push(Response::Error(info));
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(WireStatement::Empty) => Ok(Response::EmptyQuery),
                Err(e) => Err(e),
            };
            match response {
                Ok(response) => responses.push(response),
                Err(e) => {
                    let PgWireError::UserError(info) = wire_error(e) else { unreachable!("wire_error makes user errors") };
                    responses.push(Response::Error(info));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// Parses with the lake's dialect: one statement per Parse message.
pub struct LakeParser;

#[async_trait]
impl QueryParser for LakeParser {
    type Statement = WireStatement;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<WireStatement>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = parse_statements(sql).map_err(wire_error)?;
        match statements.len() {
            0 => Ok(WireStatement::Empty),
            1 => statements.pop().expect("one statement").map_err(wire_error),
            n => Err(wire_error(QueryError::Sql(format!(
                "a prepared statement holds one statement, got {n}"
            )))),
        }
    }

    // Describe is answered by `Backend`, which plans against the lake.
    fn get_parameter_types(&self, _statement: &WireStatement) -> PgWireResult<Vec<Type>> {
        Ok(vec![])
    }

    fn get_result_schema(&self, _statement: &WireStatement, _format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(vec![])
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = WireStatement;
    type QueryParser = LakeParser;

    fn query_parser(&self) -> Arc<LakeParser> {
        Arc::new(LakeParser)
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<WireStatement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = WireStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let (inferred, fields) = self.describe(&target.statement, &Format::UnifiedBinary, options, &caller_of(client)?).await?;
        // The client's own types win where it gave them.
        let count = inferred.len().max(target.parameter_types.len());
        let parameters = (0..count)
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .or_else(|| inferred.get(i).cloned())
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        Ok(DescribeStatementResponse::new(parameters, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<WireStatement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = WireStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let (_, fields) = self.describe(&portal.statement.statement, &portal.result_column_format, options, &caller_of(client)?).await?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<WireStatement>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = WireStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &portal.statement.statement {
            WireStatement::Empty => Ok(Response::EmptyQuery),
            WireStatement::Session(session) => {
                run_session(session, client, &portal.result_column_format).map_err(wire_error)
            }
            WireStatement::Query(statement, reads) => {
                // Planned again at each execution, so a prepared statement
                // always reads the lake as it is now.
                let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
                self.query((statement, *reads), Some(portal), &portal.result_column_format, options, &caller_of(client)?).await
            }
        }
    }
}

/// A batch's rows as DataRows: as arrow-pg encodes them, but decimals as
/// `numeric` of any precision (arrow-pg's go through a 96-bit decimal and
/// refuse more than 28 digits; the lake holds up to 38).
fn encode_rows(
    fields: Arc<Vec<FieldInfo>>,
    batch: RecordBatch,
) -> Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send> {
    let mut encoder = DataRowEncoder::new(fields.clone());
    let schema = batch.schema();
    let mut row = 0;
    Box::new(std::iter::from_fn(move || {
        if row == batch.num_rows() {
            return None;
        }
        for (column, array) in batch.columns().iter().enumerate() {
            let field = schema.field(column);
            let encoded = match field.data_type() {
                DataType::Decimal128(_, scale) => {
                    let value = array.as_primitive::<Decimal128Type>();
                    let value = (!value.is_null(row)).then(|| Numeric { unscaled: value.value(row), scale: *scale });
                    RowFields::encode_field(&mut encoder, &value, &fields[column])
                }
                _ => encode_value(&mut encoder, array, row, field, &fields[column]),
            };
            if let Err(e) = encoded {
                row = batch.num_rows();
                return Some(Err(e));
            }
        }
        row += 1;
        Some(Ok(RowFields::take_row(&mut encoder)))
    }))
}

/// A decimal (`unscaled` × 10^-`scale`) as PostgreSQL's `numeric`, in text
/// or binary form, every digit and the scale kept.
#[derive(Debug)]
struct Numeric {
    unscaled: i128,
    scale: i8,
}

impl Numeric {
    /// `12345.6700` for 123456700 at scale 4.
    fn text(&self) -> String {
        let digits = self.unscaled.unsigned_abs().to_string();
        let sign = if self.unscaled < 0 { "-" } else { "" };
        if self.scale <= 0 {
            let zeros = if self.unscaled == 0 { 0 } else { (-self.scale) as usize };
            return format!("{sign}{digits}{}", "0".repeat(zeros));
        }
        let scale = self.scale as usize;
        let digits = format!("{digits:0>width$}", width = scale + 1);
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        format!("{sign}{whole}.{fraction}")
    }
}

impl ToSqlText for Numeric {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
        _options: &FormatOptions,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.text().as_bytes());
        Ok(postgres_types::IsNull::No)
    }
}

impl postgres_types::ToSql for Numeric {
    /// PostgreSQL's binary `numeric`: digit count, weight (of the first
    /// base-10000 digit), sign, display scale, then the base-10000 digits.
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        let text = self.text();
        let text = text.trim_start_matches('-');
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        // Whole digits padded on the left and fraction digits on the right
        // to groups of four.
        let whole = format!("{}{whole}", "0".repeat((4 - whole.len() % 4) % 4));
        let fraction = format!("{fraction}{}", "0".repeat((4 - fraction.len() % 4) % 4));
        let groups = |s: &str| s.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap().parse::<i16>().unwrap()).collect::<Vec<_>>();
        let mut digits = groups(&whole);
        let mut weight = digits.len() as i16 - 1;
        digits.extend(groups(&fraction));
        while digits.first() == Some(&0) {
            digits.remove(0);
            weight -= 1;
        }
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            weight = 0;
        }
        out.put_i16(digits.len() as i16);
        out.put_i16(weight);
        out.put_u16(if self.unscaled < 0 { 0x4000 } else { 0 });
        out.put_u16(self.scale.max(0) as u16);
        for d in digits {
            out.put_i16(d);
        }
        Ok(postgres_types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    postgres_types::to_sql_checked!();
}
