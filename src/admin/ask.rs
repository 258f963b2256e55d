//! One-off MCP requests from the console to one server (its lists, the playground), as a
//! client of its own: a session is opened on the server's backend (before any tool
//! curation, so that hidden tools are listed too), initialised, asked, and closed.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::jsonrpc::{Id, Message, code, to_raw};
use crate::route::{Backend, Filed, Outgoing, SessionTx};

/// A session of the console's with one server.
pub struct Asker {
    route: crate::route::Route,
    rx: mpsc::UnboundedReceiver<Message>,
    next: u64,
    within: Duration,
}

/// What went wrong: a JSON-RPC error of the server's, or no answer at all.
pub enum Failed {
    Rpc(Value),
    Unreachable(String),
}

impl Failed {
    pub fn text(&self) -> String {
        match self {
            Failed::Rpc(e) => e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_owned(),
            Failed::Unreachable(s) => s.clone(),
        }
    }
}

impl Asker {
    /// Open and initialise a session with `backend`.
    pub async fn open(backend: &Backend, within: Duration) -> Result<Asker, Failed> {
        let (tx, rx) = mpsc::unbounded_channel::<Message>();
        let sink = SessionTx::direct(move |o: Outgoing| match tx.send(o.msg) {
            Ok(()) => Filed::Yes,
            Err(_) => Filed::Closed,
        });
        let route = backend
            .open(sink)
            .await
            .map_err(|u| Failed::Unreachable(u.reason.clone()))?;
        let mut a = Asker {
            route,
            rx,
            next: 0,
            within,
        };
        a.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": { "name": "mcp-proxy-admin", "version": env!("CARGO_PKG_VERSION") }
            }),
        )
        .await?;
        a.route
            .send(Message::notification("notifications/initialized", None))
            .await;
        Ok(a)
    }

    /// Ask, and wait for the answer (requests of the server's meanwhile are declined).
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, Failed> {
        self.next += 1;
        let id = Id::string(&format!("admin-{}", self.next));
        self.route
            .send(Message::request(id.clone(), method, Some(to_raw(&params))))
            .await;
        let deadline = tokio::time::Instant::now() + self.within;
        loop {
            let got = tokio::time::timeout_at(deadline, self.rx.recv()).await;
            let msg = match got {
                Err(_) => {
                    return Err(Failed::Unreachable(format!(
                        "no answer to {method} in {} s",
                        self.within.as_secs()
                    )));
                }
                Ok(None) => return Err(Failed::Unreachable("the server went away".into())),
                Ok(Some(m)) => m,
            };
            if msg.is_request() {
                if let Some(their) = msg.id() {
                    self.route
                        .send(Message::error(
                            their,
                            code::METHOD_NOT_FOUND,
                            "the admin console does not answer requests of servers",
                            None,
                        ))
                        .await;
                }
                continue;
            }
            if !msg.is_response() || msg.id().as_ref() != Some(&id) {
                continue;
            }
            if let Some(e) = msg.error_value() {
                return Err(Failed::Rpc(
                    serde_json::from_str(e.get()).unwrap_or(Value::Null),
                ));
            }
            return Ok(msg.result_as::<Value>().unwrap_or(Value::Null));
        }
    }

    /// A whole list, all pages (at most `--max-list-pages`).
    pub async fn list(&mut self, method: &str, field: &str) -> Result<Vec<Value>, Failed> {
        let mut out = vec![];
        let mut cursor: Option<Value> = None;
        for _ in 0..crate::limits::get().max_list_pages {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let page = self.request(method, params).await?;
            if let Some(items) = page.get(field).and_then(Value::as_array) {
                out.extend(items.iter().cloned());
            }
            cursor = page.get("nextCursor").filter(|c| !c.is_null()).cloned();
            if cursor.is_none() {
                break;
            }
        }
        Ok(out)
    }

    pub async fn close(self) {
        self.route.close().await;
    }

    /// One whole list, in a session of its own.
    pub async fn list_once(
        backend: &Backend,
        within: Duration,
        method: &str,
        field: &str,
    ) -> Result<Vec<Value>, Failed> {
        let mut a = Asker::open(backend, within).await?;
        let l = a.list(method, field).await;
        a.close().await;
        l
    }

    /// One request, in a session of its own.
    pub async fn request_once(
        backend: &Backend,
        within: Duration,
        method: &str,
        params: Value,
    ) -> Result<Value, Failed> {
        let mut a = Asker::open(backend, within).await?;
        let r = a.request(method, params).await;
        a.close().await;
        r
    }
}
