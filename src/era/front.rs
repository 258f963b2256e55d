//! Modern (2026-07-28) clients in front of a session-based route.
//!
//! Each modern request runs on a hub session of its own that lives as long as the request
//! (or as long as the call is parked). The client's per-request `_meta` becomes that session's
//! `initialize`, which the hub answers locally. When the server asks the client something
//! during a call (sampling, elicitation, roots), the call is parked: the client gets an
//! `input_required` result with those requests and a signed `requestState`, and its retry
//! with `inputResponses` answers the server and continues the same call.
//! `subscriptions/listen` is served from the legacy notifications.
//!
//! In front of the merged view of several servers, each request runs on a merged session of
//! its own instead, initialised from the request's `_meta`; the same parking applies, since
//! the merged view speaks the session-based revisions towards every server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::seal::{Claims, Seal};
use super::{META_SUBSCRIPTION, RequestMeta};
use crate::jsonrpc::{Id, Message, code, to_raw};
use crate::route::catalog::{Catalog, CatalogSession};
use crate::route::hub::{Hub, HubSession, LATEST_LEGACY};
use crate::route::queue::QueueRx;
use crate::route::{Backend, SessionTx, client_queue, level_rank};

/// Requests that may answer `input_required` (and so may be parked).
const RESUMABLE: &[&str] = &["tools/call", "prompts/get", "resources/read"];
/// Methods 2026-07-28 removed; a modern client gets "method not found" for them.
const REMOVED: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];
/// The id each call's request has on its own hub session.
const CALL_ID: u64 = 1;

/// Serves modern clients from a legacy route.
pub struct ModernFront {
    backend: Backend,
    /// The shared link modern requests use when the backend opens one link per session.
    own_hub: tokio::sync::Mutex<Option<Arc<Hub>>>,
    parked: Mutex<HashMap<String, Parked>>,
    seal: Seal,
    /// How long a parked call waits for the client's retry.
    park_for: Duration,
    /// The tools' `Mcp-Param-*` parameters, learnt from `tools/list` answers.
    pub tool_headers: super::params::ToolHeaders,
    /// Which tools clients see.
    curation: Option<crate::curation::Curation>,
    /// Most bytes one request's messages may have waiting.
    client_buffer: usize,
    /// Most calls parked at once.
    max_parked: usize,
}

/// A call waiting for the client's `inputResponses`.
struct Parked {
    call: Call,
    /// key → the server's request.
    asked: Vec<(String, Message)>,
    until: Instant,
}

/// What modern requests run on.
enum Source {
    Hub(Arc<Hub>),
    Merged(Arc<Catalog>),
}

impl Source {
    /// Whether the server speaks 2026-07-28 itself (then requests pass through).
    fn modern(&self) -> bool {
        match self {
            Source::Hub(h) => h.upstream_modern(),
            Source::Merged(_) => false,
        }
    }
}

/// A request's own session: with one server, or with the merged view.
enum Link {
    Hub(HubSession),
    Merged(Box<CatalogSession>),
}

impl Link {
    async fn send(&self, msg: Message) {
        match self {
            Link::Hub(s) => s.send(msg).await,
            Link::Merged(s) => s.send(msg).await,
        }
    }
}

/// One request in progress on its own session.
struct Call {
    session: Link,
    rx: QueueRx,
    method: String,
    name: Option<String>,
    rounds: usize,
    /// The `initialize` result the session was opened with.
    init: Box<serde_json::value::RawValue>,
}

/// What a request is answered with, besides notifications on the way.
enum Step {
    Done,
    Park(Call, Vec<(String, Message)>),
}

impl ModernFront {
    pub fn new(
        backend: Backend,
        secret: Option<&[u8]>,
        park_for: Duration,
        curation: Option<crate::curation::Curation>,
        client_buffer: usize,
        max_parked: usize,
    ) -> Arc<ModernFront> {
        let front = Arc::new(ModernFront {
            backend,
            own_hub: Default::default(),
            parked: Default::default(),
            seal: Seal::new(secret),
            park_for,
            tool_headers: Default::default(),
            curation,
            client_buffer,
            max_parked: max_parked.max(1),
        });
        tokio::spawn(reap(Arc::downgrade(&front)));
        front
    }

    /// End the shared link this front opened itself, if any.
    pub async fn shutdown(&self) {
        if let Ok(mut p) = self.parked.lock() {
            p.clear();
        }
        let hub = self.own_hub.lock().await.take();
        if let Some(h) = hub {
            h.shutdown().await;
        }
    }

    pub fn parked_calls(&self) -> usize {
        self.parked.lock().map(|p| p.len()).unwrap_or(0)
    }

    async fn source(&self) -> Result<Source, String> {
        match &self.backend {
            Backend::Shared(h) => Ok(Source::Hub(h.clone())),
            Backend::Catalog(c) => Ok(Source::Merged(c.clone())),
            Backend::PerSession { target, options } => {
                let mut slot = self.own_hub.lock().await;
                // A hub starts its server again by itself when the link ends.
                if let Some(h) = slot.as_ref() {
                    return Ok(Source::Hub(h.clone()));
                }
                let h = Hub::start(target, *options).await?;
                *slot = Some(h.clone());
                Ok(Source::Hub(h))
            }
        }
    }

    /// Serve one validated modern request. Notifications for the client (progress, log
    /// messages, subscription events) and finally the answer go to `out`; the request is
    /// cancelled when `out` closes (the client went away).
    pub async fn handle(&self, msg: Message, meta: RequestMeta, out: mpsc::Sender<Message>) {
        let Some(id) = msg.id() else { return };
        let method = msg.method().unwrap_or("").to_owned();
        if REMOVED.contains(&method.as_str()) {
            let m = Message::error(
                id,
                code::METHOD_NOT_FOUND,
                &format!(
                    "{method} does not exist in protocol revision {}",
                    super::MODERN
                ),
                None,
            );
            let _ = out.send(m).await;
            return;
        }
        let src = match self.source().await {
            Ok(s) => s,
            Err(e) => {
                let _ = out
                    .send(Message::error(id, code::UPSTREAM_UNAVAILABLE, &e, None))
                    .await;
                return;
            }
        };
        if method == "subscriptions/listen" {
            return self.listen(&src, msg, &meta, out).await;
        }
        if let Source::Hub(hub) = &src
            && let Err(mut e) = ready(hub).await
        {
            e.set_id(&id);
            let _ = out.send(e).await;
            return;
        }
        // A modern server gets the request as it is; its answers come back as they are.
        let modern = src.modern();
        if method == "server/discover" && !modern {
            let init = match self.open(&src, &meta).await {
                Ok(call) => call.init,
                Err(mut e) => {
                    e.set_id(&id);
                    let _ = out.send(e).await;
                    return;
                }
            };
            let mut m = Message::response(id, init);
            super::discover_result(&mut m);
            let _ = out.send(m).await;
            return;
        }
        if let Some(refusal) = self.curation.as_ref().and_then(|c| c.refuse(&msg)) {
            let _ = out.send(refusal).await;
            return;
        }
        let params = msg.params_as::<Value>().unwrap_or(Value::Null);
        let step = match params.get("requestState") {
            Some(state) if !modern => self.resume(msg.clone(), state, &params, &meta, &out).await,
            _ => self.start(&src, msg.clone(), &meta, &out).await,
        };
        if let Step::Park(call, asked) = step {
            self.park(call, asked, id, &out).await;
        }
    }

    /// A session of this request's own that knows the client's capabilities (and log level);
    /// or the error for the client. A hub must be ready.
    async fn open(&self, src: &Source, meta: &RequestMeta) -> Result<Call, Message> {
        let (tx, mut rx) = client_queue(self.client_buffer);
        let (session, init) = match src {
            Source::Hub(hub) => {
                let init = ready(hub).await?.result.clone();
                let session = hub.attach(SessionTx::coalesced(SessionTx::Queue(tx)));
                session.declare(meta.capabilities.clone().unwrap_or(Value::Null));
                (Link::Hub(session), init)
            }
            Source::Merged(catalog) => {
                let session = catalog
                    .attach(SessionTx::coalesced(SessionTx::Queue(tx)))
                    .await;
                let id = Id::string("mcp-proxy-init");
                let params = json!({
                    "protocolVersion": LATEST_LEGACY,
                    "capabilities": meta.capabilities.clone().unwrap_or(json!({})),
                    "clientInfo": meta.client_info.clone().unwrap_or(
                        json!({ "name": "mcp-proxy", "version": env!("CARGO_PKG_VERSION") })
                    ),
                });
                session
                    .send(Message::request(
                        id.clone(),
                        "initialize",
                        Some(to_raw(&params)),
                    ))
                    .await;
                let answer = wait_for(&mut rx, &id).await;
                let Some(init) = answer.as_ref().and_then(|a| a.result()) else {
                    return Err(Message::error(
                        Id::null(),
                        code::UPSTREAM_UNAVAILABLE,
                        "the merged view did not initialise",
                        None,
                    ));
                };
                let init = init.to_raw_value();
                session
                    .send(Message::notification("notifications/initialized", None))
                    .await;
                (Link::Merged(Box::new(session)), init)
            }
        };
        set_level(&session, meta).await;
        Ok(Call {
            session,
            rx,
            method: String::new(),
            name: None,
            rounds: 0,
            init,
        })
    }

    async fn start(
        &self,
        src: &Source,
        msg: Message,
        meta: &RequestMeta,
        out: &mpsc::Sender<Message>,
    ) -> Step {
        let Some(id) = msg.id() else {
            return Step::Done;
        };
        let mut call = match self.open(src, meta).await {
            Ok(c) => c,
            Err(mut e) => {
                e.set_id(&id);
                let _ = out.send(e).await;
                return Step::Done;
            }
        };
        call.method = msg.method().unwrap_or("").to_owned();
        call.name = super::mcp_name(&msg);
        let mut upstream = msg.clone();
        upstream.set_id(&Id::number(CALL_ID));
        if !src.modern() {
            super::strip_request_meta(&mut upstream);
        }
        call.session.send(upstream).await;
        self.relay(call, &msg, meta, out).await
    }

    /// Relay a call's messages for the client's request `msg` (see [`pump`]).
    async fn relay(
        &self,
        call: Call,
        msg: &Message,
        meta: &RequestMeta,
        out: &mpsc::Sender<Message>,
    ) -> Step {
        let Some(client_id) = msg.id() else {
            return Step::Done;
        };
        let progress = msg.progress_token();
        // Tool curation rewrites the list before it reaches the client.
        let (tx, mut rx) = mpsc::channel::<Message>(crate::limits::get().client_queue);
        let curation = self.curation.clone();
        let list = msg.method() == Some("tools/list");
        let Some(curation) = curation.filter(|_| list) else {
            return pump(call, client_id, progress, meta, out, &self.tool_headers).await;
        };
        let step = pump(call, client_id, progress, meta, &tx, &self.tool_headers).await;
        drop(tx);
        while let Some(mut m) = rx.recv().await {
            if m.is_response() {
                curation.rewrite_answer(&mut m);
            }
            let _ = out.send(m).await;
        }
        step
    }

    /// Check a `tools/call`'s `Mcp-Param-*` headers (given by `header`, decoded) against its
    /// arguments, for the tools whose `tools/list` entry the proxy has seen.
    pub fn check_param_headers(
        &self,
        msg: &Message,
        header: impl Fn(&str) -> Option<String>,
    ) -> Result<(), super::Refusal> {
        if msg.method() != Some("tools/call") {
            return Ok(());
        }
        let p = msg.params_as::<Value>().unwrap_or(Value::Null);
        let Some(tool) = p.get("name").and_then(Value::as_str) else {
            return Ok(());
        };
        let args = p.get("arguments").cloned().unwrap_or(Value::Null);
        for h in self.tool_headers.of(tool) {
            let body = super::params::value_at(&args, &h.path);
            let sent = header(&format!("mcp-param-{}", h.name));
            let fine = match (&sent, &body) {
                (Some(s), Some(b)) => super::params::same_value(s, b),
                (None, None) => true,
                _ => false,
            };
            if !fine {
                return Err(super::Refusal {
                    code: super::HEADER_MISMATCH,
                    message: format!(
                        "Mcp-Param-{} header ({}) does not match the argument ({})",
                        h.name,
                        sent.as_deref().unwrap_or("missing"),
                        body.as_deref().unwrap_or("missing"),
                    ),
                    data: None,
                });
            }
        }
        Ok(())
    }

    /// A retry carrying `requestState`: find the parked call, answer the server's requests
    /// with the client's `inputResponses`, and go on with the call.
    async fn resume(
        &self,
        msg: Message,
        state: &Value,
        params: &Value,
        meta: &RequestMeta,
        out: &mpsc::Sender<Message>,
    ) -> Step {
        let Some(client_id) = msg.id() else {
            return Step::Done;
        };
        let refuse =
            |why: String| Message::error(client_id.clone(), code::INVALID_PARAMS, &why, None);
        let Some(token) = state.as_str() else {
            let _ = out
                .send(refuse("requestState must be a string".into()))
                .await;
            return Step::Done;
        };
        let claims = match self.seal.open(token, super::seal::now()) {
            Ok(c) => c,
            Err(e) => {
                let _ = out.send(refuse(e.to_string())).await;
                return Step::Done;
            }
        };
        let method = msg.method().unwrap_or("");
        let name = super::mcp_name(&msg);
        if claims.method != method || claims.name != name {
            let why = format!(
                "requestState belongs to {} {}, not to this request",
                claims.method,
                claims.name.as_deref().unwrap_or("")
            );
            let _ = out.send(refuse(why)).await;
            return Step::Done;
        }
        let parked = self
            .parked
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&claims.call));
        let Some(parked) = parked else {
            let why = "requestState names a call that is no longer waiting (answered already, \
                       timed out, or parked on another proxy)";
            let _ = out.send(refuse(why.into())).await;
            return Step::Done;
        };
        let Parked { call, asked, .. } = parked;
        let responses = params.get("inputResponses").and_then(Value::as_object);
        let mut missing = vec![];
        for (key, request) in asked {
            match (responses.and_then(|r| r.get(&key)), request.id()) {
                (Some(answer), Some(id)) => {
                    call.session
                        .send(Message::response(id, to_raw(answer)))
                        .await;
                }
                _ => missing.push((key, request)),
            }
        }
        if !missing.is_empty() {
            // The specification asks for the missing input again rather than an error.
            return Step::Park(call, missing);
        }
        set_level(&call.session, meta).await;
        self.relay(call, &msg, meta, out).await
    }

    /// Keep the call and answer the client with `input_required`.
    async fn park(
        &self,
        mut call: Call,
        asked: Vec<(String, Message)>,
        client_id: Id,
        out: &mpsc::Sender<Message>,
    ) {
        call.rounds += 1;
        let max_rounds = crate::limits::get().max_input_rounds;
        if call.rounds > max_rounds {
            let m = Message::error(
                client_id,
                code::INTERNAL_ERROR,
                &format!(
                    "the server asked for input more than {max_rounds} times (--max-input-rounds); giving up"
                ),
                None,
            );
            let _ = out.send(m).await;
            return;
        }
        let key: String = format!("{:032x}", rand::random::<u128>());
        let claims = Claims {
            call: key.clone(),
            method: call.method.clone(),
            name: call.name.clone(),
            exp: super::seal::now() + self.park_for.as_secs().max(1),
        };
        let mut requests = serde_json::Map::new();
        for (k, m) in &asked {
            let mut r = serde_json::Map::new();
            r.insert("method".into(), m.method().unwrap_or("").into());
            if let Some(p) = m.params_as::<Value>() {
                r.insert("params".into(), p);
            }
            requests.insert(k.clone(), Value::Object(r));
        }
        let result = json!({
            "resultType": "input_required",
            "inputRequests": requests,
            "requestState": self.seal.sign(&claims),
        });
        let evicted = match self.parked.lock() {
            Ok(mut p) => {
                // At the cap, the call parked longest ago makes room (it is cancelled
                // upstream as it is dropped; its client's retry is refused).
                let oldest = (p.len() >= self.max_parked)
                    .then(|| {
                        p.iter()
                            .min_by_key(|(_, v)| v.until)
                            .map(|(k, _)| k.clone())
                    })
                    .flatten();
                let evicted = oldest.and_then(|k| p.remove(&k));
                p.insert(
                    key,
                    Parked {
                        call,
                        asked,
                        until: Instant::now() + self.park_for,
                    },
                );
                evicted
            }
            Err(_) => None,
        };
        if evicted.is_some() {
            crate::warn_throttled!(
                "parked-cap",
                "{} calls wait for their clients' input (--max-parked); the oldest was cancelled",
                self.max_parked
            );
        }
        drop(evicted);
        let _ = out
            .send(Message::response(client_id, to_raw(&result)))
            .await;
    }

    /// `subscriptions/listen`: acknowledge what can be honoured, then relay the matching
    /// notifications until the client closes the stream or the server goes away.
    async fn listen(
        &self,
        src: &Source,
        msg: Message,
        meta: &RequestMeta,
        out: mpsc::Sender<Message>,
    ) {
        let Some(client_id) = msg.id() else { return };
        let mut call = match self.open(src, meta).await {
            Ok(c) => c,
            Err(mut e) => {
                e.set_id(&client_id);
                let _ = out.send(e).await;
                return;
            }
        };
        let server_caps = serde_json::from_str::<Value>(call.init.get())
            .ok()
            .and_then(|r| r.get("capabilities").cloned())
            .unwrap_or(Value::Null);
        let wanted = msg
            .params_as::<Value>()
            .and_then(|p| p.get("notifications").cloned())
            .unwrap_or(Value::Null);
        let mut honoured = serde_json::Map::new();
        for (flag, cap) in [
            ("toolsListChanged", "tools"),
            ("promptsListChanged", "prompts"),
            ("resourcesListChanged", "resources"),
        ] {
            let asked = wanted.get(flag).and_then(Value::as_bool) == Some(true);
            let offered = server_caps
                .get(cap)
                .and_then(|c| c.get("listChanged"))
                .and_then(Value::as_bool)
                == Some(true);
            if asked && offered {
                honoured.insert(flag.into(), true.into());
            }
        }
        let uris: Vec<String> = wanted
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        // Some servers handle resources/subscribe without saying so (the Python SDK
        // advertises `subscribe: false`): the answer to the subscription decides.
        let can_subscribe = server_caps.get("resources").is_some();
        let mut subscribed: Vec<String> = vec![];
        if can_subscribe {
            for (n, uri) in uris.iter().enumerate() {
                let id = Id::string(&format!("mcp-proxy-subscribe-{n}"));
                call.session
                    .send(Message::request(
                        id.clone(),
                        "resources/subscribe",
                        Some(to_raw(&json!({ "uri": uri }))),
                    ))
                    .await;
                if wait_for(&mut call.rx, &id)
                    .await
                    .is_some_and(|a| a.result().is_some())
                {
                    subscribed.push(uri.clone());
                }
            }
        }
        if !subscribed.is_empty() {
            honoured.insert("resourceSubscriptions".into(), json!(subscribed));
        }
        let sub = client_id.to_raw();
        let mut ack = Message::notification(
            "notifications/subscriptions/acknowledged",
            Some(to_raw(&json!({ "notifications": honoured }))),
        );
        ack.set_param_meta(META_SUBSCRIPTION, sub.clone());
        if out.send(ack).await.is_err() {
            return;
        }
        loop {
            let o = tokio::select! {
                o = call.rx.recv() => o,
                _ = out.closed() => return,
            };
            let Some(o) = o else {
                // The server went away: the subscription ends gracefully.
                let mut end = Message::response(
                    client_id.clone(),
                    to_raw(&json!({ "resultType": "complete" })),
                );
                end.set_result_member(
                    "_meta",
                    crate::jsonrpc::with_member(None, META_SUBSCRIPTION, sub.clone()),
                );
                let _ = out.send(end).await;
                return;
            };
            let mut m = o.msg;
            let relay = match m.method().unwrap_or("") {
                "notifications/tools/list_changed" => honoured.contains_key("toolsListChanged"),
                "notifications/prompts/list_changed" => honoured.contains_key("promptsListChanged"),
                "notifications/resources/list_changed" => {
                    honoured.contains_key("resourcesListChanged")
                }
                "notifications/resources/updated" => m
                    .params_as::<Value>()
                    .and_then(|p| p.get("uri")?.as_str().map(str::to_owned))
                    .is_some_and(|u| subscribed.contains(&u)),
                _ => false,
            };
            if m.is_request() {
                // Nothing is being called on this stream; nobody can answer.
                if let Some(id) = m.id() {
                    call.session
                        .send(Message::error(
                            id,
                            code::METHOD_NOT_FOUND,
                            "no request of the client is waiting for input",
                            None,
                        ))
                        .await;
                }
                continue;
            }
            if relay {
                m.set_param_meta(META_SUBSCRIPTION, sub.clone());
                if out.send(m).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The log level a modern request asks for (`_meta`), for the session's share of the server.
async fn set_level(session: &Link, meta: &RequestMeta) {
    if let Some(level) = &meta.log_level {
        session
            .send(Message::request(
                Id::string("mcp-proxy-level"),
                "logging/setLevel",
                Some(to_raw(&json!({ "level": level }))),
            ))
            .await;
    }
}

/// Wait for the hub to be ready: what the server said to its `initialize`, or the error for
/// the client.
async fn ready(hub: &Hub) -> Result<Arc<crate::route::hub::InitAnswer>, Message> {
    hub.ready()
        .await
        .map_err(|(code, reason)| Message::error(Id::null(), code, &reason, None))
}

/// Relay a call's messages until its answer (done) or the server's first request of the
/// client (park). The answer gets the client's id and what 2026-07-28 requires.
async fn pump(
    mut call: Call,
    client_id: Id,
    progress: Option<Id>,
    meta: &RequestMeta,
    out: &mpsc::Sender<Message>,
    tools: &super::params::ToolHeaders,
) -> Step {
    let call_id = Id::number(CALL_ID);
    loop {
        let o = tokio::select! {
            o = call.rx.recv() => o,
            // The client went away: dropping the call cancels it upstream.
            _ = out.closed() => return Step::Done,
        };
        let Some(o) = o else {
            let m = Message::error(
                client_id,
                code::UPSTREAM_UNAVAILABLE,
                "the server link is closed",
                None,
            );
            let _ = out.send(m).await;
            return Step::Done;
        };
        let mut m = o.msg;
        if m.is_response() {
            if m.id().as_ref() == Some(&call_id) {
                m.set_id(&client_id);
                super::modernise_result(&call.method, &mut m);
                if call.method == "tools/list"
                    && let Some(r) = m.result_as::<Value>()
                {
                    tools.learn(&r);
                }
                let _ = out.send(m).await;
                return Step::Done;
            }
            continue;
        }
        if m.is_request() {
            let Some(id) = m.id() else { continue };
            if let Some(cap) = crate::route::hub::needed_capability(m.method().unwrap_or(""))
                && meta
                    .capabilities
                    .as_ref()
                    .and_then(|c| c.get(cap))
                    .is_none()
            {
                // The client did not declare what this call needs: the call is refused. The
                // server is told "no" and left to end the call itself (a cancellation racing
                // with that answer trips up some servers); its answer is then dropped.
                call.session
                    .send(Message::error(
                        id,
                        code::METHOD_NOT_FOUND,
                        &format!("the client did not declare the {cap} capability"),
                        None,
                    ))
                    .await;
                let m = Message::error(
                    client_id,
                    super::MISSING_CAPABILITY,
                    &format!("this request needs the client's {cap} capability"),
                    Some(json!({ "requiredCapabilities": { cap: {} } })),
                );
                let _ = out.send(m).await;
                tokio::spawn(async move {
                    let mut call = call;
                    let _ = wait_for(&mut call.rx, &call_id).await;
                });
                return Step::Done;
            }
            if !RESUMABLE.contains(&call.method.as_str()) {
                let why = format!(
                    "{} cannot ask the client for input in protocol revision {}",
                    call.method,
                    super::MODERN
                );
                call.session
                    .send(Message::error(id, code::METHOD_NOT_FOUND, &why, None))
                    .await;
                continue;
            }
            let mut asked = vec![(input_key(&m, 0), m)];
            // Requests the server sent together are asked together.
            let mut answer = None;
            while let Some(more) = call.rx.try_recv() {
                let more = more.msg;
                if more.is_request() {
                    let n = asked.len();
                    asked.push((input_key(&more, n), more));
                } else if more.is_response() {
                    if more.id().as_ref() == Some(&call_id) {
                        answer = Some(more);
                    }
                } else if let Some(n) = relay_notification(more, &progress, meta) {
                    let _ = out.send(n).await;
                }
            }
            let Some(mut answer) = answer else {
                return Step::Park(call, asked);
            };
            // The call is over already: what the server asked was not for it.
            for (_, r) in asked {
                if let Some(id) = r.id() {
                    call.session
                        .send(Message::error(
                            id,
                            code::METHOD_NOT_FOUND,
                            "the request this was sent with has finished",
                            None,
                        ))
                        .await;
                }
            }
            answer.set_id(&client_id);
            super::modernise_result(&call.method, &mut answer);
            let _ = out.send(answer).await;
            return Step::Done;
        }
        if let Some(n) = relay_notification(m, &progress, meta) {
            let _ = out.send(n).await;
        }
    }
}

/// What of a notification during a call reaches a modern client: progress (with the token
/// of the current attempt) and log messages at or above the level it asked for.
fn relay_notification(
    mut m: Message,
    progress: &Option<Id>,
    meta: &RequestMeta,
) -> Option<Message> {
    match m.method().unwrap_or("") {
        "notifications/progress" => {
            if let Some(t) = progress {
                m.set_param("progressToken", t.to_raw());
            }
            Some(m)
        }
        "notifications/message" => {
            let want = meta.log_level.as_deref()?;
            let level = m
                .params_as::<Value>()
                .and_then(|p| p.get("level")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            (level_rank(&level) >= level_rank(want)).then_some(m)
        }
        _ => None,
    }
}

/// A readable key for one input request.
fn input_key(m: &Message, n: usize) -> String {
    let kind = match m.method().unwrap_or("") {
        "elicitation/create" => "elicitation",
        "sampling/createMessage" => "sampling",
        "roots/list" => "roots",
        other => other,
    };
    format!("{kind}-{}", n + 1)
}

async fn wait_for(rx: &mut QueueRx, id: &Id) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let o = tokio::time::timeout_at(deadline, rx.recv()).await.ok()??;
        if o.msg.is_response() && o.msg.id().as_ref() == Some(id) {
            return Some(o.msg);
        }
    }
}

/// Parked calls whose client never came back are dropped, which cancels them upstream.
async fn reap(front: Weak<ModernFront>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(front) = front.upgrade() else { return };
        let now = Instant::now();
        let expired: Vec<Parked> = match front.parked.lock() {
            Ok(mut p) => {
                let keys: Vec<String> = p
                    .iter()
                    .filter(|(_, v)| v.until <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.into_iter().filter_map(|k| p.remove(&k)).collect()
            }
            Err(_) => return,
        };
        for p in expired {
            tracing::info!(
                method = %p.call.method,
                "a call waiting for input was not resumed in time; cancelled"
            );
        }
    }
}
