//! `GET ws`: queries and change subscriptions over one WebSocket.
//!
//! A subscription is a cursor over the durable change log: it replays from
//! its `since` LSN page by page, then waits on the tenant's feed for the
//! head to move, and reads on. Replay and live are the same loop, so there
//! is no seam to lose or repeat a change at, and a client that reconnects
//! with its last LSN misses nothing. Waiting costs no engine time: the
//! tenant may hibernate under an idle subscriber. Outgoing messages go
//! through a bounded queue (backpressure on the cursor); a client that
//! stops reading for longer than the send timeout is disconnected.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::error::error_body;
use super::extract::SqlTenant;
use crate::actor::work;
use crate::protocol::{ChangeFilter, ClientMessage, Statement, checked_lsn, requested_timeout};
use model::TenantId;
use crate::tenants::Tenants;

use model::api::{MAX_SUBSCRIPTIONS, SUBSCRIPTION_PAGE as PAGE, protocol_error};

const OUTGOING_QUEUE: usize = 256;
/// Close code for a client that does not keep up (RFC 6455 "policy violation").
const CLOSE_TOO_SLOW: u16 = 1008;
/// Close code for a message over the body limit (RFC 6455: message too big).
const CLOSE_TOO_BIG: u16 = 1009;

/// `read` on the tenant subscribes and queries; its queries run
/// read-only unless the caller may write there.
pub async fn ws(
    State(tenants): State<Arc<Tenants>>,
    SqlTenant { tenant, may_write }: SqlTenant,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(tenants.config().max_body_bytes)
        .on_upgrade(move |socket| session(tenants, tenant, may_write, socket))
}

async fn session(tenants: Arc<Tenants>, tenant: TenantId, may_write: bool, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut outgoing) = mpsc::channel::<Value>(OUTGOING_QUEUE);
    // The reader's last word: a close frame the writer sends before ending.
    let (closing, mut close) = mpsc::channel::<CloseFrame>(1);
    let send_timeout = tenants.config().ws_send_timeout;
    let mut writer = tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                msg = outgoing.recv() => match msg {
                    Some(msg) => msg,
                    None => return,
                },
                frame = close.recv() => {
                    if let Some(frame) = frame {
                        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
                    }
                    return;
                }
            };
            let text = Message::Text(msg.to_string().into());
            match tokio::time::timeout(send_timeout, sink.send(text)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::info!("disconnecting a WebSocket client that stopped reading");
                    let frame = CloseFrame {
                        code: CLOSE_TOO_SLOW,
                        reason: "client too slow: it stopped reading".into(),
                    };
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        sink.send(Message::Close(Some(frame))),
                    )
                    .await;
                    return;
                }
            }
        }
    });

    let mut subscriptions: HashMap<String, JoinHandle<()>> = HashMap::new();
    // Statements this connection may have queued or running at once.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(tenants.config().ws_max_in_flight.max(1)));
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = &mut writer => break,
        };
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                let _ = out.try_send(protocol_error(Value::Null, "messages must be JSON text"));
                continue;
            }
            Some(Err(err)) if too_long(&err) => {
                // As the edge does: say why, then close.
                let frame = CloseFrame { code: CLOSE_TOO_BIG, reason: "message too big".into() };
                if closing.send(frame).await.is_ok() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
                }
                break;
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue, // ping/pong are answered by the library
        };
        subscriptions.retain(|_, task| !task.is_finished());
        let parsed: Result<ClientMessage, _> = serde_json::from_str(text.as_str());
        match parsed {
            Err(err) => {
                let id = serde_json::from_str::<Value>(text.as_str())
                    .ok()
                    .and_then(|v| v.get("id").cloned())
                    .unwrap_or(Value::Null);
                let _ = out.send(protocol_error(id, &format!("invalid message: {err}"))).await;
            }
            Ok(ClientMessage::Query { id, sql, params, row_mode, statement_timeout }) => {
                let timeout = match requested_timeout(statement_timeout) {
                    Ok(timeout) => timeout,
                    Err(message) => {
                        let _ = out.send(protocol_error(id, &message)).await;
                        continue;
                    }
                };
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    let limit = tenants.config().ws_max_in_flight;
                    let error = json!({"code": "too_many_in_flight", "message": format!(
                        "at most {limit} queries may be queued or running on one connection (wsMaxInFlight): wait for their answers"
                    )});
                    let _ = out.send(json!({"type": "error", "id": id, "error": error})).await;
                    continue;
                };
                let (tenants, tenant, out) = (tenants.clone(), tenant.clone(), out.clone());
                tokio::spawn(async move {
                    let work = work::Query {
                        stmt: Statement { sql, params },
                        row_mode,
                    };
                    let reply = match tenants.run_sql(&tenant, work, timeout, may_write).await {
                        Ok(result) => json!({"type": "result", "id": id, "result": result}),
                        Err(err) => json!({"type": "error", "id": id, "error": error_body(&err)["error"]}),
                    };
                    drop(permit);
                    let _ = out.send(reply).await;
                });
            }
            Ok(ClientMessage::Subscribe { id, since, filter }) => {
                if let Some(Err(message)) = since.map(|lsn| checked_lsn("since", lsn)) {
                    let _ = out.send(protocol_error(json!(id), &message)).await;
                } else if subscriptions.contains_key(&id) {
                    let _ = out.send(protocol_error(json!(id), "a subscription with this id exists")).await;
                } else if subscriptions.len() >= MAX_SUBSCRIPTIONS {
                    let msg = format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection");
                    let _ = out.send(protocol_error(json!(id), &msg)).await;
                } else {
                    let task = tokio::spawn(subscription(
                        tenants.clone(),
                        tenant.clone(),
                        id.clone(),
                        since,
                        filter,
                        out.clone(),
                    ));
                    subscriptions.insert(id, task);
                }
            }
            Ok(ClientMessage::Unsubscribe { id }) => {
                let reply = match subscriptions.remove(&id) {
                    Some(task) => {
                        task.abort();
                        json!({"type": "unsubscribed", "id": id})
                    }
                    None => protocol_error(json!(id), "no such subscription"),
                };
                let _ = out.send(reply).await;
            }
        }
    }
    for task in subscriptions.into_values() {
        task.abort();
    }
}

async fn subscription(
    tenants: Arc<Tenants>,
    tenant: TenantId,
    id: String,
    since: Option<u64>,
    filter: ChangeFilter,
    out: mpsc::Sender<Value>,
) {
    let fail = |err: crate::error::Error| {
        json!({"type": "error", "id": id, "error": error_body(&err)["error"]})
    };
    if let Err(err) = tenants.must_exist(&tenant) {
        let _ = out.send(fail(err)).await;
        return;
    }
    let mut cursor = match since {
        Some(lsn) => lsn,
        None => match tenants.log_stats(&tenant).await {
            Ok(stats) => stats.head_lsn,
            Err(err) => {
                let _ = out.send(fail(err)).await;
                return;
            }
        },
    };
    if out
        .send(json!({"type": "subscribed", "id": id, "since": cursor}))
        .await
        .is_err()
    {
        return;
    }
    let feed = tenants.feed(&tenant);
    // Registered for the whole subscription, so every commit is published.
    let _waiting = feed.register();
    loop {
        // From memory when it holds what comes next; else from the database.
        let changes = match feed.recent_after(cursor, PAGE as usize) {
            Some(changes) => changes,
            None => match tenants.read_changes(&tenant, cursor, PAGE).await {
                Ok(page) => page.changes,
                Err(err) => {
                    let _ = out.send(fail(err)).await;
                    return;
                }
            },
        };
        for change in &changes {
            if let Some(change) = filter.apply(change)
                && out
                    .send(json!({"type": "change", "subscription": id, "change": change}))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if let Some(last) = changes.last() {
            cursor = last.lsn;
        }
        if (changes.len() as u64) < PAGE {
            feed.wait_past(cursor).await;
        }
    }
}

/// Whether a read failed on a message over the limit (`max_message_size`).
fn too_long(err: &axum::Error) -> bool {
    use tungstenite::error::{CapacityError, Error};
    let inner = std::error::Error::source(err).and_then(|e| e.downcast_ref::<Error>());
    matches!(inner, Some(Error::Capacity(CapacityError::MessageTooLong { .. })))
}
