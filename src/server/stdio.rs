//! Our own stdin/stdout as the client's wire: one session, newline-delimited JSON-RPC.
//!
//! The session with the server is opened when the client first speaks a session-based
//! revision (a client of revision 2026-07-28 has none: each of its requests runs on its own).
//! At the end of input, every request still in flight is answered before the proxy exits
//! (within `--timeout`); a signal ends it at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::era::front::ModernFront;
use crate::jsonrpc::{Id, Message, code};
use crate::route::{Backend, Route, SessionTx, Unavailable, client_queue};
use crate::transport::stdio::{Line, own_stdin, own_stdout, read_line, write_lines};

/// Settings of the stdio front.
#[derive(Debug, Clone, Copy)]
pub struct StdioOptions {
    pub max_message_size: usize,
    /// How long a request may wait for its server (`--timeout`): also how long the end of
    /// input waits for the answers still due.
    pub request_timeout: Option<Duration>,
    /// Most bytes waiting to be written to the client.
    pub client_buffer: usize,
}

/// The client's requests that have no answer yet, by id.
#[derive(Default)]
struct Pending {
    ids: Mutex<HashMap<Id, Kind>>,
    /// Fires whenever one is answered.
    answered: Notify,
}

#[derive(Clone)]
enum Kind {
    /// On the client's session with the server.
    Session,
    /// A 2026-07-28 request on its own task.
    Modern(tokio::task::AbortHandle),
}

impl Pending {
    /// Note a new request; `false` when its id is already in flight.
    fn add(&self, id: &Id, kind: Kind) -> bool {
        let Ok(mut ids) = self.ids.lock() else {
            return false;
        };
        if ids.contains_key(id) {
            return false;
        }
        ids.insert(id.clone(), kind);
        true
    }

    fn done(&self, id: &Id) -> Option<Kind> {
        let kind = self.ids.lock().ok()?.remove(id);
        self.answered.notify_waiters();
        kind
    }

    fn is_empty(&self) -> bool {
        self.ids.lock().map(|i| i.is_empty()).unwrap_or(true)
    }

    /// Wait until every request is answered.
    async fn drained(&self) {
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            if self.is_empty() {
                return;
            }
            answered.await;
        }
    }

    fn abort_all(&self) {
        if let Ok(mut ids) = self.ids.lock() {
            for (_, kind) in ids.drain() {
                if let Kind::Modern(task) = kind {
                    task.abort();
                }
            }
        }
    }
}

/// What the client's input ended with.
enum End {
    /// End of input: answer what is in flight, then stop.
    Input,
    /// A signal: stop now.
    Signal,
}

/// The client's session with the server, opened on first use.
struct Session {
    backend: Backend,
    curation: Option<crate::curation::Curation>,
    route: Option<Route>,
    /// Why the last attempt to open it failed (tried again on the next message).
    failed: Option<Unavailable>,
    writer: mpsc::Sender<Message>,
    pending: Arc<Pending>,
    client_buffer: usize,
    forward: Option<tokio::task::JoinHandle<()>>,
    queue: Option<crate::route::queue::QueueTx>,
}

impl Session {
    async fn route(&mut self, shutdown: &CancellationToken) -> Result<&Route, Unavailable> {
        if self.route.is_none() {
            let (tx, mut rx) = client_queue(self.client_buffer);
            let ended = tx.ended();
            let opened = tokio::select! {
                r = self.backend.open_gated(
                    SessionTx::coalesced(SessionTx::Queue(tx.clone())),
                    self.curation.as_ref(),
                    None,
                    (crate::telemetry::get().is_some() || crate::telemetry::trace::on()).then(|| {
                        crate::telemetry::Meter::over_stdio(match &self.backend {
                            Backend::Catalog(c) => Some(c.clone()),
                            _ => None,
                        })
                    }),
                ) => r,
                _ = shutdown.cancelled() => Err(Unavailable::from("the proxy is shutting down".to_owned())),
            };
            match opened {
                Ok(r) => {
                    let out = self.writer.clone();
                    let pending = self.pending.clone();
                    let end_reason = tx.clone();
                    self.forward = Some(tokio::spawn(async move {
                        while let Some(o) = rx.recv().await {
                            if o.msg.is_response()
                                && let Some(id) = o.msg.id()
                            {
                                pending.done(&id);
                            }
                            if out.send(o.msg).await.is_err() {
                                return;
                            }
                        }
                        if ended.is_cancelled()
                            && let Some(why) = end_reason.end_reason().filter(|w| w != "closed")
                        {
                            tracing::warn!("{why} (--client-buffer)");
                        }
                    }));
                    self.route = Some(r);
                    self.queue = Some(tx);
                    self.failed = None;
                }
                Err(e) => {
                    tracing::error!("{e}");
                    self.failed = Some(e);
                }
            }
        }
        match (&self.route, &self.failed) {
            (Some(r), _) => Ok(r),
            (None, Some(e)) => Err(e.clone()),
            (None, None) => Err(Unavailable::from(
                "the server could not be reached".to_owned(),
            )),
        }
    }

    async fn close(&mut self) {
        if let Some(r) = self.route.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), r.close()).await;
        }
        if let Some(q) = self.queue.take() {
            q.close();
        }
        if let Some(f) = self.forward.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), f).await;
        }
    }
}

/// Serve one client on stdin/stdout until stdin ends or `shutdown` fires.
pub async fn serve(
    backend: Backend,
    curation: Option<crate::curation::Curation>,
    modern: Arc<ModernFront>,
    options: StdioOptions,
    shutdown: CancellationToken,
) {
    let (line_tx, line_rx) = mpsc::channel::<Message>(256);
    let writer = tokio::spawn(write_lines(own_stdout(), line_rx, |_, e| {
        tracing::debug!("stdout closed: {e}");
    }));
    let pending: Arc<Pending> = Default::default();
    let mut session = Session {
        backend,
        curation,
        route: None,
        failed: None,
        writer: line_tx.clone(),
        pending: pending.clone(),
        client_buffer: options.client_buffer,
        forward: None,
        queue: None,
    };
    let max = options.max_message_size;
    let mut stdin = BufReader::with_capacity(64 * 1024, own_stdin());
    let end = loop {
        let line = tokio::select! {
            l = read_line(&mut stdin, max) => l,
            _ = shutdown.cancelled() => break End::Signal,
        };
        let bytes = match line {
            Ok(Some(Line::Data(b))) => b,
            Ok(Some(Line::TooLong { len, id })) => {
                let m = Message::error(
                    id.unwrap_or_else(Id::null),
                    code::MESSAGE_TOO_LARGE,
                    &format!("message of {len} bytes exceeds --max-message-size ({max})"),
                    None,
                );
                let _ = line_tx.send(m).await;
                continue;
            }
            Ok(None) => break End::Input,
            Err(e) => {
                tracing::warn!("reading stdin: {e}");
                break End::Input;
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let messages = match Message::parse(bytes) {
            Ok(p) => p.into_messages(),
            Err(e) => {
                let _ = line_tx.send(e.to_response()).await;
                continue;
            }
        };
        for msg in messages {
            if let Some(refusal) = duplicate(&pending, &msg) {
                let _ = line_tx.send(refusal).await;
                continue;
            }
            if is_modern(&msg) {
                serve_modern(&modern, msg, &line_tx, &pending).await;
                continue;
            }
            if msg.method() == Some("notifications/cancelled")
                && let Some(id) = msg.cancelled_request_id()
                && let Some(kind) = pending.done(&id)
                && let Kind::Modern(task) = kind
            {
                task.abort();
                continue;
            }
            if msg.is_request()
                && let Some(id) = msg.id()
            {
                pending.add(&id, Kind::Session);
            }
            match session.route(&shutdown).await {
                Ok(r) => r.send(msg).await,
                Err(why) => {
                    if let Some(answer) = why.answer(&msg) {
                        if let Some(id) = msg.id() {
                            pending.done(&id);
                        }
                        let _ = line_tx.send(answer).await;
                    }
                }
            }
        }
    };
    if matches!(end, End::Input) && !pending.is_empty() {
        tracing::debug!("client input ended; answering the requests still in flight");
        // The route answers every request within --timeout (its own timer); this bound is
        // only a backstop.
        let wait = options
            .request_timeout
            .map(|t| t + Duration::from_secs(5))
            .unwrap_or(Duration::MAX);
        tokio::select! {
            _ = pending.drained() => {}
            _ = tokio::time::sleep(wait) => tracing::warn!("requests still unanswered at the end of input"),
            _ = shutdown.cancelled() => {}
        }
    }
    tracing::debug!("client input ended");
    pending.abort_all();
    session.close().await;
    drop(session);
    drop(line_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

/// A request whose id is already in flight is refused (its answer could not be told apart).
fn duplicate(pending: &Pending, msg: &Message) -> Option<Message> {
    if !msg.is_request() {
        return None;
    }
    let id = msg.id()?;
    let taken = pending
        .ids
        .lock()
        .map(|ids| ids.contains_key(&id))
        .unwrap_or(false);
    taken.then(|| {
        Message::error(
            id.clone(),
            code::INVALID_REQUEST,
            &format!("request id {id} is already in flight; use a new id for each request"),
            None,
        )
    })
}

/// A request of the stateless revision: it says so in its `_meta`, or it is the
/// `server/discover` probe.
fn is_modern(msg: &Message) -> bool {
    msg.is_request()
        && (msg.method() == Some("server/discover")
            || crate::era::RequestMeta::of(msg)
                .version
                .is_some_and(|v| crate::era::is_modern(&v)))
}

/// Answer one modern request on its own task; its messages go to stdout as they come.
async fn serve_modern(
    front: &Arc<ModernFront>,
    msg: Message,
    line_tx: &mpsc::Sender<Message>,
    pending: &Arc<Pending>,
) {
    let id = msg.id().unwrap_or_else(Id::null);
    let meta = match crate::era::validate(&msg, &crate::era::Headers::default()) {
        Ok(m) => m,
        Err(refusal) => {
            let _ = line_tx.send(refusal.to_message(id)).await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let out = line_tx.clone();
    let front = front.clone();
    let registry = pending.clone();
    let key = id.clone();
    // Registered before it runs, so that its answer always finds it.
    let start = Arc::new(Notify::new());
    let go = start.clone();
    let task = tokio::spawn(async move {
        go.notified().await;
        let relay = async {
            while let Some(m) = rx.recv().await {
                let last = m.is_response() && m.id().as_ref() == Some(&key);
                if out.send(m).await.is_err() {
                    return;
                }
                if last {
                    registry.done(&key);
                }
            }
        };
        tokio::join!(front.handle(msg, meta, tx), relay);
        registry.done(&key);
    });
    pending.add(&id, Kind::Modern(task.abort_handle()));
    start.notify_one();
}
