//! Transports turn a wire into a link: a place to send messages and a stream of messages back.
//!
//! Client side (towards a server): [`connect`] gives a [`Connection`] over a child's stdio,
//! Streamable HTTP or HTTP+SSE. When a request cannot be delivered, the transport answers it
//! itself with a JSON-RPC error, so callers never wait for an answer that cannot come.

pub mod http_client;
pub mod modern_client;
pub mod sse_client;
pub mod stdio;
pub mod streamable_client;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::jsonrpc::{Id, Message, code};

/// Which HTTP transport to use towards a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HttpTransport {
    /// Streamable HTTP first; HTTP+SSE when the server refuses it (the specification's probe).
    #[value(alias = "http-first")]
    Auto,
    /// HTTP+SSE first; Streamable HTTP when the server refuses the GET (404, 405).
    SseFirst,
    /// Streamable HTTP (revisions 2025-03-26 and later).
    #[value(alias = "http", alias = "streamable-http", alias = "http-only")]
    Streamablehttp,
    /// HTTP+SSE (revision 2024-11-05).
    #[value(alias = "sse-only")]
    Sse,
}

/// What to connect to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Command(CommandSpec),
    Url(UrlSpec),
}

impl Target {
    /// What the log calls the server: its name, else its program or URL.
    pub fn label(&self) -> String {
        match self {
            Target::Command(c) if !c.name.is_empty() => c.name.clone(),
            Target::Command(c) => c.program.clone(),
            Target::Url(u) => redact_url(&u.url),
        }
    }
}

/// A URL as logs, errors and `/status` may show it: user info and query values (where keys
/// and tokens are often put) replaced by `***`, no fragment.
pub fn redact_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_fragment(None);
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_password(None);
        let _ = u.set_username("***");
    }
    if u.query().is_some() {
        let names: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        if names.is_empty() {
            u.set_query(Some("***"));
        } else {
            let hidden: Vec<String> = names.iter().map(|k| format!("{k}=***")).collect();
            u.set_query(Some(&hidden.join("&")));
        }
    }
    u.to_string()
}

/// A URL the user wrote, as logs and errors may show it (see [`redact_url`]); text that is
/// not a URL is shown up to its first `?` or `@`-less part.
pub fn redact_text(text: &str) -> String {
    match reqwest::Url::parse(text) {
        Ok(u) => redact_url(&u),
        Err(_) => {
            let cut = text.find(['?', '@', '#']).unwrap_or(text.len());
            if cut < text.len() {
                format!("{}***", &text[..cut])
            } else {
                text.to_owned()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub pass_environment: bool,
    pub cwd: Option<PathBuf>,
    /// Prefix for the child's stderr lines in our log.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UrlSpec {
    pub url: reqwest::Url,
    pub transport: HttpTransport,
    pub headers: Vec<(String, String)>,
    pub connect_timeout: Duration,
    /// Where the links to this server report whether they reach it (for `/status`).
    pub health: crate::health::Slot,
    /// How the links sign in to it, when it wants OAuth.
    pub auth: crate::oauth::Slot,
}

/// Limits every transport applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_size: usize,
    /// Connect to remote servers through `HTTP_PROXY` / `HTTPS_PROXY` (`--enable-proxy`).
    pub use_proxy: bool,
}

/// Something that arrived from the server.
#[derive(Debug)]
pub enum Inbound {
    /// A message; `related` is the id of our request it belongs to, when the wire says so
    /// (a Streamable HTTP response stream).
    Message { msg: Message, related: Option<Id> },
    /// The link is gone for good; the reason names what happened (exit status, HTTP error).
    Closed(String),
}

/// A live link to one server.
pub struct Connection {
    pub tx: mpsc::Sender<Message>,
    pub rx: mpsc::Receiver<Inbound>,
    /// The task that owns the wire. Dropping `tx` asks it to end cleanly (close stdin,
    /// end the HTTP session); awaiting it waits for that.
    pub task: JoinHandle<()>,
    /// What kind of wire this became (after the `auto` probe).
    pub describe: Arc<std::sync::Mutex<String>>,
    /// For a child process: while set, its stderr is logged at debug level only (the era
    /// probe makes legacy servers complain about a method they do not know).
    pub quiet: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The child's process id, for a child process.
    pub pid: Option<u32>,
}

impl Connection {
    /// A link over HTTP (no child process).
    pub fn over_http(
        tx: mpsc::Sender<Message>,
        rx: mpsc::Receiver<Inbound>,
        task: JoinHandle<()>,
        describe: Arc<std::sync::Mutex<String>>,
    ) -> Connection {
        Connection {
            tx,
            rx,
            task,
            describe,
            quiet: None,
            pid: None,
        }
    }

    /// End the link cleanly and wait (bounded) for the transport to finish.
    pub async fn close(self) {
        let Connection { tx, rx, task, .. } = self;
        drop(tx);
        drop(rx);
        let _ = tokio::time::timeout(Duration::from_secs(6), task).await;
    }
}

/// Errors while establishing a link.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot start `{program}`: {reason}")]
    Spawn { program: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// Open a link to `target`.
pub async fn connect(target: &Target, limits: Limits) -> Result<Connection, ConnectError> {
    match target {
        Target::Command(spec) => stdio::spawn(spec, limits),
        Target::Url(spec) => http_client::connect(spec, limits),
    }
}

/// The error answer for a request that could not be delivered.
pub fn undeliverable(msg: &Message, reason: &str) -> Option<Message> {
    if !msg.is_request() {
        return None;
    }
    Some(Message::error(
        msg.id()?,
        code::UPSTREAM_UNAVAILABLE,
        reason,
        None,
    ))
}

/// Tracks requests we sent and have no answer for yet, so that a link that ends can answer
/// each of them with an error.
#[derive(Default)]
pub struct InFlight {
    ids: HashMap<Id, ()>,
}

impl InFlight {
    pub fn sent(&mut self, msg: &Message) {
        if msg.is_request()
            && let Some(id) = msg.id()
        {
            self.ids.insert(id, ());
        }
    }
    pub fn answered(&mut self, msg: &Message) {
        if msg.is_response()
            && let Some(id) = msg.id()
        {
            self.ids.remove(&id);
        }
    }
    pub fn answered_id(&mut self, id: Option<Id>) {
        if let Some(id) = id {
            self.ids.remove(&id);
        }
    }
    pub fn fail_all(&mut self, reason: &str) -> Vec<Message> {
        self.ids
            .drain()
            .map(|(id, ())| Message::error(id, code::UPSTREAM_UNAVAILABLE, reason, None))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_never_shown() {
        let u =
            reqwest::Url::parse("https://user:s3cret@host:8443/mcp?key=s3cret&x=1#frag").unwrap();
        let shown = redact_url(&u);
        assert!(
            !shown.contains("s3cret") && !shown.contains("user") && !shown.contains("frag"),
            "{shown}"
        );
        assert_eq!(shown, "https://***@host:8443/mcp?key=***&x=***");
        assert_eq!(redact_text("ftp://a:b@h/p?k=v"), "ftp://***@h/p?k=***");
        assert_eq!(redact_text("not a url?key=s3cret"), "not a url***");
        let plain = reqwest::Url::parse("http://127.0.0.1:9/mcp").unwrap();
        assert_eq!(redact_url(&plain), "http://127.0.0.1:9/mcp");
    }
}
