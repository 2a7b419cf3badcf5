//! The PostgreSQL frontend messages we send to the embedded backend, and the
//! folding of its backend messages into per-statement results.
//!
//! We speak the protocol ourselves (rather than through the driver's `query`)
//! to get the command tag, to keep every value in text format with its type
//! OID, and to send Parse/Bind/Describe/Execute/Sync in one round trip.

use pglite_oxide::{BackendMessage, DatabaseError};
use serde_json::Value;

use crate::error::DbError;
use crate::protocol::{Field, QueryResult, RowMode};
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
    // Parse: unnamed statement, no declared parameter types.
    let mut body = Vec::with_capacity(sql.len() + 4);
    cstr(&mut body, "");
    cstr(&mut body, sql);
    body.extend_from_slice(&0i16.to_be_bytes());
    message(&mut out, b'P', &body);
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
    message(&mut out, b'B', &body);
    message(&mut out, b'D', b"P\0");
    message(&mut out, b'E', b"\0\0\0\0\0");
    message(&mut out, b'S', b"");
    out
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

/// Fold backend messages into results, converting values as they come.
pub fn collect(messages: Vec<BackendMessage>, row_mode: RowMode) -> Outcome {
    let mut results = Vec::new();
    let mut error = None;
    let mut status = TxStatus::Idle;
    let mut notified = false;
    let mut fields: Vec<Field> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut rows: Vec<Value> = Vec::new();
    for msg in messages {
        match msg {
            BackendMessage::RowDescription(desc) => {
                fields = desc
                    .fields
                    .into_iter()
                    .map(|f| Field {
                        name: f.name,
                        data_type_id: f.data_type_id,
                    })
                    .collect();
                names = fields.iter().map(|f| f.name.clone()).collect();
                rows.clear();
            }
            BackendMessage::DataRow(row) => {
                let values: Vec<Value> = row
                    .fields
                    .iter()
                    .zip(&fields)
                    .map(|(v, f)| match v {
                        None => Value::Null,
                        Some(text) => text_to_json(text, f.data_type_id),
                    })
                    .collect();
                rows.push(match row_mode {
                    RowMode::Object => row_object(&names, values),
                    RowMode::Array => Value::Array(values),
                });
            }
            BackendMessage::CommandComplete(done) => {
                let (command, row_count) = parse_tag(&done.text);
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
            BackendMessage::EmptyQuery { .. } if error.is_none() => {
                error = Some(DbError::new("42601", "empty query: no SQL statement given"));
            }
            BackendMessage::Error(err) if error.is_none() => {
                error = Some(db_error(err));
            }
            BackendMessage::Notice(notice) => {
                notified |= notice.message.as_deref() == Some(CHANGES_NOTICE);
            }
            BackendMessage::ReadyForQuery(ready) => {
                status = match ready.status {
                    b'T' => TxStatus::InTransaction,
                    b'E' => TxStatus::Failed,
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

pub fn db_error(err: DatabaseError) -> DbError {
    DbError {
        code: err.code.unwrap_or_else(|| "XX000".to_owned()),
        message: err.message,
        detail: err.detail,
        hint: err.hint,
        position: err.position,
        statement_index: None,
    }
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

    #[test]
    fn extended_query_frames_are_length_prefixed() {
        let bytes = extended_query("SELECT $1", &[Some("x".into()), None]);
        assert_eq!(bytes[0], b'P');
        let len = i32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        assert_eq!(bytes[1 + len], b'B');
        assert_eq!(*bytes.last().unwrap(), 4); // Sync's length byte
    }
}
