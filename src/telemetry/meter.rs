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
    spans: Option<super::trace::Spans>,
}

/// The series one outcome of one call lands in.
#[derive(Hash, PartialEq, Eq)]
struct Key {
    method: &'static str,
    server: String,
    tool: String,
    outcome: &'static str,
    error_type: String,
}

#[derive(Clone)]
struct Series {
    requests: prometheus_client::metrics::counter::Counter,
    errors: Option<prometheus_client::metrics::counter::Counter>,
    server: Option<super::Histogram>,
    client: Option<super::Histogram>,
    summary: Option<Arc<super::Summary>>,
}

/// Handles of the series a session uses, so that a call costs no label lookups once its
/// kind was seen.
#[derive(Default)]
struct Handles {
    series: HashMap<Key, Series>,
    in_flight: HashMap<String, prometheus_client::metrics::gauge::Gauge>,
    bytes_in: Option<prometheus_client::metrics::counter::Counter>,
    bytes_out: Option<prometheus_client::metrics::counter::Counter>,
}

pub struct Meter {
    /// The server's label (`default` for the proxy's only server, `merged` for the merged
    /// view, whose calls are counted under the server that serves them).
    server: String,
    catalog: Option<Arc<Catalog>>,
    /// In front of one server for the merged view: only the time the server took counts.
    towards_server: bool,
    pending: Mutex<HashMap<Id, Pending>>,
    /// `tcp` (HTTP) or `pipe` (stdio), for spans.
    transport: &'static str,
    session: Mutex<Option<String>>,
    protocol: Mutex<Option<String>>,
    handles: Mutex<Handles>,
}

#[derive(serde::Deserialize)]
struct Named {
    name: Option<String>,
}

/// What spans read of a request's params.
#[derive(serde::Deserialize)]
struct Traced {
    name: Option<String>,
    uri: Option<String>,
    #[serde(rename = "_meta")]
    meta: Option<HashMap<String, Value>>,
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
            transport: "tcp",
            session: Default::default(),
            protocol: Default::default(),
            handles: Default::default(),
        })
    }

    /// For the stdio front.
    pub fn over_stdio(catalog: Option<Arc<Catalog>>) -> Arc<Meter> {
        let mut m = Meter {
            server: if catalog.is_some() {
                "merged"
            } else {
                "default"
            }
            .into(),
            catalog,
            towards_server: false,
            pending: Default::default(),
            transport: "pipe",
            session: Default::default(),
            protocol: Default::default(),
            handles: Default::default(),
        };
        m.transport = "pipe";
        Arc::new(m)
    }

    pub fn set_session(&self, id: &str) {
        if let Ok(mut s) = self.session.lock() {
            *s = Some(id.to_owned());
        }
    }

    /// In front of server `name` of the merged view.
    pub fn towards(name: &str) -> Arc<Meter> {
        Arc::new(Meter {
            server: name.to_owned(),
            catalog: None,
            towards_server: true,
            pending: Default::default(),
            transport: "tcp",
            session: Default::default(),
            protocol: Default::default(),
            handles: Default::default(),
        })
    }

    /// A message from the client on its way (spans put their context into its `_meta`); the
    /// trace and span ids of its server span, when it has one.
    pub fn sent(&self, msg: &mut Message) -> Option<(String, String)> {
        let metrics = super::get();
        if let Some(m) = metrics
            && !self.towards_server
            && let Some(p) = msg.params()
            && let Ok(mut h) = self.handles.lock()
        {
            {
                h.bytes_in
                    .get_or_insert_with(|| {
                        m.bytes
                            .get_or_create(&Bytes {
                                server: self.server.clone(),
                                direction: "in".into(),
                            })
                            .clone()
                    })
                    .inc_by(p.get().len() as u64);
            }
        }
        if !msg.is_request() {
            return None;
        }
        let id = msg.id()?;
        let method = method_label(msg.method().unwrap_or(""));
        // A request that brings no trace context and starts no sampled trace costs nothing.
        let tracing = !self.towards_server
            && super::trace::on()
            && (msg.params().is_some_and(|p| {
                memchr::memmem::find(p.get().as_bytes(), b"traceparent").is_some()
            }) || super::trace::samples_new());
        let traced = if tracing {
            msg.params_as::<Traced>()
        } else {
            None
        };
        let name = match &traced {
            Some(t) => t.name.clone(),
            None if method == "tools/call" => msg.params_as::<Named>().and_then(|n| n.name),
            None => None,
        };
        let (server, tool) = if method == "tools/call" {
            let name = name.clone().unwrap_or_default();
            let server = match &self.catalog {
                Some(c) => c
                    .locate("tool", &name)
                    .map(|(s, _)| s)
                    .unwrap_or_else(|| self.server.clone()),
                None => self.server.clone(),
            };
            let tool = metrics.map(|m| m.tool_label(&name)).unwrap_or(name);
            (server, tool)
        } else {
            (self.server.clone(), String::new())
        };
        if let Some(m) = metrics
            && !self.towards_server
        {
            self.in_flight(m, &server).inc();
        }
        let spans = traced.and_then(|t| {
            let meta: HashMap<String, String> = t
                .meta
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| k == "traceparent" || k == "tracestate")
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
                .collect();
            let session = self.session.lock().ok().and_then(|s| s.clone());
            let protocol = self
                .protocol
                .lock()
                .ok()
                .and_then(|s| s.clone())
                .or_else(|| crate::era::RequestMeta::of(msg).version);
            let target = t.name.as_deref().or(t.uri.as_deref());
            let request_id = id.as_json().trim_matches('"').to_owned();
            let about = super::trace::About {
                method: msg.method().unwrap_or(method),
                target,
                tool: (method == "tools/call").then_some(target).flatten(),
                session: session.as_deref(),
                protocol: protocol.as_deref(),
                request_id: &request_id,
                transport: self.transport,
                server: &server,
            };
            let (spans, out) = super::trace::start(&about, &meta)?;
            for (k, v) in out {
                msg.set_param_meta(&k, crate::jsonrpc::to_raw(&v));
            }
            Some(spans)
        });
        let ids = spans.as_ref().map(super::trace::Spans::ids);
        if metrics.is_none() && spans.is_none() {
            return None;
        }
        if let Ok(mut p) = self.pending.lock() {
            p.insert(
                id,
                Pending {
                    method,
                    server,
                    tool,
                    started: Instant::now(),
                    spans,
                },
            );
        }
        ids
    }

    /// A message on its way to the client.
    pub fn answered(&self, msg: &Message) {
        if !msg.is_response() {
            return;
        }
        let Some(id) = msg.id() else { return };
        let Some(mut p) = self.pending.lock().ok().and_then(|mut p| p.remove(&id)) else {
            return;
        };
        if p.method == "initialize"
            && let Some(v) = msg.result_as::<Value>()
            && let Some(version) = v["protocolVersion"].as_str()
            && let Ok(mut slot) = self.protocol.lock()
        {
            *slot = Some(version.to_owned());
        }
        if let Some(spans) = p.spans.take() {
            let e = msg
                .error_value()
                .and_then(|e| serde_json::from_str::<Value>(e.get()).ok());
            let refused = e
                .as_ref()
                .is_some_and(|e| e["data"]["refusedBy"] == "mcp-proxy");
            let (kind, text) = match &e {
                Some(e) => (
                    Some(e["code"].as_i64().unwrap_or(0).to_string()),
                    e["message"].as_str().map(str::to_owned),
                ),
                None if p.method == "tools/call" && is_tool_error(msg) => {
                    (Some("tool_error".to_owned()), None)
                }
                None => (None, None),
            };
            spans.end(kind.as_deref(), text.as_deref(), !refused);
        }
        let Some(m) = super::get() else { return };
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
        if p.method == "tools/list"
            && let Some(r) = msg.result_as::<ToolNames>()
        {
            m.learn_tools(r.tools.into_iter().filter_map(|t| t.name));
        }
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
        self.in_flight(m, &p.server).dec();
        let size = msg
            .result()
            .map(|r| r.get().len())
            .or_else(|| msg.error_value().map(|e| e.get().len()))
            .unwrap_or(0);
        let key = Key {
            method: p.method,
            server: p.server,
            tool: p.tool,
            outcome,
            error_type: if outcome == "tool_error" {
                "tool_error".into()
            } else {
                error_type
            },
        };
        let Ok(mut h) = self.handles.lock() else {
            return;
        };
        h.bytes_out
            .get_or_insert_with(|| {
                m.bytes
                    .get_or_create(&Bytes {
                        server: self.server.clone(),
                        direction: "out".into(),
                    })
                    .clone()
            })
            .inc_by(size as u64);
        let series = match h.series.get(&key) {
            Some(s) => s.clone(),
            None => {
                let op = Operation {
                    server: key.server.clone(),
                    mcp_method_name: key.method.into(),
                    gen_ai_tool_name: key.tool.clone(),
                    error_type: key.error_type.clone(),
                };
                let s = Series {
                    requests: m
                        .requests
                        .get_or_create(&Request {
                            server: key.server.clone(),
                            method: key.method.into(),
                            tool: key.tool.clone(),
                            outcome: outcome.into(),
                        })
                        .clone(),
                    errors: error.is_some().then(|| {
                        m.errors
                            .get_or_create(&ErrorCode {
                                server: key.server.clone(),
                                method: key.method.into(),
                                code: key.error_type.clone(),
                            })
                            .clone()
                    }),
                    server: Some(m.server_duration.get_or_create(&op).clone()),
                    // The proxy's only server (or a named one): what the server took is this
                    // too.
                    client: (self.catalog.is_none() && !refused)
                        .then(|| m.client_duration.get_or_create(&op).clone()),
                    summary: m.summary(&key.server),
                };
                if h.series.len() < 1000 {
                    h.series.insert(key, s.clone());
                }
                s
            }
        };
        drop(h);
        series.requests.inc();
        if let Some(e) = &series.errors {
            e.inc();
        }
        if let Some(d) = &series.server {
            d.observe(took);
        }
        if let Some(d) = &series.client {
            d.observe(took);
        }
        if let Some(s) = &series.summary {
            use std::sync::atomic::Ordering::Relaxed;
            s.calls.fetch_add(1, Relaxed);
            if series.errors.is_some() {
                s.errors.fetch_add(1, Relaxed);
            }
            s.duration.observe(took);
        }
    }

    /// The in-flight gauge of `server`.
    fn in_flight(
        &self,
        m: &super::Metrics,
        server: &str,
    ) -> prometheus_client::metrics::gauge::Gauge {
        if let Ok(mut h) = self.handles.lock() {
            if let Some(g) = h.in_flight.get(server) {
                return g.clone();
            }
            let g = m
                .in_flight
                .get_or_create(&Server {
                    server: server.to_owned(),
                })
                .clone();
            h.in_flight.insert(server.to_owned(), g.clone());
            return g;
        }
        m.in_flight
            .get_or_create(&Server {
                server: server.to_owned(),
            })
            .clone()
    }

    /// The session ended: what it still waited for is no longer in flight.
    pub fn forget_all(&self) {
        let gone: Vec<Pending> = self
            .pending
            .lock()
            .map(|mut p| p.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        let mut gone = gone;
        for p in gone.iter_mut() {
            if let Some(s) = p.spans.take() {
                s.end(Some("cancelled"), Some("the session ended"), true);
            }
        }
        let Some(m) = super::get() else { return };
        if self.towards_server {
            return;
        }
        for p in gone {
            self.in_flight(m, &p.server).dec();
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
