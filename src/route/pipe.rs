//! A session with an upstream link of its own: messages pass through untouched.
//!
//! The pipe still keeps track of the requests in flight, so that a server that goes away,
//! or never answers, gives the client an error instead of silence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Outgoing, RouteOptions, SessionTx, Unavailable};
use crate::jsonrpc::{Id, Message, code, to_raw};
use crate::transport::{self, Connection, Inbound, Target};

struct Pending {
    progress: Option<Id>,
    deadline: Option<Instant>,
    seq: u64,
}

#[derive(Default)]
struct State {
    pending: HashMap<Id, Pending>,
    seq: u64,
    closed: Option<String>,
}

pub struct Pipe {
    /// Taken away at close so that the link ends.
    tx: Mutex<Option<mpsc::Sender<Message>>>,
    state: Arc<Mutex<State>>,
    session: SessionTx,
    timeout: Option<Duration>,
    conn_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Pipe {
    pub async fn open(
        target: &Target,
        options: RouteOptions,
        session: SessionTx,
    ) -> Result<Pipe, Unavailable> {
        let conn = transport::connect(target, options.limits)
            .await
            .map_err(|e| Unavailable::from(e.to_string()))?;
        let (conn, _) = crate::era::upstream::settle(conn, target, options).await?;
        let Connection { tx, rx, task, .. } = conn;
        let state = Arc::new(Mutex::new(State::default()));
        let reader = tokio::spawn(read_upstream(
            rx,
            state.clone(),
            session.clone(),
            tx.clone(),
            options.request_timeout,
        ));
        Ok(Pipe {
            tx: Mutex::new(Some(tx)),
            state,
            session,
            timeout: options.request_timeout,
            conn_task: Mutex::new(Some(task)),
            reader,
        })
    }

    pub async fn send(&self, msg: Message) {
        let closed = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            if let Some(reason) = st.closed.clone() {
                Some(reason)
            } else {
                if msg.is_request() {
                    if let Some(id) = msg.id() {
                        st.seq += 1;
                        let seq = st.seq;
                        st.pending.insert(
                            id,
                            Pending {
                                progress: msg.progress_token(),
                                deadline: self.timeout.map(|t| Instant::now() + t),
                                seq,
                            },
                        );
                    }
                } else if msg.method() == Some("notifications/cancelled")
                    && let Some(id) = msg.cancelled_request_id()
                {
                    st.pending.remove(&id);
                }
                None
            }
        };
        if let Some(reason) = closed {
            if let Some(answer) = transport::undeliverable(&msg, &reason) {
                let _ = self.session.send(Outgoing::new(answer, None)).await;
            }
            return;
        }
        let tx = self.tx.lock().ok().and_then(|t| t.clone());
        let sent = match tx {
            Some(tx) => tx.send(msg.clone()).await.is_ok(),
            None => false,
        };
        if !sent && let Some(answer) = transport::undeliverable(&msg, "the server link is closed") {
            let _ = self.session.send(Outgoing::new(answer, None)).await;
        }
    }

    /// End the session: cancel what is still in flight, then close the link cleanly.
    pub async fn close(&self) {
        let ids: Vec<Id> = self
            .state
            .lock()
            .map(|mut s| {
                s.closed = Some("the session has ended".into());
                s.pending.drain().map(|(id, _)| id).collect()
            })
            .unwrap_or_default();
        let tx = self.tx.lock().ok().and_then(|mut t| t.take());
        if let Some(tx) = tx {
            for id in ids {
                let _ = tx.send(cancelled(&id, "the client went away")).await;
            }
        }
        self.reader.abort();
        let conn = self.conn_task.lock().ok().and_then(|mut t| t.take());
        if let Some(conn) = conn {
            let _ = tokio::time::timeout(Duration::from_secs(6), conn).await;
        }
    }
}

pub fn cancelled(id: &Id, reason: &str) -> Message {
    Message::notification(
        "notifications/cancelled",
        Some(to_raw(&serde_json::json!({
            "requestId": serde_json::from_str::<serde_json::Value>(id.as_json()).unwrap_or_default(),
            "reason": reason,
        }))),
    )
}

async fn read_upstream(
    mut rx: mpsc::Receiver<Inbound>,
    state: Arc<Mutex<State>>,
    session: SessionTx,
    upstream: mpsc::Sender<Message>,
    timeout: Option<Duration>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let inbound = tokio::select! {
            i = rx.recv() => i,
            _ = tick.tick(), if timeout.is_some() => {
                for (id, msg) in expired(&state, timeout) {
                    let _ = upstream.try_send(cancelled(&id, "timed out"));
                    let _ = session.send(Outgoing::new(msg, Some(id))).await;
                }
                continue;
            }
        };
        match inbound {
            Some(Inbound::Message { msg, related }) => {
                let related = {
                    let Ok(mut st) = state.lock() else { return };
                    note_inbound(&mut st, &msg, related, timeout)
                };
                if msg.is_response() && related.is_none() {
                    // An answer to nothing in flight: a request that timed out or was
                    // cancelled (its client has had its answer), or the era probe's.
                    tracing::debug!("dropped an answer to no request in flight");
                    continue;
                }
                if session.send(Outgoing::new(msg, related)).await.is_err() {
                    return;
                }
            }
            Some(Inbound::Closed(reason)) => {
                fail_all(&state, &session, &reason).await;
                return;
            }
            None => {
                fail_all(&state, &session, "the server link ended").await;
                return;
            }
        }
    }
}

async fn fail_all(state: &Mutex<State>, session: &SessionTx, reason: &str) {
    let ids: Vec<Id> = match state.lock() {
        Ok(mut st) => {
            st.closed = Some(reason.to_owned());
            st.pending.drain().map(|(id, _)| id).collect()
        }
        Err(_) => return,
    };
    for id in ids {
        let msg = Message::error(id.clone(), code::UPSTREAM_UNAVAILABLE, reason, None);
        let _ = session.send(Outgoing::new(msg, Some(id))).await;
    }
}

/// Account for a message from the server; return the client request it relates to.
fn note_inbound(
    st: &mut State,
    msg: &Message,
    related: Option<Id>,
    timeout: Option<Duration>,
) -> Option<Id> {
    if msg.is_response() {
        let id = msg.id()?;
        st.pending.remove(&id)?;
        return Some(id);
    }
    if msg.method() == Some("notifications/progress") {
        let token = msg.notification_progress_token()?;
        let (id, p) = st
            .pending
            .iter_mut()
            .find(|(_, p)| p.progress.as_ref() == Some(&token))?;
        p.deadline = timeout.map(|t| Instant::now() + t);
        return Some(id.clone());
    }
    if related.is_some() {
        if let Some(p) = related.as_ref().and_then(|r| st.pending.get_mut(r)) {
            p.deadline = timeout.map(|t| Instant::now() + t);
        }
        return related;
    }
    if msg.is_request() {
        // A server request over a wire that does not say why: the latest request in flight.
        let (id, p) = st.pending.iter_mut().max_by_key(|(_, p)| p.seq)?;
        p.deadline = timeout.map(|t| Instant::now() + t);
        return Some(id.clone());
    }
    None
}

fn expired(state: &Mutex<State>, timeout: Option<Duration>) -> Vec<(Id, Message)> {
    let Some(t) = timeout else { return vec![] };
    let now = Instant::now();
    let Ok(mut st) = state.lock() else {
        return vec![];
    };
    let ids: Vec<Id> = st
        .pending
        .iter()
        .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
        .map(|(id, _)| id.clone())
        .collect();
    ids.into_iter()
        .map(|id| {
            st.pending.remove(&id);
            let msg = Message::error(
                id.clone(),
                code::UPSTREAM_TIMEOUT,
                &format!(
                    "the server did not answer within {}s (--timeout)",
                    t.as_secs()
                ),
                None,
            );
            (id, msg)
        })
        .collect()
}
