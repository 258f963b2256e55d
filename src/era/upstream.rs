//! Servers of revision 2026-07-28 behind a session-based route.
//!
//! [`settle`] finds out which era a server speaks (the specification's probe: `server/discover`
//! first, falling back on anything that is not a modern answer) and remembers it per server.
//! A legacy server keeps its link untouched. A modern server's link is wrapped by an adapter
//! that speaks the session-based revisions towards the route (hub or pipe):
//! - `initialize` is answered from `server/discover`, `ping` and `logging/setLevel` locally;
//! - every request gets the per-request `_meta` (version, the client's capabilities and info,
//!   the log level);
//! - an `input_required` result becomes server-to-client requests, one per entry, all at once;
//!   their answers go back in a retry with `inputResponses` and `requestState`, until a final
//!   result comes;
//! - list-changed and resource-update notifications come from a `subscriptions/listen` stream,
//!   whose filter follows `resources/subscribe` and `resources/unsubscribe`.
//!
//! Requests that already carry modern `_meta` (a modern client behind the proxy) pass through
//! untouched, `input_required` results and `requestState` included.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{
    META_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL, META_SERVER_INFO, META_VERSION, MODERN,
};
use crate::jsonrpc::{Id, Message, code, to_raw};
use crate::route::hub::{LATEST_LEGACY, negotiate};
use crate::route::{RouteOptions, Unavailable};
use crate::transport::modern_client::{self, Probe, classify, discover_request};
use crate::transport::{self, Connection, HttpTransport, Inbound, Target};

/// Which era to speak towards servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerEra {
    /// Probe each server once (`server/discover` first) and remember the answer.
    #[default]
    Auto,
    /// Session-based revisions only; no probe.
    Legacy,
    /// Revision 2026-07-28 only.
    Modern,
}

/// How long a stdio server may take to answer the `server/discover` probe (servers started
/// through `uvx` or `npx` may be downloaded first).
const PROBE_WAIT: Duration = Duration::from_secs(30);

/// What was learnt per server: modern or not.
static ERAS: LazyLock<Mutex<HashMap<String, bool>>> = LazyLock::new(Default::default);

fn cache_key(target: &Target) -> String {
    match target {
        Target::Command(c) => format!("cmd:{} {}", c.program, c.args.join(" ")),
        Target::Url(u) => format!("url:{}", u.url),
    }
}

fn remember(key: &str, modern: bool) {
    if let Ok(mut m) = ERAS.lock() {
        m.insert(key.to_owned(), modern);
    }
}

/// Find the era of the server behind `conn` (unless known) and give back a link that speaks
/// the session-based revisions, plus whether the server is modern.
pub async fn settle(
    conn: Connection,
    target: &Target,
    options: RouteOptions,
) -> Result<(Connection, bool), Unavailable> {
    let pref = options.server_era;
    let key = cache_key(target);
    let known = ERAS.lock().ok().and_then(|m| m.get(&key).copied());
    let sse_only = matches!(target, Target::Url(u) if u.transport == HttpTransport::Sse);
    let health = match target {
        Target::Url(u) => u.health.clone(),
        Target::Command(_) => Default::default(),
    };
    if pref == ServerEra::Legacy || sse_only || (pref == ServerEra::Auto && known == Some(false)) {
        health.set_modern(false);
        return Ok((conn, false));
    }
    let mut conn = conn;
    let probe = match target {
        Target::Command(_) => probe_stdio(&mut conn).await,
        Target::Url(spec) => {
            // Bounded like every request: a server that accepts and never answers must not
            // hold the client's first request forever.
            let probe = modern_client::probe(spec, options.limits);
            match options.request_timeout {
                Some(t) => match tokio::time::timeout(t, probe).await {
                    Ok(p) => Some(p),
                    Err(_) => {
                        return Err(Unavailable::timeout(format!(
                            "the server did not answer within {}s (--timeout) when asked \
                             server/discover",
                            t.as_secs()
                        )));
                    }
                },
                None => Some(probe.await),
            }
        }
    };
    match probe {
        Some(Probe::Modern(discover)) => {
            remember(&key, true);
            health.set_modern(true);
            tracing::info!(server = %target.label(), "server speaks protocol revision {MODERN}");
            let conn = match target {
                Target::Url(spec) => {
                    conn.close().await;
                    modern_client::connect(spec, options.limits)
                        .map_err(|e| Unavailable::from(e.to_string()))?
                }
                Target::Command(_) => conn,
            };
            Ok((wrap(conn, discover), true))
        }
        Some(Probe::Refused(why)) => Err(why.into()),
        Some(Probe::Unreachable(why)) => {
            health.failed(&why);
            Err(why.into())
        }
        Some(Probe::Legacy(why)) => {
            if pref == ServerEra::Modern {
                return Err(format!("not a {MODERN} server: {why} (--server-era modern)").into());
            }
            remember(&key, false);
            health.set_modern(false);
            tracing::debug!("server speaks a session-based revision ({why})");
            Ok((conn, false))
        }
        None => {
            // The server went away on the probe: start it again and do not probe it again.
            if pref == ServerEra::Modern {
                return Err(String::from("the server exited when asked server/discover").into());
            }
            remember(&key, false);
            tracing::info!("the server exited on the server/discover probe; restarting it");
            conn.close().await;
            let fresh = transport::connect(target, options.limits)
                .await
                .map_err(|e| Unavailable::from(e.to_string()))?;
            Ok((fresh, false))
        }
    }
}

/// The stdio probe; `None` when the server's link closed before it answered.
async fn probe_stdio(conn: &mut Connection) -> Option<Probe> {
    let quiet = conn.quiet.clone();
    if let Some(q) = &quiet {
        q.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let answer = probe_stdio_quietly(conn).await;
    if let Some(q) = quiet {
        // What the server writes about the probe may still be on its way.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            q.store(false, std::sync::atomic::Ordering::Relaxed);
        });
    }
    answer
}

async fn probe_stdio_quietly(conn: &mut Connection) -> Option<Probe> {
    let id = Id::string("mcp-proxy-probe");
    conn.tx.send(discover_request(id.clone())).await.ok()?;
    let deadline = tokio::time::Instant::now() + PROBE_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, conn.rx.recv()).await {
            Err(_) => {
                tracing::info!(
                    "no answer to server/discover within {}s; treating the server as session-based \
                     (--server-era legacy skips the probe)",
                    PROBE_WAIT.as_secs()
                );
                return Some(Probe::Legacy("no answer to server/discover".into()));
            }
            Ok(None) | Ok(Some(Inbound::Closed(_))) => return None,
            Ok(Some(Inbound::Message { msg, .. })) => {
                if msg.is_response() && msg.id().as_ref() == Some(&id) {
                    return Some(classify(&msg));
                }
                tracing::debug!("ignored a message sent before the probe's answer");
            }
        }
    }
}

/// A link that speaks the session-based revisions over `inner`, a modern server's link.
pub fn wrap(inner: Connection, discover: Value) -> Connection {
    let (tx, from_route) = mpsc::channel::<Message>(256);
    let (to_route, rx) = mpsc::channel::<Inbound>(256);
    let describe = inner.describe.clone();
    let pid = inner.pid;
    let task = tokio::spawn(run(inner, from_route, to_route, discover));
    Connection {
        tx,
        rx,
        task,
        describe,
        quiet: None,
        pid,
    }
}

/// The one member of a result that decides how the adapter handles it.
#[derive(serde::Deserialize)]
struct ResultKind {
    #[serde(rename = "resultType")]
    result_type: Option<String>,
}

/// A request on its way through the adapter.
struct Call {
    /// The id the route gave it.
    route_id: Id,
    /// The request as the server got it (without input responses).
    request: Message,
    /// Whether the adapter translates its answers (a legacy request) or passes them through.
    translate: bool,
    rounds: usize,
}

/// A call whose server asked for input that the route's client is giving.
struct Gathering {
    call: Call,
    state: Option<Value>,
    missing: HashSet<String>,
    answers: Map<String, Value>,
}

struct Adapter {
    up: mpsc::Sender<Message>,
    down: mpsc::Sender<Inbound>,
    discover: Value,
    capabilities: Value,
    client_info: Value,
    log_level: Option<String>,
    next: u64,
    calls: HashMap<u64, Call>,
    gathering: HashMap<u64, Gathering>,
    /// Our request to the route's client → (gathering key, input key).
    asks: HashMap<Id, (u64, String)>,
    /// The route's id → our current upstream id for it.
    by_route: HashMap<Id, u64>,
    subscriptions: BTreeSet<String>,
    listen: Option<u64>,
    listening: bool,
    /// Earlier listen streams, cancelled once the current one is acknowledged (no gap).
    retired: Vec<u64>,
    /// Subscription changes answered once the server acknowledged the new filter.
    awaiting_ack: Vec<Id>,
}

async fn run(
    inner: Connection,
    mut from_route: mpsc::Receiver<Message>,
    down: mpsc::Sender<Inbound>,
    discover: Value,
) {
    let Connection {
        tx: up,
        rx: mut from_server,
        task: inner_task,
        ..
    } = inner;
    let mut a = Adapter {
        up,
        down,
        discover,
        capabilities: json!({}),
        client_info: json!({ "name": "mcp-proxy", "version": env!("CARGO_PKG_VERSION") }),
        log_level: None,
        next: 0,
        calls: HashMap::new(),
        gathering: HashMap::new(),
        asks: HashMap::new(),
        by_route: HashMap::new(),
        subscriptions: BTreeSet::new(),
        listen: None,
        listening: false,
        retired: vec![],
        awaiting_ack: vec![],
    };
    let (reopen_tx, mut reopen_rx) = mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            m = from_route.recv() => match m {
                Some(m) => a.on_route(m).await,
                None => break,
            },
            i = from_server.recv() => match i {
                Some(Inbound::Message { msg, related }) => {
                    if let Some(again) = a.on_server(msg, related).await {
                        let tx = reopen_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(again).await;
                            let _ = tx.try_send(());
                        });
                    }
                }
                Some(Inbound::Closed(reason)) => {
                    let _ = a.down.send(Inbound::Closed(reason)).await;
                    break;
                }
                None => {
                    let _ = a.down.send(Inbound::Closed("the server link ended".into())).await;
                    break;
                }
            },
            Some(()) = reopen_rx.recv() => {
                if a.listening && a.listen.is_none() {
                    a.open_listen().await;
                }
            }
        }
    }
    drop(a);
    // Nothing more is read: the transport must not wait for room to hand over its last words.
    drop(from_server);
    let _ = tokio::time::timeout(Duration::from_secs(6), inner_task).await;
}

impl Adapter {
    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    async fn to_route(&self, msg: Message, related: Option<Id>) {
        let _ = self.down.send(Inbound::Message { msg, related }).await;
    }

    fn meta(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(META_VERSION.into(), MODERN.into());
        m.insert(META_CAPABILITIES.into(), self.capabilities.clone());
        m.insert(META_CLIENT_INFO.into(), self.client_info.clone());
        if let Some(l) = &self.log_level {
            m.insert(META_LOG_LEVEL.into(), l.clone().into());
        }
        m
    }

    async fn on_route(&mut self, msg: Message) {
        if msg.is_request() {
            return self.route_request(msg).await;
        }
        if msg.is_notification() {
            match msg.method().unwrap_or("") {
                "notifications/initialized" => {
                    self.listening = true;
                    self.open_listen().await;
                }
                "notifications/cancelled" => {
                    let Some(route_id) = msg.cancelled_request_id() else {
                        return;
                    };
                    let Some(up) = self.by_route.remove(&route_id) else {
                        return;
                    };
                    if self.calls.remove(&up).is_some() {
                        let mut m = msg;
                        m.set_param("requestId", Id::number(up).to_raw());
                        let _ = self.up.send(m).await;
                    }
                    if self.gathering.remove(&up).is_some() {
                        let ours: Vec<Id> = self
                            .asks
                            .iter()
                            .filter(|(_, (k, _))| *k == up)
                            .map(|(id, _)| id.clone())
                            .collect();
                        for id in ours {
                            self.asks.remove(&id);
                            self.to_route(
                                crate::route::pipe::cancelled(&id, "the request was cancelled"),
                                None,
                            )
                            .await;
                        }
                    }
                }
                // 2026-07-28 has no roots notifications: roots are asked per request.
                "notifications/roots/list_changed" => {}
                _ => {
                    let _ = self.up.send(msg).await;
                }
            }
            return;
        }
        // An answer of the route's client to one of our input requests.
        let Some(id) = msg.id() else { return };
        let Some((key, input)) = self.asks.remove(&id) else {
            // Not ours: an answer to a request the server sent itself.
            let _ = self.up.send(msg).await;
            return;
        };
        let Some(g) = self.gathering.get_mut(&key) else {
            return;
        };
        if let Some(err) = msg.error_value() {
            let err: Value = serde_json::from_str(err.get()).unwrap_or_default();
            let Some(g) = self.gathering.remove(&key) else {
                return;
            };
            self.by_route.remove(&g.call.route_id);
            self.asks.retain(|_, (k, _)| *k != key);
            let text = format!(
                "the client could not give the input the server asked for ({input}): {}",
                err.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
            );
            let code = err
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(code::INTERNAL_ERROR);
            let rid = g.call.route_id.clone();
            self.to_route(Message::error(rid.clone(), code, &text, None), Some(rid))
                .await;
            return;
        }
        g.answers.insert(
            input.clone(),
            msg.result_as::<Value>().unwrap_or(Value::Null),
        );
        g.missing.remove(&input);
        if g.missing.is_empty()
            && let Some(g) = self.gathering.remove(&key)
        {
            self.retry(g.call, Some(g.answers), g.state).await;
        }
    }

    async fn route_request(&mut self, msg: Message) {
        let Some(route_id) = msg.id() else { return };
        let ok = |id: Id| Message::response(id, to_raw(&json!({})));
        match msg.method().unwrap_or("") {
            "initialize" => {
                let p = msg.params_as::<Value>().unwrap_or(Value::Null);
                if let Some(c) = p.get("capabilities") {
                    self.capabilities = c.clone();
                }
                if let Some(i) = p.get("clientInfo") {
                    self.client_info = i.clone();
                }
                let asked = p
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let answer = initialize_result(&self.discover, &negotiate(asked, LATEST_LEGACY));
                return self
                    .to_route(Message::response(route_id, to_raw(&answer)), None)
                    .await;
            }
            "ping" => return self.to_route(ok(route_id), None).await,
            "logging/setLevel" => {
                self.log_level = msg
                    .params_as::<Value>()
                    .and_then(|p| p.get("level")?.as_str().map(str::to_owned));
                return self.to_route(ok(route_id), None).await;
            }
            m @ ("resources/subscribe" | "resources/unsubscribe") => {
                let uri = msg
                    .params_as::<Value>()
                    .and_then(|p| p.get("uri")?.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let changed = if m == "resources/subscribe" {
                    self.subscriptions.insert(uri)
                } else {
                    self.subscriptions.remove(&uri)
                };
                if !(changed && self.listening) {
                    return self.to_route(ok(route_id), None).await;
                }
                // Answered when the server has acknowledged the new filter, so that what
                // the client does next is already covered.
                self.awaiting_ack.push(route_id);
                if let Some(old) = self.listen.take() {
                    self.retired.push(old);
                }
                if !self.open_listen().await {
                    self.acknowledged().await;
                }
                return;
            }
            _ => {}
        }
        let modern = super::RequestMeta::of(&msg)
            .version
            .is_some_and(|v| super::is_modern(&v));
        let mut request = msg;
        if !modern {
            request.set_param_metas(
                self.meta()
                    .into_iter()
                    .map(|(k, v)| (k, to_raw(&v)))
                    .collect(),
            );
        }
        let call = Call {
            route_id,
            request,
            translate: !modern,
            rounds: 0,
        };
        self.send_call(call).await;
    }

    async fn send_call(&mut self, call: Call) {
        let up = self.next_id();
        let mut m = call.request.clone();
        m.set_id(&Id::number(up));
        self.by_route.insert(call.route_id.clone(), up);
        self.calls.insert(up, call);
        let _ = self.up.send(m).await;
    }

    /// The original request again, with the client's input and the server's state.
    async fn retry(
        &mut self,
        mut call: Call,
        answers: Option<Map<String, Value>>,
        state: Option<Value>,
    ) {
        let mut again = call.request.clone();
        if let Some(a) = answers {
            again.set_param("inputResponses", to_raw(&Value::Object(a)));
        }
        if let Some(s) = state {
            again.set_param("requestState", to_raw(&s));
        }
        let up = self.next_id();
        again.set_id(&Id::number(up));
        call.rounds += 1;
        self.by_route.insert(call.route_id.clone(), up);
        self.calls.insert(up, call);
        let _ = self.up.send(again).await;
    }

    /// Handle a message from the server; `Some(delay)` asks for the listen stream to be
    /// opened again after that delay.
    async fn on_server(&mut self, mut msg: Message, related: Option<Id>) -> Option<Duration> {
        let related_route = related
            .and_then(|r| r.as_u64())
            .and_then(|up| self.calls.get(&up).map(|c| c.route_id.clone()));
        if msg.is_response() {
            let up = msg.id().and_then(|i| i.as_u64())?;
            if let Some(i) = self.retired.iter().position(|r| *r == up) {
                self.retired.remove(i);
                return None;
            }
            if self.listen == Some(up) {
                self.listen = None;
                self.answer_subscriptions().await;
                let gone = msg
                    .error_value()
                    .is_some_and(|e| e.get().contains("-32601"));
                if gone {
                    tracing::warn!("the server does not offer subscriptions/listen");
                    self.listening = false;
                    return None;
                }
                return self.listening.then_some(Duration::from_secs(1));
            }
            let call = self.calls.remove(&up)?;
            if !call.translate {
                self.by_route.remove(&call.route_id);
                msg.set_id(&call.route_id);
                self.to_route(msg, Some(call.route_id)).await;
                return None;
            }
            // Only the kind of result is read here; the rest stays as the server wrote it.
            let kind = msg.result_as::<ResultKind>().and_then(|k| k.result_type);
            if kind.as_deref() != Some("input_required") {
                self.by_route.remove(&call.route_id);
                if kind.is_some() {
                    // Legacy clients know no resultType; everything else passes through.
                    msg.remove_result_member("resultType");
                }
                msg.set_id(&call.route_id);
                self.to_route(msg, Some(call.route_id)).await;
                return None;
            }
            let result = msg.result_as::<Value>().unwrap_or(Value::Null);
            self.ask(call, result).await;
            return None;
        }
        if msg.is_notification() {
            match msg.method().unwrap_or("") {
                "notifications/subscriptions/acknowledged" => {
                    let of = msg
                        .params_as::<Value>()
                        .and_then(|p| p.get("_meta")?.get(super::META_SUBSCRIPTION)?.as_u64());
                    if of.is_some() && of == self.listen {
                        tracing::debug!("subscription acknowledged by the server");
                        self.acknowledged().await;
                    }
                }
                _ => self.to_route(msg, related_route).await,
            }
            return None;
        }
        // A server request (not part of 2026-07-28, but pass it on).
        self.to_route(msg, related_route).await;
        None
    }

    /// Turn an `input_required` result into requests to the route's client.
    async fn ask(&mut self, call: Call, result: Value) {
        let route_id = call.route_id.clone();
        let max_rounds = crate::limits::get().max_input_rounds;
        if call.rounds >= max_rounds {
            self.by_route.remove(&route_id);
            let m = Message::error(
                route_id.clone(),
                code::INTERNAL_ERROR,
                &format!(
                    "the server asked for input more than {max_rounds} times (--max-input-rounds); giving up"
                ),
                None,
            );
            return self.to_route(m, Some(route_id)).await;
        }
        let state = result.get("requestState").cloned();
        let requests = result
            .get("inputRequests")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if requests.is_empty() {
            // Nothing to ask: retry at once with the state.
            return self.retry(call, None, state).await;
        }
        let key = self.next_id();
        let mut missing = HashSet::new();
        let mut asks = vec![];
        for (input, req) in requests {
            let n = self.next_id();
            let id = Id::string(&format!("mcp-proxy-input-{n}"));
            let method = req.get("method").and_then(Value::as_str).unwrap_or("");
            let params = req.get("params").map(to_raw);
            asks.push(Message::request(id.clone(), method, params));
            self.asks.insert(id, (key, input.clone()));
            missing.insert(input);
        }
        self.by_route.insert(route_id.clone(), key);
        self.gathering.insert(
            key,
            Gathering {
                call,
                state,
                missing,
                answers: Map::new(),
            },
        );
        // All at once: the client may answer them in any order.
        for m in asks {
            self.to_route(m, Some(route_id.clone())).await;
        }
    }

    /// The current listen stream is in place: retire the older ones, answer the
    /// subscription changes that waited for it.
    async fn acknowledged(&mut self) {
        for old in std::mem::take(&mut self.retired) {
            let _ = self
                .up
                .send(crate::route::pipe::cancelled(
                    &Id::number(old),
                    "the subscriptions changed",
                ))
                .await;
        }
        self.answer_subscriptions().await;
    }

    async fn answer_subscriptions(&mut self) {
        for id in std::mem::take(&mut self.awaiting_ack) {
            self.to_route(Message::response(id, to_raw(&json!({}))), None)
                .await;
        }
    }

    /// Open the change-notification stream for what the server offers and the route wants;
    /// false when there is nothing to listen for.
    async fn open_listen(&mut self) -> bool {
        let caps = self
            .discover
            .get("capabilities")
            .cloned()
            .unwrap_or(Value::Null);
        let offers = |cap: &str| {
            caps.get(cap)
                .and_then(|c| c.get("listChanged"))
                .and_then(Value::as_bool)
                == Some(true)
        };
        let mut filter = Map::new();
        for (flag, cap) in [
            ("toolsListChanged", "tools"),
            ("promptsListChanged", "prompts"),
            ("resourcesListChanged", "resources"),
        ] {
            if offers(cap) {
                filter.insert(flag.into(), true.into());
            }
        }
        if !self.subscriptions.is_empty() {
            filter.insert(
                "resourceSubscriptions".into(),
                json!(self.subscriptions.iter().collect::<Vec<_>>()),
            );
        }
        if filter.is_empty() {
            return false;
        }
        let up = self.next_id();
        let params = json!({ "_meta": self.meta(), "notifications": filter });
        self.listen = Some(up);
        let _ = self
            .up
            .send(Message::request(
                Id::number(up),
                "subscriptions/listen",
                Some(to_raw(&params)),
            ))
            .await;
        true
    }
}

/// A legacy `initialize` result that says what `server/discover` said.
fn initialize_result(discover: &Value, version: &str) -> Value {
    let mut caps = discover
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    // Subscriptions are served from subscriptions/listen.
    if let Some(r) = caps.get_mut("resources").and_then(Value::as_object_mut) {
        r.insert("subscribe".into(), true.into());
    }
    let info = discover
        .get("_meta")
        .and_then(|m| m.get(META_SERVER_INFO))
        .cloned()
        .unwrap_or_else(|| json!({ "name": "unknown", "version": "0" }));
    let mut out = json!({
        "protocolVersion": version,
        "capabilities": caps,
        "serverInfo": info,
    });
    if let (Some(i), Some(o)) = (discover.get("instructions"), out.as_object_mut()) {
        o.insert("instructions".into(), i.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialize_is_built_from_discover() {
        let d = json!({
            "resultType": "complete",
            "supportedVersions": ["2026-07-28"],
            "capabilities": { "tools": { "listChanged": true }, "resources": {} },
            "instructions": "hi",
            "_meta": { META_SERVER_INFO: { "name": "s", "version": "2" } },
            "ttlMs": 0,
            "cacheScope": "public",
        });
        let r = initialize_result(&d, "2025-06-18");
        assert_eq!(r["protocolVersion"], "2025-06-18");
        assert_eq!(r["serverInfo"]["name"], "s");
        assert_eq!(r["capabilities"]["resources"]["subscribe"], true);
        assert_eq!(r["instructions"], "hi");
        assert!(r.get("resultType").is_none());
    }
}
