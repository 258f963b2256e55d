//! Streamable HTTP towards a server (revisions 2025-03-26 to 2025-11-25): one POST per
//! message, JSON or SSE answers, `Mcp-Session-Id`, the standalone GET stream, resuming with
//! `Last-Event-ID`, and a fresh session when the server forgets ours.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http::StatusCode;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::http_client::{HttpContext, body_excerpt, content_type_is, read_body, sse_events};
use crate::jsonrpc::{Id, Message};

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";
const MAX_RESUMES: u32 = 5;
/// How long the first request after the handshake waits for the GET stream to open.
const GET_OPEN_WAIT: Duration = Duration::from_secs(1);

#[derive(Default, Clone)]
struct SessionState {
    id: Option<String>,
    version: Option<String>,
    /// Bumped each time a new session replaces the old one.
    epoch: u64,
}

struct Shared {
    ctx: HttpContext,
    session: std::sync::Mutex<SessionState>,
    /// The client's `initialize`, replayed when the server has lost the session.
    init: std::sync::Mutex<Option<Message>>,
    reinit: Mutex<()>,
    get_stream: std::sync::Mutex<Option<CancellationToken>>,
    /// Requests whose broken answer stream is being resumed; the server may answer them on the
    /// GET stream instead, which ends the resuming.
    resuming: std::sync::Mutex<HashMap<Id, CancellationToken>>,
    closed: CancellationToken,
}

/// What a POST came to.
pub enum PostOutcome {
    Done,
    /// The server could not be reached (the message was answered with the error): nothing
    /// was learnt of its transport.
    Unreached,
    /// The server refused the POST in a way that means "not Streamable HTTP" (probe only).
    Refused(Message, StatusCode),
}

pub struct StreamableLink {
    shared: Arc<Shared>,
}

enum Sent {
    Ok(reqwest::Response),
    Status(StatusCode, reqwest::Response),
    Failed(String),
}

impl StreamableLink {
    pub fn new(ctx: HttpContext) -> Self {
        StreamableLink {
            shared: Arc::new(Shared {
                ctx,
                session: Default::default(),
                init: Default::default(),
                reinit: Mutex::new(()),
                get_stream: Default::default(),
                resuming: Default::default(),
                closed: CancellationToken::new(),
            }),
        }
    }

    /// Send the first message; tell whether the server speaks Streamable HTTP at all.
    pub async fn probe(&self, msg: Message) -> PostOutcome {
        if msg.method() == Some("initialize")
            && let Ok(mut i) = self.shared.init.lock()
        {
            *i = Some(msg.clone());
        }
        match post(&self.shared, &msg).await {
            Sent::Status(s, _)
                if matches!(
                    s,
                    StatusCode::BAD_REQUEST
                        | StatusCode::NOT_FOUND
                        | StatusCode::METHOD_NOT_ALLOWED
                        | StatusCode::NOT_ACCEPTABLE
                        | StatusCode::UNSUPPORTED_MEDIA_TYPE
                ) =>
            {
                PostOutcome::Refused(msg, s)
            }
            sent => {
                let unreached = matches!(sent, Sent::Failed(_));
                handle_sent(&self.shared, msg, sent, 0).await;
                if unreached {
                    PostOutcome::Unreached
                } else {
                    PostOutcome::Done
                }
            }
        }
    }

    pub async fn send(&self, msg: Message) {
        let shared = self.shared.clone();
        match msg.method() {
            Some("initialize") if msg.is_request() => {
                if let Ok(mut i) = shared.init.lock() {
                    *i = Some(msg.clone());
                }
                // Nothing else may go out before the session exists.
                deliver(&shared, msg).await;
            }
            Some("notifications/initialized") => {
                deliver(&shared, msg).await;
                // Open the GET stream before the next request goes out, so that the server
                // has somewhere to send what that request triggers outside its answer stream.
                let opened = start_get_stream(&shared);
                let _ = tokio::time::timeout(GET_OPEN_WAIT, opened).await;
            }
            _ if msg.is_request() => {
                tokio::spawn(async move { deliver(&shared, msg).await });
            }
            // Notifications and responses are quick (202) and keep their order.
            _ => deliver(&shared, msg).await,
        }
    }

    /// End the session: stop the GET stream and DELETE the session.
    pub async fn close(self) {
        let shared = self.shared;
        shared.closed.cancel();
        let id = shared.session.lock().ok().and_then(|s| s.id.clone());
        if let Some(id) = id {
            let mut req = shared
                .ctx
                .client
                .delete(shared.ctx.spec.url.clone())
                .headers(shared.ctx.headers.clone())
                .header(SESSION_HEADER, id)
                .timeout(Duration::from_secs(3));
            if let Some(t) = shared
                .ctx
                .spec
                .auth
                .0
                .as_ref()
                .and_then(|a| a.current_token())
            {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) => tracing::debug!("session DELETE answered {}", r.status()),
                Err(e) => tracing::debug!("session DELETE failed: {e}"),
            }
        }
    }
}

fn session(shared: &Shared) -> SessionState {
    shared.session.lock().map(|s| s.clone()).unwrap_or_default()
}

async fn post(shared: &Shared, msg: &Message) -> Sent {
    let s = session(shared);
    let build = || {
        let mut req = shared
            .ctx
            .client
            .post(shared.ctx.spec.url.clone())
            .headers(shared.ctx.headers.clone())
            .header(http::header::ACCEPT, ACCEPT_BOTH)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(super::http_client::body_of(msg));
        if let Some(id) = &s.id {
            req = req.header(SESSION_HEADER, id);
        }
        if let Some(v) = &s.version {
            req = req.header(VERSION_HEADER, v);
        }
        req
    };
    let sent = match shared.ctx.send(build).await {
        Ok(resp) if resp.status().is_success() => Sent::Ok(resp),
        Ok(resp) => Sent::Status(resp.status(), resp),
        Err(why) => Sent::Failed(why),
    };
    shared.ctx.observe(&sent_outcome(&sent));
    sent
}

fn sent_outcome(sent: &Sent) -> Result<StatusCode, String> {
    match sent {
        Sent::Ok(r) | Sent::Status(_, r) => Ok(r.status()),
        Sent::Failed(why) => Err(why.clone()),
    }
}

pub fn describe_reqwest(e: &reqwest::Error, url: &reqwest::Url) -> String {
    let url = super::redact_url(url);
    if e.is_connect() {
        format!("cannot connect to {url}: {}", root_cause(e))
    } else if e.is_timeout() {
        format!("request to {url} timed out")
    } else {
        format!("request to {url} failed: {}", root_cause(e))
    }
}

pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// POST one message and see its answer through, starting a new session if needed.
async fn deliver(shared: &Arc<Shared>, msg: Message) {
    let epoch = session(shared).epoch;
    let sent = post(shared, &msg).await;
    handle_sent(shared, msg, sent, epoch).await;
}

async fn handle_sent(shared: &Arc<Shared>, msg: Message, sent: Sent, epoch: u64) {
    let ctx = &shared.ctx;
    match sent {
        Sent::Ok(resp) => read_answer(shared, &msg, resp).await,
        Sent::Failed(reason) => ctx.fail(&msg, &reason).await,
        Sent::Status(StatusCode::NOT_FOUND, _)
            if session(shared).id.is_some() && msg.method() != Some("initialize") =>
        {
            // The server no longer knows our session (it restarted): start a new one.
            tracing::info!("server forgot the session; starting a new one");
            if let Err(reason) = renew_session(shared, epoch).await {
                ctx.fail(&msg, &reason).await;
                return;
            }
            match post(shared, &msg).await {
                Sent::Ok(resp) => read_answer(shared, &msg, resp).await,
                Sent::Failed(reason) => ctx.fail(&msg, &reason).await,
                Sent::Status(s, resp) => {
                    let body = body_excerpt(resp).await;
                    ctx.fail(&msg, &format!("server answered HTTP {s}: {body}"))
                        .await;
                }
            }
        }
        Sent::Status(s, resp) => {
            // A JSON-RPC error body is the server's own answer: pass it on.
            if content_type_is(&resp, "application/json") {
                if let Ok(body) = read_body(resp, ctx.limits.max_message_size).await
                    && let Ok(p) = Message::parse(body)
                {
                    let mut answered = false;
                    for m in p.into_messages() {
                        answered |= m.is_response() && m.id() == msg.id();
                        ctx.deliver(m, msg.id()).await;
                    }
                    if answered || !msg.is_request() {
                        return;
                    }
                }
                ctx.fail(&msg, &format!("server answered HTTP {s}")).await;
            } else {
                let body = body_excerpt(resp).await;
                ctx.fail(&msg, &format!("server answered HTTP {s}: {body}"))
                    .await;
            }
        }
    }
}

/// Read the answer to a POST: nothing (202), a JSON body, or an SSE stream (resumed with
/// `Last-Event-ID` if it breaks before the answer arrives).
async fn read_answer(shared: &Arc<Shared>, msg: &Message, resp: reqwest::Response) {
    let ctx = &shared.ctx;
    let is_init = msg.method() == Some("initialize");
    if is_init
        && let Some(id) = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        && let Ok(mut s) = shared.session.lock()
    {
        s.id = Some(id.to_owned());
    }
    let request_id = if msg.is_request() { msg.id() } else { None };
    if resp.status() == StatusCode::ACCEPTED || request_id.is_none() {
        return;
    }
    if content_type_is(&resp, "text/event-stream") {
        let mut resp = resp;
        let mut last_id: Option<String> = None;
        let mut retry: Option<Duration> = None;
        let mut tries = 0;
        let answered_elsewhere = shared.closed.child_token();
        let registered = request_id.clone();
        if let (Some(id), Ok(mut r)) = (&registered, shared.resuming.lock()) {
            r.insert(id.clone(), answered_elsewhere.clone());
        }
        loop {
            let seen = Seen {
                last_id: &mut last_id,
                retry: &mut retry,
            };
            let end = tokio::select! {
                end = read_stream(shared, resp, request_id.as_ref(), seen, is_init) => end,
                _ = answered_elsewhere.cancelled() => StreamEnd::Answered,
            };
            let failure = match end {
                StreamEnd::Answered => None,
                StreamEnd::Broken(reason) => match last_id.clone() {
                    None => Some(format!("the server's answer stream ended early: {reason}")),
                    Some(_) if tries >= MAX_RESUMES => {
                        Some(format!("the server's answer stream broke: {reason}"))
                    }
                    Some(event_id) => {
                        tries += 1;
                        // The server's `retry` field says how long to wait (SEP-1699);
                        // without one, back off exponentially.
                        let wait = retry.unwrap_or(Duration::from_millis(100 * (1 << tries)));
                        let resumed = tokio::select! {
                            r = async {
                                tokio::time::sleep(wait).await;
                                tracing::debug!("resuming answer stream after event {event_id}");
                                get(shared, Some(&event_id)).await
                            } => Some(r),
                            _ = answered_elsewhere.cancelled() => None,
                        };
                        match resumed {
                            None => None,
                            Some(Ok(r)) => {
                                resp = r;
                                continue;
                            }
                            Some(Err(e)) => Some(format!("cannot resume the answer stream: {e}")),
                        }
                    }
                },
            };
            if let (Some(id), Ok(mut r)) = (&registered, shared.resuming.lock()) {
                r.remove(id);
            }
            if let Some(reason) = failure
                && !answered_elsewhere.is_cancelled()
            {
                ctx.fail(msg, &reason).await;
            }
            return;
        }
    }
    match read_body(resp, ctx.limits.max_message_size).await {
        Ok(body) if body.iter().all(u8::is_ascii_whitespace) => {
            ctx.fail(msg, "server answered with an empty body").await;
        }
        Ok(body) => match Message::parse(body) {
            Ok(p) => {
                for m in p.into_messages() {
                    if is_init && m.is_response() {
                        note_version(shared, &m);
                    }
                    ctx.deliver(m, request_id.clone()).await;
                }
            }
            Err(e) => {
                ctx.fail(msg, &format!("server answered with invalid JSON-RPC: {e}"))
                    .await
            }
        },
        Err(e) => ctx.fail(msg, &e).await,
    }
}

enum StreamEnd {
    Answered,
    Broken(String),
}

/// What an answer stream told us about resuming it: the last event id and the `retry` delay.
struct Seen<'a> {
    last_id: &'a mut Option<String>,
    retry: &'a mut Option<Duration>,
}

async fn read_stream(
    shared: &Arc<Shared>,
    resp: reqwest::Response,
    request_id: Option<&Id>,
    seen: Seen<'_>,
    is_init: bool,
) -> StreamEnd {
    let ctx = &shared.ctx;
    let mut events = sse_events(resp, ctx.limits.max_message_size);
    loop {
        let ev = tokio::select! {
            ev = events.next() => ev,
            _ = shared.closed.cancelled() => return StreamEnd::Answered,
        };
        match ev {
            None => return StreamEnd::Broken("stream closed".into()),
            Some(Err(e)) => return StreamEnd::Broken(e),
            Some(Ok(ev)) => {
                if let Some(id) = ev.id.filter(|i| !i.is_empty()) {
                    *seen.last_id = Some(id);
                }
                if let Some(ms) = ev.retry {
                    *seen.retry = Some(Duration::from_millis(ms.min(60_000)));
                }
                if !matches!(ev.event.as_deref(), None | Some("message")) {
                    continue;
                }
                let Some(data) = ev.data.filter(|d| !d.trim().is_empty()) else {
                    continue;
                };
                match Message::parse(data) {
                    Ok(p) => {
                        let mut done = false;
                        for m in p.into_messages() {
                            let answers = m.is_response()
                                && request_id.is_some_and(|r| m.id().as_ref() == Some(r));
                            if answers && is_init {
                                note_version(shared, &m);
                            }
                            done |= answers;
                            ctx.deliver(m, request_id.cloned()).await;
                        }
                        if done {
                            return StreamEnd::Answered;
                        }
                    }
                    Err(e) => crate::warn_throttled!(
                        "event-not-json",
                        "server sent an event that is not JSON-RPC: {e}"
                    ),
                }
            }
        }
    }
}

fn note_version(shared: &Shared, init_answer: &Message) {
    #[derive(serde::Deserialize)]
    struct R {
        #[serde(rename = "protocolVersion")]
        protocol_version: String,
    }
    if let Some(r) = init_answer.result_as::<R>()
        && let Ok(mut s) = shared.session.lock()
    {
        s.version = Some(r.protocol_version);
    }
}

async fn get(shared: &Shared, last_event_id: Option<&str>) -> Result<reqwest::Response, String> {
    let s = session(shared);
    let build = || {
        let mut req = shared
            .ctx
            .client
            .get(shared.ctx.spec.url.clone())
            .headers(shared.ctx.headers.clone())
            .header(http::header::ACCEPT, "text/event-stream");
        if let Some(id) = &s.id {
            req = req.header(SESSION_HEADER, id);
        }
        if let Some(v) = &s.version {
            req = req.header(VERSION_HEADER, v);
        }
        if let Some(l) = last_event_id {
            req = req.header("last-event-id", l);
        }
        req
    };
    match shared.ctx.send(build).await {
        Ok(r) if r.status().is_success() && content_type_is(&r, "text/event-stream") => Ok(r),
        Ok(r) => Err(format!("GET answered HTTP {}", r.status())),
        Err(why) => Err(why),
    }
}

/// The standalone GET stream: server-initiated messages outside any request. Reconnects
/// (with `Last-Event-ID`) until the link closes; a server that offers none answers 405.
fn start_get_stream(shared: &Arc<Shared>) -> tokio::sync::oneshot::Receiver<()> {
    let (opened_tx, opened) = tokio::sync::oneshot::channel();
    let mut opened_tx = Some(opened_tx);
    let token = shared.closed.child_token();
    if let Ok(mut g) = shared.get_stream.lock()
        && let Some(old) = g.replace(token.clone())
    {
        old.cancel();
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut last_id: Option<String> = None;
        let mut delay = Duration::from_millis(500);
        loop {
            let s = session(&shared);
            let build = || {
                let mut req = shared
                    .ctx
                    .client
                    .get(shared.ctx.spec.url.clone())
                    .headers(shared.ctx.headers.clone())
                    .header(http::header::ACCEPT, "text/event-stream");
                if let Some(id) = &s.id {
                    req = req.header(SESSION_HEADER, id);
                }
                if let Some(v) = &s.version {
                    req = req.header(VERSION_HEADER, v);
                }
                if let Some(l) = &last_id {
                    req = req.header("last-event-id", l);
                }
                req
            };
            let resp = tokio::select! {
                r = shared.ctx.send(build) => r,
                _ = token.cancelled() => return,
            };
            if let Some(tx) = opened_tx.take() {
                let _ = tx.send(());
            }
            match resp {
                Ok(r) if r.status() == StatusCode::METHOD_NOT_ALLOWED => {
                    tracing::debug!("server offers no GET stream");
                    return;
                }
                Ok(r) if r.status() == StatusCode::NOT_FOUND => {
                    tracing::debug!("GET stream: session unknown to the server");
                    return;
                }
                Ok(r) if r.status().is_success() && content_type_is(&r, "text/event-stream") => {
                    delay = Duration::from_millis(500);
                    let mut events = sse_events(r, shared.ctx.limits.max_message_size);
                    loop {
                        let ev = tokio::select! {
                            ev = events.next() => ev,
                            _ = token.cancelled() => return,
                        };
                        let Some(Ok(ev)) = ev else { break };
                        if let Some(id) = ev.id.filter(|i| !i.is_empty()) {
                            last_id = Some(id);
                        }
                        if let Some(ms) = ev.retry {
                            delay = Duration::from_millis(ms.clamp(100, 60_000));
                        }
                        if !matches!(ev.event.as_deref(), None | Some("message")) {
                            continue;
                        }
                        let Some(data) = ev.data.filter(|d| !d.trim().is_empty()) else {
                            continue;
                        };
                        match Message::parse(data) {
                            Ok(p) => {
                                for m in p.into_messages() {
                                    if m.is_response()
                                        && let Some(id) = m.id()
                                        && let Ok(r) = shared.resuming.lock()
                                        && let Some(t) = r.get(&id)
                                    {
                                        t.cancel();
                                    }
                                    shared.ctx.deliver(m, None).await;
                                }
                            }
                            Err(e) => {
                                crate::warn_throttled!(
                                    "event-not-json",
                                    "server sent an event that is not JSON-RPC: {e}"
                                )
                            }
                        }
                    }
                }
                Ok(r) => {
                    tracing::debug!("GET stream answered HTTP {}", r.status());
                    if r.status().is_client_error() {
                        return;
                    }
                }
                Err(e) => tracing::debug!("GET stream: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = token.cancelled() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    });
    opened
}

/// Start a new session by replaying the client's `initialize` (its answer is not forwarded:
/// the client already has one) and `notifications/initialized`.
async fn renew_session(shared: &Arc<Shared>, seen_epoch: u64) -> Result<(), String> {
    let _guard = shared.reinit.lock().await;
    if session(shared).epoch != seen_epoch {
        return Ok(()); // someone else renewed it meanwhile
    }
    let init = shared
        .init
        .lock()
        .ok()
        .and_then(|i| i.clone())
        .ok_or("the server lost the session and no initialize is known to renew it")?;
    if let Ok(mut s) = shared.session.lock() {
        s.id = None;
    }
    let mut replay = init;
    replay.set_id(&Id::string("mcp-proxy-renew"));
    let resp = match post(shared, &replay).await {
        Sent::Ok(r) => r,
        Sent::Status(s, _) => {
            return Err(format!("renewing the session: server answered HTTP {s}"));
        }
        Sent::Failed(e) => return Err(format!("renewing the session: {e}")),
    };
    if let Some(id) = resp
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        && let Ok(mut s) = shared.session.lock()
    {
        s.id = Some(id.to_owned());
    }
    // Read (and drop) the initialize answer.
    if content_type_is(&resp, "text/event-stream") {
        let mut events = sse_events(resp, shared.ctx.limits.max_message_size);
        while let Some(Ok(ev)) = events.next().await {
            if let Some(Ok(m)) = ev.data.map(Message::parse_one)
                && m.is_response()
            {
                note_version(shared, &m);
                break;
            }
        }
    } else if let Ok(body) = read_body(resp, shared.ctx.limits.max_message_size).await
        && let Ok(m) = Message::parse_one(body)
    {
        note_version(shared, &m);
    }
    let note = Message::notification("notifications/initialized", None);
    if let Sent::Failed(e) = post(shared, &note).await {
        return Err(format!("renewing the session: {e}"));
    }
    if let Ok(mut s) = shared.session.lock() {
        s.epoch += 1;
    }
    drop(start_get_stream(shared));
    Ok(())
}
