//! Streamable HTTP for clients (revisions 2025-03-26 to 2025-11-25) at `/mcp`.
//!
//! Each session keeps its outgoing messages in per-stream buffers: one stream per POST that
//! carries requests, and the standalone stream that GET attaches to. A writer sends a
//! stream's events as they come; a client that lost a stream reconnects with
//! `Last-Event-ID` and gets the rest. A POST whose first outgoing message is its own answer
//! is answered as plain JSON, with no stream at all.
#![allow(clippy::result_large_err)] // handlers return ready-made error responses

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{AppState, sse_body};
use crate::jsonrpc::{Id, Message, Payload, code};
use crate::route::hub::LEGACY_VERSIONS;
use crate::route::{Filed, Outgoing, Route, SessionTx};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    /// Remove the session idle the longest (no request waiting, no stream open), if any.
    pub fn evict_idle(&self) -> Option<Arc<Session>> {
        let mut map = self.map.lock().ok()?;
        let id = map
            .values()
            .filter(|s| s.idle())
            .min_by_key(|s| s.last_active())
            .map(|s| s.id.clone())?;
        map.remove(&id)
    }

    fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.map.lock().ok()?.get(id).cloned()
    }
    fn insert(&self, s: Arc<Session>) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(s.id.clone(), s);
        }
    }
    fn remove(&self, id: &str) -> Option<Arc<Session>> {
        self.map.lock().ok()?.remove(id)
    }
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub async fn close_all(&self) {
        let all: Vec<Arc<Session>> = self
            .map
            .lock()
            .map(|mut m| m.drain().map(|(_, s)| s).collect())
            .unwrap_or_default();
        for s in all {
            s.close().await;
        }
    }
}

struct StreamBuf {
    /// (sequence number, message, its size in bytes)
    events: VecDeque<(u64, Arc<Message>, usize)>,
    next_seq: u64,
    /// Events before this one have been handed to a connection (kept only for resumption).
    delivered: u64,
    /// Requests of this stream's POST not answered yet (empty for the standalone stream).
    outstanding: HashSet<Id>,
    finished: bool,
    notify: Arc<Notify>,
    /// Bumped when a new writer takes the stream over; older writers stop.
    generation: u64,
}

impl StreamBuf {
    fn new(outstanding: HashSet<Id>) -> Self {
        StreamBuf {
            events: VecDeque::new(),
            next_seq: 0,
            delivered: 0,
            outstanding,
            finished: false,
            notify: Arc::new(Notify::new()),
            generation: 0,
        }
    }
}

struct Inner {
    streams: HashMap<u64, StreamBuf>,
    waiters: HashMap<Id, u64>,
    next_stream: u64,
    /// Bytes of every stream's events.
    bytes: usize,
}

impl Inner {
    /// Forget stream `sid` and what it held.
    fn remove_stream(&mut self, sid: u64) -> Option<StreamBuf> {
        let buf = self.streams.remove(&sid)?;
        self.bytes -= buf.events.iter().map(|e| e.2).sum::<usize>();
        Some(buf)
    }

    /// Make room within `limit` bytes by dropping events already delivered (kept only for
    /// resumption), oldest first. Whether what is left fits: it does when it is one message.
    fn trim(&mut self, limit: usize) -> bool {
        if self.bytes <= limit {
            return true;
        }
        let mut sids: Vec<u64> = self.streams.keys().copied().collect();
        sids.sort_unstable();
        for sid in sids {
            let Some(b) = self.streams.get_mut(&sid) else {
                continue;
            };
            while self.bytes > limit
                && b.events
                    .front()
                    .is_some_and(|(seq, _, _)| *seq < b.delivered)
            {
                if let Some((_, _, n)) = b.events.pop_front() {
                    self.bytes -= n;
                }
            }
        }
        let waiting: usize = self
            .streams
            .values()
            .map(|b| {
                b.events
                    .iter()
                    .filter(|(seq, _, _)| *seq >= b.delivered)
                    .count()
            })
            .sum();
        self.bytes <= limit || waiting <= 1
    }
}

const STANDALONE: u64 = 0;
/// The first revision whose clients accept an SSE event with empty data (a priming event).
const PRIMING_SINCE: &str = "2025-11-25";

pub struct Session {
    id: String,
    route: Mutex<Option<Arc<Route>>>,
    inner: Mutex<Inner>,
    last_active: Mutex<Instant>,
    writers: std::sync::atomic::AtomicUsize,
    closed: CancellationToken,
    replay_events: usize,
    /// Most bytes its streams may hold (`--client-buffer`).
    client_buffer: usize,
    /// Who opened it, when the proxy knows (every later request must be from the same).
    owner: Option<Arc<crate::access::Identity>>,
}

impl Session {
    fn route(&self) -> Option<Arc<Route>> {
        self.route.lock().ok()?.clone()
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_active.lock() {
            *t = Instant::now();
        }
    }

    pub async fn close(&self) {
        self.closed.cancel();
        let route = self.route.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = route {
            r.close().await;
        }
    }

    /// Put a message from the backend on the stream it belongs to.
    fn dispatch(&self, o: Outgoing) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Inner {
            streams, waiters, ..
        } = &mut *inner;
        let msg = o.msg;
        let target = if msg.is_response() {
            let Some(id) = msg.id() else { return };
            let Some(s) = waiters.remove(&id) else {
                tracing::debug!(%id, "answer for a request nobody waits for; dropped");
                return;
            };
            if let Some(buf) = streams.get_mut(&s) {
                buf.outstanding.remove(&id);
                if buf.outstanding.is_empty() {
                    buf.finished = true;
                }
            }
            s
        } else {
            o.related
                .and_then(|r| waiters.get(&r).copied())
                .unwrap_or(STANDALONE)
        };
        let Some(buf) = streams.get_mut(&target) else {
            return;
        };
        let size = msg.wire_len();
        buf.events.push_back((buf.next_seq, Arc::new(msg), size));
        buf.next_seq += 1;
        let mut dropped = 0;
        if buf.events.len() > self.replay_events
            && let Some((seq, _, n)) = buf.events.pop_front()
        {
            dropped = n;
            if seq >= buf.delivered
                && let Some(m) = crate::telemetry::get()
            {
                m.replay_drops.inc();
            }
            if target == STANDALONE && seq >= buf.delivered {
                crate::warn_throttled!(
                    format!("replay:{}", self.id),
                    "session {}: the client is not reading its stream; dropped the oldest message (--replay-buffer)",
                    self.id
                );
            }
        }
        buf.notify.notify_one();
        inner.bytes = inner.bytes + size - dropped;
        if !inner.trim(self.client_buffer) {
            // The client is not reading: its session ends, and what it held goes at once.
            let held = inner.bytes;
            let sids: Vec<u64> = inner.streams.keys().copied().collect();
            for sid in sids {
                if let Some(b) = inner.streams.get_mut(&sid) {
                    b.events.clear();
                    b.notify.notify_one();
                }
            }
            inner.bytes = 0;
            drop(inner);
            crate::warn_throttled!(
                "session-not-reading",
                "session {}: the client is not reading its streams ({held} bytes waiting, more than --client-buffer {}); ending its session",
                self.id,
                self.client_buffer
            );
            self.end();
        }
    }

    /// End the session from within (it overflowed): its streams stop, its requests are
    /// cancelled upstream, and its client gets 404 from now on.
    fn end(&self) {
        self.closed.cancel();
        let route = self.route.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = route {
            tokio::spawn(async move { r.close().await });
        }
    }

    fn open_stream(&self, requests: HashSet<Id>) -> u64 {
        let Ok(mut inner) = self.inner.lock() else {
            return u64::MAX;
        };
        inner.next_stream += 1;
        let sid = inner.next_stream;
        for id in &requests {
            inner.waiters.insert(id.clone(), sid);
        }
        inner.streams.insert(sid, StreamBuf::new(requests));
        if inner.streams.len() > crate::limits::get().max_streams {
            // Forget the oldest finished stream nobody came back for.
            if let Some(old) = inner
                .streams
                .iter()
                .filter(|(k, b)| **k != STANDALONE && b.finished)
                .map(|(k, _)| *k)
                .min()
            {
                inner.remove_stream(old);
            }
        }
        sid
    }

    /// Whether nothing of the session is going on: no request waits, no stream is open.
    pub fn idle(&self) -> bool {
        self.writers.load(std::sync::atomic::Ordering::Relaxed) == 0 && !self.busy()
    }

    /// When the client last did anything.
    pub fn last_active(&self) -> Instant {
        self.last_active
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|_| Instant::now())
    }

    /// Whether a request of the client's is still waiting for its answer.
    fn busy(&self) -> bool {
        self.inner
            .lock()
            .map(|i| !i.waiters.is_empty())
            .unwrap_or(false)
    }

    /// The ids among `ids` that are in flight already.
    fn in_flight(&self, ids: &[Id]) -> Vec<Id> {
        let Ok(inner) = self.inner.lock() else {
            return vec![];
        };
        ids.iter()
            .filter(|id| inner.waiters.contains_key(*id))
            .cloned()
            .collect()
    }

    /// The client cancelled request `id`: no answer will come, so its stream must not wait
    /// for one.
    fn cancelled(&self, id: &Id) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Some(sid) = inner.waiters.remove(id) else {
            return;
        };
        if let Some(b) = inner.streams.get_mut(&sid) {
            b.outstanding.remove(id);
            if b.outstanding.is_empty() {
                b.finished = true;
            }
            b.notify.notify_one();
        }
    }

    fn drop_stream(&self, sid: u64) {
        if let Ok(mut inner) = self.inner.lock()
            && let Some(buf) = inner.remove_stream(sid)
        {
            for id in buf.outstanding {
                inner.waiters.remove(&id);
            }
        }
    }
}

/// Remove sessions that nobody used for `--session-timeout`.
pub fn spawn_reaper(state: Arc<AppState>) {
    tokio::spawn(async move {
        let timeout = state.options.session_timeout;
        let mut tick = tokio::time::interval(Duration::from_secs(10).min(timeout));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = state.shutdown.cancelled() => return,
            }
            let stale: Vec<String> = state
                .streamable
                .map
                .lock()
                .map(|m| {
                    m.values()
                        .filter(|s| {
                            s.writers.load(std::sync::atomic::Ordering::Relaxed) == 0
                                && !s.busy()
                                && s.last_active
                                    .lock()
                                    .map(|t| t.elapsed() > timeout)
                                    .unwrap_or(false)
                        })
                        .map(|s| s.id.clone())
                        .collect()
                })
                .unwrap_or_default();
            for id in stale {
                if let Some(s) = state.streamable.remove(&id) {
                    tracing::info!(session = %id, "session expired after {}s idle", timeout.as_secs());
                    s.close().await;
                }
            }
        }
    });
}

// === errors ===

fn http_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = Message::error(Id::null(), code, message, None).to_json();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn accepts(headers: &HeaderMap, essence: &str) -> bool {
    let Some(accept) = header_str(headers, "accept") else {
        return false;
    };
    accept.split(',').any(|part| {
        let t = part.split(';').next().unwrap_or("").trim();
        t.eq_ignore_ascii_case(essence)
            || t == "*/*"
            || (t.ends_with("/*") && essence.starts_with(&t[..t.len() - 1]))
    })
}

fn check_version(headers: &HeaderMap) -> Result<(), Response> {
    match header_str(headers, VERSION_HEADER) {
        Some(v) if !LEGACY_VERSIONS.contains(&v) => Err(http_error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            &format!(
                "Bad Request: unsupported MCP-Protocol-Version `{v}` (supported: {})",
                LEGACY_VERSIONS.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

/// Read the request body: at most `--max-message-size` bytes, within `--body-timeout`. A body
/// that declares its length is read into one buffer of that size (no copy on growth); a body
/// that comes in one piece is kept as it came.
pub async fn read_limited(
    options: &super::HttpOptions,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Response> {
    use futures_util::StreamExt;
    let max = options.max_message_size;
    let too_large = || {
        http_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::MESSAGE_TOO_LARGE,
            &format!("message exceeds --max-message-size ({max} bytes)"),
        )
    };
    let declared =
        header_str(headers, "content-length").and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                return Err(http_error(
                    StatusCode::BAD_REQUEST,
                    code::INVALID_REQUEST,
                    "Bad Request: the request body broke off",
                ));
            };
            if buf.is_empty() && declared == Some(chunk.len()) {
                return Ok(chunk);
            }
            if buf.len() + chunk.len() > max {
                return Err(too_large());
            }
            if buf.capacity() == 0 {
                buf.reserve_exact(declared.unwrap_or(chunk.len()).max(chunk.len()));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    match tokio::time::timeout(options.body_timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(http_error(
            StatusCode::REQUEST_TIMEOUT,
            code::INVALID_REQUEST,
            &format!(
                "Request Timeout: the body did not arrive within {}s (--body-timeout)",
                options.body_timeout.as_secs()
            ),
        )),
    }
}

/// The caller of a request, when the proxy checks who calls.
pub type CallerExt = Option<axum::Extension<crate::access::Caller>>;

/// Which server this is (`None` at the root) and, for the merged view, its catalog.
fn server_of(state: &AppState) -> (Option<String>, Option<Arc<crate::route::catalog::Catalog>>) {
    let server = state
        .options
        .base_path
        .strip_prefix("/servers/")
        .map(str::to_owned);
    let catalog = match &state.backend {
        crate::route::Backend::Catalog(c) => Some(c.clone()),
        _ => None,
    };
    (server, catalog)
}

/// The gate for a new session of `caller` on this server.
pub fn gate_for(state: &AppState, caller: &CallerExt) -> Option<Arc<crate::access::Gate>> {
    let axum::Extension(c) = caller.as_ref()?;
    let (server, catalog) = server_of(state);
    Some(crate::access::Gate::new(c.clone(), server, catalog))
}

/// The meter for a new session on this server, when metrics are on.
pub fn meter_for(state: &AppState) -> Option<Arc<crate::telemetry::Meter>> {
    if crate::telemetry::get().is_none() && !crate::telemetry::trace::on() {
        return None;
    }
    let (server, catalog) = server_of(state);
    Some(crate::telemetry::Meter::new(server, catalog))
}

/// Whether `caller` is the one who opened `session`.
fn owned_by(session: &Session, caller: &CallerExt) -> bool {
    let who = caller.as_ref().map(|axum::Extension(c)| &c.identity);
    match (&session.owner, who) {
        (None, None) => true,
        (Some(a), Some(b)) => a == b || **a == **b,
        _ => false,
    }
}

fn session_of(
    state: &AppState,
    headers: &HeaderMap,
    caller: &CallerExt,
) -> Result<Arc<Session>, Response> {
    let Some(id) = headers.get(SESSION_HEADER) else {
        return Err(http_error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
        ));
    };
    let Ok(id) = id.to_str() else {
        return Err(http_error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: the Mcp-Session-Id header is not a valid session id",
        ));
    };
    let not_found = || {
        http_error(
            StatusCode::NOT_FOUND,
            code::INVALID_REQUEST,
            "Session not found (it ended or expired); initialize a new one",
        )
    };
    let session = state.streamable.get(id).ok_or_else(not_found)?;
    // Another identity's session does not exist for this caller.
    if !owned_by(&session, caller) {
        return Err(not_found());
    }
    if session.closed.is_cancelled() {
        // Ended from within (its client stopped reading): gone for good.
        state.streamable.remove(id);
        return Err(not_found());
    }
    Ok(session)
}

// === handlers ===

pub async fn post(
    State(state): State<Arc<AppState>>,
    caller: CallerExt,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !header_str(&headers, "content-type").is_some_and(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/json")
    }) {
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_REQUEST,
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }
    if !(accepts(&headers, "application/json") && accepts(&headers, "text/event-stream")) {
        return http_error(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: Accept must list application/json and text/event-stream",
        );
    }
    let body = match read_limited(&state.options, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let payload = match Message::parse(body) {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                e.to_response().to_json(),
            )
                .into_response();
        }
    };
    let is_batch = matches!(payload, Payload::Batch(_));
    let messages = payload.into_messages();
    let gate = gate_for(&state, &caller);
    // A call the caller's token lacks the scope for: 403, naming the scope (step-up).
    if let Some(g) = &gate
        && matches!(g.caller().identity.via, "jwt" | "introspection")
        && let Some(need) = messages.iter().find_map(|m| g.scope_needed(m))
    {
        let c = g.caller();
        let base = c.access.base(&headers);
        let path = format!("{}/mcp", state.options.base_path);
        return c
            .access
            .insufficient(&base, &path, &c.identity.scopes, &need);
    }
    if is_modern_request(&headers, &messages) {
        return modern_post(&state, &headers, messages, is_batch, gate).await;
    }
    let has_init = messages
        .iter()
        .any(|m| m.is_request() && m.method() == Some("initialize"));
    if has_init && messages.len() > 1 {
        return http_error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: initialize must be sent alone",
        );
    }
    if !has_init && let Err(r) = check_version(&headers) {
        return r;
    }
    if has_init
        && !state.options.stateless
        && let Err(full) = super::make_room(&state)
    {
        return full;
    }
    let (session, new_session) = if state.options.stateless || has_init {
        match new_session(&state, gate).await {
            Ok(s) => (s, true),
            Err(why) => {
                crate::warn_throttled!(
                    "open-failed",
                    "a client's session could not reach its server: {why}"
                );
                let answers: Vec<Message> = messages.iter().filter_map(|m| why.answer(m)).collect();
                return json_response(StatusCode::OK, &answers, is_batch, None);
            }
        }
    } else {
        match session_of(&state, &headers, &caller) {
            Ok(s) => (s, false),
            Err(r) => return r,
        }
    };
    session.touch();
    let ephemeral = state.options.stateless;
    let session_header = (new_session && !ephemeral).then(|| session.id.clone());
    if new_session && !ephemeral {
        state.streamable.insert(session.clone());
    }
    answer(
        &state,
        &headers,
        session,
        messages,
        is_batch,
        ephemeral,
        session_header,
    )
    .await
}

/// Send a POST's messages along the session's route and answer it: 202 for notifications
/// only, else plain JSON when the first thing to say is the single answer, else an SSE stream.
async fn answer(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    session: Arc<Session>,
    messages: Vec<Message>,
    is_batch: bool,
    ephemeral: bool,
    session_header: Option<String>,
) -> Response {
    let ids: Vec<Id> = messages
        .iter()
        .filter(|m| m.is_request())
        .filter_map(Message::id)
        .collect();
    let requests: HashSet<Id> = ids.iter().cloned().collect();
    // An id already in flight (or twice in one batch) could not be told apart from the other
    // by its answer: refused, naming it.
    let mut dup = session.in_flight(&ids);
    if requests.len() < ids.len() {
        let mut seen = HashSet::new();
        dup.extend(ids.iter().filter(|id| !seen.insert(*id)).cloned());
    }
    if !dup.is_empty() {
        dup.sort();
        dup.dedup();
        let errors: Vec<Message> = dup
            .into_iter()
            .map(|id| {
                let why = format!("request id {id} is already in flight in this session; use a new id for each request");
                Message::error(id, code::INVALID_REQUEST, &why, None)
            })
            .collect();
        return json_response(
            StatusCode::BAD_REQUEST,
            &errors,
            errors.len() > 1 || is_batch,
            None,
        );
    }
    let Some(route) = session.route() else {
        return http_error(
            StatusCode::NOT_FOUND,
            code::INVALID_REQUEST,
            "Session not found",
        );
    };
    for m in &messages {
        if m.method() == Some("notifications/cancelled")
            && let Some(id) = m.cancelled_request_id()
        {
            session.cancelled(&id);
        }
    }
    if requests.is_empty() {
        for m in messages {
            route.send(m).await;
        }
        if ephemeral {
            session.close().await;
        }
        return StatusCode::ACCEPTED.into_response();
    }
    let single = !is_batch && requests.len() == 1;
    let sid = session.open_stream(requests);
    let guard = StreamGuard {
        session: session.clone(),
        sid,
        armed: true,
        ephemeral,
    };
    for m in messages {
        route.send(m).await;
    }
    // Wait for the first outgoing message of this POST to choose JSON or SSE.
    let notify = session
        .inner
        .lock()
        .ok()
        .and_then(|i| i.streams.get(&sid).map(|b| b.notify.clone()));
    let Some(notify) = notify else {
        return http_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL_ERROR,
            "stream vanished",
        );
    };
    loop {
        let first = session.inner.lock().ok().and_then(|i| {
            let b = i.streams.get(&sid)?;
            Some((
                b.events.front().map(|(_, m, _)| m.clone()),
                b.finished,
                b.events.len(),
            ))
        });
        match first {
            None => return session_ended(&ids),
            Some((None, true, _)) => {
                // Every request of this POST was cancelled: nothing will come.
                let mut guard = guard;
                guard.finish();
                session.drop_stream(sid);
                return sse_body::response(futures_util::stream::empty(), &[]);
            }
            Some((Some(m), true, 1)) if single && m.is_response() => {
                let mut guard = guard;
                guard.finish();
                session.drop_stream(sid);
                if ephemeral {
                    session.close().await;
                }
                return json_response(
                    StatusCode::OK,
                    std::slice::from_ref(&m),
                    false,
                    session_header,
                );
            }
            Some((Some(_), _, _)) => break,
            Some((None, _, _)) => {}
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = session.closed.cancelled() => return session_ended(&ids),
        }
    }
    notify.notify_one();
    let mut guard = guard;
    guard.finish();
    // Clients of 2025-11-25 and later get a priming event first (an id and empty data), so
    // that they can resume the stream even if it breaks before the first message.
    let prime = header_str(headers, VERSION_HEADER).is_some_and(|v| v >= PRIMING_SINCE);
    let stream = writer(state.clone(), session.clone(), sid, 0, ephemeral, prime);
    let mut extra = vec![];
    if let Some(id) = session_header {
        extra.push((SESSION_HEADER, id));
    }
    sse_body::response(stream, &extra)
}

// === modern clients (2026-07-28: stateless, no handshake) ===

/// A request of the stateless era: its `MCP-Protocol-Version` header, or (without a session)
/// the version in its `_meta`, names 2026-07-28 or later.
fn is_modern_request(headers: &HeaderMap, messages: &[Message]) -> bool {
    if let Some(v) = header_str(headers, VERSION_HEADER) {
        return crate::era::is_modern(v);
    }
    header_str(headers, SESSION_HEADER).is_none()
        && messages.first().is_some_and(|m| {
            crate::era::RequestMeta::of(m)
                .version
                .is_some_and(|v| crate::era::is_modern(&v))
        })
}

/// Serve one modern request: validate it against its headers, then let the era front answer
/// it, as plain JSON when the answer is all there is to say, else as an SSE stream.
async fn modern_post(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    messages: Vec<Message>,
    is_batch: bool,
    gate: Option<Arc<crate::access::Gate>>,
) -> Response {
    let msg = match <[Message; 1]>::try_from(messages) {
        Ok([m]) if !is_batch => m,
        _ => {
            return http_error(
                StatusCode::BAD_REQUEST,
                code::INVALID_REQUEST,
                "Bad Request: revision 2026-07-28 has no batches",
            );
        }
    };
    let id = msg.id().unwrap_or_else(crate::jsonrpc::Id::null);
    let name = header_str(headers, "mcp-name").map(crate::era::decode_header_value);
    let seen = crate::era::Headers {
        http: true,
        version: header_str(headers, VERSION_HEADER),
        method: header_str(headers, "mcp-method"),
        name: name.as_deref(),
    };
    let meta = match crate::era::validate(&msg, &seen) {
        Ok(m) => m,
        Err(refusal) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &[refusal.to_message(id)],
                false,
                None,
            );
        }
    };
    // A header given twice reads as its values joined (RFC 9110), which matches no argument.
    let param = |name: &str| {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(crate::era::decode_header_value)
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    };
    if let Err(refusal) = state.modern.check_param_headers(&msg, param) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &[refusal.to_message(id)],
            false,
            None,
        );
    }
    if !msg.is_request() {
        // Closing a response stream is how a modern client cancels; a notification has
        // nothing left to act on.
        return StatusCode::ACCEPTED.into_response();
    }
    // The caller's gate: a refusal answers at once; the answer passes through it (and the
    // meter).
    let meter = meter_for(state);
    let mut msg = msg;
    let ids = meter.as_ref().and_then(|m| m.sent(&mut msg));
    if let Some(g) = &gate
        && let Err(refusal) = g.admit(&msg)
    {
        if let Some(m) = &meter {
            m.answered(&refusal);
        }
        return json_response(modern_status(&refusal), &[refusal], false, None);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Message>(64);
    let front = state.modern.clone();
    let rx = match (gate, meter) {
        (None, None) => {
            tokio::spawn(async move { front.handle(msg, meta, tx).await });
            rx
        }
        (g, mt) => {
            let (gated_tx, mut inner_rx) = tokio::sync::mpsc::channel::<Message>(64);
            let handled = async move { front.handle(msg, meta, gated_tx).await };
            match ids {
                Some((trace_id, span_id)) if tracing::enabled!(tracing::Level::DEBUG) => {
                    use tracing::Instrument;
                    tokio::spawn(
                        handled.instrument(tracing::debug_span!("mcp", %trace_id, %span_id)),
                    );
                }
                _ => {
                    tokio::spawn(handled);
                }
            }
            tokio::spawn(async move {
                loop {
                    // A client that closes its stream cancels the call: the front sees its
                    // channel close as soon as this one does.
                    let mut m = tokio::select! {
                        m = inner_rx.recv() => match m {
                            Some(m) => m,
                            None => break,
                        },
                        _ = tx.closed() => break,
                    };
                    if let Some(g) = &g {
                        g.answered(&mut m);
                    }
                    if let Some(mt) = &mt {
                        mt.answered(&m);
                    }
                    if tx.send(m).await.is_err() {
                        break;
                    }
                }
            });
            rx
        }
    };
    let mut rx = rx;
    let Some(first) = rx.recv().await else {
        return http_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL_ERROR,
            "the request ended without an answer",
        );
    };
    if first.is_response() {
        return json_response(modern_status(&first), &[first], false, None);
    }
    struct St {
        first: Option<Message>,
        rx: tokio::sync::mpsc::Receiver<Message>,
        done: bool,
        out: std::collections::VecDeque<Bytes>,
    }
    let st = St {
        first: Some(first),
        rx,
        done: false,
        out: Default::default(),
    };
    let events = futures_util::stream::unfold(st, |mut st| async move {
        if let Some(b) = st.out.pop_front() {
            return Some((Ok(b), st));
        }
        if st.done {
            return None;
        }
        let m = match st.first.take() {
            Some(m) => m,
            None => match tokio::time::timeout(sse_body::KEEP_ALIVE, st.rx.recv()).await {
                Err(_) => return Some((Ok(Bytes::from_static(sse_body::PING)), st)),
                Ok(None) => return None,
                Ok(Some(m)) => m,
            },
        };
        let mut p = crate::jsonrpc::Pieces::new();
        sse_body::message_event(&mut p, None, &m);
        st.done = m.is_response();
        st.out = p.into_parts().into();
        let b = st.out.pop_front()?;
        Some((Ok(b), st))
    });
    sse_body::response(events, &[])
}

/// The answer to requests whose session ended before they were answered: an error for each,
/// naming it.
fn session_ended(ids: &[Id]) -> Response {
    let errors: Vec<Message> = ids
        .iter()
        .map(|id| {
            Message::error(
                id.clone(),
                code::INVALID_REQUEST,
                "Session ended before this request was answered; initialize a new one",
                None,
            )
        })
        .collect();
    json_response(StatusCode::NOT_FOUND, &errors, errors.len() != 1, None)
}

/// The HTTP status 2026-07-28 gives an answer: 404 for a method the server does not have,
/// 400 for the protocol's own refusals (header mismatch, missing capability, version).
fn modern_status(answer: &Message) -> StatusCode {
    #[derive(serde::Deserialize)]
    struct Code {
        code: i64,
    }
    let code = answer
        .error_value()
        .and_then(|e| serde_json::from_str::<Code>(e.get()).ok())
        .map(|c| c.code);
    match code {
        Some(code::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(
            crate::era::HEADER_MISMATCH
            | crate::era::MISSING_CAPABILITY
            | crate::era::UNSUPPORTED_VERSION,
        ) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// Forgets a POST's stream if the client goes away before an answer was chosen.
struct StreamGuard {
    session: Arc<Session>,
    sid: u64,
    armed: bool,
    ephemeral: bool,
}

impl StreamGuard {
    fn finish(&mut self) {
        self.armed = false;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.armed {
            self.session.drop_stream(self.sid);
            if self.ephemeral {
                let s = self.session.clone();
                tokio::spawn(async move { s.close().await });
            }
        }
    }
}

fn json_response(
    status: StatusCode,
    messages: &[Message],
    batch: bool,
    session: Option<String>,
) -> Response {
    let mut body = crate::jsonrpc::Pieces::new();
    if batch || messages.len() != 1 {
        body.text("[");
        for (i, m) in messages.iter().enumerate() {
            if i > 0 {
                body.text(",");
            }
            body.message(m);
        }
        body.text("]");
    } else {
        body.message(&messages[0]);
    }
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::new(body.into_body()),
    )
        .into_response();
    if let Some(id) = session.and_then(|s| http::HeaderValue::from_str(&s).ok()) {
        resp.headers_mut().insert(SESSION_HEADER, id);
    }
    resp
}

async fn new_session(
    state: &Arc<AppState>,
    gate: Option<Arc<crate::access::Gate>>,
) -> Result<Arc<Session>, crate::route::Unavailable> {
    let owner = gate.as_ref().map(|g| g.caller().identity.clone());
    let gate_of_session = gate.clone();
    let meter = meter_for(state);
    let meter_of_session = meter.clone();
    // Messages for the client are filed into the session's stream buffers as they come,
    // by whoever produced them (no task in between).
    let cell: Arc<std::sync::OnceLock<std::sync::Weak<Session>>> = Default::default();
    let sink = {
        let cell = cell.clone();
        SessionTx::direct(move |o: Outgoing| match cell.get() {
            // Nothing can be meant for a session that does not exist yet.
            None => Filed::Yes,
            Some(weak) => match weak.upgrade() {
                Some(s) if !s.closed.is_cancelled() => {
                    s.dispatch(o);
                    Filed::Yes
                }
                _ => Filed::Closed,
            },
        })
    };
    let route = state
        .backend
        .open_gated(
            SessionTx::coalesced(sink),
            state.curation.as_ref(),
            gate,
            meter,
        )
        .await?;
    let mut streams = HashMap::new();
    streams.insert(STANDALONE, StreamBuf::new(HashSet::new()));
    let session = Arc::new(Session {
        id: super::new_session_id(),
        route: Mutex::new(Some(Arc::new(route))),
        inner: Mutex::new(Inner {
            streams,
            waiters: HashMap::new(),
            next_stream: STANDALONE,
            bytes: 0,
        }),
        last_active: Mutex::new(Instant::now()),
        writers: Default::default(),
        closed: CancellationToken::new(),
        replay_events: state.options.replay_events.max(1),
        client_buffer: state.options.client_buffer,
        owner,
    });
    if let Some(g) = gate_of_session {
        g.set_session(&session.id);
    }
    if let Some(m) = meter_of_session {
        m.set_session(&session.id);
    }
    let _ = cell.set(Arc::downgrade(&session));
    if !state.options.stateless {
        tracing::debug!(session = %session.id, "session started");
    }
    Ok(session)
}

/// The SSE body for stream `sid` of `session`, from event `from` on.
fn writer(
    state: Arc<AppState>,
    session: Arc<Session>,
    sid: u64,
    from: u64,
    ephemeral: bool,
    prime: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let generation = session.inner.lock().ok().and_then(|mut i| {
        let b = i.streams.get_mut(&sid)?;
        b.generation += 1;
        b.notify.notify_one();
        Some(b.generation)
    });
    session
        .writers
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let counter = WriterCount(session.clone());
    struct St {
        state: Arc<AppState>,
        session: Arc<Session>,
        next: u64,
        done: bool,
        prime: bool,
        /// Parts of events taken from the stream, still to be written.
        out: std::collections::VecDeque<Bytes>,
        _count: WriterCount,
    }
    let st = St {
        state,
        session,
        next: from,
        done: generation.is_none(),
        prime,
        out: Default::default(),
        _count: counter,
    };
    futures_util::stream::unfold(st, move |mut st| async move {
        if let Some(b) = st.out.pop_front() {
            return Some((Ok(b), st));
        }
        let generation = generation?;
        if st.prime {
            // `Last-Event-ID: {sid}` resumes from the stream's first message.
            st.prime = false;
            let priming = sse_body::event(None, Some(&sid.to_string()), "");
            return Some((Ok(priming), st));
        }
        loop {
            if st.done {
                if ephemeral {
                    st.session.close().await;
                }
                return None;
            }
            let (chunk, notify) = {
                let Ok(mut inner) = st.session.inner.lock() else {
                    return None;
                };
                let b = inner.streams.get_mut(&sid)?;
                if b.generation != generation {
                    return None; // another connection took this stream over
                }
                let mut out = crate::jsonrpc::Pieces::new();
                for (seq, m, _) in b.events.iter() {
                    if *seq >= st.next {
                        let id = format!("{sid}-{seq}");
                        sse_body::message_event(&mut out, Some(&id), m);
                        st.next = seq + 1;
                    }
                }
                b.delivered = b.delivered.max(st.next);
                if b.finished && st.next >= b.next_seq {
                    st.done = true;
                    if sid != STANDALONE {
                        inner.remove_stream(sid);
                    }
                }
                (out, b_notify(&inner, sid))
            };
            if !chunk.is_empty() {
                st.session.touch();
                st.out = chunk.into_parts().into();
                let b = st.out.pop_front()?;
                return Some((Ok(b), st));
            }
            let Some(notify) = notify else {
                if st.done {
                    continue;
                }
                return None;
            };
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(sse_body::KEEP_ALIVE) => {
                    return Some((Ok(Bytes::from_static(sse_body::PING)), st));
                }
                _ = st.session.closed.cancelled() => return None,
                _ = st.state.shutdown.cancelled() => return None,
            }
        }
    })
}

fn b_notify(inner: &Inner, sid: u64) -> Option<Arc<Notify>> {
    inner.streams.get(&sid).map(|b| b.notify.clone())
}

struct WriterCount(Arc<Session>);

impl Drop for WriterCount {
    fn drop(&mut self) {
        self.0
            .writers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.0.touch();
    }
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: CallerExt,
    headers: HeaderMap,
) -> Response {
    if state.options.stateless {
        return http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            code::INVALID_REQUEST,
            "Method Not Allowed: stateless server",
        );
    }
    if !accepts(&headers, "text/event-stream") {
        return http_error(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: Accept must list text/event-stream",
        );
    }
    if let Err(r) = check_version(&headers) {
        return r;
    }
    let session = match session_of(&state, &headers, &caller) {
        Ok(s) => s,
        Err(r) => return r,
    };
    session.touch();
    let (sid, from) = match header_str(&headers, "last-event-id") {
        Some(last) => {
            // `{stream}-{seq}` resumes after that event; `{stream}` (a priming event's id)
            // from the stream's start.
            let parsed = match last.split_once('-') {
                Some((s, n)) => s
                    .parse::<u64>()
                    .ok()
                    .zip(n.parse::<u64>().ok().map(|n| n + 1)),
                None => last.parse::<u64>().ok().map(|s| (s, 0)),
            };
            let known = parsed.filter(|(s, _)| {
                session
                    .inner
                    .lock()
                    .map(|i| i.streams.contains_key(s))
                    .unwrap_or(false)
            });
            match known {
                Some(found) => found,
                None => {
                    return http_error(
                        StatusCode::BAD_REQUEST,
                        code::INVALID_REQUEST,
                        "Bad Request: Last-Event-ID names no stream this session can resume",
                    );
                }
            }
        }
        None => (STANDALONE, 0),
    };
    let stream = writer(state.clone(), session, sid, from, false, false);
    sse_body::response(stream, &[])
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: CallerExt,
    headers: HeaderMap,
) -> Response {
    if state.options.stateless {
        return http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            code::INVALID_REQUEST,
            "Method Not Allowed: stateless server",
        );
    }
    let Some(id) = header_str(&headers, SESSION_HEADER) else {
        return http_error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
        );
    };
    let mine = state
        .streamable
        .get(id)
        .is_some_and(|s| owned_by(&s, &caller));
    let removed = if mine {
        state.streamable.remove(id)
    } else {
        None
    };
    match removed {
        Some(s) => {
            tracing::debug!(session = %id, "session ended by the client");
            s.close().await;
            StatusCode::OK.into_response()
        }
        None => http_error(
            StatusCode::NOT_FOUND,
            code::INVALID_REQUEST,
            "Session not found",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_lists() {
        let mut h = HeaderMap::new();
        h.insert(
            "accept",
            "application/json, text/event-stream".parse().unwrap(),
        );
        assert!(accepts(&h, "application/json") && accepts(&h, "text/event-stream"));
        h.insert("accept", "application/json".parse().unwrap());
        assert!(!accepts(&h, "text/event-stream"));
        h.insert("accept", "*/*".parse().unwrap());
        assert!(accepts(&h, "text/event-stream"));
        h.insert("accept", "text/*;q=0.5, application/*".parse().unwrap());
        assert!(accepts(&h, "text/event-stream") && accepts(&h, "application/json"));
    }
}
