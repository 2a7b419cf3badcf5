//! A PostgreSQL client's own protocol on a tenant's database: the wire
//! front's connections (`crate::pg`) share the tenant's one backend, and
//! this is where their messages meet it.
//!
//! Messages go to the engine as the client sent them, with what tidelake
//! owes the history and the other connections added on the way:
//!
//! - a simple query is split into statements, and each that may change the
//!   schema has capture follow it in its transaction, as over HTTP (the
//!   statements of one query still run in one implicit transaction);
//! - an extended-protocol Execute of such a statement gets the same
//!   follow-up, sent behind it in the same round trip;
//! - prepared statements are the connection's: their names are prefixed
//!   with its id, and a statement another connection's reset dropped (or
//!   that a hibernation took) is parsed again before it is used;
//! - settings are the connection's: when the backend passes to another
//!   connection (or an HTTP request), the session is reset, and the
//!   connection's settings are set again when it comes back;
//! - what cannot be kept apart on one backend (temporary tables, SQL-level
//!   PREPARE, LISTEN) is refused with a clear error;
//! - `COPY … FROM STDIN` (simple protocol) runs once its data is in: the
//!   engine reads a COPY's data from the same round trip.
//!
//! What the engine answers goes back as it is, less the answers to what
//! was added.

use std::collections::{HashMap, HashSet};

use model::sql::{copies_from_client, creates_temporary, first_word, may_change_schema, split, transaction_control};
use model::wire::{self as proto, TxStatus};

use super::database::{SYNC_SCHEMA_SQL, TenantDb, limit_error, read_only_error, read_only_refusal};
use super::watchdog::Stopped;
use crate::error::{DbError, Error, Result};

/// A frontend message: its type byte and its body (after the length).
#[derive(Debug, Clone)]
pub struct Frontend {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Frontend {
    fn encode(&self, out: &mut Vec<u8>) {
        proto::push_message(out, self.tag, &self.body);
    }

    /// The first string of the body (a statement or portal name, or a query).
    fn first_str(&self) -> &str {
        split_cstr(&self.body).0
    }

    /// Parse: (statement name, query).
    fn parse_parts(&self) -> (&str, &str) {
        let (name, rest) = split_cstr(&self.body);
        (name, split_cstr(rest).0)
    }
}

/// Whether a frontend message is one the wire protocol takes, well formed
/// (every string UTF-8 and ended, every count matching): the engine only
/// ever gets messages of this shape.
pub fn check_frontend(tag: u8, body: &[u8]) -> std::result::Result<(), String> {
    let mut b = proto::Reader(body);
    let shaped = match tag {
        b'Q' | b'f' => b.cstr().and_then(|_| b.at_end()),
        b'P' => (|| {
            b.cstr()?;
            b.cstr()?;
            let n = b.count()?;
            b.bytes(n * 4)?;
            b.at_end()
        })(),
        b'B' => (|| {
            b.cstr()?;
            b.cstr()?;
            let formats = b.count()?;
            b.bytes(formats * 2)?;
            for _ in 0..b.count()? {
                match b.i32()? {
                    -1 => {}
                    len => {
                        b.bytes(usize::try_from(len).ok()?)?;
                    }
                }
            }
            let results = b.count()?;
            b.bytes(results * 2)?;
            b.at_end()
        })(),
        b'D' | b'C' => (|| {
            matches!(b.bytes(1)?, b"S" | b"P").then_some(())?;
            b.cstr()?;
            b.at_end()
        })(),
        b'E' => (|| {
            b.cstr()?;
            b.i32()?;
            b.at_end()
        })(),
        b'S' | b'H' | b'c' => b.at_end(),
        b'd' => Some(()),
        b'F' => return Err("the fast-path function call interface is not supported: call the function in a query".into()),
        other => return Err(format!("invalid frontend message type {}", other as char)),
    };
    shaped.ok_or_else(|| format!("a malformed {} message", tag as char))
}

/// The first C string of `body` and the bytes after its end.
fn split_cstr(body: &[u8]) -> (&str, &[u8]) {
    match body.iter().position(|&b| b == 0) {
        Some(nul) => (std::str::from_utf8(&body[..nul]).unwrap_or(""), &body[nul + 1..]),
        None => ("", &[]),
    }
}

/// Where a connection's transaction stands after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Between transactions: the backend may serve others.
    Released,
    /// Inside a transaction (or an extended-protocol batch that ended with
    /// Flush, not Sync): the backend is this connection's until it ends.
    Held,
}

/// One connection's session, kept between its batches.
#[derive(Debug, Default)]
pub struct WireSession {
    pub id: u64,
    /// Its prepared statements by the client's name: the Parse as sent to
    /// the engine (name prefixed), to parse again when the engine lost it.
    statements: HashMap<String, Frontend>,
    /// Settings the connection made (`SET`, startup parameters), as
    /// `pg_settings` gives them: set again when it comes back to the backend.
    settings: Vec<(String, String)>,
    /// A batch ended with Flush: its implicit transaction is still open.
    pending: bool,
    /// An extended-protocol COPY was answered to its end: the Sync the
    /// client sends after its data was answered with it.
    copied: bool,
    status: Option<TxStatus>,
}

impl WireSession {
    pub fn new(id: u64, settings: Vec<(String, String)>) -> Self {
        Self { id, settings, ..Self::default() }
    }

    /// Whether the connection holds the backend now.
    pub fn hold(&self) -> Hold {
        if self.pending || self.status.is_some_and(|s| s != TxStatus::Idle) { Hold::Held } else { Hold::Released }
    }

    /// The engine's name for a client's statement name.
    fn engine_name(&self, name: &str) -> String {
        if name.is_empty() { String::new() } else { format!("tl{}_{name}", self.id) }
    }

    /// The backend rolled back whatever the connection had open.
    pub fn forget_transaction(&mut self) {
        self.pending = false;
        self.status = Some(TxStatus::Idle);
    }
}

/// What the backend holds for the wire connections.
#[derive(Debug, Default)]
pub(super) struct WireBackend {
    /// Whose session state the backend has now (None: a request's, or none).
    owner: Option<u64>,
    /// The owner changed session state: reset before anyone else runs.
    dirty: bool,
    /// Prepared statements (engine names) the engine has.
    prepared: HashSet<String>,
    /// Whose unnamed statement the engine has.
    unnamed_of: Option<u64>,
}

/// The client's side of a batch, for what needs more from it mid-batch:
/// the answer so far, and a COPY's data.
pub trait WireIo {
    /// Send what is answered so far.
    fn send(&mut self, bytes: Vec<u8>);
    /// The client's messages up to and including CopyDone or CopyFail;
    /// None if it went away.
    fn copy_data(&mut self) -> Option<Vec<Frontend>>;
}

/// Most a `COPY … FROM STDIN` may send: its data goes to the engine in one
/// round trip.
pub const MAX_COPY_BYTES: usize = 64 * 1024 * 1024;

const SYNC_NAME: &str = "tidelake.sync";

/// A statement standing in for one refused: its error is raised by the
/// engine where the statement would have run, so the protocol (and the
/// transaction) go on as after any error.
fn refusal_sql(err: &DbError) -> String {
    let hint = err.hint.as_deref().map(|hint| format!(", HINT = {}", quote_literal(hint))).unwrap_or_default();
    format!(
        "DO $tidelake$BEGIN RAISE EXCEPTION USING ERRCODE = '{}', MESSAGE = {}{hint}; END$tidelake$",
        err.code,
        quote_literal(&err.message)
    )
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// What the wire protocol refuses, and why.
pub fn wire_refusal(sql: &str) -> Option<DbError> {
    let word = first_word(sql);
    let shared = "connections to a tenant share its one backend";
    let message = if creates_temporary(sql) {
        format!("temporary tables are not supported over tidelake's wire protocol: {shared}, so one would outlive its connection or be seen by another; use a regular table")
    } else if matches!(word.as_str(), "PREPARE" | "EXECUTE") {
        format!("SQL-level {word} is not supported over tidelake's wire protocol ({shared}): use the protocol's prepared statements, which every driver uses and which are kept per connection")
    } else if word == "LISTEN" {
        // UNLISTEN runs (there is nothing to stop listening to): connection
        // pools send `UNLISTEN *` when a connection goes back to the pool.
        "LISTEN is not supported over tidelake's wire protocol: subscribe to the tenant's changes over its WebSocket API".to_owned()
    } else {
        return model::extensions::refusal(sql);
    };
    Some(DbError::new("0A000", message))
}

impl TenantDb {
    /// The backend is about to run work for `owner` (a wire connection's
    /// id, or None for a request): the session state another left behind
    /// is reset first.
    pub fn claim_session(&mut self, owner: Option<u64>) -> Result<()> {
        if self.wire.owner == owner {
            return Ok(());
        }
        if self.wire.dirty {
            self.reset_wire_session()?;
        }
        self.wire.owner = owner;
        Ok(())
    }

    /// Reset the backend's session (prepared statements and all): the
    /// wire connections' statements are parsed again when next used.
    fn reset_wire_session(&mut self) -> Result<()> {
        if self.in_transaction {
            self.rollback()?;
        }
        self.trusted(model::sql::RESET_SESSION_SQL)?;
        self.wire = WireBackend::default();
        Ok(())
    }

    /// After a request: whether the session must be reset before the next
    /// (a wire connection's session is kept until another needs the backend).
    pub(super) fn session_is_wires(&self) -> bool {
        self.wire.owner.is_some()
    }

    /// A wire connection's session state is in the backend.
    pub(super) fn wire_session_kept(&self) -> bool {
        self.wire.owner.is_some() && self.wire.dirty
    }

    /// The engine's unnamed statement was replaced by one of ours.
    pub(super) fn forget_unnamed(&mut self) {
        self.wire.unnamed_of = None;
    }

    /// A wire connection's settings, validated and set: at its start, as
    /// its startup packet asked. Returns the settings it now has.
    pub fn open_wire_session(&mut self, session: &mut WireSession) -> Result<std::result::Result<(), DbError>> {
        self.claim_session(Some(session.id))?;
        if let Err(err) = self.apply_settings(&session.settings.clone())? {
            return Ok(Err(err));
        }
        self.snapshot_settings(session)?;
        Ok(Ok(()))
    }

    /// The values of the settings a client is told at its start.
    pub fn reported_settings(&mut self) -> Result<Vec<(String, String)>> {
        self.settings_where(
            "name IN ('server_version', 'server_encoding', 'client_encoding', 'DateStyle', 'IntervalStyle', 'TimeZone', \
             'integer_datetimes', 'standard_conforming_strings', 'application_name', 'default_transaction_read_only', \
             'in_hot_standby', 'is_superuser', 'session_authorization', 'search_path')",
        )
    }

    fn settings_where(&mut self, condition: &str) -> Result<Vec<(String, String)>> {
        let sql = format!("SELECT name, setting FROM pg_catalog.pg_settings WHERE {condition}");
        let outcome = self.own_round_trip(&proto::simple_query(&sql), crate::protocol::RowMode::Array)?;
        let outcome = super::wire::OutcomeExt::or_ours(outcome, "read the session's settings")?;
        let rows = outcome.results.into_iter().last().map(|r| r.rows).unwrap_or_default();
        Ok(rows
            .into_iter()
            .filter_map(|row| Some((row[0].as_str()?.to_owned(), row[1].as_str()?.to_owned())))
            .collect())
    }

    fn apply_settings(&mut self, settings: &[(String, String)]) -> Result<std::result::Result<(), DbError>> {
        if settings.is_empty() {
            return Ok(Ok(()));
        }
        let calls: Vec<String> = settings
            .iter()
            .map(|(name, value)| format!("pg_catalog.set_config({}, {}, false)", quote_literal(name), quote_literal(value)))
            .collect();
        let outcome = self.own_round_trip(&proto::simple_query(&format!("SELECT {}", calls.join(", "))), crate::protocol::RowMode::Array)?;
        self.wire.dirty = true;
        Ok(match outcome.error {
            Some(err) => Err(err),
            None => Ok(()),
        })
    }

    fn snapshot_settings(&mut self, session: &mut WireSession) -> Result<()> {
        session.settings = self.settings_where("source = 'session'")?;
        Ok(())
    }

    /// What this backend refuses of a connection's statement now: what
    /// the wire protocol cannot keep apart, and (read-only) transaction
    /// control, which could end the read-only transaction it runs in.
    fn refusal(&self, sql: &str) -> Option<DbError> {
        match self.limits.read_only {
            Some(why) if transaction_control(sql).is_some() => Some(read_only_refusal(why)),
            _ => wire_refusal(sql),
        }
    }

    /// Run one batch of a connection's messages (ending with Sync, Flush or
    /// a simple Query) and return the answer. A caller who may only read,
    /// or a tenant over its disk quota, has the batch run in one read-only
    /// transaction of ours, which the client cannot end (its transaction
    /// control is refused) nor make read-write (a snapshot is taken first).
    pub fn wire_batch(&mut self, session: &mut WireSession, batch: Vec<Frontend>, io: &mut dyn WireIo) -> Result<Vec<u8>> {
        self.claim_session(Some(session.id))?;
        if !session.settings.is_empty() && !self.wire.dirty {
            // Back on a backend another connection reset: its settings again.
            let _ = self.apply_settings(&session.settings.clone())?;
        }
        // A statement_timeout the connection set is honoured below the tenant's.
        if let Some(ms) = session.settings.iter().find(|(name, _)| name == "statement_timeout").and_then(|(_, v)| v.parse::<u64>().ok())
            && ms > 0
        {
            self.limits.statement_timeout = self.limits.statement_timeout.min(std::time::Duration::from_millis(ms));
        }
        let Some(why) = self.limits.read_only else {
            let (answer, touched) = self.wire_messages(session, batch, io)?;
            self.after_batch(session, touched)?;
            return Ok(answer);
        };
        if self.in_transaction {
            // The tenant went over its disk quota inside this transaction:
            // it is rolled back, and the batch not run.
            self.rollback()?;
            session.forget_transaction();
            let mut out = Vec::new();
            proto::error_message(&mut out, "ERROR", &read_only_refusal(why));
            for _ in batch.iter().filter(|m| matches!(m.tag, b'Q' | b'S')) {
                proto::push_message(&mut out, b'Z', b"I");
            }
            return Ok(out);
        }
        self.trusted("BEGIN READ ONLY; SELECT")?;
        self.in_transaction = true;
        let answer = self.wire_messages(session, batch, io);
        let failed = !matches!(session.status, Some(TxStatus::InTransaction) | None);
        if failed || answer.is_err() { self.rollback()? } else { self.trusted("COMMIT")? }
        self.in_transaction = false;
        session.forget_transaction();
        let (answer, touched) = answer?;
        self.after_batch(session, touched)?;
        // The client never had a transaction open; its writes were refused for why.
        let mut out = Vec::with_capacity(answer.len());
        for (tag, body, whole) in proto::messages(&answer) {
            match tag {
                b'Z' => proto::push_message(&mut out, b'Z', b"I"),
                b'E' if proto::error_of(body).code == "25006" => {
                    proto::error_message(&mut out, "ERROR", &read_only_error(proto::error_of(body), why))
                }
                _ => out.extend_from_slice(whole),
            }
        }
        Ok(out)
    }

    /// A batch's messages: the answer, and whether they may have changed
    /// session state.
    fn wire_messages(&mut self, session: &mut WireSession, mut batch: Vec<Frontend>, io: &mut dyn WireIo) -> Result<(Vec<u8>, bool)> {
        if std::mem::take(&mut session.copied) && batch.first().is_some_and(|m| m.tag == b'S') {
            batch.remove(0);
        }
        let mut out = Vec::new();
        let mut touched = false;
        let mut extended = Vec::new();
        for message in batch {
            if message.tag == b'Q' {
                if !extended.is_empty() {
                    touched |= self.wire_extended(session, std::mem::take(&mut extended), &mut out, io)?;
                }
                touched |= self.wire_simple(session, message.first_str(), &mut out, io)?;
            } else {
                let ends = matches!(message.tag, b'S' | b'H');
                extended.push(message);
                if ends {
                    touched |= self.wire_extended(session, std::mem::take(&mut extended), &mut out, io)?;
                }
            }
        }
        if !extended.is_empty() {
            touched |= self.wire_extended(session, extended, &mut out, io)?;
        }
        Ok((out, touched))
    }

    /// After a batch that may have changed session state: the session is
    /// the connection's until reset, and its settings are noted.
    fn after_batch(&mut self, session: &mut WireSession, touched: bool) -> Result<()> {
        if touched || self.code_may_touch_session {
            self.wire.dirty = true;
        }
        if touched && session.hold() == Hold::Released {
            self.snapshot_settings(session)?;
        }
        Ok(())
    }

    /// The connection ended: its statements leave the engine, an open
    /// transaction is rolled back.
    pub fn end_wire_session(&mut self, session: &WireSession) -> Result<()> {
        if self.wire.owner == Some(session.id) && (self.in_transaction || session.pending) {
            self.rollback()?;
        }
        let names: Vec<String> = session
            .statements
            .keys()
            .map(|name| session.engine_name(name))
            .filter(|name| self.wire.prepared.contains(name))
            .collect();
        if !names.is_empty() {
            let mut bytes = Vec::new();
            for name in &names {
                close_statement(&mut bytes, name);
                self.wire.prepared.remove(name);
            }
            proto::sync(&mut bytes);
            self.own_round_trip(&bytes, crate::protocol::RowMode::Array)?;
        }
        if self.wire.unnamed_of == Some(session.id) {
            self.wire.unnamed_of = None;
        }
        Ok(())
    }

    /// A simple query: statement by statement, as PostgreSQL would run it.
    /// Returns whether it may have changed session state.
    fn wire_simple(&mut self, session: &mut WireSession, sql: &str, out: &mut Vec<u8>, io: &mut dyn WireIo) -> Result<bool> {
        let pieces = split(sql);
        if pieces.is_empty() || model::sql::only_comments(sql) {
            let (raw, _) = self.wire_trip(&proto::simple_query(sql))?;
            self.settle(session, &raw);
            out.extend_from_slice(&raw);
            return Ok(false);
        }
        let status_before = if self.in_transaction { TxStatus::InTransaction } else { TxStatus::Idle };
        // Several statements with no transaction control of their own run
        // in one implicit transaction: ours, so capture can follow each.
        let implicit = pieces.len() > 1 && status_before == TxStatus::Idle && !pieces.iter().any(|p| transaction_control(p).is_some());
        if implicit {
            self.base_before(pieces.iter().copied());
            self.trusted("BEGIN")?;
            self.in_transaction = true;
        }
        let mut touched = false;
        let mut failed = false;
        let mut last_ready = Vec::new();
        for piece in &pieces {
            let (answer, piece_touched) = self.wire_statement(session, piece, io, out)?;
            touched |= piece_touched;
            let mut error = false;
            for (tag, body, whole) in proto::messages(&answer) {
                match tag {
                    b'Z' => {
                        last_ready = whole.to_vec();
                        self.in_transaction = proto::ready_status(body) != TxStatus::Idle;
                    }
                    b'E' => {
                        error = true;
                        out.extend_from_slice(whole);
                    }
                    _ => out.extend_from_slice(whole),
                }
            }
            if error {
                failed = true;
                break;
            }
        }
        if implicit {
            if failed {
                self.rollback()?;
            } else {
                let (raw, _) = self.wire_trip(&proto::simple_query("COMMIT"))?;
                let outcome = proto::collect(&raw, crate::protocol::RowMode::Array);
                if let Some(err) = outcome.error {
                    proto::error_message(out, "ERROR", &err);
                }
                self.committed();
            }
            self.in_transaction = false;
            last_ready.clear();
            proto::push_message(&mut last_ready, b'Z', b"I");
        }
        out.extend_from_slice(&last_ready);
        session.status = Some(if self.in_transaction {
            proto::ready_status(last_ready.get(5..).unwrap_or(b"I"))
        } else {
            TxStatus::Idle
        });
        Ok(touched)
    }

    /// One statement of a simple query, in a round trip of its own: its
    /// answer ends with ReadyForQuery.
    /// (`answered`: what the batch answered before it, sent ahead of a
    /// COPY's request for data.)
    fn wire_statement(&mut self, session: &mut WireSession, piece: &str, io: &mut dyn WireIo, answered: &mut Vec<u8>) -> Result<(Vec<u8>, bool)> {
        if first_word(piece) == "DEALLOCATE" {
            return self.deallocate(session, piece).map(|answer| (answer, false));
        }
        if let Some(err) = self.refusal(piece) {
            let (raw, _) = self.wire_trip(&proto::simple_query(&refusal_sql(&err)))?;
            return Ok((client_errors(&raw), false));
        }
        if copies_from_client(piece) {
            return self.wire_copy_in(session, piece, io, answered).map(|raw| (raw, false));
        }
        self.base_before(std::iter::once(piece));
        let follow = self.capture && may_change_schema(piece);
        let sql = if follow { format!("{piece}\n;{SYNC_SCHEMA_SQL} AS \"{SYNC_NAME}\"") } else { piece.to_owned() };
        let before = self.catalog_marker();
        let recorded_before = std::mem::take(&mut self.schema_recorded);
        let (raw, _) = self.wire_trip(&proto::simple_query(&sql))?;
        let mut answer = Vec::with_capacity(raw.len());
        let mut command = String::new();
        let mut ended = false;
        let mut ok = true;
        let mut status = TxStatus::Idle;
        for (tag, body, whole) in proto::messages(&raw) {
            match tag {
                b'C' | b'I' if !ended => {
                    ended = true;
                    command = first_word(std::str::from_utf8(body).unwrap_or(""));
                    answer.extend_from_slice(whole);
                }
                b'E' => {
                    ok = false;
                    let follow_failed = ended && follow;
                    answer.extend(client_error(whole, body, |mut err| {
                        if follow_failed {
                            err.message = format!(
                                "change capture could not follow this schema change, so the statement was rolled back: {}",
                                err.message
                            );
                        }
                        err
                    }));
                }
                b'Z' => {
                    status = proto::ready_status(body);
                    answer.extend_from_slice(whole);
                }
                // The follow-up's answer: how many schema versions it recorded.
                b'T' if ended => {}
                b'D' if ended => {
                    let count = data_row_first(body).and_then(|v| v.parse::<i64>().ok());
                    self.schema_recorded |= count.is_some_and(|n| n > 0);
                }
                _ if ended && follow && tag != b'N' && tag != b'S' => {}
                _ => answer.extend_from_slice(whole),
            }
        }
        self.in_transaction = status != TxStatus::Idle;
        let changed = self.catalog_changed(before, status);
        let touched = model::sql::touches_session(&command, piece) || command == "DISCARD";
        if command == "DISCARD" {
            // DISCARD ALL (or PLANS) dropped every prepared statement.
            self.wire.prepared.clear();
            self.wire.unnamed_of = None;
            if piece.to_ascii_uppercase().contains("ALL") {
                session.statements.clear();
            }
        }
        self.after_statement(piece, follow, changed, ok, status, recorded_before)?;
        Ok((answer, touched))
    }

    /// `DEALLOCATE [PREPARE] name | ALL` (ORMs send it to drop a cached
    /// statement): the connection's own protocol statements go — by the
    /// client's names — and no one else's.
    fn deallocate(&mut self, session: &mut WireSession, piece: &str) -> Result<Vec<u8>> {
        let words = model::sql::after_comments(piece).trim().trim_end_matches(';').trim();
        let mut rest = words["DEALLOCATE".len()..].trim_start();
        if rest.len() >= 7 && rest[..7].eq_ignore_ascii_case("PREPARE") && rest[7..].starts_with(char::is_whitespace) {
            rest = rest[7..].trim_start();
        }
        let all = rest.eq_ignore_ascii_case("ALL");
        let names: Vec<String> = if all {
            session.statements.keys().filter(|name| !name.is_empty()).cloned().collect()
        } else {
            let name = match rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => rest.to_lowercase(),
            };
            if name.is_empty() || !session.statements.contains_key(&name) {
                let err = DbError::new("26000", format!("prepared statement \"{name}\" does not exist"));
                let (raw, _) = self.wire_trip(&proto::simple_query(&refusal_sql(&err)))?;
                return Ok(client_errors(&raw));
            }
            vec![name]
        };
        let mut bytes = Vec::new();
        for name in &names {
            let engine_name = session.engine_name(name);
            close_statement(&mut bytes, &engine_name);
            self.wire.prepared.remove(&engine_name);
            session.statements.remove(name);
        }
        proto::sync(&mut bytes);
        let (raw, _) = self.wire_trip(&bytes)?;
        let mut answer = Vec::new();
        proto::push_message(&mut answer, b'C', if all { b"DEALLOCATE ALL\0" } else { b"DEALLOCATE\0" });
        answer.extend(proto::messages(&raw).filter(|m| m.0 == b'Z').flat_map(|m| m.2.to_vec()));
        Ok(answer)
    }

    /// After any client statement (`ok`: it gave no error; `follow`: capture
    /// followed it in its transaction; `changed`: the catalogs moved): capture
    /// follows a schema change it did not see coming, the session's code is
    /// looked at again, a base backup is marked due after the commit.
    pub(super) fn after_statement(&mut self, sql: &str, follow: bool, changed: bool, ok: bool, status: TxStatus, recorded_before: bool) -> Result<()> {
        let ok = ok && status != TxStatus::Failed;
        if ok && (follow || changed) {
            // Functions may have come or gone; a temporary table may have.
            self.session_touched = true;
            if status == TxStatus::Idle {
                self.check_session_code()?;
            } else {
                self.code_may_touch_session = true;
            }
            if self.capture && !follow {
                self.sync_schema()?;
            }
        }
        // A schema change, for the base backup after the commit: DDL that
        // changed the catalogs (not a temporary table's), or a table's schema
        // that changed where no statement shows it. (A TRUNCATE or ANALYZE
        // also writes the catalogs, and is no schema change.)
        if ok && ((follow && changed && !creates_temporary(sql)) || self.schema_recorded) {
            self.catalog_in_tx = true;
        }
        self.schema_recorded |= recorded_before;
        if status == TxStatus::Idle {
            if ok {
                self.committed();
            } else {
                self.catalog_in_tx = false;
            }
        }
        Ok(())
    }

    /// `COPY … FROM STDIN`: the engine is asked how it takes the data (the
    /// COPY started and failed at once, inside a savepoint when in a
    /// transaction), the client sends it, and the COPY runs with its data
    /// in one round trip.
    fn wire_copy_in(&mut self, session: &mut WireSession, piece: &str, io: &mut dyn WireIo, answered: &mut Vec<u8>) -> Result<Vec<u8>> {
        let in_transaction = self.in_transaction;
        let mut probe = Vec::new();
        if in_transaction {
            probe.extend(proto::simple_query("SAVEPOINT tidelake_copy"));
        }
        probe.extend(proto::simple_query(piece));
        proto::push_message(&mut probe, b'f', b"tidelake: asking how COPY takes its data\0");
        if in_transaction {
            probe.extend(proto::simple_query("ROLLBACK TO SAVEPOINT tidelake_copy; RELEASE SAVEPOINT tidelake_copy"));
        }
        let (raw, _) = self.wire_trip(&probe)?;
        let Some(copy_in) = proto::messages(&raw).find(|(tag, _, _)| *tag == b'G').map(|(_, _, whole)| whole.to_vec()) else {
            // It failed before taking data: run it so, for its real error.
            let mut bytes = proto::simple_query(piece);
            proto::push_message(&mut bytes, b'f', b"no data\0");
            return self.wire_trip(&bytes).map(|(raw, _)| raw);
        };
        let mut ahead = std::mem::take(answered);
        ahead.extend_from_slice(&copy_in);
        io.send(ahead);
        let Some(data) = io.copy_data() else {
            return Err(Error::Engine("the client went away during COPY".into()));
        };
        let mut bytes = proto::simple_query(piece);
        let mut size = 0usize;
        for message in &data {
            size += message.body.len();
            if size > MAX_COPY_BYTES {
                let mut answer = Vec::new();
                self.refuse_copy(session, &copy_too_large(), &mut answer)?;
                return Ok(answer);
            }
            message.encode(&mut bytes);
        }
        self.base_before(std::iter::once(piece));
        let (raw, _) = self.wire_trip(&bytes)?;
        // The engine's own CopyInResponse was answered already.
        let mut answer = Vec::with_capacity(raw.len());
        let mut status = TxStatus::Idle;
        let mut ok = true;
        for (tag, body, whole) in proto::messages(&raw) {
            match tag {
                b'G' => {}
                b'Z' => {
                    status = proto::ready_status(body);
                    answer.extend_from_slice(whole);
                }
                b'E' => {
                    ok = false;
                    answer.extend_from_slice(whole);
                }
                _ => answer.extend_from_slice(whole),
            }
        }
        self.in_transaction = status != TxStatus::Idle;
        if status == TxStatus::Idle && ok {
            self.committed();
        }
        Ok(answer)
    }

    /// Extended-protocol messages up to Sync or Flush. Returns whether they
    /// may have changed session state.
    fn wire_extended(&mut self, session: &mut WireSession, messages: Vec<Frontend>, out: &mut Vec<u8>, io: &mut dyn WireIo) -> Result<bool> {
        // What is sent, and for each message whether its answer is the client's.
        let mut sent: Vec<(u8, bool)> = Vec::with_capacity(messages.len() + 4);
        let mut bytes = Vec::new();
        let mut portals: HashMap<String, String> = HashMap::new();
        let mut follows = false;
        let mut touched = false;
        let mut schema_sql = Vec::new();
        let ends_with_flush = messages.last().is_some_and(|m| m.tag == b'H');
        let tags: Vec<u8> = messages.iter().map(|m| m.tag).collect();
        // Where the Execute of a `COPY … FROM STDIN` ends: bytes, messages.
        let mut copy_in: Option<(usize, usize)> = None;
        for (at, message) in messages.into_iter().enumerate() {
            match message.tag {
                b'P' => {
                    let (name, sql) = message.parse_parts();
                    let (name, sql) = (name.to_owned(), sql.to_owned());
                    let refusal = self.refusal(&sql).or_else(|| {
                        (first_word(&sql) == "DEALLOCATE").then(|| {
                            DbError::new("0A000", "DEALLOCATE over the extended protocol is not supported: send it as a simple query, or close the statement with the protocol's Close")
                        })
                    });
                    let engine_name = session.engine_name(&name);
                    let mut body = Vec::with_capacity(message.body.len() + 8);
                    body.extend_from_slice(engine_name.as_bytes());
                    body.push(0);
                    match &refusal {
                        Some(err) => {
                            body.extend_from_slice(refusal_sql(err).as_bytes());
                            body.extend_from_slice(&[0, 0, 0]);
                        }
                        None => body.extend_from_slice(split_cstr(&message.body).1),
                    }
                    let parse = Frontend { tag: b'P', body };
                    parse.encode(&mut bytes);
                    sent.push((b'P', true));
                    if name.is_empty() {
                        self.wire.unnamed_of = Some(session.id);
                    } else {
                        self.wire.prepared.insert(engine_name);
                    }
                    let sql = if refusal.is_some() { String::new() } else { sql };
                    touched |= model::sql::touches_session("", &sql);
                    session.statements.insert(name, parse);
                }
                b'B' => {
                    let (portal, rest) = split_cstr(&message.body);
                    let (statement, after) = split_cstr(rest);
                    let (portal, statement) = (portal.to_owned(), statement.to_owned());
                    self.ensure_prepared(session, &statement, &mut bytes, &mut sent);
                    let mut body = Vec::with_capacity(message.body.len() + 8);
                    body.extend_from_slice(portal.as_bytes());
                    body.push(0);
                    body.extend_from_slice(session.engine_name(&statement).as_bytes());
                    body.push(0);
                    body.extend_from_slice(after);
                    proto::push_message(&mut bytes, b'B', &body);
                    sent.push((b'B', true));
                    let sql = session.statements.get(&statement).map(|p| p.parse_parts().1.to_owned()).unwrap_or_default();
                    portals.insert(portal, sql);
                }
                b'D' | b'C' if message.body.first() == Some(&b'S') => {
                    let name = split_cstr(message.body.get(1..).unwrap_or_default()).0.to_owned();
                    if message.tag == b'D' {
                        self.ensure_prepared(session, &name, &mut bytes, &mut sent);
                    } else {
                        session.statements.remove(&name);
                        self.wire.prepared.remove(&session.engine_name(&name));
                    }
                    let mut body = vec![b'S'];
                    body.extend_from_slice(session.engine_name(&name).as_bytes());
                    body.push(0);
                    proto::push_message(&mut bytes, message.tag, &body);
                    sent.push((message.tag, true));
                }
                b'E' => {
                    let sql = portals.get(message.first_str()).cloned().unwrap_or_default();
                    if copies_from_client(&sql) {
                        // Its data follows the batch's Sync; nothing else may
                        // (the engine must have the data in the same round trip).
                        if copy_in.is_some() || tags[at + 1..] != [b'S'] {
                            let err = DbError::new(
                                "0A000",
                                "a COPY … FROM STDIN over the extended protocol must be the batch's last Execute, followed by Sync alone",
                            );
                            self.refuse_copy(session, &err, out)?;
                            return Ok(touched);
                        }
                        message.encode(&mut bytes);
                        sent.push((b'E', true));
                        copy_in = Some((bytes.len(), sent.len()));
                        continue;
                    }
                    message.encode(&mut bytes);
                    sent.push((b'E', true));
                    if self.capture && may_change_schema(&sql) {
                        // Capture follows in the same transaction.
                        follows = true;
                        schema_sql.push(sql);
                        for (tag, body) in sync_follow_up() {
                            proto::push_message(&mut bytes, tag, &body);
                            sent.push((tag, false));
                        }
                    }
                }
                tag => {
                    message.encode(&mut bytes);
                    sent.push((tag, true));
                }
            }
        }
        if let Some(sql) = schema_sql.first() {
            self.base_before(std::iter::once(sql.as_str()));
        } else if self.wire.owner.is_some() {
            self.base_before(std::iter::once("SELECT"));
        }
        if let Some(head) = copy_in {
            self.wire_copy_in_extended(session, &bytes, &sent, head, out, io)?;
            return Ok(touched);
        }
        let before = self.catalog_marker();
        let recorded_before = std::mem::take(&mut self.schema_recorded);
        let (raw, _) = self.wire_trip(&bytes)?;
        let (status, ok) = self.align(&raw, &sent, out);
        if let Some(status) = status {
            self.in_transaction = status != TxStatus::Idle;
            session.status = Some(status);
            session.pending = false;
        } else if ends_with_flush {
            session.pending = true;
        }
        let status = status.unwrap_or(if self.in_transaction { TxStatus::InTransaction } else { TxStatus::Idle });
        let changed = self.catalog_changed(before, if session.pending { TxStatus::InTransaction } else { status });
        let sql = schema_sql.first().cloned().unwrap_or_default();
        if !session.pending {
            self.after_statement(&sql, follows, changed, ok, status, recorded_before)?;
        } else {
            self.schema_recorded |= recorded_before;
        }
        Ok(touched)
    }

    /// A COPY refused once the client began it: its error and
    /// ReadyForQuery; inside a transaction the refusal fails it, as any
    /// error there would.
    fn refuse_copy(&mut self, session: &mut WireSession, err: &DbError, out: &mut Vec<u8>) -> Result<()> {
        let in_transaction = self.in_transaction;
        proto::error_message(out, "ERROR", err);
        if in_transaction {
            self.wire_trip(&proto::simple_query(&refusal_sql(err)))?;
        }
        proto::push_message(out, b'Z', if in_transaction { b"E" } else { b"I" });
        session.status = Some(if in_transaction { TxStatus::Failed } else { TxStatus::Idle });
        Ok(())
    }

    /// An extended-protocol `COPY … FROM STDIN` (`bytes`: the batch, its
    /// Execute ending at `head`, then the client's Sync, which the engine
    /// ignores during a COPY). As for a simple query's COPY: the engine is
    /// asked how it takes the data (the COPY started and failed at once,
    /// inside a savepoint when in a transaction), the client sends it, and
    /// the batch runs again with its data in one round trip.
    fn wire_copy_in_extended(
        &mut self,
        session: &mut WireSession,
        bytes: &[u8],
        sent: &[(u8, bool)],
        head: (usize, usize),
        out: &mut Vec<u8>,
        io: &mut dyn WireIo,
    ) -> Result<()> {
        let (head_bytes, tail) = bytes.split_at(head.0);
        let in_transaction = self.in_transaction;
        let mut probe = Vec::new();
        if in_transaction {
            probe.extend(proto::simple_query("SAVEPOINT tidelake_copy"));
        }
        probe.extend_from_slice(head_bytes);
        proto::push_message(&mut probe, b'f', b"tidelake: asking how COPY takes its data\0");
        proto::sync(&mut probe);
        if in_transaction {
            probe.extend(proto::simple_query("ROLLBACK TO SAVEPOINT tidelake_copy; RELEASE SAVEPOINT tidelake_copy"));
        }
        let (raw, _) = self.wire_trip(&probe)?;
        let messages: Vec<(u8, &[u8], &[u8])> = proto::messages(&raw).collect();
        // The head's answers, after the savepoint's.
        let start = if in_transaction { messages.iter().position(|m| m.0 == b'Z').map_or(0, |z| z + 1) } else { 0 };
        let answers = &messages[start..];
        let Some(copy_at) = answers.iter().position(|m| m.0 == b'G') else {
            // It failed before taking data: the client gets the head's
            // answers and its Sync's, and (in a transaction) the failure stands.
            let end = answers.iter().position(|m| m.0 == b'Z').map_or(answers.len(), |z| z + 1);
            let head_answer: Vec<u8> = answers[..end].iter().flat_map(|m| m.2.to_vec()).collect();
            let mut with_sync = sent[..head.1].to_vec();
            with_sync.push((b'S', true));
            let mut answer = Vec::new();
            self.align(&head_answer, &with_sync, &mut answer);
            if in_transaction {
                let err = answers.iter().find(|m| m.0 == b'E').map_or_else(|| DbError::new("XX000", "COPY failed"), |m| proto::error_of(m.1));
                let _ = self.wire_trip(&proto::simple_query(&refusal_sql(&err)))?;
                // Its ReadyForQuery says the transaction failed.
                if answer.len() >= 6 {
                    let last = answer.len() - 1;
                    answer[last] = b'E';
                }
                session.status = Some(TxStatus::Failed);
            } else {
                session.status = Some(TxStatus::Idle);
            }
            out.extend_from_slice(&answer);
            return Ok(());
        };
        let head_answer: Vec<u8> = answers[..=copy_at].iter().flat_map(|m| m.2.to_vec()).collect();
        let mut ahead = std::mem::take(out);
        self.align(&head_answer, &sent[..head.1], &mut ahead);
        io.send(ahead);
        let Some(data) = io.copy_data() else {
            return Err(Error::Engine("the client went away during COPY".into()));
        };
        let size: usize = data.iter().map(|m| m.body.len()).sum();
        if size > MAX_COPY_BYTES {
            return self.refuse_copy(session, &copy_too_large(), out);
        }
        // Again, with the data: the statements the probe parsed are parsed anew.
        let mut real = Vec::with_capacity(bytes.len() + size + 64);
        for (tag, body, _) in proto::messages(head_bytes) {
            if tag == b'P' {
                close_statement(&mut real, split_cstr(body).0);
            }
        }
        real.extend_from_slice(head_bytes);
        real.extend_from_slice(tail);
        for message in &data {
            message.encode(&mut real);
        }
        proto::sync(&mut real);
        let (raw, _) = self.wire_trip(&real)?;
        // What came before the engine's CopyInResponse was answered already.
        let mut status = TxStatus::Idle;
        let mut ok = true;
        let mut copying = false;
        for (tag, body, whole) in proto::messages(&raw) {
            if !copying {
                copying = tag == b'G';
                continue;
            }
            match tag {
                b'Z' => status = proto::ready_status(body),
                b'E' => ok = false,
                _ => {}
            }
            out.extend_from_slice(whole);
        }
        if !copying {
            // It failed this time before taking data: its error and ReadyForQuery.
            for (tag, body, whole) in proto::messages(&raw) {
                match tag {
                    b'Z' => status = proto::ready_status(body),
                    b'E' => ok = false,
                    _ => continue,
                }
                out.extend_from_slice(whole);
            }
        }
        self.in_transaction = status != TxStatus::Idle;
        session.status = Some(status);
        // (A client sends Sync after CopyDone — tokio-postgres does — since
        // PostgreSQL answers a COPY's end at the next Sync; ours stood for it.)
        session.copied = true;
        if status == TxStatus::Idle && ok {
            self.committed();
        }
        Ok(())
    }

    /// Before a Bind or Describe of `name`: the connection's statement
    /// parsed again if the engine no longer has it.
    fn ensure_prepared(&mut self, session: &WireSession, name: &str, bytes: &mut Vec<u8>, sent: &mut Vec<(u8, bool)>) {
        let present = if name.is_empty() {
            self.wire.unnamed_of == Some(session.id)
        } else {
            self.wire.prepared.contains(&session.engine_name(name))
        };
        if present {
            return;
        }
        if let Some(parse) = session.statements.get(name) {
            parse.encode(bytes);
            sent.push((b'P', false));
            if name.is_empty() {
                self.wire.unnamed_of = Some(session.id);
            } else {
                self.wire.prepared.insert(session.engine_name(name));
            }
        }
    }

    /// Walk the engine's answer along what was sent, keeping the answers
    /// to the client's messages. Returns the status of the last
    /// ReadyForQuery and whether no error came.
    fn align(&mut self, raw: &[u8], sent: &[(u8, bool)], out: &mut Vec<u8>) -> (Option<TxStatus>, bool) {
        let mut at = 0usize; // the message of `sent` being answered
        let mut skipping = false; // after an error: nothing until Sync
        let mut status = None;
        let mut ok = true;
        // The client's Execute answered last: where a follow-up's error goes.
        let mut last_execute_end: Option<usize> = None;
        let answers_nothing = |tag: u8, skipping: bool| tag == b'H' || matches!(tag, b'd' | b'c' | b'f') || (skipping && tag != b'S');
        for (tag, body, whole) in proto::messages(raw) {
            if matches!(tag, b'N' | b'A') || (tag == b'S') {
                let ours = sent.get(at).is_some_and(|(_, client)| !client);
                if tag == b'N' && proto::error_of(body).message == proto::CHANGES_NOTICE {
                    self.committed_changes = true;
                } else if !ours || tag == b'S' {
                    out.extend_from_slice(whole);
                }
                continue;
            }
            while sent.get(at).is_some_and(|(t, _)| answers_nothing(*t, skipping)) {
                at += 1;
            }
            let Some(&(sent_tag, client)) = sent.get(at) else {
                out.extend_from_slice(whole);
                continue;
            };
            let complete = match (sent_tag, tag) {
                (_, b'E') => true,
                (b'D', b't') => false,
                (b'E', b'D' | b'G' | b'H' | b'd' | b'c') => false,
                _ => true,
            };
            if tag == b'E' {
                ok = false;
                skipping = true;
                let mut bytes = Vec::new();
                if client {
                    out.extend(client_error(whole, body, |err| err));
                } else {
                    let err = proto::error_of(body).protecting_capture();
                    // A follow-up failed: the client's statement takes its
                    // error (it is rolled back with it), or a statement
                    // parsed again fails as the client's Bind would have.
                    let err = if sent_tag == b'P' {
                        err
                    } else {
                        DbError {
                            message: format!(
                                "change capture could not follow this schema change, so the statement was rolled back: {}",
                                err.message
                            ),
                            ..err
                        }
                    };
                    proto::error_message(&mut bytes, "ERROR", &err);
                    match last_execute_end {
                        Some(end) if sent_tag != b'P' => {
                            // Replace the Execute's CommandComplete.
                            out.truncate(end.saturating_sub(command_complete_len(out, end)));
                            out.extend_from_slice(&bytes);
                        }
                        _ => out.extend_from_slice(&bytes),
                    }
                }
            } else if tag == b'Z' {
                skipping = false;
                status = Some(proto::ready_status(body));
                out.extend_from_slice(whole);
            } else if client {
                out.extend_from_slice(whole);
                if sent_tag == b'E' && complete {
                    last_execute_end = Some(out.len());
                }
            } else if sent_tag == b'E' && tag == b'D' {
                let count = data_row_first(body).and_then(|v| v.parse::<i64>().ok());
                self.schema_recorded |= count.is_some_and(|n| n > 0);
            }
            if complete {
                at += 1;
            }
        }
        (status, ok)
    }

    /// One round trip of a wire connection's messages under the request's
    /// limits: the raw answer, with a limit that stopped it named in place
    /// of the engine's cancel error.
    /// Capture's notice that a transaction wrote changes is taken out (and
    /// noted), as is a write's command tag (the notice may be silenced).
    fn wire_trip(&mut self, bytes: &[u8]) -> Result<(Vec<u8>, Option<Stopped>)> {
        let (raw, stopped) = self.exchange(bytes)?;
        let mut answer = Vec::with_capacity(raw.len());
        for (tag, body, whole) in proto::messages(&raw) {
            match tag {
                b'N' if proto::error_of(body).message == proto::CHANGES_NOTICE => self.committed_changes = true,
                b'C' => {
                    let word = first_word(std::str::from_utf8(body).unwrap_or(""));
                    self.committed_changes |= matches!(word.as_str(), "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "COPY" | "TRUNCATE");
                    answer.extend_from_slice(whole);
                }
                b'E' if stopped.is_some() && proto::error_of(body).code == "57014" => {
                    proto::error_message(&mut answer, "ERROR", &limit_error(stopped.expect("stopped")))
                }
                b'D' if stopped.is_some() => {}
                _ => answer.extend_from_slice(whole),
            }
        }
        Ok((answer, stopped))
    }

    /// Note what an answer says of the transaction.
    fn settle(&mut self, session: &mut WireSession, raw: &[u8]) {
        if let Some((_, body, _)) = proto::messages(raw).filter(|(tag, _, _)| *tag == b'Z').last() {
            let status = proto::ready_status(body);
            self.in_transaction = status != TxStatus::Idle;
            session.status = Some(status);
        }
    }
}


/// Capture's follow-up to a schema change, on a statement and portal of
/// its own: Close, Parse, Bind, Execute, Close.
fn sync_follow_up() -> Vec<(u8, Vec<u8>)> {
    let name = |kind: u8| {
        let mut body = vec![kind];
        body.extend_from_slice(SYNC_NAME.as_bytes());
        body.push(0);
        body
    };
    let mut parse = Vec::new();
    parse.extend_from_slice(SYNC_NAME.as_bytes());
    parse.push(0);
    parse.extend_from_slice(SYNC_SCHEMA_SQL.as_bytes());
    parse.extend_from_slice(&[0, 0, 0]);
    let mut bind = Vec::new();
    for _ in 0..2 {
        bind.extend_from_slice(SYNC_NAME.as_bytes());
        bind.push(0);
    }
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut execute = Vec::new();
    execute.extend_from_slice(SYNC_NAME.as_bytes());
    execute.extend_from_slice(&[0, 0, 0, 0, 0]);
    vec![(b'C', name(b'S')), (b'P', parse), (b'B', bind), (b'E', execute), (b'C', name(b'P')), (b'C', name(b'S'))]
}

/// An error for the client, as the engine sent it (every field kept:
/// drivers read constraint and column names) unless `change` (or the
/// protection of capture) changes it. A refusal of ours loses the context
/// of the block that raised it.
fn client_error(whole: &[u8], body: &[u8], change: impl FnOnce(DbError) -> DbError) -> Vec<u8> {
    let err = proto::error_of(body);
    let changed = change(err.clone().protecting_capture());
    if changed == err && !(err.code == "0A000" && err.message.contains("tidelake's wire protocol")) {
        return whole.to_vec();
    }
    let mut out = Vec::new();
    proto::error_message(&mut out, "ERROR", &changed);
    out
}

/// The engine's answer with its errors as the client gets them (see `client_error`).
fn client_errors(raw: &[u8]) -> Vec<u8> {
    proto::messages(raw).flat_map(|(tag, body, whole)| if tag == b'E' { client_error(whole, body, |e| e) } else { whole.to_vec() }).collect()
}

/// Append a Close of the engine's prepared statement `name`.
fn close_statement(out: &mut Vec<u8>, name: &str) {
    let mut body = vec![b'S'];
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    proto::push_message(out, b'C', &body);
}

/// A COPY whose data is larger than the engine takes in one piece.
fn copy_too_large() -> DbError {
    let mut err = DbError::new("54000", format!("COPY data over {} MiB: split it into several COPY statements", MAX_COPY_BYTES >> 20));
    err.hint = Some("the data of one COPY … FROM STDIN goes to the tenant's engine in one piece".into());
    err
}

/// The first value of a DataRow, as text.
fn data_row_first(body: &[u8]) -> Option<String> {
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    Some(String::from_utf8_lossy(body.get(6..6 + len)?).into_owned())
}

/// The length of the CommandComplete that ends `out` at `end`, if one does.
fn command_complete_len(out: &[u8], end: usize) -> usize {
    let mut at = 0;
    let mut last = 0;
    for (tag, _, whole) in proto::messages(&out[..end]) {
        last = if tag == b'C' { whole.len() } else { 0 };
        at += whole.len();
    }
    if at == end { last } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_frontend_messages_pass() {
        let parse = b"s1\0SELECT $1\0\0\x01\0\0\0\x17";
        assert_eq!(check_frontend(b'P', parse), Ok(()));
        assert!(check_frontend(b'P', &parse[..parse.len() - 1]).is_err(), "a type OID cut short");
        assert!(check_frontend(b'Q', b"SELECT 1").is_err(), "no terminating NUL");
        assert!(check_frontend(b'Q', b"SELECT 1\0; DROP TABLE t\0").is_err(), "text after the string");
        let bind = b"\0s1\0\0\0\0\x02\0\0\0\x01x\xff\xff\xff\xff\0\0";
        assert_eq!(check_frontend(b'B', bind), Ok(()));
        assert!(check_frontend(b'B', b"\0s1\0\0\0\0\x01\0\0\0\x09x\0\0").is_err(), "a value longer than the message");
        assert!(check_frontend(b'B', b"\0s1\0\0\0\0\x01\xff\xff\xff\xfbx\0\0").is_err(), "a negative length other than NULL's -1");
        assert!(check_frontend(b'P', b"s1\0SELECT 1\0\xff\xff").is_err(), "a negative count of parameter types");
        assert!(check_frontend(b'D', b"X\0").is_err() && check_frontend(b'C', b"").is_err());
        assert_eq!(check_frontend(b'E', b"\0\0\0\0\0"), Ok(()));
        assert!(check_frontend(b'F', b"").unwrap_err().contains("function call"));
        assert!(check_frontend(b'Z', b"").unwrap_err().contains("invalid frontend message type"));
    }

    #[test]
    fn refused_statements_name_what_to_do_instead() {
        assert!(wire_refusal("CREATE TEMP TABLE t (a int)").unwrap().message.contains("regular table"));
        assert!(wire_refusal("prepare q AS SELECT 1").unwrap().message.contains("protocol's prepared statements"));
        assert!(wire_refusal("DEALLOCATE q").is_none(), "emulated per connection");
        assert!(wire_refusal("LISTEN x").unwrap().message.contains("WebSocket"));
        assert!(wire_refusal("UNLISTEN *").is_none(), "connection pools send it when a connection returns");
        assert!(wire_refusal("SELECT 1").is_none());
        assert_eq!(refusal_sql(&DbError::new("0A000", "it's no")), "DO $tidelake$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = 'it''s no'; END$tidelake$");
    }
}
