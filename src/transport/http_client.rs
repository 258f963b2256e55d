//! HTTP towards a server: picks Streamable HTTP or HTTP+SSE (the `auto` probe) and owns the
//! shared pieces both use: the HTTP client, headers, bounded body and SSE reading.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use super::sse_client::SseLink;
use super::streamable_client::{PostOutcome, StreamableLink};
use super::{ConnectError, Connection, HttpTransport, Inbound, Limits, UrlSpec};
use crate::jsonrpc::Message;

/// What both HTTP links need.
#[derive(Clone)]
pub struct HttpContext {
    pub client: reqwest::Client,
    pub spec: Arc<UrlSpec>,
    pub headers: reqwest::header::HeaderMap,
    pub limits: Limits,
    pub in_tx: mpsc::Sender<Inbound>,
}

impl HttpContext {
    pub async fn deliver(&self, msg: Message, related: Option<crate::jsonrpc::Id>) {
        let _ = self.in_tx.send(Inbound::Message { msg, related }).await;
    }
    /// Send the request `build` makes, with the server's credentials; a 401 or 403 that the
    /// server's OAuth can answer (a refresh, a sign-in, more scope) is sent again, built anew.
    /// The error says what went wrong, for the client.
    pub async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, String> {
        let mut tries = 0;
        loop {
            let mut req = build();
            let token = match &self.spec.auth.0 {
                Some(a) => a.authorization().await,
                None => None,
            };
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| super::streamable_client::describe_reqwest(&e, &self.spec.url))?;
            let status = resp.status().as_u16();
            let Some(auth) = &self.spec.auth.0 else {
                return Ok(resp);
            };
            if !matches!(status, 401 | 403) || tries >= 3 {
                return Ok(resp);
            }
            let www = resp
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if status == 403
                && !www
                    .as_deref()
                    .is_some_and(|w| w.contains("insufficient_scope"))
            {
                return Ok(resp);
            }
            match auth
                .rejected(status, www.as_deref(), token.as_deref())
                .await
            {
                Ok(()) => tries += 1,
                Err(e) => {
                    let why = e.to_string();
                    self.spec.health.failed(&why);
                    return Err(why);
                }
            }
        }
    }

    /// Tell the server's health how an exchange went: an answer means the server was reached
    /// (a 404 is a lost session, which the link renews; a 400 refuses one message), unless it
    /// is a server error or a refusal to serve at all (401, 403, 407, 429).
    pub fn observe(&self, outcome: &Result<http::StatusCode, String>) {
        match outcome {
            Ok(s) if serves(*s) => self.spec.health.reached(),
            Ok(s) => self
                .spec
                .health
                .failed(&format!("the server answered HTTP {s}")),
            Err(why) => self.spec.health.failed(why),
        }
    }

    /// Answer `msg` (when it is a request) with an error: it could not be delivered.
    pub async fn fail(&self, msg: &Message, reason: &str) {
        crate::warn_throttled!(
            format!("fail:{}", self.spec.url.host_str().unwrap_or("")),
            "{} ({})",
            reason,
            msg.method().unwrap_or("an answer")
        );
        if let Some(answer) = super::undeliverable(msg, reason) {
            self.deliver(answer, None).await;
        }
    }
}

pub fn build_headers(spec: &UrlSpec) -> Result<reqwest::header::HeaderMap, ConnectError> {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in &spec.headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| ConnectError::Other(format!("invalid header name `{k}`")))?;
        let value = reqwest::header::HeaderValue::from_str(v)
            .map_err(|_| ConnectError::Other(format!("invalid value for header `{k}`")))?;
        let mut value = value;
        if name == reqwest::header::AUTHORIZATION || k.to_ascii_lowercase().contains("key") {
            value.set_sensitive(true);
        }
        map.append(name, value);
    }
    Ok(map)
}

impl HttpContext {
    /// What a link to `spec` needs, and the receiving end of what it delivers.
    pub fn new(
        spec: &UrlSpec,
        limits: Limits,
    ) -> Result<(Self, mpsc::Receiver<Inbound>), ConnectError> {
        let mut client = reqwest::Client::builder()
            .connect_timeout(spec.connect_timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .tcp_nodelay(true);
        if !limits.use_proxy {
            client = client.no_proxy();
        }
        let client = client
            .build()
            .map_err(|e| ConnectError::Other(format!("cannot build HTTP client: {e}")))?;
        let headers = build_headers(spec)?;
        let (in_tx, in_rx) = mpsc::channel::<Inbound>(256);
        let ctx = HttpContext {
            client,
            spec: Arc::new(spec.clone()),
            headers,
            limits,
            in_tx,
        };
        Ok((ctx, in_rx))
    }
}

/// Open a link to an HTTP server. Nothing is sent until the first message: the first
/// message (normally `initialize`) is also the probe that picks the transport.
pub fn connect(spec: &UrlSpec, limits: Limits) -> Result<Connection, ConnectError> {
    let (ctx, in_rx) = HttpContext::new(spec, limits)?;
    let (out_tx, out_rx) = mpsc::channel::<Message>(256);
    let describe = Arc::new(std::sync::Mutex::new(format!(
        "http ({})",
        super::redact_url(&spec.url)
    )));
    let task = tokio::spawn(run(ctx, out_rx, describe.clone()));
    Ok(Connection::over_http(out_tx, in_rx, task, describe))
}

enum Mode {
    Undecided,
    Streamable(StreamableLink),
    Sse(Box<SseLink>),
}

async fn run(
    ctx: HttpContext,
    mut out_rx: mpsc::Receiver<Message>,
    describe: Arc<std::sync::Mutex<String>>,
) {
    let mut mode = match ctx.spec.transport {
        HttpTransport::Auto | HttpTransport::SseFirst => Mode::Undecided,
        HttpTransport::Streamablehttp => Mode::Streamable(StreamableLink::new(ctx.clone())),
        HttpTransport::Sse => Mode::Sse(Box::new(SseLink::new(ctx.clone()))),
    };
    let set_describe = |s: String| {
        if let Ok(mut d) = describe.lock() {
            *d = s;
        }
    };
    match ctx.spec.transport {
        HttpTransport::Streamablehttp => ctx.spec.health.set_transport("streamable-http"),
        HttpTransport::Sse => ctx.spec.health.set_transport("sse"),
        HttpTransport::Auto | HttpTransport::SseFirst => {}
    }
    while let Some(msg) = out_rx.recv().await {
        match &mut mode {
            Mode::Undecided if ctx.spec.transport == HttpTransport::SseFirst => {
                let sse = SseLink::new(ctx.clone());
                match sse.probe().await {
                    Err((Some(s), _))
                        if s == http::StatusCode::NOT_FOUND
                            || s == http::StatusCode::METHOD_NOT_ALLOWED =>
                    {
                        tracing::info!(
                            url = %super::redact_url(&ctx.spec.url),
                            "GET answered HTTP {s}; trying Streamable HTTP"
                        );
                        set_describe(format!(
                            "streamable-http ({})",
                            super::redact_url(&ctx.spec.url)
                        ));
                        ctx.spec.health.set_transport("streamable-http");
                        let link = StreamableLink::new(ctx.clone());
                        link.send(msg).await;
                        mode = Mode::Streamable(link);
                    }
                    // Not reached at all: the message is answered with the error; the next
                    // one tries again.
                    Err((None, why)) => ctx.fail(&msg, &why).await,
                    _ => {
                        set_describe(format!("sse ({})", super::redact_url(&ctx.spec.url)));
                        ctx.spec.health.set_transport("sse");
                        sse.send(msg).await;
                        mode = Mode::Sse(Box::new(sse));
                    }
                }
            }
            Mode::Undecided => {
                let link = StreamableLink::new(ctx.clone());
                match link.probe(msg).await {
                    // The next message tries again.
                    PostOutcome::Unreached => {}
                    PostOutcome::Done => {
                        let url = super::redact_url(&ctx.spec.url);
                        tracing::info!(url = %url, "server speaks Streamable HTTP");
                        set_describe(format!("streamable-http ({url})"));
                        ctx.spec.health.set_transport("streamable-http");
                        mode = Mode::Streamable(link);
                    }
                    PostOutcome::Refused(msg, status) => {
                        tracing::info!(
                            url = %super::redact_url(&ctx.spec.url),
                            "POST answered HTTP {status}; trying HTTP+SSE (revision 2024-11-05)"
                        );
                        set_describe(format!("sse ({})", super::redact_url(&ctx.spec.url)));
                        ctx.spec.health.set_transport("sse");
                        let sse = SseLink::new(ctx.clone());
                        sse.send(msg).await;
                        mode = Mode::Sse(Box::new(sse));
                    }
                }
            }
            Mode::Streamable(link) => link.send(msg).await,
            Mode::Sse(link) => link.send(msg).await,
        }
    }
    match mode {
        Mode::Streamable(link) => link.close().await,
        Mode::Sse(link) => link.close().await,
        Mode::Undecided => {}
    }
}

/// A request body of `msg`: its text as it is (large payloads are not copied).
pub fn body_of(msg: &Message) -> reqwest::Body {
    match msg.pieces().into_one_or_body() {
        Ok(one) => reqwest::Body::from(one),
        Err(body) => reqwest::Body::wrap(body),
    }
}

/// Read a whole body, refusing more than `max` bytes.
pub async fn read_body(resp: reqwest::Response, max: usize) -> Result<Bytes, String> {
    if resp.content_length().is_some_and(|n| n as usize > max) {
        return Err(format!(
            "response body is larger than --max-message-size ({max} bytes)"
        ));
    }
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("reading response body: {e}"))?;
        if buf.len() + chunk.len() > max {
            return Err(format!(
                "response body is larger than --max-message-size ({max} bytes)"
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// A short, printable excerpt of an error body.
pub async fn body_excerpt(resp: reqwest::Response) -> String {
    match read_body(resp, 4096).await {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b);
            let s = s.trim();
            if s.len() > 300 {
                format!("{}…", &s[..s.floor_char_boundary(300)])
            } else {
                s.to_owned()
            }
        }
        Err(_) => String::new(),
    }
}

/// Server-sent events of a response, with no event allowed to grow past `max` bytes.
pub fn sse_events(
    resp: reqwest::Response,
    max: usize,
) -> impl Stream<Item = Result<sse_stream::Sse, String>> + Send + Unpin {
    let since_event = Arc::new(AtomicUsize::new(0));
    let counter = since_event.clone();
    let limit = max.saturating_add(64 * 1024);
    let bytes = resp
        .bytes_stream()
        .map_err(std::io::Error::other)
        .and_then(move |chunk| {
            let seen = counter.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
            futures_util::future::ready(if seen > limit {
                Err(std::io::Error::other(format!(
                    "an event is larger than --max-message-size ({max} bytes)"
                )))
            } else {
                Ok(chunk)
            })
        });
    Box::pin(
        sse_stream::SseByteStream::new(bytes)
            .map_ok(move |ev| {
                since_event.store(0, Ordering::Relaxed);
                ev
            })
            .map_err(|e| e.to_string()),
    )
}

/// Whether a response's content type is `essence`.
pub fn content_type_is(resp: &reqwest::Response, essence: &str) -> bool {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(essence)
        })
        .unwrap_or(false)
}

/// Whether an HTTP answer shows a server that serves (see [`HttpContext::observe`]).
pub fn serves(s: http::StatusCode) -> bool {
    s.is_success()
        || s.is_redirection()
        || (s.is_client_error() && !matches!(s.as_u16(), 401 | 403 | 407 | 429))
}
