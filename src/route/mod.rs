//! Routes: what a client session talks to.
//!
//! - [`pipe::Pipe`]: the session has an upstream link of its own and messages pass through
//!   untouched (ids included).
//! - [`hub::Hub`]: one upstream link shared by many sessions; ids and progress tokens are
//!   remapped so that every answer, notification and server request reaches the right session.

pub mod catalog;
pub mod hub;
pub mod pipe;
pub mod queue;

use std::sync::Arc;
use std::time::Duration;

use crate::jsonrpc::{Id, Message};
use crate::transport::{Limits, Target};

/// A message on its way to a client. `related` names the client's request it belongs to
/// (a progress notification, or a server request made while handling it), so that the HTTP
/// front end can send it on that request's stream.
#[derive(Debug)]
pub struct Outgoing {
    pub msg: Message,
    pub related: Option<Id>,
}

impl Outgoing {
    pub fn new(msg: Message, related: Option<Id>) -> Self {
        Outgoing { msg, related }
    }
}

/// Where a session's messages to the client go: a bounded queue that the front end drains,
/// or a function that files each message straight away (the HTTP front end's replay buffers),
/// which saves a task switch per message.
#[derive(Clone)]
pub enum SessionTx {
    Queue(queue::QueueTx),
    Direct(Arc<dyn Fn(Outgoing) -> Filed + Send + Sync>),
    /// A client's own: repeated list-changed notifications are coalesced on their way.
    Coalesced(Arc<Coalescer>),
}

/// How often, at most, one client is told that one list changed (`--list-changed-interval`).
static LIST_CHANGED_INTERVAL_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(250);

/// Set how often one client may be told that one list changed.
pub fn set_list_changed_interval(every: Duration) {
    LIST_CHANGED_INTERVAL_MS.store(
        every.as_millis() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

const LIST_KINDS: [&str; 3] = [
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
];

/// Lets at most one `list_changed` per list through per interval: a server that says its
/// list changed a thousand times a second makes its client list again a few times a second.
/// One that comes too soon is held, and sent when the interval is over (once, however many
/// came meanwhile), so the last change is always told.
pub struct Coalescer {
    inner: SessionTx,
    lists: std::sync::Mutex<[(Option<std::time::Instant>, bool); 3]>,
}

impl Coalescer {
    /// Whether `o` goes on now (else it was held or dropped as a repeat).
    fn admit(self: &Arc<Self>, o: &Outgoing) -> bool {
        let Some(kind) = o
            .msg
            .method()
            .and_then(|m| LIST_KINDS.iter().position(|k| *k == m))
        else {
            return true;
        };
        let every = Duration::from_millis(
            LIST_CHANGED_INTERVAL_MS.load(std::sync::atomic::Ordering::Relaxed),
        );
        let now = std::time::Instant::now();
        let Ok(mut lists) = self.lists.lock() else {
            return true;
        };
        let (last, held) = &mut lists[kind];
        if *held {
            // One is on its way already; it tells this change too.
            return false;
        }
        match *last {
            Some(t) if now.duration_since(t) < every => {
                {
                    *held = true;
                    let due = t + every;
                    let me = self.clone();
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        rt.spawn(async move {
                            tokio::time::sleep_until(due.into()).await;
                            if let Ok(mut lists) = me.lists.lock() {
                                lists[kind] = (Some(std::time::Instant::now()), false);
                            }
                            let n = Message::notification(LIST_KINDS[kind], None);
                            let _ = me.inner.try_send(Outgoing::new(n, None));
                        });
                    }
                }
                false
            }
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// What became of a message handed to [`SessionTx::Direct`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    Yes,
    /// The session is gone.
    Closed,
}

/// Why a message could not be handed to a session.
#[derive(Debug)]
pub enum SendError {
    /// The client is not reading: its queue is full.
    Full,
    Closed,
}

impl SessionTx {
    pub fn direct(f: impl Fn(Outgoing) -> Filed + Send + Sync + 'static) -> Self {
        SessionTx::Direct(Arc::new(f))
    }

    /// `inner`, with repeated list-changed notifications coalesced (for a client's session).
    pub fn coalesced(inner: SessionTx) -> Self {
        SessionTx::Coalesced(Arc::new(Coalescer {
            inner,
            lists: Default::default(),
        }))
    }

    /// Hand over a message without waiting. A queue that is full has ended: the client is
    /// not reading.
    pub fn try_send(&self, o: Outgoing) -> Result<(), SendError> {
        match self {
            SessionTx::Queue(q) => q.try_send(o),
            SessionTx::Direct(f) => match f(o) {
                Filed::Yes => Ok(()),
                Filed::Closed => Err(SendError::Closed),
            },
            SessionTx::Coalesced(c) => {
                if c.admit(&o) {
                    c.inner.try_send(o)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Hand over a message, waiting for room in a queue; `Err` once the session is gone.
    pub async fn send(&self, o: Outgoing) -> Result<(), ()> {
        match self {
            SessionTx::Queue(q) => q.send(o).await,
            SessionTx::Direct(f) => match f(o) {
                Filed::Yes => Ok(()),
                Filed::Closed => Err(()),
            },
            SessionTx::Coalesced(c) => {
                if c.admit(&o) {
                    Box::pin(c.inner.send(o)).await
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Why a session could not reach its server: the JSON-RPC error code its requests get, and
/// the reason, for the client and the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Unavailable {
    pub code: i64,
    pub reason: String,
}

impl Unavailable {
    /// The server did not answer in time (JSON-RPC -32001).
    pub fn timeout(reason: String) -> Unavailable {
        Unavailable {
            code: crate::jsonrpc::code::UPSTREAM_TIMEOUT,
            reason,
        }
    }

    /// The error answer for `msg`, when it is a request.
    pub fn answer(&self, msg: &Message) -> Option<Message> {
        if !msg.is_request() {
            return None;
        }
        Some(Message::error(msg.id()?, self.code, &self.reason, None))
    }
}

impl From<String> for Unavailable {
    fn from(reason: String) -> Unavailable {
        Unavailable {
            code: crate::jsonrpc::code::UPSTREAM_UNAVAILABLE,
            reason,
        }
    }
}

/// A queue for one client's messages, within `--client-queue` messages and `bytes` bytes.
pub fn client_queue(bytes: usize) -> (queue::QueueTx, queue::QueueRx) {
    queue::queue(queue::Bounds {
        messages: crate::limits::get().client_queue,
        bytes,
    })
}

/// Settings every route shares.
#[derive(Debug, Clone, Copy)]
pub struct RouteOptions {
    pub limits: Limits,
    /// How long a request may go without any sign of life from the server.
    pub request_timeout: Option<Duration>,
    /// Which protocol era to speak towards servers.
    pub server_era: crate::era::upstream::ServerEra,
}

/// What new sessions connect to.
#[derive(Clone)]
pub enum Backend {
    /// Each session opens its own link to the target.
    PerSession {
        target: Arc<Target>,
        options: RouteOptions,
    },
    /// All sessions share one link.
    Shared(Arc<hub::Hub>),
    /// Many servers merged.
    Catalog(Arc<catalog::Catalog>),
}

impl Backend {
    pub async fn open(&self, tx: SessionTx) -> Result<Route, Unavailable> {
        match self {
            Backend::PerSession { target, options } => pipe::Pipe::open(target, *options, tx)
                .await
                .map(Route::Pipe),
            Backend::Shared(hub) => Ok(Route::Shared(hub.attach(tx))),
            Backend::Catalog(c) => Ok(Route::Catalog(Box::new(Box::pin(c.attach(tx)).await))),
        }
    }

    /// Open a session, with tool curation in front of it when there is any.
    pub async fn open_curated(
        &self,
        tx: SessionTx,
        curation: Option<&crate::curation::Curation>,
    ) -> Result<Route, Unavailable> {
        let Some(c) = curation else {
            return self.open(tx).await;
        };
        let (wrapped, lists) = c.wrap(tx.clone());
        let inner = Box::pin(self.open(wrapped)).await?;
        Ok(Route::Curated {
            inner: Box::new(inner),
            curation: c.clone(),
            lists,
            tx,
        })
    }

    /// Open a session with tool curation, and the caller's gate (policy, limits, audit) in
    /// front of it when the proxy knows who the client is.
    pub async fn open_gated(
        &self,
        tx: SessionTx,
        curation: Option<&crate::curation::Curation>,
        gate: Option<Arc<crate::access::Gate>>,
        meter: Option<Arc<crate::telemetry::Meter>>,
    ) -> Result<Route, Unavailable> {
        if gate.is_none() && meter.is_none() {
            return self.open_curated(tx, curation).await;
        }
        let (g, mt) = (gate.clone(), meter.clone());
        let client = tx.clone();
        let wrapped = SessionTx::direct(move |mut o: Outgoing| {
            if let Some(g) = &g {
                g.answered(&mut o.msg);
            }
            if let Some(m) = &mt {
                m.answered(&o.msg);
            }
            match client.try_send(o) {
                Ok(()) => Filed::Yes,
                Err(_) => Filed::Closed,
            }
        });
        let inner = Box::pin(self.open_curated(wrapped, curation)).await?;
        if let Some(g) = &gate {
            g.tell_changes(tx.clone());
        }
        Ok(Route::Gated {
            inner: Box::new(inner),
            gate,
            meter,
            tx,
        })
    }

    /// End shared links (per-session ones end with their sessions).
    pub async fn shutdown(&self) {
        match self {
            Backend::Shared(hub) => hub.shutdown().await,
            Backend::Catalog(c) => Box::pin(c.shutdown()).await,
            Backend::PerSession { .. } => {}
        }
    }
}

/// One session's connection to its backend.
pub enum Route {
    Pipe(pipe::Pipe),
    Shared(hub::HubSession),
    Catalog(Box<catalog::CatalogSession>),
    /// The caller's gate in front of another route (see [`crate::access::Gate`]).
    Gated {
        inner: Box<Route>,
        gate: Option<Arc<crate::access::Gate>>,
        meter: Option<Arc<crate::telemetry::Meter>>,
        tx: SessionTx,
    },
    /// Tool curation in front of another route: hidden tools are refused here, and the
    /// answers to `tools/list` are rewritten on their way to the client.
    Curated {
        inner: Box<Route>,
        curation: crate::curation::Curation,
        lists: crate::curation::ListRequests,
        tx: SessionTx,
    },
}

impl Route {
    pub async fn send(&self, mut msg: Message) {
        match self {
            Route::Pipe(p) => p.send(msg).await,
            Route::Shared(s) => s.send(msg).await,
            Route::Catalog(c) => Box::pin(c.send(msg)).await,
            Route::Gated {
                inner,
                gate,
                meter,
                tx,
            } => {
                let ids = meter.as_ref().and_then(|m| m.sent(&mut msg));
                if let Some(g) = gate
                    && let Err(refusal) = g.admit(&msg)
                {
                    if let Some(m) = meter {
                        m.answered(&refusal);
                    }
                    let related = refusal.id();
                    let _ = tx.send(Outgoing::new(refusal, related)).await;
                    return;
                }
                match ids {
                    // What is logged on the way carries the request's trace (at --debug: a
                    // log span per request is not free).
                    Some((trace_id, span_id)) if tracing::enabled!(tracing::Level::DEBUG) => {
                        use tracing::Instrument;
                        let span = tracing::debug_span!("mcp", %trace_id, %span_id);
                        span.in_scope(|| {
                            tracing::debug!(
                                method = msg.method().unwrap_or(""),
                                "routing a request"
                            )
                        });
                        Box::pin(inner.send(msg)).instrument(span).await
                    }
                    _ => Box::pin(inner.send(msg)).await,
                }
            }
            Route::Curated {
                inner,
                curation,
                lists,
                tx,
            } => {
                if let Some(refusal) = curation.refuse(&msg) {
                    let related = refusal.id();
                    let _ = tx.send(Outgoing::new(refusal, related)).await;
                    return;
                }
                if msg.method() == Some("tools/list")
                    && let Some(id) = msg.id()
                    && let Ok(mut l) = lists.lock()
                {
                    l.insert(id);
                }
                Box::pin(inner.send(msg)).await
            }
        }
    }

    /// End the session: requests still in flight are cancelled upstream.
    pub async fn close(&self) {
        match self {
            Route::Pipe(p) => p.close().await,
            Route::Shared(s) => s.close(),
            Route::Catalog(c) => Box::pin(c.close()).await,
            Route::Curated { inner, .. } => Box::pin(inner.close()).await,
            Route::Gated {
                inner, gate, meter, ..
            } => {
                if let Some(g) = gate {
                    g.forget_all();
                }
                if let Some(m) = meter {
                    m.forget_all();
                }
                Box::pin(inner.close()).await
            }
        }
    }
}

/// Log levels in increasing severity (RFC 5424, as MCP names them).
pub const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

pub fn level_rank(level: &str) -> usize {
    LOG_LEVELS.iter().position(|l| *l == level).unwrap_or(0)
}
