//! One upstream link shared by many client sessions.
//!
//! The hub initialises the server once, with capabilities that let every client's features
//! work, and answers each client's `initialize` from that. Every request gets an upstream id
//! of the hub's own (and its progress token one too), so answers, progress and cancellations
//! find the session they belong to. Server requests (sampling, elicitation, roots) go to the
//! session whose request is being handled; resource subscriptions and log levels are kept
//! per session and combined upstream.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};

use super::pipe::cancelled;
use super::{Outgoing, RouteOptions, SessionTx, level_rank};
use crate::jsonrpc::{Id, Message, code, to_raw};
use crate::transport::{self, Inbound, Target};

/// Protocol revisions this proxy speaks with session-based clients, oldest first.
pub const LEGACY_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
pub const LATEST_LEGACY: &str = "2025-11-25";

/// The hub's view of the server.
#[derive(Clone, Debug)]
pub enum Status {
    Starting,
    Ready(Arc<InitAnswer>),
    Failed(String),
}

/// What the server said to our `initialize`.
#[derive(Debug)]
pub struct InitAnswer {
    pub result: Box<RawValue>,
    pub version: String,
}

struct SessionEntry {
    tx: SessionTx,
    capabilities: Value,
    level: Option<String>,
    /// A client that declares its capabilities per request (2026-07-28): it is given the
    /// server's requests made during its calls even when it lacks the capability, so that
    /// it can refuse the call with "missing capability".
    per_request: bool,
    /// Its requests in flight (upstream ids), and the server's requests it was asked: so
    /// that ending one session costs nothing in the number of others.
    ups: HashSet<u64>,
    asks: HashSet<Id>,
}

struct Pending {
    session: u64,
    client_id: Id,
    progress: Option<Id>,
    deadline: Option<Instant>,
    seq: u64,
    /// A call that may make the server ask the client something (a tool call, a prompt, a
    /// resource read), as opposed to a listing.
    interactive: bool,
}

#[derive(Default)]
struct State {
    next: u64,
    sessions: HashMap<u64, SessionEntry>,
    pending: HashMap<u64, Pending>,
    /// The requests in flight by (call that may ask the client, sequence): the latest call
    /// is found without looking at the others.
    recency: std::collections::BTreeMap<(bool, u64), u64>,
    by_client: HashMap<(u64, Id), u64>,
    /// Upstream progress token → (session, the client's token).
    progress: HashMap<Id, (u64, Id)>,
    /// Server request id → the session asked to answer it.
    server_requests: HashMap<Id, u64>,
    /// Requests the hub made itself; their answers go to a waiter.
    internal: HashMap<u64, oneshot::Sender<Message>>,
    /// Requests the hub made of clients (roots gathering); answers go to a waiter.
    asked_clients: HashMap<(u64, Id), oneshot::Sender<Message>>,
    subscriptions: HashMap<String, HashSet<u64>>,
    upstream_level: Option<String>,
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Note a request in flight.
    fn pend(&mut self, up: u64, p: Pending) {
        self.recency.insert((p.interactive, p.seq), up);
        if let Some(e) = self.sessions.get_mut(&p.session) {
            e.ups.insert(up);
        }
        self.pending.insert(up, p);
    }

    /// Forget a request in flight.
    fn unpend(&mut self, up: u64) -> Option<Pending> {
        let p = self.pending.remove(&up)?;
        self.recency.remove(&(p.interactive, p.seq));
        if let Some(e) = self.sessions.get_mut(&p.session) {
            e.ups.remove(&up);
        }
        Some(p)
    }

    /// Note that `session` was asked the server's request `id`.
    fn asked(&mut self, id: Id, session: u64) {
        if let Some(e) = self.sessions.get_mut(&session) {
            e.asks.insert(id.clone());
        }
        self.server_requests.insert(id, session);
    }

    /// Forget the server's request `id`; the session that was asked it.
    fn answered(&mut self, id: &Id) -> Option<u64> {
        let session = self.server_requests.remove(id)?;
        if let Some(e) = self.sessions.get_mut(&session) {
            e.asks.remove(id);
        }
        Some(session)
    }
}

pub struct Hub {
    /// The link to the server; taken away at shutdown so that the link can end.
    tx: std::sync::RwLock<Option<mpsc::Sender<Message>>>,
    state: Mutex<State>,
    status: watch::Receiver<Status>,
    next_session: std::sync::atomic::AtomicU64,
    options: RouteOptions,
    conn_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    modern: std::sync::atomic::AtomicBool,
    /// What to connect to again when the link ends (`None`: never).
    target: Option<Target>,
    /// Set by `shutdown`: a link that ends is not started again.
    stopping: std::sync::atomic::AtomicBool,
    /// Fires at `shutdown`, to wake a wait between restarts.
    stop: tokio_util::sync::CancellationToken,
    /// How many times the server was started again.
    restarts: std::sync::atomic::AtomicU64,
    /// The server process, when it is a child (0: none).
    pid: std::sync::atomic::AtomicU32,
    /// When the server last became ready.
    up_since: Mutex<Option<std::time::Instant>>,
    /// What the log calls the server.
    label: String,
    /// Whether it can be reached, and when it last was (for `/status`).
    health: Arc<crate::health::Health>,
    /// Why the last link ended, for what waits on it.
    ended: Mutex<Option<String>>,
}

impl Hub {
    /// Connect to `target`, then find its protocol era and initialise it in the background.
    /// One task keeps the server running from then on: when its link ends, it is started
    /// again after 1 s, then 2, 4, … at most 60 s apart while it keeps failing.
    pub async fn start(target: &Target, options: RouteOptions) -> Result<Arc<Hub>, String> {
        let conn = transport::connect(target, options.limits)
            .await
            .map_err(|e| e.to_string())?;
        let (status_tx, status) = watch::channel(Status::Starting);
        let hub = Arc::new(Hub::new(status, options, Some(target.clone())));
        tokio::spawn(hub.clone().keep_running(conn, target.clone(), status_tx));
        Ok(hub)
    }

    /// A hub for a server that could not be started: every client gets `reason`.
    pub fn failed(reason: String, options: RouteOptions) -> Arc<Hub> {
        let (_, status) = watch::channel(Status::Failed(reason.clone()));
        let hub = Hub::new(status, options, None);
        hub.health.failed(&reason);
        Arc::new(hub)
    }

    fn new(status: watch::Receiver<Status>, options: RouteOptions, target: Option<Target>) -> Hub {
        Hub {
            tx: std::sync::RwLock::new(None),
            state: Mutex::new(State::default()),
            status,
            next_session: Default::default(),
            options,
            conn_task: Mutex::new(None),
            modern: Default::default(),
            stopping: Default::default(),
            stop: Default::default(),
            restarts: Default::default(),
            pid: Default::default(),
            up_since: Default::default(),
            label: target.as_ref().map(Target::label).unwrap_or_default(),
            ended: Default::default(),
            health: match &target {
                Some(Target::Url(u)) => u.health.0.clone().unwrap_or_default(),
                _ => {
                    let h = crate::health::Health::new();
                    h.set_transport("stdio");
                    h
                }
            },
            target,
        }
    }

    /// Whether the server can be reached, and when it last was.
    pub fn health(&self) -> Arc<crate::health::Health> {
        self.health.clone()
    }

    /// How the server is signed in to, when it wants OAuth.
    pub fn auth(&self) -> Option<Arc<crate::oauth::OAuth>> {
        match &self.target {
            Some(Target::Url(u)) => u.auth.0.clone(),
            _ => None,
        }
    }

    /// Settle the era of a new link, take it into use and initialise the server over it;
    /// the task that reads the link (it ends with the link, saying why).
    async fn bring_up(
        self: &Arc<Self>,
        conn: transport::Connection,
        target: &Target,
    ) -> Result<(InitAnswer, tokio::task::JoinHandle<String>), String> {
        let (conn, modern) = crate::era::upstream::settle(conn, target, self.options)
            .await
            .map_err(|e| e.reason)?;
        self.modern
            .store(modern, std::sync::atomic::Ordering::Relaxed);
        self.health.set_modern(modern);
        self.pid
            .store(conn.pid.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut tx) = self.tx.write() {
            *tx = Some(conn.tx);
        }
        if let Ok(mut t) = self.conn_task.lock() {
            *t = Some(conn.task);
        }
        if let Ok(mut e) = self.ended.lock() {
            *e = None;
        }
        let reader = tokio::spawn(read_upstream(self.clone(), conn.rx));
        match self.initialize().await {
            Ok(answer) => {
                if let Ok(mut t) = self.up_since.lock() {
                    *t = Some(std::time::Instant::now());
                }
                Ok((answer, reader))
            }
            Err(e) => {
                // The link is of no use: end it (the child is ended and reaped with it).
                self.end_link().await;
                reader.abort();
                Err(e)
            }
        }
    }

    /// End the current link and wait (bounded) for its transport to finish.
    async fn end_link(&self) {
        if let Ok(mut tx) = self.tx.write() {
            tx.take();
        }
        let task = self.conn_task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(12), task).await;
        }
    }

    /// Keep the server running: bring up `first`, and whenever the link ends (or a start
    /// fails), start it again after the backoff, until `shutdown`. The one place that starts
    /// this server again, so there is one chain of restarts and each child is reaped.
    async fn keep_running(
        self: Arc<Self>,
        first: transport::Connection,
        target: Target,
        status: watch::Sender<Status>,
    ) {
        let mut next = Some(first);
        let mut wait = RESTART_FIRST;
        let mut starts: u64 = 0;
        loop {
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let conn = match next.take() {
                Some(c) => Ok(c),
                None => transport::connect(&target, self.options.limits)
                    .await
                    .map_err(|e| e.to_string()),
            };
            let outcome = match conn {
                Ok(c) => self.bring_up(c, &target).await,
                Err(e) => Err(e),
            };
            starts += 1;
            match outcome {
                Ok((answer, reader)) => {
                    status.send_replace(Status::Ready(Arc::new(answer)));
                    if starts > 1 {
                        tracing::info!(server = %self.label, restarts = starts - 1, "server started again");
                        self.after_restart();
                    }
                    let up = std::time::Instant::now();
                    let reason = tokio::select! {
                        r = reader => r.unwrap_or_else(|_| "the server link ended".into()),
                        _ = self.stop.cancelled() => return,
                    };
                    close_all(&self, &status, reason);
                    self.end_link().await;
                    // A server that ran a good while before it went gets a quick restart.
                    if up.elapsed() >= RESTART_CAP {
                        wait = RESTART_FIRST;
                    }
                }
                Err(e) => {
                    if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    status.send_replace(Status::Failed(e.clone()));
                    self.health.failed(&e);
                    if starts == 1 {
                        tracing::error!(server = %self.label, "{e}");
                    }
                }
            }
            if self.target.is_none() || self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            self.restarts
                .store(starts, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                server = %self.label,
                "starting the server again in {}s (restart {starts})",
                wait.as_secs()
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => return,
            }
            wait = (wait * 2).min(RESTART_CAP);
        }
    }

    /// The server's process id, when it is a child process that runs.
    pub fn pid(&self) -> Option<u32> {
        let pid = self.pid.load(std::sync::atomic::Ordering::Relaxed);
        (pid != 0 && matches!(self.status(), Status::Ready(_))).then_some(pid)
    }

    /// How long the server has been ready, when it is.
    pub fn uptime(&self) -> Option<Duration> {
        if !matches!(self.status(), Status::Ready(_)) {
            return None;
        }
        self.up_since.lock().ok()?.map(|t| t.elapsed())
    }

    /// How many times the server was started again after its link ended.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the server speaks revision 2026-07-28 (known once the hub is ready).
    pub fn upstream_modern(&self) -> bool {
        self.modern.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Wait (at most two minutes) until the server is initialised: what it said, or the
    /// JSON-RPC error code and reason to give clients.
    pub async fn ready(&self) -> Result<Arc<InitAnswer>, (i64, String)> {
        let mut status = self.status.clone();
        let ready = tokio::time::timeout(Duration::from_secs(120), async {
            status
                .wait_for(|s| !matches!(s, Status::Starting))
                .await
                .map(|s| s.clone())
        })
        .await;
        match ready {
            Ok(Ok(Status::Ready(init))) => Ok(init),
            Ok(Ok(Status::Failed(reason))) => Err((code::UPSTREAM_UNAVAILABLE, reason)),
            _ => Err((
                code::UPSTREAM_TIMEOUT,
                "the server did not finish initialising".to_owned(),
            )),
        }
    }

    async fn initialize(&self) -> Result<InitAnswer, String> {
        let params = serde_json::json!({
            "protocolVersion": LATEST_LEGACY,
            "capabilities": {
                "roots": { "listChanged": true },
                "sampling": { "context": {}, "tools": {} },
                "elicitation": { "form": {}, "url": {} },
            },
            "clientInfo": { "name": "mcp-proxy", "version": env!("CARGO_PKG_VERSION") },
        });
        let answer = self
            .call_internal("initialize", to_raw(&params), Duration::from_secs(60))
            .await?;
        let Some(result) = answer.result() else {
            return Err(format!(
                "the server refused initialize: {}",
                answer
                    .error_value()
                    .map(|e| e.get().to_owned())
                    .unwrap_or_else(|| "no result".into())
            ));
        };
        let version = serde_json::from_str::<Value>(result.get())
            .ok()
            .and_then(|v| v.get("protocolVersion")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| LATEST_LEGACY.to_owned());
        let result = result.to_raw_value();
        self.send_upstream(Message::notification("notifications/initialized", None));
        tracing::info!(server = %self.label, protocol = %version, "server initialised");
        Ok(InitAnswer { result, version })
    }

    /// Send a request of the hub's own and wait for its answer.
    async fn call_internal(
        &self,
        method: &str,
        params: Box<RawValue>,
        wait: Duration,
    ) -> Result<Message, String> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = self.state.lock().map_err(|_| "hub state poisoned")?;
            let id = st.next_id();
            st.internal.insert(id, tx);
            id
        };
        self.sender()
            .ok_or("the server link is closed")?
            .send(Message::request(Id::number(id), method, Some(params)))
            .await
            .map_err(|_| "the server link is closed".to_owned())?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(_)) => Err(self.closed_reason()),
            Err(_) => Err(format!("no answer to {method} within {}s", wait.as_secs())),
        }
    }

    fn closed_reason(&self) -> String {
        if let Some(why) = self.ended.lock().ok().and_then(|e| e.clone()) {
            return why;
        }
        match self.status() {
            Status::Failed(r) => r,
            _ => "the server link is closed".to_owned(),
        }
    }

    /// Attach a new client session.
    pub fn attach(self: &Arc<Self>, tx: SessionTx) -> HubSession {
        let id = self
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if let Ok(mut st) = self.state.lock() {
            st.sessions.insert(
                id,
                SessionEntry {
                    tx,
                    capabilities: Value::Null,
                    level: None,
                    per_request: false,
                    ups: Default::default(),
                    asks: Default::default(),
                },
            );
        }
        HubSession {
            hub: self.clone(),
            id,
            closed: Default::default(),
        }
    }

    pub fn session_count(&self) -> usize {
        self.state.lock().map(|s| s.sessions.len()).unwrap_or(0)
    }

    /// End the link: the server is shut down cleanly (stdin closed or session deleted).
    pub async fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop.cancel();
        if let Ok(mut tx) = self.tx.write() {
            tx.take();
        }
        let task = self.conn_task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(6), task).await;
        }
    }

    fn sender(&self) -> Option<mpsc::Sender<Message>> {
        self.tx.read().ok().and_then(|t| t.clone())
    }

    fn deliver(&self, st: &mut State, session: u64, msg: Message, related: Option<Id>) {
        let Some(entry) = st.sessions.get(&session) else {
            return;
        };
        match entry.tx.try_send(Outgoing::new(msg, related)) {
            Ok(()) => {}
            Err(super::SendError::Full) => {
                crate::warn_throttled!(
                    format!("not-reading:{}", self.label),
                    "client of session {session} is not reading its messages; ending its session"
                );
                self.end_session(st, session);
            }
            Err(super::SendError::Closed) => {
                self.end_session(st, session);
            }
        }
    }

    /// Forget session `id`: its requests in flight are cancelled upstream and the server's
    /// requests it was asked are answered with an error.
    fn end_session(&self, st: &mut State, id: u64) {
        let Some(entry) = st.sessions.remove(&id) else {
            return;
        };
        if !st.asked_clients.is_empty() {
            st.asked_clients.retain(|(s, _), _| *s != id);
        }
        for up in entry.ups {
            if let Some(p) = st.unpend(up) {
                st.by_client.remove(&(id, p.client_id));
                if let Some(t) = p.progress {
                    st.progress.remove(&t);
                }
            }
            self.send_upstream(cancelled(&Id::number(up), "the client went away"));
        }
        for ask in entry.asks {
            st.server_requests.remove(&ask);
            self.send_upstream(Message::error(
                ask,
                code::INTERNAL_ERROR,
                "the client went away",
                None,
            ));
        }
    }

    /// Queue a message for the server without waiting (used under the state lock).
    fn send_upstream(&self, msg: Message) {
        let Some(tx) = self.sender() else { return };
        if let Err(mpsc::error::TrySendError::Full(msg)) = tx.try_send(msg) {
            tokio::spawn(async move {
                let _ = tx.send(msg).await;
            });
        }
    }
}

/// A client session attached to a hub.
pub struct HubSession {
    hub: Arc<Hub>,
    id: u64,
    closed: std::sync::atomic::AtomicBool,
}

impl HubSession {
    pub async fn send(&self, msg: Message) {
        let hub = &self.hub;
        if msg.is_request() {
            self.request(msg).await;
        } else if msg.is_notification() {
            match msg.method() {
                Some("notifications/initialized") => {
                    if self.has_capability("roots") {
                        hub.send_upstream(Message::notification(
                            "notifications/roots/list_changed",
                            None,
                        ));
                    }
                }
                Some("notifications/cancelled") => {
                    let Some(client_id) = msg.cancelled_request_id() else {
                        return;
                    };
                    let upstream = hub.state.lock().ok().and_then(|mut st| {
                        let up = st.by_client.remove(&(self.id, client_id))?;
                        if let Some(p) = st.unpend(up)
                            && let Some(t) = p.progress
                        {
                            st.progress.remove(&t);
                        }
                        Some(up)
                    });
                    if let Some(up) = upstream {
                        let mut m = msg;
                        m.set_param("requestId", Id::number(up).to_raw());
                        hub.send_upstream(m);
                    }
                }
                _ => hub.send_upstream(msg),
            }
        } else {
            // An answer to a server request (or to the hub's own question).
            let Some(id) = msg.id() else { return };
            let waiter = hub
                .state
                .lock()
                .ok()
                .and_then(|mut st| st.asked_clients.remove(&(self.id, id.clone())));
            if let Some(w) = waiter {
                let _ = w.send(msg);
                return;
            }
            let ours = hub
                .state
                .lock()
                .map(|mut st| st.answered(&id).is_some())
                .unwrap_or(false);
            if ours {
                hub.send_upstream(msg);
            } else {
                tracing::debug!("dropping an answer to no known server request");
            }
        }
    }

    fn has_capability(&self, cap: &str) -> bool {
        self.hub
            .state
            .lock()
            .map(|st| {
                st.sessions
                    .get(&self.id)
                    .is_some_and(|e| e.capabilities.get(cap).is_some())
            })
            .unwrap_or(false)
    }

    fn reply(&self, msg: Message) {
        let hub = &self.hub;
        if let Ok(mut st) = hub.state.lock() {
            let related = msg.id();
            hub.deliver(&mut st, self.id, msg, related);
        }
    }

    async fn request(&self, msg: Message) {
        let hub = &self.hub;
        let Some(client_id) = msg.id() else { return };
        let method = msg.method().unwrap_or("").to_owned();
        let method = method.as_str();
        match method {
            "initialize" => return self.initialize(msg, client_id).await,
            "ping" => {
                return self.reply(Message::response(client_id, to_raw(&serde_json::json!({}))));
            }
            _ => {}
        }
        if let Status::Failed(reason) = hub.status() {
            return self.reply(Message::error(
                client_id,
                code::UPSTREAM_UNAVAILABLE,
                &reason,
                None,
            ));
        }
        let mut msg = msg;
        {
            let Ok(mut st) = hub.state.lock() else { return };
            match method {
                "logging/setLevel" => {
                    let level = msg
                        .params_as::<Value>()
                        .and_then(|p| p.get("level")?.as_str().map(str::to_owned));
                    if let Some(e) = st.sessions.get_mut(&self.id) {
                        e.level = level;
                    }
                    // Upstream gets the most verbose level any client asked for.
                    let lowest = st
                        .sessions
                        .values()
                        .filter_map(|s| s.level.clone())
                        .min_by_key(|l| level_rank(l));
                    if lowest.is_some() && lowest == st.upstream_level {
                        let ok = Message::response(client_id, to_raw(&serde_json::json!({})));
                        hub.deliver(&mut st, self.id, ok, None);
                        return;
                    }
                    st.upstream_level = lowest.clone();
                    if let Some(l) = lowest {
                        msg.set_param("level", to_raw(&l));
                    }
                }
                "resources/subscribe" | "resources/unsubscribe" => {
                    let uri = msg
                        .params_as::<Value>()
                        .and_then(|p| p.get("uri")?.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    let subs = st.subscriptions.entry(uri.clone()).or_default();
                    let forward = if method == "resources/subscribe" {
                        subs.insert(self.id) && subs.len() == 1
                    } else {
                        subs.remove(&self.id) && subs.is_empty()
                    };
                    if subs.is_empty() {
                        st.subscriptions.remove(&uri);
                    }
                    if !forward {
                        let ok = Message::response(client_id, to_raw(&serde_json::json!({})));
                        hub.deliver(&mut st, self.id, ok, None);
                        return;
                    }
                }
                _ => {}
            }
            let up = st.next_id();
            let progress = match msg.progress_token() {
                Some(token) => {
                    let up_token = Id::number(up);
                    st.progress.insert(up_token.clone(), (self.id, token));
                    msg.set_param_meta("progressToken", up_token.to_raw());
                    Some(up_token)
                }
                None => None,
            };
            let seq = up;
            st.pend(
                up,
                Pending {
                    session: self.id,
                    client_id: client_id.clone(),
                    progress,
                    deadline: hub.options.request_timeout.map(|t| Instant::now() + t),
                    seq,
                    interactive: matches!(
                        method,
                        "tools/call" | "prompts/get" | "resources/read" | "completion/complete"
                    ),
                },
            );
            st.by_client.insert((self.id, client_id), up);
            msg.set_id(&Id::number(up));
        }
        let sent = match hub.sender() {
            Some(tx) => tx.send(msg).await.is_ok(),
            None => false,
        };
        if !sent {
            let reason = hub.closed_reason();
            fail_pending(hub, |p| p.session == self.id, &reason);
        }
    }

    /// What the client can answer (sampling, elicitation, roots), as `initialize` would say;
    /// for clients that declare it per request.
    pub fn declare(&self, capabilities: Value) {
        if let Ok(mut st) = self.hub.state.lock()
            && let Some(e) = st.sessions.get_mut(&self.id)
        {
            e.capabilities = capabilities;
            e.per_request = true;
        }
    }

    async fn initialize(&self, msg: Message, client_id: Id) {
        let hub = &self.hub;
        let params = msg.params_as::<Value>().unwrap_or(Value::Null);
        if let Ok(mut st) = hub.state.lock()
            && let Some(e) = st.sessions.get_mut(&self.id)
        {
            e.capabilities = params.get("capabilities").cloned().unwrap_or(Value::Null);
        }
        let answer = match hub.ready().await {
            Ok(init) => {
                let asked = params
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let version = negotiate(asked, &init.version);
                let mut m = Message::response(client_id, init.result.clone());
                m.set_result_member("protocolVersion", to_raw(&version));
                m
            }
            Err((code, reason)) => Message::error(client_id, code, &reason, None),
        };
        self.reply(answer);
    }

    /// End the session: its requests in flight are cancelled upstream, its server requests
    /// answered with an error, its subscriptions dropped.
    pub fn close(&self) {
        self.detach();
    }

    fn detach(&self) {
        if self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let hub = &self.hub;
        let had_roots = self.has_capability("roots");
        let Ok(mut st) = hub.state.lock() else { return };
        hub.end_session(&mut st, self.id);
        if had_roots && !st.sessions.is_empty() {
            hub.send_upstream(Message::notification(
                "notifications/roots/list_changed",
                None,
            ));
        }
        let mut dropped = vec![];
        for (uri, subs) in st.subscriptions.iter_mut() {
            if subs.remove(&self.id) && subs.is_empty() {
                dropped.push(uri.clone());
            }
        }
        for uri in dropped {
            st.subscriptions.remove(&uri);
            let id = st.next_id();
            hub.send_upstream(Message::request(
                Id::number(id),
                "resources/unsubscribe",
                Some(to_raw(&serde_json::json!({ "uri": uri }))),
            ));
            st.internal.insert(id, oneshot::channel().0);
        }
    }
}

impl Drop for HubSession {
    fn drop(&mut self) {
        self.detach();
    }
}

/// The version to tell a client: what it asked for if we speak it, but never newer than the
/// server's.
pub fn negotiate(asked: &str, server: &str) -> String {
    if LEGACY_VERSIONS.contains(&asked) {
        if asked <= server { asked } else { server }.to_owned()
    } else {
        server.to_owned()
    }
}

fn fail_pending(hub: &Hub, which: impl Fn(&Pending) -> bool, reason: &str) {
    let Ok(mut st) = hub.state.lock() else { return };
    let ids: Vec<u64> = st
        .pending
        .iter()
        .filter(|(_, p)| which(p))
        .map(|(k, _)| *k)
        .collect();
    for up in ids {
        if let Some(p) = st.unpend(up) {
            st.by_client.remove(&(p.session, p.client_id.clone()));
            if let Some(t) = p.progress {
                st.progress.remove(&t);
            }
            let m = Message::error(
                p.client_id.clone(),
                code::UPSTREAM_UNAVAILABLE,
                reason,
                None,
            );
            hub.deliver(&mut st, p.session, m, Some(p.client_id));
        }
    }
}

/// Read the server's link until it ends; why it ended.
async fn read_upstream(hub: Arc<Hub>, mut rx: mpsc::Receiver<Inbound>) -> String {
    let timeout = hub.options.request_timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let inbound = tokio::select! {
            i = rx.recv() => i,
            _ = tick.tick(), if timeout.is_some() => {
                expire(&hub);
                continue;
            }
        };
        match inbound {
            Some(Inbound::Message { msg, related }) => {
                hub.health.reached();
                route_inbound(&hub, msg, related)
            }
            Some(Inbound::Closed(reason)) => return link_ended(&hub, reason),
            None => return link_ended(&hub, "the server link ended".into()),
        }
    }
}

/// The link ended: what waits on it (the hub's own `initialize`) learns why at once.
fn link_ended(hub: &Hub, reason: String) -> String {
    if let Ok(mut e) = hub.ended.lock() {
        *e = Some(reason.clone());
    }
    if let Ok(mut st) = hub.state.lock() {
        st.internal.clear();
    }
    reason
}

/// The first wait before starting a server again, and the longest.
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_CAP: Duration = Duration::from_secs(60);

impl Hub {
    /// A new server process knows nothing of the old one's subscriptions and log level, and
    /// its lists may differ: set them up again and tell every client.
    fn after_restart(&self) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let uris: Vec<String> = st.subscriptions.keys().cloned().collect();
        for uri in uris {
            let id = st.next_id();
            st.internal.insert(id, oneshot::channel().0);
            self.send_upstream(Message::request(
                Id::number(id),
                "resources/subscribe",
                Some(to_raw(&serde_json::json!({ "uri": uri }))),
            ));
        }
        if let Some(level) = st.upstream_level.clone() {
            let id = st.next_id();
            st.internal.insert(id, oneshot::channel().0);
            self.send_upstream(Message::request(
                Id::number(id),
                "logging/setLevel",
                Some(to_raw(&serde_json::json!({ "level": level }))),
            ));
        }
        let sessions: Vec<u64> = st.sessions.keys().copied().collect();
        for s in sessions {
            for list in ["tools", "prompts", "resources"] {
                let n = Message::notification(&format!("notifications/{list}/list_changed"), None);
                self.deliver(&mut st, s, n, None);
            }
        }
    }
}

fn close_all(hub: &Hub, status: &watch::Sender<Status>, reason: String) {
    if hub.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        tracing::debug!(server = %hub.label, "server stopped: {reason}");
    } else {
        tracing::warn!(server = %hub.label, "server gone: {reason}");
    }
    status.send_replace(Status::Failed(reason.clone()));
    hub.health.failed(&reason);
    fail_pending(hub, |_| true, &reason);
    if let Ok(mut st) = hub.state.lock() {
        st.internal.clear();
    }
}

fn expire(hub: &Hub) {
    let Some(t) = hub.options.request_timeout else {
        return;
    };
    let now = Instant::now();
    let Ok(mut st) = hub.state.lock() else { return };
    let ids: Vec<u64> = st
        .pending
        .iter()
        .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
        .map(|(k, _)| *k)
        .collect();
    for up in ids {
        let Some(p) = st.unpend(up) else {
            continue;
        };
        st.by_client.remove(&(p.session, p.client_id.clone()));
        if let Some(tok) = p.progress {
            st.progress.remove(&tok);
        }
        hub.send_upstream(cancelled(&Id::number(up), "timed out"));
        let msg = Message::error(
            p.client_id.clone(),
            code::UPSTREAM_TIMEOUT,
            &format!(
                "the server did not answer within {}s (--timeout)",
                t.as_secs()
            ),
            None,
        );
        hub.deliver(&mut st, p.session, msg, Some(p.client_id));
    }
}

fn route_inbound(hub: &Hub, mut msg: Message, related: Option<Id>) {
    let Ok(mut st) = hub.state.lock() else { return };
    if msg.is_response() {
        let Some(up) = msg.id().and_then(|i| i.as_u64()) else {
            tracing::debug!("server answered an id the proxy never sent");
            return;
        };
        if let Some(waiter) = st.internal.remove(&up) {
            let _ = waiter.send(msg);
            return;
        }
        let Some(p) = st.unpend(up) else {
            return;
        };
        st.by_client.remove(&(p.session, p.client_id.clone()));
        if let Some(t) = p.progress {
            st.progress.remove(&t);
        }
        msg.set_id(&p.client_id);
        hub.deliver(&mut st, p.session, msg, Some(p.client_id));
        return;
    }
    if msg.is_request() {
        return server_request(hub, &mut st, msg, related);
    }
    let timeout = hub.options.request_timeout;
    match msg.method().unwrap_or("") {
        "notifications/progress" => {
            let Some(token) = msg.notification_progress_token() else {
                return;
            };
            let Some((session, original)) = st.progress.get(&token).cloned() else {
                return;
            };
            msg.set_param("progressToken", original.to_raw());
            let related = token.as_u64().and_then(|up| {
                let p = st.pending.get_mut(&up)?;
                p.deadline = timeout.map(|t| Instant::now() + t);
                Some(p.client_id.clone())
            });
            hub.deliver(&mut st, session, msg, related);
        }
        "notifications/cancelled" => {
            // The server gave up on one of its own requests.
            let Some(id) = msg.cancelled_request_id() else {
                return;
            };
            if let Some(session) = st.answered(&id) {
                hub.deliver(&mut st, session, msg, None);
            }
        }
        "notifications/resources/updated" => {
            let uri = msg
                .params_as::<Value>()
                .and_then(|p| p.get("uri")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            let subs: Vec<u64> = st
                .subscriptions
                .get(&uri)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            for s in subs {
                hub.deliver(&mut st, s, msg.clone(), None);
            }
        }
        "notifications/message" => {
            let level = msg
                .params_as::<Value>()
                .and_then(|p| p.get("level")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            let targets: Vec<u64> = st
                .sessions
                .iter()
                .filter(|(_, e)| {
                    e.level
                        .as_deref()
                        .is_none_or(|l| level_rank(&level) >= level_rank(l))
                })
                .map(|(k, _)| *k)
                .collect();
            for s in targets {
                hub.deliver(&mut st, s, msg.clone(), None);
            }
        }
        _ => {
            let all: Vec<u64> = st.sessions.keys().copied().collect();
            for s in all {
                hub.deliver(&mut st, s, msg.clone(), None);
            }
        }
    }
}

/// The capability a client needs to answer a server request.
pub fn needed_capability(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

fn server_request(hub: &Hub, st: &mut State, msg: Message, related: Option<Id>) {
    let Some(id) = msg.id() else { return };
    let method = msg.method().unwrap_or("").to_owned();
    if method == "ping" {
        hub.send_upstream(Message::response(id, to_raw(&serde_json::json!({}))));
        return;
    }
    let cap = needed_capability(&method);
    let can = |s: &u64| {
        cap.is_none_or(|c| {
            st.sessions
                .get(s)
                .is_some_and(|e| e.capabilities.get(c).is_some())
        })
    };
    // A server request during a call goes to a per-request client even when it lacks the
    // capability: it then refuses its call with "missing capability".
    let can_busy = |s: &u64| can(s) || st.sessions.get(s).is_some_and(|e| e.per_request);
    // When the wire says which request this is for, that request's session answers.
    let named = related
        .and_then(|r| r.as_u64())
        .and_then(|up| st.pending.get(&up))
        .filter(|p| st.sessions.contains_key(&p.session));
    let chosen = match named {
        Some(p) => can_busy(&p.session).then(|| (p.session, Some(p.client_id.clone()))),
        None => {
            if method == "roots/list" {
                let capable: Vec<u64> = st.sessions.keys().copied().filter(|s| can(s)).collect();
                if capable.len() > 1 {
                    return gather_roots(hub, st, id, capable);
                }
            }
            // The session whose request the server is working on: the latest call that can
            // ask, else the latest listing (walked from the newest; one step in the usual case).
            st.recency
                .iter()
                .rev()
                .filter_map(|(_, up)| st.pending.get(up))
                .filter(|p| st.sessions.contains_key(&p.session))
                .find(|p| can_busy(&p.session))
                .map(|p| (p.session, Some(p.client_id.clone())))
                .or_else(|| {
                    // Not caused by a request (roots after list_changed): any capable session.
                    st.sessions
                        .keys()
                        .copied()
                        .filter(|s| can(s))
                        .max()
                        .map(|s| (s, None))
                })
        }
    };
    let Some((session, related)) = chosen else {
        let why = match cap {
            Some(c) => format!("no connected client supports {c}"),
            None => "no connected client to answer".to_owned(),
        };
        hub.send_upstream(Message::error(id, code::METHOD_NOT_FOUND, &why, None));
        return;
    };
    if let Some(r) = &related
        && let Some(up) = st.by_client.get(&(session, r.clone())).copied()
        && let Some(p) = st.pending.get_mut(&up)
    {
        p.deadline = hub.options.request_timeout.map(|t| Instant::now() + t);
    }
    st.asked(id, session);
    hub.deliver(st, session, msg, related);
}

/// How long a shared server's `roots/list` waits for the clients' answers.
const ROOTS_WAIT: Duration = Duration::from_secs(5);

/// A shared server works for every connected client, so its `roots/list` is answered with the
/// roots of all of them (`--per-client` gives each client a server that sees only its own).
fn gather_roots(hub: &Hub, st: &mut State, id: Id, sessions: Vec<u64>) {
    let mut waiters = vec![];
    for s in sessions {
        let n = st.next_id();
        let ask = Id::string(&format!("mcp-proxy-roots-{n}"));
        let (tx, rx) = oneshot::channel();
        st.asked_clients.insert((s, ask.clone()), tx);
        waiters.push(rx);
        hub.deliver(
            st,
            s,
            Message::request(ask, "roots/list", Some(to_raw(&serde_json::json!({})))),
            None,
        );
    }
    let Some(tx) = hub.sender() else { return };
    tokio::spawn(async move {
        // One deadline for all: a client that does not answer (it may have gone without
        // ending its session) costs the others nothing beyond it.
        let deadline = tokio::time::Instant::now() + ROOTS_WAIT;
        let mut roots: Vec<Value> = vec![];
        for rx in waiters {
            let Ok(Ok(answer)) = tokio::time::timeout_at(deadline, rx).await else {
                continue;
            };
            let list = answer
                .result_as::<Value>()
                .and_then(|r| r.get("roots").and_then(Value::as_array).cloned())
                .unwrap_or_default();
            for r in list {
                if !roots.iter().any(|seen| seen.get("uri") == r.get("uri")) {
                    roots.push(r);
                }
            }
        }
        let _ = tx
            .send(Message::response(
                id,
                to_raw(&serde_json::json!({ "roots": roots })),
            ))
            .await;
    });
}

#[cfg(test)]
mod tests {
    use super::negotiate;

    #[test]
    fn versions_never_exceed_the_servers() {
        assert_eq!(negotiate("2025-06-18", "2025-11-25"), "2025-06-18");
        assert_eq!(negotiate("2025-11-25", "2025-03-26"), "2025-03-26");
        assert_eq!(negotiate("1999-01-01", "2025-03-26"), "2025-03-26");
    }
}
