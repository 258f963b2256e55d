//! HTTP+SSE for clients (revision 2024-11-05): `GET /sse` opens a session whose stream first
//! names the endpoint to POST to (`/messages?sessionId=…`), then carries every message.
//! The session, and whatever it has in flight, ends when the stream closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::streamable::read_limited;
use super::{AppState, sse_body};
use crate::jsonrpc::Message;
use crate::route::queue::QueueRx;
use crate::route::{Route, SessionTx, client_queue};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Route>>>,
    /// Batches of requests whose answers go out together, by session.
    batches: Mutex<HashMap<String, Arc<Batches>>>,
    /// Who opened each session, when the proxy knows.
    owners: Mutex<HashMap<String, Arc<crate::access::Identity>>>,
}

/// The batches of one SSE session still waiting for answers: each is answered in one event,
/// as one JSON array, once all its requests are answered.
#[derive(Default)]
struct Batches {
    open: Mutex<Vec<Batch>>,
}

struct Batch {
    waiting: std::collections::HashSet<crate::jsonrpc::Id>,
    answers: Vec<Message>,
}

impl Batches {
    /// Keep `m` if it answers a request of an open batch; the whole batch when it was the
    /// last answer it waited for.
    fn take(&self, m: Message) -> Result<Option<Vec<Message>>, Message> {
        if !m.is_response() {
            return Err(m);
        }
        let Some(id) = m.id() else { return Err(m) };
        let Ok(mut open) = self.open.lock() else {
            return Err(m);
        };
        let Some(at) = open.iter().position(|b| b.waiting.contains(&id)) else {
            return Err(m);
        };
        let b = &mut open[at];
        b.waiting.remove(&id);
        b.answers.push(m);
        if b.waiting.is_empty() {
            return Ok(Some(open.remove(at).answers));
        }
        Ok(None)
    }
}

impl Sessions {
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub async fn close_all(&self) {
        let all: Vec<Arc<Route>> = self
            .map
            .lock()
            .map(|mut m| m.drain().map(|(_, r)| r).collect())
            .unwrap_or_default();
        for r in all {
            r.close().await;
        }
    }
}

/// Ends the session when its stream is dropped (the client went away).
struct SessionEnd {
    state: Arc<AppState>,
    id: String,
}

impl Drop for SessionEnd {
    fn drop(&mut self) {
        if let Ok(mut b) = self.state.sse.batches.lock() {
            b.remove(&self.id);
        }
        if let Ok(mut o) = self.state.sse.owners.lock() {
            o.remove(&self.id);
        }
        let route = self
            .state
            .sse
            .map
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&self.id));
        if let Some(route) = route {
            tracing::debug!(session = %self.id, "SSE client disconnected");
            tokio::spawn(async move { route.close().await });
        }
    }
}

pub async fn connect(
    State(state): State<Arc<AppState>>,
    caller: super::streamable::CallerExt,
    headers: HeaderMap,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    if !(accept.contains("text/event-stream") || accept.contains("*/*")) {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: Accept must list text/event-stream",
        )
            .into_response();
    }
    if let Err(full) = super::make_room(&state) {
        return full;
    }
    let (tx, rx) = client_queue(state.options.client_buffer);
    let ended = tx.ended();
    let gate = super::streamable::gate_for(&state, &caller);
    let owner = gate.as_ref().map(|g| g.caller().identity.clone());
    let gate_of_session = gate.clone();
    let meter = super::streamable::meter_for(&state);
    let meter_of_session = meter.clone();
    let route = match state
        .backend
        .open_gated(
            SessionTx::coalesced(SessionTx::Queue(tx.clone())),
            state.curation.as_ref(),
            gate,
            meter,
        )
        .await
    {
        Ok(r) => Arc::new(r),
        Err(e) => {
            crate::warn_throttled!(
                "open-failed",
                "a client's session could not reach its server: {e}"
            );
            return (
                StatusCode::BAD_GATEWAY,
                format!("cannot reach the server: {e}"),
            )
                .into_response();
        }
    };
    let id = super::new_session_id();
    if let Some(g) = gate_of_session {
        g.set_session(&id);
    }
    if let Some(m) = meter_of_session {
        m.set_session(&id);
    }
    if let Some(o) = owner
        && let Ok(mut m) = state.sse.owners.lock()
    {
        m.insert(id.clone(), o);
    }
    if let Ok(mut m) = state.sse.map.lock() {
        m.insert(id.clone(), route);
    }
    let batches: Arc<Batches> = Default::default();
    if let Ok(mut b) = state.sse.batches.lock() {
        b.insert(id.clone(), batches.clone());
    }
    // A client that stops reading overflows its queue: its session ends then, whether or not
    // its stream is still being written.
    {
        let state = state.clone();
        let id = id.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = ended.cancelled() => {}
                _ = state.shutdown.cancelled() => return,
            }
            let route = state.sse.map.lock().ok().and_then(|mut m| m.remove(&id));
            if let Some(route) = route {
                if let Some(why) = tx.end_reason().filter(|w| w != "closed") {
                    crate::warn_throttled!(
                        "sse-not-reading",
                        "SSE session {id} ended: {why} (--client-buffer)"
                    );
                }
                route.close().await;
            }
        });
    }
    let endpoint = format!("{}/messages?sessionId={id}", state.options.base_path);
    let end = SessionEnd {
        state: state.clone(),
        id,
    };
    let first = sse_body::event(Some("endpoint"), None, &endpoint);
    struct St {
        rx: QueueRx,
        first: Option<Bytes>,
        out: std::collections::VecDeque<Bytes>,
        batches: Arc<Batches>,
        end: SessionEnd,
    }
    let stream = futures_util::stream::unfold(
        St {
            rx,
            first: Some(first),
            out: Default::default(),
            batches,
            end,
        },
        |mut st| async move {
            if let Some(f) = st.first.take() {
                return Some((Ok(f), st));
            }
            if let Some(b) = st.out.pop_front() {
                return Some((Ok(b), st));
            }
            let shutdown = st.end.state.shutdown.clone();
            tokio::select! {
                o = st.rx.recv() => {
                    let o = o?;
                    let mut out = crate::jsonrpc::Pieces::new();
                    let add = |m: Message, out: &mut crate::jsonrpc::Pieces| match st.batches.take(m) {
                        Err(m) => sse_body::message_event(out, None, &m),
                        Ok(Some(all)) => sse_body::batch_event(out, &all),
                        Ok(None) => {}
                    };
                    add(o.msg, &mut out);
                    while let Some(more) = st.rx.try_recv() {
                        add(more.msg, &mut out);
                    }
                    if out.is_empty() {
                        // Held for its batch: nothing to write yet.
                        return Some((Ok(Bytes::new()), st));
                    }
                    st.out = out.into_parts().into();
                    let b = st.out.pop_front()?;
                    Some((Ok(b), st))
                }
                _ = tokio::time::sleep(sse_body::KEEP_ALIVE) => Some((Ok(Bytes::from_static(sse_body::PING)), st)),
                _ = shutdown.cancelled() => None,
            }
        },
    );
    sse_body::response(stream, &[])
}

#[derive(serde::Deserialize)]
pub struct SessionQuery {
    #[serde(rename = "sessionId", alias = "session_id")]
    session_id: Option<String>,
}

pub async fn message(
    State(state): State<Arc<AppState>>,
    caller: super::streamable::CallerExt,
    Query(q): Query<SessionQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(id) = q.session_id else {
        return (
            StatusCode::BAD_REQUEST,
            "Bad Request: sessionId is required",
        )
            .into_response();
    };
    // Another identity's session does not exist for this caller.
    let owner = state
        .sse
        .owners
        .lock()
        .ok()
        .and_then(|o| o.get(&id).cloned());
    let who = caller.as_ref().map(|axum::Extension(c)| c.identity.clone());
    let mine = match (owner, who) {
        (None, None) => true,
        (Some(a), Some(b)) => *a == *b,
        _ => false,
    };
    let route = state
        .sse
        .map
        .lock()
        .ok()
        .and_then(|m| m.get(&id).cloned())
        .filter(|_| mine);
    let Some(route) = route else {
        return (StatusCode::NOT_FOUND, "Session not found").into_response();
    };
    let body = match read_limited(&state.options, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match Message::parse(body) {
        Ok(p) => {
            if let crate::jsonrpc::Payload::Batch(all) = &p {
                let waiting: std::collections::HashSet<_> = all
                    .iter()
                    .filter(|m| m.is_request())
                    .filter_map(Message::id)
                    .collect();
                let batches = state
                    .sse
                    .batches
                    .lock()
                    .ok()
                    .and_then(|b| b.get(&id).cloned());
                if let Some(b) = batches
                    && !waiting.is_empty()
                    && let Ok(mut open) = b.open.lock()
                {
                    open.push(Batch {
                        waiting,
                        answers: vec![],
                    });
                }
            }
            for m in p.into_messages() {
                route.send(m).await;
            }
            (StatusCode::ACCEPTED, "Accepted").into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            e.to_response().to_json(),
        )
            .into_response(),
    }
}
