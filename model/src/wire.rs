//! The PostgreSQL frontend messages sent to an embedded backend, and the
//! folding of its backend messages into per-statement results: shared by
//! the server's engine (pglite-oxide) and the edge's (PGlite for JS).
//!
//! We speak the protocol ourselves (rather than through the driver's `query`)
//! to get the command tag, to keep every value in text format with its type
//! OID, and to send Parse/Bind/Describe/Execute/Sync in one round trip.

use serde_json::Value;

use crate::api::{DbError, Field, QueryResult, RowMode};
use crate::values::{row_object, text_to_json};

/// Transaction status from ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InTransaction,
    Failed,
}

fn message(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
}

fn cstr(body: &mut Vec<u8>, s: &str) {
    body.extend_from_slice(s.as_bytes());
    body.push(0);
}

/// Simple-protocol query: may hold several statements, no parameters.
pub fn simple_query(sql: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(sql.len() + 1);
    cstr(&mut body, sql);
    let mut out = Vec::with_capacity(body.len() + 5);
    message(&mut out, b'Q', &body);
    out
}

/// Extended-protocol query on the unnamed statement and portal, with text
/// parameters whose types the server infers: one round trip.
pub fn extended_query(sql: &str, params: &[Option<String>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sql.len() + 64);
    execute(&mut out, sql, params);
    sync(&mut out);
    out
}

/// Append Sync: the end of an extended-protocol batch. Outside a
/// transaction block, the statements before it commit together (or, after
/// an error, none does).
pub fn sync(out: &mut Vec<u8>) {
    message(out, b'S', b"");
}

/// Append Parse/Bind/Describe/Execute of one statement on the unnamed
/// statement and portal, without Sync: statements appended one after the
/// other run in one implicit transaction, and after an error the rest are
/// skipped until Sync.
pub fn execute(out: &mut Vec<u8>, sql: &str, params: &[Option<String>]) {
    // Parse: unnamed statement, no declared parameter types.
    let mut body = Vec::with_capacity(sql.len() + 4);
    cstr(&mut body, "");
    cstr(&mut body, sql);
    body.extend_from_slice(&0i16.to_be_bytes());
    message(out, b'P', &body);
    // Bind: unnamed portal, all parameters and results in text format.
    body.clear();
    cstr(&mut body, "");
    cstr(&mut body, "");
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for param in params {
        match param {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(text) => {
                body.extend_from_slice(&(text.len() as i32).to_be_bytes());
                body.extend_from_slice(text.as_bytes());
            }
        }
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    message(out, b'B', &body);
    message(out, b'D', b"P\0");
    message(out, b'E', b"\0\0\0\0\0");
}

/// What one round trip produced: a result per completed statement, the
/// first error (if any) and the transaction status afterwards.
#[derive(Debug)]
pub struct Outcome {
    pub results: Vec<QueryResult>,
    pub error: Option<DbError>,
    pub status: TxStatus,
    /// A capture trigger said its transaction wrote changes (the transaction
    /// may still have rolled back: this only says "look").
    pub notified: bool,
}

/// The notice a capture trigger raises once per writing transaction.
pub const CHANGES_NOTICE: &str = "tidelake.changes";

/// Fold the backend's raw protocol output into results, converting values
/// as they come (one pass over the bytes, no intermediate messages).
/// Output that is not well-formed protocol ends the fold with an error.
pub fn collect(data: &[u8], row_mode: RowMode) -> Outcome {
    let mut results = Vec::new();
    let mut error = None;
    let mut status = TxStatus::Idle;
    let mut notified = false;
    let mut fields: Vec<Field> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut rows: Vec<Value> = Vec::new();
    let mut at = 0usize;
    while at + 5 <= data.len() {
        let tag = data[at];
        let len = i32::from_be_bytes([data[at + 1], data[at + 2], data[at + 3], data[at + 4]]);
        let end = at + 1 + len.max(4) as usize;
        if len < 4 || end > data.len() {
            error.get_or_insert_with(|| DbError::new("08P01", "the engine sent a malformed protocol message"));
            break;
        }
        let mut body = Reader(&data[at + 5..end]);
        at = end;
        match tag {
            b'T' => {
                let count = body.i16().unwrap_or(0).max(0) as usize;
                fields = Vec::with_capacity(count);
                for _ in 0..count {
                    let name = body.cstr().unwrap_or_default().to_owned();
                    // table oid, column number, type oid, type size, modifier, format
                    let (table_id, column_id) = (body.i32().unwrap_or(0), body.i16().unwrap_or(0));
                    let data_type_id = body.i32().unwrap_or(0);
                    let (type_size, type_modifier) = (body.i16().unwrap_or(-1), body.i32().unwrap_or(-1));
                    let _format = body.i16();
                    fields.push(Field { name, data_type_id, table_id, column_id, type_size, type_modifier });
                }
                names = fields.iter().map(|f| f.name.clone()).collect();
                rows.clear();
            }
            b'D' => {
                let count = body.i16().unwrap_or(0).max(0) as usize;
                let mut values = Vec::with_capacity(count);
                for i in 0..count {
                    let value = match body.i32() {
                        Some(n) if n >= 0 => match body.bytes(n as usize) {
                            Some(raw) => {
                                let text = String::from_utf8_lossy(raw);
                                if row_mode == RowMode::Text {
                                    Value::String(text.into_owned())
                                } else {
                                    text_to_json(&text, fields.get(i).map_or(0, |f| f.data_type_id))
                                }
                            }
                            None => Value::Null,
                        },
                        _ => Value::Null,
                    };
                    values.push(value);
                }
                rows.push(match row_mode {
                    RowMode::Object => row_object(&names, values),
                    RowMode::Array | RowMode::Text => Value::Array(values),
                });
            }
            b'C' => {
                let (command, row_count) = parse_tag(body.cstr().unwrap_or_default());
                // Also without the notice (a session may silence notices).
                notified |= matches!(
                    command.as_str(),
                    "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "COPY" | "TRUNCATE TABLE"
                );
                results.push(QueryResult {
                    command,
                    row_count,
                    fields: std::mem::take(&mut fields),
                    rows: std::mem::take(&mut rows),
                });
                names.clear();
            }
            // The first error is the one to report.
            b'I' if error.is_none() => {
                error = Some(DbError::new("42601", "empty query: no SQL statement given"));
            }
            b'E' if error.is_none() => error = Some(error_fields(body)),
            b'N' => notified |= error_fields(body).message == CHANGES_NOTICE,
            b'Z' => {
                status = match body.bytes(1).map(|b| b[0]) {
                    Some(b'T') => TxStatus::InTransaction,
                    Some(b'E') => TxStatus::Failed,
                    _ => TxStatus::Idle,
                };
            }
            _ => {}
        }
    }
    Outcome {
        results,
        error,
        status,
        notified,
    }
}

/// The messages of raw protocol output: tag, body (without tag and
/// length) and the whole message. Stops at the first malformed one.
pub fn messages(data: &[u8]) -> impl Iterator<Item = (u8, &[u8], &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at + 5 > data.len() {
            return None;
        }
        let len = i32::from_be_bytes([data[at + 1], data[at + 2], data[at + 3], data[at + 4]]);
        let end = at.checked_add(1 + usize::try_from(len).ok().filter(|&l| l >= 4)?)?;
        if end > data.len() {
            return None;
        }
        let start = at;
        at = end;
        Some((data[start], &data[start + 5..end], &data[start..end]))
    })
}

/// The fields of an ErrorResponse or NoticeResponse body.
pub fn error_of(body: &[u8]) -> DbError {
    error_fields(Reader(body))
}

/// An ErrorResponse (or, with `severity` NOTICE, a NoticeResponse) carrying `err`.
pub fn error_message(out: &mut Vec<u8>, severity: &str, err: &DbError) {
    let mut body = Vec::with_capacity(err.message.len() + 64);
    for (kind, value) in [(b'S', Some(severity)), (b'V', Some(severity)), (b'C', Some(err.code.as_str())), (b'M', Some(err.message.as_str())), (b'D', err.detail.as_deref()), (b'H', err.hint.as_deref()), (b'P', err.position.as_deref())] {
        if let Some(value) = value {
            body.push(kind);
            cstr(&mut body, value);
        }
    }
    body.push(0);
    message(out, if severity == "NOTICE" { b'N' } else { b'E' }, &body);
}

/// Append one message.
pub fn push_message(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    message(out, tag, body);
}

/// The transaction status a ReadyForQuery body gives.
pub fn ready_status(body: &[u8]) -> TxStatus {
    match body.first() {
        Some(b'T') => TxStatus::InTransaction,
        Some(b'E') => TxStatus::Failed,
        _ => TxStatus::Idle,
    }
}

/// A cursor over one message body (either direction's).
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub fn i16(&mut self) -> Option<i16> {
        self.bytes(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Option<i32> {
        self.bytes(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A NUL-ended UTF-8 string (None: no NUL, or not UTF-8).
    pub fn cstr(&mut self) -> Option<&'a str> {
        let nul = self.0.iter().position(|&b| b == 0)?;
        let text = std::str::from_utf8(&self.0[..nul]).ok();
        self.0 = &self.0[nul + 1..];
        text
    }

    /// A count (an Int16 that may not be negative).
    pub fn count(&mut self) -> Option<usize> {
        usize::try_from(self.i16()?).ok()
    }

    /// Whether the whole body was read.
    pub fn at_end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

/// The fields of an ErrorResponse or NoticeResponse.
fn error_fields(mut body: Reader<'_>) -> DbError {
    let mut err = DbError::new("XX000", "");
    while let Some(kind) = body.bytes(1).map(|b| b[0]).filter(|&k| k != 0) {
        let value = body.cstr().unwrap_or_default().to_owned();
        match kind {
            b'C' => err.code = value,
            b'M' => err.message = value,
            b'D' => err.detail = Some(value),
            b'H' => err.hint = Some(value),
            b'P' => err.position = Some(value),
            _ => {}
        }
    }
    err
}

/// Split a command tag: `INSERT 0 3` → (`INSERT`, 3), `CREATE TABLE` → (`CREATE TABLE`, None).
fn parse_tag(tag: &str) -> (String, Option<u64>) {
    let mut words: Vec<&str> = tag.split_whitespace().collect();
    let count = match words.last().map(|w| w.parse::<u64>()) {
        Some(Ok(n)) => {
            words.pop();
            Some(n)
        }
        _ => None,
    };
    // INSERT's tag carries an obsolete OID before the count.
    if words.first() == Some(&"INSERT") && words.len() == 2 {
        words.pop();
    }
    (words.join(" "), count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tags_split_into_verb_and_count() {
        assert_eq!(parse_tag("INSERT 0 3"), ("INSERT".into(), Some(3)));
        assert_eq!(parse_tag("SELECT 0"), ("SELECT".into(), Some(0)));
        assert_eq!(parse_tag("UPDATE 12"), ("UPDATE".into(), Some(12)));
        assert_eq!(parse_tag("CREATE TABLE"), ("CREATE TABLE".into(), None));
        assert_eq!(parse_tag("BEGIN"), ("BEGIN".into(), None));
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        message(&mut out, tag, body);
        out
    }

    #[test]
    fn raw_output_folds_into_typed_rows() {
        let mut data = Vec::new();
        // RowDescription: one int4 column "n".
        let mut desc = 1i16.to_be_bytes().to_vec();
        desc.extend_from_slice(b"n\0");
        desc.extend_from_slice(&[0; 6]);
        desc.extend_from_slice(&23i32.to_be_bytes());
        desc.extend_from_slice(&[0; 8]);
        data.extend(msg(b'T', &desc));
        for value in [Some("7"), None] {
            let mut row = 1i16.to_be_bytes().to_vec();
            match value {
                Some(v) => {
                    row.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    row.extend_from_slice(v.as_bytes());
                }
                None => row.extend_from_slice(&(-1i32).to_be_bytes()),
            }
            data.extend(msg(b'D', &row));
        }
        data.extend(msg(b'C', b"SELECT 2\0"));
        data.extend(msg(b'N', b"SNOTICE\0Mtidelake.changes\0\0"));
        data.extend(msg(b'Z', b"T"));
        let outcome = collect(&data, RowMode::Object);
        assert_eq!(outcome.results[0].rows, vec![serde_json::json!({"n": 7}), serde_json::json!({"n": null})]);
        assert_eq!(outcome.results[0].row_count, Some(2));
        assert!(outcome.notified && outcome.error.is_none());
        assert_eq!(outcome.status, TxStatus::InTransaction);
    }

    #[test]
    fn errors_keep_their_fields_and_malformed_output_is_an_error() {
        let data = msg(b'E', b"SERROR\0C23505\0Mduplicate\0Dkey (id)=(1)\0P12\0\0");
        let err = collect(&data, RowMode::Array).error.unwrap();
        assert_eq!((err.code.as_str(), err.message.as_str()), ("23505", "duplicate"));
        assert_eq!((err.detail.as_deref(), err.position.as_deref()), (Some("key (id)=(1)"), Some("12")));
        // A length past the end, and a DataRow whose value runs short.
        let mut truncated = msg(b'C', b"SELECT 1\0");
        truncated.truncate(truncated.len() - 2);
        assert_eq!(collect(&truncated, RowMode::Array).error.unwrap().code, "08P01");
        let short = msg(b'D', &[0, 1, 0, 0, 0, 9, b'x']);
        assert_eq!(collect(&short, RowMode::Array).error, None);
    }

    #[test]
    fn extended_query_frames_are_length_prefixed() {
        let bytes = extended_query("SELECT $1", &[Some("x".into()), None]);
        assert_eq!(bytes[0], b'P');
        let len = i32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        assert_eq!(bytes[1 + len], b'B');
        assert_eq!(*bytes.last().unwrap(), 4); // Sync's length byte
    }
}
