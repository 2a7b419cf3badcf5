//! The PostgreSQL wire protocol per tenant: `psql -h 127.0.0.1 -p 7432 -d
//! acme` opens tenant `acme`. Any client that speaks PostgreSQL's protocol
//! (psql, libpq, node-postgres, postgres.js, tokio-postgres, JDBC) works
//! against a tenant as against a server of its own.
//!
//! A connection is a session of the tenant's one backend: its messages go
//! to the tenant's actor in batches (up to each Sync, Flush or simple
//! Query), where [`TenantDb::wire_batch`](crate::engine::TenantDb) runs
//! them. Between transactions the backend serves whoever comes next (other
//! connections, HTTP requests); inside one, it is the connection's until
//! the transaction ends or it stays idle longer than the idle-in-transaction
//! timeout. So connections never see each other's uncommitted work, and
//! capture, hibernation, limits and metrics are those of any request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth::{Auth, Principal, Scope};
use model::TenantId;
use model::wire::{self as proto};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use crate::actor::Work;
use crate::engine::{Frontend, Hold, MAX_COPY_BYTES, TenantDb, WireIo, WireSession};
use crate::error::{DbError, Error, Result};
use crate::tenants::Tenants;

/// Most a client may take to start and sign in.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
const PROTOCOL_3: i32 = 196_608;

/// A connection's byte stream: TCP, or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// What turns a connection that asked for TLS into a TLS one (the server's
/// certificate, configured where the binary starts this front).
pub trait Tls: Send + Sync {
    fn accept(&self, stream: Box<dyn Stream>) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Box<dyn Stream>>> + Send>>;
}

/// Accept connections on `listener` until `shutdown` resolves; TLS for
/// the clients that ask when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    tenants: Arc<Tenants>,
    auth: Arc<Auth>,
    tls: Option<Arc<dyn Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let front = Arc::new(Front { tenants, auth, tls, cancels: Mutex::new(HashMap::new()), next_id: AtomicU64::new(1) });
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept a tenant Postgres connection");
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let front = front.clone();
        tokio::spawn(async move {
            if let Err(e) = front.connection(socket).await {
                tracing::debug!(%peer, error = %e, "tenant Postgres connection ended");
            }
        });
    }
}

struct Front {
    tenants: Arc<Tenants>,
    auth: Arc<Auth>,
    tls: Option<Arc<dyn Tls>>,
    /// Open connections by their process id, for cancel requests.
    cancels: Mutex<HashMap<i32, (i32, Arc<Conn>)>>,
    next_id: AtomicU64,
}

/// A connection, as its tenant's actor and its socket share it.
struct Conn {
    id: u64,
    tenant: TenantId,
    session: Mutex<WireSession>,
    /// Batches not yet run, and whether a job runs them (it takes every
    /// batch sent while it runs; the flag and the queue change together).
    queue: Mutex<Queue>,
    batches: Mutex<Receiver<Vec<Frontend>>>,
    replies: UnboundedSender<Reply>,
    /// A batch of this connection runs now (a cancel request stops it).
    running: AtomicBool,
    /// The caller may write the tenant (else: read-only transactions).
    may_write: bool,
    idle_in_transaction: Duration,
}

struct Queue {
    sender: Option<Sender<Vec<Frontend>>>,
    active: bool,
}

enum Reply {
    Bytes(Vec<u8>),
    /// Write this, then close the connection.
    Close(Vec<u8>),
}

fn fatal(code: &str, message: impl Into<String>) -> Vec<u8> {
    let mut out = Vec::new();
    proto::error_message(&mut out, "FATAL", &DbError::new(code, message));
    out
}

async fn read_exact_or_eof<R: AsyncRead + Unpin>(socket: &mut R, buf: &mut [u8]) -> std::io::Result<bool> {
    match socket.read_exact(buf).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

impl Front {
    async fn connection(self: Arc<Self>, socket: tokio::net::TcpStream) -> std::io::Result<()> {
        // Startup and sign-in are bounded: a client that says nothing does not hold a task.
        let started = tokio::time::timeout(STARTUP_TIMEOUT, self.startup(Box::new(socket))).await;
        let Ok(Some((socket, params, tenant, may_write))) = started.unwrap_or(Ok(None)) else {
            return Ok(());
        };
        self.session(socket, params, tenant, may_write).await
    }

    /// The startup packet (after any TLS request), the tenant it names and
    /// who is asking. None: the connection ends (the client was told why).
    async fn startup(&self, mut socket: Box<dyn Stream>) -> std::io::Result<Option<(Box<dyn Stream>, Vec<(String, String)>, TenantId, bool)>> {
        let mut secure = false;
        // The startup packet, after any TLS or GSS encryption request.
        let params = loop {
            let mut head = [0u8; 8];
            if !read_exact_or_eof(&mut socket, &mut head).await? {
                return Ok(None);
            }
            let len = i32::from_be_bytes(head[0..4].try_into().expect("4 bytes"));
            let code = i32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
            if !(8..=10_000).contains(&len) {
                socket.write_all(&fatal("08P01", "invalid startup packet length")).await?;
                return Ok(None);
            }
            let mut body = vec![0u8; len as usize - 8];
            socket.read_exact(&mut body).await?;
            match code {
                SSL_REQUEST if !secure && self.tls.is_some() => {
                    socket.write_all(b"S").await?;
                    socket = self.tls.as_ref().expect("TLS is offered").accept(socket).await?;
                    secure = true;
                }
                SSL_REQUEST | GSSENC_REQUEST => socket.write_all(b"N").await?,
                CANCEL_REQUEST if body.len() == 8 => {
                    let pid = i32::from_be_bytes(body[0..4].try_into().expect("4 bytes"));
                    let secret = i32::from_be_bytes(body[4..8].try_into().expect("4 bytes"));
                    self.cancel(pid, secret);
                    return Ok(None);
                }
                PROTOCOL_3 => break startup_params(&body),
                other => {
                    let message = format!("unsupported frontend protocol {}.{}: tidelake speaks 3.0", other >> 16, other & 0xffff);
                    socket.write_all(&fatal("0A000", message)).await?;
                    return Ok(None);
                }
            }
        };
        let user = params.iter().find(|(k, _)| k == "user").map(|(_, v)| v.clone()).unwrap_or_default();
        let database = params.iter().find(|(k, _)| k == "database").map(|(_, v)| v.clone()).unwrap_or_else(|| user.clone());
        if params.iter().any(|(k, _)| k == "replication") {
            socket.write_all(&fatal("0A000", "replication connections are not supported: a tenant's changes stream from its change feed (docs/capture.md)")).await?;
            return Ok(None);
        }
        let tenant = match crate::api::routing::resolve(self.tenants.config(), Some(&database), None, None) {
            Ok(Some(tenant)) => tenant,
            Ok(None) => {
                socket.write_all(&fatal("3D000", "no database named: connect with the tenant's id as the database name")).await?;
                return Ok(None);
            }
            Err(err) => {
                socket.write_all(&fatal("3D000", format!("database \"{database}\" is not a tenant tidelake serves: {err}"))).await?;
                return Ok(None);
            }
        };
        // Who is asking: the password is a token (a JWT or an API key).
        let mut may_write = true;
        if self.auth.is_enabled() {
            let principal = match self.authenticate(&mut socket, &user, secure).await? {
                Some(principal) => principal,
                None => return Ok(None),
            };
            match may_connect(&principal, &tenant) {
                Ok(write) => may_write = write,
                Err(refusal) => {
                    socket.write_all(&refusal).await?;
                    return Ok(None);
                }
            }
        }
        // A caller who may only read creates nothing.
        if !may_write && self.tenants.must_exist(&tenant).is_err() {
            socket.write_all(&fatal("3D000", format!("database \"{tenant}\" does not exist: no tenant of that name yet"))).await?;
            return Ok(None);
        }
        Ok(Some((socket, params, tenant, may_write)))
    }

    /// A signed-in connection: its session opened on the tenant, then its
    /// messages, batch by batch, until it ends.
    async fn session(self: Arc<Self>, mut socket: Box<dyn Stream>, params: Vec<(String, String)>, tenant: TenantId, may_write: bool) -> std::io::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let session = WireSession::new(id, session_settings(&params));
        let application_name = params.iter().find(|(k, _)| k == "application_name").map(|(_, v)| v.clone());
        let (sender, receiver) = channel();
        let (replies, mut replies_rx) = unbounded_channel();
        let conn = Arc::new(Conn {
            id,
            tenant: tenant.clone(),
            session: Mutex::new(session),
            queue: Mutex::new(Queue { sender: Some(sender), active: false }),
            batches: Mutex::new(receiver),
            replies,
            running: AtomicBool::new(false),
            may_write,
            idle_in_transaction: self.tenants.config().idle_in_transaction_timeout,
        });
        // The tenant opens (or is created) now, and the settings asked for are checked.
        let reported = match self.tenants.run(&tenant, OpenWire(conn.clone())).await {
            Ok(Ok(reported)) => reported,
            Ok(Err(err)) => {
                let mut out = Vec::new();
                proto::error_message(&mut out, "FATAL", &err);
                socket.write_all(&out).await?;
                return Ok(());
            }
            Err(err) => {
                socket.write_all(&fatal(error_code(&err), err.to_string())).await?;
                return Ok(());
            }
        };
        let pid = (id as i32 & 0x3fff_ffff) | 0x4000_0000;
        let secret = secret_key();
        self.cancels.lock().unwrap_or_else(|p| p.into_inner()).insert(pid, (secret, conn.clone()));
        let mut hello = Vec::new();
        proto::push_message(&mut hello, b'R', &0i32.to_be_bytes());
        for (name, value) in reported {
            let value = match (name.as_str(), &application_name) {
                ("application_name", Some(asked)) => asked.clone(),
                _ => value,
            };
            let mut body = Vec::new();
            for text in [name.as_str(), value.as_str()] {
                body.extend_from_slice(text.as_bytes());
                body.push(0);
            }
            proto::push_message(&mut hello, b'S', &body);
        }
        let mut key = pid.to_be_bytes().to_vec();
        key.extend_from_slice(&secret.to_be_bytes());
        proto::push_message(&mut hello, b'K', &key);
        proto::push_message(&mut hello, b'Z', b"I");
        socket.write_all(&hello).await?;

        let (reader, mut writer) = tokio::io::split(socket);
        let write = tokio::spawn(async move {
            while let Some(reply) = replies_rx.recv().await {
                let (bytes, close) = match reply {
                    Reply::Bytes(bytes) => (bytes, false),
                    Reply::Close(bytes) => (bytes, true),
                };
                if writer.write_all(&bytes).await.is_err() || close {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        let max_message = self.tenants.config().max_body_bytes.max(1 << 20);
        let read = self.clone().read_batches(reader, &conn, max_message).await;
        self.cancels.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
        // No more batches: a job holding the backend rolls back and ends.
        let idle = {
            let mut queue = conn.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.sender = None;
            !queue.active
        };
        if idle && self.tenants.engine_state(&tenant).0 == crate::protocol::EngineState::Loaded {
            let _ = self.tenants.run(&tenant, EndWire(conn.clone())).await;
        }
        drop(conn);
        let _ = write.await;
        read
    }

    /// Who the client is. With the user name of an API key (`tlk_<id>`)
    /// the key is checked by SCRAM-SHA-256 against its salted password, so
    /// it never crosses the wire; with any other name the password is a
    /// token (a JWT or an API key) sent as is — over TLS only, when TLS is
    /// offered. None: refused (and told so).
    async fn authenticate(&self, socket: &mut Box<dyn Stream>, user: &str, secure: bool) -> std::io::Result<Option<Principal>> {
        let refused = |why: &str| fatal("28P01", format!("password authentication failed for user \"{user}\": {why}"));
        if let Some(key) = self.auth.key_of_user(user) {
            let mut ask = Vec::new();
            let mut body = 10i32.to_be_bytes().to_vec();
            body.extend_from_slice(b"SCRAM-SHA-256\0\0");
            proto::push_message(&mut ask, b'R', &body);
            socket.write_all(&ask).await?;
            let Some(first) = read_password_message(socket).await? else { return Ok(None) };
            // SASLInitialResponse: the mechanism, then the client's first message.
            let mechanism_end = first.iter().position(|&b| b == 0).unwrap_or(first.len());
            let client_first = first.get(mechanism_end + 5..).unwrap_or_default();
            let mut nonce = [0u8; 18];
            let _ = getrandom(&mut nonce);
            let (exchange, server_first) = match auth::scram::Exchange::start(&key, client_first, &nonce) {
                Ok(started) => started,
                Err(why) => {
                    socket.write_all(&refused(&why)).await?;
                    return Ok(None);
                }
            };
            let mut body = 11i32.to_be_bytes().to_vec();
            body.extend_from_slice(server_first.as_bytes());
            let mut cont = Vec::new();
            proto::push_message(&mut cont, b'R', &body);
            socket.write_all(&cont).await?;
            let Some(client_final) = read_password_message(socket).await? else { return Ok(None) };
            return match exchange.finish(&client_final) {
                Ok(server_final) => {
                    let mut body = 12i32.to_be_bytes().to_vec();
                    body.extend_from_slice(server_final.as_bytes());
                    let mut done = Vec::new();
                    proto::push_message(&mut done, b'R', &body);
                    socket.write_all(&done).await?;
                    Ok(Some(key.principal()))
                }
                Err(why) => {
                    socket.write_all(&refused(&why)).await?;
                    Ok(None)
                }
            };
        }
        if self.tls.is_some() && !secure {
            let message = format!(
                "user \"{user}\" signs in with a token as the password, which this server takes over TLS only: \
                 connect with sslmode=require, or sign in with SCRAM as an API key's id (tlk_…)"
            );
            socket.write_all(&fatal("28000", message)).await?;
            return Ok(None);
        }
        let mut ask = Vec::new();
        proto::push_message(&mut ask, b'R', &3i32.to_be_bytes());
        socket.write_all(&ask).await?;
        let Some(body) = read_password_message(socket).await? else { return Ok(None) };
        let password = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).into_owned();
        match self.auth.token(&password).await {
            Ok(principal) => Ok(Some(principal)),
            Err(denied) => {
                socket.write_all(&refused(&denied.to_string())).await?;
                Ok(None)
            }
        }
    }

    /// Read the client's messages and hand them to the tenant in batches.
    async fn read_batches<R: AsyncRead + Unpin>(self: Arc<Self>, reader: R, conn: &Arc<Conn>, max_message: usize) -> std::io::Result<()> {
        // A batch's messages come in one read, not one per header and body.
        let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, reader);
        let reader = &mut reader;
        let mut batch: Vec<Frontend> = Vec::new();
        let mut copy_bytes = 0usize;
        loop {
            let mut head = [0u8; 5];
            if !read_exact_or_eof(reader, &mut head).await? {
                return Ok(());
            }
            let tag = head[0];
            let len = i32::from_be_bytes(head[1..5].try_into().expect("4 bytes"));
            let limit = if tag == b'd' { MAX_COPY_BYTES } else { max_message };
            if len < 4 || len as usize - 4 > limit {
                let message = format!("a {} message of {len} bytes is over the limit of {limit} bytes", tag as char);
                let _ = conn.replies.send(Reply::Close(fatal("08P01", message)));
                return Ok(());
            }
            let mut body = vec![0u8; len as usize - 4];
            reader.read_exact(&mut body).await?;
            if tag == b'X' {
                return Ok(());
            }
            if let Err(why) = crate::engine::check_frontend(tag, &body) {
                let _ = conn.replies.send(Reply::Close(fatal(if tag == b'F' { "0A000" } else { "08P01" }, why)));
                return Ok(());
            }
            match tag {
                b'd' => {
                    // Past the limit the rest is dropped: the COPY fails with it named.
                    if copy_bytes <= MAX_COPY_BYTES {
                        copy_bytes += body.len();
                        batch.push(Frontend { tag, body });
                    }
                    continue;
                }
                _ => batch.push(Frontend { tag, body }),
            }
            if matches!(tag, b'S' | b'H' | b'Q' | b'c' | b'f') {
                copy_bytes = 0;
                self.submit(conn, std::mem::take(&mut batch));
            }
        }
    }

    /// Hand a batch to the connection's running job, or start one.
    fn submit(self: &Arc<Self>, conn: &Arc<Conn>, batch: Vec<Frontend>) {
        let start = {
            let mut queue = conn.queue.lock().unwrap_or_else(|p| p.into_inner());
            let Some(sender) = &queue.sender else { return };
            if sender.send(batch).is_err() {
                return;
            }
            !std::mem::replace(&mut queue.active, true)
        };
        if start {
            let (front, conn) = (self.clone(), conn.clone());
            tokio::spawn(async move {
                let result = front.tenants.run_sql(&conn.tenant, WireJob(conn.clone()), None, conn.may_write).await;
                if let Err(err) = result {
                    // Not run (busy, shutting down, the tenant would not open):
                    // every batch waiting gets the error.
                    let mut queue = conn.queue.lock().unwrap_or_else(|p| p.into_inner());
                    let batches = conn.batches.lock().unwrap_or_else(|p| p.into_inner());
                    while let Ok(_batch) = batches.try_recv() {
                        let mut out = Vec::new();
                        proto::error_message(&mut out, "ERROR", &DbError::new(error_code(&err), err.to_string()));
                        proto::push_message(&mut out, b'Z', b"I");
                        let _ = conn.replies.send(Reply::Bytes(out));
                    }
                    queue.active = false;
                }
            });
        }
    }

    fn cancel(&self, pid: i32, secret: i32) {
        let conn = self.cancels.lock().unwrap_or_else(|p| p.into_inner()).get(&pid).cloned();
        if let Some((expected, conn)) = conn
            && expected == secret
            && conn.running.load(Ordering::SeqCst)
        {
            self.tenants.cancel(&conn.tenant);
        }
    }
}

/// Whether `principal` may open a session on `tenant`, and whether it may
/// write there (a caller who may only read gets read-only transactions).
fn may_connect(principal: &Principal, tenant: &TenantId) -> std::result::Result<bool, Vec<u8>> {
    if principal.may(Scope::Read, tenant.as_str()).is_err() {
        return Err(fatal("42501", format!("permission denied for database \"{tenant}\": the token does not reach this tenant")));
    }
    Ok(principal.may(Scope::Write, tenant.as_str()).is_ok())
}

/// A password message's body (None: the client went away or sent
/// something else, and was told).
async fn read_password_message(socket: &mut Box<dyn Stream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; 5];
    if !read_exact_or_eof(socket, &mut head).await? {
        return Ok(None);
    }
    let len = i32::from_be_bytes(head[1..5].try_into().expect("4 bytes"));
    if head[0] != b'p' || !(4..=65_536).contains(&len) {
        socket.write_all(&fatal("08P01", "expected a password message")).await?;
        return Ok(None);
    }
    let mut body = vec![0u8; len as usize - 4];
    socket.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// The startup packet's parameters.
fn startup_params(body: &[u8]) -> Vec<(String, String)> {
    let mut parts = body.split(|&b| b == 0).map(|s| String::from_utf8_lossy(s).into_owned());
    let mut params = Vec::new();
    while let (Some(key), Some(value)) = (parts.next(), parts.next()) {
        if key.is_empty() {
            break;
        }
        params.push((key, value));
    }
    params
}

/// The settings a startup packet asks for (its parameters other than who
/// and where, and `-c name=value` in `options`), but those the backend has
/// already: UTF-8 client encoding.
fn session_settings(params: &[(String, String)]) -> Vec<(String, String)> {
    let mut settings = Vec::new();
    for (key, value) in params {
        match key.as_str() {
            "user" | "database" | "application_name" | "replication" => {}
            "client_encoding" if matches!(value.trim_matches('\'').to_ascii_lowercase().as_str(), "utf8" | "utf-8" | "unicode") => {}
            "options" => {
                let mut words = value.split_whitespace();
                while let Some(word) = words.next() {
                    let pair = match word {
                        "-c" => words.next(),
                        other => other.strip_prefix("-c").or_else(|| other.strip_prefix("--")),
                    };
                    if let Some((name, value)) = pair.and_then(|p| p.split_once('=')) {
                        settings.push((name.replace('-', "_"), value.to_owned()));
                    }
                }
            }
            _ => settings.push((key.clone(), value.clone())),
        }
    }
    settings
}

fn secret_key() -> i32 {
    let mut bytes = [0u8; 4];
    if getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        bytes = nanos.to_be_bytes();
    }
    i32::from_be_bytes(bytes)
}

fn getrandom(bytes: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(bytes)
}

/// The SQLSTATE a request's error goes to a client with.
fn error_code(err: &Error) -> &'static str {
    match err {
        Error::Busy(_) => "53300",
        Error::Unavailable(_) => "57P03",
        Error::NoSuchTenant(_) => "3D000",
        _ => "XX000",
    }
}

/// Open a connection's session on its tenant: its settings checked and
/// set; the settings a client is told at its start.
struct OpenWire(Arc<Conn>);

impl Work for OpenWire {
    type Reply = std::result::Result<Vec<(String, String)>, DbError>;
    fn wire_conn(&self) -> Option<u64> {
        Some(self.0.id)
    }
    fn run(&self, db: &mut TenantDb) -> Result<Self::Reply> {
        let mut session = self.0.session.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = db.open_wire_session(&mut session)? {
            return Ok(Err(err));
        }
        db.reported_settings().map(Ok)
    }
}

/// A connection ended while the tenant is open: its statements go.
struct EndWire(Arc<Conn>);

impl Work for EndWire {
    type Reply = ();
    fn wire_conn(&self) -> Option<u64> {
        Some(self.0.id)
    }
    fn run(&self, db: &mut TenantDb) -> Result<()> {
        let session = self.0.session.lock().unwrap_or_else(|p| p.into_inner());
        db.end_wire_session(&session)
    }
}

/// Run a connection's batches: every batch it has sent, and while it holds
/// the backend (a transaction is open) the ones it sends next.
struct WireJob(Arc<Conn>);

struct JobIo<'a> {
    conn: &'a Conn,
    batches: &'a Receiver<Vec<Frontend>>,
}

impl WireIo for JobIo<'_> {
    fn send(&mut self, bytes: Vec<u8>) {
        let _ = self.conn.replies.send(Reply::Bytes(bytes));
    }

    fn copy_data(&mut self) -> Option<Vec<Frontend>> {
        self.conn.running.store(false, Ordering::SeqCst);
        let data = self.batches.recv_timeout(self.conn.idle_in_transaction).ok();
        self.conn.running.store(true, Ordering::SeqCst);
        data
    }
}

impl Work for WireJob {
    type Reply = ();
    const CLIENT_SQL: bool = true;

    fn wire_conn(&self) -> Option<u64> {
        Some(self.0.id)
    }

    fn run(&self, db: &mut TenantDb) -> Result<()> {
        let conn = &*self.0;
        let batches = conn.batches.lock().unwrap_or_else(|p| p.into_inner());
        let mut session = conn.session.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            // The next batch: one is waiting, or (holding the backend) comes within the timeout.
            let batch = match batches.try_recv() {
                Ok(batch) => batch,
                Err(_) if session.hold() == Hold::Released => {
                    let mut queue = conn.queue.lock().unwrap_or_else(|p| p.into_inner());
                    match batches.try_recv() {
                        Ok(batch) => batch,
                        Err(_) => {
                            queue.active = false;
                            return Ok(());
                        }
                    }
                }
                Err(_) => match batches.recv_timeout(conn.idle_in_transaction) {
                    Ok(batch) => batch,
                    Err(RecvTimeoutError::Timeout) => {
                        db.end_wire_session(&session)?;
                        let message = format!(
                            "terminating connection due to idle-in-transaction timeout: the transaction was idle longer than {}s \
                             and was rolled back (a transaction holds the tenant's backend)",
                            conn.idle_in_transaction.as_secs_f64()
                        );
                        let _ = conn.replies.send(Reply::Close(fatal("25P03", message)));
                        let mut queue = conn.queue.lock().unwrap_or_else(|p| p.into_inner());
                        queue.sender = None;
                        queue.active = false;
                        return Ok(());
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        db.end_wire_session(&session)?;
                        conn.queue.lock().unwrap_or_else(|p| p.into_inner()).active = false;
                        return Ok(());
                    }
                },
            };
            conn.running.store(true, Ordering::SeqCst);
            let mut io = JobIo { conn, batches: &batches };
            let answer = db.wire_batch(&mut session, batch, &mut io);
            conn.running.store(false, Ordering::SeqCst);
            match answer {
                Ok(bytes) => {
                    let _ = conn.replies.send(Reply::Bytes(bytes));
                }
                Err(err) => {
                    // Ours, not the statement's: the client learns it, the
                    // transaction (if any) is gone.
                    let mut out = Vec::new();
                    let db_err = match &err {
                        Error::Database(db_err) => (**db_err).clone(),
                        other => DbError::new(error_code(other), other.to_string()),
                    };
                    proto::error_message(&mut out, "ERROR", &db_err);
                    if db.is_stopped() {
                        let _ = conn.replies.send(Reply::Bytes(out));
                        let _ = conn.replies.send(Reply::Close(fatal("57P01", "the tenant's engine was stopped: reconnect")));
                        let mut queue = conn.queue.lock().unwrap_or_else(|p| p.into_inner());
                        queue.sender = None;
                        queue.active = false;
                        return Ok(());
                    }
                    let _ = db.end_wire_session(&session);
                    session.forget_transaction();
                    proto::push_message(&mut out, b'Z', b"I");
                    let _ = conn.replies.send(Reply::Bytes(out));
                }
            }
        }
    }
}
