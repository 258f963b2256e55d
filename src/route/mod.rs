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

    /// Hand over a message without waiting. A queue that is full has ended: the client is
    /// not reading.
    pub fn try_send(&self, o: Outgoing) -> Result<(), SendError> {
        match self {
            SessionTx::Queue(q) => q.try_send(o),
            SessionTx::Direct(f) => match f(o) {
                Filed::Yes => Ok(()),
                Filed::Closed => Err(SendError::Closed),
            },
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

/// How many messages may wait for one client before it counts as stuck.
pub const SESSION_QUEUE: usize = 1024;

/// A queue for one client's messages, within `SESSION_QUEUE` messages and `bytes` bytes.
pub fn client_queue(bytes: usize) -> (queue::QueueTx, queue::QueueRx) {
    queue::queue(queue::Bounds {
        messages: SESSION_QUEUE,
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
    pub async fn send(&self, msg: Message) {
        match self {
            Route::Pipe(p) => p.send(msg).await,
            Route::Shared(s) => s.send(msg).await,
            Route::Catalog(c) => Box::pin(c.send(msg)).await,
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
