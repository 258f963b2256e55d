//! What the proxy knows of one server's health, for `/status`: whether it can be reached, over
//! which transport and in which protocol era, the last error, and when it was last reached.
//!
//! Stdio servers are watched by their hub (a process that runs and answers is ready). Remote
//! servers are watched by their HTTP links, with every exchange a client makes, and checked
//! now and then by the gateway when no client has reached them lately ([`check_remote`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

/// Whether a server can be used, as `/status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not known yet.
    Starting,
    Ready,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The outcome of the last exchange: `Some(true)` reached, `Some(false)` failed.
    last_ok: Option<bool>,
    transport: Option<String>,
    protocol: Option<&'static str>,
    last_error: Option<String>,
    last_error_at: Option<SystemTime>,
    last_reached: Option<SystemTime>,
    /// When anything was last learnt (for the checker: no need to check a busy server).
    last_outcome: Option<Instant>,
}

/// One server's health; shared by everything that talks to it.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<Inner>,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// The server answered.
    pub fn reached(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.last_ok = Some(true);
            i.last_reached = Some(SystemTime::now());
            i.last_outcome = Some(Instant::now());
        }
    }

    /// The server could not be reached, or refused us (`why` is for the user).
    pub fn failed(&self, why: &str) {
        if let Ok(mut i) = self.inner.lock() {
            i.last_ok = Some(false);
            i.last_error = Some(why.to_owned());
            i.last_error_at = Some(SystemTime::now());
            i.last_outcome = Some(Instant::now());
        }
    }

    pub fn set_transport(&self, transport: &str) {
        if let Ok(mut i) = self.inner.lock() {
            i.transport = Some(transport.to_owned());
        }
    }

    /// The protocol era the server speaks: 2026-07-28, or session-based.
    pub fn set_modern(&self, modern: bool) {
        if let Ok(mut i) = self.inner.lock() {
            i.protocol = Some(if modern {
                crate::era::MODERN
            } else {
                "session-based"
            });
        }
    }

    /// The state that the exchanges so far say.
    pub fn state(&self) -> State {
        match self.inner.lock().ok().and_then(|i| i.last_ok) {
            None => State::Starting,
            Some(true) => State::Ready,
            Some(false) => State::Failed,
        }
    }

    /// How long ago anything was learnt of the server (`None`: never).
    pub fn since_last_outcome(&self) -> Option<Duration> {
        self.inner.lock().ok()?.last_outcome.map(|t| t.elapsed())
    }

    pub fn last_error(&self) -> Option<String> {
        self.inner.lock().ok()?.last_error.clone()
    }

    /// The `/status` fields: `transport`, `protocol`, `lastError`, `lastErrorAt`,
    /// `lastReached`.
    pub fn fields(&self) -> serde_json::Map<String, Value> {
        let Ok(i) = self.inner.lock() else {
            return Default::default();
        };
        let time = |t: Option<SystemTime>| {
            t.map(|t| Value::String(humantime::format_rfc3339_seconds(t).to_string()))
                .unwrap_or(Value::Null)
        };
        let v = json!({
            "transport": i.transport,
            "protocol": i.protocol,
            "lastError": i.last_error,
            "lastErrorAt": time(i.last_error_at),
            "lastReached": time(i.last_reached),
        });
        match v {
            Value::Object(m) => m,
            _ => Default::default(),
        }
    }
}

/// A place for a [`Health`] in a server's settings. It is not part of what the server is:
/// two settings that differ only in it are equal (a reload does not restart for it).
#[derive(Clone, Default)]
pub struct Slot(pub Option<Arc<Health>>);

impl PartialEq for Slot {
    fn eq(&self, _: &Slot) -> bool {
        true
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

impl Slot {
    pub fn reached(&self) {
        if let Some(h) = &self.0 {
            h.reached();
        }
    }
    pub fn failed(&self, why: &str) {
        if let Some(h) = &self.0 {
            h.failed(why);
        }
    }
    pub fn set_transport(&self, transport: &str) {
        if let Some(h) = &self.0 {
            h.set_transport(transport);
        }
    }
    pub fn set_modern(&self, modern: bool) {
        if let Some(h) = &self.0 {
            h.set_modern(modern);
        }
    }
}

/// Check a remote server the way a client would: connect, find its transport and era,
/// `initialize`, and end the session. The outcome lands in the target's health.
pub async fn check_remote(target: &crate::transport::Target, options: crate::route::RouteOptions) {
    use crate::jsonrpc::{Id, Message, to_raw};
    use crate::transport::{Inbound, Target};
    let Target::Url(spec) = target else { return };
    let health = spec.health.clone();
    let wait = options
        .request_timeout
        .unwrap_or(Duration::from_secs(30))
        .min(Duration::from_secs(30));
    let attempt = async {
        let conn = crate::transport::connect(target, options.limits)
            .await
            .map_err(|e| e.to_string())?;
        let (mut conn, _) = crate::era::upstream::settle(conn, target, options)
            .await
            .map_err(|e| e.reason)?;
        let params = json!({
            "protocolVersion": crate::route::hub::LATEST_LEGACY,
            "capabilities": {},
            "clientInfo": { "name": "mcp-proxy (health check)", "version": env!("CARGO_PKG_VERSION") },
        });
        let id = Id::string("mcp-proxy-health");
        conn.tx
            .send(Message::request(
                id.clone(),
                "initialize",
                Some(to_raw(&params)),
            ))
            .await
            .map_err(|_| "the link closed".to_owned())?;
        let answer = tokio::time::timeout(wait, async {
            while let Some(i) = conn.rx.recv().await {
                match i {
                    Inbound::Message { msg, .. } if msg.id().as_ref() == Some(&id) => {
                        return Ok(msg);
                    }
                    Inbound::Closed(why) => return Err(why),
                    _ => {}
                }
            }
            Err("the link closed".to_owned())
        })
        .await
        .map_err(|_| format!("no answer to initialize within {}s", wait.as_secs()))??;
        conn.close().await;
        match answer.error_value() {
            None => Ok(()),
            Some(e) => Err(format!("initialize was refused: {}", e.get())),
        }
    };
    if let Err(why) = attempt.await {
        health.failed(&why);
    }
}

/// Check `target` now and then while nothing else tells how it is: every `interval` while it
/// is ready, sooner (2 s, doubling) while it fails. Ends with `stop`.
pub async fn watch_remote(
    target: crate::transport::Target,
    options: crate::route::RouteOptions,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let crate::transport::Target::Url(spec) = &target else {
        return;
    };
    let Some(health) = spec.health.0.clone() else {
        return;
    };
    let mut retry = Duration::from_secs(2).min(interval);
    loop {
        let due = match health.state() {
            State::Ready => interval,
            _ => retry,
        };
        let since = health.since_last_outcome();
        if let Some(since) = since.filter(|s| *s < due) {
            tokio::select! {
                _ = tokio::time::sleep(due - since) => continue,
                _ = stop.cancelled() => return,
            }
        }
        tokio::select! {
            _ = check_remote(&target, options) => {}
            _ = stop.cancelled() => return,
        }
        retry = match health.state() {
            State::Ready => Duration::from_secs(2).min(interval),
            _ => (retry * 2).min(interval),
        };
    }
}
