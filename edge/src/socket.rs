//! `GET ws` at the edge: the server's WebSocket protocol (`model::api`'s
//! `ClientMessage`: queries, and change subscriptions that replay from any
//! LSN, then go live) on the Durable Object hibernation API.
//!
//! The runtime holds the sockets; the object keeps nothing of them in
//! memory. Each socket's attachment (kept by the runtime, also while the
//! object is evicted) holds the caller's scope and its subscriptions with
//! their cursors. A subscription is a cursor over the durable change log,
//! as on the server: it replays page by page when made, and after every
//! request that may have committed the object reads on from each cursor and
//! sends what it finds, then stores the cursors. An idle subscriber costs
//! nothing: the object may be evicted under it and wakes with the next
//! request, its subscriptions where they were.

use model::api::{ClientMessage, MAX_SUBSCRIPTIONS, SUBSCRIPTION_PAGE, Statement, checked_lsn, protocol_error};
use model::api::ChangeFilter;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use worker::*;

use crate::engine::{Engine, Failure};

/// The most the runtime keeps with one socket (Cloudflare's limit of
/// `serializeAttachment`).
const MAX_ATTACHMENT: usize = 2048;

/// What the runtime keeps with each socket.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attachment {
    tenant: String,
    may_write: bool,
    subscriptions: Vec<Subscription>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Subscription {
    id: String,
    /// The newest LSN delivered (or skipped by the filter).
    cursor: u64,
    filter: ChangeFilter,
}

fn attachment(ws: &WebSocket) -> Attachment {
    ws.deserialize_attachment().ok().flatten().unwrap_or_default()
}

fn send(ws: &WebSocket, message: &Value) {
    if let Err(err) = ws.send_with_str(message.to_string()) {
        console_error!("a WebSocket send failed: {err}");
    }
}

/// The error of a failure, as the server words it in a WebSocket message.
fn error_of(failure: &Failure) -> Value {
    crate::http::failure_error(failure).1
}

/// Accept the upgrade: the runtime holds the socket from here on.
pub fn accept(state: &State, tenant: &str, may_write: bool) -> Result<Response> {
    let pair = WebSocketPair::new()?;
    state.accept_web_socket(&pair.server);
    pair.server.serialize_attachment(Attachment { tenant: tenant.to_owned(), may_write, subscriptions: Vec::new() })?;
    Response::from_websocket(pair.client)
}

/// The tenant a socket was opened on.
pub fn tenant(ws: &WebSocket) -> String {
    attachment(ws).tenant
}

/// The engine did not start: the message's answer is that error.
pub fn refuse(ws: &WebSocket, message: &ClientMessage, failure: &Failure) {
    let id = match message {
        ClientMessage::Query { id, .. } => id.clone(),
        ClientMessage::Subscribe { id, .. } | ClientMessage::Unsubscribe { id } => json!(id),
    };
    send(ws, &json!({ "type": "error", "id": id, "error": error_of(failure) }));
}

/// What one client message asks of the engine.
pub enum Asked {
    /// Nothing more (answered already).
    Done,
    /// The engine is needed: run this.
    Work(ClientMessage),
}

/// Read one message; protocol errors are answered here.
pub fn read(ws: &WebSocket, message: WebSocketIncomingMessage) -> Asked {
    let text = match message {
        WebSocketIncomingMessage::String(text) => text,
        WebSocketIncomingMessage::Binary(_) => {
            send(ws, &protocol_error(Value::Null, "messages must be JSON text"));
            return Asked::Done;
        }
    };
    match serde_json::from_str::<ClientMessage>(&text) {
        Ok(message) => Asked::Work(message),
        Err(err) => {
            let id = serde_json::from_str::<Value>(&text).ok().and_then(|v| v.get("id").cloned()).unwrap_or(Value::Null);
            send(ws, &protocol_error(id, &format!("invalid message: {err}")));
            Asked::Done
        }
    }
}

/// Answer one message with the engine. Returns whether it may have
/// committed (every subscriber is then brought up to date).
pub fn answer(ws: &WebSocket, engine: &Engine, message: ClientMessage) -> bool {
    let mut attached = attachment(ws);
    match message {
        ClientMessage::Query { id, sql, params, row_mode, statement_timeout } => {
            if statement_timeout.is_some() {
                send(ws, &protocol_error(id, "statementTimeout is not supported at the edge yet"));
                return false;
            }
            let reply = match engine.query(&Statement { sql, params }, row_mode, attached.may_write) {
                Ok(result) => json!({ "type": "result", "id": id, "result": result }),
                Err(failure) => json!({ "type": "error", "id": id, "error": error_of(&failure) }),
            };
            send(ws, &reply);
            attached.may_write
        }
        ClientMessage::Subscribe { id, since, filter } => {
            if let Some(Err(message)) = since.map(|lsn| checked_lsn("since", lsn)) {
                send(ws, &protocol_error(json!(id), &message));
            } else if attached.subscriptions.iter().any(|s| s.id == id) {
                send(ws, &protocol_error(json!(id), "a subscription with this id exists"));
            } else if attached.subscriptions.len() >= MAX_SUBSCRIPTIONS {
                send(ws, &protocol_error(json!(id), &format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection")));
            } else {
                let cursor = match since {
                    Some(lsn) => lsn,
                    None => match engine.log_stats() {
                        Ok(stats) => stats.head_lsn,
                        Err(failure) => {
                            send(ws, &json!({ "type": "error", "id": id, "error": error_of(&failure) }));
                            return false;
                        }
                    },
                };
                attached.subscriptions.push(Subscription { id: id.clone(), cursor, filter });
                if serde_json::to_string(&attached).map_or(usize::MAX, |s| s.len()) > MAX_ATTACHMENT {
                    attached.subscriptions.pop();
                    let message = format!(
                        "the subscriptions of one connection must fit in {MAX_ATTACHMENT} bytes at the edge \
                         (the runtime keeps that much per socket): use fewer or smaller filters, or another connection"
                    );
                    send(ws, &protocol_error(json!(id), &message));
                    return false;
                }
                send(ws, &json!({ "type": "subscribed", "id": id, "since": cursor }));
                catch_up(ws, engine, &mut attached);
                store(ws, &attached);
            }
            false
        }
        ClientMessage::Unsubscribe { id } => {
            let before = attached.subscriptions.len();
            attached.subscriptions.retain(|s| s.id != id);
            if attached.subscriptions.len() < before {
                store(ws, &attached);
                send(ws, &json!({ "type": "unsubscribed", "id": id }));
            } else {
                send(ws, &protocol_error(json!(id), "no such subscription"));
            }
            false
        }
    }
}

fn store(ws: &WebSocket, attached: &Attachment) {
    if let Err(err) = ws.serialize_attachment(attached) {
        console_error!("a WebSocket's subscriptions could not be kept: {err}");
    }
}

/// Send each subscription of one socket what committed past its cursor.
/// A subscription whose changes were trimmed ends with an error.
fn catch_up(ws: &WebSocket, engine: &Engine, attached: &mut Attachment) {
    attached.subscriptions.retain_mut(|sub| loop {
        let page = match engine.changes(sub.cursor, SUBSCRIPTION_PAGE) {
            Ok(page) => page,
            Err(failure) => {
                send(ws, &json!({ "type": "error", "id": sub.id, "error": error_of(&failure) }));
                return false;
            }
        };
        for change in &page.changes {
            if let Some(change) = sub.filter.apply(change) {
                send(ws, &json!({ "type": "change", "subscription": sub.id, "change": change }));
            }
        }
        sub.cursor = page.next_lsn;
        if (page.changes.len() as u64) < SUBSCRIPTION_PAGE {
            return true;
        }
    });
}

/// Bring every subscriber of the object up to date (after a commit).
pub fn publish(state: &State, engine: &Engine) {
    for ws in state.get_websockets() {
        let mut attached = attachment(&ws);
        if attached.subscriptions.is_empty() {
            continue;
        }
        catch_up(&ws, engine, &mut attached);
        store(&ws, &attached);
    }
}
