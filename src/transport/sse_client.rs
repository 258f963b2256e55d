//! HTTP+SSE towards a server (revision 2024-11-05): a GET stream that first names the
//! endpoint to POST to, then carries every server message.
//!
//! That transport has no resumption: when the stream breaks, requests in flight are answered
//! with an error, and the next message opens a new stream and replays the client's
//! `initialize`, so the client keeps working.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::InFlight;
use super::http_client::{HttpContext, body_excerpt, content_type_is, sse_events};
use crate::jsonrpc::{Id, Message};

struct Stream {
    endpoint: reqwest::Url,
    alive: CancellationToken,
}

pub struct SseLink {
    ctx: HttpContext,
    stream: Mutex<Option<Stream>>,
    in_flight: Arc<std::sync::Mutex<InFlight>>,
    init: std::sync::Mutex<Option<Message>>,
    initialized_sent: std::sync::atomic::AtomicBool,
    closed: CancellationToken,
    /// The HTTP status of the last GET that failed.
    last_status: std::sync::Mutex<Option<http::StatusCode>>,
}

impl SseLink {
    pub fn new(ctx: HttpContext) -> Self {
        SseLink {
            ctx,
            stream: Mutex::new(None),
            in_flight: Default::default(),
            init: Default::default(),
            initialized_sent: Default::default(),
            closed: CancellationToken::new(),
            last_status: Default::default(),
        }
    }

    pub async fn send(&self, msg: Message) {
        let is_init = msg.is_request() && msg.method() == Some("initialize");
        if is_init && let Ok(mut i) = self.init.lock() {
            *i = Some(msg.clone());
        }
        if msg.method() == Some("notifications/initialized") {
            self.initialized_sent
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let endpoint = {
            let mut guard = self.stream.lock().await;
            let alive = guard.as_ref().is_some_and(|s| !s.alive.is_cancelled());
            if !alive {
                let had_stream = guard.is_some();
                match self.open().await {
                    Ok(s) => {
                        *guard = Some(s);
                        if had_stream
                            && !is_init
                            && let Err(e) = self.replay_initialize(guard.as_ref()).await
                        {
                            self.ctx.fail(&msg, &e).await;
                            return;
                        }
                    }
                    Err(e) => {
                        *guard = None;
                        self.ctx.fail(&msg, &e).await;
                        return;
                    }
                }
            }
            match guard.as_ref() {
                Some(s) => s.endpoint.clone(),
                None => return,
            }
        };
        if let Ok(mut f) = self.in_flight.lock() {
            f.sent(&msg);
        }
        if let Err(e) = self.post(&endpoint, &msg).await {
            if let Ok(mut f) = self.in_flight.lock() {
                f.answered_id(msg.id());
            }
            self.ctx.fail(&msg, &e).await;
        }
    }

    async fn post(&self, endpoint: &reqwest::Url, msg: &Message) -> Result<(), String> {
        let resp = self
            .ctx
            .send(|| {
                self.ctx
                    .client
                    .post(endpoint.clone())
                    .headers(self.ctx.headers.clone())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(super::http_client::body_of(msg))
            })
            .await;
        self.ctx
            .observe(&resp.as_ref().map(|r| r.status()).map_err(|e| e.clone()));
        let resp = resp?;
        if resp.status().is_success() {
            Ok(())
        } else {
            let status = resp.status();
            Err(format!(
                "server answered HTTP {status}: {}",
                body_excerpt(resp).await
            ))
        }
    }

    /// After a broken stream: a new session needs the client's handshake again.
    async fn replay_initialize(&self, stream: Option<&Stream>) -> Result<(), String> {
        let Some(stream) = stream else {
            return Ok(());
        };
        let Some(mut init) = self.init.lock().ok().and_then(|i| i.clone()) else {
            return Ok(());
        };
        tracing::info!("SSE stream was lost; replaying initialize on a new one");
        init.set_id(&Id::string("mcp-proxy-renew"));
        self.post(&stream.endpoint, &init).await?;
        if self
            .initialized_sent
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            let note = Message::notification("notifications/initialized", None);
            self.post(&stream.endpoint, &note).await?;
        }
        Ok(())
    }

    /// Open the stream now (`--transport sse-first`): `Err(Some(status))` when the server
    /// answered the GET with an HTTP error (it may speak Streamable HTTP instead).
    pub async fn probe(&self) -> Result<(), (Option<http::StatusCode>, String)> {
        let mut guard = self.stream.lock().await;
        match self.open().await {
            Ok(s) => {
                *guard = Some(s);
                Ok(())
            }
            Err(e) => {
                let status = self.last_status.lock().ok().and_then(|mut s| s.take());
                Err((status, e))
            }
        }
    }

    /// GET the stream and wait for its `endpoint` event.
    async fn open(&self) -> Result<Stream, String> {
        let url = &self.ctx.spec.url;
        let shown = super::redact_url(url);
        let resp = self
            .ctx
            .send(|| {
                self.ctx
                    .client
                    .get(url.clone())
                    .headers(self.ctx.headers.clone())
                    .header(http::header::ACCEPT, "text/event-stream")
            })
            .await;
        self.ctx
            .observe(&resp.as_ref().map(|r| r.status()).map_err(|e| e.clone()));
        let resp = resp?;
        if !resp.status().is_success() {
            let status = resp.status();
            if let Ok(mut s) = self.last_status.lock() {
                *s = Some(status);
            }
            return Err(format!(
                "GET {shown} answered HTTP {status}: {}",
                body_excerpt(resp).await
            ));
        }
        if !content_type_is(&resp, "text/event-stream") {
            return Err(format!("GET {shown} did not answer with an event stream"));
        }
        let mut events = sse_events(resp, self.ctx.limits.max_message_size);
        let wait = self.ctx.spec.connect_timeout.max(Duration::from_secs(5));
        let endpoint = tokio::time::timeout(wait, async {
            while let Some(ev) = events.next().await {
                let ev = ev?;
                if ev.event.as_deref() == Some("endpoint") {
                    return Ok(ev.data.unwrap_or_default());
                }
            }
            Err("stream closed before the `endpoint` event".to_owned())
        })
        .await
        .map_err(|_| {
            format!(
                "no `endpoint` event from {shown} within {}s",
                wait.as_secs()
            )
        })??;
        let endpoint = url
            .join(endpoint.trim())
            .map_err(|e| format!("invalid endpoint `{endpoint}`: {e}"))?;
        if endpoint.origin() != url.origin() {
            return Err(format!(
                "server named an endpoint on another origin ({}); refused",
                endpoint.origin().ascii_serialization()
            ));
        }
        tracing::debug!(endpoint = %super::redact_url(&endpoint), "SSE session open");
        let alive = self.closed.child_token();
        let reader_alive = alive.clone();
        let ctx = self.ctx.clone();
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let reason = loop {
                let ev = tokio::select! {
                    ev = events.next() => ev,
                    _ = reader_alive.cancelled() => return,
                };
                match ev {
                    None => break "the server closed the SSE stream".to_owned(),
                    Some(Err(e)) => break format!("the SSE stream broke: {e}"),
                    Some(Ok(ev)) => {
                        if !matches!(ev.event.as_deref(), None | Some("message")) {
                            continue;
                        }
                        let Some(data) = ev.data.filter(|d| !d.trim().is_empty()) else {
                            continue;
                        };
                        match Message::parse(data) {
                            Ok(p) => {
                                for m in p.into_messages() {
                                    if m.id() == Some(Id::string("mcp-proxy-renew")) {
                                        continue; // answer to a replayed initialize
                                    }
                                    if let Ok(mut f) = in_flight.lock() {
                                        f.answered(&m);
                                    }
                                    ctx.deliver(m, None).await;
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
            };
            reader_alive.cancel();
            tracing::warn!("{reason}");
            let failed = in_flight
                .lock()
                .map(|mut f| f.fail_all(&reason))
                .unwrap_or_default();
            for m in failed {
                ctx.deliver(m, None).await;
            }
        });
        Ok(Stream { endpoint, alive })
    }

    pub async fn close(self) {
        self.closed.cancel();
    }
}
