//! Streamable HTTP of revision 2026-07-28 towards a server: no session, every request its own
//! POST with `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers, answered by JSON or
//! by an SSE stream scoped to that request. Closing the stream cancels the request, so a
//! `notifications/cancelled` from the link's user aborts the POST instead of being sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::http_client::{HttpContext, body_excerpt, content_type_is, read_body, sse_events};
use super::{ConnectError, Connection, Limits, UrlSpec};
use crate::era::params::{self, ToolHeaders};
use crate::era::{self, MODERN};
use crate::jsonrpc::{Id, Message};

/// What a modern request against an unknown server told about its era.
#[derive(Debug)]
pub enum Probe {
    /// The server answered `server/discover` (its result).
    Modern(Value),
    /// Not a modern server: fall back to the session-based revisions.
    Legacy(String),
    /// A modern server that cannot serve us (for example no version in common).
    Refused(String),
    /// The server could not be reached, or refused us before saying anything of its era
    /// (HTTP 401, 403, 502–504): nothing was learnt.
    Unreachable(String),
}

/// The `server/discover` request the proxy sends in its own name.
pub fn discover_request(id: Id) -> Message {
    let params = serde_json::json!({
        "_meta": {
            era::META_VERSION: MODERN,
            era::META_CAPABILITIES: {},
            era::META_CLIENT_INFO: { "name": "mcp-proxy", "version": env!("CARGO_PKG_VERSION") },
        }
    });
    Message::request(id, "server/discover", Some(crate::jsonrpc::to_raw(&params)))
}

/// Whether an answer to `server/discover` comes from a modern server, per the specification's
/// backward-compatibility rule: a result, or a recognised modern error.
pub fn classify(answer: &Message) -> Probe {
    if let Some(r) = answer.result_as::<Value>() {
        let speaks = r
            .get("supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|x| x.as_str().is_some_and(era::is_modern)));
        return if speaks {
            Probe::Modern(r)
        } else {
            Probe::Legacy("server/discover answered without a modern version".into())
        };
    }
    let err: Value = answer
        .error_value()
        .and_then(|e| serde_json::from_str(e.get()).ok())
        .unwrap_or(Value::Null);
    let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
    if code == era::UNSUPPORTED_VERSION {
        let supported = err
            .get("data")
            .and_then(|d| d.get("supported"))
            .cloned()
            .unwrap_or(Value::Null);
        return Probe::Refused(format!(
            "the server speaks protocol revisions {supported}, none of which this proxy speaks"
        ));
    }
    Probe::Legacy(format!(
        "server/discover answered {}",
        err.get("message")
            .and_then(Value::as_str)
            .unwrap_or("an error")
    ))
}

/// Try a modern `server/discover` against `spec`.
pub async fn probe(spec: &UrlSpec, limits: Limits) -> Probe {
    let (ctx, _) = match HttpContext::new(spec, limits) {
        Ok(c) => c,
        Err(e) => return Probe::Refused(e.to_string()),
    };
    let msg = discover_request(Id::string("mcp-proxy-probe"));
    let resp = match post(&ctx, &msg, &[]).await {
        Ok(r) => r,
        Err(e) => return Probe::Unreachable(e),
    };
    let status = resp.status();
    if status == http::StatusCode::UNAUTHORIZED
        || status == http::StatusCode::FORBIDDEN
        || matches!(status.as_u16(), 502..=504)
    {
        let excerpt = body_excerpt(resp).await;
        return Probe::Unreachable(format!("the server answered HTTP {status}: {excerpt}"));
    }
    if content_type_is(&resp, "application/json") {
        let Ok(body) = read_body(resp, limits.max_message_size).await else {
            return Probe::Legacy(format!("HTTP {status}"));
        };
        return match Message::parse_one(body) {
            Ok(m) if m.is_response() => classify(&m),
            _ => Probe::Legacy(format!("HTTP {status} without a JSON-RPC answer")),
        };
    }
    if status.is_success() && content_type_is(&resp, "text/event-stream") {
        let mut events = sse_events(resp, limits.max_message_size);
        while let Some(Ok(ev)) = events.next().await {
            if let Some(data) = ev.data
                && let Ok(m) = Message::parse_one(data)
                && m.is_response()
            {
                return classify(&m);
            }
        }
        return Probe::Legacy("the discover stream ended without an answer".into());
    }
    Probe::Legacy(format!("HTTP {status}"))
}

async fn post(
    ctx: &HttpContext,
    msg: &Message,
    params: &[(String, String)],
) -> Result<reqwest::Response, String> {
    let spec = &ctx.spec;
    let method = msg.method().unwrap_or("");
    let name = era::mcp_name(msg);
    let build = || {
        let mut req = ctx
            .client
            .post(spec.url.clone())
            .headers(ctx.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::ACCEPT,
                "application/json, text/event-stream",
            )
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", method);
        if let Some(name) = &name {
            req = req.header("mcp-name", era::encode_header_value(name));
        }
        for (name, value) in params {
            req = req.header(format!("mcp-param-{name}"), era::encode_header_value(value));
        }
        req.body(super::http_client::body_of(msg))
    };
    let resp = ctx.send(build).await;
    match &resp {
        Ok(r) if super::http_client::serves(r.status()) => spec.health.reached(),
        Ok(r) => spec
            .health
            .failed(&format!("the server answered HTTP {}", r.status())),
        Err(why) => spec.health.failed(why),
    }
    resp
}

/// Open a modern link to `spec`. Nothing is sent until the first message.
pub fn connect(spec: &UrlSpec, limits: Limits) -> Result<Connection, ConnectError> {
    let (ctx, in_rx) = HttpContext::new(spec, limits)?;
    let (out_tx, out_rx) = mpsc::channel::<Message>(256);
    let describe = Arc::new(std::sync::Mutex::new(format!(
        "streamable-http {MODERN} ({})",
        super::redact_url(&spec.url)
    )));
    spec.health.set_transport("streamable-http");
    let task = tokio::spawn(run(ctx, out_rx));
    Ok(Connection::over_http(out_tx, in_rx, task, describe))
}

async fn run(ctx: HttpContext, mut out_rx: mpsc::Receiver<Message>) {
    let inflight: Arc<Mutex<HashMap<Id, CancellationToken>>> = Default::default();
    let tools: Arc<ToolHeaders> = Default::default();
    while let Some(msg) = out_rx.recv().await {
        if msg.is_request() {
            let Some(id) = msg.id() else { continue };
            let stop = CancellationToken::new();
            if let Ok(mut r) = inflight.lock() {
                r.insert(id.clone(), stop.clone());
            }
            let ctx2 = ctx.clone();
            let registry = inflight.clone();
            let tools = tools.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = exchange(&ctx2, &tools, msg) => {}
                    // Dropping the response closes the stream: that is the cancellation.
                    _ = stop.cancelled() => {}
                }
                if let Ok(mut r) = registry.lock() {
                    r.remove(&id);
                }
            });
        } else if msg.method() == Some("notifications/cancelled") {
            if let Some(id) = msg.cancelled_request_id()
                && let Some(stop) = inflight.lock().ok().and_then(|mut r| r.remove(&id))
            {
                stop.cancel();
            }
        } else {
            tracing::debug!(
                method = msg.method().unwrap_or("(answer)"),
                "not sent: revision {MODERN} has no such client message over HTTP"
            );
        }
    }
    let all: Vec<CancellationToken> = inflight
        .lock()
        .map(|mut r| r.drain().map(|(_, h)| h).collect())
        .unwrap_or_default();
    for stop in all {
        stop.cancel();
    }
}

/// One request: POST it and deliver what comes back, the answer last.
async fn exchange(ctx: &HttpContext, tools: &ToolHeaders, msg: Message) {
    let Some(id) = msg.id() else { return };
    let params = param_headers(tools, &msg);
    let resp = match post(ctx, &msg, &params).await {
        Ok(r) => r,
        Err(e) => return ctx.fail(&msg, &e).await,
    };
    let status = resp.status();
    if content_type_is(&resp, "application/json") {
        match read_body(resp, ctx.limits.max_message_size).await {
            Ok(body) => match Message::parse_one(body) {
                Ok(m) => ctx.deliver(learn(tools, &msg, m), Some(id)).await,
                Err(e) => {
                    ctx.fail(
                        &msg,
                        &format!("HTTP {status} with an unreadable body: {e:?}"),
                    )
                    .await
                }
            },
            Err(e) => ctx.fail(&msg, &e).await,
        }
        return;
    }
    if !status.is_success() {
        let excerpt = body_excerpt(resp).await;
        return ctx
            .fail(
                &msg,
                &format!("the server answered HTTP {status}: {excerpt}"),
            )
            .await;
    }
    if !content_type_is(&resp, "text/event-stream") {
        return ctx
            .fail(&msg, "the server answered neither JSON nor an event stream")
            .await;
    }
    let mut events = sse_events(resp, ctx.limits.max_message_size);
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                return ctx
                    .fail(&msg, &format!("the response stream broke: {e}"))
                    .await;
            }
        };
        let Some(data) = ev.data else { continue };
        if data.trim().is_empty() {
            continue;
        }
        match Message::parse_one(data) {
            Ok(m) => {
                let answer = m.is_response() && m.id().as_ref() == Some(&id);
                let m = if answer { learn(tools, &msg, m) } else { m };
                ctx.deliver(m, Some(id.clone())).await;
                if answer {
                    return;
                }
            }
            Err(e) => crate::warn_throttled!(
                format!("unreadable:{}", ctx.spec.url.host_str().unwrap_or("")),
                "unreadable event from the server: {e:?}"
            ),
        }
    }
    ctx.fail(&msg, "the response stream ended without an answer")
        .await;
}

/// The `Mcp-Param-*` headers of a `tools/call`, from what `tools/list` said of the tool.
fn param_headers(tools: &ToolHeaders, msg: &Message) -> Vec<(String, String)> {
    if msg.method() != Some("tools/call") {
        return vec![];
    }
    let Some(p) = msg.params_as::<Value>() else {
        return vec![];
    };
    let Some(tool) = p.get("name").and_then(Value::as_str) else {
        return vec![];
    };
    let args = p.get("arguments").cloned().unwrap_or(Value::Null);
    tools
        .of(tool)
        .into_iter()
        .filter_map(|h| Some((h.name.clone(), params::value_at(&args, &h.path)?)))
        .collect()
}

/// Learn the tools' header parameters from a `tools/list` answer, leaving out tools whose
/// annotations are invalid (as the specification requires of HTTP clients).
fn learn(tools: &ToolHeaders, request: &Message, mut answer: Message) -> Message {
    if request.method() != Some("tools/list") {
        return answer;
    }
    let Some(result) = answer.result_as::<Value>() else {
        return answer;
    };
    let invalid = tools.learn(&result);
    if invalid.is_empty() {
        return answer;
    }
    for (name, why) in &invalid {
        crate::warn_throttled!(
            format!("tool-left-out:{name}"),
            "tool `{name}` left out: {why}"
        );
    }
    if let Some(list) = result.get("tools").and_then(Value::as_array) {
        let kept: Vec<&Value> = list
            .iter()
            .filter(|t| {
                let n = t.get("name").and_then(Value::as_str).unwrap_or("");
                !invalid.iter().any(|(bad, _)| bad == n)
            })
            .collect();
        answer.set_result_member("tools", crate::jsonrpc::to_raw(&kept));
    }
    answer
}
