//! The meter in front of one client session's route (or one 2026-07-28 request): counts each
//! request by server, method, tool and outcome, times it, and counts the bytes; or, in front
//! of one server of the merged view, times what the proxy asks that server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use super::{Bytes, ErrorCode, Operation, Request, Server};
use crate::jsonrpc::{Id, Message, code};
use crate::route::catalog::Catalog;

/// Methods used as label values; others count as `other`.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
];

fn method_label(m: &str) -> &'static str {
    METHODS
        .iter()
        .find(|x| **x == m)
        .copied()
        .unwrap_or("other")
}

struct Pending {
    method: &'static str,
    server: String,
    tool: String,
    started: Instant,
}

pub struct Meter {
    /// The server's label (`default` for the proxy's only server, `merged` for the merged
    /// view, whose calls are counted under the server that serves them).
    server: String,
    catalog: Option<Arc<Catalog>>,
    /// In front of one server for the merged view: only the time the server took counts.
    towards_server: bool,
    pending: Mutex<HashMap<Id, Pending>>,
}

#[derive(serde::Deserialize)]
struct Named {
    name: Option<String>,
}

impl Meter {
    /// For a client session of `server` (`None`: the root).
    pub fn new(server: Option<String>, catalog: Option<Arc<Catalog>>) -> Arc<Meter> {
        let label = match (&server, &catalog) {
            (Some(s), _) => s.clone(),
            (None, Some(_)) => "merged".into(),
            (None, None) => "default".into(),
        };
        Arc::new(Meter {
            server: label,
            catalog,
            towards_server: false,
            pending: Default::default(),
        })
    }

    /// In front of server `name` of the merged view.
    pub fn towards(name: &str) -> Arc<Meter> {
        Arc::new(Meter {
            server: name.to_owned(),
            catalog: None,
            towards_server: true,
            pending: Default::default(),
        })
    }

    /// A message from the client on its way.
    pub fn sent(&self, msg: &Message) {
        let Some(m) = super::get() else { return };
        if !self.towards_server
            && let Some(p) = msg.params()
        {
            m.bytes
                .get_or_create(&Bytes {
                    server: self.server.clone(),
                    direction: "in".into(),
                })
                .inc_by(p.get().len() as u64);
        }
        if !msg.is_request() {
            return;
        }
        let Some(id) = msg.id() else { return };
        let method = method_label(msg.method().unwrap_or(""));
        let (server, tool) = if method == "tools/call" {
            let name = msg
                .params_as::<Named>()
                .and_then(|n| n.name)
                .unwrap_or_default();
            let server = match &self.catalog {
                Some(c) => c
                    .locate("tool", &name)
                    .map(|(s, _)| s)
                    .unwrap_or_else(|| self.server.clone()),
                None => self.server.clone(),
            };
            (server, m.tool_label(&name))
        } else {
            (self.server.clone(), String::new())
        };
        if !self.towards_server {
            m.in_flight
                .get_or_create(&Server {
                    server: server.clone(),
                })
                .inc();
        }
        if let Ok(mut p) = self.pending.lock() {
            p.insert(
                id,
                Pending {
                    method,
                    server,
                    tool,
                    started: Instant::now(),
                },
            );
        }
    }

    /// A message on its way to the client.
    pub fn answered(&self, msg: &Message) {
        let Some(m) = super::get() else { return };
        if !msg.is_response() {
            return;
        }
        let Some(id) = msg.id() else { return };
        let Some(p) = self.pending.lock().ok().and_then(|mut p| p.remove(&id)) else {
            return;
        };
        let took = p.started.elapsed().as_secs_f64();
        let error = msg
            .error_value()
            .and_then(|e| serde_json::from_str::<Value>(e.get()).ok());
        let refused = error
            .as_ref()
            .is_some_and(|e| e["data"]["refusedBy"] == "mcp-proxy");
        let error_type = match &error {
            Some(e) => e["code"].as_i64().unwrap_or(0).to_string(),
            None => String::new(),
        };
        if self.towards_server {
            if !refused {
                m.client_duration
                    .get_or_create(&Operation {
                        server: p.server,
                        mcp_method_name: p.method.into(),
                        gen_ai_tool_name: p.tool,
                        error_type,
                    })
                    .observe(took);
            }
            return;
        }
        if p.method == "tools/list"
            && let Some(r) = msg.result_as::<ToolNames>()
        {
            m.learn_tools(r.tools.into_iter().filter_map(|t| t.name));
        }
        let outcome = match &error {
            _ if refused => "refused",
            Some(e)
                if e["code"].as_i64() == Some(code::UPSTREAM_TIMEOUT)
                    && e["message"]
                        .as_str()
                        .is_some_and(|t| t.contains("did not answer")) =>
            {
                "timeout"
            }
            Some(_) => "error",
            None if p.method == "tools/call" && is_tool_error(msg) => "tool_error",
            None => "ok",
        };
        m.in_flight
            .get_or_create(&Server {
                server: p.server.clone(),
            })
            .dec();
        m.requests
            .get_or_create(&Request {
                server: p.server.clone(),
                method: p.method.into(),
                tool: p.tool.clone(),
                outcome: outcome.into(),
            })
            .inc();
        if error.is_some() {
            m.errors
                .get_or_create(&ErrorCode {
                    server: p.server.clone(),
                    method: p.method.into(),
                    code: error_type.clone(),
                })
                .inc();
        }
        let size = msg
            .result()
            .map(|r| r.get().len())
            .or_else(|| msg.error_value().map(|e| e.get().len()))
            .unwrap_or(0);
        m.bytes
            .get_or_create(&Bytes {
                server: self.server.clone(),
                direction: "out".into(),
            })
            .inc_by(size as u64);
        let op = Operation {
            server: p.server,
            mcp_method_name: p.method.into(),
            gen_ai_tool_name: p.tool,
            error_type: if outcome == "tool_error" {
                "tool_error".into()
            } else {
                error_type
            },
        };
        m.server_duration.get_or_create(&op).observe(took);
        // The proxy's only server (or a named one): what the server took is this too.
        if self.catalog.is_none() && !refused {
            m.client_duration.get_or_create(&op).observe(took);
        }
    }

    /// The session ended: what it still waited for is no longer in flight.
    pub fn forget_all(&self) {
        let Some(m) = super::get() else { return };
        let gone: Vec<Pending> = self
            .pending
            .lock()
            .map(|mut p| p.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        if self.towards_server {
            return;
        }
        for p in gone {
            m.in_flight
                .get_or_create(&Server { server: p.server })
                .dec();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.forget_all();
    }
}

#[derive(serde::Deserialize)]
struct ToolNames {
    #[serde(default)]
    tools: Vec<Named>,
}

/// Whether a `tools/call` result says `isError: true` (looked for without decoding it all).
fn is_tool_error(msg: &Message) -> bool {
    #[derive(serde::Deserialize)]
    struct R {
        #[serde(rename = "isError", default)]
        is_error: bool,
    }
    msg.result().is_some_and(|r| {
        r.get().contains("\"isError\"") && msg.result_as::<R>().is_some_and(|r| r.is_error)
    })
}
